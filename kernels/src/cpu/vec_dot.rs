//! ggml's float dot products on x86 with AVX-512, in its order of operations: `vec_dot_f32`,
//! `vec_dot_f16` and one element of llamafile's tinyBLAS product, over 16 f32 lanes that portable
//! code or two AVX2 registers emulate with the same bits ([`Lanes16`]). The attention
//! ([`super::ggml_ops`]) and the float weights' matmul ([`super::float`]) sum with them, so that
//! the CPU devices give llama.cpp's results bit for bit (see `ggml_ops`' module documentation for
//! why that matters, and which build's orders these are).

/// Runs `$body` (a block) compiled with FMA and AVX2 when this CPU has them, else as portable code.
/// The results are the same either way ([`f32::mul_add`] is always one rounding; without the
/// target feature it is a call to the C library's `fmaf`): only the speed differs.
macro_rules! with_fma {
    ($body:block) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn fast<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            if std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has the features `fast` is compiled for.
                unsafe { fast(|| $body) }
            } else {
                $body
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $body
        }
    }};
}
pub(crate) use with_fma;

/// GCC's `_mm512_reduce_add_ps`: halves added, then quarters, then pairs.
#[inline(always)]
pub(crate) fn reduce16(v: &[f32; 16]) -> f32 {
    let t: [f32; 8] = std::array::from_fn(|j| v[j + 8] + v[j]);
    let t: [f32; 4] = std::array::from_fn(|j| t[j + 4] + t[j]);
    (t[0] + t[2]) + (t[1] + t[3])
}

/// 16 f32 lanes multiplied and added lane by lane, one rounding each (ggml's 16-lane FMA
/// vectors): portable code, or two AVX2 registers. Both give the same bits.
pub(crate) trait Lanes16 {
    /// `acc[l] = a[l] · b[l] + acc[l]` for every lane.
    ///
    /// # Safety
    /// The CPU must have the implementation's instruction set.
    unsafe fn fma(acc: &mut [f32; 16], a: &[f32; 16], b: &[f32; 16]);

    /// [`Lanes16::fma`] with `a` shorter than 16 (at most 16): the lanes past its end are left
    /// as they are, which is what adding `0 · b[l]` does for a finite `b[l]` (an accumulator
    /// started at +0 never holds -0). Nothing past the end of `a` is read.
    ///
    /// # Safety
    /// As [`Lanes16::fma`].
    unsafe fn fma_prefix(acc: &mut [f32; 16], a: &[f32], b: &[f32; 16]);

    /// [`vec_dot_steps`]: the whole steps of 64 of `x · y`, reduced, and how many elements they
    /// took. An implementation may keep the accumulators in registers; the bits are the same.
    ///
    /// # Safety
    /// As [`Lanes16::fma`].
    #[inline(always)]
    unsafe fn steps64(x: &[f32], y: &[f32]) -> (f32, usize)
    where
        Self: Sized,
    {
        let n = x.len().min(y.len());
        let whole = n - n % 64;
        let mut acc = [[0f32; 16]; 4];
        for (x, y) in x[..whole].chunks_exact(64).zip(y[..whole].chunks_exact(64)) {
            fma64::<Self>(&mut acc, x, y);
        }
        (reduce_acc4(&acc), whole)
    }

    /// `src` widened (exactly) into `dst` (as long).
    ///
    /// # Safety
    /// As [`Lanes16::fma`]; [`Avx2Fma`]'s also needs F16C.
    #[inline(always)]
    unsafe fn widen_f16(src: &[half::f16], dst: &mut [f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = s.to_f32();
        }
    }

    /// [`dot_tiny`]'s sums of `w` with each of the `N` rows `xs` (one 16-lane accumulator per
    /// row over the whole steps of 16 of `w`, reduced). An implementation may load each step of
    /// `w` once for all rows, as tinyBLAS's tiles do; the bits are the same.
    ///
    /// # Safety
    /// As [`Lanes16::fma`]; every `xs[j]` at least as long as `w`'s whole steps of 16.
    #[inline(always)]
    unsafe fn tiny16_rows<const N: usize>(w: &[f32], xs: [&[f32]; N]) -> [f32; N]
    where
        Self: Sized,
    {
        std::array::from_fn(|j| {
            let mut acc = [0f32; 16];
            for (w, x) in w.chunks_exact(16).zip(xs[j].chunks_exact(16)) {
                Self::fma(
                    &mut acc,
                    w.try_into().expect("16 lanes"),
                    x.try_into().expect("16 lanes"),
                );
            }
            reduce16(&acc)
        })
    }
}

pub(crate) struct Portable;

impl Lanes16 for Portable {
    #[inline(always)]
    unsafe fn fma(acc: &mut [f32; 16], a: &[f32; 16], b: &[f32; 16]) {
        for l in 0..16 {
            acc[l] = a[l].mul_add(b[l], acc[l]);
        }
    }

