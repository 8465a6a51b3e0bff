//! Reading the fixtures that the `scripts/make_ggml_*_fixtures.py` scripts write from llama.cpp's
//! own functions (kernels/tests/fixtures/<dir>/): raw little-endian files and a `cases.txt` of
//! `format n rows m` lines. Shared by ggml_vec_dot.rs, ggml_repack.rs and ggml_bf16.rs.

#![allow(dead_code)]

use std::path::PathBuf;

use gguf_importer::GgmlType;

/// A fixture directory under kernels/tests/fixtures.
pub struct Fixtures(pub &'static str);

/// One line of a cases file: a format, a row length, weight rows and activation rows.
pub struct Case {
    pub ty: GgmlType,
    pub n: usize,
    pub rows: usize,
    pub m: usize,
}

impl Fixtures {
    pub fn path(&self, name: &str) -> PathBuf {
        PathBuf::from(
            std::env::var("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("tests/fixtures")
        .join(self.0)
        .join(name)
    }

    /// The bytes of `name` (panics naming it).
    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap_or_else(|e| panic!("{}/{name}: {e}", self.0))
    }

    /// `name` as little-endian f32s.
    pub fn read_f32(&self, name: &str) -> Vec<f32> {
        self.read(name)
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    /// The non-comment lines of the text file `name`, split at whitespace.
    pub fn lines(&self, name: &str) -> Vec<Vec<String>> {
        let text = String::from_utf8(self.read(name)).unwrap();
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| l.split_whitespace().map(String::from).collect())
            .collect()
    }

    /// The cases of `name` (`format n rows m` per line).
    pub fn cases(&self, name: &str) -> Vec<Case> {
        self.lines(name)
            .iter()
            .map(|f| Case {
                ty: GgmlType::from_name(&f[0]).unwrap_or_else(|| panic!("format {}", f[0])),
                n: f[1].parse().unwrap(),
                rows: f[2].parse().unwrap(),
                m: f[3].parse().unwrap(),
            })
            .collect()
    }
}
