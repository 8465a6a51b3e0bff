//! Against llama.cpp as its users run it: its default F16 KV cache, flash attention off
//! (llama-cpp-python's default), only the last position's logits. `generate --temp 0` with our
//! defaults (F16 KV cache, weights in their blocks) must print llama.cpp's greedy text.
//!
//! Reference data: tests/fixtures/llama/default-kv.json and default-kv-{model}-p{i}.npy (the last
//! prompt position's logits), written by scripts/make_default_kv_fixtures.py from llama.cpp
//! (llama-cpp-python 0.3.36, the settings it resolved recorded per model).
//!
//! On the CPU devices the attention over an f16 cache is ggml's (queries and softmax weights
//! rounded to f16, its `vec_dot_f16` and tinyBLAS orders: `gguf_kernels::cpu::ggml_ops::attention`),
//! so the logits are llama.cpp's bit for bit and every greedy token is llama.cpp's, near-ties
//! included. The CPU kernels compute in the order of llama.cpp's AVX-512 build on every CPU, so
//! this holds on any machine. wgpu rounds the cache, the queries and the weights to f16 as ggml
//! does but sums in its own order: there a token may differ only where llama.cpp's top-2 gap is a
//! near-tie, and the comparison goes on along llama.cpp's tokens after it.

mod common;

use common::*;
use gguf_llama::cli;
use gguf_llama::device::DeviceName;
use gguf_llama::gguf::GgufFile;
use gguf_llama::model::export::ExportType;
use gguf_llama::model::{CacheTypes, KvType, Llama};

/// The record of `model` in the fixture, after checking that llama.cpp ran with an f16 cache and
/// no flash attention.
fn reference(model: &str) -> serde_json::Value {
    reference_with(model, CacheTypes::default())
}

/// The record of `model` in the fixture, after checking that llama.cpp ran with the cache types
/// `types` and no flash attention.
fn reference_with(model: &str, types: CacheTypes) -> serde_json::Value {
    greedy::record("llama/default-kv.json", model, types)
}

/// On flex and ndarray, `path` against llama.cpp's record `key` ([`greedy::check_cpu_devices`]).
fn check_cpu_devices(path: &std::path::Path, key: &str) {
    check_cpu_devices_with(path, key, CacheTypes::default());
}

/// [`check_cpu_devices`] with the cache types `types` on our side (llama.cpp's recorded under
/// `key`).
fn check_cpu_devices_with(path: &std::path::Path, key: &str, types: CacheTypes) {
    let r = reference_with(key, types);
    greedy::check_cpu_devices(path, &r, "llama", key, types, &|_| {});
}

/// stories260K has F32 weights, which the CPU devices multiply in ggml's order (`vec_dot_f32`
/// for one row, llamafile's tinyBLAS for several: kernels/src/cpu/float.rs): the logits are
/// llama.cpp's bit for bit, and so is every greedy token.
#[test]
fn stories260k_default_cache_bit_for_bit_on_cpu_devices() {
    let path = root().join("models/stories260k-f32.gguf");
    check_cpu_devices(&path, "stories260k");
}

/// SmolLM2 Q4_1 (its token embedding and tied output in Q8_0): every matmul in ggml's order, so
/// the logits are llama.cpp's bit for bit and so is every greedy token, near-ties included.
#[test]
fn smollm2_default_cache_bit_for_bit_on_cpu_devices() {
    let Some(path) = smollm2() else { return };
    check_cpu_devices(&path, "smollm2-q4_1");
}

/// SmolLM2 Q4_1 with llama.cpp's `--cache-type-k q8_0` (values f16): the keys quantized as ggml's
/// `quantize_row_q8_0`, the queries too, the scores in `vec_dot_q8_0_q8_0`'s order; bit for bit.
#[test]
fn smollm2_q8_0_keys_bit_for_bit_on_cpu_devices() {
    let Some(path) = smollm2() else { return };
    let types = CacheTypes {
        k: KvType::Q8_0,
        v: KvType::F16,
    };
    check_cpu_devices_with(&path, "smollm2-q4_1-kq8", types);
}

