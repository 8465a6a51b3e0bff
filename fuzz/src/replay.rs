//! Replaying a corpus directory through a target's check on stable, without libFuzzer: what
//! `importer/tests/fuzz_corpus.rs` and `tests/fuzz_replay.rs` do with the committed corpora and
//! regressions (both include this file with `#[path]`).

use std::path::{Path, PathBuf};

/// Files of `dir/<target>/`, sorted; a missing directory has none.
pub fn inputs(dir: &Path, target: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir.join(target)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `run_target(target, input)` on every input of `target` under `dir`, naming each input
/// that panics; returns how many inputs there were.
pub fn replay(dir: &Path, target: &str, run_target: fn(&str, &[u8])) -> usize {
    let files = inputs(dir, target);
    let mut failed = Vec::new();
    for path in &files {
        let data = std::fs::read(path).expect("read corpus file");
        if std::panic::catch_unwind(|| run_target(target, &data)).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: inputs that panic: {failed:#?}"
    );
    files.len()
}
