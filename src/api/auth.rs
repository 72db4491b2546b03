//! The API keys at the HTTP edge: axum middleware that turns
//! `Authorization: Bearer KEY` into the request's tenant (`crate::auth::Tenant`), or a `401`.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::{ApiKeys, OperatorKey};
use crate::error::ApiError;

/// axum middleware: resolves `Authorization: Bearer KEY` to a [`crate::auth::Tenant`]
/// extension, or answers `401 unauthorized`.
pub async fn require_key(State(keys): State<ApiKeys>, mut req: Request, next: Next) -> Response {
    let presented = bearer(&req).map(str::to_string);
    match keys.authenticate(presented.as_deref()) {
        Ok(tenant) => {
            req.extensions_mut().insert(tenant);
            next.run(req).await
        }
        Err(why) => ApiError::Unauthorized(format!("{why}; send Authorization: Bearer KEY")).into_response(),
    }
}

fn bearer(req: &Request) -> Option<&str> {
    req.headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
}

/// axum middleware for operator routes: open when the service is open,
/// else only for the operator key.
pub async fn require_operator(
    State((keys, operator)): State<(ApiKeys, OperatorKey)>,
    req: Request,
    next: Next,
) -> Response {
    if !keys.enabled() {
        return next.run(req).await;
    }
    let allowed = bearer(&req).is_some_and(|presented| operator.matches(presented));
    if allowed {
        next.run(req).await
    } else if !operator.is_set() {
        ApiError::Unauthorized("with API keys set, this route needs the operator key (TRAWL_OPERATOR_KEY)".into())
            .into_response()
    } else {
        ApiError::Unauthorized("this route needs the operator key; send Authorization: Bearer KEY".into())
            .into_response()
    }
}
