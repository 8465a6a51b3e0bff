//! Dot products of the K-quants (Q2_K .. Q6_K) with activations quantized to 8 bits per 256
//! ([`ActQ8KSeq`] in element order for decoding, [`ActQ8K`] in lane order for prefill; see
//! [`uses_seq`]): the portable scalar kernel and the per-format dispatch.
//!
//! Every format reduces to one integer core. A super-block of 256 unpacks to 256 unsigned
//! integers `q` (0..64), 16 signed scales `sc[g]`, one per group `g` of 16 elements (formats with
//! sub-blocks of 32 repeat each scale twice), 16 mins `mn[g]` (0 where the format has none), an
//! integer offset `off` and the f16 super-scales `d`, `dmin`, such that `w = d·sc[g]·(q - off) -
//! dmin·mn[g]`. With the activations `x ≈ dx·qx` and `bsum[g] = Σ_{e∈g} qx`:
//!
//! ```text
//! Σ w·x = d·dx · (Σ_g sc[g]·Σ_{e∈g} q·qx  -  off · Σ_g sc[g]·bsum[g])  -  dmin·dx · Σ_g mn[g]·bsum[g]
//!
//!          q                       off   sc[g] (per 16)            mn[g]
//! Q2_K     2 bits                  0     scales[g] & 15            scales[g] >> 4
//! Q3_K     2 bits | hmask bit << 2 4     6-bit packed, minus 32    -
//! Q4_K     4 bits                  0     6-bit, per 32             6-bit, per 32
//! Q5_K     4 bits | qh bit << 4    0     6-bit, per 32             6-bit, per 32
//! Q6_K     4 bits | 2 bits << 4    32    i8                        -
//! ```
//!
//! (ggml's `ggml_vec_dot_q2_K_q8_K` .. `ggml_vec_dot_q6_K_q8_K` do the same per format.)

use gguf_importer::quants::{Block, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, F16};
use gguf_importer::GgmlType;

use super::quantize_act::{ActQ8K, ActQ8KSeq, KActivations};
use super::{check_tile, Isa, Out, TileFn, MAX_TILE};

/// The per-group scales of a super-block.
pub(super) struct KScales {
    /// Scale of each group of 16.
    pub sc: [i8; 16],
    /// Min of each group of 16 (0 for formats without mins).
    pub mn: [i16; 16],
}

/// A K-quant super-block in the integer form above.
pub(super) trait KQuant: Block {
    /// Subtracted from every `q`.
    const OFFSET: i16;
    /// Whether the format has mins (`dmin·mn`).
    const HAS_MINS: bool;
    fn scales(&self) -> KScales;
    /// The f16 super-scales `(d, dmin)` (`dmin` is 0 for formats without mins).
    fn supers(&self) -> (F16, F16);
    /// Writes the 256 `q` in element order.
    fn unpack(&self, q: &mut [u8; 256]);
}

