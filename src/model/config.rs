//! The model's hyper-parameters, read from GGUF metadata.
//!
//! [`LlamaConfig::from_gguf`] reads these keys (`{arch}` is `general.architecture`, which must be
//! `llama`), in the order and with the defaults of llama.cpp's `llama_model::load_hparams`:
//!
//! | key                                         | required | default                                  |
//! |---------------------------------------------|----------|------------------------------------------|
//! | `general.architecture`                      | yes      |                                          |
//! | `{arch}.context_length`                     | yes      |                                          |
//! | `{arch}.embedding_length`                   | yes      |                                          |
//! | `{arch}.block_count`                        | yes      |                                          |
//! | `{arch}.feed_forward_length`                | yes      |                                          |
//! | `{arch}.attention.head_count`               | yes      |                                          |
//! | `{arch}.attention.head_count_kv`            | no       | head_count (a scalar or one per layer)   |
//! | `{arch}.attention.key_length`               | no       | embedding_length / head_count            |
//! | `{arch}.attention.value_length`             | no       | embedding_length / head_count            |
//! | `{arch}.attention.layer_norm_rms_epsilon`   | yes      |                                          |
//! | `{arch}.rope.dimension_count`               | no       | key_length                               |
//! | `{arch}.rope.freq_base`                     | no       | 10000                                    |
//! | `{arch}.rope.scaling.type`                  | no       | `linear` (`none` and `linear` supported) |
//! | `{arch}.rope.scaling.factor`                | no       | `{arch}.rope.scale_linear`, else 1       |
//! | `{arch}.vocab_size`                         | no       | length of `tokenizer.ggml.tokens`        |
//!
//! The vocabulary size falls back to the rows of `token_embd.weight` in
//! [`LlamaConfig::from_file`]. When `{arch}.vocab_size` and `tokenizer.ggml.tokens` are both
//! present they must agree: llama.cpp sizes the embedding by the tokenizer's vocabulary, and a
//! model with more rows than the tokenizer has tokens would produce ids it cannot decode.
//!
//! The per-pair frequency divisors of Llama 3 files (`rope_freqs.weight`) are a tensor, loaded
//! with the weights (see [`crate::model::rope`]).

use gguf_importer::keys::{self, arch_key, llm};
use gguf_importer::{GgufFile, Metadata};

use crate::model::error::ModelError;

/// The architectures this model implements, with their RoPE pairing.
pub const SUPPORTED_ARCHITECTURES: &str = "llama";

/// Which elements of a head RoPE rotates together.
///
/// llama.cpp calls these `LLAMA_ROPE_TYPE_NORM` and `LLAMA_ROPE_TYPE_NEOX`; its
/// `llama_model_rope_type` picks one per architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs `(x[2i], x[2i+1])`: the `llama` architecture. HF Llama checkpoints rotate
    /// halves, but llama.cpp's converter permutes the rows of `attn_q`/`attn_k` so that adjacent
    /// pairing is right for the GGUF weights as stored.
    Adjacent,
    /// Halves `(x[i], x[i + n_rot/2])`: GPT-NeoX-style architectures (Qwen2, Phi-3, ...).
    Halves,
}

/// Rotary position embedding parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeConfig {
    /// Pairing of the rotated elements.
    pub style: RopeStyle,
    /// Number of leading elements of each head that are rotated (`n_rot`, even); the rest pass
    /// through unchanged.
    pub dimension_count: usize,
    /// `base` in `theta_i = pos · base^(-2i/n_rot)`.
    pub freq_base: f32,
    /// Linear position scaling: positions are multiplied by this (`1 / scaling.factor`).
    pub freq_scale: f32,
}

/// Hyper-parameters of a Llama model.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// `general.architecture`.
    pub architecture: String,
    /// Positions the model was trained for; the forward pass refuses more.
    pub context_length: usize,
    /// Width of the residual stream (`n_embd`).
    pub embedding_length: usize,
    /// Number of transformer blocks (`n_layer`).
    pub block_count: usize,
    /// Hidden width of the feed-forward network (`n_ff`).
    pub feed_forward_length: usize,
    /// Query heads (`n_head`).
    pub head_count: usize,
    /// Key/value heads of each layer (`n_head_kv`); each divides `head_count`.
    pub head_count_kv: Vec<usize>,
    /// Head size of queries and keys (`n_embd_head_k`).
    pub key_length: usize,
    /// Head size of values (`n_embd_head_v`).
    pub value_length: usize,
    /// Epsilon of the RMS norms.
    pub rms_norm_eps: f32,
    /// Rotary position embedding.
    pub rope: RopeConfig,
    /// Vocabulary size (rows of the token embedding, columns of the logits).
    pub vocab_size: usize,
}

impl LlamaConfig {
    /// Reads the configuration from a file's metadata (see the module docs for the keys).
    /// Without `{arch}.vocab_size` and `tokenizer.ggml.tokens` this fails with
    /// [`ModelError::UnknownVocabSize`]; [`LlamaConfig::from_file`] also looks at the tensors.
    pub fn from_gguf(metadata: &Metadata) -> Result<LlamaConfig, ModelError> {
        Self::read(metadata, None)
    }

