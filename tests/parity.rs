//! End to end against llama.cpp: text through our tokenizer (and chat template), our Llama module
//! and greedy decoding must give llama.cpp's tokens, on every device.
//!
//! Reference data: tests/fixtures/llama/{stories260k,smollm2}.json and
//! tests/fixtures/synthetic/synthetic.json, written by scripts/make_llama_fixtures.py from
//! llama.cpp (llama-cpp-python 0.3.36, F32 KV cache, flash attention off, greedy = argmax).
//!
//! With `Weights::F32` every matmul is f32, so quantized models are compared with llama.cpp run on
//! the same weights dequantized to f32 (`f32_dequantized`, `*-f32deq.npy`). With the weights in
//! their blocks (the default) the CPU devices compute as llama.cpp's quantized path does, in its
//! order, and SmolLM2 is compared with llama.cpp's own run bit for bit
//! ([`smollm2_quantized_greedy_matches_llama_cpp`]).

mod common;

use common::*;
use gguf_llama::cli;
use gguf_llama::device::DeviceName;
use gguf_llama::generate::{generate, GenerateConfig};
use gguf_llama::gguf::GgufFile;
use gguf_llama::model::{CacheTypes, Llama, Logits, Weights};
use gguf_llama::sampling::SamplerConfig;
use gguf_llama::tokenizer::Tokenizer;

/// Greedy decoding with the F32 KV cache these fixtures were made with.
fn greedy(max_tokens: usize) -> GenerateConfig {
    GenerateConfig {
        max_tokens,
        sampler: SamplerConfig::greedy(),
        stop_at_eog: false,
        cache: CacheTypes::F32,
    }
}

#[test]
fn stories260k_prompts_and_greedy_64_tokens() {
    let reference = read_json("llama/stories260k.json");
    let file = cli::open_model(None).unwrap();
    let tokenizer = Tokenizer::from_gguf(file.metadata()).unwrap();
    for (name, device) in devices() {
        let model = Llama::from_gguf(&file, &device).unwrap();
        for p in reference["prompts"].as_array().unwrap() {
            let text = p["prompt"].as_str().unwrap();
            let prompt = cli::prompt_tokens(&file, &tokenizer, text, false, None).unwrap();
            assert_eq!(
                prompt,
                ids(&p["prompt_tokens"]),
                "{name}: prompt tokens of {text:?}"
            );
            let g = generate(&model, &tokenizer, &prompt, &greedy(64), &mut |_| {}).unwrap();
            // stories260K's gaps are large (the smallest is > 0.1): all 64 tokens must agree.
            assert_eq!(
                g.tokens,
                ids(&p["greedy_tokens"]),
                "{name}: greedy tokens of {text:?}"
            );
            assert_eq!(
                g.text,
                p["generated_text"].as_str().unwrap(),
                "{name}: text of {text:?}"
            );
        }
    }
}

