//! The registry of live crawls: starts them, stops them, answers their state.
//!
//! A crawl lives here from `start` until its terminal status is in the store;
//! after that it is served from the store. Every orchestrator runs on the
//! registry's tracker, so shutdown can wait for all of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::CrawlerConfig;
use crate::crawl::fetch::http::ClientBuildError;
use crate::crawl::fetch::{HttpFetcher, Renderer};
use crate::crawl::guard::ForbiddenAddress;
use crate::crawl::orchestrator::{self, Crawl, Engine};
use crate::crawl::request::{CrawlRequest, RequestError};
use crate::process::{Pool, PoolError};
use crate::progress::{ActiveList, CrawlState, CrawlStatus, Fanout, Progress, Reporter};
use crate::store::{CrawlFilter, DynStore, NewCrawl, StoreError};

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
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Client(#[from] ClientBuildError),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error(transparent)]
    Embed(#[from] crate::embed::EmbedError),
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
}

/// How long an ended crawl's events stay replayable, and how many crawls' worth.
const RECENT_FOR: Duration = Duration::from_secs(300);
const RECENT_MAX: usize = 1000;

impl Registry {
    pub fn new(
        config: CrawlerConfig,
        store: DynStore,
        root: CancellationToken,
        fanout: Arc<dyn Fanout>,
    ) -> Result<Arc<Self>, RegistryError> {
        let fetcher = HttpFetcher::new(&config)?;
        let renderer = Arc::new(Renderer::new(config.browser.clone(), config.user_agent.clone(), fetcher.guard()));
        let pool = Pool::new(None)?;
        let embedder = crate::embed::build(&config.embedding)?;
        let slots = Arc::new(Semaphore::new(config.max_crawls));
        let tracker = TaskTracker::new();
        if store.indexes_in_background() {
            // Graph inserts are CPU-bound in the database: more indexers
            // would take the cores the writes need.
            for _ in 0..crate::store::INDEXERS {
                tracker.spawn(crate::store::run_indexer(store.clone(), root.clone()));
            }
        }
        Ok(Arc::new(Self {
            engine: Arc::new(Engine { config, fetcher, renderer, pool, store, embedder, root }),
            tracker,
            slots,
            live: Mutex::new(HashMap::new()),
            fanout,
            recent: Mutex::new(HashMap::new()),
        }))
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

    pub fn embedder(&self) -> &crate::embed::DynEmbedder {
        &self.engine.embedder
    }

    pub fn config(&self) -> &CrawlerConfig {
        &self.engine.config
    }

    fn live_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Crawl>>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
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
        if self.engine.root.is_cancelled() {
            return Err(StartError::ShuttingDown);
        }
        let spec = req.validate(&self.engine.config)?;
        self.engine.fetcher.guard().check_resolved(&spec.url).await?;
        let id = uuid::Uuid::now_v7().to_string();
        let status = CrawlStatus::new_queued(id.clone(), spec.url.to_string(), Utc::now());
        let request_json = serde_json::to_string(&spec.request).unwrap_or_else(|_| "{}".into());
        self.engine
            .store
            .create_crawl(&NewCrawl { status: status.clone(), tenant: tenant.clone(), request_json })
            .await?;
        let progress = Progress::new(status.clone());
        let reporter = Reporter::new(id.clone(), tenant.clone(), progress.clone());
        let crawl = Arc::new(Crawl::new(tenant, spec, self.engine.root.child_token(), progress, reporter.clone()));
        self.live_map().insert(id.clone(), crawl.clone());
        let weak = Arc::downgrade(self);
        let list: ActiveList = Arc::new(move |tenant| weak.upgrade().map(|r| r.active(tenant)).unwrap_or_default());
        self.tracker
            .spawn(reporter.run(self.fanout.clone(), list, self.engine.root.clone()).instrument(crawl.span.clone()));
        let (engine, slots, registry) = (self.engine.clone(), self.slots.clone(), Arc::downgrade(self));
        let span = crawl.span.clone();
        span.in_scope(|| tracing::info!(url = %crawl.spec.url, crawl_type = ?crawl.spec.crawl_type, "crawl queued"));
        metrics::counter!("trawl_crawls_started_total").increment(1);
        self.tracker.spawn(
            async move {
                let (_, saved) = orchestrator::run(engine, crawl, slots).await;
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
        Ok(status)
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
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
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
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent
            .get(id)
            .filter(|(at, r)| at.elapsed() < RECENT_FOR && Self::visible(r.tenant.as_deref(), tenant))
            .map(|(_, r)| r.clone())
    }

    /// The live crawls of a tenant (all of them without tenants), newest first.
    pub fn active(&self, tenant: Option<&str>) -> Vec<CrawlStatus> {
        let mut v: Vec<CrawlStatus> =
            self.live_map().values().filter(|c| c.tenant.as_deref() == tenant).map(|c| c.progress.snapshot()).collect();
        v.sort_by(|a, b| b.progress_id.cmp(&a.progress_id));
        v
    }

    /// The live progress handle, for watching a crawl in process (CLI).
    pub fn progress(&self, id: &str) -> Option<Progress> {
        self.live_map().get(id).map(|c| c.progress.clone())
    }

    /// Asks a crawl to stop. Idempotent: answers `stopping` while it winds
    /// down and the terminal status once it has; `None` for an unknown id.
    pub async fn stop(&self, id: &str, tenant: Option<&str>) -> Result<Option<CrawlStatus>, StoreError> {
        if let Some(c) = self.live_crawl(id, tenant) {
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
            return Ok(Some(c.progress.snapshot()));
        }
        self.stored(id, tenant).await
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

    /// Stops every crawl (the root token is fired by the caller) and waits
    /// for them up to `grace`. Returns whether all ended in time.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.engine.root.cancel();
        self.tracker.close();
        let ended = tokio::time::timeout(grace, self.tracker.wait()).await.is_ok();
        if !ended {
            tracing::warn!(
                remaining = self.active_count(),
                "crawls still running at the end of the shutdown grace period"
            );
        }
        // After the crawls, whose pages it renders: no Chromium outlives the service.
        self.engine.renderer.shutdown().await;
        ended
    }
}
