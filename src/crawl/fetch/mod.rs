//! Getting a page: over plain HTTP, or rendered in Chromium; and the check
//! that tells, in `auto` mode, which HTTP pages need the browser.

pub mod browser;
pub mod detect;
pub mod http;
pub mod proxy;

pub use browser::{BrowserSettings, RenderError, Rendered, Renderer, WaitUntil};
pub use http::{FetchError, Fetched, HttpFetcher, Validators};
