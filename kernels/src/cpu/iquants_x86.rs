//! The AVX2 kernels of the super-block i-quants and the ternary formats (`iquants.rs` is the
//! definition of their float orders; these give the same bits). A super-block is decoded once
//! per tile into eight 32-byte registers of signed values (`v`, and IQ1's delta signs) and its
//! scales, then meets every activation row of the tile in `madd(maddubs(|v|, sign(qa, v)),
//! scales)`, which leaves exactly ggml's integer lanes (lane `l` of chunk `c`: elements
//! `32c + 4l .. 32c + 4l + 4`; `|v| ≤ 127` and `|qa| ≤ 127`, so no pair saturates the i16 sums).
//! The float steps are the scalar kernels', lane by lane.
//!
//! IQ4_XS decodes with a table shuffle, the grid formats (IQ2_*, IQ3_*) as rows of grid bytes
//! with sign masks from tables (`(g ^ m) - m`); IQ1 and the ternary formats decode with the
//! portable code ([`IQuant::decode`]) and share the SIMD dot products.
//!
//! # Safety
//! Every `unsafe fn` needs AVX2, FMA and F16C (`tile_fn` hands the kernels out only for
//! `Isa::Avx2` and `Isa::Avx512Vnni`, after `with_kernel` checked that this CPU runs the set).
//! Memory: `check_tile` asserts the shapes on entry; loads read 32 bytes of a `[i8; 256]` or 16
//! of a block's fields through slices of the right length.

use std::arch::x86_64::*;

use gguf_importer::quants::iquant_tables::{
    IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KSIGNS_IQ2XS, KVALUES_IQ4NL,
};
use gguf_importer::quants::{
    BlockIq1M, BlockIq1S, BlockIq2S, BlockIq2Xs, BlockIq2Xxs, BlockIq3S, BlockIq3Xxs, BlockIq4Xs,
    BlockTq1_0, BlockTq2_0,
};
use gguf_importer::GgmlType;

use super::iquants::{odd, per_format, uses_seq, Decoded, Epilogue, IQuant};
use super::legacy::hsum8;
use super::quantize_act::ActQ8KSeq;
use super::tiled_k::x86::Band;
use super::x86_util::hsum_epi32;
use super::{check_tile, check_tile_of, Isa, Out, TileFn, MAX_TILE};

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

impl IqSimd for BlockIq1S {}
impl IqSimd for BlockIq1M {}
impl IqSimd for BlockTq1_0 {}
impl IqSimd for BlockTq2_0 {}

/// The byte mask of eight sign bits: 0xFF in byte `j` where bit `j` is set.
const fn expand_signs(bits: u8) -> u64 {
    let mut m = 0u64;
    let mut j = 0;
    while j < 8 {
        if (bits >> j) & 1 != 0 {
            m |= 0xFF << (8 * j);
        }
        j += 1;
    }
    m
}

/// [`expand_signs`] of every byte.
static SIGN_MASKS: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = expand_signs(i as u8);
        i += 1;
    }
    t
};

/// [`expand_signs`] of the sign byte of each 7-bit index (`ksigns_iq2xs`: the eighth sign is the
/// parity of the seven).
static SIGN_MASKS_7: [u64; 128] = {
    let mut t = [0u64; 128];
    let mut i = 0;
    while i < 128 {
        t[i] = expand_signs(KSIGNS_IQ2XS[i]);
        i += 1;
    }
    t
};

/// The bytes of `g` negated where `m` is 0xFF (`(g ^ m) - m`; kept where it is 0).
#[inline(always)]
unsafe fn negate_where(g: __m256i, m: __m256i) -> __m256i {
    _mm256_sub_epi8(_mm256_xor_si256(g, m), m)
}

/// Four u64 as a register.
#[inline(always)]
unsafe fn u64x4(v: [u64; 4]) -> __m256i {
    _mm256_setr_epi64x(v[0] as i64, v[1] as i64, v[2] as i64, v[3] as i64)
}

