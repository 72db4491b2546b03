//! `spawn_app()`: the service on port 0 with a fresh database (SQLite, or
//! PostgreSQL when `TRAWL_TEST_STORE=postgres`: `scripts/test` runs the
//! suite both ways), and typed helpers to drive it over real HTTP.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use trawl::config::Config;
use trawl::crawl::Registry;
use trawl::progress::CrawlStatus;
use trawl::store::DynStore;
use trawl::{App, AppError};

pub use trawl_fixtures::{FixtureServer, SiteOptions};

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub registry: Arc<Registry>,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<Result<(), AppError>>>,
    _dir: Option<tempfile::TempDir>,
}

/// The configuration tests run with: loopback allowed, short timeouts.
pub fn test_config(db_path: &std::path::Path) -> Config {
    let mut c = Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}", db_path.display()),
        ..Config::default()
    };
    c.crawler.allow_private_networks = true;
    c.crawler.request_timeout = Duration::from_secs(2);
    // The model's own tests ask for it (`embedding.rs`); the rest need vectors, not meaning.
    c.crawler.embedding.kind = "lexical".into();
    c
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Whether this run puts the end-to-end tests on PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var("TRAWL_TEST_STORE").is_ok_and(|v| v == "postgres")
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    if on_postgres() {
        return spawn_app_pg(configure).await;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let db_path = dir.path().join("trawl.db");
    let mut app = spawn_app_on(&db_path, configure).await;
    app._dir = Some(dir);
    app
}

/// The service on a fresh PostgreSQL database of the shared test cluster.
pub async fn spawn_app_pg(configure: impl FnOnce(&mut Config)) -> TestApp {
    let url = crate::pg::fresh_database_url().await;
    spawn_app_url(&url, configure).await
}

/// The service on the database `url` names (restart tests reuse one).
pub async fn spawn_app_url(url: &str, configure: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config(std::path::Path::new("unused"));
    config.database_url = url.to_string();
    configure(&mut config);
    start(config).await
}

/// Spawns the service on an existing database file (restart tests).
pub async fn spawn_app_on(db_path: &std::path::Path, configure: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config(db_path);
    configure(&mut config);
    start(config).await
}

/// `TRAWL_TEST_LOG=trawl=debug cargo test ...` shows the service's logs in a
/// failing test's output.
fn init_test_logs() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        if let Ok(filter) = std::env::var("TRAWL_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}

async fn start(config: Config) -> TestApp {
    init_test_logs();
    let app = App::build(config).await.expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port().expect("the listener is bound"));
    let registry = app.registry();
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());
    TestApp { address, client: reqwest::Client::new(), registry, shutdown, server: Some(server), _dir: None }
}

pub async fn fixture() -> FixtureServer {
    FixtureServer::start(SiteOptions::default()).await.expect("fixture server")
}

pub async fn fixture_with(opts: SiteOptions) -> FixtureServer {
    FixtureServer::start(opts).await.expect("fixture server")
}

