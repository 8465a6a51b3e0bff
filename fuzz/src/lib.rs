//! Shared code of the GGUF fuzz targets. Each module uses only `gguf_importer`, `half` and `std`,
//! so that `importer/tests/fuzz_corpus.rs` can include the same files with `#[path]` and replay
//! the corpus without nightly or libFuzzer.

pub mod check;
pub mod header;
pub mod seeds;
