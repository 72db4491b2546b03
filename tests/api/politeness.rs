//! Politeness per host is the process's, not each crawl's: crawls of one
//! host share its limit. (Across instances: `cluster.rs`.)

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use trawl_fixtures::SiteOptions;

use crate::helpers::*;

#[tokio::test]
async fn ten_crawls_of_one_host_never_send_it_more_than_its_limit_at_once() {
    let app = spawn_app_with(|c| c.crawler.per_host_concurrency = 4).await;
    let site = fixture_with(SiteOptions { pages: 40, latency: Duration::from_millis(10), ..Default::default() }).await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        let body = json!({"url": site.url("/"), "crawlType": "recursive", "maxDepth": 10, "concurrency": 8});
        ids.push(app.start_crawl(body).await);
    }
    for id in &ids {
        let s = app.wait_terminal(id).await;
        assert_eq!(s["status"], "completed", "{s}");
        assert_eq!(s["pagesCrawled"], 40, "{s}");
    }
    let most = site.stats().max_in_flight.load(Ordering::SeqCst);
    println!("the host saw at most {most} requests at once (limit 4)");
    assert!(most <= 4, "the host saw {most} requests at once");
    assert!(most >= 3, "the crawls ran side by side ({most} at most)");
}
