//! The Llama model: token embedding, transformer blocks, final norm and output projection.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};

use crate::model::block::Block;
use crate::model::config::{LlamaConfig, RopeConfig};
use crate::model::context::{ForwardContext, Trace};
use crate::model::embedding::Embedding;
use crate::model::error::ModelError;
use crate::model::kv_cache::{CacheTypes, KvCache};
use crate::model::linear::Linear;
use crate::model::norm::RmsNorm;
use crate::model::ops;
use crate::model::rope::Rope;
use crate::model::tensors::LayerMatrix;

/// The most positions one forward pass computes at once (llama.cpp's default `n_ubatch`): longer
/// inputs are split into passes of this many, as llama.cpp splits them, so a long prompt gets
/// llama.cpp's matmul shapes (the same bits) and the activations of 512 positions at a time
/// (SmolLM2 Q8_0, 1024-token prompt: peak RSS 263 -> 241 MB, prefill no slower).
pub const UBATCH: usize = 512;

/// Which positions of a forward pass get logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Logits {
    /// Every position: `[batch, seq, n_vocab]` (evaluation, perplexity).
    #[default]
    All,
    /// The last position of each sequence only: `[batch, 1, n_vocab]` (generation, which samples
    /// from the last position and would otherwise project every prompt position onto the
    /// vocabulary for nothing, as llama.cpp's `logits_all = false`).
    Last,
}

/// One sequence of a [`Llama::forward_ragged`] pass.
#[derive(Debug)]
pub struct SeqStep<'a> {
    /// Its new tokens (a prompt, or a piece of one, or the last sampled token).
    pub tokens: &'a [u32],
    /// Its cache (of one sequence), holding the positions before `tokens`.
    pub cache: &'a mut KvCache,
    /// Whether the pass returns the logits of its last position.
    pub logits: bool,
}

/// The positions of a pass that get logits.
enum Rows {
    All,
    /// These positions along the sequence axis, ascending.
    Some(Vec<usize>),
    None,
}

/// The positions `rows` (ascending) of `x` along its sequence axis, runs of consecutive ones
/// narrowed at once.
fn select_positions(x: Tensor<3>, rows: &[usize]) -> Tensor<3> {
    let [_, seq, _] = x.dims();
    if rows.len() == seq {
        return x; // every position, in order
    }
    let mut parts = Vec::new();
    let mut i = 0;
    while i < rows.len() {
        let mut j = i + 1;
        while j < rows.len() && rows[j] == rows[j - 1] + 1 {
            j += 1;
        }
        parts.push(x.clone().narrow(1, rows[i], j - i));
        i = j;
    }
    match parts.len() {
        1 => parts.pop().expect("one part"),
        _ => Tensor::cat(parts, 1),
    }
}

/// A model of one of the supported families (llama.cpp's `llama`, `qwen2`, `qwen3`, `gemma3`
/// architectures: [`crate::model::config::Family`]), named after the first.
///
/// Built from a GGUF file by [`Llama::from_gguf`]. Run a prompt through [`Llama::forward`] in one
/// pass, then one token per pass; the [`KvCache`] carries the positions between passes.
#[derive(Module, Debug)]
pub struct Llama {
    /// `[n_vocab, n_embd]`: row `t` is the embedding of token `t`.
    token_embd: Embedding,
    blocks: Vec<Block>,
    output_norm: RmsNorm,
    /// `[n_vocab, n_embd]`; `None` when the file ties the output to the token embedding.
    output: Option<Linear>,
    #[module(skip)]
    config: LlamaConfig,
    #[module(skip)]
    rope: Rope,
    /// The RoPE of sliding-window layers, when the model has some.
    #[module(skip)]
    local_rope: Option<Rope>,
}

