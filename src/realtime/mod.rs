//! Socket.IO on the same server: namespace `/`, path `/socket.io`.
//!
//! Clients subscribe to a crawl's room (named by its progress id) and get a
//! snapshot at once, then its events; they can stop a crawl from the same
//! connection. A connect middleware checks the API key when keys are
//! configured and pins the socket to its tenant.

mod fanout;
mod handlers;

use socketioxide::SocketIo;
use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;

pub use fanout::SocketFanout;

use crate::auth::ApiKeys;
use crate::crawl::Registry;

/// Largest WebSocket message and polling payload accepted (1 MiB).
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Largest event payload a handler accepts; above it, an error ack.
pub const MAX_EVENT_BYTES: usize = 16 * 1024;

/// Builds the Socket.IO layer and its handle.
pub fn layer() -> (SocketIoLayer, SocketIo) {
    SocketIo::builder().ws_max_message_size(MAX_MESSAGE_BYTES).max_payload(MAX_MESSAGE_BYTES as u64).build_layer()
}

/// What the handlers share.
#[derive(Clone)]
pub struct Realtime {
    pub registry: std::sync::Arc<Registry>,
    pub keys: ApiKeys,
    pub fanout: std::sync::Arc<SocketFanout>,
}

/// Registers the default namespace with its auth middleware and handlers.
pub fn register(io: &SocketIo, rt: Realtime) {
    let keys = rt.keys.clone();
    let on_connect = move |socket: socketioxide::extract::SocketRef| {
        let rt = rt.clone();
        async move { handlers::on_connect(socket, rt) }
    };
    let auth =
        move |socket: socketioxide::extract::SocketRef,
              socketioxide::extract::TryData(auth): socketioxide::extract::TryData<serde_json::Value>| {
            let keys = keys.clone();
            async move { handlers::authenticate(socket, auth.ok(), &keys) }
        };
    io.ns("/", on_connect.with(auth));
}

/// The room of a tenant's crawl list.
pub fn list_room(tenant: Option<&str>) -> String {
    match tenant {
        Some(t) => format!("crawl_list:{t}"),
        None => "crawl_list".to_string(),
    }
}
