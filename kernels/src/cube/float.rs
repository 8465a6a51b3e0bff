//! The plain float formats on the GPU: F32, F16, BF16 (ggml's `ggml_fp16_to_fp32_row`,
//! `ggml_bf16_to_fp32_row`). A row is `cols` little-endian values; a chunk is 32 of them, the last
//! chunk of a row cut short when `cols` is not a multiple of 32 (read as zeros past the row).
//!
//! ```text
//! F32:  4 bytes per element, word-aligned (rows start at multiples of 4·cols)
//! F16:  | s | e (5) | m (10) |         2 bytes per element
//! BF16: | s | e (8) | m (7) |          the high half of an f32
//! ```

use cubecl::prelude::*;

use super::bits::{bf16_to_f32, f16_to_f32, u16_at};
use super::{TY_F16, TY_F32};

/// Elements `32c..32c + 32` of the row at byte `rb` into `out[0..32]`, zeros from `cols` on.
#[cube]
pub fn decode_float(
    w: &[u32],
    rb: u32,
    c: u32,
    cols: u32,
    out: &mut Array<f32>,
    #[comptime] ty: u32,
) {
    #[unroll]
    for l in 0..32u32 {
        let k = c * 32 + l;
        let mut v = 0.0f32;
        if k < cols {
            if comptime!(ty == TY_F32) {
                v = f32::reinterpret(w[((rb >> 2) + k) as usize]);
            } else if comptime!(ty == TY_F16) {
                v = f16_to_f32(u16_at(w, rb + 2 * k));
            } else {
                v = bf16_to_f32(u16_at(w, rb + 2 * k));
            }
        }
        out[l as usize] = v;
    }
}
