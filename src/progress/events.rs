//! The events of a crawl, numbered, throttled and kept for replay, and the
//! `Reporter` that fans them out to its subscribers and the Socket.IO rooms.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::{Mutex, broadcast};
use tokio_util::sync::CancellationToken;

use super::status::*;

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

/// An event's payload as JSON. Payloads are structs of strings and
/// numbers, which always serialize; were one ever not to, the event goes
/// out as `null` and the cause is logged, rather than the crawl failing.
fn payload(v: impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or_else(|e| {
        tracing::error!(error = %e, "an event payload did not serialize");
        Value::Null
    })
}

/// The contract's `crawl:stopping` payload.
pub fn stopping_payload(crawl_id: &str) -> Value {
    let e = StoppingEvent { progress_id: crawl_id.into(), status: "stopping".into(), message: "stop requested".into() };
    payload(e)
}

/// The contract's `crawl:stopped` payload of a cancelled crawl.
pub fn stopped_payload(s: &CrawlStatus) -> Value {
    let e = StoppedEvent {
        progress_id: s.progress_id.clone(),
        status: "cancelled".into(),
        message: s.message.clone().unwrap_or_else(|| "stopped".into()),
        timestamp: format_time(&s.finished_at.unwrap_or_else(chrono::Utc::now)),
    };
    payload(e)
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
    let mut v = payload(s);
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
