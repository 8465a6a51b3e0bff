//! AVX2 and AVX-512 VNNI kernels of the 32-element formats, in ggml's float order (see
//! `legacy.rs`). Each weight block is unpacked once per tile into one 256-bit register, in
//! element order, and meets each activation block of the tile there, as in ggml's
//! `ggml_vec_dot_*_q8_*`:
//!
//! ```text
//! P   = exact 4-byte dot products per 32-bit lane
//! acc = fma(set1(wd · ad), cvt(P), acc)        one accumulator per (weight row, activation row)
//! ```
//!
//! The float operations are the scalar kernel's; only the integer sums `P` take other routes:
//!
//! ```text
//! AVX-512 VNNI, one activation row:  P = dpbusd(-c·Σa, q, a)      q unsigned: the stored integers
//!                                                                  (Q8_0: w + 128), c their offset
//! AVX-512 VNNI, a tile of rows:      P = dpbusd(-128·Σw, a + 128, w)   w signed, -128·Σw once per
//!                                                                  weight block for the whole tile
//! AVX2:                              P = madd(maddubs(|w|, sign(a, w)), 1)   (or q, a when unsigned)
//! ```
//!
//! (`Σa`, `Σw` per group of four; `a + 128` is `a ^ 0x80` as an unsigned byte.) The products
//! `wd · ad` of a weight block with the tile's activation blocks are one vector multiply, and the
//! min terms of Q4_1/Q5_1 (`summs = fma(wm, as, summs)`) one vector multiply-add with the
//! activation rows in the lanes; each lane is still its own chain in block order, so every output
//! takes exactly the scalar kernel's roundings.
//!
//! # Safety
//!
//! Every `unsafe fn` here has two obligations. The instruction set: they run only inside the
//! `#[target_feature]` functions (`tile_avx2_tf`, `tile_vnni_tf`), which the safe kernels call
//! only for the set that `tile_fn` handed them out for, after `with_kernel` (cpu/mod.rs) checked
//! that this CPU runs it. Memory: each safe kernel asserts its shapes on entry (`check_tile`:
//! `row_bytes` whole blocks, `w` whole rows, activation rows of exactly
//! `nb = row_bytes / size_of::<W>()` blocks (at most 8 of them, `by_tile!` asserts), an output of
//! the weight rows by the activation rows), and the raw reads stay in bounds by those: weight row `r < w.len() / row_bytes` starts
//! at byte `r · row_bytes` and holds `nb` blocks, activation row `i` holds `nb` blocks, and the
//! tile's factors ([`TileActs`]) and the scale products `dd` are sized from `nb` and `N` in
//! `tile_n`. The fixed-width loads from a block's or an activation's own arrays are in bounds by
//! the arrays' types; the aligned ones read [`Bytes32`] and [`Lanes`], `align(32)` by type.

use std::arch::x86_64::*;

use gguf_importer::quants::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, F16};
use gguf_importer::GgmlType;

use super::legacy::Legacy;
use super::quantize_act::ActQ8Block;
use super::x86_util::prefetch_ahead;
use super::{check_tile, Isa, Out, TileFn, TILE};

/// A weight block's integers in a register.
pub(super) trait LegacyX86: Legacy {
    /// [`Legacy::raw`] in a register (unsigned bytes, or signed for Q8_0). `AVX512`: the CPU has
    /// AVX-512 BW and VL as well.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    unsafe fn load<const AVX512: bool>(&self) -> __m256i;
}

/// The 16 bytes of nibbles as 32 bytes: low nibbles (elements 0..16) first.
///
/// # Safety
/// The CPU must have AVX2.
#[inline(always)]
unsafe fn nibbles(qs: &[u8; 16]) -> __m256i {
    // SAFETY: qs is 16 bytes, the 128 bits loaded.
    let v = _mm256_broadcastsi128_si256(_mm_loadu_si128(qs.as_ptr() as *const __m128i));
    // shifting the high half's 32-bit lanes by 4 moves each byte's high nibble down (and the next
    // byte's low nibble up, which the mask drops)
    let v = _mm256_srlv_epi32(v, _mm256_set_epi32(4, 4, 4, 4, 0, 0, 0, 0));
    _mm256_and_si256(v, _mm256_set1_epi8(0x0F))
}

