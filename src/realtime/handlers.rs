//! Client → server events. Every malformed payload gets an error ack (or an
//! `error` event when no ack was asked for); the connection stays up.

use std::convert::Infallible;
use std::sync::Arc;

use serde_json::{Value, json};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::handler::FromMessageParts;
use socketioxide::socket::Socket;

use super::{MAX_EVENT_BYTES, Realtime, list_room};
use crate::auth::{ApiKeys, Tenant};
use crate::error::{ErrorBody, ErrorDetail};
use crate::progress::{CRAWLS_UPDATE, Event};

/// The answer once the service has stopped (a socket still open after it).
const GONE: (&str, &str) = ("unavailable", "the service is shutting down");

/// Why the handshake was refused; the client gets it as `connect_error`.
#[derive(Debug, thiserror::Error)]
#[error("unauthorized: {0}")]
pub struct AuthError(&'static str);

/// Connect middleware: with API keys configured, `auth: {token}` must name one.
pub fn authenticate<A: Adapter>(socket: SocketRef<A>, auth: Option<Value>, keys: &ApiKeys) -> Result<(), AuthError> {
    let token = auth.as_ref().and_then(|a| a.get("token")).and_then(Value::as_str);
    let tenant = keys.authenticate(token).map_err(AuthError)?;
    socket.extensions.insert(tenant);
    Ok(())
}

fn tenant_of<A: Adapter>(socket: &SocketRef<A>) -> Tenant {
    socket.extensions.get::<Tenant>().unwrap_or_default()
}

/// Answers a client event: through its ack when it asked for one, else as
/// an `error` event for failures (successes need no answer then).
pub struct Reply<A: Adapter> {
    ack: AckSender<A>,
    wants_ack: bool,
    socket: SocketRef<A>,
}

impl<A: Adapter> FromMessageParts<A> for Reply<A> {
    type Error = Infallible;
    fn from_message_parts(
        s: &Arc<Socket<A>>,
        v: &mut socketioxide::handler::Value,
        ack_id: &Option<i64>,
    ) -> Result<Self, Infallible> {
        Ok(Reply {
            ack: AckSender::from_message_parts(s, v, ack_id)?,
            wants_ack: ack_id.is_some(),
            socket: SocketRef::from_message_parts(s, v, ack_id)?,
        })
    }
}

impl<A: Adapter> Reply<A> {
    fn ok(self, data: Value) {
        if self.wants_ack {
            let _ = self.ack.send(&data);
        }
    }

    fn err(self, event: &str, code: &str, message: impl Into<String>) {
        // The HTTP API's error body; an `error` event also names the event
        // that failed, since it has no acknowledgement to tie it to.
        let body = ErrorBody { error: ErrorDetail { code: code.to_string(), message: message.into() } };
        if self.wants_ack {
            let _ = self.ack.send(&body);
        } else {
            #[derive(serde::Serialize)]
            struct Emitted<'a> {
                #[serde(flatten)]
                body: ErrorBody,
                event: &'a str,
            }
            let _ = self.socket.emit("error", &Emitted { body, event });
        }
    }
}

/// The `progress_id` of a payload `{progress_id}` / `{progressId}`.
fn progress_id(data: &Result<Value, impl std::fmt::Display>) -> Result<String, (&'static str, String)> {
    let v = match data {
        Ok(v) => v,
        Err(e) => return Err(("invalid_payload", format!("payload could not be read: {e}"))),
    };
    if serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX) > MAX_EVENT_BYTES {
        return Err(("payload_too_large", format!("payload is larger than {MAX_EVENT_BYTES} bytes")));
    }
    let Value::Object(m) = v else {
        return Err(("invalid_payload", "payload must be an object {progress_id}".into()));
    };
    match m.get("progress_id").or_else(|| m.get("progressId")) {
        None => Err(("missing_progress_id", "progress_id is required".into())),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 128 => Ok(s.clone()),
        Some(Value::String(_)) => Err(("invalid_progress_id", "progress_id must be 1 to 128 characters".into())),
        Some(_) => Err(("invalid_progress_id", "progress_id must be a string".into())),
    }
}

