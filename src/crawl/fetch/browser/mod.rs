//! Rendering pages in Chromium, driven over CDP by chromiumoxide.
//!
//! One browser per process, started on the first page that needs it: a page
//! costs a hundred HTTP fetches, so nothing pays for Chromium until a crawl
//! asks for it. trawl starts the process itself (Debian's `chromium`, or
//! `TRAWL_CHROME`) with its own temporary profile, and connects chromiumoxide
//! to it. Owning the child lets a supervisor task see the moment it exits:
//! calls in flight then fail at once instead of waiting for CDP timeouts, the
//! next page starts a new browser, and the page that was cut off is retried once.
//!
//! Every page is closed after use. A page whose crawl is stopped is closed by a
//! task on the crawl's own tracker, so `crawl:stopped` (which waits for that
//! tracker) comes only once its pages are gone. At shutdown the browser is
//! closed, waited for (killed if it lingers) and its profile removed.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chromiumoxide::Page;
use chromiumoxide::browser::Browser;
use chromiumoxide::cdp::browser_protocol::browser::CloseParams;
use chromiumoxide::handler::HandlerConfig;
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{Mutex, Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use crate::crawl::fetch::proxy::GuardedProxy;
use crate::crawl::login::Login;
use crate::guard::{AddressGuard, ForbiddenAddress};
use crate::sync::LockExt;

mod page;
mod process;
mod settings;

use page::*;
use process::*;
pub use settings::{BrowserSettings, WaitUntil};

/// How long a page may take to close, and the browser to exit, before it is
/// given up on (the page) or killed (the browser).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// After a failed launch, pages fail at once with the same error for this
/// long instead of each trying again.
const LAUNCH_BACKOFF: Duration = Duration::from_secs(5);
/// Lines of Chromium's stderr kept to explain a failed launch.
const STDERR_LINES: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("could not start Chromium: {0}")]
    Unavailable(String),
    #[error("Chromium exited while rendering the page")]
    Crashed,
    #[error("the page's renderer crashed")]
    PageCrashed,
    #[error("the page did not load within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Navigation(String),
    #[error("{0}")]
    Forbidden(ForbiddenAddress),
    #[error("DevTools protocol error: {0}")]
    Protocol(String),
    #[error("the service is shutting down")]
    ShuttingDown,
}

impl RenderError {
    /// A stable word for the page's `error`, as for HTTP fetches.
    pub fn code(&self) -> &'static str {
        match self {
            RenderError::Unavailable(_) => "browser_unavailable",
            RenderError::Crashed => "browser_crashed",
            RenderError::PageCrashed => "page_crashed",
            RenderError::Timeout(_) => "timeout",
            RenderError::Navigation(_) => "navigation_failed",
            RenderError::Forbidden(_) => "forbidden_address",
            RenderError::Protocol(_) => "browser_error",
            RenderError::ShuttingDown => "shutting_down",
        }
    }
}

fn protocol(e: chromiumoxide::error::CdpError) -> RenderError {
    RenderError::Protocol(e.to_string())
}

/// A rendered page: the document as the browser ended up with it.
#[derive(Debug)]
pub struct Rendered {
    pub final_url: Url,
    /// The main document's HTTP status, when the browser saw a response.
    pub status: Option<u16>,
    /// The main document's media type as served.
    pub mime: Option<String>,
    /// The DOM serialised after the wait: what scripts made of the page.
    pub html: String,
}

/// One running Chromium.
struct Instance {
    browser: Browser,
    /// A blank page kept open for the browser's life (see `launch`).
    _anchor: Page,
    pid: u32,
    ws_url: String,
    profile: PathBuf,
    /// Fired by the supervisor when the process has exited.
    dead: CancellationToken,
    /// Fired to have the supervisor kill the process.
    kill: CancellationToken,
}

/// The process's browser: started lazily, relaunched after a crash, closed at shutdown.
pub struct Renderer {
    settings: BrowserSettings,
    user_agent: String,
    guard: AddressGuard,
    current: Mutex<Option<Arc<Instance>>>,
    /// The last failed launch, to fail fast for a while instead of retrying per page.
    failed_launch: std::sync::Mutex<Option<(Instant, String)>>,
    launches: AtomicU64,
    /// Whether profiles left by killed processes were looked for.
    swept: std::sync::atomic::AtomicBool,
    /// Bounds pages open at once in the process.
    slots: Arc<Semaphore>,
    open: Arc<OpenCount>,
    /// The supervisor, stderr and handler tasks of every instance.
    tracker: TaskTracker,
    /// Fired at shutdown: no browser starts after it.
    closing: CancellationToken,
    /// Every connection of the browser goes through it (see `proxy`).
    proxy: tokio::sync::OnceCell<GuardedProxy>,
}

