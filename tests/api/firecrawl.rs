//! The Firecrawl-compatible `/v2` API, driven by Firecrawl's own SDKs,
//! unmodified: firecrawl-py (PyPI) and @mendable/firecrawl-js (npm).

use serde_json::Value;

use crate::helpers::*;

fn line<'a>(lines: &'a [Value], step: &str) -> &'a Value {
    lines.iter().find(|l| l["step"] == step).unwrap_or_else(|| panic!("no {step}: {lines:#?}"))
}

/// What both SDKs must see.
fn check(lines: &[Value], site: &FixtureServer) {
    let scrape = line(lines, "scrape");
    assert!(scrape["markdown"].as_str().unwrap().contains("HashMap"), "{scrape}");
    assert!(scrape["rawHtml"].as_str().or(scrape["raw_html"].as_str()).unwrap().contains("<html"), "{scrape}");
    assert!(!scrape["links"].as_array().unwrap().is_empty(), "{scrape}");
    assert_eq!(scrape["status_code"], 200);
    assert_eq!(scrape["source_url"], site.url("/code/examples.html"));

    let crawl = line(lines, "crawl");
    assert_eq!(crawl["status"], "completed", "{crawl}");
    assert_eq!(crawl["docs"], crawl["completed"], "{crawl}");
    assert!(crawl["docs"].as_u64().unwrap() >= 2 && crawl["docs"].as_u64().unwrap() <= 12, "{crawl}");
    assert_eq!(crawl["empty"], 0, "every document has markdown");

    let cancel = line(lines, "cancel_crawl");
    assert_eq!(cancel["cancelled"], true, "{cancel}");
    assert_eq!(cancel["status"], "cancelled", "{cancel}");

    let pages = line(lines, "pagination");
    assert!(pages["pages"].as_u64().unwrap() >= 2, "more than one status page: {pages}");
    assert_eq!(pages["seen"], pages["total_docs"], "{pages}");
    assert_eq!(pages["total_docs"], pages["completed"], "{pages}");

    let map = line(lines, "map");
    let links = map["links"].as_array().unwrap();
    assert!(!links.is_empty() && links.len() <= 50, "{map}");
    assert!(links.iter().all(|l| l.as_str().unwrap().contains("docs")), "{map}");

    let batch = line(lines, "batch_scrape");
    assert_eq!(batch["status"], "completed", "{batch}");
    assert_eq!(batch["completed"], 3, "{batch}");

    for step in ["unsupported_format", "private_or_missing", "unknown_crawl"] {
        assert_eq!(line(lines, step)["raised"], true, "{step} is an SDK error");
    }
    assert!(line(lines, "unsupported_format")["message"].as_str().unwrap().contains("not supported"));
}

async fn app() -> TestApp {
    spawn_app_with(|c| c.api_keys = trawl::auth::ApiKeys::from_pairs([("fc-key-123456", "tools")])).await
}

#[tokio::test]
async fn firecrawl_py_scrapes_crawls_cancels_maps_and_batches() {
    let (app, site) = (app().await, fixture().await);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let py = root.join(".venv/bin/python");
    assert!(py.exists(), "Python test client not installed: run scripts/test");
    let mut cmd = tokio::process::Command::new(py);
    cmd.arg(root.join("tests/clients/python/firecrawl_client.py")).args([&app.address, "fc-key-123456", &site.url("")]);
    let lines = run_script(cmd, "firecrawl-py").await;
    check(&lines, &site);

    // Its crawls are trawl's: listed, stored, searchable.
    let id = line(&lines, "crawl")["id"].as_str().unwrap().to_string();
    let listed =
        app.client.get(app.url(&format!("/api/crawls/{id}"))).bearer_auth("fc-key-123456").send().await.unwrap();
    assert_eq!(listed.status(), 200);
}

#[tokio::test]
async fn firecrawl_js_scrapes_crawls_cancels_maps_and_batches() {
    let (app, site) = (app().await, fixture().await);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/js");
    assert!(dir.join("node_modules/@mendable/firecrawl-js").exists(), "JS test client not installed: run scripts/test");
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(dir.join("firecrawl.mjs")).args([&app.address, "fc-key-123456", &site.url("")]);
    let lines = run_script(cmd, "@mendable/firecrawl-js").await;
    check(&lines, &site);
}

