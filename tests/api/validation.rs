use serde_json::{Value, json};

use crate::helpers::*;

async fn post_raw(app: &TestApp, content_type: Option<&str>, body: Vec<u8>) -> (u16, Value) {
    let mut req = app.client.post(app.url("/api/crawls")).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn bad_input_answers_4xx_with_a_stable_code_and_creates_no_crawl() {
    let app = spawn_app().await;
    let json_ct = Some("application/json");
    // (case, content type, body, status, error code)
    type Case = (&'static str, Option<&'static str>, Vec<u8>, u16, &'static str);
    let cases: Vec<Case> = vec![
        ("invalid url", json_ct, br#"{"url":"not a url"}"#.to_vec(), 400, "invalid_url"),
        ("relative url", json_ct, br#"{"url":"/docs/1.html"}"#.to_vec(), 400, "invalid_url"),
        ("ftp url", json_ct, br#"{"url":"ftp://example.com/file"}"#.to_vec(), 400, "invalid_url"),
        ("javascript url", json_ct, br#"{"url":"javascript:alert(1)"}"#.to_vec(), 400, "invalid_url"),
        ("empty url", json_ct, br#"{"url":""}"#.to_vec(), 400, "invalid_url"),
        ("empty body", json_ct, Vec::new(), 400, "invalid_request"),
        ("missing url", json_ct, b"{}".to_vec(), 400, "invalid_request"),
        ("url of the wrong type", json_ct, br#"{"url":5}"#.to_vec(), 400, "invalid_request"),
        (
            "maxDepth of the wrong type",
            json_ct,
            br#"{"url":"http://a.com","maxDepth":"deep"}"#.to_vec(),
            400,
            "invalid_request",
        ),
        ("negative maxPages", json_ct, br#"{"url":"http://a.com","maxPages":-1}"#.to_vec(), 400, "invalid_request"),
        ("zero maxPages", json_ct, br#"{"url":"http://a.com","maxPages":0}"#.to_vec(), 400, "invalid_request"),
        (
            "unknown crawl type",
            json_ct,
            br#"{"url":"http://a.com","crawlType":"deep"}"#.to_vec(),
            400,
            "invalid_request",
        ),
        ("unknown field", json_ct, br#"{"url":"http://a.com","maxdepth":2}"#.to_vec(), 400, "invalid_request"),
        ("bad glob", json_ct, br#"{"url":"http://a.com","include":["["]}"#.to_vec(), 400, "invalid_request"),
        ("an array", json_ct, b"[1,2]".to_vec(), 400, "invalid_request"),
        ("malformed json", json_ct, b"{\"url\":".to_vec(), 400, "invalid_json"),
        ("not json at all", json_ct, b"hello".to_vec(), 400, "invalid_json"),
        (
            "form content type",
            Some("application/x-www-form-urlencoded"),
            b"url=http://a.com".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "body over the limit",
            json_ct,
            format!(r#"{{"url":"http://a.com","tags":["{}"]}}"#, "x".repeat(100_000)).into_bytes(),
            413,
            "payload_too_large",
        ),
    ];
    for (name, ct, body, want_code, want_error) in cases {
        let (code, v) = post_raw(&app, ct, body).await;
        assert_eq!(code, want_code, "{name}: {v}");
        assert_eq!(v["error"]["code"], want_error, "{name}: {v}");
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{name}: {v}");
    }
    let (_, list) = app.get("/api/crawls").await;
    assert_eq!(list["crawls"], json!([]), "no crawl was created");
}

#[tokio::test]
async fn private_addresses_are_refused_without_the_flag() {
    let app = spawn_app_with(|c| c.crawler.allow_private_networks = false).await;
    for url in [
        "http://127.0.0.1:9/",
        "http://localhost:9/",
        "http://[::1]/",
        "http://10.1.2.3/",
        "http://169.254.169.254/latest/meta-data/",
    ] {
        let resp = app.post_crawl(json!({ "url": url })).await;
        assert_eq!(resp.status(), 400, "{url}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], "forbidden_address", "{url}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("--allow-private-networks"), "names the flag: {v}");
    }
    let (_, list) = app.get("/api/crawls").await;
    assert_eq!(list["crawls"], json!([]));
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json_errors() {
    let app = spawn_app().await;
    let (code, v) = app.get("/api/nothing").await;
    assert_eq!((code, v["error"]["code"].as_str()), (404, Some("not_found")));
    let resp = app.client.put(app.url("/api/crawls")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn bad_list_parameters_answer_400() {
    let app = spawn_app().await;
    for (q, code) in [
        ("?limit=0", "invalid_request"),
        ("?limit=abc", "invalid_request"),
        ("?limit=100000", "invalid_request"),
        ("?status=sleeping", "invalid_request"),
        ("?cursor=garbage", "invalid_cursor"),
    ] {
        let (status, v) = app.get(&format!("/api/crawls{q}")).await;
        assert_eq!(status, 400, "{q}: {v}");
        assert_eq!(v["error"]["code"], code, "{q}: {v}");
    }
}

#[tokio::test]
async fn a_nul_in_a_requests_strings_is_kept_on_both_stores_never_a_500() {
    // PostgreSQL's jsonb cannot hold \u0000: the store keeps U+FFFD instead.
    let app = spawn_app().await;
    let body = json!({"url": "http://127.0.0.1:1/", "crawlType": "page", "exclude": ["/a\u{0}b"], "tags": ["x\u{0}y"]});
    let resp = app.post_crawl(body).await;
    assert_eq!(resp.status(), 202, "{:?}", resp.text().await);
}
