//! Shared by the integration tests: fixtures, devices, models that are fetched rather than
//! committed, and the CI rule that a missing device or model fails instead of skipping.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use gguf_llama::device::{self, DeviceName};
#[allow(unused_imports)] // not every test makes token tensors
pub use gguf_llama::generate::token_tensor;
use gguf_llama::gguf::{npy, GgufFile};

pub mod ci;
pub mod compare;
pub mod families;
pub mod greedy;
#[allow(unused_imports)] // each test binary uses some of them
pub use ci::{missing, required};
#[allow(unused_imports)]
pub use compare::{assert_bits_eq, assert_close, compare, max_abs, max_abs_diff};

pub fn root() -> PathBuf {
    PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    )
}

pub fn fixture(path: &str) -> PathBuf {
    root().join("tests/fixtures").join(path)
}

/// A fresh path for `name` in `dir` of the tests' temporary directory (any file there removed).
pub fn temp(dir: &str, name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

/// Opens a GGUF file, panicking with its path.
pub fn open(path: &Path) -> GgufFile {
    GgufFile::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn read_json(path: &str) -> serde_json::Value {
    serde_json::from_reader(
        std::fs::File::open(fixture(path)).unwrap_or_else(|e| panic!("{path}: {e}")),
    )
    .unwrap()
}

pub fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    npy::read_f32(
        &mut std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// The devices the parity tests run on: flex, ndarray, and wgpu when an adapter is there.
pub fn devices() -> Vec<(DeviceName, Device)> {
    let mut out = Vec::new();
    for name in [DeviceName::Flex, DeviceName::NdArray, DeviceName::Wgpu] {
        match device::device(name) {
            Ok(d) => out.push((name, d)),
            Err(e) => {
                let _: Option<()> = missing(&format!("device {name}: {e}"));
            }
        }
    }
    out
}

/// SmolLM2-135M-Instruct Q4_1: $GGUF_LLAMA_SMOLLM2, or where .ci/run puts it.
pub fn smollm2() -> Option<PathBuf> {
    let path = std::env::var_os("GGUF_LLAMA_SMOLLM2")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join(".cache/gguf-llama/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    if path.exists() {
        Some(path)
    } else {
        missing(&format!(
            "SmolLM2 model not found at {} (set GGUF_LLAMA_SMOLLM2 or run .ci/run)",
            path.display()
        ))
    }
}

/// `SmolLM2-135M-Instruct.{name}.gguf` as llama.cpp's quantizer writes it from the F32 twin of the
/// SmolLM2 file: $GGUF_LLAMA_MODELS/bench/, or where .ci/run puts it
/// (`scripts/make_iquant_models.py` writes the ones of the i-quants).
pub fn smollm2_variant(name: &str) -> Option<PathBuf> {
    let models = std::env::var_os("GGUF_LLAMA_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join(".cache/gguf-llama/models")
        });
    let path = models.join(format!("bench/SmolLM2-135M-Instruct.{name}.gguf"));
    if path.exists() {
        Some(path)
    } else {
        missing(&format!(
            "{} not found (python3 scripts/make_iquant_models.py writes it; .ci/run runs that)",
            path.display()
        ))
    }
}

/// Gemma 3 270M Q4_K_M (llama.cpp's `gemma3` architecture): $GGUF_LLAMA_GEMMA3, or where
/// .ci/run puts it.
pub fn gemma3() -> Option<PathBuf> {
    let path = std::env::var_os("GGUF_LLAMA_GEMMA3")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join(".cache/gguf-llama/models/gemma/gemma-3-270m-q4_k_m.gguf")
        });
    if path.exists() {
        Some(path)
    } else {
        missing(&format!(
            "Gemma 3 270M not found at {} (set GGUF_LLAMA_GEMMA3 or run .ci/run)",
            path.display()
        ))
    }
}

pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().expect("f32 tensor")
}

/// The index of the largest element (the first of equal ones), as llama.cpp's greedy argmax.
pub fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}

/// Greedy decoding forced along `reference` (llama.cpp's greedy tokens): the prompt in one pass,
/// then each reference token in a pass of its own, as llama.cpp computed them; at every step our
/// argmax of the logits before that reference token. A near-tie where we pick another token
/// thus leaves the following steps comparable.
pub fn forced_argmax(
    model: &gguf_llama::model::Llama,
    prompt: &[u32],
    reference: &[u32],
    cache: gguf_llama::model::CacheTypes,
) -> Vec<u32> {
    use gguf_llama::model::Logits;
    let mut kv = model.new_cache_with(1, prompt.len() + reference.len(), cache);
    let mut logits = to_vec(model.forward_ids(prompt, 1, &mut kv, Logits::Last).unwrap());
    let mut out = Vec::with_capacity(reference.len());
    for (step, &token) in reference.iter().enumerate() {
        out.push(argmax(&logits));
        if step + 1 < reference.len() {
            logits = to_vec(
                model
                    .forward_ids(&[token], 1, &mut kv, Logits::Last)
                    .unwrap(),
            );
        }
    }
    out
}

/// Panics unless our forced greedy choices ([`forced_argmax`]) equal llama.cpp's `reference` at
/// every step, except at steps where llama.cpp's top-2 gap (`gaps`) is below `tie` (there f32
/// summation order may flip the argmax). Returns how many such near-tie steps differed.
#[track_caller]
pub fn assert_forced_greedy(
    what: &str,
    ours: &[u32],
    reference: &[u32],
    gaps: &[f64],
    tie: f64,
) -> usize {
    assert_eq!(ours.len(), reference.len(), "{what}: steps");
    let mut flipped = 0;
    for (step, (a, b)) in ours.iter().zip(reference).enumerate() {
        if a != b {
            assert!(
                gaps[step] < tie,
                "{what}: step {step} picks {a}, llama.cpp {b}, and its top-2 gap {} is no near-tie (< {tie})\nours:      {ours:?}\nllama.cpp: {reference:?}",
                gaps[step]
            );
            eprintln!(
                "{what}: near-tie step {step} (gap {}) picks {a}, llama.cpp {b}",
                gaps[step]
            );
            flipped += 1;
        }
    }
    flipped
}

/// A JSON array of numbers.
pub fn f64s(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// The examples built by `cargo test`: `target/<profile>/examples/`, beside the directory of this
/// test binary (`target/<profile>/deps/`).
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let path = profile
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: run `cargo test --release` (which builds the examples) or \
         `cargo build --release --examples` first",
        path.display()
    );
    path
}
