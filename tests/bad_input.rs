//! Bad models and bad inputs through the public API: each fails with its own typed error, which
//! names the metadata key, tensor or sizes at fault; none panics.
//!
//! Every bad model is `models/stories260k-f32.gguf` (n_embd 64, 8 heads, 4 key/value heads,
//! 5 layers, a vocabulary of 512 tokens, a context of 512) rewritten here with `GgufWriter`: a
//! metadata value changed or removed, or a tensor replaced. Runs on flex.

mod common;

use burn::tensor::Device;
use gguf_llama::generate::{generate, GenerateConfig, StopReason};
use gguf_llama::gguf::{GgmlType, GgufFile, GgufWriter, Metadata, Value, ValueType};
use gguf_llama::model::{Llama, Logits, ModelError, Weights};
use gguf_llama::sampling::SamplerConfig;
use gguf_llama::tokenizer::Tokenizer;
use gguf_llama::Error;

/// `rel` under this package (`common::root`: `CARGO_MANIFEST_DIR` at run time).
fn in_package(rel: &str) -> String {
    common::root().join(rel).display().to_string()
}

static MODEL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| in_package("models/stories260k-f32.gguf"));

fn original() -> GgufFile {
    GgufFile::open(MODEL.as_str()).expect("the committed stories260K")
}

/// A tensor written in place of the original's tensor of the same name (or added).
struct Tensor {
    name: &'static str,
    shape: Vec<usize>,
    ty: GgmlType,
    data: Vec<u8>,
}

