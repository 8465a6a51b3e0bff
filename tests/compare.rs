//! The tests' comparison helper (tests/common/compare.rs) fails on NaN and unmatched infinities,
//! names the worst element, and a NaN seeded into a real model output fails the comparisons the
//! parity tests make.

mod common;

use common::*;
use gguf_llama::cli;
use gguf_llama::model::{CacheTypes, Llama, Logits};

#[test]
fn nan_and_infinities_are_differences() {
    let want = [1.0f32, 2.0, 3.0];
    assert_eq!(max_abs_diff(&want, &want), 0.0);
    assert!((max_abs_diff(&[1.0, 2.5, 3.0], &want) - 0.5).abs() < 1e-7);
    // A NaN in either operand, anywhere, fails every tolerance.
    for i in 0..3 {
        let mut got = want;
        got[i] = f32::NAN;
        let d = compare(&got, &want);
        assert_eq!(d.max_abs, f32::INFINITY, "NaN at {i}");
        assert!(!d.within(1e30));
        assert_eq!(d.worst.map(|w| w.0), Some(i));
        assert_eq!(compare(&want, &got).max_abs, f32::INFINITY);
    }
    // Infinities match only themselves; NaN matches NaN at the same place.
    let inf = [f32::INFINITY, f32::NEG_INFINITY, f32::NAN];
    assert_eq!(max_abs_diff(&inf, &inf), 0.0);
    assert_eq!(
        max_abs_diff(&[f32::INFINITY, 0.0, 0.0], &[1e38, 0.0, 0.0]),
        f32::INFINITY
    );
    assert_eq!(
        max_abs_diff(&[f32::INFINITY, 0.0], &[f32::NEG_INFINITY, 0.0]),
        f32::INFINITY
    );
    // The scale of a result with a NaN is NaN, so `d <= tol * scale` fails too.
    assert!(max_abs(&[1.0, f32::NAN, -3.0]).is_nan());
    assert_eq!(max_abs(&[1.0, -3.0]), 3.0);
    // Bit-identity tells -0 from +0 and counts the elements that differ.
    let d = compare(&[0.0, 1.0, 2.0], &[-0.0, 1.0, 2.5]);
    assert_eq!((d.differing, d.len), (2, 3));
    assert_eq!(d.worst, Some((2, 2.0, 2.5)));
    let message = d.to_string();
    assert!(
        message.contains("at [2]") && message.contains("got 2") && message.contains("want 2.5")
    );
}

#[test]
#[should_panic(expected = "not bit-identical")]
fn assert_close_reports_the_worst_element() {
    assert_close("x", &[1.0, f32::NAN], &[1.0, 1.0], 1e-3);
}

/// stories260K's logits on flex with one NaN written into them: the tolerance checks of the
/// parity tests (absolute, relative to the largest logit, bit-identity) all fail, wherever the
/// NaN is.
#[test]
fn a_nan_in_the_model_output_fails_the_comparisons() {
    let file = cli::open_model(None).unwrap();
    let device = burn::tensor::Device::flex();
    let model = Llama::from_gguf(&file, &device).unwrap();
    let prompt = [1u32, 403, 407, 261, 378];
    let mut cache = model.new_cache_with(1, prompt.len(), CacheTypes::F32);
    let logits = to_vec(
        model
            .forward_ids(&prompt, 1, &mut cache, Logits::All)
            .unwrap(),
    );
    assert!(logits.iter().all(|x| x.is_finite()));
    for at in [0, logits.len() / 2, logits.len() - 1] {
        let mut seeded = logits.clone();
        seeded[at] = f32::NAN;
        let d = compare(&seeded, &logits);
        assert!(!d.within(1e3), "NaN at {at} passed");
        // The parity tests' `d <= tol` checks, written as they are written there: a NaN must
        // make them false (a `d > tol` check would let NaN through).
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        {
            assert!(!(max_abs_diff(&seeded, &logits) <= 1e-4 * max_abs(&logits)));
            assert!(!(max_abs_diff(&seeded, &logits) <= 1e-4 * max_abs(&seeded)));
        }
        assert_eq!(d.differing, 1);
        assert_eq!(d.worst.map(|w| w.0), Some(at));
        let caught = std::panic::catch_unwind(|| assert_close("seeded", &seeded, &logits, 1.0));
        assert!(caught.is_err(), "assert_close let a NaN at {at} pass");
    }
}
