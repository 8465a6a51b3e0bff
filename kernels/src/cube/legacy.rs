//! The 32-element formats on the GPU: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, mirroring ggml-quants.c's
//! `dequantize_row_q4_0` … `dequantize_row_q8_0`. A chunk of 32 elements is one block.
//!
//! ```text
//! Q4_0 (18 B): | d f16 | qs[16] |                      x = d · (q - 8)
//! Q4_1 (20 B): | d f16 | m f16 | qs[16] |              x = d · q + m
//! Q5_0 (22 B): | d f16 | qh u32 | qs[16] |             x = d · (q - 16)
//! Q5_1 (24 B): | d f16 | m f16 | qh u32 | qs[16] |     x = d · q + m
//! Q8_0 (34 B): | d f16 | qs[32] i8 |                   x = d · q
//!
//! qs[j] = | x[j+16] low 4 bits | x[j] low 4 bits |     (high nibble | low nibble), j in 0..16
//! qh bit j = fifth bit of x[j]                          j in 0..32
//! ```
//!
//! The products are formed as the reference forms them (`q as f32 · d`, then `+ m`), so the decoded
//! weights equal `gguf_importer::quants`' up to the GPU's freedom to fuse `d · q + m` into an FMA.

use cubecl::prelude::*;

use super::bits::{f16_to_f32, i8_to_f32, u16_at, u32_at};

/// Q4_0 block `c` of the row at byte `rb` into `out[0..32]`.
#[cube]
pub fn decode_q4_0(w: &[u32], rb: u32, c: u32, out: &mut Array<f32>) {
    let base = rb + c * 18;
    let d = f16_to_f32(u16_at(w, base));
    #[unroll]
    for j in 0..4u32 {
        // qs[4j..4j+4]: elements 4j..4j+4 (low nibbles) and 4j+16..4j+20 (high nibbles).
        let q = u32_at(w, base + 2 + 4 * j);
        #[unroll]
        for k in 0..4u32 {
            let b = (q >> (8 * k)) & 0xFF;
            out[(4 * j + k) as usize] = (f32::cast_from(b & 0x0F) - 8.0) * d;
            out[(4 * j + k + 16) as usize] = (f32::cast_from(b >> 4) - 8.0) * d;
        }
    }
}

/// Q4_1 block `c` of the row at byte `rb` into `out[0..32]`.
#[cube]
pub fn decode_q4_1(w: &[u32], rb: u32, c: u32, out: &mut Array<f32>) {
    let base = rb + c * 20;
    let d = f16_to_f32(u16_at(w, base));
    let m = f16_to_f32(u16_at(w, base + 2));
    #[unroll]
    for j in 0..4u32 {
        let q = u32_at(w, base + 4 + 4 * j);
        #[unroll]
        for k in 0..4u32 {
            let b = (q >> (8 * k)) & 0xFF;
            out[(4 * j + k) as usize] = f32::cast_from(b & 0x0F) * d + m;
            out[(4 * j + k + 16) as usize] = f32::cast_from(b >> 4) * d + m;
        }
    }
}

/// Q5_0 / Q5_1 body: `qs` at `base + qs_off`, `qh` at `base + qs_off - 4`; `x = d · q + bias`
/// (`bias` = -16·d for Q5_0 is applied as `(q - 16) · d` to match the reference).
#[cube]
fn decode_q5(
    w: &[u32],
    base: u32,
    qs_off: u32,
    d: f32,
    m: f32,
    #[comptime] with_min: bool,
    out: &mut Array<f32>,
) {
    let qh = u32_at(w, base + qs_off - 4);
    #[unroll]
    for j in 0..4u32 {
        let q = u32_at(w, base + qs_off + 4 * j);
        #[unroll]
        for k in 0..4u32 {
            let l = 4 * j + k;
            let b = (q >> (8 * k)) & 0xFF;
            let lo = (b & 0x0F) | (((qh >> l) & 1) << 4);
            let hi = (b >> 4) | (((qh >> (l + 16)) & 1) << 4);
            if comptime!(with_min) {
                out[l as usize] = f32::cast_from(lo) * d + m;
                out[(l + 16) as usize] = f32::cast_from(hi) * d + m;
            } else {
                out[l as usize] = (f32::cast_from(lo) - 16.0) * d;
                out[(l + 16) as usize] = (f32::cast_from(hi) - 16.0) * d;
            }
        }
    }
}

/// Q5_0 block `c` of the row at byte `rb` into `out[0..32]`.
#[cube]
pub fn decode_q5_0(w: &[u32], rb: u32, c: u32, out: &mut Array<f32>) {
    let base = rb + c * 22;
    let d = f16_to_f32(u16_at(w, base));
    decode_q5(w, base, 6, d, 0.0f32, false, out);
}

/// Q5_1 block `c` of the row at byte `rb` into `out[0..32]`.
#[cube]
pub fn decode_q5_1(w: &[u32], rb: u32, c: u32, out: &mut Array<f32>) {
    let base = rb + c * 24;
    let d = f16_to_f32(u16_at(w, base));
    let m = f16_to_f32(u16_at(w, base + 2));
    decode_q5(w, base, 8, d, m, true, out);
}

/// Q8_0 block `c` of the row at byte `rb` into `out[0..32]`.
#[cube]
pub fn decode_q8_0(w: &[u32], rb: u32, c: u32, out: &mut Array<f32>) {
    let base = rb + c * 34;
    let d = f16_to_f32(u16_at(w, base));
    #[unroll]
    for j in 0..8u32 {
        let q = u32_at(w, base + 2 + 4 * j);
        #[unroll]
        for k in 0..4u32 {
            out[(4 * j + k) as usize] = i8_to_f32((q >> (8 * k)) & 0xFF) * d;
        }
    }
}
