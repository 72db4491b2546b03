//! Where crawls and pages are kept, behind the `Store` trait so that SQLite
//! (embedded default) and PostgreSQL (production) are two implementations of
//! one contract.

mod migrations;
pub mod postgres;
mod rows;
pub mod sqlite;
pub mod words;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::progress::{CrawlState, CrawlStatus};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Config(String),
    #[error("the write was abandoned: the crawl was stopped")]
    Abandoned,
    /// A write for a crawl that already has its terminal status: nothing
    /// may land after `completed`, `failed` or `cancelled`.
    #[error("crawl {0} has ended; its rows are final")]
    Finished(String),
    /// A write from an instance that lost the crawl: another instance took
    /// it over, having missed its heartbeats.
    #[error("crawl {0} was taken over by another instance")]
    TakenOver(String),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The database is claimed by another serving process.
    #[error("{0}")]
    Locked(String),
    /// Writes cannot land now (a full disk); reads still work.
    #[error("the store cannot write: {0}")]
    Unwritable(String),
    /// A source cannot be deleted while one of its crawls runs.
    #[error("source {0} has a crawl that has not ended")]
    SourceBusy(String),
    /// The source a refresh names is no longer there.
    #[error("source {0} was deleted")]
    SourceGone(String),
}

impl StoreError {
    /// Whether trying again later may succeed: a lost connection, a server
    /// restarting, a busy database. Anything else fails the same way again.
    pub fn is_transient(&self) -> bool {
        let Self::Database(e) = self else { return false };
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::Protocol(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => {
                let code = db.code().unwrap_or_default();
                // PostgreSQL: connection exceptions (08), shutdown and
                // startup (57P0x), serialization failures and deadlocks (40);
                // SQLite: BUSY (5) and LOCKED (6) with their extended codes.
                code.starts_with("08")
                    || code.starts_with("57P0")
                    || code.starts_with("40")
                    || (code.len() < 5 && code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6)))
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PageStatus {
    #[default]
    Crawled,
    Failed,
    Skipped,
}

impl PageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Crawled => "crawled",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Crawled, Self::Failed, Self::Skipped].into_iter().find(|p| p.as_str() == s)
    }
}

/// One page outcome as stored; every admitted URL ends as exactly one.
#[derive(Debug, Clone, Default)]
pub struct PageRecord {
    pub url: String,
    pub final_url: Option<String>,
    pub status: PageStatus,
    pub http_status: Option<u16>,
    pub depth: u32,
    pub title: Option<String>,
    pub content_type: Option<String>,
    /// `markdown` or `text`.
    pub format: Option<&'static str>,
    pub content: Option<String>,
    pub bytes: Option<u64>,
    /// A stable code, a colon, and the reason: `http_status: HTTP 404`.
    pub error: Option<String>,
    pub fetched_at: DateTime<Utc>,
    pub description: Option<String>,
    /// The site a page belongs to (its host), for search filters.
    pub source: Option<String>,
    pub chunks: Vec<crate::content::Chunk>,
    pub code_examples: Vec<crate::content::CodeExample>,
    /// The content came from Chromium rather than the HTTP response.
    pub rendered: bool,
    /// The SHA-256 of `content`, hex.
    pub content_hash: Option<String>,
    /// The SHA-256 of the bytes `content` was made from, hex.
    pub body_hash: Option<String>,
    /// The validators the page was served with (`ETag`, `Last-Modified`).
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// What a crawled page is to the crawl's source.
    pub change: Option<Change>,
    /// An unchanged page: the source's row for it is kept, with its chunks
    /// and vectors, and becomes this crawl's (no new row is written).
    pub kept: Option<Kept>,
    /// A changed page: the source's earlier row, whose vectors identical
    /// texts reuse.
    pub earlier_row: Option<i64>,
    /// Vectors the embedder made for this page so far.
    pub embedded: u64,
    /// Links past the per-page cap, not followed.
    pub links_cut: u32,
    /// Where the page leads, kept (PostgreSQL) for crawls that follow links,
    /// so that another instance can resume the crawl from its stored pages.
    pub links: Vec<String>,
}

