//! AVX2 and AVX-512 VNNI kernels of Q4_0 (prefill tiles; see `interleaved.rs` for the math and
//! why only Q4_0).
//!
//! Eight weight blocks at a time are unpacked and transposed to the activations' interleaved
//! layout ([`ActQ8x32`]): register `R` holds elements `4R..4R+4` of block `k` in its 32-bit lane
//! `k`. A multiply-add of 4 byte pairs per lane over the eight registers then leaves each block's
//! dot product in its own lane, with no horizontal sums:
//!
//! ```text
//! AVX-512 VNNI: acc = dpbusd(acc, q[R], qx[R])                   R in 0..8
//! AVX2:         acc += madd(maddubs(q[R], qx[R]) + ..., 1)        (i16 sums of up to 4 registers)
//! then          y  += cvt(acc) · (a · dx)  +  b · s               (8 blocks per vector op)
//! ```
//!
//! The byte products are unsigned × signed: Q4_0's `q` in `0..16` against the signed `qx`.
//!
//! # Safety
//!
//! Every `unsafe fn` here has two obligations. The instruction set: they run only inside the
//! `#[target_feature]` functions (`tile_avx2_tf`, `tile_vnni_tf`), which the safe kernels call
//! only for the set that `tile_fn` handed them out for, after `with_kernel` (cpu/mod.rs) checked
//! that this CPU runs it. Memory: each safe kernel asserts its shapes on entry (`check_tile`:
//! `row_bytes` whole blocks, `w` whole rows, every activation row exactly `nb.div_ceil(8)` groups
//! of eight blocks for `nb = row_bytes / size_of::<W>()`, an output of the weight rows by the
//! activation rows), and the only raw reads, of activation group `g` of a row, have
//! `g < nb.div_ceil(8)`. The weights are read through references (`bytemuck` casts of whole
//! rows), and the fixed-width loads from a block's or an activation's own arrays are in bounds by
//! the arrays' types (each says which).

use std::arch::x86_64::*;

use gguf_importer::quants::{Block, BlockQ4_0, F16};
use gguf_importer::GgmlType;

use super::quantize_act::ActQ8x32;
use super::x86_util::{by_tile, hsum_ps, transpose4};
use super::{check_tile, Isa, Out, TileFn};

/// Eight weight blocks unpacked into registers.
pub(super) trait InterleavedX86: Block {
    /// The blocks' integers as unsigned bytes in the interleaved layout, and the per-block
    /// `(a, b)` of `interleaved.rs` in lane `k`.
    ///
    /// # Safety
    /// The CPU must have AVX2 and F16C.
    unsafe fn unpack8(blocks: &[Self; 8]) -> ([__m256i; 8], __m256, __m256);
}

/// Eight f16 scales as one vector.
///
/// # Safety
/// The CPU must have AVX and F16C.
#[inline(always)]
unsafe fn f16c8(h: [F16; 8]) -> __m256 {
    let h = h.map(|h| i16::from_le_bytes(h.0));
    _mm256_cvtph_ps(_mm_setr_epi16(
        h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7],
    ))
}

/// The 16 `qs` bytes of blocks `k` (low half) and `k + 4` (high half), transposed: dword `r` of
/// every block in register `r`, block `k` in lane `k`.
///
/// # Safety
/// The CPU must have AVX2.
#[inline(always)]
unsafe fn gather_qs16(qs: [&[u8; 16]; 8]) -> [__m256i; 4] {
    // SAFETY: q is 16 bytes, the 128 bits loaded.
    let load = |q: &[u8; 16]| _mm_loadu_si128(q.as_ptr() as *const __m128i);
    transpose4(std::array::from_fn(|k| {
        _mm256_set_m128i(load(qs[k + 4]), load(qs[k]))
    }))
}

/// Low nibbles of dword `r` are elements `4r..4r+4`, high nibbles `16+4r..`: registers `r` and
/// `4 + r` of the interleaved layout.
///
/// # Safety
/// The CPU must have AVX2.
#[inline(always)]
unsafe fn nibbles8(r: [__m256i; 4]) -> [__m256i; 8] {
    let m = _mm256_set1_epi8(0x0F);
    std::array::from_fn(|i| {
        if i < 4 {
            _mm256_and_si256(r[i], m)
        } else {
            _mm256_and_si256(_mm256_srli_epi16::<4>(r[i - 4]), m)
        }
    })
}

