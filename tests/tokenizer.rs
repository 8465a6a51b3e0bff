//! The tokenizer against llama.cpp.
//!
//! Fixtures in `tests/fixtures/vocab/` are llama.cpp's own tokenizer test files
//! (`models/ggml-vocab-*.gguf{,.inp,.out}` in its repository, used by its `test-tokenizer-0`):
//! vocabulary-only GGUF files, the test texts, and the ids llama.cpp produces for them with
//! `add_special = false, parse_special = false`.
//!
//! Only the small suites (llama-spm, llama-bpe, gpt-2) are committed. The others (Qwen 2 and 3.5,
//! Phi-3, Gemma 4, DeepSeek, Command-R ..., 0.6 to 16 MB each) are read from the directory named
//! by `GGUF_LLAMA_VOCAB_DIR` (default `~/.cache/gguf-llama/vocab`), where
//! `scripts/fetch_vocab_suites.sh` puts them; a test whose suite is missing says it skipped, or
//! fails under CI (`tests/common/ci.rs`).
//!
//! `tests/fixtures/vocab/special-cases.json` holds ids and texts produced by llama.cpp itself
//! (through llama-cpp-python) for special-token parsing, BOS handling and detokenization; it is
//! written by `scripts/tokenizer_fixtures.py` (see that script for the command).

mod common;

use std::path::{Path, PathBuf};

use gguf_importer::GgufFile;
use gguf_llama::tokenizer::{Detokenizer, Tokenizer, TokenizerError, TokenizerKind};

use common::ci;

fn vocab_dir() -> PathBuf {
    common::root().join("tests/fixtures/vocab")
}

/// Where the suites that are not committed are: `GGUF_LLAMA_VOCAB_DIR`, else
/// `~/.cache/gguf-llama/vocab`.
fn fetched_vocab_dir() -> PathBuf {
    match std::env::var_os("GGUF_LLAMA_VOCAB_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let home = std::env::var_os("HOME").unwrap_or_default();
            PathBuf::from(home).join(".cache/gguf-llama/vocab")
        }
    }
}

fn suite_files(dir: &Path, name: &str) -> [PathBuf; 3] {
    let base = format!("ggml-vocab-{name}.gguf");
    [
        dir.join(&base),
        dir.join(format!("{base}.inp")),
        dir.join(format!("{base}.out")),
    ]
}

/// The directory holding suite `name` (the committed fixtures first); `None` after the skip
/// message, or a panic under CI, when its files are missing.
fn suite_dir(name: &str) -> Option<PathBuf> {
    let dirs = [vocab_dir(), fetched_vocab_dir()];
    if let Some(dir) = dirs
        .iter()
        .find(|d| suite_files(d, name).iter().all(|f| f.is_file()))
    {
        return Some(dir.clone());
    }
    ci::missing(&format!(
        "llama.cpp's vocab suite ggml-vocab-{name}.gguf{{,.inp,.out}} is not in {} \
         (run scripts/fetch_vocab_suites.sh, or set GGUF_LLAMA_VOCAB_DIR)",
        dirs[1].display()
    ))
}

fn open_vocab(dir: &Path, name: &str) -> Result<Tokenizer, String> {
    let path = dir.join(format!("ggml-vocab-{name}.gguf"));
    let file = GgufFile::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Tokenizer::from_gguf(file.metadata()).map_err(|e| format!("{}: {e}", path.display()))
}

fn load(name: &str) -> Tokenizer {
    open_vocab(&vocab_dir(), name).unwrap_or_else(|e| panic!("{e}"))
}

/// The texts and expected ids of a committed suite.
fn read_suite(name: &str) -> Vec<(String, Vec<u32>)> {
    read_suite_in(&vocab_dir(), name)
}

/// The texts and expected ids of a suite, split exactly as llama.cpp's `test-tokenizer-0.cpp`
/// splits them: texts are separated by `"\n__ggml_vocab_test__\n"` (the newline before the
/// marker belongs to the separator), ids are space-separated, one line per text.
fn read_suite_in(dir: &Path, name: &str) -> Vec<(String, Vec<u32>)> {
    let [_, inp, out] = suite_files(dir, name);
    let raw = std::fs::read_to_string(&inp).unwrap_or_else(|e| panic!("{}: {e}", inp.display()));
    let out = std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));

    const SEP: &str = "\n__ggml_vocab_test__\n";
    let mut texts = Vec::new();
    let mut pos = 0;
    while pos < raw.len() {
        match raw[pos..].find(SEP) {
            Some(next) => {
                texts.push(raw[pos..pos + next].to_string());
                pos += next + SEP.len();
            }
            None => {
                texts.push(raw[pos..].to_string());
                break;
            }
        }
    }
    let ids: Vec<Vec<u32>> = out
        .lines()
        .map(|line| {
            line.split_whitespace()
                .map(|t| t.parse().expect("token id"))
                .collect()
        })
        .collect();
    assert_eq!(
        texts.len(),
        ids.len(),
        "{name}: .inp and .out disagree on the number of tests"
    );
    texts.into_iter().zip(ids).collect()
}

