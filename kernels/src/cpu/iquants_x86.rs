//! The AVX2 kernels of the super-block i-quants and the ternary formats (`iquants.rs` is the
//! definition of their float orders; these give the same bits). A super-block is decoded once
//! per tile into eight 32-byte registers of signed values (`v`, and IQ1's delta signs) and its
//! scales, then meets every activation row of the tile in `madd(maddubs(|v|, sign(qa, v)),
//! scales)`, which leaves exactly ggml's integer lanes (lane `l` of chunk `c`: elements
//! `32c + 4l .. 32c + 4l + 4`; `|v| ≤ 127` and `|qa| ≤ 127`, so no pair saturates the i16 sums).
//! The float steps are the scalar kernels', lane by lane.
//!
//! IQ4_XS and IQ3_S decode with SIMD (a table shuffle; grid rows with sign masks); the other
//! formats decode with the portable code ([`IQuant::decode`]) and share the SIMD dot products.
//!
//! # Safety
//! Every `unsafe fn` needs AVX2, FMA and F16C (`tile_fn` hands the kernels out only for
//! `Isa::Avx2` and `Isa::Avx512Vnni`, after `with_kernel` checked that this CPU runs the set).
//! Memory: `check_tile` asserts the shapes on entry; loads read 32 bytes of a `[i8; 256]` or 16
//! of a block's fields through slices of the right length.

use std::arch::x86_64::*;

use gguf_importer::quants::iquant_tables::{IQ3S_GRID, KVALUES_IQ4NL};
use gguf_importer::quants::{
    BlockIq1M, BlockIq1S, BlockIq2S, BlockIq2Xs, BlockIq2Xxs, BlockIq3S, BlockIq3Xxs, BlockIq4Xs,
    BlockTq1_0, BlockTq2_0,
};
use gguf_importer::GgmlType;

use super::iquants::{uses_seq, Decoded, Epilogue, IQuant};
use super::legacy::hsum8;
use super::quantize_act::ActQ8KSeq;
use super::{check_tile, Out, TileFn, MAX_TILE};

/// A super-block decoded into registers.
struct Chunks {
    /// The signed values of chunk `c` (elements `32c .. 32c + 32`).
    v: [__m256i; 8],
    /// IQ1: the delta signs (+1/-1) of chunk `c`'s elements; unused otherwise.
    delta: [__m256i; 8],
    /// The scales of chunk `c` as 16 i16 (the first 8 for its first 16 elements).
    sc: [__m256i; 8],
}

/// A format's SIMD decoding (by default the portable decoding, loaded into registers).
trait IqSimd: IQuant {
    /// Decodes the super-block: the registers, and `dec`'s scales and `d` (its `v` and `delta`
    /// only where the default decoding fills them).
    #[inline(always)]
    unsafe fn chunks(&self, dec: &mut Decoded, out: &mut Chunks) {
        self.decode(dec);
        for c in 0..8 {
            out.v[c] = load32(&dec.v[32 * c..32 * c + 32]);
        }
        if matches!(Self::EPILOGUE, Epilogue::Iq1S | Epilogue::Iq1M) {
            for c in 0..8 {
                let d: [i8; 32] = std::array::from_fn(|e| dec.delta[4 * c + e / 8]);
                out.delta[c] = load32(&d);
            }
        }
        scales(dec, out);
    }
}

/// 32 bytes as a register.
#[inline(always)]
unsafe fn load32(b: &[i8]) -> __m256i {
    assert!(b.len() >= 32);
    // SAFETY: 32 bytes, checked above; `loadu`: any alignment.
    _mm256_loadu_si256(b.as_ptr() as *const __m256i)
}

/// `out.sc` from `dec.sc`.
#[inline(always)]
unsafe fn scales(dec: &Decoded, out: &mut Chunks) {
    for c in 0..8 {
        out.sc[c] = _mm256_set_m128i(
            _mm_set1_epi16(dec.sc[2 * c + 1]),
            _mm_set1_epi16(dec.sc[2 * c]),
        );
    }
}

impl IqSimd for BlockIq2Xxs {}
impl IqSimd for BlockIq2Xs {}
impl IqSimd for BlockIq2S {}
impl IqSimd for BlockIq3Xxs {}
impl IqSimd for BlockIq1S {}
impl IqSimd for BlockIq1M {}
impl IqSimd for BlockTq1_0 {}
impl IqSimd for BlockTq2_0 {}

