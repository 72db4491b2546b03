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

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pgvector::Vector;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Executor, Postgres, QueryBuilder, Row};

use super::{
    ChunkHit, ChunkText, CodeHit, CodeText, CrawlFilter, ExportPage, ExportReader, LastCrawl, NewCrawl, PageContent,
    PageRecord, PageStatus, PageSummary, PriorPage, Removed, SearchFilter, Source, SourceFilter, SourcePatch, Store,
    StoreError, StoredPage, Unembedded,
};
use crate::progress::{CrawlState, CrawlStatus, Limit, Stage};

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

/// The advisory lock that serialises schema setup between instances
/// starting at once.
const SETUP_LOCK: i64 = 0x7472_6177_6c00;

impl PgStore {
    /// Connects, runs the migrations and makes sure the vector columns have
    /// the embedder's dimension (adding them on a fresh database).
    pub async fn connect(database_url: &str, dimensions: Option<usize>) -> Result<Self, StoreError> {
        let dimensions = dimensions.ok_or_else(|| {
            StoreError::Config(
                "PostgreSQL needs the embedding dimension: set TRAWL_EMBEDDING_DIMENSIONS (or --embedding-dimensions)"
                    .into(),
            )
        })?;
        if !(1..=16_000).contains(&dimensions) {
            return Err(StoreError::Config(format!("embedding dimension {dimensions} is out of range (1..=16000)")));
        }
        let opts: PgConnectOptions = database_url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // Filtered vector searches keep walking the HNSW graph
                    // until they have enough rows (pgvector 0.8).
                    conn.execute("SET hnsw.iterative_scan = relaxed_order; SET hnsw.ef_search = 100").await?;
                    Ok(())
                })
            })
            .connect_with(opts)
            .await?;
        let mut conn = pool.acquire().await?;
        sqlx::query("SELECT pg_advisory_lock($1)").bind(SETUP_LOCK).execute(&mut *conn).await?;
        let setup = async {
            super::migrations::migrator(super::migrations::POSTGRES).run(&mut *conn).await?;
            ensure_dimensions(&mut conn, dimensions).await
        }
        .await;
        sqlx::query("SELECT pg_advisory_unlock($1)").bind(SETUP_LOCK).execute(&mut *conn).await?;
        setup?;
        drop(conn);
        Ok(Self { pool, owner: None, indexed_since_analyze: 0.into() })
    }
}

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

/// Adds the `vector(N)` columns and their indexes on first start; refuses a
/// store made for another dimension, which would fail on every insert.
async fn ensure_dimensions(conn: &mut sqlx::PgConnection, dimensions: usize) -> Result<(), StoreError> {
    let stored: Option<String> =
        sqlx::query_scalar("SELECT value FROM trawl_settings WHERE key = 'embedding_dimensions'")
            .fetch_optional(&mut *conn)
            .await?;
    match stored {
        Some(d) if d == dimensions.to_string() => Ok(()),
        Some(d) => Err(StoreError::Config(format!(
            "the database stores {d}-dimension vectors but the embedder makes {dimensions}: \
             use an embedder of {d} dimensions, or a new database"
        ))),
        None => {
            let ddl = format!(
                "ALTER TABLE chunks ADD COLUMN embedding vector({dimensions});
                 ALTER TABLE code_examples ADD COLUMN embedding vector({dimensions});
                 CREATE INDEX chunks_embedding ON chunks USING hnsw (embedding vector_cosine_ops) WHERE indexed;
                 CREATE INDEX chunks_to_index ON chunks (id) WHERE NOT indexed AND embedding IS NOT NULL;
                 CREATE INDEX code_embedding ON code_examples USING hnsw (embedding vector_cosine_ops);
                 CREATE INDEX chunks_without_vectors ON chunks (id) WHERE embedding IS NULL;
                 CREATE INDEX code_without_vectors ON code_examples (id) WHERE embedding IS NULL;
                 INSERT INTO trawl_settings (key, value) VALUES ('embedding_dimensions', '{dimensions}');"
            );
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(ddl)).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(())
        }
    }
}

/// PostgreSQL text cannot hold NUL; a page with a stray NUL byte is kept
/// with U+FFFD in its place rather than failing its whole batch.
fn clean(s: &str) -> Cow<'_, str> {
    if s.contains('\0') { Cow::Owned(s.replace('\0', "\u{fffd}")) } else { Cow::Borrowed(s) }
}

