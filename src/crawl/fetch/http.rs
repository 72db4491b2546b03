//! Fetching over plain HTTP with reqwest.
//!
//! Redirects are followed here, not by reqwest, so that every hop is checked
//! against the crawl's scope and the address guard, loops are named as loops,
//! and the hop count is bounded. Bodies are read chunk by chunk so that an
//! oversized page is cut off instead of filling memory. The whole fetch runs
//! under one deadline; dropping the future aborts the request at once, which
//! is how a stop interrupts pages in flight.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, LOCATION};
use url::Url;

use crate::crawl::CrawlerConfig;
use crate::crawl::login::Login;
use crate::guard::{AddressGuard, ForbiddenAddress};
use crate::urls;

/// At most this many redirects are followed for one URL.
pub const MAX_REDIRECTS: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Forbidden(#[from] ForbiddenAddress),
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    #[error("body larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects,
    #[error("redirect loop back to {0}")]
    RedirectLoop(String),
    #[error("redirect to {0} leaves the crawl's scope")]
    RedirectOutOfScope(String),
    #[error("redirect without a usable Location header")]
    BadRedirect,
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("{0}")]
    Http(String),
}

impl FetchError {
    /// A stable word for the page's `error`, so clients can group failures.
    pub fn code(&self) -> &'static str {
        match self {
            FetchError::Forbidden(_) => "forbidden_address",
            FetchError::Timeout(_) => "timeout",
            FetchError::TooLarge { .. } => "too_large",
            FetchError::TooManyRedirects => "too_many_redirects",
            FetchError::RedirectLoop(_) => "redirect_loop",
            FetchError::RedirectOutOfScope(_) => "redirect_out_of_scope",
            FetchError::BadRedirect => "bad_redirect",
            FetchError::Connect(_) => "connection_failed",
            FetchError::Http(_) => "http_error",
        }
    }

    fn from_reqwest(e: reqwest::Error, timeout: Duration) -> Self {
        if let Some(f) = ForbiddenAddress::in_chain(&e) {
            return FetchError::Forbidden(ForbiddenAddress { host: f.host.clone(), ip: f.ip });
        }
        if e.is_timeout() {
            return FetchError::Timeout(timeout);
        }
        let mut root: &dyn std::error::Error = &e;
        while let Some(s) = root.source() {
            root = s;
        }
        if e.is_connect() { FetchError::Connect(root.to_string()) } else { FetchError::Http(root.to_string()) }
    }
}

/// What a fetch brought back. `body` is `None` when the caller declined it
/// after seeing the status and content type (non-HTML content is not downloaded).
#[derive(Debug)]
pub struct Fetched {
    pub final_url: Url,
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Option<Bytes>,
    /// The validators it was served with, for a conditional GET next time.
    pub validators: Validators,
}

/// `ETag` and `Last-Modified` as a server sent them; sent back as
/// `If-None-Match` and `If-Modified-Since`, they let it answer `304`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Validators {
    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }

    fn of(headers: &reqwest::header::HeaderMap) -> Self {
        // Only what fits in a header line again, and not absurdly long.
        let get = |name| {
            headers
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .filter(|v| !v.is_empty() && v.len() <= 512)
                .map(str::to_string)
        };
        Self { etag: get(ETAG), last_modified: get(LAST_MODIFIED) }
    }
}

impl Fetched {
    /// The media type without parameters, lowercased.
    pub fn mime(&self) -> Option<String> {
        self.content_type.as_deref().map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
    }

    /// Decodes the body by its declared or sniffed charset; invalid bytes
    /// become U+FFFD rather than losing the page.
    pub fn text(&self) -> String {
        let Some(body) = &self.body else {
            return String::new();
        };
        decode_charset(body, self.content_type.as_deref())
    }
}

/// Decodes by the `charset` of the content type, else a `<meta charset>` near
/// the start, else UTF-8; a BOM wins over both.
pub fn decode_charset(body: &[u8], content_type: Option<&str>) -> String {
    let label = content_type
        .and_then(|c| c.parse::<mime::Mime>().ok())
        .and_then(|m| m.get_param(mime::CHARSET).map(|v| v.as_str().to_string()))
        .or_else(|| sniff_meta_charset(&body[..body.len().min(2048)]));
    let encoding = label.and_then(|l| encoding_rs::Encoding::for_label(l.as_bytes())).unwrap_or(encoding_rs::UTF_8);
    let (text, _, _) = encoding.decode(body);
    text.into_owned()
}

fn sniff_meta_charset(head: &[u8]) -> Option<String> {
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
    let at = head.find("charset=")? + "charset=".len();
    let rest = head[at..].trim_start_matches(['"', '\'']);
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))?;
    (end > 0).then(|| rest[..end].to_string())
}

pub struct HttpFetcher {
    client: reqwest::Client,
    guard: AddressGuard,
    timeout: Duration,
    max_bytes: usize,
}

