//! The i-quants, the ternary formats and MXFP4 on the GPU, mirroring gguf-py's (and the
//! importer's) dequantizers, 32 elements (a chunk) at a time: IQ4_NL, MXFP4, IQ4_XS, TQ1_0 and
//! TQ2_0 with their small tables as constants, the grid formats (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS,
//! IQ2_S, IQ3_XXS, IQ3_S) reading their grid rows from the table that follows the block words
//! in the weight buffer ([`crate::packed::table_words`]), the sign bytes of the 7-bit sign
//! indices computed (`ksigns_iq2xs[i]` is `i` with its parity as the eighth bit).
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
        comptime!(KVALUES_IQ4NL_WORDS[0]),
        comptime!(KVALUES_IQ4NL_WORDS[1]),
        comptime!(KVALUES_IQ4NL_WORDS[2]),
        comptime!(KVALUES_IQ4NL_WORDS[3]),
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
        comptime!(KVALUES_MXFP4_WORDS[0]),
        comptime!(KVALUES_MXFP4_WORDS[1]),
        comptime!(KVALUES_MXFP4_WORDS[2]),
        comptime!(KVALUES_MXFP4_WORDS[3]),
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
        comptime!(KVALUES_IQ4NL_WORDS[0]),
        comptime!(KVALUES_IQ4NL_WORDS[1]),
        comptime!(KVALUES_IQ4NL_WORDS[2]),
        comptime!(KVALUES_IQ4NL_WORDS[3]),
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

// ---- the grid i-quants: grid rows read from the table after the block words ----------------

/// Words of each format's grid table ([`crate::packed::table_words`]).
pub const TABLE_IQ2XXS: u32 = 512;
pub const TABLE_IQ2XS: u32 = 1024;
pub const TABLE_IQ2S: u32 = 2048;
pub const TABLE_IQ3XXS: u32 = 256;
pub const TABLE_IQ3S: u32 = 512;
pub const TABLE_IQ1S: u32 = 4096;

/// Where the table of `table_len` words starts: at the end of the buffer.
#[cube]
fn table_base(w: &[u32], table_len: u32) -> u32 {
    w.len() as u32 - table_len
}

/// Byte `j` (0..8) of the eight-byte grid row `idx` of a table of two words per row.
#[cube]
fn grid8_byte(w: &[u32], tb: u32, idx: u32, j: u32) -> u32 {
    (w[(tb + 2 * idx + (j >> 2)) as usize] >> ((j & 3) << 3)) & 0xFF
}

/// Byte `j` (0..4) of the four-byte grid row `idx` of a table of one word per row.
#[cube]
fn grid4_byte(w: &[u32], tb: u32, idx: u32, j: u32) -> u32 {
    (w[(tb + idx) as usize] >> (j << 3)) & 0xFF
}

/// ggml's `ksigns_iq2xs[i]`: the seven sign bits `i` and their parity as the eighth.
#[cube]
fn ksign(i: u32) -> u32 {
    i | ((i.count_ones() & 1) << 7)
}

/// -1 where bit `j` of `signs` is set, else 1.
#[cube]
fn sign_of(signs: u32, j: u32) -> f32 {
    select(((signs >> j) & 1) == 1, -1.0f32, 1.0f32)
}

/// Eight elements `db · grid[j] · sign(j)` of grid row `idx` (two words per row) into `out[o..]`.
#[cube]
fn signed_row8(w: &[u32], tb: u32, idx: u32, signs: u32, db: f32, o: u32, out: &mut Array<f32>) {
    #[unroll]
    for j in 0..8u32 {
        let g = f32::cast_from(grid8_byte(w, tb, idx, j));
        out[(o + j) as usize] = db * g * sign_of(signs, j);
    }
}

/// Two four-byte grid rows (one word each) under one sign byte into `out[o..o + 8]`.
#[cube]
fn signed_rows4(
    w: &[u32],
    tb: u32,
    idx1: u32,
    idx2: u32,
    signs: u32,
    db: f32,
    o: u32,
    out: &mut Array<f32>,
) {
    #[unroll]
    for j in 0..4u32 {
        let g1 = f32::cast_from(grid4_byte(w, tb, idx1, j));
        let g2 = f32::cast_from(grid4_byte(w, tb, idx2, j));
        out[(o + j) as usize] = db * g1 * sign_of(signs, j);
        out[(o + j + 4) as usize] = db * g2 * sign_of(signs, j + 4);
    }
}

