//! BF16 weights in ggml's order on x86 with AVX-512 BF16, so that the CPU devices give llama.cpp's
//! products bit for bit on every CPU.
//!
//! ggml converts the activations to BF16 (its `vec_dot_type`, rounded to nearest even) and sums
//! with `vdpbf16ps`: each of 16 f32 lanes takes a pair of neighbouring elements of a 32-element
//! step, `acc = fma(x[2l+1], y[2l+1], acc)` and then `acc = fma(x[2l], y[2l], acc)` (Intel's
//! definition of the instruction; a BF16 product is exact in f32, so each is one rounding of the
//! exact sum). Two sums use it:
//! - `ggml_vec_dot_bf16` (one activation row, or where tinyBLAS declines): two accumulators over
//!   steps of 64 elements (the first 32 into one, the next 32 into the other), each reduced as
//!   `_mm512_reduce_add_ps` and added in double (`ggml_float`), then the elements past the last
//!   whole 64 one by one in double, each product rounded to f32;
//! - llamafile's tinyBLAS (`tinyBLAS<32, __m512, __m512bh, ...>`, two or more activation rows):
//!   one accumulator over all 32-element steps, reduced.
//!
//! Here the 16 lanes are [`Lanes16`] (portable code or AVX2), over rows "widened" once into
//! f32 with each 32-element step laid out as its 16 odd elements then its 16 even ones, so that
//! a step is two lane-wise multiply-adds. Not emulated: the instruction treats BF16 subnormal
//! inputs as zero and flushes subnormal results to zero; the results differ only where a weight,
//! an activation or a partial sum is below 2⁻¹²⁶ in magnitude and not zero.

use super::vec_dot::{reduce16, Lanes16, Portable};
use super::{check_tile, Isa, Out, TileFn};

/// Elements of one `vdpbf16ps` step.
const STEP: usize = 32;

/// Widens the BF16 row `row` (little-endian bytes, `out.len()` elements) into f32 in the step
/// layout: every whole 32-element step as its odd elements then its even ones; the elements past
/// the last whole step as they are.
pub(super) fn widen_steps(row: &[u8], out: &mut [f32]) {
    let n = out.len();
    let whole = n / STEP * STEP;
    for (dst, src) in out[..whole]
        .chunks_exact_mut(STEP)
        .zip(row.chunks_exact(2 * STEP))
    {
        let (odd, even) = dst.split_at_mut(STEP / 2);
        // A step's word k holds the elements 2k (low half) and 2k + 1 (high half); BF16 is the
        // top half of an f32.
        for ((o, e), w) in odd.iter_mut().zip(even).zip(src.chunks_exact(4)) {
            let w = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            *o = f32::from_bits(w & 0xffff_0000);
            *e = f32::from_bits(w << 16);
        }
    }
    for (o, b) in out[whole..]
        .iter_mut()
        .zip(row[2 * whole..].chunks_exact(2))
    {
        *o = f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16);
    }
}

/// The activation row `x` as ggml's BF16 activations (each rounded to the nearest BF16, ties to
/// even: `GGML_FP32_TO_BF16`) in [`widen_steps`]'s layout.
pub(super) fn round_activations(x: &[f32], out: &mut [f32]) {
    let bytes: Vec<u8> = x
        .iter()
        .flat_map(|&v| half::bf16::from_f32(v).to_bits().to_le_bytes())
        .collect();
    widen_steps(&bytes, out);
}

/// Where natural element `e` of an `n`-element row sits in [`widen_steps`]'s layout.
#[inline(always)]
fn step_index(e: usize, n: usize) -> usize {
    if e >= n / STEP * STEP {
        return e;
    }
    let (base, k) = (e / STEP * STEP, e % STEP);
    base + if k % 2 == 1 { k / 2 } else { STEP / 2 + k / 2 }
}

