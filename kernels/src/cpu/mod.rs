//! The CPU half of the fused quantized matmul: `y = x · Wᵀ` straight from GGUF blocks.
//!
//! As in llama.cpp's CPU backend, each activation row is quantized once per call to 8 bits
//! (`quantize_act.rs`: blocks of 32 for the 32-element formats, in element order as ggml's
//! `block_q8_0`/`block_q8_1` (`legacy.rs`, ggml's float order) or interleaved by eight for Q4_0
//! prefill (`interleaved.rs`), Q8_K-style blocks of 256 for the K-quants), and every
//! weight block meets it in an integer dot product; the block scales are applied in f32. Plain
//! float weights (F32, F16, BF16) take an f32 dot product. [`follows_ggml_vec_dot`] says which
//! cases give ggml's `ggml_vec_dot_*` results bit for bit.
//!
//! Work split (rayon, all threads): the output rows are cut into tasks of whole weight rows.
//! Decode (`m = 1`) streams each task's weight bytes once. Prefill (`m > 1`) walks a task's rows
//! once per tile of up to [`MAX_TILE`] activation rows, each weight block unpacked once per tile
//! and dotted with every row of the tile, with the task's weights sized to stay in the L2 cache:
//! that reuse is what makes prefill compute-bound rather than memory-bound.
//!
//! The instruction set is picked at run time ([`Isa::detect`]): AVX-512 with VNNI, AVX2 (with FMA
//! and F16C), or the portable scalar code that every SIMD path is tested against (and that other
//! architectures run; written so the compiler can vectorize it, NEON being aarch64's baseline).
//! [`qmatmul_with_isa`] forces one.

mod bf16;
mod float;
pub mod ggml_ops;
mod interleaved;
#[cfg(target_arch = "x86_64")]
mod interleaved_x86;
mod iquants;
#[cfg(target_arch = "x86_64")]
mod iquants_x86;
mod kquants;
#[cfg(target_arch = "x86_64")]
mod kquants_x86;
mod legacy;
#[cfg(target_arch = "x86_64")]
mod legacy_x86;
mod nibble_lut;
mod quantize_act;
mod repacked;
mod repacked_k;
mod tiled_k;
mod vec_dot;
#[cfg(target_arch = "x86_64")]
mod x86_util;

use gguf_importer::GgmlType;
use rayon::prelude::*;

use self::quantize_act::{ActQ8Block, ActQ8KSeq, ActQ8x32};
use super::error::KernelError;

/// Activation rows dotted with each weight block per pass (a tile), at most: the kernels hold
/// each row's accumulators in registers, 8 rows in general; the K-quant prefill kernels with
/// AVX-512 (32 vector registers, one 512-bit accumulator per row) take 16, which halves the
/// unpacking of each weight block per activation row (`cpu_matmul_bench`, m = 128: Q4_K 268 ->
/// 300-335 GFLOP/s, Q6_K 300 -> 310-335). The interleaved Q4_0 kernel (8 registers of
/// weights, 256-bit accumulators) ran slower with 16 (measured on its Q8_0 variant, since
/// dropped: 312 -> 282 GFLOP/s): it keeps 8.
pub const MAX_TILE: usize = 16;
/// The tile of the other kernels.
const TILE: usize = 8;

/// Weight bytes per rayon task in prefill: small enough to stay in L2 (2 MB per core on the
/// benchmark machine) across the passes over the activation tiles, big enough to amortize the
/// per-task setup (the legacy kernels re-lay the activation tile for each task: at 64 KiB that
/// setup was 17% of a Q8_0 prefill, and 256 KiB made Q8_0/Q4_1/Q5_0 prefill 12-16% faster).
const TASK_BYTES: usize = 256 * 1024;

/// A weight matrix in its GGUF block layout: `rows` output features × `cols` input features,
/// row-major, each row `cols / block_size` consecutive blocks (ggml's `ne = [cols, rows]`).
#[derive(Debug, Clone, Copy)]
pub struct QMatrix<'a> {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
}