/// Adds 16 to byte `e` where bit `e` of the little-endian `qh` is set.
///
/// # Safety
/// The CPU must have AVX2, and with `AVX512` AVX-512 BW and VL.
#[inline(always)]
unsafe fn fifth_bits<const AVX512: bool>(low: __m256i, qh: [u8; 4]) -> __m256i {
    let qh = u32::from_le_bytes(qh);
    if AVX512 {
        _mm256_mask_add_epi8(low, qh, low, _mm256_set1_epi8(16))
    } else {
        // byte e gets byte e / 8 of qh, then its bit e % 8 is tested
        let bytes = _mm256_shuffle_epi8(
            _mm256_set1_epi32(qh as i32),
            _mm256_set_epi64x(
                0x0303_0303_0303_0303,
                0x0202_0202_0202_0202,
                0x0101_0101_0101_0101,
                0,
            ),
        );
        let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
        let set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
        _mm256_or_si256(low, _mm256_and_si256(set, _mm256_set1_epi8(16)))
    }
}

impl LegacyX86 for BlockQ4_0 {
    #[inline(always)]
    unsafe fn load<const AVX512: bool>(&self) -> __m256i {
        nibbles(&self.qs)
    }
}

impl LegacyX86 for BlockQ4_1 {
    #[inline(always)]
    unsafe fn load<const AVX512: bool>(&self) -> __m256i {
        nibbles(&self.qs)
    }
}

impl LegacyX86 for BlockQ5_0 {
    #[inline(always)]
    unsafe fn load<const AVX512: bool>(&self) -> __m256i {
        fifth_bits::<AVX512>(nibbles(&self.qs), self.qh)
    }
}

impl LegacyX86 for BlockQ5_1 {
    #[inline(always)]
    unsafe fn load<const AVX512: bool>(&self) -> __m256i {
        fifth_bits::<AVX512>(nibbles(&self.qs), self.qh)
    }
}

impl LegacyX86 for BlockQ8_0 {
    #[inline(always)]
    unsafe fn load<const AVX512: bool>(&self) -> __m256i {
        // SAFETY: qs is [i8; 32], the 256 bits loaded.
        _mm256_loadu_si256(self.qs.as_ptr() as *const __m256i)
    }
}

/// An f16 as f32 in every lane (F16C).
///
/// # Safety
/// The CPU must have AVX and F16C.
#[inline(always)]
unsafe fn f16_set1(h: F16) -> __m256 {
    _mm256_cvtph_ps(_mm_set1_epi16(i16::from_le_bytes(h.0)))
}

/// ggml's `hsum_float_8`, operation for operation.
///
/// # Safety
/// The CPU must have AVX.
#[inline(always)]
unsafe fn hsum8(x: __m256) -> f32 {
    let r = _mm_add_ps(_mm256_extractf128_ps::<1>(x), _mm256_castps256_ps128(x));
    let r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    _mm_cvtss_f32(_mm_add_ss(r, _mm_movehdup_ps(r)))
}

/// 32 bytes, 32-byte aligned.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Bytes32([i8; 32]);

/// Eight f32 or i32 lanes, 32-byte aligned.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Lanes<T>([T; 8]);

/// A tile's activation factors, block-major (the quantized values are read in place).
struct TileActs {
    /// Tiles of several rows: `qs[b · N + i]` is block `b` of activation row `i`, as quantized
    /// (signed), or `a + 128` (`a ^ 0x80`) for the VNNI kernel; block-major and without the
    /// scales, so that the tile stays in the L1 cache.
    qs: Vec<Bytes32>,
    /// `-c · Σa` per group of four elements, `c` the weight format's offset (128 for Q8_0): the
    /// VNNI kernel of one activation row.
    init: Vec<Lanes<i32>>,
    /// The blocks' scales `ad`, activation row `i` in lane `i`.
    ad: Vec<Lanes<f32>>,
    /// The blocks' `s = d·Σa`, likewise (formats with a min).
    asum: Vec<Lanes<f32>>,
}

