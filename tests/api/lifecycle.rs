use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use trawl::progress::{CrawlState, CrawlStatus};
use trawl::store::NewCrawl;

use crate::helpers::*;

#[tokio::test]
async fn start_answers_202_with_the_ids_and_urls_of_the_contract() {
    let (app, site) = (spawn_app().await, fixture().await);
    let resp = app.post_crawl(crawl_body(site.url("/"), "page")).await;
    assert_eq!(resp.status(), 202);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let v: serde_json::Value = resp.json().await.unwrap();
    let id = v["progressId"].as_str().unwrap();
    assert_eq!(v["room"], id);
    assert_eq!(v["statusUrl"], format!("/api/crawls/{id}"));
    assert_eq!(v["eventsUrl"], format!("/api/crawls/{id}/events"));
    assert_eq!(location, format!("/api/crawls/{id}"));
    assert!(matches!(v["status"].as_str(), Some("queued" | "running")));
    app.wait_terminal(id).await;
}

#[tokio::test]
async fn restart_marks_a_crawl_left_running_as_failed_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("trawl.db");
    {
        let store = trawl::store::connect(&format!("sqlite://{}", db.display()), None).await.unwrap();
        let mut s =
            CrawlStatus::new_queued("01a1f000-0000-7000-8000-000000000001".into(), "http://a.com/".into(), Utc::now());
        store
            .create_crawl(&NewCrawl {
                status: s.clone(),
                tenant: None,
                request_json: "{}".into(),
                settings_json: "{}".into(),
                claimed: false,
                source: Default::default(),
            })
            .await
            .unwrap();
        s.status = CrawlState::Running;
        s.pages_crawled = 7;
        store.save_status(&s).await.unwrap();
    }
    let app = spawn_app_on(&db, |_| {}).await;
    let s = app.status("01a1f000-0000-7000-8000-000000000001").await;
    assert_eq!(s["status"], "failed");
    assert_eq!(s["error"], "interrupted");
    assert_eq!(s["pagesCrawled"], 7, "what was done is still reported");
    assert!(s["finishedAt"].is_string());
}

#[tokio::test]
async fn listing_is_newest_first_with_cursor_pagination_and_a_status_filter() {
    let (app, site) = (spawn_app().await, fixture().await);
    let mut ids = Vec::new();
    for path in ["/docs/1.html", "/docs/2.html", "/trouble/missing"] {
        let id = app.start_crawl(crawl_body(site.url(path), "page")).await;
        app.wait_terminal(&id).await;
        ids.push(id);
    }
    let (_, first) = app.get("/api/crawls?limit=2").await;
    let got: Vec<&str> =
        first["crawls"].as_array().unwrap().iter().map(|c| c["progressId"].as_str().unwrap()).collect();
    assert_eq!(got, vec![ids[2].as_str(), ids[1].as_str()]);
    let cursor = first["nextCursor"].as_str().unwrap();
    let (_, second) = app.get(&format!("/api/crawls?limit=2&cursor={cursor}")).await;
    let got: Vec<&str> =
        second["crawls"].as_array().unwrap().iter().map(|c| c["progressId"].as_str().unwrap()).collect();
    assert_eq!(got, vec![ids[0].as_str()]);
    assert!(second["nextCursor"].is_null());
    let (_, failed) = app.get("/api/crawls?status=failed").await;
    assert_eq!(failed["crawls"].as_array().unwrap().len(), 1);
    assert_eq!(failed["crawls"][0]["progressId"], ids[2]);
}

