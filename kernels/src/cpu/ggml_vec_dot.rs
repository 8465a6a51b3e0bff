//! Dot products of the 32-element formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) with 8-bit activation
//! blocks, in the float order of ggml's x86 `ggml_vec_dot_<fmt>_q8_<0|1>`, so that the CPU
//! devices give llama.cpp's results bit for bit (see `ggml_ops.rs` for why the last bit matters).
//!
//! Per output element (one weight row, one activation row of `nb` blocks):
//!
//! ```text
//! acc[0..8] = 0; summs = 0                                   (f32)
//! for each block b, in order:
//!     P[i]   = Σ_{e = 4i .. 4i+4} wq[e] · aq[e]              (exact i32; wq with Q4_0's -8,
//!                                                             Q5_0's -16 applied)
//!     acc[i] = fma(wd · ad, P[i], acc[i])                    (i in 0..8)
//!     summs  = fma(wm, as, summs)                            (Q4_1, Q5_1: the min times the
//!                                                             activation block's d·Σaq)
//! y = ((acc[0]+acc[4]) + (acc[2]+acc[6])) + ((acc[1]+acc[5]) + (acc[3]+acc[7])) + summs
//! ```
//!
//! (`hsum_float_8`; `wd`, `wm`, `ad`, `as` are the blocks' f16 scales as f32.) The scalar kernel
//! is the definition; the AVX2 one computes the integer sums with `maddubs`/`madd` and the rest
//! with the same fused multiply-adds, so both give the same bits.

use gguf_importer::quants::{Block, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, F16};
use gguf_importer::GgmlType;

use super::quantize_act::ActQ8x32;
use super::{Isa, TileFn, MAX_TILE};

/// One block of 32 activations quantized to 8 bits, in element order (ggml's `block_q8_1` with
/// f32 scales: `d` and `s = d · Σ qs` rounded to f16 as ggml stores them).
#[repr(C, align(16))]
#[derive(Debug, Clone, Copy)]
pub struct ActQ8Block {
    pub qs: [i8; 32],
    pub d: f32,
    pub s: f32,
}

/// The activation row `[cols]` of `groups` ([`ActQ8x32`], interleaved) in element order.
pub(super) fn plain_blocks(groups: &[ActQ8x32], cols: usize) -> Vec<ActQ8Block> {
    let per_row = cols / 32;
    let groups_per_row = per_row.div_ceil(8);
    let rows = groups.len() / groups_per_row.max(1);
    let mut out = Vec::with_capacity(rows * per_row);
    for row in groups.chunks_exact(groups_per_row) {
        for b in 0..per_row {
            let (g, k) = (&row[b / 8], b % 8);
            out.push(ActQ8Block {
                qs: std::array::from_fn(|e| g.q(k, e)),
                d: g.d[k],
                s: g.s[k],
            });
        }
    }
    out
}

/// A 32-element weight block as ggml's dot product sees it.
pub(super) trait GgmlBlock: Block {
    /// Whether the block has a min (`w = d·q + m`: Q4_1, Q5_1).
    const HAS_MIN: bool;
    /// The block's integers in element order, offsets applied (so `w = d · q (+ m)`).
    fn ints(&self) -> [i8; 32];
    /// The block's `d` and `m` (zero without one) as stored.
    fn scales(&self) -> (F16, F16);
    /// [`GgmlBlock::ints`], `d` and `m` as f32.
    #[inline(always)]
    fn unpack(&self) -> ([i8; 32], f32, f32) {
        let (d, m) = self.scales();
        (self.ints(), d.to_f32(), m.to_f32())
    }
}

/// Low nibbles are elements 0..16, high nibbles 16..32.
#[inline(always)]
fn nibbles(qs: &[u8; 16], offset: i8) -> [i8; 32] {
    std::array::from_fn(|e| {
        let v = if e < 16 {
            qs[e] & 0x0F
        } else {
            qs[e - 16] >> 4
        };
        v as i8 - offset
    })
}

/// With the fifth bits: bit `e` of the little-endian `qh` is element `e`'s 16.
#[inline(always)]
fn with_fifth_bits(qs: &[u8; 16], qh: [u8; 4], offset: i8) -> [i8; 32] {
    let qh = u32::from_le_bytes(qh);
    let low = nibbles(qs, 0);
    std::array::from_fn(|e| (low[e] | ((((qh >> e) & 1) << 4) as i8)) - offset)
}

