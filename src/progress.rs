//! The state of a crawl as the wire contract names it, and the live handle that
//! keeps it current.
//!
//! `CrawlStatus` is the one shape every surface shows (HTTP, the store, and
//! later Socket.IO and SSE). `Progress` wraps a `watch` channel: writers update
//! it in place, readers always see the latest state, and nobody waits on a slow
//! reader. Two rules live here so that no caller can break them: a terminal
//! crawl never changes again, and `percentage` never decreases.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CrawlState {
    Queued,
    Running,
    Stopping,
    Completed,
    Failed,
    Cancelled,
}

impl CrawlState {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "stopping" => Self::Stopping,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Analyzing,
    Discovering,
    Crawling,
    Processing,
    Embedding,
    Storing,
    Finalizing,
    /// A completed crawl: nothing is left to do. A cancelled or failed crawl
    /// keeps the stage it ended in.
    Done,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Analyzing => "analyzing",
            Self::Discovering => "discovering",
            Self::Crawling => "crawling",
            Self::Processing => "processing",
            Self::Embedding => "embedding",
            Self::Storing => "storing",
            Self::Finalizing => "finalizing",
            Self::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "analyzing" => Self::Analyzing,
            "discovering" => Self::Discovering,
            "crawling" => Self::Crawling,
            "processing" => Self::Processing,
            "embedding" => Self::Embedding,
            "storing" => Self::Storing,
            "finalizing" => Self::Finalizing,
            "done" => Self::Done,
            _ => return None,
        })
    }
}

/// The budget that cut a crawl short: links were left that it did not follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum Limit {
    /// `maxPages` URLs were taken on and more were in scope.
    MaxPages,
    /// Pages at `maxDepth` linked to in-scope pages not crawled.
    MaxDepth,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxPages => "maxPages",
            Self::MaxDepth => "maxDepth",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "maxPages" => Self::MaxPages,
            "maxDepth" => Self::MaxDepth,
            _ => return None,
        })
    }
}

/// `CrawlStatus` of CONTRACT.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CrawlStatus {
    /// The crawl's id: its Socket.IO room and its URLs' last segment.
    pub progress_id: String,
    /// The start URL.
    pub url: String,
    /// The source the crawl is filed under (`GET /api/sources/{id}`): one per
    /// start URL per tenant. None for crawls from before sources.
    #[serde(default)]
    pub source_id: Option<String>,
    /// Where the crawl is in its life; a terminal state never changes again.
    pub status: CrawlState,
    /// What the crawl is doing; `done` once completed (a cancelled or failed
    /// crawl keeps the stage it ended in).
    pub stage: Stage,
    /// An estimate from what is known (pages done, pages waiting, links found
    /// and not yet taken on, depth against `maxDepth`, the `maxPages` budget):
    /// it moves with every page, never decreases, and reaches 100 only when
    /// the crawl completes. Sent rounded down to 0.1.
    #[serde(serialize_with = "tenths")]
    pub percentage: f64,
    /// Pages fetched and stored with their content.
    pub pages_crawled: u64,
    /// Pages that could not be had (HTTP errors, timeouts, refused addresses, ...).
    pub pages_failed: u64,
    /// Pages left out on purpose: robots.txt, an unsupported type, a
    /// duplicate of a page kept (`GET .../pages` says why for each).
    pub pages_skipped: u64,
    /// Pages known and still to crawl: taken on and not done, plus links found
    /// that the crawl will follow (within `maxDepth` and `maxPages`).
    pub pages_queued: u64,
    /// Chunks of markdown stored, each searchable.
    pub chunks_stored: u64,
    /// Code examples stored.
    pub code_examples: u64,
    /// Chunks stored without a vector because the embedder failed for good;
    /// `trawl embed --missing` fills them in.
    pub chunks_unembedded: u64,
    /// A refresh of its source (`POST /api/sources/{id}/refresh`): when it
    /// completes, the source's pages the site no longer has are removed.
    #[serde(default)]
    pub refresh: bool,
    /// Crawled pages the source did not have before.
    #[serde(default)]
    pub pages_new: u64,
    /// Crawled pages whose content differs from what the source kept.
    #[serde(default)]
    pub pages_changed: u64,
    /// Crawled pages whose content is what the source kept (a `304`, or the
    /// same content hash): kept as they were, nothing embedded again.
    #[serde(default)]
    pub pages_unchanged: u64,
    /// Pages a completed refresh removed: gone from the site (404, 410) or no
    /// longer reached.
    #[serde(default)]
    pub pages_removed: u64,
    /// Chunks and code examples this crawl had to embed; identical texts of a
    /// changed page reuse their vectors.
    #[serde(default)]
    pub chunks_embedded: u64,
    /// A page being fetched now, while the crawl runs.
    pub current_url: Option<String>,
    /// What is happening now, e.g. "42 pages crawled, 310 waiting, depth 3 of 5";
    /// for an ended crawl, how it ended.
    pub message: Option<String>,
    /// Why a failed crawl failed.
    pub error: Option<String>,
    /// Set when a budget cut the crawl short (`maxPages` or `maxDepth`).
    pub limit_reached: Option<Limit>,
    /// When it was asked for.
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    /// When it started running.
    #[serde(serialize_with = "rfc3339_opt")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached its terminal state.
    #[serde(serialize_with = "rfc3339_opt")]
    pub finished_at: Option<DateTime<Utc>>,
    /// The newest event id this state includes. The store keeps it with the
    /// state, so a state read back from it (on another instance, or after
    /// the crawl ended) is numbered as the crawl's own events were. Sent as
    /// the events' `eventId`, not as a field of its own.
    #[serde(skip)]
    #[schema(ignore)]
    pub event_id: u64,
}

