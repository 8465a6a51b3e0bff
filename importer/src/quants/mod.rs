//! Dequantization of ggml block formats into f32 (and f16/bf16 on request); quantization from f32
//! to F32, F16, BF16, Q4_0, Q5_0, Q5_1, Q8_0 and the K-quants Q2_K to Q6_K, as llama.cpp's
//! quantizer writes them, in [`quantize`](mod@quantize).
//!
//! Dequantized: the float types, the legacy formats (Q4_0 to Q8_0), the K-quants (Q2_K to Q6_K),
//! the i-quants (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ4_NL, IQ4_XS), the
//! ternary TQ1_0 and TQ2_0, and MXFP4. The i-quants' grids and codebooks are in
//! [`iquant_tables`], generated from gguf-py by scripts/make_iquant_tables.py.
//!
//! Each format is a `#[repr(C)]` block struct implementing [`Block`], with a compile-time size
//! check, and a `dequantize` that mirrors ggml's `dequantize_row_*` (ggml-quants.c) operation for
//! operation, so results are bit-identical to ggml's reference path. All block structs have
//! alignment 1 (f16 fields are [`F16`] byte pairs, wider integers little-endian byte arrays), so
//! they can be viewed straight from a memory map at any offset.
//!
//! Work is split across threads with rayon in chunks of whole blocks.

mod float;
pub mod iquant_tables;
mod iquants;
mod kquants;
mod legacy;
mod mxfp4;
pub mod quantize;
mod ternary;

pub use float::{Bf16, F32Le, F16};
pub use iquants::{
    BlockIq1M, BlockIq1S, BlockIq2S, BlockIq2Xs, BlockIq2Xxs, BlockIq3S, BlockIq3Xxs, BlockIq4Nl,
    BlockIq4Xs,
};
pub use kquants::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K};
pub use legacy::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0};
pub use mxfp4::{e8m0_to_f32_half, BlockMxfp4};
pub use quantize::{quantize, QuantizeError};
pub use ternary::{BlockTq1_0, BlockTq2_0};

use bytemuck::Pod;
use rayon::prelude::*;

use crate::error::{GgufError, Result};
use crate::tensor::TensorInfo;
use crate::types::GgmlType;

/// One block of a ggml format: `SIZE` elements stored in `size_of::<Self>()` bytes.
pub trait Block: Pod + Send + Sync {
    /// The ggml type this block belongs to.
    const TYPE: GgmlType;
    /// Elements per block.
    const SIZE: usize;
    /// Writes the block's `SIZE` elements into `out[..SIZE]`.
    fn dequantize(&self, out: &mut [f32]);

    /// Dequantizes consecutive blocks into `out` (`blocks.len() * SIZE` elements). Formats with a
    /// faster slice conversion (the plain float types) override it.
    fn dequantize_blocks(blocks: &[Self], out: &mut [f32]) {
        for (block, out) in blocks.iter().zip(out.chunks_exact_mut(Self::SIZE)) {
            block.dequantize(out);
        }
    }
}

/// A target element type for dequantization.
pub trait Element: Copy + Send + Sync + Default {
    /// Dequantizes `blocks` into `out` (`blocks.len() * B::SIZE` elements).
    fn dequantize_blocks<B: Block>(blocks: &[B], out: &mut [Self]);
}

impl Element for f32 {
    fn dequantize_blocks<B: Block>(blocks: &[B], out: &mut [f32]) {
        B::dequantize_blocks(blocks, out);
    }
}

/// Dequantizes to f32 in stack-sized pieces, then converts with `convert`.
fn via_f32<B: Block, T>(blocks: &[B], out: &mut [T], convert: impl Fn(&[f32], &mut [T])) {
    const PIECE: usize = 4096;
    let mut tmp = [0f32; PIECE];
    let per_piece = (PIECE / B::SIZE).max(1);
    for (blocks, out) in blocks
        .chunks(per_piece)
        .zip(out.chunks_mut(per_piece * B::SIZE))
    {
        let tmp = &mut tmp[..out.len()];
        B::dequantize_blocks(blocks, tmp);
        convert(tmp, out);
    }
}

impl Element for half::f16 {
    fn dequantize_blocks<B: Block>(blocks: &[B], out: &mut [Self]) {
        use half::slice::HalfFloatSliceExt;
        via_f32(blocks, out, |src, dst| dst.convert_from_f32_slice(src));
    }
}

