//! The fused quantized matmul as a Burn backend extension, and the device-agnostic API over it.
//!
//! [`QMatmulBackend::q_matmul`] is one custom operation with an implementation per backend:
//! - `Cube` (wgpu, through Fusion when Burn's `fusion` feature is on, as it is here): the CubeCL
//!   kernels of [`crate::cube`]. Under Fusion the operation is registered lazily with its output
//!   shape and dtype and runs when the stream is flushed; the fused neighbours stay fused around it.
//! - `Flex` and `NdArray`: the words and `x` are read in place from the CPU tensors (no copy when
//!   they are contiguous) and [`crate::cpu::qmatmul`] computes `y`.
//! - `Autodiff` (any of the above under `device.autodiff()`): the forward pass of the inner backend
//!   and a backward pass for `x` (the weights are frozen constants): `∂L/∂x = ∂L/∂y · W` with `W`
//!   dequantized for the product (see [`autodiff`]), as ggml's own backward of a quantized
//!   `mul_mat` does. This is what trains adapters (LoRA) on a quantized base.
//!
//! Model code calls [`q_matmul`] / [`q_matmul_3d`] with a [`QWeight`] and never names a backend.

// Burn deprecates NdArray in favour of Flex; this project still supports it (selector and impl).
#![allow(deprecated)]

use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{backend_extension, Backend, Dispatch, TensorMetadata};
use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use gguf_importer::GgmlType;

use crate::error::KernelError;
use crate::packed::QWeight;

/// The quantized matmul operation.
#[backend_extension(
    Cube: cfg(feature = "wgpu"),
    Fusion: cfg(feature = "wgpu"),
    Flex: cfg(feature = "flex"),
    NdArray: cfg(feature = "ndarray"),
    Autodiff
)]
pub trait QMatmulBackend: Backend {
    /// `y = x · Wᵀ`.
    ///
    /// - `x`: `[m, cols]` f32 activations;
    /// - `w`: the packed words of a [`QWeight`] (`[⌈bytes / 4⌉]` u32) holding a `[rows, cols]`
    ///   GGUF matrix of ggml type id `ty_id`;
    /// - returns `[m, rows]` f32.
    ///
    /// Call it through [`q_matmul`], which checks the arguments: this operation assumes them valid
    /// and panics otherwise.
    #[fusion(dtype = x, shape = burn::tensor::Shape::new([x[0], *rows]))]
    fn q_matmul(
        x: FloatTensor<Self>,
        w: IntTensor<Self>,
        ty_id: u32,
        rows: usize,
        cols: usize,
    ) -> FloatTensor<Self>;

    /// `out[t, :] = W[ids[t], :]`, the rows dequantized to f32 (an embedding lookup).
    ///
    /// - `w`: the packed words of a [`QWeight`] holding a `[rows, cols]` GGUF matrix of ggml type
    ///   id `ty_id`;
    /// - `ids`: `[n]` u32 row indices, each below `rows`;
    /// - returns `[n, cols]` f32.
    ///
    /// Call it through [`q_get_rows`], which checks the arguments.
    #[fusion(dtype = burn::tensor::DType::F32, shape = burn::tensor::Shape::new([ids[0], *cols]))]
    fn q_get_rows(
        w: IntTensor<Self>,
        ids: IntTensor<Self>,
        ty_id: u32,
        rows: usize,
        cols: usize,
    ) -> FloatTensor<Self>;
}

/// Whether `device` takes the CPU kernels ([`crate::cpu`]: flex, ndarray) rather than the
/// CubeCL ones.
pub fn is_cpu_device(device: &Device) -> bool {
    use burn::backend::DispatchDevice;
    #[allow(deprecated)] // NdArray: deprecated in favour of Flex, still supported here
    let cpu = matches!(
        device.as_dispatch(),
        DispatchDevice::Flex(_) | DispatchDevice::NdArray(_)
    );
    cpu
}

/// Whether the kernels of `device` multiply weights of type `ty` in their blocks (the CPU
/// kernels handle more formats than the CubeCL ones: a model loader dequantizes the others for
/// a GPU device).
pub fn has_kernel(device: &Device, ty: GgmlType) -> bool {
    if is_cpu_device(device) {
        return crate::cpu::has_kernel(ty);
    }
    #[cfg(feature = "wgpu")]
    return crate::cube::is_supported(ty);
    #[cfg(not(feature = "wgpu"))]
    false
}

