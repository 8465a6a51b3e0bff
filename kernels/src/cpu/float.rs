//! F32 and F16 weights (little-endian): f32 dot products with the activations in ggml's order
//! ([`ggml_tile_fn`]), so that the CPU devices give llama.cpp's products bit for bit: ggml's
//! `vec_dot_f32` / `vec_dot_f16` for one activation row and wherever llamafile's tinyBLAS
//! declines, tinyBLAS (one 16-lane accumulator per output element) for several rows (see
//! `with_kernel` in cpu/mod.rs for when). BF16 has its own module (bf16.rs).

use gguf_importer::GgmlType;

use super::vec_dot::{vec_dot_f16, vec_dot_f32, Lanes16, Portable};
use super::{check_tile, Isa, Out, TileFn};

/// A float weight element stored in `BYTES` little-endian bytes.
trait FloatElem {
    const BYTES: usize;
    fn get(b: &[u8]) -> f32;
}

struct F32;
struct F16;

impl FloatElem for F32 {
    const BYTES: usize = 4;
    #[inline(always)]
    fn get(b: &[u8]) -> f32 {
        f32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}

impl FloatElem for F16 {
    const BYTES: usize = 2;
    #[inline(always)]
    fn get(b: &[u8]) -> f32 {
        half::f16::from_le_bytes([b[0], b[1]]).to_f32_const()
    }
}

/// A float weight format that [`ggml_tile_fn`] sums in ggml's order.
trait GgmlFloat: FloatElem {
    /// Whether ggml's one-row dot product is `vec_dot_f16` (else `vec_dot_f32`).
    const VEC_DOT_F16: bool;
    /// The weights of `row` (`out.len()` elements) as f32, exactly.
    fn widen(row: &[u8], out: &mut [f32]);
}

impl GgmlFloat for F32 {
    const VEC_DOT_F16: bool = false;
    fn widen(row: &[u8], out: &mut [f32]) {
        for (o, b) in out.iter_mut().zip(row.chunks_exact(4)) {
            *o = Self::get(b);
        }
    }
}

impl GgmlFloat for F16 {
    const VEC_DOT_F16: bool = true;
    fn widen(row: &[u8], out: &mut [f32]) {
        use half::slice::HalfFloatSliceExt;
        match bytemuck::try_cast_slice::<u8, half::f16>(row) {
            // little-endian bytes are the f16 values on the little-endian targets
            Ok(h) if cfg!(target_endian = "little") => h.convert_to_f32_slice(out),
            _ => {
                for (o, b) in out.iter_mut().zip(row.chunks_exact(2)) {
                    *o = Self::get(b);
                }
            }
        }
    }
}

/// The body of the ggml-order kernels: each weight row widened to f32 once, then dotted with
/// every activation row of the tile, in `vec_dot`'s order or tinyBLAS's (`TINY`; up to four
/// activation rows per pass over the weight row, on one load of its steps, as tinyBLAS's tiles
/// do: its chains, one accumulator per output element, each wait on their multiply-adds'
/// latency alone).
///
/// # Safety
/// As [`Lanes16::fma`]; the shapes were checked by the caller (`check_tile`, and `cols % 16 == 0`
/// when `TINY`), though nothing here reads out of bounds if they were not.
#[inline(always)]
unsafe fn ggml_body<E: GgmlFloat, L: Lanes16, const TINY: bool>(
    w: &[u8],
    row_bytes: usize,
    xs: &[&[f32]],
    out: &Out,
) {
    let cols = row_bytes / E::BYTES;
    let mut wide = vec![0f32; cols];
    for (r, row) in w.chunks_exact(row_bytes).enumerate() {
        E::widen(row, &mut wide);
        if TINY {
            for (t, x4) in xs.chunks(4).enumerate() {
                let sums: &[f32] = match *x4 {
                    [a] => &L::tiny16_rows(&wide, [a]),
                    [a, b] => &L::tiny16_rows(&wide, [a, b]),
                    [a, b, c] => &L::tiny16_rows(&wide, [a, b, c]),
                    [a, b, c, d] => &L::tiny16_rows(&wide, [a, b, c, d]),
                    _ => unreachable!("chunks of 1 to 4"),
                };
                for (j, &v) in sums.iter().enumerate() {
                    out.set(r, 4 * t + j, v);
                }
            }
            continue;
        }
        for (i, x) in xs.iter().enumerate() {
            let x = &x[..cols];
            let v = match E::VEC_DOT_F16 {
                true => vec_dot_f16::<L>(&wide, x),
                false => vec_dot_f32::<L>(&wide, x),
            };
            out.set(r, i, v);
        }
    }
}

/// [`ggml_body`] compiled for AVX2, FMA and F16C, on AVX2 registers: the same bits.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; the shapes were checked by the caller (`check_tile`,
/// and `cols % 16 == 0` when `TINY`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn ggml_avx2<E: GgmlFloat, const TINY: bool>(
    w: &[u8],
    row_bytes: usize,
    xs: &[&[f32]],
    out: &Out,
) {
    ggml_body::<E, super::vec_dot::Avx2Fma, TINY>(w, row_bytes, xs, out)
}

