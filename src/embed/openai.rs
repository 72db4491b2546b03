//! Any OpenAI-compatible embeddings endpoint through async-openai: batches of
//! at most 2,048 inputs, a bounded number of requests in flight, retries of
//! 429 and 5xx answers with backoff honouring `Retry-After` (async-openai's
//! retry layer), and a lenient response type (`byot`), because Ollama and TEI
//! omit fields such as `object` and `usage`.

use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::middleware::ReqwestService;
use async_openai::middleware::retry::OpenAIRetryLayer;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Semaphore;

use super::{EmbedConfig, EmbedError, Embedder, normalize};

/// The API's own limit of inputs per request.
pub const MAX_BATCH: usize = 2048;

pub struct OpenAiEmbedder {
    client: Client<OpenAIConfig>,
    model: String,
    dimensions: Option<usize>,
    batch_size: usize,
    in_flight: Semaphore,
}

/// Only what we need of the answer; everything else may be missing.
#[derive(Deserialize)]
struct Response {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    embedding: Vec<f32>,
    #[serde(default)]
    index: Option<usize>,
}

impl OpenAiEmbedder {
    pub fn new(cfg: &EmbedConfig) -> Result<Self, EmbedError> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().map_err(EmbedError::Client)?;
        let service =
            tower::ServiceBuilder::new().layer(OpenAIRetryLayer::new(cfg.retries)).service(ReqwestService::new(http));
        let mut config = OpenAIConfig::new().with_api_base(cfg.base_url.trim_end_matches('/'));
        if let Some(key) = &cfg.api_key {
            config = config.with_api_key(key);
        }
        Ok(Self {
            client: Client::with_config(config).with_http_service(service),
            model: cfg.model.clone(),
            dimensions: cfg.dimensions,
            batch_size: cfg.batch_size.clamp(1, MAX_BATCH),
            in_flight: Semaphore::new(cfg.concurrency.max(1)),
        })
    }

    async fn request(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let _slot = self.in_flight.acquire().await.map_err(|_| EmbedError::Closed)?;
        let mut body = json!({ "model": self.model, "input": texts, "encoding_format": "float" });
        if let Some(d) = self.dimensions {
            body["dimensions"] = json!(d);
        }
        let resp: Response = self.client.embeddings().create_byot(body).await?;
        if resp.data.len() != texts.len() {
            return Err(EmbedError::Count { sent: texts.len(), got: resp.data.len() });
        }
        let mut items = resp.data;
        if items.iter().all(|i| i.index.is_some()) {
            items.sort_by_key(|i| i.index);
        }
        Ok(items
            .into_iter()
            .map(|i| {
                let mut v = i.embedding;
                normalize(&mut v);
                v
            })
            .collect())
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn matches_meaning(&self) -> bool {
        true
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn dimensions(&self) -> usize {
        self.dimensions.unwrap_or(0)
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let batches: Vec<&[String]> = texts.chunks(self.batch_size).collect();
        let results = futures::future::join_all(batches.iter().map(|b| self.request(b))).await;
        let mut out = Vec::with_capacity(texts.len());
        for r in results {
            out.extend(r?);
        }
        Ok(out)
    }
}
