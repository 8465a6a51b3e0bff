//! The gated feed-forward network: `down(act(gate(x)) · up(x))`, SwiGLU (`act = silu`) or GeGLU
//! (`act = gelu`, Gemma) (llama.cpp's `build_ffn` with `LLM_FFN_SILU` or `LLM_FFN_GELU` and
//! `LLM_FFN_PAR`).

use burn::module::Module;
use burn::tensor::Tensor;

use crate::model::config::Activation;
use crate::model::context::ForwardContext;
use crate::model::error::ModelError;
use crate::model::linear::Linear;
use crate::model::ops;
use crate::model::tensors::LayerMatrix;

/// The feed-forward network of one block.
#[derive(Module, Debug)]
pub struct FeedForward {
    /// `[n_ff, n_embd]`
    gate: Linear,
    /// `[n_ff, n_embd]`
    up: Linear,
    /// `[n_embd, n_ff]`
    down: Linear,
    #[module(skip)]
    activation: Activation,
}

impl FeedForward {
    /// A network from its projections (see the field shapes).
    pub fn new(gate: Linear, up: Linear, down: Linear) -> FeedForward {
        FeedForward {
            gate,
            up,
            down,
            activation: Activation::Silu,
        }
    }

    /// The network with the gate's activation `activation` (SiLU by default).
    pub fn with_activation(self, activation: Activation) -> FeedForward {
        FeedForward { activation, ..self }
    }

    /// The gate's activation.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// The projections: gate, up, down ([`LayerMatrix::FEED_FORWARD`]).
    pub fn linears(&self) -> [&Linear; 3] {
        [&self.gate, &self.up, &self.down]
    }

    /// The projection of `matrix`, if it is one of this network's.
    pub fn linear(&self, matrix: LayerMatrix) -> Option<&Linear> {
        match matrix {
            LayerMatrix::FfnGate => Some(&self.gate),
            LayerMatrix::FfnUp => Some(&self.up),
            LayerMatrix::FfnDown => Some(&self.down),
            _ => None,
        }
    }

    /// The network with `f(matrix, projection)` in place of each projection.
    pub(crate) fn map_linears(
        self,
        f: &mut dyn FnMut(LayerMatrix, Linear) -> Result<Linear, ModelError>,
    ) -> Result<FeedForward, ModelError> {
        Ok(FeedForward {
            gate: f(LayerMatrix::FfnGate, self.gate)?,
            up: f(LayerMatrix::FfnUp, self.up)?,
            down: f(LayerMatrix::FfnDown, self.down)?,
            activation: self.activation,
        })
    }

    /// `down(act(gate · x) · up · x)`, reporting `ffn_gate`, `ffn_up` (the projections) and
    /// `ffn_swiglu` (`silu(gate) · up`) or `ffn_geglu` (`gelu(gate) · up`) to the context's trace.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, n_embd]` (normalized)
    /// - output: `[batch, seq, n_embd]`
    pub fn forward(
        &self,
        x: Tensor<3>,
        ctx: &mut ForwardContext<'_>,
    ) -> Result<Tensor<3>, ModelError> {
        let gate = self.gate.forward(x.clone())?; // [batch, seq, n_ff]
        ctx.trace("ffn_gate", &gate);
        let up = self.up.forward(x)?; // [batch, seq, n_ff]
        ctx.trace("ffn_up", &up);
        let gated = match self.activation {
            Activation::Silu => ops::swiglu(gate, up), // [batch, seq, n_ff]
            Activation::Gelu => ops::geglu(gate, up),  // [batch, seq, n_ff]
        };
        let name = match self.activation {
            Activation::Silu => "ffn_swiglu",
            Activation::Gelu => "ffn_geglu",
        };
        ctx.trace(name, &gated);
        self.down.forward(gated) // [batch, seq, n_embd]
    }
}
