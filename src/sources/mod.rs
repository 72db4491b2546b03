//! Sources: what one tenant keeps from one site. A crawl is filed under its
//! tenant's source for its start URL (the store creates it on first use);
//! the source's content is the crawled pages of its crawls, one row per URL
//! (a later crawl's page replaces an earlier one). Here: the name a source
//! gets, changes to it, deleting it whole, and exporting it.

pub mod export;
pub mod schedule;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::crawl::request::{MAX_TAG_LEN, MAX_TAGS, RequestError};
use crate::crawl::{CrawlRequest, Registry};
use crate::store::{Removed, ScheduleState, Source, SourcePatch, StoreError};
use schedule::Schedule;

/// Longest source name, in characters.
pub const MAX_NAME_CHARS: usize = crate::store::MAX_SOURCE_NAME_CHARS;

/// `PATCH /api/sources/{id}`: any of these; the rest stays.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceUpdate {
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    /// Replaces the tags: at most 32, each 1 to 100 characters.
    #[schema(max_items = 32)]
    pub tags: Option<Vec<String>>,
    /// The crawl settings its refreshes use: a `CrawlRequest` whose `url`,
    /// when given, is the source's own (a source's URL never changes).
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Value>,
    /// Refresh this often: `"6h"`, `"1d"`, `"90m"` (at least a minute);
    /// replaces a cron schedule; `null` removes it.
    #[serde(default, rename = "refreshEvery", alias = "refresh_every", deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub refresh_every: Option<Option<String>>,
    /// Refresh at the times of this cron expression (five fields, UTC), e.g.
    /// `"0 3 * * *"`; replaces an interval; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub cron: Option<Option<String>>,
    /// When the next scheduled refresh starts (by default the schedule's
    /// next time from now); `null` pauses the schedule.
    #[serde(default, rename = "nextRefreshAt", alias = "next_refresh_at", deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_refresh_at: Option<Option<chrono::DateTime<chrono::Utc>>>,
}

/// A field that is present, even as `null` (`Some(None)`), as opposed to
/// absent (`None`, by `#[serde(default)]`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Request(#[from] RequestError),
}

impl SourceUpdate {
    /// Checks the update against `source` and the service's crawl limits.
    pub fn into_patch(self, source: &Source, cfg: &crate::crawl::CrawlerConfig) -> Result<SourcePatch, UpdateError> {
        let name = self
            .name
            .map(|n| {
                let n = n.trim().to_string();
                if n.is_empty() || n.chars().count() > MAX_NAME_CHARS || n.chars().any(char::is_control) {
                    return Err(UpdateError::Invalid(format!(
                        "name must be 1 to {MAX_NAME_CHARS} characters, without control characters"
                    )));
                }
                Ok(n)
            })
            .transpose()?;
        if let Some(tags) = &self.tags
            && (tags.len() > MAX_TAGS || tags.iter().any(|t| t.is_empty() || t.chars().count() > MAX_TAG_LEN))
        {
            return Err(UpdateError::Invalid(format!("at most {MAX_TAGS} tags, each 1 to {MAX_TAG_LEN} characters")));
        }
        let request_json = self
            .settings
            .map(|settings| {
                let serde_json::Value::Object(mut settings) = settings else {
                    return Err(UpdateError::Invalid("settings must be an object of crawl settings".into()));
                };
                match settings.get("url") {
                    None => {}
                    Some(serde_json::Value::String(u)) if same_url(u, &source.url) => {}
                    Some(_) => {
                        return Err(UpdateError::Invalid(format!(
                            "a source's url cannot change (it is {}); crawl another URL to make another source",
                            source.url
                        )));
                    }
                }
                settings.insert("url".into(), source.url.clone().into());
                let request: CrawlRequest = serde_json::from_value(serde_json::Value::Object(settings))
                    .map_err(|e| UpdateError::Invalid(format!("invalid settings: {e}")))?;
                let spec = request.validate(cfg)?;
                if spec.login.is_some() {
                    return Err(UpdateError::Invalid(
                        "a source keeps no login (headers, cookies, basicAuth, or a user in the url): a login is sent only with the crawl it is given to, and forgotten when that crawl ends".into(),
                    ));
                }
                serde_json::to_string(&spec.request).map_err(|e| UpdateError::Invalid(e.to_string()))
            })
            .transpose()?;
        let schedule = schedule_change(source, self.refresh_every, self.cron, self.next_refresh_at)?;
        Ok(SourcePatch { name, tags: self.tags, request_json, schedule })
    }
}

