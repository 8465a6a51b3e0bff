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
use super::quantize_act::{ActQ8KSeq, KActivations};
use super::{check_tile, Isa, Out, TileFn, MAX_TILE};

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

/// The SIMD kernels, laid out as ggml's own: the lanes of a register are activation rows (16 with
/// AVX-512 VNNI, 8 per half of the band with AVX2), so no sum crosses lanes. The activations'
/// codes are transposed once per matmul into bands of 16 rows, per super-block 64 rows of four
/// consecutive elements of each activation row, offset by 128 to unsigned bytes ([`Band`]); then
/// each weight row, unpacked to signed values `w = q - offset`, meets them four elements at a
/// time (the four weight values broadcast: `vpdpbusd`, eight weight rows per load of the codes,
/// or `vpmaddubsw` and `vpmaddwd` with AVX2, exact: a pair of products is at most
/// 2 · 255 · 64), group by group into `s1` and `s2` lane-wise. The offset of the activations
/// adds `128 · Σ_g sc[g] · Σ_{e∈g} w_e` to `s1`, which comes off once per block
/// ([`Weights::corr`](x86::Weights)); then the block ends with the float steps of the module
/// documentation. The integers are exact, so these are the same bits as [`tile_portable`].
#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use std::arch::x86_64::*;

    use super::super::quantize_act::ActQ8KSeq;
    use super::super::x86_util::hsum_epi32;
    use super::super::{check_tile, check_tile_of, Out};
    use super::KQuant;

    /// One super-block of a tile of up to 16 activation rows, transposed: `codes[kg][j]` holds
    /// elements `4kg .. 4kg + 4` of row `j` offset by 128 (unsigned bytes `qa + 128`, what
    /// `vpdpbusd` takes as its unsigned operand, so that the signed weights can be its
    /// broadcast one), `bsums[g][j]` group `g`'s sum of row `j` (of the `qa`), `d[j]` its scale
    /// (zero for rows past the tile's end).
    #[repr(C, align(64))]
    #[derive(Clone)]
    pub(in super::super) struct Band {
        codes: [[u32; 16]; 64],
        bsums: [[i32; 16]; 16],
        d: [f32; 16],
    }

    /// A block of activations of up to 16 rows, transposed for the kernels that take bands
    /// ([`Band`] here, `repacked.rs`' 32-element one).
    pub(in super::super) trait BandFill: Clone + Send + Sync {
        /// The activation blocks it is made of.
        type Act: Sync;
        /// All zeros (rows past the end of a band stay so).
        const ZERO: Self;
        /// Block `b` of the rows `xs` (at most 16).
        fn fill(&mut self, xs: &[&[Self::Act]], b: usize);
    }

    /// Column `j` of a band's `codes`: the activations `qs` four at a time, offset by 128.
    #[inline(always)]
    pub(in super::super) fn fill_codes(codes: &mut [[u32; 16]], qs: &[i8], j: usize) {
        for (c, e) in codes.iter_mut().zip(qs.chunks_exact(4)) {
            let b = |e: i8| e as u8 ^ 0x80; // qa + 128
            c[j] = u32::from_le_bytes([b(e[0]), b(e[1]), b(e[2]), b(e[3])]);
        }
    }

    /// Writes the band kernels' results: `acc[r · n_bands + k][j]` is weight row `r` against
    /// activation row `16k + j`, for `m` activation rows; activation row by activation row
    /// (consecutive elements of y).
    pub(in super::super) fn write_bands(acc: &[[f32; 16]], n_bands: usize, m: usize, out: &Out) {
        let mut col = vec![0f32; acc.len() / n_bands];
        for i in 0..m {
            for (c, acc) in col.iter_mut().zip(acc.chunks_exact(n_bands)) {
                *c = acc[i / 16][i % 16];
            }
            out.set_col(i, &col);
        }
    }

    impl BandFill for Band {
        type Act = ActQ8KSeq;
        const ZERO: Band = Band {
            codes: [[0; 16]; 64],
            bsums: [[0; 16]; 16],
            d: [0.0; 16],
        };

        fn fill(&mut self, xs: &[&[ActQ8KSeq]], b: usize) {
            for (j, x) in xs.iter().enumerate() {
                let x = &x[b];
                fill_codes(&mut self.codes, &x.qs, j);
                for (g, s) in self.bsums.iter_mut().enumerate() {
                    s[j] = x.bsums[g] as i32;
                }
                self.d[j] = x.d;
            }
        }
    }

    /// The activation rows `xs` (each `nb` blocks) as bands of 16 rows: band `k`'s block `b` at
    /// `k · nb + b`; the bands built in parallel (a tile's one band runs on the calling thread).
    pub(in super::super) fn bands<B: BandFill>(xs: &[&[B::Act]], nb: usize) -> Vec<B> {
        use rayon::prelude::*;
        let mut bands = vec![B::ZERO; xs.len().div_ceil(16) * nb];
        bands
            .par_chunks_mut(nb)
            .zip(xs.par_chunks(16))
            .for_each(|(band, xs)| {
                for (b, band) in band.iter_mut().enumerate() {
                    band.fill(xs, b);
                }
            });
        bands
    }

    /// Activation row `i` of `m` as the kernels that take bands read it: its band's `nb`
    /// blocks (the 16 rows of a band share them).
    pub(in super::super) fn band_rows<B>(bands: &[B], m: usize, nb: usize) -> Vec<&[B]> {
        (0..m).map(|i| &bands[i / 16 * nb..][..nb]).collect()
    }

    /// The bands of a kernel's activation rows `xs` (from [`band_rows`]): each 16th row's.
    /// Panics if the rows of a band do not share it.
    pub(in super::super) fn bands_of<'a, B>(xs: &[&'a [B]]) -> Vec<&'a [B]> {
        for (i, x) in xs.iter().enumerate() {
            assert!(
                std::ptr::eq(*x, xs[i / 16 * 16]),
                "tile kernel: activation row {i} is not in its band"
            );
        }
        xs.iter().step_by(16).copied().collect()
    }

    /// A weight super-block, unpacked: its signed values `w = q - offset` four at a time (i8),
    /// scales, mins and f16 scales, and `corr = 128 · Σ_g sc[g] · Σ_{e∈g} w_e`, what the
    /// activations' offset of 128 in [`Band`] adds to `s1`.
    pub(in super::super) struct Weights {
        pub q4: [u32; 64],
        pub sc: [i32; 16],
        pub mn: [i32; 16],
        pub corr: i32,
        pub d: f32,
        pub dmin: f32,
    }

    impl Weights {
        pub fn zeroed() -> Weights {
            Weights {
                q4: [0; 64],
                sc: [0; 16],
                mn: [0; 16],
                corr: 0,
                d: 0.0,
                dmin: 0.0,
            }
        }

        /// Unpacks `block` into `self`.
        #[inline(always)]
        fn set<W: KQuant>(&mut self, block: &W, q: &mut [u8; 256]) {
            block.unpack(q);
            let s = block.scales();
            let (d, dmin) = block.supers();
            // every K-quant value q - offset is within -32..=63: an i8
            // SAFETY: the kernels that unpack run with AVX2; 32 bytes of q and of q4 at 32c.
            unsafe {
                let off = _mm256_set1_epi8(W::OFFSET as i8);
                for c in 0..8 {
                    let v = _mm256_loadu_si256(q[32 * c..].as_ptr() as *const __m256i);
                    let dst = self.q4[8 * c..].as_mut_ptr() as *mut __m256i;
                    _mm256_storeu_si256(dst, _mm256_sub_epi8(v, off));
                }
            }
            for g in 0..16 {
                self.sc[g] = s.sc[g] as i32;
                self.mn[g] = s.mn[g] as i32;
            }
            // SAFETY: the kernels that unpack run with AVX2.
            unsafe { self.set_corr() };
            self.d = d.to_f32();
            self.dmin = dmin.to_f32();
        }

        /// `corr` from `q4` and `sc` (every `sc` within the i16 range).
        ///
        /// # Safety
        /// The CPU must have AVX2.
        #[inline(always)]
        pub unsafe fn set_corr(&mut self) {
            let ones = _mm256_set1_epi8(1);
            let mut acc = _mm256_setzero_si256();
            for c in 0..8 {
                // SAFETY: q4[8c .. 8c + 8] is 32 bytes.
                let w = _mm256_loadu_si256(self.q4[8 * c..].as_ptr() as *const __m256i);
                // the i16 sums of pairs of values, then each group's four pairs times its scale
                let pairs = _mm256_maddubs_epi16(ones, w);
                let sc = _mm256_set_m128i(
                    _mm_set1_epi16(self.sc[2 * c + 1] as i16),
                    _mm_set1_epi16(self.sc[2 * c] as i16),
                );
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, sc));
            }
            self.corr = 128 * hsum_epi32(acc);
        }
    }

    /// The block's contribution for the 16 rows of the band, AVX-512 VNNI.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F and VNNI.
    #[inline(always)]
    unsafe fn block_vnni(band: &Band, wb: &Weights, acc: __m512, has_mins: bool) -> __m512 {
        // SAFETY (all loads): `Band` is align(64) and each of its rows 64 bytes at a multiple
        // of 64: aligned 512-bit loads within it.
        let (mut s1, mut s2) = (_mm512_setzero_si512(), _mm512_setzero_si512());
        for g in 0..16 {
            let mut raw = _mm512_setzero_si512();
            for kg in 4 * g..4 * g + 4 {
                let codes = _mm512_load_si512(band.codes[kg].as_ptr() as *const __m512i);
                raw = _mm512_dpbusd_epi32(raw, codes, _mm512_set1_epi32(wb.q4[kg] as i32));
            }
            s1 = _mm512_add_epi32(s1, _mm512_mullo_epi32(raw, _mm512_set1_epi32(wb.sc[g])));
            if has_mins {
                let bs = _mm512_load_si512(band.bsums[g].as_ptr() as *const __m512i);
                s2 = _mm512_add_epi32(s2, _mm512_mullo_epi32(bs, _mm512_set1_epi32(wb.mn[g])));
            }
        }
        let s1 = _mm512_sub_epi32(s1, _mm512_set1_epi32(wb.corr));
        let mut f = _mm512_mul_ps(_mm512_cvtepi32_ps(s1), _mm512_set1_ps(wb.d));
        if has_mins {
            f = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(s2), _mm512_set1_ps(wb.dmin), f);
        }
        _mm512_fmadd_ps(f, _mm512_load_ps(band.d.as_ptr()), acc)
    }

    /// Whether every weight block of `ws` has the same scale (and min) for both groups of 16 of
    /// each sub-block of 32 (IQ4_XS, IQ3_S, Q4_K ...): then [`block_vnni_8`] sums 32 elements
    /// per scale step. Integer sums either way, so the same result.
    #[inline(always)]
    fn paired(ws: &[Weights; 8]) -> bool {
        ws.iter().all(|w| {
            (0..8).all(|s| w.sc[2 * s] == w.sc[2 * s + 1] && w.mn[2 * s] == w.mn[2 * s + 1])
        })
    }

    /// [`block_vnni`] for eight weight rows at once: each load of the band's codes meets the
    /// eight rows' values (eight independent `vpdpbusd` chains, each weight broadcast from
    /// memory within the instruction). `acc[t]` is row `t`'s accumulator of the band's 16 rows.
    /// Exact integer sums and the same float steps per row: [`block_vnni`]'s bits.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F and VNNI; each `acc[t]` points to 16 writable floats.
    #[inline(always)]
    unsafe fn block_vnni_8<const PAIRS: bool>(
        band: &Band,
        ws: &[Weights; 8],
        acc: [*mut f32; 8],
        has_mins: bool,
    ) {
        // SAFETY (band loads): as in `block_vnni`.
        // code groups of four per scale step, and scale steps per super-block
        let step = if PAIRS { 8 } else { 4 };
        let mut s1 = [_mm512_setzero_si512(); 8];
        for s in 0..64 / step {
            let mut raw = [_mm512_setzero_si512(); 8];
            for kg in step * s..step * s + step {
                let codes = _mm512_load_si512(band.codes[kg].as_ptr() as *const __m512i);
                for t in 0..8 {
                    let w = _mm512_set1_epi32(ws[t].q4[kg] as i32);
                    raw[t] = _mm512_dpbusd_epi32(raw[t], codes, w);
                }
            }
            let g = if PAIRS { 2 * s } else { s };
            for t in 0..8 {
                let sc = _mm512_set1_epi32(ws[t].sc[g]);
                s1[t] = _mm512_add_epi32(s1[t], _mm512_mullo_epi32(raw[t], sc));
            }
        }
        let dx = _mm512_load_ps(band.d.as_ptr());
        for t in 0..8 {
            let s1 = _mm512_sub_epi32(s1[t], _mm512_set1_epi32(ws[t].corr));
            let mut f = _mm512_mul_ps(_mm512_cvtepi32_ps(s1), _mm512_set1_ps(ws[t].d));
            if has_mins {
                let mut s2 = _mm512_setzero_si512();
                for g in 0..16 {
                    let bs = _mm512_load_si512(band.bsums[g].as_ptr() as *const __m512i);
                    let mn = _mm512_set1_epi32(ws[t].mn[g]);
                    s2 = _mm512_add_epi32(s2, _mm512_mullo_epi32(bs, mn));
                }
                f = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(s2), _mm512_set1_ps(ws[t].dmin), f);
            }
            // SAFETY: 16 floats at acc[t] (the caller's contract).
            let a = _mm512_fmadd_ps(f, dx, _mm512_loadu_ps(acc[t]));
            _mm512_storeu_ps(acc[t], a);
        }
    }

    /// The block's contribution for the 8 rows of half `h` of the band, AVX2.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; `h < 2`.
    #[inline(always)]
    unsafe fn block_avx2(
        band: &Band,
        h: usize,
        wb: &Weights,
        acc: __m256,
        has_mins: bool,
    ) -> __m256 {
        // SAFETY (all loads): 8 elements at 8h (h < 2) of a 16-element row of `Band`.
        let ld = |p: *const i32| _mm256_loadu_si256(p.add(8 * h) as *const __m256i);
        let ones = _mm256_set1_epi16(1);
        let (mut s1, mut s2) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        for g in 0..16 {
            let mut raw = _mm256_setzero_si256();
            for kg in 4 * g..4 * g + 4 {
                let codes = ld(band.codes[kg].as_ptr() as *const i32);
                let pairs = _mm256_maddubs_epi16(codes, _mm256_set1_epi32(wb.q4[kg] as i32));
                raw = _mm256_add_epi32(raw, _mm256_madd_epi16(pairs, ones));
            }
            s1 = _mm256_add_epi32(s1, _mm256_mullo_epi32(raw, _mm256_set1_epi32(wb.sc[g])));
            if has_mins {
                let bs = ld(band.bsums[g].as_ptr());
                s2 = _mm256_add_epi32(s2, _mm256_mullo_epi32(bs, _mm256_set1_epi32(wb.mn[g])));
            }
        }
        let s1 = _mm256_sub_epi32(s1, _mm256_set1_epi32(wb.corr));
        let mut f = _mm256_mul_ps(_mm256_cvtepi32_ps(s1), _mm256_set1_ps(wb.d));
        if has_mins {
            f = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(s2), _mm256_set1_ps(wb.dmin), f);
        }
        let dx = _mm256_castsi256_ps(ld(band.d.as_ptr() as *const i32));
        _mm256_fmadd_ps(f, dx, acc)
    }

    /// Every weight row of `w` against the `m` activation rows in `bands`, super-block by
    /// super-block, into `out`.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA, and with `VNNI` AVX-512 F, BW, VL and VNNI; the shapes
    /// were checked by the caller (`check_tile` or `check_tile_of`: whole super-blocks, every
    /// activation row `nb` blocks).
    #[inline(always)]
    unsafe fn tile_body<W: KQuant, const VNNI: bool>(
        w: &[u8],
        row_bytes: usize,
        bands: (&[&[Band]], usize),
        out: &Out,
    ) {
        let mut q = [0u8; 256];
        tile_body_with::<VNNI>(
            w,
            row_bytes,
            size_of::<W>(),
            bands,
            out,
            W::HAS_MINS,
            |bytes: &[u8], wb: &mut Weights| wb.set::<W>(bytemuck::from_bytes(bytes), &mut q),
        )
    }

    /// [`tile_body`] for super-blocks of `size` bytes that `weights` unpacks (with mins or not):
    /// the K-quants, and with AVX-512 VNNI the i-quants
    /// (`iquants_x86.rs`), on `m` activation rows in the bands `bands` (band `k`: rows
    /// `16k .. 16k + 16`, its `nb` super-blocks).
    ///
    /// # Safety
    /// As [`tile_body`], with `bands` one per 16 of the `m` rows, each of `nb` super-blocks;
    /// without `VNNI`, every weight value must be within -64..=64 (the AVX2 pairs of products
    /// with the activations offset by 128 fit i16 then).
    #[inline(always)]
    pub(in super::super) unsafe fn tile_body_with<const VNNI: bool>(
        w: &[u8],
        row_bytes: usize,
        size: usize,
        (bands, m): (&[&[Band]], usize),
        out: &Out,
        has_mins: bool,
        mut weights: impl FnMut(&[u8], &mut Weights),
    ) {
        let nb = row_bytes / size;
        let n_rows = w.len() / row_bytes;
        // The activation rows in bands of 16 (one unless a caller hands more than a tile: the
        // AVX-512 VNNI prefill takes all its rows, so each weight block is unpacked once for
        // all of them).
        let n_bands = m.div_ceil(16);
        assert!(
            bands.len() == n_bands && bands.iter().all(|b| b.len() == nb),
            "tiled kernel: bands for {m} rows of {nb} super-blocks"
        );
        let mut acc = vec![[0f32; 16]; n_rows * n_bands];
        // the unpacked blocks of a group of weight rows, reused from group to group
        let mut group: [Weights; 8] = std::array::from_fn(|_| Weights::zeroed());
        for b in 0..nb {
            // Weight rows in groups of 8: the group's blocks unpacked once, then each band (in
            // L1 while the group uses it) against all of them.
            for (g, acc) in acc.chunks_mut(8 * n_bands).enumerate() {
                let n = acc.len() / n_bands;
                for (i, wb) in group.iter_mut().take(n).enumerate() {
                    weights(&w[(8 * g + i) * row_bytes + b * size..][..size], wb);
                }
                let group = &group[..n];
                // whether the eight rows' scales pair (the same for every band)
                let eight: Option<(&[Weights; 8], bool)> = match group.try_into() {
                    Ok(ws) if VNNI => Some((ws, paired(ws))),
                    _ => None,
                };
                for (k, band) in bands.iter().map(|band| &band[b]).enumerate() {
                    if let Some((ws, pairs)) = eight {
                        let base = acc.as_mut_ptr();
                        // SAFETY: acc holds 8 · n_bands rows of 16 floats; row t's band k is
                        // element t · n_bands + k < 8 · n_bands.
                        let rows =
                            std::array::from_fn(|t| (*base.add(t * n_bands + k)).as_mut_ptr());
                        if pairs {
                            block_vnni_8::<true>(band, ws, rows, has_mins);
                        } else {
                            block_vnni_8::<false>(band, ws, rows, has_mins);
                        }
                        continue;
                    }
                    for (wb, acc) in group.iter().zip(acc.chunks_exact_mut(n_bands)) {
                        let acc = &mut acc[k];
                        if VNNI {
                            let a = block_vnni(band, wb, _mm512_loadu_ps(acc.as_ptr()), has_mins);
                            _mm512_storeu_ps(acc.as_mut_ptr(), a);
                        } else {
                            for h in 0..(m - 16 * k).min(16).div_ceil(8) {
                                let p = acc.as_mut_ptr().add(8 * h);
                                let a = block_avx2(band, h, wb, _mm256_loadu_ps(p), has_mins);
                                _mm256_storeu_ps(p, a);
                            }
                        }
                    }
                }
            }
        }
        write_bands(&acc, n_bands, m, out);
    }

    /// # Safety
    /// As [`tile_body_with`] with `VNNI`.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn tile_vnni_tf<W: KQuant>(w: &[u8], rb: usize, xs: &[&[Band]], out: &Out) {
        tile_body::<W, true>(w, rb, (&bands_of(xs), xs.len()), out)
    }

    /// # Safety
    /// As [`tile_body`] without `VNNI`.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile_avx2_tf<W: KQuant>(w: &[u8], rb: usize, xs: &[&[ActQ8KSeq]], out: &Out) {
        let nb = rb / size_of::<W>();
        let owned: Vec<Band> = bands(xs, nb);
        let views: Vec<&[Band]> = owned.chunks_exact(nb).collect();
        tile_body::<W, false>(w, rb, (&views, xs.len()), out)
    }

    /// The AVX-512 VNNI kernel (see [`super::super::TileFn`]), on all activation rows at once
    /// in bands ([`bands`], [`band_rows`]).
    pub(super) fn tile_vnni<W: KQuant>(w: &[u8], rb: usize, xs: &[&[Band]], out: Out) {
        check_tile_of(w, rb, size_of::<W>(), 1, xs, &out, usize::MAX);
        // SAFETY: `tile_fn` hands this kernel out for `Isa::Avx512Vnni` only, and `with_kernel`
        // checked that this CPU runs it; the shapes were checked just above.
        unsafe { tile_vnni_tf::<W>(w, rb, xs, &out) }
    }

    /// The AVX2 kernel (see [`super::super::TileFn`]).
    pub(super) fn tile_avx2<W: KQuant>(w: &[u8], rb: usize, xs: &[&[ActQ8KSeq]], out: Out) {
        check_tile(w, rb, size_of::<W>(), 1, xs, &out);
        // SAFETY: `tile_fn` hands this kernel out for `Isa::Avx2` only, and `with_kernel`
        // checked that this CPU runs it; the shapes were checked just above.
        unsafe { tile_avx2_tf::<W>(w, rb, xs, &out) }
    }
}

