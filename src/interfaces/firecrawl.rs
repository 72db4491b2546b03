//! A Firecrawl-compatible API under `/v2` (and `/v1`), so that the tools built on
//! Firecrawl's SDKs (Dify, Langflow, Flowise, scripts) can point at trawl:
//! `POST /v2/scrape`, `POST /v2/crawl` with its status, pages, errors and
//! cancel, `POST /v2/map`, and `POST /v2/batch/scrape`.
//!
//! A Firecrawl crawl is an ordinary trawl crawl (`recursive`): it shows in
//! the dashboard and the rooms, and what it stores is searchable. A scrape
//! fetches and extracts one page at once without storing it; a batch scrape
//! runs scrapes in the background and keeps their documents in memory for
//! an hour. Answers take Firecrawl's shapes (`{success, ...}`; errors
//! `{success: false, error}`), and an option that means nothing here is
//! refused with a 400 that names it (the README lists them).

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use crate::api::AppState;
use crate::auth::Tenant;
use crate::crawl::login::{Login, Secret};
use crate::crawl::request::{CrawlRequest, CrawlType};
use crate::crawl::{Engine, StartError};
use crate::error::ApiError;
use crate::progress::{CrawlState, CrawlStatus};
use crate::sync::LockExt;

/// Documents per status page (Firecrawl pages by size; a count keeps it simple).
const PAGE_DOCS: u32 = 50;
/// How long a batch scrape's documents are kept.
const BATCH_TTL: Duration = Duration::from_secs(3600);
/// URLs per batch scrape, at most, and scrapes of one batch at once.
const MAX_BATCH: usize = 1000;
/// Documents are kept in memory: at most this many bytes of one batch's
/// (a scrape past it is that URL's error), and this many batches at once.
const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;
const MAX_BATCHES: usize = 64;
const BATCH_CONCURRENCY: usize = 4;
/// A scrape's timeout when none is given, and the longest one taken.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_TIMEOUT: Duration = Duration::from_secs(300);
/// URLs a map answers at most.
const MAX_MAP: usize = 30_000;

/// What the `/v1` and `/v2` routes share.
#[derive(Clone)]
pub struct Firecrawl {
    app: AppState,
    batches: Arc<Mutex<HashMap<String, Arc<Batch>>>>,
    root: CancellationToken,
}

pub fn router(app: AppState, root: CancellationToken) -> Router {
    let keys = app.keys.clone();
    let state = Firecrawl { app, batches: Default::default(), root };
    let mut router = Router::new();
    // v1 and v2 differ only where noted (crawl depth and scope options,
    // map links as strings, the version in `url` and `next`).
    macro_rules! version {
        ($v:literal) => {
            router = router
                .route(concat!("/v", $v, "/scrape"), post(scrape))
                .route(concat!("/v", $v, "/crawl"), post(start_crawl::<$v>))
                .route(concat!("/v", $v, "/crawl/{id}"), get(crawl_status::<$v>).delete(cancel_crawl))
                .route(concat!("/v", $v, "/crawl/{id}/errors"), get(crawl_errors))
                .route(concat!("/v", $v, "/map"), post(map::<$v>))
                .route(concat!("/v", $v, "/batch/scrape"), post(start_batch::<$v>))
                .route(concat!("/v", $v, "/batch/scrape/{id}"), get(batch_status::<$v>).delete(cancel_batch))
                .route(concat!("/v", $v, "/batch/scrape/{id}/errors"), get(batch_errors));
        };
    }
    version!(1);
    version!(2);
    router.with_state(state).layer(axum::middleware::from_fn_with_state(keys, crate::api::auth::require_key))
}

/// Firecrawl's error shape, with the HTTP status trawl's error has.
struct FcError(StatusCode, String);

impl IntoResponse for FcError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "success": false, "error": self.1 }))).into_response()
    }
}

impl From<ApiError> for FcError {
    fn from(e: ApiError) -> Self {
        let status = e.status();
        FcError(status, e.body().error.message)
    }
}

