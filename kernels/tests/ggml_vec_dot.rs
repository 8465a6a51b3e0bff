//! The CPU matmul of the 32-element formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) gives llama.cpp's dot
//! products bit for bit, on every instruction set of this CPU, for one activation row at a time
//! (decoding) and, where `follows_ggml_vec_dot` says so (not Q4_0 of 8 rows, which takes the
//! order of llama.cpp's repacked kernels, nor Q4_0 prefill of other row counts, which takes the
//! interleaved kernel), for tiles of several (prefill: the fixture's rows,
//! and eleven rows stacked from them, so a full tile of 8 and a partial one), on all weight rows
//! and on an odd number of them.
//!
//! Expected values: tests/fixtures/ggml_vec_dot/, written by
//! `python3 scripts/make_ggml_vec_dot_fixtures.py`: ggml's own `quantize_row_q8_0` / `quantize_row_q8_1`
//! and `ggml_vec_dot_<fmt>_q8_<0|1>` (llama-cpp-python's x86 build, AVX2 / AVX-512 VNNI, called
//! through ctypes) on gguf-py-quantized and random valid weight blocks. No tolerance: the kernels
//! follow ggml's order of float operations (see `src/cpu/legacy.rs`).
//!
//! The K-quants (Q2_K .. Q6_K) likewise against `ggml_vec_dot_<fmt>_q8_K` (after ggml's
//! `quantize_row_q8_K`), for 1 to 7 activation rows (llama.cpp takes the vec_dot one row at a
//! time there; the element-order kernels, `src/cpu/kquants.rs`): each fixture row alone, and
//! the first `m` rows together for m = 2..7, on all weight rows (8, unless llama.cpp repacks
//! the matrix: `follows_ggml_repack`) and on 5 and 7.

use gguf_importer::GgmlType;
use gguf_kernels::cpu::{
    follows_ggml_repack, follows_ggml_vec_dot, qmatmul_with_isa, Isa, QMatrix,
};

mod ggml_fixtures;

use ggml_fixtures::{Case, Fixtures};

const FIXTURES: Fixtures = Fixtures("ggml_vec_dot");

/// `y` [m, rows] against ggml's `want` [m_fixture, all_rows]: row `i` of `y` is activation row
/// `i % m_fixture`, its `rows` columns the first weight rows.
fn assert_bits(
    what: &str,
    y: &[f32],
    rows: usize,
    want: &[f32],
    all_rows: usize,
    m_fixture: usize,
) {
    for (i, y) in y.chunks_exact(rows).enumerate() {
        let want = &want[(i % m_fixture) * all_rows..][..rows];
        for (r, (g, e)) in y.iter().zip(want).enumerate() {
            assert_eq!(
                g.to_bits(),
                e.to_bits(),
                "{what}: y[{i}, {r}] = {g:e}, ggml's {e:e}"
            );
        }
    }
}

