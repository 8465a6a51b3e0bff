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

/// Runs `$body` (a block) compiled with FMA and AVX2 when this CPU has them, else as portable code.
/// The results are the same either way ([`f32::mul_add`] is always one rounding; without the
/// target feature it is a call to the C library's `fmaf`): only the speed differs.
macro_rules! with_fma {
    ($body:block) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn fast<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            if std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has the features `fast` is compiled for.
                unsafe { fast(|| $body) }
            } else {
                $body
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $body
        }
    }};
}

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

/// GCC's `_mm512_reduce_add_ps`: halves added, then quarters, then pairs.
#[inline(always)]
fn reduce16(v: &[f32; 16]) -> f32 {
    let t: [f32; 8] = std::array::from_fn(|j| v[j + 8] + v[j]);
    let t: [f32; 4] = std::array::from_fn(|j| t[j + 4] + t[j]);
    (t[0] + t[2]) + (t[1] + t[3])
}

/// 16 f32 lanes multiplied and added lane by lane, one rounding each (ggml's 16-lane FMA
/// vectors): portable code, or two AVX2 registers. Both give the same bits.
trait Lanes16 {
    /// `acc[l] = a[l] · b[l] + acc[l]` for every lane.
    ///
    /// # Safety
    /// The CPU must have the implementation's instruction set.
    unsafe fn fma(acc: &mut [f32; 16], a: &[f32; 16], b: &[f32; 16]);

    /// [`Lanes16::fma`] with `a` shorter than 16 (at most 16): the lanes past its end are left
    /// as they are, which is what adding `0 · b[l]` does for a finite `b[l]` (an accumulator
    /// started at +0 never holds -0). Nothing past the end of `a` is read.
    ///
    /// # Safety
    /// As [`Lanes16::fma`].
    unsafe fn fma_prefix(acc: &mut [f32; 16], a: &[f32], b: &[f32; 16]);
}

struct Portable;

impl Lanes16 for Portable {
    #[inline(always)]
    unsafe fn fma(acc: &mut [f32; 16], a: &[f32; 16], b: &[f32; 16]) {
        for l in 0..16 {
            acc[l] = a[l].mul_add(b[l], acc[l]);
        }
    }

    #[inline(always)]
    unsafe fn fma_prefix(acc: &mut [f32; 16], a: &[f32], b: &[f32; 16]) {
        for ((acc, &a), &b) in acc.iter_mut().zip(a).zip(b) {
            *acc = a.mul_add(b, *acc);
        }
    }
}

/// AVX2 with FMA (the compiler leaves [`Portable`]'s lanes scalar).
#[cfg(target_arch = "x86_64")]
struct Avx2Fma;

#[cfg(target_arch = "x86_64")]
impl Lanes16 for Avx2Fma {
    #[inline(always)]
    unsafe fn fma(acc: &mut [f32; 16], a: &[f32; 16], b: &[f32; 16]) {
        use std::arch::x86_64::*;
        for h in 0..2 {
            let (a, b, c) = (
                a.as_ptr().add(8 * h),
                b.as_ptr().add(8 * h),
                acc.as_mut_ptr().add(8 * h),
            );
            _mm256_storeu_ps(
                c,
                _mm256_fmadd_ps(_mm256_loadu_ps(a), _mm256_loadu_ps(b), _mm256_loadu_ps(c)),
            );
        }
    }

    #[inline(always)]
    unsafe fn fma_prefix(acc: &mut [f32; 16], a: &[f32], b: &[f32; 16]) {
        use std::arch::x86_64::*;
        let len = a.len().min(16) as i32;
        for h in 0..2 {
            // Lanes below the prefix's length load `a`, the others load zero and touch no
            // memory (`vmaskmovps`), so the pointer may point past `a`'s end.
            let mask = _mm256_cmpgt_epi32(
                _mm256_set1_epi32(len - 8 * h as i32),
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            );
            let (a, b, c) = (
                a.as_ptr().wrapping_add(8 * h),
                b.as_ptr().add(8 * h),
                acc.as_mut_ptr().add(8 * h),
            );
            _mm256_storeu_ps(
                c,
                _mm256_fmadd_ps(
                    _mm256_maskload_ps(a, mask),
                    _mm256_loadu_ps(b),
                    _mm256_loadu_ps(c),
                ),
            );
        }
    }
}

