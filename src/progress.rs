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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Analyzing,
    Discovering,
    Crawling,
    Processing,
    Embedding,
    Storing,
    Finalizing,
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
            _ => return None,
        })
    }
}

/// `CrawlStatus` of CONTRACT.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CrawlStatus {
    pub progress_id: String,
    pub url: String,
    pub status: CrawlState,
    pub stage: Stage,
    pub percentage: f64,
    pub pages_crawled: u64,
    pub pages_failed: u64,
    pub pages_skipped: u64,
    pub pages_queued: u64,
    pub chunks_stored: u64,
    pub code_examples: u64,
    pub current_url: Option<String>,
    pub message: Option<String>,
    pub error: Option<String>,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub finished_at: Option<DateTime<Utc>>,
}

impl CrawlStatus {
    pub fn new_queued(progress_id: String, url: String, created_at: DateTime<Utc>) -> Self {
        Self {
            progress_id,
            url,
            status: CrawlState::Queued,
            stage: Stage::Analyzing,
            percentage: 0.0,
            pages_crawled: 0,
            pages_failed: 0,
            pages_skipped: 0,
            pages_queued: 0,
            chunks_stored: 0,
            code_examples: 0,
            current_url: None,
            message: Some("queued".into()),
            error: None,
            created_at,
            started_at: None,
            finished_at: None,
        }
    }

    /// Pages that reached an outcome (stored as crawled, failed or skipped).
    pub fn pages_done(&self) -> u64 {
        self.pages_crawled + self.pages_failed + self.pages_skipped
    }

    /// Sets the page counters and derives `pagesQueued` and `percentage`
    /// (done over admitted, held below 100 until the crawl really ends).
    pub fn apply_counts(&mut self, admitted: u64, counts: PageCounts) {
        self.pages_crawled = counts.crawled;
        self.pages_failed = counts.failed;
        self.pages_skipped = counts.skipped;
        let done = counts.done();
        self.pages_queued = admitted.saturating_sub(done);
        if admitted > 0 {
            let p = (done as f64 * 100.0 / admitted as f64).min(99.0);
            self.percentage = self.percentage.max((p * 10.0).floor() / 10.0);
        }
    }
}

/// Stored page outcomes of one crawl.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageCounts {
    pub crawled: u64,
    pub failed: u64,
    pub skipped: u64,
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

fn rfc3339<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(t))
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

    pub fn set_counts(&self, admitted: u64, counts: PageCounts) {
        self.update(|s| s.apply_counts(admitted, counts));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> CrawlStatus {
        CrawlStatus::new_queued("id".into(), "http://x/".into(), Utc::now())
    }

    #[test]
    fn percentage_never_decreases() {
        let p = Progress::new(status());
        let c = |crawled| PageCounts {
            crawled,
            failed: 0,
            skipped: 0,
        };
        p.set_counts(10, c(5));
        assert_eq!(p.snapshot().percentage, 50.0);
        p.set_counts(100, c(6));
        assert_eq!(p.snapshot().percentage, 50.0);
        p.set_counts(100, c(80));
        assert_eq!(p.snapshot().percentage, 80.0);
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
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["status"], "queued");
        assert!(v["createdAt"].as_str().unwrap().ends_with('Z'));
    }
}