impl From<crate::store::StoreError> for FcError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<StartError> for FcError {
    fn from(e: StartError) -> Self {
        ApiError::from(e).into()
    }
}

fn bad(message: impl Into<String>) -> FcError {
    FcError(StatusCode::BAD_REQUEST, message.into())
}

type FcResult = Result<Json<Value>, FcError>;

/// The body as JSON, with Firecrawl's error shape when it is not.
fn body(raw: &[u8]) -> Result<Map<String, Value>, FcError> {
    match serde_json::from_slice::<Value>(raw) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(bad("the body must be a JSON object")),
        Err(e) => Err(bad(format!("the body is not JSON: {e}"))),
    }
}

/// Options with no meaning here, refused when set to anything but their
/// default (`false`, empty, null).
const UNSUPPORTED: [&str; 12] = [
    "actions",
    "location",
    "mobile",
    "waitFor",
    "proxy",
    "jsonOptions",
    "changeTrackingOptions",
    "parsers",
    "blockAds",
    "fastMode",
    "prompt",
    "webhook",
];

fn refuse_unsupported(opts: &Map<String, Value>, place: &str) -> Result<(), FcError> {
    for key in UNSUPPORTED {
        match opts.get(key) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {}
            Some(Value::Array(a)) if a.is_empty() => {}
            Some(Value::Object(o)) if o.is_empty() => {}
            // Ad blocking and the default proxy are what trawl does anyway.
            Some(Value::Bool(true)) if key == "blockAds" => {}
            Some(Value::String(s)) if key == "proxy" && (s == "basic" || s == "auto") => {}
            Some(Value::Number(n)) if key == "waitFor" && n.as_u64() == Some(0) => {}
            Some(_) => return Err(bad(format!("{place}{key} is not supported by this server (trawl)"))),
        }
    }
    Ok(())
}

/// Firecrawl's `headers`: sent to the page's own host only, as a crawl's
/// login is (never shown, never kept).
fn headers_of(opts: &Map<String, Value>, place: &str) -> Result<BTreeMap<String, Secret>, FcError> {
    match opts.get("headers") {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(h)) => h
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), Secret(s.clone()))),
                _ => Err(bad(format!("{place}headers: the value of '{k}' must be a string"))),
            })
            .collect(),
        Some(_) => Err(bad(format!("{place}headers must be an object of header names to values"))),
    }
}

/// What a scrape should answer.
#[derive(Debug, Clone)]
struct ScrapeOptions {
    /// Sent with the request to the page's host (and redirect hops on it).
    headers: BTreeMap<String, Secret>,
    markdown: bool,
    html: bool,
    raw_html: bool,
    links: bool,
    only_main: bool,
    timeout: Duration,
}

impl ScrapeOptions {
    fn parse(opts: &Map<String, Value>, place: &str) -> Result<Self, FcError> {
        refuse_unsupported(opts, place)?;
        let mut o = ScrapeOptions {
            headers: headers_of(opts, place)?,
            markdown: false,
            html: false,
            raw_html: false,
            links: false,
            only_main: opts.get("onlyMainContent").and_then(Value::as_bool).unwrap_or(true),
            timeout: DEFAULT_TIMEOUT,
        };
        let formats = match opts.get("formats") {
            None | Some(Value::Null) => vec![Value::from("markdown")],
            Some(Value::Array(f)) => f.clone(),
            Some(_) => return Err(bad(format!("{place}formats must be a list"))),
        };
        for f in formats {
            // A format is a name or `{type: name, ...}`.
            let name = match &f {
                Value::String(s) => s.clone(),
                Value::Object(m) => m.get("type").and_then(Value::as_str).unwrap_or("").to_string(),
                _ => String::new(),
            };
            match name.as_str() {
                "markdown" => o.markdown = true,
                "html" => o.html = true,
                "rawHtml" => o.raw_html = true,
                "links" => o.links = true,
                // Metadata comes with every document.
                "metadata" => {}
                other => {
                    return Err(bad(format!(
                        "{place}formats: '{other}' is not supported by this server (trawl): markdown, html, rawHtml, links"
                    )));
                }
            }
        }
        if let Some(t) = opts.get("timeout").filter(|t| !t.is_null()) {
            let ms =
                t.as_u64().filter(|ms| *ms > 0).ok_or_else(|| bad(format!("{place}timeout must be milliseconds")))?;
            o.timeout = Duration::from_millis(ms).min(MAX_TIMEOUT);
        }
        Ok(o)
    }
}

