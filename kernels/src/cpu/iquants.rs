//! Dot products of the super-block i-quants (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS,
//! IQ3_S, IQ4_XS) and the ternary formats (TQ1_0, TQ2_0) with activations quantized to 8 bits
//! per 256 ([`ActQ8KSeq`], ggml's `block_q8_K`), in the float orders of llama.cpp's x86 build, so
//! that the CPU matmul gives its results bit for bit.
//!
//! # The integer form
//!
//! Every format decodes a super-block of 256 to integers ([`Decoded`]): a signed value `v[e]` per
//! element (a grid entry's byte with its sign bit applied, IQ4_XS's `kvalues_iq4nl` entry, IQ1's
//! -1/0/1, or the ternary digit 0..=2 before its -1), an integer scale `sc[g]` per group of 16
//! (`2·ls + 1` for the grid formats, `ls - 32` for IQ4_XS, 1 for the ternary ones), IQ1's delta
//! sign `δ[k]` per group of 8, and the f16 super-scale `d`. The dequantized weight is
//! `d · F · sc · v` with a per-format power of two `F` (IQ2: 1/8, IQ3_XXS: 1/4, IQ3_S and
//! IQ4_XS: 1), IQ1's `d · sc · (v + δ/8)` and the ternary `d · (v - 1)`; gguf-py's dequantizer and
//! the importer say the same per element.
//!
//! # ggml's float orders
//!
//! Fewer than 8 activation rows (and the ternary formats always): `ggml_vec_dot_<fmt>_q8_K`,
//! AVX2 code (its AVX-512 builds run the same; read in llama-cpp-python 0.3.36's
//! `ggml-cpu/arch/x86/quants.c`). Each 32-element register meets the activations in
//! `madd(maddubs(..), scales)`, which leaves in i32 lane `l` the bytes `4l..4l+4`: lane `l` of a
//! super-block sums, exactly, the elements `e` with `e % 32 in 4l..4l+4`. Per output element, with
//! `dd = f16(w.d) · a.d` for each super-block, in order:
//!
//! ```text
//! grid formats, IQ4_XS:  lane[l] = Σ_e sc·v·qa                       acc[l] = fma(dd, lane[l], acc[l])
//!                        y = F · hsum8(acc)
//! IQ1_S:                 as above with v the grid's -1/0/1, and s1 = Σ_{b32} δ·sc·(bsum of the 32)
//!                        acc1 = fma(dd, s1, acc1)                   y = hsum8(acc) + (1/8 · acc1)
//! IQ1_M:                 lane2[l] = Σ_e sc·δ·qa (the same lanes)    acc2[l] = fma(dd, lane2[l], acc2[l])
//!                        y = fma(1/8, hsum8(acc2), hsum8(acc))
//! TQ1_0, TQ2_0:          lane[l] = Σ_e v·qa - (bsum[2l] + bsum[2l+1])  (the bsums of elements 32l..32l+32)
//!                        acc[l] = fma(dd, lane[l], acc[l])          y = hsum8(acc)
//! ```
//!
//! (`hsum8` is ggml's `hsum_float_8`.) Which multiply-adds are fused was read in the disassembly
//! of llama-cpp-python 0.3.36's `libggml-cpu.so`: GCC contracts the ternary formats'
//! `_mm256_add_ps(_mm256_mul_ps(..))` and IQ1_S's `accum1 += d * sumi1`, not IQ1_S's last
//! `+ IQ1S_DELTA * accum1`. Eight or more activation rows of the grid formats and
//! IQ4_XS: ggml's tiled matmul (`ggml-cpu/tiled/tiled.cpp`, as for the K-quants in tiled_k.rs),
//! per super-block `s = Σ_e sc·val·qa` (IQ1: `val = 8·v + δ`, else `v`), `r = f32(s) · (d·F')`
//! with `F'` the tiled unpack's factor (IQ1: 1/8), `acc = fma(r, a.d, acc)`.
//!
//! The integer sums may be computed any way; the float operations must be these. The scalar
//! kernels here are the definition; kernels/tests/ggml_iquant.rs checks them against ggml's own
//! results.

