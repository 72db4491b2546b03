//! One `Config`: what the service needs to run, assembled from the settings
//! each module owns (`crawl::CrawlerConfig`, `cluster::ClusterConfig`, the
//! edge's, the schedule's...). The command line that fills it in is
//! `cli::args`.

use std::net::SocketAddr;

pub use crate::cluster::ClusterConfig;
pub use crate::crawl::CrawlerConfig;

/// What the service needs to run; built from the CLI or directly by tests.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the HTTP server listens on; port 0 picks a free one (tests).
    pub bind: SocketAddr,
    /// `sqlite://path`, or a plain file path.
    pub database_url: String,
    pub crawler: CrawlerConfig,
    /// API key → tenant; empty means an open service.
    pub api_keys: crate::auth::ApiKeys,
    /// With API keys set, `/metrics` and `/readyz` need this key instead.
    pub operator_key: crate::auth::OperatorKey,
    /// Connection limits and the open mode's origin and host checks.
    pub edge: crate::api::edge::EdgeSettings,
    /// Several instances on one PostgreSQL database (and Redis).
    pub cluster: ClusterConfig,
    /// How due source refreshes are looked for.
    pub schedule: crate::sources::schedule::ScheduleSettings,
    /// How webhook deliveries are sent and retried.
    pub webhooks: crate::webhooks::WebhookSettings,
    /// Searches at once, and waiting.
    pub search: crate::search::SearchSettings,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://trawl.db".into(),
            crawler: CrawlerConfig::default(),
            api_keys: crate::auth::ApiKeys::default(),
            operator_key: crate::auth::OperatorKey::default(),
            edge: crate::api::edge::EdgeSettings::default(),
            cluster: ClusterConfig::default(),
            schedule: Default::default(),
            webhooks: Default::default(),
            search: Default::default(),
        }
    }
}

/// A configuration value that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl From<crate::auth::KeyError> for ConfigError {
    fn from(e: crate::auth::KeyError) -> Self {
        Self(e.to_string())
    }
}

impl From<crate::crawl::SettingsError> for ConfigError {
    fn from(e: crate::crawl::SettingsError) -> Self {
        Self(e.to_string())
    }
}
