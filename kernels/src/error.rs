//! Errors of the kernels crate: what was wrong with a matmul's inputs, and where.

use gguf_importer::GgmlType;

/// A matmul that cannot run: bad shapes, a weight format without a kernel, an instruction set
/// the CPU lacks.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The weight format has no kernel here.
    #[error("no matmul kernel for {ty} weights")]
    UnsupportedType { ty: GgmlType },

    /// A weight row is not a whole number of blocks.
    #[error("{ty} weight rows of {cols} columns are not whole blocks of {block_size}")]
    NotBlockAligned {
        ty: GgmlType,
        cols: usize,
        block_size: usize,
    },

    /// The weight bytes do not hold `rows × cols` elements of the type.
    #[error("{ty} weight [{rows} × {cols}] takes {expected} bytes, got {actual}")]
    WeightSize {
        ty: GgmlType,
        rows: usize,
        cols: usize,
        expected: usize,
        actual: usize,
    },

    /// A dimension is zero, or `rows × cols` overflows.
    #[error("bad weight shape [{rows} × {cols}]")]
    BadShape { rows: usize, cols: usize },

    /// An activation or output buffer has the wrong length.
    #[error("{what} holds {actual} values, expected {expected}")]
    BufferSize {
        what: &'static str,
        expected: usize,
        actual: usize,
    },

    /// A row index past the matrix (an embedding lookup of a token outside the vocabulary).
    #[error("row index {index} is outside the matrix's {rows} rows")]
    RowIndex { index: usize, rows: usize },

    /// A forced instruction set that this CPU does not have.
    #[error("instruction set {isa} is not available on this CPU")]
    IsaUnavailable { isa: &'static str },

    /// Dequantization for the reference path failed.
    #[error(transparent)]
    Gguf(#[from] gguf_importer::GgufError),
}
