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
        let [batch, seq, n_in] = x.dims();
        let weight = self.weight.val(); // [n_out, n_in]
        let [n_out, _] = weight.dims();
        let rows: Tensor<2> = x.reshape([batch * seq, n_in]);
        let y = rows.matmul(weight.transpose()); // [batch * seq, n_out]
        let y = match &self.bias {
            Some(b) => y + b.val().unsqueeze::<2>(),
            None => y,
        };
        y.reshape([batch, seq, n_out])
    }
}
