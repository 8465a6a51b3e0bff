//! The i-quants (ggml-quants.c `dequantize_row_iq*`): IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S,
//! IQ1_S and IQ1_M, super-blocks of 256 whose groups of 8 (or 4) elements are rows of a lattice
//! grid, and IQ4_NL (blocks of 32) and IQ4_XS (256), 4-bit indices into a 16-value codebook.
//!
//! The grids, sign tables and codebooks are [`iquant_tables`](super::iquant_tables), generated
//! from gguf-py. Every index a block holds is masked to the bit width of the table it indexes
//! (a byte into 256 rows, 9 bits into 512, 10 into 1024, 11 into 2048, 7 into 128 sign patterns,
//! 4 into 16 values), so no block, however corrupt, can index out of range.
//!
//! Signs: for the grids of non-negative values (IQ2, IQ3), bit j of a sign byte set makes element
//! j of its group of 8 negative; ggml multiplies by `-1.0` or `1.0`, and so does this module. The
//! IQ2_XXS, IQ2_XS and IQ3_XXS blocks store 7 bits per group and look the byte up in
//! [`KSIGNS_IQ2XS`] (the eighth sign makes the count even); IQ2_S and IQ3_S store the byte.
//!
//! Multi-byte fields (`u16`/`u32` in ggml's structs) are little-endian byte arrays here, so the
//! blocks have alignment 1 like the other formats.

use bytemuck::{Pod, Zeroable};

use super::iquant_tables::{
    IQ1M_DELTA, IQ1S_DELTA, IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID,
    KMASK_IQ2XS, KSIGNS_IQ2XS, KVALUES_IQ4NL,
};
use super::{Block, F16};
use crate::types::{GgmlType, QK_K};

/// IQ2_XXS: 8 groups of 32, each 4 rows of [`IQ2XXS_GRID`] (values 8, 25, 43), signed, scaled by
/// `d · (0.5 + s) · 0.25` with a 4-bit s.
///
/// ```text
/// qs[64]: per group of 32, 8 bytes: grid[4] (one byte per 8 elements, a row index)
///         then a u32 (LE): bits 7l..7l+7 the sign index of row l (l in 0..4), bits 28..32 s
/// ```
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockIq2Xxs {
    pub d: F16,
    pub qs: [u8; QK_K / 4],
}

/// IQ2_XS: 8 groups of 32, each 4 rows of [`IQ2XS_GRID`], signed; each half group of 16 has a
/// 4-bit scale s, `d · (0.5 + s) · 0.25`.
///
/// ```text
/// qs[64]:    32 u16 (LE), one per 8 elements: bits 0..9 the row, bits 9..16 the sign index
/// scales[8]: per group, the low nibble scales its first 16 elements, the high nibble the rest
/// ```
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockIq2Xs {
    pub d: F16,
    pub qs: [u8; QK_K / 4],
    pub scales: [u8; QK_K / 32],
}

/// IQ2_S: as IQ2_XS with 10-bit rows of [`IQ2S_GRID`] and a whole sign byte per 8 elements.
///
/// ```text
/// qs[32]:     the low 8 bits of each row index (one per 8 elements)
/// signs[32]:  one sign byte per 8 elements         (ggml's qs[64] holds qs, then signs)
/// qh[8]:      per group, bits 2l..2l+2 are bits 8..10 of row l's index
/// scales[8]:  as IQ2_XS
/// ```
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockIq2S {
    pub d: F16,
    pub qs: [u8; QK_K / 8],
    pub signs: [u8; QK_K / 8],
    pub qh: [u8; QK_K / 32],
    pub scales: [u8; QK_K / 32],
}

/// IQ3_XXS: 8 groups of 32, each 8 rows of 4 of [`IQ3XXS_GRID`] (values 4 to 62), signed per 8,
/// scaled by `d · (0.5 + s) · 0.5`.
///
/// ```text
/// qs[64]:            one row index per 4 elements
/// scales_signs[32]:  per group a u32 (LE): bits 7l..7l+7 the sign index of elements 8l..8l+8,
///                    bits 28..32 s                 (ggml's qs[96] holds qs, then these)
/// ```
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockIq3Xxs {
    pub d: F16,
    pub qs: [u8; QK_K / 4],
    pub scales_signs: [u8; QK_K / 8],
}

