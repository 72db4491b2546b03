use std::time::Duration;

use serde_json::json;
use trawl_fixtures::{LLMS_LINKS, Site, SiteOptions};

use crate::helpers::*;

#[tokio::test]
async fn page_crawl_stores_exactly_that_page_as_markdown() {
    let (app, site) = (spawn_app().await, fixture().await);
    let id = app.start_crawl(crawl_body(site.url("/docs/5.html"), "page")).await;
    let s = app.wait_terminal(&id).await;
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(counts(&s), (1, 0, 0));
    assert_eq!(s["percentage"], 100.0);
    let page = app.store().get_page(&id, &site.url("/docs/5.html")).await.unwrap().unwrap();
    assert_eq!(page.title.as_deref(), Some("Fixture page 5"));
    let md = page.content.unwrap();
    assert!(!md.contains("# Fixture page 5"), "the title is a field, not a heading the page lacks: {md}");
    assert!(md.contains("```rust\nfn page_5() -> usize {\n    5\n}\n```"), "code block kept, labelled: {md}");
    assert!(md.contains("(page 5, paragraph 2)"), "main content kept: {md}");
    for gone in ["Fixture footer", "Home", "console.log", "font-family"] {
        assert!(!md.contains(gone), "{gone} should not be in the markdown: {md}");
    }
    assert_eq!(page.format.as_deref(), Some("markdown"));
    assert_eq!(page.description.as_deref(), Some("Page 5 of the fixture site"));
}

#[tokio::test]
async fn recursive_crawl_covers_the_tree_within_max_depth() {
    let (app, site) = (spawn_app().await, fixture().await);
    let id = app.start_crawl(json!({"url": site.url("/"), "crawlType": "recursive", "maxDepth": 2})).await;
    let s = app.wait_terminal(&id).await;
    assert_eq!(s["status"], "completed", "{s}");
    // 13 tree pages within two hops, and /private/ skipped by robots.txt; the
    // tracked duplicate link, mailto:, javascript: and the foreign host are not counted.
    assert_eq!(counts(&s), (site.site.pages_within_depth(2) as u64, 0, 1));
    assert_eq!(s["pagesQueued"], 0);
    let pages = app.pages(&id).await;
    assert_eq!(pages.len(), 14);
    let depth_of_page_4 = pages.iter().find(|p| p["url"] == site.url("/docs/4.html")).unwrap()["depth"].clone();
    assert_eq!(depth_of_page_4, 2);
    assert_eq!(site.hits("/docs/1.html"), 1, "deduplicated despite the tracking link");
}

#[tokio::test]
async fn recursive_crawl_of_the_whole_site_reconciles_its_counters() {
    let (app, site) = (spawn_app().await, fixture().await);
    let id = app.start_crawl(json!({"url": site.url("/"), "crawlType": "recursive", "maxDepth": 10})).await;
    let s = app.wait_terminal(&id).await;
    assert_eq!(counts(&s), (300, 0, 1), "{s}");
    assert_eq!(app.store().count_pages(&id).await.unwrap(), 301);
    let stored = app.store().get_crawl(&id).await.unwrap().unwrap();
    assert_eq!((stored.pages_crawled, stored.pages_skipped), (300, 1));
}

#[tokio::test]
async fn sitemap_crawl_fetches_every_listed_page_in_scope() {
    let (app, site) = (spawn_app().await, fixture().await);
    let s = app.crawl(crawl_body(site.url("/sitemap.xml"), "sitemap")).await;
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(counts(&s), (300, 0, 1));
}

#[tokio::test]
async fn sitemap_index_with_a_gzipped_child_covers_the_site() {
    let (app, site) = (spawn_app().await, fixture().await);
    let s = app.crawl(crawl_body(site.url("/sitemap-index.xml"), "sitemap")).await;
    assert_eq!(s["status"], "completed", "{s}");
    // The missing third child costs nothing: its parts are in the other two.
    assert_eq!(counts(&s), (300, 0, 0));
}

#[tokio::test]
async fn sitemap_that_does_not_exist_fails_the_crawl_with_a_reason() {
    let (app, site) = (spawn_app().await, fixture().await);
    let s = app.crawl(crawl_body(site.url("/no-sitemap.xml"), "sitemap")).await;
    assert_eq!(s["status"], "failed", "{s}");
    assert!(s["error"].as_str().unwrap().contains("404"), "{s}");
}

#[tokio::test]
async fn llms_txt_crawl_follows_its_links_and_keeps_markdown_as_is() {
    let (app, site) = (spawn_app().await, fixture().await);
    let id = app.start_crawl(crawl_body(site.url("/llms.txt"), "llms_txt")).await;
    let s = app.wait_terminal(&id).await;
    assert_eq!(counts(&s), (LLMS_LINKS as u64, 0, 0), "{s}");
    let guide = app.store().get_page(&id, &site.url("/docs/guide.md")).await.unwrap().unwrap();
    assert_eq!(guide.format.as_deref(), Some("markdown"));
    assert!(guide.content.unwrap().starts_with("# Guide"));
    assert_eq!(guide.title.as_deref(), Some("Guide"));
}

#[tokio::test]
async fn llms_full_txt_is_stored_as_its_own_page() {
    let (app, site) = (spawn_app().await, fixture().await);
    let id = app.start_crawl(crawl_body(site.url("/llms-full.txt"), "llms_txt")).await;
    let s = app.wait_terminal(&id).await;
    assert_eq!(counts(&s), (1, 0, 0), "{s}");
    let page = app.store().get_page(&id, &site.url("/llms-full.txt")).await.unwrap().unwrap();
    assert!(page.content.unwrap().contains("full text"));
    assert_eq!(site.hits("/docs/1.html"), 0, "a full-text dump is not followed");
}