/// A format whose 32-element chunks decode one at a time straight into registers (the streaming
/// `vec_dot` kernel of one activation row, [`tile_seq_stream_tf`], decodes a chunk and dots it
/// before the next).
trait IqChunk: IQuant {
    /// The f16 super-scale as f32.
    fn d32(&self) -> f32;
    /// Whether both groups of 16 of a chunk have the same scale (one scale per 32 elements).
    const SCALE_PER_32: bool;
    /// Whether [`IqChunk::parts`] gives magnitudes and sign masks (the grid formats) rather
    /// than signed values.
    const MASKED: bool;
    /// Chunk `c` (0..8): its 32 values, as magnitudes and a byte mask of the negative ones
    /// (0xFF) with [`IqChunk::MASKED`], else as signed values (the mask unused); and the scales
    /// of its two groups of 16.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    unsafe fn parts(&self, c: usize) -> (__m256i, __m256i, i16, i16);

    /// Chunk `c`'s 32 signed values and scales.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[inline(always)]
    unsafe fn chunk(&self, c: usize) -> (__m256i, i16, i16) {
        let (g, m, s0, s1) = self.parts(c);
        (if Self::MASKED { negate_where(g, m) } else { g }, s0, s1)
    }

    /// Chunk `c` against the activations `a`: the 16 i16 sums of pairs of products
    /// `maddubs(|v|, a·sign(v))`, which the grid formats get with the signs on the activations
    /// (`maddubs(g, (a ^ m) - m)`, as ggml's vec_dot); and the scales.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[inline(always)]
    unsafe fn pairs(&self, c: usize, a: __m256i) -> (__m256i, i16, i16) {
        let (g, m, s0, s1) = self.parts(c);
        let p = if Self::MASKED {
            _mm256_maddubs_epi16(g, negate_where(a, m))
        } else {
            _mm256_maddubs_epi16(_mm256_sign_epi8(g, g), _mm256_sign_epi8(a, g))
        };
        (p, s0, s1)
    }

    /// Chunks `c` and `c + 1` (`c` even) for AVX-512: their 64 magnitudes `|v|` (chunk `c` in
    /// the low half), the mask of the elements whose value is negative (the activations'
    /// signs flip there, as `sign(qa, v)` or `(a ^ m) - m` flip them), and the 32 i16 scales
    /// of their four groups of 16. By default two [`IqChunk::parts`] joined.
    ///
    /// # Safety
    /// The CPU must have AVX2 and AVX-512 F and BW.
    #[inline(always)]
    unsafe fn parts64(&self, c: usize) -> (__m512i, __mmask64, __m512i) {
        let (g0, m0, s00, s01) = self.parts(c);
        let (g1, m1, s10, s11) = self.parts(c + 1);
        let sc = join256(scale_pair::<Self>(s00, s01), scale_pair::<Self>(s10, s11));
        if Self::MASKED {
            (join256(g0, g1), _mm512_movepi8_mask(join256(m0, m1)), sc)
        } else {
            let v = join256(g0, g1);
            (_mm512_abs_epi8(v), _mm512_movepi8_mask(v), sc)
        }
    }

    /// The AVX-512 VNNI kernel of one activation row: the generic [`tile_seq_stream_vnni_tf`]
    /// unless a format has its own.
    ///
    /// # Safety
    /// As [`tile_seq_stream_vnni_tf`].
    #[inline(always)]
    unsafe fn stream_vnni(w: &[u8], row_bytes: usize, x: &[ActQ8KSeq], out: &Out)
    where
        Self: Sized,
    {
        tile_seq_stream_vnni_tf::<Self>(w, row_bytes, x, out)
    }
}

/// Two 256-bit registers as one, `lo` in the low half.
#[inline(always)]
unsafe fn join256(lo: __m256i, hi: __m256i) -> __m512i {
    _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1)
}

/// [`IqSimd`] of an [`IqChunk`] format: its chunks one after another.
macro_rules! simd_by_chunks {
    ($($t:ty),*) => {$(
        impl IqSimd for $t {
            #[inline(always)]
            unsafe fn chunks(&self, dec: &mut Decoded, out: &mut Chunks) {
                dec.d = self.d32();
                for c in 0..8 {
                    let (v, s0, s1) = self.chunk(c);
                    out.v[c] = v;
                    dec.sc[2 * c] = s0;
                    dec.sc[2 * c + 1] = s1;
                }
                scales(dec, out);
            }
        }
    )*};
}

