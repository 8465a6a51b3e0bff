//! The tensor operations the model is written in, each on the implementation its operands'
//! device takes ([`Kernels::of`]): on the CPU devices (flex, ndarray) ggml's CPU kernels
//! ([`gguf_kernels::ggml_ops`]), which compute llama.cpp's float operations in its order (the
//! same bits); elsewhere (wgpu, and the autodiff devices, which need the gradients of Burn's ops)
//! Burn's tensor operations. The layers ([`crate::model::attention`],
//! [`crate::model::feed_forward`], [`crate::model::block`] ...) call these and hold no device
//! branch of their own; so does the KV cache, whose layout is the attention kernels' (see
//! [`crate::model::kv_cache`]).
//!
//! | operation       | CPU devices (ggml's order)        | other devices (Burn's ops)                    |
//! |-----------------|-----------------------------------|-----------------------------------------------|
//! | [`mul_mat`]     | `ggml_ops::mul_mat`               | `matmul` with the transposed weight           |
//! | [`rms_norm`]    | `ggml_ops::rms_norm`              | `x / sqrt(mean(x²) + eps) · w`                |
//! | [`swiglu`]      | `ggml_ops::swiglu`                | `silu(gate) · up`                             |
//! | [`geglu`]       | `ggml_ops::geglu` (f16 GELU table) | `gelu_tanh(gate) · up`                       |
//! | [`scale`], [`softcap`] | Burn's `mul`, `tanh` (ggml's `scale`, `tanh` give the same bits) | the same |
//! | [`rope`]        | `ggml_ops::rope`                  | `x · C + swap(x) · S`                         |
//! | [`hadamard`]    | `ggml_ops::fwht`                  | `matmul` with the Walsh-Hadamard matrix       |
//! | [`attention`]   | `ggml_ops::attention` (cache bits in place) | the GQA attention below             |
//!
//! # Burn's attention
//!
//! `n_head` query heads share `n_head_kv` key/value heads: query head `h` reads key/value head
//! `h / (n_head / n_head_kv)` (llama.cpp's GQA broadcast). Rather than copying each key/value
//! head `group` times, the `group` query heads of one key/value head are stacked as extra query
//! rows: queries become `[batch, n_head_kv, group · seq, key_length]`, so every backend sees as
//! many query heads as key heads, and the cache is read once per key/value head.
//! Row `g · seq + i` is the query of position `start + i` of head `kv · group + g`; the causal
//! mask lets it see the keys `0 ..= start + i`.
//!
//! Scores are `q · kᵀ · scale` plus the mask (0 or -inf; a sliding window masks the keys more
//! than `window - 1` positions before the query too), softmax in f32 over
//! the keys (max-subtracted), times the values: ggml's `soft_max_ext(kq, mask, scale)` then
//! `mul_mat(v, kq)`. The attention is written with matmul and softmax rather than Burn's fused
//! `attention` op: the matmuls read the cache's strided views `[.., 0 .. len, ..]` in place,
//! where flex's fused op first copies them contiguous (two to three times slower per decoded
//! token at 100 to 2000 cached positions, measured on flex), and the same code runs on every
//! backend.

use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Device, Tensor, TensorData};
use gguf_kernels::ggml_ops;

use crate::model::config::RopeStyle;
use crate::model::error::ModelError;
use crate::model::kv_cache::KvCache;

/// Which implementation of the operations a device takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// ggml's CPU kernels, in llama.cpp's order of float operations: the plain CPU devices
    /// (flex, ndarray; [`ggml_ops::runs_on`]).
    Ggml,
    /// Burn's tensor operations: wgpu, and every autodiff device.
    Burn,
}

impl Kernels {
    /// The implementation tensors on `device` take.
    pub fn of(device: &Device) -> Kernels {
        match ggml_ops::runs_on(device) {
            true => Kernels::Ggml,
            false => Kernels::Burn,
        }
    }
}

/// `x · Wᵀ` for an f32 weight `[n_out, n_in]` (ggml's `mul_mat(W, x)`).
///
/// # Shapes
/// - `x`: `[batch, seq, n_in]`, `weight`: `[n_out, n_in]`
/// - output: `[batch, seq, n_out]`
pub fn mul_mat(x: Tensor<3>, weight: Tensor<2>) -> Tensor<3> {
    let [batch, seq, n_in] = x.dims();
    let [n_out, _] = weight.dims();
    let rows: Tensor<2> = x.reshape([batch * seq, n_in]);
    let y = match Kernels::of(&rows.device()) {
        Kernels::Ggml => ggml_ops::mul_mat(rows, weight),
        Kernels::Burn => rows.matmul(weight.transpose()),
    }; // [batch · seq, n_out]
    y.reshape([batch, seq, n_out])
}