/// Runs the synthetic model of every type with `weights` on every device and checks its prompt
/// logits against llama.cpp's (tests/fixtures/synthetic, see the module docs):
/// - always: at most as far from llama.cpp's own quantized run as llama.cpp's f32 run on the same
///   weights is (the spread that activation rounding alone causes), plus the f32 margin 1e-3;
/// - with `f32_exact`: llama.cpp's f32 run on the same weights, bit for bit on the CPU devices
///   (every matmul is then f32 in ggml's order: `vec_dot_f32` / tinyBLAS, kernels/src/cpu/float.rs)
///   and within 1e-3 elsewhere (only the summation order differs; logits here are O(1)).
fn check_synthetic(weights: Weights, f32_exact: bool) {
    // With the weights in their blocks, the CPU devices (flex, ndarray) compute every type as
    // llama.cpp's CPU backend does, so their logits are llama.cpp's quantized logits bit for bit:
    // activations rounded to 8 bits (or to f16 / BF16 for F16 / BF16 weights) as ggml rounds them,
    // and every matmul summed in the order of the kernel llama.cpp takes for it on an AVX-512 x86
    // CPU (kernels/src/cpu: legacy.rs for `ggml_vec_dot_<fmt>_q8_<0|1>`, which its tinyBLAS
    // prefill of Q8_0 and Q5_0 shares; repacked.rs and repacked_k.rs for the Q4_0, Q4_K and Q2_K
    // matrices it repacks; kquants.rs for `ggml_vec_dot_q<n>_K_q8_K` below 8 rows and tiled_k.rs
    // for its tiled K-quant matmul from 8; float.rs and bf16.rs for `vec_dot_f32/f16/bf16` and
    // tinyBLAS), the same bits on every instruction set; and the layer operations likewise
    // (kernels/src/cpu/ggml_ops.rs). wgpu keeps activations f32 for every type: within 2.5e-6 of
    // llama.cpp's f32 run (measured), checked against the bound below.
    let reference = read_json("synthetic/synthetic.json");
    let prompt = ids(&reference["prompt_tokens"]);
    for (name, device) in devices() {
        let cpu = matches!(name, DeviceName::Flex | DeviceName::NdArray);
        for (ty, entry) in reference["types"].as_object().unwrap() {
            let file = GgufFile::open(root().join(entry["model"].as_str().unwrap())).unwrap();
            let model = Llama::from_gguf_with_weights(&file, &device, weights).unwrap();
            let mut cache = model.new_cache_with(1, prompt.len(), CacheTypes::F32);
            let ours = to_vec(
                model
                    .forward(token_tensor(&prompt, &device), &mut cache)
                    .unwrap(),
            );

            let f32_ref = if ty == "F32" {
                "logits-F32.npy".to_string()
            } else {
                format!("logits-{ty}-f32deq.npy")
            };
            let (shape, f32_logits) = read_npy(&fixture(&format!("synthetic/{f32_ref}")));
            assert_eq!(shape, vec![prompt.len(), 512]);
            let vs_f32 = compare(&ours, &f32_logits);
            if f32_exact && cpu {
                assert_bits_eq(
                    &format!("{name} {ty}: vs llama.cpp f32 on the same weights"),
                    &ours,
                    &f32_logits,
                );
            } else if f32_exact {
                assert!(
                    vs_f32.max_abs < 1e-3,
                    "{name} {ty}: vs llama.cpp f32 on the same weights: {vs_f32}"
                );
            }
            let (_, q_logits) = read_npy(&fixture(&format!("synthetic/logits-{ty}.npy")));
            let activation_rounding = max_abs_diff(&q_logits, &f32_logits);
            let what = format!("{name} {ty} ({weights:?}) vs llama.cpp's quantized logits");
            let vs_q = compare(&ours, &q_logits);
            eprintln!(
                "{what}: {vs_q} (vs its f32 run: {:.3e}; its f32 run is {activation_rounding:.3e} away)",
                vs_f32.max_abs
            );
            if weights == Weights::Quantized && cpu {
                assert_bits_eq(&what, &ours, &q_logits);
            }
            assert!(
                vs_q.within(activation_rounding + 1e-3),
                "{what}: {vs_q}; its own f32 run is {activation_rounding} away"
            );
        }
    }
}

#[test]
fn synthetic_models_of_every_type_match_llama_cpp_logits() {
    check_synthetic(Weights::F32, true);
}

/// With the weights kept in their GGUF blocks, the CPU devices compute as llama.cpp's CPU backend
/// does: on flex and ndarray the logits of all 13 types are llama.cpp's quantized logits bit for
/// bit (see `check_synthetic` for how), and for every type and device within the bound of
/// `check_synthetic`.
#[test]
fn synthetic_models_with_quantized_weights_match_llama_cpp_logits() {
    check_synthetic(Weights::Quantized, false);
}

