//! The embedding lookup: `out[t, :] = W[ids[t], :]`, rows decoded from their GGUF blocks (ggml's
//! `get_rows` on a quantized matrix).
//!
//! One unit per (chunk of 32 elements, token): it decodes chunk `c` of row `ids[t]` with
//! [`super::decode_chunk`] and writes the 32 values (fewer for the last chunk of a float row).
//! The grid is `(⌈chunks / 64⌉, n_ids)` workgroups of 64 units.

use cubecl::prelude::*;

use super::{decode_chunk, is_float_id};

/// Units per workgroup.
pub const UNITS: u32 = 64;

#[cube(launch_unchecked)]
pub fn get_rows_kernel(
    w: &[u32],
    ids: &[u32],
    out: &mut [f32],
    cols: u32,
    row_bytes: u32,
    #[comptime] ty: u32,
) {
    let c = CUBE_POS_X * comptime!(UNITS) + UNIT_POS;
    let t = CUBE_POS_Y;
    let mut n_chunks = cols / 32;
    if comptime!(is_float_id(ty)) {
        n_chunks = cols.div_ceil(32);
    }
    if c >= n_chunks {
        terminate!();
    }
    let rb = ids[t as usize] * row_bytes;
    let mut vals = Array::<f32>::new(32usize);
    decode_chunk(w, rb, c, cols, &mut vals, ty);
    let o = t * cols + c * 32;
    if comptime!(is_float_id(ty)) {
        let rem = cols - c * 32;
        let n = select(rem < 32, rem, 32u32);
        for l in 0..n {
            out[(o + l) as usize] = vals[l as usize];
        }
    } else {
        #[unroll]
        for l in 0..32u32 {
            out[(o + l) as usize] = vals[l as usize];
        }
    }
}
