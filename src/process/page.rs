//! One page through the pipeline: links, code blocks and what tells a docs
//! page (lol_html, one streaming pass over the whole page), main content as
//! markdown (`main_content`; the whole body when it finds nothing), chunks
//! and code examples.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::LazyLock;

use lol_html::{HtmlRewriter, Selector, Settings};
use url::Url;

use super::chunk::{Chunk, ChunkOptions};
use super::code::{self, CodeExample, RawBlock};
use super::language;
use super::main_content::{DOCS_THEME_SELECTOR, Hints, main_markdown};
use crate::urls;

/// How pages are processed; per crawl.
#[derive(Debug, Clone, Copy)]
pub struct ProcessOptions {
    pub chunks: ChunkOptions,
    /// Shortest code example kept (short languages get a lower bar).
    pub min_code_chars: usize,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        Self { chunks: ChunkOptions::default(), min_code_chars: 250 }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Processed {
    pub title: Option<String>,
    pub description: Option<String>,
    pub markdown: String,
    /// Crawlable links in document order, normalised, without repeats.
    pub links: Vec<Url>,
    /// The page's `<link rel=canonical>`, normalised.
    pub canonical: Option<Url>,
    pub chunks: Vec<Chunk>,
    pub code_examples: Vec<CodeExample>,
}

/// What the streaming pass collects.
#[derive(Default)]
struct Scan {
    title: String,
    in_title: bool,
    /// The document's title is its first `<title>`: an SVG's `<title>`
    /// in the body names an icon, not the page.
    title_done: bool,
    description: Option<String>,
    base: Option<Url>,
    canonical: Option<String>,
    hrefs: Vec<String>,
    blocks: Vec<RawBlock>,
    /// The `<pre>` being read: its language and text so far.
    pre: Option<(Option<String>, String)>,
    /// The language a Sphinx `highlight-<lang>` wrapper gives the `<pre>` inside it.
    highlight: Option<String>,
    hints: Hints,
}

fn decode_entities(s: &str) -> String {
    html_escape::decode_html_entities(s).into_owned()
}

/// The scan's selectors, parsed once: on a small page parsing them costs
/// more than the scan itself.
struct ScanSelectors {
    base: Selector,
    canonical: Selector,
    links: Selector,
    description: Selector,
    generator: Selector,
    docs_theme: Selector,
    title: Selector,
    highlight: Selector,
    pre: Selector,
    pre_code: Selector,
}

static SCAN_SELECTORS: LazyLock<ScanSelectors> = LazyLock::new(|| {
    let p = |s: &str| s.parse().unwrap_or_else(|e| panic!("selector {s:?}: {e}"));
    ScanSelectors {
        base: p("base[href]"),
        canonical: p("link[rel~=canonical][href]"),
        links: p("a[href], area[href]"),
        description: p("meta[name=description], meta[property='og:description']"),
        generator: p("meta[name=generator][content], meta[name=Generator][content]"),
        docs_theme: p(DOCS_THEME_SELECTOR),
        title: p("title"),
        highlight: p("div[class*='highlight-']"),
        pre: p("pre"),
        pre_code: p("pre code"),
    }
});

/// lol_html's `element!` and `text!` with a selector from `SCAN_SELECTORS`.
macro_rules! on {
    (element, $sel:expr, $handler:expr) => {{
        #[inline(always)]
        const fn hint<'h, T, H: lol_html::HandlerTypes>(h: T) -> T
        where
            T: FnMut(&mut lol_html::html_content::Element<'_, '_, H>) -> lol_html::HandlerResult + 'h,
        {
            h
        }
        (std::borrow::Cow::Borrowed(&$sel), lol_html::ElementContentHandlers::default().element(hint($handler)))
    }};
    (text, $sel:expr, $handler:expr) => {{
        #[inline(always)]
        fn hint<T>(h: T) -> T
        where
            T: FnMut(&mut lol_html::html_content::TextChunk) -> lol_html::HandlerResult,
        {
            h
        }
        (std::borrow::Cow::Borrowed(&$sel), lol_html::ElementContentHandlers::default().text(hint($handler)))
    }};
}

fn scan(html: &str, page_url: &Url) -> Scan {
    // Rc: lol_html's end-tag handlers must own what they touch.
    let st = Rc::new(RefCell::new(Scan::default()));
    let sel = &*SCAN_SELECTORS;
    {
        let mut rewriter = HtmlRewriter::new(
            Settings {
                element_content_handlers: vec![
                    on!(element, sel.base, |el| {
                        if let Some(h) = el.get_attribute("href") {
                            st.borrow_mut().base = page_url.join(&decode_entities(&h)).ok();
                        }
                        Ok(())
                    }),
                    on!(element, sel.canonical, |el| {
                        let mut s = st.borrow_mut();
                        if s.canonical.is_none() {
                            s.canonical = el.get_attribute("href").map(|h| decode_entities(&h));
                        }
                        Ok(())
                    }),
                    on!(element, sel.links, |el| {
                        if let Some(h) = el.get_attribute("href") {
                            st.borrow_mut().hrefs.push(decode_entities(&h));
                        }
                        Ok(())
                    }),
                    on!(element, sel.description, |el| {
                        let mut s = st.borrow_mut();
                        if s.description.is_none() {
                            s.description = el.get_attribute("content").map(|c| decode_entities(&c).trim().to_string());
                        }
                        Ok(())
                    }),
                    on!(element, sel.generator, |el| {
                        st.borrow_mut().hints.generator = el.get_attribute("content");
                        Ok(())
                    }),
                    on!(element, sel.docs_theme, |_| {
                        st.borrow_mut().hints.docs_theme = true;
                        Ok(())
                    }),
                    on!(element, sel.title, |_| {
                        let mut s = st.borrow_mut();
                        s.in_title = !s.title_done;
                        Ok(())
                    }),
                    on!(text, sel.title, |t| {
                        let mut s = st.borrow_mut();
                        if s.in_title {
                            s.title.push_str(t.as_str());
                            if t.last_in_text_node() {
                                s.in_title = false;
                                s.title_done = true;
                            }
                        }
                        Ok(())
                    }),
                    on!(element, sel.highlight, |el| {
                        let lang = el.get_attribute("class").and_then(|c| language::language_from_highlight(&c));
                        if lang.is_some() {
                            st.borrow_mut().highlight = lang;
                            if let Some(handlers) = el.end_tag_handlers() {
                                let st = st.clone();
                                let on_end: lol_html::EndTagHandler<'static> = Box::new(move |_end| {
                                    st.borrow_mut().highlight = None;
                                    Ok(())
                                });
                                handlers.push(on_end);
                            }
                        }
                        Ok(())
                    }),
                    on!(element, sel.pre, |el| {
                        let lang = el
                            .get_attribute("data-language")
                            .or_else(|| el.get_attribute("data-lang"))
                            .map(|l| language::normalize_language(&l))
                            .or_else(|| el.get_attribute("class").and_then(|c| language::language_from_class(&c)));
                        let mut s = st.borrow_mut();
                        let lang = lang.or_else(|| s.highlight.clone());
                        s.pre = Some((lang, String::new()));
                        drop(s);
                        if let Some(handlers) = el.end_tag_handlers() {
                            let st = st.clone();
                            let on_end: lol_html::EndTagHandler<'static> = Box::new(move |_end| {
                                let mut s = st.borrow_mut();
                                if let Some((language, text)) = s.pre.take() {
                                    s.blocks.push(RawBlock { language, code: decode_entities(&text) });
                                }
                                Ok(())
                            });
                            handlers.push(on_end);
                        }
                        Ok(())
                    }),
                    on!(element, sel.pre_code, |el| {
                        let mut s = st.borrow_mut();
                        if let Some((lang @ None, _)) = s.pre.as_mut() {
                            *lang = el.get_attribute("class").and_then(|c| language::language_from_class(&c));
                        }
                        Ok(())
                    }),
                    on!(text, sel.pre, |t| {
                        if let Some((_, text)) = st.borrow_mut().pre.as_mut() {
                            text.push_str(t.as_str());
                        }
                        Ok(())
                    }),
                ],
                ..Settings::new()
            },
            |_: &[u8]| {},
        );
        // lol_html fails only on memory limits or handler errors, which ours
        // never raise; a partial scan is still useful.
        let _ = rewriter.write(html.as_bytes());
        let _ = rewriter.end();
    }
    Rc::try_unwrap(st).map(RefCell::into_inner).unwrap_or_default()
}

