//! PDFs as markdown: each page's text (pdf-extract lays out its characters
//! in reading order) under a `<!-- page N -->` marker, so that a chunk
//! knows the page it starts on.
//!
//! A PDF is read page by page, and the reading checks a deadline and the
//! crawl's stop between characters: a document that takes too long (or a
//! crawl that is stopped) does not hold a pool thread for long. A PDF
//! whose pages have no text (a scan) is reported as such; text in images
//! is not read (no OCR).

use std::time::{Duration, Instant};

use pdf_extract::{MediaBox, OutputDev, OutputError, PlainTextOutput, Transform};

/// Limits on one PDF.
#[derive(Debug, Clone)]
pub struct PdfSettings {
    /// Reading one PDF takes at most this long; a longer one fails `pdf_timeout`.
    pub time_limit: Duration,
    /// A PDF with more pages fails `pdf_too_many_pages` before it is read.
    pub max_pages: usize,
}

impl Default for PdfSettings {
    fn default() -> Self {
        Self { time_limit: Duration::from_secs(30), max_pages: 2_000 }
    }
}

/// Why a PDF gave no content.
#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error("the PDF cannot be read: {0}")]
    Unreadable(String),
    #[error("the PDF is encrypted and opens only with a password")]
    Encrypted,
    #[error("the PDF has {pages} pages, more than the limit of {limit}")]
    TooManyPages { pages: usize, limit: usize },
    #[error("reading the PDF took longer than {0:?}")]
    TimedOut(Duration),
    #[error("none of the PDF's {0} page(s) has text (a scan?); text in images is not read")]
    NoText(usize),
    #[error("the crawl was stopped")]
    Cancelled,
}

impl PdfError {
    /// The stable word before the page's `error` message.
    pub fn code(&self) -> &'static str {
        match self {
            PdfError::Unreadable(_) => "pdf_unreadable",
            PdfError::Encrypted => "pdf_encrypted",
            PdfError::TooManyPages { .. } => "pdf_too_many_pages",
            PdfError::TimedOut(_) => "pdf_timeout",
            PdfError::NoText(_) => "pdf_without_text",
            PdfError::Cancelled => "cancelled",
        }
    }
}

/// A PDF's text: its title (from its metadata) and each page's text.
#[derive(Debug, Clone, PartialEq)]
pub struct PdfText {
    pub title: Option<String>,
    /// Page 1 first; a page without text is empty.
    pub pages: Vec<String>,
}

/// The marker a page starts with in the markdown.
pub fn marker(page: usize) -> String {
    format!("<!-- page {page} -->")
}

/// The page number of a marker line, if `line` is one.
pub fn marker_page(line: &str) -> Option<u32> {
    line.trim().strip_prefix("<!-- page ")?.strip_suffix(" -->")?.parse().ok()
}

impl PdfText {
    /// The pages as markdown, each under its marker; pages without text
    /// keep their marker, so the numbers stay the document's.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        for (i, text) in self.pages.iter().enumerate() {
            if !md.is_empty() {
                md.push_str("\n\n");
            }
            md.push_str(&marker(i + 1));
            let text = tidy(text);
            if !text.is_empty() {
                md.push_str("\n\n");
                md.push_str(&text);
            }
        }
        md
    }
}

/// A page's text with its lines trimmed, runs of blank lines made one, and
/// characters markdown would read as markup escaped at line starts.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = false;
    for line in text.lines().map(str::trim) {
        if line.is_empty() {
            blank = !out.is_empty();
            continue;
        }
        if blank {
            out.push_str("\n\n");
        } else if !out.is_empty() {
            out.push('\n');
        }
        blank = false;
        if line.starts_with(['#', '>', '|']) || line.starts_with("```") || line.starts_with("<!--") {
            out.push('\\');
        }
        out.push_str(line);
    }
    out
}

/// Reads a PDF's text. `stop` is asked now and then; when it answers
/// true, reading ends with [`PdfError::Cancelled`].
pub fn read(bytes: &[u8], settings: &PdfSettings, stop: &dyn Fn() -> bool) -> Result<PdfText, PdfError> {
    let started = Instant::now();
    let deadline = started + settings.time_limit;
    let mut doc = pdf_extract::Document::load_mem(bytes).map_err(|e| PdfError::Unreadable(e.to_string()))?;
    if doc.is_encrypted() && doc.decrypt("").is_err() {
        return Err(PdfError::Encrypted);
    }
    let pages = doc.get_pages();
    if pages.len() > settings.max_pages {
        return Err(PdfError::TooManyPages { pages: pages.len(), limit: settings.max_pages });
    }
    let mut texts = Vec::with_capacity(pages.len());
    let mut failed = None;
    for &number in pages.keys() {
        let mut text = String::new();
        let mut out = Watched { inner: PlainTextOutput::new(&mut text), deadline, stop, ended: None, seen: 0 };
        let r = pdf_extract::output_doc_page(&doc, &mut out, number);
        if let Some(ended) = out.ended {
            return Err(match ended {
                Ended::Late => PdfError::TimedOut(settings.time_limit),
                Ended::Stopped => PdfError::Cancelled,
            });
        }
        if let Err(e) = r {
            // One broken page does not lose the others.
            tracing::debug!(page = number, error = %e, "a PDF page could not be read");
            failed.get_or_insert_with(|| e.to_string());
            text.clear();
        }
        texts.push(text);
    }
    let has_text = texts.iter().any(|t| t.chars().any(char::is_alphanumeric));
    if !has_text {
        return Err(match failed {
            Some(e) if !texts.is_empty() => PdfError::Unreadable(e),
            _ => PdfError::NoText(texts.len()),
        });
    }
    Ok(PdfText { title: title(&doc), pages: texts })
}

