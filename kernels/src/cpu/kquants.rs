//! Dot products of the K-quants (Q2_K .. Q6_K) with activations quantized to 8 bits per 256
//! ([`ActQ8KSeq`]) in the order of ggml's `ggml_vec_dot_q<n>_K_q8_K`, for decoding and prompts
//! of fewer than 8 rows (see [`uses_seq`]; from 8 rows on llama.cpp takes its tiled matmul,
//! `tiled_k.rs`, and for the matrices it repacks its repacked kernels, `repacked_k.rs`): the
//! integer form of the formats ([`KQuant`]), the portable scalar kernels and the per-format
//! dispatch.
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
//!
//! # ggml's float order (the element-order kernels)
//!
//! Decoding and prompts of a few rows ([`uses_seq`]) follow the float order of ggml's x86 (AVX2)
//! `ggml_vec_dot_<fmt>_q8_K` (which its AVX-512 VNNI builds run too: these functions have no
//! AVX-512 code), llama.cpp's kernels there, so that they give its results bit for
//! bit (against activations quantized as its `quantize_row_q8_K`, `quantize_act.rs`). The
//! integer sums are exact, so the order is which integer lands in which f32 lane, and the float
//! operations on the lanes. Per output element (a weight row against an activation row):
//!
//! ```text
//! acc[0..8] = 0, acc_m[0..4] = 0, summs = 0                     (f32)
//! for each super-block, in order:
//!     d    = x.d · f16(w.d);   dmin = -x.d · f16(w.dmin)          (f32 products)
//!     sumi[l] = Σ_{c=0..8} sc[2c + l/4] · Σ_{e=32c+4l..32c+4l+4} (q[e] - i_off) · qx[e]
//!               - b_off · (sc[2l]·bsum[2l] + sc[2l+1]·bsum[2l+1])      (exact i32, l in 0..8)
//!     Q2_K:  acc[l]   = fma(dmin, mn[2l]·bsum[2l] + mn[2l+1]·bsum[2l+1], acc[l])   (first)
//!     Q4_K:  acc_m[k] = fma(dmin, Σ_{g=4k..4k+4} mn[g]·bsum[g], acc_m[k])         (k in 0..4)
//!     Q5_K:  summs    = fma(dmin, Σ_g mn[g]·bsum[g], summs)
//!     acc[l] = fma(d, sumi[l], acc[l])
//! y = hsum8(acc)   (+ ((acc_m[0] + acc_m[2]) + (acc_m[1] + acc_m[3])) for Q4_K, + summs for Q5_K)
//! hsum8(a) = ((a[0]+a[4]) + (a[2]+a[6])) + ((a[1]+a[5]) + (a[3]+a[7]))      (`hsum_float_8`)
//! ```
//!
//! Lane `l` of `sumi` is what `madd(scales, maddubs(q, qx))` leaves in i32 lane `l` of each
//! 32-element register `c` (bytes `4l..4l+4`, group `2c + l/4`). The offset: Q3_K subtracts it in
//! every product (`i_off = 4`, `b_off = 0`: ggml's `maddubs(q_low, qx) - maddubs(4·!hbit, qx)`),
//! Q6_K through the group sums (`i_off = 0`, `b_off = 32`: ggml's `q8sclsub`); the two put
//! different integers in a lane. The mins' lanes are ggml's too: Q2_K's `madd(mins, bsums)` in
//! the 8 lanes of `acc`, before the block's scales; Q4_K's `madd(mins, hadd(bsums))` over its 8
//! sub-blocks in a 4-lane `acc_m` of its own; Q5_K's the same summed to one integer in a scalar.
//! [`tile_seq_scalar`] is the definition; the AVX2 and AVX-512 VNNI kernels (`kquants_x86.rs`)
//! give the same bits, and kernels/tests/ggml_vec_dot.rs checks all of them against ggml.

use gguf_importer::quants::{Block, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, F16};
use gguf_importer::GgmlType;

use super::legacy::hsum8;
use super::quantize_act::ActQ8KSeq;
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

