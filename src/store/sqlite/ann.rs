//! The embedded store's vector index: an HNSW graph (usearch, vectors
//! quantised to i8) over the chunks' vectors of the service's embedder, so
//! that a vector query reads a bounded number of rows whatever the store's
//! size.
//!
//! - The graph is only a guide. Its hits are scored again exactly from the
//!   stored vectors, in the search's scope, so a graph that lags behind the
//!   table can miss a row for a moment but never returns one that is gone
//!   or out of scope.
//! - Triggers queue every chunk whose vector appears, changes or goes
//!   (`vector_changes`, in order); the store's background indexer applies
//!   the queue. Rows queued but not yet applied are scanned exactly by each
//!   search, so a vector is found the moment it is stored.
//! - The graph is kept in a file beside the database (`<db>.vectors`, with
//!   `<db>.vectors.json` naming its model and the last change it holds),
//!   saved once the queue is drained, at most once a minute, and on
//!   shutdown; the queue is trimmed only up to what a saved file holds. On
//!   start the file is loaded; without one, or for another model, the graph
//!   is rebuilt from the table in the background, and searches scan exactly
//!   meanwhile.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::SeqCst};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use sqlx::Row;
use sqlx::sqlite::SqlitePool;
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use super::encoding::from_bytes;
use crate::store::{StoreError, VectorIndexState};

/// Searches the graph can serve at once (usearch keeps a context per
/// search); one beyond that falls back to the exact scan.
const SEARCH_THREADS: usize = 64;
/// Below this many vectors searches scan instead of asking the graph.
const SCAN_BELOW: usize = 5_000;
/// Candidates the graph returns per hit asked for, to be scored exactly.
const CANDIDATES_PER_HIT: usize = 2;
/// The graph's breadth while searching (usearch's `ef`); a search for more
/// candidates than that widens it to their number.
const EXPANSION_SEARCH: usize = 128;
/// How often a graph that changed is saved while changes keep coming.
const SAVE_EVERY: Duration = Duration::from_secs(60);

/// What the file beside the graph says about it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    /// The database's own token (`vector_index.token`): a file left from
    /// another database is not this one's.
    token: String,
    model: String,
    dimensions: usize,
    /// The last change (`vector_changes.seq`) the file holds.
    seq: i64,
}

pub(super) struct VectorIndex {
    /// `<db>.vectors`; none for an in-memory database.
    file: Option<PathBuf>,
    /// The embedder whose vectors are indexed; nothing is until it is named.
    model: OnceLock<String>,
    /// What searches read, once loaded or built.
    graph: RwLock<Option<Arc<Graph>>>,
    /// The indexer's own progress.
    work: tokio::sync::Mutex<Work>,
    /// Whether searches use the graph, and the last change it holds, for
    /// readiness (which must not wait for the indexer).
    ready: AtomicBool,
    held: AtomicI64,
}

pub(super) struct Graph {
    /// Read-locked to search and to add (usearch allows both at once),
    /// write-locked only to grow.
    index: RwLock<Index>,
    dimensions: usize,
    /// The last change the graph holds.
    applied: AtomicI64,
}

#[derive(Default)]
struct Work {
    phase: Phase,
    /// The graph being built, or the one published.
    graph: Option<Arc<Graph>>,
    /// The last change a saved file holds, and when it was saved.
    saved: i64,
    saved_at: Option<Instant>,
    /// The database's token, read on start.
    token: String,
}

#[derive(Default, Clone, Copy)]
enum Phase {
    /// Nothing loaded yet.
    #[default]
    Start,
    /// Rebuilding from the table past chunk `after`; the graph will hold
    /// every change up to `seq` once done.
    Building { after: i64, seq: i64 },
    /// Published; applying the queue.
    Ready,
}

/// Candidates from the graph, and the changes it does not hold yet.
pub(super) struct Candidates {
    pub ids: Vec<i64>,
    /// Changes after this one are to be scanned exactly.
    pub applied: i64,
    /// Whether the graph returned all it was asked for (more may be had).
    pub full: bool,
}

impl VectorIndex {
    pub(super) fn new(file: Option<PathBuf>) -> Self {
        Self {
            file,
            model: OnceLock::new(),
            graph: RwLock::new(None),
            work: Default::default(),
            ready: AtomicBool::new(false),
            held: AtomicI64::new(0),
        }
    }

