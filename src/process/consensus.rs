//! A second extractor's opinion on readability's markdown: readability keeps
//! a page's structure (headings, tables, fences) but also the boilerplate
//! inside the article (captions, share rows, "related" lists); trafilatura
//! drops more of that but renders text only. Where trafilatura's text is a
//! clear subset of readability's, readability's blocks that trafilatura does
//! not have are dropped; measured on the public article benchmark
//! (`trawl-bench extract`).

use rustc_hash::{FxHashMap, FxHashSet};

/// Shingles of four word tokens, as the benchmark (and most
/// near-duplicate measures) cut text.
const SHINGLE: usize = 4;

/// Word tokens, lowercased: runs of letters, digits and `_`.
pub fn tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    words(text).map(str::to_lowercase)
}

/// Runs of letters, digits and `_`, as they stand.
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|t| !t.is_empty())
}

/// Word tokens as numbers (a hash of the lowercased word): comparing
/// shingles of numbers allocates nothing per word.
fn token_ids(text: &str) -> Vec<u64> {
    words(text)
        .map(|t| {
            t.chars()
                .flat_map(char::to_lowercase)
                .fold(0xcbf2_9ce4_8422_2325u64, |h, c| (h ^ u64::from(c)).wrapping_mul(0x0100_0000_01b3))
        })
        .collect()
}

/// Shingles by a hash of their four tokens (already hashes: a cheap mix
/// and Fx's map are enough), with how often each occurs.
type Shingles = FxHashMap<u64, usize>;

