//! Code examples: the `<pre>` blocks of a page (plain, Prism, highlight.js,
//! Shiki markup) and the fenced blocks of markdown pages, with their language,
//! the prose around them, and near-duplicates merged.

use std::collections::HashSet;

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

/// The language named by a class list or data attribute: `language-x`,
/// `lang-x`, highlight.js's `hljs x`, or a bare known name.
pub fn language_from_class(class: &str) -> Option<String> {
    let mut bare = None;
    for c in class.split_whitespace() {
        if let Some(l) = c.strip_prefix("language-").or_else(|| c.strip_prefix("lang-")) {
            return Some(normalize_language(l));
        }
        if KNOWN.contains(&c.to_ascii_lowercase().as_str()) {
            bare = Some(normalize_language(c));
        }
    }
    bare
}

const KNOWN: &[&str] = &[
    "rust",
    "python",
    "py",
    "javascript",
    "js",
    "typescript",
    "ts",
    "tsx",
    "jsx",
    "go",
    "java",
    "kotlin",
    "c",
    "cpp",
    "csharp",
    "cs",
    "ruby",
    "php",
    "swift",
    "bash",
    "sh",
    "shell",
    "console",
    "json",
    "yaml",
    "yml",
    "toml",
    "sql",
    "html",
    "css",
    "xml",
    "dockerfile",
    "graphql",
    "scala",
    "elixir",
    "haskell",
    "lua",
    "r",
];

pub use crate::content::normalize_language;

/// A guess from the code itself, for blocks without a declared language.
pub fn guess_language(code: &str) -> String {
    let t = code.trim_start();
    let has = |s: &str| code.contains(s);
    if (t.starts_with('{') || t.starts_with('[')) && serde_json::from_str::<serde_json::Value>(code).is_ok() {
        return "json".into();
    }
    // Trimmed: a block often starts with a blank line before its statement.
    let upper = t.to_ascii_uppercase();
    const SQL_STARTS: [&str; 8] = [
        "CREATE TABLE",
        "CREATE INDEX",
        "CREATE UNIQUE INDEX",
        "CREATE VIEW",
        "ALTER TABLE",
        "INSERT INTO",
        "DELETE FROM",
        "DROP TABLE",
    ];
    let statement = SQL_STARTS.iter().any(|s| upper.starts_with(s))
        || (upper.starts_with("UPDATE ") && upper.contains(" SET ") && upper.contains(';'));
    if (upper.contains("SELECT ") && upper.contains(" FROM ")) || statement {
        return "sql".into();
    }
    let scores = [
        ("rust", [has("fn "), has("let mut "), has("::"), has("impl "), has("pub "), has("-> ")]),
        ("python", [has("def "), has("import "), has("self."), has("elif "), has("print("), has("):\n")]),
        ("javascript", [has("const "), has("function "), has("=> "), has("console.log"), has("require("), has("let ")]),
        ("go", [has("func "), has("package "), has(":= "), has("fmt."), has("go "), has("chan ")]),
        ("bash", [t.starts_with("$ "), has("sudo "), has("apt-get "), has("npm "), has("cargo "), t.starts_with("#!")]),
        ("html", [has("<div"), has("</"), has("<span"), has("<a "), has("<p>"), has("class=\"")]),
    ];
    scores
        .iter()
        .map(|(lang, hits)| (hits.iter().filter(|h| **h).count(), *lang))
        .filter(|(n, _)| *n >= 2)
        .max_by_key(|(n, _)| *n)
        .map(|(_, l)| l.to_string())
        .unwrap_or_else(|| "text".into())
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

/// Puts the languages found in the HTML (or confidently guessed) onto the
/// markdown fences that lack one; readability drops the classes that carried them.
pub fn label_fences(md: &str, blocks: &[RawBlock]) -> String {
    let known: Vec<(String, String)> = blocks
        .iter()
        .filter_map(|b| {
            let lang = b.language.clone().unwrap_or_else(|| guess_language(&b.code));
            (lang != "text").then(|| (normalized(&b.code), lang))
        })
        .collect();
    if known.is_empty() {
        return md.to_string();
    }
    let mut out = String::with_capacity(md.len() + 64);
    let mut last = 0;
    let mut used = HashSet::new();
    for (lang, code, start, _) in fenced_blocks(md) {
        if lang.is_some() {
            continue;
        }
        let norm = normalized(&code);
        if let Some((i, (_, l))) = known.iter().enumerate().find(|(i, (c, _))| *c == norm && !used.contains(i)) {
            used.insert(i);
            let line_end = md[start..].find('\n').map(|n| start + n).unwrap_or(md.len());
            out.push_str(&md[last..line_end]);
            out.push_str(l.as_str());
            last = line_end;
        }
    }
    out.push_str(&md[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_from_prism_hljs_and_bare_classes() {
        assert_eq!(language_from_class("language-rust").as_deref(), Some("rust"));
        assert_eq!(language_from_class("hljs language-py").as_deref(), Some("python"));
        assert_eq!(language_from_class("hljs bash").as_deref(), Some("bash"));
        assert_eq!(language_from_class("shiki github-dark"), None);
    }

    #[test]
    fn guesses_languages_from_the_code() {
        assert_eq!(guess_language("fn main() {\n    let mut x = 1;\n}\nimpl Foo {}"), "rust");
        assert_eq!(guess_language("def f(self):\n    import os\n    print(os)"), "python");
        assert_eq!(guess_language("{\"a\": [1, 2]}"), "json");
        assert_eq!(guess_language("SELECT id FROM pages WHERE x = 1"), "sql");
        assert_eq!(guess_language("\n\nCREATE TABLE t (id int);"), "sql", "a leading blank line");
        assert_eq!(guess_language("ALTER TABLE t ADD COLUMN x int;"), "sql");
        assert_eq!(guess_language("UPDATE t SET x = 1 WHERE id = 2;"), "sql");
        assert_ne!(guess_language("with open(path) as f:\n    data = f.read()\n    print(data)"), "sql");
        assert_eq!(guess_language("const f = () => console.log(1);"), "javascript");
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
