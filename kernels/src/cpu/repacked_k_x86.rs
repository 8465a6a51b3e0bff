//! AVX2 and AVX-512 VNNI kernels for `repacked_k.rs`'s order.
//!
//! Tiles (prefill, and any tile with a gemm row): as ggml's repacked kernels, they hold eight
//! weight rows in the eight 32-bit lanes of a 256-bit register, so that every chunk's exact
//! integer sums of the eight rows come out lane by lane, without horizontal sums, and the two
//! multiply-add chains of the eight rows run side by side in f32 lanes, link by link in ggml's
//! order. The weights stay in the GGUF layout: per group of eight rows (consecutive in memory;
//! the next group is prefetched meanwhile) and super-block, the kernel interleaves them once per
//! tile of activation rows (up to `MAX_TILE`), which every activation row of the tile reuses:
//!
//! ```text
//! w[k]  lane r = quants of elements 4k .. 4k + 4 of row r (u8)   k in 0..64: 8 × 8 transposes of
//!                                                                 the packed dwords, then the
//!                                                                 nibbles / 2-bit fields
//! sc[j] lane r = scale of sub-block j of row r                     an 8 × 16 byte transpose of
//! mp[p] lane r = mins of sub-blocks 2p, 2p + 1 of row r (2 × i16)  the packed scales, unpacked
//! ```
//!
//! Per activation row, sub-block `j` of `L` dwords (8 for Q4_K, 4 for Q2_K) gives its scaled dot
//! products in each row's lane, with `x[k]` the activation dword `k` broadcast (four activation
//! rows at a time, each `w[k]` loaded once for the four, where the four are all gemm or all gemv
//! rows):
//!
//! ```text
//! VNNI:  sc[j] · Σ_k dpbusd(w[k], x[k])                          (vpmulld by the scale)
//! AVX2:  madd(Σ_k maddubs(w[k], x[k]), sc[j])                    (i16 sums: ≤ 8·2·15·127 = 30480)
//! M     = Σ_p madd(mp[p], (bsum 2p, bsum 2p + 1) broadcast)
//! ```
//!
//! then the chunk sums `S`, `M` (exact i32) and `acc = fma(S, d · ad, acc)`, `accm = fma(M,
//! dmin · ad, accm)` per chunk, `y = acc - accm`, as `rows_scalar`. Rows past the last whole eight
//! of a call take the scalar kernel (the same order, the same bits).
//!
//! Decoding (one gemv activation row): interleaving would not be amortized, so each row's
//! super-block is dotted in element order (`maddubs`, then the sub-block scales by `madd`, with
//! VNNI `vpdpwssd`), its `S` and `M` from horizontal sums, four rows (from four equal segments,
//! each read as one stream) at a time, their links in the four lanes of a 128-bit register.
//!
//! # Safety
//!
//! Every `unsafe fn` here has two obligations. The instruction set: they run only inside the
//! `#[target_feature]` functions (`*_tf`), which the safe kernels (`tile_avx2`, `tile_vnni`) call
//! only for the set that `tile_fn` handed them out for, after `with_kernel` (cpu/mod.rs) checked
//! that this CPU runs it. Memory: the safe kernels assert the shapes on entry (`check_tile`:
//! `row_bytes` whole super-blocks, `w` whole rows, every activation row exactly
//! `row_bytes / size_of::<W>()` super-blocks, an output of the weight rows by the activation
//! rows); the super-blocks are read through references (`&W`, `&ActQ8KR`) that slice indexing
//! bounds-checks, and the fixed-width loads from a block's or an activation's own arrays stay in
//! those arrays (each says how).

use std::arch::x86_64::*;

use gguf_importer::quants::{BlockQ2K, BlockQ4K};
use gguf_importer::GgmlType;

use super::super::kquants::k4_scale_min_words;
use super::super::x86_util::{self, f16c, prefetch_ahead};
use super::super::{check_tile, Isa, Out, TileFn, MAX_TILE};
use super::{rows_scalar, ActQ8KR, RepackK};

/// Eight rows' super-block, interleaved (see the module docs).
struct Rows8 {
    /// Lane `r` of `w[k]`: the quants of elements `4k .. 4k + 4` of row `r`.
    w: [__m256i; 64],
    /// Lane `r` of `sc[j]`: the scale of sub-block `j` of row `r`, an i32 (VNNI) or the i16
    /// scale in both halves (AVX2, for `madd`). `W::SUBS` of them.
    sc: [__m256i; 16],
    /// Lane `r` of `mp[p]`: the mins of sub-blocks `2p` (low i16) and `2p + 1` (high i16) of row
    /// `r`. `W::SUBS / 2` of them.
    mp: [__m256i; 8],
    d: __m256,
    dmin: __m256,
}

/// A format's super-blocks interleaved eight rows at a time.
trait RepackX86: RepackK {
    /// Fills `out.w` and returns each row's 16 bytes from its `scales` on, for [`scales8`].
    ///
    /// # Safety
    /// The CPU must have AVX2.
    unsafe fn quants8(rows: &[&Self; 8], w: &mut [__m256i; 64]) -> [__m128i; 8];

