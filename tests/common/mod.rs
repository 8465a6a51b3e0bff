//! Shared by the integration tests: fixtures, devices, models that are fetched rather than
//! committed, and the CI rule that a missing device or model fails instead of skipping.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use gguf_llama::device::{self, DeviceName};
#[allow(unused_imports)] // not every test makes token tensors
pub use gguf_llama::generate::token_tensor;
use gguf_llama::gguf::{npy, GgufFile};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
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

/// Under CI (or GGUF_LLAMA_REQUIRE_ALL), a missing device or model is a failure.
pub fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var_os("GGUF_LLAMA_REQUIRE_ALL").is_some()
}

/// Skips (returns None after a message) or, under CI, panics.
pub fn missing<T>(what: &str) -> Option<T> {
    if required() {
        panic!("{what} (required under CI)");
    }
    eprintln!("SKIPPED: {what}");
    None
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

pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().expect("f32 tensor")
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}
