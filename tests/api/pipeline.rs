//! The content pipeline on the fixture site: main-content markdown, chunks,
//! code examples, live counters, re-crawls.

use serde_json::json;
use trawl_fixtures::CODE_EXAMPLE_LANGUAGES;

use crate::helpers::*;

/// Compares with `tests/golden/NAME.md`; `UPDATE_GOLDEN=1` rewrites it.
fn golden(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{name}.md"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("missing {}", path.display()));
    assert_eq!(actual, expected, "markdown of {name} differs from its golden file");
}

#[tokio::test]
async fn fixture_pages_match_their_golden_markdown() {
    let (app, site) = (spawn_app().await, fixture().await);
    for (path, name) in [
        ("/docs/5.html", "docs-5"),
        ("/code/examples.html", "code-examples"),
        ("/trouble/", "trouble"),
        ("/extract/reference.html", "extract-reference"),
        ("/extract/news.html", "extract-news"),
    ] {
        let id = app.start_crawl(crawl_body(site.url(path), "page")).await;
        app.wait_terminal(&id).await;
        let page = app.store().get_page(&id, &site.url(path)).await.unwrap().unwrap();
        // The fixture's port changes from run to run.
        golden(name, &page.content.unwrap_or_default().replace(&site.url(""), "http://fixture"));
    }
}

#[tokio::test]
async fn code_examples_come_with_language_and_context_and_without_duplicates() {
    let (app, site) = (spawn_app().await, fixture().await);
    let id = app.start_crawl(crawl_body(site.url("/code/examples.html"), "page")).await;
    let s = app.wait_terminal(&id).await;
    let examples = app.store().page_code_examples(&id, &site.url("/code/examples.html")).await.unwrap();
    let languages: Vec<&str> = examples.iter().map(|e| e.language.as_str()).collect();
    assert_eq!(languages, CODE_EXAMPLE_LANGUAGES, "{examples:#?}");
    assert_eq!(s["codeExamples"], CODE_EXAMPLE_LANGUAGES.len());
    let rust = &examples[0];
    assert!(
        rust.code.contains("pub fn count_words(text: &str) -> HashMap<&str, usize>"),
        "entities decoded: {}",
        rust.code
    );
    assert!(rust.code.contains("\n    let mut counts"), "the first spelling is kept: {}", rust.code);
    assert!(rust.context_before.contains("count words in Rust"), "{}", rust.context_before);
    assert!(rust.context_after.contains("same idea in Python"), "{}", rust.context_after);
    assert!(rust.context_before.chars().count() <= 1000 && rust.context_after.chars().count() <= 1000);
    assert!(examples[2].code.contains("socket.on(\"crawl_progress\""), "Shiki spans flattened: {}", examples[2].code);
    let page = app.page(&id, &site.url("/code/examples.html")).await;
    assert_eq!(page["codeExamples"], CODE_EXAMPLE_LANGUAGES.len());
}