impl Tensor {
    fn f32(name: &'static str, shape: &[usize], values: &[f32]) -> Self {
        Tensor {
            name,
            shape: shape.to_vec(),
            ty: GgmlType::F32,
            data: values.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
}

/// stories260K with metadata `edits` applied (a value set, or `None`: the key removed) and
/// `tensors` in place of the originals of the same names.
fn rewritten(edits: &[(&str, Option<Value>)], tensors: Vec<Tensor>) -> GgufFile {
    let src = original();
    let mut md = Metadata::new();
    for (k, v) in src.metadata().iter() {
        if !edits.iter().any(|(e, _)| *e == k) {
            md.set(k, v.clone());
        }
    }
    for (k, v) in edits {
        if let Some(v) = v {
            md.set(*k, v.clone());
        }
    }
    let mut w = GgufWriter::new();
    w.add_all_metadata(&md).unwrap();
    for t in src.tensors() {
        match tensors.iter().find(|r| r.name == t.name) {
            Some(r) => w.add_tensor(r.name, &r.shape, r.ty, r.data.clone()),
            None => w.add_tensor(&t.name, &t.shape(), t.ty, src.tensor_data(t).to_vec()),
        }
        .unwrap();
    }
    GgufFile::from_bytes(w.to_bytes()).expect("the rewritten file parses")
}

/// The rows `0..rows` of an F32 matrix of the original, `[rows, cols]`.
fn first_rows(name: &'static str, rows: usize) -> Tensor {
    let src = original();
    let info = src.tensor(name).unwrap();
    let cols = info.shape()[1];
    Tensor {
        name,
        shape: vec![rows, cols],
        ty: GgmlType::F32,
        data: src.tensor_data(info)[..rows * cols * 4].to_vec(),
    }
}

fn load(file: &GgufFile) -> Result<Llama, ModelError> {
    Llama::from_gguf(file, &Device::flex())
}

/// The error of loading `file`, which must fail.
fn load_error(file: &GgufFile) -> ModelError {
    match load(file) {
        Ok(_) => panic!("the model loaded"),
        Err(e) => e,
    }
}

/// Asserts an `InvalidConfig` error for `key` with `reason`, and its message.
fn assert_invalid_config(err: ModelError, key: &str, reason: &str) {
    let msg = err.to_string();
    match err {
        ModelError::InvalidConfig { key: k, reason: r } => {
            assert_eq!((k.as_str(), r.as_str()), (key, reason));
            assert_eq!(msg, format!("metadata key {key:?}: {reason}"));
        }
        other => panic!("expected InvalidConfig for {key}, got {other:?}"),
    }
}

/// A UINT32 metadata value to set.
fn uint(v: u32) -> Option<Value> {
    Some(Value::U32(v))
}

// ---------------------------------------------------------------------------------------------
// Hyper-parameters

#[test]
fn head_count_not_a_multiple_of_head_count_kv() {
    let f = rewritten(&[("llama.attention.head_count_kv", uint(3))], vec![]);
    assert_invalid_config(
        load_error(&f),
        "llama.attention.head_count_kv",
        "3 key/value heads do not divide the 8 query heads",
    );
    // More key/value heads than query heads.
    let f = rewritten(&[("llama.attention.head_count_kv", uint(16))], vec![]);
    assert_invalid_config(
        load_error(&f),
        "llama.attention.head_count_kv",
        "16 key/value heads do not divide the 8 query heads",
    );
}

#[test]
fn embedding_length_not_divisible_by_head_count_without_head_sizes() {
    // 64 / 7 is not whole, and no key_length says what the head size is.
    let f = rewritten(
        &[
            ("llama.attention.head_count", uint(7)),
            ("llama.attention.head_count_kv", uint(7)),
        ],
        vec![],
    );
    assert_invalid_config(
        load_error(&f),
        "llama.attention.key_length",
        "absent, and embedding_length 64 is not a multiple of head_count 7",
    );
    // With key_length given, the value head size still defaults to n_embd / n_head.
    let f = rewritten(
        &[
            ("llama.attention.head_count", uint(7)),
            ("llama.attention.head_count_kv", uint(7)),
            ("llama.attention.key_length", uint(8)),
        ],
        vec![],
    );
    assert_invalid_config(
        load_error(&f),
        "llama.attention.value_length",
        "absent, and embedding_length 64 is not a multiple of head_count 7",
    );
}

#[test]
fn zero_heads() {
    let f = rewritten(&[("llama.attention.head_count", uint(0))], vec![]);
    assert_invalid_config(
        load_error(&f),
        "llama.attention.head_count",
        "must be positive",
    );

    let f = rewritten(&[("llama.attention.head_count_kv", uint(0))], vec![]);
    assert_invalid_config(
        load_error(&f),
        "llama.attention.head_count_kv",
        "must be positive (layer 0 has 0 key/value heads)",
    );
    // Per layer: the layer is named.
    let per_layer = [4, 4, 4, 0, 4].map(Value::U32).to_vec();
    let f = rewritten(
        &[(
            "llama.attention.head_count_kv",
            Some(Value::Array(ValueType::U32, per_layer)),
        )],
        vec![],
    );
    assert_invalid_config(
        load_error(&f),
        "llama.attention.head_count_kv",
        "must be positive (layer 3 has 0 key/value heads)",
    );
}

// ---------------------------------------------------------------------------------------------
// Vocabulary against the embedding

#[test]
fn token_embd_rows_are_not_the_vocabulary() {
    // 500 rows for the 512 tokens of tokenizer.ggml.tokens.
    let f = rewritten(&[], vec![first_rows("token_embd.weight", 500)]);
    let err = load_error(&f);
    assert_eq!(
        err.to_string(),
        "tensor \"token_embd.weight\" has 500 rows, but the vocabulary has 512 tokens \
         (the length of tokenizer.ggml.tokens)"
    );
    assert!(matches!(
        err,
        ModelError::VocabMismatch { tensor, rows: 500, vocab_size: 512, .. }
            if tensor == "token_embd.weight"
    ));

    // The same against an explicit llama.vocab_size.
    let f = rewritten(
        &[("llama.vocab_size", uint(512))],
        vec![first_rows("token_embd.weight", 500)],
    );
    assert!(matches!(
        load_error(&f),
        ModelError::VocabMismatch { vocab_from, rows: 500, .. } if vocab_from == "llama.vocab_size"
    ));

    // The output projection too.
    let f = rewritten(&[], vec![first_rows("output.weight", 500)]);
    assert!(matches!(
        load_error(&f),
        ModelError::VocabMismatch { tensor, rows: 500, vocab_size: 512, .. }
            if tensor == "output.weight"
    ));

    // No rows at all (a dimension of 0 is a valid GGUF shape, not a valid vocabulary).
    let f = rewritten(&[], vec![Tensor::f32("token_embd.weight", &[0, 64], &[])]);
    assert!(matches!(
        load_error(&f),
        ModelError::VocabMismatch {
            rows: 0,
            vocab_size: 512,
            ..
        }
    ));
}

/// The first `n` entries of each tokenizer array of the original.
fn truncated_vocabulary(n: usize) -> Vec<(&'static str, Option<Value>)> {
    let src = original();
    [
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.scores",
        "tokenizer.ggml.token_type",
    ]
    .into_iter()
    .map(|k| {
        let (ty, items) = src.metadata().get_array(k).unwrap();
        (k, Some(Value::Array(ty, items[..n].to_vec())))
    })
    .collect()
}

#[test]
fn tokenizer_vocabulary_shorter_than_token_embd() {
    // 500 tokens for the 512 rows of token_embd: the tokenizer reads fine, the model refuses
    // (llama.cpp sizes token_embd by the tokenizer's vocabulary too).
    let f = rewritten(&truncated_vocabulary(500), vec![]);
    assert_eq!(
        Tokenizer::from_gguf(f.metadata()).unwrap().vocab_size(),
        500
    );
    let err = load_error(&f);
    assert_eq!(
        err.to_string(),
        "tensor \"token_embd.weight\" has 512 rows, but the vocabulary has 500 tokens \
         (the length of tokenizer.ggml.tokens)"
    );
    assert!(matches!(
        err,
        ModelError::VocabMismatch {
            rows: 512,
            vocab_size: 500,
            ..
        }
    ));

    // A vocab_size key that agrees with token_embd but not with the tokenizer: the model would
    // produce ids 500..512 that the tokenizer cannot decode.
    let mut edits = truncated_vocabulary(500);
    edits.push(("llama.vocab_size", uint(512)));
    let f = rewritten(&edits, vec![]);
    assert_invalid_config(
        load_error(&f),
        "llama.vocab_size",
        "512, but tokenizer.ggml.tokens lists 500 tokens: the two must agree",
    );
}

// ---------------------------------------------------------------------------------------------
// Tensors

#[test]
fn an_unsupported_ggml_type_names_the_tensor_and_the_type() {
    // attn_q as Q8_K (a type the importer lists but neither dequantizes nor multiplies: ggml's
    // K-quant activation format, never a weight in files; 256-element blocks of 292 bytes), which
    // is refused by its type before its shape is looked at.
    let ty = GgmlType::Q8_K;
    let q = Tensor {
        name: "blk.0.attn_q.weight",
        shape: vec![64, 256],
        ty,
        data: vec![0; 64 * 292],
    };
    let f = rewritten(&[], vec![q]);
    for weights in [Weights::Quantized, Weights::F32] {
        match Llama::from_gguf_with_weights(&f, &Device::flex(), weights) {
            Err(e @ ModelError::UnsupportedTensorType { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.starts_with(&format!(
                        "tensor \"blk.0.attn_q.weight\" has ggml type {ty}, which this crate \
                         cannot load (supported: F32, F16, Q4_0,"
                    )),
                    "{msg}"
                );
                assert!(matches!(
                    e,
                    ModelError::UnsupportedTensorType { name, ty: t, .. }
                        if name == "blk.0.attn_q.weight" && t == ty
                ));
            }
            other => panic!("{ty} with {weights:?}: {:?}", other.map(|_| ())),
        }
    }
}

/// IQ4_NL and MXFP4 (the formats of the old "no kernel yet" case: every type the importer
/// dequantizes now has a CPU kernel) run in their blocks on flex: a file whose `attn_q` is one of
/// them loads with quantized weights and with f32 weights, and the two give the same logits up
/// to the 8-bit rounding of the activations the block kernels multiply (random blocks of small
/// scale: the attention scores, and so the logits, move by far less than 1e-2).
#[test]
fn iq4_nl_and_mxfp4_run_in_their_blocks() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut byte = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as u8
    };
    for (ty, block_bytes) in [(GgmlType::IQ4_NL, 18), (GgmlType::MXFP4, 17)] {
        let mut data = Vec::new();
        for _ in 0..64 * 2 {
            let mut block: Vec<u8> = (0..block_bytes).map(|_| byte()).collect();
            match ty {
                // f16 d = 2^-10: weights up to ~0.12
                GgmlType::IQ4_NL => block[..2].copy_from_slice(&0x1400u16.to_le_bytes()),
                // E8M0 half scale 2^-8: weights up to ~0.05
                _ => block[0] = 120,
            }
            data.extend(block);
        }
        let q = Tensor {
            name: "blk.0.attn_q.weight",
            shape: vec![64, 64],
            ty,
            data,
        };
        let f = rewritten(&[], vec![q]);
        let logits = |weights| {
            let model = Llama::from_gguf_with_weights(&f, &Device::flex(), weights).unwrap();
            let mut cache = model.new_cache(1, 4);
            let logits = model
                .forward_ids(&[1, 2, 3], 1, &mut cache, Logits::Last)
                .unwrap();
            logits.into_data().try_to_vec::<f32>().unwrap()
        };
        let (blocks, dense) = (logits(Weights::Quantized), logits(Weights::F32));
        assert_eq!(blocks.len(), dense.len());
        let diff = blocks
            .iter()
            .zip(&dense)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-2, "{ty}: logits differ by {diff}");
        assert!(blocks.iter().all(|v| v.is_finite()), "{ty}");
    }
}

