//! Q4_0, IQ4_NL and MXFP4 in the order of llama.cpp's repacked kernels: on x86 with AVX2 (and
//! AVX-512), llama.cpp moves a matrix of these types whose row count is a multiple of 8 into its
//! "CPU_REPACK" buffer at load (eight rows' blocks interleaved, `block_q4_0x8`,
//! `block_iq4_nlx8`, `block_mxfp4x8`) and multiplies it with `ggml_gemv_<fmt>_8x8_q8_0` (one
//! activation row) and `ggml_gemm_<fmt>_8x8_q8_0` (several), not with its `vec_dot`. All of them
//! are one template with the code table swapped (`kvalues` of the [`NibbleLut`] formats) and sum
//! each output element the same way (read in llama-cpp-python 0.3.36's
//! `ggml-cpu/arch/x86/repack.cpp`, `gemv_q4_b32_8x8_q8_0_lut_avx` and
//! `gemm_q4_b32_8x8_q8_0_lut_avx`, 256- and 512-bit paths):
//!
//! ```text
//! acc = 0                                                   (f32)
//! for each block b, in order:
//!     sumi = Σ_e v[e] · aq[e]                               (exact i32; v = LUT[code])
//!     acc  = fma(sumi, wd · ad, acc)                        (wd · ad rounded to f32 first)
//! y = acc
//! ```
//!
//! (`wd` is the block's f16 scale, or MXFP4's E8M0 exponent as half its power of two.)
//!
//! with the activations quantized as ggml's `quantize_row_q8_0` ([`ActQ8Block`]). One output
//! element is one chain of multiply-adds over the blocks, so the AVX2 kernel keeps eight weight
//! rows in the lanes of a vector for those chains, as ggml's do. In prefill with AVX-512 VNNI
//! the lanes are activation rows instead ([`tile_fn_bands`]): the activations transposed into
//! bands of 16 rows once per matmul (as the tiled K-quant kernel's, `tiled_k.rs`), eight weight
//! rows' chains side by side in registers, each block's `sumi` from eight `vpdpbusd` per row;
//! the same chains, so the same bits.

use gguf_importer::quants::{BlockIq4Nl, BlockMxfp4, BlockQ4_0};
use gguf_importer::GgmlType;

use super::nibble_lut::NibbleLut;
use super::quantize_act::ActQ8Block;
use super::{check_tile, Isa, Out, TileFn, MAX_TILE};

/// The scalar kernel (see [`TileFn`]): the definition of the order.
fn tile_scalar<W: NibbleLut>(w: &[u8], row_bytes: usize, xs: &[&[ActQ8Block]], out: Out) {
    check_tile(w, row_bytes, size_of::<W>(), 1, xs, &out);
    rows_scalar::<W>(w, row_bytes, xs, &out, 0);
}

/// The weight rows of `w` (rows of `row_bytes`) against the activation rows `xs`, written as
/// output rows `r0 ..`.
fn rows_scalar<W: NibbleLut>(
    w: &[u8],
    row_bytes: usize,
    xs: &[&[ActQ8Block]],
    out: &Out,
    r0: usize,
) {
    for (r, row) in w.chunks_exact(row_bytes).enumerate() {
        let blocks: &[W] = bytemuck::cast_slice(row);
        let mut acc = [0f32; MAX_TILE];
        for (b, block) in blocks.iter().enumerate() {
            let q = block.values();
            let d = block.scale();
            for (acc, x) in acc.iter_mut().zip(xs) {
                let x = &x[b];
                let sumi: i32 = q
                    .iter()
                    .zip(&x.qs)
                    .map(|(&w, &a)| w as i32 * a as i32)
                    .sum();
                *acc = (sumi as f32).mul_add(d * x.d, *acc);
            }
        }
        for (i, &acc) in acc.iter().take(xs.len()).enumerate() {
            out.set(r0 + r, i, acc);
        }
    }
}

