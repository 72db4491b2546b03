//! Webhooks against a receiver on loopback: signatures, order, one end per
//! crawl, retries after a 500 and after a restart, and the address guard.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use trawl::config::Config;

use crate::helpers::*;

/// One delivery as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    event: String,
    delivery: String,
    signature: String,
    authorization: Option<String>,
    raw: String,
    body: Value,
}

#[derive(Default)]
struct Inbox {
    got: std::sync::Mutex<Vec<Received>>,
    /// Answers 500 to this many requests first.
    fail: AtomicUsize,
    arrived: tokio::sync::Notify,
}

struct Receiver {
    url: String,
    inbox: Arc<Inbox>,
}

impl Receiver {
    async fn start(fail: usize) -> Receiver {
        let inbox = Arc::new(Inbox { fail: AtomicUsize::new(fail), ..Default::default() });
        let state = inbox.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, raw: String| {
                let inbox = state.clone();
                async move {
                    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
                    let got = Received {
                        event: h("trawl-event").unwrap_or_default(),
                        delivery: h("trawl-delivery").unwrap_or_default(),
                        signature: h("trawl-signature").unwrap_or_default(),
                        authorization: h("authorization"),
                        body: serde_json::from_str(&raw).unwrap_or(Value::Null),
                        raw,
                    };
                    let failing =
                        inbox.fail.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
                    if !failing {
                        inbox.got.lock().unwrap().push(got);
                        inbox.arrived.notify_waiters();
                    }
                    if failing { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, inbox }
    }

    fn got(&self) -> Vec<Received> {
        self.inbox.got.lock().unwrap().clone()
    }

    /// Waits, woken by each arrival, until what arrived satisfies `done`
    /// (30 s at most).
    async fn until(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let arrived = self.inbox.arrived.notified();
            let got = self.got();
            if done(&got) {
                return got;
            }
            assert!(tokio::time::Instant::now() < deadline, "{what} never arrived; got {got:#?}");
            let _ = tokio::time::timeout_at(deadline, arrived).await;
        }
    }

    /// Waits until a delivery of a crawl's end has arrived.
    async fn until_end(&self) -> Vec<Received> {
        self.until("a crawl's end", |got| got.iter().any(|r| r.delivery.ends_with(":end"))).await
    }
}

fn fast(c: &mut Config) {
    c.webhooks.page_every = Duration::from_millis(100);
    c.webhooks.first_retry = Duration::from_millis(100);
}

fn verify(secret: &str, r: &Received) {
    let (t, v1) = r.signature.split_once(",v1=").expect("t=…,v1=…");
    let t = t.strip_prefix("t=").expect("t=");
    let age = chrono::Utc::now().timestamp() - t.parse::<i64>().unwrap();
    assert!((0..300).contains(&age), "signed now: {age}s ago");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{}", r.raw).as_bytes());
    assert_eq!(hex::encode(mac.finalize().into_bytes()), v1, "signature of {}", r.delivery);
}

async fn secret(app: &TestApp) -> String {
    let (code, v) = app.get("/api/webhooks/secret").await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["header"], "Trawl-Signature");
    v["secret"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_crawls_deliveries_are_signed_ordered_and_end_exactly_once() {
    let (app, site, hook) = (spawn_app_with(fast).await, fixture().await, Receiver::start(0).await);
    let id = app
        .start_crawl(json!({"url": site.url("/"), "crawlType": "recursive", "maxDepth": 2, "maxPages": 30,
            "webhook": {"url": hook.url, "headers": {"Authorization": "Bearer receiver-token"}}}))
        .await;
    let fin = app.finished(&id).await;
    let got = hook.until_end().await;
    let secret = secret(&app).await;

    let events: Vec<&str> = got.iter().map(|r| r.event.as_str()).collect();
    assert_eq!(events.first(), Some(&"crawl.started"), "{events:?}");
    assert_eq!(events.last(), Some(&"crawl.completed"), "{events:?}");
    assert!(events[1..events.len() - 1].iter().all(|e| *e == "crawl.page"), "{events:?}");
    let mut ids: Vec<&str> = got.iter().map(|r| r.delivery.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), got.len(), "each delivery once");
    let mut pages = 0;
    for r in &got {
        verify(&secret, r);
        assert_eq!(r.authorization.as_deref(), Some("Bearer receiver-token"));
        assert_eq!(r.body["id"], r.delivery);
        assert_eq!(r.body["type"], r.event);
        assert_eq!(r.body["progressId"], id);
        pages += r.body["data"]["pages"].as_array().map_or(0, Vec::len) as u64;
    }
    assert_eq!(pages, fin.pages_done(), "every stored page announced once");
    assert_eq!(typed(&got.last().unwrap().body["data"]), fin, "the end carries the final status");

    // The receiver's token is kept to retry with, never shown back.
    let source = fin.source_id.unwrap();
    let (_, shown) = app.get(&format!("/api/sources/{source}")).await;
    assert_eq!(shown["settings"]["webhook"]["headers"]["Authorization"], "[redacted]", "{shown}");
    assert!(!shown.to_string().contains("receiver-token"));
}

#[tokio::test]
async fn a_stopped_crawl_announces_one_cancellation_and_nothing_after() {
    let app = spawn_app_with(|c| {
        fast(c);
        c.crawler.request_timeout = Duration::from_secs(120);
    })
    .await;
    let (site, hook) = (fixture().await, Receiver::start(0).await);
    let id = app
        .start_crawl(json!({"url": site.url("/trouble/slow"), "crawlType": "page", "webhook": {"url": hook.url}}))
        .await;
    while site.stats().slow_started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    app.stop(&id).await;
    app.stop(&id).await;
    let got = hook.until_end().await;
    let events: Vec<&str> = got.iter().map(|r| r.event.as_str()).collect();
    assert_eq!(events, ["crawl.started", "crawl.cancelled"]);
    // Nothing more arrives.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hook.got().len(), 2);
}

#[tokio::test]
async fn a_receiver_that_answers_500_gets_the_same_deliveries_again_in_order() {
    let (app, site, hook) = (spawn_app_with(fast).await, fixture().await, Receiver::start(3).await);
    let id = app
        .start_crawl(json!({"url": site.url("/docs/1.html"), "crawlType": "page", "webhook": {"url": hook.url}}))
        .await;
    app.finished(&id).await;
    let got = hook.until_end().await;
    let events: Vec<&str> = got.iter().map(|r| r.event.as_str()).collect();
    assert_eq!(events, ["crawl.started", "crawl.page", "crawl.completed"]);
    assert_eq!(got[0].delivery, format!("{id}:started"), "the failed delivery came again, first");
}

#[tokio::test]
async fn deliveries_survive_a_restart_of_the_service() {
    if on_postgres() {
        return; // A restart on the same file; the queue is the same table on PostgreSQL.
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("trawl.db");
    let hook = Receiver::start(usize::MAX).await;
    let site = fixture().await;
    let app = spawn_app_on(&db, fast).await;
    let id = app
        .start_crawl(json!({"url": site.url("/docs/1.html"), "crawlType": "page", "webhook": {"url": hook.url}}))
        .await;
    app.finished(&id).await;
    // The end is enqueued once the follower has seen it; the receiver is down.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !ended_enqueued(&db, &id).await {
        assert!(tokio::time::Instant::now() < deadline, "the end was never enqueued");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.shutdown().await;
    assert!(hook.got().is_empty());

    hook.inbox.fail.store(0, Ordering::SeqCst);
    let again = spawn_app_on(&db, fast).await;
    let got = hook.until_end().await;
    let events: Vec<&str> = got.iter().map(|r| r.event.as_str()).collect();
    assert_eq!(events, ["crawl.started", "crawl.page", "crawl.completed"]);
    again.shutdown().await;
}

/// Whether the crawl's end delivery is in the file, read beside the service.
async fn ended_enqueued(db: &std::path::Path, id: &str) -> bool {
    let Ok(pool) = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await else { return false };
    let n: Result<i64, _> = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE id = ?")
        .bind(format!("{id}:end"))
        .fetch_one(&pool)
        .await;
    pool.close().await;
    n.is_ok_and(|n| n == 1)
}

#[tokio::test]
async fn a_webhook_to_a_private_address_is_refused_when_the_guard_is_on() {
    let app = spawn_app_with(|c| c.crawler.allow_private_networks = false).await;
    for hook in
        ["http://127.0.0.1:9/hook", "http://10.0.0.1/hook", "http://[::1]/hook", "http://169.254.169.254/latest"]
    {
        let resp = app
            .post_crawl(json!({"url": "http://93.184.216.34/", "crawlType": "page", "webhook": {"url": hook}}))
            .await;
        assert_eq!(resp.status(), 400, "{hook}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], "forbidden_address", "{hook}: {v}");
    }
}

#[tokio::test]
async fn a_bad_webhook_is_refused_with_a_clear_error() {
    let app = spawn_app().await;
    let cases = [
        json!({"url": "ftp://example.com/hook"}),
        json!({"url": "not a url"}),
        json!({"url": "https://user:pw@example.com/hook"}),
        json!({"url": "https://example.com/hook", "headers": {"Trawl-Signature": "forged"}}),
        json!({"url": "https://example.com/hook", "headers": {"X-Bad": "line\nbreak"}}),
        json!({"url": "https://example.com/hook", "events": []}),
        json!({"url": "https://example.com/hook", "events": ["crawl.exploded"]}),
        json!({"url": "https://example.com/hook", "secret": "unknown field"}),
        json!("https://example.com/hook"),
    ];
    for hook in cases {
        let resp = app.post_crawl(json!({"url": "http://127.0.0.1:1/", "webhook": hook})).await;
        let code = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap();
        assert_eq!(code, 400, "{hook}: {v}");
        assert!(matches!(v["error"]["code"].as_str(), Some("invalid_request" | "invalid_json")), "{hook}: {v}");
    }
}

#[tokio::test]
async fn a_sources_refresh_posts_to_the_webhook_its_first_crawl_named() {
    let (app, site, hook) = (spawn_app_with(fast).await, fixture().await, Receiver::start(0).await);
    let id = app
        .start_crawl(json!({"url": site.url("/docs/1.html"), "crawlType": "page",
            "webhook": {"url": hook.url, "events": ["crawl.completed"]}}))
        .await;
    let source = app.finished(&id).await.source_id.unwrap();
    hook.until_end().await;
    let resp = app.client.post(app.url(&format!("/api/sources/{source}/refresh"))).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    let refresh: Value = resp.json().await.unwrap();
    let refresh_id = refresh["progressId"].as_str().unwrap().to_string();
    let end = format!("{refresh_id}:end");
    hook.until("the refresh's end", |got| got.iter().any(|r| r.delivery == end)).await;
    let events: Vec<String> = hook.got().iter().map(|r| r.event.clone()).collect();
    assert_eq!(events, ["crawl.completed", "crawl.completed"], "only the events asked for");
    assert_eq!(hook.got()[1].body["data"]["refresh"], true);
}
