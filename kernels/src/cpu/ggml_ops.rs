//! The f32 operations of a Llama layer around its matmuls (RMS norm, RoPE, attention over the KV
//! cache, SwiGLU), computed in the order of ggml's x86 CPU backend, so that the CPU devices give
//! llama.cpp's activations bit for bit and not just to a few ulps.
//!
//! Why bit for bit: a quantized matmul rounds its input activations to 8 bits, so a last-bit
//! difference upstream can move one activation across a rounding boundary, and 30 layers amplify
//! that to logit differences of 0.1 to 1, enough to flip a near-tie in greedy decoding (measured
//! on SmolLM2-135M Q4_1; see tests/parity.rs). Each function says which ggml routine it follows;
//! the orders were read in ggml's sources (`ops.cpp`, `vec.cpp`, `vec.h`, `llamafile/sgemm.cpp`)
//! and checked against llama.cpp's activations (scripts/llama_activations.py) of every layer.
//!
//! The orders are those of an x86 build with AVX-512 (llama.cpp built for the machine it runs on,
//! as its default `GGML_NATIVE` does): 16-lane vectors, the AVX-512 `ggml_v_expf`. Another build
//! (AVX2 only, NEON) sums in other orders; the results are then within a few ulps of it instead.
//! Fused multiply-adds are written as [`f32::mul_add`] (one rounding), as the binary does.

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::vec_dot::Avx2Fma;
use super::vec_dot::{
    dot_tiny, fma64, reduce16, reduce_acc4, vec_dot_f16, vec_dot_f32, with_fma, Lanes16, Portable,
};

/// `y = x / sqrt(mean(x²) + eps) · w` over rows of `w.len()` (ggml `rms_norm` + `mul`): the
/// squares are rounded to f32 and summed in f64, the mean rounded to f32,
/// `scale = 1 / sqrt(mean + eps)` in f32, then `(x · scale) · w`.
pub fn rms_norm_mul(x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) {
    let dim = w.len();
    assert!(dim > 0 && x.len() == y.len() && x.len().is_multiple_of(dim));
    y.par_chunks_mut(dim)
        .zip(x.par_chunks(dim))
        .for_each(|(y, x)| {
            let sum: f64 = x.iter().map(|&v| (v * v) as f64).sum::<f64>();
            let mean = (sum / dim as f64) as f32;
            let scale = 1.0 / (mean + eps).sqrt();
            for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
                *y = x * scale * w;
            }
        });
}

/// Rotates `x` `[seq, heads, head_dim]` in place by `cache` `[seq, n_rot]`, the `(cos θ, sin θ)`
/// of each position's pairs (ggml's `ggml_rope_cache_init`, whose angles the caller computes),
/// as ggml's `rope` (`rotate_pairs`): each pair `(x0, x1)` becomes
/// `(fma(x0, cos, -(x1 · sin)), fma(x0, sin, x1 · cos))`. Pairs are adjacent elements
/// (`neox = false`, llama.cpp's `LLAMA_ROPE_TYPE_NORM`) or `i, i + n_rot / 2` (NEOX); elements
/// past `n_rot` are unchanged.
pub fn rope(x: &mut [f32], cache: &[f32], head_dim: usize, n_rot: usize, neox: bool) {
    assert!(n_rot <= head_dim && n_rot.is_multiple_of(2) && head_dim > 0);
    let seq = cache.len() / n_rot.max(1);
    assert!(n_rot == 0 || (cache.len() == seq * n_rot && x.len().is_multiple_of(seq * head_dim)));
    if n_rot == 0 {
        return;
    }
    let heads = x.len() / (seq * head_dim);
    x.par_chunks_mut(heads * head_dim)
        .zip(cache.par_chunks(n_rot))
        .for_each(|(row, cache)| with_fma!({ rope_row(row, cache, head_dim, n_rot, neox) }));
}