/// The kernel of `ty` (Q4_0, IQ4_NL or MXFP4) on `isa` (call it only if this CPU runs `isa`:
/// `with_kernel` checks it); `None` for other types.
pub(super) fn tile_fn(ty: GgmlType, isa: Isa) -> Option<TileFn<ActQ8Block>> {
    fn pick<W: x86_or_not::Repacked>(isa: Isa) -> TileFn<ActQ8Block> {
        #[cfg(target_arch = "x86_64")]
        match isa {
            Isa::Avx2 => return x86::tile_avx2::<W>,
            Isa::Avx512Vnni => return x86::tile_vnni::<W>,
            _ => {}
        }
        let _ = isa;
        tile_scalar::<W>
    }
    Some(match ty {
        GgmlType::Q4_0 => pick::<BlockQ4_0>(isa),
        GgmlType::IQ4_NL => pick::<BlockIq4Nl>(isa),
        GgmlType::MXFP4 => pick::<BlockMxfp4>(isa),
        _ => return None,
    })
}

/// Whether [`qmatmul_with_isa`](super::qmatmul_with_isa) takes the AVX-512 VNNI kernel that
/// reads its `m` activation rows in bands of 16 ([`tile_fn_bands`]) rather than a
/// [`tile_fn`] kernel: prefill (8 rows or more) on a CPU with AVX-512 VNNI.
pub(super) fn takes_bands(isa: Isa, m: usize) -> bool {
    isa == Isa::Avx512Vnni && m >= 8 && cfg!(target_arch = "x86_64")
}

/// The AVX-512 VNNI kernel of `ty` (Q4_0, IQ4_NL or MXFP4) on all activation rows at once in
/// bands of 16 (the same order and bits as [`tile_fn`]'s); `None` for other types. Call only on
/// a CPU with AVX2, FMA, F16C and AVX-512 F, BW, VL and VNNI.
#[cfg(target_arch = "x86_64")]
pub(super) fn tile_fn_bands(ty: GgmlType) -> Option<TileFn<x86::Band32>> {
    Some(match ty {
        GgmlType::Q4_0 => x86::tile_bands::<BlockQ4_0>,
        GgmlType::IQ4_NL => x86::tile_bands::<BlockIq4Nl>,
        GgmlType::MXFP4 => x86::tile_bands::<BlockMxfp4>,
        _ => return None,
    })
}

/// What the SIMD kernels need of a format beyond [`NibbleLut`] (nothing off x86).
mod x86_or_not {
    #[cfg(target_arch = "x86_64")]
    pub(super) use super::x86::Repacked;
    #[cfg(not(target_arch = "x86_64"))]
    pub(super) trait Repacked: super::NibbleLut {}
    #[cfg(not(target_arch = "x86_64"))]
    impl<W: super::NibbleLut> Repacked for W {}
}

