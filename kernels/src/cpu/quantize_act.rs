//! Activations quantized to 8 bits, once per matmul call, so the dot products against quantized
//! weights run on integers (the role of ggml's `quantize_row_q8_1` and `quantize_row_q8_K`).
//!
//! Each block stores `x ≈ d · q` with `d ≈ amax / 127` and `q = round(x · 127 / amax)` in
//! -127..=127, so `|x - d·q| ≤ d / 2` per element (up to the rounding of `d`): the error bound the
//! tests derive their tolerance from.

use rayon::prelude::*;

/// One block of 32 activations as 8-bit integers in element order, for the 32-element weight
/// formats (Q4_0 .. Q8_0): ggml's `block_q8_0` / `block_q8_1` with its f16 fields as f32, so that
/// one weight block and one activation block meet in one 256-bit register, as in ggml's
/// `ggml_vec_dot_*_q8_*`.
///
/// ```text
/// qs[e] = q of element e
/// d     = the scale, rounded to f16 (ggml's `GGML_FP32_TO_FP16(d)`)
/// s     = d · Σ qs, rounded to f16 (block_q8_1's `s`: the formats with a min use it)
/// ```
#[repr(C, align(16))]
#[derive(Debug, Clone, Copy)]
pub struct ActQ8Block {
    pub qs: [i8; 32],
    pub d: f32,
    pub s: f32,
}

/// Eight blocks of 32 activations as 8-bit integers, for the 32-element weight formats
/// (Q4_0 .. Q8_0), interleaved so that one 256-bit register holds four consecutive elements of
/// each of the eight blocks:
///
/// ```text
/// qs[R][4k + j] = q of element 4R + j of block k        R, k in 0..8, j in 0..4
/// d[k], s[k]    = scale of block k, and s = d · Σ q (the block's sum)
/// ```
///
/// A SIMD kernel transposes eight weight blocks the same way, so one multiply-add per register
/// leaves block k's dot product in 32-bit lane k, and the eight block scales apply in one vector
/// multiply. Like ggml's Q8_1 but with f32 scales: `s` lets formats with an offset or a min
/// (`w = d·q + m`) fold the constant part into one multiply per block. A row's last group is
/// padded with zero blocks.
#[repr(C, align(64))]
#[derive(Debug, Clone, Copy)]
pub struct ActQ8x32 {
    pub qs: [[i8; 32]; 8],
    pub d: [f32; 8],
    pub s: [f32; 8],
}

impl ActQ8x32 {
    /// The quantized element `e` (0..32) of block `k` (0..8).
    #[inline(always)]
    pub fn q(&self, k: usize, e: usize) -> i8 {
        self.qs[e / 4][4 * k + e % 4]
    }
}

/// 256 activations as 8-bit integers in element order: ggml's `block_q8_K` (the same fields, in
/// another order), with the values ggml's `quantize_row_q8_K` gives (see `quantize_block_q8k`),
/// for the element-order K-quant kernels (decoding and prompts of a few rows, in the float order
/// of ggml's `ggml_vec_dot_*_q8_K`; transposed per tile by the tiled-order kernels).
#[repr(C, align(64))]
#[derive(Debug, Clone, Copy)]
pub struct ActQ8KSeq {
    pub qs: [i8; 256],
    /// `Σ q` of each group of 16 elements, in group order.
    pub bsums: [i16; 16],
    pub d: f32,
}

/// A block of 256 quantized activations, whatever its layout: what the portable kernels read.
pub trait KActivations {
    /// The quantized element `e` (0..256).
    fn q(&self, e: usize) -> i8;
    /// The sum of group `g` (elements `16g..16g + 16`).
    fn bsum(&self, g: usize) -> i16;
    /// The scale.
    fn d(&self) -> f32;
}

impl KActivations for ActQ8KSeq {
    #[inline(always)]
    fn q(&self, e: usize) -> i8 {
        self.qs[e]
    }
    #[inline(always)]
    fn bsum(&self, g: usize) -> i16 {
        self.bsums[g]
    }
    #[inline(always)]
    fn d(&self) -> f32 {
        self.d
    }
}

