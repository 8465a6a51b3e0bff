//! Host side of the CubeCL kernels: shape checks, kernel choice, workgroup and grid sizes.

use burn::tensor::{DType, Shape};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::client::Client;
use cubecl::features::Plane;
use cubecl::prelude::*;
use gguf_importer::GgmlType;

use super::get_rows::{get_rows_kernel, UNITS as GET_ROWS_UNITS};
use super::matvec::matvec_kernel;
use super::tiled::{tiled_kernel, TILE, UNITS};
use super::{chunks_per_row, is_supported};
use crate::error::KernelError;

/// Activation rows up to which the mat-vec kernel runs (one pass over the weights per row);
/// from `MATVEC_MAX_M + 1` rows on, the tiled kernel (one pass per 32 rows).
pub const MATVEC_MAX_M: usize = 4;

/// Which kernel [`q_matmul`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// [`matvec_kernel`], partial sums reduced with plane (subgroup) operations.
    MatVecPlane,
    /// [`matvec_kernel`], partial sums reduced through shared memory.
    MatVecShared,
    /// [`tiled_kernel`].
    Tiled,
}

/// Checks what the kernels assume of a `[rows, cols]` weight of type `ty` and `m` activation
/// rows: a format with a kernel, and byte and element offsets that fit the kernels' u32
/// arithmetic (weights under 4 GiB, `m · cols` and `m · rows` under 2³²).
pub fn check(ty: GgmlType, rows: usize, cols: usize, m: usize) -> Result<(), KernelError> {
    if !is_supported(ty) {
        return Err(KernelError::UnsupportedType { ty });
    }
    let bytes = ty
        .bytes_for((rows as u64).saturating_mul(cols as u64))
        .ok_or(KernelError::NotBlockAligned {
            ty,
            cols,
            block_size: ty.block_size(),
        })?;
    let limit = u32::MAX as u64 - 4;
    let fits = |v: u64| v <= limit;
    if !fits(bytes) || !fits(m as u64 * cols as u64) || !fits(m as u64 * rows as u64) {
        return Err(KernelError::BadShape { rows, cols });
    }
    Ok(())
}

/// [`check`] for a lookup of `n` rows ([`q_get_rows`]): the output is `[n, cols]`.
pub fn check_get_rows(ty: GgmlType, rows: usize, cols: usize, n: usize) -> Result<(), KernelError> {
    check(ty, rows, cols, 1)?;
    if n as u64 * cols as u64 > u32::MAX as u64 - 4 {
        return Err(KernelError::BadShape { rows, cols });
    }
    Ok(())
}

/// The kernel [`q_matmul`] picks for `m` activation rows on `client`'s device.
pub fn pick_kernel(client: &Client, m: usize) -> Kernel {
    if m > MATVEC_MAX_M {
        Kernel::Tiled
    } else if client.features().plane.contains(Plane::Ops) {
        Kernel::MatVecPlane
    } else {
        Kernel::MatVecShared
    }
}

/// `y = x · Wᵀ` on a cube device: `x` `[m, cols]` f32, `w` the packed words of a GGUF `[rows, cols]`
/// matrix of type `ty`; returns `y` `[m, rows]` f32.
///
/// # Panics
/// If the arguments break what [`check`] checks, or `x` is not `[m, cols]` f32: the public API
/// ([`crate::extension::q_matmul`]) checks them before it gets here.
pub fn q_matmul(
    x: CubeTensor,
    w: CubeTensor,
    ty: GgmlType,
    rows: usize,
    cols: usize,
) -> CubeTensor {
    q_matmul_with(x, w, ty, rows, cols, None)
}

