//! The crawl engine's settings, shared by every crawl of a process.

use std::time::Duration;

/// Limits and defaults of the crawl engine, shared by every crawl of a process.
#[derive(Debug, Clone)]
pub struct CrawlerConfig {
    /// Lifts the address guard: loopback and private addresses may be crawled.
    pub allow_private_networks: bool,
    /// Whole-request timeout of one fetch, headers and body.
    pub request_timeout: Duration,
    /// Bodies longer than this are cut off and the page fails.
    pub max_page_bytes: usize,
    /// Links a crawl follows from one page, in the page's order; the rest
    /// are cut (and counted on the page), so a link trap cannot flood the
    /// frontier.
    pub max_links_per_page: usize,
    /// Requests in flight to one host at once, for every crawl of the
    /// process (and of every instance sharing its database).
    pub per_host_concurrency: usize,
    /// Minimum spacing of requests to one host; robots.txt `Crawl-delay` can raise it.
    pub politeness_delay: Duration,
    /// Longest `Crawl-delay` honoured; a larger one is clamped so a crawl cannot stall for hours.
    pub max_crawl_delay: Duration,
    pub user_agent: String,
    /// Crawls running at once in this process; the rest wait `queued`.
    pub max_crawls: usize,
    /// Fetches in flight per crawl when the request names no `concurrency`.
    pub default_concurrency: usize,
    pub default_max_depth: u32,
    pub default_max_pages: u32,
    /// Upper bounds a request may ask for.
    pub max_concurrency: usize,
    pub max_pages_limit: u32,
    pub max_depth_limit: u32,
    pub embedding: crate::embed::EmbedConfig,
    /// Chromium, for `render: "browser"` and `"auto"`.
    pub browser: super::fetch::BrowserSettings,
    /// Limits on each PDF a crawl reads (its size is `max_page_bytes`).
    pub pdf: crate::process::pdf::PdfSettings,
}

impl Default for CrawlerConfig {
    fn default() -> Self {
        Self {
            allow_private_networks: false,
            request_timeout: Duration::from_secs(30),
            max_page_bytes: 10 * 1024 * 1024,
            max_links_per_page: 5_000,
            per_host_concurrency: 16,
            politeness_delay: Duration::ZERO,
            max_crawl_delay: Duration::from_secs(30),
            user_agent: format!("trawl/{} (+https://github.com/trawl)", env!("CARGO_PKG_VERSION")),
            max_crawls: 16,
            default_concurrency: 16,
            default_max_depth: 3,
            default_max_pages: 1000,
            max_concurrency: 256,
            max_pages_limit: 1_000_000,
            max_depth_limit: 100,
            embedding: crate::embed::EmbedConfig::default(),
            browser: super::fetch::BrowserSettings::default(),
            pdf: crate::process::pdf::PdfSettings::default(),
        }
    }
}

/// A crawl engine setting that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(String);

impl CrawlerConfig {
    pub fn validate(&self) -> Result<(), SettingsError> {
        let positive = [
            ("request timeout", self.request_timeout.as_millis() as usize),
            ("max page bytes", self.max_page_bytes),
            ("per-host concurrency", self.per_host_concurrency),
            ("max links per page", self.max_links_per_page),
            ("default concurrency", self.default_concurrency),
            ("browser page timeout", self.browser.page_timeout.as_millis() as usize),
            ("browser max pages", self.browser.max_pages),
            ("browser concurrency", self.browser.default_concurrency),
            ("PDF time limit", self.pdf.time_limit.as_millis() as usize),
            ("PDF max pages", self.pdf.max_pages),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(SettingsError(format!("{name} must be greater than 0")));
            }
        }
        if self.default_concurrency > self.max_concurrency {
            return Err(SettingsError(format!("default concurrency must be at most {}", self.max_concurrency)));
        }
        if self.browser.default_concurrency > self.browser.max_pages {
            return Err(SettingsError(format!(
                "browser concurrency must be at most the browser max pages ({})",
                self.browser.max_pages
            )));
        }
        if self.user_agent.trim().is_empty() {
            return Err(SettingsError("user agent must not be empty".into()));
        }
        Ok(())
    }
}
