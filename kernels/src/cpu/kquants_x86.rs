//! AVX2 and AVX-512 VNNI kernels of the K-quants against activations in element order, in the
//! order of ggml's `ggml_vec_dot_q<n>_K_q8_K` (see `kquants.rs` for the math and the order; the
//! section "Against activations in element order" below for the lanes), used for fewer than 8
//! activation rows. The unpacking of a super-block into registers (`KQuantX86`) is shared.
//!
//! # Safety
//!
//! Every `unsafe fn` here has two obligations. The instruction set: they run only inside the
//! `#[target_feature]` functions (`*_tf`), which the safe kernels (`tile_seq_avx2`,
//! `tile_seq_vnni`) call only for the set that `tile_fn_seq` handed them out for,
//! after `with_kernel` (cpu/mod.rs) checked that this CPU runs it. Memory: each safe kernel
//! asserts its shapes on entry (`check_tile`: `row_bytes` whole super-blocks, `w` whole rows,
//! every activation row exactly `nb = row_bytes / size_of::<W>()` super-blocks, an output of the
//! weight rows by the activation rows), and the raw reads below stay in bounds by those: weight
//! row `r < w.len() / row_bytes` starts at byte `r · row_bytes`, super-block `b < nb` of a row
//! and of an activation row exists. The fixed-width loads from a block's or an activation's own
//! arrays are in bounds by the arrays' types (each says which).

use std::arch::x86_64::*;

use gguf_importer::quants::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K};
use gguf_importer::GgmlType;

use super::kquants::{k4_scale_min_words, scale_words, GgmlMins, GgmlVecDot, KQuant};
use super::quantize_act::ActQ8KSeq;
use super::x86_util::{f16c, hsum_ps, prefetch_ahead};
use super::{check_tile, Isa, Out, TileFn};

/// A super-block unpacked into registers.
pub(super) trait KQuantX86: KQuant {
    /// The 256 `q` of `KQuant::unpack`, 32 per register, in element order.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    unsafe fn unpack_avx2(&self) -> [__m256i; 8];

    /// `KQuant::scales` in registers: the 16 group scales (i8) and mins (u8), group order.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    unsafe fn scales_avx2(&self) -> (__m128i, __m128i);
}

/// Q4_K/Q5_K's 8 scales and 8 mins ([`k4_scale_min_words`]), each repeated for the two groups of
/// 16 of its sub-block of 32.
///
/// # Safety
/// The CPU must have AVX2 (SSSE3's `pshufb`).
#[inline(always)]
unsafe fn scales_k4(s: &[u8; 12]) -> (__m128i, __m128i) {
    let (sc, mn) = k4_scale_min_words(s);
    let twice = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    let sc = _mm_shuffle_epi8(_mm_setr_epi32(sc[0] as i32, sc[1] as i32, 0, 0), twice);
    let mn = _mm_shuffle_epi8(_mm_setr_epi32(mn[0] as i32, mn[1] as i32, 0, 0), twice);
    (sc, mn)
}

/// The first 32 bytes of `p`.
///
/// # Safety
/// The CPU must have AVX.
#[inline(always)]
unsafe fn load(p: &[u8]) -> __m256i {
    // Every caller passes a subslice of a fixed-size array at a constant offset, so this folds
    // away; it keeps the read in bounds whatever the caller passes.
    assert!(p.len() >= 32, "a 256-bit load from {} bytes", p.len());
    // SAFETY: p has at least 32 readable bytes (asserted above); `loadu` takes any alignment.
    _mm256_loadu_si256(p.as_ptr() as *const __m256i)
}

/// Bit `bit` of every byte, as 0 or 1.
///
/// # Safety
/// The CPU must have AVX2.
#[inline(always)]
unsafe fn bit_of(v: __m256i, bit: i32) -> __m256i {
    _mm256_and_si256(
        _mm256_srl_epi16(v, _mm_cvtsi32_si128(bit)),
        _mm256_set1_epi8(1),
    )
}

/// Bits `2k..2k + 2` of every byte of `v`, k = 0..4, as four registers.
///
/// # Safety
/// The CPU must have AVX2.
#[inline(always)]
unsafe fn crumbs(v: __m256i) -> [__m256i; 4] {
    let m = _mm256_set1_epi8(3);
    [
        _mm256_and_si256(v, m),
        _mm256_and_si256(_mm256_srli_epi16::<2>(v), m),
        _mm256_and_si256(_mm256_srli_epi16::<4>(v), m),
        _mm256_and_si256(_mm256_srli_epi16::<6>(v), m),
    ]
}

