//! Grouped-query self-attention with RoPE and a KV cache.
//!
//! `n_head` query heads share `n_head_kv` key/value heads: query head `h` reads key/value head
//! `h / (n_head / n_head_kv)` (llama.cpp's GQA broadcast). Rather than copying each key/value
//! head `group` times, the `group` query heads of one key/value head are stacked as extra query
//! rows: queries become `[batch, n_head_kv, group · seq, key_length]`, so every backend sees as
//! many query heads as key heads, and the cache is read once per key/value head.
//! Row `g · seq + i` is the query of position `start + i` of head `kv · group + g`; the causal
//! mask lets it see the keys `0 ..= start + i`.
//!
//! On the CPU devices the attention is ggml's own, bit for bit ([`gguf_kernels::ggml_ops::attention`],
//! which reads the cache tensors in place); what follows describes the Burn-ops path of the
//! other devices.
//!
//! Scores are `q · kᵀ · (1 / sqrt(key_length))` plus the mask (0 or -inf), softmax in f32 over
//! the keys (max-subtracted), times the values: ggml's `soft_max_ext(kq, mask, scale)` then
//! `mul_mat(v, kq)`. The attention is written with matmul and softmax rather than Burn's fused
//! `attention` op: the matmuls read the cache's strided views `[.., 0 .. len, ..]` in place,
//! where flex's fused op first copies them contiguous (two to three times slower per decoded
//! token at 100 to 2000 cached positions, measured on flex), and the same code runs on every
//! backend.

use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};
use gguf_kernels::ggml_ops;

use crate::model::error::ModelError;
use crate::model::kv_cache::KvCache;
use crate::model::linear::Linear;
use crate::model::rope::{Rope, RopeTables};

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

/// Causal masks by group size, made once per forward pass.
#[derive(Debug, Default)]
pub struct MaskCache {
    masks: Vec<(usize, Tensor<4>)>,
}

impl MaskCache {
    /// The additive mask of `group · seq` stacked query rows over `start + seq` keys: `-inf`
    /// where row `g · seq + i` must not see key `j`, i.e. `j > start + i`, else 0.
    /// `[1, 1, group · seq, start + seq]`, broadcast over batch and heads.
    fn get(&mut self, group: usize, start: usize, seq: usize, device: &Device) -> Tensor<4> {
        if let Some((_, m)) = self.masks.iter().find(|(g, _)| *g == group) {
            return m.clone();
        }
        let n_keys = start + seq;
        let mut data = Vec::with_capacity(group * seq * n_keys);
        for _ in 0..group {
            for i in 0..seq {
                data.extend((0..n_keys).map(|j| {
                    if j > start + i {
                        f32::NEG_INFINITY
                    } else {
                        0.0
                    }
                }));
            }
        }
        let mask =
            Tensor::<4>::from_data(TensorData::new(data, [1, 1, group * seq, n_keys]), device);
        self.masks.push((group, mask.clone()));
        mask
    }
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

    /// The projections: q, k, v, output.
    pub fn linears(&self) -> [&Linear; 4] {
        [&self.q, &self.k, &self.v, &self.output]
    }

    /// The layer with `f(i, projection)` in place of each projection `i` of
    /// [`Attention::linears`].
    pub(crate) fn map_linears(
        self,
        f: &mut dyn FnMut(usize, Linear) -> Result<Linear, ModelError>,
    ) -> Result<Attention, ModelError> {
        Ok(Attention {
            q: f(0, self.q)?,
            k: f(1, self.k)?,
            v: f(2, self.v)?,
            output: f(3, self.output)?,
            ..self
        })
    }

