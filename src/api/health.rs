//! Liveness and readiness.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;
use crate::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
}

/// Up as long as the process answers.
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the store answers.
async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.registry.store().ping().await.map_err(|e| {
        tracing::warn!(error = %e, "store not ready");
        ApiError::Unavailable("the store does not answer".into())
    })?;
    Ok(Json(json!({ "status": "ready", "activeCrawls": state.registry.active_count() })))
}
