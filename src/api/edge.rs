//! The HTTP edge: what every connection and request meets before a handler.
//!
//! - Connections: headers must arrive within a deadline (slowloris), and
//!   connections beyond a bound are closed at accept.
//! - Open mode (no API keys): any web page the operator visits could
//!   otherwise drive the local API. Requests with a foreign `Origin` may not
//!   change state or open a socket, and on a loopback bind the `Host` must be
//!   a loopback name, which defeats DNS rebinding onto the local port.
//!   With keys, a page cannot present a key it does not have, so these
//!   checks are left to the keys.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The edge's settings.
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    /// Request headers must arrive within this long.
    pub header_read_timeout: Duration,
    /// Open connections at once (sockets included); more are closed at accept.
    pub max_connections: usize,
    /// Origins allowed to change state and open sockets in open mode, besides
    /// the service's own address (`http://host:port`).
    pub allowed_origins: Vec<String>,
}

impl Default for EdgeSettings {
    fn default() -> Self {
        Self { header_read_timeout: Duration::from_secs(10), max_connections: 20_000, allowed_origins: Vec::new() }
    }
}

/// Whether a request may pass, decided from its method, path and headers.
#[derive(Debug, Clone)]
pub struct EdgePolicy {
    /// No API keys: the checks below apply.
    open: bool,
    /// Bound to a loopback address: `Host` must name loopback.
    loopback: bool,
    /// Normalised `scheme://host:port` strings.
    origins: Vec<String>,
}

impl EdgePolicy {
    pub fn new(settings: &EdgeSettings, bound: SocketAddr, open: bool) -> Self {
        let port = bound.port();
        let mut origins: Vec<String> = settings.allowed_origins.iter().filter_map(|o| normalize_origin(o)).collect();
        let loopback = bound.ip().is_loopback();
        if loopback {
            for host in ["localhost", "127.0.0.1", "[::1]"] {
                origins.push(format!("http://{host}:{port}"));
            }
        } else if !bound.ip().is_unspecified() {
            origins.push(format!("http://{bound}"));
        }
        Self { open, loopback, origins }
    }

    fn check(&self, method: &Method, path: &str, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
        if !self.open {
            return Ok(());
        }
        if self.loopback {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
            let name = host_name(host);
            let allowed = self.origins.iter().any(|o| host_name(origin_host(o)) == name);
            if !host.is_empty() && !is_loopback_host(host) && !allowed {
                return Err(ApiError::Forbidden(format!(
                    "Host '{}' is not this service's: without API keys it answers only to localhost names",
                    truncate(host)
                )));
            }
        }
        let changes = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if (changes || path.starts_with("/socket.io"))
            && let Some(origin) = headers.get(header::ORIGIN)
        {
            let origin = origin.to_str().unwrap_or("");
            let allowed = normalize_origin(origin).is_some_and(|o| self.origins.contains(&o));
            if !allowed {
                return Err(ApiError::Forbidden(format!(
                    "requests from origin '{}' are refused without API keys; allow it with --allowed-origins",
                    truncate(origin)
                )));
            }
        }
        Ok(())
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(100) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// `scheme://host:port`, lowercased, with the scheme's default port written out.
fn normalize_origin(origin: &str) -> Option<String> {
    let url = url::Url::parse(origin.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let host = match url.host()? {
        url::Host::Ipv6(v6) => format!("[{v6}]"),
        h => h.to_string().to_ascii_lowercase(),
    };
    Some(format!("{}://{}:{}", url.scheme(), host, url.port_or_known_default()?))
}

fn origin_host(origin: &str) -> &str {
    origin.split_once("://").map(|(_, rest)| rest).unwrap_or(origin)
}

/// The name of a `Host` value: without its port or brackets, lowercased.
fn host_name(host: &str) -> String {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split_once(']').map(|(h, _)| h).unwrap_or(rest)
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = host_name(host);
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// axum middleware applying the policy to every request, Socket.IO's included.
pub async fn check(State(policy): State<Arc<EdgePolicy>>, req: Request, next: Next) -> Response {
    match policy.check(req.method(), req.uri().path(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn open_mode_refuses_foreign_origins_and_hosts_on_loopback() {
        let p = EdgePolicy::new(&EdgeSettings::default(), "127.0.0.1:8080".parse().unwrap(), true);
        let ok = headers(&[("host", "127.0.0.1:8080"), ("origin", "http://localhost:8080")]);
        assert!(p.check(&Method::POST, "/api/crawls", &ok).is_ok());
        let foreign = headers(&[("host", "127.0.0.1:8080"), ("origin", "https://evil.example")]);
        assert!(p.check(&Method::POST, "/api/crawls", &foreign).is_err());
        assert!(p.check(&Method::GET, "/socket.io/", &foreign).is_err());
        assert!(p.check(&Method::GET, "/api/crawls", &foreign).is_ok(), "reads are left to CORS");
        let rebound = headers(&[("host", "evil.example:8080")]);
        assert!(p.check(&Method::GET, "/api/crawls", &rebound).is_err());
        assert!(p.check(&Method::GET, "/api/crawls", &headers(&[("host", "localhost:8080")])).is_ok());
        assert!(p.check(&Method::GET, "/api/crawls", &headers(&[("host", "[::1]:8080")])).is_ok());
        let null = headers(&[("host", "localhost:8080"), ("origin", "null")]);
        assert!(p.check(&Method::POST, "/api/crawls/x/stop", &null).is_err());
        let proxied = EdgeSettings { allowed_origins: vec!["https://app.example".into()], ..Default::default() };
        let behind = EdgePolicy::new(&proxied, "127.0.0.1:8080".parse().unwrap(), true);
        let app = headers(&[("host", "app.example"), ("origin", "https://app.example")]);
        assert!(behind.check(&Method::POST, "/api/crawls", &app).is_ok(), "an allowed origin's host is accepted");
        let keyed = EdgePolicy::new(&EdgeSettings::default(), "127.0.0.1:8080".parse().unwrap(), false);
        assert!(keyed.check(&Method::POST, "/api/crawls", &foreign).is_ok());
    }

    #[test]
    fn allowed_origins_are_normalised() {
        let settings = EdgeSettings { allowed_origins: vec!["https://App.example".into()], ..Default::default() };
        let p = EdgePolicy::new(&settings, "0.0.0.0:8080".parse().unwrap(), true);
        let h = headers(&[("host", "app.example"), ("origin", "https://app.example:443")]);
        assert!(p.check(&Method::POST, "/api/crawls", &h).is_ok());
    }
}
