//! Writes: statuses under the owner fence, and pages with their chunks
//! and code as one `UNNEST` insert per table.

use std::borrow::Cow;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use pgvector::Vector;
use sqlx::{Postgres, Row};

use super::{PageRecord, StoreError};
use crate::progress::{CrawlStatus, Limit};

/// PostgreSQL text cannot hold NUL; a page with a stray NUL byte is kept
/// with U+FFFD in its place rather than failing its whole batch.
pub(super) fn clean(s: &str) -> Cow<'_, str> {
    if s.contains('\0') { Cow::Owned(s.replace('\0', "\u{fffd}")) } else { Cow::Borrowed(s) }
}

/// As [`clean`], for every string of a JSON document stored as `jsonb`
/// (a request's globs or tags may carry a NUL).
pub(super) fn clean_json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) if s.contains('\0') => *s = s.replace('\0', "\u{fffd}"),
        serde_json::Value::Array(a) => a.iter_mut().for_each(clean_json),
        serde_json::Value::Object(o) => o.values_mut().for_each(clean_json),
        _ => {}
    }
}

pub(super) fn clean_opt(s: &Option<String>) -> Option<Cow<'_, str>> {
    s.as_deref().map(clean)
}

pub(super) async fn update_status<'e, E>(exec: E, s: &CrawlStatus, owner: Option<&str>) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    // A terminal crawl never changes again, and a crawl another instance
    // took over is not this one's to write: the WHERE clause guarantees both.
    // A stop requested through the database stays requested until the
    // owner ends the crawl.
    sqlx::query(
        "UPDATE crawls SET
           status = CASE WHEN status = 'stopping' AND $1 IN ('queued', 'running') THEN 'stopping' ELSE $1 END,
           stage = $2, percentage = $3, pages_crawled = $4, pages_failed = $5,
           pages_skipped = $6, pages_queued = $7, chunks_stored = $8, code_examples = $9, chunks_unembedded = $10,
           current_url = $11, message = $12, error = $13, started_at = $14, finished_at = $15, updated_at = now(),
           limit_reached = $18, last_event_id = GREATEST(COALESCE(last_event_id, 0), $19),
           pages_new = $20, pages_changed = $21, pages_unchanged = $22, pages_removed = $23, chunks_embedded = $24
         WHERE id = $16 AND status NOT IN ('completed', 'failed', 'cancelled')
           AND ($17::text IS NULL OR owner IS NULL OR owner = $17)",
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
    .bind(s.current_url.as_deref().map(clean))
    .bind(s.message.as_deref().map(clean))
    .bind(s.error.as_deref().map(clean))
    .bind(s.started_at)
    .bind(s.finished_at)
    .bind(&s.progress_id)
    .bind(owner)
    .bind(s.limit_reached.map(Limit::as_str))
    .bind(s.event_id as i64)
    .bind(s.pages_new as i64)
    .bind(s.pages_changed as i64)
    .bind(s.pages_unchanged as i64)
    .bind(s.pages_removed as i64)
    .bind(s.chunks_embedded as i64)
    .execute(exec)
    .await?;
    Ok(())
}

pub(super) fn vector_of(v: &Option<Vec<f32>>) -> Option<Vector> {
    v.as_ref().map(|v| Vector::from(v.clone()))
}

