//! `GET /api/crawls/{id}/events`: the crawl's events as Server-Sent Events.
//!
//! Every event carries its `id:`; a reconnect with `Last-Event-ID` gets
//! exactly what it missed from the replay buffer, or a fresh snapshot when
//! the buffer no longer reaches back. The stream ends after the final event;
//! a reconnect after that answers `204`, which tells an `EventSource` to stop.
//! A slow reader never slows the crawl: it lags, then resumes from the buffer.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use futures::{Stream, StreamExt};
use tokio::sync::broadcast;

use super::AppState;
use crate::auth::Tenant;
use crate::error::ApiError;
use crate::progress::{CRAWL_PROGRESS, Event, Reporter, Resume, progress_payload};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/crawls/{id}/events", get(events))
}

/// The id of the one event sent for a crawl that ended before this process
/// kept its events (or longer ago than the replay window).
const FINAL_ID: &str = "final";

fn sse(e: &Event) -> SseEvent {
    SseEvent::default().id(e.id.to_string()).event(e.name).data(e.data.get())
}

#[utoipa::path(get, path = "/api/crawls/{id}/events", tag = "crawls",
    params(("id" = String, Path), ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event")),
    responses((status = 200, description = "text/event-stream of the crawl's events, each with an id", content_type = "text/event-stream"),
              (status = 204, description = "The final event was already seen"), (status = 404, body = crate::error::ErrorBody)))]
pub(super) async fn events(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::trim);
    let keep_alive = KeepAlive::new().interval(Duration::from_secs(15)).text("keep-alive");
    let Some(reporter) = state.registry.reporter(&id, tenant.as_deref()) else {
        let s = state.registry.status(&id, tenant.as_deref()).await?.ok_or_else(|| ApiError::crawl_not_found(&id))?;
        if last_event_id == Some(FINAL_ID) {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        if !s.status.is_terminal() {
            // Queued, or running on another instance: follow its stored state.
            let stream = Source::Remote(Remote::new(state.clone(), id, tenant.clone()))
                .stream()
                .take_until(state.registry.shutdown_token().cancelled_owned());
            return Ok(Sse::new(stream).keep_alive(keep_alive).into_response());
        }
        // Ended before this process kept its events: one final snapshot.
        let ev = SseEvent::default().id(FINAL_ID).event(CRAWL_PROGRESS).data(progress_payload(&s, 0).to_string());
        let stream = futures::stream::iter([Ok::<_, Infallible>(ev)]);
        return Ok(Sse::new(stream).keep_alive(keep_alive).into_response());
    };
    let after = last_event_id.and_then(|v| v.parse::<u64>().ok());
    let Some(follow) = Follow::start(reporter, after).await else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let stream = Source::Local(follow).stream().take_until(state.registry.shutdown_token().cancelled_owned());
    Ok(Sse::new(stream).keep_alive(keep_alive).into_response())
}

/// Where a subscriber's events come from: the crawl's reporter when it runs
/// here, else its stored state until it runs here (it waited in the queue
/// and this instance claimed it) or ends.
enum Source {
    Local(Follow),
    Remote(Remote),
}

impl Source {
    fn stream(self) -> impl Stream<Item = Result<SseEvent, Infallible>> {
        futures::stream::unfold(self, |mut src| async move {
            loop {
                match &mut src {
                    Source::Local(follow) => return follow.next().await.map(|ev| (Ok(ev), src)),
                    Source::Remote(remote) => match remote.next().await? {
                        RemoteStep::Event(ev) => return Some((Ok(ev), src)),
                        RemoteStep::Local(reporter) => src = Source::Local(Follow::start(reporter, None).await?),
                    },
                }
            }
        })
    }
}

/// One SSE subscriber's position in a crawl's events.
struct Follow {
    reporter: Arc<Reporter>,
    rx: broadcast::Receiver<Arc<Event>>,
    pending: VecDeque<Arc<Event>>,
    /// Id of the newest event sent; only newer ones follow.
    last_sent: Option<u64>,
    done: bool,
}

