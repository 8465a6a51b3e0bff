//! The generated lookup tables (`quants::iquant_tables`, written by scripts/make_iquant_tables.py
//! from gguf-py's quants.py) equal the fixture the same script wrote:
//! `tests/fixtures/iquants/tables.json` holds, per table, its length and the sha256 of its
//! elements as little-endian bytes (and the values of the small tables). A hand edit of the
//! generated source, or a table regenerated without its fixture, fails here. (The script itself
//! checks the tables against ggml-common.h.)

mod common;

use gguf_importer::quants::iquant_tables as t;
use sha2::{Digest, Sha256};

fn fixture() -> serde_json::Value {
    let path = common::package_dir().join("tests/fixtures/iquants/tables.json");
    serde_json::from_reader(std::fs::File::open(&path).unwrap_or_else(|e| {
        panic!("{}: {e}", path.display());
    }))
    .unwrap()
}

/// A table as the fixture describes it: Rust element type, length, little-endian bytes, and its
/// values as integers (or f32s) for the small tables.
struct Table {
    ty: &'static str,
    len: usize,
    bytes: Vec<u8>,
    values: Vec<f64>,
}

fn table<T: Copy, const N: usize, const B: usize>(
    ty: &'static str,
    values: &[T; N],
    le: impl Fn(T) -> [u8; B],
    num: impl Fn(T) -> f64,
) -> Table {
    Table {
        ty,
        len: N,
        bytes: values.iter().flat_map(|&v| le(v)).collect(),
        values: values.iter().map(|&v| num(v)).collect(),
    }
}

fn tables() -> Vec<(&'static str, Table)> {
    vec![
        (
            "IQ2XXS_GRID",
            table("u64", &t::IQ2XXS_GRID, u64::to_le_bytes, |v| v as f64),
        ),
        (
            "IQ2XS_GRID",
            table("u64", &t::IQ2XS_GRID, u64::to_le_bytes, |v| v as f64),
        ),
        (
            "IQ2S_GRID",
            table("u64", &t::IQ2S_GRID, u64::to_le_bytes, |v| v as f64),
        ),
        (
            "IQ3XXS_GRID",
            table("u32", &t::IQ3XXS_GRID, u32::to_le_bytes, |v| v as f64),
        ),
        (
            "IQ3S_GRID",
            table("u32", &t::IQ3S_GRID, u32::to_le_bytes, |v| v as f64),
        ),
        (
            "IQ1S_GRID",
            table("u64", &t::IQ1S_GRID, u64::to_le_bytes, |v| v as f64),
        ),
        (
            "KSIGNS_IQ2XS",
            table("u8", &t::KSIGNS_IQ2XS, u8::to_le_bytes, f64::from),
        ),
        (
            "KMASK_IQ2XS",
            table("u8", &t::KMASK_IQ2XS, u8::to_le_bytes, f64::from),
        ),
        (
            "KVALUES_IQ4NL",
            table("i8", &t::KVALUES_IQ4NL, i8::to_le_bytes, f64::from),
        ),
        (
            "KVALUES_MXFP4",
            table("i8", &t::KVALUES_MXFP4, i8::to_le_bytes, f64::from),
        ),
        (
            "IQ1S_DELTA",
            table("f32", &[t::IQ1S_DELTA], f32::to_le_bytes, f64::from),
        ),
        (
            "IQ1M_DELTA",
            table("f32", &[t::IQ1M_DELTA], f32::to_le_bytes, f64::from),
        ),
    ]
}

#[test]
fn every_table_equals_the_fixture() {
    let fixture = fixture();
    let recorded = fixture["tables"].as_object().unwrap();
    let ours = tables();
    assert_eq!(
        recorded.len(),
        ours.len(),
        "tables in the fixture: {:?}",
        recorded.keys().collect::<Vec<_>>()
    );
    for (name, table) in ours {
        let want = &recorded[name];
        assert_eq!(want["type"], table.ty, "{name}: element type");
        assert_eq!(
            want["len"].as_u64(),
            Some(table.len as u64),
            "{name}: length"
        );
        let sha = format!("{:x}", Sha256::digest(&table.bytes));
        assert_eq!(
            want["sha256"].as_str(),
            Some(sha.as_str()),
            "{name}: sha256"
        );
        if let Some(values) = want.get("values") {
            let values: Vec<f64> = values
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert_eq!(values, table.values, "{name}: values");
        }
    }
}

/// What the dequantizers rely on beyond the values: each grid row's bytes are values of the
/// format's codebook, and ksigns has an even number of signs per byte (its eighth bit is the
/// parity of the seven stored).
#[test]
fn grid_rows_hold_the_documented_values() {
    let rows8 = |grid: &[u64], allowed: &[u8]| {
        grid.iter()
            .flat_map(|r| r.to_le_bytes())
            .all(|b| allowed.contains(&b))
    };
    let rows4 = |grid: &[u32], allowed: &[u8]| {
        grid.iter()
            .flat_map(|r| r.to_le_bytes())
            .all(|b| allowed.contains(&b))
    };
    assert!(rows8(&t::IQ2XXS_GRID, &[8, 25, 43]));
    assert!(rows8(&t::IQ2XS_GRID, &[8, 25, 43]));
    assert!(rows8(&t::IQ2S_GRID, &[8, 25, 43]));
    assert!(rows4(&t::IQ3XXS_GRID, &[4, 12, 20, 28, 36, 44, 52, 62]));
    assert!(rows4(&t::IQ3S_GRID, &[1, 3, 5, 7, 9, 11, 13, 15]));
    assert!(rows8(&t::IQ1S_GRID, &[0xFF, 0, 1]));
    for (i, &s) in t::KSIGNS_IQ2XS.iter().enumerate() {
        assert_eq!(s & 0x7F, i as u8);
        assert_eq!(s.count_ones() % 2, 0, "ksigns[{i}] = {s:#04x}");
    }
}