    /// Attends the `seq` new positions `cache.len() ..` to themselves and to the cached ones,
    /// appending their keys and values to layer `layer` of the cache. Reports `Qcur-{i}`,
    /// `Vcur-{i}`, `Kcur-{i}` (after RoPE, heads flattened) and `kqv_out-{i}` (all heads
    /// before the output projection, `[batch, seq, n_head · value_length]`) to `trace`.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, n_embd]` (normalized)
    /// - output: `[batch, seq, n_embd]` (after the output projection)
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        x: Tensor<3>,
        layer: usize,
        rope: &Rope,
        tables: &RopeTables,
        cache: &mut KvCache,
        masks: &mut MaskCache,
        trace: &mut dyn FnMut(&str, Tensor<3>),
    ) -> Result<Tensor<3>, ModelError> {
        let [batch, seq, _] = x.dims();
        let x_device = x.device();
        let start = cache.len();
        let (n_head, n_kv, dk, dv) = (
            self.n_head,
            self.n_head_kv,
            self.key_length,
            self.value_length,
        );
        let group = n_head / n_kv;

        // Project and split into heads.
        let q: Tensor<4> = self.q.forward(x.clone())?.reshape([batch, seq, n_head, dk]);
        let k: Tensor<4> = self.k.forward(x.clone())?.reshape([batch, seq, n_kv, dk]);
        let v: Tensor<4> = self.v.forward(x)?.reshape([batch, seq, n_kv, dv]);

        // Rotate queries and keys by their positions.
        let q = rope.apply(q, tables); // [batch, seq, n_head, dk]
        let k = rope.apply(k, tables); // [batch, seq, n_kv, dk]
        trace(
            &format!("Qcur-{layer}"),
            q.clone().reshape([batch, seq, n_head * dk]),
        );
        trace(
            &format!("Vcur-{layer}"),
            v.clone().reshape([batch, seq, n_kv * dv]),
        );
        trace(
            &format!("Kcur-{layer}"),
            k.clone().reshape([batch, seq, n_kv * dk]),
        );

        // A q8_0 key cache: queries and keys rotated as llama.cpp rotates them (its
        // `attn_rot_k`, see `CacheTypes::key_rotation`).
        let (q, k) = match cache.types().key_rotation(dk) {
            Some(n) => (hadamard_rotate(q, n), hadamard_rotate(k, n)),
            None => (q, k),
        };

        let scale = 1.0 / (dk as f32).sqrt();
        // Cache the new keys and values.
        let views = cache.append(
            layer,
            k.swap_dims(1, 2), // [batch, n_kv, seq, dk]
            v.swap_dims(1, 2), // [batch, n_kv, seq, dv]
        )?;
        let Some((keys, values)) = views else {
            // The CPU devices: ggml's attention bit for bit, reading the whole cache tensors in
            // place. Keys [batch, n_kv, capacity, dk], values transposed [batch, n_kv, dv, capacity].
            let (keys, values_t) =
                cache
                    .layer_bits(layer)
                    .ok_or_else(|| ModelError::CacheMismatch {
                        what: format!("layer {layer} holds no CPU cache tensors after its append"),
                    })?;
            let kqv = ggml_ops::attention(q, keys, values_t, start, scale); // [batch, seq, n_head · dv]
            trace(&format!("kqv_out-{layer}"), kqv.clone());
            return self.output.forward(kqv);
        }; // [batch, n_kv, start + seq, dk | dv], f32
        let types = cache.types();
        // ggml multiplies f16 keys with the queries rounded to f16 (q8_0 keys with the queries
        // quantized to q8_0), and f16 values with the softmax weights rounded to f16.
        let q = types.k.round(q);

        // Stack the query heads of each key/value head as rows: head h = kv · group + g.
        let q: Tensor<5> = q.reshape([batch, seq, n_kv, group, dk]);
        let q: Tensor<4> = q
            .permute([0, 2, 3, 1, 4]) // [batch, n_kv, group, seq, dk]
            .reshape([batch, n_kv, group * seq, dk]);

        // Scaled scores of every stacked query row against every cached key:
        // [batch, n_kv, group · seq, start + seq].
        let scores = q.matmul(keys.swap_dims(2, 3)) * scale;
        // Causal mask; a single new position sees every cached key and needs none.
        let scores = if seq > 1 {
            scores + masks.get(group, start, seq, &x_device)
        } else {
            scores
        };
        let probs = types.v.round(softmax(scores, 3)); // over the keys
        let context = probs.matmul(values); // [batch, n_kv, group · seq, dv]

        // Back to [batch, seq, n_head · dv], heads in order h = kv · group + g.
        let context: Tensor<5> = context.reshape([batch, n_kv, group, seq, dv]);
        let kqv: Tensor<3> = context
            .permute([0, 3, 1, 2, 4]) // [batch, seq, n_kv, group, dv]
            .reshape([batch, seq, n_head * dv]);
        trace(&format!("kqv_out-{layer}"), kqv.clone());
        self.output.forward(kqv) // [batch, seq, n_embd]
    }
}

/// Every `n` consecutive elements of `x` (`n` a power of two dividing its last dimension) times
/// the orthonormal Walsh-Hadamard matrix of order `n` (Sylvester's, entries `±1 / sqrt(n)`,
/// symmetric): on the CPU devices ggml's fast transform ([`ggml_ops::fwht`], its order), elsewhere
/// a matmul with the matrix.
fn hadamard_rotate(x: Tensor<4>, n: usize) -> Tensor<4> {
    let device = x.device();
    if ggml_ops::runs_on(&device) {
        return ggml_ops::fwht(x, n);
    }
    let dims = x.dims();
    let rows: Tensor<2> = x.reshape([dims.iter().product::<usize>() / n, n]);
    let scale = 1.0 / (n as f32).sqrt();
    let h: Vec<f32> = (0..n * n)
        .map(|e| match ((e / n) & (e % n)).count_ones() % 2 {
            0 => scale,
            _ => -scale,
        })
        .collect();
    let h = Tensor::<2>::from_data(TensorData::new(h, [n, n]), &device);
    rows.matmul(h).reshape(dims)
}
