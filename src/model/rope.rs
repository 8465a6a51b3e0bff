//! Rotary position embedding (RoPE) as llama.cpp applies it.
//!
//! Pair `i` (of `n_rot / 2`) of a head at position `p` is rotated by the angle
//!
//! ```text
//! theta_i = freq_scale · p · base^(-2i / n_rot) / freq_factor[i]
//! ```
//!
//! - `freq_scale` is linear position scaling (`1 / rope.scaling.factor`, 1 without scaling);
//! - `freq_factor` are the per-pair divisors of Llama 3 files (tensor `rope_freqs.weight`,
//!   shape `[n_rot / 2]`) or LongRoPE's (Phi-3: `rope_factors_long.weight` or
//!   `rope_factors_short.weight`), 1 when the file has none (ggml's `freq_factors` of
//!   `ggml_rope_ext`).
//!
//! The cosines and sines are multiplied by `attn_factor` (`rope.scaling.attn_factor`, 1 without
//! it: ggml's `mscale`).
//!
//! The angles are computed on the host in f32 the way ggml's CPU backend does
//! (`ggml_rope_cache_init`: `theta` starts at `p` and is multiplied by `base^(-2/n_rot)` once per
//! pair), so positions far into the context get the same rounding as the reference.
//!
//! The pairing ([`RopeStyle`]): `Adjacent` rotates `(x[2i], x[2i+1])` (llama.cpp's
//! `LLAMA_ROPE_TYPE_NORM`, used by the `llama` architecture: llama.cpp's converter permutes the
//! Q/K rows of HF checkpoints so that adjacent pairs are right for GGUF weights as stored);
//! `Halves` rotates `(x[i], x[i + n_rot/2])` (`LLAMA_ROPE_TYPE_NEOX`). Elements of a head past
//! `n_rot` pass through unchanged.
//!
//! The rotation itself is [`ops::rope`]: on the CPU devices ggml's own, bit for bit
//! ([`gguf_kernels::ggml_ops::rope`]: `x0·cos - x1·sin` and `x0·sin + x1·cos` each with one fused
//! multiply-add, as ggml's binary computes them); elsewhere both pairings are computed the same
//! way, as `x · C + swap(x) · S` (see [`ops::rope`]).

use burn::tensor::{Device, Tensor};

use crate::model::config::{RopeConfig, RopeStyle};
use crate::model::error::ModelError;
use crate::model::ops;
pub use crate::model::ops::RopeTables;

/// RoPE parameters and the per-pair frequency divisors.
#[derive(Debug, Clone, PartialEq)]
pub struct Rope {
    style: RopeStyle,
    n_rot: usize,
    freq_base: f32,
    freq_scale: f32,
    /// Factor of the cosines and sines.
    mscale: f32,
    /// YaRN's extrapolation share (0: none).
    ext_factor: f32,
    /// YaRN's correction dimensions (ggml's `ggml_rope_yarn_corr_dims`).
    corr_dims: [f32; 2],
    /// `[n_rot / 2]` divisors of the angles (`rope_freqs.weight`), if the file has them.
    freq_factors: Option<Vec<f32>>,
}

impl Rope {
    /// RoPE from the configuration and optional per-pair frequency divisors (`[n_rot / 2]`).
    pub fn new(config: &RopeConfig, freq_factors: Option<Vec<f32>>) -> Result<Rope, ModelError> {
        Self::with_factors(
            config,
            freq_factors.map(|f| (crate::model::load::ROPE_FREQS, f)),
        )
    }

    /// [`Rope::new`] with the divisors read from the tensor `name` (named in errors).
    pub(crate) fn with_factors(
        config: &RopeConfig,
        freq_factors: Option<(&str, Vec<f32>)>,
    ) -> Result<Rope, ModelError> {
        let n_rot = config.dimension_count;
        if let Some((name, ff)) = &freq_factors {
            if ff.len() != n_rot / 2 {
                return Err(ModelError::ShapeMismatch {
                    name: name.to_string(),
                    expected: vec![n_rot / 2],
                    found: vec![ff.len()],
                });
            }
            if let Some(bad) = ff.iter().find(|f| !(f.is_finite() && **f > 0.0)) {
                return Err(ModelError::InvalidConfig {
                    key: name.to_string(),
                    reason: format!("frequency divisor {bad} is not a positive number"),
                });
            }
        }
        let freq_factors = freq_factors.map(|(_, f)| f);
        Ok(Rope {
            style: config.style,
            n_rot,
            freq_base: config.freq_base,
            freq_scale: config.freq_scale,
            mscale: config.attn_factor,
            ext_factor: config.ext_factor,
            corr_dims: yarn_corr_dims(
                n_rot,
                config.original_context_length,
                config.freq_base,
                config.yarn_beta,
            ),
            freq_factors,
        })
    }

