//! A source's pages read out over one read transaction.

use async_trait::async_trait;
use sqlx::{Row, Sqlite};

use super::{ExportPage, ExportReader, StoreError};

use super::*;

/// A source's pages read over one transaction (see [`Store::export`]).
pub(super) struct Export {
    pub(super) tx: sqlx::Transaction<'static, Sqlite>,
    /// The crawls still to read, the current one first.
    pub(super) crawls: std::collections::VecDeque<String>,
    /// The last row read of the current crawl.
    pub(super) after: i64,
}

#[async_trait]
impl ExportReader for Export {
    async fn next(&mut self, limit: u32) -> Result<Vec<ExportPage>, StoreError> {
        while let Some(crawl) = self.crawls.front() {
            let rows = sqlx::query(
                "SELECT id, crawl_id, url, final_url, title, description, content, content_hash, fetched_at FROM pages
                 WHERE crawl_id = ?1 AND id > ?2 AND status = 'crawled' ORDER BY id LIMIT ?3",
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
                        fetched_at: parse_ts(r.try_get("fetched_at")?)?.unwrap_or_default(),
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