/// `y = x · Wᵀ` for `x` `[m, cols]` (any float dtype; computed in f32): returns `[m, rows]` f32
/// on `x`'s device, which must be `w`'s.
pub fn q_matmul(x: Tensor<2>, w: &QWeight) -> Result<Tensor<2>, KernelError> {
    let [m, cols] = x.dims();
    // (read only by the cube kernels' shape check)
    #[cfg(not(feature = "wgpu"))]
    let _ = m;
    if cols != w.cols() {
        return Err(KernelError::BufferSize {
            what: "activation row x[i, :]",
            expected: w.cols(),
            actual: cols,
        });
    }
    let x = if x.dtype() == DType::F32 {
        x
    } else {
        x.cast(DType::F32)
    };
    // One call per row band (one unless the matrix is banded), the outputs side by side.
    let mut ys = Vec::new();
    #[cfg(feature = "wgpu")]
    let cube = !is_cpu_device(&x.device());
    for band in w.bands() {
        #[cfg(feature = "wgpu")]
        if cube {
            crate::cube::launch::check(w.ty(), band.rows, w.cols(), m)?;
        }
        let y = <Dispatch as QMatmulBackend>::q_matmul(
            x.clone().into_dispatch(),
            band.words.clone().into_dispatch(),
            w.ty().id(),
            band.rows,
            w.cols(),
        );
        ys.push(Tensor::<2>::from_dispatch(y)); // [m, band rows]
    }
    Ok(match ys.len() {
        1 => ys.pop().expect("one band"),
        _ => Tensor::cat(ys, 1),
    })
}

/// [`q_matmul`] over `[batch, seq, cols]`: flattened to `[batch · seq, cols]`, returned as
/// `[batch, seq, rows]`.
pub fn q_matmul_3d(x: Tensor<3>, w: &QWeight) -> Result<Tensor<3>, KernelError> {
    let [batch, seq, cols] = x.dims();
    let y = q_matmul(x.reshape([batch * seq, cols]), w)?; // [batch·seq, rows]
    Ok(y.reshape([batch, seq, w.rows()]))
}

/// Rows `ids` of `w`, dequantized: `[ids.len(), cols]` f32 on `w`'s device (the token embedding
/// lookup of a model whose embedding stays quantized, as llama.cpp's `get_rows`).
///
/// Every id must be below `w.rows()`; at most 65535 ids per call (the GPU grid's limit).
pub fn q_get_rows(w: &QWeight, ids: &[u32]) -> Result<Tensor<2>, KernelError> {
    if let Some(&bad) = ids.iter().find(|&&id| id as usize >= w.rows()) {
        return Err(KernelError::RowIndex {
            index: bad as usize,
            rows: w.rows(),
        });
    }
    if ids.len() > u16::MAX as usize {
        return Err(KernelError::BufferSize {
            what: "row indices of one lookup (at most 65535)",
            expected: u16::MAX as usize,
            actual: ids.len(),
        });
    }
    let device = w.device();
    let bands = w.bands();
    #[cfg(feature = "wgpu")]
    let cube = !is_cpu_device(&device);
    let lookup = |band: &crate::packed::Band, ids: &[u32]| -> Result<Tensor<2>, KernelError> {
        #[cfg(feature = "wgpu")]
        if cube {
            crate::cube::launch::check_get_rows(w.ty(), band.rows, w.cols(), ids.len())?;
        }
        let ids = Tensor::<1, Int>::from_data(
            TensorData::new(ids.to_vec(), [ids.len()]),
            (&device, DType::U32),
        );
        Ok(Tensor::from_dispatch(
            <Dispatch as QMatmulBackend>::q_get_rows(
                band.words.clone().into_dispatch(),
                ids.into_dispatch(),
                w.ty().id(),
                band.rows,
                w.cols(),
            ),
        ))
    };
    if bands.len() == 1 {
        return lookup(&bands[0], ids);
    }
    // A banded matrix: each band's rows looked up in that band, then put back in the order of
    // `ids` (position `i` of the concatenated lookups holds id `order[i]`).
    let mut parts = Vec::new();
    let mut order = Vec::with_capacity(ids.len());
    let mut start = 0;
    for band in &bands {
        let (local, at): (Vec<u32>, Vec<usize>) = ids
            .iter()
            .enumerate()
            .filter(|(_, &id)| (start..start + band.rows).contains(&(id as usize)))
            .map(|(i, &id)| (id - start as u32, i))
            .unzip();
        if !local.is_empty() {
            parts.push(lookup(band, &local)?);
            order.extend(at);
        }
        start += band.rows;
    }
    let rows = Tensor::cat(parts, 0); // [ids.len(), cols], grouped by band
    let mut inverse = vec![0i64; ids.len()];
    for (pos, &i) in order.iter().enumerate() {
        inverse[i] = pos as i64;
    }
    let inverse = Tensor::<1, Int>::from_data(TensorData::new(inverse, [ids.len()]), &device);
    Ok(rows.select(0, inverse))
}

