//! Quantization (`quants::quantize`) against gguf-py's numpy quantizer and llama.cpp's own
//! quantizer, byte for byte, and the quantize → dequantize round trip within each format's error
//! bound.
//!
//! Fixtures, written by scripts/make_quantize_fixtures.py:
//! - tests/fixtures/quants/quantize/: `gguf.quants.quantize` (gguf-py 0.19.0): `input.npy`
//!   (f32 [16, 256]) and `{F16,BF16,Q8_0,Q4_0}.bin` (the quantized bytes).
//! - tests/fixtures/quants/quantize/llama_cpp/: llama.cpp's `ggml_quantize_chunk` (the
//!   libggml-base.so of llama-cpp-python 0.3.36, llama.cpp 0c1e57098, no importance matrix: the
//!   call through which `llama_model_quantize` writes each tensor, running ggml's
//!   `quantize_row_*_ref`): `input.npy` (f32 [40, 256]: random rows, zeros, constants, tiny,
//!   subnormal and huge values, ties, outliers; `manifest.json` describes each row) and
//!   `{TYPE}.bin` for F16, BF16, Q4_0, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.

mod common;

use std::path::PathBuf;

use gguf_importer::quants::{dequantize_into, quantize, QuantizeError};
use gguf_importer::{npy, GgmlType};

const ROW_LEN: usize = 256;

fn fixture(name: &str) -> PathBuf {
    common::package_dir()
        .join("../tests/fixtures/quants/quantize")
        .join(name)
}

/// The fixture input: row-major [16, 256].
fn input() -> Vec<f32> {
    let path = fixture("input.npy");
    let mut f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (shape, data) = npy::read_f32(&mut f).unwrap();
    assert_eq!(shape, [16, ROW_LEN]);
    data
}

