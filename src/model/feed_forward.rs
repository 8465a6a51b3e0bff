//! The SwiGLU feed-forward network: `down(silu(gate(x)) · up(x))` (llama.cpp's `build_ffn` with
//! `LLM_FFN_SILU` and `LLM_FFN_PAR`).

use burn::module::Module;
use burn::tensor::activation::silu;
use burn::tensor::Tensor;
use gguf_kernels::ggml_ops;

use crate::model::error::ModelError;
use crate::model::linear::Linear;

/// The feed-forward network of one block.
#[derive(Module, Debug)]
pub struct FeedForward {
    /// `[n_ff, n_embd]`
    gate: Linear,
    /// `[n_ff, n_embd]`
    up: Linear,
    /// `[n_embd, n_ff]`
    down: Linear,
}

impl FeedForward {
    /// A network from its projections (see the field shapes).
    pub fn new(gate: Linear, up: Linear, down: Linear) -> FeedForward {
        FeedForward { gate, up, down }
    }

    /// The projections: gate, up, down.
    pub fn linears(&self) -> [&Linear; 3] {
        [&self.gate, &self.up, &self.down]
    }

    /// The network with `f(i, projection)` in place of each projection `i` of
    /// [`FeedForward::linears`].
    pub(crate) fn map_linears(
        self,
        f: &mut dyn FnMut(usize, Linear) -> Result<Linear, ModelError>,
    ) -> Result<FeedForward, ModelError> {
        Ok(FeedForward {
            gate: f(0, self.gate)?,
            up: f(1, self.up)?,
            down: f(2, self.down)?,
        })
    }

    /// Runs the network of block `layer`, reporting `ffn_gate-{i}`, `ffn_up-{i}` (the
    /// projections) and `ffn_swiglu-{i}` (`silu(gate) · up`) to `trace`.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, n_embd]` (normalized)
    /// - output: `[batch, seq, n_embd]`
    pub fn forward(
        &self,
        x: Tensor<3>,
        layer: usize,
        trace: &mut dyn FnMut(&str, Tensor<3>),
    ) -> Result<Tensor<3>, ModelError> {
        let gate = self.gate.forward(x.clone())?; // [batch, seq, n_ff]
        trace(&format!("ffn_gate-{layer}"), gate.clone());
        let up = self.up.forward(x)?; // [batch, seq, n_ff]
        trace(&format!("ffn_up-{layer}"), up.clone());
        // ggml's swiglu bit for bit on the CPU devices, Burn's ops elsewhere.
        let swiglu = if ggml_ops::runs_on(&gate.device()) && ggml_ops::runs_on(&up.device()) {
            ggml_ops::swiglu(gate, up)
        } else {
            silu(gate) * up
        }; // [batch, seq, n_ff]
        trace(&format!("ffn_swiglu-{layer}"), swiglu.clone());
        self.down.forward(swiglu) // [batch, seq, n_embd]
    }
}
