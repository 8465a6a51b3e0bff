//! Q4_K and Q2_K in the order of llama.cpp's repacked kernels. On x86 llama.cpp moves a Q4_K
//! matrix whose row count is a multiple of 8 (with AVX2), and a Q2_K one (with AVX-512), into its
//! "CPU_REPACK" buffer at load (eight rows' super-blocks interleaved, `block_q4_Kx8` /
//! `block_q2_Kx8`) and multiplies it in `repack.cpp`'s `forward_mul_mat`: of `m` activation rows
//! the first `m - m % 4` go to `ggml_gemm_<fmt>_8x8_q8_K` (four at a time), the other `m % 4` (all
//! of them when `m <= 3`) to `ggml_gemv_<fmt>_8x8_q8_K`. Read in llama-cpp-python 0.3.36's
//! `ggml-cpu/arch/x86/repack.cpp` (its AVX-512 build; the AVX2 paths of the gemm sum the same
//! way), every output element is two chains of multiply-adds in f32, one over the scales and one
//! over the mins, each link an exact integer sum over a chunk of the super-block:
//!
//! ```text
//! acc = accm = 0                                                        (f32)
//! for each super-block b, in order:
//!     for each chunk c of b, in order (C chunks of 256 / C elements):
//!         S    = Σ_{sub-blocks j in c} sc[j] · Σ_{e in j} wq[e] · aq[e]      (exact i32)
//!         M    = Σ_{sub-blocks j in c} mn[j] · Σ_{e in j} aq[e]              (exact i32)
//!         acc  = fma(S, d · ad, acc)        (d · ad, dmin · ad rounded to f32 first)
//!         accm = fma(M, dmin · ad, accm)
//! y = acc - accm
//!
//!                 gemv (decoding, the last m % 4 rows)    gemm (groups of four rows)
//! Q4_K            C = 1                                   C = 4 (two sub-blocks of 32 each)
//! Q2_K            C = 1                                   C = 2 (eight sub-blocks of 16 each)
//! ```
//!
//! with `d`, `dmin` the weight super-block's f16 scales, `sc`, `mn` its sub-block scales and mins
//! (6 bits per sub-block of 32 for Q4_K, 4 bits per sub-block of 16 for Q2_K), `ad`, `aq` the
//! activations quantized per 256 as ggml's `block_q8_K` ([`ActQ8KR`]). The gemm's rows are
//! quantized by `ggml_quantize_mat_q8_K_4x8`, the gemv's by `quantize_row_q8_K`: the same integers
//! and scales, up to a common sign where a block's largest positive and negative values tie (the
//! two pick differently), which the products do not see (`S`, `M` and `ad` all flip).
//!
//! Which rows are the gemm's depends on `m`, not on the tile a kernel is handed, so the quantizer
//! marks each activation row ([`ActQ8KR::gemm`]) and the kernels read the mark. (llama.cpp splits
//! a batch into micro-batches of a multiple of 4 rows, 512 by default, which leaves the same rows
//! to the gemm as one call on all of them.)
//!
//! The weights stay in the GGUF file's layout: the SIMD kernels (`repacked_k_x86.rs`) interleave
//! eight rows per tile of activation rows themselves, as ggml's kernels find them after its
//! repacking at load, and decode row by row. Against the order-free K-quant kernels
//! (`kquants.rs`), AVX-512 VNNI, on BENCHMARKS.md's machine (2 cores, shared): in
//! `cpu_matmul_bench` (5632 × 2048, 2 threads) decoding runs at the same memory-bound speed
//! (Q4_K 0.19-0.21 ms, Q2_K 0.16-0.18 ms either way) and prefill (m = 128) faster (Q4_K 245-272
//! -> 359-401 GFLOP/s, Q2_K 246-282 -> 366-380); one thread on cold weights, m = 13 takes
//! 0.83-0.93x the time, m = 4 1.2-1.5x (the interleaving, about 450 instructions per eight rows
//! and super-block, is paid once per tile: repacking once at load, as llama.cpp does, would save
//! it).

use gguf_importer::quants::{BlockQ2K, BlockQ4K};
use gguf_importer::GgmlType;
use rayon::prelude::*;

use super::kquants::KQuant;
use super::{check_tile, Isa, Out, TileFn, MAX_TILE};

