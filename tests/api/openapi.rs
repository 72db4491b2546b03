//! The OpenAPI document against the service it describes: schemathesis
//! (from PyPI, installed by `scripts/test`) generates requests from the
//! document, schema-valid and not, and checks every answer against it.

use std::path::Path;

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn schemathesis_finds_no_failure_in_the_openapi_document() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = root.join(".venv/bin/schemathesis");
    assert!(bin.exists(), "{} is missing: scripts/test installs it", bin.display());
    // The guard on, as in production: generated URLs reach nothing private.
    let app = spawn_app_with(|c| c.crawler.allow_private_networks = false).await;
    let id = app.start_crawl(json!({"url": "http://nothing.invalid/", "crawlType": "page"})).await;
    app.wait_terminal(&id).await;
    let other = app.start_crawl(json!({"url": "http://nothing.invalid/other", "crawlType": "page"})).await;
    let source = app.wait_terminal(&other).await["sourceId"].as_str().expect("a source").to_string();
    let work = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(&bin)
        .arg("--config-file")
        .arg(root.join("tests/schemathesis/schemathesis.toml"))
        .args(["run", &app.url("/api/openapi.json"), "--max-examples", "40", "--seed", "1"])
        .args(["--workers", "1", "--no-color", "--generation-database", "none", "--request-timeout", "20"])
        .env("TRAWL_CRAWL_ID", &id)
        .env("TRAWL_SOURCE_ID", &source)
        .current_dir(work.path())
        .output()
        .await
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "schemathesis found failures:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("generated"), "{stdout}");
}
