//! Finding the URLs of a crawl: sitemaps (urlsets, indexes, gzip), link lists
//! (llms.txt and other .txt/.md files) and the choice of crawl type for `auto`.

use std::io::Read;

use quick_xml::events::Event;
use url::Url;

use crate::crawl::request::CrawlType;
use crate::urls;

/// A gzipped sitemap may inflate to at most this much (the sitemap protocol's
/// own limit is 50 MB uncompressed).
pub const MAX_SITEMAP_BYTES: usize = 50 * 1024 * 1024;

#[derive(Debug, PartialEq)]
pub enum Sitemap {
    Urls(Vec<String>),
    Index(Vec<String>),
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("not a sitemap: {0}")]
    NotSitemap(String),
    #[error("could not decompress the sitemap: {0}")]
    Gzip(String),
}

/// Inflates gzip (by its magic bytes, whatever the URL says), bounded.
pub fn maybe_gunzip(bytes: &[u8]) -> Result<Vec<u8>, DiscoverError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .take(MAX_SITEMAP_BYTES as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| DiscoverError::Gzip(e.to_string()))?;
        if out.len() > MAX_SITEMAP_BYTES {
            return Err(DiscoverError::Gzip(format!("inflates past {MAX_SITEMAP_BYTES} bytes")));
        }
        Ok(out)
    } else {
        Ok(bytes.to_vec())
    }
}

/// Parses a sitemap `urlset` or `sitemapindex` document.
pub fn parse_sitemap(bytes: &[u8]) -> Result<Sitemap, DiscoverError> {
    let raw = maybe_gunzip(bytes)?;
    let text = String::from_utf8_lossy(&raw);
    let mut reader = quick_xml::Reader::from_str(&text);
    reader.config_mut().trim_text(true);
    let mut root: Option<String> = None;
    let mut in_loc = false;
    let mut loc = String::new();
    let mut locs = Vec::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                let name = e.local_name().as_ref().to_ascii_lowercase();
                if root.is_none() {
                    root = Some(name.clone());
                }
                if name == "loc" {
                    in_loc = true;
                    loc.clear();
                }
            }
            Ok(Event::End(e)) => {
                if e.local_name().as_ref().eq_ignore_ascii_case("loc") {
                    in_loc = false;
                    let l = loc.trim();
                    if !l.is_empty() {
                        locs.push(l.to_string());
                    }
                }
            }
            Ok(Event::Text(t)) if in_loc => loc.push_str(&t.xml10_content()),
            Ok(Event::CData(t)) if in_loc => loc.push_str(&t.into_inner()),
            Ok(Event::GeneralRef(r)) if in_loc => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    loc.push(c);
                } else {
                    loc.push_str(match r.xml10_content().as_ref() {
                        "amp" => "&",
                        "lt" => "<",
                        "gt" => ">",
                        "quot" => "\"",
                        "apos" => "'",
                        _ => "",
                    });
                }
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => return Err(DiscoverError::NotSitemap(e.to_string())),
        }
    }
    match root.as_deref() {
        Some("urlset") => Ok(Sitemap::Urls(locs)),
        Some("sitemapindex") => Ok(Sitemap::Index(locs)),
        Some(other) => Err(DiscoverError::NotSitemap(format!("root element <{other}>"))),
        None => Err(DiscoverError::NotSitemap("no XML root element".into())),
    }
}

