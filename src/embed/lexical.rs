//! The lexical embedder (`--embedder lexical`): hashed word unigrams and
//! bigrams, signed, L2 normalised. Instant, deterministic and needing no
//! files, but it matches shared words, not meaning: for tests, and the
//! fallback when the local model cannot be had.

use async_trait::async_trait;

use super::{EmbedError, Embedder, normalize};

pub const DEFAULT_DIMENSIONS: usize = 384;

pub struct LexicalEmbedder {
    dimensions: usize,
    model: String,
}

impl LexicalEmbedder {
    pub fn new(dimensions: usize) -> Self {
        let dimensions = dimensions.max(8);
        Self { dimensions, model: format!("local-hash-{dimensions}") }
    }

    pub fn vector(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.dimensions];
        let words: Vec<String> =
            text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect();
        let mut add = |feature: &str, weight: f32| {
            let h = fnv(feature.as_bytes());
            let i = (h % self.dimensions as u64) as usize;
            let sign = if (h >> 63) & 1 == 0 { 1.0 } else { -1.0 };
            v[i] += sign * weight;
        };
        for w in &words {
            add(w, 1.0);
        }
        for pair in words.windows(2) {
            add(&format!("{} {}", pair[0], pair[1]), 0.5);
        }
        normalize(&mut v);
        v
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

#[async_trait]
impl Embedder for LexicalEmbedder {
    fn model(&self) -> &str {
        &self.model
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn embed_sync(&self, texts: &[&str]) -> Option<Vec<Vec<f32>>> {
        Some(texts.iter().map(|t| self.vector(t)).collect())
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(texts.iter().map(|t| self.vector(t)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::dot;

    #[test]
    fn deterministic_unit_vectors_closer_for_shared_words() {
        let e = LexicalEmbedder::new(384);
        let a = e.vector("count words in a hash map");
        assert_eq!(a, e.vector("count words in a hash map"));
        assert!((dot(&a, &a) - 1.0).abs() < 1e-5);
        let near = dot(&a, &e.vector("how to count words with a map"));
        let far = dot(&a, &e.vector("socket progress events stream"));
        assert!(near > far, "{near} vs {far}");
    }
}