impl InterleavedX86 for BlockQ4_0 {
    #[inline(always)]
    unsafe fn unpack8(b: &[Self; 8]) -> ([__m256i; 8], __m256, __m256) {
        let d = f16c8(b.map(|b| b.d));
        (
            nibbles8(gather_qs16(b.each_ref().map(|b| &b.qs))),
            d,
            _mm256_mul_ps(d, _mm256_set1_ps(-8.0)),
        )
    }
}

/// `init` plus the sum over the 8 registers of the byte products (unsigned `q` × signed `qx`),
/// per 32-bit lane (one block per lane).
///
/// # Safety
/// The CPU must have AVX2, and with `VNNI` AVX-512 VNNI and VL.
#[inline(always)]
unsafe fn dot8<const VNNI: bool>(q: &[__m256i; 8], x: &[[i8; 32]; 8], init: __m256i) -> __m256i {
    // SAFETY: x[r] (r < 8, indexed with a check) is 32 bytes, the 256 bits loaded.
    let load = |r: usize| _mm256_loadu_si256(x[r].as_ptr() as *const __m256i);
    if VNNI {
        // two chains, so the multiply-adds overlap
        let (mut even, mut odd) = (init, _mm256_setzero_si256());
        for r in (0..8).step_by(2) {
            even = _mm256_dpbusd_epi32(even, q[r], load(r));
            odd = _mm256_dpbusd_epi32(odd, q[r + 1], load(r + 1));
        }
        _mm256_add_epi32(even, odd)
    } else {
        let ones = _mm256_set1_epi16(1);
        let mut acc = init;
        // i16 pair sums are at most 2·31·127 = 7874 for q < 32 (Q4_0: < 16), so four registers
        // add up before widening (31496 < 32767)
        for r0 in (0..8).step_by(4) {
            let mut s16 = _mm256_setzero_si256();
            for (r, q) in q.iter().enumerate().skip(r0).take(4) {
                s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(*q, load(r)));
            }
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(s16, ones));
        }
        acc
    }
}

/// Eight weight blocks (group `g`) against the tile: `acc[i] += (a·dx)·dot + b·s`, lane-wise.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C, and with `VNNI` AVX-512 VNNI and VL. Every `xs[i]` must
/// point at more than `g` readable groups.
#[inline(always)]
unsafe fn group<W: InterleavedX86, const N: usize, const VNNI: bool>(
    blocks: &[W; 8],
    xs: &[*const ActQ8x32; N],
    g: usize,
    acc: &mut [__m256; N],
) {
    let (q, a, off) = W::unpack8(blocks);
    for i in 0..N {
        // SAFETY: activation row i has more than g groups (this function's contract).
        let x = &*xs[i].add(g);
        let dot = dot8::<VNNI>(&q, &x.qs, _mm256_setzero_si256());
        // SAFETY: `d` is 8 f32, the 256 bits loaded.
        let scale = _mm256_mul_ps(a, _mm256_loadu_ps(x.d.as_ptr()));
        acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc[i]);
        // SAFETY: `s` is 8 f32, the 256 bits loaded.
        acc[i] = _mm256_fmadd_ps(off, _mm256_loadu_ps(x.s.as_ptr()), acc[i]);
    }
}

