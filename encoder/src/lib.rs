//! The sentence model's forward pass (a BERT encoder), laid out for
//! throughput on CPU. candle reads the weights (`VarBuilder` over the
//! safetensors file) and `gemm`, candle's own matrix engine, does the
//! products; what differs from `candle_transformers`' BERT is the plan:
//!
//! - **no padding**: a batch's sequences are stacked token by token, and
//!   attention runs per sequence at its own length, so no work is spent on
//!   pad tokens and no mask is needed;
//! - **one pass per core**: every product runs on its caller's thread, and
//!   the pool runs one batch per core; candle splits each product over the
//!   cores and waits at every step (barriers were 8 % of a pass);
//! - **fused steps**: one product for query, key and value (the query
//!   pre-scaled), bias with GELU or with residual and layer norm in one
//!   sweep, buffers reused from layer to layer;
//! - **vectorised `exp` and `erf`**: softmax and exact GELU called libm per
//!   element (`erff` alone was 8 % of a pass); here they are polynomials
//!   the compiler vectorises (AVX2 when the CPU has it), within 1e-6 of
//!   libm.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::HiddenAct;

pub use candle_core::Error as LoadError;
pub use candle_transformers::models::bert::Config;

/// Input the encoder cannot read: the tokenizer and the weights disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    UnknownToken(u32),
    TooLong { tokens: usize, window: usize },
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownToken(id) => write!(f, "token {id} is outside the model's vocabulary"),
            Self::TooLong { tokens, window } => write!(f, "{tokens} tokens do not fit a window of {window}"),
        }
    }
}

impl std::error::Error for InputError {}

/// A layer norm's scale and shift.
struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

struct Layer {
    /// Query, key and value side by side, `[hidden, 3 × hidden]`, the
    /// query's columns and bias scaled by `1/√head` (the score's scale).
    qkv: Vec<f32>,
    qkv_bias: Vec<f32>,
    /// `[hidden, hidden]`.
    out: Vec<f32>,
    out_bias: Vec<f32>,
    attention_norm: Norm,
    /// `[hidden, intermediate]`.
    up: Vec<f32>,
    up_bias: Vec<f32>,
    /// `[intermediate, hidden]`.
    down: Vec<f32>,
    down_bias: Vec<f32>,
    output_norm: Norm,
}

pub struct Encoder {
    /// `[vocab, hidden]`.
    words: Vec<f32>,
    /// `[positions, hidden]`, token type 0 added in (the only one used).
    positions: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    intermediate: usize,
    eps: f32,
}

