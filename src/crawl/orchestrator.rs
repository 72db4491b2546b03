//! One crawl, start to end: discovery, a level-by-level breadth-first walk,
//! page tasks, and the writer that stores their outcomes.
//!
//! Levels are crawled one at a time and the next level is admitted in page
//! order, so depth is the true hop count and the pages a budget admits do not
//! depend on which fetch finished first: counts are exact and repeatable.
//!
//! Every task of a crawl is spawned on the crawl's `TaskTracker` and races the
//! crawl's token, so a stop drops in-flight requests at once. The orchestrator
//! waits for the tracker before it writes the terminal status; nothing is
//! stored after that.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use sha2::Digest;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use url::Url;

use crate::crawl::CrawlerConfig;
use crate::crawl::discover::{self, Sitemap};
use crate::crawl::fetch::{Fetched, HttpFetcher, Rendered, Renderer, Validators, http::decode};
use crate::crawl::hosts::Hosts;
use crate::crawl::request::{CrawlSpec, CrawlType, Render};
use crate::crawl::robots::Robots;
use crate::crawl::scope::Scope;
use crate::process::{self, Pool};
use crate::progress::{CrawlState, CrawlStatus, Limit, Outlook, PageCounts, Progress, Reporter, Stage};
use crate::store::{Change, DynStore, Kept, PageRecord, PageStatus, PriorPage, StoredOutcome};
use crate::sync::LockExt;
use crate::urls;

/// Page outcomes buffered between page tasks and the writer.
const PAGE_CHANNEL: usize = 512;
/// Pages per store transaction.
const WRITE_BATCH: usize = 64;
/// How often the writer flushes and persists the status while a crawl runs.
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// The status row is written at least this often while a crawl runs, even
/// when nothing changed: readers (and other instances) see it is alive.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a store write is retried (with backoff) before the crawl fails:
/// long enough to ride out a database restart or failover.
const STORE_RETRY_FOR: Duration = Duration::from_secs(30);
/// Sitemap documents read per crawl, at most (indexes of indexes).
const MAX_SITEMAP_DOCS: usize = 1000;

/// What every crawl of a process shares.
pub(crate) struct Engine {
    pub config: CrawlerConfig,
    pub fetcher: HttpFetcher,
    /// The process's Chromium, started on the first page that needs it.
    pub renderer: Arc<Renderer>,
    pub pool: Pool,
    pub store: DynStore,
    pub embedder: crate::embed::DynEmbedder,
    /// The service's root token: fired at shutdown.
    pub root: CancellationToken,
    /// Crawls come from a queue other instances share: at shutdown they go
    /// back to it instead of ending cancelled.
    pub shared_queue: bool,
}

/// One crawl's identity, live state and task bookkeeping.
pub(crate) struct Crawl {
    pub tenant: Option<String>,
    pub spec: CrawlSpec,
    /// A child of the root token; fired by a stop or by shutdown.
    pub token: CancellationToken,
    /// Every task of this crawl; waited for before the terminal status.
    /// Browser pages abandoned by a stop are closed by tasks on it.
    pub tracker: TaskTracker,
    /// Bounds this crawl's open browser pages (`browserConcurrency`).
    browser_slots: Semaphore,
    pub progress: Progress,
    /// Numbers and fans out this crawl's events.
    pub reporter: Arc<Reporter>,
    pub span: tracing::Span,
    /// What the walk knows of the work ahead; the writer turns it into
    /// the percentage.
    outlook: Mutex<Outlook>,
    /// The budget that cut the walk short, if one did.
    limit: Mutex<Option<Limit>>,
    /// Pages kept so far, by canonical URL and by content: a later page
    /// with either is recorded as a duplicate of the first.
    kept: Mutex<HashMap<u64, String>>,
    hasher: std::hash::RandomState,
    /// Set when the crawl cannot go on (the store refused writes for good).
    fatal: Mutex<Option<String>>,
    /// The first page error, to explain a crawl in which nothing succeeded.
    first_error: Mutex<Option<String>>,
    /// What an earlier run of this crawl (on an instance that died) stored.
    resume: Option<Resume>,
    /// The pages the crawl's source keeps, by URL, loaded as the crawl
    /// starts: each page crawled is compared with its earlier copy.
    prior: std::sync::OnceLock<HashMap<String, PriorPage>>,
}

/// A crawl taken over from a dead instance goes on from what it stored:
/// the walk is replayed over the stored pages (their links included), and
/// only the pages not stored yet are fetched.
pub(crate) struct Resume {
    pages: HashMap<String, StoredOutcome>,
    counts: PageCounts,
}

impl Resume {
    pub fn new(outcomes: Vec<StoredOutcome>, status: &CrawlStatus) -> Self {
        let counts = PageCounts {
            crawled: status.pages_crawled,
            failed: status.pages_failed,
            skipped: status.pages_skipped,
            chunks: status.chunks_stored,
            code_examples: status.code_examples,
            unembedded: status.chunks_unembedded,
            new: status.pages_new,
            changed: status.pages_changed,
            unchanged: status.pages_unchanged,
            embedded: status.chunks_embedded,
        };
        Self { pages: outcomes.into_iter().map(|o| (o.url.clone(), o)).collect(), counts }
    }

    /// What the walk needs of a stored page.
    fn result(&self, url: &Url) -> Option<PageResult> {
        let o = self.pages.get(url.as_str())?;
        if o.status != PageStatus::Crawled {
            return Some(PageResult::default());
        }
        let final_url = o.final_url.as_deref().and_then(|u| Url::parse(u).ok()).unwrap_or_else(|| url.clone());
        let links = o.links.iter().filter_map(|l| Url::parse(l).ok()).collect();
        Some(PageResult { final_url: Some(final_url), links })
    }
}

/// Where a crawl's slot among the process's running crawls comes from.
pub(crate) enum Slot {
    /// Wait for one (the crawl shows `queued` meanwhile).
    Wait(Arc<Semaphore>),
    /// Taken before the crawl was claimed from the shared queue.
    Held(OwnedSemaphorePermit),
}

impl Crawl {
    pub fn new(
        tenant: Option<String>,
        spec: CrawlSpec,
        token: CancellationToken,
        progress: Progress,
        reporter: Arc<Reporter>,
        resume: Option<Resume>,
    ) -> Self {
        let span = tracing::info_span!("crawl", progress_id = %reporter.crawl_id);
        let browser_slots = Semaphore::new(spec.browser_concurrency.max(1));
        Self {
            browser_slots,
            tenant,
            spec,
            token,
            tracker: TaskTracker::new(),
            progress,
            reporter,
            span,
            outlook: Mutex::new(Outlook::default()),
            limit: Mutex::new(None),
            kept: Mutex::new(HashMap::new()),
            hasher: Default::default(),
            fatal: Mutex::new(None),
            first_error: Mutex::new(None),
            resume,
            prior: std::sync::OnceLock::new(),
        }
    }

    /// The source's copy of a page, if it keeps one.
    fn prior(&self, url: &str) -> Option<&PriorPage> {
        self.prior.get().and_then(|p| p.get(url))
    }

    /// Another instance has taken this crawl over: it ends here silently,
    /// and the store refuses whatever it would still write.
    pub fn lose(&self) {
        tracing::warn!("another instance took this crawl over; ending it here");
        self.reporter.mute();
        self.token.cancel();
    }

