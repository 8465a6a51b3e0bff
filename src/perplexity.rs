//! Perplexity of a model on a text, computed as llama.cpp's `perplexity` tool computes it
//! (`tools/perplexity/perplexity.cpp`, function `perplexity()`, default options).
//!
//! ```text
//! text ─ tokenize once (BOS per the file's add_bos_token, special-token text not parsed)
//!      ─ cut into n_windows = n_tokens / n_ctx non-overlapping windows of n_ctx tokens
//!        (the tail that fills no window is dropped; at least 2 windows are required)
//! per window, from an empty KV cache:
//!      ─ its first token replaced by BOS when the model adds BOS
//!      ─ logits of every position                                     [n_ctx, n_vocab]
//!      ─ only the second half scored: with first = n_ctx / 2, the logits of positions
//!        first .. n_ctx - 2 predict the tokens first + 1 .. n_ctx - 1  (n_ctx - 1 - first)
//!      ─ nll += -log softmax(logits)[next token], nll² += its square  (f64)
//! ppl = exp(nll / count), reported after every window (the running perplexity) and at the end
//! with its standard error ppl · sqrt((mean(nll²) − mean(nll)²) / (count − 1)).
//! ```
//!
//! Windows are independent, so `batch` of them go through one [`Llama::forward`] call with a
//! KV cache of that batch size (llama.cpp does the same with `-b` larger than `-c`, one sequence
//! per window). The result does not depend on `batch` beyond f32 summation order.
//!
//! The log-softmax is computed on the host, in the same precision as perplexity.cpp's
//! `log_softmax`: the maximum subtracted in f32, `exp` in f32, their sum in f64. That needs the
//! scored half of the logits read back (`batch · n_ctx/2 · n_vocab` f32 per forward pass, 25 MB
//! per window for a 49152-token vocabulary at n_ctx 256), which costs little next to the forward
//! pass that produced them, and keeps the sum over the vocabulary in f64 on every device, so the
//! result is llama.cpp's up to the logits themselves.

use std::time::Instant;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::model::{CacheTypes, KvCache, Llama, Logits};
use crate::tokenizer::Tokenizer;

/// How to cut and batch the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerplexityConfig {
    /// Tokens per window (llama.cpp's `-c`). At least 3 (so that each window scores a token)
    /// and at most the model's context length.
    pub n_ctx: usize,
    /// Windows per forward pass (the last pass may hold fewer). At least 1.
    pub batch: usize,
    /// Score only the first this many windows (llama.cpp's `--chunks`); `None`: all.
    pub max_windows: Option<usize>,
    /// How the KV cache stores keys and values (f16 by default, as llama-perplexity's).
    pub cache: CacheTypes,
}

impl PerplexityConfig {
    /// Windows of `n_ctx` tokens, one per forward pass, all of them.
    pub fn new(n_ctx: usize) -> PerplexityConfig {
        PerplexityConfig {
            n_ctx,
            batch: 1,
            max_windows: None,
            cache: CacheTypes::default(),
        }
    }
}

/// Reported after every scored window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Windows scored so far (1-based: the window just scored).
    pub window: usize,
    /// Windows in all.
    pub n_windows: usize,
    /// exp(mean nll) over the windows scored so far (llama.cpp's `[i]ppl` line).
    pub running_ppl: f64,
    /// Tokens run through the model so far (`window · n_ctx`).
    pub tokens_evaluated: usize,
    /// Seconds since the first forward pass started.
    pub elapsed_s: f64,
}

/// The result of [`perplexity`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Perplexity {
    /// exp(mean nll): the final estimate.
    pub ppl: f64,
    /// The standard error of `ppl` as llama.cpp estimates it; `None` when the variance of the
    /// nll is not positive (llama.cpp then prints an error instead).
    pub ppl_stderr: Option<f64>,
    /// Mean negative log-likelihood per scored token (nats).
    pub mean_nll: f64,
    /// The running perplexity after each window.
    pub running_ppl: Vec<f64>,
    /// Tokens in the text (BOS included).
    pub n_tokens: usize,
    /// Windows scored.
    pub n_windows: usize,
    /// Tokens per window.
    pub n_ctx: usize,
    /// Tokens scored (`n_windows · (n_ctx − 1 − n_ctx/2)`).
    pub scored_tokens: usize,
    /// Seconds spent in forward passes and scoring (tokenization excluded).
    pub seconds: f64,
}

impl Perplexity {
    /// Tokens run through the model per second (`n_windows · n_ctx / seconds`).
    pub fn tokens_per_s(&self) -> f64 {
        (self.n_windows * self.n_ctx) as f64 / self.seconds.max(f64::MIN_POSITIVE)
    }
}

