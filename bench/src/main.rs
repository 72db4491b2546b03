//! `trawl-bench`: crawl throughput, peak memory and stop latency of
//! `trawl serve` on a generated site served over loopback, and the same site
//! crawled by spider_cli for comparison. A benchmark, not a test: run it by
//! hand (see the README) and report what it prints.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Value, json};
use trawl_fixtures::{FixtureServer, SiteOptions};

#[derive(Parser)]
#[command(about = "Benchmarks of trawl on loopback; see the README.")]
enum Cli {
    /// Crawl throughput, peak RSS and stop latency on a generated site, and spider_cli on the same site.
    Crawl(Args),
    /// Socket.IO fan-out: many clients over many crawl rooms, then many idle connections.
    Realtime(RealtimeArgs),
    /// Content pipeline throughput: MB of HTML per second through extraction, markdown, chunks and code examples.
    Process(ProcessArgs),
    /// PostgreSQL store: chunk insert rate with 384-dimension vectors, and hybrid-search latency.
    Store(StoreArgs),
    /// Chromium rendering: pages/s in `browser` mode, peak memory of the service plus Chromium, and
    /// the share of pages `auto` sends to the browser on a mixed site.
    Browser(BrowserArgs),
    /// Several instances on one PostgreSQL and one Redis: throughput of one instance against two,
    /// and the latency of a stop sent to one instance for a crawl running on the other.
    Cluster(ClusterArgs),
    /// Sources: a refresh of an unchanged site against its first crawl (inputs sent to an
    /// OpenAI-compatible stand-in, wall time), a refresh after edits, and a large export.
    Sources(SourcesArgs),
    /// The tools' ways in: `/v2/scrape` latency on a loopback page (sequential and concurrent),
    /// and webhook delivery latency from the event to a loopback receiver.
    Interfaces(InterfacesArgs),
    /// Main-content extraction on the public article-extraction benchmark (181 real pages with their
    /// true text), crawled through the service and scored from the stored markdown.
    Extract(ExtractArgs),
    /// Main-content extraction on a documentation manual a Debian package ships as HTML (the
    /// PostgreSQL manual by default): words of each page's main container kept, navigation rows
    /// kept, code blocks labelled with a language, and a sample of labels to check by hand.
    Docs(DocsArgs),
    /// Search quality on a real manual (the Python manual from python3.11-doc): recall@5, MRR@10
    /// and nDCG@10 of text, vector and hybrid search over questions with the pages that answer them.
    SearchQuality(SearchQualityArgs),
    /// The local model's embedding throughput (chunks/s at full chunk length, chunks of the Python
    /// manual), side by side with the same model in sentence-transformers (PyPI) on the same chunks.
    EmbedSpeed(EmbedSpeedArgs),
}

#[derive(Parser)]
struct EmbedSpeedArgs {
    /// The manual's HTML (`scripts/bench-data` installs it).
    #[arg(long, default_value = "/usr/share/doc/python3.11/html")]
    dir: PathBuf,
    /// Chunks embedded, the longest the manual has.
    #[arg(long, default_value_t = 1024)]
    chunks: usize,
    /// A Python with sentence-transformers installed (`bench/embed_speed.py` says how); none: trawl only.
    #[arg(long)]
    python: Option<PathBuf>,
    /// Also run candle_transformers' BERT on the same chunks, as trawl did
    /// before its own encoder (padded batches of 8, two at a time).
    #[arg(long)]
    candle: bool,
}

#[derive(Parser)]
struct SearchQualityArgs {
    /// The manual's HTML (`scripts/bench-data` installs it).
    #[arg(long, default_value = "/usr/share/doc/python3.11/html")]
    dir: PathBuf,
    /// The questions, each with the pages that answer it (paths under `dir`).
    #[arg(long, default_value = "bench/data/python-questions.json")]
    questions: PathBuf,
    /// Print each question's first pages, per mode.
    #[arg(long)]
    verbose: bool,
    #[arg(long, default_value = "target/release/trawl")]
    trawl: PathBuf,
    /// The service's embedder: `local` (the model) or `lexical`.
    #[arg(long, default_value = "local")]
    embedder: String,
    /// Also score other fusions of the text and vector rankings (RRF constants and weights).
    #[arg(long)]
    fusions: bool,
    /// Keep the crawled store in this SQLite file; when it already holds a
    /// crawl from an earlier run, ask the questions of it without crawling
    /// (the model's vectors take most of an hour to make on two cores).
    #[arg(long)]
    database: Option<PathBuf>,
    /// With a kept store: also rank text by `bm25` with other weights for
    /// the heading path and the page title (content counts 1), alone and
    /// fused with the service's vector ranking.
    #[arg(long)]
    text_weights: bool,
    /// Crawl into a fresh database on this PostgreSQL server (with
    /// pgvector) instead of SQLite, dropped at the end.
    #[arg(long, conflicts_with = "database")]
    server: Option<String>,
}

#[derive(Parser)]
struct DocsArgs {
    /// The manual's HTML files (`scripts/bench-data` installs the default).
    #[arg(long, default_value = "/usr/share/doc/postgresql-doc-15/html")]
    dir: PathBuf,
    /// A page's main container, as the manual's markup marks it.
    #[arg(long, default_value = "body")]
    container: String,
    /// The manual's navigation, inside or around the container.
    #[arg(long, default_value = "div.navheader, div.navfooter")]
    nav: String,
    /// Code blocks printed with their label, to check by hand (every n-th block).
    #[arg(long, default_value_t = 60)]
    sample: usize,
    /// Print the pages that keep the least.
    #[arg(long, default_value_t = 10)]
    worst: usize,
    /// Print these pages' stored markdown and the container words they lost (e.g. `/index.html`).
    #[arg(long)]
    show: Vec<String>,
    #[arg(long, default_value = "target/release/trawl")]
    trawl: PathBuf,
}

#[derive(Parser)]
struct ExtractArgs {
    /// The benchmark's data: `ground-truth.json` and `html/<id>.html.gz`.
    #[arg(long, default_value = "../shared/data/article-extraction-benchmark")]
    data: PathBuf,
    /// Print the worst pages, by F1.
    #[arg(long, default_value_t = 10)]
    worst: usize,
    #[arg(long, default_value = "target/release/trawl")]
    trawl: PathBuf,
}

#[derive(Parser)]
struct InterfacesArgs {
    /// Scrapes timed, one after the other and then `concurrency` at a time.
    #[arg(long, default_value_t = 1000)]
    scrapes: usize,
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Crawls with a webhook (one page each) whose deliveries are timed.
    #[arg(long, default_value_t = 200)]
    crawls: usize,
    #[arg(long, default_value = "target/release/trawl")]
    trawl: PathBuf,
}

#[derive(Parser)]
struct SourcesArgs {
    /// Pages of the site refreshed.
    #[arg(long, default_value_t = 5000)]
    pages: usize,
    /// Of those, edited, removed and added between the crawls.
    #[arg(long, default_value_t = 50)]
    edited: usize,
    #[arg(long, default_value_t = 20)]
    removed: usize,
    #[arg(long, default_value_t = 30)]
    added: usize,
    /// Whether the site answers conditional GETs (ETag, 304).
    #[arg(long)]
    validators: bool,
    /// Time the stand-in takes per embeddings request, as a remote API would.
    #[arg(long, default_value_t = 100)]
    embed_latency_ms: u64,
    /// Pages of the source exported (0: skip the export phase).
    #[arg(long, default_value_t = 50_000)]
    export_pages: usize,
    #[arg(long, default_value = "target/release/trawl")]
    trawl: PathBuf,
}

#[derive(Parser)]
struct ClusterArgs {
    /// A PostgreSQL server with pgvector (superuser URL); a fresh database is
    /// made on it for each phase and dropped after.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    server: String,
    /// Pages of the generated site.
    #[arg(long, default_value_t = 1000)]
    pages: usize,
    /// Latency of each page, in milliseconds (0: CPU-bound).
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Crawls of the whole site posted at once in the throughput phase.
    #[arg(long, default_value_t = 8)]
    crawls: usize,
    /// Crawls running at once per instance.
    #[arg(long, default_value_t = 4)]
    max_crawls: usize,
    /// Fetches in flight per crawl.
    #[arg(long, default_value_t = 16)]
    concurrency: u32,
    /// Crawls stopped across instances to time the stop.
    #[arg(long, default_value_t = 100)]
    stops: usize,
    #[arg(long, default_value = "target/release/trawl")]
    trawl: PathBuf,
}

#[derive(Parser)]
struct BrowserArgs {
    /// Pages of the fixture site.
    #[arg(long, default_value_t = 200)]
    pages: usize,
    /// Every n-th page (not `/`) is a JavaScript shell: the mixed site.
    #[arg(long, default_value_t = 5)]
    js_every: usize,
    /// Browser pages open at once.
    #[arg(long, default_value_t = 4)]
    browser_concurrency: u32,
    /// Crawls timed in `browser` mode (the first one includes Chromium's start).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    #[arg(long, default_value = "target/release/trawl")]
    trawl: PathBuf,
}

#[derive(Parser)]
struct StoreArgs {
    /// A PostgreSQL server with pgvector installed (superuser URL); a fresh
    /// database is made on it for the run and dropped after.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    server: String,
    /// Chunks to insert.
    #[arg(long, default_value_t = 100_000)]
    chunks: usize,
    /// Chunks per page.
    #[arg(long, default_value_t = 20)]
    chunks_per_page: usize,
    /// Pages per write (the crawl writer's batch).
    #[arg(long, default_value_t = 64)]
    batch_pages: usize,
    /// Hybrid searches to time.
    #[arg(long, default_value_t = 500)]
    queries: usize,
    /// Keep the database after the run (to look at query plans).
    #[arg(long)]
    keep: bool,
    /// Only time searches, on a database kept by an earlier `--keep` run.
    #[arg(long)]
    reuse: Option<String>,
}

#[derive(Parser)]
struct ProcessArgs {
    /// Distinct fixture pages fetched once and processed repeatedly.
    #[arg(long, default_value_t = 1000)]
    pages: usize,
    /// Passes over the pages.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Also embed every chunk with the local embedder.
    #[arg(long)]
    embed: bool,
}

#[derive(Parser)]
struct RealtimeArgs {
    /// Websocket clients receiving progress.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Crawl rooms the clients are spread over (one running crawl each).
    #[arg(long, default_value_t = 100)]
    rooms: usize,
    /// How long to measure delivery.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Connections to hold open in the idle phase.
    #[arg(long, default_value_t = 10_000)]
    idle_clients: usize,
    #[arg(long, default_value_t = 15)]
    idle_seconds: u64,
    #[arg(long, default_value = "target/release/trawl")]
    trawl: PathBuf,
}

#[derive(Parser)]
struct Args {
    /// Pages of the generated site.
    #[arg(long, default_value_t = 5000)]
    pages: usize,
    /// Links per page (tree fanout).
    #[arg(long, default_value_t = 10)]
    fanout: usize,
    /// Full crawls to time.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Crawls stopped mid-way to time the stop.
    #[arg(long, default_value_t = 50)]
    stops: usize,
    /// Fetches in flight per crawl.
    #[arg(long, default_value_t = 64)]
    concurrency: u32,
    /// Every page answers after this many milliseconds...
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// ...except this share of them (percent, spread over every depth)...
    #[arg(long, default_value_t = 0)]
    slow_percent: u32,
    /// ...which answer after this many (a heavy tail: `--latency-ms 5
    /// --slow-percent 3 --slow-ms 1500 --pages 3000 --stops 0`).
    #[arg(long, default_value_t = 1500)]
    slow_ms: u64,
    /// Instead of the tree site, crawl the link trap (50 long links a page
    /// to pages no one has seen, without end) and stop at this many pages:
    /// peak RSS of a crawl whose frontier never ends.
    #[arg(long)]
    trap: Option<u64>,
    /// The trawl binary (build it with `cargo build --release`).
    #[arg(long, default_value = "target/release/trawl")]
    trawl: PathBuf,
    /// The service's embedder: `local` (the model, embedding behind the crawl) or `lexical`.
    #[arg(long, default_value = "local")]
    embedder: String,
    /// Stop each timed crawl once its pages are stored, without waiting for its vectors.
    #[arg(long)]
    stop_when_stored: bool,
    /// spider_cli's binary; skipped when missing.
    #[arg(long, default_value = "spider")]
    spider: String,
    #[arg(long, default_value_t = 3)]
    spider_runs: usize,
}

