//! Quantization: f32 rows to the bytes of a GGUF tensor of type F32, F16, BF16, Q4_0 or Q8_0.
//!
//! Each format follows ggml's reference conversion, so the bytes equal llama.cpp's (and gguf-py's
//! numpy quantizer's) for the same input:
//!
//! - F32: the values, little-endian.
//! - F16: IEEE half, rounded to nearest, ties to even (ggml's `GGML_FP32_TO_FP16`, numpy's
//!   `astype(float16)`); beyond the half range a value becomes ±inf.
//! - BF16: the top 16 bits of the f32, rounded to nearest, ties to even; a NaN stays a quiet NaN
//!   (ggml's `GGML_FP32_TO_BF16`).
//! - Q8_0: per block of 32, `d = max|x| / 127`, `q = round(x / d)` computed as `x · (1/d)` and
//!   rounded half away from zero (C's `roundf`), `d` stored as F16 (ggml's
//!   `quantize_row_q8_0_ref`). An all-zero block has `d = 0` and `q = 0`.
//! - Q4_0: per block of 32, `max` = the element of largest magnitude (the first of equals),
//!   `d = max / -8`, `q = min(15, trunc(x · (1/d) + 8.5))`, `d` stored as F16, elements `j` and
//!   `j + 16` in the low and high nibbles of byte `j` (ggml's `quantize_row_q4_0_ref`, what
//!   llama.cpp's quantizer runs without an importance matrix).
//!
//! A tensor is quantized row by row: `row_len` (ggml's `ne[0]`) must be a whole number of blocks,
//! and the data a whole number of rows. Q8_0 refuses non-finite input: one NaN or inf would make
//! the whole block's scale meaningless.

use rayon::prelude::*;

use super::{BlockQ4_0, BlockQ8_0, F16};
use crate::types::GgmlType;

/// Why data could not be quantized.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuantizeError {
    /// A type this module does not quantize to (only F32, F16, BF16, Q4_0 and Q8_0 are).
    #[error("quantizing to {type_name} is not supported (F32, F16, BF16, Q4_0 and Q8_0 are)")]
    UnsupportedType { type_name: &'static str },

    /// The row length is not a whole number of the type's blocks.
    #[error(
        "a row of {row_len} values is not a whole number of {type_name} blocks of {block_size}"
    )]
    RowNotBlockAligned {
        type_name: &'static str,
        row_len: usize,
        block_size: usize,
    },

    /// The data is not a whole number of rows (or the row length is zero).
    #[error("{len} values are not a whole number of rows of {row_len}")]
    NotWholeRows { len: usize, row_len: usize },

    /// A NaN or infinity where the format cannot hold one.
    #[error("value {value} at index {index} is not finite: {type_name} cannot hold it")]
    NonFinite {
        type_name: &'static str,
        index: usize,
        value: f32,
    },
}

/// Elements of Q8_0 (and F16/BF16/F32) converted per rayon task.
const ELEMENTS_PER_TASK: usize = 32 * 1024;

/// Quantizes `data` (whole rows of `row_len` values, row-major) to the bytes of a tensor of type
/// `ty`, in the file's block layout.
pub fn quantize(ty: GgmlType, row_len: usize, data: &[f32]) -> Result<Vec<u8>, QuantizeError> {
    check(ty, row_len, data)?;
    let bytes_per_block = ty.type_size();
    let mut out = vec![0u8; data.len() / ty.block_size() * bytes_per_block];
    let out_per_task = ELEMENTS_PER_TASK / ty.block_size() * bytes_per_block;
    out.par_chunks_mut(out_per_task)
        .zip(data.par_chunks(ELEMENTS_PER_TASK))
        .enumerate()
        .try_for_each(|(task, (out, x))| {
            // The error of a non-finite value at index `i` of this task's slice.
            let non_finite = |i: usize| QuantizeError::NonFinite {
                type_name: ty.name(),
                index: task * ELEMENTS_PER_TASK + i,
                value: x[i],
            };
            match ty {
                GgmlType::F32 => f32_to_bytes(x, out),
                GgmlType::F16 => f16_to_bytes(x, out),
                GgmlType::BF16 => bf16_to_bytes(x, out),
                GgmlType::Q4_0 => {
                    quantize_q4_0(x, bytemuck::cast_slice_mut(out)).map_err(non_finite)?
                }
                GgmlType::Q8_0 => {
                    quantize_q8_0(x, bytemuck::cast_slice_mut(out)).map_err(non_finite)?
                }
                _ => {
                    return Err(QuantizeError::UnsupportedType {
                        type_name: ty.name(),
                    })
                }
            }
            Ok(())
        })?;
    Ok(out)
}

