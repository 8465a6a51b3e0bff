//! The real stories260K model, as published (GGUF v1) and converted to GGUF v3 (both from
//! ../shared/data/models, copied into the repo): the two files must read to identical metadata
//! and tensors.

mod common;

use gguf_importer::{GgmlType, GgufFile, Value};

fn fixture(path: &str) -> std::path::PathBuf {
    common::package_dir().join("..").join(path)
}

fn open_both() -> (GgufFile, GgufFile) {
    let v1 = GgufFile::open(fixture("tests/fixtures/stories260k-f32.v1.gguf")).unwrap();
    let v3 = GgufFile::open(fixture("models/stories260k-f32.gguf")).unwrap();
    (v1, v3)
}

#[test]
fn versions_are_as_published() {
    let (v1, v3) = open_both();
    assert_eq!(v1.version(), 1);
    assert_eq!(v3.version(), 3);
}

#[test]
fn v1_and_v3_have_identical_metadata() {
    let (v1, v3) = open_both();
    let a: Vec<(&str, &Value)> = v1.metadata().iter().collect();
    let b: Vec<(&str, &Value)> = v3.metadata().iter().collect();
    assert_eq!(a.len(), b.len());
    for ((ka, va), (kb, vb)) in a.iter().zip(&b) {
        assert_eq!(ka, kb);
        assert_eq!(va, vb, "value of {ka}");
    }
    assert_eq!(v3.architecture().unwrap(), "llama");
}

#[test]
fn v1_and_v3_have_identical_tensors() {
    let (v1, v3) = open_both();
    assert_eq!(v1.tensors().len(), v3.tensors().len());
    for (a, b) in v1.tensors().iter().zip(v3.tensors()) {
        assert_eq!(a.name, b.name);
        assert_eq!(a.ne, b.ne, "{}", a.name);
        assert_eq!(a.ty, b.ty, "{}", a.name);
        assert_eq!(a.ty, GgmlType::F32);
        assert_eq!(v1.tensor_data(a), v3.tensor_data(b), "{}", a.name);
        assert_eq!(
            v1.dequantize(&a.name).unwrap(),
            v3.dequantize(&b.name).unwrap()
        );
    }
}
