//! What a crawl starts from: its type when `auto`, the pages of its
//! sitemaps, the links of an llms.txt.

use std::collections::{HashSet, VecDeque};

use url::Url;

use crate::crawl::discover::{self, Sitemap};
use crate::crawl::fetch::Fetched;
use crate::crawl::request::CrawlType;
use crate::crawl::scope::Scope;
use crate::urls;

use super::*;

pub(super) fn type_name(t: CrawlType) -> &'static str {
    match t {
        CrawlType::Auto | CrawlType::Page => "page",
        CrawlType::Sitemap => "sitemap",
        CrawlType::LlmsTxt => "llms_txt",
        CrawlType::Recursive => "recursive",
    }
}

/// `auto`: the URL's name first, else a look at what the URL serves.
pub(super) async fn detect_type(ctx: &Ctx, url: &Url) -> CrawlType {
    if let Some(t) = discover::type_from_url(url) {
        return t;
    }
    if ctx.crawl.spec.respect_robots && !ctx.robots_for(url).await.allowed(url) {
        return CrawlType::Recursive;
    }
    match ctx.get(url, &|_| true).await {
        Ok(f) if (200..300).contains(&f.status) => {
            let mime = f.mime().unwrap_or_default();
            let body = f.body.as_deref().unwrap_or_default();
            if (mime.contains("xml") || mime.is_empty() || body.starts_with(&[0x1f, 0x8b]))
                && discover::looks_like_sitemap(body)
            {
                CrawlType::Sitemap
            } else if mime == "text/plain" || mime == "text/markdown" {
                CrawlType::LlmsTxt
            } else {
                CrawlType::Recursive
            }
        }
        _ => CrawlType::Recursive,
    }
}

/// Fetches a discovery document (sitemap, link list) with the crawl's guard;
/// fails with a message that names the URL.
pub(super) async fn fetch_document(ctx: &Ctx, url: &Url, scope: &Scope) -> Result<Fetched, String> {
    let f = ctx.get(url, &|u| scope.host_allowed(u)).await.map_err(|e| format!("{url}: {}: {e}", e.code()))?;
    if !(200..300).contains(&f.status) {
        return Err(format!("{url}: HTTP {}", f.status));
    }
    Ok(f)
}

/// Every page URL of a sitemap, following indexes breadth-first.
pub(super) async fn sitemap_urls(ctx: &Ctx, root: &Url) -> Result<Vec<Url>, String> {
    let scope = &ctx.crawl.spec.scope;
    let mut queue = VecDeque::from([root.clone()]);
    let mut seen_docs: HashSet<Url> = HashSet::from([root.clone()]);
    let mut out = Vec::new();
    let mut docs = 0;
    while let Some(doc) = queue.pop_front() {
        docs += 1;
        if docs > MAX_SITEMAP_DOCS {
            tracing::warn!("sitemap index too large; reading the first {MAX_SITEMAP_DOCS} documents");
            break;
        }
        let parsed = match fetch_document(ctx, &doc, scope).await {
            Ok(f) => {
                let body = f.body.unwrap_or_default();
                let pool = ctx.engine.pool.clone();
                pool.run(&ctx.crawl.tracker, move || discover::parse_sitemap(&body))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| format!("{doc}: {e}")))
            }
            Err(e) => Err(e),
        };
        match parsed {
            Ok(Sitemap::Urls(locs)) => {
                out.extend(locs.iter().filter_map(|l| Url::parse(l).ok()).filter_map(|u| urls::normalize(&u)))
            }
            Ok(Sitemap::Index(locs)) => {
                for u in locs.iter().filter_map(|l| Url::parse(l).ok()).filter_map(|u| urls::normalize(&u)) {
                    if scope.host_allowed(&u) && seen_docs.insert(u.clone()) {
                        queue.push_back(u);
                    }
                }
            }
            // The root sitemap must work; a broken child costs only its URLs.
            Err(e) if docs == 1 => return Err(format!("sitemap unreadable: {e}")),
            Err(e) => tracing::warn!(error = %e, "skipping an unreadable child sitemap"),
        }
    }
    Ok(out)
}

/// The links of an llms.txt-style list.
pub(super) async fn link_list(ctx: &Ctx, url: &Url) -> Result<Vec<Url>, String> {
    let f = fetch_document(ctx, url, &ctx.crawl.spec.scope).await.map_err(|e| format!("link list unreadable: {e}"))?;
    // Decoding and scanning up to a page's size of text is pool work.
    ctx.engine
        .pool
        .run(&ctx.crawl.tracker, move || discover::parse_link_list(&f.text(), &f.final_url))
        .await
        .map_err(|e| e.to_string())
}
