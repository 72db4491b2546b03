//! A page's main content as markdown, by the kind of page.
//!
//! - Documentation (a docs generator's page): the whole main container minus
//!   its navigation. Readability keeps only the best-scoring section, which
//!   loses a reference page's other sections, tables and examples; on a
//!   manual every section is content.
//! - Everything else: readability (dom_smoothie), whose blocks trafilatura
//!   must confirm when it clearly found the same article (see `consensus`),
//!   asked only when readability kept a block of the kinds it removes.
//!   Falling back to the body minus navigation when readability keeps under
//!   a quarter of the body's prose was measured and dropped: on the article
//!   benchmark it let comment threads in (F1 0.972 without, 0.966 with).
//!
//! Both run on one parsed document, whose inline `<code>` spans are first
//! put on one line (a line break inside one is not a code block).

use std::sync::LazyLock;

use dom_query::{Document, Matcher, NodeRef, Selection};
use url::Url;

use super::consensus;

/// What the streaming scan learned that tells documentation apart.
#[derive(Debug, Default, Clone)]
pub struct Hints {
    /// `<meta name=generator>`.
    pub generator: Option<String>,
    /// An element only a docs framework's theme has.
    pub docs_theme: bool,
}

/// Generators whose pages are documentation (matched case-insensitively
/// inside `<meta name=generator>`).
const DOCS_GENERATORS: &[&str] = &[
    "docbook",
    "sphinx",
    "docutils",
    "rustdoc",
    "mdbook",
    "mkdocs",
    "docusaurus",
    "doxygen",
    "javadoc",
    "makeinfo",
    "texinfo",
    "texi2html",
    "vitepress",
    "vuepress",
    "gitbook",
    "antora",
    "asciidoctor",
    "jsdoc",
    "typedoc",
    "pkgdown",
    "starlight",
];

/// Elements of docs themes (Sphinx, Read the Docs, MkDocs Material,
/// Docusaurus, rustdoc, mdBook, DocBook's navigation rows, docsify).
pub const DOCS_THEME_SELECTOR: &str = "div.sphinxsidebar, div.rst-content, div.md-content, \
    div.theme-doc-markdown, #rustdoc-vars, #main-content.content, #mdbook-help-container, \
    div.navheader, div.navfooter, section.markdown-section";

impl Hints {
    pub fn is_docs(&self) -> bool {
        self.docs_theme
            || self.generator.as_deref().is_some_and(|g| {
                let g = g.to_ascii_lowercase();
                DOCS_GENERATORS.iter().any(|d| g.contains(d))
            })
    }
}

/// Navigation and chrome, never content: removed before either path.
const CHROME: &str = "script, style, noscript, template, svg, iframe, button, nav, \
    [role=navigation], [role=search], [role=banner], [role=contentinfo], \
    div.navheader, div.navfooter, .breadcrumb, .breadcrumbs, .skip-link, .headerlink";

/// More chrome that docs themes put around (or inside) the content:
/// sidebars, previous/next pagers, "edit this page" rows, footers.
const DOCS_CHROME: &str = "aside:not(.footnote, .footnote-list, .topic, .admonition), footer, body > header, div.sphinxsidebar, div.related, \
    .rst-footer-buttons, .md-footer, .md-sidebar, .pagination-nav, .theme-doc-footer, \
    .theme-doc-toc-mobile, .theme-doc-breadcrumbs, .pager, .prev-next, .nav-chapters, \
    .mobile-nav-chapters, .edit-this-page, #rustdoc-toolbar, .toc-backref";

/// Where a docs page's content is, most specific first.
const DOCS_CONTAINERS: &[&str] = &[
    "[role=main]",
    "main",
    "div.body",
    "div.rst-content",
    "div.md-content",
    "div.theme-doc-markdown",
    "#main-content",
    "#content",
    "article",
    "body",
];

/// The selectors above, parsed once: on a small page parsing a selector
/// costs as much as matching it.
struct Matchers {
    chrome: Matcher,
    docs_chrome: Matcher,
    code: Matcher,
    anchors: Matcher,
    to_paragraphs: Matcher,
    to_divs: Matcher,
    containers: Vec<Matcher>,
}

