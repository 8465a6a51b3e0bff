//! The K-quants on the GPU: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, mirroring ggml-quants.c's
//! `dequantize_row_q2_K` … `dequantize_row_q6_K`. A super-block holds 256 elements; the kernels
//! take it as 8 chunks of 32, chunk `c` of a row being elements `32c..32c + 32`: super-block
//! `c / 8`, part `j = c % 8`.
//!
//! ```text
//! Q2_K (84 B):  | scales[16] | qs[64] | d f16 | dmin f16 |
//!   element 128h + 32p + l (h = j/4, p = j%4, l in 0..32):
//!     q  = qs[32h + l] >> 2p & 3,  sc = scales[8h + 2p + l/16]
//!     x  = d·(sc & 15)·q - dmin·(sc >> 4)
//! Q3_K (110 B): | hmask[32] | qs[64] | scales[12] | d f16 |
//!     q  = (qs[32h + l] >> 2p & 3) - (hmask[l] >> (4h + p) & 1 ? 0 : 4)
//!     s  = 6-bit scale i = 8h + 2p + l/16: low 4 bits: i < 8 ? scales[i] & 15 : scales[i-8] >> 4,
//!          high 2 bits: scales[8 + i%4] >> 2(i/4) & 3;   x = d·(s - 32)·q
//! Q4_K (144 B): | d f16 | dmin f16 | scales[12] | qs[128] |
//!     element 32j + l: q = qs[32(j/2) + l] >> 4(j%2) & 15,  x = d·sc_j·q - dmin·m_j
//!     sc_j, m_j (get_scale_min_k4): j < 4: scales[j] & 63, scales[j+4] & 63
//!                                   j ≥ 4: scales[j+4] & 15 | scales[j-4] >> 6 << 4,
//!                                          scales[j+4] >> 4 | scales[j] >> 6 << 4
//! Q5_K (176 B): | d f16 | dmin f16 | scales[12] | qh[32] | qs[128] |
//!     as Q4_K with q += 16·(qh[l] >> j & 1)
//! Q6_K (210 B): | ql[128] | qh[64] | scales[16] i8 | d f16 |
//!     element 128h + 32p + l: q = (ql[64h + 32(p%2) + l] >> 4(p/2) & 15) | (qh[32h + l] >> 2p & 3) << 4
//!     x = d·scales[8h + 2p + l/16]·(q - 32)
//! ```

use cubecl::prelude::*;

use super::bits::{byte_at, f16_to_f32, i8_to_f32, u16_at, u32_at};

/// Q2_K chunk `c` of the row at byte `rb` into `out[0..32]`.
#[cube]
pub fn decode_q2_k(w: &[u32], rb: u32, c: u32, out: &mut Array<f32>) {
    let base = rb + (c >> 3) * 84;
    let h = (c & 7) >> 2;
    let p = c & 3;
    let d = f16_to_f32(u16_at(w, base + 80));
    let dmin = f16_to_f32(u16_at(w, base + 82));
    #[unroll]
    for half in 0..2u32 {
        let sc = byte_at(w, base + 8 * h + 2 * p + half);
        let dl = d * f32::cast_from(sc & 0x0F);
        let ml = dmin * f32::cast_from(sc >> 4);
        #[unroll]
        for i in 0..4u32 {
            let q = u32_at(w, base + 16 + 32 * h + 16 * half + 4 * i);
            #[unroll]
            for k in 0..4u32 {
                let v = (q >> (8 * k + 2 * p)) & 3;
                out[(16 * half + 4 * i + k) as usize] = dl * f32::cast_from(v) - ml;
            }
        }
    }
}

/// Q3_K chunk `c` of the row at byte `rb` into `out[0..32]`.
#[cube]
pub fn decode_q3_k(w: &[u32], rb: u32, c: u32, out: &mut Array<f32>) {
    let base = rb + (c >> 3) * 110;
    let h = (c & 7) >> 2;
    let p = c & 3;
    let d = f16_to_f32(u16_at(w, base + 108));
    let hshift = 4 * h + p;
    #[unroll]
    for half in 0..2u32 {
        // The 6-bit scale of sub-block i (ggml's kmask1/kmask2 unpacking).
        let i = 8 * h + 2 * p + half;
        let low = if i < 8 {
            byte_at(w, base + 96 + i) & 0x0F
        } else {
            byte_at(w, base + 96 + i - 8) >> 4
        };
        let high = (byte_at(w, base + 104 + (i & 3)) >> (2 * (i >> 2))) & 3;
        let dl = d * (f32::cast_from(low | (high << 4)) - 32.0);
        #[unroll]
        for g in 0..4u32 {
            let l0 = 16 * half + 4 * g;
            let q = u32_at(w, base + 32 + 32 * h + l0);
            let hm = u32_at(w, base + l0);
            #[unroll]
            for k in 0..4u32 {
                let lowq = (q >> (8 * k + 2 * p)) & 3;
                let hbit = (hm >> (8 * k + hshift)) & 1;
                let v = f32::cast_from(lowq) - select(hbit == 1, 0.0f32, 4.0f32);
                out[(l0 + k) as usize] = dl * v;
            }
        }
    }
}

