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
        // Ended before this process kept its events: one final snapshot.
        let s = state.registry.status(&id, tenant.as_deref()).await?.ok_or_else(|| ApiError::crawl_not_found(&id))?;
        if last_event_id == Some(FINAL_ID) {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        let ev = SseEvent::default().id(FINAL_ID).event(CRAWL_PROGRESS).data(progress_payload(&s, 0).to_string());
        let stream = futures::stream::iter([Ok::<_, Infallible>(ev)]);
        return Ok(Sse::new(stream).keep_alive(keep_alive).into_response());
    };
    let after = last_event_id.and_then(|v| v.parse::<u64>().ok());
    // Subscribe before reading the buffer, so nothing falls between the two.
    let rx = reporter.subscribe();
    let (pending, last_sent): (VecDeque<Arc<Event>>, Option<u64>) = match reporter.resume(after).await {
        Resume::Done => return Ok(StatusCode::NO_CONTENT.into_response()),
        Resume::Replay(events) => (events.into(), after),
        Resume::Snapshot(snap) => (VecDeque::from([snap]), None),
    };
    let follow = Follow { reporter, rx, pending, last_sent, done: false };
    let stream = follow.stream().take_until(state.registry.shutdown_token().cancelled_owned());
    Ok(Sse::new(stream).keep_alive(keep_alive).into_response())
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
    fn stream(self) -> impl Stream<Item = Result<SseEvent, Infallible>> {
        futures::stream::unfold(self, |mut st| async move {
            loop {
                if st.done {
                    return None;
                }
                if let Some(ev) = st.pending.pop_front() {
                    if st.last_sent.is_some_and(|l| ev.id <= l) {
                        continue;
                    }
                    st.last_sent = Some(ev.id);
                    st.done = ev.last;
                    return Some((Ok(sse(&ev)), st));
                }
                match st.rx.recv().await {
                    Ok(ev) => st.pending.push_back(ev),
                    // Too slow: resume from the buffer, or from a snapshot.
                    Err(broadcast::error::RecvError::Lagged(_)) => match st.reporter.resume(st.last_sent).await {
                        Resume::Done => return None,
                        Resume::Replay(events) => st.pending = events.into(),
                        Resume::Snapshot(snap) => {
                            st.last_sent = None;
                            st.pending = VecDeque::from([snap]);
                        }
                    },
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }
}