impl TileActs {
    /// `offset`: the `c` of `init` (none if 0); `bias`: 0 or `i8::MIN`, xor-ed into `qs`.
    fn new(xs: &[&[ActQ8Block]], nb: usize, offset: i32, sums: bool, bias: i8) -> Self {
        let n = xs.len();
        let mut t = TileActs {
            qs: vec![Bytes32([0; 32]); if n > 1 { nb * n } else { 0 }],
            init: Vec::with_capacity(if offset != 0 { nb } else { 0 }),
            ad: vec![Lanes([0.0; 8]); nb],
            asum: vec![Lanes([0.0; 8]); if sums { nb } else { 0 }],
        };
        for b in 0..nb {
            for (i, x) in xs.iter().enumerate() {
                let x = &x[b];
                if n > 1 {
                    t.qs[b * n + i] = Bytes32(x.qs.map(|q| q ^ bias));
                }
                t.ad[b].0[i] = x.d;
                if sums {
                    t.asum[b].0[i] = x.s;
                }
            }
            if offset != 0 {
                let qs = &xs[0][b].qs;
                t.init.push(Lanes(std::array::from_fn(|g| {
                    -offset * qs[4 * g..4 * g + 4].iter().map(|&q| q as i32).sum::<i32>()
                })));
            }
        }
        t
    }
}

