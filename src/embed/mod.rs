//! Embeddings behind one trait: `local` (the default: a sentence-embedding
//! model run in process, `model`, its files from `fetch`), `lexical` (hashed
//! n-grams: instant, words not meaning) and `openai` (any OpenAI-compatible
//! endpoint via async-openai).

pub mod fetch;
pub mod lexical;
pub mod model;
pub mod openai;

use std::sync::Arc;

use async_trait::async_trait;

pub use fetch::ModelFiles;
pub use lexical::LexicalEmbedder;
pub use model::{ModelEmbedder, TokenCounter};
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
    #[error("invalid embedding configuration: unknown embedder '{0}'; use local, lexical or openai")]
    UnknownEmbedder(String),
    #[error(transparent)]
    Model(#[from] model::ModelError),
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
    /// Slow CPU embedders (the local model) make their vectors behind the
    /// crawl, in its embedding stage, so pages are stored at crawl speed;
    /// fast ones on the pool with each page.
    fn embeds_behind(&self) -> bool {
        false
    }
    /// Whether its vectors match meaning (a sentence model) rather than
    /// words: hybrid search weighs them more (`search::Fusion`).
    fn matches_meaning(&self) -> bool {
        false
    }
    /// The model's own token count, where its window bounds what it reads:
    /// chunks are then cut to fit (`process::chunk`) rather than truncated.
    fn token_counter(&self) -> Option<Arc<dyn TokenCounter>> {
        None
    }
    /// How many tokens a text may have, by [`Embedder::token_counter`].
    fn token_window(&self) -> Option<usize> {
        None
    }
    /// One vector per text, in order, L2-normalised.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

pub type DynEmbedder = Arc<dyn Embedder>;

/// Which embedder a process uses, and how.
#[derive(Debug, Clone)]
pub struct EmbedConfig {
    /// `local` (the model), `lexical` or `openai`.
    pub kind: String,
    /// The local model's files.
    pub files: ModelFiles,
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
            files: ModelFiles::default(),
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
        // The model's size is its own; the others' can be chosen.
        if self.kind == "local" {
            return Some(model::DIMENSIONS);
        }
        if let Some(d) = self.dimensions {
            return Some(d);
        }
        match (self.kind.as_str(), self.model.as_str()) {
            ("lexical", _) => Some(lexical::DEFAULT_DIMENSIONS),
            (_, "text-embedding-3-small" | "text-embedding-ada-002") => Some(1536),
            (_, "text-embedding-3-large") => Some(3072),
            _ => None,
        }
    }
}

/// Makes the configured embedder ready to build: for the local model, its
/// files, fetched once. When they cannot be had the process runs on the
/// lexical embedder, with a warning that says why and what to do.
pub async fn prepare(cfg: &mut EmbedConfig) {
    if cfg.kind != "local" {
        return;
    }
    match cfg.files.ensure().await {
        Ok(dir) => cfg.files.dir = Some(dir),
        Err(e) => fall_back(cfg, &e),
    }
}

fn fall_back(cfg: &mut EmbedConfig, why: &dyn std::fmt::Display) {
    tracing::warn!(
        error = %why,
        "the local embedding model cannot be had: falling back to the lexical embedder (words, not meaning); \
         set TRAWL_MODEL_DIR to a folder holding the model, or --embedder lexical to silence this"
    );
    cfg.kind = "lexical".into();
}

/// Builds the configured embedder. The local model is loaded from where
/// [`prepare`] found it (or the cache, unprepared); failing that, the
/// lexical embedder stands in, with a warning.
pub fn build(cfg: &EmbedConfig) -> Result<DynEmbedder, EmbedError> {
    match cfg.kind.as_str() {
        "local" => {
            let loaded = cfg
                .files
                .present()
                .map_err(|e| e.to_string())
                .and_then(|dir| dir.ok_or_else(|| "its files are not fetched yet".to_string()))
                .and_then(|dir| ModelEmbedder::load(&dir).map_err(|e| e.to_string()));
            match loaded {
                Ok(model) => Ok(Arc::new(model)),
                Err(why) => {
                    let mut cfg = cfg.clone();
                    fall_back(&mut cfg, &why);
                    build(&cfg)
                }
            }
        }
        "lexical" => Ok(Arc::new(LexicalEmbedder::new(cfg.dimensions.unwrap_or(lexical::DEFAULT_DIMENSIONS)))),
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
