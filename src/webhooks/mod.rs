//! Webhooks: a crawl that names `webhook: {url, headers?, events?}` has its
//! story posted to that URL: `crawl.started`, `crawl.page` (pages stored, in
//! batches), and exactly one of `crawl.completed`, `crawl.failed`,
//! `crawl.cancelled`. Every delivery is kept in the store until it is
//! sent (so retries survive a restart), carries an id for idempotency,
//! goes out after the crawl's earlier ones, and is signed with the tenant's
//! secret:
//!
//! `Trawl-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
//!
//! A receiver recomputes the HMAC over the raw body and refuses a `t`
//! older than five minutes (the replay window); each try is signed anew.
//!
//! - `follow`: the per-crawl task that turns a crawl's progress into
//!   deliveries.
//! - `deliver`: the service loop that sends them, through the address
//!   guard, with retries under one backoff policy.

pub mod deliver;
pub mod follow;

use std::collections::BTreeMap;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What a crawl request's `webhook` says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookSpec {
    /// Where deliveries are posted (http or https; it passes the address
    /// guard like a crawl's URL).
    #[schema(max_length = 2048)]
    pub url: String,
    /// Extra headers for the receiver (e.g. its own `Authorization`). Kept
    /// to retry with, never shown back: listings show them redacted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Only these events (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<WebhookEvent>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum WebhookEvent {
    #[serde(rename = "crawl.started")]
    Started,
    #[serde(rename = "crawl.page")]
    Page,
    #[serde(rename = "crawl.completed")]
    Completed,
    #[serde(rename = "crawl.failed")]
    Failed,
    #[serde(rename = "crawl.cancelled")]
    Cancelled,
}

impl WebhookEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "crawl.started",
            Self::Page => "crawl.page",
            Self::Completed => "crawl.completed",
            Self::Failed => "crawl.failed",
            Self::Cancelled => "crawl.cancelled",
        }
    }
}

/// Headers trawl sets itself, which a webhook may not name.
const RESERVED: [&str; 7] =
    ["content-type", "content-length", "host", "user-agent", "trawl-signature", "trawl-event", "trawl-delivery"];
const MAX_HEADERS: usize = 20;
const MAX_HEADER_BYTES: usize = 4096;

impl WebhookSpec {
    /// Refuses what could never be delivered; the address guard is checked
    /// where the crawl starts, and again at every delivery.
    pub fn validate(&self) -> Result<url::Url, String> {
        let url = url::Url::parse(self.url.trim()).map_err(|e| format!("webhook.url is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err("webhook.url must be an http or https URL with a host".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("webhook.url must not carry credentials; use webhook.headers".into());
        }
        if self.headers.len() > MAX_HEADERS {
            return Err(format!("webhook.headers holds at most {MAX_HEADERS} headers"));
        }
        for (name, value) in &self.headers {
            let lower = name.to_ascii_lowercase();
            if RESERVED.contains(&lower.as_str()) {
                return Err(format!("webhook.headers may not set {name}: trawl sets it"));
            }
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(value).is_err()
                || name.len() + value.len() > MAX_HEADER_BYTES
            {
                return Err(format!(
                    "webhook.headers has an invalid header '{}'",
                    name.chars().take(64).collect::<String>()
                ));
            }
        }
        if self.events.as_ref().is_some_and(Vec::is_empty) {
            return Err("webhook.events must name at least one event (or be left out for all)".into());
        }
        Ok(url)
    }

    pub fn wants(&self, event: WebhookEvent) -> bool {
        self.events.as_ref().is_none_or(|e| e.contains(&event))
    }

    /// The spec as listings show it: header values redacted.
    pub fn redacted(&self) -> Self {
        Self { headers: self.headers.keys().map(|k| (k.clone(), "[redacted]".to_string())).collect(), ..self.clone() }
    }
}

/// Delivery settings, owned here and assembled by `config`.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Tries per delivery before it is given up (`failed`).
    pub max_attempts: u32,
    /// The wait before the first retry; it doubles up to `max_retry`.
    pub first_retry: Duration,
    pub max_retry: Duration,
    /// How long one try may take.
    pub timeout: Duration,
    /// Pages per `crawl.page` delivery, at most.
    pub page_batch: u32,
    /// How often a crawl's new pages are gathered into a delivery.
    pub page_every: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            first_retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(600),
            timeout: Duration::from_secs(10),
            page_batch: 100,
            page_every: Duration::from_secs(1),
        }
    }
}

/// The signature header's value for `body` signed at `t` (unix seconds).
pub fn signature(secret: &str, t: i64, body: &str) -> String {
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// A new signing secret: 256 bits from the OS's CSPRNG.
pub fn new_secret() -> String {
    format!("whsec_{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// The tenant's key among the secrets (`""` for the open service).
pub fn tenant_key(tenant: Option<&str>) -> &str {
    tenant.unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_documented_hmac() {
        // HMAC-SHA256("key", "1700000000.{}"), computed with Python's hmac module.
        assert_eq!(
            signature("key", 1_700_000_000, "{}"),
            "t=1700000000,v1=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
    }

    #[test]
    fn reserved_and_broken_headers_are_refused() {
        let spec = |h: &[(&str, &str)]| WebhookSpec {
            url: "https://hooks.example.com/trawl".into(),
            headers: h.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            events: None,
        };
        assert!(spec(&[("Authorization", "Bearer x")]).validate().is_ok());
        assert!(spec(&[("Trawl-Signature", "x")]).validate().is_err());
        assert!(spec(&[("bad header", "x")]).validate().is_err());
        assert!(spec(&[("x", "line\nbreak")]).validate().is_err());
        let mut s = spec(&[]);
        s.url = "ftp://example.com/".into();
        assert!(s.validate().is_err());
        s.url = "https://user:pw@example.com/".into();
        assert!(s.validate().is_err());
        assert_eq!(spec(&[("Authorization", "Bearer x")]).redacted().headers["Authorization"], "[redacted]");
    }
}