/// IQ3_S: 8 groups of 32, each 8 rows of 4 of [`IQ3S_GRID`] (odd values 1 to 15) with 9-bit
/// indices, signed per element, scaled by `d · (1 + 2·s)` with a 4-bit s per group.
///
/// ```text
/// qs[64]:     the low 8 bits of each row index
/// qh[8]:      per group, bit k is bit 8 of the index of row k (k in 0..8)
/// signs[32]:  one sign byte per 8 elements
/// scales[4]:  group 2i has the low nibble of scales[i], group 2i+1 the high nibble
/// ```
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockIq3S {
    pub d: F16,
    pub qs: [u8; QK_K / 4],
    pub qh: [u8; QK_K / 32],
    pub signs: [u8; QK_K / 8],
    pub scales: [u8; QK_K / 64],
}

/// IQ1_S: 8 groups of 32, each 4 rows of [`IQ1S_GRID`] (values -1, 0, 1) with 11-bit indices,
/// `x = d · (2·s + 1) · (g ± IQ1S_DELTA)` with a 3-bit s per group.
///
/// ```text
/// qs[32]:  the low 8 bits of each row index (one per 8 elements)
/// qh[16]:  per group a u16 (LE): bits 3l..3l+3 are bits 8..11 of row l's index, bits 12..15 s,
///          bit 15 set: the delta is -IQ1S_DELTA
/// ```
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockIq1S {
    pub d: F16,
    pub qs: [u8; QK_K / 8],
    pub qh: [u8; QK_K / 16],
}

/// IQ1_M: as IQ1_S with a 3-bit scale per 16 elements, a delta sign per 8 and the f16 super-scale
/// spread over the top nibbles of the scales.
///
/// ```text
/// qs[32]:     the low 8 bits of each row index
/// qh[16]:     one nibble per row: bits 0..3 are bits 8..11 of the index, bit 3 set: delta
///             -IQ1M_DELTA; rows 2b and 2b+1 are the low and high nibble of qh[b]
/// scales[8]:  4 u16 (LE) sc[0..4]: bits 12..16 of sc[k] are bits 4k..4k+4 of the f16 d;
///             group g's two 3-bit scales are at bits 6·(g%2) and 6·(g%2)+3 of sc[g/2]
/// ```
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockIq1M {
    pub qs: [u8; QK_K / 8],
    pub qh: [u8; QK_K / 16],
    pub scales: [u8; QK_K / 32],
}

/// IQ4_NL: `x = d · KVALUES_IQ4NL[q]`, q a 4-bit index; nibbles as Q4_0 (low nibbles are
/// elements 0..16, high nibbles 16..32).
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockIq4Nl {
    pub d: F16,
    pub qs: [u8; 16],
}

/// IQ4_XS: 8 groups of 32 as IQ4_NL, `x = d · (ls - 32) · KVALUES_IQ4NL[q]` with a 6-bit ls per
/// group.
///
/// ```text
/// scales_h[2]:  u16 (LE), bits 2g..2g+2 are bits 4..6 of group g's ls
/// scales_l[4]:  bits 0..4 of ls, group 2i in the low nibble of scales_l[i], 2i+1 in the high
/// qs[128]:      16 bytes per group, low nibbles elements 0..16, high nibbles 16..32
/// ```
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockIq4Xs {
    pub d: F16,
    pub scales_h: [u8; 2],
    pub scales_l: [u8; QK_K / 64],
    pub qs: [u8; QK_K / 2],
}

const _: () = assert!(std::mem::size_of::<BlockIq2Xxs>() == 66);
const _: () = assert!(std::mem::size_of::<BlockIq2Xs>() == 74);
const _: () = assert!(std::mem::size_of::<BlockIq2S>() == 82);
const _: () = assert!(std::mem::size_of::<BlockIq3Xxs>() == 98);
const _: () = assert!(std::mem::size_of::<BlockIq3S>() == 110);
const _: () = assert!(std::mem::size_of::<BlockIq1S>() == 50);
const _: () = assert!(std::mem::size_of::<BlockIq1M>() == 56);
const _: () = assert!(std::mem::size_of::<BlockIq4Nl>() == 18);
const _: () = assert!(std::mem::size_of::<BlockIq4Xs>() == 136);

/// `-1.0` if bit j of `signs` is set, else `1.0` (ggml's `signs & kmask_iq2xs[j] ? -1.f : 1.f`).
#[inline(always)]
fn sign(signs: u8, j: usize) -> f32 {
    if signs & KMASK_IQ2XS[j] != 0 {
        -1.0
    } else {
        1.0
    }
}