/// Scale and min of sub-block `j` of a Q4_K/Q5_K super-block whose 12 scale bytes start at
/// byte `s` (ggml's `get_scale_min_k4`), packed as `sc | m << 8`.
#[cube]
fn scale_min_k4(w: &[u32], s: u32, j: u32) -> u32 {
    if j < 4 {
        (byte_at(w, s + j) & 63) | ((byte_at(w, s + j + 4) & 63) << 8)
    } else {
        let b = byte_at(w, s + j + 4);
        let sc = (b & 0x0F) | ((byte_at(w, s + j - 4) >> 6) << 4);
        let mn = (b >> 4) | ((byte_at(w, s + j) >> 6) << 4);
        sc | (mn << 8)
    }
}

/// Q4_K chunk `c` of the row at byte `rb` into `out[0..32]`.
#[cube]
pub fn decode_q4_k(w: &[u32], rb: u32, c: u32, out: &mut Array<f32>) {
    let base = rb + (c >> 3) * 144;
    let j = c & 7;
    let d = f16_to_f32(u16_at(w, base));
    let dmin = f16_to_f32(u16_at(w, base + 2));
    let sm = scale_min_k4(w, base + 4, j);
    let dl = d * f32::cast_from(sm & 0xFF);
    let ml = dmin * f32::cast_from(sm >> 8);
    let shift = 4 * (j & 1);
    let qs = base + 16 + 32 * (j >> 1);
    #[unroll]
    for i in 0..8u32 {
        let q = u32_at(w, qs + 4 * i);
        #[unroll]
        for k in 0..4u32 {
            let v = (q >> (8 * k + shift)) & 0x0F;
            out[(4 * i + k) as usize] = dl * f32::cast_from(v) - ml;
        }
    }
}

/// Q5_K chunk `c` of the row at byte `rb` into `out[0..32]`.
#[cube]
pub fn decode_q5_k(w: &[u32], rb: u32, c: u32, out: &mut Array<f32>) {
    let base = rb + (c >> 3) * 176;
    let j = c & 7;
    let d = f16_to_f32(u16_at(w, base));
    let dmin = f16_to_f32(u16_at(w, base + 2));
    let sm = scale_min_k4(w, base + 4, j);
    let dl = d * f32::cast_from(sm & 0xFF);
    let ml = dmin * f32::cast_from(sm >> 8);
    let shift = 4 * (j & 1);
    let qs = base + 48 + 32 * (j >> 1);
    #[unroll]
    for i in 0..8u32 {
        let q = u32_at(w, qs + 4 * i);
        let qh = u32_at(w, base + 16 + 4 * i);
        #[unroll]
        for k in 0..4u32 {
            let v = ((q >> (8 * k + shift)) & 0x0F) | (((qh >> (8 * k + j)) & 1) << 4);
            out[(4 * i + k) as usize] = dl * f32::cast_from(v) - ml;
        }
    }
}

/// Q6_K chunk `c` of the row at byte `rb` into `out[0..32]`.
#[cube]
pub fn decode_q6_k(w: &[u32], rb: u32, c: u32, out: &mut Array<f32>) {
    let base = rb + (c >> 3) * 210;
    let h = (c & 7) >> 2;
    let p = c & 3;
    let d = f16_to_f32(u16_at(w, base + 208));
    let ql = base + 64 * h + 32 * (p & 1);
    let lshift = 4 * (p >> 1);
    let qh = base + 128 + 32 * h;
    let hshift = 2 * p;
    #[unroll]
    for half in 0..2u32 {
        let dl = d * i8_to_f32(byte_at(w, base + 192 + 8 * h + 2 * p + half));
        #[unroll]
        for g in 0..4u32 {
            let l0 = 16 * half + 4 * g;
            let lo = u32_at(w, ql + l0);
            let hi = u32_at(w, qh + l0);
            #[unroll]
            for k in 0..4u32 {
                let v = ((lo >> (8 * k + lshift)) & 0x0F) | (((hi >> (8 * k + hshift)) & 3) << 4);
                out[(l0 + k) as usize] = dl * (f32::cast_from(v) - 32.0);
            }
        }
    }
}
