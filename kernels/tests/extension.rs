//! The backend extension through the public API (`QWeight`, `q_matmul`, `q_matmul_3d`) on every
//! device of the build: Flex and NdArray (which run `cpu::qmatmul` on the tensors' own memory, so
//! they must equal it bit for bit), and wgpu through Fusion (the CubeCL kernels, within the
//! summation bound of `qdata::expected` of the f64 reference), with Fusion-registered operations
//! before and after the custom one. Also the argument checks and the device memory of a `QWeight`.
#![cfg(all(feature = "flex", feature = "ndarray"))]
// Burn deprecates NdArray in favour of Flex; this project still supports (and tests) it.
#![allow(deprecated)]

mod qdata;

#[path = "../../tests/common/ci.rs"]
mod ci;
use burn::tensor::{DType, Device, Tensor, TensorData};
use gguf_importer::GgmlType;
use gguf_kernels::cpu::{qmatmul, QMatrix};
use gguf_kernels::error::KernelError;
use gguf_kernels::extension::{q_matmul, q_matmul_3d};
use gguf_kernels::packed::QWeight;
use qdata::{assert_close, expected, random_weights, Rng, ALL};

/// The wgpu device, or `None` with a message (a failure under `CI`).
#[cfg(feature = "wgpu")]
fn wgpu_device() -> Option<Device> {
    use std::sync::OnceLock;
    static DEVICE: OnceLock<Result<Device, String>> = OnceLock::new();
    match DEVICE.get_or_init(|| Device::wgpu_options().init().map_err(|e| e.to_string())) {
        Ok(d) => Some(d.clone()),
        Err(e) => ci::missing(&format!("no wgpu adapter ({e})")),
    }
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device() -> Option<Device> {
    None
}

fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 output")
}

/// `rows × cols` of each format (the 13 of `ALL`, the i-quants, ternary formats and MXFP4) with
/// `m` rows of x: (ty, rows, cols, w bytes, m, x). 37 weight rows (not a multiple of a
/// workgroup, a tile or eight); one, five and 513 activation rows (one past a multiple of every
/// tile and band).
#[allow(clippy::type_complexity)]
fn cases(rng: &mut Rng) -> Vec<(GgmlType, usize, usize, Vec<u8>, usize, Vec<f32>)> {
    let mut out = Vec::new();
    for ty in ALL.into_iter().chain(qdata::QUANTIZED_LUT) {
        let (rows, cols) = (37, 2 * ty.block_size().max(32));
        let w = random_weights(ty, rows, cols, rng);
        for m in [1, 5, 513] {
            let x = rng.vec_f32(m * cols, -1.0, 1.0);
            out.push((ty, rows, cols, w.clone(), m, x));
        }
    }
    out
}

#[test]
fn cpu_devices_equal_cpu_qmatmul() {
    let mut rng = Rng(0xC0FFEE);
    for device in [Device::flex(), Device::ndarray()] {
        for (ty, rows, cols, w, m, x) in cases(&mut rng) {
            let mut want = vec![0f32; m * rows];
            qmatmul(&QMatrix::new(ty, rows, cols, &w).unwrap(), &x, m, &mut want).unwrap();
            let qw = QWeight::new(ty, rows, cols, &w, &device).unwrap();
            let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [m, cols]), &device);
            let got = host(q_matmul(xt, &qw).unwrap());
            assert_eq!(got, want, "{ty} on {device:?}, m {m}");
        }
    }
}

#[test]
fn wgpu_with_fusion_matches_reference() {
    let Some(device) = wgpu_device() else { return };
    let mut rng = Rng(0xF00D);
    for (ty, rows, cols, w, m, x) in cases(&mut rng) {
        let want = expected(ty, rows, cols, &w, &x, m);
        let qw = QWeight::new(ty, rows, cols, &w, &device).unwrap();
        let xt = Tensor::<2>::from_data(TensorData::new(x, [m, cols]), &device);
        let got = host(q_matmul(xt, &qw).unwrap());
        assert_close(&format!("{ty} wgpu+fusion m {m}"), &got, &want);
    }
}

