//! One crawl, start to end: discovery, the walk over a continuous frontier,
//! page tasks, and the writer that stores their outcomes.
//!
//! A page starts as soon as one of the crawl's slots is free, whatever its
//! depth; the frontier hands out the shallowest URL waiting. A slow page
//! holds up only itself, and `maxDepth` bounds the shortest hop count known
//! (a URL a shorter path reaches later moves up). Which URLs a `maxPages`
//! budget admits depends on which pages answered first.
//!
//! Every task of a crawl is spawned on the crawl's `TaskTracker` and races the
//! crawl's token, so a stop drops in-flight requests at once. The orchestrator
//! waits for the tracker before it writes the terminal status; nothing is
//! stored after that.
//!
//! - `state`: the engine every crawl shares and one crawl's state.
//! - `walk`: the frontier, the walk over it, and its page tasks.
//! - `seeds`: what a crawl starts from (its type detected, sitemaps, llms.txt).
//! - `page`: one page, fetched or rendered, processed or kept as it was.
//! - `writer`: the batch writer, with the vectors reused or embedded.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::backoff::{Backoff, Wait, pause};
use crate::progress::{CrawlState, CrawlStatus, Limit, Stage};
use crate::sync::LockExt;

mod embedding;
mod frontier;
mod page;
mod seeds;
mod state;
mod walk;
mod writer;

use page::*;
use seeds::*;
pub use state::Engine;
pub(crate) use state::{Crawl, ResumeFrom, Slot};
use walk::*;
use writer::*;

/// Page outcomes buffered between page tasks and the writer.
const PAGE_CHANNEL: usize = 512;
/// Pages per store transaction.
const WRITE_BATCH: usize = 64;
/// How often the writer flushes and persists the status while a crawl runs.
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// The status row is written at least this often while a crawl runs, even
/// when nothing changed: readers (and other instances) see it is alive.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How a store write is retried before the crawl fails: for long enough to
/// ride out a database restart or failover.
const STORE_RETRY: Backoff =
    Backoff::exponential(Duration::from_millis(50), Duration::from_secs(2)).for_at_most(Duration::from_secs(30));
/// How often a terminal status the store refused is offered again.
const TERMINAL_RETRY: Backoff = Backoff::constant(Duration::from_secs(2));
/// Sitemap documents read per crawl, at most (indexes of indexes).
const MAX_SITEMAP_DOCS: usize = 1000;

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
            let (writes, stored) = (engine.clone(), crawl.clone());
            let writing = async move {
                writer(writes, stored.clone(), rx).await;
                stored.behind.stored_all();
            };
            crawl.tracker.spawn(writing.instrument(crawl.span.clone()));
            if engine.embedder.embeds_behind() {
                crawl
                    .tracker
                    .spawn(embedding::embed_behind(engine.clone(), crawl.clone()).instrument(crawl.span.clone()));
            }
            let outcome = tokio::select! {
                biased;
                _ = crawl.token.cancelled() => Outcome::Stopped,
                o = walk(&engine, &crawl, tx) => o,
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
    let mut tries = TERMINAL_RETRY.start();
    loop {
        if tries.wait(&engine.root).await != Wait::Again {
            return false;
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

/// Retries a store write under [`STORE_RETRY`]; a brief outage must not
/// lose a crawl. Gives up when the policy does, or instead of retrying once
/// `stop` is cancelled (a stopped crawl abandons what it had not stored).
async fn with_retry<F, Fut>(stop: Option<&CancellationToken>, mut f: F) -> Result<(), crate::store::StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), crate::store::StoreError>>,
{
    let mut tries = STORE_RETRY.start();
    loop {
        // An attempt is never cut short: a commit in flight must be known to
        // have landed or not, or the counters could disagree with the rows.
        let e = match f().await {
            Ok(()) => return Ok(()),
            Err(e) if !e.is_transient() => return Err(e),
            Err(e) => e,
        };
        let attempt = tries.attempt();
        let Some(delay) = tries.next_delay() else { return Err(e) };
        tracing::warn!(error = %e, attempt, retry_in_ms = delay.as_millis() as u64, "store write failed; retrying");
        match stop {
            Some(token) if !pause(token, delay).await => return Err(crate::store::StoreError::Abandoned),
            Some(_) => {}
            None => tokio::time::sleep(delay).await,
        }
    }
}