/// What a crawled page is to its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    New,
    Changed,
    Unchanged,
}

/// The source's row an unchanged page keeps, and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    pub row: i64,
    pub chunks: u64,
    pub code_examples: u64,
}

/// A page its source keeps, as the next crawl of the source compares with it.
#[derive(Debug, Clone)]
pub struct PriorPage {
    pub row: i64,
    pub url: String,
    pub title: Option<String>,
    pub content_hash: Option<String>,
    pub body_hash: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub chunks: u64,
    pub code_examples: u64,
    /// Whether its links were stored (what a `304` needs to lead on).
    pub has_links: bool,
}

/// A page as the pages listing shows it (CONTRACT.md), plus the cursor key.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PageSummary {
    /// The page's id: `GET /api/pages/{id}` reads its content.
    #[serde(rename = "id")]
    pub row_id: i64,
    pub url: String,
    pub final_url: Option<String>,
    pub title: Option<String>,
    pub status: String,
    pub http_status: Option<u16>,
    pub depth: u32,
    pub chunks: u64,
    pub code_examples: u64,
    pub error: Option<String>,
    /// Whether the content was rendered in Chromium (`render` `browser`, or `auto` for a page that needed scripts).
    pub rendered: bool,
    /// Links past the per-page cap (`TRAWL_MAX_LINKS_PER_PAGE`, 5,000 by
    /// default) that a crawl following links did not follow.
    pub links_cut: u32,
    /// The page's markdown, with `?include=markdown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub markdown: Option<String>,
}

/// A stored page with what was made of it: `GET /api/pages/{id}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PageContent {
    pub id: i64,
    /// The crawl that stored it.
    pub crawl_id: String,
    /// The crawl's tenant, for the caller's check; never sent.
    #[serde(skip)]
    #[schema(ignore)]
    pub tenant: Option<String>,
    pub url: String,
    /// Where redirects ended, when elsewhere.
    pub final_url: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    /// `crawled`, `failed` or `skipped`.
    pub status: String,
    pub http_status: Option<u16>,
    /// `markdown` (HTML and markdown pages) or `text`.
    pub format: Option<String>,
    /// The page's main content as stored (none for failed and skipped pages).
    pub markdown: Option<String>,
    /// The SHA-256 of `markdown`, hex.
    pub content_hash: Option<String>,
    pub error: Option<String>,
    #[serde(serialize_with = "crate::progress::serialize_time")]
    #[schema(value_type = String, format = DateTime)]
    pub fetched_at: chrono::DateTime<chrono::Utc>,
    /// Its chunks in order: what search finds.
    pub chunks: Vec<ChunkText>,
    pub code_examples: Vec<CodeText>,
}

/// One chunk of a page.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChunkText {
    /// Its place in the page, from 0.
    pub index: u32,
    /// The headings above it, `H1 > H2`.
    pub heading_path: String,
    pub content: String,
}

/// One code example of a page.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CodeText {
    pub id: i64,
    pub language: String,
    pub code: String,
    pub context_before: String,
    pub context_after: String,
}

/// A stored page with its content, for tools and tests.
#[derive(Debug, Clone)]
pub struct StoredPage {
    pub url: String,
    pub description: Option<String>,
    pub final_url: Option<String>,
    pub status: String,
    pub title: Option<String>,
    pub content: Option<String>,
    pub format: Option<String>,
    pub error: Option<String>,
    pub depth: u32,
}

/// A stored page as a resumed crawl needs it: the walk goes on from here.
#[derive(Debug, Clone)]
pub struct StoredOutcome {
    pub url: String,
    pub final_url: Option<String>,
    pub status: PageStatus,
    pub links: Vec<String>,
}

