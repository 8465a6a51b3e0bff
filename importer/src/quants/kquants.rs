//! The K-quants: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, super-blocks of 256 elements
//! (ggml-quants.c `dequantize_row_q*_K`).
//!
//! A super-block is split into sub-blocks of 16 or 32 elements, each with its own scale (and min)
//! quantized to a few bits against the super-block's f16 `d` (and `dmin`).

use bytemuck::{Pod, Zeroable};

use super::{Block, F16};
use crate::types::{GgmlType, QK_K};

/// Q2_K: 16 sub-blocks of 16, `x = d · (sc & 15) · q - dmin · (sc >> 4)`, q in 0..4.
///
/// ```text
/// scales[16]: | min (4 bits) | scale (4 bits) |   one byte per sub-block of 16
/// qs[64]:     2 bits per element; each 32-byte half holds 128 elements as 4 bit planes:
///             element 32·p + l of the half is bits 2p..2p+2 of qs[l]   (l in 0..32)
/// ```
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockQ2K {
    pub scales: [u8; QK_K / 16],
    pub qs: [u8; QK_K / 4],
    pub d: F16,
    pub dmin: F16,
}

/// Q3_K: 16 sub-blocks of 16, `x = d · (s - 32) · (q - 4·!h)`, q in 0..4, h the high bit.
///
/// ```text
/// hmask[32]:  high bit of element 32·b + l is bit b of hmask[l]      (b in 0..8)
/// qs[64]:     low 2 bits, as in Q2_K
/// scales[12]: 16 6-bit scales: low 4 bits in bytes 0..8 (two per byte),
///             high 2 bits in bytes 8..12 (four per byte)
/// ```
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockQ3K {
    pub hmask: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 4],
    pub scales: [u8; 12],
    pub d: F16,
}

/// Q4_K: 8 sub-blocks of 32, `x = d · sc · q - dmin · m`, q in 0..16, 6-bit sc and m.
///
/// ```text
/// scales[12]: 8 6-bit scales and 8 6-bit mins (see `scale_min_k4`)
/// qs[128]:    each 32-byte chunk c holds sub-block 2c in low nibbles, 2c+1 in high nibbles
/// ```
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockQ4K {
    pub d: F16,
    pub dmin: F16,
    pub scales: [u8; 12],
    pub qs: [u8; QK_K / 2],
}

/// Q5_K: as Q4_K with a fifth bit per element, `x = d · sc · (q + 16·h) - dmin · m`.
///
/// ```text
/// qh[32]: the fifth bit of element 32·b + l is bit b of qh[l]
/// ```
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockQ5K {
    pub d: F16,
    pub dmin: F16,
    pub scales: [u8; 12],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}

/// Q6_K: 16 sub-blocks of 16, `x = d · sc · (q - 32)`, q in 0..64, sc an i8.
///
/// ```text
/// ql[128]: low 4 bits; qh[64]: high 2 bits; per half of 128 elements (64 ql, 32 qh bytes):
///   element l      = ql[l] & 15      | (qh[l] >> 0 & 3) << 4
///   element l + 32 = ql[l + 32] & 15 | (qh[l] >> 2 & 3) << 4
///   element l + 64 = ql[l] >> 4      | (qh[l] >> 4 & 3) << 4
///   element l + 96 = ql[l + 32] >> 4 | (qh[l] >> 6 & 3) << 4      (l in 0..32)
/// ```
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: F16,
}

const _: () = assert!(std::mem::size_of::<BlockQ2K>() == 84);
const _: () = assert!(std::mem::size_of::<BlockQ3K>() == 110);
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);
const _: () = assert!(std::mem::size_of::<BlockQ5K>() == 176);
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);

