//! Q4_1 weights times f32 activations, on the CPU, without converting the weights.
//!
//! Why: candle 0.11.1 has no SIMD kernel for Q4_1 (the format of the model the registries
//! ship), and converting to Q8_0 at load — what Warden did before — reads 34 bytes per 32
//! weights instead of 20 at every token. Decoding a small model is bound by how many weight
//! bytes it reads, so the native format is the fast one. This is ggml's Q4_1 × Q8_1 dot
//! product: the activations are quantized per 32 values to 8 bits (scale `d`, and `s = d·Σq`
//! so the weights' offset `m` costs one multiply per block), the weights' nibbles are
//! multiplied as unsigned bytes against the signed activation bytes (AVX2 `maddubs`), and the
//! columns are split over candle's worker pool, so the model and candle use the same threads.
//!
//! A block is `d: f16, m: f16, qs: [u8; 16]` (value = d·q + m, q in 0..16, low nibbles are
//! values 0..16 of the block, high nibbles 16..32) — the GGUF layout, kept as it is in the file.

use half::f16;

/// Values per block.
pub(crate) const QK: usize = 32;
/// Bytes per Q4_1 block.
const BLOCK_BYTES: usize = 20;
/// Activation rows handled together in a prefill work item (weights stay in L1 across them).
const ROW_TILE: usize = 8;

/// A weight matrix of `n` output rows by `k` inputs, Q4_1, row-major as in the GGUF file.
#[derive(Debug, Clone)]
pub(crate) struct Q41Matrix {
    n: usize,
    k: usize,
    data: Vec<u8>,
}

/// One activation row's 32-value block quantized to 8 bits.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct BlockQ8 {
    d: f32,
    /// `d · Σ qs`.
    s: f32,
    qs: [i8; QK],
}

impl Q41Matrix {
    /// Wraps raw Q4_1 bytes (`n * k / 32` blocks). `None` when the sizes do not fit.
    pub(crate) fn from_bytes(n: usize, k: usize, data: Vec<u8>) -> Option<Self> {
        if n == 0 || k == 0 || !k.is_multiple_of(QK) || data.len() != n.checked_mul(k / QK)?.checked_mul(BLOCK_BYTES)? {
            return None;
        }
        Some(Self { n, k, data })
    }

    /// Stacks matrices with the same `k` (their rows one after the other), so projections
    /// that read the same input run as one matrix product.
    pub(crate) fn stack(parts: &[&Q41Matrix]) -> Option<Self> {
        let k = parts.first()?.k;
        if parts.iter().any(|p| p.k != k) {
            return None;
        }
        let mut data = Vec::with_capacity(parts.iter().map(|p| p.data.len()).sum());
        for p in parts {
            data.extend_from_slice(&p.data);
        }
        Some(Self { n: parts.iter().map(|p| p.n).sum(), k, data })
    }

    pub(crate) fn rows(&self) -> usize {
        self.n
    }

