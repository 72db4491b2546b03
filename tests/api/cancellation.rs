use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;

use trawl::progress::CrawlState;

use crate::helpers::*;

fn slow_site() -> SiteOptions {
    SiteOptions { latency: Duration::from_millis(25), ..Default::default() }
}

#[tokio::test]
async fn stop_mid_crawl_gives_stopping_then_cancelled_and_stores_nothing_after() {
    let app = spawn_app().await;
    let site = fixture_with(slow_site()).await;
    let id = app
        .start_crawl(json!({"url": site.url("/"), "crawlType": "recursive", "maxDepth": 10, "concurrency": 4}))
        .await;
    app.wait_for(&id, |s| s["pagesCrawled"].as_u64() >= Some(5)).await;

    let (code, stopping) = app.stop(&id).await;
    assert_eq!(code, 202, "{stopping}");
    assert_eq!(typed(&stopping).status, CrawlState::Stopping);

    let fin = app.finished(&id).await;
    assert_eq!(fin.status, CrawlState::Cancelled, "{fin:?}");
    assert!(fin.finished_at.is_some());
    let stored_at_cancel = app.store().count_pages(&id).await.unwrap();
    let content_at_cancel = app.store().count_content(&id).await.unwrap();
    assert_eq!(content_at_cancel, (fin.chunks_stored, fin.code_examples));
    assert_eq!(stored_at_cancel, fin.pages_done(), "counters match the stored pages");
    assert!(fin.pages_crawled < 300, "the crawl really stopped early");

    // Whatever was in flight is gone: nothing more arrives at the site or the store.
    let requests = site.stats().requests.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.store().count_pages(&id).await.unwrap(), stored_at_cancel);
    assert_eq!(app.store().count_content(&id).await.unwrap(), content_at_cancel, "no chunk stored after cancelled");
    assert_eq!(site.stats().requests.load(Ordering::SeqCst), requests);
    assert_eq!(app.registry.active_count(), 0, "the registry entry is gone");
    assert_eq!(app.crawl_status(&id).await, fin, "served from the store, unchanged");
}

#[tokio::test]
async fn stop_aborts_requests_in_flight_instead_of_awaiting_them() {
    let app = spawn_app_with(|c| c.crawler.request_timeout = Duration::from_secs(120)).await;
    let site = fixture().await; // /trouble/slow answers after 60 s
    let id = app.start_crawl(crawl_body(site.url("/trouble/slow"), "page")).await;
    while site.stats().slow_started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (code, _) = app.stop(&id).await;
    assert_eq!(code, 202);
    assert_eq!(app.finished(&id).await.status, CrawlState::Cancelled);
    assert_eq!(site.stats().slow_finished.load(Ordering::SeqCst), 0, "ended while the page was still loading");
    assert_eq!(app.store().count_pages(&id).await.unwrap(), 0);
}

#[tokio::test]
async fn stopping_twice_answers_the_same() {
    let app = spawn_app_with(|c| c.crawler.request_timeout = Duration::from_secs(120)).await;
    let site = fixture().await;
    let id = app.start_crawl(crawl_body(site.url("/trouble/slow"), "page")).await;
    let (first, a) = app.stop(&id).await;
    let (second, b) = app.stop(&id).await;
    assert!(first == 202 || first == 200);
    for s in [&a, &b] {
        assert!(matches!(typed(s).status, CrawlState::Stopping | CrawlState::Cancelled), "{s}");
    }
    let fin = app.wait_terminal(&id).await;
    let (c1, x) = app.stop(&id).await;
    let (c2, y) = app.stop(&id).await;
    assert_eq!((c1, c2), (200, 200));
    assert_eq!(x, y);
    assert_eq!(x, fin);
    let _ = second;
}

#[tokio::test]
async fn delete_stops_a_crawl_like_post_stop() {
    let app = spawn_app_with(|c| c.crawler.request_timeout = Duration::from_secs(120)).await;
    let site = fixture().await;
    let id = app.start_crawl(crawl_body(site.url("/trouble/slow"), "page")).await;
    let resp = app.client.delete(app.url(&format!("/api/crawls/{id}"))).send().await.unwrap();
    assert!(resp.status() == 202 || resp.status() == 200);
    assert_eq!(app.finished(&id).await.status, CrawlState::Cancelled);
}

#[tokio::test]
async fn stop_of_an_unknown_id_is_not_found() {
    let app = spawn_app().await;
    for id in ["01a1f000-0000-7000-8000-000000000000", "not-an-id"] {
        let (code, body) = app.stop(id).await;
        assert_eq!(code, 404);
        assert_eq!(body["error"]["code"], "not_found");
        let resp = app.client.delete(app.url(&format!("/api/crawls/{id}"))).send().await.unwrap();
        assert_eq!(resp.status(), 404);
        let (code, _) = app.get(&format!("/api/crawls/{id}")).await;
        assert_eq!(code, 404);
    }
}

#[tokio::test]
async fn a_queued_crawl_can_be_stopped_before_it_starts() {
    let app = spawn_app_with(|c| {
        c.crawler.max_crawls = 1;
        c.crawler.request_timeout = Duration::from_secs(120);
    })
    .await;
    let site = fixture().await;
    let running = app.start_crawl(crawl_body(site.url("/trouble/slow"), "page")).await;
    let queued = app.start_crawl(crawl_body(site.url("/"), "page")).await;
    assert_eq!(app.crawl_status(&queued).await.status, CrawlState::Queued);
    let (code, _) = app.stop(&queued).await;
    assert!(code == 202 || code == 200);
    let fin = app.finished(&queued).await;
    assert_eq!(fin.status, CrawlState::Cancelled);
    assert_eq!(fin.started_at, None);
    app.stop(&running).await;
    assert_eq!(app.finished(&running).await.status, CrawlState::Cancelled);
}