    /// The per-pair frequency divisors `[n_rot / 2]` (`rope_freqs.weight`), if the file has them.
    pub fn freq_factors(&self) -> Option<&[f32]> {
        self.freq_factors.as_deref()
    }

    /// Rotated elements per head.
    pub fn n_rot(&self) -> usize {
        self.n_rot
    }

    /// The pairing.
    pub fn style(&self) -> RopeStyle {
        self.style
    }

    /// The angles of positions `start .. start + len`: `[len, n_rot / 2]`, row-major (ggml's
    /// `rope_yarn`: the scaled angle, with YaRN blended with the unscaled one by its ramp).
    pub fn angles(&self, start: usize, len: usize) -> Vec<f32> {
        let half = self.n_rot / 2;
        let theta_scale = self.freq_base.powf(-2.0 / self.n_rot as f32);
        let mut out = Vec::with_capacity(len * half);
        for p in start..start + len {
            let mut theta = p as f32;
            for i in 0..half {
                let ff = self.freq_factors.as_ref().map_or(1.0, |f| f[i]);
                let extrap = theta / ff;
                let interp = self.freq_scale * extrap;
                out.push(if self.ext_factor == 0.0 {
                    interp
                } else {
                    let mix = yarn_ramp(self.corr_dims, 2 * i) * self.ext_factor;
                    // `interp·(1 - mix) + extrap·mix`, which GCC contracts into
                    // fma(interp, 1 - mix, extrap·mix) (the other contraction flips greedy
                    // tokens of the YaRN test).
                    interp.mul_add(1.0 - mix, extrap * mix)
                });
                theta *= theta_scale;
            }
        }
        out
    }

    /// The factor of the cosines and sines: the attention factor, with YaRN times
    /// `1 + 0.1 ln(1 / freq_scale)` (ggml's `rope_yarn`).
    pub fn mscale(&self) -> f32 {
        if self.ext_factor == 0.0 {
            self.mscale
        } else {
            self.mscale * 0.1f32.mul_add((1.0 / self.freq_scale).ln(), 1.0)
        }
    }

    /// The rotation tables of positions `start .. start + seq` on `device`.
    pub fn tables(&self, start: usize, seq: usize, device: &Device) -> RopeTables {
        self.tables_of_runs(&[(start, seq)], device)
    }

    /// The rotation tables of several runs of positions, one after the other: run `(start,
    /// len)` gives the rows of positions `start .. start + len` (a ragged pass: each sequence's
    /// new positions after its own cached ones).
    pub fn tables_of_runs(&self, runs: &[(usize, usize)], device: &Device) -> RopeTables {
        let rows = runs.iter().map(|&(_, len)| len).sum();
        let angles: Vec<f32> = runs
            .iter()
            .flat_map(|&(start, len)| self.angles(start, len))
            .collect(); // [rows, n_rot / 2]
        RopeTables::new(&angles, self.mscale(), rows, self.n_rot, self.style, device)
    }

