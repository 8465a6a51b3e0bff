//! `Llama::save_gguf`: stories260K (F32) and the synthetic Q4_K model exported as F32, F16 and
//! Q8_0, read back with the importer and reloaded as a model.
//!
//! Expected values:
//! - metadata, tensor names and shapes: the source file's;
//! - tensor types: 2-D matrices the export type, 1-D tensors F32, and with Q8_0 a matrix whose
//!   rows are not whole 32-blocks F16 (llama.cpp's `tensor_type_fallback`); the counts per type are
//!   llama.cpp's own quantization's, from tests/fixtures/export/llama_cpp_check.json;
//! - tensor bytes: F32 of an F32 source, the source's bytes; otherwise the importer's quantizer
//!   (checked byte for byte against gguf-py in importer/tests/quantize.rs) applied to the
//!   source's dequantized tensor;
//! - tensor bytes against llama.cpp's own quantizer (`llama_model_quantize` on the same source,
//!   to the same type): the files of tests/fixtures/export/llama-cpp/manifest.json, written by
//!   `python3 scripts/check_export.py --references-only` (stories260K, the synthetic F32 model
//!   and the synthetic Q4_K model, each as F32, F16 and Q8_0; see
//!   [`tensors_are_llama_cpps_own_quantization`]);
//! - logits: llama.cpp's on the export, from tests/fixtures/export/{model}/ (same script).

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use common::{fixture, ids, max_abs_diff, open, read_json, read_npy, root, to_vec, token_tensor};
use gguf_llama::gguf::quants::quantize;
use gguf_llama::gguf::{keys, GgmlType, Value};
use gguf_llama::model::export::{ExportError, ExportType};
use gguf_llama::model::{CacheTypes, Llama, Weights};

const STORIES: &str = "models/stories260k-f32.gguf";
const SYNTH_Q4_K: &str = "tests/fixtures/synthetic/synth-Q4_K.gguf";
const TYPES: [ExportType; 3] = [ExportType::F32, ExportType::F16, ExportType::Q8_0];

/// Our f32 forward pass against llama.cpp's f32 forward pass on the same weights: stories260K
/// 1e-4 (tests/model.rs `LOGIT_ATOL`: f32 summation order only, logits O(10)); the synthetic
/// model 1e-3 (tests/parity.rs `check_synthetic`, its f32-exact bound).
fn f32_tolerance(model: &str) -> f32 {
    if model == STORIES {
        1e-4
    } else {
        1e-3
    }
}

fn temp(name: &str) -> PathBuf {
    common::temp("export", name)
}

fn stem(model: &str) -> &str {
    Path::new(model).file_stem().unwrap().to_str().unwrap()
}

fn type_key(ty: ExportType) -> String {
    ty.name().to_lowercase()
}

/// Exports `model` (loaded with quantized weights kept in their blocks) as `ty`, to a file named
/// after `test` (tests run in parallel: each writes its own files).
fn export(test: &str, model: &str, ty: ExportType) -> PathBuf {
    let file = open(&root().join(model));
    let llama = Llama::from_gguf(&file, &Device::flex()).unwrap();
    let out = temp(&format!("{test}-{}-{}.gguf", stem(model), type_key(ty)));
    llama.save_gguf(file.metadata(), &out, ty).unwrap();
    out
}

/// The check script's entry for `model`.
fn check_entry(model: &str) -> serde_json::Value {
    read_json("export/llama_cpp_check.json")["models"][model].clone()
}

#[test]
fn metadata_is_the_sources_with_the_exports_file_type() {
    for model in [STORIES, SYNTH_Q4_K] {
        let source = open(&root().join(model));
        for ty in TYPES {
            let exported = open(&export("metadata", model, ty));
            let (src, out) = (source.metadata(), exported.metadata());
            // llama.cpp's llama_ftype: ALL_F32 = 0, MOSTLY_F16 = 1, MOSTLY_Q4_0 = 2,
            // MOSTLY_Q8_0 = 7 (llama.h).
            let want_file_type = match ty {
                ExportType::F32 => 0,
                ExportType::F16 => 1,
                ExportType::Q4_0 => 2,
                ExportType::Q8_0 => 7,
                other => unreachable!("{other} is not among TYPES"),
            };
            assert_eq!(
                out.get(keys::GENERAL_FILE_TYPE),
                Some(&Value::U32(want_file_type)),
                "{model} {ty}"
            );
            let src_keys: Vec<&str> = src.iter().map(|(k, _)| k).collect();
            let mut out_keys: Vec<&str> = out.iter().map(|(k, _)| k).collect();
            if src.get(keys::GENERAL_FILE_TYPE).is_none() {
                // Appended when the source has none (stories260K).
                assert_eq!(out_keys.pop(), Some(keys::GENERAL_FILE_TYPE));
            }
            assert_eq!(out_keys, src_keys, "{model} {ty}: keys in order");
            for (key, value) in src.iter() {
                if key != keys::GENERAL_FILE_TYPE {
                    assert_eq!(out.get(key), Some(value), "{model} {ty}: {key}");
                }
            }
        }
    }
}