#[tokio::test]
async fn pages_listing_paginates_in_order() {
    let (app, site) = (spawn_app().await, fixture().await);
    let id = app.start_crawl(json!({"url": site.url("/"), "crawlType": "recursive", "maxDepth": 2})).await;
    app.wait_terminal(&id).await;
    let mut seen = Vec::new();
    let mut path = format!("/api/crawls/{id}/pages?limit=5");
    loop {
        let (code, v) = app.get(&path).await;
        assert_eq!(code, 200);
        let page = v["pages"].as_array().unwrap();
        assert!(page.len() <= 5);
        for p in page {
            for key in ["url", "title", "status", "httpStatus", "depth", "chunks", "codeExamples", "error"] {
                assert!(p.get(key).is_some(), "page lacks {key}: {p}");
            }
            seen.push(p["url"].as_str().unwrap().to_string());
        }
        match v["nextCursor"].as_str() {
            Some(c) => path = format!("/api/crawls/{id}/pages?limit=5&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 14);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 14);
    let (code, _) = app.get("/api/crawls/01a1f000-0000-7000-8000-000000000000/pages").await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.0, 200);
    let (code, v) = app.get("/readyz").await;
    assert_eq!(code, 200);
    assert_eq!(v["status"], "ready");
}

#[tokio::test]
async fn status_is_kept_in_the_store_while_a_crawl_runs() {
    let app = spawn_app().await;
    let site = fixture_with(SiteOptions { latency: Duration::from_millis(25), ..Default::default() }).await;
    let id = app
        .start_crawl(json!({"url": site.url("/"), "crawlType": "recursive", "maxDepth": 10, "concurrency": 2}))
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let row = app.store().get_crawl(&id).await.unwrap().unwrap();
        if row.status == CrawlState::Running && row.pages_crawled >= 3 {
            assert!(row.percentage > 0.0);
            break;
        }
        assert!(Instant::now() < deadline, "the store never saw progress: {row:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut last = 0.0;
    loop {
        let s = app.status(&id).await;
        let p = s["percentage"].as_f64().unwrap();
        assert!(p >= last, "percentage went from {last} to {p}");
        last = p;
        if s["status"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    app.stop(&id).await;
}

#[tokio::test]
async fn shutdown_stops_running_crawls_and_returns() {
    let app = spawn_app_with(|c| c.crawler.request_timeout = Duration::from_secs(120)).await;
    let site = fixture().await;
    let id = app.start_crawl(crawl_body(site.url("/trouble/slow"), "page")).await;
    while site.stats().slow_started.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let store = app.store().clone();
    app.shutdown().await;
    let row = store.get_crawl(&id).await.unwrap().unwrap();
    if on_postgres() {
        // Instances share a queue there: the crawl goes back to it, for the
        // next instance to resume (tests/api/cluster.rs).
        assert_eq!(row.status, CrawlState::Queued);
        assert!(row.message.unwrap().contains("handed over"));
    } else {
        assert_eq!(row.status, CrawlState::Cancelled);
        assert!(row.message.unwrap().contains("shutting down"));
    }
}

#[tokio::test]
async fn a_stop_that_a_shutdown_overtakes_is_still_the_users_stop() {
    let app = spawn_app_with(|c| c.crawler.request_timeout = Duration::from_secs(120)).await;
    let site = fixture().await;
    let id = app.start_crawl(crawl_body(site.url("/trouble/slow"), "page")).await;
    while site.stats().slow_started.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let store = app.store().clone();
    let (code, stopping) = app.stop(&id).await;
    assert_eq!(code, 202, "{stopping}");
    // The shutdown comes right behind the stop, while the crawl is stopping.
    app.shutdown().await;
    let row = store.get_crawl(&id).await.unwrap().unwrap();
    assert_eq!(row.status, CrawlState::Cancelled, "a stopped crawl is never handed over");
    assert_eq!(row.message.as_deref(), Some("stopped by request"));
}

fn trawl_bin() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_trawl"));
    cmd.env("TRAWL_EMBEDDER", "lexical");
    cmd
}

fn send_signal(pid: u32, signal: &str) {
    let ok = std::process::Command::new("kill").args([signal, &pid.to_string()]).status().unwrap().success();
    assert!(ok, "kill {signal} {pid}");
}

async fn wait_exit(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn cli_crawl_reports_a_summary_and_ctrl_c_stops_it_as_cancelled() {
    let site = fixture_with(SiteOptions { latency: Duration::from_millis(30), ..Default::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cli.db");

    let done = trawl_bin()
        .args(["crawl", &site.url("/docs/1.html"), "--crawl-type", "page", "--database"])
        .arg(&db)
        .env("TRAWL_ALLOW_PRIVATE_NETWORKS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = tokio::task::spawn_blocking(move || done.wait_with_output().unwrap()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("completed") && stdout.contains("1 crawled"), "{stdout}");

    let mut child = trawl_bin()
        .args([
            "crawl",
            &site.url("/"),
            "--crawl-type",
            "recursive",
            "--max-depth",
            "10",
            "--concurrency",
            "2",
            "--database",
        ])
        .arg(&db)
        .env("TRAWL_ALLOW_PRIVATE_NETWORKS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while site.stats().requests.load(std::sync::atomic::Ordering::SeqCst) < 10 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    send_signal(child.id(), "-INT");
    let status = wait_exit(&mut child, Duration::from_secs(10)).await;
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    assert_eq!(status.code(), Some(130), "{stdout}");
    assert!(stdout.starts_with("cancelled"), "{stdout}");
}

#[tokio::test]
async fn serve_shuts_down_gracefully_on_sigterm() {
    let site = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("serve.db");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = trawl_bin()
        .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--database"])
        .arg(&db)
        .env("TRAWL_ALLOW_PRIVATE_NETWORKS", "true")
        .env("TRAWL_REQUEST_TIMEOUT_MS", "120000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "serve never came up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let v: serde_json::Value = client
        .post(format!("{base}/api/crawls"))
        .json(&crawl_body(site.url("/trouble/slow"), "page"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = v["progressId"].as_str().unwrap().to_string();
    while site.stats().slow_started.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    send_signal(child.id(), "-TERM");
    let status = wait_exit(&mut child, Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
    let store = trawl::store::connect(&db.display().to_string(), None).await.unwrap();
    assert_eq!(store.get_crawl(&id).await.unwrap().unwrap().status, CrawlState::Cancelled);
}

#[tokio::test]
async fn metrics_are_served_in_prometheus_text_format() {
    let (app, site) = (spawn_app().await, fixture().await);
    app.crawl(crawl_body(site.url("/docs/1.html"), "page")).await;
    let resp = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let body = resp.text().await.unwrap();
    for metric in [
        "trawl_crawls_started_total",
        "trawl_crawls_finished_total{status=\"completed\"}",
        "trawl_pages_total{outcome=\"crawled\"}",
        "trawl_chunks_stored_total",
        "trawl_crawls_active",
        "trawl_socket_connections",
    ] {
        assert!(body.contains(metric), "{metric} missing from:\n{body}");
    }
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_of_the_contract() {
    let app = spawn_app().await;
    let (code, doc) = app.get("/api/openapi.json").await;
    assert_eq!(code, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    for (path, method) in [
        ("/api/crawls", "post"),
        ("/api/crawls", "get"),
        ("/api/crawls/{id}", "get"),
        ("/api/crawls/{id}", "delete"),
        ("/api/crawls/{id}/stop", "post"),
        ("/api/crawls/{id}/events", "get"),
        ("/api/crawls/{id}/pages", "get"),
        ("/api/search", "post"),
        ("/api/code-examples", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} missing");
    }
    let status = &doc["components"]["schemas"]["CrawlStatus"]["properties"];
    for key in ["progressId", "status", "percentage", "pagesCrawled", "chunksStored", "createdAt"] {
        assert!(status[key].is_object(), "CrawlStatus.{key} missing");
    }
}