#[test]
fn zero_element_and_scalar_weights_fail_the_shape_check() {
    // GGUF allows a dimension of 0 and n_dims = 0 (a one-element scalar), as ggml does; as a
    // weight of the model they are the wrong shape, found before any element is read.
    for (shape, found) in [(vec![0], vec![0]), (vec![], vec![])] {
        let values = vec![1.0; shape.iter().product()];
        let f = rewritten(
            &[],
            vec![Tensor::f32("blk.0.attn_norm.weight", &shape, &values)],
        );
        match load_error(&f) {
            ModelError::ShapeMismatch {
                name,
                expected,
                found: f,
            } => {
                assert_eq!(name, "blk.0.attn_norm.weight");
                assert_eq!((expected, f), (vec![64], found));
            }
            other => panic!("shape {shape:?}: {other:?}"),
        }
    }
    let f = rewritten(
        &[],
        vec![Tensor::f32("blk.1.ffn_gate.weight", &[172, 0], &[])],
    );
    assert!(matches!(
        load_error(&f),
        ModelError::ShapeMismatch { name, found, .. }
            if name == "blk.1.ffn_gate.weight" && found == [172, 0]
    ));
    // Read on its own, such a tensor is an empty Burn tensor.
    let empty =
        gguf_llama::gguf::burn::tensor_f32::<2>(&f, "blk.1.ffn_gate.weight", &Device::flex())
            .unwrap();
    assert_eq!(empty.dims(), [172, 0]);
}