/// tinyBLAS's order with AVX-512: tiles of four weight rows by four activation rows, each
/// output one 16-lane accumulator (one register) in order over the row, reduced as
/// `_mm512_reduce_add_ps` ([`super::vec_dot::reduce16`]): the same bits as [`ggml_body`], with
/// the loads of a step shared by sixteen chains (a partial tile repeats its first row or column
/// and drops the copies).
///
/// # Safety
/// The CPU must have AVX2, FMA, F16C and AVX-512 F; the shapes were checked by the caller
/// (`check_tile`, `cols % 16 == 0`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn tiny_avx512<E: GgmlFloat>(w: &[u8], row_bytes: usize, xs: &[&[f32]], out: &Out) {
    use std::arch::x86_64::*;
    let cols = row_bytes / E::BYTES;
    let n_rows = w.len() / row_bytes;
    let mut wide = vec![0f32; 4 * cols];
    let mut r0 = 0;
    while r0 < n_rows {
        let rr = (n_rows - r0).min(4);
        for k in 0..rr {
            let row = &w[(r0 + k) * row_bytes..][..row_bytes];
            let dst = &mut wide[k * cols..][..cols];
            if E::VEC_DOT_F16 {
                let mut e = 0;
                while e < cols {
                    // SAFETY: cols % 16 == 0: 16 f16 (32 bytes) at 2e + 32 ≤ row_bytes, 16 f32
                    // at e + 16 ≤ cols in `dst`.
                    let h = _mm256_loadu_si256(row.as_ptr().add(2 * e) as *const __m256i);
                    _mm512_storeu_ps(dst.as_mut_ptr().add(e), _mm512_cvtph_ps(h));
                    e += 16;
                }
            } else {
                E::widen(row, dst);
            }
        }
        let wrow = |k: usize| &wide[(if k < rr { k } else { 0 }) * cols..][..cols];
        let wr: [&[f32]; 4] = std::array::from_fn(wrow);
        for (t, xs4) in xs.chunks(4).enumerate() {
            let xr: [&[f32]; 4] =
                std::array::from_fn(|j| &xs4[if j < xs4.len() { j } else { 0 }][..cols]);
            let mut acc = [[_mm512_setzero_ps(); 4]; 4];
            let mut e = 0;
            while e < cols {
                // SAFETY: e + 16 ≤ cols, the length of every wr[i] and xr[j].
                let wv: [__m512; 4] =
                    std::array::from_fn(|i| _mm512_loadu_ps(wr[i].as_ptr().add(e)));
                for j in 0..4 {
                    let xv = _mm512_loadu_ps(xr[j].as_ptr().add(e));
                    for i in 0..4 {
                        acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]);
                    }
                }
                e += 16;
            }
            for (i, acc) in acc.iter().take(rr).enumerate() {
                for (j, acc) in acc.iter().take(xs4.len()).enumerate() {
                    let mut lanes = [0f32; 16];
                    _mm512_storeu_ps(lanes.as_mut_ptr(), *acc);
                    out.set(r0 + i, 4 * t + j, super::vec_dot::reduce16(&lanes));
                }
            }
        }
        r0 += rr;
    }
}

