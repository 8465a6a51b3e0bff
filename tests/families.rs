//! Model families beyond Llama, against llama.cpp as its users run it (F16 KV cache, flash
//! attention off, the last position's logits): the last prompt logits bit for bit and
//! `generate --temp 0`'s greedy text, on flex and ndarray.
//!
//! - `qwen2`, `qwen3`, `phi3`: SmolLM2's trained weights written as each architecture
//!   (tests/common/families.rs: keys renamed, q/k rows un-permuted for NEOX RoPE, Qwen2's q/k/v
//!   biases and Qwen3's q/k norms with deterministic values; Phi-3's fused `attn_qkv` and
//!   gate/up `ffn_up` and LongRoPE factors; Qwen's and Phi-3.5's chat templates), the same
//!   bytes as scripts/make_family_fixtures.py writes with gguf-py (checked by digest here).
//! - `gemma3`: the real Gemma 3 270M Q4_K_M file (GELU gate, post-norms, q/k norms, embeddings
//!   scaled by sqrt(n_embd), queries scaled before attention, sliding-window layers with their own
//!   RoPE base); and the same file with its sliding window set to 16, so that the windows cut
//!   into the prompts.
//!
//! Reference data: tests/fixtures/families/families.json and `{model}-p{i}.npy`, written by
//! scripts/make_family_fixtures.py from llama.cpp (llama-cpp-python 0.3.36).

mod common;

use common::*;
use gguf_llama::gguf::GgufFile;
use gguf_llama::model::config::{Activation, AttentionScale, Family};
use gguf_llama::model::{CacheTypes, Llama, LlamaConfig, ModelError, RopeStyle};

const DOC: &str = "families/families.json";

fn record(key: &str) -> serde_json::Value {
    greedy::record(DOC, key, CacheTypes::default())
}

/// SmolLM2 written as `family` into the test's temp dir, after checking that it is the file
/// llama.cpp ran on for the record `key` (the digests the fixture script recorded).
fn smollm2_as(family: &str, key: &str) -> Option<std::path::PathBuf> {
    let src = smollm2()?;
    let path = temp("families", &format!("smollm2-as-{family}.gguf"));
    families::write_smollm2_as(family, &src, &fixture("families"), &path).unwrap();
    let file = GgufFile::open(&path).unwrap();
    let r = record(key);
    assert_eq!(
        families::tensor_data_sha256(&file),
        r["tensor_data_sha256"].as_str().unwrap(),
        "{key}: tensors"
    );
    assert_eq!(
        families::metadata_sha256(file.metadata()),
        r["metadata_sha256"].as_str().unwrap(),
        "{key}: metadata"
    );
    Some(path)
}

/// Qwen2: NEOX RoPE and biases on q, k and v; the chat prompts through Qwen 2.5's template.
#[test]
fn qwen2_bit_for_bit_on_cpu_devices() {
    let Some(path) = smollm2_as("qwen2", "smollm2-as-qwen2") else {
        return;
    };
    let r = record("smollm2-as-qwen2");
    greedy::check_cpu_devices(
        &path,
        &r,
        "families",
        "smollm2-as-qwen2",
        CacheTypes::F16,
        &|_| {},
    );
}

/// Qwen2 with YaRN RoPE scaling (factor 4 over an original context of 2048): pairs blended
/// between the scaled and unscaled angles by YaRN's ramp, cosines and sines scaled; llama.cpp's
/// resolved factor of the rotation (the record's `ggml_rope_mscale`) bit for bit.
#[test]
fn qwen2_yarn_bit_for_bit_on_cpu_devices() {
    let key = "smollm2-as-qwen2-yarn";
    let Some(path) = smollm2_as("qwen2-yarn", key) else {
        return;
    };
    let r = record(key);
    let file = GgufFile::open(&path).unwrap();
    let config = LlamaConfig::from_file(&file).unwrap();
    assert_eq!(config.rope.ext_factor, 1.0);
    let rope = gguf_llama::model::Rope::new(&config.rope, None).unwrap();
    let want = r["rope_scaling"]["ggml_rope_mscale"].as_f64().unwrap() as f32;
    assert_eq!(
        rope.mscale().to_bits(),
        want.to_bits(),
        "mscale {} vs {want}",
        rope.mscale()
    );
    greedy::check_cpu_devices(&path, &r, "families", key, CacheTypes::F16, &|_| {});
}

/// Qwen3: NEOX RoPE and RMS norms of each query and key head before it; Qwen 3's template.
#[test]
fn qwen3_bit_for_bit_on_cpu_devices() {
    let Some(path) = smollm2_as("qwen3", "smollm2-as-qwen3") else {
        return;
    };
    let r = record("smollm2-as-qwen3");
    greedy::check_cpu_devices(
        &path,
        &r,
        "families",
        "smollm2-as-qwen3",
        CacheTypes::F16,
        &|_| {},
    );
}

