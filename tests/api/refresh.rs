//! Refreshing a source: a crawl with its settings that keeps what did not
//! change (with its vectors), embeds only new text, and, once it completes,
//! removes what the site no longer has.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

/// `/sitemap.xml` of a 40-page fixture: its pages and nothing more.
const PAGES: usize = 40;

fn small_site(validators: bool) -> SiteOptions {
    SiteOptions { pages: PAGES, validators, ..Default::default() }
}

async fn post(app: &TestApp, path: &str) -> (u16, Value) {
    let resp = app.client.post(app.url(path)).send().await.expect("request");
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

/// Crawls the site's sitemap; answers the final status.
async fn first_crawl(app: &TestApp, site: &FixtureServer) -> Value {
    let fin = app.crawl(json!({"url": site.url("/sitemap.xml"), "crawlType": "sitemap"})).await;
    assert_eq!(fin["status"], "completed", "{fin}");
    fin
}

/// Starts a refresh of `source` and waits for its end.
async fn refreshed(app: &TestApp, source: &str) -> Value {
    let (code, v) = post(app, &format!("/api/sources/{source}/refresh")).await;
    assert_eq!(code, 202, "{v}");
    assert_eq!(v["sourceId"], source);
    app.wait_terminal(v["progressId"].as_str().unwrap()).await
}

async fn search_urls(app: &TestApp, query: &str) -> Vec<String> {
    let body = json!({"query": query, "mode": "text", "limit": 100});
    let resp = app.client.post(app.url("/api/search")).json(&body).send().await.unwrap();
    let v: Value = resp.json().await.unwrap();
    v["results"].as_array().unwrap().iter().map(|r| r["url"].as_str().unwrap().to_string()).collect()
}

async fn exported_urls(app: &TestApp, source: &str) -> Vec<String> {
    let exported = app.client.get(app.url(&format!("/api/sources/{source}/export"))).send().await.unwrap();
    exported
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["url"].as_str().unwrap().to_string())
        .collect()
}

fn inputs_sent(mock: &MockEmbeddings) -> usize {
    mock.batches.lock().unwrap().iter().sum()
}

#[tokio::test]
async fn refreshing_an_unchanged_site_keeps_every_page_and_embeds_nothing() {
    let mock = MockEmbeddings::start(MockMode::Ok).await;
    let config = mock.config(64, 1);
    let app = spawn_app_with(move |c| c.crawler.embedding = config).await;
    let site = fixture_with(small_site(false)).await;
    let first = first_crawl(&app, &site).await;
    assert_eq!(first["pagesNew"], PAGES, "{first}");
    assert_eq!(first["chunksEmbedded"].as_u64().unwrap() as usize, inputs_sent(&mock), "{first}");
    mock.batches.lock().unwrap().clear();

    let source = first["sourceId"].as_str().unwrap();
    let fin = refreshed(&app, source).await;
    assert_eq!(fin["status"], "completed", "{fin}");
    assert_eq!(fin["refresh"], true);
    assert_eq!(fin["pagesCrawled"], PAGES);
    assert_eq!(fin["pagesUnchanged"], PAGES, "{fin}");
    assert_eq!(
        (fin["pagesNew"].as_u64(), fin["pagesChanged"].as_u64(), fin["pagesRemoved"].as_u64()),
        (Some(0), Some(0), Some(0))
    );
    assert_eq!(fin["chunksEmbedded"], 0);
    assert_eq!(inputs_sent(&mock), 0, "nothing went to the embedder");
    assert_eq!(fin["chunksStored"], first["chunksStored"], "the kept chunks are the refresh's");
    assert_eq!(
        app.store().count_content(fin["progressId"].as_str().unwrap()).await.unwrap().0,
        fin["chunksStored"].as_u64().unwrap()
    );

    let (_, s) = app.get(&format!("/api/sources/{source}")).await;
    assert_eq!(s["pages"], PAGES);
    assert_eq!(s["chunks"], first["chunksStored"]);
    assert!(app.store().unembedded(10).await.unwrap().is_empty(), "the kept chunks kept their vectors");
    let body = json!({"query": "page 17 paragraph 1", "mode": "vector", "limit": 3});
    let v: Value = app.client.post(app.url("/api/search")).json(&body).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["results"].as_array().map(Vec::len), Some(3), "vector search still finds the kept chunks: {v}");
}