impl CrawlStatus {
    pub fn new_queued(progress_id: String, url: String, created_at: DateTime<Utc>) -> Self {
        Self {
            progress_id,
            url,
            source_id: None,
            status: CrawlState::Queued,
            stage: Stage::Analyzing,
            percentage: 0.0,
            pages_crawled: 0,
            pages_failed: 0,
            pages_skipped: 0,
            pages_queued: 0,
            chunks_stored: 0,
            code_examples: 0,
            chunks_unembedded: 0,
            refresh: false,
            pages_new: 0,
            pages_changed: 0,
            pages_unchanged: 0,
            pages_removed: 0,
            chunks_embedded: 0,
            current_url: None,
            message: Some("queued".into()),
            error: None,
            limit_reached: None,
            created_at,
            started_at: None,
            finished_at: None,
            event_id: 0,
        }
    }

    /// Pages that reached an outcome (stored as crawled, failed or skipped).
    pub fn pages_done(&self) -> u64 {
        self.pages_crawled + self.pages_failed + self.pages_skipped
    }

    /// Sets the page counters and derives `pagesQueued`, `percentage` and,
    /// while crawling, the message.
    ///
    /// The percentage spreads what is left of 100 over the work estimated to
    /// remain: each page done moves it by its share of that work, so it
    /// moves with every page whatever the estimate does, never goes back,
    /// and equals done / total whenever the estimate was right from the start.
    /// It stays below 100 until the crawl really ends.
    pub fn apply_counts(&mut self, outlook: Outlook, counts: PageCounts) {
        let done_before = self.pages_done();
        self.pages_crawled = counts.crawled;
        self.pages_failed = counts.failed;
        self.pages_skipped = counts.skipped;
        self.chunks_stored = counts.chunks;
        self.code_examples = counts.code_examples;
        self.chunks_unembedded = counts.unembedded;
        self.pages_new = counts.new;
        self.pages_changed = counts.changed;
        self.pages_unchanged = counts.unchanged;
        self.chunks_embedded = counts.embedded;
        let done = counts.done();
        let waiting = outlook.admitted.saturating_sub(done);
        self.pages_queued = waiting + outlook.found;
        let remaining_before = (outlook.admitted + outlook.ahead).max(done).saturating_sub(done_before);
        if done > done_before && remaining_before > 0 {
            let f = self.percentage / 100.0;
            let step = (done - done_before) as f64 / remaining_before as f64;
            self.percentage = ((f + (1.0 - f) * step) * 100.0).min(99.0).max(self.percentage);
        }
        if self.status == CrawlState::Running && self.stage == Stage::Crawling {
            let mut m = format!("{} pages crawled", self.pages_crawled);
            if self.pages_failed + self.pages_skipped > 0 {
                m += &format!(" ({} failed, {} skipped)", self.pages_failed, self.pages_skipped);
            }
            m += &format!(", {} waiting", self.pages_queued);
            if let Some((depth, max)) = outlook.depth {
                m += &format!(", depth {depth} of {max}");
            }
            self.message = Some(m);
        }
    }

