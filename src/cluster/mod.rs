//! Several instances on one PostgreSQL database.
//!
//! Crawls are a queue in the `crawls` table. `POST /api/crawls` on an
//! instance with a free slot inserts the row already owned by it and runs
//! the crawl; otherwise it inserts a `queued` row and notifies `trawl_queue`.
//! Every instance
//! runs a dispatcher (in the registry) that, while it has a free slot
//! (`TRAWL_MAX_CRAWLS`), claims the oldest claimable crawl with
//! `FOR UPDATE SKIP LOCKED`: each crawl is claimed by exactly one instance,
//! which becomes its `owner`. Dispatchers wake on the notification and poll
//! as a fallback, since a notification sent while a listener reconnects is
//! lost.
//!
//! Each instance beats in `trawl_instances`. A crawl whose owner has not
//! beaten within the TTL is claimable again, and the instance that claims it
//! resumes it from its stored pages; the store refuses the old owner's
//! writes from then on. Stops travel through the row (`stopping`, which the
//! owner's status writes cannot undo) and a `trawl_stop` notification, which
//! the owner's listener turns into a local stop at once.

pub mod settings;

pub use settings::ClusterConfig;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::backoff::{Backoff, Wait};
use crate::progress::{CrawlState, CrawlStatus};
use crate::store::StoreError;
pub use crate::store::postgres::queue::Claimed;
use crate::store::postgres::queue::{self, QUEUE_CHANNEL, STOP_CHANNEL};
use crate::sync::LockExt;

/// How the listener reconnects after it lost its connection.
const LISTEN_RETRY: Backoff = Backoff::exponential(Duration::from_secs(1), Duration::from_secs(30));

/// This instance's membership of the cluster.
pub struct Cluster {
    pool: PgPool,
    id: String,
    config: ClusterConfig,
    /// Wakes the dispatcher: a crawl was enqueued (here or, through the
    /// listener, anywhere).
    wake: Notify,
    /// Since when heartbeats have succeeded without a break. An instance
    /// takes crawls over only after a whole TTL of them: after a database
    /// outage every heartbeat is stale, and the instances must first show
    /// each other they are alive.
    healthy_since: Mutex<Option<Instant>>,
}

/// What a stop asked through the database did.
#[derive(Debug)]
pub enum StopRequest {
    /// The crawl had not started anywhere: it is cancelled now.
    Cancelled {
        before: Box<CrawlStatus>,
        after: Box<CrawlStatus>,
    },
    /// The crawl runs on an instance, which was told to stop it.
    Forwarded(CrawlStatus),
    /// The crawl had ended already.
    Ended(CrawlStatus),
    NotFound,
}

/// What a heartbeat learnt about the crawls this instance runs.
#[derive(Debug, Default)]
pub struct Beat {
    /// Crawls whose stop was asked through the database.
    pub stopping: Vec<String>,
    /// Crawls another instance has taken over (this one missed its beats).
    pub lost: Vec<String>,
}