struct Service {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Service {
    /// SIGTERM first, so that the service closes its Chromium; SIGKILL if it lingers.
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    fn peak_rss_kib(&self) -> u64 {
        self.proc_status("VmHWM:")
    }

    fn rss_kib(&self) -> u64 {
        self.proc_status("VmRSS:")
    }

    fn proc_status(&self, key: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(key))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0)
    }
}

async fn start_service(trawl: &std::path::Path, env: &[(&str, String)]) -> Service {
    start_service_on(trawl, None, env).await
}

/// The service on `database` (a fresh SQLite file when `None`).
async fn start_service_on(trawl: &std::path::Path, database: Option<&str>, env: &[(&str, String)]) -> Service {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let database = database.map(str::to_string).unwrap_or_else(|| dir.path().join("bench.db").display().to_string());
    let child = Command::new(trawl)
        .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--database", &database])
        .env("TRAWL_ALLOW_PRIVATE_NETWORKS", "1")
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}; build it with cargo build --release", trawl.display()));
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "trawl serve did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Service { child, base, _dir: dir }
}

/// The link trap, crawled until `stop_at` pages are stored, then stopped.
async fn trap_bench(client: &reqwest::Client, svc: &Service, site: &FixtureServer, concurrency: u32, stop_at: u64) {
    let url = site.url("/trap/0.html");
    let body =
        json!({"url": url, "crawlType": "recursive", "maxDepth": 100, "maxPages": 1000000, "concurrency": concurrency});
    let id = start_crawl_with(client, svc, &body).await;
    let started = Instant::now();
    let mut s = status(client, svc, &id).await;
    let mut next = 10_000;
    while !terminal(&s) && s["pagesCrawled"].as_u64().unwrap_or(0) < stop_at {
        tokio::time::sleep(Duration::from_millis(200)).await;
        s = status(client, svc, &id).await;
        let crawled = s["pagesCrawled"].as_u64().unwrap_or(0);
        if crawled >= next {
            println!(
                "{crawled} pages in {:.1}s, {} queued: RSS {:.1} MiB, peak {:.1} MiB",
                started.elapsed().as_secs_f64(),
                s["pagesQueued"],
                svc.rss_kib() as f64 / 1024.0,
                svc.peak_rss_kib() as f64 / 1024.0
            );
            next += 10_000;
        }
    }
    let _ = client.post(format!("{}/api/crawls/{id}/stop", svc.base)).send().await;
    while !terminal(&s) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        s = status(client, svc, &id).await;
    }
    println!(
        "link trap: {} after {} pages in {:.1}s; trawl peak RSS (VmHWM) {:.1} MiB",
        s["status"].as_str().unwrap_or("?"),
        s["pagesCrawled"],
        started.elapsed().as_secs_f64(),
        svc.peak_rss_kib() as f64 / 1024.0
    );
}

async fn start_crawl(client: &reqwest::Client, svc: &Service, url: &str, concurrency: u32) -> String {
    let body =
        json!({"url": url, "crawlType": "recursive", "maxDepth": 50, "maxPages": 1000000, "concurrency": concurrency});
    start_crawl_with(client, svc, &body).await
}

async fn start_crawl_with(client: &reqwest::Client, svc: &Service, body: &Value) -> String {
    let v: Value =
        client.post(format!("{}/api/crawls", svc.base)).json(body).send().await.unwrap().json().await.unwrap();
    v["progressId"].as_str().expect("progressId").to_string()
}

async fn status(client: &reqwest::Client, svc: &Service, id: &str) -> Value {
    client.get(format!("{}/api/crawls/{id}", svc.base)).send().await.unwrap().json().await.unwrap()
}

fn terminal(s: &Value) -> bool {
    matches!(s["status"].as_str(), Some("completed" | "failed" | "cancelled"))
}

/// The `p`th percentile of unsorted samples.
fn pct(samples: &[f64], p: f64) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    percentile(&v, p)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn secs_between(s: &Value) -> f64 {
    let parse = |k: &str| chrono_like(s[k].as_str().unwrap_or_default());
    parse("finishedAt") - parse("startedAt")
}

/// Seconds since the epoch of an RFC 3339 `...T12:34:56.789Z` (same day is enough here).
fn chrono_like(t: &str) -> f64 {
    let time = t.split('T').nth(1).unwrap_or("0:0:0Z").trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: f64 = parts.next().and_then(|x| x.parse().ok()).unwrap_or(0.0);
    let m: f64 = parts.next().and_then(|x| x.parse().ok()).unwrap_or(0.0);
    let s: f64 = parts.next().and_then(|x| x.parse().ok()).unwrap_or(0.0);
    h * 3600.0 + m * 60.0 + s
}

/// Tree pages (`/` and `/docs/N.html`, no query) among spider's output lines.
fn covered_pages(stdout: &str) -> usize {
    let pages: std::collections::HashSet<&str> = stdout
        .lines()
        .map(str::trim)
        .filter_map(|l| l.split_once("://").map(|(_, rest)| rest))
        .filter_map(|rest| rest.find('/').map(|i| &rest[i..]))
        .filter(|p| {
            *p == "/"
                || p.strip_prefix("/docs/")
                    .and_then(|r| r.strip_suffix(".html"))
                    .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
        })
        .collect();
    pages.len()
}

/// spider_cli on the same site; its concurrent mode often ends before it has
/// covered the site, so only complete runs count.
async fn bench_spider(args: &Args, url: &str, expected: usize) -> Option<f64> {
    if Command::new(&args.spider).arg("--version").output().is_err() {
        println!("spider_cli: not installed (cargo install spider_cli); comparison skipped");
        return None;
    }
    let mut complete = Vec::new();
    for (mode, extra) in [("concurrent", None), ("sync", Some("--sync"))] {
        for run in 1..=args.spider_runs {
            let started = Instant::now();
            let out = tokio::task::spawn_blocking({
                let (spider, url) = (args.spider.clone(), url.to_string());
                move || {
                    let mut cmd = Command::new(spider);
                    cmd.args(["--url", &url, "crawl", "--output-links"]);
                    if let Some(e) = extra {
                        cmd.arg(e);
                    }
                    cmd.stderr(Stdio::null()).output()
                }
            })
            .await
            .unwrap();
            let secs = started.elapsed().as_secs_f64();
            let Ok(out) = out else { continue };
            let covered = covered_pages(&String::from_utf8_lossy(&out.stdout));
            let rate = covered as f64 / secs;
            println!("spider_cli {mode} run {run}: {covered}/{expected} pages in {secs:.3}s ({rate:.0} pages/s)");
            if covered >= expected {
                complete.push((mode, rate));
            }
        }
    }
    match complete.iter().cloned().max_by(|a, b| a.1.total_cmp(&b.1)) {
        Some((mode, best)) => {
            println!("spider_cli: {} complete runs, best {best:.0} pages/s ({mode})", complete.len());
            Some(best)
        }
        None => {
            println!("spider_cli: no complete run (every run ended before covering {expected} pages)");
            None
        }
    }
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    match Cli::parse() {
        Cli::Crawl(args) => crawl_bench(args).await,
        Cli::Realtime(args) => realtime_bench(args).await,
        Cli::Process(args) => process_bench(args).await,
        Cli::Store(args) => store_bench(args).await,
        Cli::Browser(args) => browser_bench(args).await,
        Cli::Cluster(args) => cluster_bench(args).await,
        Cli::Sources(args) => sources_bench(args).await,
        Cli::Interfaces(args) => interfaces_bench(args).await,
        Cli::Extract(args) => extract_bench(args).await,
        Cli::Docs(args) => docs_bench(args).await,
        Cli::SearchQuality(args) => search_quality(args).await,
        Cli::EmbedSpeed(args) => embed_speed(args).await,
    }
}

/// Runs the node load driver and returns its JSON line, sampling the
/// service's RSS meanwhile.
async fn drive(svc: &Service, args: &[String]) -> (Value, f64) {
    drive_node(Some(svc), args).await
}

async fn drive_node(svc: Option<&Service>, args: &[String]) -> (Value, f64) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/clients/js/bench.mjs");
    let mut child = tokio::process::Command::new("node")
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs (install the clients with scripts/test)");
    let stdout = child.stdout.take().unwrap();
    let mut max_rss = 0u64;
    let reader = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut out = String::new();
        let mut stdout = stdout;
        let _ = stdout.read_to_string(&mut out).await;
        out
    });
    loop {
        max_rss = max_rss.max(svc.map(Service::rss_kib).unwrap_or(0));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let out = reader.await.unwrap();
    let line = out.lines().last().unwrap_or("{}");
    (serde_json::from_str(line).unwrap_or(Value::Null), max_rss as f64 / 1024.0)
}

/// A deterministic stream of words from a vocabulary of made-up terms with
/// a Zipf-like spread of common and rare words. The 50 most frequent are
/// left out, as a text search configuration drops "the", "of", "and"...
const STOPWORDS: usize = 50;

struct Words {
    vocab: Vec<String>,
    state: u64,
}

impl Words {
    fn new() -> Self {
        let syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "qui", "dor", "lan", "mes"];
        let mut vocab = Vec::new();
        for a in syllables {
            for b in syllables {
                for c in syllables {
                    vocab.push(format!("{a}{b}{c}"));
                }
            }
        }
        Self { vocab, state: 0x2545_f491_4f6c_dd1d }
    }

    fn next(&mut self) -> &str {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        // Zipf-like: small indexes far more often.
        let r = (self.state % 1_000_000) as f64 / 1_000_000.0;
        let i = ((self.vocab.len() as f64).powf(r) as usize).saturating_sub(1).min(self.vocab.len() - 1);
        &self.vocab[(i + STOPWORDS).min(self.vocab.len() - 1)]
    }

    fn text(&mut self, n: usize) -> String {
        (0..n).map(|_| self.next().to_string()).collect::<Vec<_>>().join(" ")
    }
}

async fn store_bench(args: StoreArgs) {
    use sqlx::Connection;
    use trawl::embed::LexicalEmbedder;

    if let Some(file) = args.server.strip_prefix("sqlite://") {
        return sqlite_store_bench(&args, file).await;
    }

    let name = args.reuse.clone().unwrap_or_else(|| format!("trawl_bench_{}", std::process::id()));
    let mut admin = sqlx::PgConnection::connect(&args.server).await.expect("connect to --server");
    if args.reuse.is_none() {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create db");
    }
    let mut url = url::Url::parse(&args.server).expect("server URL");
    url.set_path(&name);
    let store = trawl::store::connect(url.as_str(), Some(384)).await.expect("store");
    let embedder = LexicalEmbedder::new(384);
    let mut words = Words::new();

    let total = if args.reuse.is_some() {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM chunks")
            .fetch_one(&mut sqlx::PgConnection::connect(url.as_str()).await.expect("connect"))
            .await
            .expect("count");
        n as usize
    } else {
        insert_and_index(&args, &store, url.as_str(), &embedder, &mut words).await
    };

    // Hybrid search: the whole path of POST /api/search (embed the query,
    // fuse in SQL, fetch the hits).
    let filter = trawl::store::SearchFilter::default();
    let queries = typed_queries(&words, args.queries + 20);
    let mut lat = Vec::new();
    let mut empty = 0;
    for (i, q) in queries.iter().enumerate() {
        let t = Instant::now();
        let hits = trawl::search::search(&*store, &embedder, q, trawl::search::Mode::Hybrid, &filter, 10)
            .await
            .expect("search");
        if i >= 20 {
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            empty += usize::from(hits.is_empty());
        }
    }
    println!(
        "hybrid search over {total} chunks: {} queries, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({empty} with no hit)",
        lat.len(),
        pct(&lat, 50.0),
        pct(&lat, 99.0),
        lat.iter().cloned().fold(0.0, f64::max)
    );
    drop(store);
    if args.keep {
        println!("kept database {name}");
        return;
    }
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)"))).execute(&mut admin).await;
}