fn links(scan: &Scan, page_url: &Url) -> Vec<Url> {
    let base = scan.base.as_ref().unwrap_or(page_url);
    let mut seen = std::collections::HashSet::new();
    scan.hrefs
        .iter()
        .filter_map(|h| urls::resolve_link(base, h))
        .filter(|u| seen.insert(u.as_str().to_string()))
        .collect()
}

/// A page's main content and what surrounds it, before chunking: enough
/// to tell whether it changed (its markdown) and where it leads.
pub struct Extracted {
    pub title: Option<String>,
    pub description: Option<String>,
    pub markdown: String,
    pub links: Vec<Url>,
    pub canonical: Option<Url>,
    blocks: Vec<code::RawBlock>,
    /// The markdown is a PDF's, in pages: chunks carry their page.
    paged: bool,
}

impl Extracted {
    /// Chunks and code examples: the rest of the work on a page.
    pub fn finish(self, opts: &ProcessOptions) -> Processed {
        self.finish_within(opts, None)
    }

    /// [`Extracted::finish`], with chunks that fit an embedding model's window.
    pub fn finish_within(self, opts: &ProcessOptions, window: Option<super::chunk::TokenWindow>) -> Processed {
        let mut chunks = super::chunk::chunk_within(&self.markdown, opts.chunks, self.paged, window);
        if let Some(window) = window {
            chunks = super::chunk::fit_prefixes(chunks, self.title.as_deref(), opts.chunks, window);
        }
        let code_examples = code::examples(self.blocks, &self.markdown, opts.min_code_chars);
        let Extracted { title, description, markdown, links, canonical, .. } = self;
        Processed { title, description, markdown, links, canonical, chunks, code_examples }
    }

