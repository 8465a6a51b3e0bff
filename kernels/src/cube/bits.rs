//! Reading GGUF bytes out of the packed `u32` words, and the f16/bf16 scalars they hold.
//!
//! The weights are the file's bytes, little-endian, four to a word (see [`crate::packed`]):
//!
//! ```text
//! word i = | byte 4i+3 | byte 4i+2 | byte 4i+1 | byte 4i |      (bit 31 .. bit 0)
//! ```
//!
//! Blocks of 18, 22, 34, 84, 110 or 210 bytes start at any byte of a word, so every read takes a
//! byte offset. Every block size and every f16 field offset in a block is even, so a 16-bit read
//! never straddles two words; a 32-bit read at an odd-of-4 offset joins two words.

use cubecl::prelude::*;

/// Byte `off` (0..=255).
#[cube]
pub fn byte_at(w: &[u32], off: u32) -> u32 {
    (w[(off >> 2) as usize] >> ((off & 3) << 3)) & 0xFF
}

/// The little-endian u16 at the even byte offset `off`.
#[cube]
pub fn u16_at(w: &[u32], off: u32) -> u32 {
    (w[(off >> 2) as usize] >> ((off & 3) << 3)) & 0xFFFF
}

/// The little-endian u32 at byte offset `off` (any alignment): bytes `off..off + 4`.
///
/// Unaligned, it joins the high bytes of word `i` with the low bytes of word `i + 1`; word
/// `i + 1` holds bytes of the same block then, so it is inside the buffer.
#[cube]
pub fn u32_at(w: &[u32], off: u32) -> u32 {
    let i = (off >> 2) as usize;
    let s = (off & 3) << 3;
    let mut v = w[i] >> s;
    if s != 0 {
        v |= w[i + 1] << (32 - s);
    }
    v
}

/// IEEE half-precision bits (low 16 bits of `h`) to f32, subnormals, infinities and NaN included
/// (what ggml's `GGML_FP16_TO_FP32` computes; done with integer ops since WGSL has no u16/f16
/// without extensions):
///
/// ```text
/// f16: | s | e (5) | m (10) |   normal: (-1)^s · 2^(e-15) · (1 + m/1024)
///                               e = 0:  (-1)^s · 2^-14 · m/1024 = (-1)^s · m · 2^-24
/// f32: | s | e + 112 (8) | m << 13 (23) |
/// ```
#[cube]
pub fn f16_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000) << 16;
    let exp = (h >> 10) & 0x1F;
    let mant = h & 0x3FF;
    if exp == 0 {
        // Zero or subnormal: exact in f32 (m < 2^10 times a power of two).
        let mag = f32::cast_from(mant) * 5.960_464_5e-8;
        f32::reinterpret(u32::reinterpret(mag) | sign)
    } else if exp == 31 {
        f32::reinterpret(sign | 0x7F80_0000 | (mant << 13))
    } else {
        f32::reinterpret(sign | ((exp + 112) << 23) | (mant << 13))
    }
}

/// bfloat16 bits (low 16 bits of `h`) to f32: the high half of an f32.
#[cube]
pub fn bf16_to_f32(h: u32) -> f32 {
    f32::reinterpret(h << 16)
}

/// The signed value of byte `b` (0..=255) read as an i8, as f32.
#[cube]
pub fn i8_to_f32(b: u32) -> f32 {
    f32::cast_from(b) - select(b > 127, 256.0f32, 0.0f32)
}