/// A page fetched and extracted now, as a Firecrawl document; `Err` is the
/// page's error (for a batch's errors list).
async fn scrape_page(engine: &Engine, raw_url: &str, o: &ScrapeOptions) -> Result<Value, FcError> {
    let url = Url::parse(raw_url.trim()).map_err(|e| bad(format!("url is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("url must be http or https"));
    }
    let login = Login::new(&o.headers, &BTreeMap::new(), None, &url, false).map_err(|e| bad(e.to_string()))?;
    let guard = engine.fetcher.guard();
    guard.check_resolved(&url).await.map_err(|e| FcError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let fresh = Default::default();
    let fetch = engine.fetcher.fetch_if_changed(&url, login.as_ref(), &|_| true, &|_, _| true, &fresh);
    let fetched = tokio::time::timeout(o.timeout, fetch)
        .await
        .map_err(|_| FcError(StatusCode::REQUEST_TIMEOUT, format!("the page did not answer within {:?}", o.timeout)))?
        .map_err(|e| FcError(StatusCode::BAD_GATEWAY, format!("{}: {e}", e.code())))?;
    let mime = fetched.mime();
    let text = fetched.text();
    let final_url = fetched.final_url.clone();
    let is_html = mime.as_deref().is_none_or(|m| m.contains("html"));
    let (want_main, base) = (o.only_main, final_url.clone());
    let extracted = {
        let text = text.clone();
        let tracker = TaskTracker::new();
        let work = engine.pool.run(&tracker, move || {
            if is_html {
                let e = crate::process::page::extract_html(&text, &base);
                let markdown = if want_main { e.markdown.clone() } else { crate::process::html::to_markdown(&text) };
                (e.title, e.description, markdown, e.links)
            } else {
                let e = crate::process::page::extract_text(&text);
                (e.title, e.description, e.markdown, Vec::new())
            }
        });
        work.await.map_err(|e| FcError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    };
    let (title, description, markdown, links) = extracted;
    let mut doc = Map::new();
    if o.markdown {
        doc.insert("markdown".into(), markdown.into());
    }
    if o.html {
        doc.insert("html".into(), text.clone().into());
    }
    if o.raw_html {
        doc.insert("rawHtml".into(), text.into());
    }
    if o.links {
        doc.insert("links".into(), links.iter().map(Url::as_str).collect::<Vec<_>>().into());
    }
    doc.insert(
        "metadata".into(),
        json!({
            "title": title,
            "description": description,
            "sourceURL": raw_url,
            "url": final_url.as_str(),
            "statusCode": fetched.status,
            "contentType": fetched.content_type,
        }),
    );
    Ok(Value::Object(doc))
}

async fn scrape(State(fc): State<Firecrawl>, raw: axum::body::Bytes) -> FcResult {
    let req = body(&raw)?;
    let url = req.get("url").and_then(Value::as_str).ok_or_else(|| bad("url is required"))?;
    let opts = ScrapeOptions::parse(&req, "")?;
    let doc = scrape_page(fc.app.registry.engine(), url, &opts).await?;
    Ok(Json(json!({ "success": true, "data": doc })))
}

/// The service's own base URL, for the `url` and `next` links answers carry.
fn base(headers: &HeaderMap) -> String {
    let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let scheme = headers.get("x-forwarded-proto").and_then(|h| h.to_str().ok()).unwrap_or("http");
    format!("{scheme}://{host}")
}

/// Firecrawl's path patterns are regular expressions; trawl's are globs.
/// The common ones (`blog/.*`, `^/docs/`, `.*\.pdf$`) translate; a pattern
/// that needs more of regex is refused rather than read differently.
fn regex_to_glob(pattern: &str) -> Result<String, FcError> {
    let mut p = pattern.trim();
    let anchored = p.starts_with('^');
    p = p.trim_start_matches('^');
    let ends = p.ends_with('$');
    p = p.trim_end_matches('$');
    let mut out = String::new();
    let mut chars = p.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' if chars.peek() == Some(&'*') => {
                chars.next();
                out.push('*');
            }
            '\\' => match chars.next() {
                Some(n @ ('.' | '/' | '-' | '_')) => out.push(n),
                _ => {
                    return Err(bad(format!(
                        "includePaths/excludePaths: '{pattern}' uses more regex than this server supports"
                    )));
                }
            },
            '.' | '[' | ']' | '(' | ')' | '{' | '}' | '+' | '?' | '|' | '*' => {
                return Err(bad(format!(
                    "includePaths/excludePaths: '{pattern}' uses more regex than this server supports (.* and escaped dots are)"
                )));
            }
            c => out.push(c),
        }
    }
    let lead = if out.starts_with('/') || out.starts_with('*') { "" } else { "/" };
    let prefix = if anchored { "" } else { "*" };
    let suffix = if ends || out.ends_with('*') { "" } else { "*" };
    Ok(format!("{prefix}{lead}{out}{suffix}").replace("**", "*"))
}

fn globs(req: &Map<String, Value>, key: &str) -> Result<Vec<String>, FcError> {
    match req.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|p| p.as_str().ok_or_else(|| bad(format!("{key} must be a list of strings"))).and_then(regex_to_glob))
            .collect(),
        Some(_) => Err(bad(format!("{key} must be a list of strings"))),
    }
}