/// Rows per [`QMatmulBackend::q_get_rows`] call when a whole matrix is dequantized (the GPU
/// grid's limit).
const ROWS_PER_LOOKUP: usize = u16::MAX as usize;

/// The whole matrix of `w` dequantized: `[rows, cols]` f32 on `w`'s device (what merging an
/// adapter into a quantized layer starts from). Rows are looked up 65535 at a time.
pub fn dequantize(w: &QWeight) -> Result<Tensor<2>, KernelError> {
    let mut parts = Vec::new();
    for band in w.bands() {
        #[cfg(feature = "wgpu")]
        crate::cube::launch::check_get_rows(
            w.ty(),
            band.rows,
            w.cols(),
            band.rows.min(ROWS_PER_LOOKUP),
        )?;
        let out = dequantize_words::<Dispatch>(
            band.words.clone().into_dispatch(),
            w.ty().id(),
            band.rows,
            w.cols(),
        );
        parts.push(Tensor::<2>::from_dispatch(out));
    }
    Ok(match parts.len() {
        1 => parts.pop().expect("one band"),
        _ => Tensor::cat(parts, 0),
    })
}

/// The `[rows, cols]` f32 matrix of the packed words `w` of ggml type id `ty_id`, on `w`'s
/// device, on any backend of the extension: [`QMatmulBackend::q_get_rows`] over every row,
/// [`ROWS_PER_LOOKUP`] at a time.
fn dequantize_words<B: QMatmulBackend>(
    w: IntTensor<B>,
    ty_id: u32,
    rows: usize,
    cols: usize,
) -> FloatTensor<B> {
    let device = TensorMetadata::device(&w);
    let mut parts = Vec::with_capacity(rows.div_ceil(ROWS_PER_LOOKUP));
    for start in (0..rows).step_by(ROWS_PER_LOOKUP) {
        let end = (start + ROWS_PER_LOOKUP).min(rows);
        let ids: Vec<u32> = (start as u32..end as u32).collect();
        let ids = B::int_from_data(TensorData::new(ids, [end - start]), &device);
        parts.push(B::q_get_rows(w.clone(), ids, ty_id, rows, cols));
    }
    if parts.len() == 1 {
        parts.pop().expect("one part")
    } else {
        B::float_cat(parts, 0)
    }
}

/// The CPU backends' lookup: rows `ids` of the `[rows, cols]` matrix in `words`, `[n, cols]` f32.
#[cfg(any(feature = "flex", feature = "ndarray"))]
fn cpu_q_get_rows(words: &[u32], ids: &[u32], ty_id: u32, rows: usize, cols: usize) -> Vec<f32> {
    let ty = GgmlType::from_id(ty_id)
        .unwrap_or_else(|| panic!("q_get_rows: unknown ggml type id {ty_id}"));
    let row_bytes = ty
        .bytes_for(cols as u64)
        .unwrap_or_else(|| panic!("q_get_rows: {ty} rows of {cols} are not whole blocks"))
        as usize;
    let bytes = crate::packed::words_as_bytes(words, rows * row_bytes);
    let mut out = vec![0f32; ids.len() * cols];
    for (dst, &id) in out.chunks_exact_mut(cols).zip(ids) {
        let id = id as usize;
        let src = &bytes[id * row_bytes..(id + 1) * row_bytes];
        gguf_importer::quants::dequantize_into("embedding row", ty, src, dst)
            .unwrap_or_else(|e| panic!("q_get_rows: {e}"));
    }
    out
}

