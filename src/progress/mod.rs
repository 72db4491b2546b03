//! The state of a crawl as the wire contract names it, and the live handle that
//! keeps it current.
//!
//! `CrawlStatus` is the one shape every surface shows (HTTP, the store,
//! Socket.IO and SSE). `Progress` wraps a `watch` channel: writers update
//! it in place, readers always see the latest state, and nobody waits on a slow
//! reader. Two rules live here so that no caller can break them: a terminal
//! crawl never changes again, and `percentage` never decreases.
//!
//! - `status`: `CrawlStatus` and its parts, and `Progress`.
//! - `events`: the events of a crawl and the `Reporter` that numbers,
//!   throttles and fans them out.

mod events;
mod status;

pub use events::*;
pub use status::*;