/// The HTTP client could not be built (TLS setup); the service cannot start.
#[derive(Debug, thiserror::Error)]
#[error("could not build the HTTP client: {0}")]
pub struct ClientBuildError(#[from] reqwest::Error);

impl HttpFetcher {
    pub fn new(config: &CrawlerConfig) -> Result<Self, ClientBuildError> {
        let guard = AddressGuard { allow_private: config.allow_private_networks };
        let mut builder = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .redirect(reqwest::redirect::Policy::none())
            // An `HTTP_PROXY` in the environment would resolve host names
            // itself, out of the guard's sight: environment proxies are ignored.
            .no_proxy()
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(config.max_concurrency)
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .default_headers({
                let mut h = reqwest::header::HeaderMap::new();
                h.insert(
                    reqwest::header::ACCEPT,
                    reqwest::header::HeaderValue::from_static(
                        "text/html,application/xhtml+xml,text/markdown;q=0.9,text/plain;q=0.9,*/*;q=0.5",
                    ),
                );
                h
            });
        if let Some(resolver) = guard.resolver() {
            builder = builder.dns_resolver(resolver);
        }
        Ok(Self { client: builder.build()?, guard, timeout: config.request_timeout, max_bytes: config.max_page_bytes })
    }

    pub fn guard(&self) -> AddressGuard {
        self.guard
    }

    /// Fetches `url`, following redirects that `in_scope` accepts.
    /// `want_body(status, mime)` decides whether the body is downloaded.
    pub async fn fetch(
        &self,
        url: &Url,
        in_scope: &(dyn Fn(&Url) -> bool + Sync),
        want_body: &(dyn Fn(u16, Option<&str>) -> bool + Sync),
    ) -> Result<Fetched, FetchError> {
        self.fetch_if_changed(url, None, in_scope, want_body, &Validators::default()).await
    }

    /// As [`HttpFetcher::fetch`], for a crawl: with its `login` on the hops
    /// to its hosts, and asking with `validators` (a server whose copy
    /// matches answers `304`, with no body).
    pub async fn fetch_if_changed(
        &self,
        url: &Url,
        login: Option<&Login>,
        in_scope: &(dyn Fn(&Url) -> bool + Sync),
        want_body: &(dyn Fn(u16, Option<&str>) -> bool + Sync),
        validators: &Validators,
    ) -> Result<Fetched, FetchError> {
        match tokio::time::timeout(self.timeout, self.fetch_inner(url, login, in_scope, want_body, validators)).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout(self.timeout)),
        }
    }

    async fn fetch_inner(
        &self,
        url: &Url,
        login: Option<&Login>,
        in_scope: &(dyn Fn(&Url) -> bool + Sync),
        want_body: &(dyn Fn(u16, Option<&str>) -> bool + Sync),
        validators: &Validators,
    ) -> Result<Fetched, FetchError> {
        let mut current = url.clone();
        let mut chain: Vec<Url> = vec![current.clone()];
        loop {
            self.guard.check_literal(&current)?;
            let mut request = self.client.get(current.clone());
            // Each hop on its own: a redirect to another host goes without it.
            if let Some(headers) = login.and_then(|l| l.headers_for(&current)) {
                request = request.headers(headers.clone());
            }
            if let Some(etag) = &validators.etag {
                request = request.header(IF_NONE_MATCH, etag);
            }
            if let Some(modified) = &validators.last_modified {
                request = request.header(IF_MODIFIED_SINCE, modified);
            }
            let mut resp = request.send().await.map_err(|e| FetchError::from_reqwest(e, self.timeout))?;
            let status = resp.status();
            if status.is_redirection() && status != reqwest::StatusCode::NOT_MODIFIED {
                let next = resp
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|loc| current.join(loc).ok())
                    .and_then(|u| urls::normalize(&u))
                    .ok_or(FetchError::BadRedirect)?;
                if chain.contains(&next) {
                    return Err(FetchError::RedirectLoop(next.to_string()));
                }
                if chain.len() > MAX_REDIRECTS {
                    return Err(FetchError::TooManyRedirects);
                }
                if !in_scope(&next) {
                    return Err(FetchError::RedirectOutOfScope(next.to_string()));
                }
                chain.push(next.clone());
                current = next;
                continue;
            }
            let content_type = resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
            let validators = Validators::of(resp.headers());
            let mime = content_type.as_deref().map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
            let body =
                if want_body(status.as_u16(), mime.as_deref()) { Some(self.read_body(&mut resp).await?) } else { None };
            return Ok(Fetched { final_url: current, status: status.as_u16(), content_type, body, validators });
        }
    }

    async fn read_body(&self, resp: &mut reqwest::Response) -> Result<Bytes, FetchError> {
        let declared =
            resp.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > self.max_bytes) {
            return Err(FetchError::TooLarge { limit: self.max_bytes });
        }
        let mut buf = BytesMut::with_capacity(declared.unwrap_or(16 * 1024).min(self.max_bytes));
        while let Some(chunk) = resp.chunk().await.map_err(|e| FetchError::from_reqwest(e, self.timeout))? {
            if buf.len() + chunk.len() > self.max_bytes {
                return Err(FetchError::TooLarge { limit: self.max_bytes });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_declared_charsets_and_replaces_invalid_utf8() {
        assert_eq!(decode_charset(b"caf\xe9", Some("text/html; charset=iso-8859-1")), "café");
        assert_eq!(
            decode_charset(b"<meta charset=\"windows-1252\">\x93q\x94", None),
            "<meta charset=\"windows-1252\">\u{201c}q\u{201d}"
        );
        assert_eq!(decode_charset(b"ok \xff end", Some("text/html")), "ok \u{fffd} end");
    }
}
