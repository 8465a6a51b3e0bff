//! The Llama model on the real tiny model `models/stories260k-f32.gguf`, against llama.cpp.
//!
//! Reference data:
//! - `tests/fixtures/llama/stories260k.json` and its `.npy` logits were produced by llama.cpp
//!   (llama-cpp-python 0.3.36, F32 KV cache, 2 threads, logits of every position, greedy by
//!   argmax) with `python3 scripts/make_llama_fixtures.py --only stories`.
//! - Metadata values and token-embedding elements below were printed by gguf-py's `GGUFReader`
//!   (gguf 0.19.0); each test gives the command.
//!
//! Every numerical test runs on flex and ndarray, and on wgpu when an adapter is present
//! (lavapipe on machines without a GPU; under CI a missing adapter fails, `common::devices`).

mod common;

use burn::tensor::{Device, Int, Tensor, TensorData};
use common::{argmax, devices, max_abs, max_abs_diff, root, to_vec};
use gguf_importer::{GgufFile, Metadata};
use gguf_llama::model::{
    CacheTypes, KvType, Llama, LlamaConfig, Logits, ModelError, RopeStyle, Weights, UBATCH,
};

fn model_file() -> GgufFile {
    let path = root().join("models/stories260k-f32.gguf");
    GgufFile::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load(device: &Device) -> Llama {
    Llama::from_gguf(&model_file(), device).expect("stories260k loads")
}

// `[1, n]` token ids on `device`.
use common::token_tensor as tokens;

// ---------------------------------------------------------------------------------------------
// llama.cpp fixture

struct Prompt {
    text: String,
    prompt_tokens: Vec<u32>,
    greedy_tokens: Vec<u32>,
    /// `[n_prompt, n_vocab]` logits of the prompt positions.
    prompt_logits: (Vec<usize>, Vec<f32>),
    /// `[n_prompt + n_gen, n_vocab]`: every position of prompt + generation (first prompt only).
    full_logits: Option<(Vec<usize>, Vec<f32>)>,
}

fn read_npy(name: &str) -> (Vec<usize>, Vec<f32>) {
    common::read_npy(&common::fixture("llama").join(name))
}

fn fixture() -> Vec<Prompt> {
    let path = root().join("tests/fixtures/llama/stories260k.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (generate it with `python3 scripts/make_llama_fixtures.py --only stories`)",
            path.display()
        )
    });
    let json: serde_json::Value = serde_json::from_str(&text).expect("fixture is JSON");
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .expect("array of ids")
            .iter()
            .map(|x| x.as_u64().expect("id") as u32)
            .collect()
    };
    json["prompts"]
        .as_array()
        .expect("prompts")
        .iter()
        .map(|p| Prompt {
            text: p["prompt"].as_str().expect("prompt").to_string(),
            prompt_tokens: ids(&p["prompt_tokens"]),
            greedy_tokens: ids(&p["greedy_tokens"]),
            prompt_logits: read_npy(p["prompt_logits"]["file"].as_str().expect("file")),
            full_logits: p
                .get("full_logits")
                .map(|f| read_npy(f["file"].as_str().expect("file"))),
        })
        .collect()
}

/// Logits agree with llama.cpp's to this absolute tolerance.
///
/// Both sides compute in f32 with the same operations in a different summation order (ggml's
/// CPU dot products vs. the backends' gemm). Per dot product of length n <= 172 the rounding
/// error is about sqrt(n) · 2^-24 relative to the sum of |terms|; through five layers of norms,
/// attention and SwiGLU the activations keep a relative error of a few 1e-6, and the output
/// projection (64 terms) maps it onto logits of magnitude up to ~22 (mean ~8, from the fixture):
/// a few 1e-5 absolute. 1e-4 leaves a margin of a few over that, and is still 700 times smaller
/// than the smallest top-1/top-2 gap of the greedy runs (0.070, recorded in the fixture), so the
/// greedy tokens must match exactly.
const LOGIT_ATOL: f32 = 1e-4;

// ---------------------------------------------------------------------------------------------
// Configuration

