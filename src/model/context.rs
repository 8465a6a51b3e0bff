//! The state one forward pass carries through the layers ([`ForwardContext`]): the RoPE tables
//! of its positions, the KV caches it appends to, the causal masks it makes once, the block it is
//! in, and the trace hook of the divergence finder ([`crate::model::Llama::forward_traced`]).
//!
//! A pass computes either `batch` sequences of the same length over one cache (the rows of
//! `[batch, seq, ..]` tensors, [`ForwardContext::new`]), or several sequences of different
//! lengths at different positions, each over its own cache ([`ForwardContext::ragged`]): their
//! positions stacked as the rows of one `[1, Σ seq, ..]` stream, which every layer computes at
//! once (the projections read each weight once for all of them), except the attention, which
//! takes each sequence's rows over its own cache (a `Segment`).

use burn::tensor::{Device, Tensor};

use crate::model::error::ModelError;
use crate::model::kv_cache::KvCache;
use crate::model::ops::{MaskCache, RopeTables};
use crate::model::rope::Rope;

/// A hook that receives intermediate tensors under llama.cpp's names (`attn_norm-0`, …).
pub type Trace<'a> = dyn FnMut(&str, Tensor<3>) + 'a;

/// The rows of one sequence in a pass, and the cache its attention reads and appends to.
pub(crate) struct Segment<'a> {
    /// The first of its rows along the pass's sequence axis.
    pub(crate) start: usize,
    /// Its rows: the positions `cache.len() .. cache.len() + seq`.
    pub(crate) seq: usize,
    pub(crate) cache: &'a mut KvCache,
    /// Its causal masks (Burn's attention).
    pub(crate) masks: MaskCache,
}

/// The per-pass state of a forward pass (see the [module documentation](self)).
pub struct ForwardContext<'a> {
    /// The rotation tables of every row's position.
    pub(crate) tables: RopeTables,
    /// The same positions' tables of the sliding-window layers' RoPE, if it differs.
    pub(crate) local_tables: Option<RopeTables>,
    /// The sequences of the pass, in row order.
    pub(crate) segments: Vec<Segment<'a>>,
    /// The block being run; `None` outside the blocks.
    layer: Option<usize>,
    trace: Option<&'a mut Trace<'a>>,
}

impl<'a> ForwardContext<'a> {
    /// The context of `seq` new positions after those of `cache` (of each of its `batch`
    /// sequences), on `device`, tracing to `trace` if given; `local_rope` is the RoPE of
    /// sliding-window layers when it is not `rope`.
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
            segments: vec![Segment {
                start: 0,
                seq,
                cache,
                masks: MaskCache::default(),
            }],
            layer: None,
            trace: trace.map(shorten),
        }
    }

    /// The context of a ragged pass: sequence `i` has `seqs[i].0` new positions after those of
    /// its cache `seqs[i].1` (a cache of one sequence), its rows following those of sequence
    /// `i - 1`. Not traced.
    pub fn ragged(
        rope: &Rope,
        local_rope: Option<&Rope>,
        seqs: Vec<(usize, &'a mut KvCache)>,
        device: &Device,
    ) -> ForwardContext<'a> {
        let runs: Vec<(usize, usize)> = seqs.iter().map(|(n, c)| (c.len(), *n)).collect();
        let mut start = 0;
        let segments = seqs
            .into_iter()
            .map(|(seq, cache)| {
                let segment = Segment {
                    start,
                    seq,
                    cache,
                    masks: MaskCache::default(),
                };
                start += seq;
                segment
            })
            .collect();
        ForwardContext {
            tables: rope.tables_of_runs(&runs, device),
            local_tables: local_rope.map(|r| r.tables_of_runs(&runs, device)),
            segments,
            layer: None,
            trace: None,
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

    /// Marks every sequence's new positions as cached (after every layer appended them).
    pub fn advance(&mut self) -> Result<(), ModelError> {
        for s in &mut self.segments {
            s.cache.advance(s.seq)?;
        }
        Ok(())
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
