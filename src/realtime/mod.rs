//! Socket.IO on the same server: namespace `/`, path `/socket.io`.
//!
//! Clients subscribe to a crawl's room (named by its progress id) and get a
//! snapshot at once, then its events; they can stop a crawl from the same
//! connection. A connect middleware checks the API key when keys are
//! configured and pins the socket to its tenant.
//!
//! With a Redis URL, rooms span instances through the socketioxide-redis
//! adapter: a client on one instance gets the events of a crawl running on
//! another. Everything here is generic over the adapter for that reason.

pub mod docs;
mod fanout;
mod handlers;

use socketioxide::SocketIo;
use socketioxide::adapter::{Adapter, Emitter};
use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;
use socketioxide_redis::{RedisAdapter, RedisAdapterCtr};

pub use fanout::SocketFanout;

use crate::auth::ApiKeys;
use crate::crawl::Registry;

/// Largest WebSocket message and polling payload accepted (1 MiB).
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Packets a socket's send buffer holds (engineioxide's default is 128). An
/// urgent event that finds it full is retried on its own task, which can let
/// a later event overtake it; a deeper buffer makes that rarer under load.
pub const SOCKET_BUFFER: usize = 1024;
/// Largest event payload a handler accepts; above it, an error ack.
pub const MAX_EVENT_BYTES: usize = 16 * 1024;

/// Rooms that span instances, through Redis.
pub type Redis = RedisAdapter<Emitter>;

#[derive(Debug, thiserror::Error)]
pub enum RealtimeError {
    #[error("could not set up Socket.IO over Redis: the Redis URL is not valid: {0}")]
    RedisUrl(#[source] redis::RedisError),
    #[error("could not set up Socket.IO over Redis: {0}")]
    Adapter(#[source] redis::RedisError),
    #[error("could not set up Socket.IO over Redis: joining the rooms failed: {0}")]
    Join(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Builds the Socket.IO layer and its handle, rooms in this process only.
pub fn layer() -> (SocketIoLayer, SocketIo) {
    SocketIo::builder()
        .ws_max_message_size(MAX_MESSAGE_BYTES)
        .max_payload(MAX_MESSAGE_BYTES as u64)
        .max_buffer_size(SOCKET_BUFFER)
        .build_layer()
}

/// Builds the Socket.IO layer and its handle with rooms spanning every
/// instance on the Redis at `url` (7 or newer: the adapter speaks RESP3).
pub async fn redis_layer(url: &str) -> Result<(SocketIoLayer<Redis>, SocketIo<Redis>), RealtimeError> {
    let url = if url.contains("protocol=") {
        url.to_string()
    } else {
        format!("{url}{}protocol=resp3", if url.contains('?') { '&' } else { '?' })
    };
    let client = redis::Client::open(url.as_str()).map_err(RealtimeError::RedisUrl)?;
    let adapter = RedisAdapterCtr::new_with_redis(&client).await.map_err(RealtimeError::Adapter)?;
    Ok(SocketIo::builder()
        .ws_max_message_size(MAX_MESSAGE_BYTES)
        .max_payload(MAX_MESSAGE_BYTES as u64)
        .max_buffer_size(SOCKET_BUFFER)
        .with_adapter::<Redis>(adapter)
        .build_layer())
}

/// What the handlers share.
pub struct Realtime<A: Adapter> {
    /// Weak: the registry holds the fanout, which holds these handlers; a
    /// strong reference would keep the registry (and its database pool)
    /// alive for ever once the service is gone.
    pub registry: std::sync::Weak<Registry>,
    pub keys: ApiKeys,
    pub fanout: std::sync::Arc<SocketFanout<A>>,
}

impl<A: Adapter> Realtime<A> {
    /// The registry, while the service runs.
    fn registry(&self) -> Option<std::sync::Arc<Registry>> {
        self.registry.upgrade()
    }
}

impl<A: Adapter> Clone for Realtime<A> {
    fn clone(&self) -> Self {
        Self { registry: self.registry.clone(), keys: self.keys.clone(), fanout: self.fanout.clone() }
    }
}

/// Registers the default namespace with its auth middleware and handlers.
/// A remote adapter subscribes to its channels in the returned future.
pub fn register<A: Adapter + socketioxide_core::adapter::DefinedAdapter>(
    io: &SocketIo<A>,
    rt: Realtime<A>,
) -> A::InitRes {
    let keys = rt.keys.clone();
    let on_connect = move |socket: socketioxide::extract::SocketRef<A>| {
        let rt = rt.clone();
        async move { handlers::on_connect(socket, rt) }
    };
    let auth =
        move |socket: socketioxide::extract::SocketRef<A>,
              socketioxide::extract::TryData(auth): socketioxide::extract::TryData<serde_json::Value>| {
            let keys = keys.clone();
            async move { handlers::authenticate(socket, auth.ok(), &keys) }
        };
    io.ns("/", on_connect.with(auth))
}

/// The room of a tenant's crawl list.
pub fn list_room(tenant: Option<&str>) -> String {
    match tenant {
        Some(t) => format!("crawl_list:{t}"),
        None => "crawl_list".to_string(),
    }
}
