//! The crate's error: one variant per stage, each wrapping that stage's own typed error.

/// Anything that can go wrong between a GGUF file and generated text.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Gguf(#[from] gguf_importer::GgufError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Tokenizer(#[from] crate::tokenizer::TokenizerError),
    #[error(transparent)]
    Chat(#[from] crate::chat::ChatError),
    #[error(transparent)]
    Sampling(#[from] crate::sampling::SamplingError),
    #[error(transparent)]
    Device(#[from] crate::device::DeviceError),
    #[error(transparent)]
    Perplexity(#[from] crate::perplexity::PerplexityError),
    #[error(transparent)]
    Record(#[from] crate::model::RecordError),
    #[error(transparent)]
    Export(#[from] crate::model::export::ExportError),
    /// A tensor could not be read back from the device.
    #[error("reading {what} back from the device: {reason}")]
    Readback { what: &'static str, reason: String },
    /// An empty prompt: there is nothing to condition on (llama.cpp refuses it too).
    #[error("the prompt is empty: it tokenizes to no tokens (and the model adds no BOS)")]
    EmptyPrompt,
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