/// The kernel of the K-quant `ty` in the tiled order on `isa` for tiles of at most 16 rows
/// (element order, `quantize_k_seq`); `None` for other types. With AVX-512 VNNI
/// [`tile_fn_bands`] takes the rows instead.
pub(super) fn tile_fn(ty: GgmlType, isa: Isa) -> Option<TileFn<ActQ8KSeq>> {
    #[cfg(target_arch = "x86_64")]
    if matches!(isa, Isa::Avx2 | Isa::Avx512Vnni) {
        return Some(match ty {
            GgmlType::Q2_K => x86::tile_avx2::<BlockQ2K>,
            GgmlType::Q3_K => x86::tile_avx2::<BlockQ3K>,
            GgmlType::Q4_K => x86::tile_avx2::<BlockQ4K>,
            GgmlType::Q5_K => x86::tile_avx2::<BlockQ5K>,
            GgmlType::Q6_K => x86::tile_avx2::<BlockQ6K>,
            _ => return None,
        });
    }
    let _ = isa;
    Some(match ty {
        GgmlType::Q2_K => tile_portable::<BlockQ2K, ActQ8KSeq>,
        GgmlType::Q3_K => tile_portable::<BlockQ3K, ActQ8KSeq>,
        GgmlType::Q4_K => tile_portable::<BlockQ4K, ActQ8KSeq>,
        GgmlType::Q5_K => tile_portable::<BlockQ5K, ActQ8KSeq>,
        GgmlType::Q6_K => tile_portable::<BlockQ6K, ActQ8KSeq>,
        _ => return None,
    })
}

/// The AVX-512 VNNI kernel of the K-quant `ty` in the tiled order, on all activation rows at
/// once in bands of 16 (`x86::bands`); `None` for other types. Call only on a CPU with
/// AVX-512 F, BW, VL and VNNI.
#[cfg(target_arch = "x86_64")]
pub(super) fn tile_fn_bands(ty: GgmlType) -> Option<TileFn<x86::Band>> {
    Some(match ty {
        GgmlType::Q2_K => x86::tile_vnni::<BlockQ2K>,
        GgmlType::Q3_K => x86::tile_vnni::<BlockQ3K>,
        GgmlType::Q4_K => x86::tile_vnni::<BlockQ4K>,
        GgmlType::Q5_K => x86::tile_vnni::<BlockQ5K>,
        GgmlType::Q6_K => x86::tile_vnni::<BlockQ6K>,
        _ => return None,
    })
}
