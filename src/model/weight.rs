//! A weight matrix as the model holds it: dense f32, or kept in its GGUF blocks ([`Weight`]).

use burn::module::{Module, Param};
use burn::tensor::{Device, Int, Tensor, TensorData};
use gguf_kernels::extension::{dequantize, q_get_rows, q_matmul_3d};
use gguf_kernels::packed::QWeight;

use crate::model::error::ModelError;
use crate::model::ops;

/// A matrix `[rows, cols]` (row-major, ggml's `ne` reversed): the weight of a linear layer
/// `[n_out, n_in]` or the token embedding `[n_vocab, n_embd]`.
///
/// Either variant is part of the module's record (the quantized one as its packed u32 words,
/// see [`QWeight`]).
#[derive(Module, Debug)]
pub enum Weight {
    /// f32 values.
    Dense(Param<Tensor<2>>),
    /// The file's blocks, multiplied by the fused quantized-matmul kernels of `gguf-kernels`
    /// (on every device) and dequantized row by row on lookup.
    Quantized(QWeight),
}

impl Weight {
    /// A dense weight from its f32 values.
    pub fn dense(values: Tensor<2>) -> Weight {
        Weight::Dense(Param::from_tensor(values))
    }

    /// `[rows, cols]`.
    pub fn shape(&self) -> [usize; 2] {
        match self {
            Weight::Dense(w) => w.dims(),
            Weight::Quantized(q) => [q.rows(), q.cols()],
        }
    }

    /// The device the weight is on.
    pub fn device(&self) -> Device {
        match self {
            Weight::Dense(w) => w.val().device(),
            Weight::Quantized(q) => q.device(),
        }
    }

    /// Whether the weight is kept in its blocks.
    pub fn is_quantized(&self) -> bool {
        matches!(self, Weight::Quantized(_))
    }

    /// The f32 values when dense.
    pub fn as_dense(&self) -> Option<Tensor<2>> {
        match self {
            Weight::Dense(w) => Some(w.val()),
            Weight::Quantized(_) => None,
        }
    }

    /// The blocks when quantized.
    pub fn as_quantized(&self) -> Option<&QWeight> {
        match self {
            Weight::Dense(_) => None,
            Weight::Quantized(q) => Some(q),
        }
    }

    /// The values as f32: the dense values, or the blocks dequantized.
    pub fn to_f32(&self) -> Result<Tensor<2>, ModelError> {
        match self {
            Weight::Dense(w) => Ok(w.val()),
            Weight::Quantized(q) => Ok(dequantize(q)?),
        }
    }

    /// `x · Wᵀ`: each output is the dot product of `x` with a row of `W`, as in ggml's
    /// `mul_mat(W, x)` ([`ops::mul_mat`] for dense values, the quantized-matmul kernels for blocks).
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, cols]`
    /// - output: `[batch, seq, rows]`
    pub fn mul_mat(&self, x: Tensor<3>) -> Result<Tensor<3>, ModelError> {
        match self {
            Weight::Dense(w) => Ok(ops::mul_mat(x, w.val())),
            Weight::Quantized(q) => Ok(q_matmul_3d(x, q)?),
        }
    }

    /// The rows `ids` (each below `rows`), from the host: dense values gathered by an index
    /// tensor, blocks dequantized row by row (llama.cpp's `get_rows`).
    ///
    /// # Shapes
    /// - `ids`: `n` ids
    /// - output: `[n, cols]`
    pub fn rows(&self, ids: &[u32]) -> Result<Tensor<2>, ModelError> {
        match self {
            Weight::Dense(w) => {
                let w = w.val();
                let data: Vec<i64> = ids.iter().map(|&t| t as i64).collect();
                let ids =
                    Tensor::<1, Int>::from_data(TensorData::new(data, [ids.len()]), &w.device());
                Ok(w.select(0, ids))
            }
            Weight::Quantized(q) => Ok(q_get_rows(q, ids)?),
        }
    }
}