// ---------------------------------------------------------------------------------------------
// Inputs through the public API

/// `n` token ids of the vocabulary, varied.
fn ids(n: usize) -> Vec<u32> {
    (0..n).map(|i| (i * 7 % 511 + 1) as u32).collect()
}

#[test]
fn empty_prompts_are_errors() {
    let model = load(&original()).unwrap();
    let mut cache = model.new_cache(1, 8);
    match model.forward_ids(&[], 1, &mut cache, Logits::Last) {
        Err(e @ ModelError::InvalidInput { .. }) => {
            assert_eq!(
                e.to_string(),
                "invalid input: 0 token ids do not make 1 rows of tokens"
            )
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert_eq!(cache.len(), 0);

    let tokenizer = Tokenizer::from_gguf(original().metadata()).unwrap();
    let r = generate(
        &model,
        &tokenizer,
        &[],
        &GenerateConfig::default(),
        &mut |_| {},
    );
    assert!(matches!(r, Err(Error::EmptyPrompt)), "{:?}", r.map(|_| ()));
}

#[test]
fn prompts_longer_than_the_context_are_errors() {
    let model = load(&original()).unwrap();
    let prompt = ids(513);
    let mut cache = model.new_cache(1, 513);
    match model.forward_ids(&prompt, 1, &mut cache, Logits::Last) {
        Err(e @ ModelError::ContextOverflow { .. }) => assert_eq!(
            e.to_string(),
            "513 positions needed, but the context length is 512"
        ),
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert_eq!(cache.len(), 0);

    let tokenizer = Tokenizer::from_gguf(original().metadata()).unwrap();
    let r = generate(
        &model,
        &tokenizer,
        &prompt,
        &GenerateConfig::default(),
        &mut |_| {},
    );
    assert!(
        matches!(
            r,
            Err(Error::Model(ModelError::ContextOverflow {
                needed: 513,
                context_length: 512
            }))
        ),
        "{:?}",
        r.map(|_| ())
    );
}

#[test]
fn a_full_context_or_cache_is_an_error_and_ends_generation() {
    let model = load(&original()).unwrap();

    // The whole context fits; one position more does not.
    let mut cache = model.new_cache(1, 512);
    model
        .forward_ids(&ids(512), 1, &mut cache, Logits::Last)
        .unwrap();
    assert!(matches!(
        model.forward_ids(&[1], 1, &mut cache, Logits::Last),
        Err(ModelError::ContextOverflow {
            needed: 513,
            context_length: 512
        })
    ));
    assert_eq!(cache.len(), 512);

    // A cache smaller than the context is full first.
    let mut cache = model.new_cache(1, 8);
    model
        .forward_ids(&ids(8), 1, &mut cache, Logits::Last)
        .unwrap();
    match model.forward_ids(&[1], 1, &mut cache, Logits::Last) {
        Err(e @ ModelError::CacheFull { .. }) => assert_eq!(
            e.to_string(),
            "9 positions needed, but the KV cache holds 8"
        ),
        other => panic!("{:?}", other.map(|_| ())),
    }

    // Generation that reaches the end of the context stops there: from 510 prompt positions,
    // two more are decoded, and the token sampled from the last one's logits ends it.
    let tokenizer = Tokenizer::from_gguf(original().metadata()).unwrap();
    let config = GenerateConfig {
        max_tokens: 10,
        sampler: SamplerConfig::greedy(),
        stop_at_eog: false,
        ..GenerateConfig::default()
    };
    let g = generate(&model, &tokenizer, &ids(510), &config, &mut |_| {}).unwrap();
    assert_eq!(g.stop, StopReason::ContextFull);
    assert_eq!(g.tokens.len(), 3);
}
