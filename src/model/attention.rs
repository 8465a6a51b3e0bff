//! Grouped-query self-attention with RoPE and a KV cache: `n_head` query heads over
//! `n_head_kv` key/value heads, query head `h` reading key/value head `h / (n_head / n_head_kv)`.
//!
//! ```text
//! q, k, v = wq·x, wk·x, wv·x                    heads [batch, seq, heads, head_dim]
//! q, k    = RoPE(q), RoPE(k)                    by position
//! kqv     = softmax(q·kᵀ / sqrt(key_length) + causal mask) · v, over the cache and the new keys
//! out     = wo · kqv
//! ```
//!
//! The operations are [`ops::rope`] and [`ops::attention`] (which appends to the KV cache and
//! runs ggml's attention on the CPU devices, Burn's elsewhere).

use burn::module::Module;
use burn::tensor::Tensor;

use crate::model::context::ForwardContext;
use crate::model::error::ModelError;
use crate::model::linear::Linear;
use crate::model::ops;
use crate::model::tensors::LayerMatrix;

/// The attention layer of one block.
#[derive(Module, Debug)]
pub struct Attention {
    /// `[n_head · key_length, n_embd]`
    q: Linear,
    /// `[n_head_kv · key_length, n_embd]`
    k: Linear,
    /// `[n_head_kv · value_length, n_embd]`
    v: Linear,
    /// `[n_embd, n_head · value_length]`
    output: Linear,
    n_head: usize,
    n_head_kv: usize,
    key_length: usize,
    value_length: usize,
}

impl Attention {
    /// An attention layer from its projections (see the field shapes).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        q: Linear,
        k: Linear,
        v: Linear,
        output: Linear,
        n_head: usize,
        n_head_kv: usize,
        key_length: usize,
        value_length: usize,
    ) -> Attention {
        Attention {
            q,
            k,
            v,
            output,
            n_head,
            n_head_kv,
            key_length,
            value_length,
        }
    }

    /// The projections: q, k, v, output ([`LayerMatrix::ATTENTION`]).
    pub fn linears(&self) -> [&Linear; 4] {
        [&self.q, &self.k, &self.v, &self.output]
    }

    /// The projection of `matrix`, if it is one of this layer's.
    pub fn linear(&self, matrix: LayerMatrix) -> Option<&Linear> {
        match matrix {
            LayerMatrix::AttnQ => Some(&self.q),
            LayerMatrix::AttnK => Some(&self.k),
            LayerMatrix::AttnV => Some(&self.v),
            LayerMatrix::AttnOutput => Some(&self.output),
            _ => None,
        }
    }

    /// The layer with `f(matrix, projection)` in place of each projection.
    pub(crate) fn map_linears(
        self,
        f: &mut dyn FnMut(LayerMatrix, Linear) -> Result<Linear, ModelError>,
    ) -> Result<Attention, ModelError> {
        Ok(Attention {
            q: f(LayerMatrix::AttnQ, self.q)?,
            k: f(LayerMatrix::AttnK, self.k)?,
            v: f(LayerMatrix::AttnV, self.v)?,
            output: f(LayerMatrix::AttnOutput, self.output)?,
            ..self
        })
    }

    /// Attends the `seq` new positions `cache.len() ..` of the context's cache to themselves and
    /// to the cached ones, appending their keys and values to the block's layer of the cache
    /// ([`ops::attention`]). Reports `Qcur`, `Vcur`, `Kcur` (after RoPE, heads flattened) and
    /// `kqv_out` (all heads before the output projection, `[batch, seq, n_head · value_length]`)
    /// to the context's trace.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, n_embd]` (normalized)
    /// - output: `[batch, seq, n_embd]` (after the output projection)
    pub fn forward(
        &self,
        x: Tensor<3>,
        ctx: &mut ForwardContext<'_>,
    ) -> Result<Tensor<3>, ModelError> {
        let [batch, seq, _] = x.dims();
        let (n_head, n_kv, dk, dv) = (
            self.n_head,
            self.n_head_kv,
            self.key_length,
            self.value_length,
        );
        let layer = ctx.layer().ok_or_else(|| ModelError::InvalidInput {
            what: "attention run outside a block (no layer of the KV cache)".into(),
        })?;

        // Project and split into heads.
        let q: Tensor<4> = self.q.forward(x.clone())?.reshape([batch, seq, n_head, dk]);
        let k: Tensor<4> = self.k.forward(x.clone())?.reshape([batch, seq, n_kv, dk]);
        let v: Tensor<4> = self.v.forward(x)?.reshape([batch, seq, n_kv, dv]);

        // Rotate queries and keys by their positions.
        let q = ops::rope(q, ctx.rope_tables()); // [batch, seq, n_head, dk]
        let k = ops::rope(k, ctx.rope_tables()); // [batch, seq, n_kv, dk]
        ctx.trace_with("Qcur", || q.clone().reshape([batch, seq, n_head * dk]));
        ctx.trace_with("Vcur", || v.clone().reshape([batch, seq, n_kv * dv]));
        ctx.trace_with("Kcur", || k.clone().reshape([batch, seq, n_kv * dk]));

        // softmax(q · kᵀ / sqrt(dk) + causal mask) · v over the cached and new positions.
        let kqv = ops::attention(q, k, v, ctx.cache, layer, &mut ctx.masks)?; // [batch, seq, n_head · dv]
        ctx.trace("kqv_out", &kqv);
        self.output.forward(kqv) // [batch, seq, n_embd]
    }
}