#[test]
fn config_matches_gguf_py() {
    // Values printed by gguf-py:
    // python3 -c "from gguf import GGUFReader; r = GGUFReader('models/stories260k-f32.gguf');
    //   [print(k, f.contents() if not k.startswith('tokenizer.ggml.t') else len(f.data))
    //    for k, f in r.fields.items()]"
    // llama.context_length 512, llama.embedding_length 64, llama.block_count 5,
    // llama.feed_forward_length 172, llama.rope.dimension_count 8, llama.attention.head_count 8,
    // llama.attention.head_count_kv 4, llama.attention.layer_norm_rms_epsilon 9.999999747378752e-06,
    // tokenizer.ggml.tokens: 512 entries; no rope.freq_base, no key_length/value_length, no
    // rope scaling keys, no vocab_size key.
    let file = model_file();
    let config = LlamaConfig::from_gguf(file.metadata()).expect("config");
    assert_eq!(config.architecture, "llama");
    assert_eq!(config.context_length, 512);
    assert_eq!(config.embedding_length, 64);
    assert_eq!(config.block_count, 5);
    assert_eq!(config.feed_forward_length, 172);
    assert_eq!(config.head_count, 8);
    assert_eq!(config.head_count_kv, vec![4; 5]);
    assert_eq!(config.rms_norm_eps, 9.999999747378752e-06_f64 as f32);
    assert_eq!(config.vocab_size, 512);
    // Defaults of llama.cpp's load_hparams: key/value length n_embd / n_head = 64 / 8,
    // rope base 10000, no scaling; rope.dimension_count as read.
    assert_eq!(config.key_length, 64 / 8);
    assert_eq!(config.value_length, 64 / 8);
    assert_eq!(config.rope.dimension_count, 8);
    assert_eq!(config.rope.freq_base, 10000.0);
    assert_eq!(config.rope.freq_scale, 1.0);
    // llama.cpp's llama_model_rope_type: LLM_ARCH_LLAMA -> LLAMA_ROPE_TYPE_NORM (adjacent pairs).
    assert_eq!(config.rope.style, RopeStyle::Adjacent);
    // from_file agrees when the metadata has the vocabulary.
    assert_eq!(LlamaConfig::from_file(&file).expect("config"), config);
}

/// The file's metadata without `drop`, with `extra` added.
fn edited_metadata(drop: &[&str], extra: &[(&str, gguf_importer::Value)]) -> Metadata {
    let file = model_file();
    let mut md = Metadata::new();
    for (k, v) in file.metadata().iter() {
        if !drop.contains(&k) {
            md.set(k, v.clone());
        }
    }
    for (k, v) in extra {
        md.set(*k, v.clone());
    }
    md
}

