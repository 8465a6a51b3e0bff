//! A linear layer with a GGUF-oriented weight: dense f32, or kept in its GGUF blocks and multiplied
//! by the fused quantized-matmul kernels of `gguf-kernels` (on every device).

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use gguf_kernels::extension::{dequantize, q_matmul_3d};
use gguf_kernels::ggml_ops;
use gguf_kernels::packed::QWeight;

use crate::model::error::ModelError;
use crate::model::lora::{check_adapter_shape, merge_weight, LoraAdapter};

/// `y = x · Wᵀ (+ b)` with `W` in the row-major GGUF shape `[n_out, n_in]` (ggml
/// `ne = [n_in, n_out]`): each output is the dot product of `x` with a contiguous row of `W`, as
/// in ggml's `mul_mat(W, x)`.
///
/// Exactly one of `dense` and `quantized` is set; either is part of the module's record (the
/// quantized one as its packed u32 words, see [`QWeight`]). An optional LoRA adapter adds
/// `scale · (x · Aᵀ) · Bᵀ` (see [`crate::model::lora`]).
#[derive(Module, Debug)]
pub struct Linear {
    /// `[n_out, n_in]`, f32.
    dense: Option<Param<Tensor<2>>>,
    /// `[n_out, n_in]` in the file's blocks.
    quantized: Option<QWeight>,
    /// `[n_out]`
    bias: Option<Param<Tensor<1>>>,
    /// A LoRA adapter on this layer.
    lora: Option<LoraAdapter>,
}

impl Linear {
    /// A layer from its f32 weight `[n_out, n_in]` and optional bias `[n_out]`.
    pub fn new(weight: Tensor<2>, bias: Option<Tensor<1>>) -> Linear {
        Linear {
            dense: Some(Param::from_tensor(weight)),
            quantized: None,
            bias: bias.map(Param::from_tensor),
            lora: None,
        }
    }

    /// A layer whose weight stays in its GGUF blocks on the device.
    pub fn quantized(weight: QWeight, bias: Option<Tensor<1>>) -> Linear {
        Linear {
            dense: None,
            quantized: Some(weight),
            bias: bias.map(Param::from_tensor),
            lora: None,
        }
    }

    /// A layer from its parameters (a record's skeleton); exactly one of `dense` and `quantized`
    /// must be set.
    pub(crate) fn from_parts(
        dense: Option<Param<Tensor<2>>>,
        quantized: Option<QWeight>,
        bias: Option<Param<Tensor<1>>>,
        lora: Option<LoraAdapter>,
    ) -> Linear {
        Linear {
            dense,
            quantized,
            bias,
            lora,
        }
    }

    /// `[n_out, n_in]`.
    pub fn shape(&self) -> [usize; 2] {
        match (&self.dense, &self.quantized) {
            (Some(w), _) => w.dims(),
            (None, Some(q)) => [q.rows(), q.cols()],
            (None, None) => [0, 0],
        }
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
        let (weight, device) = match (self.dense, self.quantized) {
            (Some(w), _) => {
                let w = w.val();
                let device = w.device();
                (w, device)
            }
            (None, Some(q)) => (dequantize(&q)?, q.device()),
            (None, None) => {
                return Err(ModelError::InvalidInput {
                    what: "a linear layer without a weight".into(),
                })
            }
        };
        let merged = merge_weight(weight, &adapter, &device);
        Ok(Linear {
            dense: Some(Param::from_tensor(merged)),
            quantized: None,
            bias: self.bias,
            lora: None,
        })
    }

    /// Whether the weight is kept quantized.
    pub fn is_quantized(&self) -> bool {
        self.quantized.is_some()
    }

    /// The quantized weight when the layer keeps the file's blocks.
    pub fn quantized_weight(&self) -> Option<&QWeight> {
        self.quantized.as_ref()
    }

    /// The f32 weight `[n_out, n_in]` when the layer is dense.
    pub fn dense_weight(&self) -> Option<Tensor<2>> {
        self.dense.as_ref().map(Param::val)
    }

    /// The bias `[n_out]`, if any.
    pub fn bias(&self) -> Option<Tensor<1>> {
        self.bias.as_ref().map(Param::val)
    }

    /// Whether the layer adds a bias.
    pub fn has_bias(&self) -> bool {
        self.bias.is_some()
    }

    /// # Shapes
    /// - `x`: `[batch, seq, n_in]`
    /// - output: `[batch, seq, n_out]`
    pub fn forward(&self, x: Tensor<3>) -> Result<Tensor<3>, ModelError> {
        let bias = self.bias.as_ref().map(Param::val);
        let delta = self.lora.as_ref().map(|a| a.forward(x.clone()));
        let y = match (&self.dense, &self.quantized) {
            (Some(w), _) => project(x, w.val(), bias),
            (None, Some(q)) => {
                let y = q_matmul_3d(x, q)?; // [batch, seq, n_out]
                match bias {
                    Some(b) => y + b.unsqueeze::<3>(),
                    None => y,
                }
            }
            (None, None) => {
                return Err(ModelError::InvalidInput {
                    what: "a linear layer without a weight".into(),
                })
            }
        };
        Ok(match delta {
            Some(d) => y + d,
            None => y,
        })
    }
}

/// `y = x · Wᵀ (+ b)` for a weight `[n_out, n_in]` that is not a [`Linear`] (the tied output).
/// On the CPU devices in ggml's order ([`ggml_ops::mul_mat`]), elsewhere Burn's matmul.
///
/// # Shapes
/// - `x`: `[batch, seq, n_in]`, `weight`: `[n_out, n_in]`, `bias`: `[n_out]`
/// - output: `[batch, seq, n_out]`
pub fn project(x: Tensor<3>, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<3> {
    let [batch, seq, n_in] = x.dims();
    let [n_out, _] = weight.dims();
    let rows: Tensor<2> = x.reshape([batch * seq, n_in]);
    let y = match ggml_ops::runs_on(&rows.device()) {
        true => ggml_ops::mul_mat(rows, weight),
        false => rows.matmul(weight.transpose()),
    }; // [batch · seq, n_out]
    let y = match bias {
        Some(b) => y + b.unsqueeze::<2>(),
        None => y,
    };
    y.reshape([batch, seq, n_out])
}