    /// How far the index is, once a model is named.
    pub(super) async fn state(&self, pool: &SqlitePool) -> Result<Option<VectorIndexState>, StoreError> {
        if !self.enabled() {
            return Ok(None);
        }
        let behind: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM vector_changes WHERE seq > ?")
            .bind(self.held.load(SeqCst))
            .fetch_one(pool)
            .await?;
        let graph = self.graph.read().ok().and_then(|g| g.clone());
        Ok(Some(VectorIndexState {
            ready: self.ready.load(SeqCst),
            vectors: graph.map_or(0, |g| g.len() as u64),
            behind: behind as u64,
        }))
    }

    /// Names the model whose vectors are indexed (the first name holds).
    pub(super) fn set_model(&self, model: &str) {
        let _ = self.model.set(model.to_string());
    }

    pub(super) fn enabled(&self) -> bool {
        self.model.get().is_some()
    }

    /// Up to `want` nearest chunk ids to `vector`, when a graph of `model`
    /// is ready; `None` sends the search to the exact scan.
    pub(super) fn candidates(&self, vector: &[f32], model: &str, want: usize) -> Option<Candidates> {
        if self.model.get().map(String::as_str) != Some(model) {
            return None;
        }
        let graph = self.graph.read().ok()?.clone()?;
        // A small store is scanned exactly in well under a millisecond; the
        // graph pays off, and is only approximate, beyond that.
        if graph.dimensions != vector.len() || graph.len() < SCAN_BELOW {
            return None;
        }
        // Read before searching: a change applied meanwhile is then scanned
        // exactly as well, never missed.
        let applied = graph.applied.load(SeqCst);
        // usearch widens its search to `want` when that is more than `ef`.
        let index = graph.index.read().ok()?;
        match index.search(quantised(vector).as_slice(), want) {
            Ok(m) => Some(Candidates {
                full: m.keys.len() >= want,
                ids: m.keys.into_iter().map(|k| k as i64).collect(),
                applied,
            }),
            Err(e) => {
                tracing::debug!(error = %e, "vector index search failed; scanning instead");
                None
            }
        }
    }

    /// Applies up to `limit` rows of work (loading, rebuilding, or the
    /// queue); returns how many (0: nothing waits). Saves the graph once
    /// the queue is drained.
    pub(super) async fn step(&self, pool: &SqlitePool, writer: &SqlitePool, limit: u32) -> Result<u64, StoreError> {
        let Some(model) = self.model.get() else { return Ok(0) };
        let mut work = self.work.lock().await;
        match work.phase {
            Phase::Start => {
                let seq = last_change(pool).await?;
                work.token = sqlx::query_scalar("SELECT token FROM vector_index").fetch_one(pool).await?;
                match self.load(model, &work.token, seq).await {
                    Some((graph, saved)) => {
                        tracing::info!(vectors = graph.len(), "vector index loaded");
                        work.saved = saved;
                        work.saved_at = Some(Instant::now());
                        self.held.store(saved, SeqCst);
                        work.graph = Some(graph);
                        self.publish(&mut work);
                    }
                    None => {
                        tracing::info!("building the vector index from the stored vectors");
                        work.phase = Phase::Building { after: 0, seq };
                        metrics::gauge!("trawl_vector_index_ready").set(0.0);
                    }
                }
                Ok(1)
            }
            Phase::Building { after, seq } => {
                let rows = sqlx::query(
                    "SELECT id, embedding FROM chunks WHERE id > ? AND model = ? AND embedding IS NOT NULL
                     ORDER BY id LIMIT ?",
                )
                .bind(after)
                .bind(model)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
                let last = rows.last().and_then(|r| r.try_get::<i64, _>("id").ok());
                let batch: Vec<(i64, Option<Vec<f32>>)> = rows
                    .iter()
                    .filter_map(|r| {
                        Some((r.try_get("id").ok()?, r.try_get::<&[u8], _>("embedding").ok().map(from_bytes)))
                    })
                    .collect();
                let n = batch.len() as u64;
                self.apply(&mut work, batch).await?;
                match last {
                    Some(after) if n >= u64::from(limit) => work.phase = Phase::Building { after, seq },
                    _ => {
                        if let Some(g) = &work.graph {
                            g.applied.store(seq, SeqCst);
                        }
                        self.held.store(seq, SeqCst);
                        work.saved = -1;
                        self.publish(&mut work);
                        tracing::info!(vectors = work.graph.as_ref().map_or(0, |g| g.len()), "vector index built");
                    }
                }
                Ok(n.max(1))
            }
            Phase::Ready => {
                let applied = self.held.load(SeqCst);
                let rows = sqlx::query(
                    "SELECT v.seq AS seq, v.chunk_id AS id, c.embedding AS embedding, c.model AS model
                     FROM vector_changes v LEFT JOIN chunks c ON c.id = v.chunk_id
                     WHERE v.seq > ? ORDER BY v.seq LIMIT ?",
                )
                .bind(applied)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
                let Some(seq) = rows.last().and_then(|r| r.try_get::<i64, _>("seq").ok()) else {
                    self.save_if_due(&mut work, writer, false).await;
                    return Ok(0);
                };
                let batch: Vec<(i64, Option<Vec<f32>>)> = rows
                    .iter()
                    .filter_map(|r| {
                        let id = r.try_get("id").ok()?;
                        let ours = r.try_get::<Option<String>, _>("model").ok().flatten().as_deref() == Some(model);
                        let v = r.try_get::<Option<&[u8]>, _>("embedding").ok().flatten().filter(|_| ours);
                        Some((id, v.map(from_bytes)))
                    })
                    .collect();
                let had_graph = work.graph.is_some();
                self.apply(&mut work, batch).await?;
                if let Some(g) = &work.graph {
                    g.applied.store(seq, SeqCst);
                }
                self.held.store(seq, SeqCst);
                if !had_graph {
                    // The first vector made the graph: searches may read it now.
                    self.publish(&mut work);
                }
                Ok(rows.len() as u64)
            }
        }
    }