/// Scale and inverse scale of a 32-element block as ggml's x86 `quantize_row_q8_0/q8_1` compute
/// them, so that the same activations round to the same integers: `d = amax / 127`, and the
/// values multiplied by `id = 127 / amax`. A NaN or infinite activation makes the scale NaN, so
/// the block's products come out NaN as they would in f32 (the quantized values are 0).
#[inline(always)]
fn scales(x: &[f32]) -> (f32, f32) {
    let amax = x.iter().fold(0f32, |m, &v| m.max(v.abs()));
    let finite = x.iter().fold(true, |f, &v| f & v.is_finite());
    if !finite {
        return (f32::NAN, 0.0);
    }
    let id = if amax > 0.0 { 127.0 / amax } else { 0.0 };
    (amax / 127.0, id)
}

/// 1.5 · 2²³: adding it to an f32 below 2²² in magnitude rounds that to an integer (to nearest,
/// ties to even: the FPU's rounding of the sum) and leaves the integer, two's complement, in
/// the low mantissa bits. Unlike `round_ties_even` (a libm call without SSE4.1) and `as i32`
/// (which checks for NaN and range), it vectorizes on every x86_64.
const ROUND: f32 = 12_582_912.0;

/// Rounds `x · id` to the nearest integer (ties to even) in -127..=127; NaN becomes 0.
#[inline(always)]
fn quantize_into(x: &[f32], id: f32, q: &mut [i8]) {
    for (q, &x) in q.iter_mut().zip(x) {
        let v = (x * id).clamp(-127.0, 127.0) + ROUND;
        *q = v.to_bits() as u8 as i8;
    }
}

/// Quantizes one row (`x.len()` a multiple of 32) into `out` (`x.len() / 32` blocks, rounded up
/// to whole groups of 8; `out` must start zeroed, as the padding blocks stay).
fn quantize_row_x32(x: &[f32], out: &mut [ActQ8x32]) {
    let mut q = [0i8; 32];
    for (b, x) in x.chunks_exact(32).enumerate() {
        let (g, k) = (&mut out[b / 8], b % 8);
        let (d, id) = scales(x);
        quantize_into(x, id, &mut q);
        for (e, &v) in q.iter().enumerate() {
            g.qs[e / 4][4 * k + e % 4] = v;
        }
        let sum: i32 = q.iter().map(|&q| q as i32).sum();
        // As ggml's block_q8_0: the quantized values come from the f32 scale, which is stored
        // as f16 (`GGML_FP32_TO_FP16(d)`). The block sum is the f16 scale times the integer sum
        // in f32: only Q4_0 reads it (its -8 offset), and ggml's Q4_0 products never round it
        // to f16 (an f16 sum overflowed to infinity once a block's largest activation passed
        // about 2048).
        g.d[k] = half::f16::from_f32(d).to_f32();
        g.s[k] = g.d[k] * sum as f32;
    }
}

/// Quantizes one row (`x.len()` a multiple of 32) into `out` (`x.len() / 32` blocks).
fn quantize_row_blocks(x: &[f32], out: &mut [ActQ8Block]) {
    for (x, b) in x.chunks_exact(32).zip(out.iter_mut()) {
        let (d, id) = scales(x);
        quantize_into(x, id, &mut b.qs);
        let sum: i32 = b.qs.iter().map(|&q| q as i32).sum();
        // As ggml's block_q8_0 / block_q8_1: the quantized values come from the f32 scale, and
        // the scale and the block sum are stored as f16 (`GGML_FP32_TO_FP16(d)`, `(sum * d)`).
        b.d = half::f16::from_f32(d).to_f32();
        b.s = half::f16::from_f32(d * sum as f32).to_f32();
    }
}

/// `x` (a multiple of 32 long) as ggml's `block_q8_0`s (`x.len() / 32 · 34` bytes into `out`: the
/// f16 scale, little-endian, then 32 `i8`), quantized as ggml's `quantize_row_q8_0` (its
/// `from_float`, which also writes a q8_0 KV cache) and [`quantize_blocks`] do.
pub(crate) fn quantize_q8_0_bytes(x: &[f32], out: &mut [u8]) {
    assert!(x.len().is_multiple_of(32) && out.len() == x.len() / 32 * 34);
    let mut b = ActQ8Block {
        qs: [0; 32],
        d: 0.0,
        s: 0.0,
    };
    for (x, out) in x.chunks_exact(32).zip(out.chunks_exact_mut(34)) {
        quantize_row_blocks(x, std::slice::from_mut(&mut b));
        out[..2].copy_from_slice(&half::f16::from_f32(b.d).to_le_bytes());
        for (o, &q) in out[2..].iter_mut().zip(&b.qs) {
            *o = q as u8;
        }
    }
}