/// SmolLM2 exported by this crate (`ExportType`) from the Q4_1 file's weights into `name`,
/// after checking that it is the file llama.cpp's quantizer writes from the same weights (the
/// sha256 of every tensor's name, type, shape and bytes in name order, recorded by the fixture
/// script from llama.cpp's file under `key`).
fn smollm2_exported_as(ty: ExportType, key: &str, name: &str) -> Option<std::path::PathBuf> {
    use gguf_llama::model::Weights;
    let src = smollm2()?;
    let file = GgufFile::open(&src).unwrap();
    let path = temp("llama_cpp_defaults", name);
    let device = gguf_llama::device::device(DeviceName::Flex).unwrap();
    Llama::from_gguf_with_weights(&file, &device, Weights::F32)
        .unwrap()
        .save_gguf(file.metadata(), &path, ty)
        .unwrap();
    let got = families::tensor_data_sha256(&GgufFile::open(&path).unwrap());
    assert_eq!(
        got,
        reference(key)["tensor_data_sha256"].as_str().unwrap(),
        "our {ty:?} export is not llama.cpp's"
    );
    Some(path)
}

/// [`check_cpu_devices`] on SmolLM2 exported as `ty` into `name` ([`smollm2_exported_as`]),
/// against llama.cpp's record under `key`.
fn check_smollm2_export(ty: ExportType, key: &str, name: &str) {
    if let Some(path) = smollm2_exported_as(ty, key, name) {
        check_cpu_devices(&path, key);
    }
}

/// SmolLM2 in Q8_0 (our export, llama.cpp's file) runs as llama.cpp runs it: Q8_0 decoding in
/// `vec_dot_q8_0_q8_0`'s order, prefill in tinyBLAS's.
#[test]
fn smollm2_q8_0_default_cache_bit_for_bit_on_cpu_devices() {
    check_smollm2_export(
        ExportType::Q8_0,
        "smollm2-q8_0",
        "SmolLM2-135M-Instruct.Q8_0.gguf",
    );
}

/// SmolLM2 in Q4_0 (our export, llama.cpp's file: Q4_0 matrices, the tied embedding Q8_0) runs
/// as llama.cpp runs it: its Q4_0 matrices (rows in eights) in the order of its repacked kernels
/// (`ggml_gemv/gemm_q4_0_8x8_q8_0`), decoding and prefill.
#[test]
fn smollm2_q4_0_default_cache_bit_for_bit_on_cpu_devices() {
    check_smollm2_export(
        ExportType::Q4_0,
        "smollm2-q4_0",
        "SmolLM2-135M-Instruct.Q4_0.gguf",
    );
}

/// SmolLM2 in F16 (our export, llama.cpp's file) runs as llama.cpp runs it: the activations
/// rounded to f16, `vec_dot_f16` for one row, tinyBLAS for several.
#[test]
fn smollm2_f16_default_cache_bit_for_bit_on_cpu_devices() {
    check_smollm2_export(
        ExportType::F16,
        "smollm2-f16",
        "SmolLM2-135M-Instruct.F16.gguf",
    );
}

/// SmolLM2 in BF16 (our export, llama.cpp's file) runs as llama.cpp runs it: the activations
/// rounded to BF16, `vec_dot_bf16` (AVX-512 BF16's `vdpbf16ps` order) for one row, tinyBLAS's
/// BF16 order for several.
#[test]
fn smollm2_bf16_default_cache_bit_for_bit_on_cpu_devices() {
    check_smollm2_export(
        ExportType::BF16,
        "smollm2-bf16",
        "SmolLM2-135M-Instruct.BF16.gguf",
    );
}

/// SmolLM2 in Q5_0 and Q5_1 (our exports, llama.cpp's files; the tied embedding Q8_0):
/// `vec_dot_q5_<0|1>_q8_<0|1>`'s order in decoding and prefill.
#[test]
fn smollm2_q5_0_and_q5_1_default_cache_bit_for_bit_on_cpu_devices() {
    check_smollm2_export(
        ExportType::Q5_0,
        "smollm2-q5_0",
        "SmolLM2-135M-Instruct.Q5_0.gguf",
    );
    check_smollm2_export(
        ExportType::Q5_1,
        "smollm2-q5_1",
        "SmolLM2-135M-Instruct.Q5_1.gguf",
    );
}

