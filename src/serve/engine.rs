//! The engine of the server: one thread owns the model and serves every request through a fixed
//! number of slots with continuous batching.
//!
//! - A **slot** holds one sequence's KV cache (`context / slots` positions) and the tokens in it.
//! - Each **step** is one [`Llama::forward_ragged`] pass over every busy slot: the last sampled
//!   token of each decoding slot, plus pieces of the prompts being read, up to
//!   [`EngineConfig::batch_tokens`] positions in all (chunked prefill: a long prompt is read over
//!   several steps and never stalls the decoding slots). New requests take a free slot between
//!   steps; a finished or cancelled one frees its slot at once.
//! - **Prompt-prefix cache**: a free slot keeps its cache. A request takes the free slot whose
//!   cached tokens share the longest prefix with its prompt and computes only the rest (a chat's
//!   earlier turns, a shared system prompt); llama.cpp's `cache_prompt`.
//! - The engine samples, detokenizes, holds back text that may begin a stop string, and hands
//!   each token to the request's [`Sink`]; a sink that reports its receiver gone
//!   ([`Sink::is_closed`], a client that disconnected) frees the slot before the next step.
//!
//! A sequence's rows in a step are computed as when it runs alone wherever the matmul kernels sum
//! a row the same way for any number of rows (see [`Llama::forward_ragged`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::model::{CacheTypes, KvCache, Llama, SeqStep};
use crate::sampling::{Sampler, SamplerConfig};
use crate::serve::grammar::Constraint;
use crate::serve::metrics::Metrics;
use crate::tokenizer::{Detokenizer, Tokenizer};

/// How the engine is set up.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Sequences served at once (llama.cpp's `--parallel`).
    pub slots: usize,
    /// Positions of all slots together (llama.cpp's `--ctx-size`): each slot holds
    /// `context / slots`.
    pub context: usize,
    /// Positions computed per step at most (prompt pieces and decoding tokens together).
    pub batch_tokens: usize,
    /// Requests waiting for a slot at most: with `slots + queue` requests in flight, more are
    /// refused ([`SubmitError::QueueFull`]).
    pub queue: usize,
    /// The KV cache's element types.
    pub cache: CacheTypes,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            slots: 4,
            context: 4096,
            batch_tokens: crate::model::UBATCH,
            queue: 64,
            cache: CacheTypes::default(),
        }
    }
}

/// What one request asks for besides its prompt.
#[derive(Debug, Clone)]
pub struct Params {
    /// Tokens to generate at most.
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    /// Generation stops before the first of these texts (which is not returned).
    pub stop: Vec<String>,
    /// Return each token's log-probability and this many most likely alternatives.
    pub logprobs: Option<usize>,
    /// Go on past end-of-generation tokens.
    pub ignore_eos: bool,
    /// Reuse the cached prefix of a free slot (llama.cpp's `cache_prompt`, on by default).
    pub cache_prompt: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            max_tokens: 16,
            sampler: SamplerConfig::default(),
            stop: Vec::new(),
            logprobs: None,
            ignore_eos: false,
            cache_prompt: true,
        }
    }
}

/// A token's log-probability under the model (the softmax of its raw logits) and the `top`
/// most likely tokens', most likely first.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

/// Why a request stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens`, or the slot's context is full.
    Length,
}

/// Token counts of a finished request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Prompt tokens whose cache entries came from the prefix cache.
    pub cached_tokens: usize,
}

/// What the engine tells a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A generated token, and the text released with it: empty while the text may still be the
    /// start of a stop string or of a UTF-8 character, or several tokens' text at once.
    Token {
        id: u32,
        text: String,
        logprob: Option<TokenLogprob>,
    },
    /// The end: the text still held back (released now), why, and the counts.
    Done {
        text: String,
        reason: FinishReason,
        usage: Usage,
    },
    /// The request failed; nothing follows.
    Error(String),
}

/// Where a request's events go.
pub trait Sink: Send {
    /// Delivers `event`; `false` when the receiver is gone (the request is then cancelled).
    fn send(&mut self, event: Event) -> bool;
    /// Whether the receiver is gone.
    fn is_closed(&self) -> bool;
}

