//! Sites behind a login: a crawl's `headers`, `cookies` and `basicAuth`.
//!
//! They are checked once, when the request is validated, and become one set
//! of header values marked sensitive (hyper never logs those). They go with
//! every request the crawl makes to its own hosts, robots.txt, sitemaps,
//! llms.txt, pages and redirect hops alike, and with the requests a rendered
//! page makes to them; never to another host, and never from an `https`
//! start over plain `http`. A value is never shown: its `Debug` is
//! `[redacted]`, a source's settings never keep it, and the crawl's stored
//! request loses it when the crawl ends (it is kept only so that another
//! instance can resume the crawl).

use std::collections::BTreeMap;

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, COOKIE, HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use url::Url;

/// Headers and cookies a request may carry, at most, each.
pub const MAX_ENTRIES: usize = 50;
/// Longest header or cookie value, in bytes.
pub const MAX_VALUE_BYTES: usize = 8 * 1024;
/// All of a login's values together, in bytes.
const MAX_TOTAL_BYTES: usize = 32 * 1024;

/// What the HTTP client sets itself, or what would change how a request is
/// framed or where it goes: never taken from a request.
const RESERVED: [&str; 15] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "expect",
    "proxy-authorization",
    "proxy-connection",
    "accept-encoding",
    "if-none-match",
    "if-modified-since",
    "range",
];

/// A value that must not be shown: serialised as it is (to be stored for a
/// resume), printed as `[redacted]`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

/// `basicAuth` of a crawl request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// Without `:`.
    pub username: String,
    #[schema(value_type = String)]
    pub password: Secret,
}

/// One crawl's login, ready to send.
#[derive(Clone)]
pub struct Login {
    headers: HeaderMap,
    /// The start URL's host: the hosts the login goes to are it,
    host: String,
    /// and with `allowSubdomains`, the hosts below it.
    subdomains: bool,
    /// The start URL is `https`: the login never travels in the clear.
    https_only: bool,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.keys().map(HeaderName::as_str).collect();
        f.debug_struct("Login").field("headers", &names).field("host", &self.host).finish_non_exhaustive()
    }
}

/// A login that cannot be sent as given.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LoginError(String);

impl Login {
    /// Checks a request's login fields. `None` when it has none.
    pub fn new(
        headers: &BTreeMap<String, Secret>,
        cookies: &BTreeMap<String, Secret>,
        basic: Option<&BasicAuth>,
        start: &Url,
        subdomains: bool,
    ) -> Result<Option<Self>, LoginError> {
        if headers.is_empty() && cookies.is_empty() && basic.is_none() {
            return Ok(None);
        }
        let bad = |m: String| Err(LoginError(m));
        if headers.len() > MAX_ENTRIES || cookies.len() > MAX_ENTRIES {
            return bad(format!("at most {MAX_ENTRIES} headers and {MAX_ENTRIES} cookies"));
        }
        let total: usize = headers.iter().chain(cookies).map(|(k, v)| k.len() + v.0.len()).sum();
        if total > MAX_TOTAL_BYTES {
            return bad(format!("headers and cookies must be at most {MAX_TOTAL_BYTES} bytes in all"));
        }
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let Ok(parsed) = HeaderName::from_bytes(name.trim().as_bytes()) else {
                return bad(format!("headers: '{name}' is not a valid header name"));
            };
            if RESERVED.contains(&parsed.as_str()) {
                return bad(format!("headers: '{name}' is set by the crawler and cannot be given"));
            }
            if (parsed == COOKIE && !cookies.is_empty()) || (parsed == AUTHORIZATION && basic.is_some()) {
                let other = if parsed == COOKIE { "cookies" } else { "basicAuth" };
                return bad(format!("headers: give '{name}' or {other}, not both"));
            }
            map.append(parsed, sensitive(name, &value.0)?);
        }
        if !cookies.is_empty() {
            let mut line = String::new();
            for (name, value) in cookies {
                if name.is_empty() || !name.bytes().all(is_token_byte) {
                    return bad(format!("cookies: '{name}' is not a valid cookie name"));
                }
                if !value.0.bytes().all(is_cookie_octet) {
                    return bad(format!(
                        "cookies: the value of '{name}' has a character a cookie cannot hold (space, quote, comma, semicolon, backslash or a control character)"
                    ));
                }
                if !line.is_empty() {
                    line.push_str("; ");
                }
                line.push_str(name);
                line.push('=');
                line.push_str(&value.0);
            }
            map.insert(COOKIE, sensitive("Cookie", &line)?);
        }
        if let Some(b) = basic {
            if b.username.contains(':') || b.username.chars().any(char::is_control) {
                return bad("basicAuth: the username cannot hold ':' or control characters".into());
            }
            if b.password.0.chars().any(char::is_control) {
                return bad("basicAuth: the password cannot hold control characters".into());
            }
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", b.username, b.password.0));
            map.insert(AUTHORIZATION, sensitive("Authorization", &format!("Basic {token}"))?);
        }
        let host = start.host_str().unwrap_or_default().to_ascii_lowercase();
        Ok(Some(Self { headers: map, host, subdomains, https_only: start.scheme() == "https" }))
    }

    /// Whether a request to `url` carries the login: a URL on the crawl's
    /// hosts, over `https` when the crawl started there.
    pub fn applies_to(&self, url: &Url) -> bool {
        if self.https_only && url.scheme() != "https" {
            return false;
        }
        let Some(host) = url.host_str() else { return false };
        let host = host.to_ascii_lowercase();
        host == self.host
            || (self.subdomains
                && host.len() > self.host.len()
                && host.ends_with(&self.host)
                && host.as_bytes()[host.len() - self.host.len() - 1] == b'.')
    }

    /// The header values, each marked sensitive.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The headers for `url`, if it is on the crawl's hosts.
    pub fn headers_for(&self, url: &Url) -> Option<&HeaderMap> {
        self.applies_to(url).then_some(&self.headers)
    }
}

