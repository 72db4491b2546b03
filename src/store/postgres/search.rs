//! Text and vector ranking in SQL, the filters they share, and reading
//! their rows back.

use pgvector::Vector;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder, Row};

use super::{SearchFilter, StoreError};

/// The `to_tsquery` inputs for the words of a code search: any word (what
/// matches), every word, and the words as a phrase (what ranks first:
/// `ts_rank_cd` has no notion of a rare word counting more, so a row with
/// the whole query beats one that repeats its common words). User input
/// never reaches tsquery syntax: only words pass.
pub fn ts_queries(q: &str) -> Option<[String; 3]> {
    let words = crate::store::words::words(q);
    (!words.is_empty()).then(|| [words.join(" | "), words.join(" & "), words.join(" <-> ")])
}

/// The text rank of alias `c` against the queries of [`ts_queries`]: the
/// phrase first, then every word, then cover density (normalised into 0..1).
pub(super) const TEXT_RANK: &str = "((c.tsv @@ qp)::int + (c.tsv @@ qa)::int + ts_rank_cd(c.tsv, q, 32))::float8";

/// Rows that one text search ranks at most: each is read once per word of
/// the query (on the Python manual, 40,000 chunks: search p99 188 ms with
/// 20,000 rows, the embedded store's budget).
pub(super) const RANKED_ROWS: i64 = 5_000;

/// How much a word in a chunk's page title or headings (the `tsvector`'s
/// weight B) counts against one in its text (weight A), as on the embedded
/// store.
const HEADING_WEIGHT: i32 = 4;

/// A word of a query as the `english` configuration reads it, with the
/// rows it matches (counted up to one past [`RANKED_ROWS`]).
pub(super) struct Lexemes {
    /// Its `tsquery` (`'sort'`; `'x' & 'y'` where the parser splits a word).
    query: String,
    rows: i64,
}

/// Each word's `tsquery` and rows (a stop word has none), and the chunks in
/// all, as the planner's statistics have them (an estimate; -1 before the
/// first `ANALYZE`). Counting reads the word's GIN entry and at most
/// [`RANKED_ROWS`] rows, far less than ranking them would.
pub(super) async fn lexemes(pool: &sqlx::PgPool, words: &[String]) -> Result<(Vec<Lexemes>, f64), StoreError> {
    let rows = sqlx::query(
        "SELECT q::text AS query, (SELECT count(*) FROM (SELECT 1 FROM chunks c WHERE c.tsv @@ q LIMIT $2) x) AS rows,
                (SELECT reltuples::float8 FROM pg_class WHERE oid = 'chunks'::regclass) AS total
         FROM unnest($1::text[]) WITH ORDINALITY AS u(w, i), plainto_tsquery('english', u.w) q ORDER BY u.i",
    )
    .bind(words)
    .bind(RANKED_ROWS + 1)
    .fetch_all(pool)
    .await?;
    let total =
        rows.first().map_or(Ok(0.0), |r| r.try_get::<Option<f64>, _>("total").map(Option::unwrap_or_default))?;
    let words = rows.iter().map(|r| Ok(Lexemes { query: r.try_get("query")?, rows: r.try_get("rows")? }));
    Ok((words.collect::<Result<_, StoreError>>()?, total))
}

impl Lexemes {
    pub(super) fn rows(&self) -> i64 {
        self.rows
    }
}

/// `query` with every lexeme restricted to `weight` (`'x':A & 'y':A`). The
/// lexemes come from words of letters and digits, so none holds a quote.
fn weighted(query: &str, weight: char) -> String {
    query.split(" & ").map(|l| format!("{l}:{weight}")).collect::<Vec<_>>().join(" & ")
}

