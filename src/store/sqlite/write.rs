//! Writes: statuses, pages kept as they were, pages replaced, and chunks
//! and code in multi-row inserts.

use chrono::Utc;
use sqlx::{QueryBuilder, Sqlite};

use super::{PageRecord, StoreError};
use crate::progress::{CrawlStatus, Limit};

use super::*;

pub(super) async fn update_status<'e, E>(exec: E, s: &CrawlStatus) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    // A terminal crawl never changes again: the WHERE clause guarantees it.
    sqlx::query(
        "UPDATE crawls SET status = ?, stage = ?, percentage = ?, pages_crawled = ?, pages_failed = ?,
           pages_skipped = ?, pages_queued = ?, chunks_stored = ?, code_examples = ?, chunks_unembedded = ?, current_url = ?,
           message = ?, error = ?, limit_reached = ?, started_at = ?, finished_at = ?, updated_at = ?,
           last_event_id = MAX(COALESCE(last_event_id, 0), ?), pages_new = ?, pages_changed = ?, pages_unchanged = ?,
           pages_removed = ?, chunks_embedded = ?
         WHERE id = ? AND status NOT IN ('completed', 'failed', 'cancelled')",
    )
    .bind(s.status.as_str())
    .bind(s.stage.as_str())
    .bind(s.percentage)
    .bind(s.pages_crawled as i64)
    .bind(s.pages_failed as i64)
    .bind(s.pages_skipped as i64)
    .bind(s.pages_queued as i64)
    .bind(s.chunks_stored as i64)
    .bind(s.code_examples as i64)
    .bind(s.chunks_unembedded as i64)
    .bind(&s.current_url)
    .bind(&s.message)
    .bind(&s.error)
    .bind(s.limit_reached.map(Limit::as_str))
    .bind(s.started_at.as_ref().map(ts))
    .bind(s.finished_at.as_ref().map(ts))
    .bind(ts(&Utc::now()))
    .bind(s.event_id as i64)
    .bind(s.pages_new as i64)
    .bind(s.pages_changed as i64)
    .bind(s.pages_unchanged as i64)
    .bind(s.pages_removed as i64)
    .bind(s.chunks_embedded as i64)
    .bind(&s.progress_id)
    .execute(exec)
    .await?;
    Ok(())
}

/// The source's pages a completed refresh (`?2`) did not keep: the crawled
/// rows of its other crawls, but for URLs the refresh failed to fetch for a
/// reason other than 404 or 410 (their copies stay), and, when a budget cut
/// the refresh short (`?3`), for URLs it did not reach.
pub(super) const REMOVE_VANISHED_SQLITE: &str = "DELETE FROM pages WHERE status = 'crawled'
   AND crawl_id IN (SELECT id FROM crawls WHERE source_id = ?1 AND id <> ?2)
   AND url NOT IN (SELECT url FROM pages WHERE crawl_id = ?2 AND status = 'failed'
                     AND COALESCE(http_status, 0) NOT IN (404, 410))
   AND (NOT ?3 OR url IN (SELECT url FROM pages WHERE crawl_id = ?2))";

/// Makes the source's row of an unchanged page this crawl's, with its
/// chunks and code examples (and their vectors) as they are.
pub(super) async fn keep_page(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    crawl_id: &str,
    p: &PageRecord,
    row: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE pages SET crawl_id = ?1, depth = ?2, http_status = COALESCE(?3, http_status), fetched_at = ?4,
           etag = COALESCE(?5, etag), last_modified = COALESCE(?6, last_modified), links = COALESCE(?7, links),
           body_hash = COALESCE(?9, body_hash)
         WHERE id = ?8",
    )
    .bind(crawl_id)
    .bind(i64::from(p.depth))
    .bind(p.http_status.map(i64::from))
    .bind(ts(&p.fetched_at))
    .bind(&p.etag)
    .bind(&p.last_modified)
    .bind((!p.links.is_empty()).then(|| p.links.join("\n")))
    .bind(row)
    .bind(&p.body_hash)
    .execute(&mut **tx)
    .await?;
    for sql in [
        "UPDATE chunks SET crawl_id = ?1 WHERE page_id = ?2",
        "UPDATE code_examples SET crawl_id = ?1 WHERE page_id = ?2",
    ] {
        sqlx::query(sql).bind(crawl_id).bind(row).execute(&mut **tx).await?;
    }
    Ok(())
}

