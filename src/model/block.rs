//! One transformer block: pre-norm attention and pre-norm SwiGLU, each added to the residual
//! stream.

use burn::module::Module;
use burn::tensor::Tensor;

use crate::model::attention::{Attention, MaskCache};
use crate::model::error::ModelError;
use crate::model::feed_forward::FeedForward;
use crate::model::kv_cache::KvCache;
use crate::model::linear::Linear;
use crate::model::norm::RmsNorm;
use crate::model::rope::{Rope, RopeTables};

/// A transformer block (llama.cpp's `blk.{i}.*` tensors).
#[derive(Module, Debug)]
pub struct Block {
    attn_norm: RmsNorm,
    attn: Attention,
    ffn_norm: RmsNorm,
    ffn: FeedForward,
}

/// The per-forward state a block reads: RoPE, its tables, the KV cache and the masks.
pub struct BlockContext<'a> {
    pub rope: &'a Rope,
    pub tables: &'a RopeTables,
    pub cache: &'a mut KvCache,
    pub masks: &'a mut MaskCache,
}

impl Block {
    /// A block from its parts.
    pub fn new(attn_norm: RmsNorm, attn: Attention, ffn_norm: RmsNorm, ffn: FeedForward) -> Block {
        Block {
            attn_norm,
            attn,
            ffn_norm,
            ffn,
        }
    }

    /// The attention layer.
    pub fn attention(&self) -> &Attention {
        &self.attn
    }

    /// The feed-forward network.
    pub fn feed_forward(&self) -> &FeedForward {
        &self.ffn
    }

    /// The block with `f(i, projection)` in place of each of its seven projections: the
    /// attention's q, k, v, output (0 to 3), then the feed-forward's gate, up, down (4 to 6).
    pub(crate) fn map_linears(
        self,
        f: &mut dyn FnMut(usize, Linear) -> Result<Linear, ModelError>,
    ) -> Result<Block, ModelError> {
        Ok(Block {
            attn: self.attn.map_linears(f)?,
            ffn: self.ffn.map_linears(&mut |i, l| f(4 + i, l))?,
            ..self
        })
    }

    /// The norm before attention (`attn_norm`).
    pub fn attn_norm(&self) -> &RmsNorm {
        &self.attn_norm
    }

    /// The norm before the feed-forward network (`ffn_norm`).
    pub fn ffn_norm(&self) -> &RmsNorm {
        &self.ffn_norm
    }

    /// Runs block `layer`, reporting intermediate tensors by llama.cpp's names, in its graph
    /// order: `attn_norm-{i}`, `Qcur-{i}`, `Vcur-{i}`, `Kcur-{i}`, `kqv_out-{i}`, `attn_out-{i}`,
    /// `ffn_inp-{i}`, `ffn_norm-{i}`, `ffn_gate-{i}`, `ffn_up-{i}`, `ffn_swiglu-{i}`,
    /// `ffn_out-{i}` (before the residual), `l_out-{i}`: [`Block::attend`] then
    /// [`Block::feed_forward_residual`].
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, n_embd]`
    /// - output: `[batch, seq, n_embd]`
    pub fn forward(
        &self,
        x: Tensor<3>,
        layer: usize,
        ctx: &mut BlockContext<'_>,
        trace: &mut dyn FnMut(&str, Tensor<3>),
    ) -> Result<Tensor<3>, ModelError> {
        let ffn_inp = self.attend(x, layer, ctx, trace)?;
        self.feed_forward_residual(ffn_inp, layer, trace)
    }

    /// The attention half of [`Block::forward`]: `x` plus the attention of its normalized
    /// stream (`ffn_inp-{i}`), appending the positions to the KV cache. Every position goes
    /// through it (later positions attend to it); the model's last block continues only with
    /// the positions whose logits are wanted, as llama.cpp's graph does (its `inp_out_ids`).
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, n_embd]`
    /// - output: `[batch, seq, n_embd]`
    pub fn attend(
        &self,
        x: Tensor<3>,
        layer: usize,
        ctx: &mut BlockContext<'_>,
        trace: &mut dyn FnMut(&str, Tensor<3>),
    ) -> Result<Tensor<3>, ModelError> {
        // Attention on the normalized stream.
        let h = self.attn_norm.forward(x.clone()); // [batch, seq, n_embd]
        trace(&format!("attn_norm-{layer}"), h.clone());
        let attn = self
            .attn
            .forward(h, layer, ctx.rope, ctx.tables, ctx.cache, ctx.masks, trace)?;
        trace(&format!("attn_out-{layer}"), attn.clone());

        // Residual.
        let ffn_inp = attn + x; // [batch, seq, n_embd]
        trace(&format!("ffn_inp-{layer}"), ffn_inp.clone());
        Ok(ffn_inp)
    }

    /// The feed-forward half of [`Block::forward`]: `ffn_inp` plus the feed-forward network of
    /// its normalized stream, row by row (any number of positions).
    ///
    /// # Shapes
    /// - `ffn_inp`: `[batch, rows, n_embd]`
    /// - output: `[batch, rows, n_embd]`
    pub fn feed_forward_residual(
        &self,
        ffn_inp: Tensor<3>,
        layer: usize,
        trace: &mut dyn FnMut(&str, Tensor<3>),
    ) -> Result<Tensor<3>, ModelError> {
        // Feed-forward on the normalized stream.
        let h = self.ffn_norm.forward(ffn_inp.clone());
        trace(&format!("ffn_norm-{layer}"), h.clone());
        let ffn_out = self.ffn.forward(h, layer, trace)?; // [batch, rows, n_embd]
        trace(&format!("ffn_out-{layer}"), ffn_out.clone());

        // Residual.
        let out = ffn_out + ffn_inp;
        trace(&format!("l_out-{layer}"), out.clone());
        Ok(out)
    }
}
