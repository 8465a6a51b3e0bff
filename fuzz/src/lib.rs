//! Shared code of the fuzz targets.
//!
//! - `check`, `header`, `seeds` (GGUF reader): only `gguf_importer`, `half` and `std`, so that
//!   `importer/tests/fuzz_corpus.rs` can include the same files with `#[path]` and replay the
//!   corpus without nightly or libFuzzer.
//! - `replay`: that replay (directory walk, a panic per input caught and named), included by
//!   both corpus tests.
//! - `tokenize`, `template`, `text_seeds` (tokenizer and chat templates): they use the main
//!   crate's `tokenizer` and `chat` modules as `crate::tokenizer` and `crate::chat`. Here those
//!   are the main crate's own source files compiled into this crate (below: the main crate
//!   depends on burn, too long to build instrumented); `tests/fuzz_replay.rs` includes the
//!   check files with `#[path]` and binds the names to `gguf_llama::{tokenizer, chat}`.

pub mod check;
pub mod header;
pub mod replay;
pub mod seeds;

/// `gguf_llama::tokenizer`, compiled from its source (`../src/tokenizer/`).
#[allow(dead_code, unused_imports)]
#[path = "../../src/tokenizer/mod.rs"]
pub mod tokenizer;

/// `gguf_llama::chat`, compiled from its source (`../src/chat.rs`).
#[allow(dead_code)]
#[path = "../../src/chat.rs"]
pub mod chat;

pub mod template;
pub mod text_seeds;
pub mod tokenize;