impl Follow {
    /// Follows the events after `after` (all, from a snapshot, without it);
    /// `None` when the final one was already seen.
    async fn start(reporter: Arc<Reporter>, after: Option<u64>) -> Option<Self> {
        // Subscribe before reading the buffer, so nothing falls between the two.
        let rx = reporter.subscribe();
        let (pending, last_sent): (VecDeque<Arc<Event>>, Option<u64>) = match reporter.resume(after).await {
            Resume::Done => return None,
            Resume::Replay(events) => (events.into(), after),
            Resume::Snapshot(snap) => (VecDeque::from([snap]), None),
        };
        Some(Self { reporter, rx, pending, last_sent, done: false })
    }

    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if self.done {
                return None;
            }
            if let Some(ev) = self.pending.pop_front() {
                if self.last_sent.is_some_and(|l| ev.id <= l) {
                    continue;
                }
                self.last_sent = Some(ev.id);
                self.done = ev.last;
                return Some(sse(&ev));
            }
            match self.rx.recv().await {
                Ok(ev) => self.pending.push_back(ev),
                // Too slow: resume from the buffer, or from a snapshot.
                Err(broadcast::error::RecvError::Lagged(_)) => match self.reporter.resume(self.last_sent).await {
                    Resume::Done => return None,
                    Resume::Replay(events) => self.pending = events.into(),
                    Resume::Snapshot(snap) => {
                        self.last_sent = None;
                        self.pending = VecDeque::from([snap]);
                    }
                },
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// How often the stored state of a crawl running elsewhere is read: the
/// owner writes it at least this often while it changes.
const REMOTE_POLL: Duration = Duration::from_millis(250);

/// An SSE subscriber of a crawl this instance does not run (it runs on
/// another instance, or waits in the queue): its stored status, read every
/// [`REMOTE_POLL`], sent when it changes, with `crawl:stopping` and
/// `crawl:stopped` as a local subscriber gets them. These events carry no
/// id but the last (`final`): the ids of the events are the owner's.
struct Remote {
    state: AppState,
    id: String,
    tenant: Tenant,
    last: Option<crate::progress::CrawlStatus>,
    stopping_sent: bool,
    pending: VecDeque<SseEvent>,
    done: bool,
}

enum RemoteStep {
    Event(SseEvent),
    /// The crawl now runs here: follow its reporter from now on.
    Local(Arc<Reporter>),
}

impl Remote {
    fn new(state: AppState, id: String, tenant: Tenant) -> Self {
        Self { state, id, tenant, last: None, stopping_sent: false, pending: VecDeque::new(), done: false }
    }

    async fn next(&mut self) -> Option<RemoteStep> {
        use crate::progress::{CRAWL_STOPPED, CRAWL_STOPPING, CrawlState};
        loop {
            if let Some(ev) = self.pending.pop_front() {
                self.done = self.last.as_ref().is_some_and(|s| s.status.is_terminal()) && self.pending.is_empty();
                return Some(RemoteStep::Event(ev));
            }
            if self.done {
                return None;
            }
            if self.last.is_some() {
                tokio::time::sleep(REMOTE_POLL).await;
            }
            if let Some(reporter) = self.state.registry.reporter(&self.id, self.tenant.as_deref()) {
                return Some(RemoteStep::Local(reporter));
            }
            let s = match self.state.registry.status(&self.id, self.tenant.as_deref()).await {
                Ok(Some(s)) => s,
                Ok(None) => return None,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read a crawl's state for its SSE subscriber");
                    continue;
                }
            };
            if self.last.as_ref() == Some(&s) {
                continue;
            }
            if matches!(s.status, CrawlState::Stopping | CrawlState::Cancelled) && !self.stopping_sent {
                self.stopping_sent = true;
                let data =
                    serde_json::json!({"progressId": self.id, "status": "stopping", "message": "stop requested"});
                self.pending.push_back(SseEvent::default().event(CRAWL_STOPPING).data(data.to_string()));
            }
            let progress = SseEvent::default().event(CRAWL_PROGRESS).data(progress_payload(&s, 0).to_string());
            match s.status {
                CrawlState::Cancelled => {
                    self.pending.push_back(progress);
                    let data = serde_json::json!({
                        "progressId": self.id,
                        "status": "cancelled",
                        "message": s.message.clone().unwrap_or_else(|| "stopped".into()),
                        "timestamp": s.finished_at.map(|t| crate::progress::format_time(&t)),
                    });
                    self.pending
                        .push_back(SseEvent::default().id(FINAL_ID).event(CRAWL_STOPPED).data(data.to_string()));
                }
                t if t.is_terminal() => self.pending.push_back(progress.id(FINAL_ID)),
                _ => self.pending.push_back(progress),
            }
            self.last = Some(s);
        }
    }
}
