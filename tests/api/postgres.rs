//! PostgreSQL-only behaviour: the dimension check at start, `trawl migrate`,
//! the status heartbeat, and a database restart in the middle of a crawl.
//! (The whole end-to-end suite also runs on PostgreSQL: `scripts/test` runs it
//! again with `TRAWL_TEST_STORE=postgres`.)

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::Connection;

use crate::helpers::*;

#[tokio::test]
async fn postgres_refuses_an_embedder_of_another_dimension_at_start() {
    let url = crate::pg::fresh_database_url().await;
    let app = spawn_app_url(&url, |_| {}).await; // the lexical embedder: 384
    app.shutdown().await;
    let mut config = trawl::config::Config { database_url: url.clone(), ..Default::default() };
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.crawler.embedding.kind = "lexical".into();
    config.crawler.embedding.dimensions = Some(64);
    let err = trawl::App::build(config).await.err().expect("a 64-dimension embedder is refused");
    let msg = err.to_string();
    assert!(msg.contains("384-dimension") && msg.contains("64"), "{msg}");
}

#[tokio::test]
async fn migrate_command_prepares_a_postgres_database() {
    let url = crate::pg::fresh_database_url().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["migrate", "--database", &url])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let dims: String = sqlx::query_scalar("SELECT value FROM trawl_settings WHERE key = 'embedding_dimensions'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(dims, "384");
    let hnsw: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_indexes WHERE indexdef LIKE '%USING hnsw%'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(hnsw, 2, "chunks and code examples each have an HNSW index");
    // A second run is a no-op.
    let again = tokio::process::Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["migrate", "--database", &url])
        .output()
        .await
        .unwrap();
    assert!(again.status.success());
}

#[tokio::test]
async fn status_row_is_rewritten_every_second_while_a_crawl_waits() {
    let site = fixture().await;
    let url = crate::pg::fresh_database_url().await;
    let app = spawn_app_url(&url, |c| c.crawler.request_timeout = Duration::from_secs(6)).await;
    // One page that answers after 60 s: nothing changes for 6 s but the
    // heartbeat. Counted, not timed: a loaded machine may delay a tick.
    let id = app.start_crawl(json!({"url": site.url("/trouble/slow"), "crawlType": "page"})).await;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut seen: Vec<DateTime<Utc>> = Vec::new();
    loop {
        let (status, updated): (String, DateTime<Utc>) =
            sqlx::query_as("SELECT status, updated_at FROM crawls WHERE id = $1")
                .bind(&id)
                .fetch_one(&mut conn)
                .await
                .unwrap();
        if status != "running" && !seen.is_empty() {
            break;
        }
        if status == "running" && seen.last() != Some(&updated) {
            seen.push(updated);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.len() >= 3, "the running row was written {} times in 6 s", seen.len());
    let fin = app.wait_terminal(&id).await;
    assert_eq!(fin["status"], "failed");
}

#[tokio::test]
async fn postgres_restart_mid_crawl_retries_writes_and_the_crawl_completes() {
    let cluster = crate::pg::own_cluster().await;
    let url = cluster.fresh_database().await;
    let site = fixture_with(SiteOptions { pages: 300, latency: Duration::from_millis(30), ..Default::default() }).await;
    let app = spawn_app_url(&url, |_| {}).await;
    let id = app
        .start_crawl(json!({"url": site.url("/"), "crawlType": "recursive", "maxDepth": 10, "concurrency": 2}))
        .await;
    app.wait_for(&id, |s| s["pagesCrawled"].as_u64().unwrap_or(0) >= 20).await;
    let restarted = tokio::task::spawn_blocking(move || {
        cluster.restart();
        cluster
    })
    .await
    .unwrap();
    let during = app.status(&id).await;
    assert!(during["pagesCrawled"].as_u64().unwrap() < 300, "pages were still to be written after the restart");
    let fin = app.wait_terminal(&id).await;
    assert_eq!(fin["status"], "completed", "{fin}");
    let (crawled, failed, skipped) = counts(&fin);
    assert_eq!(crawled, 300, "{fin}");
    // What the status counts is exactly what the database holds.
    let store = app.store();
    assert_eq!(store.count_pages(&id).await.unwrap(), crawled + failed + skipped);
    let stored = store.get_crawl(&id).await.unwrap().unwrap();
    assert_eq!((stored.pages_crawled, stored.pages_failed, stored.pages_skipped), (crawled, failed, skipped));
    assert_eq!(store.count_content(&id).await.unwrap().0, stored.chunks_stored);
    // No URL twice.
    assert_eq!(store.content_rows(&site.url("/")).await.unwrap().0, 1);
    app.shutdown().await;
    drop(restarted);
}