    /// Puts rows in the graph (a vector) or takes them out (none), making
    /// the graph on the first vector.
    async fn apply(&self, work: &mut Work, batch: Vec<(i64, Option<Vec<f32>>)>) -> Result<(), StoreError> {
        if work.graph.is_none() {
            let Some(dimensions) = batch.iter().find_map(|(_, v)| v.as_ref().map(Vec::len)) else { return Ok(()) };
            work.graph = Some(Arc::new(Graph::new(dimensions)?));
        }
        let Some(graph) = work.graph.clone() else { return Ok(()) };
        tokio::task::spawn_blocking(move || graph.apply(&batch)).await.map_err(fail)?
    }

    /// Lets searches read the graph.
    fn publish(&self, work: &mut Work) {
        work.phase = Phase::Ready;
        if let Some(g) = &work.graph {
            metrics::gauge!("trawl_vector_index_vectors").set(g.len() as f64);
        }
        metrics::gauge!("trawl_vector_index_ready").set(1.0);
        self.ready.store(true, SeqCst);
        let mut published = self.graph.write().unwrap_or_else(|e| e.into_inner());
        *published = work.graph.clone();
    }

    /// The saved graph of `model`, if a readable one of this database is
    /// there; `last` is the database's last queued change.
    async fn load(&self, model: &str, token: &str, last: i64) -> Option<(Arc<Graph>, i64)> {
        let file = self.file.clone()?;
        let saved: Saved = serde_json::from_slice(&std::fs::read(meta_path(&file)).ok()?).ok()?;
        if saved.token != token {
            tracing::info!("the saved vector index is another database's; rebuilding it");
            return None;
        }
        if saved.seq > last {
            // The database is older than the graph (restored from a backup).
            tracing::info!("the saved vector index is newer than the database; rebuilding it");
            return None;
        }
        if saved.model != model {
            tracing::info!(saved = %saved.model, model, "the saved vector index is of another model");
            return None;
        }
        let loaded = tokio::task::spawn_blocking(move || {
            let graph = Graph::new(saved.dimensions).ok()?;
            let path = file.to_str()?;
            let index = graph.index.read().ok()?;
            match index.load(path) {
                Ok(()) if index.dimensions() == saved.dimensions => {}
                Ok(()) => return None,
                Err(e) => {
                    tracing::warn!(error = %e, "the saved vector index is unreadable; rebuilding it");
                    return None;
                }
            }
            index.change_expansion_search(EXPANSION_SEARCH);
            // Room to grow, and a context per concurrent search.
            let _ = index.reserve_capacity_and_threads(index.size().max(1024) * 2, SEARCH_THREADS);
            drop(index);
            graph.applied.store(saved.seq, SeqCst);
            Some((Arc::new(graph), saved.seq))
        })
        .await
        .ok()??;
        Some(loaded)
    }

