//! The key/value cache of the attention layers.
//!
//! Each layer keeps one preallocated key tensor `[batch, n_head_kv, capacity, key_length]` and
//! one value tensor `[batch, n_head_kv, capacity, value_length]` (keys stored after RoPE, as
//! llama.cpp does). A forward pass writes the new positions with `slice_assign` and attends to
//! the view `0 .. len + seq`.
//!
//! Keys and values are stored as [`KvType`] says, separately for each (llama.cpp's
//! `--cache-type-k` and `--cache-type-v`): f16 by default, as llama.cpp's default, or f32, and
//! keys also in ggml's q8_0 blocks. The new keys and values are rounded to f16 when stored (ties
//! to even, as ggml's `fp32_to_fp16`) or quantized as ggml's `quantize_row_q8_0`. Values in q8_0
//! are refused: llama.cpp computes with them only in flash attention, which this crate does not
//! implement ([`CacheTypes::check`]).
//!
//! On the CPU devices (those of [`Kernels::Ggml`]) the cache holds the
//! elements' bits in integer tensors (`u32` for f32, `u16` for f16: ndarray has no f16 tensors;
//! `u8` for q8_0, each key row its blocks' bytes)
//! and the values are kept transposed, `[batch, n_head_kv, value_length, capacity]`, as
//! llama.cpp keeps them without flash attention: [`gguf_kernels::ggml_ops::attention`] then reads
//! them where they lie, and a decoding step writes one column entry per value element instead of
//! the attention transposing the whole cache. Elsewhere (wgpu, autodiff) it holds float tensors
//! of the element type (q8_0 keys as the f32 values of their blocks: the same numbers, not the
//! memory saving), and [`KvCache::append`] returns f32 views in the usual layout.
//!
//! Preallocated rather than grown by concatenation: concatenating copies the whole cache on every
//! token, while `slice_assign` on a tensor the cache alone holds writes in place on backends that
//! reuse unshared buffers (flex, ndarray, the CubeCL backends); the memory a session needs is
//! known at its first token, and a full cache is one comparison ([`ModelError::CacheFull`]).
//! [`KvCache::allocated`] (what `Llama::new_cache` makes) allocates every layer up front;
//! [`KvCache::new`] needs no device and allocates each layer at its first [`KvCache::append`], on
//! the device of the keys given.
//!
//! A forward pass appends to every layer at the same offset [`KvCache::len`], then
//! [`KvCache::advance`]s once; if it fails half-way, `len` is unchanged and the positions it wrote
//! past `len` are overwritten by the next pass.

use std::fmt;
use std::str::FromStr;

use burn::tensor::{DType, Device, Int, Tensor};
use gguf_kernels::ggml_ops;

use crate::model::error::ModelError;
use crate::model::ops::Kernels;

/// The element type of cached keys or values: llama.cpp's `--cache-type-k/-v` (`f16` is its
/// default, and this crate's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KvType {
    F32,
    #[default]
    F16,
    /// ggml's Q8_0 blocks (32 elements, an f16 scale and 32 `i8`): keys only
    /// ([`CacheTypes::check`]).
    Q8_0,
}

impl KvType {
    /// The types this crate supports, by their llama.cpp names.
    pub const SUPPORTED: &'static str = "f32, f16, q8_0 (keys only)";

    /// llama.cpp's name of the type (`f32`, `f16`, `q8_0`).
    pub fn name(self) -> &'static str {
        match self {
            KvType::F32 => "f32",
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
        }
    }

    /// The float dtype of a cache tensor on a device that computes with Burn's ops (q8_0: the
    /// f32 values of its blocks).
    fn float_dtype(self) -> DType {
        match self {
            KvType::F32 | KvType::Q8_0 => DType::F32,
            KvType::F16 => DType::F16,
        }
    }

    /// `x` as a cache of this type holds it, in f32, for Burn's ops: rounded to f16, or
    /// quantized to q8_0 blocks of its last dimension and dequantized ([`q8_0_round`]); and
    /// what ggml does to the operand it multiplies with a cache tensor of this type (the queries
    /// for the keys, the softmax weights for the values). Gradients pass straight through.
    pub(crate) fn round<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            KvType::F32 => x,
            KvType::F16 => x.cast(DType::F16).cast(DType::F32),
            KvType::Q8_0 => q8_0_round(x),
        }
    }
}

