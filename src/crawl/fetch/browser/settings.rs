//! The browser's settings and `waitUntil`, as requests and flags give them.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::*;

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
    pub(super) fn event(self) -> &'static str {
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
