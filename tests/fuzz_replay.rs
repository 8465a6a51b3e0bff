//! Replays the committed corpus of the `tokenizer` and `chat_template` fuzz targets
//! (`fuzz/corpus/<target>/`) and their regressions (`fuzz/regressions/<target>/`) through the
//! targets' own checks, on stable and without libFuzzer: no input may panic.
//!
//! The checks are the files the targets use (`fuzz/src/tokenize.rs`, `fuzz/src/template.rs`),
//! included with `#[path]`. They name the code under test `crate::tokenizer` and `crate::chat`:
//! here those are this crate's modules (the fuzz crate compiles the same source files, see
//! `fuzz/Cargo.toml`). `write_seeds` (ignored) regenerates the seeds of both corpora:
//!
//! ```text
//! cargo test --release --test fuzz_replay -- --ignored write_seeds
//! ```

mod common;

use gguf_llama::{chat, tokenizer};

#[path = "../fuzz/src/template.rs"]
mod template;
#[path = "../fuzz/src/text_seeds.rs"]
mod text_seeds;
#[path = "../fuzz/src/tokenize.rs"]
mod tokenize;

#[path = "../fuzz/src/replay.rs"]
mod replay;

use std::path::PathBuf;

const TARGETS: [&str; 2] = ["tokenizer", "chat_template"];

fn fuzz_dir() -> PathBuf {
    common::root().join("fuzz")
}

/// What a target does with its input: the same calls as `fuzz/fuzz_targets/*.rs`.
fn run_target(target: &str, data: &[u8]) {
    match target {
        "tokenizer" => tokenize::check_input(data),
        "chat_template" => template::check_input(data),
        other => panic!("no fuzz target named {other:?}"),
    }
}

#[test]
fn corpus_replays_without_panic() {
    let corpus = fuzz_dir().join("corpus");
    for target in TARGETS {
        let n = replay::replay(&corpus, target, run_target);
        assert!(
            n > 0,
            "the {target} corpus in {} is empty",
            corpus.display()
        );
    }
}

#[test]
fn regressions_replay_without_panic() {
    let regressions = fuzz_dir().join("regressions");
    for target in TARGETS {
        replay::replay(&regressions, target, run_target);
    }
}

/// The seeds pass the checks, and the committed templates render the plain conversations.
#[test]
fn seeds_pass_the_checks() {
    let tokenizer_seeds = text_seeds::tokenizer_seeds();
    assert!(tokenizer_seeds.len() >= 4 * 40);
    for (_, bytes) in &tokenizer_seeds {
        tokenize::check_input(bytes);
    }
    let chat_seeds = text_seeds::chat_seeds();
    assert_eq!(chat_seeds.len(), template::TEMPLATES.len() * 6);
    for (name, bytes) in &chat_seeds {
        template::check_input(bytes);
        if !name.ends_with("_source") {
            let (_, source) =
                template::TEMPLATES[usize::from(bytes[0]) % template::TEMPLATES.len()];
            let t = chat::ChatTemplate::new(source, "<s>", "</s>").expect("compiles");
            let messages = template::messages(&bytes[1..]);
            let result = t.render(&messages, bytes[0] & template::GENERATION_PROMPT != 0);
            if name.ends_with("_conv1") || name.ends_with("_conv2") {
                assert!(result.is_ok(), "{name}: {result:?}");
            }
        }
    }
}

