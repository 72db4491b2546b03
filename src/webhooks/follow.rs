//! One crawl's deliveries: `crawl.started` when it runs, its stored pages
//! gathered every `page_every` into `crawl.page` deliveries, and its end.
//! Everything is read back from the store, so what a receiver hears is
//! what was kept: a page is announced once its row is stored, and the end
//! only after the crawl's last page. Delivery ids are made from the crawl
//! (`<id>:started`, `<id>:pages:<first row>`, `<id>:end`), so an instance
//! that resumes a crawl, or the recovery of crawls whose end was never
//! announced, cannot announce anything twice.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{WebhookEvent, WebhookSettings, WebhookSpec};
use crate::progress::{CrawlState, CrawlStatus, format_time};
use crate::store::{DynStore, NewDelivery, StoreError};

/// What the crawl's follower and the sender share.
#[derive(Clone, Default)]
pub struct Hooks {
    pub settings: WebhookSettings,
    /// Wakes the sender when a delivery is enqueued.
    pub wake: Arc<Notify>,
}

/// A crawl with a webhook.
#[derive(Debug, Clone)]
pub struct Hook {
    pub crawl_id: String,
    pub tenant: Option<String>,
    pub spec: WebhookSpec,
}

/// Follows a running crawl until its end is enqueued, or until `stop` (the
/// service shuts down: the instance that resumes the crawl, or the
/// recovery, carries on from what was enqueued). `ended` fires once the
/// crawl's terminal status is stored, so the end goes out at once rather
/// than at the next look.
pub async fn follow(store: DynStore, hook: Hook, hooks: Hooks, stop: CancellationToken, ended: CancellationToken) {
    if let Err(e) = run(&store, &hook, &hooks, &stop, &ended).await {
        tracing::warn!(error = %e, "webhook: could not keep the crawl's deliveries; the recovery retries its end");
    }
}

async fn run(
    store: &DynStore,
    hook: &Hook,
    hooks: &Hooks,
    stop: &CancellationToken,
    ended: &CancellationToken,
) -> Result<(), StoreError> {
    let Some(first) = store.get_crawl(&hook.crawl_id).await? else { return Ok(()) };
    if !first.status.is_terminal() {
        enqueue(store, hook, hooks, WebhookEvent::Started, "started".into(), status_data(&first), None).await?;
    }
    let mut cursor = store.webhook_cursor(&hook.crawl_id).await?;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = ended.cancelled() => {}
            _ = tokio::time::sleep(hooks.settings.page_every) => {}
        }
        // The status first: once it is terminal, every page is stored.
        let Some(status) = store.get_crawl(&hook.crawl_id).await? else { return Ok(()) };
        cursor = pages(store, hook, hooks, cursor).await?;
        if status.status.is_terminal() {
            return end(store, hook, hooks, &status).await;
        }
    }
}

/// Announces the end of a crawl that ended with nobody following it:
/// its pages not yet announced, then its end.
pub async fn announce_end(store: &DynStore, hook: &Hook, hooks: &Hooks) -> Result<(), StoreError> {
    let Some(status) = store.get_crawl(&hook.crawl_id).await? else { return Ok(()) };
    if !status.status.is_terminal() {
        return Ok(());
    }
    let cursor = store.webhook_cursor(&hook.crawl_id).await?;
    pages(store, hook, hooks, cursor).await?;
    end(store, hook, hooks, &status).await
}

/// Enqueues the pages stored after row `cursor`, in batches; the new cursor.
async fn pages(store: &DynStore, hook: &Hook, hooks: &Hooks, mut cursor: i64) -> Result<i64, StoreError> {
    if !hook.spec.wants(WebhookEvent::Page) {
        return Ok(cursor);
    }
    let batch = hooks.settings.page_batch.max(1);
    loop {
        let pages = store.list_pages(&hook.crawl_id, Some(cursor), batch, false).await?;
        let (Some(first), Some(last)) = (pages.first(), pages.last()) else { return Ok(cursor) };
        let (first, last) = (first.row_id, last.row_id);
        let data = json!({ "pages": pages });
        enqueue(store, hook, hooks, WebhookEvent::Page, format!("pages:{first}"), data, Some(last)).await?;
        cursor = last;
        if pages.len() < batch as usize {
            return Ok(cursor);
        }
    }
}

async fn end(store: &DynStore, hook: &Hook, hooks: &Hooks, status: &CrawlStatus) -> Result<(), StoreError> {
    let event = match status.status {
        CrawlState::Completed => WebhookEvent::Completed,
        CrawlState::Cancelled => WebhookEvent::Cancelled,
        _ => WebhookEvent::Failed,
    };
    enqueue(store, hook, hooks, event, "end".into(), status_data(status), None).await
}

fn status_data(s: &CrawlStatus) -> Value {
    serde_json::to_value(s).unwrap_or(Value::Null)
}

async fn enqueue(
    store: &DynStore,
    hook: &Hook,
    hooks: &Hooks,
    event: WebhookEvent,
    key: String,
    data: Value,
    page_row: Option<i64>,
) -> Result<(), StoreError> {
    if !hook.spec.wants(event) {
        return Ok(());
    }
    let id = format!("{}:{key}", hook.crawl_id);
    let body = json!({
        "id": id,
        "type": event.as_str(),
        "createdAt": format_time(&chrono::Utc::now()),
        "progressId": hook.crawl_id,
        "data": data,
    });
    let delivery = NewDelivery {
        id,
        crawl_id: hook.crawl_id.clone(),
        tenant: hook.tenant.clone(),
        url: hook.spec.url.trim().to_string(),
        headers: serde_json::to_string(&hook.spec.headers).unwrap_or_else(|_| "{}".into()),
        event: event.as_str().to_string(),
        body: body.to_string(),
        page_row,
    };
    if store.enqueue_delivery(&delivery).await? {
        hooks.wake.notify_one();
    }
    Ok(())
}
