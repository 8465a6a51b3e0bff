//! Bad files: each corruption is built here from a valid file written by `GgufWriter` (or the real
//! stories260K file), and must fail with its own typed error — no panic, no allocation sized by an
//! unchecked count.

mod common;

use gguf_importer::{GgmlType, GgufError, GgufFile, GgufWriter, Value, ValueType};

fn fixture(path: &str) -> std::path::PathBuf {
    common::package_dir().join("..").join(path)
}

/// Offset of the first occurrence of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{:?} not in buffer", String::from_utf8_lossy(needle)))
}

fn parse(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
    GgufFile::from_bytes(bytes)
}

/// A small valid file: two metadata keys and one Q4_0 tensor `weight` of shape [2, 64].
fn small_file(version: u32) -> Vec<u8> {
    let mut w = GgufWriter::new().with_version(version).unwrap();
    w.add_metadata("general.architecture", Value::String("llama".into()))
        .unwrap();
    w.add_metadata("aaaa", Value::U32(7)).unwrap();
    w.add_metadata(
        "aaab",
        Value::Array(ValueType::U8, vec![Value::U8(1), Value::U8(2)]),
    )
    .unwrap();
    w.add_tensor("weight", &[2, 64], GgmlType::Q4_0, vec![0u8; 4 * 18])
        .unwrap();
    w.add_tensor("wfight", &[4], GgmlType::F32, vec![0u8; 16])
        .unwrap();
    w.to_bytes()
}

/// Offsets of the fields of tensor info `name` in a v2/v3 file: (n_dims, ne[0], type, offset).
fn tensor_fields(
    buf: &[u8],
    name: &str,
    n_dims: usize,
    width: usize,
) -> (usize, usize, usize, usize) {
    let at = find(buf, name.as_bytes()) + name.len();
    let ne0 = at + 4;
    let ty = ne0 + n_dims * width;
    (at, ne0, ty, ty + 4)
}

#[test]
fn valid_small_file_parses() {
    for version in 1..=3 {
        let f = parse(small_file(version)).unwrap();
        assert_eq!(f.version(), version);
        assert_eq!(f.tensors().len(), 2);
        assert_eq!(f.tensor("weight").unwrap().shape(), vec![2, 64]);
    }
}

#[test]
fn bad_magic() {
    let mut b = small_file(3);
    b[0..4].copy_from_slice(b"GGML");
    assert!(matches!(parse(b), Err(GgufError::BadMagic { found }) if &found == b"GGML"));
}

#[test]
fn unknown_versions() {
    for v in [0u32, 4, 0xFFFF_FFFF] {
        let mut b = small_file(3);
        b[4..8].copy_from_slice(&v.to_le_bytes());
        assert!(matches!(parse(b), Err(GgufError::UnsupportedVersion { version }) if version == v));
    }
}

/// Every prefix of the header and tensor-info region fails with Truncated or CountTooLarge; prefixes
/// that end in the padding or the data fail with TensorOutOfBounds.
fn check_every_truncation(bytes: &[u8]) {
    let f = parse(bytes.to_vec()).unwrap();
    let data_offset = f.data_offset() as usize;
    for cut in 0..data_offset {
        match parse(bytes[..cut].to_vec()) {
            Err(GgufError::Truncated { offset, .. }) => assert!(offset as usize <= cut),
            Err(GgufError::CountTooLarge { .. }) | Err(GgufError::TensorOutOfBounds { .. }) => {}
            other => panic!("cut at {cut}: expected a truncation error, got {other:?}"),
        }
    }
    let last = f
        .tensors()
        .iter()
        .map(|t| f.data_offset() + t.offset + t.n_bytes)
        .max()
        .unwrap() as usize;
    for cut in (data_offset..last).step_by(997).chain([last - 1]) {
        assert!(
            matches!(
                parse(bytes[..cut].to_vec()),
                Err(GgufError::TensorOutOfBounds { .. })
            ),
            "cut at {cut} in the data"
        );
    }
}

#[test]
fn truncated_anywhere_real_file_v3() {
    check_every_truncation(&std::fs::read(fixture("models/stories260k-f32.gguf")).unwrap());
}

#[test]
fn truncated_anywhere_real_file_v1() {
    check_every_truncation(
        &std::fs::read(fixture("tests/fixtures/stories260k-f32.v1.gguf")).unwrap(),
    );
}

#[test]
fn truncated_anywhere_small_files() {
    for v in 1..=3 {
        check_every_truncation(&small_file(v));
    }
}