#[tokio::test]
async fn auto_picks_the_crawl_type_from_the_url_and_what_it_serves() {
    let (app, site) = (spawn_app().await, fixture().await);
    let by_name = app.crawl(json!({"url": site.url("/sitemap.xml")})).await;
    assert_eq!(counts(&by_name), (300, 0, 1), "sitemap by name: {by_name}");
    let list = app.crawl(json!({"url": site.url("/llms.txt"), "crawlType": "auto"})).await;
    assert_eq!(counts(&list), (LLMS_LINKS as u64, 0, 0), "llms.txt by name: {list}");
    let html = app.crawl(json!({"url": site.url("/"), "crawlType": "auto", "maxDepth": 1})).await;
    assert_eq!(
        counts(&html),
        (Site { pages: 300, fanout: 3 }.pages_within_depth(1) as u64, 0, 1),
        "html is recursive: {html}"
    );
}

#[tokio::test]
async fn max_pages_caps_what_a_crawl_takes_on() {
    let (app, site) = (spawn_app().await, fixture().await);
    let s = app.crawl(json!({"url": site.url("/"), "crawlType": "recursive", "maxDepth": 10, "maxPages": 10})).await;
    assert_eq!(s["status"], "completed");
    let (c, f, k) = counts(&s);
    assert_eq!(c + f + k, 10, "{s}");
}

#[tokio::test]
async fn a_slow_page_holds_up_only_itself_not_the_pages_below_its_neighbours() {
    // Page 5 (depth 1) and a few deeper ones answer after 60 s; the others at once.
    let percent = 10;
    let site = fixture_with(SiteOptions {
        pages: 156,
        fanout: 5,
        slow_percent: percent,
        slow_latency: Duration::from_secs(60),
        ..Default::default()
    })
    .await;
    let shape = Site { pages: 156, fanout: 5 };
    assert!(Site::slow(5, percent), "the fixture's slow pages moved");
    // Every page with no slow page on its path from the root (itself included).
    let reachable = |mut i: usize| {
        while i > 0 {
            if Site::slow(i, percent) {
                return false;
            }
            i = Site::parent(i, shape.fanout);
        }
        true
    };
    let fast = (0..shape.pages).filter(|&i| reachable(i) && shape.depth(i) <= 3).count() as u64;
    let app = spawn_app().await;
    let id = app
        .start_crawl(json!({"url": site.url("/"), "crawlType": "recursive", "maxDepth": 3, "concurrency": 16}))
        .await;
    // A level-by-level walk would wait for page 5 before any page of depth 2.
    let s = app.wait_for(&id, |s| s["pagesCrawled"].as_u64() >= Some(fast)).await;
    assert_eq!(s["status"], "running", "the slow pages are still answering: {s}");
    let crawled: Vec<String> = app.pages(&id).await.iter().map(|p| p["url"].as_str().unwrap().to_string()).collect();
    for i in (0..shape.pages).filter(|&i| reachable(i) && shape.depth(i) == 3) {
        assert!(crawled.contains(&site.url(&Site::path(i))), "page {i} at depth 3");
    }
    app.stop(&id).await;
    assert_eq!(app.wait_terminal(&id).await["status"], "cancelled");
}

#[tokio::test]
async fn max_depth_counts_the_shortest_path_even_when_it_answers_last() {
    // /paths/ → a (slow) → x → y, and /paths/ → b → c → x: x is 2 hops away
    // by the slow path and 3 by the fast one; y is within maxDepth 3 only
    // through the slow one.
    let site = fixture_with(SiteOptions { slow: Duration::from_millis(1500), ..Default::default() }).await;
    let app = spawn_app().await;
    let id = app.start_crawl(json!({"url": site.url("/paths/"), "crawlType": "recursive", "maxDepth": 3})).await;
    let s = app.wait_terminal(&id).await;
    assert_eq!(s["status"], "completed", "{s}");
    let pages = app.pages(&id).await;
    let y = pages.iter().find(|p| p["url"] == site.url("/paths/y.html"));
    assert!(y.is_some(), "y is 3 hops away by the short path: {pages:?}");
    assert_eq!(pages.len(), 6, "each page once: {pages:?}");
    assert_eq!(site.hits("/paths/y.html"), 1);
}

#[tokio::test]
async fn a_page_with_more_links_than_the_cap_has_the_rest_cut_and_counted() {
    let site = fixture().await;
    let app = spawn_app_with(|c| c.crawler.max_links_per_page = 10).await;
    let id = app
        .start_crawl(json!({"url": site.url("/trap/0.html"), "crawlType": "recursive", "maxDepth": 1, "maxPages": 100}))
        .await;
    let s = app.wait_terminal(&id).await;
    assert_eq!(s["status"], "completed", "{s}");
    let pages = app.pages(&id).await;
    assert_eq!(pages.len(), 11, "the start page and its first ten links: {pages:?}");
    let start = pages.iter().find(|p| p["url"] == site.url("/trap/0.html")).expect("the start page");
    assert_eq!(start["linksCut"], trawl_fixtures::TRAP_LINKS - 10, "{start}");
    assert!(pages.iter().any(|p| p["url"].as_str().is_some_and(|u| u.contains("/trap/10-"))), "{pages:?}");
    assert!(!pages.iter().any(|p| p["url"].as_str().is_some_and(|u| u.contains("/trap/11-"))), "{pages:?}");
    // Every page of a crawl that follows links says what it cut.
    assert!(pages.iter().all(|p| p["linksCut"] == trawl_fixtures::TRAP_LINKS - 10), "{pages:?}");
}
