//! x86 helpers shared by the SIMD kernels. Their `unsafe` is the instruction set only (none
//! reads memory): each says which the CPU must have.

use std::arch::x86_64::*;

use gguf_importer::quants::F16;

/// An f16 scale as f32 through F16C (`F16::to_f32` is a software conversion).
///
/// # Safety
/// The CPU must have F16C.
#[inline(always)]
pub(super) unsafe fn f16c(h: F16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
        u16::from_le_bytes(h.0) as i32
    )))
}

/// 4 × 4 transpose of 32-bit lanes within each 128-bit half: lane `j` of `t[i]` goes to lane
/// `i` of `out[j]`.
///
/// # Safety
/// The CPU must have AVX2.
#[inline(always)]
pub(super) unsafe fn transpose4(t: [__m256i; 4]) -> [__m256i; 4] {
    let u0 = _mm256_unpacklo_epi32(t[0], t[1]); // t0.0 t1.0 t0.1 t1.1
    let u1 = _mm256_unpackhi_epi32(t[0], t[1]); // t0.2 t1.2 t0.3 t1.3
    let u2 = _mm256_unpacklo_epi32(t[2], t[3]);
    let u3 = _mm256_unpackhi_epi32(t[2], t[3]);
    [
        _mm256_unpacklo_epi64(u0, u2),
        _mm256_unpackhi_epi64(u0, u2),
        _mm256_unpacklo_epi64(u1, u3),
        _mm256_unpackhi_epi64(u1, u3),
    ]
}

/// Bytes past the current weight block that the decoding kernels ask the cache for. Decoding
/// streams every weight from memory once per token, a few rows at a time; with the hardware
/// prefetchers alone the kernels waited on the loads (`cpu_matmul_bench`, m = 1 on 5632 × 2048:
/// Q4_K 16 -> 31 GB/s, Q6_K 20 -> 31 GB/s with this).
pub(super) const PREFETCH_AHEAD: usize = 1024;

/// Asks for the cache lines of the `len` bytes at [`PREFETCH_AHEAD`] past `p`. A hint: it never
/// faults, even past the end of the weights, and the addresses are formed with `wrapping_add`,
/// so `p` need not point into (or near) any allocation.
///
/// # Safety
/// None beyond SSE (x86_64's baseline); `unsafe` only as the intrinsic is.
#[inline(always)]
pub(super) unsafe fn prefetch_ahead(p: *const u8, len: usize) {
    let ahead = p.wrapping_add(PREFETCH_AHEAD);
    for line in (0..len).step_by(64) {
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line) as *const i8);
    }
}

/// The sum of the eight i32 lanes of `v` (wrapping, as the lanes' adds).
///
/// # Safety
/// The CPU must have AVX2.
#[inline(always)]
pub(super) unsafe fn hsum_epi32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    _mm_cvtsi128_si32(s)
}

/// The sum of the eight lanes.
///
/// # Safety
/// The CPU must have AVX.
#[inline(always)]
pub(super) unsafe fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Calls `$body::<$w, N, $vnni>(w, row_bytes, tile, out)` over the activation rows `xs`
/// in tiles with `N` a constant (so the accumulators stay in registers): tiles of `$max` rows (8
/// or 16) while that many are left, then one of 1..=8 rows at a time. Each `tile` is exactly `N`
/// rows of `xs` (bounds-checked slices), and `out` skips to its first row; `$body` is `unsafe`
/// (its instruction sets), so the macro is used inside `#[target_feature]` functions.
macro_rules! by_tile {
    ($body:ident, $w:ty, $vnni:literal, $max:literal, $args:expr) => {{
        let (w, row_bytes, xs, out) = $args;
        let mut start = 0;
        while start < xs.len() {
            let left = xs.len() - start;
            let n = if left >= $max { $max } else { left.min(8) };
            let (tile, out) = (&xs[start..start + n], out.skip_cols(start));
            match n {
                1 => $body::<$w, 1, $vnni>(w, row_bytes, tile, out),
                2 => $body::<$w, 2, $vnni>(w, row_bytes, tile, out),
                3 => $body::<$w, 3, $vnni>(w, row_bytes, tile, out),
                4 => $body::<$w, 4, $vnni>(w, row_bytes, tile, out),
                5 => $body::<$w, 5, $vnni>(w, row_bytes, tile, out),
                6 => $body::<$w, 6, $vnni>(w, row_bytes, tile, out),
                7 => $body::<$w, 7, $vnni>(w, row_bytes, tile, out),
                8 => $body::<$w, 8, $vnni>(w, row_bytes, tile, out),
                _ => $body::<$w, $max, $vnni>(w, row_bytes, tile, out),
            }
            start += n;
        }
    }};
}
pub(super) use by_tile;

/// The 8×8 transpose of `v` (`v[r]` lane `k` becomes lane `r` of the result's `k`).
///
/// # Safety
/// The CPU must have AVX.
#[inline(always)]
pub(super) unsafe fn transpose8(v: [__m256; 8]) -> [__m256; 8] {
    let t0 = _mm256_unpacklo_ps(v[0], v[1]);
    let t1 = _mm256_unpackhi_ps(v[0], v[1]);
    let t2 = _mm256_unpacklo_ps(v[2], v[3]);
    let t3 = _mm256_unpackhi_ps(v[2], v[3]);
    let t4 = _mm256_unpacklo_ps(v[4], v[5]);
    let t5 = _mm256_unpackhi_ps(v[4], v[5]);
    let t6 = _mm256_unpacklo_ps(v[6], v[7]);
    let t7 = _mm256_unpackhi_ps(v[6], v[7]);
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0xee>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xee>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0xee>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0xee>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ]
}