impl<'a> QMatrix<'a> {
    /// Checks that `ty` has a kernel, that `cols` is whole blocks and that `data` holds exactly
    /// `rows × cols` elements.
    pub fn new(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        data: &'a [u8],
    ) -> Result<Self, KernelError> {
        if kernel_family(ty).is_none() {
            return Err(KernelError::UnsupportedType { ty });
        }
        if rows == 0 || cols == 0 || rows.checked_mul(cols).is_none() {
            return Err(KernelError::BadShape { rows, cols });
        }
        let block_size = ty.block_size();
        if !cols.is_multiple_of(block_size) {
            return Err(KernelError::NotBlockAligned {
                ty,
                cols,
                block_size,
            });
        }
        let expected = (cols / block_size)
            .checked_mul(ty.type_size())
            .and_then(|row| row.checked_mul(rows))
            .ok_or(KernelError::BadShape { rows, cols })?;
        if data.len() != expected {
            return Err(KernelError::WeightSize {
                ty,
                rows,
                cols,
                expected,
                actual: data.len(),
            });
        }
        Ok(QMatrix {
            ty,
            rows,
            cols,
            data,
        })
    }

    /// Bytes of one weight row.
    pub fn row_bytes(&self) -> usize {
        self.cols / self.ty.block_size() * self.ty.type_size()
    }
}

/// The instruction sets with kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Portable Rust, the reference for every SIMD path.
    Scalar,
    /// x86_64 AVX2 with FMA and F16C.
    Avx2,
    /// x86_64 AVX-512 (F, BW, VL) with VNNI (`vpdpbusd`, `vpdpwssd`), on top of [`Isa::Avx2`].
    Avx512Vnni,
}

impl Isa {
    /// Every instruction set, best last.
    pub const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2, Isa::Avx512Vnni];

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512Vnni => "avx512vnni",
        }
    }

    /// Whether this CPU runs the set.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => {
                Isa::Avx2.is_available()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2 | Isa::Avx512Vnni => false,
        }
    }

    /// The best set this CPU runs.
    pub fn detect() -> Isa {
        Isa::ALL
            .into_iter()
            .rev()
            .find(|isa| isa.is_available())
            .unwrap_or(Isa::Scalar)
    }

    /// The sets this CPU runs.
    pub fn available() -> Vec<Isa> {
        Isa::ALL
            .into_iter()
            .filter(|isa| isa.is_available())
            .collect()
    }
}

/// Writes `out.set(r, i, dot(weight row r, xs[i]))` for every row `r` in the weight bytes `w`
/// (rows of `row_bytes`) and every activation row `xs[i]` (`xs.len()` in `1..=MAX_TILE`). Every
/// kernel asserts these shapes on entry ([`check_tile`]) and panics if they do not hold.
pub(crate) type TileFn<A> = fn(w: &[u8], row_bytes: usize, xs: &[&[A]], out: Out);

/// Where a kernel writes its results: element `(r, i)` (weight row `r` of the task, activation
/// row `i` of the tile) at `ptr + r + i · col_step`, for `r < rows`, `i < cols`: the weight rows
/// of a task are always consecutive elements of `y` `[m, rows]`, the activation rows `col_step`
/// (the weight's rows) apart. In prefill the tasks write straight into `y`, each its own columns,
/// so no task's elements are another's (a transposed buffer and its copy, by count of operations
/// about a seventh of the kernel's work on 576-column matrices, are not needed).
#[derive(Clone, Copy)]
pub(crate) struct Out {
    ptr: *mut f32,
    rows: usize,
    cols: usize,
    col_step: usize,
}

impl Out {
    /// # Safety
    /// For `r < rows` and `i < cols`, `ptr + r + i · col_step` must be valid for writes for as
    /// long as the `Out` (and its copies) is used, and written by no one else.
    unsafe fn new(ptr: *mut f32, rows: usize, cols: usize, col_step: usize) -> Out {
        Out {
            ptr,
            rows,
            cols,
            col_step,
        }
    }

    /// The whole of `y` as one activation row (decoding): element `(r, 0)` is `y[r]`.
    ///
    /// # Safety
    /// The `Out` must not be used after `y`'s borrow ends, nor `y` otherwise accessed meanwhile.
    unsafe fn column(y: &mut [f32]) -> Out {
        // SAFETY: (r, 0) -> y[r], in y for r < y.len() = rows; valid and exclusive for as long
        // as the `Out` is used, by this function's contract.
        unsafe { Out::new(y.as_mut_ptr(), y.len(), 1, 0) }
    }

