//! One contract for every `Store`: each case below runs against SQLite and
//! against PostgreSQL (+ pgvector), through the trait only.

use chrono::Utc;
use trawl::embed::{Embedder, lexical::LexicalEmbedder};
use trawl::process::{Chunk, CodeExample};
use trawl::progress::{CrawlState, CrawlStatus};
use trawl::search::Mode;
use trawl::store::{CrawlFilter, DynStore, NewCrawl, PageRecord, PageStatus, SearchFilter, StoreError};

const DIMS: usize = 384;
/// The local embedder's model name, which vector search matches on.
const MODEL: &str = "local-hash-384";

async fn sqlite_store() -> (DynStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = trawl::store::connect(&dir.path().join("t.db").display().to_string(), Some(DIMS)).await.unwrap();
    (store, dir)
}

async fn postgres_store() -> (DynStore, ()) {
    let url = crate::pg::fresh_database_url().await;
    (trawl::store::connect(&url, Some(DIMS)).await.unwrap(), ())
}

/// Runs each contract case once per store.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                let (store, _keep) = super::sqlite_store().await;
                super::$name(store).await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                let (store, _keep) = super::postgres_store().await;
                super::$name(store).await;
            })*
        }
    };
}

contract!(
    crawl_lifecycle_is_stored_and_terminal_rows_never_change,
    pages_are_listed_in_order_with_cursor_and_content,
    chunks_and_code_examples_round_trip_with_vectors,
    text_vector_and_hybrid_search_find_the_right_chunk,
    code_search_filters_by_language_and_query,
    recrawl_replaces_the_tenants_copy_and_keeps_other_tenants,
    no_write_lands_after_cancelled,
    missing_vectors_are_listed_and_filled_in,
    interrupted_crawls_are_marked_at_start,
    a_crawls_login_is_kept_while_it_runs_and_forgotten_when_it_ends,
);

fn new_crawl(tenant: Option<&str>) -> NewCrawl {
    let id = uuid::Uuid::now_v7().to_string();
    NewCrawl {
        status: CrawlStatus::new_queued(id, "https://docs.example.com/".into(), Utc::now()),
        tenant: tenant.map(str::to_string),
        request_json: r#"{"url":"https://docs.example.com/"}"#.into(),
        settings_json: r#"{"url":"https://docs.example.com/"}"#.into(),
        claimed: false,
        source: Default::default(),
    }
}

fn embed(text: &str) -> Vec<f32> {
    LexicalEmbedder::new(DIMS).embed_sync(&[text]).unwrap().remove(0)
}

fn page(url: &str, body: &str, code: Option<(&str, &str)>) -> PageRecord {
    let chunks = body
        .split("\n\n")
        .enumerate()
        .map(|(i, c)| Chunk {
            index: i as u32,
            heading_path: "Guide".into(),
            content: c.to_string(),
            char_count: c.chars().count() as u32,
            // Every chunk on a page of its own, as a PDF's would be.
            page: Some(i as u32 + 1),
            embedding: Some(embed(c)),
        })
        .collect();
    let code_examples = code
        .map(|(lang, code)| {
            vec![CodeExample {
                language: lang.into(),
                code: code.into(),
                context_before: "how to connect".into(),
                context_after: String::new(),
                embedding: Some(embed(code)),
            }]
        })
        .unwrap_or_default();
    PageRecord {
        url: url.into(),
        final_url: Some(url.into()),
        status: PageStatus::Crawled,
        http_status: Some(200),
        title: Some(format!("Title of {url}")),
        content_type: Some("text/html".into()),
        format: Some("markdown"),
        content: Some(body.into()),
        bytes: Some(body.len() as u64),
        fetched_at: Utc::now(),
        source: Some("docs.example.com".into()),
        chunks,
        code_examples,
        ..PageRecord::default()
    }
}

fn running(c: &NewCrawl, pages: &[PageRecord], before: &CrawlStatus) -> CrawlStatus {
    let mut s = before.clone();
    s.status = CrawlState::Running;
    s.pages_crawled += pages.iter().filter(|p| p.status == PageStatus::Crawled).count() as u64;
    s.pages_failed += pages.iter().filter(|p| p.status == PageStatus::Failed).count() as u64;
    s.chunks_stored += pages.iter().map(|p| p.chunks.len() as u64).sum::<u64>();
    s.code_examples += pages.iter().map(|p| p.code_examples.len() as u64).sum::<u64>();
    assert_eq!(s.progress_id, c.status.progress_id);
    s
}

