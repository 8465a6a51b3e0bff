//! Dequantization of IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ4_NL, IQ4_XS, TQ1_0,
//! TQ2_0 and MXFP4 equals gguf-py's (`gguf.quants.dequantize`), bit for bit, on every block of
//! `tests/fixtures/iquants/blocks.gguf` (written by scripts/make_quant_fixtures.py --only blocks):
//! random blocks with finite scales, and blocks whose scale is +inf, NaN or -0.0 (E8M0 0, 1, 254,
//! 255 for MXFP4) or whose other bytes are all 0xFF; `manifest.json` says which row is which.
//!
//! Bit for bit because gguf-py computes each of these formats in f32 with the operations of
//! ggml's `dequantize_row_*`, in the same order (an f16 or E8M0 scale widened exactly, integer
//! sub-scales and grid values converted exactly, then one f32 product per factor, left to right),
//! and so does this crate; a NaN matches any NaN (its payload and sign are not compared: numpy
//! and Rust's f16 widening differ there, and neither ggml nor gguf-py defines them).

mod common;

use std::path::PathBuf;

use gguf_importer::quants::{dequantize_as, dequantize_into};
use gguf_importer::{npy, GgmlType, GgufFile};

const TYPES: [&str; 12] = [
    "IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ4_NL", "IQ4_XS",
    "TQ1_0", "TQ2_0", "MXFP4",
];

fn dir() -> PathBuf {
    common::package_dir().join("tests/fixtures/iquants")
}

fn manifest() -> serde_json::Value {
    serde_json::from_reader(std::fs::File::open(dir().join("manifest.json")).unwrap()).unwrap()
}

fn reference(name: &str) -> (Vec<usize>, Vec<f32>) {
    let path = dir().join(format!("{name}.npy"));
    npy::read_f32(&mut std::fs::File::open(&path).unwrap_or_else(|e| {
        panic!("{}: {e}", path.display());
    }))
    .unwrap()
}

/// Bit-identical, except that NaN matches NaN; names the first differing element and its row's
/// description from the manifest.
fn assert_bits(name: &str, rows: &[serde_json::Value], ours: &[f32], want: &[f32], bs: usize) {
    assert_eq!(ours.len(), want.len(), "{name}: element count");
    let mut differing = 0;
    let mut first = None;
    for (i, (&o, &w)) in ours.iter().zip(want).enumerate() {
        let same = o.to_bits() == w.to_bits() || (o.is_nan() && w.is_nan());
        if !same {
            differing += 1;
            first.get_or_insert((i, o, w));
        }
    }
    if let Some((i, o, w)) = first {
        panic!(
            "{name}: {differing} of {} elements differ from gguf-py; first at block {} ({}) \
             element {}: ours {o:e} ({:#010x}), gguf-py {w:e} ({:#010x})",
            ours.len(),
            i / bs,
            rows[i / bs],
            i % bs,
            o.to_bits(),
            w.to_bits()
        );
    }
}

#[test]
fn every_block_equals_gguf_py_bit_for_bit() {
    let manifest = manifest();
    let types = manifest["types"].as_object().unwrap();
    assert_eq!(
        types.keys().collect::<Vec<_>>().len(),
        TYPES.len(),
        "types in the manifest"
    );
    let file = GgufFile::open(dir().join("blocks.gguf")).unwrap();
    for name in TYPES {
        let ty = GgmlType::from_name(name).unwrap();
        assert!(ty.is_supported(), "{name} is dequantized");
        let entry = &types[name];
        let rows = entry["rows"].as_array().unwrap();
        let info = file.tensor(name).unwrap();
        assert_eq!(info.ty, ty);
        let bs = ty.block_size();
        assert_eq!(
            info.shape(),
            vec![rows.len(), bs],
            "{name}: one block per row"
        );
        let (shape, want) = reference(name);
        assert_eq!(shape, info.shape(), "{name}: reference shape");
        assert_eq!(
            want.iter().filter(|x| !x.is_finite()).count() as u64,
            entry["non_finite_outputs"].as_u64().unwrap(),
            "{name}: non-finite values in the reference"
        );

        let ours = file.dequantize(name).unwrap();
        assert_bits(name, rows, &ours, &want, bs);

        // The blocks at an odd address (every block struct has alignment 1).
        let data = file.tensor_data(info);
        let mut shifted = vec![0u8; data.len() + 1];
        shifted[1..].copy_from_slice(data);
        let mut again = vec![0f32; ours.len()];
        dequantize_into(name, ty, &shifted[1..], &mut again).unwrap();
        assert_bits(name, rows, &again, &want, bs);

        // f16 and bf16 outputs round the f32 result once.
        let halves = dequantize_as::<half::f16>(info, data).unwrap();
        let bhalves = dequantize_as::<half::bf16>(info, data).unwrap();
        for ((&x, h), b) in ours.iter().zip(&halves).zip(&bhalves) {
            if x.is_nan() {
                assert!(h.is_nan() && b.is_nan(), "{name}: NaN as f16/bf16");
            } else {
                assert_eq!(
                    h.to_bits(),
                    half::f16::from_f32(x).to_bits(),
                    "{name}: f16 of {x}"
                );
                assert_eq!(
                    b.to_bits(),
                    half::bf16::from_f32(x).to_bits(),
                    "{name}: bf16 of {x}"
                );
            }
        }
    }
}