    /// Writes element `(r, i)`.
    #[inline(always)]
    pub(crate) fn set(&self, r: usize, i: usize, v: f32) {
        assert!(
            r < self.rows && i < self.cols,
            "kernel output out of its tile"
        );
        // SAFETY: r < rows and i < cols (asserted above, in release builds too), so the element
        // is one that `Out::new`'s contract makes valid for writes and exclusive to this `Out`.
        unsafe { *self.ptr.add(r + i * self.col_step) = v }
    }

    /// Writes elements `(r, 0..v.len())`.
    #[inline(always)]
    pub(crate) fn set_row(&self, r: usize, v: &[f32]) {
        for (i, &v) in v.iter().enumerate() {
            self.set(r, i, v);
        }
    }

    /// Writes elements `(0..v.len(), i)`: consecutive floats of `y`.
    #[inline(always)]
    pub(crate) fn set_col(&self, i: usize, v: &[f32]) {
        assert!(
            v.len() <= self.rows && i < self.cols,
            "kernel output out of its tile"
        );
        // SAFETY: (r, i) for r < v.len() ≤ rows and i < cols (asserted above) are elements that
        // `Out::new`'s contract makes valid for writes and exclusive to this `Out`; they are
        // consecutive, and `v` is a shared borrow, so it is not among them.
        unsafe {
            std::ptr::copy_nonoverlapping(v.as_ptr(), self.ptr.add(i * self.col_step), v.len())
        }
    }

