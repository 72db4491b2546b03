//! Chunking markdown with text-splitter's `MarkdownSplitter`: chunks follow
//! the document's structure (sections, paragraphs, code blocks), so a fenced
//! block that fits in a chunk is never cut; each chunk knows the headings it
//! sits under.

use text_splitter::{Characters, ChunkConfig, ChunkSizer, MarkdownSplitter};

use crate::embed::TokenCounter;

/// An embedding model's window: chunks are cut to fit it, so the model
/// reads every word of a chunk rather than silently dropping its tail.
#[derive(Clone, Copy)]
pub struct TokenWindow<'a> {
    pub counter: &'a dyn TokenCounter,
    /// Tokens a chunk may have (the model's window less what goes in front
    /// of a chunk when it is embedded: the page title and heading path).
    pub tokens: usize,
}

/// Room kept in the window for the title and heading path put in front of
/// a chunk when it is embedded (`content::chunk_prefix`); a chunk whose
/// prefix takes more is cut again ([`fit_prefixes`]).
pub const PREFIX_TOKENS: usize = 64;

/// A chunk's size against two limits at once, the crawl's own (`size` in
/// its unit) and the window's, each scaled to a common capacity, the
/// smaller of the two: a chunk fits when it is within both. Scaled down,
/// never up, so a size stays at most the chunk's byte length, which
/// text-splitter relies on to skip levels without measuring them.
struct Bounded<'a, S> {
    unit: S,
    window: TokenWindow<'a>,
    size: usize,
}

impl<S> Bounded<'_, S> {
    fn capacity(&self) -> usize {
        self.size.min(self.window.tokens).max(1)
    }

    fn scale(&self, n: usize, limit: usize) -> usize {
        n.saturating_mul(self.capacity()).div_ceil(limit.max(1))
    }
}

impl<S: ChunkSizer> ChunkSizer for Bounded<'_, S> {
    fn size(&self, chunk: &str) -> usize {
        let unit = self.scale(self.unit.size(chunk), self.size);
        unit.max(self.scale(self.window.counter.count(chunk), self.window.tokens))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChunkUnit {
    /// Unicode characters (the default).
    #[default]
    Characters,
    /// Tokens of OpenAI's cl100k_base encoding (tiktoken).
    Tokens,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkOptions {
    /// Largest chunk, in `unit`s.
    pub size: usize,
    /// Units shared by consecutive chunks.
    pub overlap: usize,
    pub unit: ChunkUnit,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        Self { size: 1200, overlap: 150, unit: ChunkUnit::Characters }
    }
}

/// The cl100k_base tokenizer, built once per process (it takes a while).
pub fn tokenizer() -> Option<&'static tiktoken_rs::CoreBPE> {
    static BPE: std::sync::OnceLock<Option<tiktoken_rs::CoreBPE>> = std::sync::OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::cl100k_base().ok()).as_ref()
}

pub use crate::content::Chunk;

/// The error text-splitter gives for an overlap not smaller than the size.
#[derive(Debug, thiserror::Error)]
#[error("chunkOverlap must be smaller than chunkSize")]
pub struct ChunkConfigError;

impl ChunkOptions {
    pub fn validate(&self) -> Result<(), ChunkConfigError> {
        ChunkConfig::new(self.size).with_overlap(self.overlap).map(|_| ()).map_err(|_| ChunkConfigError)
    }
}

/// Headings (byte offset, level, text) outside code fences.
fn headings(md: &str) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let mut offset = 0;
    let mut in_fence = false;
    for line in md.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            in_fence = !in_fence;
        } else if !in_fence && t.starts_with('#') {
            let level = t.chars().take_while(|c| *c == '#').count();
            let text = t[level..].trim();
            if level <= 6 && (t[level..].starts_with(' ') || text.is_empty()) && !text.is_empty() {
                out.push((offset, level, text.to_string()));
            }
        }
        offset += line.len();
    }
    out
}

pub fn chunk_markdown(md: &str, opts: ChunkOptions) -> Vec<Chunk> {
    chunk(md, opts, false, None)
}

/// [`chunk_markdown`] (or [`chunk_pages`], for a PDF's markdown), each
/// chunk also within `window` when one is given.
pub fn chunk_within(md: &str, opts: ChunkOptions, paged: bool, window: Option<TokenWindow>) -> Vec<Chunk> {
    chunk(md, opts, paged, window)
}

/// Chunks whose title and heading path take more than [`PREFIX_TOKENS`]
/// (headings dense in tokens: links with titles, code names) cut again,
/// each piece under the same headings, so that what is embedded of every
/// chunk fits the whole window; chunks within it are kept as they are.
pub fn fit_prefixes(chunks: Vec<Chunk>, title: Option<&str>, opts: ChunkOptions, window: TokenWindow) -> Vec<Chunk> {
    let whole = window.tokens + PREFIX_TOKENS;
    let mut out = Vec::with_capacity(chunks.len());
    for c in chunks {
        let prefix = window.counter.count(&crate::content::chunk_prefix(title, &c.heading_path));
        if prefix <= PREFIX_TOKENS || prefix + window.counter.count(&c.content) <= whole {
            out.push(c);
            continue;
        }
        // A prefix nearly as long as the window leaves a little room still.
        let room = TokenWindow { counter: window.counter, tokens: whole.saturating_sub(prefix).max(MIN_ROOM) };
        for piece in chunk(&c.content, opts, false, Some(room)) {
            out.push(Chunk { heading_path: c.heading_path.clone(), page: c.page, ..piece });
        }
    }
    for (i, c) in out.iter_mut().enumerate() {
        c.index = i as u32;
    }
    out
}

