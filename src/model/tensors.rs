//! The table of a transformer block's tensors, the one list that loading, Burn records, GGUF
//! export and LoRA read:
//!
//! | tensor ([`BlockTensor::ALL`]) | GGUF name (`blk.{i}.…`) | module path (`blocks.{i}.…`) | shape `[rows, cols]`                  | LoRA | fused in       |
//! |-------------------------------|-------------------------|------------------------------|---------------------------------------|------|----------------|
//! | [`LayerNorm::Attn`]           | `attn_norm.weight`      | `attn_norm`                  | `[n_embd]`                            |      |                |
//! | [`LayerMatrix::AttnQ`]        | `attn_q.weight`         | `attn.q`                     | `[n_head · key_length, n_embd]`       | `q`  | `attn_qkv` (1st) |
//! | [`LayerMatrix::AttnK`]        | `attn_k.weight`         | `attn.k`                     | `[n_head_kv · key_length, n_embd]`    | `k`  | `attn_qkv` (2nd) |
//! | [`LayerMatrix::AttnV`]        | `attn_v.weight`         | `attn.v`                     | `[n_head_kv · value_length, n_embd]`  | `v`  | `attn_qkv` (3rd) |
//! | [`LayerMatrix::AttnOutput`]   | `attn_output.weight`    | `attn.output`                | `[n_embd, n_head · value_length]`     | `o`  |                |
//! | [`LayerNorm::Ffn`]            | `ffn_norm.weight`       | `ffn_norm`                   | `[n_embd]`                            |      |                |
//! | [`LayerMatrix::FfnGate`]      | `ffn_gate.weight`       | `ffn.gate`                   | `[n_ff, n_embd]`                      | `gate` | `ffn_up` (1st, phi3) |
//! | [`LayerMatrix::FfnUp`]        | `ffn_up.weight`         | `ffn.up`                     | `[n_ff, n_embd]`                      | `up` | `ffn_up` (2nd, phi3) |
//! | [`LayerMatrix::FfnDown`]      | `ffn_down.weight`       | `ffn.down`                   | `[n_embd, n_ff]`                      | `down` |              |
//!
//! Families other than Llama add norms ([`BlockTensor::of`]):
//!
//! | tensor                   | GGUF name (`blk.{i}.…`)        | module path           | shape          | families        |
//! |--------------------------|--------------------------------|-----------------------|----------------|-----------------|
//! | [`LayerNorm::AttnQ`]     | `attn_q_norm.weight`           | `attn.q_norm`         | `[key_length]` | qwen3, gemma3   |
//! | [`LayerNorm::AttnK`]     | `attn_k_norm.weight`           | `attn.k_norm`         | `[key_length]` | qwen3, gemma3   |
//! | [`LayerNorm::AttnPost`]  | `post_attention_norm.weight`   | `attn_post_norm`      | `[n_embd]`     | gemma3          |
//! | [`LayerNorm::FfnPost`]   | `post_ffw_norm.weight`         | `ffn_post_norm`       | `[n_embd]`     | gemma3          |
//!
//! Every tensor of a family's table is required, as llama.cpp requires it (a matrix in its own
//! tensor or in its fused one); each matrix takes an optional `.bias` `[rows]` (Qwen2's q, k and
//! v have one). The order of [`BlockTensor::of`] is llama.cpp's for Llama (its graph's and its
//! quantizer's); [`LayerMatrix::ALL`] is the matrices in that order, the order of a record's
//! description of a block.
//!
//! A block is built from this table by [`crate::model::block::Block::build`], from any
//! [`BlockSource`] (the GGUF loader, a record's skeleton), and read back by matrix
//! ([`crate::model::block::Block::linear`]).

use std::fmt;
use std::str::FromStr;

use crate::model::config::{Family, LlamaConfig};
use crate::model::linear::Linear;
use crate::model::norm::RmsNorm;

/// A weight matrix of a transformer block: the weight of one of its linear layers. Also the
/// targets of LoRA adapters ([`crate::model::lora::LoraTarget`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerMatrix {
    AttnQ,
    AttnK,
    AttnV,
    AttnOutput,
    FfnGate,
    FfnUp,
    FfnDown,
}

/// A GGUF tensor that holds the rows of several matrices stacked, in the order of `parts`
/// (llama.cpp's fused projections), used when the file has no tensor of the first part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fused {
    /// The tensor name's stem.
    pub stem: &'static str,
    /// The matrices whose rows it stacks.
    pub parts: &'static [LayerMatrix],
}

/// `attn_qkv`: the q, k and v rows.
pub const ATTN_QKV: Fused = Fused {
    stem: "attn_qkv",
    parts: &[LayerMatrix::AttnQ, LayerMatrix::AttnK, LayerMatrix::AttnV],
};