/// Pushes `SELECT id, score ... ORDER BY score DESC LIMIT pool`: the chunks
/// that match any of `kept` (the newest [`RANKED_ROWS`] of them when even
/// the rarest word matches more), ranked like bm25 on a chunk's text and
/// headings: each word adds its idf × tf·2.2 / (tf + 1.2), where tf is 1 for
/// the text and [`HEADING_WEIGHT`] for the headings (presence, not counts:
/// chunks are short), and cover density breaks ties.
pub(super) fn push_text_ranking(
    qb: &mut QueryBuilder<Postgres>,
    kept: &[&Lexemes],
    total: f64,
    capped: bool,
    f: &SearchFilter,
    pool: u32,
) {
    let total = kept.iter().map(|l| l.rows as f64).fold(total, f64::max);
    let any = kept.iter().map(|l| format!("({})", l.query)).collect::<Vec<_>>().join(" | ");
    qb.push("SELECT id, (cd");
    for (i, l) in kept.iter().enumerate() {
        let n = l.rows as f64;
        let idf = (1.0 + (total - n + 0.5) / (n + 0.5)).ln();
        qb.push(format_args!(" + {idf} * t{i} * 2.2 / (t{i} + 1.2)"));
    }
    qb.push(")::float8 AS score FROM (SELECT c.id, ts_rank_cd(c.tsv, ")
        .push_bind(any.clone())
        .push("::tsquery, 32) AS cd");
    for (i, l) in kept.iter().enumerate() {
        qb.push(" , (c.tsv @@ ").push_bind(weighted(&l.query, 'A')).push("::tsquery)::int + ");
        qb.push(format_args!("{HEADING_WEIGHT} * (c.tsv @@ "));
        qb.push_bind(weighted(&l.query, 'B')).push(format_args!("::tsquery)::int AS t{i}"));
    }
    qb.push(" FROM chunks c WHERE c.tsv @@ ").push_bind(any).push("::tsquery");
    push_filter(qb, f);
    if capped {
        qb.push(" ORDER BY c.id DESC LIMIT ").push_bind(RANKED_ROWS);
    }
    qb.push(") m ORDER BY score DESC, id LIMIT ").push_bind(i64::from(pool));
}

/// Pushes `FROM`-list items `q`, `qa` and `qp` for the text queries.
pub(super) fn push_ts_queries(qb: &mut QueryBuilder<Postgres>, config: &str, [any, all, phrase]: [String; 3]) {
    qb.push(format_args!(", to_tsquery('{config}', ")).push_bind(any);
    qb.push(format_args!(") q, to_tsquery('{config}', ")).push_bind(all);
    qb.push(format_args!(") qa, to_tsquery('{config}', ")).push_bind(phrase).push(") qp");
}

/// Adds the crawl, source and tenant conditions of a search on alias `c`
/// (chunks or code examples). The tenant is a semi-join, not a join, so
/// that an ordered index scan (HNSW) on `c` stays usable.
pub(super) fn push_filter(qb: &mut QueryBuilder<Postgres>, f: &SearchFilter) {
    if let Some(c) = &f.crawl_id {
        qb.push(" AND c.crawl_id = ").push_bind(c.clone());
    }
    if let Some(s) = &f.source {
        qb.push(" AND c.source = ").push_bind(s.clone());
    }
    if let Some(tenant) = &f.tenant {
        qb.push(" AND c.crawl_id IN (SELECT id FROM crawls WHERE tenant = ").push_bind(tenant.clone()).push(")");
    }
}

/// Pushes `SELECT id, d FROM ... ORDER BY d LIMIT pool`: the `pool` nearest
/// chunks by cosine distance `d`, from the HNSW index and from an exact scan
/// of the rows the indexer has not reached yet.
pub(super) fn push_vector_ranking(
    qb: &mut QueryBuilder<Postgres>,
    vector: &[f32],
    model: &str,
    f: &SearchFilter,
    pool: u32,
) {
    let v = Vector::from(vector.to_vec());
    qb.push("SELECT id, d FROM (");
    for (i, part) in ["c.indexed", "NOT c.indexed AND c.embedding IS NOT NULL"].into_iter().enumerate() {
        if i > 0 {
            qb.push(" UNION ALL ");
        }
        qb.push("(SELECT c.id, c.embedding <=> ").push_bind(v.clone()).push("::vector AS d");
        qb.push(" FROM chunks c WHERE ").push(part);
        qb.push(" AND c.model = ").push_bind(model.to_string());
        push_filter(qb, f);
        qb.push(" ORDER BY c.embedding <=> ").push_bind(v.clone()).push("::vector LIMIT ").push_bind(i64::from(pool));
        qb.push(")");
    }
    qb.push(") nearest ORDER BY d, id LIMIT ").push_bind(i64::from(pool));
}

pub(super) fn ranked(rows: &[PgRow]) -> Result<Vec<(i64, f64)>, StoreError> {
    rows.iter().map(|r| Ok((r.try_get("id")?, r.try_get("score")?))).collect()
}
