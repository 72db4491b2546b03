//! Text search on FTS5 with a bounded cost. FTS5 ranks by computing `bm25`
//! for every row that matches, and a query's commonest word can match a
//! fifth of a large store (at 500,000 chunks, text search had a p99 of
//! 368 ms when every matching row was ranked). So the words
//! are weighed first: the rarest are kept while the rows they match stay
//! within [`RANKED_ROWS`], and only those rows are ranked. A word left out
//! is one that many rows share, so its `bm25` weight (its idf) was small.

use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use super::{SearchFilter, StoreError, push_filter};

/// Rows that one text search ranks at most (text search alone at 500,000
/// chunks: p50 41 ms, p99 59 ms in `trawl-bench store`).
const RANKED_ROWS: i64 = 20_000;

/// A row's rank: `bm25` with weights for the index's columns (content,
/// heading path, title). A
/// word in a chunk's headings says more of what the chunk is about than one
/// in its text. Chosen on `trawl-bench search-quality --text-weights` (the
/// Python manual, 45 questions): headings ×1 → ×4 took the text ranking's
/// MRR@10 from 0.53 to 0.62 and hybrid's from 0.69 to 0.75, on a plateau
/// (headings ×3 to ×8 and the title ×1 to ×4 within 0.004 of it in hybrid).
const RANK: &str = "bm25(chunks_fts, 1.0, 4.0, 2.0)";

/// The query's words, each quoted as an FTS5 string (user input never
/// reaches FTS5's syntax), without repeats.
fn words(q: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in q.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let w = format!("\"{}\"", w.to_lowercase());
        if !out.contains(&w) {
            out.push(w);
        }
        if out.len() == 32 {
            break;
        }
    }
    out
}

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

/// The words to rank by, rarest first, while the rows they match add up to
/// at most [`RANKED_ROWS`] (and always the rarest word that matches), and
/// whether even that one matches more.
fn kept(words: Vec<String>, rows: &[i64]) -> (Vec<String>, bool) {
    let mut by_rows: Vec<(i64, String)> = rows.iter().copied().zip(words).filter(|(n, _)| *n > 0).collect();
    by_rows.sort_by_key(|(n, _)| *n);
    let over = by_rows.first().is_some_and(|(n, _)| *n > RANKED_ROWS);
    let mut total = 0;
    let mut out = Vec::new();
    for (n, w) in by_rows {
        total += n;
        if !out.is_empty() && total > RANKED_ROWS {
            break;
        }
        out.push(w);
    }
    (out, over)
}

/// Chunk ids by `bm25` (higher is better) for the words of `query`.
pub(super) async fn search(
    pool: &SqlitePool,
    query: &str,
    f: &SearchFilter,
    limit: u32,
) -> Result<Vec<(i64, f64)>, StoreError> {
    let words = words(query);
    if words.is_empty() {
        return Ok(Vec::new());
    }
    let rows = matched_rows(pool, &words).await?;
    let matching = rows.iter().filter(|n| **n > 0).count();
    let (kept, over) = kept(words.clone(), &rows);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_lowercased_and_not_repeated() {
        assert_eq!(words("Sort a LIST, sort \"it\""), ["\"sort\"", "\"a\"", "\"list\"", "\"it\""]);
        assert!(words(" -- ").is_empty());
    }

    #[test]
    fn the_rarest_words_are_kept_within_the_budget() {
        let w = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // "the" would take the total past the budget; "zebra" matches nothing.
        let (k, over) = kept(w(&["the", "sort", "zebra", "list"]), &[RANKED_ROWS + 1, 300, 0, 9_000]);
        assert_eq!(k, w(&["sort", "list"]));
        assert!(!over);
        // A lone common word is still ranked, in part.
        let (k, over) = kept(w(&["the", "a"]), &[RANKED_ROWS + 1, RANKED_ROWS + 1]);
        assert_eq!(k, w(&["the"]));
        assert!(over);
        assert_eq!(kept(w(&["zebra"]), &[0]).0, Vec::<String>::new());
    }
}