    /// The page without chunks or code examples: what an unchanged page
    /// needs (its earlier chunks are kept).
    pub fn unchunked(self) -> Processed {
        let Extracted { title, description, markdown, links, canonical, .. } = self;
        Processed { title, description, markdown, links, canonical, chunks: Vec::new(), code_examples: Vec::new() }
    }
}

pub fn extract_html(html: &str, page_url: &Url) -> Extracted {
    let scan = scan(html, page_url);
    let links = links(&scan, page_url);
    let canonical = scan.canonical.as_deref().and_then(|h| urls::resolve_link(page_url, h));
    let (article_title, markdown) = main_markdown(html, page_url, &scan.hints);
    let markdown = if markdown.is_empty() { super::html::to_markdown(html).trim().to_string() } else { markdown };
    let markdown = code::label_fences(&markdown, &scan.blocks);
    let page_title = decode_entities(&scan.title).split_whitespace().collect::<Vec<_>>().join(" ");
    // The title is a field of its own; the markdown is the page's content
    // only (a title heading that is not in the page would be words the page
    // does not have, in search and in embeddings, which get the title anyway).
    let title = (!page_title.is_empty()).then_some(page_title).or(article_title);
    let description = scan.description.filter(|d| !d.is_empty());
    Extracted { title, description, markdown, links, canonical, blocks: scan.blocks, paged: false }
}

/// Where a page leads (its links and its `rel=canonical`), without
/// extracting its content: the streaming pass alone.
pub fn links_of(html: &str, page_url: &Url) -> (Vec<Url>, Option<Url>) {
    let scan = scan(html, page_url);
    let canonical = scan.canonical.as_deref().and_then(|h| urls::resolve_link(page_url, h));
    (links(&scan, page_url), canonical)
}