fn uint(req: &Map<String, Value>, key: &str) -> Result<Option<u32>, FcError> {
    match req.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| bad(format!("{key} must be a whole number"))),
    }
}

async fn start_crawl<const V: u8>(
    State(fc): State<Firecrawl>,
    Extension(tenant): Extension<Tenant>,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> FcResult {
    let req = body(&raw)?;
    let url = req.get("url").and_then(Value::as_str).ok_or_else(|| bad("url is required"))?;
    refuse_unsupported(&req, "")?;
    let mut login_headers = BTreeMap::new();
    if let Some(Value::Object(o)) = req.get("scrapeOptions") {
        // Crawled pages are stored as markdown of their main content.
        refuse_unsupported(o, "scrapeOptions.")?;
        login_headers = headers_of(o, "scrapeOptions.")?;
    }
    // v1 says allowBackwardLinks for what v2 calls crawlEntireDomain.
    let entire_key = if V == 1 { "allowBackwardLinks" } else { "crawlEntireDomain" };
    let crawl_entire_domain = req.get(entire_key).and_then(Value::as_bool).unwrap_or(false);
    let mut include = globs(&req, "includePaths")?;
    if include.is_empty() && !crawl_entire_domain {
        // Firecrawl crawls below the start URL's path unless told otherwise.
        if let Ok(u) = Url::parse(url.trim()) {
            let path = u.path().rsplit_once('/').map(|(dir, _)| dir).unwrap_or("");
            if !path.is_empty() {
                include.push(format!("{path}/*"));
            }
        }
    }
    let mut request = CrawlRequest::new(url.trim());
    request.crawl_type = CrawlType::Recursive;
    request.max_pages = uint(&req, "limit")?;
    request.max_depth = uint(&req, if V == 1 { "maxDepth" } else { "maxDiscoveryDepth" })?;
    request.include = include;
    request.exclude = globs(&req, "excludePaths")?;
    request.same_domain = Some(!req.get("allowExternalLinks").and_then(Value::as_bool).unwrap_or(false));
    request.respect_robots = Some(!req.get("ignoreRobotsTxt").and_then(Value::as_bool).unwrap_or(false));
    request.allow_subdomains = req.get("allowSubdomains").and_then(Value::as_bool);
    request.concurrency = uint(&req, "maxConcurrency")?;
    request.headers = login_headers;
    let status = fc.app.registry.start(request, tenant.0).await?;
    let id = status.progress_id;
    Ok(Json(json!({ "success": true, "id": id, "url": format!("{}/v{V}/crawl/{id}", base(&headers)) })))
}

/// A crawl's or a batch's status with one page of its documents.
fn job_page(
    status: &str,
    completed: u64,
    total: u64,
    expires: chrono::DateTime<chrono::Utc>,
    next: Option<String>,
    data: Vec<Value>,
) -> Json<Value> {
    Json(json!({
        "success": true,
        "status": status,
        "completed": completed,
        "total": total,
        "creditsUsed": completed,
        "expiresAt": crate::progress::format_time(&expires),
        "next": next,
        "data": data,
    }))
}

fn fc_status(s: CrawlState) -> &'static str {
    match s {
        CrawlState::Completed => "completed",
        CrawlState::Failed => "failed",
        // A stop is asked and under way: to Firecrawl's clients, cancelled.
        CrawlState::Cancelled | CrawlState::Stopping => "cancelled",
        _ => "scraping",
    }
}

