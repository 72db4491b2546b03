//! CPU work on fetched pages: pure functions, run on one rayon pool reached
//! through `spawn_blocking`, never on the async threads.
//!
//! - `page`: one page through the pipeline (links, main content as markdown,
//!   chunks, code examples).
//! - `chunk`: markdown chunking (text-splitter).
//! - `code`: code-example extraction; every fence labelled.
//! - `language`: a code block's language, from its markup or a guess.
//! - `main_content`: the main content as markdown, by kind of page (docs or not).
//! - `consensus`: a second extractor confirming readability's blocks.
//! - `html`: whole-body markdown (htmd), the fallback when nothing else finds content.

pub mod chunk;
pub mod code;
pub mod consensus;
pub mod html;
pub mod language;
pub mod main_content;
pub mod page;
pub mod pdf;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use tokio::sync::Notify;
use tokio_util::task::TaskTracker;

pub use chunk::{Chunk, ChunkOptions, ChunkUnit};
pub use code::CodeExample;
pub use html::text_title;
pub use page::{
    Extracted, ProcessOptions, Processed, embedding_inputs, extract_html, extract_pdf, extract_text, links_of,
    process_html, process_text,
};

/// The process-wide rayon pool. Work enters it from a tracked blocking task, so
/// a crawl's tracker also waits for its CPU work, and the async threads never
/// run it.
#[derive(Clone)]
pub struct Pool {
    pool: Arc<rayon::ThreadPool>,
    load: Arc<Load>,
}

/// Foreground jobs queued or running, so that work done behind (vectors made
/// after their pages are stored) runs in the pool's idle time, not ahead of
/// pages.
#[derive(Default)]
struct Load {
    busy: AtomicUsize,
    idle: Notify,
}

/// Counts one foreground job until it ends, however it ends.
struct Busy(Arc<Load>);

impl Busy {
    fn new(load: &Arc<Load>) -> Self {
        load.busy.fetch_add(1, SeqCst);
        Self(load.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// The pool could not start its threads.
#[derive(Debug, thiserror::Error)]
#[error("could not start the processing pool: {0}")]
pub struct PoolError(#[from] rayon::ThreadPoolBuildError);

/// The blocking task ended without a result (it panicked).
#[derive(Debug, thiserror::Error)]
#[error("processing task failed: {0}")]
pub struct TaskFailed(String);

impl Pool {
    pub fn new(threads: Option<usize>) -> Result<Self, PoolError> {
        let mut b = rayon::ThreadPoolBuilder::new().thread_name(|i| format!("trawl-cpu-{i}"));
        if let Some(n) = threads {
            b = b.num_threads(n);
        }
        Ok(Self { pool: Arc::new(b.build()?), load: Arc::default() })
    }

    /// Runs `f` on the pool inside the current tracing span; the task is
    /// tracked by `tracker`.
    pub async fn run<T, F>(&self, tracker: &TaskTracker, f: F) -> Result<T, TaskFailed>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let busy = Busy::new(&self.load);
        let done = self.spawn(tracker, f).await;
        drop(busy);
        done
    }

    /// Runs `f` on the pool once no foreground job (`run`) is queued or
    /// running: work that can wait, such as vectors made behind a crawl,
    /// takes the pool's idle time. Pages arriving meanwhile wait for this one
    /// job at most, so keep it short.
    pub async fn run_behind<T, F>(&self, tracker: &TaskTracker, f: F) -> Result<T, TaskFailed>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.idle().await;
        self.spawn(tracker, f).await
    }

    /// Resolves when no foreground job is queued or running.
    async fn idle(&self) {
        loop {
            let notified = self.load.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.load.busy.load(SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    async fn spawn<T, F>(&self, tracker: &TaskTracker, f: F) -> Result<T, TaskFailed>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let pool = self.pool.clone();
        let span = tracing::Span::current();
        tracker.spawn_blocking(move || span.in_scope(|| pool.install(f))).await.map_err(|e| TaskFailed(e.to_string()))
    }
}
