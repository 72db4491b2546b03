//! The production store: PostgreSQL with pgvector. Batches go in as one
//! `INSERT ... SELECT FROM UNNEST(arrays)` per table, so a batch of any size
//! costs a handful of round trips; text search uses generated `tsvector`
//! columns with GIN indexes, vector search an HNSW index (cosine), and
//! hybrid search fuses both rankings in one SQL statement.
//!
//! An HNSW insert costs about a millisecond of CPU, ten times a row's other
//! work, so chunk vectors are not indexed on the write path: rows arrive
//! with `indexed = false` (outside the partial HNSW index), a background
//! indexer flips them in batches, and vector search reads the index plus an
//! exact scan of the not-yet-indexed tail. Crawls write at table speed and
//! search is never missing a row.

pub mod queue;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pgvector::Vector;
use sqlx::postgres::PgPool;
use sqlx::{Postgres, QueryBuilder, Row};

use super::{
    After, ChunkHit, CodeHit, CrawlFilter, Delivery, DeliveryOutcome, ExportPage, ExportReader, NewCrawl, NewDelivery,
    PageContent, PageRecord, PageStatus, PageSummary, PriorPage, Removed, SearchFilter, Source, SourceFilter,
    SourcePatch, Store, StoreError, StoredPage, Unannounced, Unembedded,
};
use crate::progress::{CrawlState, CrawlStatus};

mod export;
mod indexer;
mod schema;
mod search;
mod write;

use super::rows::{CrawlRef, chunk_to_embed, code_to_embed, lines};
use export::*;
use indexer::*;
use search::*;
use write::*;

/// A source with its counts and its newest crawl; a `WHERE` follows.
const SOURCE_SELECT: &str = "SELECT s.id, s.tenant, s.url, s.name, s.tags, s.request, s.created_at, s.updated_at,
   s.refresh_every, s.cron, s.next_refresh_at,
   agg.pages, agg.chunks, agg.code_examples, k.id AS last_id, k.status AS last_status, k.finished_at AS last_finished
 FROM sources s
 CROSS JOIN LATERAL (SELECT COUNT(*) AS pages, COALESCE(SUM(p.chunk_count), 0)::bigint AS chunks,
     COALESCE(SUM(p.code_count), 0)::bigint AS code_examples
   FROM pages p WHERE p.status = 'crawled' AND p.crawl_id IN (SELECT id FROM crawls WHERE source_id = s.id)) agg
 LEFT JOIN crawls k ON k.id = (SELECT MAX(id) FROM crawls WHERE source_id = s.id)";

pub struct PgStore {
    pool: PgPool,
    /// This instance's id when crawls are claimed from the shared queue:
    /// writes to a crawl another instance has taken over are refused.
    owner: Option<String>,
    /// Rows indexed since the last `ANALYZE chunks`.
    indexed_since_analyze: std::sync::atomic::AtomicU64,
}

/// The `owner` prefix of crawls run by a process outside the cluster.
pub const LOCAL_OWNER: &str = "local:";

