//! Property tests (proptest) of the fused quantized matmul through the public API (`QWeight`,
//! `q_matmul`, `q_matmul_3d`) on every device of the build, over random shapes and block contents
//! of every format with a kernel (`qdata::ALL`: F32, F16, BF16, Q4_0 .. Q8_0, Q2_K .. Q6_K).
//!
//! # What is generated
//!
//! A [`Case`]: the format; weight rows in `1..=70` (below, across and between the GPU tiles and
//! workgroups of 32 and the CPU tiles of 8/16); columns of `k` blocks, `k` in `1..=6`, one time in
//! seven `7..=16` (float formats: any count in `1..=32k`, so also not multiples of 32); activation
//! rows `m` in `1..=4` (the GPU's mat-vec kernels, CPU decoding at 1) or `5..=20` (the GPU's tiled
//! kernel, CPU tiles of 8 and 16), one time in twelve `500..=530` (prefill: many tiles); a batch
//! (a divisor of `m`) for `q_matmul_3d`; how the blocks are filled ([`Blocks`]: `qdata`'s
//! random valid blocks with moderate f16 scales, extreme-but-finite f16 scales (65504, large
//! normals, the smallest normal, subnormals, ±0, any finite pattern), all-zero blocks, or a mix);
//! how the activations are filled ([`Acts`]: uniform in `[-1, 1)`, with outliers up to ±1024, or
//! with all-zero rows); and a seed. Each weight block and each activation row draws from its own
//! stream of that seed, so shrinking a shape keeps the contents of what remains: proptest shrinks
//! a failure to a minimal (format, rows, cols, m) and prints it with its seed.
//!
//! The activations stay where the CPU bound of `cpu_kernels.rs` holds: its 32-element formats
//! store each block of 32 activations' scale `amax/127` and sum `d·Σq` as f16, as ggml's
//! `block_q8_0`/`block_q8_1` do, so a block's sum overflows to ±inf for `amax` ≳ 2048 (outliers
//! here stop at 1024) and its scale loses precision below f16's normal range, `amax` < 127·2⁻¹⁴
//! (uniform rows in `[-1, 1)` practically never have such a block).
//!
//! # Properties
//!
//! - Flex and NdArray: `q_matmul` equals `cpu::qmatmul` on the same bytes bit for bit (they run it
//!   on the tensors' memory), and `cpu::qmatmul` is within the CPU kernels' bound of the f64
//!   reference (`qdata::cpu_bound`, derived in `cpu_kernels.rs`: the activations are quantized to
//!   8 bits per block, so `qdata::expected`'s summation-only bound does not apply to them).
//! - wgpu (through Fusion): `q_matmul` is within `qdata::expected`'s bound of the f64 reference
//!   (the f32 summation bound `γ_{cols+8} · Σ|w·x|`, the one `cube_kernels.rs` and
//!   `extension.rs` use).
//! - Every device: `q_matmul_3d` on `[batch, m / batch, cols]` equals `q_matmul` on the
//!   flattened `[m, cols]` bit for bit.
//!
//! The reference is `gguf_kernels::reference` (the importer's dequantizer, equal to ggml's, then
//! a matmul in f64). No tolerance here is looser than the existing tests'.
//!
//! # Running
//!
//! Deterministic by default: 128 cases per device group from a fixed seed, no failure persistence
//! files. More cases, or another seed, locally:
//!
//! ```text
//! PROPTEST_CASES=2000 cargo test --release -p gguf-kernels --test proptest_kernels
//! PROPTEST_CASES=500 PROPTEST_RNG_SEED=12345 cargo test --release -p gguf-kernels --test proptest_kernels
//! ```
//!
//! The wgpu test needs an adapter (on Linux without a GPU, Mesa's lavapipe); without one it
//! prints why and passes, unless `CI` is set, where it fails.
#![cfg(all(feature = "flex", feature = "ndarray"))]
// Burn deprecates NdArray in favour of Flex; this project still supports (and tests) it.
#![allow(deprecated)]

mod qdata;

#[path = "../../tests/common/ci.rs"]
mod ci;

use std::time::Instant;