/// Where ggml's `ggml_vec_dot_<fmt>_q8_K` sums a format's mins (see the module doc).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum GgmlMins {
    /// No mins (Q3_K, Q6_K).
    None,
    /// In the 8 lanes of `acc`, before the super-block's scales (Q2_K).
    Lanes8,
    /// In a 4-lane `acc_m`, added after `acc`'s horizontal sum (Q4_K).
    Lanes4,
    /// In a scalar `summs`, added after `acc`'s horizontal sum (Q5_K).
    Scalar,
}

/// How ggml's x86 `ggml_vec_dot_<fmt>_q8_K` applies a format's offset and mins (see the module
/// doc): what the element-order kernels need beyond [`KQuant`].
pub(super) trait GgmlVecDot: KQuant {
    /// Whether the offset is taken off every `q` in the byte products (Q3_K) rather than
    /// through the group sums (Q6_K; no matter for formats without one).
    const INLINE_OFFSET: bool;
    const MINS: GgmlMins;
}

impl GgmlVecDot for BlockQ2K {
    const INLINE_OFFSET: bool = false;
    const MINS: GgmlMins = GgmlMins::Lanes8;
}
impl GgmlVecDot for BlockQ3K {
    const INLINE_OFFSET: bool = true;
    const MINS: GgmlMins = GgmlMins::None;
}
impl GgmlVecDot for BlockQ4K {
    const INLINE_OFFSET: bool = false;
    const MINS: GgmlMins = GgmlMins::Lanes4;
}
impl GgmlVecDot for BlockQ5K {
    const INLINE_OFFSET: bool = false;
    const MINS: GgmlMins = GgmlMins::Scalar;
}
impl GgmlVecDot for BlockQ6K {
    const INLINE_OFFSET: bool = false;
    const MINS: GgmlMins = GgmlMins::None;
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

/// The 12 packed scale bytes of Q3_K .. Q5_K as three little-endian u32 words.
#[inline(always)]
pub(super) fn scale_words(s: &[u8; 12]) -> [u32; 3] {
    std::array::from_fn(|i| {
        u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]])
    })
}