impl Element for half::bf16 {
    fn dequantize_blocks<B: Block>(blocks: &[B], out: &mut [Self]) {
        use half::slice::HalfFloatSliceExt;
        via_f32(blocks, out, |src, dst| dst.convert_from_f32_slice(src));
    }
}

/// Blocks handed to one rayon task: big enough to amortize scheduling, small enough to balance.
const BLOCKS_PER_TASK: usize = 1024;

fn run<B: Block, T: Element>(data: &[u8], out: &mut [T]) {
    let bytes = std::mem::size_of::<B>();
    out.par_chunks_mut(BLOCKS_PER_TASK * B::SIZE)
        .zip(data.par_chunks(BLOCKS_PER_TASK * bytes))
        .for_each(|(out, data)| T::dequantize_blocks::<B>(bytemuck::cast_slice(data), out));
}

/// Dequantizes `data` (blocks of type `ty`, as stored in the file) into `out`.
///
/// `name` is used in errors only. `out.len()` must be the element count of `data`.
pub fn dequantize_into<T: Element>(
    name: &str,
    ty: GgmlType,
    data: &[u8],
    out: &mut [T],
) -> Result<()> {
    let expected = ty.bytes_for(out.len() as u64);
    if expected != Some(data.len() as u64) {
        return Err(GgufError::SizeMismatch {
            tensor: name.to_string(),
            what: format!(
                "{} bytes of {ty} data do not hold {} elements (expected {expected:?} bytes)",
                data.len(),
                out.len()
            ),
        });
    }
    match ty {
        GgmlType::F32 => run::<F32Le, T>(data, out),
        GgmlType::F16 => run::<F16, T>(data, out),
        GgmlType::BF16 => run::<Bf16, T>(data, out),
        GgmlType::Q4_0 => run::<BlockQ4_0, T>(data, out),
        GgmlType::Q4_1 => run::<BlockQ4_1, T>(data, out),
        GgmlType::Q5_0 => run::<BlockQ5_0, T>(data, out),
        GgmlType::Q5_1 => run::<BlockQ5_1, T>(data, out),
        GgmlType::Q8_0 => run::<BlockQ8_0, T>(data, out),
        GgmlType::Q2_K => run::<BlockQ2K, T>(data, out),
        GgmlType::Q3_K => run::<BlockQ3K, T>(data, out),
        GgmlType::Q4_K => run::<BlockQ4K, T>(data, out),
        GgmlType::Q5_K => run::<BlockQ5K, T>(data, out),
        GgmlType::Q6_K => run::<BlockQ6K, T>(data, out),
        GgmlType::IQ2_XXS => run::<BlockIq2Xxs, T>(data, out),
        GgmlType::IQ2_XS => run::<BlockIq2Xs, T>(data, out),
        GgmlType::IQ2_S => run::<BlockIq2S, T>(data, out),
        GgmlType::IQ3_XXS => run::<BlockIq3Xxs, T>(data, out),
        GgmlType::IQ3_S => run::<BlockIq3S, T>(data, out),
        GgmlType::IQ1_S => run::<BlockIq1S, T>(data, out),
        GgmlType::IQ1_M => run::<BlockIq1M, T>(data, out),
        GgmlType::IQ4_NL => run::<BlockIq4Nl, T>(data, out),
        GgmlType::IQ4_XS => run::<BlockIq4Xs, T>(data, out),
        GgmlType::TQ1_0 => run::<BlockTq1_0, T>(data, out),
        GgmlType::TQ2_0 => run::<BlockTq2_0, T>(data, out),
        GgmlType::MXFP4 => run::<BlockMxfp4, T>(data, out),
        other => {
            return Err(GgufError::UnsupportedType {
                tensor: name.to_string(),
                type_name: other.name(),
                type_id: other.id(),
            })
        }
    }
    Ok(())
}

/// Dequantizes a tensor's data into a new vector of `T`, row-major.
pub fn dequantize_as<T: Element>(info: &TensorInfo, data: &[u8]) -> Result<Vec<T>> {
    if !info.ty.is_supported() {
        return Err(GgufError::UnsupportedType {
            tensor: info.name.clone(),
            type_name: info.ty.name(),
            type_id: info.ty.id(),
        });
    }
    let mut out = vec![T::default(); info.n_elements as usize];
    dequantize_into(&info.name, info.ty, data, &mut out)?;
    Ok(out)
}

/// Dequantizes a tensor's data to f32, row-major.
pub fn dequantize(info: &TensorInfo, data: &[u8]) -> Result<Vec<f32>> {
    dequantize_as::<f32>(info, data)
}