use gguf_importer::quants::iquant_tables::{
    IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KSIGNS_IQ2XS,
    KVALUES_IQ4NL,
};
use gguf_importer::quants::{
    Block, BlockIq1M, BlockIq1S, BlockIq2S, BlockIq2Xs, BlockIq2Xxs, BlockIq3S, BlockIq3Xxs,
    BlockIq4Xs, BlockTq1_0, BlockTq2_0,
};
use gguf_importer::GgmlType;

use super::legacy::hsum8;
use super::quantize_act::ActQ8KSeq;
use super::{check_tile, Isa, Out, TileFn, MAX_TILE};

/// A super-block of 256 in integers (see the module documentation).
pub(super) struct Decoded {
    /// The signed value of each element.
    pub v: [i8; 256],
    /// The integer scale of each group of 16 elements.
    pub sc: [i16; 16],
    /// IQ1's delta sign (+1 or -1) of each group of 8 elements; 0 for the other formats.
    pub delta: [i8; 32],
    /// The f16 super-scale, as f32.
    pub d: f32,
}

impl Decoded {
    pub(super) fn new() -> Decoded {
        Decoded {
            v: [0; 256],
            sc: [0; 16],
            delta: [0; 32],
            d: 0.0,
        }
    }
}

/// How ggml's `vec_dot` finishes a format (see the module documentation).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Epilogue {
    /// `acc = fma(dd, lane, acc)`, `y = F · hsum8(acc)`.
    Lanes,
    /// [`Epilogue::Lanes`] plus a scalar delta term.
    Iq1S,
    /// [`Epilogue::Lanes`] plus eight delta lanes.
    Iq1M,
    /// `acc = acc + lane · dd` with the bsums taken off each lane.
    Ternary,
}

/// A super-block format in the integer form of the module documentation.
pub(super) trait IQuant: Block {
    const EPILOGUE: Epilogue;
    /// `F`: what `vec_dot` multiplies the horizontal sum by (1 for IQ1 and the ternary formats).
    const VEC_DOT_FACTOR: f32;
    /// `F'`: what the tiled matmul's unpack multiplies the f16 scale by; `None` for the formats
    /// the tiled matmul does not take (the ternary ones).
    const TILED_FACTOR: Option<f32>;
    fn decode(&self, out: &mut Decoded);
}

#[inline(always)]
fn u16_at(bytes: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]])
}

#[inline(always)]
fn u32_at(bytes: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([
        bytes[4 * i],
        bytes[4 * i + 1],
        bytes[4 * i + 2],
        bytes[4 * i + 3],
    ])
}

/// Eight grid bytes with the sign bits of `signs` (bit `j` negates byte `j`).
#[inline(always)]
fn signed8(out: &mut [i8], grid: [u8; 8], signs: u8) {
    for (j, (o, g)) in out.iter_mut().zip(grid).enumerate() {
        let g = g as i8;
        *o = if signs >> j & 1 != 0 { -g } else { g };
    }
}

/// Two 4-byte grid entries (elements 0..4 and 4..8) as eight bytes.
#[inline(always)]
fn grid4x2(a: u32, b: u32) -> [u8; 8] {
    (a as u64 | (b as u64) << 32).to_le_bytes()
}

/// `2·ls + 1`, the grid formats' scale of a 4-bit `ls`.
#[inline(always)]
pub(super) fn odd(ls: u32) -> i16 {
    (2 * ls + 1) as i16
}

/// [`odd`] for both groups of 16 of sub-block `ib`.
#[inline(always)]
fn odd_scale32(sc: &mut [i16; 16], ib: usize, ls: u32) {
    sc[2 * ib] = odd(ls);
    sc[2 * ib + 1] = odd(ls);
}