/// Fused element-wise work before and after the custom operation, `exp(s · q_matmul(2·x + 1))`
/// with `s = 1 / max|y|`, against the same chain on the reference, on every device.
#[test]
fn custom_op_inside_fused_chains() {
    let mut rng = Rng(0xFA57);
    let (ty, rows, cols, m) = (GgmlType::Q4_K, 33, 256, 3);
    let w = random_weights(ty, rows, cols, &mut rng);
    let x = rng.vec_f32(m * cols, -0.05, 0.05);
    let x2: Vec<f32> = x.iter().map(|v| 2.0 * v + 1.0).collect(); // in [0.9, 1.1]
    let want = expected(ty, rows, cols, &w, &x2, m);
    let s = 1.0 / want.y.iter().fold(0f64, |a, v| a.max(v.abs()));
    let mut devices = vec![(Device::flex(), true), (Device::ndarray(), true)];
    devices.extend(wgpu_device().map(|d| (d, false)));
    for (device, cpu) in devices {
        let qw = QWeight::new(ty, rows, cols, &w, &device).unwrap();
        let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [m, cols]), &device);
        let y = q_matmul(xt.mul_scalar(2.0).add_scalar(1.0), &qw).unwrap();
        let got = host(y.mul_scalar(s as f32).exp());
        #[allow(clippy::needless_range_loop)] // i indexes got, want.tol and want.mag alike
        for i in 0..got.len() {
            // |ŷ - y|: the GPU bound of `expected`; the CPU kernels also quantize x to 8 bits per
            // block of 32/256 (cpu_kernels.rs): |x - x̂| ≤ amax/254, plus 127·(amax/127)·2⁻¹¹ for
            // the f16 block scale of the 32-element formats (as ggml's block_q8_0/q8_1), with
            // amax ≤ 1.1 here, so Σ|w|·1.1·(1/254 + 2⁻¹¹) ≤ mag/0.9 · 0.00487 < 0.0055·mag more
            // (x ≥ 0.9 here).
            let dy = want.tol[i] + if cpu { 0.0055 * want.mag[i] } else { 0.0 };
            let e = (s * want.y[i]).exp();
            // |exp(s·ŷ) - exp(s·y)| ≤ e·(exp(s·dy) - 1), plus the rounding of s, of s·ŷ and of exp.
            let bound = e * ((s * dy).exp() - 1.0) + e * 1e-6;
            let g = got[i] as f64;
            assert!(
                (g - e).abs() <= bound,
                "{device:?} out[{i}] = {g}, want {e} ± {bound:e}"
            );
        }
    }
}

#[test]
fn three_d_flattens_batch_and_sequence() {
    let mut rng = Rng(0x3D);
    let (ty, rows, cols) = (GgmlType::Q8_0, 9, 64);
    let w = random_weights(ty, rows, cols, &mut rng);
    let x = rng.vec_f32(2 * 3 * cols, -1.0, 1.0);
    let devices: Vec<Device> = [Some(Device::flex()), wgpu_device()]
        .into_iter()
        .flatten()
        .collect();
    for device in devices {
        let qw = QWeight::new(ty, rows, cols, &w, &device).unwrap();
        let x3 = Tensor::<3>::from_data(TensorData::new(x.clone(), [2, 3, cols]), &device);
        let y3 = q_matmul_3d(x3.clone(), &qw).unwrap();
        assert_eq!(y3.dims(), [2, 3, rows]);
        let y2 = q_matmul(x3.reshape([6, cols]), &qw).unwrap();
        assert_eq!(host(y3.reshape([6, rows])), host(y2), "{device:?}");
    }
}

#[test]
fn bad_arguments_are_typed_errors() {
    let device = Device::flex();
    let w = vec![0u8; 4 * 34]; // 4 Q8_0 blocks
                               // cols not whole blocks of 32
    assert!(matches!(
        QWeight::new(GgmlType::Q8_0, 4, 33, &w, &device),
        Err(KernelError::NotBlockAligned { block_size: 32, .. })
    ));
    // 4 rows of 1 block need 136 bytes
    assert!(matches!(
        QWeight::new(GgmlType::Q8_0, 4, 32, &w[..100], &device),
        Err(KernelError::WeightSize {
            expected: 136,
            actual: 100,
            ..
        })
    ));
    // ggml's dot-product intermediate: no kernel multiplies it
    assert!(matches!(
        QWeight::new(GgmlType::Q8_K, 1, 256, &[0u8; 292], &device),
        Err(KernelError::UnsupportedType { ty: GgmlType::Q8_K })
    ));
    assert!(matches!(
        QWeight::new(GgmlType::Q8_0, 0, 32, &[], &device),
        Err(KernelError::BadShape { .. })
    ));
    let qw = QWeight::new(GgmlType::Q8_0, 4, 32, &w, &device).unwrap();
    let x = Tensor::<2>::zeros([1, 64], &device);
    assert!(matches!(
        q_matmul(x, &qw),
        Err(KernelError::BufferSize {
            expected: 32,
            actual: 64,
            ..
        })
    ));
}

