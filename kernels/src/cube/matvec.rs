//! The decode kernel: `y[i, r] = Σ_k W[r, k] · x[i, k]` for a few activation rows `i`.
//!
//! One workgroup of `wg` units per (weight row `r`, activation row `i`). Unit `u` takes chunks
//! `u, u + wg, u + 2·wg, …` of the row (32 elements each, see [`super::decode_chunk`]), decodes
//! each into registers and dots it with `x[i, 32c..32c + 32]`; neighbouring units read
//! neighbouring blocks, so a workgroup streams its weight row once, front to back. The `wg`
//! partial sums are then reduced:
//!
//! ```text
//! plane ops:  plane_sum in each plane ─► one value per plane in shared memory ─► unit 0 adds them
//! otherwise:  shared[u] = partial; log2(wg) halving steps, each followed by a workgroup barrier
//! ```
//!
//! The grid is `(gx, gy, m)` with `r = CUBE_POS_Y · gx + CUBE_POS_X`, since a dimension of the
//! grid holds at most 65535 workgroups and vocabularies are larger.

use cubecl::prelude::*;

use super::{decode_chunk, is_float_id};

#[cube(launch_unchecked)]
pub fn matvec_kernel(
    w: &[u32],
    x: &[f32],
    y: &mut [f32],
    rows: u32,
    cols: u32,
    row_bytes: u32,
    #[comptime] ty: u32,
    #[comptime] wg: usize,
    #[comptime] use_plane: bool,
) {
    let row = CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X;
    // Uniform over the workgroup: whole workgroups leave, before any barrier.
    if row >= rows {
        terminate!();
    }
    let mi = CUBE_POS_Z;
    let mut n_chunks = cols / 32;
    if comptime!(is_float_id(ty)) {
        n_chunks = cols.div_ceil(32);
    }
    let rb = row * row_bytes;
    let xo = mi * cols;

    let mut vals = Array::<f32>::new(32usize);
    let mut acc = 0.0f32;
    for c in range_stepped(UNIT_POS, n_chunks, comptime!(wg as u32)) {
        decode_chunk(w, rb, c, cols, &mut vals, ty);
        let k0 = xo + c * 32;
        if comptime!(is_float_id(ty)) {
            // The last chunk of a float row may be short.
            let rem = cols - c * 32;
            let n = select(rem < 32, rem, 32u32);
            for l in 0..n {
                acc += vals[l as usize] * x[(k0 + l) as usize];
            }
        } else {
            #[unroll]
            for l in 0..32u32 {
                acc += vals[l as usize] * x[(k0 + l) as usize];
            }
        }
    }

    let out = (mi * rows + row) as usize;
    if comptime!(use_plane) {
        let s = plane_sum(acc);
        let mut partial = Shared::<[f32]>::new_slice(wg);
        if UNIT_POS_PLANE == 0 {
            partial[PLANE_POS as usize] = s;
        }
        sync_cube();
        if UNIT_POS == 0 {
            #[allow(clippy::manual_div_ceil)] // cube code: no div_ceil in the kernel language
            let planes = (comptime!(wg as u32) + PLANE_DIM - 1) / PLANE_DIM;
            let mut total = 0.0f32;
            for p in 0..planes {
                total += partial[p as usize];
            }
            y[out] = total;
        }
    } else {
        let mut partial = Shared::<[f32]>::new_slice(wg);
        let u = UNIT_POS as usize;
        partial[u] = acc;
        sync_cube();
        #[unroll]
        for i in 0..comptime!(wg.trailing_zeros() as usize) {
            let stride = comptime!(wg >> (i + 1));
            if u < stride {
                let v = partial[u + stride];
                partial[u] += v;
            }
            sync_cube();
        }
        if UNIT_POS == 0 {
            y[out] = partial[0];
        }
    }
}