impl IqSimd for BlockIq4Xs {
    /// The nibbles through `kvalues_iq4nl` with one byte shuffle per 32.
    #[inline(always)]
    unsafe fn chunks(&self, dec: &mut Decoded, out: &mut Chunks) {
        dec.d = self.d.to_f32();
        let scales_h = u16::from_le_bytes(self.scales_h);
        // SAFETY: the table is 16 bytes.
        let lut = _mm_loadu_si128(KVALUES_IQ4NL.as_ptr() as *const __m128i);
        let lut = _mm256_set_m128i(lut, lut);
        let m4 = _mm_set1_epi8(0x0f);
        for ib in 0..8 {
            let low = (self.scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0F;
            let high = ((scales_h >> (2 * ib)) & 3) as u8;
            let ls = (low | high << 4) as i16 - 32;
            dec.sc[2 * ib] = ls;
            dec.sc[2 * ib + 1] = ls;
            let q = &self.qs[16 * ib..16 * ib + 16];
            // SAFETY: 16 bytes.
            let raw = _mm_loadu_si128(q.as_ptr() as *const __m128i);
            let codes = _mm256_set_m128i(
                _mm_and_si128(_mm_srli_epi16(raw, 4), m4),
                _mm_and_si128(raw, m4),
            );
            out.v[ib] = _mm256_shuffle_epi8(lut, codes);
        }
        scales(dec, out);
    }
}

/// The sign bits of 32 elements (bit `e` of the little-endian `bits`) as byte masks (0xFF where
/// set), ggml's shuffle-and-compare.
#[inline(always)]
unsafe fn sign_masks(bits: u32) -> __m256i {
    let spread = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3,
        3, 3,
    );
    let bit = _mm256_setr_epi8(
        1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128,
        1, 2, 4, 8, 16, 32, 64, -128,
    );
    let b = _mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), spread);
    _mm256_cmpeq_epi8(_mm256_and_si256(b, bit), bit)
}

impl IqSimd for BlockIq3S {
    /// Eight 4-byte grid rows per 32, negated where the sign bits say.
    #[inline(always)]
    unsafe fn chunks(&self, dec: &mut Decoded, out: &mut Chunks) {
        dec.d = self.d.to_f32();
        for ib in 0..8 {
            let ls = (self.scales[ib / 2] >> (4 * (ib % 2))) & 0x0F;
            dec.sc[2 * ib] = (2 * ls + 1) as i16;
            dec.sc[2 * ib + 1] = (2 * ls + 1) as i16;
            let q = &self.qs[8 * ib..8 * ib + 8];
            let qh = self.qh[ib] as usize;
            let g = |k: usize| IQ3S_GRID[q[k] as usize | (qh >> k & 1) << 8] as i32;
            let grid = _mm256_setr_epi32(g(0), g(1), g(2), g(3), g(4), g(5), g(6), g(7));
            let s = &self.signs[4 * ib..4 * ib + 4];
            let mask = sign_masks(u32::from_le_bytes([s[0], s[1], s[2], s[3]]));
            out.v[ib] = _mm256_sub_epi8(_mm256_xor_si256(grid, mask), mask);
        }
        scales(dec, out);
    }
}

/// The eight i32 lanes `Σ_c madd(maddubs(|v_c|, sign(qa_c, v_c)), sc_c)`.
#[inline(always)]
unsafe fn lanes(v: &[__m256i; 8], sc: &[__m256i; 8], x: &ActQ8KSeq) -> __m256i {
    let mut acc = _mm256_setzero_si256();
    for c in 0..8 {
        let a = load32(&x.qs[32 * c..32 * c + 32]);
        let p = _mm256_maddubs_epi16(_mm256_sign_epi8(v[c], v[c]), _mm256_sign_epi8(a, v[c]));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, sc[c]));
    }
    acc
}

/// The bsums of elements `32l .. 32l + 32` in lane `l` (the ternary formats' offset).
#[inline(always)]
unsafe fn bsum_pairs(x: &ActQ8KSeq) -> __m256i {
    // SAFETY: `bsums` is 16 i16 = 32 bytes.
    let b = _mm256_loadu_si256(x.bsums.as_ptr() as *const __m256i);
    _mm256_madd_epi16(b, _mm256_set1_epi16(1))
}

/// The sum of the eight i32 lanes.
#[inline(always)]
unsafe fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    _mm_cvtsi128_si32(s)
}

fn new_chunks() -> Chunks {
    // SAFETY: all-zero is a valid __m256i.
    unsafe { std::mem::zeroed() }
}