/// The document's `/Title`, when it has a useful one.
fn title(doc: &pdf_extract::Document) -> Option<String> {
    let info = doc.trailer.get(b"Info").ok()?;
    let info = match info {
        pdf_extract::Object::Reference(id) => doc.get_object(*id).ok()?,
        other => other,
    };
    let title = pdf_extract::decode_text_string(info.as_dict().ok()?.get(b"Title").ok()?).ok()?;
    let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
    (!title.is_empty() && !title.eq_ignore_ascii_case("untitled")).then_some(title)
}

enum Ended {
    Late,
    Stopped,
}

/// pdf-extract's plain-text layout, ended early past the deadline or on a stop.
struct Watched<'a, W: pdf_extract::ConvertToFmt> {
    inner: PlainTextOutput<W>,
    deadline: Instant,
    stop: &'a dyn Fn() -> bool,
    ended: Option<Ended>,
    seen: u32,
}

impl<W: pdf_extract::ConvertToFmt> Watched<'_, W> {
    fn check(&mut self) -> Result<(), OutputError> {
        self.seen = self.seen.wrapping_add(1);
        if !self.seen.is_multiple_of(256) {
            return Ok(());
        }
        if Instant::now() > self.deadline {
            self.ended = Some(Ended::Late);
        } else if (self.stop)() {
            self.ended = Some(Ended::Stopped);
        }
        match self.ended {
            Some(_) => Err(OutputError::FormatError(std::fmt::Error)),
            None => Ok(()),
        }
    }
}

impl<W: pdf_extract::ConvertToFmt> OutputDev for Watched<'_, W> {
    fn begin_page(
        &mut self,
        page_num: u32,
        media_box: &MediaBox,
        art_box: Option<(f64, f64, f64, f64)>,
    ) -> Result<(), OutputError> {
        self.seen = 255;
        self.check()?;
        self.inner.begin_page(page_num, media_box, art_box)
    }

    fn end_page(&mut self) -> Result<(), OutputError> {
        self.inner.end_page()
    }

    fn output_character(
        &mut self,
        trm: &Transform,
        width: f64,
        spacing: f64,
        font_size: f64,
        char: &str,
    ) -> Result<(), OutputError> {
        self.check()?;
        self.inner.output_character(trm, width, spacing, font_size, char)
    }

    fn begin_word(&mut self) -> Result<(), OutputError> {
        self.inner.begin_word()
    }

    fn end_word(&mut self) -> Result<(), OutputError> {
        self.inner.end_word()
    }

    fn end_line(&mut self) -> Result<(), OutputError> {
        self.inner.end_line()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_become_markdown_under_their_markers() {
        let t = PdfText {
            title: None,
            pages: vec!["  First page\n\n\n\nsecond para  ".into(), "".into(), "# not a heading\nend".into()],
        };
        assert_eq!(
            t.markdown(),
            "<!-- page 1 -->\n\nFirst page\n\nsecond para\n\n<!-- page 2 -->\n\n<!-- page 3 -->\n\n\\# not a heading\nend"
        );
        assert_eq!(marker_page("<!-- page 12 -->"), Some(12));
        assert_eq!(marker_page("<!-- page x -->"), None);
    }

    #[test]
    fn a_pdf_is_read_page_by_page_with_its_title() {
        let t = read(&trawl_fixtures::pdf::manual(), &PdfSettings::default(), &|| false).unwrap();
        assert_eq!(t.title.as_deref(), Some(trawl_fixtures::pdf::MANUAL_TITLE));
        assert_eq!(t.pages.len(), 3);
        for (page, lines) in t.pages.iter().zip(trawl_fixtures::pdf::MANUAL_PAGES) {
            let words = page.split_whitespace().collect::<Vec<_>>().join(" ");
            for line in lines {
                assert!(words.contains(line), "{line:?} in {page:?}");
            }
        }
        let md = t.markdown();
        assert!(md.starts_with("<!-- page 1 -->\n\nHeron Pump Manual"), "{md}");
        assert!(md.contains("<!-- page 3 -->\n\nChapter 3: Storage"), "{md}");
    }

    #[test]
    fn a_scan_is_reported_as_without_text_and_a_stop_or_deadline_ends_the_reading() {
        let e = read(&trawl_fixtures::pdf::scanned(), &PdfSettings::default(), &|| false).unwrap_err();
        assert_eq!(e.code(), "pdf_without_text", "{e}");
        let long: Vec<String> = (0..400).map(|i| format!("Line {i} of a long page, with words enough")).collect();
        let lines: Vec<&str> = long.iter().map(String::as_str).collect();
        let big = trawl_fixtures::pdf::text_pdf(&[&lines], None);
        let e = read(&big, &PdfSettings::default(), &|| true).unwrap_err();
        assert_eq!(e.code(), "cancelled", "{e}");
        let hurried = PdfSettings { time_limit: Duration::ZERO, ..PdfSettings::default() };
        assert_eq!(read(&big, &hurried, &|| false).unwrap_err().code(), "pdf_timeout");
        let few = PdfSettings { max_pages: 2, ..PdfSettings::default() };
        assert_eq!(read(&trawl_fixtures::pdf::manual(), &few, &|| false).unwrap_err().code(), "pdf_too_many_pages");
    }

    #[test]
    fn what_is_not_a_pdf_is_unreadable_not_a_crash() {
        let e = read(b"%PDF-1.4 garbage", &PdfSettings::default(), &|| false).unwrap_err();
        assert_eq!(e.code(), "pdf_unreadable", "{e}");
        let e = read(b"", &PdfSettings::default(), &|| false).unwrap_err();
        assert_eq!(e.code(), "pdf_unreadable", "{e}");
    }
}