/// A webhook delivery to keep until it is sent (see `webhooks`).
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// The idempotency key receivers see; a second delivery with the same
    /// id is not enqueued.
    pub id: String,
    pub crawl_id: String,
    pub tenant: Option<String>,
    pub url: String,
    /// The receiver's extra headers, a JSON object.
    pub headers: String,
    pub event: String,
    pub body: String,
    /// The last page row a `crawl.page` delivery carries.
    pub page_row: Option<i64>,
}

/// A delivery due to be sent, leased to the caller for a while.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub seq: i64,
    pub id: String,
    pub crawl_id: String,
    pub tenant: Option<String>,
    pub url: String,
    pub headers: String,
    pub event: String,
    pub body: String,
    /// Tries made before this one.
    pub attempts: u32,
}

/// How a delivery's try went.
#[derive(Debug, Clone)]
pub enum DeliveryOutcome {
    Delivered,
    Retry { at: DateTime<Utc>, error: String },
    Failed { error: String },
}

/// A crawl that ended with a webhook but whose end was never enqueued
/// (it ended in the queue, or its instance died).
#[derive(Debug, Clone)]
pub struct Unannounced {
    pub id: String,
    pub tenant: Option<String>,
    /// The crawl's request as stored (JSON), with its webhook.
    pub request: String,
}

/// A source's settings as shown: a webhook's header values (the receiver's
/// secrets) are redacted; the stored settings keep them for refreshes.
fn redacted_settings<S: serde::Serializer>(v: &serde_json::Value, s: S) -> Result<S::Ok, S::Error> {
    let mut v = v.clone();
    if let Some(headers) = v.pointer_mut("/webhook/headers").and_then(serde_json::Value::as_object_mut) {
        for value in headers.values_mut() {
            *value = serde_json::Value::String("[redacted]".into());
        }
    }
    v.serialize(s)
}

/// A crawl row to create (status `queued`).
#[derive(Debug, Clone)]
pub struct NewCrawl {
    /// Its `url` is the source's key. Its `source_id` names the source of a
    /// refresh; other crawls are filed by the store, which answers the id.
    pub status: CrawlStatus,
    pub tenant: Option<String>,
    /// The request as the crawl runs it, its login included (the store
    /// drops that when the crawl ends).
    pub request_json: String,
    /// The request as its source keeps it: without a login, ever.
    pub settings_json: String,
    /// What the tenant's source for this URL is made with, when this crawl
    /// is its first.
    pub source: NewSource,
    /// The creating instance runs the crawl itself: with a shared queue
    /// the row is inserted already claimed by it, so no other instance can
    /// take it and no claim round trip delays its first event.
    pub claimed: bool,
}

/// A source's name and tags when a crawl creates it.
#[derive(Debug, Clone, Default)]
pub struct NewSource {
    pub name: String,
    pub tags: Vec<String>,
}

/// Longest source name, in characters.
pub const MAX_SOURCE_NAME_CHARS: usize = 200;

impl NewSource {
    /// Named as a source is until its owner names it: the host, and the path
    /// when the site does not start at the root (`docs.example.com/guide`).
    pub fn named_after(url: &url::Url, tags: Vec<String>) -> Self {
        let host = url.host_str().unwrap_or_default();
        let host = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        let path = url.path().trim_end_matches('/');
        let name = if path.is_empty() { host } else { format!("{host}{path}") };
        Self { name: name.chars().take(MAX_SOURCE_NAME_CHARS).collect(), tags }
    }
}

/// What one tenant keeps from one site (`GET /api/sources/{id}`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    pub id: String,
    /// Whose it is; never sent.
    #[serde(skip)]
    #[schema(ignore)]
    pub tenant: Option<String>,
    pub name: String,
    /// The start URL: one source per URL per tenant.
    pub url: String,
    pub tags: Vec<String>,
    /// The crawl settings (a `CrawlRequest`) of its latest crawl, or as patched.
    #[schema(value_type = Object)]
    #[serde(serialize_with = "redacted_settings")]
    pub settings: serde_json::Value,
    /// Pages it keeps with their content (crawled pages of its crawls).
    pub pages: u64,
    pub chunks: u64,
    pub code_examples: u64,
    pub last_crawl: Option<LastCrawl>,
    /// Refreshed every so often (`"6h"`, `"1d"`), or
    pub refresh_every: Option<String>,
    /// at the times of this cron expression (UTC).
    pub cron: Option<String>,
    /// When the next scheduled refresh starts.
    #[serde(serialize_with = "crate::progress::serialize_opt_time")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_refresh_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::progress::serialize_time")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::progress::serialize_time")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTime<Utc>,
}

