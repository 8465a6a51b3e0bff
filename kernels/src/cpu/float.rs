//! Plain float weights (F32, F16, BF16, little-endian): f32 dot products with the activations.
//!
//! F32 and F16 sum in ggml's order ([`ggml_tile_fn`]), so that the CPU devices give llama.cpp's
//! products bit for bit: ggml's `vec_dot_f32` / `vec_dot_f16` for one activation row and
//! wherever llamafile's tinyBLAS declines, tinyBLAS (one 16-lane accumulator per output
//! element) for several rows (see `with_kernel` in cpu/mod.rs for when). BF16 keeps kernels of its
//! own order (ggml sums BF16 with AVX-512 BF16's `vdpbf16ps` on CPUs that have it): the portable
//! scalar kernel and the AVX2 one (BF16 as the top half of an f32).

use gguf_importer::GgmlType;

use super::vec_dot::{dot_tiny, vec_dot_f16, vec_dot_f32, Lanes16, Portable};
use super::{check_tile, Isa, Out, TileFn, MAX_TILE};

/// A float weight element stored in `BYTES` little-endian bytes.
trait FloatElem {
    const BYTES: usize;
    fn get(b: &[u8]) -> f32;
}

struct F32;
struct F16;
struct Bf16;

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

impl FloatElem for Bf16 {
    const BYTES: usize = 2;
    /// bf16 is the top half of an f32 (`GGML_BF16_TO_FP32`).
    #[inline(always)]
    fn get(b: &[u8]) -> f32 {
        f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16)
    }
}

/// Elements per scalar step: eight partial sums per activation row, which the compiler can
/// keep in one vector register.
const LANES: usize = 8;

/// The scalar kernel (see [`TileFn`]).
fn tile_scalar<E: FloatElem>(w: &[u8], row_bytes: usize, xs: &[&[f32]], out: Out) {
    check_tile(w, row_bytes, E::BYTES, 1, xs, &out);
    let mut wv = [0f32; LANES];
    for (r, row) in w.chunks_exact(row_bytes).enumerate() {
        let mut acc = [[0f32; LANES]; MAX_TILE];
        for (c, chunk) in row.chunks(LANES * E::BYTES).enumerate() {
            let n = chunk.len() / E::BYTES;
            for (v, b) in wv.iter_mut().zip(chunk.chunks_exact(E::BYTES)) {
                *v = E::get(b);
            }
            for (acc, x) in acc.iter_mut().zip(xs) {
                let x = &x[LANES * c..LANES * c + n];
                for k in 0..n {
                    acc[k] += wv[k] * x[k];
                }
            }
        }
        for (i, acc) in acc.iter().take(xs.len()).enumerate() {
            out.set(r, i, acc.iter().sum());
        }
    }
}

