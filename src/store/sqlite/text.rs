//! Text search on FTS5 with a bounded cost. FTS5 ranks by computing `bm25`
//! for every row that matches, and a query's commonest word can match a
//! fifth of a large store (at 500,000 chunks, text search had a p99 of
//! 368 ms when every matching row was ranked). So the words
//! are weighed first: the rarest are kept while the rows they match stay
//! within [`RANKED_ROWS`], and only those rows are ranked. A word left out
//! is one that many rows share, so its `bm25` weight (its idf) was small.

use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use super::{SearchFilter, StoreError, push_filter};
use crate::store::words::{RANKED_ROWS, kept};

/// A row's rank: `bm25` with weights for the index's columns (content,
/// heading path, title): a word in a chunk's headings says more of what the
/// chunk is about than one in its text. Chosen on `trawl-bench
/// search-quality --text-weights` (the Python manual, 45 questions):
/// headings ×4 and the title ×2 took the text ranking's MRR@10 from 0.53
/// to 0.61 and hybrid's from 0.69 to 0.75, on a plateau (headings ×3 to ×8
/// with the title ×1 to ×4 within 0.004 of it in hybrid).
const RANK: &str = "bm25(chunks_fts, 1.0, 4.0, 2.0)";

/// The rows each word matches, counted up to one past [`RANKED_ROWS`]
/// (reading a word's row list is far cheaper than ranking its rows).
async fn matched_rows(pool: &SqlitePool, words: &[String]) -> Result<Vec<i64>, StoreError> {
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT ");
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            qb.push(", ");
        }
        qb.push("(SELECT count(*) FROM (SELECT 1 FROM chunks_fts WHERE chunks_fts MATCH ")
            .push_bind(w.clone())
            .push(" LIMIT ")
            .push_bind(RANKED_ROWS + 1)
            .push("))");
    }
    let row = qb.build().fetch_one(pool).await?;
    (0..words.len()).map(|i| Ok(row.try_get::<i64, _>(i)?)).collect()
}

/// Chunk ids by `bm25` (higher is better) for the words of `query`.
pub(super) async fn search(
    pool: &SqlitePool,
    query: &str,
    f: &SearchFilter,
    limit: u32,
) -> Result<Vec<(i64, f64)>, StoreError> {
    // Each word quoted as an FTS5 string.
    let words: Vec<String> = crate::store::words::words(query).iter().map(|w| format!("\"{w}\"")).collect();
    if words.is_empty() {
        return Ok(Vec::new());
    }
    let rows = matched_rows(pool, &words).await?;
    let matching = rows.iter().filter(|n| **n > 0).count();
    let (kept, over) = kept(words.clone(), &rows, RANKED_ROWS);
    if kept.is_empty() {
        return Ok(Vec::new());
    }
    let mut hits = ranked(pool, &kept, over, f, limit).await?;
    if hits.len() < limit as usize && (over || kept.len() < matching) {
        // Too few rows have the rare words (or the scope holds few of the
        // capped word's newest rows): fill with rows of any word, ranked
        // after them. Within a scope every row of it is ranked, as before.
        let scoped = f.crawl_id.is_some() || f.source.is_some() || f.tenant.is_some();
        let more = ranked(pool, &words, !scoped, f, limit).await?;
        let floor = hits.last().map_or(f64::MAX, |h| h.1);
        let seen: std::collections::HashSet<i64> = hits.iter().map(|h| h.0).collect();
        let fill = more.into_iter().filter(|h| !seen.contains(&h.0)).map(|(id, s)| (id, s.min(floor)));
        hits.extend(fill.take(limit as usize - hits.len()));
    }
    Ok(hits)
}

/// The best `limit` rows of any of `words` by `bm25`, in the filter's scope;
/// with `capped`, among the newest [`RANKED_ROWS`] rows that match. CROSS
/// JOIN keeps the full-text match the outer loop: with a crawl filter
/// SQLite would otherwise walk the crawl's chunks and run the match once per
/// chunk.
async fn ranked(
    pool: &SqlitePool,
    words: &[String],
    capped: bool,
    f: &SearchFilter,
    limit: u32,
) -> Result<Vec<(i64, f64)>, StoreError> {
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT c.id AS id, m.rank AS rank FROM (SELECT rowid, ");
    qb.push(RANK).push(" AS rank FROM chunks_fts WHERE chunks_fts MATCH ");
    qb.push_bind(words.join(" OR "));
    if capped {
        qb.push(" ORDER BY rowid DESC LIMIT ").push_bind(RANKED_ROWS);
    }
    qb.push(") m CROSS JOIN chunks c ON c.id = m.rowid CROSS JOIN crawls k ON k.id = c.crawl_id WHERE 1");
    push_filter(&mut qb, f, "c");
    qb.push(" ORDER BY rank LIMIT ").push_bind(i64::from(limit));
    let rows = qb.build().fetch_all(pool).await?;
    rows.iter().map(|r| Ok((r.try_get("id")?, -r.try_get::<f64, _>("rank")?))).collect()
}