static MATCHERS: LazyLock<Matchers> = LazyLock::new(|| {
    let m = |sel: &str| Matcher::new(sel).unwrap_or_else(|e| panic!("selector {sel:?}: {e:?}"));
    Matchers {
        chrome: m(CHROME),
        docs_chrome: m(DOCS_CHROME),
        code: m("code"),
        anchors: m("a"),
        to_paragraphs: m("dt, figcaption, summary, caption"),
        to_divs: m("dd, figure, details"),
        containers: DOCS_CONTAINERS.iter().map(|s| m(s)).collect(),
    }
});

/// The title readability found (used when `<head>` has none) and the main
/// content as markdown.
pub fn main_markdown(html: &str, page_url: &Url, hints: &Hints) -> (Option<String>, String) {
    let doc = Document::from(html);
    doc.select_matcher(&MATCHERS.chrome).remove();
    inline_code_on_one_line(&doc);
    empty_anchors(&doc);
    if hints.is_docs() {
        return (None, docs_markdown(&doc));
    }
    let cfg = dom_smoothie::Config { text_mode: dom_smoothie::TextMode::Markdown, ..Default::default() };
    let article =
        dom_smoothie::Readability::with_document(doc, Some(page_url.as_str()), Some(cfg)).and_then(|mut r| r.parse());
    let (title, markdown) = match article {
        Ok(a) if !a.text_content.trim().is_empty() => {
            let title = (!a.title.trim().is_empty()).then(|| a.title.trim().to_string());
            (title, a.text_content.trim().to_string())
        }
        _ => (None, String::new()),
    };
    // The second opinion costs more than the rest of the pipeline; it is
    // asked only when there is a block it could remove.
    if !consensus::worth_asking(&markdown) {
        return (title, markdown);
    }
    // Its own fallbacks (readability, jusText), metadata, language and date
    // search are work whose result is not used: readability has already run.
    let mut opts =
        trafilatura::Options::default().with_url(page_url.clone()).with_fallback(false).with_content_only(true);
    opts.html_date_mode = trafilatura::HtmlDateMode::Disabled;
    // A second opinion that fails (or panics on a page it cannot handle)
    // leaves readability's markdown as it is.
    let second = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| trafilatura::extract(html, &opts)));
    match second {
        Ok(Ok(second)) => (title, consensus::confirm(&markdown, &second.content_text)),
        _ => (title, markdown),
    }
}

/// The main container minus the docs themes' chrome, whole.
fn docs_markdown(doc: &Document) -> String {
    let m = &*MATCHERS;
    doc.select_matcher(&m.docs_chrome).remove();
    // Blocks the markdown writer would run together with their neighbours:
    // a term and its definition, a table of contents' entries, a caption.
    doc.select_matcher(&m.to_paragraphs).rename("p");
    doc.select_matcher(&m.to_divs).rename("div");
    let container = m.containers.iter().map(|c| doc.select_single_matcher(c)).find(Selection::exists);
    let md = match container.as_ref().and_then(|c| c.nodes().first().cloned()) {
        Some(node) => node.md(None),
        None => doc.md(None),
    };
    md.trim().to_string()
}

/// Puts each inline `<code>` (one with text or an inline element around it,
/// not inside `<pre>`) on one line; a markdown writer would fence it.
fn inline_code_on_one_line(doc: &Document) {
    for code in doc.select_matcher(&MATCHERS.code).iter() {
        let Some(node) = code.nodes().first() else { continue };
        let text = node.text();
        if !text.trim().contains('\n') || !is_inline(node) {
            continue;
        }
        code.set_text(&text.split_whitespace().collect::<Vec<_>>().join(" "));
    }
}

/// Removes empty anchors (a manual's index targets, `<a id=… class=indexterm>`):
/// at the start of a paragraph right after a code block, the markdown writer
/// drops the line break after the closing fence and the paragraph runs on
/// from it, which ends the fence nowhere.
fn empty_anchors(doc: &Document) {
    for a in doc.select_matcher(&MATCHERS.anchors).nodes() {
        if a.children().is_empty() {
            a.remove_from_parent();
        }
    }
}

