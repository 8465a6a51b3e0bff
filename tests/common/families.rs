//! The family test files: SmolLM2-135M-Instruct (llama) rewritten as `qwen2`, `qwen3`, `phi3` or
//! `qwen2-yarn` (qwen2 with YaRN rope scaling), the same files that scripts/make_family_fixtures.py
//! writes with gguf-py (its docstring has the whole recipe; tests/fixtures/families/families.json
//! records their digests). Only `gguf_importer`'s API is used, so the importer's tests include this
//! file by path and the root crate's tests through `common`.
//!
//! - Metadata: `general.architecture` = the family, every `llama.*` key renamed `{family}.*` in
//!   place with its value, `tokenizer.chat_template` = the bytes of the family's template file
//!   ([`template_file`], in tests/fixtures/families/), every other key unchanged and in place.
//! - Tensors: the source's, in its order, bytes copied, except the rows of `blk.{i}.attn_q.weight`
//!   and `attn_k.weight`, un-permuted ([`unpermute_rows`]) for NEOX RoPE; after a layer's
//!   `attn_{q,k,v}.weight` (qwen2) its F32 bias, after `attn_{q,k}.weight` (qwen3) its F32
//!   `attn_{q,k}_norm.weight`, with the deterministic values of [`det`] and the seeds of [`seed`].
//! - `phi3` (as convert_hf_to_gguf.py's Phi3MiniModel writes a LongRoPE model, as
//!   llama.cpp's src/models/phi3.cpp reads it): `phi3.rope.scaling.original_context_length`
//!   ([`ROPE_ORIG_CTX`], u32) right after `phi3.context_length` and `phi3.rope.scaling.attn_factor`
//!   ([`ROPE_ATTN_FACTOR`] as f32) after the last key; no `phi3.rope.scaling.type`. Tensors: first
//!   `rope_factors_long.weight` and `rope_factors_short.weight` (F32 [n_rot/2],
//!   [`det_rope_factors`]), then the source's with, per block, `attn_qkv.weight` in the place of
//!   `attn_q.weight` (the rows of attn_q and attn_k, un-permuted, then of attn_v) and
//!   `ffn_up.weight` = the rows of ffn_gate then of ffn_up (llama.cpp's `ggml_swiglu` takes the
//!   first half as the gate); no separate attn_q, attn_k, attn_v, ffn_gate.
//! - `qwen2-yarn` (a `qwen2` file, the qwen2 one with Qwen 2.5's long-context keys): the `qwen2`
//!   file's tensors and keys plus, where convert_hf_to_gguf.py writes them (after
//!   `qwen2.attention.head_count_kv`, before `qwen2.rope.freq_base`), `qwen2.rope.scaling.type` =
//!   "yarn", `qwen2.rope.scaling.factor` = [`YARN_FACTOR`] (f32) and
//!   `qwen2.rope.scaling.original_context_length` = [`YARN_ORIG_CTX`] (u32).

#![allow(dead_code)]

use std::path::Path;

use gguf_importer::{GgufFile, GgufWriter, Metadata, Value};
use sha2::{Digest, Sha256};

/// Scale of the qwen2 attention biases.
pub const BIAS_SCALE: f64 = 0.05;
/// Scale of the qwen3 q/k norm weights' deviation from 1.
pub const NORM_SCALE: f64 = 0.1;

/// Scales of phi3's rope factors' deviation from 1 (long, short).
pub const ROPE_LONG_SCALE: f64 = 0.5;
pub const ROPE_SHORT_SCALE: f64 = 0.1;
/// phi3's `rope.scaling.original_context_length`: llama.cpp takes the long factors when its
/// context exceeds it, else the short ones.
pub const ROPE_ORIG_CTX: u32 = 256;
/// phi3's `rope.scaling.attn_factor` (written as f32): the converter's LongRoPE value
/// `sqrt(1 + ln(context_length / orig) / ln(orig))` with SmolLM2's 8192 and orig 256 (sqrt(1.625)).
pub const ROPE_ATTN_FACTOR: f64 = 1.2747548783981961;

/// `qwen2-yarn`'s `rope.scaling.factor` (f32): llama.cpp's freq_scale is its inverse, 0.25.
pub const YARN_FACTOR: f32 = 4.0;
/// `qwen2-yarn`'s `rope.scaling.original_context_length` (u32; times the factor, SmolLM2's 8192).
pub const YARN_ORIG_CTX: u32 = 2048;

/// The families [`write_smollm2_as`] writes.
pub const FAMILIES: [&str; 4] = ["qwen2", "qwen3", "phi3", "qwen2-yarn"];

/// The architecture a family's file declares (`general.architecture`, the key prefix):
/// `qwen2-yarn` is a `qwen2` file.
pub fn architecture(family: &str) -> &str {
    family.strip_suffix("-yarn").unwrap_or(family)
}

