//! The CPU quantized matmul against the dequantize-then-matmul reference, for all 13 formats,
//! odd shapes, every instruction set this CPU has, and against each other (scalar vs SIMD).
//!
//! # Tolerance
//!
//! The kernels quantize each block of 32 (or 256) activations to `x̂ = dx·q`, `dx = amax/127`,
//! `|x - x̂| ≤ dx/2` (plus the f32 rounding of `x·(1/dx)`, below `127·2⁻²³ · dx`: the factor
//! `1 + 2⁻¹⁵` below). The weights enter exactly (their integer form is the dequantized value),
//! so per output
//!
//! ```text
//! |y - y_ref| ≤ Σ_blocks (dx/2)·(1 + 2⁻¹⁵) · Σ_{j∈block} |w_j|    (activation quantization)
//!             + Σ_blocks of 32 127·dx·2⁻¹¹ · Σ_{j∈block} (|w_j| + C_j)  (f16 scale and sum, as ggml)
//!             + γ · Σ_j (|w_j| + 2·C_j) · (|x_j| + dx/2)             (f32 rounding)
//! ```
//!
//! with `γ = (n + 12)·2⁻²⁴` for `n` f32 accumulations per SIMD lane (at most two per block for
//! the quantized formats, `cols / 8` for the float ones; 12 covers the few roundings of one
//! block's term and the final horizontal sum), and `C_j` a bound on the constant part the
//! kernels split off a weight (`Σ w·x = Σ (w - c)·x + c·Σ x`, see `cpu/legacy.rs` and
//! `cpu/kquants.rs`): the f32 terms are at most `|w| + |c|` and `|c|` each. Float formats have
//! no activation quantization (the first term is 0). Two kernels on the same quantized
//! activations differ by at most twice the second term.

mod qdata;

use gguf_importer::quants::{
    BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K,
    BlockQ8_0, F16,
};
use gguf_importer::GgmlType;
use gguf_kernels::cpu::{qmatmul, qmatmul_with_isa, run_tile_kernel, Isa, QMatrix, MAX_TILE};
use gguf_kernels::error::KernelError;
use gguf_kernels::reference;
use qdata::cpu_bound::{bound_terms, gamma};
use qdata::{random_weights, Rng, FLOATS, QUANTIZED};