/// [`q_matmul`] with the kernel forced (`None`: [`pick_kernel`]), to test each kernel.
pub fn q_matmul_with(
    x: CubeTensor,
    w: CubeTensor,
    ty: GgmlType,
    rows: usize,
    cols: usize,
    kernel: Option<Kernel>,
) -> CubeTensor {
    let shape = x.meta.shape().clone();
    assert!(
        shape.num_dims() == 2 && shape[1] == cols && x.dtype == DType::F32,
        "q_matmul: x must be [m, {cols}] f32, got {shape:?} {:?}",
        x.dtype
    );
    let m = shape[0];
    if let Err(e) = check(ty, rows, cols, m) {
        panic!("q_matmul: {e}");
    }
    let client = x.client.clone();
    let out = empty_device_dtype(
        client.clone(),
        x.device.clone(),
        Shape::new([m, rows]),
        DType::F32,
    );
    if m == 0 {
        return out;
    }
    let x = into_contiguous(x);
    let row_bytes = (cols / ty.block_size() * ty.type_size()) as u32;
    let ty_id = ty.id();
    let kernel = kernel.unwrap_or_else(|| pick_kernel(&client, m));

    match kernel {
        Kernel::MatVecPlane | Kernel::MatVecShared => {
            // 32 units when a row has at most 32 chunks, else 64: each unit then owns a chunk or
            // more, and the workgroup stays a power of two for the tree reduction.
            let wg: usize = if chunks_per_row(ty, cols) <= 32 {
                32
            } else {
                64
            };
            let gx = rows.min(32_768);
            let gy = rows.div_ceil(gx);
            // Safety: the kernel reads `w` at the byte offsets of `rows` rows of `row_bytes`
            // (checked against the words by `QWeight`), `x` at `[m, cols]`, and writes `[m, rows]`.
            unsafe {
                matvec_kernel::launch_unchecked(
                    &client,
                    CubeCount::Static(gx as u32, gy as u32, m as u32),
                    CubeDim::new_1d(wg as u32),
                    w.into_buffer_arg(),
                    x.into_buffer_arg(),
                    out.clone().into_buffer_arg(),
                    rows as u32,
                    cols as u32,
                    row_bytes,
                    ty_id,
                    wg,
                    kernel == Kernel::MatVecPlane,
                );
            }
        }
        Kernel::Tiled => {
            let tile = TILE as usize;
            // Safety: as above; every read and write is bounds-checked against m, rows, cols.
            unsafe {
                tiled_kernel::launch_unchecked(
                    &client,
                    CubeCount::Static(rows.div_ceil(tile) as u32, m.div_ceil(tile) as u32, 1),
                    CubeDim::new_1d(UNITS),
                    w.into_buffer_arg(),
                    x.into_buffer_arg(),
                    out.clone().into_buffer_arg(),
                    m as u32,
                    rows as u32,
                    cols as u32,
                    row_bytes,
                    ty_id,
                );
            }
        }
    }
    out
}

/// `out[t, :] = W[ids[t], :]` on a cube device: `ids` `[n]` u32 row indices below `rows`, `w` the
/// packed words of a GGUF `[rows, cols]` matrix of type `ty`; returns `out` `[n, cols]` f32.
///
/// # Panics
/// If the arguments break what [`check`] checks or `ids` is not `[n]` u32; indices out of range
/// read out of bounds: the public API ([`crate::extension::q_get_rows`]) checks them first.
pub fn q_get_rows(
    w: CubeTensor,
    ids: CubeTensor,
    ty: GgmlType,
    rows: usize,
    cols: usize,
) -> CubeTensor {
    let shape = ids.meta.shape().clone();
    assert!(
        shape.num_dims() == 1 && ids.dtype == DType::U32,
        "q_get_rows: ids must be [n] u32, got {shape:?} {:?}",
        ids.dtype
    );
    let n = shape[0];
    if let Err(e) = check_get_rows(ty, rows, cols, n) {
        panic!("q_get_rows: {e}");
    }
    let client = ids.client.clone();
    let out = empty_device_dtype(
        client.clone(),
        ids.device.clone(),
        Shape::new([n, cols]),
        DType::F32,
    );
    if n == 0 {
        return out;
    }
    let ids = into_contiguous(ids);
    let row_bytes = (cols / ty.block_size() * ty.type_size()) as u32;
    let groups = chunks_per_row(ty, cols).div_ceil(GET_ROWS_UNITS as usize);
    // Safety: the kernel reads row `ids[t] < rows` of `row_bytes` bytes (checked by the caller
    // and, for the words, by `QWeight`) and writes `[n, cols]`, bounds-checked per chunk.
    unsafe {
        get_rows_kernel::launch_unchecked(
            &client,
            CubeCount::Static(groups as u32, n as u32, 1),
            CubeDim::new_1d(GET_ROWS_UNITS),
            w.into_buffer_arg(),
            ids.into_buffer_arg(),
            out.clone().into_buffer_arg(),
            cols as u32,
            row_bytes,
            ty.id(),
        );
    }
    out
}
