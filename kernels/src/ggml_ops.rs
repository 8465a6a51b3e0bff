//! The layer operations of [`crate::cpu::ggml_ops`] (RMS norm, RoPE, attention over the KV cache,
//! SwiGLU, the matmul of f32 weights, in ggml's x86 order) as a Burn backend extension of the CPU devices.
//!
//! Only `Flex` and `NdArray` implement [`GgmlOpsBackend`]: the model calls these functions when
//! its activations are on one of them ([`runs_on`]) and composes Burn's own tensor operations
//! everywhere else (wgpu, and the autodiff devices, which need the gradients of Burn's ops). The
//! inputs are read in place when contiguous (the KV cache always is: pass the whole cache tensors,
//! not views of their first positions).

// Burn deprecates NdArray in favour of Flex; this project still supports it.
#![allow(deprecated)]

use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{backend_extension, Backend, Dispatch, TensorMetadata};
use burn::tensor::{DType, Device, Int, Tensor};

use rayon::prelude::*;

use crate::cpu::ggml_ops::{self, AttentionShape, KvSlice};

/// The element type of a KV cache tensor on the CPU devices, which hold its bits in an integer
/// tensor of [`cache_bits_dtype`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheElem {
    F32,
    F16,
    /// ggml's `block_q8_0`s (keys only: llama.cpp's quantized values need flash attention).
    Q8_0,
}

/// The integer dtype that holds the bits of `elem`: `U32` for f32, `U16` for f16, `U8` (the
/// blocks' bytes) for q8_0.
pub fn cache_bits_dtype(elem: CacheElem) -> DType {
    match elem {
        CacheElem::F32 => DType::U32,
        CacheElem::F16 => DType::U16,
        CacheElem::Q8_0 => DType::U8,
    }
}

/// The last dimension of a cache tensor holding rows of `n` elements as `elem`: `n`, or the
/// bytes of its `n / 32` q8_0 blocks.
pub fn cache_row_len(elem: CacheElem, n: usize) -> usize {
    match elem {
        CacheElem::F32 | CacheElem::F16 => n,
        CacheElem::Q8_0 => n / 32 * 34,
    }
}

/// The layer operations in ggml's order (see [`crate::cpu::ggml_ops`] for each one's definition).
#[backend_extension(Flex: cfg(feature = "flex"), NdArray: cfg(feature = "ndarray"))]
pub trait GgmlOpsBackend: Backend {
    /// `x` `[.., dim]`, `w` `[dim]` -> `x / rms(x) · w`, shaped as `x`.
    fn ggml_rms_norm(x: FloatTensor<Self>, w: FloatTensor<Self>, eps: f32) -> FloatTensor<Self>;

    /// `x` `[batch, seq, heads, head_dim]` rotated by `cache` `[seq, n_rot]` (cos, sin pairs).
    fn ggml_rope(
        x: FloatTensor<Self>,
        cache: FloatTensor<Self>,
        n_rot: usize,
        neox: bool,
    ) -> FloatTensor<Self>;

    /// ggml's orthonormal Walsh-Hadamard transform of every `n` consecutive elements of `x`
    /// (`n` a power of two dividing the last dimension), shaped as `x`.
    fn ggml_fwht(x: FloatTensor<Self>, n: usize) -> FloatTensor<Self>;