    /// Like [`LlamaConfig::from_gguf`], with the vocabulary size falling back to the rows of
    /// `token_embd.weight`.
    pub fn from_file(file: &GgufFile) -> Result<LlamaConfig, ModelError> {
        let embd_rows = file
            .tensor(crate::model::load::TOKEN_EMBD)
            .and_then(|t| t.shape().first().copied());
        Self::read(file.metadata(), embd_rows)
    }

    fn read(md: &Metadata, vocab_fallback: Option<usize>) -> Result<LlamaConfig, ModelError> {
        let architecture = md
            .get_str(keys::GENERAL_ARCHITECTURE)
            .map_err(ModelError::key(keys::GENERAL_ARCHITECTURE))?
            .to_string();
        let style = match architecture.as_str() {
            "llama" => RopeStyle::Adjacent,
            _ => {
                return Err(ModelError::UnsupportedArchitecture {
                    arch: architecture,
                    supported: SUPPORTED_ARCHITECTURES,
                })
            }
        };
        let arch = architecture.as_str();
        let key = |suffix: &str| arch_key(arch, suffix);
        let usize_of = |k: &str| md.get_usize(k).map_err(ModelError::key(k));
        let positive = |k: &str| -> Result<usize, ModelError> {
            let v = usize_of(k)?;
            if v == 0 {
                return Err(invalid(k, "must be positive".into()));
            }
            Ok(v)
        };
        let optional_usize = |k: &str, default: usize| -> Result<usize, ModelError> {
            if md.contains(k) {
                positive(k)
            } else {
                Ok(default)
            }
        };
        let optional_f32 = |k: &str| -> Result<Option<f32>, ModelError> {
            if md.contains(k) {
                md.get_f32(k).map(Some).map_err(ModelError::key(k))
            } else {
                Ok(None)
            }
        };

        let context_length = positive(&key(llm::CONTEXT_LENGTH))?;
        let embedding_length = positive(&key(llm::EMBEDDING_LENGTH))?;
        let block_count = positive(&key(llm::BLOCK_COUNT))?;
        let feed_forward_length = positive(&key(llm::FEED_FORWARD_LENGTH))?;
        let head_count = positive(&key(llm::HEAD_COUNT))?;

        let kv_key = key(llm::HEAD_COUNT_KV);
        let head_count_kv = if md.contains(&kv_key) {
            md.get_per_layer_usize(&kv_key, block_count)
                .map_err(ModelError::key(&kv_key))?
        } else {
            vec![head_count; block_count]
        };

        // The head sizes default to n_embd / n_head, which must then be whole (llama.cpp divides
        // without checking and would silently drop the remainder).
        let head_size = |k: &str| -> Result<usize, ModelError> {
            if !md.contains(k) && !embedding_length.is_multiple_of(head_count) {
                return Err(invalid(
                    k,
                    format!("absent, and embedding_length {embedding_length} is not a multiple of head_count {head_count}"),
                ));
            }
            optional_usize(k, embedding_length / head_count)
        };
        let key_length = head_size(&key(llm::KEY_LENGTH))?;
        let value_length = head_size(&key(llm::VALUE_LENGTH))?;

        let eps_key = key(llm::LAYER_NORM_RMS_EPSILON);
        let rms_norm_eps = md.get_f32(&eps_key).map_err(ModelError::key(&eps_key))?;

        let rot_key = key(llm::ROPE_DIMENSION_COUNT);
        let dimension_count = optional_usize(&rot_key, key_length)?;
        let base_key = key(llm::ROPE_FREQ_BASE);
        let freq_base = optional_f32(&base_key)?.unwrap_or(10000.0);

        // Scaling type: llama.cpp defaults to "linear" and never scales with "none".
        let type_key = key(llm::ROPE_SCALING_TYPE);
        let scaling = if md.contains(&type_key) {
            md.get_str(&type_key)
                .map_err(ModelError::key(&type_key))?
                .to_string()
        } else {
            "linear".to_string()
        };
        // The factor: `rope.scaling.factor`, else the older `rope.scale_linear`; 0 means none.
        let factor_key = key(llm::ROPE_SCALING_FACTOR);
        let old_key = key(llm::ROPE_SCALE_LINEAR);
        let (factor_key, factor) = match optional_f32(&factor_key)? {
            Some(f) => (factor_key, f),
            None => (old_key.clone(), optional_f32(&old_key)?.unwrap_or(0.0)),
        };
        if !(factor.is_finite() && factor >= 0.0) {
            return Err(invalid(
                &factor_key,
                format!("{factor} is not a finite non-negative number"),
            ));
        }
        let freq_scale = match scaling.as_str() {
            "none" => 1.0,
            "linear" if factor == 0.0 => 1.0,
            "linear" => 1.0 / factor,
            "yarn" | "longrope" => {
                return Err(ModelError::Unsupported {
                    key: type_key,
                    value: scaling,
                    reason: "only `none` and `linear` RoPE scaling are implemented",
                })
            }
            _ => {
                return Err(invalid(
                    &type_key,
                    format!("unknown RoPE scaling type {scaling:?}"),
                ))
            }
        };

        let vocab_key = key(llm::VOCAB_SIZE);
        let n_tokens = match md.contains(keys::tokenizer::TOKENS) {
            true => Some(
                md.get_array(keys::tokenizer::TOKENS)
                    .map_err(ModelError::key(keys::tokenizer::TOKENS))?
                    .1
                    .len(),
            ),
            false => None,
        };
        let vocab_size = if md.contains(&vocab_key) {
            let n = positive(&vocab_key)?;
            match n_tokens {
                Some(tokens) if tokens != n => {
                    return Err(invalid(
                        &vocab_key,
                        format!(
                            "{n}, but {} lists {tokens} tokens: the two must agree",
                            keys::tokenizer::TOKENS
                        ),
                    ))
                }
                _ => n,
            }
        } else if let Some(tokens) = n_tokens {
            tokens
        } else if let Some(rows) = vocab_fallback {
            rows
        } else {
            return Err(ModelError::UnknownVocabSize {
                keys: format!("{vocab_key}, {}", keys::tokenizer::TOKENS),
            });
        };
        if vocab_size == 0 {
            return Err(invalid(
                keys::tokenizer::TOKENS,
                "the vocabulary is empty".into(),
            ));
        }

        let config = LlamaConfig {
            architecture,
            context_length,
            embedding_length,
            block_count,
            feed_forward_length,
            head_count,
            head_count_kv,
            key_length,
            value_length,
            rms_norm_eps,
            rope: RopeConfig {
                style,
                dimension_count,
                freq_base,
                freq_scale,
            },
            vocab_size,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the invariants the model relies on; errors name the metadata key of the value.
    /// [`LlamaConfig::from_gguf`] calls it, and so does `Llama::from_gguf_with_config` for a
    /// configuration built or edited by hand.
    pub fn validate(&self) -> Result<(), ModelError> {
        let key = |suffix: &str| arch_key(&self.architecture, suffix);
        let positive = [
            (llm::CONTEXT_LENGTH, self.context_length),
            (llm::EMBEDDING_LENGTH, self.embedding_length),
            (llm::BLOCK_COUNT, self.block_count),
            (llm::FEED_FORWARD_LENGTH, self.feed_forward_length),
            (llm::HEAD_COUNT, self.head_count),
            (llm::KEY_LENGTH, self.key_length),
            (llm::VALUE_LENGTH, self.value_length),
            (llm::VOCAB_SIZE, self.vocab_size),
        ];
        for (suffix, v) in positive {
            if v == 0 {
                return Err(invalid(&key(suffix), "must be positive".into()));
            }
        }
        let kv_key = key(llm::HEAD_COUNT_KV);
        if self.head_count_kv.len() != self.block_count {
            return Err(invalid(
                &kv_key,
                format!(
                    "{} entries for {} layers",
                    self.head_count_kv.len(),
                    self.block_count
                ),
            ));
        }
        for (layer, &n) in self.head_count_kv.iter().enumerate() {
            if n == 0 {
                return Err(invalid(
                    &kv_key,
                    format!("must be positive (layer {layer} has 0 key/value heads)"),
                ));
            }
            if !self.head_count.is_multiple_of(n) {
                return Err(invalid(
                    &kv_key,
                    format!(
                        "{n} key/value heads do not divide the {} query heads",
                        self.head_count
                    ),
                ));
            }
        }
        let eps = self.rms_norm_eps;
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(invalid(
                &key(llm::LAYER_NORM_RMS_EPSILON),
                format!("{eps} is not a finite non-negative number"),
            ));
        }
        let rope = &self.rope;
        if rope.dimension_count == 0
            || !rope.dimension_count.is_multiple_of(2)
            || rope.dimension_count > self.key_length
        {
            return Err(invalid(
                &key(llm::ROPE_DIMENSION_COUNT),
                format!(
                    "{} must be even, positive and at most the key length {}",
                    rope.dimension_count, self.key_length
                ),
            ));
        }
        if !(rope.freq_base.is_finite() && rope.freq_base > 0.0) {
            return Err(invalid(
                &key(llm::ROPE_FREQ_BASE),
                format!("{} is not a positive number", rope.freq_base),
            ));
        }
        if !(rope.freq_scale.is_finite() && rope.freq_scale > 0.0) {
            return Err(invalid(
                &key(llm::ROPE_SCALING_FACTOR),
                format!(
                    "scales positions by {}, not a positive number",
                    rope.freq_scale
                ),
            ));
        }
        Ok(())
    }

    /// Query heads per key/value head in layer `layer` (`n_head / n_head_kv`).
    pub fn group_size(&self, layer: usize) -> usize {
        self.head_count / self.head_count_kv[layer]
    }
}

fn invalid(key: &str, reason: String) -> ModelError {
    ModelError::InvalidConfig {
        key: key.to_string(),
        reason,
    }
}
