//! Search over crawled fixtures, code-example lookup, and the embedding
//! paths: local by default, and async-openai against a loopback stand-in.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

async fn crawled_fixture(app: &TestApp, site: &FixtureServer) -> Vec<String> {
    let mut ids = Vec::new();
    for (path, kind) in [("/sitemap.xml", "sitemap"), ("/code/examples.html", "page"), ("/llms.txt", "llms_txt")] {
        let id = app.start_crawl(json!({"url": site.url(path), "crawlType": kind})).await;
        assert_eq!(app.wait_terminal(&id).await["status"], "completed");
        ids.push(id);
    }
    ids
}

async fn search(app: &TestApp, body: Value) -> (u16, Value) {
    let resp = app.client.post(app.url("/api/search")).json(&body).send().await.unwrap();
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn search_returns_the_right_fixture_page_first_in_every_mode_whatever_the_limit() {
    let (app, site) = (spawn_app().await, fixture().await);
    crawled_fixture(&app, &site).await;
    let cases = [
        ("count words with a HashMap", "/code/examples.html"),
        ("how to crawl the fixture site guide", "/docs/guide.md"),
        ("page 123 paragraph 2", "/docs/123.html"),
        ("load_pages reads every crawled page below a folder", "/code/examples.html"),
    ];
    for mode in ["hybrid", "text", "vector"] {
        for (query, path) in cases {
            let (code, v) = search(&app, json!({"query": query, "mode": mode, "limit": 5})).await;
            assert_eq!(code, 200, "{v}");
            let results = v["results"].as_array().unwrap();
            assert!(!results.is_empty(), "{mode} {query}: no results");
            assert_eq!(results[0]["url"], site.url(path), "{mode} '{query}': {:#?}", &results[..results.len().min(3)]);
            for key in ["chunkId", "url", "title", "content", "score"] {
                assert!(results[0].get(key).is_some(), "{key} missing");
            }
        }
        // Asking for more does not reorder the first results (hybrid
        // normalises scores over the same candidates up to 50 results).
        let first = |v: &Value| -> Vec<(Value, Value)> {
            let hits = v["results"].as_array().unwrap().iter().take(5);
            hits.map(|r| (r["chunkId"].clone(), r["score"].clone())).collect()
        };
        let (_, five) = search(&app, json!({"query": "crawl the pages", "mode": mode, "limit": 5})).await;
        let (_, fifty) = search(&app, json!({"query": "crawl the pages", "mode": mode, "limit": 50})).await;
        assert_eq!(first(&five).len(), 5, "{mode}: {five}");
        assert_eq!(first(&five), first(&fifty), "{mode}");
    }
}

#[tokio::test]
async fn search_filters_by_crawl_and_source_and_refuses_bad_input() {
    let (app, site) = (spawn_app().await, fixture().await);
    let ids = crawled_fixture(&app, &site).await;
    let (_, v) = search(&app, json!({"query": "count words", "progressId": ids[0]})).await;
    assert!(v["results"].as_array().unwrap().iter().all(|r| r["url"] != site.url("/code/examples.html")));
    let (_, v) = search(&app, json!({"query": "count words", "progress_id": ids[1], "mode": "text"})).await;
    assert!(v["results"].as_array().unwrap().iter().all(|r| r["url"] == site.url("/code/examples.html")));
    let (_, v) = search(&app, json!({"query": "count words", "source": "elsewhere.invalid"})).await;
    assert_eq!(v["results"], json!([]));
    // The host, written as host:port or as a URL, matches the pages of the host.
    let authority = site.url("/").trim_start_matches("http://").trim_end_matches('/').to_string();
    for source in ["127.0.0.1".to_string(), authority.clone(), site.url("/docs/")] {
        let (code, v) = search(&app, json!({"query": "count words", "source": source, "mode": "text"})).await;
        assert_eq!(code, 200, "{v}");
        assert!(!v["results"].as_array().unwrap().is_empty(), "source {source} matches: {v}");
    }
    for bad in [
        json!({"query": "x", "source": ""}),
        json!({"query": "x", "source": "http://"}),
        json!({"query": ""}),
        json!({"query": "x", "limit": 0}),
        json!({"query": "x", "mode": "psychic"}),
        json!({"query": 5}),
        json!({"q": "x"}),
    ] {
        let (code, v) = search(&app, bad.clone()).await;
        assert_eq!(code, 400, "{bad}: {v}");
        assert!(v["error"]["code"].is_string());
    }
}

#[tokio::test]
async fn code_examples_can_be_found_by_language_and_query() {
    let (app, site) = (spawn_app().await, fixture().await);
    crawled_fixture(&app, &site).await;
    let (code, v) = app.get("/api/code-examples?language=python").await;
    assert_eq!(code, 200);
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{v}");
    assert!(results[0]["code"].as_str().unwrap().contains("def load_pages"));
    for key in ["id", "url", "language", "code", "contextBefore", "contextAfter", "score"] {
        assert!(results[0].get(key).is_some(), "{key} missing");
    }
    let (_, v) = app.get("/api/code-examples?query=count_words%20HashMap").await;
    assert_eq!(v["results"][0]["language"], "rust", "{v}");
    let (code, _) = app.get("/api/code-examples?limit=0").await;
    assert_eq!(code, 400);
}

#[tokio::test]
async fn the_openai_embedder_batches_retries_a_429_and_stores_every_vector() {
    let mock = MockEmbeddings::start(MockMode::FirstRateLimited).await;
    let config = mock.config(16, 3);
    let app = spawn_app_with(move |c| c.crawler.embedding = config).await;
    let site = fixture().await;
    let s = app.crawl(json!({"url": site.url("/llms.txt"), "crawlType": "llms_txt"})).await;
    assert_eq!(s["status"], "completed", "{s}");
    assert!(s["chunksStored"].as_u64().unwrap() > 0);
    assert_eq!(s["chunksUnembedded"], 0, "{s}");
    let batches = mock.batches.lock().unwrap().clone();
    assert!(batches.len() >= 2, "a 429 and then success: {batches:?}");
    assert!(batches.iter().all(|n| *n <= 16 && *n > 0), "batches of at most 16: {batches:?}");
    assert!(app.store().unembedded(1000).await.unwrap().is_empty());
    let (code, v) = search(&app, json!({"query": "how to crawl the fixture site guide", "mode": "vector"})).await;
    assert_eq!(code, 200);
    assert_eq!(v["results"][0]["url"], site.url("/docs/guide.md"), "{v}");
}

#[tokio::test]
async fn a_permanent_500_stores_chunks_without_vectors_and_embed_missing_fills_them() {
    let mock = MockEmbeddings::start(MockMode::AlwaysFail).await;
    let config = mock.config(64, 1);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("trawl.db");
    let app = spawn_app_on(&db, move |c| c.crawler.embedding = config).await;
    let site = fixture().await;
    let s = app.crawl(json!({"url": site.url("/llms.txt"), "crawlType": "llms_txt"})).await;
    assert_eq!(s["status"], "completed", "the crawl goes on: {s}");
    let chunks = s["chunksStored"].as_u64().unwrap();
    assert!(chunks > 0);
    assert_eq!(s["chunksUnembedded"], chunks, "{s}");
    let missing = app.store().unembedded(10_000).await.unwrap().len() as u64;
    assert!(missing >= chunks, "chunks and code examples kept without vectors: {missing}");
    app.shutdown().await;

    mock.set_mode(MockMode::Ok);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["embed", "--missing", "--embedder", "openai", "--embedding-model", "mock-embed"])
        .args(["--embedding-base-url", &mock.base_url, "--embedding-retries", "1", "--database"])
        .arg(&db)
        .env("TRAWL_EMBEDDING_API_KEY", "test-key")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("embedded {missing} ")), "{stdout}");
    let store = trawl::store::connect(&db.display().to_string(), None).await.unwrap();
    assert!(store.unembedded(10_000).await.unwrap().is_empty(), "nothing is left without a vector");
}

