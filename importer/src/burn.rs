//! GGUF tensors as Burn tensors (feature `burn`).
//!
//! # Dimension order
//!
//! GGUF lists a tensor's dimensions in ggml order, `ne[0]` first, and `ne[0]` is the contiguous
//! (fastest-varying) dimension (see [`crate::tensor`]). A Burn tensor's shape lists the slowest
//! dimension first. Every function here therefore builds the Burn tensor with `ne` **reversed**,
//! which is [`TensorInfo::shape`]: `token_embd.weight` with `ne = [n_embd, n_vocab]` becomes a
//! `Tensor<2>` of shape `[n_vocab, n_embd]` (row `t` is the embedding of token `t`), and a linear
//! weight with `ne = [n_in, n_out]` becomes `[n_out, n_in]`, used as `y = x · Wᵀ`. The data is
//! the dequantized row-major f32 of [`GgufFile::dequantize`], so no element is moved.
//!
//! A tensor whose rank differs from the rank asked for is accepted only when the difference is
//! made of leading dimensions of size 1 (ggml drops trailing `ne` of 1 when writing, so a
//! `[1, n]` matrix may be stored with one dimension); anything else is an error.

use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{GgufError, Result};
use crate::reader::GgufFile;
use crate::tensor::TensorInfo;

/// The row-major shape of `info` as `D` dimensions: `ne` reversed, with leading dimensions of
/// size 1 added or removed to reach rank `D`.
///
/// Errors with [`GgufError::SizeMismatch`] when the shape cannot be written with `D` dimensions.
pub fn dims<const D: usize>(info: &TensorInfo) -> Result<[usize; D]> {
    let shape = info.shape(); // row-major: [.., ne[1], ne[0]]
                              // Drop leading 1s beyond D, then pad with leading 1s up to D.
    let mut significant: &[usize] = &shape;
    while significant.len() > D && significant[0] == 1 {
        significant = &significant[1..];
    }
    if significant.len() > D {
        return Err(GgufError::SizeMismatch {
            tensor: info.name.clone(),
            what: format!(
                "has row-major shape {shape:?} (ggml ne {:?}), which has more than {D} dimensions",
                info.ne
            ),
        });
    }
    let mut out = [1usize; D];
    out[D - significant.len()..].copy_from_slice(significant);
    Ok(out)
}

/// A Burn tensor from row-major f32 data with `shape`, on `device`.
///
/// Errors with [`GgufError::SizeMismatch`] when `data` does not have `shape`'s element count.
pub fn from_f32<const D: usize>(
    name: &str,
    data: Vec<f32>,
    shape: [usize; D],
    device: &Device,
) -> Result<Tensor<D>> {
    let n: usize = shape.iter().product();
    if data.len() != n {
        return Err(GgufError::SizeMismatch {
            tensor: name.to_string(),
            what: format!("{} values for shape {shape:?} ({n} elements)", data.len()),
        });
    }
    Ok(Tensor::from_data(TensorData::new(data, shape), device))
}

/// The tensor `name` dequantized to f32, as a Burn tensor of the row-major shape (`ne`
/// reversed, see the module docs) on `device`.
///
/// ```no_run
/// # use gguf_importer::{GgufFile, burn::tensor_f32};
/// # let device = burn::tensor::Device::default();
/// let file = GgufFile::open("model.gguf")?;
/// // ne = [n_embd, n_vocab] in the file; [n_vocab, n_embd] here.
/// let embd = tensor_f32::<2>(&file, "token_embd.weight", &device)?;
/// # Ok::<(), gguf_importer::GgufError>(())
/// ```
pub fn tensor_f32<const D: usize>(
    file: &GgufFile,
    name: &str,
    device: &Device,
) -> Result<Tensor<D>> {
    let info = file.require_tensor(name)?;
    let shape = dims::<D>(info)?;
    let data = file.dequantize(name)?; // row-major f32
    from_f32(name, data, shape, device)
}

/// Like [`tensor_f32`], with the expected row-major shape checked first (before dequantizing).
///
/// Errors with [`GgufError::SizeMismatch`] naming both shapes when they differ.
pub fn tensor_f32_shaped<const D: usize>(
    file: &GgufFile,
    name: &str,
    shape: [usize; D],
    device: &Device,
) -> Result<Tensor<D>> {
    let info = file.require_tensor(name)?;
    let found = dims::<D>(info)?;
    if found != shape {
        return Err(GgufError::SizeMismatch {
            tensor: name.to_string(),
            what: format!(
                "row-major shape is {found:?} (ggml ne {:?}), expected {shape:?}",
                info.ne
            ),
        });
    }
    let data = file.dequantize(name)?;
    from_f32(name, data, shape, device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::GgmlType;

    fn info(ne: &[u64]) -> TensorInfo {
        let n: u64 = ne.iter().product();
        TensorInfo::new("t".into(), ne.to_vec(), GgmlType::F32, 0, 32, 0, n * 4).unwrap()
    }

    #[test]
    fn dims_reverse_ne() {
        // token_embd.weight: ne = [n_embd, n_vocab] -> [n_vocab, n_embd].
        assert_eq!(dims::<2>(&info(&[64, 512])).unwrap(), [512, 64]);
        assert_eq!(dims::<3>(&info(&[2, 3, 4])).unwrap(), [4, 3, 2]);
        // Leading 1s are added or dropped to reach the rank asked for.
        assert_eq!(dims::<2>(&info(&[64])).unwrap(), [1, 64]);
        assert_eq!(dims::<1>(&info(&[64, 1])).unwrap(), [64]);
        // A real dimension is never dropped.
        assert!(matches!(
            dims::<1>(&info(&[64, 2])),
            Err(GgufError::SizeMismatch { .. })
        ));
    }
}
