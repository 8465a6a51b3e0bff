//! GELU as llama.cpp's CPU backend computes it (the Gemma feed-forward gate): ggml's table of
//! GELU of every f16 value, and `geglu` through it.
//!
//! Reference: kernels/tests/fixtures/ggml_gelu/table.f16, ggml's own `ggml_table_gelu_f16` read
//! from llama-cpp-python's libggml-cpu by scripts/make_ggml_gelu_fixtures.py.

mod ggml_fixtures;

use ggml_fixtures::Fixtures;
use gguf_kernels::cpu::ggml_ops::{geglu, gelu_f16_table};

fn ggml_table() -> Vec<u16> {
    Fixtures("ggml_gelu")
        .read("table.f16")
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Every entry of our table is ggml's (NaN inputs give NaN, whatever its payload).
#[test]
fn gelu_table_is_ggml_table() {
    let want = ggml_table();
    let got = gelu_f16_table();
    assert_eq!(want.len(), 65536);
    let mut bad = Vec::new();
    for (i, (&w, g)) in want.iter().zip(got).enumerate() {
        let (w16, x) = (half::f16::from_bits(w), half::f16::from_bits(i as u16));
        let same = w == g.to_bits() || (w16.is_nan() && g.is_nan());
        if !same {
            bad.push(format!(
                "x = {x} ({i:#06x}): ggml {w16} ({w:#06x}), ours {g} ({:#06x})",
                g.to_bits()
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{} entries differ:\n{}",
        bad.len(),
        bad[..bad.len().min(20)].join("\n")
    );
}

/// `geglu` is ggml's `vec_geglu_f32`: the table at `fp16(g)` inside (-10, 10), 0 at or below
/// -10, `g` at or above 10, times `u`.
#[test]
fn geglu_reads_ggml_table_and_clamps() {
    let table = ggml_table();
    let g: Vec<f32> = (0..2000)
        .map(|i| (i as f32 - 1000.0) * 0.0137)
        .chain([-10.0, 10.0, -10.000001, 9.999999, 1e30, -1e30, 0.0, -0.0])
        .collect();
    let u: Vec<f32> = (0..g.len()).map(|i| 1.0 + (i % 7) as f32 * 0.25).collect();
    let mut y = vec![0f32; g.len()];
    geglu(&g, &u, g.len(), &mut y);
    for ((&x, &u), &y) in g.iter().zip(&u).zip(&y) {
        let gelu = if x <= -10.0 {
            0.0
        } else if x >= 10.0 {
            x
        } else {
            half::f16::from_bits(table[half::f16::from_f32(x).to_bits() as usize]).to_f32()
        };
        assert_eq!(y.to_bits(), (gelu * u).to_bits(), "g {x}, u {u}");
    }
}
