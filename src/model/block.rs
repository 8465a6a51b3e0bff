//! One transformer block: pre-norm attention and a pre-norm gated feed-forward network, each
//! added to the residual stream, built from the family's tensor table ([`crate::model::tensors`]).
//!
//! ```text
//! ffn_inp = x + attn_post_norm(attention(attn_norm(x)))        (post-norm: gemma3 only)
//! l_out   = ffn_inp + ffn_post_norm(ffn(ffn_norm(ffn_inp)))    (post-norm: gemma3 only)
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
use crate::model::tensors::{BlockSource, BlockTensor, LayerMatrix, LayerNorm};

/// A transformer block (llama.cpp's `blk.{i}.*` tensors).
#[derive(Module, Debug)]
pub struct Block {
    attn_norm: RmsNorm,
    attn: Attention,
    /// After attention, before the residual addition (gemma3).
    attn_post_norm: Option<RmsNorm>,
    ffn_norm: RmsNorm,
    ffn: FeedForward,
    /// After the feed-forward network, before the residual addition (gemma3).
    ffn_post_norm: Option<RmsNorm>,
}

impl Block {
    /// A block from its parts (without post-norms).
    pub fn new(attn_norm: RmsNorm, attn: Attention, ffn_norm: RmsNorm, ffn: FeedForward) -> Block {
        Block {
            attn_norm,
            attn,
            attn_post_norm: None,
            ffn_norm,
            ffn,
            ffn_post_norm: None,
        }
    }

    /// The block with norms of the attention's and the feed-forward network's outputs before
    /// their residual additions (Gemma's `post_attention_norm`, `post_ffw_norm`).
    pub fn with_post_norms(self, attn: Option<RmsNorm>, ffn: Option<RmsNorm>) -> Block {
        Block {
            attn_post_norm: attn,
            ffn_post_norm: ffn,
            ..self
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

    /// Block `layer` of a model of `config`, from the tensors `source` gives for the family's
    /// table ([`BlockTensor::of`], asked for in its order); the family's attention scale,
    /// sliding window and activation from `config`.
    pub(crate) fn build<S: BlockSource>(
        config: &LlamaConfig,
        layer: usize,
        source: &mut S,
    ) -> Result<Block, S::Error> {
        let mut norms = Vec::new();
        let mut linears = Vec::new();
        for tensor in BlockTensor::of(config.family) {
            match tensor {
                BlockTensor::Norm(n) => norms.push((n, source.norm(n, n.dim(config))?)),
                BlockTensor::Matrix(m) => {
                    linears.push((m, source.linear(m, m.shape(config, layer))?))
                }
            }
        }
        let mut norm = |n: LayerNorm| {
            let i = norms.iter().position(|(m, _)| *m == n)?;
            Some(norms.swap_remove(i).1)
        };
        let (attn_norm, ffn_norm) = (norm(LayerNorm::Attn), norm(LayerNorm::Ffn));
        let (q_norm, k_norm) = (norm(LayerNorm::AttnQ), norm(LayerNorm::AttnK));
        let (attn_post, ffn_post) = (norm(LayerNorm::AttnPost), norm(LayerNorm::FfnPost));
        let mut linear = |m: LayerMatrix| {
            let i = linears
                .iter()
                .position(|(l, _)| *l == m)
                .expect("every family's table has every matrix");
            linears.swap_remove(i).1
        };
        let attn = Attention::new(
            linear(LayerMatrix::AttnQ),
            linear(LayerMatrix::AttnK),
            linear(LayerMatrix::AttnV),
            linear(LayerMatrix::AttnOutput),
            config.head_count,
            config.head_count_kv[layer],
            config.key_length,
            config.value_length,
        )
        .with_qk_norm(q_norm, k_norm)
        .with_scale(config.attention_scale)
        .with_window(config.window(layer));
        let ffn = FeedForward::new(
            linear(LayerMatrix::FfnGate),
            linear(LayerMatrix::FfnUp),
            linear(LayerMatrix::FfnDown),
        )
        .with_activation(config.activation);
        let expect = "every family's table has attn_norm and ffn_norm";
        Ok(
            Block::new(attn_norm.expect(expect), attn, ffn_norm.expect(expect), ffn)
                .with_post_norms(attn_post, ffn_post),
        )
    }

    /// The linear layer of `matrix`, if the block has it.
    pub fn linear(&self, matrix: LayerMatrix) -> Option<&Linear> {
        self.attn.linear(matrix).or_else(|| self.ffn.linear(matrix))
    }

    /// The norm `norm`, if the block has it (`attn_norm` and `ffn_norm` always).
    pub fn norm(&self, norm: LayerNorm) -> Option<&RmsNorm> {
        match norm {
            LayerNorm::Attn => Some(&self.attn_norm),
            LayerNorm::Ffn => Some(&self.ffn_norm),
            LayerNorm::AttnQ | LayerNorm::AttnK => self.attn.norm(norm),
            LayerNorm::AttnPost => self.attn_post_norm.as_ref(),
            LayerNorm::FfnPost => self.ffn_post_norm.as_ref(),
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
    /// (each `-{layer}`); with the family's extra steps `Qcur_normed`, `Kcur_normed`,
    /// `attn_post_norm`, `sa_out` (Gemma's name of `ffn_inp`), `ffn_geglu`, `ffn_post_norm`.
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
        let attn = match &self.attn_post_norm {
            Some(norm) => {
                let attn = norm.forward(attn); // [batch, seq, n_embd]
                ctx.trace("attn_post_norm", &attn);
                attn
            }
            None => attn,
        };
        let ffn_inp = attn + x; // [batch, seq, n_embd]
        let name = match self.attn_post_norm {
            Some(_) => "sa_out",
            None => "ffn_inp",
        };
        ctx.trace(name, &ffn_inp);
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
        let ffn_out = match &self.ffn_post_norm {
            Some(norm) => {
                let out = norm.forward(ffn_out); // [batch, rows, n_embd]
                ctx.trace("ffn_post_norm", &out);
                out
            }
            None => ffn_out,
        };
        let out = ffn_out + ffn_inp; // [batch, rows, n_embd]
        ctx.trace("l_out", &out);
        Ok(out)
    }
}