    /// Saves what the graph holds now (on shutdown).
    pub(super) async fn flush(&self, writer: &SqlitePool) {
        let mut work = self.work.lock().await;
        if matches!(work.phase, Phase::Ready) {
            self.save_if_due(&mut work, writer, true).await;
        }
    }

    /// Saves a changed graph once the queue is drained (at most once a
    /// minute, or at once when `flush`), then trims the queue to it.
    async fn save_if_due(&self, work: &mut Work, writer: &SqlitePool, flush: bool) {
        let Some(model) = self.model.get() else { return };
        let applied = self.held.load(SeqCst);
        let due = flush || work.saved_at.is_none_or(|at| at.elapsed() >= SAVE_EVERY);
        if applied <= work.saved || !due {
            return;
        }
        let saved = match (&self.file, &work.graph) {
            (Some(file), Some(graph)) => {
                let meta = Saved {
                    token: work.token.clone(),
                    model: model.clone(),
                    dimensions: graph.dimensions,
                    seq: applied,
                };
                let (file, graph) = (file.clone(), graph.clone());
                let done = tokio::task::spawn_blocking(move || graph.save(&file, &meta)).await;
                match done {
                    Ok(Ok(())) => true,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "could not save the vector index");
                        false
                    }
                    Err(_) => false,
                }
            }
            // Nothing to keep: an in-memory database, or no vector yet.
            _ => true,
        };
        work.saved_at = Some(Instant::now());
        if !saved {
            return;
        }
        work.saved = applied;
        if let Err(e) = sqlx::query("DELETE FROM vector_changes WHERE seq <= ?").bind(applied).execute(writer).await {
            tracing::debug!(error = %e, "could not trim the vector index's queue");
        }
    }
}

impl Graph {
    fn new(dimensions: usize) -> Result<Self, StoreError> {
        let options =
            IndexOptions { dimensions, metric: MetricKind::Cos, quantization: ScalarKind::I8, ..Default::default() };
        let index = Index::new(&options).map_err(fail)?;
        index.change_expansion_search(EXPANSION_SEARCH);
        index.reserve_capacity_and_threads(1024, SEARCH_THREADS).map_err(fail)?;
        Ok(Self { index: RwLock::new(index), dimensions, applied: AtomicI64::new(0) })
    }

    fn len(&self) -> usize {
        self.index.read().map_or(0, |i| i.size())
    }

    /// Replaces each row's vector, or removes the row. Under the write
    /// lock: a removed slot is reused by the next insert, which a concurrent
    /// search must not be walking; and a save waits for it. Inserts run on
    /// one thread: from several at once (even into a graph no search reads
    /// yet) usearch left some rows unreachable by any search (the test
    /// below), so a rebuild takes longer but finds every row.
    fn apply(&self, batch: &[(i64, Option<Vec<f32>>)]) -> Result<(), StoreError> {
        let index = self.index.write().unwrap_or_else(|e| e.into_inner());
        let needed = index.size() + batch.len();
        if needed > index.capacity() {
            let capacity = needed.max(index.capacity() * 2);
            index.reserve_capacity_and_threads(capacity, SEARCH_THREADS).map_err(fail)?;
        }
        // Each row once (its last change: all carry its current state).
        let mut seen = std::collections::HashSet::new();
        let rows: Vec<&(i64, Option<Vec<f32>>)> = batch.iter().rev().filter(|(id, _)| seen.insert(*id)).collect();
        for (id, _) in &rows {
            if index.contains(*id as u64) {
                index.remove(*id as u64).map_err(fail)?;
            }
        }
        let adds: Vec<(u64, Vec<i8>)> = rows
            .iter()
            .filter_map(|(id, v)| Some((*id as u64, quantised(v.as_ref().filter(|v| v.len() == self.dimensions)?))))
            .collect();
        for (key, v) in &adds {
            index.add(*key, v.as_slice()).map_err(fail)?;
        }
        metrics::gauge!("trawl_vector_index_vectors").set(index.size() as f64);
        Ok(())
    }