pub fn on_connect<A: Adapter>(socket: SocketRef<A>, rt: Realtime<A>) {
    tracing::debug!(sid = %socket.id, "socket connected");
    if let Some(node) = rt.fanout.node_room() {
        socket.join(node.to_string());
    }
    for name in ["crawl_subscribe", "subscribe_progress"] {
        let rt = rt.clone();
        socket.on(name, move |s: SocketRef<A>, TryData::<Value>(data), reply: Reply<A>| {
            let rt = rt.clone();
            async move { subscribe(s, data, reply, rt, name).await }
        });
    }
    for name in ["crawl_unsubscribe", "unsubscribe_progress"] {
        socket.on(name, move |s: SocketRef<A>, TryData::<Value>(data), reply: Reply<A>| async move {
            match progress_id(&data) {
                Ok(id) => {
                    s.leave(id.clone());
                    reply.ok(json!({ "ok": true, "progressId": id }));
                }
                Err((code, msg)) => reply.err(name, code, msg),
            }
        });
    }
    {
        let rt = rt.clone();
        socket.on("crawl_stop", move |s: SocketRef<A>, TryData::<Value>(data), reply: Reply<A>| {
            let rt = rt.clone();
            async move { stop(s, data, reply, rt).await }
        });
    }
    {
        let rt = rt.clone();
        socket.on("subscribe_crawls", move |s: SocketRef<A>, reply: Reply<A>| {
            let rt = rt.clone();
            async move {
                let Some(registry) = rt.registry() else { return reply.err("subscribe_crawls", GONE.0, GONE.1) };
                let tenant = tenant_of(&s);
                s.join(list_room(tenant.as_deref()));
                let crawls = registry.active(tenant.as_deref()).await;
                let _ = s.emit(CRAWLS_UPDATE, &json!({ "crawls": crawls }));
                reply.ok(json!({ "ok": true, "crawls": crawls }));
            }
        });
    }
    socket.on("unsubscribe_crawls", move |s: SocketRef<A>, reply: Reply<A>| async move {
        s.leave(list_room(tenant_of(&s).as_deref()));
        reply.ok(json!({ "ok": true }));
    });
    socket.on_fallback(unknown_event::<A>);
}

/// An event nobody handles still gets an answer: a client waiting on its
/// ack must not wait for ever.
async fn unknown_event<A: Adapter>(socketioxide::extract::Event(event): socketioxide::extract::Event, reply: Reply<A>) {
    let name: String = event.chars().take(64).collect();
    let known = super::docs::client_event_names();
    reply.err(&name, "unknown_event", format!("no event '{name}'; the events are {known}"));
}

async fn subscribe<A: Adapter>(
    socket: SocketRef<A>,
    data: Result<Value, socketioxide::ParserError>,
    reply: Reply<A>,
    rt: Realtime<A>,
    event: &'static str,
) {
    let id = match progress_id(&data) {
        Ok(id) => id,
        Err((code, msg)) => return reply.err(event, code, msg),
    };
    let Some(registry) = rt.registry() else { return reply.err(event, GONE.0, GONE.1) };
    let tenant = tenant_of(&socket);
    // Join first, then the snapshot under the reporter's lock: nothing
    // published in between is missed, and nothing older arrives after it.
    if let Some(reporter) = registry.reporter(&id, tenant.as_deref()) {
        socket.join(id.clone());
        let mut status = None;
        reporter
            .with_snapshot(|snap| {
                status = Some(snap.status);
                rt.fanout.send(socket.clone(), snap);
                async {}
            })
            .await;
        return reply.ok(json!({ "ok": true, "progressId": id, "status": status }));
    }
    match registry.status(&id, tenant.as_deref()).await {
        Ok(Some(s)) => {
            socket.join(id.clone());
            let snap = Arc::new(Event::progress(&s, s.event_id, true, s.status.is_terminal()));
            rt.fanout.send(socket.clone(), snap);
            let status = s.status;
            if registry.cluster().is_some() {
                rt.fanout.follow_remote(registry.clone(), s);
            }
            reply.ok(json!({ "ok": true, "progressId": id, "status": status }));
        }
        Ok(None) => reply.err(event, "not_found", format!("no crawl with id '{id}'")),
        Err(e) => {
            tracing::error!(error = %e, "store error on subscribe");
            reply.err(event, "internal", "internal error; see the service log")
        }
    }
}

async fn stop<A: Adapter>(
    socket: SocketRef<A>,
    data: Result<Value, socketioxide::ParserError>,
    reply: Reply<A>,
    rt: Realtime<A>,
) {
    let id = match progress_id(&data) {
        Ok(id) => id,
        Err((code, msg)) => return reply.err("crawl_stop", code, msg),
    };
    let Some(registry) = rt.registry() else { return reply.err("crawl_stop", GONE.0, GONE.1) };
    let tenant = tenant_of(&socket);
    match registry.stop(&id, tenant.as_deref()).await {
        Ok(Some(s)) => reply.ok(json!({ "ok": true, "progressId": id, "status": s.status })),
        Ok(None) => reply.err("crawl_stop", "not_found", format!("no crawl with id '{id}'")),
        Err(e) => {
            tracing::error!(error = %e, "store error on stop");
            reply.err("crawl_stop", "internal", "internal error; see the service log")
        }
    }
}