simd_by_chunks!(
    BlockIq2Xxs,
    BlockIq2Xs,
    BlockIq2S,
    BlockIq3Xxs,
    BlockIq3S,
    BlockIq4Xs
);

impl IqChunk for BlockIq2Xxs {
    const MASKED: bool = true;
    const SCALE_PER_32: bool = true;
    #[inline(always)]
    fn d32(&self) -> f32 {
        self.d.to_f32()
    }
    #[inline(always)]
    unsafe fn parts(&self, c: usize) -> (__m256i, __m256i, i16, i16) {
        let q = &self.qs[8 * c..8 * c + 8];
        let aux = u32::from_le_bytes([q[4], q[5], q[6], q[7]]);
        let g = std::array::from_fn(|l| IQ2XXS_GRID[q[l] as usize]);
        let m = std::array::from_fn(|l| SIGN_MASKS_7[((aux >> (7 * l)) & 127) as usize]);
        let s = odd(aux >> 28);
        (u64x4(g), u64x4(m), s, s)
    }
}

impl IqChunk for BlockIq2Xs {
    const MASKED: bool = true;
    const SCALE_PER_32: bool = false;
    #[inline(always)]
    fn d32(&self) -> f32 {
        self.d.to_f32()
    }
    #[inline(always)]
    unsafe fn parts(&self, c: usize) -> (__m256i, __m256i, i16, i16) {
        let q: [u16; 4] = std::array::from_fn(|l| {
            u16::from_le_bytes([self.qs[8 * c + 2 * l], self.qs[8 * c + 2 * l + 1]])
        });
        let g = q.map(|q| IQ2XS_GRID[(q & 511) as usize]);
        let m = q.map(|q| SIGN_MASKS_7[(q >> 9) as usize]);
        let sc = self.scales[c] as u32;
        (u64x4(g), u64x4(m), odd(sc & 0x0F), odd(sc >> 4))
    }
}

impl IqChunk for BlockIq2S {
    const MASKED: bool = true;
    const SCALE_PER_32: bool = false;
    #[inline(always)]
    fn d32(&self) -> f32 {
        self.d.to_f32()
    }
    #[inline(always)]
    unsafe fn parts(&self, c: usize) -> (__m256i, __m256i, i16, i16) {
        let qh = self.qh[c] as usize;
        let g = std::array::from_fn(|l| {
            IQ2S_GRID[(self.qs[4 * c + l] as usize | ((qh >> (2 * l)) & 3) << 8) & 1023]
        });
        let m = std::array::from_fn(|l| SIGN_MASKS[self.signs[4 * c + l] as usize]);
        let sc = self.scales[c] as u32;
        (u64x4(g), u64x4(m), odd(sc & 0x0F), odd(sc >> 4))
    }
}

impl IqChunk for BlockIq3Xxs {
    const MASKED: bool = true;
    const SCALE_PER_32: bool = true;
    #[inline(always)]
    fn d32(&self) -> f32 {
        self.d.to_f32()
    }
    #[inline(always)]
    unsafe fn parts(&self, c: usize) -> (__m256i, __m256i, i16, i16) {
        let c = c & 7;
        let q = &self.qs[8 * c..8 * c + 8];
        let s = &self.scales_signs[4 * c..4 * c + 4];
        let aux = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
        // eight scalar loads: faster than a gather on AMD's cores (as ggml notes)
        let g: [u32; 8] = std::array::from_fn(|l| IQ3XXS_GRID[q[l] as usize]);
        // SAFETY: 32 bytes.
        let g = _mm256_loadu_si256(g.as_ptr() as *const __m256i);
        let m = std::array::from_fn(|l| SIGN_MASKS_7[((aux >> (7 * l)) & 127) as usize]);
        let s = odd(aux >> 28);
        (g, u64x4(m), s, s)
    }
}

