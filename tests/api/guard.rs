//! The address guard against a site that tries to reach the inside: run in
//! a network namespace where a "public" address is served from `lo` and a
//! fake DNS server answers as the attacker wants. An internal server on
//! 127.0.0.1:80 counts every connection it gets: each test ends with none.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::response::{Html, IntoResponse, Redirect};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use trawl_fixtures::dns::{Answer, FakeDns};

use crate::netns::{self, PUBLIC};

const SECRET: &str = "INTERNAL-ONLY-SECRET-4711";

/// A server on 127.0.0.1:80 that counts connections and serves the secret.
struct Internal {
    connections: Arc<AtomicU64>,
}

impl Internal {
    async fn start() -> Internal {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:80").await.expect("internal server");
        let connections = Arc::new(AtomicU64::new(0));
        let count = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
                    let body =
                        format!("<html><title>{SECRET}</title><body><p>{SECRET} internal admin page</p></body></html>");
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        Internal { connections }
    }

    fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Paths the public site was asked for, with counts.
#[derive(Clone, Default)]
struct Hits(Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>);

impl Hits {
    fn of(&self, path: &str) -> u64 {
        self.0.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

const TEXT: &str =
    "<p>A public page about lighthouses and the keepers who tend their lamps through the winter nights.</p>";

/// The attacker's "public" site on PUBLIC:80.
async fn public_site() -> Hits {
    let hits = Hits::default();
    let h = hits.clone();
    let page = |extra: &'static str| {
        move || async move { Html(format!("<html><head><title>Public</title>{extra}</head><body>{TEXT}</body></html>")) }
    };
    let app = Router::new()
        .route("/meta", get(page(r#"<meta http-equiv="refresh" content="0;url=http://127.0.0.1/meta-hit">"#)))
        .route("/js", get(page(r#"<script>location.href = "http://127.0.0.1/js-hit";</script>"#)))
        .route("/redirect", get(|| async { Redirect::temporary("http://127.0.0.1/redirect-hit").into_response() }))
        .route(
            "/sub",
            get(page(
                r#"<link rel="stylesheet" href="http://127.0.0.1/style.css">
<script src="http://127.0.0.1/script.js"></script>
<script>
fetch("http://127.0.0.1/fetch").catch(() => {});
try { const x = new XMLHttpRequest(); x.open("GET", "http://127.0.0.1/xhr"); x.send(); } catch (e) {}
try { new WebSocket("ws://127.0.0.1/ws"); } catch (e) {}
try { navigator.sendBeacon("http://127.0.0.1/beacon", "x"); } catch (e) {}
try { new Worker(URL.createObjectURL(new Blob(['fetch("http://127.0.0.1/worker").catch(() => {})']))); } catch (e) {}
document.addEventListener("DOMContentLoaded", () => {
  const f = document.createElement("iframe"); f.src = "http://127.0.0.1/frame"; document.body.appendChild(f);
  const i = document.createElement("img"); i.src = "http://127.0.0.1/img.png"; document.body.appendChild(i);
});
</script>"#,
            )),
        )
        .route(
            "/media",
            get(page(
                r#"<link rel="preload" as="font" href="/font.woff2" crossorigin>
<img src="/pic.png"><video src="/clip.mp4" autoplay muted></video>
<style>@font-face { font-family: F; src: url(/face.woff2); } body { font-family: F; }</style>"#,
            )),
        )
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "no") })
        .layer(axum::middleware::from_fn(move |req: axum::extract::Request, next: axum::middleware::Next| {
            let h = h.clone();
            async move {
                *h.0.lock().unwrap().entry(req.uri().path().to_string()).or_insert(0) += 1;
                next.run(req).await
            }
        }));
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((PUBLIC, 80))).await.expect("public site");
    tokio::spawn(async move { axum::serve(listener, app).await });
    hits
}

async fn start(client: &reqwest::Client, body: Value) -> String {
    let resp = client.post(format!("{TRAWL}/api/crawls")).json(&body).send().await.unwrap();
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(status, 202, "{v}");
    v["progressId"].as_str().unwrap().to_string()
}

/// The JSON answer of a request to trawl in the namespace.
async fn call(req: reqwest::RequestBuilder) -> Value {
    req.send().await.expect("trawl answers").json().await.expect("a JSON answer")
}

const TRAWL: &str = "http://127.0.0.1:8080";

async fn wait_terminal(client: &reqwest::Client, id: &str) -> Value {
    for _ in 0..1200 {
        let s = call(client.get(format!("{TRAWL}/api/crawls/{id}"))).await;
        if matches!(s["status"].as_str(), Some("completed" | "failed" | "cancelled")) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("crawl {id} did not end within 60 s");
}

async fn pages(client: &reqwest::Client, id: &str) -> Vec<Value> {
    let v = call(client.get(format!("{TRAWL}/api/crawls/{id}/pages?limit=100"))).await;
    v["pages"].as_array().cloned().unwrap_or_default()
}

async fn search_finds_secret(client: &reqwest::Client) -> bool {
    let query = json!({"query": SECRET, "mode": "text", "limit": 10});
    call(client.post(format!("{TRAWL}/api/search")).json(&query)).await.to_string().contains(SECRET)
}

fn browser_page(url: &str) -> Value {
    json!({"url": url, "crawlType": "page", "render": "browser", "waitUntil": "load", "respectRobots": false})
}

#[test]
fn the_browser_reaches_no_internal_address_by_rebinding_navigation_or_subresource() {
    let Some(ns) = netns::or_skip("the_browser_reaches_no_internal_address_by_rebinding_navigation_or_subresource")
    else {
        return;
    };
    let name = ns.name.clone();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    ns.run(move || async move {
        let dns = FakeDns::start(
            "127.0.0.1:53".parse().unwrap(),
            &[
                ("public.test", Answer::Fixed(PUBLIC)),
                // Public for trawl's own two checks (at POST, before the
                // render), loopback from the third question on.
                ("rebind.test", Answer::Rebind { first: PUBLIC, then: std::net::Ipv4Addr::LOCALHOST, after: 2 }),
            ],
        )
        .await
        .expect("fake DNS");
        let internal = Internal::start().await;
        let hits = public_site().await;
        let _trawl = netns::trawl(&name, &db, &[]).await;
        let client = reqwest::Client::new();

        // (a) DNS rebinding: the name turns to loopback once trawl has checked it.
        let id = start(&client, browser_page("http://rebind.test/secret")).await;
        let s = wait_terminal(&client, &id).await;
        let p = pages(&client, &id).await;
        assert_eq!(s["status"], "failed", "{s} {p:?}");
        assert!(p[0]["error"].as_str().unwrap_or("").starts_with("forbidden_address"), "{p:?}");
        assert!(dns.asked("rebind.test") >= 3, "the browser's connection was resolved by trawl");

        // (b) navigations: a meta refresh, a script, an HTTP redirect.
        for path in ["/meta", "/js", "/redirect"] {
            let id = start(&client, browser_page(&format!("http://public.test{path}"))).await;
            let s = wait_terminal(&client, &id).await;
            assert!(matches!(s["status"].as_str(), Some("completed" | "failed")), "{path}: {s}");
            assert!(hits.of(path) >= 1, "{path} was rendered");
        }

        // (c) subresources, fetch/XHR, WebSocket, beacon, worker, iframe.
        let id = start(&client, browser_page("http://public.test/sub")).await;
        let s = wait_terminal(&client, &id).await;
        assert_eq!(s["status"], "completed", "{s}");

        assert_eq!(internal.connections(), 0, "no connection reached 127.0.0.1:80");
        assert!(!search_finds_secret(&client).await, "nothing of the internal page was stored");

        // Images, media and fonts are not fetched by default.
        let id = start(&client, browser_page("http://public.test/media")).await;
        assert_eq!(wait_terminal(&client, &id).await["status"], "completed");
        assert_eq!(hits.of("/media"), 1);
        assert_eq!(hits.of("/font.woff2") + hits.of("/face.woff2"), 0, "fonts are blocked");
        assert_eq!(hits.of("/pic.png") + hits.of("/clip.mp4"), 0, "images and media are blocked");
    });
}

#[test]
fn an_http_proxy_in_the_environment_does_not_bypass_the_guard() {
    let Some(ns) = netns::or_skip("an_http_proxy_in_the_environment_does_not_bypass_the_guard") else {
        return;
    };
    let name = ns.name.clone();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    ns.run(move || async move {
        let _dns = FakeDns::start("127.0.0.1:53".parse().unwrap(), &[]).await.expect("fake DNS");
        // The "proxy" reaches what the guard would refuse: it is the internal server.
        let internal = Internal::start().await;
        let env = [
            ("HTTP_PROXY", "http://127.0.0.1:80"),
            ("http_proxy", "http://127.0.0.1:80"),
            ("ALL_PROXY", "http://127.0.0.1:80"),
        ];
        let _trawl = netns::trawl(&name, &db, &env).await;
        let client = reqwest::Client::new();
        let id =
            start(&client, json!({"url": "http://intranet.test/", "crawlType": "page", "respectRobots": false})).await;
        let s = wait_terminal(&client, &id).await;
        assert_eq!(s["status"], "failed", "{s}");
        assert_eq!(internal.connections(), 0, "the environment's proxy was not used");
        assert!(!search_finds_secret(&client).await);
    });
}
