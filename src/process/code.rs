//! Code examples: the `<pre>` blocks of a page (plain, Prism, highlight.js,
//! Shiki markup) and the fenced blocks of markdown pages, with their language,
//! the prose around them, and near-duplicates merged.

use std::collections::HashSet;

use super::language::{guess, guess_language, normalize_language, synopsis};

/// A code block found in a page, before filtering.
#[derive(Debug, Clone, PartialEq)]
pub struct RawBlock {
    pub language: Option<String>,
    pub code: String,
}

pub use crate::content::CodeExample;

/// Longest context kept on each side.
pub const CONTEXT_CHARS: usize = 1000;

/// Minimum length of a code example; short languages get a lower bar.
pub fn min_length(language: &str, default_min: usize) -> usize {
    match language {
        "json" | "sql" | "bash" | "shell" | "sh" | "yaml" | "toml" | "graphql" | "regex" | "console" => {
            default_min.min(80)
        }
        _ => default_min,
    }
}

/// The fenced blocks of a markdown text: (language, code, start, end) with
/// byte offsets of the whole fence.
pub fn fenced_blocks(md: &str) -> Vec<(Option<String>, String, usize, usize)> {
    let mut out = Vec::new();
    let mut offset = 0;
    let mut open: Option<(String, Option<String>, usize, String)> = None; // (fence, lang, start, code)
    for line in md.split_inclusive('\n') {
        let trimmed = line.trim_start();
        match &mut open {
            None => {
                let fence: String = trimmed.chars().take_while(|c| *c == '`' || *c == '~').collect();
                if fence.len() >= 3 && fence.chars().all(|c| c == fence.chars().next().unwrap_or('`')) {
                    let info = trimmed[fence.len()..].trim();
                    let lang = info.split_whitespace().next().filter(|l| !l.is_empty()).map(normalize_language);
                    open = Some((fence, lang, offset, String::new()));
                }
            }
            Some((fence, lang, start, code)) => {
                if trimmed.trim_end().starts_with(fence.as_str())
                    && trimmed.trim_end().chars().all(|c| c == '`' || c == '~')
                {
                    out.push((lang.take(), std::mem::take(code), *start, offset + line.len()));
                    open = None;
                } else {
                    code.push_str(line);
                }
            }
        }
        offset += line.len();
    }
    out
}