#[tokio::test]
async fn a_refresh_embeds_only_new_text_and_removes_what_the_site_lost() {
    edits_are_found(false).await;
}

#[tokio::test]
async fn with_validators_a_refresh_fetches_only_what_changed() {
    edits_are_found(true).await;
}

/// A refresh after the site's edits, by content hash or (`validators`) by
/// conditional GETs answered `304`.
async fn edits_are_found(validators: bool) {
    let mock = MockEmbeddings::start(MockMode::Ok).await;
    let config = mock.config(64, 1);
    let app = spawn_app_with(move |c| c.crawler.embedding = config).await;
    let site = fixture_with(small_site(validators)).await;
    let first = first_crawl(&app, &site).await;
    let source = first["sourceId"].as_str().unwrap().to_string();
    let edited: Vec<usize> = (1..PAGES).filter(|i| trawl_fixtures::Site::edited(*i)).collect();
    let removed: Vec<usize> = (1..PAGES).filter(|i| trawl_fixtures::Site::removed(*i)).collect();
    let before_chunks: u64 = {
        let id = first["progressId"].as_str().unwrap();
        let mut n = 0;
        for i in &edited {
            n += app.page(id, &site.url(&trawl_fixtures::Site::path(*i))).await["chunks"].as_u64().unwrap();
        }
        n
    };
    mock.batches.lock().unwrap().clear();

    site.set_revision(1);
    let fin = refreshed(&app, &source).await;
    assert_eq!(fin["status"], "completed", "{fin}");
    assert_eq!(fin["pagesChanged"], edited.len(), "{fin}");
    assert_eq!(fin["pagesNew"], trawl_fixtures::ADDED_PAGES, "{fin}");
    assert_eq!(fin["pagesRemoved"], removed.len(), "{fin}");
    assert_eq!(fin["pagesUnchanged"], PAGES - edited.len() - removed.len(), "{fin}");
    assert_eq!(fin["pagesFailed"], removed.len(), "the removed pages answered 404");
    let not_modified = site.stats().not_modified.load(std::sync::atomic::Ordering::SeqCst) as usize;
    if validators {
        assert_eq!(not_modified, PAGES - edited.len() - removed.len(), "every unchanged page answered 304");
    } else {
        assert_eq!(not_modified, 0);
    }
    let embedded = fin["chunksEmbedded"].as_u64().unwrap();
    assert_eq!(embedded as usize, inputs_sent(&mock), "what was counted is what was sent");
    assert!(embedded >= (edited.len() + trawl_fixtures::ADDED_PAGES) as u64, "{fin}");
    assert!(
        embedded < before_chunks + (trawl_fixtures::ADDED_PAGES * 2) as u64,
        "the edited pages' unchanged chunks reused their vectors: {embedded} embedded, {before_chunks} chunks before"
    );

    let (_, s) = app.get(&format!("/api/sources/{source}")).await;
    assert_eq!(s["pages"], PAGES - removed.len() + trawl_fixtures::ADDED_PAGES, "{s}");
    let found = search_urls(&app, trawl_fixtures::EDIT_WORD).await;
    let want: Vec<String> = edited.iter().map(|i| site.url(&trawl_fixtures::Site::path(*i))).collect();
    assert_eq!(found.len(), want.len(), "each edited page once, in its new version: {found:?}");
    assert!(want.iter().all(|u| found.contains(u)), "{found:?}");
    let found = search_urls(&app, trawl_fixtures::ADDED_WORD).await;
    assert_eq!(found.len(), trawl_fixtures::ADDED_PAGES, "{found:?}");
    let found = search_urls(&app, "Fixture page").await;
    for i in &removed {
        assert!(!found.contains(&site.url(&trawl_fixtures::Site::path(*i))), "page {i} is gone from search");
    }
    assert!(app.store().unembedded(10).await.unwrap().is_empty(), "every chunk has its vector");
}

