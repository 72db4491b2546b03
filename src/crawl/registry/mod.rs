//! The registry of live crawls: starts them, stops them, answers their state.
//!
//! A crawl lives here from `start` until its terminal status is in the store;
//! after that it is served from the store. Every orchestrator runs on the
//! registry's tracker, so shutdown can wait for all of them.
//!
//! With a [`Cluster`] (PostgreSQL), `start` runs the crawl here when a slot
//! is free and else enqueues it: the registry's dispatcher claims crawls
//! from the shared queue while it has free slots,
//! its heartbeat keeps them, and stops of crawls running elsewhere go
//! through the database to their instance.

mod dispatch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::FutureExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::cluster::{Claimed, Cluster, StopRequest};
use crate::crawl::CrawlerConfig;
use crate::crawl::fetch::Renderer;
use crate::crawl::request::{CrawlRequest, RequestError};
use crate::crawl::run::{self, Crawl, Engine, Slot};
use crate::guard::ForbiddenAddress;
use crate::progress::{ActiveList, CrawlState, CrawlStatus, Fanout, Progress, Reporter};
use crate::store::{CrawlFilter, DynStore, NewCrawl, NewSource, StoreError};
use crate::sync::LockExt;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Invalid(#[from] RequestError),
    #[error(transparent)]
    Forbidden(#[from] ForbiddenAddress),
    #[error("the service is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request could not be written down to be resumed later.
    #[error("the crawl request could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("max crawls must be greater than 0 unless instances share a PostgreSQL queue")]
    NoSlots,
}

pub struct Registry {
    engine: Arc<Engine>,
    /// Every orchestrator task.
    tracker: TaskTracker,
    /// Bounds the crawls running at once; the rest wait `queued`.
    slots: Arc<Semaphore>,
    live: Mutex<HashMap<String, Arc<Crawl>>>,
    /// Where events go besides the Reporter's own subscribers (Socket.IO).
    fanout: Arc<dyn Fanout>,
    /// Reporters of recently ended crawls, so that a client reconnecting with
    /// `Last-Event-ID` still gets exactly what it missed.
    recent: Mutex<HashMap<String, (Instant, Arc<Reporter>)>>,
    /// Set when instances share a queue in PostgreSQL.
    cluster: Option<Arc<Cluster>>,
}

/// Event ids of one claim of a crawl start at `(attempt - 1) × this`, so a
/// crawl resumed elsewhere numbers its events above its first run's.
const EVENT_IDS_PER_ATTEMPT: u64 = 1_000_000_000;

/// How long closing Chromium, the sockets and the cluster membership may
/// take in all, after the crawls have ended.
pub const CLEANUP_GRACE: Duration = Duration::from_secs(3);

/// How long an ended crawl's events stay replayable, and how many crawls' worth.
const RECENT_FOR: Duration = Duration::from_secs(300);
const RECENT_MAX: usize = 1000;

impl Registry {
    /// The registry of the crawls `engine` runs. It starts nothing: the app
    /// starts its background work ([`Registry::start_background`]).
    pub fn new(
        engine: Engine,
        fanout: Arc<dyn Fanout>,
        cluster: Option<Arc<Cluster>>,
    ) -> Result<Arc<Self>, RegistryError> {
        if engine.config.max_crawls == 0 && cluster.is_none() {
            return Err(RegistryError::NoSlots);
        }
        Ok(Arc::new(Self {
            slots: Arc::new(Semaphore::new(engine.config.max_crawls)),
            engine: Arc::new(engine),
            tracker: TaskTracker::new(),
            live: Mutex::new(HashMap::new()),
            fanout,
            recent: Mutex::new(HashMap::new()),
            cluster,
        }))
    }

    /// The loops a serving instance runs besides its crawls, on the
    /// registry's tracker: the store's vector indexers, and with a shared
    /// queue the dispatcher, the heartbeat and the stop listener.
    pub fn start_background(self: &Arc<Self>) {
        let (store, root) = (&self.engine.store, &self.engine.root);
        if store.indexes_in_background() {
            // Graph inserts are CPU-bound in the database: more indexers
            // would take the cores the writes need.
            for _ in 0..crate::store::INDEXERS {
                self.tracker.spawn(crate::store::run_indexer(store.clone(), root.clone()));
            }
        }
        if let Some(cluster) = &self.cluster {
            self.tracker.spawn(self.clone().dispatch(cluster.clone()));
            self.tracker.spawn(self.clone().heartbeat(cluster.clone()));
            let weak = Arc::downgrade(self);
            let on_stop = move |id: String| {
                if let Some(r) = weak.upgrade() {
                    r.stop_here(&id);
                }
            };
            self.tracker.spawn(cluster.clone().listen(on_stop, root.clone()));
        }
    }

    /// Runs a background loop on the registry's tracker, so that shutdown
    /// waits for it; it must end when the root token is cancelled.
    pub fn track<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(task);
    }

    /// What every crawl of this process shares (the fetcher, the pool), for
    /// the interfaces that fetch a page without a crawl (`/v2/scrape`).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// This instance's cluster membership, when instances share a queue.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    /// Publishes the change of a crawl that runs nowhere (stopped before it
    /// started, or ended at its claim) to its subscribers, and keeps its
    /// events for late ones.
    fn announce(self: &Arc<Self>, before: CrawlStatus, after: CrawlStatus, tenant: Option<String>) {
        let id = before.progress_id.clone();
        let progress = Progress::new(before);
        let reporter = Reporter::new(id.clone(), tenant, progress.clone());
        self.spawn_reporter(reporter.clone(), tracing::Span::current());
        progress.update(|s| *s = after);
        self.remember(id, reporter);
    }

    /// Runs a crawl's event emitter; once the crawl has ended, records the
    /// id of its final event, which a status read from the store carries.
    fn spawn_reporter(self: &Arc<Self>, reporter: Arc<Reporter>, span: tracing::Span) {
        let (fanout, list, root) = (self.fanout.clone(), self.active_list(), self.engine.root.clone());
        let store = self.engine.store.clone();
        self.tracker.spawn(
            async move {
                let id = reporter.crawl_id.clone();
                if let Some(last) = reporter.run(fanout, list, root).await
                    && let Err(e) = store.set_last_event_id(&id, last).await
                {
                    tracing::warn!(error = %e, "could not record the crawl's last event id");
                }
            }
            .instrument(span),
        );
    }

    /// What a reporter lists in `crawls_update`.
    fn active_list(self: &Arc<Self>) -> ActiveList {
        let weak = Arc::downgrade(self);
        Arc::new(move |tenant: Option<String>| {
            let weak = weak.clone();
            async move {
                match weak.upgrade() {
                    Some(r) => r.active(tenant.as_deref()).await,
                    None => Vec::new(),
                }
            }
            .boxed()
        })
    }

    pub fn store(&self) -> &DynStore {
        &self.engine.store
    }

    /// Fired when the service shuts down; long-lived streams end with it.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.engine.root.clone()
    }

    /// The process's Chromium (started only when a crawl needs it).
    pub fn renderer(&self) -> &Arc<Renderer> {
        &self.engine.renderer
    }

    pub fn config(&self) -> &CrawlerConfig {
        &self.engine.config
    }

    fn live_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Crawl>>> {
        self.live.locked()
    }

    /// Crawls not yet terminal in this process.
    pub fn active_count(&self) -> usize {
        self.live_map().len()
    }

    fn visible(crawl_tenant: Option<&str>, tenant: Option<&str>) -> bool {
        tenant.is_none() || crawl_tenant == tenant
    }

    fn live_crawl(&self, id: &str, tenant: Option<&str>) -> Option<Arc<Crawl>> {
        self.live_map().get(id).filter(|c| Self::visible(c.tenant.as_deref(), tenant)).cloned()
    }

    /// Validates, records the crawl as `queued` and starts it in the background.
    pub async fn start(self: &Arc<Self>, req: CrawlRequest, tenant: Option<String>) -> Result<CrawlStatus, StartError> {
        self.begin(req, tenant, None).await
    }

    /// Starts a refresh of a source: a crawl with the source's settings
    /// that, when it completes, removes the pages the site no longer has.
    /// Refused while a crawl of the source has not ended.
    pub async fn refresh(
        self: &Arc<Self>,
        source: &crate::store::Source,
        tenant: Option<String>,
    ) -> Result<CrawlStatus, StartError> {
        let req: CrawlRequest = serde_json::from_value(source.settings.clone())
            .map_err(|e| RequestError::Invalid(format!("the source's stored settings no longer parse: {e}")))?;
        self.begin(req, tenant, Some(&source.id)).await
    }

    async fn begin(
        self: &Arc<Self>,
        req: CrawlRequest,
        tenant: Option<String>,
        refresh_of: Option<&str>,
    ) -> Result<CrawlStatus, StartError> {
        if self.engine.root.is_cancelled() {
            return Err(StartError::ShuttingDown);
        }
        let spec = req.validate(&self.engine.config)?;
        // A crawl the store cannot keep is refused now, not failed later.
        self.engine.store.can_write()?;
        self.engine.fetcher.guard().check_resolved(&spec.url).await?;
        if let Some(hook) = &spec.request.webhook {
            // A crawl service that posts to internal addresses is an SSRF.
            let url = hook.validate().map_err(crate::crawl::request::RequestError::Invalid)?;
            self.engine.fetcher.guard().check_resolved(&url).await?;
        }
        let id = uuid::Uuid::now_v7().to_string();
        let mut status = CrawlStatus::new_queued(id.clone(), spec.url.to_string(), Utc::now());
        status.refresh = refresh_of.is_some();
        status.source_id = refresh_of.map(str::to_string);
        let request_json = serde_json::to_string(&spec.request)?;
        let settings_json = serde_json::to_string(&spec.request.without_login())?;
        // With a shared queue, a crawl posted to an instance with a free
        // slot runs there at once, like a lone instance's; the others wait
        // in the queue for whichever instance frees a slot first. The
        // dispatcher waits on the slots fairly, so a free slot here means
        // nothing older is waiting to be claimed by it.
        let permit = match &self.cluster {
            Some(_) => self.slots.clone().try_acquire_owned().ok(),
            None => None,
        };
        let claimed = self.cluster.is_none() || permit.is_some();
        let source = NewSource::named_after(&spec.url, spec.request.tags.clone());
        let mut new = NewCrawl { status, tenant: tenant.clone(), request_json, settings_json, claimed, source };
        new.status.source_id = Some(self.engine.store.create_crawl(&new).await?);
        let status = new.status.clone();
        metrics::counter!("trawl_crawls_started_total").increment(1);
        if let Some(cluster) = &self.cluster {
            match permit {
                Some(permit) => {
                    let request = new.request_json;
                    self.launch(Claimed { status: status.clone(), tenant, request, attempts: 1, handoffs: 0 }, permit)
                        .await;
                }
                None => {
                    tracing::info!(progress_id = %id, url = %spec.url, crawl_type = ?spec.crawl_type, "crawl enqueued");
                    cluster.enqueued().await;
                }
            }
            return Ok(status);
        }
        let progress = Progress::new(status.clone());
        let reporter = Reporter::new(id.clone(), tenant.clone(), progress.clone());
        let crawl = Arc::new(Crawl::new(tenant, spec, self.engine.root.child_token(), progress, reporter, None));
        crawl
            .span
            .in_scope(|| tracing::info!(url = %crawl.spec.url, crawl_type = ?crawl.spec.crawl_type, "crawl queued"));
        self.spawn_crawl(crawl, Slot::Wait(self.slots.clone()));
        Ok(status)
    }

    /// Runs a crawl and its reporter on the registry's tracker; the crawl
    /// is live here until its terminal status is stored.
    fn spawn_crawl(self: &Arc<Self>, crawl: Arc<Crawl>, slot: Slot) {
        let id = crawl.reporter.crawl_id.clone();
        self.live_map().insert(id.clone(), crawl.clone());
        self.spawn_reporter(crawl.reporter.clone(), crawl.span.clone());
        // Fired once the run has ended and its terminal status is stored.
        let ended = CancellationToken::new();
        if let Some(spec) = crawl.spec.request.webhook.clone() {
            let hook = crate::webhooks::follow::Hook { crawl_id: id.clone(), tenant: crawl.tenant.clone(), spec };
            let follow = crate::webhooks::follow::follow(
                self.engine.store.clone(),
                hook,
                self.engine.webhooks.clone(),
                self.engine.root.clone(),
                ended.clone(),
            );
            self.tracker.spawn(follow.instrument(crawl.span.clone()));
        }
        let (engine, registry) = (self.engine.clone(), Arc::downgrade(self));
        let span = crawl.span.clone();
        self.tracker.spawn(
            async move {
                let (fin, mut saved) = run::run(engine.clone(), crawl, slot).await;
                if !saved && fin.status.is_terminal() {
                    saved = run::store_terminal_later(&engine, &fin).await;
                }
                ended.cancel();
                // Served from the store from now on; kept in memory only if
                // the store could not take the terminal status.
                let ended = registry.upgrade().filter(|_| saved).and_then(|r| {
                    let crawl = r.live_map().remove(&id);
                    crawl.map(|c| (r, c))
                });
                if let Some((r, c)) = ended {
                    r.remember(id, c.reporter.clone());
                }
            }
            .instrument(span),
        );
    }

    /// The crawl's current state: live from memory, else from the store.
    pub async fn status(&self, id: &str, tenant: Option<&str>) -> Result<Option<CrawlStatus>, StoreError> {
        if let Some(c) = self.live_crawl(id, tenant) {
            return Ok(Some(c.progress.snapshot()));
        }
        self.stored(id, tenant).await
    }

    async fn stored(&self, id: &str, tenant: Option<&str>) -> Result<Option<CrawlStatus>, StoreError> {
        if tenant.is_some() {
            match self.engine.store.crawl_tenant(id).await? {
                Some(t) if Self::visible(t.as_deref(), tenant) => {}
                _ => return Ok(None),
            }
        }
        self.engine.store.get_crawl(id).await
    }

    fn remember(&self, id: String, reporter: Arc<Reporter>) {
        let mut recent = self.recent.locked();
        let now = Instant::now();
        recent.retain(|_, (at, _)| now.duration_since(*at) < RECENT_FOR);
        if recent.len() >= RECENT_MAX
            && let Some(oldest) = recent.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| k.clone())
        {
            recent.remove(&oldest);
        }
        recent.insert(id, (now, reporter));
    }

    /// The events of a live or recently ended crawl the tenant may see.
    pub fn reporter(&self, id: &str, tenant: Option<&str>) -> Option<Arc<Reporter>> {
        if let Some(c) = self.live_crawl(id, tenant) {
            return Some(c.reporter.clone());
        }
        let recent = self.recent.locked();
        recent
            .get(id)
            .filter(|(at, r)| at.elapsed() < RECENT_FOR && Self::visible(r.tenant.as_deref(), tenant))
            .map(|(_, r)| r.clone())
    }

    /// The unfinished crawls of a tenant (all of them without tenants),
    /// newest first: this instance's live ones, and with a cluster those
    /// queued or running anywhere.
    pub async fn active(&self, tenant: Option<&str>) -> Vec<CrawlStatus> {
        let mut v: Vec<CrawlStatus> = match &self.cluster {
            Some(cluster) => cluster.unfinished(tenant).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "could not list the cluster's crawls; listing this instance's");
                Vec::new()
            }),
            None => Vec::new(),
        };
        let live = self.live_map();
        v.retain(|s| !live.contains_key(&s.progress_id));
        v.extend(live.values().filter(|c| c.tenant.as_deref() == tenant).map(|c| c.progress.snapshot()));
        drop(live);
        v.sort_by(|a, b| b.progress_id.cmp(&a.progress_id));
        v
    }

    /// The live progress handle, for watching a crawl in process (CLI).
    pub fn progress(&self, id: &str) -> Option<Progress> {
        self.live_map().get(id).map(|c| c.progress.clone())
    }

    /// Asks a crawl to stop. Idempotent: answers `stopping` while it winds
    /// down and the terminal status once it has; `None` for an unknown id.
    /// With a cluster, a crawl running on another instance is stopped
    /// there, and one nobody has claimed yet is cancelled at once.
    pub async fn stop(self: &Arc<Self>, id: &str, tenant: Option<&str>) -> Result<Option<CrawlStatus>, StoreError> {
        if let Some(c) = self.live_crawl(id, tenant) {
            return Ok(Some(Self::stop_crawl(&c)));
        }
        let Some(cluster) = &self.cluster else {
            return self.stored(id, tenant).await;
        };
        // Only a tenant's stop needs a look at whose crawl it is first.
        if tenant.is_some() && self.stored(id, tenant).await?.is_none() {
            return Ok(None);
        }
        match cluster.request_stop(id).await? {
            StopRequest::Cancelled { before, after } => {
                tracing::info!(progress_id = %id, "stopped before any instance started it");
                // Visible to `tenant`, so it is `tenant`'s crawl (or nobody's).
                let tenant = tenant.map(str::to_string);
                self.announce(*before, (*after).clone(), tenant);
                Ok(Some(*after))
            }
            StopRequest::Forwarded(s) | StopRequest::Ended(s) => Ok(Some(s)),
            StopRequest::NotFound => Ok(None),
        }
    }

    /// Stops a crawl if it runs in this process (a stop asked on another instance).
    fn stop_here(&self, id: &str) {
        if let Some(c) = self.live_map().get(id).cloned() {
            Self::stop_crawl(&c);
        }
    }

    fn stop_crawl(c: &Crawl) -> CrawlStatus {
        let changed = c.progress.update(|s| {
            if s.status != CrawlState::Stopping {
                s.status = CrawlState::Stopping;
                s.message = Some("stop requested".into());
            }
        });
        if changed {
            c.span.in_scope(|| tracing::info!("stop requested"));
        }
        c.token.cancel();
        c.progress.snapshot()
    }

    pub async fn list(&self, filter: CrawlFilter) -> Result<Vec<CrawlStatus>, StoreError> {
        let mut rows = self.engine.store.list_crawls(&filter).await?;
        // Live crawls show their in-memory state, which is newer than the row.
        let live = self.live_map();
        for row in rows.iter_mut() {
            if let Some(c) = live.get(&row.progress_id) {
                *row = c.progress.snapshot();
            }
        }
        Ok(rows)
    }

    /// Stops every crawl (it fires the root token itself) and waits for
    /// them until `deadline`; then closes Chromium, the sockets and the
    /// cluster membership, all together within [`CLEANUP_GRACE`], naming any
    /// step that overran. Returns whether every crawl ended in time.
    pub async fn shutdown(&self, deadline: tokio::time::Instant) -> bool {
        self.engine.root.cancel();
        self.tracker.close();
        let ended = tokio::time::timeout_at(deadline, self.tracker.wait()).await.is_ok();
        if !ended {
            let running: Vec<String> = self.live.locked().keys().cloned().collect();
            tracing::warn!(?running, "crawls still running at the end of the shutdown grace period");
        }
        let cleanup = tokio::time::Instant::now() + CLEANUP_GRACE;
        let step = |name: &'static str, done: bool| {
            if !done {
                tracing::warn!(step = name, "shutdown step cut short at the cleanup deadline");
            }
        };
        // After the crawls, whose pages it renders: no Chromium outlives the
        // service (and Chromium dies with this process if this is cut short).
        step("chromium", tokio::time::timeout_at(cleanup, self.engine.renderer.shutdown()).await.is_ok());
        // After the crawls' last events: sockets learn that this server is going.
        step("sockets", tokio::time::timeout_at(cleanup, self.fanout.close()).await.is_ok());
        // Crawls still running now may be taken over at once.
        if let Some(cluster) = &self.cluster {
            step("cluster", tokio::time::timeout_at(cleanup, cluster.leave()).await.is_ok());
        }
        ended
    }
}
