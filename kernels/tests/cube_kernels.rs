//! The CubeCL kernels, launched directly on raw `CubeTensor`s (no Fusion), against the
//! dequantize-then-matmul reference in f64, for all 25 formats, each kernel variant
//! (mat-vec with plane reduction, mat-vec with the shared-memory reduction, tiled), odd shapes:
//! weight rows not a multiple of the tile or workgroup, `m` in {1, 2, 3, 5, 17, 33}, rows of 1,
//! 2 and 3 blocks; and large ones ([`large_shapes`]). The error bound is derived in
//! `qdata::expected`.
//!
//! The plane variant runs on every adapter, lavapipe included: cubecl-wgpu does not offer plane
//! operations on CPU adapters (so [`q_matmul`](gguf_kernels::cube::launch::q_matmul) picks the
//! shared-memory variant there), but lavapipe has Vulkan subgroups and runs the variant that
//! every real GPU takes (checked: the variant with `plane_sum` taken out fails these tests).
//!
//! Runs on wgpu; on Linux without a GPU that is Mesa's lavapipe (`mesa-vulkan-drivers`). Without
//! an adapter the tests print why and pass, unless `CI` is set, where they fail.
#![cfg(feature = "wgpu")]

mod qdata;

#[path = "../../tests/common/ci.rs"]
mod ci;
use std::sync::OnceLock;

use burn::backend::DispatchDevice;
use burn::tensor::{DType, Device, Shape};
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeDevice;
use gguf_importer::GgmlType;
use gguf_kernels::cube::launch::{q_matmul_with, Kernel, MATVEC_MAX_M};
use gguf_kernels::packed::{pack_words, table_words};
use qdata::{assert_close, col_cases, expected, random_weights, Rng};

const M_CASES: [usize; 6] = [1, 2, 3, 5, 17, 33];
/// Weight rows: more than one tile of 32, not a multiple of it.
const ROWS: usize = 37;

/// The wgpu device, once per process, or `None` (with a message) where there is no adapter.
fn cube_device() -> Option<CubeDevice> {
    static DEVICE: OnceLock<Result<Device, String>> = OnceLock::new();
    let device = DEVICE.get_or_init(|| Device::wgpu_options().init().map_err(|e| e.to_string()));
    match device {
        Ok(d) => match d.as_dispatch() {
            DispatchDevice::Cube(c) => Some(c.clone()),
            other => panic!("wgpu device is not a cube device: {other:?}"),
        },
        Err(e) => ci::missing(&format!(
            "no wgpu adapter ({e}); install mesa-vulkan-drivers for lavapipe"
        )),
    }
}