/// Test data beyond `qdata`'s (the same splitmix64 stream).
impl Rng {
    /// Uniform in [lo, hi).
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// Activations with some spread between blocks and an occasional outlier.
    fn activations(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let v = self.f32_in(-1.0, 1.0);
                if self.next() & 63 == 0 {
                    8.0 * v
                } else {
                    v
                }
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Weights: the 32-element formats by round-to-nearest from random f32 (as ggml's reference
// quantizers do), the K-quants as random bytes with finite f16 super-scales (valid blocks: every
// bit pattern of the packed fields is a legal value).

/// Round-to-nearest of one block of 32 into `(d, m, q)`: `x ≈ d·q + m`, `q` in `0..levels`
/// (`symmetric`: `m = -d·levels/2`, stored implicitly).
fn rtn(x: &[f32], levels: u32, symmetric: bool) -> (f32, f32, Vec<u8>) {
    let (lo, hi) = x
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let (d, m) = if symmetric {
        let amax = lo.abs().max(hi.abs());
        let d = amax / (levels / 2 - 1) as f32;
        (d, -d * (levels / 2) as f32)
    } else {
        ((hi - lo) / (levels - 1) as f32, lo)
    };
    // round-trip through f16 as the block stores them
    let d = half::f16::from_f32(d).to_f32();
    let m = half::f16::from_f32(m).to_f32();
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let q = x
        .iter()
        .map(|&v| ((v - m) * id).round().clamp(0.0, (levels - 1) as f32) as u8)
        .collect();
    (d, m, q)
}

fn nibbles(q: &[u8]) -> [u8; 16] {
    std::array::from_fn(|j| (q[j] & 15) | ((q[j + 16] & 15) << 4))
}

fn fifth_bits(q: &[u8]) -> [u8; 4] {
    let bits = q
        .iter()
        .enumerate()
        .fold(0u32, |acc, (j, &v)| acc | (((v as u32 >> 4) & 1) << j));
    bits.to_le_bytes()
}

fn quantize_legacy(ty: GgmlType, x: &[f32]) -> Vec<u8> {
    let mut out = Vec::new();
    for x in x.chunks_exact(32) {
        match ty {
            GgmlType::Q4_0 => {
                let (d, _, q) = rtn(x, 16, true);
                out.extend_from_slice(bytemuck::bytes_of(&BlockQ4_0 {
                    d: F16::from_f32(d),
                    qs: nibbles(&q),
                }));
            }
            GgmlType::Q4_1 => {
                let (d, m, q) = rtn(x, 16, false);
                let b = BlockQ4_1 {
                    d: F16::from_f32(d),
                    m: F16::from_f32(m),
                    qs: nibbles(&q),
                };
                out.extend_from_slice(bytemuck::bytes_of(&b));
            }
            GgmlType::Q5_0 => {
                let (d, _, q) = rtn(x, 32, true);
                let b = BlockQ5_0 {
                    d: F16::from_f32(d),
                    qh: fifth_bits(&q),
                    qs: nibbles(&q),
                };
                out.extend_from_slice(bytemuck::bytes_of(&b));
            }
            GgmlType::Q5_1 => {
                let (d, m, q) = rtn(x, 32, false);
                let b = BlockQ5_1 {
                    d: F16::from_f32(d),
                    m: F16::from_f32(m),
                    qh: fifth_bits(&q),
                    qs: nibbles(&q),
                };
                out.extend_from_slice(bytemuck::bytes_of(&b));
            }
            GgmlType::Q8_0 => {
                let amax = x.iter().fold(0f32, |a, &v| a.max(v.abs()));
                let d = half::f16::from_f32(amax / 127.0).to_f32();
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                let qs = std::array::from_fn(|j| (x[j] * id).round().clamp(-127.0, 127.0) as i8);
                out.extend_from_slice(bytemuck::bytes_of(&BlockQ8_0 {
                    d: F16::from_f32(d),
                    qs,
                }));
            }
            _ => unreachable!("not a 32-element format: {ty}"),
        }
    }
    out
}

/// Random bytes with the f16 scale fields set to finite values of a realistic size.
fn random_blocks(ty: GgmlType, n_blocks: usize, rng: &mut Rng) -> Vec<u8> {
    let mut data = rng.bytes(n_blocks * ty.type_size());
    let mut scale = |lo: f32, hi: f32| {
        F16::from_f32(rng.f32_in(lo, hi) * if rng.next() & 1 == 0 { 1.0 } else { -1.0 })
    };
    macro_rules! set {
        ($t:ty, |$b:ident| $body:expr) => {
            for $b in bytemuck::cast_slice_mut::<u8, $t>(&mut data) {
                $body;
            }
        };
    }
    match ty {
        GgmlType::Q4_0 => set!(BlockQ4_0, |b| b.d = scale(0.01, 0.1)),
        GgmlType::Q4_1 => set!(BlockQ4_1, |b| (b.d, b.m) =
            (scale(0.01, 0.1), scale(0.1, 1.0))),
        GgmlType::Q5_0 => set!(BlockQ5_0, |b| b.d = scale(0.01, 0.1)),
        GgmlType::Q5_1 => set!(BlockQ5_1, |b| (b.d, b.m) =
            (scale(0.01, 0.1), scale(0.1, 1.0))),
        GgmlType::Q8_0 => set!(BlockQ8_0, |b| b.d = scale(0.001, 0.01)),
        GgmlType::Q2_K => set!(BlockQ2K, |b| (b.d, b.dmin) =
            (scale(0.01, 0.1), scale(0.01, 0.1))),
        GgmlType::Q3_K => set!(BlockQ3K, |b| b.d = scale(0.005, 0.05)),
        GgmlType::Q4_K => set!(BlockQ4K, |b| (b.d, b.dmin) =
            (scale(0.001, 0.01), scale(0.001, 0.01))),
        GgmlType::Q5_K => set!(BlockQ5K, |b| (b.d, b.dmin) =
            (scale(0.001, 0.01), scale(0.001, 0.01))),
        GgmlType::Q6_K => set!(BlockQ6K, |b| b.d = scale(0.0001, 0.001)),
        _ => unreachable!("not a quantized format: {ty}"),
    }
    data
}

/// A `[rows, cols]` weight of type `ty`: quantized from random f32 where the test has a
/// quantizer (`from_f32`), random valid blocks otherwise.
fn weights(ty: GgmlType, rows: usize, cols: usize, from_f32: bool, rng: &mut Rng) -> Vec<u8> {
    let n = rows * cols;
    match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => random_weights(ty, rows, cols, rng),
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0
            if from_f32 =>
        {
            let x: Vec<f32> = (0..n).map(|_| rng.f32_in(-1.0, 1.0)).collect();
            quantize_legacy(ty, &x)
        }
        _ => random_blocks(ty, n / ty.block_size(), rng),
    }
}

// ---------------------------------------------------------------------------------------------
// The bound: `qdata::cpu_bound` (`bound_terms`, `gamma`), derived in the module docs above.

fn check_case(ty: GgmlType, rows: usize, cols: usize, m: usize, from_f32: bool, rng: &mut Rng) {
    let data = weights(ty, rows, cols, from_f32, rng);
    let w = QMatrix::new(ty, rows, cols, &data).unwrap();
    let x = rng.activations(m * cols);
    let wd = reference::dequantize(&w).unwrap();
    let y_ref = reference::matmul_f64(&wd, rows, cols, &x, m).unwrap();
    let terms = bound_terms(ty, &data, &wd, rows, cols, &x);
    let g = gamma(ty, cols);
    let what = format!("{ty} rows={rows} cols={cols} m={m} from_f32={from_f32}");

    let mut y_scalar = vec![0f32; m * rows];
    qmatmul_with_isa(&w, &x, m, &mut y_scalar, Isa::Scalar).unwrap();
    for isa in Isa::available() {
        let mut y = vec![f32::NAN; m * rows];
        qmatmul_with_isa(&w, &x, m, &mut y, isa).unwrap();
        for k in 0..m * rows {
            let (quant, round) = terms[k];
            let err = (y[k] as f64 - y_ref[k]).abs();
            let tol = quant + g * round;
            assert!(
                err <= tol,
                "{what} {isa:?} [{}, {}]: {} vs reference {} (|err| {err:e} > tol {tol:e})",
                k / rows,
                k % rows,
                y[k],
                y_ref[k]
            );
            let diff = (y[k] as f64 - y_scalar[k] as f64).abs();
            let tol = 2.0 * g * round;
            assert!(
                diff <= tol,
                "{what} {isa:?} [{}, {}]: {} vs scalar {} (|diff| {diff:e} > tol {tol:e})",
                k / rows,
                k % rows,
                y[k],
                y_scalar[k]
            );
        }
    }
    // the public entry point picks the best set
    let mut y = vec![0f32; m * rows];
    qmatmul(&w, &x, m, &mut y).unwrap();
    let mut y_best = vec![0f32; m * rows];
    qmatmul_with_isa(&w, &x, m, &mut y_best, Isa::detect()).unwrap();
    assert_eq!(y, y_best, "{what}: qmatmul is the detected set's kernel");
}

const MS: [usize; 5] = [1, 2, 3, 7, 17];

#[test]
fn quantized_formats_odd_shapes() {
    let mut rng = Rng(1);
    for ty in QUANTIZED {
        for blocks in [1, 2, 5, 13] {
            for rows in [1, 3, 37] {
                for m in MS {
                    check_case(ty, rows, blocks * ty.block_size(), m, true, &mut rng);
                }
            }
        }
    }
}

/// Decoding takes several weight rows per pass from equal segments of a thread's rows: enough
/// rows per thread (301 over up to 16 tasks) for whole passes and a remainder.
#[test]
fn quantized_formats_decode_many_rows() {
    let mut rng = Rng(5);
    for ty in QUANTIZED {
        for rows in [301, 1001] {
            check_case(ty, rows, 3 * ty.block_size(), 1, true, &mut rng);
        }
    }
}

#[test]
fn legacy_formats_random_blocks() {
    // every bit pattern, including Q8_0's -128 that ggml's quantizer never writes
    let mut rng = Rng(2);
    for ty in &QUANTIZED[..5] {
        for m in MS {
            check_case(*ty, 19, 5 * 32, m, false, &mut rng);
        }
    }
}

#[test]
fn float_formats_odd_shapes() {
    let mut rng = Rng(3);
    for ty in FLOATS {
        for cols in [1, 2, 5, 8, 13, 40] {
            for rows in [1, 3, 37] {
                for m in MS {
                    check_case(ty, rows, cols, m, true, &mut rng);
                }
            }
        }
    }
}

#[test]
fn all_formats_model_sized_rows() {
    // long rows (many blocks per accumulator) and enough rows for several tasks per thread
    let mut rng = Rng(4);
    for ty in QUANTIZED.into_iter().chain(FLOATS) {
        for m in [1, 5] {
            check_case(ty, 67, 2048, m, true, &mut rng);
        }
    }
}

/// A value worked out by hand from the Q8_0 format: one block, `d = 0.5`, `q_j = j - 16`,
/// activations all 1 (quantized as ggml's quantize_row_q8_0 does: `q = 127`, scale stored as
/// `f16(1/127)`), so `y = 0.5 · Σ_{j<32} (j - 16) · 127 · f16(1/127) = -8 · 127 · f16(1/127)`.
#[test]
fn q8_0_by_hand() {
    let block = BlockQ8_0 {
        d: F16::from_f32(0.5),
        qs: std::array::from_fn(|j| j as i8 - 16),
    };
    let w = QMatrix::new(GgmlType::Q8_0, 1, 32, bytemuck::bytes_of(&block)).unwrap();
    for isa in Isa::available() {
        let mut y = [0f32];
        qmatmul_with_isa(&w, &[1.0; 32], 1, &mut y, isa).unwrap();
        let expected = -8.0 * 127.0 * half::f16::from_f32(1.0 / 127.0).to_f32();
        assert!(
            (y[0] - expected).abs() < 1e-5,
            "{isa:?}: {} vs {expected}",
            y[0]
        );
    }
}

#[test]
fn bad_input_is_a_typed_error() {
    let data = vec![0u8; 2 * 18];
    assert!(matches!(
        QMatrix::new(GgmlType::Q4_0, 2, 48, &data),
        Err(KernelError::NotBlockAligned {
            cols: 48,
            block_size: 32,
            ..
        })
    ));
    assert!(matches!(
        QMatrix::new(GgmlType::Q4_0, 3, 32, &data),
        Err(KernelError::WeightSize {
            expected: 54,
            actual: 36,
            ..
        })
    ));
    assert!(matches!(
        QMatrix::new(GgmlType::Q8_K, 1, 256, &data),
        Err(KernelError::UnsupportedType { ty: GgmlType::Q8_K })
    ));
    assert!(matches!(
        QMatrix::new(GgmlType::Q4_0, 0, 32, &[]),
        Err(KernelError::BadShape { .. })
    ));
    let w = QMatrix::new(GgmlType::Q4_0, 2, 32, &data).unwrap();
    let mut y = [0f32; 2];
    assert!(matches!(
        qmatmul(&w, &[0.0; 31], 1, &mut y),
        Err(KernelError::BufferSize {
            expected: 32,
            actual: 31,
            ..
        })
    ));
    assert!(matches!(
        qmatmul(&w, &[0.0; 64], 2, &mut y),
        Err(KernelError::BufferSize {
            expected: 4,
            actual: 2,
            ..
        })
    ));
    // a matrix built from its public fields is checked again
    let forged = QMatrix {
        ty: GgmlType::Q4_0,
        rows: 3,
        cols: 32,
        data: &data,
    };
    assert!(matches!(
        qmatmul(&forged, &[0.0; 32], 1, &mut [0f32; 3]),
        Err(KernelError::WeightSize {
            expected: 54,
            actual: 36,
            ..
        })
    ));
    let missing = Isa::ALL.into_iter().find(|isa| !isa.is_available());
    if let Some(isa) = missing {
        assert!(matches!(
            qmatmul_with_isa(&w, &[0.0; 32], 1, &mut y, isa),
            Err(KernelError::IsaUnavailable { .. })
        ));
    }
}

#[test]
fn reports_the_instruction_sets() {
    // not an assertion about the machine: the SIMD sets above were tested only if listed here
    let sets = Isa::available();
    assert!(sets.contains(&Isa::Scalar));
    assert!(sets.contains(&Isa::detect()));
    eprintln!("instruction sets tested: {sets:?}");
}

/// A NaN activation makes every output it meets NaN, as in f32 arithmetic (IEEE 754: NaN · w is
/// NaN), rather than being quantized away.
/// Activations of a few thousand (a block's 8-bit scale times its integer sum past f16's range):
/// Q4_0's prefill kernel, which folds the -8 offset through that sum, gives the finite products
/// that one row at a time (ggml's `vec_dot_q4_0_q8_0` order) gives, to f32 rounding of the
/// terms (1e-6 of `Σ|w·x|`), on every instruction set. (Found by
/// kernels/tests/proptest_kernels.rs: the sum was rounded to f16 and overflowed to -inf.)
#[test]
fn q4_0_prefill_with_large_activations_stays_finite() {
    let (rows, cols, m) = (3, 64, 4);
    let w = random_weights(GgmlType::Q4_0, rows, cols, &mut Rng(7));
    let w = QMatrix::new(GgmlType::Q4_0, rows, cols, &w).unwrap();
    let x: Vec<f32> = (0..m * cols)
        .map(|i| 2100.0 + (i % 7) as f32 * 300.0)
        .collect();
    let dense = reference::dequantize(&w).unwrap();
    let magnitude = |i: usize, r: usize| -> f32 {
        let x = &x[i * cols..][..cols];
        let w = &dense[r * cols..][..cols];
        x.iter().zip(w).map(|(x, w)| (x * w).abs()).sum()
    };
    for isa in Isa::available() {
        let mut y = vec![0f32; m * rows];
        qmatmul_with_isa(&w, &x, m, &mut y, isa).unwrap();
        for i in 0..m {
            let mut one = vec![0f32; rows];
            qmatmul_with_isa(&w, &x[i * cols..][..cols], 1, &mut one, isa).unwrap();
            for (r, (&got, &want)) in y[i * rows..][..rows].iter().zip(&one).enumerate() {
                assert!(
                    got.is_finite() && (got - want).abs() <= 1e-6 * magnitude(i, r),
                    "{} y[{i}, {r}] = {got}, one row at a time {want}",
                    isa.name()
                );
            }
        }
    }
}

/// The kernels that follow one of ggml's orders (Q4_0 in the repacked kernels' order, F32, F16
/// and BF16 in `vec_dot_f32/f16/bf16`'s and tinyBLAS's, the K-quants in the tiled matmul's with
/// 13 activation rows, in groups of eight weight rows and not) give the same bits on every instruction set as the
/// portable code that defines the order: decoding and prefill, rows in eights and not (the
/// eight-row SIMD groups and their scalar remainder), lengths with and without a tail past the
/// last whole 64 (or 8-block group).
#[test]
fn ggml_order_kernels_agree_across_instruction_sets() {
    let mut rng = Rng(11);
    for (ty, rows, cols) in [
        (GgmlType::Q4_0, 8, 96), // one-row tasks
        (GgmlType::Q4_0, 64, 96),
        (GgmlType::Q4_0, 136, 512),
        (GgmlType::F16, 8, 80),
        (GgmlType::F16, 12, 2048),
        (GgmlType::F32, 8, 80),
        (GgmlType::F32, 12, 2048),
        (GgmlType::BF16, 8, 80),
        (GgmlType::BF16, 12, 2048),
        (GgmlType::Q3_K, 12, 512),
        (GgmlType::Q4_K, 12, 512),
        (GgmlType::Q6_K, 8, 256),
        // tasks of whole eights of rows and remainders: the tiled kernel's eight-row groups
        (GgmlType::Q6_K, 300, 512),
        (GgmlType::Q5_K, 300, 512),
        (GgmlType::Q3_K, 300, 256),
    ] {
        let w = random_weights(ty, rows, cols, &mut rng);
        let w = QMatrix::new(ty, rows, cols, &w).unwrap();
        for m in [1, 3, 13] {
            let x = rng.vec_f32(m * cols, -1.0, 1.0);
            let mut want = vec![0f32; m * rows];
            qmatmul_with_isa(&w, &x, m, &mut want, Isa::Scalar).unwrap();
            for isa in Isa::available() {
                let mut y = vec![0f32; m * rows];
                qmatmul_with_isa(&w, &x, m, &mut y, isa).unwrap();
                for (e, (g, w)) in y.iter().zip(&want).enumerate() {
                    assert_eq!(
                        g.to_bits(),
                        w.to_bits(),
                        "{} {rows}x{cols} m={m} {}: y[{e}] = {g:e}, scalar {w:e}",
                        ty.name(),
                        isa.name()
                    );
                }
            }
        }
    }
}

#[test]
fn nan_activations_propagate() {
    let mut rng = Rng(5);
    for ty in QUANTIZED.into_iter().chain(FLOATS) {
        let cols = 2 * ty.block_size().max(32);
        let data = weights(ty, 3, cols, true, &mut rng);
        let w = QMatrix::new(ty, 3, cols, &data).unwrap();
        let mut x = rng.activations(2 * cols);
        x[cols + 5] = f32::NAN; // row 1 only
        for isa in Isa::available() {
            let mut y = vec![0f32; 2 * 3];
            qmatmul_with_isa(&w, &x, 2, &mut y, isa).unwrap();
            assert!(
                y[..3].iter().all(|v| v.is_finite()),
                "{ty} {isa:?}: row 0 has no NaN input: {y:?}"
            );
            assert!(
                y[3..].iter().all(|v| v.is_nan()),
                "{ty} {isa:?}: row 1 has a NaN input: {y:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The kernels' own shape checks.

/// The message `f` panics with, `None` if it returns.
fn panic_message(f: impl FnOnce()) -> Option<String> {
    let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).err()?;
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()));
    Some(message.unwrap_or_else(|| "(not a string)".into()))
}

/// Every kernel (each family of formats, decoding and prefill, every instruction set of this CPU)
/// called directly (`run_tile_kernel`, past `qmatmul`'s typed errors) with shapes that disagree
/// panics with its entry assertion's message (`check_tile` in src/cpu/mod.rs), in release builds
/// too, rather than reading past a slice. With consistent shapes the same direct call gives
/// `qmatmul_with_isa`'s results bit for bit, so what fails below is the check, not the call.
#[test]
fn kernels_assert_their_shapes_on_entry() {
    use GgmlType::*;
    let mut rng = Rng(6);
    let (rows, cols) = (5, 512);
    // the K-quant kernels (element and lane order), ggml's order (Q4_1, Q8_0; Q4_0 and Q8_0 in
    // decoding), the interleaved one (Q4_0 in prefill), the float ones
    for ty in [Q2_K, Q4_K, Q6_K, Q4_0, Q4_1, Q8_0, F32, F16] {
        let data = weights(ty, rows, cols, true, &mut rng);
        let w = QMatrix::new(ty, rows, cols, &data).unwrap();
        let rb = w.row_bytes();
        for isa in Isa::available() {
            // 9 K-quant rows: the tiled kernels (the AVX-512 VNNI one takes its rows in bands)
            let ms: &[usize] = if matches!(ty, Q2_K | Q4_K | Q6_K) {
                &[1, 3, 9]
            } else {
                &[1, 3]
            };
            for &m in ms {
                let what = format!("{ty} {isa:?} m={m}");
                let x = rng.activations((MAX_TILE + 1) * 2 * cols);
                let run = |w: &[u8], rb: usize, x: &[f32], x_cols: usize, y_rows: usize| {
                    panic_message(|| {
                        run_tile_kernel(ty, isa, w, rb, x, x_cols, y_rows).unwrap();
                    })
                };

                let y = run_tile_kernel(ty, isa, &data, rb, &x[..m * cols], cols, rows).unwrap();
                let mut y_ref = vec![0f32; m * rows];
                qmatmul_with_isa(&w, &x[..m * cols], m, &mut y_ref, isa).unwrap();
                let bits = |y: &[f32]| y.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&y), bits(&y_ref), "{what}: direct call vs qmatmul");

                let cases = [
                    (
                        "activation rows half a weight row",
                        run(&data, rb, &x[..m * cols / 2], cols / 2, rows),
                        "tile kernel: activation row 0 has length".to_string(),
                    ),
                    (
                        "activation rows twice a weight row",
                        run(&data, rb, &x[..m * cols * 2], cols * 2, rows),
                        "tile kernel: activation row 0 has length".to_string(),
                    ),
                    (
                        "weight rows not whole blocks",
                        run(&data, rb - 1, &x[..m * cols], cols, rows),
                        format!(
                            "tile kernel: weight rows of {} bytes are not whole blocks",
                            rb - 1
                        ),
                    ),
                    (
                        "weights not whole rows",
                        run(&data[..data.len() - 1], rb, &x[..m * cols], cols, rows),
                        format!(
                            "tile kernel: {} weight bytes are not whole rows of {rb}",
                            data.len() - 1
                        ),
                    ),
                    (
                        "output short of a weight row",
                        run(&data, rb, &x[..m * cols], cols, rows - 1),
                        format!(
                            "tile kernel: output of {} x {m} for {rows} weight rows",
                            rows - 1
                        ),
                    ),
                    (
                        "a tile of too many activation rows",
                        run(&data, rb, &x[..(MAX_TILE + 1) * cols], cols, rows),
                        format!(
                            "tile kernel: {} activation rows, a tile has 1..={MAX_TILE}",
                            MAX_TILE + 1
                        ),
                    ),
                ];
                // The AVX-512 VNNI tiled K-quant kernel takes any number of activation rows.
                let takes_all_rows = isa == Isa::Avx512Vnni && matches!(ty, Q2_K | Q4_K | Q6_K);
                for (case, message, expected) in cases {
                    if takes_all_rows && case == "a tile of too many activation rows" {
                        assert!(message.is_none(), "{what}: {message:?}");
                        continue;
                    }
                    let message = message.unwrap_or_else(|| panic!("{what}, {case}: no panic"));
                    assert!(
                        message.contains(&expected),
                        "{what}, {case}: panicked with {message:?}, not {expected:?}"
                    );
                }
            }
        }
    }
}