    pub(crate) fn cols(&self) -> usize {
        self.k
    }

    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.data.len()
    }

    fn blocks_per_row(&self) -> usize {
        self.k / QK
    }

    fn row(&self, r: usize) -> &[u8] {
        let len = self.blocks_per_row() * BLOCK_BYTES;
        &self.data[r * len..(r + 1) * len]
    }

    /// Row `r` as f32 (an embedding lookup).
    pub(crate) fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        for (b, chunk) in self.row(r).chunks_exact(BLOCK_BYTES).enumerate() {
            let (d, m) = block_dm(chunk);
            let o = &mut out[b * QK..(b + 1) * QK];
            for (j, &byte) in chunk[4..].iter().enumerate() {
                o[j] = d * f32::from(byte & 0x0F) + m;
                o[j + QK / 2] = d * f32::from(byte >> 4) + m;
            }
        }
    }

    /// `dst[i][r] = Σ_j x[i][j] · W[r][j]` for the `m = x.len() / k` rows of `x`.
    pub(crate) fn matmul(&self, x: &[f32], dst: &mut [f32]) {
        let (n, k) = (self.n, self.k);
        let m = x.len() / k;
        debug_assert_eq!(x.len(), m * k);
        debug_assert_eq!(dst.len(), m * n);
        let kb = self.blocks_per_row();
        let mut xq = vec![BlockQ8 { d: 0.0, s: 0.0, qs: [0; QK] }; m * kb];
        for (row, out) in x.chunks_exact(k).zip(xq.chunks_exact_mut(kb)) {
            quantize_row(row, out);
        }
        let quads = n.div_ceil(4);
        let dst_ptr = SendPtr(dst.as_mut_ptr());
        let work = |item: usize| {
            let (tile, quad) = (item / quads, item % quads);
            let r0 = quad * 4;
            let rows = [r0, (r0 + 1).min(n - 1), (r0 + 2).min(n - 1), (r0 + 3).min(n - 1)];
            let w = [self.row(rows[0]), self.row(rows[1]), self.row(rows[2]), self.row(rows[3])];
            let store = |i: usize, sums: [f32; 4]| {
                for (c, s) in sums.iter().enumerate().take(n - r0) {
                    // SAFETY: every (i, r0 + c) is written by exactly one work item, and
                    // i < m, r0 + c < n, so the index is inside `dst` (m * n values).
                    unsafe { *dst_ptr.get().add(i * n + r0 + c) = *s };
                }
            };
            let (start, end) = (tile * ROW_TILE, ((tile + 1) * ROW_TILE).min(m));
            let mut i = start;
            // Two rows at a time: each weight block is unpacked once for both.
            while i + 2 <= end {
                let [a, b] = dot4x2(&w, &xq[i * kb..(i + 1) * kb], &xq[(i + 1) * kb..(i + 2) * kb]);
                store(i, a);
                store(i + 1, b);
                i += 2;
            }
            if i < end {
                store(i, dot4(&w, &xq[i * kb..(i + 1) * kb]));
            }
        };
        let items = m.div_ceil(ROW_TILE) * quads;
        candle_core::utils::barrier_pool().execute_chunked(items, |range| {
            for item in range {
                work(item)
            }
        });
    }
}

/// A raw pointer the workers may share; each writes its own elements.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(*mut f32);
// SAFETY: see `Q41Matrix::matmul`: disjoint writes only, and the pool returns before `dst`
// is used again.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
impl SendPtr {
    pub(crate) fn new(p: *mut f32) -> Self {
        Self(p)
    }

    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

fn block_dm(block: &[u8]) -> (f32, f32) {
    let d = f16::from_bits(u16::from_le_bytes([block[0], block[1]])).to_f32();
    let m = f16::from_bits(u16::from_le_bytes([block[2], block[3]])).to_f32();
    (d, m)
}

fn quantize_row(x: &[f32], out: &mut [BlockQ8]) {
    for (xs, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (q, v) in b.qs.iter_mut().zip(xs) {
            // Half away from zero, as candle and ggml round (without a libm call).
            let r = v * id;
            *q = (r + 0.5f32.copysign(r)) as i8;
            sum += i32::from(*q);
        }
        b.d = d;
        b.s = d * sum as f32;
    }
}

/// Four weight rows against one quantized activation row.
fn dot4(w: &[&[u8]; 4], y: &[BlockQ8]) -> [f32; 4] {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked once); the slices hold
        // `y.len()` blocks each.
        return unsafe { avx2::dot4(w, y) };
    }
    [dot_scalar(w[0], y), dot_scalar(w[1], y), dot_scalar(w[2], y), dot_scalar(w[3], y)]
}

/// Four weight rows against two quantized activation rows.
fn dot4x2(w: &[&[u8]; 4], y0: &[BlockQ8], y1: &[BlockQ8]) -> [[f32; 4]; 2] {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: as in `dot4`; both activation rows hold the same number of blocks.
        return unsafe { avx2::dot4x2(w, y0, y1) };
    }
    [dot4(w, y0), dot4(w, y1)]
}

fn dot_scalar(w: &[u8], y: &[BlockQ8]) -> f32 {
    let mut acc = 0f32;
    for (block, yb) in w.chunks_exact(BLOCK_BYTES).zip(y) {
        let (d, m) = block_dm(block);
        let mut sum = 0i32;
        for (j, &byte) in block[4..].iter().enumerate() {
            sum += i32::from(byte & 0x0F) * i32::from(yb.qs[j]);
            sum += i32::from(byte >> 4) * i32::from(yb.qs[j + QK / 2]);
        }
        acc += d * yb.d * sum as f32 + m * yb.s;
    }
    acc
}