/// `x` quantized to ggml's q8_0 in blocks of 32 along its last dimension (a multiple of 32) and
/// dequantized, with Burn's ops: per block `d = amax / 127`, `q = round(x · 127 / amax)` (ties to
/// even, as ggml's `quantize_row_q8_0` on x86), `d · q` with `d` rounded to f16 where the device
/// has f16 tensors (else `d` unrounded). The gradient is the identity (straight through).
pub(crate) fn q8_0_round<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let dims = x.dims();
    let n = x.shape().num_elements();
    let blocks: Tensor<2> = x.clone().detach().reshape([n / 32, 32]);
    let amax = blocks.clone().abs().max_dim(1); // [blocks, 1]
    let zero = amax.clone().equal_elem(0.0);
    let id = amax.clone().recip().mul_scalar(127.0).mask_fill(zero, 0.0);
    let q = (blocks * id).round();
    let d = amax.div_scalar(127.0);
    let d = match d.device().supports_dtype(DType::F16) {
        true => d.cast(DType::F16).cast(DType::F32),
        false => d,
    };
    let rounded: Tensor<D> = (q * d).reshape(dims);
    x.clone() + (rounded - x).detach()
}

impl fmt::Display for KvType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KvType {
    type Err = ModelError;

    /// llama.cpp's names, any case. Its other quantized cache types (`q4_0`, `q5_1` ...) are
    /// refused by name.
    fn from_str(s: &str) -> Result<KvType, ModelError> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(KvType::F32),
            "f16" => Ok(KvType::F16),
            "q8_0" => Ok(KvType::Q8_0),
            _ => Err(ModelError::UnsupportedCacheType {
                name: s.to_string(),
                supported: KvType::SUPPORTED,
            }),
        }
    }
}

/// The element types of a cache's keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CacheTypes {
    pub k: KvType,
    pub v: KvType,
}

impl CacheTypes {
    /// Keys and values in f32.
    pub const F32: CacheTypes = CacheTypes {
        k: KvType::F32,
        v: KvType::F32,
    };
    /// Keys and values in f16: llama.cpp's default, and [`CacheTypes::default`].
    pub const F16: CacheTypes = CacheTypes {
        k: KvType::F16,
        v: KvType::F16,
    };

    /// Whether a model whose attention heads have `key_length` elements per key can cache as
    /// these types: as llama.cpp, q8_0 keys need whole blocks of 32 per head, and q8_0
    /// values are refused (llama.cpp takes them only with flash attention, which this crate does
    /// not implement).
    pub fn check(self, key_length: usize) -> Result<(), ModelError> {
        if self.v == KvType::Q8_0 {
            return Err(ModelError::UnsupportedCacheType {
                name: "q8_0 (values)".into(),
                supported: "f32, f16 for values (llama.cpp quantizes values only with flash attention, which this crate does not implement)",
            });
        }
        if self.k == KvType::Q8_0 && !key_length.is_multiple_of(32) {
            return Err(ModelError::UnsupportedCacheType {
                name: format!("q8_0 (keys of {key_length} elements per head)"),
                supported:
                    "q8_0 keys need a key length that is a multiple of 32 (ggml's block); f32, f16",
            });
        }
        Ok(())
    }

    /// The size of the Walsh-Hadamard rotation llama.cpp applies to queries and keys before a
    /// quantized key cache (its `attn_rot_k`, on unless `LLAMA_ATTN_ROT_DISABLE` is set): with
    /// q8_0 keys and `key_length` a multiple of 64, the largest power of two dividing
    /// `key_length`; `None` otherwise. Rotating both leaves every score `q · k` the same in
    /// exact arithmetic and spreads a key's outliers over its block, which quantizes better.
    pub fn key_rotation(self, key_length: usize) -> Option<usize> {
        (self.k == KvType::Q8_0 && key_length > 0 && key_length.is_multiple_of(64))
            .then(|| 1 << key_length.trailing_zeros())
    }

