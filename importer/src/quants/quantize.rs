//! Quantization: f32 rows to the bytes of a GGUF tensor of type F32, F16, BF16, Q4_0, Q5_0, Q5_1,
//! Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL or IQ4_XS.
//!
//! Each format follows ggml's reference conversion (`quantize_row_*_ref` in ggml-quants.c, what
//! llama.cpp's quantizer runs when it has no importance matrix), so the bytes equal llama.cpp's
//! for the same input:
//!
//! - F32: the values, little-endian.
//! - F16: IEEE half, rounded to nearest, ties to even (ggml's `GGML_FP32_TO_FP16`, numpy's
//!   `astype(float16)`); beyond the half range a value becomes ±inf.
//! - BF16: the top 16 bits of the f32, rounded to nearest, ties to even; a NaN stays a quiet NaN
//!   (ggml's `GGML_FP32_TO_BF16`).
//! - Q8_0: per block of 32, `d = max|x| / 127`, `q = round(x / d)` computed as `x · (1/d)` and
//!   rounded half away from zero (C's `roundf`), `d` stored as F16 (ggml's
//!   `quantize_row_q8_0_ref`). An all-zero block has `d = 0` and `q = 0`.
//! - Q4_0 and Q5_0: per block of 32, `max` = the element of largest magnitude (the first of
//!   equals), `d = max / -8` (Q5_0: `/ -16`), `q = min(15, trunc(x · (1/d) + 8.5))` (Q5_0:
//!   `min(31, trunc(x · (1/d) + 16.5))`), `d` stored as F16. Q4_0 packs elements `j` and `j + 16`
//!   in the low and high nibbles of byte `j`; Q5_0 packs their low four bits the same way and
//!   their fifth bits in the 32-bit `qh` (bit `j` for element `j`).
//! - Q5_1: per block of 32, `d = (max − min) / 31`, `q = trunc((x − min) · (1/d) + 0.5)`, `d` and
//!   `min` stored as F16, packed as Q5_0.
//! - Q2_K … Q6_K: super-blocks of 256 values in sub-blocks of 16 or 32, each with a scale (and for
//!   Q2_K, Q4_K, Q5_K a minimum) found by ggml's searches for the least weighted error, then
//!   quantized against the super-block's largest ([`quantize_q2_k`] … [`quantize_q6_k`]).
//! - IQ4_NL, IQ4_XS: blocks of 32 onto the 16 non-linear `kvalues_iq4nl` levels, the scale found
//!   by ggml's search (IQ4_XS: 6-bit sub-block scales under an f16 super-scale;
//!   [`quantize_iq4_nl`], [`quantize_iq4_xs`]).
//!
//! Where a conversion from float to integer can meet a value out of the integer's range (a block
//! whose scale is so small that `1/d` overflows), it gives what x86's truncating conversion gives
//! in llama.cpp's build: the integer `i32::MIN`, whose low byte is 0.
//!
//! A tensor is quantized row by row: `row_len` (ggml's `ne[0]`) must be a whole number of blocks,
//! and the data a whole number of rows. The block types refuse non-finite input: one NaN or inf
//! would make the whole block's scale meaningless.

use rayon::prelude::*;

mod iq4;
mod kquants;

pub use iq4::{quantize_iq4_nl, quantize_iq4_xs};
pub use kquants::{quantize_q2_k, quantize_q3_k, quantize_q4_k, quantize_q5_k, quantize_q6_k};

use super::{BlockQ4_0, BlockQ5_0, BlockQ5_1, BlockQ8_0, F16};
use crate::types::GgmlType;

/// Why data could not be quantized.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuantizeError {
    /// A type this module does not quantize to (see [`SUPPORTED`]).
    #[error(
        "quantizing to {type_name} is not supported (F32, F16, BF16, Q4_0, Q5_0, Q5_1, Q8_0, \
         Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL and IQ4_XS are)"
    )]
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

/// The types [`quantize`] writes.
pub const SUPPORTED: [GgmlType; 14] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
];

/// Elements converted per rayon task (a whole number of blocks of every supported type).
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
            if ty.is_quantized() {
                if let Some(i) = x.iter().position(|v| !v.is_finite()) {
                    return Err(non_finite(i));
                }
            }
            match ty {
                GgmlType::F32 => f32_to_bytes(x, out),
                GgmlType::F16 => f16_to_bytes(x, out),
                GgmlType::BF16 => bf16_to_bytes(x, out),
                GgmlType::Q4_0 => quantize_q4_0(x, bytemuck::cast_slice_mut(out)),
                GgmlType::Q5_0 => quantize_q5_0(x, bytemuck::cast_slice_mut(out)),
                GgmlType::Q5_1 => quantize_q5_1(x, bytemuck::cast_slice_mut(out)),
                GgmlType::Q8_0 => quantize_q8_0(x, bytemuck::cast_slice_mut(out)),
                GgmlType::Q2_K => quantize_q2_k(x, bytemuck::cast_slice_mut(out)),
                GgmlType::Q3_K => quantize_q3_k(x, bytemuck::cast_slice_mut(out)),
                GgmlType::Q4_K => quantize_q4_k(x, bytemuck::cast_slice_mut(out)),
                GgmlType::Q5_K => quantize_q5_k(x, bytemuck::cast_slice_mut(out)),
                GgmlType::Q6_K => quantize_q6_k(x, bytemuck::cast_slice_mut(out)),
                GgmlType::IQ4_NL => quantize_iq4_nl(x, bytemuck::cast_slice_mut(out)),
                GgmlType::IQ4_XS => quantize_iq4_xs(x, bytemuck::cast_slice_mut(out)),
                _ => unreachable!("check() admits only the supported types"),
            }
            Ok(())
        })?;
    Ok(out)
}

