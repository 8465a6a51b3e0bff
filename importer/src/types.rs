//! The ggml tensor types: one table from type id to name, block size and bytes per block
//! (gguf-py's `GGML_QUANT_SIZES`, ggml's `type_traits`).
//!
//! Every type a GGUF file may name is listed, so that a file with, say, Q8_K or I8 tensors still
//! opens and lists; only dequantizing such a tensor fails ([`GgmlType::is_supported`]).

use std::fmt;

/// A ggml tensor type.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
}

/// Elements per super-block of the K-quants (`QK_K`).
pub const QK_K: usize = 256;

struct TypeInfo {
    ty: GgmlType,
    id: u32,
    name: &'static str,
    block_size: usize,
    type_size: usize,
    supported: bool,
}

macro_rules! type_table {
    ($( $ty:ident = $id:literal, $block:expr, $size:expr, $supported:literal; )*) => {
        const TABLE: &[TypeInfo] = &[
            $( TypeInfo { ty: GgmlType::$ty, id: $id, name: stringify!($ty), block_size: $block, type_size: $size, supported: $supported }, )*
        ];
    };
}

// type = id, elements per block, bytes per block, dequantized by this crate.
// Ids 4, 5 (Q4_2, Q4_3), 31..=33 and 36..=38 (the removed repacked types) are not defined anymore.
type_table! {
    F32 = 0, 1, 4, true;
    F16 = 1, 1, 2, true;
    Q4_0 = 2, 32, 18, true;
    Q4_1 = 3, 32, 20, true;
    Q5_0 = 6, 32, 22, true;
    Q5_1 = 7, 32, 24, true;
    Q8_0 = 8, 32, 34, true;
    Q8_1 = 9, 32, 36, false;
    Q2_K = 10, QK_K, 84, true;
    Q3_K = 11, QK_K, 110, true;
    Q4_K = 12, QK_K, 144, true;
    Q5_K = 13, QK_K, 176, true;
    Q6_K = 14, QK_K, 210, true;
    Q8_K = 15, QK_K, 292, false;
    IQ2_XXS = 16, QK_K, 66, true;
    IQ2_XS = 17, QK_K, 74, true;
    IQ3_XXS = 18, QK_K, 98, true;
    IQ1_S = 19, QK_K, 50, true;
    IQ4_NL = 20, 32, 18, true;
    IQ3_S = 21, QK_K, 110, true;
    IQ2_S = 22, QK_K, 82, true;
    IQ4_XS = 23, QK_K, 136, true;
    I8 = 24, 1, 1, false;
    I16 = 25, 1, 2, false;
    I32 = 26, 1, 4, false;
    I64 = 27, 1, 8, false;
    F64 = 28, 1, 8, false;
    IQ1_M = 29, QK_K, 56, true;
    BF16 = 30, 1, 2, true;
    TQ1_0 = 34, QK_K, 54, true;
    TQ2_0 = 35, QK_K, 66, true;
    MXFP4 = 39, 32, 17, true;
}

