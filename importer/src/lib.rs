//! GGUF (llama.cpp's model format): reading, writing, dequantization and quantization, and GGUF
//! tensors as Burn tensors (feature `burn`).
//!
//! - [`GgufFile`]: a memory-mapped file; metadata and tensor infos are parsed at open, tensor data
//!   is read when asked for. GGUF versions 1, 2 and 3.
//! - [`Metadata`] and [`Value`]: the key/value table with typed accessors; key names in [`keys`].
//! - [`GgmlType`]: the table of ggml types (block size, bytes per block).
//! - [`quants`]: dequantization of F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K,
//!   Q4_K, Q5_K, Q6_K, the i-quants (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S,
//!   IQ4_NL, IQ4_XS), TQ1_0, TQ2_0 and MXFP4, equal to ggml's; quantization to F32, F16, BF16 and
//!   Q8_0 ([`quants::quantize()`]), byte for byte ggml's reference.
//! - [`GgufWriter`]: writes GGUF files.
//! - [`TensorInfo`]: where a tensor is; its module documents the dimension order rule
//!   (`ne[0]` is contiguous, so `ne = [2048, 32000]` is row-major `[32000][2048]`).
//!
//! ```no_run
//! let file = gguf_importer::GgufFile::open("model.gguf")?;
//! for t in file.tensors() {
//!     println!("{} {} {:?}", t.name, t.ty, t.shape());
//! }
//! let embd: Vec<f32> = file.dequantize("token_embd.weight")?; // [n_vocab, n_embd], row-major
//! # Ok::<(), gguf_importer::GgufError>(())
//! ```

pub mod error;
pub mod keys;
pub mod npy;
pub mod quants;
pub mod reader;
pub mod tensor;
pub mod types;
pub mod value;
pub mod writer;

#[cfg(feature = "burn")]
pub mod burn;

pub use error::{GgufError, Result, TensorSpan};
pub use reader::GgufFile;
pub use tensor::TensorInfo;
pub use types::GgmlType;
pub use value::{Metadata, Value, ValueType};
pub use writer::GgufWriter;