#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
    })
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use super::{BlockQ8, BLOCK_BYTES};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn nibbles(p: *const u8) -> __m256i {
        // SAFETY: the caller passes a pointer to 16 readable bytes.
        let tmp = unsafe { _mm_loadu_si128(p as *const __m128i) };
        let both = _mm256_insertf128_si256::<1>(_mm256_castsi128_si256(tmp), _mm_srli_epi16(tmp, 4));
        _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
    }

    /// The sum of the eight lanes.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn hsum(x: __m256) -> f32 {
        let r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
        let r = _mm_add_ps(r, _mm_movehl_ps(r, r));
        let r = _mm_add_ss(r, _mm_movehdup_ps(r));
        _mm_cvtss_f32(r)
    }

    /// # Safety
    /// AVX2, FMA and F16C must be available; every `w[c]` holds `y.len()` blocks.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot4(w: &[&[u8]; 4], y: &[BlockQ8]) -> [f32; 4] {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut offs = [0f32; 4];
        for (b, yb) in y.iter().enumerate() {
            // SAFETY: `qs` is 32 bytes.
            let qy = unsafe { _mm256_loadu_si256(yb.qs.as_ptr() as *const __m256i) };
            for c in 0..4 {
                // SAFETY: block `b` of row `c` is inside `w[c]` (the caller's contract).
                let p = unsafe { w[c].as_ptr().add(b * BLOCK_BYTES) };
                // d and m, two f16 values, as floats.
                let dm = unsafe { _mm_cvtph_ps(_mm_cvtsi32_si128((p as *const i32).read_unaligned())) };
                let d = _mm_cvtss_f32(dm);
                let m = _mm_cvtss_f32(_mm_movehdup_ps(dm));
                let qx = unsafe { nibbles(p.add(4)) };
                let prod = _mm256_madd_epi16(ones, _mm256_maddubs_epi16(qx, qy));
                acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * yb.d), _mm256_cvtepi32_ps(prod), acc[c]);
                offs[c] += m * yb.s;
            }
        }
        [hsum(acc[0]) + offs[0], hsum(acc[1]) + offs[1], hsum(acc[2]) + offs[2], hsum(acc[3]) + offs[3]]
    }

    /// # Safety
    /// As [`dot4`]; `y1` has as many blocks as `y0`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot4x2(w: &[&[u8]; 4], y0: &[BlockQ8], y1: &[BlockQ8]) -> [[f32; 4]; 2] {
        let ones = _mm256_set1_epi16(1);
        let mut acc0 = [_mm256_setzero_ps(); 4];
        let mut acc1 = [_mm256_setzero_ps(); 4];
        let mut offs0 = [0f32; 4];
        let mut offs1 = [0f32; 4];
        for (b, (ya, yb)) in y0.iter().zip(y1).enumerate() {
            // SAFETY: `qs` is 32 bytes.
            let (qa, qb) = unsafe {
                (
                    _mm256_loadu_si256(ya.qs.as_ptr() as *const __m256i),
                    _mm256_loadu_si256(yb.qs.as_ptr() as *const __m256i),
                )
            };
            for c in 0..4 {
                // SAFETY: block `b` of row `c` is inside `w[c]` (the caller's contract).
                let p = unsafe { w[c].as_ptr().add(b * BLOCK_BYTES) };
                let dm = unsafe { _mm_cvtph_ps(_mm_cvtsi32_si128((p as *const i32).read_unaligned())) };
                let d = _mm_cvtss_f32(dm);
                let m = _mm_cvtss_f32(_mm_movehdup_ps(dm));
                let qx = unsafe { nibbles(p.add(4)) };
                let pa = _mm256_madd_epi16(ones, _mm256_maddubs_epi16(qx, qa));
                let pb = _mm256_madd_epi16(ones, _mm256_maddubs_epi16(qx, qb));
                acc0[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * ya.d), _mm256_cvtepi32_ps(pa), acc0[c]);
                acc1[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * yb.d), _mm256_cvtepi32_ps(pb), acc1[c]);
                offs0[c] += m * ya.s;
                offs1[c] += m * yb.s;
            }
        }
        let row = |acc: &[__m256; 4], offs: &[f32; 4]| {
            [hsum(acc[0]) + offs[0], hsum(acc[1]) + offs[1], hsum(acc[2]) + offs[2], hsum(acc[3]) + offs[3]]
        };
        [row(&acc0, &offs0), row(&acc1, &offs1)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }

    fn q41(n: usize, k: usize, seed: &mut u64) -> (QTensor, Q41Matrix) {
        let w: Vec<f32> = (0..n * k).map(|_| lcg(seed)).collect();
        let t = Tensor::from_vec(w, (n, k), &Device::Cpu).expect("tensor");
        let q = QTensor::quantize(&t, GgmlDType::Q4_1).expect("quantize");
        let bytes = q.data().expect("data").into_owned();
        let m = Q41Matrix::from_bytes(n, k, bytes).expect("sizes");
        (q, m)
    }

    /// Candle's own Q4_1 product (scalar, Q8_1 activations) is the reference.
    #[test]
    fn matches_candle_for_decode_and_prefill_shapes() {
        let mut seed = 7;
        // (candle's own Q4_1 product needs an even number of blocks per row; ours does not.)
        for (m, n, k) in [(1, 64, 64), (1, 13, 128), (3, 36, 64), (9, 40, 128), (17, 5, 64)] {
            let (q, ours) = q41(n, k, &mut seed);
            let x: Vec<f32> = (0..m * k).map(|_| lcg(&mut seed) * 4.0).collect();
            let xt = Tensor::from_vec(x.clone(), (m, k), &Device::Cpu).expect("x");
            let want: Vec<f32> = candle_core::quantized::QMatMul::from_qtensor(q)
                .and_then(|mm| candle_core::Module::forward(&mm, &xt))
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1())
                .expect("candle");
            let mut got = vec![0f32; m * n];
            ours.matmul(&x, &mut got);
            let scale = want.iter().fold(0f32, |a, v| a.max(v.abs())).max(1.0);
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!((a - b).abs() <= 2e-3 * scale, "({m},{n},{k}) element {i}: ours {a}, candle {b}");
            }
        }
    }

    #[test]
    fn simd_and_scalar_agree_and_rows_dequantize() {
        let mut seed = 11;
        let (q, ours) = q41(8, 96, &mut seed);
        let x: Vec<f32> = (0..96).map(|_| lcg(&mut seed)).collect();
        let mut xq = vec![BlockQ8 { d: 0.0, s: 0.0, qs: [0; QK] }; 3];
        quantize_row(&x, &mut xq);
        let w = [ours.row(0), ours.row(1), ours.row(2), ours.row(3)];
        let fast = dot4(&w, &xq);
        let [pair0, pair1] = dot4x2(&w, &xq, &xq);
        for c in 0..4 {
            let slow = dot_scalar(w[c], &xq);
            for got in [fast[c], pair0[c], pair1[c]] {
                assert!((got - slow).abs() < 1e-4 * slow.abs().max(1.0), "row {c}: {got} vs {slow}");
            }
        }
        let full = q.dequantize(&Device::Cpu).and_then(|t| t.to_vec2::<f32>()).expect("dequantize");
        let mut row = vec![0f32; 96];
        ours.dequantize_row(5, &mut row);
        assert_eq!(row, full[5]);
    }

    #[test]
    fn refuses_sizes_that_do_not_fit_and_stacks_rows() {
        assert!(Q41Matrix::from_bytes(2, 48, vec![0; 40]).is_none());
        assert!(Q41Matrix::from_bytes(2, 32, vec![0; 39]).is_none());
        let a = Q41Matrix::from_bytes(2, 32, vec![1; 40]).expect("a");
        let b = Q41Matrix::from_bytes(1, 32, vec![2; 20]).expect("b");
        let s = Q41Matrix::stack(&[&a, &b]).expect("stack");
        assert_eq!((s.rows(), s.cols(), s.bytes()), (3, 32, 60));
        assert!(Q41Matrix::stack(&[&a, &Q41Matrix::from_bytes(1, 64, vec![0; 40]).expect("c")]).is_none());
    }
}