#[inline(always)]
fn rope_row(row: &mut [f32], cache: &[f32], head_dim: usize, n_rot: usize, neox: bool) {
    for head in row.chunks_exact_mut(head_dim) {
        for (i, cs) in cache.chunks_exact(2).enumerate() {
            let (a, b) = if neox {
                (i, i + n_rot / 2)
            } else {
                (2 * i, 2 * i + 1)
            };
            let (x0, x1) = (head[a], head[b]);
            let (cos, sin) = (cs[0], cs[1]);
            head[a] = x0.mul_add(cos, -(x1 * sin));
            head[b] = x0.mul_add(sin, x1 * cos);
        }
    }
}

/// The orthonormal Walsh-Hadamard transform of every row of `n` elements of `x` (`n` a power of
/// two), in place, as ggml's `fwht` (what its `mul_mat` with a Hadamard matrix runs: llama.cpp
/// rotates queries and keys by it when the key cache is quantized): each element times
/// `1 / sqrt(n)` (in f32), then the butterflies `(u, v) -> (u + v, u - v)` over spans 1, 2, 4 ...
/// (ggml's vector passes compute `u - v` as `fma(v, -1, u)`: the same rounding).
pub fn fwht(x: &mut [f32], n: usize) {
    assert!(n.is_power_of_two() && x.len().is_multiple_of(n));
    let scale = 1.0 / (n as f32).sqrt();
    x.par_chunks_mut(n).for_each(|row| {
        for v in row.iter_mut() {
            *v *= scale;
        }
        let mut len = 1;
        while len < n {
            for block in row.chunks_exact_mut(2 * len) {
                let (a, b) = block.split_at_mut(len);
                for (u, v) in a.iter_mut().zip(b.iter_mut()) {
                    let (x, y) = (*u, *v);
                    *u = x + y;
                    *v = x - y;
                }
            }
            len *= 2;
        }
    });
}

/// `y = silu(g) · u` (ggml's `vec_swiglu_f32`) over rows of `n`: 16 elements at a time with
/// [`v_expf`] (`silu(x) = x / (1 + exp(0 - x))`), the rest of a row with the C library's `expf`.
pub fn swiglu(g: &[f32], u: &[f32], n: usize, y: &mut [f32]) {
    assert!(n > 0 && g.len() == u.len() && g.len() == y.len() && g.len().is_multiple_of(n));
    y.par_chunks_mut(n)
        .zip(g.par_chunks(n).zip(u.par_chunks(n)))
        .for_each(|(y, (g, u))| with_fma!({ swiglu_row(g, u, y) }));
}

#[inline(always)]
fn swiglu_row(g: &[f32], u: &[f32], y: &mut [f32]) {
    let n = y.len();
    let whole = n - n % 16;
    for i in 0..whole {
        let x = g[i];
        y[i] = x / (1.0 + v_expf(0.0 - x)) * u[i];
    }
    for i in whole..n {
        let x = g[i];
        y[i] = x / (1.0 + (-x).exp()) * u[i];
    }
}

/// `y = gelu(g) · u` (ggml's `vec_geglu_f32` as built, with `GGML_GELU_FP16`) over rows of `n`:
/// `gelu(g)` is 0 for `g <= -10`, `g` for `g >= 10`, and otherwise looked up in ggml's table of
/// GELU of every f16 value ([`gelu_f16_table`]) at `g` rounded to f16.
pub fn geglu(g: &[f32], u: &[f32], n: usize, y: &mut [f32]) {
    assert!(n > 0 && g.len() == u.len() && g.len() == y.len() && g.len().is_multiple_of(n));
    let table = gelu_f16_table();
    y.par_chunks_mut(n)
        .zip(g.par_chunks(n).zip(u.par_chunks(n)))
        .for_each(|(y, (g, u))| {
            for ((y, &x), &u) in y.iter_mut().zip(g).zip(u) {
                *y = gelu_lookup(table, x) * u;
            }
        });
}

/// ggml's `vec_gelu_f32` of one element through `table` ([`gelu_f16_table`]).
#[inline(always)]
fn gelu_lookup(table: &[half::f16], x: f32) -> f32 {
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        table[half::f16::from_f32(x).to_bits() as usize].to_f32()
    }
}

