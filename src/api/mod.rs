//! The HTTP API: one router per resource, merged here, and the extractors
//! that turn every kind of bad input into a clear `ApiError`.

pub mod crawls;
pub mod events;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod search;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Query, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use tower_http::trace::TraceLayer;

use crate::crawl::Registry;
use crate::error::ApiError;

/// Largest request body accepted; a crawl request is a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub keys: crate::auth::ApiKeys,
    /// Socket.IO connections to this instance, for `/metrics`.
    pub connections: Arc<dyn Fn() -> usize + Send + Sync>,
}

pub fn router(state: AppState) -> Router {
    let authed = crawls::router()
        .merge(events::router())
        .merge(search::router())
        .route_layer(axum::middleware::from_fn_with_state(state.keys.clone(), crate::auth::require_key));
    Router::new()
        .merge(authed)
        .merge(health::router())
        .merge(metrics::router())
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
        if let Some(ct) = req.headers().get(CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
            if !(ct.starts_with("application/json") || ct.contains("+json")) {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "content type '{ct}' is not JSON; send application/json"
                )));
            }
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
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => ApiError::InvalidRequest(format!("invalid request: {e}")),
            _ => ApiError::InvalidJson(format!("body is not valid JSON: {e}")),
        })
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