/// Low and high nibbles of every byte.
///
/// # Safety
/// The CPU must have AVX2.
#[inline(always)]
unsafe fn nibbles(v: __m256i) -> (__m256i, __m256i) {
    let m = _mm256_set1_epi8(0x0F);
    (
        _mm256_and_si256(v, m),
        _mm256_and_si256(_mm256_srli_epi16::<4>(v), m),
    )
}

impl KQuantX86 for BlockQ2K {
    /// `scales[g]`: | min (4 bits) | scale (4 bits) |
    #[inline(always)]
    unsafe fn scales_avx2(&self) -> (__m128i, __m128i) {
        // SAFETY: `scales` is [u8; 16], the 16 bytes loaded.
        let v = _mm_loadu_si128(self.scales.as_ptr() as *const __m128i);
        let m = _mm_set1_epi8(0x0F);
        (
            _mm_and_si128(v, m),
            _mm_and_si128(_mm_srli_epi16::<4>(v), m),
        )
    }
    #[inline(always)]
    unsafe fn unpack_avx2(&self) -> [__m256i; 8] {
        let [a, b, c, d] = crumbs(load(&self.qs[..32]));
        let [e, f, g, h] = crumbs(load(&self.qs[32..]));
        [a, b, c, d, e, f, g, h]
    }
}

impl KQuantX86 for BlockQ3K {
    /// The 16 6-bit scales (layout in `kquants.rs`) from u32 words `a, b, c`: low nibbles of
    /// groups 0..4, 4..8, 8..12, 12..16 in `a`, `b`, `a >> 4`, `b >> 4`; their high two bits in
    /// `c >> 0, 2, 4, 6`; minus 32.
    #[inline(always)]
    unsafe fn scales_avx2(&self) -> (__m128i, __m128i) {
        let [a, b, c] = scale_words(&self.scales);
        let (lo, hi) = (0x0f0f_0f0f, 0x0303_0303);
        let w = [
            (a & lo) | ((c & hi) << 4),
            (b & lo) | (((c >> 2) & hi) << 4),
            ((a >> 4) & lo) | (((c >> 4) & hi) << 4),
            ((b >> 4) & lo) | (((c >> 6) & hi) << 4),
        ];
        let sc = _mm_setr_epi32(w[0] as i32, w[1] as i32, w[2] as i32, w[3] as i32);
        (_mm_sub_epi8(sc, _mm_set1_epi8(32)), _mm_setzero_si128())
    }
    #[inline(always)]
    unsafe fn unpack_avx2(&self) -> [__m256i; 8] {
        let hm = load(&self.hmask);
        let [a, b, c, d] = crumbs(load(&self.qs[..32]));
        let [e, f, g, h] = crumbs(load(&self.qs[32..]));
        let mut q = [a, b, c, d, e, f, g, h];
        for (k, q) in q.iter_mut().enumerate() {
            *q = _mm256_or_si256(*q, _mm256_slli_epi16::<2>(bit_of(hm, k as i32)));
        }
        q
    }
}

impl KQuantX86 for BlockQ4K {
    #[inline(always)]
    unsafe fn scales_avx2(&self) -> (__m128i, __m128i) {
        scales_k4(&self.scales)
    }
    #[inline(always)]
    unsafe fn unpack_avx2(&self) -> [__m256i; 8] {
        let mut q = [_mm256_setzero_si256(); 8];
        for c in 0..4 {
            (q[2 * c], q[2 * c + 1]) = nibbles(load(&self.qs[32 * c..]));
        }
        q
    }
}

impl KQuantX86 for BlockQ5K {
    #[inline(always)]
    unsafe fn scales_avx2(&self) -> (__m128i, __m128i) {
        scales_k4(&self.scales)
    }
    #[inline(always)]
    unsafe fn unpack_avx2(&self) -> [__m256i; 8] {
        let hb = load(&self.qh);
        let mut q = [_mm256_setzero_si256(); 8];
        for c in 0..4 {
            let (lo, hi) = nibbles(load(&self.qs[32 * c..]));
            q[2 * c] = _mm256_or_si256(lo, _mm256_slli_epi16::<4>(bit_of(hb, 2 * c as i32)));
            q[2 * c + 1] =
                _mm256_or_si256(hi, _mm256_slli_epi16::<4>(bit_of(hb, 2 * c as i32 + 1)));
        }
        q
    }
}

