//! The layer operations the CPU devices compute in ggml's order (RMS norm, RoPE, attention over
//! the KV cache, SwiGLU) give llama.cpp's own outputs bit for bit when fed llama.cpp's own inputs.
//!
//! Expected values: tests/fixtures/ggml_ops/, written by `python3 scripts/make_ggml_ops_fixtures.py`
//! (llama.cpp through llama-cpp-python, its eval callback, layer 0 of stories260K and of
//! SmolLM2-135M-Instruct Q4_1, a prefill of several tokens and a one-token decoding step; versions
//! in the manifest). No tolerance: the point of these operations is that they are ggml's.

mod common;

use std::path::PathBuf;

use burn::tensor::{Device, Int, Tensor, TensorData};
use common::{read_json, read_npy, to_vec};
use gguf_kernels::ggml_ops::{self, CacheElem};
use gguf_llama::device::{self, DeviceName};
use gguf_llama::model::{Rope, RopeConfig, RopeStyle};

/// The CPU devices (the ones these operations run on).
fn cpu_devices() -> Vec<(DeviceName, Device)> {
    [DeviceName::Flex, DeviceName::NdArray]
        .into_iter()
        .map(|name| {
            (
                name,
                device::device(name).expect("CPU devices always exist"),
            )
        })
        .collect()
}

struct Case {
    name: &'static str,
    dir: PathBuf,
    hp: serde_json::Value,
}

fn cases() -> Vec<Case> {
    let manifest = read_json("ggml_ops/manifest.json");
    ["stories260k", "smollm2"]
        .into_iter()
        .map(|name| Case {
            name,
            dir: common::fixture("ggml_ops").join(name),
            hp: manifest["models"][name].clone(),
        })
        .collect()
}

fn load(dir: &std::path::Path, name: &str) -> (Vec<usize>, Vec<f32>) {
    read_npy(&dir.join(format!("{name}.npy")))
}

fn tensor<const D: usize>(shape: &[usize], data: Vec<f32>, device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(data, shape.to_vec()), device)
}

/// Asserts bit equality, naming the first element that differs.
fn assert_bits(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let diff = got
        .iter()
        .zip(want)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    if let Some(i) = got
        .iter()
        .zip(want)
        .position(|(a, b)| a.to_bits() != b.to_bits())
    {
        panic!(
            "{what}: {diff} of {} elements differ from llama.cpp's; first at {i}: {} vs {}",
            got.len(),
            got[i],
            want[i]
        );
    }
}

#[test]
fn rms_norm_is_llama_cpps() {
    for case in cases() {
        for dir in [case.dir.clone(), case.dir.join("decode")] {
            let (shape, x) = load(&dir, "embd");
            let (_, w) = load(&dir, "attn_norm_w");
            let (_, want) = load(&dir, "attn_norm");
            let eps = case.hp["eps"].as_f64().unwrap() as f32;
            for (dev_name, device) in cpu_devices() {
                let y = ggml_ops::rms_norm(
                    tensor::<2>(&shape, x.clone(), &device),
                    tensor::<1>(&[w.len()], w.clone(), &device),
                    eps,
                );
                assert_bits(
                    &format!("{} {} rms_norm on {dev_name}", case.name, dir.display()),
                    &to_vec(y),
                    &want,
                );
            }
        }
    }
}

#[test]
fn rope_is_llama_cpps() {
    for case in cases() {
        let n_tokens = case.hp["tokens"].as_array().unwrap().len();
        for (dir, start) in [
            (case.dir.clone(), 0),
            (case.dir.join("decode"), n_tokens - 1),
        ] {
            for (pre, post) in [("q_pre", "q"), ("k_pre", "k")] {
                let (shape, x) = load(&dir, pre);
                let (_, want) = load(&dir, post);
                let [seq, heads, head_dim] = shape[..] else {
                    panic!("{pre}: {shape:?}")
                };
                let rope = Rope::new(
                    &RopeConfig {
                        style: RopeStyle::Adjacent,
                        dimension_count: head_dim,
                        freq_base: case.hp["freq_base"].as_f64().unwrap() as f32,
                        freq_scale: 1.0,
                        attn_factor: 1.0,
                        ext_factor: 0.0,
                        yarn_beta: (32.0, 1.0),
                        original_context_length: 4096,
                    },
                    None,
                )
                .unwrap();
                for (dev_name, device) in cpu_devices() {
                    let tables = rope.tables(start, seq, &device);
                    let x = tensor::<4>(&[1, seq, heads, head_dim], x.clone(), &device);
                    assert_bits(
                        &format!(
                            "{} {} RoPE of {pre} on {dev_name}",
                            case.name,
                            dir.display()
                        ),
                        &to_vec(rope.apply(x, &tables)),
                        &want,
                    );
                }
            }
        }
    }
}