    #[inline(always)]
    unsafe fn fma_prefix(acc: &mut [f32; 16], a: &[f32], b: &[f32; 16]) {
        for ((acc, &a), &b) in acc.iter_mut().zip(a).zip(b) {
            *acc = a.mul_add(b, *acc);
        }
    }
}

/// AVX2 with FMA (the compiler leaves [`Portable`]'s lanes scalar).
#[cfg(target_arch = "x86_64")]
pub(crate) struct Avx2Fma;

#[cfg(target_arch = "x86_64")]
impl Lanes16 for Avx2Fma {
    /// Eight at a time with `vcvtph2ps`, inline (`half`'s slice conversion is a call per eight).
    #[inline(always)]
    unsafe fn widen_f16(src: &[half::f16], dst: &mut [f32]) {
        use std::arch::x86_64::*;
        let n = src.len().min(dst.len());
        let whole = n / 8 * 8;
        for (s, d) in src[..whole]
            .chunks_exact(8)
            .zip(dst[..whole].chunks_exact_mut(8))
        {
            // SAFETY: eight f16 (16 bytes) and eight f32; the caller's CPU has F16C.
            let h = _mm_loadu_si128(s.as_ptr() as *const __m128i);
            _mm256_storeu_ps(d.as_mut_ptr(), _mm256_cvtph_ps(h));
        }
        for (d, s) in dst[whole..n].iter_mut().zip(&src[whole..n]) {
            *d = s.to_f32();
        }
    }

    #[inline(always)]
    unsafe fn fma(acc: &mut [f32; 16], a: &[f32; 16], b: &[f32; 16]) {
        use std::arch::x86_64::*;
        for h in 0..2 {
            let (a, b, c) = (
                a.as_ptr().add(8 * h),
                b.as_ptr().add(8 * h),
                acc.as_mut_ptr().add(8 * h),
            );
            _mm256_storeu_ps(
                c,
                _mm256_fmadd_ps(_mm256_loadu_ps(a), _mm256_loadu_ps(b), _mm256_loadu_ps(c)),
            );
        }
    }

    #[inline(always)]
    unsafe fn fma_prefix(acc: &mut [f32; 16], a: &[f32], b: &[f32; 16]) {
        use std::arch::x86_64::*;
        let len = a.len().min(16) as i32;
        for h in 0..2 {
            // Lanes below the prefix's length load `a`, the others load zero and touch no
            // memory (`vmaskmovps`), so the pointer may point past `a`'s end.
            let mask = _mm256_cmpgt_epi32(
                _mm256_set1_epi32(len - 8 * h as i32),
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            );
            let (a, b, c) = (
                a.as_ptr().wrapping_add(8 * h),
                b.as_ptr().add(8 * h),
                acc.as_mut_ptr().add(8 * h),
            );
            _mm256_storeu_ps(
                c,
                _mm256_fmadd_ps(
                    _mm256_maskload_ps(a, mask),
                    _mm256_loadu_ps(b),
                    _mm256_loadu_ps(c),
                ),
            );
        }
    }

    /// The four accumulators in eight registers (two per 16 lanes), stored once at the end.
    #[inline(always)]
    unsafe fn steps64(x: &[f32], y: &[f32]) -> (f32, usize) {
        use std::arch::x86_64::*;
        let n = x.len().min(y.len());
        let whole = n - n % 64;
        let mut a = [_mm256_setzero_ps(); 8];
        let (xp, yp) = (x.as_ptr(), y.as_ptr());
        let mut s = 0;
        while s < whole {
            for (h, a) in a.iter_mut().enumerate() {
                // SAFETY: s + 8h + 8 ≤ whole ≤ the lengths of x and y.
                let o = s + 8 * h;
                *a = _mm256_fmadd_ps(_mm256_loadu_ps(xp.add(o)), _mm256_loadu_ps(yp.add(o)), *a);
            }
            s += 64;
        }
        let mut acc = [[0f32; 16]; 4];
        for (j, acc) in acc.iter_mut().enumerate() {
            _mm256_storeu_ps(acc.as_mut_ptr(), a[2 * j]);
            _mm256_storeu_ps(acc.as_mut_ptr().add(8), a[2 * j + 1]);
        }
        (reduce_acc4(&acc), whole)
    }

