//! A source's pages read out over one read transaction.

use async_trait::async_trait;
use sqlx::Sqlite;

use super::{ExportPage, ExportReader, StoreError};
use crate::store::ExportCursor;

/// A source's pages read over one transaction (see [`Store::export`]).
pub(super) struct Export {
    pub(super) tx: sqlx::Transaction<'static, Sqlite>,
    pub(super) cursor: ExportCursor,
}

#[async_trait]
impl ExportReader for Export {
    async fn next(&mut self, limit: u32) -> Result<Vec<ExportPage>, StoreError> {
        while let Some((crawl, after)) = self.cursor.at() {
            let pages = sqlx::query_as(
                "SELECT id, crawl_id, url, final_url, title, description, content, content_hash, fetched_at FROM pages
                 WHERE crawl_id = ?1 AND id > ?2 AND status = 'crawled' ORDER BY id LIMIT ?3",
            )
            .bind(crawl)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&mut *self.tx)
            .await?;
            if let Some(pages) = self.cursor.advance(pages, limit) {
                return Ok(pages);
            }
        }
        Ok(Vec::new())
    }
}