pub(super) async fn insert_pages(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    crawl_id: &str,
    pages: &[&PageRecord],
) -> Result<HashMap<String, i64>, StoreError> {
    let urls: Vec<Cow<str>> = pages.iter().map(|p| clean(&p.url)).collect();
    let final_urls: Vec<Option<Cow<str>>> = pages.iter().map(|p| clean_opt(&p.final_url)).collect();
    let statuses: Vec<&str> = pages.iter().map(|p| p.status.as_str()).collect();
    let http: Vec<Option<i32>> = pages.iter().map(|p| p.http_status.map(i32::from)).collect();
    let depths: Vec<i32> = pages.iter().map(|p| p.depth.min(i32::MAX as u32) as i32).collect();
    let titles: Vec<Option<Cow<str>>> = pages.iter().map(|p| clean_opt(&p.title)).collect();
    let descriptions: Vec<Option<Cow<str>>> = pages.iter().map(|p| clean_opt(&p.description)).collect();
    let types: Vec<Option<Cow<str>>> = pages.iter().map(|p| clean_opt(&p.content_type)).collect();
    let formats: Vec<Option<&str>> = pages.iter().map(|p| p.format).collect();
    let contents: Vec<Option<Cow<str>>> = pages.iter().map(|p| clean_opt(&p.content)).collect();
    let bytes: Vec<Option<i64>> = pages.iter().map(|p| p.bytes.map(|b| b as i64)).collect();
    let errors: Vec<Option<Cow<str>>> = pages.iter().map(|p| clean_opt(&p.error)).collect();
    let source_names: Vec<Option<Cow<str>>> = pages.iter().map(|p| clean_opt(&p.source)).collect();
    let chunk_counts: Vec<i32> = pages.iter().map(|p| p.chunks.len() as i32).collect();
    let code_counts: Vec<i32> = pages.iter().map(|p| p.code_examples.len() as i32).collect();
    let fetched: Vec<DateTime<Utc>> = pages.iter().map(|p| p.fetched_at).collect();
    let rendered: Vec<bool> = pages.iter().map(|p| p.rendered).collect();
    let hashes: Vec<Option<&str>> = pages.iter().map(|p| p.content_hash.as_deref()).collect();
    let body_hashes: Vec<Option<&str>> = pages.iter().map(|p| p.body_hash.as_deref()).collect();
    let etags: Vec<Option<Cow<str>>> = pages.iter().map(|p| clean_opt(&p.etag)).collect();
    let modified: Vec<Option<Cow<str>>> = pages.iter().map(|p| clean_opt(&p.last_modified)).collect();
    let links_cut: Vec<i32> = pages.iter().map(|p| p.links_cut.min(i32::MAX as u32) as i32).collect();
    let links: Vec<Option<String>> =
        pages.iter().map(|p| (!p.links.is_empty()).then(|| clean(&p.links.join("\n")).into_owned())).collect();
    let rows = sqlx::query(
        "INSERT INTO pages (crawl_id, content_hash, url, final_url, status, http_status, depth, title, description,
           content_type, format, content, bytes, error, source, chunk_count, code_count, fetched_at, rendered, links,
           etag, last_modified, body_hash, links_cut)
         SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::int[], $8::text[],
           $9::text[], $10::text[], $11::text[], $12::text[], $13::bigint[], $14::text[], $15::text[], $16::int[],
           $17::int[], $18::timestamptz[], $19::bool[], $20::text[], $21::text[], $22::text[], $23::text[],
           $24::int[])
         RETURNING id, url",
    )
    .bind(crawl_id)
    .bind(hashes)
    .bind(strs(&urls))
    .bind(opt_strs(&final_urls))
    .bind(statuses)
    .bind(http)
    .bind(depths)
    .bind(opt_strs(&titles))
    .bind(opt_strs(&descriptions))
    .bind(opt_strs(&types))
    .bind(formats)
    .bind(opt_strs(&contents))
    .bind(bytes)
    .bind(opt_strs(&errors))
    .bind(opt_strs(&source_names))
    .bind(chunk_counts)
    .bind(code_counts)
    .bind(fetched)
    .bind(rendered)
    .bind(links)
    .bind(opt_strs(&etags))
    .bind(opt_strs(&modified))
    .bind(body_hashes)
    .bind(links_cut)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(|r| Ok((r.try_get::<String, _>("url")?, r.try_get::<i64, _>("id")?))).collect()
}

/// Makes the source's row of an unchanged page this crawl's, with its
/// chunks and code examples (and their vectors) as they are.
pub(super) async fn keep_page(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    crawl_id: &str,
    p: &PageRecord,
    row: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE pages SET crawl_id = $1, depth = $2, http_status = COALESCE($3, http_status), fetched_at = $4,
           etag = COALESCE($5, etag), last_modified = COALESCE($6, last_modified), links = COALESCE($7, links),
           body_hash = COALESCE($9, body_hash)
         WHERE id = $8",
    )
    .bind(crawl_id)
    .bind(p.depth.min(i32::MAX as u32) as i32)
    .bind(p.http_status.map(i32::from))
    .bind(p.fetched_at)
    .bind(p.etag.as_deref().map(clean))
    .bind(p.last_modified.as_deref().map(clean))
    .bind((!p.links.is_empty()).then(|| clean(&p.links.join("\n")).into_owned()))
    .bind(row)
    .bind(p.body_hash.as_deref())
    .execute(&mut **tx)
    .await?;
    for sql in [
        "UPDATE chunks SET crawl_id = $1 WHERE page_id = $2",
        "UPDATE code_examples SET crawl_id = $1 WHERE page_id = $2",
    ] {
        sqlx::query(sql).bind(crawl_id).bind(row).execute(&mut **tx).await?;
    }
    Ok(())
}