/// Eight 4-byte grid rows per 32 (9-bit indices: `qs` and a bit of `qh`) and the masks of
/// their sign bits.
impl IqChunk for BlockIq3S {
    const MASKED: bool = true;
    const SCALE_PER_32: bool = true;
    #[inline(always)]
    fn d32(&self) -> f32 {
        self.d.to_f32()
    }
    #[inline(always)]
    unsafe fn parts(&self, c: usize) -> (__m256i, __m256i, i16, i16) {
        let c = c & 7;
        let g = iq3s_grid_rows(self, c);
        let s = &self.signs[4 * c..4 * c + 4];
        let m = sign_masks(u32::from_le_bytes([s[0], s[1], s[2], s[3]]));
        let sc = odd(((self.scales[c / 2] >> (4 * (c % 2))) & 0x0F) as u32);
        (g, m, sc, sc)
    }
    /// Chunk `c`'s eight grid rows as [`IqChunk::parts`] finds them ([`iq3s_grid_rows`]), chunk `c + 1`'s with their indices built in a vector register and extracted:
    /// the two halves keep the scalar and the vector units busy side by side. The signs come
    /// straight from their bits as the mask.
    #[inline(always)]
    unsafe fn parts64(&self, c: usize) -> (__m512i, __mmask64, __m512i) {
        let c = c & 6;
        let g0 = iq3s_grid_rows(self, c);
        let q = &self.qs[8 * c + 8..8 * c + 16];
        // SAFETY: 8 bytes.
        let idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64(q.as_ptr() as *const __m128i));
        // bit l of qh[c + 1] is the ninth bit of row l
        let idx = _mm256_mask_or_epi32(idx, self.qh[c + 1], idx, _mm256_set1_epi32(256));
        let mut at = [0u32; 8];
        // SAFETY: 32 bytes.
        _mm256_storeu_si256(at.as_mut_ptr() as *mut __m256i, idx);
        // SAFETY: every index is a byte plus at most 256, below 512 (the grid's length).
        let g1: [u32; 8] = std::array::from_fn(|l| *IQ3S_GRID.get_unchecked(at[l] as usize));
        // SAFETY: 32 bytes.
        let g1 = _mm256_loadu_si256(g1.as_ptr() as *const __m256i);
        let g = join256(g0, g1);
        let s = &self.signs[4 * c..4 * c + 8];
        let neg = u64::from_le_bytes(s.try_into().expect("8 bytes"));
        let b = self.scales[c / 2];
        let (s0, s1) = (odd((b & 0x0F) as u32), odd((b >> 4) as u32));
        let sc = _mm512_inserti64x4(_mm512_set1_epi16(s0), _mm256_set1_epi16(s1), 1);
        (g, neg, sc)
    }
}