    /// The same rows from activation row `i` on.
    #[inline(always)]
    pub(crate) fn skip_cols(&self, i: usize) -> Out {
        assert!(i <= self.cols, "kernel output out of its tile");
        Out {
            // stays within (or one past) the region: i ≤ cols
            ptr: self.ptr.wrapping_add(i * self.col_step),
            cols: self.cols - i,
            ..*self
        }
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub(crate) fn cols(&self) -> usize {
        self.cols
    }
}

/// Which activations a weight format dots with.
#[derive(Clone, Copy)]
enum Family {
    Float,
    X32,
    /// IQ4_NL and MXFP4: 32 table-indexed nibbles against `block_q8_0` activations.
    Lut32,
    K,
    /// The super-block i-quants and the ternary formats against `block_q8_K` activations.
    IQ,
}

/// Whether the CPU kernels multiply weights of type `ty` in their blocks (the CubeCL kernels
/// handle the same types: [`crate::cube::is_supported`]).
pub fn has_kernel(ty: GgmlType) -> bool {
    kernel_family(ty).is_some()
}

fn kernel_family(ty: GgmlType) -> Option<Family> {
    use GgmlType::*;
    match ty {
        F32 | F16 | BF16 => Some(Family::Float),
        Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 => Some(Family::X32),
        Q2_K | Q3_K | Q4_K | Q5_K | Q6_K => Some(Family::K),
        IQ4_NL | MXFP4 => Some(Family::Lut32),
        ty if iquants::is_iquant(ty) => Some(Family::IQ),
        _ => None,
    }
}

/// `y = x · Wᵀ`: `x` is `[m, cols]` row-major f32, `y` is `[m, rows]`. Uses all rayon threads
/// and the best instruction set of this CPU.
pub fn qmatmul(w: &QMatrix, x: &[f32], m: usize, y: &mut [f32]) -> Result<(), KernelError> {
    qmatmul_with_isa(w, x, m, y, Isa::detect())
}

/// [`qmatmul`] with the instruction set forced (to test one SIMD path against another).
pub fn qmatmul_with_isa(
    w: &QMatrix,
    x: &[f32],
    m: usize,
    y: &mut [f32],
    isa: Isa,
) -> Result<(), KernelError> {
    if !isa.is_available() {
        return Err(KernelError::IsaUnavailable { isa: isa.name() });
    }
    // the fields are public: check them again
    let w = &QMatrix::new(w.ty, w.rows, w.cols, w.data)?;
    let in_len = m.checked_mul(w.cols).ok_or(KernelError::BadShape {
        rows: m,
        cols: w.cols,
    })?;
    if x.len() != in_len {
        return Err(KernelError::BufferSize {
            what: "activation x [m, cols]",
            expected: in_len,
            actual: x.len(),
        });
    }
    let out_len = m.checked_mul(w.rows).ok_or(KernelError::BadShape {
        rows: m,
        cols: w.rows,
    })?;
    if y.len() != out_len {
        return Err(KernelError::BufferSize {
            what: "output y [m, rows]",
            expected: out_len,
            actual: y.len(),
        });
    }
    if m == 0 {
        return Ok(());
    }
    with_kernel(w.ty, isa, x, (w.rows, w.cols), m, DriveAll { w, y })
}

/// What to do with a kernel once its activations are ready: [`with_kernel`] calls `run` with
/// the activation rows in the kernel's layout, the kernel and its tile size.
trait UseKernel {
    fn run<A: Sync>(self, xs: &[&[A]], kernel: TileFn<A>, tile: usize);
}

/// Hands `then` the kernel of `ty` on `isa` for `m` activation rows and a weight matrix of
/// `rows × cols`, with the activations `x` (`[m, cols]` f32, `cols` whole blocks of `ty`)
/// quantized or rounded as that kernel reads them.
/// The only place the kernels are looked up: it checks that this CPU runs `isa`, which the SIMD
/// kernels' `unsafe` calls rely on.
fn with_kernel(
    ty: GgmlType,
    isa: Isa,
    x: &[f32],
    (rows, cols): (usize, usize),
    m: usize,
    then: impl UseKernel,
) -> Result<(), KernelError> {
    if !isa.is_available() {
        return Err(KernelError::IsaUnavailable { isa: isa.name() });
    }
    let unsupported = || KernelError::UnsupportedType { ty };
    match kernel_family(ty).ok_or_else(unsupported)? {
        Family::Float if matches!(ty, GgmlType::F32 | GgmlType::F16) => {
            // ggml's order (float.rs): llamafile's tinyBLAS takes two or more activation rows
            // when the length is whole 16-lane steps and the weight rows come in fours
            // (`llamafile_sgemm`: `n < 2`, `k % KN`, `m % 4` decline); `vec_dot_f32/f16`
            // otherwise. F16 weights meet the activations rounded to f16 (ggml converts them to
            // F16, its `vec_dot_type`, before either), F32 weights the activations as they are.
            let tiny = m >= 2 && cols.is_multiple_of(16) && rows.is_multiple_of(4);
            let kernel = float::ggml_tile_fn(ty, isa, tiny).ok_or_else(unsupported)?;
            let rounded: Option<Vec<f32>> = (ty == GgmlType::F16).then(|| {
                x.par_iter()
                    .map(|&v| half::f16::from_f32(v).to_f32())
                    .collect()
            });
            let x = rounded.as_deref().unwrap_or(x);
            let rows: Vec<&[f32]> = x.chunks_exact(cols).collect();
            then.run(&rows, kernel, TILE);
        }
        Family::Float => {
            // BF16 weights in ggml's order (bf16.rs): the activations rounded to BF16 (ggml's
            // `vec_dot_type`), tinyBLAS when `llamafile_sgemm` takes the product, else
            // `vec_dot_bf16`; both rows in the kernels' step layout.
            let tiny = bf16::uses_tiny(rows, cols, m);
            #[cfg(target_arch = "x86_64")]
            if isa == Isa::Avx512Vnni && bf16::native::available() {
                // The instruction itself where the CPU has it (the same bits, faster).
                let kernel = bf16::native::tile_fn(tiny);
                let mut bits = vec![0u16; x.len()];
                bits.par_chunks_mut(cols)
                    .zip(x.par_chunks(cols))
                    .for_each(|(out, x)| bf16::native::round_activations(x, out));
                let rows: Vec<&[u16]> = bits.chunks_exact(cols).collect();
                then.run(&rows, kernel, TILE);
                return Ok(());
            }
            let kernel = bf16::tile_fn(isa, tiny);
            let mut rounded = vec![0f32; x.len()];
            rounded
                .par_chunks_mut(cols)
                .zip(x.par_chunks(cols))
                .for_each(|(out, x)| bf16::round_activations(x, out));
            let rows: Vec<&[f32]> = rounded.chunks_exact(cols).collect();
            then.run(&rows, kernel, TILE);
        }
        Family::X32 | Family::Lut32 if follows_ggml_repack(ty, rows) => {
            // Q4_0, IQ4_NL and MXFP4 in llama.cpp's repacked kernels' order (repacked.rs),
            // decoding and prefill.
            let acts = quantize_act::quantize_blocks(x, cols);
            let rows: Vec<&[ActQ8Block]> = acts.chunks_exact(cols / 32).collect();
            #[cfg(target_arch = "x86_64")]
            if repacked::takes_bands(isa, m) {
                let kernel = repacked::tile_fn_bands(ty).ok_or_else(unsupported)?;
                run_in_bands(&rows, kernel, then);
                return Ok(());
            }
            let kernel = repacked::tile_fn(ty, isa).ok_or_else(unsupported)?;
            then.run(&rows, kernel, TILE);
        }
        Family::X32 if !follows_ggml_vec_dot(ty, rows, m, isa) => {
            // Q4_0 prefill: llama.cpp does not take `ggml_vec_dot_*`'s order there either (it
            // repacks Q4_0); the interleaved kernel is faster on tiles of several rows (see
            // interleaved.rs).
            let kernel = interleaved::tile_fn(ty, isa).ok_or_else(unsupported)?;
            let acts = quantize_act::quantize_x32(x, cols);
            let rows: Vec<&[ActQ8x32]> =
                acts.chunks_exact(quantize_act::groups_x32(cols)).collect();
            then.run(&rows, kernel, TILE);
        }
        Family::X32 => {
            // ggml's own float order (`ggml_vec_dot_<fmt>_q8_*`: llama.cpp's results bit for
            // bit), see legacy.rs.
            let kernel = legacy::tile_fn(ty, isa).ok_or_else(unsupported)?;
            let acts = quantize_act::quantize_blocks(x, cols);
            let rows: Vec<&[ActQ8Block]> = acts.chunks_exact(cols / 32).collect();
            then.run(&rows, kernel, TILE);
        }
        Family::Lut32 => {
            // `ggml_vec_dot_<fmt>_q8_0`'s order (nibble_lut.rs).
            let kernel = nibble_lut::tile_fn_vec_dot(ty, isa).ok_or_else(unsupported)?;
            let acts = quantize_act::quantize_blocks(x, cols);
            let rows: Vec<&[ActQ8Block]> = acts.chunks_exact(cols / 32).collect();
            then.run(&rows, kernel, TILE);
        }
        Family::IQ => {
            // `vec_dot`'s order for fewer than 8 rows (and the ternary formats always), the
            // tiled matmul's for more (iquants.rs).
            let acts = quantize_act::quantize_k_seq(x, cols);
            let rows: Vec<&[ActQ8KSeq]> = acts.chunks_exact(cols / 256).collect();
            #[cfg(target_arch = "x86_64")]
            if iquants::takes_all_rows(ty, isa, m) {
                let kernel = iquants_x86::tile_fn_bands(ty).ok_or_else(unsupported)?;
                run_in_bands(&rows, kernel, then);
                return Ok(());
            }
            let kernel = iquants::tile_fn(ty, isa, m).ok_or_else(unsupported)?;
            then.run(&rows, kernel, MAX_TILE);
        }
        Family::K if follows_ggml_repack(ty, rows) => {
            // Q4_K and Q2_K in llama.cpp's repacked kernels' order (repacked_k.rs), decoding
            // and prefill.
            let kernel = repacked_k::tile_fn(ty, isa).ok_or_else(unsupported)?;
            let acts = repacked_k::quantize(x, cols);
            let rows: Vec<&[repacked_k::ActQ8KR]> = acts.chunks_exact(cols / 256).collect();
            then.run(&rows, kernel, MAX_TILE);
        }
        Family::K if kquants::uses_seq(m) => {
            // Fewer than 8 activation rows: `ggml_vec_dot_q<n>_K_q8_K`'s order (kquants.rs).
            let kernel = kquants::tile_fn_seq(ty, isa).ok_or_else(unsupported)?;
            let acts = quantize_act::quantize_k_seq(x, cols);
            let rows: Vec<&[ActQ8KSeq]> = acts.chunks_exact(cols / 256).collect();
            then.run(&rows, kernel, TILE);
        }
        Family::K => {
            // 8 or more: the order of ggml's tiled K-quant matmul, which llama.cpp takes there
            // (tiled_k.rs).
            let acts = quantize_act::quantize_k_seq(x, cols);
            let rows: Vec<&[ActQ8KSeq]> = acts.chunks_exact(cols / 256).collect();
            #[cfg(target_arch = "x86_64")]
            if isa == Isa::Avx512Vnni {
                let kernel = tiled_k::tile_fn_bands(ty).ok_or_else(unsupported)?;
                run_in_bands(&rows, kernel, then);
                return Ok(());
            }
            let kernel = tiled_k::tile_fn(ty, isa).ok_or_else(unsupported)?;
            then.run(&rows, kernel, MAX_TILE);
        }
    }
    Ok(())
}

/// Hands `then` a kernel that takes all activation rows at once in bands of 16 (the AVX-512 VNNI
/// tiled kernels), with the rows `rows` (blocks of `block_q8_K` or `block_q8_0`) transposed into
/// bands once for every task of the matmul.
#[cfg(target_arch = "x86_64")]
fn run_in_bands<B: tiled_k::x86::BandFill>(
    rows: &[&[B::Act]],
    kernel: TileFn<B>,
    then: impl UseKernel,
) {
    use tiled_k::x86::{band_rows, bands};
    let nb = rows.first().map_or(0, |r| r.len());
    let bands: Vec<B> = bands(rows, nb);
    let xs = band_rows(&bands, rows.len(), nb);
    then.run(&xs, kernel, rows.len());
}

/// [`drive`] over the whole matrix `w` into `y` (the matmul).
struct DriveAll<'a, 'b> {
    w: &'a QMatrix<'a>,
    y: &'b mut [f32],
}

impl UseKernel for DriveAll<'_, '_> {
    fn run<A: Sync>(self, xs: &[&[A]], kernel: TileFn<A>, tile: usize) {
        drive(self.w, xs, kernel, tile, self.y);
    }
}

/// Calls the kernel that [`qmatmul_with_isa`] picks for `ty`, `isa` and `m = x.len() / x_cols`
/// activation rows once, on all weight rows of `w` (rows of `row_bytes`) and all `m` activation
/// rows of `x_cols` each as one tile, into a `[m, y_rows]` output, which it returns. Unlike
/// [`qmatmul_with_isa`] it does not check these shapes against each other: it is for tests that
/// hand the kernels inconsistent shapes and expect their entry assertions ([`check_tile`]) to
/// panic rather than read out of bounds. Panics if `x_cols` is not whole blocks of `ty` or `x`
/// not whole rows of it (the activation quantizers' own requirements).
#[doc(hidden)]
pub fn run_tile_kernel(
    ty: GgmlType,
    isa: Isa,
    w: &[u8],
    row_bytes: usize,
    x: &[f32],
    x_cols: usize,
    y_rows: usize,
) -> Result<Vec<f32>, KernelError> {
    assert!(
        x_cols > 0 && x_cols.is_multiple_of(ty.block_size()) && x.len().is_multiple_of(x_cols),
        "run_tile_kernel: x is not whole rows of whole blocks"
    );
    let m = x.len() / x_cols;
    let mut y = vec![0f32; m * y_rows];
    // SAFETY: (r, i) -> y[r + i · y_rows] for r < y_rows, i < m is in y (m · y_rows elements),
    // which this function owns for as long as the `Out` lives (the kernel call below).
    let out = unsafe { Out::new(y.as_mut_ptr(), y_rows, m, y_rows) };
    struct Once<'a> {
        w: &'a [u8],
        row_bytes: usize,
        out: Out,
    }
    impl UseKernel for Once<'_> {
        fn run<A: Sync>(self, xs: &[&[A]], kernel: TileFn<A>, _tile: usize) {
            kernel(self.w, self.row_bytes, xs, self.out);
        }
    }
    with_kernel(ty, isa, x, (y_rows, x_cols), m, Once { w, row_bytes, out })?;
    Ok(y)
}

