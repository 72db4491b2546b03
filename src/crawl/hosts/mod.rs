//! Politeness per host, shared by every crawl of the process: at most N
//! requests in flight to a host, and requests spaced by the politeness
//! delay (raised by robots.txt `Crawl-delay`), whichever crawls make them.
//!
//! A free slot goes to the crawls waiting for the host in turn, so two
//! crawls of one host each get about half of it, whatever their own
//! concurrency. With instances that share Redis or PostgreSQL
//! (`shared.rs`), a slot here also takes a lease there: the limit and the
//! delay hold for the host across instances.

mod shared;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use url::Url;

use crate::sync::LockExt;
pub use shared::{Lease, SharedHosts};

pub struct Hosts {
    per_host: usize,
    map: Mutex<HashMap<String, Arc<Host>>>,
    /// Acquires so far: every [`SWEEP_EVERY`]th forgets idle hosts.
    acquires: std::sync::atomic::AtomicU64,
    shared: Option<SharedHosts>,
}

/// How often the map of hosts is swept of idle ones, in acquires.
const SWEEP_EVERY: u64 = 1024;

struct Host {
    key: String,
    state: Mutex<HostState>,
    /// When the next request to this host may start (in this process).
    next_at: Mutex<Instant>,
}

#[derive(Default)]
struct HostState {
    in_flight: usize,
    /// Who waits for a slot, by crawl; a freed slot goes to the crawl at
    /// the front, which then moves to the back.
    waiting: VecDeque<(Arc<str>, VecDeque<oneshot::Sender<Slot>>)>,
}

/// A request slot of one host, given back on drop (to the next crawl in
/// turn, if one waits).
pub struct Slot {
    host: Option<Arc<Host>>,
}

/// The right to send one request to a host: a slot here, and the lease
/// of instances sharing Redis or PostgreSQL.
pub struct HostPermit {
    _lease: Option<Lease>,
    _slot: Slot,
}

impl Hosts {
    pub fn new(per_host: usize, shared: Option<SharedHosts>) -> Self {
        Self { per_host: per_host.max(1), map: Mutex::new(HashMap::new()), acquires: Default::default(), shared }
    }

    /// The host's key: host and port.
    fn key(url: &Url) -> String {
        format!("{}:{}", url.host_str().unwrap_or(""), url.port_or_known_default().unwrap_or(0))
    }

    /// Waits for a slot, in turn with the other crawls waiting for the
    /// host, then for the host's next turn (and the shared lease, if
    /// instances share one). Cancel-safe: callers race it against the
    /// crawl's token.
    pub async fn acquire(&self, crawl: &Arc<str>, tracker: &TaskTracker, url: &Url, delay: Duration) -> HostPermit {
        let key = Self::key(url);
        let host = {
            let mut map = self.map.locked();
            if self.acquires.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
                sweep(&mut map);
            }
            map.entry(key.clone())
                .or_insert_with(|| Arc::new(Host { key, state: Mutex::default(), next_at: Mutex::new(Instant::now()) }))
                .clone()
        };
        let slot = {
            let mut state = host.state.locked();
            if state.in_flight < self.per_host && state.waiting.is_empty() {
                state.in_flight += 1;
                Ok(Slot { host: Some(host.clone()) })
            } else {
                let (tx, rx) = oneshot::channel();
                match state.waiting.iter_mut().find(|(c, _)| c == crawl) {
                    Some((_, queue)) => queue.push_back(tx),
                    None => state.waiting.push_back((crawl.clone(), VecDeque::from([tx]))),
                }
                Err(rx)
            }
        };
        let slot = match slot {
            Ok(slot) => slot,
            // A slot handed over is never lost: dropped with the receiver
            // (a cancelled wait), it is given back at once. A sender is
            // dropped unsent only with the host, which this wait holds: the
            // `Err` arm cannot run, and a slot that counts nothing is harmless.
            Err(rx) => rx.await.unwrap_or(Slot { host: None }),
        };
        let lease = match &self.shared {
            Some(shared) => Some(shared.lease(&host.key, self.per_host, delay, tracker).await),
            None => None,
        };
        if lease.is_none() && !delay.is_zero() {
            let at = {
                let mut next = host.next_at.locked();
                let at = (*next).max(Instant::now());
                *next = at + delay;
                at
            };
            tokio::time::sleep_until(at).await;
        }
        drop(host);
        HostPermit { _lease: lease, _slot: slot }
    }
}

