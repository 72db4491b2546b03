//! Reading what a crawl stored: page ids in listings, a page's markdown,
//! chunks and code examples.

use serde_json::{Value, json};
use trawl::auth::ApiKeys;

use crate::helpers::*;

#[tokio::test]
async fn a_page_s_markdown_chunks_and_code_examples_can_be_read_by_its_id() {
    let (app, site) = (spawn_app().await, fixture().await);
    let id = app.start_crawl(crawl_body(site.url("/code/examples.html"), "page")).await;
    assert_eq!(app.wait_terminal(&id).await["status"], "completed");
    let listed = app.page(&id, &site.url("/code/examples.html")).await;
    let page_id = listed["id"].as_i64().expect("listings give each page an id");
    assert!(listed.get("markdown").is_none(), "markdown only when asked: {listed}");

    let (code, page) = app.get(&format!("/api/pages/{page_id}")).await;
    assert_eq!(code, 200, "{page}");
    assert_eq!(page["id"], page_id);
    assert_eq!(page["crawlId"], id.as_str());
    assert_eq!(page["url"], site.url("/code/examples.html"));
    assert_eq!(page["status"], "crawled");
    assert!(page["fetchedAt"].as_str().unwrap().ends_with('Z'));
    let markdown = page["markdown"].as_str().unwrap();
    assert!(markdown.contains("def load_pages"), "{markdown}");
    let chunks = page["chunks"].as_array().unwrap();
    assert_eq!(chunks.len() as u64, listed["chunks"].as_u64().unwrap());
    let indexes: Vec<u64> = chunks.iter().map(|c| c["index"].as_u64().unwrap()).collect();
    assert_eq!(indexes, (0..chunks.len() as u64).collect::<Vec<_>>(), "chunks in order");
    assert!(chunks.iter().all(|c| c["content"].is_string() && c["headingPath"].is_string()));
    let code = page["codeExamples"].as_array().unwrap();
    assert_eq!(code.len() as u64, listed["codeExamples"].as_u64().unwrap());
    assert!(code.iter().any(|e| e["language"] == "python" && e["code"].as_str().unwrap().contains("def load_pages")));

    let (_, with) = app.get(&format!("/api/crawls/{id}/pages?include=markdown")).await;
    assert_eq!(with["pages"][0]["markdown"].as_str(), Some(markdown));
}

#[tokio::test]
async fn bad_page_ids_and_includes_get_clear_errors() {
    let (app, site) = (spawn_app().await, fixture().await);
    let id = app.start_crawl(crawl_body(site.url("/docs/1.html"), "page")).await;
    app.wait_terminal(&id).await;
    for (path, want) in [
        ("/api/pages/999999999".to_string(), 404),
        ("/api/pages/0".to_string(), 404),
        ("/api/pages/-3".to_string(), 404),
        ("/api/pages/abc".to_string(), 404),
        ("/api/pages/99999999999999999999999".to_string(), 404),
        (format!("/api/crawls/{id}/pages?include=html"), 400),
    ] {
        let (code, v) = app.get(&path).await;
        assert_eq!(code, want, "{path}: {v}");
        assert!(v["error"]["code"].is_string() && v["error"]["message"].is_string(), "{path}: {v}");
    }
}

#[tokio::test]
async fn another_tenant_s_page_answers_as_missing() {
    let keys = ApiKeys::from_pairs([("key-of-tenant-a", "a"), ("key-of-tenant-b", "b")]);
    let app = spawn_app_with(|c| c.api_keys = keys).await;
    let site = fixture().await;
    let id = app.start_crawl_as("key-of-tenant-a", crawl_body(site.url("/docs/1.html"), "page")).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let page_id = loop {
        let v: Value = app
            .request_as("key-of-tenant-a", reqwest::Method::GET, &format!("/api/crawls/{id}/pages"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(p) = v["pages"].as_array().and_then(|p| p.first()) {
            break p["id"].as_i64().unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "no page stored: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let read = |key: &'static str| app.request_as(key, reqwest::Method::GET, &format!("/api/pages/{page_id}")).send();
    assert_eq!(read("key-of-tenant-a").await.unwrap().status(), 200);
    let other = read("key-of-tenant-b").await.unwrap();
    assert_eq!(other.status(), 404);
    let body: Value = other.json().await.unwrap();
    assert_eq!(body["error"]["code"], json!("not_found"));
}
