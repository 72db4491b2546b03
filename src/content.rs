//! What a page is made into, as the store keeps it: chunks of markdown and
//! code examples, and the text embedded for each. A leaf: page processing
//! makes these, the store keeps them, the embedder reads them.

#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub index: u32,
    pub content: String,
    /// Headings above the chunk, outermost first: `Guide > Install`.
    pub heading_path: String,
    pub char_count: u32,
    /// The PDF page the chunk starts on (`None` for other documents).
    pub page: Option<u32>,
    /// Filled by the embedder; `None` until then (or when it failed).
    pub embedding: Option<Vec<f32>>,
}

/// A stored code example.
#[derive(Debug, Clone, PartialEq)]
pub struct CodeExample {
    pub language: String,
    pub code: String,
    pub context_before: String,
    pub context_after: String,
    /// Filled by the embedder; `None` until then (or when it failed).
    pub embedding: Option<Vec<f32>>,
}

const TITLE_CHARS: usize = 80;
const HEADINGS_CHARS: usize = 120;

fn head(s: &str, chars: usize) -> &str {
    s.char_indices().nth(chars).map_or(s, |(i, _)| &s[..i])
}

fn tail(s: &str, chars: usize) -> &str {
    let n = s.chars().count();
    match n.checked_sub(chars) {
        Some(skip) if skip > 0 => s.char_indices().nth(skip).map_or(s, |(i, _)| &s[i..]),
        _ => s,
    }
}

/// What goes in front of a chunk when it is embedded: its page title and
/// heading path as read (see [`readable`]), each cut to a length.
pub fn chunk_prefix(title: Option<&str>, heading_path: &str) -> String {
    let headings = readable(heading_path);
    format!("{}\n{}\n", head(title.unwrap_or_default(), TITLE_CHARS), tail(&headings, HEADINGS_CHARS))
}

/// Markdown as a reader sees it, for a model to embed: each link becomes
/// its text and each image its alt text. Link targets and titles (relative
/// URLs, anchors, Sphinx's `"Link to this definition"`) say little of what a
/// passage means, yet took many of the window's word pieces.
pub fn readable(md: &str) -> std::borrow::Cow<'_, str> {
    use pulldown_cmark::{Event, Parser, Tag, TagEnd};
    if !md.contains('[') && !md.contains('<') {
        return md.into();
    }
    let mut out = String::with_capacity(md.len());
    // Up to where `md` is copied; the outermost open link's span and text.
    let (mut copied, mut depth) = (0, 0usize);
    let (mut link, mut text): (std::ops::Range<usize>, Option<std::ops::Range<usize>>) = (0..0, None);
    for (event, range) in Parser::new(md).into_offset_iter() {
        match event {
            Event::Start(Tag::Link { .. } | Tag::Image { .. }) => {
                if depth == 0 {
                    (link, text) = (range, None);
                }
                depth += 1;
            }
            Event::End(TagEnd::Link | TagEnd::Image) => {
                depth = depth.saturating_sub(1);
                if depth == 0 && link.start >= copied {
                    out.push_str(&md[copied..link.start]);
                    if let Some(t) = text.take().filter(|t| t.start >= link.start && t.end <= link.end) {
                        out.push_str(&md[t]);
                    }
                    copied = link.end;
                }
            }
            _ if depth > 0 => {
                text = Some(text.map_or(range.start, |t| t.start)..range.end);
            }
            _ => {}
        }
    }
    if copied == 0 {
        return md.into();
    }
    out.push_str(&md[copied..]);
    out.into()
}

/// What is embedded for each chunk and code example, in order: chunks with
/// their page title and headings, code with its language and the prose just
/// before it. The crawl and `trawl embed --missing` both use it, so a vector
/// filled in later matches one made during the crawl.
pub fn embedding_inputs(title: Option<&str>, chunks: &[Chunk], code: &[CodeExample]) -> (Vec<String>, Vec<String>) {
    // Title and heading path in front of each chunk (`chunk_prefix`); with a
    // model, `process::chunk::fit_prefixes` made each chunk fit its window
    // with them.
    let c = chunks.iter().map(|c| chunk_prefix(title, &c.heading_path) + &readable(&c.content)).collect();
    let e = code
        .iter()
        .map(|e| {
            let before: String =
                e.context_before.chars().rev().take(300).collect::<Vec<_>>().into_iter().rev().collect();
            format!("{}\n{}\n{}", e.language, readable(&before), e.code)
        })
        .collect();
    (c, e)
}

/// One name per language (`py` → `python`, `rs` → `rust`), as stored and
/// as filtered by.
pub fn normalize_language(l: &str) -> String {
    let l = l.trim().to_ascii_lowercase();
    match l.as_str() {
        "py" | "python3" => "python",
        "js" | "node" | "mjs" => "javascript",
        "ts" => "typescript",
        "sh" | "zsh" | "shell-session" => "bash",
        "yml" => "yaml",
        "c++" | "cc" => "cpp",
        "cs" | "c#" => "csharp",
        "rs" => "rust",
        "golang" => "go",
        other => other,
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::readable;

    #[test]
    fn links_and_images_are_read_as_their_text() {
        let md = "Use [`list.sort()`](../library/stdtypes.html#list.sort \"list.sort\") or \
                  ![a chart](chart.png), see <https://x.example/> and [the [guide]][g].\n\n\
                  [g]: https://x.example/guide";
        assert_eq!(
            readable(md),
            "Use `list.sort()` or a chart, see https://x.example/ and the [guide].\n\n[g]: https://x.example/guide"
        );
        // A linked image reads as its alt text; text without links is kept as it is.
        assert_eq!(readable("[![logo](l.png)](/) Home"), "logo Home");
        assert_eq!(readable("# Title\n\nplain [text] here"), "# Title\n\nplain [text] here");
        assert_eq!(readable("[](#empty) x"), " x");
    }
}
