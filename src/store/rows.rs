//! Row types shared by both stores. A store reads its rows through
//! [`Columns`], which hides how its database keeps integers, times and JSON
//! (PostgreSQL's `INTEGER`, `TIMESTAMPTZ` and `JSONB`; SQLite's `INTEGER`,
//! RFC 3339 text and JSON text), so that each type is mapped from its
//! columns once, here, and the stores only differ in their SQL.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, Row};

use super::{
    ChunkHit, ChunkText, CodeHit, CodeText, Delivery, ExportPage, LastCrawl, PageContent, PageStatus, PageSummary,
    PriorPage, Source, StoredOutcome, StoredPage, Unannounced, Unembedded,
};
use crate::content::{Chunk, CodeExample};
use crate::progress::{CrawlState, CrawlStatus, Limit, Stage};

/// A row's columns by name, as the types the stores share.
pub trait Columns {
    fn text(&self, c: &str) -> Result<String, sqlx::Error>;
    fn opt_text(&self, c: &str) -> Result<Option<String>, sqlx::Error>;
    fn opt_int(&self, c: &str) -> Result<Option<i64>, sqlx::Error>;
    fn float(&self, c: &str) -> Result<f64, sqlx::Error>;
    fn flag(&self, c: &str) -> Result<bool, sqlx::Error>;
    fn opt_time(&self, c: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error>;
    fn json<T: DeserializeOwned>(&self, c: &str) -> Result<T, sqlx::Error>;

    fn int(&self, c: &str) -> Result<i64, sqlx::Error> {
        self.opt_int(c)?.ok_or_else(|| corrupt(c, "is null"))
    }

    /// A count or a size: never negative.
    fn count(&self, c: &str) -> Result<u64, sqlx::Error> {
        Ok(self.int(c)?.max(0) as u64)
    }

    fn small(&self, c: &str) -> Result<u32, sqlx::Error> {
        Ok(u32::try_from(self.int(c)?.max(0)).unwrap_or(u32::MAX))
    }

    fn time(&self, c: &str) -> Result<DateTime<Utc>, sqlx::Error> {
        self.opt_time(c)?.ok_or_else(|| corrupt(c, "is null"))
    }

    /// A text column holding one of an enum's names.
    fn named<T>(&self, c: &str, parse: fn(&str) -> Option<T>) -> Result<T, sqlx::Error> {
        let s = self.text(c)?;
        parse(&s).ok_or_else(|| corrupt(c, format_args!("'{s}' is not a known value")))
    }
}

fn corrupt(column: &str, what: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::ColumnDecode { index: column.to_string(), source: what.to_string().into() }
}

/// What both databases decode alike; each adds its own `opt_time` and `json`.
macro_rules! columns {
    ($row:ty; $($own:tt)*) => {
        impl Columns for $row {
            fn text(&self, c: &str) -> Result<String, sqlx::Error> {
                self.try_get(c)
            }
            fn opt_text(&self, c: &str) -> Result<Option<String>, sqlx::Error> {
                self.try_get(c)
            }
            fn opt_int(&self, c: &str) -> Result<Option<i64>, sqlx::Error> {
                // PostgreSQL's INTEGER columns decode only as i32.
                self.try_get::<Option<i64>, _>(c)
                    .or_else(|_| self.try_get::<Option<i32>, _>(c).map(|v| v.map(i64::from)))
            }
            fn float(&self, c: &str) -> Result<f64, sqlx::Error> {
                self.try_get(c)
            }
            fn flag(&self, c: &str) -> Result<bool, sqlx::Error> {
                self.try_get(c)
            }
            $($own)*
        }
    };
}

columns! {
    PgRow;
    fn opt_time(&self, c: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        self.try_get(c)
    }
    fn json<T: DeserializeOwned>(&self, c: &str) -> Result<T, sqlx::Error> {
        Ok(self.try_get::<sqlx::types::Json<T>, _>(c)?.0)
    }
}

columns! {
    SqliteRow;
    fn opt_time(&self, c: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        self.try_get::<Option<String>, _>(c)?
            .map(|s| DateTime::parse_from_rfc3339(&s).map(|t| t.with_timezone(&Utc)).map_err(|e| corrupt(c, e)))
            .transpose()
    }
    fn json<T: DeserializeOwned>(&self, c: &str) -> Result<T, sqlx::Error> {
        serde_json::from_str(&self.text(c)?).map_err(|e| corrupt(c, e))
    }
}

/// `FromRow` for a type mapped through [`Columns`], for both stores' rows.
macro_rules! from_columns {
    ($ty:ty, |$r:ident| $body:expr) => {
        impl<'r, R: Row + Columns> FromRow<'r, R> for $ty {
            fn from_row($r: &'r R) -> Result<Self, sqlx::Error> {
                Ok($body)
            }
        }
    };
}

// A crawl row (`SELECT *` from crawls).
from_columns!(CrawlStatus, |r| CrawlStatus {
    progress_id: r.text("id")?,
    url: r.text("url")?,
    source_id: r.opt_text("source_id")?,
    status: r.named("status", CrawlState::parse)?,
    stage: r.named("stage", Stage::parse)?,
    percentage: r.float("percentage")?,
    pages_crawled: r.count("pages_crawled")?,
    pages_failed: r.count("pages_failed")?,
    pages_skipped: r.count("pages_skipped")?,
    pages_queued: r.count("pages_queued")?,
    chunks_stored: r.count("chunks_stored")?,
    code_examples: r.count("code_examples")?,
    chunks_unembedded: r.count("chunks_unembedded")?,
    refresh: r.flag("refresh")?,
    pages_new: r.count("pages_new")?,
    pages_changed: r.count("pages_changed")?,
    pages_unchanged: r.count("pages_unchanged")?,
    pages_removed: r.count("pages_removed")?,
    chunks_embedded: r.count("chunks_embedded")?,
    current_url: r.opt_text("current_url")?,
    message: r.opt_text("message")?,
    error: r.opt_text("error")?,
    limit_reached: r.opt_text("limit_reached")?.as_deref().and_then(Limit::parse),
    event_id: r.opt_int("last_event_id")?.unwrap_or(0).max(0) as u64,
    created_at: r.time("created_at")?,
    started_at: r.opt_time("started_at")?,
    finished_at: r.opt_time("finished_at")?,
});

// A source with its counts and newest crawl (each store's `SOURCE_SELECT`).
from_columns!(Source, |r| {
    let tenant = r.text("tenant")?;
    Source {
        id: r.text("id")?,
        tenant: (!tenant.is_empty()).then_some(tenant),
        name: r.text("name")?,
        url: r.text("url")?,
        tags: r.json("tags")?,
        settings: r.json("request")?,
        pages: r.count("pages")?,
        chunks: r.count("chunks")?,
        code_examples: r.count("code_examples")?,
        last_crawl: match r.opt_text("last_id")? {
            None => None,
            Some(id) => Some(LastCrawl {
                id,
                status: r.named("last_status", CrawlState::parse)?,
                finished_at: r.opt_time("last_finished")?,
            }),
        },
        refresh_every: r.opt_text("refresh_every")?,
        cron: r.opt_text("cron")?,
        next_refresh_at: r.opt_time("next_refresh_at")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    }
});

from_columns!(PageSummary, |r| PageSummary {
    row_id: r.int("id")?,
    url: r.text("url")?,
    final_url: r.opt_text("final_url")?,
    title: r.opt_text("title")?,
    status: r.text("status")?,
    http_status: r.opt_int("http_status")?.map(|s| s as u16),
    depth: r.small("depth")?,
    chunks: r.count("chunk_count")?,
    code_examples: r.count("code_count")?,
    error: r.opt_text("error")?,
    rendered: r.flag("rendered")?,
    links_cut: r.small("links_cut")?,
    markdown: r.opt_text("content")?,
});

// The page itself; the store adds its chunks and code examples.
from_columns!(PageContent, |r| PageContent {
    id: r.int("id")?,
    crawl_id: r.text("crawl_id")?,
    tenant: r.opt_text("tenant")?,
    url: r.text("url")?,
    final_url: r.opt_text("final_url")?,
    title: r.opt_text("title")?,
    description: r.opt_text("description")?,
    status: r.text("status")?,
    http_status: r.opt_int("http_status")?.map(|s| s as u16),
    format: r.opt_text("format")?,
    markdown: r.opt_text("content")?,
    content_hash: r.opt_text("content_hash")?,
    error: r.opt_text("error")?,
    fetched_at: r.time("fetched_at")?,
    chunks: Vec::new(),
    code_examples: Vec::new(),
});

from_columns!(ChunkText, |r| ChunkText {
    index: r.small("chunk_index")?,
    heading_path: r.text("heading_path")?,
    content: r.text("content")?,
});

from_columns!(CodeText, |r| CodeText {
    id: r.int("id")?,
    language: r.text("language")?,
    code: r.text("code")?,
    context_before: r.text("context_before")?,
    context_after: r.text("context_after")?,
});

from_columns!(StoredPage, |r| StoredPage {
    url: r.text("url")?,
    description: r.opt_text("description")?,
    final_url: r.opt_text("final_url")?,
    status: r.text("status")?,
    title: r.opt_text("title")?,
    content: r.opt_text("content")?,
    format: r.opt_text("format")?,
    error: r.opt_text("error")?,
    depth: r.small("depth")?,
});

from_columns!(Chunk, |r| Chunk {
    index: r.small("chunk_index")?,
    heading_path: r.text("heading_path")?,
    content: r.text("content")?,
    char_count: r.small("char_count")?,
    page: r.opt_int("page")?.and_then(|p| u32::try_from(p).ok()),
    embedding: None,
});

from_columns!(CodeExample, |r| CodeExample {
    language: r.text("language")?,
    code: r.text("code")?,
    context_before: r.text("context_before")?,
    context_after: r.text("context_after")?,
    embedding: None,
});

// A chunk found by search; the caller puts in its score.
from_columns!(ChunkHit, |r| ChunkHit {
    chunk_id: r.int("id")?,
    url: r.text("url")?,
    title: r.opt_text("title")?,
    content: r.text("content")?,
    page: r.opt_int("page")?.and_then(|p| u32::try_from(p).ok()),
    score: 0.0,
});

from_columns!(CodeHit, |r| CodeHit {
    id: r.int("id")?,
    url: r.text("url")?,
    language: r.text("language")?,
    code: r.text("code")?,
    context_before: r.text("context_before")?,
    context_after: r.text("context_after")?,
    score: r.float("score")?,
});

from_columns!(PriorPage, |r| PriorPage {
    row: r.int("id")?,
    url: r.text("url")?,
    title: r.opt_text("title")?,
    content_hash: r.opt_text("content_hash")?,
    body_hash: r.opt_text("body_hash")?,
    etag: r.opt_text("etag")?,
    last_modified: r.opt_text("last_modified")?,
    chunks: r.count("chunk_count")?,
    code_examples: r.count("code_count")?,
    has_links: r.flag("has_links")?,
});

from_columns!(StoredOutcome, |r| StoredOutcome {
    url: r.text("url")?,
    final_url: r.opt_text("final_url")?,
    status: r.named("status", PageStatus::parse)?,
    links: lines(r.opt_text("links")?),
});

from_columns!(ExportPage, |r| ExportPage {
    id: r.int("id")?,
    crawl_id: r.text("crawl_id")?,
    url: r.text("url")?,
    final_url: r.opt_text("final_url")?,
    title: r.opt_text("title")?,
    description: r.opt_text("description")?,
    markdown: r.opt_text("content")?.unwrap_or_default(),
    content_hash: r.opt_text("content_hash")?,
    fetched_at: r.time("fetched_at")?,
});

from_columns!(Delivery, |r| Delivery {
    seq: r.int("seq")?,
    id: r.text("id")?,
    crawl_id: r.text("crawl_id")?,
    tenant: r.opt_text("tenant")?,
    url: r.text("url")?,
    headers: r.text("headers")?,
    event: r.text("event")?,
    body: r.text("body")?,
    attempts: r.small("attempts")?,
});

from_columns!(Unannounced, |r| Unannounced {
    id: r.text("id")?,
    tenant: r.opt_text("tenant")?,
    request: r.text("request")?,
});

/// A crawl's id and state (a source's crawls).
pub(super) struct CrawlRef(pub String, pub CrawlState);

from_columns!(CrawlRef, |r| CrawlRef(r.text("id")?, r.named("status", CrawlState::parse)?));

/// Stored links: one URL a line.
pub(super) fn lines(links: Option<String>) -> Vec<String> {
    links.map(|l| l.lines().map(str::to_string).collect()).unwrap_or_default()
}

/// A chunk row to embed (`title`, `heading_path`, `content`), with the text
/// the crawl would have embedded; `id` 0 where the row's id is not wanted.
pub(super) fn chunk_to_embed(r: &impl Columns, id: i64) -> Result<Unembedded, sqlx::Error> {
    Ok(Unembedded::chunk(id, r.opt_text("title")?.as_deref(), r.text("heading_path")?, r.text("content")?))
}

/// A code-example row to embed (`language`, `code`, `context_before`).
pub(super) fn code_to_embed(r: &impl Columns, id: i64) -> Result<Unembedded, sqlx::Error> {
    Ok(Unembedded::code(id, r.text("language")?, r.text("code")?, r.text("context_before")?))
}

/// Rows without a vector ([`super::Store::unembedded_in`]), on either
/// database: chunks first, then code examples, each past its cursor.
pub(super) async fn unembedded_in<DB>(
    pool: &sqlx::Pool<DB>,
    crawl: Option<&str>,
    after: super::After,
    limit: u32,
) -> Result<Vec<super::Unembedded>, super::StoreError>
where
    DB: sqlx::Database,
    DB::Row: Columns,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let read = |table: &str, columns: &str, after: i64, limit: u32| {
        let mut qb =
            sqlx::QueryBuilder::<DB>::new(format!("SELECT {columns} FROM {table} WHERE embedding IS NULL AND id > "));
        qb.push_bind(after);
        if let Some(crawl) = crawl {
            qb.push(" AND crawl_id = ").push_bind(crawl.to_string());
        }
        qb.push(" ORDER BY id LIMIT ").push_bind(i64::from(limit));
        qb
    };
    let mut chunks = read("chunks", "id, title, heading_path, content", after.chunk, limit);
    let rows = chunks.build().fetch_all(pool).await?;
    let mut out = rows.iter().map(|r| chunk_to_embed(r, r.int("id")?)).collect::<Result<Vec<_>, _>>()?;
    let room = limit.saturating_sub(out.len() as u32);
    if room > 0 {
        let mut codes = read("code_examples", "id, language, code, context_before", after.code, room);
        for r in &codes.build().fetch_all(pool).await? {
            out.push(code_to_embed(r, r.int("id")?)?);
        }
    }
    Ok(out)
}