/// The CPU backends' body: `y` `[m, rows]` from the words and `x` `[m, cols]` host slices.
#[cfg(any(feature = "flex", feature = "ndarray"))]
fn cpu_q_matmul(words: &[u32], x: &[f32], ty_id: u32, rows: usize, cols: usize) -> Vec<f32> {
    let ty = GgmlType::from_id(ty_id)
        .unwrap_or_else(|| panic!("q_matmul: unknown ggml type id {ty_id}"));
    let n_bytes = ty
        .bytes_for((rows * cols) as u64)
        .unwrap_or_else(|| panic!("q_matmul: {ty} rows of {cols} are not whole blocks"))
        as usize;
    let bytes = crate::packed::words_as_bytes(words, n_bytes);
    let w = crate::cpu::QMatrix::new(ty, rows, cols, &bytes)
        .unwrap_or_else(|e| panic!("q_matmul: {e}"));
    let m = x.len() / cols;
    let mut y = vec![0f32; m * rows];
    crate::cpu::qmatmul(&w, x, m, &mut y).unwrap_or_else(|e| panic!("q_matmul: {e}"));
    y
}

#[cfg(feature = "wgpu")]
impl QMatmulBackend for burn_cubecl::CubeBackend {
    fn q_matmul(
        x: FloatTensor<Self>,
        w: IntTensor<Self>,
        ty_id: u32,
        rows: usize,
        cols: usize,
    ) -> FloatTensor<Self> {
        let ty = GgmlType::from_id(ty_id)
            .unwrap_or_else(|| panic!("q_matmul: unknown ggml type id {ty_id}"));
        crate::cube::launch::q_matmul(x, w, ty, rows, cols)
    }

    fn q_get_rows(
        w: IntTensor<Self>,
        ids: IntTensor<Self>,
        ty_id: u32,
        rows: usize,
        cols: usize,
    ) -> FloatTensor<Self> {
        let ty = GgmlType::from_id(ty_id)
            .unwrap_or_else(|| panic!("q_get_rows: unknown ggml type id {ty_id}"));
        crate::cube::launch::q_get_rows(w, ids, ty, rows, cols)
    }
}

/// `t` itself when its memory is a contiguous `E` slice, else a contiguous copy.
#[cfg(feature = "flex")]
fn flex_contiguous<E: burn::tensor::Element + bytemuck::Pod>(
    t: burn::backend::flex::FlexTensor,
) -> burn::backend::flex::FlexTensor {
    if t.as_slice::<E>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

/// A tensor view's elements in order: borrowed when the view is one contiguous slice, else
/// copied.
#[cfg(feature = "ndarray")]
fn slice_or_copy<'a, E: Copy>(
    slice: Option<&'a [E]>,
    elements: impl Iterator<Item = &'a E>,
) -> std::borrow::Cow<'a, [E]> {
    match slice {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(elements.copied().collect()),
    }
}

#[cfg(feature = "flex")]
impl QMatmulBackend for burn::backend::Flex {
    fn q_matmul(
        x: FloatTensor<Self>,
        w: IntTensor<Self>,
        ty_id: u32,
        rows: usize,
        cols: usize,
    ) -> FloatTensor<Self> {
        use burn::backend::flex::FlexTensor;
        use burn::tensor::TensorData;

        let w = flex_contiguous::<u32>(w);
        let words = w
            .as_slice::<u32>()
            .expect("q_matmul: weight words must be u32");
        let x = flex_contiguous::<f32>(x);
        let xs = x.as_slice::<f32>().expect("q_matmul: x must be f32");
        let m = xs.len() / cols;
        let y = cpu_q_matmul(words, xs, ty_id, rows, cols);
        FlexTensor::from_data(TensorData::new(y, [m, rows]))
    }

    fn q_get_rows(
        w: IntTensor<Self>,
        ids: IntTensor<Self>,
        ty_id: u32,
        rows: usize,
        cols: usize,
    ) -> FloatTensor<Self> {
        use burn::backend::flex::FlexTensor;

        let w = flex_contiguous::<u32>(w);
        let words = w
            .as_slice::<u32>()
            .expect("q_get_rows: weight words must be u32");
        let ids = flex_contiguous::<u32>(ids);
        let ids = ids.as_slice::<u32>().expect("q_get_rows: ids must be u32");
        let out = cpu_q_get_rows(words, ids, ty_id, rows, cols);
        FlexTensor::from_data(TensorData::new(out, [ids.len(), cols]))
    }
}