/// SmolLM2 in llama.cpp's K-quant mixes (our exports, llama.cpp's files). SmolLM2's 576-wide rows
/// are not whole 256-blocks, so llama.cpp writes those matrices in its fallback types (Q4_0,
/// Q5_0, Q5_1, Q8_0) and only `ffn_down` (1536 wide) in K-quants: Q3_K (Q2_K file), Q4_K and
/// Q5_K (Q3_K_M, Q4_K_S), Q4_K and Q6_K (Q4_K_M), Q5_K and Q6_K (Q5_K_M), Q6_K (Q6_K). Q4_K
/// matrices (rows in eights) in the order of llama.cpp's repacked kernels, Q3_K, Q5_K and Q6_K in
/// `vec_dot_q<n>_K_q8_K`'s for fewer than 8 activation rows and the tiled K-quant matmul's for
/// more.
#[test]
fn smollm2_k_quant_mixes_default_cache_bit_for_bit_on_cpu_devices() {
    for (ty, key) in [
        (ExportType::Q2_K, "smollm2-q2_k"),
        (ExportType::Q3_K_M, "smollm2-q3_k_m"),
        (ExportType::Q4_K_S, "smollm2-q4_k_s"),
        (ExportType::Q4_K_M, "smollm2-q4_k_m"),
        (ExportType::Q5_K_M, "smollm2-q5_k_m"),
        (ExportType::Q6_K, "smollm2-q6_k"),
    ] {
        check_smollm2_export(ty, key, &format!("SmolLM2-135M-Instruct.{ty}.gguf"));
    }
}

/// SmolLM2 in IQ4_NL and IQ4_XS (our export, llama.cpp's file: IQ4_NL matrices, and IQ4_XS
/// `ffn_down` in the IQ4_XS file, whose 1536-wide rows are whole super-blocks; Q5_K `ffn_down`
/// in the first eighth of the layers; the tied embedding Q8_0) runs as llama.cpp runs it: IQ4_NL
/// in the order of its repacked kernels, IQ4_XS in `vec_dot_iq4_xs_q8_K`'s for fewer than 8
/// activation rows and its tiled matmul's for more.
#[test]
fn smollm2_iq4_exports_default_cache_bit_for_bit_on_cpu_devices() {
    for (ty, key) in [
        (ExportType::IQ4_NL, "smollm2-iq4_nl"),
        (ExportType::IQ4_XS, "smollm2-iq4_xs"),
    ] {
        check_smollm2_export(ty, key, &format!("SmolLM2-135M-Instruct.{ty}.gguf"));
    }
}

/// SmolLM2 in the i-quants and formats this crate does not write, as llama.cpp's quantizer
/// writes them (`scripts/make_iquant_models.py`; the file checked against the sha256 of its
/// tensor data in the fixture): IQ3_S and IQ3_XXS files (IQ4_NL where rows are 576 wide, the
/// named type in `ffn_down`, IQ3_XXS's `attn_output` IQ3_S), TQ1_0 and TQ2_0 files (Q4_0 where
/// rows are 576 wide) and an MXFP4 one (every layer matrix MXFP4, by ggml's quantizer). Every
/// matmul in llama.cpp's order (`vec_dot`, tiled, repacked: kernels/src/cpu/iquants.rs,
/// nibble_lut.rs, repacked.rs), so the logits are its own bit for bit.
#[test]
fn smollm2_llama_cpp_iquant_files_bit_for_bit_on_cpu_devices() {
    for (name, key) in [
        ("IQ3_S", "smollm2-iq3_s"),
        ("IQ3_XXS", "smollm2-iq3_xxs"),
        ("TQ1_0", "smollm2-tq1_0"),
        ("TQ2_0", "smollm2-tq2_0"),
        ("MXFP4", "smollm2-mxfp4"),
    ] {
        let Some(path) = smollm2_variant(name) else {
            return;
        };
        let got = families::tensor_data_sha256(&GgufFile::open(&path).unwrap());
        assert_eq!(
            got,
            reference(key)["tensor_data_sha256"].as_str().unwrap(),
            "{}: not the file llama.cpp's quantizer wrote for the fixture",
            path.display()
        );
        check_cpu_devices(&path, key);
    }
}