fn clean_opt(s: &Option<String>) -> Option<Cow<'_, str>> {
    s.as_deref().map(clean)
}

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
const TEXT_RANK: &str = "((c.tsv @@ qp)::int + (c.tsv @@ qa)::int + ts_rank_cd(c.tsv, q, 32))::float8";

/// Rows of each match set (all words, any word) that text ranking reads at
/// most: ranking costs a read of every candidate's `tsvector`, and a common
/// word matches a fifth of a corpus. Rows with every word come first.
const TEXT_CANDIDATES: i64 = 250;

/// Pushes `SELECT id, score FROM ... ORDER BY score DESC LIMIT pool`: chunks
/// ranked by [`TEXT_RANK`] among the candidates of [`TEXT_CANDIDATES`].
fn push_text_ranking(qb: &mut QueryBuilder<Postgres>, queries: [String; 3], f: &SearchFilter, pool: u32) {
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
fn push_ts_queries(qb: &mut QueryBuilder<Postgres>, config: &str, [any, all, phrase]: [String; 3]) {
    qb.push(format_args!(", to_tsquery('{config}', ")).push_bind(any);
    qb.push(format_args!(") q, to_tsquery('{config}', ")).push_bind(all);
    qb.push(format_args!(") qa, to_tsquery('{config}', ")).push_bind(phrase).push(") qp");
}

/// A source's pages read over one transaction (see [`Store::export`]).
struct Export {
    tx: sqlx::Transaction<'static, Postgres>,
    /// The crawls still to read, the current one first.
    crawls: std::collections::VecDeque<String>,
    /// The last row read of the current crawl.
    after: i64,
}

#[async_trait]
impl ExportReader for Export {
    async fn next(&mut self, limit: u32) -> Result<Vec<ExportPage>, StoreError> {
        while let Some(crawl) = self.crawls.front() {
            let rows = sqlx::query(
                "SELECT id, crawl_id, url, final_url, title, description, content, content_hash, fetched_at FROM pages
                 WHERE crawl_id = $1 AND id > $2 AND status = 'crawled' ORDER BY id LIMIT $3",
            )
            .bind(crawl.clone())
            .bind(self.after)
            .bind(i64::from(limit))
            .fetch_all(&mut *self.tx)
            .await?;
            if rows.len() < limit as usize {
                self.crawls.pop_front();
                self.after = 0;
            }
            if rows.is_empty() {
                continue;
            }
            let pages = rows
                .iter()
                .map(|r| {
                    Ok(ExportPage {
                        id: r.try_get("id")?,
                        crawl_id: r.try_get("crawl_id")?,
                        url: r.try_get("url")?,
                        final_url: r.try_get("final_url")?,
                        title: r.try_get("title")?,
                        description: r.try_get("description")?,
                        markdown: r.try_get::<Option<String>, _>("content")?.unwrap_or_default(),
                        content_hash: r.try_get("content_hash")?,
                        fetched_at: r.try_get("fetched_at")?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            if let Some(last) = pages.last().filter(|_| rows.len() == limit as usize) {
                self.after = last.id;
            }
            return Ok(pages);
        }
        Ok(Vec::new())
    }
}

/// A source with its counts and its newest crawl; a `WHERE` follows.
const SOURCE_SELECT: &str = "SELECT s.id, s.tenant, s.url, s.name, s.tags, s.request, s.created_at, s.updated_at,
   s.refresh_every, s.cron, s.next_refresh_at,
   agg.pages, agg.chunks, agg.code_examples, k.id AS last_id, k.status AS last_status, k.finished_at AS last_finished
 FROM sources s
 CROSS JOIN LATERAL (SELECT COUNT(*) AS pages, COALESCE(SUM(p.chunk_count), 0)::bigint AS chunks,
     COALESCE(SUM(p.code_count), 0)::bigint AS code_examples
   FROM pages p WHERE p.status = 'crawled' AND p.crawl_id IN (SELECT id FROM crawls WHERE source_id = s.id)) agg
 LEFT JOIN crawls k ON k.id = (SELECT MAX(id) FROM crawls WHERE source_id = s.id)";

fn source_from_row(r: &PgRow) -> Result<Source, StoreError> {
    let n = |c: &str| -> Result<u64, StoreError> { Ok(r.try_get::<i64, _>(c)?.max(0) as u64) };
    let tenant: String = r.try_get("tenant")?;
    let last_crawl = match r.try_get::<Option<String>, _>("last_id")? {
        None => None,
        Some(id) => {
            let status: String = r.try_get("last_status")?;
            Some(LastCrawl {
                id,
                status: CrawlState::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("status '{status}'")))?,
                finished_at: r.try_get("last_finished")?,
            })
        }
    };
    Ok(Source {
        id: r.try_get("id")?,
        tenant: (!tenant.is_empty()).then_some(tenant),
        name: r.try_get("name")?,
        url: r.try_get("url")?,
        tags: r.try_get::<sqlx::types::Json<Vec<String>>, _>("tags")?.0,
        settings: r.try_get::<sqlx::types::Json<serde_json::Value>, _>("request")?.0,
        pages: n("pages")?,
        chunks: n("chunks")?,
        code_examples: n("code_examples")?,
        last_crawl,
        refresh_every: r.try_get("refresh_every")?,
        cron: r.try_get("cron")?,
        next_refresh_at: r.try_get("next_refresh_at")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn status_from_row(r: &PgRow) -> Result<CrawlStatus, StoreError> {
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
        created_at: r.try_get("created_at")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
    })
}

async fn update_status<'e, E>(exec: E, s: &CrawlStatus, owner: Option<&str>) -> Result<(), sqlx::Error>
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

/// Adds the crawl, source and tenant conditions of a search on alias `c`
/// (chunks or code examples). The tenant is a semi-join, not a join, so
/// that an ordered index scan (HNSW) on `c` stays usable.
fn push_filter(qb: &mut QueryBuilder<Postgres>, f: &SearchFilter) {
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
fn push_vector_ranking(qb: &mut QueryBuilder<Postgres>, vector: &[f32], model: &str, f: &SearchFilter, pool: u32) {
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

/// Moves up to `limit` chunk vectors into the HNSW index; returns how many.
/// `SKIP LOCKED` lets several instances index side by side.
async fn index_batch(pool: &PgPool, limit: i64) -> Result<u64, sqlx::Error> {
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
const ANALYZE_AFTER: u64 = 10_000;

fn vector_of(v: &Option<Vec<f32>>) -> Option<Vector> {
    v.as_ref().map(|v| Vector::from(v.clone()))
}

async fn insert_pages(
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
    let links: Vec<Option<String>> =
        pages.iter().map(|p| (!p.links.is_empty()).then(|| clean(&p.links.join("\n")).into_owned())).collect();
    let rows = sqlx::query(
        "INSERT INTO pages (crawl_id, content_hash, url, final_url, status, http_status, depth, title, description,
           content_type, format, content, bytes, error, source, chunk_count, code_count, fetched_at, rendered, links,
           etag, last_modified, body_hash)
         SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::int[], $8::text[],
           $9::text[], $10::text[], $11::text[], $12::text[], $13::bigint[], $14::text[], $15::text[], $16::int[],
           $17::int[], $18::timestamptz[], $19::bool[], $20::text[], $21::text[], $22::text[], $23::text[])
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
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(|r| Ok((r.try_get::<String, _>("url")?, r.try_get::<i64, _>("id")?))).collect()
}

/// Makes the source's row of an unchanged page this crawl's, with its
/// chunks and code examples (and their vectors) as they are.
async fn keep_page(
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
const REMOVE_VANISHED_PG: &str = "DELETE FROM pages WHERE status = 'crawled'
   AND crawl_id IN (SELECT id FROM crawls WHERE source_id = $1 AND id <> $2)
   AND url NOT IN (SELECT url FROM pages WHERE crawl_id = $2 AND status = 'failed'
                     AND COALESCE(http_status, 0) NOT IN (404, 410))
   AND (NOT $3 OR url IN (SELECT url FROM pages WHERE crawl_id = $2))";

fn strs<'a>(v: &'a [Cow<'a, str>]) -> Vec<&'a str> {
    v.iter().map(|s| s.as_ref()).collect()
}

fn opt_strs<'a>(v: &'a [Option<Cow<'a, str>>]) -> Vec<Option<&'a str>> {
    v.iter().map(|s| s.as_deref()).collect()
}

async fn insert_content(
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
               embedding, model)
             SELECT $1, * FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::text[], $6::int[], $7::text[],
               $8::text[], $9::int[], $10::vector[], $11::text[])",
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
struct CodeColumns<'a> {
    page_ids: Vec<i64>,
    urls: Vec<Cow<'a, str>>,
    sources: Vec<Cow<'a, str>>,
    languages: Vec<Cow<'a, str>>,
    code: Vec<Cow<'a, str>>,
    before: Vec<Cow<'a, str>>,
    after: Vec<Cow<'a, str>>,
    vectors: Vec<Option<Vector>>,
    models: Vec<Option<&'a str>>,
}

fn chunk_hit(r: &PgRow) -> Result<ChunkHit, StoreError> {
    Ok(ChunkHit {
        chunk_id: r.try_get("id")?,
        url: r.try_get("url")?,
        title: r.try_get("title")?,
        content: r.try_get("content")?,
        score: 0.0,
    })
}

fn ranked(rows: &[PgRow]) -> Result<Vec<(i64, f64)>, StoreError> {
    rows.iter().map(|r| Ok((r.try_get("id")?, r.try_get("score")?))).collect()
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_crawl(&self, c: &NewCrawl) -> Result<String, StoreError> {
        let s = &c.status;
        let request: serde_json::Value =
            serde_json::from_str(&c.request_json).map_err(|e| StoreError::Corrupt(format!("request: {e}")))?;
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
                .bind(sqlx::types::Json(&request))
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
        qb.build().fetch_all(&self.pool).await?.iter().map(source_from_row).collect()
    }

    async fn get_source(&self, id: &str) -> Result<Option<Source>, StoreError> {
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(SOURCE_SELECT);
        qb.push(" WHERE s.id = ").push_bind(clean(id).into_owned());
        qb.build().fetch_optional(&self.pool).await?.as_ref().map(source_from_row).transpose()
    }

    async fn update_source(&self, id: &str, patch: &SourcePatch) -> Result<Option<Source>, StoreError> {
        let request = patch
            .request_json
            .as_deref()
            .map(serde_json::from_str::<serde_json::Value>)
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("request: {e}")))?;
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
            let Some(row) = qb.build().fetch_optional(&mut *tx).await? else { continue };
            let source = source_from_row(&row)?;
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
        let rows = sqlx::query("SELECT id, status FROM crawls WHERE source_id = $1 ORDER BY id")
            .bind(clean(id))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let status: String = r.try_get("status")?;
                let state =
                    CrawlState::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("status '{status}'")))?;
                Ok((r.try_get("id")?, state))
            })
            .collect()
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
        let rows = sqlx::query(
            "SELECT id, url, content_hash, body_hash, etag, last_modified, chunk_count, code_count,
               links IS NOT NULL AS has_links
             FROM pages WHERE status = 'crawled' AND crawl_id IN (SELECT id FROM crawls WHERE source_id = $1 AND id <> $2)",
        )
        .bind(clean(source_id))
        .bind(clean(except))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PriorPage {
                    row: r.try_get("id")?,
                    url: r.try_get("url")?,
                    content_hash: r.try_get("content_hash")?,
                    body_hash: r.try_get("body_hash")?,
                    etag: r.try_get("etag")?,
                    last_modified: r.try_get("last_modified")?,
                    chunks: r.try_get::<i32, _>("chunk_count")?.max(0) as u64,
                    code_examples: r.try_get::<i32, _>("code_count")?.max(0) as u64,
                    has_links: r.try_get("has_links")?,
                })
            })
            .collect()
    }

    async fn page_links(&self, row: i64) -> Result<Option<Vec<String>>, StoreError> {
        let links: Option<Option<String>> =
            sqlx::query_scalar("SELECT links FROM pages WHERE id = $1").bind(row).fetch_optional(&self.pool).await?;
        Ok(links.map(|l| l.map(|l| l.lines().map(str::to_string).collect()).unwrap_or_default()))
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
            let title: Option<String> = r.try_get("title")?;
            let text = Unembedded::chunk(0, title.as_deref(), r.try_get("heading_path")?, r.try_get("content")?).text;
            out.push((text, r.try_get::<Vector, _>("embedding")?.to_vec()));
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
            let text =
                Unembedded::code(0, r.try_get("language")?, r.try_get("code")?, r.try_get("context_before")?).text;
            out.push((text, r.try_get::<Vector, _>("embedding")?.to_vec()));
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
        Ok(Box::new(Export { tx, crawls: crawls.into(), after: 0 }))
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
        let row = sqlx::query("SELECT * FROM crawls WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(status_from_row).transpose()
    }

    async fn crawl_tenant(&self, id: &str) -> Result<Option<Option<String>>, StoreError> {
        let row = sqlx::query("SELECT tenant FROM crawls WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.map(|r| Ok(r.try_get::<Option<String>, _>("tenant")?)).transpose()
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
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter().map(status_from_row).collect()
    }

    async fn list_pages(
        &self,
        crawl_id: &str,
        after: Option<i64>,
        limit: u32,
        markdown: bool,
    ) -> Result<Vec<PageSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, url, final_url, title, status, http_status, depth, error, chunk_count, code_count, rendered,
               CASE WHEN $4 THEN content END AS content
             FROM pages WHERE crawl_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(crawl_id)
        .bind(after.unwrap_or(0))
        .bind(i64::from(limit))
        .bind(markdown)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PageSummary {
                    row_id: r.try_get("id")?,
                    url: r.try_get("url")?,
                    final_url: r.try_get("final_url")?,
                    title: r.try_get("title")?,
                    status: r.try_get("status")?,
                    http_status: r.try_get::<Option<i32>, _>("http_status")?.map(|s| s as u16),
                    depth: r.try_get::<i32, _>("depth")?.max(0) as u32,
                    chunks: r.try_get::<i32, _>("chunk_count")?.max(0) as u64,
                    code_examples: r.try_get::<i32, _>("code_count")?.max(0) as u64,
                    error: r.try_get("error")?,
                    rendered: r.try_get("rendered")?,
                    markdown: r.try_get("content")?,
                })
            })
            .collect()
    }

    async fn page_content(&self, page_id: i64) -> Result<Option<PageContent>, StoreError> {
        let Some(r) = sqlx::query(
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
        let chunks = sqlx::query(
            "SELECT chunk_index, heading_path, content FROM chunks WHERE page_id = $1 ORDER BY chunk_index",
        )
        .bind(page_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|c| {
            Ok(ChunkText {
                index: c.try_get::<i32, _>("chunk_index")?.max(0) as u32,
                heading_path: c.try_get("heading_path")?,
                content: c.try_get("content")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        let code_examples = sqlx::query(
            "SELECT id, language, code, context_before, context_after FROM code_examples WHERE page_id = $1 ORDER BY id",
        )
        .bind(page_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|e| {
            Ok(CodeText {
                id: e.try_get("id")?,
                language: e.try_get("language")?,
                code: e.try_get("code")?,
                context_before: e.try_get("context_before")?,
                context_after: e.try_get("context_after")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(PageContent {
            id: r.try_get("id")?,
            crawl_id: r.try_get("crawl_id")?,
            tenant: r.try_get("tenant")?,
            url: r.try_get("url")?,
            final_url: r.try_get("final_url")?,
            title: r.try_get("title")?,
            description: r.try_get("description")?,
            status: r.try_get("status")?,
            http_status: r.try_get::<Option<i32>, _>("http_status")?.map(|s| s as u16),
            format: r.try_get("format")?,
            markdown: r.try_get("content")?,
            content_hash: r.try_get("content_hash")?,
            error: r.try_get("error")?,
            fetched_at: r.try_get("fetched_at")?,
            chunks,
            code_examples,
        }))
    }

    async fn get_page(&self, crawl_id: &str, url: &str) -> Result<Option<StoredPage>, StoreError> {
        let row = sqlx::query(
            "SELECT url, final_url, status, title, description, content, format, error, depth FROM pages
             WHERE crawl_id = $1 AND url = $2",
        )
        .bind(crawl_id)
        .bind(url)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(StoredPage {
                url: r.try_get("url")?,
                description: r.try_get("description")?,
                final_url: r.try_get("final_url")?,
                status: r.try_get("status")?,
                title: r.try_get("title")?,
                content: r.try_get("content")?,
                format: r.try_get("format")?,
                error: r.try_get("error")?,
                depth: r.try_get::<i32, _>("depth")?.max(0) as u32,
            })
        })
        .transpose()
    }

    async fn count_pages(&self, crawl_id: &str) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pages WHERE crawl_id = $1")
            .bind(crawl_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }

    async fn page_chunks(&self, crawl_id: &str, url: &str) -> Result<Vec<crate::content::Chunk>, StoreError> {
        let rows = sqlx::query(
            "SELECT chunk_index, heading_path, content, char_count FROM chunks WHERE crawl_id = $1 AND url = $2
             ORDER BY chunk_index",
        )
        .bind(crawl_id)
        .bind(url)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(crate::content::Chunk {
                    index: r.try_get::<i32, _>("chunk_index")?.max(0) as u32,
                    heading_path: r.try_get("heading_path")?,
                    content: r.try_get("content")?,
                    char_count: r.try_get::<i32, _>("char_count")?.max(0) as u32,
                    embedding: None,
                })
            })
            .collect()
    }

    async fn page_code_examples(
        &self,
        crawl_id: &str,
        url: &str,
    ) -> Result<Vec<crate::content::CodeExample>, StoreError> {
        let rows = sqlx::query(
            "SELECT language, code, context_before, context_after FROM code_examples WHERE crawl_id = $1 AND url = $2
             ORDER BY id",
        )
        .bind(crawl_id)
        .bind(url)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(crate::content::CodeExample {
                    language: r.try_get("language")?,
                    code: r.try_get("code")?,
                    context_before: r.try_get("context_before")?,
                    context_after: r.try_get("context_after")?,
                    embedding: None,
                })
            })
            .collect()
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
        let Some(q) = ts_queries(query) else { return Ok(Vec::new()) };
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new("");
        push_text_ranking(&mut qb, q, f, limit);
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

    async fn search_hybrid(
        &self,
        query: &str,
        vector: &[f32],
        model: &str,
        f: &SearchFilter,
        pool: u32,
        limit: u32,
    ) -> Result<Option<Vec<(i64, f64)>>, StoreError> {
        // Each ranking is cut to `pool` rows first (the vector one through
        // the HNSW index), then the two are fused by reciprocal rank.
        let mut qb: QueryBuilder<Postgres> =
            QueryBuilder::new("WITH text AS (SELECT id, row_number() OVER (ORDER BY score DESC, id) AS r FROM (");
        match ts_queries(query) {
            Some(q) => push_text_ranking(&mut qb, q, f, pool),
            None => {
                qb.push("SELECT 0::bigint AS id, 0::float8 AS score WHERE false");
            }
        }
        qb.push(") t), vec AS (SELECT id, row_number() OVER (ORDER BY d, id) AS r FROM (");
        push_vector_ranking(&mut qb, vector, model, f, pool);
        qb.push(
            ") s)
             SELECT id, SUM(1.0 / (60 + r))::float8 AS score FROM (SELECT * FROM text UNION ALL SELECT * FROM vec) u
             GROUP BY id ORDER BY score DESC, id LIMIT ",
        );
        qb.push_bind(i64::from(limit));
        Ok(Some(ranked(&qb.build().fetch_all(&self.pool).await?)?))
    }

    async fn chunk_hits(&self, ids: &[i64]) -> Result<Vec<ChunkHit>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query("SELECT id, url, title, content FROM chunks WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(chunk_hit).collect()
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
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(CodeHit {
                    id: r.try_get("id")?,
                    url: r.try_get("url")?,
                    language: r.try_get("language")?,
                    code: r.try_get("code")?,
                    context_before: r.try_get("context_before")?,
                    context_after: r.try_get("context_after")?,
                    score: r.try_get("score")?,
                })
            })
            .collect()
    }

    async fn unembedded(&self, limit: u32) -> Result<Vec<Unembedded>, StoreError> {
        let chunks = sqlx::query(
            "SELECT id, title, heading_path, content FROM chunks WHERE embedding IS NULL ORDER BY id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in &chunks {
            let title: Option<String> = r.try_get("title")?;
            out.push(Unembedded::chunk(
                r.try_get("id")?,
                title.as_deref(),
                r.try_get("heading_path")?,
                r.try_get("content")?,
            ));
        }
        let room = limit.saturating_sub(out.len() as u32);
        let codes = sqlx::query(
            "SELECT id, language, code, context_before FROM code_examples WHERE embedding IS NULL ORDER BY id LIMIT $1",
        )
        .bind(i64::from(room))
        .fetch_all(&self.pool)
        .await?;
        for r in &codes {
            out.push(Unembedded::code(
                r.try_get("id")?,
                r.try_get("language")?,
                r.try_get("code")?,
                r.try_get("context_before")?,
            ));
        }
        Ok(out)
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
        let rows = sqlx::query("SELECT url, final_url, status, links FROM pages WHERE crawl_id = $1")
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let status: String = r.try_get("status")?;
                let links: Option<String> = r.try_get("links")?;
                Ok(super::StoredOutcome {
                    url: r.try_get("url")?,
                    final_url: r.try_get("final_url")?,
                    status: match status.as_str() {
                        "crawled" => PageStatus::Crawled,
                        "failed" => PageStatus::Failed,
                        "skipped" => PageStatus::Skipped,
                        other => return Err(StoreError::Corrupt(format!("page status '{other}'"))),
                    },
                    links: links.map(|l| l.lines().map(str::to_string).collect()).unwrap_or_default(),
                })
            })
            .collect()
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
