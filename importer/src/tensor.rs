//! Tensor infos and the one rule for dimension order.
//!
//! # Dimension order
//!
//! GGUF stores a tensor's dimensions in ggml order: `ne[0]` is the contiguous (fastest-varying)
//! dimension. A tensor with `ne = [2048, 32000]` is therefore the row-major array
//! `[32000][2048]`: 32000 rows of 2048 contiguous elements. The rule is the same for every type:
//! for a block-quantized tensor each row is `ne[0] / block_size` consecutive blocks, and
//! dequantizing the blocks in file order yields the row-major elements. [`TensorInfo::shape`]
//! is the row-major shape (`ne` reversed), and every tensor this crate hands out is in that shape.
//!
//! So the token embedding `token_embd.weight` with `ne = [n_embd, n_vocab]` has shape
//! `[n_vocab, n_embd]`, and the embedding of token `t` is row `t`. A linear weight with
//! `ne = [n_in, n_out]` has shape `[n_out, n_in]` (PyTorch's `Linear.weight` layout) and computes
//! `y = x · Wᵀ`, as ggml's `mul_mat(W, x)` does.

use crate::error::{GgufError, Result};
use crate::types::GgmlType;

/// Where a tensor is and what it holds.
///
/// Two shapes that look odd are valid, as in ggml: a dimension of 0 (no elements, no bytes; its
/// data range is empty) and no dimensions at all (`n_dims = 0`: a scalar of one element, ggml's
/// `ne = [1, 1, 1, 1]`; `ne` is then empty and [`TensorInfo::shape`] is `[]`). A model that
/// expects another shape rejects them when it checks the shapes of its weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name (`blk.0.attn_q.weight` ...).
    pub name: String,
    /// Dimensions in ggml order: `ne[0]` is contiguous.
    pub ne: Vec<u64>,
    /// Element type.
    pub ty: GgmlType,
    /// Offset of the data relative to the start of the data section.
    pub offset: u64,
    /// Number of elements.
    pub n_elements: u64,
    /// Number of bytes of data.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Validates a tensor info read from a file: shape (its element count must fit an i64, as
    /// in ggml; a dimension of 0 is allowed), block alignment of rows, data alignment, and that
    /// the data lies inside the file.
    pub(crate) fn new(
        name: String,
        ne: Vec<u64>,
        ty: GgmlType,
        offset: u64,
        alignment: u64,
        data_offset: u64,
        file_len: u64,
    ) -> Result<Self> {
        let n_elements = ne
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| GgufError::BadShape {
                tensor: name.clone(),
                ne: ne.clone(),
            })?;
        let ne0 = ne.first().copied().unwrap_or(1);
        let block = ty.block_size() as u64;
        if ne0 % block != 0 {
            return Err(GgufError::RowNotBlockAligned {
                tensor: name,
                type_name: ty.name(),
                ne0,
                block_size: block,
            });
        }
        // ne[0] is whole blocks, so only a byte count over u64 fails (2^62 F32 elements fit
        // an i64 but their bytes do not). The row count and the bytes of a row
        // ([`TensorInfo::n_rows`], [`TensorInfo::row_bytes`]) must fit too, also when a dimension
        // of 0 makes the element count 0 whatever the others are (`ne = [0, 2^40, 2^40]`).
        let n_rows = ne
            .iter()
            .skip(1)
            .try_fold(1u64, |acc, &d| acc.checked_mul(d));
        let row_bytes = ty.bytes_for(ne0);
        let (Some(n_bytes), Some(_), Some(_)) = (ty.bytes_for(n_elements), row_bytes, n_rows)
        else {
            return Err(GgufError::BadShape { tensor: name, ne });
        };
        if !offset.is_multiple_of(alignment) {
            return Err(GgufError::MisalignedTensor {
                tensor: name,
                offset,
                alignment,
            });
        }
        let start = data_offset.checked_add(offset);
        let end = start.and_then(|s| s.checked_add(n_bytes));
        match (start, end) {
            (Some(_), Some(end)) if end <= file_len => {}
            _ => {
                return Err(GgufError::TensorOutOfBounds {
                    tensor: name,
                    start: start.unwrap_or(u64::MAX),
                    end: end.unwrap_or(u64::MAX),
                    file_len,
                })
            }
        }
        Ok(Self {
            name,
            ne,
            ty,
            offset,
            n_elements,
            n_bytes,
        })
    }

    /// Row-major shape: `ne` reversed, so the last dimension is contiguous.
    pub fn shape(&self) -> Vec<usize> {
        self.ne.iter().rev().map(|&d| d as usize).collect()
    }

    /// Length of a row (`ne[0]`), the contiguous dimension.
    pub fn row_len(&self) -> usize {
        self.ne.first().copied().unwrap_or(1) as usize
    }

    /// Number of rows (product of `ne[1..]`).
    pub fn n_rows(&self) -> usize {
        self.ne.iter().skip(1).product::<u64>() as usize
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.row_len() / self.ty.block_size() * self.ty.type_size()
    }
}