/// A source's newest crawl.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastCrawl {
    pub id: String,
    pub status: CrawlState,
    #[serde(serialize_with = "crate::progress::serialize_opt_time")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<DateTime<Utc>>,
}

/// Changes to a source; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct SourcePatch {
    pub name: Option<String>,
    pub tags: Option<Vec<String>>,
    pub request_json: Option<String>,
    /// The whole schedule as it becomes (all `None`: none).
    pub schedule: Option<ScheduleState>,
}

/// A source's schedule columns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduleState {
    pub refresh_every: Option<String>,
    pub cron: Option<String>,
    pub next_refresh_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default)]
pub struct SourceFilter {
    /// Only this tenant's sources (`None`: everyone's).
    pub tenant: Option<String>,
    /// Only sources with an id below this one.
    pub before_id: Option<String>,
    pub limit: u32,
}

/// What deleting a source removed.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Removed {
    pub crawls: u64,
    pub pages: u64,
    pub chunks: u64,
    pub code_examples: u64,
}

/// A crawled page with its markdown, as an export writes it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportPage {
    pub id: i64,
    pub crawl_id: String,
    pub url: String,
    pub final_url: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub markdown: String,
    pub content_hash: Option<String>,
    #[serde(serialize_with = "crate::progress::serialize_time")]
    pub fetched_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default)]
pub struct CrawlFilter {
    pub status: Option<CrawlState>,
    pub tenant: Option<String>,
    /// Only crawls with an id below this one (the previous page's last id).
    pub before_id: Option<String>,
    pub limit: u32,
}

pub type DynStore = Arc<dyn Store>;

/// What a search may look at.
#[derive(Debug, Clone, Default)]
pub struct SearchFilter {
    pub crawl_id: Option<String>,
    /// A page's host.
    pub source: Option<String>,
    /// Set when tenants are configured: only that tenant's crawls.
    pub tenant: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChunkHit {
    pub chunk_id: i64,
    pub url: String,
    pub title: Option<String>,
    pub content: String,
    /// The PDF page the chunk starts on; absent for other documents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// Higher is better; results come best first. Its scale depends on the
    /// mode: `bm25` for text, cosine similarity for vector, and 0 to 1 for
    /// hybrid (the two rankings' scores, each normalised, then weighed).
    pub score: f64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CodeHit {
    pub id: i64,
    pub url: String,
    pub language: String,
    pub code: String,
    pub context_before: String,
    pub context_after: String,
    /// Higher is better; results come best first (scaled as in chunk hits).
    pub score: f64,
}

/// A stored row without a vector, with the text to embed.
/// Where a reading of rows without vectors goes on from: the last chunk id
/// and the last code example id read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct After {
    pub chunk: i64,
    pub code: i64,
}

impl After {
    /// Past every row of `rows`.
    pub fn past(mut self, rows: &[Unembedded]) -> Self {
        for r in rows {
            let id = if r.code { &mut self.code } else { &mut self.chunk };
            *id = (*id).max(r.id);
        }
        self
    }
}

#[derive(Debug, Clone)]
pub struct Unembedded {
    pub code: bool,
    pub id: i64,
    pub text: String,
}

impl Unembedded {
    /// A chunk row, embedded with the same text the crawl would have used.
    pub fn chunk(id: i64, title: Option<&str>, heading_path: String, content: String) -> Self {
        let chunk =
            crate::content::Chunk { index: 0, content, heading_path, char_count: 0, page: None, embedding: None };
        let (texts, _) = crate::content::embedding_inputs(title, &[chunk], &[]);
        Self { code: false, id, text: texts.into_iter().next().unwrap_or_default() }
    }

