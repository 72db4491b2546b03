//! The embedded store: one SQLite file in WAL mode.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::{
    After, ChunkHit, CodeHit, CrawlFilter, Delivery, DeliveryOutcome, ExportPage, ExportReader, NewCrawl, NewDelivery,
    PageContent, PageRecord, PageStatus, PageSummary, PriorPage, Removed, SearchFilter, Source, SourceFilter,
    SourcePatch, Store, StoreError, StoredPage, Unannounced, Unembedded,
};
use crate::progress::{CrawlState, CrawlStatus};
use crate::sync::LockExt;

mod ann;
mod encoding;
mod export;
mod lock;
mod text;
mod write;

use super::rows::{CrawlRef, chunk_to_embed, code_to_embed, lines};
use encoding::*;
use export::*;
pub use lock::ProcessLock;
use write::*;

/// Reads go to a small pool; every write goes through `writer`, one
/// connection. SQLite allows one writer at a time anyway: with several
/// connections, concurrent crawls' batches collide on the file lock and a
/// crawl can fail with `database is locked` once the busy timeout runs out.
/// Queued on one connection they wait their turn in order instead.
pub struct SqliteStore {
    pool: SqlitePool,
    writer: SqlitePool,
    /// The folder of the database file, whose free space readiness checks.
    dir: Option<std::path::PathBuf>,
    /// Why the last write failed, until one succeeds again.
    write_error: std::sync::Mutex<Option<String>>,
    /// The vector index beside the database file.
    vectors: ann::VectorIndex,
}

/// Below this much free space on its disk the store says it cannot write:
/// a page batch with its chunks and vectors takes about that much.
const MIN_FREE_BYTES: u64 = 1024 * 1024;

/// How long a write may wait for the writer connection; longer than any
/// queue of batches, so that load delays writes but never fails them.
const WRITE_WAIT: Duration = Duration::from_secs(600);

/// Rows per multi-row INSERT; 14 binds a row stays far below SQLite's limit.
const PAGE_ROWS_PER_INSERT: usize = 200;

/// A `sqlite:` URL, or a plain file path, as connect options.
fn connect_options(database_url: &str) -> Result<SqliteConnectOptions, sqlx::Error> {
    if database_url.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(database_url)
    } else {
        SqliteConnectOptions::from_str(&format!("sqlite://{database_url}"))
    }
}

impl SqliteStore {
    pub async fn connect(database_url: &str) -> Result<Self, StoreError> {
        let opts = connect_options(database_url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer =
            SqlitePoolOptions::new().max_connections(1).acquire_timeout(WRITE_WAIT).connect_with(opts.clone()).await?;
        super::migrations::migrator(super::migrations::SQLITE).run(&writer).await?;
        let filename = std::path::Path::new(opts.get_filename());
        let in_memory = filename.as_os_str().is_empty() || filename.to_string_lossy().contains(":memory:");
        let vectors = ann::VectorIndex::new((!in_memory).then(|| ann::file_for(filename)));
        let dir = filename
            .parent()
            .map(|d| if d.as_os_str().is_empty() { std::path::PathBuf::from(".") } else { d.to_path_buf() });
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(opts).await?;
        Ok(Self { pool, writer, dir, write_error: std::sync::Mutex::new(None), vectors })
    }

    /// Keeps the outcome of a write for readiness: a failure is remembered
    /// until a write succeeds.
    fn noted<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        let mut last = self.write_error.locked();
        match &r {
            Ok(_) => *last = None,
            Err(StoreError::Database(e)) => *last = Some(e.to_string()),
            Err(_) => {}
        }
        r
    }

    /// Whether writes can land, given the disk's free bytes: enough space,
    /// and no failure since the last write that succeeded.
    fn write_check(&self, free: Option<u64>) -> Result<(), StoreError> {
        if let Some(free) = free.filter(|f| *f < MIN_FREE_BYTES) {
            return Err(StoreError::Unwritable(format!("the database's disk is full ({free} bytes free)")));
        }
        match self.write_error.locked().as_ref() {
            Some(e) => Err(StoreError::Unwritable(format!("the last write failed: {e}"))),
            None => Ok(()),
        }
    }

    /// Free bytes on the database's disk, if it can be told.
    fn free_bytes(&self) -> Option<u64> {
        use std::os::unix::ffi::OsStrExt;
        let dir = std::ffi::CString::new(self.dir.as_ref()?.as_os_str().as_bytes()).ok()?;
        // SAFETY: statvfs writes only into the struct we hand it.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(dir.as_ptr(), &mut st) };
        (rc == 0).then(|| st.f_bavail.saturating_mul(st.f_frsize))
    }