fn sensitive(name: &str, value: &str) -> Result<HeaderValue, LoginError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(LoginError(format!("headers: the value of '{name}' is longer than {MAX_VALUE_BYTES} bytes")));
    }
    let mut v = HeaderValue::from_str(value).map_err(|_| {
        LoginError(format!("headers: the value of '{name}' has a character a header cannot hold (a line break?)"))
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// RFC 9110 `tchar`: what a cookie name may hold.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 6265 `cookie-octet`.
fn is_cookie_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, Secret> {
        pairs.iter().map(|(k, v)| (k.to_string(), Secret::from(*v))).collect()
    }

    fn start(u: &str) -> Url {
        Url::parse(u).unwrap()
    }

    #[test]
    fn a_login_goes_only_to_the_crawls_hosts_and_never_in_the_clear_after_https() {
        let none = BTreeMap::new();
        let l =
            Login::new(&map(&[("X-Token", "t")]), &none, None, &start("https://docs.a.com/"), false).unwrap().unwrap();
        assert!(l.applies_to(&start("https://docs.a.com/x")));
        assert!(l.applies_to(&start("https://DOCS.a.com:8443/x")));
        assert!(!l.applies_to(&start("http://docs.a.com/x")));
        assert!(!l.applies_to(&start("https://a.com/x")));
        assert!(!l.applies_to(&start("https://evil-docs.a.com/x")));
        assert!(!l.applies_to(&start("https://x.docs.a.com/x")));
        let sub = Login::new(&map(&[("X-Token", "t")]), &none, None, &start("http://a.com/"), true).unwrap().unwrap();
        assert!(sub.applies_to(&start("http://x.a.com/")));
        assert!(sub.applies_to(&start("https://a.com/")));
        assert!(!sub.applies_to(&start("http://xa.com/")));
    }

    #[test]
    fn headers_cookies_and_basic_auth_become_sensitive_header_values() {
        let basic = BasicAuth { username: "ann".into(), password: "s3cret".into() };
        let l = Login::new(
            &map(&[("X-Api-Key", "k1")]),
            &map(&[("session", "abc"), ("lang", "en")]),
            Some(&basic),
            &start("http://a.com/"),
            false,
        )
        .unwrap()
        .unwrap();
        let h = l.headers();
        assert_eq!(h["x-api-key"], "k1");
        assert_eq!(h["cookie"], "lang=en; session=abc");
        assert_eq!(h["authorization"], "Basic YW5uOnMzY3JldA==");
        assert!(h.values().all(HeaderValue::is_sensitive));
        assert!(!format!("{l:?}").contains("s3cret") && !format!("{l:?}").contains("abc"));
        assert_eq!(format!("{:?}", basic), r#"BasicAuth { username: "ann", password: [redacted] }"#);
    }

    #[test]
    fn a_login_that_cannot_be_sent_is_refused_with_the_reason() {
        let none = BTreeMap::new();
        let s = start("http://a.com/");
        let basic = BasicAuth { username: "a".into(), password: "b".into() };
        for (headers, cookies, basic, says) in [
            (map(&[("Bad Name", "v")]), none.clone(), None, "valid header name"),
            (map(&[("X-A", "line\nbreak")]), none.clone(), None, "line break"),
            (map(&[("Host", "other")]), none.clone(), None, "set by the crawler"),
            (map(&[("Cookie", "a=b")]), map(&[("a", "b")]), None, "not both"),
            (map(&[("Authorization", "x")]), none.clone(), Some(&basic), "not both"),
            (none.clone(), map(&[("a b", "c")]), None, "cookie name"),
            (none.clone(), map(&[("a", "b;c")]), None, "cannot hold"),
        ] {
            let e = Login::new(&headers, &cookies, basic, &s, false).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
        let long = "x".repeat(MAX_VALUE_BYTES + 1);
        assert!(Login::new(&map(&[("X-A", &long)]), &none, None, &s, false).is_err());
        let colon = BasicAuth { username: "a:b".into(), password: "c".into() };
        assert!(Login::new(&none, &none, Some(&colon), &s, false).is_err());
        assert!(Login::new(&none, &none, None, &s, false).unwrap().is_none());
    }
}
