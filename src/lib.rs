//! Run GGUF Llama models (llama.cpp's format) as Burn modules, on wgpu and on CPU devices.
//!
//! - [`gguf`]: the GGUF importer (reading, writing, dequantization; crate `gguf-importer`).

/// The GGUF importer, re-exported.
pub use gguf_importer as gguf;
