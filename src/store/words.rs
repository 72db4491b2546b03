//! A text query's words, and which of them a store ranks by: both stores
//! rank the rows of a query's rarest words, weighing each word by how rare
//! it is, and leave out the words so common that ranking their rows would
//! cost more than their small weight is worth.

/// Rows that one text search ranks at most on the embedded store (text
/// search alone at 500,000 chunks: p50 41 ms, p99 59 ms in `trawl-bench
/// store`). PostgreSQL reads each candidate's `tsvector` once per word, so
/// it ranks fewer (`postgres::search::RANKED_ROWS`).
pub(super) const RANKED_ROWS: i64 = 20_000;

/// The query's words, lowercased, without repeats, at most 32: letters and
/// digits only, so user input never reaches FTS5's or tsquery's syntax.
pub fn words(q: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in q.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let w = w.to_lowercase();
        if !out.contains(&w) {
            out.push(w);
        }
        if out.len() == 32 {
            break;
        }
    }
    out
}

/// The words to rank by, rarest first, while the rows they match (`rows`,
/// counted up to one past `budget`) add up to at most `budget` (and always
/// the rarest word that matches), and whether even that one matches more.
pub(super) fn kept<W>(words: Vec<W>, rows: &[i64], budget: i64) -> (Vec<W>, bool) {
    let mut by_rows: Vec<(i64, W)> = rows.iter().copied().zip(words).filter(|(n, _)| *n > 0).collect();
    by_rows.sort_by_key(|(n, _)| *n);
    let over = by_rows.first().is_some_and(|(n, _)| *n > budget);
    let mut total = 0;
    let mut out = Vec::new();
    for (n, w) in by_rows {
        total += n;
        if !out.is_empty() && total > budget {
            break;
        }
        out.push(w);
    }
    (out, over)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_lowercased_and_not_repeated() {
        assert_eq!(words("Sort a LIST, sort \"it\""), ["sort", "a", "list", "it"]);
        assert!(words(" -- ").is_empty());
        assert_eq!(words(&"w ".repeat(40)).len(), 1);
    }

    #[test]
    fn the_rarest_words_are_kept_within_the_budget() {
        let w = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // "the" would take the total past the budget; "zebra" matches nothing.
        let (k, over) = kept(w(&["the", "sort", "zebra", "list"]), &[RANKED_ROWS + 1, 300, 0, 9_000], RANKED_ROWS);
        assert_eq!(k, w(&["sort", "list"]));
        assert!(!over);
        // A lone common word is still ranked, in part.
        let (k, over) = kept(w(&["the", "a"]), &[RANKED_ROWS + 1, RANKED_ROWS + 1], RANKED_ROWS);
        assert_eq!(k, w(&["the"]));
        assert!(over);
        assert_eq!(kept(w(&["zebra"]), &[0], RANKED_ROWS).0, Vec::<String>::new());
    }
}
