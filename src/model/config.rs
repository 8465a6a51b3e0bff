//! The model's hyper-parameters, read from GGUF metadata, and the description of its family.
//!
//! [`LlamaConfig::from_gguf`] reads these keys (`{arch}` is `general.architecture`, one of
//! [`SUPPORTED_ARCHITECTURES`]), in the order and with the defaults of llama.cpp's
//! `llama_model::load_hparams` and its architectures' `load_arch_hparams`:
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
//! | `{arch}.rope.scaling.type`                  | no       | `linear` (`none`, `linear`, `longrope`, `yarn`) |
//! | `{arch}.rope.scaling.factor`                | no       | `{arch}.rope.scale_linear`, else 1       |
//! | `{arch}.rope.scaling.attn_factor`           | no       | 1                                        |
//! | `{arch}.rope.scaling.original_context_length` | no     | context_length                           |
//! | `{arch}.vocab_size`                         | no       | length of `tokenizer.ggml.tokens`        |
//! | `gemma3.attention.sliding_window`           | no       | none (every layer global)                |
//! | `gemma3.attention.sliding_window_pattern`   | no       | 6 (a period, or one boolean per layer)   |
//! | `gemma3.rope.freq_base_swa`                 | no       | 10000                                    |
//! | `gemma3.final_logit_softcapping`            | no       | none                                     |
//!
//! The vocabulary size falls back to the rows of `token_embd.weight` in
//! [`LlamaConfig::from_file`]. When `{arch}.vocab_size` and `tokenizer.ggml.tokens` are both
//! present they must agree: llama.cpp sizes the embedding by the tokenizer's vocabulary, and a
//! model with more rows than the tokenizer has tokens would produce ids it cannot decode.
//!
//! The per-pair frequency divisors of Llama 3 files (`rope_freqs.weight`) are a tensor, loaded
//! with the weights (see [`crate::model::rope`]).
//!
//! # Families
//!
//! Every supported architecture is the Llama block with some of these changes ([`Family`]),
//! as llama.cpp's graph of that architecture computes it (`src/models/{arch}.cpp`):
//!
//! | family   | RoPE pairs | q/k bias | q/k norm | post-norms | FFN gate | embedding scale | attention scale            | sliding window |
//! |----------|------------|----------|----------|------------|----------|-----------------|----------------------------|----------------|
//! | `llama`  | adjacent   | optional | no       | no         | SiLU     | 1               | scores · 1/sqrt(key_length) | no            |
//! | `qwen2`  | halves     | optional | no       | no         | SiLU     | 1               | scores · 1/sqrt(key_length) | no            |
//! | `qwen3`  | halves     | optional | yes      | no         | SiLU     | 1               | scores · 1/sqrt(key_length) | no            |
//! | `gemma3` | halves     | optional | yes      | yes        | GELU     | sqrt(n_embd)    | queries · 1/sqrt(key_length) | per layer    |
//! | `phi3`   | halves     | optional | no       | no         | SiLU     | 1               | queries · 1/sqrt(key_length) | no (as llama.cpp) |
//!
//! Phi-3 files fuse q, k and v into `attn_qkv` and the gate and up projections into `ffn_up`
//! (the gate's rows first); the loader splits them by rows (quantized rows stay in their blocks,
//! so each part computes what the fused matmul computes for its rows). Their LongRoPE divides the
//! angles by `rope_factors_long.weight` when the context length exceeds
//! `rope.scaling.original_context_length`, else by `rope_factors_short.weight`, as llama.cpp's
//! `get_rope_factors` chooses them by its context size (here [`LlamaConfig::context_length`],
//! which may be lowered before loading to the context actually used).
//!
//! The tensors each family's block has are listed by [`crate::model::tensors::BlockTensor::of`].

use gguf_importer::keys::{self, arch_key, llm};
use gguf_importer::{GgufFile, Metadata};

use crate::model::error::ModelError;

/// The architectures this model implements (`general.architecture`).
pub const SUPPORTED_ARCHITECTURES: &str = "llama, qwen2, qwen3, gemma3, phi3";