impl IQuant for BlockIq2Xxs {
    const EPILOGUE: Epilogue = Epilogue::Lanes;
    const VEC_DOT_FACTOR: f32 = 0.125;
    const TILED_FACTOR: Option<f32> = Some(0.125);
    /// Per 32 (8 bytes): four grid indices, then a word of four 7-bit sign indices and the
    /// 4-bit scale in its top bits.
    fn decode(&self, out: &mut Decoded) {
        out.d = self.d.to_f32();
        for (ib, q) in self.qs.chunks_exact(8).enumerate() {
            let aux = u32_at(q, 1);
            odd_scale32(&mut out.sc, ib, aux >> 28);
            for l in 0..4 {
                let signs = KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize];
                let grid = IQ2XXS_GRID[q[l] as usize].to_le_bytes();
                signed8(&mut out.v[32 * ib + 8 * l..][..8], grid, signs);
            }
        }
    }
}

impl IQuant for BlockIq2Xs {
    const EPILOGUE: Epilogue = Epilogue::Lanes;
    const VEC_DOT_FACTOR: f32 = 0.125;
    const TILED_FACTOR: Option<f32> = Some(0.125);
    /// Per 8 elements a u16: 9-bit grid index, 7-bit sign index; a 4-bit scale per 16.
    fn decode(&self, out: &mut Decoded) {
        out.d = self.d.to_f32();
        for ib in 0..8 {
            out.sc[2 * ib] = odd((self.scales[ib] & 0x0F) as u32);
            out.sc[2 * ib + 1] = odd((self.scales[ib] >> 4) as u32);
            for l in 0..4 {
                let q = u16_at(&self.qs, 4 * ib + l);
                let signs = KSIGNS_IQ2XS[(q >> 9) as usize];
                let grid = IQ2XS_GRID[(q & 511) as usize].to_le_bytes();
                signed8(&mut out.v[32 * ib + 8 * l..][..8], grid, signs);
            }
        }
    }
}

impl IQuant for BlockIq2S {
    const EPILOGUE: Epilogue = Epilogue::Lanes;
    const VEC_DOT_FACTOR: f32 = 0.125;
    const TILED_FACTOR: Option<f32> = Some(0.125);
    /// Per 8 elements a 10-bit grid index (`qs` and two bits of `qh`) and a sign byte.
    fn decode(&self, out: &mut Decoded) {
        out.d = self.d.to_f32();
        for ib in 0..8 {
            out.sc[2 * ib] = odd((self.scales[ib] & 0x0F) as u32);
            out.sc[2 * ib + 1] = odd((self.scales[ib] >> 4) as u32);
            for l in 0..4 {
                let k = 4 * ib + l;
                let high = ((self.qh[ib] >> (2 * l)) & 3) as usize;
                let grid = IQ2S_GRID[self.qs[k] as usize | high << 8].to_le_bytes();
                signed8(&mut out.v[32 * ib + 8 * l..][..8], grid, self.signs[k]);
            }
        }
    }
}

impl IQuant for BlockIq3Xxs {
    const EPILOGUE: Epilogue = Epilogue::Lanes;
    const VEC_DOT_FACTOR: f32 = 0.25;
    const TILED_FACTOR: Option<f32> = Some(0.25);
    /// Per 32: eight 4-element grid indices, and a word of four 7-bit sign indices and the
    /// 4-bit scale.
    fn decode(&self, out: &mut Decoded) {
        out.d = self.d.to_f32();
        for (ib, q) in self.qs.chunks_exact(8).enumerate() {
            let aux = u32_at(&self.scales_signs, ib);
            odd_scale32(&mut out.sc, ib, aux >> 28);
            for l in 0..4 {
                let signs = KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize];
                let grid = grid4x2(
                    IQ3XXS_GRID[q[2 * l] as usize],
                    IQ3XXS_GRID[q[2 * l + 1] as usize],
                );
                signed8(&mut out.v[32 * ib + 8 * l..][..8], grid, signs);
            }
        }
    }
}

