//! `POST /api/search` and `GET /api/code-examples`.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiJson, ApiQuery, AppState};
use crate::auth::Tenant;
use crate::error::ApiError;
use crate::search::{self, Mode, SearchError};
use crate::store::SearchFilter;

const MAX_QUERY_CHARS: usize = 2000;
const MAX_LIMIT: u32 = 100;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/search", post(search_chunks)).route("/api/code-examples", get(code_examples))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct SearchRequest {
    /// What to look for; not blank.
    #[schema(min_length = 1, max_length = 2000, pattern = r"\S")]
    query: String,
    /// Results at most (default 10).
    #[serde(default, deserialize_with = "crate::crawl::request::whole_number")]
    #[schema(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    #[serde(default, alias = "progress_id")]
    progress_id: Option<String>,
    /// Only pages of this host. A URL or `host:port` is taken as its host
    /// (the port does not narrow it: pages are kept by host).
    #[serde(default)]
    #[schema(max_length = 2048)]
    source: Option<String>,
    #[serde(default)]
    mode: Mode,
}

impl From<crate::search::Busy> for ApiError {
    fn from(e: crate::search::Busy) -> Self {
        ApiError::Busy(e.to_string())
    }
}

impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> Self {
        match e {
            SearchError::Store(s) => ApiError::from(s),
            SearchError::Embed(e) => {
                tracing::warn!(error = %e, "query embedding failed");
                ApiError::Unavailable("the embedder did not answer; try mode \"text\"".into())
            }
        }
    }
}

pub(crate) fn check_query(q: &str) -> Result<(), ApiError> {
    if q.trim().is_empty() {
        return Err(ApiError::InvalidRequest("query must not be empty".into()));
    }
    if q.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::InvalidRequest(format!("query is longer than {MAX_QUERY_CHARS} characters")));
    }
    Ok(())
}

/// The longest `source` filter (the schema's `maxLength`).
const MAX_SOURCE_CHARS: usize = 2048;

/// The host a `source` filter names: a bare host, `host:port` or a URL.
pub(crate) fn source_host(source: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(raw) = source else { return Ok(None) };
    let s = raw.trim();
    let bad = || {
        ApiError::InvalidRequest(format!(
            "source must be a host, host:port or URL; '{}' is none",
            s.chars().take(100).collect::<String>()
        ))
    };
    if s.is_empty() || raw.chars().count() > MAX_SOURCE_CHARS {
        return Err(bad());
    }
    let url = if s.contains("://") { url::Url::parse(s) } else { url::Url::parse(&format!("http://{s}")) };
    let host = url.ok().and_then(|u| u.host_str().map(str::to_ascii_lowercase)).ok_or_else(bad)?;
    Ok(Some(host))
}

pub(crate) fn check_limit(limit: Option<u32>, default: u32) -> Result<u32, ApiError> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::InvalidRequest(format!("limit must be between 1 and {MAX_LIMIT}"))),
    }
}

#[utoipa::path(post, path = "/api/search", tag = "search", request_body = SearchRequest,
    responses((status = 200, description = "{results: [ChunkHit]}, best first"), (status = 400, body = crate::error::ErrorBody),
              (status = 413, body = crate::error::ErrorBody), (status = 415, body = crate::error::ErrorBody),
              (status = 503, description = "The embedder did not answer (`embedding_unavailable`), or too many searches at once (`busy`, with `Retry-After`)", body = crate::error::ErrorBody)))]
pub(super) async fn search_chunks(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    ApiJson(req): ApiJson<SearchRequest>,
) -> Result<Json<Value>, ApiError> {
    check_query(&req.query)?;
    let limit = check_limit(req.limit, 10)?;
    let filter = SearchFilter { crawl_id: req.progress_id, source: source_host(req.source)?, tenant: tenant.0 };
    let _turn = state.searches.enter().await?;
    let hits = search::search(&*state.store, &*state.embedder, &req.query, req.mode, &filter, limit).await?;
    Ok(Json(json!({ "results": hits })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CodeParams {
    query: Option<String>,
    language: Option<String>,
    #[serde(alias = "progress_id")]
    progress_id: Option<String>,
    limit: Option<String>,
}

#[utoipa::path(get, path = "/api/code-examples", tag = "search",
    params(("query" = Option<String>, Query, min_length = 1, max_length = 2000, pattern = r"\S"), ("language" = Option<String>, Query), ("progressId" = Option<String>, Query),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Results at most (default 20)")),
    responses((status = 200, description = "{results: [CodeHit]}"), (status = 400, body = crate::error::ErrorBody)))]
pub(super) async fn code_examples(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    ApiQuery(p): ApiQuery<CodeParams>,
) -> Result<Json<Value>, ApiError> {
    let limit = match p.limit.as_deref() {
        None | Some("") => 20,
        Some(l) => check_limit(l.parse().ok().or(Some(0)), 20)?,
    };
    if let Some(q) = p.query.as_deref() {
        check_query(q)?;
    }
    let filter = SearchFilter { crawl_id: p.progress_id, source: None, tenant: tenant.0 };
    let _turn = state.searches.enter().await?;
    let hits = state
        .registry
        .store()
        .search_code(p.query.as_deref(), p.language.as_deref().filter(|l| !l.is_empty()), &filter, limit)
        .await?;
    Ok(Json(json!({ "results": hits })))
}
