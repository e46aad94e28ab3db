//! Warden's own forward pass for llama-family GGUF models on the CPU.
//!
//! Why not candle's `quantized_llama` here: decoding a small model is a few dozen tiny
//! matrix products per token, and candle's model spends much of each token outside them
//! (it concatenates the whole KV cache at every token, copies it again for grouped-query
//! attention, and goes through a tensor op per step), and candle has no SIMD kernel for the
//! Q4_1 weights the registries ship (see [`q4_1`]). This pass works on plain `f32` slices:
//! a KV cache that grows in place, the projections that read one input stacked into one
//! product (Q, K and V; gate and up), attention computed per head over the cache without
//! copies, and Q4_1 products by [`q4_1`]. Weights of other types go through candle's
//! `QMatMul`, so any llama GGUF loads. The maths is candle's `quantized_llama` (same RoPE
//! convention, RMS norm and softmax); a test compares the logits of both on the same file.
//!
//! Used for `general.architecture = llama` on the CPU without mixture of experts; anything
//! else (Qwen2, Gemma 3, CUDA) runs on candle's models.
//!
//! `unsafe` is allowed in this module for the SIMD kernels (`std::arch` intrinsics behind a
//! run-time CPU check) and for the workers of one product writing disjoint parts of one
//! output buffer; each use says why it holds.
#![allow(unsafe_code)]

pub(crate) mod q4_1;

use std::io::{Read, Seek};
use std::sync::Arc;

use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use half::f16;
use half::slice::HalfFloatSliceExt;

use q4_1::Q41Matrix;

type Result<T> = std::result::Result<T, candle_core::Error>;

fn err(message: impl Into<String>) -> candle_core::Error {
    candle_core::Error::Msg(message.into())
}

/// A weight matrix `n × k` applied to rows of `k` values.
#[derive(Debug)]
enum Linear {
    Q41(Arc<Q41Matrix>),
    Candle { mm: QMatMul, n: usize, k: usize },
}

impl Linear {
    fn new(t: QTensor) -> Result<Self> {
        let (n, k) = t.shape().dims2()?;
        if t.dtype() == GgmlDType::Q4_1 {
            let bytes = t.data()?.into_owned();
            if let Some(m) = Q41Matrix::from_bytes(n, k, bytes) {
                return Ok(Linear::Q41(Arc::new(m)));
            }
        }
        Ok(Linear::Candle { mm: QMatMul::from_qtensor(t)?, n, k })
    }

    fn rows(&self) -> usize {
        match self {
            Linear::Q41(m) => m.rows(),
            Linear::Candle { n, .. } => *n,
        }
    }

    fn cols(&self) -> usize {
        match self {
            Linear::Q41(m) => m.cols(),
            Linear::Candle { k, .. } => *k,
        }
    }

    /// `x` holds rows of `cols()` values; returns rows of `rows()` values.
    fn forward(&self, x: &[f32]) -> Result<Vec<f32>> {
        let m = x.len() / self.cols();
        match self {
            Linear::Q41(w) => {
                let mut out = vec![0f32; m * w.rows()];
                w.matmul(x, &mut out);
                Ok(out)
            }
            Linear::Candle { mm, k, .. } => {
                let t = Tensor::from_slice(x, (m, *k), &Device::Cpu)?;
                mm.forward(&t)?.flatten_all()?.to_vec1::<f32>()
            }
        }
    }
}

/// Projections that read the same input, as one product when they can be stacked.
#[derive(Debug)]
struct Proj {
    parts: Vec<Linear>,
    total: usize,
}

impl Proj {
    fn new(parts: Vec<Linear>) -> Self {
        let total = parts.iter().map(Linear::rows).sum();
        let q41: Vec<&Q41Matrix> = parts
            .iter()
            .filter_map(|p| match p {
                Linear::Q41(m) => Some(m.as_ref()),
                Linear::Candle { .. } => None,
            })
            .collect();
        if parts.len() > 1 && q41.len() == parts.len() {
            if let Some(stacked) = Q41Matrix::stack(&q41) {
                return Self { parts: vec![Linear::Q41(Arc::new(stacked))], total };
            }
        }
        Self { parts, total }
    }