    /// `silu(g) · u`, both `[.., n]`.
    fn ggml_swiglu(g: FloatTensor<Self>, u: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `gelu(g) · u`, both `[.., n]` (GELU's tanh approximation looked up in ggml's f16 table).
    fn ggml_geglu(g: FloatTensor<Self>, u: FloatTensor<Self>) -> FloatTensor<Self>;

    /// Causal attention of `q` `[batch, seq, n_head, key_length]` over the caches `k`
    /// `[batch, n_head_kv, capacity, key_length]` and `vt` (the values transposed, as llama.cpp
    /// caches them) `[batch, n_head_kv, value_length, capacity]` whose positions
    /// `start .. start + seq` hold the new keys and values; later positions are not read:
    /// `[batch, seq, n_head · value_length]`. `k` and `vt` hold the bits of their elements
    /// ([`cache_bits`]); each may be f32 or f16, and `k` q8_0 (its last dimension then the
    /// blocks' bytes, [`cache_row_len`]). With a `window` (0: none), query `i` sees only the last
    /// `window` of its keys.
    fn ggml_attention(
        q: FloatTensor<Self>,
        k: IntTensor<Self>,
        vt: IntTensor<Self>,
        start: usize,
        scale: f32,
        window: usize,
    ) -> FloatTensor<Self>;

    /// `x` `[m, k]` times `w` `[n, k]` transposed: `[m, n]`, f32 weights in ggml's order (its
    /// `mul_mat` of an F32 matrix: see [`crate::cpu::qmatmul`]).
    fn ggml_mul_mat(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self>;

    /// The bits of `x` stored as `elem`: f32 bits in `u32`, `x` rounded to f16 (ties to even,
    /// as ggml's `fp32_to_fp16`) in `u16`, shaped as `x`; or the last dimension's rows quantized to
    /// ggml's `block_q8_0`s in `u8`, the last dimension [`cache_row_len`] (a multiple of 32 long).
    fn ggml_cache_bits(x: FloatTensor<Self>, elem: CacheElem) -> IntTensor<Self>;
}

/// Whether tensors on `device` take these operations: the plain CPU devices (flex, ndarray), not
/// wgpu and not an autodiff device.
pub fn runs_on(device: &Device) -> bool {
    crate::extension::is_cpu_device(device)
}

/// ggml's `rms_norm` then `mul` over the last dimension of `x` (a [`runs_on`] device).
pub fn rms_norm<const D: usize>(x: Tensor<D>, w: Tensor<1>, eps: f32) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as GgmlOpsBackend>::ggml_rms_norm(
        x.into_dispatch(),
        w.into_dispatch(),
        eps,
    ))
}

/// ggml's `rope` of `x` `[batch, seq, heads, head_dim]` by `cache` `[seq, n_rot]` (`(cos θ, sin θ)`
/// per pair and position); `neox` pairs `i` with `i + n_rot / 2`, else adjacent elements.
pub fn rope(x: Tensor<4>, cache: Tensor<2>, n_rot: usize, neox: bool) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as GgmlOpsBackend>::ggml_rope(
        x.into_dispatch(),
        cache.into_dispatch(),
        n_rot,
        neox,
    ))
}

/// ggml's `fwht` of every `n` consecutive elements of `x` (see [`GgmlOpsBackend::ggml_fwht`]).
pub fn fwht<const D: usize>(x: Tensor<D>, n: usize) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as GgmlOpsBackend>::ggml_fwht(
        x.into_dispatch(),
        n,
    ))
}

/// ggml's `swiglu`: `silu(g) · u`.
pub fn swiglu<const D: usize>(g: Tensor<D>, u: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as GgmlOpsBackend>::ggml_swiglu(
        g.into_dispatch(),
        u.into_dispatch(),
    ))
}

/// ggml's `geglu`: `gelu(g) · u` (see [`GgmlOpsBackend::ggml_geglu`]).
pub fn geglu<const D: usize>(g: Tensor<D>, u: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as GgmlOpsBackend>::ggml_geglu(
        g.into_dispatch(),
        u.into_dispatch(),
    ))
}

/// Causal grouped-query attention (see [`GgmlOpsBackend::ggml_attention`]), each query seeing
/// at most the last `window` keys when given: `[batch, seq, n_head · value_length]`.
pub fn attention(
    q: Tensor<4>,
    k: Tensor<4, Int>,
    vt: Tensor<4, Int>,
    start: usize,
    scale: f32,
    window: Option<usize>,
) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as GgmlOpsBackend>::ggml_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        vt.into_dispatch(),
        start,
        scale,
        window.unwrap_or(0),
    ))
}

/// ggml's `mul_mat` of f32 weights `w` `[n, k]` and `x` `[m, k]`: `x · wᵀ`, `[m, n]` (see
/// [`GgmlOpsBackend::ggml_mul_mat`]).
pub fn mul_mat(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as GgmlOpsBackend>::ggml_mul_mat(
        x.into_dispatch(),
        w.into_dispatch(),
    ))
}

/// `x` as a KV cache of the CPU devices stores it (see [`GgmlOpsBackend::ggml_cache_bits`]).
pub fn cache_bits<const D: usize>(x: Tensor<D>, elem: CacheElem) -> Tensor<D, Int> {
    Tensor::from_dispatch(<Dispatch as GgmlOpsBackend>::ggml_cache_bits(
        x.into_dispatch(),
        elem,
    ))
}

