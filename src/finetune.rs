//! What a fine-tuning loop needs besides the model and Burn's optimizers: the next-token loss of
//! a batch of token windows, and a seeded stream of such windows cut from a tokenized text.
//!
//! ```text
//! text ─ tokenize once ─ tokens t₀ … t_N
//! TokenWindows::next_batch: `batch` windows of seq + 1 tokens at seeded random offsets
//! next_token_loss: logits of positions 0 … seq-1 (one forward pass, fresh KV cache)
//!                  loss = mean over batch and positions of −log softmax(logits)[next token]
//! ```
//!
//! With adapters on the autodiff device ([`Llama::with_lora`]), `loss.backward()` gives their
//! gradients; `examples/finetune.rs` runs the whole loop with Burn's Adam.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::model::{CacheTypes, Llama, ModelError};

/// The mean next-token cross-entropy (nats) of `tokens` `[batch, seq + 1]`: the logits of
/// positions `0 .. seq` against the tokens `1 ..= seq`, from an empty KV cache. A scalar `[1]`,
/// on the autodiff device when the model has adapters there.
pub fn next_token_loss(model: &Llama, tokens: Tensor<2, Int>) -> Result<Tensor<1>, ModelError> {
    let [batch, len] = tokens.dims();
    if len < 2 {
        return Err(ModelError::InvalidInput {
            what: format!("a loss needs windows of at least 2 tokens, got {len}"),
        });
    }
    let seq = len - 1;
    let inputs = tokens.clone().narrow(1, 0, seq); // [batch, seq]
                                                   // An f32 cache: the loss and its gradients in f32 (one pass, no cache kept).
    let mut cache = model.new_cache_with(batch, seq, CacheTypes::F32);
    let logits = model.forward(inputs, &mut cache)?; // [batch, seq, n_vocab]
    let targets = tokens
        .narrow(1, 1, seq)
        .to_device(&logits.device())
        .reshape([batch, seq, 1]);
    let logp = log_softmax(logits, 2).gather(2, targets); // [batch, seq, 1]
    Ok(logp.mean().neg())
}

/// Windows of `len` consecutive tokens at seeded random offsets of a token stream.
#[derive(Debug, Clone)]
pub struct TokenWindows {
    tokens: Vec<u32>,
    len: usize,
    rng: ChaCha8Rng,
}

impl TokenWindows {
    /// Windows of `len` tokens (a loss window: seq + 1) out of `tokens`, drawn by a ChaCha8
    /// stream seeded with `seed` (the same windows on every run and device).
    pub fn new(tokens: Vec<u32>, len: usize, seed: u64) -> Result<TokenWindows, ModelError> {
        if len < 2 || tokens.len() < len {
            return Err(ModelError::InvalidInput {
                what: format!(
                    "windows of {len} tokens out of a text of {} tokens (need at least 2, and \
                     no more than the text)",
                    tokens.len()
                ),
            });
        }
        Ok(TokenWindows {
            tokens,
            len,
            rng: ChaCha8Rng::seed_from_u64(seed),
        })
    }

    /// Tokens per window.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a window holds at least 2 tokens.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The next `batch` windows, `[batch, len]` on `device`.
    pub fn next_batch(&mut self, batch: usize, device: &Device) -> Tensor<2, Int> {
        let starts = self.tokens.len() - self.len + 1;
        let mut data = Vec::with_capacity(batch * self.len);
        for _ in 0..batch {
            let start = (self.rng.next_u64() % starts as u64) as usize;
            data.extend(
                self.tokens[start..start + self.len]
                    .iter()
                    .map(|&t| t as i64),
            );
        }
        Tensor::from_data(TensorData::new(data, [batch, self.len]), device)
    }
}
