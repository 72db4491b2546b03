//! Whole-body markdown (htmd), for pages where readability finds no main
//! content, and the title of text pages.

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
    fn code_blocks_stay_verbatim_and_scripts_go() {
        let md = to_markdown(
            "<script>var x=1;</script><h2>Ex</h2><pre><code class=\"language-rust\">fn page_5() -&gt; usize {\n    5\n}</code></pre>",
        );
        assert!(md.contains("fn page_5() -> usize {\n    5\n}"), "{md}");
        assert!(!md.contains("var x"), "{md}");
    }
}
