//! Ragged passes ([`Llama::forward_ragged`], the server's continuous batching): several sequences
//! at different positions, each over its own cache, in one pass, against each sequence alone and
//! against the batched forward pass of equal-length sequences.
//!
//! No reference numbers: the references are this crate's own single-sequence passes, which
//! tests/parity.rs and tests/llama_cpp_defaults.rs hold to llama.cpp's.

mod common;

use common::*;
use gguf_llama::cli;
use gguf_llama::gguf::GgufFile;
use gguf_llama::model::{CacheTypes, KvCache, Llama, Logits, SeqStep};
use gguf_llama::tokenizer::Tokenizer;

/// The three sequences of the test: (cached prefix, new tokens).
fn sequences(tokenizer: &Tokenizer) -> Vec<(Vec<u32>, Vec<u32>)> {
    let enc = |s: &str| tokenizer.encode(s, true, true);
    let a = enc("Once upon a time, there was a little dog named Max.");
    let b = enc("The cat sat on the mat and looked at the bird");
    let c = enc("Lily wanted to play");
    vec![
        // A decoding step: 11 cached positions, one new token.
        (a[..a.len() - 1].to_vec(), a[a.len() - 1..].to_vec()),
        // A prompt in one piece.
        (Vec::new(), b),
        // The rest of a prompt whose first 3 tokens are cached.
        (c[..3].to_vec(), c[3..].to_vec()),
    ]
}

fn step<'a>(tokens: &'a [u32], cache: &'a mut KvCache, logits: bool) -> SeqStep<'a> {
    SeqStep {
        tokens,
        cache,
        logits,
    }
}

fn logits_alone(model: &Llama, prefix: &[u32], new: &[u32]) -> (Vec<f32>, KvCache) {
    let mut cache = model.new_cache_with(1, 64, CacheTypes::default());
    if !prefix.is_empty() {
        model
            .forward_ids(prefix, 1, &mut cache, Logits::Last)
            .unwrap();
    }
    let l = model.forward_ids(new, 1, &mut cache, Logits::Last).unwrap();
    (to_vec(l), cache)
}

/// (alone, ragged) logits of each sequence.
fn both(model: &Llama, tokenizer: &Tokenizer) -> Vec<(Vec<f32>, Vec<f32>)> {
    let seqs = sequences(tokenizer);
    let alone: Vec<Vec<f32>> = seqs
        .iter()
        .map(|(p, n)| logits_alone(model, p, n).0)
        .collect();
    let mut caches: Vec<KvCache> = seqs
        .iter()
        .map(|(p, _)| {
            let mut cache = model.new_cache_with(1, 64, CacheTypes::default());
            if !p.is_empty() {
                model.forward_ids(p, 1, &mut cache, Logits::Last).unwrap();
            }
            cache
        })
        .collect();
    let mut steps: Vec<SeqStep> = seqs
        .iter()
        .zip(caches.iter_mut())
        .map(|((_, n), cache)| SeqStep {
            tokens: n,
            cache,
            logits: true,
        })
        .collect();
    let ragged = model.forward_ragged(&mut steps).unwrap().unwrap();
    let vocab = model.config().vocab_size;
    assert_eq!(ragged.dims(), [seqs.len(), vocab]);
    let ragged = to_vec(ragged);
    for ((p, n), cache) in seqs.iter().zip(&caches) {
        assert_eq!(cache.len(), p.len() + n.len());
    }
    alone
        .into_iter()
        .zip(ragged.chunks(vocab).map(<[f32]>::to_vec))
        .collect()
}

/// One sequence in a ragged pass is [`Llama::forward_ids`] of it, bit for bit, on every device.
#[test]
fn one_sequence_is_forward_ids_bit_for_bit() {
    let file = cli::open_model(None).unwrap();
    let tokenizer = Tokenizer::from_gguf(file.metadata()).unwrap();
    for (name, device) in devices() {
        let model = Llama::from_gguf(&file, &device).unwrap();
        for (i, (prefix, new)) in sequences(&tokenizer).iter().enumerate() {
            let (alone, mut cache) = logits_alone(&model, prefix, new);
            cache.truncate(prefix.len());
            let step = SeqStep {
                tokens: new,
                cache: &mut cache,
                logits: true,
            };
            let ragged = model.forward_ragged(&mut [step]).unwrap().unwrap();
            assert_bits_eq(&format!("{name} sequence {i}"), &to_vec(ragged), &alone);
            assert_eq!(cache.len(), prefix.len() + new.len());
        }
    }
}

