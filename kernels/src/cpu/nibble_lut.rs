//! The 32-element formats whose 4-bit codes index a table of values: Q4_0 (`q - 8`), IQ4_NL
//! (`kvalues_iq4nl`) and MXFP4 (`kvalues_mxfp4`, twice the FP4 E2M1 values). Each block is 16
//! bytes of nibbles (element `j` in the low nibble of byte `j`, element `j + 16` in the high one)
//! and one scale: an f16 `d` (Q4_0, IQ4_NL) or an E8M0 exponent read as half its power of two
//! (MXFP4, ggml's `GGML_E8M0_TO_FP32_HALF`, which the doubled table makes up for).
//!
//! llama.cpp's x86 build multiplies IQ4_NL and MXFP4 matrices whose row count is a multiple of 8
//! with its repacked kernels, exactly as Q4_0 (`repacked.rs`, the same template with the table
//! swapped); the others with `ggml_vec_dot_iq4_nl_q8_0` / `ggml_vec_dot_mxfp4_q8_0`, whose float
//! order (AVX2, read in llama-cpp-python 0.3.36's `ggml-cpu/arch/x86/quants.c` and, for which
//! operations are fused, its `libggml-cpu.so`'s disassembly) is, per output element:
//!
//! ```text
//! acc1[0..8] = acc2[0..8] = 0                                       (f32)
//! for each pair of blocks (b, b + 1):
//!     P_b[i] = Σ_{e = 4i .. 4i+4} v[e] · aq[e]                      (exact i32)
//!     acc1[i] = fma(wd_b · ad_b, P_b[i], acc1[i]);  acc2[i] = fma(wd_b+1 · ad_b+1, P_b+1[i], acc2[i])
//! y = hsum8(acc1 + acc2)                                            (lane by lane, then ggml's hsum)
//! if the block count is odd: y = y + (wd · ad) · f32(Σ_e v[e] · aq[e])   (two roundings)
//! ```
//!
//! For several activation rows of an IQ4_NL matrix it does not repack, llama.cpp takes
//! llamafile's tinyBLAS (`tinyBLAS_Q0_AVX`), an order of its own that this crate does not
//! reproduce: such prefill is `vec_dot`'s order here (llama.cpp repacks every matrix whose row
//! count is a multiple of 8, which is all of them in the usual models).

use gguf_importer::quants::iquant_tables::{KVALUES_IQ4NL, KVALUES_MXFP4};
use gguf_importer::quants::{e8m0_to_f32_half, BlockIq4Nl, BlockMxfp4, BlockQ4_0};
use gguf_importer::GgmlType;

use super::legacy::hsum8;
use super::quantize_act::ActQ8Block;
use super::{check_tile, Isa, Out, TileFn, MAX_TILE};

/// A block of 32 table-indexed nibbles and one scale.
pub(super) trait NibbleLut: bytemuck::Pod {
    /// The value of each code.
    const LUT: [i8; 16];
    /// The 16 bytes of codes.
    fn codes(&self) -> &[u8; 16];
    /// The scale as f32.
    fn scale(&self) -> f32;
    /// The values of the 32 elements, in element order.
    #[inline(always)]
    fn values(&self) -> [i8; 32] {
        let q = self.codes();
        std::array::from_fn(|e| {
            let code = if e < 16 { q[e] & 0x0F } else { q[e - 16] >> 4 };
            Self::LUT[code as usize]
        })
    }
}

impl NibbleLut for BlockQ4_0 {
    const LUT: [i8; 16] = [-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7];
    #[inline(always)]
    fn codes(&self) -> &[u8; 16] {
        &self.qs
    }
    #[inline(always)]
    fn scale(&self) -> f32 {
        self.d.to_f32()
    }
}

impl NibbleLut for BlockIq4Nl {
    const LUT: [i8; 16] = KVALUES_IQ4NL;
    #[inline(always)]
    fn codes(&self) -> &[u8; 16] {
        &self.qs
    }
    #[inline(always)]
    fn scale(&self) -> f32 {
        self.d.to_f32()
    }
}

impl NibbleLut for BlockMxfp4 {
    const LUT: [i8; 16] = KVALUES_MXFP4;
    #[inline(always)]
    fn codes(&self) -> &[u8; 16] {
        &self.qs
    }
    #[inline(always)]
    fn scale(&self) -> f32 {
        e8m0_to_f32_half(self.e)
    }
}

/// The four-element partial sums `P[i]` of a block against an activation block.
#[inline(always)]
fn parts(v: &[i8; 32], x: &ActQ8Block) -> [i32; 8] {
    std::array::from_fn(|i| {
        (4 * i..4 * i + 4)
            .map(|e| v[e] as i32 * x.qs[e] as i32)
            .sum()
    })
}

/// The `vec_dot`-order kernel (see [`TileFn`] and the module documentation): the definition.
fn tile_vec_dot_scalar<W: NibbleLut>(w: &[u8], row_bytes: usize, xs: &[&[ActQ8Block]], out: Out) {
    check_tile(w, row_bytes, size_of::<W>(), 1, xs, &out);
    for (r, row) in w.chunks_exact(row_bytes).enumerate() {
        let blocks: &[W] = bytemuck::cast_slice(row);
        let nb = blocks.len();
        let mut acc = [[[0f32; 8]; 2]; MAX_TILE];
        for (b, block) in blocks[..nb - nb % 2].iter().enumerate() {
            let v = block.values();
            let wd = block.scale();
            for (acc, x) in acc.iter_mut().zip(xs) {
                let x = &x[b];
                let dd = x.d * wd;
                for (acc, p) in acc[b % 2].iter_mut().zip(parts(&v, x)) {
                    *acc = dd.mul_add(p as f32, *acc);
                }
            }
        }
        for (i, (acc, x)) in acc.iter().zip(xs).enumerate() {
            let sum: [f32; 8] = std::array::from_fn(|l| acc[0][l] + acc[1][l]);
            let mut y = hsum8(&sum);
            if nb % 2 == 1 {
                let (block, x) = (&blocks[nb - 1], &x[nb - 1]);
                let sumi: i32 = parts(&block.values(), x).iter().sum();
                y += x.d * block.scale() * sumi as f32;
            }
            out.set(r, i, y);
        }
    }
}

/// The `vec_dot`-order kernel of IQ4_NL or MXFP4 on `isa`; `None` for other types.
pub(super) fn tile_fn_vec_dot(ty: GgmlType, isa: Isa) -> Option<TileFn<ActQ8Block>> {
    let _ = isa;
    Some(match ty {
        GgmlType::IQ4_NL => tile_vec_dot_scalar::<BlockIq4Nl>,
        GgmlType::MXFP4 => tile_vec_dot_scalar::<BlockMxfp4>,
        _ => return None,
    })
}
