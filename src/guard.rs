//! The address guard: this service fetches URLs its users give it, so by
//! default it refuses to reach private, loopback, link-local, multicast and
//! unspecified addresses.
//!
//! The check runs on the resolved IP inside the HTTP client's DNS resolver, so
//! it covers every connection, every redirect hop, and DNS answers that change
//! between the check and the fetch. IP literals skip DNS and are checked on the
//! URL itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

#[derive(Debug, Clone, Copy)]
pub struct AddressGuard {
    pub allow_private: bool,
}

/// Raised by the resolver and the literal check; found again in the error
/// chain to report `forbidden_address`.
#[derive(Debug, thiserror::Error)]
#[error(
    "{host} resolves to a forbidden address ({ip}); private, loopback, link-local and multicast addresses are refused (a service started with --allow-private-networks crawls them)"
)]
pub struct ForbiddenAddress {
    pub host: String,
    pub ip: IpAddr,
}

impl ForbiddenAddress {
    /// The guard's refusal somewhere in an error's chain (a client error
    /// that wraps what the resolver said).
    pub fn in_chain<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a ForbiddenAddress> {
        let mut source = Some(e);
        while let Some(s) = source {
            if let Some(f) = s.downcast_ref::<ForbiddenAddress>() {
                return Some(f);
            }
            source = s.source();
        }
        None
    }
}

/// Whether the ordinary internet can be reached at `ip`.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4s) => v4s.iter().all(|v4| is_public_v4(*v4)),
            None => is_public_v6(v6),
        },
    }
}

/// The IPv4 addresses an IPv6 address carries, where it is one of the forms
/// that reach an IPv4 host: mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`,
/// translated `::ffff:0:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, 6to4
/// `2002:aabb:ccdd::/48`, Teredo `2001:0::/32` (its server and its
/// obfuscated client; the one address twice for the other forms). Such an
/// address is as public as what it carries.
fn embedded_v4(ip: Ipv6Addr) -> Option<[Ipv4Addr; 2]> {
    let s = ip.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if let Some(mapped) = ip.to_ipv4_mapped() {
        return Some([mapped; 2]);
    }
    if s[..6] == [0; 6] && !(s[6] == 0 && s[7] <= 1) {
        return Some([v4(s[6], s[7]); 2]);
    }
    if s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0 {
        return Some([v4(s[6], s[7]); 2]);
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return Some([v4(s[6], s[7]); 2]);
    }
    if s[0] == 0x2002 {
        return Some([v4(s[1], s[2]); 2]);
    }
    if s[0] == 0x2001 && s[1] == 0 {
        return Some([v4(s[2], s[3]), v4(!s[6], !s[7])]);
    }
    None
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || o[0] == 0 // "this network"
        || (o[0] == 100 && (64..128).contains(&o[1])) // carrier-grade NAT
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (18..20).contains(&o[1])) // benchmarking
        || o[0] >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64, may embed a private v4
        || (s[0] == 0x2001 && s[1] == 0x0db8)) // documentation
}

impl AddressGuard {
    /// Checks a URL whose host is an IP literal; host names pass here and are
    /// checked when resolved.
    pub fn check_literal(&self, url: &Url) -> Result<(), ForbiddenAddress> {
        if self.allow_private {
            return Ok(());
        }
        let ip = match url.host() {
            Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
            _ => return Ok(()),
        };
        if is_public(ip) { Ok(()) } else { Err(ForbiddenAddress { host: ip.to_string(), ip }) }
    }

    /// Resolves the URL's host and refuses it when every address is forbidden;
    /// used at `POST` time to answer 400 early. DNS failures pass: the fetch
    /// reports them on the page.
    pub async fn check_resolved(&self, url: &Url) -> Result<(), ForbiddenAddress> {
        self.check_literal(url)?;
        if self.allow_private {
            return Ok(());
        }
        let Some(Host::Domain(domain)) = url.host() else {
            return Ok(());
        };
        let port = url.port_or_known_default().unwrap_or(80);
        let lookup = tokio::net::lookup_host((domain, port));
        let Ok(Ok(addrs)) = tokio::time::timeout(std::time::Duration::from_secs(3), lookup).await else {
            return Ok(());
        };
        let addrs: Vec<SocketAddr> = addrs.collect();
        match addrs.iter().find(|a| is_public(a.ip())) {
            Some(_) => Ok(()),
            None => match addrs.first() {
                Some(a) => Err(ForbiddenAddress { host: domain.to_string(), ip: a.ip() }),
                None => Ok(()),
            },
        }
    }

    /// The addresses of `host` that may be connected to. When there are
    /// some and none may, the first refused one is the error.
    pub fn allowed_addrs(&self, host: &str, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, ForbiddenAddress> {
        if self.allow_private {
            return Ok(addrs);
        }
        let first = addrs.first().copied();
        let public: Vec<SocketAddr> = addrs.into_iter().filter(|a| is_public(a.ip())).collect();
        match first {
            Some(a) if public.is_empty() => Err(ForbiddenAddress { host: host.to_string(), ip: a.ip() }),
            _ => Ok(public),
        }
    }

    /// The resolver to install in the HTTP client, or `None` when the guard is off.
    pub fn resolver(&self) -> Option<Arc<GuardedResolver>> {
        (!self.allow_private).then(|| Arc::new(GuardedResolver))
    }
}

/// A DNS resolver that hands the client only public addresses.
#[derive(Debug)]
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public = AddressGuard { allow_private: false }.allowed_addrs(&host, addrs)?;
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_private_loopback_link_local_multicast_unspecified() {
        for ip in [
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "224.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            // IPv6 forms that carry a private IPv4
            "::127.0.0.1",
            "::ffff:0:7f00:1",
            "::a9fe:a9fe",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::",
            "2001:0:4136:e378:8000:63bf:80ff:fffe", // Teredo, client 127.0.0.1
            "2001:0:a00:1::1",                      // Teredo, server 10.0.0.1
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} should be refused");
        }
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:1.1.1.1",
            "64:ff9b::101:101",
            "2002:101:101::1",
            "2001:0:4136:e378:8000:63bf:fefe:fefe", // Teredo, client 1.1.1.1
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip} should pass");
        }
    }

    #[test]
    fn literal_urls_are_checked_unless_allowed() {
        let on = AddressGuard { allow_private: false };
        let off = AddressGuard { allow_private: true };
        let u = Url::parse("http://127.0.0.1:8080/").unwrap();
        assert!(on.check_literal(&u).is_err());
        assert!(off.check_literal(&u).is_ok());
        assert!(on.check_literal(&Url::parse("http://[::1]/").unwrap()).is_err());
        assert!(on.check_literal(&Url::parse("http://example.com/").unwrap()).is_ok());
    }

    #[tokio::test]
    async fn localhost_is_refused_after_resolving() {
        let on = AddressGuard { allow_private: false };
        assert!(on.check_resolved(&Url::parse("http://localhost:1/").unwrap()).await.is_err());
        let err = GuardedResolver.resolve("localhost".parse().unwrap()).await.err().unwrap();
        assert!(err.downcast_ref::<ForbiddenAddress>().is_some());
    }
}
