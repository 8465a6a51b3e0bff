//! Generation: the prompt through one forward pass, then tokens one by one through the KV cache,
//! sampled, detokenized as a stream of valid UTF-8, with timings.

use std::time::Instant;

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::error::{Error, Result};
use crate::model::{CacheTypes, KvCache, Llama, Logits};
use crate::sampling::{Sampler, SamplerConfig};
use crate::tokenizer::{Detokenizer, Tokenizer};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateConfig {
    /// Tokens to generate at most.
    pub max_tokens: usize,
    /// The sampler (temperature 0 = greedy).
    pub sampler: SamplerConfig,
    /// Stop at an end-of-generation token (EOS, EOT ...), as llama.cpp does. The token is not
    /// printed.
    pub stop_at_eog: bool,
    /// How the KV cache stores keys and values (llama.cpp's `--cache-type-k/-v`; f16 by
    /// default, as llama.cpp's).
    pub cache: CacheTypes,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        Self {
            max_tokens: 128,
            sampler: SamplerConfig::default(),
            stop_at_eog: true,
            cache: CacheTypes::default(),
        }
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model produced an end-of-generation token.
    EndOfGeneration,
    /// `max_tokens` were generated.
    MaxTokens,
    /// The context (or KV cache) is full.
    ContextFull,
}

/// Where the time went.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Timings {
    pub prompt_tokens: usize,
    /// The prompt's forward pass, including reading back the last position's logits.
    pub prompt_s: f64,
    pub generated_tokens: usize,
    /// Every decode step after the prompt: forward, readback, sampling.
    pub generation_s: f64,
}

impl Timings {
    pub fn prompt_tok_s(&self) -> f64 {
        self.prompt_tokens as f64 / self.prompt_s.max(f64::MIN_POSITIVE)
    }
    /// Decode throughput: tokens after the first (which comes from the prompt pass) per second.
    pub fn generation_tok_s(&self) -> f64 {
        self.generated_tokens.saturating_sub(1) as f64 / self.generation_s.max(f64::MIN_POSITIVE)
    }
}

/// The result of [`generate`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct Generation {
    pub prompt_tokens: Vec<u32>,
    /// Generated tokens (an end-of-generation token that stopped it is not included).
    pub tokens: Vec<u32>,
    pub text: String,
    pub stop: StopReason,
    pub timings: Timings,
}

/// Token ids as a `[1, n]` tensor on `device`, the input of [`Llama::forward`].
pub fn token_tensor(ids: &[u32], device: &Device) -> Tensor<2, Int> {
    let data: Vec<i64> = ids.iter().map(|&t| t as i64).collect();
    Tensor::from_data(TensorData::new(data, [1, ids.len()]), device)
}

/// The logits of the last position of `[1, seq, n_vocab]`, on the host.
pub fn last_logits(logits: Tensor<3>) -> Result<Vec<f32>> {
    let [_, seq, vocab] = logits.dims();
    logits
        .slice([0..1, seq - 1..seq, 0..vocab])
        .try_into_data()
        .map_err(|e| format!("{e}"))
        .and_then(|d| d.try_into_vec::<f32>().map_err(|e| format!("{e:?}")))
        .map_err(|reason| Error::Readback {
            what: "logits",
            reason,
        })
}

/// Generates from `prompt` (token ids, BOS included if wanted), calling `on_text` with each newly
/// complete piece of text.
///
/// The KV cache is sized to the prompt plus `max_tokens`, capped by the model's context length;
/// a prompt that does not fit the context is an error ([`crate::model::ModelError::ContextOverflow`]),
/// and generation that reaches the end of the context stops with [`StopReason::ContextFull`].
pub fn generate(
    model: &Llama,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    config: &GenerateConfig,
    on_text: &mut dyn FnMut(&str),
) -> Result<Generation> {
    if prompt.is_empty() {
        return Err(Error::EmptyPrompt);
    }
    let c = model.config();
    config.cache.check(c.key_length)?;
    let context = c.context_length;
    let capacity = (prompt.len() + config.max_tokens)
        .min(context)
        .max(prompt.len());
    let mut cache: KvCache = model.new_cache_with(1, capacity, config.cache);
    let mut sampler = Sampler::new(config.sampler)?;
    let mut detok = Detokenizer::new(false);
    let mut history: Vec<u32> = prompt.to_vec();
    let mut tokens = Vec::new();
    let mut text = String::new();
    let mut timings = Timings {
        prompt_tokens: prompt.len(),
        ..Timings::default()
    };

    // The prompt, in one forward pass.
    let start = Instant::now();
    let mut logits = last_logits(model.forward_ids(prompt, 1, &mut cache, Logits::Last)?)?;
    timings.prompt_s = start.elapsed().as_secs_f64();

    // Then one token at a time.
    let start = Instant::now();
    let stop = loop {
        if tokens.len() >= config.max_tokens {
            break StopReason::MaxTokens;
        }
        let next = sampler.sample(&logits, &history)?;
        if config.stop_at_eog && tokenizer.is_eog(next) {
            break StopReason::EndOfGeneration;
        }
        tokens.push(next);
        history.push(next);
        let piece = detok.push(tokenizer, next);
        if !piece.is_empty() {
            on_text(&piece);
            text.push_str(&piece);
        }
        if tokens.len() >= config.max_tokens {
            break StopReason::MaxTokens;
        }
        if cache.len() >= capacity {
            break StopReason::ContextFull;
        }
        logits = last_logits(model.forward_ids(&[next], 1, &mut cache, Logits::Last)?)?;
    };
    let rest = detok.finish();
    if !rest.is_empty() {
        on_text(&rest);
        text.push_str(&rest);
    }
    timings.generated_tokens = tokens.len();
    timings.generation_s = start.elapsed().as_secs_f64();
    Ok(Generation {
        prompt_tokens: prompt.to_vec(),
        tokens,
        text,
        stop,
        timings,
    })
}