    /// Rows of `total` values: each part's outputs side by side.
    fn forward(&self, x: &[f32], m: usize) -> Result<Vec<f32>> {
        if let [only] = self.parts.as_slice() {
            return only.forward(x);
        }
        let mut out = vec![0f32; m * self.total];
        let mut offset = 0;
        for p in &self.parts {
            let y = p.forward(x)?;
            let n = p.rows();
            for (row, src) in out.chunks_exact_mut(self.total).zip(y.chunks_exact(n)) {
                row[offset..offset + n].copy_from_slice(src);
            }
            offset += n;
        }
        Ok(out)
    }
}

#[derive(Debug)]
enum Embeddings {
    Q41(Arc<Q41Matrix>),
    Candle(QTensor),
}

#[derive(Debug)]
struct Layer {
    attn_norm: Vec<f32>,
    /// Q, K and V.
    qkv: Proj,
    wo: Linear,
    ffn_norm: Vec<f32>,
    /// Gate and up.
    gate_up: Proj,
    down: Linear,
}

#[derive(Debug)]
struct Weights {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    output: Linear,
    hidden: usize,
    ff: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    eps: f32,
    /// `cos`/`sin` of every position's rotation angles, `head_dim / 2` per position.
    cos: Vec<f32>,
    sin: Vec<f32>,
    max_positions: usize,
}

/// One layer's keys and values, `[position][kv head][head_dim]`, in f16: decoding reads
/// the whole cache at every token, so half the bytes is most of the attention's time (as
/// llama.cpp's default f16 cache).
#[derive(Debug, Clone, Default)]
struct LayerCache {
    k: Vec<f16>,
    v: Vec<f16>,
}

impl LayerCache {
    fn push(&mut self, k: &[f32], v: &[f32]) {
        let to_bits = |x: &[f32], out: &mut Vec<f16>| {
            let start = out.len();
            out.resize(start + x.len(), f16::ZERO);
            out[start..].convert_from_f32_slice(x);
        };
        to_bits(k, &mut self.k);
        to_bits(v, &mut self.v);
    }

    /// The first `n` positions of keys and values as f32 (prefill's matrix products).
    fn to_f32(&self, n_values: usize) -> (Vec<f32>, Vec<f32>) {
        let conv = |x: &[f16]| {
            let mut out = vec![0f32; n_values];
            x[..n_values].convert_to_f32_slice(&mut out);
            out
        };
        (conv(&self.k), conv(&self.v))
    }
}

/// A llama model with its KV cache; clones share the weights and copy the cache.
#[derive(Debug, Clone)]
pub(crate) struct NativeLlama {
    w: Arc<Weights>,
    cache: Vec<LayerCache>,
    len: usize,
}

/// Whether [`NativeLlama::from_gguf`] takes this model (llama, no experts, full-width RoPE).
pub(crate) fn supports(ct: &gguf_file::Content) -> bool {
    let u = |k: &str| ct.metadata.get(k).and_then(|v| v.to_u32().ok());
    let experts = u("llama.expert_count").unwrap_or(0);
    match (u("llama.embedding_length"), u("llama.attention.head_count"), u("llama.rope.dimension_count")) {
        (Some(e), Some(h), Some(r)) => experts <= 1 && h > 0 && e % h == 0 && r == e / h && r % 2 == 0,
        _ => false,
    }
}

fn vector(t: QTensor) -> Result<Vec<f32>> {
    t.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()
}