    /// This status as the crawl's last: `state` (terminal), how it ended,
    /// and nothing left waiting. A completed crawl is at 100 % and stage
    /// `done`; the others keep the stage they ended in.
    pub fn end(&mut self, state: CrawlState, message: String, error: Option<String>) {
        debug_assert!(state.is_terminal());
        self.status = state;
        self.message = Some(message);
        self.error = error;
        self.current_url = None;
        self.pages_queued = 0;
        self.finished_at = Some(chrono::Utc::now());
        if state == CrawlState::Completed {
            self.stage = Stage::Done;
            self.percentage = 100.0;
        }
    }
}

/// What a crawl knows of its work, for its percentage and log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outlook {
    /// URLs taken on so far: done or waiting.
    pub admitted: u64,
    /// Links found that the crawl will follow and has not taken on yet.
    pub found: u64,
    /// Pages expected beyond those taken on (`found` extrapolated to the
    /// rest of the level and the levels below), within the budget.
    pub ahead: u64,
    /// The level being crawled and `maxDepth`, for crawls that follow links.
    pub depth: Option<(u32, u32)>,
}

/// Stored page outcomes of one crawl.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageCounts {
    pub crawled: u64,
    pub failed: u64,
    pub skipped: u64,
    /// Chunks and code examples stored with those pages.
    pub chunks: u64,
    pub code_examples: u64,
    /// Chunks stored without a vector.
    pub unembedded: u64,
    /// Crawled pages by what they were to the source.
    pub new: u64,
    pub changed: u64,
    pub unchanged: u64,
    /// Vectors made by the embedder.
    pub embedded: u64,
}

impl PageCounts {
    pub fn done(&self) -> u64 {
        self.crawled + self.failed + self.skipped
    }
}

/// Millisecond RFC 3339 with `Z`: what clients parse most easily.
pub fn format_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn tenths<S: Serializer>(p: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((p * 10.0).floor() / 10.0)
}

/// Serializes a time as [`format_time`] writes it.
pub fn serialize_time<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    rfc3339(t, s)
}

fn rfc3339<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(t))
}

/// An optional time as RFC 3339 UTC, for other modules' types.
pub fn serialize_opt_time<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    rfc3339_opt(t, s)
}

fn rfc3339_opt<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&format_time(t)),
        None => s.serialize_none(),
    }
}

/// The live state of one crawl; cheap to clone, shared by everything that reports.
#[derive(Debug, Clone)]
pub struct Progress {
    tx: watch::Sender<CrawlStatus>,
}

impl Progress {
    pub fn new(initial: CrawlStatus) -> Self {
        let (tx, _rx) = watch::channel(initial);
        Self { tx }
    }