impl Cluster {
    /// Registers this instance (a name plus a unique suffix per process).
    /// The database the instances share.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn join(pool: PgPool, config: ClusterConfig) -> Result<Arc<Self>, StoreError> {
        let suffix = uuid::Uuid::now_v7().simple().to_string();
        let id = format!("{}-{}", config.instance_name, &suffix[suffix.len() - 8..]);
        // Rows of instances gone for a day only clutter the table.
        queue::forget_old_instances(&pool).await?;
        let cluster = Arc::new(Self { pool, id, config, wake: Notify::new(), healthy_since: Mutex::new(None) });
        cluster.beat(&[]).await?;
        tracing::info!(instance = %cluster.id, "joined the cluster");
        Ok(cluster)
    }

    /// This instance's id, as the `owner` column holds it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Heartbeats come five times per TTL.
    pub fn heartbeat_every(&self) -> Duration {
        self.config.instance_ttl / 5
    }

    /// How often an idle dispatcher looks at the queue without being woken:
    /// the fallback for lost notifications, and how takeovers are found.
    pub fn poll_every(&self) -> Duration {
        self.config.instance_ttl / 4
    }

    pub fn max_attempts(&self) -> u32 {
        self.config.max_attempts
    }

    /// Resolves when the dispatcher should look at the queue again.
    pub async fn woken(&self) {
        self.wake.notified().await
    }

    /// Tells every instance's dispatcher (this one's at once) that a crawl waits.
    pub async fn enqueued(&self) {
        self.wake.notify_one();
        if let Err(e) = queue::notify(&self.pool, QUEUE_CHANNEL, "").await {
            // The others' polling finds it a little later.
            tracing::warn!(error = %e, "could not notify the other instances of a new crawl");
        }
    }

    fn takeovers_allowed(&self) -> bool {
        let since = self.healthy_since.locked();
        since.is_some_and(|t| t.elapsed() >= self.config.instance_ttl)
    }

    /// Claims the oldest crawl waiting in the queue, or one whose owner
    /// stopped beating; `None` when there is none.
    pub async fn claim(&self) -> Result<Option<Claimed>, StoreError> {
        queue::claim(&self.pool, &self.id, self.config.instance_ttl, self.takeovers_allowed()).await
    }

    /// Beats, and reads the state of the crawls this instance runs.
    pub async fn beat(&self, live: &[String]) -> Result<Beat, StoreError> {
        let beat = queue::beat(&self.pool, &self.id, live).await.map(|rows| {
            let mut beat = Beat::default();
            for r in rows {
                if r.owner.as_deref().is_some_and(|o| o != self.id) {
                    beat.lost.push(r.id);
                } else if r.status == "stopping" {
                    beat.stopping.push(r.id);
                }
            }
            beat
        });
        let mut since = self.healthy_since.locked();
        match &beat {
            Ok(_) => {
                since.get_or_insert_with(Instant::now);
            }
            Err(_) => *since = None,
        }
        beat
    }

    /// Stops a crawl this instance does not run: cancels it outright while
    /// nobody has claimed it, else tells its owner and marks it `stopping`.
    /// The notification goes first and on its own: the row may be locked a
    /// while by the owner's page writes, and the owner need not wait for
    /// that to hear of the stop.
    pub async fn request_stop(&self, id: &str) -> Result<StopRequest, StoreError> {
        let Some(before) = queue::status(&self.pool, id).await? else {
            return Ok(StopRequest::NotFound);
        };
        if before.status.is_terminal() {
            return Ok(StopRequest::Ended(before));
        }
        // Not claimed yet: cancelled here. Claimed meanwhile: its owner stops it.
        if before.status == CrawlState::Queued
            && let Some(after) = queue::cancel_unclaimed(&self.pool, id).await?
        {
            return Ok(StopRequest::Cancelled { before: Box::new(before), after: Box::new(after) });
        }
        queue::notify(&self.pool, STOP_CHANNEL, id).await?;
        // Durable: an owner that missed the notification (or dies and is
        // taken over) finds the stop in the row.
        let after = queue::mark_stopping(&self.pool, id).await?;
        Ok(if after.status.is_terminal() { StopRequest::Ended(after) } else { StopRequest::Forwarded(after) })
    }

    /// Crawls not yet ended on any instance, of one tenant (or of nobody's), newest first.
    pub async fn unfinished(&self, tenant: Option<&str>) -> Result<Vec<CrawlStatus>, StoreError> {
        queue::unfinished(&self.pool, tenant).await
    }

    /// Leaves at shutdown, once this instance's crawls have ended.
    pub async fn leave(&self) {
        if let Err(e) = queue::leave(&self.pool, &self.id).await {
            tracing::warn!(error = %e, "could not leave the cluster; the row ages out");
        }
    }

    /// Listens for new crawls (waking the dispatcher) and for stops of
    /// crawls (`on_stop` with the crawl's id) until `root` fires. A
    /// reconnect wakes the dispatcher, since notifications may have been
    /// lost meanwhile; stops are found by the heartbeat then.
    pub async fn listen(self: Arc<Self>, on_stop: impl Fn(String), root: CancellationToken) {
        let mut tries = LISTEN_RETRY.start();
        loop {
            let mut listener = match PgListener::connect_with(&self.pool).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster listener: could not connect; retrying");
                    if tries.wait(&root).await != Wait::Again {
                        return;
                    }
                    continue;
                }
            };
            if let Err(e) = listener.listen_all([QUEUE_CHANNEL, STOP_CHANNEL]).await {
                tracing::warn!(error = %e, "cluster listener: LISTEN failed; retrying");
                if tries.wait(&root).await != Wait::Again {
                    return;
                }
                continue;
            }
            self.wake.notify_one();
            tries.reset();
            loop {
                let next = tokio::select! {
                    _ = root.cancelled() => return,
                    n = listener.try_recv() => n,
                };
                match next {
                    Ok(Some(n)) if n.channel() == STOP_CHANNEL => on_stop(n.payload().to_string()),
                    Ok(Some(_)) => self.wake.notify_one(),
                    Ok(None) => {
                        tracing::debug!("cluster listener reconnected");
                        self.wake.notify_one();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cluster listener failed; reconnecting");
                        break;
                    }
                }
            }
            if tries.wait(&root).await != Wait::Again {
                return;
            }
        }
    }
}
