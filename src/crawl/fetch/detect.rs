//! `render: "auto"`: does a page fetched over HTTP need a browser?
//!
//! A browser page costs about a hundred HTTP fetches, so only pages that look
//! like a shell for scripts go to Chromium: scripts and almost no text, an
//! application root (`#root`, `#app`, `#__next`, ...) left empty, or a
//! `<noscript>` asking for JavaScript on a page with little else to read.
//! One streaming pass of lol_html; no DOM is built.

use std::cell::RefCell;

use lol_html::{HtmlRewriter, Settings, doc_text, element, text};

/// Below this many visible characters, a page with scripts is a shell.
const ALMOST_NO_TEXT: usize = 200;
/// A page with an empty application root, or a `<noscript>` asking for
/// JavaScript, is rendered unless it has at least this much text of its own.
const LITTLE_TEXT: usize = 1500;
/// Elements single-page frameworks mount into.
const APP_ROOTS: &str = "#root, #app, #__next, #__nuxt, #___gatsby, #svelte, app-root, [data-reactroot], [ng-app]";

#[derive(Default)]
struct Scan {
    scripts: usize,
    /// Non-space characters of all text, and of text no reader sees.
    all_text: usize,
    hidden_text: usize,
    app_roots: usize,
    app_root_text: usize,
    noscript: String,
}

fn chars(s: &str) -> usize {
    s.chars().filter(|c| !c.is_whitespace()).count()
}

/// Why the page should be rendered in a browser, or `None` when its HTML
/// already holds its content.
pub fn needs_browser(html: &str) -> Option<&'static str> {
    let st = RefCell::new(Scan::default());
    {
        let mut rewriter = HtmlRewriter::new(
            Settings {
                element_content_handlers: vec![
                    element!("script", |el| {
                        let executable = el.get_attribute("type").is_none_or(|t| {
                            let t = t.trim().to_ascii_lowercase();
                            t.is_empty() || t == "module" || t.contains("javascript") || t.contains("ecmascript")
                        });
                        if executable {
                            st.borrow_mut().scripts += 1;
                        }
                        Ok(())
                    }),
                    text!("script, style, template, noscript, title", |t| {
                        st.borrow_mut().hidden_text += chars(t.as_str());
                        Ok(())
                    }),
                    text!("noscript", |t| {
                        let mut s = st.borrow_mut();
                        if s.noscript.len() < 4096 {
                            s.noscript.push_str(&t.as_str().to_ascii_lowercase());
                        }
                        Ok(())
                    }),
                    element!(APP_ROOTS, |_| {
                        st.borrow_mut().app_roots += 1;
                        Ok(())
                    }),
                    text!(APP_ROOTS, |t| {
                        st.borrow_mut().app_root_text += chars(t.as_str());
                        Ok(())
                    }),
                ],
                document_content_handlers: vec![doc_text!(|t| {
                    st.borrow_mut().all_text += chars(t.as_str());
                    Ok(())
                })],
                ..Settings::new()
            },
            |_: &[u8]| {},
        );
        // A partial scan of broken markup still answers.
        let _ = rewriter.write(html.as_bytes());
        let _ = rewriter.end();
    }
    let s = st.into_inner();
    let visible = s.all_text.saturating_sub(s.hidden_text);
    if s.scripts > 0 && visible < ALMOST_NO_TEXT {
        return Some("scripts and almost no text");
    }
    if s.scripts > 0 && s.app_roots > 0 && s.app_root_text == 0 && visible < LITTLE_TEXT {
        return Some("an empty application root");
    }
    let asks_for_js = s.noscript.contains("javascript")
        && ["enable", "require", "need", "turn on", "must", "activate"].iter().any(|w| s.noscript.contains(w));
    if asks_for_js && visible < LITTLE_TEXT {
        return Some("a <noscript> asking for JavaScript");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_pages_stay_on_http() {
        let words = "Static documentation text that a reader can see. ".repeat(20);
        let page = format!(
            "<html><head><title>Docs</title><script>console.log(1)</script></head><body><main><p>{words}</p></main></body></html>"
        );
        assert_eq!(needs_browser(&page), None);
        assert_eq!(needs_browser("<html><body><h1>Short but static</h1></body></html>"), None);
        // Structured data is not a script that renders anything.
        assert_eq!(
            needs_browser(
                "<html><head><script type=\"application/ld+json\">{}</script></head><body><p>Hi</p></body></html>"
            ),
            None
        );
        // A server-rendered app: the root holds the content.
        let ssr = format!(
            "<html><body><div id=\"__next\"><p>{words}</p></div><script src=\"/app.js\"></script></body></html>"
        );
        assert_eq!(needs_browser(&ssr), None);
    }

    #[test]
    fn script_shells_go_to_the_browser() {
        assert_eq!(
            needs_browser(
                "<html><head><script src=\"/bundle.js\"></script></head><body><div id=\"x\"></div></body></html>"
            ),
            Some("scripts and almost no text")
        );
        let filler = "Some navigation and footer words. ".repeat(10);
        assert_eq!(
            needs_browser(&format!(
                "<html><body><nav>{filler}</nav><div id=\"root\"></div><script type=\"module\" src=\"/main.js\"></script></body></html>"
            )),
            Some("an empty application root")
        );
        assert_eq!(
            needs_browser(&format!(
                "<html><body><p>{filler}</p><noscript>You need to enable JavaScript to run this app.</noscript></body></html>"
            )),
            Some("a <noscript> asking for JavaScript")
        );
    }

    #[test]
    fn script_text_does_not_count_as_content() {
        let big_script = format!("<script>var data = \"{}\";</script>", "x".repeat(5000));
        assert_eq!(
            needs_browser(&format!("<html><head>{big_script}</head><body><div id=\"app\"></div></body></html>")),
            Some("scripts and almost no text")
        );
    }
}