fn shingles(tokens: &[u64]) -> Shingles {
    let mut out = Shingles::default();
    out.reserve(tokens.len());
    for w in tokens.windows(SHINGLE) {
        let key = w.iter().fold(0u64, |h, &t| h.rotate_left(17) ^ t.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

/// How many of `part`'s shingles `whole` also has (a multiset count).
fn shared(part: &Shingles, whole: &Shingles) -> usize {
    part.iter().map(|(k, &n)| n.min(whole.get(k).copied().unwrap_or(0))).sum()
}

/// When the second opinion is trusted: it must lie inside readability's
/// text almost whole (else the two found different parts of the page) and
/// hold at least half of it (else it lost the article, not boilerplate).
const INSIDE: f64 = 0.9;
const AT_LEAST: f64 = 0.5;
/// A block is kept when this share of its shingles is in the second text.
const KEEP: f64 = 0.5;

/// `markdown` with the blocks that `other` (plain text) does not confirm
/// removed, or unchanged when `other` is not a trustworthy subset of it.
/// Fenced code is always kept: losing an example costs more than a stray
/// block.
pub fn confirm(markdown: &str, other: &str) -> String {
    let blocks = blocks(markdown);
    let per_block: Vec<Vec<u64>> = blocks.iter().map(block_tokens).collect();
    let mine: Vec<u64> = per_block.concat();
    let theirs = token_ids(other);
    let (mine_sh, theirs_sh) = (shingles(&mine), shingles(&theirs));
    let (n_mine, n_theirs): (usize, usize) = (mine_sh.values().sum(), theirs_sh.values().sum());
    if n_theirs == 0
        || n_theirs >= n_mine
        || (n_theirs as f64) < AT_LEAST * n_mine as f64
        || (shared(&theirs_sh, &mine_sh) as f64) < INSIDE * n_theirs as f64
    {
        return markdown.to_string();
    }
    let words: FxHashSet<u64> = theirs.iter().copied().collect();
    let mut out = String::with_capacity(markdown.len());
    for (block, t) in blocks.iter().zip(&per_block) {
        let keep = block.fenced || {
            if t.len() < SHINGLE {
                // Too short for shingles (a heading, a short item): kept when
                // every word is in the other text.
                !t.is_empty() && t.iter().all(|w| words.contains(w))
            } else {
                let sh = shingles(t);
                shared(&sh, &theirs_sh) as f64 >= KEEP * sh.values().sum::<usize>() as f64
            }
        };
        if keep {
            if !out.is_empty() && !block.tight {
                out.push('\n');
            }
            out.push_str(block.text);
        }
    }
    out.trim_end().to_string()
}

/// Blocks shorter than this (in words) are what a second opinion removes
/// (bylines, captions, share rows, "read more" links); a heading is not.
const SHORT: usize = 25;

/// Whether `markdown` has a block the second opinion could be needed for: a
/// short one, a list item, a table, an image, or one that is mostly links.
/// Pages of long prose, headings and code (most of a docs or blog site) do
/// not pay for a second extractor whose only power is to drop blocks; on
/// the article benchmark the pages it would change all have such a block.
pub fn worth_asking(markdown: &str) -> bool {
    blocks(markdown).iter().any(|b| !b.fenced && suspect(b))
}

fn suspect(b: &Block) -> bool {
    let t = b.text.trim_start();
    if b.tight || is_item(t) || t.starts_with('|') || t.starts_with('>') || t.contains("![") {
        return true;
    }
    // Most blocks are plain prose or a heading: no markdown parse needed.
    if t.starts_with('#') {
        return false;
    }
    if !t.contains('[') && !t.contains('<') {
        return words(t).nth(SHORT - 1).is_none();
    }
    let (total, linked) = match link_words(t) {
        Some(counts) => counts,
        None => match parsed_link_words(b.text) {
            Some(counts) => counts,
            None => return false,
        },
    };
    total < SHORT || 2 * linked > total
}

/// Words in all and words in link text by a markdown parse; `None` for a
/// heading.
fn parsed_link_words(text: &str) -> Option<(usize, usize)> {
    use pulldown_cmark::{Event, Parser, Tag, TagEnd};
    let (mut total, mut linked, mut link) = (0usize, 0usize, 0usize);
    for event in Parser::new(text) {
        match event {
            Event::Start(Tag::Heading { .. }) => return None,
            Event::Start(Tag::Link { .. }) => link += 1,
            Event::End(TagEnd::Link) => link = link.saturating_sub(1),
            Event::Text(t) | Event::Code(t) => {
                let n = words(&t).count();
                total += n;
                if link > 0 {
                    linked += n;
                }
            }
            _ => {}
        }
    }
    Some((total, linked))
}

/// Words in all and words in link text of a block of plain `[text](url)`
/// links on one line, read without a markdown parse; `None` for anything
/// else (HTML, images, nested brackets, code, several lines).
fn link_words(t: &str) -> Option<(usize, usize)> {
    if t.trim_end().contains(['<', '`', '\\', '\n']) || t.contains("![") {
        return None;
    }
    let (mut total, mut linked, mut rest) = (0usize, 0usize, t);
    while let Some(open) = rest.find('[') {
        total += words(&rest[..open]).count();
        let after = &rest[open + 1..];
        let close = after.find(']')?;
        let text = &after[..close];
        if text.contains('[') || !after[close + 1..].starts_with('(') {
            return None;
        }
        let target = &after[close + 2..];
        let end = target.find(')')?;
        if target[..end].contains('(') {
            return None;
        }
        let n = words(text).count();
        total += n;
        linked += n;
        rest = &target[end + 1..];
    }
    total += words(rest).count();
    Some((total, linked))
}

/// A run of markdown lines decided as one: a paragraph, a fenced block, a
/// table, or one list item.
struct Block<'a> {
    text: &'a str,
    fenced: bool,
    /// Follows the previous block without a blank line (a list item).
    tight: bool,
}

fn blocks<'a>(md: &'a str) -> Vec<Block<'a>> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut fence: Option<&str> = None;
    let mut tight = false;
    let mut pos = 0;
    let close = |out: &mut Vec<Block<'a>>, start: &mut Option<usize>, end: usize, fenced: bool, tight: bool| {
        if let Some(s) = start.take()
            && !md[s..end].trim().is_empty()
        {
            out.push(Block { text: &md[s..end], fenced, tight });
        }
    };
    for line in md.split_inclusive('\n') {
        let at = pos;
        pos += line.len();
        let t = line.trim_start();
        if let Some(f) = fence {
            if t.starts_with(f) && t[f.len()..].trim().is_empty() {
                close(&mut out, &mut start, pos, true, false);
                fence = None;
            }
            continue;
        }
        if t.starts_with("```") || t.starts_with("~~~") {
            close(&mut out, &mut start, at, false, tight);
            let run = t.len() - t.trim_start_matches(&t[..1]).len();
            fence = Some(&t[..run]);
            start = Some(at);
            tight = false;
            continue;
        }
        if t.trim().is_empty() {
            close(&mut out, &mut start, at, false, tight);
            tight = false;
            continue;
        }
        if is_item(t) && start.is_some() {
            close(&mut out, &mut start, at, false, tight);
            tight = true;
        }
        start.get_or_insert(at);
    }
    close(&mut out, &mut start, pos, fence.is_some(), tight);
    out
}