    // The writes, each through the one writer connection; the `Store`
    // methods note their outcome for readiness.

    async fn insert_crawl(&self, c: &NewCrawl) -> Result<String, StoreError> {
        let s = &c.status;
        let mut tx = self.writer.begin().await?;
        // A refresh names its source, which must still be there (it may
        // have been deleted since it was claimed); any other crawl is filed
        // under its tenant's source for its URL, made on first use.
        let source_id: String = match s.source_id.as_ref().filter(|_| s.refresh) {
            Some(id) => sqlx::query_scalar("SELECT id FROM sources WHERE id = ?")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::SourceGone(id.clone()))?,
            None => {
                sqlx::query_scalar(
                    "INSERT INTO sources (id, tenant, url, name, tags, request, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
                 ON CONFLICT (tenant, url) DO UPDATE SET request = excluded.request, updated_at = excluded.updated_at
                 RETURNING id",
                )
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(c.tenant.as_deref().unwrap_or_default())
                .bind(&s.url)
                .bind(&c.source.name)
                .bind(serde_json::to_string(&c.source.tags).unwrap_or_else(|_| "[]".into()))
                .bind(&c.settings_json)
                .bind(ts(&s.created_at))
                .fetch_one(&mut *tx)
                .await?
            }
        };
        // Never two refreshes of a source at once, nor a refresh beside a
        // crawl of it: the source's row, written or locked just now, orders
        // them (and SQLite's one writer).
        if s.refresh {
            let running: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM crawls WHERE source_id = ? AND status NOT IN ('completed', 'failed', 'cancelled')",
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
               source_id, refresh)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&s.progress_id)
        .bind(&c.tenant)
        .bind(&s.url)
        .bind(&c.request_json)
        .bind(s.status.as_str())
        .bind(s.stage.as_str())
        .bind(s.percentage)
        .bind(&s.message)
        .bind(ts(&s.created_at))
        .bind(ts(&s.created_at))
        .bind(&source_id)
        .bind(s.refresh)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(source_id)
    }

    async fn patch_source(&self, id: &str, patch: &SourcePatch) -> Result<bool, StoreError> {
        let tags = patch.tags.as_ref().map(|t| serde_json::to_string(t).unwrap_or_else(|_| "[]".into()));
        let schedule = patch.schedule.clone().unwrap_or_default();
        let done = sqlx::query(
            "UPDATE sources SET name = COALESCE(?1, name), tags = COALESCE(?2, tags), request = COALESCE(?3, request),
               updated_at = ?4,
               refresh_every = CASE WHEN ?6 THEN ?7 ELSE refresh_every END,
               cron = CASE WHEN ?6 THEN ?8 ELSE cron END,
               next_refresh_at = CASE WHEN ?6 THEN ?9 ELSE next_refresh_at END
             WHERE id = ?5",
        )
        .bind(&patch.name)
        .bind(tags)
        .bind(&patch.request_json)
        .bind(ts(&Utc::now()))
        .bind(id)
        .bind(patch.schedule.is_some())
        .bind(&schedule.refresh_every)
        .bind(&schedule.cron)
        .bind(schedule.next_refresh_at.as_ref().map(ts))
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn remove_source(&self, id: &str) -> Result<Option<Removed>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let exists: Option<String> =
            sqlx::query_scalar("SELECT id FROM sources WHERE id = ?").bind(id).fetch_optional(&mut *tx).await?;
        if exists.is_none() {
            return Ok(None);
        }
        let running: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM crawls WHERE source_id = ? AND status NOT IN ('completed', 'failed', 'cancelled')",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        if running > 0 {
            return Err(StoreError::SourceBusy(id.to_string()));
        }
        // Content first, explicitly: the FTS indexes follow through their
        // delete triggers, whatever the cascade would do.
        let mut removed = Removed::default();
        for (sql, n) in [
            ("DELETE FROM chunks WHERE crawl_id IN (SELECT id FROM crawls WHERE source_id = ?)", &mut removed.chunks),
            (
                "DELETE FROM code_examples WHERE crawl_id IN (SELECT id FROM crawls WHERE source_id = ?)",
                &mut removed.code_examples,
            ),
            ("DELETE FROM pages WHERE crawl_id IN (SELECT id FROM crawls WHERE source_id = ?)", &mut removed.pages),
        ] {
            *n = sqlx::query(sql).bind(id).execute(&mut *tx).await?.rows_affected();
        }
        removed.crawls =
            sqlx::query("DELETE FROM crawls WHERE source_id = ?").bind(id).execute(&mut *tx).await?.rows_affected();
        sqlx::query("DELETE FROM sources WHERE id = ?").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Some(removed))
    }

    async fn update_crawl(&self, s: &CrawlStatus) -> Result<(), StoreError> {
        update_status(&self.writer, s).await?;
        Ok(())
    }

    async fn insert_pages(&self, s: &CrawlStatus, pages: &[PageRecord], model: &str) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await?;
        let state: String = sqlx::query_scalar("SELECT status FROM crawls WHERE id = ?")
            .bind(&s.progress_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("no crawl {}", s.progress_id)))?;
        if CrawlState::parse(&state).is_some_and(CrawlState::is_terminal) {
            return Err(StoreError::Finished(s.progress_id.clone()));
        }
        // A batch written again replaces its own rows (and by cascade their
        // chunks and code examples) instead of adding to them. A kept row is
        // moved, not written: moving it again is harmless.
        let own = "crawl_id = (SELECT id FROM me)";
        delete_pages(&mut tx, &s.progress_id, own, pages.iter().filter(|p| p.kept.is_none())).await?;
        // A crawled URL replaces what the tenant's earlier crawls stored for
        // it: no duplicates in search. Another tenant's copy is theirs to
        // keep; a failed fetch leaves an earlier good copy alone.
        let same_tenant = "crawl_id <> (SELECT id FROM me)
            AND crawl_id IN (SELECT id FROM crawls WHERE tenant IS (SELECT tenant FROM crawls WHERE id = (SELECT id FROM me)))";
        let crawled = pages.iter().filter(|p| p.status == PageStatus::Crawled && p.kept.is_none());
        delete_pages(&mut tx, &s.progress_id, same_tenant, crawled).await?;
        for p in pages {
            let Some(kept) = p.kept else { continue };
            keep_page(&mut tx, &s.progress_id, p, kept.row).await?;
        }
        let pages: Vec<&PageRecord> = pages.iter().filter(|p| p.kept.is_none()).collect();
        for chunk in pages.chunks(PAGE_ROWS_PER_INSERT) {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO pages (crawl_id, url, final_url, status, http_status, depth, title, content_type, format,
                   content, bytes, error, fetched_at, description, source, chunk_count, code_count, rendered,
                   content_hash, etag, last_modified, links, body_hash, links_cut) ",
            );
            qb.push_values(chunk, |mut b, p| {
                b.push_bind(&s.progress_id)
                    .push_bind(&p.url)
                    .push_bind(&p.final_url)
                    .push_bind(p.status.as_str())
                    .push_bind(p.http_status.map(i64::from))
                    .push_bind(i64::from(p.depth))
                    .push_bind(&p.title)
                    .push_bind(&p.content_type)
                    .push_bind(p.format)
                    .push_bind(&p.content)
                    .push_bind(p.bytes.map(|b| b as i64))
                    .push_bind(&p.error)
                    .push_bind(ts(&p.fetched_at))
                    .push_bind(&p.description)
                    .push_bind(&p.source)
                    .push_bind(p.chunks.len() as i64)
                    .push_bind(p.code_examples.len() as i64)
                    .push_bind(p.rendered)
                    .push_bind(&p.content_hash)
                    .push_bind(&p.etag)
                    .push_bind(&p.last_modified)
                    .push_bind((!p.links.is_empty()).then(|| p.links.join("\n")))
                    .push_bind(&p.body_hash)
                    .push_bind(i64::from(p.links_cut));
            });
            qb.build().execute(&mut *tx).await?;
        }
        let with_content: Vec<&PageRecord> =
            pages.iter().copied().filter(|p| !p.chunks.is_empty() || !p.code_examples.is_empty()).collect();
        if !with_content.is_empty() {
            let mut ids = std::collections::HashMap::new();
            for chunk in with_content.chunks(PAGE_ROWS_PER_INSERT) {
                let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT id, url FROM pages WHERE crawl_id = ");
                qb.push_bind(&s.progress_id).push(" AND url IN (");
                let mut sep = qb.separated(", ");
                for p in chunk {
                    sep.push_bind(&p.url);
                }
                qb.push(")");
                for row in qb.build().fetch_all(&mut *tx).await? {
                    ids.insert(row.try_get::<String, _>("url")?, row.try_get::<i64, _>("id")?);
                }
            }
            insert_content(&mut tx, &s.progress_id, model, &with_content, &ids).await?;
        }
        update_status(&mut *tx, s).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn update_vectors(&self, rows: &[(Unembedded, Vec<f32>)], model: &str) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await?;
        for (row, v) in rows {
            let sql = if row.code {
                "UPDATE code_examples SET embedding = ?, model = ? WHERE id = ?"
            } else {
                "UPDATE chunks SET embedding = ?, model = ? WHERE id = ?"
            };
            sqlx::query(sql).bind(to_bytes(v)).bind(model).bind(row.id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Adds the crawl, source and tenant conditions of a search; `t` is the
/// alias (`c` chunks, `e` code examples), `k` the crawls table.
fn push_filter(qb: &mut QueryBuilder<Sqlite>, f: &SearchFilter, t: &str) {
    let (crawl_col, source_col) =
        if t == "e" { (" AND e.crawl_id = ", " AND e.source = ") } else { (" AND c.crawl_id = ", " AND c.source = ") };
    if let Some(c) = &f.crawl_id {
        qb.push(crawl_col).push_bind(c.clone());
    }
    if let Some(s) = &f.source {
        qb.push(source_col).push_bind(s.clone());
    }
    if let Some(tenant) = &f.tenant {
        qb.push(" AND k.tenant = ").push_bind(tenant.clone());
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn can_write(&self) -> Result<(), StoreError> {
        self.write_check(self.free_bytes())
    }

    async fn writable(&self) -> Result<(), StoreError> {
        self.ping().await?;
        let free = self.free_bytes();
        if self.write_check(free).is_err() && free.is_none_or(|f| f >= MIN_FREE_BYTES) {
            // Space came back since a write failed: one small write tells
            // whether writes land again.
            let probe =
                sqlx::query("UPDATE crawls SET updated_at = updated_at WHERE id = (SELECT MAX(id) FROM crawls)")
                    .execute(&self.writer)
                    .await
                    .map(|_| ())
                    .map_err(StoreError::from);
            let _ = self.noted(probe);
        }
        self.write_check(free)
    }

    async fn create_crawl(&self, c: &NewCrawl) -> Result<String, StoreError> {
        self.noted(self.insert_crawl(c).await)
    }

    async fn list_sources(&self, f: &SourceFilter) -> Result<Vec<Source>, StoreError> {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(SOURCE_SELECT);
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
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(SOURCE_SELECT);
        qb.push(" WHERE s.id = ").push_bind(id);
        Ok(qb.build_query_as().fetch_optional(&self.pool).await?)
    }

    async fn update_source(&self, id: &str, patch: &SourcePatch) -> Result<Option<Source>, StoreError> {
        if !self.noted(self.patch_source(id, patch).await)? {
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
        let run = async {
            // The one writer connection orders this with every other write.
            let mut tx = self.writer.begin().await?;
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(SOURCE_SELECT);
            qb.push(" WHERE s.next_refresh_at <= ").push_bind(ts(&now));
            qb.push(" ORDER BY s.next_refresh_at LIMIT ").push_bind(i64::from(limit));
            let due: Vec<Source> = qb.build_query_as().fetch_all(&mut *tx).await?;
            for source in &due {
                sqlx::query("UPDATE sources SET next_refresh_at = ? WHERE id = ?")
                    .bind(next(source, now).as_ref().map(ts))
                    .bind(&source.id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(due)
        };
        self.noted(run.await)
    }

    async fn source_crawls(&self, id: &str) -> Result<Vec<(String, CrawlState)>, StoreError> {
        let rows: Vec<CrawlRef> = sqlx::query_as("SELECT id, status FROM crawls WHERE source_id = ? ORDER BY id")
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|CrawlRef(id, state)| (id, state)).collect())
    }

    async fn delete_source(&self, id: &str) -> Result<Option<Removed>, StoreError> {
        self.noted(self.remove_source(id).await)
    }

    async fn source_pages(&self, source_id: &str, except: &str) -> Result<Vec<PriorPage>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, url, title, content_hash, body_hash, etag, last_modified, chunk_count, code_count,
               links IS NOT NULL AS has_links
             FROM pages WHERE status = 'crawled' AND crawl_id IN (SELECT id FROM crawls WHERE source_id = ?1 AND id <> ?2)",
        )
        .bind(source_id)
        .bind(except)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn page_links(&self, row: i64) -> Result<Option<Vec<String>>, StoreError> {
        let links: Option<Option<String>> =
            sqlx::query_scalar("SELECT links FROM pages WHERE id = ?").bind(row).fetch_optional(&self.pool).await?;
        Ok(links.map(lines))
    }

    async fn page_vectors(&self, rows: &[i64], model: &str) -> Result<Vec<(String, Vec<f32>)>, StoreError> {
        let mut out = Vec::new();
        for ids in rows.chunks(500) {
            let mut qb: QueryBuilder<Sqlite> =
                QueryBuilder::new("SELECT title, heading_path, content, embedding FROM chunks WHERE model = ");
            qb.push_bind(model).push(" AND embedding IS NOT NULL AND page_id IN (");
            let mut sep = qb.separated(", ");
            for id in ids {
                sep.push_bind(*id);
            }
            qb.push(")");
            for r in qb.build().fetch_all(&self.pool).await? {
                out.push((chunk_to_embed(&r, 0)?.text, from_bytes(&r.try_get::<Vec<u8>, _>("embedding")?)));
            }
            let mut qb: QueryBuilder<Sqlite> =
                QueryBuilder::new("SELECT language, code, context_before, embedding FROM code_examples WHERE model = ");
            qb.push_bind(model).push(" AND embedding IS NOT NULL AND page_id IN (");
            let mut sep = qb.separated(", ");
            for id in ids {
                sep.push_bind(*id);
            }
            qb.push(")");
            for r in qb.build().fetch_all(&self.pool).await? {
                out.push((code_to_embed(&r, 0)?.text, from_bytes(&r.try_get::<Vec<u8>, _>("embedding")?)));
            }
        }
        Ok(out)
    }

    async fn complete_refresh(
        &self,
        status: &CrawlStatus,
        source_id: &str,
        finish: for<'s> fn(&'s mut CrawlStatus, u64),
    ) -> Result<CrawlStatus, StoreError> {
        let run = async {
            let mut tx = self.writer.begin().await?;
            let removed = sqlx::query(REMOVE_VANISHED_SQLITE)
                .bind(source_id)
                .bind(&status.progress_id)
                .bind(status.limit_reached.is_some())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let mut fin = status.clone();
            finish(&mut fin, removed);
            update_status(&mut *tx, &fin).await?;
            tx.commit().await?;
            Ok(fin)
        };
        self.noted(run.await)
    }

    async fn export(&self, source_id: &str) -> Result<Box<dyn ExportReader>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN").await?;
        let crawls: Vec<String> = sqlx::query_scalar("SELECT id FROM crawls WHERE source_id = ? ORDER BY id")
            .bind(source_id.to_string())
            .fetch_all(&mut *tx)
            .await?;
        Ok(Box::new(Export { tx, cursor: super::ExportCursor::new(crawls) }))
    }

    async fn save_status(&self, s: &CrawlStatus) -> Result<(), StoreError> {
        self.noted(self.update_crawl(s).await)
    }

    async fn save_pages(&self, s: &CrawlStatus, pages: &[PageRecord], model: &str) -> Result<(), StoreError> {
        self.noted(self.insert_pages(s, pages, model).await)
    }

    async fn set_last_event_id(&self, id: &str, event_id: u64) -> Result<(), StoreError> {
        let r = sqlx::query("UPDATE crawls SET last_event_id = ? WHERE id = ?")
            .bind(event_id as i64)
            .bind(id)
            .execute(&self.writer)
            .await;
        self.noted(r.map(|_| ()).map_err(StoreError::from))
    }

    async fn get_crawl(&self, id: &str) -> Result<Option<CrawlStatus>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM crawls WHERE id = ?").bind(id).fetch_optional(&self.pool).await?)
    }

    async fn crawl_tenant(&self, id: &str) -> Result<Option<Option<String>>, StoreError> {
        let row = sqlx::query("SELECT tenant FROM crawls WHERE id = ?").bind(id).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| r.get::<Option<String>, _>("tenant")))
    }

    async fn crawl_request(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT request FROM crawls WHERE id = ?").bind(id).fetch_optional(&self.pool).await?)
    }

    async fn list_crawls(&self, f: &CrawlFilter) -> Result<Vec<CrawlStatus>, StoreError> {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT * FROM crawls WHERE 1 = 1");
        if let Some(s) = f.status {
            qb.push(" AND status = ").push_bind(s.as_str());
        }
        if let Some(t) = &f.tenant {
            qb.push(" AND tenant = ").push_bind(t);
        }
        if let Some(b) = &f.before_id {
            qb.push(" AND id < ").push_bind(b);
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
               links_cut, CASE WHEN ?4 THEN content END AS content
             FROM pages WHERE crawl_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
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
             FROM pages p JOIN crawls c ON c.id = p.crawl_id WHERE p.id = ?",
        )
        .bind(page_id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        page.chunks = sqlx::query_as(
            "SELECT chunk_index, heading_path, content FROM chunks WHERE page_id = ? ORDER BY chunk_index",
        )
        .bind(page_id)
        .fetch_all(&self.pool)
        .await?;
        page.code_examples = sqlx::query_as(
            "SELECT id, language, code, context_before, context_after FROM code_examples WHERE page_id = ? ORDER BY id",
        )
        .bind(page_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(page))
    }

    async fn page_id_by_url(&self, url: &str, tenant: Option<&str>) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT p.id FROM pages p JOIN crawls c ON c.id = p.crawl_id
             WHERE p.url = ?1 AND p.status = 'crawled' AND (?2 IS NULL OR c.tenant = ?2)
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
             WHERE crawl_id = ? AND url = ?",
        )
        .bind(crawl_id)
        .bind(url)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn count_pages(&self, crawl_id: &str) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pages WHERE crawl_id = ?")
            .bind(crawl_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }

    async fn page_chunks(&self, crawl_id: &str, url: &str) -> Result<Vec<crate::content::Chunk>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT chunk_index, heading_path, content, char_count, page FROM chunks WHERE crawl_id = ? AND url = ?
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
            "SELECT language, code, context_before, context_after FROM code_examples WHERE crawl_id = ? AND url = ?
             ORDER BY id",
        )
        .bind(crawl_id)
        .bind(url)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn count_content(&self, crawl_id: &str) -> Result<(u64, u64), StoreError> {
        let (c, e): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM chunks WHERE crawl_id = ?1), (SELECT COUNT(*) FROM code_examples WHERE crawl_id = ?1)",
        )
        .bind(crawl_id)
        .fetch_one(&self.pool)
        .await?;
        Ok((c as u64, e as u64))
    }

    async fn content_rows(&self, url: &str) -> Result<(u64, u64, u64), StoreError> {
        let (p, c, e): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM pages WHERE url = ?1), (SELECT COUNT(*) FROM chunks WHERE url = ?1),
                    (SELECT COUNT(*) FROM code_examples WHERE url = ?1)",
        )
        .bind(url)
        .fetch_one(&self.pool)
        .await?;
        Ok((p as u64, c as u64, e as u64))
    }

    async fn search_text(&self, query: &str, f: &SearchFilter, limit: u32) -> Result<Vec<(i64, f64)>, StoreError> {
        text::search(&self.pool, query, f, limit).await
    }

    async fn search_vector(
        &self,
        vector: &[f32],
        model: &str,
        f: &SearchFilter,
        limit: u32,
    ) -> Result<Vec<(i64, f64)>, StoreError> {
        // The graph's nearest, and the rows it has not taken in yet, scored
        // exactly in scope. A narrow scope may keep too few of them: then
        // more are asked for once, then the whole scope is scanned.
        let mut want = ann::want(limit);
        for _ in 0..2 {
            let Some(c) = self.vectors.candidates(vector, model, want) else { break };
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                "SELECT c.id AS id, c.embedding AS embedding FROM chunks c CROSS JOIN crawls k ON k.id = c.crawl_id
                 WHERE c.id IN (SELECT value FROM json_each(",
            );
            qb.push_bind(serde_json::to_string(&c.ids).unwrap_or_else(|_| "[]".into()))
                .push(") UNION ALL SELECT chunk_id FROM vector_changes WHERE seq > ")
                .push_bind(c.applied)
                .push(") AND c.embedding IS NOT NULL AND c.model = ")
                .push_bind(model);
            push_filter(&mut qb, f, "c");
            let best = score(&self.pool, qb, vector, limit).await?;
            if best.len() >= limit as usize || !c.full {
                return Ok(best);
            }
            want *= 10;
        }
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT c.id AS id, c.embedding AS embedding FROM chunks c JOIN crawls k ON k.id = c.crawl_id
             WHERE c.embedding IS NOT NULL AND c.model = ",
        );
        qb.push_bind(model);
        push_filter(&mut qb, f, "c");
        score(&self.pool, qb, vector, limit).await
    }

    fn index_vectors_of(&self, model: &str) {
        self.vectors.set_model(model);
    }

    fn indexes_in_background(&self) -> bool {
        true
    }

    async fn index_vectors(&self, limit: u32) -> Result<u64, StoreError> {
        self.vectors.step(&self.pool, &self.writer, limit).await
    }

    async fn save_index(&self) {
        self.vectors.flush(&self.writer).await;
    }

    async fn vector_index(&self) -> Result<Option<super::VectorIndexState>, StoreError> {
        self.vectors.state(&self.pool).await
    }

    async fn chunk_hits(&self, ids: &[i64]) -> Result<Vec<ChunkHit>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT id, url, title, content, page FROM chunks WHERE id IN (");
        let mut sep = qb.separated(", ");
        for id in ids {
            sep.push_bind(*id);
        }
        qb.push(")");
        Ok(qb.build_query_as().fetch_all(&self.pool).await?)
    }

    async fn search_code(
        &self,
        query: Option<&str>,
        language: Option<&str>,
        f: &SearchFilter,
        limit: u32,
    ) -> Result<Vec<CodeHit>, StoreError> {
        let fts = query.and_then(super::fts_query);
        let mut qb: QueryBuilder<Sqlite> = match &fts {
            Some(q) => {
                let mut qb = QueryBuilder::new(
                    "SELECT e.id, e.url, e.language, e.code, e.context_before, e.context_after, -bm25(code_fts, 10.0, 1.0, 1.0) AS score
                     FROM code_fts CROSS JOIN code_examples e ON e.id = code_fts.rowid CROSS JOIN crawls k ON k.id = e.crawl_id
                     WHERE code_fts MATCH ",
                );
                qb.push_bind(q.clone());
                qb
            }
            None => QueryBuilder::new(
                "SELECT e.id, e.url, e.language, e.code, e.context_before, e.context_after, 0.0 AS score
                 FROM code_examples e JOIN crawls k ON k.id = e.crawl_id WHERE 1 = 1",
            ),
        };
        if let Some(l) = language {
            qb.push(" AND e.language = ").push_bind(crate::content::normalize_language(l));
        }
        push_filter(&mut qb, f, "e");
        qb.push(if fts.is_some() { " ORDER BY score DESC" } else { " ORDER BY e.id DESC" });
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
        self.noted(self.update_vectors(rows, model).await)
    }

    async fn webhook_secret(&self, tenant: &str, candidate: &str) -> Result<String, StoreError> {
        let write = sqlx::query("INSERT OR IGNORE INTO webhook_secrets (tenant, secret, created_at) VALUES (?, ?, ?)")
            .bind(tenant)
            .bind(candidate)
            .bind(ts(&Utc::now()))
            .execute(&self.writer)
            .await
            .map(|_| ())
            .map_err(StoreError::from);
        self.noted(write)?;
        Ok(sqlx::query_scalar("SELECT secret FROM webhook_secrets WHERE tenant = ?")
            .bind(tenant)
            .fetch_one(&self.writer)
            .await?)
    }

    async fn enqueue_delivery(&self, d: &NewDelivery) -> Result<bool, StoreError> {
        let now = ts(&Utc::now());
        let added = sqlx::query(
            "INSERT OR IGNORE INTO webhook_deliveries
               (id, crawl_id, tenant, url, headers, event, body, page_row, next_at, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&d.id)
        .bind(&d.crawl_id)
        .bind(&d.tenant)
        .bind(&d.url)
        .bind(&d.headers)
        .bind(&d.event)
        .bind(&d.body)
        .bind(d.page_row)
        .bind(&now)
        .bind(&now)
        .execute(&self.writer)
        .await
        .map(|r| r.rows_affected() > 0)
        .map_err(StoreError::from);
        self.noted(added)
    }

    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let claimed = sqlx::query_as::<_, Delivery>(
            "UPDATE webhook_deliveries SET next_at = ?2 WHERE seq IN (
               SELECT d.seq FROM webhook_deliveries d
               WHERE d.status = 'pending' AND d.next_at <= ?1
                 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e
                                 WHERE e.crawl_id = d.crawl_id AND e.status = 'pending' AND e.seq < d.seq)
               ORDER BY d.seq LIMIT ?3)
             RETURNING seq, id, crawl_id, tenant, url, headers, event, body, attempts",
        )
        .bind(ts(&now))
        .bind(ts(&lease_until))
        .bind(i64::from(limit))
        .fetch_all(&self.writer)
        .await
        .map_err(StoreError::from);
        let mut due = self.noted(claimed)?;
        due.sort_by_key(|d| d.seq);
        Ok(due)
    }

    async fn finish_delivery(&self, seq: i64, outcome: &DeliveryOutcome) -> Result<(), StoreError> {
        let now = ts(&Utc::now());
        let q = match outcome {
            DeliveryOutcome::Delivered => sqlx::query(
                "UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, last_error = NULL,
                   delivered_at = ?2 WHERE seq = ?1",
            )
            .bind(seq)
            .bind(now),
            DeliveryOutcome::Retry { at, error } => sqlx::query(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, next_at = ?2, last_error = ?3 WHERE seq = ?1",
            )
            .bind(seq)
            .bind(ts(at))
            .bind(error.clone()),
            DeliveryOutcome::Failed { error } => sqlx::query(
                "UPDATE webhook_deliveries SET status = 'failed', attempts = attempts + 1, last_error = ?2 WHERE seq = ?1",
            )
            .bind(seq)
            .bind(error.clone()),
        };
        let r = q.execute(&self.writer).await.map(|_| ()).map_err(StoreError::from);
        self.noted(r)
    }

    async fn webhook_cursor(&self, crawl_id: &str) -> Result<i64, StoreError> {
        let row: Option<i64> = sqlx::query_scalar("SELECT MAX(page_row) FROM webhook_deliveries WHERE crawl_id = ?")
            .bind(crawl_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.unwrap_or(0))
    }

    async fn unannounced_crawls(&self, before: DateTime<Utc>, limit: u32) -> Result<Vec<Unannounced>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT c.id, c.tenant, c.request FROM crawls c
             WHERE c.status IN ('completed', 'failed', 'cancelled') AND json_type(c.request, '$.webhook') IS NOT NULL
               AND (json_type(c.request, '$.webhook.events') IS NULL
                    OR EXISTS (SELECT 1 FROM json_each(c.request, '$.webhook.events')
                               WHERE value IN ('crawl.completed', 'crawl.failed', 'crawl.cancelled')))
               AND c.finished_at < ?1 AND c.finished_at > ?2
               AND NOT EXISTS (SELECT 1 FROM webhook_deliveries w WHERE w.id = c.id || ':end')
             ORDER BY c.id LIMIT ?3",
        )
        .bind(ts(&before))
        .bind(ts(&(before - chrono::Duration::days(1))))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn mark_interrupted(&self) -> Result<u64, StoreError> {
        let now = ts(&Utc::now());
        let mut tx = self.writer.begin().await?;
        let failed = sqlx::query(
            "UPDATE crawls SET status = 'failed', error = 'interrupted', message = 'interrupted',
               current_url = NULL, pages_queued = 0, finished_at = ?, updated_at = ?
             WHERE status IN ('queued', 'running')",
        )
        .bind(&now)
        .bind(&now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let cancelled = sqlx::query(
            "UPDATE crawls SET status = 'cancelled', message = 'stopped (interrupted while stopping)',
               current_url = NULL, pages_queued = 0, finished_at = ?, updated_at = ?
             WHERE status = 'stopping'",
        )
        .bind(&now)
        .bind(&now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(failed + cancelled)
    }
}

/// The rows a vector query selects (`id`, `embedding`), scored against
/// `vector` row by row into a bounded heap of the best: memory stays that of
/// `limit` hits whatever the number of rows.
async fn score(
    pool: &SqlitePool,
    mut qb: QueryBuilder<Sqlite>,
    vector: &[f32],
    limit: u32,
) -> Result<Vec<(i64, f64)>, StoreError> {
    let mut rows = qb.build().fetch(pool);
    let mut best = TopK::new(limit as usize);
    while let Some(r) = futures::TryStreamExt::try_next(&mut rows).await? {
        let (Ok(id), Ok(bytes)) = (r.try_get::<i64, _>("id"), r.try_get::<&[u8], _>("embedding")) else {
            continue;
        };
        if bytes.len() == vector.len() * 4 {
            best.offer(id, f64::from(dot_bytes(bytes, vector)));
        }
    }
    Ok(best.into_sorted())
}

/// The `k` best scores seen, kept in a min-heap.
struct TopK {
    k: usize,
    heap: std::collections::BinaryHeap<std::cmp::Reverse<(Score, i64)>>,
}

/// A score ordered by `total_cmp`.
struct Score(f64);
impl PartialEq for Score {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for Score {}
impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Score {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl TopK {
    fn new(k: usize) -> Self {
        Self { k, heap: std::collections::BinaryHeap::with_capacity(k + 1) }
    }

    fn offer(&mut self, id: i64, score: f64) {
        if self.k == 0 {
            return;
        }
        if self.heap.len() < self.k {
            self.heap.push(std::cmp::Reverse((Score(score), id)));
        } else if self.heap.peek().is_some_and(|std::cmp::Reverse((worst, _))| score > worst.0) {
            self.heap.pop();
            self.heap.push(std::cmp::Reverse((Score(score), id)));
        }
    }

    fn into_sorted(self) -> Vec<(i64, f64)> {
        let mut v: Vec<(i64, f64)> = self.heap.into_iter().map(|std::cmp::Reverse((s, id))| (id, s.0)).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }
}