/// Runs `kernel` on `w` (`[rows, cols]` of `ty`) and `x` (`[m, cols]`), returns `y` `[m, rows]`.
fn run(
    device: &CubeDevice,
    kernel: Kernel,
    ty: GgmlType,
    rows: usize,
    cols: usize,
    w: &[u8],
    x: &[f32],
) -> Vec<f32> {
    let client = device.client();
    let m = x.len() / cols;
    let mut words = pack_words(w);
    // the grid i-quants' table after the block words, as QWeight keeps it
    words.extend_from_slice(table_words(ty));
    let w_t = CubeTensor::new_contiguous(
        client.clone(),
        device.clone(),
        Shape::new([words.len()]),
        client.create_from_slice(bytemuck::cast_slice(&words)),
        DType::U32,
    );
    let x_t = CubeTensor::new_contiguous(
        client.clone(),
        device.clone(),
        Shape::new([m, cols]),
        client.create_from_slice(bytemuck::cast_slice(x)),
        DType::F32,
    );
    let y = q_matmul_with(x_t, w_t, ty, rows, cols, Some(kernel));
    let bytes = client.read_one_unchecked(y.handle);
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The kernels to test for `m` activation rows.
fn kernels_for(m: usize) -> Vec<Kernel> {
    let mut ks = vec![Kernel::Tiled];
    if m <= MATVEC_MAX_M + 1 {
        ks.push(Kernel::MatVecShared);
        // whether or not cubecl offers plane operations here (see the module documentation)
        ks.push(Kernel::MatVecPlane);
    }
    ks
}

/// Shapes of real models' matrices: 4096 × 4096 and 11008 × 4096 (Llama 7B's attention and
/// feed-forward) with one activation row through every kernel variant, and 4096 × 4096 with
/// 512 rows through the tiled kernel, checked on four of its activation rows (the first, two
/// inside, the last: the f64 reference over all 512 would take minutes); for the formats of most
/// files.
#[test]
fn large_shapes() {
    let Some(device) = cube_device() else { return };
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::Q8_0,
    ] {
        let mut rng = Rng(0x1A46E ^ ty.id() as u64);
        for (rows, cols, m) in [(4096, 4096, 1), (11008, 4096, 1), (4096, 4096, 512)] {
            let w = random_weights(ty, rows, cols, &mut rng);
            let x = rng.vec_f32(m * cols, -1.0, 1.0);
            let checked: Vec<usize> = match m {
                1 => vec![0],
                _ => vec![0, 200, 333, m - 1],
            };
            let xs: Vec<f32> = checked
                .iter()
                .flat_map(|&i| &x[i * cols..][..cols])
                .copied()
                .collect();
            let want = expected(ty, rows, cols, &w, &xs, checked.len());
            for kernel in kernels_for(m) {
                let got = run(&device, kernel, ty, rows, cols, &w, &x);
                let got: Vec<f32> = checked
                    .iter()
                    .flat_map(|&i| &got[i * rows..][..rows])
                    .copied()
                    .collect();
                assert_close(
                    &format!("{ty} {kernel:?} rows {rows} cols {cols} m {m}"),
                    &got,
                    &want,
                );
            }
        }
    }
}

fn check_format(ty: GgmlType) {
    let Some(device) = cube_device() else { return };
    let mut rng = Rng(0x5EED ^ ty.id() as u64);
    for cols in col_cases(ty) {
        let w = random_weights(ty, ROWS, cols, &mut rng);
        for m in M_CASES {
            let x = rng.vec_f32(m * cols, -1.0, 1.0);
            let want = expected(ty, ROWS, cols, &w, &x, m);
            for kernel in kernels_for(m) {
                let got = run(&device, kernel, ty, ROWS, cols, &w, &x);
                assert_close(
                    &format!("{ty} {kernel:?} rows {ROWS} cols {cols} m {m}"),
                    &got,
                    &want,
                );
            }
        }
    }
}

macro_rules! format_tests {
    ($($name:ident: $ty:ident,)*) => {$(
        #[test]
        fn $name() {
            check_format(GgmlType::$ty);
        }
    )*};
}

format_tests! {
    f32_matches_reference: F32,
    f16_matches_reference: F16,
    bf16_matches_reference: BF16,
    q4_0_matches_reference: Q4_0,
    q4_1_matches_reference: Q4_1,
    q5_0_matches_reference: Q5_0,
    q5_1_matches_reference: Q5_1,
    q8_0_matches_reference: Q8_0,
    q2_k_matches_reference: Q2_K,
    q3_k_matches_reference: Q3_K,
    q4_k_matches_reference: Q4_K,
    q5_k_matches_reference: Q5_K,
    q6_k_matches_reference: Q6_K,
    iq4_nl_matches_reference: IQ4_NL,
    iq4_xs_matches_reference: IQ4_XS,
    tq1_0_matches_reference: TQ1_0,
    tq2_0_matches_reference: TQ2_0,
    mxfp4_matches_reference: MXFP4,
    iq2_xxs_matches_reference: IQ2_XXS,
    iq2_xs_matches_reference: IQ2_XS,
    iq2_s_matches_reference: IQ2_S,
    iq3_xxs_matches_reference: IQ3_XXS,
    iq3_s_matches_reference: IQ3_S,
    iq1_s_matches_reference: IQ1_S,
    iq1_m_matches_reference: IQ1_M,
}