/// Host access to a CPU backend's f32 tensors.
trait Host: Backend {
    /// `f` of the tensor's elements in row-major order (borrowed when contiguous).
    fn read<R>(t: &FloatTensor<Self>, f: impl FnOnce(&[f32]) -> R) -> R;
    /// A tensor of `shape` holding `data`.
    fn make(data: Vec<f32>, shape: Vec<usize>) -> FloatTensor<Self>;
    /// `f` of a cache tensor's elements ([`cache_bits`]) in row-major order.
    fn read_cache<R>(t: &IntTensor<Self>, f: impl FnOnce(KvSlice) -> R) -> R;
    /// An integer tensor of `shape` holding `data`.
    fn make_int<E: burn::tensor::Element>(data: Vec<E>, shape: Vec<usize>) -> IntTensor<Self>;
}

#[cfg(feature = "flex")]
impl Host for burn::backend::Flex {
    fn read<R>(t: &FloatTensor<Self>, f: impl FnOnce(&[f32]) -> R) -> R {
        match t.as_slice::<f32>() {
            Some(s) => f(s),
            None => {
                let c = t.clone().to_contiguous();
                f(c.as_slice::<f32>().expect("ggml ops: tensors must be f32"))
            }
        }
    }

    fn make(data: Vec<f32>, shape: Vec<usize>) -> FloatTensor<Self> {
        use burn::tensor::TensorData;
        burn::backend::flex::FlexTensor::from_data(TensorData::new(data, shape))
    }

    fn read_cache<R>(t: &IntTensor<Self>, f: impl FnOnce(KvSlice) -> R) -> R {
        let c;
        let contiguous = t.as_slice::<u32>().is_some()
            || t.as_slice::<u16>().is_some()
            || t.as_slice::<u8>().is_some();
        let t = match contiguous {
            true => t,
            false => {
                c = t.to_contiguous();
                &c
            }
        };
        if let Some(s) = t.as_slice::<u32>() {
            return f(KvSlice::F32(bytemuck::cast_slice(s)));
        }
        if let Some(s) = t.as_slice::<u8>() {
            return f(KvSlice::Q8_0(s));
        }
        match t.as_slice::<u16>() {
            Some(s) => f(KvSlice::F16(bytemuck::cast_slice(s))),
            None => panic!(
                "ggml attention: cache tensors hold u32, u16 or u8 bits, got {:?}",
                t.dtype()
            ),
        }
    }

    fn make_int<E: burn::tensor::Element>(data: Vec<E>, shape: Vec<usize>) -> IntTensor<Self> {
        use burn::tensor::TensorData;
        burn::backend::flex::FlexTensor::from_data(TensorData::new(data, shape))
    }
}

#[cfg(feature = "ndarray")]
impl Host for burn::backend::NdArray {
    fn read<R>(t: &FloatTensor<Self>, f: impl FnOnce(&[f32]) -> R) -> R {
        use burn::backend::ndarray::NdArrayTensor;
        let NdArrayTensor::F32(a) = t else {
            panic!("ggml ops: tensors must be f32");
        };
        let view = a.view();
        match view.as_slice() {
            Some(s) => f(s),
            None => f(&view.iter().copied().collect::<Vec<f32>>()),
        }
    }

    fn make(data: Vec<f32>, shape: Vec<usize>) -> FloatTensor<Self> {
        use burn::backend::ndarray::NdArrayTensor;
        use burn::tensor::TensorData;
        NdArrayTensor::from_data(TensorData::new(data, shape))
    }

    fn read_cache<R>(t: &IntTensor<Self>, f: impl FnOnce(KvSlice) -> R) -> R {
        use burn::backend::ndarray::NdArrayTensor;
        // `f` of the storage's elements in row-major order (borrowed when contiguous).
        macro_rules! with_slice {
            ($a:expr, $kind:ident) => {{
                let view = $a.view();
                match view.as_slice() {
                    Some(s) => f(KvSlice::$kind(bytemuck::cast_slice(s))),
                    None => {
                        let v: Vec<_> = view.iter().copied().collect();
                        f(KvSlice::$kind(bytemuck::cast_slice(&v)))
                    }
                }
            }};
        }
        match t {
            NdArrayTensor::U32(a) => with_slice!(a, F32),
            NdArrayTensor::U16(a) => with_slice!(a, F16),
            NdArrayTensor::U8(a) => with_slice!(a, Q8_0),
            other => panic!(
                "ggml attention: cache tensors hold u32, u16 or u8 bits, got {:?}",
                other.dtype()
            ),
        }
    }

    fn make_int<E: burn::tensor::Element>(data: Vec<E>, shape: Vec<usize>) -> IntTensor<Self> {
        use burn::backend::ndarray::NdArrayTensor;
        use burn::tensor::TensorData;
        NdArrayTensor::from_data(TensorData::new(data, shape))
    }
}