/// The round-trip rule of `tokenize::round_trips` on texts whose llama.cpp results were checked
/// with llama-cpp-python 0.3.36 (`llama_tokenize` + `llama_detokenize(remove_special = false,
/// unparse_special = true)`).
#[test]
fn round_trip_rule_matches_llama_cpp_examples() {
    // (vocabulary, text, parse_special, llama.cpp gives the text back)
    let cases: [(usize, &str, bool, bool); 10] = [
        (2, "Hello world", false, true),
        (2, "Hello , world", false, false), // clean-up drops the space before ','
        (2, "it 's", false, false),         // and before 's
        (1, "<|begin_of_text|>hi", true, true),
        (1, "a . b", true, false),
        (0, " Hello  world", false, true),
        (0, "Hello\u{2581}world", false, false), // ▁ decodes as a space
        (0, "<s>Hello", true, false),            // a space prefix after <s>
        (0, "Hello<s>", true, false), // llama.cpp round-trips; the rule does not claim it
        (3, "Once upon a time", false, true),
    ];
    for (vocab, text, parse_special, llama_cpp_round_trips) in cases {
        let tok = tokenize::tokenizer(vocab);
        let ids = tok.encode(text, false, parse_special);
        let predicted = tokenize::round_trips(tok, text, &ids);
        if predicted {
            assert!(llama_cpp_round_trips, "{text:?}");
            assert_eq!(tok.decode(&ids), text);
        } else if vocab != 0 || !text.ends_with("<s>") {
            assert!(!llama_cpp_round_trips, "{text:?}");
            assert_ne!(tok.decode(&ids), text);
        }
        tokenize::check_text(vocab, text, true, parse_special);
    }
}

/// A hostile template's work and output are bounded (`chat::MAX_FUEL`,
/// `chat::MAX_OUTPUT_BYTES`): the two regressions end in a `Render` error, quickly.
#[test]
fn hostile_templates_are_bounded() {
    for name in ["nested_loops_out_of_fuel", "huge_output"] {
        let data = std::fs::read(fuzz_dir().join("regressions/chat_template").join(name))
            .expect("regression input");
        let source = String::from_utf8(data[1..].to_vec()).expect("UTF-8 source");
        let t = chat::ChatTemplate::new(&source, "", "").expect("compiles");
        let start = std::time::Instant::now();
        let result = t.render(&[], false);
        assert!(
            matches!(result, Err(chat::ChatError::Render { .. })),
            "{name}: {:?}",
            result.map(|s| s.len())
        );
        assert!(
            start.elapsed().as_secs() < 10,
            "{name}: {:?}",
            start.elapsed()
        );
    }
}

/// minijinja accepts `{% for in x %}` (an empty unpacking target) and fails when rendering with
/// a span that ends before it starts; with debug info on, formatting that error with `{:?}`
/// panicked (fuzz/README.md, bug 6). `ChatTemplate` turns debug info off.
#[test]
fn errors_format_without_panic() {
    let t = chat::ChatTemplate::new("{% for in messages %}{% endfor %}", "", "").expect("compiles");
    let err = t
        .render(&[chat::ChatMessage::user("x")], false)
        .expect_err("cannot unpack");
    assert!(matches!(err, chat::ChatError::Render { .. }), "{err}");
    let _ = (format!("{err:?}"), format!("{err:#}"), err.to_string());
    template::check_input(
        &std::fs::read(fuzz_dir().join("regressions/chat_template/debug_info_span_overflow"))
            .expect("regression input"),
    );
}

/// The bounds leave room for real conversations: 10,000 messages render with the committed
/// templates.
#[test]
fn long_conversations_fit_the_bounds() {
    let messages: Vec<chat::ChatMessage> = (0..10_000)
        .map(|i| match i % 2 {
            0 => chat::ChatMessage::user(format!("question {i}")),
            _ => chat::ChatMessage::assistant(format!("answer {i}")),
        })
        .collect();
    for (name, source) in template::TEMPLATES {
        if name == "features" {
            continue;
        }
        let t = chat::ChatTemplate::new(source, "<s>", "</s>").expect("compiles");
        let text = t
            .render(&messages, true)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.contains("answer 9999"), "{name}");
    }
}

#[test]
#[ignore = "writes fuzz/corpus/<target>/seed_*; run by hand to regenerate the seeds"]
fn write_seeds() {
    for (target, seeds) in [
        ("tokenizer", text_seeds::tokenizer_seeds()),
        ("chat_template", text_seeds::chat_seeds()),
    ] {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).expect("corpus directory");
        for (name, bytes) in seeds {
            std::fs::write(dir.join(format!("seed_{name}")), bytes).expect("write seed");
        }
    }
}
