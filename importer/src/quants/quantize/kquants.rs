//! Quantization to the K-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K), as ggml's reference row
//! quantizers `quantize_row_q{2,3,4,5,6}_K_ref` (ggml-quants.c): what llama.cpp's quantizer runs
//! for these types when it has no importance matrix.
//!
//! Each super-block of 256 values is split into sub-blocks (16 of 16 values, or 8 of 32). A
//! sub-block gets its own scale (and, for Q2_K, Q4_K and Q5_K, its own minimum) by a small search
//! for the least weighted error; the scales (and minimums) are then quantized against the
//! super-block's largest one, and the values requantized with the scales as stored.
//!
//! The arithmetic is ggml's operation for operation, in f32 and in the same order (no fused
//! multiply-adds, sums left to right), so that every rounding, every comparison and every tie
//! between candidate scales comes out as in llama.cpp, and with them the bytes.

use crate::quants::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, F16};
use crate::types::QK_K;

/// Below this, a sub-block's largest magnitude counts as zero.
pub(super) const GROUP_MAX_EPS: f32 = 1e-15;

/// `v` rounded to the nearest integer, ties to even, by adding 1.5·2²³ and reading the low
/// mantissa bits (ggml's `nearest_int`). Exact for |v| < 2²²; beyond, the result is whatever the
/// bits say, as in ggml.
#[inline(always)]
pub(super) fn nearest_int(v: f32) -> i32 {
    ((v + 12_582_912.0).to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// The first element of the largest magnitude, and that magnitude.
pub(super) fn signed_max(x: &[f32]) -> (f32, f32) {
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    (max, amax)
}

/// The sums `Σ w·x·l` and `Σ w·l²` with `w = x²`, and the levels `l` of `x` at `iscale` clamped
/// to `-nmax..nmax`, into `levels` (offset by `nmax`) when given.
fn x2_weighted_sums(
    x: &[f32],
    nmax: i32,
    iscale: f32,
    mut levels: Option<&mut [i8]>,
) -> (f32, f32) {
    let (mut sumlx, mut suml2) = (0f32, 0f32);
    for (i, &v) in x.iter().enumerate() {
        let l = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        if let Some(levels) = levels.as_deref_mut() {
            levels[i] = (l + nmax) as i8;
        }
        let w = v * v;
        let l = l as f32;
        sumlx += w * v * l;
        suml2 += w * l * l;
    }
    (sumlx, suml2)
}

/// A symmetric scale for `x` with levels `-nmax..nmax` weighted by `x²` (ggml's `make_qx_quants`
/// with `rmse_type` 1 and no importance weights): the least-squares scale for the levels of
/// `-nmax/max`, then for the levels of 18 nearby inverse scales, keeping the best. The levels,
/// offset by `nmax`, go to `levels`; returns the scale (0 for a block of zeros).
fn symmetric_scale(x: &[f32], nmax: i32, levels: &mut [i8]) -> f32 {
    let (max, amax) = signed_max(x);
    if amax < GROUP_MAX_EPS {
        levels.fill(0);
        return 0.0;
    }
    let nmax_f = nmax as f32;
    let (mut sumlx, mut suml2) = x2_weighted_sums(x, nmax, -nmax_f / max, Some(levels));
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for step in (-9..=9).filter(|&s| s != 0) {
        let iscale = -(nmax_f + 0.1 * step as f32) / max;
        (sumlx, suml2) = x2_weighted_sums(x, nmax, iscale, None);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            x2_weighted_sums(x, nmax, iscale, Some(levels));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// A symmetric scale for `x` with levels `-nmax..nmax` (ggml's `make_q3_quants` with `do_rmse`):
/// the levels of `-nmax/max`, then up to five passes that move single levels to where the
/// `x²`-weighted least-squares fit improves. The levels, offset by `nmax`, go to `levels` (all 0
/// for a block of zeros, not offset); returns the scale.
fn symmetric_scale_refined(x: &[f32], nmax: i32, levels: &mut [i8]) -> f32 {
    let (max, amax) = signed_max(x);
    if amax < GROUP_MAX_EPS {
        levels.fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0f32, 0f32);
    for (level, &v) in levels.iter_mut().zip(x) {
        let l = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        *level = l as i8;
        let w = v * v;
        sumlx += w * v * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    for _ in 0..5 {
        let mut changed = false;
        for (level, &v) in levels.iter_mut().zip(x) {
            let w = v * v;
            let old = *level as f32;
            let mut slx = sumlx - w * v * old;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * old * old;
                let new = nearest_int(v * sl2 / slx).clamp(-nmax, nmax - 1);
                if new != *level as i32 {
                    let new_f = new as f32;
                    slx += w * v * new_f;
                    sl2 += w * new_f * new_f;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        *level = new as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    for level in levels.iter_mut() {
        *level += nmax as i8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// How [`scale_and_min`] searches: inverse scales `(rmin + rdelta·k + nmax) / (max − min)` for
/// `k` in `0..=steps`, errors as absolute values (`mad`) or squares.
struct MinSearch {
    rmin: f32,
    rdelta: f32,
    steps: i32,
    mad: bool,
}

/// An affine fit `x ≈ scale·l − min_out` with levels `0..=nmax` and weights `w` (ggml's
/// `make_qkx2_quants`): the levels of the range `[min(x, 0), max(x)]`, then the weighted
/// least-squares scale and offset for the levels of each inverse scale of `search`, keeping the
/// one of least weighted error. Levels go to `levels`; returns `(scale, min_out)`, `min_out ≥ 0`
/// being the negated offset.
fn scale_and_min(
    x: &[f32],
    w: &[f32],
    nmax: i32,
    search: &MinSearch,
    levels: &mut [u8],
) -> (f32, f32) {
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = w[0];
    let mut sum_x = sum_w * x[0];
    for (&v, &wi) in x.iter().zip(w).skip(1) {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
        sum_w += wi;
        sum_x += wi * v;
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        levels.fill(0);
        return (0.0, -min);
    }
    let error = |d: f32| if search.mad { d.abs() } else { d * d };
    // The offset `min` is the best fit's so far: a better candidate moves it, and with it the
    // range the later inverse scales divide (as in ggml).
    let level_at =
        |iscale: f32, v: f32, min: f32| nearest_int(iscale * (v - min)).clamp(0, nmax) as u8;

    let iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for ((level, &v), &wi) in levels.iter_mut().zip(x).zip(w) {
        *level = level_at(iscale, v, min);
        best_error += wi * error(scale * *level as f32 + min - v);
    }
    let mut trial = [0u8; 32];
    let trial = &mut trial[..x.len()];
    for step in 0..=search.steps {
        let iscale = (search.rmin + search.rdelta * step as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for ((level, &v), &wi) in trial.iter_mut().zip(x).zip(w) {
            *level = level_at(iscale, v, min);
            let l = *level as f32;
            sum_l += wi * l;
            sum_l2 += wi * l * l;
            sum_xl += wi * l * v;
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0f32;
            for ((&level, &v), &wi) in trial.iter().zip(x).zip(w) {
                cur_error += wi * error(this_scale * level as f32 + this_min - v);
            }
            if cur_error < best_error {
                levels.copy_from_slice(trial);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Packs 2-bit levels as Q2_K and Q3_K store them: per 128 values, byte `l` of the 32 holds
/// values `l`, `l+32`, `l+64`, `l+96` in bits 0-1, 2-3, 4-5, 6-7.
fn pack_2bit(levels: &[u8; QK_K], qs: &mut [u8; QK_K / 4]) {
    for (q, l) in qs.chunks_exact_mut(32).zip(levels.chunks_exact(128)) {
        for j in 0..32 {
            q[j] = l[j] | (l[j + 32] << 2) | (l[j + 64] << 4) | (l[j + 96] << 6);
        }
    }
}

/// The 6-bit scale and min of sub-block `j` in Q4_K/Q5_K's 12 scale bytes (ggml's
/// `get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Quantizes `x` (`blocks.len() · 256` values) into Q2_K blocks.
pub fn quantize_q2_k(x: &[f32], blocks: &mut [BlockQ2K]) {
    const SEARCH: MinSearch = MinSearch {
        rmin: -0.5,
        rdelta: 0.1,
        steps: 15,
        mad: true,
    };
    const Q4SCALE: f32 = 15.0;
    for (block, x) in blocks.iter_mut().zip(x.chunks_exact(QK_K)) {
        let mut levels = [0u8; QK_K];
        let mut scales = [0f32; QK_K / 16];
        let mut mins = [0f32; QK_K / 16];
        let (mut max_scale, mut max_min) = (0f32, 0f32);
        for (j, (xs, ls)) in x
            .chunks_exact(16)
            .zip(levels.chunks_exact_mut(16))
            .enumerate()
        {
            let mut weights = [0f32; 16];
            for (w, v) in weights.iter_mut().zip(xs) {
                *w = v.abs();
            }
            (scales[j], mins[j]) = scale_and_min(xs, &weights, 3, &SEARCH, ls);
            if scales[j] > max_scale {
                max_scale = scales[j];
            }
            if mins[j] > max_min {
                max_min = mins[j];
            }
        }

        if max_scale > 0.0 {
            let iscale = Q4SCALE / max_scale;
            for (sc, &s) in block.scales.iter_mut().zip(&scales) {
                *sc = nearest_int(iscale * s) as u8;
            }
            block.d = F16::from_f32(max_scale / Q4SCALE);
        } else {
            block.scales = [0; QK_K / 16];
            block.d = F16::from_f32(0.0);
        }
        if max_min > 0.0 {
            let iscale = Q4SCALE / max_min;
            for (sc, &m) in block.scales.iter_mut().zip(&mins) {
                *sc |= (nearest_int(iscale * m) << 4) as u8;
            }
            block.dmin = F16::from_f32(max_min / Q4SCALE);
        } else {
            block.dmin = F16::from_f32(0.0);
        }

        let (d_all, dmin_all) = (block.d.to_f32(), block.dmin.to_f32());
        for ((&sc, xs), ls) in block
            .scales
            .iter()
            .zip(x.chunks_exact(16))
            .zip(levels.chunks_exact_mut(16))
        {
            let d = d_all * (sc & 0xf) as f32;
            if d == 0.0 {
                continue;
            }
            let dm = dmin_all * (sc >> 4) as f32;
            for (l, &v) in ls.iter_mut().zip(xs) {
                *l = nearest_int((v + dm) / d).clamp(0, 3) as u8;
            }
        }
        pack_2bit(&levels, &mut block.qs);
    }
}

/// Quantizes `x` (`blocks.len() · 256` values) into Q3_K blocks.
pub fn quantize_q3_k(x: &[f32], blocks: &mut [BlockQ3K]) {
    for (block, x) in blocks.iter_mut().zip(x.chunks_exact(QK_K)) {
        let mut levels = [0i8; QK_K];
        let mut scales = [0f32; QK_K / 16];
        let (mut max_scale, mut amax) = (0f32, 0f32);
        for (j, (xs, ls)) in x
            .chunks_exact(16)
            .zip(levels.chunks_exact_mut(16))
            .enumerate()
        {
            scales[j] = symmetric_scale_refined(xs, 4, ls);
            if scales[j].abs() > amax {
                amax = scales[j].abs();
                max_scale = scales[j];
            }
        }

        block.scales = [0; 12];
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            for (j, &s) in scales.iter().enumerate() {
                // Stored as i8 first (wrapping), then clamped: ggml's `int8_t l`.
                let l = ((nearest_int(iscale * s) as i8) as i32).clamp(-32, 31) + 32;
                let l = l as u8;
                if j < 8 {
                    block.scales[j] = l & 0xf;
                } else {
                    block.scales[j - 8] |= (l & 0xf) << 4;
                }
                block.scales[j % 4 + 8] |= (l >> 4) << (2 * (j / 4));
            }
            block.d = F16::from_f32(1.0 / iscale);
        } else {
            block.d = F16::from_f32(0.0);
        }

        let d_all = block.d.to_f32();
        for (j, (xs, ls)) in x
            .chunks_exact(16)
            .zip(levels.chunks_exact_mut(16))
            .enumerate()
        {
            let low = if j < 8 {
                block.scales[j] & 0xf
            } else {
                block.scales[j - 8] >> 4
            };
            let high = (block.scales[8 + j % 4] >> (2 * (j / 4))) & 3;
            let sc = (low | (high << 4)) as i32 - 32;
            let d = d_all * sc as f32;
            if d == 0.0 {
                continue;
            }
            for (l, &v) in ls.iter_mut().zip(xs) {
                *l = (nearest_int(v / d).clamp(-4, 3) + 4) as i8;
            }
        }

        // The third bit of value j goes to bit j / 32 of hmask[j % 32].
        block.hmask = [0; QK_K / 8];
        let mut low = [0u8; QK_K];
        for (j, (lo, &l)) in low.iter_mut().zip(&levels).enumerate() {
            let mut l = l;
            if l > 3 {
                block.hmask[j % 32] |= 1 << (j / 32);
                l -= 4;
            }
            *lo = l as u8;
        }
        pack_2bit(&low, &mut block.qs);
    }
}

/// Q4_K and Q5_K's common part: per sub-block of 32, weights `rms(x) + |x|` and an affine fit with
/// levels `0..=nmax`; the 8 scales and mins quantized to 6 bits against the largest, into
/// `scales` as [`scale_min_k4`] reads them; `d` and `dmin`; then the values requantized with the
/// stored scales into `levels`. Returns `(d, dmin)`.
fn quantize_k4_scales(
    x: &[f32],
    nmax: i32,
    search: &MinSearch,
    levels: &mut [u8; QK_K],
    packed: &mut [u8; 12],
) -> (F16, F16) {
    let mut scales = [0f32; QK_K / 32];
    let mut mins = [0f32; QK_K / 32];
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for (j, (xs, ls)) in x
        .chunks_exact(32)
        .zip(levels.chunks_exact_mut(32))
        .enumerate()
    {
        let mut sum_x2 = 0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        let mut weights = [0f32; 32];
        for (w, v) in weights.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        (scales[j], mins[j]) = scale_and_min(xs, &weights, nmax, search, ls);
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }

    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    for j in 0..QK_K / 32 {
        // Stored as u8 first (wrapping), then capped: ggml's `uint8_t ls`.
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    let d = F16::from_f32(max_scale / 63.0);
    let dmin = F16::from_f32(max_min / 63.0);

    for (j, (xs, ls)) in x
        .chunks_exact(32)
        .zip(levels.chunks_exact_mut(32))
        .enumerate()
    {
        let (sc, m) = scale_min_k4(j, packed);
        let d = d.to_f32() * sc as f32;
        if d == 0.0 {
            continue;
        }
        let dm = dmin.to_f32() * m as f32;
        for (l, &v) in ls.iter_mut().zip(xs) {
            *l = nearest_int((v + dm) / d).clamp(0, nmax) as u8;
        }
    }
    (d, dmin)
}

/// Quantizes `x` (`blocks.len() · 256` values) into Q4_K blocks.
pub fn quantize_q4_k(x: &[f32], blocks: &mut [BlockQ4K]) {
    const SEARCH: MinSearch = MinSearch {
        rmin: -1.0,
        rdelta: 0.1,
        steps: 20,
        mad: false,
    };
    for (block, x) in blocks.iter_mut().zip(x.chunks_exact(QK_K)) {
        let mut levels = [0u8; QK_K];
        (block.d, block.dmin) = quantize_k4_scales(x, 15, &SEARCH, &mut levels, &mut block.scales);
        // Per 64 values, byte l of the 32 holds value l (low nibble) and l + 32 (high nibble).
        for (q, l) in block.qs.chunks_exact_mut(32).zip(levels.chunks_exact(64)) {
            for j in 0..32 {
                q[j] = l[j] | (l[j + 32] << 4);
            }
        }
    }
}

/// Quantizes `x` (`blocks.len() · 256` values) into Q5_K blocks.
pub fn quantize_q5_k(x: &[f32], blocks: &mut [BlockQ5K]) {
    const SEARCH: MinSearch = MinSearch {
        rmin: -0.5,
        rdelta: 0.1,
        steps: 15,
        mad: false,
    };
    for (block, x) in blocks.iter_mut().zip(x.chunks_exact(QK_K)) {
        let mut levels = [0u8; QK_K];
        (block.d, block.dmin) = quantize_k4_scales(x, 31, &SEARCH, &mut levels, &mut block.scales);
        // As Q4_K's nibbles, the fifth bit of value 64·c + l (l < 32) in bit 2c of qh[l], of value
        // 64·c + 32 + l in bit 2c + 1.
        block.qh = [0; QK_K / 8];
        for (c, (q, l)) in block
            .qs
            .chunks_exact_mut(32)
            .zip(levels.chunks_exact(64))
            .enumerate()
        {
            let (m1, m2) = (1u8 << (2 * c), 2u8 << (2 * c));
            for j in 0..32 {
                let (mut l1, mut l2) = (l[j], l[j + 32]);
                if l1 > 15 {
                    l1 -= 16;
                    block.qh[j] |= m1;
                }
                if l2 > 15 {
                    l2 -= 16;
                    block.qh[j] |= m2;
                }
                q[j] = l1 | (l2 << 4);
            }
        }
    }
}

/// Quantizes `x` (`blocks.len() · 256` values) into Q6_K blocks.
pub fn quantize_q6_k(x: &[f32], blocks: &mut [BlockQ6K]) {
    for (block, x) in blocks.iter_mut().zip(x.chunks_exact(QK_K)) {
        let mut levels = [0i8; QK_K];
        let mut scales = [0f32; QK_K / 16];
        let (mut max_scale, mut max_abs_scale) = (0f32, 0f32);
        for (j, (xs, ls)) in x
            .chunks_exact(16)
            .zip(levels.chunks_exact_mut(16))
            .enumerate()
        {
            scales[j] = symmetric_scale(xs, 32, ls);
            if scales[j].abs() > max_abs_scale {
                max_abs_scale = scales[j].abs();
                max_scale = scales[j];
            }
        }

        if max_abs_scale < GROUP_MAX_EPS {
            *block = bytemuck::Zeroable::zeroed();
            continue;
        }

        let iscale = -128.0 / max_scale;
        block.d = F16::from_f32(1.0 / iscale);
        for (sc, &s) in block.scales.iter_mut().zip(&scales) {
            *sc = nearest_int(iscale * s).min(127) as i8;
        }

        let d_all = block.d.to_f32();
        for ((&sc, xs), ls) in block
            .scales
            .iter()
            .zip(x.chunks_exact(16))
            .zip(levels.chunks_exact_mut(16))
        {
            let d = d_all * sc as f32;
            if d == 0.0 {
                continue;
            }
            for (l, &v) in ls.iter_mut().zip(xs) {
                *l = (nearest_int(v / d).clamp(-32, 31) + 32) as i8;
            }
        }

        // Per 128 values: ql[l] holds the low nibbles of values l and l + 64, ql[l + 32] those
        // of l + 32 and l + 96; qh[l] the high two bits of l, l + 32, l + 64, l + 96.
        for ((ql, qh), l) in block
            .ql
            .chunks_exact_mut(64)
            .zip(block.qh.chunks_exact_mut(32))
            .zip(levels.chunks_exact(128))
        {
            for j in 0..32 {
                let [a, b, c, d] = [l[j], l[j + 32], l[j + 64], l[j + 96]].map(|v| v as u8);
                ql[j] = (a & 0xf) | ((c & 0xf) << 4);
                ql[j + 32] = (b & 0xf) | ((d & 0xf) << 4);
                qh[j] = (a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) | ((d >> 4) << 6);
            }
        }
    }
}
