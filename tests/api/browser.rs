//! Rendering in a real Chromium (Debian's `chromium`, installed by
//! `scripts/test`): what scripts insert is stored, `auto` renders only the
//! pages that need it, stops close pages, a killed browser is replaced, and
//! nothing of Chromium outlives the service.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use trawl_fixtures::{JS_LINKED, JS_PHRASE, LATE_PHRASE};

use crate::helpers::*;

/// Processes whose command line names `profile`: Chromium's browser,
/// zygotes, renderers and utilities all carry `--user-data-dir`.
fn processes_using(profile: &Path) -> Vec<u32> {
    let needle = profile.to_string_lossy().to_string();
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            found.push(pid);
        }
    }
    found
}

/// The page targets Chromium itself lists (DevTools `/json/list`), by URL.
async fn browser_page_urls(app: &TestApp) -> Vec<String> {
    let ws = app.registry.renderer().devtools_url().await.expect("a browser runs");
    let hostport = ws.trim_start_matches("ws://").split('/').next().unwrap().to_string();
    let list: Vec<Value> =
        reqwest::get(format!("http://{hostport}/json/list")).await.unwrap().json().await.expect("target list");
    list.iter().filter(|t| t["type"] == "page").filter_map(|t| t["url"].as_str().map(str::to_string)).collect()
}

async fn stored_content(app: &TestApp, id: &str, url: &str) -> String {
    app.store().get_page(id, url).await.unwrap().unwrap_or_else(|| panic!("{url} stored")).content.unwrap_or_default()
}

#[tokio::test]
async fn browser_render_stores_what_scripts_insert() {
    let app = spawn_app().await;
    let site = fixture().await;
    let url = site.url("/js/app.html");
    let s = app.crawl(json!({"url": url, "crawlType": "page", "render": "browser"})).await;
    assert_eq!(s["status"], "completed", "{s}");
    let id = s["progressId"].as_str().unwrap();
    assert!(stored_content(&app, id, &url).await.contains(JS_PHRASE));
    let page = app.page(id, &url).await;
    assert_eq!(page["rendered"], true);
    assert_eq!(page["httpStatus"], 200);
    assert_eq!(app.registry.renderer().launches(), 1);
    // A search finds the rendered sentence.
    let (code, found) = app
        .client
        .post(app.url("/api/search"))
        .json(&json!({"query": "quokka lantern", "progressId": id, "mode": "text"}))
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .unwrap();
    assert_eq!(code, 200);
    let found: Value = found.json().await.unwrap();
    assert_eq!(found["results"][0]["url"], url.as_str(), "{found}");
}

#[tokio::test]
async fn http_render_never_starts_a_browser_and_misses_script_content() {
    let app = spawn_app().await;
    let site = fixture().await;
    let url = site.url("/js/app.html");
    let s = app.crawl(json!({"url": url, "crawlType": "page", "render": "http"})).await;
    assert_eq!(s["status"], "completed", "{s}");
    let id = s["progressId"].as_str().unwrap();
    assert!(!stored_content(&app, id, &url).await.contains(JS_PHRASE));
    assert_eq!(app.page(id, &url).await["rendered"], false);
    // `auto` on a static site has no page that needs it either.
    let s = app.crawl(json!({"url": site.url("/"), "maxPages": 20, "render": "auto"})).await;
    assert_eq!(s["status"], "completed", "{s}");
    assert!(s["pagesCrawled"].as_u64().unwrap() >= 19, "{s}");
    assert_eq!(app.registry.renderer().launches(), 0, "no page needed Chromium");
}

#[tokio::test]
async fn auto_renders_the_script_page_and_not_the_static_ones() {
    let app = spawn_app().await;
    let site = fixture().await;
    let s = app.crawl(json!({"url": site.url("/js/"), "crawlType": "recursive", "render": "auto"})).await;
    assert_eq!(s["status"], "completed", "{s}");
    let id = s["progressId"].as_str().unwrap();
    let pages = app.pages(id).await;
    let rendered: Vec<&str> =
        pages.iter().filter(|p| p["rendered"] == true).map(|p| p["url"].as_str().unwrap()).collect();
    assert_eq!(rendered, vec![site.url("/js/app.html")], "{pages:?}");
    assert_eq!(pages.len(), 3, "index, app and static page: {pages:?}");
    assert!(pages.iter().all(|p| p["status"] == "crawled"), "{pages:?}");
    assert!(stored_content(&app, id, &site.url("/js/app.html")).await.contains(JS_PHRASE));
    // Links the script inserted were followed: the static page was reached from the app too.
    assert_eq!(app.registry.renderer().launches(), 1);
}

#[tokio::test]
async fn network_idle_waits_for_content_fetched_by_scripts() {
    let app = spawn_app().await;
    let site = fixture().await;
    let url = site.url("/js/late.html");
    let s = app.crawl(json!({"url": url, "crawlType": "page", "render": "browser", "waitUntil": "networkidle"})).await;
    assert_eq!(s["status"], "completed", "{s}");
    assert!(stored_content(&app, s["progressId"].as_str().unwrap(), &url).await.contains(LATE_PHRASE));
}