/// The AVX2 kernels.
///
/// # Safety
///
/// The `unsafe fn`s run only inside `tile_avx2_tf`, which the safe kernel `tile_avx2` calls only
/// for the sets `tile_fn` hands it out for, after `with_kernel` (cpu/mod.rs) checked that this CPU
/// runs them (both include AVX2, FMA and F16C). Memory: `tile_avx2` asserts the shapes on entry
/// (`check_tile`: `w` whole rows of `row_bytes`, whole elements, every activation row exactly
/// `cols = row_bytes / BYTES` floats), so `tile_body`'s weight rows are `row_bytes` long and its
/// activation rows `cols` long (sliced to it, checked), which bound `rows_body`'s raw reads.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::super::check_tile;
    use super::super::x86_util::hsum_ps;
    use super::{Bf16, FloatElem, Out, F16, F32};

    /// Loads 8 weights as f32 from `p` (8 · `BYTES` readable bytes).
    pub(super) trait FloatX86: FloatElem {
        /// # Safety
        /// The CPU must have AVX2 and F16C; `p` must be valid for reads of `8 · BYTES` bytes
        /// (any alignment).
        unsafe fn load8(p: *const u8) -> __m256;
    }

    impl FloatX86 for F32 {
        #[inline(always)]
        unsafe fn load8(p: *const u8) -> __m256 {
            // SAFETY: 8 · 4 readable bytes at p (the contract); `loadu`: any alignment.
            _mm256_loadu_ps(p as *const f32)
        }
    }

    impl FloatX86 for F16 {
        #[inline(always)]
        unsafe fn load8(p: *const u8) -> __m256 {
            // SAFETY: 8 · 2 readable bytes at p (the contract); `loadu`: any alignment.
            _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
        }
    }

    impl FloatX86 for Bf16 {
        #[inline(always)]
        unsafe fn load8(p: *const u8) -> __m256 {
            // SAFETY: 8 · 2 readable bytes at p (the contract); `loadu`: any alignment.
            let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i));
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(h))
        }
    }

    /// Weight rows `R` (1 or 2) against activation rows `N` (up to 4): each weight load meets
    /// `N` activation loads and each activation load `R` weight rows, so the activations are
    /// read from cache half as often as one row at a time would.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; every `rows[r]` must hold at least `cols · BYTES`
    /// bytes and every `xs[i]` at least `cols` floats.
    #[inline(always)]
    unsafe fn rows_body<E: FloatX86, const R: usize, const N: usize>(
        rows: [&[u8]; R],
        xs: &[&[f32]; N],
        cols: usize,
    ) -> [[f32; N]; R] {
        debug_assert!(rows.iter().all(|w| w.len() >= cols * E::BYTES));
        debug_assert!(xs.iter().all(|x| x.len() >= cols));
        let full = cols / 8 * 8;
        let mut acc = [[_mm256_setzero_ps(); N]; R];
        let mut j = 0;
        while j < full {
            // SAFETY: elements j..j + 8 ≤ full ≤ cols: bytes up to (j + 8) · BYTES ≤ cols · BYTES
            // ≤ rows[r].len() (this function's contract).
            let wv: [__m256; R] =
                std::array::from_fn(|r| E::load8(rows[r].as_ptr().add(j * E::BYTES)));
            for i in 0..N {
                // SAFETY: floats j..j + 8 ≤ cols ≤ xs[i].len() (this function's contract).
                let xv = _mm256_loadu_ps(xs[i].as_ptr().add(j));
                for r in 0..R {
                    acc[r][i] = _mm256_fmadd_ps(wv[r], xv, acc[r][i]);
                }
            }
            j += 8;
        }
        std::array::from_fn(|r| {
            std::array::from_fn(|i| {
                let mut sum = hsum_ps(acc[r][i]);
                for k in full..cols {
                    sum += E::get(&rows[r][k * E::BYTES..]) * xs[i][k];
                }
                sum
            })
        })
    }

    /// All weight rows of `w` against up to 4 activation rows.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; `w` must be whole rows of `row_bytes` (the
    /// kernel's `check_tile`). (The activation rows' lengths it checks itself.)
    #[inline(always)]
    unsafe fn tile_body<E: FloatX86, const N: usize>(
        w: &[u8],
        row_bytes: usize,
        xs: &[&[f32]],
        out: Out,
    ) {
        debug_assert!(w.len().is_multiple_of(row_bytes));
        let cols = row_bytes / E::BYTES;
        // each row `cols` floats, or a panic
        let xs: [&[f32]; N] = std::array::from_fn(|i| &xs[i][..cols]);
        let mut pairs = w.chunks_exact(2 * row_bytes);
        let mut r = 0;
        for pair in &mut pairs {
            let (a, b) = pair.split_at(row_bytes);
            // SAFETY: a and b are row_bytes ≥ cols · BYTES bytes, xs rows cols floats.
            let y = rows_body::<E, 2, N>([a, b], &xs, cols);
            for (k, y) in y.iter().enumerate() {
                out.set_row(r + k, y);
            }
            r += 2;
        }
        if !pairs.remainder().is_empty() {
            // SAFETY: w is whole rows (this function's contract), so a remainder of the pairs
            // is one whole row of row_bytes ≥ cols · BYTES bytes; xs rows cols floats.
            let y = rows_body::<E, 1, N>([pairs.remainder()], &xs, cols);
            out.set_row(r, &y[0]);
        }
    }

    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; `w` must be whole rows of `rb`.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile_avx2_tf<E: FloatX86>(w: &[u8], rb: usize, xs: &[&[f32]], out: Out) {
        // at most 4 activation rows per pass: 2 × 4 accumulators fit the 16 AVX2 registers
        for (t, xs) in xs.chunks(4).enumerate() {
            let out = out.skip_cols(4 * t);
            match xs.len() {
                1 => tile_body::<E, 1>(w, rb, xs, out),
                2 => tile_body::<E, 2>(w, rb, xs, out),
                3 => tile_body::<E, 3>(w, rb, xs, out),
                _ => tile_body::<E, 4>(w, rb, xs, out),
            }
        }
    }

    pub(super) fn tile_avx2<E: FloatX86>(w: &[u8], rb: usize, xs: &[&[f32]], out: Out) {
        check_tile(w, rb, E::BYTES, 1, xs, &out);
        // SAFETY: w is whole rows of rb (asserted just above); the CPU has AVX2, FMA and F16C:
        // `tile_fn` hands this kernel out for `Isa::Avx2` and `Isa::Avx512Vnni` only (both
        // include them), and `with_kernel` checked that this CPU runs the set before asking.
        unsafe { tile_avx2_tf::<E>(w, rb, xs, out) }
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
/// every activation row of the tile, in tinyBLAS's order (`TINY`) or `vec_dot`'s.
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
        for (i, x) in xs.iter().enumerate() {
            let x = &x[..cols];
            let v = match (TINY, E::VEC_DOT_F16) {
                (true, _) => dot_tiny::<L>(&wide, x),
                (false, true) => vec_dot_f16::<L>(&wide, x),
                (false, false) => vec_dot_f32::<L>(&wide, x),
            };
            out.set(r, i, v);
        }
    }
}

