//! Shared by the importer's tests: where this package's files are.

use std::path::PathBuf;

/// This package's directory: `CARGO_MANIFEST_DIR` at run time (cargo test sets it; a test binary
/// reused from a checkout at another path that shares the target directory would otherwise read
/// that checkout's files), the compile-time value only as the fallback.
pub fn package_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    )
}