/// A `QWeight` holds the file's bytes as `⌈n/4⌉` u32 words: at most 3 bytes over the file size
/// (≤ 1.05× for any matrix of 60 bytes or more), on every device.
#[test]
fn device_memory_is_the_file_size() {
    let mut rng = Rng(0x3E3);
    let devices: Vec<Device> = [Some(Device::flex()), Some(Device::ndarray()), wgpu_device()]
        .into_iter()
        .flatten()
        .collect();
    for device in devices {
        for (ty, rows, cols) in [
            (GgmlType::Q4_0, 3, 32),
            (GgmlType::Q6_K, 5, 256),
            (GgmlType::F16, 3, 3),
        ] {
            let w = random_weights(ty, rows, cols, &mut rng);
            let qw = QWeight::new(ty, rows, cols, &w, &device).unwrap();
            assert_eq!(qw.file_bytes(), w.len());
            assert_eq!(qw.words().dims(), [w.len().div_ceil(4)]);
            assert_eq!(qw.words().dtype(), DType::U32);
            assert_eq!(qw.device_bytes(), 4 * w.len().div_ceil(4));
            assert!(qw.device_bytes() - w.len() <= 3);
            // The words hold the bytes unchanged.
            let back = qw
                .words()
                .clone()
                .into_data()
                .convert::<u32>()
                .try_into_vec::<u32>()
                .unwrap();
            let bytes: Vec<u8> = back
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .take(w.len())
                .collect();
            assert_eq!(bytes, w, "{ty} on {device:?}");
        }
    }
}

/// A non-contiguous `x` (a transposed view) gives the same `y` as its contiguous copy.
#[test]
fn non_contiguous_activations() {
    let mut rng = Rng(0x7A);
    let (ty, rows, cols, m) = (GgmlType::Q5_K, 7, 256, 3);
    let w = random_weights(ty, rows, cols, &mut rng);
    let xt = rng.vec_f32(cols * m, -1.0, 1.0); // [cols, m]
    let devices: Vec<Device> = [Some(Device::flex()), Some(Device::ndarray()), wgpu_device()]
        .into_iter()
        .flatten()
        .collect();
    for device in devices {
        let qw = QWeight::new(ty, rows, cols, &w, &device).unwrap();
        let view =
            Tensor::<2>::from_data(TensorData::new(xt.clone(), [cols, m]), &device).transpose(); // [m, cols]
        let copy = Tensor::<2>::from_data(view.clone().into_data(), &device);
        assert_eq!(
            host(q_matmul(view, &qw).unwrap()),
            host(q_matmul(copy, &qw).unwrap()),
            "{device:?}"
        );
    }
}