impl TestApp {
    pub fn store(&self) -> &DynStore {
        self.registry.store()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// A request on behalf of the tenant of API key `key`.
    pub fn request_as(&self, key: &str, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path)).bearer_auth(key)
    }

    /// Starts a crawl as the tenant of `key` and returns its id (panics unless 202).
    pub async fn start_crawl_as(&self, key: &str, body: Value) -> String {
        let resp = self.request_as(key, reqwest::Method::POST, "/api/crawls").json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 202);
        resp.json::<Value>().await.unwrap()["progressId"].as_str().unwrap().to_string()
    }

    pub async fn post_crawl(&self, body: Value) -> reqwest::Response {
        self.client.post(self.url("/api/crawls")).json(&body).send().await.expect("request")
    }

    /// Starts a crawl and returns its id; panics unless the answer is 202.
    pub async fn start_crawl(&self, body: Value) -> String {
        let resp = self.post_crawl(body).await;
        let status = resp.status();
        let v: Value = resp.json().await.expect("json");
        assert_eq!(status, 202, "unexpected answer: {v}");
        v["progressId"].as_str().expect("progressId").to_string()
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self.client.get(self.url(path)).send().await.expect("request");
        let code = resp.status().as_u16();
        (code, resp.json().await.unwrap_or(Value::Null))
    }

    /// POSTs `body` as JSON to `path`: the status and the JSON answer.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self.client.post(self.url(path)).json(body).send().await.expect("request");
        let code = resp.status().as_u16();
        (code, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn status(&self, id: &str) -> Value {
        let (code, v) = self.get(&format!("/api/crawls/{id}")).await;
        assert_eq!(code, 200, "status of {id}: {v}");
        v
    }

    pub async fn stop(&self, id: &str) -> (u16, Value) {
        let resp = self.client.post(self.url(&format!("/api/crawls/{id}/stop"))).send().await.expect("request");
        let code = resp.status().as_u16();
        (code, resp.json().await.unwrap_or(Value::Null))
    }

    /// Polls the status until `pred` holds; the crawl drives itself, we only watch.
    pub async fn wait_for(&self, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.status(id).await;
            if pred(&s) {
                return s;
            }
            assert!(tokio::time::Instant::now() < deadline, "condition never held; last status {s}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for the crawl's end; every status read on the way must decode
    /// as the service's own [`CrawlStatus`].
    pub async fn wait_terminal(&self, id: &str) -> Value {
        self.wait_for(id, |s| typed(s).status.is_terminal()).await
    }

    /// The crawl's status as the service's own type.
    pub async fn crawl_status(&self, id: &str) -> CrawlStatus {
        typed(&self.status(id).await)
    }

    /// Waits for the crawl's end and answers its status typed.
    pub async fn finished(&self, id: &str) -> CrawlStatus {
        typed(&self.wait_terminal(id).await)
    }

    /// Starts a crawl and waits for its end.
    pub async fn crawl(&self, body: Value) -> Value {
        let id = self.start_crawl(body).await;
        self.wait_terminal(&id).await
    }

    /// Every page of a crawl, following the cursor.
    pub async fn pages(&self, id: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/crawls/{id}/pages?limit=1000&cursor={c}"),
                None => format!("/api/crawls/{id}/pages?limit=1000"),
            };
            let (code, v) = self.get(&path).await;
            assert_eq!(code, 200, "{v}");
            out.extend(v["pages"].as_array().cloned().unwrap_or_default());
            match v["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return out,
            }
        }
    }

    /// The page of `url` in a crawl's listing.
    pub async fn page(&self, id: &str, url: &str) -> Value {
        self.pages(id)
            .await
            .into_iter()
            .find(|p| p["url"] == url)
            .unwrap_or_else(|| panic!("no page {url} in crawl {id}"))
    }

    /// Stops the service and waits until it has returned.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.server.take() {
            h.await.expect("server task").expect("server ends cleanly");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A status as the wire carries it, decoded as the service's own type.
pub fn typed(v: &Value) -> CrawlStatus {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("not a CrawlStatus ({e}): {v}"))
}

pub fn counts(s: &Value) -> (u64, u64, u64) {
    (s["pagesCrawled"].as_u64().unwrap(), s["pagesFailed"].as_u64().unwrap(), s["pagesSkipped"].as_u64().unwrap())
}

pub fn crawl_body(url: String, crawl_type: &str) -> Value {
    json!({ "url": url, "crawlType": crawl_type })
}

/// The real Socket.IO clients the tests drive the service with.
#[derive(Debug, Clone, Copy)]
pub enum Client {
    /// The official JS `socket.io-client` v4 (npm), run by node.
    Js,
    /// `python-socketio` (PyPI), from the test virtualenv.
    Python,
}

/// Runs a client scenario (see `tests/clients/`) against the app and returns
/// the JSON lines it printed. Panics when the scenario failed.
pub async fn run_client(client: Client, scenario: &str, base: &str, args: &[&str]) -> Vec<Value> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = match client {
        Client::Js => {
            let dir = root.join("tests/clients/js");
            assert!(
                dir.join("node_modules/socket.io-client").exists(),
                "JS test client not installed: run scripts/test"
            );
            let mut c = tokio::process::Command::new("node");
            c.arg(dir.join("client.mjs"));
            c
        }
        Client::Python => {
            let py = root.join(".venv/bin/python");
            assert!(py.exists(), "Python test client not installed: run scripts/test");
            let mut c = tokio::process::Command::new(py);
            c.arg(root.join("tests/clients/python/client.py"));
            c
        }
    };
    cmd.arg(scenario).arg(base).args(args);
    run_script(cmd, &format!("{client:?} {scenario}")).await
}

/// Runs a test client to its end (60 s at most) and answers the JSON lines
/// it printed; it must exit cleanly after a `{"kind": "done"}` line.
pub async fn run_script(mut cmd: tokio::process::Command, what: &str) -> Vec<Value> {
    cmd.kill_on_drop(true);
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("client ran");
    // Read while it runs, so a client that hangs still shows how far it got.
    let drain = |pipe: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>| {
        let buf = Arc::new(std::sync::Mutex::new(String::new()));
        let sink = buf.clone();
        let task = tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let Some(pipe) = pipe else { return };
            let mut lines = tokio::io::BufReader::new(pipe).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                let mut b = sink.lock().unwrap();
                b.push_str(&l);
                b.push('\n');
            }
        });
        (buf, task)
    };
    let (stdout, out_task) = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let (stderr, err_task) = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let status = match tokio::time::timeout(Duration::from_secs(60), child.wait()).await {
        Ok(status) => status.expect("client ran"),
        Err(_) => {
            let _ = child.kill().await;
            panic!(
                "{what} did not finish within 60 s; it printed:\n{}\n{}",
                stdout.lock().unwrap(),
                stderr.lock().unwrap()
            );
        }
    };
    let _ = tokio::join!(out_task, err_task);
    let stdout = stdout.lock().unwrap().clone();
    let lines: Vec<Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(
        status.success() && lines.iter().any(|l| l["kind"] == "done"),
        "{what} failed:\n{stdout}\n{}",
        stderr.lock().unwrap()
    );
    lines
}