/// A model family: an architecture llama.cpp names in `general.architecture`, and how its block
/// differs from Llama's (see the [module documentation](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `llama` (also Mistral, Llama 2/3.x, SmolLM2, TinyLlama files).
    Llama,
    /// `qwen2` (Qwen 2 and 2.5): NEOX RoPE, biases on q, k and v.
    Qwen2,
    /// `qwen3`: NEOX RoPE, RMS norms of each query and key head before RoPE.
    Qwen3,
    /// `gemma3`: NEOX RoPE, q/k norms, norms after attention and after the feed-forward network,
    /// GELU gate, embeddings scaled by `sqrt(n_embd)`, queries scaled before attention,
    /// sliding-window attention on most layers with their own RoPE base.
    Gemma3,
    /// `phi3` (Phi-3, Phi-3.5, Phi-4-mini): NEOX RoPE with LongRoPE's factors, fused `attn_qkv`
    /// and fused gate/up in `ffn_up`, queries scaled before attention.
    Phi3,
}

impl Family {
    /// Every family.
    pub const ALL: [Family; 5] = [
        Family::Llama,
        Family::Qwen2,
        Family::Qwen3,
        Family::Gemma3,
        Family::Phi3,
    ];

    /// The family of `general.architecture`, if supported.
    pub fn from_architecture(arch: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.architecture() == arch)
    }

    /// The `general.architecture` value (also the prefix of its metadata keys).
    pub fn architecture(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
            Family::Gemma3 => "gemma3",
            Family::Phi3 => "phi3",
        }
    }

    /// The RoPE pairing llama.cpp's `llama_model_rope_type` gives the architecture.
    pub fn rope_style(self) -> RopeStyle {
        match self {
            Family::Llama => RopeStyle::Adjacent,
            Family::Qwen2 | Family::Qwen3 | Family::Gemma3 | Family::Phi3 => RopeStyle::Halves,
        }
    }

    /// The gate's activation of the feed-forward network.
    pub fn activation(self) -> Activation {
        match self {
            Family::Gemma3 => Activation::Gelu,
            _ => Activation::Silu,
        }
    }

    /// Whether each query and key head is RMS-normalized (`attn_q_norm`, `attn_k_norm`) before
    /// RoPE.
    pub fn has_qk_norm(self) -> bool {
        matches!(self, Family::Qwen3 | Family::Gemma3)
    }

    /// Whether the attention and feed-forward outputs are RMS-normalized
    /// (`post_attention_norm`, `post_ffw_norm`) before their residual additions.
    pub fn has_post_norms(self) -> bool {
        matches!(self, Family::Gemma3)
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.architecture())
    }
}

/// The activation of the feed-forward network's gate: `down(act(gate · x) · up · x)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `silu(g) = g · sigmoid(g)`: SwiGLU (ggml's `swiglu`).
    Silu,
    /// The tanh approximation of GELU, `0.5 · g · (1 + tanh(sqrt(2/π) · (g + 0.044715 · g³)))`:
    /// GeGLU (ggml's `geglu`, which on the CPU looks GELU up in a table of f16 values).
    Gelu,
}

/// Where the attention's `1 / sqrt(d)` scale is applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AttentionScale {
    /// To the scores `q · k` inside the softmax (ggml's `soft_max_ext` scale).
    Scores(f32),
    /// To the queries before the attention (Gemma: `ggml_scale(Qcur, ·)`, softmax scale 1).
    Queries(f32),
}

impl AttentionScale {
    /// The scale.
    pub fn value(self) -> f32 {
        match self {
            AttentionScale::Scores(s) | AttentionScale::Queries(s) => s,
        }
    }
}

/// Sliding-window attention: a query at position `p` of a windowed layer sees the keys at
/// positions `p - size + 1 ..= p` (llama.cpp's `LLAMA_SWA_TYPE_STANDARD`).
#[derive(Debug, Clone, PartialEq)]
pub struct SlidingWindow {
    /// Positions seen, the query's own included.
    pub size: usize,
    /// Whether each layer is windowed (the others are global).
    pub layers: Vec<bool>,
    /// The RoPE base of the windowed layers.
    pub freq_base: f32,
    /// The linear position scale of the windowed layers.
    pub freq_scale: f32,
}

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
    /// Factor of the rotation's cosines and sines (`rope.scaling.attn_factor`, 1 without it;
    /// ggml's `mscale`).
    pub attn_factor: f32,
    /// YaRN's share of extrapolation (`1` with `rope.scaling.type = yarn`, else 0): pairs between
    /// YaRN's correction dimensions blend the scaled angle with the unscaled one.
    pub ext_factor: f32,
    /// YaRN's fast and slow correction betas (llama.cpp's defaults 32 and 1).
    pub yarn_beta: (f32, f32),
    /// The context length the RoPE was trained for before scaling
    /// (`rope.scaling.original_context_length`, else the context length); LongRoPE uses its
    /// long factors beyond it.
    pub original_context_length: usize,
}

