//! Tenants: API keys map to tenants; every crawl belongs to the tenant that
//! started it, and each tenant sees only its own. With no keys configured the
//! service is open (one anonymous tenant), for local use.

use std::collections::HashMap;
use std::sync::Arc;

/// A key setting that cannot be used; the message names what is wrong and
/// never the key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

/// API key → tenant.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys(Arc<HashMap<String, String>>);

/// The tenant a request or socket acts for; `None` when the service is open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tenant(pub Option<String>);

impl Tenant {
    pub fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl ApiKeys {
    /// Parses `KEY=TENANT,KEY2=TENANT2` (`:` also separates key and tenant).
    pub fn parse(spec: &str) -> Result<Self, KeyError> {
        let mut map = HashMap::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (key, tenant) = entry.split_once('=').or_else(|| entry.split_once(':')).ok_or_else(|| {
                KeyError(format!("API key entry '{}…' is not KEY=TENANT", &entry[..entry.len().min(4)]))
            })?;
            let (key, tenant) = (key.trim(), tenant.trim());
            if key.len() < 8 || tenant.is_empty() {
                return Err(KeyError("API keys need at least 8 characters and a tenant name".into()));
            }
            map.insert(key.to_string(), tenant.to_string());
        }
        Ok(Self(Arc::new(map)))
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(Arc::new(pairs.into_iter().map(|(k, t)| (k.to_string(), t.to_string())).collect()))
    }

    pub fn enabled(&self) -> bool {
        !self.0.is_empty()
    }

    /// The tenant of a presented key. Every configured key is compared, in
    /// constant time per key, so timing does not reveal near misses.
    pub fn tenant_for(&self, presented: &str) -> Option<String> {
        let mut found = None;
        for (key, tenant) in self.0.iter() {
            if constant_time_eq(key.as_bytes(), presented.as_bytes()) {
                found = Some(tenant.clone());
            }
        }
        found
    }

    /// Resolves the tenant for a presented key; `Err` when keys are required
    /// and the key is missing or unknown.
    pub fn authenticate(&self, presented: Option<&str>) -> Result<Tenant, &'static str> {
        if !self.enabled() {
            return Ok(Tenant(None));
        }
        match presented {
            None | Some("") => Err("an API key is required"),
            Some(k) => self.tenant_for(k).map(|t| Tenant(Some(t))).ok_or("the API key is not valid"),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The key of whoever runs the service: with API keys set, `/metrics` and
/// `/readyz` (which tell about every tenant's crawls) need it.
#[derive(Debug, Clone, Default)]
pub struct OperatorKey(Option<Arc<str>>);

impl OperatorKey {
    pub fn parse(key: Option<&str>) -> Result<Self, KeyError> {
        match key.map(str::trim).filter(|k| !k.is_empty()) {
            None => Ok(Self(None)),
            Some(k) if k.len() < 16 => Err(KeyError("the operator key needs at least 16 characters".into())),
            Some(k) => Ok(Self(Some(Arc::from(k)))),
        }
    }
}

impl OperatorKey {
    /// Whether an operator key is configured.
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// Whether `presented` is the operator key (in constant time).
    pub fn matches(&self, presented: &str) -> bool {
        self.0.as_ref().is_some_and(|key| constant_time_eq(key.as_bytes(), presented.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_and_resolves_tenants() {
        let k = ApiKeys::parse("alpha-key-1=alpha, beta-key-22:beta").unwrap();
        assert_eq!(k.authenticate(Some("alpha-key-1")), Ok(Tenant(Some("alpha".into()))));
        assert_eq!(k.authenticate(Some("beta-key-22")), Ok(Tenant(Some("beta".into()))));
        assert!(k.authenticate(Some("nope")).is_err());
        assert!(k.authenticate(None).is_err());
        assert!(ApiKeys::parse("short=x").is_err());
        assert!(ApiKeys::parse("no-separator-here").is_err());
        assert_eq!(ApiKeys::default().authenticate(None), Ok(Tenant(None)));
    }
}
