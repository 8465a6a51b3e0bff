//! The K-quants (Q2_K .. Q6_K) in the order of ggml's tiled K-quant matmul
//! (ggml/src/ggml-cpu/tiled/, on by default; `GGML_CPU_TILED_MM=0` turns it off there), which
//! llama.cpp's CPU backend takes for a product with 8 or more activation rows when the weights
//! are not repacked (on x86: Q3_K, Q5_K and Q6_K always, Q4_K and Q2_K when the row count is
//! not a multiple of 8; see [`applies`]).
//!
//! Per output element, super-block by super-block in order, with the integer sums of the
//! super-block (exact; `sc`, `mn`, `off` as in kquants.rs's module documentation)
//!
//! ```text
//! s1 = Σ_g sc[g]·(Σ_{e∈g} q·qx - off·bsum[g])        s2 = Σ_g mn[g]·bsum[g]
//! r  = f32(s1) · d                                    (vmulps)
//! r  = fma(-f32(s2), dmin, r)                         (vfnmadd, formats with mins)
//! acc = fma(r, dx, acc)                               (vfmadd: GCC contracts the kernel's
//!                                                      separate multiply and add, read in the
//!                                                      disassembly of llama-cpp-python 0.3.36's
//!                                                      libggml-cpu.so, AVX-512 VNNI build)
//! ```
//!
//! from `acc = 0`, where `d`, `dmin` are the block's f16 scales as f32 and `dx` the activation
//! block's Q8_K scale.

use gguf_importer::quants::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K};
use gguf_importer::GgmlType;

use super::kquants::KQuant;
use super::quantize_act::{ActQ8K, KActivations};
use super::{check_tile, Isa, Out, TileFn, MAX_TILE};

/// Whether llama.cpp multiplies `m` activation rows with a `ty` matrix of `rows` rows by the
/// tiled kernel: a K-quant, at least 8 activation rows (`ggml_tiled_min_batch`), weights not
/// repacked (`follows_repack` says which are).
pub(super) fn applies(ty: GgmlType, m: usize, follows_repack: bool) -> bool {
    use GgmlType::*;
    matches!(ty, Q2_K | Q3_K | Q4_K | Q5_K | Q6_K) && m >= 8 && !follows_repack
}

/// The super-block `b`'s contribution in the tiled order, added to `acc`.
#[inline(always)]
fn block_step<W: KQuant, A: KActivations>(
    q: &[u8; 256],
    s: &super::kquants::KScales,
    (d, dmin): (f32, f32),
    x: &A,
    acc: f32,
) -> f32 {
    let (mut s1, mut s2) = (0i32, 0i32);
    for g in 0..16 {
        let dot: i32 = (16 * g..16 * g + 16)
            .map(|e| q[e] as i32 * x.q(e) as i32)
            .sum();
        let bsum = x.bsum(g) as i32;
        s1 += s.sc[g] as i32 * (dot - W::OFFSET as i32 * bsum);
        s2 += s.mn[g] as i32 * bsum;
    }
    let mut r = s1 as f32 * d;
    if W::HAS_MINS {
        r = (-(s2 as f32)).mul_add(dmin, r);
    }
    r.mul_add(x.d(), acc)
}

/// The portable kernel (see [`TileFn`]).
fn tile_portable<W: KQuant, A: KActivations>(w: &[u8], row_bytes: usize, xs: &[&[A]], out: Out) {
    check_tile(w, row_bytes, size_of::<W>(), 1, xs, &out);
    let mut q = [0u8; 256];
    for (r, row) in w.chunks_exact(row_bytes).enumerate() {
        let blocks: &[W] = bytemuck::cast_slice(row);
        let mut acc = [0f32; MAX_TILE];
        for (b, block) in blocks.iter().enumerate() {
            let s = block.scales();
            let (d, dmin) = block.supers();
            let supers = (d.to_f32(), dmin.to_f32());
            block.unpack(&mut q);
            for (acc, x) in acc.iter_mut().zip(xs) {
                *acc = block_step::<W, A>(&q, &s, supers, &x[b], *acc);
            }
        }
        for (i, acc) in acc.iter().take(xs.len()).enumerate() {
            out.set(r, i, *acc);
        }
    }
}

/// The kernel of the K-quant `ty` in the tiled order; `None` for other types.
pub(super) fn tile_fn(ty: GgmlType, isa: Isa) -> Option<TileFn<ActQ8K>> {
    let _ = isa;
    Some(match ty {
        GgmlType::Q2_K => tile_portable::<BlockQ2K, ActQ8K>,
        GgmlType::Q3_K => tile_portable::<BlockQ3K, ActQ8K>,
        GgmlType::Q4_K => tile_portable::<BlockQ4K, ActQ8K>,
        GgmlType::Q5_K => tile_portable::<BlockQ5K, ActQ8K>,
        GgmlType::Q6_K => tile_portable::<BlockQ6K, ActQ8K>,
        _ => return None,
    })
}