/// Whether a (possibly gzipped) body looks like a sitemap document (for
/// `auto`). Only its first 2 KiB are read, inflated if need be.
pub fn looks_like_sitemap(bytes: &[u8]) -> bool {
    const HEAD: usize = 2048;
    let mut head = Vec::with_capacity(HEAD);
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let _ = flate2::read::GzDecoder::new(bytes).take(HEAD as u64).read_to_end(&mut head);
    } else {
        head.extend_from_slice(&bytes[..bytes.len().min(HEAD)]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    head.contains("<urlset") || head.contains("<sitemapindex")
}

/// The links of an llms.txt-style list: markdown links, autolinks and bare
/// URLs, resolved against the list's URL, in order, without repeats.
pub fn parse_link_list(text: &str, base: &Url) -> Vec<Url> {
    let mut out: Vec<Url> = Vec::new();
    let mut push = |raw: &str| {
        let raw = raw.trim().trim_end_matches(['.', ',', ';', ')']);
        if let Some(u) = urls::resolve_link(base, raw)
            && !out.contains(&u)
        {
            out.push(u);
        }
    };
    for line in text.lines() {
        let mut rest = line;
        let mut found = false;
        // [text](url "title")
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].split_whitespace().next().unwrap_or("");
            push(target.trim_start_matches('<').trim_end_matches('>'));
            found = true;
            rest = &after[end + 1..];
        }
        if found {
            continue;
        }
        // <https://...> and bare https://...
        for word in line.split_whitespace() {
            let w = word.trim_start_matches(['<', '(', '-', '*']).trim_end_matches('>');
            if w.starts_with("http://") || w.starts_with("https://") {
                push(w);
            }
        }
    }
    out
}

/// Whether a .txt/.md URL names a full-text dump (llms-full.txt) that is
/// stored as a page rather than followed.
pub fn is_full_text(url: &Url) -> bool {
    let file = url.path().rsplit('/').next().unwrap_or("").to_ascii_lowercase();
    file.contains("llms-full") || file.contains("llms_full")
}

/// The crawl type the URL alone gives away, if any.
pub fn type_from_url(url: &Url) -> Option<CrawlType> {
    let path = url.path().to_ascii_lowercase();
    let file = path.rsplit('/').next().unwrap_or("");
    if file.ends_with(".xml") || file.ends_with(".xml.gz") {
        if file.contains("sitemap") {
            return Some(CrawlType::Sitemap);
        }
    } else if file.ends_with(".txt") || file.ends_with(".md") || file.ends_with(".markdown") {
        return Some(CrawlType::LlmsTxt);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn parses_urlsets_and_indexes_with_entities() {
        let xml = br#"<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
            <url><loc> http://a.com/1?x=1&amp;y=2 </loc></url><url><loc><![CDATA[http://a.com/2]]></loc></url></urlset>"#;
        assert_eq!(
            parse_sitemap(xml).unwrap(),
            Sitemap::Urls(vec!["http://a.com/1?x=1&y=2".into(), "http://a.com/2".into()])
        );
        let idx = br#"<sitemapindex><sitemap><loc>http://a.com/s1.xml</loc></sitemap></sitemapindex>"#;
        assert_eq!(parse_sitemap(idx).unwrap(), Sitemap::Index(vec!["http://a.com/s1.xml".into()]));
        assert!(parse_sitemap(b"<html><body>no</body></html>").is_err());
    }

    #[test]
    fn gunzips_by_magic_bytes() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"<urlset><url><loc>http://a.com/</loc></url></urlset>").unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(parse_sitemap(&gz).unwrap(), Sitemap::Urls(vec!["http://a.com/".into()]));
        assert!(looks_like_sitemap(&gz));
        assert!(!looks_like_sitemap(b"<html><body>no</body></html>"));
    }

    #[test]
    fn link_lists_yield_markdown_and_bare_links_in_order() {
        let base = Url::parse("http://a.com/llms.txt").unwrap();
        let text = "# Title\n> summary\n- [One](/docs/1.html): first\n- [Two](http://a.com/docs/2.html \"t\")\nSee https://b.com/x.\n- [One again](/docs/1.html#frag)\n";
        let got: Vec<String> = parse_link_list(text, &base).into_iter().map(|u| u.to_string()).collect();
        assert_eq!(got, vec!["http://a.com/docs/1.html", "http://a.com/docs/2.html", "https://b.com/x"]);
    }

    #[test]
    fn type_from_url_spots_sitemaps_and_text_lists() {
        let t = |s: &str| type_from_url(&Url::parse(s).unwrap());
        assert_eq!(t("http://a.com/sitemap.xml"), Some(CrawlType::Sitemap));
        assert_eq!(t("http://a.com/sitemap-index.xml.gz"), Some(CrawlType::Sitemap));
        assert_eq!(t("http://a.com/llms.txt"), Some(CrawlType::LlmsTxt));
        assert_eq!(t("http://a.com/docs/"), None);
        assert_eq!(t("http://a.com/feed.xml"), None);
    }
}