/// The AVX-512 tinyBLAS kernel (see [`TileFn`], [`tiny_avx512`]).
#[cfg(target_arch = "x86_64")]
fn ggml_tile_avx512<E: GgmlFloat>(w: &[u8], row_bytes: usize, xs: &[&[f32]], out: Out) {
    check_tile(w, row_bytes, E::BYTES, 1, xs, &out);
    assert!(
        (row_bytes / E::BYTES).is_multiple_of(16),
        "tile kernel: tinyBLAS's order needs rows of whole 16-element steps"
    );
    // SAFETY: `ggml_tile_fn` hands this kernel out for `Isa::Avx512Vnni` only (AVX2, FMA, F16C,
    // AVX-512 F among its features), and `with_kernel` checked that this CPU runs the set.
    unsafe { tiny_avx512::<E>(w, row_bytes, xs, &out) }
}

/// The ggml-order kernel (see [`TileFn`]); `SIMD`: AVX2 with FMA and F16C, else portable code
/// (the same bits).
fn ggml_tile<E: GgmlFloat, const TINY: bool, const SIMD: bool>(
    w: &[u8],
    row_bytes: usize,
    xs: &[&[f32]],
    out: Out,
) {
    check_tile(w, row_bytes, E::BYTES, 1, xs, &out);
    assert!(
        !TINY || (row_bytes / E::BYTES).is_multiple_of(16),
        "tile kernel: tinyBLAS's order needs rows of whole 16-element steps"
    );
    #[cfg(target_arch = "x86_64")]
    if SIMD {
        // SAFETY: `ggml_tile_fn` hands out `SIMD` kernels for `Isa::Avx2` and `Isa::Avx512Vnni`
        // only (both include AVX2, FMA and F16C), and `with_kernel` checked that this CPU runs
        // the set before asking.
        return unsafe { ggml_avx2::<E, TINY>(w, row_bytes, xs, &out) };
    }
    // SAFETY: portable code.
    unsafe { ggml_body::<E, Portable, TINY>(w, row_bytes, xs, &out) }
}

/// The kernel of F32 or F16 weights in ggml's order on `isa`: tinyBLAS's (`tiny`) or
/// `vec_dot_f32` / `vec_dot_f16`'s; `None` for other types. The activations must be what ggml
/// dots with: as they are for F32, rounded to f16 for F16 (its `vec_dot_type`). Call the kernel
/// only if this CPU runs `isa` (`with_kernel` checks it).
pub(super) fn ggml_tile_fn(ty: GgmlType, isa: Isa, tiny: bool) -> Option<TileFn<f32>> {
    #[cfg(target_arch = "x86_64")]
    if tiny && isa == Isa::Avx512Vnni {
        return match ty {
            GgmlType::F32 => Some(ggml_tile_avx512::<F32>),
            GgmlType::F16 => Some(ggml_tile_avx512::<F16>),
            _ => None,
        };
    }
    let simd = cfg!(target_arch = "x86_64") && matches!(isa, Isa::Avx2 | Isa::Avx512Vnni);
    Some(match (ty, tiny, simd) {
        (GgmlType::F32, false, false) => ggml_tile::<F32, false, false>,
        (GgmlType::F32, false, true) => ggml_tile::<F32, false, true>,
        (GgmlType::F32, true, false) => ggml_tile::<F32, true, false>,
        (GgmlType::F32, true, true) => ggml_tile::<F32, true, true>,
        (GgmlType::F16, false, false) => ggml_tile::<F16, false, false>,
        (GgmlType::F16, false, true) => ggml_tile::<F16, false, true>,
        (GgmlType::F16, true, false) => ggml_tile::<F16, true, false>,
        (GgmlType::F16, true, true) => ggml_tile::<F16, true, true>,
        _ => return None,
    })
}
