//! The registry's side of a shared queue: the dispatcher that claims crawls
//! while this instance has free slots, the heartbeat that learns of stops
//! and takeovers, and launching (or ending) what was claimed.

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;

use crate::cluster::{Claimed, Cluster};
use crate::crawl::request::CrawlRequest;
use crate::crawl::run::{Crawl, ResumeFrom, Slot};
use crate::progress::{CrawlState, CrawlStatus, Progress, Reporter};

use super::*;

impl Registry {
    /// Claims crawls from the shared queue while this instance has free
    /// slots; sleeps until woken (a crawl was enqueued) or the poll interval.
    pub(super) async fn dispatch(self: Arc<Self>, cluster: Arc<Cluster>) {
        let root = self.engine.root.clone();
        loop {
            let permit = tokio::select! {
                _ = root.cancelled() => return,
                p = self.slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            };
            match cluster.claim().await {
                Ok(Some(claimed)) => {
                    self.launch(claimed, permit).await;
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "could not claim from the crawl queue; retrying"),
            }
            drop(permit);
            tokio::select! {
                _ = root.cancelled() => return,
                _ = cluster.woken() => {}
                _ = tokio::time::sleep(cluster.poll_every()) => {}
            }
        }
    }

    /// Beats for this instance, and applies what the database says of its
    /// crawls: stops asked there (a lost notification), takeovers.
    pub(super) async fn heartbeat(self: Arc<Self>, cluster: Arc<Cluster>) {
        let root = self.engine.root.clone();
        let mut tick = tokio::time::interval(cluster.heartbeat_every());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = root.cancelled() => return,
                _ = tick.tick() => {}
            }
            let live: Vec<String> = self.live_map().keys().cloned().collect();
            match cluster.beat(&live).await {
                Ok(beat) => {
                    for id in beat.stopping {
                        self.stop_here(&id);
                    }
                    for id in beat.lost {
                        if let Some(c) = self.live_map().get(&id).cloned() {
                            c.span.in_scope(|| c.lose());
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
            }
        }
    }

    /// Runs a crawl this instance claimed: resumed from what it stored when
    /// taken over, or ended at once when it cannot run.
    pub(super) async fn launch(self: &Arc<Self>, claimed: Claimed, permit: OwnedSemaphorePermit) {
        let Some(cluster) = &self.cluster else { return };
        let Claimed { status, tenant, request, attempts, handoffs } = claimed;
        let takeovers = attempts.saturating_sub(1 + handoffs);
        let id = status.progress_id.clone();
        let span = tracing::info_span!("crawl", progress_id = %id);
        let spec = serde_json::from_str::<CrawlRequest>(&request)
            .map_err(|e| e.to_string())
            .and_then(|r| r.validate(&self.engine.config).map_err(|e| e.to_string()));
        let end = |state: CrawlState, reason: String| self.end_unstarted(status.clone(), tenant.clone(), state, reason);
        if status.status == CrawlState::Stopping {
            return end(CrawlState::Cancelled, "stopped by request".into()).instrument(span).await;
        }
        if takeovers >= cluster.max_attempts() {
            let reason =
                format!("interrupted: the instances running it stopped responding {takeovers} times; giving up");
            return end(CrawlState::Failed, reason).instrument(span).await;
        }
        let spec = match spec {
            Ok(spec) => spec,
            Err(e) => {
                let reason = format!("the stored request cannot run on this instance: {e}");
                return end(CrawlState::Failed, reason).instrument(span).await;
            }
        };
        let resume = if attempts > 1 {
            match self.engine.store.stored_outcomes(&id).await {
                Ok(outcomes) => {
                    let handed = status.status == CrawlState::Queued;
                    span.in_scope(|| match handed {
                        true => {
                            tracing::info!(attempt = attempts, stored = outcomes.len(), "resuming a handed-over crawl")
                        }
                        false => tracing::warn!(
                            attempt = attempts,
                            stored = outcomes.len(),
                            "taking over a crawl whose instance stopped responding"
                        ),
                    });
                    if !handed {
                        metrics::counter!("trawl_crawls_taken_over_total").increment(1);
                    }
                    Some(ResumeFrom::new(outcomes, &status))
                }
                Err(e) => {
                    let reason = format!("interrupted, and its stored pages could not be read to resume it: {e}");
                    return end(CrawlState::Failed, reason).instrument(span).await;
                }
            }
        } else {
            None
        };
        let progress = Progress::new(status.clone());
        let first_id = u64::from(attempts - 1) * EVENT_IDS_PER_ATTEMPT + 1;
        let reporter = Reporter::numbered_from(id.clone(), tenant.clone(), progress.clone(), first_id);
        let crawl = Arc::new(Crawl::new(tenant, spec, self.engine.root.child_token(), progress, reporter, resume));
        metrics::counter!("trawl_crawls_claimed_total").increment(1);
        self.spawn_crawl(crawl, Slot::Held(permit));
    }

    /// Ends a claimed crawl that cannot run: stores its terminal status and
    /// tells its subscribers.
    pub(super) async fn end_unstarted(
        self: &Arc<Self>,
        before: CrawlStatus,
        tenant: Option<String>,
        state: CrawlState,
        reason: String,
    ) {
        let mut fin = before.clone();
        if state == CrawlState::Failed {
            tracing::error!(%reason, "crawl cannot run");
            fin.end(state, format!("failed: {reason}"), Some(reason));
        } else {
            fin.end(state, reason, None);
        }
        if let Err(e) = self.engine.store.save_status(&fin).await {
            tracing::error!(error = %e, "could not store the terminal status");
        }
        self.announce(before, fin, tenant);
    }
}