    pub fn snapshot(&self) -> CrawlStatus {
        self.tx.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<CrawlStatus> {
        self.tx.subscribe()
    }

    /// Applies `f` unless the crawl is already terminal; keeps `percentage`
    /// monotonic. Returns whether anything changed.
    pub fn update(&self, f: impl FnOnce(&mut CrawlStatus)) -> bool {
        self.tx.send_if_modified(|s| {
            if s.status.is_terminal() {
                return false;
            }
            let before = s.clone();
            f(s);
            s.percentage = s.percentage.clamp(before.percentage, 100.0);
            *s != before
        })
    }

    pub fn set_counts(&self, outlook: Outlook, counts: PageCounts) {
        self.update(|s| s.apply_counts(outlook, counts));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> CrawlStatus {
        CrawlStatus::new_queued("id".into(), "http://x/".into(), Utc::now())
    }

    #[test]
    fn percentage_is_done_over_total_when_the_estimate_holds() {
        let p = Progress::new(status());
        let c = |crawled| PageCounts { crawled, ..PageCounts::default() };
        let o = |admitted, ahead| Outlook { admitted, ahead, ..Outlook::default() };
        p.set_counts(o(10, 0), c(5));
        assert!((p.snapshot().percentage - 50.0).abs() < 1e-9);
        p.set_counts(o(10, 0), c(10));
        assert_eq!(p.snapshot().percentage, 99.0, "100 only when the crawl ends");
        let p = Progress::new(status());
        p.set_counts(o(20, 80), c(25));
        assert!((p.snapshot().percentage - 25.0).abs() < 1e-9);
    }

    #[test]
    fn percentage_moves_with_every_page_when_the_estimate_grows() {
        let p = Progress::new(status());
        let c = |crawled| PageCounts { crawled, ..PageCounts::default() };
        let o = |admitted| Outlook { admitted, ..Outlook::default() };
        p.set_counts(o(10), c(5));
        let half = p.snapshot().percentage;
        // Ten times the work turns up: the percentage slows down, and still moves.
        p.set_counts(o(100), c(6));
        let next = p.snapshot().percentage;
        assert!(next > half && next < half + 1.0, "{next}");
        for done in 7..=100 {
            let before = p.snapshot().percentage;
            p.set_counts(o(100), c(done));
            assert!(p.snapshot().percentage > before || before == 99.0);
        }
        assert_eq!(p.snapshot().percentage, 99.0);
    }

    #[test]
    fn percentage_is_sent_in_tenths() {
        let mut s = status();
        s.percentage = 33.3399;
        assert_eq!(serde_json::to_value(&s).unwrap()["percentage"], 33.3);
    }

    #[test]
    fn terminal_status_never_changes() {
        let p = Progress::new(status());
        p.update(|s| s.status = CrawlState::Completed);
        assert!(!p.update(|s| s.status = CrawlState::Running));
        assert_eq!(p.snapshot().status, CrawlState::Completed);
    }

    #[test]
    fn status_serialises_as_the_contract_names_it() {
        let v = serde_json::to_value(status()).unwrap();
        for key in [
            "progressId",
            "url",
            "status",
            "stage",
            "percentage",
            "pagesCrawled",
            "pagesFailed",
            "pagesSkipped",
            "pagesQueued",
            "chunksStored",
            "codeExamples",
            "currentUrl",
            "message",
            "error",
            "createdAt",
            "startedAt",
            "finishedAt",
            "limitReached",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["status"], "queued");
        assert!(v["createdAt"].as_str().unwrap().ends_with('Z'));
    }
}

// ---------------------------------------------------------------------------
// Events and the Reporter
// ---------------------------------------------------------------------------

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::{Mutex, broadcast};
use tokio_util::sync::CancellationToken;

/// Server → client event names of the contract.
pub const CRAWL_PROGRESS: &str = "crawl_progress";
pub const CRAWL_STOPPING: &str = "crawl:stopping";
pub const CRAWL_STOPPED: &str = "crawl:stopped";
pub const CRAWLS_UPDATE: &str = "crawls_update";

/// At most one `crawl_progress` per crawl per this interval (~10 a second).
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
/// Events kept per crawl for late subscribers and `Last-Event-ID` replays.
pub const REPLAY_EVENTS: usize = 256;

/// One numbered event of a crawl, as every surface sends it.
#[derive(Debug)]
pub struct Event {
    /// Monotonic per crawl, from 1.
    pub id: u64,
    pub name: &'static str,
    /// The payload, serialized once: every subscriber and the replay buffer
    /// share these bytes.
    pub data: Box<RawValue>,
    /// The crawl state this event reports.
    pub status: CrawlState,
    /// `crawl:stopping`, `crawl:stopped` and terminal statuses: never dropped.
    pub urgent: bool,
    /// The crawl's final event; streams end after it.
    pub last: bool,
}

/// Where a crawl's events go besides the Reporter's own subscribers
/// (Socket.IO rooms). Kept behind a trait so the engine does not know sockets.
#[async_trait::async_trait]
pub trait Fanout: Send + Sync + 'static {
    async fn crawl_event(&self, crawl_id: &str, event: Arc<Event>);
    async fn crawls_update(&self, tenant: Option<&str>, crawls: Vec<CrawlStatus>);
    /// At shutdown, once every crawl has sent its last event: closes the
    /// connections, so clients see the server go and reconnect to the next.
    async fn close(&self) {}
}

/// Lists a tenant's live crawls, for `crawls_update` (on every instance:
/// it may ask the database).
pub type ActiveList =
    Arc<dyn Fn(Option<String>) -> futures::future::BoxFuture<'static, Vec<CrawlStatus>> + Send + Sync>;

/// A fanout that goes nowhere (the CLI, tests of the engine alone).
pub struct NoFanout;

#[async_trait::async_trait]
impl Fanout for NoFanout {
    async fn crawl_event(&self, _: &str, _: Arc<Event>) {}
    async fn crawls_update(&self, _: Option<&str>, _: Vec<CrawlStatus>) {}
}

/// Where a resuming subscriber starts.
pub enum Resume {
    /// Exactly the events after the one it had.
    Replay(Vec<Arc<Event>>),
    /// The buffer does not reach back (or nothing was asked): the current state.
    Snapshot(Arc<Event>),
    /// It already had the final event.
    Done,
}

struct Replay {
    next_id: u64,
    events: VecDeque<Arc<Event>>,
    /// Id of the final event once published.
    last_id: Option<u64>,
}

/// Numbers, buffers and fans out one crawl's events. The emitter task
/// ([`Reporter::run`]) is the only publisher, so ids follow emission order.
/// Snapshots for new subscribers are taken under the same lock as
/// publications, so a subscriber never sees an older state after a newer one.
pub struct Reporter {
    pub crawl_id: String,
    pub tenant: Option<String>,
    progress: Progress,
    replay: Mutex<Replay>,
    tx: broadcast::Sender<Arc<Event>>,
    /// Set when another instance took the crawl over: its events are that
    /// instance's to send.
    muted: std::sync::atomic::AtomicBool,
    /// The id of the newest event published (0: none yet).
    newest: std::sync::atomic::AtomicU64,
}

/// Serializes an event payload once.
pub fn raw(v: &Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(v).unwrap_or_else(|_| RawValue::from_string("null".into()).expect("null is JSON"))
}

impl Event {
    /// A `crawl_progress` carrying `s`.
    pub fn progress(s: &CrawlStatus, id: u64, urgent: bool, last: bool) -> Self {
        Event { id, name: CRAWL_PROGRESS, data: raw(&progress_payload(s, id)), status: s.status, urgent, last }
    }
}

/// `crawl:stopping`: sent once, the moment a stop is asked, before the
/// crawl's in-flight work has ended.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoppingEvent {
    pub progress_id: String,
    /// Always `stopping`.
    pub status: String,
    /// Always `stop requested`.
    pub message: String,
}