    /// The types a cache on `device` holds: these, except that f16 becomes f32 (with a warning)
    /// on a device without f16 tensors (a wgpu adapter without `shader-f16`). The CPU devices
    /// hold f16 as bits and always can.
    pub fn on(self, device: &Device) -> CacheTypes {
        let f16_ok = Kernels::of(device) == Kernels::Ggml || device.supports_dtype(DType::F16);
        let fit = |ty: KvType| match ty {
            KvType::F16 if !f16_ok => KvType::F32,
            ty => ty,
        };
        let on = CacheTypes {
            k: fit(self.k),
            v: fit(self.v),
        };
        if on != self {
            log::warn!("{device:?} has no f16 tensors: the KV cache holds f32");
        }
        on
    }
}

/// One cached tensor (a layer's keys, or its values) as stored on its device.
#[derive(Debug, Clone)]
enum Stored {
    /// On the CPU devices: the elements' bits (`u32` for f32, `u16` for f16).
    Bits(Tensor<4, Int>),
    /// Elsewhere: floats of the element type.
    Float(Tensor<4>),
}

impl Stored {
    /// A zeroed tensor of `shape` (in elements) holding `ty` on `device`.
    fn zeros(shape: [usize; 4], ty: KvType, device: &Device) -> Stored {
        match Kernels::of(device) {
            Kernels::Ggml => Stored::Bits(Tensor::zeros(
                [
                    shape[0],
                    shape[1],
                    shape[2],
                    ggml_ops::cache_row_len(ty.into(), shape[3]),
                ],
                (device, ggml_ops::cache_bits_dtype(ty.into())),
            )),
            Kernels::Burn => Stored::Float(Tensor::zeros(shape, (device, ty.float_dtype()))),
        }
    }

    /// The shape in elements of a tensor holding `ty`.
    fn dims(&self, ty: KvType) -> [usize; 4] {
        match self {
            Stored::Bits(t) => {
                let [a, b, c, d] = t.dims();
                match ty {
                    KvType::Q8_0 => [a, b, c, d / 34 * 32],
                    _ => [a, b, c, d],
                }
            }
            Stored::Float(t) => t.dims(),
        }
    }

    /// Writes `x` (f32, shaped as `range`, in elements) at `range`, rounded to the element type
    /// `ty` (q8_0: whole rows of the last dimension).
    fn assign(self, range: [std::ops::Range<usize>; 4], x: Tensor<4>, ty: KvType) -> Stored {
        match self {
            Stored::Bits(t) => {
                let [r0, r1, r2, r3] = range;
                let elem = ty.into();
                let r3 =
                    ggml_ops::cache_row_len(elem, r3.start)..ggml_ops::cache_row_len(elem, r3.end);
                Stored::Bits(t.slice_assign([r0, r1, r2, r3], ggml_ops::cache_bits(x, elem)))
            }
            Stored::Float(t) => {
                Stored::Float(t.slice_assign(range, ty.round(x).cast(ty.float_dtype())))
            }
        }
    }
}

impl From<KvType> for ggml_ops::CacheElem {
    fn from(ty: KvType) -> ggml_ops::CacheElem {
        match ty {
            KvType::F32 => ggml_ops::CacheElem::F32,
            KvType::F16 => ggml_ops::CacheElem::F16,
            KvType::Q8_0 => ggml_ops::CacheElem::Q8_0,
        }
    }
}

/// Whether a cache on `device` keeps its values transposed (see the module documentation): where
/// ggml's attention reads them.
fn values_transposed(device: &Device) -> bool {
    Kernels::of(device) == Kernels::Ggml
}

