//! Plain float types as one-element "blocks": F32, F16 and BF16, stored little-endian.

use bytemuck::{Pod, Zeroable};

use super::Block;
use crate::types::GgmlType;

/// An IEEE half stored as two little-endian bytes (alignment 1, unlike `half::f16`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
pub struct F16(pub [u8; 2]);

impl F16 {
    /// The value as f32. Inlined software conversion: `half`'s `to_f32` checks for F16C on every
    /// call, which costs more than the conversion for one scale per block.
    #[inline(always)]
    pub fn to_f32(self) -> f32 {
        half::f16::from_le_bytes(self.0).to_f32_const()
    }

    pub fn from_f32(x: f32) -> Self {
        F16(half::f16::from_f32(x).to_le_bytes())
    }
}

/// A bfloat16 stored as two little-endian bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
pub struct Bf16(pub [u8; 2]);

/// An f32 stored as four little-endian bytes (alignment 1).
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq)]
pub struct F32Le(pub [u8; 4]);

const _: () = assert!(std::mem::size_of::<F16>() == 2);
const _: () = assert!(std::mem::size_of::<Bf16>() == 2);
const _: () = assert!(std::mem::size_of::<F32Le>() == 4);

impl Block for F32Le {
    const TYPE: GgmlType = GgmlType::F32;
    const SIZE: usize = 1;
    #[inline(always)]
    fn dequantize(&self, out: &mut [f32]) {
        out[0] = f32::from_le_bytes(self.0);
    }

    fn dequantize_blocks(blocks: &[Self], out: &mut [f32]) {
        for (o, b) in out.iter_mut().zip(blocks) {
            *o = f32::from_le_bytes(b.0);
        }
    }
}

impl Block for F16 {
    const TYPE: GgmlType = GgmlType::F16;
    const SIZE: usize = 1;
    #[inline(always)]
    fn dequantize(&self, out: &mut [f32]) {
        out[0] = self.to_f32();
    }

    /// Vectorized (F16C where the CPU has it) when the data is 2-byte aligned, as it is in a
    /// memory-mapped file.
    fn dequantize_blocks(blocks: &[Self], out: &mut [f32]) {
        use half::slice::HalfFloatSliceExt;
        match bytemuck::try_cast_slice::<Self, half::f16>(blocks) {
            Ok(halves) => halves.convert_to_f32_slice(out),
            Err(_) => {
                for (o, b) in out.iter_mut().zip(blocks) {
                    *o = b.to_f32();
                }
            }
        }
    }
}

impl Block for Bf16 {
    const TYPE: GgmlType = GgmlType::BF16;
    const SIZE: usize = 1;
    /// bf16 is the top half of an f32 (ggml's `GGML_BF16_TO_FP32`).
    #[inline(always)]
    fn dequantize(&self, out: &mut [f32]) {
        out[0] = f32::from_bits((u16::from_le_bytes(self.0) as u32) << 16);
    }

    fn dequantize_blocks(blocks: &[Self], out: &mut [f32]) {
        for (o, b) in out.iter_mut().zip(blocks) {
            *o = f32::from_bits((u16::from_le_bytes(b.0) as u32) << 16);
        }
    }
}