/// ggml's `ggml_table_gelu_f16`: for every f16 bit pattern `h`, `ggml_gelu_f32(h)` rounded to
/// f16, where `ggml_gelu_f32(x) = 0.5·x·(1 + tanhf(sqrt(2/π)·x·(1 + 0.044715·x·x)))` in f32
/// (the C library's `tanhf`; GCC contracts `1 + 0.044715·x·x` into one fused multiply-add, as
/// ggml's binary computes it). Built once.
pub fn gelu_f16_table() -> &'static [half::f16] {
    static TABLE: std::sync::OnceLock<Vec<half::f16>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|bits| half::f16::from_f32(gelu_f32(half::f16::from_bits(bits).to_f32())))
            .collect()
    })
}

/// ggml's `ggml_gelu_f32` (see [`gelu_f16_table`]).
pub fn gelu_f32(x: f32) -> f32 {
    const GELU_COEF_A: f32 = 0.044715;
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let inner = (GELU_COEF_A * x).mul_add(x, 1.0);
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * inner).tanh())
}

/// ggml's AVX-512 `ggml_v_expf`, one lane: a degree-5 polynomial on the reduced argument, scaled
/// by `2^n` (`vscalefps`), 0 or infinity when `|n| > 192`.
#[inline]
pub fn v_expf(x: f32) -> f32 {
    let r = f32::from_bits(0x4b40_0000); // 0x1.8p23
    let z = x.mul_add(f32::from_bits(0x3fb8_aa3b), r); // log2(e)
    let n = z - r;
    let b = (-n).mul_add(
        f32::from_bits(0x35bf_be8e),                  // 0x1.7f7d1cp-20
        (-n).mul_add(f32::from_bits(0x3f31_7200), x), // 0x1.62e4p-1
    );
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    let u = b * b;
    let j = f32::from_bits(0x3c07_2010) // 0x1.0e4020p-7
        .mul_add(b, f32::from_bits(0x3d2b_9f17)) // 0x1.573e2ep-5
        .mul_add(
            u,
            f32::from_bits(0x3e2a_af33).mul_add(b, f32::from_bits(0x3eff_fedb)), // 0x1.555e66p-3, 0x1.fffdb6p-2
        )
        .mul_add(u, f32::from_bits(0x3f7f_fff6).mul_add(b, 1.0)); // 0x1.ffffecp-1
                                                                  // vscalefps: j · 2^n with one rounding (exact in f64, then rounded once to f32);
                                                                  // |n| <= 192 here, so 2^n is a normal f64.
    let pow2 = f64::from_bits(((n as i64 + 1023) as u64) << 52);
    (j as f64 * pow2) as f32
}