#[cfg(target_arch = "x86_64")]
#[path = "repacked_k_x86.rs"]
mod x86;

/// 256 activations quantized as ggml's `block_q8_K` (`d = 1 / (127 / amax)`, `q = round(x · 127 /
/// amax)`, up to the sign: see the module docs), in element order, with the sums the mins need,
/// and whether the row is one of those llama.cpp multiplies with its gemm kernel.
#[repr(C, align(64))]
#[derive(Debug, Clone, Copy)]
pub struct ActQ8KR {
    pub qs: [i8; 256],
    /// `Σ q` of each group of 16 elements.
    pub bsums: [i16; 16],
    /// `Σ q` of each group of 32 elements (Q4_K's sub-blocks).
    pub bsums32: [i16; 8],
    pub d: f32,
    /// The row goes through ggml's gemm (`C > 1` chunks per super-block) rather than its gemv.
    pub gemm: bool,
}

const EMPTY: ActQ8KR = ActQ8KR {
    qs: [0; 256],
    bsums: [0; 16],
    bsums32: [0; 8],
    d: 0.0,
    gemm: false,
};

/// 1.5 · 2²³: adding it to an f32 below 2²² in magnitude rounds that to an integer (to nearest,
/// ties to even, as ggml's `nearest_int` and `_mm256_round_ps`), left in the low mantissa bits.
const ROUND: f32 = 12_582_912.0;

/// Quantizes one row (`x.len()` a multiple of 256) into `out`, as `quantize_row_q8_K_ref`: per
/// 256, `id = 127 / amax`, `d = 1 / id`, `q = round(x · id)` (ggml's `-127 / max` with the signed
/// largest value only flips the signs of both). A non-finite activation makes the block's scale
/// NaN (its products come out NaN, as in f32) and its integers 0.
fn quantize_row(x: &[f32], out: &mut [ActQ8KR], gemm: bool) {
    for (x, b) in x.chunks_exact(256).zip(out.iter_mut()) {
        let amax = x.iter().fold(0f32, |m, &v| m.max(v.abs()));
        let finite = x.iter().fold(true, |f, &v| f & v.is_finite());
        let (d, id) = if !finite {
            (f32::NAN, 0.0)
        } else if amax > 0.0 {
            let id = 127.0 / amax;
            (1.0 / id, id)
        } else {
            (0.0, 0.0)
        };
        for (q, &x) in b.qs.iter_mut().zip(x) {
            let v = (x * id).clamp(-127.0, 127.0) + ROUND;
            *q = v.to_bits() as u8 as i8;
        }
        for (g, q) in b.qs.chunks_exact(16).enumerate() {
            b.bsums[g] = q.iter().map(|&q| q as i16).sum();
        }
        for g in 0..8 {
            b.bsums32[g] = b.bsums[2 * g] + b.bsums[2 * g + 1];
        }
        b.d = d;
        b.gemm = gemm;
    }
}

/// Quantizes `m = x.len() / cols` activation rows (`x` is `[m, cols]`, `cols` a multiple of 256)
/// for these kernels, rows in parallel, marking the first `m - m % 4` as llama.cpp's gemm rows.
pub(super) fn quantize(x: &[f32], cols: usize) -> Vec<ActQ8KR> {
    assert!(cols > 0 && cols.is_multiple_of(256) && x.len().is_multiple_of(cols));
    let m = x.len() / cols;
    let gemm_rows = m - m % 4;
    let nb = cols / 256;
    let mut out = vec![EMPTY; m * nb];
    out.par_chunks_mut(nb)
        .zip(x.par_chunks(cols))
        .enumerate()
        .for_each(|(i, (out, x))| quantize_row(x, out, i < gemm_rows));
    out
}

