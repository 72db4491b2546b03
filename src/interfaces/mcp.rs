//! An MCP server (rmcp) for agents: search what was crawled, read pages,
//! list sources, start, follow, stop and refresh crawls. Served over
//! Streamable HTTP at `/mcp` on the service's port, behind the same Bearer
//! key as the API (the key names the tenant), and over stdio by
//! `trawl mcp` for desktop hosts.
//!
//! Every tool answers a text an agent can read plus the same data as
//! structured content; a failure is a tool error carrying the API's
//! `{error: {code, message}}`, never a dropped session. Arguments that do
//! not fit a tool's schema are tool errors too (rmcp turns them into one).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, ProgressNotificationParam, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{RoleServer, ServiceExt, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::api::AppState;
use crate::auth::Tenant;
use crate::crawl::request::{CrawlRequest, CrawlType};
use crate::error::ApiError;
use crate::progress::CrawlStatus;
use crate::search::Mode;
use crate::store::{SearchFilter, SourceFilter};

/// How long a tool waits for a crawl's end when asked to (`wait`), at most.
const MAX_WAIT: Duration = Duration::from_secs(600);
/// How often a wait looks at a crawl that runs on another instance.
const POLL: Duration = Duration::from_millis(500);

/// The MCP server: one per session, over the service's state.
#[derive(Clone)]
pub struct TrawlMcp {
    state: AppState,
    tools: ToolRouter<Self>,
}

/// The names of [`Mode`], for the tools' schemas.
#[derive(schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum ModeName {
    Hybrid,
    Vector,
    Text,
}