#[derive(Deserialize)]
struct PageQuery {
    skip: Option<String>,
}

async fn visible_crawl(fc: &Firecrawl, id: &str, tenant: &Tenant) -> Result<CrawlStatus, FcError> {
    fc.app.registry.status(id, tenant.as_deref()).await?.ok_or_else(|| {
        FcError(StatusCode::NOT_FOUND, format!("no crawl job with id '{}'", id.chars().take(40).collect::<String>()))
    })
}

async fn crawl_status<const V: u8>(
    State(fc): State<Firecrawl>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> FcResult {
    let status = visible_crawl(&fc, &id, &tenant).await?;
    let mut after = match q.skip.as_deref() {
        None | Some("") => 0,
        Some(s) => s.parse::<i64>().map_err(|_| bad("skip must be the cursor a previous answer gave"))?,
    };
    // The stored pages with their markdown, crawled ones only.
    let mut data = Vec::new();
    let mut more = false;
    loop {
        let rows = fc.app.store.list_pages(&id, Some(after), PAGE_DOCS, true).await?;
        let full = rows.len() == PAGE_DOCS as usize;
        for p in rows {
            after = p.row_id;
            if p.status == "crawled" {
                data.push(json!({
                    "markdown": p.markdown.unwrap_or_default(),
                    "metadata": {
                        "title": p.title,
                        "sourceURL": p.url,
                        "url": p.final_url.as_deref().unwrap_or(&p.url),
                        "statusCode": p.http_status,
                    },
                }));
            }
            if data.len() == PAGE_DOCS as usize {
                more = true;
                break;
            }
        }
        if more || !full {
            break;
        }
    }
    let next = more.then(|| format!("{}/v{V}/crawl/{id}?skip={after}", base(&headers)));
    let expires = status.finished_at.unwrap_or(status.created_at) + chrono::Duration::days(1);
    let total = status.pages_done() + status.pages_queued;
    Ok(job_page(fc_status(status.status), status.pages_crawled, total, expires, next, data))
}

async fn cancel_crawl(
    State(fc): State<Firecrawl>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
) -> Result<Response, FcError> {
    let before = visible_crawl(&fc, &id, &tenant).await?;
    if matches!(before.status, CrawlState::Completed | CrawlState::Failed) {
        return Err(FcError(StatusCode::CONFLICT, "the crawl has already ended".into()));
    }
    fc.app.registry.stop(&id, tenant.as_deref()).await?;
    Ok(Json(json!({ "success": true, "status": "cancelled" })).into_response())
}

async fn crawl_errors(
    State(fc): State<Firecrawl>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
) -> FcResult {
    visible_crawl(&fc, &id, &tenant).await?;
    let (mut errors, mut robots, mut after) = (Vec::new(), Vec::new(), 0);
    loop {
        let rows = fc.app.store.list_pages(&id, Some(after), 500, false).await?;
        let full = rows.len() == 500;
        for p in rows {
            after = p.row_id;
            let error = p.error.unwrap_or_default();
            if error.starts_with("robots_disallowed") {
                robots.push(Value::from(p.url));
            } else if p.status == "failed" {
                errors.push(json!({ "id": p.row_id.to_string(), "url": p.url, "error": error, "code": p.http_status }));
            }
        }
        if !full {
            break;
        }
    }
    Ok(Json(json!({ "errors": errors, "robotsBlocked": robots })))
}

/// URLs of a site: its sitemap's (through robots.txt's `Sitemap:` lines and
/// `/sitemap.xml`, one index level deep) and the start page's links.
async fn map<const V: u8>(State(fc): State<Firecrawl>, raw: axum::body::Bytes) -> FcResult {
    let req = body(&raw)?;
    let raw_url = req.get("url").and_then(Value::as_str).ok_or_else(|| bad("url is required"))?;
    let start = Url::parse(raw_url.trim()).map_err(|e| bad(format!("url is not a URL: {e}")))?;
    if !matches!(start.scheme(), "http" | "https") || start.host_str().is_none() {
        return Err(bad("url must be http or https"));
    }
    let limit = uint(&req, "limit")?.map_or(5000, |n| n as usize).clamp(1, MAX_MAP);
    let search = req.get("search").and_then(Value::as_str).map(str::to_lowercase).filter(|s| !s.is_empty());
    let subdomains = req.get("includeSubdomains").and_then(Value::as_bool).unwrap_or(true);
    let sitemap_mode = req.get("sitemap").and_then(Value::as_str).unwrap_or("include");
    if !matches!(sitemap_mode, "include" | "only" | "skip") {
        return Err(bad("sitemap must be include, only or skip"));
    }
    let engine = fc.app.registry.engine();
    engine.fetcher.guard().check_resolved(&start).await.map_err(|e| bad(e.to_string()))?;
    let timeout = DEFAULT_TIMEOUT;
    let get = |u: Url| async move {
        let f = tokio::time::timeout(timeout, engine.fetcher.fetch(&u, &|_| true, &|_, _| true)).await.ok()?.ok()?;
        (f.status < 400).then(|| f.body.map(|b| b.to_vec())).flatten()
    };
    let mut found: Vec<Url> = Vec::new();
    if sitemap_mode != "skip" {
        let mut docs = vec![start.join("/sitemap.xml").map_err(|e| bad(e.to_string()))?];
        if let Some(robots) = get(start.join("/robots.txt").map_err(|e| bad(e.to_string()))?).await {
            for line in String::from_utf8_lossy(&robots).lines() {
                if let Some((k, v)) = line.split_once(':')
                    && k.trim().eq_ignore_ascii_case("sitemap")
                    && let Ok(u) = Url::parse(v.trim())
                    && !docs.contains(&u)
                {
                    docs.push(u);
                }
            }
        }
        let mut seen_docs = 0;
        while let Some(doc) = docs.pop() {
            seen_docs += 1;
            if seen_docs > 50 || found.len() >= MAX_MAP {
                break;
            }
            let Some(bytes) = get(doc).await else { continue };
            match crate::crawl::discover::parse_sitemap(&bytes) {
                Ok(crate::crawl::discover::Sitemap::Urls(urls)) => {
                    found.extend(urls.iter().filter_map(|u| Url::parse(u).ok()))
                }
                Ok(crate::crawl::discover::Sitemap::Index(more)) => {
                    docs.extend(more.iter().filter_map(|u| Url::parse(u).ok()))
                }
                Err(_) => {}
            }
        }
    }
    if sitemap_mode != "only"
        && let Some(bytes) = get(start.clone()).await
    {
        let html = String::from_utf8_lossy(&bytes).into_owned();
        let (links, _) = crate::process::page::links_of(&html, &start);
        found.insert(0, start.clone());
        found.extend(links);
    }
    let host = start.host_str().unwrap_or_default().trim_start_matches("www.").to_string();
    let mut seen = std::collections::HashSet::new();
    let links: Vec<Value> = found
        .into_iter()
        .filter(|u| {
            let h = u.host_str().unwrap_or_default().trim_start_matches("www.");
            h == host || (subdomains && h.ends_with(&format!(".{host}")))
        })
        .filter(|u| search.as_ref().is_none_or(|s| u.as_str().to_lowercase().contains(s)))
        .filter(|u| seen.insert(u.as_str().trim_end_matches('/').to_string()))
        .take(limit)
        // v1 answers the URLs themselves, v2 objects.
        .map(|u| if V == 1 { json!(u.as_str()) } else { json!({ "url": u.as_str() }) })
        .collect();
    Ok(Json(json!({ "success": true, "links": links })))
}

/// A batch scrape: its documents as they come, kept for an hour.
struct Batch {
    tenant: Option<String>,
    total: usize,
    created: Instant,
    stop: CancellationToken,
    state: Mutex<BatchState>,
}

#[derive(Default)]
struct BatchState {
    docs: Vec<Value>,
    /// The documents' size as JSON.
    bytes: usize,
    errors: Vec<Value>,
    done: usize,
    finished: bool,
}

async fn start_batch<const V: u8>(
    State(fc): State<Firecrawl>,
    Extension(tenant): Extension<Tenant>,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> FcResult {
    let req = body(&raw)?;
    let urls: Vec<String> = match req.get("urls") {
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|u| u.as_str().map(str::to_string).ok_or_else(|| bad("urls must be strings")))
            .collect::<Result<_, _>>()?,
        _ => return Err(bad("urls must be a list of URLs")),
    };
    if urls.len() > MAX_BATCH {
        return Err(bad(format!("a batch takes at most {MAX_BATCH} URLs")));
    }
    let opts = ScrapeOptions::parse(&req, "")?;
    let (valid, invalid): (Vec<String>, Vec<String>) = urls.into_iter().partition(|u| {
        Url::parse(u.trim()).is_ok_and(|p| matches!(p.scheme(), "http" | "https") && p.host_str().is_some())
    });
    if valid.is_empty() && req.get("ignoreInvalidURLs").and_then(Value::as_bool) != Some(true) {
        return Err(bad("no valid URL in urls"));
    }
    let id = uuid::Uuid::now_v7().to_string();
    let batch = Arc::new(Batch {
        tenant: tenant.0.clone(),
        total: valid.len(),
        created: Instant::now(),
        stop: fc.root.child_token(),
        state: Mutex::default(),
    });
    {
        let mut batches = fc.batches.locked();
        batches.retain(|_, b| b.created.elapsed() < BATCH_TTL);
        if batches.len() >= MAX_BATCHES {
            return Err(FcError(
                StatusCode::TOO_MANY_REQUESTS,
                format!("{MAX_BATCHES} batch scrapes are kept already; try again when one has expired (after an hour)"),
            ));
        }
        batches.insert(id.clone(), batch.clone());
    }
    let engine = fc.app.registry.engine().clone();
    fc.app.registry.track(async move {
        use futures::StreamExt;
        let stop = batch.stop.clone();
        let work = futures::stream::iter(valid).for_each_concurrent(BATCH_CONCURRENCY, |url| {
            let (engine, batch, opts) = (engine.clone(), batch.clone(), opts.clone());
            async move {
                let result = scrape_page(&engine, &url, &opts).await;
                // Measured before the lock: a document can be megabytes.
                let size = result.as_ref().map_or(0, |doc| doc.to_string().len());
                let mut s = batch.state.locked();
                s.done += 1;
                let result = match result {
                    Ok(_) if s.bytes + size > MAX_BATCH_BYTES => Err(FcError(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!(
                            "the batch's documents passed {MAX_BATCH_BYTES} bytes; scrape the rest in another batch"
                        ),
                    )),
                    other => other,
                };
                match result {
                    Ok(doc) => {
                        s.bytes += size;
                        s.docs.push(doc)
                    }
                    Err(FcError(code, error)) => {
                        let n = s.done.to_string();
                        s.errors.push(json!({ "id": n, "url": url, "error": error, "code": code.as_u16() }))
                    }
                }
            }
        });
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = work => {}
        }
        batch.state.locked().finished = true;
    });
    let mut answer = json!({ "success": true, "id": id, "url": format!("{}/v{V}/batch/scrape/{id}", base(&headers)) });
    if !invalid.is_empty() {
        answer["invalidURLs"] = invalid.into();
    }
    Ok(Json(answer))
}