/// Forgets the hosts nobody holds or waits for (only the map has them)
/// whose delay has passed: a long-lived process crawls many hosts.
fn sweep(map: &mut HashMap<String, Arc<Host>>) {
    let now = Instant::now();
    map.retain(|_, h| Arc::strong_count(h) > 1 || *h.next_at.locked() > now);
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(host) = self.host.take() else { return };
        let mut state = host.state.locked();
        loop {
            let Some((crawl, mut queue)) = state.waiting.pop_front() else {
                state.in_flight -= 1;
                break;
            };
            let next = queue.pop_front();
            if !queue.is_empty() {
                state.waiting.push_back((crawl, queue));
            }
            let Some(tx) = next else { continue };
            // The slot moves on to the waiter; a waiter gone (its crawl
            // stopped) sends it back, to the next one in turn.
            match tx.send(Slot { host: Some(host.clone()) }) {
                Ok(()) => break,
                Err(mut back) => back.host = None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> Url {
        Url::parse("http://a.com/x").unwrap()
    }

    #[tokio::test]
    async fn a_hosts_slots_go_to_the_crawls_waiting_in_turn() {
        let hosts = Arc::new(Hosts::new(2, None));
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let first = hosts.acquire(&a, &TaskTracker::new(), &url(), Duration::ZERO).await;
        let second = hosts.acquire(&a, &TaskTracker::new(), &url(), Duration::ZERO).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = tokio::task::JoinSet::new();
        // Crawl a asks for ten more slots before crawl b asks for any.
        for (crawl, n) in [(&a, 10), (&b, 10)] {
            for _ in 0..n {
                let (hosts, crawl, order) = (hosts.clone(), crawl.clone(), order.clone());
                waiters.spawn(async move {
                    let p = hosts.acquire(&crawl, &TaskTracker::new(), &url(), Duration::ZERO).await;
                    order.locked().push(crawl.to_string());
                    tokio::task::yield_now().await;
                    drop(p);
                });
                tokio::task::yield_now().await;
            }
        }
        drop((first, second));
        while waiters.join_next().await.is_some() {}
        // First come, first served would give a its ten, then b its ten.
        let order = order.locked().join("");
        let a_first = order[..12].matches('a').count();
        assert!((5..=7).contains(&a_first), "{order}");
    }

    #[tokio::test]
    async fn idle_hosts_are_forgotten_and_busy_ones_kept() {
        let hosts = Hosts::new(1, None);
        let a: Arc<str> = "a".into();
        let held = hosts.acquire(&a, &TaskTracker::new(), &url(), Duration::ZERO).await;
        drop(hosts.acquire(&a, &TaskTracker::new(), &Url::parse("http://b.com/").unwrap(), Duration::ZERO).await);
        sweep(&mut hosts.map.locked());
        assert_eq!(hosts.map.locked().keys().cloned().collect::<Vec<_>>(), vec!["a.com:80".to_string()]);
        drop(held);
        sweep(&mut hosts.map.locked());
        assert!(hosts.map.locked().is_empty());
    }

    #[tokio::test]
    async fn a_cancelled_wait_gives_its_slot_to_the_next() {
        let hosts = Arc::new(Hosts::new(1, None));
        let a: Arc<str> = "a".into();
        let held = hosts.acquire(&a, &TaskTracker::new(), &url(), Duration::ZERO).await;
        let h = hosts.clone();
        let a2 = a.clone();
        let waiting = tokio::spawn(async move { h.acquire(&a2, &TaskTracker::new(), &url(), Duration::ZERO).await });
        tokio::task::yield_now().await;
        waiting.abort();
        let _ = waiting.await;
        drop(held);
        let again = tokio::time::timeout(
            Duration::from_secs(1),
            hosts.acquire(&a, &TaskTracker::new(), &url(), Duration::ZERO),
        )
        .await;
        assert!(again.is_ok(), "the slot was not lost with the cancelled wait");
    }

    #[tokio::test]
    async fn requests_to_a_host_are_spaced_by_the_delay_across_crawls() {
        let hosts = Hosts::new(4, None);
        let start = Instant::now();
        for crawl in ["a", "b", "c"] {
            drop(hosts.acquire(&Arc::from(crawl), &TaskTracker::new(), &url(), Duration::from_millis(40)).await);
        }
        assert!(start.elapsed() >= Duration::from_millis(80), "{:?}", start.elapsed());
    }
}
