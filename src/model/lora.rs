//! LoRA adapters (Hu et al., 2021) on the linear layers of a [`Llama`], for fine-tuning on top of a
//! frozen base whose weights stay quantized (as QLoRA does).
//!
//! ```text
//! y = x · Wᵀ  +  scale · (x · Aᵀ) · Bᵀ          scale = alpha / rank
//!     └ base: quantized (or f32), frozen       A: [rank, n_in], B: [n_out, rank], trained
//! ```
//!
//! - [`Llama::with_lora`] adds an adapter to each targeted projection of every block ([`LoraTarget`],
//!   a matrix of the block's tensor table [`crate::model::tensors`]: the attention's q, k, v,
//!   output and the feed-forward's gate, up, down, as PEFT's `target_modules`). `A` starts uniform in `±1/√n_in` (PEFT's Kaiming-uniform default), `B` at
//!   zero, so the adapted model starts equal to the base. The adapters go on the device given,
//!   usually the base's device with autodiff (`device.autodiff()`): the base stays on its plain
//!   device, so its tensors are constants of the graph and only the adapters get gradients. The
//!   quantized matmul's backward pass (`gguf_kernels::extension::autodiff`) carries the gradient
//!   through the frozen quantized layers.
//! - [`Llama::merge_lora`] folds each adapter into its layer: `W' = dequantize(W) + scale · B · A`,
//!   a dense f32 layer on the base's device, which a record ([`Llama::save_record`]) or a GGUF
//!   export ([`Llama::save_gguf`], F32/F16/Q8_0) then saves like any other.
//! - A model with adapters saves and loads its adapters in its record (unmerged), on the plain
//!   device it is loaded to; to train them further, give them the autodiff device with
//!   [`Llama::map_lora`] (`LoraAdapter::from_tensors(a.a().autodiff(), a.b().autodiff(), ..)`).

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::model::error::ModelError;
use crate::model::linear::Linear;
use crate::model::llama::Llama;
use crate::model::tensors::LayerMatrix;

/// A projection of a block that can carry an adapter: a matrix of the block's tensor table,
/// named `q`, `k`, `v`, `o`, `gate`, `up`, `down` (PEFT's `target_modules`).
pub type LoraTarget = LayerMatrix;

/// Which layers get adapters, and their size.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    /// The inner dimension of `A` and `B` (at least 1).
    pub rank: usize,
    /// The adapter's output is scaled by `alpha / rank`.
    pub alpha: f32,
    /// The projections of every block that get an adapter (at least one).
    pub targets: Vec<LoraTarget>,
    /// The seed of `A`'s initial values (a ChaCha8 stream: the same on every device and run).
    pub seed: u64,
}

impl Default for LoraConfig {
    /// Rank 8, alpha 16, every projection, seed 0.
    fn default() -> Self {
        LoraConfig {
            rank: 8,
            alpha: 16.0,
            targets: LoraTarget::ALL.to_vec(),
            seed: 0,
        }
    }
}

impl LoraConfig {
    fn check(&self) -> Result<(), ModelError> {
        let bad = |what: String| Err(ModelError::InvalidInput { what });
        if self.rank == 0 {
            return bad("LoRA rank 0".into());
        }
        if !self.alpha.is_finite() {
            return bad(format!("LoRA alpha {}", self.alpha));
        }
        if self.targets.is_empty() {
            return bad("LoRA without target layers".into());
        }
        Ok(())
    }
}

/// One adapter: `delta(x) = scale · (x · Aᵀ) · Bᵀ`.
#[derive(Module, Debug)]
pub struct LoraAdapter {
    /// `[rank, n_in]`
    a: Param<Tensor<2>>,
    /// `[n_out, rank]`
    b: Param<Tensor<2>>,
    /// `alpha / rank`
    scale: f32,
}

impl LoraAdapter {
    /// An adapter from its matrices `a` `[rank, n_in]` and `b` `[n_out, rank]` (both on the same
    /// device) and its scale.
    pub fn from_tensors(a: Tensor<2>, b: Tensor<2>, scale: f32) -> Result<LoraAdapter, ModelError> {
        let ([rank, _], [_, rank_b]) = (a.dims(), b.dims());
        if rank != rank_b || rank == 0 {
            return Err(ModelError::InvalidInput {
                what: format!(
                    "LoRA matrices of shapes {:?} and {:?} (A [rank, n_in], B [n_out, rank])",
                    a.dims(),
                    b.dims()
                ),
            });
        }
        Ok(LoraAdapter {
            a: Param::from_tensor(a),
            b: Param::from_tensor(b),
            scale,
        })
    }