    fn fail(&self, reason: String) {
        tracing::error!(%reason, "crawl cannot go on");
        let mut f = self.fatal.locked();
        f.get_or_insert(reason);
        self.token.cancel();
    }

    fn outlook(&self) -> Outlook {
        *self.outlook.locked()
    }

    fn set_outlook(&self, o: Outlook) {
        *self.outlook.locked() = o;
    }

    /// The page kept earlier that this one repeats (the same canonical
    /// URL, or the same content: `content_hash` is [`Crawl::hasher`]'s hash
    /// of its markdown); `None` keeps this one, under both keys.
    fn duplicate_of(&self, url: &str, canonical: Option<&Url>, content_hash: u64) -> Option<String> {
        use std::hash::BuildHasher;
        let by_url = self.hasher.hash_one(("url", canonical.map(Url::as_str).unwrap_or(url)));
        let by_content = self.hasher.hash_one(("content", content_hash));
        let mut kept = self.kept.locked();
        if let Some(first) = kept.get(&by_url).or_else(|| kept.get(&by_content)) {
            return Some(first.clone());
        }
        kept.insert(by_url, url.to_string());
        kept.insert(by_content, url.to_string());
        None
    }

    fn limit(&self) -> Option<Limit> {
        *self.limit.locked()
    }

    fn stage(&self, stage: Stage, message: impl Into<String>) {
        let message = message.into();
        self.progress.update(|s| {
            s.stage = stage;
            s.message = Some(message);
        });
    }
}

enum Outcome {
    Finished,
    Stopped,
    Failed(String),
}

/// Runs a crawl to its terminal status. Returns that status and whether it
/// reached the store.
pub(crate) async fn run(engine: Arc<Engine>, crawl: Arc<Crawl>, slot: Slot) -> (CrawlStatus, bool) {
    let slot = match slot {
        Slot::Held(p) => Some(p),
        Slot::Wait(slots) => tokio::select! {
            biased;
            _ = crawl.token.cancelled() => None,
            p = slots.acquire_owned() => p.ok(),
        },
    };
    let outcome = match slot {
        None => Outcome::Stopped,
        Some(_slot) => {
            crawl.progress.update(|s| {
                s.status = CrawlState::Running;
                s.started_at.get_or_insert_with(Utc::now);
                s.message = Some(if crawl.resume.is_some() { "resumed".into() } else { "started".into() });
            });
            if let Err(e) = engine.store.save_status(&crawl.progress.snapshot()).await {
                tracing::warn!(error = %e, "could not persist the running status");
            }
            load_prior(&engine, &crawl).await;
            let (tx, rx) = mpsc::channel(PAGE_CHANNEL);
            crawl.tracker.spawn(writer(engine.clone(), crawl.clone(), rx).instrument(crawl.span.clone()));
            let outcome = tokio::select! {
                biased;
                _ = crawl.token.cancelled() => Outcome::Stopped,
                o = body(&engine, &crawl, tx) => o,
            };
            if matches!(outcome, Outcome::Finished) {
                crawl.stage(Stage::Finalizing, "finalizing: storing the last pages");
            }
            outcome
        }
    };
    crawl.tracker.close();
    crawl.tracker.wait().await;
    if let Some(queued) = hand_over(&engine, &crawl, &outcome).await {
        return (queued, true);
    }
    let mut fin = terminal_status(&engine, &crawl, outcome);
    let saved = match fin.source_id.clone().filter(|_| fin.refresh && fin.status == CrawlState::Completed) {
        Some(source) => {
            let written = Mutex::new(None);
            let (store, status, source, out) = (&engine.store, &fin, &source, &written);
            let saved = with_retry(None, move || async move {
                let s = store.complete_refresh(status, source, count_removed).await?;
                *out.locked() = Some(s);
                Ok(())
            })
            .await;
            if let Some(s) = written.into_inner().unwrap_or_else(|e| e.into_inner()) {
                fin = s;
            }
            saved
        }
        None => with_retry(None, || engine.store.save_status(&fin)).await,
    };
    if let Err(e) = &saved {
        tracing::error!(error = %e, "could not store the terminal status");
    }
    crawl.progress.update(|s| *s = fin.clone());
    metrics::counter!("trawl_crawls_finished_total", "status" => fin.status.as_str()).increment(1);
    tracing::info!(
        status = fin.status.as_str(),
        crawled = fin.pages_crawled,
        failed = fin.pages_failed,
        skipped = fin.pages_skipped,
        "crawl ended"
    );
    (fin, saved.is_ok())
}

/// A completed refresh's status with the pages it removed.
fn count_removed(status: &mut CrawlStatus, removed: u64) {
    status.pages_removed = removed;
    if removed > 0
        && let Some(m) = status.message.as_mut()
    {
        *m += &format!("; {removed} page(s) the site no longer has removed");
    }
}

/// Loads what the crawl's source keeps, to compare each page with. Without
/// it every page counts as new and is stored whole: slower, never wrong.
async fn load_prior(engine: &Engine, crawl: &Crawl) {
    let Some(source) = crawl.progress.snapshot().source_id else { return };
    match engine.store.source_pages(&source, &crawl.reporter.crawl_id).await {
        Ok(pages) => {
            tracing::debug!(pages = pages.len(), "the source's pages loaded for comparison");
            let _ = crawl.prior.set(pages.into_iter().map(|p| (p.url.clone(), p)).collect());
        }
        Err(e) => tracing::warn!(error = %e, "could not load the source's pages; every page is stored anew"),
    }
}

