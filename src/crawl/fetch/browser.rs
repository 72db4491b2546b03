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
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chromiumoxide::Page;
use chromiumoxide::browser::Browser;
use chromiumoxide::cdp::browser_protocol::browser::CloseParams;
use chromiumoxide::cdp::browser_protocol::network::{EventResponseReceived, ResourceType};
use chromiumoxide::cdp::browser_protocol::page::{EventLifecycleEvent, NavigateParams};
use chromiumoxide::cdp::browser_protocol::target::CloseTargetParams;
use chromiumoxide::handler::HandlerConfig;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{Mutex, Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use crate::crawl::fetch::proxy::{GUARD_HEADER, GuardedProxy};
use crate::crawl::guard::{AddressGuard, ForbiddenAddress};
use crate::sync::LockExt;

/// How long a page may take to close, and the browser to exit, before it is
/// given up on (the page) or killed (the browser).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// After a failed launch, pages fail at once with the same error for this
/// long instead of each trying again.
const LAUNCH_BACKOFF: Duration = Duration::from_secs(5);
/// Lines of Chromium's stderr kept to explain a failed launch.
const STDERR_LINES: usize = 20;

/// When a rendered page counts as loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum WaitUntil {
    /// `DOMContentLoaded`, then a short settle for scripts that render right after it.
    #[default]
    #[serde(alias = "dom_content_loaded", alias = "domContentLoaded")]
    Domcontentloaded,
    /// The `load` event: images, styles and frames are in.
    Load,
    /// No request in flight for 500 ms (Chromium's `networkIdle`): content fetched by scripts is in.
    #[serde(alias = "network_idle", alias = "networkIdle")]
    Networkidle,
}

impl WaitUntil {
    fn event(self) -> &'static str {
        match self {
            WaitUntil::Domcontentloaded => "DOMContentLoaded",
            WaitUntil::Load => "load",
            WaitUntil::Networkidle => "networkIdle",
        }
    }
}

/// The browser's side of the configuration.
#[derive(Debug, Clone)]
pub struct BrowserSettings {
    /// The Chromium executable.
    pub chrome: PathBuf,
    /// Deadline of one page: open, navigate, wait, read.
    pub page_timeout: Duration,
    /// How long Chromium may take to start and announce its DevTools address.
    pub launch_timeout: Duration,
    /// Pages open at once in this process, all crawls together.
    pub max_pages: usize,
    /// Pages open at once per crawl when the request names no `browserConcurrency`.
    pub default_concurrency: usize,
    /// Pause after `DOMContentLoaded` for scripts that render right after it.
    pub settle: Duration,
    /// Run Chromium without its sandbox; needed when running as root.
    pub no_sandbox: bool,
    /// Where the temporary profile folders go.
    pub profile_root: PathBuf,
    /// Let pages load images, media and fonts. Off by default: the text is
    /// what is kept, and they are most of a page's bytes.
    pub load_media: bool,
}

impl Default for BrowserSettings {
    fn default() -> Self {
        Self {
            chrome: PathBuf::from("/usr/bin/chromium"),
            page_timeout: Duration::from_secs(30),
            launch_timeout: Duration::from_secs(20),
            max_pages: 8,
            default_concurrency: 4,
            settle: Duration::from_millis(250),
            no_sandbox: running_as_root(),
            profile_root: std::env::temp_dir(),
            load_media: false,
        }
    }
}

/// Chromium refuses to start its sandbox as root.
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

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

/// Chromium's process group and its profile folder. Dropped (also when a
/// task is cancelled or the runtime torn down), it kills the whole group and
/// then removes the profile: no process outlives it to write there again.
struct Process {
    child: tokio::process::Child,
    /// The group to kill (its leader is Chromium itself).
    group: Option<i32>,
    profile: Option<tempfile::TempDir>,
}

/// The process group a spawned Chromium leads: its pid, when the pid is one
/// that may be signalled. `killpg(0, …)` would signal trawl's own group and
/// `killpg(1, …)` init's, so a missing or odd pid gives no group at all.
fn group_of(pid: Option<u32>) -> Option<i32> {
    pid.and_then(|p| i32::try_from(p).ok()).filter(|&p| p > 1)
}

impl Process {
    fn kill_group(&mut self) {
        if let Some(group) = self.group {
            // SAFETY: killpg only sends a signal; it touches no memory of ours.
            unsafe {
                libc::killpg(group, libc::SIGKILL);
            }
        }
    }
}