#[test]
fn tensors_have_the_intended_names_shapes_types_and_bytes() {
    for model in [STORIES, SYNTH_Q4_K] {
        let source = open(&root().join(model));
        let entry = check_entry(model);
        for ty in TYPES {
            let exported = open(&export("tensors", model, ty));
            let mut src_names: Vec<&str> =
                source.tensors().iter().map(|t| t.name.as_str()).collect();
            let mut out_names: Vec<&str> =
                exported.tensors().iter().map(|t| t.name.as_str()).collect();
            src_names.sort_unstable();
            out_names.sort_unstable();
            assert_eq!(out_names, src_names, "{model} {ty}: tensor names");

            let mut counts = std::collections::BTreeMap::<String, u64>::new();
            for info in exported.tensors() {
                let name = &info.name;
                let src = source.tensor(name).unwrap();
                assert_eq!(info.ne, src.ne, "{model} {ty} {name}: ne");
                let row = info.ne[0] as usize;
                let want_ty = match (info.ne.len(), ty) {
                    (1, _) => GgmlType::F32,
                    (_, ExportType::Q8_0) if !row.is_multiple_of(32) => GgmlType::F16,
                    (_, ty) => ty.ggml_type(),
                };
                assert_eq!(info.ty, want_ty, "{model} {ty} {name}: type");
                *counts.entry(info.ty.name().to_string()).or_default() += 1;

                let data = exported.tensor_data(info);
                if src.ty == want_ty && (want_ty == GgmlType::F32 || ty == ExportType::F32) {
                    assert!(
                        data == source.tensor_data(src),
                        "{model} {ty} {name}: bytes"
                    );
                } else {
                    let values = source.dequantize(name).unwrap();
                    let want = quantize(want_ty, row, &values).unwrap();
                    assert!(data == want.as_slice(), "{model} {ty} {name}: bytes");
                }
            }
            let check = &entry["exports"][type_key(ty)]["tensors_vs_llama_cpp_quantize"];
            // The script's own comparison with llama.cpp's quantizer, when it wrote the JSON (this
            // file compares the bytes itself in `tensors_are_llama_cpps_own_quantization`).
            assert_eq!(
                check["identical"],
                serde_json::Value::Bool(true),
                "{model} {ty}: check_export.py found differences: {}",
                check["differences"]
            );
            let llama_cpp: std::collections::BTreeMap<String, u64> =
                serde_json::from_value(check["types"].clone()).unwrap();
            assert_eq!(
                counts, llama_cpp,
                "{model} {ty}: types as llama.cpp's quantizer"
            );
        }
    }
}

fn export_type(key: &str) -> ExportType {
    TYPES
        .into_iter()
        .find(|&ty| type_key(ty) == key)
        .unwrap_or_else(|| panic!("export type {key:?}"))
}