    /// A code-example row, embedded with the same text the crawl would have used.
    pub fn code(id: i64, language: String, code: String, context_before: String) -> Self {
        let example = crate::content::CodeExample {
            language,
            code,
            context_before,
            context_after: String::new(),
            embedding: None,
        };
        let (_, texts) = crate::content::embedding_inputs(None, &[], &[example]);
        Self { code: true, id, text: texts.into_iter().next().unwrap_or_default() }
    }
}

/// See [`Store::export`].
#[async_trait]
pub trait ExportReader: Send {
    /// The next pages, crawl by crawl (oldest first), each crawl's in the
    /// order they were stored; empty at the end.
    async fn next(&mut self, limit: u32) -> Result<Vec<ExportPage>, StoreError>;
}

/// Where an export is: the crawls still to read (the current one first) and
/// the last row read of the current one. Each store's reader runs one query
/// per step, `limit` pages of [`ExportCursor::at`], until it is done.
struct ExportCursor {
    crawls: std::collections::VecDeque<String>,
    after: i64,
}

impl ExportCursor {
    fn new(crawls: Vec<String>) -> Self {
        Self { crawls: crawls.into(), after: 0 }
    }

    /// The crawl to read and the row to read after; `None` at the end.
    fn at(&self) -> Option<(String, i64)> {
        self.crawls.front().map(|c| (c.clone(), self.after))
    }

    /// Moves past a step's pages; answers them unless the step found none
    /// (the reader then goes on with the next crawl).
    fn advance(&mut self, pages: Vec<ExportPage>, limit: u32) -> Option<Vec<ExportPage>> {
        match pages.last() {
            Some(last) if pages.len() == limit as usize => self.after = last.id,
            _ => {
                self.crawls.pop_front();
                self.after = 0;
            }
        }
        (!pages.is_empty()).then_some(pages)
    }
}

/// An FTS5 query that matches any of the words: user input never reaches
/// FTS5's syntax.
pub fn fts_query(q: &str) -> Option<String> {
    let words: Vec<String> = words::words(q).iter().map(|w| format!("\"{w}\"")).collect();
    (!words.is_empty()).then(|| words.join(" OR "))
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Answers when the database does.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Whether writes can be expected to land, without asking the database
    /// (cheap enough for every new crawl): the embedded store says no when
    /// its disk is full or its last write failed.
    fn can_write(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Whether the store answers and can write (for `/readyz`).
    async fn writable(&self) -> Result<(), StoreError> {
        self.ping().await?;
        self.can_write()
    }

    /// Creates the crawl row, filed under its tenant's source for its start
    /// URL: created on first use, else given this crawl's settings. Answers
    /// the source's id.
    async fn create_crawl(&self, crawl: &NewCrawl) -> Result<String, StoreError>;

    /// Newest first, with their counts and last crawl.
    async fn list_sources(&self, filter: &SourceFilter) -> Result<Vec<Source>, StoreError>;

    async fn get_source(&self, id: &str) -> Result<Option<Source>, StoreError>;

    /// Applies `patch`; `None` when there is no such source.
    async fn update_source(&self, id: &str, patch: &SourcePatch) -> Result<Option<Source>, StoreError>;

    /// Claims up to `limit` sources whose next refresh is due at `now`: moves
    /// each one's next time on to `next(source, now)` in one transaction
    /// that no other instance shares, and answers them.
    async fn claim_due_refreshes(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        next: for<'s> fn(&'s Source, DateTime<Utc>) -> Option<DateTime<Utc>>,
    ) -> Result<Vec<Source>, StoreError>;

    /// A source's crawls, oldest first, with whether each has ended.
    async fn source_crawls(&self, id: &str) -> Result<Vec<(String, CrawlState)>, StoreError>;

    /// Removes a source with its crawls, pages, chunks, vectors and code
    /// examples in one transaction; [`StoreError::SourceBusy`] while one of
    /// its crawls has not ended. `None` when there is no such source.
    async fn delete_source(&self, id: &str) -> Result<Option<Removed>, StoreError>;

    /// The crawled pages a source keeps, but those of crawl `except` (a
    /// resumed crawl's own).
    async fn source_pages(&self, source_id: &str, except: &str) -> Result<Vec<PriorPage>, StoreError>;

    /// The stored links of a page row; `None` when the row is gone (another
    /// crawl of the source replaced it meanwhile).
    async fn page_links(&self, row: i64) -> Result<Option<Vec<String>>, StoreError>;

    /// The vectors of `model` stored for these page rows' chunks and code
    /// examples, by the text they were made from.
    async fn page_vectors(&self, rows: &[i64], model: &str) -> Result<Vec<(String, Vec<f32>)>, StoreError>;

    /// Stores a completed refresh's terminal status and, in the same
    /// transaction, removes the source's pages the refresh did not keep:
    /// those its site answered 404 or 410 for and, unless a budget cut the
    /// refresh short, those it did not reach. A page whose fetch failed
    /// otherwise (a timeout, a 500) keeps its earlier copy. `finish` puts
    /// the number removed into the status before it is written; answers the
    /// status as written.
    async fn complete_refresh(
        &self,
        status: &CrawlStatus,
        source_id: &str,
        finish: for<'s> fn(&'s mut CrawlStatus, u64),
    ) -> Result<CrawlStatus, StoreError>;