/// The elements of a KV cache tensor as [`attention`] reads them: f32, f16 (llama.cpp's default
/// cache type, `--cache-type-k/-v f16`), or ggml's `block_q8_0` bytes (`--cache-type-k q8_0`: 34
/// bytes per 32 elements; rows of whole blocks).
#[derive(Debug, Clone, Copy)]
pub enum KvSlice<'a> {
    F32(&'a [f32]),
    F16(&'a [half::f16]),
    Q8_0(&'a [u8]),
}

/// Bytes of a `block_q8_0`, which holds 32 elements.
const Q8_0_BLOCK: usize = 34;

impl<'a> KvSlice<'a> {
    /// The `len` elements from `start` (whole blocks of 32 for q8_0).
    pub fn range(&self, start: usize, len: usize) -> KvSlice<'a> {
        match *self {
            KvSlice::F32(s) => KvSlice::F32(&s[start..][..len]),
            KvSlice::F16(s) => KvSlice::F16(&s[start..][..len]),
            KvSlice::Q8_0(s) => {
                assert!(
                    start.is_multiple_of(32) && len.is_multiple_of(32),
                    "a q8_0 cache is read in whole blocks of 32"
                );
                KvSlice::Q8_0(&s[start / 32 * Q8_0_BLOCK..][..len / 32 * Q8_0_BLOCK])
            }
        }
    }

    /// Elements.
    fn len(&self) -> usize {
        match self {
            KvSlice::F32(s) => s.len(),
            KvSlice::F16(s) => s.len(),
            KvSlice::Q8_0(s) => s.len() / Q8_0_BLOCK * 32,
        }
    }

    /// The `len` elements from `start` as f32: borrowed when f32, widened (exactly) into `buf`
    /// when f16, dequantized (`d · q`, as ggml's `dequantize_row_q8_0`) when q8_0.
    ///
    /// # Safety
    /// As [`Lanes16::widen_f16`].
    #[inline(always)]
    unsafe fn f32_run<'b, L: Lanes16>(
        &self,
        start: usize,
        len: usize,
        buf: &'b mut Vec<f32>,
    ) -> &'b [f32]
    where
        'a: 'b,
    {
        match *self {
            KvSlice::F32(s) => &s[start..][..len],
            KvSlice::F16(s) => {
                buf.resize(len, 0.0);
                L::widen_f16(&s[start..][..len], buf);
                buf
            }
            KvSlice::Q8_0(_) => {
                let KvSlice::Q8_0(s) = self.range(start, len) else {
                    unreachable!()
                };
                buf.clear();
                for b in s.chunks_exact(Q8_0_BLOCK) {
                    let d = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
                    buf.extend(b[2..].iter().map(|&q| q as i8 as f32 * d));
                }
                buf
            }
        }
    }
}

/// `x` (a multiple of 32 long) as a q8_0 cache stores it: ggml's `block_q8_0`s, `x.len() / 32 · 34`
/// bytes into `out`, quantized as ggml's `quantize_row_q8_0` (what its `set_rows` into a q8_0
/// cache runs).
pub fn quantize_q8_0(x: &[f32], out: &mut [u8]) {
    super::quantize_act::quantize_q8_0_bytes(x, out)
}

/// Every element of `x` rounded to the nearest f16 (ties to even, as `vcvtps2ph` with rounding
/// mode 0 in ggml's `fp32_to_fp16`), back in f32, in place; through `half`'s slice conversions
/// (F16C where the CPU has it, eight at a time; the same rounding without).
fn round_f16_slice(x: &mut [f32]) {
    use half::slice::HalfFloatSliceExt;
    let mut h = [half::f16::ZERO; 64];
    for x in x.chunks_mut(64) {
        let h = &mut h[..x.len()];
        h.convert_from_f32_slice(x);
        h.convert_to_f32_slice(x);
    }
}

/// The shapes of one [`attention`] call.
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    /// New positions (query rows per head).
    pub seq: usize,
    /// Positions cached before them: query `i` sees keys `0 ..= start + i`.
    pub start: usize,
    /// Rows of the cache tensors (`≥ start + seq`).
    pub capacity: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub key_length: usize,
    pub value_length: usize,
    /// Applied to `q · k` before the mask (`1 / sqrt(key_length)`).
    pub scale: f32,
    /// A sliding window: query `i` sees only the last `window` of its keys
    /// (`start + i + 1 - window ..= start + i`; llama.cpp's `LLAMA_SWA_TYPE_STANDARD`).
    pub window: Option<usize>,
}

/// The summation order of a dot product over `key_length` (see [`attention`]).
#[derive(Debug, Clone, Copy)]
enum DotOrder {
    /// ggml's `vec_dot_f32` (f32 keys).
    VecDotF32,
    /// ggml's `vec_dot_f16` (f16 keys, one query row).
    VecDotF16,
    /// llamafile's tinyBLAS (f16 keys, several query rows, `key_length % 16 == 0`).
    Tiny,
    /// ggml's `vec_dot_q8_0_q8_0` of the key blocks and the queries quantized to q8_0 (q8_0
    /// keys; tinyBLAS sums Q8_0 in the same order).
    Q8_0,
}