impl KQuantX86 for BlockQ6K {
    #[inline(always)]
    unsafe fn scales_avx2(&self) -> (__m128i, __m128i) {
        (
            // SAFETY: `scales` is [i8; 16], the 16 bytes loaded.
            _mm_loadu_si128(self.scales.as_ptr() as *const __m128i),
            _mm_setzero_si128(),
        )
    }
    #[inline(always)]
    unsafe fn unpack_avx2(&self) -> [__m256i; 8] {
        let mut q = [_mm256_setzero_si256(); 8];
        for h in 0..2 {
            let (lo0, hi0) = nibbles(load(&self.ql[64 * h..]));
            let (lo1, hi1) = nibbles(load(&self.ql[64 * h + 32..]));
            let [c0, c1, c2, c3] = crumbs(load(&self.qh[32 * h..]));
            q[4 * h] = _mm256_or_si256(lo0, _mm256_slli_epi16::<4>(c0));
            q[4 * h + 1] = _mm256_or_si256(lo1, _mm256_slli_epi16::<4>(c1));
            q[4 * h + 2] = _mm256_or_si256(hi0, _mm256_slli_epi16::<4>(c2));
            q[4 * h + 3] = _mm256_or_si256(hi1, _mm256_slli_epi16::<4>(c3));
        }
        q
    }
}

// ---------------------------------------------------------------------------------------------
// Against activations in element order (`ActQ8KSeq`).
//
// `unpack_avx2` leaves elements 32j..32j + 32 in register `j`, groups 2j and 2j + 1 (16 each) in
// its two 128-bit halves, so each register meets its 32 activations directly (no transposes),
// with one scale per half:
//
// ```text
// p     = maddubs(q[j], qx[32j..32j+32])        16 × i16: pairs of q·qx (≤ 2·63·127 = 16002)
//         (Q3_K: - maddubs(4, qx[..]), the offset in every product, as ggml's)
// sumi += madd(p, [sc[2j]; 8 | sc[2j+1]; 8])    8 × i32: Σ sc·q·qx     (VNNI: dpwssd)
// sumi -= 32 · madd(bsums, sc)                  Q6_K's offset, once per super-block
// mins:   Q2_K acc   = fma(dmin, madd(mn, bsums), acc)            8 lanes, before sumi
//         Q4_K acc_m = fma(dmin, madd(mn8, hadd(bsums)), acc_m)   4 lanes
//         Q5_K summs = fma(dmin, Σ madd(mn8, hadd(bsums)), summs) scalar
// acc   = fma(d, sumi, acc)
// ```
//
// which is ggml's `ggml_vec_dot_q*_K_q8_K` on AVX2 lane for lane, the float operations in its
// order (`kquants.rs`'s module doc; its `tile_seq_scalar` is the definition), so the results are
// its bits; |sumi| ≤ 256·63·127·128 < 2³¹.

/// `pshufb` masks for register `j`'s scales from a register holding 8 i16 group scales in each
/// half: mask `k` (= j % 4) broadcasts i16 `2k` in the low half and `2k + 1` in the high half.
const fn group_scale_masks() -> [[u8; 32]; 4] {
    let mut m = [[0u8; 32]; 4];
    let mut k = 0;
    while k < 4 {
        let mut e = 0;
        while e < 8 {
            m[k][2 * e] = 4 * k as u8;
            m[k][2 * e + 1] = 4 * k as u8 + 1;
            m[k][16 + 2 * e] = 4 * k as u8 + 2;
            m[k][16 + 2 * e + 1] = 4 * k as u8 + 3;
            e += 1;
        }
        k += 1;
    }
    m
}
const GROUP_SCALE_MASKS: [[u8; 32]; 4] = group_scale_masks();

/// Weight rows per pass in decoding: AVX-512 has 32 vector registers, AVX2 16.
const DECODE_ROWS_VNNI: usize = 4;
const DECODE_ROWS_AVX2: usize = 2;

