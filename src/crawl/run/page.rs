//! One page: fetched (or rendered), then processed, or kept as the source
//! had it.

use std::sync::atomic::Ordering;

use chrono::Utc;
use sha2::Digest;
use url::Url;

use crate::crawl::fetch::{Fetched, Rendered, Validators, http::decode_charset};
use crate::crawl::request::Render;
use crate::crawl::scope::Scope;
use crate::process::{self};
use crate::store::{Change, Kept, PageRecord, PageStatus, PriorPage};
use crate::urls;

use super::*;

/// How a fetched body is treated.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Html,
    Text,
    Markdown,
    Pdf,
}

impl Kind {
    pub(super) fn of(mime: Option<&str>) -> Option<Kind> {
        match mime {
            None | Some("") | Some("text/html") | Some("application/xhtml+xml") => Some(Kind::Html),
            Some("text/plain") => Some(Kind::Text),
            Some("text/markdown") | Some("text/x-markdown") => Some(Kind::Markdown),
            Some("application/pdf") | Some("application/x-pdf") => Some(Kind::Pdf),
            _ => None,
        }
    }
}

pub(super) fn record(url: &Url, depth: u32, status: PageStatus) -> PageRecord {
    PageRecord {
        url: url.to_string(),
        status,
        depth,
        fetched_at: Utc::now(),
        source: url.host_str().map(str::to_string),
        ..PageRecord::default()
    }
}

/// A page's bytes as the pipeline takes them, from HTTP or from Chromium.
pub(super) struct PageBytes {
    pub(super) final_url: Url,
    pub(super) status: u16,
    pub(super) content_type: Option<String>,
    pub(super) bytes: Option<bytes::Bytes>,
    pub(super) rendered: bool,
    pub(super) validators: Validators,
    /// For a `304` in a crawl that follows links: where the kept copy leads.
    pub(super) kept_links: Vec<Url>,
}

impl PageBytes {
    pub(super) fn fetched(f: Fetched) -> Self {
        PageBytes {
            final_url: f.final_url,
            status: f.status,
            content_type: f.content_type,
            bytes: f.body,
            rendered: false,
            validators: f.validators,
            kept_links: Vec::new(),
        }
    }

    pub(super) fn rendered(r: Rendered) -> Self {
        let mime = r.mime.unwrap_or_else(|| "text/html".into());
        PageBytes {
            final_url: r.final_url,
            status: r.status.unwrap_or(200),
            // The DOM comes back as a Rust string: UTF-8, whatever the page declared.
            content_type: Some(format!("{mime}; charset=utf-8")),
            bytes: Some(bytes::Bytes::from(r.html)),
            rendered: true,
            validators: Validators::default(),
            kept_links: Vec::new(),
        }
    }

    pub(super) fn mime(&self) -> Option<String> {
        self.content_type.as_deref().map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
    }
}