impl Renderer {
    pub fn new(settings: BrowserSettings, user_agent: String, guard: AddressGuard) -> Self {
        let slots = Arc::new(Semaphore::new(settings.max_pages.max(1)));
        Self {
            settings,
            user_agent,
            guard,
            current: Mutex::new(None),
            failed_launch: std::sync::Mutex::new(None),
            launches: AtomicU64::new(0),
            swept: std::sync::atomic::AtomicBool::new(false),
            slots,
            open: Arc::new(OpenCount(watch::channel(0).0)),
            tracker: TaskTracker::new(),
            closing: CancellationToken::new(),
            proxy: tokio::sync::OnceCell::new(),
        }
    }

    /// How many browsers this process has started (0: none was ever needed).
    pub fn launches(&self) -> u64 {
        self.launches.load(Ordering::Relaxed)
    }

    /// Pages open right now; a receiver so that tests can await a count.
    pub fn open_pages(&self) -> watch::Receiver<usize> {
        self.open.0.subscribe()
    }

    /// The running browser's process id, if one runs.
    pub async fn pid(&self) -> Option<u32> {
        self.current.lock().await.as_ref().filter(|i| !i.dead.is_cancelled()).map(|i| i.pid)
    }

    /// The running browser's DevTools WebSocket address, if one runs.
    pub async fn devtools_url(&self) -> Option<String> {
        self.current.lock().await.as_ref().filter(|i| !i.dead.is_cancelled()).map(|i| i.ws_url.clone())
    }

    /// The running browser's profile folder, if one runs.
    pub async fn profile_dir(&self) -> Option<PathBuf> {
        self.current.lock().await.as_ref().map(|i| i.profile.clone())
    }