/// `crawl:stopped`: sent once, after every task of a stopped crawl has
/// ended; nothing about the crawl changes after it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoppedEvent {
    pub progress_id: String,
    /// Always `cancelled`.
    pub status: String,
    /// How it ended, e.g. `stopped by request`.
    pub message: String,
    /// When it ended (RFC 3339, milliseconds, UTC); kept beside `emittedAt`.
    pub timestamp: String,
}

/// What every event of a crawl carries besides its payload, on every
/// surface (Socket.IO and SSE alike).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventStamp {
    /// Monotonic per crawl, from 1; also the SSE `id`. A snapshot carries the
    /// id of the newest event it includes, and a finished crawl read back
    /// from the store carries its final event's id.
    pub event_id: u64,
    /// When the event was sent (RFC 3339, milliseconds, UTC).
    pub emitted_at: String,
}

/// The contract's `crawl:stopping` payload.
pub fn stopping_payload(crawl_id: &str) -> Value {
    let e = StoppingEvent { progress_id: crawl_id.into(), status: "stopping".into(), message: "stop requested".into() };
    serde_json::to_value(e).unwrap_or(Value::Null)
}

/// The contract's `crawl:stopped` payload of a cancelled crawl.
pub fn stopped_payload(s: &CrawlStatus) -> Value {
    let e = StoppedEvent {
        progress_id: s.progress_id.clone(),
        status: "cancelled".into(),
        message: s.message.clone().unwrap_or_else(|| "stopped".into()),
        timestamp: format_time(&s.finished_at.unwrap_or_else(chrono::Utc::now)),
    };
    serde_json::to_value(e).unwrap_or(Value::Null)
}

