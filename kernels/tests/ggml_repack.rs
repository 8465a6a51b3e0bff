//! The CPU matmul of Q4_K and Q2_K matrices whose row count is a multiple of 8 gives llama.cpp's
//! repacked kernels' products bit for bit (`ggml_gemm_<fmt>_8x8_q8_K` for the first `m - m % 4`
//! activation rows, `ggml_gemv_<fmt>_8x8_q8_K` for the rest, as `forward_mul_mat` splits them),
//! on every instruction set of this CPU, for m = 1 ..= 9, 13 and 16 activation rows and 8, 16,
//! 24 and 192 weight rows (the fixture's 24, repeated), through `qmatmul_with_isa` (tasks as
//! rayon splits them) and with the kernel called once on all rows (`run_tile_kernel`).
//!
//! Expected values: tests/fixtures/ggml_repack/, written by
//! `python3 scripts/make_ggml_repack_fixtures.py`: ggml's own activation quantizers and
//! gemm/gemv (llama-cpp-python's x86 AVX-512 build, called through ctypes) on weights repacked as
//! llama.cpp repacks them, for every activation row through each kernel. No tolerance: the
//! kernels follow ggml's order of float operations (see `src/cpu/repacked_k.rs`).

use gguf_kernels::cpu::{qmatmul_with_isa, run_tile_kernel, Isa, QMatrix};

mod ggml_fixtures;

use ggml_fixtures::{Case, Fixtures};

const FIXTURES: Fixtures = Fixtures("ggml_repack");

/// Checks `y` `[m, w_rows]` against ggml: output `(i, r)` is weight row `r % rows` of the fixture
/// against activation row `i`, through ggml's gemm if `i < m - m % 4`, else its gemv.
fn check(what: &str, y: &[f32], w_rows: usize, m: usize, gemm: &[f32], gemv: &[f32], rows: usize) {
    assert_eq!(y.len(), m * w_rows, "{what}: y");
    // llama.cpp: rows below m - m % 4 through the gemm, the rest the gemv
    let gemm_rows = m - m % 4;
    for (i, y) in y.chunks_exact(w_rows).enumerate() {
        let (want, kind) = if i < gemm_rows {
            (gemm, "gemm")
        } else {
            (gemv, "gemv")
        };
        for (r, g) in y.iter().enumerate() {
            let e = want[i * rows + r % rows];
            assert_eq!(
                g.to_bits(),
                e.to_bits(),
                "{what}, m = {m}: y[{i}, {r}] = {g:e}, ggml's {kind} {e:e}"
            );
        }
    }
}

#[test]
fn q4_k_and_q2_k_match_ggml_repacked_kernels_bit_for_bit() {
    let cases = FIXTURES.cases("cases.txt");
    assert_eq!(cases.len(), 6, "2 formats × 3 lengths");
    for Case {
        ty,
        n,
        rows,
        m: m_fixture,
    } in cases
    {
        let stem = format!("{}-{n}", ty.name());
        let weights = FIXTURES.read(&format!("{stem}.w"));
        let x = FIXTURES.read_f32(&format!("x-{n}.f32"));
        let gemm = FIXTURES.read_f32(&format!("{stem}.gemm.f32"));
        let gemv = FIXTURES.read_f32(&format!("{stem}.gemv.f32"));
        assert_eq!(x.len(), m_fixture * n, "{stem}: x");
        assert_eq!(
            (gemm.len(), gemv.len()),
            (m_fixture * rows, m_fixture * rows)
        );
        let row_bytes = weights.len() / rows;
        // the fixture's rows eight times over: tasks of whole groups of eight rows for the
        // kernels, whatever the thread count splits 24 rows into
        let stacked: Vec<u8> = (0..8).flat_map(|_| weights.iter().copied()).collect();
        for isa in Isa::available() {
            for w_rows in [8, 16, 24, 8 * rows] {
                let data = &stacked[..w_rows * row_bytes];
                let w = QMatrix::new(ty, w_rows, n, data).unwrap();
                for m in (1..=9).chain([13, 16]) {
                    let x = &x[..m * n];
                    let what = format!("{stem} {} {w_rows} rows", isa.name());
                    let mut y = vec![f32::NAN; m * w_rows];
                    qmatmul_with_isa(&w, x, m, &mut y, isa).unwrap();
                    check(&what, &y, w_rows, m, &gemm, &gemv, rows);
                    // the kernel called once on all rows and all m (<= 16) activation rows: its
                    // groups of eight weight rows and four activation rows, whatever the split
                    let y = run_tile_kernel(ty, isa, data, row_bytes, x, n, w_rows).unwrap();
                    check(
                        &format!("{what}, one tile"),
                        &y,
                        w_rows,
                        m,
                        &gemm,
                        &gemv,
                        rows,
                    );
                }
            }
        }
    }
}
