//! `/api/sources`: what each tenant keeps from each site: list, read,
//! rename and retag, delete whole, export.

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::crawls::{parse_limit, uuid_cursor};
use super::{ApiJson, ApiPath, ApiQuery, AppState};
use crate::auth::Tenant;
use crate::error::ApiError;
use crate::sources::export::{self, Format};
use crate::sources::{DeleteError, SourceUpdate, UpdateError};
use crate::store::{Removed, Source, SourceFilter};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/sources", get(list))
        .route("/api/sources/{id}", get(one).patch(update).delete(delete))
        .route("/api/sources/{id}/export", get(export))
        .route("/api/sources/{id}/refresh", post(refresh))
}

fn not_found(id: &str) -> ApiError {
    let shown: String = id.chars().take(40).collect();
    ApiError::NotFound(format!("no source with id '{shown}'"))
}

/// The source, if `tenant` may see it; anything else answers 404.
pub(crate) async fn visible(state: &AppState, id: &str, tenant: &Tenant) -> Result<Source, ApiError> {
    // Source ids are UUIDs: any other text names none.
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(not_found(id));
    }
    let source = state.store.get_source(id).await?.ok_or_else(|| not_found(id))?;
    if tenant.0.is_some() && source.tenant.as_deref() != tenant.as_deref() {
        return Err(not_found(id));
    }
    Ok(with_live_crawl(state, source))
}

/// A running last crawl shows its in-memory state, newer than its row.
pub(crate) fn with_live_crawl(state: &AppState, mut source: Source) -> Source {
    if let Some(last) = source.last_crawl.as_mut()
        && let Some(progress) = state.registry.progress(&last.id)
    {
        let now = progress.snapshot();
        last.status = now.status;
        last.finished_at = now.finished_at;
    }
    source
}

#[derive(Deserialize)]
pub(super) struct ListParams {
    limit: Option<String>,
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/sources", tag = "sources",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Sources per page (default 20)"),
           ("cursor" = Option<String>, Query, pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$", description = "nextCursor of the previous page")),
    responses((status = 200, description = "{sources: [Source], nextCursor}, newest first"), (status = 400, body = crate::error::ErrorBody)))]
pub(super) async fn list(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = parse_limit(p.limit.as_deref(), 20, 100)?;
    let before_id = uuid_cursor(p.cursor.as_deref())?;
    let filter = SourceFilter { tenant: tenant.0, before_id, limit: limit + 1 };
    let mut sources = state.store.list_sources(&filter).await?;
    let next = if sources.len() > limit as usize {
        sources.truncate(limit as usize);
        sources.last().map(|s| s.id.clone())
    } else {
        None
    };
    let sources: Vec<Source> = sources.into_iter().map(|s| with_live_crawl(&state, s)).collect();
    Ok(Json(json!({ "sources": sources, "nextCursor": next })))
}

#[utoipa::path(get, path = "/api/sources/{id}", tag = "sources", params(("id" = String, Path, description = "sourceId")),
    responses((status = 200, body = Source), (status = 404, body = crate::error::ErrorBody)))]
pub(super) async fn one(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Source>, ApiError> {
    Ok(Json(visible(&state, &id, &tenant).await?))
}

#[utoipa::path(patch, path = "/api/sources/{id}", tag = "sources", params(("id" = String, Path)), request_body = SourceUpdate,
    responses((status = 200, body = Source), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
              (status = 415, body = crate::error::ErrorBody)))]
pub(super) async fn update(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    ApiPath(id): ApiPath<String>,
    ApiJson(update): ApiJson<SourceUpdate>,
) -> Result<Json<Source>, ApiError> {
    let source = visible(&state, &id, &tenant).await?;
    let patch = update.into_patch(&source, state.registry.config()).map_err(|e| match e {
        UpdateError::Invalid(m) => ApiError::InvalidRequest(m),
        UpdateError::Request(r) => crate::crawl::StartError::Invalid(r).into(),
    })?;
    let updated = state.store.update_source(&id, &patch).await?.ok_or_else(|| not_found(&id))?;
    Ok(Json(with_live_crawl(&state, updated)))
}

/// Stops the source's running crawl first, then removes everything it kept
/// in one transaction: after the answer no search returns any of it.
#[utoipa::path(delete, path = "/api/sources/{id}", tag = "sources", params(("id" = String, Path)),
    responses((status = 200, description = "{deleted: id, removed: Removed}"), (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "A crawl of the source would not end in time (source_busy)", body = crate::error::ErrorBody)))]
pub(super) async fn delete(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    visible(&state, &id, &tenant).await?;
    let removed: Removed =
        match crate::sources::delete(&state.registry, &id, tenant.as_deref(), crate::sources::DELETE_WAIT).await {
            Ok(Some(removed)) => removed,
            Ok(None) => return Err(not_found(&id)),
            Err(DeleteError::StillRunning(..)) => {
                return Err(ApiError::Conflict(
                    "source_busy",
                    format!("a crawl of source '{id}' did not end in time; try again"),
                ));
            }
            Err(DeleteError::Store(e)) => return Err(e.into()),
        };
    tracing::info!(source_id = %id, crawls = removed.crawls, pages = removed.pages, "source deleted");
    Ok(Json(json!({ "deleted": id, "removed": removed })))
}

/// Starts a refresh: a crawl with the source's settings, on every surface
/// like any other (progress, rooms, SSE, stop). Pages whose content did not
/// change are kept with their vectors; only new text is embedded; when it
/// completes, pages the site no longer has are removed.
#[utoipa::path(post, path = "/api/sources/{id}/refresh", tag = "sources", params(("id" = String, Path)),
    responses((status = 202, description = "The refresh runs in the background", body = super::crawls::Started),
              (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "A crawl of the source has not ended (refresh_running)", body = crate::error::ErrorBody),
              (status = 503, body = crate::error::ErrorBody)))]
pub(super) async fn refresh(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let source = visible(&state, &id, &tenant).await?;
    // The source's owner, not the caller, owns the crawl: they are the same
    // with keys, and the open service has no tenants.
    let status = state.registry.refresh(&source, source.tenant.clone()).await?;
    Ok(super::crawls::started(status))
}

#[derive(Deserialize)]
pub(super) struct ExportParams {
    format: Option<String>,
}

/// The whole source, streamed: `jsonl` (one page a line: id, crawlId, url,
/// finalUrl, title, description, markdown, contentHash, fetchedAt) or
/// `markdown` (one document, a section per page, like llms-full.txt).
#[utoipa::path(get, path = "/api/sources/{id}/export", tag = "sources",
    params(("id" = String, Path), ("format" = Option<String>, Query, pattern = "^(jsonl|markdown)?$", description = "`jsonl` (default) or `markdown`")),
    responses((status = 200, description = "application/x-ndjson or text/markdown, streamed"), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)))]
pub(super) async fn export(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(p): ApiQuery<ExportParams>,
) -> Result<Response, ApiError> {
    let format = match p.format.as_deref() {
        None | Some("") => Format::Jsonl,
        Some(f) => Format::parse(f).ok_or_else(|| {
            let f: String = f.chars().take(40).collect();
            ApiError::InvalidRequest(format!("format takes `jsonl` or `markdown`, not '{f}'"))
        })?,
    };
    let source = visible(&state, &id, &tenant).await?;
    let body = Body::from_stream(export::stream(state.store.clone(), &source, format));
    let file: String =
        source.name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect();
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}.{}\"", format.extension())) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}