/// What the pool made of a page.
pub(super) enum PageOutcome {
    Page {
        page: Box<process::Processed>,
        /// `markdown` or `text`.
        format: &'static str,
        /// The crawl's keyed hash of `digest`, for duplicates within the crawl.
        content_hash: u64,
        /// The SHA-256 of the markdown (hex), stored: what the next crawl of
        /// the source compares.
        digest: String,
        /// The SHA-256 of the page's bytes (hex), stored: the same bytes
        /// next time need no extraction.
        body_digest: String,
        /// Vectors made on the pool.
        embedded: u64,
        /// The source keeps this very content: nothing was chunked or embedded.
        unchanged: bool,
    },
    /// The page's bytes (their SHA-256 here) are those of the source's copy;
    /// where the page leads, when the crawl follows links.
    SameBody(String, Vec<Url>),
    /// `auto` mode: the HTML is a shell for scripts, for this reason.
    NeedsBrowser(&'static str),
    /// A PDF without text (skipped), or one that could not be read (failed).
    Unusable(process::pdf::PdfError),
    Cancelled,
}

pub(super) fn failed(mut r: PageRecord, error: PageError) -> (PageRecord, PageResult) {
    r.status = PageStatus::Failed;
    r.error = Some(error.recorded());
    (r, PageResult::default())
}

pub(super) async fn crawl_page(ctx: &Ctx, url: Url, depth: u32, seed: bool, scope: &Scope) -> (PageRecord, PageResult) {
    let spec = &ctx.crawl.spec;
    let mut robots_delay = None;
    if spec.respect_robots {
        let rules = ctx.robots_for(&url).await;
        if !rules.allowed(&url) {
            let mut r = record(&url, depth, PageStatus::Skipped);
            r.error = Some(rules.reason());
            return (r, PageResult::default());
        }
        robots_delay = rules.crawl_delay();
    }
    let _host = ctx.host_turn(&url, delay(ctx, robots_delay)).await;
    let r = record(&url, depth, PageStatus::Crawled);
    let first = if spec.render == Render::Browser {
        render(ctx, &url, seed, scope).await
    } else {
        fetch(ctx, &url, seed, scope).await
    };
    let mut body = match first {
        // A rendered document that is not HTML (text, markdown) is read as served.
        Ok(b) if b.rendered && !matches!(Kind::of(b.mime().as_deref()), Some(Kind::Html) | None) => {
            fetch(ctx, &url, seed, scope).await
        }
        other => other,
    };
    loop {
        let b = match body {
            Ok(b) => b,
            Err(e) => return failed(r, e),
        };
        let detect = spec.render == Render::Auto && !b.rendered;
        match process_body(ctx, r.clone(), b, detect).await {
            Ok(done) => return done,
            Err(NeedsBrowser(reason)) => {
                tracing::debug!(%url, reason, "rendering in Chromium");
                body = render(ctx, &url, seed, scope).await;
            }
        }
    }
}

/// The last segment of a URL's path, decoded: a document's name when it
/// has no title of its own.
fn file_name(url: &Url) -> Option<String> {
    let last = url.path_segments()?.rfind(|s| !s.is_empty())?;
    let name = percent_encoding::percent_decode_str(last).decode_utf8_lossy().trim().to_string();
    (!name.is_empty()).then_some(name)
}

/// The politeness delay before a request to a host, raised by its
/// robots.txt `Crawl-delay` up to the configured cap.
fn delay(ctx: &Ctx, robots: Option<std::time::Duration>) -> std::time::Duration {
    let config = &ctx.engine.config;
    robots.map_or(config.politeness_delay, |d| config.politeness_delay.max(d.min(config.max_crawl_delay)))
}

/// A page's links, its canonical URL among them when it names another.
fn links_and_canonical(html: &str, page_url: &Url) -> Vec<Url> {
    let (mut links, canonical) = process::links_of(html, page_url);
    links.extend(canonical.filter(|c| c != page_url && !links.contains(c)));
    links
}

/// A page already done that a shorter path reached since: its links again,
/// for the walk to follow from there (its outcome is stored already).
/// Politely, over HTTP; a `304` gives the links of the source's copy.
/// Capped as a page's links are.
pub(super) async fn links_again(ctx: &Ctx, url: &Url, scope: &Scope) -> PageResult {
    let mut again = links_again_uncapped(ctx, url, scope).await;
    cap_links(&mut again.links, ctx.engine.config.max_links_per_page);
    again
}

async fn links_again_uncapped(ctx: &Ctx, url: &Url, scope: &Scope) -> PageResult {
    let engine = &ctx.engine;
    let robots_delay = match ctx.crawl.spec.respect_robots {
        true => ctx.robots_for(url).await.crawl_delay(),
        false => None,
    };
    let _host = ctx.host_turn(url, delay(ctx, robots_delay)).await;
    let Ok(b) = fetch(ctx, url, false, scope).await else { return PageResult::default() };
    if !b.kept_links.is_empty() {
        return PageResult { final_url: Some(b.final_url), links: b.kept_links };
    }
    let html = matches!(Kind::of(b.mime().as_deref()), Some(Kind::Html));
    let (Some(bytes), true) = (b.bytes, html) else { return PageResult::default() };
    let (final_url, content_type) = (b.final_url.clone(), b.content_type);
    let links = engine
        .pool
        .run(&ctx.crawl.tracker, move || {
            links_and_canonical(&decode_charset(&bytes, content_type.as_deref()), &final_url)
        })
        .await
        .unwrap_or_default();
    PageResult { final_url: Some(b.final_url), links }
}

/// Why a page failed. Stored (and shown) as `code: message`; the codes are
/// the contract's and each is written once, here or at its source.
#[derive(Debug, thiserror::Error)]
pub(super) enum PageError {
    #[error(transparent)]
    Fetch(#[from] crate::crawl::fetch::http::FetchError),
    #[error(transparent)]
    Render(#[from] crate::crawl::fetch::browser::RenderError),
    #[error("redirect to {0} leaves the crawl's scope")]
    OutOfScope(Url),
    #[error(transparent)]
    Forbidden(#[from] crate::guard::ForbiddenAddress),
    #[error("the crawl was stopped")]
    Cancelled,
    #[error("HTTP {0}")]
    Status(u16),
    #[error("{0}")]
    Processing(String),
    #[error(transparent)]
    Pdf(crate::process::pdf::PdfError),
}

impl PageError {
    pub(super) fn code(&self) -> &'static str {
        match self {
            PageError::Fetch(e) => e.code(),
            PageError::Render(e) => e.code(),
            PageError::OutOfScope(_) => "redirect_out_of_scope",
            PageError::Forbidden(_) => "forbidden_address",
            PageError::Cancelled => "cancelled",
            PageError::Status(_) => "http_status",
            PageError::Processing(_) => "processing_failed",
            PageError::Pdf(e) => e.code(),
        }
    }

    /// As the page's `error` keeps it.
    fn recorded(&self) -> String {
        match self {
            PageError::Status(status) => {
                let reason =
                    reqwest::StatusCode::from_u16(*status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
                format!("http_status: HTTP {status} {reason}").trim_end().to_string()
            }
            other => format!("{}: {other}", other.code()),
        }
    }
}

/// `auto` mode: the HTTP page is a shell for scripts, for this reason.
pub(super) struct NeedsBrowser(pub(super) &'static str);

/// Over HTTP, following redirects the crawl's scope allows.
pub(super) async fn fetch(ctx: &Ctx, url: &Url, seed: bool, scope: &Scope) -> Result<PageBytes, PageError> {
    // The start URL may redirect anywhere the guard allows; other pages stay in scope.
    let in_scope = |u: &Url| seed || scope.allows(u);
    let want = |status: u16, mime: Option<&str>| (200..300).contains(&status) && Kind::of(mime).is_some();
    // The source's copy is asked after by its validators: a 304 keeps it as
    // it is. A crawl that follows links needs the copy's stored links then.
    let follow = ctx.follow.load(Ordering::Relaxed);
    let prior = ctx.crawl.prior(url.as_str()).filter(|p| p.content_hash.is_some() && (p.has_links || !follow));
    let validators =
        prior.map(|p| Validators { etag: p.etag.clone(), last_modified: p.last_modified.clone() }).unwrap_or_default();
    let get = |validators: Validators| async move {
        ctx.engine
            .fetcher
            .fetch_if_changed(url, ctx.crawl.spec.login.as_deref(), &in_scope, &want, &validators)
            .await
            .map(PageBytes::fetched)
            .map_err(PageError::from)
    };
    let mut body = get(validators.clone()).await?;
    if let Some(prior) = prior.filter(|_| body.status == 304 && follow) {
        match ctx.engine.store.page_links(prior.row).await {
            Ok(Some(links)) => body.kept_links = links.iter().filter_map(|l| Url::parse(l).ok()).collect(),
            // The copy was replaced meanwhile (another crawl of the source),
            // or cannot be read: the page is asked for whole.
            _ => body = get(Validators::default()).await?,
        }
    }
    Ok(body)
}

/// In Chromium, at most `browserConcurrency` pages of this crawl at once. The
/// browser follows redirects by itself, so the page it ends on is checked
/// against the scope and the address guard afterwards.
pub(super) async fn render(ctx: &Ctx, url: &Url, seed: bool, scope: &Scope) -> Result<PageBytes, PageError> {
    let engine = &ctx.engine;
    let _slot = ctx.crawl.browser_slots.acquire().await.map_err(|_| PageError::Cancelled)?;
    let rendered = engine
        .renderer
        .render(
            url,
            ctx.crawl.spec.wait_until,
            ctx.crawl.spec.login.as_deref(),
            &ctx.crawl.tracker,
            engine.config.browser.page_timeout,
        )
        .await?;
    if rendered.final_url != *url {
        if !seed && !scope.allows(&rendered.final_url) {
            return Err(PageError::OutOfScope(rendered.final_url));
        }
        engine.fetcher.guard().check_resolved(&rendered.final_url).await?;
    }
    Ok(PageBytes::rendered(rendered))
}

/// Status and type checks, then the pool: main content, markdown, chunks,
/// code, vectors. With `detect` (`auto` mode) the pool first decides whether
/// the page needs a browser, and says so instead of processing it.
pub(super) async fn process_body(
    ctx: &Ctx,
    mut r: PageRecord,
    body: PageBytes,
    detect: bool,
) -> Result<(PageRecord, PageResult), NeedsBrowser> {
    let engine = &ctx.engine;
    r.http_status = Some(body.status);
    r.content_type = body.content_type.clone();
    r.rendered = body.rendered;
    if body.final_url.as_str() != r.url {
        r.final_url = Some(body.final_url.to_string());
    }
    r.etag = body.validators.etag.clone();
    r.last_modified = body.validators.last_modified.clone();
    if body.status == 304
        && let Some(prior) = ctx.crawl.prior(&r.url).cloned()
    {
        return Ok(kept_as_is(ctx, r, prior, body.final_url, body.kept_links));
    }
    if !(200..300).contains(&body.status) {
        return Ok(failed(r, PageError::Status(body.status)));
    }
    let mime = body.mime();
    let Some(kind) = Kind::of(mime.as_deref()) else {
        r.status = PageStatus::Skipped;
        r.error = Some(format!("unsupported_content_type: {} is not HTML, text or PDF", mime.unwrap_or_default()));
        return Ok((r, PageResult::default()));
    };
    let bytes = body.bytes.unwrap_or_default();
    r.bytes = Some(bytes.len() as u64);
    let content_type = body.content_type;
    let page_url = body.final_url.clone();
    let options = ctx.crawl.spec.process;
    let token = ctx.crawl.token.clone();
    let embedder = engine.embedder.clone();
    let hasher = ctx.crawl.hasher.clone();
    let detect = detect && matches!(kind, Kind::Html);
    let prior = ctx.crawl.prior(&r.url).cloned();
    let prior_hash = prior.as_ref().and_then(|p| p.content_hash.clone());
    let prior_title = prior.as_ref().and_then(|p| p.title.clone());
    let has_prior = prior.is_some();
    // The very bytes the source's copy was made from make the same copy:
    // nothing to extract (links only, for a crawl that follows them). Not
    // for a page `auto` may still send to the browser: the same shell can
    // show other content.
    let follow = ctx.follow.load(Ordering::Relaxed);
    let prior_body = prior.as_ref().and_then(|p| p.body_hash.clone()).filter(|_| !detect);
    let pdf_settings = engine.config.pdf.clone();
    let processed = engine
        .pool
        .run(&ctx.crawl.tracker, move || {
            // Queued work of a stopped crawl ends at once; its result would be dropped.
            if token.is_cancelled() {
                return PageOutcome::Cancelled;
            }
            let body_digest = format!("{:x}", sha2::Sha256::digest(&bytes));
            let text = match kind {
                Kind::Pdf => String::new(),
                _ => decode_charset(&bytes, content_type.as_deref()),
            };
            if prior_body.as_deref() == Some(body_digest.as_str()) {
                let links = match kind {
                    Kind::Html if follow => links_and_canonical(&text, &page_url),
                    _ => Vec::new(),
                };
                return PageOutcome::SameBody(body_digest, links);
            }
            if detect && let Some(reason) = crate::crawl::fetch::detect::needs_browser(&text) {
                return PageOutcome::NeedsBrowser(reason);
            }
            let (extracted, format) = match kind {
                Kind::Html => (process::extract_html(&text, &page_url), "markdown"),
                Kind::Markdown => (process::extract_text(&text), "markdown"),
                Kind::Text => (process::extract_text(&text), "text"),
                Kind::Pdf => match process::pdf::read(&bytes, &pdf_settings, &|| token.is_cancelled()) {
                    Ok(pdf) => (process::extract_pdf(&pdf, file_name(&page_url)), "markdown"),
                    Err(process::pdf::PdfError::Cancelled) => return PageOutcome::Cancelled,
                    Err(e) => return PageOutcome::Unusable(e),
                },
            };
            // Hashing a large page is CPU work too: here, not on the async threads.
            let digest = format!("{:x}", sha2::Sha256::digest(extracted.markdown.as_bytes()));
            // The title is not in the markdown but is the page's too: two
            // pages differ, and a page changed, when either does.
            let content_hash = std::hash::BuildHasher::hash_one(&hasher, (&digest, &extracted.title));
            if prior_hash.as_deref() == Some(digest.as_str()) && prior_title == extracted.title {
                let page = Box::new(extracted.unchunked());
                return PageOutcome::Page {
                    page,
                    format,
                    content_hash,
                    digest,
                    body_digest,
                    embedded: 0,
                    unchanged: true,
                };
            }
            // Chunks the model reads whole: within its window, room kept for the title and headings.
            let counter = embedder.token_counter();
            let window = counter.as_deref().zip(embedder.token_window()).map(|(counter, tokens)| {
                process::chunk::TokenWindow { counter, tokens: tokens.saturating_sub(process::chunk::PREFIX_TOKENS) }
            });
            let mut p = extracted.finish_within(&options, window);
            // A fast CPU embedder works here, on the pool; remote ones in
            // the writer, and so do changed pages, whose texts that did not
            // change reuse their vectors there; the local model behind the
            // crawl (`embedding.rs`).
            let mut embedded = 0;
            if !has_prior && !embedder.embeds_behind() {
                let (chunk_inputs, code_inputs) = p.embedding_inputs();
                let refs: Vec<&str> = chunk_inputs.iter().chain(&code_inputs).map(String::as_str).collect();
                if let Some(mut vectors) = embedder.embed_sync(&refs) {
                    embedded = vectors.len() as u64;
                    let code_vectors = vectors.split_off(chunk_inputs.len());
                    p.chunks.iter_mut().zip(vectors).for_each(|(c, v)| c.embedding = Some(v));
                    p.code_examples.iter_mut().zip(code_vectors).for_each(|(c, v)| c.embedding = Some(v));
                }
            }
            PageOutcome::Page {
                page: Box::new(p),
                format,
                content_hash,
                digest,
                body_digest,
                embedded,
                unchanged: false,
            }
        })
        .await;
    Ok(match processed {
        Ok(PageOutcome::NeedsBrowser(reason)) => return Err(NeedsBrowser(reason)),
        Ok(PageOutcome::Cancelled) => failed(r, PageError::Cancelled),
        Ok(PageOutcome::Unusable(e @ process::pdf::PdfError::NoText(_))) => {
            r.status = PageStatus::Skipped;
            r.error = Some(format!("{}: {e}", e.code()));
            (r, PageResult::default())
        }
        Ok(PageOutcome::Unusable(e)) => failed(r, PageError::Pdf(e)),
        Ok(PageOutcome::SameBody(body_digest, links)) => match prior {
            Some(prior) => {
                r.body_hash = Some(body_digest);
                kept_as_is(ctx, r, prior, body.final_url, links)
            }
            None => failed(r, PageError::Processing("a page without a copy matched one".into())),
        },
        Ok(PageOutcome::Page { page: p, format, content_hash, digest, body_digest, embedded, unchanged }) => {
            r.body_hash = Some(body_digest);
            let p = *p;
            let follow = ctx.follow.load(Ordering::Relaxed);
            let mut links = p.links;
            let here = urls::normalize(&body.final_url).unwrap_or_else(|| body.final_url.clone());
            let canonical = p.canonical.filter(|c| *c != here);
            if let Some(c) = canonical.as_ref().filter(|c| follow && !links.contains(c)) {
                links.push(c.clone());
            }
            if let Some(first) = ctx.crawl.duplicate_of(here.as_str(), canonical.as_ref(), content_hash) {
                r.status = PageStatus::Skipped;
                r.title = p.title;
                r.error = Some(match &canonical {
                    Some(c) => format!("duplicate: a copy of {first} (rel=canonical {c})"),
                    None => format!("duplicate: the same content as {first}"),
                });
                if follow {
                    r.links = links.iter().map(|u| u.to_string()).collect();
                }
                return Ok((r, PageResult { final_url: Some(body.final_url), links }));
            }
            r.title = p.title;
            r.description = p.description;
            r.content_hash = Some(digest);
            r.format = Some(format);
            r.embedded = embedded;
            match prior {
                Some(prior) if unchanged => {
                    // The source's row stays, with its chunks and vectors.
                    r.change = Some(Change::Unchanged);
                    r.kept = Some(Kept { row: prior.row, chunks: prior.chunks, code_examples: prior.code_examples });
                }
                Some(prior) => {
                    r.change = Some(Change::Changed);
                    r.earlier_row = Some(prior.row);
                }
                None => r.change = Some(Change::New),
            }
            if r.kept.is_none() {
                r.content = Some(p.markdown);
                r.chunks = p.chunks;
                r.code_examples = p.code_examples;
            }
            if follow {
                r.links = links.iter().map(|u| u.to_string()).collect();
            }
            (r, PageResult { final_url: Some(body.final_url), links })
        }
        Err(e) => failed(r, PageError::Processing(e.to_string())),
    })
}

/// A page that has not changed since the source's copy (the server said
/// `304`, or sent the very bytes the copy was made from): the copy is kept
/// unprocessed, and the page leads to `links`.
pub(super) fn kept_as_is(
    ctx: &Ctx,
    mut r: PageRecord,
    prior: PriorPage,
    final_url: Url,
    links: Vec<Url>,
) -> (PageRecord, PageResult) {
    let digest = prior.content_hash.clone().unwrap_or_default();
    let content_hash = std::hash::BuildHasher::hash_one(&ctx.crawl.hasher, &digest);
    let here = urls::normalize(&final_url).unwrap_or_else(|| final_url.clone());
    if let Some(first) = ctx.crawl.duplicate_of(here.as_str(), None, content_hash) {
        r.status = PageStatus::Skipped;
        r.error = Some(format!("duplicate: the same content as {first}"));
        return (r, PageResult { final_url: Some(final_url), links });
    }
    r.content_hash = prior.content_hash.clone();
    r.change = Some(Change::Unchanged);
    r.kept = Some(Kept { row: prior.row, chunks: prior.chunks, code_examples: prior.code_examples });
    if ctx.follow.load(Ordering::Relaxed) {
        r.links = links.iter().map(|u| u.to_string()).collect();
    }
    (r, PageResult { final_url: Some(final_url), links })
}
