//! The CPU matmul of BF16 weights gives llama.cpp's `ggml_vec_dot_bf16` bit for bit on every
//! instruction set of this CPU: one activation row (decoding), and several activation rows with
//! a weight row count that is not a multiple of 4 (llamafile's tinyBLAS declines such a product,
//! so ggml dots each pair with `vec_dot_bf16` too). Lengths with and without a tail past the
//! last whole 64 elements.
//!
//! Expected values: tests/fixtures/ggml_bf16/, written by `python3 scripts/make_ggml_bf16_fixtures.py`
//! from ggml's own `ggml_cpu_fp32_to_bf16` and `ggml_vec_dot_bf16` (llama-cpp-python 0.3.36's
//! x86 build with AVX-512 BF16, called through ctypes). No tolerance: the kernels follow its
//! order of float operations (see `src/cpu/bf16.rs`).

use gguf_importer::GgmlType;
use gguf_kernels::cpu::{qmatmul_with_isa, Isa, QMatrix};

mod ggml_fixtures;

use ggml_fixtures::Fixtures;

const FIXTURES: Fixtures = Fixtures("ggml_bf16");

#[test]
fn bf16_matmul_is_ggml_vec_dot_bf16_bit_for_bit() {
    let mut checked = 0;
    for line in FIXTURES.lines("cases.txt") {
        let f: Vec<usize> = line.iter().map(|v| v.parse().unwrap()).collect();
        let (n, rows, m) = (f[0], f[1], f[2]);
        assert_ne!(rows % 4, 0, "tinyBLAS would take a product of {rows} rows");
        let w = FIXTURES.read(&format!("w-{n}.bf16"));
        let x = FIXTURES.read_f32(&format!("x-{n}.f32"));
        let want = FIXTURES.read_f32(&format!("y-{n}.f32"));
        let w = QMatrix::new(GgmlType::BF16, rows, n, &w).unwrap();
        for isa in Isa::available() {
            // all activation rows at once, and the first alone (decoding)
            for m in [m, 1] {
                let mut y = vec![0f32; m * rows];
                qmatmul_with_isa(&w, &x[..m * n], m, &mut y, isa).unwrap();
                for (e, (g, w)) in y.iter().zip(&want).enumerate() {
                    assert_eq!(
                        g.to_bits(),
                        w.to_bits(),
                        "n={n} m={m} {}: y[{}, {}] = {g:e}, ggml {w:e}",
                        isa.name(),
                        e / rows,
                        e % rows
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 16, "only {checked} cases checked");
}
