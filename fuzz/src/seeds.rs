//! Seed inputs for the `gguf_file` target: small valid files written by [`GgufWriter`] for each
//! GGUF version (every metadata value type, nested arrays, every ggml type the importer
//! dequantizes, one it does not, an empty tensor, a non-default alignment), and the stories260K
//! model shrunk to one row per tensor plus its header alone.
//!
//! Written into `fuzz/corpus/gguf_file/` by the ignored test `write_seeds` in
//! `importer/tests/fuzz_corpus.rs` (which includes this file with `#[path]`):
//!
//! ```text
//! cargo test -p gguf-importer --test fuzz_corpus -- --ignored write_seeds
//! ```

use gguf_importer::{GgmlType, GgufFile, GgufWriter, Value, ValueType};

/// Deterministic bytes (64-bit LCG): stand-in block data, whatever the scales decode to.
fn pattern(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 56) as u8
        })
        .collect()
}

/// One entry of each value type, and the arrays a tokenizer and a loader read.
fn add_metadata(w: &mut GgufWriter) {
    let s = |x: &str| Value::String(x.to_string());
    let entries = [
        ("general.architecture", s("llama")),
        ("llama.block_count", Value::U32(2)),
        (
            "llama.attention.head_count_kv",
            Value::Array(ValueType::I32, vec![Value::I32(1), Value::I32(2)]),
        ),
        ("u8", Value::U8(200)),
        ("i8", Value::I8(-3)),
        ("u16", Value::U16(60000)),
        ("i16", Value::I16(-300)),
        ("i32", Value::I32(-70000)),
        ("f32", Value::F32(0.5)),
        ("bool", Value::Bool(true)),
        ("u64", Value::U64(1 << 40)),
        ("i64", Value::I64(-(1 << 40))),
        ("f64", Value::F64(-2.25)),
        (
            "tokenizer.ggml.tokens",
            Value::Array(ValueType::String, vec![s("<s>"), s("a"), s("é")]),
        ),
        (
            "tokenizer.ggml.scores",
            Value::Array(ValueType::F32, vec![Value::F32(0.0); 3]),
        ),
        (
            "nested",
            Value::Array(
                ValueType::Array,
                vec![
                    Value::Array(ValueType::U8, vec![Value::U8(1)]),
                    Value::Array(
                        ValueType::Array,
                        vec![Value::Array(ValueType::Bool, vec![])],
                    ),
                ],
            ),
        ),
    ];
    for (k, v) in entries {
        w.add_metadata(k, v).expect("seed metadata");
    }
}

/// A file of `version` with a tensor of each type in `types` (two rows of one block each).
fn typed_file(version: u32, types: &[GgmlType], alignment: Option<u32>) -> Vec<u8> {
    let mut w = GgufWriter::new().with_version(version).expect("version");
    if let Some(a) = alignment {
        w.add_metadata("general.alignment", Value::U32(a))
            .expect("alignment");
    }
    add_metadata(&mut w);
    for (i, &ty) in types.iter().enumerate() {
        let n = ty
            .bytes_for(2 * ty.block_size() as u64)
            .expect("whole blocks") as usize;
        let data = pattern(n, i as u64 + 1);
        w.add_tensor(format!("t.{}", ty.name()), &[2, ty.block_size()], ty, data)
            .expect("seed tensor");
    }
    w.add_tensor("empty", &[0, 4], GgmlType::F32, Vec::new())
        .expect("empty tensor");
    w.to_bytes()
}

/// stories260K with every tensor cut to its first row, and the header alone (its tensors then
/// lie outside the file).
fn stories_seeds(stories: &[u8]) -> Vec<(String, Vec<u8>)> {
    let file = GgufFile::from_bytes(stories.to_vec()).expect("stories260K parses");
    let mut w = GgufWriter::new();
    w.add_all_metadata(file.metadata()).expect("metadata");
    for t in file.tensors() {
        let row = t.row_len();
        let bytes = t.row_bytes();
        w.add_tensor(
            &t.name,
            &[1, row],
            t.ty,
            file.tensor_data(t)[..bytes].to_vec(),
        )
        .expect("first row");
    }
    let header = stories[..file.data_offset() as usize].to_vec();
    vec![
        ("stories260k_rows.gguf".into(), w.to_bytes()),
        ("stories260k_header.gguf".into(), header),
    ]
}

/// Every seed, by file name; `stories` is models/stories260k-f32.gguf when present.
pub fn seeds(stories: Option<&[u8]>) -> Vec<(String, Vec<u8>)> {
    let dequantized: Vec<GgmlType> = GgmlType::all().filter(|t| t.is_supported()).collect();
    let mut out = Vec::new();
    for version in 1..=3 {
        out.push((
            format!("v{version}_all_types.gguf"),
            typed_file(version, &dequantized, None),
        ));
        out.push((
            format!("v{version}_align64_unsupported.gguf"),
            typed_file(version, &[GgmlType::F32, GgmlType::IQ4_NL], Some(64)),
        ));
        let empty = GgufWriter::new().with_version(version).expect("version");
        out.push((format!("v{version}_empty.gguf"), empty.to_bytes()));
    }
    if let Some(stories) = stories {
        out.extend(stories_seeds(stories));
    }
    out
}