/// `k` of the seed `1000 * layer + k` of each added tensor (`k` alone for the rope factors, which
/// belong to no layer: [`seed`] with layer 0).
pub const SEED_K: [(&str, u64); 7] = [
    ("attn_q.bias", 1),
    ("attn_k.bias", 2),
    ("attn_v.bias", 3),
    ("attn_q_norm.weight", 4),
    ("attn_k_norm.weight", 5),
    ("rope_factors_long.weight", 6),
    ("rope_factors_short.weight", 7),
];

/// The seed of the added tensor `name` (`attn_q.bias` ...) of `layer`: `1000 * layer + k`.
pub fn seed(layer: usize, name: &str) -> u64 {
    let k = SEED_K
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no seed for {name}"))
        .1;
    1000 * layer as u64 + k
}

/// `scale * (((i * 7919 + seed * 104729) % 2001) - 1000) / 1000.0`, integers inside, then f64
/// left to right (as numpy computes it in the script).
pub fn det(i: usize, seed: u64, scale: f64) -> f64 {
    let m = ((i as i64 * 7919 + seed as i64 * 104729) % 2001) - 1000;
    scale * m as f64 / 1000.0
}

/// `n` bias values: [`det`] with [`BIAS_SCALE`], rounded once to f32.
pub fn det_bias(n: usize, seed: u64) -> Vec<f32> {
    (0..n).map(|i| det(i, seed, BIAS_SCALE) as f32).collect()
}

/// `n` norm weights: `1 + det` with [`NORM_SCALE`], summed in f64, rounded once to f32.
pub fn det_norm(n: usize, seed: u64) -> Vec<f32> {
    (0..n)
        .map(|i| (1.0 + det(i, seed, NORM_SCALE)) as f32)
        .collect()
}

/// `n` rope factors of phi3: `1 + det` with `scale`, summed in f64, rounded once to f32.
pub fn det_rope_factors(n: usize, seed: u64, scale: f64) -> Vec<f32> {
    (0..n).map(|i| (1.0 + det(i, seed, scale)) as f32).collect()
}

/// The chat template file of `family`, in tests/fixtures/families/ (copies of llama.cpp's
/// models/templates/ files; `qwen2-yarn` has qwen2's).
pub fn template_file(family: &str) -> Result<&'static str, String> {
    if !FAMILIES.contains(&family) {
        return Err(format!("no family {family:?} (one of {FAMILIES:?})"));
    }
    match architecture(family) {
        "qwen2" => Ok("Qwen-Qwen2.5-7B-Instruct.jinja"),
        "qwen3" => Ok("Qwen-Qwen3-0.6B.jinja"),
        _ => Ok("microsoft-Phi-3.5-mini-instruct.jinja"),
    }
}

/// The rows of a q or k weight with llama.cpp converter's permutation undone: `LlamaModel.permute`
/// (convert_hf_to_gguf.py) stored HF row `h*hd + j*hd/2 + r` of head `h` (j in {0, 1}, r < hd/2)
/// at `h*hd + 2*r + j`, for llama's adjacent-pair RoPE; qwen's NEOX RoPE wants HF's order, so row
/// `h*hd + j*hd/2 + r` of the result is row `h*hd + 2*r + j` of `data`. Rows are moved whole
/// (`row_bytes` each: whole quantized blocks).
pub fn unpermute_rows(data: &[u8], n_rows: usize, row_bytes: usize, n_head: usize) -> Vec<u8> {
    assert_eq!(data.len(), n_rows * row_bytes);
    assert_eq!(n_rows % (2 * n_head), 0);
    let hd = n_rows / n_head;
    let half = hd / 2;
    let mut out = Vec::with_capacity(data.len());
    for h in 0..n_head {
        for j in 0..2 {
            for r in 0..half {
                let src = h * hd + 2 * r + j;
                out.extend_from_slice(&data[src * row_bytes..(src + 1) * row_bytes]);
            }
        }
    }
    out
}

/// The converter's permutation itself (for tests: [`unpermute_rows`] undoes it).
pub fn permute_rows(data: &[u8], n_rows: usize, row_bytes: usize, n_head: usize) -> Vec<u8> {
    let hd = n_rows / n_head;
    let half = hd / 2;
    let mut out = vec![0u8; data.len()];
    for h in 0..n_head {
        for j in 0..2 {
            for r in 0..half {
                let (dst, src) = (h * hd + 2 * r + j, h * hd + j * half + r);
                out[dst * row_bytes..(dst + 1) * row_bytes]
                    .copy_from_slice(&data[src * row_bytes..(src + 1) * row_bytes]);
            }
        }
    }
    out
}

fn get_u32(md: &Metadata, key: &str) -> Result<usize, String> {
    md.get_usize(key).map_err(|e| format!("{key}: {e}"))
}