impl GgmlType {
    fn info(self) -> &'static TypeInfo {
        TABLE
            .iter()
            .find(|t| t.ty == self)
            .expect("every GgmlType variant has a row in TABLE")
    }

    /// The type with this id, or `None` for an id ggml does not define.
    pub fn from_id(id: u32) -> Option<Self> {
        TABLE.iter().find(|t| t.id == id).map(|t| t.ty)
    }

    /// The type with this name (as printed by gguf-dump: `Q4_K`, `F16` ...).
    pub fn from_name(name: &str) -> Option<Self> {
        TABLE
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
            .map(|t| t.ty)
    }

    /// The id stored in GGUF tensor infos.
    pub fn id(self) -> u32 {
        self.info().id
    }

    /// The name, as in ggml.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// Bits per weight of the format (block bytes · 8 / block elements).
    pub fn bits_per_weight(self) -> f64 {
        self.type_size() as f64 * 8.0 / self.block_size() as f64
    }

    /// What the format is, in a line (what `inspect` prints beside the tensor table).
    pub fn description(self) -> &'static str {
        use GgmlType::*;
        match self {
            F32 => "IEEE single precision",
            F16 => "IEEE half precision",
            BF16 => "bfloat16: the high half of an f32",
            F64 => "IEEE double precision (not dequantized)",
            I8 | I16 | I32 | I64 => "plain integers (not dequantized)",
            Q4_0 => "blocks of 32: 4-bit q, f16 scale d; w = d·(q - 8)",
            Q4_1 => "blocks of 32: 4-bit q, f16 scale d and min m; w = d·q + m",
            Q5_0 => "blocks of 32: 5-bit q, f16 scale d; w = d·(q - 16)",
            Q5_1 => "blocks of 32: 5-bit q, f16 scale d and min m; w = d·q + m",
            Q8_0 => "blocks of 32: 8-bit q, f16 scale d; w = d·q",
            Q8_1 => "blocks of 32: 8-bit q, f32 scale and sum (ggml's dot-product intermediate)",
            Q8_K => "super-blocks of 256: 8-bit q, f32 scale, group sums (ggml's intermediate)",
            Q2_K => "super-blocks of 256: 2-bit q, 4-bit scale and min per 16, f16 d and dmin",
            Q3_K => "super-blocks of 256: 3-bit q, 6-bit scale per 16, f16 d",
            Q4_K => "super-blocks of 256: 4-bit q, 6-bit scale and min per 32, f16 d and dmin",
            Q5_K => "super-blocks of 256: 5-bit q, 6-bit scale and min per 32, f16 d and dmin",
            Q6_K => "super-blocks of 256: 6-bit q, 8-bit scale per 16, f16 d",
            IQ2_XXS => "super-blocks of 256: 8 values per 8-bit index into a 256-entry grid, 7-bit signs, 4-bit scale per 32, f16 d",
            IQ2_XS => "super-blocks of 256: 8 values per 9-bit index into a 512-entry grid, 7-bit signs, 4-bit scale per 16, f16 d",
            IQ2_S => "super-blocks of 256: 8 values per 10-bit index into a 1024-entry grid, sign bits, 4-bit scale per 16, f16 d",
            IQ3_XXS => "super-blocks of 256: 4 values per 8-bit index into a 256-entry grid, 7-bit signs, 4-bit scale per 32, f16 d",
            IQ3_S => "super-blocks of 256: 4 values per 9-bit index into a 512-entry grid, sign bits, 4-bit scale per 32, f16 d",
            IQ1_S => "super-blocks of 256: 8 ternary values per 11-bit index into a 2048-entry grid, ±1/8 delta and 3-bit scale per 32, f16 d",
            IQ1_M => "super-blocks of 256: 8 ternary values per 11-bit index into a 2048-entry grid, ±1/8 delta per 8, 3-bit scale per 16, f16 d spread over the scales",
            IQ4_NL => "blocks of 32: 4-bit index into 16 non-linear levels (kvalues_iq4nl), f16 scale d",
            IQ4_XS => "super-blocks of 256: 4-bit index into 16 non-linear levels, 6-bit scale per 32, f16 d",
            TQ1_0 => "super-blocks of 256: ternary -1/0/1, five per byte in base 3 (four in the last 4 bytes), f16 d",
            TQ2_0 => "super-blocks of 256: ternary -1/0/1 in 2 bits each, f16 d",
            MXFP4 => "blocks of 32: 4-bit FP4 (E2M1) values, E8M0 power-of-two scale (OCP microscaling)",
        }
    }

    /// Elements per block (1 for plain types).
    pub fn block_size(self) -> usize {
        self.info().block_size
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        self.info().type_size
    }

    /// Whether this crate dequantizes the type ([`quants::dequantize`](crate::quants::dequantize)):
    /// every type but Q8_1, Q8_K (ggml's intermediate formats for dot products) and the integer
    /// and F64 types. Whether a type can also be *multiplied* quantized is the kernels' business
    /// (`gguf-kernels` refuses types it has no kernel for with a typed error).
    pub fn is_supported(self) -> bool {
        self.info().supported
    }

    /// Whether the type is a block-quantized format (not a plain float or integer type).
    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }

    /// Bytes that `n_elements` elements take; `None` if not a whole number of blocks, or more
    /// than a u64 holds (a shape read from a corrupt file: 2^62 F32 elements).
    pub fn bytes_for(self, n_elements: u64) -> Option<u64> {
        let bs = self.block_size() as u64;
        if !n_elements.is_multiple_of(bs) {
            return None;
        }
        (n_elements / bs).checked_mul(self.type_size() as u64)
    }

    /// All types, in id order.
    pub fn all() -> impl Iterator<Item = GgmlType> {
        TABLE.iter().map(|t| t.ty)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_unique() {
        for t in GgmlType::all() {
            assert_eq!(GgmlType::from_id(t.id()), Some(t));
            assert_eq!(GgmlType::from_name(t.name()), Some(t));
        }
        for removed in [4, 5, 31, 32, 33, 36, 37, 38, 40, 1000] {
            assert_eq!(GgmlType::from_id(removed), None);
        }
    }
}
