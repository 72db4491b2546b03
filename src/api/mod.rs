//! The HTTP API: one router per resource, merged here, and the extractors
//! that turn every kind of bad input into a clear `ApiError`.

pub mod auth;
pub mod crawls;
pub mod edge;
pub mod events;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod pages;
pub mod search;
pub mod sources;
pub mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use tower_http::trace::TraceLayer;

use crate::crawl::Registry;
use crate::error::ApiError;

/// A store failure is the service's own: a 500 that names no internals.
impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::Internal(Box::new(e))
    }
}

/// Largest request body accepted; a crawl request is a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    /// Live crawls: start, stop, status, events.
    pub registry: Arc<Registry>,
    /// What was stored, for the routes that read it.
    pub store: crate::store::DynStore,
    /// For queries searched by meaning.
    pub embedder: crate::embed::DynEmbedder,
    pub keys: crate::auth::ApiKeys,
    pub operator: crate::auth::OperatorKey,
    /// Socket.IO connections to this instance, for `/metrics`.
    pub connections: Arc<dyn Fn() -> usize + Send + Sync>,
    /// Where searches (REST and MCP) take turns.
    pub searches: Arc<crate::search::Gate>,
}

pub fn router(state: AppState) -> Router {
    let authed = crawls::router()
        .merge(pages::router())
        .merge(events::router())
        .merge(search::router())
        .merge(sources::router())
        .merge(webhooks::router())
        .route_layer(axum::middleware::from_fn_with_state(state.keys.clone(), auth::require_key));
    let operator = metrics::router().merge(health::ready_router()).route_layer(axum::middleware::from_fn_with_state(
        (state.keys.clone(), state.operator.clone()),
        auth::require_operator,
    ));
    Router::new()
        .merge(authed)
        .merge(health::router())
        .merge(operator)
        .merge(openapi::router())
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed("method not allowed on this route".into()) })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// JSON body extractor whose every rejection is an `ApiError`: empty bodies,
/// syntax errors, wrong types, oversized bodies and non-JSON content types
/// each get their own code.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // A body without a JSON content type is refused even when it parses:
        // a web page can send text/plain or no type at all across origins
        // without a CORS preflight, never application/json.
        let Some(ct) = req.headers().get(CONTENT_TYPE) else {
            return Err(ApiError::UnsupportedMediaType("no content type; send Content-Type: application/json".into()));
        };
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        if !(ct.starts_with("application/json") || ct.contains("+json")) {
            return Err(ApiError::UnsupportedMediaType(format!(
                "content type '{ct}' is not JSON; send application/json"
            )));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(format!("request body is larger than {MAX_BODY_BYTES} bytes"))
            } else {
                ApiError::InvalidRequest(format!("could not read the request body: {e}"))
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::InvalidRequest("request body is empty; send a JSON object".into()));
        }
        // Syntax first, then shape: serde_json reports some shape errors of
        // valid JSON (a number where an enum goes) as syntax errors.
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::InvalidJson(format!("body is not valid JSON: {e}")))?;
        serde_json::from_value(value)
            .map(ApiJson)
            .map_err(|e| ApiError::InvalidRequest(format!("invalid request: {e}")))
    }
}

/// Query-string extractor whose rejection is an `ApiError` (`invalid_request`).
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| ApiQuery(t))
            .map_err(|e| ApiError::InvalidRequest(format!("invalid query string: {e}")))
    }
}

/// Path-parameter extractor whose rejection is an `ApiError`: a segment
/// that is not UTF-8 once percent-decoded (`/api/crawls/%ff%fe`) is bad
/// input, answered in JSON like any other.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| ApiPath(t))
            .map_err(|e| ApiError::InvalidRequest(format!("invalid path: {e}")))
    }
}