    /// `out.sc` (as i32 with `VNNI`, else for `madd`) and `out.mp` from [`quants8`]'s bytes
    /// transposed (`t[k]`: bytes `2k` of the eight rows, then bytes `2k + 1`).
    ///
    /// # Safety
    /// The CPU must have AVX2.
    unsafe fn scales8<const VNNI: bool>(t: [__m128i; 8], out: &mut Rows8);

    /// The activation's sums of sub-blocks `2p`, `2p + 1` as the i16 pair `p` (`W::SUBS / 2`
    /// pairs).
    fn bsum_pairs(x: &ActQ8KR) -> &[i16];

    /// The whole super-block's exact sums `S = Σ_j sc[j] · Σ_{e in j} wq·aq` and `M = Σ_j mn[j] ·
    /// Σ_{e in j} aq` against `x` (the gemv's one chunk), for the row-by-row kernel, as lanes
    /// to add up: `S` the sum of the eight i32 lanes of the first, `M` of the four of the second.
    ///
    /// # Safety
    /// The CPU must have AVX2, and with `VNNI` AVX-512 F, BW, VL and VNNI.
    unsafe fn gemv_parts<const VNNI: bool>(&self, x: &ActQ8KR) -> (__m256i, __m128i);
}

/// The 8 × 8 transpose of dwords: lane `k` of `v[r]` becomes lane `r` of the result's `k`.
///
/// # Safety
/// The CPU must have AVX.
#[inline(always)]
unsafe fn transpose8(vi: [__m256i; 8]) -> [__m256i; 8] {
    let t = x86_util::transpose8(vi.map(|v| _mm256_castsi256_ps(v)));
    t.map(|v| _mm256_castps_si256(v))
}

/// The 8 × 16 transpose of bytes: row `r`'s byte `c` (`a[r]`) becomes byte `r` of column `c`,
/// columns `2k` and `2k + 1` in the low and high 8 bytes of `t[k]`.
///
/// # Safety
/// The CPU must have SSE2.
#[inline(always)]
unsafe fn transpose_bytes(a: [__m128i; 8]) -> [__m128i; 8] {
    // (Loops, not closures: a closure would not inherit the caller's target features, and the
    // intrinsics would stay calls.)
    // rows (0, 1), (2, 3), .. interleaved byte by byte: bytes 0..8, then 8..16
    let mut b = [_mm_setzero_si128(); 8];
    for i in 0..4 {
        b[2 * i] = _mm_unpacklo_epi8(a[2 * i], a[2 * i + 1]);
        b[2 * i + 1] = _mm_unpackhi_epi8(a[2 * i], a[2 * i + 1]);
    }
    // four rows per byte: c[0..4] rows 0..4 of bytes 0..4, 4..8, 8..12, 12..16; c[4..8] rows 4..8
    let mut c = [_mm_setzero_si128(); 8];
    for h in 0..2 {
        for q in 0..2 {
            let (x, y) = (b[4 * h + q], b[4 * h + q + 2]);
            c[4 * h + 2 * q] = _mm_unpacklo_epi16(x, y);
            c[4 * h + 2 * q + 1] = _mm_unpackhi_epi16(x, y);
        }
    }
    // eight rows per byte: t[k] bytes 2k, 2k + 1
    let mut t = [_mm_setzero_si128(); 8];
    for q in 0..4 {
        t[2 * q] = _mm_unpacklo_epi32(c[q], c[4 + q]);
        t[2 * q + 1] = _mm_unpackhi_epi32(c[q], c[4 + q]);
    }
    t
}

/// The eight u8 of the low half of `v` as i32 lanes; with `!VNNI` each doubled into both i16
/// halves of its lane (a scale for `madd`).
///
/// # Safety
/// The CPU must have AVX2.
#[inline(always)]
unsafe fn widen_scale<const VNNI: bool>(v: __m128i) -> __m256i {
    let s = _mm256_cvtepu8_epi32(v);
    if VNNI {
        s
    } else {
        _mm256_or_si256(s, _mm256_slli_epi32::<16>(s))
    }
}

/// Lane `r` = the u8 pair (low 8 bytes of `v`, byte `r`; high 8 bytes, byte `r`) as two i16.
///
/// # Safety
/// The CPU must have AVX2.
#[inline(always)]
unsafe fn min_pair(v: __m128i) -> __m256i {
    _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(v, _mm_srli_si128::<8>(v)))
}

/// The first 16 bytes of `p`.
///
/// # Safety
/// The CPU must have SSE2.
#[inline(always)]
unsafe fn load16(p: &[u8]) -> __m128i {
    // Callers pass subslices of fixed-size arrays at constant offsets: this folds away.
    assert!(p.len() >= 16, "a 128-bit load from {} bytes", p.len());
    // SAFETY: p has at least 16 readable bytes (asserted above); `loadu` takes any alignment.
    _mm_loadu_si128(p.as_ptr() as *const __m128i)
}