/// Checks the type, the row length and the data length.
fn check(ty: GgmlType, row_len: usize, data: &[f32]) -> Result<(), QuantizeError> {
    if !matches!(
        ty,
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 | GgmlType::Q4_0 | GgmlType::Q8_0
    ) {
        return Err(QuantizeError::UnsupportedType {
            type_name: ty.name(),
        });
    }
    let block_size = ty.block_size();
    if row_len == 0 || !data.len().is_multiple_of(row_len) {
        return Err(QuantizeError::NotWholeRows {
            len: data.len(),
            row_len,
        });
    }
    if !row_len.is_multiple_of(block_size) {
        return Err(QuantizeError::RowNotBlockAligned {
            type_name: ty.name(),
            row_len,
            block_size,
        });
    }
    Ok(())
}

fn f32_to_bytes(x: &[f32], out: &mut [u8]) {
    for (o, v) in out.chunks_exact_mut(4).zip(x) {
        o.copy_from_slice(&v.to_le_bytes());
    }
}

fn f16_to_bytes(x: &[f32], out: &mut [u8]) {
    for (o, &v) in out.chunks_exact_mut(2).zip(x) {
        o.copy_from_slice(&f32_to_f16(v).0);
    }
}

fn bf16_to_bytes(x: &[f32], out: &mut [u8]) {
    for (o, &v) in out.chunks_exact_mut(2).zip(x) {
        o.copy_from_slice(&f32_to_bf16(v).to_le_bytes());
    }
}

/// `x` as an IEEE half, rounded to nearest, ties to even (`half` rounds so, in software or with
/// F16C).
pub fn f32_to_f16(x: f32) -> F16 {
    F16::from_f32(x)
}

/// `x` as a bfloat16 bit pattern: rounded to nearest, ties to even, by adding `0x7fff` plus the
/// lowest kept bit before truncating; a NaN keeps its top bits with the quiet bit set.
pub fn f32_to_bf16(x: f32) -> u16 {
    let u = x.to_bits();
    if u & 0x7fff_ffff > 0x7f80_0000 {
        return ((u >> 16) | 0x40) as u16;
    }
    ((u as u64 + 0x7fff + ((u >> 16) & 1) as u64) >> 16) as u16
}

/// Quantizes `x` (`blocks.len() · 32` values) into Q4_0 blocks as ggml's `quantize_row_q4_0_ref`;
/// on a non-finite value, its index in `x`.
pub fn quantize_q4_0(x: &[f32], blocks: &mut [BlockQ4_0]) -> Result<(), usize> {
    for (b, (block, x)) in blocks.iter_mut().zip(x.chunks_exact(32)).enumerate() {
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(b * 32 + i);
        }
        // The first element of the largest magnitude, with its sign.
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        block.d = F16::from_f32(d);
        // x · id is in [-8, 8] up to rounding: + 8.5 is positive, and `as u8` truncates it.
        let q = |v: f32| ((v * id + 8.5) as u8).min(15);
        for j in 0..16 {
            block.qs[j] = q(x[j]) | (q(x[j + 16]) << 4);
        }
    }
    Ok(())
}

/// Quantizes `x` (`blocks.len() · 32` values) into Q8_0 blocks; on a non-finite value, its index
/// in `x`.
pub fn quantize_q8_0(x: &[f32], blocks: &mut [BlockQ8_0]) -> Result<(), usize> {
    for (b, (block, x)) in blocks.iter_mut().zip(x.chunks_exact(32)).enumerate() {
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(b * 32 + i);
        }
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        block.d = F16::from_f32(d);
        for (q, &v) in block.qs.iter_mut().zip(x) {
            // |v · id| ≤ 127 up to one rounding step, so the cast cannot saturate wrongly.
            *q = (v * id).round() as i8;
        }
    }
    Ok(())
}