#[test]
fn truncation_error_says_where() {
    let b = std::fs::read(fixture("models/stories260k-f32.gguf")).unwrap();
    // Cut inside the metadata count (u64 at 16).
    let err = parse(b[..20].to_vec()).unwrap_err();
    assert!(
        matches!(
            err,
            GgufError::Truncated {
                offset: 16,
                needed: 8,
                available: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "file truncated at byte 16 while reading metadata count: needed 8 bytes, 4 left"
    );
}

#[test]
fn huge_counts_in_real_file() {
    let b = std::fs::read(fixture("models/stories260k-f32.gguf")).unwrap();
    // v3 header: magic, version, n_tensors (u64 at 8), n_kv (u64 at 16).
    for (at, what) in [(8usize, "tensor count"), (16, "metadata count")] {
        for huge in [u64::MAX, 1 << 40, b.len() as u64] {
            let mut c = b.clone();
            c[at..at + 8].copy_from_slice(&huge.to_le_bytes());
            match parse(c) {
                Err(GgufError::CountTooLarge { what: w, count, .. }) => {
                    assert_eq!(w, what);
                    assert_eq!(count, huge);
                }
                other => panic!("{what} = {huge}: {other:?}"),
            }
        }
    }
    // The length of the first key (u64 at 24).
    let mut c = b.clone();
    c[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(parse(c), Err(GgufError::CountTooLarge { .. })));
    // The element count of the token array: key, type ARRAY (9), element type STRING (8), count.
    let key = b"tokenizer.ggml.tokens";
    let count_at = find(&b, key) + key.len() + 4 + 4;
    let mut c = b.clone();
    c[count_at..count_at + 8].copy_from_slice(&(1u64 << 50).to_le_bytes());
    assert!(
        matches!(parse(c), Err(GgufError::CountTooLarge { what, .. }) if what.contains("tokenizer.ggml.tokens"))
    );
}

#[test]
fn huge_counts_in_v1_file() {
    let b = std::fs::read(fixture("tests/fixtures/stories260k-f32.v1.gguf")).unwrap();
    // v1 header: n_tensors (u32 at 8), n_kv (u32 at 12).
    for at in [8usize, 12] {
        let mut c = b.clone();
        c[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(parse(c), Err(GgufError::CountTooLarge { .. })));
    }
}

#[test]
fn too_many_dims() {
    let mut b = small_file(3);
    let (n_dims, ..) = tensor_fields(&b, "weight", 2, 8);
    b[n_dims..n_dims + 4].copy_from_slice(&5u32.to_le_bytes());
    assert!(
        matches!(parse(b), Err(GgufError::TooManyDims { tensor, n_dims: 5 }) if tensor == "weight")
    );
}

#[test]
fn unknown_tensor_type() {
    for id in [4u32, 31, 40, 1000] {
        let mut b = small_file(3);
        let (_, _, ty, _) = tensor_fields(&b, "weight", 2, 8);
        b[ty..ty + 4].copy_from_slice(&id.to_le_bytes());
        assert!(
            matches!(parse(b), Err(GgufError::UnknownTensorType { ref tensor, type_id }) if tensor == "weight" && type_id == id)
        );
    }
}

#[test]
fn unknown_value_type() {
    let mut b = small_file(3);
    let at = find(&b, b"aaaa") + 4;
    b[at..at + 4].copy_from_slice(&13u32.to_le_bytes());
    assert!(
        matches!(parse(b), Err(GgufError::UnknownValueType { key, type_id: 13, .. }) if key == "aaaa")
    );
}

#[test]
fn tensor_data_outside_the_file() {
    let b = small_file(3);
    let (_, _, _, off) = tensor_fields(&b, "weight", 2, 8);
    for bad in [1u64 << 20, u64::MAX - 31] {
        let mut c = b.clone();
        c[off..off + 8].copy_from_slice(&bad.to_le_bytes());
        match parse(c) {
            Err(GgufError::TensorOutOfBounds {
                tensor, file_len, ..
            }) => {
                assert_eq!(tensor, "weight");
                assert_eq!(file_len, b.len() as u64);
            }
            other => panic!("offset {bad}: {other:?}"),
        }
    }
}

#[test]
fn misaligned_tensor_data() {
    let mut b = small_file(3);
    let (_, _, _, off) = tensor_fields(&b, "weight", 2, 8);
    b[off..off + 8].copy_from_slice(&1u64.to_le_bytes());
    assert!(matches!(
        parse(b),
        Err(GgufError::MisalignedTensor {
            offset: 1,
            alignment: 32,
            ..
        })
    ));
}

#[test]
fn row_not_multiple_of_block_size() {
    let mut b = small_file(3);
    let (_, ne0, ..) = tensor_fields(&b, "weight", 2, 8);
    b[ne0..ne0 + 8].copy_from_slice(&48u64.to_le_bytes());
    assert!(matches!(
        parse(b),
        Err(GgufError::RowNotBlockAligned {
            ne0: 48,
            block_size: 32,
            type_name: "Q4_0",
            ..
        })
    ));
}

#[test]
fn shape_overflow() {
    let mut b = small_file(3);
    let (_, ne0, ..) = tensor_fields(&b, "weight", 2, 8);
    b[ne0..ne0 + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    b[ne0 + 8..ne0 + 16].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(matches!(parse(b), Err(GgufError::BadShape { .. })));
}

#[test]
fn duplicate_key() {
    let mut b = small_file(3);
    let at = find(&b, b"aaab");
    b[at + 3] = b'a';
    assert!(matches!(parse(b), Err(GgufError::DuplicateKey { key }) if key == "aaaa"));
}

#[test]
fn duplicate_tensor_name() {
    let mut b = small_file(3);
    let at = find(&b, b"wfight");
    b[at + 1] = b'e';
    assert!(matches!(parse(b), Err(GgufError::DuplicateTensor { name }) if name == "weight"));
}

#[test]
fn invalid_utf8_key() {
    let mut b = small_file(3);
    let at = find(&b, b"aaaa");
    b[at] = 0xFF;
    assert!(matches!(parse(b), Err(GgufError::InvalidUtf8 { .. })));
}

#[test]
fn bad_alignment() {
    let mut w = GgufWriter::new();
    w.add_metadata("general.alignment", Value::U32(64)).unwrap();
    w.add_tensor("t", &[32], GgmlType::F32, vec![0u8; 128])
        .unwrap();
    let b = w.to_bytes();
    assert_eq!(parse(b.clone()).unwrap().alignment(), 64);
    let at = find(&b, b"general.alignment") + "general.alignment".len() + 4;
    for bad in [0u32, 3, 48] {
        let mut c = b.clone();
        c[at..at + 4].copy_from_slice(&bad.to_le_bytes());
        assert!(
            matches!(parse(c), Err(GgufError::BadAlignment { alignment }) if alignment == bad as u64)
        );
    }
    // Alignment stored as another type than UINT32.
    let mut c = b.clone();
    c[at - 4..at].copy_from_slice(&(ValueType::I32 as u32).to_le_bytes());
    assert!(matches!(
        parse(c),
        Err(GgufError::WrongType {
            found: ValueType::I32,
            ..
        })
    ));
}

#[test]
fn arrays_nested_too_deep() {
    let mut v = Value::U8(1);
    for _ in 0..9 {
        v = Value::Array(v.value_type(), vec![v]);
    }
    let mut w = GgufWriter::new();
    w.add_metadata("deep", v).unwrap();
    assert!(
        matches!(parse(w.to_bytes()), Err(GgufError::NestingTooDeep { key, .. }) if key == "deep")
    );
}

#[test]
fn unsupported_type_is_listed_but_not_dequantized() {
    // Q8_K (ggml's intermediate format for dot products: an f32 scale, 256 i8 and 16 i16 sums)
    // is a type that a file may name but that this crate does not dequantize.
    let mut w = GgufWriter::new();
    w.add_tensor(
        "blk.0.attn_q.weight",
        &[1, 256],
        GgmlType::Q8_K,
        vec![0u8; 292],
    )
    .unwrap();
    let f = parse(w.to_bytes()).unwrap();
    assert_eq!(f.tensors()[0].ty, GgmlType::Q8_K);
    match f.dequantize("blk.0.attn_q.weight") {
        Err(e @ GgufError::UnsupportedType { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("blk.0.attn_q.weight") && msg.contains("Q8_K"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn missing_file_is_an_io_error_naming_the_path() {
    let err = GgufFile::open("/nonexistent/model.gguf").unwrap_err();
    assert!(matches!(err, GgufError::Io { ref path, .. } if path == "/nonexistent/model.gguf"));
}

#[test]
fn typed_accessors_name_the_key() {
    let f = parse(small_file(3)).unwrap();
    let md = f.metadata();
    assert!(matches!(md.get_str("nope"), Err(GgufError::MissingKey { key }) if key == "nope"));
    assert!(matches!(
        md.get_str("aaaa"),
        Err(GgufError::WrongType { key, expected: "STRING", found: ValueType::U32 }) if key == "aaaa"
    ));
    assert_eq!(md.get_u64("aaaa").unwrap(), 7);
    assert!(f.require_tensor("nope").is_err());
}

/// A dimension of 0 is accepted, as ggml's gguf.cpp accepts it (its element-count check skips
/// zero-element tensors): the tensor has no elements and no bytes, its data is an empty slice
/// and it dequantizes to nothing, whatever its type; it shares its offset with the next tensor
/// without overlapping it. Where it is a model's weight, the model's shape check refuses it
/// (tests/bad_input.rs).
#[test]
fn zero_sized_dimensions_are_empty_tensors_as_in_ggml() {
    let mut w = GgufWriter::new();
    w.add_tensor("no_rows", &[0, 64], GgmlType::Q4_0, Vec::new()) // ne = [64, 0]
        .unwrap();
    w.add_tensor("no_columns", &[4, 0], GgmlType::Q6_K, Vec::new()) // ne = [0, 4]
        .unwrap();
    w.add_tensor("empty", &[0], GgmlType::F16, Vec::new())
        .unwrap();
    w.add_f32("after", &[4], &[1.0, 2.0, 3.0, 4.0]).unwrap();
    let f = parse(w.to_bytes()).unwrap();
    for (name, ne) in [
        ("no_rows", vec![64, 0]),
        ("no_columns", vec![0, 4]),
        ("empty", vec![0]),
    ] {
        let info = f.tensor(name).unwrap();
        assert_eq!(info.ne, ne, "{name}");
        assert_eq!((info.n_elements, info.n_bytes), (0, 0), "{name}");
        assert_eq!(info.row_bytes() * info.n_rows(), 0, "{name}");
        assert!(f.tensor_data(info).is_empty(), "{name}");
        assert_eq!(f.dequantize(name).unwrap(), Vec::<f32>::new(), "{name}");
        let halves = gguf_importer::quants::dequantize_as::<half::f16>(info, f.tensor_data(info));
        assert!(halves.unwrap().is_empty(), "{name}");
        f.release_tensor_pages(info);
    }
    assert_eq!(
        f.tensor("after").unwrap().offset,
        f.tensor("empty").unwrap().offset
    );
    assert_eq!(f.dequantize("after").unwrap(), [1.0, 2.0, 3.0, 4.0]);

    // Set to 0 in a file's bytes: the same. An empty range is still checked against the file.
    let b = small_file(3);
    let (_, ne0, _, off) = tensor_fields(&b, "weight", 2, 8);
    let mut c = b.clone();
    c[ne0 + 8..ne0 + 16].copy_from_slice(&0u64.to_le_bytes());
    let f = parse(c.clone()).unwrap();
    let info = f.tensor("weight").unwrap();
    assert_eq!((info.shape(), info.n_bytes), (vec![0, 64], 0));
    assert!(f.dequantize("weight").unwrap().is_empty());
    c[off..off + 8].copy_from_slice(&(1u64 << 20).to_le_bytes());
    assert!(matches!(
        parse(c),
        Err(GgufError::TensorOutOfBounds { tensor, start, end, .. })
            if tensor == "weight" && start == end
    ));
}

/// `n_dims = 0` is a scalar of one element, as ggml reads it (every `ne` defaults to 1): `ne`
/// and the row-major shape are empty, the data is one element. A block type cannot hold one
/// element: such a tensor is refused as ggml refuses it (ne[0] = 1 is not a whole block).
#[test]
fn no_dimensions_is_a_one_element_scalar_as_in_ggml() {
    let mut w = GgufWriter::new();
    w.add_f32("scalar", &[], &[2.5]).unwrap();
    let b = w.to_bytes();
    let (n_dims, _, ty, _) = tensor_fields(&b, "scalar", 0, 8);
    assert_eq!(b[n_dims..n_dims + 4], 0u32.to_le_bytes());
    let f = parse(b.clone()).unwrap();
    let info = f.tensor("scalar").unwrap();
    assert!(info.ne.is_empty() && info.shape().is_empty());
    assert_eq!((info.n_elements, info.n_bytes), (1, 4));
    assert_eq!(f.dequantize("scalar").unwrap(), [2.5]);

    let mut c = b;
    c[ty..ty + 4].copy_from_slice(&GgmlType::Q4_0.id().to_le_bytes());
    assert!(matches!(
        parse(c),
        Err(GgufError::RowNotBlockAligned { tensor, ne0: 1, block_size: 32, .. })
            if tensor == "scalar"
    ));
}

#[test]
fn overlapping_tensor_data() {
    let b = small_file(3);
    let data_offset = parse(b.clone()).unwrap().data_offset();
    // "weight" is 72 bytes at 0; "wfight" (16 bytes, at 96) moved to 64 overlaps its end, and
    // moved to 0 overlaps all of its start.
    let (_, _, _, off) = tensor_fields(&b, "wfight", 1, 8);
    for (at, second_end) in [(64u64, 80u64), (0, 16)] {
        let mut c = b.clone();
        c[off..off + 8].copy_from_slice(&at.to_le_bytes());
        match parse(c) {
            Err(e @ GgufError::OverlappingTensors { .. }) => {
                let GgufError::OverlappingTensors { first, second } = &e else {
                    unreachable!()
                };
                assert_eq!(
                    (first.start, first.end, second.start, second.end),
                    (
                        data_offset,
                        data_offset + 72,
                        data_offset + at,
                        data_offset + second_end
                    )
                );
                let msg = e.to_string();
                assert!(
                    msg.contains("\"weight\"")
                        && msg.contains("\"wfight\"")
                        && msg.contains("overlap"),
                    "{msg}"
                );
            }
            other => panic!("wfight at {at}: {other:?}"),
        }
    }
    // Adjacent ranges (wfight right after weight's 72 bytes, at the next aligned offset) are fine.
    let mut c = b.clone();
    c[off..off + 8].copy_from_slice(&96u64.to_le_bytes());
    assert!(parse(c).is_ok());
}

#[test]
fn invalid_utf8_in_a_tensor_name() {
    let mut b = small_file(3);
    let at = find(&b, b"wfight");
    b[at + 2] = 0xC3; // a lead byte followed by ASCII: not UTF-8
    match parse(b) {
        Err(GgufError::InvalidUtf8 { what, offset }) => {
            assert_eq!(what, "name of tensor 1");
            assert_eq!(offset as usize, at - 8); // the name's length field
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn invalid_utf8_in_string_values() {
    // A string value.
    let mut b = small_file(3);
    let at = find(&b, b"llama");
    b[at] = 0xFF;
    match parse(b) {
        Err(GgufError::InvalidUtf8 { what, offset }) => {
            assert_eq!(what, "value of \"general.architecture\"");
            assert_eq!(offset as usize, at - 8);
        }
        other => panic!("{other:?}"),
    }
    // An element of a string array: the error names it.
    let tokens = ["<s>", "hello", "world"].map(|t| Value::String(t.into()));
    let mut w = GgufWriter::new();
    w.add_metadata(
        "tokenizer.ggml.tokens",
        Value::Array(ValueType::String, tokens.to_vec()),
    )
    .unwrap();
    let mut b = w.to_bytes();
    let at = find(&b, b"world");
    b[at + 4] = 0x80; // a continuation byte with no lead byte
    match parse(b) {
        Err(e @ GgufError::InvalidUtf8 { .. }) => assert_eq!(
            e.to_string(),
            format!(
                "invalid UTF-8 in element 2 of \"tokenizer.ggml.tokens\" at byte {}",
                at - 8
            )
        ),
        other => panic!("{other:?}"),
    }
}

/// gguf.cpp reads a bool as one byte, any non-zero byte being true (`dst = tmp != 0`), and
/// llama.cpp loads such a file: so does this reader, for a value and for array elements alike.
#[test]
fn bools_other_than_0_and_1_read_as_true_as_in_ggml() {
    let mut w = GgufWriter::new();
    w.add_metadata("flag", Value::Bool(false)).unwrap();
    w.add_metadata(
        "flags",
        Value::Array(ValueType::Bool, vec![Value::Bool(false); 3]),
    )
    .unwrap();
    let b = w.to_bytes();
    let value_at = find(&b, b"flag") + 4 + 4; // key, type BOOL
    let elements_at = find(&b, b"flags") + 5 + 4 + 4 + 8; // key, ARRAY, BOOL, count
    for byte in [2u8, 0x7F, 0x80, 0xFF] {
        let mut c = b.clone();
        c[value_at] = byte;
        c[elements_at + 1] = byte;
        let f = parse(c).unwrap();
        assert!(f.metadata().get_bool("flag").unwrap(), "byte {byte:#x}");
        assert_eq!(
            f.metadata().get("flags"),
            Some(&Value::Array(
                ValueType::Bool,
                vec![Value::Bool(false), Value::Bool(true), Value::Bool(false)]
            )),
            "byte {byte:#x}"
        );
    }
}