#[tokio::test]
async fn a_304_keeps_the_page_and_leads_on_through_its_stored_links() {
    let app = spawn_app().await;
    let site = fixture_with(small_site(true)).await;
    let first = app.crawl(json!({"url": site.url("/"), "crawlType": "recursive", "maxDepth": 10})).await;
    assert_eq!(first["status"], "completed", "{first}");
    assert_eq!(first["pagesCrawled"], PAGES);
    let fin = refreshed(&app, first["sourceId"].as_str().unwrap()).await;
    assert_eq!(fin["status"], "completed", "{fin}");
    assert_eq!(fin["pagesCrawled"], PAGES, "every page reached again through the kept links: {fin}");
    assert_eq!(fin["pagesUnchanged"], PAGES);
    assert_eq!(site.stats().not_modified.load(std::sync::atomic::Ordering::SeqCst) as usize, PAGES);
    assert_eq!(fin["pagesRemoved"], 0);
    assert_eq!(fin["chunksStored"], first["chunksStored"]);
    let id = fin["progressId"].as_str().unwrap();
    let page = app.page(id, &site.url("/docs/5.html")).await;
    assert_eq!(page["httpStatus"], 304, "{page}");
    let (_, full) = app.get(&format!("/api/pages/{}", page["id"])).await;
    assert_eq!(full["title"], "Fixture page 5", "the kept copy: {full}");
    assert!(full["markdown"].as_str().unwrap().contains("(page 5, paragraph 0)"), "the kept copy: {full}");
}

#[tokio::test]
async fn a_stopped_refresh_removes_nothing() {
    let app = spawn_app().await;
    let site = fixture_with(SiteOptions { latency: Duration::from_millis(30), ..small_site(false) }).await;
    let first = first_crawl(&app, &site).await;
    let source = first["sourceId"].as_str().unwrap().to_string();
    site.set_revision(1);
    let body = json!({"url": site.url("/sitemap.xml"), "crawlType": "sitemap", "concurrency": 2});
    let (code, _) = app
        .client
        .patch(app.url(&format!("/api/sources/{source}")))
        .json(&json!({"settings": body}))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(code, 200);
    let (code, v) = post(&app, &format!("/api/sources/{source}/refresh")).await;
    assert_eq!(code, 202, "{v}");
    let id = v["progressId"].as_str().unwrap().to_string();
    app.wait_for(&id, |s| s["pagesCrawled"].as_u64() >= Some(3)).await;

    let (code, v) = post(&app, &format!("/api/sources/{source}/refresh")).await;
    assert_eq!(code, 409, "one refresh of a source at a time: {v}");
    assert_eq!(v["error"]["code"], "refresh_running");

    // An export while the refresh replaces pages: each page once, old or new.
    let kept_once = |urls: &[String]| {
        for i in 0..PAGES {
            let url = site.url(&trawl_fixtures::Site::path(i));
            assert_eq!(urls.iter().filter(|u| **u == url).count(), 1, "page {i} is kept once, old or new");
        }
    };
    let urls = exported_urls(&app, &source).await;
    kept_once(&urls);
    let mut seen = urls.clone();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), urls.len(), "no page twice in an export");

    app.stop(&id).await;
    let fin = app.wait_terminal(&id).await;
    assert_eq!(fin["status"], "cancelled");
    assert_eq!(fin["pagesRemoved"], 0);
    kept_once(&exported_urls(&app, &source).await);
    let (code, v) = post(&app, &format!("/api/sources/{source}/refresh")).await;
    assert_eq!(code, 202, "once the stopped one ended, a refresh may start: {v}");
}

