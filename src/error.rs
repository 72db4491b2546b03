//! The one error type the HTTP API answers with.
//!
//! Every failure leaves the service as `{error: {code, message}}` with a stable
//! snake_case `code`. Internal errors are logged with their cause and answered
//! with a generic message, so that store paths or SQL never leak to clients.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// The body of every error answer (for the OpenAPI document).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable snake_case word: invalid_url, forbidden_address, not_found, unauthorized, …
    pub code: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidUrl(String),
    #[error("{0}")]
    ForbiddenAddress(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidJson(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    InvalidCursor(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Unavailable(String),
    /// Too much of one kind of work at once (searches); the client may retry.
    #[error("{0}")]
    Busy(String),
    /// The request collides with the resource's state; the code says how.
    #[error("{1}")]
    Conflict(&'static str, String),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// The stable word clients branch on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidUrl(_) => "invalid_url",
            ApiError::ForbiddenAddress(_) => "forbidden_address",
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::InvalidCursor(_) => "invalid_cursor",
            ApiError::NotFound(_) => "not_found",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Unsupported(_) => "unsupported",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Busy(_) => "busy",
            ApiError::Conflict(code, _) => code,
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidUrl(_)
            | ApiError::ForbiddenAddress(_)
            | ApiError::InvalidRequest(_)
            | ApiError::InvalidJson(_)
            | ApiError::InvalidCursor(_)
            | ApiError::Unsupported(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) | ApiError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Conflict(..) => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn crawl_not_found(id: &str) -> Self {
        ApiError::NotFound(format!("no crawl with id '{id}'"))
    }
}

impl ApiError {
    /// What a client is told: an internal error's cause is logged, not sent.
    pub fn body(&self) -> ErrorBody {
        let message = match self {
            ApiError::Internal(cause) => {
                tracing::error!(error = %cause, "internal error while serving a request");
                "internal error; see the service log".to_string()
            }
            other => other.to_string(),
        };
        ErrorBody { error: ErrorDetail { code: self.code().to_string(), message } }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let busy = matches!(self, ApiError::Busy(_));
        let mut r = (self.status(), Json(self.body())).into_response();
        if busy {
            r.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        }
        r
    }
}
