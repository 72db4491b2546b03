//! Embeddings behind one trait: `local` (the default: offline, deterministic,
//! lexical) and `openai` (any OpenAI-compatible endpoint via async-openai).

pub mod local;
pub mod openai;

use std::sync::Arc;

use async_trait::async_trait;

pub use local::LocalEmbedder;
pub use openai::OpenAiEmbedder;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("embedding request failed: {0}")]
    Request(#[from] async_openai::error::OpenAIError),
    #[error("embedding request failed: the embedder is closed")]
    Closed,
    #[error("embedding response did not fit the request: {got} vectors for {sent} inputs")]
    Count { sent: usize, got: usize },
    #[error("invalid embedding configuration: could not build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("invalid embedding configuration: unknown embedder '{0}'; use local or openai")]
    UnknownEmbedder(String),
}

#[async_trait]
pub trait Embedder: Send + Sync + 'static {
    /// Recorded with every vector, so vectors of different models never mix.
    fn model(&self) -> &str;
    fn dimensions(&self) -> usize;
    /// CPU embedders compute on the caller's thread (the rayon pool);
    /// remote ones return `None` and are called through [`Embedder::embed`].
    fn embed_sync(&self, _texts: &[&str]) -> Option<Vec<Vec<f32>>> {
        None
    }
    /// One vector per text, in order, L2-normalised.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

pub type DynEmbedder = Arc<dyn Embedder>;

/// Which embedder a process uses, and how.
#[derive(Debug, Clone)]
pub struct EmbedConfig {
    /// `local` or `openai`.
    pub kind: String,
    pub base_url: String,
    pub model: String,
    /// Vector size; `None` lets an OpenAI model choose.
    pub dimensions: Option<usize>,
    pub api_key: Option<String>,
    /// Inputs per request (at most 2,048).
    pub batch_size: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Retries of a 429 or 5xx answer (honouring `Retry-After`).
    pub retries: usize,
}

impl Default for EmbedConfig {
    fn default() -> Self {
        Self {
            kind: "local".into(),
            base_url: "https://api.openai.com/v1".into(),
            model: "text-embedding-3-small".into(),
            dimensions: None,
            api_key: None,
            batch_size: 256,
            concurrency: 4,
            retries: 5,
        }
    }
}

impl EmbedConfig {
    /// The vector size this configuration produces, where it is known
    /// without asking the endpoint: the store's vector columns are made for it.
    pub fn vector_dimensions(&self) -> Option<usize> {
        if let Some(d) = self.dimensions {
            return Some(d);
        }
        match (self.kind.as_str(), self.model.as_str()) {
            ("local", _) => Some(local::DEFAULT_DIMENSIONS),
            (_, "text-embedding-3-small" | "text-embedding-ada-002") => Some(1536),
            (_, "text-embedding-3-large") => Some(3072),
            _ => None,
        }
    }
}

/// Builds the configured embedder.
pub fn build(cfg: &EmbedConfig) -> Result<DynEmbedder, EmbedError> {
    match cfg.kind.as_str() {
        "local" => Ok(Arc::new(LocalEmbedder::new(cfg.dimensions.unwrap_or(local::DEFAULT_DIMENSIONS)))),
        "openai" => Ok(Arc::new(OpenAiEmbedder::new(cfg)?)),
        other => Err(EmbedError::UnknownEmbedder(other.to_string())),
    }
}

/// Scales a vector to unit length, so cosine similarity is a dot product.
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