/// IQ3_S chunk `c`'s eight grid rows (`c < 8`), their 9-bit indices (`qs` and a bit of `qh`)
/// in scalar registers, eight scalar loads (faster than a gather on AMD's cores, as ggml notes).
///
/// # Safety
/// The CPU must have AVX2.
#[inline(always)]
unsafe fn iq3s_grid_rows(b: &BlockIq3S, c: usize) -> __m256i {
    let q = &b.qs[8 * c..8 * c + 8];
    let qh = b.qh[c] as usize;
    let g: [u32; 8] =
        std::array::from_fn(|l| IQ3S_GRID[(q[l] as usize | (qh << (8 - l)) & 256) & 511]);
    // SAFETY: 32 bytes.
    _mm256_loadu_si256(g.as_ptr() as *const __m256i)
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

/// The nibbles through `kvalues_iq4nl` with one byte shuffle.
impl IqChunk for BlockIq4Xs {
    const MASKED: bool = false;
    const SCALE_PER_32: bool = true;
    /// [`iq4xs_stream_vnni_tf`].
    #[inline(always)]
    unsafe fn stream_vnni(w: &[u8], row_bytes: usize, x: &[ActQ8KSeq], out: &Out) {
        iq4xs_stream_vnni_tf(w, row_bytes, x, out)
    }
    #[inline(always)]
    fn d32(&self) -> f32 {
        self.d.to_f32()
    }
    #[inline(always)]
    unsafe fn parts(&self, c: usize) -> (__m256i, __m256i, i16, i16) {
        let scales_h = u16::from_le_bytes(self.scales_h);
        let low = (self.scales_l[c / 2] >> (4 * (c % 2))) & 0x0F;
        let high = ((scales_h >> (2 * c)) & 3) as u8;
        let ls = (low | high << 4) as i16 - 32;
        // SAFETY: the table and the chunk's codes are 16 bytes each.
        let lut = _mm_loadu_si128(KVALUES_IQ4NL.as_ptr() as *const __m128i);
        let raw = _mm_loadu_si128(self.qs[16 * c..16 * c + 16].as_ptr() as *const __m128i);
        let m4 = _mm_set1_epi8(0x0f);
        let codes = _mm256_set_m128i(
            _mm_and_si128(_mm_srli_epi16(raw, 4), m4),
            _mm_and_si128(raw, m4),
        );
        (
            _mm256_shuffle_epi8(_mm256_set_m128i(lut, lut), codes),
            _mm256_setzero_si256(),
            ls,
            ls,
        )
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
                        let s1 = hsum_epi32(lanes(&ch.delta, &ch.sc, x));
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

/// The scales of a chunk's two groups of 16 as 16 i16 lanes (one broadcast for the formats with
/// one scale per 32).
#[inline(always)]
unsafe fn scale_pair<W: IqChunk>(s0: i16, s1: i16) -> __m256i {
    if W::SCALE_PER_32 {
        _mm256_set1_epi16(s0)
    } else {
        _mm256_set_m128i(_mm_set1_epi16(s1), _mm_set1_epi16(s0))
    }
}

/// `vec_dot`'s order for the [`IqChunk`] formats (Lanes epilogue) and one activation row
/// (decoding), streaming: each chunk is decoded into registers and dotted with the activations
/// before the next, the lanes in two registers; the same integers and float steps as
/// [`tile_seq_tf`], which takes several rows.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_seq_stream_tf<W: IqChunk>(w: &[u8], row_bytes: usize, x: &[ActQ8KSeq], out: &Out) {
    debug_assert!(W::EPILOGUE == Epilogue::Lanes);
    for (r, row) in w.chunks_exact(row_bytes).enumerate() {
        let blocks: &[W] = bytemuck::cast_slice(row);
        let mut acc = _mm256_setzero_ps();
        for (block, x) in blocks.iter().zip(x) {
            let (mut l0, mut l1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
            for c in (0..8).step_by(2) {
                let (p, s0, s1) = block.pairs(c, load32(&x.qs[32 * c..32 * c + 32]));
                let sc = scale_pair::<W>(s0, s1);
                l0 = _mm256_add_epi32(l0, _mm256_madd_epi16(p, sc));
                let (p, s0, s1) = block.pairs(c + 1, load32(&x.qs[32 * c + 32..32 * c + 64]));
                let sc = scale_pair::<W>(s0, s1);
                l1 = _mm256_add_epi32(l1, _mm256_madd_epi16(p, sc));
            }
            let dd = _mm256_set1_ps(block.d32() * x.d);
            acc = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(_mm256_add_epi32(l0, l1)), acc);
        }
        let mut a = [0f32; 8];
        // SAFETY: 8 floats.
        _mm256_storeu_ps(a.as_mut_ptr(), acc);
        out.set(r, 0, W::VEC_DOT_FACTOR * hsum8(&a));
    }
}

/// [`tile_seq_stream_tf`] with AVX-512 and VNNI: two chunks per step in one register
/// ([`IqChunk::parts64`]), the signs put on the activations with a mask, and
/// `maddubs` then `vpdpwssd` with the scales. Every i32 lane holds the sum [`tile_seq_stream_tf`]'s
/// lanes hold (chunk `c` in the low half, `c + 1` in the high half: the low half is its `l0`,
/// the high half its `l1`), so the float steps, and the bits, are the same.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile_seq_stream_vnni_tf<W: IqChunk>(
    w: &[u8],
    row_bytes: usize,
    x: &[ActQ8KSeq],
    out: &Out,
) {
    debug_assert!(W::EPILOGUE == Epilogue::Lanes);
    for (r, row) in w.chunks_exact(row_bytes).enumerate() {
        let blocks: &[W] = bytemuck::cast_slice(row);
        let mut acc = _mm256_setzero_ps();
        for (block, x) in blocks.iter().zip(x) {
            let mut l = _mm512_setzero_si512();
            for c in (0..8).step_by(2) {
                let (g, neg, sc) = block.parts64(c);
                let a = &x.qs[32 * c..32 * c + 64];
                // SAFETY: 64 bytes.
                let a = _mm512_loadu_si512(a.as_ptr() as *const __m512i);
                let a = _mm512_mask_sub_epi8(a, neg, _mm512_setzero_si512(), a);
                l = _mm512_dpwssd_epi32(l, _mm512_maddubs_epi16(g, a), sc);
            }
            let l = _mm256_add_epi32(_mm512_castsi512_si256(l), _mm512_extracti64x4_epi64::<1>(l));
            let dd = _mm256_set1_ps(block.d32() * x.d);
            acc = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(l), acc);
        }
        let mut a = [0f32; 8];
        // SAFETY: 8 floats.
        _mm256_storeu_ps(a.as_mut_ptr(), acc);
        out.set(r, 0, W::VEC_DOT_FACTOR * hsum8(&a));
    }
}