/// A super-block of a format with a repacked kernel, in the integer form of the module docs: a
/// K-quant (its quants, scales and super-scales as [`KQuant`] unpacks them) with ggml's chunking.
pub(super) trait RepackK: KQuant + Send + Sync {
    /// Sub-blocks (each with a scale and a min) per super-block.
    const SUBS: usize;
    /// Chunks per super-block in ggml's gemm (one in its gemv).
    const GEMM_CHUNKS: usize;
    /// `Σ aq` over sub-block `j` of `x`.
    fn bsum(x: &ActQ8KR, j: usize) -> i32;
    /// Scale and min of every sub-block (`SUBS` of each; the rest 0): [`KQuant::scales`]' per
    /// group of 16, one per sub-block.
    #[inline(always)]
    fn scales_mins(&self) -> ([u8; 16], [u8; 16]) {
        let s = self.scales();
        let per = 16 / Self::SUBS;
        let (mut sc, mut mn) = ([0u8; 16], [0u8; 16]);
        for j in 0..Self::SUBS {
            (sc[j], mn[j]) = (s.sc[per * j] as u8, s.mn[per * j] as u8);
        }
        (sc, mn)
    }
}

impl RepackK for BlockQ4K {
    const SUBS: usize = 8;
    const GEMM_CHUNKS: usize = 4;
    #[inline(always)]
    fn bsum(x: &ActQ8KR, j: usize) -> i32 {
        x.bsums32[j] as i32
    }
}

impl RepackK for BlockQ2K {
    const SUBS: usize = 16;
    const GEMM_CHUNKS: usize = 2;
    #[inline(always)]
    fn bsum(x: &ActQ8KR, j: usize) -> i32 {
        x.bsums[j] as i32
    }
}

/// The scalar kernel (see [`TileFn`]): the definition of the order.
fn tile_scalar<W: RepackK>(w: &[u8], row_bytes: usize, xs: &[&[ActQ8KR]], out: Out) {
    check_tile(w, row_bytes, size_of::<W>(), 1, xs, &out);
    rows_scalar::<W>(w, row_bytes, xs, &out, 0);
}

/// The weight rows of `w` (rows of `row_bytes`) against the activation rows `xs`, written as
/// output rows `r0 ..`.
pub(super) fn rows_scalar<W: RepackK>(
    w: &[u8],
    row_bytes: usize,
    xs: &[&[ActQ8KR]],
    out: &Out,
    r0: usize,
) {
    let sub_len = 256 / W::SUBS;
    let mut q = [0u8; 256];
    for (r, row) in w.chunks_exact(row_bytes).enumerate() {
        let blocks: &[W] = bytemuck::cast_slice(row);
        let mut acc = [0f32; MAX_TILE];
        let mut accm = [0f32; MAX_TILE];
        for (b, block) in blocks.iter().enumerate() {
            block.unpack(&mut q);
            let (sc, mn) = block.scales_mins();
            let (d, dmin) = block.supers();
            let (d, dmin) = (d.to_f32(), dmin.to_f32());
            for (i, x) in xs.iter().enumerate() {
                let x = &x[b];
                let chunks = if x.gemm { W::GEMM_CHUNKS } else { 1 };
                let per_chunk = W::SUBS / chunks;
                let (dd, dm) = (d * x.d, dmin * x.d);
                for c in 0..chunks {
                    let (mut s, mut m) = (0i32, 0i32);
                    for j in c * per_chunk..(c + 1) * per_chunk {
                        let e = j * sub_len..(j + 1) * sub_len;
                        let dot: i32 = q[e.clone()]
                            .iter()
                            .zip(&x.qs[e])
                            .map(|(&w, &a)| w as i32 * a as i32)
                            .sum();
                        s += sc[j] as i32 * dot;
                        m += mn[j] as i32 * W::bsum(x, j);
                    }
                    acc[i] = (s as f32).mul_add(dd, acc[i]);
                    accm[i] = (m as f32).mul_add(dm, accm[i]);
                }
            }
        }
        for i in 0..xs.len() {
            out.set(r0 + r, i, acc[i] - accm[i]);
        }
    }
}

/// The kernel for `ty` (Q4_K or Q2_K; `None` for other types) on `isa` (call it only if this CPU
/// runs `isa`: `with_kernel` checks it).
pub(super) fn tile_fn(ty: GgmlType, isa: Isa) -> Option<TileFn<ActQ8KR>> {
    #[cfg(target_arch = "x86_64")]
    if let Some(f) = x86::tile_fn(ty, isa) {
        return Some(f);
    }
    let _ = isa;
    match ty {
        GgmlType::Q4_K => Some(tile_scalar::<BlockQ4K>),
        GgmlType::Q2_K => Some(tile_scalar::<BlockQ2K>),
        _ => None,
    }
}