/// The shapes every tile kernel ([`TileFn`]) relies on, asserted on entry, in release builds too
/// (once per call, outside the loops): weight rows of `row_bytes`, whole blocks of
/// `block_bytes` (a float for the float formats); `w` whole rows; 1..=[`MAX_TILE`] activation
/// rows of exactly one item per `per_item` weight blocks, rounded up (1 for a block or a float
/// per block, 8 for [`ActQ8x32`]'s groups of eight); and an output of exactly the weight rows by
/// at least the activation rows. Returns the number of weight rows. The SIMD kernels' raw reads
/// stay in bounds given these (their `SAFETY` comments say how); a caller that breaks them gets
/// a panic with the mismatch, not an out-of-bounds read.
pub(crate) fn check_tile<A>(
    w: &[u8],
    row_bytes: usize,
    block_bytes: usize,
    per_item: usize,
    xs: &[&[A]],
    out: &Out,
) -> usize {
    check_tile_of(w, row_bytes, block_bytes, per_item, xs, out, MAX_TILE)
}

/// [`check_tile`] for a kernel that takes up to `max_rows` activation rows (the AVX-512 VNNI
/// prefill kernels take all of them, in bands of 16: [`run_in_bands`]).
pub(crate) fn check_tile_of<A>(
    w: &[u8],
    row_bytes: usize,
    block_bytes: usize,
    per_item: usize,
    xs: &[&[A]],
    out: &Out,
    max_rows: usize,
) -> usize {
    assert!(
        row_bytes > 0 && row_bytes.is_multiple_of(block_bytes),
        "tile kernel: weight rows of {row_bytes} bytes are not whole blocks of {block_bytes}"
    );
    assert!(
        w.len().is_multiple_of(row_bytes),
        "tile kernel: {} weight bytes are not whole rows of {row_bytes}",
        w.len()
    );
    let n_rows = w.len() / row_bytes;
    let acts = (row_bytes / block_bytes).div_ceil(per_item);
    assert!(
        (1..=max_rows).contains(&xs.len()),
        "tile kernel: {} activation rows, a tile has 1..={max_rows}",
        xs.len()
    );
    for (i, x) in xs.iter().enumerate() {
        assert!(
            x.len() == acts,
            "tile kernel: activation row {i} has length {}, the weight rows need {acts}",
            x.len()
        );
    }
    assert!(
        out.rows() == n_rows && out.cols() >= xs.len(),
        "tile kernel: output of {} x {} for {n_rows} weight rows x {} activation rows",
        out.rows(),
        out.cols(),
        xs.len()
    );
    n_rows
}

