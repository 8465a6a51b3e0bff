//! Dot products of the 32-element formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) with 8-bit activation
//! blocks ([`ActQ8Block`]), in the float order of ggml's x86 `ggml_vec_dot_<fmt>_q8_<0|1>`
//! (AVX2 / AVX-512 VNNI build), so that the CPU matmul gives llama.cpp's results bit for bit: a
//! last-bit difference in one matmul can flip the 8-bit rounding of a later activation, and over
//! a few dozen layers that is enough to change a greedy token on a near-tie.
//!
//! Per output element (one weight row, one activation row of `nb` blocks):
//!
//! ```text
//! acc[0..8] = 0; summs = 0                                  (f32)
//! for each block b, in order:
//!     dd     = wd · ad                                      (f32 product)
//!     P[i]   = Σ_{e = 4i .. 4i+4} wq[e] · aq[e]             (exact i32; wq with Q4_0's -8 and
//!                                                            Q5_0's -16 applied)
//!     acc[i] = fma(dd, P[i], acc[i])                        (i in 0..8, one rounding)
//!     summs  = fma(wm, as, summs)                           (Q4_1, Q5_1 only)
//! y = ((acc[0]+acc[4]) + (acc[2]+acc[6])) + ((acc[1]+acc[5]) + (acc[3]+acc[7])) + summs
//! ```
//!
//! (`wd`, `wm` are the weight block's f16 scale and min, `ad`, `as` the activation block's f16
//! scale and `d·Σaq`, all as f32; the last line is ggml's `hsum_float_8`.) The integer sums may be
//! computed any way; the float operations must be these, in this order. The scalar kernel here is
//! the definition; the AVX2 and AVX-512 ones (`legacy_x86.rs`) give the same bits, and
//! kernels/tests/ggml_vec_dot.rs checks all of them against ggml's own results.
//!
//! Exceptions: Q4_0 matrices of a multiple of 8 rows take the order of llama.cpp's repacked
//! kernels (`repacked.rs`), as llama.cpp does; other Q4_0 matrices take the interleaved kernel of
//! `interleaved.rs` on tiles of several activation rows (prefill), faster there
//! ([`super::follows_ggml_vec_dot`] says which cases keep this order).

use gguf_importer::quants::{Block, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, F16};
use gguf_importer::GgmlType;

use super::quantize_act::ActQ8Block;
use super::{check_tile, Isa, Out, TileFn, MAX_TILE};

/// A 32-element weight block as the dot product sees it: `w = d · (q - OFFSET)` (+ `m`).
pub(super) trait Legacy: Block {
    /// Whether the block has a min (`w = d·q + m`: Q4_1, Q5_1).
    const HAS_MIN: bool;
    /// Subtracted from the stored unsigned integers (Q4_0: 8, Q5_0: 16; 0 otherwise).
    const OFFSET: i8;
    /// Whether the stored integers are signed bytes (Q8_0).
    const SIGNED: bool;
    /// The stored integers in element order, before [`Legacy::OFFSET`]: 0..16 (Q4), 0..32 (Q5),
    /// or signed (Q8_0).
    fn raw(&self) -> [i8; 32];
    /// The scale `d`.
    fn d(&self) -> F16;
    /// The min `m` (zero without one).
    fn m(&self) -> F16 {
        F16([0; 2])
    }
}

/// Low nibbles are elements 0..16, high nibbles 16..32.
#[inline(always)]
fn nibbles(qs: &[u8; 16]) -> [i8; 32] {
    std::array::from_fn(|e| {
        if e < 16 {
            (qs[e] & 0x0F) as i8
        } else {
            (qs[e - 16] >> 4) as i8
        }
    })
}

/// With the fifth bits: bit `e` of the little-endian `qh` is element `e`'s 16.
#[inline(always)]
fn with_fifth_bits(qs: &[u8; 16], qh: [u8; 4]) -> [i8; 32] {
    let qh = u32::from_le_bytes(qh);
    let low = nibbles(qs);
    std::array::from_fn(|e| low[e] | ((((qh >> e) & 1) << 4) as i8))
}