/// Inserts the chunks as the crawl writer does, with the indexer running
/// beside, then waits for the index to catch up. Returns the chunk count.
/// Queries of 1 to 3 words a user might type, from the corpus's vocabulary.
fn typed_queries(words: &Words, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            (0..1 + i % 3)
                .map(|j| words.vocab[STOPWORDS + (i * 37 + j * 101) % 1000].clone())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

async fn insert_and_index(
    args: &StoreArgs,
    store: &trawl::store::DynStore,
    url: &str,
    embedder: &trawl::embed::LexicalEmbedder,
    words: &mut Words,
) -> usize {
    use sqlx::Connection;
    use trawl::embed::Embedder;
    use trawl::progress::{CrawlState, CrawlStatus};
    use trawl::store::{NewCrawl, PageRecord, PageStatus};

    // Pages with chunks and their vectors, made before the clock starts.
    let pages_n = args.chunks.div_ceil(args.chunks_per_page);
    let mut pages = Vec::with_capacity(pages_n);
    for p in 0..pages_n {
        let chunks: Vec<trawl::process::Chunk> = (0..args.chunks_per_page)
            .map(|i| {
                let content = words.text(80);
                let embedding = embedder.embed_sync(&[content.as_str()]).and_then(|mut v| v.pop());
                trawl::process::Chunk {
                    index: i as u32,
                    heading_path: format!("Guide > Part {i}"),
                    char_count: content.chars().count() as u32,
                    content,
                    page: None,
                    embedding,
                }
            })
            .collect();
        pages.push(PageRecord {
            url: format!("https://bench.example/{p}"),
            status: PageStatus::Crawled,
            http_status: Some(200),
            title: Some(words.text(4)),
            format: Some("markdown"),
            content: Some(String::new()),
            fetched_at: chrono::Utc::now(),
            source: Some("bench.example".into()),
            chunks,
            ..PageRecord::default()
        });
    }
    let id = uuid_v7();
    let mut status = CrawlStatus::new_queued(id.clone(), "https://bench.example/".into(), chrono::Utc::now());
    store
        .create_crawl(&NewCrawl {
            status: status.clone(),
            tenant: None,
            request_json: "{}".into(),
            settings_json: "{}".into(),
            claimed: false,
            source: Default::default(),
        })
        .await
        .expect("crawl row");
    status.status = CrawlState::Running;
    // The service's indexer runs beside the writes, as in `trawl serve`.
    let stop = tokio_util::sync::CancellationToken::new();
    let indexers: Vec<_> = (0..trawl::store::INDEXERS)
        .map(|_| tokio::spawn(trawl::store::run_indexer(store.clone(), stop.clone())))
        .collect();
    let started = Instant::now();
    let mut batch_times = Vec::new();
    for batch in pages.chunks(args.batch_pages) {
        status.pages_crawled += batch.len() as u64;
        status.chunks_stored += batch.iter().map(|p| p.chunks.len() as u64).sum::<u64>();
        let t = Instant::now();
        store.save_pages(&status, batch, embedder.model()).await.expect("insert");
        batch_times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let secs = started.elapsed().as_secs_f64();
    let total = pages_n * args.chunks_per_page;
    println!(
        "insert: {total} chunks (384-d vectors, GIN maintained, indexer running beside) in {secs:.1} s = {:.0} chunks/s; \
         batch of {} chunks p50 {:.0} ms, p99 {:.0} ms",
        total as f64 / secs,
        args.batch_pages * args.chunks_per_page,
        pct(&batch_times, 50.0),
        pct(&batch_times, 99.0)
    );

    if url.starts_with("sqlite:") {
        return total;
    }
    let drain = Instant::now();
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    loop {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM chunks WHERE NOT indexed")
            .fetch_one(&mut conn)
            .await
            .expect("count");
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "HNSW index caught up {:.1} s after the last write ({:.0} chunks/s indexed from the first write)",
        drain.elapsed().as_secs_f64(),
        total as f64 / started.elapsed().as_secs_f64()
    );
    stop.cancel();
    for i in indexers {
        let _ = i.await;
    }

    total
}

fn uuid_v7() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("{:012x}-bench-{}", t.as_millis(), std::process::id())
}

async fn process_bench(args: ProcessArgs) {
    use rayon::prelude::*;
    let site = FixtureServer::start(SiteOptions { pages: args.pages, fanout: 10, ..Default::default() })
        .await
        .expect("fixture server");
    let client = reqwest::Client::new();
    let mut pages: Vec<(url::Url, String)> = Vec::new();
    for i in 0..args.pages {
        let path = if i == 0 { "/".to_string() } else { format!("/docs/{i}.html") };
        let u = site.url(&path);
        let body = client.get(&u).send().await.unwrap().text().await.unwrap();
        pages.push((url::Url::parse(&u).unwrap(), body));
    }
    let code = site.url("/code/examples.html");
    pages.push((url::Url::parse(&code).unwrap(), client.get(&code).send().await.unwrap().text().await.unwrap()));
    let bytes: usize = pages.iter().map(|(_, b)| b.len()).sum();
    let opts = trawl::process::ProcessOptions::default();
    let embedder = trawl::embed::LexicalEmbedder::new(384);
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let (embed, rounds) = (args.embed, args.rounds);
    let (secs, chunks) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut chunks = 0usize;
        for _ in 0..rounds {
            chunks = pool.install(|| {
                pages
                    .par_iter()
                    .map(|(u, html)| {
                        let p = trawl::process::process_html(html, u, &opts);
                        if embed {
                            let (c, e) = p.embedding_inputs();
                            for t in c.iter().chain(&e) {
                                std::hint::black_box(embedder.vector(t));
                            }
                        }
                        p.chunks.len()
                    })
                    .sum()
            });
        }
        (started.elapsed().as_secs_f64(), chunks)
    })
    .await
    .unwrap();
    let mb = (bytes * args.rounds) as f64 / 1_000_000.0;
    println!(
        "processed {} pages x {} rounds = {mb:.1} MB of HTML in {secs:.2}s on {threads} threads: {:.1} MB/s, {:.0} pages/s ({chunks} chunks a round{})",
        args.pages + 1,
        args.rounds,
        mb / secs,
        ((args.pages + 1) * args.rounds) as f64 / secs,
        if args.embed { ", local embeddings included" } else { "" }
    );
}