/// ggml's `vec_dot_f32` (AVX-512): four 16-lane accumulators over steps of 64 elements, summed
/// `(a0 + a2) + (a1 + a3)` and reduced; the elements past the last whole 64 are added one by one.
///
/// # Safety
/// As [`Lanes16::fma`].
#[inline(always)]
unsafe fn vec_dot_f32<L: Lanes16>(x: &[f32], y: &[f32]) -> f32 {
    let (mut s, whole) = vec_dot_steps::<L>(x, y);
    for e in whole..x.len().min(y.len()) {
        s += x[e] * y[e];
    }
    s
}

/// The whole steps of 64 elements of ggml's AVX-512 `vec_dot_f32` / `vec_dot_f16`: their
/// reduced sum, and how many elements they took.
///
/// # Safety
/// As [`Lanes16::fma`].
#[inline(always)]
unsafe fn vec_dot_steps<L: Lanes16>(x: &[f32], y: &[f32]) -> (f32, usize) {
    let n = x.len().min(y.len());
    let whole = n - n % 64;
    let mut acc = [[0f32; 16]; 4];
    for (x, y) in x[..whole].chunks_exact(64).zip(y[..whole].chunks_exact(64)) {
        fma64::<L>(&mut acc, x, y);
    }
    (reduce_acc4(&acc), whole)
}

/// ggml's `vec_dot_f16` (AVX-512) of two vectors already widened to f32: [`vec_dot_f32`]'s
/// whole steps and reduction, widened to f64, then the elements past the last whole 64 added one
/// by one in f64 (each product rounded to f32).
///
/// # Safety
/// As [`Lanes16::fma`].
#[inline(always)]
unsafe fn vec_dot_f16<L: Lanes16>(x: &[f32], y: &[f32]) -> f32 {
    let (s, whole) = vec_dot_steps::<L>(x, y);
    let mut s = s as f64;
    for e in whole..x.len().min(y.len()) {
        s += (x[e] * y[e]) as f64;
    }
    s as f32
}

/// One element of llamafile's tinyBLAS product: a single 16-lane accumulator over the whole
/// length (a multiple of 16), lane `l` taking the elements `≡ l (mod 16)` in order, reduced.
///
/// # Safety
/// As [`Lanes16::fma`].
#[inline(always)]
unsafe fn dot_tiny<L: Lanes16>(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    for (x, y) in x.chunks_exact(16).zip(y.chunks_exact(16)) {
        L::fma(
            &mut acc,
            x.try_into().expect("16 lanes"),
            y.try_into().expect("16 lanes"),
        );
    }
    reduce16(&acc)
}

/// The elements of a KV cache tensor as [`attention`] reads them: f32, or f16 (llama.cpp's default
/// cache type, `--cache-type-k/-v f16`).
#[derive(Debug, Clone, Copy)]
pub enum KvSlice<'a> {
    F32(&'a [f32]),
    F16(&'a [half::f16]),
}

impl<'a> KvSlice<'a> {
    /// The `len` elements from `start`.
    pub fn range(&self, start: usize, len: usize) -> KvSlice<'a> {
        match *self {
            KvSlice::F32(s) => KvSlice::F32(&s[start..][..len]),
            KvSlice::F16(s) => KvSlice::F16(&s[start..][..len]),
        }
    }

    fn len(&self) -> usize {
        match self {
            KvSlice::F32(s) => s.len(),
            KvSlice::F16(s) => s.len(),
        }
    }

    /// The `len` elements from `start` as f32: borrowed when f32, widened (exactly) into `buf`
    /// when f16.
    fn f32_run<'b>(&self, start: usize, len: usize, buf: &'b mut Vec<f32>) -> &'b [f32]
    where
        'a: 'b,
    {
        match *self {
            KvSlice::F32(s) => &s[start..][..len],
            KvSlice::F16(s) => {
                use half::slice::HalfFloatSliceExt;
                buf.resize(len, 0.0);
                s[start..][..len].convert_to_f32_slice(buf);
                buf
            }
        }
    }
}