/// Scale and min of sub-block `j` (0..8) from the 12 packed bytes of Q4_K/Q5_K
/// (ggml's `get_scale_min_k4`):
///
/// ```text
/// j < 4:  sc = q[j] & 63,                          m = q[j + 4] & 63
/// j >= 4: sc = q[j + 4] & 15 | (q[j - 4] >> 6) << 4, m = q[j + 4] >> 4 | (q[j] >> 6) << 4
/// ```
#[inline(always)]
pub fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The 16 signed 6-bit scales of Q3_K, unpacked (ggml's `kmask1`/`kmask2` shuffle), minus 32.
#[inline(always)]
pub fn q3k_scales(packed: &[u8; 12]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (j, o) in out.iter_mut().enumerate() {
        let low = if j < 8 {
            packed[j] & 0x0F
        } else {
            packed[j - 8] >> 4
        };
        let high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
        *o = ((low | (high << 4)) as i8) - 32;
    }
    out
}

impl Block for BlockQ2K {
    const TYPE: GgmlType = GgmlType::Q2_K;
    const SIZE: usize = QK_K;
    fn dequantize(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        let min = self.dmin.to_f32();
        let mut is = 0;
        let mut out = 0;
        for half in 0..2 {
            let q = &self.qs[32 * half..32 * half + 32];
            for shift in [0, 2, 4, 6] {
                for part in 0..2 {
                    let sc = self.scales[is];
                    is += 1;
                    let dl = d * (sc & 0x0F) as f32;
                    let ml = min * (sc >> 4) as f32;
                    for &b in &q[16 * part..16 * part + 16] {
                        y[out] = dl * ((b >> shift) & 3) as f32 - ml;
                        out += 1;
                    }
                }
            }
        }
    }
}

impl Block for BlockQ3K {
    const TYPE: GgmlType = GgmlType::Q3_K;
    const SIZE: usize = QK_K;
    fn dequantize(&self, y: &mut [f32]) {
        let d_all = self.d.to_f32();
        let scales = q3k_scales(&self.scales);
        let mut is = 0;
        let mut out = 0;
        let mut m = 1u8;
        for half in 0..2 {
            let q = &self.qs[32 * half..32 * half + 32];
            for shift in [0, 2, 4, 6] {
                for part in 0..2 {
                    let dl = d_all * scales[is] as f32;
                    is += 1;
                    let range = 16 * part..16 * part + 16;
                    for (&ql, &hl) in q[range.clone()].iter().zip(&self.hmask[range]) {
                        let low = ((ql >> shift) & 3) as i8;
                        let sub = if hl & m != 0 { 0 } else { 4 };
                        y[out] = dl * (low - sub) as f32;
                        out += 1;
                    }
                }
                m <<= 1;
            }
        }
    }
}

impl Block for BlockQ4K {
    const TYPE: GgmlType = GgmlType::Q4_K;
    const SIZE: usize = QK_K;
    fn dequantize(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        let min = self.dmin.to_f32();
        for chunk in 0..4 {
            let q = &self.qs[32 * chunk..32 * chunk + 32];
            let (sc1, m1) = scale_min_k4(2 * chunk, &self.scales);
            let (sc2, m2) = scale_min_k4(2 * chunk + 1, &self.scales);
            let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
            let y = &mut y[64 * chunk..64 * chunk + 64];
            for l in 0..32 {
                y[l] = d1 * (q[l] & 0x0F) as f32 - m1;
                y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }
}

impl Block for BlockQ5K {
    const TYPE: GgmlType = GgmlType::Q5_K;
    const SIZE: usize = QK_K;
    fn dequantize(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        let min = self.dmin.to_f32();
        for chunk in 0..4 {
            let ql = &self.qs[32 * chunk..32 * chunk + 32];
            let (u1, u2) = (1u8 << (2 * chunk), 2u8 << (2 * chunk));
            let (sc1, m1) = scale_min_k4(2 * chunk, &self.scales);
            let (sc2, m2) = scale_min_k4(2 * chunk + 1, &self.scales);
            let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
            let y = &mut y[64 * chunk..64 * chunk + 64];
            for l in 0..32 {
                let h1 = if self.qh[l] & u1 != 0 { 16 } else { 0 };
                let h2 = if self.qh[l] & u2 != 0 { 16 } else { 0 };
                y[l] = d1 * ((ql[l] & 0x0F) + h1) as f32 - m1;
                y[l + 32] = d2 * ((ql[l] >> 4) + h2) as f32 - m2;
            }
        }
    }
}

impl Block for BlockQ6K {
    const TYPE: GgmlType = GgmlType::Q6_K;
    const SIZE: usize = QK_K;
    fn dequantize(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        for half in 0..2 {
            let ql = &self.ql[64 * half..64 * half + 64];
            let qh = &self.qh[32 * half..32 * half + 32];
            let sc = &self.scales[8 * half..8 * half + 8];
            let y = &mut y[128 * half..128 * half + 128];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i8 - 32;
                let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
                y[l] = d * sc[is] as f32 * q1 as f32;
                y[l + 32] = d * sc[is + 2] as f32 * q2 as f32;
                y[l + 64] = d * sc[is + 4] as f32 * q3 as f32;
                y[l + 96] = d * sc[is + 6] as f32 * q4 as f32;
            }
        }
    }
}