/// ggml's `nearest_int` (ggml-quants.c): the bits of `v + 1.5 · 2²³` less those of `1.5 · 2²³`, as
/// [`ROUND`] rounds (ties to even) for `|v| < 2²²`; for anything else (infinities, NaN) the same
/// bit arithmetic, which is what ggml's release build computes there.
#[inline(always)]
fn nearest_int(v: f32) -> i32 {
    ((v + ROUND).to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// One super-block of 256 activations quantized as ggml's `quantize_row_q8_K_ref` (what x86's
/// `quantize_row_q8_K` calls), byte for byte for finite `x`:
///
/// ```text
/// max    = the first element of the largest magnitude (NaN never counts)
/// iscale = -127 / max                            (f32; may overflow to ∓inf for a tiny max)
/// qs[e]  = min(127, nearest_int(iscale · x[e]))  (as i8)
/// bsums  = Σ qs per 16;   d = 1 / iscale
/// ```
///
/// so `d` has the sign opposite to `max`'s (a super-block whose largest element is positive gets
/// `d < 0` and negated `qs`). All zeros: `d = 0`, `qs` and `bsums` 0 (ggml leaves `bsums` as the
/// buffer had them; its dot products multiply them by `d = 0`). Not ggml's: a super-block with an
/// infinite or NaN element gets `d = NaN` (and zeros), so that every product it meets is NaN as in
/// f32 arithmetic; ggml would quantize a NaN to a finite integer (its payload, capped at 127) and
/// give a finite product, and gives NaN for an infinity too (`d = ∓inf`, `qs = 0`).
#[inline(always)]
fn quantize_block_q8k(x: &[f32], b: &mut ActQ8KSeq) {
    // the largest magnitude in eight lanes (`a > m ? a : m`, a vector max; `f32::max`'s NaN
    // rule would keep it scalar), the same value as a running maximum for finite `x`
    let mut lanes = [0f32; 8];
    for c in x.chunks_exact(8) {
        for (m, &v) in lanes.iter_mut().zip(c) {
            let a = v.abs();
            *m = if a > *m { a } else { *m };
        }
    }
    let amax = lanes.iter().fold(0f32, |m, &a| if a > m { a } else { m });
    let finite = x.iter().fold(true, |f, &v| f & v.is_finite());
    if !finite || amax == 0.0 {
        b.qs = [0; 256];
        b.bsums = [0; 16];
        b.d = if finite { 0.0 } else { f32::NAN };
        return;
    }
    // the first element that reaches the largest magnitude: ggml's running `ax > amax` keeps it
    let max = x.iter().copied().find(|v| v.abs() == amax).unwrap_or(amax);
    let iscale = -127.0 / max;
    for (q, &v) in b.qs.iter_mut().zip(x) {
        *q = nearest_int(iscale * v).min(127) as i8;
    }
    for (s, q) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
        *s = q.iter().map(|&q| q as i16).sum();
    }
    b.d = 1.0 / iscale;
}

/// Quantizes one row (`x.len()` a multiple of 256) into `out` (`x.len() / 256` blocks), in
/// element order, as ggml's `quantize_row_q8_K` does ([`quantize_block_q8k`]): the element-order
/// kernels follow ggml's `ggml_vec_dot_*_q8_K` and its tiled matmul, which read exactly these
/// integers.
fn quantize_row_k_seq(x: &[f32], out: &mut [ActQ8KSeq]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: this CPU has AVX2 (checked just above).
        unsafe { quantize_row_k_seq_avx2(x, out) };
        return;
    }
    quantize_blocks_q8k(x, out);
}

/// Every super-block of `x` into `out` ([`quantize_block_q8k`]).
#[inline(always)]
fn quantize_blocks_q8k(x: &[f32], out: &mut [ActQ8KSeq]) {
    for (x, b) in x.chunks_exact(256).zip(out.iter_mut()) {
        quantize_block_q8k(x, b);
    }
}

/// [`quantize_row_k_seq`] compiled for AVX2 (the same operations, wider vectors: the same bytes).
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_row_k_seq_avx2(x: &[f32], out: &mut [ActQ8KSeq]) {
    quantize_blocks_q8k(x, out);
}

