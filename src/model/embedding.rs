//! The token embedding: row `t` of `token_embd` for token `t`, a [`Weight`] dense f32 or kept in
//! the file's blocks (rows dequantized on lookup, as llama.cpp's `get_rows`). A file without
//! `output.weight` also uses it as the output projection (tied embeddings).

use burn::module::Module;
use burn::tensor::Tensor;
use gguf_kernels::packed::QWeight;

use crate::model::error::ModelError;
use crate::model::weight::Weight;

/// `[n_vocab, n_embd]`: row `t` is the embedding of token `t`.
#[derive(Module, Debug)]
pub struct Embedding {
    /// `[n_vocab, n_embd]`.
    weight: Weight,
}

impl Embedding {
    /// An embedding from its f32 matrix `[n_vocab, n_embd]`.
    pub fn new(weight: Tensor<2>) -> Embedding {
        Embedding::from_weight(Weight::dense(weight))
    }

    /// An embedding whose matrix stays in its GGUF blocks on the device.
    pub fn quantized(weight: QWeight) -> Embedding {
        Embedding::from_weight(Weight::Quantized(weight))
    }

    /// An embedding from its matrix `[n_vocab, n_embd]`.
    pub fn from_weight(weight: Weight) -> Embedding {
        Embedding { weight }
    }

    /// The matrix `[n_vocab, n_embd]`.
    pub fn weight(&self) -> &Weight {
        &self.weight
    }

    /// Whether the matrix is kept quantized.
    pub fn is_quantized(&self) -> bool {
        self.weight.is_quantized()
    }

    /// The f32 matrix `[n_vocab, n_embd]` when the embedding is dense.
    pub fn dense(&self) -> Option<Tensor<2>> {
        self.weight.as_dense()
    }

    /// The quantized matrix when the embedding keeps the file's blocks.
    pub fn quantized_weight(&self) -> Option<&QWeight> {
        self.weight.as_quantized()
    }

    /// The rows of `ids` (already checked to be in the vocabulary), from the host: a dense
    /// embedding uploads them as an index tensor, a quantized one hands them to its lookup.
    ///
    /// # Shapes
    /// - `ids`: `n` ids
    /// - output: `[n, n_embd]`
    pub fn forward(&self, ids: &[u32]) -> Result<Tensor<2>, ModelError> {
        self.weight.rows(ids)
    }

    /// The tied output projection `x · Eᵀ`: logits from hidden states.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, n_embd]`
    /// - output: `[batch, seq, n_vocab]`
    pub fn project(&self, x: Tensor<3>) -> Result<Tensor<3>, ModelError> {
        self.weight.mul_mat(x)
    }
}