/// Runs one llama.cpp suite; every text must give exactly llama.cpp's ids. Every failing text
/// is reported, not only the first. Skips (fails under CI) when the suite's files are missing.
fn run_suite(name: &str) {
    let Some(dir) = suite_dir(name) else {
        return;
    };
    let tok = open_vocab(&dir, name).unwrap_or_else(|e| panic!("{e}"));
    let suite = read_suite_in(&dir, name);
    let mut failures = Vec::new();
    for (i, (text, expected)) in suite.iter().enumerate() {
        let got = tok.encode(text, false, false);
        if &got != expected {
            failures.push(format!(
                "case {i} {text:?}\n  expected {expected:?}\n  got      {got:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} of {} texts differ from llama.cpp:\n{}",
        failures.len(),
        suite.len(),
        failures.join("\n")
    );
    eprintln!("{name}: all {} texts as llama.cpp", suite.len());
}

#[test]
fn llama_spm_suite() {
    run_suite("llama-spm");
}

#[test]
fn llama_bpe_suite() {
    run_suite("llama-bpe");
}

#[test]
fn gpt2_suite() {
    run_suite("gpt-2");
}

// The suites fetched by scripts/fetch_vocab_suites.sh: one test each.

#[test]
fn qwen2_suite() {
    run_suite("qwen2");
}

#[test]
fn qwen35_suite() {
    run_suite("qwen35");
}

#[test]
fn phi3_suite() {
    run_suite("phi-3");
}

#[test]
fn gemma4_suite() {
    run_suite("gemma-4");
}

#[test]
fn deepseek_llm_suite() {
    run_suite("deepseek-llm");
}

#[test]
fn deepseek_coder_suite() {
    run_suite("deepseek-coder");
}

#[test]
fn command_r_suite() {
    run_suite("command-r");
}

#[test]
fn falcon_suite() {
    run_suite("falcon");
}

#[test]
fn starcoder_suite() {
    run_suite("starcoder");
}

#[test]
fn refact_suite() {
    run_suite("refact");
}

#[test]
fn mpt_suite() {
    run_suite("mpt");
}

/// bert-bge is WordPiece (`tokenizer.ggml.model = "bert"`, BERT-style embedding models), which
/// this crate does not implement: loading it fails with an error that says so.
#[test]
fn bert_bge_is_refused_clearly() {
    let Some(dir) = suite_dir("bert-bge") else {
        return;
    };
    let path = dir.join("ggml-vocab-bert-bge.gguf");
    let file = GgufFile::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let err = Tokenizer::from_gguf(file.metadata()).expect_err("WordPiece is not implemented");
    assert!(
        matches!(&err, TokenizerError::UnknownModel { model } if model == "bert"),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("\"bert\"") && msg.contains("WordPiece") && msg.contains("not implemented"),
        "{msg}"
    );
}

/// A fetched vocabulary as llama.cpp reports it: (suite, tokens, BOS, EOS, EOT, add BOS,
/// end-of-generation ids).
type VocabFacts = (
    &'static str,
    usize,
    Option<u32>,
    Option<u32>,
    Option<u32>,
    bool,
    &'static [u32],
);

/// What llama.cpp (0c1e57098, through llama-cpp-python 0.3.36: `llama_vocab_n_tokens`, `_bos`,
/// `_eos`, `_eot`, `_get_add_bos`, and `_is_eog` over every id) reports for the fetched
/// vocabularies.
#[rustfmt::skip]
const FETCHED_VOCAB_FACTS: &[VocabFacts] = &[
    ("qwen2", 151936, Some(151643), Some(151643), Some(151645), false, &[128247, 151643, 151645]),
    ("qwen35", 151936, Some(151643), Some(151643), Some(151645), false, &[128247, 151643, 151645]),
    ("phi-3", 32064, Some(1), Some(32000), Some(32007), true, &[2, 32000, 32007]),
    ("gemma-4", 262144, Some(2), Some(1), None, true, &[1, 50, 106]),
    ("deepseek-llm", 102400, Some(100000), Some(100001), Some(100001), true, &[100001]),
    ("deepseek-coder", 32256, Some(32013), Some(32014), Some(32014), true, &[32014]),
    ("command-r", 256000, Some(5), Some(255001), None, true, &[0, 255001]),
    ("falcon", 65024, Some(11), Some(11), Some(11), false, &[11]),
    ("starcoder", 49152, Some(0), Some(0), Some(0), false, &[0, 4]),
    ("refact", 49216, Some(0), Some(0), Some(0), false, &[0, 4, 18]),
    ("mpt", 50432, Some(0), Some(0), Some(0), false, &[0]),
];

#[test]
fn fetched_vocab_metadata_as_llama_cpp() {
    let mut failures = Vec::new();
    for &(name, n, bos, eos, eot, add_bos, eog) in FETCHED_VOCAB_FACTS {
        let Some(dir) = suite_dir(name) else {
            continue;
        };
        let tok = open_vocab(&dir, name).unwrap_or_else(|e| panic!("{e}"));
        let got = (
            tok.vocab_size(),
            tok.bos_id(),
            tok.eos_id(),
            tok.eot_id(),
            tok.add_bos(),
            tok.eog_ids(),
        );
        if got != (n, bos, eos, eot, add_bos, eog.to_vec()) {
            failures.push(format!("{name}: got {got:?}"));
        }
        assert!(!tok.add_eos(), "{name}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Gemma 4's tokenizer model (`tokenizer.ggml.model = "gemma4"`): llama.cpp takes its own
/// pre-tokenizer whatever `tokenizer.ggml.pre` says, always adds BOS, and writes spaces as `▁`.
#[test]
fn gemma4_model_as_llama_cpp() {
    use gguf_importer::Value;
    let Some(dir) = suite_dir("gemma-4") else {
        return;
    };
    let path = dir.join("ggml-vocab-gemma-4.gguf");
    let mut md = GgufFile::open(&path).expect("open").metadata().clone();
    md.set("tokenizer.ggml.pre", Value::String("gpt-2".into()));
    md.set("tokenizer.ggml.add_bos_token", Value::Bool(false));
    let tok = Tokenizer::from_gguf(&md).expect("gemma-4 vocabulary");
    assert_eq!(tok.kind(), TokenizerKind::BytePairEncoding);
    assert_eq!(tok.pre_tokenizer(), Some("gemma4"));
    assert!(tok.add_bos());

    let suite = read_suite_in(&dir, "gemma-4");
    let (text, ids) = suite
        .iter()
        .find(|(t, _)| t == " Hello world")
        .expect("suite text");
    assert_eq!(tok.encode(text, false, false), *ids);
    let mut with_bos = vec![2];
    with_bos.extend(ids);
    assert_eq!(tok.encode(text, true, false), with_bos);
    // "▁Hello" "▁world": the spaces come back.
    assert_eq!(tok.decode(ids), *text);
    assert_eq!(tok.detokenize(&with_bos, true, false), text.as_bytes());
}

#[test]
fn metadata_is_read_as_llama_cpp_reads_it() {
    // Ids from the fixtures' metadata (tokenizer.ggml.*_token_id) and llama.cpp's defaults:
    // SentencePiece adds BOS, GPT-2 does not, Llama-3's pre-tokenizer does.
    let spm = load("llama-spm");
    assert_eq!(spm.kind(), TokenizerKind::SentencePiece);
    assert_eq!(
        (spm.bos_id(), spm.eos_id(), spm.unk_id()),
        (Some(1), Some(2), Some(0))
    );
    assert_eq!(spm.vocab_size(), 32000);
    assert!(spm.add_bos() && !spm.add_eos());
    assert!(spm.is_eog(2) && !spm.is_eog(1));
    assert_eq!(spm.token_text(3), Some("<0x00>"));

    let bpe = load("llama-bpe");
    assert_eq!(bpe.kind(), TokenizerKind::BytePairEncoding);
    assert_eq!(bpe.pre_tokenizer(), Some("llama-bpe"));
    assert_eq!((bpe.bos_id(), bpe.eos_id()), (Some(128000), Some(128001)));
    assert!(bpe.add_bos());
    // <|eot_id|> (128009) is found by its text, as llama.cpp finds it (llama_vocab_eot gives
    // 128009 too: special-cases.json).
    assert_eq!(bpe.token_id("<|eot_id|>"), Some(128009));
    assert_eq!(bpe.eot_id(), Some(128009));
    assert!(bpe.is_eog(128001) && bpe.is_eog(128009) && !bpe.is_eog(128000));

    let gpt2 = load("gpt-2");
    assert_eq!((gpt2.bos_id(), gpt2.eos_id()), (Some(50256), Some(50256)));
    assert!(!gpt2.add_bos());
    assert!(gpt2.is_eog(50256));
}

#[test]
fn add_special_puts_bos_first() {
    // llama-spm: "Hello world" is [15043, 3186] in the suite (.out); BOS is 1.
    let spm = load("llama-spm");
    assert_eq!(spm.encode("Hello world", true, false), [1, 15043, 3186]);
    assert_eq!(spm.encode("", true, false), [1]);
    assert_eq!(spm.encode("", false, false), Vec::<u32>::new());
}

/// llama.cpp's `test-tokenizer-1-spm` / `-bpe` round trip: every token's text (decoded with
/// special tokens rendered) encodes, with special tokens parsed, to ids that decode to the same
/// text; and every Unicode scalar value encodes and decodes to itself.
fn round_trip_all(name: &str) {
    let tok = load(name);
    for id in 0..tok.vocab_size() as u32 {
        let bytes = tok.detokenize(&[id], false, true);
        // Single bytes of multi-byte characters are not text: `encode` takes `&str`.
        // (llama.cpp's BPE variant skips them too; its SPM variant feeds the raw bytes.)
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        let ids = tok.encode(&text, false, true);
        let back = tok.detokenize(&ids, false, true);
        assert_eq!(
            back,
            text.as_bytes(),
            "{name}: token {id} {text:?} -> {ids:?}"
        );
    }
    for cp in 0..0x110000u32 {
        // Surrogates are not chars; llama.cpp also skips the unassigned planes 4..=14.
        if (0x40000..=0xE0000).contains(&cp) {
            continue;
        }
        let Some(c) = char::from_u32(cp) else {
            continue;
        };
        // U+2581 is SentencePiece's space: it decodes to " ".
        if cp == 0x2581 {
            continue;
        }
        let s = c.to_string();
        let ids = tok.encode(&s, false, true);
        assert_eq!(tok.decode(&ids), s, "{name}: U+{cp:04X} -> {ids:?}");
    }
}

#[test]
fn round_trip_llama_spm() {
    round_trip_all("llama-spm");
}

#[test]
fn round_trip_llama_bpe() {
    round_trip_all("llama-bpe");
}

#[test]
fn round_trip_gpt2() {
    round_trip_all("gpt-2");
}

#[test]
fn round_trip_suite_texts_spm() {
    // SentencePiece decoding removes exactly the space it added, and does no other clean-up:
    // every suite text comes back (what test-tokenizer-0 prints as "res").
    let tok = load("llama-spm");
    for (text, ids) in read_suite("llama-spm") {
        assert_eq!(tok.decode(&ids), text);
        assert_eq!(tok.decode(&tok.encode(&text, false, false)), text);
    }
}

#[test]
fn detokenizer_holds_back_split_characters() {
    // llama-spm has no token for "🦙": the suite's " this is 🦙.cpp" (.out line) is
    // [29871, 445, 338, 29871, 243, 162, 169, 156, 29889, 8223]: "▁" (the added space prefix)
    // "▁this" "▁is" "▁", the byte tokens <0xF0> <0x9F> <0xA6> <0x99> (id = byte + 3), "." "cpp".
    let tok = load("llama-spm");
    let suite = read_suite("llama-spm");
    let (text, ids) = suite
        .iter()
        .find(|(t, _)| t == " this is 🦙.cpp")
        .expect("suite text");
    assert_eq!(
        ids,
        &[29871, 445, 338, 29871, 243, 162, 169, 156, 29889, 8223]
    );

    let mut detok = Detokenizer::new(false);
    let pieces: Vec<String> = ids.iter().map(|&id| detok.push(&tok, id)).collect();
    assert_eq!(
        pieces,
        [" ", " this", " is", " ", "", "", "", "🦙", ".", "cpp"]
    );
    assert!(detok.pending().is_empty());
    // Streaming keeps the prefix space that `decode` removes.
    assert_eq!(pieces.concat(), format!(" {text}"));
    assert_eq!(&tok.decode(ids), text);

    // A stream cut inside the character: the held-back bytes come out as U+FFFD at the end.
    let mut detok = Detokenizer::new(false);
    assert_eq!(detok.push(&tok, 243), "");
    assert_eq!(detok.push(&tok, 162), "");
    assert_eq!(detok.pending(), [0xF0, 0x9F]);
    assert_eq!(detok.finish(), "\u{FFFD}");
    // A byte that cannot start or continue a sequence is replaced at once.
    assert_eq!(detok.push(&tok, 0x80 + 3), "\u{FFFD}");
}

#[test]
fn detokenizer_on_byte_level_bpe() {
    // gpt-2's suite: "🚀 (normal) ..." starts with "🚀" as three tokens (.out line starts
    // 8582 248 222): the first two carry 3 of its 4 bytes, the third the last one.
    let tok = load("gpt-2");
    let mut detok = Detokenizer::new(false);
    assert_eq!(detok.push(&tok, 8582), "");
    assert_eq!(detok.push(&tok, 248), "");
    assert_eq!(detok.push(&tok, 222), "🚀");
}

#[test]
fn control_tokens_render_only_when_asked() {
    // llama.cpp's token_to_piece: control tokens give nothing unless special = true.
    let spm = load("llama-spm");
    assert_eq!(spm.token_to_piece(1, true), b"<s>");
    assert!(spm.token_to_piece(1, false).is_empty());
    assert_eq!(spm.token_to_piece(3 + 0x0A, false), b"\n");
    let bpe = load("llama-bpe");
    assert_eq!(bpe.token_to_piece(128009, true), b"<|eot_id|>");
    assert!(bpe.token_to_piece(128009, false).is_empty());
    // Out of range: nothing.
    assert!(bpe.token_to_piece(u32::MAX, true).is_empty());
}

fn metadata_of(name: &str) -> gguf_importer::Metadata {
    let path = vocab_dir().join(format!("ggml-vocab-{name}.gguf"));
    GgufFile::open(&path).expect("open").metadata().clone()
}

#[test]
fn bad_metadata_gives_typed_errors() {
    use gguf_importer::Value;
    let mut md = metadata_of("gpt-2");
    md.set("tokenizer.ggml.pre", Value::String("no-such-pre".into()));
    assert!(
        matches!(Tokenizer::from_gguf(&md), Err(TokenizerError::UnknownPreTokenizer { pre, .. }) if pre == "no-such-pre")
    );

    let mut md = metadata_of("gpt-2");
    md.set("tokenizer.ggml.model", Value::String("t5".into()));
    assert!(
        matches!(Tokenizer::from_gguf(&md), Err(TokenizerError::UnknownModel { model }) if model == "t5")
    );

    let md = gguf_importer::Metadata::new();
    assert!(matches!(
        Tokenizer::from_gguf(&md),
        Err(TokenizerError::MissingKey {
            key: "tokenizer.ggml.model"
        })
    ));

    let mut md = gguf_importer::Metadata::new();
    md.set("tokenizer.ggml.model", Value::String("gpt2".into()));
    md.set("tokenizer.ggml.pre", Value::String("gpt-2".into()));
    md.set(
        "tokenizer.ggml.tokens",
        Value::Array(
            gguf_importer::ValueType::String,
            vec![Value::String("a".into())],
        ),
    );
    assert!(matches!(
        Tokenizer::from_gguf(&md),
        Err(TokenizerError::MissingKey {
            key: "tokenizer.ggml.merges"
        })
    ));

    let mut md = metadata_of("llama-spm");
    md.set(
        "tokenizer.ggml.scores",
        Value::Array(gguf_importer::ValueType::F32, vec![Value::F32(0.0)]),
    );
    assert!(matches!(
        Tokenizer::from_gguf(&md),
        Err(TokenizerError::BadValue {
            key: "tokenizer.ggml.scores",
            ..
        })
    ));

    let mut md = metadata_of("llama-spm");
    md.set("tokenizer.ggml.add_bos_token", Value::U32(1));
    assert!(matches!(
        Tokenizer::from_gguf(&md),
        Err(TokenizerError::Gguf(_))
    ));
}

// ---- Cases produced by llama.cpp through scripts/tokenizer_fixtures.py ----

fn special_cases() -> serde_json::Value {
    let path = vocab_dir().join("special-cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run scripts/tokenizer_fixtures.py)",
            path.display()
        )
    });
    serde_json::from_str(&text).expect("special-cases.json is JSON")
}

fn hex(s: &serde_json::Value) -> Vec<u8> {
    let s = s.as_str().expect("hex string");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("id list")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

/// llama.cpp's token id or -1 (`LLAMA_TOKEN_NULL`) as an option.
fn opt_id(v: &serde_json::Value) -> Option<u32> {
    v.as_i64().filter(|&x| x >= 0).map(|x| x as u32)
}

#[test]
fn encode_with_special_tokens_as_llama_cpp() {
    let cases = special_cases();
    let mut toks = std::collections::HashMap::new();
    let mut failures = Vec::new();
    for case in cases["encode"].as_array().expect("encode cases") {
        let name = case["vocab"].as_str().expect("vocab name");
        let tok = toks.entry(name.to_string()).or_insert_with(|| load(name));
        let text = case["text"].as_str().expect("text");
        let (add, parse) = (
            case["add_special"].as_bool().unwrap(),
            case["parse_special"].as_bool().unwrap(),
        );
        let got = tok.encode(text, add, parse);
        if got != ids(&case["ids"]) {
            failures.push(format!(
                "{name} {text:?} add_special={add} parse_special={parse}: expected {}, got {got:?}",
                case["ids"]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn detokenize_as_llama_cpp() {
    let cases = special_cases();
    let mut failures = Vec::new();
    for (name, list) in cases["decode"].as_object().expect("decode cases") {
        let tok = load(name);
        for case in list.as_array().expect("case list") {
            let ids = ids(&case["ids"]);
            let text = case["text"].as_str().expect("text");
            if tok.encode(text, true, false) != ids {
                failures.push(format!("{name} {text:?}: encode with BOS differs"));
            }
            for (key, remove, render) in [
                ("keep_render_hex", false, true),
                ("keep_hide_hex", false, false),
                ("remove_hide_hex", true, false),
            ] {
                let got = tok.detokenize(&ids, remove, render);
                if got != hex(&case[key]) {
                    failures.push(format!(
                        "{name} {text:?} {key}: expected {:?}, got {:?}",
                        String::from_utf8_lossy(&hex(&case[key])),
                        String::from_utf8_lossy(&got)
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn pieces_as_llama_cpp() {
    let cases = special_cases();
    for (name, list) in cases["pieces"].as_object().expect("piece cases") {
        let tok = load(name);
        for case in list.as_array().expect("case list") {
            let id = case["id"].as_u64().expect("id") as u32;
            assert_eq!(
                tok.token_to_piece(id, true),
                hex(&case["special_hex"]),
                "{name} token {id}, special"
            );
            assert_eq!(
                tok.token_to_piece(id, false),
                hex(&case["plain_hex"]),
                "{name} token {id}, plain"
            );
        }
    }
}

#[test]
fn special_ids_and_end_of_generation_as_llama_cpp() {
    let cases = special_cases();
    for (name, v) in cases["vocab"].as_object().expect("vocab facts") {
        let tok = load(name);
        assert_eq!(
            tok.vocab_size() as u64,
            v["n_tokens"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(tok.bos_id(), opt_id(&v["bos"]), "{name} BOS");
        assert_eq!(tok.eos_id(), opt_id(&v["eos"]), "{name} EOS");
        assert_eq!(tok.eot_id(), opt_id(&v["eot"]), "{name} EOT");
        assert_eq!(
            tok.add_bos(),
            v["add_bos"].as_bool().unwrap(),
            "{name} add_bos"
        );
        assert_eq!(
            tok.eog_ids(),
            ids(&v["eog"]),
            "{name} end-of-generation ids"
        );
    }
}

#[test]
fn default_and_smollm_pre_tokenizers_as_llama_cpp() {
    // The gpt-2 vocabulary with tokenizer.ggml.pre rewritten, as the script rewrote it.
    use gguf_importer::Value;
    let cases = special_cases();
    let mut failures = Vec::new();
    for (pre, list) in cases["patched_pre"].as_object().expect("patched cases") {
        let mut md = metadata_of("gpt-2");
        md.set("tokenizer.ggml.pre", Value::String(pre.clone()));
        let tok = Tokenizer::from_gguf(&md).expect("patched vocabulary");
        for case in list.as_array().expect("case list") {
            let text = case["text"].as_str().expect("text");
            let expected = ids(&case["ids"]);
            let got = tok.encode(text, false, false);
            if got != expected {
                failures.push(format!(
                    "pre={pre} {text:?}: expected {expected:?}, got {got:?}"
                ));
            }
            if tok.detokenize(&expected, false, true) != hex(&case["decoded_hex"]) {
                failures.push(format!("pre={pre} {text:?}: decode differs"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