/// The names of [`CrawlType`], for the tools' schemas.
#[derive(schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum CrawlTypeName {
    Auto,
    Page,
    Sitemap,
    LlmsTxt,
    Recursive,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SearchKnowledge {
    /// What to look for, in words.
    pub query: String,
    /// Only pages of this site: a host, host:port or URL.
    #[serde(default)]
    pub source: Option<String>,
    /// `hybrid` (default), `vector` (by meaning) or `text` (by words).
    #[serde(default)]
    #[schemars(with = "Option<ModeName>")]
    pub mode: Option<Mode>,
    /// Results at most, 1 to 100 (default 10).
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SearchCode {
    /// What the code is about; all code examples when left out.
    #[serde(default)]
    pub query: Option<String>,
    /// Only code in this language (e.g. `python`, `rust`, `sql`).
    #[serde(default)]
    pub language: Option<String>,
    /// Results at most, 1 to 100 (default 20).
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListSources {
    /// Sources at most, 1 to 100 (default 20).
    #[serde(default)]
    pub limit: Option<u32>,
    /// `nextCursor` of the previous call.
    #[serde(default)]
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetPage {
    /// The page's id, from search results' pages or a crawl's page listing.
    #[serde(default)]
    pub id: Option<i64>,
    /// Or the page's URL: its newest crawled copy.
    #[serde(default)]
    pub url: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartCrawl {
    /// The http(s) URL to start from.
    pub url: String,
    /// `auto` (default: from the URL and what it serves), `page`, `sitemap`,
    /// `llms_txt` or `recursive` (follow links).
    #[serde(default)]
    #[schemars(with = "Option<CrawlTypeName>")]
    pub crawl_type: Option<CrawlType>,
    /// Link hops from the start page, for recursive crawls.
    #[serde(default)]
    pub max_depth: Option<u32>,
    /// Pages at most.
    #[serde(default)]
    pub max_pages: Option<u32>,
    /// Only URLs matching one of these glob patterns.
    #[serde(default)]
    pub include: Option<Vec<String>>,
    /// No URL matching one of these glob patterns.
    #[serde(default)]
    pub exclude: Option<Vec<String>>,
    /// Wait for the crawl's end (with progress notifications when asked
    /// for), up to `timeoutSeconds`; otherwise answer at once.
    #[serde(default)]
    pub wait: bool,
    /// How long to wait, in seconds (default and most: 600).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CrawlArgs {
    /// The crawl's `progressId`.
    pub progress_id: String,
    /// Wait for the crawl's end, up to `timeoutSeconds` (crawl_status only).
    #[serde(default)]
    pub wait: bool,
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefreshSource {
    /// The source's id, from list_sources.
    pub source_id: String,
    /// Wait for the refresh's end, up to `timeoutSeconds`.
    #[serde(default)]
    pub wait: bool,
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

#[tool_router(router = tools)]
impl TrawlMcp {
    #[tool(description = "Search the crawled documentation and sites: the chunks of text that best answer a query, \
                       each with its page's URL and title. Narrow it to one site with `source`.")]
    async fn search_knowledge(
        &self,
        Parameters(a): Parameters<SearchKnowledge>,
        cx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        answer(async {
            let tenant = tenant(&cx)?;
            crate::api::search::check_query(&a.query)?;
            let limit = crate::api::search::check_limit(a.limit, 10)?;
            let source = crate::api::search::source_host(a.source)?;
            let filter = SearchFilter { crawl_id: None, source, tenant: tenant.0 };
            let _turn = self.state.searches.enter().await?;
            let (store, embedder) = (&*self.state.store, &*self.state.embedder);
            let hits = crate::search::search(store, embedder, &a.query, a.mode.unwrap_or_default(), &filter, limit)
                .await
                .map_err(ApiError::from)?;
            let text = if hits.is_empty() {
                "No results.".to_string()
            } else {
                hits.iter()
                    .enumerate()
                    .map(|(i, h)| {
                        format!("{}. {} — {}\n{}", i + 1, h.title.as_deref().unwrap_or("(untitled)"), h.url, h.content)
                    })
                    .collect::<Vec<_>>()
                    .join("\n\n")
            };
            Ok((text, json!({ "results": hits })))
        })
        .await
    }

    #[tool(description = "Find code examples from the crawled pages by what they do and by language.")]
    async fn search_code_examples(
        &self,
        Parameters(a): Parameters<SearchCode>,
        cx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        answer(async {
            let tenant = tenant(&cx)?;
            if let Some(q) = a.query.as_deref() {
                crate::api::search::check_query(q)?;
            }
            let limit = crate::api::search::check_limit(a.limit, 20)?;
            let filter = SearchFilter { crawl_id: None, source: None, tenant: tenant.0 };
            let language = a.language.as_deref().filter(|l| !l.trim().is_empty());
            let _turn = self.state.searches.enter().await?;
            let hits = self.state.store.search_code(a.query.as_deref(), language, &filter, limit).await?;
            let text = if hits.is_empty() {
                "No code examples.".to_string()
            } else {
                hits.iter()
                    .map(|h| format!("{} ({}):\n```{}\n{}\n```", h.url, h.language, h.language, h.code))
                    .collect::<Vec<_>>()
                    .join("\n\n")
            };
            Ok((text, json!({ "results": hits })))
        })
        .await
    }

    #[tool(description = "List the sources: each site kept, with its pages, chunks and code examples counted, \
                          and its newest crawl.")]
    async fn list_sources(
        &self,
        Parameters(a): Parameters<ListSources>,
        cx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        answer(async {
            let tenant = tenant(&cx)?;
            let limit = crate::api::search::check_limit(a.limit, 20)?;
            let before_id = crate::api::crawls::uuid_cursor(a.cursor.as_deref())?;
            let filter = SourceFilter { tenant: tenant.0, before_id, limit: limit + 1 };
            let mut sources = self.state.store.list_sources(&filter).await?;
            let next = (sources.len() > limit as usize).then(|| {
                sources.truncate(limit as usize);
                sources.last().map(|s| s.id.clone())
            });
            let sources: Vec<_> =
                sources.into_iter().map(|s| crate::api::sources::with_live_crawl(&self.state, s)).collect();
            let text = if sources.is_empty() {
                "No sources yet: start a crawl.".to_string()
            } else {
                sources
                    .iter()
                    .map(|s| {
                        format!(
                            "{} — {} (id {}): {} pages, {} chunks, {} code examples",
                            s.name, s.url, s.id, s.pages, s.chunks, s.code_examples
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            Ok((text, json!({ "sources": sources, "nextCursor": next.flatten() })))
        })
        .await
    }

    #[tool(description = "Read one crawled page whole: its markdown, chunks and code examples. \
                          Name it by `id` or by `url`.")]
    async fn get_page(&self, Parameters(a): Parameters<GetPage>, cx: RequestContext<RoleServer>) -> CallToolResult {
        answer(async {
            let tenant = tenant(&cx)?;
            let not_found = |what: String| ApiError::NotFound(format!("no page {what}"));
            let id = match (a.id, a.url) {
                (Some(id), None) => id,
                (None, Some(url)) => {
                    let parsed = url::Url::parse(url.trim())
                        .map_err(|e| ApiError::InvalidUrl(format!("url is not a URL: {e}")))?;
                    let key = crate::urls::normalize(&parsed).unwrap_or(parsed);
                    self.state
                        .store
                        .page_id_by_url(key.as_str(), tenant.as_deref())
                        .await?
                        .ok_or_else(|| not_found(format!("was crawled at {key}")))?
                }
                _ => return Err(ApiError::InvalidRequest("name the page by exactly one of id and url".into())),
            };
            let page = self.state.store.page_content(id).await?.ok_or_else(|| not_found(format!("with id {id}")))?;
            if tenant.0.is_some() && page.tenant.as_deref() != tenant.as_deref() {
                return Err(not_found(format!("with id {id}")));
            }
            let text = format!(
                "# {}\n{}\n\n{}",
                page.title.as_deref().unwrap_or("(untitled)"),
                page.url,
                page.markdown.as_deref().unwrap_or("(no content: the page was not crawled)")
            );
            Ok((text, serde_json::to_value(&page).map_err(|e| ApiError::Internal(Box::new(e)))?))
        })
        .await
    }

    #[tool(description = "Start crawling a site in the background; answers its progressId at once, or waits for \
                          its end with `wait` (with progress notifications when the host asks for them).")]
    async fn start_crawl(
        &self,
        Parameters(a): Parameters<StartCrawl>,
        cx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        answer(async {
            let tenant = tenant(&cx)?;
            let mut req = json!({ "url": a.url });
            for (key, value) in [
                ("crawlType", a.crawl_type.map(|t| json!(t))),
                ("maxDepth", a.max_depth.map(Value::from)),
                ("maxPages", a.max_pages.map(Value::from)),
                ("include", a.include.map(Value::from)),
                ("exclude", a.exclude.map(Value::from)),
            ] {
                if let Some(v) = value {
                    req[key] = v;
                }
            }
            let req: CrawlRequest = serde_json::from_value(req).map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
            let status = self.state.registry.start(req, tenant.0.clone()).await?;
            self.maybe_wait(status, a.wait, a.timeout_seconds, &tenant, &cx).await
        })
        .await
    }

    #[tool(description = "A crawl's status: its state, pages crawled, failed and skipped, chunks stored; with \
                          `wait`, once it has ended.")]
    async fn crawl_status(
        &self,
        Parameters(a): Parameters<CrawlArgs>,
        cx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        answer(async {
            let tenant = tenant(&cx)?;
            let status = self
                .state
                .registry
                .status(&a.progress_id, tenant.as_deref())
                .await?
                .ok_or_else(|| ApiError::crawl_not_found(&a.progress_id))?;
            self.maybe_wait(status, a.wait, a.timeout_seconds, &tenant, &cx).await
        })
        .await
    }

    #[tool(description = "Stop a crawl: what was stored stays; nothing more is fetched or stored.")]
    async fn stop_crawl(&self, Parameters(a): Parameters<CrawlArgs>, cx: RequestContext<RoleServer>) -> CallToolResult {
        answer(async {
            let tenant = tenant(&cx)?;
            let status = self
                .state
                .registry
                .stop(&a.progress_id, tenant.as_deref())
                .await?
                .ok_or_else(|| ApiError::crawl_not_found(&a.progress_id))?;
            Ok(status_answer(&status))
        })
        .await
    }

    #[tool(description = "Refresh a source: crawl its site again with its settings; pages that did not change \
                          are kept as they are, without embedding them again.")]
    async fn refresh_source(
        &self,
        Parameters(a): Parameters<RefreshSource>,
        cx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        answer(async {
            let tenant = tenant(&cx)?;
            let source = crate::api::sources::visible(&self.state, &a.source_id, &tenant).await?;
            let status = self.state.registry.refresh(&source, source.tenant.clone()).await?;
            self.maybe_wait(status, a.wait, a.timeout_seconds, &tenant, &cx).await
        })
        .await
    }
}

impl TrawlMcp {
    pub fn new(state: AppState) -> Self {
        Self { state, tools: Self::tools() }
    }

    /// The status now, or once the crawl has ended when `wait`, sending
    /// progress notifications meanwhile when the request carries a token.
    /// A cancelled request ends the wait, not the crawl.
    async fn maybe_wait(
        &self,
        mut status: CrawlStatus,
        wait: bool,
        timeout_seconds: Option<u64>,
        tenant: &Tenant,
        cx: &RequestContext<RoleServer>,
    ) -> Result<(String, Value), ApiError> {
        if !wait {
            return Ok(status_answer(&status));
        }
        let limit = timeout_seconds.map_or(MAX_WAIT, |s| Duration::from_secs(s).min(MAX_WAIT));
        let deadline = tokio::time::Instant::now() + limit;
        let token = cx.meta.get_progress_token();
        let id = status.progress_id.clone();
        let mut last_sent = None;
        loop {
            if let Some(token) = &token {
                let done = status.pages_done();
                if last_sent != Some(done) {
                    let total = (done + status.pages_queued).max(done) as f64;
                    let note = ProgressNotificationParam::new(token.clone(), done as f64)
                        .with_total(total)
                        .with_message(status.message.clone().unwrap_or_else(|| status.status.as_str().to_string()));
                    // A host that went away gets no more; the wait goes on.
                    let _ = cx.peer.notify_progress(note).await;
                    last_sent = Some(done);
                }
            }
            if status.status.is_terminal() || tokio::time::Instant::now() >= deadline || cx.ct.is_cancelled() {
                break;
            }
            let changed = async {
                match self.state.registry.progress(&id) {
                    Some(p) => {
                        let mut rx = p.subscribe();
                        let _ = tokio::time::timeout(POLL * 4, rx.changed()).await;
                    }
                    None => tokio::time::sleep(POLL).await,
                }
            };
            tokio::select! {
                _ = cx.ct.cancelled() => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = changed => {}
            }
            status = self
                .state
                .registry
                .status(&id, tenant.as_deref())
                .await?
                .ok_or_else(|| ApiError::crawl_not_found(&id))?;
        }
        Ok(status_answer(&status))
    }
}

#[tool_handler(router = self.tools, name = "trawl", instructions = "trawl crawls websites into searchable knowledge. \
    Use search_knowledge to answer questions from what was crawled, get_page to read a page whole, \
    list_sources to see what is kept, start_crawl to add a site (wait: true to wait for it), \
    crawl_status and stop_crawl to follow or stop it, refresh_source to bring a site up to date.")]
impl rmcp::ServerHandler for TrawlMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// A crawl's status as a tool's answer.
fn status_answer(s: &CrawlStatus) -> (String, Value) {
    let text = format!(
        "crawl {} of {}: {} — {} crawled, {} failed, {} skipped, {} chunks stored{}",
        s.progress_id,
        s.url,
        s.status.as_str(),
        s.pages_crawled,
        s.pages_failed,
        s.pages_skipped,
        s.chunks_stored,
        s.message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default()
    );
    (text, serde_json::to_value(s).unwrap_or(Value::Null))
}

/// The tool's result: text and structured content, or a tool error with
/// the API's error body (an internal error's cause stays in the log).
async fn answer(work: impl Future<Output = Result<(String, Value), ApiError>>) -> CallToolResult {
    match work.await {
        Ok((text, data)) => {
            let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
            r.structured_content = Some(data);
            r
        }
        Err(e) => CallToolResult::structured_error(serde_json::to_value(e.body()).unwrap_or(Value::Null)),
    }
}

/// The tenant a request acts for: the one its Bearer key named over HTTP
/// (the API's key check ran first); the local operator over stdio.
fn tenant(cx: &RequestContext<RoleServer>) -> Result<Tenant, ApiError> {
    match cx.extensions.get::<axum::http::request::Parts>() {
        None => Ok(Tenant(None)),
        Some(parts) => parts
            .extensions
            .get::<Tenant>()
            .cloned()
            .ok_or_else(|| ApiError::Unauthorized("no API key was checked for this request".into())),
    }
}

/// `/mcp`, Streamable HTTP, behind the API's key check. The service's edge
/// checks Host and Origin in open mode, so rmcp's own loopback-only Host
/// list is not needed on top.
pub fn router(state: AppState, root: CancellationToken) -> Router {
    let keys = state.keys.clone();
    let config = StreamableHttpServerConfig::default().disable_allowed_hosts().with_cancellation_token(root);
    let service = StreamableHttpService::new(
        move || Ok(TrawlMcp::new(state.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(keys, crate::api::auth::require_key))
}

/// Serves MCP over stdin and stdout until the host closes them.
pub async fn serve_stdio(state: AppState) -> Result<(), McpError> {
    let running = TrawlMcp::new(state).serve(rmcp::transport::stdio()).await.map_err(|e| McpError(e.to_string()))?;
    running.waiting().await.map_err(|e| McpError(e.to_string()))?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
#[error("MCP over stdio failed: {0}")]
pub struct McpError(String);