/// Writes `dst`: the SmolLM2 file `src` (llama) as `family` ("qwen2", "qwen3", "phi3" or
/// "qwen2-yarn"), with the chat template read from `template_dir` (tests/fixtures/families/). The
/// same bytes as scripts/make_family_fixtures.py's `write_smollm2_as`.
pub fn write_smollm2_as(
    family: &str,
    src: &Path,
    template_dir: &Path,
    dst: &Path,
) -> Result<(), String> {
    let template_path = template_dir.join(template_file(family)?);
    let template = std::fs::read_to_string(&template_path)
        .map_err(|e| format!("{}: {e}", template_path.display()))?;
    let file = GgufFile::open(src).map_err(|e| format!("{}: {e}", src.display()))?;
    let md = file.metadata();
    match md.iter().next() {
        Some(("general.architecture", Value::String(a))) if a == "llama" => {}
        other => {
            return Err(format!(
                "not a llama file first keyed by its architecture: {other:?}"
            ))
        }
    }
    let n_head = get_u32(md, "llama.attention.head_count")?;
    let n_head_kv = get_u32(md, "llama.attention.head_count_kv")?;
    let n_rot = get_u32(md, "llama.rope.dimension_count")?;
    let arch = architecture(family);
    let yarn = arch != family;
    let phi3 = arch == "phi3";

    let err = |e: gguf_importer::GgufError| e.to_string();
    let mut w = GgufWriter::new();
    for (key, value) in md.iter() {
        let (key, value) = match key {
            "general.architecture" => (key.to_string(), Value::String(arch.to_string())),
            "tokenizer.chat_template" => (key.to_string(), Value::String(template.clone())),
            _ => match key.strip_prefix("llama.") {
                Some(rest) => (format!("{arch}.{rest}"), value.clone()),
                None => (key.to_string(), value.clone()),
            },
        };
        let after_ctx = phi3 && key == "phi3.context_length";
        if yarn && key == format!("{arch}.rope.freq_base") {
            // Where convert_hf_to_gguf.py writes them, in its order.
            for (k, v) in [
                ("type", Value::String("yarn".to_string())),
                ("factor", Value::F32(YARN_FACTOR)),
                ("original_context_length", Value::U32(YARN_ORIG_CTX)),
            ] {
                w.add_metadata(format!("{arch}.rope.scaling.{k}"), v)
                    .map_err(err)?;
            }
        }
        w.add_metadata(key, value).map_err(err)?;
        if after_ctx {
            w.add_metadata(
                "phi3.rope.scaling.original_context_length",
                Value::U32(ROPE_ORIG_CTX),
            )
            .map_err(err)?;
        }
    }
    if phi3 {
        w.add_metadata(
            "phi3.rope.scaling.attn_factor",
            Value::F32(ROPE_ATTN_FACTOR as f32),
        )
        .map_err(err)?;
        for (name, scale) in [
            ("rope_factors_long.weight", ROPE_LONG_SCALE),
            ("rope_factors_short.weight", ROPE_SHORT_SCALE),
        ] {
            let values = det_rope_factors(n_rot / 2, seed(0, name), scale);
            w.add_f32(name, &[values.len()], &values).map_err(err)?;
        }
    }
    // The bytes of a block tensor of the source (for the fused phi3 tensors).
    let block_tensor = |il: usize, base: &str| {
        let name = format!("blk.{il}.{base}");
        file.tensor(&name)
            .map(|t| (t, file.tensor_data(t)))
            .ok_or_else(|| format!("{}: no tensor {name}", src.display()))
    };

    for t in file.tensors() {
        let data = file.tensor_data(t);
        let mut parts = t.name.splitn(3, '.');
        let layer = match (parts.next(), parts.next(), parts.next()) {
            (Some("blk"), Some(i), Some(base)) => Some((
                i.parse::<usize>().map_err(|e| format!("{}: {e}", t.name))?,
                base,
            )),
            _ => None,
        };
        let heads = match layer {
            Some((_, "attn_q.weight")) => Some(n_head),
            Some((_, "attn_k.weight")) => Some(n_head_kv),
            _ => None,
        };
        let mut bytes = match heads {
            Some(h) => unpermute_rows(data, t.n_rows(), t.row_bytes(), h),
            None => data.to_vec(),
        };
        let mut name = t.name.clone();
        let mut shape = t.shape();
        if phi3 {
            match layer {
                // Fused into attn_qkv / ffn_up.
                Some((_, "attn_k.weight" | "attn_v.weight" | "ffn_gate.weight")) => continue,
                Some((il, "attn_q.weight")) => {
                    let (k, k_data) = block_tensor(il, "attn_k.weight")?;
                    let (v, v_data) = block_tensor(il, "attn_v.weight")?;
                    if (k.ty, k.row_len(), v.ty, v.row_len())
                        != (t.ty, t.row_len(), t.ty, t.row_len())
                    {
                        return Err(format!("blk.{il}: q, k, v differ in type or row length"));
                    }
                    bytes.extend(unpermute_rows(k_data, k.n_rows(), k.row_bytes(), n_head_kv));
                    bytes.extend_from_slice(v_data);
                    name = format!("blk.{il}.attn_qkv.weight");
                    shape = vec![t.n_rows() + k.n_rows() + v.n_rows(), t.row_len()];
                }
                Some((il, "ffn_up.weight")) => {
                    let (gate, gate_data) = block_tensor(il, "ffn_gate.weight")?;
                    if (gate.ty, gate.row_len()) != (t.ty, t.row_len()) {
                        return Err(format!("blk.{il}: ffn_gate and ffn_up differ"));
                    }
                    bytes = [gate_data, data].concat();
                    shape = vec![gate.n_rows() + t.n_rows(), t.row_len()];
                }
                _ => {}
            }
        }
        w.add_tensor(name, &shape, t.ty, bytes).map_err(err)?;
        let Some((il, base)) = layer else { continue };
        let n_out = t.ne.get(1).copied().unwrap_or(1) as usize; // rows = outputs
        let added = match (arch, base) {
            ("qwen2", "attn_q.weight" | "attn_k.weight" | "attn_v.weight") => {
                let name = base.replace(".weight", ".bias");
                let values = det_bias(n_out, seed(il, &name));
                Some((name, values))
            }
            ("qwen3", "attn_q.weight" | "attn_k.weight") => {
                let name = base.replace(".weight", "_norm.weight");
                let head_dim = n_out / heads.unwrap_or(1);
                let values = det_norm(head_dim, seed(il, &name));
                Some((name, values))
            }
            _ => None,
        };
        if let Some((name, values)) = added {
            w.add_f32(format!("blk.{il}.{name}"), &[values.len()], &values)
                .map_err(err)?;
        }
    }
    w.write_file(dst).map_err(err)
}

