//! The property every fuzz input is held to: parsing any bytes as GGUF, and then using the file
//! as a model loader would, ends in `Ok` or a typed `Err`, never in a panic, an abort or an
//! allocation larger than the input justifies.
//!
//! Shared by the fuzz targets (`fuzz_targets/`) and by `importer/tests/fuzz_corpus.rs`, which
//! includes this file with `#[path]` to replay the committed corpus on stable: it may use only
//! `gguf_importer`, `half` and `std`.

use gguf_importer::quants::{dequantize_as, dequantize_into};
use gguf_importer::{GgufFile, GgufWriter, Metadata, TensorInfo, Value};

/// Tensors whose f32 dequantization would exceed this are not dequantized: one input must stay
/// well under a second and under libFuzzer's `-malloc_limit_mb`. (The data of a tensor lies inside
/// the input, so this bounds only the expansion of dense quantized blocks, up to 12x for Q2_K.)
pub const MAX_DEQUANT_BYTES: u64 = 4 << 20;

/// `n_layers` values tried with [`Metadata::get_per_layer_usize`] besides a small fixed set: a
/// loader passes `{arch}.block_count`, read from the same file (the loader bounds it, not the
/// importer, so larger values are not tried).
const MAX_LAYERS: usize = 4096;

/// Parses `bytes`; if that succeeds, exercises the file. An `Err` is a valid outcome; its message
/// is rendered so that the `Display` of every error variant is run too.
pub fn check_bytes(bytes: &[u8]) {
    match GgufFile::from_bytes(bytes.to_vec()) {
        Ok(file) => exercise(&file),
        Err(e) => {
            let _ = (e.to_string(), format!("{e:?}"));
        }
    }
}

/// Everything a user of a parsed file does: metadata through every typed accessor, every tensor
/// info and its data, dequantization of the supported types, and rewriting the file.
pub fn exercise(file: &GgufFile) {
    let _ = format!("{file:?}");
    assert!((1..=3).contains(&file.version()));
    assert!(file.alignment().is_power_of_two());
    assert!(file.data_offset() <= file.file_len() || file.tensors().is_empty());
    let _ = file.architecture();

    let md = file.metadata();
    assert_eq!(md.iter().count(), md.len());
    assert_eq!(md.is_empty(), md.iter().next().is_none());
    for (key, value) in md.iter() {
        assert!(std::ptr::eq(
            md.get(key).expect("listed key is present"),
            value
        ));
        assert!(md.contains(key));
        check_value(value);
        check_accessors(md, key);
    }

    for info in file.tensors() {
        check_tensor(file, info);
    }
    assert!(file.require_tensor("\0not a tensor name").is_err());
    file.release_pages();

    check_rewrite(file);
}

/// A value's own accessors and its rendering (long strings and arrays are summarized).
fn check_value(value: &Value) {
    let _ = (
        value.value_type(),
        value.as_integer(),
        value.as_f64(),
        value.as_str(),
    );
    let _ = (value.to_string(), format!("{value:?}"));
    if let Value::Array(ty, items) = value {
        for item in items {
            assert_eq!(item.value_type(), *ty, "array element of another type");
            check_value(item);
        }
    }
}

/// Every typed accessor of the table on `key`: each returns a value or a typed error.
fn check_accessors(md: &Metadata, key: &str) {
    let _ = md.get_str(key);
    let _ = md.get_bool(key);
    let _ = md.get_u64(key);
    let _ = md.get_i64(key);
    let _ = md.get_f32(key);
    let _ = md.get_array(key);
    let _ = md.get_str_array(key);
    let _ = md.get_f32_array(key);
    let _ = md.get_i64_array(key);
    let layers = md.get_usize(key).ok().filter(|&n| n <= MAX_LAYERS);
    for n in [0, 1, 3, 32].into_iter().chain(layers) {
        if let Ok(v) = md.get_per_layer_usize(key, n) {
            assert_eq!(v.len(), n);
        }
    }
}