#[cfg(feature = "ndarray")]
impl QMatmulBackend for burn::backend::NdArray {
    fn q_matmul(
        x: FloatTensor<Self>,
        w: IntTensor<Self>,
        ty_id: u32,
        rows: usize,
        cols: usize,
    ) -> FloatTensor<Self> {
        use burn::backend::ndarray::NdArrayTensor;
        use burn::tensor::TensorData;

        let NdArrayTensor::U32(w) = w else {
            panic!("q_matmul: weight words must be u32");
        };
        let NdArrayTensor::F32(x) = x else {
            panic!("q_matmul: x must be f32");
        };
        let (w, x) = (w.view(), x.view());
        let words = slice_or_copy(w.as_slice(), w.iter());
        let xs = slice_or_copy(x.as_slice(), x.iter());
        let m = xs.len() / cols;
        let y = cpu_q_matmul(&words, &xs, ty_id, rows, cols);
        NdArrayTensor::from_data(TensorData::new(y, [m, rows]))
    }

    fn q_get_rows(
        w: IntTensor<Self>,
        ids: IntTensor<Self>,
        ty_id: u32,
        rows: usize,
        cols: usize,
    ) -> FloatTensor<Self> {
        use burn::backend::ndarray::NdArrayTensor;

        let NdArrayTensor::U32(w) = w else {
            panic!("q_get_rows: weight words must be u32");
        };
        let NdArrayTensor::U32(ids) = ids else {
            panic!("q_get_rows: ids must be u32");
        };
        let (w, ids) = (w.view(), ids.view());
        let words = slice_or_copy(w.as_slice(), w.iter());
        let ids = slice_or_copy(ids.as_slice(), ids.iter());
        let out = cpu_q_get_rows(&words, &ids, ty_id, rows, cols);
        NdArrayTensor::from_data(TensorData::new(out, [ids.len(), cols]))
    }
}

/// The operations on Burn's Autodiff backend: gradients flow to `x`, never to the weight.
///
/// `y = x · Wᵀ` gives `∂L/∂x = ∂L/∂y · W`. The backward pass dequantizes `W` to f32 (the inner
/// backend's [`QMatmulBackend::q_get_rows`] over every row, at most 65535 rows per call) and
/// multiplies with the backend's own matmul: an `[rows, cols]` f32 transient per operation while
/// the gradient is computed, freed right after; the weights stay quantized in the model. The
/// gradient is therefore exactly that of the dequantized model's linear map; the forward pass
/// itself rounds the activations to 8 bits on the CPU devices (as llama.cpp does), which the
/// gradient does not see (a straight-through estimate, as in QLoRA).
///
/// [`QMatmulBackend::q_get_rows`] (a lookup with integer inputs only) has no gradient: its output
/// is a constant of the graph.
pub mod autodiff {
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
    use burn::backend::autodiff::Autodiff;
    use burn::backend::tensor::{FloatTensor, IntTensor};
    use burn::backend::AutodiffBackend;

    use super::{dequantize_words, QMatmulBackend};

    /// The backward step of `q_matmul`: its state is the weight (words, type, shape).
    #[derive(Debug)]
    struct QMatmulBackward;

    impl<B: QMatmulBackend> Backward<B, 1> for QMatmulBackward {
        type State = (IntTensor<B>, u32, usize, usize);

        fn backward(
            self,
            ops: Ops<Self::State, 1>,
            grads: &mut Gradients,
            _checkpointer: &mut Checkpointer,
        ) {
            let (w, ty_id, rows, cols) = ops.state;
            unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                // grad: [m, rows] · W [rows, cols] = [m, cols]
                B::float_matmul(grad, dequantize_words::<B>(w, ty_id, rows, cols))
            });
        }
    }

    impl<B: QMatmulBackend, C: CheckpointStrategy> QMatmulBackend for Autodiff<B, C> {
        fn q_matmul(
            x: FloatTensor<Self>,
            w: IntTensor<Self>,
            ty_id: u32,
            rows: usize,
            cols: usize,
        ) -> FloatTensor<Self> {
            let (x, node) = x.into_parts();
            match QMatmulBackward
                .prepare::<C>([node])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let y = <B as QMatmulBackend>::q_matmul(x, w.clone(), ty_id, rows, cols);
                    prep.finish((w, ty_id, rows, cols), y)
                }
                OpsKind::UnTracked(prep) => {
                    prep.finish(<B as QMatmulBackend>::q_matmul(x, w, ty_id, rows, cols))
                }
            }
        }

        fn q_get_rows(
            w: IntTensor<Self>,
            ids: IntTensor<Self>,
            ty_id: u32,
            rows: usize,
            cols: usize,
        ) -> FloatTensor<Self> {
            <Self as AutodiffBackend>::from_inner(B::q_get_rows(w, ids, ty_id, rows, cols))
        }
    }
}
