//! trawl: a crawl orchestration service. A URL goes in over HTTP, a tracked
//! tokio task crawls it in the background, anyone can watch or stop it, and
//! what was crawled is kept.
//!
//! # Layout
//! - `config`: one `Config`, assembled from the settings each module owns.
//! - `api`: axum routers, one file per resource (crawls, pages, events,
//!   search, health, metrics, openapi), and `edge`, what every connection and request
//!   meets first (header deadline, connection bound, the open mode's Origin
//!   and Host checks); `error`: the `ApiError` they answer with.
//! - `interfaces`: the ways in for tools people already run: `mcp`, an MCP
//!   server (rmcp) at `/mcp` and over stdio (`trawl mcp`); `firecrawl`,
//!   Firecrawl's `/v2` API.
//! - `realtime`: Socket.IO (socketioxide): rooms, handlers, auth middleware;
//!   `docs`, which writes `docs/events.md` and `docs/events.schema.json`
//!   from the event types.
//! - `auth`: API keys and tenants.
//! - `crawl`: the registry of live crawls, the orchestrator of one crawl, and
//!   its parts: frontier, scope, address guard, robots.txt, discovery (sitemaps,
//!   llms.txt), fetching (`fetch::http`; `fetch::browser`, the process's one
//!   Chromium; `fetch::proxy`, the guarded proxy that is Chromium's only way
//!   out; `fetch::detect`, which pages `auto` sends to it).
//! - `webhooks`: a crawl's events posted to its webhook, signed, kept in
//!   the store until delivered, in order, through the address guard.
//! - `content`: the shapes a page is made into (chunks, code examples) and
//!   the text embedded for each; a leaf under `process`, `embed` and `store`.
//! - `process`: CPU work on pages (main content, markdown, chunks, code
//!   examples), on one rayon pool.
//! - `embed`: the `Embedder` trait: local (a sentence-embedding model in
//!   process: its forward pass is the workspace crate `trawl-encoder`, its
//!   files fetched once by `embed::fetch`), lexical (hashed n-grams), openai
//!   (async-openai).
//! - `search`: text, vector and hybrid search over the store.
//! - `sources`: what a tenant keeps from one site (a source per start URL):
//!   naming, changes, deleting it whole, exporting it as a stream.
//! - `guard`: the address guard every outbound request goes through (crawl
//!   fetches, Chromium's proxy, webhooks): no private, loopback or link-local
//!   address unless the service allows them.
//! - `sync`: `LockExt::locked`, a lock that outlives a panic; `backoff`: the
//!   one retry policy (waits that grow, a budget, a stop that ends the wait).
//! - `urls`: URL normalisation, one spelling per page (a leaf: the crawl
//!   and page processing both use it).
//! - `store`: the `Store` trait; SQLite (embedded default) and PostgreSQL +
//!   pgvector (production, with its background vector indexer), which map
//!   their rows into the same types once (`store::rows`); the schema
//!   migrations embedded from `migrations/`.
//! - `progress`: `CrawlStatus`, the shape of a crawl's state on every surface,
//!   and the `Reporter` that numbers, throttles and fans out a crawl's events.
//! - `cluster`: several instances on one PostgreSQL database: the shared
//!   crawl queue, heartbeats and takeovers, stops sent to a crawl's instance.
//! - `watch`: following a crawl that runs on another instance (or waits in
//!   the queue) through its stored row, for SSE and Socket.IO subscribers.
//! - `web`: the dashboard at `/`, built from `web/` and embedded.
//! - `cli`: the `trawl` command (serve, crawl, refresh, sources, export, search,
//!   embed, migrate); `cli::args`, its flags and environment (clap).
//!
//! One root `CancellationToken` belongs to the `App`; each crawl holds a child
//! token and a `TaskTracker`, so a stop or a shutdown reaches every task.

pub mod api;
pub mod auth;
pub mod backoff;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod content;
pub mod crawl;
pub mod embed;
pub mod error;
pub mod guard;
pub mod interfaces;
pub mod process;
pub mod progress;
pub mod realtime;
pub mod search;
pub mod sources;
pub mod store;
pub mod sync;
pub mod urls;
pub mod watch;
pub mod web;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::crawl::Registry;
use crate::crawl::registry::RegistryError;
use crate::store::StoreError;

