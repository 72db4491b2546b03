//! The walk over a continuous frontier (`frontier.rs`), breadth-first in
//! spirit. A page starts as soon as a slot is free, whatever its depth; the
//! frontier hands out the shallowest URL waiting, and a URL a shorter path
//! reaches later moves up (or, done already, has its links followed again
//! from there), so `maxDepth` bounds the shortest hop count known.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;
use tracing::Instrument;
use url::Url;

use crate::crawl::discover::{self};
use crate::crawl::hosts::HostPermit;
use crate::crawl::request::CrawlType;
use crate::crawl::robots::Robots;
use crate::crawl::scope::Scope;
use crate::progress::{Limit, Outlook, Stage};
use crate::store::{PageRecord, PageStatus};
use crate::sync::LockExt;

use super::frontier::{Frontier, Growth, Waiting};
use super::*;

/// What page tasks share.
pub(super) struct Ctx {
    pub(super) engine: Arc<Engine>,
    pub(super) crawl: Arc<Crawl>,
    pub(super) robots: Robots,
    /// The crawl's name among the crawls waiting for a host.
    pub(super) host_key: Arc<str>,
    pub(super) pages: mpsc::Sender<PageRecord>,
    /// The crawl follows links: pages keep theirs, for a resume.
    pub(super) follow: AtomicBool,
}

impl Ctx {
    /// This crawl's turn at `url`'s host: held while the request runs.
    pub(super) async fn host_turn(&self, url: &Url, delay: std::time::Duration) -> HostPermit {
        self.engine.hosts.acquire(&self.host_key, &self.crawl.tracker, url, delay).await
    }

    /// A request of the crawl's own rather than a page's (robots.txt, the
    /// start URL's type, sitemaps, link lists): in the host's turn, with the
    /// crawl's login, a 2xx body downloaded.
    pub(super) async fn get(
        &self,
        url: &Url,
        in_scope: &(dyn Fn(&Url) -> bool + Sync),
    ) -> Result<crate::crawl::fetch::Fetched, crate::crawl::fetch::FetchError> {
        let _turn = self.host_turn(url, self.engine.config.politeness_delay).await;
        let want = |status: u16, _: Option<&str>| (200..300).contains(&status);
        let login = self.crawl.spec.login.as_deref();
        self.engine.fetcher.fetch_if_changed(url, login, in_scope, &want, &Default::default()).await
    }

    /// The rules of robots.txt for `url`, read on first use.
    pub(super) async fn robots_for(&self, url: &Url) -> Arc<crate::crawl::robots::Rules> {
        self.robots.rules_for(url, async |u: Url| self.get(&u, &|_| true).await).await
    }
}

/// What a crawled page hands back to the walk.
#[derive(Default, Clone)]
pub(super) struct PageResult {
    pub(super) final_url: Option<Url>,
    pub(super) links: Vec<Url>,
}