/// A prompt to complete.
pub struct Request {
    pub prompt: Vec<u32>,
    pub params: Params,
    /// The grammar the answer follows, if any ([`crate::serve::grammar`]).
    pub constraint: Option<Constraint>,
    pub sink: Box<dyn Sink>,
}

/// Why a request was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error(
        "the prompt has {tokens} tokens, more than the {context} positions of a slot's context"
    )]
    PromptTooLong { tokens: usize, context: usize },
    #[error("{0}")]
    Invalid(String),
    #[error("the server is busy: {waiting} requests are waiting for a slot already")]
    QueueFull { waiting: usize },
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// State shared by the engine's thread and its handle.
struct Shared {
    /// Requests queued or in a slot.
    in_flight: AtomicUsize,
    closing: AtomicBool,
}

/// A handle to the engine's thread (see the [module documentation](self)).
pub struct Engine {
    tx: Mutex<Option<mpsc::Sender<Request>>>,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    config: EngineConfig,
    slot_context: usize,
    vocab_size: usize,
    metrics: Arc<Metrics>,
}

impl Engine {
    /// Starts the engine's thread with `model`: `config.slots` caches of `config.context /
    /// config.slots` positions (at most the model's context) are allocated first.
    pub fn start(
        model: Llama,
        tokenizer: Arc<Tokenizer>,
        config: EngineConfig,
    ) -> Result<Engine, SubmitError> {
        let c = model.config();
        config
            .cache
            .check(c.key_length)
            .map_err(|e| SubmitError::Invalid(e.to_string()))?;
        if config.slots == 0 || config.batch_tokens < config.slots {
            return Err(SubmitError::Invalid(format!(
                "{} slots with {} positions per step: need at least one slot and one position per slot",
                config.slots, config.batch_tokens
            )));
        }
        let slot_context = (config.context / config.slots).min(c.context_length);
        if slot_context == 0 {
            return Err(SubmitError::Invalid(format!(
                "a context of {} positions over {} slots leaves none per slot",
                config.context, config.slots
            )));
        }
        let vocab_size = c.vocab_size;
        let slots = (0..config.slots)
            .map(|_| Slot {
                cache: model.new_cache_with(1, slot_context, config.cache),
                tokens: Vec::new(),
                job: None,
                last_used: 0,
            })
            .collect();
        let shared = Arc::new(Shared {
            in_flight: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
        });
        let metrics = Arc::new(Metrics::new());
        let (tx, rx) = mpsc::channel();
        let scheduler = Scheduler {
            model,
            tokenizer,
            slots,
            queue: VecDeque::new(),
            rx,
            shared: shared.clone(),
            batch_tokens: config.batch_tokens,
            metrics: metrics.clone(),
            clock: 0,
        };
        let thread = std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || scheduler.run())
            .map_err(|e| SubmitError::Invalid(format!("starting the engine thread: {e}")))?;
        Ok(Engine {
            tx: Mutex::new(Some(tx)),
            shared,
            thread: Mutex::new(Some(thread)),
            config,
            slot_context,
            vocab_size,
            metrics,
        })
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Positions per slot: the longest prompt plus generation a request can have.
    pub fn slot_context(&self) -> usize {
        self.slot_context
    }