/// The `ack` line of a step.
pub fn ack_of<'a>(lines: &'a [Value], step: &str) -> &'a Value {
    &lines
        .iter()
        .find(|l| l["kind"] == "ack" && l["step"] == step)
        .unwrap_or_else(|| panic!("no ack for {step}: {lines:?}"))["data"]
}

/// The events a client received, in order: (name, data).
pub fn events_of(lines: &[Value]) -> Vec<(String, Value)> {
    lines
        .iter()
        .filter(|l| l["kind"] == "event")
        .map(|l| (l["name"].as_str().unwrap_or_default().to_string(), l["data"].clone()))
        .collect()
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseFrame {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// Reads Server-Sent Events off a streaming response.
pub struct SseReader {
    resp: reqwest::Response,
    buf: String,
}

impl SseReader {
    pub fn new(resp: reqwest::Response) -> Self {
        Self { resp, buf: String::new() }
    }

    /// The next event (comments skipped), or `None` when the stream ended.
    pub async fn next(&mut self) -> Option<SseFrame> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut f = SseFrame { id: None, event: None, data: String::new() };
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        f.id = Some(v.trim().to_string());
                        any = true;
                    } else if let Some(v) = line.strip_prefix("event:") {
                        f.event = Some(v.trim().to_string());
                        any = true;
                    } else if let Some(v) = line.strip_prefix("data:") {
                        f.data.push_str(v.trim_start());
                        any = true;
                    }
                }
                if any {
                    return Some(f);
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.resp.chunk())
                .await
                .expect("an SSE chunk within 30 s")
                .ok()??;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

/// How the stand-in embeddings API answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MockMode {
    Ok,
    /// The first request gets 429 (with `Retry-After: 0`), the rest succeed.
    FirstRateLimited,
    /// Every request gets 500.
    AlwaysFail,
    /// Every request is answered after a second and a half.
    Stall,
}

/// A small OpenAI-compatible embeddings server on loopback: the only stand-in
/// the tests use, for the paid API no machine here can reach. It answers the
/// way Ollama and TEI do, without `object` or `usage`.
pub struct MockEmbeddings {
    pub base_url: String,
    pub mode: Arc<std::sync::Mutex<MockMode>>,
    /// Inputs per request, in arrival order (all requests, failed ones too).
    pub batches: Arc<std::sync::Mutex<Vec<usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockEmbeddings {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockEmbeddings {
    pub async fn start(mode: MockMode) -> Self {
        use axum::http::StatusCode;
        use axum::response::IntoResponse;
        let mode = Arc::new(std::sync::Mutex::new(mode));
        let batches = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (m, b) = (mode.clone(), batches.clone());
        let embedder = Arc::new(trawl::embed::LexicalEmbedder::new(64));
        let app = axum::Router::new().route(
            "/v1/embeddings",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                let (m, b) = (m.clone(), b.clone());
                let inputs: Vec<String> = body["input"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                let vectors: Vec<Vec<f32>> = inputs.iter().map(|t| embedder.vector(t)).collect();
                async move {
                    let first = {
                        let mut batches = b.lock().unwrap();
                        batches.push(inputs.len());
                        batches.len() == 1
                    };
                    let mode = *m.lock().unwrap();
                    if mode == MockMode::Stall {
                        tokio::time::sleep(Duration::from_millis(1500)).await;
                    }
                    match mode {
                        MockMode::AlwaysFail => {
                            (StatusCode::INTERNAL_SERVER_ERROR, "upstream exploded").into_response()
                        }
                        MockMode::FirstRateLimited if first => (
                            StatusCode::TOO_MANY_REQUESTS,
                            [("retry-after", "0")],
                            axum::Json(json!({"error": {"message": "slow down", "type": "rate_limit_error", "param": null, "code": null}})),
                        )
                            .into_response(),
                        _ => {
                            let data: Vec<Value> = vectors
                                .into_iter()
                                .enumerate()
                                .map(|(i, v)| json!({"embedding": v, "index": i}))
                                .collect();
                            axum::Json(json!({"data": data, "model": "mock-embed"})).into_response()
                        }
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { base_url, mode, batches, task }
    }

    pub fn set_mode(&self, mode: MockMode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// The embedding configuration that points at this server.
    pub fn config(&self, batch_size: usize, retries: usize) -> trawl::embed::EmbedConfig {
        trawl::embed::EmbedConfig {
            kind: "openai".into(),
            files: Default::default(),
            base_url: self.base_url.clone(),
            model: "mock-embed".into(),
            // What the stand-in returns; PostgreSQL's vector columns need it.
            dimensions: Some(64),
            api_key: Some("test-key".into()),
            batch_size,
            concurrency: 2,
            retries,
        }
    }
}