/// `q_get_rows` (the quantized embedding lookup) returns the rows of the dequantized matrix, and
/// `dequantize` the whole of it, for every format, with repeated and boundary ids, on every
/// device. Expected rows: the importer's dequantizer (itself equal to gguf-py's, importer/tests/dequant_reference.rs). The CPU devices
/// run that same dequantizer, so they must equal it bit for bit; the GPU decoders compute each
/// element with at most two f32 products and a difference (K-quants: `d·sc·q − dmin·m`) whose
/// order may differ from the host code's: each rounding is ≤ ½ ulp of a term no larger than the
/// row's largest |term| ≤ 2·max|row| for these random blocks, so ≤ 4 ulps of 2·max|row| in all.
#[test]
fn get_rows_equals_dequantized_rows() {
    use gguf_kernels::extension::{dequantize, q_get_rows};

    let mut rng = Rng(0x6E7);
    let mut devices = vec![(Device::flex(), true), (Device::ndarray(), true)];
    devices.extend(wgpu_device().map(|d| (d, false)));
    // every format: the 13 of `ALL` and the i-quants, ternary formats and MXFP4 (the grid
    // i-quants with their table after the block words)
    for ty in ALL.into_iter().chain(qdata::QUANTIZED_LUT) {
        let (rows, cols) = (
            11,
            3 * ty.block_size().max(32) + if ty.is_quantized() { 0 } else { 5 },
        );
        let w = random_weights(ty, rows, cols, &mut rng);
        let mut full = vec![0f32; rows * cols];
        gguf_importer::quants::dequantize_into("w", ty, &w, &mut full).unwrap();
        let ids = [0u32, 10, 3, 3, 7];
        let all: Vec<u32> = (0..rows as u32).collect();
        for (device, exact) in &devices {
            let qw = QWeight::new(ty, rows, cols, &w, device).unwrap();
            // a record's skeleton has the same words (the table included)
            assert_eq!(
                QWeight::uninitialized(ty, rows, cols, device)
                    .unwrap()
                    .words()
                    .dims(),
                qw.words().dims(),
                "{ty}"
            );
            let got = q_get_rows(&qw, &ids).unwrap();
            assert_eq!(got.dims(), [ids.len(), cols]);
            // `dequantize`: every row, the same lookup.
            let whole = dequantize(&qw).unwrap();
            assert_eq!(whole.dims(), [rows, cols]);
            assert_eq!(
                host(whole),
                host(q_get_rows(&qw, &all).unwrap()),
                "{ty} on {device:?}"
            );
            let got = host(got);
            for (t, &id) in ids.iter().enumerate() {
                let want = &full[id as usize * cols..(id as usize + 1) * cols];
                let row = &got[t * cols..(t + 1) * cols];
                if *exact {
                    assert_eq!(row, want, "{ty} row {id} on {device:?}");
                } else {
                    let amax = want.iter().fold(0f32, |a, v| a.max(v.abs()));
                    let tol = 4.0 * f32::EPSILON * 2.0 * amax;
                    for (k, (g, e)) in row.iter().zip(want).enumerate() {
                        assert!(
                            (g - e).abs() <= tol,
                            "{ty} row {id} col {k} on {device:?}: {g} vs {e} (±{tol:e})"
                        );
                    }
                }
            }
        }
    }
    // An id past the last row is a typed error, before anything runs.
    let w = random_weights(GgmlType::Q8_0, 4, 32, &mut rng);
    let qw = QWeight::new(GgmlType::Q8_0, 4, 32, &w, &Device::flex()).unwrap();
    assert!(matches!(
        q_get_rows(&qw, &[1, 4]),
        Err(KernelError::RowIndex { index: 4, rows: 4 })
    ));
}

/// The backward pass of `q_matmul` on Burn's Autodiff backend: for `L = Σ r ⊙ (x · Wᵀ)`,
/// `∂L/∂x = r · W` with `W` the dequantized matrix (the importer's dequantizer, itself equal to
/// gguf-py's), for every format, on every device, with the weight on the plain device and `x` on
/// its autodiff twin (how adapters are trained on a frozen quantized base). The weight gets no
/// gradient (its words are an int tensor), and `y` itself is the plain device's.
///
/// Tolerance: each gradient element is a dot product of `rows` f32 products, computed by the
/// backend's matmul in some order: |error| ≤ γ(rows)·Σ|r·w| with γ(n) = n·u/(1 − n·u), u = 2⁻²⁴;
/// on wgpu each dequantized element may also differ by 4 ulps of 2·max|row| (see
/// `get_rows_equals_dequantized_rows`), which adds Σ|r|·that.
#[test]
fn autodiff_gradient_of_x_is_grad_times_dequantized_weight() {
    let mut rng = Rng(0xAD);
    let mut devices = vec![(Device::flex(), true), (Device::ndarray(), true)];
    devices.extend(wgpu_device().map(|d| (d, false)));
    let mut cases: Vec<(GgmlType, usize, usize, usize)> = ALL
        .iter()
        .map(|&ty| (ty, 37, 2 * ty.block_size().max(32), 3))
        .collect();
    // More rows than one GPU lookup takes (65535): the dequantization is done in parts.
    cases.push((GgmlType::Q8_0, 65_537, 32, 2));
    for (ty, rows, cols, m) in cases {
        let w = random_weights(ty, rows, cols, &mut rng);
        let mut full = vec![0f32; rows * cols];
        gguf_importer::quants::dequantize_into("w", ty, &w, &mut full).unwrap();
        let x = rng.vec_f32(m * cols, -1.0, 1.0);
        let r = rng.vec_f32(m * rows, -1.0, 1.0);
        for (device, cpu) in &devices {
            let qw = QWeight::new(ty, rows, cols, &w, device).unwrap();
            let ad = device.clone().autodiff();
            let xt =
                Tensor::<2>::from_data(TensorData::new(x.clone(), [m, cols]), &ad).require_grad();
            let rt = Tensor::<2>::from_data(TensorData::new(r.clone(), [m, rows]), &ad);
            let y = q_matmul(xt.clone(), &qw).unwrap();
            assert!(y.is_tracked(), "{ty} on {device:?}: y is not in the graph");
            let grads = (y * rt).sum().backward();
            let got = host(xt.grad(&grads).expect("x has a gradient"));
            assert_eq!(got.len(), m * cols);
            let u = f32::EPSILON as f64 / 2.0;
            let gamma = rows as f64 * u / (1.0 - rows as f64 * u);
            for i in 0..m {
                for k in 0..cols {
                    let (mut want, mut mag, mut rsum) = (0f64, 0f64, 0f64);
                    for j in 0..rows {
                        let (rv, wv) = (r[i * rows + j] as f64, full[j * cols + k] as f64);
                        want += rv * wv;
                        mag += (rv * wv).abs();
                        rsum += rv.abs();
                    }
                    let dq = if *cpu {
                        0.0
                    } else {
                        // max |row| over all rows bounds each row's own.
                        let amax = full.iter().fold(0f32, |a, v| a.max(v.abs())) as f64;
                        4.0 * f32::EPSILON as f64 * 2.0 * amax * rsum
                    };
                    let tol = gamma * mag + dq + f32::MIN_POSITIVE as f64;
                    let g = got[i * cols + k] as f64;
                    assert!(
                        (g - want).abs() <= tol,
                        "{ty} {rows}x{cols} on {device:?}: dL/dx[{i},{k}] = {g}, want {want} ± {tol:e}"
                    );
                }
            }
        }
    }
}