async fn patch(app: &TestApp, source: &str, body: Value) -> (u16, Value) {
    let resp = app.client.patch(app.url(&format!("/api/sources/{source}"))).json(&body).send().await.unwrap();
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

/// Waits until the source's newest crawl is another than `than`, and ended.
async fn next_crawl(app: &TestApp, source: &str, than: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, s) = app.get(&format!("/api/sources/{source}")).await;
        if let Some(id) = s["lastCrawl"]["id"].as_str().filter(|id| *id != than) {
            return app.wait_terminal(id).await;
        }
        assert!(tokio::time::Instant::now() < deadline, "no scheduled refresh started: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn fast_schedule(c: &mut trawl::config::Config) {
    c.schedule.tick = Duration::from_millis(50);
}

#[tokio::test]
async fn a_schedule_starts_a_refresh_when_due_and_moves_on() {
    let app = spawn_app_with(fast_schedule).await;
    let site = fixture_with(small_site(false)).await;
    let first = first_crawl(&app, &site).await;
    let (source, first_id) = (first["sourceId"].as_str().unwrap(), first["progressId"].as_str().unwrap());

    for (body, why) in [
        (json!({"refreshEvery": "10s"}), "under a minute"),
        (json!({"refreshEvery": "often"}), "not a duration"),
        (json!({"cron": "every night"}), "not cron"),
        (json!({"refreshEvery": "1h", "cron": "0 3 * * *"}), "both"),
        (json!({"nextRefreshAt": "2026-01-01T00:00:00Z"}), "no schedule"),
        (json!({"nextRefreshAt": "tomorrow"}), "not a time"),
    ] {
        let (code, v) = patch(&app, source, body).await;
        assert_eq!(code, 400, "{why}: {v}");
    }
    let (code, v) = patch(&app, source, json!({"refreshEvery": "6h"})).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["refreshEvery"], "6h");
    assert!(v["cron"].is_null());
    let next = chrono::DateTime::parse_from_rfc3339(v["nextRefreshAt"].as_str().unwrap()).unwrap();
    let in_hours = (next.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_minutes();
    assert!((355..=360).contains(&in_hours), "six hours from now: {v}");

    // Due now: one instance's scheduler starts it, as a refresh.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (code, _) = patch(&app, source, json!({"nextRefreshAt": now})).await;
    assert_eq!(code, 200);
    let fin = next_crawl(&app, source, first_id).await;
    assert_eq!(fin["status"], "completed", "{fin}");
    assert_eq!(fin["refresh"], true);
    assert_eq!(fin["pagesUnchanged"], PAGES);
    let (_, s) = app.get(&format!("/api/sources/{source}")).await;
    let next = chrono::DateTime::parse_from_rfc3339(s["nextRefreshAt"].as_str().unwrap()).unwrap();
    assert!(next.with_timezone(&chrono::Utc) > chrono::Utc::now() + chrono::Duration::hours(5), "moved on: {s}");

    let (_, v) = patch(&app, source, json!({"cron": "0 3 * * *"})).await;
    assert_eq!((v["cron"].as_str(), v["refreshEvery"].as_str()), (Some("0 3 * * *"), None), "{v}");
    assert!(v["nextRefreshAt"].as_str().unwrap().contains("T03:00:00"), "{v}");
    let (_, v) = patch(&app, source, json!({"cron": null})).await;
    assert!(v["cron"].is_null() && v["nextRefreshAt"].is_null(), "no schedule left: {v}");
}

#[tokio::test]
async fn two_instances_start_a_due_refresh_once() {
    // It makes its own PostgreSQL database either way: once is enough.
    if on_postgres() {
        return;
    }
    let url = crate::pg::fresh_database_url().await;
    let a = spawn_app_url(&url, fast_schedule).await;
    let b = spawn_app_url(&url, fast_schedule).await;
    let site = fixture_with(small_site(false)).await;
    let first = first_crawl(&a, &site).await;
    let (source, first_id) = (first["sourceId"].as_str().unwrap(), first["progressId"].as_str().unwrap());
    let (code, _) = patch(&b, source, json!({"refreshEvery": "1h"})).await;
    assert_eq!(code, 200);
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    patch(&b, source, json!({"nextRefreshAt": now})).await;
    let fin = next_crawl(&a, source, first_id).await;
    assert_eq!(fin["status"], "completed", "{fin}");
    // Both schedulers have looked many times since.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let crawls = a.store().source_crawls(source).await.unwrap();
    assert_eq!(crawls.len(), 2, "the first crawl and one refresh: {crawls:?}");
}