/// `R` weight rows (`blocks[r]`, `nb` blocks each) against the `N` activation rows `xs` (with
/// their factors `t`): returns `y[r][i]`. `dd`: room for `nb · R` vectors.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C, and with `VNNI` AVX-512 BW, VL and VNNI. Every
/// `blocks[r]` and (with `N == 1`) `xs[0]` must point at `nb` consecutive readable blocks (`W`
/// has alignment 1); `t` must be `tile_n`'s `TileActs` of these `N` rows and `nb` blocks (so
/// `t.ad` has `nb` entries, `t.asum` `nb` if `W::HAS_MIN`, `t.init` `nb` in the VNNI kernel of
/// one row of an offset format, `t.qs` `nb · N` if `N > 1`), and `dd.len() ≥ nb · R` if `N > 1`.
#[inline(always)]
unsafe fn rows<W: LegacyX86, const R: usize, const N: usize, const VNNI: bool>(
    blocks: [*const W; R],
    nb: usize,
    xs: &[*const ActQ8Block; N],
    t: &TileActs,
    dd: &mut [Lanes<f32>],
) -> [[f32; N]; R] {
    let offset = W::OFFSET != 0 || W::SIGNED;
    let biased = VNNI && N > 1; // signed weights against a + 128
    let init_act = VNNI && N == 1 && offset; // unsigned weights, -c·Σa from the activations
    let sign_trick = !VNNI && offset;
    debug_assert!(t.ad.len() >= nb && (!W::HAS_MIN || t.asum.len() >= nb));
    debug_assert!(!init_act || t.init.len() >= nb);
    debug_assert!(N == 1 || (t.qs.len() >= nb * N && dd.len() >= nb * R));
    let zero = _mm256_setzero_si256();
    let mut acc = [[_mm256_setzero_ps(); N]; R];
    let mut summs = [_mm256_setzero_ps(); R];
    // First the scales: dd[b·R + r] = wd · ad (activation row i in lane i), and the min chains.
    // (Computed in the main loop, the products would have to be broadcast from a vector by a
    // shuffle each, or stored and loaded back right away, which stalls.)
    if N > 1 || W::HAS_MIN {
        for b in 0..nb {
            // SAFETY: b < nb ≤ t.ad.len(); `Lanes` is 8 f32, align(32): one aligned load.
            let ad = _mm256_load_ps(t.ad.get_unchecked(b).0.as_ptr());
            for r in 0..R {
                // SAFETY: b < nb, and blocks[r] points at nb blocks (this function's contract).
                let block = &*blocks[r].add(b);
                if N > 1 {
                    let prod = _mm256_mul_ps(f16_set1(block.d()), ad);
                    // SAFETY: b·R + r < nb·R ≤ dd.len() (N > 1); aligned `Lanes`, as above.
                    _mm256_store_ps(dd.get_unchecked_mut(b * R + r).0.as_mut_ptr(), prod);
                }
                if W::HAS_MIN {
                    // SAFETY: b < nb ≤ t.asum.len() (W::HAS_MIN); aligned `Lanes`.
                    let asum = _mm256_load_ps(t.asum.get_unchecked(b).0.as_ptr());
                    summs[r] = _mm256_fmadd_ps(f16_set1(block.m()), asum, summs[r]);
                }
            }
        }
    }
    let dd = dd.as_ptr();
    for b in 0..nb {
        let mut u = [zero; R]; // the unsigned operand (weights)
        let mut w = [zero; R]; // the signed weights
        let mut init = [zero; R];
        let mut dd1 = [_mm256_setzero_ps(); R];
        for r in 0..R {
            // SAFETY: b < nb, and blocks[r] points at nb blocks (this function's contract).
            let block = &*blocks[r].add(b);
            if N == 1 {
                // a hint, never a read: in bounds or not (see `prefetch_ahead`)
                prefetch_ahead(block as *const W as *const u8, size_of::<W>());
            }
            let raw = block.load::<VNNI>();
            let signed = if W::OFFSET != 0 {
                _mm256_sub_epi8(raw, _mm256_set1_epi8(W::OFFSET))
            } else {
                raw
            };
            if biased {
                w[r] = signed;
                // -128·Σw, so that dpbusd(init, a + 128, w) = Σ a·w
                let sum128 = _mm256_dpbusd_epi32(zero, _mm256_set1_epi8(i8::MIN), signed);
                init[r] = _mm256_sub_epi32(zero, sum128);
            } else if VNNI {
                u[r] = if W::SIGNED {
                    _mm256_xor_si256(raw, _mm256_set1_epi8(i8::MIN))
                } else {
                    raw
                };
            } else if sign_trick {
                w[r] = signed;
                u[r] = _mm256_abs_epi8(signed);
            } else {
                u[r] = raw;
            }
            if N == 1 {
                // SAFETY: b < nb ≤ t.ad.len().
                let ad = _mm256_set1_ps(t.ad.get_unchecked(b).0[0]);
                dd1[r] = _mm256_mul_ps(f16_set1(block.d()), ad);
            }
        }
        let init1 = if init_act {
            // SAFETY: b < nb ≤ t.init.len() (init_act); aligned `Lanes`.
            _mm256_load_si256(t.init.get_unchecked(b).0.as_ptr() as *const __m256i)
        } else {
            zero
        };
        for i in 0..N {
            let a = if N == 1 {
                // SAFETY: b < nb, and xs[0] (i = 0) points at nb blocks (this function's
                // contract); their `qs` is [i8; 32], the 256 bits loaded.
                _mm256_loadu_si256((*xs[i].add(b)).qs.as_ptr() as *const __m256i)
            } else {
                // SAFETY: b·N + i < nb·N ≤ t.qs.len() (N > 1); `Bytes32` is 32 bytes, align(32).
                _mm256_load_si256(t.qs.get_unchecked(b * N + i).0.as_ptr() as *const __m256i)
            };
            for r in 0..R {
                let p = if biased {
                    _mm256_dpbusd_epi32(init[r], a, w[r])
                } else if VNNI {
                    _mm256_dpbusd_epi32(init1, u[r], a)
                } else {
                    let s = if sign_trick {
                        _mm256_sign_epi8(a, w[r])
                    } else {
                        a
                    };
                    _mm256_madd_epi16(_mm256_maddubs_epi16(u[r], s), _mm256_set1_epi16(1))
                };
                let d = if N == 1 {
                    dd1[r]
                } else {
                    // SAFETY: b·R + r < nb·R ≤ dd.len() (N > 1), written in the first loop.
                    _mm256_broadcast_ss(&(*dd.add(b * R + r)).0[i])
                };
                acc[r][i] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc[r][i]);
            }
        }
    }
    let mut y = [[0f32; N]; R];
    for r in 0..R {
        let mut sm = Lanes([0f32; 8]);
        _mm256_store_ps(sm.0.as_mut_ptr(), summs[r]);
        for i in 0..N {
            y[r][i] = if W::HAS_MIN {
                hsum8(acc[r][i]) + sm.0[i]
            } else {
                hsum8(acc[r][i])
            };
        }
    }
    y
}