impl IQuant for BlockIq3S {
    const EPILOGUE: Epilogue = Epilogue::Lanes;
    const VEC_DOT_FACTOR: f32 = 1.0;
    const TILED_FACTOR: Option<f32> = Some(1.0);
    /// Per 32: eight 9-bit grid indices (`qs` and a bit of `qh`), four sign bytes; a 4-bit
    /// scale per 32.
    fn decode(&self, out: &mut Decoded) {
        out.d = self.d.to_f32();
        for (ib, q) in self.qs.chunks_exact(8).enumerate() {
            let ls = (self.scales[ib / 2] >> (4 * (ib % 2))) & 0x0F;
            odd_scale32(&mut out.sc, ib, ls as u32);
            let qh = self.qh[ib] as usize;
            for l in 0..4 {
                let grid = grid4x2(
                    IQ3S_GRID[q[2 * l] as usize | (qh >> (2 * l) & 1) << 8],
                    IQ3S_GRID[q[2 * l + 1] as usize | (qh >> (2 * l + 1) & 1) << 8],
                );
                signed8(
                    &mut out.v[32 * ib + 8 * l..][..8],
                    grid,
                    self.signs[4 * ib + l],
                );
            }
        }
    }
}

impl IQuant for BlockIq4Xs {
    const EPILOGUE: Epilogue = Epilogue::Lanes;
    const VEC_DOT_FACTOR: f32 = 1.0;
    const TILED_FACTOR: Option<f32> = Some(1.0);
    /// Per 32: 16 bytes of 4-bit `kvalues_iq4nl` indices (elements `j` low, `j + 16` high), a
    /// 6-bit scale (`scales_l` nibble, two bits of `scales_h`) minus 32.
    fn decode(&self, out: &mut Decoded) {
        out.d = self.d.to_f32();
        let scales_h = u16::from_le_bytes(self.scales_h);
        for (ib, q) in self.qs.chunks_exact(16).enumerate() {
            let low = (self.scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0F;
            let high = ((scales_h >> (2 * ib)) & 3) as u8;
            let ls = (low | high << 4) as i16 - 32;
            out.sc[2 * ib] = ls;
            out.sc[2 * ib + 1] = ls;
            for (j, &q) in q.iter().enumerate() {
                out.v[32 * ib + j] = KVALUES_IQ4NL[(q & 0x0F) as usize];
                out.v[32 * ib + 16 + j] = KVALUES_IQ4NL[(q >> 4) as usize];
            }
        }
    }
}

/// Eight IQ1 grid bytes (-1, 0, 1) of index `idx`.
#[inline(always)]
fn iq1_grid(out: &mut [i8], idx: usize) {
    for (o, g) in out.iter_mut().zip(IQ1S_GRID[idx].to_le_bytes()) {
        *o = g as i8;
    }
}

impl IQuant for BlockIq1S {
    const EPILOGUE: Epilogue = Epilogue::Iq1S;
    const VEC_DOT_FACTOR: f32 = 1.0;
    const TILED_FACTOR: Option<f32> = Some(0.125);
    /// Per 32: four 8-bit grid index bytes, and a u16 of their three high bits each, the 3-bit
    /// scale and the delta's sign (bit 15).
    fn decode(&self, out: &mut Decoded) {
        out.d = self.d.to_f32();
        for (ib, q) in self.qs.chunks_exact(4).enumerate() {
            let qh = u16_at(&self.qh, ib);
            odd_scale32(&mut out.sc, ib, ((qh >> 12) & 7) as u32);
            let delta = if qh & 0x8000 != 0 { -1 } else { 1 };
            for (l, &ql) in q.iter().enumerate() {
                out.delta[4 * ib + l] = delta;
                let high = ((qh >> (3 * l)) & 7) as usize;
                iq1_grid(&mut out.v[32 * ib + 8 * l..][..8], ql as usize | high << 8);
            }
        }
    }
}

impl IQuant for BlockIq1M {
    const EPILOGUE: Epilogue = Epilogue::Iq1M;
    const VEC_DOT_FACTOR: f32 = 1.0;
    const TILED_FACTOR: Option<f32> = Some(0.125);
    /// Per 32: four grid index bytes, two `qh` bytes of a nibble per 8 (three high index bits and
    /// the delta's sign), two 3-bit scales (one per 16) from the scale words.
    fn decode(&self, out: &mut Decoded) {
        out.d = self.d().to_f32();
        for (ib, q) in self.qs.chunks_exact(4).enumerate() {
            let sc = u16_at(&self.scales, ib / 2) >> (6 * (ib % 2));
            out.sc[2 * ib] = odd((sc & 7) as u32);
            out.sc[2 * ib + 1] = odd(((sc >> 3) & 7) as u32);
            for (l, &ql) in q.iter().enumerate() {
                let nibble = (self.qh[2 * ib + l / 2] >> (4 * (l % 2))) & 0x0F;
                out.delta[4 * ib + l] = if nibble & 0x08 != 0 { -1 } else { 1 };
                iq1_grid(
                    &mut out.v[32 * ib + 8 * l..][..8],
                    ql as usize | ((nibble & 7) as usize) << 8,
                );
            }
        }
    }
}

/// Digit `n` of a TQ1_0 byte (0..=2), as ggml computes it.
#[inline(always)]
fn trit(byte: u8, n: usize) -> i8 {
    const POW3: [u8; 5] = [1, 3, 9, 27, 81];
    let q = byte.wrapping_mul(POW3[n]);
    ((q as u16 * 3) >> 8) as i8
}

impl IQuant for BlockTq1_0 {
    const EPILOGUE: Epilogue = Epilogue::Ternary;
    const VEC_DOT_FACTOR: f32 = 1.0;
    const TILED_FACTOR: Option<f32> = None;
    /// Five digits per byte of `qs` (32 bytes for elements `32n + m`, 16 for `160 + 16n + m`),
    /// four per byte of `qh` (elements `240 + 4n + j`).
    fn decode(&self, out: &mut Decoded) {
        out.d = self.d.to_f32();
        out.sc = [1; 16];
        let (wide, narrow) = self.qs.split_at(32);
        let mut e = 0;
        for (bytes, digits) in [(wide, 5), (narrow, 5), (&self.qh[..], 4)] {
            for n in 0..digits {
                for &b in bytes {
                    out.v[e] = trit(b, n);
                    e += 1;
                }
            }
        }
    }
}

impl IQuant for BlockTq2_0 {
    const EPILOGUE: Epilogue = Epilogue::Ternary;
    const VEC_DOT_FACTOR: f32 = 1.0;
    const TILED_FACTOR: Option<f32> = None;
    /// Four 2-bit digits per byte: byte `m` of chunk `c` holds elements `128c + 32l + m`.
    fn decode(&self, out: &mut Decoded) {
        out.d = self.d.to_f32();
        out.sc = [1; 16];
        for (c, q) in self.qs.chunks_exact(32).enumerate() {
            for l in 0..4 {
                for (m, &b) in q.iter().enumerate() {
                    out.v[128 * c + 32 * l + m] = ((b >> (2 * l)) & 3) as i8;
                }
            }
        }
    }
}

/// ggml's eight i32 lanes of a super-block against one activation super-block: lane `l` sums
/// `sc·v·qa` over the elements `e` with `e % 32` in `4l..4l + 4` (and for IQ1_M the second set
/// of lanes, `sc·δ·qa`; for the ternary formats the bsums taken off).
#[inline(always)]
fn lanes<W: IQuant>(dec: &Decoded, x: &ActQ8KSeq) -> ([i32; 8], [i32; 8]) {
    let mut lane = [0i32; 8];
    let mut lane2 = [0i32; 8];
    for c in 0..8 {
        for l in 0..8 {
            let e0 = 32 * c + 4 * l;
            let sc = dec.sc[e0 / 16] as i32;
            let dot: i32 = (e0..e0 + 4).map(|e| dec.v[e] as i32 * x.qs[e] as i32).sum();
            lane[l] += sc * dot;
            if W::EPILOGUE == Epilogue::Iq1M {
                let qsum: i32 = (e0..e0 + 4).map(|e| x.qs[e] as i32).sum();
                lane2[l] += sc * dec.delta[e0 / 8] as i32 * qsum;
            }
        }
    }
    if W::EPILOGUE == Epilogue::Ternary {
        for (l, lane) in lane.iter_mut().enumerate() {
            *lane -= x.bsums[2 * l] as i32 + x.bsums[2 * l + 1] as i32;
        }
    }
    (lane, lane2)
}

/// IQ1_S's scalar delta sum: `Σ_{b32} δ · sc · (the activations' sum over the 32)`.
#[inline(always)]
fn iq1s_delta_sum(dec: &Decoded, x: &ActQ8KSeq) -> i32 {
    (0..8)
        .map(|ib| {
            let bsum = x.bsums[2 * ib] as i32 + x.bsums[2 * ib + 1] as i32;
            bsum * dec.delta[4 * ib] as i32 * dec.sc[2 * ib] as i32
        })
        .sum()
}

/// The accumulators of one output element in `vec_dot`'s order.
#[derive(Clone, Copy)]
struct VecDotAcc {
    acc: [f32; 8],
    acc2: [f32; 8],
    acc1: f32,
}

impl VecDotAcc {
    const ZERO: VecDotAcc = VecDotAcc {
        acc: [0.0; 8],
        acc2: [0.0; 8],
        acc1: 0.0,
    };