/// Writes a terminal status the store refused (a full disk) once it takes
/// it, trying every few seconds until the service stops; meanwhile the
/// crawl is served from memory. Whether it landed.
pub(crate) async fn store_terminal_later(engine: &Engine, fin: &CrawlStatus) -> bool {
    tracing::warn!("the terminal status is kept in memory until the store takes it");
    loop {
        tokio::select! {
            _ = engine.root.cancelled() => return false,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        match engine.store.save_status(fin).await {
            Ok(()) => {
                tracing::info!("the terminal status reached the store");
                return true;
            }
            Err(e) => tracing::debug!(error = %e, "the store still refuses the terminal status"),
        }
    }
}

/// Whether the crawl is being stopped by a shutdown that will hand it over
/// (see [`hand_over`]) rather than by a stop.
fn handing_over(engine: &Engine, crawl: &Crawl) -> bool {
    engine.shared_queue && engine.root.is_cancelled() && crawl.progress.snapshot().status == CrawlState::Running
}

/// At shutdown, with a queue other instances share, a running crawl is
/// handed back to the queue rather than cancelled: the next instance to
/// claim it resumes it from what it stored. `None` when it is not (a stop
/// was asked, it failed, or the store would not take it back).
async fn hand_over(engine: &Engine, crawl: &Crawl, outcome: &Outcome) -> Option<CrawlStatus> {
    let fatal = crawl.fatal.locked().is_some();
    if !engine.shared_queue || !engine.root.is_cancelled() || !matches!(outcome, Outcome::Stopped) || fatal {
        return None;
    }
    let mut s = crawl.progress.snapshot();
    if s.status != CrawlState::Running {
        return None;
    }
    s.status = CrawlState::Queued;
    s.current_url = None;
    s.pages_queued = 0;
    s.message = Some("handed over: its instance shut down; the next instance to claim it resumes it".into());
    match engine.store.hand_over(&s).await {
        Ok(true) => {}
        Ok(false) => return None,
        Err(e) => {
            tracing::warn!(error = %e, "could not hand the crawl over; it ends cancelled");
            return None;
        }
    }
    crawl.progress.update(|p| *p = s.clone());
    metrics::counter!("trawl_crawls_handed_over_total").increment(1);
    tracing::info!(crawled = s.pages_crawled, "crawl handed back to the queue");
    Some(s)
}

/// The one place a run's outcome becomes its final status.
fn terminal_status(engine: &Engine, crawl: &Crawl, outcome: Outcome) -> CrawlStatus {
    let mut fin = crawl.progress.snapshot();
    fin.limit_reached = crawl.limit();
    let fatal = crawl.fatal.locked().clone();
    // A stop asked by a user is one even when a shutdown overlaps it.
    let stop_requested = fin.status == CrawlState::Stopping;
    let failed = |fin: &mut CrawlStatus, reason: String| {
        fin.end(CrawlState::Failed, format!("failed: {reason}"), Some(reason));
    };
    if let Some(reason) = fatal {
        failed(&mut fin, reason);
    } else if matches!(outcome, Outcome::Stopped) || stop_requested {
        let why = if engine.root.is_cancelled() && !stop_requested {
            "stopped: the service is shutting down"
        } else {
            "stopped by request"
        };
        fin.end(CrawlState::Cancelled, why.into(), None);
    } else if let Outcome::Failed(reason) = outcome {
        failed(&mut fin, reason);
    } else if fin.pages_crawled == 0 {
        // Nothing fetched is no success: an unreachable host, a start page
        // that failed or was skipped, a sitemap that listed nothing.
        let first = crawl.first_error.locked().clone();
        let reason = match first {
            Some(first) => format!("no page could be crawled; first error: {first}"),
            None => "no page could be crawled: the start URL yielded no page to fetch".to_string(),
        };
        failed(&mut fin, reason);
    } else {
        let mut message = format!(
            "completed: {} crawled, {} failed, {} skipped",
            fin.pages_crawled, fin.pages_failed, fin.pages_skipped
        );
        match fin.limit_reached {
            Some(Limit::MaxPages) => {
                message +=
                    &format!("; stopped at the maxPages budget ({}): more pages were in scope", crawl.spec.max_pages)
            }
            Some(Limit::MaxDepth) => {
                message += &format!("; links beyond maxDepth ({}) were not followed", crawl.spec.max_depth)
            }
            None => {}
        }
        fin.end(CrawlState::Completed, message, None);
    }
    fin
}

/// Retries a store write with backoff; a brief outage must not lose a crawl.
/// Gives up after [`STORE_RETRY_FOR`], or instead of retrying once `stop` is
/// cancelled (a stopped crawl abandons what it had not stored).
async fn with_retry<F, Fut>(stop: Option<&CancellationToken>, mut f: F) -> Result<(), crate::store::StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), crate::store::StoreError>>,
{
    let started = Instant::now();
    let mut delay = Duration::from_millis(50);
    let mut attempt = 1u32;
    loop {
        // An attempt is never cut short: a commit in flight must be known to
        // have landed or not, or the counters could disagree with the rows.
        let e = match f().await {
            Ok(()) => return Ok(()),
            Err(e) if !e.is_transient() || started.elapsed() + delay > STORE_RETRY_FOR => return Err(e),
            Err(e) => e,
        };
        tracing::warn!(error = %e, attempt, retry_in_ms = delay.as_millis() as u64, "store write failed; retrying");
        match stop {
            Some(token) => tokio::select! {
                biased;
                _ = token.cancelled() => return Err(crate::store::StoreError::Abandoned),
                _ = tokio::time::sleep(delay) => {}
            },
            None => tokio::time::sleep(delay).await,
        }
        delay = (delay * 2).min(Duration::from_secs(2));
        attempt += 1;
    }
}

/// What page tasks share.
struct Ctx {
    engine: Arc<Engine>,
    crawl: Arc<Crawl>,
    robots: Robots,
    hosts: Hosts,
    pages: mpsc::Sender<PageRecord>,
    /// The crawl follows links: pages keep theirs, for a resume.
    follow: AtomicBool,
}

/// What a crawled page hands back to the level loop.
#[derive(Default, Clone)]
struct PageResult {
    final_url: Option<Url>,
    links: Vec<Url>,
}

/// The budget and dedup set: each URL is admitted once, and at most
/// `maxPages` URLs in all.
struct Frontier {
    seen: HashSet<String>,
    max_pages: u64,
    /// A new URL was refused for the budget.
    cut: bool,
}

impl Frontier {
    fn admit(&mut self, url: &Url) -> bool {
        if self.seen.contains(url.as_str()) {
            return false;
        }
        if self.seen.len() as u64 >= self.max_pages {
            self.cut = true;
            return false;
        }
        self.seen.insert(url.as_str().to_string());
        true
    }

    fn room(&self) -> u64 {
        self.max_pages.saturating_sub(self.seen.len() as u64)
    }
}

/// New in-scope links found by the pages of the level being crawled, for
/// the estimate of the work ahead (hashes: the URLs are admitted, in page
/// order, only when the level ends).
struct Found {
    links: HashSet<u64>,
    hasher: std::hash::RandomState,
    level: u64,
    finished: u64,
    /// New links per page lately (a moving average): pages later in a
    /// level find fewer new links, their neighbours' being known already.
    rate: f64,
}

impl Found {
    /// The weight of each page in `rate`: about the last twenty pages count.
    const ALPHA: f64 = 0.05;

    fn new(level: usize) -> Self {
        Found { links: HashSet::new(), hasher: Default::default(), level: level as u64, finished: 0, rate: 0.0 }
    }

    fn add(&mut self, r: &PageResult, scope: &Scope, frontier: &Frontier) {
        use std::hash::BuildHasher;
        let before = self.links.len();
        for u in &r.links {
            if !frontier.seen.contains(u.as_str()) && scope.allows(u) {
                self.links.insert(self.hasher.hash_one(u.as_str()));
            }
        }
        let new = (self.links.len() - before) as f64;
        self.rate = if self.finished == 0 { new } else { self.rate + Self::ALPHA * (new - self.rate) };
        self.finished += 1;
    }

    /// The outlook at level `depth` of `max_depth`: the links found so far,
    /// plus what the rest of the level should find at the recent rate, grown
    /// level by level at the same rate down to `maxDepth`, within the budget
    /// left.
    fn outlook(&self, frontier: &Frontier, depth: u32, max_depth: u32) -> Outlook {
        let room = frontier.room();
        let found = (self.links.len() as u64).min(room);
        let mut ahead = 0;
        if depth < max_depth && self.finished > 0 {
            let next = self.links.len() as f64 + self.rate * self.level.saturating_sub(self.finished) as f64;
            let growth = next / self.level.max(1) as f64;
            let (mut level, mut total) = (next, next);
            for _ in depth + 1..max_depth {
                level *= growth;
                total += level;
                if total >= room as f64 {
                    break;
                }
            }
            ahead = (total.min(room as f64) as u64).max(found);
        }
        Outlook { admitted: frontier.seen.len() as u64, found, ahead, depth: Some((depth, max_depth)) }
    }
}