/// [`ggml_body`] for AVX2, FMA and F16C: F16 rows widened with `vcvtph2ps`, and tinyBLAS's
/// chains (one accumulator per output element, so each alone waits on its multiply-adds'
/// latency) run four activation rows at a time on one load of the weights, as tinyBLAS's tiles
/// do. The same bits as [`ggml_body`].
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
    use std::arch::x86_64::*;
    type L = super::vec_dot::Avx2Fma;
    let cols = row_bytes / E::BYTES;
    let mut wide = vec![0f32; cols];
    for (r, row) in w.chunks_exact(row_bytes).enumerate() {
        if E::VEC_DOT_F16 {
            let whole = cols / 8 * 8;
            let mut e = 0;
            while e < whole {
                // SAFETY: 8 f16 (16 bytes) at e · 2 + 16 ≤ row_bytes; 8 f32 into `wide`.
                let h = _mm_loadu_si128(row.as_ptr().add(2 * e) as *const __m128i);
                _mm256_storeu_ps(wide.as_mut_ptr().add(e), _mm256_cvtph_ps(h));
                e += 8;
            }
            for (o, b) in wide[whole..]
                .iter_mut()
                .zip(row[2 * whole..].chunks_exact(2))
            {
                *o = E::get(b);
            }
        } else {
            E::widen(row, &mut wide);
        }
        if !TINY {
            for (i, x) in xs.iter().enumerate() {
                let x = &x[..cols];
                let v = match E::VEC_DOT_F16 {
                    true => vec_dot_f16::<L>(&wide, x),
                    false => vec_dot_f32::<L>(&wide, x),
                };
                out.set(r, i, v);
            }
            continue;
        }
        // tinyBLAS: up to four activation rows per pass over the weight row.
        for (t, xs4) in xs.chunks(4).enumerate() {
            let sums: &[f32] = match xs4.len() {
                1 => &tiny_rows::<1>(&wide, xs4),
                2 => &tiny_rows::<2>(&wide, xs4),
                3 => &tiny_rows::<3>(&wide, xs4),
                _ => &tiny_rows::<4>(&wide, xs4),
            };
            for (j, &v) in sums.iter().enumerate() {
                out.set(r, 4 * t + j, v);
            }
        }
    }
}

/// tinyBLAS's sums of the weight row `w` (a multiple of 16 long) with `N` activation rows, each
/// one 16-lane accumulator (two registers) in order over the row, reduced; the weights loaded
/// once for all `N`.
///
/// # Safety
/// The CPU must have AVX2 and FMA; every `xs[j]` at least `w.len()` long.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tiny_rows<const N: usize>(w: &[f32], xs: &[&[f32]]) -> [f32; N] {
    use std::arch::x86_64::*;
    let cols = w.len() / 16 * 16;
    let x: [&[f32]; N] = std::array::from_fn(|j| &xs[j][..cols]);
    let mut acc = [[_mm256_setzero_ps(); 2]; N];
    let mut e = 0;
    while e < cols {
        // SAFETY: e + 16 ≤ cols ≤ the lengths of w and of every x[j].
        let w0 = _mm256_loadu_ps(w.as_ptr().add(e));
        let w1 = _mm256_loadu_ps(w.as_ptr().add(e + 8));
        for j in 0..N {
            acc[j][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[j].as_ptr().add(e)), acc[j][0]);
            acc[j][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x[j].as_ptr().add(e + 8)), acc[j][1]);
        }
        e += 16;
    }
    std::array::from_fn(|j| {
        let mut lanes = [0f32; 16];
        _mm256_storeu_ps(lanes.as_mut_ptr(), acc[j][0]);
        _mm256_storeu_ps(lanes.as_mut_ptr().add(8), acc[j][1]);
        super::vec_dot::reduce16(&lanes)
    })
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

/// The kernel of BF16 weights on `isa` (`None` for other types: F32 and F16 take
/// [`ggml_tile_fn`]). Call the kernel only if this CPU runs `isa` (`with_kernel` checks it).
pub(super) fn tile_fn(ty: GgmlType, isa: Isa) -> Option<TileFn<f32>> {
    if ty != GgmlType::BF16 {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    if matches!(isa, Isa::Avx2 | Isa::Avx512Vnni) {
        return Some(x86::tile_avx2::<Bf16>);
    }
    let _ = isa;
    Some(tile_scalar::<Bf16>)
}