/// How [`attend`] computes, decided once per call from the shapes and cache types as ggml's
/// `mul_mat` decides it (see [`attention`]).
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// The order of the scores' dot products.
    scores: DotOrder,
    /// Round the softmax weights to f16 (f16 values).
    p_f16: bool,
    /// Weighted values in tinyBLAS's order, else `vec_dot` over whole steps of 64.
    v_tiny: bool,
}

/// Causal grouped-query attention of one sequence over its KV cache, as llama.cpp's graph without
/// flash attention computes it: `kq = mul_mat(k, q)`, `soft_max_ext(kq, mask, scale)`,
/// `kqv = mul_mat(v, kq)`.
///
/// - `q`: `[seq, n_head, key_length]` (after RoPE);
/// - `k`: `[n_head_kv, capacity, key_length]`;
/// - `vt`: the values transposed, `[n_head_kv, value_length, capacity]`, as llama.cpp's cache
///   keeps them without flash attention: each output element is a dot product over contiguous
///   positions, and a decoding step reads the cache where it lies (transposing a
///   `[capacity, value_length]` cache on every call took 16% of SmolLM2's decode time at 1152
///   positions, measured with `perf`);
/// - `out`: `[seq, n_head, value_length]`; query head `h` reads key/value head
///   `h / (n_head / n_head_kv)`.
///
/// Positions `≥ start + seq` of `k` and `vt` are never read (they may hold anything).
///
/// The orders are those of ggml's `mul_mat` on x86 with AVX-512 and llamafile's sgemm, over
/// llama.cpp's cache view padded to a multiple of 256 positions (whose extra keys weigh 0):
/// - scores, f32 keys: `vec_dot_f32` over `key_length` (the permuted queries are not contiguous,
///   so the sgemm is not tried on them). f16 keys: the queries are first rounded to f16 (F16's
///   `from_float`), then tinyBLAS (one 16-lane accumulator over `key_length`, reduced) when
///   `seq ≥ 2` and `key_length % 16 == 0`, else `vec_dot_f16` (as `vec_dot_f32`, its reduced sum
///   widened to f64 and the elements past the last whole 64 added in f64). q8_0 keys: the
///   queries are quantized to q8_0 (`quantize_row_q8_0`), then `vec_dot_q8_0_q8_0` (tinyBLAS
///   sums Q8_0 in its order too);
/// - the softmax is ggml's `soft_max_f32` (`x · scale` plus the mask, max, [`v_expf`] of
///   `x - max` in 16-element chunks (the C library's `expf` past the last whole one), the chunk
///   sums (reduced as `_mm512_reduce_add_ps`) summed in f64, then each value times
///   `(f32)(1 / sum)`); with f16 values the weights are then rounded to f16;
/// - the weighted sum of values is tinyBLAS (one 16-lane accumulator over the keys, reduced)
///   when `seq ≥ 2` and `value_length % 4 == 0`, and `vec_dot_f32`/`vec_dot_f16` otherwise
///   (llamafile's sgemm only takes matrices of two or more columns and rows in fours). Keys past
///   a query's last one weigh exactly 0 in ggml, so stopping at the last 16 (or 64) keys that
///   hold one gives the same sums as ggml's loops over its padded cache.
///
/// An f16 cache is read a key row or value column at a time, widened exactly to f32.
pub fn attention(q: &[f32], k: KvSlice, vt: KvSlice, s: AttentionShape, out: &mut [f32]) {
    let (dk, dv) = (s.key_length, s.value_length);
    assert!(s.n_head > 0 && s.n_head_kv > 0 && s.n_head.is_multiple_of(s.n_head_kv));
    assert!(s.start + s.seq <= s.capacity);
    assert_eq!(q.len(), s.seq * s.n_head * dk);
    assert_eq!(k.len(), s.n_head_kv * s.capacity * dk);
    assert_eq!(vt.len(), s.n_head_kv * dv * s.capacity);
    assert_eq!(out.len(), s.seq * s.n_head * dv);
    assert!(
        !matches!(vt, KvSlice::Q8_0(_)),
        "a q8_0 value cache needs flash attention, as in llama.cpp"
    );
    let k_f16 = matches!(k, KvSlice::F16(_));
    let q: std::borrow::Cow<[f32]> = match k_f16 {
        true => {
            let mut q = q.to_vec();
            round_f16_slice(&mut q);
            q.into()
        }
        false => q.into(),
    };
    // q8_0 keys: the queries as ggml quantizes them for `vec_dot_q8_0_q8_0`.
    let q_blocks = match k {
        KvSlice::Q8_0(_) => {
            assert!(dk.is_multiple_of(32), "q8_0 keys need key_length % 32 == 0");
            Some(super::quantize_act::quantize_blocks(&q, dk))
        }
        _ => None,
    };
    let plan = Plan {
        scores: match (k, k_f16) {
            (KvSlice::Q8_0(_), _) => DotOrder::Q8_0,
            (_, false) => DotOrder::VecDotF32,
            (_, true) if s.seq >= 2 && dk % 16 == 0 => DotOrder::Tiny,
            (_, true) => DotOrder::VecDotF16,
        },
        p_f16: matches!(vt, KvSlice::F16(_)),
        v_tiny: s.seq >= 2 && dv % 4 == 0,
    };
    let group = s.n_head / s.n_head_kv;
    // One task per query and key/value head in prefill (the `group` query heads that read one
    // key/value head read each key row and value column once for all of them). In decoding, as
    // many query heads per task as leave at least two tasks per thread (a single query: its
    // heads are the only parallelism; an f16 cache row is widened once per task). The output of
    // query `i` and heads `h ..` is `out[i, h.., ..]`, contiguous.
    let rows = if s.seq >= 2 {
        group
    } else {
        let tasks = 2 * rayon::current_num_threads();
        (1..=group)
            .rev()
            .find(|&g| group.is_multiple_of(g) && s.n_head / g >= tasks)
            .unwrap_or(1)
    };
    out.par_chunks_mut(rows * dv)
        .enumerate()
        .for_each(|(task, out)| {
            let (i, h) = (task * rows / s.n_head, task * rows % s.n_head);
            let kv = h / group;
            let q = &q[(i * s.n_head + h) * dk..][..rows * dk];
            let q_blocks = q_blocks
                .as_ref()
                .map(|b| &b[(i * s.n_head + h) * dk / 32..][..rows * dk / 32]);
            let k = k.range(kv * s.capacity * dk, s.capacity * dk);
            let vt = vt.range(kv * dv * s.capacity, dv * s.capacity);
            let n_keys = s.start + i + 1;
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("fma")
                && std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("f16c")
            {
                // SAFETY: the CPU has AVX2, FMA and F16C.
                return unsafe { attend_avx2(q, q_blocks, k, vt, n_keys, &s, &plan, out) };
            }
            // SAFETY: portable code.
            unsafe { attend::<Portable>(q, q_blocks, k, vt, n_keys, &s, &plan, out) }
        });
}

