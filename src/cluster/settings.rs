//! The cluster's settings: how an instance shares work with others.

use std::time::Duration;

/// How an instance shares work with others: crawls are a queue in
/// PostgreSQL (with a `postgres://` database), Socket.IO rooms span
/// instances through Redis (with a Redis URL).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// A readable name for this instance in logs and in the `owner` column; a
    /// unique suffix is added per process, so a restarted instance never
    /// mistakes its predecessor's crawls for its own.
    pub instance_name: String,
    /// `redis://host:port`: Socket.IO rooms span every instance using it.
    pub redis_url: Option<String>,
    /// An instance whose heartbeat is older than this is taken for dead, and
    /// its crawls are taken over. It beats five times per period.
    pub instance_ttl: Duration,
    /// Runs of one crawl (its first included) before it fails instead of
    /// being taken over again (a crawl that kills
    /// every instance it runs on must not go round for ever).
    pub max_attempts: u32,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            instance_name: default_instance_name(),
            redis_url: None,
            instance_ttl: Duration::from_secs(10),
            max_attempts: 3,
        }
    }
}

/// The host name, else `trawl`.
pub fn default_instance_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "trawl".into())
}
