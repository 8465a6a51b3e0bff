//! The prefill kernel: a 32 × 32 tile of `y` per workgroup of 64 units, K walked one chunk
//! (32 columns) at a time through shared memory.
//!
//! ```text
//!            x tile  xs[32][33]          W tile  ws[32][33]  (rows of W, decoded)
//! units 32..64 load 32 rows of x    units 0..32 decode chunk c of 32 weight rows
//!                     └──── barrier ────┘
//! unit u = (gy, gx) = (u / 8, u % 8) accumulates y[tm0 + gy + 8a, tn0 + gx + 8b], a, b in 0..4:
//!     acc[a][b] += Σ_k xs[gy + 8a][k] · ws[gx + 8b][k]
//!                     └──── barrier ────┘   (before the next chunk overwrites the tiles)
//! ```
//!
//! Each weight chunk is decoded once per workgroup and used by 32 activation rows; the row
//! stride of 33 keeps the column reads of `ws`/`xs` off a single shared-memory bank.

use cubecl::prelude::*;

use super::{decode_chunk, is_float_id};

/// Output rows (of `x`) and columns (rows of `W`) per tile.
pub const TILE: u32 = 32;
/// Units per workgroup.
pub const UNITS: u32 = 64;

#[cube(launch_unchecked)]
pub fn tiled_kernel(
    w: &[u32],
    x: &[f32],
    y: &mut [f32],
    m: u32,
    rows: u32,
    cols: u32,
    row_bytes: u32,
    #[comptime] ty: u32,
) {
    let tn0 = CUBE_POS_X * 32;
    let tm0 = CUBE_POS_Y * 32;
    let u = UNIT_POS;
    let gx = u & 7;
    let gy = u >> 3;

    let mut ws = Shared::<[f32]>::new_slice(32usize * 33);
    let mut xs = Shared::<[f32]>::new_slice(32usize * 33);
    let mut vals = Array::<f32>::new(32usize);
    let mut acc = Array::<f32>::new(16usize);
    #[unroll]
    for i in 0..16usize {
        acc[i] = 0.0f32;
    }

    let mut n_chunks = cols / 32;
    if comptime!(is_float_id(ty)) {
        n_chunks = cols.div_ceil(32);
    }

    for c in 0..n_chunks {
        if u < 32 {
            // Decode chunk c of weight row tn0 + u.
            let r = tn0 + u;
            if r < rows {
                decode_chunk(w, r * row_bytes, c, cols, &mut vals, ty);
            } else {
                #[unroll]
                for l in 0..32usize {
                    vals[l] = 0.0f32;
                }
            }
            let o = (u * 33) as usize;
            #[unroll]
            for l in 0..32usize {
                ws[o + l] = vals[l];
            }
        } else {
            // Load x[tm0 + i, 32c..32c + 32], zeros past m and past cols.
            let i = u - 32;
            let r = tm0 + i;
            let k0 = c * 32;
            let o = (i * 33) as usize;
            #[unroll]
            for l in 0..32u32 {
                let k = k0 + l;
                let mut v = 0.0f32;
                if r < m && k < cols {
                    v = x[(r * cols + k) as usize];
                }
                xs[o + l as usize] = v;
            }
        }
        sync_cube();

        #[unroll]
        for k in 0..32u32 {
            #[unroll]
            for a in 0..4u32 {
                let xv = xs[((gy + 8 * a) * 33 + k) as usize];
                #[unroll]
                for b in 0..4u32 {
                    acc[(4 * a + b) as usize] += xv * ws[((gx + 8 * b) * 33 + k) as usize];
                }
            }
        }
        sync_cube();
    }

    #[unroll]
    for a in 0..4u32 {
        let ym = tm0 + gy + 8 * a;
        #[unroll]
        for b in 0..4u32 {
            let yn = tn0 + gx + 8 * b;
            if ym < m && yn < rows {
                y[(ym * rows + yn) as usize] = acc[(4 * a + b) as usize];
            }
        }
    }
}