/// `ffn_up` of Phi-3 files (`[2 · n_ff, n_embd]`, no `ffn_gate`): the gate's rows, then the up
/// projection's (ggml's `swiglu` of the fused row takes its first half as the gate).
pub const FFN_GATE_UP: Fused = Fused {
    stem: "ffn_up",
    parts: &[LayerMatrix::FfnGate, LayerMatrix::FfnUp],
};

impl LayerMatrix {
    /// Every matrix of a block, in llama.cpp's order.
    pub const ALL: [LayerMatrix; 7] = [
        LayerMatrix::AttnQ,
        LayerMatrix::AttnK,
        LayerMatrix::AttnV,
        LayerMatrix::AttnOutput,
        LayerMatrix::FfnGate,
        LayerMatrix::FfnUp,
        LayerMatrix::FfnDown,
    ];
    /// The attention matrices.
    pub const ATTENTION: [LayerMatrix; 4] = [
        LayerMatrix::AttnQ,
        LayerMatrix::AttnK,
        LayerMatrix::AttnV,
        LayerMatrix::AttnOutput,
    ];
    /// The feed-forward matrices.
    pub const FEED_FORWARD: [LayerMatrix; 3] = [
        LayerMatrix::FfnGate,
        LayerMatrix::FfnUp,
        LayerMatrix::FfnDown,
    ];

    /// The GGUF tensor name's stem: `attn_q`, …, `ffn_down`.
    pub fn stem(self) -> &'static str {
        match self {
            LayerMatrix::AttnQ => "attn_q",
            LayerMatrix::AttnK => "attn_k",
            LayerMatrix::AttnV => "attn_v",
            LayerMatrix::AttnOutput => "attn_output",
            LayerMatrix::FfnGate => "ffn_gate",
            LayerMatrix::FfnUp => "ffn_up",
            LayerMatrix::FfnDown => "ffn_down",
        }
    }

    /// The linear layer's path in the block module (and its record): `attn.q`, …, `ffn.down`.
    pub fn module_path(self) -> &'static str {
        match self {
            LayerMatrix::AttnQ => "attn.q",
            LayerMatrix::AttnK => "attn.k",
            LayerMatrix::AttnV => "attn.v",
            LayerMatrix::AttnOutput => "attn.output",
            LayerMatrix::FfnGate => "ffn.gate",
            LayerMatrix::FfnUp => "ffn.up",
            LayerMatrix::FfnDown => "ffn.down",
        }
    }

    /// The short name (LoRA's target names, as PEFT's `target_modules`): `q`, `k`, `v`, `o`,
    /// `gate`, `up`, `down`.
    pub fn name(self) -> &'static str {
        match self {
            LayerMatrix::AttnQ => "q",
            LayerMatrix::AttnK => "k",
            LayerMatrix::AttnV => "v",
            LayerMatrix::AttnOutput => "o",
            LayerMatrix::FfnGate => "gate",
            LayerMatrix::FfnUp => "up",
            LayerMatrix::FfnDown => "down",
        }
    }

    /// The row-major shape `[n_out, n_in]` of the matrix in block `layer` of a model of `config`.
    pub fn shape(self, config: &LlamaConfig, layer: usize) -> [usize; 2] {
        let n_embd = config.embedding_length;
        let (n_head, n_kv) = (config.head_count, config.head_count_kv[layer]);
        let (dk, dv) = (config.key_length, config.value_length);
        let n_ff = config.feed_forward_length;
        match self {
            LayerMatrix::AttnQ => [n_head * dk, n_embd],
            LayerMatrix::AttnK => [n_kv * dk, n_embd],
            LayerMatrix::AttnV => [n_kv * dv, n_embd],
            LayerMatrix::AttnOutput => [n_embd, n_head * dv],
            LayerMatrix::FfnGate | LayerMatrix::FfnUp => [n_ff, n_embd],
            LayerMatrix::FfnDown => [n_embd, n_ff],
        }
    }

    /// The fused tensor that may hold the matrix instead of its own.
    pub fn fused(self) -> Option<&'static Fused> {
        match self {
            LayerMatrix::AttnQ | LayerMatrix::AttnK | LayerMatrix::AttnV => Some(&ATTN_QKV),
            LayerMatrix::FfnGate | LayerMatrix::FfnUp => Some(&FFN_GATE_UP),
            LayerMatrix::AttnOutput | LayerMatrix::FfnDown => None,
        }
    }
}

impl fmt::Display for LayerMatrix {
    /// The short name ([`LayerMatrix::name`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LayerMatrix {
    type Err = String;

    /// The short name ([`LayerMatrix::name`]): the spelling of LoRA targets on a command line.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LayerMatrix::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown LoRA target {s:?} (one of q, k, v, o, gate, up, down)"))
    }
}