/// A tensor info's derived sizes, its data, and its dequantization.
fn check_tensor(file: &GgufFile, info: &TensorInfo) {
    assert_eq!(file.tensor(&info.name), Some(info));
    assert!(file.require_tensor(&info.name).is_ok());
    let ty = info.ty;
    let _ = (ty.name(), ty.id(), ty.to_string(), ty.is_quantized());
    assert!(info.ne.len() <= 4);
    assert_eq!(info.shape().len(), info.ne.len());
    assert_eq!(ty.bytes_for(info.n_elements), Some(info.n_bytes));
    // Not wrapped around (a release build does not trap overflow).
    let exact = u128::from(info.n_elements) / ty.block_size() as u128 * ty.type_size() as u128;
    assert_eq!(
        exact,
        u128::from(info.n_bytes),
        "byte count of {:?}",
        info.name
    );
    assert_eq!(info.offset % file.alignment(), 0);
    // The sizes a kernel derives; they agree with `n_bytes` when the tensor has elements.
    let (row_len, n_rows, row_bytes) = (info.row_len(), info.n_rows(), info.row_bytes());
    if info.n_elements > 0 {
        assert_eq!(row_len as u64 * n_rows as u64, info.n_elements);
        assert_eq!(row_bytes as u64 * n_rows as u64, info.n_bytes);
    }

    let data = file.tensor_data(info);
    assert_eq!(data.len() as u64, info.n_bytes);
    file.release_tensor_pages(info);

    if !ty.is_supported() {
        assert!(file.dequantize(&info.name).is_err());
        return;
    }
    if info.n_elements.saturating_mul(4) > MAX_DEQUANT_BYTES {
        return;
    }
    let values = match file.dequantize(&info.name) {
        Ok(v) => v,
        Err(e) => panic!("supported tensor {:?} does not dequantize: {e}", info.name),
    };
    assert_eq!(values.len() as u64, info.n_elements);
    // f16 and bf16 go through f32 in pieces: the same values, rounded once.
    let halves = dequantize_as::<half::f16>(info, data).expect("f16 dequantization");
    let bhalves = dequantize_as::<half::bf16>(info, data).expect("bf16 dequantization");
    for ((&x, h), b) in values.iter().zip(&halves).zip(&bhalves) {
        if !x.is_nan() {
            assert_eq!(h.to_bits(), half::f16::from_f32(x).to_bits(), "f16 of {x}");
            assert_eq!(
                b.to_bits(),
                half::bf16::from_f32(x).to_bits(),
                "bf16 of {x}"
            );
        }
    }
    // An output of the wrong length is an error, not a write out of bounds.
    let mut short = vec![0f32; values.len().saturating_sub(1)];
    if !values.is_empty() {
        assert!(dequantize_into(&info.name, ty, data, &mut short).is_err());
    }
}

/// Rewriting a parsed file (what a converter does) gives a file that parses to the same
/// metadata, tensor infos and tensor bytes, and rewriting that gives the same bytes again.
fn check_rewrite(file: &GgufFile) {
    let Some(bytes) = rewrite(file) else { return };
    let again = GgufFile::from_bytes(bytes.clone())
        .unwrap_or_else(|e| panic!("a rewritten file does not parse: {e}"));
    assert_eq!(again.version(), file.version());
    assert_eq!(again.metadata().len(), file.metadata().len());
    for ((k1, v1), (k2, v2)) in again.metadata().iter().zip(file.metadata().iter()) {
        assert_eq!(k1, k2);
        assert_eq!(v1.value_type(), v2.value_type());
    }
    assert_eq!(again.tensors().len(), file.tensors().len());
    for (a, b) in again.tensors().iter().zip(file.tensors()) {
        assert_eq!((&a.name, &a.ne, a.ty), (&b.name, &b.ne, b.ty));
        assert_eq!(again.tensor_data(a), file.tensor_data(b));
    }
    assert_eq!(
        rewrite(&again).as_deref(),
        Some(&bytes[..]),
        "rewrite is not stable"
    );
}

/// The file written anew by [`GgufWriter`]; `None` when it would be too large to build in memory.
/// Not only the tensor data counts: the header and each tensor are padded to the alignment, and
/// a 42-byte file may declare `general.alignment = 2^31` (the reader accepts any power of two
/// that fits the u32, as ggml does), so its rewrite takes 2 GiB
/// (`regressions/gguf_header/rewrite_huge_alignment`).
fn rewrite(file: &GgufFile) -> Option<Vec<u8>> {
    let data: u64 = file.tensors().iter().map(|t| t.n_bytes).sum();
    let padding = file.alignment() * (file.tensors().len() as u64 + 1);
    if data + padding > MAX_DEQUANT_BYTES {
        return None;
    }
    let mut w = GgufWriter::new()
        .with_version(file.version())
        .expect("the file's version is writable");
    w.add_all_metadata(file.metadata())
        .unwrap_or_else(|e| panic!("metadata of a parsed file is refused by the writer: {e}"));
    for t in file.tensors() {
        w.add_tensor(&t.name, &t.shape(), t.ty, file.tensor_data(t).to_vec())
            .unwrap_or_else(|e| panic!("tensor {:?} of a parsed file is refused: {e}", t.name));
    }
    Some(w.to_bytes())
}