impl NativeLlama {
    /// Builds the model from a GGUF (checked by [`supports`] and the caller's hparam checks).
    pub(crate) fn from_gguf<R: Read + Seek>(
        ct: &gguf_file::Content,
        reader: &mut R,
        max_positions: usize,
    ) -> Result<Self> {
        let dev = Device::Cpu;
        let md = |k: &str| ct.metadata.get(k).ok_or_else(|| err(format!("metadata `{k}` is missing")));
        let u = |k: &str| -> Result<usize> { Ok(md(k)?.to_u32()? as usize) };
        let hidden = u("llama.embedding_length")?;
        let heads = u("llama.attention.head_count")?;
        let kv_heads = u("llama.attention.head_count_kv")?;
        let blocks = u("llama.block_count")?;
        let eps = md("llama.attention.layer_norm_rms_epsilon")?.to_f32()?;
        let base = md("llama.rope.freq_base").and_then(|v| v.to_f32()).unwrap_or(10000.0);
        if heads == 0 || kv_heads == 0 || hidden % heads != 0 || heads % kv_heads != 0 {
            return Err(err(format!("{heads} heads, {kv_heads} KV heads and width {hidden} do not fit")));
        }
        let head_dim = hidden / heads;
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(max_positions * half);
        let mut sin = Vec::with_capacity(max_positions * half);
        for p in 0..max_positions {
            for i in 0..half {
                let theta = 1f32 / base.powf((2 * i) as f32 / head_dim as f32);
                let a = p as f32 * theta;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        let mut tensor = |name: &str| ct.tensor(reader, name, &dev);
        let embd = tensor("token_embd.weight")?;
        let embeddings = if embd.dtype() == GgmlDType::Q4_1 {
            match Linear::new(embd)? {
                Linear::Q41(m) => Embeddings::Q41(m),
                Linear::Candle { .. } => Embeddings::Candle(tensor("token_embd.weight")?),
            }
        } else {
            Embeddings::Candle(embd)
        };
        let output = match tensor("output.weight") {
            Ok(t) => Linear::new(t)?,
            Err(_) => match &embeddings {
                Embeddings::Q41(m) => Linear::Q41(Arc::clone(m)),
                Embeddings::Candle(_) => Linear::new(tensor("token_embd.weight")?)?,
            },
        };
        let norm = vector(tensor("output_norm.weight")?)?;
        let mut layers = Vec::with_capacity(blocks);
        for l in 0..blocks {
            let mut lin = |what: &str| tensor(&format!("blk.{l}.{what}.weight")).and_then(Linear::new);
            let q = lin("attn_q")?;
            let k = lin("attn_k")?;
            let v = lin("attn_v")?;
            let wo = lin("attn_output")?;
            let gate = lin("ffn_gate")?;
            let up = lin("ffn_up")?;
            let down = lin("ffn_down")?;
            let kv = kv_heads * head_dim;
            let shapes = [
                ("attn_q", q.rows(), q.cols(), hidden, hidden),
                ("attn_k", k.rows(), k.cols(), kv, hidden),
                ("attn_v", v.rows(), v.cols(), kv, hidden),
                ("attn_output", wo.rows(), wo.cols(), hidden, hidden),
                ("ffn_up", up.rows(), up.cols(), gate.rows(), hidden),
                ("ffn_gate", gate.rows(), gate.cols(), gate.rows(), hidden),
                ("ffn_down", down.rows(), down.cols(), hidden, gate.rows()),
            ];
            for (name, n, kk, want_n, want_k) in shapes {
                if (n, kk) != (want_n, want_k) {
                    return Err(err(format!("blk.{l}.{name}.weight is {n}×{kk}, expected {want_n}×{want_k}")));
                }
            }
            layers.push(Layer {
                attn_norm: vector(tensor(&format!("blk.{l}.attn_norm.weight"))?)?,
                qkv: Proj::new(vec![q, k, v]),
                wo,
                ffn_norm: vector(tensor(&format!("blk.{l}.ffn_norm.weight"))?)?,
                gate_up: Proj::new(vec![gate, up]),
                down,
            });
        }
        let ff = layers.first().map_or(0, |l| l.down.cols());
        if norm.len() != hidden || layers.iter().any(|l| l.attn_norm.len() != hidden || l.ffn_norm.len() != hidden) {
            return Err(err("a norm weight does not have the model's width"));
        }
        if output.cols() != hidden {
            return Err(err("the output matrix does not have the model's width"));
        }
        let w = Weights {
            embeddings,
            layers,
            norm,
            output,
            hidden,
            ff,
            heads,
            kv_heads,
            head_dim,
            eps,
            cos,
            sin,
            max_positions,
        };
        Ok(Self { cache: vec![LayerCache::default(); w.layers.len()], w: Arc::new(w), len: 0 })
    }

    /// Forgets the KV cache.
    pub(crate) fn clear(&mut self) {
        self.cache.iter_mut().for_each(|c| {
            c.k.clear();
            c.v.clear();
        });
        self.len = 0;
    }

    /// Feeds `tokens` at position `pos` (earlier positions stay cached; later ones are
    /// dropped) and returns the logits after the last one.
    pub(crate) fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Vec<f32>> {
        let w = Arc::clone(&self.w);
        let m = tokens.len();
        if m == 0 {
            return Err(err("no tokens to feed"));
        }
        if pos > self.len {
            return Err(err(format!("position {pos} is past the {} cached tokens", self.len)));
        }
        if pos + m > w.max_positions {
            return Err(err(format!("{} tokens exceed the model's {} positions", pos + m, w.max_positions)));
        }
        let (h, hd) = (w.hidden, w.head_dim);
        let kv_width = w.kv_heads * hd;
        for c in &mut self.cache {
            c.k.truncate(pos * kv_width);
            c.v.truncate(pos * kv_width);
        }
        self.len = pos;

        let mut x = embed(&w, tokens)?;
        for (layer, cache) in w.layers.iter().zip(self.cache.iter_mut()) {
            let xn = rms_norm(&x, &layer.attn_norm, w.eps);
            let mut qkv = layer.qkv.forward(&xn, m)?;
            let width = qkv.len() / m;
            for (i, row) in qkv.chunks_exact_mut(width).enumerate() {
                let p = pos + i;
                let (cos, sin) = (&w.cos[p * hd / 2..(p + 1) * hd / 2], &w.sin[p * hd / 2..(p + 1) * hd / 2]);
                for head in row[..h + kv_width].chunks_exact_mut(hd) {
                    rope(head, cos, sin);
                }
                cache.push(&row[h..h + kv_width], &row[h + kv_width..h + 2 * kv_width]);
            }
            let att = attention(&w, &qkv, width, cache, pos, m);
            let o = layer.wo.forward(&att)?;
            x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);

            let xn = rms_norm(&x, &layer.ffn_norm, w.eps);
            let gu = layer.gate_up.forward(&xn, m)?;
            let ff = w.ff;
            let mut act = Vec::with_capacity(m * ff);
            for row in gu.chunks_exact(2 * ff) {
                let (g, u) = row.split_at(ff);
                act.extend(g.iter().zip(u).map(|(g, u)| g / (1.0 + (-g).exp()) * u));
            }
            let d = layer.down.forward(&act)?;
            x.iter_mut().zip(&d).for_each(|(a, b)| *a += b);
        }
        self.len = pos + m;
        let last = rms_norm(&x[(m - 1) * h..], &w.norm, w.eps);
        w.output.forward(&last)
    }
}

fn embed(w: &Weights, tokens: &[u32]) -> Result<Vec<f32>> {
    let h = w.hidden;
    match &w.embeddings {
        Embeddings::Q41(m) => {
            let mut x = vec![0f32; tokens.len() * h];
            for (t, row) in tokens.iter().zip(x.chunks_exact_mut(h)) {
                let t = *t as usize;
                if t >= m.rows() {
                    return Err(err(format!("token {t} is outside the vocabulary of {}", m.rows())));
                }
                m.dequantize_row(t, row);
            }
            Ok(x)
        }
        Embeddings::Candle(q) => {
            let ids = Tensor::new(tokens, &Device::Cpu)?;
            q.embedding(&ids)?.flatten_all()?.to_vec1::<f32>()
        }
    }
}

fn rms_norm(x: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    let h = weight.len();
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(h) {
        let ms = row.iter().map(|v| v * v).sum::<f32>() / h as f32;
        let scale = 1.0 / (ms + eps).sqrt();
        out.extend(row.iter().zip(weight).map(|(v, g)| v * scale * g));
    }
    out
}

/// Interleaved rotary embedding (pairs `2i`, `2i + 1`), as candle's `rope_i`.
fn rope(head: &mut [f32], cos: &[f32], sin: &[f32]) {
    for (pair, (c, s)) in head.chunks_exact_mut(2).zip(cos.iter().zip(sin)) {
        let (a, b) = (pair[0], pair[1]);
        pair[0] = a * c - b * s;
        pair[1] = a * s + b * c;
    }
}

/// Causal attention of the `m` new rows (queries at the start of each `width`-wide row of
/// `qkv`) over the cache, which already holds their keys and values.
fn attention(w: &Weights, qkv: &[f32], width: usize, cache: &LayerCache, pos: usize, m: usize) -> Vec<f32> {
    let heads = w.heads;
    let mut out = vec![0f32; m * heads * w.head_dim];
    let out_ptr = q4_1::SendPtr::new(out.as_mut_ptr());
    if m == 1 {
        let item = |head: usize| attend_one(w, qkv, cache, pos, head, out_ptr);
        if pos < 64 {
            (0..heads).for_each(item);
        } else {
            candle_core::utils::barrier_pool().execute_chunked(heads, |range| range.for_each(item));
        }
    } else {
        let blocks = m.div_ceil(ATTENTION_ROWS);
        let (k, v) = cache.to_f32((pos + m) * w.kv_heads * w.head_dim);
        let kv = (k.as_slice(), v.as_slice());
        let item = |it: usize| attend_block(w, qkv, width, kv, pos, m, it % heads, it / heads, out_ptr);
        candle_core::utils::barrier_pool().execute_chunked(blocks * heads, |range| range.for_each(item));
    }
    out
}

/// Query rows per prefill work item: the scores of a block reach only as far as its last
/// row may look, so the masked half of the square is mostly not computed.
const ATTENTION_ROWS: usize = 32;

/// One head of one new token (decoding).
fn attend_one(w: &Weights, qkv: &[f32], cache: &LayerCache, pos: usize, head: usize, out: q4_1::SendPtr) {
    let hd = w.head_dim;
    let kv_width = w.kv_heads * hd;
    let kvh = head / (w.heads / w.kv_heads);
    let scale = 1.0 / (hd as f32).sqrt();
    let q = &qkv[head * hd..(head + 1) * hd];
    let n = pos + 1;
    let mut scores = vec![0f32; n];
    kernels::scores_f16(q, &cache.k[kvh * hd..], kv_width, scale, &mut scores);
    softmax(&mut scores);
    // SAFETY: this head alone writes these `hd` values of the output, which outlives the
    // pool call.
    let dst = unsafe { std::slice::from_raw_parts_mut(out.get().add(head * hd), hd) };
    kernels::weighted_rows_f16(&scores, &cache.v[kvh * hd..], kv_width, dst);
}

/// One head of a block of new tokens (prefill), as two matrix products over the cache.
#[allow(clippy::too_many_arguments)]
fn attend_block(
    w: &Weights,
    qkv: &[f32],
    width: usize,
    (keys, values): (&[f32], &[f32]),
    pos: usize,
    m: usize,
    head: usize,
    block: usize,
    out: q4_1::SendPtr,
) {
    let (hd, heads) = (w.head_dim, w.heads);
    let kv_width = w.kv_heads * hd;
    let kvh = head / (heads / w.kv_heads);
    let (r0, r1) = (block * ATTENTION_ROWS, ((block + 1) * ATTENTION_ROWS).min(m));
    let rows = r1 - r0;
    let n = pos + r1;
    debug_assert!(keys.len() >= n * kv_width && values.len() >= n * kv_width);
    let mut scores = vec![0f32; rows * n];
    let scale = 1.0 / (hd as f32).sqrt();
    // SAFETY: scores is rows × n (row stride n); the queries are rows r0..r1 of qkv (stride
    // `width`, head's `hd` columns); the keys are n positions (stride kv_width, the kv head's
    // `hd` columns): all inside their buffers (n ≤ positions converted, checked above).
    unsafe {
        gemm::gemm(
            rows,
            n,
            hd,
            scores.as_mut_ptr(),
            1,
            n as isize,
            false,
            qkv.as_ptr().add(r0 * width + head * hd),
            1,
            width as isize,
            keys.as_ptr().add(kvh * hd),
            kv_width as isize,
            1,
            0.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    for (r, row) in scores.chunks_exact_mut(n).enumerate() {
        let visible = pos + r0 + r + 1;
        softmax(&mut row[..visible]);
        row[visible..].fill(0.0);
    }
    // SAFETY: the output rows r0..r1, this head's `hd` columns (stride heads·hd) are written
    // by this item alone; the values are n cached positions (stride kv_width).
    unsafe {
        gemm::gemm(
            rows,
            hd,
            n,
            out.get().add(r0 * heads * hd + head * hd),
            1,
            (heads * hd) as isize,
            false,
            scores.as_ptr(),
            1,
            n as isize,
            values.as_ptr().add(kvh * hd),
            1,
            kv_width as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

fn softmax(xs: &mut [f32]) {
    let max = xs.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut sum = 0f32;
    for x in xs.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    xs.iter_mut().for_each(|x| *x /= sum);
}

mod kernels {
    //! `q · k` and `y += a·v` over f16 cache rows, with AVX2 and F16C when the CPU has them.

    use half::f16;

    /// `out[j] = scale · (q · k[j·stride .. j·stride + q.len()])` for every `j < out.len()`.
    pub(super) fn scores_f16(q: &[f32], k: &[f16], stride: usize, scale: f32, out: &mut [f32]) {
        let n = out.len();
        let fits = n == 0 || (n - 1) * stride + q.len() <= k.len();
        #[cfg(target_arch = "x86_64")]
        if fits && q.len() == 64 && super::q4_1::has_avx2() {
            // SAFETY: AVX2, FMA and F16C are available; every row read is inside `k` (`fits`).
            return unsafe { avx2::scores64_f16(q, k, stride, scale, out) };
        }
        for (j, o) in out.iter_mut().enumerate() {
            *o = scale * dot_f16(q, &k[j * stride..j * stride + q.len()]);
        }
    }

    /// `dst[d] = Σ_j p[j] · v[j·stride + d]`.
    pub(super) fn weighted_rows_f16(p: &[f32], v: &[f16], stride: usize, dst: &mut [f32]) {
        let fits = p.is_empty() || (p.len() - 1) * stride + dst.len() <= v.len();
        #[cfg(target_arch = "x86_64")]
        if fits && super::q4_1::has_avx2() {
            // SAFETY: AVX2, FMA and F16C are available; every row read is inside `v` (`fits`).
            return unsafe { avx2::weighted_rows_f16(p, v, stride, dst) };
        }
        dst.fill(0.0);
        for (j, pj) in p.iter().enumerate() {
            axpy_f16(*pj, &v[j * stride..j * stride + dst.len()], dst);
        }
    }

    pub(super) fn dot_f16(a: &[f32], b: &[f16]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if super::q4_1::has_avx2() {
            // SAFETY: AVX2, FMA and F16C are available.
            return unsafe { avx2::dot_f16(a, b) };
        }
        a.iter().zip(b).map(|(x, y)| x * y.to_f32()).sum()
    }

    pub(super) fn axpy_f16(alpha: f32, x: &[f16], y: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if super::q4_1::has_avx2() {
            // SAFETY: AVX2, FMA and F16C are available.
            return unsafe { avx2::axpy_f16(alpha, x, y) };
        }
        y.iter_mut().zip(x).for_each(|(y, x)| *y += alpha * x.to_f32());
    }

    #[cfg(target_arch = "x86_64")]
    mod avx2 {
        use crate::llm::native::q4_1::avx2::hsum;
        use half::f16;
        use std::arch::x86_64::*;

        /// # Safety
        /// `q` has 64 values; rows `j·stride .. j·stride + 64` of `k` exist for `j < out.len()`.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(super) unsafe fn scores64_f16(q: &[f32], k: &[f16], stride: usize, scale: f32, out: &mut [f32]) {
            // The query stays in registers; four keys at a time keep four independent chains.
            let qv: [__m256; 8] = std::array::from_fn(|r| unsafe { _mm256_loadu_ps(q.as_ptr().add(8 * r)) });
            let row = |j: usize, r: usize| unsafe {
                _mm256_cvtph_ps(_mm_loadu_si128(k.as_ptr().add(j * stride + 8 * r) as *const __m128i))
            };
            let n = out.len();
            let mut j = 0;
            while j + 4 <= n {
                let mut acc = [_mm256_setzero_ps(); 4];
                for (r, qr) in qv.iter().enumerate() {
                    for (t, a) in acc.iter_mut().enumerate() {
                        *a = _mm256_fmadd_ps(*qr, row(j + t, r), *a);
                    }
                }
                for (t, a) in acc.iter().enumerate() {
                    out[j + t] = scale * hsum(*a);
                }
                j += 4;
            }
            while j < n {
                let mut a = _mm256_setzero_ps();
                for (r, qr) in qv.iter().enumerate() {
                    a = _mm256_fmadd_ps(*qr, row(j, r), a);
                }
                out[j] = scale * hsum(a);
                j += 1;
            }
        }

        /// # Safety
        /// Rows `j·stride .. j·stride + dst.len()` of `v` exist for `j < p.len()`.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(super) unsafe fn weighted_rows_f16(p: &[f32], v: &[f16], stride: usize, dst: &mut [f32]) {
            let hd = dst.len();
            let mut c = 0;
            // 64 output values at a time stay in eight registers over all rows.
            while c + 64 <= hd {
                let mut acc = [_mm256_setzero_ps(); 8];
                for (j, pj) in p.iter().enumerate() {
                    let pv = _mm256_set1_ps(*pj);
                    let base = unsafe { v.as_ptr().add(j * stride + c) };
                    for (r, a) in acc.iter_mut().enumerate() {
                        let x = unsafe { _mm256_cvtph_ps(_mm_loadu_si128(base.add(8 * r) as *const __m128i)) };
                        *a = _mm256_fmadd_ps(pv, x, *a);
                    }
                }
                for (r, a) in acc.iter().enumerate() {
                    unsafe { _mm256_storeu_ps(dst.as_mut_ptr().add(c + 8 * r), *a) };
                }
                c += 64;
            }
            for (d, o) in dst.iter_mut().enumerate().skip(c) {
                *o = p.iter().enumerate().map(|(j, pj)| pj * v[j * stride + d].to_f32()).sum();
            }
        }

        #[target_feature(enable = "avx2,fma,f16c")]
        pub(super) fn dot_f16(a: &[f32], b: &[f16]) -> f32 {
            let n = a.len().min(b.len());
            let mut acc = _mm256_setzero_ps();
            let mut i = 0;
            while i + 8 <= n {
                // SAFETY: i + 8 <= n, inside both slices.
                let (x, y) = unsafe {
                    (
                        _mm256_loadu_ps(a.as_ptr().add(i)),
                        _mm256_cvtph_ps(_mm_loadu_si128(b.as_ptr().add(i) as *const __m128i)),
                    )
                };
                acc = _mm256_fmadd_ps(x, y, acc);
                i += 8;
            }
            let mut s = hsum(acc);
            while i < n {
                s += a[i] * b[i].to_f32();
                i += 1;
            }
            s
        }

        #[target_feature(enable = "avx2,fma,f16c")]
        pub(super) fn axpy_f16(alpha: f32, x: &[f16], y: &mut [f32]) {
            let n = x.len().min(y.len());
            let a = _mm256_set1_ps(alpha);
            let mut i = 0;
            while i + 8 <= n {
                // SAFETY: i + 8 <= n, inside both slices.
                unsafe {
                    let xv = _mm256_cvtph_ps(_mm_loadu_si128(x.as_ptr().add(i) as *const __m128i));
                    let v = _mm256_fmadd_ps(a, xv, _mm256_loadu_ps(y.as_ptr().add(i)));
                    _mm256_storeu_ps(y.as_mut_ptr().add(i), v);
                }
                i += 8;
            }
            while i < n {
                y[i] += alpha * x[i].to_f32();
                i += 1;
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn f16_kernels_match_plain_loops() {
            let a: Vec<f32> = (0..67).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f16> = (0..67).map(|i| f16::from_f32((i as f32 * 0.11).cos())).collect();
            let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y.to_f32()).sum();
            assert!((dot_f16(&a, &b) - want).abs() < 1e-4);
            let mut y = a.clone();
            axpy_f16(0.5, &b, &mut y);
            for (i, v) in y.iter().enumerate() {
                assert!((v - (a[i] + 0.5 * b[i].to_f32())).abs() < 1e-6);
            }

            // Scores and weighted rows over a strided cache, 64-wide heads (the fast path)
            // and 40-wide ones (the plain loop), against the obvious sums.
            for hd in [64usize, 40] {
                let (n, stride) = (11, hd * 3);
                let cache: Vec<f16> = (0..n * stride).map(|i| f16::from_f32((i as f32 * 0.013).sin())).collect();
                let q: Vec<f32> = (0..hd).map(|i| (i as f32 * 0.21).cos()).collect();
                let mut scores = vec![0f32; n];
                scores_f16(&q, &cache[hd..], stride, 0.5, &mut scores);
                for (j, s) in scores.iter().enumerate() {
                    let want: f32 = (0..hd).map(|d| q[d] * cache[hd + j * stride + d].to_f32()).sum::<f32>() * 0.5;
                    assert!((s - want).abs() < 1e-4, "hd {hd} score {j}: {s} vs {want}");
                }
                let mut out = vec![9f32; hd];
                weighted_rows_f16(&scores, &cache[hd..], stride, &mut out);
                for (d, o) in out.iter().enumerate() {
                    let want: f32 = (0..n).map(|j| scores[j] * cache[hd + j * stride + d].to_f32()).sum();
                    assert!((o - want).abs() < 1e-4, "hd {hd} value {d}: {o} vs {want}");
                }
            }
        }
    }
}
