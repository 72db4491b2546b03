//! `CrawlRequest` as clients send it, and `CrawlSpec`, the validated form the
//! engine runs. All checks of user input happen here, once.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::crawl::CrawlerConfig;
use crate::crawl::fetch::WaitUntil;
use crate::crawl::login::{BasicAuth, Login, Secret};
use crate::crawl::scope::Scope;
use crate::process::{ChunkOptions, ChunkUnit, ProcessOptions};
use crate::urls;

/// Bounds of `chunkSize`, in characters.
const CHUNK_SIZE_RANGE: std::ops::RangeInclusive<u32> = 100..=20_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CrawlType {
    #[default]
    Auto,
    Page,
    Sitemap,
    #[serde(alias = "llms-txt", alias = "llmsTxt")]
    LlmsTxt,
    Recursive,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Render {
    #[default]
    Http,
    Browser,
    Auto,
}

/// `CrawlRequest` of CONTRACT.md; keys in camelCase or snake_case. Unknown
/// keys are refused so that a typo (`maxdepth`) is not silently ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CrawlRequest {
    /// The http(s) URL to start from. Its host must not resolve only to
    /// private, loopback or link-local addresses (unless the service allows them).
    #[schema(min_length = 1, max_length = 4096)]
    pub url: String,
    /// `auto` (default: from the URL's name, else from what it serves),
    /// `page`, `sitemap`, `llms_txt` or `recursive`.
    #[serde(default, alias = "crawl_type")]
    #[schema(default = "auto")]
    pub crawl_type: CrawlType,
    /// Link hops followed from the start page by `recursive` crawls (default 3).
    /// A crawl it cuts short ends with `limitReached: "maxDepth"`.
    #[serde(default, alias = "max_depth", deserialize_with = "whole_number")]
    #[schema(minimum = 0, maximum = 100, default = 3)]
    pub max_depth: Option<u32>,
    /// Pages taken on at most (default 1000). A crawl it cuts short ends
    /// with `limitReached: "maxPages"`.
    #[serde(default, alias = "max_pages", deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 1_000_000, default = 1000)]
    pub max_pages: Option<u32>,
    /// Path globs a URL must match one of (none: every path).
    #[serde(default)]
    #[schema(max_items = 100)]
    pub include: Vec<String>,
    /// Path globs no URL may match.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub exclude: Vec<String>,
    /// Stay on the start URL's host (default true).
    #[serde(default, alias = "same_domain")]
    #[schema(default = true)]
    pub same_domain: Option<bool>,
    /// With `sameDomain`, hosts below the start host count as its own
    /// (`docs.example.com` for `example.com`; default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(default = false)]
    pub allow_subdomains: Option<bool>,
    /// Honour robots.txt (default true).
    #[serde(default, alias = "respect_robots")]
    #[schema(default = true)]
    pub respect_robots: Option<bool>,
    /// `http` (default), `browser` or `auto`.
    #[serde(default)]
    #[schema(default = "http")]
    pub render: Option<Render>,
    /// Fetches in flight at once (default 16, the service's
    /// `--default-concurrency`).
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 256, default = 16)]
    pub concurrency: Option<u32>,
    /// Browser pages open at once for this crawl (default 4, at most the
    /// service's browser max pages, 8 by default).
    #[serde(default, alias = "browser_concurrency", deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 8, default = 4)]
    pub browser_concurrency: Option<u32>,
    /// When a rendered page counts as loaded: `domcontentloaded` (default,
    /// plus a short settle), `load` or `networkidle`.
    #[serde(default, alias = "wait_until")]
    #[schema(default = "domcontentloaded")]
    pub wait_until: Option<WaitUntil>,
    /// Labels kept with the crawl: at most 32, each 1 to 100 characters.
    #[serde(default)]
    #[schema(max_items = 32)]
    pub tags: Vec<String>,
    /// Largest chunk in characters (default 1200).
    #[serde(default, alias = "chunk_size", deserialize_with = "whole_number")]
    #[schema(minimum = 100, maximum = 20_000, default = 1200)]
    pub chunk_size: Option<u32>,
    /// Characters shared by consecutive chunks (default 150, or a quarter of
    /// `chunkSize` when that is smaller); less than `chunkSize`.
    #[serde(default, alias = "chunk_overlap", deserialize_with = "whole_number")]
    #[schema(default = 150)]
    pub chunk_overlap: Option<u32>,
    /// `characters` (default) or `tokens` (tiktoken cl100k_base) for the two above.
    #[serde(default, alias = "chunk_unit")]
    #[schema(default = "characters")]
    pub chunk_unit: Option<ChunkUnit>,
    /// Where to post the crawl's events (signed; see the README's Webhooks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<crate::webhooks::WebhookSpec>,
    /// For a site behind a login: headers sent with every request to the
    /// crawl's hosts (e.g. `{"Authorization": "Bearer …"}`): robots.txt,
    /// sitemaps, llms.txt, pages, redirect hops and a rendered page's own
    /// requests; never to another host, nor over `http` after an `https`
    /// start. At most 50, each value at most 8 KiB. Never shown; stored only
    /// until the crawl ends (for another instance to resume it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = HashMap<String, String>)]
    pub headers: BTreeMap<String, Secret>,
    /// Cookies sent as one `Cookie` header, as `headers` are: name to value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = HashMap<String, String>)]
    pub cookies: BTreeMap<String, Secret>,
    /// HTTP basic auth, sent as `headers` are. A start URL's
    /// `user:password@` is taken as this.
    #[serde(default, alias = "basic_auth", skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
}

