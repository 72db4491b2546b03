//! Liveness and readiness.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;
use crate::error::ApiError;

/// `/healthz`: open to all (it tells nothing but that the process answers).
pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz))
}

/// `/readyz`: behind the operator key when API keys are set.
pub fn ready_router() -> Router<AppState> {
    Router::new().route("/readyz", get(readyz))
}

/// Up as long as the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "Up")))]
pub(super) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the store answers and can write.
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, description = "The store answers"), (status = 503, body = crate::error::ErrorBody)))]
pub(super) async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.store.writable().await.map_err(|e| {
        tracing::warn!(error = %e, "store not ready");
        match e {
            crate::store::StoreError::Unwritable(why) => {
                ApiError::Unavailable(format!("the store cannot write: {why}"))
            }
            _ => ApiError::Unavailable("the store does not answer".into()),
        }
    })?;
    // The embedder says whether search matches meaning (`all-MiniLM-L6-v2`)
    // or words (`local-hash-*`, the fallback when the model cannot be had).
    Ok(Json(json!({
        "status": "ready",
        "activeCrawls": state.registry.active_count(),
        "embedder": state.embedder.model(),
        // The embedded store's vector graph: rebuilding (`ready: false`),
        // or how many stored vectors it has yet to take in.
        "vectorIndex": state.store.vector_index().await.ok().flatten(),
    })))
}