/// Weight rows `R` at a time against a tile of `N` activation rows.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C, and with `VNNI` AVX-512 BW, VL and VNNI. (The shapes
/// it reads by, it asserts itself: `xs` is `N` rows of at least `row_bytes / size_of::<W>()`
/// blocks, as the kernel's `check_tile` has already.)
#[inline(always)]
unsafe fn tile_n<W: LegacyX86, const N: usize, const VNNI: bool, const R: usize>(
    w: &[u8],
    row_bytes: usize,
    xs: &[&[ActQ8Block]],
    out: Out,
) {
    const {
        assert!(
            align_of::<W>() == 1,
            "weight blocks are read at any byte offset"
        )
    };
    let nb = row_bytes / size_of::<W>();
    // once per tile, not per block (the kernel's `check_tile` has asserted these already)
    assert_eq!(xs.len(), N);
    for x in xs {
        assert!(x.len() >= nb, "activation row shorter than a weight row");
    }
    let offset = if VNNI && N == 1 && W::SIGNED {
        128
    } else if VNNI && N == 1 {
        W::OFFSET as i32
    } else {
        0
    };
    let bias = if VNNI { i8::MIN } else { 0 };
    let t = TileActs::new(xs, nb, offset, W::HAS_MIN, bias);
    let xs: [*const ActQ8Block; N] = std::array::from_fn(|i| xs[i].as_ptr());
    let n_rows = w.len() / row_bytes;
    assert!(
        out.rows() >= n_rows && out.cols() >= N,
        "output smaller than the tile"
    );
    let mut dd = vec![Lanes([0f32; 8]); if N > 1 { nb * R } else { 0 }];
    // Row r < n_rows: bytes r·row_bytes.. of w, nb blocks (nb · size_of::<W>() ≤ row_bytes),
    // all within w ((r + 1) · row_bytes ≤ n_rows · row_bytes ≤ w.len()). Every r below is
    // < n_rows: k·seg + j < R·seg ≤ n_rows.
    let row = |r: usize| w.as_ptr().add(r * row_bytes) as *const W;
    // The R rows of a pass come from R equal segments of the rows, so that each is read as one
    // long stream (R neighbouring rows would be R short streams, which the hardware prefetchers
    // follow badly when the weights come from memory, as in decoding).
    let seg = n_rows / R;
    for j in 0..seg {
        // SAFETY: the rows are < n_rows (see `row`), xs are N rows of ≥ nb blocks (asserted
        // above), t and dd were built above for these N rows, nb blocks and R; the CPU's sets
        // are this function's.
        let y = rows::<W, R, N, VNNI>(
            std::array::from_fn(|k| row(k * seg + j)),
            nb,
            &xs,
            &t,
            &mut dd,
        );
        for (k, y) in y.iter().enumerate() {
            out.set_row(k * seg + j, y);
        }
    }
    for r in R * seg..n_rows {
        // SAFETY: as above, r < n_rows, and dd's nb·R ≥ nb·1 vectors.
        let [y] = rows::<W, 1, N, VNNI>([row(r)], nb, &xs, &t, &mut dd);
        out.set_row(r, &y);
    }
}