/// `payload` with the event's id and emission time, which every event of
/// every surface carries (`crawl_progress` gets them in `progress_payload`).
pub fn stamped(mut payload: Value, id: u64) -> Value {
    if let Value::Object(m) = &mut payload {
        m.insert("eventId".into(), json!(id));
        m.insert("emittedAt".into(), Value::String(format_time(&chrono::Utc::now())));
    }
    payload
}

/// The contract's `crawl_progress` payload: the status plus a short `log`
/// line, and the event's id and emission time.
pub fn progress_payload(s: &CrawlStatus, id: u64) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        let log = match &s.message {
            Some(m) => m.clone(),
            None => format!("{} crawled, {} failed, {} skipped", s.pages_crawled, s.pages_failed, s.pages_skipped),
        };
        m.insert("log".into(), Value::String(log));
        m.insert("eventId".into(), json!(id));
        m.insert("emittedAt".into(), Value::String(format_time(&chrono::Utc::now())));
    }
    v
}

impl Reporter {
    pub fn new(crawl_id: String, tenant: Option<String>, progress: Progress) -> Arc<Self> {
        Self::numbered_from(crawl_id, tenant, progress, 1)
    }

    /// A reporter whose first event has id `first_id`: a crawl resumed on
    /// another instance goes on numbering above what the first one sent.
    pub fn numbered_from(crawl_id: String, tenant: Option<String>, progress: Progress, first_id: u64) -> Arc<Self> {
        let (tx, _) = broadcast::channel(REPLAY_EVENTS);
        Arc::new(Self {
            crawl_id,
            tenant,
            progress,
            replay: Mutex::new(Replay { next_id: first_id.max(1), events: VecDeque::new(), last_id: None }),
            tx,
            muted: std::sync::atomic::AtomicBool::new(false),
            newest: std::sync::atomic::AtomicU64::new(first_id.max(1) - 1),
        })
    }

