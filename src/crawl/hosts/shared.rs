//! A host's politeness across instances: a lease per request in flight,
//! at most N per host, and the host's next turn, kept where the instances
//! meet: Redis when they share one, else PostgreSQL.
//!
//! A lease carries an expiry longer than any request can take, so the
//! leases of an instance that died lapse by themselves. Waiting for a lease
//! polls with a short backoff (a few milliseconds, up to 100). When the
//! shared store cannot be reached, a request goes on with this process's
//! own limit (a warning says so): politeness degrades, crawls do not stall.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Mutex;
use tokio_util::task::TaskTracker;

use crate::sync::LockExt;

/// Where the instances share their hosts' leases.
#[derive(Clone)]
pub struct SharedHosts {
    backend: Arc<Backend>,
    /// How long a lease holds: longer than any request.
    ttl: Duration,
    /// Failures of the shared store, for the warning's rate.
    failures: Arc<AtomicU64>,
    /// After a failure the shared store is let be for [`RESTING`]: each
    /// request must not wait out another timeout.
    down_until: Arc<std::sync::Mutex<Option<tokio::time::Instant>>>,
}

/// How long one ask of the shared store may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the shared store is let be after it failed.
const RESTING: Duration = Duration::from_secs(5);

enum Backend {
    Redis(Box<Redis>),
    Postgres(PgPool),
}

struct Redis {
    client: redis::Client,
    /// Made on first use, and anew after a failure.
    conn: Mutex<Option<redis::aio::MultiplexedConnection>>,
}

/// A lease on a host slot across instances, given back on drop by a task
/// of the crawl that holds it.
pub struct Lease {
    held: Option<(Arc<Backend>, String, String, TaskTracker)>,
}

/// How long a wait for a free lease sleeps between asks, at most.
const MAX_POLL: Duration = Duration::from_millis(100);

/// Takes a lease if the host has fewer than `limit`, and the host's next
/// turn: answers the milliseconds until that turn, or -1 without a lease.
const ACQUIRE_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return -1 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
local delay = tonumber(ARGV[4])
if delay <= 0 then return 0 end
local at = math.max(tonumber(redis.call('GET', KEYS[2]) or '0'), now)
redis.call('SET', KEYS[2], at + delay, 'PX', at + delay - now + 1000)
return at - now
";

impl SharedHosts {
    /// Leases in Redis at `url`. The connection is made on first use.
    pub fn redis(url: &str, ttl: Duration) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        Ok(Self::with(Backend::Redis(Box::new(Redis { client, conn: Mutex::new(None) })), ttl))
    }

    /// Leases in PostgreSQL (`host_leases`, `trawl_host_lease`).
    pub fn postgres(pool: PgPool, ttl: Duration) -> Self {
        Self::with(Backend::Postgres(pool), ttl)
    }

    fn with(backend: Backend, ttl: Duration) -> Self {
        Self { backend: Arc::new(backend), ttl, failures: Default::default(), down_until: Default::default() }
    }

    /// Waits for a lease on `host` (one of at most `limit`) and for the
    /// host's next turn, `delay` after the last one of any instance.
    pub(super) async fn lease(&self, host: &str, limit: usize, delay: Duration, tracker: &TaskTracker) -> Lease {
        let id = uuid::Uuid::now_v7().to_string();
        let mut pause = Duration::from_millis(2);
        loop {
            if self.down_until.locked().is_some_and(|t| tokio::time::Instant::now() < t) {
                return Lease { held: None };
            }
            let asked = tokio::time::timeout(ASK_TIMEOUT, self.backend.try_lease(host, &id, limit, self.ttl, delay))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {ASK_TIMEOUT:?}")));
            match asked {
                Ok(Some(wait)) => {
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    return Lease { held: Some((self.backend.clone(), host.to_string(), id, tracker.clone())) };
                }
                Ok(None) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_POLL);
                }
                Err(e) => {
                    *self.down_until.locked() = Some(tokio::time::Instant::now() + RESTING);
                    let n = self.failures.fetch_add(1, Ordering::Relaxed);
                    if n == 0 || (n + 1).is_power_of_two() {
                        tracing::warn!(
                            error = %e,
                            failures = n + 1,
                            "the shared host leases cannot be reached; for {RESTING:?}, this instance's own politeness applies"
                        );
                    }
                    return Lease { held: None };
                }
            }
        }
    }
}

impl Backend {
    /// `Some(wait)` with a lease taken, `None` when the host is full.
    async fn try_lease(
        &self,
        host: &str,
        id: &str,
        limit: usize,
        ttl: Duration,
        delay: Duration,
    ) -> Result<Option<Duration>, String> {
        let ms = match self {
            Backend::Redis(r) => {
                let mut conn = r.connection().await?;
                let r: Result<i64, _> = redis::cmd("EVAL")
                    .arg(ACQUIRE_LUA)
                    .arg(2)
                    .arg(format!("trawl:host:{host}:leases"))
                    .arg(format!("trawl:host:{host}:next"))
                    .arg(limit)
                    .arg(ttl.as_millis() as u64)
                    .arg(id)
                    .arg(delay.as_millis() as u64)
                    .query_async(&mut conn)
                    .await;
                r.map_err(|e| self.redis_failed(e))?
            }
            Backend::Postgres(pool) => {
                let r: i32 = sqlx::query_scalar("SELECT trawl_host_lease($1, $2::uuid, $3, $4, $5)")
                    .bind(host)
                    .bind(id)
                    .bind(limit as i32)
                    .bind(ttl.as_millis() as i32)
                    .bind(delay.as_millis() as i32)
                    .fetch_one(pool)
                    .await
                    .map_err(|e| e.to_string())?;
                i64::from(r)
            }
        };
        Ok((ms >= 0).then(|| Duration::from_millis(ms as u64)))
    }

    async fn release(&self, host: &str, id: &str) -> Result<(), String> {
        match self {
            Backend::Redis(r) => {
                let mut conn = r.connection().await?;
                let r: Result<i64, _> =
                    redis::cmd("ZREM").arg(format!("trawl:host:{host}:leases")).arg(id).query_async(&mut conn).await;
                r.map(drop).map_err(|e| self.redis_failed(e))
            }
            Backend::Postgres(pool) => sqlx::query("DELETE FROM host_leases WHERE lease = $1::uuid")
                .bind(id)
                .execute(pool)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
        }
    }

    /// A broken connection is made anew next time.
    fn redis_failed(&self, e: redis::RedisError) -> String {
        if let Backend::Redis(r) = self
            && (e.is_io_error() || e.is_connection_dropped())
            && let Ok(mut c) = r.conn.try_lock()
        {
            *c = None;
        }
        e.to_string()
    }
}

impl Redis {
    async fn connection(&self) -> Result<redis::aio::MultiplexedConnection, String> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = conn.as_ref() {
            return Ok(c.clone());
        }
        let c = self.client.get_multiplexed_async_connection().await.map_err(|e| e.to_string())?;
        *conn = Some(c.clone());
        Ok(c)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some((backend, host, id, tracker)) = self.held.take() else { return };
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        // On the crawl's tracker: the crawl ends once its leases are back.
        tracker.spawn_on(
            async move {
                if let Err(e) = backend.release(&host, &id).await {
                    tracing::debug!(error = %e, "a host lease was not given back; it lapses by itself");
                }
            },
            &rt,
        );
    }
}