/// The key/value section exactly as GGUF v3 stores it: per key in order, u64 length, key bytes,
/// u32 value type, the value (arrays: u32 item type, u64 count, items). The script's
/// `metadata_sha256` hashes the same bytes from the file.
pub fn metadata_bytes(md: &Metadata) -> Vec<u8> {
    fn value(out: &mut Vec<u8>, v: &Value) {
        match v {
            Value::U8(x) => out.push(*x),
            Value::I8(x) => out.extend(x.to_le_bytes()),
            Value::U16(x) => out.extend(x.to_le_bytes()),
            Value::I16(x) => out.extend(x.to_le_bytes()),
            Value::U32(x) => out.extend(x.to_le_bytes()),
            Value::I32(x) => out.extend(x.to_le_bytes()),
            Value::F32(x) => out.extend(x.to_le_bytes()),
            Value::Bool(x) => out.push(*x as u8),
            Value::String(s) => {
                out.extend((s.len() as u64).to_le_bytes());
                out.extend(s.as_bytes());
            }
            Value::Array(t, items) => {
                out.extend((*t as u32).to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                for item in items {
                    value(out, item);
                }
            }
            Value::U64(x) => out.extend(x.to_le_bytes()),
            Value::I64(x) => out.extend(x.to_le_bytes()),
            Value::F64(x) => out.extend(x.to_le_bytes()),
        }
    }
    let mut out = Vec::new();
    for (k, v) in md.iter() {
        out.extend((k.len() as u64).to_le_bytes());
        out.extend(k.as_bytes());
        out.extend((v.value_type() as u32).to_le_bytes());
        value(&mut out, v);
    }
    out
}

/// sha256 of [`metadata_bytes`] (families.json `metadata_sha256`).
pub fn metadata_sha256(md: &Metadata) -> String {
    hex(Sha256::digest(metadata_bytes(md)))
}

/// sha256 of every tensor's name, type id (u32 LE), ggml `ne` (u64 LE each) and bytes, tensors in
/// name order (families.json and default-kv.json `tensor_data_sha256`).
pub fn tensor_data_sha256(file: &GgufFile) -> String {
    let mut tensors: Vec<_> = file.tensors().iter().collect();
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    let mut h = Sha256::new();
    for t in tensors {
        h.update(t.name.as_bytes());
        h.update(t.ty.id().to_le_bytes());
        for &d in &t.ne {
            h.update(d.to_le_bytes());
        }
        h.update(file.tensor_data(t));
    }
    hex(h.finalize())
}

/// sha256 of a whole file.
pub fn file_sha256(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            return Ok(hex(h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

/// A digest as lowercase hex digits.
fn hex(digest: impl AsRef<[u8]>) -> String {
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