/// The first 32 bytes of `p`.
///
/// # Safety
/// The CPU must have AVX.
#[inline(always)]
unsafe fn load32(p: &[u8]) -> __m256i {
    // Callers pass subslices of fixed-size arrays at constant offsets: this folds away.
    assert!(p.len() >= 32, "a 256-bit load from {} bytes", p.len());
    // SAFETY: p has at least 32 readable bytes (asserted above); `loadu` takes any alignment.
    _mm256_loadu_si256(p.as_ptr() as *const __m256i)
}

/// The 32 bytes of `x.qs` from `32 · j`.
///
/// # Safety
/// The CPU must have AVX.
#[inline(always)]
unsafe fn act32(x: &ActQ8KR, j: usize) -> __m256i {
    let q = &x.qs[32 * j..32 * j + 32];
    // SAFETY: q is 32 bytes (the slice above, bounds-checked); `loadu`: any alignment.
    _mm256_loadu_si256(q.as_ptr() as *const __m256i)
}

/// The sum of the eight i32 lanes.
///
/// # Safety
/// The CPU must have AVX2.
#[inline(always)]
unsafe fn hsum_epi32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<1>(s));
    _mm_cvtsi128_si32(s)
}

/// `t + madd(p, s)`: pairs of i16 products summed into the i32 lanes (VNNI: one `vpdpwssd`).
///
/// # Safety
/// The CPU must have AVX2, and with `VNNI` AVX-512 VNNI and VL.
#[inline(always)]
unsafe fn scaled<const VNNI: bool>(t: __m256i, p: __m256i, s: __m256i) -> __m256i {
    if VNNI {
        _mm256_dpwssd_epi32(t, p, s)
    } else {
        _mm256_add_epi32(t, _mm256_madd_epi16(p, s))
    }
}

/// The two 128-bit halves of `v` added lane by lane.
///
/// # Safety
/// The CPU must have AVX2.
#[inline(always)]
unsafe fn fold256(v: __m256i) -> __m128i {
    _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v))
}

/// The sum of the four i32 lanes.
///
/// # Safety
/// The CPU must have SSE2.
#[inline(always)]
unsafe fn hsum4(v: __m128i) -> i32 {
    let v = _mm_add_epi32(v, _mm_unpackhi_epi64(v, v));
    _mm_cvtsi128_si32(_mm_add_epi32(v, _mm_shuffle_epi32::<1>(v)))
}

/// Lane `k` = the sum of the eight i32 lanes of `t[k]`.
///
/// # Safety
/// The CPU must have AVX2.
#[inline(always)]
unsafe fn sums4(t: [__m256i; 4]) -> __m128i {
    let a = _mm256_hadd_epi32(t[0], t[1]);
    let b = _mm256_hadd_epi32(t[2], t[3]);
    fold256(_mm256_hadd_epi32(a, b))
}

/// Lane `k` = the sum of the four i32 lanes of `m[k]`.
///
/// # Safety
/// The CPU must have SSSE3.
#[inline(always)]
unsafe fn sums4_128(m: [__m128i; 4]) -> __m128i {
    _mm_hadd_epi32(_mm_hadd_epi32(m[0], m[1]), _mm_hadd_epi32(m[2], m[3]))
}

/// Q4_K's 8 scales and 8 mins (`get_scale_min_k4`) as the little-endian u64s of their bytes.
#[inline(always)]
fn q4k_scales_mins(s: &[u8; 12]) -> (u64, u64) {
    let (sc, mn) = k4_scale_min_words(s);
    (
        sc[0] as u64 | (sc[1] as u64) << 32,
        mn[0] as u64 | (mn[1] as u64) << 32,
    )
}

impl RepackX86 for BlockQ4K {
    /// Packed dword `u` of a row (bytes `4u .. 4u + 4` of `qs`, chunk `c = u / 8`, `t = u % 8`)
    /// holds elements `64c + 4t ..` in its low nibbles (`w[16c + t]`) and `64c + 32 + 4t ..` in
    /// its high ones (`w[16c + 8 + t]`).
    #[inline(always)]
    unsafe fn quants8(rows: &[&Self; 8], w: &mut [__m256i; 64]) -> [__m128i; 8] {
        let m = _mm256_set1_epi8(0x0F);
        for c in 0..4 {
            let mut v = [_mm256_setzero_si256(); 8];
            for r in 0..8 {
                v[r] = load32(&rows[r].qs[32 * c..]);
            }
            let r = transpose8(v);
            for t in 0..8 {
                w[16 * c + t] = _mm256_and_si256(r[t], m);
                w[16 * c + 8 + t] = _mm256_and_si256(_mm256_srli_epi16::<4>(r[t]), m);
            }
        }
        let mut out = [_mm_setzero_si128(); 8];
        for (out, row) in out.iter_mut().zip(rows) {
            // the 12 `scales` bytes and the first 4 of `qs`
            *out = load16(&bytemuck::bytes_of(*row)[4..]);
        }
        out
    }