/// `f(a, b, y)` into a new tensor shaped as `a` (`y` as long as `a`).
fn elementwise2<B: Host>(
    a: FloatTensor<B>,
    b: FloatTensor<B>,
    f: impl FnOnce(&[f32], &[f32], &mut [f32]),
) -> FloatTensor<B> {
    let shape = a.shape().to_vec();
    let out = B::read(&a, |a| {
        B::read(&b, |b| {
            let mut y = vec![0f32; a.len()];
            f(a, b, &mut y);
            y
        })
    });
    B::make(out, shape)
}

fn host_rms_norm<B: Host>(x: FloatTensor<B>, w: FloatTensor<B>, eps: f32) -> FloatTensor<B> {
    elementwise2::<B>(x, w, |x, w, y| ggml_ops::rms_norm_mul(x, w, eps, y))
}

fn host_rope<B: Host>(
    x: FloatTensor<B>,
    cache: FloatTensor<B>,
    n_rot: usize,
    neox: bool,
) -> FloatTensor<B> {
    let shape = x.shape().to_vec();
    let [batch, seq, _, head_dim] = shape[..] else {
        panic!("ggml rope: x must be [batch, seq, heads, head_dim], got {shape:?}");
    };
    let mut out = B::read(&x, |x| x.to_vec());
    B::read(&cache, |cache| {
        assert_eq!(
            cache.len(),
            seq * n_rot,
            "ggml rope: cache must be [seq, n_rot]"
        );
        let per_batch = out.len() / batch.max(1);
        for x in out.chunks_exact_mut(per_batch) {
            ggml_ops::rope(x, cache, head_dim, n_rot, neox);
        }
    });
    B::make(out, shape)
}

fn host_fwht<B: Host>(x: FloatTensor<B>, n: usize) -> FloatTensor<B> {
    let shape = x.shape().to_vec();
    let mut out = B::read(&x, |x| x.to_vec());
    ggml_ops::fwht(&mut out, n);
    B::make(out, shape)
}

fn host_swiglu<B: Host>(g: FloatTensor<B>, u: FloatTensor<B>) -> FloatTensor<B> {
    let shape = g.shape().to_vec();
    assert_eq!(shape, u.shape().to_vec(), "ggml swiglu: shapes differ");
    let n = *shape.last().expect("ggml swiglu: a scalar");
    elementwise2::<B>(g, u, |g, u, y| ggml_ops::swiglu(g, u, n, y))
}

fn host_geglu<B: Host>(g: FloatTensor<B>, u: FloatTensor<B>) -> FloatTensor<B> {
    let shape = g.shape().to_vec();
    assert_eq!(shape, u.shape().to_vec(), "ggml geglu: shapes differ");
    let n = *shape.last().expect("ggml geglu: a scalar");
    elementwise2::<B>(g, u, |g, u, y| ggml_ops::geglu(g, u, n, y))
}

fn host_attention<B: Host>(
    q: FloatTensor<B>,
    k: IntTensor<B>,
    vt: IntTensor<B>,
    start: usize,
    scale: f32,
    window: usize,
) -> FloatTensor<B> {
    let (qs, ks, vs) = (q.shape().to_vec(), k.shape().to_vec(), vt.shape().to_vec());
    let (
        &[batch, seq, n_head, key_length],
        &[kb, n_head_kv, capacity, kd],
        &[vb, vh, value_length, vc],
    ) = (&qs[..], &ks[..], &vs[..])
    else {
        panic!("ggml attention: q, k, vt must be 4-d, got {qs:?}, {ks:?}, {vs:?}");
    };
    let k_row = match k.dtype() {
        DType::U8 => cache_row_len(CacheElem::Q8_0, key_length),
        _ => key_length,
    };
    assert!(
        kb == batch && vb == batch && vh == n_head_kv && vc == capacity && kd == k_row,
        "ggml attention: q {qs:?}, k {ks:?}, vt {vs:?} do not fit"
    );
    let shape = AttentionShape {
        seq,
        start,
        capacity,
        n_head,
        n_head_kv,
        key_length,
        value_length,
        scale,
        window: (window > 0).then_some(window),
    };
    let per_out = seq * n_head * value_length;
    let out = B::read(&q, |q| {
        B::read_cache(&k, |k| {
            B::read_cache(&vt, |vt| {
                let mut out = vec![0f32; batch * per_out];
                let (per_q, per_k, per_v) = (
                    seq * n_head * key_length,
                    n_head_kv * capacity * key_length,
                    n_head_kv * capacity * value_length,
                );
                for b in 0..batch {
                    ggml_ops::attention(
                        &q[b * per_q..][..per_q],
                        k.range(b * per_k, per_k),
                        vt.range(b * per_v, per_v),
                        shape,
                        &mut out[b * per_out..][..per_out],
                    );
                }
                out
            })
        })
    });
    B::make(out, vec![batch, seq, n_head * value_length])
}