/// IQ2_XXS chunk `c` (66-byte super-blocks: d, then per 32 four grid index bytes and a word of
/// four 7-bit sign indices and the 4-bit scale).
#[cube]
pub fn decode_iq2_xxs(w: &[u32], rb: u32, c: u32, out: &mut Array<f32>) {
    let base = rb + (c >> 3) * 66;
    let ib = c & 7;
    let tb = table_base(w, TABLE_IQ2XXS);
    let d = f16_to_f32(u16_at(w, base));
    let aux0 = u32_at(w, base + 2 + 8 * ib);
    let aux1 = u32_at(w, base + 6 + 8 * ib);
    let db = d * (0.5f32 + f32::cast_from(aux1 >> 28)) * 0.25f32;
    #[unroll]
    for l in 0..4u32 {
        let idx = (aux0 >> (8 * l)) & 0xFF;
        let signs = ksign((aux1 >> (7 * l)) & 127);
        signed_row8(w, tb, idx, signs, db, 8 * l, out);
    }
}

/// IQ2_XS chunk `c` (74-byte super-blocks: d, 32 u16 of a 9-bit grid index and a 7-bit sign
/// index, 8 scale bytes of two 4-bit scales).
#[cube]
pub fn decode_iq2_xs(w: &[u32], rb: u32, c: u32, out: &mut Array<f32>) {
    let base = rb + (c >> 3) * 74;
    let ib = c & 7;
    let tb = table_base(w, TABLE_IQ2XS);
    let d = f16_to_f32(u16_at(w, base));
    let sc = byte_at(w, base + 66 + ib);
    let db0 = d * (0.5f32 + f32::cast_from(sc & 0x0F)) * 0.25f32;
    let db1 = d * (0.5f32 + f32::cast_from(sc >> 4)) * 0.25f32;
    #[unroll]
    for l in 0..4u32 {
        let q = u16_at(w, base + 2 + 8 * ib + 2 * l);
        let db = select(l < 2, db0, db1);
        signed_row8(w, tb, q & 511, ksign(q >> 9), db, 8 * l, out);
    }
}

/// IQ2_S chunk `c` (82-byte super-blocks: d, qs[32], signs[32], qh[8], scales[8]).
#[cube]
pub fn decode_iq2_s(w: &[u32], rb: u32, c: u32, out: &mut Array<f32>) {
    let base = rb + (c >> 3) * 82;
    let ib = c & 7;
    let tb = table_base(w, TABLE_IQ2S);
    let d = f16_to_f32(u16_at(w, base));
    let sc = byte_at(w, base + 74 + ib);
    let qh = byte_at(w, base + 66 + ib);
    let db0 = d * (0.5f32 + f32::cast_from(sc & 0x0F)) * 0.25f32;
    let db1 = d * (0.5f32 + f32::cast_from(sc >> 4)) * 0.25f32;
    #[unroll]
    for l in 0..4u32 {
        let idx = byte_at(w, base + 2 + 4 * ib + l) | (((qh >> (2 * l)) & 3) << 8);
        let signs = byte_at(w, base + 34 + 4 * ib + l);
        let db = select(l < 2, db0, db1);
        signed_row8(w, tb, idx, signs, db, 8 * l, out);
    }
}

/// IQ3_XXS chunk `c` (98-byte super-blocks: d, qs[64] of 4-element grid indices, 32 bytes of a
/// word per 32: four 7-bit sign indices and the 4-bit scale).
#[cube]
pub fn decode_iq3_xxs(w: &[u32], rb: u32, c: u32, out: &mut Array<f32>) {
    let base = rb + (c >> 3) * 98;
    let ib = c & 7;
    let tb = table_base(w, TABLE_IQ3XXS);
    let d = f16_to_f32(u16_at(w, base));
    let aux = u32_at(w, base + 66 + 4 * ib);
    let db = d * (0.5f32 + f32::cast_from(aux >> 28)) * 0.5f32;
    #[unroll]
    for l in 0..4u32 {
        let signs = ksign((aux >> (7 * l)) & 127);
        let i1 = byte_at(w, base + 2 + 8 * ib + 2 * l);
        let i2 = byte_at(w, base + 3 + 8 * ib + 2 * l);
        signed_rows4(w, tb, i1, i2, signs, db, 8 * l, out);
    }
}

