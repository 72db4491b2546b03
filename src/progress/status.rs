//! `CrawlStatus`, the state of a crawl as the wire contract names it, and
//! `Progress`, the live handle that keeps it current.

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
    /// Every page is stored (searchable by text); vectors are still being
    /// made behind the crawl (`chunksEmbedded`).
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
    /// Chunks stored without a vector: not yet embedded (the local model
    /// embeds behind the crawl, stage `embedding`), or, once the crawl has
    /// ended, left by a stop or refused by the embedder for good;
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
    /// Vectors this crawl made for its chunks and code examples so far;
    /// identical texts of a changed page reuse their vectors. A crawl
    /// completes when every chunk has its vector.
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