/// ggml's `vec_dot_q8_0_q8_0` of every Q8_0 row of `w` (rows of `row_bytes`) with every activation
/// row of `xs` (quantized by [`quantize_act::quantize_blocks`]): `y[i · rows + r]` for weight row
/// `r` and activation row `i`, on this thread (the attention's scores over a q8_0 key cache).
pub(crate) fn q8_0_dot_rows(w: &[u8], row_bytes: usize, xs: &[&[ActQ8Block]], y: &mut [f32]) {
    assert!(row_bytes > 0 && w.len().is_multiple_of(row_bytes));
    let rows = w.len() / row_bytes;
    assert_eq!(y.len(), rows * xs.len(), "q8_0_dot_rows: y is [xs, rows]");
    // `detect` gives an instruction set this CPU runs, which the kernel's `unsafe` relies on.
    let kernel = legacy::tile_fn(GgmlType::Q8_0, Isa::detect()).expect("a Q8_0 kernel");
    for (t, xs) in xs.chunks(TILE).enumerate() {
        // SAFETY: (r, i) -> y[(t · TILE + i) · rows + r] for r < rows, i < xs.len() stays in y
        // (y has rows · (all activation rows) elements, asserted above), which is borrowed
        // mutably for as long as the `Out` lives (this kernel call).
        let out = unsafe { Out::new(y.as_mut_ptr().add(t * TILE * rows), rows, xs.len(), rows) };
        kernel(w, row_bytes, xs, out);
    }
}