#[test]
fn smollm2_prompt_tokens_raw_and_chat() {
    let Some(path) = smollm2() else { return };
    let reference = read_json("llama/smollm2.json");
    let file = GgufFile::open(&path).unwrap();
    let tokenizer = Tokenizer::from_gguf(file.metadata()).unwrap();
    for p in reference["prompts"].as_array().unwrap() {
        let text = p["prompt"].as_str().unwrap();
        let chat = p["kind"] == "chat";
        let prompt = cli::prompt_tokens(&file, &tokenizer, text, chat, None).unwrap();
        assert_eq!(
            prompt,
            ids(&p["prompt_tokens"]),
            "prompt tokens of {text:?} (chat: {chat})"
        );
    }
}

#[test]
fn smollm2_greedy_matches_llama_cpp_on_the_same_weights() {
    let Some(path) = smollm2() else { return };
    let reference = read_json("llama/smollm2.json");
    let file = GgufFile::open(&path).unwrap();
    let tokenizer = Tokenizer::from_gguf(file.metadata()).unwrap();
    for (name, device) in devices() {
        let model = Llama::from_gguf_with_weights(&file, &device, Weights::F32).unwrap();
        // All 32 reference tokens on flex; 12 on ndarray and wgpu, which run this f32 135M model
        // at a few tokens per second here (lavapipe is a software rasterizer): every prompt and
        // the prompt pass are still checked on every device, at a tenth of the suite's time.
        let n = if name == gguf_llama::device::DeviceName::Flex {
            32
        } else {
            12
        };
        for p in reference["prompts"].as_array().unwrap() {
            let text = p["prompt"].as_str().unwrap();
            let chat = p["kind"] == "chat";
            let prompt = cli::prompt_tokens(&file, &tokenizer, text, chat, None).unwrap();
            let r = &p["f32_dequantized"];
            let reference_tokens = &ids(&r["greedy_tokens"])[..n];
            let ours = forced_argmax(&model, &prompt, reference_tokens, CacheTypes::F32);
            // SmolLM2's logits are O(20); f32 summation order over 30 layers moves them by ~1e-3.
            assert_forced_greedy(
                &format!("{name} {text:?}"),
                &ours,
                reference_tokens,
                &f64s(&r["top2_gaps"]),
                0.01,
            );
        }
    }
}