pub fn process_html(html: &str, page_url: &Url, opts: &ProcessOptions) -> Processed {
    extract_html(html, page_url).finish(opts)
}

impl Processed {
    /// What is embedded for each chunk and code example, in order: chunks
    /// with their page title and headings, code with its language and the
    /// prose just before it.
    pub fn embedding_inputs(&self) -> (Vec<String>, Vec<String>) {
        embedding_inputs(self.title.as_deref(), &self.chunks, &self.code_examples)
    }
}

pub use crate::content::embedding_inputs;

/// A text or markdown page: kept as is, its fences read as code.
pub fn extract_text(text: &str) -> Extracted {
    Extracted {
        title: super::html::text_title(text),
        description: None,
        markdown: text.to_string(),
        links: Vec::new(),
        canonical: None,
        blocks: code::blocks_from_markdown(text),
        paged: false,
    }
}

/// A PDF's text, page by page under markers; its title is the document's
/// own, else `fallback_title` (the file's name).
pub fn extract_pdf(pdf: &super::pdf::PdfText, fallback_title: Option<String>) -> Extracted {
    Extracted {
        title: pdf.title.clone().or(fallback_title),
        description: None,
        markdown: pdf.markdown(),
        links: Vec::new(),
        canonical: None,
        blocks: Vec::new(),
        paged: true,
    }
}

pub fn process_text(text: &str, opts: &ProcessOptions) -> Processed {
    extract_text(text).finish(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_title_description_and_links() {
        let html = r#"<html><head><title> Hello &amp; welcome </title><base href="/docs/">
            <meta name="description" content="About &quot;this&quot;"></head>
            <body><nav><a href="a.html">A</a></nav><h1>Head</h1><p>Para <a href="/b#x">B</a>
            <a href="mailto:x@y.z">m</a><a href="a.html">again</a><a href="/c?x=1&amp;utm_source=y">c</a></p></body></html>"#;
        let p = process_html(html, &Url::parse("http://e.com/index.html").unwrap(), &ProcessOptions::default());
        assert_eq!(p.title.as_deref(), Some("Hello & welcome"));
        assert_eq!(p.description.as_deref(), Some("About \"this\""));
        let links: Vec<&str> = p.links.iter().map(Url::as_str).collect();
        assert_eq!(links, vec!["http://e.com/docs/a.html", "http://e.com/b", "http://e.com/c?x=1"]);
        assert!(p.markdown.contains("Para"), "{}", p.markdown);
        assert!(p.canonical.is_none());
    }

    #[test]
    fn the_title_is_the_documents_not_an_icons_and_stays_out_of_the_markdown() {
        let html = r#"<html><head><title>Launch day - Example News</title></head><body><article>
            <svg><title>Search Icon</title></svg><p>The launch went well, said everyone who was there today.</p>
            <p>More text follows here so that the article is long enough to be the main content.</p></article></body></html>"#;
        let p = process_html(html, &Url::parse("http://e.com/a").unwrap(), &ProcessOptions::default());
        assert_eq!(p.title.as_deref(), Some("Launch day - Example News"));
        assert!(!p.markdown.contains("Launch day"), "{}", p.markdown);
        assert!(p.markdown.contains("The launch went well"), "{}", p.markdown);
    }

    #[test]
    fn reads_the_canonical_link() {
        let html = r#"<html><head><link rel="alternate canonical" href="/Docs/?utm_source=x#top"></head><body>x</body></html>"#;
        let p = process_html(html, &Url::parse("http://e.com/docs/index.html").unwrap(), &ProcessOptions::default());
        assert_eq!(p.canonical.as_ref().map(Url::as_str), Some("http://e.com/Docs/"));
    }

    #[test]
    fn survives_garbage() {
        let p = process_html(
            "<<<>>><a href=>\u{fffd}</title>",
            &Url::parse("http://e.com/").unwrap(),
            &ProcessOptions::default(),
        );
        assert!(p.title.is_none());
    }
}