async fn crawl_lifecycle_is_stored_and_terminal_rows_never_change(store: DynStore) {
    let c = new_crawl(Some("acme"));
    store.create_crawl(&c).await.unwrap();
    let id = c.status.progress_id.clone();
    let got = store.get_crawl(&id).await.unwrap().unwrap();
    assert_eq!(got.status, CrawlState::Queued);
    assert_eq!(store.crawl_tenant(&id).await.unwrap(), Some(Some("acme".to_string())));
    assert_eq!(store.crawl_tenant("nope").await.unwrap(), None);

    let mut s = got.clone();
    s.status = CrawlState::Running;
    s.started_at = Some(Utc::now());
    s.current_url = Some("https://docs.example.com/a".into());
    store.save_status(&s).await.unwrap();
    let got = store.get_crawl(&id).await.unwrap().unwrap();
    assert_eq!(got.status, CrawlState::Running);
    assert_eq!(got.current_url.as_deref(), Some("https://docs.example.com/a"));
    assert!(got.started_at.is_some());

    let running = store
        .list_crawls(&CrawlFilter { status: Some(CrawlState::Running), limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(running.len(), 1);
    let other_tenant = store
        .list_crawls(&CrawlFilter { tenant: Some("other".into()), limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert!(other_tenant.is_empty());

    let mut fin = s.clone();
    fin.status = CrawlState::Completed;
    fin.finished_at = Some(Utc::now());
    fin.percentage = 100.0;
    store.save_status(&fin).await.unwrap();
    // A late write of a running status is ignored: terminal is final.
    store.save_status(&s).await.unwrap();
    let got = store.get_crawl(&id).await.unwrap().unwrap();
    assert_eq!(got.status, CrawlState::Completed);
    assert_eq!(got.percentage, 100.0);

    // Newest first, with the id cursor.
    let c2 = new_crawl(None);
    store.create_crawl(&c2).await.unwrap();
    let all = store.list_crawls(&CrawlFilter { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(
        all.iter().map(|c| c.progress_id.clone()).collect::<Vec<_>>(),
        vec![c2.status.progress_id.clone(), id.clone()]
    );
    let after = store
        .list_crawls(&CrawlFilter { before_id: Some(c2.status.progress_id.clone()), limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].progress_id, id);
}

async fn pages_are_listed_in_order_with_cursor_and_content(store: DynStore) {
    let c = new_crawl(None);
    store.create_crawl(&c).await.unwrap();
    let id = &c.status.progress_id;
    let mut pages: Vec<PageRecord> =
        (0..150).map(|i| page(&format!("https://docs.example.com/p{i}"), &format!("page {i}"), None)).collect();
    // PostgreSQL text cannot hold NUL: such a page is still stored.
    pages[3].content = Some("nul\0byte".into());
    pages[4].status = PageStatus::Failed;
    pages[4].error = Some("http_status: HTTP 404".into());
    pages[4].chunks.clear();
    let s = running(&c, &pages, &c.status);
    store.save_pages(&s, &pages, MODEL).await.unwrap();
    assert_eq!(store.count_pages(id).await.unwrap(), 150);
    let got = store.get_crawl(id).await.unwrap().unwrap();
    assert_eq!((got.pages_crawled, got.pages_failed), (149, 1), "the status counts what the same write stored");

    let first = store.list_pages(id, None, 100, false).await.unwrap();
    assert_eq!(first.len(), 100);
    assert_eq!(first[0].url, "https://docs.example.com/p0");
    let rest = store.list_pages(id, Some(first[99].row_id), 100, false).await.unwrap();
    assert_eq!(rest.len(), 50);
    assert_eq!(rest[0].url, "https://docs.example.com/p100");
    assert_eq!(first[4].status, "failed");
    assert_eq!(first[4].error.as_deref(), Some("http_status: HTTP 404"));
    assert_eq!(first[0].chunks, 1);

    let p = store.get_page(id, "https://docs.example.com/p7").await.unwrap().unwrap();
    assert_eq!(p.content.as_deref(), Some("page 7"));
    assert_eq!(p.title.as_deref(), Some("Title of https://docs.example.com/p7"));
    let nul = store.get_page(id, "https://docs.example.com/p3").await.unwrap().unwrap();
    assert!(nul.content.unwrap().starts_with("nul"));
    assert!(store.get_page(id, "https://docs.example.com/none").await.unwrap().is_none());
}

async fn chunks_and_code_examples_round_trip_with_vectors(store: DynStore) {
    let c = new_crawl(None);
    store.create_crawl(&c).await.unwrap();
    let id = &c.status.progress_id;
    let url = "https://docs.example.com/guide";
    let p = page(url, "first part\n\nsecond part\n\nthird part", Some(("python", "import trawl\ntrawl.connect()")));
    store.save_pages(&running(&c, std::slice::from_ref(&p), &c.status), &[p], MODEL).await.unwrap();
    let chunks = store.page_chunks(id, url).await.unwrap();
    assert_eq!(
        chunks.iter().map(|c| c.content.as_str()).collect::<Vec<_>>(),
        ["first part", "second part", "third part"]
    );
    assert_eq!(chunks[1].index, 1);
    assert_eq!(chunks[1].heading_path, "Guide");
    let code = store.page_code_examples(id, url).await.unwrap();
    assert_eq!(code.len(), 1);
    assert_eq!(code[0].language, "python");
    assert_eq!(store.count_content(id).await.unwrap(), (3, 1));
    assert_eq!(store.content_rows(url).await.unwrap(), (1, 3, 1));
    assert!(store.unembedded(10).await.unwrap().is_empty(), "every row was stored with its vector");
    let got = store.get_crawl(id).await.unwrap().unwrap();
    assert_eq!((got.chunks_stored, got.code_examples), (3, 1));
}

async fn seed_search_corpus(store: &DynStore, tenant: Option<&str>) -> String {
    let c = new_crawl(tenant);
    store.create_crawl(&c).await.unwrap();
    let pages = vec![
        page("https://docs.example.com/install", "Install the package with cargo add trawl", None),
        page("https://docs.example.com/cancel", "Cancellation tokens stop every running task at once", None),
        page("https://docs.example.com/vectors", "Embeddings are stored in pgvector columns with an HNSW index", None),
    ];
    store.save_pages(&running(&c, &pages, &c.status), &pages, MODEL).await.unwrap();
    c.status.progress_id
}

async fn text_vector_and_hybrid_search_find_the_right_chunk(store: DynStore) {
    let id = seed_search_corpus(&store, None).await;
    let embedder = LexicalEmbedder::new(DIMS);
    let everywhere = SearchFilter::default();
    // Before and after the vectors reach the index (PostgreSQL indexes
    // behind the writes): the same answers.
    let mut before = Vec::new();
    for round in 0..2 {
        if round == 1 {
            while store.index_vectors(1000).await.unwrap() > 0 {}
        }
        for (m, mode) in [Mode::Text, Mode::Vector, Mode::Hybrid].into_iter().enumerate() {
            let hits =
                trawl::search::search(&*store, &embedder, "cancellation tokens", mode, &everywhere, 5).await.unwrap();
            assert!(!hits.is_empty(), "{mode:?} found nothing");
            assert_eq!(hits[0].url, "https://docs.example.com/cancel", "{mode:?}: {hits:?}");
            assert!(hits.windows(2).all(|w| w[0].score >= w[1].score), "{mode:?} ranks best first");
            let ids: Vec<i64> = hits.iter().map(|h| h.chunk_id).collect();
            if round == 0 {
                before.push(ids);
            } else {
                assert_eq!(before[m], ids, "{mode:?} changed once indexed");
            }
        }
    }
    let hybrid = trawl::search::search(&*store, &embedder, "hnsw index", Mode::Hybrid, &everywhere, 1).await.unwrap();
    assert_eq!(hybrid.len(), 1);
    assert_eq!(hybrid[0].url, "https://docs.example.com/vectors");
    assert!(hybrid[0].page.is_some_and(|p| p >= 1), "a chunk's page comes back with it: {hybrid:?}");
    // Lexical vectors fuse by score: a chunk first in both rankings has the
    // best normalised score of each, 1, and so 1 fused.
    assert!((hybrid[0].score - 1.0).abs() < 1e-9, "score {}", hybrid[0].score);

    let elsewhere = SearchFilter { crawl_id: Some(uuid::Uuid::now_v7().to_string()), ..Default::default() };
    for mode in [Mode::Text, Mode::Vector, Mode::Hybrid] {
        let hits = trawl::search::search(&*store, &embedder, "cancellation", mode, &elsewhere, 5).await.unwrap();
        assert!(hits.is_empty(), "{mode:?} ignored the crawl filter");
    }
    let this_crawl = SearchFilter { crawl_id: Some(id), source: Some("docs.example.com".into()), tenant: None };
    let hits = trawl::search::search(&*store, &embedder, "install", Mode::Hybrid, &this_crawl, 5).await.unwrap();
    assert_eq!(hits[0].url, "https://docs.example.com/install");
    // Words only: query syntax of either engine never reaches it.
    let odd = trawl::search::search(&*store, &embedder, "'\"):*&|! NEAR(", Mode::Hybrid, &everywhere, 5).await;
    assert!(odd.is_ok(), "{odd:?}");
}

async fn code_search_filters_by_language_and_query(store: DynStore) {
    let c = new_crawl(None);
    store.create_crawl(&c).await.unwrap();
    let pages = vec![
        page("https://docs.example.com/py", "python page", Some(("python", "import requests\nrequests.get(url)"))),
        page("https://docs.example.com/rs", "rust page", Some(("rust", "let client = reqwest::Client::new();"))),
    ];
    store.save_pages(&running(&c, &pages, &c.status), &pages, MODEL).await.unwrap();
    let f = SearchFilter::default();
    let rust = store.search_code(None, Some("rust"), &f, 10).await.unwrap();
    assert_eq!(rust.len(), 1);
    assert_eq!(rust[0].url, "https://docs.example.com/rs");
    let requests = store.search_code(Some("requests"), None, &f, 10).await.unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].language, "python");
    assert!(store.search_code(Some("requests"), Some("rust"), &f, 10).await.unwrap().is_empty());
    assert_eq!(store.search_code(None, None, &f, 10).await.unwrap().len(), 2);
}

async fn recrawl_replaces_the_tenants_copy_and_keeps_other_tenants(store: DynStore) {
    let url = "https://docs.example.com/guide";
    let mut ids = Vec::new();
    for (tenant, body) in [(Some("acme"), "old one\n\nold two"), (Some("acme"), "new one"), (Some("globex"), "theirs")]
    {
        let c = new_crawl(tenant);
        store.create_crawl(&c).await.unwrap();
        let p = page(url, body, Some(("rust", "fn main() {}")));
        store.save_pages(&running(&c, std::slice::from_ref(&p), &c.status), &[p], MODEL).await.unwrap();
        ids.push(c.status.progress_id);
    }
    // acme's second crawl replaced its first; globex keeps its own copy.
    assert_eq!(store.content_rows(url).await.unwrap(), (2, 2, 2));
    assert!(store.get_page(&ids[0], url).await.unwrap().is_none());
    assert_eq!(store.page_chunks(&ids[1], url).await.unwrap()[0].content, "new one");
    assert_eq!(store.page_chunks(&ids[2], url).await.unwrap()[0].content, "theirs");

    // A failed re-fetch leaves the good copy alone.
    let c = new_crawl(Some("acme"));
    store.create_crawl(&c).await.unwrap();
    let failed = PageRecord {
        url: url.into(),
        status: PageStatus::Failed,
        error: Some("timeout: no answer".into()),
        fetched_at: Utc::now(),
        ..PageRecord::default()
    };
    store.save_pages(&running(&c, std::slice::from_ref(&failed), &c.status), &[failed], MODEL).await.unwrap();
    assert_eq!(store.page_chunks(&ids[1], url).await.unwrap()[0].content, "new one");

    // A retried batch (its first commit may have landed) replaces its rows.
    let c = new_crawl(Some("initech"));
    store.create_crawl(&c).await.unwrap();
    let p = page("https://docs.example.com/retry", "once", None);
    let s = running(&c, std::slice::from_ref(&p), &c.status);
    store.save_pages(&s, std::slice::from_ref(&p), MODEL).await.unwrap();
    store.save_pages(&s, std::slice::from_ref(&p), MODEL).await.unwrap();
    assert_eq!(store.content_rows("https://docs.example.com/retry").await.unwrap(), (1, 1, 0));
}

async fn no_write_lands_after_cancelled(store: DynStore) {
    let c = new_crawl(None);
    store.create_crawl(&c).await.unwrap();
    let id = &c.status.progress_id;
    let first = vec![page("https://docs.example.com/a", "a", None)];
    let s = running(&c, &first, &c.status);
    store.save_pages(&s, &first, MODEL).await.unwrap();
    let mut fin = s.clone();
    fin.status = CrawlState::Cancelled;
    fin.finished_at = Some(Utc::now());
    store.save_status(&fin).await.unwrap();

    let late = vec![page("https://docs.example.com/b", "b", None)];
    let err = store.save_pages(&running(&c, &late, &s), &late, MODEL).await.unwrap_err();
    assert!(matches!(err, StoreError::Finished(_)), "{err}");
    assert!(!err.is_transient());
    assert_eq!(store.count_pages(id).await.unwrap(), 1);
    let got = store.get_crawl(id).await.unwrap().unwrap();
    assert_eq!((got.status, got.pages_crawled), (CrawlState::Cancelled, 1));
}

async fn missing_vectors_are_listed_and_filled_in(store: DynStore) {
    let c = new_crawl(None);
    store.create_crawl(&c).await.unwrap();
    let mut p = page("https://docs.example.com/late", "no vector yet\n\nnor this", Some(("go", "package main")));
    p.chunks.iter_mut().for_each(|c| c.embedding = None);
    p.code_examples.iter_mut().for_each(|e| e.embedding = None);
    store.save_pages(&running(&c, std::slice::from_ref(&p), &c.status), &[p], MODEL).await.unwrap();
    let rows = store.unembedded(10).await.unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows.iter().filter(|r| r.code).count(), 1);
    let vectors: Vec<_> = rows.into_iter().map(|r| (embed(&r.text), r)).map(|(v, r)| (r, v)).collect();
    store.set_vectors(&vectors, MODEL).await.unwrap();
    assert!(store.unembedded(10).await.unwrap().is_empty());
    let hits = trawl::search::search(
        &*store,
        &LexicalEmbedder::new(DIMS),
        "no vector yet",
        Mode::Vector,
        &SearchFilter::default(),
        5,
    )
    .await
    .unwrap();
    assert_eq!(hits.len(), 2, "the filled-in vectors are searchable");
}

async fn interrupted_crawls_are_marked_at_start(store: DynStore) {
    let queued = new_crawl(None);
    let stopping = new_crawl(None);
    store.create_crawl(&queued).await.unwrap();
    store.create_crawl(&stopping).await.unwrap();
    let mut s = stopping.status.clone();
    s.status = CrawlState::Stopping;
    store.save_status(&s).await.unwrap();
    assert_eq!(store.mark_interrupted().await.unwrap(), 2);
    let q = store.get_crawl(&queued.status.progress_id).await.unwrap().unwrap();
    assert_eq!((q.status, q.error.as_deref()), (CrawlState::Failed, Some("interrupted")));
    let st = store.get_crawl(&stopping.status.progress_id).await.unwrap().unwrap();
    assert_eq!(st.status, CrawlState::Cancelled);
    assert!(st.finished_at.is_some());
}

async fn a_crawls_login_is_kept_while_it_runs_and_forgotten_when_it_ends(store: DynStore) {
    for end in [CrawlState::Completed, CrawlState::Failed, CrawlState::Cancelled] {
        let mut c = new_crawl(None);
        c.request_json = r#"{"url":"https://docs.example.com/","maxPages":5,"headers":{"X-Api-Key":"k-123"},
            "cookies":{"session":"c-456"},"basicAuth":{"username":"ann","password":"p-789"},
            "webhook":{"url":"https://hooks.example.com/","headers":{"X-Hook":"h"}}}"#
            .into();
        store.create_crawl(&c).await.unwrap();
        let id = c.status.progress_id.clone();
        let mut s = c.status.clone();
        s.status = CrawlState::Running;
        store.save_status(&s).await.unwrap();
        let running = store.crawl_request(&id).await.unwrap().unwrap();
        assert!(["k-123", "c-456", "p-789"].iter().all(|v| running.contains(v)), "kept for a resume: {running}");
        s.status = end;
        s.finished_at = Some(Utc::now());
        store.save_status(&s).await.unwrap();
        let ended: serde_json::Value = serde_json::from_str(&store.crawl_request(&id).await.unwrap().unwrap()).unwrap();
        for gone in ["headers", "cookies", "basicAuth"] {
            assert!(ended.get(gone).is_none(), "{end:?}: {gone} is forgotten: {ended}");
        }
        assert_eq!(ended["maxPages"], 5, "the rest stays: {ended}");
        assert_eq!(ended["webhook"]["headers"]["X-Hook"], "h", "a webhook's headers are the receiver's, kept: {ended}");
    }
}