/// [`attend`] compiled for AVX2, FMA and F16C.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn attend_avx2(
    q: &[f32],
    q_blocks: Option<&[super::quantize_act::ActQ8Block]>,
    keys: KvSlice,
    vt: KvSlice,
    n_keys: usize,
    s: &AttentionShape,
    plan: &Plan,
    out: &mut [f32],
) {
    attend::<Avx2Fma>(q, q_blocks, keys, vt, n_keys, s, plan, out)
}

/// One query position of [`attention`] for some query heads that read the same key/value head:
/// `qs` `[rows, dk]` over the first `n_keys` rows of `keys` `[capacity, dk]` and columns of `vt`
/// `[dv, capacity]` (the values transposed), into `out` `[rows, dv]`, in the orders of `plan`
/// (`q_blocks`: the query rows quantized to q8_0, for [`DotOrder::Q8_0`]). Each output element is
/// summed in the same order whatever `rows` is.
///
/// # Safety
/// As [`Lanes16::fma`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn attend<L: Lanes16>(
    qs: &[f32],
    q_blocks: Option<&[super::quantize_act::ActQ8Block]>,
    keys: KvSlice,
    vt: KvSlice,
    n_keys: usize,
    s: &AttentionShape,
    plan: &Plan,
    out: &mut [f32],
) {
    let (dk, dv) = (s.key_length, s.value_length);
    let rows = qs.len() / dk;
    // An f16 key row or value column, widened (exactly) into this buffer.
    let mut wide = Vec::new();
    // Scores, padded with masked (-inf) keys to whole 16-element chunks; in decoding, zeros
    // after them up to a multiple of 64 (the weights of `vec_dot_f32_padded`).
    let padded = n_keys.next_multiple_of(16);
    let stride = match s.seq {
        1 => n_keys.next_multiple_of(64),
        _ => padded,
    };
    let mut p = vec![0f32; rows * stride];
    for p in p.chunks_exact_mut(stride) {
        p[n_keys..padded].fill(f32::NEG_INFINITY);
    }
    // Keys before a sliding window are masked as ggml masks them (-inf, weight 0).
    let first_key = s.window.map_or(0, |w| n_keys.saturating_sub(w));
    match (plan.scores, keys, q_blocks) {
        (DotOrder::Q8_0, KvSlice::Q8_0(_), Some(q_blocks)) => {
            let KvSlice::Q8_0(k_rows) = keys.range(0, n_keys * dk) else {
                unreachable!()
            };
            let xs: Vec<_> = q_blocks.chunks_exact(dk / 32).collect();
            let mut dots = vec![0f32; rows * n_keys];
            super::q8_0_dot_rows(k_rows, dk / 32 * Q8_0_BLOCK, &xs, &mut dots);
            for (p, dots) in p.chunks_exact_mut(stride).zip(dots.chunks_exact(n_keys)) {
                for (p, &dot) in p.iter_mut().zip(dots) {
                    *p = dot * s.scale + 0.0;
                }
                p[..first_key].fill(f32::NEG_INFINITY);
            }
        }
        _ => {
            for p in p.chunks_exact_mut(stride) {
                p[..first_key].fill(f32::NEG_INFINITY);
            }
            for j in first_key..n_keys {
                let k = keys.f32_run::<L>(j * dk, dk, &mut wide);
                for (r, q) in qs.chunks_exact(dk).enumerate() {
                    let dot = match plan.scores {
                        DotOrder::VecDotF32 => vec_dot_f32::<L>(k, q),
                        DotOrder::VecDotF16 => vec_dot_f16::<L>(k, q),
                        DotOrder::Tiny => dot_tiny::<L>(k, q),
                        DotOrder::Q8_0 => unreachable!("q8_0 scores take the branch above"),
                    };
                    p[r * stride + j] = dot * s.scale + 0.0;
                }
            }
        }
    }
    for p in p.chunks_exact_mut(stride) {
        let p = &mut p[..padded];
        let max = p.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let mut sum = 0f64;
        for chunk in p.chunks_exact_mut(16) {
            for x in chunk.iter_mut() {
                *x = v_expf(*x - max);
            }
            let chunk: &[f32; 16] = (&*chunk).try_into().expect("16 lanes");
            sum += reduce16(chunk) as f64;
        }
        let inv = (1.0 / sum) as f32;
        for x in p.iter_mut() {
            *x *= inv;
        }
        if plan.p_f16 {
            round_f16_slice(p);
        }
    }
    // Weighted sum of the values: each output element is a dot product of the weights with a
    // value column over the keys, as if the column were zero past `n_keys` (ggml's weights are
    // zero there); the cache past `n_keys` is not read ([`Lanes16::fma_prefix`]).
    for d in 0..dv {
        let col = vt.f32_run::<L>(d * s.capacity, n_keys, &mut wide);
        if plan.v_tiny {
            // tinyBLAS: lane `l` accumulates the keys `j ≡ l (mod 16)` in order; up to four
            // heads per pass over a value column.
            let mut r = 0;
            while r < rows {
                let ps = |g: usize| &p[(r + g) * stride..][..stride];
                let sums: &[f32] = match rows - r {
                    1 => &weighted_sums::<L, 1>(col, [ps(0)], n_keys),
                    2 => &weighted_sums::<L, 2>(col, [ps(0), ps(1)], n_keys),
                    3 => &weighted_sums::<L, 3>(col, [ps(0), ps(1), ps(2)], n_keys),
                    _ => &weighted_sums::<L, 4>(col, [ps(0), ps(1), ps(2), ps(3)], n_keys),
                };
                for (g, &v) in sums.iter().enumerate() {
                    out[(r + g) * dv + d] = v;
                }
                r += sums.len();
            }
        } else {
            // vec_dot_f32 (or vec_dot_f16) of the value column with the weights (zero past the
            // keys), over whole steps of 64: ggml's loop over its cache padded to 256 positions
            // adds nothing more, and has no tail (where vec_dot_f16 would differ).
            for (r, p) in p.chunks_exact(stride).enumerate() {
                out[r * dv + d] = vec_dot_f32_padded::<L>(col, p, n_keys);
            }
        }
    }
}