    /// Each row's accumulator in two registers, every step of `w` loaded once for all rows.
    #[inline(always)]
    unsafe fn tiny16_rows<const N: usize>(w: &[f32], xs: [&[f32]; N]) -> [f32; N] {
        use std::arch::x86_64::*;
        let n = w.len() / 16 * 16;
        let x: [&[f32]; N] = std::array::from_fn(|j| &xs[j][..n]);
        let mut acc = [[_mm256_setzero_ps(); 2]; N];
        let mut e = 0;
        while e < n {
            // SAFETY: e + 16 ≤ n ≤ the lengths of w and of every x[j].
            let w0 = _mm256_loadu_ps(w.as_ptr().add(e));
            let w1 = _mm256_loadu_ps(w.as_ptr().add(e + 8));
            for j in 0..N {
                acc[j][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[j].as_ptr().add(e)), acc[j][0]);
                acc[j][1] =
                    _mm256_fmadd_ps(w1, _mm256_loadu_ps(x[j].as_ptr().add(e + 8)), acc[j][1]);
            }
            e += 16;
        }
        std::array::from_fn(|j| {
            let mut lanes = [0f32; 16];
            _mm256_storeu_ps(lanes.as_mut_ptr(), acc[j][0]);
            _mm256_storeu_ps(lanes.as_mut_ptr().add(8), acc[j][1]);
            reduce16(&lanes)
        })
    }
}

/// ggml's `vec_dot_f32` (AVX-512): four 16-lane accumulators over steps of 64 elements, summed
/// `(a0 + a2) + (a1 + a3)` and reduced; then the elements past the last whole 64 one by one, as
/// GCC compiled ggml's scalar loop for them (read in the disassembly of llama.cpp's
/// `libggml-cpu.so`, llama-cpp-python 0.3.36): in runs of 16, then one run of 8 if 8 remain, each
/// product rounded and added in order (the loop vectorized, `vmulps` then `vaddss`), and the last
/// `< 8` as fused multiply-adds (the scalar epilogue, `vfmadd231ss`).
///
/// # Safety
/// As [`Lanes16::fma`].
#[inline(always)]
pub(crate) unsafe fn vec_dot_f32<L: Lanes16>(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len().min(y.len());
    let (mut s, whole) = vec_dot_steps::<L>(x, y);
    let tail = n - whole;
    let rounded = whole + tail / 16 * 16 + (tail % 16) / 8 * 8;
    for e in whole..rounded {
        s += x[e] * y[e];
    }
    for e in rounded..n {
        s = x[e].mul_add(y[e], s);
    }
    s
}

/// The whole steps of 64 elements of ggml's AVX-512 `vec_dot_f32` / `vec_dot_f16`: their
/// reduced sum, and how many elements they took.
///
/// # Safety
/// As [`Lanes16::fma`].
#[inline(always)]
unsafe fn vec_dot_steps<L: Lanes16>(x: &[f32], y: &[f32]) -> (f32, usize) {
    L::steps64(x, y)
}

/// ggml's `vec_dot_f16` (AVX-512) of two vectors already widened to f32: [`vec_dot_f32`]'s
/// whole steps and reduction, widened to f64, then the elements past the last whole 64 added one
/// by one in f64 (each product rounded to f32).
///
/// # Safety
/// As [`Lanes16::fma`].
#[inline(always)]
pub(crate) unsafe fn vec_dot_f16<L: Lanes16>(x: &[f32], y: &[f32]) -> f32 {
    let (s, whole) = vec_dot_steps::<L>(x, y);
    let mut s = s as f64;
    for e in whole..x.len().min(y.len()) {
        s += (x[e] * y[e]) as f64;
    }
    s as f32
}

/// One element of llamafile's tinyBLAS product: a single 16-lane accumulator over the whole
/// length (a multiple of 16), lane `l` taking the elements `≡ l (mod 16)` in order, reduced.
///
/// # Safety
/// As [`Lanes16::fma`].
#[inline(always)]
pub(crate) unsafe fn dot_tiny<L: Lanes16>(x: &[f32], y: &[f32]) -> f32 {
    L::tiny16_rows::<1>(x, [y])[0]
}

/// The end of [`vec_dot_f32`]'s whole steps: the four accumulators summed
/// `(a0 + a2) + (a1 + a3)` lane by lane, then reduced.
#[inline(always)]
pub(crate) fn reduce_acc4(acc: &[[f32; 16]; 4]) -> f32 {
    let sum: [f32; 16] = std::array::from_fn(|l| (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]));
    reduce16(&sum)
}

/// One step of 64 elements of [`vec_dot_f32`]: 16 lanes each of `x[16j ..]·y[16j ..]` into
/// `acc[j]`.
///
/// # Safety
/// As [`Lanes16::fma`].
#[inline(always)]
pub(crate) unsafe fn fma64<L: Lanes16>(acc: &mut [[f32; 16]; 4], x: &[f32], y: &[f32]) {
    for (j, acc) in acc.iter_mut().enumerate() {
        L::fma(
            acc,
            x[16 * j..][..16].try_into().expect("16 lanes"),
            y[16 * j..][..16].try_into().expect("16 lanes"),
        );
    }
}
