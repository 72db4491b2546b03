//! PDFs a crawl reaches become markdown in pages, and their chunks carry
//! the page they start on; a scan without text and a broken file are
//! reported as such.

use std::time::Duration;

use serde_json::json;
use trawl_fixtures::pdf::MANUAL_TITLE;

use crate::helpers::*;

#[tokio::test]
async fn a_pdf_reached_by_a_crawl_becomes_markdown_in_pages_with_chunks_that_know_their_page() {
    let (app, site) = (spawn_app().await, fixture().await);
    let body = json!({"url": site.url("/pdf/index.html"), "crawlType": "recursive", "maxDepth": 1, "chunkSize": 100, "chunkOverlap": 0});
    let s = app.crawl(body).await;
    assert_eq!(s["status"], "completed", "{s}");
    let id = s["progressId"].as_str().unwrap();

    let manual = app.page(id, &site.url("/pdf/manual.pdf")).await;
    assert_eq!(manual["status"], "crawled", "{manual}");
    assert_eq!(manual["title"], MANUAL_TITLE);
    let stored = app.store().get_page(id, &site.url("/pdf/manual.pdf")).await.unwrap().unwrap();
    let md = stored.content.unwrap();
    let chunks = app.store().page_chunks(id, &site.url("/pdf/manual.pdf")).await.unwrap();
    for (n, first) in [(1, "Heron Pump Manual"), (2, "Chapter 2: Priming"), (3, "Chapter 3: Storage")] {
        assert!(md.contains(&format!("<!-- page {n} -->\n\n{first}")), "page {n} under its marker: {md}");
    }
    assert!(chunks.len() >= 3, "{chunks:?}");
    assert!(chunks.iter().all(|c| !c.content.contains("<!-- page")), "markers stay out of chunks");
    let pages: Vec<Option<u32>> = chunks.iter().map(|c| c.page).collect();
    assert_eq!(pages.first(), Some(&Some(1)), "{pages:?}");
    assert!(pages.windows(2).all(|w| w[0] <= w[1]) && pages.contains(&Some(3)), "{pages:?}");

    // Search answers with the page.
    let (_, found) =
        app.post("/api/search", &json!({"query": "priming chamber gauge", "progressId": id, "mode": "text"})).await;
    let top = &found["results"][0];
    assert_eq!(top["url"], site.url("/pdf/manual.pdf"), "{found}");
    assert_eq!(top["page"], 2, "{found}");

    let scan = app.page(id, &site.url("/pdf/scan.pdf")).await;
    assert_eq!(scan["status"], "skipped", "{scan}");
    assert!(scan["error"].as_str().unwrap().starts_with("pdf_without_text: none of the PDF's 1 page(s)"), "{scan}");
    let broken = app.page(id, &site.url("/pdf/broken.pdf")).await;
    assert_eq!(broken["status"], "failed", "{broken}");
    assert!(broken["error"].as_str().unwrap().starts_with("pdf_unreadable: "), "{broken}");
    // An HTML page's chunks have no page.
    let index = app.store().page_chunks(id, &site.url("/pdf/index.html")).await.unwrap();
    assert!(!index.is_empty() && index.iter().all(|c| c.page.is_none()));
}

#[tokio::test]
async fn a_pdf_past_the_size_cap_or_the_time_limit_fails_with_its_reason() {
    let app = spawn_app_with(|c| c.crawler.pdf.time_limit = Duration::from_nanos(1)).await;
    let site = fixture().await;
    let s = app.crawl(json!({"url": site.url("/pdf/manual.pdf"), "crawlType": "page"})).await;
    assert_eq!(s["status"], "failed", "{s}");
    assert!(s["error"].as_str().unwrap().contains("pdf_timeout: reading the PDF took longer than"), "{s}");

    let app = spawn_app_with(|c| c.crawler.max_page_bytes = 300).await;
    let s = app.crawl(json!({"url": site.url("/pdf/manual.pdf"), "crawlType": "page"})).await;
    assert_eq!(s["status"], "failed", "{s}");
    assert!(s["error"].as_str().unwrap().contains("too_large"), "{s}");
}
