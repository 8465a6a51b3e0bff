//! The ternary formats TQ1_0 and TQ2_0 (ggml-quants.c `dequantize_row_tq*_0`): super-blocks of
//! 256 elements `x = d · (q - 1)`, q in {0, 1, 2}, with one f16 `d`.

use bytemuck::{Pod, Zeroable};

use super::{Block, F16};
use crate::types::{GgmlType, QK_K};

/// TQ1_0: five ternary digits per byte (3^5 = 243 <= 256), four in each `qh` byte.
///
/// A byte holds its digits as a fixed-point fraction, `byte ≈ 256 · Σ q_n / 3^(n+1)`; digit n is
/// recovered by multiplying by 3^n in 8 bits (dropping the digits above) and taking the top
/// digit, `q = (u8(byte · 3^n) · 3) >> 8`. Every byte value gives digits in {0, 1, 2}.
///
/// ```text
/// qs[48]:  bytes 0..32 give elements 32n + m (digit n of byte m, n in 0..5),   elements 0..160
///          bytes 32..48 give elements 160 + 16n + m (digit n of byte 32 + m),  elements 160..240
/// qh[4]:   element 240 + 4n + j is digit n of qh[j] (n in 0..4)               elements 240..256
/// ```
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockTq1_0 {
    pub qs: [u8; (QK_K - 4 * QK_K / 64) / 5],
    pub qh: [u8; QK_K / 64],
    pub d: F16,
}

/// TQ2_0: 2 bits per element, as the 2-bit planes of Q2_K: element 32·(4c + l) + m is bits
/// 2l..2l+2 of `qs[32c + m]` (c in 0..2, l in 0..4, m in 0..32). The value 3 (never written by
/// the quantizer) dequantizes to `2 · d`, as in ggml and gguf-py.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockTq2_0 {
    pub qs: [u8; QK_K / 4],
    pub d: F16,
}

const _: () = assert!(std::mem::size_of::<BlockTq1_0>() == 54);
const _: () = assert!(std::mem::size_of::<BlockTq2_0>() == 66);

/// Digit multipliers 3^n (ggml's `pow3`).
const POW3: [u8; 5] = [1, 3, 9, 27, 81];

/// Digit `n` of a TQ1_0 byte, minus 1, as ggml computes it.
#[inline(always)]
fn trit(byte: u8, n: usize) -> i16 {
    let q = byte.wrapping_mul(POW3[n]);
    ((q as u16 * 3) >> 8) as i16 - 1
}

impl Block for BlockTq1_0 {
    const TYPE: GgmlType = GgmlType::TQ1_0;
    const SIZE: usize = QK_K;
    fn dequantize(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        let (wide, narrow) = self.qs.split_at(32);
        let mut i = 0;
        for (bytes, digits) in [(wide, 5), (narrow, 5), (&self.qh[..], 4)] {
            for n in 0..digits {
                for &b in bytes {
                    y[i] = trit(b, n) as f32 * d;
                    i += 1;
                }
            }
        }
    }
}

impl Block for BlockTq2_0 {
    const TYPE: GgmlType = GgmlType::TQ2_0;
    const SIZE: usize = QK_K;
    fn dequantize(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        for (q, y) in self.qs.chunks_exact(32).zip(y.chunks_exact_mut(128)) {
            for (l, y) in y.chunks_exact_mut(32).enumerate() {
                for (&b, y) in q.iter().zip(y) {
                    let v = ((b >> (2 * l)) & 3) as i8 - 1;
                    *y = v as f32 * d;
                }
            }
        }
    }
}
