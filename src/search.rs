//! Search over what was crawled: text (FTS5 bm25 / PostgreSQL ts_rank_cd), vector (cosine on the
//! configured embedder's vectors), and hybrid, the default: reciprocal rank
//! fusion of the two rankings.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::embed::Embedder;
use crate::store::{ChunkHit, SearchFilter, Store, StoreError};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Hybrid,
    Vector,
    Text,
}

/// How hybrid search fuses its rankings: reciprocal rank fusion, each
/// ranking adding `weight / (k + rank)`; the text ranking's weight is 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fusion {
    /// Damps the weight of the very top ranks: the lower, the more the
    /// first few of each ranking count.
    pub k: f64,
    pub vector_weight: f64,
}

impl Fusion {
    /// For vectors that match meaning (the local model, an OpenAI-compatible
    /// one). Chosen on `trawl-bench search-quality` (the Python manual, 45
    /// questions, the local model) from k ∈ {10, 30, 60} × weight ∈ {0.5,
    /// 0.7, 1, 1.5, 2}: the only setting at or above both rankings on every
    /// measure (recall@5 0.91, MRR@10 0.69, nDCG@10 0.71 against the
    /// vectors' 0.89, 0.66, 0.70 and the text's 0.78, 0.52, 0.55).
    pub const MEANING: Fusion = Fusion { k: 10.0, vector_weight: 1.5 };
    /// For hashed-word vectors, which add little to text search: the usual
    /// constant and equal weights.
    pub const WORDS: Fusion = Fusion { k: 60.0, vector_weight: 1.0 };

    pub fn for_embedder(embedder: &dyn Embedder) -> Self {
        if embedder.matches_meaning() { Self::MEANING } else { Self::WORDS }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Embed(#[from] crate::embed::EmbedError),
}

/// How many searches run at once, and how many may wait for a turn.
#[derive(Debug, Clone)]
pub struct SearchSettings {
    /// Searches running at once; each may read many rows and embed a query.
    pub max_concurrent: usize,
    /// Searches waiting for a turn; one more is refused at once.
    pub max_waiting: usize,
    /// How long a search waits for a turn before it is refused.
    pub max_wait: Duration,
}

impl Default for SearchSettings {
    fn default() -> Self {
        Self { max_concurrent: 4, max_waiting: 32, max_wait: Duration::from_secs(10) }
    }
}

/// The searches of the service take turns here: a few at once, a bounded
/// queue behind them, and a clear refusal past that, so that a burst of
/// searches cannot take all memory or starve the crawls.
pub struct Gate {
    slots: Semaphore,
    waiting: AtomicUsize,
    settings: SearchSettings,
}

/// A search that got no turn.
#[derive(Debug, thiserror::Error)]
#[error("{0}; try again shortly")]
pub struct Busy(String);

impl Gate {
    pub fn new(settings: SearchSettings) -> Self {
        Self { slots: Semaphore::new(settings.max_concurrent.max(1)), waiting: AtomicUsize::new(0), settings }
    }

    /// A turn to search, held while the search runs.
    pub async fn enter(&self) -> Result<SemaphorePermit<'_>, Busy> {
        if let Ok(turn) = self.slots.try_acquire() {
            return Ok(turn);
        }
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let ahead = self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        if ahead >= self.settings.max_waiting {
            metrics::counter!("trawl_searches_refused_total").increment(1);
            return Err(Busy(format!(
                "{} searches are running and {ahead} waiting, the most this service takes",
                self.settings.max_concurrent
            )));
        }
        match tokio::time::timeout(self.settings.max_wait, self.slots.acquire()).await {
            Ok(Ok(turn)) => Ok(turn),
            _ => {
                metrics::counter!("trawl_searches_refused_total").increment(1);
                Err(Busy(format!("no search could start within {:?}", self.settings.max_wait)))
            }
        }
    }
}

/// Reciprocal rank fusion: each list adds `weight / (k + rank)` to its ids.
fn fuse(k: f64, lists: &[(&[(i64, f64)], f64)]) -> Vec<(i64, f64)> {
    let mut fused: HashMap<i64, f64> = HashMap::new();
    for (list, weight) in lists {
        for (rank, (id, _)) in list.iter().enumerate() {
            *fused.entry(*id).or_default() += weight / (k + rank as f64 + 1.0);
        }
    }
    let mut v: Vec<(i64, f64)> = fused.into_iter().collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

/// The best `limit` chunks for `query`, best first.
pub async fn search(
    store: &dyn Store,
    embedder: &dyn Embedder,
    query: &str,
    mode: Mode,
    filter: &SearchFilter,
    limit: u32,
) -> Result<Vec<ChunkHit>, SearchError> {
    let pool = (limit * 4).max(50);
    let embed_query = async {
        Ok::<_, SearchError>(embedder.embed(&[query.to_string()]).await?.into_iter().next().unwrap_or_default())
    };
    let ranked: Vec<(i64, f64)> = match mode {
        Mode::Text => store.search_text(query, filter, pool).await?,
        Mode::Vector => store.search_vector(&embed_query.await?, embedder.model(), filter, pool).await?,
        Mode::Hybrid => {
            let v = embed_query.await?;
            let fusion = Fusion::for_embedder(embedder);
            match store.search_hybrid(query, &v, embedder.model(), filter, fusion, pool, limit).await? {
                Some(fused) => fused,
                None => {
                    let text = store.search_text(query, filter, pool).await?;
                    let vector = store.search_vector(&v, embedder.model(), filter, pool).await?;
                    fuse(fusion.k, &[(&text, 1.0), (&vector, fusion.vector_weight)])
                }
            }
        }
    };
    let top: Vec<(i64, f64)> = ranked.into_iter().take(limit as usize).collect();
    let ids: Vec<i64> = top.iter().map(|(id, _)| *id).collect();
    let mut by_id: HashMap<i64, ChunkHit> =
        store.chunk_hits(&ids).await?.into_iter().map(|h| (h.chunk_id, h)).collect();
    Ok(top
        .into_iter()
        .filter_map(|(id, score)| {
            by_id.remove(&id).map(|mut h| {
                h.score = score;
                h
            })
        })
        .collect())
}
