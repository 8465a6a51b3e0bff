//! Grouped-query self-attention with RoPE and a KV cache: `n_head` query heads over
//! `n_head_kv` key/value heads, query head `h` reading key/value head `h / (n_head / n_head_kv)`.
//!
//! ```text
//! q, k, v = wq·x (+ bq), wk·x (+ bk), wv·x (+ bv)   heads [batch, seq, heads, head_dim]
//! q, k    = q_norm(q), k_norm(k)                    per head (qwen3, gemma3)
//! q, k    = RoPE(q), RoPE(k)                        by position (a windowed layer's own base)
//! kqv     = softmax(q·kᵀ · scale + mask) · v        over the cache and the new keys
//! out     = wo · kqv
//! ```
//!
//! `scale` is `1/sqrt(key_length)` on the scores, or (gemma3) on the queries before the
//! attention ([`AttentionScale`]); the mask is causal, and in a sliding-window layer also hides
//! keys `window` or more positions before the query.
//!
//! The operations are [`ops::rope`] and [`ops::attention`] (which appends to the KV cache and
//! runs ggml's attention on the CPU devices, Burn's elsewhere).

use burn::module::Module;
use burn::tensor::Tensor;

use crate::model::config::AttentionScale;
use crate::model::context::ForwardContext;
use crate::model::error::ModelError;
use crate::model::linear::Linear;
use crate::model::norm::RmsNorm;
use crate::model::ops::{self, AttentionParams};
use crate::model::tensors::{LayerMatrix, LayerNorm};

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
    /// `[key_length]`: the norm of each query head (qwen3, gemma3).
    q_norm: Option<RmsNorm>,
    /// `[key_length]`: the norm of each key head (qwen3, gemma3).
    k_norm: Option<RmsNorm>,
    n_head: usize,
    n_head_kv: usize,
    key_length: usize,
    value_length: usize,
    #[module(skip)]
    scale: AttentionScale,
    /// Keys seen by each query in a sliding-window layer.
    window: Option<usize>,
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
            q_norm: None,
            k_norm: None,
            n_head,
            n_head_kv,
            key_length,
            value_length,
            scale: AttentionScale::Scores(1.0 / (key_length as f32).sqrt()),
            window: None,
        }
    }

    /// The layer with RMS norms of each query and key head before RoPE (`[key_length]` each).
    pub fn with_qk_norm(self, q_norm: Option<RmsNorm>, k_norm: Option<RmsNorm>) -> Attention {
        Attention {
            q_norm,
            k_norm,
            ..self
        }
    }

    /// The layer with its scale applied as `scale` says (by default `1/sqrt(key_length)` on the
    /// scores).
    pub fn with_scale(self, scale: AttentionScale) -> Attention {
        Attention { scale, ..self }
    }

    /// The layer with a sliding window of `window` positions (`None`: global attention).
    pub fn with_window(self, window: Option<usize>) -> Attention {
        Attention { window, ..self }
    }

    /// The sliding window, if the layer has one.
    pub fn window(&self) -> Option<usize> {
        self.window
    }

    /// The per-head norm `norm` ([`LayerNorm::AttnQ`] or [`LayerNorm::AttnK`]), if the layer has it.
    pub fn norm(&self, norm: LayerNorm) -> Option<&RmsNorm> {
        match norm {
            LayerNorm::AttnQ => self.q_norm.as_ref(),
            LayerNorm::AttnK => self.k_norm.as_ref(),
            _ => None,
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
    /// ([`ops::attention`]); in a ragged pass, each sequence's rows over its own cache. Reports
    /// `Qcur_normed`, `Kcur_normed` (with q/k norms), `Qcur`, `Vcur`, `Kcur` (after RoPE, heads
    /// flattened) and `kqv_out` (all heads before the output projection,
    /// `[batch, seq, n_head · value_length]`) to the context's trace.
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

        // Normalize each head (qwen3, gemma3).
        let q = match &self.q_norm {
            Some(norm) => {
                let q = norm.forward_heads(q); // [batch, seq, n_head, dk]
                ctx.trace_with("Qcur_normed", || {
                    q.clone().reshape([batch, seq, n_head * dk])
                });
                q
            }
            None => q,
        };
        let k = match &self.k_norm {
            Some(norm) => {
                let k = norm.forward_heads(k); // [batch, seq, n_kv, dk]
                ctx.trace_with("Kcur_normed", || k.clone().reshape([batch, seq, n_kv * dk]));
                k
            }
            None => k,
        };

        // Rotate queries and keys by their positions (a windowed layer with its own base).
        let tables = ctx.rope_tables(self.window.is_some());
        let q = ops::rope(q, tables); // [batch, seq, n_head, dk]
        let k = ops::rope(k, tables); // [batch, seq, n_kv, dk]
        ctx.trace_with("Qcur", || q.clone().reshape([batch, seq, n_head * dk]));
        ctx.trace_with("Vcur", || v.clone().reshape([batch, seq, n_kv * dv]));
        ctx.trace_with("Kcur", || k.clone().reshape([batch, seq, n_kv * dk]));

        // softmax(q · kᵀ · scale + mask) · v over the cached and new positions; the scale on the
        // queries first where the family puts it there.
        let (q, scale) = match self.scale {
            AttentionScale::Scores(s) => (q, s),
            AttentionScale::Queries(s) => (ops::scale(q, s), 1.0),
        };
        let params = AttentionParams {
            scale,
            window: self.window,
        };
        let kqv = match ctx.segments.as_mut_slice() {
            [one] => ops::attention(q, k, v, one.cache, layer, &mut one.masks, params)?,
            // A ragged pass: each sequence's rows over its own cache.
            segments => {
                let mut parts = Vec::with_capacity(segments.len());
                for s in segments {
                    let rows = |t: &Tensor<4>| t.clone().narrow(1, s.start, s.seq);
                    let (q, k, v) = (rows(&q), rows(&k), rows(&v));
                    parts.push(ops::attention(
                        q,
                        k,
                        v,
                        s.cache,
                        layer,
                        &mut s.masks,
                        params,
                    )?);
                }
                Tensor::cat(parts, 1)
            }
        }; // [batch, seq, n_head · dv]
        ctx.trace("kqv_out", &kqv);
        self.output.forward(kqv) // [batch, seq, n_embd]
    }
}