impl CrawlRequest {
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), ..Self::default() }
    }
}

/// A whole number as JSON Schema has it: `28` and `28.0` alike (a schema's
/// `integer` takes both), while `28.5`, negatives and numbers past `u32`
/// are refused.
pub fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    use serde::de::Error;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(u) = n.as_u64() {
        return u32::try_from(u).map(Some).map_err(|_| D::Error::custom(format!("{n} is larger than {}", u32::MAX)));
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&f) => Ok(Some(f as u32)),
        _ => Err(D::Error::custom(format!("{n} is not a whole number from 0 to {}", u32::MAX))),
    }
}

/// A validated request with every default filled in.
#[derive(Debug, Clone)]
pub struct CrawlSpec {
    pub url: Url,
    pub crawl_type: CrawlType,
    pub max_depth: u32,
    pub max_pages: u32,
    pub same_domain: bool,
    pub respect_robots: bool,
    pub render: Render,
    pub concurrency: usize,
    /// Browser pages open at once for this crawl.
    pub browser_concurrency: usize,
    pub wait_until: WaitUntil,
    pub scope: Scope,
    /// How pages become markdown, chunks and code examples.
    pub process: ProcessOptions,
    /// What a site behind a login needs, sent only to the crawl's hosts.
    pub login: Option<Arc<Login>>,
    /// The request as accepted, kept with the crawl.
    pub request: CrawlRequest,
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("{0}")]
    InvalidUrl(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unsupported(String),
}

const MAX_URL_LEN: usize = 4096;
const MAX_GLOBS: usize = 100;
pub(crate) const MAX_TAGS: usize = 32;
pub(crate) const MAX_TAG_LEN: usize = 100;

/// Parses and checks a URL a user asked to crawl.
pub fn parse_start_url(raw: &str) -> Result<Url, RequestError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(RequestError::InvalidUrl("url must not be empty".into()));
    }
    if raw.len() > MAX_URL_LEN {
        return Err(RequestError::InvalidUrl(format!("url is longer than {MAX_URL_LEN} characters")));
    }
    let url = Url::parse(raw)
        .map_err(|e| RequestError::InvalidUrl(format!("url '{raw}' is not a valid absolute URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(RequestError::InvalidUrl(format!(
            "url scheme '{}' is not supported; use http or https",
            url.scheme()
        )));
    }
    urls::normalize(&url).ok_or_else(|| RequestError::InvalidUrl(format!("url '{raw}' has no host")))
}

