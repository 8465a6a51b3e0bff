//! A linear layer `y = x · Wᵀ (+ b)` with a GGUF-oriented [`Weight`] (dense f32, or kept in its
//! GGUF blocks and multiplied by the fused quantized-matmul kernels of `gguf-kernels`), and an
//! optional LoRA adapter.

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use gguf_kernels::packed::QWeight;

use crate::model::error::ModelError;
use crate::model::lora::{check_adapter_shape, merge_weight, LoraAdapter};
use crate::model::weight::Weight;

/// `y = x · Wᵀ (+ b)` with `W` in the row-major GGUF shape `[n_out, n_in]` (ggml
/// `ne = [n_in, n_out]`): each output is the dot product of `x` with a contiguous row of `W`, as
/// in ggml's `mul_mat(W, x)`.
///
/// An optional LoRA adapter adds `scale · (x · Aᵀ) · Bᵀ` (see [`crate::model::lora`]).
#[derive(Module, Debug)]
pub struct Linear {
    /// `[n_out, n_in]`.
    weight: Weight,
    /// `[n_out]`
    bias: Option<Param<Tensor<1>>>,
    /// A LoRA adapter on this layer.
    lora: Option<LoraAdapter>,
}

impl Linear {
    /// A layer from its f32 weight `[n_out, n_in]` and optional bias `[n_out]`.
    pub fn new(weight: Tensor<2>, bias: Option<Tensor<1>>) -> Linear {
        Linear::from_weight(Weight::dense(weight), bias)
    }

    /// A layer whose weight stays in its GGUF blocks on the device.
    pub fn quantized(weight: QWeight, bias: Option<Tensor<1>>) -> Linear {
        Linear::from_weight(Weight::Quantized(weight), bias)
    }

    /// A layer from its weight `[n_out, n_in]` and optional bias `[n_out]`.
    pub fn from_weight(weight: Weight, bias: Option<Tensor<1>>) -> Linear {
        Linear {
            weight,
            bias: bias.map(Param::from_tensor),
            lora: None,
        }
    }

    /// A layer from its parameters (a record's skeleton).
    pub(crate) fn from_parts(
        weight: Weight,
        bias: Option<Param<Tensor<1>>>,
        lora: Option<LoraAdapter>,
    ) -> Linear {
        Linear { weight, bias, lora }
    }

    /// `[n_out, n_in]`.
    pub fn shape(&self) -> [usize; 2] {
        self.weight.shape()
    }

    /// The weight `[n_out, n_in]`.
    pub fn weight(&self) -> &Weight {
        &self.weight
    }

    /// The LoRA adapter, if any.
    pub fn adapter(&self) -> Option<&LoraAdapter> {
        self.lora.as_ref()
    }

    /// Removes the adapter and returns it.
    pub(crate) fn take_adapter(&mut self) -> Option<LoraAdapter> {
        self.lora.take()
    }

    /// The layer with `adapter` in place of its own (none with `None`).
    ///
    /// # Panics
    /// If the adapter's shapes do not fit the layer (`[rank, n_in]`, `[n_out, rank]`): the
    /// public constructors ([`crate::model::Llama::with_lora`]) build them from the layer.
    pub(crate) fn with_adapter(self, adapter: Option<LoraAdapter>) -> Linear {
        if let Some(a) = &adapter {
            check_adapter_shape(&self, a).expect("adapter built for this layer");
        }
        Linear {
            lora: adapter,
            ..self
        }
    }

    /// The layer with its adapter folded into a dense f32 weight (`W + scale · B · A`) on the
    /// weight's device; unchanged without an adapter.
    pub(crate) fn merged(self) -> Result<Linear, ModelError> {
        let Some(adapter) = self.lora else {
            return Ok(self);
        };
        let device = self.weight.device();
        let merged = merge_weight(self.weight.to_f32()?, &adapter, &device);
        Ok(Linear {
            weight: Weight::dense(merged),
            bias: self.bias,
            lora: None,
        })
    }

    /// Whether the weight is kept quantized.
    pub fn is_quantized(&self) -> bool {
        self.weight.is_quantized()
    }

    /// The quantized weight when the layer keeps the file's blocks.
    pub fn quantized_weight(&self) -> Option<&QWeight> {
        self.weight.as_quantized()
    }

    /// The f32 weight `[n_out, n_in]` when the layer is dense.
    pub fn dense_weight(&self) -> Option<Tensor<2>> {
        self.weight.as_dense()
    }

    /// The bias `[n_out]`, if any.
    pub fn bias(&self) -> Option<Tensor<1>> {
        self.bias.as_ref().map(Param::val)
    }

    /// Whether the layer adds a bias.
    pub fn has_bias(&self) -> bool {
        self.bias.is_some()
    }

    /// `x · Wᵀ (+ b) (+ scale · (x · Aᵀ) · Bᵀ)`.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, n_in]`
    /// - output: `[batch, seq, n_out]`
    pub fn forward(&self, x: Tensor<3>) -> Result<Tensor<3>, ModelError> {
        let delta = self.lora.as_ref().map(|a| a.forward(x.clone()));
        let y = self.weight.mul_mat(x)?; // [batch, seq, n_out]
        let y = match &self.bias {
            Some(b) => y + b.val().unsqueeze::<3>(),
            None => y,
        };
        Ok(match delta {
            Some(d) => y + d,
            None => y,
        })
    }
}