/// IQ4_XS's [`tile_seq_stream_tf`] with AVX-512 VNNI, in fewer instructions than the generic
/// [`tile_seq_stream_vnni_tf`]: the values are looked up offset by 128 (unsigned, `v + 128`), so
/// `vpdpbusd` takes them with the activations as they are, starting from `-128 · Σ a` of each
/// group of four (computed once per call), which leaves each group's exact `Σ v·a`; then times
/// the chunk's scale (`vpmulld`) into the lanes. The same integer lanes as
/// [`tile_seq_stream_tf`] (no sum saturates: `|v·a| ≤ 127²`), so the same float steps and bits.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,bmi2")]
unsafe fn iq4xs_stream_vnni_tf(w: &[u8], row_bytes: usize, x: &[ActQ8KSeq], out: &Out) {
    let zero = _mm512_setzero_si512();
    // `-128 · Σ a` of every group of four activations, chunks `c, c + 1` per register
    let k128 = _mm512_set1_epi8(-128);
    let corr: Vec<__m512i> = x
        .iter()
        .flat_map(|x| (0..4).map(move |p| &x.qs[64 * p..64 * p + 64]))
        .map(|a| {
            // SAFETY: 64 bytes; the CPU has AVX-512 VNNI (this function's features).
            let a = _mm512_loadu_si512(a.as_ptr() as *const __m512i);
            _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, k128, a))
        })
        .collect();
    // SAFETY: 16 bytes.
    let lut = _mm_loadu_si128(KVALUES_IQ4NL.as_ptr() as *const __m128i);
    let lut = _mm512_broadcast_i32x4(_mm_xor_si128(lut, _mm_set1_epi8(-128)));
    let m4 = _mm512_set1_epi8(0x0F);
    // the second and fourth 128-bit lanes hold the high nibbles
    let shift = _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4);
    // chunk c's scale in lanes 0..8, chunk c + 1's in lanes 8..16
    let pick: [__m512i; 4] = std::array::from_fn(|p| {
        let (c0, c1) = (2 * p as i32, 2 * p as i32 + 1);
        _mm512_setr_epi32(
            c0, c0, c0, c0, c0, c0, c0, c0, c1, c1, c1, c1, c1, c1, c1, c1,
        )
    });
    for (r, row) in w.chunks_exact(row_bytes).enumerate() {
        let blocks: &[BlockIq4Xs] = bytemuck::cast_slice(row);
        let mut acc = _mm256_setzero_ps();
        for ((block, x), corr) in blocks.iter().zip(x).zip(corr.chunks_exact(4)) {
            // the eight 6-bit scales minus 32, one byte each (pdep spreads the nibbles and the
            // pairs of high bits into place)
            let low = _pdep_u64(
                u32::from_le_bytes(block.scales_l) as u64,
                0x0F0F_0F0F_0F0F_0F0F,
            );
            let high = _pdep_u64(
                u16::from_le_bytes(block.scales_h) as u64,
                0x3030_3030_3030_3030,
            );
            let sc8 = _mm256_sub_epi32(
                _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((low | high) as i64)),
                _mm256_set1_epi32(32),
            );
            let sc8 = _mm512_castsi256_si512(sc8);
            let mut l = zero;
            for p in 0..4 {
                let q = &block.qs[32 * p..32 * p + 32];
                // SAFETY: 32 bytes.
                let q = _mm512_castsi256_si512(_mm256_loadu_si256(q.as_ptr() as *const __m256i));
                // bytes 0..16 twice, then 16..32 twice; the copies shifted to their high nibbles
                let q = _mm512_shuffle_i64x2::<0b01_01_00_00>(q, q);
                let codes = _mm512_and_si512(_mm512_srlv_epi64(q, shift), m4);
                let u = _mm512_shuffle_epi8(lut, codes);
                let a = &x.qs[64 * p..64 * p + 64];
                // SAFETY: 64 bytes.
                let a = _mm512_loadu_si512(a.as_ptr() as *const __m512i);
                let sums = _mm512_dpbusd_epi32(corr[p], u, a);
                let sc = _mm512_permutexvar_epi32(pick[p], sc8);
                l = _mm512_add_epi32(l, _mm512_mullo_epi32(sums, sc));
            }
            let l = _mm256_add_epi32(_mm512_castsi512_si256(l), _mm512_extracti64x4_epi64::<1>(l));
            let dd = _mm256_set1_ps(block.d.to_f32() * x.d);
            acc = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(l), acc);
        }
        let mut a = [0f32; 8];
        // SAFETY: 8 floats.
        _mm256_storeu_ps(a.as_mut_ptr(), acc);
        out.set(r, 0, BlockIq4Xs::VEC_DOT_FACTOR * hsum8(&a));
    }
}

