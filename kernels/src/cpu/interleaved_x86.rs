//! AVX2 and AVX-512 VNNI kernels of Q4_0 and Q8_0 (prefill tiles; see `interleaved.rs` for the
//! math and why only these).
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
//! The byte products are unsigned × signed. Q8_0's signed weights enter as `q + 128` (`q ^ 0x80`)
//! with each lane's sum starting at the activation block's `bias = -128 · Σ qx`, so the integer
//! result is `Σ q·qx` exactly, at one `dpbusd` per register and activation row (the sign trick
//! `|q| · (qx · sign(q))` takes a `vpsignb` per register and row on top). Only with VNNI: AVX2's
//! `maddubs` adds pairs of products in saturating 16 bits, and `2 · 255 · 127` does not fit, so
//! Q8_0 on AVX2 keeps ggml's order (`legacy_x86.rs`).

use std::arch::x86_64::*;

use gguf_importer::quants::{Block, BlockQ4_0, BlockQ8_0, F16};
use gguf_importer::GgmlType;

use super::quantize_act::ActQ8x32;
use super::x86_util::{by_tile, hsum_ps, transpose4};
use super::{Isa, Out, TileFn};

/// Eight weight blocks unpacked into registers.
pub(super) trait InterleavedX86: Block {
    /// Whether `q` is signed (Q8_0, -128..=127) rather than in `0..32`.
    const SIGNED: bool;
    /// The blocks' integers as unsigned bytes (`q + 128` when `SIGNED`) in the interleaved
    /// layout, and the per-block `(a, b)` of `interleaved.rs` in lane `k`.
    ///
    /// # Safety
    /// The CPU must have AVX2 and F16C.
    unsafe fn unpack8(blocks: &[Self; 8]) -> ([__m256i; 8], __m256, __m256);
}

/// Eight f16 scales as one vector.
#[inline(always)]
unsafe fn f16c8(h: [F16; 8]) -> __m256 {
    let h = h.map(|h| i16::from_le_bytes(h.0));
    _mm256_cvtph_ps(_mm_setr_epi16(
        h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7],
    ))
}

/// The 16 `qs` bytes of blocks `k` (low half) and `k + 4` (high half), transposed: dword `r` of
/// every block in register `r`, block `k` in lane `k`.
#[inline(always)]
unsafe fn gather_qs16(qs: [&[u8; 16]; 8]) -> [__m256i; 4] {
    let load = |q: &[u8; 16]| _mm_loadu_si128(q.as_ptr() as *const __m128i);
    transpose4(std::array::from_fn(|k| {
        _mm256_set_m128i(load(qs[k + 4]), load(qs[k]))
    }))
}

/// Low nibbles of dword `r` are elements `4r..4r+4`, high nibbles `16+4r..`: registers `r` and
/// `4 + r` of the interleaved layout.
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
    const SIGNED: bool = false;
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

impl InterleavedX86 for BlockQ8_0 {
    const SIGNED: bool = true;
    #[inline(always)]
    unsafe fn unpack8(b: &[Self; 8]) -> ([__m256i; 8], __m256, __m256) {
        let d = f16c8(b.each_ref().map(|b| b.d));
        let halves = b
            .each_ref()
            .map(|b| bytemuck::cast_ref::<[i8; 32], [[u8; 16]; 2]>(&b.qs));
        // dwords 0..4 of every block are registers 0..4, dwords 4..8 registers 4..8
        let lo = gather_qs16(halves.map(|h| &h[0]));
        let hi = gather_qs16(halves.map(|h| &h[1]));
        let flip = _mm256_set1_epi8(i8::MIN);
        (
            std::array::from_fn(|r| _mm256_xor_si256(if r < 4 { lo[r] } else { hi[r - 4] }, flip)),
            d,
            _mm256_setzero_ps(),
        )
    }
}