async fn realtime_bench(args: RealtimeArgs) {
    // Pages answer after 100 ms and each crawl fetches one at a time, so every
    // crawl changes state about ten times a second for minutes.
    let site = FixtureServer::start(SiteOptions {
        pages: 5000,
        fanout: 10,
        latency: Duration::from_millis(100),
        ..Default::default()
    })
    .await
    .expect("fixture server");
    let env = [("TRAWL_MAX_CRAWLS", args.rooms.to_string())];
    let svc = start_service(&args.trawl, &env).await;
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for _ in 0..args.rooms {
        ids.push(start_crawl(&client, &svc, &site.url("/"), 1).await);
    }
    for id in &ids {
        while status(&client, &svc, id).await["status"] != "running" {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    println!("{} crawls running; {} clients over websocket for {} s", ids.len(), args.clients, args.seconds);
    let rss_before = svc.rss_kib() as f64 / 1024.0;
    let (load, rss_load) = drive(
        &svc,
        &["load".into(), svc.base.clone(), ids.join(","), args.clients.to_string(), args.seconds.to_string()],
    )
    .await;
    println!("load: {load}");
    println!(
        "delivered {:.0} events/s to {} clients; latency p50 {} ms, p99 {} ms; server RSS {rss_before:.1} MiB before, {rss_load:.1} MiB max under load",
        load["eventsPerSecond"].as_f64().unwrap_or(f64::NAN),
        load["connected"],
        load["latencyMs"]["p50"],
        load["latencyMs"]["p99"],
    );
    for id in &ids {
        let _ = client.post(format!("{}/api/crawls/{id}/stop", svc.base)).send().await;
    }
    let (idle, rss_idle) =
        drive(&svc, &["idle".into(), svc.base.clone(), args.idle_clients.to_string(), args.idle_seconds.to_string()])
            .await;
    println!("idle: {idle}");
    println!(
        "held {} of {} idle connections for {} s ({} connect errors, {} dropped); server RSS max {rss_idle:.1} MiB, peak {:.1} MiB",
        idle["stillConnected"],
        args.idle_clients,
        args.idle_seconds,
        idle["connectErrors"],
        idle["droppedWhileIdle"],
        svc.peak_rss_kib() as f64 / 1024.0
    );
}

async fn crawl_bench(args: Args) {
    let site = FixtureServer::start(SiteOptions {
        pages: args.pages,
        fanout: args.fanout,
        latency: Duration::from_millis(args.latency_ms),
        slow_percent: args.slow_percent,
        slow_latency: Duration::from_millis(args.slow_ms),
        ..Default::default()
    })
    .await
    .expect("fixture server");
    let url = site.url("/");
    println!("site: {} pages, fanout {}, at {url}", args.pages, args.fanout);
    if args.latency_ms > 0 || args.slow_percent > 0 {
        // No crawl can beat the pages' total latency spread over its
        // connections, nor the slowest chain of pages from the root, nor
        // (a page's wait cannot be split) the two slowest pages that must
        // share a connection: of the `concurrency + 1` slowest, two do.
        let latency = |i: usize| {
            if trawl_fixtures::Site::slow(i, args.slow_percent) { args.slow_ms } else { args.latency_ms }
        };
        let mut path = vec![0u64; args.pages];
        for i in 0..args.pages {
            path[i] = latency(i) + if i == 0 { 0 } else { path[trawl_fixtures::Site::parent(i, args.fanout)] };
        }
        let total: u64 = (0..args.pages).map(latency).sum();
        let slow = (0..args.pages).filter(|&i| trawl_fixtures::Site::slow(i, args.slow_percent)).count();
        let (spread, critical) =
            (total as f64 / 1000.0 / f64::from(args.concurrency), *path.iter().max().unwrap_or(&0) as f64 / 1000.0);
        let mut by_latency: Vec<u64> = (0..args.pages).map(latency).collect();
        by_latency.sort_unstable_by(|a, b| b.cmp(a));
        let c = args.concurrency as usize;
        let shared = if by_latency.len() > c { (by_latency[c - 1] + by_latency[c]) as f64 / 1000.0 } else { 0.0 };
        println!(
            "latency: {slow} pages after {} ms, the rest after {} ms; bound {:.2}s (total over concurrency {spread:.2}s, \
             critical path {critical:.2}s, two slowest pages on one connection {shared:.2}s)",
            args.slow_ms,
            args.latency_ms,
            spread.max(critical).max(shared)
        );
    }
    let env = [("TRAWL_PER_HOST_CONCURRENCY", args.concurrency.to_string()), ("TRAWL_EMBEDDER", args.embedder.clone())];
    let svc = start_service(&args.trawl, &env).await;
    let client = reqwest::Client::new();
    if let Some(stop_at) = args.trap {
        trap_bench(&client, &svc, &site, args.concurrency, stop_at).await;
        return;
    }

    let mut rates = Vec::new();
    for run in 1..=args.runs {
        let t0 = Instant::now();
        let id = start_crawl(&client, &svc, &url, args.concurrency).await;
        // Pages stored is the crawl's own speed; with the model the
        // crawl completes when the vectors made behind it are all there.
        let mut stored = None;
        let s = loop {
            let s = status(&client, &svc, &id).await;
            if stored.is_none() && s["pagesCrawled"].as_u64().unwrap_or(0) as usize >= args.pages {
                stored = Some(t0.elapsed().as_secs_f64());
                if args.stop_when_stored {
                    let _ = client.post(format!("{}/api/crawls/{id}/stop", svc.base)).send().await;
                }
            }
            if terminal(&s) {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let crawled = s["pagesCrawled"].as_u64().unwrap_or(0);
        let secs = secs_between(&s);
        let covered = crawled as usize == args.pages;
        let stored = stored.unwrap_or(secs).min(secs);
        println!(
            "trawl run {run}: {} {crawled} pages stored in {stored:.3}s = {:.0} pages/s, every page covered: {covered}; \
             {} vectors, complete after {secs:.3}s",
            s["status"].as_str().unwrap_or("?"),
            crawled as f64 / stored,
            s["chunksEmbedded"],
        );
        rates.push(crawled as f64 / stored);
    }
    let rss_mib = svc.peak_rss_kib() as f64 / 1024.0;
    println!("trawl peak RSS (VmHWM) after full crawls: {rss_mib:.1} MiB");

    let mut latencies = Vec::new();
    for _ in 0..args.stops {
        let id = start_crawl(&client, &svc, &url, args.concurrency).await;
        loop {
            let s = status(&client, &svc, &id).await;
            if s["pagesCrawled"].as_u64().unwrap_or(0) >= 100 || terminal(&s) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let t0 = Instant::now();
        let stop: Value =
            client.post(format!("{}/api/crawls/{id}/stop", svc.base)).send().await.unwrap().json().await.unwrap();
        let mut s = stop;
        while !terminal(&s) {
            tokio::time::sleep(Duration::from_micros(500)).await;
            s = status(&client, &svc, &id).await;
        }
        if s["status"] == "cancelled" {
            latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
    }
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "stop latency over {} stops: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    println!("trawl peak RSS (VmHWM) overall: {:.1} MiB", svc.peak_rss_kib() as f64 / 1024.0);
    drop(svc);

    let spider = bench_spider(&args, &url, args.pages).await;
    let best = rates.iter().cloned().fold(0.0, f64::max);
    println!("trawl best: {best:.0} pages/s");
    if let Some(spider) = spider {
        println!("ratio trawl / spider_cli (complete runs, best of each): {:.2}", best / spider);
    }
}

/// The service's process and its descendants (Chromium's browser, zygotes,
/// renderers, utilities).
fn process_tree(root: u32) -> Vec<u32> {
    let mut parent = std::collections::HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces, so read after the last ')'.
        let ppid = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| s.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok()));
        if let Some(ppid) = ppid {
            parent.insert(pid, ppid);
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(parent.iter().filter(|(_, pp)| **pp == p).map(|(c, _)| *c));
        i += 1;
    }
    tree
}

/// Resident and proportional set sizes (KiB) summed over `pids`. RSS counts
/// pages shared between Chromium's processes once per process; PSS splits them.
fn memory_kib(pids: &[u32]) -> (u64, u64) {
    let field = |text: &str, key: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    pids.iter().fold((0, 0), |(rss, pss), pid| {
        let roll = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        (rss + field(&roll, "Rss:"), pss + field(&roll, "Pss:"))
    })
}

async fn browser_bench(args: BrowserArgs) {
    let site = FixtureServer::start(SiteOptions {
        pages: args.pages,
        fanout: 3,
        js_every: args.js_every,
        ..Default::default()
    })
    .await
    .expect("fixture server");
    let url = site.url("/");
    let js_pages = (1..args.pages).filter(|i| i % args.js_every.max(1) == 0).count();
    println!("site: {} pages, {js_pages} of them JavaScript shells, at {url}", args.pages);
    let svc = start_service(&args.trawl, &[]).await;
    let client = reqwest::Client::new();
    let pid = svc.child.id();
    // Memory of the service plus Chromium, sampled every 50 ms.
    let peak = std::sync::Arc::new(std::sync::Mutex::new((0u64, 0u64, 0usize)));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                let tree = process_tree(pid);
                let n = tree.len();
                let (rss, pss) = tokio::task::spawn_blocking(move || memory_kib(&tree)).await.unwrap_or((0, 0));
                {
                    let mut p = peak.lock().unwrap();
                    *p = (p.0.max(rss), p.1.max(pss), p.2.max(n));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let crawl = |render: &'static str| {
        let body = json!({"url": url, "crawlType": "recursive", "maxDepth": 50, "maxPages": args.pages,
            "render": render, "browserConcurrency": args.browser_concurrency, "concurrency": 16});
        let (client, svc) = (&client, &svc);
        async move {
            let id = start_crawl_with(client, svc, &body).await;
            loop {
                let s = status(client, svc, &id).await;
                if terminal(&s) {
                    return (id, s);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let mut rates = Vec::new();
    for run in 1..=args.runs {
        let (_, s) = crawl("browser").await;
        let crawled = s["pagesCrawled"].as_u64().unwrap_or(0);
        let secs = secs_between(&s);
        println!(
            "browser run {run}: {} {crawled} pages ({} failed) in {secs:.2}s = {:.1} pages/s",
            s["status"].as_str().unwrap_or("?"),
            s["pagesFailed"],
            crawled as f64 / secs
        );
        rates.push(crawled as f64 / secs);
    }
    let (rss, pss, procs) = *peak.lock().unwrap();
    println!(
        "peak memory, service + Chromium ({procs} processes at most): PSS {:.0} MiB, RSS sum {:.0} MiB; service alone VmHWM {:.0} MiB",
        pss as f64 / 1024.0,
        rss as f64 / 1024.0,
        svc.peak_rss_kib() as f64 / 1024.0
    );
    let (id, s) = crawl("auto").await;
    let mut rendered = 0;
    let mut total = 0;
    let mut cursor: Option<String> = None;
    loop {
        let q = cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default();
        let v: Value = client
            .get(format!("{}/api/crawls/{id}/pages?limit=1000{q}", svc.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for p in v["pages"].as_array().into_iter().flatten() {
            total += 1;
            rendered += usize::from(p["rendered"] == true);
        }
        match v["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    println!(
        "auto: {} {} pages in {:.2}s = {:.1} pages/s; {rendered} of {total} pages rendered in Chromium ({:.1}%), {js_pages} shells on the site",
        s["status"].as_str().unwrap_or("?"),
        s["pagesCrawled"],
        secs_between(&s),
        s["pagesCrawled"].as_f64().unwrap_or(0.0) / secs_between(&s),
        100.0 * rendered as f64 / total.max(1) as f64
    );
    let (_, s) = crawl("http").await;
    println!(
        "http (for scale): {} pages in {:.3}s = {:.0} pages/s",
        s["pagesCrawled"],
        secs_between(&s),
        s["pagesCrawled"].as_f64().unwrap_or(0.0) / secs_between(&s)
    );
    let best = rates.iter().cloned().fold(0.0, f64::max);
    println!("browser best: {best:.1} pages/s (browserConcurrency {})", args.browser_concurrency);
    sampler.abort();
}

/// A fresh database on the `--server` PostgreSQL, dropped with the guard.
struct BenchDb {
    admin: String,
    name: String,
    url: String,
}

impl BenchDb {
    async fn create(server: &str, tag: &str) -> BenchDb {
        use sqlx::Connection;
        let name = format!("trawl_bench_{tag}_{}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(server).await.expect("connect to --server");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}"))).execute(&mut admin).await.ok();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create the bench database");
        let mut url = url::Url::parse(server).expect("server URL");
        url.set_path(&name);
        BenchDb { admin: server.to_string(), name, url: url.to_string() }
    }

    async fn drop_now(self) {
        use sqlx::Connection;
        if let Ok(mut admin) = sqlx::PgConnection::connect(&self.admin).await {
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await;
        }
    }
}

/// A `redis-server` of the bench's own on a free port.
struct RedisServer {
    child: Child,
    url: String,
}

impl RedisServer {
    async fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/test installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "redis-server did not come up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        RedisServer { child, url: format!("redis://127.0.0.1:{port}") }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn instance_env(name: &str, redis: &RedisServer, max_crawls: usize) -> Vec<(&'static str, String)> {
    vec![
        ("TRAWL_INSTANCE_NAME", name.to_string()),
        ("REDIS_URL", redis.url.clone()),
        ("TRAWL_MAX_CRAWLS", max_crawls.to_string()),
    ]
}

/// Posts one crawl per site at once, spread over the instances, waits for
/// all, and returns (pages crawled, seconds from the first post to the last
/// end).
async fn run_crawls(
    client: &reqwest::Client,
    instances: &[Service],
    sites: &[FixtureServer],
    args: &ClusterArgs,
) -> (u64, f64) {
    let started = Instant::now();
    let mut ids = Vec::new();
    for (i, site) in sites.iter().enumerate() {
        ids.push(start_crawl(client, &instances[i % instances.len()], &site.url("/"), args.concurrency).await);
    }
    let mut pages = 0;
    for id in &ids {
        let s = loop {
            let s = status(client, &instances[0], id).await;
            if terminal(&s) {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(s["status"], "completed", "{s}");
        pages += s["pagesCrawled"].as_u64().unwrap_or(0);
    }
    (pages, started.elapsed().as_secs_f64())
}

async fn cluster_bench(args: ClusterArgs) {
    // One site per crawl: crawls of one site by one tenant replace each
    // other's pages, which is not what is measured here.
    let mut sites = Vec::new();
    for _ in 0..args.crawls {
        let opts =
            SiteOptions { pages: args.pages, latency: Duration::from_millis(args.latency_ms), ..Default::default() };
        sites.push(FixtureServer::start(opts).await.expect("fixture server"));
    }
    let site_url = sites[0].url("/");
    let redis = RedisServer::start().await;
    let client = reqwest::Client::new();
    println!(
        "{} sites of {} pages (latency {} ms), one crawl each at once; {} crawls per instance, concurrency {}",
        args.crawls, args.pages, args.latency_ms, args.max_crawls, args.concurrency
    );

    let mut rates = Vec::new();
    for n in [1usize, 2] {
        let db = BenchDb::create(&args.server, &format!("{n}x")).await;
        let mut instances = Vec::new();
        for i in 0..n {
            let env = instance_env(&format!("bench{i}"), &redis, args.max_crawls);
            instances.push(start_service_on(&args.trawl, Some(&db.url), &env).await);
        }
        let (pages, secs) = run_crawls(&client, &instances, &sites, &args).await;
        let rate = pages as f64 / secs;
        println!("{n} instance(s): {pages} pages in {secs:.2} s = {rate:.0} pages/s");
        rates.push(rate);
        drop(instances);
        db.drop_now().await;
    }
    println!("two instances against one: {:.2}x", rates[1] / rates[0]);

    // Stop latency across instances: A runs nothing, so every crawl runs on B.
    let db = BenchDb::create(&args.server, "stops").await;
    let a = start_service_on(&args.trawl, Some(&db.url), &instance_env("a", &redis, 0)).await;
    let b = start_service_on(&args.trawl, Some(&db.url), &instance_env("b", &redis, 4)).await;
    let (result, _) =
        drive_node(None, &["stops".into(), a.base.clone(), site_url.clone(), args.stops.to_string()]).await;
    println!("stops: {result}");
    println!(
        "stop on A for a crawl on B, over {} stops: crawl:stopping on A p50 {} ms, p99 {} ms; crawl:stopped on A p50 {} ms, p99 {} ms, max {} ms",
        result["stops"],
        fmt_ms(&result["stoppingMs"]["p50"]),
        fmt_ms(&result["stoppingMs"]["p99"]),
        fmt_ms(&result["stoppedMs"]["p50"]),
        fmt_ms(&result["stoppedMs"]["p99"]),
        fmt_ms(&result["stoppedMs"]["max"]),
    );
    drop((a, b));
    db.drop_now().await;
}

fn fmt_ms(v: &Value) -> String {
    v.as_f64().map(|x| format!("{x:.1}")).unwrap_or_else(|| "?".into())
}

/// An OpenAI-compatible embeddings endpoint on loopback that counts the
/// inputs it is sent and answers after `latency`, as a remote API would.
struct StandIn {
    base_url: String,
    inputs: std::sync::Arc<std::sync::atomic::AtomicU64>,
    _task: tokio::task::JoinHandle<()>,
}

impl StandIn {
    async fn start(latency: Duration) -> Self {
        use std::sync::atomic::Ordering;
        let inputs = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = inputs.clone();
        let embedder = std::sync::Arc::new(trawl::embed::LexicalEmbedder::new(64));
        let app = axum::Router::new().route(
            "/v1/embeddings",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                let (counted, embedder) = (counted.clone(), embedder.clone());
                async move {
                    let texts: Vec<String> = body["input"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                        .unwrap_or_default();
                    counted.fetch_add(texts.len() as u64, Ordering::Relaxed);
                    tokio::time::sleep(latency).await;
                    let data: Vec<Value> = texts
                        .iter()
                        .enumerate()
                        .map(|(i, t)| json!({"embedding": embedder.vector(t), "index": i}))
                        .collect();
                    axum::Json(json!({"data": data, "model": "stand-in"}))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { base_url, inputs, _task: task }
    }

    fn inputs(&self) -> u64 {
        self.inputs.load(std::sync::atomic::Ordering::Relaxed)
    }
}

async fn wait_end(client: &reqwest::Client, svc: &Service, id: &str) -> Value {
    loop {
        let s = status(client, svc, id).await;
        if terminal(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The whole site through its sitemap; the final status and the seconds it took.
async fn crawl_sitemap(client: &reqwest::Client, svc: &Service, site: &FixtureServer) -> (Value, f64) {
    let body =
        json!({"url": site.url("/sitemap.xml"), "crawlType": "sitemap", "maxPages": 1_000_000, "concurrency": 64});
    let started = Instant::now();
    let id = start_crawl_with(client, svc, &body).await;
    (wait_end(client, svc, &id).await, started.elapsed().as_secs_f64())
}

async fn refresh_source(client: &reqwest::Client, svc: &Service, source: &str) -> (Value, f64) {
    let started = Instant::now();
    let v: Value =
        client.post(format!("{}/api/sources/{source}/refresh", svc.base)).send().await.unwrap().json().await.unwrap();
    let id = v["progressId"].as_str().unwrap_or_else(|| panic!("refresh refused: {v}")).to_string();
    let fin = wait_end(client, svc, &id).await;
    (fin, started.elapsed().as_secs_f64())
}

async fn sources_bench(args: SourcesArgs) {
    let client = reqwest::Client::new();
    let stand_in = StandIn::start(Duration::from_millis(args.embed_latency_ms)).await;
    let env = [
        ("TRAWL_EMBEDDER", "openai".to_string()),
        ("TRAWL_EMBEDDING_BASE_URL", stand_in.base_url.clone()),
        ("TRAWL_EMBEDDING_MODEL", "stand-in".to_string()),
        ("TRAWL_EMBEDDING_DIMENSIONS", "64".to_string()),
        ("TRAWL_EMBEDDING_API_KEY", "bench".to_string()),
    ];
    let svc = start_service(&args.trawl, &env).await;
    let pages = args.pages.max(10);
    let site = FixtureServer::start(SiteOptions {
        pages,
        validators: args.validators,
        edit_every: pages / args.edited.max(1),
        remove_every: pages / args.removed.max(1),
        added_pages: args.added,
        ..SiteOptions::default()
    })
    .await
    .unwrap();
    let (first, first_secs) = crawl_sitemap(&client, &svc, &site).await;
    let first_inputs = stand_in.inputs();
    let source = first["sourceId"].as_str().expect("sourceId").to_string();
    println!(
        "first crawl: {} pages in {first_secs:.2}s, {} chunks, {first_inputs} inputs embedded ({})",
        first["pagesCrawled"], first["chunksStored"], first["status"]
    );

    let (fin, secs) = refresh_source(&client, &svc, &source).await;
    let inputs = stand_in.inputs() - first_inputs;
    println!(
        "unchanged refresh: {secs:.2}s ({:.1}% of the first crawl), {inputs} inputs sent; {} unchanged, {} changed, {} new, {} removed ({})",
        100.0 * secs / first_secs,
        fin["pagesUnchanged"],
        fin["pagesChanged"],
        fin["pagesNew"],
        fin["pagesRemoved"],
        fin["status"]
    );

    site.set_revision(1);
    let before = stand_in.inputs();
    let (fin, secs) = refresh_source(&client, &svc, &source).await;
    let inputs = stand_in.inputs() - before;
    println!(
        "refresh after edits: {secs:.2}s, {inputs} inputs sent (chunksEmbedded {}); {} changed, {} removed, {} new, {} unchanged ({})",
        fin["chunksEmbedded"],
        fin["pagesChanged"],
        fin["pagesRemoved"],
        fin["pagesNew"],
        fin["pagesUnchanged"],
        fin["status"]
    );
    drop(svc);

    if args.export_pages == 0 {
        return;
    }
    // The export: a large source in a service of its own (local embedder).
    let svc = start_service(&args.trawl, &[]).await;
    let site = FixtureServer::start(SiteOptions { pages: args.export_pages, paragraphs: 3, ..SiteOptions::default() })
        .await
        .unwrap();
    let (crawled, secs) = crawl_sitemap(&client, &svc, &site).await;
    println!("export source: {} pages crawled in {secs:.1}s", crawled["pagesCrawled"]);
    let source = crawled["sourceId"].as_str().expect("sourceId").to_string();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for format in ["jsonl", "markdown"] {
        let rss_before = svc.rss_kib();
        let pid = svc.child.id();
        let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let sampler = {
            let sampling = sampling.clone();
            std::thread::spawn(move || {
                let mut peak = 0u64;
                while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
                        .ok()
                        .and_then(|s| {
                            s.lines()
                                .find(|l| l.starts_with("VmRSS:"))
                                .and_then(|l| l.split_whitespace().nth(1))
                                .and_then(|n| n.parse::<u64>().ok())
                        })
                        .unwrap_or(0);
                    peak = peak.max(rss);
                    std::thread::sleep(Duration::from_millis(5));
                }
                peak
            })
        };
        let started = Instant::now();
        let mut resp =
            client.get(format!("{}/api/sources/{source}/export?format={format}", svc.base)).send().await.unwrap();
        let (mut bytes, mut lines) = (0usize, 0usize);
        while let Some(chunk) = resp.chunk().await.unwrap() {
            bytes += chunk.len();
            lines += chunk.iter().filter(|b| **b == b'\n').count();
        }
        let secs = started.elapsed().as_secs_f64();
        sampling.store(false, std::sync::atomic::Ordering::Relaxed);
        let peak = sampler.join().unwrap_or(0);
        let n = crawled["pagesCrawled"].as_f64().unwrap_or(0.0);
        println!(
            "export {format}: {n} pages, {:.1} MB in {secs:.2}s = {:.0} pages/s; RSS {} MB before, peak growth {:.1} MB ({lines} lines)",
            bytes as f64 / 1e6,
            n / secs,
            rss_before / 1024,
            peak.saturating_sub(rss_before) as f64 / 1024.0
        );
    }
}

async fn interfaces_bench(args: InterfacesArgs) {
    let client = reqwest::Client::new();
    let svc = start_service(&args.trawl, &[]).await;
    let site = FixtureServer::start(SiteOptions { pages: 200, ..SiteOptions::default() }).await.unwrap();

    // /v2/scrape: a loopback page fetched, extracted and answered as markdown.
    let scrape = |i: usize| {
        let (client, url) = (client.clone(), format!("{}/v2/scrape", svc.base));
        let page = site.url(&format!("/docs/{}.html", i % 199 + 1));
        async move {
            let t = Instant::now();
            let r = client.post(url).json(&json!({"url": page, "formats": ["markdown"]})).send().await.unwrap();
            assert!(r.status().is_success(), "scrape answered {}", r.status());
            let _ = r.bytes().await.unwrap();
            t.elapsed().as_secs_f64() * 1000.0
        }
    };
    for i in 0..50 {
        scrape(i).await;
    }
    let mut sequential = Vec::with_capacity(args.scrapes);
    for i in 0..args.scrapes {
        sequential.push(scrape(i).await);
    }
    println!(
        "/v2/scrape, one at a time: {} scrapes, p50 {:.2} ms, p99 {:.2} ms",
        args.scrapes,
        pct(&sequential, 50.0),
        pct(&sequential, 99.0)
    );
    let t = Instant::now();
    let concurrent: Vec<f64> = {
        use futures::StreamExt;
        futures::stream::iter(0..args.scrapes).map(scrape).buffer_unordered(args.concurrency).collect().await
    };
    println!(
        "/v2/scrape, {} at a time: p50 {:.2} ms, p99 {:.2} ms, {:.0} scrapes/s",
        args.concurrency,
        pct(&concurrent, 50.0),
        pct(&concurrent, 99.0),
        args.scrapes as f64 / t.elapsed().as_secs_f64()
    );

    // Webhooks: from the event (the body's createdAt, when it was enqueued;
    // and, for the end, the crawl's finishedAt) to the receiver.
    let arrivals: std::sync::Arc<std::sync::Mutex<Vec<(f64, Value)>>> = Default::default();
    let sink = arrivals.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                // Seconds since midnight, as `chrono_like` reads the service's times.
                let now = chrono_like(&trawl::progress::format_time(&chrono::Utc::now()));
                sink.lock().unwrap().push((now, body));
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut ids = Vec::new();
    for i in 0..args.crawls {
        let body = json!({"url": site.url(&format!("/docs/{}.html", i % 199 + 1)), "crawlType": "page", "webhook": {"url": hook}});
        ids.push(start_crawl_with(&client, &svc, &body).await);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while arrivals.lock().unwrap().iter().filter(|(_, b)| b["type"] == "crawl.completed").count() < ids.len() {
        if Instant::now() > deadline {
            let got = arrivals.lock().unwrap();
            let count = |t: &str| got.iter().filter(|(_, b)| b["type"] == t).count();
            panic!(
                "not every crawl's end arrived: {} started, {} page, {} completed, {} failed of {}",
                count("crawl.started"),
                count("crawl.page"),
                count("crawl.completed"),
                count("crawl.failed"),
                ids.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = arrivals.lock().unwrap().clone();
    let by_type = |t: &str| -> Vec<f64> {
        got.iter()
            .filter(|(_, b)| b["type"] == t)
            .map(|(at, b)| (at - chrono_like(b["createdAt"].as_str().unwrap_or(""))) * 1000.0)
            .collect()
    };
    for t in ["crawl.started", "crawl.page", "crawl.completed"] {
        let v = by_type(t);
        println!(
            "webhook {t}: {} deliveries, enqueued → received p50 {:.2} ms, p99 {:.2} ms",
            v.len(),
            pct(&v, 50.0),
            pct(&v, 99.0)
        );
    }
    let ends: Vec<f64> = got
        .iter()
        .filter(|(_, b)| b["type"] == "crawl.completed")
        .map(|(at, b)| (at - chrono_like(b["data"]["finishedAt"].as_str().unwrap_or(""))) * 1000.0)
        .collect();
    println!(
        "webhook crawl.completed: crawl ended → received p50 {:.2} ms, p99 {:.2} ms",
        pct(&ends, 50.0),
        pct(&ends, 99.0)
    );
}

use trawl::process::consensus::plain as markdown_text;

/// Word tokens as the benchmark cuts them (`\w+`, Unicode), lowercased.
fn tokens(text: &str) -> Vec<String> {
    trawl::process::consensus::tokens(text).collect()
}

/// Shingles of four tokens, counted.
fn shingles(text: &str) -> std::collections::HashMap<Vec<String>, usize> {
    let t = tokens(text);
    let mut out = std::collections::HashMap::new();
    for w in t.windows(4) {
        *out.entry(w.to_vec()).or_insert(0) += 1;
    }
    out
}

/// (precision, recall) of one page, as the benchmark scores it.
fn page_score(truth: &str, predicted: &str) -> (f64, f64) {
    let (t, p) = (shingles(truth), shingles(predicted));
    let (mut tp, mut fp, mut fneg) = (0usize, 0usize, 0usize);
    for (k, &n) in &t {
        let m = p.get(k).copied().unwrap_or(0);
        tp += n.min(m);
        fneg += n.saturating_sub(m);
    }
    for (k, &m) in &p {
        fp += m.saturating_sub(t.get(k).copied().unwrap_or(0));
    }
    let precision = if tp + fp == 0 { 1.0 } else { tp as f64 / (tp + fp) as f64 };
    let recall = if tp + fneg == 0 { 1.0 } else { tp as f64 / (tp + fneg) as f64 };
    (precision, recall)
}

async fn extract_bench(args: ExtractArgs) {
    use std::io::Read;
    let truth: Value =
        serde_json::from_slice(&std::fs::read(args.data.join("ground-truth.json")).expect("ground-truth.json"))
            .expect("ground truth is JSON");
    let truth = truth.as_object().expect("an object of pages").clone();
    let mut pages = std::collections::HashMap::new();
    for id in truth.keys() {
        let gz = std::fs::read(args.data.join("html").join(format!("{id}.html.gz"))).expect("page");
        let mut html = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut html).expect("gzip");
        pages.insert(format!("/{id}.html"), html);
    }
    let (base, stored) = crawl_served(&args.trawl, pages).await;
    let mut scores = Vec::new();
    for (pid, t) in &truth {
        let predicted = markdown_text(&stored.get(&format!("{base}/{pid}.html")).cloned().unwrap_or_default());
        let (p, r) = page_score(t["articleBody"].as_str().unwrap_or(""), &predicted);
        scores.push((pid.clone(), p, r));
    }
    let n = scores.len() as f64;
    let precision = scores.iter().map(|s| s.1).sum::<f64>() / n;
    let recall = scores.iter().map(|s| s.2).sum::<f64>() / n;
    let f1 = 2.0 * precision * recall / (precision + recall);
    println!(
        "article-extraction benchmark, {} pages: F1 {f1:.3}, precision {precision:.3}, recall {recall:.3}",
        scores.len()
    );
    scores.sort_by(|a, b| {
        let f = |s: &(String, f64, f64)| 2.0 * s.1 * s.2 / (s.1 + s.2).max(1e-9);
        f(a).total_cmp(&f(b))
    });
    for (pid, p, r) in scores.iter().take(args.worst) {
        println!("  {} precision {p:.2} recall {r:.2}  {}", &pid[..12], truth[pid]["url"].as_str().unwrap_or(""));
    }
}

/// Serves `pages` (path → HTML) on loopback with a sitemap of them, crawls
/// the sitemap through the service, and returns the base URL and each
/// page's stored markdown by URL.
async fn crawl_served(
    trawl: &std::path::Path,
    pages: std::collections::HashMap<String, Vec<u8>>,
) -> (String, std::collections::HashMap<String, String>) {
    let client = reqwest::Client::new();
    let (base, svc, id) = serve_and_crawl(trawl, pages, None, &[("TRAWL_EMBEDDER", "lexical".into())]).await;
    let mut stored = std::collections::HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{}/api/crawls/{id}/pages?limit=100&include=markdown", svc.base);
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let v: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        for p in v["pages"].as_array().into_iter().flatten() {
            stored
                .insert(p["url"].as_str().unwrap_or("").to_string(), p["markdown"].as_str().unwrap_or("").to_string());
        }
        match v["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    (base, stored)
}

/// Serves `pages` (path to HTML) on loopback with a sitemap of them, and
/// crawls the sitemap through a service: the site's address, the service
/// and the crawl's id, once the crawl has ended.
async fn serve_and_crawl(
    trawl: &std::path::Path,
    pages: std::collections::HashMap<String, Vec<u8>>,
    database: Option<&str>,
    env: &[(&str, String)],
) -> (String, Service, String) {
    use axum::response::IntoResponse;
    let pages = std::sync::Arc::new(pages);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let sitemap: String = pages.keys().map(|path| format!("<url><loc>{base}{path}</loc></url>")).collect();
    let sitemap = format!(
        "<?xml version=\"1.0\"?><urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">{sitemap}</urlset>"
    );
    let served = pages.clone();
    let app = axum::Router::new()
        .route(
            "/sitemap.xml",
            axum::routing::get(move || async move { ([("content-type", "application/xml")], sitemap) }),
        )
        .fallback(move |uri: axum::http::Uri| {
            let served = served.clone();
            async move {
                match served.get(uri.path()) {
                    Some(b) => ([("content-type", "text/html")], b.clone()).into_response(),
                    None => axum::http::StatusCode::NOT_FOUND.into_response(),
                }
            }
        });
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = reqwest::Client::new();
    let svc = start_service_on(trawl, database, env).await;
    let t0 = Instant::now();
    let id = start_crawl_with(
        &client,
        &svc,
        &json!({"url": format!("{base}/sitemap.xml"), "crawlType": "sitemap", "maxPages": 10000}),
    )
    .await;
    let fin = wait_end(&client, &svc, &id).await;
    println!(
        "crawled {} of {} pages ({} failed), {} chunks and {} code examples, {} vectors, in {:.1} s",
        fin["pagesCrawled"],
        pages.len(),
        fin["pagesFailed"],
        fin["chunksStored"],
        fin["codeExamples"],
        fin["chunksEmbedded"],
        t0.elapsed().as_secs_f64()
    );
    (base, svc, id)
}

/// Waits until the service's vector graph (SQLite) is loaded from its file
/// or built from the table, holding every stored vector: searches scan
/// exactly until then.
async fn wait_vector_index(client: &reqwest::Client, svc: &Service) {
    let t0 = Instant::now();
    loop {
        let v: Value = client.get(format!("{}/readyz", svc.base)).send().await.unwrap().json().await.unwrap();
        let index = &v["vectorIndex"];
        if index.is_null() || (index["ready"] == true && index["behind"] == 0) {
            println!(
                "vector index ready after {:.1} s with {} vectors; service RSS {:.0} MiB",
                t0.elapsed().as_secs_f64(),
                index["vectors"],
                svc.peak_rss_kib() as f64 / 1024.0
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every `.html` file under `dir`, by its path from `dir` (`/library/json.html`).
fn html_tree(dir: &std::path::Path) -> std::collections::HashMap<String, Vec<u8>> {
    let mut out = std::collections::HashMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let entries =
            std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e} (scripts/bench-data installs it)", d.display()));
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|x| x == "html") {
                let rel = path.strip_prefix(dir).unwrap_or(&path).to_string_lossy().replace('\\', "/");
                out.insert(format!("/{rel}"), std::fs::read(&path).expect("page"));
            }
        }
    }
    out
}

/// Search quality over a manual: each question asked in every mode, its
/// results read as pages (a page's first chunk counts), scored against
/// the pages that answer it. recall@5: a page that answers it is among
/// the first five; MRR@10: one over the rank of the first such page;
/// nDCG@10: binary relevance, ideal order of its answers.
async fn search_quality(args: SearchQualityArgs) {
    struct Question {
        q: String,
        worded: String,
        answers: Vec<String>,
    }
    let raw: Value =
        serde_json::from_slice(&std::fs::read(&args.questions).expect("questions")).expect("questions JSON");
    let questions: Vec<Question> = raw["questions"]
        .as_array()
        .expect("a list of questions")
        .iter()
        .map(|q| Question {
            q: q["q"].as_str().expect("q").to_string(),
            worded: q["worded"].as_str().expect("worded").to_string(),
            answers: q["answers"]
                .as_array()
                .expect("answers")
                .iter()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect(),
        })
        .collect();
    let env = [("TRAWL_EMBEDDER", args.embedder.clone())];
    // The site's address is kept beside a kept store: the answers are URLs.
    let kept = args.database.as_ref().map(|db| (db.display().to_string(), db.with_extension("base")));
    let postgres = match &args.server {
        Some(server) => Some(BenchDb::create(server, "quality").await),
        None => None,
    };
    let (base, svc, id) = match &kept {
        Some((db, base_file)) if std::path::Path::new(db).exists() => {
            let base = std::fs::read_to_string(base_file).expect("the site's address beside the kept store");
            println!("asking the store kept in {db} (crawled from {base})");
            (base.trim().to_string(), start_service_on(&args.trawl, Some(db), &env).await, None)
        }
        _ => {
            let db = kept.as_ref().map(|(db, _)| db.as_str()).or(postgres.as_ref().map(|p| p.url.as_str()));
            let (base, svc, id) = serve_and_crawl(&args.trawl, html_tree(&args.dir), db, &env).await;
            if let Some((_, base_file)) = &kept {
                std::fs::write(base_file, &base).expect("write the site's address");
            }
            (base, svc, Some(id))
        }
    };
    let client = reqwest::Client::new();
    wait_vector_index(&client, &svc).await;
    if let Some((db, _)) = &kept {
        // The service's vector search against an exact scan, on real text.
        let embedder: Box<dyn trawl::embed::Embedder> = if args.embedder == "lexical" {
            Box::new(trawl::embed::LexicalEmbedder::new(trawl::embed::lexical::DEFAULT_DIMENSIONS))
        } else {
            let files = trawl::embed::ModelFiles {
                dir: std::env::var_os("TRAWL_MODEL_DIR").map(PathBuf::from),
                ..Default::default()
            };
            Box::new(
                trawl::embed::ModelEmbedder::load(&files.ensure().await.expect("the model")).expect("the model loads"),
            )
        };
        let texts: Vec<String> = questions.iter().map(|q| q.q.clone()).collect();
        graph_recall(&client, &svc, db, &texts, embedder.as_ref()).await;
    }
    let modes = ["text", "vector", "hybrid"];
    // Heading-path and title weights of `bm25` tried on the kept store.
    let weights: Vec<(f64, f64)> =
        [1.0, 2.0, 3.0, 4.0, 6.0, 8.0].iter().flat_map(|&h| [1.0, 2.0, 4.0].map(move |t| (h, t))).collect();
    let shares = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8];
    let fts = match (&kept, args.text_weights) {
        (Some((db, _)), true) => Some(
            sqlx::sqlite::SqlitePoolOptions::new()
                .connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(db).read_only(true))
                .await
                .expect("open the kept store"),
        ),
        _ => None,
    };
    // (mode, worded) → (recall@5 sum, MRR@10 sum, nDCG@10 sum, questions)
    let mut scores: std::collections::BTreeMap<(String, String), (f64, f64, f64, usize)> = Default::default();
    let mut latencies = Vec::new();
    // Fusions tried on the text and vector rankings, next to the service's own:
    // reciprocal rank fusion with constant k and the vector ranking's weight.
    let grid: Vec<(f64, f64)> =
        [10.0, 30.0, 60.0].iter().flat_map(|&k| [0.5, 0.7, 1.0, 1.5, 2.0].map(move |w| (k, w))).collect();
    // And a convex combination of the normalised scores, `a` the vector's share.
    let convex = [0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8];
    for q in &questions {
        let answers: Vec<String> = q.answers.iter().map(|a| format!("{base}/{a}")).collect();
        let mut lists: std::collections::HashMap<&str, Vec<(i64, String, f64)>> = Default::default();
        for mode in modes {
            let t0 = Instant::now();
            let v: Value = client
                .post(format!("{}/api/search", svc.base))
                .json(&json!({"query": q.q, "mode": mode, "limit": 50, "progressId": id.as_deref()}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
            let hits: Vec<(i64, String, f64)> = v["results"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|h| {
                    (
                        h["chunkId"].as_i64().unwrap_or_default(),
                        h["url"].as_str().unwrap_or_default().to_string(),
                        h["score"].as_f64().unwrap_or_default(),
                    )
                })
                .collect();
            lists.insert(mode, hits);
        }
        let mut rankings: Vec<(String, Vec<String>)> =
            modes.iter().map(|m| (m.to_string(), lists[m].iter().map(|(_, u, _)| u.clone()).collect())).collect();
        // The service's own fusion (`Fusion::fuse`) on the two rankings.
        let scored = |mode: &str| -> Vec<(i64, f64)> { lists[mode].iter().map(|(c, _, s)| (*c, *s)).collect() };
        let (text, vector) = (scored("text"), scored("vector"));
        let urls: std::collections::HashMap<i64, &String> = lists.values().flatten().map(|(c, u, _)| (*c, u)).collect();
        let fused = |fusion: trawl::search::Fusion| -> Vec<String> {
            fusion.fuse(&text, &vector).into_iter().map(|(c, _)| urls[&c].clone()).collect()
        };
        for &(k, w) in &grid {
            rankings.push((format!("rrf k={k} w={w}"), fused(trawl::search::Fusion::Ranks { k, vector_weight: w })));
        }
        for &a in &convex {
            rankings.push((format!("convex a={a}"), fused(trawl::search::Fusion::Scores { vector_share: a })));
        }
        if let Some(pool) = &fts {
            // The service's words (at this size no word is left out for cost).
            let query = trawl::store::fts_query(&q.q).unwrap_or_default();
            for &(h, t) in &weights {
                let rows: Vec<(i64, String, f64)> = sqlx::query_as(
                    "SELECT c.id, c.url, -bm25(chunks_fts, 1.0, ?, ?) AS s FROM chunks_fts \
                     CROSS JOIN chunks c ON c.id = chunks_fts.rowid WHERE chunks_fts MATCH ? ORDER BY s DESC LIMIT 50",
                )
                .bind(h)
                .bind(t)
                .bind(&query)
                .fetch_all(pool)
                .await
                .expect("text search on the kept store");
                let text: Vec<(i64, f64)> = rows.iter().map(|(c, _, s)| (*c, *s)).collect();
                let mut urls = urls.clone();
                urls.extend(rows.iter().map(|(c, u, _)| (*c, u)));
                rankings.push((format!("text h={h} t={t}"), rows.iter().map(|(_, u, _)| u.clone()).collect()));
                for a in shares {
                    let hybrid = trawl::search::Fusion::Scores { vector_share: a }.fuse(&text, &vector);
                    let ranked = hybrid.iter().map(|(c, _)| urls[c].clone()).collect();
                    rankings.push((format!("h={h} t={t} a={a}"), ranked));
                }
            }
        }
        for (mode, urls) in rankings {
            let mut ranked: Vec<String> = Vec::new();
            for url in urls {
                if !ranked.contains(&url) {
                    ranked.push(url);
                }
            }
            let first = ranked.iter().take(10).position(|u| answers.contains(u));
            let recall5 = f64::from(u8::from(first.is_some_and(|r| r < 5)));
            let mrr = first.map_or(0.0, |r| 1.0 / (r as f64 + 1.0));
            let dcg: f64 = ranked
                .iter()
                .take(10)
                .enumerate()
                .filter(|(_, u)| answers.contains(u))
                .map(|(i, _)| 1.0 / (i as f64 + 2.0).log2())
                .sum();
            let ideal: f64 = (0..answers.len().min(10)).map(|i| 1.0 / (i as f64 + 2.0).log2()).sum();
            let ndcg = if ideal > 0.0 { dcg / ideal } else { 0.0 };
            for worded in [q.worded.clone(), "all".to_string()] {
                let e = scores.entry((mode.clone(), worded)).or_default();
                e.0 += recall5;
                e.1 += mrr;
                e.2 += ndcg;
                e.3 += 1;
            }
            if args.verbose && modes.contains(&mode.as_str()) {
                let top: Vec<&str> = ranked.iter().take(5).map(|u| u.trim_start_matches(&base)).collect();
                println!(
                    "{mode:>6} {} [{}] {:?}: {}",
                    if first.is_some_and(|r| r < 5) { "ok  " } else { "MISS" },
                    q.worded,
                    q.q,
                    top.join(" ")
                );
            }
        }
    }
    println!(
        "{} questions ({} in the manual's words, {} in their own)",
        questions.len(),
        questions.iter().filter(|q| q.worded == "manual").count(),
        questions.iter().filter(|q| q.worded == "own").count()
    );
    println!("{:<20} {:<7} {:>9} {:>7} {:>8}", "mode", "worded", "recall@5", "MRR@10", "nDCG@10");
    let names: Vec<String> = modes
        .iter()
        .map(|m| m.to_string())
        .chain(args.fusions.then(|| grid.iter().map(|(k, w)| format!("rrf k={k} w={w}"))).into_iter().flatten())
        .chain(args.fusions.then(|| convex.iter().map(|a| format!("convex a={a}"))).into_iter().flatten())
        .chain(fts.iter().flat_map(|_| {
            weights.iter().flat_map(|(h, t)| {
                std::iter::once(format!("text h={h} t={t}")).chain(shares.map(|a| format!("h={h} t={t} a={a}")))
            })
        }))
        .collect();
    for worded in ["all", "manual", "own"] {
        for mode in &names {
            if let Some((r, m, n, count)) = scores.get(&(mode.clone(), worded.to_string())) {
                let c = *count as f64;
                // Three decimals: a target such as MRR@10 ≥ 0.70 is not met by 0.697.
                println!("{mode:<20} {worded:<7} {:>9.3} {:>7.3} {:>8.3}", r / c, m / c, n / c);
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    let p = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    println!("search latency over {} queries: p50 {:.1} ms, p99 {:.1} ms", latencies.len(), p(0.5), p(0.99));
    drop(svc);
    if let Some(db) = postgres {
        db.drop_now().await;
    }
}

async fn docs_bench(args: DocsArgs) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(&args.dir)
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/bench-data installs the manual)", args.dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "html"))
        .collect();
    files.sort();
    let mut pages = std::collections::HashMap::new();
    let mut containers = std::collections::HashMap::new();
    for f in &files {
        let html = std::fs::read(f).expect("page");
        let path = format!("/{}", f.file_name().unwrap().to_string_lossy());
        let doc = dom_query::Document::from(String::from_utf8_lossy(&html).as_ref());
        doc.select(&args.nav).remove();
        // Word by text node: the manual's markup often has no space between
        // elements (`<dt>…</dt><dt>…</dt>`, table cells).
        let text: Vec<String> = doc
            .select(&args.container)
            .nodes()
            .iter()
            .flat_map(|n| n.descendants_it())
            .filter(|n| n.is_text())
            .map(|n| n.text().to_string())
            .collect();
        containers.insert(path.clone(), tokens(&text.join(" ")));
        pages.insert(path, html);
    }
    let (base, stored) = crawl_served(&args.trawl, pages).await;
    let nav_row = |t: &[String]| {
        t.windows(2)
            .any(|w| matches!((w[0].as_str(), w[1].as_str()), ("prev", "up") | ("up", "home") | ("home", "next")))
    };
    let (mut whole, mut with_nav, mut under80) = (0usize, 0usize, 0usize);
    let mut kept_by_page = Vec::new();
    for (path, want) in &containers {
        let md = stored.get(&format!("{base}{path}")).cloned().unwrap_or_default();
        let got = tokens(&markdown_text(&md));
        let mut have: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for w in &got {
            *have.entry(w.as_str()).or_default() += 1;
        }
        let kept = want
            .iter()
            .filter(|w| match have.get_mut(w.as_str()) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                _ => false,
            })
            .count();
        let share = if want.is_empty() { 1.0 } else { kept as f64 / want.len() as f64 };
        if args.show.contains(path) {
            let mut left: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
            for w in &got {
                *left.entry(w.as_str()).or_default() += 1;
            }
            let missing: Vec<&str> = want
                .iter()
                .filter(|w| match left.get_mut(w.as_str()) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        false
                    }
                    _ => true,
                })
                .map(String::as_str)
                .collect();
            println!("==== {path} ({:.1} %)\n{md}\n==== lost words: {}", 100.0 * share, missing.join(" "));
        }
        whole += usize::from(share >= 0.95);
        under80 += usize::from(share < 0.8);
        with_nav += usize::from(nav_row(&got));
        kept_by_page.push((share, path.clone()));
    }
    let n = containers.len();
    println!(
        "{n} pages: {whole} ({:.1} %) keep >= 95 % of their main container's words, {under80} keep < 80 %, {with_nav} ({:.1} %) keep a navigation row",
        100.0 * whole as f64 / n as f64,
        100.0 * with_nav as f64 / n as f64
    );
    kept_by_page.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (share, path) in kept_by_page.iter().take(args.worst) {
        println!("  {:.1} % {path}", 100.0 * share);
    }
    // Code blocks: the fences of the stored markdown, with their labels.
    let mut blocks = Vec::new();
    let mut paths: Vec<&String> = containers.keys().collect();
    paths.sort();
    for path in paths {
        let md = stored.get(&format!("{base}{path}")).cloned().unwrap_or_default();
        for ev in pulldown_cmark::Parser::new(&md) {
            if let pulldown_cmark::Event::Start(pulldown_cmark::Tag::CodeBlock(kind)) = ev {
                let lang = match kind {
                    pulldown_cmark::CodeBlockKind::Fenced(l) => l.to_string(),
                    pulldown_cmark::CodeBlockKind::Indented => String::new(),
                };
                blocks.push((path.clone(), lang));
            }
        }
    }
    let labelled = blocks.iter().filter(|b| !b.1.is_empty()).count();
    let mut by_lang: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for b in &blocks {
        *by_lang.entry(if b.1.is_empty() { "(none)" } else { b.1.as_str() }).or_default() += 1;
    }
    println!(
        "{} code blocks, {labelled} ({:.1} %) labelled: {by_lang:?}",
        blocks.len(),
        100.0 * labelled as f64 / blocks.len().max(1) as f64
    );
    let unlabelled: Vec<&str> = blocks.iter().filter(|b| b.1.is_empty()).map(|b| b.0.as_str()).take(8).collect();
    if !unlabelled.is_empty() {
        println!("unlabelled blocks on: {}", unlabelled.join(" "));
    }
    if args.sample > 0 {
        println!("sample (every {}th block) to check by hand:", args.sample);
        for (i, (path, lang)) in blocks.iter().enumerate().filter(|(i, _)| i % args.sample == 0) {
            let md = stored.get(&format!("{base}{path}")).cloned().unwrap_or_default();
            let code = nth_code_block(&md, blocks[..i].iter().filter(|b| &b.0 == path).count());
            let first: String = code.lines().take(3).collect::<Vec<_>>().join(" ⏎ ");
            println!(
                "  [{}] {path}: {}",
                if lang.is_empty() { "-" } else { lang },
                first.chars().take(110).collect::<String>()
            );
        }
    }
}

/// The text of the `n`-th code block of `md`.
fn nth_code_block(md: &str, n: usize) -> String {
    use pulldown_cmark::{Event, Parser, Tag, TagEnd};
    let mut i = 0;
    let mut inside = false;
    let mut out = String::new();
    for ev in Parser::new(md) {
        match ev {
            Event::Start(Tag::CodeBlock(_)) => inside = i == n,
            Event::End(TagEnd::CodeBlock) => {
                if inside {
                    return out;
                }
                i += 1;
            }
            Event::Text(t) if inside => out.push_str(&t),
            _ => {}
        }
    }
    out
}

async fn embed_speed(args: EmbedSpeedArgs) {
    use trawl::embed::Embedder;
    let files =
        trawl::embed::ModelFiles { dir: std::env::var_os("TRAWL_MODEL_DIR").map(PathBuf::from), ..Default::default() };
    let dir = files.ensure().await.expect("the local model");
    let model = trawl::embed::ModelEmbedder::load(&dir).expect("the model loads");
    let counter = model.token_counter().expect("a token counter");
    let window = model.token_window().expect("a window");
    // The manual's chunks as a crawl makes them, longest first.
    let mut inputs: Vec<(usize, String)> = Vec::new();
    // Word pieces of every chunk as stored (markdown with its link targets)
    // and as embedded (read as text, `content::readable`).
    let (mut stored, mut embedded) = (0usize, 0usize);
    for (path, html) in html_tree(&args.dir) {
        let url = url::Url::parse(&format!("http://docs.invalid{path}")).expect("url");
        let bound = trawl::process::chunk::TokenWindow {
            counter: counter.as_ref(),
            tokens: window - trawl::process::chunk::PREFIX_TOKENS,
        };
        let p = trawl::process::extract_html(&String::from_utf8_lossy(&html), &url)
            .finish_within(&trawl::process::ProcessOptions::default(), Some(bound));
        let (chunks, _) = p.embedding_inputs();
        for (c, text) in p.chunks.iter().zip(&chunks) {
            stored += counter.count(&trawl::content::chunk_prefix(p.title.as_deref(), &c.heading_path))
                + counter.count(&c.content);
            embedded += counter.count(text);
        }
        inputs.extend(chunks.into_iter().map(|t| (counter.count(&t), t)));
    }
    println!(
        "{} chunks in the manual: {:.0} word pieces each as embedded, of {:.0} in their stored markdown",
        inputs.len(),
        embedded as f64 / inputs.len() as f64,
        stored as f64 / inputs.len() as f64
    );
    inputs.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    inputs.truncate(args.chunks);
    let tokens: usize = inputs.iter().map(|(n, _)| n).sum();
    let longest = inputs.first().map_or(0, |(n, _)| *n);
    let texts: Vec<String> = inputs.into_iter().map(|(_, t)| t).collect();
    println!(
        "{} chunks, {:.0} word pieces each on average, the longest {longest} (window {window}), on {} threads",
        texts.len(),
        tokens as f64 / texts.len() as f64,
        rayon::current_num_threads()
    );
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let _ = model.vectors(&refs[..refs.len().min(32)]);
    let t0 = Instant::now();
    let vectors = model.vectors(&refs).expect("vectors");
    let ours = texts.len() as f64 / t0.elapsed().as_secs_f64();
    println!("trawl (trawl-encoder):   {ours:>7.1} chunks/s");
    assert_eq!(vectors.len(), texts.len());
    if args.candle {
        let (speed, lowest) = candle_bert(&dir, &refs, &vectors);
        println!(
            "candle_transformers:     {speed:>7.1} chunks/s (its BERT; lowest cosine with trawl's vectors {lowest:.6})"
        );
    }
    let Some(python) = args.python else { return };
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), serde_json::to_vec(&texts).expect("json")).expect("write");
    let their_vectors = tempfile::NamedTempFile::new().expect("temp file");
    let out = Command::new(python)
        .arg("bench/embed_speed.py")
        .arg(file.path())
        .arg(&dir)
        .arg(their_vectors.path())
        .output()
        .expect("python runs");
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{line}{}", String::from_utf8_lossy(&out.stderr));
    let theirs: f64 = line.trim().lines().last().and_then(|l| l.parse().ok()).expect("chunks/s");
    println!("sentence-transformers:   {theirs:>7.1} chunks/s (torch, same model files, same chunks)");
    println!("ratio: {:.2}x", ours / theirs);
    // The same vectors, or the speed means nothing.
    let reference: Vec<Vec<f32>> =
        serde_json::from_slice(&std::fs::read(their_vectors.path()).expect("their vectors")).expect("json");
    let cosines: Vec<f32> =
        vectors.iter().zip(&reference).map(|(a, b)| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>()).collect();
    let (worst, lowest) =
        cosines.iter().copied().enumerate().fold((0, f32::INFINITY), |w, (i, c)| if c < w.1 { (i, c) } else { w });
    let below = cosines.iter().filter(|&&c| c < 0.9999).count();
    println!("lowest cosine between the two models' vectors of a chunk: {lowest:.6}; {below} below 0.9999");
    if below > 0 {
        std::fs::write("/tmp/embed-speed-worst.txt", &texts[worst]).expect("write");
        println!(
            "  the lowest: chunk {worst}, {} word pieces, in /tmp/embed-speed-worst.txt",
            counter.count(&texts[worst])
        );
    }
}

/// candle_transformers' BERT over `texts`, the way trawl ran it before its
/// own encoder: padded batches of 8, two side by side, glibc keeping freed
/// memory (without it, page zeroing took half of each pass). Its chunks/s,
/// and the lowest cosine between its vectors and `ours`.
fn candle_bert(dir: &std::path::Path, texts: &[&str], ours: &[Vec<f32>]) -> (f64, f32) {
    use candle_core::{DType, Device, Tensor};
    use candle_transformers::models::bert::{BertModel, Config};
    use rayon::prelude::*;
    use tokenizers::{PaddingParams, PaddingStrategy, TruncationParams};
    // SAFETY: allocator parameters only, before the passes allocate.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
    let config: Config =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).expect("config")).expect("config");
    let mut tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).expect("tokenizer");
    tokenizer.with_padding(Some(PaddingParams { strategy: PaddingStrategy::BatchLongest, ..Default::default() }));
    tokenizer.with_truncation(Some(TruncationParams { max_length: 256, ..Default::default() })).expect("truncation");
    // SAFETY: the model cache's checked copy, not written while mapped.
    let vb = unsafe {
        candle_nn::VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], DType::F32, &Device::Cpu)
    }
    .expect("weights");
    let bert = BertModel::load(vb, &config).expect("bert");
    let pass = |batch: &[&str]| -> Vec<Vec<f32>> {
        let enc = tokenizer.encode_batch_fast(batch.to_vec(), true).expect("tokens");
        let (rows, width) = (enc.len(), enc[0].len());
        let ids: Vec<u32> = enc.iter().flat_map(|e| e.get_ids().to_vec()).collect();
        let mask: Vec<u32> = enc.iter().flat_map(|e| e.get_attention_mask().to_vec()).collect();
        let ids = Tensor::from_vec(ids, (rows, width), &Device::Cpu).expect("ids");
        let mask = Tensor::from_vec(mask, (rows, width), &Device::Cpu).expect("mask");
        let hidden = bert.forward(&ids, &ids.zeros_like().expect("types"), Some(&mask)).expect("forward");
        let mask = mask.to_dtype(DType::F32).expect("mask").unsqueeze(2).expect("mask");
        let sum = hidden.broadcast_mul(&mask).expect("mul").sum(1).expect("sum");
        let mean = sum.broadcast_div(&mask.sum(1).expect("count")).expect("mean");
        let mut v = mean.to_vec2::<f32>().expect("vectors");
        v.iter_mut().for_each(|v| {
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter_mut().for_each(|x| *x /= n);
        });
        v
    };
    let _ = pass(&texts[..texts.len().min(8)]);
    let t0 = Instant::now();
    let theirs: Vec<Vec<f32>> = texts.par_chunks(8).flat_map_iter(pass).collect();
    let speed = texts.len() as f64 / t0.elapsed().as_secs_f64();
    let lowest = theirs
        .iter()
        .zip(ours)
        .map(|(a, b)| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>())
        .fold(f32::INFINITY, f32::min);
    (speed, lowest)
}

/// The embedded store at scale (`--server sqlite:///path/bench.db`): the
/// chunks written straight to the file, then the service on it answering
/// hybrid searches, 8 at a time, with its peak RSS.
async fn sqlite_store_bench(args: &StoreArgs, file: &str) {
    let url = format!("sqlite://{file}");
    let mut words = Words::new();
    if args.reuse.is_none() {
        let _ = std::fs::remove_file(file);
        let store = trawl::store::connect(&url, Some(384)).await.expect("store");
        let embedder = trawl::embed::LexicalEmbedder::new(384);
        insert_and_index(args, &store, &url, &embedder, &mut words).await;
        drop(store);
    }
    let svc = start_service_on(
        std::path::Path::new("target/release/trawl"),
        Some(&url),
        &[("TRAWL_EMBEDDER", "lexical".into()), ("TRAWL_MAX_CONCURRENT_SEARCHES", "8".into())],
    )
    .await;
    let queries = typed_queries(&words, args.queries);
    let client = reqwest::Client::new();
    wait_vector_index(&client, &svc).await;
    let rss_before = svc.peak_rss_kib() as f64 / 1024.0;
    // Each half of a hybrid search alone, one at a time: where its time goes.
    for mode in ["text", "vector"] {
        let mut lat = Vec::new();
        for q in &queries {
            let t = Instant::now();
            let r = client
                .post(format!("{}/api/search", svc.base))
                .json(&json!({"query": q, "mode": mode, "limit": 10}))
                .send()
                .await
                .expect("search");
            assert!(r.status().is_success(), "{}", r.status());
            let _ = r.bytes().await;
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        println!("{mode} search alone, 1 at a time: p50 {:.1} ms, p99 {:.1} ms", pct(&lat, 50.0), pct(&lat, 99.0));
    }
    let lexical = trawl::embed::LexicalEmbedder::new(384);
    graph_recall(&client, &svc, file, &queries[..queries.len().min(50)], &lexical).await;
    for concurrency in [1usize, 8] {
        let started = Instant::now();
        let lat = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                let (client, base, queries, lat, next) =
                    (client.clone(), svc.base.clone(), queries.clone(), lat.clone(), next.clone());
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let Some(q) = queries.get(i) else { return };
                        let t = Instant::now();
                        let r = client
                            .post(format!("{base}/api/search"))
                            .json(&json!({"query": q, "mode": "hybrid", "limit": 10}))
                            .send()
                            .await
                            .expect("search");
                        assert!(r.status().is_success(), "{}", r.status());
                        let _ = r.bytes().await;
                        lat.lock().unwrap().push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                })
            })
            .collect();
        for w in workers {
            w.await.expect("worker");
        }
        let lat = lat.lock().unwrap().clone();
        println!(
            "hybrid search over {} chunks, {concurrency} at a time: {} queries in {:.1} s, p50 {:.1} ms, p99 {:.1} ms; \
             service peak RSS {:.0} MiB (before searching {rss_before:.0} MiB)",
            args.chunks,
            lat.len(),
            started.elapsed().as_secs_f64(),
            pct(&lat, 50.0),
            pct(&lat, 99.0),
            svc.peak_rss_kib() as f64 / 1024.0
        );
    }
}

/// Recall@10 of the service's vector search (the graph's candidates, scored
/// exactly) against an exact scan of every stored vector, read in one pass.
async fn graph_recall(
    client: &reqwest::Client,
    svc: &Service,
    file: &str,
    queries: &[String],
    embedder: &dyn trawl::embed::Embedder,
) {
    use futures::TryStreamExt;
    use sqlx::{Connection, Row};

    let vectors: Vec<Vec<f32>> =
        queries.iter().map(|q| embedder.embed_sync(&[q.as_str()]).and_then(|mut v| v.pop()).expect("vector")).collect();
    let mut best: Vec<Vec<(f32, i64)>> = vec![Vec::new(); queries.len()];
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{file}?mode=ro")).await.expect("open store");
    let mut rows = sqlx::query("SELECT id, embedding FROM chunks WHERE embedding IS NOT NULL").fetch(&mut conn);
    let mut stored = Vec::with_capacity(384);
    while let Some(row) = rows.try_next().await.expect("read vectors") {
        let id: i64 = row.get(0);
        let bytes: &[u8] = row.get(1);
        stored.clear();
        stored.extend(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])));
        for (v, top) in vectors.iter().zip(best.iter_mut()) {
            let s: f32 = v.iter().zip(&stored).map(|(a, b)| a * b).sum();
            if top.len() < 10 || s > top[top.len() - 1].0 {
                top.push((s, id));
                top.sort_by(|a, b| b.0.total_cmp(&a.0));
                top.truncate(10);
            }
        }
    }
    drop(rows);
    let (mut found, mut wanted) = (0usize, 0usize);
    for (q, top) in queries.iter().zip(&best) {
        let r: Value = client
            .post(format!("{}/api/search", svc.base))
            .json(&json!({"query": q, "mode": "vector", "limit": 10}))
            .send()
            .await
            .expect("search")
            .json()
            .await
            .expect("json");
        // Ties at the tenth score may go either way: a result counts when it
        // scores at least the exact tenth.
        let tenth = top.last().map_or(f64::MIN, |t| f64::from(t.0));
        let hits = r["results"].as_array().into_iter().flatten();
        found += hits.filter(|h| h["score"].as_f64().is_some_and(|s| s >= tenth - 1e-5)).count().min(top.len());
        wanted += top.len();
    }
    println!(
        "graph recall@10 against an exact scan: {:.3} over {} queries",
        found as f64 / wanted.max(1) as f64,
        queries.len()
    );
}
