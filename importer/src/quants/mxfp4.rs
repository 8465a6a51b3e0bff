//! MXFP4 (OCP microscaling FP4, ggml-quants.c `dequantize_row_mxfp4`): blocks of 32 e2m1 values
//! sharing one power-of-two scale.

use bytemuck::{Pod, Zeroable};

use super::iquant_tables::KVALUES_MXFP4;
use super::Block;
use crate::types::GgmlType;

/// MXFP4: `x = KVALUES_MXFP4[q] · 2^(e - 128)`, q a 4-bit e2m1 code (the table holds the e2m1
/// values doubled, so the scale is halved: ggml's `ggml_e8m0_to_fp32_half`); nibbles as Q4_0
/// (low nibbles elements 0..16, high nibbles 16..32).
///
/// ```text
/// e:       u8, E8M0 exponent (bias 127)
/// qs[16]:  qs[j] = | x[j+16] (4 bits) | x[j] (4 bits) |
/// ```
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockMxfp4 {
    pub e: u8,
    pub qs: [u8; 16],
}

const _: () = assert!(std::mem::size_of::<BlockMxfp4>() == 17);

/// `2^(e - 128)`, half the E8M0 scale, as ggml builds it: exponents 0 and 1 give the f32
/// subnormals 2^-128 and 2^-127; 255, which the OCP format reserves for NaN, gives 2^127 (ggml
/// and gguf-py do not treat it specially, and neither does this crate).
#[inline(always)]
pub fn e8m0_to_f32_half(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        (e as u32 - 1) << 23
    };
    f32::from_bits(bits)
}

impl Block for BlockMxfp4 {
    const TYPE: GgmlType = GgmlType::MXFP4;
    const SIZE: usize = 32;
    fn dequantize(&self, y: &mut [f32]) {
        let d = e8m0_to_f32_half(self.e);
        for (j, &q) in self.qs.iter().enumerate() {
            y[j] = KVALUES_MXFP4[(q & 0x0F) as usize] as f32 * d;
            y[j + 16] = KVALUES_MXFP4[(q >> 4) as usize] as f32 * d;
        }
    }
}
