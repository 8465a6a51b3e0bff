//! The CPU matmul of the i-quants, the ternary formats and MXFP4 gives llama.cpp's dot products
//! bit for bit, on every instruction set of this CPU:
//! - IQ4_NL and MXFP4 (with `block_q8_0` activations) against `ggml_vec_dot_<fmt>_q8_0` for
//!   matrices llama.cpp does not repack (row counts not a multiple of 8), one activation row at a
//!   time and several together; against its repacked kernels (`ggml_gemv/gemm_<fmt>_8x8_q8_0`)
//!   for the others;
//! - IQ1_S .. IQ4_XS, TQ1_0 and TQ2_0 (with `block_q8_K` activations) against
//!   `ggml_vec_dot_<fmt>_q8_K` for 1 to 7 activation rows (from 8 on llama.cpp takes its tiled
//!   matmul for the i-quants; tests/llama_cpp_defaults.rs checks that order end to end).
//!
//! Expected values: tests/fixtures/ggml_iquant/, written by
//! `python3 scripts/make_ggml_iquant_fixtures.py` from ggml's own quantizers and dot products
//! (llama-cpp-python's x86 build, called through ctypes) on ggml-quantized and random valid
//! weight blocks. No tolerance: the kernels follow ggml's order of float operations
//! (`src/cpu/iquants.rs`, `src/cpu/nibble_lut.rs`, `src/cpu/repacked.rs`).

use gguf_kernels::cpu::{
    follows_ggml_repack, follows_ggml_vec_dot, qmatmul_with_isa, Isa, QMatrix,
};

mod ggml_fixtures;

use ggml_fixtures::{Case, Fixtures};

const FIXTURES: Fixtures = Fixtures("ggml_iquant");
const REPACK: Fixtures = Fixtures("ggml_iquant/repack");

/// `y` [k, rows] against ggml's `want` [m_fixture, all_rows]: row `i` of `y` is activation row
/// `rows_of(i)`, its `rows` columns the first weight rows.
fn assert_bits(what: &str, y: &[f32], rows: usize, want: &[f32], all_rows: usize, row0: usize) {
    for (i, y) in y.chunks_exact(rows).enumerate() {
        let want = &want[(row0 + i) * all_rows..][..rows];
        for (r, (g, e)) in y.iter().zip(want).enumerate() {
            assert_eq!(
                g.to_bits(),
                e.to_bits(),
                "{what}: y[{i}, {r}] = {g:e}, ggml's {e:e}"
            );
        }
    }
}

/// Every case of `cases` against `vec_dot`: each activation row alone and the first `k` rows
/// together (k = 2..=m), on the weight rows `w_rows` that llama.cpp does not repack. Returns the
/// number of (case, instruction set, row count) checks made.
fn check_vec_dot(cases: Vec<Case>, x_name: &str, w_rows_list: &[usize]) -> usize {
    let mut checked = 0;
    for Case { ty, n, rows, m } in cases {
        let stem = format!("{}-{n}", ty.name());
        let weights = FIXTURES.read(&format!("{stem}.w"));
        let x = FIXTURES.read_f32(&format!("{x_name}-{n}.f32"));
        let want = FIXTURES.read_f32(&format!("{stem}.y.f32"));
        assert_eq!((x.len(), want.len()), (m * n, m * rows), "{stem}: sizes");
        let row_bytes = weights.len() / rows;
        for isa in Isa::available() {
            for &w_rows in w_rows_list {
                if follows_ggml_repack(ty, w_rows) {
                    continue;
                }
                checked += 1;
                let w = QMatrix::new(ty, w_rows, n, &weights[..w_rows * row_bytes]).unwrap();
                let what = |kind: &str| format!("{stem} {} {w_rows} rows, {kind}", isa.name());
                for i in 0..m {
                    assert!(follows_ggml_vec_dot(ty, w_rows, 1, isa));
                    let mut y = vec![f32::NAN; w_rows];
                    qmatmul_with_isa(&w, &x[i * n..][..n], 1, &mut y, isa).unwrap();
                    assert_bits(&what(&format!("row {i}")), &y, w_rows, &want, rows, i);
                }
                for k in 2..=m.min(7) {
                    assert!(follows_ggml_vec_dot(ty, w_rows, k, isa), "{stem} k={k}");
                    let mut y = vec![f32::NAN; k * w_rows];
                    qmatmul_with_isa(&w, &x[..k * n], k, &mut y, isa).unwrap();
                    assert_bits(&what(&format!("{k} rows")), &y, w_rows, &want, rows, 0);
                }
            }
        }
    }
    checked
}

#[test]
fn iq4_nl_and_mxfp4_match_ggml_vec_dot_bit_for_bit() {
    let cases = FIXTURES.cases("cases.txt");
    assert_eq!(cases.len(), 8, "2 formats × 4 lengths");
    // 8 rows are repacked by llama.cpp (the repack test); 5 and 7 are not
    let checked = check_vec_dot(cases, "x", &[5, 7]);
    assert_eq!(checked, 8 * 2 * Isa::available().len());
}