    /// `get_scale_min_k4` on the eight rows at once, from the transposed bytes `s[0..12]` (`t[0]`
    /// = bytes 0, 1 of the rows, ..): scales 0..4 = `s[0..4] & 63`, mins 0..4 = `s[4..8] & 63`,
    /// scales 4..8 = `s[8..12] & 15 | (s[0..4] >> 6) << 4`, mins 4..8 = `s[8..12] >> 4 |
    /// (s[4..8] >> 6) << 4`; then in the order scales 0..8, mins 0..8, two per register.
    #[inline(always)]
    unsafe fn scales8<const VNNI: bool>(raw: [__m128i; 8], out: &mut Rows8) {
        let (m63, m15, m48) = (_mm_set1_epi8(63), _mm_set1_epi8(15), _mm_set1_epi8(48));
        // bits 6, 7 of each byte as bits 4, 5 (the 16-bit shift's bits from the next byte fall
        // outside the mask); SSE2 only, which every x86_64 closure has
        let top = |v: __m128i| _mm_and_si128(_mm_srli_epi16::<2>(v), m48);
        let mut t = [_mm_setzero_si128(); 8];
        for h in 0..2 {
            t[h] = _mm_and_si128(raw[h], m63);
            t[4 + h] = _mm_and_si128(raw[2 + h], m63);
            t[2 + h] = _mm_or_si128(_mm_and_si128(raw[4 + h], m15), top(raw[h]));
            let hi4 = _mm_and_si128(_mm_srli_epi16::<4>(raw[4 + h]), m15);
            t[6 + h] = _mm_or_si128(hi4, top(raw[2 + h]));
        }
        for j in 0..8 {
            let v = t[j / 2];
            let v = if j % 2 == 0 {
                v
            } else {
                _mm_srli_si128::<8>(v)
            };
            out.sc[j] = widen_scale::<VNNI>(v);
        }
        for p in 0..4 {
            out.mp[p] = min_pair(t[4 + p]);
        }
    }

    #[inline(always)]
    fn bsum_pairs(x: &ActQ8KR) -> &[i16] {
        &x.bsums32
    }

    /// VNNI: chunk `c` (bytes `32c ..` of `qs`) as one 512-bit register, sub-block `2c` (low
    /// nibbles) in its low half and `2c + 1` (high nibbles) in its high half, against elements
    /// `64c .. 64c + 64`; the scales per lane from one `vpermd`. AVX2: one register per
    /// sub-block, its scale broadcast by `pshufb`.
    #[inline(always)]
    unsafe fn gemv_parts<const VNNI: bool>(&self, x: &ActQ8KR) -> (__m256i, __m128i) {
        let (sc, mn) = q4k_scales_mins(&self.scales);
        // SAFETY: `bsums32` is 8 i16, the 16 bytes loaded.
        let bs = _mm_loadu_si128(x.bsums32.as_ptr() as *const __m128i);
        let mn = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(mn as i64));
        let m = _mm_madd_epi16(mn, bs);
        // the 8 scales as i16, in both halves; `pshufb` broadcasts scale j (bytes 2j, 2j + 1)
        let scw = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc as i64)));
        let nib = _mm256_set1_epi8(0x0F);
        let (mut t0, mut t1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        for c in 0..4 {
            let raw = load32(&self.qs[32 * c..]);
            let lo = _mm256_and_si256(raw, nib);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), nib);
            let plo = _mm256_maddubs_epi16(lo, act32(x, 2 * c));
            let phi = _mm256_maddubs_epi16(hi, act32(x, 2 * c + 1));
            let pick = |j: usize| i16::from_le_bytes([2 * j as u8, 2 * j as u8 + 1]);
            let (slo, shi) = (pick(2 * c), pick(2 * c + 1));
            t0 = scaled::<VNNI>(t0, plo, _mm256_shuffle_epi8(scw, _mm256_set1_epi16(slo)));
            t1 = scaled::<VNNI>(t1, phi, _mm256_shuffle_epi8(scw, _mm256_set1_epi16(shi)));
        }
        (_mm256_add_epi32(t0, t1), m)
    }
}

impl RepackX86 for BlockQ2K {
    /// Packed dword `u` of a row (bytes `4u .. 4u + 4` of `qs`, half `h = u / 8`, `t = u % 8`)
    /// holds elements `128h + 32k + 4t ..` in bits `2k .. 2k + 2` of its bytes: `w[32h + 8k + t]`.
    #[inline(always)]
    unsafe fn quants8(rows: &[&Self; 8], w: &mut [__m256i; 64]) -> [__m128i; 8] {
        let m = _mm256_set1_epi8(3);
        for h in 0..2 {
            let mut v = [_mm256_setzero_si256(); 8];
            for r in 0..8 {
                v[r] = load32(&rows[r].qs[32 * h..]);
            }
            let r = transpose8(v);
            for t in 0..8 {
                w[32 * h + t] = _mm256_and_si256(r[t], m);
                w[32 * h + 8 + t] = _mm256_and_si256(_mm256_srli_epi16::<2>(r[t]), m);
                w[32 * h + 16 + t] = _mm256_and_si256(_mm256_srli_epi16::<4>(r[t]), m);
                w[32 * h + 24 + t] = _mm256_and_si256(_mm256_srli_epi16::<6>(r[t]), m);
            }
        }
        let mut out = [_mm_setzero_si128(); 8];
        for (out, row) in out.iter_mut().zip(rows) {
            // SAFETY: `scales` is [u8; 16], the 16 bytes loaded.
            *out = _mm_loadu_si128(row.scales.as_ptr() as *const __m128i);
        }
        out
    }