impl GgmlBlock for BlockQ4_0 {
    const HAS_MIN: bool = false;
    #[inline(always)]
    fn ints(&self) -> [i8; 32] {
        nibbles(&self.qs, 8)
    }
    #[inline(always)]
    fn scales(&self) -> (F16, F16) {
        (self.d, F16([0; 2]))
    }
}

impl GgmlBlock for BlockQ4_1 {
    const HAS_MIN: bool = true;
    #[inline(always)]
    fn ints(&self) -> [i8; 32] {
        nibbles(&self.qs, 0)
    }
    #[inline(always)]
    fn scales(&self) -> (F16, F16) {
        (self.d, self.m)
    }
}

impl GgmlBlock for BlockQ5_0 {
    const HAS_MIN: bool = false;
    #[inline(always)]
    fn ints(&self) -> [i8; 32] {
        with_fifth_bits(&self.qs, self.qh, 16)
    }
    #[inline(always)]
    fn scales(&self) -> (F16, F16) {
        (self.d, F16([0; 2]))
    }
}

impl GgmlBlock for BlockQ5_1 {
    const HAS_MIN: bool = true;
    #[inline(always)]
    fn ints(&self) -> [i8; 32] {
        with_fifth_bits(&self.qs, self.qh, 0)
    }
    #[inline(always)]
    fn scales(&self) -> (F16, F16) {
        (self.d, self.m)
    }
}

impl GgmlBlock for BlockQ8_0 {
    const HAS_MIN: bool = false;
    #[inline(always)]
    fn ints(&self) -> [i8; 32] {
        self.qs
    }
    #[inline(always)]
    fn scales(&self) -> (F16, F16) {
        (self.d, F16([0; 2]))
    }
}

/// `hsum_float_8`.
#[inline(always)]
fn hsum8(acc: &[f32; 8]) -> f32 {
    let r: [f32; 4] = std::array::from_fn(|j| acc[j + 4] + acc[j]);
    (r[0] + r[2]) + (r[1] + r[3])
}

/// The scalar kernel (see [`TileFn`]): the definition of the order.
fn tile_scalar<W: GgmlBlock>(
    w: &[u8],
    row_bytes: usize,
    xs: &[&[ActQ8Block]],
    out: &mut [f32],
    stride: usize,
) {
    for (r, row) in w.chunks_exact(row_bytes).enumerate() {
        let blocks: &[W] = bytemuck::cast_slice(row);
        let mut acc = [[0f32; 8]; MAX_TILE];
        let mut summs = [0f32; MAX_TILE];
        for (b, block) in blocks.iter().enumerate() {
            let (q, d, m) = block.unpack();
            for ((acc, summs), x) in acc.iter_mut().zip(&mut summs).zip(xs) {
                let x = &x[b];
                let dd = d * x.d;
                for (i, acc) in acc.iter_mut().enumerate() {
                    let p: i32 = (4 * i..4 * i + 4)
                        .map(|e| q[e] as i32 * x.qs[e] as i32)
                        .sum();
                    *acc = dd.mul_add(p as f32, *acc);
                }
                if W::HAS_MIN {
                    *summs = m.mul_add(x.s, *summs);
                }
            }
        }
        for (i, (acc, summs)) in acc.iter().zip(&summs).take(xs.len()).enumerate() {
            out[r * stride + i] = hsum8(acc) + summs;
        }
    }
}

