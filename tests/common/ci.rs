//! The one switch between "skip" and "fail" for tests that need something a machine may lack (a
//! wgpu adapter, the SmolLM2 file): `CI` set to `true` or `1`, as CI systems set it and as
//! `.ci/run` exports it. Shared by this crate's tests (through `common`) and the kernels' (through
//! `#[path]`).

#![allow(dead_code)]

/// Whether a missing device or model is a failure: under CI.
pub fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips (returns None after a message) or, under CI, panics naming `what`.
#[track_caller]
pub fn missing<T>(what: &str) -> Option<T> {
    if required() {
        panic!("{what} (required under CI)");
    }
    eprintln!("SKIPPED: {what}");
    None
}