    /// `scales[j]`: | min (4 bits) | scale (4 bits) |, so `t[k]` holds sub-blocks `2k`, `2k + 1`.
    #[inline(always)]
    unsafe fn scales8<const VNNI: bool>(t: [__m128i; 8], out: &mut Rows8) {
        let m = _mm_set1_epi8(0x0F);
        for (k, &t) in t.iter().enumerate() {
            let sc = _mm_and_si128(t, m);
            out.sc[2 * k] = widen_scale::<VNNI>(sc);
            out.sc[2 * k + 1] = widen_scale::<VNNI>(_mm_srli_si128::<8>(sc));
            out.mp[k] = min_pair(_mm_and_si128(_mm_srli_epi16::<4>(t), m));
        }
    }

    #[inline(always)]
    fn bsum_pairs(x: &ActQ8KR) -> &[i16] {
        &x.bsums
    }

    /// VNNI: bit planes `2kp`, `2kp + 1` of half `h` (bytes `32h ..` of `qs`) as one 512-bit
    /// register against elements `128h + 64kp .. + 64`, four sub-blocks of 16, their scales
    /// repeated per lane by `pshufb`. AVX2: one register per bit plane, two sub-blocks.
    #[inline(always)]
    unsafe fn gemv_parts<const VNNI: bool>(&self, x: &ActQ8KR) -> (__m256i, __m128i) {
        // SAFETY: `scales` is [u8; 16], `bsums` 16 i16: the 16 and 32 bytes loaded.
        let raw_sc = _mm_loadu_si128(self.scales.as_ptr() as *const __m128i);
        let bs = _mm256_loadu_si256(x.bsums.as_ptr() as *const __m256i);
        let low = _mm_set1_epi8(0x0F);
        let sc = _mm_and_si128(raw_sc, low);
        let mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(raw_sc), low));
        let m = fold256(_mm256_madd_epi16(mn, bs));
        let sc = _mm256_broadcastsi128_si256(sc);
        let three = _mm256_set1_epi8(3);
        let mut t = [_mm256_setzero_si256(); 2];
        for h in 0..2 {
            let raw = load32(&self.qs[32 * h..]);
            for k in 0..4 {
                let q = _mm256_and_si256(_mm256_srl_epi16(raw, _mm_cvtsi32_si128(2 * k)), three);
                let p = _mm256_maddubs_epi16(q, act32(x, 4 * h + k as usize));
                // i16 scales: sub-block g = 8h + 2k in the low half, g + 1 in the high half
                // (`pshufb` index 0x80: a zero byte)
                let g = 8 * h + 2 * k as usize;
                let pick = |g: usize| i16::from_le_bytes([g as u8, 0x80]);
                let rep = _mm256_set_m128i(_mm_set1_epi16(pick(g + 1)), _mm_set1_epi16(pick(g)));
                let i = k as usize % 2;
                t[i] = scaled::<VNNI>(t[i], p, _mm256_shuffle_epi8(sc, rep));
            }
        }
        (_mm256_add_epi32(t[0], t[1]), m)
    }
}

/// Interleaves the eight rows' super-blocks `rows` into `out`.
///
/// # Safety
/// The CPU must have AVX2 and F16C.
#[inline(always)]
unsafe fn interleave<W: RepackX86, const VNNI: bool>(rows: &[&W; 8], out: &mut Rows8) {
    let t = transpose_bytes(W::quants8(rows, &mut out.w));
    W::scales8::<VNNI>(t, out);
    let supers = rows.map(|row| row.supers());
    let d: [u16; 8] = std::array::from_fn(|r| u16::from_le_bytes(supers[r].0 .0));
    let dmin: [u16; 8] = std::array::from_fn(|r| u16::from_le_bytes(supers[r].1 .0));
    // SAFETY: `d` and `dmin` are 16 bytes each.
    out.d = _mm256_cvtph_ps(_mm_loadu_si128(d.as_ptr() as *const __m128i));
    out.dmin = _mm256_cvtph_ps(_mm_loadu_si128(dmin.as_ptr() as *const __m128i));
}

/// Activation dword `k` (elements `4k .. 4k + 4`) of `x` in every lane.
///
/// # Safety
/// The CPU must have AVX.
#[inline(always)]
unsafe fn act_dword(x: &ActQ8KR, k: usize) -> __m256i {
    let q = &x.qs[4 * k..4 * k + 4];
    _mm256_set1_epi32(i32::from_le_bytes([
        q[0] as u8, q[1] as u8, q[2] as u8, q[3] as u8,
    ]))
}

