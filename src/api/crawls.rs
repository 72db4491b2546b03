//! `/api/crawls`: start, read, list, stop, and the pages of a crawl.

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{ApiJson, ApiPath, ApiQuery, AppState};
use crate::auth::Tenant;
use crate::crawl::request::RequestError;
use crate::crawl::{CrawlRequest, StartError};
use crate::error::ApiError;
use crate::progress::{CrawlState, CrawlStatus};
use crate::store::{CrawlFilter, PageSummary};

const DEFAULT_LIMIT: u32 = 20;
const MAX_LIMIT: u32 = 100;
const MAX_PAGES_LIMIT: u32 = 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/crawls", post(start).get(list))
        .route("/api/crawls/{id}", get(status).delete(delete))
        .route("/api/crawls/{id}/stop", post(stop))
        .route("/api/crawls/{id}/pages", get(pages))
}

/// The 202 answer to a started crawl.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Started {
    progress_id: String,
    /// The source the crawl is filed under.
    source_id: Option<String>,
    status: CrawlState,
    status_url: String,
    events_url: String,
    room: String,
}

impl From<StartError> for ApiError {
    fn from(e: StartError) -> Self {
        match e {
            StartError::Invalid(RequestError::InvalidUrl(m)) => ApiError::InvalidUrl(m),
            StartError::Invalid(RequestError::Invalid(m)) => ApiError::InvalidRequest(m),
            StartError::Invalid(RequestError::Unsupported(m)) => ApiError::Unsupported(m),
            StartError::Forbidden(f) => ApiError::ForbiddenAddress(f.to_string()),
            StartError::ShuttingDown => ApiError::Unavailable("the service is shutting down".into()),
            StartError::Store(crate::store::StoreError::Unwritable(why)) => {
                ApiError::Unavailable(format!("the store cannot take a crawl now: {why}"))
            }
            StartError::Store(crate::store::StoreError::SourceBusy(id)) => ApiError::Conflict(
                "refresh_running",
                format!("source {id} has a crawl that has not ended; a refresh starts once it has"),
            ),
            StartError::Store(crate::store::StoreError::SourceGone(id)) => {
                ApiError::NotFound(format!("no source with id '{id}'"))
            }
            StartError::Store(s) => ApiError::from(s),
            StartError::Encode(e) => ApiError::Internal(Box::new(e)),
        }
    }
}

#[utoipa::path(post, path = "/api/crawls", tag = "crawls", request_body = CrawlRequest,
    responses((status = 202, description = "The crawl runs in the background", body = Started),
              (status = 400, description = "Bad input or a forbidden address", body = crate::error::ErrorBody),
              (status = 413, body = crate::error::ErrorBody), (status = 415, body = crate::error::ErrorBody),
              (status = 503, description = "Shutting down, or the store cannot write", body = crate::error::ErrorBody)))]
pub(super) async fn start(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    ApiJson(req): ApiJson<CrawlRequest>,
) -> Result<Response, ApiError> {
    let status = state.registry.start(req, tenant.0).await?;
    Ok(started(status))
}

/// `202` with where to follow a crawl that was just started.
pub(super) fn started(status: CrawlStatus) -> Response {
    let id = status.progress_id;
    let body = Started {
        status_url: format!("/api/crawls/{id}"),
        events_url: format!("/api/crawls/{id}/events"),
        room: id.clone(),
        status: status.status,
        source_id: status.source_id,
        progress_id: id.clone(),
    };
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&body.status_url) {
        headers.insert(header::LOCATION, v);
    }
    (StatusCode::ACCEPTED, headers, Json(body)).into_response()
}

/// Poll interval suggested to clients, in milliseconds, while a crawl is active.
const POLL_INTERVAL_MS: u32 = 1000;

/// The status, with an `ETag` (a matching `If-None-Match` gets `304`) and
/// `X-Poll-Interval` (about 1000 ms while active, 0 once terminal).
#[utoipa::path(get, path = "/api/crawls/{id}", tag = "crawls", params(("id" = String, Path, description = "progressId")),
    responses((status = 200, description = "With ETag and X-Poll-Interval", body = CrawlStatus),
              (status = 304, description = "If-None-Match matched"), (status = 404, body = crate::error::ErrorBody)))]
pub(super) async fn status(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let s = state.registry.status(&id, tenant.as_deref()).await?.ok_or_else(|| ApiError::crawl_not_found(&id))?;
    let body = serde_json::to_vec(&s).map_err(|e| ApiError::Internal(Box::new(e)))?;
    let etag = format!("\"{:016x}\"", fnv1a(&body));
    let interval = if s.status.is_terminal() { 0 } else { POLL_INTERVAL_MS };
    let mut out = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, v);
    }
    out.insert("x-poll-interval", HeaderValue::from(interval));
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return Ok((StatusCode::NOT_MODIFIED, out).into_response());
    }
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok((StatusCode::OK, out, body).into_response())
}