/// `x` rounded to the nearest f16 (ties to even, as `vcvtps2ph` with rounding mode 0 in ggml's
/// `fp32_to_fp16`), back in f32.
#[inline]
fn round_f16(x: f32) -> f32 {
    half::f16::from_f32(x).to_f32()
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
///   widened to f64 and the elements past the last whole 64 added in f64);
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
    let k_f16 = matches!(k, KvSlice::F16(_));
    let q: std::borrow::Cow<[f32]> = match k_f16 {
        true => q.iter().map(|&x| round_f16(x)).collect::<Vec<f32>>().into(),
        false => q.into(),
    };
    let plan = Plan {
        scores: match k_f16 {
            false => DotOrder::VecDotF32,
            true if s.seq >= 2 && dk % 16 == 0 => DotOrder::Tiny,
            true => DotOrder::VecDotF16,
        },
        p_f16: matches!(vt, KvSlice::F16(_)),
        v_tiny: s.seq >= 2 && dv % 4 == 0,
    };
    let group = s.n_head / s.n_head_kv;
    // One task per query and key/value head in prefill (the `group` query heads that read one
    // key/value head read each key row and value column once for all of them), per query and
    // head in decoding (a few heads: as many tasks as possible). The output of query `i` and
    // heads `h ..` is `out[i, h.., ..]`, contiguous.
    let rows = if s.seq >= 2 { group } else { 1 };
    out.par_chunks_mut(rows * dv)
        .enumerate()
        .for_each(|(task, out)| {
            let (i, h) = (task * rows / s.n_head, task * rows % s.n_head);
            let kv = h / group;
            let q = &q[(i * s.n_head + h) * dk..][..rows * dk];
            let k = k.range(kv * s.capacity * dk, s.capacity * dk);
            let vt = vt.range(kv * dv * s.capacity, dv * s.capacity);
            let n_keys = s.start + i + 1;
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2 and FMA.
                return unsafe { attend_avx2(q, k, vt, n_keys, &s, &plan, out) };
            }
            // SAFETY: portable code.
            unsafe { attend::<Portable>(q, k, vt, n_keys, &s, &plan, out) }
        });
}

/// [`attend`] compiled for AVX2 and FMA.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_avx2(
    q: &[f32],
    keys: KvSlice,
    vt: KvSlice,
    n_keys: usize,
    s: &AttentionShape,
    plan: &Plan,
    out: &mut [f32],
) {
    attend::<Avx2Fma>(q, keys, vt, n_keys, s, plan, out)
}

/// One query position of [`attention`] for some query heads that read the same key/value head:
/// `qs` `[rows, dk]` over the first `n_keys` rows of `keys` `[capacity, dk]` and columns of `vt`
/// `[dv, capacity]` (the values transposed), into `out` `[rows, dv]`, in the orders of `plan`.
/// Each output element is summed in the same order whatever `rows` is.
///
/// # Safety
/// As [`Lanes16::fma`].
#[inline(always)]
unsafe fn attend<L: Lanes16>(
    qs: &[f32],
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
    for j in 0..n_keys {
        let k = keys.f32_run(j * dk, dk, &mut wide);
        for (r, q) in qs.chunks_exact(dk).enumerate() {
            let dot = match plan.scores {
                DotOrder::VecDotF32 => vec_dot_f32::<L>(k, q),
                DotOrder::VecDotF16 => vec_dot_f16::<L>(k, q),
                DotOrder::Tiny => dot_tiny::<L>(k, q),
            };
            p[r * stride + j] = dot * s.scale + 0.0;
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
            if plan.p_f16 {
                *x = round_f16(*x);
            }
        }
    }
    // Weighted sum of the values: each output element is a dot product of the weights with a
    // value column over the keys, as if the column were zero past `n_keys` (ggml's weights are
    // zero there); the cache past `n_keys` is not read ([`Lanes16::fma_prefix`]).
    for d in 0..dv {
        let col = vt.f32_run(d * s.capacity, n_keys, &mut wide);
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

/// The end of [`vec_dot_f32`]'s whole steps: the four accumulators summed
/// `(a0 + a2) + (a1 + a3)` lane by lane, then reduced.
#[inline(always)]
fn reduce_acc4(acc: &[[f32; 16]; 4]) -> f32 {
    let sum: [f32; 16] = std::array::from_fn(|l| (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]));
    reduce16(&sum)
}

/// One step of 64 elements of [`vec_dot_f32`]: 16 lanes each of `x[16j ..]·y[16j ..]` into
/// `acc[j]`.
///
/// # Safety
/// As [`Lanes16::fma`].
#[inline(always)]
unsafe fn fma64<L: Lanes16>(acc: &mut [[f32; 16]; 4], x: &[f32], y: &[f32]) {
    for (j, acc) in acc.iter_mut().enumerate() {
        L::fma(
            acc,
            x[16 * j..][..16].try_into().expect("16 lanes"),
            y[16 * j..][..16].try_into().expect("16 lanes"),
        );
    }
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