impl Legacy for BlockQ4_0 {
    const HAS_MIN: bool = false;
    const OFFSET: i8 = 8;
    const SIGNED: bool = false;
    #[inline(always)]
    fn raw(&self) -> [i8; 32] {
        nibbles(&self.qs)
    }
    #[inline(always)]
    fn d(&self) -> F16 {
        self.d
    }
}

impl Legacy for BlockQ4_1 {
    const HAS_MIN: bool = true;
    const OFFSET: i8 = 0;
    const SIGNED: bool = false;
    #[inline(always)]
    fn raw(&self) -> [i8; 32] {
        nibbles(&self.qs)
    }
    #[inline(always)]
    fn d(&self) -> F16 {
        self.d
    }
    #[inline(always)]
    fn m(&self) -> F16 {
        self.m
    }
}

impl Legacy for BlockQ5_0 {
    const HAS_MIN: bool = false;
    const OFFSET: i8 = 16;
    const SIGNED: bool = false;
    #[inline(always)]
    fn raw(&self) -> [i8; 32] {
        with_fifth_bits(&self.qs, self.qh)
    }
    #[inline(always)]
    fn d(&self) -> F16 {
        self.d
    }
}

impl Legacy for BlockQ5_1 {
    const HAS_MIN: bool = true;
    const OFFSET: i8 = 0;
    const SIGNED: bool = false;
    #[inline(always)]
    fn raw(&self) -> [i8; 32] {
        with_fifth_bits(&self.qs, self.qh)
    }
    #[inline(always)]
    fn d(&self) -> F16 {
        self.d
    }
    #[inline(always)]
    fn m(&self) -> F16 {
        self.m
    }
}

impl Legacy for BlockQ8_0 {
    const HAS_MIN: bool = false;
    const OFFSET: i8 = 0;
    const SIGNED: bool = true;
    #[inline(always)]
    fn raw(&self) -> [i8; 32] {
        self.qs
    }
    #[inline(always)]
    fn d(&self) -> F16 {
        self.d
    }
}

/// ggml's `hsum_float_8`: `(acc[j] + acc[j+4])`, then the even and odd pairs of those, then both.
#[inline(always)]
pub(super) fn hsum8(acc: &[f32; 8]) -> f32 {
    let r: [f32; 4] = std::array::from_fn(|j| acc[j + 4] + acc[j]);
    (r[0] + r[2]) + (r[1] + r[3])
}

/// The scalar kernel (see [`TileFn`]): the definition of the order.
fn tile_scalar<W: Legacy>(w: &[u8], row_bytes: usize, xs: &[&[ActQ8Block]], out: Out) {
    check_tile(w, row_bytes, size_of::<W>(), 1, xs, &out);
    for (r, row) in w.chunks_exact(row_bytes).enumerate() {
        let blocks: &[W] = bytemuck::cast_slice(row);
        let mut acc = [[0f32; 8]; MAX_TILE];
        let mut summs = [0f32; MAX_TILE];
        for (b, block) in blocks.iter().enumerate() {
            let q = block.raw().map(|q| q - W::OFFSET);
            let (d, m) = (block.d().to_f32(), block.m().to_f32());
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
            let y = if W::HAS_MIN {
                hsum8(acc) + summs
            } else {
                hsum8(acc)
            };
            out.set(r, i, y);
        }
    }
}

/// The kernel for `ty` on `isa`, `None` if `ty` is not a 32-element format.
pub(super) fn tile_fn(ty: GgmlType, isa: Isa) -> Option<TileFn<ActQ8Block>> {
    #[cfg(target_arch = "x86_64")]
    if let Some(f) = super::legacy_x86::tile_fn(ty, isa) {
        return Some(f);
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
