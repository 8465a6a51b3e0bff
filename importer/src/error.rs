//! Every way reading, writing or dequantizing a GGUF file can fail.
//!
//! Each variant says what went wrong and where (a byte offset, a key, a tensor name), so that
//! an error from a corrupt file can be acted on without a debugger.

use crate::value::ValueType;

/// The importer's error type.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened, mapped or written.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file: magic bytes are {found:02x?}, expected \"GGUF\"")]
    BadMagic { found: [u8; 4] },

    /// A version this reader does not know (1, 2 and 3 are read).
    #[error("unsupported GGUF version {version} (versions 1, 2 and 3 are supported)")]
    UnsupportedVersion { version: u32 },

    /// The file ended in the middle of a field.
    #[error("file truncated at byte {offset} while reading {what}: needed {needed} bytes, {available} left")]
    Truncated {
        what: String,
        offset: u64,
        needed: u64,
        available: u64,
    },

    /// A count or length in the header claims more than the rest of the file can hold.
    #[error("{what} at byte {offset} is {count}, more than the {available} bytes left in the file can hold")]
    CountTooLarge {
        what: String,
        offset: u64,
        count: u64,
        available: u64,
    },

    /// A metadata value type id outside 0..=12.
    #[error("unknown metadata value type {type_id} for key {key:?} at byte {offset}")]
    UnknownValueType {
        key: String,
        type_id: u32,
        offset: u64,
    },

    /// A string that is not valid UTF-8.
    #[error("invalid UTF-8 in {what} at byte {offset}")]
    InvalidUtf8 { what: String, offset: u64 },

    /// The same metadata key twice.
    #[error("duplicate metadata key {key:?}")]
    DuplicateKey { key: String },

    /// The same tensor name twice.
    #[error("duplicate tensor name {name:?}")]
    DuplicateTensor { name: String },

    /// Arrays nested deeper than the reader accepts.
    #[error("metadata key {key:?}: arrays nested deeper than {max_depth} levels")]
    NestingTooDeep { key: String, max_depth: usize },

    /// A tensor with more than 4 dimensions (ggml's `GGML_MAX_DIMS`).
    #[error("tensor {tensor:?} has {n_dims} dimensions, at most 4 are allowed")]
    TooManyDims { tensor: String, n_dims: u32 },

    /// A shape whose element count overflows. (A dimension of 0 is not an error: ggml accepts
    /// such a tensor, which holds no elements and no bytes.)
    #[error("tensor {tensor:?} has an invalid shape {ne:?} (ggml order, ne[0] first)")]
    BadShape { tensor: String, ne: Vec<u64> },

    /// A ggml type id that no version of ggml defines.
    #[error("tensor {tensor:?} has unknown ggml type id {type_id}")]
    UnknownTensorType { tensor: String, type_id: u32 },

    /// A known ggml type that this importer cannot dequantize (Q8_K, Q8_1 and the other
    /// activation-only or unknown formats).
    #[error("tensor {tensor:?} has type {type_name} (id {type_id}), which is not supported")]
    UnsupportedType {
        tensor: String,
        type_name: &'static str,
        type_id: u32,
    },

    /// The row length is not a whole number of quantization blocks.
    #[error("tensor {tensor:?}: ne[0] = {ne0} is not a multiple of the {type_name} block size {block_size}")]
    RowNotBlockAligned {
        tensor: String,
        type_name: &'static str,
        ne0: u64,
        block_size: u64,
    },

    /// `general.alignment` is zero, not a power of two, or of the wrong type.
    #[error("general.alignment = {alignment} is invalid: it must be a non-zero power of two")]
    BadAlignment { alignment: u64 },

    /// A tensor's data offset is not a multiple of the file's alignment.
    #[error(
        "tensor {tensor:?}: data offset {offset} is not a multiple of the alignment {alignment}"
    )]
    MisalignedTensor {
        tensor: String,
        offset: u64,
        alignment: u64,
    },

    /// A tensor's data lies (partly) outside the file.
    #[error(
        "tensor {tensor:?}: data at [{start}, {end}) lies outside the file of {file_len} bytes"
    )]
    TensorOutOfBounds {
        tensor: String,
        start: u64,
        end: u64,
        file_len: u64,
    },

    /// A required metadata key is absent.
    #[error("missing metadata key {key:?}")]
    MissingKey { key: String },

    /// A metadata key holds a value of another type than asked for.
    #[error("metadata key {key:?} has type {found}, expected {expected}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: ValueType,
    },

    /// A metadata value that cannot be used (a negative count, an out-of-range number ...).
    #[error("metadata key {key:?}: {reason}")]
    BadValue { key: String, reason: String },

    /// A tensor name that the file does not contain.
    #[error("no tensor named {name:?} in the file")]
    MissingTensor { name: String },

    /// A buffer handed to a dequantizer or writer does not match the tensor's size.
    #[error("tensor {tensor:?}: {what}")]
    SizeMismatch { tensor: String, what: String },

    /// Two tensors whose data share bytes: a corrupt offset (each tensor owns its bytes; ggml
    /// even requires them in file order, each at the padded end of the one before). Ranges are
    /// byte offsets in the file, `first` the tensor that starts first.
    #[error(
        "tensors {:?} (data at [{}, {})) and {:?} (data at [{}, {})) overlap",
        .first.name, .first.start, .first.end, .second.name, .second.start, .second.end
    )]
    OverlappingTensors {
        first: Box<TensorSpan>,
        second: Box<TensorSpan>,
    },
}

/// Where a tensor's data lies in its file ([`GgufError::OverlappingTensors`]; boxed there so
/// that the error stays small).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpan {
    pub name: String,
    /// Byte offsets in the file: `start .. end`.
    pub start: u64,
    pub end: u64,
}

/// Result with [`GgufError`].
pub type Result<T, E = GgufError> = std::result::Result<T, E>;