/// Calls `tile_n` with the tile size as a constant (so the accumulators stay in registers) and
/// `R` weight rows per pass: `$r1` for one activation row, `$r` for more.
macro_rules! by_tile {
    ($w:ty, $vnni:literal, $r1:literal, $r:literal, $args:expr) => {{
        let (w, row_bytes, xs, out) = $args;
        match xs.len() {
            1 => tile_n::<$w, 1, $vnni, $r1>(w, row_bytes, xs, out),
            2 => tile_n::<$w, 2, $vnni, $r>(w, row_bytes, xs, out),
            3 => tile_n::<$w, 3, $vnni, $r>(w, row_bytes, xs, out),
            4 => tile_n::<$w, 4, $vnni, $r>(w, row_bytes, xs, out),
            5 => tile_n::<$w, 5, $vnni, $r>(w, row_bytes, xs, out),
            6 => tile_n::<$w, 6, $vnni, $r>(w, row_bytes, xs, out),
            7 => tile_n::<$w, 7, $vnni, $r>(w, row_bytes, xs, out),
            n => {
                assert_eq!(n, TILE, "tiles are 1..={TILE} rows");
                tile_n::<$w, 8, $vnni, $r>(w, row_bytes, xs, out)
            }
        }
    }};
}

/// # Safety
/// The CPU must have AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_avx2_tf<W: LegacyX86>(w: &[u8], rb: usize, xs: &[&[ActQ8Block]], out: Out) {
    by_tile!(W, false, 4, 1, (w, rb, xs, out))
}

/// # Safety
/// The CPU must have AVX2, FMA, F16C and AVX-512 F, BW, VL and VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile_vnni_tf<W: LegacyX86>(w: &[u8], rb: usize, xs: &[&[ActQ8Block]], out: Out) {
    by_tile!(W, true, 4, 2, (w, rb, xs, out))
}

fn tile_avx2<W: LegacyX86>(w: &[u8], rb: usize, xs: &[&[ActQ8Block]], out: Out) {
    check_tile(w, rb, size_of::<W>(), 1, xs, &out);
    // SAFETY: the CPU has AVX2, FMA and F16C: `tile_fn` hands this kernel out for `Isa::Avx2`
    // only, and `with_kernel` checked that this CPU runs it before asking. (The shapes are
    // asserted just above, and again by `tile_n` per tile.)
    unsafe { tile_avx2_tf::<W>(w, rb, xs, out) }
}

fn tile_vnni<W: LegacyX86>(w: &[u8], rb: usize, xs: &[&[ActQ8Block]], out: Out) {
    check_tile(w, rb, size_of::<W>(), 1, xs, &out);
    // SAFETY: the CPU has AVX-512 VNNI and AVX2: `tile_fn` hands this kernel out for
    // `Isa::Avx512Vnni` only, and `with_kernel` checked that this CPU runs it before asking.
    // (The shapes are asserted just above, and again by `tile_n` per tile.)
    unsafe { tile_vnni_tf::<W>(w, rb, xs, out) }
}

/// The x86 kernel for `ty` on `isa`, `None` for other sets and formats. Call the kernel only if
/// this CPU runs `isa` (`with_kernel` checks it).
pub(super) fn tile_fn(ty: GgmlType, isa: Isa) -> Option<TileFn<ActQ8Block>> {
    macro_rules! pick {
        ($f:ident) => {
            Some(match ty {
                GgmlType::Q4_0 => $f::<BlockQ4_0> as TileFn<ActQ8Block>,
                GgmlType::Q4_1 => $f::<BlockQ4_1>,
                GgmlType::Q5_0 => $f::<BlockQ5_0>,
                GgmlType::Q5_1 => $f::<BlockQ5_1>,
                GgmlType::Q8_0 => $f::<BlockQ8_0>,
                _ => return None,
            })
        };
    }
    match isa {
        Isa::Avx2 => pick!(tile_avx2),
        Isa::Avx512Vnni => pick!(tile_vnni),
        Isa::Scalar => None,
    }
}