/// A tensor's values as one row-major vector.
fn values(t: Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// A linear layer's weight `[out, in]` as the right operand of `x · W`: `[in, out]`.
fn transposed(vb: &VarBuilder, out: usize, inp: usize) -> candle_core::Result<Vec<f32>> {
    values(vb.get((out, inp), "weight")?.t()?.contiguous()?)
}

fn norm(vb: VarBuilder, size: usize) -> candle_core::Result<Norm> {
    Ok(Norm { weight: values(vb.get(size, "weight")?)?, bias: values(vb.get(size, "bias")?)? })
}

impl Encoder {
    /// Reads a BERT checkpoint with exact GELU (all-MiniLM-L6-v2 and its kin).
    pub fn load(vb: VarBuilder, config: &Config) -> candle_core::Result<Self> {
        if config.hidden_act != HiddenAct::Gelu {
            candle_core::bail!("the encoder runs exact GELU; the model asks for {:?}", config.hidden_act)
        }
        let (h, i) = (config.hidden_size, config.intermediate_size);
        let heads = config.num_attention_heads;
        if heads == 0 || h % heads != 0 {
            candle_core::bail!("{heads} heads do not divide a hidden size of {h}")
        }
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") { vb.pp("bert") } else { vb };
        let e = vb.pp("embeddings");
        let words = values(e.get((config.vocab_size, h), "word_embeddings.weight")?)?;
        let types = e.get((config.type_vocab_size, h), "token_type_embeddings.weight")?.get(0)?;
        let positions =
            values(e.get((config.max_position_embeddings, h), "position_embeddings.weight")?.broadcast_add(&types)?)?;
        let embedding_norm = norm(e.pp("LayerNorm"), h)?;
        let scale = 1.0 / ((h / heads) as f64).sqrt();
        let layers = (0..config.num_hidden_layers)
            .map(|n| {
                let l = vb.pp(format!("encoder.layer.{n}"));
                let a = l.pp("attention.self");
                let (q, k, v) = (a.pp("query"), a.pp("key"), a.pp("value"));
                let weight = |vb: &VarBuilder| vb.get((h, h), "weight");
                let qkv = Tensor::cat(&[(weight(&q)? * scale)?, weight(&k)?, weight(&v)?], 0)?;
                let qkv_bias = Tensor::cat(&[(q.get(h, "bias")? * scale)?, k.get(h, "bias")?, v.get(h, "bias")?], 0)?;
                let (o, up, down) = (l.pp("attention.output"), l.pp("intermediate"), l.pp("output"));
                Ok(Layer {
                    qkv: values(qkv.t()?.contiguous()?)?,
                    qkv_bias: values(qkv_bias)?,
                    out: transposed(&o.pp("dense"), h, h)?,
                    out_bias: values(o.pp("dense").get(h, "bias")?)?,
                    attention_norm: norm(o.pp("LayerNorm"), h)?,
                    up: transposed(&up.pp("dense"), i, h)?,
                    up_bias: values(up.pp("dense").get(i, "bias")?)?,
                    down: transposed(&down.pp("dense"), h, i)?,
                    down_bias: values(down.pp("dense").get(h, "bias")?)?,
                    output_norm: norm(down.pp("LayerNorm"), h)?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            words,
            positions,
            embedding_norm,
            layers,
            hidden: h,
            heads,
            intermediate: i,
            eps: config.layer_norm_eps as f32,
        })
    }

    /// Loads the safetensors file at `weights` in f32.
    pub fn from_file(weights: &std::path::Path, config: &Config) -> candle_core::Result<Self> {
        // SAFETY: the file is ours (a checked copy in the cache, or the
        // operator's TRAWL_MODEL_DIR) and is not written while mapped; the
        // map is dropped once the weights are copied out.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu) }?;
        Self::load(vb, config)
    }

    /// The longest sequence the position table covers.
    pub fn max_tokens(&self) -> usize {
        self.positions.len() / self.hidden
    }

    /// The mean of each sequence's last hidden states (not normalised), on
    /// the caller's thread; an empty sequence gives zeros.
    pub fn mean_pooled(&self, sequences: &[&[u32]]) -> Result<Vec<Vec<f32>>, InputError> {
        let h = self.hidden;
        let vocab = self.words.len() / h;
        for s in sequences {
            if s.len() > self.max_tokens() {
                return Err(InputError::TooLong { tokens: s.len(), window: self.max_tokens() });
            }
            if let Some(&id) = s.iter().find(|&&id| id as usize >= vocab) {
                return Err(InputError::UnknownToken(id));
            }
        }
        let total: usize = sequences.iter().map(|s| s.len()).sum();
        let longest = sequences.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut x = vec![0f32; total * h];
        let mut row = 0;
        for s in sequences {
            for (p, &id) in s.iter().enumerate() {
                let (word, position) = (id as usize * h, p * h);
                let dst = &mut x[row * h..(row + 1) * h];
                let (w, pos) = (&self.words[word..word + h], &self.positions[position..position + h]);
                for ((d, w), p) in dst.iter_mut().zip(w).zip(pos) {
                    *d = w + p;
                }
                row += 1;
            }
        }
        kernels::layer_norm(&mut x, &self.embedding_norm.weight, &self.embedding_norm.bias, self.eps);
        let mut qkv = vec![0f32; total * 3 * h];
        let mut context = vec![0f32; total * h];
        let mut scores = vec![0f32; longest * longest];
        let mut up = vec![0f32; total * self.intermediate];
        let mut sum = vec![0f32; total * h];
        for layer in &self.layers {
            product(total, h, 3 * h, &x, &layer.qkv, &mut qkv);
            kernels::add_bias(&mut qkv, &layer.qkv_bias);
            self.attention(sequences, &qkv, &mut scores, &mut context);
            product(total, h, h, &context, &layer.out, &mut sum);
            kernels::add_bias_residual(&mut sum, &layer.out_bias, &x);
            kernels::layer_norm(&mut sum, &layer.attention_norm.weight, &layer.attention_norm.bias, self.eps);
            std::mem::swap(&mut x, &mut sum);
            product(total, h, self.intermediate, &x, &layer.up, &mut up);
            kernels::bias_gelu(&mut up, &layer.up_bias);
            product(total, self.intermediate, h, &up, &layer.down, &mut sum);
            kernels::add_bias_residual(&mut sum, &layer.down_bias, &x);
            kernels::layer_norm(&mut sum, &layer.output_norm.weight, &layer.output_norm.bias, self.eps);
            std::mem::swap(&mut x, &mut sum);
        }
        let mut start = 0;
        Ok(sequences
            .iter()
            .map(|s| {
                let mut mean = vec![0f32; h];
                for r in x[start * h..(start + s.len()) * h].chunks_exact(h) {
                    mean.iter_mut().zip(r).for_each(|(m, v)| *m += v);
                }
                let n = s.len().max(1) as f32;
                mean.iter_mut().for_each(|m| *m /= n);
                start += s.len();
                mean
            })
            .collect())
    }

    /// Self-attention of each sequence over itself, head by head, into
    /// `context` (`[tokens, hidden]`, heads side by side).
    fn attention(&self, sequences: &[&[u32]], qkv: &[f32], scores: &mut [f32], context: &mut [f32]) {
        let h = self.hidden;
        let d = h / self.heads;
        let stride = 3 * h;
        let mut start = 0;
        for s in sequences {
            let n = s.len();
            if n == 0 {
                continue;
            }
            let rows = &qkv[start * stride..(start + n) * stride];
            let out = &mut context[start * h..(start + n) * h];
            let scores = &mut scores[..n * n];
            for head in 0..self.heads {
                let (q, k, v) = (head * d, h + head * d, 2 * h + head * d);
                // SAFETY: each operand lies within its slice: `n` rows of
                // `rows` by its stride, `d` columns from an offset below
                // `2h + d ≤ stride`; `scores` holds n × n; `out` n rows of h.
                unsafe {
                    // scores = Q · Kᵀ (n × d · d × n): Kᵀ is K read by columns.
                    multiply(
                        n,
                        n,
                        d,
                        scores.as_mut_ptr(),
                        n,
                        rows[q..].as_ptr(),
                        stride,
                        rows[k..].as_ptr(),
                        1,
                        stride,
                    );
                }
                kernels::softmax_rows(scores, n);
                // SAFETY: as above; the head's `d` columns of `out`.
                unsafe {
                    multiply(
                        n,
                        d,
                        n,
                        out[head * d..].as_mut_ptr(),
                        h,
                        scores.as_ptr(),
                        n,
                        rows[v..].as_ptr(),
                        stride,
                        1,
                    );
                }
            }
            start += n;
        }
    }
}

/// `out = a · b` for row-major `a` (`m × k`) and `b` (`k × n`), on this thread.
fn product(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], out: &mut [f32]) {
    assert!(a.len() >= m * k && b.len() >= k * n && out.len() >= m * n, "operands fit their shapes");
    // SAFETY: the assertion above bounds every element the product touches.
    unsafe { multiply(m, n, k, out.as_mut_ptr(), n, a.as_ptr(), k, b.as_ptr(), n, 1) }
}

/// `dst = lhs · rhs` (`m × k` · `k × n`) on this thread, each operand by its
/// first element and strides: rows of `dst` and `lhs` `*_rows` apart, their
/// columns adjacent; `rhs`'s rows and columns as given (a transposed
/// operand is read in place).
///
/// # Safety
/// Every element the shapes and strides reach lies within its operand.
#[allow(clippy::too_many_arguments)] // three operands, their strides, the shape
unsafe fn multiply(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rows: usize,
    lhs: *const f32,
    lhs_rows: usize,
    rhs: *const f32,
    rhs_rows: usize,
    rhs_columns: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the caller's promise; gemm reads and writes within the shapes.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rows as isize,
            false,
            lhs,
            1,
            lhs_rows as isize,
            rhs,
            rhs_columns as isize,
            rhs_rows as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// Element-wise steps, written so the compiler vectorises them, and
/// compiled twice: for AVX2 with FMA (chosen at run time) and for the
/// baseline.
mod kernels {
    macro_rules! dispatch {
        ($(fn $name:ident($($arg:ident: $ty:ty),*) $body:block)*) => {$(
            pub fn $name($($arg: $ty),*) {
                #[inline(always)]
                fn generic($($arg: $ty),*) $body
                #[cfg(target_arch = "x86_64")]
                {
                    #[target_feature(enable = "avx2,fma")]
                    unsafe fn avx2($($arg: $ty),*) { generic($($arg),*) }
                    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                        // SAFETY: the CPU has the features the copy was built for.
                        return unsafe { avx2($($arg),*) };
                    }
                }
                generic($($arg),*)
            }
        )*};
    }

    /// Sum of `f` over a slice in eight lanes (a single accumulator would
    /// not vectorise).
    #[inline(always)]
    fn sum_of(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
        let mut lanes = [0f32; 8];
        let mut chunks = xs.chunks_exact(8);
        for c in &mut chunks {
            for (l, &v) in lanes.iter_mut().zip(c) {
                *l += f(v);
            }
        }
        lanes.iter().sum::<f32>() + chunks.remainder().iter().map(|&v| f(v)).sum::<f32>()
    }

    #[inline(always)]
    fn sum(xs: &[f32]) -> f32 {
        sum_of(xs, |v| v)
    }

    #[inline(always)]
    fn max(xs: &[f32]) -> f32 {
        let mut lanes = [f32::NEG_INFINITY; 8];
        let mut chunks = xs.chunks_exact(8);
        for c in &mut chunks {
            for (l, &v) in lanes.iter_mut().zip(c) {
                *l = if v > *l { v } else { *l };
            }
        }
        lanes.iter().chain(chunks.remainder()).fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
    }

    /// eˣ for x ≤ 0 (softmax's range), Cephes' `expf`: x = n·ln2 + r, a
    /// degree-6 polynomial in r, and 2ⁿ built in the exponent bits.
    #[inline(always)]
    pub(super) fn exp(x: f32) -> f32 {
        const ROUND: f32 = 12_582_912.0; // 1.5 × 2²³: adding it rounds to an integer
        let x = if x < -87.0 { -87.0 } else { x };
        let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
        let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
        let mut p = 1.987_569_1e-4f32;
        p = p * r + 1.398_199_9e-3;
        p = p * r + 8.333_452e-3;
        p = p * r + 4.166_579_6e-2;
        p = p * r + 1.666_666_5e-1;
        p = p * r + 0.5;
        let y = p * r * r + r + 1.0;
        y * f32::from_bits(((n as i32 + 127) as u32) << 23)
    }

    /// erf(x) as a rational function on [−4, 4] (Eigen's `erf` for f32;
    /// beyond, erf is ±1 to f32 precision).
    #[inline(always)]
    pub(super) fn erf(x: f32) -> f32 {
        let x = x.clamp(-4.0, 4.0);
        let x2 = x * x;
        let mut p = -2.726_142_3e-10f32;
        p = p * x2 + 2.770_681_4e-8;
        p = p * x2 + -2.101_024e-6;
        p = p * x2 + -5.692_506_4e-5;
        p = p * x2 + -7.349_906_3e-4;
        p = p * x2 + -2.954_600_1e-3;
        p = p * x2 + -1.609_603_3e-2;
        let mut q = -1.456_607_2e-5f32;
        q = q * x2 + -2.133_740_6e-4;
        q = q * x2 + -1.682_827e-3;
        q = q * x2 + -7.373_329e-3;
        q = q * x2 + -1.426_474e-2;
        x * p / q
    }

    dispatch! {
        fn add_bias(xs: &mut [f32], bias: &[f32]) {
            for row in xs.chunks_exact_mut(bias.len()) {
                row.iter_mut().zip(bias).for_each(|(x, b)| *x += b);
            }
        }

        fn add_bias_residual(xs: &mut [f32], bias: &[f32], residual: &[f32]) {
            let w = bias.len();
            for (row, res) in xs.chunks_exact_mut(w).zip(residual.chunks_exact(w)) {
                for ((x, b), r) in row.iter_mut().zip(bias).zip(res) {
                    *x += b + r;
                }
            }
        }

        fn bias_gelu(xs: &mut [f32], bias: &[f32]) {
            for row in xs.chunks_exact_mut(bias.len()) {
                for (x, b) in row.iter_mut().zip(bias) {
                    let v = *x + b;
                    *x = 0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2));
                }
            }
        }

        fn layer_norm(xs: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
            let w = weight.len();
            for row in xs.chunks_exact_mut(w) {
                let mean = sum(row) / w as f32;
                row.iter_mut().for_each(|x| *x -= mean);
                let inv = 1.0 / (sum_of(row, |v| v * v) / w as f32 + eps).sqrt();
                for ((x, g), b) in row.iter_mut().zip(weight).zip(bias) {
                    *x = *x * inv * g + b;
                }
            }
        }

        fn softmax_rows(xs: &mut [f32], width: usize) {
            for row in xs.chunks_exact_mut(width) {
                let top = max(row);
                row.iter_mut().for_each(|x| *x = exp(*x - top));
                let inv = 1.0 / sum(row);
                row.iter_mut().for_each(|x| *x *= inv);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Config, Encoder, kernels};
    use candle_core::{DType, Device, Tensor};
    use candle_nn::{VarBuilder, VarMap};
    use candle_transformers::models::bert::BertModel;

    #[test]
    fn the_encoder_gives_candles_bert_outputs_without_padding() {
        // A small BERT with random weights (biases and norms too), run by
        // candle_transformers with padding and a mask, and by the encoder.
        let device = Device::Cpu;
        let config = Config {
            vocab_size: 50,
            hidden_size: 32,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            intermediate_size: 64,
            max_position_embeddings: 16,
            ..Config::default()
        };
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &device);
        let bert = BertModel::load(vb.clone(), &config).unwrap();
        for var in map.all_vars() {
            var.set(&(Tensor::randn(0f32, 0.5, var.shape(), &device).unwrap() + 0.1).unwrap()).unwrap();
        }
        let encoder = Encoder::load(vb, &config).unwrap();
        let sequences: [&[u32]; 3] = [&[1, 7, 9, 2], &[1, 3, 4, 5, 6, 8, 11, 49, 2], &[1, 2]];
        let ours = encoder.mean_pooled(&sequences).unwrap();
        let width = 9;
        for (s, got) in sequences.iter().zip(&ours) {
            let mut ids = s.to_vec();
            ids.resize(width, 0);
            let mask: Vec<u32> = (0..width).map(|i| u32::from(i < s.len())).collect();
            let ids = Tensor::new(ids.as_slice(), &device).unwrap().unsqueeze(0).unwrap();
            let mask = Tensor::new(mask.as_slice(), &device).unwrap().unsqueeze(0).unwrap();
            let hidden = bert.forward(&ids, &ids.zeros_like().unwrap(), Some(&mask)).unwrap();
            let want: Vec<f32> =
                hidden.get(0).unwrap().narrow(0, 0, s.len()).unwrap().mean(0).unwrap().to_vec1().unwrap();
            let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-4, "{s:?}: largest difference {worst}");
        }
        assert_eq!(
            encoder.mean_pooled(&[&[1, 50]]).unwrap_err(),
            super::InputError::UnknownToken(50),
            "an id past the vocabulary is refused, not read out of bounds"
        );
        assert!(encoder.mean_pooled(&[&[1; 17]]).is_err(), "longer than the position table");
        assert_eq!(encoder.mean_pooled(&[&[]]).unwrap(), vec![vec![0f32; 32]]);
    }

    #[test]
    fn the_vectorised_exp_and_erf_stay_within_a_millionth_of_libm() {
        let mut worst = (0f32, 0f32);
        for i in 0..=200_000 {
            let x = -87.0 + i as f32 * 87.0 / 200_000.0;
            let (ours, exact) = (kernels::exp(x), (x as f64).exp() as f32);
            worst.0 = worst.0.max(((ours - exact) / exact).abs());
            let x = -6.0 + i as f32 * 12.0 / 200_000.0;
            worst.1 = worst.1.max((kernels::erf(x) - libm::erf(x as f64) as f32).abs());
        }
        assert!(worst.0 < 1e-6, "exp's relative error {}", worst.0);
        assert!(worst.1 < 1e-6, "erf's absolute error {}", worst.1);
    }
}
