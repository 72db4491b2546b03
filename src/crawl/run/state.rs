//! The engine every crawl of a process shares, and one crawl's state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use crate::crawl::CrawlerConfig;
use crate::crawl::fetch::{HttpFetcher, Renderer};
use crate::crawl::request::CrawlSpec;
use crate::process::Pool;
use crate::progress::{CrawlStatus, Limit, Outlook, PageCounts, Progress, Reporter, Stage};
use crate::store::{DynStore, PageStatus, PriorPage, StoredOutcome};
use crate::sync::LockExt;

use super::*;

/// What every crawl of a process shares; built once, by the app
/// (`trawl::engine`), and handed to the registry.
pub struct Engine {
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
    /// Where a crawl with a webhook enqueues its deliveries.
    pub webhooks: crate::webhooks::follow::Hooks,
    /// Politeness per host, for every crawl of the process (and, with
    /// shared leases, of every instance).
    pub hosts: crate::crawl::hosts::Hosts,
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
    pub(super) browser_slots: Semaphore,
    pub progress: Progress,
    /// Numbers and fans out this crawl's events.
    pub reporter: Arc<Reporter>,
    pub span: tracing::Span,
    /// What the walk knows of the work ahead; the writer turns it into
    /// the percentage.
    pub(super) outlook: Mutex<Outlook>,
    /// The budget that cut the walk short, if one did.
    pub(super) limit: Mutex<Option<Limit>>,
    /// Pages kept so far, by canonical URL and by content: a later page
    /// with either is recorded as a duplicate of the first.
    pub(super) kept: Mutex<HashMap<u64, String>>,
    pub(super) hasher: std::hash::RandomState,
    /// Set when the crawl cannot go on (the store refused writes for good).
    pub(super) fatal: Mutex<Option<String>>,
    /// The first page error, to explain a crawl in which nothing succeeded.
    pub(super) first_error: Mutex<Option<String>>,
    /// What an earlier run of this crawl (on an instance that died) stored.
    pub(super) resume: Option<ResumeFrom>,
    /// The pages the crawl's source keeps, by URL, loaded as the crawl
    /// starts: each page crawled is compared with its earlier copy.
    pub(super) prior: std::sync::OnceLock<HashMap<String, PriorPage>>,
    /// What the writer and the embedding stage share.
    pub(super) behind: super::embedding::Behind,
}

/// A crawl taken over from a dead instance goes on from what it stored:
/// the walk is replayed over the stored pages (their links included), and
/// only the pages not stored yet are fetched.
pub(crate) struct ResumeFrom {
    pub(super) pages: HashMap<String, StoredOutcome>,
    pub(super) counts: PageCounts,
}

impl ResumeFrom {
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
    pub(super) fn result(&self, url: &Url) -> Option<PageResult> {
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
        resume: Option<ResumeFrom>,
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
            behind: Default::default(),
        }
    }

    /// The source's copy of a page, if it keeps one.
    pub(super) fn prior(&self, url: &str) -> Option<&PriorPage> {
        self.prior.get().and_then(|p| p.get(url))
    }

    /// Another instance has taken this crawl over: it ends here silently,
    /// and the store refuses whatever it would still write.
    pub fn lose(&self) {
        tracing::warn!("another instance took this crawl over; ending it here");
        self.reporter.mute();
        self.token.cancel();
    }

    pub(super) fn fail(&self, reason: String) {
        tracing::error!(%reason, "crawl cannot go on");
        let mut f = self.fatal.locked();
        f.get_or_insert(reason);
        self.token.cancel();
    }

    pub(super) fn outlook(&self) -> Outlook {
        *self.outlook.locked()
    }

    pub(super) fn set_outlook(&self, o: Outlook) {
        *self.outlook.locked() = o;
    }

    /// The page kept earlier that this one repeats (the same canonical
    /// URL, or the same content: `content_hash` is [`Crawl::hasher`]'s hash
    /// of its markdown); `None` keeps this one, under both keys.
    pub(super) fn duplicate_of(&self, url: &str, canonical: Option<&Url>, content_hash: u64) -> Option<String> {
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

    pub(super) fn limit(&self) -> Option<Limit> {
        *self.limit.locked()
    }

    pub(super) fn stage(&self, stage: Stage, message: impl Into<String>) {
        let message = message.into();
        self.progress.update(|s| {
            s.stage = stage;
            s.message = Some(message);
        });
    }
}
