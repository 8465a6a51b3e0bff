//! Saving a model as a Burn record (burnpack) and loading it back without its GGUF file.
//!
//! The reference for every comparison is the same model loaded from its GGUF file on the same
//! device: a record is a copy, so its logits must be identical bit for bit (no tolerance), and
//! so must every parameter's bytes and dtype (the quantized weights stay `u32` words of the
//! file's blocks, never f32). The record is saved from flex and loaded on every device of
//! `common::devices()` (flex, ndarray, wgpu when an adapter is present), so loading on another
//! device than the one saved from is covered.
//!
//! Models: `models/stories260k-f32.gguf` (F32, tied output), every synthetic model of
//! `tests/fixtures/synthetic/synthetic.json` (one per ggml type, quantized weights kept in their
//! blocks) and SmolLM2-135M Q4_1 when present (flex only).

mod common;

use std::path::{Path, PathBuf};

use burn::store::burn_pack::{Reader, Writer};
use burn::store::{bridge, BurnpackStore, ModuleSnapshot};
use burn::tensor::{DType, Device};
use common::{devices, ids, open, read_json, root, smollm2, token_tensor};
use gguf_llama::gguf::GgufFile;
use gguf_llama::model::record::METADATA_KEY;
use gguf_llama::model::{Llama, RecordError, Weights};

fn temp(name: &str) -> PathBuf {
    common::temp("record", name)
}

/// The logits of every position of `prompt`, as f32 bit patterns.
fn logit_bits(model: &Llama, prompt: &[u32], device: &Device) -> Vec<u32> {
    let mut cache = model.new_cache(1, prompt.len());
    let logits = model
        .forward(token_tensor(prompt, device), &mut cache)
        .unwrap();
    assert_eq!(logits.dtype(), DType::F32);
    logits.into_data().iter::<f32>().map(f32::to_bits).collect()
}