/// All weight rows of `w` against the first `N` activation rows of `xs` (a tile).
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C, and with `VNNI` AVX-512 VNNI and VL. (The shapes it
/// reads by, it asserts itself: the first `N` rows of `xs` hold at least `nb.div_ceil(8)` groups,
/// as the kernel's `check_tile` has already.)
#[inline(always)]
unsafe fn tile_body<W: InterleavedX86, const N: usize, const VNNI: bool>(
    w: &[u8],
    row_bytes: usize,
    xs: &[&[ActQ8x32]],
    out: Out,
) {
    let nb = row_bytes / size_of::<W>();
    let xs: [*const ActQ8x32; N] = std::array::from_fn(|i| {
        // once per tile, not per block (`xs[i]` panics if the tile has fewer than N rows)
        assert!(
            xs[i].len() >= nb.div_ceil(8),
            "activation row shorter than a weight row"
        );
        xs[i].as_ptr()
    });
    for (r, row) in w.chunks_exact(row_bytes).enumerate() {
        // `blocks.len() == nb`: a row of `row_bytes` bytes (cast_slice panics if that is not
        // whole blocks)
        let blocks: &[W] = bytemuck::cast_slice(row);
        let mut acc = [_mm256_setzero_ps(); N];
        let mut groups = blocks.chunks_exact(8);
        for (g, eight) in (&mut groups).enumerate() {
            let eight: &[W; 8] = eight.try_into().expect("chunks of 8");
            // SAFETY: g < nb / 8 ≤ nb.div_ceil(8) ≤ each row's groups (asserted above).
            group::<W, N, VNNI>(eight, &xs, g, &mut acc);
        }
        let tail = groups.remainder();
        if !tail.is_empty() {
            // zero blocks (d = 0, m = 0) beyond the row's end meet the activations' zero padding
            let mut eight = [W::zeroed(); 8];
            eight[..tail.len()].copy_from_slice(tail);
            // SAFETY: a tail means nb % 8 ≠ 0, so nb / 8 < nb.div_ceil(8) ≤ each row's groups.
            group::<W, N, VNNI>(&eight, &xs, nb / 8, &mut acc);
        }
        for (i, acc) in acc.iter().enumerate() {
            out.set(r, i, hsum_ps(*acc));
        }
    }
}

/// # Safety
/// The CPU must have AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_avx2_tf<W: InterleavedX86>(w: &[u8], rb: usize, xs: &[&[ActQ8x32]], out: Out) {
    by_tile!(tile_body, W, false, 8, (w, rb, xs, out))
}

/// # Safety
/// The CPU must have AVX2, FMA, F16C and AVX-512 F, BW, VL and VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile_vnni_tf<W: InterleavedX86>(w: &[u8], rb: usize, xs: &[&[ActQ8x32]], out: Out) {
    by_tile!(tile_body, W, true, 8, (w, rb, xs, out))
}

fn tile_avx2<W: InterleavedX86>(w: &[u8], rb: usize, xs: &[&[ActQ8x32]], out: Out) {
    // activation rows of nb.div_ceil(8) groups of eight blocks
    check_tile(w, rb, size_of::<W>(), 8, xs, &out);
    // SAFETY: the CPU has AVX2, FMA and F16C: `tile_fn` hands this kernel out for `Isa::Avx2`
    // only, and `with_kernel` checked that this CPU runs it before asking. (The shapes are
    // asserted just above, and again by `tile_body` per tile.)
    unsafe { tile_avx2_tf::<W>(w, rb, xs, out) }
}

fn tile_vnni<W: InterleavedX86>(w: &[u8], rb: usize, xs: &[&[ActQ8x32]], out: Out) {
    // activation rows of nb.div_ceil(8) groups of eight blocks
    check_tile(w, rb, size_of::<W>(), 8, xs, &out);
    // SAFETY: the CPU has AVX-512 VNNI and AVX2: `tile_fn` hands this kernel out for
    // `Isa::Avx512Vnni` only, and `with_kernel` checked that this CPU runs it before asking.
    // (The shapes are asserted just above, and again by `tile_body` per tile.)
    unsafe { tile_vnni_tf::<W>(w, rb, xs, out) }
}

/// The x86 kernel for `ty` on `isa`, `None` for other sets and formats. Call the kernel only if this CPU runs `isa` (`with_kernel` checks it).
pub(super) fn tile_fn(ty: GgmlType, isa: Isa) -> Option<TileFn<ActQ8x32>> {
    match (isa, ty) {
        (Isa::Avx2, GgmlType::Q4_0) => Some(tile_avx2::<BlockQ4_0>),
        (Isa::Avx512Vnni, GgmlType::Q4_0) => Some(tile_vnni::<BlockQ4_0>),
        _ => None,
    }
}