/// SmolLM2's greedy answer on flex (at most 64 tokens, stopping at the end of generation) to the
/// chat prompt "What is the capital of France?" with `weights`, and llama.cpp's answer: `pick` of
/// that prompt's record in the fixture.
fn france_chat_answer(
    path: &std::path::Path,
    weights: Weights,
    pick: impl Fn(&serde_json::Value) -> &serde_json::Value,
) -> (gguf_llama::generate::Generation, serde_json::Value) {
    let reference = read_json("llama/smollm2.json");
    let p = reference["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["prompt"] == "What is the capital of France?")
        .unwrap();
    let file = GgufFile::open(path).unwrap();
    let tokenizer = Tokenizer::from_gguf(file.metadata()).unwrap();
    let device = gguf_llama::device::device(DeviceName::Flex).unwrap();
    let model = Llama::from_gguf_with_weights(&file, &device, weights).unwrap();
    let prompt = cli::prompt_tokens(
        &file,
        &tokenizer,
        "What is the capital of France?",
        true,
        None,
    )
    .unwrap();
    let config = GenerateConfig {
        max_tokens: 64,
        sampler: SamplerConfig::greedy(),
        stop_at_eog: true,
        cache: CacheTypes::F32,
    };
    let g = generate(&model, &tokenizer, &prompt, &config, &mut |_| {}).unwrap();
    (g, pick(p).clone())
}

#[test]
fn smollm2_chat_answer_as_llama_cpp_on_the_same_weights() {
    let Some(path) = smollm2() else { return };
    let (g, answer) = france_chat_answer(&path, Weights::F32, |p| {
        &p["f32_dequantized"]["full_answer"]
    });
    assert_eq!(g.text, answer["generated_text"].as_str().unwrap());
    assert_eq!(g.stop, gguf_llama::generate::StopReason::EndOfGeneration);
}

/// With the weights in their blocks (the default), the CPU devices compute what llama.cpp's CPU
/// backend computes, in its order: activations rounded to 8 bits per block as `quantize_row_q8_1`,
/// the dot products summed as `ggml_vec_dot_q4_1_q8_1` / `q8_0_q8_0`, and norm, RoPE, attention
/// and SwiGLU as ggml's (`gguf_kernels::ggml_ops`, checked op by op in tests/ggml_ops.rs). So the
/// logits of the last prompt position are llama.cpp's bit for bit, and the greedy tokens of every
/// prompt, raw and chat, are llama.cpp's (`greedy_tokens`, 32 steps, through near-ties of 0.002),
/// on flex and on ndarray. Last-bit agreement is what this takes: a single last-bit difference
/// moves an activation across a rounding boundary of its 8-bit quantization, and 30 layers amplify
/// that to logit differences of 0.5 to 1.2 (measured before the orders were ggml's).
///
/// Our CPU kernels compute in the order of llama.cpp's AVX-512 build on every CPU (the portable,
/// AVX2 and AVX-512 code of each kernel give the same bits; tests/ggml_vec_dot.rs,
/// tests/ggml_ops.rs), so this holds on any machine, not only on one like the fixtures'.
#[test]
fn smollm2_quantized_greedy_matches_llama_cpp() {
    let Some(path) = smollm2() else { return };
    let reference = read_json("llama/smollm2.json");
    let prompts = reference["prompts"].as_array().unwrap();
    let file = GgufFile::open(&path).unwrap();
    let tokenizer = Tokenizer::from_gguf(file.metadata()).unwrap();
    for name in [DeviceName::Flex, DeviceName::NdArray] {
        let device = gguf_llama::device::device(name).unwrap();
        let model = Llama::from_gguf_with_weights(&file, &device, Weights::Quantized).unwrap();
        for (i, p) in prompts.iter().enumerate() {
            let text = p["prompt"].as_str().unwrap();
            let chat = p["kind"] == "chat";
            let prompt = cli::prompt_tokens(&file, &tokenizer, text, chat, None).unwrap();
            let reference_tokens = ids(&p["greedy_tokens"]);
            let what = format!("{name} quantized {text:?}");
            let mut cache = model.new_cache_with(1, prompt.len(), CacheTypes::F32);
            let logits = model
                .forward_ids(&prompt, 1, &mut cache, Logits::Last)
                .unwrap();
            let (_, want) = read_npy(&fixture(&format!("llama/smollm2-logits-p{i}.npy")));
            assert_bits_eq(
                &format!("{what}: last prompt logits vs llama.cpp's"),
                &to_vec(logits),
                &want,
            );
            let config = greedy(reference_tokens.len());
            let g = generate(&model, &tokenizer, &prompt, &config, &mut |_| {}).unwrap();
            assert_eq!(g.tokens, reference_tokens, "{what}: greedy tokens");
        }
    }
}

/// The chat line of the Llama issue on the file as it is (quantized weights, the default): SmolLM2
/// asked "What is the capital of France?" greedily answers what llama.cpp answers for the same
/// file (`full_answer`: its 64 greedy tokens, "L'Étoile, la Marseillaise, ..."), as
/// `cargo run --release --example generate -- --model <SmolLM2> --chat --prompt "What is the
/// capital of France?" --temp 0` prints. Bit-for-bit numerics make this hold (see
/// [`smollm2_quantized_greedy_matches_llama_cpp`]); the first step is itself a near-tie (0.057).
#[test]
fn smollm2_chat_answer_as_llama_cpp_quantized() {
    let Some(path) = smollm2() else { return };
    let (g, answer) = france_chat_answer(&path, Weights::Quantized, |p| &p["full_answer"]);
    let reference_tokens = ids(&answer["greedy_tokens"]);
    assert_eq!(g.tokens, reference_tokens);
    assert_eq!(g.text, answer["generated_text"].as_str().unwrap());
}
