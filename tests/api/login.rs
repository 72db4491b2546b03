//! Sites behind a login: a crawl's `headers`, `cookies` and `basicAuth` go
//! with every request to its host (robots.txt and redirect hops too, and a
//! rendered page's own requests), never to another host, and are never
//! shown or kept once the crawl ends.

use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::helpers::*;

const KEY: &str = "key-5f2a";
const SESSION: &str = "sess-77c1";
const PASSWORD: &str = "pw-0b9e";
const SECRETS: [&str; 3] = [KEY, SESSION, PASSWORD];

/// The requests a server saw: path and headers.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, HeaderMap)>>>);

impl Seen {
    fn all(&self) -> Vec<(String, HeaderMap)> {
        self.0.lock().unwrap().clone()
    }
}

fn logged_in(h: &HeaderMap) -> bool {
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("ann:{PASSWORD}")));
    let get = |n: header::HeaderName| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    h.get("x-api-key").is_some_and(|v| v == KEY)
        && get(header::COOKIE).contains(&format!("session={SESSION}"))
        && get(header::AUTHORIZATION) == basic
}

fn carries_any_of_the_login(h: &HeaderMap) -> bool {
    h.get("x-api-key").is_some()
        || h.get(header::AUTHORIZATION).is_some()
        || h.get(header::COOKIE).is_some_and(|c| c.to_str().unwrap_or_default().contains(SESSION))
}

fn html(title: &str, body: &str) -> Response {
    let page = format!(
        "<!doctype html><html><head><title>{title}</title></head><body><main><h1>{title}</h1>\
         <p>{title} is a page of the members' handbook, and this paragraph is here so that it reads as an article \
         with enough words for the main content to be found.</p>{body}</main></body></html>"
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
}

/// A site (on 127.0.0.1) where every path needs the login, and another
/// host (`localhost`, another port) that its pages link and redirect to.
async fn sites() -> (String, Seen, String, Seen) {
    let elsewhere = Seen::default();
    let other = serve(elsewhere.clone(), |_, path, _| match path {
        "/tracker.js" => ([(header::CONTENT_TYPE, "text/javascript")], "/* counted */").into_response(),
        _ => html(&format!("Elsewhere at {path}"), "<p>Another host, reached without the login.</p>"),
    })
    .await;
    let other_base = format!("http://localhost:{}", other.port());
    let seen = Seen::default();
    let o = other_base.clone();
    let site = serve(seen.clone(), move |h, path, _| {
        if !logged_in(h) {
            return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Basic realm=\"members\"")], "log in")
                .into_response();
        }
        match path {
            "/robots.txt" => "User-agent: *\nAllow: /\n".into_response(),
            "/" => html(
                "Members home",
                &format!(
                    "<a href=\"/a\">A</a> <a href=\"/in\">in</a> <a href=\"/out\">out</a> <a href=\"{o}/elsewhere\">elsewhere</a>"
                ),
            ),
            "/a" => html("Members page A", ""),
            "/b" => html("Members page B", ""),
            "/in" => (StatusCode::FOUND, [(header::LOCATION, "/b")]).into_response(),
            "/out" => (StatusCode::FOUND, [(header::LOCATION, format!("{o}/landing"))]).into_response(),
            "/rendered" => html(
                "Members app",
                &format!("<div id=\"app\"></div><script src=\"/app.js\"></script><script src=\"{o}/tracker.js\"></script>"),
            ),
            "/app.js" => (
                [(header::CONTENT_TYPE, "text/javascript")],
                "document.getElementById('app').innerHTML = '<p>The gated script wrote this: a marmalade heron.</p>';",
            )
                .into_response(),
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    })
    .await;
    (format!("http://127.0.0.1:{}", site.port()), seen, other_base, elsewhere)
}

type Handler = dyn Fn(&HeaderMap, &str, &Seen) -> Response + Send + Sync;

async fn serve(
    seen: Seen,
    answer: impl Fn(&HeaderMap, &str, &Seen) -> Response + Send + Sync + 'static,
) -> std::net::SocketAddr {
    let answer: Arc<Handler> = Arc::new(answer);
    let app = axum::Router::new().fallback(move |State(seen): State<Seen>, req: Request| {
        let answer = answer.clone();
        async move {
            let path = req.uri().path().to_string();
            seen.0.lock().unwrap().push((path.clone(), req.headers().clone()));
            answer(req.headers(), &path, &seen)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app.with_state(seen)).await });
    addr
}

fn login() -> Value {
    json!({
        "headers": {"X-Api-Key": KEY},
        "cookies": {"session": SESSION},
        "basicAuth": {"username": "ann", "password": PASSWORD},
    })
}