/// The kernel for `ty` on `isa`, `None` if `ty` is not a 32-element format.
pub(super) fn tile_fn(ty: GgmlType, isa: Isa) -> Option<TileFn<ActQ8Block>> {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx2 {
        return Some(match ty {
            GgmlType::Q4_0 => x86::tile::<BlockQ4_0>,
            GgmlType::Q4_1 => x86::tile::<BlockQ4_1>,
            GgmlType::Q5_0 => x86::tile::<BlockQ5_0>,
            GgmlType::Q5_1 => x86::tile::<BlockQ5_1>,
            GgmlType::Q8_0 => x86::tile::<BlockQ8_0>,
            _ => return None,
        });
    }
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512Vnni {
        return Some(match ty {
            GgmlType::Q4_0 => x86::tile_vnni::<BlockQ4_0>,
            GgmlType::Q4_1 => x86::tile_vnni::<BlockQ4_1>,
            GgmlType::Q5_0 => x86::tile_vnni::<BlockQ5_0>,
            GgmlType::Q5_1 => x86::tile_vnni::<BlockQ5_1>,
            GgmlType::Q8_0 => x86::tile_vnni::<BlockQ8_0>,
            _ => return None,
        });
    }
    let _ = isa;
    Some(match ty {
        GgmlType::Q4_0 => tile_scalar::<BlockQ4_0>,
        GgmlType::Q4_1 => tile_scalar::<BlockQ4_1>,
        GgmlType::Q5_0 => tile_scalar::<BlockQ5_0>,
        GgmlType::Q5_1 => tile_scalar::<BlockQ5_1>,
        GgmlType::Q8_0 => tile_scalar::<BlockQ8_0>,
        _ => return None,
    })
}