async fn body(engine: &Arc<Engine>, crawl: &Arc<Crawl>, pages: mpsc::Sender<PageRecord>) -> Outcome {
    let spec = &crawl.spec;
    let ctx = Arc::new(Ctx {
        engine: engine.clone(),
        crawl: crawl.clone(),
        robots: Robots::new(&engine.config.user_agent),
        hosts: Hosts::new(engine.config.per_host_concurrency.min(spec.concurrency)),
        pages,
        follow: AtomicBool::new(false),
    });
    crawl.stage(Stage::Analyzing, "analyzing the start URL");
    let kind = match spec.crawl_type {
        CrawlType::Auto => {
            let kind = detect_type(&ctx, &spec.url).await;
            if let Err(e) = engine.store.set_crawl_type(&crawl.reporter.crawl_id, type_name(kind)).await {
                tracing::warn!(error = %e, "could not record the detected crawl type");
            }
            kind
        }
        k => k,
    };
    crawl.stage(Stage::Discovering, format!("discovering URLs ({})", type_name(kind)));
    let (seeds, follow, seeds_are_start) = match kind {
        CrawlType::Page | CrawlType::Auto => (vec![spec.url.clone()], false, true),
        CrawlType::Recursive => (vec![spec.url.clone()], true, true),
        CrawlType::Sitemap => match sitemap_urls(&ctx, &spec.url).await {
            Ok(urls) => (urls, false, false),
            Err(e) => return Outcome::Failed(e),
        },
        CrawlType::LlmsTxt if discover::is_full_text(&spec.url) => (vec![spec.url.clone()], false, true),
        CrawlType::LlmsTxt => match link_list(&ctx, &spec.url).await {
            Ok(urls) if urls.is_empty() => (vec![spec.url.clone()], false, true),
            Ok(urls) => (urls, false, false),
            Err(e) => return Outcome::Failed(e),
        },
    };
    ctx.follow.store(follow, Ordering::Relaxed);
    let mut scope = spec.scope.clone();
    let mut frontier = Frontier { seen: HashSet::new(), max_pages: u64::from(spec.max_pages), cut: false };
    let mut level: Vec<Url> =
        seeds.into_iter().filter(|u| (seeds_are_start || scope.allows(u)) && frontier.admit(u)).collect();
    let depth_of = |d: u32| follow.then_some((d, spec.max_depth));
    crawl.set_outlook(Outlook { admitted: frontier.seen.len() as u64, depth: depth_of(0), ..Outlook::default() });
    crawl.stage(Stage::Crawling, format!("crawling {} URLs", level.len()));
    let mut depth = 0u32;
    while !level.is_empty() {
        let level_scope = Arc::new(scope.clone());
        let mut found = Found::new(level.len());
        let following = follow && depth < spec.max_depth;
        let on_result = |r: &PageResult| {
            if following {
                found.add(r, &level_scope, &frontier);
                crawl.set_outlook(found.outlook(&frontier, depth, spec.max_depth));
            }
        };
        let results =
            run_level(&ctx, level, depth, seeds_are_start && depth == 0, level_scope.clone(), on_result).await;
        if follow && depth >= spec.max_depth {
            let beyond =
                results.iter().flat_map(|r| &r.links).any(|u| !frontier.seen.contains(u.as_str()) && scope.allows(u));
            if beyond {
                crawl.limit.locked().get_or_insert(Limit::MaxDepth);
            }
        }
        if !following {
            break;
        }
        if depth == 0 {
            // The start page may have moved (http → https, apex → www): its
            // final host joins the scope.
            for r in &results {
                if let Some(f) = &r.final_url {
                    scope.add_host_of(f);
                }
            }
        }
        let next: Vec<Url> =
            results.into_iter().flat_map(|r| r.links).filter(|u| scope.allows(u) && frontier.admit(u)).collect();
        level = next;
        depth += 1;
        // Until the new level's pages report, the growth seen so far goes on.
        crawl.set_outlook(Outlook {
            admitted: frontier.seen.len() as u64,
            found: 0,
            ahead: crawl.outlook().ahead.saturating_sub(level.len() as u64).min(frontier.room()),
            depth: depth_of(depth),
        });
    }
    if frontier.cut {
        // The budget outranks maxDepth: it is what stopped the walk first.
        *crawl.limit.locked() = Some(Limit::MaxPages);
    }
    Outcome::Finished
}

fn type_name(t: CrawlType) -> &'static str {
    match t {
        CrawlType::Auto | CrawlType::Page => "page",
        CrawlType::Sitemap => "sitemap",
        CrawlType::LlmsTxt => "llms_txt",
        CrawlType::Recursive => "recursive",
    }
}

/// `auto`: the URL's name first, else a look at what the URL serves.
async fn detect_type(ctx: &Ctx, url: &Url) -> CrawlType {
    if let Some(t) = discover::type_from_url(url) {
        return t;
    }
    if ctx.crawl.spec.respect_robots && !ctx.robots.rules_for(url, &ctx.engine.fetcher).await.allowed(url) {
        return CrawlType::Recursive;
    }
    let fetched = ctx.engine.fetcher.fetch(url, &|_| true, &|s, _| (200..300).contains(&s)).await;
    match fetched {
        Ok(f) if (200..300).contains(&f.status) => {
            let mime = f.mime().unwrap_or_default();
            let body = f.body.as_deref().unwrap_or_default();
            if (mime.contains("xml") || mime.is_empty() || body.starts_with(&[0x1f, 0x8b]))
                && discover::looks_like_sitemap(body)
            {
                CrawlType::Sitemap
            } else if mime == "text/plain" || mime == "text/markdown" {
                CrawlType::LlmsTxt
            } else {
                CrawlType::Recursive
            }
        }
        _ => CrawlType::Recursive,
    }
}

/// Fetches a discovery document (sitemap, link list) with the crawl's guard;
/// fails with a message that names the URL.
async fn fetch_document(ctx: &Ctx, url: &Url, scope: &Scope) -> Result<Fetched, String> {
    let f = ctx
        .engine
        .fetcher
        .fetch(url, &|u| scope.host_allowed(u), &|s, _| (200..300).contains(&s))
        .await
        .map_err(|e| format!("{url}: {}: {e}", e.code()))?;
    if !(200..300).contains(&f.status) {
        return Err(format!("{url}: HTTP {}", f.status));
    }
    Ok(f)
}