#[inline(always)]
fn u16_at(bytes: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]])
}

#[inline(always)]
fn u32_at(bytes: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([
        bytes[4 * i],
        bytes[4 * i + 1],
        bytes[4 * i + 2],
        bytes[4 * i + 3],
    ])
}

/// 8 elements `db · grid[j] · sign(j)`, as ggml computes them (left to right).
#[inline(always)]
fn signed_row8(y: &mut [f32], db: f32, row: u64, signs: u8) {
    for (j, (y, g)) in y.iter_mut().zip(row.to_le_bytes()).enumerate() {
        *y = db * g as f32 * sign(signs, j);
    }
}

/// Two rows of 4 (`row1` for elements 0..4, `row2` for 4..8) under one sign byte.
#[inline(always)]
fn signed_rows4(y: &mut [f32], db: f32, row1: u32, row2: u32, signs: u8) {
    let (g1, g2) = (row1.to_le_bytes(), row2.to_le_bytes());
    for j in 0..4 {
        y[j] = db * g1[j] as f32 * sign(signs, j);
        y[j + 4] = db * g2[j] as f32 * sign(signs, j + 4);
    }
}

/// 8 elements `dl · (grid[j] + delta)` of an IQ1 grid row (i8 values -1, 0, 1).
#[inline(always)]
fn iq1_row(y: &mut [f32], dl: f32, row: u64, delta: f32) {
    for (y, g) in y.iter_mut().zip(row.to_le_bytes()) {
        *y = dl * (g as i8 as f32 + delta);
    }
}

impl Block for BlockIq2Xxs {
    const TYPE: GgmlType = GgmlType::IQ2_XXS;
    const SIZE: usize = QK_K;
    fn dequantize(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        for (q, y) in self.qs.chunks_exact(8).zip(y.chunks_exact_mut(32)) {
            let aux = u32_at(q, 1);
            let db = d * (0.5 + (aux >> 28) as f32) * 0.25;
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let signs = KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize];
                signed_row8(y, db, IQ2XXS_GRID[q[l] as usize], signs);
            }
        }
    }
}

impl Block for BlockIq2Xs {
    const TYPE: GgmlType = GgmlType::IQ2_XS;
    const SIZE: usize = QK_K;
    fn dequantize(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let sc = self.scales[ib];
            let db = [
                d * (0.5 + (sc & 0x0F) as f32) * 0.25,
                d * (0.5 + (sc >> 4) as f32) * 0.25,
            ];
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let q = u16_at(&self.qs, 4 * ib + l);
                let signs = KSIGNS_IQ2XS[(q >> 9) as usize];
                signed_row8(y, db[l / 2], IQ2XS_GRID[(q & 511) as usize], signs);
            }
        }
    }
}

impl Block for BlockIq2S {
    const TYPE: GgmlType = GgmlType::IQ2_S;
    const SIZE: usize = QK_K;
    fn dequantize(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let sc = self.scales[ib];
            let db = [
                d * (0.5 + (sc & 0x0F) as f32) * 0.25,
                d * (0.5 + (sc >> 4) as f32) * 0.25,
            ];
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let k = 4 * ib + l;
                let high = ((self.qh[ib] >> (2 * l)) & 3) as usize;
                let row = IQ2S_GRID[self.qs[k] as usize | high << 8];
                signed_row8(y, db[l / 2], row, self.signs[k]);
            }
        }
    }
}

impl Block for BlockIq3Xxs {
    const TYPE: GgmlType = GgmlType::IQ3_XXS;
    const SIZE: usize = QK_K;
    fn dequantize(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        for (ib, (q, y)) in self
            .qs
            .chunks_exact(8)
            .zip(y.chunks_exact_mut(32))
            .enumerate()
        {
            let aux = u32_at(&self.scales_signs, ib);
            let db = d * (0.5 + (aux >> 28) as f32) * 0.5;
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let signs = KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize];
                let row1 = IQ3XXS_GRID[q[2 * l] as usize];
                let row2 = IQ3XXS_GRID[q[2 * l + 1] as usize];
                signed_rows4(y, db, row1, row2, signs);
            }
        }
    }
}