/// Drops a `Process` off the async threads: its `Drop` removes a profile
/// folder, which is blocking file work.
async fn discard(process: Process) {
    let _ = tokio::task::spawn_blocking(move || drop(process)).await;
}

/// Whether a process of group `group` still runs (zombies do not count:
/// they hold no files and run nothing).
fn group_alive(group: i32) -> bool {
    std::fs::read_dir("/proc").into_iter().flatten().flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { return false };
        // `pid (comm) state ppid pgrp …`; comm may hold spaces and parentheses.
        let mut fields = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("").split_whitespace();
        let state = fields.next().unwrap_or("Z");
        let pgrp = fields.nth(1).and_then(|g| g.parse::<i32>().ok());
        pgrp == Some(group) && state != "Z" && state != "X"
    })
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill_group();
        let _ = self.child.try_wait();
        // SIGKILL is not instant for a process busy in the kernel: wait
        // (briefly) until none runs, so none outlives the service.
        if let Some(group) = self.group {
            for _ in 0..100 {
                if !group_alive(group) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if let Some(profile) = self.profile.take() {
            // A process killed a moment ago may still finish a write: a few
            // tries let the removal win.
            for _ in 0..20 {
                match std::fs::remove_dir_all(profile.path()) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => std::thread::sleep(Duration::from_millis(10)),
                    _ => break,
                }
            }
        }
    }
}

/// Pages open now, for tests and metrics; decremented only once a page is closed.
struct OpenCount(watch::Sender<usize>);

impl OpenCount {
    fn add(&self, n: isize) {
        self.0.send_modify(|v| *v = v.saturating_add_signed(n));
        metrics::gauge!("trawl_browser_pages_open").set(*self.0.borrow() as f64);
    }
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
            match self.render_on(&instance, url, wait, closer, deadline).await {
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
        // Should trawl itself be killed (SIGKILL: no destructor runs), the
        // kernel kills Chromium's browser process, and its children follow it.
        // SAFETY: the closure runs between fork and exec and only calls
        // prctl, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
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
        closer: &TaskTracker,
        deadline: Duration,
    ) -> Result<Rendered, RenderError> {
        let dead = instance.dead.clone();
        let work = async {
            let started = Instant::now();
            let page = self.open_page(instance, closer, deadline).await?;
            let opened = started.elapsed();
            let rendered = load(&page.page, url, wait, self.settings.settle, self.settings.load_media).await;
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

/// Removes profiles that a killed trawl left behind (SIGKILL runs no
/// destructor). Chromium's `SingletonLock` names `host-pid` of its browser;
/// a profile whose browser no longer exists on this host is stale.
fn sweep_stale_profiles(root: &Path) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string();
    for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
        if !entry.file_name().to_string_lossy().starts_with("trawl-chromium-") {
            continue;
        }
        let Ok(lock) = std::fs::read_link(entry.path().join("SingletonLock")) else {
            continue;
        };
        let lock = lock.to_string_lossy().to_string();
        let Some((lock_host, pid)) = lock.rsplit_once('-') else {
            continue;
        };
        let gone = pid.parse::<u32>().is_ok_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
        if lock_host == host && gone {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => tracing::info!(profile = %entry.path().display(), "removed a stale Chromium profile"),
                Err(e) => tracing::debug!(error = %e, "could not remove a stale Chromium profile"),
            }
        }
    }
}

/// Flags for a headless Chromium on a closed network: no first-run UI, no
/// background traffic to Google services, no GPU.
/// Every connection goes through the guarded proxy: `<-loopback>` removes
/// Chromium's implicit bypass of loopback, and WebRTC may not send UDP
/// around it.
fn chrome_args(settings: &BrowserSettings, user_agent: &str, proxy: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "--headless",
        "--remote-debugging-port=0",
        "--remote-debugging-address=127.0.0.1",
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--disable-breakpad",
        "--disable-dev-shm-usage",
        "--disable-client-side-phishing-detection",
        "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication,CalculateNativeWinOcclusion",
        "--disable-popup-blocking",
        "--disable-prompt-on-repost",
        "--metrics-recording-only",
        "--password-store=basic",
        "--use-mock-keychain",
        "--mute-audio",
        "--hide-scrollbars",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    args.push(format!("--user-agent={user_agent}"));
    args.push(format!("--proxy-server={proxy}"));
    args.push("--proxy-bypass-list=<-loopback>".into());
    args.push("--force-webrtc-ip-handling-policy=disable_non_proxied_udp".into());
    args.push("--dns-prefetch-disable".into());
    args.push("--disable-quic".into());
    if settings.no_sandbox {
        args.push("--no-sandbox".into());
    }
    args
}

