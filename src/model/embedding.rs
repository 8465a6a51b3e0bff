//! The token embedding: row `t` of `token_embd` for token `t`, dense f32 or kept in the file's
//! blocks (rows dequantized on lookup, as llama.cpp's `get_rows`). A file without `output.weight`
//! also uses it as the output projection (tied embeddings).

use burn::module::{Module, Param};
use burn::tensor::{Int, Tensor, TensorData};
use gguf_kernels::extension::{q_get_rows, q_matmul_3d};
use gguf_kernels::packed::QWeight;

use crate::model::error::ModelError;
use crate::model::linear::project;

/// `[n_vocab, n_embd]`: row `t` is the embedding of token `t`. Exactly one of `dense` and
/// `quantized` is set.
#[derive(Module, Debug)]
pub struct Embedding {
    /// `[n_vocab, n_embd]`, f32.
    dense: Option<Param<Tensor<2>>>,
    /// `[n_vocab, n_embd]` in the file's blocks.
    quantized: Option<QWeight>,
}

impl Embedding {
    /// An embedding from its f32 matrix `[n_vocab, n_embd]`.
    pub fn new(weight: Tensor<2>) -> Embedding {
        Embedding {
            dense: Some(Param::from_tensor(weight)),
            quantized: None,
        }
    }

    /// An embedding whose matrix stays in its GGUF blocks on the device.
    pub fn quantized(weight: QWeight) -> Embedding {
        Embedding {
            dense: None,
            quantized: Some(weight),
        }
    }

    /// An embedding from its parameters (a record's skeleton); exactly one must be set.
    pub(crate) fn from_parts(
        dense: Option<Param<Tensor<2>>>,
        quantized: Option<QWeight>,
    ) -> Embedding {
        Embedding { dense, quantized }
    }

    /// Whether the matrix is kept quantized.
    pub fn is_quantized(&self) -> bool {
        self.quantized.is_some()
    }

    /// The f32 matrix `[n_vocab, n_embd]` when the embedding is dense.
    pub fn dense(&self) -> Option<Tensor<2>> {
        self.dense.as_ref().map(Param::val)
    }

    /// The quantized matrix when the embedding keeps the file's blocks.
    pub fn quantized_weight(&self) -> Option<&QWeight> {
        self.quantized.as_ref()
    }

    /// The rows of `ids` (already checked to be in the vocabulary), from the host: a dense
    /// embedding uploads them as an index tensor, a quantized one hands them to its lookup.
    ///
    /// # Shapes
    /// - `ids`: `n` ids
    /// - output: `[n, n_embd]`
    pub fn forward(&self, ids: &[u32]) -> Result<Tensor<2>, ModelError> {
        match (&self.dense, &self.quantized) {
            (Some(w), _) => {
                let w = w.val();
                let data: Vec<i64> = ids.iter().map(|&t| t as i64).collect();
                let tokens =
                    Tensor::<1, Int>::from_data(TensorData::new(data, [ids.len()]), &w.device());
                Ok(w.select(0, tokens))
            }
            (None, Some(q)) => Ok(q_get_rows(q, ids)?),
            (None, None) => Err(missing()),
        }
    }

    /// The tied output projection `x · Eᵀ`: logits from hidden states.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, n_embd]`
    /// - output: `[batch, seq, n_vocab]`
    pub fn project(&self, x: Tensor<3>) -> Result<Tensor<3>, ModelError> {
        match (&self.dense, &self.quantized) {
            (Some(w), _) => Ok(project(x, w.val(), None)),
            (None, Some(q)) => Ok(q_matmul_3d(x, q)?),
            (None, None) => Err(missing()),
        }
    }
}

fn missing() -> ModelError {
    ModelError::InvalidInput {
        what: "an embedding without a weight".into(),
    }
}