/// The source's pages a completed refresh (`$2`) did not keep: the crawled
/// rows of its other crawls, but for URLs the refresh failed to fetch for a
/// reason other than 404 or 410 (their copies stay), and, when a budget cut
/// the refresh short (`$3`), for URLs it did not reach.
pub(super) const REMOVE_VANISHED_PG: &str = "DELETE FROM pages WHERE status = 'crawled'
   AND crawl_id IN (SELECT id FROM crawls WHERE source_id = $1 AND id <> $2)
   AND url NOT IN (SELECT url FROM pages WHERE crawl_id = $2 AND status = 'failed'
                     AND COALESCE(http_status, 0) NOT IN (404, 410))
   AND (NOT $3 OR url IN (SELECT url FROM pages WHERE crawl_id = $2))";

pub(super) fn strs<'a>(v: &'a [Cow<'a, str>]) -> Vec<&'a str> {
    v.iter().map(|s| s.as_ref()).collect()
}

pub(super) fn opt_strs<'a>(v: &'a [Option<Cow<'a, str>>]) -> Vec<Option<&'a str>> {
    v.iter().map(|s| s.as_deref()).collect()
}

pub(super) async fn insert_content(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    crawl_id: &str,
    model: &str,
    pages: &[&PageRecord],
    ids: &HashMap<String, i64>,
) -> Result<(), StoreError> {
    let mut page_ids = Vec::new();
    let mut urls = Vec::new();
    let mut sources = Vec::new();
    let mut titles = Vec::new();
    let mut indexes = Vec::new();
    let mut headings = Vec::new();
    let mut contents = Vec::new();
    let mut counts = Vec::new();
    let mut vectors = Vec::new();
    let mut models = Vec::new();
    let mut chunk_pages: Vec<Option<i32>> = Vec::new();
    let mut code = CodeColumns::default();
    for p in pages {
        let Some(&page_id) = ids.get(clean(&p.url).as_ref()) else { continue };
        let source = clean(p.source.as_deref().unwrap_or_default());
        for c in &p.chunks {
            page_ids.push(page_id);
            urls.push(clean(&p.url));
            sources.push(source.clone());
            titles.push(clean_opt(&p.title));
            indexes.push(c.index as i32);
            headings.push(clean(&c.heading_path));
            contents.push(clean(&c.content));
            counts.push(c.char_count as i32);
            vectors.push(vector_of(&c.embedding));
            models.push(c.embedding.as_ref().map(|_| model));
            chunk_pages.push(c.page.map(|p| p as i32));
        }
        for e in &p.code_examples {
            code.page_ids.push(page_id);
            code.urls.push(clean(&p.url));
            code.sources.push(source.clone());
            code.languages.push(clean(&e.language));
            code.code.push(clean(&e.code));
            code.before.push(clean(&e.context_before));
            code.after.push(clean(&e.context_after));
            code.vectors.push(vector_of(&e.embedding));
            code.models.push(e.embedding.as_ref().map(|_| model));
        }
    }
    if !page_ids.is_empty() {
        sqlx::query(
            "INSERT INTO chunks (crawl_id, page_id, url, source, title, chunk_index, heading_path, content, char_count,
               embedding, model, page)
             SELECT $1, * FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::text[], $6::int[], $7::text[],
               $8::text[], $9::int[], $10::vector[], $11::text[], $12::int[])",
        )
        .bind(crawl_id)
        .bind(page_ids)
        .bind(strs(&urls))
        .bind(strs(&sources))
        .bind(opt_strs(&titles))
        .bind(indexes)
        .bind(strs(&headings))
        .bind(strs(&contents))
        .bind(counts)
        .bind(vectors)
        .bind(models)
        .bind(chunk_pages)
        .execute(&mut **tx)
        .await?;
    }
    if !code.page_ids.is_empty() {
        sqlx::query(
            "INSERT INTO code_examples (crawl_id, page_id, url, source, language, code, context_before, context_after,
               embedding, model)
             SELECT $1, * FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
               $8::text[], $9::vector[], $10::text[])",
        )
        .bind(crawl_id)
        .bind(code.page_ids)
        .bind(strs(&code.urls))
        .bind(strs(&code.sources))
        .bind(strs(&code.languages))
        .bind(strs(&code.code))
        .bind(strs(&code.before))
        .bind(strs(&code.after))
        .bind(code.vectors)
        .bind(code.models)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

#[derive(Default)]
pub(super) struct CodeColumns<'a> {
    pub(super) page_ids: Vec<i64>,
    pub(super) urls: Vec<Cow<'a, str>>,
    pub(super) sources: Vec<Cow<'a, str>>,
    pub(super) languages: Vec<Cow<'a, str>>,
    pub(super) code: Vec<Cow<'a, str>>,
    pub(super) before: Vec<Cow<'a, str>>,
    pub(super) after: Vec<Cow<'a, str>>,
    pub(super) vectors: Vec<Option<Vector>>,
    pub(super) models: Vec<Option<&'a str>>,
}
