//! The writer and reader agree: every metadata value type (nested arrays too), every GGUF version,
//! tensors of every type, alignment respected.

use gguf_importer::{GgmlType, GgufFile, GgufWriter, Value, ValueType};

fn all_values() -> Vec<(&'static str, Value)> {
    vec![
        ("u8", Value::U8(250)),
        ("i8", Value::I8(-5)),
        ("u16", Value::U16(65000)),
        ("i16", Value::I16(-32000)),
        ("u32", Value::U32(4_000_000_000)),
        ("i32", Value::I32(-2_000_000_000)),
        ("f32", Value::F32(1.5e-5)),
        ("bool", Value::Bool(true)),
        ("string", Value::String("héllo ▁world".into())),
        ("u64", Value::U64(u64::MAX)),
        ("i64", Value::I64(i64::MIN)),
        ("f64", Value::F64(-2.5e300)),
        ("empty_array", Value::Array(ValueType::I32, vec![])),
        (
            "strings",
            Value::Array(
                ValueType::String,
                vec![Value::String("a".into()), Value::String(String::new())],
            ),
        ),
        (
            "nested",
            Value::Array(
                ValueType::Array,
                vec![
                    Value::Array(ValueType::F32, vec![Value::F32(1.0), Value::F32(2.0)]),
                    Value::Array(ValueType::Bool, vec![Value::Bool(false)]),
                ],
            ),
        ),
    ]
}

#[test]
fn metadata_round_trips_in_every_version() {
    for version in 1..=3 {
        let mut w = GgufWriter::new().with_version(version).unwrap();
        for (k, v) in all_values() {
            w.add_metadata(k, v).unwrap();
        }
        let f = GgufFile::from_bytes(w.to_bytes()).unwrap();
        assert_eq!(f.version(), version);
        let read: Vec<(String, Value)> = f
            .metadata()
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let written: Vec<(String, Value)> = all_values()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(read, written);
    }
}

#[test]
fn tensors_round_trip_with_alignment() {
    for alignment in [None, Some(64u32), Some(4096)] {
        let mut w = GgufWriter::new();
        if let Some(a) = alignment {
            w.add_metadata("general.alignment", Value::U32(a)).unwrap();
        }
        let mut expected = Vec::new();
        for (i, ty) in GgmlType::all().enumerate() {
            // Two rows of one block each, or of 3 elements for plain types.
            let row = if ty.block_size() == 1 {
                3
            } else {
                ty.block_size()
            };
            let bytes = ty.bytes_for(2 * row as u64).unwrap() as usize;
            let data: Vec<u8> = (0..bytes).map(|j| (i * 31 + j * 7) as u8).collect();
            let name = format!("t.{}", ty.name());
            w.add_tensor(&name, &[2, row], ty, data.clone()).unwrap();
            expected.push((name, ty, vec![2, row], data));
        }
        let f = GgufFile::from_bytes(w.to_bytes()).unwrap();
        let align = alignment.unwrap_or(32) as u64;
        assert_eq!(f.alignment(), align);
        assert_eq!(f.data_offset() % align, 0);
        for (name, ty, shape, data) in expected {
            let t = f.tensor(&name).unwrap();
            assert_eq!(t.ty, ty);
            assert_eq!(t.shape(), shape);
            assert_eq!(t.offset % align, 0);
            assert_eq!(f.tensor_data(t), &data[..], "{name}");
        }
    }
}

#[test]
fn f32_tensor_round_trips_through_dequantize() {
    let values: Vec<f32> = (0..12).map(|i| i as f32 - 5.5).collect();
    let mut w = GgufWriter::new();
    w.add_f32("x", &[3, 4], &values).unwrap();
    let f = GgufFile::from_bytes(w.to_bytes()).unwrap();
    assert_eq!(f.tensor("x").unwrap().ne, vec![4, 3]);
    assert_eq!(f.dequantize("x").unwrap(), values);
}

#[test]
fn writer_rejects_bad_tensors() {
    let mut w = GgufWriter::new();
    assert!(w
        .add_tensor("q", &[1, 48], GgmlType::Q4_0, vec![0; 27])
        .is_err());
    assert!(w
        .add_tensor("s", &[1, 32], GgmlType::Q4_0, vec![0; 17])
        .is_err());
    assert!(w
        .add_tensor("d", &[1, 1, 1, 1, 1], GgmlType::F32, vec![0; 4])
        .is_err());
    w.add_tensor("ok", &[32], GgmlType::Q4_0, vec![0; 18])
        .unwrap();
    assert!(w
        .add_tensor("ok", &[32], GgmlType::Q4_0, vec![0; 18])
        .is_err());
    assert!(w.add_metadata("general.alignment", Value::U32(3)).is_err());
    assert!(w.add_metadata("general.alignment", Value::U64(32)).is_err());
}

#[test]
fn writes_and_reopens_a_file_on_disk() {
    let dir = std::env::temp_dir().join(format!("gguf-writer-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.gguf");
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", Value::String("llama".into()))
        .unwrap();
    w.add_f32("x", &[2], &[1.0, 2.0]).unwrap();
    w.write_file(&path).unwrap();
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.architecture().unwrap(), "llama");
    assert_eq!(f.dequantize("x").unwrap(), vec![1.0, 2.0]);
    std::fs::remove_dir_all(&dir).unwrap();
}
