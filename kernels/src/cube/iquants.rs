//! The table-indexed and ternary formats on the GPU: IQ4_NL, MXFP4, IQ4_XS, TQ1_0 and TQ2_0,
//! mirroring gguf-py's (and the importer's) dequantizers, 32 elements (a chunk) at a time. The
//! grid i-quants (IQ1_S .. IQ3_S) have no CubeCL decoder yet: a model loader dequantizes them at
//! load for a GPU device.
//!
//! ```text
//! IQ4_NL (18 B):  | d f16 | qs[16] |                         x = d · kvalues_iq4nl[q]
//! MXFP4  (17 B):  | e u8 | qs[16] |                          x = kvalues_mxfp4[q] · 2^(e-128)
//! IQ4_XS (136 B): | d f16 | scales_h u16 | scales_l[4] | qs[128] |
//!                 sub-block ib: ls = scales_l nibble | 2 bits of scales_h << 4,
//!                 x = (d · (ls - 32)) · kvalues_iq4nl[q]
//! TQ2_0  (66 B):  | qs[64] | d f16 |     element 128j + 32l + m = ((qs[32j + m] >> 2l) & 3) - 1, · d
//! TQ1_0  (54 B):  | qs[48] | qh[4] | d f16 |   base-3 digits: elements 32n + m from qs[m]
//!                 (n < 5), 160 + 16n + m from qs[32 + m], 240 + 4n + j from qh[j];
//!                 digit n of byte b = ((b · 3^n mod 256) · 3 >> 8), minus 1, · d
//! ```
//!
//! (nibble `q` of element `j` is the low nibble of `qs[j]`, of element `j + 16` the high one.)
//! The 16-entry tables are four `u32` words of bytes here.

use cubecl::prelude::*;

use super::bits::{byte_at, f16_to_f32, i8_to_f32, u16_at, u32_at};

/// `kvalues_iq4nl` as little-endian bytes, four per word.
pub const KVALUES_IQ4NL_WORDS: [u32; 4] = [0xBFAD_9881, 0xF6EA_DDCF, 0x2619_0D01, 0x7159_4535];
/// `kvalues_mxfp4` (twice the FP4 E2M1 values) as little-endian bytes, four per word.
pub const KVALUES_MXFP4_WORDS: [u32; 4] = [0x0302_0100, 0x0C08_0604, 0xFDFE_FF00, 0xF4F8_FAFC];

/// Entry `code` (0..16) of the signed byte table held in the words `t0..t3`, as f32.
#[cube]
fn lut16(code: u32, t0: u32, t1: u32, t2: u32, t3: u32) -> f32 {
    let word = select(
        code < 8,
        select(code < 4, t0, t1),
        select(code < 12, t2, t3),
    );
    i8_to_f32((word >> ((code & 3) << 3)) & 0xFF)
}

/// 16 bytes of nibble codes at `qs` through the table `t*`, times `d`, into `out[0..32]`
/// (`value · d`, the dequantizers' product).
#[cube]
fn decode_nibbles(
    w: &[u32],
    qs: u32,
    d: f32,
    t0: u32,
    t1: u32,
    t2: u32,
    t3: u32,
    out: &mut Array<f32>,
) {
    #[unroll]
    for j in 0..4u32 {
        let q = u32_at(w, qs + 4 * j);
        #[unroll]
        for k in 0..4u32 {
            let b = (q >> (8 * k)) & 0xFF;
            out[(4 * j + k) as usize] = lut16(b & 0x0F, t0, t1, t2, t3) * d;
            out[(4 * j + k + 16) as usize] = lut16(b >> 4, t0, t1, t2, t3) * d;
        }
    }
}

/// IQ4_NL block `c` of the row at byte `rb` into `out[0..32]`.
#[cube]
pub fn decode_iq4_nl(w: &[u32], rb: u32, c: u32, out: &mut Array<f32>) {
    let base = rb + c * 18;
    let d = f16_to_f32(u16_at(w, base));
    decode_nibbles(
        w,
        base + 2,
        d,
        0xBFAD_9881u32,
        0xF6EA_DDCFu32,
        0x2619_0D01u32,
        0x7159_4535u32,
        out,
    );
}

/// MXFP4 block `c` of the row at byte `rb` into `out[0..32]`.
#[cube]
pub fn decode_mxfp4(w: &[u32], rb: u32, c: u32, out: &mut Array<f32>) {
    let base = rb + c * 17;
    let e = byte_at(w, base);
    // half the E8M0 scale, 2^(e - 128), as ggml builds it (e < 2: f32 subnormals)
    let bits = select(
        e < 2,
        0x0020_0000u32 << e,
        (e - select(e < 2, 0u32, 1u32)) << 23,
    );
    let d = f32::reinterpret(bits);
    decode_nibbles(
        w,
        base + 1,
        d,
        0x0302_0100u32,
        0x0C08_0604u32,
        0xFDFE_FF00u32,
        0xF4F8_FAFCu32,
        out,
    );
}

