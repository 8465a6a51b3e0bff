//! The CPU matmul of Q4_1, Q5_0, Q5_1 and Q8_0 gives llama.cpp's dot products bit for bit, on every
//! instruction set of this CPU, for one activation row (decoding) and for tiles of several.
//!
//! Expected values: tests/fixtures/ggml_vec_dot/, written by
//! `python3 scripts/make_ggml_vec_dot_fixtures.py`: ggml's own `quantize_row_q8_*` and
//! `ggml_vec_dot_<fmt>_q8_*` (llama-cpp-python's x86 build, through ctypes) on weights quantized
//! by gguf-py. No tolerance: the kernels follow ggml's order of float operations.

mod common;

use common::{fixture, read_json, read_npy};
use gguf_kernels::cpu::{qmatmul_with_isa, Isa, QMatrix};
use gguf_llama::gguf::GgmlType;

#[test]
fn legacy_formats_match_ggml_vec_dot_bit_for_bit() {
    let manifest = read_json("ggml_vec_dot/manifest.json");
    let cases = manifest["cases"].as_array().unwrap();
    // Q4_0 is not among them: llama.cpp multiplies it with repacked kernels, not with
    // `ggml_vec_dot_q4_0_q8_0`, and ours keeps a faster order (kernels/src/cpu/legacy.rs).
    assert_eq!(cases.len(), 12, "4 formats × 3 lengths");
    for case in cases {
        let stem = case["stem"].as_str().unwrap();
        let ty = GgmlType::from_name(case["format"].as_str().unwrap()).unwrap();
        let (rows, n) = (
            case["rows"].as_u64().unwrap() as usize,
            case["n"].as_u64().unwrap() as usize,
        );
        let weights = std::fs::read(fixture(&format!("ggml_vec_dot/{stem}.weights.bin"))).unwrap();
        let (x_shape, x) = read_npy(&fixture(&format!("ggml_vec_dot/{stem}.x.npy")));
        let (_, want) = read_npy(&fixture(&format!("ggml_vec_dot/{stem}.y.npy")));
        let m = x_shape[0];
        let w = QMatrix::new(ty, rows, n, &weights).unwrap();
        for isa in Isa::available() {
            // All activation rows at once (a prefill tile), then each alone (decoding).
            let mut y = vec![0f32; m * rows];
            qmatmul_with_isa(&w, &x, m, &mut y, isa).unwrap();
            let mut alone = vec![0f32; m * rows];
            for (x, y) in x.chunks_exact(n).zip(alone.chunks_exact_mut(rows)) {
                qmatmul_with_isa(&w, x, 1, y, isa).unwrap();
            }
            for (what, got) in [("tile", &y), ("one row", &alone)] {
                for (k, (g, e)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(
                        g.to_bits(),
                        e.to_bits(),
                        "{stem} {} {what}: y[{}, {}] = {g}, ggml's {e}",
                        isa.name(),
                        k / rows,
                        k % rows
                    );
                }
            }
        }
    }
}
