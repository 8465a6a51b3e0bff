//! Metadata key names, in one place (the names of llama.cpp's `llama-arch.cpp` and gguf-py's
//! `constants.py`).
//!
//! Keys of a model architecture are templated by the architecture name: `{arch}.block_count`
//! becomes `llama.block_count`. Use [`arch_key`] with the suffixes in [`llm`].

/// `{arch}.{suffix}`, e.g. `arch_key("llama", llm::BLOCK_COUNT)` = `"llama.block_count"`.
pub fn arch_key(arch: &str, suffix: &str) -> String {
    format!("{arch}.{suffix}")
}

pub const GENERAL_ARCHITECTURE: &str = "general.architecture";
pub const GENERAL_ALIGNMENT: &str = "general.alignment";
pub const GENERAL_NAME: &str = "general.name";
pub const GENERAL_FILE_TYPE: &str = "general.file_type";
pub const GENERAL_QUANTIZATION_VERSION: &str = "general.quantization_version";

/// The alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// Suffixes of architecture keys (prefix them with the architecture via [`arch_key`]).
pub mod llm {
    pub const VOCAB_SIZE: &str = "vocab_size";
    pub const CONTEXT_LENGTH: &str = "context_length";
    pub const EMBEDDING_LENGTH: &str = "embedding_length";
    pub const BLOCK_COUNT: &str = "block_count";
    pub const FEED_FORWARD_LENGTH: &str = "feed_forward_length";
    pub const HEAD_COUNT: &str = "attention.head_count";
    pub const HEAD_COUNT_KV: &str = "attention.head_count_kv";
    pub const KEY_LENGTH: &str = "attention.key_length";
    pub const VALUE_LENGTH: &str = "attention.value_length";
    pub const LAYER_NORM_RMS_EPSILON: &str = "attention.layer_norm_rms_epsilon";
    pub const ROPE_DIMENSION_COUNT: &str = "rope.dimension_count";
    pub const ROPE_FREQ_BASE: &str = "rope.freq_base";
    pub const ROPE_SCALING_TYPE: &str = "rope.scaling.type";
    pub const ROPE_SCALING_FACTOR: &str = "rope.scaling.factor";
    /// Older files: linear scaling given as `1 / factor`.
    pub const ROPE_SCALE_LINEAR: &str = "rope.scale_linear";
    pub const ROPE_SCALING_ORIG_CTX_LEN: &str = "rope.scaling.original_context_length";
    /// Factor of RoPE's cosines and sines (LongRoPE's and YaRN's attention factor).
    pub const ROPE_SCALING_ATTN_FACTOR: &str = "rope.scaling.attn_factor";
    /// The RoPE base of sliding-window layers (Gemma 3; llama.cpp's default 10000).
    pub const ROPE_FREQ_BASE_SWA: &str = "rope.freq_base_swa";
    /// Positions a sliding-window layer attends to (the query's and the `n - 1` before it).
    pub const SLIDING_WINDOW: &str = "attention.sliding_window";
    /// Which layers use the sliding window: a period (every `n`-th layer is global) or one
    /// boolean per layer.
    pub const SLIDING_WINDOW_PATTERN: &str = "attention.sliding_window_pattern";
    /// `cap · tanh(logits / cap)` on the output logits (Gemma 2/3).
    pub const FINAL_LOGIT_SOFTCAPPING: &str = "final_logit_softcapping";
    /// `cap · tanh(scores / cap)` on the attention scores (Gemma 2).
    pub const ATTN_LOGIT_SOFTCAPPING: &str = "attn_logit_softcapping";
}

/// Tokenizer keys.
pub mod tokenizer {
    pub const MODEL: &str = "tokenizer.ggml.model";
    pub const PRE: &str = "tokenizer.ggml.pre";
    pub const TOKENS: &str = "tokenizer.ggml.tokens";
    pub const SCORES: &str = "tokenizer.ggml.scores";
    pub const TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
    pub const MERGES: &str = "tokenizer.ggml.merges";
    pub const BOS_ID: &str = "tokenizer.ggml.bos_token_id";
    pub const EOS_ID: &str = "tokenizer.ggml.eos_token_id";
    pub const EOT_ID: &str = "tokenizer.ggml.eot_token_id";
    pub const EOM_ID: &str = "tokenizer.ggml.eom_token_id";
    pub const UNK_ID: &str = "tokenizer.ggml.unknown_token_id";
    /// Spelled as in llama.cpp.
    pub const SEP_ID: &str = "tokenizer.ggml.seperator_token_id";
    pub const PAD_ID: &str = "tokenizer.ggml.padding_token_id";
    pub const ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
    pub const ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
    pub const ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";
    pub const REMOVE_EXTRA_WHITESPACES: &str = "tokenizer.ggml.remove_extra_whitespaces";
    pub const CHAT_TEMPLATE: &str = "tokenizer.chat_template";
}