/// Every byte pattern is a block: a buffer of pseudo-random bytes (NaN and inf scales included)
/// dequantizes without a panic for each format, and a wrong byte count is a typed error.
#[test]
fn any_bytes_dequantize_and_wrong_sizes_are_errors() {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for name in TYPES {
        let ty = GgmlType::from_name(name).unwrap();
        let n_blocks = 64;
        let n = n_blocks * ty.block_size();
        let data: Vec<u8> = (0..ty.bytes_for(n as u64).unwrap())
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        let mut out = vec![0f32; n];
        dequantize_into(name, ty, &data, &mut out).unwrap();
        for fill in [0x00, 0xFF] {
            dequantize_into(name, ty, &vec![fill; data.len()], &mut out).unwrap();
        }
        let err = dequantize_into(name, ty, &data[1..], &mut out).unwrap_err();
        assert!(err.to_string().contains(name), "{err}");
    }
}

/// Values a reader can check by hand: an all-zero block with scale 1.0.
#[test]
fn zero_blocks_decode_to_the_first_codebook_entries() {
    use gguf_importer::quants::{
        Block, BlockIq1S, BlockIq2Xxs, BlockIq4Nl, BlockMxfp4, BlockTq1_0, BlockTq2_0, F16,
    };
    use gguf_importer::types::QK_K;
    let one = F16::from_f32(1.0);
    let mut y = vec![0f32; QK_K];

    // IQ2_XXS: grid row 0 is all 8s, sign index 0 is no sign, s = 0: 1 · 0.5 · 0.25 · 8 = 1.
    let b = BlockIq2Xxs {
        d: one,
        qs: [0; 64],
    };
    b.dequantize(&mut y);
    assert!(y.iter().all(|&x| x == 1.0));

    // IQ1_S: grid row 0 is all -1, s = 0, delta +0.125: 1 · 1 · (-1 + 0.125).
    let b = BlockIq1S {
        d: one,
        qs: [0; 32],
        qh: [0; 16],
    };
    b.dequantize(&mut y);
    assert!(y.iter().all(|&x| x == -0.875));

    // IQ4_NL: code 0 is -127.
    let b = BlockIq4Nl {
        d: one,
        qs: [0; 16],
    };
    b.dequantize(&mut y[..32]);
    assert!(y[..32].iter().all(|&x| x == -127.0));

    // TQ1_0 and TQ2_0: digit 0 is -1.
    let b = BlockTq1_0 {
        qs: [0; 48],
        qh: [0; 4],
        d: one,
    };
    b.dequantize(&mut y);
    assert!(y.iter().all(|&x| x == -1.0));
    let b = BlockTq2_0 {
        qs: [0; 64],
        d: one,
    };
    b.dequantize(&mut y);
    assert!(y.iter().all(|&x| x == -1.0));

    // MXFP4: codes 1 (0.5 doubled) and 9 (-0.5 doubled) under E8M0 127 (1.0, halved 0.5).
    let b = BlockMxfp4 {
        e: 127,
        qs: [0x91; 16],
    };
    b.dequantize(&mut y[..32]);
    assert!(y[..16].iter().all(|&x| x == 0.5));
    assert!(y[16..32].iter().all(|&x| x == -0.5));
}
