//! CubeCL kernels for `y = x · Wᵀ` straight from GGUF blocks (the wgpu half of the fused
//! quantized matmul; [`crate::cpu`] is the CPU half).
//!
//! The weights are the file's bytes packed four to a `u32` word ([`crate::packed::QWeight`]);
//! every format is read at byte offsets ([`bits`]) and decoded 32 elements at a time, a *chunk*:
//! one block of the 32-element formats ([`legacy`], and IQ4_NL, MXFP4 in [`iquants`]), an eighth
//! of a K-quant, i-quant or ternary super-block ([`kquants`], [`iquants`]), 32 values of a float
//! row ([`float`]). [`decode_chunk`] picks the decoder at kernel-compile time from the ggml type
//! id.
//!
//! The matmul kernels ([`launch`] picks one), and beside them [`get_rows`], the embedding lookup
//! from the same blocks:
//! - [`matvec`]: decode (a few activation rows). One workgroup per (weight row, activation row);
//!   its units take the row's chunks in turn, each decoding a chunk and dotting it with `x`, and
//!   the partial sums are reduced with plane (subgroup) sums where the device has them, a
//!   shared-memory tree otherwise.
//! - [`tiled`]: prefill. A workgroup computes a 32 × 32 tile of `y`; per chunk of 32 columns, half
//!   its units decode 32 weight rows into shared memory while the other half load 32 activation
//!   rows, then each unit accumulates a 4 × 4 block of outputs.

pub mod bits;
pub mod float;
pub mod get_rows;
pub mod iquants;
pub mod kquants;
pub mod launch;
pub mod legacy;
pub mod matvec;
pub mod tiled;

use cubecl::prelude::*;

use gguf_importer::GgmlType;

// ggml type ids, the comptime format parameter of the kernels.
pub const TY_F32: u32 = 0;
pub const TY_F16: u32 = 1;
pub const TY_Q4_0: u32 = 2;
pub const TY_Q4_1: u32 = 3;
pub const TY_Q5_0: u32 = 6;
pub const TY_Q5_1: u32 = 7;
pub const TY_Q8_0: u32 = 8;
pub const TY_Q2_K: u32 = 10;
pub const TY_Q3_K: u32 = 11;
pub const TY_Q4_K: u32 = 12;
pub const TY_Q5_K: u32 = 13;
pub const TY_Q6_K: u32 = 14;
pub const TY_BF16: u32 = 30;
pub const TY_IQ2_XXS: u32 = 16;
pub const TY_IQ2_XS: u32 = 17;
pub const TY_IQ3_XXS: u32 = 18;
pub const TY_IQ1_S: u32 = 19;
pub const TY_IQ4_NL: u32 = 20;
pub const TY_IQ3_S: u32 = 21;
pub const TY_IQ2_S: u32 = 22;
pub const TY_IQ1_M: u32 = 29;
pub const TY_IQ4_XS: u32 = 23;
pub const TY_TQ1_0: u32 = 34;
pub const TY_TQ2_0: u32 = 35;
pub const TY_MXFP4: u32 = 39;

/// Elements per chunk, the unit of work of every kernel.
pub const CHUNK: u32 = 32;

/// Whether the kernels handle `ty`.
pub fn is_supported(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        ty,
        F32 | F16
            | BF16
            | Q4_0
            | Q4_1
            | Q5_0
            | Q5_1
            | Q8_0
            | Q2_K
            | Q3_K
            | Q4_K
            | Q5_K
            | Q6_K
            | IQ4_NL
            | IQ4_XS
            | TQ1_0
            | TQ2_0
            | MXFP4
            | IQ2_XXS
            | IQ2_XS
            | IQ2_S
            | IQ3_XXS
            | IQ3_S
            | IQ1_S
            | IQ1_M
    )
}

/// Whether the ggml type id is a plain float format (rows of any length, last chunk partial).
pub const fn is_float_id(ty: u32) -> bool {
    ty == TY_F32 || ty == TY_F16 || ty == TY_BF16
}

/// Chunks in a row of `cols` elements.
pub fn chunks_per_row(ty: GgmlType, cols: usize) -> usize {
    if ty.is_quantized() {
        cols / CHUNK as usize
    } else {
        cols.div_ceil(CHUNK as usize)
    }
}

/// Chunk `c` of the row starting at byte `rb` (row of `cols` elements) into `out[0..32]`, decoded
/// as ggml type `ty`.
#[cube]
pub fn decode_chunk(
    w: &[u32],
    rb: u32,
    c: u32,
    cols: u32,
    out: &mut Array<f32>,
    #[comptime] ty: u32,
) {
    if comptime!(is_float_id(ty)) {
        float::decode_float(w, rb, c, cols, out, ty);
    } else if comptime!(ty == TY_Q4_0) {
        legacy::decode_q4_0(w, rb, c, out);
    } else if comptime!(ty == TY_Q4_1) {
        legacy::decode_q4_1(w, rb, c, out);
    } else if comptime!(ty == TY_Q5_0) {
        legacy::decode_q5_0(w, rb, c, out);
    } else if comptime!(ty == TY_Q5_1) {
        legacy::decode_q5_1(w, rb, c, out);
    } else if comptime!(ty == TY_Q8_0) {
        legacy::decode_q8_0(w, rb, c, out);
    } else if comptime!(ty == TY_Q2_K) {
        kquants::decode_q2_k(w, rb, c, out);
    } else if comptime!(ty == TY_Q3_K) {
        kquants::decode_q3_k(w, rb, c, out);
    } else if comptime!(ty == TY_Q4_K) {
        kquants::decode_q4_k(w, rb, c, out);
    } else if comptime!(ty == TY_Q5_K) {
        kquants::decode_q5_k(w, rb, c, out);
    } else if comptime!(ty == TY_IQ4_NL) {
        iquants::decode_iq4_nl(w, rb, c, out);
    } else if comptime!(ty == TY_IQ4_XS) {
        iquants::decode_iq4_xs(w, rb, c, out);
    } else if comptime!(ty == TY_TQ1_0) {
        iquants::decode_tq1_0(w, rb, c, out);
    } else if comptime!(ty == TY_TQ2_0) {
        iquants::decode_tq2_0(w, rb, c, out);
    } else if comptime!(ty == TY_MXFP4) {
        iquants::decode_mxfp4(w, rb, c, out);
    } else if comptime!(ty == TY_IQ2_XXS) {
        iquants::decode_iq2_xxs(w, rb, c, out);
    } else if comptime!(ty == TY_IQ2_XS) {
        iquants::decode_iq2_xs(w, rb, c, out);
    } else if comptime!(ty == TY_IQ2_S) {
        iquants::decode_iq2_s(w, rb, c, out);
    } else if comptime!(ty == TY_IQ3_XXS) {
        iquants::decode_iq3_xxs(w, rb, c, out);
    } else if comptime!(ty == TY_IQ3_S) {
        iquants::decode_iq3_s(w, rb, c, out);
    } else if comptime!(ty == TY_IQ1_S) {
        iquants::decode_iq1_s(w, rb, c, out);
    } else if comptime!(ty == TY_IQ1_M) {
        iquants::decode_iq1_m(w, rb, c, out);
    } else {
        kquants::decode_q6_k(w, rb, c, out);
    }
}
