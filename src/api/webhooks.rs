//! `GET /api/webhooks/secret`: the caller's webhook signing secret, to check
//! the `Trawl-Signature` of the deliveries its crawls post.

use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Json, Router};

use super::AppState;
use crate::auth::Tenant;
use crate::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/webhooks/secret", get(secret))
}

/// The secret and how deliveries are signed.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSecret {
    /// HMAC-SHA256 key of this tenant's deliveries.
    pub secret: String,
    /// The header that carries the signature: `t=<unix seconds>,v1=<hex HMAC of "<t>.<raw body>">`.
    pub header: &'static str,
    /// Refuse a delivery whose `t` is older than this many seconds.
    pub tolerance_seconds: u32,
}

#[utoipa::path(get, path = "/api/webhooks/secret", tag = "webhooks",
    responses((status = 200, body = WebhookSecret), (status = 401, body = crate::error::ErrorBody)))]
pub(super) async fn secret(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
) -> Result<Json<WebhookSecret>, ApiError> {
    let key = crate::webhooks::tenant_key(tenant.as_deref());
    let secret = state.store.webhook_secret(key, &crate::webhooks::new_secret()).await?;
    Ok(Json(WebhookSecret { secret, header: "Trawl-Signature", tolerance_seconds: 300 }))
}
