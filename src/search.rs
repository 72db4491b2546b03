//! Search over what was crawled: text (FTS5 bm25 / PostgreSQL ts_rank_cd), vector (cosine on the
//! configured embedder's vectors), and hybrid, the default: a fusion of the
//! two rankings (`Fusion`), in Rust for both stores.

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

/// How hybrid search fuses its two rankings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fusion {
    /// Reciprocal rank fusion: each ranking adds `weight / (k + rank)`, the
    /// text ranking's weight 1. `k` damps the very top ranks: the lower, the
    /// more the first few of each ranking count.
    Ranks { k: f64, vector_weight: f64 },
    /// A convex combination of the scores: `(1 - a)·text + a·vector`, each
    /// ranking's scores min-max normalised over its pool (a row one ranking
    /// lacks gets that ranking's lowest). Scores keep how far ahead a row
    /// is, which ranks throw away.
    Scores { vector_share: f64 },
}

impl Fusion {
    /// For vectors that match meaning (the local model, an OpenAI-compatible
    /// one): 0.4 × the text's score + 0.6 × the vectors'. Chosen on
    /// `trawl-bench search-quality --fusions --text-weights` (the Python
    /// manual, 45 questions, the local model) over shares 0.1 … 0.8 and RRF
    /// with k ∈ {10, 30, 60} × weight ∈ {0.5 … 2}: within a plateau (shares
    /// 0.55 to 0.7 within 0.002 of each other in MRR@10), the share whose
    /// recall@5, MRR@10 and nDCG@10 are all at least the vectors' alone
    /// (figures in the README).
    pub const MEANING: Fusion = Fusion::Scores { vector_share: 0.6 };
    /// For hashed-word vectors, which add little to text search: the text's
    /// scores, the vectors only breaking near-ties. On the same questions
    /// with `--embedder lexical`: recall@5 0.756, MRR@10 0.647, nDCG@10
    /// 0.632, against the text's 0.756, 0.644, 0.625; a share of 0.1
    /// already costs MRR (0.601), and RRF more (k 60, equal weights: 0.47).
    pub const WORDS: Fusion = Fusion::Scores { vector_share: 0.02 };

    pub fn for_embedder(embedder: &dyn Embedder) -> Self {
        if embedder.matches_meaning() { Self::MEANING } else { Self::WORDS }
    }

    /// Fuses `text` and `vector` (ids with their scores, best first), best
    /// first.
    pub fn fuse(self, text: &[(i64, f64)], vector: &[(i64, f64)]) -> Vec<(i64, f64)> {
        let mut fused: HashMap<i64, f64> = HashMap::new();
        match self {
            Fusion::Ranks { k, vector_weight } => {
                for (list, weight) in [(text, 1.0), (vector, vector_weight)] {
                    for (rank, (id, _)) in list.iter().enumerate() {
                        *fused.entry(*id).or_default() += weight / (k + rank as f64 + 1.0);
                    }
                }
            }
            Fusion::Scores { vector_share } => {
                for (list, weight) in [(text, 1.0 - vector_share), (vector, vector_share)] {
                    let (low, high) =
                        list.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), (_, s)| (l.min(*s), h.max(*s)));
                    // One row, or rows all alike: each counts in full.
                    let span = high - low;
                    for (id, score) in list {
                        let normalised = if span > 1e-12 { (score - low) / span } else { 1.0 };
                        *fused.entry(*id).or_default() += weight * normalised;
                    }
                }
            }
        }
        let mut v: Vec<(i64, f64)> = fused.into_iter().collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v
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

/// The best `limit` chunks for `query`, best first.
/// Candidates per ranking at least (see [`search`]).
const POOL: u32 = 50;

pub async fn search(
    store: &dyn Store,
    embedder: &dyn Embedder,
    query: &str,
    mode: Mode,
    filter: &SearchFilter,
    limit: u32,
) -> Result<Vec<ChunkHit>, SearchError> {
    // Each ranking's candidates: hybrid normalises scores over them, so a
    // pool that grew with the limit would reorder the first results when
    // more are asked for; up to 50 results, it does not.
    let pool = limit.max(POOL);
    let embed_query = async {
        Ok::<_, SearchError>(embedder.embed(&[query.to_string()]).await?.into_iter().next().unwrap_or_default())
    };
    let ranked: Vec<(i64, f64)> = match mode {
        Mode::Text => store.search_text(query, filter, pool).await?,
        Mode::Vector => store.search_vector(&embed_query.await?, embedder.model(), filter, pool).await?,
        Mode::Hybrid => {
            // The text half reads while the query is embedded, and both
            // halves on connections of their own.
            let vector = async {
                let v = embed_query.await?;
                Ok::<_, SearchError>(store.search_vector(&v, embedder.model(), filter, pool).await?)
            };
            let text = async { Ok::<_, SearchError>(store.search_text(query, filter, pool).await?) };
            let (text, vector) = tokio::try_join!(text, vector)?;
            Fusion::for_embedder(embedder).fuse(&text, &vector)
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

#[cfg(test)]
mod tests {
    use super::Fusion;

    #[test]
    fn a_fusion_of_scores_normalises_each_ranking_then_weighs_them() {
        let text = [(1, 10.0), (2, 5.0), (3, 0.0)];
        let vector = [(3, 0.9), (2, 0.5), (4, 0.1)];
        let fused = Fusion::Scores { vector_share: 0.25 }.fuse(&text, &vector);
        // 1: 0.75·1; 2: 0.75·0.5 + 0.25·0.5; 3: 0.75·0 + 0.25·1; 4: 0.25·0.
        let expected = [(1, 0.75), (2, 0.5), (3, 0.25), (4, 0.0)];
        assert_eq!(fused.len(), expected.len());
        for ((id, score), (want_id, want)) in fused.iter().zip(expected) {
            assert_eq!(*id, want_id);
            assert!((score - want).abs() < 1e-12, "{id}: {score}");
        }
        // A lone hit counts in full; no hits add nothing.
        assert_eq!(Fusion::Scores { vector_share: 0.25 }.fuse(&[(7, 3.0)], &[]), vec![(7, 0.75)]);
    }

    #[test]
    fn rank_fusion_adds_each_rankings_weighted_reciprocal_rank() {
        let fused = Fusion::Ranks { k: 60.0, vector_weight: 2.0 }.fuse(&[(1, 9.0), (2, 8.0)], &[(2, 0.9)]);
        assert_eq!(fused[0].0, 2);
        assert!((fused[0].1 - (1.0 / 62.0 + 2.0 / 61.0)).abs() < 1e-12);
        assert!((fused[1].1 - 1.0 / 61.0).abs() < 1e-12);
    }
}
