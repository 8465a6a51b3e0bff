//! Every way building a tokenizer from GGUF metadata can fail.

use gguf_importer::GgufError;

/// The tokenizer's error type: each variant names the metadata key or value at fault.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A key the tokenizer cannot do without is absent.
    #[error("missing tokenizer metadata key {key:?}")]
    MissingKey { key: &'static str },

    /// `tokenizer.ggml.model` names a tokenizer this crate does not implement.
    #[error("unsupported tokenizer model {model:?} in tokenizer.ggml.model (supported: \"llama\", \"gpt2\")")]
    UnknownModel { model: String },

    /// `tokenizer.ggml.pre` names a pre-tokenizer this crate does not implement.
    #[error("unsupported pre-tokenizer {pre:?} in tokenizer.ggml.pre (supported: {supported})")]
    UnknownPreTokenizer { pre: String, supported: String },

    /// A key is present but its value cannot be used.
    #[error("tokenizer metadata key {key:?}: {reason}")]
    BadValue { key: &'static str, reason: String },

    /// Reading the metadata failed (a key of the wrong type, a negative count ...).
    #[error(transparent)]
    Gguf(#[from] GgufError),
}