/// FNV-1a: a stable, fast fingerprint of the status body for its ETag.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// `202` while the crawl winds down, `200` once it is terminal.
#[utoipa::path(post, path = "/api/crawls/{id}/stop", tag = "crawls", params(("id" = String, Path)),
    responses((status = 202, description = "Stopping", body = CrawlStatus), (status = 200, description = "Already terminal", body = CrawlStatus),
              (status = 404, body = crate::error::ErrorBody)))]
pub(super) async fn stop(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let s = state.registry.stop(&id, tenant.as_deref()).await?.ok_or_else(|| ApiError::crawl_not_found(&id))?;
    let code = if s.status.is_terminal() { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok((code, Json(s)).into_response())
}

/// `DELETE /api/crawls/{id}`: the same as `POST /stop`.
#[utoipa::path(delete, path = "/api/crawls/{id}", tag = "crawls", params(("id" = String, Path)),
    responses((status = 202, body = CrawlStatus), (status = 200, body = CrawlStatus), (status = 404, body = crate::error::ErrorBody)))]
pub(super) async fn delete(
    state: State<AppState>,
    tenant: Extension<Tenant>,
    id: ApiPath<String>,
) -> Result<Response, ApiError> {
    stop(state, tenant, id).await
}

#[derive(Deserialize)]
pub(super) struct ListParams {
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// A listing's cursor: the last id (a UUID) of the previous page.
pub(crate) fn uuid_cursor(raw: Option<&str>) -> Result<Option<String>, ApiError> {
    match raw {
        None | Some("") => Ok(None),
        Some(c) => uuid::Uuid::parse_str(c)
            .map(|u| Some(u.to_string()))
            .map_err(|_| ApiError::InvalidCursor(format!("cursor '{c}' was not issued by this service"))),
    }
}

pub(super) fn parse_limit(raw: Option<&str>, default: u32, max: u32) -> Result<u32, ApiError> {
    match raw {
        None => Ok(default),
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::InvalidRequest(format!("limit must be a whole number from 1 to {max}"))),
        },
    }
}

#[utoipa::path(get, path = "/api/crawls", tag = "crawls",
    params(("status" = Option<CrawlState>, Query, description = "Only crawls in this state"),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Crawls per page (default 20)"),
           ("cursor" = Option<String>, Query, pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$", description = "nextCursor of the previous page")),
    responses((status = 200, description = "{crawls: [CrawlStatus], nextCursor}, newest first"), (status = 400, body = crate::error::ErrorBody)))]
pub(super) async fn list(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = parse_limit(p.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let status = match p.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(CrawlState::parse(s).ok_or_else(|| {
            ApiError::InvalidRequest(format!(
                "status '{s}' is not one of queued, running, stopping, completed, failed, cancelled"
            ))
        })?),
    };
    let before_id = uuid_cursor(p.cursor.as_deref())?;
    let mut crawls = state.registry.list(CrawlFilter { status, tenant: tenant.0, before_id, limit: limit + 1 }).await?;
    let next = if crawls.len() > limit as usize {
        crawls.truncate(limit as usize);
        crawls.last().map(|c| c.progress_id.clone())
    } else {
        None
    };
    Ok(Json(json!({ "crawls": crawls, "nextCursor": next })))
}

#[derive(Deserialize)]
pub(super) struct PagesParams {
    limit: Option<String>,
    cursor: Option<String>,
    include: Option<String>,
}

#[utoipa::path(get, path = "/api/crawls/{id}/pages", tag = "crawls",
    params(("id" = String, Path), ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Pages per page (default 100)"),
           ("cursor" = Option<String>, Query, pattern = "^([1-9][0-9]{0,17})?$", description = "nextCursor of the previous page"),
           ("include" = Option<String>, Query, pattern = "^(markdown)?$", description = "`markdown`: each page with its markdown")),
    responses((status = 200, description = "{pages: [PageSummary], nextCursor}"), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)))]
pub(super) async fn pages(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(p): ApiQuery<PagesParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = parse_limit(p.limit.as_deref(), 100, MAX_PAGES_LIMIT)?;
    let after = match p.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(
            c.parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ApiError::InvalidCursor(format!("cursor '{c}' was not issued by this service")))?,
        ),
    };
    let markdown = match p.include.as_deref() {
        None | Some("") => false,
        Some("markdown") => true,
        Some(other) => {
            let other: String = other.chars().take(40).collect();
            return Err(ApiError::InvalidRequest(format!("include takes `markdown`, not '{other}'")));
        }
    };
    if state.registry.status(&id, tenant.as_deref()).await?.is_none() {
        return Err(ApiError::crawl_not_found(&id));
    }
    let mut pages: Vec<PageSummary> = state.store.list_pages(&id, after, limit + 1, markdown).await?;
    let next = if pages.len() > limit as usize {
        pages.truncate(limit as usize);
        pages.last().map(|p| p.row_id.to_string())
    } else {
        None
    };
    Ok(Json(json!({ "pages": pages, "nextCursor": next })))
}