/// Deletes the pages (and by cascade their content) whose URL is one of
/// `pages` and that match `condition`, in which `me.id` is the crawl id.
pub(super) async fn delete_pages<'a>(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    crawl_id: &str,
    condition: &'static str,
    pages: impl Iterator<Item = &'a PageRecord>,
) -> Result<(), StoreError> {
    let urls: Vec<&str> = pages.map(|p| p.url.as_str()).collect();
    for chunk in urls.chunks(PAGE_ROWS_PER_INSERT) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("WITH me (id) AS (SELECT ");
        qb.push_bind(crawl_id).push(") DELETE FROM pages WHERE ").push(condition).push(" AND url IN (");
        let mut sep = qb.separated(", ");
        for url in chunk {
            sep.push_bind(*url);
        }
        qb.push(")");
        qb.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Rows per multi-row INSERT of chunks (10 binds a row).
pub(super) const CONTENT_ROWS_PER_INSERT: usize = 500;

pub(super) async fn insert_content(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    crawl_id: &str,
    model: &str,
    pages: &[&PageRecord],
    ids: &std::collections::HashMap<String, i64>,
) -> Result<(), StoreError> {
    struct ChunkRow<'a> {
        page_id: i64,
        page: &'a PageRecord,
        chunk: &'a crate::content::Chunk,
    }
    struct CodeRow<'a> {
        page_id: i64,
        page: &'a PageRecord,
        code: &'a crate::content::CodeExample,
    }
    let mut chunks = Vec::new();
    let mut codes = Vec::new();
    for p in pages {
        let Some(&page_id) = ids.get(&p.url) else { continue };
        chunks.extend(p.chunks.iter().map(|chunk| ChunkRow { page_id, page: p, chunk }));
        codes.extend(p.code_examples.iter().map(|code| CodeRow { page_id, page: p, code }));
    }
    for rows in chunks.chunks(CONTENT_ROWS_PER_INSERT) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO chunks (page_id, crawl_id, url, source, title, chunk_index, heading_path, content, char_count,
               embedding, model, page) ",
        );
        qb.push_values(rows, |mut b, r| {
            b.push_bind(r.page_id)
                .push_bind(crawl_id)
                .push_bind(&r.page.url)
                .push_bind(r.page.source.as_deref().unwrap_or_default())
                .push_bind(&r.page.title)
                .push_bind(i64::from(r.chunk.index))
                .push_bind(&r.chunk.heading_path)
                .push_bind(&r.chunk.content)
                .push_bind(i64::from(r.chunk.char_count))
                .push_bind(r.chunk.embedding.as_deref().map(to_bytes))
                .push_bind(r.chunk.embedding.as_ref().map(|_| model))
                .push_bind(r.chunk.page.map(i64::from));
        });
        qb.build().execute(&mut **tx).await?;
    }
    for rows in codes.chunks(CONTENT_ROWS_PER_INSERT) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO code_examples (page_id, crawl_id, url, source, language, code, context_before, context_after,
               embedding, model) ",
        );
        qb.push_values(rows, |mut b, r| {
            b.push_bind(r.page_id)
                .push_bind(crawl_id)
                .push_bind(&r.page.url)
                .push_bind(r.page.source.as_deref().unwrap_or_default())
                .push_bind(&r.code.language)
                .push_bind(&r.code.code)
                .push_bind(&r.code.context_before)
                .push_bind(&r.code.context_after)
                .push_bind(r.code.embedding.as_deref().map(to_bytes))
                .push_bind(r.code.embedding.as_ref().map(|_| model));
        });
        qb.build().execute(&mut **tx).await?;
    }
    Ok(())
}