/// The streaming kernel of one activation row ([`IqChunk::stream_vnni`] with `VNNI`, else
/// [`tile_seq_stream_tf`]), [`tile_seq_tf`] for several.
fn tile_seq_stream<W: IqChunk + IqSimd, const VNNI: bool>(
    w: &[u8],
    row_bytes: usize,
    xs: &[&[ActQ8KSeq]],
    out: Out,
) {
    check_tile(w, row_bytes, size_of::<W>(), 1, xs, &out);
    // SAFETY: the shapes were asserted just above; `tile_fn` hands this kernel out only for
    // instruction sets with AVX2, FMA and F16C, and with `VNNI` only for `Isa::Avx512Vnni`
    // (whose CPUs all have BMI2), which `with_kernel` checked this CPU runs.
    unsafe {
        match xs {
            [x] if VNNI => W::stream_vnni(w, row_bytes, x, &out),
            [x] => tile_seq_stream_tf::<W>(w, row_bytes, x, &out),
            _ => tile_seq_tf::<W>(w, row_bytes, xs, &out),
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
                let mut s = hsum_epi32(lanes(&ch.v, &ch.sc, x));
                if iq1 {
                    // Σ sc·(8v + δ)·qa, exactly
                    s = 8 * s + hsum_epi32(lanes(&ch.delta, &ch.sc, x));
                }
                *acc = (s as f32 * d).mul_add(x.d, *acc);
            }
        }
        for (i, acc) in acc.iter().take(xs.len()).enumerate() {
            out.set(r, i, *acc);
        }
    }
}