#[test]
fn super_block_iquants_match_ggml_vec_dot_bit_for_bit() {
    let cases = FIXTURES.cases("cases_k.txt");
    assert_eq!(cases.len(), 40, "10 formats × 4 lengths");
    let checked = check_vec_dot(cases, "xk", &[8, 5, 7]);
    assert_eq!(checked, 40 * 3 * Isa::available().len());
}

/// IQ4_NL and MXFP4 matrices of 8, 16 and 24 rows against llama.cpp's repacked kernels, for 1 to
/// `m` activation rows: with `k` rows llama.cpp sends the first `k - k % 4` (when k > 3) through
/// its gemm and the others through its gemv.
#[test]
fn iq4_nl_and_mxfp4_match_ggml_repacked_kernels_bit_for_bit() {
    let cases = REPACK.cases("cases.txt");
    assert_eq!(cases.len(), 8, "2 formats × 4 lengths");
    for Case { ty, n, rows, m } in cases {
        let stem = format!("{}-{n}", ty.name());
        let weights = REPACK.read(&format!("{stem}.w"));
        let x = REPACK.read_f32(&format!("x-{n}.f32"));
        let gemm = REPACK.read_f32(&format!("{stem}.gemm.f32"));
        let gemv = REPACK.read_f32(&format!("{stem}.gemv.f32"));
        assert_eq!(
            (x.len(), gemm.len(), gemv.len()),
            (m * n, m * rows, m * rows),
            "{stem}: sizes"
        );
        let row_bytes = weights.len() / rows;
        for isa in Isa::available() {
            for w_rows in [rows, 8, 16] {
                assert!(follows_ggml_repack(ty, w_rows));
                let w = QMatrix::new(ty, w_rows, n, &weights[..w_rows * row_bytes]).unwrap();
                for k in 1..=m {
                    let mut y = vec![f32::NAN; k * w_rows];
                    qmatmul_with_isa(&w, &x[..k * n], k, &mut y, isa).unwrap();
                    let by_gemm = if k > 3 { k - k % 4 } else { 0 };
                    for (i, y) in y.chunks_exact(w_rows).enumerate() {
                        let want = if i < by_gemm { &gemm } else { &gemv };
                        let what = format!(
                            "{stem} {} {w_rows} rows, {k} act rows (row {i} by {})",
                            isa.name(),
                            if i < by_gemm { "gemm" } else { "gemv" }
                        );
                        assert_bits(&what, y, w_rows, want, rows, i);
                    }
                }
            }
        }
    }
}

/// Every format of this file on the fixtures' weights with 1 to 33 activation rows (the tiled
/// order from 8 on): every instruction set gives the portable kernels' bits, and the results are
/// the dequantized weights' product (f64, `reference::matmul_f64`) to within the 8-bit
/// activations' rounding: each quantized activation is within half a step (1/254 of its block's
/// largest magnitude `amax`) of the true one, so |error| ≤ Σ_e |w_e| · amax(e) / 254, plus 1%
/// of that and 1e-5 · Σ|w·x| for the f32 sums. The bound does not hold where the step is
/// coarser: activation row 3 of the 32-element fixtures is scaled to
/// ~1e-5, where `block_q8_0`'s f16 scale is subnormal (ggml's rounding too), so that row is
/// checked only for the instruction sets' agreement.
#[test]
fn every_instruction_set_gives_the_portable_bits_near_the_reference() {
    use gguf_kernels::reference::{dequantize, matmul_f64};
    let mut cases = FIXTURES.cases("cases.txt");
    cases.extend(FIXTURES.cases("cases_k.txt"));
    for Case { ty, n, rows, m: _ } in cases {
        let stem = format!("{}-{n}", ty.name());
        let weights = FIXTURES.read(&format!("{stem}.w"));
        let x_name = if ty.block_size() == 256 { "xk" } else { "x" };
        let x = FIXTURES.read_f32(&format!("{x_name}-{n}.f32"));
        let m_fixture = x.len() / n;
        let row_bytes = weights.len() / rows;
        for w_rows in [rows, 5] {
            let w = QMatrix::new(ty, w_rows, n, &weights[..w_rows * row_bytes]).unwrap();
            let wd = dequantize(&w).unwrap();
            for k in [1, 3, 8, 11, 16, 33] {
                let xk: Vec<f32> = (0..k)
                    .flat_map(|i| x[(i % m_fixture) * n..][..n].iter().copied())
                    .collect();
                let mut want = vec![f32::NAN; k * w_rows];
                qmatmul_with_isa(&w, &xk, k, &mut want, Isa::Scalar).unwrap();
                for isa in Isa::available() {
                    let mut y = vec![f32::NAN; k * w_rows];
                    qmatmul_with_isa(&w, &xk, k, &mut y, isa).unwrap();
                    let what = format!("{stem} {} {w_rows} rows, {k} act rows", isa.name());
                    assert_bits(&what, &y, w_rows, &want, w_rows, 0);
                }
                let exact = matmul_f64(&wd, w_rows, n, &xk, k).unwrap();
                let subnormal_scales = |i: usize| ty.block_size() == 32 && i % m_fixture == 3;
                for i in (0..k).filter(|&i| !subnormal_scales(i)) {
                    for r in 0..w_rows {
                        let xi = &xk[i * n..][..n];
                        let (mut mag, mut bound) = (0f64, 0f64);
                        for (e, &xe) in xi.iter().enumerate() {
                            let blk = ty.block_size();
                            let amax = xi[e / blk * blk..][..blk]
                                .iter()
                                .fold(0f64, |a, &v| a.max((v as f64).abs()));
                            let w = (wd[r * n + e] as f64).abs();
                            mag += w * (xe as f64).abs();
                            bound += w * amax / 254.0;
                        }
                        let bound = 1.01 * bound + 1e-5 * mag + 1e-30;
                        let (got, exp) = (want[i * w_rows + r] as f64, exact[i * w_rows + r]);
                        assert!(
                            (got - exp).abs() <= bound,
                            "{stem} {w_rows} rows, {k} act rows: y[{i}, {r}] = {got:e}, reference {exp:e} (bound {bound:e})"
                        );
                    }
                }
            }
        }
    }
}