    /// A reader of a source's crawled pages with their markdown, over one
    /// snapshot of the store: a refresh running meanwhile (moving and
    /// replacing pages) shows the reader each page once, as it was.
    async fn export(&self, source_id: &str) -> Result<Box<dyn ExportReader>, StoreError>;

    /// Writes the status row, unless the stored crawl is already terminal:
    /// a terminal crawl never changes again.
    async fn save_status(&self, status: &CrawlStatus) -> Result<(), StoreError>;

    /// Inserts a batch of pages and the status that counts them, in one
    /// transaction, so the counters never disagree with the rows. Refused
    /// with [`StoreError::Finished`] once the crawl is terminal.
    /// Vectors are recorded with `model`.
    async fn save_pages(&self, status: &CrawlStatus, pages: &[PageRecord], model: &str) -> Result<(), StoreError>;

    async fn get_crawl(&self, id: &str) -> Result<Option<CrawlStatus>, StoreError>;

    /// The tenant a crawl belongs to (`None` inside `Some` for open crawls).
    async fn crawl_tenant(&self, id: &str) -> Result<Option<Option<String>>, StoreError>;

    /// The crawl's request as stored (JSON): what an instance resuming it
    /// runs. An ended crawl's has no login left.
    async fn crawl_request(&self, id: &str) -> Result<Option<String>, StoreError>;

    /// Newest first.
    async fn list_crawls(&self, filter: &CrawlFilter) -> Result<Vec<CrawlStatus>, StoreError>;

    /// In insertion order, after the row id `after`.
    /// A crawl's pages in the order they were stored, after row `after`;
    /// with their markdown when `markdown`.
    async fn list_pages(
        &self,
        crawl_id: &str,
        after: Option<i64>,
        limit: u32,
        markdown: bool,
    ) -> Result<Vec<PageSummary>, StoreError>;

    /// A page with its chunks and code examples.
    async fn page_content(&self, page_id: i64) -> Result<Option<PageContent>, StoreError>;

    /// The newest crawled copy of a page (by its normalised URL) that
    /// `tenant` may read; any tenant's when `None`.
    async fn page_id_by_url(&self, url: &str, tenant: Option<&str>) -> Result<Option<i64>, StoreError>;

    async fn get_page(&self, crawl_id: &str, url: &str) -> Result<Option<StoredPage>, StoreError>;