/// What makes a perplexity run impossible, found before any forward pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PerplexityError {
    /// Fewer than two windows' worth of tokens (llama.cpp refuses these too).
    #[error(
        "the text tokenizes to {n_tokens} tokens; perplexity with a context of {n_ctx} needs at least {needed} (2 windows)"
    )]
    TextTooShort {
        n_tokens: usize,
        n_ctx: usize,
        needed: usize,
    },
    /// A window too short to score a token: the second half of a window of `n_ctx` tokens
    /// predicts `n_ctx − 1 − n_ctx/2` tokens.
    #[error("a context of {n_ctx} tokens scores no token; it must be at least {min}")]
    ContextTooSmall { n_ctx: usize, min: usize },
    /// A window longer than the model's context.
    #[error(
        "a context of {n_ctx} tokens is larger than the model's context length {context_length}"
    )]
    ContextTooLarge { n_ctx: usize, context_length: usize },
    /// A token id the model has no logit for.
    #[error("token {token} at index {index} is outside the model's vocabulary 0..{n_vocab}")]
    TokenOutOfVocab {
        index: usize,
        token: u32,
        n_vocab: usize,
    },
    /// `batch` or `max_windows` is 0.
    #[error("{what} must be at least 1")]
    Zero { what: &'static str },
    /// The vocabulary appends EOS to the text (llama.cpp's perplexity asserts it does not).
    #[error("the tokenizer adds EOS to every text, which perplexity windows cannot hold")]
    AddsEos,
}

/// The smallest window that scores a token.
const MIN_CTX: usize = 3;

/// The text's tokens as llama.cpp's perplexity tokenizes them: the special tokens the file adds
/// (BOS per `add_bos_token`), special-token text in the input not parsed.
pub fn tokenize(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    if tokenizer.add_eos() {
        return Err(PerplexityError::AddsEos.into());
    }
    Ok(tokenizer.encode(text, true, false))
}