/// Every page URL of a sitemap, following indexes breadth-first.
async fn sitemap_urls(ctx: &Ctx, root: &Url) -> Result<Vec<Url>, String> {
    let scope = &ctx.crawl.spec.scope;
    let mut queue = VecDeque::from([root.clone()]);
    let mut seen_docs: HashSet<Url> = HashSet::from([root.clone()]);
    let mut out = Vec::new();
    let mut docs = 0;
    while let Some(doc) = queue.pop_front() {
        docs += 1;
        if docs > MAX_SITEMAP_DOCS {
            tracing::warn!("sitemap index too large; reading the first {MAX_SITEMAP_DOCS} documents");
            break;
        }
        let parsed = match fetch_document(ctx, &doc, scope).await {
            Ok(f) => {
                let body = f.body.unwrap_or_default();
                let pool = ctx.engine.pool.clone();
                pool.run(&ctx.crawl.tracker, move || discover::parse_sitemap(&body))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| format!("{doc}: {e}")))
            }
            Err(e) => Err(e),
        };
        match parsed {
            Ok(Sitemap::Urls(locs)) => {
                out.extend(locs.iter().filter_map(|l| Url::parse(l).ok()).filter_map(|u| urls::normalize(&u)))
            }
            Ok(Sitemap::Index(locs)) => {
                for u in locs.iter().filter_map(|l| Url::parse(l).ok()).filter_map(|u| urls::normalize(&u)) {
                    if scope.host_allowed(&u) && seen_docs.insert(u.clone()) {
                        queue.push_back(u);
                    }
                }
            }
            // The root sitemap must work; a broken child costs only its URLs.
            Err(e) if docs == 1 => return Err(format!("sitemap unreadable: {e}")),
            Err(e) => tracing::warn!(error = %e, "skipping an unreadable child sitemap"),
        }
    }
    Ok(out)
}

/// The links of an llms.txt-style list.
async fn link_list(ctx: &Ctx, url: &Url) -> Result<Vec<Url>, String> {
    let f = fetch_document(ctx, url, &ctx.crawl.spec.scope).await.map_err(|e| format!("link list unreadable: {e}"))?;
    // Decoding and scanning up to a page's size of text is pool work.
    ctx.engine
        .pool
        .run(&ctx.crawl.tracker, move || discover::parse_link_list(&f.text(), &f.final_url))
        .await
        .map_err(|e| e.to_string())
}

/// Crawls one level with bounded concurrency; results come back in the
/// level's order.
/// `on_result` sees each page's result as it comes.
async fn run_level(
    ctx: &Arc<Ctx>,
    level: Vec<Url>,
    depth: u32,
    seed: bool,
    scope: Arc<Scope>,
    mut on_result: impl FnMut(&PageResult),
) -> Vec<PageResult> {
    let n = level.len();
    let slots = Arc::new(Semaphore::new(ctx.crawl.spec.concurrency));
    let (tx, mut rx) = mpsc::channel::<(usize, PageResult)>(n.max(1));
    let mut results = vec![PageResult::default(); n];
    for (i, url) in level.into_iter().enumerate() {
        // Stored by an earlier run of this crawl: its outcome is known.
        if let Some(r) = ctx.crawl.resume.as_ref().and_then(|r| r.result(&url)) {
            results[i] = r;
            continue;
        }
        // Results are taken as they come, while later pages wait for a slot.
        let permit = loop {
            tokio::select! {
                biased;
                Some((j, r)) = rx.recv() => {
                    on_result(&r);
                    results[j] = r;
                }
                p = slots.clone().acquire_owned() => break p,
            }
        };
        let Ok(permit) = permit else {
            break;
        };
        ctx.crawl.progress.update(|s| s.current_url = Some(url.to_string()));
        let (ctx2, tx, scope) = (ctx.clone(), tx.clone(), scope.clone());
        let task = async move {
            let token = ctx2.crawl.token.clone();
            tokio::select! {
                biased;
                _ = token.cancelled() => {}
                r = page_task(&ctx2, url, depth, seed, &scope) => { let _ = tx.send((i, r)).await; }
            }
            drop(permit);
        };
        ctx.crawl.tracker.spawn(task.in_current_span());
    }
    drop(tx);
    while let Some((i, r)) = rx.recv().await {
        on_result(&r);
        results[i] = r;
    }
    results
}

async fn page_task(ctx: &Ctx, url: Url, depth: u32, seed: bool, scope: &Scope) -> PageResult {
    let (record, result) = crawl_page(ctx, url, depth, seed, scope).await;
    // A page that failed once the crawl was stopping may have failed of the
    // stop itself: it is not recorded. A crawl handed over at a shutdown
    // then fetches it again on the next instance (and follows its links)
    // instead of resuming past a false failure.
    if record.status == PageStatus::Failed && ctx.crawl.token.is_cancelled() {
        return result;
    }
    if matches!(record.status, PageStatus::Failed | PageStatus::Skipped) {
        let mut first = ctx.crawl.first_error.locked();
        if first.is_none() {
            *first = record.error.clone();
        }
    }
    let _ = ctx.pages.send(record).await;
    result
}

/// How a fetched body is treated.
#[derive(Clone, Copy)]
enum Kind {
    Html,
    Text,
    Markdown,
}

impl Kind {
    fn of(mime: Option<&str>) -> Option<Kind> {
        match mime {
            None | Some("") | Some("text/html") | Some("application/xhtml+xml") => Some(Kind::Html),
            Some("text/plain") => Some(Kind::Text),
            Some("text/markdown") | Some("text/x-markdown") => Some(Kind::Markdown),
            _ => None,
        }
    }
}

fn record(url: &Url, depth: u32, status: PageStatus) -> PageRecord {
    PageRecord {
        url: url.to_string(),
        status,
        depth,
        fetched_at: Utc::now(),
        source: url.host_str().map(str::to_string),
        ..PageRecord::default()
    }
}

/// A page's bytes as the pipeline takes them, from HTTP or from Chromium.
struct Body {
    final_url: Url,
    status: u16,
    content_type: Option<String>,
    bytes: Option<bytes::Bytes>,
    rendered: bool,
    validators: Validators,
    /// For a `304` in a crawl that follows links: where the kept copy leads.
    kept_links: Vec<Url>,
}

impl Body {
    fn fetched(f: Fetched) -> Self {
        Body {
            final_url: f.final_url,
            status: f.status,
            content_type: f.content_type,
            bytes: f.body,
            rendered: false,
            validators: f.validators,
            kept_links: Vec::new(),
        }
    }

    fn rendered(r: Rendered) -> Self {
        let mime = r.mime.unwrap_or_else(|| "text/html".into());
        Body {
            final_url: r.final_url,
            status: r.status.unwrap_or(200),
            // The DOM comes back as a Rust string: UTF-8, whatever the page declared.
            content_type: Some(format!("{mime}; charset=utf-8")),
            bytes: Some(bytes::Bytes::from(r.html)),
            rendered: true,
            validators: Validators::default(),
            kept_links: Vec::new(),
        }
    }

    fn mime(&self) -> Option<String> {
        self.content_type.as_deref().map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
    }
}

