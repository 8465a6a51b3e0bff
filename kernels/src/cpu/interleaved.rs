//! The prefill kernels of Q4_0: dot products with activations quantized to
//! [`ActQ8x32`], whole blocks summed in integers and eight blocks per vector (the portable scalar
//! kernel and the dispatch).
//!
//! Decoding (one activation row) takes ggml's own order (`legacy.rs`), like every 32-element
//! format. Tiles of several rows (prefill) of Q4_0 come here instead: llama.cpp's x86 backend
//! does not use `ggml_vec_dot_*` there either (it goes through its repacked `q4_0_8x8` kernels),
//! so there is no bit-exact result to keep, and this order applies the block scales eight blocks
//! per vector instead of a float multiply-add per block and activation row
//! (`cargo run --release -p gguf-kernels --example cpu_matmul_bench`: on the AVX-512 VNNI machine
//! of BENCHMARKS.md, Q4_0 tiles 1.7x the throughput of ggml's order). Q8_0 had a kernel here
//! too (1.5x); it was dropped because llama.cpp's prefill of Q8_0 (llamafile's tinyBLAS) sums in
//! `ggml_vec_dot_q8_0_q8_0`'s order, which `legacy.rs` then gives bit for bit.
//!
//! Activations come in groups of 8 blocks (see [`ActQ8x32`] for the interleaved layout).
//! Every format reduces to the same integer core. A weight block unpacks to 32 integers `q`
//! and two floats `(a, b)` such that, for an activation block `x ≈ dx · qx` with
//! `s = dx · Σ qx`,
//!
//! ```text
//! Σ w·x = a · dx · Σ q·qx + b · s
//! Q4_0: w = d·(q - 8)   -> a = d, b = -8d        Q4_1: w = d·q + m -> a = d, b = m
//! Q5_0: w = d·(q - 16)  -> a = d, b = -16d       Q5_1: w = d·q + m -> a = d, b = m
//! Q8_0: w = d·q         -> a = d, b = 0
//! ```
//!
//! (ggml's `ggml_vec_dot_q4_0_q8_0` .. `ggml_vec_dot_q8_0_q8_0` do the same per format.) The
//! integer sum `Σ q·qx` is exact in every order, so the kernels differ from one another only in
//! how the f32 terms are added.

use gguf_importer::quants::{Block, BlockQ4_0};
use gguf_importer::GgmlType;

use super::quantize_act::ActQ8x32;
use super::{check_tile, Isa, Out, TileFn, MAX_TILE};

/// A 32-element weight block in the integer form above (the scalar kernel's view; the x86
/// kernels unpack eight blocks at a time, `interleaved_x86.rs`).
pub(super) trait Interleaved: Block {
    /// Writes the block's 32 integers into `q` (element order) and returns `(a, b)`.
    fn unpack(&self, q: &mut [i32; 32]) -> (f32, f32);
}

/// Low nibbles are elements 0..16, high nibbles 16..32 (`dequantize_row_q4_0`).
#[inline(always)]
fn nibbles(qs: &[u8; 16], q: &mut [i32; 32]) {
    for j in 0..16 {
        q[j] = (qs[j] & 0x0F) as i32;
        q[j + 16] = (qs[j] >> 4) as i32;
    }
}

impl Interleaved for BlockQ4_0 {
    #[inline(always)]
    fn unpack(&self, q: &mut [i32; 32]) -> (f32, f32) {
        nibbles(&self.qs, q);
        let d = self.d.to_f32();
        (d, -8.0 * d)
    }
}

/// The scalar kernel (see [`TileFn`]).
fn tile_scalar<W: Interleaved>(w: &[u8], row_bytes: usize, xs: &[&[ActQ8x32]], out: Out) {
    check_tile(w, row_bytes, size_of::<W>(), 8, xs, &out);
    let mut q = [0i32; 32];
    for (r, row) in w.chunks_exact(row_bytes).enumerate() {
        let blocks: &[W] = bytemuck::cast_slice(row);
        let mut acc = [0f32; MAX_TILE];
        for (b, block) in blocks.iter().enumerate() {
            let (a, off) = block.unpack(&mut q);
            let (g, k) = (b / 8, b % 8);
            for (acc, x) in acc.iter_mut().zip(xs) {
                let x = &x[g];
                let dot: i32 = q
                    .iter()
                    .enumerate()
                    .map(|(e, &q)| q * x.q(k, e) as i32)
                    .sum();
                *acc += a * x.d[k] * dot as f32 + off * x.s[k];
            }
        }
        for (i, acc) in acc.iter().take(xs.len()).enumerate() {
            out.set(r, i, *acc);
        }
    }
}

/// The kernel for `ty` on `isa`, `None` where prefill keeps ggml's order (`legacy.rs`): the
/// formats other than Q4_0.
pub(super) fn tile_fn(ty: GgmlType, isa: Isa) -> Option<TileFn<ActQ8x32>> {
    #[cfg(target_arch = "x86_64")]
    if let Some(f) = super::interleaved_x86::tile_fn(ty, isa) {
        return Some(f);
    }
    match (ty, isa) {
        (GgmlType::Q4_0, Isa::Scalar) => Some(tile_scalar::<BlockQ4_0>),
        _ => None,
    }
}
