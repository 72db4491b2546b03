//! What a crawl says about itself while it runs and when it ends: an honest
//! percentage, a log line per step, the budget that cut it, duplicates, and
//! one event numbering on every surface.

use serde_json::{Value, json};

use crate::helpers::*;

/// Every `crawl_progress` of a crawl over SSE, from the first to the last.
async fn progress_events(app: &TestApp, id: &str) -> Vec<Value> {
    let resp = app.client.get(app.url(&format!("/api/crawls/{id}/events"))).send().await.unwrap();
    let mut sse = SseReader::new(resp);
    let mut out = Vec::new();
    while let Some(f) = sse.next().await {
        let data: Value = serde_json::from_str(&f.data).unwrap();
        assert!(data["eventId"].as_u64().is_some_and(|n| n > 0), "{:?} carries an eventId: {data}", f.event);
        assert_eq!(f.id.as_deref(), Some(data["eventId"].to_string().as_str()), "SSE id and eventId agree");
        assert!(data["emittedAt"].is_string(), "{:?} carries emittedAt: {data}", f.event);
        if f.event.as_deref() == Some("crawl_progress") {
            out.push(data);
        }
    }
    out
}

fn done(s: &Value) -> u64 {
    let (c, f, k) = counts(s);
    c + f + k
}

#[tokio::test]
async fn a_recursive_crawl_s_percentage_rises_with_its_pages_and_reaches_100_only_at_the_end() {
    let app = spawn_app().await;
    // 1 + 14 + 196 + 2,744 pages within depth 3, 45 more at depth 4.
    let site = fixture_with(SiteOptions { pages: 3000, fanout: 14, paragraphs: 1, ..Default::default() }).await;
    let id =
        app.start_crawl(json!({"url": site.url("/"), "crawlType": "recursive", "maxDepth": 5, "maxPages": 5000})).await;
    let events = progress_events(&app, &id).await;
    let last = events.last().unwrap();
    assert_eq!(last["status"], "completed", "{last}");
    assert_eq!(last["stage"], "done");
    assert_eq!(last["percentage"], 100.0);
    assert!(last["limitReached"].is_null(), "the whole site fit: {last}");
    let total = done(last);
    assert!(total >= 3000, "{last}");

    let p: Vec<f64> = events.iter().map(|e| e["percentage"].as_f64().unwrap()).collect();
    assert!(p.windows(2).all(|w| w[0] <= w[1]), "never decreases: {p:?}");
    assert!(p[..p.len() - 1].iter().all(|&x| x < 100.0), "100 only at the end: {p:?}");
    // No plateau longer than a fifth of the pages.
    let mut since = (p[0], 0u64);
    for e in &events {
        let (pct, d) = (e["percentage"].as_f64().unwrap(), done(e));
        if pct > since.0 {
            since = (pct, d);
        }
        assert!(d - since.1 <= total / 5, "{} % held from {} to {d} pages of {total}", since.0, since.1);
    }
    // Halfway through the pages, the percentage says about as much.
    let mid = events.iter().find(|e| done(e) >= total / 2).unwrap();
    let at_mid = mid["percentage"].as_f64().unwrap();
    assert!((25.0..=75.0).contains(&at_mid), "{at_mid} % at {} of {total} pages", done(mid));

    let running: Vec<&Value> =
        events.iter().filter(|e| e["status"] == "running" && e["stage"] == "crawling" && done(e) > 0).collect();
    assert!(!running.is_empty());
    for e in &running {
        let log = e["log"].as_str().unwrap();
        assert!(
            log.contains(&format!("{} pages crawled", e["pagesCrawled"]))
                && log.contains("waiting")
                && log.contains(" of 5"),
            "the log line says what is happening now: {log}"
        );
    }
    assert!(running.iter().any(|e| e["pagesQueued"].as_u64() > Some(100)), "pagesQueued counts what waits");
}

#[tokio::test]
async fn a_crawl_cut_by_max_pages_says_so() {
    let (app, site) = (spawn_app().await, fixture().await);
    let s = app.crawl(json!({"url": site.url("/"), "crawlType": "recursive", "maxDepth": 10, "maxPages": 40})).await;
    assert_eq!(s["status"], "completed");
    assert_eq!(s["limitReached"], "maxPages", "{s}");
    assert_eq!(done(&s), 40);
    assert!(s["message"].as_str().unwrap().contains("maxPages budget (40)"), "{s}");
}

#[tokio::test]
async fn a_crawl_cut_by_max_depth_says_so_and_a_whole_crawl_names_no_limit() {
    let (app, site) = (spawn_app().await, fixture().await);
    let s = app.crawl(json!({"url": site.url("/"), "crawlType": "recursive", "maxDepth": 1})).await;
    assert_eq!(s["limitReached"], "maxDepth", "{s}");
    assert!(s["message"].as_str().unwrap().contains("maxDepth (1)"), "{s}");
    let whole = app.crawl(json!({"url": site.url("/dup/"), "crawlType": "recursive"})).await;
    assert_eq!(whole["status"], "completed");
    assert!(whole["limitReached"].is_null(), "{whole}");
}

#[tokio::test]
async fn one_page_under_several_urls_is_kept_once_and_the_others_name_it() {
    let (app, site) = (spawn_app().await, fixture().await);
    let id = app.start_crawl(json!({"url": site.url("/dup/"), "crawlType": "recursive"})).await;
    let s = app.wait_terminal(&id).await;
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(counts(&s), (2, 0, 2), "/dup/ and other.html kept; index.html and print.html are copies: {s}");
    let index = app.page(&id, &site.url("/dup/index.html")).await;
    assert_eq!(index["status"], "skipped");
    let why = index["error"].as_str().unwrap();
    assert!(why.starts_with("duplicate:") && why.contains(&site.url("/dup/")), "{why}");
    let print = app.page(&id, &site.url("/dup/print.html")).await;
    assert!(print["error"].as_str().unwrap().contains("rel=canonical"), "{print}");
    assert_eq!(app.page(&id, &site.url("/dup/")).await["status"], "crawled");
}

#[tokio::test]
async fn a_finished_crawl_read_back_from_the_store_keeps_its_final_event_id_on_every_surface() {
    if on_postgres() {
        return; // a restart on the same file; the store contract covers PostgreSQL
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("trawl.db");
    let site = fixture().await;
    let app = spawn_app_on(&db, |_| {}).await;
    let id = app.start_crawl(json!({"url": site.url("/"), "crawlType": "recursive", "maxDepth": 1})).await;
    let live = progress_events(&app, &id).await;
    let final_id = live.last().unwrap()["eventId"].as_u64().unwrap();
    app.shutdown().await;

    // A new process knows the crawl only from the store.
    let app = spawn_app_on(&db, |_| {}).await;
    let resp = app.client.get(app.url(&format!("/api/crawls/{id}/events"))).send().await.unwrap();
    let mut sse = SseReader::new(resp);
    let only = sse.next().await.unwrap();
    assert_eq!(only.id, Some(final_id.to_string()), "SSE numbers it as before");
    assert!(sse.next().await.is_none());
    let data: Value = serde_json::from_str(&only.data).unwrap();
    assert_eq!(data["eventId"], final_id);
    let again = app
        .client
        .get(app.url(&format!("/api/crawls/{id}/events")))
        .header("Last-Event-ID", final_id.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 204, "a client that saw the final event is told so");

    let lines = run_client(Client::Js, "watch", &app.address, &[&id]).await;
    let events = events_of(&lines);
    assert_eq!(events[0].1["eventId"], final_id, "the socket snapshot too: {events:?}");
}