/// IQ3_S chunk `c` (110-byte super-blocks: d, qs[64], qh[8], signs[32], scales[4]).
#[cube]
pub fn decode_iq3_s(w: &[u32], rb: u32, c: u32, out: &mut Array<f32>) {
    let base = rb + (c >> 3) * 110;
    let ib = c & 7;
    let tb = table_base(w, TABLE_IQ3S);
    let d = f16_to_f32(u16_at(w, base));
    let s = (byte_at(w, base + 106 + (ib >> 1)) >> ((ib & 1) << 2)) & 0x0F;
    let db = d * f32::cast_from(1 + 2 * s);
    let qh = byte_at(w, base + 66 + ib);
    #[unroll]
    for l in 0..4u32 {
        let i1 = byte_at(w, base + 2 + 8 * ib + 2 * l) | (((qh >> (2 * l)) & 1) << 8);
        let i2 = byte_at(w, base + 3 + 8 * ib + 2 * l) | (((qh >> (2 * l + 1)) & 1) << 8);
        let signs = byte_at(w, base + 74 + 4 * ib + l);
        signed_rows4(w, tb, i1, i2, signs, db, 8 * l, out);
    }
}

/// Eight elements `dl · (grid[j] + delta)` of IQ1 grid row `idx` (signed bytes -1, 0, 1).
#[cube]
fn iq1_row(w: &[u32], tb: u32, idx: u32, dl: f32, delta: f32, o: u32, out: &mut Array<f32>) {
    #[unroll]
    for j in 0..8u32 {
        let g = i8_to_f32(grid8_byte(w, tb, idx, j));
        out[(o + j) as usize] = dl * (g + delta);
    }
}

/// IQ1_S chunk `c` (50-byte super-blocks: d, qs[32], 8 u16 of three high index bits per 8, the
/// 3-bit scale and the delta's sign).
#[cube]
pub fn decode_iq1_s(w: &[u32], rb: u32, c: u32, out: &mut Array<f32>) {
    let base = rb + (c >> 3) * 50;
    let ib = c & 7;
    let tb = table_base(w, TABLE_IQ1S);
    let d = f16_to_f32(u16_at(w, base));
    let qh = u16_at(w, base + 34 + 2 * ib);
    let dl = d * f32::cast_from(2 * ((qh >> 12) & 7) + 1);
    let delta = select((qh & 0x8000) != 0, -0.125f32, 0.125f32);
    #[unroll]
    for l in 0..4u32 {
        let idx = byte_at(w, base + 2 + 4 * ib + l) | (((qh >> (3 * l)) & 7) << 8);
        iq1_row(w, tb, idx, dl, delta, 8 * l, out);
    }
}

/// IQ1_M chunk `c` (56-byte super-blocks: qs[32], qh[16] of a nibble per 8 (three high index
/// bits, the delta's sign), 4 u16 of 3-bit scales per 16 whose top nibbles hold the f16 scale).
#[cube]
pub fn decode_iq1_m(w: &[u32], rb: u32, c: u32, out: &mut Array<f32>) {
    let base = rb + (c >> 3) * 56;
    let ib = c & 7;
    let tb = table_base(w, TABLE_IQ1S);
    let s0 = u16_at(w, base + 48);
    let s1 = u16_at(w, base + 50);
    let s2 = u16_at(w, base + 52);
    let s3 = u16_at(w, base + 54);
    let bits = (s0 >> 12) | ((s1 >> 8) & 0x00F0) | ((s2 >> 4) & 0x0F00) | (s3 & 0xF000);
    let d = f16_to_f32(bits);
    let sc = u16_at(w, base + 48 + 2 * (ib >> 1)) >> (6 * (ib & 1));
    let dl0 = d * f32::cast_from(2 * (sc & 7) + 1);
    let dl1 = d * f32::cast_from(2 * ((sc >> 3) & 7) + 1);
    #[unroll]
    for l in 0..4u32 {
        let nibble = (byte_at(w, base + 32 + 2 * ib + (l >> 1)) >> (4 * (l & 1))) & 0x0F;
        let delta = select((nibble & 8) != 0, -0.125f32, 0.125f32);
        let idx = byte_at(w, base + 4 * ib + l) | ((nibble & 7) << 8);
        let dl = select(l < 2, dl0, dl1);
        iq1_row(w, tb, idx, dl, delta, 8 * l, out);
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