/// Phi-3 (fused `attn_qkv` and gate/up `ffn_up`, queries scaled before attention, LongRoPE)
/// with llama.cpp's context of `n_ctx` positions, the record `key`: 512 positions exceed the
/// file's original 256, so the long factors divide the angles; at 256 the short ones do.
fn check_phi3(key: &str) {
    let Some(path) = smollm2_as("phi3", key) else {
        return;
    };
    let r = record(key);
    let n_ctx = r["n_ctx"].as_u64().unwrap() as usize;
    // llama.cpp's context size is the model's context here (its `get_rope_factors` picks the
    // factors by it).
    let edit = |c: &mut LlamaConfig| c.context_length = n_ctx;
    greedy::check_cpu_devices(&path, &r, "families", key, CacheTypes::F16, &edit);
}

#[test]
fn phi3_long_rope_bit_for_bit_on_cpu_devices() {
    check_phi3("smollm2-as-phi3-long");
}

#[test]
fn phi3_short_rope_bit_for_bit_on_cpu_devices() {
    check_phi3("smollm2-as-phi3-short");
}

/// The real Gemma 3 270M: raw prompts and chat prompts (the file has no template: ChatML, as
/// llama.cpp falls back to).
#[test]
fn gemma3_bit_for_bit_on_cpu_devices() {
    let Some(path) = gemma3() else { return };
    let r = record("gemma3-270m");
    assert_eq!(
        families::tensor_data_sha256(&GgufFile::open(&path).unwrap()),
        r["tensor_data_sha256"].as_str().unwrap()
    );
    greedy::check_cpu_devices(
        &path,
        &r,
        "families",
        "gemma3-270m",
        CacheTypes::F16,
        &|_| {},
    );
}

/// Gemma 3 with a sliding window of 16 positions (llama.cpp ran the file with that one key
/// changed; here the configuration is edited): 15 of its 18 layers see only the last 16 keys.
#[test]
fn gemma3_sliding_window_bit_for_bit_on_cpu_devices() {
    let Some(path) = gemma3() else { return };
    let r = record("gemma3-270m-swa16");
    let window = r["sliding_window"].as_u64().unwrap() as usize;
    let swa_layers: Vec<usize> = ids(&r["swa_layers"])
        .into_iter()
        .map(|l| l as usize)
        .collect();
    let edit = |c: &mut LlamaConfig| {
        let w = c
            .sliding_window
            .as_mut()
            .expect("Gemma 3 has a sliding window");
        w.size = window;
        let ours: Vec<usize> = (0..c.block_count).filter(|&l| w.layers[l]).collect();
        assert_eq!(ours, swa_layers, "the windowed layers");
    };
    greedy::check_cpu_devices(
        &path,
        &r,
        "families",
        "gemma3-270m-swa16",
        CacheTypes::F16,
        &edit,
    );
}

/// The family description read from Gemma 3's metadata, as llama.cpp's
/// `llama_model_gemma3::load_arch_hparams` reads it.
#[test]
fn gemma3_configuration_is_llama_cpp_s() {
    let Some(path) = gemma3() else { return };
    let file = GgufFile::open(&path).unwrap();
    let c = LlamaConfig::from_file(&file).unwrap();
    assert_eq!(c.family, Family::Gemma3);
    assert_eq!(c.rope.style, RopeStyle::Halves);
    assert_eq!(c.activation, Activation::Gelu);
    // key_length 256 with n_embd / n_head = 160.
    assert_eq!(
        (c.key_length, c.embedding_length / c.head_count),
        (256, 160)
    );
    assert_eq!(c.embedding_scale, Some(640f32.sqrt()));
    assert_eq!(c.attention_scale, AttentionScale::Queries(1.0 / 16.0));
    assert_eq!(c.final_logit_softcapping, None);
    let w = c.sliding_window.as_ref().unwrap();
    assert_eq!(w.size, 512);
    // Pattern 6: every sixth layer global.
    let global: Vec<usize> = (0..18).filter(|&l| !w.layers[l]).collect();
    assert_eq!(global, [5, 11, 17]);
    // No `rope.freq_base_swa` key: llama.cpp's default base 10000 for the windowed layers.
    assert_eq!((w.freq_base, c.rope.freq_base), (10000.0, 1_000_000.0));
    assert_eq!(c.window(0), Some(512));
    assert_eq!(c.window(5), None);
}

