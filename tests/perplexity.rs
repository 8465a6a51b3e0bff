//! Perplexity against llama.cpp's `perplexity` tool.
//!
//! Reference: tests/fixtures/perplexity/reference.json, written by
//! `python3 scripts/perplexity_reference.py` (llama-cpp-python 0.3.36 = llama.cpp 0c1e57098,
//! tokenization by llama.cpp, perplexity.cpp's windowing and scoring over llama.cpp's logits in
//! float64, F32 KV cache, flash attention off) on tests/fixtures/perplexity/grimm-three-tales.txt.

// common re-exports `token_tensor` for the other tests; this one has no use for it.
#[allow(unused_imports)]
mod common;

use common::*;
use gguf_llama::cli;
use gguf_llama::device::DeviceName;
use gguf_llama::gguf::GgufFile;
use gguf_llama::model::{CacheTypes, Llama, Weights};
use gguf_llama::perplexity::{
    self, perplexity_of_text, Perplexity, PerplexityConfig, PerplexityError,
};
use gguf_llama::tokenizer::Tokenizer;
use gguf_llama::Error;

fn text() -> String {
    std::fs::read_to_string(fixture("perplexity/grimm-three-tales.txt")).unwrap()
}

fn reference(case: &str) -> serde_json::Value {
    read_json("perplexity/reference.json")["cases"][case].clone()
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

/// FNV-1a (64-bit) of the ids as little-endian u32 bytes, as the script writes `tokens_fnv1a64`.
fn fnv1a64(ids: &[u32]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in ids.iter().flat_map(|t| t.to_le_bytes()) {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Our tokens are llama.cpp's (count, first 16, hash of all), so any difference left is the model's.
fn check_tokens(what: &str, tokens: &[u32], r: &serde_json::Value) {
    assert_eq!(
        tokens.len() as u64,
        r["n_tokens"].as_u64().unwrap(),
        "{what}: token count"
    );
    assert_eq!(
        &tokens[..16],
        &ids(&r["tokens_head"])[..],
        "{what}: first tokens"
    );
    assert_eq!(
        fnv1a64(tokens),
        r["tokens_fnv1a64"].as_str().unwrap(),
        "{what}: token hash"
    );
}

/// How close to llama.cpp's perplexity a run must be, each relative: the final perplexity, every
/// window's running perplexity (llama.cpp's `[i]` lines: the early ones average few tokens, so
/// they move more) and the final standard error.
struct Bounds {
    ppl: f64,
    running: f64,
    stderr: f64,
}

/// Checks `ours` against the reference: window and token counts, the final perplexity, every
/// running perplexity and the standard error (a function of the same per-token nll) within
/// `bounds`, and the final one within the 1%.
fn check_against(what: &str, ours: &Perplexity, r: &serde_json::Value, bounds: Bounds) {
    assert_eq!(
        ours.n_windows as u64,
        r["n_windows"].as_u64().unwrap(),
        "{what}: windows"
    );
    assert_eq!(
        ours.scored_tokens as u64,
        r["scored_tokens"].as_u64().unwrap(),
        "{what}: scored tokens"
    );
    let expected = floats(&r["running_ppl"]);
    assert_eq!(
        ours.running_ppl.len(),
        expected.len(),
        "{what}: running values"
    );
    let worst = ours
        .running_ppl
        .iter()
        .zip(&expected)
        .map(|(a, b)| rel(*a, *b))
        .fold(0f64, f64::max);
    let ppl = r["ppl"].as_f64().unwrap();
    let d = rel(ours.ppl, ppl);
    let se = r["ppl_stderr"].as_f64().unwrap();
    let ours_se = ours.ppl_stderr.expect("positive variance");
    let d_se = rel(ours_se, se);
    eprintln!(
        "{what}: ppl {:.6} vs llama.cpp {ppl:.6}: relative {d:.2e} (worst running {worst:.2e}, standard error {d_se:.2e}), {:.0} tok/s",
        ours.ppl,
        ours.tokens_per_s()
    );
    assert!(
        d < 0.01,
        "{what}: ppl {} is not within 1% of llama.cpp's {ppl}",
        ours.ppl
    );
    // `<=` fails on NaN; `worst` (a fold with f64::max, which drops NaN) is checked for
    // non-finite running values separately.
    assert!(
        d <= bounds.ppl,
        "{what}: ppl {} vs llama.cpp {ppl}: relative {d:.2e}, above {:.0e}",
        ours.ppl,
        bounds.ppl
    );
    assert!(
        worst <= bounds.running && ours.running_ppl.iter().all(|p| p.is_finite()),
        "{what}: worst running ppl relative {worst:.2e}, above {:.0e}",
        bounds.running
    );
    assert!(
        d_se <= bounds.stderr,
        "{what}: standard error {ours_se} vs llama.cpp {se}: relative {d_se:.2e}, above {:.0e}",
        bounds.stderr
    );
}

/// stories260K is F32 and our forward pass is f32 throughout: its logits agree with llama.cpp's
/// to ~1e-5 (tests/parity.rs; logits here are O(10)). A change of δ in every logit moves each
/// token's nll by at most 2δ, so the perplexity by a relative ~2δ at worst; over 7875 scored
/// tokens the differences, of either sign, average out far below that. Asserted on every device:
/// the final perplexity within 1e-7 relative, every window's running value within 1e-6, the
/// standard error within 2e-7 (and the 1%). Measured (AVX-512 x86, wgpu on lavapipe):
/// final 5.5e-8 on flex and ndarray, 4.1e-8 on wgpu; worst running 4.2e-7 (flex, ndarray),
/// 1.9e-7 (wgpu); standard error 8.4e-8 (flex, ndarray), 6.0e-8 (wgpu).
#[test]
fn stories260k_matches_llama_cpp_on_every_device() {
    let r = reference("stories260k");
    let file = cli::open_model(None).unwrap();
    let tokenizer = Tokenizer::from_gguf(file.metadata()).unwrap();
    let text = text();
    check_tokens(
        "stories260k",
        &perplexity::tokenize(&tokenizer, &text).unwrap(),
        &r,
    );
    let config = PerplexityConfig {
        n_ctx: r["n_ctx"].as_u64().unwrap() as usize,
        batch: 16,
        max_windows: None,
        cache: CacheTypes::F32,
    };
    for (name, device) in devices() {
        let model = Llama::from_gguf(&file, &device).unwrap();
        let mut calls = 0;
        let ours = perplexity_of_text(&model, &tokenizer, &text, &config, &mut |p| {
            calls += 1;
            assert_eq!(p.window, calls, "{name}: progress in window order");
            assert_eq!(p.tokens_evaluated, calls * config.n_ctx);
        })
        .unwrap();
        assert_eq!(
            calls, ours.n_windows,
            "{name}: one progress call per window"
        );
        let bounds = Bounds {
            ppl: 1e-7,
            running: 1e-6,
            stderr: 2e-7,
        };
        check_against(&format!("stories260k {name}"), &ours, &r, bounds);
    }
}

/// Windows are independent: batching changes only the f32 summation order inside the matmuls,
/// so the perplexity must agree to ~1e-6 relative (1e-7 rounding of logits that are O(10),
/// through exp/log), whatever the batch and with a smaller last batch (20 windows in passes of 7:
/// 7 + 7 + 6); measured: bit-identical on flex, ndarray and wgpu (lavapipe), but only the 1e-6 is
/// asserted, since a backend may tile its matmuls by the number of rows. With `max_windows`, the
/// result is llama.cpp's `--chunks` (its running value after that many windows).
#[test]
fn batched_and_unbatched_give_the_same_perplexity() {
    let r = reference("stories260k");
    let running = floats(&r["running_ppl"]);
    let file = cli::open_model(None).unwrap();
    let tokenizer = Tokenizer::from_gguf(file.metadata()).unwrap();
    let text = text();
    let n_ctx = r["n_ctx"].as_u64().unwrap() as usize;
    for (name, device) in devices() {
        let model = Llama::from_gguf(&file, &device).unwrap();
        let run = |batch: usize| {
            let config = PerplexityConfig {
                n_ctx,
                batch,
                max_windows: Some(20),
                cache: CacheTypes::F32,
            };
            perplexity_of_text(&model, &tokenizer, &text, &config, &mut |_| {}).unwrap()
        };
        let one = run(1);
        assert_eq!(one.n_windows, 20);
        for batch in [7, 20, 64] {
            let b = run(batch);
            assert_eq!(b.n_windows, 20, "{name} batch {batch}");
            for (w, (x, y)) in b.running_ppl.iter().zip(&one.running_ppl).enumerate() {
                assert!(
                    rel(*x, *y) < 1e-6,
                    "{name}: window {} batch {batch} {x} vs unbatched {y}",
                    w + 1
                );
            }
        }
        // llama.cpp's running value after 20 windows is its result with --chunks 20: within the
        // running bound of `stories260k_matches_llama_cpp_on_every_device` (measured: 7.6e-8 on
        // flex and ndarray, 4.3e-8 on wgpu).
        let d = rel(one.ppl, running[19]);
        eprintln!("{name}: 20 windows, relative {d:.2e} from llama.cpp's --chunks 20");
        assert!(
            d <= 1e-6,
            "{name}: 20 windows {} vs llama.cpp {}",
            one.ppl,
            running[19]
        );
    }
}

fn expect_err(what: &str, got: Result<Perplexity, Error>, expected: PerplexityError) {
    match got {
        Err(Error::Perplexity(e)) => assert_eq!(e, expected, "{what}"),
        other => panic!("{what}: expected {expected:?}, got {other:?}"),
    }
}

#[test]
fn bad_configurations_are_typed_errors() {
    let file = cli::open_model(None).unwrap();
    let tokenizer = Tokenizer::from_gguf(file.metadata()).unwrap();
    let device = gguf_llama::device::device(DeviceName::Flex).unwrap();
    let model = Llama::from_gguf(&file, &device).unwrap();
    let tokens: Vec<u32> = (0..300).map(|i| 10 + i % 400).collect();
    let run = |n_ctx: usize, batch: usize, max_windows: Option<usize>, tokens: &[u32]| {
        let config = PerplexityConfig {
            n_ctx,
            batch,
            max_windows,
            cache: CacheTypes::F32,
        };
        perplexity::perplexity(&model, tokens, Some(1), &config, &mut |_| {})
    };

    // 300 tokens hold 2 windows of 150 but not of 151.
    expect_err(
        "text too short",
        run(151, 1, None, &tokens),
        PerplexityError::TextTooShort {
            n_tokens: 300,
            n_ctx: 151,
            needed: 302,
        },
    );
    expect_err(
        "n_ctx 2 scores nothing",
        run(2, 1, None, &tokens),
        PerplexityError::ContextTooSmall { n_ctx: 2, min: 3 },
    );
    expect_err(
        "n_ctx 0",
        run(0, 1, None, &tokens),
        PerplexityError::ContextTooSmall { n_ctx: 0, min: 3 },
    );
    // stories260K's llama.context_length is 512.
    expect_err(
        "n_ctx above the model's context",
        run(513, 1, None, &tokens),
        PerplexityError::ContextTooLarge {
            n_ctx: 513,
            context_length: 512,
        },
    );
    expect_err(
        "batch 0",
        run(100, 0, None, &tokens),
        PerplexityError::Zero { what: "batch" },
    );
    expect_err(
        "max_windows 0",
        run(100, 1, Some(0), &tokens),
        PerplexityError::Zero {
            what: "max_windows",
        },
    );
    // A token outside the vocabulary, before anything runs.
    let mut bad = tokens.clone();
    bad[205] = 512;
    expect_err(
        "token outside the vocabulary",
        run(100, 1, None, &bad),
        PerplexityError::TokenOutOfVocab {
            index: 205,
            token: 512,
            n_vocab: 512,
        },
    );
    // The smallest window works: 3 tokens, one scored per window.
    let ok = run(3, 4, None, &tokens).unwrap();
    assert_eq!((ok.n_windows, ok.scored_tokens), (100, 100));
    assert!(ok.ppl.is_finite() && ok.ppl > 1.0);
    // A text from the tokenizer: too short by the same rule.
    let config = PerplexityConfig::new(128);
    let got = perplexity_of_text(&model, &tokenizer, "Once upon a time", &config, &mut |_| {});
    assert!(
        matches!(
            got,
            Err(Error::Perplexity(PerplexityError::TextTooShort {
                needed: 256,
                n_ctx: 128,
                ..
            }))
        ),
        "{got:?}"
    );
}

/// SmolLM2-135M-Instruct Q4_1, its first 8 windows of 256 tokens, on flex, both weight paths:
///
/// - `Weights::F32` (dequantized at load, f32 math) against llama.cpp on the same weights
///   dequantized to F32 (`f32_dequantized` in the fixture): f32 on both sides, only summation
///   order differs. SmolLM2's logits are O(20) and agree to ~1e-3 at worst over 30 layers
///   (tests/parity.rs), far less on most positions; the per-token nll moves by at most twice the
///   logit difference and the mean over 1016 tokens averages the differences out. Measured: final
///   7.7e-10 relative, worst running 1.5e-7, standard error 1.7e-8.
/// - `Weights::Quantized` (the default) against llama.cpp's run on the Q4_1 file itself: on the
///   CPU devices both round activations to 8 bits per block, in ggml's order of float operations
///   (tests/parity.rs: llama.cpp's last-position logits bit for bit), so the logits differ at most
///   in their last bits (a prefill matmul need not sum in ggml's order, kernels/src/cpu/legacy.rs,
///   e.g. the tied Q8_0 output). Measured: final
///   1.7e-8 relative, worst running 1.2e-7, standard error 1.2e-8 (llama.cpp's own activation
///   rounding moves its perplexity by 6.6e-4: 16.3980 quantized vs 16.3872 on the dequantized
///   weights).
///
/// Asserted for both: the final perplexity and the standard error within 1e-7 relative, every
/// running value within 1e-6 (and the 1%).
#[test]
fn smollm2_matches_llama_cpp_on_flex() {
    let Some(path) = smollm2() else { return };
    let r = reference("smollm2");
    let file = GgufFile::open(&path).unwrap();
    let tokenizer = Tokenizer::from_gguf(file.metadata()).unwrap();
    let text = text();
    check_tokens(
        "smollm2",
        &perplexity::tokenize(&tokenizer, &text).unwrap(),
        &r,
    );
    let device = gguf_llama::device::device(DeviceName::Flex).unwrap();
    let config = PerplexityConfig {
        n_ctx: r["n_ctx"].as_u64().unwrap() as usize,
        batch: 2,
        max_windows: r["chunks"].as_u64().map(|c| c as usize),
        cache: CacheTypes::F32,
    };

    let model = Llama::from_gguf_with_weights(&file, &device, Weights::F32).unwrap();
    let ours = perplexity_of_text(&model, &tokenizer, &text, &config, &mut |_| {}).unwrap();
    let bounds = || Bounds {
        ppl: 1e-7,
        running: 1e-6,
        stderr: 1e-7,
    };
    check_against("smollm2 flex f32", &ours, &r["f32_dequantized"], bounds());
    drop(model);

    let model = Llama::from_gguf_with_weights(&file, &device, Weights::Quantized).unwrap();
    let ours = perplexity_of_text(&model, &tokenizer, &text, &config, &mut |_| {}).unwrap();
    check_against("smollm2 flex quantized", &ours, &r, bounds());
}