fn expected_bytes(ty: &str) -> Vec<u8> {
    let path = fixture(&format!("{ty}.bin"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn dequantized(ty: GgmlType, bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    dequantize_into("roundtrip", ty, bytes, &mut out).unwrap();
    out
}

/// Byte for byte against gguf-py for one type; on a difference, reports the first differing
/// element (or block).
fn assert_matches_gguf_py(ty: GgmlType) {
    let x = input();
    let ours = quantize(ty, ROW_LEN, &x).unwrap();
    let want = expected_bytes(ty.name());
    assert_eq!(ours.len(), want.len(), "{ty}: byte count");
    let unit = ty.type_size();
    if let Some(i) = (0..want.len() / unit)
        .find(|&i| ours[i * unit..(i + 1) * unit] != want[i * unit..(i + 1) * unit])
    {
        panic!(
            "{ty}: block {i} (elements {}..{}) differs: ours {:?}, gguf-py {:?}",
            i * ty.block_size(),
            (i + 1) * ty.block_size(),
            &ours[i * unit..(i + 1) * unit],
            &want[i * unit..(i + 1) * unit]
        );
    }
}

/// The llama.cpp fixture's input (row-major, rows of 256) and its per-row descriptions.
fn llama_cpp_input() -> (Vec<f32>, Vec<String>) {
    let path = fixture("llama_cpp/input.npy");
    let mut f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (shape, data) = npy::read_f32(&mut f).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("llama_cpp/manifest.json")).unwrap())
            .unwrap();
    let notes: Vec<String> = serde_json::from_value(manifest["rows"].clone()).unwrap();
    assert_eq!(shape, [notes.len(), ROW_LEN]);
    (data, notes)
}

/// Byte for byte against llama.cpp's `ggml_quantize_chunk` for one type; on a difference, reports
/// the first differing block and the row it lies in.
fn assert_matches_llama_cpp(ty: GgmlType) {
    let (x, notes) = llama_cpp_input();
    let ours = quantize(ty, ROW_LEN, &x).unwrap();
    let path = fixture(&format!("llama_cpp/{}.bin", ty.name()));
    let want = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(ours.len(), want.len(), "{ty}: byte count");
    let unit = ty.type_size();
    if let Some(i) = (0..want.len() / unit)
        .find(|&i| ours[i * unit..(i + 1) * unit] != want[i * unit..(i + 1) * unit])
    {
        let row = i * ty.block_size() / ROW_LEN;
        panic!(
            "{ty}: block {i} (row {row}: {}; elements {}..{}) differs:\n ours      {:?}\n llama.cpp {:?}",
            notes[row],
            i * ty.block_size(),
            (i + 1) * ty.block_size(),
            &ours[i * unit..(i + 1) * unit],
            &want[i * unit..(i + 1) * unit]
        );
    }
}

#[test]
fn f16_matches_llama_cpp() {
    assert_matches_llama_cpp(GgmlType::F16);
}

#[test]
fn bf16_matches_llama_cpp() {
    assert_matches_llama_cpp(GgmlType::BF16);
}

/// Includes blocks whose scale is subnormal, where `1/d` overflows to infinity and ggml's float to
/// integer conversion meets infinities and NaNs.
#[test]
fn q4_0_matches_llama_cpp() {
    assert_matches_llama_cpp(GgmlType::Q4_0);
}

/// Q5_0: `d = max / -16`, `q = min(31, trunc(x/d + 16.5))`, fifth bits in `qh`.
#[test]
fn q5_0_matches_llama_cpp() {
    assert_matches_llama_cpp(GgmlType::Q5_0);
}

/// Q5_1: `d = (max − min) / 31`, `m = min`, `q = trunc((x − min)/d + 0.5)`.
#[test]
fn q5_1_matches_llama_cpp() {
    assert_matches_llama_cpp(GgmlType::Q5_1);
}

#[test]
fn q8_0_matches_llama_cpp() {
    assert_matches_llama_cpp(GgmlType::Q8_0);
}

/// Q2_K: per 16 values an affine fit (levels 0..3, weights |x|, least absolute error over 16
/// candidate scales), 4-bit scales and mins.
#[test]
fn q2_k_matches_llama_cpp() {
    assert_matches_llama_cpp(GgmlType::Q2_K);
}

/// Q3_K: per 16 values a symmetric scale (levels -4..3) refined level by level, 6-bit scales.
#[test]
fn q3_k_matches_llama_cpp() {
    assert_matches_llama_cpp(GgmlType::Q3_K);
}

/// Q4_K: per 32 values an affine fit (levels 0..15, weights rms + |x|, 21 candidate scales),
/// 6-bit scales and mins.
#[test]
fn q4_k_matches_llama_cpp() {
    assert_matches_llama_cpp(GgmlType::Q4_K);
}

/// Q5_K: as Q4_K with levels 0..31 and 16 candidate scales.
#[test]
fn q5_k_matches_llama_cpp() {
    assert_matches_llama_cpp(GgmlType::Q5_K);
}

/// Q6_K: per 16 values a symmetric scale (levels -32..31, weights x², 19 candidates), i8 scales.
#[test]
fn q6_k_matches_llama_cpp() {
    assert_matches_llama_cpp(GgmlType::Q6_K);
}

#[test]
fn f16_matches_gguf_py() {
    assert_matches_gguf_py(GgmlType::F16);
}

#[test]
fn bf16_matches_gguf_py() {
    assert_matches_gguf_py(GgmlType::BF16);
}

#[test]
fn q8_0_matches_gguf_py() {
    assert_matches_gguf_py(GgmlType::Q8_0);
}

/// Q4_0 as ggml's `quantize_row_q4_0_ref` (gguf-py's numpy port of it): the scale from the element
/// of the largest magnitude with its sign, `d = max / -8`, truncation of `x/d + 8.5` capped at 15.
/// (tests/llama_cpp_defaults.rs also checks SmolLM2's Q4_0 export against llama.cpp's own file.)
#[test]
fn q4_0_matches_gguf_py() {
    assert_matches_gguf_py(GgmlType::Q4_0);
}

/// F32 is the values' little-endian bytes (the GGUF definition of an F32 tensor).
#[test]
fn f32_is_the_little_endian_values() {
    let x = input();
    let bytes = quantize(GgmlType::F32, ROW_LEN, &x).unwrap();
    let want: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(bytes, want);
    assert_eq!(dequantized(GgmlType::F32, &bytes, x.len()), x);
}

/// Q8_0: `x̂ = q · d'` with `q = round(x · (1/d))`, `d = max|x| / 127`, `d' = f16(d)`.
///
/// - Rounding `x/d` to an integer moves it by at most 1/2: `|x − q·d| ≤ d/2`.
/// - Storing `d` as `d'` moves `q·d` by `|q|·|d − d'| ≤ 127·|d − d'|`.
/// - f32 arithmetic: `1/d` and `x · id` are each within 2⁻²⁴ relative, so `x · id` is within
///   `127 · 2⁻²³` of `x/d` (in units of `d`); the product `q · d'` is within 2⁻²⁴ of `|x̂|`.
///
/// So `|x − x̂| ≤ d/2 + 127·|d − d'| + d·127·2⁻²³ + |x̂|·2⁻²⁴`. The test also checks that the
/// bound is not vacuous on this data: some element's error exceeds d/4.
#[test]
fn q8_0_round_trip_within_half_a_step() {
    let x = input();
    let bytes = quantize(GgmlType::Q8_0, ROW_LEN, &x).unwrap();
    let y = dequantized(GgmlType::Q8_0, &bytes, x.len());
    let mut some_error_above_quarter_step = false;
    for (b, (xb, yb)) in x.chunks_exact(32).zip(y.chunks_exact(32)).enumerate() {
        let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let d16 = half::f16::from_f32(d).to_f32() as f64;
        let d = d as f64;
        for (j, (&xv, &yv)) in xb.iter().zip(yb).enumerate() {
            let err = (xv as f64 - yv as f64).abs();
            let bound = d / 2.0
                + 127.0 * (d - d16).abs()
                + d * 127.0 * 2f64.powi(-23)
                + (yv as f64).abs() * 2f64.powi(-24);
            assert!(
                err <= bound,
                "block {b} element {j}: x = {xv}, x̂ = {yv}, |x − x̂| = {err} > {bound} (d = {d})"
            );
            if err > d / 4.0 {
                some_error_above_quarter_step = true;
            }
        }
        if amax == 0.0 {
            assert!(yb.iter().all(|&v| v == 0.0), "block {b}: zeros stay zeros");
        }
    }
    assert!(some_error_above_quarter_step);
}

/// F16 rounds to nearest: within half a unit in the last place, `|x|·2⁻¹¹` for a normal half,
/// 2⁻²⁵ in the subnormal range. Values at or beyond 65520 (halfway past the largest half, 65504)
/// become ±inf.
#[test]
fn f16_round_trip_within_half_an_ulp() {
    let x = input();
    let bytes = quantize(GgmlType::F16, ROW_LEN, &x).unwrap();
    let y = dequantized(GgmlType::F16, &bytes, x.len());
    let mut overflowed = 0;
    for (i, (&xv, &yv)) in x.iter().zip(&y).enumerate() {
        if xv.abs() >= 65520.0 {
            assert!(
                yv.is_infinite() && yv.signum() == xv.signum(),
                "{i}: {xv} -> {yv}"
            );
            overflowed += 1;
            continue;
        }
        let bound = (xv.abs() as f64 * 2f64.powi(-11)).max(2f64.powi(-25));
        let err = (xv as f64 - yv as f64).abs();
        assert!(
            err <= bound,
            "{i}: x = {xv}, x̂ = {yv}, |x − x̂| = {err} > {bound}"
        );
    }
    assert_eq!(
        overflowed, 2,
        "the fixture's two out-of-range values (65520, -1e5)"
    );
}

/// BF16 keeps 8 significant bits: within `|x|·2⁻⁸` for a normal value, half its subnormal step
/// (2⁻¹³³) below 2⁻¹²⁶.
#[test]
fn bf16_round_trip_within_half_an_ulp() {
    let x = input();
    let bytes = quantize(GgmlType::BF16, ROW_LEN, &x).unwrap();
    let y = dequantized(GgmlType::BF16, &bytes, x.len());
    for (i, (&xv, &yv)) in x.iter().zip(&y).enumerate() {
        let bound = (xv.abs() as f64 * 2f64.powi(-8)).max(2f64.powi(-134));
        let err = (xv as f64 - yv as f64).abs();
        assert!(
            err <= bound,
            "{i}: x = {xv}, x̂ = {yv}, |x − x̂| = {err} > {bound}"
        );
    }
}

#[test]
fn row_not_whole_blocks_is_an_error() {
    let x = vec![0.5f32; 48 * 2];
    assert_eq!(
        quantize(GgmlType::Q8_0, 48, &x),
        Err(QuantizeError::RowNotBlockAligned {
            type_name: "Q8_0",
            row_len: 48,
            block_size: 32,
        })
    );
    // F16 has blocks of one: any row length is whole blocks.
    assert_eq!(quantize(GgmlType::F16, 48, &x).unwrap().len(), 96 * 2);
}

#[test]
fn data_not_whole_rows_is_an_error() {
    let x = vec![0.5f32; 100];
    assert_eq!(
        quantize(GgmlType::Q8_0, 64, &x),
        Err(QuantizeError::NotWholeRows {
            len: 100,
            row_len: 64
        })
    );
    assert_eq!(
        quantize(GgmlType::F32, 0, &x),
        Err(QuantizeError::NotWholeRows {
            len: 100,
            row_len: 0
        })
    );
}

#[test]
fn unsupported_target_type_is_an_error() {
    let x = vec![0.5f32; 256];
    assert_eq!(
        quantize(GgmlType::Q4_1, 256, &x),
        Err(QuantizeError::UnsupportedType { type_name: "Q4_1" })
    );
}

/// The K-quants need rows of whole 256-value super-blocks (SmolLM2's 576 is not).
#[test]
fn k_quant_row_not_whole_super_blocks_is_an_error() {
    let x = vec![0.5f32; 576 * 2];
    for ty in [GgmlType::Q2_K, GgmlType::Q4_K, GgmlType::Q6_K] {
        assert_eq!(
            quantize(ty, 576, &x),
            Err(QuantizeError::RowNotBlockAligned {
                type_name: ty.name(),
                row_len: 576,
                block_size: 256,
            })
        );
    }
    assert!(quantize(GgmlType::Q5_0, 576, &x).is_ok());
}

#[test]
fn non_finite_block_input_is_an_error_with_its_index() {
    let mut x = vec![0.5f32; 512];
    x[300] = f32::NEG_INFINITY;
    for ty in [
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q3_K,
        GgmlType::Q5_K,
    ] {
        assert!(
            matches!(
                quantize(ty, 256, &x),
                Err(QuantizeError::NonFinite { index: 300, value, .. }) if value == f32::NEG_INFINITY
            ),
            "{ty}"
        );
    }
}

#[test]
fn non_finite_q8_0_input_is_an_error_with_its_index() {
    let mut x = vec![0.5f32; 64];
    x[40] = f32::NAN;
    match quantize(GgmlType::Q8_0, 64, &x) {
        Err(QuantizeError::NonFinite {
            type_name: "Q8_0",
            index: 40,
            value,
        }) if value.is_nan() => {}
        other => panic!("expected NonFinite at 40, got {other:?}"),
    }
}

/// A tensor larger than one rayon task (32 Ki elements) reports a non-finite value's index in
/// the whole tensor, and quantizes the same as block by block.
#[test]
fn large_tensors_split_across_tasks_consistently() {
    let n = 32 * 1024 * 3 + 256;
    let x: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 5.0)
        .collect();
    let whole = quantize(GgmlType::Q8_0, 256, &x).unwrap();
    let pieces: Vec<u8> = x
        .chunks(256)
        .flat_map(|row| quantize(GgmlType::Q8_0, 256, row).unwrap())
        .collect();
    assert_eq!(whole, pieces);
    let mut bad = x.clone();
    bad[n - 3] = f32::INFINITY;
    assert!(matches!(
        quantize(GgmlType::Q8_0, 256, &bad),
        Err(QuantizeError::NonFinite { index, .. }) if index == n - 3
    ));
}