/// The schedule a source has after an update, if the update touches it.
fn schedule_change(
    source: &Source,
    every: Option<Option<String>>,
    cron: Option<Option<String>>,
    next_at: Option<Option<chrono::DateTime<chrono::Utc>>>,
) -> Result<Option<ScheduleState>, UpdateError> {
    if every.is_none() && cron.is_none() && next_at.is_none() {
        return Ok(None);
    }
    if let (Some(Some(_)), Some(Some(_))) = (&every, &cron) {
        return Err(UpdateError::Invalid("give refreshEvery or cron, not both".into()));
    }
    let mut state = ScheduleState {
        refresh_every: source.refresh_every.clone(),
        cron: source.cron.clone(),
        next_refresh_at: source.next_refresh_at,
    };
    let mut parsed = None;
    match every {
        Some(Some(e)) => {
            parsed = Some(Schedule::every(&e).map_err(UpdateError::Invalid)?);
            state.refresh_every = Some(e.trim().to_string());
            state.cron = None;
        }
        Some(None) => state.refresh_every = None,
        None => {}
    }
    match cron {
        Some(Some(c)) => {
            parsed = Some(Schedule::cron(&c).map_err(UpdateError::Invalid)?);
            state.cron = Some(c.trim().to_string());
            state.refresh_every = None;
        }
        Some(None) => state.cron = None,
        None => {}
    }
    let has_schedule = state.refresh_every.is_some() || state.cron.is_some();
    state.next_refresh_at = match next_at {
        Some(Some(_)) if !has_schedule => {
            return Err(UpdateError::Invalid("nextRefreshAt needs a schedule: give refreshEvery or cron".into()));
        }
        Some(at) => at,
        None if !has_schedule => None,
        // A new schedule starts from now; an untouched one keeps its time.
        None => match parsed {
            Some(p) => p.next_after(chrono::Utc::now()),
            None => state.next_refresh_at,
        },
    };
    Ok(Some(state))
}

/// Whether a URL a client sent names the source's URL (as normalized).
fn same_url(given: &str, source: &str) -> bool {
    given == source || crate::crawl::request::parse_start_url(given).is_ok_and(|u| u.as_str() == source)
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A crawl of the source did not end in time (or new ones kept starting).
    #[error("source {0} still has a crawl running after {1:?}; try again")]
    StillRunning(String, Duration),
}

/// How long a delete waits for the source's crawls to end.
pub const DELETE_WAIT: Duration = Duration::from_secs(60);

/// Deletes a source whole: stops its crawls, waits for each to end, then
/// removes its crawls, pages, chunks, vectors and code examples in one
/// transaction. `None` when there is no such source.
pub async fn delete(
    registry: &Arc<Registry>,
    id: &str,
    tenant: Option<&str>,
    wait: Duration,
) -> Result<Option<Removed>, DeleteError> {
    let store = registry.store().clone();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        // A crawl already stopping needs no second stop, only time.
        for (crawl, state) in store.source_crawls(id).await? {
            if !state.is_terminal() && state != crate::progress::CrawlState::Stopping {
                registry.stop(&crawl, tenant).await?;
            }
        }
        match store.delete_source(id).await {
            Err(StoreError::SourceBusy(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(StoreError::SourceBusy(_)) => return Err(DeleteError::StillRunning(id.to_string(), wait)),
            other => return Ok(other?),
        }
    }
}