/// A block without a tensor its family requires is refused naming the tensor.
#[test]
fn missing_family_tensor_is_named() {
    let Some(src) = smollm2() else { return };
    let path = temp("families", "qwen3-without-q-norm.gguf");
    let full = temp("families", "qwen3-full.gguf");
    families::write_smollm2_as("qwen3", &src, &fixture("families"), &full).unwrap();
    let file = GgufFile::open(&full).unwrap();
    let mut w = gguf_llama::gguf::GgufWriter::new();
    w.add_all_metadata(file.metadata()).unwrap();
    for t in file.tensors() {
        if t.name != "blk.3.attn_q_norm.weight" {
            w.add_tensor(
                t.name.clone(),
                &t.shape(),
                t.ty,
                file.tensor_data(t).to_vec(),
            )
            .unwrap();
        }
    }
    w.write_file(&path).unwrap();
    let device = gguf_llama::device::device(gguf_llama::device::DeviceName::Flex).unwrap();
    match Llama::from_gguf(&GgufFile::open(&path).unwrap(), &device) {
        Err(ModelError::MissingTensor { name }) => assert_eq!(name, "blk.3.attn_q_norm.weight"),
        other => panic!("expected MissingTensor, got {:?}", other.map(|_| ())),
    }
}

/// wgpu keeps activations in f32 (llama.cpp's CPU backend rounds them to 8 bits per block): its
/// reference is llama.cpp on the same weights dequantized to F32 with an F32 KV cache (the
/// records `{key}-f32`, 3 prompts of 16 tokens), and only the order of float sums differs. Greedy
/// choices forced along llama.cpp's tokens must equal its own except at near-ties (top-2 gap
/// below 0.01, as for SmolLM2 in tests/parity.rs).
fn check_wgpu(path: &std::path::Path, key: &str, edit: &dyn Fn(&mut LlamaConfig)) {
    use gguf_llama::device::DeviceName;
    let r = greedy::record(DOC, &format!("{key}-f32"), CacheTypes::F32);
    let file = GgufFile::open(path).unwrap();
    let mut config = LlamaConfig::from_file(&file).unwrap();
    edit(&mut config);
    for (name, device) in devices() {
        if name != DeviceName::Wgpu {
            continue;
        }
        let model = Llama::from_gguf_with_config(
            &file,
            config.clone(),
            &device,
            gguf_llama::model::Weights::Quantized,
        )
        .unwrap();
        for p in r["prompts"].as_array().unwrap() {
            let reference = ids(&p["greedy_tokens"]);
            let ours = forced_argmax(
                &model,
                &ids(&p["prompt_tokens"]),
                &reference,
                CacheTypes::F32,
            );
            assert_forced_greedy(
                &format!("{key} {name} {:?}", p["prompt"]),
                &ours,
                &reference,
                &f64s(&p["top2_gaps"]),
                0.01,
            );
        }
    }
}

#[test]
fn families_on_wgpu_within_summation_order() {
    for (family, key) in [
        ("qwen2", "smollm2-as-qwen2"),
        ("qwen3", "smollm2-as-qwen3"),
        ("phi3", "smollm2-as-phi3-long"),
    ] {
        let Some(path) = smollm2_as(family, key) else {
            return;
        };
        let n_ctx = record(key)["n_ctx"].as_u64().unwrap() as usize;
        check_wgpu(&path, key, &|c| c.context_length = n_ctx);
    }
    let Some(path) = gemma3() else { return };
    check_wgpu(&path, "gemma3-270m", &|_| {});
}

/// Gemma 3 saved as a Burn record and loaded back computes the same logits bit for bit: its
/// family parameters (window, scales, GELU, local RoPE) come back from the record's description,
/// and its 178 MB embedding, kept in row bands, comes back in the same bands.
#[test]
fn gemma3_record_round_trips_bit_for_bit() {
    let Some(path) = gemma3() else { return };
    let device = gguf_llama::device::device(gguf_llama::device::DeviceName::Flex).unwrap();
    let model = Llama::from_gguf(&GgufFile::open(&path).unwrap(), &device).unwrap();
    let embd = model.token_embedding().quantized_weight().unwrap();
    assert!(embd.is_banded(), "the 178 MB embedding is kept in bands");
    let record = temp("families", "gemma3.bpk");
    model.save_record(&record).unwrap();
    let loaded = Llama::load_record(&record, &device).unwrap();
    std::fs::remove_file(&record).unwrap();
    assert_eq!(loaded.config(), model.config());
    let prompt = [2u32, 818, 5279, 529, 7001, 563, 262_143];
    let logits = |m: &Llama| -> Vec<u32> {
        let mut cache = m.new_cache(1, prompt.len());
        let l = m
            .forward_ids(&prompt, 1, &mut cache, gguf_llama::model::Logits::All)
            .unwrap();
        to_vec(l).into_iter().map(f32::to_bits).collect()
    };
    assert_eq!(logits(&loaded), logits(&model));
}