/// The scaled dot products of sub-block `j` of the eight rows with each of the `N` activation
/// rows `xs`, lane by lane (exact): each `w[k]` loaded once for the `N` rows, and with VNNI two
/// chains of `vpdpbusd` per row (one of eight ran at the instruction's latency).
///
/// # Safety
/// The CPU must have AVX2, and with `VNNI` AVX-512 VNNI and VL.
#[inline(always)]
unsafe fn sub_dots<W: RepackK, const N: usize, const VNNI: bool>(
    g: &Rows8,
    xs: &[&ActQ8KR; N],
    j: usize,
) -> [__m256i; N] {
    let len = 64 / W::SUBS;
    let k0 = j * len;
    let mut out = [_mm256_setzero_si256(); N];
    if VNNI {
        let mut t0 = [_mm256_setzero_si256(); N];
        let mut t1 = [_mm256_setzero_si256(); N];
        for k in (k0..k0 + len).step_by(2) {
            let (w0, w1) = (g.w[k], g.w[k + 1]);
            for a in 0..N {
                t0[a] = _mm256_dpbusd_epi32(t0[a], w0, act_dword(xs[a], k));
                t1[a] = _mm256_dpbusd_epi32(t1[a], w1, act_dword(xs[a], k + 1));
            }
        }
        for a in 0..N {
            out[a] = _mm256_mullo_epi32(_mm256_add_epi32(t0[a], t1[a]), g.sc[j]);
        }
    } else {
        let mut p = [_mm256_setzero_si256(); N];
        for k in k0..k0 + len {
            let w = g.w[k];
            for a in 0..N {
                p[a] = _mm256_add_epi16(p[a], _mm256_maddubs_epi16(w, act_dword(xs[a], k)));
            }
        }
        for a in 0..N {
            out[a] = _mm256_madd_epi16(p[a], g.sc[j]);
        }
    }
    out
}

/// The links of the two chains for super-block `g` of the eight rows, for each of the `N`
/// activation rows `xs`, all with `CHUNKS` chunks per super-block (ggml's gemm's or gemv's).
///
/// # Safety
/// The CPU must have AVX2 and FMA, and with `VNNI` AVX-512 VNNI and VL.
#[inline(always)]
unsafe fn links<W: RepackX86, const N: usize, const CHUNKS: usize, const VNNI: bool>(
    g: &Rows8,
    xs: [&ActQ8KR; N],
    acc: &mut [__m256],
    accm: &mut [__m256],
) {
    let (subs, pairs) = (W::SUBS / CHUNKS, W::SUBS / 2 / CHUNKS);
    let mut dd = [_mm256_setzero_ps(); N];
    let mut dm = [_mm256_setzero_ps(); N];
    for a in 0..N {
        let ad = _mm256_set1_ps(xs[a].d);
        (dd[a], dm[a]) = (_mm256_mul_ps(g.d, ad), _mm256_mul_ps(g.dmin, ad));
    }
    for c in 0..CHUNKS {
        let mut si = [_mm256_setzero_si256(); N];
        for j in c * subs..(c + 1) * subs {
            let d = sub_dots::<W, N, VNNI>(g, &xs, j);
            for a in 0..N {
                si[a] = _mm256_add_epi32(si[a], d[a]);
            }
        }
        for a in 0..N {
            let bsums = W::bsum_pairs(xs[a]);
            let mut mi = _mm256_setzero_si256();
            for p in c * pairs..(c + 1) * pairs {
                let b = (bsums[2 * p] as u16 as u32) | (bsums[2 * p + 1] as u16 as u32) << 16;
                mi = _mm256_add_epi32(mi, _mm256_madd_epi16(g.mp[p], _mm256_set1_epi32(b as i32)));
            }
            acc[a] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(si[a]), dd[a], acc[a]);
            accm[a] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mi), dm[a], accm[a]);
        }
    }
}

/// [`links`] for `N` activation rows that all go through ggml's gemm (`gemm`) or all through its
/// gemv.
///
/// # Safety
/// As [`links`].
#[inline(always)]
unsafe fn links_of<W: RepackX86, const N: usize, const VNNI: bool>(
    g: &Rows8,
    xs: [&ActQ8KR; N],
    gemm: bool,
    acc: &mut [__m256],
    accm: &mut [__m256],
) {
    match (gemm, W::GEMM_CHUNKS) {
        (false, _) => links::<W, N, 1, VNNI>(g, xs, acc, accm),
        (true, 2) => links::<W, N, 2, VNNI>(g, xs, acc, accm),
        (true, 4) => links::<W, N, 4, VNNI>(g, xs, acc, accm),
        _ => unreachable!("Q4_K and Q2_K have 4 and 2 chunks"),
    }
}