    /// Rotates the heads of `x` ([`ops::rope`] with `tables`, made by [`Rope::tables`]).
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, heads, head_dim]`, `head_dim >= n_rot`, `seq` as in `tables`
    /// - output: same
    pub fn apply(&self, x: Tensor<4>, tables: &RopeTables) -> Tensor<4> {
        ops::rope(x, tables)
    }
}

/// ggml's `ggml_rope_yarn_corr_dims`: the first and last dimension YaRN blends, from the
/// dimensions where `beta_fast` and `beta_slow` rotations fit the original context.
fn yarn_corr_dims(
    n_rot: usize,
    n_ctx_orig: usize,
    base: f32,
    (fast, slow): (f32, f32),
) -> [f32; 2] {
    let corr_dim = |beta: f32| {
        n_rot as f32 * (n_ctx_orig as f32 / (beta * 2.0 * std::f32::consts::PI)).ln()
            / (2.0 * base.ln())
    };
    [
        corr_dim(fast).floor().max(0.0),
        corr_dim(slow).ceil().min(n_rot as f32 - 1.0),
    ]
}

/// ggml's `rope_yarn_ramp` of element `i0` (even): 1 below the first correction dimension, 0
/// past the last, linear between.
fn yarn_ramp([low, high]: [f32; 2], i0: usize) -> f32 {
    let y = ((i0 / 2) as f32 - low) / (high - low).max(0.001);
    1.0 - y.clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    /// llama.cpp's rotation of one head, written out element by element (ggml's `rotate_pairs`:
    /// partners `(i, i + 1)` for NORM, `(i, i + n_rot/2)` for NEOX).
    fn reference(x: &[f32], angles: &[f32], style: RopeStyle, n_rot: usize) -> Vec<f32> {
        let mut out = x.to_vec();
        for (i, &a) in angles.iter().enumerate() {
            let (j0, j1) = match style {
                RopeStyle::Adjacent => (2 * i, 2 * i + 1),
                RopeStyle::Halves => (i, i + n_rot / 2),
            };
            let (x0, x1) = (x[j0], x[j1]);
            out[j0] = x0 * a.cos() - x1 * a.sin();
            out[j1] = x0 * a.sin() + x1 * a.cos();
        }
        out
    }

    #[test]
    fn angles_follow_the_formula() {
        let rope = Rope::new(
            &RopeConfig {
                style: RopeStyle::Adjacent,
                dimension_count: 8,
                freq_base: 10000.0,
                freq_scale: 0.5,
                attn_factor: 1.0,
                ext_factor: 0.0,
                yarn_beta: (32.0, 1.0),
                original_context_length: 4096,
            },
            Some(vec![1.0, 2.0, 4.0, 8.0]),
        )
        .unwrap();
        let got = rope.angles(3, 2); // positions 3 and 4
        for (r, p) in [3.0f64, 4.0].iter().enumerate() {
            for i in 0..4 {
                let want = 0.5 * p * 10000f64.powf(-2.0 * i as f64 / 8.0) / [1.0, 2.0, 4.0, 8.0][i];
                let g = got[r * 4 + i] as f64;
                assert!(
                    (g - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "p {p} i {i}: {g} vs {want}"
                );
            }
        }
    }

    #[test]
    #[cfg(feature = "flex")]
    fn rotation_matches_the_element_wise_reference() {
        let device = Device::flex();
        let (batch, seq, heads, head_dim) = (2, 3, 2, 12);
        let x: Vec<f32> = (0..batch * seq * heads * head_dim)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        for style in [RopeStyle::Adjacent, RopeStyle::Halves] {
            for n_rot in [8, 12] {
                let rope = Rope::new(
                    &RopeConfig {
                        style,
                        dimension_count: n_rot,
                        freq_base: 100.0,
                        freq_scale: 1.0,
                        attn_factor: 1.0,
                        ext_factor: 0.0,
                        yarn_beta: (32.0, 1.0),
                        original_context_length: 4096,
                    },
                    None,
                )
                .unwrap();
                let start = 5;
                let tables = rope.tables(start, seq, &device);
                let input = Tensor::<4>::from_data(
                    TensorData::new(x.clone(), [batch, seq, heads, head_dim]),
                    &device,
                );
                let got = rope
                    .apply(input, &tables)
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap();
                let angles = rope.angles(start, seq);
                for b in 0..batch {
                    for s in 0..seq {
                        for h in 0..heads {
                            let off = ((b * seq + s) * heads + h) * head_dim;
                            let a = &angles[s * n_rot / 2..(s + 1) * n_rot / 2];
                            let want = reference(&x[off..off + head_dim], a, style, n_rot);
                            for (g, w) in got[off..off + head_dim].iter().zip(&want) {
                                assert!(
                                    (g - w).abs() < 1e-6,
                                    "{style:?} n_rot {n_rot}: {g} vs {w}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
