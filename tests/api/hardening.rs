//! Holes found by probing from outside, each closed: a second server on the
//! same SQLite file, web pages driving an open service, slow clients,
//! crawls that fetched nothing, operator routes, error-contract gaps, and
//! the embedded store under many concurrent crawls.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

fn slow_site() -> SiteOptions {
    SiteOptions { pages: 200, fanout: 4, latency: Duration::from_millis(40), ..SiteOptions::default() }
}

/// A crawl of the slow site that runs for a while; returned once it has pages.
async fn start_slow_crawl(app: &TestApp, site: &FixtureServer) -> String {
    let body = json!({"url": site.url("/"), "crawlType": "recursive", "maxDepth": 3, "concurrency": 2});
    let id = app.start_crawl(body).await;
    app.wait_for(&id, |s| s["pagesCrawled"].as_u64().unwrap_or(0) >= 2).await;
    id
}

#[tokio::test]
async fn a_second_serve_on_the_same_sqlite_file_refuses_to_start_and_leaves_the_first_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("trawl.db");
    let app = spawn_app_on(&db, |_| {}).await;
    let site = fixture_with(slow_site()).await;
    let id = start_slow_crawl(&app, &site).await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["serve", "--embedder", "lexical", "--bind", "127.0.0.1:0", "--database"])
        .arg(&db)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the second server must not start: {stderr}");
    assert!(stderr.contains("in use by process"), "says who holds it: {stderr}");
    let s = app.status(&id).await;
    assert_eq!(s["status"], "running", "the first server's crawl is untouched: {s}");
    app.stop(&id).await;
    let fin = app.wait_terminal(&id).await;
    assert_eq!(fin["status"], "cancelled", "{fin}");
    app.shutdown().await;
    // Once the first has stopped, a new server may open the file.
    let again = spawn_app_on(&db, |_| {}).await;
    assert_eq!(again.status(&id).await["status"], "cancelled");
}

