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
/// heading path, each cut to a length.
pub fn chunk_prefix(title: Option<&str>, heading_path: &str) -> String {
    format!("{}\n{}\n", head(title.unwrap_or_default(), TITLE_CHARS), tail(heading_path, HEADINGS_CHARS))
}

/// What is embedded for each chunk and code example, in order: chunks with
/// their page title and headings, code with its language and the prose just
/// before it. The crawl and `trawl embed --missing` both use it, so a vector
/// filled in later matches one made during the crawl.
pub fn embedding_inputs(title: Option<&str>, chunks: &[Chunk], code: &[CodeExample]) -> (Vec<String>, Vec<String>) {
    // Title and heading path in front of each chunk, cut to fit the room a
    // model's window keeps for them (`process::chunk::PREFIX_TOKENS`): the
    // heading path from its nearest heading back.
    let c = chunks.iter().map(|c| chunk_prefix(title, &c.heading_path) + &c.content).collect();
    let e = code
        .iter()
        .map(|e| {
            let before: String =
                e.context_before.chars().rev().take(300).collect::<Vec<_>>().into_iter().rev().collect();
            format!("{}\n{before}\n{}", e.language, e.code)
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
