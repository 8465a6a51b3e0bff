//! The CPU kernels' error bound against the f64 reference (derived in the module docs of
//! `cpu_kernels.rs`: activation quantization to 8 bits per block, the f16 block scale and sum as
//! ggml stores them, and f32 rounding), shared by `cpu_kernels.rs` and `proptest_kernels.rs`.
//! Per output, `|y - y_ref| ≤ quant + gamma(ty, cols) · round` with `(quant, round)` from
//! [`bound_terms`].

use gguf_importer::GgmlType;

/// `C` of `cpu_kernels.rs`'s module docs for one block: the largest constant part the kernel
/// splits off.
pub fn const_part(ty: GgmlType, block: &[u8]) -> f32 {
    fn f(b: &[u8]) -> f32 {
        half::f16::from_le_bytes([b[0], b[1]]).to_f32().abs()
    }
    match ty {
        GgmlType::Q4_0 => 8.0 * f(&block[0..]),            // b = -8d
        GgmlType::Q4_1 | GgmlType::Q5_1 => f(&block[2..]), // b = m
        GgmlType::Q5_0 => 16.0 * f(&block[0..]),           // b = -16d
        GgmlType::Q2_K => 15.0 * f(&block[82..]),          // dmin · 4-bit min
        GgmlType::Q3_K => 4.0 * 32.0 * f(&block[108..]),   // 4 · d · |6-bit scale - 32|
        GgmlType::Q4_K | GgmlType::Q5_K => 63.0 * f(&block[2..]), // dmin · 6-bit min
        GgmlType::Q6_K => 32.0 * 128.0 * f(&block[208..]), // 32 · d · |i8 scale|
        _ => 0.0,                                          // F32, F16, BF16, Q8_0
    }
}

/// Per output `[m, rows]`: (activation quantization term, f32 rounding term without `γ`).
pub fn bound_terms(
    ty: GgmlType,
    w: &[u8],
    wd: &[f32],
    rows: usize,
    cols: usize,
    x: &[f32],
) -> Vec<(f64, f64)> {
    let quantized = ty.is_quantized();
    let act_block = match ty.block_size() {
        1 => cols, // unused
        bs => bs,
    };
    let wblock = ty.block_size();
    let row_bytes = cols / wblock * ty.type_size();
    let mut out = Vec::new();
    for x in x.chunks_exact(cols) {
        // dx per activation block (0 for float weights: no quantization)
        let dx: Vec<f64> = x
            .chunks(act_block)
            .map(|b| {
                if quantized {
                    b.iter().fold(0f32, |a, &v| a.max(v.abs())) as f64 / 127.0
                } else {
                    0.0
                }
            })
            .collect();
        for r in 0..rows {
            let wrow = &wd[r * cols..(r + 1) * cols];
            let brow = &w[r * row_bytes..(r + 1) * row_bytes];
            let (mut quant, mut round) = (0f64, 0f64);
            for j in 0..cols {
                let d = dx[j / act_block];
                let c = const_part(ty, &brow[j / wblock * ty.type_size()..]) as f64;
                let wa = wrow[j].abs() as f64;
                // Blocks of 32 store their scale (and Q8_1's sum s = d·Σq) as f16, as ggml's
                // block_q8_0 / block_q8_1 do: x̂ = q·f16(d) moves by up to |q|·d·2⁻¹¹ ≤ 127·d·2⁻¹¹,
                // and the offset term m·s of Q4_1/Q5_1 by |m|·127·d·2⁻¹¹ per element (C ≥ |m|).
                let f16_scale = if ty.block_size() == 32 {
                    127.0 * d * 2f64.powi(-11)
                } else {
                    0.0
                };
                // BF16 weights: the activations are rounded to bf16 first, as ggml does (to
                // nearest: |x - x̂| ≤ |x|·2⁻⁸; bf16 has f32's exponent range).
                // F16 weights: likewise to f16 (ggml's `vec_dot_type` for F16; the ggml-order
                // float kernels, cpu/float.rs): |x - x̂| ≤ |x|·2⁻¹¹ in f16's normal range, ≤ 2⁻²⁵
                // (half the subnormal spacing) below it; |x| < 65504 in these tests.
                let float_round = match ty {
                    GgmlType::BF16 => x[j].abs() as f64 * 2f64.powi(-8),
                    GgmlType::F16 => (x[j].abs() as f64 * 2f64.powi(-11)).max(2f64.powi(-25)),
                    _ => 0.0,
                };
                quant += d / 2.0 * (1.0 + 2f64.powi(-15)) * wa + f16_scale * (wa + c);
                quant += float_round * wa;
                // |x̂| ≤ |x|·(1 + 2⁻⁸), plus 2⁻²⁵ for an f16-rounded x below f16's normal range
                let sub = if ty == GgmlType::F16 {
                    2f64.powi(-25)
                } else {
                    0.0
                };
                let x_hat = x[j].abs() as f64 * (1.0 + 2f64.powi(-8)) + sub;
                round += (wa + 2.0 * c) * (x_hat + d / 2.0);
            }
            out.push((quant, round));
        }
    }
    out
}

pub fn gamma(ty: GgmlType, cols: usize) -> f64 {
    let n = if ty.is_quantized() {
        2 * cols / ty.block_size()
    } else {
        cols / 8
    };
    (n + 12) as f64 * 2f64.powi(-24)
}