/// Checks the type, the row length and the data length.
fn check(ty: GgmlType, row_len: usize, data: &[f32]) -> Result<(), QuantizeError> {
    if !SUPPORTED.contains(&ty) {
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

/// `v` converted to an integer as x86's `cvttss2si` does, which is how llama.cpp's build converts
/// a float to a C integer type: truncated toward zero, and `i32::MIN` for a NaN or a value out of
/// the i32 range (where Rust's `as` would saturate). The caller keeps the low byte.
#[inline(always)]
fn trunc_i32(v: f32) -> i32 {
    if v > -2_147_483_904.0 && v < 2_147_483_648.0 {
        v as i32
    } else {
        i32::MIN
    }
}

/// The signed element of largest magnitude (the first of equals) and `1/d` for `d = max / div`:
/// Q4_0 and Q5_0's scale.
fn signed_scale(x: &[f32], div: f32) -> (f32, f32) {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / div;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    (d, id)
}

/// The 5-bit values `q` of a Q5_0/Q5_1 block as `qs` (elements `j` and `j + 16` in the low and
/// high nibbles of byte `j`) and `qh` (the fifth bit of element `j` in bit `j`, little-endian).
fn pack_5bit(q: &[u8; 32], qs: &mut [u8; 16], qh: &mut [u8; 4]) {
    let mut high = 0u32;
    for j in 0..16 {
        qs[j] = (q[j] & 0xf) | ((q[j + 16] & 0xf) << 4);
        high |= u32::from((q[j] & 0x10) >> 4) << j;
        high |= u32::from((q[j + 16] & 0x10) >> 4) << (j + 16);
    }
    *qh = high.to_le_bytes();
}

/// Quantizes `x` (`blocks.len() · 32` finite values) into Q4_0 blocks as ggml's
/// `quantize_row_q4_0_ref`.
pub fn quantize_q4_0(x: &[f32], blocks: &mut [BlockQ4_0]) {
    for (block, x) in blocks.iter_mut().zip(x.chunks_exact(32)) {
        let (d, id) = signed_scale(x, -8.0);
        block.d = F16::from_f32(d);
        // x · id is in [-8, 8] up to rounding, so + 8.5 is positive unless 1/d overflowed.
        let q = |v: f32| (trunc_i32(v * id + 8.5) as i8).min(15) as u8;
        for j in 0..16 {
            block.qs[j] = q(x[j]) | (q(x[j + 16]) << 4);
        }
    }
}

/// Quantizes `x` (`blocks.len() · 32` finite values) into Q5_0 blocks as ggml's
/// `quantize_row_q5_0_ref`.
pub fn quantize_q5_0(x: &[f32], blocks: &mut [BlockQ5_0]) {
    for (block, x) in blocks.iter_mut().zip(x.chunks_exact(32)) {
        let (d, id) = signed_scale(x, -16.0);
        block.d = F16::from_f32(d);
        let mut q = [0u8; 32];
        for (q, &v) in q.iter_mut().zip(x) {
            *q = (trunc_i32(v * id + 16.5) as i8).min(31) as u8;
        }
        pack_5bit(&q, &mut block.qs, &mut block.qh);
    }
}

/// Quantizes `x` (`blocks.len() · 32` finite values) into Q5_1 blocks as ggml's
/// `quantize_row_q5_1_ref`.
pub fn quantize_q5_1(x: &[f32], blocks: &mut [BlockQ5_1]) {
    for (block, x) in blocks.iter_mut().zip(x.chunks_exact(32)) {
        let (mut min, mut max) = (f32::MAX, -f32::MAX);
        for &v in x {
            if v < min {
                min = v;
            }
            if v > max {
                max = v;
            }
        }
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        block.d = F16::from_f32(d);
        block.m = F16::from_f32(min);
        let mut q = [0u8; 32];
        for (q, &v) in q.iter_mut().zip(x) {
            *q = trunc_i32((v - min) * id + 0.5) as u8;
        }
        pack_5bit(&q, &mut block.qs, &mut block.qh);
    }
}

/// Quantizes `x` (`blocks.len() · 32` finite values) into Q8_0 blocks as ggml's
/// `quantize_row_q8_0_ref`.
pub fn quantize_q8_0(x: &[f32], blocks: &mut [BlockQ8_0]) {
    for (block, x) in blocks.iter_mut().zip(x.chunks_exact(32)) {
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        block.d = F16::from_f32(d);
        for (q, &v) in block.qs.iter_mut().zip(x) {
            // |v · id| ≤ 127 up to one rounding step unless 1/d overflowed.
            *q = trunc_i32((v * id).round()) as i8;
        }
    }
}