fn host_mul_mat<B: Host>(x: FloatTensor<B>, w: FloatTensor<B>) -> FloatTensor<B> {
    let (xs, ws) = (x.shape().to_vec(), w.shape().to_vec());
    let (&[m, k], &[n, wk]) = (&xs[..], &ws[..]) else {
        panic!("ggml mul_mat: x and w must be 2-d, got {xs:?}, {ws:?}");
    };
    assert_eq!(k, wk, "ggml mul_mat: x {xs:?} and w {ws:?} do not fit");
    let y = B::read(&x, |x| {
        B::read(&w, |w| {
            let mut y = vec![0f32; m * n];
            let w = crate::cpu::QMatrix::new(
                gguf_importer::GgmlType::F32,
                n,
                k,
                bytemuck::cast_slice(w),
            )
            .expect("ggml mul_mat: an f32 matrix");
            crate::cpu::qmatmul(&w, x, m, &mut y).expect("ggml mul_mat: shapes checked above");
            y
        })
    });
    B::make(y, vec![m, n])
}

fn host_cache_bits<B: Host>(x: FloatTensor<B>, elem: CacheElem) -> IntTensor<B> {
    let shape = x.shape().to_vec();
    B::read(&x, |x| match elem {
        CacheElem::F32 => B::make_int(x.iter().map(|v| v.to_bits()).collect::<Vec<u32>>(), shape),
        CacheElem::F16 => {
            use half::slice::HalfFloatSliceExt;
            let mut h = vec![half::f16::ZERO; x.len()];
            h.convert_from_f32_slice(x);
            B::make_int(bytemuck::cast_vec::<half::f16, u16>(h), shape)
        }
        CacheElem::Q8_0 => {
            let n = *shape.last().expect("ggml cache bits: a scalar");
            assert!(
                n.is_multiple_of(32),
                "ggml cache bits: q8_0 rows of {n} elements are not whole blocks of 32"
            );
            let row = cache_row_len(CacheElem::Q8_0, n);
            let mut bytes = vec![0u8; x.len() / 32 * 34];
            bytes
                .par_chunks_mut(row)
                .zip(x.par_chunks(n))
                .for_each(|(out, x)| ggml_ops::quantize_q8_0(x, out));
            let mut shape = shape;
            *shape.last_mut().expect("not a scalar") = row;
            B::make_int(bytes, shape)
        }
    })
}

macro_rules! impl_ggml_ops {
    ($backend:ty) => {
        impl GgmlOpsBackend for $backend {
            fn ggml_rms_norm(
                x: FloatTensor<Self>,
                w: FloatTensor<Self>,
                eps: f32,
            ) -> FloatTensor<Self> {
                host_rms_norm::<Self>(x, w, eps)
            }

            fn ggml_rope(
                x: FloatTensor<Self>,
                cache: FloatTensor<Self>,
                n_rot: usize,
                neox: bool,
            ) -> FloatTensor<Self> {
                host_rope::<Self>(x, cache, n_rot, neox)
            }

            fn ggml_fwht(x: FloatTensor<Self>, n: usize) -> FloatTensor<Self> {
                host_fwht::<Self>(x, n)
            }

            fn ggml_swiglu(g: FloatTensor<Self>, u: FloatTensor<Self>) -> FloatTensor<Self> {
                host_swiglu::<Self>(g, u)
            }

            fn ggml_geglu(g: FloatTensor<Self>, u: FloatTensor<Self>) -> FloatTensor<Self> {
                host_geglu::<Self>(g, u)
            }

            fn ggml_attention(
                q: FloatTensor<Self>,
                k: IntTensor<Self>,
                vt: IntTensor<Self>,
                start: usize,
                scale: f32,
                window: usize,
            ) -> FloatTensor<Self> {
                host_attention::<Self>(q, k, vt, start, scale, window)
            }

            fn ggml_mul_mat(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
                host_mul_mat::<Self>(x, w)
            }

            fn ggml_cache_bits(x: FloatTensor<Self>, elem: CacheElem) -> IntTensor<Self> {
                host_cache_bits::<Self>(x, elem)
            }
        }
    };
}

#[cfg(feature = "flex")]
impl_ggml_ops!(burn::backend::Flex);
#[cfg(feature = "ndarray")]
impl_ggml_ops!(burn::backend::NdArray);