/// Whether [`qmatmul_with_isa`] on `m` activation rows of a `rows × cols` matrix computes each
/// output in the order of ggml's `vec_dot` for its type, giving its results bit for bit:
/// - the 32-element formats (Q4_0 .. Q8_0, `ggml_vec_dot_<fmt>_q8_<0|1>`, `legacy.rs`) in
///   decoding and prefill (llama.cpp's tinyBLAS sums Q8_0 and Q5_0 in the same order), except
///   Q4_0 with `rows % 8 == 0`, which takes the order of llama.cpp's repacked kernels
///   ([`follows_ggml_repack`]), and other Q4_0 prefill, which takes the faster interleaved
///   kernel (`interleaved.rs`);
/// - the K-quants (`ggml_vec_dot_q<n>_K_q8_K`, `kquants.rs`) for fewer than 8 activation rows
///   (llama.cpp takes its tiled K-quant matmul for more, `tiled_k.rs`), except the matrices it
///   repacks ([`follows_ggml_repack`]).
///
/// F32, F16 and BF16 weights follow ggml's orders too (`vec_dot` or tinyBLAS: float.rs, bf16.rs).
pub fn follows_ggml_vec_dot(ty: GgmlType, rows: usize, m: usize, isa: Isa) -> bool {
    match kernel_family(ty) {
        Some(Family::X32) => {
            !follows_ggml_repack(ty, rows) && (m <= 1 || interleaved::tile_fn(ty, isa).is_none())
        }
        Some(Family::K) => kquants::uses_seq(m) && !follows_ggml_repack(ty, rows),
        Some(Family::Lut32) => !follows_ggml_repack(ty, rows),
        Some(Family::IQ) => iquants::uses_seq(ty, m),
        _ => false,
    }
}