impl CrawlRequest {
    pub fn validate(&self, cfg: &CrawlerConfig) -> Result<CrawlSpec, RequestError> {
        let url = parse_start_url(&self.url)?;
        let max_depth = self.max_depth.unwrap_or(cfg.default_max_depth);
        if max_depth > cfg.max_depth_limit {
            return Err(RequestError::Invalid(format!("maxDepth must be at most {}", cfg.max_depth_limit)));
        }
        let max_pages = self.max_pages.unwrap_or(cfg.default_max_pages);
        if max_pages == 0 || max_pages > cfg.max_pages_limit {
            return Err(RequestError::Invalid(format!("maxPages must be between 1 and {}", cfg.max_pages_limit)));
        }
        let concurrency = match self.concurrency {
            None => cfg.default_concurrency,
            Some(c) if c == 0 || c as usize > cfg.max_concurrency => {
                return Err(RequestError::Invalid(format!(
                    "concurrency must be between 1 and {}",
                    cfg.max_concurrency
                )));
            }
            Some(c) => c as usize,
        };
        if self.include.len() > MAX_GLOBS || self.exclude.len() > MAX_GLOBS {
            return Err(RequestError::Invalid(format!("at most {MAX_GLOBS} include and {MAX_GLOBS} exclude globs")));
        }
        if self.tags.len() > MAX_TAGS || self.tags.iter().any(|t| t.is_empty() || t.len() > MAX_TAG_LEN) {
            return Err(RequestError::Invalid(format!("at most {MAX_TAGS} tags, each 1 to {MAX_TAG_LEN} characters")));
        }
        let render = self.render.unwrap_or_default();
        let chrome = &cfg.browser.chrome;
        if render == Render::Browser && !chrome.is_file() {
            return Err(RequestError::Unsupported(format!(
                "render 'browser' needs Chromium, and there is none at {}; install Debian's chromium or set TRAWL_CHROME",
                chrome.display()
            )));
        }
        let browser_concurrency = match self.browser_concurrency {
            None => cfg.browser.default_concurrency,
            Some(c) if c == 0 || c as usize > cfg.browser.max_pages => {
                return Err(RequestError::Invalid(format!(
                    "browserConcurrency must be between 1 and {}",
                    cfg.browser.max_pages
                )));
            }
            Some(c) => c as usize,
        };
        let defaults = ChunkOptions::default();
        let chunks = ChunkOptions {
            size: self.chunk_size.map(|n| n as usize).unwrap_or(defaults.size),
            overlap: self
                .chunk_overlap
                .map(|n| n as usize)
                .unwrap_or(defaults.overlap.min(self.chunk_size.map(|n| n as usize / 4).unwrap_or(defaults.overlap))),
            unit: self.chunk_unit.unwrap_or_default(),
        };
        if self.chunk_size.is_some_and(|n| !CHUNK_SIZE_RANGE.contains(&n)) {
            return Err(RequestError::Invalid(format!(
                "chunkSize must be between {} and {}",
                CHUNK_SIZE_RANGE.start(),
                CHUNK_SIZE_RANGE.end()
            )));
        }
        chunks.validate().map_err(|e| RequestError::Invalid(e.to_string()))?;
        if let Some(hook) = &self.webhook {
            hook.validate().map_err(RequestError::Invalid)?;
        }
        let same_domain = self.same_domain.unwrap_or(true);
        let subdomains = self.allow_subdomains.unwrap_or(false);
        let scope = Scope::new(&url, same_domain, &self.include, &self.exclude)
            .map_err(|e| RequestError::Invalid(e.to_string()))?
            .with_subdomains(subdomains);
        let mut request = self.clone();
        // `user:password@` in the start URL is basic auth, kept as such and
        // not in the URL (which is shown).
        if let Some(basic) = userinfo(&self.url) {
            if self.basic_auth.is_some() {
                return Err(RequestError::Invalid("give basicAuth or a user in the url, not both".into()));
            }
            request.basic_auth = Some(basic);
            request.url = url.to_string();
        }
        let login = Login::new(&request.headers, &request.cookies, request.basic_auth.as_ref(), &url, subdomains)
            .map_err(|e| RequestError::Invalid(e.to_string()))?
            .map(Arc::new);
        Ok(CrawlSpec {
            url,
            crawl_type: self.crawl_type,
            max_depth,
            max_pages,
            same_domain,
            respect_robots: self.respect_robots.unwrap_or(true),
            render,
            concurrency,
            browser_concurrency,
            wait_until: self.wait_until.unwrap_or_default(),
            scope,
            process: ProcessOptions { chunks, ..ProcessOptions::default() },
            login,
            request,
        })
    }

    /// The request without its login, as it may be kept after the crawl.
    pub fn without_login(&self) -> CrawlRequest {
        CrawlRequest { headers: BTreeMap::new(), cookies: BTreeMap::new(), basic_auth: None, ..self.clone() }
    }
}

/// The `user:password@` of a URL as given, percent-decoded.
fn userinfo(raw: &str) -> Option<BasicAuth> {
    let url = Url::parse(raw.trim()).ok()?;
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    Some(BasicAuth { username: decode(url.username()), password: Secret(decode(url.password().unwrap_or_default())) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_snake_and_camel_case_keys() {
        let a: CrawlRequest =
            serde_json::from_str(r#"{"url":"http://a.com","max_depth":2,"crawl_type":"llms_txt"}"#).unwrap();
        let b: CrawlRequest =
            serde_json::from_str(r#"{"url":"http://a.com","maxDepth":2,"crawlType":"llms_txt"}"#).unwrap();
        assert_eq!(a.max_depth, b.max_depth);
        assert_eq!(a.crawl_type, CrawlType::LlmsTxt);
        assert!(serde_json::from_str::<CrawlRequest>(r#"{"url":"http://a.com","maxdepth":2}"#).is_err());
    }

    #[test]
    fn refuses_bad_urls() {
        for bad in ["", "not a url", "ftp://a.com/x", "javascript:alert(1)", "/relative", "file:///etc/passwd"] {
            assert!(matches!(parse_start_url(bad), Err(RequestError::InvalidUrl(_))), "{bad}");
        }
        assert_eq!(parse_start_url("HTTP://A.com/x#y").unwrap().as_str(), "http://a.com/x");
    }

    #[test]
    fn refuses_out_of_range_numbers_and_bad_globs() {
        let cfg = CrawlerConfig::default();
        let mut r = CrawlRequest::new("http://a.com/");
        r.max_pages = Some(0);
        assert!(r.validate(&cfg).is_err());
        r.max_pages = None;
        r.concurrency = Some(100_000);
        assert!(r.validate(&cfg).is_err());
        r.concurrency = None;
        r.include = vec!["[".into()];
        assert!(r.validate(&cfg).is_err());
    }
}