    /// Adds one super-block.
    #[inline(always)]
    fn step<W: IQuant>(&mut self, dec: &Decoded, x: &ActQ8KSeq) {
        let dd = dec.d * x.d;
        let (lane, lane2) = lanes::<W>(dec, x);
        for (acc, lane) in self.acc.iter_mut().zip(lane) {
            *acc = dd.mul_add(lane as f32, *acc);
        }
        match W::EPILOGUE {
            Epilogue::Iq1S => {
                self.acc1 = dd.mul_add(iq1s_delta_sum(dec, x) as f32, self.acc1);
            }
            Epilogue::Iq1M => {
                for (acc, lane) in self.acc2.iter_mut().zip(lane2) {
                    *acc = dd.mul_add(lane as f32, *acc);
                }
            }
            _ => {}
        }
    }

    #[inline(always)]
    fn finish<W: IQuant>(&self) -> f32 {
        const DELTA: f32 = 0.125;
        match W::EPILOGUE {
            Epilogue::Lanes => W::VEC_DOT_FACTOR * hsum8(&self.acc),
            Epilogue::Iq1S => hsum8(&self.acc) + DELTA * self.acc1,
            Epilogue::Iq1M => DELTA.mul_add(hsum8(&self.acc2), hsum8(&self.acc)),
            Epilogue::Ternary => hsum8(&self.acc),
        }
    }
}

/// The `vec_dot`-order kernel (see [`TileFn`]): the definition.
fn tile_seq_scalar<W: IQuant>(w: &[u8], row_bytes: usize, xs: &[&[ActQ8KSeq]], out: Out) {
    check_tile(w, row_bytes, size_of::<W>(), 1, xs, &out);
    let mut dec = Decoded::new();
    for (r, row) in w.chunks_exact(row_bytes).enumerate() {
        let blocks: &[W] = bytemuck::cast_slice(row);
        let mut acc = [VecDotAcc::ZERO; MAX_TILE];
        for (b, block) in blocks.iter().enumerate() {
            block.decode(&mut dec);
            for (acc, x) in acc.iter_mut().zip(xs) {
                acc.step::<W>(&dec, &x[b]);
            }
        }
        for (i, acc) in acc.iter().take(xs.len()).enumerate() {
            out.set(r, i, acc.finish::<W>());
        }
    }
}

/// The tiled matmul's exact integer sum of a super-block: `Σ_e sc·val·qa`.
#[inline(always)]
fn tiled_sum<W: IQuant>(dec: &Decoded, x: &ActQ8KSeq) -> i32 {
    let iq1 = matches!(W::EPILOGUE, Epilogue::Iq1S | Epilogue::Iq1M);
    (0..16)
        .map(|g| {
            let dot: i32 = (16 * g..16 * g + 16)
                .map(|e| {
                    let v = if iq1 {
                        8 * dec.v[e] as i32 + dec.delta[e / 8] as i32
                    } else {
                        dec.v[e] as i32
                    };
                    v * x.qs[e] as i32
                })
                .sum();
            dec.sc[g] as i32 * dot
        })
        .sum()
}

/// The tiled-order kernel (see [`TileFn`]): the definition.
fn tile_tiled_scalar<W: IQuant>(w: &[u8], row_bytes: usize, xs: &[&[ActQ8KSeq]], out: Out) {
    check_tile(w, row_bytes, size_of::<W>(), 1, xs, &out);
    let factor = W::TILED_FACTOR.expect("a format the tiled matmul takes");
    let mut dec = Decoded::new();
    for (r, row) in w.chunks_exact(row_bytes).enumerate() {
        let blocks: &[W] = bytemuck::cast_slice(row);
        let mut acc = [0f32; MAX_TILE];
        for (b, block) in blocks.iter().enumerate() {
            block.decode(&mut dec);
            let d = dec.d * factor;
            for (acc, x) in acc.iter_mut().zip(xs) {
                let x = &x[b];
                let r = tiled_sum::<W>(&dec, x) as f32 * d;
                *acc = r.mul_add(x.d, *acc);
            }
        }
        for (i, acc) in acc.iter().take(xs.len()).enumerate() {
            out.set(r, i, *acc);
        }
    }
}

/// Whether llama.cpp multiplies `m` activation rows with a matrix of `ty` by `vec_dot`, one
/// activation row at a time (else by its tiled matmul): fewer than 8 rows, and the ternary
/// formats always.
pub(super) fn uses_seq(ty: GgmlType, m: usize) -> bool {
    m < 8 || matches!(ty, GgmlType::TQ1_0 | GgmlType::TQ2_0)
}

/// Whether the kernel of `ty` on `isa` for `m` rows takes all of them in one call, in bands of
/// 16 (the AVX-512 VNNI tiled kernel, `iquants_x86::tile_fn_bands`); the others
/// ([`tile_fn`]) take tiles of at most [`MAX_TILE`].
pub(super) fn takes_all_rows(ty: GgmlType, isa: Isa, m: usize) -> bool {
    isa == Isa::Avx512Vnni && !uses_seq(ty, m) && cfg!(target_arch = "x86_64")
}

/// Whether `ty` is one of this module's formats.
pub(super) fn is_iquant(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        ty,
        IQ1_S | IQ1_M | IQ2_XXS | IQ2_XS | IQ2_S | IQ3_XXS | IQ3_S | IQ4_XS | TQ1_0 | TQ2_0
    )
}

