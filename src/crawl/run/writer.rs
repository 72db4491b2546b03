//! The writer: pages stored in batches, their vectors reused when the
//! source had them, embedded otherwise.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::process::{self};
use crate::progress::{CrawlStatus, PageCounts};
use crate::store::{Change, PageRecord, PageStatus};

use super::*;

/// Stores page outcomes in batches, each batch in one transaction with the
/// status that counts them; persists the status at least every `FLUSH_EVERY`.
/// It ends when every page task has dropped its sender. On a stop, pages not
/// yet stored are abandoned with the rest of the crawl's unfinished work:
/// what was stored stays, and nothing is stored after the stop.
pub(super) async fn writer(engine: Arc<Engine>, crawl: Arc<Crawl>, mut rx: mpsc::Receiver<PageRecord>) {
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
pub(super) async fn reuse_vectors(engine: &Engine, batch: &mut [PageRecord]) {
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
pub(super) async fn embed_missing(engine: &Engine, crawl: &Crawl, batch: &mut [PageRecord]) -> Option<u64> {
    let complete = |r: &PageRecord| {
        r.chunks.iter().all(|c| c.embedding.is_some()) && r.code_examples.iter().all(|e| e.embedding.is_some())
    };
    // With a fast CPU embedder every vector of a new page was made on the
    // pool already; a slow one makes them behind the crawl (`embedding.rs`).
    if engine.embedder.embeds_behind() || batch.iter().all(complete) {
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

pub(super) async fn flush(
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
    crawl.behind.apply(&mut snapshot, &next);
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
            crawl.progress.update(|s| {
                s.apply_counts(outlook, next);
                crawl.behind.apply(s, &next);
            });
            if !batch.is_empty() {
                crawl.behind.stored();
            }
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