impl Block for BlockIq3S {
    const TYPE: GgmlType = GgmlType::IQ3_S;
    const SIZE: usize = QK_K;
    fn dequantize(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        for (ib, (q, y)) in self
            .qs
            .chunks_exact(8)
            .zip(y.chunks_exact_mut(32))
            .enumerate()
        {
            let s = (self.scales[ib / 2] >> (4 * (ib % 2))) & 0x0F;
            let db = d * (1 + 2 * s as i32) as f32;
            let qh = self.qh[ib] as usize;
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let row1 = IQ3S_GRID[q[2 * l] as usize | (qh >> (2 * l) & 1) << 8];
                let row2 = IQ3S_GRID[q[2 * l + 1] as usize | (qh >> (2 * l + 1) & 1) << 8];
                signed_rows4(y, db, row1, row2, self.signs[4 * ib + l]);
            }
        }
    }
}

impl Block for BlockIq1S {
    const TYPE: GgmlType = GgmlType::IQ1_S;
    const SIZE: usize = QK_K;
    fn dequantize(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        for (ib, (q, y)) in self
            .qs
            .chunks_exact(4)
            .zip(y.chunks_exact_mut(32))
            .enumerate()
        {
            let qh = u16_at(&self.qh, ib);
            let dl = d * (2 * ((qh >> 12) & 7) + 1) as f32;
            let delta = if qh & 0x8000 != 0 {
                -IQ1S_DELTA
            } else {
                IQ1S_DELTA
            };
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let high = ((qh >> (3 * l)) & 7) as usize;
                iq1_row(y, dl, IQ1S_GRID[q[l] as usize | high << 8], delta);
            }
        }
    }
}

impl BlockIq1M {
    /// The f16 super-scale, from the top nibbles of the four scale words (ggml's `iq1m_scale_t`).
    pub fn d(&self) -> F16 {
        let sc = |k| u16_at(&self.scales, k);
        let bits =
            (sc(0) >> 12) | ((sc(1) >> 8) & 0x00F0) | ((sc(2) >> 4) & 0x0F00) | (sc(3) & 0xF000);
        F16(bits.to_le_bytes())
    }
}

impl Block for BlockIq1M {
    const TYPE: GgmlType = GgmlType::IQ1_M;
    const SIZE: usize = QK_K;
    fn dequantize(&self, y: &mut [f32]) {
        let d = self.d().to_f32();
        for (ib, (q, y)) in self
            .qs
            .chunks_exact(4)
            .zip(y.chunks_exact_mut(32))
            .enumerate()
        {
            let sc = u16_at(&self.scales, ib / 2) >> (6 * (ib % 2));
            let dl = [
                d * (2 * (sc & 7) + 1) as f32,
                d * (2 * ((sc >> 3) & 7) + 1) as f32,
            ];
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let nibble = (self.qh[2 * ib + l / 2] >> (4 * (l % 2))) & 0x0F;
                let delta = if nibble & 0x08 != 0 {
                    -IQ1M_DELTA
                } else {
                    IQ1M_DELTA
                };
                let row = IQ1S_GRID[q[l] as usize | ((nibble & 7) as usize) << 8];
                iq1_row(y, dl[l / 2], row, delta);
            }
        }
    }
}

impl Block for BlockIq4Nl {
    const TYPE: GgmlType = GgmlType::IQ4_NL;
    const SIZE: usize = 32;
    fn dequantize(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        for (j, &q) in self.qs.iter().enumerate() {
            y[j] = d * KVALUES_IQ4NL[(q & 0x0F) as usize] as f32;
            y[j + 16] = d * KVALUES_IQ4NL[(q >> 4) as usize] as f32;
        }
    }
}

impl Block for BlockIq4Xs {
    const TYPE: GgmlType = GgmlType::IQ4_XS;
    const SIZE: usize = QK_K;
    fn dequantize(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        let scales_h = u16::from_le_bytes(self.scales_h);
        for (ib, (q, y)) in self
            .qs
            .chunks_exact(16)
            .zip(y.chunks_exact_mut(32))
            .enumerate()
        {
            let low = (self.scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0F;
            let high = ((scales_h >> (2 * ib)) & 3) as u8;
            let ls = (low | high << 4) as i32;
            let dl = d * (ls - 32) as f32;
            for (j, &q) in q.iter().enumerate() {
                y[j] = dl * KVALUES_IQ4NL[(q & 0x0F) as usize] as f32;
                y[j + 16] = dl * KVALUES_IQ4NL[(q >> 4) as usize] as f32;
            }
        }
    }
}