/// One `vdpbf16ps` step into `acc`: the odd pairs' products, then the even ones'.
///
/// # Safety
/// As [`Lanes16::fma`]; `w` and `x` hold at least 32 elements.
#[inline(always)]
unsafe fn step<L: Lanes16>(acc: &mut [f32; 16], w: &[f32], x: &[f32]) {
    let lanes = |v: &[f32], h: usize| -> [f32; 16] { v[16 * h..][..16].try_into().expect("16") };
    L::fma(acc, &lanes(w, 0), &lanes(x, 0));
    L::fma(acc, &lanes(w, 1), &lanes(x, 1));
}

/// ggml's `vec_dot_bf16` with AVX-512 BF16 of two rows in [`widen_steps`]'s layout.
///
/// # Safety
/// As [`Lanes16::fma`].
#[inline(always)]
unsafe fn vec_dot<L: Lanes16>(w: &[f32], x: &[f32]) -> f32 {
    let n = w.len().min(x.len());
    let whole = n / 64 * 64;
    let (mut c1, mut c2) = ([0f32; 16], [0f32; 16]);
    for s in (0..whole).step_by(64) {
        step::<L>(&mut c1, &w[s..], &x[s..]);
        step::<L>(&mut c2, &w[s + STEP..], &x[s + STEP..]);
    }
    let mut sum = 0f64;
    sum += reduce16(&c1) as f64;
    sum += reduce16(&c2) as f64;
    for e in whole..n {
        let p = step_index(e, n);
        sum += (w[p] * x[p]) as f64;
    }
    sum as f32
}

/// One element of llamafile's tinyBLAS product for BF16: one accumulator over every step of two
/// rows in [`widen_steps`]'s layout (whole steps only: tinyBLAS declines other lengths).
///
/// # Safety
/// As [`Lanes16::fma`].
#[inline(always)]
unsafe fn tiny<L: Lanes16>(w: &[f32], x: &[f32]) -> f32 {
    let n = w.len().min(x.len()) / STEP * STEP;
    let mut acc = [0f32; 16];
    for s in (0..n).step_by(STEP) {
        step::<L>(&mut acc, &w[s..], &x[s..]);
    }
    reduce16(&acc)
}

/// The kernels' body: each weight row widened once, then dotted with every activation row of the
/// tile (already in the step layout), in tinyBLAS's order (`TINY`) or `vec_dot_bf16`'s.
///
/// # Safety
/// As [`Lanes16::fma`]; the shapes were checked by the caller (`check_tile`).
#[inline(always)]
unsafe fn body<L: Lanes16, const TINY: bool>(w: &[u8], row_bytes: usize, xs: &[&[f32]], out: &Out) {
    let cols = row_bytes / 2;
    let mut wide = vec![0f32; cols];
    for (r, row) in w.chunks_exact(row_bytes).enumerate() {
        widen_steps(row, &mut wide);
        for (i, x) in xs.iter().enumerate() {
            let x = &x[..cols];
            let v = if TINY {
                tiny::<L>(&wide, x)
            } else {
                vec_dot::<L>(&wide, x)
            };
            out.set(r, i, v);
        }
    }
}

/// [`body`] with AVX2 and FMA.
///
/// # Safety
/// The CPU must have AVX2 and FMA; the shapes were checked by the caller.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn body_avx2<const TINY: bool>(w: &[u8], row_bytes: usize, xs: &[&[f32]], out: &Out) {
    body::<super::vec_dot::Avx2Fma, TINY>(w, row_bytes, xs, out)
}