#[tokio::test]
async fn chunks_respect_their_invariants_on_every_fixture_page() {
    let (app, site) = (spawn_app().await, fixture().await);
    let mut ids = Vec::new();
    for (path, kind) in [
        ("/sitemap.xml", "sitemap"),
        ("/code/examples.html", "page"),
        ("/llms.txt", "llms_txt"),
        ("/llms-full.txt", "llms_txt"),
    ] {
        let id = app
            .start_crawl(json!({"url": site.url(path), "crawlType": kind, "chunkSize": 300, "chunkOverlap": 0}))
            .await;
        let s = app.wait_terminal(&id).await;
        assert_eq!(s["status"], "completed", "{s}");
        ids.push(id);
    }
    let mut checked = 0;
    for id in &ids {
        for p in app.pages(id).await.into_iter().filter(|p| p["status"] == "crawled") {
            let url = p["url"].as_str().unwrap();
            let md = app.store().get_page(id, url).await.unwrap().unwrap().content.unwrap();
            let chunks = app.store().page_chunks(id, url).await.unwrap();
            assert_eq!(p["chunks"], chunks.len(), "{url}");
            let mut from = 0;
            for c in &chunks {
                assert!(c.char_count <= 300, "{url}: chunk {} over capacity", c.index);
                assert_eq!(c.char_count as usize, c.content.chars().count());
                let at = md[from..].find(&c.content).unwrap_or_else(|| panic!("{url}: chunk {} not in order", c.index));
                from += at + c.content.len();
            }
            let visible = |s: &str| s.chars().filter(|c| !c.is_whitespace()).count();
            let covered: usize = chunks.iter().map(|c| visible(&c.content)).sum();
            assert_eq!(covered, visible(&md), "{url}: all text is covered exactly once");
            for (_, code, start, end) in trawl::process::code::fenced_blocks(&md) {
                let fence = &md[start..end];
                if fence.trim().chars().count() <= 300 {
                    assert!(chunks.iter().any(|c| c.content.contains(fence.trim())), "{url}: code block split: {code}");
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 300, "checked {checked} pages");
}

#[tokio::test]
async fn status_counts_the_chunks_and_code_examples_it_stored() {
    let (app, site) = (spawn_app().await, fixture().await);
    let id = app.start_crawl(json!({"url": site.url("/sitemap.xml"), "crawlType": "sitemap"})).await;
    let s = app.wait_terminal(&id).await;
    let (chunks, code) = app.store().count_content(&id).await.unwrap();
    assert!(chunks >= 300, "{chunks}");
    assert_eq!(s["chunksStored"], chunks);
    assert_eq!(s["codeExamples"], code);
    let listed: u64 = app.pages(&id).await.iter().map(|p| p["chunks"].as_u64().unwrap()).sum();
    assert_eq!(listed, chunks);
}

#[tokio::test]
async fn a_recrawl_replaces_a_url_instead_of_duplicating_it() {
    let (app, site) = (spawn_app().await, fixture().await);
    let url = site.url("/code/examples.html");
    let first = app.crawl(crawl_body(url.clone(), "page")).await;
    let once = app.store().content_rows(&url).await.unwrap();
    assert_eq!(once.0, 1);
    assert!(once.1 > 0 && once.2 > 0, "{once:?}");
    let second = app.crawl(crawl_body(url.clone(), "page")).await;
    assert_eq!(app.store().content_rows(&url).await.unwrap(), once, "replaced, not added");
    assert_eq!(app.store().count_content(first["progressId"].as_str().unwrap()).await.unwrap(), (0, 0));
    assert_eq!(second["status"], "completed");
}

#[tokio::test]
async fn chunks_can_be_sized_in_tokens() {
    let (app, site) = (spawn_app().await, fixture().await);
    let id = app
        .start_crawl(json!({"url": site.url("/code/examples.html"), "crawlType": "page", "chunkUnit": "tokens", "chunkSize": 100, "chunkOverlap": 10}))
        .await;
    assert_eq!(app.wait_terminal(&id).await["status"], "completed");
    let chunks = app.store().page_chunks(&id, &site.url("/code/examples.html")).await.unwrap();
    let bpe = trawl::process::chunk::tokenizer().unwrap();
    assert!(chunks.len() > 3);
    assert!(chunks.iter().all(|c| bpe.encode_ordinary(&c.content).len() <= 100));
}

#[tokio::test]
async fn chunk_options_are_checked() {
    let app = spawn_app().await;
    for body in [
        json!({"url": "http://a.com/", "chunkSize": 10}),
        json!({"url": "http://a.com/", "chunkSize": 500, "chunkOverlap": 500}),
        json!({"url": "http://a.com/", "chunkSize": "big"}),
        json!({"url": "http://a.com/", "chunkUnit": "words"}),
    ] {
        let resp = app.post_crawl(body.clone()).await;
        assert_eq!(resp.status(), 400, "{body}");
    }
}