/// `vec_dot`'s order (`iquants.rs`' `tile_seq_scalar`), lanes in registers.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_seq_tf<W: IqSimd>(w: &[u8], row_bytes: usize, xs: &[&[ActQ8KSeq]], out: &Out) {
    let mut dec = Decoded::new();
    let mut ch = new_chunks();
    for (r, row) in w.chunks_exact(row_bytes).enumerate() {
        let blocks: &[W] = bytemuck::cast_slice(row);
        let mut acc = [_mm256_setzero_ps(); MAX_TILE];
        let mut acc2 = [_mm256_setzero_ps(); MAX_TILE];
        let mut acc1 = [0f32; MAX_TILE];
        for (b, block) in blocks.iter().enumerate() {
            block.chunks(&mut dec, &mut ch);
            for (i, x) in xs.iter().enumerate() {
                let x = &x[b];
                let dd = dec.d * x.d;
                let mut l = lanes(&ch.v, &ch.sc, x);
                if W::EPILOGUE == Epilogue::Ternary {
                    l = _mm256_sub_epi32(l, bsum_pairs(x));
                }
                let ddv = _mm256_set1_ps(dd);
                acc[i] = _mm256_fmadd_ps(ddv, _mm256_cvtepi32_ps(l), acc[i]);
                match W::EPILOGUE {
                    Epilogue::Iq1S => {
                        // Σ_e sc·δ·qa over the super-block: IQ1_S's scalar delta sum, exactly
                        let s1 = hsum_i32(lanes(&ch.delta, &ch.sc, x));
                        acc1[i] = dd.mul_add(s1 as f32, acc1[i]);
                    }
                    Epilogue::Iq1M => {
                        let l2 = lanes(&ch.delta, &ch.sc, x);
                        acc2[i] = _mm256_fmadd_ps(ddv, _mm256_cvtepi32_ps(l2), acc2[i]);
                    }
                    _ => {}
                }
            }
        }
        for i in 0..xs.len() {
            let mut a = [0f32; 8];
            let mut a2 = [0f32; 8];
            // SAFETY: 8 floats each.
            _mm256_storeu_ps(a.as_mut_ptr(), acc[i]);
            _mm256_storeu_ps(a2.as_mut_ptr(), acc2[i]);
            const DELTA: f32 = 0.125;
            let y = match W::EPILOGUE {
                Epilogue::Lanes => W::VEC_DOT_FACTOR * hsum8(&a),
                Epilogue::Iq1S => hsum8(&a) + DELTA * acc1[i],
                Epilogue::Iq1M => DELTA.mul_add(hsum8(&a2), hsum8(&a)),
                Epilogue::Ternary => hsum8(&a),
            };
            out.set(r, i, y);
        }
    }
}

/// The tiled matmul's order (`iquants.rs`' `tile_tiled_scalar`).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_tiled_tf<W: IqSimd>(w: &[u8], row_bytes: usize, xs: &[&[ActQ8KSeq]], out: &Out) {
    let factor = W::TILED_FACTOR.expect("a format the tiled matmul takes");
    let iq1 = matches!(W::EPILOGUE, Epilogue::Iq1S | Epilogue::Iq1M);
    let mut dec = Decoded::new();
    let mut ch = new_chunks();
    for (r, row) in w.chunks_exact(row_bytes).enumerate() {
        let blocks: &[W] = bytemuck::cast_slice(row);
        let mut acc = [0f32; MAX_TILE];
        for (b, block) in blocks.iter().enumerate() {
            block.chunks(&mut dec, &mut ch);
            let d = dec.d * factor;
            for (acc, x) in acc.iter_mut().zip(xs) {
                let x = &x[b];
                let mut s = hsum_i32(lanes(&ch.v, &ch.sc, x));
                if iq1 {
                    // Σ sc·(8v + δ)·qa, exactly
                    s = 8 * s + hsum_i32(lanes(&ch.delta, &ch.sc, x));
                }
                *acc = (s as f32 * d).mul_add(x.d, *acc);
            }
        }
        for (i, acc) in acc.iter().take(xs.len()).enumerate() {
            out.set(r, i, *acc);
        }
    }
}

fn tile_seq<W: IqSimd>(w: &[u8], row_bytes: usize, xs: &[&[ActQ8KSeq]], out: Out) {
    check_tile(w, row_bytes, size_of::<W>(), 1, xs, &out);
    // SAFETY: the shapes were asserted just above; `tile_fn` hands this kernel out only for
    // instruction sets with AVX2, FMA and F16C, which `with_kernel` checked this CPU runs.
    unsafe { tile_seq_tf::<W>(w, row_bytes, xs, &out) }
}

fn tile_tiled<W: IqSimd>(w: &[u8], row_bytes: usize, xs: &[&[ActQ8KSeq]], out: Out) {
    check_tile(w, row_bytes, size_of::<W>(), 1, xs, &out);
    // SAFETY: as in `tile_seq`.
    unsafe { tile_tiled_tf::<W>(w, row_bytes, xs, &out) }
}

macro_rules! per_format {
    ($ty:expr, $f:ident) => {
        match $ty {
            GgmlType::IQ1_S => $f::<BlockIq1S>,
            GgmlType::IQ1_M => $f::<BlockIq1M>,
            GgmlType::IQ2_XXS => $f::<BlockIq2Xxs>,
            GgmlType::IQ2_XS => $f::<BlockIq2Xs>,
            GgmlType::IQ2_S => $f::<BlockIq2S>,
            GgmlType::IQ3_XXS => $f::<BlockIq3Xxs>,
            GgmlType::IQ3_S => $f::<BlockIq3S>,
            GgmlType::IQ4_XS => $f::<BlockIq4Xs>,
            GgmlType::TQ1_0 => $f::<BlockTq1_0>,
            GgmlType::TQ2_0 => $f::<BlockTq2_0>,
            _ => return None,
        }
    };
}

/// The AVX2 kernel of `ty` for `m` activation rows; `None` for other types. Call only with an
/// instruction set that includes AVX2, FMA and F16C.
pub(super) fn tile_fn(ty: GgmlType, m: usize) -> Option<TileFn<ActQ8KSeq>> {
    Some(if uses_seq(ty, m) {
        per_format!(ty, tile_seq)
    } else {
        per_format!(ty, tile_tiled)
    })
}