/// `init` plus the sum over the 8 registers of the byte products (unsigned `q` × signed `qx`),
/// per 32-bit lane (one block per lane).
#[inline(always)]
unsafe fn dot8<const VNNI: bool>(q: &[__m256i; 8], x: &[[i8; 32]; 8], init: __m256i) -> __m256i {
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
#[inline(always)]
unsafe fn group<W: InterleavedX86, const N: usize, const VNNI: bool>(
    blocks: &[W; 8],
    xs: &[*const ActQ8x32; N],
    g: usize,
    acc: &mut [__m256; N],
) {
    let (q, a, off) = W::unpack8(blocks);
    for i in 0..N {
        let x = &*xs[i].add(g);
        let dot = if W::SIGNED {
            let bias = _mm256_loadu_si256(x.bias.as_ptr() as *const __m256i);
            dot8::<VNNI>(&q, &x.qs, bias)
        } else {
            dot8::<VNNI>(&q, &x.qs, _mm256_setzero_si256())
        };
        let scale = _mm256_mul_ps(a, _mm256_loadu_ps(x.d.as_ptr()));
        acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc[i]);
        if !W::SIGNED {
            acc[i] = _mm256_fmadd_ps(off, _mm256_loadu_ps(x.s.as_ptr()), acc[i]);
        }
    }
}

#[inline(always)]
unsafe fn tile_body<W: InterleavedX86, const N: usize, const VNNI: bool>(
    w: &[u8],
    row_bytes: usize,
    xs: &[&[ActQ8x32]],
    out: Out,
) {
    let nb = row_bytes / size_of::<W>();
    let xs: [*const ActQ8x32; N] = std::array::from_fn(|i| {
        assert!(
            xs[i].len() >= nb.div_ceil(8),
            "activation row shorter than a weight row"
        );
        xs[i].as_ptr()
    });
    for (r, row) in w.chunks_exact(row_bytes).enumerate() {
        let blocks: &[W] = bytemuck::cast_slice(row);
        let mut acc = [_mm256_setzero_ps(); N];
        let mut groups = blocks.chunks_exact(8);
        for (g, eight) in (&mut groups).enumerate() {
            let eight: &[W; 8] = eight.try_into().expect("chunks of 8");
            group::<W, N, VNNI>(eight, &xs, g, &mut acc);
        }
        let tail = groups.remainder();
        if !tail.is_empty() {
            // zero blocks (d = 0, m = 0) beyond the row's end meet the activations' zero padding
            let mut eight = [W::zeroed(); 8];
            eight[..tail.len()].copy_from_slice(tail);
            group::<W, N, VNNI>(&eight, &xs, nb / 8, &mut acc);
        }
        for (i, acc) in acc.iter().enumerate() {
            out.set(r, i, hsum_ps(*acc));
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_avx2_tf<W: InterleavedX86>(w: &[u8], rb: usize, xs: &[&[ActQ8x32]], out: Out) {
    by_tile!(tile_body, W, false, 8, (w, rb, xs, out))
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile_vnni_tf<W: InterleavedX86>(w: &[u8], rb: usize, xs: &[&[ActQ8x32]], out: Out) {
    by_tile!(tile_body, W, true, 8, (w, rb, xs, out))
}

fn tile_avx2<W: InterleavedX86>(w: &[u8], rb: usize, xs: &[&[ActQ8x32]], out: Out) {
    const { assert!(!W::SIGNED, "maddubs would overflow on q + 128") };
    // SAFETY: handed out by `tile_fn` for `Isa::Avx2` only, which `qmatmul_with_isa` checked.
    unsafe { tile_avx2_tf::<W>(w, rb, xs, out) }
}

fn tile_vnni<W: InterleavedX86>(w: &[u8], rb: usize, xs: &[&[ActQ8x32]], out: Out) {
    // SAFETY: handed out by `tile_fn` for `Isa::Avx512Vnni` only, which `qmatmul_with_isa` checked.
    unsafe { tile_vnni_tf::<W>(w, rb, xs, out) }
}

/// The x86 kernel for `ty` on `isa`, `None` for other sets and formats (Q8_0 only with VNNI, see
/// the module doc).
pub(super) fn tile_fn(ty: GgmlType, isa: Isa) -> Option<TileFn<ActQ8x32>> {
    match (isa, ty) {
        (Isa::Avx2, GgmlType::Q4_0) => Some(tile_avx2::<BlockQ4_0>),
        (Isa::Avx512Vnni, GgmlType::Q4_0) => Some(tile_vnni::<BlockQ4_0>),
        (Isa::Avx512Vnni, GgmlType::Q8_0) => Some(tile_vnni::<BlockQ8_0>),
        _ => None,
    }
}