/// Hyper-parameters of a model of one of the [`Family`]s.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// `general.architecture`.
    pub architecture: String,
    /// The family of the architecture.
    pub family: Family,
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
    /// The feed-forward gate's activation.
    pub activation: Activation,
    /// Factor of the token embeddings (Gemma: `sqrt(n_embd)`).
    pub embedding_scale: Option<f32>,
    /// The attention's scale and where it applies.
    pub attention_scale: AttentionScale,
    /// Sliding-window attention, if some layers use it.
    pub sliding_window: Option<SlidingWindow>,
    /// `cap · tanh(logits / cap)` on the output logits, if set.
    pub final_logit_softcapping: Option<f32>,
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
        let Some(family) = Family::from_architecture(&architecture) else {
            return Err(ModelError::UnsupportedArchitecture {
                arch: architecture,
                supported: SUPPORTED_ARCHITECTURES,
            });
        };
        let style = family.rope_style();
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
        // LongRoPE and YaRN scale like linear (LongRoPE's per-pair factors are tensors, loaded
        // with the weights; YaRN blends in the unscaled angles, see `ext_factor`).
        let freq_scale = match scaling.as_str() {
            "none" => 1.0,
            "linear" | "longrope" | "yarn" if factor == 0.0 => 1.0,
            "linear" | "longrope" | "yarn" => 1.0 / factor,
            _ => {
                return Err(invalid(
                    &type_key,
                    format!("unknown RoPE scaling type {scaling:?}"),
                ))
            }
        };

        let attn_factor_key = key(llm::ROPE_SCALING_ATTN_FACTOR);
        let key_attn_factor = optional_f32(&attn_factor_key)?.unwrap_or(1.0);
        if !(key_attn_factor.is_finite() && key_attn_factor > 0.0) {
            return Err(invalid(
                &attn_factor_key,
                format!("{key_attn_factor} is not a positive number"),
            ));
        }
        // llama.cpp's context (llama-context.cpp): YaRN extrapolates (ext_factor 1) and its
        // attention factor is `get_mscale(factor) / (1 + 0.1 ln factor)` (each `a·b + c` one fused
        // multiply-add, as GCC compiles it), times the file's attention factor.
        let ext_factor = if scaling == "yarn" { 1.0 } else { 0.0 };
        let attn_factor = if ext_factor != 0.0 {
            let factor = 1.0 / freq_scale;
            let mscale = if factor <= 1.0 {
                1.0
            } else {
                (0.1f32 * 1.0).mul_add(factor.ln(), 1.0)
            };
            mscale * (1.0 / 0.1f32.mul_add(factor.ln(), 1.0)) * key_attn_factor
        } else {
            key_attn_factor
        };
        let orig_key = key(llm::ROPE_SCALING_ORIG_CTX_LEN);
        let original_context_length = optional_usize(&orig_key, context_length)?;

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

        // Gemma's own parameters (llama.cpp's `llama_model_gemma3::load_arch_hparams`).
        let (mut sliding_window, mut final_logit_softcapping) = (None, None);
        let mut attention_scale = AttentionScale::Scores(1.0 / (key_length as f32).sqrt());
        let mut embedding_scale = None;
        if family == Family::Phi3 {
            // llama.cpp's phi3 graph: `ggml_scale(Qcur, 1/sqrt(head_dim))`, softmax scale 1; its
            // sliding window is disabled (`llama_model_phi3::load_arch_hparams`).
            attention_scale = AttentionScale::Queries(1.0 / (key_length as f32).sqrt());
        }
        if family == Family::Gemma3 {
            embedding_scale = Some((embedding_length as f32).sqrt());
            // 1/sqrt(n_embd / n_head) for the 27B model (62 layers), else 1/sqrt(key_length).
            let d = match block_count {
                62 => (embedding_length / head_count) as f32,
                _ => key_length as f32,
            };
            attention_scale = AttentionScale::Queries(1.0 / d.sqrt());
            let window_key = key(llm::SLIDING_WINDOW);
            let size = match md.contains(&window_key) {
                true => usize_of(&window_key)?,
                false => 0,
            };
            if size > 0 {
                let layers = swa_layers(md, &key(llm::SLIDING_WINDOW_PATTERN), block_count, 6)?;
                let base_key = key(llm::ROPE_FREQ_BASE_SWA);
                let freq_base = optional_f32(&base_key)?.unwrap_or(10000.0);
                if !(freq_base.is_finite() && freq_base > 0.0) {
                    return Err(invalid(
                        &base_key,
                        format!("{freq_base} is not a positive number"),
                    ));
                }
                sliding_window = Some(SlidingWindow {
                    size,
                    layers,
                    freq_base,
                    freq_scale: 1.0,
                });
            }
            let cap_key = key(llm::FINAL_LOGIT_SOFTCAPPING);
            final_logit_softcapping = match optional_f32(&cap_key)? {
                Some(0.0) => None,
                Some(c) if c.is_finite() && c > 0.0 => Some(c),
                Some(c) => return Err(invalid(&cap_key, format!("{c} is not a positive number"))),
                None => None,
            };
        }

        let config = LlamaConfig {
            architecture,
            family,
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
                attn_factor,
                ext_factor,
                yarn_beta: (32.0, 1.0),
                original_context_length,
            },
            vocab_size,
            activation: family.activation(),
            embedding_scale,
            attention_scale,
            sliding_window,
            final_logit_softcapping,
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
        let scale = self.attention_scale.value();
        if !(scale.is_finite() && scale > 0.0) {
            return Err(invalid(
                &key(llm::KEY_LENGTH),
                format!("gives the attention scale {scale}, not a positive number"),
            ));
        }
        if let Some(w) = &self.sliding_window {
            let window_key = key(llm::SLIDING_WINDOW);
            if w.size == 0 {
                return Err(invalid(&window_key, "must be positive".into()));
            }
            if w.layers.len() != self.block_count {
                return Err(invalid(
                    &key(llm::SLIDING_WINDOW_PATTERN),
                    format!("{} entries for {} layers", w.layers.len(), self.block_count),
                ));
            }
            if !(w.freq_base.is_finite()
                && w.freq_base > 0.0
                && w.freq_scale.is_finite()
                && w.freq_scale > 0.0)
            {
                return Err(invalid(
                    &key(llm::ROPE_FREQ_BASE_SWA),
                    format!(
                        "base {} and scale {} must be positive",
                        w.freq_base, w.freq_scale
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The sliding window of layer `layer` (positions seen), `None` for a global layer.
    pub fn window(&self, layer: usize) -> Option<usize> {
        let w = self.sliding_window.as_ref()?;
        w.layers
            .get(layer)
            .copied()
            .unwrap_or(false)
            .then_some(w.size)
    }

    /// Query heads per key/value head in layer `layer` (`n_head / n_head_kv`).
    pub fn group_size(&self, layer: usize) -> usize {
        self.head_count / self.head_count_kv[layer]
    }
}

/// Which of `n_layers` layers use the sliding window, from `key` (llama.cpp's
/// `load_swa_pattern`): one boolean per layer, or a period `n` (layer `i` is windowed unless
/// `i % n == n - 1`; 0: every layer), `default_period` when absent.
fn swa_layers(
    md: &gguf_importer::Metadata,
    key: &str,
    n_layers: usize,
    default_period: usize,
) -> Result<Vec<bool>, ModelError> {
    use gguf_importer::Value;
    if let Ok((_, values)) = md.get_array(key) {
        if values.len() != n_layers {
            return Err(invalid(
                key,
                format!("{} entries for {n_layers} layers", values.len()),
            ));
        }
        return values
            .iter()
            .map(|v| match v {
                Value::Bool(b) => Ok(*b),
                other => Err(invalid(key, format!("{other:?} is not a boolean"))),
            })
            .collect();
    }
    let period = match md.contains(key) {
        true => md.get_usize(key).map_err(ModelError::key(key))?,
        false => default_period,
    };
    Ok((0..n_layers)
        .map(|i| period == 0 || i % period < period - 1)
        .collect())
}

fn invalid(key: &str, reason: String) -> ModelError {
    ModelError::InvalidConfig {
        key: key.to_string(),
        reason,
    }
}