/// tinyBLAS's sums `Σ_j col[j]·ps[g][j]` over the first `n` keys, one 16-lane accumulator per
/// head `g` (lane `l` takes the keys `j ≡ l (mod 16)` in order), reduced; the column is read
/// once for all `G`.
///
/// # Safety
/// As [`Lanes16::fma`].
#[inline(always)]
unsafe fn weighted_sums<L: Lanes16, const G: usize>(
    col: &[f32],
    ps: [&[f32]; G],
    n: usize,
) -> [f32; G] {
    let mut acc = [[0f32; 16]; G];
    let whole = n / 16;
    for c in 0..whole {
        let v: &[f32; 16] = col[16 * c..][..16].try_into().expect("16 lanes");
        for (acc, p) in acc.iter_mut().zip(&ps) {
            L::fma(acc, v, p[16 * c..][..16].try_into().expect("16 lanes"));
        }
    }
    if whole * 16 < n {
        for (acc, p) in acc.iter_mut().zip(&ps) {
            L::fma_prefix(
                acc,
                &col[whole * 16..n],
                p[whole * 16..][..16].try_into().expect("16 lanes"),
            );
        }
    }
    acc.map(|a| reduce16(&a))
}

/// [`vec_dot_f32`] of `x`, as if zero at and past `n` (not read there), with `y` (`n` rounded up
/// to a multiple of 64 long, zero past `n`): whole steps of 64 only, the partial last one through
/// [`Lanes16::fma_prefix`].
///
/// # Safety
/// As [`Lanes16::fma`].
#[inline(always)]
unsafe fn vec_dot_f32_padded<L: Lanes16>(x: &[f32], y: &[f32], n: usize) -> f32 {
    let mut acc = [[0f32; 16]; 4];
    let whole = n / 64;
    for (x, y) in x.chunks_exact(64).zip(y.chunks_exact(64)).take(whole) {
        fma64::<L>(&mut acc, x, y);
    }
    let tail = whole * 64;
    if tail < n {
        for (j, acc) in acc.iter_mut().enumerate() {
            let start = (tail + 16 * j).min(n);
            L::fma_prefix(
                acc,
                &x[start..n.min(start + 16)],
                y[tail + 16 * j..][..16].try_into().expect("16 lanes"),
            );
        }
    }
    reduce_acc4(&acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v_expf_is_close_to_exp_and_saturates() {
        for i in -2000..=2000 {
            let x = i as f32 * 0.05;
            let (got, want) = (v_expf(x), (x as f64).exp());
            if want > 1e-30 && want < 1e30 {
                assert!(
                    ((got as f64 - want) / want).abs() < 4e-7,
                    "x = {x}: {got} vs {want}"
                );
            }
        }
        assert_eq!(v_expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(v_expf(-200.0), 0.0);
        assert_eq!(v_expf(200.0), f32::INFINITY);
    }
}