use burn::tensor::{Device, Tensor, TensorData};
use gguf_importer::GgmlType;
use gguf_kernels::cpu::{qmatmul, QMatrix};
use gguf_kernels::extension::{q_matmul, q_matmul_3d};
use gguf_kernels::packed::QWeight;
use gguf_kernels::reference;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use qdata::cpu_bound::{bound_terms, gamma};
use qdata::{check_close, expected, f16_offsets, random_weights, Rng, ALL};

/// Cases per test when `PROPTEST_CASES` is not set.
const DEFAULT_CASES: u32 = 128;
/// The proptest seed when `PROPTEST_RNG_SEED` is not set.
const DEFAULT_SEED: u64 = 0x6775_6666_1717;

/// proptest's configuration from the environment (`PROPTEST_*`), with a fixed seed and
/// [`DEFAULT_CASES`] unless those are set, and no persistence files.
fn config() -> Config {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = DEFAULT_CASES;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(DEFAULT_SEED);
    }
    config.failure_persistence = None;
    config
}

// ---------------------------------------------------------------------------------------------
// Cases.

/// How the weight blocks are filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blocks {
    /// `qdata::random_weights`: random quants, f16 scales `±[2⁻⁸, 2⁻²)` or one in eight a
    /// subnormal; float formats uniform in `[-1, 1)`.
    Moderate,
    /// Every f16 scale extreme but finite ([`extreme_f16`]); float formats over a wide exponent
    /// range ([`extreme_float`]).
    Extreme,
    /// Half the blocks (float formats: elements) all zero bytes, the rest moderate.
    Zero,
    /// Each block one of the above at random.
    Mixed,
}

/// How the activations are filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Acts {
    /// Uniform in `[-1, 1)`.
    Uniform,
    /// Uniform, one element in 32 scaled by `2⁴ .. 2¹⁰`.
    Outliers,
    /// Uniform, half the rows all zero.
    ZeroRows,
}

#[derive(Debug, Clone)]
struct Case {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    m: usize,
    /// `q_matmul_3d` takes `[batch, m / batch, cols]`.
    batch: usize,
    blocks: Blocks,
    acts: Acts,
    seed: u64,
}

fn cases() -> impl Strategy<Value = Case> {
    (
        select(ALL.to_vec()),
        1..=70usize,
        prop_oneof![6 => 1..=6usize, 1 => 7..=16usize],
        0..32usize,
        prop_oneof![5 => 1..=4usize, 6 => 5..=20usize, 1 => 500..=530usize],
        any::<Index>(),
        select(vec![
            Blocks::Moderate,
            Blocks::Extreme,
            Blocks::Zero,
            Blocks::Mixed,
        ]),
        select(vec![Acts::Uniform, Acts::Outliers, Acts::ZeroRows]),
        any::<u64>().no_shrink(),
    )
        .prop_map(|(ty, rows, k, rem, m, batch, blocks, acts, seed)| {
            let cols = if ty.is_quantized() {
                k * ty.block_size()
            } else {
                (k - 1) * 32 + rem + 1
            };
            let divisors: Vec<usize> = (1..=m).filter(|d| m.is_multiple_of(*d)).collect();
            Case {
                ty,
                rows,
                cols,
                m,
                batch: divisors[batch.index(divisors.len())],
                blocks,
                acts,
                seed,
            }
        })
}

/// The stream of item `(i, j)` of kind `what` of a case's seed.
fn stream(seed: u64, what: u64, i: usize, j: usize) -> Rng {
    let mut h = Rng(seed ^ what.rotate_left(60) ^ (i as u64).rotate_left(30) ^ j as u64);
    Rng(h.next())
}

/// An extreme but finite f16, either sign: the largest (65504), one in `[32768, 65504]`, the
/// smallest subnormal, any subnormal or zero, the smallest normal, or any finite bit pattern.
fn extreme_f16(rng: &mut Rng) -> [u8; 2] {
    let r = rng.next();
    let low = (r >> 20) as u16 & 0x03FF;
    let bits = match r % 6 {
        0 => 0x7BFF,
        1 => 0x7800 | low,
        2 => 0x0001,
        3 => low,
        4 => 0x0400,
        _ => {
            let b = (r >> 32) as u16 & 0x7FFF;
            if b >= 0x7C00 {
                b & 0x3FFF
            } else {
                b
            }
        }
    };
    (bits | ((r >> 40) as u16 & 0x8000)).to_le_bytes()
}

