//! The crawl queue's statements, for `cluster`: claims, stops asked through
//! the row, what is unfinished, and the instances' heartbeats. The store
//! owns every statement on the `crawls` table; the cluster owns the policy.

use std::time::Duration;

use sqlx::postgres::PgPool;
use sqlx::{FromRow, Row};

use crate::progress::CrawlStatus;
use crate::store::StoreError;

/// Notified when a crawl is enqueued (payload empty).
pub const QUEUE_CHANNEL: &str = "trawl_queue";
/// Notified with a crawl's id when its stop is asked.
pub const STOP_CHANNEL: &str = "trawl_stop";

/// A crawl an instance has just claimed.
#[derive(Debug)]
pub struct Claimed {
    pub status: CrawlStatus,
    pub tenant: Option<String>,
    /// The request as stored (JSON).
    pub request: String,
    /// How many times it was claimed, this time included: above 1 it ran
    /// before and resumes.
    pub attempts: u32,
    /// How many of the earlier runs handed it back at a shutdown; the
    /// others ended with their instance.
    pub handoffs: u32,
}

/// A running crawl's row as a heartbeat reads it.
#[derive(Debug)]
pub struct LiveRow {
    pub id: String,
    pub status: String,
    pub owner: Option<String>,
}

/// Forgets instances gone for a day: their rows only clutter the table.
pub async fn forget_old_instances(pool: &PgPool) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM trawl_instances WHERE heartbeat_at < now() - interval '1 day'").execute(pool).await?;
    Ok(())
}

pub async fn notify(pool: &PgPool, channel: &str, payload: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)").bind(channel).bind(payload).execute(pool).await?;
    Ok(())
}

/// Claims the oldest crawl waiting in the queue for `owner`, or (with
/// `takeovers`) one whose owner has not beaten within `ttl`.
pub async fn claim(pool: &PgPool, owner: &str, ttl: Duration, takeovers: bool) -> Result<Option<Claimed>, StoreError> {
    let row = sqlx::query(
        "WITH next AS (
           SELECT id FROM crawls k
           WHERE status IN ('queued', 'running', 'stopping')
             AND ((status = 'queued' AND owner IS NULL)
               OR ($3 AND owner IS NOT NULL AND owner <> $1 AND owner NOT LIKE 'local:%' AND NOT EXISTS (
                     SELECT 1 FROM trawl_instances i
                     WHERE i.id = k.owner AND i.heartbeat_at > now() - make_interval(secs => $2))))
           ORDER BY id LIMIT 1
           FOR UPDATE SKIP LOCKED)
         UPDATE crawls c SET owner = $1, attempts = c.attempts + 1, updated_at = now()
         FROM next WHERE c.id = next.id
         RETURNING c.*, c.request::text AS request_text",
    )
    .bind(owner)
    .bind(ttl.as_secs_f64())
    .bind(takeovers)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(Claimed {
        status: CrawlStatus::from_row(&row)?,
        tenant: row.try_get("tenant")?,
        request: row.try_get("request_text")?,
        attempts: row.try_get::<i32, _>("attempts")?.max(1) as u32,
        handoffs: row.try_get::<i32, _>("handoffs")?.max(0) as u32,
    }))
}

/// Beats for `instance`, and reads the rows of the crawls it runs.
pub async fn beat(pool: &PgPool, instance: &str, live: &[String]) -> Result<Vec<LiveRow>, StoreError> {
    sqlx::query(
        "INSERT INTO trawl_instances (id) VALUES ($1)
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()",
    )
    .bind(instance)
    .execute(pool)
    .await?;
    let rows =
        sqlx::query("SELECT id, status, owner FROM crawls WHERE id = ANY($1)").bind(live).fetch_all(pool).await?;
    rows.iter()
        .map(|r| Ok(LiveRow { id: r.try_get("id")?, status: r.try_get("status")?, owner: r.try_get("owner")? }))
        .collect()
}

/// A crawl's stored state, whoever runs it.
pub async fn status(pool: &PgPool, id: &str) -> Result<Option<CrawlStatus>, StoreError> {
    let row = sqlx::query("SELECT * FROM crawls WHERE id = $1").bind(id).fetch_optional(pool).await?;
    Ok(row.as_ref().map(CrawlStatus::from_row).transpose()?)
}

/// Cancels a crawl nobody has claimed yet; `None` when it was claimed (or
/// ended) meanwhile.
pub async fn cancel_unclaimed(pool: &PgPool, id: &str) -> Result<Option<CrawlStatus>, StoreError> {
    let row = sqlx::query(
        "UPDATE crawls SET status = 'cancelled', message = 'stopped by request',
           current_url = NULL, pages_queued = 0, finished_at = now(), updated_at = now()
         WHERE id = $1 AND status = 'queued' AND owner IS NULL RETURNING *",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(CrawlStatus::from_row).transpose()?)
}

/// Marks a crawl `stopping` (durably: the owner's status writes cannot undo
/// it) unless it ended already; answers its state after.
pub async fn mark_stopping(pool: &PgPool, id: &str) -> Result<CrawlStatus, StoreError> {
    let row = sqlx::query(
        "UPDATE crawls SET status = CASE WHEN status IN ('queued', 'running') THEN 'stopping' ELSE status END,
           message = CASE WHEN status IN ('queued', 'running') THEN 'stop requested' ELSE message END,
           updated_at = now()
         WHERE id = $1 RETURNING *",
    )
    .bind(id)
    .fetch_one(pool)
    .await?;
    Ok(CrawlStatus::from_row(&row)?)
}

/// Crawls not yet ended on any instance, of one tenant (or of nobody's), newest first.
pub async fn unfinished(pool: &PgPool, tenant: Option<&str>) -> Result<Vec<CrawlStatus>, StoreError> {
    let rows = sqlx::query(
        "SELECT * FROM crawls WHERE status IN ('queued', 'running', 'stopping')
           AND tenant IS NOT DISTINCT FROM $1 ORDER BY id DESC LIMIT 1000",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(CrawlStatus::from_row).collect::<Result<_, _>>()?)
}

/// Removes an instance's heartbeat row (it leaves).
pub async fn leave(pool: &PgPool, instance: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM trawl_instances WHERE id = $1").bind(instance).execute(pool).await?;
    Ok(())
}
