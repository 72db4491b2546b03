//! The guarded proxy Chromium must use: every connection the browser opens
//! (navigations, redirects, subresources, fetch/XHR, frames, workers,
//! WebSockets) goes through here, and here the address guard decides on the
//! address actually connected to.
//!
//! Chromium resolves and connects by itself, so checking a URL before handing
//! it over proves nothing: a name can resolve public for trawl and loopback a
//! moment later for the browser (DNS rebinding), and a page can send the
//! browser anywhere with a redirect, a `<meta refresh>` or a script. With
//! `--proxy-server` pointing here (and `<-loopback>` so that not even
//! loopback bypasses it), Chromium does no DNS of its own: plain HTTP comes as
//! absolute-form requests, forwarded by a reqwest client with the guarded
//! resolver; HTTPS and WebSockets come as `CONNECT host:port`, resolved and
//! checked here, then tunnelled to the one public address chosen.
//!
//! A refusal answers `403` with `x-trawl-guard: <refused address>`, which the
//! renderer turns into the page's `forbidden_address` error when it is the
//! main document.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use http_body_util::{BodyExt, Empty, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::guard::{AddressGuard, ForbiddenAddress};

/// The header that marks an answer as the guard's refusal, not the site's.
pub const GUARD_HEADER: &str = "x-trawl-guard";
/// How long a connection to a site may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type ProxyBody = BoxBody<Bytes, std::io::Error>;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("could not listen for the browser's connections: {0}")]
    Bind(std::io::Error),
    #[error("could not build the proxy's HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// A running proxy; it stops when `closing` fires.
pub struct GuardedProxy {
    addr: SocketAddr,
}

