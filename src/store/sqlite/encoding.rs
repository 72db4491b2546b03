//! How SQLite keeps what PostgreSQL has types for: timestamps as RFC 3339
//! text, vectors as little-endian bytes; and the query that reads a source.

use crate::progress::format_time;
use chrono::{DateTime, Utc};

pub(super) fn ts(t: &DateTime<Utc>) -> String {
    format_time(t)
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

/// Vectors are stored as little-endian f32 bytes.
pub(super) fn to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(super) fn from_bytes(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// The dot product of a stored vector (little-endian f32 bytes) with `v`,
/// read in place.
pub(super) fn dot_bytes(bytes: &[u8], v: &[f32]) -> f32 {
    bytes.chunks_exact(4).zip(v).map(|(b, x)| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * x).sum()
}