pub(super) async fn walk(engine: &Arc<Engine>, crawl: &Arc<Crawl>, pages: mpsc::Sender<PageRecord>) -> Outcome {
    let spec = &crawl.spec;
    let ctx = Arc::new(Ctx {
        engine: engine.clone(),
        crawl: crawl.clone(),
        robots: Robots::new(&engine.config.user_agent),
        host_key: Arc::from(crawl.reporter.crawl_id.as_str()),
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
    let max_depth = if follow { spec.max_depth } else { 0 };
    let mut scope = Arc::new(spec.scope.clone());
    let mut frontier = Frontier::new(u64::from(spec.max_pages), max_depth, crawl.resume.as_ref());
    for u in seeds {
        if seeds_are_start || scope.allows(&u) {
            frontier.admit(&u, 0);
        }
    }
    let depth = follow.then_some((0, spec.max_depth));
    crawl.set_outlook(Outlook { admitted: frontier.admitted, depth, ..Outlook::default() });
    crawl.stage(Stage::Crawling, format!("crawling {} URLs", frontier.admitted));

    // A page starts as soon as a slot is free, whatever its depth: a slow
    // page holds up only itself.
    // Each running task sends once, so the channel never holds more than
    // `concurrency` ends and a send never waits.
    let (tx, mut rx) = mpsc::channel::<(Waiting, Option<PageResult>)>(spec.concurrency.max(1));
    let mut growth = Growth::default();
    let (mut running, mut replayed) = (0usize, 0u64);
    let token = crawl.token.clone();
    loop {
        while running < spec.concurrency && !token.is_cancelled() {
            let Some(w) = frontier.pop() else { break };
            // Stored by an earlier run of this crawl: its outcome is known.
            if let Some(r) = crawl.resume.as_ref().and_then(|r| r.result(&w.url)) {
                settle(&ctx, &mut frontier, &mut scope, &mut growth, w, Some(r), seeds_are_start);
                replayed += 1;
                if replayed % 256 == 0 {
                    // A long replay leaves the async thread to others now and then.
                    tokio::task::yield_now().await;
                }
                continue;
            }
            if !w.revisit {
                crawl.progress.update(|s| s.current_url = Some(w.url.to_string()));
            }
            let (ctx2, scope2) = (ctx.clone(), scope.clone());
            let seed = seeds_are_start && w.depth == 0 && !w.revisit;
            let (url, depth, revisit) = (w.url.clone(), w.depth, w.revisit);
            let report = Report { tx: tx.clone(), waiting: Some(w) };
            let task = async move {
                let token = ctx2.crawl.token.clone();
                let result = tokio::select! {
                    biased;
                    _ = token.cancelled() => None,
                    r = async {
                        if revisit {
                            links_again(&ctx2, &url, &scope2).await
                        } else {
                            page_task(&ctx2, url, depth, seed, &scope2).await
                        }
                    } => Some(r),
                };
                report.send(result);
            };
            crawl.tracker.spawn(task.in_current_span());
            running += 1;
        }
        if running == 0 {
            break;
        }
        tokio::select! {
            biased;
            _ = token.cancelled() => break,
            Some((w, r)) = rx.recv() => {
                running -= 1;
                settle(&ctx, &mut frontier, &mut scope, &mut growth, w, r, seeds_are_start);
            }
        }
    }
    if frontier.cut {
        // The budget outranks maxDepth: it is what stopped the walk first.
        *crawl.limit.locked() = Some(Limit::MaxPages);
    }
    Outcome::Finished
}

/// A page task's end, sent when the task ends whichever way (a panic
/// included), so the walk never waits for a slot that is free.
struct Report {
    tx: mpsc::Sender<(Waiting, Option<PageResult>)>,
    waiting: Option<Waiting>,
}

impl Report {
    fn send(mut self, result: Option<PageResult>) {
        if let Some(w) = self.waiting.take() {
            let _ = self.tx.try_send((w, result));
        }
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        if let Some(w) = self.waiting.take() {
            let _ = self.tx.try_send((w, None));
        }
    }
}

/// Keeps a page's first `cap` links; returns how many were cut.
pub(super) fn cap_links(links: &mut Vec<Url>, cap: usize) -> u32 {
    let cut = links.len().saturating_sub(cap);
    links.truncate(cap);
    u32::try_from(cut).unwrap_or(u32::MAX)
}

/// Takes a finished page's links on (from the shortest depth known for it).
fn settle(
    ctx: &Ctx,
    frontier: &mut Frontier,
    scope: &mut Arc<Scope>,
    growth: &mut Growth,
    w: Waiting,
    result: Option<PageResult>,
    seeds_are_start: bool,
) {
    let depth = frontier.finish(&w);
    let crawl = &ctx.crawl;
    let Some(r) = result else { return };
    let follow = ctx.follow.load(Ordering::Relaxed);
    if !follow {
        return;
    }
    if seeds_are_start && w.depth == 0 && !w.revisit {
        // The start page may have moved (http → https, apex → www): its
        // final host joins the scope.
        if let Some(f) = &r.final_url {
            let mut s = (**scope).clone();
            s.add_host_of(f);
            *scope = Arc::new(s);
        }
    }
    let max_depth = crawl.spec.max_depth;
    if depth < max_depth {
        let new = r.links.iter().filter(|u| scope.allows(u) && frontier.admit(u, depth + 1)).count();
        if !w.revisit {
            growth.record(new as u64);
        }
    } else if r.links.iter().any(|u| !frontier.contains(u) && scope.allows(u)) {
        crawl.limit.locked().get_or_insert(Limit::MaxDepth);
    }
    crawl.set_outlook(growth.outlook(frontier, frontier.front().unwrap_or(depth)));
}

pub(super) async fn page_task(ctx: &Ctx, url: Url, depth: u32, seed: bool, scope: &Scope) -> PageResult {
    let (mut record, mut result) = crawl_page(ctx, url, depth, seed, scope).await;
    if ctx.follow.load(Ordering::Relaxed) {
        record.links_cut = cap_links(&mut result.links, ctx.engine.config.max_links_per_page);
        // The record keeps the same links, in the same order, as strings.
        record.links.truncate(result.links.len());
    }
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