/// A layer's zeroed key and value tensors on `device`, the values in that device's layout.
fn zero_layer(
    batch: usize,
    n_kv: usize,
    capacity: usize,
    (dk, dv): (usize, usize),
    types: CacheTypes,
    device: &Device,
) -> (Stored, Stored) {
    let keys = Stored::zeros([batch, n_kv, capacity, dk], types.k, device);
    let values = match values_transposed(device) {
        true => Stored::zeros([batch, n_kv, dv, capacity], types.v, device),
        false => Stored::zeros([batch, n_kv, capacity, dv], types.v, device),
    };
    (keys, values)
}

/// Keys and values of the positions seen so far, per layer.
#[derive(Debug, Clone)]
pub struct KvCache {
    /// Per layer: keys `[batch, n_head_kv, capacity, key_length]`, values
    /// `[batch, n_head_kv, capacity, value_length]` (transposed,
    /// `[batch, n_head_kv, value_length, capacity]`, on the CPU devices); `None` until the
    /// first append.
    layers: Vec<Option<(Stored, Stored)>>,
    types: CacheTypes,
    batch: usize,
    capacity: usize,
    len: usize,
}

impl KvCache {
    /// An empty cache for `n_layers` layers, `batch` sequences and `capacity` positions, its
    /// keys and values stored as `types` says.
    pub fn new(n_layers: usize, batch: usize, capacity: usize, types: CacheTypes) -> KvCache {
        KvCache {
            layers: vec![None; n_layers],
            types,
            batch,
            capacity,
            len: 0,
        }
    }

    /// A cache whose layers are allocated now on `device`, zeroed: layer `l` holds
    /// `shapes[l] = (n_head_kv, key_length, value_length)`. What [`crate::model::Llama::new_cache`]
    /// makes: allocating every layer before the first pass keeps the cache in one stretch of
    /// memory rather than between that pass's temporaries, which the allocator could then not
    /// give back (measured on flex with glibc, SmolLM2 with 192 positions: RSS after a
    /// 128-token prefill 182 -> 179 MiB).
    pub fn allocated(
        shapes: &[(usize, usize, usize)],
        batch: usize,
        capacity: usize,
        types: CacheTypes,
        device: &Device,
    ) -> KvCache {
        let types = types.on(device);
        if shapes.iter().any(|&(_, dk, _)| types.check(dk).is_err()) {
            // Types these heads cannot hold: nothing allocated, the first append says why.
            return KvCache::new(shapes.len(), batch, capacity, types);
        }
        let layers = shapes
            .iter()
            .map(|&(n_kv, dk, dv)| Some(zero_layer(batch, n_kv, capacity, (dk, dv), types, device)))
            .collect();
        KvCache {
            layers,
            types,
            batch,
            capacity,
            len: 0,
        }
    }

    /// The element types of the keys and values.
    pub fn types(&self) -> CacheTypes {
        self.types
    }

