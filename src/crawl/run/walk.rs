//! The breadth-first walk: level by level, each level's pages in order.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{Semaphore, mpsc};
use tracing::Instrument;
use url::Url;

use crate::crawl::discover::{self};
use crate::crawl::hosts::Hosts;
use crate::crawl::request::CrawlType;
use crate::crawl::robots::Robots;
use crate::crawl::scope::Scope;
use crate::progress::{Limit, Outlook, Stage};
use crate::store::{PageRecord, PageStatus};
use crate::sync::LockExt;

use super::*;

/// What page tasks share.
pub(super) struct Ctx {
    pub(super) engine: Arc<Engine>,
    pub(super) crawl: Arc<Crawl>,
    pub(super) robots: Robots,
    pub(super) hosts: Hosts,
    pub(super) pages: mpsc::Sender<PageRecord>,
    /// The crawl follows links: pages keep theirs, for a resume.
    pub(super) follow: AtomicBool,
}

/// What a crawled page hands back to the level loop.
#[derive(Default, Clone)]
pub(super) struct PageResult {
    pub(super) final_url: Option<Url>,
    pub(super) links: Vec<Url>,
}

/// The budget and dedup set: each URL is admitted once, and at most
/// `maxPages` URLs in all.
pub(super) struct Frontier {
    pub(super) seen: HashSet<String>,
    pub(super) max_pages: u64,
    /// A new URL was refused for the budget.
    pub(super) cut: bool,
}

impl Frontier {
    pub(super) fn admit(&mut self, url: &Url) -> bool {
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

    pub(super) fn room(&self) -> u64 {
        self.max_pages.saturating_sub(self.seen.len() as u64)
    }
}

/// New in-scope links found by the pages of the level being crawled, for
/// the estimate of the work ahead (hashes: the URLs are admitted, in page
/// order, only when the level ends).
pub(super) struct Found {
    pub(super) links: HashSet<u64>,
    pub(super) hasher: std::hash::RandomState,
    pub(super) level: u64,
    pub(super) finished: u64,
    /// New links per page lately (a moving average): pages later in a
    /// level find fewer new links, their neighbours' being known already.
    pub(super) rate: f64,
}

impl Found {
    /// The weight of each page in `rate`: about the last twenty pages count.
    const ALPHA: f64 = 0.05;

    pub(super) fn new(level: usize) -> Self {
        Found { links: HashSet::new(), hasher: Default::default(), level: level as u64, finished: 0, rate: 0.0 }
    }

    pub(super) fn add(&mut self, r: &PageResult, scope: &Scope, frontier: &Frontier) {
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
    pub(super) fn outlook(&self, frontier: &Frontier, depth: u32, max_depth: u32) -> Outlook {
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

pub(super) async fn walk(engine: &Arc<Engine>, crawl: &Arc<Crawl>, pages: mpsc::Sender<PageRecord>) -> Outcome {
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

/// Crawls one level with bounded concurrency; results come back in the
/// level's order.
/// `on_result` sees each page's result as it comes.
pub(super) async fn run_level(
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

pub(super) async fn page_task(ctx: &Ctx, url: Url, depth: u32, seed: bool, scope: &Scope) -> PageResult {
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