/// The SIMD tiled kernels take weight rows eight at a time where a task has eight (the rest one
/// by one), and activation rows in bands of 16: on 300 weight rows (tasks of whole eights and a
/// remainder; the fixture's rows repeated) and 8, 17 and 33 activation rows, every instruction
/// set gives the portable kernel's bits (which the test above checks against ggml).
#[test]
fn many_weight_rows_give_the_portable_bits() {
    const W_ROWS: usize = 300;
    let mut seen = 0;
    for Case { ty, n, rows, m: _ } in FIXTURES.cases("cases_k.txt") {
        if n != 768 {
            continue; // one length per format keeps this quick
        }
        seen += 1;
        let stem = format!("{}-{n}", ty.name());
        let fixture = FIXTURES.read(&format!("{stem}.w"));
        let row_bytes = fixture.len() / rows;
        let weights: Vec<u8> = (0..W_ROWS)
            .flat_map(|r| {
                fixture[(r % rows) * row_bytes..][..row_bytes]
                    .iter()
                    .copied()
            })
            .collect();
        let w = QMatrix::new(ty, W_ROWS, n, &weights).unwrap();
        let x = FIXTURES.read_f32(&format!("xk-{n}.f32"));
        let m_fixture = x.len() / n;
        for k in [8, 17, 33] {
            let xk: Vec<f32> = (0..k)
                .flat_map(|i| x[(i % m_fixture) * n..][..n].iter().copied())
                .collect();
            let mut want = vec![f32::NAN; k * W_ROWS];
            qmatmul_with_isa(&w, &xk, k, &mut want, Isa::Scalar).unwrap();
            for isa in Isa::available() {
                let mut y = vec![f32::NAN; k * W_ROWS];
                qmatmul_with_isa(&w, &xk, k, &mut y, isa).unwrap();
                let what = format!("{stem} {} {W_ROWS} rows, {k} act rows", isa.name());
                assert_bits(&what, &y, W_ROWS, &want, W_ROWS, 0);
            }
        }
    }
    assert_eq!(seen, 10, "every super-block format of cases_k.txt");
}

/// Blocks with a non-finite f16 scale (NaN, +inf, -inf; `tests/fixtures/ggml_iquant/bad/`, same
/// script): the kernels give what ggml's `vec_dot` gives, the same infinity where it has one and
/// a NaN where it has a NaN (NaN payloads are not compared), one activation row at a time and
/// three together, on every instruction set.
#[test]
fn non_finite_scales_give_ggml_results() {
    let bad = Fixtures("ggml_iquant/bad");
    let cases = bad.cases("cases.txt");
    assert_eq!(cases.len(), 10, "every format with an f16 scale field");
    for Case { ty, n, rows, m } in cases {
        let weights = bad.read(&format!("{}.w", ty.name()));
        let want = bad.read_f32(&format!("{}.y.f32", ty.name()));
        let x = bad.read_f32(if ty.block_size() == 256 {
            "xk.f32"
        } else {
            "x.f32"
        });
        assert_eq!((x.len(), want.len()), (m * n, m * rows), "{ty}: sizes");
        let w = QMatrix::new(ty, rows, n, &weights).unwrap();
        let same = |g: f32, e: f32| (g.is_nan() && e.is_nan()) || g.to_bits() == e.to_bits();
        for isa in Isa::available() {
            let mut all = vec![0f32; m * rows];
            qmatmul_with_isa(&w, &x, m, &mut all, isa).unwrap();
            for i in 0..m {
                let mut y = vec![0f32; rows];
                qmatmul_with_isa(&w, &x[i * n..][..n], 1, &mut y, isa).unwrap();
                for r in 0..rows {
                    let e = want[i * rows + r];
                    for (what, g) in [("alone", y[r]), ("in 3 rows", all[i * rows + r])] {
                        assert!(
                            same(g, e),
                            "{ty} {} row {r}, activation row {i} {what}: {g:e}, ggml's {e:e}",
                            isa.name()
                        );
                    }
                }
            }
        }
    }
}
