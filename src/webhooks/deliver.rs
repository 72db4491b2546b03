//! The sender: claims due deliveries from the store (each crawl's oldest
//! unsent one, so a crawl's deliveries arrive in order), posts them signed,
//! and records the outcome: delivered, a retry later (the wait doubles, as
//! [`Backoff`] says), or given up after `max_attempts`. Every post goes
//! through the address guard: the URL is checked when the crawl starts and
//! again at each try (its host may resolve elsewhere by then), and the
//! client resolves names through the guard and follows no redirect. Also
//! announces, every few seconds, the end of crawls that ended with nobody
//! following them (stopped in the queue, or on an instance that died).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::follow::{Hook, Hooks, announce_end};
use super::{WebhookSpec, new_secret, signature, tenant_key};
use crate::backoff::Backoff;
use crate::guard::AddressGuard;
use crate::store::{Delivery, DeliveryOutcome, DynStore};
use crate::sync::LockExt;

/// Deliveries claimed per round; at most one of each crawl.
const CLAIM: u32 = 32;
/// How often the sender looks for due deliveries when not woken.
const IDLE: Duration = Duration::from_millis(500);
/// How often ended crawls are checked for an end never announced, and how
/// long after its end a crawl is left to its follower first.
const RECOVER_EVERY: Duration = Duration::from_secs(5);
const FOLLOWER_GRACE: Duration = Duration::from_secs(30);

pub struct Sender {
    store: DynStore,
    client: reqwest::Client,
    guard: AddressGuard,
    hooks: Hooks,
    /// Tenants' signing secrets, read once: they never change, and on
    /// SQLite each read-or-make is a write on the one writer connection.
    secrets: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

#[derive(Debug, thiserror::Error)]
#[error("could not build the webhook HTTP client: {0}")]
pub struct ClientError(#[from] reqwest::Error);

impl Sender {
    pub fn new(store: DynStore, guard: AddressGuard, hooks: Hooks) -> Result<Self, ClientError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("trawl-webhooks/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(hooks.settings.timeout)
            .connect_timeout(hooks.settings.timeout.min(Duration::from_secs(5)));
        if let Some(resolver) = guard.resolver() {
            builder = builder.dns_resolver(resolver);
        }
        Ok(Self { store, client: builder.build()?, guard, hooks, secrets: Default::default() })
    }

    /// Sends until `stop`. A delivery in flight at shutdown stays leased
    /// until its lease ends, then goes out again: receivers dedupe by id.
    pub async fn run(self, stop: CancellationToken) {
        let mut recovered_at: Option<tokio::time::Instant> = None;
        loop {
            if recovered_at.is_none_or(|t| t.elapsed() >= RECOVER_EVERY) {
                self.recover().await;
                recovered_at = Some(tokio::time::Instant::now());
            }
            let now = Utc::now();
            let lease = now + chrono::Duration::from_std(self.hooks.settings.timeout * 3).unwrap_or_default();
            let due = match self.store.claim_deliveries(now, lease, CLAIM).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "webhooks: could not claim deliveries");
                    Vec::new()
                }
            };
            if due.is_empty() {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = self.hooks.wake.notified() => {}
                    _ = tokio::time::sleep(IDLE) => {}
                }
                continue;
            }
            futures::future::join_all(due.into_iter().map(|d| self.send(d))).await;
            if stop.is_cancelled() {
                return;
            }
        }
    }

    async fn send(&self, d: Delivery) {
        let outcome = match self.post(&d).await {
            Ok(()) => DeliveryOutcome::Delivered,
            Err(error) if d.attempts + 1 >= self.hooks.settings.max_attempts => {
                tracing::warn!(delivery = %d.id, event = %d.event, %error, attempts = d.attempts + 1, "webhook given up");
                DeliveryOutcome::Failed { error }
            }
            Err(error) => {
                let settings = &self.hooks.settings;
                let wait = Backoff::exponential(settings.first_retry, settings.max_retry).nth(d.attempts);
                tracing::info!(delivery = %d.id, event = %d.event, %error, retry_in_ms = wait.as_millis() as u64, "webhook failed; retrying");
                DeliveryOutcome::Retry { at: Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default(), error }
            }
        };
        if let Err(e) = self.store.finish_delivery(d.seq, &outcome).await {
            // The lease runs out and the delivery goes out again.
            tracing::warn!(delivery = %d.id, error = %e, "webhooks: could not record a delivery's outcome");
        }
    }

    /// One try. Errors name what went wrong but never the URL, which may
    /// carry the receiver's token.
    async fn post(&self, d: &Delivery) -> Result<(), String> {
        let url = url::Url::parse(&d.url).map_err(|e| format!("invalid URL: {e}"))?;
        self.guard.check_resolved(&url).await.map_err(|e| e.to_string())?;
        let secret = self.secret(tenant_key(d.tenant.as_deref())).await?;
        let headers: BTreeMap<String, String> = serde_json::from_str(&d.headers).unwrap_or_default();
        let mut req = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("trawl-event", &d.event)
            .header("trawl-delivery", &d.id)
            .header("trawl-signature", signature(&secret, Utc::now().timestamp(), &d.body));
        for (name, value) in &headers {
            req = req.header(name, value);
        }
        let resp = req.body(d.body.clone()).send().await.map_err(|e| format!("request failed: {}", e.without_url()))?;
        let status = resp.status();
        if status.is_success() { Ok(()) } else { Err(format!("the receiver answered {status}")) }
    }

    async fn secret(&self, tenant: &str) -> Result<String, String> {
        if let Some(s) = self.secrets.locked().get(tenant) {
            return Ok(s.clone());
        }
        let secret =
            self.store.webhook_secret(tenant, &new_secret()).await.map_err(|e| format!("no signing secret: {e}"))?;
        self.secrets.locked().insert(tenant.to_string(), secret.clone());
        Ok(secret)
    }

    /// Announces the end of crawls that ended with nobody following them.
    async fn recover(&self) {
        let before = Utc::now() - chrono::Duration::from_std(FOLLOWER_GRACE).unwrap_or_default();
        let ended = match self.store.unannounced_crawls(before, 100).await {
            Ok(ended) => ended,
            Err(e) => {
                tracing::warn!(error = %e, "webhooks: could not look for unannounced crawl ends");
                return;
            }
        };
        for crawl in ended {
            let spec = serde_json::from_str::<serde_json::Value>(&crawl.request)
                .ok()
                .and_then(|r| serde_json::from_value::<WebhookSpec>(r["webhook"].clone()).ok());
            let Some(spec) = spec else { continue };
            let hook = Hook { crawl_id: crawl.id, tenant: crawl.tenant, spec };
            if let Err(e) = announce_end(&self.store, &hook, &self.hooks).await {
                tracing::warn!(error = %e, "webhooks: could not announce a crawl's end");
            }
        }
    }
}