/// Scale and min of sub-block `j` (0..8) of Q4_K/Q5_K from their 12 packed bytes
/// (`get_scale_min_k4` in ggml-quants.c):
///
/// ```text
/// j < 4:  sc = s[j] & 63                        mn = s[j + 4] & 63
/// j >= 4: sc = s[j + 4] & 15 | (s[j - 4] >> 6) << 4   mn = s[j + 4] >> 4 | (s[j] >> 6) << 4
/// ```
#[inline(always)]
fn scales_k4(s: &[u8; 12]) -> KScales {
    let mut out = KScales {
        sc: [0; 16],
        mn: [0; 16],
    };
    for j in 0..8 {
        let (sc, mn) = if j < 4 {
            (s[j] & 63, s[j + 4] & 63)
        } else {
            (
                (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4),
                (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
            )
        };
        out.sc[2 * j] = sc as i8;
        out.sc[2 * j + 1] = sc as i8;
        out.mn[2 * j] = mn as i16;
        out.mn[2 * j + 1] = mn as i16;
    }
    out
}

impl KQuant for BlockQ2K {
    const OFFSET: i16 = 0;
    const HAS_MINS: bool = true;
    /// `scales[g]`: | min (4 bits) | scale (4 bits) |
    #[inline(always)]
    fn scales(&self) -> KScales {
        KScales {
            sc: self.scales.map(|s| (s & 0x0F) as i8),
            mn: self.scales.map(|s| (s >> 4) as i16),
        }
    }
    #[inline(always)]
    fn supers(&self) -> (F16, F16) {
        (self.d, self.dmin)
    }
    /// Element `128h + 32k + l` is bits `2k..2k+2` of `qs[32h + l]`.
    #[inline(always)]
    fn unpack(&self, q: &mut [u8; 256]) {
        for h in 0..2 {
            for k in 0..4 {
                for l in 0..32 {
                    q[128 * h + 32 * k + l] = (self.qs[32 * h + l] >> (2 * k)) & 3;
                }
            }
        }
    }
}

impl KQuant for BlockQ3K {
    const OFFSET: i16 = 4;
    const HAS_MINS: bool = false;
    /// 16 6-bit scales: low 4 bits in bytes 0..8 (group `j` and `j + 8` share byte `j % 8`),
    /// high 2 bits in bytes 8..12 (group `j` at bits `2·(j / 4)` of byte `8 + j % 4`); minus 32.
    #[inline(always)]
    fn scales(&self) -> KScales {
        let p = &self.scales;
        let sc = std::array::from_fn(|j| {
            let low = if j < 8 { p[j] & 0x0F } else { p[j - 8] >> 4 };
            let high = (p[8 + j % 4] >> (2 * (j / 4))) & 3;
            ((low | (high << 4)) as i8) - 32
        });
        KScales { sc, mn: [0; 16] }
    }
    #[inline(always)]
    fn supers(&self) -> (F16, F16) {
        (self.d, F16([0; 2]))
    }
    /// As Q2_K, plus bit `4h + k` of `hmask[l]` as bit 2 (`q - 4` is the signed 3-bit value).
    #[inline(always)]
    fn unpack(&self, q: &mut [u8; 256]) {
        for h in 0..2 {
            for k in 0..4 {
                for l in 0..32 {
                    let low = (self.qs[32 * h + l] >> (2 * k)) & 3;
                    let high = (self.hmask[l] >> (4 * h + k)) & 1;
                    q[128 * h + 32 * k + l] = low | (high << 2);
                }
            }
        }
    }
}

impl KQuant for BlockQ4K {
    const OFFSET: i16 = 0;
    const HAS_MINS: bool = true;
    #[inline(always)]
    fn scales(&self) -> KScales {
        scales_k4(&self.scales)
    }
    #[inline(always)]
    fn supers(&self) -> (F16, F16) {
        (self.d, self.dmin)
    }
    /// Chunk `c` of 32 bytes: sub-block `2c` in the low nibbles, `2c + 1` in the high nibbles.
    #[inline(always)]
    fn unpack(&self, q: &mut [u8; 256]) {
        for c in 0..4 {
            for l in 0..32 {
                let b = self.qs[32 * c + l];
                q[64 * c + l] = b & 0x0F;
                q[64 * c + 32 + l] = b >> 4;
            }
        }
    }
}

impl KQuant for BlockQ5K {
    const OFFSET: i16 = 0;
    const HAS_MINS: bool = true;
    #[inline(always)]
    fn scales(&self) -> KScales {
        scales_k4(&self.scales)
    }
    #[inline(always)]
    fn supers(&self) -> (F16, F16) {
        (self.d, self.dmin)
    }
    /// As Q4_K, plus bit `s` of `qh[l]` as bit 4 of element `32s + l`.
    #[inline(always)]
    fn unpack(&self, q: &mut [u8; 256]) {
        for c in 0..4 {
            for l in 0..32 {
                let b = self.qs[32 * c + l];
                let h = self.qh[l];
                q[64 * c + l] = (b & 0x0F) | (((h >> (2 * c)) & 1) << 4);
                q[64 * c + 32 + l] = (b >> 4) | (((h >> (2 * c + 1)) & 1) << 4);
            }
        }
    }
}

impl KQuant for BlockQ6K {
    const OFFSET: i16 = 32;
    const HAS_MINS: bool = false;
    #[inline(always)]
    fn scales(&self) -> KScales {
        KScales {
            sc: self.scales,
            mn: [0; 16],
        }
    }
    #[inline(always)]
    fn supers(&self) -> (F16, F16) {
        (self.d, F16([0; 2]))
    }
    /// Per half `h` (ql[64h..], qh[32h..]), for l in 0..32:
    ///
    /// ```text
    /// element 128h + l      = ql[l] & 15      | (qh[l] >> 0 & 3) << 4
    /// element 128h + l + 32 = ql[l + 32] & 15 | (qh[l] >> 2 & 3) << 4
    /// element 128h + l + 64 = ql[l] >> 4      | (qh[l] >> 4 & 3) << 4
    /// element 128h + l + 96 = ql[l + 32] >> 4 | (qh[l] >> 6 & 3) << 4
    /// ```
    #[inline(always)]
    fn unpack(&self, q: &mut [u8; 256]) {
        for h in 0..2 {
            let ql = &self.ql[64 * h..64 * h + 64];
            let qh = &self.qh[32 * h..32 * h + 32];
            let q = &mut q[128 * h..128 * h + 128];
            for l in 0..32 {
                q[l] = (ql[l] & 0x0F) | ((qh[l] & 3) << 4);
                q[l + 32] = (ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4);
                q[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                q[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
            }
        }
    }
}

/// The scalar kernel (see [`TileFn`]), for either activation layout.
fn tile_scalar<W: KQuant, A: KActivations>(w: &[u8], row_bytes: usize, xs: &[&[A]], out: Out) {
    check_tile(w, row_bytes, size_of::<W>(), 1, xs, &out);
    let mut q = [0u8; 256];
    for (r, row) in w.chunks_exact(row_bytes).enumerate() {
        let blocks: &[W] = bytemuck::cast_slice(row);
        let mut acc = [0f32; MAX_TILE];
        for (b, block) in blocks.iter().enumerate() {
            let s = block.scales();
            let (d, dmin) = block.supers();
            let (d, dmin) = (d.to_f32(), dmin.to_f32());
            block.unpack(&mut q);
            for (acc, x) in acc.iter_mut().zip(xs) {
                let x = &x[b];
                let (mut isum, mut msum) = (0i32, 0i32);
                for g in 0..16 {
                    let dot: i32 = (16 * g..16 * g + 16)
                        .map(|e| q[e] as i32 * x.q(e) as i32)
                        .sum();
                    let bsum = x.bsum(g) as i32;
                    isum += s.sc[g] as i32 * (dot - W::OFFSET as i32 * bsum);
                    msum += s.mn[g] as i32 * bsum;
                }
                *acc += d * x.d() * isum as f32 - dmin * x.d() * msum as f32;
            }
        }
        for (i, acc) in acc.iter().take(xs.len()).enumerate() {
            out.set(r, i, *acc);
        }
    }
}

/// Whether the K-quants dot with activations in element order ([`ActQ8KSeq`], [`tile_fn_seq`])
/// rather than in lane order ([`ActQ8K`], [`tile_fn`]) for `m` activation rows: element order
/// in decoding, lane order in prefill. The element-order kernels need no transposes, which
/// decoding (one activation row per unpacked super-block) cannot amortize, and they read several
/// weight rows per pass; the lane-order kernels apply the group scales lane-wise in f32 after
/// plain byte dot products, with 512-bit `dpbusd` over all 16 groups on VNNI.
/// `cpu_matmul_bench` on 5632 × 2048, 2 threads (BENCHMARKS.md's machine): decode in element
/// order Q4_K 16 -> 29 GB/s, Q2_K 19 -> 25, Q3_K 21 -> 27, Q6_K 0.57 -> 0.48 ms; prefill in lane
/// order, GFLOP/s with VNNI (AVX2): Q2_K 254 -> 286 (180 -> 199), Q3_K 237 -> 267, Q4_K 224 ->
/// 268 (166 -> 177), Q5_K 220 -> 259 (170 -> 175), Q6_K 300 either way (AVX2 177 / 180).
pub(super) fn uses_seq(m: usize) -> bool {
    m == 1
}

/// The kernel for the K-quant `ty` on `isa` against activations in element order; `None` for
/// other types.
pub(super) fn tile_fn_seq(ty: GgmlType, isa: Isa) -> Option<TileFn<ActQ8KSeq>> {
    #[cfg(target_arch = "x86_64")]
    if let Some(f) = super::kquants_x86::tile_fn_seq(ty, isa) {
        return Some(f);
    }
    let _ = isa;
    Some(match ty {
        GgmlType::Q2_K => tile_scalar::<BlockQ2K, ActQ8KSeq>,
        GgmlType::Q3_K => tile_scalar::<BlockQ3K, ActQ8KSeq>,
        GgmlType::Q4_K => tile_scalar::<BlockQ4K, ActQ8KSeq>,
        GgmlType::Q5_K => tile_scalar::<BlockQ5K, ActQ8KSeq>,
        GgmlType::Q6_K => tile_scalar::<BlockQ6K, ActQ8KSeq>,
        _ => return None,
    })
}

/// The kernel for the K-quant `ty` on `isa` against activations in lane order; `None` for other
/// types.
pub(super) fn tile_fn(ty: GgmlType, isa: Isa) -> Option<TileFn<ActQ8K>> {
    #[cfg(target_arch = "x86_64")]
    if let Some(f) = super::kquants_x86::tile_fn(ty, isa) {
        return Some(f);
    }
    let _ = isa;
    Some(match ty {
        GgmlType::Q2_K => tile_scalar::<BlockQ2K, ActQ8K>,
        GgmlType::Q3_K => tile_scalar::<BlockQ3K, ActQ8K>,
        GgmlType::Q4_K => tile_scalar::<BlockQ4K, ActQ8K>,
        GgmlType::Q5_K => tile_scalar::<BlockQ5K, ActQ8K>,
        GgmlType::Q6_K => tile_scalar::<BlockQ6K, ActQ8K>,
        _ => return None,
    })
}
