use serde_json::json;
use trawl_fixtures::trouble_expectations;

use crate::helpers::*;

#[tokio::test]
async fn every_misbehaving_route_ends_as_a_page_with_a_reason_and_the_crawl_completes() {
    let app = spawn_app_with(|c| c.crawler.request_timeout = std::time::Duration::from_millis(1500)).await;
    let site = fixture().await;
    let id = app.start_crawl(json!({"url": site.url("/trouble/"), "crawlType": "recursive", "maxDepth": 1})).await;
    let s = app.wait_terminal(&id).await;
    assert_eq!(s["status"], "completed", "{s}");
    // /trouble/ itself plus its twelve links.
    assert_eq!(counts(&s), (5, 7, 1), "{s}");
    for (path, outcome) in trouble_expectations() {
        let page = app.page(&id, &site.url(path)).await;
        assert_eq!(page["status"], outcome, "{path}: {page}");
        if outcome != "crawled" {
            assert!(page["error"].as_str().is_some_and(|e| !e.is_empty()), "{path} has a reason: {page}");
        }
    }
    let pages = app.pages(&id).await;
    let reason = |path: &str| {
        let url = site.url(path);
        let page = pages.iter().find(|p| p["url"] == url).unwrap();
        page["error"].as_str().unwrap_or_default().to_string()
    };
    for (path, code) in [
        ("/trouble/redirect-loop", "redirect_loop"),
        ("/trouble/redirect-chain/0", "too_many_redirects"),
        ("/trouble/redirect-away", "redirect_out_of_scope"),
        ("/trouble/missing", "http_status: HTTP 404"),
        ("/trouble/error", "http_status: HTTP 500"),
        ("/trouble/slow", "timeout"),
        ("/trouble/huge", "too_large"),
        ("/trouble/file.zip", "unsupported_content_type"),
    ] {
        assert!(reason(path).starts_with(code), "{path}: {}", reason(path));
    }

    let redirected = app.page(&id, &site.url("/trouble/redirect")).await;
    assert_eq!(redirected["finalUrl"], site.url("/trouble/target.html"));
    assert_eq!(redirected["title"], "Redirect target");
    // Invalid UTF-8 is kept, with the bad bytes replaced: the page is not lost.
    let latin = app.store().get_page(&id, &site.url("/trouble/latin.html")).await.unwrap().unwrap();
    let text = latin.content.unwrap();
    assert!(text.contains("Valid text") && text.contains('\u{fffd}'), "{text}");
    let notes = app.store().get_page(&id, &site.url("/trouble/notes.txt")).await.unwrap().unwrap();
    assert_eq!(notes.content.as_deref(), Some("Plain notes.\nKept as they are.\n"));
    assert_eq!(notes.format.as_deref(), Some("text"));
    assert_eq!(site.hits("/trouble/redirect-chain/11"), 0, "at most ten redirects are followed");
}

#[tokio::test]
async fn link_trap_stays_inside_max_depth() {
    let (app, site) = (spawn_app().await, fixture().await);
    let s = app
        .crawl(json!({"url": site.url("/trouble/trap/0"), "crawlType": "recursive", "maxDepth": 3, "maxPages": 100000}))
        .await;
    assert_eq!(s["status"], "completed");
    // Three links a page: 1 + 3 + 9 + 27.
    assert_eq!(counts(&s), (40, 0, 0), "{s}");
}

#[tokio::test]
async fn link_trap_stays_inside_max_pages() {
    let (app, site) = (spawn_app().await, fixture().await);
    let s = app
        .crawl(json!({"url": site.url("/trouble/trap/0"), "crawlType": "recursive", "maxDepth": 100, "maxPages": 25}))
        .await;
    assert_eq!(s["status"], "completed");
    assert_eq!(counts(&s), (25, 0, 0), "{s}");
    assert_eq!(site.stats().requests.load(std::sync::atomic::Ordering::SeqCst), 26, "25 pages and robots.txt");
}

#[tokio::test]
async fn a_start_page_that_fails_fails_the_crawl_with_its_reason() {
    let (app, site) = (spawn_app().await, fixture().await);
    let s = app.crawl(crawl_body(site.url("/trouble/missing"), "page")).await;
    assert_eq!(s["status"], "failed", "{s}");
    assert!(s["error"].as_str().unwrap().contains("HTTP 404"), "{s}");
    assert_eq!(counts(&s), (0, 1, 0));
}