/// The tiled order with AVX-512 VNNI through the K-quants' tiled kernel (`tiled_k.rs`: the tile's
/// activation rows in the lanes, offset by 128, `vpdpbusd` with each weight's four values
/// broadcast): the values are `v` (IQ1: `8v + δ`), signed bytes; the integer sums and float
/// steps are [`tile_tiled_tf`]'s.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile_tiled_vnni_tf<W: IqSimd>(w: &[u8], row_bytes: usize, xs: &[&[Band]], out: &Out) {
    use super::tiled_k::x86::{bands_of, tile_body_with, Weights};
    let factor = W::TILED_FACTOR.expect("a format the tiled matmul takes");
    let iq1 = matches!(W::EPILOGUE, Epilogue::Iq1S | Epilogue::Iq1M);
    let mut dec = Decoded::new();
    let mut ch = new_chunks();
    let weights = |bytes: &[u8], wb: &mut Weights| {
        let block: &W = bytemuck::from_bytes(bytes);
        block.chunks(&mut dec, &mut ch);
        for c in 0..8 {
            let mut v = ch.v[c];
            if iq1 {
                let v2 = _mm256_add_epi8(v, v);
                let v4 = _mm256_add_epi8(v2, v2);
                v = _mm256_add_epi8(_mm256_add_epi8(v4, v4), ch.delta[c]);
            }
            // SAFETY: q4[8c .. 8c + 8] is 32 bytes.
            _mm256_storeu_si256(wb.q4[8 * c..].as_mut_ptr() as *mut __m256i, v);
        }
        for (sc, &s) in wb.sc.iter_mut().zip(&dec.sc) {
            *sc = s as i32;
        }
        wb.set_corr();
        wb.mn = [0; 16];
        wb.d = dec.d * factor;
        wb.dmin = 0.0;
    };
    let bands = (&bands_of(xs)[..], xs.len());
    tile_body_with::<true>(w, row_bytes, size_of::<W>(), bands, out, false, weights);
}

fn tile_tiled_vnni<W: IqSimd>(w: &[u8], row_bytes: usize, xs: &[&[Band]], out: Out) {
    // any number of activation rows (`iquants::takes_all_rows`), in bands of 16
    check_tile_of(w, row_bytes, size_of::<W>(), 1, xs, &out, usize::MAX);
    // SAFETY: the shapes were asserted just above; `tile_fn` hands this kernel out only for
    // `Isa::Avx512Vnni`, which `with_kernel` checked this CPU runs.
    unsafe { tile_tiled_vnni_tf::<W>(w, row_bytes, xs, &out) }
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

/// The AVX-512 VNNI kernel of `ty` in the tiled order, on all activation rows at once in bands
/// of 16 (`tiled_k::x86::bands`); `None` for other types and the ternary formats. Call only
/// on a CPU with AVX2, FMA, F16C and AVX-512 F, BW, VL and VNNI.
pub(super) fn tile_fn_bands(ty: GgmlType) -> Option<TileFn<Band>> {
    if uses_seq(ty, usize::MAX) {
        return None;
    }
    Some(per_format!(ty, tile_tiled_vnni))
}

/// The AVX2 kernel of `ty` for tiles of `m` activation rows (with `Isa::Avx512Vnni`, the
/// streaming formats' one-row kernel is [`IqChunk::stream_vnni`]); `None` for other types. Call
/// only with an instruction set that includes AVX2, FMA and F16C.
pub(super) fn tile_fn(ty: GgmlType, isa: Isa, m: usize) -> Option<TileFn<ActQ8KSeq>> {
    macro_rules! stream {
        ($vnni:expr) => {
            match ty {
                GgmlType::IQ2_XXS => tile_seq_stream::<BlockIq2Xxs, $vnni>,
                GgmlType::IQ2_XS => tile_seq_stream::<BlockIq2Xs, $vnni>,
                GgmlType::IQ2_S => tile_seq_stream::<BlockIq2S, $vnni>,
                GgmlType::IQ3_XXS => tile_seq_stream::<BlockIq3Xxs, $vnni>,
                GgmlType::IQ3_S => tile_seq_stream::<BlockIq3S, $vnni>,
                GgmlType::IQ4_XS => tile_seq_stream::<BlockIq4Xs, $vnni>,
                _ => per_format!(ty, tile_seq),
            }
        };
    }
    Some(match (uses_seq(ty, m), isa) {
        (true, Isa::Avx512Vnni) => stream!(true),
        (true, _) => stream!(false),
        (false, _) => per_format!(ty, tile_tiled),
    })
}