/// Eight consecutive weight rows (`rows[r]`, `nb` super-blocks each) against the tile's
/// activation rows, written as output rows `r0 .. r0 + 8`; `next` is the next group's bytes (or
/// fewer, or none), prefetched meanwhile.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C, and with `VNNI` AVX-512 VNNI and VL.
#[inline(always)]
unsafe fn rows8<W: RepackX86, const VNNI: bool>(
    rows: [&[W]; 8],
    next: &[u8],
    xs: &[&[ActQ8KR]],
    g: &mut Rows8,
    out: &Out,
    r0: usize,
) {
    let nb = rows[0].len();
    let mut acc = [_mm256_setzero_ps(); MAX_TILE];
    let mut accm = [_mm256_setzero_ps(); MAX_TILE];
    // the next group's bytes, a share per super-block
    let ahead = next.len().div_ceil(nb);
    for b in 0..nb {
        for line in (b * ahead..((b + 1) * ahead).min(next.len())).step_by(64) {
            // a hint, never a read (and `line < next.len()`)
            _mm_prefetch::<_MM_HINT_T0>(next.as_ptr().wrapping_add(line) as *const i8);
        }
        let blocks: [&W; 8] = std::array::from_fn(|r| &rows[r][b]);
        interleave::<W, VNNI>(&blocks, g);
        // the activation rows four at a time (each weight register loaded once for the four;
        // loaded per row, the loads were the bottleneck) where the four share the kernel (gemm
        // or gemv: the gemm's rows are the first `m - m % 4`), else one at a time
        let mut i = 0;
        while i < xs.len() {
            let gemm = xs[i][b].gemm;
            if i + 4 <= xs.len() && xs[i..i + 4].iter().all(|x| x[b].gemm == gemm) {
                let x4: [&ActQ8KR; 4] = std::array::from_fn(|k| &xs[i + k][b]);
                let (a, m) = (&mut acc[i..i + 4], &mut accm[i..i + 4]);
                links_of::<W, 4, VNNI>(g, x4, gemm, a, m);
                i += 4;
            } else {
                let (a, m) = (&mut acc[i..i + 1], &mut accm[i..i + 1]);
                links_of::<W, 1, VNNI>(g, [&xs[i][b]], gemm, a, m);
                i += 1;
            }
        }
    }
    for i in 0..xs.len() {
        let mut y = [0f32; 8];
        _mm256_storeu_ps(y.as_mut_ptr(), _mm256_sub_ps(acc[i], accm[i]));
        for (r, &y) in y.iter().enumerate() {
            out.set(r0 + r, i, y);
        }
    }
}

/// Decoding: every weight row of `w` against one activation row of the gemv, each super-block's
/// exact sums from horizontal sums (nothing to interleave for one activation row). Four rows at
/// a time, from four equal segments of the rows, so that each is read as one long stream (as
/// `kquants_x86.rs`'s decoding) and the four rows' sums and chains share instructions: their
/// links in the four lanes of a 128-bit register. The rows past the segments one at a time,
/// their links in scalar f32 (the same operations).
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C, and with `VNNI` AVX-512 F, BW, VL and VNNI; `w` whole
/// rows of `row_bytes` (whole super-blocks), `x` as many super-blocks as a row.
#[inline(always)]
unsafe fn gemv_rows<W: RepackX86, const VNNI: bool>(
    w: &[u8],
    row_bytes: usize,
    x: &[ActQ8KR],
    out: &Out,
) {
    let nb = row_bytes / size_of::<W>();
    let n_rows = w.len() / row_bytes;
    let row = |r: usize| -> &[W] { bytemuck::cast_slice(&w[r * row_bytes..][..row_bytes]) };
    let seg = n_rows / 4;
    for j in 0..seg {
        let rows: [&[W]; 4] = std::array::from_fn(|k| row(j + k * seg));
        let (mut acc, mut accm) = (_mm_setzero_ps(), _mm_setzero_ps());
        for (b, x) in x.iter().enumerate().take(nb) {
            let mut t = [_mm256_setzero_si256(); 4];
            let mut m = [_mm_setzero_si128(); 4];
            let mut d = [0u16; 8];
            let mut dmin = [0u16; 8];
            for k in 0..4 {
                let block = &rows[k][b];
                // a hint, never a read: in bounds or not (see `prefetch_ahead`)
                prefetch_ahead(block as *const W as *const u8, size_of::<W>());
                (t[k], m[k]) = block.gemv_parts::<VNNI>(x);
                let (dk, dmk) = block.supers();
                (d[k], dmin[k]) = (u16::from_le_bytes(dk.0), u16::from_le_bytes(dmk.0));
            }
            // SAFETY: `d` and `dmin` are 16 bytes each.
            let d = _mm_cvtph_ps(_mm_loadu_si128(d.as_ptr() as *const __m128i));
            let dmin = _mm_cvtph_ps(_mm_loadu_si128(dmin.as_ptr() as *const __m128i));
            let ad = _mm_set1_ps(x.d);
            acc = _mm_fmadd_ps(_mm_cvtepi32_ps(sums4(t)), _mm_mul_ps(d, ad), acc);
            accm = _mm_fmadd_ps(_mm_cvtepi32_ps(sums4_128(m)), _mm_mul_ps(dmin, ad), accm);
        }
        let mut y = [0f32; 4];
        _mm_storeu_ps(y.as_mut_ptr(), _mm_sub_ps(acc, accm));
        for (k, &y) in y.iter().enumerate() {
            out.set(j + k * seg, 0, y);
        }
    }
    for r in 4 * seg..n_rows {
        let (mut acc, mut accm) = (0f32, 0f32);
        for (block, x) in row(r).iter().zip(x) {
            let (t, m) = block.gemv_parts::<VNNI>(x);
            let (s, m) = (hsum_epi32(t), hsum4(m));
            let (d, dmin) = block.supers();
            acc = (s as f32).mul_add(f16c(d) * x.d, acc);
            accm = (m as f32).mul_add(f16c(dmin) * x.d, accm);
        }
        out.set(r, 0, acc - accm);
    }
}