#[tokio::test]
async fn firecrawl_pys_v1_client_scrapes_crawls_and_maps_through_v1() {
    let (app, site) = (app().await, fixture().await);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = tokio::process::Command::new(root.join(".venv/bin/python"));
    cmd.arg(root.join("tests/clients/python/firecrawl_v1_client.py")).args([
        &app.address,
        "fc-key-123456",
        &site.url(""),
    ]);
    let lines = run_script(cmd, "firecrawl-py v1").await;
    let scrape = line(&lines, "scrape");
    assert!(scrape["markdown"].as_str().unwrap().contains("HashMap"), "{scrape}");
    assert_eq!(scrape["source_url"], site.url("/code/examples.html"));
    let crawl = line(&lines, "crawl");
    assert_eq!(crawl["status"], "completed", "{crawl}");
    assert_eq!(crawl["docs"], crawl["completed"], "{crawl}");
    assert_eq!(crawl["empty"], 0);
    let links = line(&lines, "map")["links"].as_array().unwrap().clone();
    assert!(!links.is_empty() && links.iter().all(|l| l.as_str().is_some_and(|u| u.contains("docs"))), "{links:?}");
}

#[tokio::test]
async fn bad_input_to_the_firecrawl_api_gets_firecrawls_error_shape() {
    let app = spawn_app_with(|c| {
        c.api_keys = trawl::auth::ApiKeys::from_pairs([("fc-key-123456", "tools"), ("other-key-1234", "other")])
    })
    .await;
    let site = fixture().await;
    let send = |method: reqwest::Method, path: &str, key: Option<&str>, body: Option<&str>| {
        let mut req = app.client.request(method, app.url(path)).header("content-type", "application/json");
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        async move {
            let r = req.send().await.unwrap();
            let code = r.status().as_u16();
            (code, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let key = Some("fc-key-123456");
    use reqwest::Method;
    for (method, path, body, code) in [
        (Method::POST, "/v2/scrape", "not json", 400),
        (Method::POST, "/v2/scrape", "[1]", 400),
        (Method::POST, "/v2/scrape", "{}", 400),
        (Method::POST, "/v2/scrape", r#"{"url": "ftp://example.com/"}"#, 400),
        (Method::POST, "/v2/scrape", r#"{"url": "http://127.0.0.1:1/", "formats": ["json"]}"#, 400),
        (Method::POST, "/v2/scrape", r#"{"url": "http://127.0.0.1:1/", "actions": [{"type": "click"}]}"#, 400),
        (Method::POST, "/v2/crawl", r#"{"url": "http://127.0.0.1:1/", "includePaths": ["/(a|b)/"]}"#, 400),
        (Method::POST, "/v2/crawl", r#"{"url": "http://127.0.0.1:1/", "limit": -3}"#, 400),
        (Method::POST, "/v2/map", r#"{"url": "ftp://example.com/"}"#, 400),
        (Method::POST, "/v2/map", r#"{"url": "http://127.0.0.1:1/", "sitemap": "sometimes"}"#, 400),
        (Method::POST, "/v2/batch/scrape", r#"{"urls": []}"#, 400),
        (Method::GET, "/v2/crawl/not-a-crawl", "", 404),
        (Method::DELETE, "/v2/crawl/not-a-crawl", "", 404),
        (Method::GET, "/v2/batch/scrape/not-a-batch", "", 404),
    ] {
        let (got, v) = send(method.clone(), path, key, (!body.is_empty()).then_some(body)).await;
        assert_eq!(got, code, "{method} {path} {body}: {v}");
        assert_eq!(v["success"], false, "{method} {path} {body}: {v}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    }
    let (code, _) = send(Method::POST, "/v2/scrape", None, Some(r#"{"url": "http://127.0.0.1:1/"}"#)).await;
    assert_eq!(code, 401, "no key, no scrape");

    // Another tenant's crawl answers as a missing one.
    let body = format!(r#"{{"url": "{}", "limit": 2}}"#, site.url("/docs/1.html"));
    let (code, started) = send(Method::POST, "/v2/crawl", key, Some(&body)).await;
    assert_eq!(code, 200, "{started}");
    let id = started["id"].as_str().unwrap();
    let (code, _) = send(Method::GET, &format!("/v2/crawl/{id}"), Some("other-key-1234"), None).await;
    assert_eq!(code, 404);
    let (code, v) = send(Method::GET, &format!("/v2/crawl/{id}?skip=abc"), key, None).await;
    assert_eq!((code, &v["success"]), (400, &Value::Bool(false)), "{v}");
}