fn visible_batch(fc: &Firecrawl, id: &str, tenant: &Tenant) -> Result<Arc<Batch>, FcError> {
    let batch = fc.batches.locked().get(id).cloned();
    batch.filter(|b| tenant.0.is_none() || b.tenant == tenant.0).ok_or_else(|| {
        FcError(StatusCode::NOT_FOUND, "no batch scrape job with that id (they are kept for an hour)".into())
    })
}

async fn batch_status<const V: u8>(
    State(fc): State<Firecrawl>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> FcResult {
    let batch = visible_batch(&fc, &id, &tenant)?;
    let skip = q.skip.as_deref().and_then(|s| s.parse::<usize>().ok()).unwrap_or(0);
    let s = batch.state.locked();
    let status = if batch.stop.is_cancelled() && !s.finished {
        "cancelled"
    } else if s.finished {
        if batch.stop.is_cancelled() { "cancelled" } else { "completed" }
    } else {
        "scraping"
    };
    let data: Vec<Value> = s.docs.iter().skip(skip).take(PAGE_DOCS as usize).cloned().collect();
    let end = skip + data.len();
    let next = (end < s.docs.len()).then(|| format!("{}/v{V}/batch/scrape/{id}?skip={end}", base(&headers)));
    let left = chrono::Duration::from_std(BATCH_TTL.saturating_sub(batch.created.elapsed())).unwrap_or_default();
    Ok(job_page(status, s.docs.len() as u64, batch.total as u64, chrono::Utc::now() + left, next, data))
}

async fn cancel_batch(
    State(fc): State<Firecrawl>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
) -> FcResult {
    let batch = visible_batch(&fc, &id, &tenant)?;
    if batch.state.locked().finished && !batch.stop.is_cancelled() {
        return Err(FcError(StatusCode::CONFLICT, "the batch scrape has already ended".into()));
    }
    batch.stop.cancel();
    Ok(Json(json!({ "success": true, "status": "cancelled" })))
}

async fn batch_errors(
    State(fc): State<Firecrawl>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
) -> FcResult {
    let batch = visible_batch(&fc, &id, &tenant)?;
    let errors = batch.state.locked().errors.clone();
    Ok(Json(json!({ "errors": errors, "robotsBlocked": [] })))
}

#[cfg(test)]
mod tests {
    use super::regex_to_glob;

    #[test]
    fn firecrawls_common_path_patterns_become_globs() {
        let g = |p: &str| regex_to_glob(p).map_err(|e| e.1);
        assert_eq!(g("blog/.*").unwrap(), "*/blog/*");
        assert_eq!(g("^/docs/.*").unwrap(), "/docs/*");
        assert_eq!(g(".*\\.pdf$").unwrap(), "*.pdf");
        assert_eq!(g("^/docs/guide$").unwrap(), "/docs/guide");
        assert!(g("/(a|b)/").is_err());
        assert!(g("/docs/[0-9]+").is_err());
    }
}