/// How a cache tensor lays out its positions.
#[derive(Clone, Copy)]
enum Layout {
    /// `[1, heads, capacity, d]`: the key cache.
    Rows,
    /// `[1, heads, d, capacity]`: the value cache of the CPU devices (transposed).
    Columns,
}

/// `[n, heads, d]` rows as a cache tensor of `elem` and `capacity` positions in `layout` (its
/// bits, as the CPU devices cache them), the positions past `n` NaN (they must never be read).
fn cache(
    rows: &[f32],
    [n, heads, d, capacity]: [usize; 4],
    layout: Layout,
    elem: CacheElem,
    device: &Device,
) -> Tensor<4, Int> {
    let mut data = vec![f32::NAN; heads * capacity * d];
    for p in 0..n {
        for h in 0..heads {
            for (e, &v) in rows[(p * heads + h) * d..][..d].iter().enumerate() {
                let at = match layout {
                    Layout::Rows => (h * capacity + p) * d + e,
                    Layout::Columns => (h * d + e) * capacity + p,
                };
                data[at] = v;
            }
        }
    }
    let shape = match layout {
        Layout::Rows => [1, heads, capacity, d],
        Layout::Columns => [1, heads, d, capacity],
    };
    ggml_ops::cache_bits(tensor::<4>(&shape, data, device), elem)
}

#[test]
fn attention_is_llama_cpps() {
    for case in cases() {
        let n_tokens = case.hp["tokens"].as_array().unwrap().len();
        // Prefill: every position attends to itself and those before; then the one-token step.
        for (dir, k_name, v_name) in [
            (case.dir.clone(), "k", "v"),
            (case.dir.join("decode"), "k_all", "v_all"),
        ] {
            let (q_shape, q) = load(&dir, "q");
            let (k_shape, k) = load(&dir, k_name);
            let (v_shape, v) = load(&dir, v_name);
            let [seq, n_head, dk] = q_shape[..] else {
                panic!("q: {q_shape:?}")
            };
            let [n, n_kv, _] = k_shape[..] else {
                panic!("k: {k_shape:?}")
            };
            let dv = v_shape[2];
            assert_eq!(n, n_tokens);
            let scale = 1.0 / (dk as f32).sqrt();
            // llama.cpp's F32 cache and its default F16 cache (keys and values rounded to f16 as
            // they are stored; queries and softmax weights rounded by its matmuls).
            for (elem, out_name) in [(CacheElem::F32, "kqv_out"), (CacheElem::F16, "kqv_out_f16")] {
                let (_, want) = load(&dir, out_name);
                for (dev_name, device) in cpu_devices() {
                    let capacity = n + 7;
                    let out = ggml_ops::attention(
                        tensor::<4>(&[1, seq, n_head, dk], q.clone(), &device),
                        cache(&k, [n, n_kv, dk, capacity], Layout::Rows, elem, &device),
                        cache(&v, [n, n_kv, dv, capacity], Layout::Columns, elem, &device),
                        n - seq,
                        scale,
                        None,
                    );
                    assert_bits(
                        &format!(
                            "{} {} attention over an {elem:?} cache on {dev_name}",
                            case.name,
                            dir.display()
                        ),
                        &to_vec(out),
                        &want,
                    );
                }
            }
        }
    }
}

#[test]
fn swiglu_is_llama_cpps() {
    for case in cases() {
        for dir in [case.dir.clone(), case.dir.join("decode")] {
            let (shape, g) = load(&dir, "ffn_gate");
            let (_, u) = load(&dir, "ffn_up");
            let (_, want) = load(&dir, "ffn_swiglu");
            for (dev_name, device) in cpu_devices() {
                let y = ggml_ops::swiglu(
                    tensor::<2>(&shape, g.clone(), &device),
                    tensor::<2>(&shape, u.clone(), &device),
                );
                assert_bits(
                    &format!("{} {} swiglu on {dev_name}", case.name, dir.display()),
                    &to_vec(y),
                    &want,
                );
            }
        }
    }
}
