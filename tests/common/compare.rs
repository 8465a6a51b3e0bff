//! The one comparison of float results the tests use (this crate's through `common`, the importer's
//! and kernels' through `#[path]`): NaN-safe, and it names the worst element.
//!
//! A fold with `f32::max` drops NaN (`NaN.max(x) == x`), so a NaN in a result would pass any
//! tolerance. Here a NaN or an infinity in `got` matches only the same value at the same place in
//! `want` (and the other way round); any other non-finite element makes the difference infinite,
//! which fails every tolerance.

#![allow(dead_code)]

use std::fmt;

/// How far `got` is from `want`, element by element.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Diff {
    /// The largest `|got - want|`, `inf` when a non-finite element has no equal counterpart
    /// (0 for empty slices).
    pub max_abs: f32,
    /// Where it is (the first such place), with both values; `None` for empty slices.
    pub worst: Option<(usize, f32, f32)>,
    /// Elements that are not bit-identical.
    pub differing: usize,
    /// Elements compared.
    pub len: usize,
}

impl Diff {
    /// Whether every element is within `tol` (and no non-finite element is unmatched).
    pub fn within(&self, tol: f32) -> bool {
        self.max_abs <= tol
    }
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.worst {
            Some((i, got, want)) => write!(
                f,
                "max |diff| {} at [{i}] (got {got}, want {want}); {} of {} elements not bit-identical",
                self.max_abs, self.differing, self.len
            ),
            None => write!(f, "no elements"),
        }
    }
}

/// `|got - want|` of one pair, `inf` for a non-finite value without an equal counterpart.
fn pair_diff(got: f32, want: f32) -> f32 {
    if got.is_finite() && want.is_finite() {
        return (got - want).abs();
    }
    let same = (got.is_nan() && want.is_nan()) || got == want;
    if same {
        0.0
    } else {
        f32::INFINITY
    }
}

/// Compares two slices of the same length (panics, naming both lengths, when they differ).
pub fn compare(got: &[f32], want: &[f32]) -> Diff {
    assert_eq!(
        got.len(),
        want.len(),
        "compared slices differ in length: got {}, want {}",
        got.len(),
        want.len()
    );
    let mut diff = Diff {
        max_abs: 0.0,
        worst: None,
        differing: 0,
        len: got.len(),
    };
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = pair_diff(g, w);
        if g.to_bits() != w.to_bits() {
            diff.differing += 1;
        }
        if diff.worst.is_none() || d > diff.max_abs {
            diff.max_abs = d;
            diff.worst = Some((i, g, w));
        }
    }
    diff
}

/// The largest `|a - b|`, `inf` when a NaN or infinity is unmatched (see [`compare`]).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    compare(a, b).max_abs
}

/// The largest `|x|`; NaN if any element is NaN (so that a scale made from it fails too).
pub fn max_abs(a: &[f32]) -> f32 {
    a.iter().fold(0f32, |m, &x| {
        if x.is_nan() || m.is_nan() {
            f32::NAN
        } else {
            m.max(x.abs())
        }
    })
}

/// Panics unless every element of `got` is within `tol` of `want`, naming `what` and the worst
/// element.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    let diff = compare(got, want);
    assert!(diff.within(tol), "{what}: {diff} (tolerance {tol})");
}

/// Panics unless `got` and `want` are bit-identical, naming `what` and the worst element.
#[track_caller]
pub fn assert_bits_eq(what: &str, got: &[f32], want: &[f32]) {
    let diff = compare(got, want);
    assert_eq!(diff.differing, 0, "{what}: {diff}");
}