fn with_login(mut body: Value) -> Value {
    for (k, v) in login().as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

fn assert_no_secret(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} shows a secret ({s}): {text}");
    }
}

#[tokio::test]
async fn a_login_goes_to_every_request_of_the_crawls_host_and_never_to_another() {
    let app = spawn_app().await;
    let (base, seen, other, elsewhere) = sites().await;
    let id = app
        .start_crawl(with_login(json!({
            "url": format!("{base}/"), "crawlType": "recursive", "maxDepth": 2, "sameDomain": false,
        })))
        .await;
    let s = app.wait_terminal(&id).await;
    assert_eq!(s["status"], "completed", "{s}");
    let pages = app.pages(&id).await;
    let by_url = |u: String| pages.iter().find(|p| p["url"] == u.as_str()).unwrap_or_else(|| panic!("{u}: {pages:?}"));
    for path in ["/", "/a", "/in", "/out"] {
        let p = by_url(format!("{base}{path}"));
        assert_eq!(p["status"], "crawled", "{p}");
        assert_eq!(p["httpStatus"], 200, "{p}");
    }
    assert_eq!(by_url(format!("{base}/in"))["finalUrl"], format!("{base}/b"), "a hop on the host, logged in");
    assert_eq!(by_url(format!("{base}/out"))["finalUrl"], format!("{other}/landing"));
    assert_eq!(by_url(format!("{other}/elsewhere"))["status"], "crawled");

    let asked = seen.all();
    assert!(asked.iter().any(|(p, _)| p == "/robots.txt"), "robots.txt was read: {asked:?}");
    for (path, headers) in &asked {
        assert!(logged_in(headers), "{path} came without the login");
    }
    let other_asked = elsewhere.all();
    let paths: Vec<&str> = other_asked.iter().map(|(p, _)| p.as_str()).collect();
    for p in ["/robots.txt", "/elsewhere", "/landing"] {
        assert!(paths.contains(&p), "the other host was asked for {p}: {paths:?}");
    }
    for (path, headers) in &other_asked {
        assert!(!carries_any_of_the_login(headers), "the login leaked to another host with {path}: {headers:?}");
    }

    // Never shown, and not kept once the crawl has ended.
    assert_no_secret("the status", &s.to_string());
    assert_no_secret("the pages", &serde_json::to_string(&pages).unwrap());
    let (_, source) = app.get(&format!("/api/sources/{}", s["sourceId"].as_str().unwrap())).await;
    assert!(source["settings"]["maxDepth"] == 2 && source["settings"].get("headers").is_none(), "{source}");
    assert_no_secret("the source", &source.to_string());
    let (_, listed) = app.get("/api/crawls").await;
    assert_no_secret("the crawl list", &listed.to_string());
    let stored = app.store().crawl_request(&id).await.unwrap().unwrap();
    assert_no_secret("the stored request", &stored);
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["maxDepth"], 2, "the rest of the request is kept: {stored}");
}

#[tokio::test]
async fn without_the_login_the_same_site_fails_with_its_401() {
    let app = spawn_app().await;
    let (base, _, _, _) = sites().await;
    let s = app.crawl(json!({"url": format!("{base}/a"), "crawlType": "page"})).await;
    assert_eq!(s["status"], "failed", "{s}");
    assert!(s["error"].as_str().unwrap().contains("HTTP 401"), "{s}");
}

#[tokio::test]
async fn a_user_in_the_start_url_is_basic_auth_and_leaves_the_url() {
    let app = spawn_app().await;
    let (base, seen, _, _) = sites().await;
    let url = format!("{base}/a").replace("http://", &format!("http://ann:{PASSWORD}@"));
    let body = json!({"url": url, "crawlType": "page", "headers": {"X-Api-Key": KEY}, "cookies": {"session": SESSION}});
    let s = app.crawl(body).await;
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(s["url"], format!("{base}/a"));
    assert!(seen.all().iter().all(|(_, h)| logged_in(h)));
    let (_, source) = app.get(&format!("/api/sources/{}", s["sourceId"].as_str().unwrap())).await;
    assert_no_secret("the source", &source.to_string());
    assert_eq!(source["settings"]["url"], format!("{base}/a"), "{source}");
}

