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

/// What `/readyz` answers.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Readiness {
    /// Always `ready` (otherwise the answer is a 503).
    status: &'static str,
    /// Crawls this instance runs.
    active_crawls: usize,
    /// The model vectors are made with: a sentence model
    /// (`all-MiniLM-L6-v2`) matches meaning; `local-hash-*`, the fallback
    /// when the model cannot be had, matches words.
    embedder: String,
    /// The embedded store's vector graph (absent on PostgreSQL, whose HNSW
    /// index lives in the database).
    #[serde(skip_serializing_if = "Option::is_none")]
    vector_index: Option<crate::store::VectorIndexState>,
}

/// Ready when the store answers and can write.
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, description = "The store answers", body = Readiness), (status = 503, body = crate::error::ErrorBody)))]
pub(super) async fn readyz(State(state): State<AppState>) -> Result<Json<Readiness>, ApiError> {
    state.store.writable().await.map_err(|e| {
        tracing::warn!(error = %e, "store not ready");
        match e {
            crate::store::StoreError::Unwritable(why) => {
                ApiError::Unavailable(format!("the store cannot write: {why}"))
            }
            _ => ApiError::Unavailable("the store does not answer".into()),
        }
    })?;
    Ok(Json(Readiness {
        status: "ready",
        active_crawls: state.registry.active_count(),
        embedder: state.embedder.model().to_string(),
        vector_index: state.store.vector_index().await.ok().flatten(),
    }))
}
