//! The embedding stage: vectors made behind the crawl, for embedders slow
//! enough to hold it up (the local model). Pages and chunks are stored at
//! crawl speed, searchable by text at once; this task reads the crawl's rows
//! without a vector as the writer stores them, embeds them in small jobs on
//! the rayon pool and stores the vectors, with progress of its own
//! (`chunksEmbedded`, stage `embedding` once every page is stored). The crawl
//! completes when it has caught up; a stop leaves the rest counted in
//! `chunksUnembedded`, for `trawl embed --missing`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::Instant;

use tokio::sync::Notify;

use crate::backoff::{Backoff, Wait};
use crate::progress::{CrawlStatus, PageCounts, Stage};
use crate::store::{After, Unembedded};

use super::*;

/// Texts per job on the pool, two forward passes of the model that run
/// side by side: a stop waits for one job at most (under a second in a
/// release build).
const JOB: usize = 16;
/// Texts per job while the crawl is still storing pages. Jobs run only when
/// the pool has no page to process, but a page that arrives meanwhile waits
/// for the job: a shorter one keeps that wait short (about a quarter of a
/// second in a release build).
const JOB_WHILE_STORING: usize = 3;
/// Rows read from the store per round.
const ROUND: u32 = 256;
/// How often the stage's progress reaches the store (other instances, polls).
const SAVE_EVERY: Duration = Duration::from_secs(1);
/// Waits after the store refused a read.
const RETRY: Backoff = Backoff::constant(Duration::from_millis(500));

/// What the writer and the embedding stage share of one crawl.
#[derive(Default)]
pub(crate) struct Behind {
    /// Woken by the writer after each stored batch, and when it ends.
    wake: Notify,
    stored_all: AtomicBool,
    /// The writer's own counts, which the stage's vectors are added to.
    writer_embedded: AtomicU64,
    writer_unembedded: AtomicU64,
    /// Vectors made here (chunks and code examples) and the chunks among
    /// them (`chunksUnembedded` counts chunks).
    embedded: AtomicU64,
    chunks: AtomicU64,
}

impl Behind {
    /// A batch of pages is in the store.
    pub(super) fn stored(&self) {
        self.wake.notify_one();
    }

    /// Every page is in the store (or the crawl stopped storing).
    pub(super) fn stored_all(&self) {
        self.stored_all.store(true, SeqCst);
        self.wake.notify_one();
    }

    /// The writer's counts in a status, with the vectors made here.
    pub(super) fn apply(&self, s: &mut CrawlStatus, counts: &PageCounts) {
        self.writer_embedded.store(counts.embedded, SeqCst);
        self.writer_unembedded.store(counts.unembedded, SeqCst);
        self.show(s);
    }

    fn show(&self, s: &mut CrawlStatus) {
        s.chunks_embedded = self.writer_embedded.load(SeqCst) + self.embedded.load(SeqCst);
        s.chunks_unembedded = self.writer_unembedded.load(SeqCst).saturating_sub(self.chunks.load(SeqCst));
        if s.stage == Stage::Embedding {
            s.message =
                Some(format!("embedding: {} vectors made, {} chunks to go", s.chunks_embedded, s.chunks_unembedded));
        }
    }
}

/// Runs until every page is stored and has its vectors, or the crawl stops.
pub(super) async fn embed_behind(engine: Arc<Engine>, crawl: Arc<Crawl>) {
    let behind = &crawl.behind;
    let crawl_id = crawl.reporter.crawl_id.clone();
    let mut after = After::default();
    let mut saved = Instant::now();
    let mut retries = RETRY.start();
    loop {
        let storing_done = behind.stored_all.load(SeqCst);
        let read = tokio::select! {
            biased;
            _ = crawl.token.cancelled() => return,
            r = engine.store.unembedded_in(Some(&crawl_id), after, ROUND) => r,
        };
        let rows = match read {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the chunks to embed; trying again");
                if retries.wait(&crawl.token).await != Wait::Again {
                    return;
                }
                continue;
            }
        };
        if rows.is_empty() {
            if storing_done {
                return;
            }
            tokio::select! {
                biased;
                _ = crawl.token.cancelled() => return,
                _ = behind.wake.notified() => continue,
            }
        }
        after = after.past(&rows);
        if storing_done && crawl.progress.snapshot().stage != Stage::Embedding {
            crawl.progress.update(|s| {
                s.stage = Stage::Embedding;
                behind.show(s);
            });
        }
        let mut rows = rows.into_iter();
        loop {
            let size = if behind.stored_all.load(SeqCst) { JOB } else { JOB_WHILE_STORING };
            let job: Vec<Unembedded> = rows.by_ref().take(size).collect();
            if job.is_empty() {
                break;
            }
            if !embed_job(&engine, &crawl, job).await {
                return;
            }
            if storing_done && saved.elapsed() >= SAVE_EVERY {
                saved = Instant::now();
                if let Err(e) = engine.store.save_status(&crawl.progress.snapshot()).await {
                    tracing::debug!(error = %e, "could not persist the embedding progress");
                }
            }
        }
    }
}

/// Embeds one job's texts on the pool, in its idle time (pages come first,
/// of this crawl and any other), and stores their vectors. False when the
/// crawl stopped meanwhile.
async fn embed_job(engine: &Engine, crawl: &Crawl, job: Vec<Unembedded>) -> bool {
    let texts: Vec<String> = job.iter().map(|r| r.text.clone()).collect();
    let (embedder, token) = (engine.embedder.clone(), crawl.token.clone());
    let work = engine.pool.run_behind(&crawl.tracker, move || {
        if token.is_cancelled() {
            return None;
        }
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        embedder.embed_sync(&refs)
    });
    let made = tokio::select! {
        biased;
        _ = crawl.token.cancelled() => return false,
        made = work => made,
    };
    if crawl.token.is_cancelled() {
        return false;
    }
    let vectors = match made {
        Ok(Some(v)) if v.len() == job.len() => v,
        // The embedder said why; these rows stay without vectors.
        _ => return true,
    };
    let pairs: Vec<(Unembedded, Vec<f32>)> = job.into_iter().zip(vectors).collect();
    if with_retry(Some(&crawl.token), || engine.store.set_vectors(&pairs, engine.embedder.model())).await.is_err() {
        return !crawl.token.is_cancelled();
    }
    let chunks = pairs.iter().filter(|(r, _)| !r.code).count() as u64;
    let behind = &crawl.behind;
    crawl.progress.update(|s| {
        behind.embedded.fetch_add(pairs.len() as u64, SeqCst);
        behind.chunks.fetch_add(chunks, SeqCst);
        behind.show(s);
    });
    metrics::counter!("trawl_vectors_made_total").increment(pairs.len() as u64);
    true
}