/// The fewest tokens a chunk is cut to, whatever its prefix.
const MIN_ROOM: usize = 32;

/// A PDF's markdown (pages under `<!-- page N -->` markers, see
/// `pdf.rs`): each chunk carries the page it starts on, and the markers
/// are left out of its text.
pub fn chunk_pages(md: &str, opts: ChunkOptions) -> Vec<Chunk> {
    chunk(md, opts, true, None)
}

fn chunk(md: &str, opts: ChunkOptions, paged: bool, window: Option<TokenWindow>) -> Vec<Chunk> {
    // Asked for only when used: building it takes a while.
    let bpe = if opts.unit == ChunkUnit::Tokens { tokenizer() } else { None };
    let size = opts.size.max(1);
    let bounded = |capacity: usize| (capacity, opts.overlap * capacity / size);
    match (bpe, window) {
        (Some(bpe), Some(window)) => {
            let sizer = Bounded { unit: bpe, window, size };
            sized(md, bounded(sizer.capacity()), paged, sizer)
        }
        (Some(bpe), None) => sized(md, (size, opts.overlap), paged, bpe),
        (None, Some(window)) => {
            let sizer = Bounded { unit: Characters, window, size };
            sized(md, bounded(sizer.capacity()), paged, sizer)
        }
        (None, None) => sized(md, (size, opts.overlap), paged, Characters),
    }
}

fn sized<S: ChunkSizer>(md: &str, (capacity, overlap): (usize, usize), paged: bool, sizer: S) -> Vec<Chunk> {
    match ChunkConfig::new(capacity).with_sizer(sizer).with_overlap(overlap) {
        Ok(config) => split(md, MarkdownSplitter::new(config), paged),
        Err(_) => Vec::new(),
    }
}

/// Byte offset and number of each page marker.
fn page_marks(md: &str) -> Vec<(usize, u32)> {
    let mut offset = 0;
    let mut out = Vec::new();
    for line in md.split_inclusive('\n') {
        if let Some(page) = super::pdf::marker_page(line) {
            out.push((offset, page));
        }
        offset += line.len();
    }
    out
}

fn split<S: text_splitter::ChunkSizer>(md: &str, splitter: MarkdownSplitter<S>, paged: bool) -> Vec<Chunk> {
    let heads = headings(md);
    let marks = if paged { page_marks(md) } else { Vec::new() };
    let mut out = Vec::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    let (mut h, mut m) = (0, 0);
    let mut page = None;
    for (offset, text) in splitter.chunk_indices(md) {
        while h < heads.len() && heads[h].0 <= offset {
            let (_, level, title) = &heads[h];
            stack.retain(|(l, _)| l < level);
            stack.push((*level, title.clone()));
            h += 1;
        }
        while m < marks.len() && marks[m].0 <= offset {
            page = Some(marks[m].1);
            m += 1;
        }
        let (content, starts_on) = match paged {
            false => (text.to_string(), None),
            true => {
                // Markers before the chunk's first words name its page.
                let mut starts_on = page;
                for line in text.lines() {
                    match super::pdf::marker_page(line) {
                        Some(p) => starts_on = Some(p),
                        None if line.trim().is_empty() => {}
                        None => break,
                    }
                }
                let kept: Vec<&str> = text.lines().filter(|l| super::pdf::marker_page(l).is_none()).collect();
                (kept.join("\n").trim().to_string(), starts_on)
            }
        };
        if content.is_empty() {
            continue;
        }
        out.push(Chunk {
            index: out.len() as u32,
            char_count: content.chars().count() as u32,
            content,
            heading_path: stack.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>().join(" > "),
            page: starts_on,
            embedding: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_carry_heading_paths_and_keep_code_blocks_whole() {
        let code = "```rust\nfn main() {\n    println!(\"hi\");\n}\n```\n";
        let md = format!(
            "# Guide\n\n{}\n\n## Install\n\n{}\n\n{code}\n## Use\n\n{}\n",
            "Intro words. ".repeat(20),
            "Install words. ".repeat(20),
            "Use words. ".repeat(20)
        );
        let chunks = chunk_markdown(&md, ChunkOptions { size: 300, overlap: 0, ..ChunkOptions::default() });
        assert!(chunks.len() >= 3);
        assert!(chunks.iter().all(|c| c.char_count <= 300));
        assert!(chunks.iter().any(|c| c.content.contains(code.trim())), "code block intact: {chunks:#?}");
        assert_eq!(chunks[0].heading_path, "Guide");
        assert!(chunks.iter().any(|c| c.heading_path == "Guide > Install"));
        let last = chunks.last().unwrap();
        assert!(last.heading_path.ends_with("Use") || last.content.contains("## Use"), "{chunks:#?}");
    }

    #[test]
    fn token_chunks_stay_within_their_token_budget() {
        let md = format!("# Title\n\n{}\n\n```rust\nfn main() {{}}\n```\n", "Tokens are not characters. ".repeat(200));
        let opts = ChunkOptions { size: 64, overlap: 8, unit: ChunkUnit::Tokens };
        let chunks = chunk_markdown(&md, opts);
        let bpe = tokenizer().unwrap();
        assert!(chunks.len() > 5);
        assert!(chunks.iter().all(|c| bpe.encode_ordinary(&c.content).len() <= 64));
        assert!(chunks.iter().any(|c| c.char_count > 64), "characters exceed the token budget");
    }

    #[test]
    fn overlap_must_be_smaller_than_size() {
        let o = |size, overlap| ChunkOptions { size, overlap, ..ChunkOptions::default() };
        assert!(o(100, 100).validate().is_err());
        assert!(o(100, 10).validate().is_ok());
    }
}
