//! The state one forward pass carries through the layers ([`ForwardContext`]): the RoPE tables
//! of its positions, the KV cache it appends to, the causal masks it makes once, the block it is
//! in, and the trace hook of the divergence finder ([`crate::model::Llama::forward_traced`]).

use burn::tensor::{Device, Tensor};

use crate::model::kv_cache::KvCache;
use crate::model::ops::{MaskCache, RopeTables};
use crate::model::rope::Rope;

/// A hook that receives intermediate tensors under llama.cpp's names (`attn_norm-0`, …).
pub type Trace<'a> = dyn FnMut(&str, Tensor<3>) + 'a;

/// The per-pass state of a forward pass over `seq` new positions (see the
/// [module documentation](self)).
pub struct ForwardContext<'a> {
    /// The rotation tables of the positions `cache.len() .. cache.len() + seq`.
    pub(crate) tables: RopeTables,
    /// The same positions' tables of the sliding-window layers' RoPE, if it differs.
    pub(crate) local_tables: Option<RopeTables>,
    /// The cache the blocks append to and attend over.
    pub(crate) cache: &'a mut KvCache,
    /// The causal masks of the pass (Burn's attention).
    pub(crate) masks: MaskCache,
    /// The block being run; `None` outside the blocks.
    layer: Option<usize>,
    trace: Option<&'a mut Trace<'a>>,
}

impl<'a> ForwardContext<'a> {
    /// The context of `seq` new positions after those of `cache`, on `device`, tracing to
    /// `trace` if given; `local_rope` is the RoPE of sliding-window layers when it is not `rope`.
    pub fn new(
        rope: &Rope,
        local_rope: Option<&Rope>,
        seq: usize,
        cache: &'a mut KvCache,
        device: &Device,
        trace: Option<&'a mut Trace<'_>>,
    ) -> ForwardContext<'a> {
        ForwardContext {
            tables: rope.tables(cache.len(), seq, device),
            local_tables: local_rope.map(|r| r.tables(cache.len(), seq, device)),
            cache,
            masks: MaskCache::default(),
            layer: None,
            trace: trace.map(shorten),
        }
    }

    /// Enters block `layer` (`None`: outside the blocks), which names the traced tensors.
    pub fn set_layer(&mut self, layer: Option<usize>) {
        self.layer = layer;
    }

    /// The block being run.
    pub fn layer(&self) -> Option<usize> {
        self.layer
    }

    /// The KV cache.
    pub fn cache(&mut self) -> &mut KvCache {
        self.cache
    }

    /// The rotation tables of the pass's positions: of the sliding-window layers' RoPE when
    /// `local` (if the model has one), else of the global one.
    pub fn rope_tables(&self, local: bool) -> &RopeTables {
        match (&self.local_tables, local) {
            (Some(t), true) => t,
            _ => &self.tables,
        }
    }

    /// Whether the pass is traced.
    pub fn is_traced(&self) -> bool {
        self.trace.is_some()
    }

    /// Reports `t` as `{name}-{layer}` in a block, else as `{name}`, when the pass is traced.
    pub fn trace(&mut self, name: &str, t: &Tensor<3>) {
        self.trace_with(name, || t.clone());
    }

    /// [`ForwardContext::trace`] of the tensor `t()`, computed only when the pass is traced.
    pub fn trace_with(&mut self, name: &str, t: impl FnOnce() -> Tensor<3>) {
        if let Some(trace) = self.trace.as_mut() {
            match self.layer {
                Some(layer) => trace(&format!("{name}-{layer}"), t()),
                None => trace(name, t()),
            }
        }
    }
}

/// The hook for as long as it is borrowed.
fn shorten<'a>(trace: &'a mut Trace<'_>) -> &'a mut Trace<'a> {
    trace
}