fn is_item(line: &str) -> bool {
    ["- ", "* ", "+ "].iter().any(|m| line.starts_with(m))
        || line
            .split_once(". ")
            .is_some_and(|(n, _)| !n.is_empty() && n.len() < 4 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// A block's words as a reader sees them (see [`plain`]). Most blocks
/// carry no link, image, entity or HTML, and their words are read off the
/// markdown as it stands, without a markdown parse.
fn block_tokens(b: &Block) -> Vec<u64> {
    let text = b.text.trim_start();
    if b.fenced {
        // The code, without its fences and info string.
        let mut lines: Vec<&str> = text.lines().skip(1).collect();
        if lines.last().is_some_and(|l| {
            let l = l.trim();
            l.starts_with("```") || l.starts_with("~~~")
        }) {
            lines.pop();
        }
        return token_ids(&lines.join("\n"));
    }
    if text.bytes().any(|c| matches!(c, b'[' | b'<' | b'&' | b'_' | b'!' | b'\\')) {
        return token_ids(&plain(text));
    }
    // An ordered item's number is markup, not text.
    let text = match text.split_once(". ") {
        Some((n, rest)) if is_item(text) && n.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => text,
    };
    token_ids(text)
}

/// The text a reader sees of markdown: no link targets or image sources.
pub fn plain(md: &str) -> String {
    use pulldown_cmark::{Event, Parser, Tag, TagEnd};
    let mut out = String::new();
    let mut image = 0usize;
    for event in Parser::new(md) {
        match event {
            Event::Start(Tag::Image { .. }) => image += 1,
            Event::End(TagEnd::Image) => image = image.saturating_sub(1),
            Event::Text(t) | Event::Code(t) if image == 0 => out.push_str(&t),
            Event::SoftBreak | Event::HardBreak | Event::End(_) => out.push('\n'),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARTICLE: &str = "The council voted on Tuesday to build a new library in the old market square downtown.\n\n\
        Work starts next spring and should take two years, the mayor said after the meeting ended.\n\n\
        Share this story on Facebook Twitter and by email with your friends\n\n\
        - Related: the old market square through the ages in twenty photographs\n\
        - Related: ten libraries you have to see before you die this year\n\n\
        ```sql\nSELECT 1;\n```\n\n\
        Residents can comment on the plans until the end of the month at the town hall.";

    #[test]
    fn drops_the_blocks_the_other_text_does_not_have_and_keeps_code() {
        let other = "The council voted on Tuesday to build a new library in the old market square downtown. \
            Work starts next spring and should take two years, the mayor said after the meeting ended. \
            Residents can comment on the plans until the end of the month at the town hall.";
        let out = confirm(ARTICLE, other);
        assert!(out.contains("The council voted"), "{out}");
        assert!(out.contains("Residents can comment"), "{out}");
        assert!(out.contains("```sql\nSELECT 1;\n```"), "{out}");
        assert!(!out.contains("Share this story"), "{out}");
        assert!(!out.contains("Related"), "{out}");
    }

    #[test]
    fn a_block_read_without_a_parse_has_the_words_a_parse_gives() {
        let md = "## A heading with `code` and *stress*\n\n1. An ordered item\n- An item\n\n\
            | a | b |\n|---|---|\n| c | d |\n\n```rust\nfn main() {}\n```\n\n\
            A [link](https://example.com/x_y) and ![an image](/i.png) &amp; <b>bold</b> snake_case.";
        for b in blocks(md) {
            assert_eq!(block_tokens(&b), token_ids(&plain(b.text.trim_start())), "{}", b.text);
        }
    }

    #[test]
    fn links_read_without_a_parse_count_as_a_parse_counts() {
        for t in [
            "Read [the guide](https://example.com/guide) and [the reference](/ref) first, then write.",
            "[a](b) [c d](e)",
        ] {
            assert_eq!(link_words(t), parsed_link_words(t), "{t}");
        }
        for t in ["[![logo](/l.png)](/)", "see `[x](y)`", "<b>[a](b)</b>", "[a] alone"] {
            assert_eq!(link_words(t), None, "{t}");
        }
    }

    #[test]
    fn an_other_text_that_lost_the_article_changes_nothing() {
        let out = confirm(ARTICLE, "Share this story on Facebook Twitter and by email with your friends");
        assert_eq!(out, ARTICLE);
        assert_eq!(confirm(ARTICLE, ""), ARTICLE);
    }

    #[test]
    fn only_a_page_with_a_block_of_the_removable_kinds_is_worth_a_second_opinion() {
        let prose = "Work starts next spring and should take two years, the mayor said after the meeting ended \
            on Tuesday evening, when the council had voted on the plans that the architects showed.";
        let clean = format!("## Plans\n\n{prose}\n\n```sql\nSELECT 1;\n```\n\n{prose}");
        assert!(!worth_asking(&clean));
        assert!(worth_asking(ARTICLE));
        for extra in [
            "By Jane Doe, 3 March",
            "- Related: the old market square",
            "| a | b |\n|---|---|\n| 1 | 2 |",
            "![The square](/sq.png) The square at dawn",
            "> Quoted from elsewhere",
        ] {
            assert!(worth_asking(&format!("{clean}\n\n{extra}")), "{extra}");
        }
        let links: String = (0..30).map(|i| format!("[tag number {i}](/t/{i}) ")).collect();
        assert!(worth_asking(&format!("{clean}\n\n{links}")));
    }

    #[test]
    fn a_fence_with_blank_lines_is_one_block() {
        let b = blocks("a para\n\n```\nx\n\ny\n```\n- one\n- two\n");
        let texts: Vec<&str> = b.iter().map(|b| b.text).collect();
        assert_eq!(texts, vec!["a para\n", "```\nx\n\ny\n```\n", "- one\n", "- two\n"]);
        assert!(b[1].fenced && b[3].tight);
    }
}