/// # Safety
/// The CPU must have AVX2, FMA and F16C, and with `VNNI` AVX-512 VNNI and VL; `w` whole rows of
/// `row_bytes` (whole super-blocks), every activation row as long as a weight row has blocks,
/// 1..=`MAX_TILE` of them (the caller's `check_tile`).
#[inline(always)]
unsafe fn tile_body<W: RepackX86, const VNNI: bool>(
    w: &[u8],
    row_bytes: usize,
    xs: &[&[ActQ8KR]],
    out: &Out,
) {
    if let [x] = xs {
        if !x[0].gemm {
            return gemv_rows::<W, VNNI>(w, row_bytes, x, out);
        }
    }
    let mut g = Rows8 {
        w: [_mm256_setzero_si256(); 64],
        sc: [_mm256_setzero_si256(); 16],
        mp: [_mm256_setzero_si256(); 8],
        d: _mm256_setzero_ps(),
        dmin: _mm256_setzero_ps(),
    };
    // The eight rows of a group are consecutive in memory: while one group is worked on, the
    // next one is asked for, a share per super-block (the eight rows' streams read side by side
    // lagged on memory otherwise).
    let group_bytes = 8 * row_bytes;
    let mut groups = w.chunks_exact(group_bytes);
    for (k, group) in (&mut groups).enumerate() {
        let rows: [&[W]; 8] =
            std::array::from_fn(|r| bytemuck::cast_slice(&group[r * row_bytes..][..row_bytes]));
        let next = w.get((k + 1) * group_bytes..).unwrap_or(&[]);
        let next = &next[..next.len().min(group_bytes)];
        rows8::<W, VNNI>(rows, next, xs, &mut g, out, 8 * k);
    }
    let rest = groups.remainder();
    if !rest.is_empty() {
        let r0 = (w.len() - rest.len()) / row_bytes;
        rows_scalar::<W>(rest, row_bytes, xs, out, r0);
    }
}

/// # Safety
/// As `tile_body` without `VNNI`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_avx2_tf<W: RepackX86>(w: &[u8], row_bytes: usize, xs: &[&[ActQ8KR]], out: &Out) {
    tile_body::<W, false>(w, row_bytes, xs, out)
}

/// # Safety
/// As `tile_body` with `VNNI`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile_vnni_tf<W: RepackX86>(w: &[u8], row_bytes: usize, xs: &[&[ActQ8KR]], out: &Out) {
    tile_body::<W, true>(w, row_bytes, xs, out)
}

fn tile_avx2<W: RepackX86>(w: &[u8], row_bytes: usize, xs: &[&[ActQ8KR]], out: Out) {
    check_tile(w, row_bytes, size_of::<W>(), 1, xs, &out);
    // SAFETY: the shapes were asserted just above; `tile_fn` hands this kernel out only for
    // `Isa::Avx2` (AVX2, FMA and F16C), which `with_kernel` checked this CPU runs.
    unsafe { tile_avx2_tf::<W>(w, row_bytes, xs, &out) }
}

fn tile_vnni<W: RepackX86>(w: &[u8], row_bytes: usize, xs: &[&[ActQ8KR]], out: Out) {
    check_tile(w, row_bytes, size_of::<W>(), 1, xs, &out);
    // SAFETY: the shapes were asserted just above; `tile_fn` hands this kernel out only for
    // `Isa::Avx512Vnni` (AVX2, FMA, F16C, AVX-512 F/BW/VL/VNNI), which `with_kernel` checked
    // this CPU runs.
    unsafe { tile_vnni_tf::<W>(w, row_bytes, xs, &out) }
}

/// The x86 kernel for `ty` on `isa`, `None` for other sets and formats. Call the kernel only if
/// this CPU runs `isa` (`with_kernel` checks it).
pub(super) fn tile_fn(ty: GgmlType, isa: Isa) -> Option<TileFn<ActQ8KR>> {
    match (ty, isa) {
        (GgmlType::Q4_K, Isa::Avx2) => Some(tile_avx2::<BlockQ4K>),
        (GgmlType::Q4_K, Isa::Avx512Vnni) => Some(tile_vnni::<BlockQ4K>),
        (GgmlType::Q2_K, Isa::Avx2) => Some(tile_avx2::<BlockQ2K>),
        (GgmlType::Q2_K, Isa::Avx512Vnni) => Some(tile_vnni::<BlockQ2K>),
        _ => None,
    }
}