#[test]
fn legacy_formats_match_ggml_vec_dot_bit_for_bit() {
    let cases = FIXTURES.cases("cases.txt");
    assert_eq!(cases.len(), 25, "5 formats × 5 lengths");
    for Case { ty, n, rows, m } in cases {
        let stem = format!("{}-{n}", ty.name());
        let weights = FIXTURES.read(&format!("{stem}.w"));
        let x = FIXTURES.read_f32(&format!("x-{n}.f32"));
        let want = FIXTURES.read_f32(&format!("{stem}.y.f32"));
        assert_eq!((x.len(), want.len()), (m * n, m * rows), "{stem}: sizes");
        let row_bytes = weights.len() / rows;
        // eleven activation rows: the fixture's, cycled
        let stacked: Vec<f32> = (0..11)
            .flat_map(|i| x[(i % m) * n..][..n].iter().copied())
            .collect();
        for isa in Isa::available() {
            // all weight rows, then an odd number of them (5)
            for w_rows in [rows, 5] {
                let w = QMatrix::new(ty, w_rows, n, &weights[..w_rows * row_bytes]).unwrap();
                let what = |kind: &str| format!("{stem} {} {w_rows} rows, {kind}", isa.name());
                // the interleaved prefill kernel has an order of its own (so have llama.cpp's
                // prefill kernels for those formats); cpu_kernels.rs bounds its error
                if follows_ggml_vec_dot(ty, w_rows, 11, isa) {
                    assert!(follows_ggml_vec_dot(ty, w_rows, m, isa));
                    let mut y = vec![f32::NAN; m * w_rows];
                    qmatmul_with_isa(&w, &x, m, &mut y, isa).unwrap();
                    assert_bits(&what("tile"), &y, w_rows, &want, rows, m);
                    let mut y = vec![f32::NAN; 11 * w_rows];
                    qmatmul_with_isa(&w, &stacked, 11, &mut y, isa).unwrap();
                    assert_bits(&what("11 rows"), &y, w_rows, &want, rows, m);
                }
                // Q4_0 with rows in eights: llama.cpp's repacked kernels' order instead, decoding
                // too (tests/llama_cpp_defaults.rs checks it end to end)
                if !follows_ggml_vec_dot(ty, w_rows, 1, isa) {
                    assert!(ty == GgmlType::Q4_0 && follows_ggml_repack(ty, w_rows));
                    continue;
                }
                for i in 0..m {
                    let mut y = vec![f32::NAN; w_rows];
                    qmatmul_with_isa(&w, &x[i * n..][..n], 1, &mut y, isa).unwrap();
                    let want_i = &want[i * rows..][..rows];
                    assert_bits(
                        &what(&format!("row {i} alone")),
                        &y,
                        w_rows,
                        want_i,
                        rows,
                        1,
                    );
                }
            }
        }
    }
}

#[test]
fn k_quants_match_ggml_vec_dot_bit_for_bit() {
    let cases = FIXTURES.cases("cases_k.txt");
    assert_eq!(cases.len(), 25, "5 formats × 5 lengths");
    for Case { ty, n, rows, m } in cases {
        let stem = format!("{}-{n}", ty.name());
        let weights = FIXTURES.read(&format!("{stem}.w"));
        let x = FIXTURES.read_f32(&format!("xk-{n}.f32"));
        let want = FIXTURES.read_f32(&format!("{stem}.y.f32"));
        assert_eq!((x.len(), want.len()), (m * n, m * rows), "{stem}: sizes");
        assert!(m < 8, "{stem}: the fixture's rows are all vec_dot rows");
        let row_bytes = weights.len() / rows;
        let mut checked = 0;
        for isa in Isa::available() {
            // all weight rows, then odd numbers of them (the SIMD kernels' passes of 2 or 4 rows
            // and their remainders)
            for w_rows in [rows, 5, 7] {
                // matrices that llama.cpp repacks take its repacked kernels' order instead
                // (tests/ggml_repack.rs)
                if follows_ggml_repack(ty, w_rows) {
                    continue;
                }
                checked += 1;
                let w = QMatrix::new(ty, w_rows, n, &weights[..w_rows * row_bytes]).unwrap();
                let what = |kind: &str| format!("{stem} {} {w_rows} rows, {kind}", isa.name());
                for i in 0..m {
                    let mut y = vec![f32::NAN; w_rows];
                    qmatmul_with_isa(&w, &x[i * n..][..n], 1, &mut y, isa).unwrap();
                    let want_i = &want[i * rows..][..rows];
                    assert_bits(
                        &what(&format!("row {i} alone")),
                        &y,
                        w_rows,
                        want_i,
                        rows,
                        1,
                    );
                }
                for k in 2..=m {
                    let mut y = vec![f32::NAN; k * w_rows];
                    qmatmul_with_isa(&w, &x[..k * n], k, &mut y, isa).unwrap();
                    assert_bits(&what(&format!("{k} rows")), &y, w_rows, &want, rows, m);
                }
            }
        }
        assert!(
            checked >= 2 * Isa::available().len(),
            "{stem}: cases checked"
        );
    }
}
