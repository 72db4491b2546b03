//! `GET /api/openapi.json`: the OpenAPI 3.1 document of the HTTP API,
//! generated from the handlers and types themselves (utoipa), and
//! `GET /api/events.schema.json`, the Socket.IO events' JSON Schema.

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
        super::crawls::pages, super::pages::page, super::events::events, super::search::search_chunks, super::search::code_examples,
        super::sources::list, super::sources::one, super::sources::update, super::sources::delete, super::sources::export, super::sources::refresh,
        super::health::healthz, super::health::readyz, super::metrics::metrics, super::webhooks::secret,
    ),
    components(schemas(
        crate::crawl::CrawlRequest, crate::progress::CrawlStatus, crate::store::PageSummary, crate::store::ChunkHit,
        crate::store::CodeHit, crate::error::ErrorBody, crate::progress::StoppingEvent, crate::progress::StoppedEvent,
        crate::progress::EventStamp, crate::store::PageContent, crate::store::Source, crate::store::LastCrawl,
        crate::store::Removed, crate::sources::SourceUpdate, crate::webhooks::WebhookSpec, crate::webhooks::WebhookEvent,
        super::webhooks::WebhookSecret
    )),
    modifiers(&BearerAuth, &EdgeResponses),
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

/// Answers every route can give from the middleware in front of it: 401
/// (API keys set, none or a wrong one sent) and 403 (an open service refusing
/// a foreign `Origin` or `Host`); routes with a path parameter also answer
/// 400 to a parameter that is not UTF-8.
struct EdgeResponses;

impl Modify for EdgeResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        let error = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                    )
                    .build(),
            )
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let ops = [&mut item.get, &mut item.post, &mut item.put, &mut item.delete, &mut item.patch];
            for op in ops.into_iter().flatten() {
                let r = &mut op.responses.responses;
                r.entry("401".into()).or_insert_with(|| error("API keys are set and none, or a wrong one, was sent"));
                r.entry("403".into()).or_insert_with(|| {
                    error("Without API keys: a foreign Origin, or a Host that is not this service's")
                });
                if path.contains('{') {
                    r.entry("400".into()).or_insert_with(|| error("A path parameter that is not valid"));
                }
            }
        }
    }
}

/// The OpenAPI document, and the JSON Schema of the Socket.IO events (which
/// OpenAPI cannot describe): both public, like the page that uses them.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
        .route("/api/events.schema.json", get(|| async { Json(crate::realtime::docs::events_schema()) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/openapi.json` is the document the service serves, for readers
    /// without a running service; `TRAWL_BLESS=1 cargo test --lib docs_` rewrites it.
    #[test]
    fn docs_openapi_json_is_the_served_document() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
        let want = ApiDoc::openapi().to_pretty_json().expect("the document serializes") + "\n";
        if std::env::var("TRAWL_BLESS").is_ok() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(have == want, "docs/openapi.json is out of date: run `TRAWL_BLESS=1 cargo test --lib docs_`");
    }
}
