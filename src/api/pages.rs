//! `GET /api/pages/{id}`: what was stored of one page (its markdown, chunks
//! and code examples), for reading content without searching for it.

use axum::Extension;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use super::{ApiPath, AppState};
use crate::auth::Tenant;
use crate::error::ApiError;
use crate::store::PageContent;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/pages/{id}", get(page))
}

#[utoipa::path(get, path = "/api/pages/{id}", tag = "content",
    params(("id" = String, Path, description = "A page's id, from a page listing")),
    responses((status = 200, body = PageContent), (status = 404, body = crate::error::ErrorBody)))]
pub(super) async fn page(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<PageContent>, ApiError> {
    // Any other text names no page: it answers as one that does not exist.
    let not_found = || {
        let shown: String = id.chars().take(40).collect();
        ApiError::NotFound(format!("no page with id '{shown}' (page ids are the whole numbers page listings give)"))
    };
    let page_id = id.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(not_found)?;
    let page = state.store.page_content(page_id).await?.ok_or_else(not_found)?;
    // Another tenant's page answers as a missing one.
    if tenant.0.is_some() && page.tenant.as_deref() != tenant.as_deref() {
        return Err(not_found());
    }
    Ok(Json(page))
}
