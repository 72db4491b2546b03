use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn robots_disallow_is_honoured_unless_turned_off() {
    let (app, site) = (spawn_app().await, fixture().await);
    let id = app.start_crawl(json!({"url": site.url("/"), "crawlType": "recursive", "maxDepth": 1})).await;
    let s = app.wait_terminal(&id).await;
    assert_eq!(counts(&s), (4, 0, 1), "{s}");
    let private = app.page(&id, &site.url("/private/secret.html")).await;
    assert_eq!(private["status"], "skipped");
    assert!(private["error"].as_str().unwrap().starts_with("robots_disallowed"), "{private}");
    assert_eq!(site.hits("/private/secret.html"), 0, "never fetched");

    let s =
        app.crawl(json!({"url": site.url("/"), "crawlType": "recursive", "maxDepth": 1, "respectRobots": false})).await;
    assert_eq!(counts(&s), (5, 0, 0), "{s}");
}

#[tokio::test]
async fn include_globs_limit_the_crawl_to_matching_paths() {
    let (app, site) = (spawn_app().await, fixture().await);
    let id = app
        .start_crawl(json!({"url": site.url("/"), "crawlType": "recursive", "maxDepth": 5,
            "include": ["/docs/1.html", "/docs/4.html", "/docs/5.html"]}))
        .await;
    let s = app.wait_terminal(&id).await;
    // The start page always counts; then only the three included pages are reachable.
    assert_eq!(counts(&s), (4, 0, 0), "{s}");
}

#[tokio::test]
async fn exclude_globs_keep_matching_paths_out() {
    let (app, site) = (spawn_app().await, fixture().await);
    let s = app
        .crawl(json!({"url": site.url("/"), "crawlType": "recursive", "maxDepth": 2,
            "exclude": ["/docs/2.html", "/docs/3.html"]}))
        .await;
    // /, page 1 and its children 4, 5, 6; /private/ skipped by robots.txt.
    assert_eq!(counts(&s), (5, 0, 1), "{s}");
    assert_eq!(site.hits("/docs/2.html"), 0);
    assert_eq!(site.hits("/docs/7.html"), 0);
}

#[tokio::test]
async fn other_hosts_stay_out_of_scope() {
    let (app, site) = (spawn_app().await, fixture().await);
    let other = fixture().await;
    // Both fixtures are 127.0.0.1 but on different ports: different sites.
    let s = app.crawl(json!({"url": site.url("/"), "crawlType": "recursive", "maxDepth": 1})).await;
    assert_eq!(counts(&s), (4, 0, 1));
    assert_eq!(other.stats().requests.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn robots_crawl_delay_spaces_the_requests_to_a_host() {
    let app = spawn_app().await;
    let site = fixture_with(SiteOptions { pages: 4, crawl_delay: Some(0.2), ..Default::default() }).await;
    let s =
        app.crawl(json!({"url": site.url("/"), "crawlType": "recursive", "maxDepth": 1, "respectRobots": true})).await;
    assert_eq!(counts(&s), (4, 0, 1), "{s}");
    let pages: Vec<_> =
        site.request_log().into_iter().filter(|(path, _)| path != "/robots.txt").map(|(_, t)| t).collect();
    assert_eq!(pages.len(), 4);
    // Spaced at the sender; the server sees them a little less apart when
    // one arrived late (a loaded machine delays one by tens of ms), and
    // without the delay they would be a few ms apart.
    for pair in pages.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= Duration::from_millis(150), "requests {gap:?} apart despite Crawl-delay: 0.2");
    }
}
