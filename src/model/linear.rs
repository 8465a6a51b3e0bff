//! A linear layer with a GGUF-oriented weight.

use burn::module::{Module, Param};
use burn::tensor::Tensor;

/// `y = x · Wᵀ (+ b)` with `W` in the row-major GGUF shape `[n_out, n_in]` (ggml
/// `ne = [n_in, n_out]`): each output is the dot product of `x` with a contiguous row of `W`, as
/// in ggml's `mul_mat(W, x)`. The transpose is a view, not a copy.
#[derive(Module, Debug)]
pub struct Linear {
    /// `[n_out, n_in]`
    weight: Param<Tensor<2>>,
    /// `[n_out]`
    bias: Option<Param<Tensor<1>>>,
}

impl Linear {
    /// A layer from its weight `[n_out, n_in]` and optional bias `[n_out]`.
    pub fn new(weight: Tensor<2>, bias: Option<Tensor<1>>) -> Linear {
        Linear {
            weight: Param::from_tensor(weight),
            bias: bias.map(Param::from_tensor),
        }
    }

    /// The weight `[n_out, n_in]`.
    pub fn weight(&self) -> Tensor<2> {
        self.weight.val()
    }

    /// # Shapes
    /// - `x`: `[batch, seq, n_in]`
    /// - output: `[batch, seq, n_out]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        project(x, self.weight.val(), self.bias.as_ref().map(Param::val))
    }
}

/// `y = x · Wᵀ (+ b)` for a weight `[n_out, n_in]` that is not a [`Linear`] (the tied output).
///
/// # Shapes
/// - `x`: `[batch, seq, n_in]`, `weight`: `[n_out, n_in]`, `bias`: `[n_out]`
/// - output: `[batch, seq, n_out]`
pub fn project(x: Tensor<3>, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<3> {
    let [batch, seq, n_in] = x.dims();
    let [n_out, _] = weight.dims();
    let rows: Tensor<2> = x.reshape([batch * seq, n_in]);
    let y = rows.matmul(weight.transpose()); // [batch · seq, n_out]
    let y = match bias {
        Some(b) => y + b.unsqueeze::<2>(),
        None => y,
    };
    y.reshape([batch, seq, n_out])
}
