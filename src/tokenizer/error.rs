//! Every way building a tokenizer from GGUF metadata can fail.

use gguf_importer::GgufError;

/// The tokenizer's error type: each variant names the metadata key or value at fault.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A key the tokenizer cannot do without is absent.
    #[error("missing tokenizer metadata key {key:?}")]
    MissingKey { key: &'static str },

    /// `tokenizer.ggml.model` names a tokenizer this crate does not implement (llama.cpp's
    /// `bert` WordPiece, `t5` Unigram, `rwkv`, `plamo2` ... or an unknown name).
    #[error("unsupported tokenizer model {model:?} in tokenizer.ggml.model: {} (supported: \"llama\" = SentencePiece, \"gpt2\" = byte-level BPE, \"gemma4\" = Gemma 4's BPE)", model_hint(.model))]
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

/// What a `tokenizer.ggml.model` value this crate refuses is, for the error message.
fn model_hint(model: &str) -> &'static str {
    match model {
        "bert" => "WordPiece (BERT-style embedding models) is not implemented",
        "t5" => "Unigram (T5-style models) is not implemented",
        "rwkv" => "RWKV's tokenizer is not implemented",
        "plamo2" => "PLaMo 2's tokenizer is not implemented",
        "no_vocab" | "none" => "the file has no vocabulary",
        _ => "not a tokenizer model this crate knows",
    }
}