    /// The id of the newest event published: what a state stored now includes.
    pub fn newest_id(&self) -> u64 {
        self.newest.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Publishes nothing more.
    pub fn mute(&self) {
        self.muted.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Live events from now on; pair with [`Reporter::resume`] to fill the gap.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// The events after `after`, or a snapshot when the buffer does not reach back.
    pub async fn resume(&self, after: Option<u64>) -> Resume {
        let r = self.replay.lock().await;
        if let (Some(after), Some(last)) = (after, r.last_id)
            && after >= last
        {
            return Resume::Done;
        }
        if let Some(after) = after {
            let oldest = r.events.front().map(|e| e.id).unwrap_or(r.next_id);
            if after + 1 >= oldest && after < r.next_id {
                return Resume::Replay(r.events.iter().filter(|e| e.id > after).cloned().collect());
            }
        }
        Resume::Snapshot(self.snapshot_locked(&r))
    }

    fn snapshot_locked(&self, r: &Replay) -> Arc<Event> {
        let s = self.progress.snapshot();
        // The snapshot carries the id of the newest event it includes, so a
        // resume from it replays only what comes after.
        let id = r.next_id - 1;
        let last = s.status.is_terminal() && r.last_id.is_some();
        Arc::new(Event::progress(&s, id, true, last))
    }

    /// Runs `send` with the current snapshot while no event can be published,
    /// so whatever is published next reaches the subscriber after it.
    pub async fn with_snapshot<F, Fut>(&self, send: F)
    where
        F: FnOnce(Arc<Event>) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let r = self.replay.lock().await;
        let snap = self.snapshot_locked(&r);
        send(snap).await;
        drop(r);
    }

    /// Numbers and sends one event; its id, unless the reporter is muted.
    async fn publish(
        &self,
        fanout: &dyn Fanout,
        name: &'static str,
        data: Value,
        urgent: bool,
        last: bool,
    ) -> Option<u64> {
        if self.muted.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let mut r = self.replay.lock().await;
        let id = r.next_id;
        r.next_id += 1;
        let event = Arc::new(match (name, data) {
            (CRAWL_PROGRESS, Value::Null) => Event::progress(&self.progress.snapshot(), id, urgent, last),
            (_, d) => {
                Event { id, name, data: raw(&stamped(d, id)), status: self.progress.snapshot().status, urgent, last }
            }
        });
        if r.events.len() >= REPLAY_EVENTS {
            r.events.pop_front();
        }
        r.events.push_back(event.clone());
        if last {
            r.last_id = Some(id);
        }
        self.newest.store(id, std::sync::atomic::Ordering::Relaxed);
        let _ = self.tx.send(event.clone());
        fanout.crawl_event(&self.crawl_id, event).await;
        drop(r);
        Some(id)
    }

    /// The emitter: turns state changes into events. Coalesces and throttles
    /// progress to one per [`PROGRESS_INTERVAL`], always ending on the latest
    /// state; status changes go out at once. Ends after the final event, and
    /// returns its id when the crawl ended (not when it was handed over).
    pub async fn run(
        self: Arc<Self>,
        fanout: Arc<dyn Fanout>,
        list: ActiveList,
        root: CancellationToken,
    ) -> Option<u64> {
        let mut rx = self.progress.subscribe();
        let mut last_status: Option<CrawlState> = None;
        let mut stopping_sent = false;
        let mut next_at = tokio::time::Instant::now();
        let mut pending;
        loop {
            let s = rx.borrow_and_update().clone();
            let changed = last_status != Some(s.status);
            let now = tokio::time::Instant::now();
            if changed || now >= next_at {
                if matches!(s.status, CrawlState::Stopping | CrawlState::Cancelled) && !stopping_sent {
                    stopping_sent = true;
                    self.publish(&*fanout, CRAWL_STOPPING, stopping_payload(&self.crawl_id), true, false).await;
                }
                // Handed back to the queue at a shutdown: another instance
                // goes on, and this one has said its last.
                if changed && s.status == CrawlState::Queued && last_status.is_some() {
                    self.publish(&*fanout, CRAWL_PROGRESS, Value::Null, true, true).await;
                    return None;
                }
                let terminal = s.status.is_terminal();
                let cancelled = s.status == CrawlState::Cancelled;
                let mut last_id =
                    self.publish(&*fanout, CRAWL_PROGRESS, Value::Null, terminal, terminal && !cancelled).await;
                if cancelled {
                    last_id = self.publish(&*fanout, CRAWL_STOPPED, stopped_payload(&s), true, true).await;
                }
                if (changed && s.status == CrawlState::Running) || terminal {
                    let mut crawls = list(self.tenant.clone()).await;
                    if terminal {
                        crawls.retain(|c| c.progress_id != self.crawl_id);
                        crawls.insert(0, s.clone());
                    }
                    fanout.crawls_update(self.tenant.as_deref(), crawls).await;
                }
                if terminal {
                    return last_id;
                }
                last_status = Some(s.status);
                next_at = now + PROGRESS_INTERVAL;
                pending = false;
            } else {
                pending = true;
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { return None },
                _ = tokio::time::sleep_until(next_at), if pending => {}
                // A crawl always reaches a terminal state after shutdown; this
                // only bounds an emitter whose crawl task died.
                _ = async { root.cancelled().await; tokio::time::sleep(Duration::from_secs(10)).await } => return None,
            }
        }
    }
}
