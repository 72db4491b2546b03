//! The background HNSW indexer: vectors join the index in batches, off
//! the write path.

use sqlx::postgres::PgPool;

/// Moves up to `limit` chunk vectors into the HNSW index; returns how many.
/// `SKIP LOCKED` lets several instances index side by side.
pub(super) async fn index_batch(pool: &PgPool, limit: i64) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "WITH todo AS (SELECT id FROM chunks WHERE NOT indexed AND embedding IS NOT NULL ORDER BY id LIMIT $1
           FOR UPDATE SKIP LOCKED)
         UPDATE chunks c SET indexed = true FROM todo WHERE c.id = todo.id",
    )
    .bind(limit)
    .execute(pool)
    .await
    .map(|r| r.rows_affected())
}

/// Rows indexed since the last `ANALYZE` after which the indexer refreshes
/// the planner's statistics once it has caught up: with stale counts after
/// a bulk load the planner may scan the table instead of the HNSW index
/// (autovacuum does it too, where it is on).
pub(super) const ANALYZE_AFTER: u64 = 10_000;
