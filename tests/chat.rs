//! Chat template rendering against Python's Jinja2 in Hugging Face's environment.
//!
//! The expected texts in tests/fixtures/chat/expected.json come from `scripts/chat_fixtures.py`
//! (Jinja2 with HF's `apply_chat_template` settings), never from this crate:
//!     python3 scripts/chat_fixtures.py
//! smollm2.jinja is SmolLM2-135M-Instruct's `tokenizer.chat_template`, copied from its GGUF by
//! that script with gguf-py. The templates named after Hugging Face repositories
//! (`Qwen-Qwen3-0.6B.jinja`, ...) are those models' own, copied byte for byte from llama.cpp's
//! `models/templates/` (provenance and sha256 in the script's docstring), rendered with each
//! model's BOS/EOS texts; where a template refuses a conversation with `raise_exception`, the case
//! records the message.

mod common;

use gguf_importer::{keys, Metadata, Value, ValueType};
use gguf_llama::chat::{ChatError, ChatMessage, ChatTemplate, CHATML_TEMPLATE};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn chat_dir() -> PathBuf {
    common::root().join("tests/fixtures/chat")
}

fn template_source(name: &str) -> String {
    let path = chat_dir().join(format!("{name}.jinja"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[derive(Deserialize)]
struct Expected {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    template: String,
    bos_token: String,
    eos_token: String,
    messages: Vec<ChatMessage>,
    add_generation_prompt: bool,
    expected: Option<String>,
    error: Option<String>,
}

fn cases() -> Vec<Case> {
    let path = chat_dir().join("expected.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let expected: Expected = serde_json::from_str(&text).unwrap();
    expected.cases
}

/// Runs every case of one template and returns how many there were.
fn check_template(name: &str) -> usize {
    let source = template_source(name);
    let mut n = 0;
    for case in cases().iter().filter(|c| c.template == name) {
        let t = ChatTemplate::new(&source, &case.bos_token, &case.eos_token).unwrap();
        let got = t.render(&case.messages, case.add_generation_prompt);
        match (&case.expected, &case.error) {
            (Some(want), None) => {
                let got = got.unwrap_or_else(|e| panic!("{}: {e}", case.name));
                assert_eq!(&got, want, "{}", case.name);
            }
            (None, Some(message)) => match got {
                Err(ChatError::Raised { message: m }) => assert_eq!(&m, message, "{}", case.name),
                other => panic!(
                    "{}: expected raise_exception({message:?}), got {other:?}",
                    case.name
                ),
            },
            _ => panic!("{}: a case has either `expected` or `error`", case.name),
        }
        n += 1;
    }
    n
}

#[test]
fn smollm2_template_matches_jinja2() {
    // 5 conversations x with and without the generation prompt.
    assert_eq!(check_template("smollm2"), 10);
}

#[test]
fn llama3_template_matches_jinja2() {
    // 10 renderings plus 2 raise_exception cases (a `tool` message).
    assert_eq!(check_template("llama3"), 12);
}

#[test]
fn chatml_fallback_matches_jinja2() {
    assert_eq!(check_template("chatml"), 10);
    // The fixture is the built-in fallback's text, and chatml() renders the same.
    assert_eq!(template_source("chatml"), CHATML_TEMPLATE);
    let builtin = ChatTemplate::chatml();
    for case in cases().iter().filter(|c| c.template == "chatml") {
        let got = builtin
            .render(&case.messages, case.add_generation_prompt)
            .unwrap();
        assert_eq!(Some(&got), case.expected.as_ref(), "{}", case.name);
    }
}

#[test]
fn python_methods_tojson_and_loop_controls_match_jinja2() {
    assert_eq!(check_template("features"), 10);
}

// The real templates of the supported families (llama, qwen2, qwen3, phi3, gemma), 5
// conversations x with and without the generation prompt each; `raise_exception` cases included.

#[test]
fn qwen2_5_template_matches_jinja2() {
    assert_eq!(check_template("Qwen-Qwen2.5-7B-Instruct"), 10);
}

#[test]
fn qwen3_template_matches_jinja2() {
    assert_eq!(check_template("Qwen-Qwen3-0.6B"), 10);
}

#[test]
fn phi3_5_template_matches_jinja2() {
    assert_eq!(check_template("microsoft-Phi-3.5-mini-instruct"), 10);
}

#[test]
fn gemma2_template_matches_jinja2() {
    // 6 of the 10 raise "System role not supported" (the 3 conversations with a system message).
    assert_eq!(check_template("google-gemma-2-2b-it"), 10);
}

#[test]
fn llama3_1_template_matches_jinja2() {
    assert_eq!(check_template("meta-llama-Llama-3.1-8B-Instruct"), 10);
}

#[test]
fn mistral_nemo_template_matches_jinja2() {
    // 2 of the 10 raise: two user turns in a row.
    assert_eq!(check_template("mistralai-Mistral-Nemo-Instruct-2407"), 10);
}

#[test]
fn every_template_of_the_reference_is_checked() {
    // The templates the tests above check: a new one in expected.json needs its own test.
    let checked = [
        "smollm2",
        "llama3",
        "chatml",
        "features",
        "Qwen-Qwen2.5-7B-Instruct",
        "Qwen-Qwen3-0.6B",
        "microsoft-Phi-3.5-mini-instruct",
        "google-gemma-2-2b-it",
        "meta-llama-Llama-3.1-8B-Instruct",
        "mistralai-Mistral-Nemo-Instruct-2407",
    ];
    let in_reference: BTreeSet<String> = cases().into_iter().map(|c| c.template).collect();
    assert_eq!(
        in_reference,
        checked.iter().map(|t| t.to_string()).collect()
    );
}

#[test]
fn raise_exception_is_a_typed_error() {
    let t = ChatTemplate::new(
        "{{ raise_exception('Conversation roles must alternate') }}",
        "",
        "",
    )
    .unwrap();
    match t.render(&[ChatMessage::user("hi")], false) {
        Err(ChatError::Raised { message }) => {
            assert_eq!(message, "Conversation roles must alternate")
        }
        other => panic!("expected ChatError::Raised, got {other:?}"),
    }
}

#[test]
fn bad_templates_are_typed_errors() {
    assert!(matches!(
        ChatTemplate::new("{% for m in messages %}", "", ""),
        Err(ChatError::Syntax { .. })
    ));
    // A method neither minijinja nor the pycompat layer knows.
    let t = ChatTemplate::new("{{ messages[0].content.no_such_method() }}", "", "").unwrap();
    assert!(matches!(
        t.render(&[ChatMessage::user("hi")], false),
        Err(ChatError::Render { .. })
    ));
    // strftime_now: a valid format renders (4 digits for %Y), an invalid one fails, no panic.
    let t = ChatTemplate::new("{{ strftime_now('%Y') | length }}", "", "").unwrap();
    assert_eq!(t.render(&[], false).unwrap(), "4");
    let t = ChatTemplate::new("{{ strftime_now('%Q') }}", "", "").unwrap();
    assert!(matches!(
        t.render(&[], false),
        Err(ChatError::Render { .. })
    ));
}

/// GGUF metadata with a vocabulary of ChatML tokens and, optionally, a template.
fn metadata(template: Option<Value>) -> Metadata {
    let mut m = Metadata::new();
    let tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "hello"];
    m.set(
        keys::tokenizer::TOKENS,
        Value::Array(
            ValueType::String,
            tokens
                .iter()
                .map(|t| Value::String(t.to_string()))
                .collect(),
        ),
    );
    // SmolLM2's ids: BOS 1 (<|im_start|>), EOS 2 (<|im_end|>).
    m.set(keys::tokenizer::BOS_ID, Value::U32(1));
    m.set(keys::tokenizer::EOS_ID, Value::U32(2));
    if let Some(t) = template {
        m.set(keys::tokenizer::CHAT_TEMPLATE, t);
    }
    m
}

#[test]
fn from_gguf_reads_the_template_and_special_tokens() {
    let source = template_source("smollm2");
    let t = ChatTemplate::from_gguf(&metadata(Some(Value::String(source.clone()))))
        .unwrap()
        .unwrap();
    assert_eq!(t.source(), source);
    assert_eq!(
        (t.bos_token(), t.eos_token()),
        ("<|im_start|>", "<|im_end|>")
    );
    // Renders as the jinja2 reference for the same template and tokens.
    let case = cases()
        .into_iter()
        .find(|c| c.template == "smollm2")
        .unwrap();
    assert_eq!(
        Some(
            t.render(&case.messages, case.add_generation_prompt)
                .unwrap()
        ),
        case.expected
    );

    // No key, or an empty one: no template (llama.cpp falls back to ChatML).
    assert!(ChatTemplate::from_gguf(&metadata(None)).unwrap().is_none());
    assert!(
        ChatTemplate::from_gguf(&metadata(Some(Value::String(String::new()))))
            .unwrap()
            .is_none()
    );
    let fallback = ChatTemplate::from_gguf_or_chatml(&metadata(None)).unwrap();
    assert_eq!(fallback.source(), CHATML_TEMPLATE);
    assert_eq!(fallback.bos_token(), "<|im_start|>");

    // A template key of the wrong type, and a BOS id past the vocabulary.
    let err = ChatTemplate::from_gguf(&metadata(Some(Value::U32(7)))).unwrap_err();
    assert!(matches!(
        err,
        ChatError::WrongType {
            key: "tokenizer.chat_template",
            found: ValueType::U32,
            ..
        }
    ));
    let mut m = metadata(Some(Value::String(source)));
    m.set(keys::tokenizer::BOS_ID, Value::U32(4));
    let err = ChatTemplate::from_gguf(&m).unwrap_err();
    assert!(matches!(
        err,
        ChatError::BadTokenId {
            key: "tokenizer.ggml.bos_token_id",
            id: 4,
            n_tokens: 4
        }
    ));
}

#[test]
fn strip_added_tokens_removes_bos_and_eos_once() {
    let t = ChatTemplate::new("{{ bos_token }}x{{ eos_token }}", "<s>", "</s>").unwrap();
    let text = t.render(&[], false).unwrap();
    assert_eq!(text, "<s>x</s>");
    assert_eq!(t.strip_added_tokens(&text, true, false), "x</s>");
    assert_eq!(t.strip_added_tokens(&text, true, true), "x");
    assert_eq!(t.strip_added_tokens(&text, false, false), "<s>x</s>");
    assert_eq!(t.strip_added_tokens("x", true, true), "x");
}