/// What the pool made of a page.
enum Processed {
    Page {
        page: Box<process::Processed>,
        /// `markdown` or `text`.
        format: &'static str,
        /// The crawl's keyed hash of `digest`, for duplicates within the crawl.
        content_hash: u64,
        /// The SHA-256 of the markdown (hex), stored: what the next crawl of
        /// the source compares.
        digest: String,
        /// The SHA-256 of the page's bytes (hex), stored: the same bytes
        /// next time need no extraction.
        body_digest: String,
        /// Vectors made on the pool.
        embedded: u64,
        /// The source keeps this very content: nothing was chunked or embedded.
        unchanged: bool,
    },
    /// The page's bytes (their SHA-256 here) are those of the source's copy;
    /// where the page leads, when the crawl follows links.
    SameBody(String, Vec<Url>),
    /// `auto` mode: the HTML is a shell for scripts, for this reason.
    NeedsBrowser(&'static str),
    Cancelled,
}

fn failed(mut r: PageRecord, error: String) -> (PageRecord, PageResult) {
    r.status = PageStatus::Failed;
    r.error = Some(error);
    (r, PageResult::default())
}

async fn crawl_page(ctx: &Ctx, url: Url, depth: u32, seed: bool, scope: &Scope) -> (PageRecord, PageResult) {
    let engine = &ctx.engine;
    let spec = &ctx.crawl.spec;
    let mut delay = engine.config.politeness_delay;
    if spec.respect_robots {
        let rules = ctx.robots.rules_for(&url, &engine.fetcher).await;
        if !rules.allowed(&url) {
            let mut r = record(&url, depth, PageStatus::Skipped);
            r.error = Some(rules.reason());
            return (r, PageResult::default());
        }
        if let Some(d) = rules.crawl_delay() {
            delay = delay.max(d.min(engine.config.max_crawl_delay));
        }
    }
    let _host = ctx.hosts.acquire(&url, delay).await;
    let r = record(&url, depth, PageStatus::Crawled);
    let first = if spec.render == Render::Browser {
        render(ctx, &url, seed, scope).await
    } else {
        fetch(ctx, &url, seed, scope).await
    };
    let mut body = match first {
        // A rendered document that is not HTML (text, markdown) is read as served.
        Ok(b) if b.rendered && !matches!(Kind::of(b.mime().as_deref()), Some(Kind::Html) | None) => {
            fetch(ctx, &url, seed, scope).await
        }
        other => other,
    };
    loop {
        let b = match body {
            Ok(b) => b,
            Err(e) => return failed(r, e),
        };
        let detect = spec.render == Render::Auto && !b.rendered;
        match process_body(ctx, r.clone(), b, detect).await {
            Ok(done) => return done,
            Err(NeedsBrowser(reason)) => {
                tracing::debug!(%url, reason, "rendering in Chromium");
                body = render(ctx, &url, seed, scope).await;
            }
        }
    }
}

/// `auto` mode: the HTTP page is a shell for scripts, for this reason.
struct NeedsBrowser(&'static str);

/// Over HTTP, following redirects the crawl's scope allows.
async fn fetch(ctx: &Ctx, url: &Url, seed: bool, scope: &Scope) -> Result<Body, String> {
    // The start URL may redirect anywhere the guard allows; other pages stay in scope.
    let in_scope = |u: &Url| seed || scope.allows(u);
    let want = |status: u16, mime: Option<&str>| (200..300).contains(&status) && Kind::of(mime).is_some();
    // The source's copy is asked after by its validators: a 304 keeps it as
    // it is. A crawl that follows links needs the copy's stored links then.
    let follow = ctx.follow.load(Ordering::Relaxed);
    let prior = ctx.crawl.prior(url.as_str()).filter(|p| p.content_hash.is_some() && (p.has_links || !follow));
    let validators =
        prior.map(|p| Validators { etag: p.etag.clone(), last_modified: p.last_modified.clone() }).unwrap_or_default();
    let get = |validators: Validators| async move {
        ctx.engine
            .fetcher
            .fetch_if_changed(url, &in_scope, &want, &validators)
            .await
            .map(Body::fetched)
            .map_err(|e| format!("{}: {e}", e.code()))
    };
    let mut body = get(validators.clone()).await?;
    if let Some(prior) = prior.filter(|_| body.status == 304 && follow) {
        match ctx.engine.store.page_links(prior.row).await {
            Ok(Some(links)) => body.kept_links = links.iter().filter_map(|l| Url::parse(l).ok()).collect(),
            // The copy was replaced meanwhile (another crawl of the source),
            // or cannot be read: the page is asked for whole.
            _ => body = get(Validators::default()).await?,
        }
    }
    Ok(body)
}

/// In Chromium, at most `browserConcurrency` pages of this crawl at once. The
/// browser follows redirects by itself, so the page it ends on is checked
/// against the scope and the address guard afterwards.
async fn render(ctx: &Ctx, url: &Url, seed: bool, scope: &Scope) -> Result<Body, String> {
    let engine = &ctx.engine;
    let _slot = ctx.crawl.browser_slots.acquire().await.map_err(|_| "cancelled: the crawl was stopped".to_string())?;
    let rendered = engine
        .renderer
        .render(url, ctx.crawl.spec.wait_until, &ctx.crawl.tracker, engine.config.browser.page_timeout)
        .await
        .map_err(|e| format!("{}: {e}", e.code()))?;
    if rendered.final_url != *url {
        if !seed && !scope.allows(&rendered.final_url) {
            return Err(format!("redirect_out_of_scope: redirect to {} leaves the crawl's scope", rendered.final_url));
        }
        engine
            .fetcher
            .guard()
            .check_resolved(&rendered.final_url)
            .await
            .map_err(|e| format!("forbidden_address: {e}"))?;
    }
    Ok(Body::rendered(rendered))
}

/// Status and type checks, then the pool: main content, markdown, chunks,
/// code, vectors. With `detect` (`auto` mode) the pool first decides whether
/// the page needs a browser, and says so instead of processing it.
async fn process_body(
    ctx: &Ctx,
    mut r: PageRecord,
    body: Body,
    detect: bool,
) -> Result<(PageRecord, PageResult), NeedsBrowser> {
    let engine = &ctx.engine;
    r.http_status = Some(body.status);
    r.content_type = body.content_type.clone();
    r.rendered = body.rendered;
    if body.final_url.as_str() != r.url {
        r.final_url = Some(body.final_url.to_string());
    }
    r.etag = body.validators.etag.clone();
    r.last_modified = body.validators.last_modified.clone();
    if body.status == 304
        && let Some(prior) = ctx.crawl.prior(&r.url).cloned()
    {
        return Ok(kept_as_is(ctx, r, prior, body.final_url, body.kept_links));
    }
    if !(200..300).contains(&body.status) {
        let reason = reqwest::StatusCode::from_u16(body.status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
        return Ok(failed(r, format!("http_status: HTTP {} {reason}", body.status).trim_end().to_string()));
    }
    let mime = body.mime();
    let Some(kind) = Kind::of(mime.as_deref()) else {
        r.status = PageStatus::Skipped;
        r.error = Some(format!("unsupported_content_type: {} is not HTML or text", mime.unwrap_or_default()));
        return Ok((r, PageResult::default()));
    };
    let bytes = body.bytes.unwrap_or_default();
    r.bytes = Some(bytes.len() as u64);
    let content_type = body.content_type;
    let page_url = body.final_url.clone();
    let options = ctx.crawl.spec.process;
    let token = ctx.crawl.token.clone();
    let embedder = engine.embedder.clone();
    let hasher = ctx.crawl.hasher.clone();
    let detect = detect && matches!(kind, Kind::Html);
    let prior = ctx.crawl.prior(&r.url).cloned();
    let prior_hash = prior.as_ref().and_then(|p| p.content_hash.clone());
    let has_prior = prior.is_some();
    // The very bytes the source's copy was made from make the same copy:
    // nothing to extract (links only, for a crawl that follows them). Not
    // for a page `auto` may still send to the browser: the same shell can
    // show other content.
    let follow = ctx.follow.load(Ordering::Relaxed);
    let prior_body = prior.as_ref().and_then(|p| p.body_hash.clone()).filter(|_| !detect);
    let processed = engine
        .pool
        .run(&ctx.crawl.tracker, move || {
            // Queued work of a stopped crawl ends at once; its result would be dropped.
            if token.is_cancelled() {
                return Processed::Cancelled;
            }
            let body_digest = format!("{:x}", sha2::Sha256::digest(&bytes));
            let text = decode(&bytes, content_type.as_deref());
            if prior_body.as_deref() == Some(body_digest.as_str()) {
                let links = match kind {
                    Kind::Html if follow => {
                        let (mut links, canonical) = process::links_of(&text, &page_url);
                        links.extend(canonical.filter(|c| *c != page_url && !links.contains(c)));
                        links
                    }
                    _ => Vec::new(),
                };
                return Processed::SameBody(body_digest, links);
            }
            if detect && let Some(reason) = crate::crawl::fetch::detect::needs_browser(&text) {
                return Processed::NeedsBrowser(reason);
            }
            let (extracted, format) = match kind {
                Kind::Html => (process::extract_html(&text, &page_url), "markdown"),
                Kind::Markdown => (process::extract_text(&text), "markdown"),
                Kind::Text => (process::extract_text(&text), "text"),
            };
            // Hashing a large page is CPU work too: here, not on the async threads.
            let digest = format!("{:x}", sha2::Sha256::digest(extracted.markdown.as_bytes()));
            let content_hash = std::hash::BuildHasher::hash_one(&hasher, &digest);
            if prior_hash.as_deref() == Some(digest.as_str()) {
                let page = Box::new(extracted.unchunked());
                return Processed::Page {
                    page,
                    format,
                    content_hash,
                    digest,
                    body_digest,
                    embedded: 0,
                    unchanged: true,
                };
            }
            let mut p = extracted.finish(&options);
            // A CPU embedder works here, on the pool; remote ones in the
            // writer, and so do changed pages, whose texts that did not
            // change reuse their vectors there.
            let mut embedded = 0;
            let (chunk_inputs, code_inputs) = p.embedding_inputs();
            let refs: Vec<&str> = chunk_inputs.iter().chain(&code_inputs).map(String::as_str).collect();
            if !has_prior && let Some(mut vectors) = embedder.embed_sync(&refs) {
                embedded = vectors.len() as u64;
                let code_vectors = vectors.split_off(chunk_inputs.len());
                p.chunks.iter_mut().zip(vectors).for_each(|(c, v)| c.embedding = Some(v));
                p.code_examples.iter_mut().zip(code_vectors).for_each(|(c, v)| c.embedding = Some(v));
            }
            Processed::Page { page: Box::new(p), format, content_hash, digest, body_digest, embedded, unchanged: false }
        })
        .await;
    Ok(match processed {
        Ok(Processed::NeedsBrowser(reason)) => return Err(NeedsBrowser(reason)),
        Ok(Processed::Cancelled) => failed(r, "cancelled: the crawl was stopped".into()),
        Ok(Processed::SameBody(body_digest, links)) => match prior {
            Some(prior) => {
                r.body_hash = Some(body_digest);
                kept_as_is(ctx, r, prior, body.final_url, links)
            }
            None => failed(r, "processing_failed: a page without a copy matched one".into()),
        },
        Ok(Processed::Page { page: p, format, content_hash, digest, body_digest, embedded, unchanged }) => {
            r.body_hash = Some(body_digest);
            let p = *p;
            let follow = ctx.follow.load(Ordering::Relaxed);
            let mut links = p.links;
            let here = urls::normalize(&body.final_url).unwrap_or_else(|| body.final_url.clone());
            let canonical = p.canonical.filter(|c| *c != here);
            if let Some(c) = canonical.as_ref().filter(|c| follow && !links.contains(c)) {
                links.push(c.clone());
            }
            if let Some(first) = ctx.crawl.duplicate_of(here.as_str(), canonical.as_ref(), content_hash) {
                r.status = PageStatus::Skipped;
                r.title = p.title;
                r.error = Some(match &canonical {
                    Some(c) => format!("duplicate: a copy of {first} (rel=canonical {c})"),
                    None => format!("duplicate: the same content as {first}"),
                });
                if follow {
                    r.links = links.iter().map(|u| u.to_string()).collect();
                }
                return Ok((r, PageResult { final_url: Some(body.final_url), links }));
            }
            r.title = p.title;
            r.description = p.description;
            r.content_hash = Some(digest);
            r.format = Some(format);
            r.embedded = embedded;
            match prior {
                Some(prior) if unchanged => {
                    // The source's row stays, with its chunks and vectors.
                    r.change = Some(Change::Unchanged);
                    r.kept = Some(Kept { row: prior.row, chunks: prior.chunks, code_examples: prior.code_examples });
                }
                Some(prior) => {
                    r.change = Some(Change::Changed);
                    r.earlier_row = Some(prior.row);
                }
                None => r.change = Some(Change::New),
            }
            if r.kept.is_none() {
                r.content = Some(p.markdown);
                r.chunks = p.chunks;
                r.code_examples = p.code_examples;
            }
            if follow {
                r.links = links.iter().map(|u| u.to_string()).collect();
            }
            (r, PageResult { final_url: Some(body.final_url), links })
        }
        Err(e) => failed(r, format!("processing_failed: {e}")),
    })
}

/// A page that has not changed since the source's copy (the server said
/// `304`, or sent the very bytes the copy was made from): the copy is kept
/// unprocessed, and the page leads to `links`.
fn kept_as_is(
    ctx: &Ctx,
    mut r: PageRecord,
    prior: PriorPage,
    final_url: Url,
    links: Vec<Url>,
) -> (PageRecord, PageResult) {
    let digest = prior.content_hash.clone().unwrap_or_default();
    let content_hash = std::hash::BuildHasher::hash_one(&ctx.crawl.hasher, &digest);
    let here = urls::normalize(&final_url).unwrap_or_else(|| final_url.clone());
    if let Some(first) = ctx.crawl.duplicate_of(here.as_str(), None, content_hash) {
        r.status = PageStatus::Skipped;
        r.error = Some(format!("duplicate: the same content as {first}"));
        return (r, PageResult { final_url: Some(final_url), links });
    }
    r.content_hash = prior.content_hash.clone();
    r.change = Some(Change::Unchanged);
    r.kept = Some(Kept { row: prior.row, chunks: prior.chunks, code_examples: prior.code_examples });
    if ctx.follow.load(Ordering::Relaxed) {
        r.links = links.iter().map(|u| u.to_string()).collect();
    }
    (r, PageResult { final_url: Some(final_url), links })
}

/// Stores page outcomes in batches, each batch in one transaction with the
/// status that counts them; persists the status at least every `FLUSH_EVERY`.
/// It ends when every page task has dropped its sender. On a stop, pages not
/// yet stored are abandoned with the rest of the crawl's unfinished work:
/// what was stored stays, and nothing is stored after the stop.
async fn writer(engine: Arc<Engine>, crawl: Arc<Crawl>, mut rx: mpsc::Receiver<PageRecord>) {
    let mut batch: Vec<PageRecord> = Vec::with_capacity(WRITE_BATCH);
    let mut counts = crawl.resume.as_ref().map(|r| r.counts).unwrap_or_default();
    let mut last_saved: Option<(CrawlStatus, Instant)> = None;
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = crawl.token.cancelled() => {
                if handing_over(&engine, &crawl) {
                    // The next instance resumes from what is stored: pages
                    // already fetched are kept rather than fetched again.
                    while let Ok(r) = rx.try_recv() {
                        batch.push(r);
                    }
                    flush(&engine, &crawl, &mut batch, &mut counts, &mut last_saved).await;
                } else if !batch.is_empty() {
                    tracing::debug!(abandoned = batch.len(), "stop: pages not yet stored are abandoned");
                }
                return;
            }
            msg = rx.recv() => match msg {
                Some(r) => {
                    batch.push(r);
                    if batch.len() >= WRITE_BATCH {
                        flush(&engine, &crawl, &mut batch, &mut counts, &mut last_saved).await;
                    }
                }
                None => break,
            },
            _ = tick.tick() => flush(&engine, &crawl, &mut batch, &mut counts, &mut last_saved).await,
        }
    }
    flush(&engine, &crawl, &mut batch, &mut counts, &mut last_saved).await;
}

/// Gives the chunks and code examples of changed pages the vectors their
/// earlier copies have for the very same text, so that only new text is
/// embedded. Without them (the store cannot say) everything is embedded.
async fn reuse_vectors(engine: &Engine, batch: &mut [PageRecord]) {
    let rows: Vec<i64> = batch.iter().filter_map(|r| r.earlier_row).collect();
    if rows.is_empty() {
        return;
    }
    let known: HashMap<String, Vec<f32>> = match engine.store.page_vectors(&rows, engine.embedder.model()).await {
        Ok(v) => v.into_iter().collect(),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the earlier vectors; embedding the changed pages whole");
            return;
        }
    };
    for r in batch.iter_mut().filter(|r| r.earlier_row.is_some()) {
        let (c, e) = process::embedding_inputs(r.title.as_deref(), &r.chunks, &r.code_examples);
        for (chunk, text) in r.chunks.iter_mut().zip(c) {
            chunk.embedding = chunk.embedding.take().or_else(|| known.get(&text).cloned());
        }
        for (example, text) in r.code_examples.iter_mut().zip(e) {
            example.embedding = example.embedding.take().or_else(|| known.get(&text).cloned());
        }
    }
}