impl Llama {
    /// A model from its parts; [`Llama::from_gguf`] checks the shapes against `config`. The
    /// sliding-window layers' RoPE comes from `config` (its own base and scale, no frequency
    /// divisors, as llama.cpp's Gemma 3 graph).
    pub(crate) fn from_parts(
        config: LlamaConfig,
        rope: Rope,
        token_embd: Embedding,
        blocks: Vec<Block>,
        output_norm: RmsNorm,
        output: Option<Linear>,
    ) -> Result<Llama, ModelError> {
        let local_rope = match &config.sliding_window {
            Some(w) => Some(Rope::new(
                &RopeConfig {
                    freq_base: w.freq_base,
                    freq_scale: w.freq_scale,
                    ..config.rope.clone()
                },
                None,
            )?),
            None => None,
        };
        Ok(Llama {
            token_embd,
            blocks,
            output_norm,
            output,
            config,
            rope,
            local_rope,
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// The device the weights are on.
    pub fn device(&self) -> Device {
        self.output_norm.device()
    }

    /// Whether the output projection is the token embedding (no `output.weight` in the file).
    pub fn has_tied_embeddings(&self) -> bool {
        self.output.is_none()
    }

    /// The transformer blocks.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// The output projection `[n_vocab, n_embd]`; `None` when tied to the token embedding.
    pub fn output(&self) -> Option<&Linear> {
        self.output.as_ref()
    }

    /// The final norm (`output_norm`).
    pub fn output_norm(&self) -> &RmsNorm {
        &self.output_norm
    }

    /// Rotary position embedding (with the file's per-pair frequency divisors, if any).
    pub fn rope(&self) -> &Rope {
        &self.rope
    }

    /// The token embedding `[n_vocab, n_embd]` (also the output projection when tied).
    pub fn token_embedding(&self) -> &Embedding {
        &self.token_embd
    }

    /// An empty KV cache for `batch` sequences of up to `max_seq` positions, keys and values in
    /// f16 as llama.cpp's default cache ([`CacheTypes::default`]); see [`Llama::new_cache_with`].
    pub fn new_cache(&self, batch: usize, max_seq: usize) -> KvCache {
        self.new_cache_with(batch, max_seq, CacheTypes::default())
    }

    /// An empty KV cache for `batch` sequences of up to `max_seq` positions, its keys and values
    /// stored as `types` says (llama.cpp's `--cache-type-k/-v`).
    ///
    /// Memory is allocated now, on the model's device ([`KvCache::allocated`]): per layer,
    /// `batch · n_head_kv · max_seq · (key_length · size(k) + value_length · size(v))` bytes.
    /// Passes beyond `min(max_seq, context_length)` positions fail with
    /// [`ModelError::CacheFull`] or [`ModelError::ContextOverflow`].
    pub fn new_cache_with(&self, batch: usize, max_seq: usize, types: CacheTypes) -> KvCache {
        let c = &self.config;
        let shapes: Vec<_> = (0..self.blocks.len())
            .map(|l| (c.head_count_kv[l], c.key_length, c.value_length))
            .collect();
        KvCache::allocated(&shapes, batch, max_seq, types, &self.device())
    }

    /// Logits of the positions `cache.len() .. cache.len() + seq`, appending them to the cache.
    ///
    /// # Shapes
    /// - `tokens`: `[batch, seq]` token ids (moved to the model's device if elsewhere)
    /// - output: `[batch, seq, n_vocab]`
    pub fn forward(
        &self,
        tokens: Tensor<2, Int>,
        cache: &mut KvCache,
    ) -> Result<Tensor<3>, ModelError> {
        self.forward_logits(tokens, cache, Logits::All)
    }

    /// [`Llama::forward`] with the logits of the chosen positions only: with [`Logits::Last`],
    /// `[batch, 1, n_vocab]` of the last position of each sequence.
    pub fn forward_logits(
        &self,
        tokens: Tensor<2, Int>,
        cache: &mut KvCache,
        logits: Logits,
    ) -> Result<Tensor<3>, ModelError> {
        let [batch, _] = tokens.dims();
        let ids = self.token_ids(&tokens)?;
        self.forward_ids(&ids, batch, cache, logits)
    }

    /// [`Llama::forward_logits`] for token ids on the host (row-major `[batch, seq]`, `batch`
    /// rows of `ids.len() / batch`): what generation, benchmarks and evaluation hold anyway. The
    /// ids go to the device once and are never read back (a token tensor is read back to check
    /// its ids against the vocabulary). Inputs longer than [`UBATCH`] positions are computed in
    /// passes of [`UBATCH`].
    pub fn forward_ids(
        &self,
        ids: &[u32],
        batch: usize,
        cache: &mut KvCache,
        logits: Logits,
    ) -> Result<Tensor<3>, ModelError> {
        on_cpu_pool(&self.device(), || {
            self.forward_ids_with(ids, batch, cache, logits, None)
        })
    }

    /// [`Llama::forward`], handing each intermediate tensor to `trace` under the name llama.cpp's
    /// eval callback gives the same tensor, in llama.cpp's graph order: `embd` (the token
    /// embeddings; llama.cpp before its input-selection change called it `inp_embd`), then per
    /// layer `i`: `attn_norm-{i}`, `Qcur-{i}`, `Vcur-{i}`, `Kcur-{i}` (after RoPE, heads
    /// flattened), `kqv_out-{i}` (attention before the output projection), `attn_out-{i}`,
    /// `ffn_inp-{i}`, `ffn_norm-{i}`, `ffn_gate-{i}`, `ffn_up-{i}`, `ffn_swiglu-{i}`,
    /// `ffn_out-{i}` (before the residual), `l_out-{i}`; last `result_norm` and `result_output`
    /// (the logits of the positions `logits` asks for). Each is `[batch, seq, dim]`; an input
    /// longer than [`UBATCH`] is traced pass by pass (as llama.cpp's callback sees each
    /// micro-batch), `result_*` only for the passes that give logits.
    pub fn forward_traced(
        &self,
        tokens: Tensor<2, Int>,
        cache: &mut KvCache,
        logits: Logits,
        trace: &mut Trace<'_>,
    ) -> Result<Tensor<3>, ModelError> {
        let [batch, _] = tokens.dims();
        let ids = self.token_ids(&tokens)?;
        self.forward_ids_traced(&ids, batch, cache, logits, trace)
    }

    /// [`Llama::forward_traced`] for token ids on the host (see [`Llama::forward_ids`]).
    pub fn forward_ids_traced(
        &self,
        ids: &[u32],
        batch: usize,
        cache: &mut KvCache,
        logits: Logits,
        trace: &mut Trace<'_>,
    ) -> Result<Tensor<3>, ModelError> {
        self.forward_ids_with(ids, batch, cache, logits, Some(trace))
    }

    /// [`Llama::forward_ids`], traced to `trace` if given.
    fn forward_ids_with(
        &self,
        ids: &[u32],
        batch: usize,
        cache: &mut KvCache,
        logits: Logits,
        mut trace: Option<&mut Trace<'_>>,
    ) -> Result<Tensor<3>, ModelError> {
        let seq = self.check_input(ids, batch, cache)?;
        if seq <= UBATCH {
            let logits = self.forward_ubatch(ids, batch, seq, cache, Some(logits), trace)?;
            return Ok(logits.expect("logits were asked for"));
        }
        // Longer inputs in pieces of UBATCH positions, as llama.cpp splits a batch into
        // micro-batches of `n_ubatch`: the activations of one piece at a time, and the same
        // matmul shapes as llama.cpp's. A failure rewinds the cache to where the pass began.
        let start = cache.len();
        let result = (|| {
            let mut out = Vec::new();
            for s0 in (0..seq).step_by(UBATCH) {
                let s1 = (s0 + UBATCH).min(seq);
                let piece: Vec<u32> = ids
                    .chunks_exact(seq)
                    .flat_map(|row| &row[s0..s1])
                    .copied()
                    .collect();
                let wanted = match logits {
                    Logits::All => Some(Logits::All),
                    Logits::Last => (s1 == seq).then_some(Logits::Last),
                };
                let trace = trace.as_deref_mut();
                let l = self.forward_ubatch(&piece, batch, s1 - s0, cache, wanted, trace)?;
                out.extend(l);
            }
            Ok(Tensor::cat(out, 1))
        })();
        if result.is_err() {
            cache.truncate(start);
        }
        result
    }

    /// One micro-batch of [`Llama::forward_ids_with`]: `seq` positions, checked; the logits
    /// `logits` asks for, or none (`None`: the pass only fills the cache).
    fn forward_ubatch(
        &self,
        ids: &[u32],
        batch: usize,
        seq: usize,
        cache: &mut KvCache,
        logits: Option<Logits>,
        trace: Option<&mut Trace<'_>>,
    ) -> Result<Option<Tensor<3>>, ModelError> {
        let local_rope = self.local_rope.as_ref();
        let ctx = ForwardContext::new(&self.rope, local_rope, seq, cache, &self.device(), trace);
        let rows = match logits {
            Some(Logits::All) => Rows::All,
            Some(Logits::Last) => Rows::Some(vec![seq - 1]),
            None => Rows::None,
        };
        self.run_pass(ids, batch, seq, ctx, rows)
    }

    /// Logits of the next position of several sequences at once, each at its own position
    /// over its own cache: the step of a server that batches its requests (continuous
    /// batching). Sequence `i` computes the positions `cache.len() .. cache.len() +
    /// tokens.len()` of `seqs[i]` (a cache of one sequence, [`Llama::new_cache`] with batch 1)
    /// and appends them to its cache. Every layer but the attention computes the positions of
    /// all sequences as the rows of one matrix, so each weight is read once per step; the
    /// attention takes each sequence's rows over its own cache.
    ///
    /// Returns the logits `[n, n_vocab]` of the last position of each sequence whose `logits`
    /// is set, in their order (`None` if none is). A sequence's rows give the same numbers as
    /// [`Llama::forward_ids`] of that sequence alone wherever the matmul kernels sum a row in
    /// the same order whatever the number of rows (on the CPU devices, ggml's orders: the
    /// 32-element formats, the formats llama.cpp repacks,
    /// [`gguf_kernels::cpu::follows_ggml_repack`], and TQ1_0/TQ2_0; F32 and F16 weights, the
    /// K-quants from 8 rows and IQ4_XS take another order for several rows than for one, as in
    /// llama.cpp). All inputs are checked before anything runs; after an error no cache has
    /// advanced.
    pub fn forward_ragged(
        &self,
        seqs: &mut [SeqStep<'_>],
    ) -> Result<Option<Tensor<2>>, ModelError> {
        if seqs.is_empty() {
            return Err(ModelError::InvalidInput {
                what: "a ragged pass of no sequences".into(),
            });
        }
        for s in seqs.iter() {
            self.check_input(s.tokens, 1, s.cache)?;
        }
        let ids: Vec<u32> = seqs.iter().flat_map(|s| s.tokens).copied().collect();
        let mut rows = Vec::new();
        let mut end = 0;
        for s in seqs.iter() {
            end += s.tokens.len();
            if s.logits {
                rows.push(end - 1);
            }
        }
        let rows = match rows.is_empty() {
            true => Rows::None,
            false => Rows::Some(rows),
        };
        let device = self.device();
        on_cpu_pool(&device, || {
            let parts = seqs
                .iter_mut()
                .map(|s| (s.tokens.len(), &mut *s.cache))
                .collect();
            let local_rope = self.local_rope.as_ref();
            let ctx = ForwardContext::ragged(&self.rope, local_rope, parts, &device);
            let logits = self.run_pass(&ids, 1, ids.len(), ctx, rows)?;
            Ok(logits.map(|l| l.squeeze_dim(0)))
        })
    }

    /// The blocks, final norm and output of one pass of `seq` positions per each of `batch`
    /// rows (`ids`, row-major) in `ctx`, advancing its caches; the logits of the positions
    /// `rows` names.
    fn run_pass(
        &self,
        ids: &[u32],
        batch: usize,
        seq: usize,
        mut ctx: ForwardContext<'_>,
        rows: Rows,
    ) -> Result<Option<Tensor<3>>, ModelError> {
        let last = self
            .blocks
            .len()
            .checked_sub(1)
            .ok_or(ModelError::InvalidInput {
                what: "the model has no blocks".to_string(),
            })?;

        // Token embeddings: row t of token_embd for token t (scaled, in Gemma).
        let x: Tensor<3> = self
            .token_embd
            .forward(ids)? // [batch · seq, n_embd]
            .reshape([batch, seq, self.config.embedding_length]);
        ctx.trace("embd", &x);
        let x = match self.config.embedding_scale {
            Some(s) => {
                let x = ops::scale(x, s); // [batch, seq, n_embd]
                ctx.trace("inp_scaled", &x);
                x
            }
            None => x,
        };

        // Transformer blocks.
        let mut x = x;
        for (layer, block) in self.blocks.iter().enumerate() {
            ctx.set_layer(Some(layer));
            let ffn_inp = block.attend(x, &mut ctx)?;
            // [batch, seq, n_embd]. After the last attention only the positions whose logits are
            // wanted go on, as in llama.cpp's graph (`inp_out_ids`): the same rows, and the same
            // matmul shapes (one row takes ggml's vec_dot order, several its tiled one).
            let ffn_inp = match (layer == last, &rows) {
                (false, _) | (true, Rows::All) => ffn_inp,
                (true, Rows::Some(rows)) => select_positions(ffn_inp, rows), // [batch, rows, n_embd]
                (true, Rows::None) => {
                    ctx.advance()?;
                    return Ok(None);
                }
            };
            x = block.feed_forward_residual(ffn_inp, &mut ctx)?;
        }
        ctx.set_layer(None);
        ctx.advance()?;

        // Final norm and logits of the positions that went on.
        let x = self.output_norm.forward(x);
        ctx.trace("result_norm", &x);
        let logits = match &self.output {
            Some(output) => output.forward(x)?,
            None => self.token_embd.project(x)?,
        }; // [batch, seq or rows, n_vocab]
        let logits = match self.config.final_logit_softcapping {
            Some(cap) => ops::softcap(logits, cap),
            None => logits,
        };
        ctx.trace("result_output", &logits);
        Ok(Some(logits))
    }

    /// The model with `f(layer, target, projection)` in place of each projection of every block.
    pub(crate) fn map_block_linears(
        self,
        f: &mut dyn FnMut(usize, LayerMatrix, Linear) -> Result<Linear, ModelError>,
    ) -> Result<Llama, ModelError> {
        let blocks = self
            .blocks
            .into_iter()
            .enumerate()
            .map(|(layer, block)| block.map_linears(&mut |m, l| f(layer, m, l)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Llama { blocks, ..self })
    }

    /// The ids of a token tensor on the host, row-major; an error for an id that is negative or
    /// beyond u32.
    fn token_ids(&self, tokens: &Tensor<2, Int>) -> Result<Vec<u32>, ModelError> {
        let data = tokens.to_data();
        data.iter::<i64>()
            .enumerate()
            .map(|(i, id)| {
                u32::try_from(id).map_err(|_| ModelError::InvalidInput {
                    what: format!(
                        "token id {id} at index {i} is outside the vocabulary 0..{}",
                        self.config.vocab_size
                    ),
                })
            })
            .collect()
    }

    /// Rejects an input the forward pass cannot run, before anything runs: `ids` must be
    /// `batch` rows of the same length, each id in the vocabulary, and fit the cache and the
    /// context. Returns the sequence length.
    fn check_input(&self, ids: &[u32], batch: usize, cache: &KvCache) -> Result<usize, ModelError> {
        if batch == 0 || ids.is_empty() || !ids.len().is_multiple_of(batch) {
            return Err(ModelError::InvalidInput {
                what: format!("{} token ids do not make {batch} rows of tokens", ids.len()),
            });
        }
        let seq = ids.len() / batch;
        if cache.batch() != batch || cache.n_layers() != self.blocks.len() {
            return Err(ModelError::CacheMismatch {
                what: format!(
                    "cache for batch {} and {} layers, input batch {batch} for {} layers",
                    cache.batch(),
                    cache.n_layers(),
                    self.blocks.len()
                ),
            });
        }
        let needed = cache.len().saturating_add(seq);
        if needed > self.config.context_length {
            return Err(ModelError::ContextOverflow {
                needed,
                context_length: self.config.context_length,
            });
        }
        cache.check_room(seq)?;
        // Token ids must index the embedding (a gather out of range is undefined on some backends).
        let n_vocab = self.config.vocab_size;
        if let Some((i, id)) = ids
            .iter()
            .enumerate()
            .find(|(_, &id)| id as usize >= n_vocab)
        {
            return Err(ModelError::InvalidInput {
                what: format!("token id {id} at index {i} is outside the vocabulary 0..{n_vocab}"),
            });
        }
        Ok(seq)
    }
}

/// Runs `f` on worker 0 of rayon's global pool when `device` is a CPU device and the caller is not
/// a worker already (then `f` runs in place).
///
/// The CPU devices and the quantized-matmul kernels split every operation over that pool. Called
/// from outside it, each parallel operation is handed to the pool while the caller sleeps until it
/// is done: two thread wake-ups per operation, hundreds per decoded token (measured with `perf`:
/// about a third of SmolLM2's decode time went to futex waits and `sched_yield`). From inside the
/// pool, the calling worker takes its share of each operation itself and only its idle peers are
/// woken, and the hand-over happens once per forward pass.
fn on_cpu_pool<R: Send>(device: &Device, f: impl FnOnce() -> R + Send) -> R {
    let cpu = gguf_kernels::extension::is_cpu_device(device);
    if cpu && rayon::current_thread_index().is_none() {
        // On worker 0 every time: each worker's temporaries come from its own malloc arena,
        // which keeps what a forward pass freed for the next one; passes that hopped between
        // workers made every arena that large (SmolLM2 Q8_0 `bench --runs 5`: peak RSS 175-176
        // MB, 170-171 MB with every pass on worker 0; same speed).
        let job = std::sync::Mutex::new(Some(f));
        let out = rayon::broadcast(|ctx| match ctx.index() {
            0 => job
                .lock()
                .map(|mut job| job.take().map(|f| f()))
                .unwrap_or(None),
            _ => None,
        });
        out.into_iter()
            .flatten()
            .next()
            .expect("worker 0 ran the job")
    } else {
        f()
    }
}