const EMPTY_X32: ActQ8x32 = ActQ8x32 {
    qs: [[0; 32]; 8],
    d: [0.0; 8],
    s: [0.0; 8],
};
/// Groups of 8 blocks of 32 in a row of `cols` activations.
pub(super) fn groups_x32(cols: usize) -> usize {
    (cols / 32).div_ceil(8)
}

/// Quantizes `m` rows of `cols` activations (`x` is `[m, cols]`), rows in parallel.
pub(super) fn quantize_x32(x: &[f32], cols: usize) -> Vec<ActQ8x32> {
    let ng = groups_x32(cols);
    let mut out = vec![EMPTY_X32; x.len() / cols * ng];
    out.par_chunks_mut(ng)
        .zip(x.par_chunks(cols))
        .for_each(|(out, x)| quantize_row_x32(x, out));
    out
}

/// Quantizes `m` rows of `cols` activations (`x` is `[m, cols]`, `cols` a multiple of 32) to
/// blocks of 32 in element order, rows in parallel.
pub(crate) fn quantize_blocks(x: &[f32], cols: usize) -> Vec<ActQ8Block> {
    const EMPTY: ActQ8Block = ActQ8Block {
        qs: [0; 32],
        d: 0.0,
        s: 0.0,
    };
    let mut out = vec![EMPTY; x.len() / 32];
    out.par_chunks_mut(cols / 32)
        .zip(x.par_chunks(cols))
        .for_each(|(out, x)| quantize_row_blocks(x, out));
    out
}

/// Quantizes `m` rows of `cols` activations (`x` is `[m, cols]`) to Q8_K blocks in element order.
pub(super) fn quantize_k_seq(x: &[f32], cols: usize) -> Vec<ActQ8KSeq> {
    const EMPTY: ActQ8KSeq = ActQ8KSeq {
        qs: [0; 256],
        bsums: [0; 16],
        d: 0.0,
    };
    let nb = cols / 256;
    let mut out = vec![EMPTY; x.len() / 256];
    out.par_chunks_mut(nb)
        .zip(x.par_chunks(cols))
        .for_each(|(out, x)| quantize_row_k_seq(x, out));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `quantize_k_seq` gives ggml's `quantize_row_q8_K` (llama-cpp-python's x86 build) byte for
    /// byte: `d`, `qs` and `bsums` of every super-block of the fixtures' activation rows
    /// (tests/fixtures/ggml_vec_dot/xk-<n>.f32 against q8k-<n>.bin, written by
    /// scripts/make_ggml_vec_dot_fixtures.py), which include rounding ties, the largest magnitude
    /// with both signs, all-zero super-blocks and maxima so small that ggml's inverse scale
    /// overflows.
    #[test]
    fn q8_k_matches_ggml_byte_for_byte() {
        let dir = std::path::Path::new(
            &std::env::var("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("tests/fixtures/ggml_vec_dot");
        let mut checked = 0;
        for n in [256, 512, 1536, 2048, 5632] {
            let read = |name: String| {
                std::fs::read(dir.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"))
            };
            let x: Vec<f32> = read(format!("xk-{n}.f32"))
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            let want = read(format!("q8k-{n}.bin"));
            let got = quantize_k_seq(&x, n);
            assert_eq!(want.len(), got.len() * 292, "xk-{n}: blocks");
            for (k, (g, w)) in got.iter().zip(want.chunks_exact(292)).enumerate() {
                let what = format!(
                    "n = {n}, row {}, super-block {}",
                    k / (n / 256),
                    k % (n / 256)
                );
                let d = f32::from_le_bytes(w[..4].try_into().unwrap());
                assert_eq!(
                    g.d.to_bits(),
                    d.to_bits(),
                    "{what}: d = {:e}, ggml's {d:e}",
                    g.d
                );
                let qs: Vec<i8> = w[4..260].iter().map(|&b| b as i8).collect();
                assert_eq!(&g.qs[..], &qs[..], "{what}: qs");
                let bsums: Vec<i16> = w[260..]
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect();
                assert_eq!(&g.bsums[..], &bsums[..], "{what}: bsums");
                checked += 1;
            }
        }
        assert_eq!(checked, 7 * (1 + 2 + 6 + 8 + 22));
    }
}