/// `x / sqrt(mean(x²) + eps) · weight` over the last dimension (ggml's `rms_norm` then `mul`).
///
/// # Shapes
/// - `x`: `[batch, seq, dim]`, `weight`: `[dim]`
/// - output: `[batch, seq, dim]`
pub fn rms_norm(x: Tensor<3>, weight: Tensor<1>, eps: f32) -> Tensor<3> {
    if Kernels::of(&x.device()) == Kernels::Ggml {
        return ggml_ops::rms_norm(x, weight, eps);
    }
    let mean_sq = x.clone().square().mean_dim(2); // [batch, seq, 1]
    let inv_rms = (mean_sq + eps).sqrt().recip(); // [batch, seq, 1]
    x * inv_rms * weight.unsqueeze::<3>() // [batch, seq, dim]
}

/// `silu(gate) · up` (ggml's `swiglu`).
///
/// # Shapes
/// - `gate`, `up`: `[batch, seq, n_ff]`
/// - output: `[batch, seq, n_ff]`
pub fn swiglu(gate: Tensor<3>, up: Tensor<3>) -> Tensor<3> {
    let ggml = |t: &Tensor<3>| Kernels::of(&t.device()) == Kernels::Ggml;
    match ggml(&gate) && ggml(&up) {
        true => ggml_ops::swiglu(gate, up),
        false => silu(gate) * up,
    }
}

/// `gelu(gate) · up` with GELU's tanh approximation (ggml's `geglu`): on the CPU devices ggml's
/// own (GELU looked up in its table of f16 values), elsewhere
/// `0.5 · g · (1 + tanh(sqrt(2/π) · (g + 0.044715 · g³)))`.
///
/// # Shapes
/// - `gate`, `up`: `[batch, seq, n_ff]`
/// - output: `[batch, seq, n_ff]`
pub fn geglu(gate: Tensor<3>, up: Tensor<3>) -> Tensor<3> {
    let ggml = |t: &Tensor<3>| Kernels::of(&t.device()) == Kernels::Ggml;
    if ggml(&gate) && ggml(&up) {
        return ggml_ops::geglu(gate, up);
    }
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let inner = (gate.clone().square() * 0.044715 + 1.0) * gate.clone() * SQRT_2_OVER_PI;
    (inner.tanh() + 1.0) * gate * 0.5 * up
}

/// `x · s` (ggml's `scale`; one rounding per element on every device).
pub fn scale<const D: usize>(x: Tensor<D>, s: f32) -> Tensor<D> {
    x * s
}

/// `cap · tanh(x / cap)` as ggml's graph computes it: `scale(tanh(scale(x, 1/cap)), cap)`.
pub fn softcap<const D: usize>(x: Tensor<D>, cap: f32) -> Tensor<D> {
    scale(scale(x, 1.0 / cap).tanh(), cap)
}

/// The rotation tables of one run of positions, for [`rope`]: the angles' cosines and sines
/// laid out to broadcast against a head tensor viewed as `[batch, seq, heads, a, b]`, and on the
/// CPU devices ggml's own table.
#[derive(Debug, Clone)]
pub struct RopeTables {
    /// `(cos, cos)`: `[1, seq, 1, n_rot/2, 2]` (adjacent) or `[1, seq, 1, 2, n_rot/2]` (halves).
    cos: Tensor<5>,
    /// `(-sin, sin)`, shaped as `cos`.
    sin: Tensor<5>,
    /// On the CPU devices, ggml's own table `[seq, n_rot]` of `(cos, sin)` pairs, for
    /// [`ggml_ops::rope`] (ggml's rotation bit for bit).
    ggml: Option<Tensor<2>>,
    seq: usize,
    n_rot: usize,
    style: RopeStyle,
}