#[tokio::test]
async fn cli_search_prints_the_best_match() {
    let site = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("trawl.db");
    {
        let app = spawn_app_on(&db, |_| {}).await;
        app.crawl(json!({"url": site.url("/code/examples.html"), "crawlType": "page"})).await;
        app.shutdown().await;
    }
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["search", "count words in Rust", "--embedder", "lexical", "--limit", "1", "--database"])
        .arg(&db)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.starts_with("1. Code examples"), "{stdout}");
    assert!(stdout.contains(&site.url("/code/examples.html")));
}

#[tokio::test]
async fn searches_past_the_limit_and_its_queue_are_answered_503_busy_with_retry_after() {
    let mock = MockEmbeddings::start(MockMode::Stall).await;
    let config = mock.config(16, 0);
    let app = spawn_app_with(move |c| {
        c.crawler.embedding = config;
        c.search = trawl::search::SearchSettings { max_concurrent: 1, max_waiting: 0, ..Default::default() };
    })
    .await;
    let first = {
        let (client, url) = (app.client.clone(), app.url("/api/search"));
        tokio::spawn(async move {
            client.post(url).json(&json!({"query": "slow meaning", "mode": "hybrid"})).send().await.unwrap().status()
        })
    };
    // The first search holds the only turn while the embedder answers.
    while mock.batches.lock().unwrap().is_empty() {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let resp = app
        .client
        .post(app.url("/api/search"))
        .json(&json!({"query": "anything", "mode": "text"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["code"], "busy", "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("try again"), "{e}");
    assert_eq!(first.await.unwrap(), 200);
    let (code, _) = search(&app, json!({"query": "anything", "mode": "text"})).await;
    assert_eq!(code, 200, "a turn is free again");
}

/// Waits until the embedded store's vector graph holds every stored vector;
/// answers how many it holds.
async fn index_caught_up(app: &TestApp) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (code, v) = app.get("/readyz").await;
        assert_eq!(code, 200, "{v}");
        let index = &v["vectorIndex"];
        assert!(index.is_object(), "the embedded store shows its vector index: {v}");
        if index["ready"] == true && index["behind"] == 0 {
            return index["vectors"].as_u64().unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "the vector index did not catch up: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The URLs a vector search finds first, best first.
async fn nearest(app: &TestApp, query: &str) -> Vec<String> {
    let (code, v) = search(app, json!({"query": query, "mode": "vector", "limit": 5})).await;
    assert_eq!(code, 200, "{v}");
    v["results"].as_array().unwrap().iter().map(|r| r["url"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn the_vector_index_follows_deletes_and_recrawls_and_is_kept_across_a_restart() {
    if on_postgres() {
        return; // PostgreSQL's own HNSW index has its tests; this one is the embedded store's.
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("trawl.db");
    let (app, site) = (spawn_app_on(&db, |_| {}).await, fixture().await);
    let start = |body: Value| {
        let app = &app;
        async move {
            let v: Value = app.post_crawl(body).await.json().await.unwrap();
            let (id, source) = (v["progressId"].as_str().unwrap(), v["sourceId"].as_str().unwrap());
            assert_eq!(app.wait_terminal(id).await["status"], "completed");
            source.to_string()
        }
    };
    let docs = start(json!({"url": site.url("/sitemap.xml"), "crawlType": "sitemap"})).await;
    start(json!({"url": site.url("/code/examples.html"), "crawlType": "page"})).await;
    let all = index_caught_up(&app).await;
    assert!(all > 0);
    assert_eq!(nearest(&app, "page 123 paragraph 2").await[0], site.url("/docs/123.html"));

    // Deleted rows leave the graph, and searches never return them.
    let resp = app.client.delete(app.url(&format!("/api/sources/{docs}"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let found = nearest(&app, "page 123 paragraph 2").await;
    assert!(found.iter().all(|u| u == &site.url("/code/examples.html")), "only the other source is left: {found:?}");
    let left = index_caught_up(&app).await;
    assert!(left < all && left > 0, "{left} of {all} vectors left");
    assert!(nearest(&app, "page 123 paragraph 2").await.iter().all(|u| u == &site.url("/code/examples.html")));

    // Crawled again, they are found again, and the graph holds them.
    start(json!({"url": site.url("/sitemap.xml"), "crawlType": "sitemap"})).await;
    assert_eq!(nearest(&app, "page 123 paragraph 2").await[0], site.url("/docs/123.html"), "found before indexed");
    assert_eq!(index_caught_up(&app).await, all);
    assert_eq!(nearest(&app, "page 123 paragraph 2").await[0], site.url("/docs/123.html"));

    // A restart loads the saved graph instead of building it again.
    app.shutdown().await;
    let mut graph = db.as_os_str().to_owned();
    graph.push(".vectors");
    assert!(std::path::Path::new(&graph).exists(), "the graph is saved beside the database");
    let app = spawn_app_on(&db, |_| {}).await;
    assert_eq!(index_caught_up(&app).await, all);
    assert_eq!(nearest(&app, "page 123 paragraph 2").await[0], site.url("/docs/123.html"));
}