/// A norm of a transformer block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerNorm {
    /// Before attention.
    Attn,
    /// Of each query head, before RoPE (qwen3, gemma3).
    AttnQ,
    /// Of each key head, before RoPE (qwen3, gemma3).
    AttnK,
    /// Of the attention's output, before the residual addition (gemma3).
    AttnPost,
    /// Before the feed-forward network.
    Ffn,
    /// Of the feed-forward network's output, before the residual addition (gemma3).
    FfnPost,
}

impl LayerNorm {
    /// The GGUF tensor name's stem (`attn_norm`, `attn_q_norm`, …).
    pub fn stem(self) -> &'static str {
        match self {
            LayerNorm::Attn => "attn_norm",
            LayerNorm::AttnQ => "attn_q_norm",
            LayerNorm::AttnK => "attn_k_norm",
            LayerNorm::AttnPost => "post_attention_norm",
            LayerNorm::Ffn => "ffn_norm",
            LayerNorm::FfnPost => "post_ffw_norm",
        }
    }

    /// The norm's path in the block module (and its record).
    pub fn module_path(self) -> &'static str {
        match self {
            LayerNorm::Attn => "attn_norm",
            LayerNorm::AttnQ => "attn.q_norm",
            LayerNorm::AttnK => "attn.k_norm",
            LayerNorm::AttnPost => "attn_post_norm",
            LayerNorm::Ffn => "ffn_norm",
            LayerNorm::FfnPost => "ffn_post_norm",
        }
    }

    /// The length of the scale in a model of `config`: `key_length` for the per-head norms,
    /// `n_embd` for the others.
    pub fn dim(self, config: &LlamaConfig) -> usize {
        match self {
            LayerNorm::AttnQ | LayerNorm::AttnK => config.key_length,
            _ => config.embedding_length,
        }
    }
}

/// A tensor of a transformer block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockTensor {
    Norm(LayerNorm),
    Matrix(LayerMatrix),
}

impl BlockTensor {
    /// Every tensor of a Llama block, in llama.cpp's order.
    pub const ALL: [BlockTensor; 9] = [
        BlockTensor::Norm(LayerNorm::Attn),
        BlockTensor::Matrix(LayerMatrix::AttnQ),
        BlockTensor::Matrix(LayerMatrix::AttnK),
        BlockTensor::Matrix(LayerMatrix::AttnV),
        BlockTensor::Matrix(LayerMatrix::AttnOutput),
        BlockTensor::Norm(LayerNorm::Ffn),
        BlockTensor::Matrix(LayerMatrix::FfnGate),
        BlockTensor::Matrix(LayerMatrix::FfnUp),
        BlockTensor::Matrix(LayerMatrix::FfnDown),
    ];

    /// Every tensor of a block of `family`: Llama's ([`BlockTensor::ALL`]) with the family's
    /// norms, each after the tensor whose output it normalizes.
    pub fn of(family: Family) -> Vec<BlockTensor> {
        let mut out = Vec::with_capacity(13);
        for t in BlockTensor::ALL {
            out.push(t);
            let extra: &[LayerNorm] = match t {
                BlockTensor::Matrix(LayerMatrix::AttnQ) if family.has_qk_norm() => {
                    &[LayerNorm::AttnQ]
                }
                BlockTensor::Matrix(LayerMatrix::AttnK) if family.has_qk_norm() => {
                    &[LayerNorm::AttnK]
                }
                BlockTensor::Matrix(LayerMatrix::AttnOutput) if family.has_post_norms() => {
                    &[LayerNorm::AttnPost]
                }
                BlockTensor::Matrix(LayerMatrix::FfnDown) if family.has_post_norms() => {
                    &[LayerNorm::FfnPost]
                }
                _ => &[],
            };
            out.extend(extra.iter().map(|&n| BlockTensor::Norm(n)));
        }
        out
    }

    /// The GGUF tensor name's stem.
    pub fn stem(self) -> &'static str {
        match self {
            BlockTensor::Norm(n) => n.stem(),
            BlockTensor::Matrix(m) => m.stem(),
        }
    }
}

/// Where the tensors of a block come from (the GGUF loader, a record's skeleton):
/// [`crate::model::block::Block::build`] asks it for each tensor of the family's table, in the
/// order of [`BlockTensor::of`].
pub(crate) trait BlockSource {
    type Error;

    /// The norm `norm` of scale `[dim]`.
    fn norm(&mut self, norm: LayerNorm, dim: usize) -> Result<RmsNorm, Self::Error>;

    /// The linear layer of `matrix`, of weight `shape` (`[n_out, n_in]`).
    fn linear(&mut self, matrix: LayerMatrix, shape: [usize; 2]) -> Result<Linear, Self::Error>;
}