impl RopeTables {
    /// The tables of the angles `[seq, n_rot / 2]` (row-major) of `seq` positions on `device`,
    /// cosines and sines times `mscale` (ggml's `cosf(θ) · mscale`, `sinf(θ) · mscale`).
    pub(crate) fn new(
        angles: &[f32],
        mscale: f32,
        seq: usize,
        n_rot: usize,
        style: RopeStyle,
        device: &Device,
    ) -> RopeTables {
        let half = n_rot / 2;
        let cs = |a: f32| (a.cos() * mscale, a.sin() * mscale);
        let mut cos = Vec::with_capacity(seq * n_rot);
        let mut sin = Vec::with_capacity(seq * n_rot);
        for row in angles.chunks_exact(half.max(1)).take(seq) {
            match style {
                // [half, 2]: (cos_i, cos_i), (-sin_i, sin_i)
                RopeStyle::Adjacent => {
                    for &a in row {
                        let (c, s) = cs(a);
                        cos.extend_from_slice(&[c, c]);
                        sin.extend_from_slice(&[-s, s]);
                    }
                }
                // [2, half]: (cos_0 .. cos_h), (cos_0 .. cos_h) and (-sin ..), (sin ..)
                RopeStyle::Halves => {
                    cos.extend(row.iter().map(|&a| cs(a).0));
                    cos.extend(row.iter().map(|&a| cs(a).0));
                    sin.extend(row.iter().map(|&a| -cs(a).1));
                    sin.extend(row.iter().map(|&a| cs(a).1));
                }
            }
        }
        let shape = pair_shape(n_rot, style, [1, seq, 1]);
        let ggml = (Kernels::of(device) == Kernels::Ggml).then(|| {
            let cache: Vec<f32> = angles
                .iter()
                .flat_map(|&a| {
                    let (c, s) = cs(a);
                    [c, s]
                })
                .collect();
            Tensor::from_data(TensorData::new(cache, [seq, n_rot]), device)
        });
        RopeTables {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
            ggml,
            seq,
            n_rot,
            style,
        }
    }
}

/// `[batch, seq, heads, a, b]` with `a · b = n_rot` and the partner axis of size 2 where the
/// style puts it.
fn pair_shape(n_rot: usize, style: RopeStyle, [batch, seq, heads]: [usize; 3]) -> [usize; 5] {
    let half = n_rot / 2;
    match style {
        RopeStyle::Adjacent => [batch, seq, heads, half, 2],
        RopeStyle::Halves => [batch, seq, heads, 2, half],
    }
}

/// Rotates the first `n_rot` elements of each head by the angles of its position (see
/// [`crate::model::rope`]): on the CPU devices ggml's `rope`, elsewhere `x · C + swap(x) · S`, the
/// rotated part of a head viewed as `[n_rot/2, 2]` (adjacent) or `[2, n_rot/2]` (halves), `swap`
/// flipping the axis of size 2 so that each element meets its partner, `C = (cos, cos)` and
/// `S = (-sin, sin)` laid out along the same axes. Elements past `n_rot` pass through.
///
/// # Shapes
/// - `x`: `[batch, seq, heads, head_dim]`, `head_dim >= n_rot`, `seq` as in `tables`
/// - output: same
pub fn rope(x: Tensor<4>, tables: &RopeTables) -> Tensor<4> {
    let [batch, seq, heads, head_dim] = x.dims();
    debug_assert_eq!(
        seq, tables.seq,
        "RoPE tables made for another sequence length"
    );
    let (n_rot, style) = (tables.n_rot, tables.style);
    if n_rot == 0 {
        return x;
    }
    if let Some(cache) = &tables.ggml {
        if Kernels::of(&x.device()) == Kernels::Ggml {
            let neox = style == RopeStyle::Halves;
            return ggml_ops::rope(x, cache.clone(), n_rot, neox);
        }
    }
    let (rot, pass) = if n_rot < head_dim {
        let pass = x.clone().narrow(3, n_rot, head_dim - n_rot);
        (x.narrow(3, 0, n_rot), Some(pass))
    } else {
        (x, None)
    };
    let shape = pair_shape(n_rot, style, [batch, seq, heads]);
    let partner_axis = match style {
        RopeStyle::Adjacent => 4,
        RopeStyle::Halves => 3,
    };
    let pairs: Tensor<5> = rot.reshape(shape); // [batch, seq, heads, a, b]
    let swapped = pairs.clone().flip([partner_axis]); // each element beside its partner
    let rotated = pairs * tables.cos.clone() + swapped * tables.sin.clone();
    let rotated: Tensor<4> = rotated.reshape([batch, seq, heads, n_rot]);
    match pass {
        Some(pass) => Tensor::cat(vec![rotated, pass], 3),
        None => rotated,
    }
}

/// Causal masks by group size and window, made once per forward pass (for the attention of
/// Burn's ops).
#[derive(Debug, Default)]
pub struct MaskCache {
    masks: Vec<((usize, Option<usize>), Tensor<4>)>,
}

