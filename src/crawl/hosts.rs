//! Politeness per host: at most N requests in flight, and requests spaced by
//! the politeness delay (raised by robots.txt `Crawl-delay`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::sync::LockExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use url::Url;

pub struct Hosts {
    per_host: usize,
    map: Mutex<HashMap<String, Arc<Host>>>,
}

struct Host {
    slots: Arc<Semaphore>,
    /// When the next request to this host may start.
    next_at: Mutex<Instant>,
}

impl Hosts {
    pub fn new(per_host: usize) -> Self {
        Self { per_host: per_host.max(1), map: Mutex::new(HashMap::new()) }
    }

    /// Waits for a slot and for the host's next turn. Cancel-safe: callers
    /// race it against the crawl's token.
    pub async fn acquire(&self, url: &Url, delay: Duration) -> Option<OwnedSemaphorePermit> {
        let key = format!("{}:{}", url.host_str().unwrap_or(""), url.port_or_known_default().unwrap_or(0));
        let host = {
            let mut map = self.map.locked();
            map.entry(key)
                .or_insert_with(|| {
                    Arc::new(Host {
                        slots: Arc::new(Semaphore::new(self.per_host)),
                        next_at: Mutex::new(Instant::now()),
                    })
                })
                .clone()
        };
        let permit = host.slots.clone().acquire_owned().await.ok()?;
        if !delay.is_zero() {
            let at = {
                let mut next = host.next_at.locked();
                let at = (*next).max(Instant::now());
                *next = at + delay;
                at
            };
            tokio::time::sleep_until(at).await;
        }
        Some(permit)
    }
}
