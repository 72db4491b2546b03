//! URL normalisation: one spelling per page, so dedup sees duplicates.
//!
//! The `url` crate already lowercases scheme and host, drops default ports and
//! resolves dot segments; here we also drop the fragment and tracking
//! parameters and sort the query.

use url::Url;

/// Query parameters that only track the visitor and never change the page.
const TRACKING_PARAMS: &[&str] = &[
    "gclid",
    "gclsrc",
    "dclid",
    "fbclid",
    "msclkid",
    "yclid",
    "twclid",
    "ttclid",
    "li_fat_id",
    "igshid",
    "mc_cid",
    "mc_eid",
    "_ga",
    "_gl",
    "_hsenc",
    "_hsmi",
    "mkt_tok",
    "oly_anon_id",
    "oly_enc_id",
    "vero_id",
    "wickedid",
    "s_cid",
    "ref_src",
];

fn is_tracking(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.starts_with("utm_") || TRACKING_PARAMS.contains(&k.as_str())
}

/// Returns the canonical form of an http(s) URL, or `None` for other schemes.
pub fn normalize(url: &Url) -> Option<Url> {
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return None;
    }
    let mut u = url.clone();
    u.set_fragment(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    if u.query().is_some() {
        let mut pairs: Vec<(String, String)> =
            u.query_pairs().filter(|(k, _)| !is_tracking(k)).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        pairs.sort();
        if pairs.is_empty() {
            u.set_query(None);
        } else {
            u.query_pairs_mut().clear().extend_pairs(pairs);
        }
    }
    // A trailing dot on the host names the same host.
    if let Some(host) = u.host_str()
        && host.ends_with('.')
        && host.len() > 1
    {
        let trimmed = host.trim_end_matches('.').to_string();
        let _ = u.set_host(Some(&trimmed));
    }
    Some(u)
}

/// Resolves a link found on `base` and normalises it; `None` for links that
/// are not crawlable (mailto:, javascript:, data:, malformed).
pub fn resolve_link(base: &Url, href: &str) -> Option<Url> {
    let href = href.trim();
    if href.is_empty() || href.starts_with('#') {
        return None;
    }
    let joined = base.join(href).ok()?;
    normalize(&joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        normalize(&Url::parse(s).unwrap()).unwrap().to_string()
    }

    #[test]
    fn lowercases_scheme_and_host_and_drops_default_port_and_fragment() {
        assert_eq!(n("HTTP://Example.COM:80/A/b#frag"), "http://example.com/A/b");
        assert_eq!(n("https://example.com:443/"), "https://example.com/");
        assert_eq!(n("https://example.com:8443/x"), "https://example.com:8443/x");
    }

    #[test]
    fn drops_tracking_parameters_and_sorts_the_query() {
        assert_eq!(n("http://e.com/p?utm_source=x&b=2&gclid=1&a=1&UTM_Medium=y&fbclid=z"), "http://e.com/p?a=1&b=2");
        assert_eq!(n("http://e.com/p?utm_source=x"), "http://e.com/p");
    }

    #[test]
    fn refuses_non_http_schemes() {
        for s in ["ftp://e.com/", "javascript:alert(1)", "mailto:a@b.c", "data:text/html,hi"] {
            assert!(normalize(&Url::parse(s).unwrap()).is_none(), "{s}");
        }
    }

    #[test]
    fn resolves_relative_links() {
        let base = Url::parse("http://e.com/docs/a.html").unwrap();
        assert_eq!(resolve_link(&base, "b.html#x").unwrap().as_str(), "http://e.com/docs/b.html");
        assert_eq!(resolve_link(&base, "../c").unwrap().as_str(), "http://e.com/c");
        assert!(resolve_link(&base, "#top").is_none());
        assert!(resolve_link(&base, "mailto:x@y.z").is_none());
        assert!(resolve_link(&base, "javascript:void(0)").is_none());
    }
}