/// Embeds the chunks and code examples of a batch that have no vector yet
/// (remote embedders, changed pages). A batch the embedder refuses for good
/// is stored without vectors, to be filled in by `trawl embed --missing`.
/// Answers how many vectors it made, or `None` when the crawl was stopped
/// meanwhile.
async fn embed_missing(engine: &Engine, crawl: &Crawl, batch: &mut [PageRecord]) -> Option<u64> {
    let complete = |r: &PageRecord| {
        r.chunks.iter().all(|c| c.embedding.is_some()) && r.code_examples.iter().all(|e| e.embedding.is_some())
    };
    // With a CPU embedder every vector of a new page was made on the pool already.
    if batch.iter().all(complete) {
        return Some(0);
    }
    let mut inputs = Vec::new();
    for r in batch.iter() {
        let (c, e) = process::embedding_inputs(r.title.as_deref(), &r.chunks, &r.code_examples);
        let missing_c = r.chunks.iter().map(|c| c.embedding.is_none());
        let missing_e = r.code_examples.iter().map(|e| e.embedding.is_none());
        inputs.extend(c.into_iter().chain(e).zip(missing_c.chain(missing_e)).filter(|(_, m)| *m).map(|(t, _)| t));
    }
    if inputs.is_empty() {
        return Some(0);
    }
    let embedded = tokio::select! {
        _ = crawl.token.cancelled() => return None,
        r = engine.embedder.embed(&inputs) => r,
    };
    match embedded {
        Ok(vectors) => {
            let made = vectors.len() as u64;
            let mut vectors = vectors.into_iter();
            for r in batch.iter_mut() {
                for c in r.chunks.iter_mut().filter(|c| c.embedding.is_none()) {
                    c.embedding = vectors.next();
                }
                for e in r.code_examples.iter_mut().filter(|e| e.embedding.is_none()) {
                    e.embedding = vectors.next();
                }
            }
            Some(made)
        }
        Err(e) => {
            tracing::warn!(error = %e, inputs = inputs.len(), "embedding failed; storing without vectors");
            Some(0)
        }
    }
}

