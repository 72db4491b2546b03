//! The crawl engine: a registry of running crawls, one orchestrator task per
//! crawl, and the pieces it drives (frontier, scope, robots, discovery, fetch).

pub mod discover;
pub mod fetch;
pub mod hosts;
pub mod login;
pub mod registry;
pub mod request;
pub mod robots;
mod run;
pub mod scope;
mod settings;

pub use registry::{Registry, StartError};
pub use request::{CrawlRequest, CrawlSpec, CrawlType, Render};
pub use run::Engine;
pub use settings::{CrawlerConfig, SettingsError};
