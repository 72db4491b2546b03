//! Which URLs a crawl may visit: same host by default, then include/exclude
//! globs on the path.

use globset::{Glob, GlobSet, GlobSetBuilder};
use url::Url;

#[derive(Debug, Clone)]
pub struct Scope {
    /// Hosts (with port) the crawl stays on when `same_domain` is set.
    hosts: Vec<(String, Option<u16>)>,
    same_domain: bool,
    /// With `same_domain`, hosts below the start host are in scope too
    /// (`docs.example.com` for `example.com`).
    subdomains: bool,
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

/// A glob that does not compile; the message names which one.
#[derive(Debug, thiserror::Error)]
#[error("{field}[{index}]: invalid glob '{glob}': {reason}")]
pub struct GlobError {
    pub field: &'static str,
    pub index: usize,
    pub glob: String,
    pub reason: String,
}

fn build(field: &'static str, globs: &[String]) -> Result<Option<GlobSet>, GlobError> {
    if globs.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for (index, g) in globs.iter().enumerate() {
        let glob =
            Glob::new(g).map_err(|e| GlobError { field, index, glob: g.clone(), reason: e.kind().to_string() })?;
        b.add(glob);
    }
    b.build().map(Some).map_err(|e| GlobError { field, index: 0, glob: String::new(), reason: e.to_string() })
}

/// Host plus explicit port; default ports of http and https count as none.
fn host_key(url: &Url) -> (String, Option<u16>) {
    (url.host_str().unwrap_or_default().to_string(), url.port())
}

impl Scope {
    pub fn new(start: &Url, same_domain: bool, include: &[String], exclude: &[String]) -> Result<Self, GlobError> {
        Ok(Self {
            hosts: vec![host_key(start)],
            same_domain,
            subdomains: false,
            include: build("include", include)?,
            exclude: build("exclude", exclude)?,
        })
    }

    /// Admits the hosts below the start host too.
    pub fn with_subdomains(mut self, subdomains: bool) -> Self {
        self.subdomains = subdomains;
        self
    }

    /// Same host as the start URL (or where it redirected to), unless
    /// `sameDomain` is off. http and https of one host count as one.
    pub fn host_allowed(&self, url: &Url) -> bool {
        !self.same_domain || self.hosts.contains(&host_key(url)) || self.subdomain(url)
    }

    fn subdomain(&self, url: &Url) -> bool {
        let Some(host) = url.host_str().filter(|_| self.subdomains) else { return false };
        self.hosts.iter().any(|(h, _)| host.strip_suffix(h.as_str()).is_some_and(|rest| rest.ends_with('.')))
    }

    /// Admits the host of `url` too (the start URL's redirect target).
    pub fn add_host_of(&mut self, url: &Url) {
        let key = host_key(url);
        if !self.hosts.contains(&key) {
            self.hosts.push(key);
        }
    }

    /// Host rule plus the path globs; what discovered links must pass.
    pub fn allows(&self, url: &Url) -> bool {
        if !self.host_allowed(url) {
            return false;
        }
        let path = url.path();
        if let Some(inc) = &self.include
            && !inc.is_match(path)
        {
            return false;
        }
        if let Some(exc) = &self.exclude
            && exc.is_match(path)
        {
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn subdomains_are_in_scope_only_when_asked() {
        let s = Scope::new(&u("http://example.com/"), true, &[], &[]).unwrap();
        assert!(!s.allows(&u("http://docs.example.com/")));
        let s = s.with_subdomains(true);
        assert!(s.allows(&u("http://docs.example.com/")));
        assert!(s.allows(&u("http://a.b.example.com/")));
        assert!(!s.allows(&u("http://badexample.com/")));
        assert!(!s.allows(&u("http://example.com.evil.org/")));
    }

    #[test]
    fn same_host_by_default() {
        let s = Scope::new(&u("http://a.com/x"), true, &[], &[]).unwrap();
        assert!(s.allows(&u("http://a.com/y")));
        assert!(!s.allows(&u("http://b.com/y")));
        assert!(!s.allows(&u("http://a.com:81/y")));
        let any = Scope::new(&u("http://a.com/x"), false, &[], &[]).unwrap();
        assert!(any.allows(&u("http://b.com/y")));
    }

    #[test]
    fn include_and_exclude_globs_match_the_path() {
        let s = Scope::new(&u("http://a.com/"), true, &["/docs/**".into()], &["/docs/internal/**".into()]).unwrap();
        assert!(s.allows(&u("http://a.com/docs/a/b.html?q=1")));
        assert!(!s.allows(&u("http://a.com/blog/x")));
        assert!(!s.allows(&u("http://a.com/docs/internal/x")));
    }

    #[test]
    fn a_bad_glob_names_itself() {
        let e = Scope::new(&u("http://a.com/"), true, &[], &["ok".into(), "[".into()]).unwrap_err();
        assert_eq!(e.field, "exclude");
        assert_eq!(e.index, 1);
    }
}