impl MaskCache {
    /// The additive mask of `group · seq` stacked query rows over `start + seq` keys: `-inf`
    /// where row `g · seq + i` must not see key `j`, i.e. `j > start + i`, or, with a sliding
    /// `window`, `start + i - j >= window`; else 0. `[1, 1, group · seq, start + seq]`, broadcast
    /// over batch and heads.
    fn get(
        &mut self,
        group: usize,
        window: Option<usize>,
        start: usize,
        seq: usize,
        device: &Device,
    ) -> Tensor<4> {
        if let Some((_, m)) = self.masks.iter().find(|(k, _)| *k == (group, window)) {
            return m.clone();
        }
        let n_keys = start + seq;
        let mut data = Vec::with_capacity(group * seq * n_keys);
        for _ in 0..group {
            for i in 0..seq {
                let p = start + i;
                data.extend((0..n_keys).map(|j| {
                    let outside = window.is_some_and(|w| j + w <= p);
                    if j > p || outside {
                        f32::NEG_INFINITY
                    } else {
                        0.0
                    }
                }));
            }
        }
        let mask =
            Tensor::<4>::from_data(TensorData::new(data, [1, 1, group * seq, n_keys]), device);
        self.masks.push(((group, window), mask.clone()));
        mask
    }
}

/// The attention's parameters besides its tensors: the scale of the scores and the sliding
/// window, if the layer has one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionParams {
    /// Applied to `q · k` inside the softmax.
    pub scale: f32,
    /// Each query sees at most this many keys (its own position and the ones before).
    pub window: Option<usize>,
}

/// Causal grouped-query attention of `seq` new positions over the cached ones and themselves:
/// appends `k` and `v` at positions `cache.len() ..` of layer `layer` of the cache, then
/// `softmax(q · kᵀ · scale + mask) · v` per head (`params`; the mask also hides keys outside a
/// sliding window), all heads concatenated (the input of the output projection, llama.cpp's
/// `kqv_out`).
///
/// With a q8_0 key cache, queries and keys are first rotated as llama.cpp rotates them (its
/// `attn_rot_k`, see [`crate::model::CacheTypes::key_rotation`]). On the CPU devices, whose
/// cache holds its elements' bits, this is ggml's attention bit for bit
/// ([`ggml_ops::attention`], reading the cache tensors in place); elsewhere it is composed of
/// Burn's ops, as described in the [module documentation](self).
///
/// # Shapes
/// - `q`: `[batch, seq, n_head, key_length]`, `k`: `[batch, seq, n_head_kv, key_length]`,
///   `v`: `[batch, seq, n_head_kv, value_length]` (queries and keys after RoPE)
/// - output: `[batch, seq, n_head · value_length]`
pub fn attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    cache: &mut KvCache,
    layer: usize,
    masks: &mut MaskCache,
    params: AttentionParams,
) -> Result<Tensor<3>, ModelError> {
    let [batch, seq, n_head, dk] = q.dims();
    let [_, _, n_kv, dv] = v.dims();
    let group = n_head / n_kv;
    let device = q.device();
    let start = cache.len();

    let (q, k) = match cache.types().key_rotation(dk) {
        Some(n) => (hadamard(q, n), hadamard(k, n)),
        None => (q, k),
    };
    let AttentionParams { scale, window } = params;
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
        return Ok(ggml_ops::attention(q, keys, values_t, start, scale, window));
        // [batch, seq, n_head · dv]
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
    // Causal mask; a single new position sees every cached key and needs none, unless a
    // sliding window hides some.
    let windowed = window.is_some_and(|w| start + seq > w);
    let scores = if seq > 1 || windowed {
        scores + masks.get(group, window, start, seq, &device)
    } else {
        scores
    };
    let probs = types.v.round(softmax(scores, 3)); // over the keys
    let context = probs.matmul(values); // [batch, n_kv, group · seq, dv]

    // Back to [batch, seq, n_head · dv], heads in order h = kv · group + g.
    let context: Tensor<5> = context.reshape([batch, n_kv, group, seq, dv]);
    Ok(context
        .permute([0, 3, 1, 2, 4]) // [batch, seq, n_kv, group, dv]
        .reshape([batch, seq, n_head * dv]))
}

/// Every `n` consecutive elements of `x` (`n` a power of two dividing its last dimension) times
/// the orthonormal Walsh-Hadamard matrix of order `n` (Sylvester's, entries `±1 / sqrt(n)`,
/// symmetric): on the CPU devices ggml's fast transform ([`ggml_ops::fwht`], its order), elsewhere
/// a matmul with the matrix.
pub fn hadamard(x: Tensor<4>, n: usize) -> Tensor<4> {
    let device = x.device();
    if Kernels::of(&device) == Kernels::Ggml {
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