    /// The metrics it updates.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Queues `request`; its events go to its sink. Refused, with nothing queued, when the
    /// prompt is empty or longer than a slot's context, a token id is outside the vocabulary,
    /// the sampler's parameters are invalid, the queue is full, or the engine is shutting down.
    pub fn submit(&self, request: Request) -> Result<(), SubmitError> {
        if self.shared.closing.load(Ordering::SeqCst) {
            return Err(SubmitError::ShuttingDown);
        }
        let n = request.prompt.len();
        if n == 0 {
            return Err(SubmitError::EmptyPrompt);
        }
        if n > self.slot_context {
            return Err(SubmitError::PromptTooLong {
                tokens: n,
                context: self.slot_context,
            });
        }
        if let Some(id) = request
            .prompt
            .iter()
            .find(|&&id| id as usize >= self.vocab_size)
        {
            return Err(SubmitError::Invalid(format!(
                "token id {id} is outside the vocabulary 0..{}",
                self.vocab_size
            )));
        }
        request
            .params
            .sampler
            .validate()
            .map_err(|e| SubmitError::Invalid(e.to_string()))?;
        if request.params.max_tokens == 0 {
            return Err(SubmitError::Invalid("max_tokens must be at least 1".into()));
        }
        let in_flight = self.shared.in_flight.fetch_add(1, Ordering::SeqCst);
        if in_flight >= self.config.slots + self.config.queue {
            self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(SubmitError::QueueFull {
                waiting: in_flight.saturating_sub(self.config.slots),
            });
        }
        let sent = match self.tx.lock() {
            Ok(tx) => tx.as_ref().map(|tx| tx.send(request).is_ok()),
            Err(_) => None,
        };
        if sent != Some(true) {
            self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(SubmitError::ShuttingDown);
        }
        Ok(())
    }

