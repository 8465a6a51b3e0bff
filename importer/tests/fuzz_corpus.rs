//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) and the crash regressions
//! (`fuzz/regressions/<target>/`) through the fuzz targets' own checks, on stable and without
//! libFuzzer: every input must parse to `Ok` or a typed `Err` and survive use, never panic.
//!
//! The checks are the files the targets use, included with `#[path]` (see `fuzz/Cargo.toml`).
//! `write_seeds` (ignored) regenerates the writer-made seeds of the `gguf_file` corpus:
//!
//! ```text
//! cargo test -p gguf-importer --test fuzz_corpus -- --ignored write_seeds
//! ```

#[path = "../../fuzz/src/check.rs"]
mod check;
mod common;
#[path = "../../fuzz/src/header.rs"]
mod header;
#[path = "../../fuzz/src/seeds.rs"]
mod seeds;

#[path = "../../fuzz/src/replay.rs"]
mod replay;

use std::path::PathBuf;

fn fuzz_dir() -> PathBuf {
    common::package_dir().join("../fuzz")
}

/// What a target does with its input: the same function bodies as `fuzz/fuzz_targets/*.rs`.
fn run_target(target: &str, data: &[u8]) {
    match target {
        "gguf_file" => check::check_bytes(data),
        "gguf_header" => check::check_bytes(&header::HeaderSpec::draw(data).to_bytes()),
        other => panic!("no fuzz target named {other:?}"),
    }
}

#[test]
fn corpus_replays_without_panic() {
    let corpus = fuzz_dir().join("corpus");
    for target in ["gguf_file", "gguf_header"] {
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
    for target in ["gguf_file", "gguf_header"] {
        replay::replay(&regressions, target, run_target);
    }
}

/// The bugs the fuzzers found (fuzz/README.md), by their error: shapes whose byte count, row
/// count or row size overflow a u64 are `BadShape`, in the reader and in the writer.
#[test]
fn overflowing_shapes_are_bad_shapes() {
    use gguf_importer::{GgmlType, GgufError, GgufFile, GgufWriter};
    for name in [
        "bytes_for_overflow_f32.gguf",           // F32, ne = [2^62]: 2^64 bytes
        "bytes_for_overflow_f64.gguf",           // F64, ne = [2^61, 2]: 2^65 bytes
        "n_rows_overflow_zero_elements.gguf",    // F32, ne = [0, 2^40, 2^40]: 2^80 rows
        "row_bytes_overflow_zero_elements.gguf", // F32, ne = [2^62, 0]: rows of 2^64 bytes
    ] {
        let data = std::fs::read(fuzz_dir().join("regressions/gguf_file").join(name))
            .expect("regression input");
        let result = GgufFile::from_bytes(data);
        assert!(
            matches!(result, Err(GgufError::BadShape { .. })),
            "{name}: {result:?}"
        );
    }
    assert_eq!(GgmlType::F32.bytes_for(1 << 62), None);
    assert_eq!(GgmlType::F32.bytes_for(1 << 61), Some(1 << 63));
    let mut w = GgufWriter::new();
    let result = w.add_tensor("t", &[1 << 62], GgmlType::F32, Vec::new());
    assert!(matches!(result, Err(GgufError::BadShape { .. })));
    let result = w.add_tensor("t", &[1 << 40, 1 << 40], GgmlType::F32, Vec::new());
    assert!(matches!(result, Err(GgufError::BadShape { .. })));
}

fn stories() -> Option<Vec<u8>> {
    let path = common::package_dir().join("../models/stories260k-f32.gguf");
    std::fs::read(path).ok()
}

/// The seeds are valid files (every tensor dequantizes or is of an unsupported type) and pass
/// the checks; a seed that stopped parsing would only test the error path.
#[test]
fn seeds_parse_and_pass_the_checks() {
    let seeds = seeds::seeds(stories().as_deref());
    assert!(seeds.len() >= 9);
    for (name, bytes) in seeds {
        if name.ends_with("_header.gguf") {
            assert!(gguf_importer::GgufFile::from_bytes(bytes.clone()).is_err());
        } else {
            let file = gguf_importer::GgufFile::from_bytes(bytes.clone())
                .unwrap_or_else(|e| panic!("seed {name}: {e}"));
            assert!(
                !file.metadata().is_empty() || name.contains("empty"),
                "{name}"
            );
        }
        check::check_bytes(&bytes);
    }
}

/// The structure-aware decoder turns any bytes into a file, and the empty input into a valid one.
#[test]
fn header_specs_serialize() {
    let empty = header::HeaderSpec::draw(&[]).to_bytes();
    let file = gguf_importer::GgufFile::from_bytes(empty).expect("the empty spec is a valid file");
    assert_eq!((file.version(), file.tensors().len()), (1, 0));
    for seed in 0..64u8 {
        let data: Vec<u8> = (0..256)
            .map(|i| (i as u8).wrapping_mul(seed | 1) ^ seed)
            .collect();
        run_target("gguf_header", &data);
    }
}

#[test]
#[ignore = "writes fuzz/corpus/gguf_file/seed_*; run by hand to regenerate the seeds"]
fn write_seeds() {
    let dir = fuzz_dir().join("corpus/gguf_file");
    std::fs::create_dir_all(&dir).expect("corpus directory");
    for (name, bytes) in seeds::seeds(stories().as_deref()) {
        std::fs::write(dir.join(format!("seed_{name}")), bytes).expect("write seed");
    }
}