/// Perplexity of `model` on `text`: [`tokenize`], then [`perplexity`] with BOS at the start of
/// each window when the tokenizer adds BOS.
pub fn perplexity_of_text(
    model: &Llama,
    tokenizer: &Tokenizer,
    text: &str,
    config: &PerplexityConfig,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<Perplexity> {
    let tokens = tokenize(tokenizer, text)?;
    let bos = if tokenizer.add_bos() {
        tokenizer.bos_id()
    } else {
        None
    };
    perplexity(model, &tokens, bos, config, on_progress)
}

/// Perplexity of `model` on `tokens` (the whole text, BOS included if the model adds one), with
/// the first token of every window replaced by `bos` when given. See the module docs.
pub fn perplexity(
    model: &Llama,
    tokens: &[u32],
    bos: Option<u32>,
    config: &PerplexityConfig,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<Perplexity> {
    let c = model.config();
    config.cache.check(c.key_length)?;
    let n_windows = check(model, tokens, config)?;
    let n_ctx = config.n_ctx;
    let first = n_ctx / 2;
    let n_scored = n_ctx - 1 - first; // scored tokens per window

    let mut nll = 0f64;
    let mut nll2 = 0f64;
    let mut count = 0usize;
    let mut running_ppl = Vec::with_capacity(n_windows);
    let mut cache: Option<KvCache> = None;
    let start = Instant::now();

    for batch_start in (0..n_windows).step_by(config.batch) {
        let b = config.batch.min(n_windows - batch_start);

        // The windows of this pass, row-major, each beginning with BOS if the model adds one.
        let mut ids: Vec<u32> = Vec::with_capacity(b * n_ctx);
        for w in batch_start..batch_start + b {
            let window = &tokens[w * n_ctx..(w + 1) * n_ctx];
            ids.push(bos.unwrap_or(window[0]));
            ids.extend_from_slice(&window[1..]);
        }

        // A fresh (or reset) cache per pass: every window starts at position 0.
        let cache = match &mut cache {
            Some(c) if c.batch() == b => {
                c.reset();
                c
            }
            slot => slot.insert(model.new_cache_with(b, n_ctx, config.cache)),
        };
        let logits = model.forward_ids(&ids, b, cache, Logits::All)?; // [b, n_ctx, n_vocab]
        let n_vocab = logits.dims()[2];
        let scored = logits
            .narrow(1, first, n_scored) // [b, n_scored, n_vocab]
            .try_into_data()
            .map_err(|e| format!("{e}"))
            .and_then(|d| d.try_into_vec::<f32>().map_err(|e| format!("{e:?}")))
            .map_err(|reason| Error::Readback {
                what: "perplexity logits",
                reason,
            })?;

        for (k, w) in (batch_start..batch_start + b).enumerate() {
            let rows = &scored[k * n_scored * n_vocab..(k + 1) * n_scored * n_vocab];
            let targets = &tokens[w * n_ctx + first + 1..(w + 1) * n_ctx];
            let values: Vec<f64> = rows
                .par_chunks_exact(n_vocab)
                .zip(targets.par_iter())
                .map(|(row, &t)| token_nll(row, t as usize))
                .collect();
            // Summed in token order, so the result does not depend on the thread count.
            for v in values {
                nll += v;
                nll2 += v * v;
            }
            count += n_scored;
            let ppl = (nll / count as f64).exp();
            running_ppl.push(ppl);
            on_progress(Progress {
                window: w + 1,
                n_windows,
                running_ppl: ppl,
                tokens_evaluated: (w + 1) * n_ctx,
                elapsed_s: start.elapsed().as_secs_f64(),
            });
        }
    }

    let seconds = start.elapsed().as_secs_f64();
    let count_f = count as f64;
    let mean_nll = nll / count_f;
    let variance = nll2 / count_f - mean_nll * mean_nll;
    let ppl = mean_nll.exp();
    let ppl_stderr = (variance > 0.0).then(|| ppl * (variance / (count_f - 1.0)).sqrt());
    Ok(Perplexity {
        ppl,
        ppl_stderr,
        mean_nll,
        running_ppl,
        n_tokens: tokens.len(),
        n_windows,
        n_ctx,
        scored_tokens: count,
        seconds,
    })
}

/// Validates the configuration against the model and the text; returns the number of windows.
fn check(
    model: &Llama,
    tokens: &[u32],
    config: &PerplexityConfig,
) -> Result<usize, PerplexityError> {
    let n_tokens = tokens.len();
    let n_ctx = config.n_ctx;
    if n_ctx < MIN_CTX {
        return Err(PerplexityError::ContextTooSmall {
            n_ctx,
            min: MIN_CTX,
        });
    }
    let context_length = model.config().context_length;
    if n_ctx > context_length {
        return Err(PerplexityError::ContextTooLarge {
            n_ctx,
            context_length,
        });
    }
    if config.batch == 0 {
        return Err(PerplexityError::Zero { what: "batch" });
    }
    if config.max_windows == Some(0) {
        return Err(PerplexityError::Zero {
            what: "max_windows",
        });
    }
    let needed = 2 * n_ctx;
    if n_tokens < needed {
        return Err(PerplexityError::TextTooShort {
            n_tokens,
            n_ctx,
            needed,
        });
    }
    let n_windows = n_tokens / n_ctx;
    let n_windows = config.max_windows.map_or(n_windows, |m| m.min(n_windows));
    // Every token of the windows is an input and (but for the first) may be a target.
    let n_vocab = model.config().vocab_size;
    if let Some((index, &token)) = tokens[..n_windows * n_ctx]
        .iter()
        .enumerate()
        .find(|(_, &t)| t as usize >= n_vocab)
    {
        return Err(PerplexityError::TokenOutOfVocab {
            index,
            token,
            n_vocab,
        });
    }
    Ok(n_windows)
}

/// −log softmax(row)[target], as perplexity.cpp's `log_softmax`: the maximum subtracted in f32,
/// `exp` in f32, the sum in f64 (stable: every exponent is ≤ 0, the largest is exactly 1).
///
/// `target` must be a valid index of `row` ([`perplexity`] checks every token id against the
/// vocabulary before running).
pub fn token_nll(row: &[f32], target: usize) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum_exp: f64 = row.iter().map(|&x| (x - max).exp() as f64).sum();
    -(((row[target] - max) as f64) - sum_exp.ln())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_nll_is_log_sum_exp_minus_the_logit() {
        // Uniform logits: -log(1/4).
        assert!((token_nll(&[2.0; 4], 1) - 4f64.ln()).abs() < 1e-12);
        // Large logits do not overflow: softmax([1000, 0]) picks 0 with probability ~1.
        assert!(token_nll(&[1000.0, 0.0], 0).abs() < 1e-12);
        assert!((token_nll(&[1000.0, 0.0], 1) - 1000.0).abs() < 1e-9);
        // ln(e^1 + e^2 + e^3) - 2, by hand.
        let expected = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln() - 2.0;
        assert!((token_nll(&[1.0, 2.0, 3.0], 1) - expected).abs() < 1e-6);
    }
}
