//! A whole source as one stream: JSON lines (one page a line) or one
//! markdown document in the style of llms-full.txt. Pages are read from the
//! store a batch at a time, so memory stays flat whatever the source's size.

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};

use crate::store::{DynStore, ExportPage, Source, StoreError};

/// Pages read from the store per round trip.
const BATCH: u32 = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Markdown,
}

impl Format {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "jsonl" | "ndjson" => Some(Self::Jsonl),
            "markdown" | "md" => Some(Self::Markdown),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Jsonl => "application/x-ndjson",
            Self::Markdown => "text/markdown; charset=utf-8",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Jsonl => "jsonl",
            Self::Markdown => "md",
        }
    }
}

/// The export of `source`: each item is one batch of pages, written out.
/// The pages are read over one snapshot of the store (see
/// [`crate::store::Store::export`]), so a refresh running meanwhile shows
/// each page once.
pub fn stream(
    store: DynStore,
    source: &Source,
    format: Format,
) -> impl Stream<Item = Result<Bytes, StoreError>> + Send + 'static {
    let header = match format {
        Format::Jsonl => None,
        Format::Markdown => Some(format!("# {}\n\n> {}\n\n", source.name, source.url)),
    };
    let id = source.id.clone();
    let start = async move { store.export(&id).await };
    let pages = futures::stream::once(start)
        .map_ok(move |reader| {
            futures::stream::try_unfold(reader, move |mut reader| async move {
                let pages = reader.next(BATCH).await?;
                if pages.is_empty() {
                    return Ok(None);
                }
                let mut out = Vec::with_capacity(pages.iter().map(|p| p.markdown.len() + 256).sum());
                for page in &pages {
                    write_page(&mut out, page, format);
                }
                Ok(Some((Bytes::from(out), reader)))
            })
        })
        .try_flatten();
    futures::stream::iter(header.map(|h| Ok(Bytes::from(h)))).chain(pages)
}

fn write_page(out: &mut Vec<u8>, page: &ExportPage, format: Format) {
    match format {
        Format::Jsonl => {
            // Serializing plain strings and numbers cannot fail.
            let _ = serde_json::to_writer(&mut *out, page);
            out.push(b'\n');
        }
        Format::Markdown => out.extend_from_slice(markdown_section(page).as_bytes()),
    }
}

/// One page as a section: its title as a heading (the stored markdown's own
/// first heading when it has one), where it came from, its markdown.
fn markdown_section(page: &ExportPage) -> String {
    let url = page.final_url.as_deref().unwrap_or(&page.url);
    let body = page.markdown.trim();
    let (heading, rest) = match body.split_once('\n') {
        Some((first, rest)) if first.starts_with("# ") => (first.to_string(), rest.trim_start()),
        None if body.starts_with("# ") => (body.to_string(), ""),
        _ => {
            let title = page.title.as_deref().map(str::trim).filter(|t| !t.is_empty()).unwrap_or(url);
            (format!("# {}", title.replace('\n', " ")), body)
        }
    };
    format!("{heading}\n\nSource: {url}\n\n{rest}\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(markdown: &str, title: Option<&str>) -> ExportPage {
        ExportPage {
            id: 1,
            crawl_id: "c".into(),
            url: "https://docs.example.com/a".into(),
            final_url: None,
            title: title.map(str::to_string),
            description: None,
            markdown: markdown.into(),
            content_hash: None,
            fetched_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_markdown_section_keeps_the_page_s_own_heading_once() {
        let s = markdown_section(&page("# Install\n\nRun it.", Some("Install - Docs")));
        assert_eq!(s, "# Install\n\nSource: https://docs.example.com/a\n\nRun it.\n\n");
    }

    #[test]
    fn a_page_without_a_heading_gets_its_title_or_url() {
        let s = markdown_section(&page("Plain text.", Some("Notes")));
        assert!(s.starts_with("# Notes\n\nSource: https://docs.example.com/a\n\nPlain text."), "{s}");
        let s = markdown_section(&page("## Sub\ntext", None));
        assert!(s.starts_with("# https://docs.example.com/a\n\n"), "{s}");
    }
}