/// IQ4_XS chunk `c` (sub-block `c % 8` of super-block `c / 8`) of the row at byte `rb`.
#[cube]
pub fn decode_iq4_xs(w: &[u32], rb: u32, c: u32, out: &mut Array<f32>) {
    let base = rb + (c >> 3) * 136;
    let ib = c & 7;
    let d = f16_to_f32(u16_at(w, base));
    let scales_h = u16_at(w, base + 2);
    let low = (byte_at(w, base + 4 + (ib >> 1)) >> ((ib & 1) << 2)) & 0x0F;
    let high = (scales_h >> (2 * ib)) & 3;
    let ls = low | (high << 4);
    let dl = d * (f32::cast_from(ls) - 32.0);
    decode_nibbles(
        w,
        base + 8 + 16 * ib,
        dl,
        0xBFAD_9881u32,
        0xF6EA_DDCFu32,
        0x2619_0D01u32,
        0x7159_4535u32,
        out,
    );
}

/// TQ2_0 chunk `c` of the row at byte `rb`: elements `32s .. 32s + 32` (`s = c % 8`) of
/// super-block `c / 8`, from bits `2l` (`l = s % 4`) of bytes `32j ..` (`j = s / 4`).
#[cube]
pub fn decode_tq2_0(w: &[u32], rb: u32, c: u32, out: &mut Array<f32>) {
    let base = rb + (c >> 3) * 66;
    let s = c & 7;
    let d = f16_to_f32(u16_at(w, base + 64));
    let qs = base + 32 * (s >> 2);
    let shift = 2 * (s & 3);
    #[unroll]
    for j in 0..8u32 {
        let q = u32_at(w, qs + 4 * j);
        #[unroll]
        for k in 0..4u32 {
            let v = (q >> (8 * k + shift)) & 3;
            out[(4 * j + k) as usize] = (f32::cast_from(v) - 1.0) * d;
        }
    }
}

/// Base-3 digit `n` of byte `b`, minus 1, as f32 (ggml's `((uint8_t)(b · 3^n) · 3) >> 8`).
#[cube]
fn trit(b: u32, n: u32) -> f32 {
    let pow3 = select(
        n < 2,
        select(n == 0, 1u32, 3u32),
        select(n == 2, 9u32, select(n == 3, 27u32, 81u32)),
    );
    let q = (b * pow3) & 0xFF;
    f32::cast_from((q * 3) >> 8) - 1.0
}

/// TQ1_0 chunk `c` of the row at byte `rb` (see the module documentation for where each element's
/// digit lives).
#[cube]
pub fn decode_tq1_0(w: &[u32], rb: u32, c: u32, out: &mut Array<f32>) {
    let base = rb + (c >> 3) * 54;
    let s = c & 7;
    let d = f16_to_f32(u16_at(w, base + 52));
    if s < 5 {
        // elements 32s + m: digit s of qs[m]
        #[unroll]
        for m in 0..32u32 {
            out[m as usize] = trit(byte_at(w, base + m), s) * d;
        }
    } else if s < 7 {
        // elements 160 + 16n + m, n = 2(s - 5) and the next: digits n, n + 1 of qs[32 + m]
        let n = 2 * (s - 5);
        #[unroll]
        for m in 0..16u32 {
            let b = byte_at(w, base + 32 + m);
            out[m as usize] = trit(b, n) * d;
            out[(m + 16) as usize] = trit(b, n + 1) * d;
        }
    } else {
        // elements 224 + m: digit 4 of qs[32 + m]; 240 + 4n + j: digit n of qh[j]
        #[unroll]
        for m in 0..16u32 {
            out[m as usize] = trit(byte_at(w, base + 32 + m), 4u32) * d;
        }
        #[unroll]
        for k in 0..16u32 {
            out[(k + 16) as usize] = trit(byte_at(w, base + 48 + (k & 3)), k >> 2) * d;
        }
    }
}

#[cfg(test)]
mod tests {
    use gguf_importer::quants::iquant_tables::{KVALUES_IQ4NL, KVALUES_MXFP4};

    use super::*;

    /// The word-packed tables are the importer's (gguf-py's) tables.
    #[test]
    fn packed_tables_are_the_kvalues() {
        let unpack = |w: [u32; 4]| -> Vec<i8> {
            w.iter()
                .flat_map(|w| w.to_le_bytes())
                .map(|b| b as i8)
                .collect()
        };
        assert_eq!(unpack(KVALUES_IQ4NL_WORDS), KVALUES_IQ4NL.to_vec());
        assert_eq!(unpack(KVALUES_MXFP4_WORDS), KVALUES_MXFP4.to_vec());
    }
}