/// Navigates `page` to `url` and waits as `wait` says; then reads the DOM.
/// Unless `load_media`, images, media and fonts are refused by Chromium's
/// Fetch domain before any request for them leaves the page.
async fn load(
    page: &Page,
    url: &Url,
    wait: WaitUntil,
    settle: Duration,
    load_media: bool,
) -> Result<Rendered, RenderError> {
    if load_media {
        return navigate(page, url, wait, settle).await;
    }
    use chromiumoxide::cdp::browser_protocol::fetch::{
        EnableParams, EventRequestPaused, FailRequestParams, RequestPattern,
    };
    use chromiumoxide::cdp::browser_protocol::network::ErrorReason;
    let mut paused = page.event_listener::<EventRequestPaused>().await.map_err(protocol)?;
    let patterns = [ResourceType::Image, ResourceType::Media, ResourceType::Font]
        .into_iter()
        .map(|t| RequestPattern::builder().url_pattern("*").resource_type(t).build())
        .collect::<Vec<_>>();
    page.execute(EnableParams::builder().patterns(patterns).build()).await.map_err(protocol)?;
    let refuse = async {
        while let Some(ev) = paused.next().await {
            let _ = page.execute(FailRequestParams::new(ev.request_id.clone(), ErrorReason::BlockedByClient)).await;
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        r = navigate(page, url, wait, settle) => r,
        _ = refuse => Err(RenderError::Protocol("the page's request events ended".into())),
    }
}

async fn navigate(page: &Page, url: &Url, wait: WaitUntil, settle: Duration) -> Result<Rendered, RenderError> {
    use chromiumoxide::cdp::browser_protocol::inspector::EventTargetCrashed;
    let mut lifecycle = page.event_listener::<EventLifecycleEvent>().await.map_err(protocol)?;
    let mut responses = page.event_listener::<EventResponseReceived>().await.map_err(protocol)?;
    let mut crashed = page.event_listener::<EventTargetCrashed>().await.map_err(protocol)?;
    let main_frame = page.mainframe().await.map_err(protocol)?;
    let is_main = |f: Option<&chromiumoxide::cdp::browser_protocol::page::FrameId>| match (&main_frame, f) {
        (Some(m), Some(f)) => m == f,
        _ => true,
    };
    // chromiumoxide answers a navigation once the page has loaded and the
    // response is in; the wait strategies need the events in between.
    let navigation = page.execute(NavigateParams::new(url.as_str()));
    tokio::pin!(navigation);
    let mut navigated = false;
    let mut started = false;
    let mut reached = false;
    let mut document: Option<(String, u16, String)> = None;
    loop {
        if reached && (document.is_some() || navigated) {
            break;
        }
        tokio::select! {
            r = &mut navigation, if !navigated => {
                navigated = true;
                let r = r.map_err(|e| RenderError::Navigation(e.to_string()))?;
                if let Some(e) = r.result.error_text.as_ref().filter(|e| !e.is_empty()) {
                    return Err(RenderError::Navigation(format!("{e} for {url}")));
                }
                // `load` has fired: the other strategies are met too, but for network idle.
                if wait != WaitUntil::Networkidle {
                    reached = true;
                }
            }
            Some(ev) = lifecycle.next() => {
                if is_main(Some(&ev.frame_id)) {
                    if ev.name == "init" {
                        started = true;
                    } else if started && ev.name == wait.event() {
                        reached = true;
                    }
                }
            }
            Some(ev) = responses.next() => {
                if ev.r#type == ResourceType::Document && is_main(ev.frame_id.as_ref()) {
                    if let Some(refusal) = guard_refusal(&ev.response) {
                        return Err(RenderError::Forbidden(refusal));
                    }
                    let status = u16::try_from(ev.response.status).unwrap_or(0);
                    document = Some((ev.response.url.clone(), status, ev.response.mime_type.clone()));
                }
            }
            Some(_) = crashed.next() => return Err(RenderError::PageCrashed),
        }
    }
    if wait == WaitUntil::Domcontentloaded && !settle.is_zero() {
        tokio::time::sleep(settle).await;
    }
    let html = page
        .evaluate_expression(SERIALIZE_DOM)
        .await
        .map_err(protocol)?
        .into_value::<String>()
        .map_err(|e| RenderError::Protocol(format!("the DOM could not be read: {e}")))?;
    let (final_url, status, mime) = match document {
        Some((u, s, m)) => (Url::parse(&u).unwrap_or_else(|_| url.clone()), Some(s), Some(m)),
        None => (url.clone(), None, None),
    };
    Ok(Rendered { final_url, status, mime, html })
}