/// The AVX2 kernel. Eight weight rows at a time, in two passes: the first walks each row in
/// memory order (one stream at a time; eight rows side by side ran at a third of the memory
/// bandwidth) and leaves every block's exact integer dot product and scale in small buffers laid
/// out block-major, eight rows per block; the second runs the multiply-add chains of the eight
/// rows in the lanes of one vector per activation row, block by block, in ggml's order. The
/// rows past the last whole eight of a call take the scalar kernel (the same order, the same
/// bits).
///
/// # Safety
/// The `unsafe fn`s run only inside `tile_avx2`, which `tile_fn` hands out for `Isa::Avx2` and
/// `Isa::Avx512Vnni` (both include AVX2, FMA and F16C) after `with_kernel` checked that this CPU
/// runs the set. Memory: `check_tile` asserts the shapes on entry (whole rows of whole 18-byte
/// blocks, each activation row one `ActQ8Block` per weight block); the loads read a block's
/// 16-byte `qs` or an activation block's 32-byte `qs` through references to them, or 8 lanes of
/// the buffers at offsets that `rows8` sizes them for.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use gguf_importer::quants::{e8m0_to_f32_half, BlockIq4Nl, BlockMxfp4, BlockQ4_0, F16};

    use super::super::nibble_lut::NibbleLut;
    use super::super::quantize_act::ActQ8Block;
    use super::super::tiled_k::x86::{bands_of, fill_codes, write_bands, BandFill};
    use super::super::x86_util::{f16c, hsum_epi32, transpose8};
    use super::super::{check_tile, check_tile_of, Out};

    /// What the SIMD kernels need of a format.
    pub(in super::super) trait Repacked: NibbleLut {
        /// Whether the kernels dot the table's signed values (else Q4_0's unsigned codes, the
        /// `-8` taken off through the activations' sums).
        const SIGNED: bool;
        /// The scale of each of eight blocks.
        ///
        /// # Safety
        /// The CPU must have AVX2 and F16C.
        unsafe fn scales8(blocks: &[Self]) -> __m256;
        /// One block's scale.
        ///
        /// # Safety
        /// As [`Repacked::scales8`].
        unsafe fn scale1(&self) -> f32;
    }

    /// Eight f16 scales at once.
    #[inline(always)]
    unsafe fn f16x8(h: [F16; 8]) -> __m256 {
        let h: [u16; 8] = h.map(|h| u16::from_le_bytes(h.0));
        // SAFETY: `h` is 16 bytes.
        _mm256_cvtph_ps(_mm_loadu_si128(h.as_ptr() as *const __m128i))
    }

    impl Repacked for BlockQ4_0 {
        const SIGNED: bool = false;
        #[inline(always)]
        unsafe fn scales8(blocks: &[Self]) -> __m256 {
            f16x8(std::array::from_fn(|k| blocks[k].d))
        }
        #[inline(always)]
        unsafe fn scale1(&self) -> f32 {
            f16c(self.d)
        }
    }

    impl Repacked for BlockIq4Nl {
        const SIGNED: bool = true;
        #[inline(always)]
        unsafe fn scales8(blocks: &[Self]) -> __m256 {
            f16x8(std::array::from_fn(|k| blocks[k].d))
        }
        #[inline(always)]
        unsafe fn scale1(&self) -> f32 {
            f16c(self.d)
        }
    }

    impl Repacked for BlockMxfp4 {
        const SIGNED: bool = true;
        #[inline(always)]
        unsafe fn scales8(blocks: &[Self]) -> __m256 {
            let d: [f32; 8] = std::array::from_fn(|k| e8m0_to_f32_half(blocks[k].e));
            // SAFETY: `d` is 8 floats.
            _mm256_loadu_ps(d.as_ptr())
        }
        #[inline(always)]
        unsafe fn scale1(&self) -> f32 {
            e8m0_to_f32_half(self.e)
        }
    }

    /// The 32 codes of a block as bytes in element order: Q4_0's stored nibbles (0..16, before
    /// its -8), the others' table values (signed).
    #[inline(always)]
    unsafe fn codes<W: Repacked>(b: &W) -> __m256i {
        // SAFETY: the codes are 16 bytes; `loadu`: any alignment.
        let raw = _mm_loadu_si128(b.codes().as_ptr() as *const __m128i);
        let m = _mm_set1_epi8(0x0f);
        let lo = _mm_and_si128(raw, m);
        let hi = _mm_and_si128(_mm_srli_epi16(raw, 4), m);
        let q = _mm256_set_m128i(hi, lo);
        if !W::SIGNED {
            return q;
        }
        // SAFETY: the table is 16 bytes.
        let lut = _mm_loadu_si128(W::LUT.as_ptr() as *const __m128i);
        _mm256_shuffle_epi8(_mm256_set_m128i(lut, lut), q)
    }

    /// Lane `k` = the sum of the eight i32 lanes of `v[k]`.
    #[inline(always)]
    unsafe fn sum8(v: &[__m256i; 8]) -> __m256i {
        let s01 = _mm256_hadd_epi32(v[0], v[1]);
        let s23 = _mm256_hadd_epi32(v[2], v[3]);
        let s45 = _mm256_hadd_epi32(v[4], v[5]);
        let s67 = _mm256_hadd_epi32(v[6], v[7]);
        let s0123 = _mm256_hadd_epi32(s01, s23); // [0 1 2 3 | 0 1 2 3], halves of each sum
        let s4567 = _mm256_hadd_epi32(s45, s67);
        _mm256_add_epi32(
            _mm256_permute2x128_si256(s0123, s4567, 0x20),
            _mm256_permute2x128_si256(s0123, s4567, 0x31),
        )
    }

    /// `Σ_e q[e] · x[e]` of the codes ([`codes`]) and signed activations, as 8 i32 partial sums
    /// (`VNNI`: one `vpdpbusd`, which needs AVX-512 VNNI and VL; else `vpmaddubsw` +
    /// `vpmaddwd`). Signed codes go in as `|q|` against `x` with `q`'s sign (|q| ≤ 127, and
    /// the activations are -127..=127: no product saturates).
    #[inline(always)]
    unsafe fn dot_parts<const VNNI: bool>(q: __m256i, x: &ActQ8Block, signed: bool) -> __m256i {
        // SAFETY: `qs` is 32 bytes.
        let mut xv = _mm256_loadu_si256(x.qs.as_ptr() as *const __m256i);
        let mut q = q;
        if signed {
            xv = _mm256_sign_epi8(xv, q);
            q = _mm256_sign_epi8(q, q);
        }
        if VNNI {
            return _mm256_dpbusd_epi32(_mm256_setzero_si256(), q, xv);
        }
        // u8 · i8 pairs (|127 · 127 · 2| fits i16), then pairs of i16 to i32.
        _mm256_madd_epi16(_mm256_maddubs_epi16(q, xv), _mm256_set1_epi16(1))
    }

    /// Scratch of [`rows8`], reused across the groups of a call; row-major, so that pass 1
    /// stores whole vectors.
    struct Scratch {
        /// `[xs][8][nb]`: block `b`'s `Σ v·x` of row `r` against activation row `i`.
        sumi: Vec<i32>,
        /// `[8][nb]`: block `b`'s scale of row `r`.
        d: Vec<f32>,
    }

    /// Eight consecutive weight rows (`rows[r]`, `nb` blocks each) against the tile's activation
    /// rows, written as output rows `r0 .. r0 + 8`. `xsum[i · nb + b]` is the integer sum of
    /// activation block `b` of row `i`.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; every activation row has `nb` blocks, `xsum`
    /// `xs.len() · nb` sums, `scratch` is sized for `xs.len()` rows of `nb` blocks.
    #[inline(always)]
    unsafe fn rows8<W: Repacked, const VNNI: bool>(
        rows: [&[W]; 8],
        xs: &[&[ActQ8Block]],
        xsum: &[i32],
        scratch: &mut Scratch,
        out: &Out,
        r0: usize,
    ) {
        let nb = rows[0].len();
        let whole = nb - nb % 8;
        debug_assert!(scratch.sumi.len() == xs.len() * 8 * nb && scratch.d.len() == 8 * nb);
        let (sumi, dbuf) = (scratch.sumi.as_mut_ptr(), scratch.d.as_mut_ptr());
        // Pass 1: each row in memory order.
        for (r, row) in rows.iter().enumerate() {
            let mut b0 = 0;
            while b0 < whole {
                // The eight blocks' scales, converted together.
                // SAFETY: r · nb + b0 + 8 ≤ 8 · nb = d.len(); b0 + 8 ≤ nb = row.len().
                _mm256_storeu_ps(dbuf.add(r * nb + b0), W::scales8(&row[b0..b0 + 8]));
                let q: [__m256i; 8] = std::array::from_fn(|k| codes(&row[b0 + k]));
                for (i, x) in xs.iter().enumerate() {
                    let v: [__m256i; 8] =
                        std::array::from_fn(|k| dot_parts::<VNNI>(q[k], &x[b0 + k], W::SIGNED));
                    // Lane k is block b0 + k. Q4_0: Σ (q - 8)·x = Σ q·x - 8·Σ x, exact.
                    let mut s = sum8(&v);
                    if !W::SIGNED {
                        // SAFETY: b0 + 8 ≤ nb, so xsum[i · nb + b0 ..][..8] is in xsum.
                        let xs8 =
                            _mm256_loadu_si256(xsum.as_ptr().add(i * nb + b0) as *const __m256i);
                        s = _mm256_sub_epi32(s, _mm256_slli_epi32(xs8, 3));
                    }
                    // SAFETY: sumi[(i · 8 + r) · nb + b0 ..][..8] is in sumi.
                    _mm256_storeu_si256(sumi.add((i * 8 + r) * nb + b0) as *mut __m256i, s);
                }
                b0 += 8;
            }
            for b in whole..nb {
                // SAFETY: r · nb + b < 8 · nb; (i · 8 + r) · nb + b < xs.len() · 8 · nb.
                *dbuf.add(r * nb + b) = row[b].scale1();
                let q = codes(&row[b]);
                for (i, x) in xs.iter().enumerate() {
                    let offset = if W::SIGNED { 0 } else { 8 * xsum[i * nb + b] };
                    *sumi.add((i * 8 + r) * nb + b) =
                        hsum_epi32(dot_parts::<VNNI>(q, &x[b], W::SIGNED)) - offset;
                }
            }
        }
        // Pass 2: the eight rows' chains side by side (lane r), block by block, eight blocks
        // transposed at a time.
        let dbuf = dbuf as *const f32;
        let sumi = sumi as *const i32;
        for (i, x) in xs.iter().enumerate() {
            let mut acc = _mm256_setzero_ps();
            let mut b0 = 0;
            while b0 < whole {
                // SAFETY: r · nb + b0 + 8 ≤ 8 · nb and (i · 8 + r) · nb + b0 + 8 ≤
                // xs.len() · 8 · nb for r < 8.
                let dt = transpose8(std::array::from_fn(|r| {
                    _mm256_loadu_ps(dbuf.add(r * nb + b0))
                }));
                let st = transpose8(std::array::from_fn(|r| {
                    _mm256_castsi256_ps(_mm256_loadu_si256(
                        sumi.add((i * 8 + r) * nb + b0) as *const __m256i
                    ))
                }));
                for k in 0..8 {
                    let scale = _mm256_mul_ps(dt[k], _mm256_set1_ps(x[b0 + k].d));
                    let s = _mm256_cvtepi32_ps(_mm256_castps_si256(st[k]));
                    acc = _mm256_fmadd_ps(s, scale, acc);
                }
                b0 += 8;
            }
            for b in whole..nb {
                // SAFETY: as in pass 1's tail.
                let dw: [f32; 8] = std::array::from_fn(|r| *dbuf.add(r * nb + b));
                let si: [i32; 8] = std::array::from_fn(|r| *sumi.add((i * 8 + r) * nb + b));
                let scale = _mm256_mul_ps(_mm256_loadu_ps(dw.as_ptr()), _mm256_set1_ps(x[b].d));
                let s = _mm256_cvtepi32_ps(_mm256_loadu_si256(si.as_ptr() as *const __m256i));
                acc = _mm256_fmadd_ps(s, scale, acc);
            }
            let mut y = [0f32; 8];
            _mm256_storeu_ps(y.as_mut_ptr(), acc);
            for (r, &y) in y.iter().enumerate() {
                out.set(r0 + r, i, y);
            }
        }
    }

    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; `w` whole rows of `row_bytes` (whole blocks), every
    /// activation row as long as a weight row has blocks (the caller's `check_tile`).
    #[inline(always)]
    unsafe fn tile_body<W: Repacked, const VNNI: bool>(
        w: &[u8],
        row_bytes: usize,
        xs: &[&[ActQ8Block]],
        out: &Out,
    ) {
        let nb = row_bytes / size_of::<W>();
        // The integer sum of every activation block, once per call.
        let xsum: Vec<i32> = xs
            .iter()
            .flat_map(|x| {
                x.iter()
                    .map(|b| b.qs.iter().map(|&q| q as i32).sum::<i32>())
            })
            .collect();
        let mut scratch = Scratch {
            sumi: vec![0; xs.len() * nb * 8],
            d: vec![0.0; nb * 8],
        };
        let mut groups = w.chunks_exact(8 * row_bytes);
        for (g, group) in (&mut groups).enumerate() {
            let rows: [&[W]; 8] =
                std::array::from_fn(|r| bytemuck::cast_slice(&group[r * row_bytes..][..row_bytes]));
            rows8::<W, VNNI>(rows, xs, &xsum, &mut scratch, out, 8 * g);
        }
        let rest = groups.remainder();
        if !rest.is_empty() {
            let r0 = (w.len() - rest.len()) / row_bytes;
            super::rows_scalar::<W>(rest, row_bytes, xs, out, r0);
        }
    }

    /// # Safety
    /// As `tile_body`.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile_avx2_tf<W: Repacked>(
        w: &[u8],
        row_bytes: usize,
        xs: &[&[ActQ8Block]],
        out: &Out,
    ) {
        tile_body::<W, false>(w, row_bytes, xs, out)
    }

    /// # Safety
    /// As `tile_body`, and the CPU must have AVX-512 VNNI and VL.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn tile_vnni_tf<W: Repacked>(
        w: &[u8],
        row_bytes: usize,
        xs: &[&[ActQ8Block]],
        out: &Out,
    ) {
        tile_body::<W, true>(w, row_bytes, xs, out)
    }

    /// One block of 32 of up to 16 activation rows (`block_q8_0`), transposed as
    /// `tiled_k.rs`' bands are: `codes[kg][j]` elements `4kg .. 4kg + 4` of row `j` offset by
    /// 128 (unsigned bytes), `d[j]` its scale (zero past the band's rows).
    #[repr(C, align(64))]
    #[derive(Clone)]
    pub(in super::super) struct Band32 {
        codes: [[u32; 16]; 8],
        d: [f32; 16],
    }

    impl BandFill for Band32 {
        type Act = ActQ8Block;
        const ZERO: Band32 = Band32 {
            codes: [[0; 16]; 8],
            d: [0.0; 16],
        };

        fn fill(&mut self, xs: &[&[ActQ8Block]], b: usize) {
            for (j, x) in xs.iter().enumerate() {
                let x = &x[b];
                fill_codes(&mut self.codes, &x.qs, j);
                self.d[j] = x.d;
            }
        }
    }

    /// A weight block unpacked for [`band_step`]: its 32 signed values four at a time, its
    /// scale, and `corr = 128 · Σ v`, what the activations' offset adds to the integer sum.
    #[derive(Clone, Copy)]
    struct Unpacked {
        v: [u32; 8],
        d: f32,
        corr: i32,
    }

    /// Unpacks `b`.
    ///
    /// # Safety
    /// The CPU must have AVX2 and F16C.
    #[inline(always)]
    unsafe fn unpack<W: Repacked>(b: &W) -> Unpacked {
        // SAFETY: the codes and the table are 16 bytes each.
        let raw = _mm_loadu_si128(b.codes().as_ptr() as *const __m128i);
        let m = _mm_set1_epi8(0x0f);
        let q = _mm256_set_m128i(
            _mm_and_si128(_mm_srli_epi16(raw, 4), m),
            _mm_and_si128(raw, m),
        );
        let lut = _mm_loadu_si128(W::LUT.as_ptr() as *const __m128i);
        let v = _mm256_shuffle_epi8(_mm256_set_m128i(lut, lut), q);
        let sum = _mm256_madd_epi16(
            _mm256_maddubs_epi16(_mm256_set1_epi8(1), v),
            _mm256_set1_epi16(1),
        );
        let mut out = Unpacked {
            v: [0; 8],
            d: b.scale1(),
            corr: 128 * hsum_epi32(sum),
        };
        // SAFETY: 32 bytes.
        _mm256_storeu_si256(out.v.as_mut_ptr() as *mut __m256i, v);
        out
    }

    /// One block of `R` weight rows (`w[t]`) against the band's 16 rows: each row's chain
    /// `acc = fma(sumi, wd · ad, acc)` lane-wise (the module's order), the exact `sumi` from
    /// `vpdpbusd` with each weight's four values broadcast.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F, BW and VNNI.
    #[inline(always)]
    unsafe fn band_step<const R: usize>(band: &Band32, w: &[Unpacked; R], acc: &mut [__m512; R]) {
        // SAFETY (loads): `Band32` is align(64), each row of it 64 bytes at a multiple of 64.
        let mut raw = [_mm512_setzero_si512(); R];
        for kg in 0..8 {
            let codes = _mm512_load_si512(band.codes[kg].as_ptr() as *const __m512i);
            for t in 0..R {
                raw[t] = _mm512_dpbusd_epi32(raw[t], codes, _mm512_set1_epi32(w[t].v[kg] as i32));
            }
        }
        let ad = _mm512_load_ps(band.d.as_ptr());
        for t in 0..R {
            let sumi = _mm512_sub_epi32(raw[t], _mm512_set1_epi32(w[t].corr));
            let scale = _mm512_mul_ps(_mm512_set1_ps(w[t].d), ad);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), scale, acc[t]);
        }
    }

    /// `R` weight rows (`rows`, `nb` blocks each) against every band, into `acc` (row `t`'s
    /// band `k` at `t · n_bands + k`).
    ///
    /// # Safety
    /// The CPU must have AVX2, F16C and AVX-512 F, BW and VNNI; every band has `nb` blocks.
    #[inline(always)]
    unsafe fn rows_bands<W: Repacked, const R: usize>(
        rows: [&[W]; R],
        bands: &[&[Band32]],
        unpacked: &mut Vec<[Unpacked; R]>,
        acc: &mut [[f32; 16]],
    ) {
        let nb = rows[0].len();
        // (loops, not closures: a closure does not inherit the caller's target features, and
        // the intrinsics would become calls)
        let zero = Unpacked {
            v: [0; 8],
            d: 0.0,
            corr: 0,
        };
        unpacked.clear();
        unpacked.resize(nb, [zero; R]);
        for (b, u) in unpacked.iter_mut().enumerate() {
            for t in 0..R {
                u[t] = unpack(&rows[t][b]);
            }
        }
        for (k, band) in bands.iter().enumerate() {
            let mut a = [_mm512_setzero_ps(); R];
            for (band, w) in band.iter().zip(unpacked.iter()) {
                band_step::<R>(band, w, &mut a);
            }
            for (t, a) in a.iter().enumerate() {
                _mm512_storeu_ps(acc[t * bands.len() + k].as_mut_ptr(), *a);
            }
        }
    }

    /// # Safety
    /// As [`rows_bands`]; the shapes were checked by the caller (`check_tile_of`).
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn tile_bands_tf<W: Repacked>(w: &[u8], row_bytes: usize, xs: &[&[Band32]], out: &Out) {
        let bands = bands_of(xs);
        let n_bands = bands.len();
        let n_rows = w.len() / row_bytes;
        let row = |r: usize| -> &[W] { bytemuck::cast_slice(&w[r * row_bytes..][..row_bytes]) };
        let mut acc = vec![[0f32; 16]; n_rows * n_bands];
        let mut unpacked8 = Vec::new();
        let mut unpacked1 = Vec::new();
        let eights = n_rows / 8 * 8;
        for (g, acc) in acc[..eights * n_bands]
            .chunks_exact_mut(8 * n_bands)
            .enumerate()
        {
            let rows = std::array::from_fn(|t| row(8 * g + t));
            rows_bands::<W, 8>(rows, &bands, &mut unpacked8, acc);
        }
        for r in eights..n_rows {
            let acc = &mut acc[r * n_bands..][..n_bands];
            rows_bands::<W, 1>([row(r)], &bands, &mut unpacked1, acc);
        }
        write_bands(&acc, n_bands, xs.len(), out);
    }

    /// The AVX-512 VNNI kernel on all activation rows at once in bands of 16 (see
    /// [`super::tile_fn_bands`]).
    pub(in super::super) fn tile_bands<W: Repacked>(
        w: &[u8],
        row_bytes: usize,
        xs: &[&[Band32]],
        out: Out,
    ) {
        check_tile_of(w, row_bytes, size_of::<W>(), 1, xs, &out, usize::MAX);
        // SAFETY: the shapes were asserted just above; `tile_fn_bands` hands this kernel out
        // only for `Isa::Avx512Vnni`, which `with_kernel` checked this CPU runs.
        unsafe { tile_bands_tf::<W>(w, row_bytes, xs, &out) }
    }

    pub(super) fn tile_avx2<W: Repacked>(
        w: &[u8],
        row_bytes: usize,
        xs: &[&[ActQ8Block]],
        out: Out,
    ) {
        check_tile(w, row_bytes, size_of::<W>(), 1, xs, &out);
        // SAFETY: the shapes were asserted just above; `tile_fn` hands this kernel out only for
        // instruction sets that include AVX2, FMA and F16C, which `with_kernel` checked this CPU
        // runs.
        unsafe { tile_avx2_tf::<W>(w, row_bytes, xs, &out) }
    }

    pub(super) fn tile_vnni<W: Repacked>(
        w: &[u8],
        row_bytes: usize,
        xs: &[&[ActQ8Block]],
        out: Out,
    ) {
        check_tile(w, row_bytes, size_of::<W>(), 1, xs, &out);
        // SAFETY: the shapes were asserted just above; `tile_fn` hands this kernel out only for
        // `Isa::Avx512Vnni` (AVX2, FMA, F16C, AVX-512 F/BW/VL/VNNI), which `with_kernel` checked
        // this CPU runs.
        unsafe { tile_vnni_tf::<W>(w, row_bytes, xs, &out) }
    }
}
