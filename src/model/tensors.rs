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
//! | [`LayerMatrix::FfnGate`]      | `ffn_gate.weight`       | `ffn.gate`                   | `[n_ff, n_embd]`                      | `gate` |              |
//! | [`LayerMatrix::FfnUp`]        | `ffn_up.weight`         | `ffn.up`                     | `[n_ff, n_embd]`                      | `up` |                |
//! | [`LayerMatrix::FfnDown`]      | `ffn_down.weight`       | `ffn.down`                   | `[n_embd, n_ff]`                      | `down` |              |
//!
//! Every tensor is required (a matrix in its own tensor or in its fused one); each matrix takes
//! an optional `.bias` `[rows]`. The order of [`BlockTensor::ALL`] is llama.cpp's (its graph's
//! and its quantizer's); [`LayerMatrix::ALL`] is the same order without the norms, the order of
//! a record's description of a block.
//!
//! A block is built from this table by [`crate::model::block::Block::build`], from any
//! [`BlockSource`] (the GGUF loader, a record's skeleton), and read back by matrix
//! ([`crate::model::block::Block::linear`]).

use std::fmt;
use std::str::FromStr;

use crate::model::config::LlamaConfig;
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
            _ => None,
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
    /// Before the feed-forward network.
    Ffn,
}

impl LayerNorm {
    /// The GGUF tensor name's stem (`attn_norm`, `ffn_norm`), also its path in the block module.
    pub fn stem(self) -> &'static str {
        match self {
            LayerNorm::Attn => "attn_norm",
            LayerNorm::Ffn => "ffn_norm",
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
    /// Every tensor of a block, in llama.cpp's order.
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

    /// The GGUF tensor name's stem.
    pub fn stem(self) -> &'static str {
        match self {
            BlockTensor::Norm(n) => n.stem(),
            BlockTensor::Matrix(m) => m.stem(),
        }
    }
}

/// Where the tensors of a block come from (the GGUF loader, a record's skeleton):
/// [`crate::model::block::Block::build`] asks it for each tensor of the table, in the order of
/// [`BlockTensor::ALL`].
pub(crate) trait BlockSource {
    type Error;

    /// The norm `norm` of scale `[dim]`.
    fn norm(&mut self, norm: LayerNorm, dim: usize) -> Result<RmsNorm, Self::Error>;

    /// The linear layer of `matrix`, of weight `shape` (`[n_out, n_in]`).
    fn linear(&mut self, matrix: LayerMatrix, shape: [usize; 2]) -> Result<Linear, Self::Error>;
}
