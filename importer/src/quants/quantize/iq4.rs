//! Quantization to IQ4_NL and IQ4_XS, as ggml's `quantize_iq4_nl` / `quantize_iq4_xs`
//! (ggml-quants.c, `quantize_row_iq4_nl_impl` with `ntry = 7`): what llama.cpp's quantizer runs
//! for these types (without an importance matrix the weights are `x²`).
//!
//! Per block of 32 (IQ4_NL: the block; IQ4_XS: each of the 8 sub-blocks of a super-block):
//!
//! ```text
//! max   = the element of largest magnitude (the first of equals); a block below 1e-15 gets scale 0
//! d     = -max / kvalues[0]; levels l_j = the nearest table entry to x_j / d (best_index_int8)
//! d     = Σ w·q·x / Σ w·q²                (q = kvalues[l], w = x², sums left to right in f32)
//! then for t in -7..=7: the levels of the inverse scale (t + kvalues[0]) / max; keep the
//!       least-squares scale of the first that beats the best so far (Σwqx² > best · Σwq²)
//! ```
//!
//! IQ4_NL stores that scale as f16 and requantizes every element against it. IQ4_XS stores the
//! super-block's `d = -max_scale / 32` (the sub-block scale of largest magnitude) as f16 and
//! each sub-block's `l = nearest_int(scale / d)` clamped to -32..31 in 6 bits (`l + 32`: low
//! nibbles in `scales_l`, high bits in `scales_h`), then requantizes each sub-block against
//! `d · l` (`d` as f32, not the f16 it is stored as, as ggml does).
//!
//! The arithmetic is ggml's operation for operation in f32, with no fused multiply-adds, as the
//! K-quants' (`kquants.rs`).

use super::kquants::{nearest_int, signed_max, GROUP_MAX_EPS};
use crate::quants::iquant_tables::KVALUES_IQ4NL;
use crate::quants::{BlockIq4Nl, BlockIq4Xs, F16};
use crate::types::QK_K;

/// The scale search's half width (`ntry`).
const NTRY: i32 = 7;

/// The index of the table entry nearest to `x` (ggml's `best_index_int8`: a bisection, the lower
/// entry on a tie).
fn best_index(values: &[i8; 16], x: f32) -> u8 {
    if x <= values[0] as f32 {
        return 0;
    }
    if x >= values[15] as f32 {
        return 15;
    }
    let (mut ml, mut mu) = (0usize, 15usize);
    while mu - ml > 1 {
        let mav = (ml + mu) / 2;
        if x < values[mav] as f32 {
            mu = mav;
        } else {
            ml = mav;
        }
    }
    if x - (values[mu - 1] as f32) < values[mu] as f32 - x {
        (mu - 1) as u8
    } else {
        mu as u8
    }
}

/// `Σ w·q·x` and `Σ w·q²` of `x` (weights `x²`) at the inverse scale `id`, the levels into `levels`
/// when given.
fn weighted_sums(x: &[f32], id: f32, mut levels: Option<&mut [u8]>) -> (f32, f32) {
    let (mut sumqx, mut sumq2) = (0f32, 0f32);
    for (j, &v) in x.iter().enumerate() {
        let l = best_index(&KVALUES_IQ4NL, id * v);
        if let Some(levels) = levels.as_deref_mut() {
            levels[j] = l;
        }
        let q = KVALUES_IQ4NL[l as usize] as f32;
        let w = v * v;
        sumqx += w * q * v;
        sumq2 += w * q * q;
    }
    (sumqx, sumq2)
}

/// The least-squares scale of a block of 32 after ggml's search (see the module documentation);
/// 0 for a block of zeros.
fn block_scale(x: &[f32]) -> f32 {
    let (max, amax) = signed_max(x);
    if amax < GROUP_MAX_EPS {
        return 0.0;
    }
    let v0 = KVALUES_IQ4NL[0] as f32;
    let d = -max / v0;
    let (sumqx, sumq2) = weighted_sums(x, 1.0 / d, None);
    let mut d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
    let mut best = d * sumqx;
    for itry in -NTRY..=NTRY {
        let id = (itry + KVALUES_IQ4NL[0] as i32) as f32 / max;
        let (sumqx, sumq2) = weighted_sums(x, id, None);
        if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    d
}

/// The levels of `x` against the scale `d` (`1/d`, or 0 for `d = 0`) into `levels`.
fn levels_at(x: &[f32], d: f32, levels: &mut [u8]) {
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for (l, &v) in levels.iter_mut().zip(x) {
        *l = best_index(&KVALUES_IQ4NL, id * v);
    }
}

/// Elements `j` and `j + 16` of each 32 in the low and high nibbles of byte `j`.
fn pack(levels: &[u8], qs: &mut [u8]) {
    for (l, q) in levels.chunks_exact(32).zip(qs.chunks_exact_mut(16)) {
        for j in 0..16 {
            q[j] = l[j] | (l[j + 16] << 4);
        }
    }
}

/// `x` (whole blocks of 32) into IQ4_NL `blocks`.
pub fn quantize_iq4_nl(x: &[f32], blocks: &mut [BlockIq4Nl]) {
    let mut levels = [0u8; 32];
    for (x, block) in x.chunks_exact(32).zip(blocks) {
        let d = block_scale(x);
        block.d = F16::from_f32(d);
        levels_at(x, d, &mut levels);
        pack(&levels, &mut block.qs);
    }
}

/// `x` (whole super-blocks of 256) into IQ4_XS `blocks`.
pub fn quantize_iq4_xs(x: &[f32], blocks: &mut [BlockIq4Xs]) {
    let mut levels = [0u8; QK_K];
    for (x, block) in x.chunks_exact(QK_K).zip(blocks) {
        let scales: [f32; 8] = std::array::from_fn(|ib| block_scale(&x[32 * ib..32 * ib + 32]));
        let (max_scale, _) = signed_max(&scales);
        let d = -max_scale / 32.0;
        block.d = F16::from_f32(d);
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut scales_h = 0u16;
        block.scales_l = [0; QK_K / 64];
        for (ib, &s) in scales.iter().enumerate() {
            let l = nearest_int(id * s).clamp(-32, 31);
            let dl = d * l as f32;
            levels_at(
                &x[32 * ib..32 * ib + 32],
                dl,
                &mut levels[32 * ib..32 * ib + 32],
            );
            let l = (l + 32) as u8;
            block.scales_l[ib / 2] |= (l & 0x0F) << (4 * (ib % 2));
            scales_h |= ((l >> 4) as u16) << (2 * ib);
        }
        block.scales_h = scales_h.to_le_bytes();
        pack(&levels, &mut block.qs);
    }
}
