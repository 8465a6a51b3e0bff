//! Test data for the kernel tests (the format lists and the random source are shared by all of
//! them; the rest serves the GPU and extension tests): random valid GGUF blocks of every format, random
//! activations, and the dequantize-then-matmul reference with its error bound.
//!
//! Random bytes are valid blocks of every format here once their f16 scales are finite: every
//! quant bit pattern decodes. The scales are set to finite f16 values of moderate size, one in
//! eight a subnormal (to exercise the kernels' f16 decoding of those).
#![allow(dead_code)]

pub mod cpu_bound;

use std::mem::offset_of;

use gguf_importer::quants::{
    BlockIq4Nl, BlockIq4Xs, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K,
    BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8_0, BlockTq1_0, BlockTq2_0,
};
use gguf_importer::GgmlType;
use gguf_kernels::cpu::QMatrix;
use gguf_kernels::reference;

/// The quantized formats with a kernel.
pub const QUANTIZED: [GgmlType; 10] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

/// The float formats with a kernel.
pub const FLOATS: [GgmlType; 3] = [GgmlType::F32, GgmlType::F16, GgmlType::BF16];

/// Every format with a kernel: [`FLOATS`], then [`QUANTIZED`].
pub const ALL: [GgmlType; 13] = {
    let mut all = [GgmlType::F32; 13];
    let mut i = 0;
    while i < FLOATS.len() {
        all[i] = FLOATS[i];
        i += 1;
    }
    while i < all.len() {
        all[i] = QUANTIZED[i - FLOATS.len()];
        i += 1;
    }
    all
};

/// splitmix64: a fixed, dependency-free source of test data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    pub fn f32_in(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }

    pub fn vec_f32(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.f32_in(lo, hi)).collect()
    }

    /// A finite f16 scale: ±[2⁻⁸, 2⁻²), or one time in eight a subnormal.
    pub fn f16_scale(&mut self) -> [u8; 2] {
        let r = self.next();
        let h = if r.is_multiple_of(8) {
            half::f16::from_bits(((r >> 8) as u16 & 0x03FF).max(1) | ((r >> 20) as u16 & 0x8000))
        } else {
            let v = self.f32_in(1.0 / 256.0, 0.25);
            half::f16::from_f32(if r & 0x100 != 0 { -v } else { v })
        };
        h.to_le_bytes()
    }
}

/// Byte offsets of the f16 fields in a block of `ty` (from the importer's `#[repr(C)]` block
/// structs, which mirror ggml's `block_q*`).
pub fn f16_offsets(ty: GgmlType) -> Vec<usize> {
    use GgmlType::*;
    match ty {
        Q4_0 => vec![offset_of!(BlockQ4_0, d)],
        Q4_1 => vec![offset_of!(BlockQ4_1, d), offset_of!(BlockQ4_1, m)],
        Q5_0 => vec![offset_of!(BlockQ5_0, d)],
        Q5_1 => vec![offset_of!(BlockQ5_1, d), offset_of!(BlockQ5_1, m)],
        Q8_0 => vec![offset_of!(BlockQ8_0, d)],
        Q2_K => vec![offset_of!(BlockQ2K, d), offset_of!(BlockQ2K, dmin)],
        Q3_K => vec![offset_of!(BlockQ3K, d)],
        Q4_K => vec![offset_of!(BlockQ4K, d), offset_of!(BlockQ4K, dmin)],
        Q5_K => vec![offset_of!(BlockQ5K, d), offset_of!(BlockQ5K, dmin)],
        Q6_K => vec![offset_of!(BlockQ6K, d)],
        IQ2_XXS | IQ2_XS | IQ2_S | IQ3_XXS | IQ3_S | IQ1_S => vec![0],
        IQ4_NL => vec![offset_of!(BlockIq4Nl, d)],
        IQ4_XS => vec![offset_of!(BlockIq4Xs, d)],
        TQ1_0 => vec![offset_of!(BlockTq1_0, d)],
        TQ2_0 => vec![offset_of!(BlockTq2_0, d)],
        _ => vec![],
    }
}

/// The formats with CubeCL decoders beyond [`QUANTIZED`] (their random blocks: `random_weights`).
pub const QUANTIZED_LUT: [GgmlType; 12] = [
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
    GgmlType::TQ1_0,
    GgmlType::TQ2_0,
    GgmlType::MXFP4,
    GgmlType::IQ2_XXS,
    GgmlType::IQ2_XS,
    GgmlType::IQ2_S,
    GgmlType::IQ3_XXS,
    GgmlType::IQ3_S,
    GgmlType::IQ1_S,
    GgmlType::IQ1_M,
];