async fn flush(
    engine: &Engine,
    crawl: &Crawl,
    batch: &mut Vec<PageRecord>,
    counts: &mut PageCounts,
    last_saved: &mut Option<(CrawlStatus, Instant)>,
) {
    reuse_vectors(engine, batch).await;
    let Some(embedded) = embed_missing(engine, crawl, batch).await else {
        return; // stopped while embedding: the batch is abandoned
    };
    let outlook = crawl.outlook();
    let mut next = *counts;
    next.embedded += embedded;
    for r in batch.iter() {
        match r.status {
            PageStatus::Crawled => next.crawled += 1,
            PageStatus::Failed => next.failed += 1,
            PageStatus::Skipped => next.skipped += 1,
        }
        match r.change {
            Some(Change::New) => next.new += 1,
            Some(Change::Changed) => next.changed += 1,
            Some(Change::Unchanged) => next.unchanged += 1,
            None => {}
        }
        next.embedded += r.embedded;
        next.chunks += r.chunks.len() as u64 + r.kept.map_or(0, |k| k.chunks);
        next.code_examples += r.code_examples.len() as u64 + r.kept.map_or(0, |k| k.code_examples);
        next.unembedded += r.chunks.iter().filter(|c| c.embedding.is_none()).count() as u64;
    }
    let mut snapshot = crawl.progress.snapshot();
    snapshot.apply_counts(outlook, next);
    snapshot.event_id = crawl.reporter.newest_id();
    let fresh = last_saved.as_ref().is_some_and(|(saved, at)| *saved == snapshot && at.elapsed() < HEARTBEAT);
    if batch.is_empty() && fresh {
        return;
    }
    let result = if batch.is_empty() {
        with_retry(Some(&crawl.token), || engine.store.save_status(&snapshot)).await
    } else {
        with_retry(Some(&crawl.token), || engine.store.save_pages(&snapshot, batch, engine.embedder.model())).await
    };
    match result {
        Ok(()) => {
            for (outcome, n) in [
                ("crawled", next.crawled - counts.crawled),
                ("failed", next.failed - counts.failed),
                ("skipped", next.skipped - counts.skipped),
            ] {
                metrics::counter!("trawl_pages_total", "outcome" => outcome).increment(n);
            }
            metrics::counter!("trawl_chunks_stored_total").increment(next.chunks - counts.chunks);
            metrics::counter!("trawl_code_examples_stored_total").increment(next.code_examples - counts.code_examples);
            *counts = next;
            crawl.progress.set_counts(outlook, next);
            *last_saved = Some((snapshot, Instant::now()));
        }
        Err(crate::store::StoreError::Abandoned) => {}
        Err(crate::store::StoreError::TakenOver(_)) => crawl.lose(),
        Err(e) => {
            if !batch.is_empty() {
                crawl.fail(format!("the store refused {} page(s): {e}", batch.len()));
            }
        }
    }
    batch.clear();
}