/// An extreme but finite weight of a float format: F16 any finite pattern (subnormals and 65504
/// included); F32 and BF16 `±2^e · (1 + f)` with `e` in `-60..=20` (products with the
/// activations stay normal f32 and sums far from overflow), or zero.
fn extreme_float(ty: GgmlType, rng: &mut Rng) -> Vec<u8> {
    let r = rng.next();
    let sign = (r >> 63) as u32;
    let e = 127 - 60 + (r % 81) as u32;
    let f32_bits = (sign << 31) | (e << 23) | ((r >> 8) as u32 & 0x007F_FFFF);
    let v = if r & 0xF0 == 0 {
        0.0
    } else {
        f32::from_bits(f32_bits)
    };
    match ty {
        GgmlType::F32 => v.to_le_bytes().to_vec(),
        GgmlType::BF16 => half::bf16::from_f32(v).to_le_bytes().to_vec(),
        GgmlType::F16 => {
            let b = (r >> 16) as u16;
            let b = if b & 0x7C00 == 0x7C00 { b & 0xBFFF } else { b };
            b.to_le_bytes().to_vec()
        }
        _ => unreachable!("not a float format: {ty}"),
    }
}

/// One block of `ty` (float formats: one element) of the given kind.
fn block(ty: GgmlType, kind: Blocks, rng: &mut Rng) -> Vec<u8> {
    let kind = match kind {
        Blocks::Mixed => {
            [Blocks::Moderate, Blocks::Extreme, Blocks::Zero][(rng.next() % 3) as usize]
        }
        Blocks::Zero if rng.next() & 1 == 0 => Blocks::Moderate,
        k => k,
    };
    match kind {
        Blocks::Zero => vec![0; ty.type_size()],
        Blocks::Extreme if !ty.is_quantized() => extreme_float(ty, rng),
        Blocks::Extreme => {
            let mut b = random_weights(ty, 1, ty.block_size(), rng);
            for o in f16_offsets(ty) {
                b[o..o + 2].copy_from_slice(&extreme_f16(rng));
            }
            b
        }
        _ => random_weights(ty, 1, ty.block_size(), rng),
    }
}

/// The GGUF bytes of the case's `[rows, cols]` weight.
fn weights(c: &Case) -> Vec<u8> {
    let blocks = c.cols / c.ty.block_size();
    let mut w = Vec::with_capacity(c.rows * blocks * c.ty.type_size());
    for r in 0..c.rows {
        for b in 0..blocks {
            w.extend(block(c.ty, c.blocks, &mut stream(c.seed, 0, r, b)));
        }
    }
    w
}

/// The case's `[m, cols]` activations.
fn activations(c: &Case) -> Vec<f32> {
    let mut x = Vec::with_capacity(c.m * c.cols);
    for i in 0..c.m {
        let mut rng = stream(c.seed, 1, i, 0);
        if c.acts == Acts::ZeroRows && rng.next() & 1 == 0 {
            x.extend(std::iter::repeat_n(0.0, c.cols));
            continue;
        }
        for _ in 0..c.cols {
            let v = rng.f32_in(-1.0, 1.0);
            let v = if c.acts == Acts::Outliers && rng.next().is_multiple_of(32) {
                v * (1u32 << (4 + rng.next() % 7)) as f32
            } else {
                v
            };
            x.push(v);
        }
    }
    x
}

// ---------------------------------------------------------------------------------------------
// The properties.

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 output")
}

/// The first element where `got` and `want` differ in their bits.
fn check_bits(what: &str, got: &[f32], want: &[f32]) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len(), "{}: output length", what);
    if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
        return Err(TestCaseError::fail(format!(
            "{what}: y[{i}] = {} ({:#010x}), want {} ({:#010x})",
            got[i],
            got[i].to_bits(),
            want[i],
            want[i].to_bits()
        )));
    }
    Ok(())
}

