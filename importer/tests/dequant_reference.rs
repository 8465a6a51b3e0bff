//! Dequantization equals gguf-py's (`gguf.quants.dequantize`, an independent numpy implementation)
//! on tensors that llama.cpp's own quantizer produced, for every supported format.
//!
//! Fixtures: `tests/fixtures/synthetic/synth-{TYPE}.gguf` (a random Llama quantized by llama.cpp's
//! `llama_model_quantize` with `pure`, by scripts/make_synthetic_models.py) and
//! `tests/fixtures/quants/{TYPE}/*.npy` (gguf-py's dequantization of some of its tensors, by
//! scripts/make_quant_fixtures.py); `tests/fixtures/quants/manifest.json` says which.
//! Criterion (the importer issue's): max |ours - gguf-py| <= 1e-6 * max |x|.

mod common;

use std::path::{Path, PathBuf};

#[path = "../../tests/common/compare.rs"]
mod compare;

use gguf_importer::{npy, GgmlType, GgufFile};

fn root() -> PathBuf {
    common::package_dir().join("..")
}

fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    npy::read_f32(
        &mut std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// Within 1e-6 of the largest reference magnitude, NaN-safe ([`compare`]).
fn assert_close(name: &str, ours: &[f32], reference: &[f32]) {
    let scale = compare::max_abs(reference);
    assert!(scale > 0.0, "{name}: reference is all zeros");
    compare::assert_close(&format!("{name} vs gguf-py"), ours, reference, 1e-6 * scale);
}

#[test]
fn every_format_equals_gguf_py() {
    let manifest: serde_json::Value = serde_json::from_reader(
        std::fs::File::open(root().join("tests/fixtures/quants/manifest.json")).unwrap(),
    )
    .unwrap();
    let types = manifest["types"].as_object().unwrap();
    let expected = [
        "F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K",
        "Q5_K", "Q6_K",
    ];
    for name in expected {
        let entry = &types[name];
        let file = GgufFile::open(root().join(entry["model"].as_str().unwrap())).unwrap();
        let ty = GgmlType::from_name(name).unwrap();
        for (npy_name, spec) in entry["tensors"].as_object().unwrap() {
            let tensor = spec["tensor"].as_str().unwrap();
            let info = file.tensor(tensor).unwrap();
            assert_eq!(
                info.ty, ty,
                "{tensor} in the {name} model has type {}",
                info.ty
            );
            let (shape, reference) = read_npy(
                &root()
                    .join("tests/fixtures/quants")
                    .join(name)
                    .join(npy_name),
            );
            let ours = file.dequantize(tensor).unwrap();
            match &spec["rows"] {
                // The whole tensor: shapes agree too (ggml's ne reversed is gguf-py's numpy shape).
                serde_json::Value::String(all) if all == "all" => {
                    assert_eq!(info.shape(), shape, "{name} {tensor} shape");
                    assert_close(&format!("{name} {tensor}"), &ours, &reference);
                }
                // Rows of the token embedding: row t of the row-major [n_vocab, n_embd] tensor is
                // the embedding of token t (the dimension-order rule).
                serde_json::Value::Array(rows) => {
                    let row_len = info.row_len();
                    assert_eq!(shape, vec![rows.len(), row_len]);
                    for (i, t) in rows.iter().enumerate() {
                        let t = t.as_u64().unwrap() as usize;
                        assert_close(
                            &format!("{name} {tensor} row {t}"),
                            &ours[t * row_len..(t + 1) * row_len],
                            &reference[i * row_len..(i + 1) * row_len],
                        );
                    }
                }
                other => panic!("bad rows spec {other}"),
            }
        }
    }
}

#[test]
fn f16_and_bf16_outputs_round_the_f32_result() {
    let file = GgufFile::open(root().join("tests/fixtures/synthetic/synth-Q4_K.gguf")).unwrap();
    let info = file.tensor("blk.0.attn_k.weight").unwrap();
    let data = file.tensor_data(info);
    let f32s = gguf_importer::quants::dequantize(info, data).unwrap();
    let f16s = gguf_importer::quants::dequantize_as::<half::f16>(info, data).unwrap();
    let bf16s = gguf_importer::quants::dequantize_as::<half::bf16>(info, data).unwrap();
    for ((x, h), b) in f32s.iter().zip(&f16s).zip(&bf16s) {
        assert_eq!(*h, half::f16::from_f32(*x));
        assert_eq!(*b, half::bf16::from_f32(*x));
    }
}