fn char_floor(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Up to `CONTEXT_CHARS` of the prose on each side of `start..end`; other
/// code blocks are left out, so an example's context describes it.
pub fn context(md: &str, start: usize, end: usize) -> (String, String) {
    let fences = fenced_blocks(md);
    let prose = |from: usize, to: usize| -> String {
        let mut out = String::new();
        let mut at = from;
        for (_, _, s, e) in fences.iter().filter(|(_, _, s, e)| *e > from && *s < to) {
            out.push_str(&md[at..(*s).max(at)]);
            at = (*e).min(to);
        }
        if at < to {
            out.push_str(&md[at..to]);
        }
        out
    };
    let before_start = char_floor(md, start.saturating_sub(CONTEXT_CHARS * 8));
    let before = prose(before_start, start);
    let before: String = before.chars().rev().take(CONTEXT_CHARS).collect::<Vec<_>>().into_iter().rev().collect();
    let after_end = char_floor(md, (end + CONTEXT_CHARS * 8).min(md.len()));
    let after: String = prose(end.min(md.len()), after_end).chars().take(CONTEXT_CHARS).collect();
    (collapse_blank_lines(&before), collapse_blank_lines(&after))
}

fn collapse_blank_lines(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut blank = 0;
    for line in s.trim().lines() {
        if line.trim().is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim().to_string()
}

fn normalized(code: &str) -> String {
    code.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Turns the raw blocks of a page into code examples: language declared or
/// guessed, too-short blocks dropped, context from the markdown, and
/// near-duplicates (same code but for white space, or one inside another)
/// merged into the longest.
pub fn examples(blocks: Vec<RawBlock>, markdown: &str, default_min: usize) -> Vec<CodeExample> {
    let fences = fenced_blocks(markdown);
    let mut out: Vec<CodeExample> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for b in blocks {
        let code = b.code.trim_matches('\n').to_string();
        let norm = normalized(&code);
        if norm.is_empty() {
            continue;
        }
        let language = b.language.unwrap_or_else(|| guess_language(&code));
        if code.chars().count() < min_length(&language, default_min) {
            continue;
        }
        if let Some(i) = seen.iter().position(|s| s.contains(&norm) || norm.contains(s.as_str())) {
            if norm.len() > seen[i].len() {
                seen[i] = norm;
                out[i].code = code;
            }
            continue;
        }
        let (context_before, context_after) = fences
            .iter()
            .find(|(_, c, _, _)| normalized(c) == norm)
            .map(|(_, _, s, e)| context(markdown, *s, *e))
            .unwrap_or_default();
        seen.push(norm);
        out.push(CodeExample { language, code, context_before, context_after, embedding: None });
    }
    out
}

/// The fenced blocks of a markdown page as raw blocks.
pub fn blocks_from_markdown(md: &str) -> Vec<RawBlock> {
    fenced_blocks(md).into_iter().map(|(language, code, _, _)| RawBlock { language, code }).collect()
}

/// Puts a language on every markdown fence that lacks one: the one the
/// HTML declared for the same code (readability drops the classes that
/// carried it), else a guess from the code (`text` for output).
pub fn label_fences(md: &str, blocks: &[RawBlock]) -> String {
    let declared: Vec<(String, &str)> =
        blocks.iter().filter_map(|b| Some((normalized(&b.code), b.language.as_deref()?))).collect();
    let mut used = HashSet::new();
    let fences = fenced_blocks(md);
    let labels: Vec<Option<(String, bool)>> = fences
        .iter()
        .map(|(lang, code, _, _)| {
            if lang.is_some() {
                return None;
            }
            let norm = normalized(code);
            Some(match declared.iter().enumerate().find(|(i, (c, _))| *c == norm && !used.contains(i)) {
                Some((i, (_, l))) => {
                    used.insert(i);
                    (l.to_string(), true)
                }
                None => {
                    let g = guess(code);
                    (g.lang.to_string(), g.sure)
                }
            })
        })
        .collect();
    // A block the code alone does not settle (a bare `name(args)` synopsis)
    // is in the language most of the page's code is in.
    let mut counts: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (lang, _, _, _) in &fences {
        if let Some(l) = lang.as_deref().filter(|l| *l != "text") {
            *counts.entry(l).or_default() += 1;
        }
    }
    for (l, _) in labels.iter().flatten().filter(|(l, sure)| *sure && l != "text") {
        *counts.entry(l.as_str()).or_default() += 1;
    }
    let page_language = counts.into_iter().max_by_key(|(l, n)| (*n, std::cmp::Reverse(*l))).map(|(l, _)| l.to_string());
    let mut out = String::with_capacity(md.len() + 64);
    let mut last = 0;
    for ((_, code, start, _), label) in fences.iter().zip(&labels) {
        let Some((label, sure)) = label else { continue };
        let label = match (&page_language, sure) {
            (Some(page), false) if synopsis(code) => page.as_str(),
            _ => label.as_str(),
        };
        let start = *start;
        let line_end = md[start..].find('\n').map(|n| start + n).unwrap_or(md.len());
        out.push_str(&md[last..line_end]);
        out.push_str(label);
        last = line_end;
    }
    out.push_str(&md[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::language::language_from_highlight;

    #[test]
    fn labels_every_fence_from_the_markup_or_a_guess() {
        let md = "```\nSELECT 1 FROM t;\n```\n\n```\n(3 rows)\n```\n\n```python\nx = 1\n```\n";
        let out = label_fences(md, &[]);
        assert_eq!(out, "```sql\nSELECT 1 FROM t;\n```\n\n```text\n(3 rows)\n```\n\n```python\nx = 1\n```\n");
        assert_eq!(language_from_highlight("highlight-python3 notranslate").as_deref(), Some("python"));
        assert_eq!(language_from_highlight("highlight-default notranslate"), None);
        // A bare call takes the page's language.
        let md = "```\nint PQstatus(const PGconn *conn);\n```\n\n```\nereport(ERROR,\n        (errcode(ERRCODE_DIVISION_BY_ZERO),\n         errmsg(\"division by zero\")));\n```\n";
        assert!(label_fences(md, &[]).ends_with("```c\nereport(ERROR,\n        (errcode(ERRCODE_DIVISION_BY_ZERO),\n         errmsg(\"division by zero\")));\n```\n"), "{}", label_fences(md, &[]));
    }

    #[test]
    fn finds_fences_and_their_context() {
        let md = "Intro text.\n\n```rust\nfn a() {}\n```\n\nAfter text.\n";
        let f = fenced_blocks(md);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].0.as_deref(), Some("rust"));
        assert_eq!(f[0].1, "fn a() {}\n");
        let (b, a) = context(md, f[0].2, f[0].3);
        assert_eq!((b.as_str(), a.as_str()), ("Intro text.", "After text."));
    }

    #[test]
    fn merges_near_duplicates_and_drops_short_blocks() {
        let long = "fn main() {\n    println!(\"hello\");\n}\n".repeat(10);
        let blocks = vec![
            RawBlock { language: Some("rust".into()), code: long.clone() },
            RawBlock { language: Some("rust".into()), code: long.replace("    ", "  ") },
            RawBlock { language: Some("rust".into()), code: "fn x() {}".into() },
            RawBlock { language: None, code: "{\"short\": true, \"but\": \"json\", \"so\": \"kept\", \"when\": \"over eighty characters long\", \"n\": 1}".into() },
        ];
        let ex = examples(blocks, "", 250);
        assert_eq!(ex.len(), 2, "{ex:?}");
        assert_eq!(ex[1].language, "json");
    }

    #[test]
    fn labels_unlabelled_fences() {
        let md = "a\n```\nfn x() {}\n```\n";
        let out = label_fences(md, &[RawBlock { language: Some("rust".into()), code: "fn x() {}".into() }]);
        assert_eq!(out, "a\n```rust\nfn x() {}\n```\n");
    }
}
