//! The model as a Burn module, built from a GGUF file: llama.cpp's `llama` architecture and the
//! families that change its block ([`Family`]: `qwen2`, `qwen3`, `gemma3`, `phi3`).
//!
//! ```text
//! tokens [batch, seq]
//!   └ token_embd row gather (· sqrt(n_embd): gemma3)   embd, inp_scaled [batch, seq, n_embd]
//!   └ n_layer × Block:
//!       h = attn_norm(x)                               attn_norm-i
//!       q, k, v = wq·h (+bq), wk·h (+bk), wv·h (+bv)   (biases: qwen2)
//!       q, k = q_norm(q), k_norm(k) per head           Qcur_normed-i, Kcur_normed-i (qwen3, gemma3)
//!       q, k = RoPE(q), RoPE(k)                        Qcur-i, Vcur-i, Kcur-i
//!       a = wo · GQA attention(q, k, v; cache)         kqv_out-i (before wo), attn_out-i
//!       a = attn_post_norm(a)                          attn_post_norm-i (gemma3)
//!       x = x + a                                      ffn_inp-i (gemma3: sa_out-i)
//!       h = ffn_norm(x)                                ffn_norm-i
//!       f = down(act(gate·h) · up·h)                   ffn_gate-i, ffn_up-i, ffn_swiglu-i | ffn_geglu-i, ffn_out-i
//!       f = ffn_post_norm(f)                           ffn_post_norm-i (gemma3)
//!       x = x + f                                      l_out-i
//!   └ output_norm                                      result_norm
//!   └ output (or the tied token embedding)             result_output [batch, seq, n_vocab]
//! ```
//!
//! The names on the right are llama.cpp's for the same tensors (its eval callback's), under
//! which [`Llama::forward_traced`] reports them (through the pass's [`ForwardContext`]).
//!
//! - [`config`]: [`LlamaConfig::from_gguf`], the metadata keys it reads, and the family
//!   description ([`Family`]: RoPE pairing, activation, scales, sliding window).
//! - [`tensors`]: the table of a block's tensors per family ([`LayerMatrix`], [`LayerNorm`],
//!   [`BlockTensor::of`]): GGUF names, module paths, shapes, fused tensors, LoRA targets; what
//!   loading, records, export and LoRA read.
//! - [`load`]: [`Llama::from_gguf`], the tensor names and shapes; weights kept in their blocks or
//!   dequantized to f32 ([`Weights`]).
//! - [`llama`]: the [`Llama`] module and its forward pass (one implementation, traced or not).
//! - [`embedding`], [`block`], [`attention`], [`feed_forward`], [`norm`], [`linear`]: the layers,
//!   written as their formulas with [`ops`].
//! - [`weight`]: a matrix dense or in its GGUF blocks ([`Weight`]).
//! - [`ops`]: the operations the layers are written in, each on ggml's CPU kernels (llama.cpp's
//!   order, bit for bit) on the CPU devices and on Burn's ops elsewhere: the one place that
//!   chooses per device.
//! - [`context`]: the state of one forward pass ([`ForwardContext`]: RoPE tables, KV cache,
//!   masks, block, trace hook).
//! - [`rope`]: rotary embedding (adjacent pairs for `llama`, halves for NEOX-style).
//! - [`kv_cache`]: the [`KvCache`].
//! - [`record`]: [`Llama::save_record`] / [`Llama::load_record`], a burnpack file without the GGUF.
//! - [`export`]: [`Llama::save_gguf`], the model as a GGUF file in F32, F16, BF16, Q8_0,
//!   Q4_0, Q5_0, Q5_1 or llama.cpp's K-quant mixes (Q2_K .. Q6_K), as llama.cpp's quantizer writes it.
//! - [`lora`]: LoRA adapters on the projections ([`Llama::with_lora`], [`Llama::merge_lora`])
//!   for fine-tuning on the frozen (quantized) base.
//!
//! Dimension order: every weight has the row-major shape of ggml's `ne` reversed (see
//! `gguf_importer::burn`); a linear weight is `[n_out, n_in]` and computes `y = x · Wᵀ`.

pub mod attention;
pub mod block;
pub mod config;
pub mod context;
pub mod embedding;
pub mod error;
pub mod export;
pub mod feed_forward;
pub mod kv_cache;
pub mod linear;
pub mod llama;
pub mod load;
pub mod lora;
pub mod norm;
pub mod ops;
pub mod record;
pub mod rope;
pub mod tensors;
pub mod weight;

pub use config::{
    Activation, AttentionScale, Family, LlamaConfig, RopeConfig, RopeStyle, SlidingWindow,
};
pub use context::ForwardContext;
pub use embedding::Embedding;
pub use error::ModelError;
pub use export::{ExportError, ExportType};
pub use kv_cache::{CacheTypes, KvCache, KvType};
pub use llama::{Llama, Logits, SeqStep, UBATCH};
pub use load::Weights;
pub use lora::{LoraAdapter, LoraConfig, LoraTarget};
pub use record::RecordError;
pub use rope::Rope;
pub use tensors::{BlockTensor, LayerMatrix, LayerNorm};
pub use weight::Weight;