/// How long a shutdown may take in all: stop accepting, stop crawls, exit.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(4500);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Client(#[from] crawl::fetch::http::ClientBuildError),
    #[error(transparent)]
    Pool(#[from] process::PoolError),
    #[error(transparent)]
    Embed(#[from] embed::EmbedError),
    #[error("could not listen on {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("server error: {0}")]
    Serve(#[from] std::io::Error),
    #[error(transparent)]
    Realtime(#[from] realtime::RealtimeError),
    #[error(transparent)]
    Webhooks(#[from] webhooks::deliver::ClientError),
}

/// rustls needs one process-wide crypto provider; ring is ours. Installed
/// at the two entries, [`cli::run`] and [`App::build`], before anything
/// builds a TLS client, and by the model's download, which needs no app;
/// a second call changes nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// What every crawl of this process shares, built once: the HTTP client,
/// Chromium (started on first use), the rayon pool and the embedder, over
/// `store`. `root` is the service's token; `shared_queue` when instances
/// share a PostgreSQL queue.
pub fn engine(
    config: crawl::CrawlerConfig,
    store: store::DynStore,
    root: CancellationToken,
    shared_queue: bool,
    webhooks: webhooks::follow::Hooks,
) -> Result<crawl::Engine, AppError> {
    engine_sharing(config, store, root, shared_queue, webhooks, None)
}

/// [`engine`], with hosts' politeness shared with other instances.
pub fn engine_sharing(
    config: crawl::CrawlerConfig,
    store: store::DynStore,
    root: CancellationToken,
    shared_queue: bool,
    webhooks: webhooks::follow::Hooks,
    shared_hosts: Option<crawl::hosts::SharedHosts>,
) -> Result<crawl::Engine, AppError> {
    let hosts = crawl::hosts::Hosts::new(config.per_host_concurrency, shared_hosts);
    let fetcher = crawl::fetch::HttpFetcher::new(&config)?;
    let renderer =
        Arc::new(crawl::fetch::Renderer::new(config.browser.clone(), config.user_agent.clone(), fetcher.guard()));
    let pool = process::Pool::new(None)?;
    let embedder = embed::build(&config.embedding)?;
    Ok(crawl::Engine { config, fetcher, renderer, pool, store, embedder, root, shared_queue, webhooks, hosts })
}

/// The registry, Socket.IO (with adapter `A`) and the HTTP API, wired together.
fn assemble<A: socketioxide::adapter::Adapter + socketioxide_core::adapter::DefinedAdapter>(
    config: Config,
    store: store::DynStore,
    cluster: Option<Arc<cluster::Cluster>>,
    root: CancellationToken,
    (layer, io): (socketioxide::layer::SocketIoLayer<A>, socketioxide::SocketIo<A>),
    node_room: Option<String>,
    bound: std::net::SocketAddr,
) -> Result<(axum::Router, Arc<Registry>, A::InitRes), AppError> {
    let fanout = Arc::new(realtime::SocketFanout::new(io.clone(), root.clone(), node_room));
    let hooks = webhooks::follow::Hooks { settings: config.webhooks.clone(), wake: Default::default() };
    let shared_hosts = match &cluster {
        None => None,
        Some(c) => {
            // Longer than any request holds its host: a fetch, or a page in Chromium.
            let ttl = config.crawler.request_timeout.max(config.crawler.browser.page_timeout) + Duration::from_secs(15);
            match &config.cluster.redis_url {
                Some(url) => {
                    Some(crawl::hosts::SharedHosts::redis(url, ttl).map_err(realtime::RealtimeError::RedisUrl)?)
                }
                None => Some(crawl::hosts::SharedHosts::postgres(c.pool().clone(), ttl)),
            }
        }
    };
    let engine =
        engine_sharing(config.crawler, store.clone(), root.clone(), cluster.is_some(), hooks.clone(), shared_hosts)?;
    let sender = webhooks::deliver::Sender::new(store.clone(), engine.fetcher.guard(), hooks)?;
    let embedder = engine.embedder.clone();
    let registry = Registry::new(engine, fanout.clone(), cluster)?;
    registry.start_background();
    registry.track(sources::schedule::run(registry.clone(), config.schedule.clone(), root.clone()));
    registry.track(sender.run(root.clone()));
    let rt = realtime::Realtime {
        registry: Arc::downgrade(&registry),
        keys: config.api_keys.clone(),
        fanout: fanout.clone(),
    };
    let init = realtime::register(&io, rt);
    let connections = Arc::new(move || fanout.connections());
    let policy = Arc::new(api::edge::EdgePolicy::new(&config.edge, bound, !config.api_keys.enabled()));
    let state = api::AppState {
        registry: registry.clone(),
        store,
        embedder,
        keys: config.api_keys,
        operator: config.operator_key,
        connections,
        searches: Arc::new(search::Gate::new(config.search.clone())),
    };
    // The edge checks wrap Socket.IO too: its handshake is a request like any other.
    let router = api::router(state.clone())
        .merge(interfaces::mcp::router(state.clone(), root.clone()))
        .merge(interfaces::firecrawl::router(state, root.clone()))
        .merge(web::router())
        .layer(layer)
        .layer(axum::middleware::from_fn_with_state(policy, api::edge::check));
    Ok((router, registry, init))
}

/// The service, built and bound but not yet serving.
pub struct App {
    listener: TcpListener,
    router: axum::Router,
    registry: Arc<Registry>,
    root: CancellationToken,
    edge: api::edge::EdgeSettings,
    /// The SQLite file's claim, released when the service has stopped.
    _lock: Option<store::sqlite::ProcessLock>,
}

impl App {
    /// Opens the store (running migrations) and binds the listener. On
    /// PostgreSQL the instance joins the cluster, which resumes crawls a
    /// dead instance left behind; on SQLite such crawls are marked interrupted.
    pub async fn build(mut config: Config) -> Result<App, AppError> {
        install_crypto_provider();
        let dimensions = config.crawler.embedding.vector_dimensions();
        let mut process_lock = None;
        let (store, cluster): (store::DynStore, _) = if store::is_postgres(&config.database_url) {
            let pg = store::postgres::PgStore::connect(&config.database_url, dimensions).await?;
            let cluster = cluster::Cluster::join(pg.pool().clone(), config.cluster.clone()).await?;
            (Arc::new(pg.with_owner(cluster.id().to_string())), Some(cluster))
        } else {
            // Claimed before anything is marked: a second server on the same
            // file stops here, leaving the first one's crawls alone.
            let lock = store::sqlite::ProcessLock::acquire(&config.database_url)?;
            let store = store::connect(&config.database_url, dimensions).await?;
            process_lock = lock;
            let interrupted = store.mark_interrupted().await?;
            if interrupted > 0 {
                tracing::warn!(interrupted, "crawls left running by an earlier process were marked interrupted");
            }
            (store, None)
        };
        // After the store: a server that may not start fetches nothing.
        embed::prepare(&mut config.crawler.embedding).await;
        let root = CancellationToken::new();
        let listener =
            TcpListener::bind(config.bind).await.map_err(|source| AppError::Bind { addr: config.bind, source })?;
        let bound = listener.local_addr().map_err(|source| AppError::Bind { addr: config.bind, source })?;
        let edge = config.edge.clone();
        api::metrics::handle();
        let (router, registry) = match config.cluster.redis_url.clone() {
            Some(url) => {
                let (layer, io) = realtime::redis_layer(&url).await?;
                // Each instance's sockets also sit in a room of its own.
                let node = format!("instance:{}", uuid::Uuid::now_v7());
                let (router, registry, init) =
                    assemble(config, store, cluster, root.clone(), (layer, io), Some(node), bound)?;
                init.await.map_err(|e| realtime::RealtimeError::Join(Box::new(e)))?;
                tracing::info!("Socket.IO rooms span instances through Redis");
                (router, registry)
            }
            None => {
                let (layer, io) = realtime::layer();
                let (router, registry, ()) = assemble(config, store, cluster, root.clone(), (layer, io), None, bound)?;
                (router, registry)
            }
        };
        // The vector graph beside a SQLite file is kept by the process
        // holding the file's lock: another on the same file (`trawl mcp`,
        // the CLI) scans instead of saving a graph of its own over it.
        if process_lock.is_some() {
            registry.store().index_vectors_of(registry.engine().embedder.model());
        }
        Ok(App { listener, router, registry, root, edge, _lock: process_lock })
    }

    /// The port the listener is bound to.
    pub fn port(&self) -> std::io::Result<u16> {
        self.listener.local_addr().map(|a| a.port())
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// Cancelling this token shuts the service down gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.root.clone()
    }

    /// Serves until the shutdown token fires, then stops accepting and stops
    /// every crawl, all within one deadline `SHUTDOWN_GRACE` away; closing
    /// Chromium, the sockets and the cluster membership takes at most
    /// `CLEANUP_GRACE` after that.
    pub async fn run_until_stopped(self) -> Result<(), AppError> {
        let App { listener, router, registry, root, edge, _lock } = self;
        tracing::info!(addr = ?listener.local_addr().ok(), "trawl listening");
        let server = serve(listener, router, &edge, root.clone());
        // One deadline, set when the shutdown starts, for connections and crawls alike.
        let stopping = async {
            root.cancelled().await;
            tokio::time::Instant::now() + SHUTDOWN_GRACE
        };
        let stopping = futures::FutureExt::shared(Box::pin(stopping));
        let deadline = {
            let stopping = stopping.clone();
            async move { tokio::time::sleep_until(stopping.await).await }
        };
        // Open connections get the grace period to finish; crawls stop meanwhile.
        let (served, _) = tokio::join!(
            async {
                tokio::select! {
                    r = server => r,
                    _ = deadline => { tracing::warn!("connections still open at the end of the grace period"); Ok(()) }
                }
            },
            async { registry.shutdown(stopping.await).await }
        );
        tracing::info!("trawl stopped");
        served.map_err(AppError::Serve)
    }
}

/// Accepts connections until `stop` fires, then waits for the open ones to
/// finish. Unlike `axum::serve`, request headers must arrive within a
/// deadline (a slowloris client is cut off) and connections are bounded.
async fn serve(
    listener: TcpListener,
    router: axum::Router,
    edge: &api::edge::EdgeSettings,
    stop: CancellationToken,
) -> Result<(), std::io::Error> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(edge.header_read_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let connections = tokio_util::task::TaskTracker::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(edge.max_connections));
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!("trawl_connections_refused_total").increment(1);
            tracing::debug!("connection limit reached; closing a new connection");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let conn = graceful.watch(conn);
        connections.spawn(async move {
            if let Err(e) = conn.await {
                tracing::trace!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    connections.close();
    connections.wait().await;
    Ok(())
}