/// The 8 × i16 scales of each register `j` of a super-block (see [`group_scale_masks`]), the 16
/// group scales (i16) and mins (u16) for the `bsums` terms, and the 8 sub-block mins (i16) of
/// Q4_K/Q5_K (the even groups' mins: each sub-block's two groups share one).
///
/// # Safety
/// The CPU must have AVX2.
#[inline(always)]
unsafe fn seq_scales<W: KQuantX86>(
    block: &W,
    masks: &[__m256i; 4],
) -> ([__m256i; 8], __m256i, __m256i, __m128i) {
    let (sc, mn) = block.scales_avx2(); // 16 × i8, 16 × u8, group order
    let (sc_lo, sc_hi) = (
        _mm_cvtepi8_epi16(sc),
        _mm_cvtepi8_epi16(_mm_srli_si128::<8>(sc)),
    );
    let (lo, hi) = (
        _mm256_broadcastsi128_si256(sc_lo),
        _mm256_broadcastsi128_si256(sc_hi),
    );
    let scj =
        std::array::from_fn(|j| _mm256_shuffle_epi8(if j < 4 { lo } else { hi }, masks[j % 4]));
    let even = _mm_setr_epi8(0, -1, 2, -1, 4, -1, 6, -1, 8, -1, 10, -1, 12, -1, 14, -1);
    (
        scj,
        _mm256_set_m128i(sc_hi, sc_lo),
        _mm256_cvtepu8_epi16(mn),
        _mm_shuffle_epi8(mn, even),
    )
}

/// ggml's `hsum_float_8` of `acc` (`hsum_ps`: the same additions, one with its operands swapped,
/// which IEEE addition does not see) plus the mins kept apart (Q4_K's 4-lane `acc_m`, Q5_K's
/// `summs`), in ggml's order.
///
/// # Safety
/// The CPU must have AVX.
#[inline(always)]
unsafe fn finish<W: GgmlVecDot>(acc: __m256, acc_m: __m128, summs: f32) -> f32 {
    let y = hsum_ps(acc);
    match W::MINS {
        GgmlMins::Lanes4 => {
            let m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
            y + _mm_cvtss_f32(_mm_add_ss(m, _mm_movehdup_ps(m)))
        }
        GgmlMins::Scalar => y + summs,
        GgmlMins::None | GgmlMins::Lanes8 => y,
    }
}