    async fn count_pages(&self, crawl_id: &str) -> Result<u64, StoreError>;

    /// The chunks of one stored page, in order.
    async fn page_chunks(&self, crawl_id: &str, url: &str) -> Result<Vec<crate::content::Chunk>, StoreError>;

    /// The code examples of one stored page.
    async fn page_code_examples(
        &self,
        crawl_id: &str,
        url: &str,
    ) -> Result<Vec<crate::content::CodeExample>, StoreError>;

    /// Chunks and code examples stored for a crawl.
    async fn count_content(&self, crawl_id: &str) -> Result<(u64, u64), StoreError>;

    /// Rows in the chunk and code-example tables for a URL, over all crawls.
    async fn content_rows(&self, url: &str) -> Result<(u64, u64, u64), StoreError>;

    /// Chunk ids by text relevance (FTS5 bm25), best first, with a score.
    async fn search_text(&self, query: &str, filter: &SearchFilter, limit: u32) -> Result<Vec<(i64, f64)>, StoreError>;

    /// Chunk ids by cosine similarity to `vector` among vectors of `model`.
    async fn search_vector(
        &self,
        vector: &[f32],
        model: &str,
        filter: &SearchFilter,
        limit: u32,
    ) -> Result<Vec<(i64, f64)>, StoreError>;

    /// The chunks of these ids (any order; score 0).
    async fn chunk_hits(&self, ids: &[i64]) -> Result<Vec<ChunkHit>, StoreError>;

    /// Code examples by text relevance (or newest first without a query).
    async fn search_code(
        &self,
        query: Option<&str>,
        language: Option<&str>,
        filter: &SearchFilter,
        limit: u32,
    ) -> Result<Vec<CodeHit>, StoreError>;

    /// Up to `limit` chunks and code examples stored without a vector.
    async fn unembedded(&self, limit: u32) -> Result<Vec<Unembedded>, StoreError> {
        self.unembedded_in(None, After::default(), limit).await
    }

    /// Up to `limit` chunks, then code examples, without a vector, of one
    /// crawl (or of all) and past `after`, in id order: a crawl's
    /// embedding stage reads its backlog with it, page by page.
    async fn unembedded_in(&self, crawl: Option<&str>, after: After, limit: u32)
    -> Result<Vec<Unembedded>, StoreError>;

    /// Stores vectors for rows listed by [`Store::unembedded`].
    async fn set_vectors(&self, rows: &[(Unembedded, Vec<f32>)], model: &str) -> Result<(), StoreError>;

    /// Names the embedder whose vectors searches ask for, for a store that
    /// keeps an index of its own for them (SQLite's graph file).
    fn index_vectors_of(&self, _model: &str) {}

    /// Saves the search index's state where a restart finds it (shutdown).
    async fn save_index(&self) {}

    /// How far the store's own vector index is (`None`: it keeps none).
    async fn vector_index(&self) -> Result<Option<VectorIndexState>, StoreError> {
        Ok(None)
    }

    /// Whether vectors reach the search index behind the writes, through
    /// [`Store::index_vectors`] called by [`run_indexer`].
    fn indexes_in_background(&self) -> bool {
        false
    }

    /// Moves up to `limit` stored vectors into the search index; returns how
    /// many it moved (0: nothing waits).
    async fn index_vectors(&self, _limit: u32) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// Hands a running crawl of this instance back to the shared queue (its
    /// instance is shutting down), with `status` as its row. Returns
    /// whether it was handed over; stores without a queue never do.
    async fn hand_over(&self, _status: &CrawlStatus) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// Records what `crawlType: auto` resolved to, so that a crawl resumed
    /// elsewhere walks the same way without looking again.
    async fn set_crawl_type(&self, _id: &str, _crawl_type: &str) -> Result<(), StoreError> {
        Ok(())
    }

    /// Records the id of a crawl's final event (after its terminal status).
    async fn set_last_event_id(&self, id: &str, event_id: u64) -> Result<(), StoreError>;