/// `$f::<Block>` of the format `$ty` of this module (the block types must be in scope); returns
/// `None` from the calling function for other types. Also used by `iquants_x86.rs`.
macro_rules! per_format {
    ($ty:expr, $f:ident) => {
        match $ty {
            GgmlType::IQ1_S => $f::<BlockIq1S>,
            GgmlType::IQ1_M => $f::<BlockIq1M>,
            GgmlType::IQ2_XXS => $f::<BlockIq2Xxs>,
            GgmlType::IQ2_XS => $f::<BlockIq2Xs>,
            GgmlType::IQ2_S => $f::<BlockIq2S>,
            GgmlType::IQ3_XXS => $f::<BlockIq3Xxs>,
            GgmlType::IQ3_S => $f::<BlockIq3S>,
            GgmlType::IQ4_XS => $f::<BlockIq4Xs>,
            GgmlType::TQ1_0 => $f::<BlockTq1_0>,
            GgmlType::TQ2_0 => $f::<BlockTq2_0>,
            _ => return None,
        }
    };
}
pub(super) use per_format;

/// The kernel for `ty` on `isa` for `m` activation rows ([`uses_seq`] picks the order); `None`
/// for other types.
pub(super) fn tile_fn(ty: GgmlType, isa: Isa, m: usize) -> Option<TileFn<ActQ8KSeq>> {
    #[cfg(target_arch = "x86_64")]
    if matches!(isa, Isa::Avx2 | Isa::Avx512Vnni) {
        return super::iquants_x86::tile_fn(ty, isa, m);
    }
    let _ = isa;
    Some(if uses_seq(ty, m) {
        per_format!(ty, tile_seq_scalar)
    } else {
        per_format!(ty, tile_tiled_scalar)
    })
}