    /// Renders `url`. `closer` is the crawl's tracker: a page abandoned by a
    /// stop is closed by a task on it. A page cut off by a browser crash is
    /// retried once on a new browser.
    pub async fn render(
        &self,
        url: &Url,
        wait: WaitUntil,
        login: Option<&Login>,
        closer: &TaskTracker,
        deadline: Duration,
    ) -> Result<Rendered, RenderError> {
        match tokio::time::timeout(deadline, self.guard.check_resolved(url)).await {
            Ok(checked) => checked.map_err(RenderError::Forbidden)?,
            Err(_) => return Err(RenderError::Timeout(deadline)),
        }
        let _slot = self.slots.acquire().await.map_err(|_| RenderError::ShuttingDown)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let instance = self.instance().await?;
            match self.render_on(&instance, url, wait, login, closer, deadline).await {
                Err(RenderError::Crashed) if attempt == 1 && !self.closing.is_cancelled() => {
                    tracing::warn!(%url, "Chromium exited during the page; retrying it on a new browser");
                    metrics::counter!("trawl_browser_retries_total").increment(1);
                }
                r => return r,
            }
        }
    }

    /// The running browser, started if there is none or the last one died.
    async fn instance(&self) -> Result<Arc<Instance>, RenderError> {
        let mut current = self.current.lock().await;
        if let Some(i) = current.as_ref().filter(|i| !i.dead.is_cancelled()) {
            return Ok(i.clone());
        }
        if self.closing.is_cancelled() {
            return Err(RenderError::ShuttingDown);
        }
        if let Some((at, e)) = self.failed_launch.locked().as_ref()
            && at.elapsed() < LAUNCH_BACKOFF
        {
            return Err(RenderError::Unavailable(e.clone()));
        }
        match self.launch().await {
            Ok(i) => {
                let i = Arc::new(i);
                *current = Some(i.clone());
                Ok(i)
            }
            Err(e) => {
                tracing::error!(error = %e, chrome = %self.settings.chrome.display(), "Chromium did not start");
                *self.failed_launch.locked() = Some((Instant::now(), e.clone()));
                Err(RenderError::Unavailable(e))
            }
        }
    }

    async fn launch(&self) -> Result<Instance, String> {
        if !self.swept.swap(true, Ordering::Relaxed) {
            let root = self.settings.profile_root.clone();
            let _ = tokio::task::spawn_blocking(move || sweep_stale_profiles(&root)).await;
        }
        let proxy = self
            .proxy
            .get_or_try_init(|| GuardedProxy::start(self.guard, &self.tracker, self.closing.clone()))
            .await
            .map_err(|e| e.to_string())?
            .url();
        let chrome = &self.settings.chrome;
        let profile = tempfile::Builder::new()
            .prefix("trawl-chromium-")
            .tempdir_in(&self.settings.profile_root)
            .map_err(|e| format!("cannot make a profile folder: {e}"))?;
        let profile_path = profile.path().to_path_buf();
        let mut cmd = tokio::process::Command::new(chrome);
        cmd.args(chrome_args(&self.settings, &self.user_agent, &proxy))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            // Its own process group: renderers, zygotes and utilities can be
            // killed with the browser in one signal.
            .process_group(0)
            .kill_on_drop(true);
        dies_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|e| format!("{}: {e}", chrome.display()))?;
        let pid = child.id();
        let group = group_of(pid);
        let mut process = Process { child, group, profile: Some(profile) };
        let (Some(pid), Some(_)) = (pid, group) else {
            discard(process).await;
            return Err(format!("Chromium has no process id to watch and signal ({pid:?}); it is not used"));
        };
        let Some(stderr) = process.child.stderr.take() else {
            return Err("no stderr from Chromium".into());
        };
        let mut lines = BufReader::new(stderr).lines();
        let mut seen: VecDeque<String> = VecDeque::new();
        let announced = tokio::time::timeout(self.settings.launch_timeout, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some((_, ws)) = line.rsplit_once("listening on ")
                    && ws.starts_with("ws://")
                {
                    return Some(ws.trim().to_string());
                }
                if seen.len() == STDERR_LINES {
                    seen.pop_front();
                }
                seen.push_back(line);
            }
            None
        })
        .await;
        let ws_url = match announced {
            Ok(Some(ws)) => ws,
            other => {
                discard(process).await;
                let why = if other.is_err() { "did not announce its DevTools address in time" } else { "exited" };
                let tail: Vec<String> = seen.into_iter().filter(|l| !l.trim().is_empty()).collect();
                return Err(format!("{} {why}; its last output: {}", chrome.display(), tail.join(" | ")));
            }
        };
        let handler_config =
            HandlerConfig { request_timeout: self.settings.page_timeout, viewport: None, ..HandlerConfig::default() };
        let (browser, mut handler) = match Browser::connect_with_config(ws_url.clone(), handler_config).await {
            Ok(b) => b,
            Err(e) => {
                discard(process).await;
                return Err(format!("cannot connect to Chromium's DevTools at {ws_url}: {e}"));
            }
        };
        let dead = CancellationToken::new();
        let kill = CancellationToken::new();
        let generation = self.launches.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::counter!("trawl_browser_launches_total").increment(1);
        tracing::info!(pid, generation, "Chromium started");

        // The handler drives the CDP connection; it must be polled until the
        // browser is gone, errors or not. Should it end first (or panic), the
        // browser is useless: it is killed, and the next page starts another.
        let (handler_dead, handler_kill) = (dead.clone(), kill.clone());
        self.tracker.spawn(async move {
            let drive = async {
                loop {
                    tokio::select! {
                        biased;
                        _ = handler_dead.cancelled() => break,
                        ev = handler.next() => match ev {
                            Some(Ok(())) => {}
                            Some(Err(e)) => tracing::debug!(error = %e, "CDP handler error"),
                            None => break,
                        },
                    }
                }
            };
            if futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(drive)).await.is_err() {
                tracing::error!("the CDP handler panicked; restarting Chromium on the next page");
            }
            handler_kill.cancel();
        });
        // The supervisor owns the process: it drains stderr (a full pipe would
        // stall Chromium), notices the exit, and removes the profile after it.
        let (sup_dead, sup_kill) = (dead.clone(), kill.clone());
        self.tracker.spawn(async move {
            let mut stderr_open = true;
            let status = loop {
                tokio::select! {
                    status = process.child.wait() => break status,
                    _ = sup_kill.cancelled() => {
                        process.kill_group();
                        break process.child.wait().await;
                    }
                    line = lines.next_line(), if stderr_open => match line {
                        Ok(Some(l)) => tracing::trace!(target: "chromium", "{l}"),
                        _ => stderr_open = false,
                    },
                }
            };
            match status {
                Ok(s) => tracing::info!(pid, status = %s, "Chromium exited"),
                Err(e) => tracing::warn!(pid, error = %e, "could not wait for Chromium"),
            }
            // What is left of the group (renderers still exiting) goes now,
            // before the profile they write to is removed.
            // Dropping the process waits until the group is gone.
            process.kill_group();
            sup_dead.cancel();
            discard(process).await;
        });
        // chromiumoxide polls its browser-level event listeners (those of
        // `Target.targetDestroyed`, which closing pages wait for) only while
        // it tracks some page: this blank one stays open for that.
        let anchor = match tokio::time::timeout(self.settings.launch_timeout, browser.new_page("about:blank")).await {
            Ok(Ok(page)) => page,
            Ok(Err(e)) => {
                kill.cancel();
                return Err(format!("Chromium did not open a page: {e}"));
            }
            Err(_) => {
                kill.cancel();
                return Err("Chromium did not open a page in time".into());
            }
        };
        Ok(Instance { browser, _anchor: anchor, pid, ws_url, profile: profile_path, dead, kill })
    }

    async fn render_on(
        &self,
        instance: &Arc<Instance>,
        url: &Url,
        wait: WaitUntil,
        login: Option<&Login>,
        closer: &TaskTracker,
        deadline: Duration,
    ) -> Result<Rendered, RenderError> {
        let dead = instance.dead.clone();
        let work = async {
            let started = Instant::now();
            let page = self.open_page(instance, closer, deadline).await?;
            let opened = started.elapsed();
            let rendered = load(&page.page, url, wait, self.settings.settle, self.settings.load_media, login).await;
            let loaded = started.elapsed();
            page.close().await;
            tracing::debug!(
                %url,
                open_ms = opened.as_millis() as u64,
                load_ms = (loaded - opened).as_millis() as u64,
                close_ms = (started.elapsed() - loaded).as_millis() as u64,
                "browser page"
            );
            rendered
        };
        tokio::select! {
            biased;
            _ = dead.cancelled() => Err(RenderError::Crashed),
            r = tokio::time::timeout(deadline, work) => match r {
                Ok(r) => r,
                Err(_) if dead.is_cancelled() => Err(RenderError::Crashed),
                Err(_) => Err(RenderError::Timeout(deadline)),
            },
        }
    }

    /// A new blank page. It is created by a task on the crawl's tracker, so
    /// that a page whose creation a stop interrupted is still closed.
    async fn open_page(
        &self,
        instance: &Arc<Instance>,
        closer: &TaskTracker,
        deadline: Duration,
    ) -> Result<OpenPage, RenderError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (i, open, tracker) = (instance.clone(), self.open.clone(), closer.clone());
        closer.spawn(async move {
            let created = tokio::select! {
                _ = i.dead.cancelled() => return,
                r = tokio::time::timeout(deadline, i.browser.new_page("about:blank")) => r,
            };
            let result = match created {
                Ok(Ok(page)) => Ok(OpenPage::new(page, i, tracker, open)),
                Ok(Err(e)) => Err(protocol(e)),
                Err(_) => Err(RenderError::Timeout(deadline)),
            };
            // Nobody waits any more: the page closes as `OpenPage` drops.
            let _ = tx.send(result);
        });
        rx.await.map_err(|_| RenderError::Crashed)?
    }

    /// Closes the browser and waits for it; kills it if it lingers. No browser
    /// starts afterwards.
    pub async fn shutdown(&self) {
        self.closing.cancel();
        self.slots.close();
        let instance = self.current.lock().await.take();
        if let Some(i) = instance {
            tokio::select! {
                _ = i.dead.cancelled() => {}
                _ = tokio::time::timeout(CLOSE_TIMEOUT, i.browser.execute(CloseParams::default())) => {}
            }
            if tokio::time::timeout(CLOSE_TIMEOUT, i.dead.cancelled()).await.is_err() {
                tracing::warn!(pid = i.pid, "Chromium did not exit after Browser.close; killing it");
                i.kill.cancel();
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, i.dead.cancelled()).await;
            }
        }
        self.tracker.close();
        if tokio::time::timeout(CLOSE_TIMEOUT, self.tracker.wait()).await.is_err() {
            tracing::warn!("browser tasks still running at the end of shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::group_of;

    #[test]
    fn only_a_real_pid_names_a_process_group_to_kill() {
        assert_eq!(group_of(Some(4242)), Some(4242));
        for pid in [None, Some(0), Some(1), Some(u32::MAX)] {
            assert_eq!(group_of(pid), None, "{pid:?} must never reach killpg");
        }
    }
}
