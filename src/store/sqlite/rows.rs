//! Row mapping for crawls and sources, timestamps as stored, and vectors
//! as little-endian bytes.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{LastCrawl, Source, StoreError};
use crate::progress::{CrawlState, CrawlStatus, Limit, Stage, format_time};

pub(super) fn ts(t: &DateTime<Utc>) -> String {
    format_time(t)
}

pub(super) fn parse_ts(s: Option<String>) -> Result<Option<DateTime<Utc>>, StoreError> {
    s.map(|s| {
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| StoreError::Corrupt(format!("timestamp '{s}': {e}")))
    })
    .transpose()
}

/// A source with its counts and its newest crawl; a `WHERE` follows.
pub(super) const SOURCE_SELECT: &str =
    "SELECT s.id, s.tenant, s.url, s.name, s.tags, s.request, s.created_at, s.updated_at,
   s.refresh_every, s.cron, s.next_refresh_at,
   (SELECT COUNT(*) FROM pages p WHERE p.status = 'crawled'
      AND p.crawl_id IN (SELECT id FROM crawls WHERE source_id = s.id)) AS pages,
   (SELECT COALESCE(SUM(p.chunk_count), 0) FROM pages p WHERE p.status = 'crawled'
      AND p.crawl_id IN (SELECT id FROM crawls WHERE source_id = s.id)) AS chunks,
   (SELECT COALESCE(SUM(p.code_count), 0) FROM pages p WHERE p.status = 'crawled'
      AND p.crawl_id IN (SELECT id FROM crawls WHERE source_id = s.id)) AS code_examples,
   k.id AS last_id, k.status AS last_status, k.finished_at AS last_finished
 FROM sources s LEFT JOIN crawls k ON k.id = (SELECT MAX(id) FROM crawls WHERE source_id = s.id)";

pub(super) fn source_from_row(r: &SqliteRow) -> Result<Source, StoreError> {
    let n = |c: &str| -> Result<u64, StoreError> { Ok(r.try_get::<i64, _>(c)?.max(0) as u64) };
    let tags: String = r.try_get("tags")?;
    let request: String = r.try_get("request")?;
    let tenant: String = r.try_get("tenant")?;
    let last_crawl = match r.try_get::<Option<String>, _>("last_id")? {
        None => None,
        Some(id) => {
            let status: String = r.try_get("last_status")?;
            Some(LastCrawl {
                id,
                status: CrawlState::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("status '{status}'")))?,
                finished_at: parse_ts(r.try_get("last_finished")?)?,
            })
        }
    };
    Ok(Source {
        id: r.try_get("id")?,
        tenant: (!tenant.is_empty()).then_some(tenant),
        name: r.try_get("name")?,
        url: r.try_get("url")?,
        tags: serde_json::from_str(&tags).map_err(|e| StoreError::Corrupt(format!("tags: {e}")))?,
        settings: serde_json::from_str(&request).map_err(|e| StoreError::Corrupt(format!("request: {e}")))?,
        pages: n("pages")?,
        chunks: n("chunks")?,
        code_examples: n("code_examples")?,
        last_crawl,
        refresh_every: r.try_get("refresh_every")?,
        cron: r.try_get("cron")?,
        next_refresh_at: parse_ts(r.try_get("next_refresh_at")?)?,
        created_at: parse_ts(r.try_get("created_at")?)?.unwrap_or_default(),
        updated_at: parse_ts(r.try_get("updated_at")?)?.unwrap_or_default(),
    })
}

pub(super) fn status_from_row(r: &SqliteRow) -> Result<CrawlStatus, StoreError> {
    let status: String = r.try_get("status")?;
    let stage: String = r.try_get("stage")?;
    let n = |c: &str| -> Result<u64, StoreError> { Ok(r.try_get::<i64, _>(c)?.max(0) as u64) };
    Ok(CrawlStatus {
        progress_id: r.try_get("id")?,
        url: r.try_get("url")?,
        source_id: r.try_get("source_id")?,
        status: CrawlState::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("status '{status}'")))?,
        stage: Stage::parse(&stage).ok_or_else(|| StoreError::Corrupt(format!("stage '{stage}'")))?,
        percentage: r.try_get("percentage")?,
        pages_crawled: n("pages_crawled")?,
        pages_failed: n("pages_failed")?,
        pages_skipped: n("pages_skipped")?,
        pages_queued: n("pages_queued")?,
        chunks_stored: n("chunks_stored")?,
        code_examples: n("code_examples")?,
        chunks_unembedded: n("chunks_unembedded")?,
        refresh: r.try_get("refresh")?,
        pages_new: n("pages_new")?,
        pages_changed: n("pages_changed")?,
        pages_unchanged: n("pages_unchanged")?,
        pages_removed: n("pages_removed")?,
        chunks_embedded: n("chunks_embedded")?,
        current_url: r.try_get("current_url")?,
        message: r.try_get("message")?,
        error: r.try_get("error")?,
        limit_reached: r.try_get::<Option<String>, _>("limit_reached")?.as_deref().and_then(Limit::parse),
        event_id: r.try_get::<Option<i64>, _>("last_event_id")?.unwrap_or(0).max(0) as u64,
        created_at: parse_ts(r.try_get("created_at")?)?.unwrap_or_default(),
        started_at: parse_ts(r.try_get("started_at")?)?,
        finished_at: parse_ts(r.try_get("finished_at")?)?,
    })
}

pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Vectors are stored as little-endian f32 bytes.
pub(super) fn to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(super) fn from_bytes(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}
