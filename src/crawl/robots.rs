//! robots.txt, fetched once per origin and honoured by every page of a crawl.
//!
//! Follows RFC 9309: a missing file (4xx) allows everything; an unreachable
//! one (5xx, network error) disallows everything, since the site may be
//! overloaded. Parsing and matching are texting_robots'.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use texting_robots::Robot;
use tokio::sync::{Mutex, OnceCell};
use url::Url;

use crate::crawl::fetch::{FetchError, Fetched};

/// robots.txt files larger than this are cut, as RFC 9309 allows (500 KiB).
const MAX_ROBOTS_BYTES: usize = 500 * 1024;

pub enum Rules {
    AllowAll,
    /// The file could not be read; nothing may be crawled. Keeps the reason.
    DisallowAll(String),
    Parsed(Box<Robot>),
}

impl Rules {
    pub fn allowed(&self, url: &Url) -> bool {
        match self {
            Rules::AllowAll => true,
            Rules::DisallowAll(_) => false,
            Rules::Parsed(r) => r.allowed(url.as_str()),
        }
    }

    pub fn crawl_delay(&self) -> Option<Duration> {
        match self {
            Rules::Parsed(r) => r.delay.filter(|d| d.is_finite() && *d > 0.0).map(Duration::from_secs_f32),
            _ => None,
        }
    }

    /// Why a URL was refused, for the page's `error`.
    pub fn reason(&self) -> String {
        match self {
            Rules::DisallowAll(why) => {
                format!("robots_disallowed: robots.txt unavailable ({why}); crawling refused")
            }
            _ => "robots_disallowed: disallowed by robots.txt".to_string(),
        }
    }
}

/// The robots.txt rules of every origin one crawl touches.
pub struct Robots {
    agent: String,
    by_origin: Mutex<HashMap<String, Arc<OnceCell<Arc<Rules>>>>>,
}

impl Robots {
    /// `user_agent` is matched by its product token ("trawl" of "trawl/0.1 (...)").
    pub fn new(user_agent: &str) -> Self {
        let agent = user_agent.split(['/', ' ']).next().unwrap_or(user_agent).to_string();
        Self { agent, by_origin: Mutex::new(HashMap::new()) }
    }

    /// The rules of `url`'s origin, read on first use. `get` asks for
    /// robots.txt as the crawl asks for its own documents (in the host's
    /// turn, with its login), downloading a 2xx body.
    pub async fn rules_for<F>(&self, url: &Url, get: impl FnOnce(Url) -> F) -> Arc<Rules>
    where
        F: std::future::Future<Output = Result<Fetched, FetchError>>,
    {
        let origin = url.origin().ascii_serialization();
        let cell = {
            let mut map = self.by_origin.lock().await;
            map.entry(origin.clone()).or_default().clone()
        };
        cell.get_or_init(|| async {
            let Ok(robots) = Url::parse(&format!("{origin}/robots.txt")) else {
                return Arc::new(Rules::AllowAll);
            };
            Arc::new(self.read(&origin, get(robots).await))
        })
        .await
        .clone()
    }

    fn read(&self, origin: &str, result: Result<Fetched, FetchError>) -> Rules {
        match result {
            Ok(f) if (200..300).contains(&f.status) => {
                let body = f.body.unwrap_or_default();
                let body = &body[..body.len().min(MAX_ROBOTS_BYTES)];
                match Robot::new(&self.agent, body) {
                    Ok(r) => Rules::Parsed(Box::new(r)),
                    Err(e) => {
                        tracing::warn!(%origin, error = %e, "unparseable robots.txt; allowing all");
                        Rules::AllowAll
                    }
                }
            }
            Ok(f) if (400..500).contains(&f.status) => Rules::AllowAll,
            Ok(f) => Rules::DisallowAll(format!("HTTP {}", f.status)),
            Err(FetchError::TooLarge { .. }) => Rules::AllowAll,
            Err(e) => Rules::DisallowAll(e.to_string()),
        }
    }
}
