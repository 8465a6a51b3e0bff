//! Checking a model against a record of llama.cpp's greedy decoding (the JSON that
//! scripts/make_default_kv_fixtures.py and scripts/make_family_fixtures.py write): the prompt
//! tokens, the last prompt position's logits bit for bit, and `generate --temp 0`'s tokens and
//! text, on flex and ndarray.

use std::path::Path;

use gguf_llama::cli;
use gguf_llama::device::DeviceName;
use gguf_llama::generate::{generate, GenerateConfig, StopReason};
use gguf_llama::gguf::GgufFile;
use gguf_llama::model::{CacheTypes, Llama, LlamaConfig, Logits, Weights};
use gguf_llama::sampling::SamplerConfig;
use gguf_llama::tokenizer::Tokenizer;

use super::{assert_bits_eq, fixture, ids, read_npy, to_vec};

/// The record `key` of the JSON fixture `doc`, after checking that llama.cpp ran with the cache
/// types `types` and no flash attention.
pub fn record(doc: &str, key: &str, types: CacheTypes) -> serde_json::Value {
    let doc = super::read_json(doc);
    let r = doc["models"][key].clone();
    assert!(r.is_object(), "no record {key} in the fixture");
    let s = &r["settings"];
    let (k, v) = (types.k.name().to_uppercase(), types.v.name().to_uppercase());
    assert_eq!(
        (s["type_k"].as_str(), s["type_v"].as_str()),
        (Some(k.as_str()), Some(v.as_str())),
        "{key}: the fixture's cache types are not {types:?}"
    );
    assert_eq!(s["flash_attn_type"], "disabled");
    r
}

/// On flex and ndarray: for every prompt of the record `r` (its logits files under the fixture
/// directory `dir`), the prompt tokens, the last prompt position's logits (bit for bit), and
/// `generate`'s greedy tokens and text with its default configuration (what `generate --temp 0`
/// runs), all equal to llama.cpp's. `edit` changes the configuration read from the file before
/// the model is built (identity for the file as it is).
pub fn check_cpu_devices(
    path: &Path,
    r: &serde_json::Value,
    dir: &str,
    key: &str,
    types: CacheTypes,
    edit: &dyn Fn(&mut LlamaConfig),
) {
    let n_gen = r["n_gen"].as_u64().unwrap() as usize;
    let file = GgufFile::open(path).unwrap();
    let tokenizer = Tokenizer::from_gguf(file.metadata()).unwrap();
    let mut config = LlamaConfig::from_file(&file).unwrap();
    edit(&mut config);
    for name in [DeviceName::Flex, DeviceName::NdArray] {
        let device = gguf_llama::device::device(name).unwrap();
        let model =
            Llama::from_gguf_with_config(&file, config.clone(), &device, Weights::Quantized)
                .unwrap();
        for p in r["prompts"].as_array().unwrap() {
            let text = p["prompt"].as_str().unwrap();
            let chat = p["kind"] == "chat";
            let what = format!("{key} {name} {:?} {text:?}", p["kind"]);
            let prompt = cli::prompt_tokens(&file, &tokenizer, text, chat, None).unwrap();
            assert_eq!(prompt, ids(&p["prompt_tokens"]), "{what}: prompt tokens");

            let mut cache = model.new_cache_with(1, prompt.len(), types);
            let logits = model
                .forward_ids(&prompt, 1, &mut cache, Logits::Last)
                .unwrap();
            let logits_file = p["last_prompt_logits"].as_str().unwrap();
            let (_, want) = read_npy(&fixture(&format!("{dir}/{logits_file}")));
            let what_logits = format!("{what}: last prompt logits");
            assert_bits_eq(&what_logits, &to_vec(logits), &want);

            // What `generate --temp 0` runs: the default config, greedy; chat answers stop at
            // the end of generation as llama.cpp's record does.
            assert_eq!(GenerateConfig::default().cache, CacheTypes::F16);
            let config = GenerateConfig {
                max_tokens: n_gen,
                sampler: SamplerConfig::greedy(),
                stop_at_eog: chat,
                cache: types,
            };
            let g = generate(&model, &tokenizer, &prompt, &config, &mut |_| {}).unwrap();
            let mut want_tokens = ids(&p["greedy_tokens"]);
            if p["stopped_at_eog"] == true {
                want_tokens.pop(); // the end-of-generation token is not part of the output
                assert_eq!(g.stop, StopReason::EndOfGeneration, "{what}: stop");
            }
            assert_eq!(g.tokens, want_tokens, "{what}: greedy tokens");
            assert_eq!(
                g.text,
                p["generated_text"].as_str().unwrap(),
                "{what}: text"
            );
        }
    }
}

/// `generate`'s greedy decoding of `prompt` on flex with its defaults (F16 KV cache, stopping at
/// end-of-generation), at most `max_tokens` tokens: what the server must answer greedily.
pub fn generate_greedy(
    file: &GgufFile,
    prompt: &[u32],
    max_tokens: usize,
) -> gguf_llama::generate::Generation {
    let tokenizer = Tokenizer::from_gguf(file.metadata()).unwrap();
    let model = Llama::from_gguf(file, &burn::tensor::Device::flex()).unwrap();
    let config = GenerateConfig {
        max_tokens,
        sampler: SamplerConfig::greedy(),
        stop_at_eog: true,
        cache: CacheTypes::default(),
    };
    generate(&model, &tokenizer, prompt, &config, &mut |_| {}).unwrap()
}