/// AVX2 + FMA (+ F16C): one weight block in one 256-bit register, dotted with each activation
/// row of the tile as ggml does (`maddubs` of unsigned weights, or of `|w|` and `sign(a, w)`,
/// then `madd` with ones: lane `i` holds elements `4i .. 4i+4`).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use gguf_importer::quants::{BlockQ4_0, BlockQ4_1, BlockQ8_0};

    use super::super::x86_util::f16c;
    use super::{hsum8, ActQ8Block, GgmlBlock, MAX_TILE};

    /// The block's integers in a register: element order, signed unless `UNSIGNED`.
    pub(super) trait X86Block: GgmlBlock {
        const UNSIGNED: bool;
        /// # Safety
        /// The CPU must have AVX2.
        unsafe fn load(&self) -> __m256i;
    }

    /// The 16 bytes of nibbles as 32 bytes: low nibbles first.
    #[inline(always)]
    unsafe fn nibbles(qs: &[u8; 16]) -> __m256i {
        let v = _mm_loadu_si128(qs.as_ptr() as *const __m128i);
        let m = _mm_set1_epi8(0x0F);
        _mm256_set_m128i(
            _mm_and_si128(_mm_srli_epi16::<4>(v), m),
            _mm_and_si128(v, m),
        )
    }

    impl X86Block for BlockQ4_0 {
        const UNSIGNED: bool = false;
        #[inline(always)]
        unsafe fn load(&self) -> __m256i {
            _mm256_sub_epi8(nibbles(&self.qs), _mm256_set1_epi8(8))
        }
    }

    impl X86Block for BlockQ4_1 {
        const UNSIGNED: bool = true;
        #[inline(always)]
        unsafe fn load(&self) -> __m256i {
            nibbles(&self.qs)
        }
    }

    impl X86Block for BlockQ8_0 {
        const UNSIGNED: bool = false;
        #[inline(always)]
        unsafe fn load(&self) -> __m256i {
            _mm256_loadu_si256(self.qs.as_ptr() as *const __m256i)
        }
    }

    /// Q5_0 and Q5_1 unpack in scalar code (rare formats), then load.
    macro_rules! scalar_unpacked {
        ($t:ty, $unsigned:expr) => {
            impl X86Block for $t {
                const UNSIGNED: bool = $unsigned;
                #[inline(always)]
                unsafe fn load(&self) -> __m256i {
                    let q = self.ints();
                    _mm256_loadu_si256(q.as_ptr() as *const __m256i)
                }
            }
        };
    }
    scalar_unpacked!(gguf_importer::quants::BlockQ5_0, false);
    scalar_unpacked!(gguf_importer::quants::BlockQ5_1, true);

    pub(super) fn tile<W: X86Block>(
        w: &[u8],
        row_bytes: usize,
        xs: &[&[ActQ8Block]],
        out: &mut [f32],
        stride: usize,
    ) {
        // SAFETY: tile_fn hands out this kernel only for an available non-scalar Isa, and every
        // one of those includes AVX2, FMA and F16C.
        unsafe { tile_avx2::<W>(w, row_bytes, xs, out, stride) }
    }

    pub(super) fn tile_vnni<W: X86Block>(
        w: &[u8],
        row_bytes: usize,
        xs: &[&[ActQ8Block]],
        out: &mut [f32],
        stride: usize,
    ) {
        // SAFETY: tile_fn hands out this kernel only when Isa::Avx512Vnni is available.
        unsafe { tile_avx512vnni::<W>(w, row_bytes, xs, out, stride) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile_avx2<W: X86Block>(
        w: &[u8],
        row_bytes: usize,
        xs: &[&[ActQ8Block]],
        out: &mut [f32],
        stride: usize,
    ) {
        sized::<W, false>(w, row_bytes, xs, out, stride)
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    unsafe fn tile_avx512vnni<W: X86Block>(
        w: &[u8],
        row_bytes: usize,
        xs: &[&[ActQ8Block]],
        out: &mut [f32],
        stride: usize,
    ) {
        sized::<W, true>(w, row_bytes, xs, out, stride)
    }

    /// The tile size as a constant, so the accumulators stay in registers.
    #[inline(always)]
    unsafe fn sized<W: X86Block, const VNNI: bool>(
        w: &[u8],
        row_bytes: usize,
        xs: &[&[ActQ8Block]],
        out: &mut [f32],
        stride: usize,
    ) {
        macro_rules! by_size {
            ($($n:literal)*) => {
                match xs.len() {
                    $($n => tile_n::<W, $n, VNNI>(w, row_bytes, xs.try_into().unwrap(), out, stride),)*
                    n => unreachable!("tiles are 1..={MAX_TILE} rows, got {n}"),
                }
            };
        }
        by_size!(1 2 3 4 5 6 7 8)
    }

    /// `Σ_e q[e]·a[e]` over each group of four bytes: `q` signed (or unsigned when `UNSIGNED`),
    /// `a` signed.
    #[inline(always)]
    unsafe fn dot4<W: X86Block, const VNNI: bool>(q: __m256i, qa: __m256i, a: __m256i) -> __m256i {
        let a = if W::UNSIGNED {
            a
        } else {
            _mm256_sign_epi8(a, q)
        };
        if VNNI {
            _mm256_dpbusd_epi32(_mm256_setzero_si256(), qa, a)
        } else {
            _mm256_madd_epi16(_mm256_maddubs_epi16(qa, a), _mm256_set1_epi16(1))
        }
    }

    /// Every weight row against `N` activation rows.
    #[inline(always)]
    unsafe fn tile_n<W: X86Block, const N: usize, const VNNI: bool>(
        w: &[u8],
        row_bytes: usize,
        xs: &[&[ActQ8Block]; N],
        out: &mut [f32],
        stride: usize,
    ) {
        let nb = row_bytes / std::mem::size_of::<W>();
        for x in xs {
            assert!(x.len() >= nb, "activation row shorter than a weight row");
        }
        for (r, row) in w.chunks_exact(row_bytes).enumerate() {
            let blocks: &[W] = bytemuck::cast_slice(row);
            let mut acc = [_mm256_setzero_ps(); N];
            let mut summs = [0f32; N];
            for (b, block) in blocks.iter().enumerate() {
                let q = block.load();
                let (d, m) = block.scales();
                let (d, m) = (f16c(d), if W::HAS_MIN { f16c(m) } else { 0.0 });
                let qa = if W::UNSIGNED {
                    q
                } else {
                    _mm256_sign_epi8(q, q)
                };
                for i in 0..N {
                    // SAFETY: b < nb <= xs[i].len(), checked above.
                    let x = xs[i].get_unchecked(b);
                    let a = _mm256_loadu_si256(x.qs.as_ptr() as *const __m256i);
                    let p = dot4::<W, VNNI>(q, qa, a);
                    acc[i] =
                        _mm256_fmadd_ps(_mm256_set1_ps(d * x.d), _mm256_cvtepi32_ps(p), acc[i]);
                    if W::HAS_MIN {
                        summs[i] = m.mul_add(x.s, summs[i]);
                    }
                }
            }
            for i in 0..N {
                let mut lanes = [0f32; 8];
                _mm256_storeu_ps(lanes.as_mut_ptr(), acc[i]);
                out[r * stride + i] = hsum8(&lanes) + summs[i];
            }
        }
    }
}