fn is_inline(code: &NodeRef) -> bool {
    if code.ancestors_it(None).any(|a| a.has_name("pre")) {
        return false;
    }
    let texty = |n: Option<NodeRef>| n.is_some_and(|n| n.is_text() && !n.text().trim().is_empty());
    texty(code.prev_sibling())
        || texty(code.next_sibling())
        || code.parent().is_some_and(|p| {
            ["p", "li", "td", "th", "dt", "a", "span", "em", "strong", "h1", "h2", "h3", "h4", "h5", "h6"]
                .iter()
                .any(|n| p.has_name(n))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> Url {
        Url::parse("http://docs.example/ref/functions.html").unwrap()
    }

    #[test]
    fn a_docs_page_keeps_every_section_and_no_navigation_row() {
        let html = r#"<html><head><meta name="generator" content="DocBook XSL Stylesheets"></head><body>
            <div class="navheader"><table><tr><td><a href="p.html">Prev</a></td><td><a href="u.html">Up</a></td>
            <td><a href="index.html">Home</a></td><td><a href="n.html">Next</a></td></tr></table></div>
            <div class="sect1"><h2>9.4. String Functions</h2><p>This section describes functions for strings.</p>
            <div class="sect2"><h3>9.4.1. format</h3><p>The function format produces output.</p>
            <pre class="programlisting">SELECT format('Hello %s', 'World');</pre></div>
            <div class="sect2"><h3>9.4.2. Operators</h3><table><tr><th>Operator</th><th>Description</th></tr>
            <tr><td><code>text || text</code></td><td>Concatenates the two strings.</td></tr></table></div></div>
            <div class="navfooter"><a href="p.html">Prev</a> <a href="u.html">Up</a> <a href="n.html">Next</a></div>
            </body></html>"#;
        let hints = Hints { generator: Some("DocBook XSL Stylesheets Vsnapshot".into()), docs_theme: true };
        let (_, md) = main_markdown(html, &url(), &hints);
        for part in ["String Functions", "The function format", "SELECT format", "Operators", "Concatenates"] {
            assert!(md.contains(part), "{part} missing from {md}");
        }
        assert!(!md.contains("Prev") && !md.contains("Home"), "{md}");
        assert!(md.contains("| Operator"), "a table stays a table: {md}");
    }

    #[test]
    fn an_inline_code_span_with_a_line_break_stays_inline() {
        let html = "<html><body><main><p>Call <code>pg_size_pretty(\n   bigint)</code> to format a size.</p>\
            <pre><code>line one\nline two</code></pre></main></body></html>";
        let hints = Hints { generator: Some("Sphinx 7".into()), docs_theme: false };
        let (_, md) = main_markdown(html, &url(), &hints);
        assert!(md.contains("Call `pg_size_pretty( bigint)` to format a size."), "{md}");
        assert!(md.contains("```\nline one\nline two\n```"), "{md}");
    }

    #[test]
    fn text_after_a_code_block_starts_its_own_paragraph() {
        let html = "<html><body><p>Greeted with:</p><pre class=\"screen\">mydb=&gt;\n</pre><p>\n    \
            <a id=\"id-1\" class=\"indexterm\"></a>\n    The last line could also be:</p><pre class=\"screen\">mydb=#</pre></body></html>";
        let hints = Hints { generator: Some("DocBook XSL".into()), docs_theme: false };
        let (_, md) = main_markdown(html, &url(), &hints);
        assert!(md.contains("```\nmydb=>\n```\n\nThe last line could also be:"), "{md}");
    }

    #[test]
    fn docs_are_told_by_generator_or_theme() {
        assert!(
            Hints { generator: Some("Docutils 0.19: https://docutils.sourceforge.io/".into()), docs_theme: false }
                .is_docs()
        );
        assert!(Hints { generator: None, docs_theme: true }.is_docs());
        assert!(!Hints { generator: Some("WordPress 6.4".into()), docs_theme: false }.is_docs());
        assert!(!Hints::default().is_docs());
    }
}