/// The kernel (see [`TileFn`]); `SIMD`: AVX2 with FMA, else portable code (the same bits). The
/// activation rows must be [`round_activations`]'s.
fn tile<const TINY: bool, const SIMD: bool>(w: &[u8], row_bytes: usize, xs: &[&[f32]], out: Out) {
    check_tile(w, row_bytes, 2, 1, xs, &out);
    assert!(
        !TINY || (row_bytes / 2).is_multiple_of(STEP),
        "tile kernel: tinyBLAS's BF16 order needs rows of whole 32-element steps"
    );
    #[cfg(target_arch = "x86_64")]
    if SIMD {
        // SAFETY: `tile_fn` hands out `SIMD` kernels for `Isa::Avx2` and `Isa::Avx512Vnni` only
        // (both include AVX2 and FMA), and `with_kernel` checked that this CPU runs the set
        // before asking; the shapes were checked just above.
        return unsafe { body_avx2::<TINY>(w, row_bytes, xs, &out) };
    }
    // SAFETY: portable code; the shapes were checked just above.
    unsafe { body::<Portable, TINY>(w, row_bytes, xs, &out) }
}

/// Whether ggml multiplies `m` activation rows with a BF16 matrix of `rows × cols` by llamafile's
/// tinyBLAS (`llamafile_sgemm` declines `n < 2`, `k % 32` and `m % 4`; ggml's `n` is our `m`).
pub(super) fn uses_tiny(rows: usize, cols: usize, m: usize) -> bool {
    m >= 2 && cols.is_multiple_of(STEP) && rows.is_multiple_of(4)
}

/// The kernel of BF16 weights in ggml's order on `isa`: tinyBLAS's (`tiny`) or `vec_dot_bf16`'s.
/// The activations must be [`round_activations`]'s. Call the kernel only if this CPU runs `isa`
/// (`with_kernel` checks it).
pub(super) fn tile_fn(isa: Isa, tiny: bool) -> TileFn<f32> {
    let simd = cfg!(target_arch = "x86_64") && matches!(isa, Isa::Avx2 | Isa::Avx512Vnni);
    match (tiny, simd) {
        (false, false) => tile::<false, false>,
        (false, true) => tile::<false, true>,
        (true, false) => tile::<true, false>,
        (true, true) => tile::<true, true>,
    }
}

/// The same two sums with AVX-512 BF16's `vdpbf16ps` itself, on CPUs that have it: the weights
/// and the activations (as BF16 bits, element order) go to the instruction as they are, and only
/// the reductions, the double tail and the loop structure are this crate's; the same bits as the
/// emulation above (except that the instruction, as in llama.cpp, flushes subnormals to zero).
#[cfg(target_arch = "x86_64")]
pub(super) mod native {
    use std::arch::x86_64::*;

    use super::super::vec_dot::reduce16;
    use super::super::{check_tile, Out, TileFn};
    use super::STEP;

    /// Whether this CPU has AVX-512 F and BF16.
    pub(in super::super) fn available() -> bool {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16")
    }