/// The guarded proxy's refusal of a response, if it is one: its header
/// marks it, its body says which host and address were refused.
fn guard_refusal(response: &chromiumoxide::cdp::browser_protocol::network::Response) -> Option<ForbiddenAddress> {
    let headers = response.headers.inner().as_object()?;
    let (_, value) = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(GUARD_HEADER))?;
    let ip = value.as_str()?.trim().parse().ok()?;
    let host = Url::parse(&response.url).ok()?.host_str()?.to_string();
    Some(ForbiddenAddress { host, ip })
}

/// The document as markup, doctype included.
const SERIALIZE_DOM: &str = "(() => { let s = ''; if (document.doctype) { s = new XMLSerializer().serializeToString(document.doctype); } if (document.documentElement) { s += document.documentElement.outerHTML; } return s; })()";

/// A page that is closed whatever happens to the task that opened it: by
/// `close`, or on drop by a task on the crawl's tracker.
struct OpenPage {
    page: Page,
    instance: Arc<Instance>,
    closer: TaskTracker,
    open: Arc<OpenCount>,
    closed: bool,
}

impl OpenPage {
    fn new(page: Page, instance: Arc<Instance>, closer: TaskTracker, open: Arc<OpenCount>) -> Self {
        open.add(1);
        Self { page, instance, closer, open, closed: false }
    }

    fn closing(&mut self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.closed = true;
        close_page(self.instance.clone(), self.page.clone(), self.open.clone())
    }

    async fn close(mut self) {
        self.closing().await
    }
}

impl Drop for OpenPage {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        let closing = self.closing();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                self.closer.spawn_on(closing, &rt);
            }
            // No runtime left: the browser goes with the process.
            Err(_) => self.open.add(-1),
        }
    }
}

/// `Target.closeTarget` rather than `Page.close`: no `beforeunload` handler
/// can keep the page open. Chromium answers that call before the page is
/// gone, so the close counts only once the target has left Chromium's own
/// list (`Target.targetDestroyed` usually says so first; it is not always
/// delivered, so the list is also asked). Under load, a close of a page
/// that is still loading was sometimes never carried out; stopping the load
/// first, and asking again, made it reliable in repeated runs.
async fn close_page(instance: Arc<Instance>, page: Page, open: Arc<OpenCount>) {
    use chromiumoxide::cdp::browser_protocol::page::StopLoadingParams;
    use chromiumoxide::cdp::browser_protocol::target::{EventTargetDestroyed, GetTargetsParams};
    let target = page.target_id().clone();
    let close = async {
        // A page still loading (a script that never comes) is stopped first.
        let _ = tokio::time::timeout(Duration::from_millis(200), page.execute(StopLoadingParams::default())).await;
        let mut destroyed = instance.browser.event_listener::<EventTargetDestroyed>().await?;
        instance.browser.execute(CloseTargetParams::new(target.clone())).await?;
        let event = async {
            while let Some(ev) = destroyed.next().await {
                if ev.target_id == target {
                    break;
                }
            }
        };
        let listed = async {
            let mut asks = 0u32;
            loop {
                tokio::time::sleep(Duration::from_millis(25)).await;
                match instance.browser.execute(GetTargetsParams::default()).await {
                    Ok(r) if r.result.target_infos.iter().all(|t| t.target_id != target) => break,
                    Ok(_) => {
                        asks += 1;
                        // Now and then a close is not acted on: ask again.
                        if asks.is_multiple_of(10) {
                            tracing::debug!(?target, asks, "the page is still open; closing it again");
                            let _ = instance.browser.execute(CloseTargetParams::new(target.clone())).await;
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "could not list Chromium's targets"),
                }
            }
        };
        tokio::select! {
            _ = event => {}
            _ = listed => {}
        }
        Ok::<(), chromiumoxide::error::CdpError>(())
    };
    tokio::select! {
        _ = instance.dead.cancelled() => {}
        r = tokio::time::timeout(CLOSE_TIMEOUT, close) => match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "closing a page failed"),
            Err(_) => tracing::warn!("a page did not close within {CLOSE_TIMEOUT:?}"),
        },
    }
    open.add(-1);
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