    /// Writes the graph and what it holds, each renamed into place.
    fn save(&self, file: &std::path::Path, meta: &Saved) -> Result<(), StoreError> {
        let io = |e: std::io::Error| StoreError::Corrupt(format!("vector index file: {e}"));
        let staged = file.with_extension("vectors.partial");
        let path = staged.to_str().ok_or_else(|| StoreError::Corrupt("vector index path is not UTF-8".into()))?;
        self.index.read().unwrap_or_else(|e| e.into_inner()).save(path).map_err(fail)?;
        let staged_meta = file.with_extension("vectors.json.partial");
        std::fs::write(&staged_meta, serde_json::to_vec(meta).unwrap_or_default()).map_err(io)?;
        // The graph first: a crash between the renames leaves an older
        // `seq` beside a newer graph, and replaying changes is harmless.
        std::fs::rename(&staged, file).map_err(io)?;
        std::fs::rename(&staged_meta, meta_path(file)).map_err(io)?;
        Ok(())
    }
}

fn fail(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("vector index: {e}"))
}

/// `<db>.vectors.json`, beside `<db>.vectors`.
fn meta_path(file: &std::path::Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}

/// The graph's file for a database file.
pub(super) fn file_for(database: &std::path::Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".vectors");
    PathBuf::from(name)
}

/// The last change ever queued (the queue's rows may have been trimmed).
async fn last_change(pool: &SqlitePool) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar("SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'vector_changes'), 0)")
        .fetch_one(pool)
        .await?)
}

/// A vector as i8, scaled so that its largest component is 127, then
/// rounded. The cosine does not see the scale, so each vector gets the
/// whole range: usearch's own cast truncates `x * 127`, which leaves a
/// normalised 384-d vector (components near 0.05) about 6 levels.
fn quantised(v: &[f32]) -> Vec<i8> {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    if max == 0.0 || !max.is_finite() {
        return vec![0; v.len()];
    }
    let scale = 127.0 / max;
    v.iter().map(|x| (x * scale).round().clamp(-127.0, 127.0) as i8).collect()
}

/// Candidates to ask the graph for, for `limit` hits.
pub(super) fn want(limit: u32) -> usize {
    (limit as usize * CANDIDATES_PER_HIT).max(EXPANSION_SEARCH / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(seed: u64, dims: usize) -> Vec<f32> {
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let v: Vec<f32> = (0..dims)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((x >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect();
        let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
        v.into_iter().map(|a| a / n).collect()
    }

    #[test]
    fn quantised_vectors_use_the_whole_range_and_keep_their_direction() {
        let v = unit(7, 384);
        let q = quantised(&v);
        assert_eq!(q.iter().map(|x| x.unsigned_abs()).max(), Some(127));
        let dot: f32 = v.iter().zip(&q).map(|(a, b)| a * f32::from(*b)).sum();
        let norm = q.iter().map(|b| f32::from(*b).powi(2)).sum::<f32>().sqrt();
        assert!(dot / norm > 0.999, "cosine {}", dot / norm);
        assert_eq!(quantised(&[0.0; 4]), vec![0; 4]);
    }

    /// Searched as wide as the graph is large, every kept row must be found
    /// (no insert or removal may cut a row off the graph) and no removed row
    /// may come back. Inserts from two threads at once failed this in about
    /// one run of three, leaving rows no search reaches: they run on one.
    #[test]
    fn graph_finds_each_vector_after_removals_and_re_adds() {
        let g = Graph::new(64).unwrap();
        let batch: Vec<(i64, Option<Vec<f32>>)> = (0..600).map(|i| (i, Some(unit(i as u64, 64)))).collect();
        g.apply(&batch).unwrap();
        let again: Vec<(i64, Option<Vec<f32>>)> = (0..300).map(|i| (i, Some(unit(i as u64, 64)))).collect();
        g.apply(&again).unwrap();
        let gone: Vec<(i64, Option<Vec<f32>>)> = (300..400).map(|i| (i, None)).collect();
        g.apply(&gone).unwrap();
        let index = g.index.read().unwrap();
        index.change_expansion_search(600);
        let removed = 300u64..400;
        let mut missed = 0;
        for i in (0..600u64).filter(|i| !removed.contains(i)) {
            let m = index.search(quantised(&unit(i, 64)).as_slice(), 10).unwrap();
            assert!(!m.keys.iter().any(|k| removed.contains(k)), "a removed row came back for {i}: {:?}", m.keys);
            if m.keys.first() != Some(&i) {
                missed += 1;
            }
        }
        assert_eq!(index.size(), 500);
        assert_eq!(missed, 0, "rows that were not their own nearest neighbour");
    }
}
