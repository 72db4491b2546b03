//! The README's examples run as written: every `sh` and `js` block is run
//! here against a real `trawl serve`, unless a `<!-- readme-test: skip
//! (why) -->` line before it says why it cannot run on this machine. Blocks
//! marked `starts` start a server, which must come up. Only the addresses
//! change: `localhost:8080` becomes the test server's port, the example site
//! a fixture site on loopback, and `cargo run --release --` the built binary.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

#[derive(Debug)]
struct Block {
    lang: String,
    code: String,
    mark: Option<String>,
    line: usize,
}

fn blocks(readme: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut mark = None;
    let mut lines = readme.lines().enumerate();
    while let Some((n, l)) = lines.next() {
        if let Some(m) = l.trim().strip_prefix("<!-- readme-test:") {
            mark = Some(m.trim_end_matches("-->").trim().to_string());
        } else if let Some(lang) = l.strip_prefix("```") {
            let mut code = String::new();
            for (_, l) in lines.by_ref() {
                if l.starts_with("```") {
                    break;
                }
                code.push_str(l);
                code.push('\n');
            }
            out.push(Block { lang: lang.trim().to_string(), code, mark: mark.take(), line: n + 1 });
        } else if !l.trim().is_empty() {
            mark = None;
        }
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Run<'a> {
    dir: &'a Path,
    bin: &'a Path,
    port: u16,
    site: String,
}

impl Run<'_> {
    fn substitute(&self, code: &str) -> String {
        code.replace("cargo run --release --", "trawl")
            .replace("localhost:8080", &format!("127.0.0.1:{}", self.port))
            .replace("https://docs.example.com/", &self.site)
    }

    fn command(&self, program: &str) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(program);
        let path = format!("{}:{}", self.bin.display(), std::env::var("PATH").unwrap_or_default());
        c.current_dir(self.dir)
            .env("PATH", path)
            .env("TRAWL_BIND", format!("127.0.0.1:{}", self.port))
            .env("TRAWL_ALLOW_PRIVATE_NETWORKS", "1")
            .env_remove("TRAWL_API_KEYS")
            .env_remove("DATABASE_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    /// Starts the server a block starts, waits until it answers, stops it.
    async fn starts(&self, b: &Block) {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = self.command("bash");
        cmd.current_dir(dir.path()).env("TRAWL_BIND", format!("127.0.0.1:{port}"));
        cmd.arg("-c").arg(self.substitute(b.code.trim()));
        let mut child = cmd.spawn().unwrap();
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(format!("http://127.0.0.1:{port}/healthz")).send().await
                && r.status() == 200
            {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let out = child.wait_with_output().await.unwrap();
                panic!(
                    "README line {}: the server exited ({status}): {}",
                    b.line,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            assert!(tokio::time::Instant::now() < deadline, "README line {}: no server answered", b.line);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        child.kill().await.unwrap();
    }

    async fn run(&self, b: &Block, id: &str) -> String {
        let code = self.substitute(&b.code);
        let mut cmd = match b.lang.as_str() {
            "sh" => {
                let mut c = self.command("bash");
                c.arg("-euo").arg("pipefail").arg("-c").arg(&code);
                c
            }
            "js" => {
                let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/js");
                let mut c = self.command("node");
                c.current_dir(&js).arg("--input-type=module").arg("-e").arg(&code);
                c
            }
            other => panic!("README line {}: no runner for {other}", b.line),
        };
        cmd.env("ID", id);
        let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("README line {}: still running after 120 s", b.line))
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "README line {} failed ({}):\n{code}\n{stdout}\n{}",
            b.line,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!stdout.contains("\"error\":{"), "README line {} answered an error:\n{code}\n{stdout}", b.line);
        stdout
    }
}

#[tokio::test]
async fn every_example_in_the_readme_runs_as_written() {
    if on_postgres() {
        return; // the README's examples run on the embedded default
    }
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let blocks = blocks(&readme);
    let runnable: Vec<&Block> = blocks.iter().filter(|b| b.lang == "sh" || b.lang == "js").collect();
    assert!(runnable.len() >= 8, "{blocks:?}");
    for b in &runnable {
        if let Some(m) = &b.mark {
            assert!(m == "starts" || m.starts_with("skip ("), "README line {}: unknown mark '{m}'", b.line);
        }
    }

    trawl::install_crypto_provider();
    let site = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_trawl"), bin_dir.path().join("trawl")).unwrap();
    let run = Run { dir: dir.path(), bin: bin_dir.path(), port: free_port(), site: site.url("/") };

    // The service as the quick start runs it, in the directory the examples run in.
    let mut server = run.command("trawl");
    // Lexical vectors: a debug build's model would make the examples wait
    // on its embedding (the model's own tests are in `embedding.rs`).
    let mut server = server.arg("serve").env("TRAWL_EMBEDDER", "lexical").spawn().unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{}", run.port);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/healthz")).send().await.map(|r| r.status() != 200).unwrap_or(true) {
        assert!(tokio::time::Instant::now() < deadline, "trawl serve did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A finished crawl for the examples that name one ($ID).
    let resp = client
        .post(format!("{base}/api/crawls"))
        .json(&json!({"url": site.url("/"), "crawlType": "recursive", "maxDepth": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let id = resp.json::<serde_json::Value>().await.unwrap()["progressId"].as_str().unwrap().to_string();
    // Finished before the examples read it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s: serde_json::Value =
            client.get(format!("{base}/api/crawls/{id}")).send().await.unwrap().json().await.unwrap();
        if s["status"] == "completed" {
            break;
        }
        assert!(s["status"] == "queued" || s["status"] == "running", "{s}");
        assert!(tokio::time::Instant::now() < deadline, "the crawl did not end: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut ran = 0;
    for b in runnable {
        match b.mark.as_deref() {
            Some("starts") => run.starts(b).await,
            Some(_) => continue,
            None => {
                run.run(b, &id).await;
            }
        }
        ran += 1;
    }
    assert!(ran >= 6, "ran {ran} blocks");
    server.kill().await.unwrap();
}