/// `R` weight rows (`blocks[r]`, `nb` super-blocks each) against one activation row: each
/// activation register is loaded once for all `R`, and `R` independent chains of multiply-adds
/// are in flight.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C, and with `VNNI` AVX-512 VNNI and VL. Every `blocks[r]`
/// and `x` must point at `nb` consecutive readable super-blocks (`W` has alignment 1).
#[inline(always)]
unsafe fn decode_rows<W: KQuantX86 + GgmlVecDot, const R: usize, const VNNI: bool>(
    blocks: [*const W; R],
    nb: usize,
    x: *const ActQ8KSeq,
    masks: &[__m256i; 4],
) -> [f32; R] {
    const {
        assert!(
            W::INLINE_OFFSET || W::OFFSET == 0 || W::OFFSET == 32,
            "an offset through the group sums is Q6_K's 32 (a shift by 5, as ggml's)"
        )
    };
    let off = _mm256_set1_epi8(W::OFFSET as i8);
    let mut acc = [_mm256_setzero_ps(); R];
    let mut acc_m = [_mm_setzero_ps(); R];
    let mut summs = [0f32; R];
    for b in 0..nb {
        // SAFETY: b < nb, and x points at nb activation super-blocks (this function's contract).
        let x = &*x.add(b);
        // SAFETY: `bsums` is 16 i16, the 32 bytes loaded.
        let bsums = _mm256_loadu_si256(x.bsums.as_ptr() as *const __m256i);
        // SAFETY: bytes 32·j..32·j + 32 (j < 8) of the 256 `qs`.
        let qx: [__m256i; 8] =
            std::array::from_fn(
                |j| _mm256_loadu_si256(x.qs.as_ptr().add(32 * j) as *const __m256i),
            );
        // Q3_K: 4 · (pair sums of qx), taken off every product below (ggml's `q3h` part), once
        // per activation super-block for all R rows
        let offs: [__m256i; 8] = if W::INLINE_OFFSET {
            qx.map(|qx| _mm256_maddubs_epi16(off, qx))
        } else {
            [_mm256_setzero_si256(); 8]
        };
        // Q4_K, Q5_K: the 8 sub-block sums (ggml's `q8s`)
        let sub_sums = _mm_hadd_epi16(
            _mm256_castsi256_si128(bsums),
            _mm256_extracti128_si256::<1>(bsums),
        );
        for r in 0..R {
            // SAFETY: b < nb, and blocks[r] points at nb weight super-blocks (this function's
            // contract); `W` is bytes, alignment 1.
            let block = &*blocks[r].add(b);
            // a hint, never a read: in bounds or not (see `prefetch_ahead`)
            prefetch_ahead(block as *const W as *const u8, size_of::<W>());
            let q = block.unpack_avx2();
            let (scj, sc16, mn16, mn8) = seq_scales(block, masks);
            // two chains of four multiply-adds rather than one of eight (exact: integers)
            let mut sumi = [_mm256_setzero_si256(); 2];
            for j in 0..8 {
                let mut p = _mm256_maddubs_epi16(q[j], qx[j]);
                if W::INLINE_OFFSET {
                    p = _mm256_sub_epi16(p, offs[j]);
                }
                sumi[j % 2] = if VNNI {
                    _mm256_dpwssd_epi32(sumi[j % 2], p, scj[j])
                } else {
                    _mm256_add_epi32(sumi[j % 2], _mm256_madd_epi16(p, scj[j]))
                };
            }
            let mut sumi = _mm256_add_epi32(sumi[0], sumi[1]);
            if !W::INLINE_OFFSET && W::OFFSET != 0 {
                let o = _mm256_slli_epi32::<5>(_mm256_madd_epi16(bsums, sc16));
                sumi = _mm256_sub_epi32(sumi, o);
            }
            let (wd, wdmin) = block.supers();
            let (d, dmin) = (x.d * f16c(wd), -x.d * f16c(wdmin));
            match W::MINS {
                GgmlMins::None => {}
                GgmlMins::Lanes8 => {
                    let m = _mm256_cvtepi32_ps(_mm256_madd_epi16(mn16, bsums));
                    acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dmin), m, acc[r]);
                }
                GgmlMins::Lanes4 => {
                    let m = _mm_cvtepi32_ps(_mm_madd_epi16(mn8, sub_sums));
                    acc_m[r] = _mm_fmadd_ps(_mm_set1_ps(dmin), m, acc_m[r]);
                }
                GgmlMins::Scalar => {
                    let m = _mm_madd_epi16(mn8, sub_sums);
                    let m = _mm_add_epi32(m, _mm_unpackhi_epi64(m, m));
                    let m = _mm_add_epi32(m, _mm_shuffle_epi32::<0b01>(m));
                    let m = _mm_cvtsi32_ss(_mm_setzero_ps(), _mm_cvtsi128_si32(m));
                    summs[r] =
                        _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(dmin), m, _mm_set_ss(summs[r])));
                }
            }
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc[r]);
        }
    }
    std::array::from_fn(|r| finish::<W>(acc[r], acc_m[r], summs[r]))
}

/// Decoding (one activation row), `R` weight rows per pass from `R` equal segments of the rows,
/// so that each is read as one long stream (as in `legacy_x86.rs`).
///
/// # Safety
/// As [`decode_rows`]; `x` must point at `row_bytes / size_of::<W>()` readable super-blocks.
#[inline(always)]
unsafe fn decode_seq<W: KQuantX86 + GgmlVecDot, const R: usize, const VNNI: bool>(
    w: &[u8],
    row_bytes: usize,
    x: *const ActQ8KSeq,
    out: Out,
    masks: &[__m256i; 4],
) {
    const {
        assert!(
            align_of::<W>() == 1,
            "weight blocks are read at any byte offset"
        )
    };
    let nb = row_bytes / size_of::<W>();
    let n_rows = w.len() / row_bytes;
    // Row r < n_rows: bytes r·row_bytes.. of w, nb super-blocks (nb · size_of::<W>() ≤
    // row_bytes), all within w ((r + 1) · row_bytes ≤ n_rows · row_bytes ≤ w.len()): what
    // `decode_rows` needs of `blocks`. Every r below is < n_rows: k·seg + j < R·seg ≤ n_rows.
    let row = |r: usize| w.as_ptr().add(r * row_bytes) as *const W;
    let seg = n_rows / R;
    for j in 0..seg {
        // SAFETY: rows k·seg + j < n_rows (see `row`), x nb super-blocks (this function's
        // contract); the CPU's sets are this function's.
        let y = decode_rows::<W, R, VNNI>(std::array::from_fn(|k| row(k * seg + j)), nb, x, masks);
        for (k, y) in y.iter().enumerate() {
            out.set(k * seg + j, 0, *y);
        }
    }
    for r in R * seg..n_rows {
        // SAFETY: as above, r < n_rows.
        out.set(r, 0, decode_rows::<W, 1, VNNI>([row(r)], nb, x, masks)[0]);
    }
}