/// `q_matmul` on `device`, and `q_matmul_3d` equal to it bit for bit.
fn run_device(c: &Case, device: &Device, w: &[u8], x: &[f32]) -> Result<Vec<f32>, TestCaseError> {
    let (m, cols, rows) = (c.m, c.cols, c.rows);
    let qw = QWeight::new(c.ty, rows, cols, w, device)
        .map_err(|e| TestCaseError::fail(format!("QWeight::new: {e}")))?;
    let x2 = Tensor::<2>::from_data(TensorData::new(x.to_vec(), [m, cols]), device);
    let y = host(q_matmul(x2, &qw).map_err(|e| TestCaseError::fail(format!("q_matmul: {e}")))?);
    let x3 = Tensor::<3>::from_data(
        TensorData::new(x.to_vec(), [c.batch, m / c.batch, cols]),
        device,
    );
    let y3 = q_matmul_3d(x3, &qw).map_err(|e| TestCaseError::fail(format!("q_matmul_3d: {e}")))?;
    prop_assert_eq!(y3.dims(), [c.batch, m / c.batch, rows]);
    check_bits(
        &format!("{device:?} q_matmul_3d vs q_matmul"),
        &host(y3),
        &y,
    )?;
    Ok(y)
}

/// Flex and NdArray equal `cpu::qmatmul` bit for bit, which is within the CPU bound.
fn check_cpu(c: &Case) -> Result<(), TestCaseError> {
    let (w, x) = (weights(c), activations(c));
    let (ty, rows, cols, m) = (c.ty, c.rows, c.cols, c.m);
    let q = QMatrix::new(ty, rows, cols, &w).expect("valid test matrix");
    let mut want = vec![0f32; m * rows];
    qmatmul(&q, &x, m, &mut want).expect("cpu::qmatmul");

    let wd = reference::dequantize(&q).expect("reference dequantize");
    let y_ref = reference::matmul_f64(&wd, rows, cols, &x, m).expect("reference matmul");
    let terms = bound_terms(ty, &w, &wd, rows, cols, &x);
    let g = gamma(ty, cols);
    for (k, (&y, &(quant, round))) in want.iter().zip(&terms).enumerate() {
        let (err, tol) = ((y as f64 - y_ref[k]).abs(), quant + g * round);
        prop_assert!(
            err <= tol,
            "cpu::qmatmul y[{}, {}] = {}, reference {}, error {:e} > bound {:e}",
            k / rows,
            k % rows,
            y,
            y_ref[k],
            err,
            tol
        );
    }

    for device in [Device::flex(), Device::ndarray()] {
        let got = run_device(c, &device, &w, &x)?;
        check_bits(&format!("{device:?} q_matmul vs cpu::qmatmul"), &got, &want)?;
    }
    Ok(())
}

/// wgpu is within `qdata::expected`'s bound of the reference.
fn check_wgpu(c: &Case, device: &Device) -> Result<(), TestCaseError> {
    let (w, x) = (weights(c), activations(c));
    let want = expected(c.ty, c.rows, c.cols, &w, &x, c.m);
    let got = run_device(c, device, &w, &x)?;
    check_close("wgpu q_matmul", &got, &want).map_err(TestCaseError::fail)
}

/// Runs `check` over [`cases`], panicking with the minimal failing case.
fn run_cases(name: &str, check: impl Fn(&Case) -> Result<(), TestCaseError>) {
    let config = config();
    let (cases_n, seed) = (config.cases, config.rng_seed);
    let start = Instant::now();
    let mut runner = TestRunner::new(config);
    if let Err(e) = runner.run(&cases(), |c| check(&c)) {
        panic!("{name} (seed {seed}): {e}");
    }
    eprintln!(
        "{name}: {cases_n} cases passed (seed {seed}) in {:.1} s",
        start.elapsed().as_secs_f64()
    );
}

#[test]
fn cpu_devices_equal_qmatmul_within_reference_bound() {
    run_cases("flex+ndarray", check_cpu);
}

/// The wgpu device, or `None` with a message (a failure under `CI`).
#[cfg(feature = "wgpu")]
fn wgpu_device() -> Option<Device> {
    match Device::wgpu_options().init() {
        Ok(device) => Some(device),
        Err(e) => ci::missing(&format!("no wgpu adapter ({e})")),
    }
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device() -> Option<Device> {
    None
}

#[test]
fn wgpu_within_reference_bound() {
    let Some(device) = wgpu_device() else { return };
    run_cases("wgpu", |c| check_wgpu(c, &device));
}
