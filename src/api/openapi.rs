//! `GET /api/openapi.json`: the OpenAPI 3.1 document of the HTTP API,
//! generated from the handlers and types themselves (utoipa).

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "trawl", description = "Crawl orchestration: start crawls, watch them live (Socket.IO at /socket.io, SSE, polling), stop them, search what was crawled."),
    paths(
        super::crawls::start, super::crawls::list, super::crawls::status, super::crawls::stop, super::crawls::delete,
        super::crawls::pages, super::events::events, super::search::search_chunks, super::search::code_examples,
        super::health::healthz, super::health::readyz, super::metrics::metrics,
    ),
    components(schemas(
        crate::crawl::CrawlRequest, crate::progress::CrawlStatus, crate::store::PageSummary, crate::store::ChunkHit,
        crate::store::CodeHit, crate::error::ErrorBody
    )),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

/// API keys, when configured, travel as bearer tokens.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(c) = openapi.components.as_mut() {
            c.add_security_scheme(
                "apiKey",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/api/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
}