    /// The activation row `x` rounded to BF16 (`GGML_FP32_TO_BF16`), as bits.
    pub(in super::super) fn round_activations(x: &[f32], out: &mut [u16]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = half::bf16::from_f32(v).to_bits();
        }
    }

    /// `acc` plus one `vdpbf16ps` step of 32 elements at `w` (bytes) and `x`.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F and BF16; 64 bytes readable at `w` and 32 elements at `x`.
    #[inline(always)]
    unsafe fn dp(acc: __m512, w: *const u8, x: *const u16) -> __m512 {
        // SAFETY: 64 readable bytes at each (the contract); `loadu`: any alignment; a __m512bh
        // is 32 BF16 in the 512 bits.
        let a: __m512bh = std::mem::transmute(_mm512_loadu_si512(w as *const __m512i));
        let b: __m512bh = std::mem::transmute(_mm512_loadu_si512(x as *const __m512i));
        _mm512_dpbf16_ps(acc, a, b)
    }

    /// # Safety
    /// The CPU must have AVX-512 F.
    #[inline(always)]
    unsafe fn reduce(v: __m512) -> f32 {
        let mut lanes = [0f32; 16];
        _mm512_storeu_ps(lanes.as_mut_ptr(), v);
        reduce16(&lanes)
    }

    /// # Safety
    /// The CPU must have AVX-512 F and BF16; `w` holds `2 · x.len()` bytes.
    #[inline(always)]
    unsafe fn vec_dot(w: &[u8], x: &[u16]) -> f32 {
        let n = x.len();
        debug_assert!(w.len() >= 2 * n);
        let whole = n / 64 * 64;
        let (mut c1, mut c2) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        for s in (0..whole).step_by(64) {
            // SAFETY: elements s..s + 64 ≤ whole ≤ n of both rows.
            c1 = dp(c1, w.as_ptr().add(2 * s), x.as_ptr().add(s));
            c2 = dp(c2, w.as_ptr().add(2 * (s + STEP)), x.as_ptr().add(s + STEP));
        }
        let mut sum = 0f64;
        sum += reduce(c1) as f64;
        sum += reduce(c2) as f64;
        let widen = |b: u16| f32::from_bits((b as u32) << 16);
        for e in whole..n {
            let we = u16::from_le_bytes([w[2 * e], w[2 * e + 1]]);
            sum += (widen(we) * widen(x[e])) as f64;
        }
        sum as f32
    }

    /// # Safety
    /// The CPU must have AVX-512 F and BF16; `w` holds `2 · x.len()` bytes.
    #[inline(always)]
    unsafe fn tiny(w: &[u8], x: &[u16]) -> f32 {
        let n = x.len() / STEP * STEP;
        debug_assert!(w.len() >= 2 * n);
        let mut acc = _mm512_setzero_ps();
        for s in (0..n).step_by(STEP) {
            // SAFETY: elements s..s + 32 ≤ n of both rows.
            acc = dp(acc, w.as_ptr().add(2 * s), x.as_ptr().add(s));
        }
        reduce(acc)
    }

    /// # Safety
    /// The CPU must have AVX-512 F and BF16; the shapes were checked (`check_tile`).
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn body<const TINY: bool>(w: &[u8], row_bytes: usize, xs: &[&[u16]], out: &Out) {
        let cols = row_bytes / 2;
        for (r, row) in w.chunks_exact(row_bytes).enumerate() {
            for (i, x) in xs.iter().enumerate() {
                let x = &x[..cols];
                let v = if TINY { tiny(row, x) } else { vec_dot(row, x) };
                out.set(r, i, v);
            }
        }
    }

    fn tile<const TINY: bool>(w: &[u8], row_bytes: usize, xs: &[&[u16]], out: Out) {
        check_tile(w, row_bytes, 2, 1, xs, &out);
        assert!(
            !TINY || (row_bytes / 2).is_multiple_of(STEP),
            "tile kernel: tinyBLAS's BF16 order needs rows of whole 32-element steps"
        );
        assert!(available(), "tile kernel: this CPU has no AVX-512 BF16");
        // SAFETY: the CPU has AVX-512 F and BF16 (asserted just above, a cached check); every
        // weight row is `row_bytes` = 2 · cols bytes and every activation row `cols` elements
        // (`check_tile`).
        unsafe { body::<TINY>(w, row_bytes, xs, &out) }
    }

    /// The kernel: tinyBLAS's (`tiny`) or `vec_dot_bf16`'s, activations [`round_activations`]'s.
    pub(in super::super) fn tile_fn(tiny: bool) -> TileFn<u16> {
        match tiny {
            false => tile::<false>,
            true => tile::<true>,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_layout_puts_odd_elements_first() {
        let n = 70; // two whole steps and a tail of 6
        let vals: Vec<f32> = (0..n).map(|e| e as f32).collect();
        let bytes: Vec<u8> = vals
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_bits().to_le_bytes())
            .collect();
        let mut out = vec![0f32; n];
        widen_steps(&bytes, &mut out);
        for e in 0..n {
            assert_eq!(out[step_index(e, n)], e as f32, "element {e}");
        }
        assert_eq!(&out[..4], &[1.0, 3.0, 5.0, 7.0]);
        assert_eq!(&out[16..18], &[0.0, 2.0]);
    }
}
