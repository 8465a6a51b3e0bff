//! The plain reference the kernels are tested against: dequantize the weights with
//! `gguf_importer::quants` (bit-identical to ggml's `dequantize_row_*`), then an f32 matmul with
//! f64 accumulation.

use super::cpu::QMatrix;
use super::error::KernelError;

/// The weights as f32, `[rows, cols]` row-major.
pub fn dequantize(w: &QMatrix) -> Result<Vec<f32>, KernelError> {
    let mut out = vec![0f32; w.rows * w.cols];
    gguf_importer::quants::dequantize_into("reference weight", w.ty, w.data, &mut out)?;
    Ok(out)
}

/// `y = x · Wᵀ` in f64 from dequantized weights `wd` (`[rows, cols]`): `x` is `[m, cols]`, the
/// result `[m, rows]`.
pub fn matmul_f64(
    wd: &[f32],
    rows: usize,
    cols: usize,
    x: &[f32],
    m: usize,
) -> Result<Vec<f64>, KernelError> {
    if wd.len() != rows * cols {
        return Err(KernelError::BufferSize {
            what: "dequantized weight [rows, cols]",
            expected: rows * cols,
            actual: wd.len(),
        });
    }
    if x.len() != m * cols {
        return Err(KernelError::BufferSize {
            what: "activation x [m, cols]",
            expected: m * cols,
            actual: x.len(),
        });
    }
    let mut y = vec![0f64; m * rows];
    for (x, y) in x.chunks_exact(cols).zip(y.chunks_exact_mut(rows)) {
        for (w, y) in wd.chunks_exact(cols).zip(y.iter_mut()) {
            *y = w.iter().zip(x).map(|(&w, &x)| w as f64 * x as f64).sum();
        }
    }
    Ok(y)
}

/// The reference [`crate::cpu::qmatmul`]: same arguments, dequantize-then-matmul.
pub fn qmatmul(w: &QMatrix, x: &[f32], m: usize, y: &mut [f32]) -> Result<(), KernelError> {
    if y.len() != m * w.rows {
        return Err(KernelError::BufferSize {
            what: "output y [m, rows]",
            expected: m * w.rows,
            actual: y.len(),
        });
    }
    let wd = dequantize(w)?;
    for (o, v) in y.iter_mut().zip(matmul_f64(&wd, w.rows, w.cols, x, m)?) {
        *o = v as f32;
    }
    Ok(())
}
