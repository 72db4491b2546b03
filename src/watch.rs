//! Following a crawl this instance does not run (it runs on another
//! instance, or waits in the queue) through its stored row: for subscribers
//! here that the running instance's events cannot reach (SSE always;
//! Socket.IO when rooms do not span instances).
//!
//! The owner rewrites the row at least every [`POLL`] while it changes; the
//! follower reads it that often and turns each change into the events a
//! local subscriber gets: `crawl_progress`, and `crawl:stopping` then
//! `crawl:stopped` for a stop. Each carries the id of the owner's newest
//! event the stored state includes (stored with it), so they are numbered
//! as the owner's own events; the final one is marked `last`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::crawl::Registry;
use crate::progress::{
    CRAWL_PROGRESS, CRAWL_STOPPED, CRAWL_STOPPING, CrawlState, CrawlStatus, Event, Reporter, progress_payload, raw,
    stamped, stopped_payload, stopping_payload,
};

/// How often the stored state is read.
pub const POLL: Duration = Duration::from_millis(250);

pub enum Step {
    /// The next event, as a local subscriber would get it.
    Event(Arc<Event>),
    /// The crawl now runs on this instance: its reporter takes over.
    Local(Arc<Reporter>),
}

pub struct Follower {
    registry: Arc<Registry>,
    id: String,
    tenant: Option<String>,
    last: Option<CrawlStatus>,
    stopping_sent: bool,
    pending: VecDeque<Arc<Event>>,
    done: bool,
}

impl Follower {
    /// Follows crawl `id` as `tenant` sees it, from its current state on.
    pub fn new(registry: Arc<Registry>, id: String, tenant: Option<String>) -> Self {
        Self { registry, id, tenant, last: None, stopping_sent: false, pending: VecDeque::new(), done: false }
    }

    /// Starts after `seen`, a state the subscriber already has (its snapshot).
    pub fn after(mut self, seen: CrawlStatus) -> Self {
        self.stopping_sent = seen.status == CrawlState::Stopping;
        self.last = Some(seen);
        self
    }

    /// The next event; `None` after the final one, or when the crawl is gone.
    pub async fn next(&mut self) -> Option<Step> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                self.done = ev.last;
                return Some(Step::Event(ev));
            }
            if self.done {
                return None;
            }
            if self.last.is_some() {
                tokio::time::sleep(POLL).await;
            }
            if let Some(reporter) = self.registry.reporter(&self.id, self.tenant.as_deref()) {
                return Some(Step::Local(reporter));
            }
            let s = match self.registry.status(&self.id, self.tenant.as_deref()).await {
                Ok(Some(s)) => s,
                Ok(None) => return None,
                Err(e) => {
                    tracing::warn!(progress_id = %self.id, error = %e, "could not read the state of a crawl followed here");
                    continue;
                }
            };
            if self.last.as_ref() == Some(&s) {
                continue;
            }
            self.push_changes(&s);
            self.last = Some(s);
        }
    }

    fn push_changes(&mut self, s: &CrawlStatus) {
        let event = |name, data: serde_json::Value, urgent, last| {
            Arc::new(Event {
                id: s.event_id,
                name,
                data: raw(&stamped(data, s.event_id)),
                status: s.status,
                urgent,
                last,
            })
        };
        if matches!(s.status, CrawlState::Stopping | CrawlState::Cancelled) && !self.stopping_sent {
            self.stopping_sent = true;
            self.pending.push_back(event(CRAWL_STOPPING, stopping_payload(&self.id), true, false));
        }
        let terminal = s.status.is_terminal();
        let cancelled = s.status == CrawlState::Cancelled;
        self.pending.push_back(event(
            CRAWL_PROGRESS,
            progress_payload(s, s.event_id),
            terminal,
            terminal && !cancelled,
        ));
        if cancelled {
            self.pending.push_back(event(CRAWL_STOPPED, stopped_payload(s), true, true));
        }
    }
}
