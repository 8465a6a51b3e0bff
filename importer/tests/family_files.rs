//! The family test files written in Rust (tests/common/families.rs, with this crate's GgufWriter)
//! are the files scripts/make_family_fixtures.py writes with gguf-py and runs llama.cpp on: the
//! same metadata (every key, in order, with its value), the same tensors (names, types, shapes,
//! bytes), the same bytes altogether; the digests are recorded in
//! tests/fixtures/families/families.json.
//!
//! phi3's file is checked against both of its records (`smollm2-as-phi3-long` and `-short`: one
//! file, two context sizes). `qwen2-yarn`'s (record `smollm2-as-qwen2-yarn`) is the qwen2 file with
//! three YaRN keys: its tensors are the `smollm2-as-qwen2` record's.
//!
//! Needs SmolLM2-135M-Instruct Q4_1 ($GGUF_LLAMA_SMOLLM2, or where .ci/run puts it) and, for the
//! Gemma check, Gemma 3 270M ($GGUF_LLAMA_GEMMA3, or ~/.cache/gguf-llama/models/gemma/): a missing
//! file skips the test, or fails it when `CI` is `true` or `1` (tests/common/ci.rs's rule).

mod common;
#[path = "../../tests/common/families.rs"]
mod families;

use std::path::{Path, PathBuf};

use gguf_importer::{GgufFile, Value};

fn repo() -> PathBuf {
    common::package_dir().join("..")
}

fn families_dir() -> PathBuf {
    repo().join("tests/fixtures/families")
}

