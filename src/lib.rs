//! Run GGUF Llama models (llama.cpp's format) as Burn modules, on wgpu and on CPU devices.
//!
//! - [`gguf`]: the GGUF importer (reading, writing, dequantization; crate `gguf-importer`).
//! - [`device`]: devices by name, with errors instead of panics when one is missing.
//! - [`model`]: the Llama module, its config from GGUF metadata, the KV cache.
//! - [`tokenizer`]: llama.cpp's SentencePiece and byte-level BPE tokenizers from GGUF metadata.
//! - [`chat`]: chat templates from the file, rendered with minijinja.
//! - [`sampling`]: greedy, temperature, top-k, top-p, min-p, repetition penalty, seeded.
//! - [`generate`]: the prompt in one pass, then token by token through the KV cache.
//! - [`perplexity`]: perplexity of a text as llama.cpp's `perplexity` tool computes it, windows
//!   batched.
//! - [`finetune`]: the next-token loss and token windows of a fine-tuning loop (LoRA adapters:
//!   [`model::lora`]).
//! - [`serve`]: an OpenAI-compatible HTTP server with continuous batching (feature `serve`).
//! - [`cli`]: what the examples share (the embedded default model, prompt building).

pub mod chat;
pub mod cli;
pub mod device;
pub mod error;
pub mod finetune;
pub mod generate;
pub mod model;
pub mod perplexity;
pub mod sampling;
#[cfg(feature = "serve")]
pub mod serve;
pub mod tokenizer;

pub use error::{Error, Result};

/// The GGUF importer, re-exported.
pub use gguf_importer as gguf;
