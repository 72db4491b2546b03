//! One page in the browser: loaded, waited for, serialised, and closed
//! (by a task of its crawl's tracker when the crawl is stopped).

use std::sync::Arc;
use std::time::Duration;

use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::network::{EventResponseReceived, ResourceType};
use chromiumoxide::cdp::browser_protocol::page::{EventLifecycleEvent, NavigateParams};
use chromiumoxide::cdp::browser_protocol::target::CloseTargetParams;
use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use url::Url;

use crate::crawl::fetch::proxy::GUARD_HEADER;
use crate::crawl::login::Login;
use crate::guard::ForbiddenAddress;

use super::*;

/// Navigates `page` to `url` and waits as `wait` says; then reads the DOM.
/// Unless `load_media`, images, media and fonts are refused by Chromium's
/// Fetch domain before any request for them leaves the page. With a
/// `login`, every request is paused there too, and those to the crawl's
/// hosts go on with its headers (redirect hops are paused anew, so a hop to
/// another host goes without them).
pub(super) async fn load(
    page: &Page,
    url: &Url,
    wait: WaitUntil,
    settle: Duration,
    load_media: bool,
    login: Option<&Login>,
) -> Result<Rendered, RenderError> {
    if load_media && login.is_none() {
        return navigate(page, url, wait, settle).await;
    }
    use chromiumoxide::cdp::browser_protocol::fetch::{
        ContinueRequestParams, EnableParams, EventRequestPaused, FailRequestParams, HeaderEntry, RequestPattern,
    };
    use chromiumoxide::cdp::browser_protocol::network::ErrorReason;
    let media = [ResourceType::Image, ResourceType::Media, ResourceType::Font];
    let mut paused = page.event_listener::<EventRequestPaused>().await.map_err(protocol)?;
    let patterns = match login {
        Some(_) => vec![RequestPattern::builder().url_pattern("*").build()],
        None => media
            .iter()
            .map(|t| RequestPattern::builder().url_pattern("*").resource_type(t.clone()).build())
            .collect::<Vec<_>>(),
    };
    page.execute(EnableParams::builder().patterns(patterns).build()).await.map_err(protocol)?;
    let handle = async {
        while let Some(ev) = paused.next().await {
            if !load_media && media.contains(&ev.resource_type) {
                let _ = page.execute(FailRequestParams::new(ev.request_id.clone(), ErrorReason::BlockedByClient)).await;
                continue;
            }
            let mut go_on = ContinueRequestParams::new(ev.request_id.clone());
            let extra = login.zip(Url::parse(&ev.request.url).ok()).and_then(|(l, u)| l.headers_for(&u).cloned());
            if let Some(extra) = extra {
                let mut entries: Vec<HeaderEntry> = ev
                    .request
                    .headers
                    .inner()
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(name, _)| !extra.contains_key(name.as_str()))
                    .map(|(name, value)| HeaderEntry::new(name.clone(), value.as_str().unwrap_or_default()))
                    .collect();
                entries.extend(extra.iter().map(|(n, v)| HeaderEntry::new(n.as_str(), v.to_str().unwrap_or_default())));
                go_on.headers = Some(entries);
            }
            let _ = page.execute(go_on).await;
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        r = navigate(page, url, wait, settle) => r,
        _ = handle => Err(RenderError::Protocol("the page's request events ended".into())),
    }
}

pub(super) async fn navigate(
    page: &Page,
    url: &Url,
    wait: WaitUntil,
    settle: Duration,
) -> Result<Rendered, RenderError> {
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
pub(super) fn guard_refusal(
    response: &chromiumoxide::cdp::browser_protocol::network::Response,
) -> Option<ForbiddenAddress> {
    let headers = response.headers.inner().as_object()?;
    let (_, value) = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(GUARD_HEADER))?;
    let ip = value.as_str()?.trim().parse().ok()?;
    let host = Url::parse(&response.url).ok()?.host_str()?.to_string();
    Some(ForbiddenAddress { host, ip })
}

/// The document as markup, doctype included.
pub(super) const SERIALIZE_DOM: &str = "(() => { let s = ''; if (document.doctype) { s = new XMLSerializer().serializeToString(document.doctype); } if (document.documentElement) { s += document.documentElement.outerHTML; } return s; })()";

/// A page that is closed whatever happens to the task that opened it: by
/// `close`, or on drop by a task on the crawl's tracker.
pub(super) struct OpenPage {
    pub(super) page: Page,
    pub(super) instance: Arc<Instance>,
    pub(super) closer: TaskTracker,
    pub(super) open: Arc<OpenCount>,
    pub(super) closed: bool,
}

impl OpenPage {
    pub(super) fn new(page: Page, instance: Arc<Instance>, closer: TaskTracker, open: Arc<OpenCount>) -> Self {
        open.add(1);
        Self { page, instance, closer, open, closed: false }
    }

    pub(super) fn closing(&mut self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.closed = true;
        close_page(self.instance.clone(), self.page.clone(), self.open.clone())
    }

    pub(super) async fn close(mut self) {
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
pub(super) async fn close_page(instance: Arc<Instance>, page: Page, open: Arc<OpenCount>) {
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

/// Pages open now, for tests and metrics; decremented only once a page is closed.
pub(super) struct OpenCount(pub(super) watch::Sender<usize>);

impl OpenCount {
    pub(super) fn add(&self, n: isize) {
        self.0.send_modify(|v| *v = v.saturating_add_signed(n));
        metrics::gauge!("trawl_browser_pages_open").set(*self.0.borrow() as f64);
    }
}