    /// What a crawl stored of each page, for resuming it.
    async fn stored_outcomes(&self, _id: &str) -> Result<Vec<StoredOutcome>, StoreError> {
        Ok(Vec::new())
    }

    /// The tenant's webhook signing secret (`""`: the open service's),
    /// made `candidate` when it has none yet.
    async fn webhook_secret(&self, tenant: &str, candidate: &str) -> Result<String, StoreError>;

    /// Keeps a delivery to send; `false` when one with its id exists.
    async fn enqueue_delivery(&self, delivery: &NewDelivery) -> Result<bool, StoreError>;

    /// Up to `limit` deliveries due at `now`, each the oldest unsent one of
    /// its crawl (a crawl's deliveries go out in order), leased until
    /// `lease_until` so that no other sender takes them meanwhile.
    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// Records how a try of delivery `seq` went.
    async fn finish_delivery(&self, seq: i64, outcome: &DeliveryOutcome) -> Result<(), StoreError>;

    /// The last page row a crawl's `crawl.page` deliveries carried (0: none).
    async fn webhook_cursor(&self, crawl_id: &str) -> Result<i64, StoreError>;

    /// Crawls with a webhook that ended before `before` and whose end was
    /// never enqueued.
    async fn unannounced_crawls(&self, before: DateTime<Utc>, limit: u32) -> Result<Vec<Unannounced>, StoreError>;

    /// Marks crawls a dead process left `queued`/`running` as failed
    /// ("interrupted"), and `stopping` ones as cancelled. Returns how many.
    async fn mark_interrupted(&self) -> Result<u64, StoreError>;
}

/// The embedded store's vector index, as `/readyz` shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VectorIndexState {
    /// Searches use the graph (false while it is rebuilt: they scan).
    pub ready: bool,
    /// Vectors in the graph.
    pub vectors: u64,
    /// Vector changes stored but not in the graph yet (searches scan those).
    pub behind: u64,
}

/// Background indexers a service runs (`SKIP LOCKED` keeps them apart).
pub const INDEXERS: usize = 1;

/// The store's background indexer: drains [`Store::index_vectors`] until
/// `stop` fires, resting while there is nothing to do.
pub async fn run_indexer(store: DynStore, stop: tokio_util::sync::CancellationToken) {
    use std::time::Duration;
    const BATCH: u32 = 256;
    /// A rest while nothing waits to be indexed.
    const IDLE: Duration = Duration::from_millis(250);
    /// Failed batches wait longer and longer, up to a minute.
    const FAILED: crate::backoff::Backoff =
        crate::backoff::Backoff::exponential(Duration::from_secs(1), Duration::from_secs(60));
    let mut failures = FAILED.start();
    loop {
        let rest = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            r = store.index_vectors(BATCH) => match r {
                Ok(n) if n > 0 => {
                    failures.reset();
                    continue;
                }
                Ok(_) => {
                    failures.reset();
                    IDLE
                }
                Err(e) => {
                    let rest = failures.next_delay().unwrap_or(IDLE);
                    tracing::warn!(error = %e, retry_in_ms = rest.as_millis() as u64, "vector indexer: batch failed; retrying");
                    rest
                }
            },
        };
        if !crate::backoff::pause(&stop, rest).await {
            break;
        }
    }
    store.save_index().await;
}

/// Whether a database URL names PostgreSQL (otherwise SQLite).
pub fn is_postgres(database_url: &str) -> bool {
    database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")
}

/// Opens the store a database URL names (`postgres://...`, else SQLite) and
/// runs its migrations. `dimensions` is the embedder's vector size, which
/// PostgreSQL's `vector(N)` columns are made for and checked against.
pub async fn connect(database_url: &str, dimensions: Option<usize>) -> Result<DynStore, StoreError> {
    if is_postgres(database_url) {
        return Ok(Arc::new(postgres::PgStore::connect(database_url, dimensions).await?));
    }
    Ok(Arc::new(sqlite::SqliteStore::connect(database_url).await?))
}