/// A matrix kept in row bands (each its own buffer, as matrices over `MAX_BAND_BYTES` are)
/// computes what the whole matrix computes, bit for bit on every device: the matmul of 1 and 5
/// activation rows, row lookups in any order (ids spanning every band, repeated), the whole
/// matrix dequantized, and the device bytes.
#[test]
fn banded_weights_compute_what_the_whole_matrix_computes() {
    use gguf_kernels::extension::{dequantize, q_get_rows};
    use gguf_kernels::packed::band_rows;

    let mut rng = Rng(0xBA4D);
    let mut devices = vec![Device::flex(), Device::ndarray()];
    devices.extend(wgpu_device());
    for ty in [GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::F16] {
        let (rows, cols) = (600, 256);
        let w = random_weights(ty, rows, cols, &mut rng);
        let row_bytes = w.len() / rows;
        // Bands of 256 rows: 256, 256, 88.
        let band_bytes = 300 * row_bytes;
        for device in &devices {
            let whole = QWeight::new(ty, rows, cols, &w, device).unwrap();
            let banded = QWeight::with_band_bytes(ty, rows, cols, &w, device, band_bytes).unwrap();
            assert!(!whole.is_banded() && banded.is_banded());
            let bands: Vec<usize> = banded.bands().iter().map(|b| b.rows).collect();
            assert_eq!(bands, [256, 256, 88], "{ty}");
            assert_eq!(banded.file_bytes(), w.len());
            for m in [1, 5] {
                let x = Tensor::<2>::from_data(
                    TensorData::new(rng.vec_f32(m * cols, -1.0, 1.0), [m, cols]),
                    device,
                );
                assert_eq!(
                    host(q_matmul(x.clone(), &banded).unwrap()),
                    host(q_matmul(x, &whole).unwrap()),
                    "{ty} m {m} on {device:?}"
                );
            }
            let ids = [599u32, 0, 300, 255, 256, 511, 512, 3, 300];
            assert_eq!(
                host(q_get_rows(&banded, &ids).unwrap()),
                host(q_get_rows(&whole, &ids).unwrap()),
                "{ty} lookup on {device:?}"
            );
            assert_eq!(
                host(dequantize(&banded).unwrap()),
                host(dequantize(&whole).unwrap()),
                "{ty} dequantize on {device:?}"
            );
        }
    }
    // The default limit: whole multiples of 256 rows of at most 128 MiB.
    let q8_row = 640 / 32 * 34; // Gemma 3's embedding rows in Q8_0
    assert_eq!(band_rows(1000, q8_row), 1000);
    let band = band_rows(262_144, q8_row);
    assert!(
        band.is_multiple_of(256) && band * q8_row <= 1 << 27 && (band + 256) * q8_row > 1 << 27
    );
}
