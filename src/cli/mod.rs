//! The `trawl` command: `serve`; `crawl` and `refresh` (one crawl in process,
//! with a progress bar); `search`, `sources`, `export`; `embed --missing`;
//! `migrate`. Each fails with a [`CliError`], printed as one line.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

pub mod args;

pub use args::Cli;
use args::{
    Command, CrawlArgs, CrawlTypeArg, EmbedCmdArgs, ExportArgs, RefreshArgs, SearchArgs, ServeArgs, SourcesArgs,
};

use crate::config::Config;
use crate::crawl::{CrawlRequest, CrawlType, Registry};
use crate::progress::CrawlState;
use crate::{App, store};

/// Why a command failed; each says it in words, with its cause's own.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Keys(#[from] crate::auth::KeyError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    App(#[from] crate::AppError),
    #[error(transparent)]
    Start(#[from] crate::crawl::StartError),
    #[error(transparent)]
    Registry(#[from] crate::crawl::registry::RegistryError),
    #[error(transparent)]
    Embed(#[from] crate::embed::EmbedError),
    #[error("{source} ({done} embedded before it)")]
    EmbedStopped { source: crate::embed::EmbedError, done: usize },
    #[error(transparent)]
    Search(#[from] crate::search::SearchError),
    #[error(transparent)]
    Mcp(#[from] crate::interfaces::mcp::McpError),
    #[error("cannot write {path}: {source}")]
    Write { path: std::path::PathBuf, source: std::io::Error },
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    /// The command was asked for something it cannot do.
    #[error("{0}")]
    Usage(String),
}

pub async fn run(cli: Cli) -> ExitCode {
    crate::install_crypto_provider();
    let result = match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Crawl(args) => crawl(args).await,
        Command::Migrate(args) => migrate(args).await,
        Command::Search(args) => search(args).await,
        Command::Embed(args) => embed(args).await,
        Command::Sources(args) => sources(args).await,
        Command::Export(args) => export(args).await,
        Command::Refresh(args) => refresh(args).await,
        Command::Mcp(args) => mcp(args).await,
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })
}

async fn migrate(args: args::MigrateArgs) -> Result<ExitCode, CliError> {
    let embed_config = args.embedding.into_config()?;
    store::connect(&args.database.database_url, embed_config.vector_dimensions()).await?;
    println!("migrations applied to {}", args.database.database_url);
    Ok(ExitCode::SUCCESS)
}

pub fn init_tracing(default_filter: &str) {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| default_filter.to_string());
    // chromiumoxide 0.9 warns about every CDP message of a newer Chromium
    // that its types do not know (and skips it), and logs the connection
    // closing at every browser exit as an error; trawl logs what matters of
    // the browser itself.
    let spec = if spec.contains("chromiumoxide") { spec } else { format!("{spec},chromiumoxide::handler=off") };
    // trafilatura (the second opinion on a page's main content) warns about
    // every page's malformed JSON-LD, which it only reads for metadata, and
    // the HTML parser about every page's misnested tables.
    let spec = if spec.contains("trafilatura") { spec } else { format!("{spec},trafilatura=error") };
    let spec = if spec.contains("html5ever") { spec } else { format!("{spec},html5ever=error") };
    let filter = tracing_subscriber::EnvFilter::try_new(&spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    // Colour only on a terminal: a log file gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).try_init();
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

async fn serve(args: ServeArgs) -> Result<ExitCode, CliError> {
    init_tracing("info,sqlx=warn,tower_http=info");
    let edge = args.edge()?;
    let search = args.search()?;
    let crawler = args.crawler.into_config()?;
    let api_keys = crate::auth::ApiKeys::parse(args.api_keys.as_deref().unwrap_or(""))?;
    let operator_key = crate::auth::OperatorKey::parse(args.operator_key.as_deref())?;
    let cluster = args.cluster.into_config()?;
    let config = Config {
        bind: args.bind,
        database_url: args.database.database_url,
        crawler,
        api_keys,
        operator_key,
        edge,
        cluster,
        schedule: Default::default(),
        webhooks: Default::default(),
        search,
    };
    let app = App::build(config).await?;
    let token = app.shutdown_token();
    let run = app.run_until_stopped();
    tokio::pin!(run);
    tokio::select! {
        r = &mut run => r?,
        _ = shutdown_signal() => {
            tracing::info!("shutdown requested");
            token.cancel();
            run.await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn crawl(args: CrawlArgs) -> Result<ExitCode, CliError> {
    let mut headers = std::collections::BTreeMap::new();
    for h in &args.headers {
        let Some((name, value)) = h.split_once(':') else {
            return Err(CliError::Usage(format!(
                "--header '{}' is not 'Name: value'",
                h.split(':').next().unwrap_or("")
            )));
        };
        headers.insert(name.trim().to_string(), crate::crawl::login::Secret(value.trim().to_string()));
    }
    let registry = local_registry(args.crawler, &args.database).await?;
    let req = CrawlRequest {
        url: args.url,
        crawl_type: match args.crawl_type {
            CrawlTypeArg::Auto => CrawlType::Auto,
            CrawlTypeArg::Page => CrawlType::Page,
            CrawlTypeArg::Sitemap => CrawlType::Sitemap,
            CrawlTypeArg::LlmsTxt => CrawlType::LlmsTxt,
            CrawlTypeArg::Recursive => CrawlType::Recursive,
        },
        max_depth: args.max_depth,
        max_pages: args.max_pages,
        include: args.include,
        exclude: args.exclude,
        same_domain: Some(!args.any_domain),
        allow_subdomains: None,
        respect_robots: Some(!args.ignore_robots),
        render: args.render,
        concurrency: args.concurrency,
        browser_concurrency: None,
        wait_until: args.wait_until,
        tags: Vec::new(),
        chunk_size: None,
        chunk_overlap: None,
        chunk_unit: None,
        webhook: None,
        headers,
        cookies: Default::default(),
        basic_auth: None,
    };
    let started = Instant::now();
    let status = registry.start(req, None).await?;
    watch(&registry, status, started, args.json).await
}

async fn refresh(args: RefreshArgs) -> Result<ExitCode, CliError> {
    let registry = local_registry(args.crawler, &args.database).await?;
    let source = registry.store().get_source(&args.id).await?;
    let source = source
        .ok_or_else(|| CliError::Usage(format!("no source with id '{}' (`trawl sources` lists them)", args.id)))?;
    let started = Instant::now();
    let status = registry.refresh(&source, source.tenant.clone()).await?;
    watch(&registry, status, started, args.json).await
}

/// MCP over stdio: the tools of `/mcp` for one local user (no tenant), with
/// crawls run in this process. When the host closes the pipe, running
/// crawls are stopped and waited for, as at a service's shutdown.
async fn mcp(args: args::McpArgs) -> Result<ExitCode, CliError> {
    init_tracing("warn");
    let mut config = args.crawler.into_config()?;
    crate::embed::prepare(&mut config.embedding).await;
    let store = store::connect(&args.database.database_url, config.embedding.vector_dimensions()).await?;
    let root = CancellationToken::new();
    let engine = crate::engine(config, store.clone(), root.clone(), false, Default::default())?;
    let embedder = engine.embedder.clone();
    let registry = Registry::new(engine, std::sync::Arc::new(crate::progress::NoFanout), None)?;
    registry.start_background();
    let state = crate::api::AppState {
        registry: registry.clone(),
        store,
        embedder,
        keys: Default::default(),
        operator: Default::default(),
        connections: std::sync::Arc::new(|| 0),
        searches: std::sync::Arc::new(crate::search::Gate::new(Default::default())),
    };
    let served = crate::interfaces::mcp::serve_stdio(state).await;
    root.cancel();
    registry.shutdown(tokio::time::Instant::now() + crate::SHUTDOWN_GRACE).await;
    served?;
    Ok(ExitCode::SUCCESS)
}

/// A registry for crawls run in this process (`trawl crawl`, `trawl refresh`):
/// its own store connection, no Socket.IO, no cluster.
async fn local_registry(
    crawler: args::CrawlerArgs,
    database: &args::DatabaseArgs,
) -> Result<std::sync::Arc<Registry>, CliError> {
    init_tracing("warn");
    let mut config = crawler.into_config()?;
    crate::embed::prepare(&mut config.embedding).await;
    let store = store::connect(&database.database_url, config.embedding.vector_dimensions()).await?;
    let engine = crate::engine(config, store, CancellationToken::new(), false, Default::default())?;
    Ok(Registry::new(engine, std::sync::Arc::new(crate::progress::NoFanout), None)?)
}

/// Follows a crawl of this process with a progress bar until it ends;
/// Ctrl-C stops it.
async fn watch(
    registry: &std::sync::Arc<Registry>,
    status: crate::progress::CrawlStatus,
    started: Instant,
    json: bool,
) -> Result<ExitCode, CliError> {
    let id = status.progress_id.clone();
    let mut rx = match registry.progress(&id) {
        Some(p) => p.subscribe(),
        None => return Err(CliError::Usage("the crawl ended before it could be watched".into())),
    };
    let bar = ProgressBar::new(100);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:30}] {pos:>3}% {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let mut stop_sent = false;
    let fin = loop {
        let s = rx.borrow_and_update().clone();
        bar.set_position(s.percentage as u64);
        bar.set_message(format!(
            "{} · {} crawled, {} failed, {} skipped, {} queued",
            s.status.as_str(),
            s.pages_crawled,
            s.pages_failed,
            s.pages_skipped,
            s.pages_queued
        ));
        if s.status.is_terminal() {
            break s;
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() {
                break registry.status(&id, None).await.ok().flatten().unwrap_or(s);
            },
            _ = shutdown_signal(), if !stop_sent => {
                stop_sent = true;
                bar.println("stopping…");
                let _ = registry.stop(&id, None).await;
            }
        }
    };
    bar.finish_and_clear();
    registry.shutdown(tokio::time::Instant::now() + Duration::from_secs(5)).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&fin).unwrap_or_default());
    } else {
        println!(
            "{} {} in {:.1}s: {} crawled, {} failed, {} skipped{}",
            fin.status.as_str(),
            fin.url,
            started.elapsed().as_secs_f64(),
            fin.pages_crawled,
            fin.pages_failed,
            fin.pages_skipped,
            fin.error.as_deref().map(|e| format!(" — {e}")).unwrap_or_default()
        );
        if fin.refresh || fin.pages_unchanged + fin.pages_changed > 0 {
            println!(
                "{} new, {} changed, {} unchanged, {} removed; {} vectors made",
                fin.pages_new, fin.pages_changed, fin.pages_unchanged, fin.pages_removed, fin.chunks_embedded
            );
        }
        println!("progress id: {id}");
    }
    Ok(match fin.status {
        CrawlState::Completed => ExitCode::SUCCESS,
        CrawlState::Cancelled => ExitCode::from(130),
        _ => ExitCode::FAILURE,
    })
}

async fn search(args: SearchArgs) -> Result<ExitCode, CliError> {
    init_tracing("warn");
    let mode = match args.mode.as_str() {
        "hybrid" => crate::search::Mode::Hybrid,
        "vector" => crate::search::Mode::Vector,
        "text" => crate::search::Mode::Text,
        other => return Err(CliError::Usage(format!("mode '{other}' is not hybrid, vector or text"))),
    };
    let mut embed_config = args.embedding.into_config()?;
    crate::embed::prepare(&mut embed_config).await;
    let embedder = crate::embed::build(&embed_config)?;
    let store = store::connect(&args.database.database_url, embed_config.vector_dimensions()).await?;
    let filter = crate::store::SearchFilter { crawl_id: args.crawl, source: args.source, tenant: None };
    let hits = crate::search::search(&*store, &*embedder, &args.query, mode, &filter, args.limit.clamp(1, 100)).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "results": hits })).unwrap_or_default());
    } else if hits.is_empty() {
        println!("no results");
    } else {
        for (i, h) in hits.iter().enumerate() {
            let preview: String =
                h.content.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(160).collect();
            println!(
                "{}. {} ({:.4})\n   {}\n   {preview}",
                i + 1,
                h.title.as_deref().unwrap_or("(untitled)"),
                h.score,
                h.url
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn open_store(database: &args::DatabaseArgs, embedding: args::EmbedArgs) -> Result<store::DynStore, CliError> {
    let embed_config = embedding.into_config()?;
    store::connect(&database.database_url, embed_config.vector_dimensions()).await.map_err(CliError::from)
}

async fn sources(args: SourcesArgs) -> Result<ExitCode, CliError> {
    init_tracing("warn");
    let store = open_store(&args.database, args.embedding).await?;
    let filter = store::SourceFilter { tenant: None, before_id: None, limit: args.limit.clamp(1, 10_000) };
    let sources = store.list_sources(&filter).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "sources": sources })).unwrap_or_default());
    } else if sources.is_empty() {
        println!("no sources yet: crawl a site first");
    } else {
        for s in &sources {
            let last = s.last_crawl.as_ref().map(|c| format!("last crawl {} ({})", c.id, c.status.as_str()));
            println!(
                "{}  {}\n   {}: {} pages, {} chunks, {} code examples; {}",
                s.id,
                s.name,
                s.url,
                s.pages,
                s.chunks,
                s.code_examples,
                last.unwrap_or_else(|| "never crawled".into())
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn export(args: ExportArgs) -> Result<ExitCode, CliError> {
    use futures::StreamExt;
    use std::io::Write;
    init_tracing("warn");
    let format = crate::sources::export::Format::parse(&args.format)
        .ok_or_else(|| CliError::Usage(format!("format '{}' is not jsonl or markdown", args.format)))?;
    let store = open_store(&args.database, args.embedding).await?;
    let source = store.get_source(&args.id).await?;
    let source = source
        .ok_or_else(|| CliError::Usage(format!("no source with id '{}' (`trawl sources` lists them)", args.id)))?;
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|source| CliError::Write { path: path.clone(), source })?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut stream = std::pin::pin!(crate::sources::export::stream(store, &source, format));
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        out.write_all(&batch)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Rows embedded per round of `embed --missing`.
const EMBED_ROUND: u32 = 512;

async fn embed(args: EmbedCmdArgs) -> Result<ExitCode, CliError> {
    init_tracing("warn");
    if !args.missing {
        return Err(CliError::Usage("nothing to do: pass --missing to embed what was stored without a vector".into()));
    }
    let mut embed_config = args.embedding.into_config()?;
    crate::embed::prepare(&mut embed_config).await;
    let embedder = crate::embed::build(&embed_config)?;
    let store = store::connect(&args.database.database_url, embed_config.vector_dimensions()).await?;
    let mut done = 0usize;
    loop {
        let rows = store.unembedded(EMBED_ROUND).await?;
        if rows.is_empty() {
            break;
        }
        let texts: Vec<String> = rows.iter().map(|r| r.text.clone()).collect();
        let vectors = embedder.embed(&texts).await.map_err(|source| CliError::EmbedStopped { source, done })?;
        let n = rows.len();
        let pairs: Vec<_> = rows.into_iter().zip(vectors).collect();
        store.set_vectors(&pairs, embedder.model()).await?;
        done += n;
    }
    println!("embedded {done} chunks and code examples with {}", embedder.model());
    Ok(ExitCode::SUCCESS)
}