/// Every parameter of the model: path, dtype, shape and bytes, sorted by path.
fn parameters(model: &Llama) -> Vec<(String, DType, Vec<usize>, Vec<u8>)> {
    let mut out: Vec<_> = model
        .collect(None, None, false)
        .into_iter()
        .map(|t| {
            let bytes = t.to_bytes().unwrap().to_vec();
            (t.name.clone(), t.dtype, t.shape.to_vec(), bytes)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Saves `gguf` loaded on flex with `weights`, then on every device loads the record and checks
/// it against the GGUF model on that device: same parameters byte for byte, same logits bit for
/// bit. Returns the record's path.
fn round_trip(gguf: &Path, weights: Weights, prompt: &[u32], record_name: &str) -> PathBuf {
    let file = open(gguf);
    let record = temp(record_name);
    let flex = Device::flex();
    Llama::from_gguf_with_weights(&file, &flex, weights)
        .unwrap()
        .save_record(&record)
        .unwrap();

    for (name, device) in devices() {
        let original = Llama::from_gguf_with_weights(&file, &device, weights).unwrap();
        let loaded = Llama::load_record(&record, &device).unwrap();
        let what = format!("{} ({weights}) on {name}", gguf.display());

        assert_eq!(loaded.config(), original.config(), "{what}: config");
        assert_eq!(loaded.rope(), original.rope(), "{what}: rope");
        assert_eq!(loaded.device(), device, "{what}: device");
        let (p_orig, p_loaded) = (parameters(&original), parameters(&loaded));
        assert_eq!(p_orig.len(), p_loaded.len(), "{what}: parameter count");
        for (a, b) in p_orig.iter().zip(&p_loaded) {
            assert_eq!((&a.0, a.1, &a.2), (&b.0, b.1, &b.2), "{what}: parameter");
            assert!(a.3 == b.3, "{what}: bytes of {} differ", a.0);
        }
        assert_eq!(
            logit_bits(&loaded, prompt, &device),
            logit_bits(&original, prompt, &device),
            "{what}: logits"
        );
        eprintln!("{what}: parameters and logits identical");
    }
    record
}

/// Bytes of the GGUF file's tensor data, and its tensor count.
fn gguf_tensor_bytes(file: &GgufFile) -> (u64, u64) {
    let bytes = file
        .tensors()
        .iter()
        .map(|t| file.tensor_data(t).len() as u64)
        .sum();
    (bytes, file.tensors().len() as u64)
}

/// The record holds the file's tensor bytes and little else. Lower bound: every tensor's bytes
/// are there (F32 as f32, quantized as their blocks). Upper bound: per tensor at most 255 bytes
/// of burnpack's 256-byte alignment and 3 bytes padding the blocks to whole u32 words, plus the
/// header and metadata (tensor descriptors and the model description), under 64 KiB for these
/// models.
fn assert_record_size(gguf: &Path, record: &Path) {
    let (tensor_bytes, n_tensors) = gguf_tensor_bytes(&open(gguf));
    let size = std::fs::metadata(record).unwrap().len();
    let bound = tensor_bytes + n_tensors * (255 + 3) + 64 * 1024;
    eprintln!(
        "{}: record {size} bytes, GGUF tensor data {tensor_bytes} bytes in {n_tensors} tensors (+{} bytes)",
        gguf.display(),
        size as i64 - tensor_bytes as i64
    );
    assert!(
        (tensor_bytes..=bound).contains(&size),
        "{}: record of {size} bytes for {tensor_bytes} bytes of tensors (bound {bound})",
        record.display()
    );
}

#[test]
fn stories260k_round_trips_bit_for_bit() {
    let gguf = root().join("models/stories260k-f32.gguf");
    // "Once upon a time" as llama.cpp tokenizes it (tests/fixtures/llama/stories260k.json).
    let prompt = ids(&read_json("llama/stories260k.json")["prompts"][0]["prompt_tokens"]);
    let record = round_trip(&gguf, Weights::Quantized, &prompt, "stories260k.bpk");
    assert_record_size(&gguf, &record);
}

#[test]
fn synthetic_models_of_every_type_round_trip_bit_for_bit() {
    let reference = read_json("synthetic/synthetic.json");
    let prompt = ids(&reference["prompt_tokens"]);
    for (ty, entry) in reference["types"].as_object().unwrap() {
        let gguf = root().join(entry["model"].as_str().unwrap());
        let record = round_trip(
            &gguf,
            Weights::Quantized,
            &prompt,
            &format!("synth-{ty}.bpk"),
        );
        assert_record_size(&gguf, &record);

        // The quantized weights are in the record as the file's blocks in u32 words.
        let loaded = Llama::load_record(&record, &Device::flex()).unwrap();
        let file = open(&gguf);
        let info = file.tensor("token_embd.weight").unwrap();
        match loaded.token_embedding().quantized_weight() {
            Some(q) => {
                assert_eq!(q.ty(), info.ty, "{ty}");
                assert_eq!(q.words().dtype(), DType::U32, "{ty}");
                let words = q.words().clone().into_data();
                let bytes = &words.as_bytes()[..q.file_bytes()];
                assert!(bytes == file.tensor_data(info), "{ty}: token_embd blocks");
            }
            None => assert_eq!(ty, "F32", "only F32 embeddings are dense"),
        }
    }
}

#[test]
fn a_dequantized_model_round_trips_bit_for_bit() {
    let gguf = root().join("tests/fixtures/synthetic/synth-Q4_K.gguf");
    let prompt = ids(&read_json("synthetic/synthetic.json")["prompt_tokens"]);
    round_trip(&gguf, Weights::F32, &prompt, "synth-Q4_K-f32.bpk");
}

/// The Q4_K synthetic model with what the fixtures lack: biases (on q, k, v, output, down and
/// the output projection), Llama 3 frequency divisors (`rope_freqs.weight`) and, in block 0, a
/// fused `attn_qkv` (the rows of q, k and v concatenated, split by rows on load, each part kept
/// in its blocks).
/// Values are arbitrary: the reference is the GGUF model itself.
fn write_extended_model(path: &Path) {
    let src = open(&root().join("tests/fixtures/synthetic/synth-Q4_K.gguf"));
    let n_rot = Llama::from_gguf(&src, &Device::flex())
        .unwrap()
        .config()
        .rope
        .dimension_count;
    let values = |n: usize, seed: f32| -> Vec<f32> {
        (0..n)
            .map(|i| 0.1 * (seed + i as f32 * 0.37).sin())
            .collect()
    };
    let mut w = gguf_llama::gguf::GgufWriter::new();
    w.add_all_metadata(src.metadata()).unwrap();
    let fused = [
        "blk.0.attn_q.weight",
        "blk.0.attn_k.weight",
        "blk.0.attn_v.weight",
    ];
    let mut qkv = (0usize, 0usize, Vec::new());
    for (i, t) in src.tensors().iter().enumerate() {
        let data = src.tensor_data(t).to_vec();
        let shape = t.shape(); // [rows, cols]
        if fused.contains(&t.name.as_str()) {
            qkv = (qkv.0 + shape[0], shape[1], [qkv.2, data].concat());
            continue;
        }
        w.add_tensor(&t.name, &shape, t.ty, data).unwrap();
        let biased = [
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_output",
            "ffn_down",
            "output.",
        ];
        if biased.iter().any(|b| t.name.contains(b)) {
            let bias = t.name.replace(".weight", ".bias");
            w.add_f32(&bias, &[shape[0]], &values(shape[0], i as f32))
                .unwrap();
        }
    }
    let ty = src.tensor(fused[0]).unwrap().ty;
    w.add_tensor("blk.0.attn_qkv.weight", &[qkv.0, qkv.1], ty, qkv.2)
        .unwrap();
    w.add_f32("blk.0.attn_qkv.bias", &[qkv.0], &values(qkv.0, 0.5))
        .unwrap();
    let divisors: Vec<f32> = (0..n_rot / 2).map(|i| 1.0 + 0.25 * i as f32).collect();
    w.add_f32("rope_freqs.weight", &[n_rot / 2], &divisors)
        .unwrap();
    w.write_file(path).unwrap();
}

#[test]
fn biases_rope_freqs_and_fused_qkv_round_trip_bit_for_bit() {
    let gguf = temp("synth-Q4_K-extended.gguf");
    write_extended_model(&gguf);
    let model = Llama::from_gguf(&open(&gguf), &Device::flex()).unwrap();
    assert!(model.rope().freq_factors().is_some());
    let block0 = model.blocks()[0].attention().linears();
    assert!(block0[..3].iter().all(|l| l.is_quantized() && l.has_bias()));
    assert!(model.output().is_some_and(|o| o.has_bias()));
    let prompt = ids(&read_json("synthetic/synthetic.json")["prompt_tokens"]);
    round_trip(
        &gguf,
        Weights::Quantized,
        &prompt,
        "synth-Q4_K-extended.bpk",
    );
}

#[test]
fn smollm2_round_trips_bit_for_bit_on_flex() {
    let Some(gguf) = smollm2() else { return };
    let file = open(&gguf);
    let device = Device::flex();
    let original = Llama::from_gguf(&file, &device).unwrap();
    let record = temp("smollm2-q4_1.bpk");
    original.save_record(&record).unwrap();
    let loaded = Llama::load_record(&record, &device).unwrap();
    assert_eq!(loaded.config(), original.config());
    // Arbitrary ids inside SmolLM2's 49152-token vocabulary: the reference is the GGUF model
    // itself, run on the same ids.
    let prompt = [1, 100, 2000, 30000, 49151];
    assert_eq!(
        logit_bits(&loaded, &prompt, &device),
        logit_bits(&original, &prompt, &device)
    );
    assert_record_size(&gguf, &record);
    std::fs::remove_file(&record).unwrap();
}

#[test]
fn a_loaded_model_no_longer_needs_its_file() {
    let gguf = root().join("tests/fixtures/synthetic/synth-Q4_K.gguf");
    let prompt = ids(&read_json("synthetic/synthetic.json")["prompt_tokens"]);
    let device = Device::flex();
    let original = Llama::from_gguf(&open(&gguf), &device).unwrap();
    let record = temp("deleted-after-load.bpk");
    original.save_record(&record).unwrap();
    let loaded = Llama::load_record(&record, &device).unwrap();
    // Replaced by another model's record, then deleted, before the first forward pass.
    let other = Llama::from_gguf(
        &open(&root().join("tests/fixtures/synthetic/synth-Q8_0.gguf")),
        &device,
    )
    .unwrap();
    other.save_record(&record).unwrap();
    std::fs::remove_file(&record).unwrap();
    assert_eq!(
        logit_bits(&loaded, &prompt, &device),
        logit_bits(&original, &prompt, &device)
    );
}

/// A record of the Q4_K synthetic model saved for the error tests.
fn q4k_record(name: &str) -> PathBuf {
    let gguf = root().join("tests/fixtures/synthetic/synth-Q4_K.gguf");
    let record = temp(name);
    Llama::from_gguf(&open(&gguf), &Device::flex())
        .unwrap()
        .save_record(&record)
        .unwrap();
    record
}

/// The record's model description.
fn description(record: &Path) -> String {
    Reader::from_file_exact(record).unwrap().metadata()[METADATA_KEY].clone()
}

/// Saves the Q4_K synthetic model's tensors with `json` as the model description (or none).
fn with_description(name: &str, json: Option<&str>) -> PathBuf {
    let gguf = root().join("tests/fixtures/synthetic/synth-Q4_K.gguf");
    let model = Llama::from_gguf(&open(&gguf), &Device::flex()).unwrap();
    let path = temp(name);
    let mut store = BurnpackStore::from_file(&path).auto_extension(false);
    if let Some(json) = json {
        store = store.metadata(METADATA_KEY, json);
    }
    model.save_into(&mut store).unwrap();
    path
}

#[test]
fn missing_truncated_and_garbage_files_are_errors() {
    let device = Device::flex();
    let load = |path: &Path| Llama::load_record(path, &device);

    let absent = temp("absent.bpk");
    assert!(matches!(load(&absent), Err(RecordError::Io { .. })));

    let record = q4k_record("to-truncate.bpk");
    let bytes = std::fs::read(&record).unwrap();
    // Cut inside the tensor data, inside the metadata, inside the header, and empty.
    for len in [bytes.len() - 1, bytes.len() / 2, 100, 5, 0] {
        let cut = temp("truncated.bpk");
        std::fs::write(&cut, &bytes[..len]).unwrap();
        let err = load(&cut).err();
        assert!(
            matches!(err, Some(RecordError::Pack { .. })),
            "cut to {len} of {} bytes: {err:?}",
            bytes.len()
        );
    }

    // A GGUF file is not a record.
    let gguf = root().join("tests/fixtures/synthetic/synth-Q4_K.gguf");
    assert!(matches!(load(&gguf), Err(RecordError::Pack { .. })));

    // A corrupted magic number.
    let mut bad = bytes.clone();
    bad[0] ^= 0xff;
    let path = temp("bad-magic.bpk");
    std::fs::write(&path, &bad).unwrap();
    assert!(matches!(load(&path), Err(RecordError::Pack { .. })));
}

#[test]
fn records_without_a_valid_description_are_errors() {
    let device = Device::flex();
    let load = |path: &Path| Llama::load_record(path, &device);
    let good = description(&q4k_record("described.bpk"));

    // A burnpack file of the model's tensors without the description.
    let path = with_description("undescribed.bpk", None);
    assert!(matches!(
        load(&path),
        Err(RecordError::MissingMetadata { .. })
    ));

    // Not JSON, or JSON of something else.
    for (i, json) in ["{not json", "{}", "[1, 2]"].into_iter().enumerate() {
        let path = with_description(&format!("bad-json-{i}.bpk"), Some(json));
        let err = load(&path).err();
        assert!(
            matches!(err, Some(RecordError::BadMetadata { .. })),
            "{json}: {err:?}"
        );
    }

    // A future format version; an unknown ggml type.
    let edits = [
        ("\"format_version\":2", "\"format_version\":3"),
        ("\"Q4_K\"", "\"Q9_K\""),
    ];
    for (from, to) in edits {
        assert!(good.contains(from), "{from} in {good}");
        let path = with_description("edited.bpk", Some(&good.replacen(from, to, 1)));
        let err = load(&path).err();
        assert!(
            matches!(err, Some(RecordError::BadMetadata { .. })),
            "{to}: {err:?}"
        );
    }

    // A configuration the model refuses (no layers).
    let path = with_description(
        "no-layers.bpk",
        Some(&good.replacen("\"block_count\":1", "\"block_count\":0", 1)),
    );
    assert!(good.contains("\"block_count\":1"), "{good}");
    let err = load(&path).err();
    assert!(matches!(err, Some(RecordError::Model { .. })), "{err:?}");

    // Tensors that do not fit the description: another quantization (other word counts), a bias
    // the file does not have, a dense matrix where the file has words.
    let edits = [
        ("\"Q4_K\"", "\"Q8_0\""),
        ("\"bias\":false", "\"bias\":true"),
        ("\"token_embd\":\"Q4_K\"", "\"token_embd\":null"),
    ];
    for (from, to) in edits {
        assert!(good.contains(from), "{from} in {good}");
        let path = with_description("mismatched.bpk", Some(&good.replacen(from, to, 1)));
        let err = load(&path).err();
        assert!(
            matches!(err, Some(RecordError::Tensors { .. })),
            "{to}: {err:?}"
        );
    }
}

/// Tensors of the right shapes but of a dtype the forward pass does not compute with: the words
/// as i64 instead of u32, a norm as f16 instead of f32. Burn's loader accepts any int (float)
/// dtype for an int (float) parameter; the record loader refuses them.
#[test]
fn tensors_of_another_dtype_are_errors() {
    let gguf = root().join("tests/fixtures/synthetic/synth-Q4_K.gguf");
    let device = Device::flex();
    let model = Llama::from_gguf(&open(&gguf), &device).unwrap();
    let good = description(&q4k_record("dtype-source.bpk"));
    let retyped = [
        ("token_embd.weight.Quantized.words", DType::I64),
        ("output_norm.weight", DType::F16),
    ];
    for (name, dtype) in retyped {
        let tensors: Vec<_> = model
            .collect(None, None, false)
            .into_iter()
            .map(|t| {
                if t.name != name {
                    return t;
                }
                let data = bridge::to_data(&t).unwrap().convert_dtype(dtype);
                bridge::from_data(data, t.name.clone(), t.param_id)
            })
            .collect();
        let path = temp("retyped.bpk");
        Writer::new(tensors)
            .with_metadata(METADATA_KEY, &good)
            .write_to_file(&path)
            .unwrap();
        let err = Llama::load_record(&path, &device).err();
        match err {
            Some(RecordError::Tensors { what, .. }) => {
                assert!(what.contains(name), "{name} as {dtype:?}: {what}")
            }
            other => panic!("{name} as {dtype:?}: {other:?}"),
        }
    }
}