/// Q4_K/Q5_K's 8 scales and 8 mins ([`scales_k4`]'s layout) unpacked four per little-endian u32
/// word, from the 12 bytes as the words `a, b, c`:
///
/// ```text
/// sc[0..4] = a & 0x3f..                           mn[0..4] = b & 0x3f..
/// sc[4..8] = c & 0x0f.. | (a >> 6 & 0x03..) << 4  mn[4..8] = c >> 4 & 0x0f.. | (b >> 6 & 0x03..) << 4
/// ```
#[inline(always)]
pub(super) fn k4_scale_min_words(s: &[u8; 12]) -> ([u32; 2], [u32; 2]) {
    let [a, b, c] = scale_words(s);
    let sc = [
        a & 0x3f3f_3f3f,
        (c & 0x0f0f_0f0f) | (((a >> 6) & 0x0303_0303) << 4),
    ];
    let mn = [
        b & 0x3f3f_3f3f,
        ((c >> 4) & 0x0f0f_0f0f) | (((b >> 6) & 0x0303_0303) << 4),
    ];
    (sc, mn)
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

/// ggml's eight i32 lanes `sumi` of a super-block (`q` unpacked, scales `s`) against one activation
/// super-block (see the module doc).
#[inline(always)]
fn ggml_lanes<W: GgmlVecDot>(q: &[u8; 256], s: &KScales, x: &ActQ8KSeq) -> [i32; 8] {
    let i_off = if W::INLINE_OFFSET {
        W::OFFSET as i32
    } else {
        0
    };
    let mut sumi = [0i32; 8];
    for c in 0..8 {
        for (l, sumi) in sumi.iter_mut().enumerate() {
            let e = 32 * c + 4 * l;
            let dot: i32 = (e..e + 4)
                .map(|e| (q[e] as i32 - i_off) * x.qs[e] as i32)
                .sum();
            *sumi += s.sc[2 * c + l / 4] as i32 * dot;
        }
    }
    if !W::INLINE_OFFSET && W::OFFSET != 0 {
        for (l, sumi) in sumi.iter_mut().enumerate() {
            let g = |g: usize| s.sc[g] as i32 * x.bsums[g] as i32;
            *sumi -= W::OFFSET as i32 * (g(2 * l) + g(2 * l + 1));
        }
    }
    sumi
}

/// The portable element-order kernel (see [`TileFn`]): ggml's float order, as the module doc
/// writes it (the definition the SIMD kernels follow).
fn tile_seq_scalar<W: GgmlVecDot>(w: &[u8], row_bytes: usize, xs: &[&[ActQ8KSeq]], out: Out) {
    check_tile(w, row_bytes, size_of::<W>(), 1, xs, &out);
    let mut q = [0u8; 256];
    for (r, row) in w.chunks_exact(row_bytes).enumerate() {
        let blocks: &[W] = bytemuck::cast_slice(row);
        let mut acc = [[0f32; 8]; MAX_TILE];
        let mut acc_m = [[0f32; 4]; MAX_TILE];
        let mut summs = [0f32; MAX_TILE];
        for (b, block) in blocks.iter().enumerate() {
            let s = block.scales();
            let (wd, wdmin) = block.supers();
            let (wd, wdmin) = (wd.to_f32(), wdmin.to_f32());
            block.unpack(&mut q);
            for (i, x) in xs.iter().enumerate() {
                let x = &x[b];
                let (d, dmin) = (x.d * wd, -x.d * wdmin);
                let mins = |g: std::ops::Range<usize>| -> f32 {
                    g.map(|g| s.mn[g] as i32 * x.bsums[g] as i32).sum::<i32>() as f32
                };
                match W::MINS {
                    GgmlMins::None => {}
                    GgmlMins::Lanes8 => {
                        for (l, acc) in acc[i].iter_mut().enumerate() {
                            *acc = dmin.mul_add(mins(2 * l..2 * l + 2), *acc);
                        }
                    }
                    GgmlMins::Lanes4 => {
                        for (k, acc) in acc_m[i].iter_mut().enumerate() {
                            *acc = dmin.mul_add(mins(4 * k..4 * k + 4), *acc);
                        }
                    }
                    GgmlMins::Scalar => summs[i] = dmin.mul_add(mins(0..16), summs[i]),
                }
                let sumi = ggml_lanes::<W>(&q, &s, x);
                for (acc, sumi) in acc[i].iter_mut().zip(sumi) {
                    *acc = d.mul_add(sumi as f32, *acc);
                }
            }
        }
        for i in 0..xs.len() {
            let y = hsum8(&acc[i]);
            let y = match W::MINS {
                GgmlMins::Lanes4 => {
                    let m = acc_m[i];
                    y + ((m[0] + m[2]) + (m[1] + m[3]))
                }
                GgmlMins::Scalar => y + summs[i],
                _ => y,
            };
            out.set(r, i, y);
        }
    }
}

/// Whether llama.cpp multiplies `m` activation rows with a K-quant matrix (one it does not
/// repack) by `ggml_vec_dot_<fmt>_q8_K`, one activation row at a time ([`tile_fn_seq`], bit for
/// bit): fewer than 8 rows (decoding, short prompts); from 8 on it takes its tiled K-quant matmul
/// (`ggml_tiled_min_batch`, tiled_k.rs).
pub(super) fn uses_seq(m: usize) -> bool {
    m < 8
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
        GgmlType::Q2_K => tile_seq_scalar::<BlockQ2K>,
        GgmlType::Q3_K => tile_seq_scalar::<BlockQ3K>,
        GgmlType::Q4_K => tile_seq_scalar::<BlockQ4K>,
        GgmlType::Q5_K => tile_seq_scalar::<BlockQ5K>,
        GgmlType::Q6_K => tile_seq_scalar::<BlockQ6K>,
        _ => return None,
    })
}