    /// Positions cached (the position of the next token).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions the cache can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sequences per batch.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Layers.
    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }

    /// Forgets every position (the memory is kept and overwritten).
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// Forgets the positions from `len` on (to rewind a generation); no-op if `len >= self.len()`.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Checks that `seq` more positions fit.
    pub fn check_room(&self, seq: usize) -> Result<(), ModelError> {
        let needed = self.len.saturating_add(seq);
        if needed > self.capacity {
            return Err(ModelError::CacheFull {
                needed,
                capacity: self.capacity,
            });
        }
        Ok(())
    }

    /// Writes the keys and values of `seq` new positions of `layer` at positions
    /// `len .. len + seq` (rounded to the cache's element types), and returns the keys and values
    /// of all positions `0 .. len + seq` as f32, for attention written with Burn's ops.
    ///
    /// # Shapes
    /// - `k`: `[batch, n_head_kv, seq, key_length]`, `v`: `[batch, n_head_kv, seq, value_length]`
    /// - returned: `[batch, n_head_kv, len + seq, key_length]` and `[.., value_length]`; `None`
    ///   on the CPU devices, whose attention reads the stored tensors
    ///   ([`KvCache::layer_bits`]).
    #[allow(clippy::type_complexity)]
    pub fn append(
        &mut self,
        layer: usize,
        k: Tensor<4>,
        v: Tensor<4>,
    ) -> Result<Option<(Tensor<4>, Tensor<4>)>, ModelError> {
        let n_layers = self.layers.len();
        let [kb, kh, seq, dk] = k.dims();
        let [vb, vh, vseq, dv] = v.dims();
        if kb != self.batch || vb != self.batch || kh != vh || vseq != seq {
            return Err(ModelError::CacheMismatch {
                what: format!(
                    "keys {:?} and values {:?} do not fit a cache of batch {}",
                    k.dims(),
                    v.dims(),
                    self.batch
                ),
            });
        }
        self.check_room(seq)?;
        let (types, batch, capacity) = (self.types, self.batch, self.capacity);
        let slot = self
            .layers
            .get_mut(layer)
            .ok_or_else(|| ModelError::CacheMismatch {
                what: format!("layer {layer} of a cache of {n_layers} layers"),
            })?;
        let device = k.device();
        let transposed = values_transposed(&device);
        // A zeroed layer for the keys' device, in the types it holds (once they fit the heads).
        let fresh = |stored: &mut CacheTypes| -> Result<(Stored, Stored), ModelError> {
            types.check(dk)?;
            *stored = types.on(&device);
            Ok(zero_layer(batch, kh, capacity, (dk, dv), *stored, &device))
        };
        let (k_all, v_all) = match slot.take() {
            Some((ck, cv)) => {
                let [_, ch, _, cdk] = ck.dims(types.k);
                let cdv = match transposed {
                    true => cv.dims(types.v)[2],
                    false => cv.dims(types.v)[3],
                };
                let same_kind = matches!(
                    (&ck, transposed),
                    (Stored::Bits(_), true) | (Stored::Float(_), false)
                );
                if !same_kind && self.len == 0 {
                    // Nothing cached yet, and the keys come from another kind of device than
                    // the one the cache was allocated for (a model with adapters on the autodiff
                    // device): start the layer anew for theirs.
                    fresh(&mut self.types)?
                } else if (ch, cdk, cdv) != (kh, dk, dv) || !same_kind {
                    // Put the tensors back: a mismatched call must not lose the cache.
                    *slot = Some((ck, cv));
                    return Err(ModelError::CacheMismatch {
                        what: match same_kind {
                            true => format!(
                                "layer {layer} caches {ch} heads of {cdk}/{cdv} elements, got {kh} of {dk}/{dv}"
                            ),
                            false => format!(
                                "layer {layer} was allocated for another kind of device than {device:?}"
                            ),
                        },
                    });
                } else {
                    (ck, cv)
                }
            }
            None => fresh(&mut self.types)?,
        };
        let types = self.types;
        let (start, end) = (self.len, self.len + seq);
        let k_all = k_all.assign([0..batch, 0..kh, start..end, 0..dk], k, types.k);
        let v_all = match transposed {
            true => v_all.assign(
                [0..batch, 0..kh, 0..dv, start..end],
                v.swap_dims(2, 3),
                types.v,
            ),
            false => v_all.assign([0..batch, 0..kh, start..end, 0..dv], v, types.v),
        };
        let views = match (&k_all, &v_all) {
            (Stored::Float(k), Stored::Float(v)) => Some((
                k.clone().narrow(2, 0, end).cast(DType::F32),
                v.clone().narrow(2, 0, end).cast(DType::F32),
            )),
            _ => None,
        };
        *slot = Some((k_all, v_all));
        Ok(views)
    }

    /// The whole key and value tensors of `layer` as the CPU devices store them: the elements'
    /// bits (see [`gguf_kernels::ggml_ops::cache_bits`]), keys
    /// `[batch, n_head_kv, capacity, key_length]` and values transposed,
    /// `[batch, n_head_kv, value_length, capacity]`; positions past `len + seq` of the last
    /// [`KvCache::append`] hold nothing meaningful. `None` before the layer's first append and
    /// on other devices. For operations that read the cache in place
    /// ([`gguf_kernels::ggml_ops::attention`]); drop them before the next append, which writes in
    /// place only while the cache alone holds its tensors.
    pub fn layer_bits(&self, layer: usize) -> Option<(Tensor<4, Int>, Tensor<4, Int>)> {
        match self.layers.get(layer)? {
            Some((Stored::Bits(k), Stored::Bits(v))) => Some((k.clone(), v.clone())),
            _ => None,
        }
    }

    /// Marks `seq` appended positions as cached (after every layer appended them).
    pub fn advance(&mut self, seq: usize) -> Result<(), ModelError> {
        self.check_room(seq)?;
        self.len += seq;
        Ok(())
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    fn filled(value_base: f32, shape: [usize; 4], device: &Device) -> Tensor<4> {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|i| value_base + i as f32).collect();
        Tensor::from_data(TensorData::new(data, shape), device)
    }

    fn to_vec(t: Tensor<4>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    /// The keys of layer 0 positions `0 .. n` as the CPU devices store them, decoded to f32.
    fn stored_keys(cache: &KvCache, n: usize) -> Vec<f32> {
        let (k, _) = cache.layer_bits(0).unwrap();
        let k = k.narrow(2, 0, n).into_data();
        match cache.types().k {
            KvType::F32 => k
                .try_to_vec::<u32>()
                .unwrap()
                .into_iter()
                .map(f32::from_bits)
                .collect(),
            KvType::F16 => k
                .try_to_vec::<u16>()
                .unwrap()
                .into_iter()
                .map(|b| half::f16::from_bits(b).to_f32())
                .collect(),
            KvType::Q8_0 => k
                .try_to_vec::<u8>()
                .unwrap()
                .chunks_exact(34)
                .flat_map(|b| {
                    let d = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
                    b[2..].iter().map(move |&q| q as i8 as f32 * d)
                })
                .collect(),
        }
    }

    #[test]
    fn append_returns_all_positions_in_order() {
        // Autodiff flex computes with Burn's ops: the cache returns f32 views of what it holds.
        let device = Device::flex().autodiff();
        let mut cache = KvCache::new(2, 1, 5, CacheTypes::F32);
        let k1 = filled(0.0, [1, 2, 3, 4], &device);
        let v1 = filled(100.0, [1, 2, 3, 2], &device);
        let (k, v) = cache.append(0, k1.clone(), v1.clone()).unwrap().unwrap();
        assert_eq!(k.dims(), [1, 2, 3, 4]);
        assert_eq!(v.dims(), [1, 2, 3, 2]);
        cache.append(1, k1.clone(), v1.clone()).unwrap();
        cache.advance(3).unwrap();
        assert_eq!(cache.len(), 3);

        let k2 = filled(1000.0, [1, 2, 2, 4], &device);
        let v2 = filled(2000.0, [1, 2, 2, 2], &device);
        let (k, _) = cache.append(0, k2.clone(), v2).unwrap().unwrap();
        assert_eq!(k.dims(), [1, 2, 5, 4]);
        assert_eq!(to_vec(k), to_vec(Tensor::cat(vec![k1, k2], 2)));

        // Full: 5 + 1 > 5; the length is unchanged.
        cache.advance(2).unwrap();
        let k3 = filled(0.0, [1, 2, 1, 4], &device);
        let v3 = filled(0.0, [1, 2, 1, 2], &device);
        assert!(matches!(
            cache.append(0, k3.clone(), v3.clone()),
            Err(ModelError::CacheFull {
                needed: 6,
                capacity: 5
            })
        ));
        assert_eq!(cache.len(), 5);

        // After truncate, writes go to the forgotten positions.
        cache.truncate(4);
        let (k, _) = cache.append(0, k3, v3).unwrap().unwrap();
        assert_eq!(k.dims(), [1, 2, 5, 4]);
    }

    /// Values that f16 cannot hold exactly: 1 + 2^-11 (a tie, to even: 1), 1 + 3·2^-11 (a tie,
    /// to even: 1 + 2^-9), 0.1, 65520 (past f16's largest finite: inf), 1e-8 (a subnormal).
    const AWKWARD: [f32; 8] = [
        1.0 + 1.0 / 2048.0,
        1.0 + 3.0 / 2048.0,
        0.1,
        65520.0,
        1e-8,
        -2.5,
        0.0,
        -0.0,
    ];

    #[test]
    fn f16_caches_round_to_nearest_even_on_every_path() {
        let want: Vec<f32> = AWKWARD
            .iter()
            .map(|&x| half::f16::from_f32(x).to_f32())
            .collect();
        assert_eq!(want[0], 1.0);
        assert_eq!(want[1], 1.0 + 4.0 / 2048.0);
        assert_eq!(want[3], f32::INFINITY);
        let x = |device: &Device| {
            Tensor::<4>::from_data(TensorData::new(AWKWARD.to_vec(), [1, 1, 2, 4]), device)
        };
        let to_bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();

        // The CPU devices store the bits; the f32 cache keeps every bit.
        for (types, want) in [
            (CacheTypes::F16, &want[..]),
            (CacheTypes::F32, &AWKWARD[..]),
        ] {
            let device = Device::flex();
            let mut cache = KvCache::new(1, 1, 3, types);
            assert!(cache.append(0, x(&device), x(&device)).unwrap().is_none());
            assert_eq!(to_bits(&stored_keys(&cache, 2)), to_bits(want), "{types:?}");
        }

        // Burn's ops path: a float cache of the element type, read back as f32.
        let device = Device::flex().autodiff();
        let mut cache = KvCache::new(1, 1, 3, CacheTypes::F16);
        let (k, v) = cache.append(0, x(&device), x(&device)).unwrap().unwrap();
        assert_eq!(to_bits(&to_vec(k)), to_bits(&want));
        assert_eq!(to_bits(&to_vec(v)), to_bits(&want));
    }

    #[test]
    fn cache_types_parse_llama_cpp_names() {
        assert_eq!("f16".parse::<KvType>().unwrap(), KvType::F16);
        assert_eq!("F32".parse::<KvType>().unwrap(), KvType::F32);
        assert_eq!(CacheTypes::default(), CacheTypes::F16);
        assert_eq!("Q8_0".parse::<KvType>().unwrap(), KvType::Q8_0);
        let err = "q4_0".parse::<KvType>().unwrap_err().to_string();
        assert!(
            err.contains("\"q4_0\"") && err.contains("f32, f16, q8_0"),
            "{err}"
        );
    }

    #[test]
    fn q8_0_values_and_keys_of_partial_blocks_are_errors_not_panics() {
        let q8_keys = CacheTypes {
            k: KvType::Q8_0,
            v: KvType::F16,
        };
        let q8_values = CacheTypes {
            k: KvType::F16,
            v: KvType::Q8_0,
        };
        assert!(q8_keys.check(64).is_ok());
        let err = q8_values.check(64).unwrap_err().to_string();
        assert!(err.contains("flash attention"), "{err}");
        let err = q8_keys.check(8).unwrap_err().to_string();
        assert!(err.contains("multiple of 32"), "{err}");
        // Allocating for heads of 8 elements allocates nothing; the first append says why and
        // caches nothing.
        for device in [Device::flex(), Device::flex().autodiff()] {
            let mut cache = KvCache::allocated(&[(2, 8, 8)], 1, 4, q8_keys, &device);
            let k = filled(0.0, [1, 2, 1, 8], &device);
            assert!(matches!(
                cache.append(0, k.clone(), k),
                Err(ModelError::UnsupportedCacheType { .. })
            ));
            assert_eq!(cache.len(), 0);
        }
    }

    #[test]
    fn q8_0_keys_hold_ggml_blocks_on_every_path() {
        // Blocks with ties (x · 127 / amax at .5), a zero block, one negative maximum.
        let mut x: Vec<f32> = (0..32).map(|i| (i as f32 - 15.5) / 15.5).collect();
        x.extend((0..32).map(|i| [0.5, -1.0, 0.25, 127.0][i % 4] * 3.0));
        x.extend([0.0; 32]);
        x.extend((0..32).map(|i| -(i as f32) * 1e-3));
        let types = CacheTypes {
            k: KvType::Q8_0,
            v: KvType::F32,
        };
        let keys = |device: &Device| {
            Tensor::<4>::from_data(TensorData::new(x.clone(), [1, 1, 2, 64]), device)
        };
        let device = Device::flex();
        let mut cache = KvCache::new(1, 1, 3, types);
        assert!(cache
            .append(0, keys(&device), keys(&device))
            .unwrap()
            .is_none());
        let bits = stored_keys(&cache, 2);
        // Each stored element is within half a step (d / 2) of the key, d = amax / 127.
        for (b, (got, want)) in bits.chunks(32).zip(x.chunks(32)).enumerate() {
            let amax = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (g, w) in got.iter().zip(want) {
                assert!(
                    (g - w).abs() <= amax / 127.0 * 0.5 + amax * 1e-3,
                    "block {b}: {g} vs {w}"
                );
            }
        }
        // Burn's ops path (autodiff): the same numbers, as f32.
        let device = Device::flex().autodiff();
        let mut cache = KvCache::new(1, 1, 3, types);
        let (k, _) = cache
            .append(0, keys(&device), keys(&device))
            .unwrap()
            .unwrap();
        let to_bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(to_bits(&to_vec(k)), to_bits(&bits));
    }

    #[test]
    fn an_empty_cache_follows_the_keys_to_another_kind_of_device() {
        // Allocated on flex (bits), fed from autodiff flex (a model with adapters there): the
        // empty layer starts anew as floats; once positions are cached, another kind of device
        // is an error that keeps the cache.
        let shapes = [(2, 4, 4)];
        let mut cache = KvCache::allocated(&shapes, 1, 4, CacheTypes::F16, &Device::flex());
        assert!(cache.layer_bits(0).is_some());
        let ad = Device::flex().autodiff();
        let k = filled(0.0, [1, 2, 1, 4], &ad);
        assert!(cache.append(0, k.clone(), k.clone()).unwrap().is_some());
        cache.advance(1).unwrap();
        let flex_k = filled(0.0, [1, 2, 1, 4], &Device::flex());
        assert!(matches!(
            cache.append(0, flex_k.clone(), flex_k),
            Err(ModelError::CacheMismatch { .. })
        ));
        let (k_all, _) = cache.append(0, k.clone(), k).unwrap().unwrap();
        assert_eq!(k_all.dims(), [1, 2, 2, 4]);
    }

    #[test]
    fn mismatched_inputs_are_errors() {
        for device in [Device::flex(), Device::flex().autodiff()] {
            let mut cache = KvCache::new(1, 1, 4, CacheTypes::default());
            let k = filled(0.0, [1, 2, 1, 4], &device);
            let v = filled(0.0, [1, 2, 1, 4], &device);
            cache.append(0, k.clone(), v.clone()).unwrap();
            // Another head count than the layer was allocated with.
            let k3 = filled(0.0, [1, 3, 1, 4], &device);
            let v3 = filled(0.0, [1, 3, 1, 4], &device);
            assert!(matches!(
                cache.append(0, k3, v3),
                Err(ModelError::CacheMismatch { .. })
            ));
            // The layer's tensors survive the mismatch.
            assert!(cache.append(0, k.clone(), v.clone()).is_ok());
            // A layer past the last, another batch size.
            assert!(matches!(
                cache.append(1, k.clone(), v.clone()),
                Err(ModelError::CacheMismatch { .. })
            ));
            let kb = filled(0.0, [2, 2, 1, 4], &device);
            assert!(matches!(
                cache.append(0, kb.clone(), kb),
                Err(ModelError::CacheMismatch { .. })
            ));
        }
    }
}