impl PgStore {
    /// Fences this store's crawl writes to crawls `owner` holds (or nobody does).
    pub fn with_owner(mut self, owner: String) -> Self {
        self.owner = Some(owner);
        self
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_crawl(&self, c: &NewCrawl) -> Result<String, StoreError> {
        let s = &c.status;
        let mut request: serde_json::Value =
            serde_json::from_str(&c.request_json).map_err(|e| StoreError::Corrupt(format!("request: {e}")))?;
        clean_json(&mut request);
        let mut settings: serde_json::Value =
            serde_json::from_str(&c.settings_json).map_err(|e| StoreError::Corrupt(format!("settings: {e}")))?;
        clean_json(&mut settings);
        let mut tx = self.pool.begin().await?;
        // A refresh names its source, which must still be there (it may
        // have been deleted since it was claimed); any other crawl is filed
        // under its tenant's source for its URL, made on first use.
        let source_id: String = match s.source_id.as_ref().filter(|_| s.refresh) {
            Some(id) => sqlx::query_scalar("SELECT id FROM sources WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::SourceGone(id.clone()))?,
            None => {
                sqlx::query_scalar(
                    "INSERT INTO sources (id, tenant, url, name, tags, request, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
                 ON CONFLICT (tenant, url) DO UPDATE SET request = excluded.request, updated_at = excluded.updated_at
                 RETURNING id",
                )
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(clean(c.tenant.as_deref().unwrap_or_default()))
                .bind(clean(&s.url))
                .bind(clean(&c.source.name))
                .bind(sqlx::types::Json(c.source.tags.iter().map(|t| clean(t)).collect::<Vec<_>>()))
                .bind(sqlx::types::Json(&settings))
                .bind(s.created_at)
                .fetch_one(&mut *tx)
                .await?
            }
        };
        // Never two refreshes of a source at once, nor a refresh beside a
        // crawl of it: the source's row, written or locked just now, orders
        // them (and SQLite's one writer).
        if s.refresh {
            let running: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM crawls WHERE source_id = $1 AND status NOT IN ('completed', 'failed', 'cancelled')",
            )
            .bind(&source_id)
            .fetch_one(&mut *tx)
            .await?;
            if running > 0 {
                return Err(StoreError::SourceBusy(source_id));
            }
        }
        sqlx::query(
            "INSERT INTO crawls (id, tenant, url, request, status, stage, percentage, message, created_at, updated_at,
               owner, attempts, source_id, refresh)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11, $12, $13)",
        )
        .bind(&s.progress_id)
        .bind(&c.tenant)
        .bind(clean(&s.url))
        .bind(sqlx::types::Json(request))
        .bind(s.status.as_str())
        .bind(s.stage.as_str())
        .bind(s.percentage)
        .bind(s.message.as_deref().map(clean))
        .bind(s.created_at)
        // A process outside the cluster (`trawl crawl`) runs its crawl
        // itself: the queue must neither claim nor take it over.
        .bind(match &self.owner {
            None => Some(format!("{LOCAL_OWNER}{}", std::process::id())),
            Some(me) => c.claimed.then(|| me.clone()),
        })
        .bind(i32::from(c.claimed))
        .bind(&source_id)
        .bind(s.refresh)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(source_id)
    }

    async fn list_sources(&self, f: &SourceFilter) -> Result<Vec<Source>, StoreError> {
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(SOURCE_SELECT);
        qb.push(" WHERE true");
        if let Some(t) = &f.tenant {
            qb.push(" AND s.tenant = ").push_bind(t.clone());
        }
        if let Some(b) = &f.before_id {
            qb.push(" AND s.id < ").push_bind(b.clone());
        }
        qb.push(" ORDER BY s.id DESC LIMIT ").push_bind(i64::from(f.limit));
        Ok(qb.build_query_as().fetch_all(&self.pool).await?)
    }

    async fn get_source(&self, id: &str) -> Result<Option<Source>, StoreError> {
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(SOURCE_SELECT);
        qb.push(" WHERE s.id = ").push_bind(clean(id).into_owned());
        Ok(qb.build_query_as().fetch_optional(&self.pool).await?)
    }

    async fn update_source(&self, id: &str, patch: &SourcePatch) -> Result<Option<Source>, StoreError> {
        let request = patch
            .request_json
            .as_deref()
            .map(serde_json::from_str::<serde_json::Value>)
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("request: {e}")))?
            .map(|mut r| {
                clean_json(&mut r);
                r
            });
        let tags = patch.tags.as_ref().map(|t| sqlx::types::Json(t.iter().map(|t| clean(t)).collect::<Vec<_>>()));
        let schedule = patch.schedule.clone().unwrap_or_default();
        let done = sqlx::query(
            "UPDATE sources SET name = COALESCE($1, name), tags = COALESCE($2, tags), request = COALESCE($3, request),
               updated_at = now(),
               refresh_every = CASE WHEN $5 THEN $6 ELSE refresh_every END,
               cron = CASE WHEN $5 THEN $7 ELSE cron END,
               next_refresh_at = CASE WHEN $5 THEN $8 ELSE next_refresh_at END
             WHERE id = $4",
        )
        .bind(patch.name.as_deref().map(clean))
        .bind(tags)
        .bind(request.map(sqlx::types::Json))
        .bind(clean(id))
        .bind(patch.schedule.is_some())
        .bind(schedule.refresh_every.as_deref().map(clean))
        .bind(schedule.cron.as_deref().map(clean))
        .bind(schedule.next_refresh_at)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.get_source(id).await
    }

    async fn claim_due_refreshes(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        next: for<'s> fn(&'s Source, DateTime<Utc>) -> Option<DateTime<Utc>>,
    ) -> Result<Vec<Source>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Rows another instance is claiming are skipped, not waited for:
        // each due refresh goes to exactly one instance.
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM sources WHERE next_refresh_at <= $1 ORDER BY next_refresh_at LIMIT $2
             FOR UPDATE SKIP LOCKED",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut due = Vec::with_capacity(ids.len());
        for id in ids {
            let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(SOURCE_SELECT);
            qb.push(" WHERE s.id = ").push_bind(id.clone());
            let Some(source) = qb.build_query_as::<Source>().fetch_optional(&mut *tx).await? else { continue };
            sqlx::query("UPDATE sources SET next_refresh_at = $1 WHERE id = $2")
                .bind(next(&source, now))
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            due.push(source);
        }
        tx.commit().await?;
        Ok(due)
    }

    async fn source_crawls(&self, id: &str) -> Result<Vec<(String, CrawlState)>, StoreError> {
        let rows: Vec<CrawlRef> = sqlx::query_as("SELECT id, status FROM crawls WHERE source_id = $1 ORDER BY id")
            .bind(clean(id))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|CrawlRef(id, state)| (id, state)).collect())
    }

    async fn delete_source(&self, id: &str) -> Result<Option<Removed>, StoreError> {
        let id = clean(id);
        let mut tx = self.pool.begin().await?;
        // The lock keeps a crawl of this source from being filed meanwhile
        // (its upsert waits for this transaction).
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM sources WHERE id = $1 FOR UPDATE")
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(None);
        }
        let running: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM crawls WHERE source_id = $1 AND status NOT IN ('completed', 'failed', 'cancelled')",
        )
        .bind(&id)
        .fetch_one(&mut *tx)
        .await?;
        if running > 0 {
            return Err(StoreError::SourceBusy(id.into_owned()));
        }
        let mut removed = Removed::default();
        for (sql, n) in [
            ("DELETE FROM chunks WHERE crawl_id IN (SELECT id FROM crawls WHERE source_id = $1)", &mut removed.chunks),
            (
                "DELETE FROM code_examples WHERE crawl_id IN (SELECT id FROM crawls WHERE source_id = $1)",
                &mut removed.code_examples,
            ),
            ("DELETE FROM pages WHERE crawl_id IN (SELECT id FROM crawls WHERE source_id = $1)", &mut removed.pages),
        ] {
            *n = sqlx::query(sql).bind(&id).execute(&mut *tx).await?.rows_affected();
        }
        removed.crawls =
            sqlx::query("DELETE FROM crawls WHERE source_id = $1").bind(&id).execute(&mut *tx).await?.rows_affected();
        sqlx::query("DELETE FROM sources WHERE id = $1").bind(&id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Some(removed))
    }

    async fn source_pages(&self, source_id: &str, except: &str) -> Result<Vec<PriorPage>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, url, title, content_hash, body_hash, etag, last_modified, chunk_count, code_count,
               links IS NOT NULL AS has_links
             FROM pages WHERE status = 'crawled' AND crawl_id IN (SELECT id FROM crawls WHERE source_id = $1 AND id <> $2)",
        )
        .bind(clean(source_id))
        .bind(clean(except))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn page_links(&self, row: i64) -> Result<Option<Vec<String>>, StoreError> {
        let links: Option<Option<String>> =
            sqlx::query_scalar("SELECT links FROM pages WHERE id = $1").bind(row).fetch_optional(&self.pool).await?;
        Ok(links.map(lines))
    }

    async fn page_vectors(&self, rows: &[i64], model: &str) -> Result<Vec<(String, Vec<f32>)>, StoreError> {
        let mut out = Vec::new();
        let chunks = sqlx::query(
            "SELECT title, heading_path, content, embedding FROM chunks
             WHERE page_id = ANY($1) AND model = $2 AND embedding IS NOT NULL",
        )
        .bind(rows)
        .bind(model)
        .fetch_all(&self.pool)
        .await?;
        for r in chunks {
            out.push((chunk_to_embed(&r, 0)?.text, r.try_get::<Vector, _>("embedding")?.to_vec()));
        }
        let code = sqlx::query(
            "SELECT language, code, context_before, embedding FROM code_examples
             WHERE page_id = ANY($1) AND model = $2 AND embedding IS NOT NULL",
        )
        .bind(rows)
        .bind(model)
        .fetch_all(&self.pool)
        .await?;
        for r in code {
            out.push((code_to_embed(&r, 0)?.text, r.try_get::<Vector, _>("embedding")?.to_vec()));
        }
        Ok(out)
    }

    async fn complete_refresh(
        &self,
        status: &CrawlStatus,
        source_id: &str,
        finish: for<'s> fn(&'s mut CrawlStatus, u64),
    ) -> Result<CrawlStatus, StoreError> {
        let mut tx = self.pool.begin().await?;
        let removed = sqlx::query(REMOVE_VANISHED_PG)
            .bind(clean(source_id))
            .bind(&status.progress_id)
            .bind(status.limit_reached.is_some())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let mut fin = status.clone();
        finish(&mut fin, removed);
        update_status(&mut *tx, &fin, self.owner.as_deref()).await?;
        tx.commit().await?;
        Ok(fin)
    }

    async fn export(&self, source_id: &str) -> Result<Box<dyn ExportReader>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
        let crawls: Vec<String> = sqlx::query_scalar("SELECT id FROM crawls WHERE source_id = $1 ORDER BY id")
            .bind(source_id.to_string())
            .fetch_all(&mut *tx)
            .await?;
        Ok(Box::new(Export { tx, cursor: super::ExportCursor::new(crawls) }))
    }

    async fn save_status(&self, s: &CrawlStatus) -> Result<(), StoreError> {
        update_status(&self.pool, s, self.owner.as_deref()).await?;
        Ok(())
    }

    async fn save_pages(&self, s: &CrawlStatus, pages: &[PageRecord], model: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        // The row lock orders this batch with any status write of the crawl.
        let crawl = sqlx::query("SELECT status, tenant, owner FROM crawls WHERE id = $1 FOR UPDATE")
            .bind(&s.progress_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("no crawl {}", s.progress_id)))?;
        let state: String = crawl.try_get("status")?;
        if CrawlState::parse(&state).is_some_and(CrawlState::is_terminal) {
            return Err(StoreError::Finished(s.progress_id.clone()));
        }
        let owner: Option<String> = crawl.try_get("owner")?;
        if let (Some(me), Some(owner)) = (&self.owner, &owner)
            && me != owner
        {
            return Err(StoreError::TakenOver(s.progress_id.clone()));
        }
        let tenant: Option<String> = crawl.try_get("tenant")?;
        // A retried batch (its commit may have landed before the connection
        // broke) replaces its own rows instead of colliding with them.
        // A kept row is moved, not written: moving it again is harmless.
        let urls: Vec<String> = pages.iter().filter(|p| p.kept.is_none()).map(|p| clean(&p.url).into_owned()).collect();
        sqlx::query("DELETE FROM pages WHERE crawl_id = $1 AND url = ANY($2)")
            .bind(&s.progress_id)
            .bind(&urls)
            .execute(&mut *tx)
            .await?;
        // A crawled URL replaces what the tenant's earlier crawls stored for
        // it (and by cascade their chunks and code examples): no duplicates
        // in search. A failed fetch leaves an earlier good copy alone.
        let crawled: Vec<String> = pages
            .iter()
            .filter(|p| p.status == PageStatus::Crawled && p.kept.is_none())
            .map(|p| clean(&p.url).into_owned())
            .collect();
        if !crawled.is_empty() {
            sqlx::query(
                "DELETE FROM pages p USING crawls k WHERE k.id = p.crawl_id AND p.crawl_id <> $1 AND p.url = ANY($2)
                   AND k.tenant IS NOT DISTINCT FROM $3",
            )
            .bind(&s.progress_id)
            .bind(&crawled)
            .bind(&tenant)
            .execute(&mut *tx)
            .await?;
        }
        for p in pages {
            let Some(kept) = p.kept else { continue };
            keep_page(&mut tx, &s.progress_id, p, kept.row).await?;
        }
        let pages: Vec<&PageRecord> = pages.iter().filter(|p| p.kept.is_none()).collect();
        if !pages.is_empty() {
            let ids = insert_pages(&mut tx, &s.progress_id, &pages).await?;
            insert_content(&mut tx, &s.progress_id, model, &pages, &ids).await?;
        }
        update_status(&mut *tx, s, self.owner.as_deref()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_crawl(&self, id: &str) -> Result<Option<CrawlStatus>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM crawls WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
    }

    async fn crawl_tenant(&self, id: &str) -> Result<Option<Option<String>>, StoreError> {
        let row = sqlx::query("SELECT tenant FROM crawls WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.map(|r| Ok(r.try_get::<Option<String>, _>("tenant")?)).transpose()
    }

    async fn crawl_request(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT request::text FROM crawls WHERE id = $1")
            .bind(clean(id).into_owned())
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn list_crawls(&self, f: &CrawlFilter) -> Result<Vec<CrawlStatus>, StoreError> {
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new("SELECT * FROM crawls WHERE true");
        if let Some(s) = f.status {
            qb.push(" AND status = ").push_bind(s.as_str());
        }
        if let Some(t) = &f.tenant {
            qb.push(" AND tenant = ").push_bind(t.clone());
        }
        if let Some(b) = &f.before_id {
            qb.push(" AND id < ").push_bind(b.clone());
        }
        qb.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(f.limit));
        Ok(qb.build_query_as().fetch_all(&self.pool).await?)
    }

    async fn list_pages(
        &self,
        crawl_id: &str,
        after: Option<i64>,
        limit: u32,
        markdown: bool,
    ) -> Result<Vec<PageSummary>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, url, final_url, title, status, http_status, depth, error, chunk_count, code_count, rendered,
               links_cut, CASE WHEN $4 THEN content END AS content
             FROM pages WHERE crawl_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(crawl_id)
        .bind(after.unwrap_or(0))
        .bind(i64::from(limit))
        .bind(markdown)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn page_content(&self, page_id: i64) -> Result<Option<PageContent>, StoreError> {
        let Some(mut page) = sqlx::query_as::<_, PageContent>(
            "SELECT p.id, p.crawl_id, c.tenant, p.url, p.final_url, p.title, p.description, p.status, p.http_status,
               p.format, p.content, p.content_hash, p.error, p.fetched_at
             FROM pages p JOIN crawls c ON c.id = p.crawl_id WHERE p.id = $1",
        )
        .bind(page_id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        page.chunks = sqlx::query_as(
            "SELECT chunk_index, heading_path, content FROM chunks WHERE page_id = $1 ORDER BY chunk_index",
        )
        .bind(page_id)
        .fetch_all(&self.pool)
        .await?;
        page.code_examples = sqlx::query_as(
            "SELECT id, language, code, context_before, context_after FROM code_examples WHERE page_id = $1 ORDER BY id",
        )
        .bind(page_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(page))
    }

    async fn page_id_by_url(&self, url: &str, tenant: Option<&str>) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT p.id FROM pages p JOIN crawls c ON c.id = p.crawl_id
             WHERE p.url = $1 AND p.status = 'crawled' AND ($2::text IS NULL OR c.tenant = $2)
             ORDER BY p.id DESC LIMIT 1",
        )
        .bind(url)
        .bind(tenant)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn get_page(&self, crawl_id: &str, url: &str) -> Result<Option<StoredPage>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT url, final_url, status, title, description, content, format, error, depth FROM pages
             WHERE crawl_id = $1 AND url = $2",
        )
        .bind(crawl_id)
        .bind(url)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn count_pages(&self, crawl_id: &str) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pages WHERE crawl_id = $1")
            .bind(crawl_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }

    async fn page_chunks(&self, crawl_id: &str, url: &str) -> Result<Vec<crate::content::Chunk>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT chunk_index, heading_path, content, char_count, page FROM chunks WHERE crawl_id = $1 AND url = $2
             ORDER BY chunk_index",
        )
        .bind(crawl_id)
        .bind(url)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn page_code_examples(
        &self,
        crawl_id: &str,
        url: &str,
    ) -> Result<Vec<crate::content::CodeExample>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT language, code, context_before, context_after FROM code_examples WHERE crawl_id = $1 AND url = $2
             ORDER BY id",
        )
        .bind(crawl_id)
        .bind(url)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn count_content(&self, crawl_id: &str) -> Result<(u64, u64), StoreError> {
        let (c, e): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM chunks WHERE crawl_id = $1), (SELECT COUNT(*) FROM code_examples WHERE crawl_id = $1)",
        )
        .bind(crawl_id)
        .fetch_one(&self.pool)
        .await?;
        Ok((c as u64, e as u64))
    }

    async fn content_rows(&self, url: &str) -> Result<(u64, u64, u64), StoreError> {
        let (p, c, e): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM pages WHERE url = $1), (SELECT COUNT(*) FROM chunks WHERE url = $1),
                    (SELECT COUNT(*) FROM code_examples WHERE url = $1)",
        )
        .bind(url)
        .fetch_one(&self.pool)
        .await?;
        Ok((p as u64, c as u64, e as u64))
    }

    async fn search_text(&self, query: &str, f: &SearchFilter, limit: u32) -> Result<Vec<(i64, f64)>, StoreError> {
        let words = crate::store::words::words(query);
        if words.is_empty() {
            return Ok(Vec::new());
        }
        let (lexemes, total) = lexemes(&self.pool, &words).await?;
        let rows: Vec<i64> = lexemes.iter().map(Lexemes::rows).collect();
        let (kept, capped) = crate::store::words::kept(lexemes.iter().collect(), &rows, RANKED_ROWS);
        if kept.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new("");
        push_text_ranking(&mut qb, &kept, total, capped, f, limit);
        ranked(&qb.build().fetch_all(&self.pool).await?)
    }

    async fn search_vector(
        &self,
        vector: &[f32],
        model: &str,
        f: &SearchFilter,
        limit: u32,
    ) -> Result<Vec<(i64, f64)>, StoreError> {
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new("SELECT id, (1 - d)::float8 AS score FROM (");
        push_vector_ranking(&mut qb, vector, model, f, limit);
        qb.push(") v ORDER BY d, id");
        ranked(&qb.build().fetch_all(&self.pool).await?)
    }

    async fn chunk_hits(&self, ids: &[i64]) -> Result<Vec<ChunkHit>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_as("SELECT id, url, title, content, page FROM chunks WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn search_code(
        &self,
        query: Option<&str>,
        language: Option<&str>,
        f: &SearchFilter,
        limit: u32,
    ) -> Result<Vec<CodeHit>, StoreError> {
        let tsq = query.and_then(ts_queries);
        let mut qb: QueryBuilder<Postgres> =
            QueryBuilder::new("SELECT c.id, c.url, c.language, c.code, c.context_before, c.context_after, ");
        match &tsq {
            Some(q) => {
                qb.push(format_args!("{TEXT_RANK} AS score FROM code_examples c"));
                push_ts_queries(&mut qb, "simple", q.clone());
                qb.push(" WHERE c.tsv @@ q");
            }
            None => {
                qb.push("0::float8 AS score FROM code_examples c WHERE true");
            }
        }
        if let Some(l) = language {
            qb.push(" AND c.language = ").push_bind(crate::content::normalize_language(l));
        }
        push_filter(&mut qb, f);
        qb.push(if tsq.is_some() { " ORDER BY score DESC, c.id" } else { " ORDER BY c.id DESC" });
        qb.push(" LIMIT ").push_bind(i64::from(limit));
        Ok(qb.build_query_as().fetch_all(&self.pool).await?)
    }

    async fn unembedded_in(
        &self,
        crawl: Option<&str>,
        after: After,
        limit: u32,
    ) -> Result<Vec<Unembedded>, StoreError> {
        super::rows::unembedded_in(&self.pool, crawl, after, limit).await
    }

    async fn set_vectors(&self, rows: &[(Unembedded, Vec<f32>)], model: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for code in [false, true] {
            let (ids, vectors): (Vec<i64>, Vec<Vector>) =
                rows.iter().filter(|(r, _)| r.code == code).map(|(r, v)| (r.id, Vector::from(v.clone()))).unzip();
            if ids.is_empty() {
                continue;
            }
            let sql = if code {
                "UPDATE code_examples t SET embedding = u.v, model = $3 FROM UNNEST($1::bigint[], $2::vector[]) AS u(id, v)
                 WHERE t.id = u.id"
            } else {
                "UPDATE chunks t SET embedding = u.v, model = $3 FROM UNNEST($1::bigint[], $2::vector[]) AS u(id, v)
                 WHERE t.id = u.id"
            };
            sqlx::query(sql).bind(ids).bind(vectors).bind(model).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    fn indexes_in_background(&self) -> bool {
        true
    }

    async fn index_vectors(&self, limit: u32) -> Result<u64, StoreError> {
        use std::sync::atomic::Ordering;
        let n = index_batch(&self.pool, i64::from(limit)).await?;
        let since = self.indexed_since_analyze.fetch_add(n, Ordering::Relaxed) + n;
        if n < u64::from(limit) && since >= ANALYZE_AFTER {
            self.indexed_since_analyze.store(0, Ordering::Relaxed);
            sqlx::query("ANALYZE chunks").execute(&self.pool).await?;
        }
        Ok(n)
    }

    async fn hand_over(&self, s: &CrawlStatus) -> Result<bool, StoreError> {
        let Some(owner) = &self.owner else { return Ok(false) };
        let moved = sqlx::query(
            "WITH moved AS (
               UPDATE crawls SET status = 'queued', owner = NULL, handoffs = handoffs + 1, message = $2,
                 current_url = NULL, pages_queued = 0, updated_at = now()
               WHERE id = $1 AND owner = $3 AND status = 'running' RETURNING id)
             SELECT pg_notify('trawl_queue', id) FROM moved",
        )
        .bind(&s.progress_id)
        .bind(s.message.as_deref().map(clean))
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        Ok(!moved.is_empty())
    }

    async fn set_last_event_id(&self, id: &str, event_id: u64) -> Result<(), StoreError> {
        sqlx::query("UPDATE crawls SET last_event_id = $2 WHERE id = $1")
            .bind(id)
            .bind(event_id as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn set_crawl_type(&self, id: &str, crawl_type: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE crawls SET request = jsonb_set(request, '{crawlType}', to_jsonb($2::text)) WHERE id = $1")
            .bind(id)
            .bind(crawl_type)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn stored_outcomes(&self, id: &str) -> Result<Vec<super::StoredOutcome>, StoreError> {
        Ok(sqlx::query_as("SELECT url, final_url, status, links FROM pages WHERE crawl_id = $1")
            .bind(id)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn webhook_secret(&self, tenant: &str, candidate: &str) -> Result<String, StoreError> {
        sqlx::query("INSERT INTO webhook_secrets (tenant, secret) VALUES ($1, $2) ON CONFLICT (tenant) DO NOTHING")
            .bind(tenant)
            .bind(candidate)
            .execute(&self.pool)
            .await?;
        Ok(sqlx::query_scalar("SELECT secret FROM webhook_secrets WHERE tenant = $1")
            .bind(tenant)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn enqueue_delivery(&self, d: &NewDelivery) -> Result<bool, StoreError> {
        let added = sqlx::query(
            "INSERT INTO webhook_deliveries (id, crawl_id, tenant, url, headers, event, body, page_row, next_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now()) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&d.id)
        .bind(&d.crawl_id)
        .bind(&d.tenant)
        .bind(&d.url)
        .bind(&d.headers)
        .bind(&d.event)
        .bind(&d.body)
        .bind(d.page_row)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(added > 0)
    }

    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut due: Vec<Delivery> = sqlx::query_as(
            "WITH due AS (
               SELECT d.seq FROM webhook_deliveries d
               WHERE d.status = 'pending' AND d.next_at <= $1
                 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e
                                 WHERE e.crawl_id = d.crawl_id AND e.status = 'pending' AND e.seq < d.seq)
               ORDER BY d.seq LIMIT $3 FOR UPDATE SKIP LOCKED)
             UPDATE webhook_deliveries w SET next_at = $2 FROM due WHERE w.seq = due.seq
             RETURNING w.seq, w.id, w.crawl_id, w.tenant, w.url, w.headers, w.event, w.body, w.attempts",
        )
        .bind(now)
        .bind(lease_until)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        due.sort_by_key(|d| d.seq);
        Ok(due)
    }

    async fn finish_delivery(&self, seq: i64, outcome: &DeliveryOutcome) -> Result<(), StoreError> {
        let q = match outcome {
            DeliveryOutcome::Delivered => sqlx::query(
                "UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, last_error = NULL,
                   delivered_at = now() WHERE seq = $1",
            )
            .bind(seq),
            DeliveryOutcome::Retry { at, error } => sqlx::query(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, next_at = $2, last_error = $3 WHERE seq = $1",
            )
            .bind(seq)
            .bind(*at)
            .bind(clean(error).into_owned()),
            DeliveryOutcome::Failed { error } => sqlx::query(
                "UPDATE webhook_deliveries SET status = 'failed', attempts = attempts + 1, last_error = $2 WHERE seq = $1",
            )
            .bind(seq)
            .bind(clean(error).into_owned()),
        };
        q.execute(&self.pool).await?;
        Ok(())
    }

    async fn webhook_cursor(&self, crawl_id: &str) -> Result<i64, StoreError> {
        let row: Option<i64> = sqlx::query_scalar("SELECT MAX(page_row) FROM webhook_deliveries WHERE crawl_id = $1")
            .bind(crawl_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.unwrap_or(0))
    }

    async fn unannounced_crawls(&self, before: DateTime<Utc>, limit: u32) -> Result<Vec<Unannounced>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT c.id, c.tenant, c.request::text AS request FROM crawls c
             WHERE c.status IN ('completed', 'failed', 'cancelled') AND c.request ? 'webhook'
               AND (NOT (c.request->'webhook' ? 'events')
                    OR c.request->'webhook'->'events' ?| array['crawl.completed', 'crawl.failed', 'crawl.cancelled'])
               AND c.finished_at < $1 AND c.finished_at > $1 - interval '1 day'
               AND NOT EXISTS (SELECT 1 FROM webhook_deliveries w WHERE w.id = c.id || ':end')
             ORDER BY c.id LIMIT $2",
        )
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn mark_interrupted(&self) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let failed = sqlx::query(
            "UPDATE crawls SET status = 'failed', error = 'interrupted', message = 'interrupted',
               current_url = NULL, pages_queued = 0, finished_at = now(), updated_at = now()
             WHERE status IN ('queued', 'running')",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let cancelled = sqlx::query(
            "UPDATE crawls SET status = 'cancelled', message = 'stopped (interrupted while stopping)',
               current_url = NULL, pages_queued = 0, finished_at = now(), updated_at = now()
             WHERE status = 'stopping'",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(failed + cancelled)
    }
}