impl GuardedProxy {
    /// Listens on a free loopback port and serves until `closing` fires; its
    /// tasks run on `tracker`.
    pub async fn start(
        guard: AddressGuard,
        tracker: &TaskTracker,
        closing: CancellationToken,
    ) -> Result<Self, ProxyError> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.map_err(ProxyError::Bind)?;
        let addr = listener.local_addr().map_err(ProxyError::Bind)?;
        let mut client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(30));
        if let Some(resolver) = guard.resolver() {
            client = client.dns_resolver(resolver);
        }
        let shared = Shared { guard, client: client.build()? };
        let conns = tracker.clone();
        tracker.spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = closing.cancelled() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(e) => {
                            tracing::debug!(error = %e, "proxy accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let _ = stream.set_nodelay(true);
                let (shared, closing, tasks) = (shared.clone(), closing.clone(), conns.clone());
                conns.spawn(async move {
                    let stop = closing.clone();
                    let service = hyper::service::service_fn(move |req| {
                        let (shared, tasks, stop) = (shared.clone(), tasks.clone(), stop.clone());
                        async move { Ok::<_, Infallible>(shared.handle(req, &tasks, &stop).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .preserve_header_case(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    tokio::select! {
                        _ = closing.cancelled() => {}
                        r = conn => if let Err(e) = r { tracing::trace!(error = %e, "proxy connection ended") },
                    }
                });
            }
        });
        Ok(Self { addr })
    }

    /// The `--proxy-server` value for Chromium.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

#[derive(Clone)]
struct Shared {
    guard: AddressGuard,
    client: reqwest::Client,
}

/// Headers that belong to one connection, not to the request.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

impl Shared {
    async fn handle(
        &self,
        req: Request<Incoming>,
        tasks: &TaskTracker,
        closing: &CancellationToken,
    ) -> Response<ProxyBody> {
        if req.method() == Method::CONNECT {
            self.tunnel(req, tasks, closing.clone()).await
        } else {
            self.forward(req).await
        }
    }

    /// `CONNECT host:port`: resolve, keep only public addresses, connect to
    /// one, then splice bytes both ways once Chromium has the `200`.
    async fn tunnel(
        &self,
        req: Request<Incoming>,
        tasks: &TaskTracker,
        closing: CancellationToken,
    ) -> Response<ProxyBody> {
        let Some(authority) = req.uri().authority().cloned() else {
            return plain(StatusCode::BAD_REQUEST, "CONNECT needs host:port");
        };
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
        let port = authority.port_u16().unwrap_or(443);
        let upstream = match self.connect(&host, port).await {
            Ok(s) => s,
            Err(TunnelError::Forbidden(f)) => return refused(&f),
            Err(TunnelError::Io(e)) => return plain(StatusCode::BAD_GATEWAY, &format!("could not connect: {e}")),
        };
        let upgrade = hyper::upgrade::on(req);
        tasks.spawn(async move {
            match upgrade.await {
                Ok(upgraded) => {
                    let mut client = TokioIo::new(upgraded);
                    let mut upstream = upstream;
                    tokio::select! {
                        _ = closing.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                    }
                }
                Err(e) => tracing::trace!(error = %e, "CONNECT upgrade failed"),
            }
        });
        Response::new(empty())
    }

    async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, TunnelError> {
        let addrs: Vec<SocketAddr> = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host((host, port)))
                .await
                .map_err(|_| TunnelError::Io(std::io::Error::other("DNS lookup timed out")))?
                .map_err(TunnelError::Io)?
                .collect(),
        };
        let allowed = self.guard.allowed_addrs(host, addrs).map_err(TunnelError::Forbidden)?;
        let mut last = None;
        for addr in allowed {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Ok(Err(e)) => last = Some(e),
                Err(_) => last = Some(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")),
            }
        }
        Err(TunnelError::Io(last.unwrap_or_else(|| std::io::Error::other("no address"))))
    }

    /// An absolute-form `GET http://…` (or any method): sent on by the
    /// guarded client, the answer streamed back as it comes, redirects
    /// included (Chromium follows them through here again).
    async fn forward(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let Ok(url) = url::Url::parse(&req.uri().to_string()) else {
            return plain(StatusCode::BAD_REQUEST, "a proxy request needs an absolute http:// URL");
        };
        if url.scheme() != "http" {
            return plain(StatusCode::BAD_REQUEST, "only http:// is forwarded; https goes through CONNECT");
        }
        if let Err(f) = self.guard.check_literal(&url) {
            return refused(&f);
        }
        // reqwest and hyper share the `http` crate: headers pass as they are.
        let (mut parts, body) = req.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(hyper::header::HOST);
        let body = reqwest::Body::wrap_stream(body.into_data_stream());
        let sent = self.client.request(parts.method, url).headers(parts.headers).body(body).send().await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => match ForbiddenAddress::in_chain(&e) {
                Some(f) => return refused(f),
                None => return plain(StatusCode::BAD_GATEWAY, &format!("upstream request failed: {e}")),
            },
        };
        let status = resp.status();
        let mut headers = resp.headers().clone();
        strip_hop_by_hop(&mut headers);
        let stream = resp.bytes_stream().map_ok(Frame::data).map_err(std::io::Error::other);
        let mut out = Response::new(BodyExt::boxed(StreamBody::new(stream)));
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        out
    }
}

fn strip_hop_by_hop(headers: &mut hyper::HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

enum TunnelError {
    Forbidden(ForbiddenAddress),
    Io(std::io::Error),
}

fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

fn plain(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let mut r = Response::new(Full::new(Bytes::from(message.to_string())).map_err(|never| match never {}).boxed());
    *r.status_mut() = status;
    r
}

fn refused(f: &ForbiddenAddress) -> Response<ProxyBody> {
    tracing::info!(host = %f.host, ip = %f.ip, "the browser's request was refused by the address guard");
    let mut r = plain(StatusCode::FORBIDDEN, &f.to_string());
    if let Ok(v) = hyper::header::HeaderValue::from_str(&f.ip.to_string()) {
        r.headers_mut().insert(GUARD_HEADER, v);
    }
    r
}
