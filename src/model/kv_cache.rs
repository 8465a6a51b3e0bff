//! The key/value cache of the attention layers.
//!
//! Each layer keeps one preallocated key tensor `[batch, n_head_kv, capacity, key_length]` and
//! one value tensor `[batch, n_head_kv, capacity, value_length]` (keys stored after RoPE, as
//! llama.cpp does). A forward pass writes the new positions with `slice_assign` and attends to
//! the view `0 .. len + seq`.
//!
//! On the CPU devices (those of [`gguf_kernels::ggml_ops::runs_on`]) the values are kept
//! transposed, `[batch, n_head_kv, value_length, capacity]`, as llama.cpp keeps them without
//! flash attention: [`gguf_kernels::ggml_ops::attention`] then reads each value column where it
//! lies, and a decoding step writes one column entry per value element instead of the attention
//! transposing the whole cache. [`KvCache::append`] returns the usual layout either way.
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

use burn::tensor::{Device, Tensor};

use crate::model::error::ModelError;

/// Whether a cache on `device` keeps its values transposed (see the module documentation).
fn values_transposed(device: &Device) -> bool {
    gguf_kernels::ggml_ops::runs_on(device)
}

/// A layer's zeroed key and value tensors on `device`, the values in that device's layout.
fn zero_layer(
    batch: usize,
    n_kv: usize,
    capacity: usize,
    (dk, dv): (usize, usize),
    device: &Device,
) -> (Tensor<4>, Tensor<4>) {
    let keys = Tensor::zeros([batch, n_kv, capacity, dk], device);
    let values = match values_transposed(device) {
        true => Tensor::zeros([batch, n_kv, dv, capacity], device),
        false => Tensor::zeros([batch, n_kv, capacity, dv], device),
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
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    batch: usize,
    capacity: usize,
    len: usize,
}

impl KvCache {
    /// An empty cache for `n_layers` layers, `batch` sequences and `capacity` positions.
    pub fn new(n_layers: usize, batch: usize, capacity: usize) -> KvCache {
        KvCache {
            layers: vec![None; n_layers],
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
        device: &Device,
    ) -> KvCache {
        let layers = shapes
            .iter()
            .map(|&(n_kv, dk, dv)| Some(zero_layer(batch, n_kv, capacity, (dk, dv), device)))
            .collect();
        KvCache {
            layers,
            batch,
            capacity,
            len: 0,
        }
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
    /// `len .. len + seq`, and returns the keys and values of all positions `0 .. len + seq`.
    ///
    /// # Shapes
    /// - `k`: `[batch, n_head_kv, seq, key_length]`, `v`: `[batch, n_head_kv, seq, value_length]`
    /// - returned: `[batch, n_head_kv, len + seq, key_length]` and `[.., value_length]`
    pub fn append(
        &mut self,
        layer: usize,
        k: Tensor<4>,
        v: Tensor<4>,
    ) -> Result<(Tensor<4>, Tensor<4>), ModelError> {
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
        let slot = self
            .layers
            .get_mut(layer)
            .ok_or_else(|| ModelError::CacheMismatch {
                what: format!("layer {layer} of a cache of {n_layers} layers"),
            })?;
        let (k_all, v_all) = match slot.take() {
            Some((ck, cv)) => {
                let [_, ch, _, cdk] = ck.dims();
                let cdv = match values_transposed(&cv.device()) {
                    true => cv.dims()[2],
                    false => cv.dims()[3],
                };
                if (ch, cdk, cdv) != (kh, dk, dv) {
                    // Put the tensors back: a mismatched call must not lose the cache.
                    *slot = Some((ck, cv));
                    return Err(ModelError::CacheMismatch {
                        what: format!(
                            "layer {layer} caches {ch} heads of {cdk}/{cdv} elements, got {kh} of {dk}/{dv}"
                        ),
                    });
                }
                (ck, cv)
            }
            None => zero_layer(self.batch, kh, self.capacity, (dk, dv), &k.device()),
        };
        let (start, end) = (self.len, self.len + seq);
        let k_all = k_all.slice_assign([0..self.batch, 0..kh, start..end, 0..dk], k);
        let keys = k_all.clone().narrow(2, 0, end); // [batch, n_head_kv, len + seq, dk]
        let (v_all, values) = match values_transposed(&v_all.device()) {
            true => {
                let b = self.batch;
                let v_all = v_all.slice_assign([0..b, 0..kh, 0..dv, start..end], v.swap_dims(2, 3));
                let values = v_all.clone().narrow(3, 0, end).swap_dims(2, 3);
                (v_all, values)
            }
            false => {
                let v_all = v_all.slice_assign([0..self.batch, 0..kh, start..end, 0..dv], v);
                let values = v_all.clone().narrow(2, 0, end);
                (v_all, values)
            }
        }; // values: [batch, n_head_kv, len + seq, dv]
        *slot = Some((k_all, v_all));
        Ok((keys, values))
    }

    /// The whole key and value tensors of `layer` as stored (all `capacity` positions; those
    /// past `len + seq` of the last [`KvCache::append`] hold nothing meaningful; the values
    /// transposed, `[batch, n_head_kv, value_length, capacity]`, on the CPU devices), `None`
    /// before its first append. For operations that read the cache in place
    /// ([`gguf_kernels::ggml_ops::attention`]); drop them before the next append, which writes in
    /// place only while the cache alone holds its tensors.
    pub fn layer_tensors(&self, layer: usize) -> Option<(Tensor<4>, Tensor<4>)> {
        self.layers.get(layer)?.clone()
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

    #[test]
    fn append_returns_all_positions_in_order() {
        let device = Device::flex();
        let mut cache = KvCache::new(2, 1, 5);
        let k1 = filled(0.0, [1, 2, 3, 4], &device);
        let v1 = filled(100.0, [1, 2, 3, 2], &device);
        let (k, v) = cache.append(0, k1.clone(), v1.clone()).unwrap();
        assert_eq!(k.dims(), [1, 2, 3, 4]);
        assert_eq!(v.dims(), [1, 2, 3, 2]);
        cache.append(1, k1.clone(), v1.clone()).unwrap();
        cache.advance(3).unwrap();
        assert_eq!(cache.len(), 3);

        let k2 = filled(1000.0, [1, 2, 2, 4], &device);
        let v2 = filled(2000.0, [1, 2, 2, 2], &device);
        let (k, _) = cache.append(0, k2.clone(), v2).unwrap();
        assert_eq!(k.dims(), [1, 2, 5, 4]);
        let want = Tensor::cat(vec![k1, k2], 2);
        assert_eq!(
            k.into_data().try_to_vec::<f32>().unwrap(),
            want.into_data().try_to_vec::<f32>().unwrap()
        );

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
        let (k, _) = cache.append(0, k3, v3).unwrap();
        assert_eq!(k.dims(), [1, 2, 5, 4]);
    }

    #[test]
    fn mismatched_inputs_are_errors() {
        let device = Device::flex();
        let mut cache = KvCache::new(1, 1, 4);
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