/// Random valid GGUF bytes of a `[rows, cols]` matrix of `ty`.
pub fn random_weights(ty: GgmlType, rows: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
    let n = rows * cols;
    match ty {
        GgmlType::F32 => rng
            .vec_f32(n, -1.0, 1.0)
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        GgmlType::F16 => (0..n)
            .flat_map(|_| half::f16::from_f32(rng.f32_in(-1.0, 1.0)).to_le_bytes())
            .collect(),
        GgmlType::BF16 => (0..n)
            .flat_map(|_| half::bf16::from_f32(rng.f32_in(-1.0, 1.0)).to_le_bytes())
            .collect(),
        _ => {
            let size = ty.type_size();
            let n_bytes = n / ty.block_size() * size;
            let mut bytes: Vec<u8> = (0..n_bytes).map(|_| rng.next() as u8).collect();
            let offsets = f16_offsets(ty);
            for block in bytes.chunks_exact_mut(size) {
                for &o in &offsets {
                    block[o..o + 2].copy_from_slice(&rng.f16_scale());
                }
                if ty == GgmlType::MXFP4 {
                    // the E8M0 exponent: half scales 2^-18 .. 2^-2 (finite products)
                    block[0] = 110 + (rng.next() % 16) as u8;
                }
                if ty == GgmlType::IQ1_M {
                    // the f16 scale spread over the top nibbles of the four scale words
                    let bits = u16::from_le_bytes(rng.f16_scale());
                    for k in 0..4 {
                        let hi = &mut block[48 + 2 * k + 1];
                        *hi = (*hi & 0x0F) | ((((bits >> (4 * k)) & 0x0F) as u8) << 4);
                    }
                }
            }
            bytes
        }
    }
}

/// Columns for "1, 2, 3 blocks" of `ty` (float formats: 1, 3, 45 and 70 values, the last two
/// ending in a partial chunk of 32).
pub fn col_cases(ty: GgmlType) -> Vec<usize> {
    if ty.is_quantized() {
        vec![ty.block_size(), 2 * ty.block_size(), 3 * ty.block_size()]
    } else {
        vec![1, 3, 45, 70]
    }
}

/// The reference `y` `[m, rows]` in f64 and, per output, the error the kernels may make.
///
/// The kernels decode every weight exactly as the reference does (`d·q`, `dl·q - ml`, … are
/// formed in the same order, and `d·q` with an f16 `d` and a quant of at most 8 bits is exact in
/// f32, so an FMA contraction cannot change the result either). What differs is the f32
/// summation: `cols` products, each rounded, summed in some order with a depth of at most
/// `cols + 7` additions (a unit's sequential run, then up to 6 reduction levels). The classic
/// bound is `|ŷ - y| ≤ γ_n · Σ_k |w_k·x_k|` with `γ_n = n·u / (1 - n·u)`, `u = 2⁻²⁴`; we use
/// `n = cols + 8` and 1.01 for the denominator.
pub struct Expected {
    /// `y = x · Wᵀ` in f64 from the dequantized weights.
    pub y: Vec<f64>,
    /// `Σ_k |w_k·x_k|` per output.
    pub mag: Vec<f64>,
    /// The bound on `|ŷ - y|` per output.
    pub tol: Vec<f64>,
}

pub fn expected(ty: GgmlType, rows: usize, cols: usize, w: &[u8], x: &[f32], m: usize) -> Expected {
    let q = QMatrix::new(ty, rows, cols, w).expect("valid test matrix");
    let wd = reference::dequantize(&q).expect("reference dequantize");
    let y = reference::matmul_f64(&wd, rows, cols, x, m).expect("reference matmul");
    let abs_w: Vec<f32> = wd.iter().map(|v| v.abs()).collect();
    let abs_x: Vec<f32> = x.iter().map(|v| v.abs()).collect();
    let mag = reference::matmul_f64(&abs_w, rows, cols, &abs_x, m).expect("reference magnitude");
    let gamma = (cols + 8) as f64 * 2f64.powi(-24) * 1.01;
    let tol = mag
        .iter()
        .map(|s| gamma * s + f32::MIN_POSITIVE as f64)
        .collect();
    Expected { y, mag, tol }
}

/// Asserts every output of `got` within its bound of `want`, naming the case and the output.
pub fn assert_close(case: &str, got: &[f32], want: &Expected) {
    if let Err(e) = check_close(case, got, want) {
        panic!("{e}");
    }
}

/// [`assert_close`] as a `Result`: the first output outside its bound (or a length mismatch).
pub fn check_close(case: &str, got: &[f32], want: &Expected) -> Result<(), String> {
    if got.len() != want.y.len() {
        return Err(format!(
            "{case}: output length {} != {}",
            got.len(),
            want.y.len()
        ));
    }
    for (i, (&g, (&y, &t))) in got.iter().zip(want.y.iter().zip(&want.tol)).enumerate() {
        let err = (g as f64 - y).abs();
        if err.is_nan() || err > t {
            return Err(format!(
                "{case}: y[{i}] = {g}, reference {y}, error {err:e} > bound {t:e}"
            ));
        }
    }
    Ok(())
}
