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

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use futures::{Stream, StreamExt};
use tokio::sync::broadcast;

use super::{ApiPath, AppState};
use crate::auth::Tenant;
use crate::error::ApiError;
use crate::progress::{CRAWL_PROGRESS, Event, Reporter, Resume, progress_payload};
use crate::watch::{Follower, Step};

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
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::trim);
    let keep_alive = KeepAlive::new().interval(Duration::from_secs(15)).text("keep-alive");
    let Some(reporter) = state.registry.reporter(&id, tenant.as_deref()) else {
        let s = state.registry.status(&id, tenant.as_deref()).await?.ok_or_else(|| ApiError::crawl_not_found(&id))?;
        let final_id = s.event_id;
        let seen = last_event_id
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|v| s.status.is_terminal() && final_id > 0 && v >= final_id);
        if last_event_id == Some(FINAL_ID) || seen {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        if !s.status.is_terminal() {
            // Queued, or running on another instance: follow its stored state.
            let follower = Follower::new(state.registry.clone(), id, tenant.0.clone());
            let stream = Source::Remote(Box::new(follower))
                .stream()
                .take_until(state.registry.shutdown_token().cancelled_owned());
            return Ok(Sse::new(stream).keep_alive(keep_alive).into_response());
        }
        // Ended before this process kept its events: one final snapshot,
        // numbered as its final event was (`final` for crawls from before
        // ids were kept).
        let ev = SseEvent::default().event(CRAWL_PROGRESS).data(progress_payload(&s, final_id).to_string());
        let ev = if final_id > 0 { ev.id(final_id.to_string()) } else { ev.id(FINAL_ID) };
        let stream = futures::stream::iter([Ok::<_, Infallible>(ev)]);
        return Ok(Sse::new(stream).keep_alive(keep_alive).into_response());
    };
    let after = last_event_id.and_then(|v| v.parse::<u64>().ok());
    let Some(follow) = LiveEvents::start(reporter, after).await else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let stream = Source::Local(follow).stream().take_until(state.registry.shutdown_token().cancelled_owned());
    Ok(Sse::new(stream).keep_alive(keep_alive).into_response())
}

/// Where a subscriber's events come from: the crawl's reporter when it runs
/// here, else its stored state until it runs here (it waited in the queue
/// and this instance claimed it) or ends.
enum Source {
    Local(LiveEvents),
    Remote(Box<Follower>),
}

impl Source {
    fn stream(self) -> impl Stream<Item = Result<SseEvent, Infallible>> {
        futures::stream::unfold(self, |mut src| async move {
            loop {
                match &mut src {
                    Source::Local(follow) => return follow.next().await.map(|ev| (Ok(ev), src)),
                    Source::Remote(remote) => match remote.next().await? {
                        Step::Event(ev) => {
                            // The payload's eventId is the owner's; the SSE id is
                            // left out (a reconnect here cannot replay the owner's
                            // buffer) but for the final event's, which ends reconnects.
                            let out = SseEvent::default().event(ev.name).data(ev.data.get());
                            return Some((Ok(if ev.last { out.id(FINAL_ID) } else { out }), src));
                        }
                        Step::Local(reporter) => src = Source::Local(LiveEvents::start(reporter, None).await?),
                    },
                }
            }
        })
    }
}

/// One SSE subscriber's position in a crawl's events.
struct LiveEvents {
    reporter: Arc<Reporter>,
    rx: broadcast::Receiver<Arc<Event>>,
    pending: VecDeque<Arc<Event>>,
    /// Id of the newest event sent; only newer ones follow.
    last_sent: Option<u64>,
    done: bool,
}

impl LiveEvents {
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