/// Every tensor of our export is, byte for byte (and in ggml type and shape), what llama.cpp's
/// own quantizer (`llama_model_quantize`, llama-cpp-python 0.3.36 = llama.cpp 0c1e57098) wrote
/// for the same source and type. The references (tests/fixtures/export/llama-cpp/manifest.json,
/// `python3 scripts/check_export.py --references-only`), per source and type:
/// - stories260K (F32): F32 is the source file itself (llama.cpp's F32 output has the source's
///   tensors, checked by the script); F16 and Q8_0 are llama.cpp's output files as it wrote them.
///   Its Q8_0 has 5 F16 matrices: `ffn_down`'s rows of 172 are not whole 32-blocks, and
///   llama.cpp falls back to F16 for them, as we do.
/// - the synthetic F32 model: F32 is the source, F16 and Q8_0 are
///   tests/fixtures/synthetic/synth-{F16,Q8_0}.gguf (llama.cpp's quantizations of it).
/// - the synthetic Q4_K model (a quantized source, which llama.cpp dequantizes with ggml's
///   dequantizer before quantizing): `blk.0.attn_k.weight` and `blk.0.attn_v.weight` of
///   llama.cpp's F32, F16 and Q8_0 output (the whole files would be 0.9-3.4 MB).
///
/// Where a reference is a whole file, our export has exactly its tensor names. 1-D tensors (the
/// norms) are F32 in both, copied from the source.
#[test]
fn tensors_are_llama_cpps_own_quantization() {
    let manifest = read_json("export/llama-cpp/manifest.json");
    let references = manifest["references"].as_array().unwrap();
    // Three sources, three types each: nothing left out by a regenerated manifest.
    assert_eq!(references.len(), 9, "references in the manifest");
    for r in references {
        let source = r["source"].as_str().unwrap();
        let ty = export_type(r["type"].as_str().unwrap());
        let reference = open(&root().join(r["reference"].as_str().unwrap()));
        let ours = open(&export("llama-cpp", source, ty));
        let what = format!(
            "{source} {ty} vs llama.cpp ({})",
            r["reference"].as_str().unwrap()
        );
        if r["tensors"] == "all" {
            let mut want: Vec<&str> = reference
                .tensors()
                .iter()
                .map(|t| t.name.as_str())
                .collect();
            let mut got: Vec<&str> = ours.tensors().iter().map(|t| t.name.as_str()).collect();
            want.sort_unstable();
            got.sort_unstable();
            assert_eq!(got, want, "{what}: tensor names");
        } else {
            let kept: Vec<&str> = r["tensors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap())
                .collect();
            let names: Vec<&str> = reference
                .tensors()
                .iter()
                .map(|t| t.name.as_str())
                .collect();
            assert_eq!(names, kept, "{what}: the subset's tensors");
        }
        for want in reference.tensors() {
            let name = &want.name;
            let got = ours
                .tensor(name)
                .unwrap_or_else(|| panic!("{what}: {name} missing"));
            assert_eq!(got.ty, want.ty, "{what}: {name} type");
            assert_eq!(got.ne, want.ne, "{what}: {name} shape");
            let (a, b) = (ours.tensor_data(got), reference.tensor_data(want));
            assert_eq!(a.len(), b.len(), "{what}: {name} byte length");
            if let Some(i) = a.iter().zip(b).position(|(x, y)| x != y) {
                panic!(
                    "{what}: {name} bytes differ first at byte {i} of {} ({:#04x}, llama.cpp {:#04x})",
                    a.len(),
                    a[i],
                    b[i]
                );
            }
        }
    }
}

/// A Q8_0 matrix exported as Q8_0 is its source's bytes.
#[test]
fn q8_0_matrices_are_copied_to_a_q8_0_export() {
    let model = "tests/fixtures/synthetic/synth-Q8_0.gguf";
    let source = open(&root().join(model));
    let exported = open(&export("copy", model, ExportType::Q8_0));
    for info in exported.tensors() {
        let src = source.tensor(&info.name).unwrap();
        assert_eq!(info.ty, src.ty, "{}", info.name);
        assert!(
            exported.tensor_data(info) == source.tensor_data(src),
            "{}",
            info.name
        );
    }
}

/// The prompt's logits with the F32 KV cache of the fixtures (llama.cpp's runs).
fn logits(model: &Llama, prompt: &[u32], device: &Device) -> Vec<f32> {
    let mut cache = model.new_cache_with(1, prompt.len(), CacheTypes::F32);
    to_vec(
        model
            .forward(token_tensor(prompt, device), &mut cache)
            .unwrap(),
    )
}

/// The export reloaded as a model, against llama.cpp and against the source model.
///
/// 1. With weights dequantized to f32: within the f32 tolerance of llama.cpp's f32 run on the
///    export's weights (`logits-{TYPE}-f32deq.npy`).
/// 2. With weights kept in their blocks: at most as far from llama.cpp's run on the export
///    (`logits-{TYPE}.npy`) as llama.cpp's own f32 run on the same weights is, plus 1e-3 (the
///    bound of tests/parity.rs: llama.cpp rounds activations to F16 for F16 weights and to
///    Q8_0 for Q8_0 weights; our kernels round them to Q8_0 as llama.cpp does, and keep them
///    f32 for F16 weights, so either we are at llama.cpp's quantized run or at its f32 run).
///    Only for exports whose matrices are all of one type: stories260K's Q8_0 export has F16
///    `ffn_down` matrices (rows of 172) beside Q8_0 ones, and there the two roundings mix,
///    so neither end of the bound describes our run (measured: 0.248 from llama.cpp's run,
///    whose f32 run is 0.184 away).
/// 3. Against the source model (f32 weights): the F32 export of an F32 model gives identical
///    logits, bit for bit (the same f32 weights, the same computation); the F32 export of a
///    quantized model too (its weights are the source's dequantized, exactly as loading the
///    source with f32 weights dequantizes them). F16 and Q8_0: the weights differ by their
///    rounding; by the triangle inequality through llama.cpp (1. for the export and for the
///    F32 export = the source's weights), within llama.cpp's own f32 difference between the
///    two (`logits-{TYPE}-f32deq` vs `logits-F32-f32deq`) plus twice the f32 tolerance.
#[test]
fn reloaded_exports_give_llama_cpps_logits_and_the_sources() {
    let device = Device::flex();
    for model in [STORIES, SYNTH_Q4_K] {
        let entry = check_entry(model);
        let prompt = ids(&entry["prompt_tokens"]);
        let dir = format!("export/{}", stem(model));
        let npy = |name: &str| {
            let (shape, v) = read_npy(&fixture(&format!("{dir}/{name}")));
            assert_eq!(shape, vec![prompt.len(), 512], "{dir}/{name}");
            v
        };
        let tol = f32_tolerance(model);
        let source_file = open(&root().join(model));
        let source = Llama::from_gguf_with_weights(&source_file, &device, Weights::F32).unwrap();
        let source_logits = logits(&source, &prompt, &device);
        let llama_source_f32 = npy("logits-F32-f32deq.npy");

        for ty in TYPES {
            let name = ty.ggml_type().name();
            let file = open(&export("logits", model, ty));
            let dense = Llama::from_gguf_with_weights(&file, &device, Weights::F32).unwrap();
            let ours_f32 = logits(&dense, &prompt, &device);
            let llama_f32 = npy(&format!("logits-{name}-f32deq.npy"));
            let d = max_abs_diff(&ours_f32, &llama_f32);
            eprintln!("{model} {ty}: f32 weights, {d:.3e} from llama.cpp f32");
            assert!(
                d <= tol,
                "{model} {ty}: {d} from llama.cpp's f32 run on the export"
            );

            let matrix_types: std::collections::BTreeSet<&str> = file
                .tensors()
                .iter()
                .filter(|t| t.ne.len() == 2)
                .map(|t| t.ty.name())
                .collect();
            if matrix_types.len() == 1 {
                let blocks =
                    Llama::from_gguf_with_weights(&file, &device, Weights::Quantized).unwrap();
                let ours_q = logits(&blocks, &prompt, &device);
                let llama_q = npy(&format!("logits-{name}.npy"));
                let activation_rounding = max_abs_diff(&llama_q, &llama_f32);
                let dq = max_abs_diff(&ours_q, &llama_q);
                eprintln!("{model} {ty}: quantized weights, {dq:.3e} from llama.cpp (its f32 run: {activation_rounding:.3e})");
                assert!(
                    dq <= activation_rounding + 1e-3,
                    "{model} {ty}: {dq} from llama.cpp's run on the export; its f32 run is {activation_rounding} away"
                );
            }

            if ty == ExportType::F32 {
                let same = ours_f32
                    .iter()
                    .zip(&source_logits)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{model} F32 export: logits differ from the source's");
            } else {
                let bound = max_abs_diff(&llama_f32, &llama_source_f32) + 2.0 * tol;
                let d = max_abs_diff(&ours_f32, &source_logits);
                eprintln!("{model} {ty}: {d:.3e} from the source model (bound {bound:.3e})");
                assert!(
                    d <= bound,
                    "{model} {ty}: {d} from the source model > {bound}"
                );
            }
        }
    }
}

/// Metadata of another model is refused before anything is written.
#[test]
fn metadata_of_another_model_is_refused() {
    let stories = open(&root().join(STORIES));
    let synth = open(&root().join(SYNTH_Q4_K));
    let model = Llama::from_gguf(&stories, &Device::flex()).unwrap();
    let out = temp("mismatch.gguf");
    match model.save_gguf(synth.metadata(), &out, ExportType::F16) {
        Err(ExportError::MetadataMismatch { .. }) => {}
        other => panic!("expected MetadataMismatch, got {other:?}"),
    }
    assert!(!out.exists());
}