fn reference() -> serde_json::Value {
    let path = families_dir().join("families.json");
    serde_json::from_reader(
        std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// Whether a missing model is a failure: under CI (tests/common/ci.rs).
fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `$var`, else `~/{default}`; None (after a message) when absent, a panic under CI.
fn model(var: &str, default: &str, what: &str) -> Option<PathBuf> {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(default)
    });
    if path.exists() {
        return Some(path);
    }
    let msg = format!(
        "{what} not found at {} (set {var} or run .ci/run)",
        path.display()
    );
    if required() {
        panic!("{msg} (required under CI)");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

fn smollm2() -> Option<PathBuf> {
    model(
        "GGUF_LLAMA_SMOLLM2",
        ".cache/gguf-llama/models/SmolLM2-135M-Instruct.Q4_1.gguf",
        "SmolLM2 model",
    )
}

fn gemma3() -> Option<PathBuf> {
    model(
        "GGUF_LLAMA_GEMMA3",
        ".cache/gguf-llama/models/gemma/gemma-3-270m-q4_k_m.gguf",
        "Gemma 3 270M",
    )
}

fn temp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("family_files");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

fn keys(file: &GgufFile) -> Vec<String> {
    file.metadata().iter().map(|(k, _)| k.to_string()).collect()
}

/// Checks `path` against the record of model `key`: metadata keys in order, metadata digest,
/// tensor digest, size and whole-file digest.
fn check_recorded(path: &Path, key: &str) {
    let doc = reference();
    let rec = &doc["models"][key];
    assert!(rec.is_object(), "families.json has no model {key}");
    let file = GgufFile::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let want_keys: Vec<String> = rec["metadata_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys(&file), want_keys, "{key}: metadata keys");
    assert_eq!(
        families::metadata_sha256(file.metadata()),
        rec["metadata_sha256"].as_str().unwrap(),
        "{key}: metadata values"
    );
    assert_eq!(
        families::tensor_data_sha256(&file),
        rec["tensor_data_sha256"].as_str().unwrap(),
        "{key}: tensors (names, types, shapes, bytes)"
    );
    assert_eq!(
        std::fs::metadata(path).unwrap().len(),
        rec["file_bytes"].as_u64().unwrap(),
        "{key}: file size"
    );
    assert_eq!(
        families::file_sha256(path).unwrap(),
        rec["file_sha256"].as_str().unwrap(),
        "{key}: file bytes (order of tensors, alignment)"
    );
}

/// The families.json records of SmolLM2 written as `family`: phi3's one file has two (its long and
/// short rope factors, at two context sizes).
fn record_keys(family: &str) -> Vec<String> {
    let key = format!("smollm2-as-{family}");
    match family {
        "phi3" => vec![format!("{key}-long"), format!("{key}-short")],
        _ => vec![key],
    }
}

/// Writes SmolLM2 as `family` and checks it is the script's file; also that the source is the
/// file the script read.
fn check_family(family: &str) {
    let Some(src) = smollm2() else { return };
    let doc = reference();
    assert_eq!(
        families::file_sha256(&src).unwrap(),
        doc["source_sha256"]["SmolLM2-135M-Instruct.Q4_1.gguf"]
            .as_str()
            .unwrap(),
        "{}: not the SmolLM2 file the script used",
        src.display()
    );
    let key = format!("smollm2-as-{family}");
    let dst = temp(&format!("{key}.gguf"));
    families::write_smollm2_as(family, &src, &families_dir(), &dst).unwrap();
    for record in record_keys(family) {
        check_recorded(&dst, &record);
    }

    // What the digests stand for, spelled out on a few entries.
    let file = GgufFile::open(&dst).unwrap();
    let md = file.metadata();
    let arch = families::architecture(family);
    assert_eq!(md.get_str("general.architecture").unwrap(), arch);
    assert_eq!(md.get_usize(&format!("{arch}.block_count")).unwrap(), 30);
    assert!(md.iter().all(|(k, _)| !k.starts_with("llama.")));
    let template =
        std::fs::read_to_string(families_dir().join(families::template_file(family).unwrap()))
            .unwrap();
    assert_eq!(
        md.get("tokenizer.chat_template"),
        Some(&Value::String(template))
    );
    let source = GgufFile::open(&src).unwrap();
    if family == "phi3" {
        check_phi3(&source, &file);
        drop(file);
        let _ = std::fs::remove_file(&dst);
        return;
    }
    if family == "qwen2-yarn" {
        check_yarn(&file);
    } else {
        assert!(
            md.iter().all(|(k, _)| !k.contains(".rope.scaling.")),
            "{family}: no rope scaling keys"
        );
    }
    for name in ["blk.7.attn_q.weight", "blk.7.attn_k.weight"] {
        let (a, b) = (source.tensor(name).unwrap(), file.tensor(name).unwrap());
        let heads = if name.contains("attn_q") { 9 } else { 3 };
        let permuted =
            families::permute_rows(file.tensor_data(b), b.n_rows(), b.row_bytes(), heads);
        assert_eq!(permuted, source.tensor_data(a), "{name}");
        assert_ne!(file.tensor_data(b), source.tensor_data(a), "{name}");
    }
    let names: Vec<&str> = file
        .tensors()
        .iter()
        .map(|t| t.name.as_str())
        .filter(|n| n.starts_with("blk.7."))
        .collect();
    let added: &[&str] = if arch == "qwen2" {
        &["attn_q.bias", "attn_k.bias", "attn_v.bias"]
    } else {
        &["attn_q_norm.weight", "attn_k_norm.weight"]
    };
    for new in added {
        let weight = format!("blk.7.{}.weight", &new[..6]);
        let at = names.iter().position(|n| *n == weight).unwrap();
        assert_eq!(
            names[at + 1],
            format!("blk.7.{new}"),
            "{new} follows {weight}"
        );
    }
    drop(file);
    let _ = std::fs::remove_file(&dst);
}

#[test]
fn smollm2_as_qwen2_is_the_scripts_file() {
    check_family("qwen2");
}

#[test]
fn smollm2_as_qwen3_is_the_scripts_file() {
    check_family("qwen3");
}

#[test]
fn smollm2_as_phi3_is_the_scripts_file() {
    check_family("phi3");
}

#[test]
fn smollm2_as_qwen2_yarn_is_the_scripts_file() {
    check_family("qwen2-yarn");
}

/// What the yarn file's digests stand for: the three keys where the converter writes them, with
/// their types, the qwen2 record's tensors, and llama.cpp's reading of them as recorded (what its
/// graph handed ggml's rope: freq_scale 1/factor, ext_factor 1, attn_factor 1, beta 32/1,
/// n_ctx_orig = original_context_length).
fn check_yarn(file: &GgufFile) {
    let md = file.metadata();
    let keys = keys(file);
    let at = |k: &str| keys.iter().position(|x| x == k).unwrap();
    let base = at("qwen2.attention.head_count_kv");
    assert_eq!(
        keys[base + 1..base + 5],
        [
            "qwen2.rope.scaling.type",
            "qwen2.rope.scaling.factor",
            "qwen2.rope.scaling.original_context_length",
            "qwen2.rope.freq_base",
        ]
    );
    assert_eq!(
        md.get("qwen2.rope.scaling.type"),
        Some(&Value::String("yarn".into()))
    );
    assert_eq!(md.get("qwen2.rope.scaling.factor"), Some(&Value::F32(4.0)));
    assert_eq!(
        md.get("qwen2.rope.scaling.original_context_length"),
        Some(&Value::U32(2048))
    );
    assert_eq!(md.get("qwen2.context_length"), Some(&Value::U32(8192)));

    let doc = reference();
    let rec = &doc["models"]["smollm2-as-qwen2-yarn"];
    assert_eq!(
        families::tensor_data_sha256(file),
        doc["models"]["smollm2-as-qwen2"]["tensor_data_sha256"]
            .as_str()
            .unwrap(),
        "the plain qwen2 file's tensors"
    );
    let op = &rec["llama_cpp_rope_op"];
    let bits = |name: &str| {
        let hex = op["f32_bits"][name].as_str().unwrap();
        f32::from_bits(u32::from_str_radix(hex.trim_start_matches("0x"), 16).unwrap())
    };
    assert_eq!(op["n_ctx_orig"], 2048);
    assert_eq!(op["n_dims"], 64);
    assert_eq!(op["mode"], 2, "NEOX");
    assert_eq!(bits("freq_scale"), 1.0 / families::YARN_FACTOR);
    assert_eq!(bits("freq_base"), 100000.0);
    assert_eq!(bits("ext_factor"), 1.0);
    assert_eq!(bits("attn_factor"), 1.0);
    assert_eq!((bits("beta_fast"), bits("beta_slow")), (32.0, 1.0));
    for name in [
        "freq_scale",
        "ext_factor",
        "attn_factor",
        "beta_fast",
        "beta_slow",
    ] {
        assert_eq!(op[name].as_f64().unwrap(), bits(name) as f64, "{name}");
    }
    assert_eq!(rec["n_ctx"], 512);
}

/// What phi3's digests stand for: the fused q/k/v and gate/up rows, the rope factors first, the
/// two LongRoPE keys where the converter writes them, no rope scaling type, and the two records'
/// context sizes on either side of original_context_length.
fn check_phi3(source: &GgufFile, file: &GgufFile) {
    let md = file.metadata();
    let keys = keys(file);
    let at = |k: &str| keys.iter().position(|x| x == k).unwrap();
    assert_eq!(
        at("phi3.rope.scaling.original_context_length"),
        at("phi3.context_length") + 1
    );
    assert_eq!(
        keys.last().map(String::as_str),
        Some("phi3.rope.scaling.attn_factor")
    );
    assert_eq!(
        md.get("phi3.rope.scaling.original_context_length"),
        Some(&Value::U32(256))
    );
    assert_eq!(
        md.get("phi3.rope.scaling.attn_factor"),
        Some(&Value::F32(f32::from_bits(0x3fa32b2b)))
    );
    assert!(md.get("phi3.rope.scaling.type").is_none());
    assert_eq!(md.get("phi3.context_length"), Some(&Value::U32(8192)));

    let names: Vec<&str> = file.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names[..3],
        [
            "rope_factors_long.weight",
            "rope_factors_short.weight",
            "token_embd.weight"
        ]
    );
    for (name, seed, scale) in [
        ("rope_factors_long.weight", 6, families::ROPE_LONG_SCALE),
        ("rope_factors_short.weight", 7, families::ROPE_SHORT_SCALE),
    ] {
        let t = file.tensor(name).unwrap();
        assert_eq!(
            (t.ty.name(), t.ne.as_slice()),
            ("F32", &[32u64][..]),
            "{name}"
        );
        let want: Vec<u8> = families::det_rope_factors(32, seed, scale)
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        assert_eq!(file.tensor_data(t), want, "{name}");
    }

    let src = |name: &str| source.tensor_data(source.tensor(name).unwrap());
    for il in [0, 7, 29] {
        let qkv = file.tensor(&format!("blk.{il}.attn_qkv.weight")).unwrap();
        assert_eq!(
            (qkv.ty.name(), qkv.ne.as_slice()),
            ("Q4_1", &[576u64, 960][..])
        );
        let rb = qkv.row_bytes();
        let d = file.tensor_data(qkv);
        let (q, rest) = d.split_at(576 * rb);
        let (k, v) = rest.split_at(192 * rb);
        let q_src = format!("blk.{il}.attn_q.weight");
        let k_src = format!("blk.{il}.attn_k.weight");
        assert_eq!(families::permute_rows(q, 576, rb, 9), src(&q_src));
        assert_eq!(families::permute_rows(k, 192, rb, 3), src(&k_src));
        assert_eq!(v, src(&format!("blk.{il}.attn_v.weight")));

        let up = file.tensor(&format!("blk.{il}.ffn_up.weight")).unwrap();
        assert_eq!(
            (up.ty.name(), up.ne.as_slice()),
            ("Q4_1", &[576u64, 3072][..])
        );
        let (gate_rows, up_rows) = file.tensor_data(up).split_at(1536 * up.row_bytes());
        assert_eq!(gate_rows, src(&format!("blk.{il}.ffn_gate.weight")));
        assert_eq!(up_rows, src(&format!("blk.{il}.ffn_up.weight")));
        for gone in ["attn_q", "attn_k", "attn_v", "ffn_gate"] {
            assert!(file.tensor(&format!("blk.{il}.{gone}.weight")).is_none());
        }
    }
    let block: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| n.starts_with("blk.7."))
        .collect();
    assert_eq!(
        block,
        [
            "blk.7.attn_norm.weight",
            "blk.7.ffn_down.weight",
            "blk.7.ffn_up.weight",
            "blk.7.ffn_norm.weight",
            "blk.7.attn_output.weight",
            "blk.7.attn_qkv.weight",
        ]
    );

    let doc = reference();
    for (key, factors, n_ctx) in [
        ("smollm2-as-phi3-long", "long", 512),
        ("smollm2-as-phi3-short", "short", 256),
    ] {
        let rec = &doc["models"][key];
        assert_eq!(rec["rope_factors"], factors, "{key}");
        assert_eq!(rec["n_ctx"], n_ctx, "{key}");
        assert_eq!(rec["original_context_length"], 256, "{key}");
        // llama_model::get_rope_factors: long when n_ctx_seq > n_ctx_orig_yarn.
        assert_eq!(n_ctx > 256, factors == "long", "{key}");
    }
}

/// The real Gemma 3 file reads as the script read it, and the swa16 file is its metadata with the
/// window set to 16 (what the model's configuration override does).
#[test]
fn gemma3_metadata_and_tensors_as_recorded() {
    let Some(path) = gemma3() else { return };
    let doc = reference();
    let file = GgufFile::open(&path).unwrap();
    for key in ["gemma3-270m", "gemma3-270m-swa16"] {
        assert_eq!(
            families::tensor_data_sha256(&file),
            doc["models"][key]["tensor_data_sha256"].as_str().unwrap(),
            "{key}: tensors"
        );
    }
    assert_eq!(
        families::metadata_sha256(file.metadata()),
        doc["models"]["gemma3-270m"]["metadata_sha256"]
            .as_str()
            .unwrap()
    );
    let mut md = file.metadata().clone();
    assert_eq!(
        md.get("gemma3.attention.sliding_window"),
        Some(&Value::U32(512))
    );
    md.set("gemma3.attention.sliding_window", Value::U32(16));
    assert_eq!(
        families::metadata_sha256(&md),
        doc["models"]["gemma3-270m-swa16"]["metadata_sha256"]
            .as_str()
            .unwrap()
    );
}

/// The deterministic values, bit for bit numpy's (values printed by the script's det_bias and
/// det_norm).
#[test]
fn deterministic_values_are_the_scripts() {
    let bits = |v: Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(families::det_bias(6, 1)),
        [0xbc844d01, 0xbca71de7, 0xbcc9eecc, 0xbcecbfb1, 0xbd07c84b, 0xbd1930be]
    );
    assert_eq!(
        bits(families::det_bias(4, 29003)),
        [0x3c3367a1, 0x3bdb8bac, 0x3b20902e, 0xbaebedfa]
    );
    assert_eq!(
        bits(families::det_norm(5, 4)),
        [0x3f787fcc, 0x3f7652bd, 0x3f7425af, 0x3f71f8a1, 0x3f6fcb92]
    );
    assert_eq!(
        bits(families::det_norm(3, 29005)),
        [0x3f750b0f, 0x3f72de01, 0x3f70b0f2]
    );
    assert_eq!(families::seed(29, "attn_k_norm.weight"), 29005);
    assert_eq!(
        bits(families::det_rope_factors(4, 6, families::ROPE_LONG_SCALE)),
        [0x3f07ae14, 0x3fbe76c9, 0x3fb90625, 0x3fb39581]
    );
    assert_eq!(
        bits(families::det_rope_factors(4, 7, families::ROPE_SHORT_SCALE)),
        [0x3f794467, 0x3f771759, 0x3f74ea4b, 0x3f72bd3c]
    );
    assert_eq!(families::seed(0, "rope_factors_short.weight"), 7);
    assert_eq!(
        (families::ROPE_ATTN_FACTOR as f32).to_bits(),
        0x3fa32b2b,
        "phi3.rope.scaling.attn_factor"
    );
}

/// unpermute_rows undoes the converter's permutation, and moves rows as the formula says.
#[test]
fn unpermute_inverts_the_converters_permutation() {
    let (n_head, hd, row_bytes) = (3, 8, 2);
    let n_rows = n_head * hd;
    let data: Vec<u8> = (0..(n_rows * row_bytes) as u32).map(|x| x as u8).collect();
    let un = families::unpermute_rows(&data, n_rows, row_bytes, n_head);
    assert_eq!(families::permute_rows(&un, n_rows, row_bytes, n_head), data);
    // Row h*hd + j*hd/2 + r comes from row h*hd + 2r + j: head 1, j = 1, r = 2 <- row 8 + 5.
    let row = |d: &[u8], i: usize| d[i * row_bytes..(i + 1) * row_bytes].to_vec();
    assert_eq!(row(&un, 8 + 4 + 2), row(&data, 8 + 5));
}
