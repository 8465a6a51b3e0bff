//! Every way building or running the model can fail.

use gguf_importer::GgufError;

/// The model's error type: each variant names the key, tensor or sizes involved.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// `general.architecture` names an architecture this model does not implement.
    #[error("unsupported architecture {arch:?} (supported: {supported})")]
    UnsupportedArchitecture {
        arch: String,
        supported: &'static str,
    },

    /// A metadata key could not be read (absent, wrong type, out of range).
    #[error("reading metadata key {key:?}: {source}")]
    Key {
        key: String,
        #[source]
        source: GgufError,
    },

    /// A metadata value that was read but cannot be used.
    #[error("metadata key {key:?}: {reason}")]
    InvalidConfig { key: String, reason: String },

    /// A metadata value for a feature this model does not implement (YaRN scaling ...).
    #[error("metadata key {key:?} = {value:?} is not supported: {reason}")]
    Unsupported {
        key: String,
        value: String,
        reason: &'static str,
    },

    /// The vocabulary size is given by no key and no tensor.
    #[error("the vocabulary size is unknown: none of {keys} is in the file")]
    UnknownVocabSize { keys: String },

    /// A required tensor is absent.
    #[error("missing tensor {name:?}")]
    MissingTensor { name: String },

    /// A tensor has another row-major shape than the configuration implies.
    #[error("tensor {name:?} has row-major shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    /// Reading or dequantizing a tensor failed.
    #[error("loading tensor {name:?}: {source}")]
    Tensor {
        name: String,
        #[source]
        source: GgufError,
    },

    /// More positions than the model's context length.
    #[error("{needed} positions needed, but the context length is {context_length}")]
    ContextOverflow {
        needed: usize,
        context_length: usize,
    },

    /// More positions than the KV cache holds.
    #[error("{needed} positions needed, but the KV cache holds {capacity}")]
    CacheFull { needed: usize, capacity: usize },

    /// A KV cache element type that is not implemented (llama.cpp's quantized cache types).
    #[error("unsupported KV cache type {name:?} (supported: {supported})")]
    UnsupportedCacheType {
        name: String,
        supported: &'static str,
    },

    /// A KV cache that does not fit the model or the input (layers, batch, heads, device).
    #[error("KV cache mismatch: {what}")]
    CacheMismatch { what: String },

    /// An input that cannot be run (empty batch, empty sequence ...).
    #[error("invalid input: {what}")]
    InvalidInput { what: String },
    /// The quantized matmul refused its operands (a weight or activation of the wrong size).
    #[error("quantized matmul: {0}")]
    Kernel(#[from] gguf_kernels::error::KernelError),

    /// A weight of a ggml type that the importer lists but does not dequantize (Q8_K, Q8_1, the
    /// activation-only formats): refused by name before anything is read.
    #[error(
        "tensor {name:?} has ggml type {ty}, which this crate cannot load (supported: {supported})"
    )]
    UnsupportedTensorType {
        name: String,
        ty: gguf_importer::GgmlType,
        supported: String,
    },

    /// A tensor of a type the importer dequantizes but no matmul kernel multiplies in its blocks:
    /// [`crate::model::Weights::F32`] loads it. (Every type the importer dequantizes has CPU and
    /// CubeCL kernels today; a device whose kernels lack a format gets it dequantized to f32 at
    /// load instead.)
    #[error(
        "tensor {name:?} has ggml type {ty}, which has no matmul kernel yet (kept in their blocks: \
         {kernels}); load with f32 weights (`--weights f32`, `Weights::F32`) to dequantize it at load"
    )]
    NoKernel {
        name: String,
        ty: gguf_importer::GgmlType,
        kernels: String,
    },

    /// The rows of the token embedding (or of the output projection) are not the vocabulary's
    /// tokens: the model would produce ids the tokenizer cannot decode, or be fed ids it has no
    /// row for. `vocab_from` says where the vocabulary size came from (a metadata key).
    #[error(
        "tensor {tensor:?} has {rows} rows, but the vocabulary has {vocab_size} tokens \
         ({vocab_from})"
    )]
    VocabMismatch {
        tensor: String,
        rows: usize,
        vocab_size: usize,
        vocab_from: String,
    },
}

impl ModelError {
    /// Wraps a metadata accessor's error with its key.
    pub(crate) fn key(key: &str) -> impl FnOnce(GgufError) -> ModelError + '_ {
        move |source| ModelError::Key {
            key: key.to_string(),
            source,
        }
    }
}
