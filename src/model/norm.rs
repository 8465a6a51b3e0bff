//! RMS normalization with a learned scale (ggml's `rms_norm` followed by `mul`).
//!
//! On the CPU devices it runs as ggml's CPU backend computes it, bit for bit
//! ([`gguf_kernels::ggml_ops::rms_norm`]); elsewhere with Burn's tensor operations.

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use gguf_kernels::ggml_ops;

/// `y = x / sqrt(mean(x²) + eps) · weight`, over the last dimension.
#[derive(Module, Debug)]
pub struct RmsNorm {
    /// `[dim]`
    weight: Param<Tensor<1>>,
    eps: f64,
}

impl RmsNorm {
    /// A norm with the given scale `[dim]` and epsilon.
    pub fn new(weight: Tensor<1>, eps: f32) -> RmsNorm {
        RmsNorm {
            weight: Param::from_tensor(weight),
            eps: eps as f64,
        }
    }

    /// A norm from its scale parameter `[dim]` (a record's skeleton) and epsilon.
    pub(crate) fn from_param(weight: Param<Tensor<1>>, eps: f32) -> RmsNorm {
        RmsNorm {
            weight,
            eps: eps as f64,
        }
    }

    /// The scale `[dim]`.
    pub fn weight(&self) -> Tensor<1> {
        self.weight.val()
    }

    /// The device of the scale.
    pub fn device(&self) -> burn::tensor::Device {
        self.weight.val().device()
    }

    /// # Shapes
    /// - `x`: `[batch, seq, dim]`
    /// - output: `[batch, seq, dim]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        if ggml_ops::runs_on(&x.device()) {
            return ggml_ops::rms_norm(x, self.weight.val(), self.eps as f32);
        }
        let mean_sq = x.clone().square().mean_dim(2); // [batch, seq, 1]
        let inv_rms = (mean_sq + self.eps).sqrt().recip(); // [batch, seq, 1]
        x * inv_rms * self.weight.val().unsqueeze::<3>() // [batch, seq, dim]
    }
}
