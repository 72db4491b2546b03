//! The dashboard: one page at `/`, the API under `/api`, on the same port.
//!
//! Its source is `web/` (TypeScript, typed by what `docs/events.schema.json`
//! and `docs/openapi.json` say the service sends); `npm run build` there
//! bundles it into `web/dist/`, which is committed and embedded here, so a
//! plain `cargo run -- serve` serves it with no front-end step. CI rebuilds
//! `web/dist/` from the lockfile and fails when it differs.
//!
//! The page shows what crawls fetched from other sites, so it is served with
//! a policy that runs only its own script: crawled markdown is sanitised
//! before it is shown, and even a sanitiser's miss could load nothing.

use std::sync::OnceLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// One built file of `web/dist/`, plain and gzipped.
struct Asset {
    route: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    gzipped: &'static [u8],
}

macro_rules! asset {
    ($route:literal, $file:literal, $ty:literal) => {
        Asset {
            route: $route,
            content_type: $ty,
            body: include_bytes!(concat!("../../web/dist/", $file)),
            gzipped: include_bytes!(concat!("../../web/dist/", $file, ".gz")),
        }
    };
}

const ASSETS: [Asset; 3] = [
    asset!("/", "index.html", "text/html; charset=utf-8"),
    asset!("/assets/app.js", "app.js", "text/javascript; charset=utf-8"),
    asset!("/assets/style.css", "style.css", "text/css; charset=utf-8"),
];

/// Only the page's own script, style and connections (`'self'` covers the
/// socket's `ws:` to the same host); images only inline, so a crawled page's
/// markdown cannot make the browser call out to its site.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                      connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Strong validators, one per asset: a reload after an upgrade gets the new
/// page, an unchanged one a `304`.
fn etags() -> &'static [String; 3] {
    static TAGS: OnceLock<[String; 3]> = OnceLock::new();
    TAGS.get_or_init(|| {
        ASSETS.each_ref().map(|a| {
            let digest = Sha256::digest(a.body);
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            format!("\"{hex}\"")
        })
    })
}

fn serve(index: usize, headers: &HeaderMap) -> Response {
    let asset = &ASSETS[index];
    let etag = &etags()[index];
    let mut resp = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let gzip = headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|e| e.split(';').next().is_some_and(|e| e.trim() == "gzip")));
        let mut resp = if gzip { asset.gzipped.into_response() } else { asset.body.into_response() };
        if gzip {
            resp.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
        resp
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

/// `/` and its assets. Needs no key: the page holds no data, it asks for a
/// key and sends it with every call.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new();
    for (i, asset) in ASSETS.iter().enumerate() {
        router = router.route(asset.route, get(move |headers: HeaderMap| async move { serve(i, &headers) }));
    }
    router
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_its_gzipped_twin() {
        for a in &ASSETS {
            let mut plain = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(a.gzipped), &mut plain).unwrap();
            assert!(plain == a.body, "{} and its .gz differ: rebuild web/", a.route);
        }
    }
}
