//! Sources: every crawl is filed under its tenant's source for its start
//! URL; a source can be listed, read, renamed, retagged, given settings,
//! exported as a stream and deleted whole.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use trawl::auth::ApiKeys;
use trawl::crawl::StartError;
use trawl::store::StoreError;

use crate::helpers::*;

async fn send(app: &TestApp, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = app.client.request(method, app.url(path));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

async fn search_urls(app: &TestApp, query: &str) -> Vec<String> {
    let body = json!({"query": query, "mode": "text", "limit": 50});
    let (code, v) = send(app, reqwest::Method::POST, "/api/search", Some(body)).await;
    assert_eq!(code, 200, "{v}");
    v["results"].as_array().unwrap().iter().map(|r| r["url"].as_str().unwrap().to_string()).collect()
}

/// Starts a crawl and answers its (progressId, sourceId) from the 202.
async fn start(app: &TestApp, body: Value) -> (String, String) {
    let resp = app.post_crawl(body).await;
    assert_eq!(resp.status(), 202);
    let v: Value = resp.json().await.unwrap();
    (v["progressId"].as_str().unwrap().to_string(), v["sourceId"].as_str().expect("sourceId in the 202").to_string())
}

#[tokio::test]
async fn a_crawl_is_filed_under_its_tenant_s_source_for_its_start_url() {
    let (app, site) = (spawn_app().await, fixture().await);
    let (first, source) = start(&app, crawl_body(site.url("/docs/1.html"), "page")).await;
    assert_eq!(app.wait_terminal(&first).await["sourceId"], source.as_str(), "the status carries it");
    let (second, again) = start(&app, crawl_body(site.url("/docs/1.html"), "page")).await;
    assert_eq!(again, source, "the same start URL is the same source");
    app.wait_terminal(&second).await;
    let (other_crawl, other) = start(&app, crawl_body(site.url("/code/examples.html"), "page")).await;
    assert_ne!(other, source);
    app.wait_terminal(&other_crawl).await;

    let (code, v) = app.get("/api/sources").await;
    assert_eq!(code, 200, "{v}");
    let listed = v["sources"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{v}");
    assert_eq!(listed[0]["id"], other.as_str(), "newest first");
    let s = &listed[1];
    assert_eq!(s["id"], source.as_str());
    assert_eq!(s["url"], site.url("/docs/1.html"));
    let host = site.url("/").trim_start_matches("http://").trim_end_matches('/').to_string();
    assert_eq!(s["name"], format!("{host}/docs/1.html"));
    assert_eq!(s["pages"], 1, "a second crawl replaces the page, it does not add one: {s}");
    assert!(s["chunks"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["lastCrawl"]["id"], second.as_str());
    assert_eq!(s["lastCrawl"]["status"], "completed");
    assert!(s["lastCrawl"]["finishedAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(s["settings"]["url"], site.url("/docs/1.html"));
    assert_eq!(s["settings"]["crawlType"], "page");

    let (code, one) = app.get(&format!("/api/sources/{source}")).await;
    assert_eq!(code, 200);
    assert_eq!(&one, s);

    let (_, page1) = app.get("/api/sources?limit=1").await;
    assert_eq!(page1["sources"].as_array().unwrap().len(), 1);
    let cursor = page1["nextCursor"].as_str().expect("a next page");
    let (_, page2) = app.get(&format!("/api/sources?limit=1&cursor={cursor}")).await;
    assert_eq!(page2["sources"][0]["id"], source.as_str());
    assert!(page2["nextCursor"].is_null());
}

#[tokio::test]
async fn a_source_can_be_renamed_retagged_and_given_settings() {
    let (app, site) = (spawn_app().await, fixture().await);
    let (id, source) = start(&app, crawl_body(site.url("/"), "page")).await;
    app.wait_terminal(&id).await;
    let path = format!("/api/sources/{source}");
    let patch = json!({"name": "Fixture docs", "tags": ["docs", "fixture"],
        "settings": {"crawlType": "recursive", "maxDepth": 2, "exclude": ["**/private/**"]}});
    let (code, v) = send(&app, reqwest::Method::PATCH, &path, Some(patch)).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["name"], "Fixture docs");
    assert_eq!(v["tags"], json!(["docs", "fixture"]));
    assert_eq!(v["settings"]["crawlType"], "recursive");
    assert_eq!(v["settings"]["maxDepth"], 2);
    assert_eq!(v["settings"]["url"], site.url("/"), "the URL stays the source's");
    assert_eq!(app.get(&path).await.1, v, "kept");

    for (body, why) in [
        (json!({"name": ""}), "empty name"),
        (json!({"name": "x".repeat(201)}), "long name"),
        (json!({"tags": vec!["t"; 33]}), "too many tags"),
        (json!({"tags": [""]}), "empty tag"),
        (json!({"settings": {"url": "http://example.com/"}}), "another URL"),
        (json!({"settings": {"maxDepth": 1000}}), "out of range"),
        (json!({"settings": "recursive"}), "not an object"),
        (json!({"nmae": "typo"}), "unknown key"),
    ] {
        let (code, v) = send(&app, reqwest::Method::PATCH, &path, Some(body)).await;
        assert_eq!(code, 400, "{why}: {v}");
        assert!(v["error"]["message"].is_string(), "{why}: {v}");
    }
    assert_eq!(app.get(&path).await.1["name"], "Fixture docs", "nothing changed by a refused patch");
    let resp = app.client.patch(app.url(&path)).body(r#"{"name":"x"}"#).send().await.unwrap();
    assert_eq!(resp.status(), 415);
}

#[tokio::test]
async fn deleting_a_source_removes_all_it_kept_and_nothing_else() {
    let (app, site) = (spawn_app().await, fixture().await);
    let (kept_crawl, kept) = start(&app, crawl_body(site.url("/docs/7.html"), "page")).await;
    app.wait_terminal(&kept_crawl).await;
    let body = json!({"url": site.url("/"), "crawlType": "recursive", "maxDepth": 1});
    let (id, source) = start(&app, body).await;
    assert_eq!(app.wait_terminal(&id).await["status"], "completed");
    let pages = app.pages(&id).await;
    let urls: Vec<String> = pages.iter().map(|p| p["url"].as_str().unwrap().to_string()).collect();
    let found = search_urls(&app, "Fixture page").await;
    assert!(found.iter().any(|u| urls.contains(u)), "searchable before: {found:?}");
    let (_, before) = app.get(&format!("/api/sources/{source}")).await;
    let claimed = app.store().get_source(&source).await.unwrap().expect("the source");

    let (code, v) = send(&app, reqwest::Method::DELETE, &format!("/api/sources/{source}"), None).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["deleted"], source.as_str());
    assert_eq!(v["removed"]["crawls"], 1);
    assert_eq!(v["removed"]["pages"], pages.len());
    assert_eq!(v["removed"]["chunks"], before["chunks"]);

    let found = search_urls(&app, "Fixture page").await;
    assert!(found.iter().all(|u| !urls.contains(u)), "nothing of it is found after: {found:?}");
    assert!(found.contains(&site.url("/docs/7.html")), "another source keeps its pages: {found:?}");
    assert_eq!(app.get(&format!("/api/sources/{source}")).await.0, 404);
    assert_eq!(app.get(&format!("/api/crawls/{id}")).await.0, 404, "its crawls went with it");
    let page_id = pages[0]["id"].as_i64().unwrap();
    assert_eq!(app.get(&format!("/api/pages/{page_id}")).await.0, 404);
    assert_eq!(app.get(&format!("/api/sources/{kept}")).await.1["pages"], 1);
    let (code, v) = send(&app, reqwest::Method::DELETE, &format!("/api/sources/{source}"), None).await;
    assert_eq!(code, 404, "{v}");
    assert_eq!(v["error"]["code"], "not_found");

    // A refresh claimed before the delete (a schedule's) finds it gone and
    // does not make the source again.
    let err = app.registry.refresh(&claimed, None).await.expect_err("the source is gone");
    assert!(matches!(err, StartError::Store(StoreError::SourceGone(_))), "{err:?}");
    let (_, listed) = app.get("/api/sources").await;
    assert_eq!(listed["sources"].as_array().unwrap().len(), 1, "only the other source: {listed}");
}

#[tokio::test]
async fn deleting_a_source_stops_its_running_crawl_first() {
    let app = spawn_app().await;
    let site = fixture_with(SiteOptions { latency: Duration::from_millis(25), ..Default::default() }).await;
    let body = json!({"url": site.url("/"), "crawlType": "recursive", "maxDepth": 10, "concurrency": 4});
    let (id, source) = start(&app, body).await;
    app.wait_for(&id, |s| s["pagesCrawled"].as_u64() >= Some(3)).await;

    let (code, v) = send(&app, reqwest::Method::DELETE, &format!("/api/sources/{source}"), None).await;
    assert_eq!(code, 200, "{v}");
    assert!(v["removed"]["pages"].as_u64().unwrap() >= 3, "{v}");
    assert_eq!(app.get(&format!("/api/crawls/{id}")).await.0, 404);
    assert_eq!(app.store().count_pages(&id).await.unwrap(), 0);
    let requests = site.stats().requests.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(site.stats().requests.load(Ordering::SeqCst), requests, "the crawl no longer fetches");
    assert_eq!(app.store().count_pages(&id).await.unwrap(), 0, "and stores nothing after");
    assert_eq!(app.registry.active_count(), 0);
}

#[tokio::test]
async fn a_source_exports_as_json_lines_and_as_one_markdown_document() {
    let (app, site) = (spawn_app().await, fixture().await);
    let body = json!({"url": site.url("/"), "crawlType": "recursive", "maxDepth": 1});
    let (id, source) = start(&app, body).await;
    app.wait_terminal(&id).await;
    let crawled: Vec<Value> = app.pages(&id).await.into_iter().filter(|p| p["status"] == "crawled").collect();

    let resp = app.client.get(app.url(&format!("/api/sources/{source}/export"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    assert!(resp.headers()["content-disposition"].to_str().unwrap().starts_with("attachment; filename="));
    let text = resp.text().await.unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("one JSON page a line")).collect();
    assert_eq!(lines.len(), crawled.len());
    for (line, page) in lines.iter().zip(&crawled) {
        assert_eq!(line["id"], page["id"], "in the order they were stored");
        assert_eq!(line["url"], page["url"]);
        let (_, full) = app.get(&format!("/api/pages/{}", page["id"])).await;
        assert_eq!(line["markdown"], full["markdown"]);
        let hash = line["contentHash"].as_str().unwrap();
        assert!(hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()), "{hash}");
        assert_eq!(full["contentHash"], hash);
    }

    let resp = app.client.get(app.url(&format!("/api/sources/{source}/export?format=markdown"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/markdown"));
    let doc = resp.text().await.unwrap();
    for page in &crawled {
        assert!(doc.contains(&format!("Source: {}", page["url"].as_str().unwrap())), "every page is in it");
    }
    assert!(doc.contains("Fixture page 1"), "with its text");

    for (path, want) in [
        (format!("/api/sources/{source}/export?format=pdf"), 400),
        ("/api/sources/not-a-source/export".to_string(), 404),
        ("/api/sources/01890000-0000-7000-8000-000000000000/export".to_string(), 404),
        ("/api/sources/not-a-source".to_string(), 404),
        ("/api/sources?limit=0".to_string(), 400),
        ("/api/sources?cursor=zzz".to_string(), 400),
    ] {
        let (code, v) = app.get(&path).await;
        assert_eq!(code, want, "{path}: {v}");
        assert!(v["error"]["code"].is_string(), "{path}: {v}");
    }
}

#[tokio::test]
async fn another_tenant_s_sources_answer_as_missing() {
    let keys = ApiKeys::from_pairs([("key-of-tenant-a", "a"), ("key-of-tenant-b", "b")]);
    let app = spawn_app_with(|c| c.api_keys = keys).await;
    let site = fixture().await;
    let a = app.start_crawl_as("key-of-tenant-a", crawl_body(site.url("/docs/1.html"), "page")).await;
    let b = app.start_crawl_as("key-of-tenant-b", crawl_body(site.url("/docs/1.html"), "page")).await;
    let app = &app;
    let sources = |key: &'static str| async move {
        let resp = app.request_as(key, reqwest::Method::GET, "/api/sources").send().await.unwrap();
        resp.json::<Value>().await.unwrap()["sources"].as_array().unwrap().clone()
    };
    let (mine, theirs) = (sources("key-of-tenant-a").await, sources("key-of-tenant-b").await);
    assert_eq!((mine.len(), theirs.len()), (1, 1), "one source each for the same URL");
    let source = mine[0]["id"].as_str().unwrap().to_string();
    assert_ne!(theirs[0]["id"].as_str().unwrap(), source);
    assert_eq!(mine[0]["lastCrawl"]["id"], a.as_str());
    assert_eq!(theirs[0]["lastCrawl"]["id"], b.as_str());

    for (method, path) in [
        (reqwest::Method::GET, format!("/api/sources/{source}")),
        (reqwest::Method::GET, format!("/api/sources/{source}/export")),
        (reqwest::Method::DELETE, format!("/api/sources/{source}")),
        (reqwest::Method::POST, format!("/api/sources/{source}/refresh")),
    ] {
        let resp = app.request_as("key-of-tenant-b", method.clone(), &path).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{method} {path}");
    }
    let resp = app
        .request_as("key-of-tenant-b", reqwest::Method::PATCH, &format!("/api/sources/{source}"))
        .json(&json!({"name": "mine now"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = app.request_as("key-of-tenant-a", reqwest::Method::GET, &format!("/api/sources/{source}")).send().await;
    let v: Value = resp.unwrap().json().await.unwrap();
    assert_eq!(v["id"], source.as_str(), "the owner still has it, unchanged: {v}");
    assert_ne!(v["name"], "mine now");
}

#[tokio::test]
async fn crawls_of_one_source_at_once_each_reach_every_page_and_it_keeps_each_once() {
    let app = spawn_app().await;
    let site = fixture_with(SiteOptions { pages: 40, validators: true, ..Default::default() }).await;
    let first = app.crawl(json!({"url": site.url("/"), "crawlType": "recursive", "maxDepth": 10})).await;
    let source = first["sourceId"].as_str().unwrap().to_string();
    // Each compares with copies the others move and replace meanwhile.
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(start(&app, json!({"url": site.url("/"), "crawlType": "recursive", "maxDepth": 10})).await.0);
    }
    for id in &ids {
        let fin = app.wait_terminal(id).await;
        assert_eq!(fin["status"], "completed", "{fin}");
        assert_eq!(fin["pagesCrawled"], 40, "{fin}");
    }
    let (_, s) = app.get(&format!("/api/sources/{source}")).await;
    assert_eq!(s["pages"], 40, "{s}");
    let resp = app.client.get(app.url(&format!("/api/sources/{source}/export"))).send().await.unwrap();
    let mut urls: Vec<String> = resp
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["url"].as_str().unwrap().to_string())
        .collect();
    urls.sort();
    urls.dedup();
    assert_eq!(urls.len(), 40);
}
