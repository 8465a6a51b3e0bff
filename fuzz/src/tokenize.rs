//! The tokenizer property (`tokenizer` target): for any text, with any `add_special` and
//! `parse_special`, encoding never panics and gives ids of the vocabulary; decoding those ids
//! gives the text back wherever llama.cpp's own `llama_detokenize` does (the rule is
//! [`round_trips`]); the streaming `Detokenizer` agrees with the whole-sequence pieces.
//!
//! Shared by `fuzz_targets/tokenizer.rs` and by `tests/fuzz_replay.rs`, which includes this file
//! with `#[path]`: it names the tokenizer only as `crate::tokenizer` (the main crate's module,
//! compiled into the fuzz crate or taken from `gguf_llama`) and uses `gguf_importer` and `std`.

use std::sync::OnceLock;

use crate::tokenizer::{Detokenizer, TokenAttr, Tokenizer, TokenizerKind};

/// The vocabularies, by the low two bits of the first input byte: llama.cpp's own test
/// vocabularies (`tests/fixtures/vocab/`, from llama.cpp's `models/`) and stories260K (a
/// 512-token SentencePiece vocabulary with byte fallback).
pub const VOCABS: [(&str, &[u8]); 4] = [
    (
        "llama-spm",
        include_bytes!("../../tests/fixtures/vocab/ggml-vocab-llama-spm.gguf"),
    ),
    (
        "llama-bpe",
        include_bytes!("../../tests/fixtures/vocab/ggml-vocab-llama-bpe.gguf"),
    ),
    (
        "gpt-2",
        include_bytes!("../../tests/fixtures/vocab/ggml-vocab-gpt-2.gguf"),
    ),
    (
        "stories260k",
        include_bytes!("../../tests/fixtures/stories260k-f32.v1.gguf"),
    ),
];

/// Bits of the first byte: the vocabulary (`& 3`), then the `encode` flags.
pub const ADD_SPECIAL: u8 = 1 << 2;
pub const PARSE_SPECIAL: u8 = 1 << 3;

/// The tokenizer of `VOCABS[index]`, loaded once (from the file's metadata, as a loader does).
pub fn tokenizer(index: usize) -> &'static Tokenizer {
    static LOADED: [OnceLock<Tokenizer>; 4] = [const { OnceLock::new() }; 4];
    LOADED[index].get_or_init(|| {
        let (name, bytes) = VOCABS[index];
        let file = gguf_importer::GgufFile::from_bytes(bytes.to_vec())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        Tokenizer::from_gguf(file.metadata()).unwrap_or_else(|e| panic!("{name}: {e}"))
    })
}

/// One fuzz input: `[flags, text...]`. The text is the rest of the bytes as lossy UTF-8, so that
/// every input is a text (invalid bytes become U+FFFD, itself a character worth encoding).
pub fn check_input(data: &[u8]) {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    check_text(
        usize::from(head & 3),
        &text,
        head & ADD_SPECIAL != 0,
        head & PARSE_SPECIAL != 0,
    );
}

/// Encodes `text` with vocabulary `index` and checks the ids, the decoding and the pieces.
pub fn check_text(index: usize, text: &str, add_special: bool, parse_special: bool) {
    let tok = tokenizer(index);
    let n_vocab = tok.vocab_size();
    let ids = tok.encode(text, add_special, parse_special);
    if let Some(&bad) = ids.iter().find(|&&id| id as usize >= n_vocab) {
        panic!("id {bad} outside the vocabulary of {n_vocab} tokens, for {text:?}");
    }

    // `add_special` only adds BOS/EOS around the same ids (llama.cpp's `llama_tokenize`).
    let base = tok.encode(text, false, parse_special);
    let mut expected = Vec::with_capacity(base.len() + 2);
    if add_special && tok.add_bos() {
        expected.extend(tok.bos_id());
    }
    expected.extend_from_slice(&base);
    if add_special && tok.add_eos() {
        expected.extend(tok.eos_id());
    }
    assert_eq!(
        ids, expected,
        "add_special changed more than BOS/EOS for {text:?}"
    );

    // Decoding never fails; a round trip where llama.cpp has one.
    let decoded = tok.decode(&base);
    let _ = tok.decode(&ids);
    let _ = tok.detokenize(&ids, true, false);
    if round_trips(tok, text, &base) {
        assert_eq!(
            decoded, text,
            "decode(encode(text)) differs (ids {base:?}, {:?}, parse_special {parse_special})",
            VOCABS[index].0
        );
    }

    // The pieces, whole and streamed. Byte-level BPE is lossless: its pieces are the text's bytes.
    let pieces: Vec<u8> = base
        .iter()
        .flat_map(|&id| tok.token_to_piece(id, true))
        .collect();
    if tok.kind() == TokenizerKind::BytePairEncoding {
        assert_eq!(
            pieces,
            text.as_bytes(),
            "byte-level pieces differ from the text"
        );
    }
    let mut stream = Detokenizer::new(true);
    let mut streamed = String::new();
    for &id in &base {
        streamed.push_str(&stream.push(tok, id));
    }
    streamed.push_str(&stream.finish());
    assert_eq!(
        streamed,
        String::from_utf8_lossy(&pieces),
        "the streaming detokenizer differs from the pieces"
    );
}

/// Whether llama.cpp's `llama_detokenize(llama_tokenize(text, add_special = false, parse_special),
/// remove_special = false, unparse_special = true)` gives `text` back, as checked against
/// llama.cpp itself (llama-cpp-python 0.3.36: 50,000 random texts per vocabulary and
/// `parse_special` value, 20,000 for stories260K, drawn from ASCII, punctuation, whitespace,
/// NUL, special-token texts, `▁`, `Ġ`, combining marks and any code point; the rule never
/// claimed a round trip that llama.cpp does not make; see fuzz/README.md):
///
/// - byte-level BPE (`gpt-2`, `llama-bpe`): always, except where llama.cpp's clean-up of
///   spaces (on for both: `clean_up_tokenization_spaces`) changes the text, that is where it
///   has a space before `?`, `!`, `.` or `,`, or before an apostrophe (` ' `, ` 's`, ` 'm`,
///   ` 're`, ` 've`). With `parse_special` too: control tokens are rendered as their text.
/// - SentencePiece (`llama-spm`, stories260K; both add a space prefix and have byte fallback):
///   when the text has no `▁` (U+2581, which encodes as a space) and its ids are all normal or
///   byte tokens: a special token (a control token cut out with `parse_special`, or an unknown
///   token) is followed by another space prefix, which decoding keeps.
pub fn round_trips(tok: &Tokenizer, text: &str, ids: &[u32]) -> bool {
    match tok.kind() {
        TokenizerKind::BytePairEncoding => !changed_by_clean_up(text),
        TokenizerKind::SentencePiece => {
            !text.contains('\u{2581}')
                && ids.iter().all(|&id| {
                    let attr = tok.token_attr(id);
                    !attr.intersects(
                        TokenAttr::CONTROL
                            .union(TokenAttr::UNKNOWN)
                            .union(TokenAttr::USER_DEFINED),
                    )
                })
        }
    }
}

/// Whether llama.cpp's `clean_up_tokenization_spaces` passes would change `text`: each pass
/// drops a space before one of these, and a text without any is left as it is.
pub fn changed_by_clean_up(text: &str) -> bool {
    [" ?", " !", " .", " ,", " ' ", " 's", " 'm", " 're", " 've"]
        .iter()
        .any(|p| text.contains(p))
}
