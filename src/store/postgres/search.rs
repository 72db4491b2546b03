//! Text and vector ranking in SQL, the filters they share, and reading
//! their rows back.

use pgvector::Vector;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder, Row};

use super::{SearchFilter, StoreError};

/// The `to_tsquery` inputs for the words of a query: any word (what
/// matches), every word, and the words as a phrase (what ranks first:
/// `ts_rank_cd` has no notion of a rare word counting more, so a chunk with
/// the whole query beats one that repeats its common words). User input
/// never reaches tsquery syntax: only words pass.
pub fn ts_queries(q: &str) -> Option<[String; 3]> {
    let words: Vec<String> =
        q.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).take(32).map(str::to_lowercase).collect();
    (!words.is_empty()).then(|| [words.join(" | "), words.join(" & "), words.join(" <-> ")])
}

/// The text rank of alias `c` against the queries of [`ts_queries`]: the
/// phrase first, then every word, then cover density (normalised into 0..1).
pub(super) const TEXT_RANK: &str = "((c.tsv @@ qp)::int + (c.tsv @@ qa)::int + ts_rank_cd(c.tsv, q, 32))::float8";

/// Rows of each match set (all words, any word) that text ranking reads at
/// most: ranking costs a read of every candidate's `tsvector`, and a common
/// word matches a fifth of a corpus. Rows with every word come first.
pub(super) const TEXT_CANDIDATES: i64 = 250;

/// Pushes `SELECT id, score FROM ... ORDER BY score DESC LIMIT pool`: chunks
/// ranked by [`TEXT_RANK`] among the candidates of [`TEXT_CANDIDATES`].
pub(super) fn push_text_ranking(qb: &mut QueryBuilder<Postgres>, queries: [String; 3], f: &SearchFilter, pool: u32) {
    qb.push("SELECT c.id, ").push(TEXT_RANK).push(" AS score FROM (");
    for (i, query) in [&queries[1], &queries[0]].into_iter().enumerate() {
        if i > 0 {
            qb.push(" UNION ");
        }
        qb.push("(SELECT c.id FROM chunks c WHERE c.tsv @@ to_tsquery('english', ");
        qb.push_bind(query.clone()).push(")");
        push_filter(qb, f);
        qb.push(" LIMIT ").push_bind(TEXT_CANDIDATES).push(")");
    }
    qb.push(") cand JOIN chunks c ON c.id = cand.id");
    push_ts_queries(qb, "english", queries);
    qb.push(" ORDER BY score DESC, c.id LIMIT ").push_bind(i64::from(pool));
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