/// Two sequences of equal length at the same position in a ragged pass give what a batch of two
/// over one cache gives (the same matmul shapes), bit for bit, on every device.
#[test]
fn equal_sequences_are_the_batched_pass_bit_for_bit() {
    let file = cli::open_model(None).unwrap();
    let tokenizer = Tokenizer::from_gguf(file.metadata()).unwrap();
    let a = tokenizer.encode("Once upon a time, there was a little dog", true, true);
    let b = tokenizer.encode("The sun was hot and the sky was blue", true, true);
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let split = n - 2;
    for (name, device) in devices() {
        let model = Llama::from_gguf(&file, &device).unwrap();
        // Batched: [2, split] then [2, 2] over a cache of batch 2.
        let mut both = model.new_cache_with(2, 64, CacheTypes::default());
        let rows = |x: &[u32], y: &[u32]| -> Vec<u32> { x.iter().chain(y).copied().collect() };
        model
            .forward_ids(&rows(&a[..split], &b[..split]), 2, &mut both, Logits::Last)
            .unwrap();
        let batched = model
            .forward_ids(&rows(&a[split..], &b[split..]), 2, &mut both, Logits::All)
            .unwrap();
        let batched = to_vec(batched); // [2, 2, vocab]
                                       // Ragged: the same two prefixes in one pass, then the last two tokens of each.
        let mut ca = model.new_cache_with(1, 64, CacheTypes::default());
        let mut cb = model.new_cache_with(1, 64, CacheTypes::default());
        let none = model
            .forward_ragged(&mut [
                step(&a[..split], &mut ca, false),
                step(&b[..split], &mut cb, false),
            ])
            .unwrap();
        assert!(none.is_none(), "{name}: no sequence asked for logits");
        let ragged = model
            .forward_ragged(&mut [
                step(&a[split..], &mut ca, true),
                step(&b[split..], &mut cb, true),
            ])
            .unwrap()
            .unwrap();
        let vocab = model.config().vocab_size;
        let ragged = to_vec(ragged); // the last position of each: [2, vocab]
        let last = |seq: usize| &batched[(seq * 2 + 1) * vocab..(seq * 2 + 2) * vocab];
        assert_bits_eq(&format!("{name} a"), &ragged[..vocab], last(0));
        assert_bits_eq(&format!("{name} b"), &ragged[vocab..], last(1));
        assert_eq!((ca.len(), cb.len()), (n, n));
    }
}

/// Sequences at different positions and of different lengths in one pass: each row is that
/// sequence alone, bit for bit, on models whose matmuls sum a row in the same order for any
/// number of rows: SmolLM2 Q4_1 (ggml's `vec_dot_q4_1_q8_1` order in decode and prefill; its
/// Q8_0 tensors' `vec_dot_q8_0_q8_0`, which tinyBLAS shares), IQ4_NL and MXFP4 (llama.cpp's
/// repacked order for any number of rows) and TQ2_0 (`vec_dot_tq2_0_q8_K` for any number).
/// stories260K's F32 matmuls take another order for several rows than for one (`vec_dot_f32` /
/// tinyBLAS, as llama.cpp), as do the K-quants from 8 rows and IQ4_XS (measured: a logit of
/// SmolLM2 IQ4_XS moves by 0.78 after 30 layers), so those are compared only through the
/// structural tests above.
#[test]
fn sequences_at_different_positions_are_each_alone_bit_for_bit() {
    let files = [
        smollm2(),
        smollm2_variant("IQ4_NL"),
        smollm2_variant("MXFP4"),
        smollm2_variant("TQ2_0"),
    ];
    for path in files.into_iter().flatten() {
        let file = GgufFile::open(&path).unwrap();
        let tokenizer = Tokenizer::from_gguf(file.metadata()).unwrap();
        for (name, device) in devices() {
            if name == gguf_llama::device::DeviceName::Wgpu {
                continue; // Burn's matmuls on wgpu: no order is promised across shapes
            }
            let model = Llama::from_gguf(&file, &device).unwrap();
            for (i, (alone, ragged)) in both(&model, &tokenizer).iter().enumerate() {
                let what = format!("{} {name} sequence {i}", path.display());
                assert_bits_eq(&what, ragged, alone);
            }
        }
    }
}

/// Bad input is an error before anything runs, and no cache advances.
#[test]
fn bad_input_is_an_error_and_no_cache_advances() {
    let file = cli::open_model(None).unwrap();
    let device = burn::tensor::Device::flex();
    let model = Llama::from_gguf(&file, &device).unwrap();
    assert!(model.forward_ragged(&mut []).is_err());
    let mut good = model.new_cache(1, 8);
    let mut batch2 = model.new_cache(2, 8);
    let mut full = model.new_cache(1, 2);
    let vocab = model.config().vocab_size as u32;
    for (bad, what) in [
        (vec![1u32, vocab], "outside the vocabulary"),
        (vec![], "do not make 1 rows"),
    ] {
        let err = model
            .forward_ragged(&mut [step(&[1, 2], &mut good, true), step(&bad, &mut full, true)])
            .unwrap_err()
            .to_string();
        assert!(err.contains(what), "{err}");
    }
    let err = model
        .forward_ragged(&mut [
            step(&[1, 2, 3], &mut good, true),
            step(&[1, 2, 3], &mut full, true),
        ])
        .unwrap_err()
        .to_string();
    assert!(err.contains("3") && err.contains("2"), "{err}");
    assert!(model
        .forward_ragged(&mut [step(&[1], &mut good, true), step(&[1], &mut batch2, true)])
        .is_err());
    assert_eq!((good.len(), full.len(), batch2.len()), (0, 0, 0));
}