#[tokio::test]
async fn a_rendered_page_sends_the_login_with_its_own_requests_to_the_host_only() {
    let app = spawn_app().await;
    let (base, seen, _, elsewhere) = sites().await;
    let url = format!("{base}/rendered");
    let s = app.crawl(with_login(json!({"url": url, "crawlType": "page", "render": "browser"}))).await;
    assert_eq!(s["status"], "completed", "{s}");
    let id = s["progressId"].as_str().unwrap();
    let page = app.store().get_page(id, &url).await.unwrap().expect("stored");
    assert!(page.content.unwrap_or_default().contains("marmalade heron"), "the gated script ran");
    let asked = seen.all();
    assert!(asked.iter().any(|(p, _)| p == "/app.js"), "{asked:?}");
    for (path, headers) in &asked {
        assert!(logged_in(headers), "{path} came without the login");
    }
    let tracker: Vec<_> = elsewhere.all().into_iter().filter(|(p, _)| p == "/tracker.js").collect();
    assert!(!tracker.is_empty(), "the page's request to the other host was made");
    for (_, headers) in &tracker {
        assert!(!carries_any_of_the_login(headers), "the login leaked to another host: {headers:?}");
    }
}

#[tokio::test]
async fn a_login_that_cannot_be_sent_is_refused_with_a_clear_error() {
    let app = spawn_app().await;
    let cases = [
        (json!({"headers": {"Bad Name": "v"}}), "valid header name"),
        (json!({"headers": {"X-A": "a\r\nInjected: 1"}}), "line break"),
        (json!({"headers": {"Host": "elsewhere"}}), "set by the crawler"),
        (json!({"headers": {"X-A": 5}}), "invalid type"),
        (json!({"cookies": {"s": "a;b"}}), "cookie cannot hold"),
        (json!({"basicAuth": {"username": "a:b", "password": "c"}}), "username"),
        (json!({"basicAuth": {"username": "a"}}), "password"),
        (json!({"headers": {"Authorization": "x"}, "basicAuth": {"username": "a", "password": "b"}}), "not both"),
    ];
    for (extra, says) in cases {
        let mut body = json!({"url": "http://127.0.0.1:9/"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let resp = app.post_crawl(body.clone()).await;
        assert_eq!(resp.status(), 400, "{body}");
        let e: Value = resp.json().await.unwrap();
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {e}");
        assert!(!message.contains("a\r\nInjected"), "{e}");
    }
    let (_, listed) = app.get("/api/crawls").await;
    assert_eq!(listed["crawls"].as_array().map(Vec::len), Some(0), "{listed}");
}

#[tokio::test]
async fn a_source_keeps_no_login() {
    let app = spawn_app().await;
    let site = fixture().await;
    let s = app.crawl(json!({"url": site.url("/docs/1.html"), "crawlType": "page"})).await;
    let source = s["sourceId"].as_str().unwrap();
    let resp = app
        .client
        .patch(app.url(&format!("/api/sources/{source}")))
        .json(&json!({"settings": {"headers": {"X-Api-Key": KEY}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let e: Value = resp.json().await.unwrap();
    assert!(e["error"]["message"].as_str().unwrap().contains("keeps no login"), "{e}");
    assert_no_secret("the refusal", &e.to_string());
}

#[tokio::test]
async fn firecrawl_headers_log_a_scrape_and_a_crawl_in_on_the_pages_host_only() {
    let app = spawn_app().await;
    let (base, seen, other, elsewhere) = sites().await;
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("ann:{PASSWORD}")));
    let headers = json!({"X-Api-Key": KEY, "Cookie": format!("session={SESSION}"), "Authorization": basic});
    let (_, scraped) = app.post("/v2/scrape", &json!({"url": format!("{base}/a"), "headers": headers})).await;
    assert_eq!(scraped["success"], true, "{scraped}");
    assert!(scraped["data"]["markdown"].as_str().unwrap().contains("members' handbook"), "{scraped}");
    assert_no_secret("the scrape", &scraped["data"].to_string());

    let body = json!({"url": format!("{base}/"), "allowExternalLinks": true, "limit": 20, "scrapeOptions": {"headers": headers}});
    let (_, started) = app.post("/v2/crawl", &body).await;
    let id = started["id"].as_str().unwrap_or_else(|| panic!("{started}"));
    let s = app.wait_terminal(id).await;
    assert_eq!(s["status"], "completed", "{s}");
    assert!(seen.all().iter().all(|(_, h)| logged_in(h)), "every request to the host was logged in");
    let other_asked = elsewhere.all();
    assert!(!other_asked.is_empty(), "the crawl reached {other}");
    assert!(other_asked.iter().all(|(_, h)| !carries_any_of_the_login(h)), "nothing leaked to {other}");
    let refused = app
        .client
        .post(app.url("/v2/scrape"))
        .json(&json!({"url": format!("{base}/a"), "headers": {"X-A": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
}