async fn raw(app: &TestApp, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> (u16, Value) {
    let mut req = app.client.request(method.parse().unwrap(), app.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_open_service_refuses_web_pages_of_other_origins_foreign_hosts_and_non_json_bodies() {
    let app = spawn_app().await;
    let site = fixture().await;
    let body = json!({"url": site.url("/docs/1.html"), "crawlType": "page"}).to_string();
    let json_ct = ("content-type", "application/json");
    let evil = ("origin", "https://evil.example");

    let (code, v) = raw(&app, "POST", "/api/crawls", &[], Some(&body)).await;
    assert_eq!((code, v["error"]["code"].as_str()), (415, Some("unsupported_media_type")), "no content type: {v}");
    let (code, v) = raw(&app, "POST", "/api/crawls", &[("content-type", "text/plain")], Some(&body)).await;
    assert_eq!((code, v["error"]["code"].as_str()), (415, Some("unsupported_media_type")), "{v}");
    let (code, v) = raw(&app, "POST", "/api/crawls", &[json_ct, evil], Some(&body)).await;
    assert_eq!((code, v["error"]["code"].as_str()), (403, Some("forbidden")), "foreign origin: {v}");
    let (code, v) = raw(&app, "POST", "/api/crawls", &[json_ct, ("origin", "null")], Some(&body)).await;
    assert_eq!(code, 403, "{v}");
    let (_, list) = app.get("/api/crawls").await;
    assert_eq!(list["crawls"], json!([]), "no crawl was started");

    let own = app.address.replace("127.0.0.1", "localhost");
    let (code, v) = raw(&app, "POST", "/api/crawls", &[json_ct, ("origin", &own)], Some(&body)).await;
    assert_eq!(code, 202, "the service's own origin may: {v}");
    let id = v["progressId"].as_str().unwrap().to_string();
    let (code, _) = raw(&app, "POST", &format!("/api/crawls/{id}/stop"), &[evil], None).await;
    assert_eq!(code, 403, "a foreign origin cannot stop a crawl");
    let (code, _) = raw(&app, "DELETE", &format!("/api/crawls/{id}"), &[evil], None).await;
    assert_eq!(code, 403);

    // DNS rebinding onto the local port: the Host names the attacker's domain.
    let (code, v) = raw(&app, "GET", "/api/crawls", &[("host", "evil.example")], None).await;
    assert_eq!((code, v["error"]["code"].as_str()), (403, Some("forbidden")), "{v}");
    let (code, _) = raw(&app, "GET", "/api/crawls", &[("host", "localhost")], None).await;
    assert_eq!(code, 200);

    // The Socket.IO handshake from a foreign page.
    let (code, _) = raw(&app, "GET", "/socket.io/?EIO=4&transport=polling", &[evil], None).await;
    assert_eq!(code, 403, "a foreign origin gets no socket");
    let resp = app.client.get(app.url("/socket.io/?EIO=4&transport=polling")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "clients that send no Origin (Node, Python) connect as before");
}

#[tokio::test]
async fn with_keys_other_origins_may_call_with_a_key() {
    let app = spawn_app_with(|c| c.api_keys = trawl::auth::ApiKeys::from_pairs([("alpha-key-123", "alpha")])).await;
    let resp = app
        .request_as("alpha-key-123", reqwest::Method::GET, "/api/crawls")
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn headers_sent_too_slowly_and_connections_over_the_limit_are_cut_off() {
    let app = spawn_app_with(|c| {
        c.edge.header_read_timeout = Duration::from_millis(500);
        c.edge.max_connections = 3;
    })
    .await;
    let addr = app.address.trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n").await.unwrap();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a client that never finishes its headers is disconnected");

    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    let n = tokio::time::timeout(Duration::from_secs(2), extra.read(&mut buf)).await.expect("closed at once");
    assert!(matches!(n, Ok(0) | Err(_)), "a connection over the limit is closed: {n:?}");
    drop(held);
    // Slots free again once those connections are gone.
    let mut ok = false;
    for _ in 0..50 {
        if app.client.get(app.url("/healthz")).send().await.is_ok_and(|r| r.status() == 200) {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the service answers again");
}

#[tokio::test]
async fn a_crawl_that_fetched_nothing_fails_with_the_reason() {
    let (app, site) = (spawn_app().await, fixture().await);
    let unreachable = app.crawl(json!({"url": "http://127.0.0.1:1/", "crawlType": "page"})).await;
    assert_eq!(unreachable["status"], "failed", "{unreachable}");
    assert!(unreachable["error"].as_str().unwrap().contains("Connection refused"), "{unreachable}");
    let recursive = app.crawl(json!({"url": "http://127.0.0.1:1/", "crawlType": "recursive"})).await;
    assert_eq!(recursive["status"], "failed", "{recursive}");
    let missing = app.crawl(json!({"url": site.url("/trouble/missing"), "crawlType": "page"})).await;
    assert_eq!(missing["status"], "failed", "{missing}");
    assert!(missing["message"].as_str().unwrap().contains("404"), "{missing}");
}

#[tokio::test]
async fn metrics_and_readiness_need_the_operator_key_when_keys_are_set() {
    let app = spawn_app_with(|c| {
        c.api_keys = trawl::auth::ApiKeys::from_pairs([("alpha-key-123", "alpha")]);
        c.operator_key = trawl::auth::OperatorKey::parse(Some("operator-key-0123456789")).unwrap();
    })
    .await;
    for path in ["/metrics", "/readyz"] {
        let anon = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(anon.status(), 401, "{path} without a key");
        let tenant = app.request_as("alpha-key-123", reqwest::Method::GET, path).send().await.unwrap();
        assert_eq!(tenant.status(), 401, "{path} is not a tenant's");
        let operator = app.request_as("operator-key-0123456789", reqwest::Method::GET, path).send().await.unwrap();
        assert_eq!(operator.status(), 200, "{path} with the operator key");
    }
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200, "liveness stays open");
}

#[tokio::test]
async fn bad_paths_and_valid_json_of_the_wrong_shape_get_json_errors() {
    let app = spawn_app().await;
    let resp = app.client.get(app.url("/api/crawls/%ff%fe")).send().await.unwrap();
    let code = resp.status().as_u16();
    let v: Value = resp.json().await.expect("a JSON body");
    assert_eq!((code, v["error"]["code"].as_str()), (400, Some("invalid_request")), "{v}");
    for body in [json!({"url": "http://a.com", "render": 1}), json!({"url": "http://a.com", "waitUntil": []})] {
        let resp = app.post_crawl(body.clone()).await;
        let code = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap();
        assert_eq!((code, v["error"]["code"].as_str()), (400, Some("invalid_request")), "{body}: {v}");
    }
}

#[tokio::test]
async fn many_crawls_at_once_on_the_embedded_store_all_complete() {
    if on_postgres() {
        return;
    }
    let (app, site) = (spawn_app_with(|c| c.crawler.max_crawls = 64).await, fixture().await);
    let mut ids = Vec::new();
    for i in 0..48 {
        // Distinct start URLs: each crawl writes its own pages.
        let body = json!({"url": site.url(&format!("/?crawl={i}")), "crawlType": "recursive", "maxDepth": 3,
                          "maxPages": 60, "respectRobots": false});
        ids.push(app.start_crawl(body).await);
    }
    for id in ids {
        let s = app.wait_terminal(&id).await;
        assert_eq!(s["status"], "completed", "{s}");
    }
}

/// A small tmpfs at `dir`, unmounted when dropped; `None` where this
/// machine cannot mount one (not root).
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &std::path::Path, size: &str) -> Option<SmallDisk> {
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk(dir.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_full_disk_makes_the_service_unready_and_the_crawls_end_reaches_the_store_once_space_returns() {
    if on_postgres() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(_disk) = SmallDisk::mount(dir.path(), "8m") else {
        eprintln!("SKIPPED a_full_disk_…: cannot mount a tmpfs here (needs root)");
        return;
    };
    let db = dir.path().join("trawl.db");
    let app = spawn_app_on(&db, |_| {}).await;
    let site = fixture_with(slow_site()).await;
    let id = start_slow_crawl(&app, &site).await;

    // Fill the disk.
    let filler = dir.path().join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
    let (code, v) = app.get("/readyz").await;
    assert_eq!(code, 503, "a store that cannot write is not ready: {v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("cannot write"), "{v}");
    let resp = app.post_crawl(json!({"url": site.url("/docs/1.html"), "crawlType": "page"})).await;
    assert_eq!(resp.status(), 503, "no crawl is taken on that could not be kept");

    app.stop(&id).await;
    let fin = app.wait_terminal(&id).await;

    std::fs::remove_file(&filler).unwrap();
    let mut ready = false;
    for _ in 0..100 {
        if app.get("/readyz").await.0 == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "ready again once space is back");
    let mut stored = None;
    for _ in 0..100 {
        let s = app.store().get_crawl(&id).await.unwrap().unwrap();
        if s.status.is_terminal() {
            stored = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stored = stored.expect("the terminal status reached the store");
    assert_eq!(stored.status.as_str(), fin["status"].as_str().unwrap(), "{fin}");
    let resp = app.post_crawl(json!({"url": site.url("/docs/1.html"), "crawlType": "page"})).await;
    assert_eq!(resp.status(), 202);
}