#[test]
fn config_errors_name_the_key() {
    use gguf_importer::Value;

    let md = edited_metadata(&["llama.block_count"], &[]);
    match LlamaConfig::from_gguf(&md) {
        Err(ModelError::Key { key, .. }) => assert_eq!(key, "llama.block_count"),
        other => panic!("expected a key error, got {other:?}"),
    }

    let md = edited_metadata(
        &[],
        &[("general.architecture", Value::String("mamba".into()))],
    );
    match LlamaConfig::from_gguf(&md) {
        Err(ModelError::UnsupportedArchitecture { arch, .. }) => assert_eq!(arch, "mamba"),
        other => panic!("expected UnsupportedArchitecture, got {other:?}"),
    }

    // 3 KV heads do not divide 8 query heads.
    let md = edited_metadata(&[], &[("llama.attention.head_count_kv", Value::U32(3))]);
    match LlamaConfig::from_gguf(&md) {
        Err(ModelError::InvalidConfig { key, .. }) => {
            assert_eq!(key, "llama.attention.head_count_kv")
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }

    // Per-layer KV heads of the wrong length.
    let per_layer = Value::Array(gguf_importer::ValueType::U32, vec![Value::U32(4); 3]);
    let md = edited_metadata(&[], &[("llama.attention.head_count_kv", per_layer)]);
    match LlamaConfig::from_gguf(&md) {
        Err(ModelError::Key { key, .. }) => assert_eq!(key, "llama.attention.head_count_kv"),
        other => panic!("expected a key error, got {other:?}"),
    }

    // Linear scaling: factor 4 -> positions scaled by 1/4; the older key gives the same.
    let md = edited_metadata(
        &[],
        &[
            ("llama.rope.scaling.type", Value::String("linear".into())),
            ("llama.rope.scaling.factor", Value::F32(4.0)),
        ],
    );
    assert_eq!(
        LlamaConfig::from_gguf(&md).expect("config").rope.freq_scale,
        0.25
    );
    let md = edited_metadata(&[], &[("llama.rope.scale_linear", Value::F32(4.0))]);
    assert_eq!(
        LlamaConfig::from_gguf(&md).expect("config").rope.freq_scale,
        0.25
    );
    // "none" never scales (llama.cpp's llama_context).
    let md = edited_metadata(
        &[],
        &[
            ("llama.rope.scaling.type", Value::String("none".into())),
            ("llama.rope.scaling.factor", Value::F32(4.0)),
        ],
    );
    assert_eq!(
        LlamaConfig::from_gguf(&md).expect("config").rope.freq_scale,
        1.0
    );
    // YaRN: scaled like linear, extrapolating (llama.cpp's ext_factor 1); tests/families.rs runs
    // it against llama.cpp.
    let md = edited_metadata(
        &[],
        &[
            ("llama.rope.scaling.type", Value::String("yarn".into())),
            ("llama.rope.scaling.factor", Value::F32(4.0)),
        ],
    );
    let rope = LlamaConfig::from_gguf(&md).expect("config").rope;
    assert_eq!((rope.freq_scale, rope.ext_factor), (0.25, 1.0));
    // A scaling type llama.cpp does not know is refused naming the key.
    let md = edited_metadata(
        &[],
        &[("llama.rope.scaling.type", Value::String("dynamic".into()))],
    );
    assert!(matches!(
        LlamaConfig::from_gguf(&md),
        Err(ModelError::InvalidConfig { key, .. }) if key == "llama.rope.scaling.type"
    ));

    // A configuration edited by hand is validated before any weight is read.
    let file = model_file();
    let mut config = LlamaConfig::from_gguf(file.metadata()).expect("config");
    config.head_count_kv[2] = 0;
    match Llama::from_gguf_with_config(&file, config, &Device::flex(), Weights::default()) {
        Err(ModelError::InvalidConfig { key, .. }) => {
            assert_eq!(key, "llama.attention.head_count_kv")
        }
        other => panic!("expected InvalidConfig, got {:?}", other.map(|_| ())),
    }

    // No vocabulary anywhere in the metadata; from_file would fall back to token_embd.
    let md = edited_metadata(&["tokenizer.ggml.tokens"], &[]);
    assert!(matches!(
        LlamaConfig::from_gguf(&md),
        Err(ModelError::UnknownVocabSize { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Weights and dimension order

#[test]
fn token_embedding_is_a_row_of_token_embd() {
    // Elements of token_embd.weight rows 403 and 511 (gguf-py's array is [512, 64], ne
    // reversed), printed by:
    // python3 -c "from gguf import GGUFReader; r = GGUFReader('models/stories260k-f32.gguf');
    //   e = [t for t in r.tensors if t.name == 'token_embd.weight'][0].data;
    //   [print(t, list(map(float, e[t][:4])), list(map(float, e[t][-2:]))) for t in (403, 511)]"
    // The printed values are f32 values written out as f64, compared exactly.
    let expected: [(u32, [f64; 4], [f64; 2]); 2] = [
        (
            403,
            [
                0.003543718019500375,
                -0.17016193270683289,
                0.031364064663648605,
                -0.8578725457191467,
            ],
            [-0.09529385715723038, -0.6067294478416443],
        ),
        (
            511,
            [
                -0.24446307122707367,
                0.4325908422470093,
                0.21987290680408478,
                0.1838184893131256,
            ],
            [-0.16485778987407684, -0.424032598733902],
        ),
    ];
    let file = model_file();
    let table = file.dequantize("token_embd.weight").expect("dequantize"); // [512, 64]
    for (name, device) in devices() {
        let model = load(&device);
        let mut cache = model.new_cache_with(1, 8, CacheTypes::F32);
        let mut embd = None;
        model
            .forward_traced(
                tokens(&[403, 511], &device),
                &mut cache,
                Logits::All,
                &mut |n, t| {
                    if n == "embd" {
                        embd = Some(to_vec(t));
                    }
                },
            )
            .expect("forward");
        let embd = embd.expect("embd traced"); // [1, 2, 64]
        for (i, (tok, head, tail)) in expected.iter().enumerate() {
            let row = &embd[i * 64..(i + 1) * 64];
            let as_f64 = |xs: &[f32]| xs.iter().map(|&x| x as f64).collect::<Vec<_>>();
            assert_eq!(
                as_f64(&row[..4]),
                head,
                "{name}: token {tok} first elements"
            );
            assert_eq!(
                as_f64(&row[62..]),
                tail,
                "{name}: token {tok} last elements"
            );
            let t = *tok as usize;
            assert_eq!(row, &table[t * 64..(t + 1) * 64], "{name}: token {tok} row");
        }
    }
}

#[test]
fn missing_and_misshapen_tensors_are_errors() {
    // Rebuild the file with one tensor dropped / one metadata value that disagrees with a shape.
    let file = model_file();
    let write = |skip: &str, md: &Metadata| -> GgufFile {
        let mut w = gguf_importer::GgufWriter::new();
        w.add_all_metadata(md).expect("metadata");
        for t in file.tensors() {
            if t.name != skip {
                w.add_tensor(&t.name, &t.shape(), t.ty, file.tensor_data(t).to_vec())
                    .expect("add");
            }
        }
        GgufFile::from_bytes(w.to_bytes()).expect("read back")
    };
    let device = Device::flex();

    let f = write("blk.2.ffn_up.weight", file.metadata());
    match Llama::from_gguf(&f, &device) {
        Err(ModelError::MissingTensor { name }) => assert_eq!(name, "blk.2.ffn_up.weight"),
        other => panic!("expected MissingTensor, got {:?}", other.map(|_| ())),
    }

    // feed_forward_length 100 disagrees with ffn_gate's [172, 64].
    let md = edited_metadata(
        &[],
        &[("llama.feed_forward_length", gguf_importer::Value::U32(100))],
    );
    let f = write("", &md);
    match Llama::from_gguf(&f, &device) {
        Err(ModelError::ShapeMismatch {
            name,
            expected,
            found,
        }) => {
            assert_eq!(name, "blk.0.ffn_gate.weight");
            assert_eq!(expected, vec![100, 64]);
            assert_eq!(found, vec![172, 64]);
        }
        other => panic!("expected ShapeMismatch, got {:?}", other.map(|_| ())),
    }

    // Without output.weight the output is tied to the token embedding (llama.cpp's
    // TENSOR_DUPLICATED fallback).
    let f = write("output.weight", file.metadata());
    let model = Llama::from_gguf(&f, &device).expect("tied model loads");
    assert!(model.has_tied_embeddings());
    assert!(!load(&device).has_tied_embeddings());
}

// ---------------------------------------------------------------------------------------------
// KV cache

/// Logits of `ids` fed `chunks` at a time through one F32 cache, `[len, n_vocab]` flattened.
fn logits_in_chunks(model: &Llama, ids: &[u32], chunks: &[usize], device: &Device) -> Vec<f32> {
    logits_in_chunks_with(model, ids, chunks, device, CacheTypes::F32)
}

/// Logits of `ids` fed `chunks` at a time through one cache of `types`, `[len, n_vocab]`
/// flattened.
fn logits_in_chunks_with(
    model: &Llama,
    ids: &[u32],
    chunks: &[usize],
    device: &Device,
    types: CacheTypes,
) -> Vec<f32> {
    let mut cache = model.new_cache_with(1, ids.len(), types);
    let mut out = Vec::new();
    let mut pos = 0;
    for &n in chunks {
        let logits = model
            .forward(tokens(&ids[pos..pos + n], device), &mut cache)
            .expect("forward");
        assert_eq!(logits.dims(), [1, n, 512]);
        out.extend(to_vec(logits));
        pos += n;
        assert_eq!(cache.len(), pos);
    }
    assert_eq!(pos, ids.len());
    out
}

#[test]
fn incremental_decoding_equals_full_recompute() {
    let prompts = fixture();
    let p = &prompts[0];
    // The prompt and 24 tokens of llama.cpp's continuation.
    let ids: Vec<u32> = p
        .prompt_tokens
        .iter()
        .chain(&p.greedy_tokens[..24])
        .copied()
        .collect();
    let n_prompt = p.prompt_tokens.len();
    let mut one_by_one = vec![n_prompt];
    one_by_one.extend(std::iter::repeat_n(1, ids.len() - n_prompt));
    for ((name, device), types) in devices()
        .into_iter()
        .flat_map(|d| [(d.clone(), CacheTypes::F32), (d, CacheTypes::F16)])
    {
        let model = load(&device);
        let run = |chunks: &[usize]| logits_in_chunks_with(&model, &ids, chunks, &device, types);
        let full = run(&[ids.len()]);
        let incremental = run(&one_by_one);
        let uneven = run(&[3, 7, 1, 12, 6]);
        let scale = max_abs(&full);
        let d1 = max_abs_diff(&incremental, &full);
        let d2 = max_abs_diff(&uneven, &full);
        let name = format!("{name} {types:?}");
        eprintln!(
            "{name}: incremental vs full {d1:e}, chunks vs full {d2:e} (max |logit| {scale})"
        );
        // f32 math summed in other orders: 1e-4 of the logits' scale. With an f16 cache, one
        // position at a time and several at once sum the f32 weights' products in different
        // orders, as llama.cpp does (`vec_dot_f32` for one row, tinyBLAS for several: CPU
        // devices), so a cached key or value can round to the neighbouring f16 (2^-11 relative);
        // measured on flex 2.8e-4 of the scale (stories260K), bounded by 2^-10.
        let tol = match types.k {
            KvType::F16 => 2f32.powi(-10),
            _ => 1e-4,
        };
        assert!(
            d1 <= tol * scale,
            "{name}: incremental differs by {d1} (scale {scale})"
        );
        assert!(
            d2 <= tol * scale,
            "{name}: chunked differs by {d2} (scale {scale})"
        );
    }
}

/// An input longer than [`UBATCH`] positions is computed in passes of `UBATCH` (llama.cpp's
/// `n_ubatch` split): one call gives, bit for bit, what the same split made by hand gives, for
/// both logits modes and a batch of two, and leaves the cache at the whole length; the last
/// position's logits alone equal those of every position to rounding.
#[test]
fn inputs_longer_than_a_ubatch_run_in_ubatches() {
    let file = model_file();
    let seq = UBATCH + 88;
    let mut config = LlamaConfig::from_file(&file).expect("config");
    config.context_length = seq + 8; // stories260K's own is 512
    let ids: Vec<u32> = (0..2 * seq as u32).map(|i| (i * 7919 + 13) % 512).collect();
    let rows: Vec<&[u32]> = ids.chunks_exact(seq).collect();
    let piece = |r: std::ops::Range<usize>| -> Vec<u32> {
        rows.iter()
            .flat_map(|row| &row[r.clone()])
            .copied()
            .collect()
    };
    for (name, device) in devices() {
        let model =
            Llama::from_gguf_with_config(&file, config.clone(), &device, Weights::Quantized)
                .expect("stories260k loads");
        let mut cache = model.new_cache_with(2, seq, CacheTypes::F32);
        let all = model
            .forward_ids(&ids, 2, &mut cache, Logits::All)
            .expect("forward");
        assert_eq!(all.dims(), [2, seq, 512], "{name}");
        assert_eq!(cache.len(), seq, "{name}");

        let mut cache = model.new_cache_with(2, seq, CacheTypes::F32);
        let first = model
            .forward_ids(&piece(0..UBATCH), 2, &mut cache, Logits::All)
            .expect("first pass");
        let rest = model
            .forward_ids(&piece(UBATCH..seq), 2, &mut cache, Logits::All)
            .expect("second pass");
        let by_hand = Tensor::cat(vec![first, rest], 1);
        assert_eq!(to_vec(all.clone()), to_vec(by_hand), "{name}: Logits::All");

        let mut cache = model.new_cache_with(2, seq, CacheTypes::F32);
        let last = model
            .forward_ids(&ids, 2, &mut cache, Logits::Last)
            .expect("forward");
        assert_eq!(last.dims(), [2, 1, 512], "{name}");
        let mut cache = model.new_cache_with(2, seq, CacheTypes::F32);
        model
            .forward_ids(&piece(0..UBATCH), 2, &mut cache, Logits::All)
            .expect("first pass");
        let last_by_hand = model
            .forward_ids(&piece(UBATCH..seq), 2, &mut cache, Logits::Last)
            .expect("second pass");
        let last = to_vec(last);
        assert_eq!(last, to_vec(last_by_hand), "{name}: Logits::Last");
        // Logits::Last runs the last block's feed-forward and the output on one row (as
        // llama.cpp's graph does): other matmul shapes, the same values to rounding.
        let all_last = to_vec(all.narrow(1, seq - 1, 1));
        let d = max_abs_diff(&last, &all_last);
        assert!(
            d <= LOGIT_ATOL,
            "{name}: Logits::Last vs All's last row: {d}"
        );
    }
}

#[test]
fn batched_sequences_equal_single_ones() {
    // Two sequences of the same length in one batch give each sequence's own logits.
    let prompts = fixture();
    let (a, b) = (&prompts[0].prompt_tokens, &prompts[1].prompt_tokens);
    assert_eq!(
        a.len(),
        b.len(),
        "fixture prompts 0 and 1 have the same length"
    );
    for (name, device) in devices() {
        let model = load(&device);
        let ids: Vec<i64> = a.iter().chain(b).map(|&i| i as i64).collect();
        let batch = Tensor::<2, Int>::from_data(TensorData::new(ids, [2, a.len()]), &device);
        let mut cache = model.new_cache_with(2, 16, CacheTypes::F32);
        let both = to_vec(model.forward(batch, &mut cache).expect("forward"));
        let single_a = logits_in_chunks(&model, a, &[a.len()], &device);
        let single_b = logits_in_chunks(&model, b, &[b.len()], &device);
        let half = both.len() / 2;
        assert!(
            max_abs_diff(&both[..half], &single_a) <= 1e-4 * max_abs(&single_a),
            "{name}: batch row 0"
        );
        assert!(
            max_abs_diff(&both[half..], &single_b) <= 1e-4 * max_abs(&single_b),
            "{name}: batch row 1"
        );
    }
}

/// `forward_ids` (host ids, what generation and evaluation use) computes what `forward` computes
/// on the same ids as a tensor, bit for bit, with the same typed errors.
#[test]
fn host_ids_equal_a_token_tensor() {
    let prompts = fixture();
    let (a, b) = (&prompts[0].prompt_tokens, &prompts[1].prompt_tokens);
    for (name, device) in devices() {
        let model = load(&device);
        let ids: Vec<u32> = a.iter().chain(b).copied().collect();
        let tensor = Tensor::<2, Int>::from_data(
            TensorData::new(ids.iter().map(|&i| i as i64).collect(), [2, a.len()]),
            &device,
        );
        let mut cache = model.new_cache_with(2, 16, CacheTypes::F32);
        let want = to_vec(model.forward(tensor, &mut cache).expect("forward"));
        let mut cache = model.new_cache_with(2, 16, CacheTypes::F32);
        let got = to_vec(
            model
                .forward_ids(&ids, 2, &mut cache, Logits::All)
                .expect("forward_ids"),
        );
        assert_eq!(
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{name}"
        );
        assert_eq!(cache.len(), a.len());
    }
    let device = Device::flex();
    let model = load(&device);
    let mut cache = model.new_cache(1, 8);
    for (ids, batch) in [
        (&[1u32, 512][..], 1),
        (&[][..], 1),
        (&[1, 2, 3][..], 2),
        (&[1][..], 0),
    ] {
        assert!(
            matches!(
                model.forward_ids(ids, batch, &mut cache, Logits::All),
                Err(ModelError::InvalidInput { .. })
            ),
            "{ids:?} in {batch} rows"
        );
    }
    assert!(cache.is_empty(), "failed passes cache nothing");
}

#[test]
fn too_long_inputs_are_errors_not_panics() {
    let device = Device::flex();
    let model = load(&device);
    let ctx = model.config().context_length; // 512, from the file

    // A prompt longer than the context.
    let ids = vec![1u32; ctx + 1];
    let mut cache = model.new_cache(1, ctx + 1);
    match model.forward(tokens(&ids, &device), &mut cache) {
        Err(ModelError::ContextOverflow {
            needed,
            context_length,
        }) => {
            assert_eq!((needed, context_length), (ctx + 1, ctx));
        }
        other => panic!(
            "expected ContextOverflow, got {:?}",
            other.map(|t| t.dims())
        ),
    }
    assert_eq!(cache.len(), 0, "a failed pass caches nothing");

    // Filling the context exactly works; one more token overflows.
    let mut cache = model.new_cache(1, ctx);
    model
        .forward(tokens(&ids[..ctx - 1], &device), &mut cache)
        .expect("ctx - 1 positions");
    model
        .forward(tokens(&[1], &device), &mut cache)
        .expect("the last position");
    assert_eq!(cache.len(), ctx);
    assert!(matches!(
        model.forward(tokens(&[1], &device), &mut cache),
        Err(ModelError::ContextOverflow { needed, .. }) if needed == ctx + 1
    ));

    // A cache smaller than the context.
    let mut cache = model.new_cache(1, 4);
    assert!(matches!(
        model.forward(tokens(&[1, 2, 3, 4, 5], &device), &mut cache),
        Err(ModelError::CacheFull {
            needed: 5,
            capacity: 4
        })
    ));

    // Token ids outside the vocabulary, an empty input, a cache of another batch size.
    let mut cache = model.new_cache(1, 8);
    assert!(matches!(
        model.forward(tokens(&[1, 512], &device), &mut cache),
        Err(ModelError::InvalidInput { .. })
    ));
    let empty = Tensor::<2, Int>::from_data(TensorData::new(Vec::<i64>::new(), [1, 0]), &device);
    assert!(matches!(
        model.forward(empty, &mut cache),
        Err(ModelError::InvalidInput { .. })
    ));
    let mut cache2 = model.new_cache(2, 8);
    assert!(matches!(
        model.forward(tokens(&[1], &device), &mut cache2),
        Err(ModelError::CacheMismatch { .. })
    ));

    // reset forgets the positions.
    let mut cache = model.new_cache(1, 8);
    model
        .forward(tokens(&[1, 403, 407], &device), &mut cache)
        .expect("forward");
    cache.reset();
    assert!(cache.is_empty());
    model
        .forward(tokens(&[1, 403, 407], &device), &mut cache)
        .expect("forward after reset");
    assert_eq!(cache.len(), 3);
}

// ---------------------------------------------------------------------------------------------
// Backends and llama.cpp

#[test]
fn devices_agree() {
    let p = &fixture()[0];
    let ids: Vec<u32> = p
        .prompt_tokens
        .iter()
        .chain(&p.greedy_tokens[..8])
        .copied()
        .collect();
    let mut reference: Option<Vec<f32>> = None;
    for (name, device) in devices() {
        let model = load(&device);
        let logits = logits_in_chunks(&model, &ids, &[ids.len()], &device);
        match &reference {
            None => reference = Some(logits),
            Some(r) => {
                let d = max_abs_diff(&logits, r);
                eprintln!("{name} vs flex: max |diff| {d:e}");
                assert!(d <= LOGIT_ATOL, "{name} differs from flex by {d}");
            }
        }
    }
}

#[test]
#[allow(deprecated)] // Device::ndarray
fn tokens_on_another_device_are_moved() {
    let model = load(&Device::flex());
    let ids = [1u32, 403, 407];
    let mut cache = model.new_cache(1, 4);
    let here = to_vec(
        model
            .forward(tokens(&ids, &Device::flex()), &mut cache)
            .expect("forward"),
    );
    let mut cache = model.new_cache(1, 4);
    let there = to_vec(
        model
            .forward(tokens(&ids, &Device::ndarray()), &mut cache)
            .expect("forward"),
    );
    assert_eq!(here, there);
}

#[test]
fn trace_names_follow_llama_cpp() {
    // The names llama.cpp's eval callback reported for "Once upon a time", in graph order (the
    // fixture's activation list, recorded by scripts/llama_activations.py: `{name}` is the last
    // graph node of that name, `{name}#{k}` earlier ones, which this model does not report).
    let path = root().join("tests/fixtures/llama/stories260k.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON");
    let acts = &json["activations"];
    let expected: Vec<&str> = acts["tensors"]
        .as_array()
        .expect("activations")
        .iter()
        .map(|t| t["key"].as_str().expect("key"))
        .filter(|k| !k.contains('#'))
        .collect();
    let ids: Vec<u32> = acts["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect();
    let device = Device::flex();
    let model = load(&device);
    let mut cache = model.new_cache_with(1, ids.len(), CacheTypes::F32);
    let mut names = Vec::new();
    model
        .forward_traced(
            tokens(&ids, &device),
            &mut cache,
            Logits::All,
            &mut |n, t| {
                assert_eq!(t.dims()[..2], [1, ids.len()], "{n}: [batch, seq, dim]");
                names.push(n.to_string());
            },
        )
        .expect("forward");
    assert_eq!(names, expected);
}

#[test]
fn greedy_continuations_match_llama_cpp() {
    let prompts = fixture();
    assert!(!prompts.is_empty());
    for (name, device) in devices() {
        let model = load(&device);
        for (i, p) in prompts.iter().enumerate() {
            let n_gen = p.greedy_tokens.len();
            let mut cache = model.new_cache_with(1, p.prompt_tokens.len() + n_gen, CacheTypes::F32);

            // The prompt in one pass; its logits against llama.cpp's.
            let logits = to_vec(
                model
                    .forward(tokens(&p.prompt_tokens, &device), &mut cache)
                    .expect("prompt"),
            );
            let (shape, want) = &p.prompt_logits;
            assert_eq!(shape, &vec![p.prompt_tokens.len(), 512], "fixture shape");
            let d = max_abs_diff(&logits, want);
            assert!(
                d <= LOGIT_ATOL,
                "{name}, prompt {i} {:?}: prompt logits differ by {d}",
                p.text
            );
            let mut all_logits = logits.clone();

            // Greedy decoding, one token per pass.
            let mut next = argmax(&logits[logits.len() - 512..]);
            let mut generated = Vec::new();
            for step in 0..n_gen {
                generated.push(next);
                assert_eq!(
                    next, p.greedy_tokens[step],
                    "{name}, prompt {i} {:?}: token {step} differs ({generated:?})",
                    p.text
                );
                let row = to_vec(
                    model
                        .forward(tokens(&[next], &device), &mut cache)
                        .expect("decode"),
                );
                next = argmax(&row);
                all_logits.extend(row);
            }
            assert_eq!(generated, p.greedy_tokens);

            // Every position of prompt + generation, where the fixture has them.
            if let Some((shape, want)) = &p.full_logits {
                assert_eq!(
                    shape,
                    &vec![p.prompt_tokens.len() + n_gen, 512],
                    "fixture shape"
                );
                let d = max_abs_diff(&all_logits, want);
                eprintln!(
                    "{name}, prompt {i}: max |logit diff| over {} positions {d:e}",
                    shape[0]
                );
                assert!(d <= LOGIT_ATOL, "{name}, prompt {i}: logits differ by {d}");
            }
        }
    }
}