/// Rows longer than 32 chunks take the 64-unit mat-vec workgroup (several chunks per unit);
/// one row per format family with a long row, and a single weight row.
#[test]
fn long_rows_and_single_row() {
    let Some(device) = cube_device() else { return };
    let mut rng = Rng(0x10C0);
    for ty in [GgmlType::Q4_0, GgmlType::Q6_K, GgmlType::F16] {
        for (rows, cols) in [(3, 4 * 256 * 3), (1, 256)] {
            let w = random_weights(ty, rows, cols, &mut rng);
            for m in [1, 6] {
                let x = rng.vec_f32(m * cols, -1.0, 1.0);
                let want = expected(ty, rows, cols, &w, &x, m);
                for kernel in kernels_for(m) {
                    let got = run(&device, kernel, ty, rows, cols, &w, &x);
                    assert_close(
                        &format!("{ty} {kernel:?} rows {rows} cols {cols} m {m}"),
                        &got,
                        &want,
                    );
                }
            }
        }
    }
}

/// More weight rows than one grid dimension holds (65535 workgroups): the mat-vec grid wraps
/// rows over two dimensions.
#[test]
fn rows_beyond_one_grid_dimension() {
    let Some(device) = cube_device() else { return };
    let (ty, rows, cols) = (GgmlType::Q8_0, 70_001, 32);
    let mut rng = Rng(0xB16);
    let w = random_weights(ty, rows, cols, &mut rng);
    let x = rng.vec_f32(cols, -1.0, 1.0);
    let want = expected(ty, rows, cols, &w, &x, 1);
    let got = run(&device, Kernel::MatVecShared, ty, rows, cols, &w, &x);
    assert_close(&format!("{ty} rows {rows}"), &got, &want);
}

/// Every finite f16 bit pattern (65536 minus the 2048 infinities and NaNs, replaced by zeros)
/// decodes to the value `half` gives it: a `[2048, 32]` F16 matrix times the identity `x = I₃₂`
/// reads each weight back alone (one product by 1, the rest by 0: exact in f32), so `y` must
/// equal `Wᵀ` exactly, subnormal halves included.
#[test]
fn every_finite_f16_decodes_exactly() {
    let Some(device) = cube_device() else { return };
    let (rows, cols) = (2048, 32);
    let halves: Vec<half::f16> = (0..=u16::MAX)
        .map(half::f16::from_bits)
        .map(|h| if h.is_finite() { h } else { half::f16::ZERO })
        .collect();
    let w: Vec<u8> = halves.iter().flat_map(|h| h.to_le_bytes()).collect();
    let eye: Vec<f32> = (0..cols * cols)
        .map(|i| if i / cols == i % cols { 1.0 } else { 0.0 })
        .collect();
    for kernel in kernels_for(cols) {
        let y = run(&device, kernel, GgmlType::F16, rows, cols, &w, &eye); // [32, 2048] = Wᵀ
        for (k, y) in y.chunks_exact(rows).enumerate() {
            for (r, &v) in y.iter().enumerate() {
                let h = halves[r * cols + k];
                assert_eq!(v, h.to_f32(), "{kernel:?}: f16 bits {:#06x}", h.to_bits());
            }
        }
    }
    // And through the mat-vec kernels, one column at a time for a few columns.
    for k in [0, 7, 31] {
        let x: Vec<f32> = (0..cols).map(|i| if i == k { 1.0 } else { 0.0 }).collect();
        for kernel in kernels_for(1).into_iter().filter(|k| *k != Kernel::Tiled) {
            let y = run(&device, kernel, GgmlType::F16, rows, cols, &w, &x);
            for (r, &v) in y.iter().enumerate() {
                let h = halves[r * cols + k];
                assert_eq!(v, h.to_f32(), "{kernel:?}: f16 bits {:#06x}", h.to_bits());
            }
        }
    }
}
