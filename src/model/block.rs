//! One transformer block: pre-norm attention and pre-norm SwiGLU, each added to the residual
//! stream, built from the block's tensor table ([`crate::model::tensors`]).
//!
//! ```text
//! ffn_inp = x + attention(attn_norm(x))
//! l_out   = ffn_inp + ffn(ffn_norm(ffn_inp))
//! ```

use burn::module::Module;
use burn::tensor::Tensor;

use crate::model::attention::Attention;
use crate::model::config::LlamaConfig;
use crate::model::context::ForwardContext;
use crate::model::error::ModelError;
use crate::model::feed_forward::FeedForward;
use crate::model::linear::Linear;
use crate::model::norm::RmsNorm;
use crate::model::tensors::{BlockSource, LayerMatrix, LayerNorm};

/// A transformer block (llama.cpp's `blk.{i}.*` tensors).
#[derive(Module, Debug)]
pub struct Block {
    attn_norm: RmsNorm,
    attn: Attention,
    ffn_norm: RmsNorm,
    ffn: FeedForward,
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

    /// Block `layer` of a model of `config`, from the tensors `source` gives for the table of
    /// [`crate::model::tensors`] (asked for in the order of [`crate::model::tensors::BlockTensor::ALL`]).
    pub(crate) fn build<S: BlockSource>(
        config: &LlamaConfig,
        layer: usize,
        source: &mut S,
    ) -> Result<Block, S::Error> {
        let n_embd = config.embedding_length;
        let linear = |s: &mut S, m: LayerMatrix| s.linear(m, m.shape(config, layer));
        let attn_norm = source.norm(LayerNorm::Attn, n_embd)?;
        let attn = Attention::new(
            linear(source, LayerMatrix::AttnQ)?,
            linear(source, LayerMatrix::AttnK)?,
            linear(source, LayerMatrix::AttnV)?,
            linear(source, LayerMatrix::AttnOutput)?,
            config.head_count,
            config.head_count_kv[layer],
            config.key_length,
            config.value_length,
        );
        let ffn_norm = source.norm(LayerNorm::Ffn, n_embd)?;
        let ffn = FeedForward::new(
            linear(source, LayerMatrix::FfnGate)?,
            linear(source, LayerMatrix::FfnUp)?,
            linear(source, LayerMatrix::FfnDown)?,
        );
        Ok(Block::new(attn_norm, attn, ffn_norm, ffn))
    }

    /// The linear layer of `matrix`, if the block has it.
    pub fn linear(&self, matrix: LayerMatrix) -> Option<&Linear> {
        self.attn.linear(matrix).or_else(|| self.ffn.linear(matrix))
    }

    /// The norm `norm`.
    pub fn norm(&self, norm: LayerNorm) -> &RmsNorm {
        match norm {
            LayerNorm::Attn => &self.attn_norm,
            LayerNorm::Ffn => &self.ffn_norm,
        }
    }

    /// The block with `f(matrix, projection)` in place of each of its projections.
    pub(crate) fn map_linears(
        self,
        f: &mut dyn FnMut(LayerMatrix, Linear) -> Result<Linear, ModelError>,
    ) -> Result<Block, ModelError> {
        Ok(Block {
            attn: self.attn.map_linears(f)?,
            ffn: self.ffn.map_linears(f)?,
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

    /// `x + attention(attn_norm(x))`, then that plus `ffn(ffn_norm(·))`: [`Block::attend`] then
    /// [`Block::feed_forward_residual`], in the context's block (which names the KV cache's
    /// layer and the traced tensors). Reports intermediate tensors by llama.cpp's names, in its
    /// graph order: `attn_norm`, `Qcur`, `Vcur`, `Kcur`, `kqv_out`, `attn_out`, `ffn_inp`,
    /// `ffn_norm`, `ffn_gate`, `ffn_up`, `ffn_swiglu`, `ffn_out` (before the residual), `l_out`
    /// (each `-{layer}`).
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, n_embd]`
    /// - output: `[batch, seq, n_embd]`
    pub fn forward(
        &self,
        x: Tensor<3>,
        ctx: &mut ForwardContext<'_>,
    ) -> Result<Tensor<3>, ModelError> {
        let ffn_inp = self.attend(x, ctx)?;
        self.feed_forward_residual(ffn_inp, ctx)
    }

    /// The attention half of [`Block::forward`]: `x` plus the attention of its normalized
    /// stream (`ffn_inp`), appending the positions to the KV cache. Every position goes
    /// through it (later positions attend to it); the model's last block continues only with
    /// the positions whose logits are wanted, as llama.cpp's graph does (its `inp_out_ids`).
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, n_embd]`
    /// - output: `[batch, seq, n_embd]`
    pub fn attend(
        &self,
        x: Tensor<3>,
        ctx: &mut ForwardContext<'_>,
    ) -> Result<Tensor<3>, ModelError> {
        let h = self.attn_norm.forward(x.clone()); // [batch, seq, n_embd]
        ctx.trace("attn_norm", &h);
        let attn = self.attn.forward(h, ctx)?; // [batch, seq, n_embd]
        ctx.trace("attn_out", &attn);
        let ffn_inp = attn + x; // [batch, seq, n_embd]
        ctx.trace("ffn_inp", &ffn_inp);
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
        ctx: &mut ForwardContext<'_>,
    ) -> Result<Tensor<3>, ModelError> {
        let h = self.ffn_norm.forward(ffn_inp.clone()); // [batch, rows, n_embd]
        ctx.trace("ffn_norm", &h);
        let ffn_out = self.ffn.forward(h, ctx)?; // [batch, rows, n_embd]
        ctx.trace("ffn_out", &ffn_out);
        let out = ffn_out + ffn_inp; // [batch, rows, n_embd]
        ctx.trace("l_out", &out);
        Ok(out)
    }
}
