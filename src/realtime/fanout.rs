//! Crawl events into Socket.IO rooms.
//!
//! Progress goes to the room as a broadcast; a socket whose buffer is full
//! misses that one (the next carries the latest state). Urgent events
//! (stopping, stopped, terminal status) go socket by socket, and a full
//! socket gets them retried until delivered; a client stalled that long is
//! disconnected, and its reconnect gets the final state as its snapshot.
//!
//! With rooms spanning instances, every socket also sits in its instance's
//! own room; urgent events reach the other instances' sockets as one
//! broadcast that leaves this instance's room out (they got theirs one by
//! one), through the same channel as progress, so order is kept.
//!
//! When rooms do not span instances (no Redis) but crawls run on several,
//! a room of a crawl running elsewhere is fed from the crawl's stored row
//! instead (see [`crate::watch`]), so its subscribers still get
//! its progress, its stop and its end.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use socketioxide::{SendError, SocketError, SocketIo};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::list_room;
use crate::backoff::{Backoff, Wait};
use crate::crawl::Registry;
use crate::progress::{CRAWLS_UPDATE, CrawlStatus, Event, Fanout};
use crate::sync::LockExt;
use crate::watch::{Follower, Step};

/// An urgent event to a full socket is tried again every 50 ms for 10 s;
/// then the client is disconnected.
const URGENT_RETRY: Backoff = Backoff::constant(Duration::from_millis(50)).waits(200);
/// How long `close` waits for those retries.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

pub struct SocketFanout<A: Adapter> {
    io: SocketIo<A>,
    /// Retry and follow tasks; waited for (bounded) at shutdown, in `close`.
    tracker: TaskTracker,
    root: CancellationToken,
    /// This instance's room, when rooms span instances.
    node_room: Option<String>,
    /// Rooms fed from the store here (crawls running elsewhere, no Redis).
    followed: Arc<Mutex<HashSet<String>>>,
}

impl<A: Adapter> SocketFanout<A> {
    /// `node_room` names this instance's room when rooms span instances.
    pub fn new(io: SocketIo<A>, root: CancellationToken, node_room: Option<String>) -> Self {
        Self { io, tracker: TaskTracker::new(), root, node_room, followed: Arc::default() }
    }

    /// Feeds the room of a crawl this instance does not run from its stored
    /// state, after `seen` (the snapshot its subscriber got), until the crawl
    /// ends, runs here, or the room has no subscriber left here. Only needed
    /// when rooms do not span instances; one feeder per room.
    pub fn follow_remote(self: &Arc<Self>, registry: Arc<Registry>, seen: CrawlStatus) {
        if self.node_room.is_some() || seen.status.is_terminal() {
            return;
        }
        let id = seen.progress_id.clone();
        if !self.followed.locked().insert(id.clone()) {
            return;
        }
        let (this, root) = (self.clone(), self.root.clone());
        let span = tracing::debug_span!("follow", progress_id = %id);
        self.tracker.spawn(tracing::Instrument::instrument(
            async move {
                let mut follower = Follower::new(registry, id.clone(), None).after(seen);
                loop {
                    let step = tokio::select! {
                        _ = root.cancelled() => break,
                        step = follower.next() => step,
                    };
                    // A local crawl's reporter feeds the room itself.
                    let Some(Step::Event(event)) = step else { break };
                    // Checked under the lock a new subscriber takes to start
                    // a feeder: it either is in the room now or starts one.
                    let sockets = {
                        let mut followed = this.followed.locked();
                        let sockets = this.io.to(id.clone()).sockets();
                        if sockets.is_empty() {
                            followed.remove(&id);
                            return;
                        }
                        sockets
                    };
                    for socket in sockets {
                        this.send(socket, event.clone());
                    }
                }
                this.followed.locked().remove(&id);
            },
            span,
        ));
    }

    /// The room every socket of this instance joins (rooms spanning instances).
    pub fn node_room(&self) -> Option<&str> {
        self.node_room.as_deref()
    }

    /// Connections to this instance.
    pub fn connections(&self) -> usize {
        self.io.sockets().len()
    }

    /// Sends an event to one socket; an urgent one is retried while the
    /// socket's buffer is full.
    pub fn send(&self, socket: SocketRef<A>, event: Arc<Event>) {
        match socket.emit(event.name, &event.data) {
            Err(SendError::Socket(SocketError::InternalChannelFull)) if event.urgent => {
                let root = self.root.clone();
                self.tracker.spawn(async move {
                    let mut tries = URGENT_RETRY.start();
                    loop {
                        match tries.wait(&root).await {
                            Wait::Again => {}
                            Wait::Stopped => return,
                            Wait::GaveUp => break,
                        }
                        match socket.emit(event.name, &event.data) {
                            Err(SendError::Socket(SocketError::InternalChannelFull)) => continue,
                            _ => return,
                        }
                    }
                    tracing::warn!(sid = %socket.id, "client stalled on an urgent event; disconnecting it");
                    let _ = socket.disconnect();
                });
            }
            Err(e) => tracing::debug!(sid = %socket.id, error = %e, "event not delivered"),
            Ok(()) => {}
        }
    }
}

#[async_trait::async_trait]
impl<A: Adapter> Fanout for SocketFanout<A> {
    async fn crawl_event(&self, crawl_id: &str, event: Arc<Event>) {
        if event.urgent {
            // `sockets()` lists this instance's sockets only.
            for socket in self.io.to(crawl_id.to_string()).sockets() {
                self.send(socket, event.clone());
            }
            if let Some(node) = &self.node_room
                && let Err(e) =
                    self.io.to(crawl_id.to_string()).except(node.clone()).emit(event.name, &event.data).await
            {
                tracing::warn!(error = %e, "urgent event not delivered to the other instances");
            }
        } else if let Err(e) = self.io.to(crawl_id.to_string()).emit(event.name, &event.data).await {
            tracing::debug!(error = %e, "progress not delivered to every subscriber");
        }
    }

    async fn crawls_update(&self, tenant: Option<&str>, crawls: Vec<CrawlStatus>) {
        let data = json!({ "crawls": crawls });
        if let Err(e) = self.io.to(list_room(tenant)).emit(CRAWLS_UPDATE, &data).await {
            tracing::debug!(error = %e, "crawls_update not delivered to every subscriber");
        }
    }

    async fn close(&self) {
        // Urgent events still being retried get a moment to go out first.
        self.tracker.close();
        if tokio::time::timeout(CLOSE_WAIT, self.tracker.wait()).await.is_err() {
            tracing::debug!("socket retries still pending at shutdown");
        }
        // Upgraded connections (WebSocket) live outside the HTTP server's
        // graceful shutdown: without this they would outlast it.
        self.io.close().await;
    }
}
