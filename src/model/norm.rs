//! RMS normalization with a learned scale (ggml's `rms_norm` followed by `mul`), computed by
//! [`ops::rms_norm`] (ggml's order on the CPU devices, Burn's ops elsewhere).

use burn::module::{Module, Param};
use burn::tensor::Tensor;

use crate::model::ops;

/// `y = x / sqrt(mean(x²) + eps) · weight`, over the last dimension.
#[derive(Module, Debug)]
pub struct RmsNorm {
    /// `[dim]`
    weight: Param<Tensor<1>>,
    eps: f32,
}

impl RmsNorm {
    /// A norm with the given scale `[dim]` and epsilon.
    pub fn new(weight: Tensor<1>, eps: f32) -> RmsNorm {
        RmsNorm {
            weight: Param::from_tensor(weight),
            eps,
        }
    }

    /// A norm from its scale parameter `[dim]` (a record's skeleton) and epsilon.
    pub(crate) fn from_param(weight: Param<Tensor<1>>, eps: f32) -> RmsNorm {
        RmsNorm { weight, eps }
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
        ops::rms_norm(x, self.weight.val(), self.eps)
    }

    /// The norm of each head (llama.cpp's `build_norm` of `Qcur`/`Kcur` viewed as heads).
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, heads, dim]`
    /// - output: `[batch, seq, heads, dim]`
    pub fn forward_heads(&self, x: Tensor<4>) -> Tensor<4> {
        let [batch, seq, heads, dim] = x.dims();
        self.forward(x.reshape([batch, seq * heads, dim]))
            .reshape([batch, seq, heads, dim])
    }
}
