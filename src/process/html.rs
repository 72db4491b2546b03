//! One streaming pass over the HTML for title and links (lol_html), and the
//! markdown conversion (fast_html2md).

use std::cell::RefCell;

use lol_html::{HtmlRewriter, Settings, element, text};
use url::Url;

use crate::crawl::urls;

#[derive(Debug, Default, Clone)]
pub struct ParsedHtml {
    pub title: Option<String>,
    /// Crawlable links in document order, normalised, without repeats.
    pub links: Vec<Url>,
    pub markdown: String,
}

/// Parses a page fetched from `page_url`. Malformed HTML never fails: what
/// could be read is returned.
pub fn parse_html(html: &str, page_url: &Url) -> ParsedHtml {
    let title = RefCell::new(String::new());
    let in_title = RefCell::new(false);
    let base = RefCell::new(page_url.clone());
    let hrefs = RefCell::new(Vec::<String>::new());
    {
        let mut rewriter = HtmlRewriter::new(
            Settings {
                element_content_handlers: vec![
                    element!("base[href]", |el| {
                        if let Some(h) = el.get_attribute("href")
                            && let Ok(b) = page_url.join(&html_escape::decode_html_entities(&h))
                        {
                            *base.borrow_mut() = b;
                        }
                        Ok(())
                    }),
                    element!("a[href], area[href]", |el| {
                        if let Some(h) = el.get_attribute("href") {
                            // lol_html hands attributes over undecoded (`&amp;`).
                            hrefs.borrow_mut().push(html_escape::decode_html_entities(&h).into_owned());
                        }
                        Ok(())
                    }),
                    element!("title", |_el| {
                        *in_title.borrow_mut() = true;
                        Ok(())
                    }),
                    text!("title", |t| {
                        if *in_title.borrow() {
                            title.borrow_mut().push_str(t.as_str());
                            if t.last_in_text_node() {
                                *in_title.borrow_mut() = false;
                            }
                        }
                        Ok(())
                    }),
                ],
                ..Settings::new()
            },
            |_: &[u8]| {},
        );
        // lol_html only errors on memory limits or handler errors, neither of
        // which our handlers raise; a partial parse is still useful.
        let _ = rewriter.write(html.as_bytes());
        let _ = rewriter.end();
    }
    let base = base.into_inner();
    let mut links: Vec<Url> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for h in hrefs.into_inner() {
        if let Some(u) = urls::resolve_link(&base, &h)
            && seen.insert(u.as_str().to_string())
        {
            links.push(u);
        }
    }
    let title = html_escape::decode_html_entities(&title.into_inner()).split_whitespace().collect::<Vec<_>>().join(" ");
    ParsedHtml { title: (!title.is_empty()).then_some(title), links, markdown: to_markdown(html) }
}

/// HTML to markdown; scripts, styles and other non-content elements are
/// dropped. Code blocks keep their text verbatim.
pub fn to_markdown(html: &str) -> String {
    thread_local! {
        static CONVERTER: htmd::HtmlToMarkdown = htmd::HtmlToMarkdown::builder()
            .skip_tags(vec!["script", "style", "noscript", "template", "svg", "iframe", "head"])
            .build();
    }
    CONVERTER.with(|c| c.convert(html)).unwrap_or_default()
}

/// The first markdown heading of a text page, as its title.
pub fn text_title(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with('#'))
        .map(|l| l.trim_start_matches('#').trim().to_string())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_title_links_and_markdown() {
        let html = r#"<html><head><title> Hello &amp; welcome </title><base href="/docs/"></head>
            <body><nav><a href="a.html">A</a></nav><h1>Head</h1><p>Para <a href="/b#x">B</a>
            <a href="mailto:x@y.z">m</a><a href="a.html">again</a><a href="/c?x=1&amp;utm_source=y">c</a></p></body></html>"#;
        let base = Url::parse("http://e.com/index.html").unwrap();
        let p = parse_html(html, &base);
        assert_eq!(p.title.as_deref(), Some("Hello & welcome"));
        let links: Vec<&str> = p.links.iter().map(Url::as_str).collect();
        assert_eq!(links, vec!["http://e.com/docs/a.html", "http://e.com/b", "http://e.com/c?x=1"]);
        assert!(p.markdown.contains("Head"), "{}", p.markdown);
        assert!(p.markdown.contains("Para"));
    }

    #[test]
    fn code_blocks_stay_verbatim_and_scripts_go() {
        let md = to_markdown(
            "<script>var x=1;</script><h2>Ex</h2><pre><code class=\"language-rust\">fn page_5() -&gt; usize {\n    5\n}</code></pre>",
        );
        assert!(md.contains("fn page_5() -> usize {\n    5\n}"), "{md}");
        assert!(!md.contains("var x"), "{md}");
    }

    #[test]
    fn survives_garbage() {
        let p = parse_html("<<<>>><a href=>\u{fffd}</title>", &Url::parse("http://e.com/").unwrap());
        assert!(p.title.is_none());
    }
}