/// SmolLM2 in IQ4_NL, IQ4_XS, IQ3_S and MXFP4 on wgpu, every matrix multiplied in its blocks by
/// the CubeCL kernels. wgpu keeps activations in f32 (llama.cpp's CPU backend rounds them to 8
/// bits per block), so its reference is llama.cpp on the same file's weights dequantized to F32
/// with an F32 KV cache (tests/fixtures/llama/iquant-f32.json, written by
/// scripts/make_iquant_f32_fixtures.py: 3 prompts of 16 tokens), and only the order of float sums
/// differs: greedy choices forced along llama.cpp's tokens equal its own except at near-ties
/// (top-2 gap below 0.01, as for the other files on wgpu, tests/families.rs).
#[test]
fn smollm2_iquants_on_wgpu_within_summation_order() {
    for (name, key) in [
        ("IQ4_NL", "smollm2-iq4_nl-f32"),
        ("IQ4_XS", "smollm2-iq4_xs-f32"),
        ("IQ3_S", "smollm2-iq3_s-f32"),
        ("MXFP4", "smollm2-mxfp4-f32"),
    ] {
        let Some(path) = smollm2_variant(name) else {
            return;
        };
        let r = greedy::record("llama/iquant-f32.json", key, CacheTypes::F32);
        let file = GgufFile::open(&path).unwrap();
        assert_eq!(
            families::tensor_data_sha256(&file),
            r["tensor_data_sha256"].as_str().unwrap(),
            "{}: not the file of the fixture",
            path.display()
        );
        for (device_name, device) in devices() {
            if device_name != DeviceName::Wgpu {
                continue;
            }
            let model = Llama::from_gguf(&file, &device).unwrap();
            for p in r["prompts"].as_array().unwrap() {
                let reference = ids(&p["greedy_tokens"]);
                let ours = forced_argmax(
                    &model,
                    &ids(&p["prompt_tokens"]),
                    &reference,
                    CacheTypes::F32,
                );
                assert_forced_greedy(
                    &format!("{name} {device_name} {:?}", p["prompt"]),
                    &ours,
                    &reference,
                    &f64s(&p["top2_gaps"]),
                    0.01,
                );
            }
        }
    }
}

/// wgpu with the default f16 cache: greedy choices forced along llama.cpp's tokens equal its own
/// except at near-ties (top-2 gap below 1e-3; stories260K's smallest gap is far above it).
#[test]
fn stories260k_default_cache_on_wgpu() {
    let r = reference("stories260k");
    let file = cli::open_model(None).unwrap();
    for (name, device) in devices() {
        if name != DeviceName::Wgpu {
            continue;
        }
        let model = Llama::from_gguf(&file, &device).unwrap();
        // f16 where the adapter has f16 tensors (else an f32 cache, with a warning).
        let types = model.new_cache(1, 1).types();
        assert_eq!(
            types == CacheTypes::F16,
            device.supports_dtype(burn::tensor::DType::F16),
            "{name}: {types:?}"
        );
        eprintln!("{name}: KV cache {types:?}");
        for p in r["prompts"].as_array().unwrap() {
            let reference_tokens = ids(&p["greedy_tokens"]);
            let ours = forced_argmax(
                &model,
                &ids(&p["prompt_tokens"]),
                &reference_tokens,
                CacheTypes::F16,
            );
            assert_forced_greedy(
                &format!("{name} {:?}", p["prompt"]),
                &ours,
                &reference_tokens,
                &f64s(&p["top2_gaps"]),
                1e-3,
            );
        }
    }
}