#[tokio::test]
async fn stop_during_a_browser_crawl_closes_its_pages_and_ends_cancelled_within_a_second() {
    let app = spawn_app_with(|c| c.crawler.browser.page_timeout = Duration::from_secs(120)).await;
    let site = fixture().await;
    let renderer = app.registry.renderer().clone();
    let mut open = renderer.open_pages();
    let id = app
        .start_crawl(json!({"url": site.url("/js/hangs.html"), "crawlType": "recursive", "render": "browser",
            "browserConcurrency": 4}))
        .await;
    // Four pages hang on a script that never comes.
    tokio::time::timeout(Duration::from_secs(30), open.wait_for(|n| *n == 4)).await.unwrap().unwrap();
    // Chromium lists a page by its URL once the navigation has begun.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let hanging = browser_page_urls(&app).await.into_iter().filter(|u| u.contains("/js/hang/")).count();
        if hanging == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "Chromium shows {hanging} hanging pages, not 4");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let asked = Instant::now();
    let (code, _) = app.stop(&id).await;
    assert_eq!(code, 202);
    let s = app.wait_terminal(&id).await;
    let took = asked.elapsed();
    assert_eq!(s["status"], "cancelled", "{s}");
    assert!(took < Duration::from_secs(1), "stop took {took:?}");
    // `cancelled` is written after the crawl's tasks ended, page closes included.
    assert_eq!(*open.borrow(), 0, "every page was closed before the crawl ended");
    let left: Vec<String> =
        browser_page_urls(&app).await.into_iter().filter(|u| u.starts_with(&site.url("/"))).collect();
    assert!(left.is_empty(), "Chromium still shows {left:?}");
    // The browser itself stays for the next crawl.
    assert_eq!(renderer.launches(), 1);
    assert!(renderer.pid().await.is_some());
}

#[tokio::test]
async fn a_killed_chromium_is_relaunched_and_the_crawl_completes() {
    let app = spawn_app().await;
    let site = fixture().await;
    let renderer = app.registry.renderer().clone();
    let mut open = renderer.open_pages();
    let id = app
        .start_crawl(json!({"url": site.url("/js/slow.html"), "crawlType": "recursive", "render": "browser",
            "browserConcurrency": 4}))
        .await;
    // Slow shells are loading (the index alone came first).
    tokio::time::timeout(Duration::from_secs(30), open.wait_for(|n| *n >= 2)).await.unwrap().unwrap();
    let pid = renderer.pid().await.expect("a browser runs");
    let status = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    assert!(status.success());
    let s = app.wait_terminal(&id).await;
    assert_eq!(s["status"], "completed", "{s}");
    let (crawled, failed, _) = counts(&s);
    assert_eq!((crawled, failed), (1 + JS_LINKED as u64, 0), "the cut-off pages were retried: {s}");
    assert_eq!(renderer.launches(), 2, "one relaunch");
    assert_ne!(renderer.pid().await, Some(pid));
    let id = s["progressId"].as_str().unwrap();
    for k in 0..JS_LINKED {
        let url = site.url(&format!("/js/slow/{k}.html"));
        assert!(stored_content(&app, id, &url).await.contains(JS_PHRASE), "{url}");
    }
}

#[tokio::test]
async fn a_hanging_page_fails_by_its_timeout_and_the_crawl_goes_on() {
    let app = spawn_app_with(|c| c.crawler.browser.page_timeout = Duration::from_secs(3)).await;
    let site = fixture().await;
    let s = app
        .crawl(json!({"url": site.url("/js/hangs.html"), "crawlType": "recursive", "render": "browser", "maxPages": 3}))
        .await;
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(counts(&s), (1, 2, 0), "{s}");
    let pages = app.pages(s["progressId"].as_str().unwrap()).await;
    for p in pages.iter().filter(|p| p["status"] == "failed") {
        let e = p["error"].as_str().unwrap();
        assert!(e.starts_with("timeout: the page did not load within"), "{e}");
    }
    assert_eq!(*app.registry.renderer().open_pages().borrow(), 0);
}

#[tokio::test]
async fn no_chromium_process_remains_after_the_service_stops() {
    let app = spawn_app().await;
    let site = fixture().await;
    let s = app.crawl(json!({"url": site.url("/js/app.html"), "crawlType": "page", "render": "browser"})).await;
    assert_eq!(s["status"], "completed", "{s}");
    let profile = app.registry.renderer().profile_dir().await.expect("a browser ran");
    assert!(!processes_using(&profile).is_empty(), "Chromium runs with its profile {}", profile.display());
    app.shutdown().await;
    assert_eq!(processes_using(&profile), Vec::<u32>::new(), "Chromium processes left behind");
    assert!(!profile.exists(), "the temporary profile was removed");
}

#[tokio::test]
async fn browser_options_are_checked() {
    let app = spawn_app_with(|c| c.crawler.browser.chrome = "/nonexistent/chromium".into()).await;
    let site = fixture().await;
    for (body, code) in [
        (json!({"url": site.url("/"), "render": "browser"}), "unsupported"),
        (json!({"url": site.url("/"), "render": "auto", "browserConcurrency": 0}), "invalid_request"),
        (json!({"url": site.url("/"), "render": "auto", "browserConcurrency": 10_000}), "invalid_request"),
        (json!({"url": site.url("/"), "render": "auto", "waitUntil": "whenever"}), "invalid_request"),
        (json!({"url": site.url("/"), "render": "chrome"}), "invalid_request"),
    ] {
        let resp = app.post_crawl(body.clone()).await;
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap();
        assert_eq!(status, 400, "{body} -> {v}");
        assert_eq!(v["error"]["code"], code, "{body} -> {v}");
    }
    // `auto` works without Chromium until a page needs it; that page fails clearly.
    let url = site.url("/js/app.html");
    let s = app.crawl(json!({"url": url, "crawlType": "page", "render": "auto"})).await;
    assert_eq!(s["status"], "failed", "{s}");
    let page = app.page(s["progressId"].as_str().unwrap(), &url).await;
    let e = page["error"].as_str().unwrap();
    assert!(e.starts_with("browser_unavailable: could not start Chromium: /nonexistent/chromium"), "{e}");
}