/// Whether llama.cpp's x86 build (AVX-512) repacks a matrix of `ty` with `rows` rows at load and
/// multiplies it with its repacked kernels: Q4_0, IQ4_NL, MXFP4 and Q4_K (with AVX2) and Q2_K
/// (with AVX-512) when `rows % 8 == 0` (`ggml_repack_get_optimal_repack_type`). For these
/// [`qmatmul_with_isa`] sums in their order for any number of activation rows (`repacked.rs`,
/// `repacked_k.rs`).
pub fn follows_ggml_repack(ty: GgmlType, rows: usize) -> bool {
    use GgmlType::*;
    matches!(ty, Q4_0 | IQ4_NL | MXFP4 | Q4_K | Q2_K) && rows.is_multiple_of(8)
}

/// Weight rows per rayon task: 8 tasks per thread when the matrix allows it, so work stealing
/// can even out the threads; in prefill also at most about `TASK_BYTES` of weights, which stay
/// in cache across the passes over the activation tiles. (Decode streams each weight once:
/// bigger tasks only save scheduling.)
fn rows_per_task(rows: usize, row_bytes: usize, m: usize) -> usize {
    // In whole eights where possible: the repacked-order Q4_0 kernel takes eight rows at a time
    // and the rows past the last eight of a task take its scalar code.
    let eights = |n: usize| if n >= 8 { n / 8 * 8 } else { n };
    let by_balance = eights(rows.div_ceil(8 * rayon::current_num_threads()).max(1));
    if m == 1 {
        return by_balance;
    }
    let by_cache = eights((TASK_BYTES / row_bytes).max(1));
    by_cache.min(by_balance)
}

/// Runs `kernel` over all weight rows and activation rows `xs` (`m` of them) in tiles of `tile`
/// rows, writing `y` `[m, rows]`.
fn drive<A: Sync>(w: &QMatrix, xs: &[&[A]], kernel: TileFn<A>, tile: usize, y: &mut [f32]) {
    let row_bytes = w.row_bytes();
    let m = xs.len();
    let task_rows = rows_per_task(w.rows, row_bytes, m);
    let w_rows = w.rows;
    assert_eq!(y.len(), m * w_rows, "y is [m, rows]");
    let weights = w.data.par_chunks(task_rows * row_bytes);
    if m == 1 {
        // Decode: y is one row, laid out as the weight rows are.
        y.par_chunks_mut(task_rows).zip(weights).for_each(|(y, w)| {
            // SAFETY: the `Out` goes to this one kernel call, within `y`'s borrow; y is this
            // task's own chunk of the output.
            kernel(w, row_bytes, xs, unsafe { Out::column(y) })
        });
        return;
    }
    // Prefill: each task walks its weight rows once per tile of activation rows, writing its
    // columns r0..r0 + n_rows of every row of y [m, rows].
    let y_ptr = SharedOut(y.as_mut_ptr());
    let y_ptr = &y_ptr;
    weights.enumerate().for_each(|(t, w)| {
        let (r0, n_rows) = (t * task_rows, w.len() / row_bytes);
        // SAFETY: y has m · rows elements (asserted above) and r0 + n_rows <= rows, so
        // (r, i) -> y[i · rows + r0 + r] stays in y for r < n_rows, i < m; the tasks' column
        // ranges are disjoint, so no element is written by two tasks; `y` is borrowed mutably
        // for the whole call.
        let out = unsafe { Out::new(y_ptr.0.add(r0), n_rows, m, w_rows) };
        for (ti, xs) in xs.chunks(tile).enumerate() {
            kernel(w, row_bytes, xs, out.skip_cols(ti * tile));
        }
    });
}

/// `y`'s pointer, shared by the prefill tasks, which write disjoint elements.
struct SharedOut(*mut f32);
// SAFETY: see `drive`: the tasks write disjoint elements, and the buffer outlives them.
unsafe impl Sync for SharedOut {}