    /// A fresh adapter for a `[n_out, n_in]` layer: `A` uniform in `±1/√n_in` from `rng`, `B`
    /// zero.
    fn init(
        n_in: usize,
        n_out: usize,
        config: &LoraConfig,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> LoraAdapter {
        let bound = 1.0 / (n_in as f32).sqrt();
        let a: Vec<f32> = (0..config.rank * n_in)
            .map(|_| {
                let u = (rng.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32); // [0, 1)
                (2.0 * u - 1.0) * bound
            })
            .collect();
        let a = Tensor::<2>::from_data(TensorData::new(a, [config.rank, n_in]), device);
        let b = Tensor::<2>::zeros([n_out, config.rank], device);
        LoraAdapter {
            a: Param::from_tensor(a),
            b: Param::from_tensor(b),
            scale: config.alpha / config.rank as f32,
        }
    }

    /// The skeleton of a record: unallocated `[rank, n_in]` and `[n_out, rank]`.
    pub(crate) fn from_params(a: Param<Tensor<2>>, b: Param<Tensor<2>>, scale: f32) -> Self {
        LoraAdapter { a, b, scale }
    }

    /// `A` `[rank, n_in]`.
    pub fn a(&self) -> Tensor<2> {
        self.a.val()
    }

    /// `B` `[n_out, rank]`.
    pub fn b(&self) -> Tensor<2> {
        self.b.val()
    }

    /// `alpha / rank`.
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// The inner dimension.
    pub fn rank(&self) -> usize {
        self.a.dims()[0]
    }

    /// Trainable values: `rank · (n_in + n_out)`.
    pub fn num_params(&self) -> usize {
        let ([r, n_in], [n_out, _]) = (self.a.dims(), self.b.dims());
        r * (n_in + n_out)
    }

    /// `scale · (x · Aᵀ) · Bᵀ`.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, n_in]`
    /// - output: `[batch, seq, n_out]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [batch, seq, n_in] = x.dims();
        let [n_out, _] = self.b.dims();
        let x: Tensor<2> = x.reshape([batch * seq, n_in]);
        let h = x.matmul(self.a.val().transpose()); // [batch · seq, rank]
        let y = h.matmul(self.b.val().transpose()).mul_scalar(self.scale); // [batch · seq, n_out]
        y.reshape([batch, seq, n_out])
    }

    /// `scale · B · A` `[n_out, n_in]`: what the adapter adds to the layer's weight.
    pub fn delta(&self) -> Tensor<2> {
        self.b.val().matmul(self.a.val()).mul_scalar(self.scale)
    }
}

impl Llama {
    /// The model with an adapter on each projection of `config.targets` in every block, on
    /// `device` (the base's device with autodiff for training: `model.device().autodiff()`).
    /// Layers that have an adapter already get a new one in its place.
    pub fn with_lora(self, config: &LoraConfig, device: &Device) -> Result<Llama, ModelError> {
        config.check()?;
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        self.map_block_linears(&mut |_, target, linear| {
            if !config.targets.contains(&target) {
                return Ok(linear);
            }
            let [n_out, n_in] = linear.shape();
            let adapter = LoraAdapter::init(n_in, n_out, config, &mut rng, device);
            Ok(linear.with_adapter(Some(adapter)))
        })
    }

    /// The model with every adapter folded into its layer (`W + scale · B · A`, a dense f32 layer
    /// on the base's device, without autodiff); layers without an adapter are unchanged.
    pub fn merge_lora(self) -> Result<Llama, ModelError> {
        self.map_block_linears(&mut |_, _, linear| linear.merged())
    }

    /// The model without its adapters (the base as it was).
    pub fn without_lora(self) -> Result<Llama, ModelError> {
        self.map_block_linears(&mut |_, _, linear| Ok(linear.with_adapter(None)))
    }

    /// The model with `f(layer, target, adapter)` in place of each adapter (to set their values,
    /// move them to another device ...); layers without one are unchanged. The result must fit
    /// the layer (`[rank, n_in]`, `[n_out, rank]`).
    pub fn map_lora(
        self,
        f: &mut dyn FnMut(usize, LoraTarget, LoraAdapter) -> Result<LoraAdapter, ModelError>,
    ) -> Result<Llama, ModelError> {
        self.map_block_linears(&mut |layer, target, mut linear| {
            let Some(adapter) = linear.take_adapter() else {
                return Ok(linear);
            };
            let adapter = f(layer, target, adapter)?;
            check_adapter_shape(&linear, &adapter)?;
            Ok(linear.with_adapter(Some(adapter)))
        })
    }

    /// The adapters, by block and target.
    pub fn lora_adapters(&self) -> Vec<(usize, LoraTarget, &LoraAdapter)> {
        let mut out = Vec::new();
        for (layer, block) in self.blocks().iter().enumerate() {
            for target in LoraTarget::ALL {
                if let Some(a) = block.linear(target).and_then(Linear::adapter) {
                    out.push((layer, target, a));
                }
            }
        }
        out
    }

    /// Trainable values in the adapters.
    pub fn lora_num_params(&self) -> usize {
        self.lora_adapters()
            .iter()
            .map(|(_, _, a)| a.num_params())
            .sum()
    }
}

/// Folds `adapter` into a weight `[n_out, n_in]` on `device`.
pub(crate) fn merge_weight(weight: Tensor<2>, adapter: &LoraAdapter, device: &Device) -> Tensor<2> {
    let delta = adapter.delta().without_autodiff().to_device(device);
    weight.without_autodiff() + delta
}

/// Whether `adapter` fits `linear`'s `[n_out, n_in]` weight.
pub(crate) fn check_adapter_shape(
    linear: &Linear,
    adapter: &LoraAdapter,
) -> Result<(), ModelError> {
    let [n_out, n_in] = linear.shape();
    let ([_, a_in], [b_out, _]) = (adapter.a.dims(), adapter.b.dims());
    if a_in != n_in || b_out != n_out {
        return Err(ModelError::InvalidInput {
            what: format!(
                "LoRA adapter A {:?}, B {:?} on a [{n_out}, {n_in}] layer",
                adapter.a.dims(),
                adapter.b.dims()
            ),
        });
    }
    Ok(())
}
