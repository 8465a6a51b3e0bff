//! Seed inputs for the `tokenizer` and `chat_template` targets, from the committed test inputs:
//! each text of llama.cpp's vocabulary suites (`tests/fixtures/vocab/*.inp`) with each
//! vocabulary and flag, and each committed chat template with a few conversations, plus each
//! template's source as a template of its own.
//!
//! Written into `fuzz/corpus/<target>/seed_*` by the ignored test `write_seeds` of
//! `tests/fuzz_replay.rs` (which includes this file with `#[path]`; it uses only `std` and the
//! other shared files):
//!
//! ```text
//! cargo test --release --test fuzz_replay -- --ignored write_seeds
//! ```

use crate::template::{GENERATION_PROMPT, MESSAGE_SEPARATOR, OWN_SOURCE, TEMPLATES};
use crate::tokenize::{ADD_SPECIAL, PARSE_SPECIAL};

/// llama.cpp's test texts (the three `.inp` files hold the same texts; one is enough), split as
/// its test does: texts separated by a line `__ggml_vocab_test__`.
const VOCAB_TEXTS: &str = include_str!("../../tests/fixtures/vocab/ggml-vocab-llama-spm.gguf.inp");

/// The texts of the vocabulary suite, and a few that reach special tokens and `▁`.
pub fn texts() -> Vec<String> {
    let mut texts: Vec<String> = VOCAB_TEXTS
        .split("\n__ggml_vocab_test__\n")
        .map(str::to_string)
        .collect();
    if let Some(last) = texts.last_mut() {
        if let Some(t) = last.strip_suffix("\n__ggml_vocab_test__") {
            *last = t.to_string();
        }
    }
    texts.extend(
        [
            "<s>Hello</s> world <unk>",
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
            "<|endoftext|>a ' b it 's . ,",
            "\u{2581}Hello\u{2581}\u{2581}world",
            "\u{fffd}\u{0}\t\r\n\u{b}\u{c}",
        ]
        .map(str::to_string),
    );
    texts
}

/// `(name, bytes)` for the `tokenizer` corpus: every text with every vocabulary; the flags
/// vary with the text so that each combination is seeded without multiplying the corpus by 4.
pub fn tokenizer_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    for (i, text) in texts().iter().enumerate() {
        for vocab in 0..4u8 {
            let flags = match i % 4 {
                0 => 0,
                1 => ADD_SPECIAL,
                2 => PARSE_SPECIAL,
                _ => ADD_SPECIAL | PARSE_SPECIAL,
            };
            let mut bytes = vec![vocab | flags];
            bytes.extend_from_slice(text.as_bytes());
            seeds.push((format!("vocab{vocab}_text{i:02}"), bytes));
        }
    }
    seeds
}

/// A conversation in the input encoding of `template::messages`.
fn conversation(messages: &[(u8, &str)]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (i, (role, content)) in messages.iter().enumerate() {
        if i > 0 {
            bytes.push(MESSAGE_SEPARATOR);
        }
        bytes.push(*role);
        bytes.extend_from_slice(content.as_bytes());
    }
    bytes
}

/// `(name, bytes)` for the `chat_template` corpus.
pub fn chat_seeds() -> Vec<(String, Vec<u8>)> {
    // Roles: 0 system, 1 user, 2 assistant, 3 tool, 0xf0 "role:content".
    let conversations: [&[(u8, &str)]; 5] = [
        &[],
        &[(1, "Hello!")],
        &[
            (0, "  You are helpful.\n"),
            (1, "Hi\nthere"),
            (2, "Hello"),
            (1, "/stop now"),
        ],
        &[
            (2, "no user first"),
            (3, "{\"x\": 1}"),
            (0xf0, "ipython:out"),
        ],
        &[
            (1, "a"),
            (1, "b"),
            (2, "c \u{e9}\u{1f600}"),
            (0, "late system"),
        ],
    ];
    let mut seeds = Vec::new();
    for (t, (name, source)) in TEMPLATES.iter().enumerate() {
        for (c, conv) in conversations.iter().enumerate() {
            let mode = t as u8 | if c % 2 == 1 { GENERATION_PROMPT } else { 0 };
            let mut bytes = vec![mode];
            bytes.extend(conversation(conv));
            seeds.push((format!("{name}_conv{c}"), bytes));
        }
        // The source as a template of its own, with a conversation.
        let mut bytes = vec![OWN_SOURCE | GENERATION_PROMPT];
        bytes.extend_from_slice(source.as_bytes());
        bytes.push(0);
        bytes.extend(conversation(conversations[2]));
        seeds.push((format!("{name}_source"), bytes));
    }
    seeds
}