    /// Refuses new requests, finishes those queued and running, and waits for the thread.
    pub fn shutdown(&self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        if let Ok(mut tx) = self.tx.lock() {
            tx.take(); // the thread ends once it is idle and the channel is closed
        }
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            if thread.join().is_err() {
                log::error!("the engine thread panicked");
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A request in a slot.
struct Job {
    sink: Box<dyn Sink>,
    constraint: Option<Constraint>,
    params: Params,
    prompt: Vec<u32>,
    sampler: Sampler,
    detok: Detokenizer,
    generated: usize,
    /// The last sampled token, to be fed in the next step.
    next: Option<u32>,
    /// Text decoded but not yet released (a possible start of a stop string).
    pending: String,
    cached: usize,
    /// When it got its slot, until its first token (time to first token).
    started: Option<Instant>,
}

struct Slot {
    cache: KvCache,
    /// The tokens whose positions the cache holds.
    tokens: Vec<u32>,
    job: Option<Job>,
    /// When the slot was last freed (the engine's step counter): the least recently used free
    /// slot is taken when no prefix matches.
    last_used: u64,
}

impl Slot {
    /// The tokens its next step computes, and whether that step gives logits; `None` when free.
    fn next_tokens(&self, budget: usize) -> Option<(Vec<u32>, bool)> {
        let job = self.job.as_ref()?;
        if let Some(t) = job.next {
            return Some((vec![t], true));
        }
        let done = self.tokens.len();
        let n = (job.prompt.len() - done).min(budget);
        (n > 0).then(|| {
            let end = done + n;
            (job.prompt[done..end].to_vec(), end == job.prompt.len())
        })
    }
}

struct Scheduler {
    model: Llama,
    tokenizer: Arc<Tokenizer>,
    slots: Vec<Slot>,
    queue: VecDeque<Request>,
    rx: mpsc::Receiver<Request>,
    shared: Arc<Shared>,
    batch_tokens: usize,
    metrics: Arc<Metrics>,
    clock: u64,
}

impl Scheduler {
    fn run(mut self) {
        loop {
            let busy = !self.queue.is_empty() || self.slots.iter().any(|s| s.job.is_some());
            if !busy {
                match self.rx.recv() {
                    Ok(r) => self.queue.push_back(r),
                    Err(_) => break, // closed, and nothing left to do
                }
            }
            while let Ok(r) = self.rx.try_recv() {
                self.queue.push_back(r);
            }
            self.drop_closed();
            self.admit();
            self.step();
        }
    }

    /// Forgets queued requests whose client is gone, and frees the slots of running ones.
    fn drop_closed(&mut self) {
        let before = self.queue.len();
        self.queue.retain(|r| !r.sink.is_closed());
        let dropped = before - self.queue.len();
        if dropped > 0 {
            self.ended("cancelled", dropped);
        }
        for i in 0..self.slots.len() {
            if self.slots[i]
                .job
                .as_ref()
                .is_some_and(|j| j.sink.is_closed())
            {
                self.free(i, "cancelled");
            }
        }
        self.update_gauges();
    }

    /// Active slots, and requests in flight but not in a slot (queued here or in the channel).
    fn update_gauges(&self) {
        let active = self.slots.iter().filter(|s| s.job.is_some()).count();
        let in_flight = self.shared.in_flight.load(Ordering::SeqCst);
        self.metrics.active_slots.set(active as i64);
        self.metrics
            .queue_length
            .set(in_flight.saturating_sub(active) as i64);
    }

    /// Moves queued requests into free slots, in order.
    fn admit(&mut self) {
        while let Some(front) = self.queue.front() {
            let Some(i) = self.pick_slot(&front.prompt, front.params.cache_prompt) else {
                break;
            };
            let Some(mut request) = self.queue.pop_front() else {
                break;
            };
            let sampler = match Sampler::new(request.params.sampler) {
                Ok(s) => s,
                Err(e) => {
                    request.sink.send(Event::Error(e.to_string()));
                    self.ended("error", 1);
                    continue;
                }
            };
            let slot = &mut self.slots[i];
            let common = match request.params.cache_prompt {
                true => common_prefix(&slot.tokens, &request.prompt),
                false => 0,
            };
            // At least the last prompt token is computed: its logits give the first token.
            let reuse = common.min(request.prompt.len() - 1);
            slot.cache.truncate(reuse);
            slot.tokens.truncate(reuse);
            self.metrics.requests.inc();
            self.metrics
                .prompt_tokens
                .inc_by((request.prompt.len() - reuse) as u64);
            self.metrics.cached_prompt_tokens.inc_by(reuse as u64);
            slot.job = Some(Job {
                sink: request.sink,
                constraint: request.constraint,
                params: request.params,
                prompt: request.prompt,
                sampler,
                detok: Detokenizer::new(false),
                generated: 0,
                next: None,
                pending: String::new(),
                cached: reuse,
                started: Some(Instant::now()),
            });
        }
        self.update_gauges();
    }

    /// The free slot for `prompt`: the longest common prefix with its cached tokens (when the
    /// request reuses the cache), then the least recently used.
    fn pick_slot(&self, prompt: &[u32], cache_prompt: bool) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.job.is_none())
            .max_by_key(|(_, s)| {
                let common = match cache_prompt {
                    true => common_prefix(&s.tokens, prompt),
                    false => 0,
                };
                (common, std::cmp::Reverse(s.last_used))
            })
            .map(|(i, _)| i)
    }

    /// One ragged pass over the busy slots, then sampling for those that got logits.
    fn step(&mut self) {
        // Decoding slots first (one position each), then prompt pieces in slot order.
        let mut budget = self.batch_tokens;
        let mut plan: Vec<Option<(Vec<u32>, bool)>> = vec![None; self.slots.len()];
        for decoding in [true, false] {
            for (i, slot) in self.slots.iter().enumerate() {
                let is_decoding = slot.job.as_ref().is_some_and(|j| j.next.is_some());
                if is_decoding != decoding || budget == 0 {
                    continue;
                }
                if let Some((tokens, logits)) = slot.next_tokens(budget) {
                    budget -= tokens.len();
                    plan[i] = Some((tokens, logits));
                }
            }
        }
        let order: Vec<usize> = (0..plan.len()).filter(|&i| plan[i].is_some()).collect();
        if order.is_empty() {
            return;
        }
        let start = Instant::now();
        let mut steps: Vec<SeqStep> = self
            .slots
            .iter_mut()
            .zip(&plan)
            .filter_map(|(slot, p)| {
                p.as_ref().map(|(tokens, logits)| SeqStep {
                    tokens,
                    cache: &mut slot.cache,
                    logits: *logits,
                })
            })
            .collect();
        let result = self
            .model
            .forward_ragged(&mut steps)
            .map_err(|e| e.to_string())
            .and_then(|logits| match logits {
                Some(l) => l
                    .into_data()
                    .try_into_vec::<f32>()
                    .map_err(|e| format!("reading back the logits: {e:?}")),
                None => Ok(Vec::new()),
            });
        drop(steps);
        let logits = match result {
            Ok(l) => l,
            Err(e) => {
                log::error!("forward pass failed: {e}");
                for &i in &order {
                    self.fail(i, format!("forward pass failed: {e}"));
                }
                return;
            }
        };
        let vocab = self.model.config().vocab_size;
        let mut rows = logits.chunks_exact(vocab);
        let mut sampled = 0;
        for &i in &order {
            let Some((tokens, wants_logits)) = plan[i].take() else {
                continue;
            };
            self.slots[i].tokens.extend_from_slice(&tokens);
            if let Some(job) = self.slots[i].job.as_mut() {
                job.next = None;
            }
            if wants_logits {
                if let Some(row) = rows.next() {
                    sampled += 1;
                    self.emit(i, row);
                }
            }
        }
        let secs = start.elapsed().as_secs_f64();
        self.metrics.observe_step(sampled, secs);
        self.update_gauges();
    }

    /// Samples slot `i`'s next token from `logits`, hands it to the request, and finishes the
    /// request when it is done.
    fn emit(&mut self, i: usize, logits: &[f32]) {
        let tokenizer = self.tokenizer.clone();
        let capacity = self.slots[i].cache.capacity();
        let slot = &mut self.slots[i];
        let Some(job) = slot.job.as_mut() else { return };
        if let Some(started) = job.started.take() {
            self.metrics
                .time_to_first_token
                .observe(started.elapsed().as_secs_f64());
        }
        // With a grammar, its tokens only (the log-probabilities stay the model's).
        let mut masked = None;
        if let Some(c) = job.constraint.as_mut() {
            let mut m = logits.to_vec();
            if let Err(e) = c.mask(&mut m) {
                self.fail(i, format!("grammar: {e}"));
                return;
            }
            masked = Some(m);
        }
        let next = match job
            .sampler
            .sample(masked.as_deref().unwrap_or(logits), &slot.tokens)
        {
            Ok(t) => t,
            Err(e) => {
                self.fail(i, format!("sampling failed: {e}"));
                return;
            }
        };
        if (!job.params.ignore_eos || job.constraint.is_some()) && tokenizer.is_eog(next) {
            self.finish(i, FinishReason::Stop, false);
            return;
        }
        if let Some(c) = job.constraint.as_mut() {
            if let Err(e) = c.commit(next) {
                self.fail(i, format!("grammar: {e}"));
                return;
            }
        }
        let logprob = job.params.logprobs.map(|top| logprob_of(logits, next, top));
        job.generated += 1;
        self.metrics.generated_tokens.inc();
        let piece = job.detok.push(&tokenizer, next);
        job.pending.push_str(&piece);
        // Up to a stop string (then the end), or all but what may begin one.
        let stop_at = find_stop(&job.pending, &job.params.stop);
        let text = match stop_at {
            Some(at) => {
                job.pending.truncate(at);
                std::mem::take(&mut job.pending)
            }
            None => {
                let keep = job.pending.len() - held_back(&job.pending, &job.params.stop);
                job.pending.drain(..keep).collect()
            }
        };
        if !job.sink.send(Event::Token {
            id: next,
            text,
            logprob,
        }) {
            self.free(i, "cancelled");
            return;
        }
        if stop_at.is_some() {
            self.finish(i, FinishReason::Stop, true);
            return;
        }
        if job.generated >= job.params.max_tokens || slot.tokens.len() >= capacity {
            self.finish(i, FinishReason::Length, false);
            return;
        }
        job.next = Some(next);
    }

    /// Ends slot `i`'s request with `reason` (`stopped`: at a stop string, whose text and
    /// whatever follows is dropped), and frees the slot.
    fn finish(&mut self, i: usize, reason: FinishReason, stopped: bool) {
        let Some(job) = self.slots[i].job.as_mut() else {
            return;
        };
        let mut text = std::mem::take(&mut job.pending);
        if !stopped {
            text.push_str(&job.detok.finish());
            if let Some(at) = find_stop(&text, &job.params.stop) {
                text.truncate(at);
            }
        }
        let usage = Usage {
            prompt_tokens: job.prompt.len(),
            completion_tokens: job.generated,
            cached_tokens: job.cached,
        };
        let label = match reason {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        };
        // The slot is free before the client hears of the end, so its next request finds it.
        if let Some(mut job) = self.free(i, label) {
            job.sink.send(Event::Done {
                text,
                reason,
                usage,
            });
        }
    }

    /// Frees slot `i` (its cache and tokens stay, for the prefix cache), counting the request
    /// as finished with `how`; returns its request, to tell it.
    fn free(&mut self, i: usize, how: &str) -> Option<Job> {
        self.clock += 1;
        let slot = &mut self.slots[i];
        let job = slot.job.take();
        slot.last_used = self.clock;
        if job.is_some() {
            self.ended(how, 1);
            self.update_gauges();
        }
        job
    }

    /// Ends slot `i`'s request with an error `message`.
    fn fail(&mut self, i: usize, message: String) {
        if let Some(mut job) = self.free(i, "error") {
            job.sink.send(Event::Error(message));
        }
    }

    /// Counts `n` requests as ended with `how` (no longer in flight).
    fn ended(&self, how: &str, n: usize) {
        self.shared.in_flight.fetch_sub(n, Ordering::SeqCst);
        self.metrics.finished(how, n as u64);
    }
}

/// The length of the common prefix of `a` and `b`.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The byte offset of the first stop string in `text`, if any.
fn find_stop(text: &str, stop: &[String]) -> Option<usize> {
    stop.iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
}

/// The length in bytes of the longest end of `text` that begins some stop string (held back
/// until the next tokens tell whether the stop string follows), at a character boundary.
fn held_back(text: &str, stop: &[String]) -> usize {
    let mut hold = 0;
    for s in stop {
        for (at, _) in text.char_indices() {
            let tail = &text[at..];
            if tail.len() > hold && tail.len() < s.len() && s.starts_with(tail) {
                hold = tail.len();
                break; // the longest tail for this stop string
            }
        }
    }
    hold
}

/// `log softmax(logits)[token]` and the `top` most likely tokens' log-probabilities (most likely
/// first, ties by id), in f64 sums.
pub fn logprob_of(logits: &[f32], token: u32, top: usize) -> TokenLogprob {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    let lse = max as f64 + sum.ln();
    let lp = |l: f32| (l as f64 - lse) as f32;
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(top + 1);
    if top > 0 {
        for (id, &l) in logits.iter().enumerate() {
            if best.len() < top || l > best[best.len() - 1].1 {
                let at = best.partition_point(|&(_, b)| b >= l);
                best.insert(at, (id as u32, l));
                best.truncate(top);
            }
        }
    }
    TokenLogprob {
        logprob: lp(logits[token as usize]),
        top: best.into_iter().map(|(id, l)| (id, lp(l))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_are_found_and_their_starts_held_back() {
        let stop = vec!["\n\n".to_string(), "END".to_string()];
        assert_eq!(find_stop("abc\n\nd", &stop), Some(3));
        assert_eq!(find_stop("abEND\n\n", &stop), Some(2));
        assert_eq!(find_stop("abc", &stop), None);
        assert_eq!(held_back("abc\n", &stop), 1);
        assert_eq!(held_back("abcEN", &stop), 2);
        assert_eq!(held_back("abcE", &stop), 1);
        assert_eq!(held_back("abc", &stop), 0);
        assert_eq!(held_back("é", &["éa".to_string()]), "é".len());
        assert_eq!(held_back("x", &[]), 0);
    }

    #[test]
    fn logprobs_are_a_log_softmax() {
        let logits = [1.0f32, 3.0, 2.0, 3.0];
        let lp = logprob_of(&logits, 2, 3);
        let z: f64 = logits.iter().map(|&l| (l as f64).exp()).sum();
        assert!((lp.logprob as f64 - (2.0 - z.ln())).abs() < 1e-6);
        assert_eq!(
            lp.top.iter().map(|t| t.0).collect::<Vec<_>>(),
            vec![1, 3, 2]
        );
        assert!(logprob_of(&logits, 0, 0).top.is_empty());
    }

    #[test]
    fn common_prefixes() {
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2, 4]), 2);
        assert_eq!(common_prefix(&[], &[1]), 0);
        assert_eq!(common_prefix(&[1, 2], &[1, 2, 3]), 2);
    }
}