/// Each activation row of `xs` (decoding: one) against all weight rows, in element order.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C, and with `VNNI` AVX-512 VNNI and VL.
#[inline(always)]
unsafe fn tile_seq_body<W: KQuantX86 + GgmlVecDot, const VNNI: bool>(
    w: &[u8],
    row_bytes: usize,
    xs: &[&[ActQ8KSeq]],
    out: Out,
) {
    let nb = row_bytes / size_of::<W>();
    let masks: [__m256i; 4] = std::array::from_fn(|k| load(&GROUP_SCALE_MASKS[k]));
    for (i, x) in xs.iter().enumerate() {
        // once per activation row, not per block: `decode_seq`'s reads of x rely on it (the
        // kernels' `check_tile` has asserted it already, with the shapes)
        assert!(x.len() >= nb, "activation row shorter than a weight row");
        let out = out.skip_cols(i);
        // SAFETY: x holds at least nb super-blocks (asserted above), which is all that
        // `decode_seq` reads of it; the CPU's sets are this function's.
        if VNNI {
            decode_seq::<W, DECODE_ROWS_VNNI, true>(w, row_bytes, x.as_ptr(), out, &masks);
        } else {
            decode_seq::<W, DECODE_ROWS_AVX2, false>(w, row_bytes, x.as_ptr(), out, &masks);
        }
    }
}

/// # Safety
/// The CPU must have AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_seq_avx2_tf<W: KQuantX86 + GgmlVecDot>(
    w: &[u8],
    rb: usize,
    xs: &[&[ActQ8KSeq]],
    out: Out,
) {
    tile_seq_body::<W, false>(w, rb, xs, out)
}

/// # Safety
/// The CPU must have AVX2, FMA, F16C and AVX-512 F, BW, VL and VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile_seq_vnni_tf<W: KQuantX86 + GgmlVecDot>(
    w: &[u8],
    rb: usize,
    xs: &[&[ActQ8KSeq]],
    out: Out,
) {
    tile_seq_body::<W, true>(w, rb, xs, out)
}

fn tile_seq_avx2<W: KQuantX86 + GgmlVecDot>(w: &[u8], rb: usize, xs: &[&[ActQ8KSeq]], out: Out) {
    check_tile(w, rb, size_of::<W>(), 1, xs, &out);
    // SAFETY: the CPU has AVX2, FMA and F16C: `tile_fn_seq` hands this kernel out for
    // `Isa::Avx2` only, and `with_kernel` checked that this CPU runs it before asking. (The
    // shapes are asserted just above, and again by `tile_seq_body`.)
    unsafe { tile_seq_avx2_tf::<W>(w, rb, xs, out) }
}

fn tile_seq_vnni<W: KQuantX86 + GgmlVecDot>(w: &[u8], rb: usize, xs: &[&[ActQ8KSeq]], out: Out) {
    check_tile(w, rb, size_of::<W>(), 1, xs, &out);
    // SAFETY: the CPU has AVX-512 VNNI and AVX2: `tile_fn_seq` hands this kernel out for
    // `Isa::Avx512Vnni` only, and `with_kernel` checked that this CPU runs it before asking.
    // (The shapes are asserted just above, and again by `tile_seq_body`.)
    unsafe { tile_seq_vnni_tf::<W>(w, rb, xs, out) }
}

/// The x86 kernel for the K-quant `ty` on `isa` against activations in element order. Call the
/// kernel only if this CPU runs `isa` (`with_kernel` checks it).
pub(super) fn tile_fn_seq(ty: GgmlType, isa: Isa) -> Option<TileFn<ActQ8KSeq>> {
    macro_rules! pick {
        ($f:ident) => {
            match ty {
                GgmlType::Q2_K => Some($f::<BlockQ2K> as TileFn<ActQ8KSeq>),
                GgmlType::Q3_K => Some($f::<BlockQ3K>),
                GgmlType::Q4_K => Some($f::<BlockQ4K>),
                GgmlType::Q5_K => Some($f::<BlockQ5K>),
                GgmlType::Q6_K => Some($f::<BlockQ6K>),
                _ => None,
            }
        };
    }
    match isa {
        Isa::Avx2 => pick!(tile_seq_avx2),
        Isa::Avx512Vnni => pick!(tile_seq_vnni),
        _ => None,
    }
}
