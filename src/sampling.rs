//! Choosing the next token from a row of logits: llama.cpp's default sampler chain.
//!
//! The chain, in llama.cpp's default order (`common_params_sampling::samplers` in
//! `common/common.h`, built by `common_sampler_init` in `common/sampling.cpp`), restricted to the
//! samplers this crate offers:
//!
//! 1. **repetition penalty** (`llama_sampler_penalties`): every distinct token among the last
//!    `repeat_last_n` tokens of the history has its logit divided by `repeat_penalty` when the logit
//!    is positive, multiplied by it otherwise (so a penalty above 1 always makes the token less likely);
//! 2. **top-k** (`llama_sampler_top_k`): keep the `top_k` highest logits;
//! 3. **top-p** (`llama_sampler_top_p`): with probabilities from a softmax of the candidates left
//!    (at temperature 1), keep the smallest prefix of the candidates sorted by probability whose
//!    cumulative probability is at least `top_p` (always at least one token);
//! 4. **min-p** (`llama_sampler_min_p`): keep the candidates whose probability is at least
//!    `min_p` times the largest one, i.e. whose logit is at least `max_logit + ln(min_p)`;
//! 5. **temperature** (`llama_sampler_temp_ext`): divide the logits by `temperature`;
//! 6. **draw** (`llama_sampler_dist`): softmax, then one draw from that distribution with a seeded RNG.
//!
//! `temperature <= 0` is greedy decoding, as in llama.cpp: the penalties still apply, then the token
//! with the highest logit wins, the lowest id among equal logits (llama.cpp's temperature sampler
//! keeps only the first maximum it meets, scanning in token-id order). Top-k, top-p and min-p never
//! remove the highest logit, so they are skipped.
//!
//! The random stream is ChaCha8 (from `rand_chacha`, whose output for a seed is fixed by its
//! specification), so the same seed, logits and history give the same tokens on every platform.
//! It is not llama.cpp's `mt19937` stream: sampled (non-greedy) text differs from llama.cpp's.
//!
//! Cost per call: one pass over the vocabulary to copy the logits, one pass with a k-sized heap
//! for top-k, and a sort of the `top_k` survivors only (about 0.2 ms for a 152k vocabulary with
//! the defaults, 2-core x86 machine). With top-k off, top-p first sorts the best 256 candidates and
//! sorts the rest only if those do not reach `top_p`, as llama.cpp does; a flat distribution then
//! costs a full sort. Buffers are kept between calls.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Why a sampler could not be built, or a token could not be drawn.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplingError {
    /// A configuration value outside its allowed range (or NaN).
    #[error("sampler parameter {name} = {value} is invalid: expected {expected}")]
    InvalidParameter {
        name: &'static str,
        value: f32,
        expected: &'static str,
    },

    /// `sample` was given an empty row of logits.
    #[error("cannot sample from an empty row of logits")]
    EmptyLogits,

    /// The row has more entries than a `u32` token id can address.
    #[error("row of {len} logits is longer than the u32 token id range")]
    TooManyLogits { len: usize },

    /// Every logit is NaN or negative infinity: no token has a probability.
    #[error("none of the {len} logits is a number above -inf: no token can be sampled")]
    NoCandidates { len: usize },
}

/// Sampling parameters. The defaults are llama.cpp's (`common_params_sampling` in `common/common.h`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerConfig {
    /// Softmax temperature; `<= 0` samples greedily. Default 0.8.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; 0 turns top-k off. Default 40.
    pub top_k: usize,
    /// Nucleus sampling threshold in (0, 1]; 1 turns top-p off. Default 0.95.
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one; in [0, 1], 0 turns it off.
    /// Default 0.05.
    pub min_p: f32,
    /// Repetition penalty, finite and > 0; 1 turns it off (the default).
    pub repeat_penalty: f32,
    /// How many of the most recent history tokens the penalty looks at; 0 turns it off. Default 64.
    pub repeat_last_n: usize,
    /// Seed of the random stream; `None` takes a seed from the clock and the process's hash
    /// randomness (llama.cpp's `LLAMA_DEFAULT_SEED` behaviour). Default `None`.
    pub seed: Option<u64>,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: None,
        }
    }
}

impl SamplerConfig {
    /// Greedy decoding (temperature 0); the other fields keep their defaults.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// Checks every field's range; the error names the first field that is out of range.
    pub fn validate(&self) -> Result<(), SamplingError> {
        let bad = |name, value, expected| {
            Err(SamplingError::InvalidParameter {
                name,
                value,
                expected,
            })
        };
        if !self.temperature.is_finite() {
            return bad(
                "temperature",
                self.temperature,
                "a finite number (<= 0 for greedy)",
            );
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", self.top_p, "a number in (0, 1] (1 = off)");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p", self.min_p, "a number in [0, 1] (0 = off)");
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return bad(
                "repeat_penalty",
                self.repeat_penalty,
                "a finite number > 0 (1 = off)",
            );
        }
        Ok(())
    }

    /// Whether this configuration decodes greedily.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }
}

/// One candidate token left after the filters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Token id (index into the logits row).
    pub id: u32,
    /// Logit after the penalty and the temperature (unchanged for greedy decoding).
    pub logit: f32,
    /// Probability among the candidates left; the candidates' probabilities sum to 1.
    pub prob: f32,
}

/// Draws tokens according to a [`SamplerConfig`]; owns the random stream and reusable buffers.
#[derive(Debug, Clone)]
pub struct Sampler {
    config: SamplerConfig,
    rng: ChaCha8Rng,
    /// The row after sanitizing and the penalty, indexed by id: [n_vocab].
    scratch: Vec<f32>,
    /// Working candidate set, `(id, logit)` with `prob` filled at the end.
    cands: Vec<Candidate>,
    /// Top-k selection heap (kept to reuse its allocation).
    heap: BinaryHeap<Worst>,
    /// Scratch for the distinct tokens of the penalty window.
    window: Vec<u32>,
}

/// Descending logit, then ascending id: a total order, so results never depend on the input order.
fn by_logit_desc(a: &Candidate, b: &Candidate) -> Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

/// A candidate ordered so that the worst-ranked one is the greatest: a max-heap of these keeps
/// the worst of the current top-k on top.
#[derive(Debug, Clone, Copy)]
struct Worst(Candidate);

impl PartialEq for Worst {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Worst {
    fn cmp(&self, other: &Self) -> Ordering {
        by_logit_desc(&self.0, &other.0)
    }
}

/// Top-p first sorts this many candidates when the set is large and unsorted (llama.cpp's heuristic).
const TOP_P_FIRST_SORT: usize = 256;
/// Sets at most this large are sorted whole by top-p.
const TOP_P_SORT_ALL_BELOW: usize = 1024;

impl Sampler {
    /// A sampler for `config`, after [`SamplerConfig::validate`].
    pub fn new(config: SamplerConfig) -> Result<Self, SamplingError> {
        config.validate()?;
        let seed = config.seed.unwrap_or_else(entropy_seed);
        Ok(Self {
            config,
            rng: ChaCha8Rng::seed_from_u64(seed),
            scratch: Vec::new(),
            cands: Vec::new(),
            heap: BinaryHeap::new(),
            window: Vec::new(),
        })
    }

    /// The configuration this sampler was built with.
    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// Restarts the random stream from `seed`.
    pub fn reseed(&mut self, seed: u64) {
        self.rng = ChaCha8Rng::seed_from_u64(seed);
    }

    /// Picks the next token from `logits` (one row, `[n_vocab]`), given the tokens so far
    /// (`history`: prompt and generated tokens, oldest first; only the last `repeat_last_n` count).
    ///
    /// NaN logits count as negative infinity, positive infinity as `f32::MAX`; history ids outside
    /// the row are ignored.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> Result<u32, SamplingError> {
        self.filter(logits, history)?;
        if self.cands.len() == 1 {
            // llama.cpp's dist sampler still draws once here; keep the stream aligned the same way.
            self.next_f64();
            return Ok(self.cands[0].id);
        }
        let r = self.next_f64();
        Ok(draw(&self.cands, r))
    }

    /// The candidates the next draw would choose from, most likely first, with their probabilities:
    /// the chain of [`Sampler::sample`] without the draw (the random stream is not advanced).
    pub fn candidates(
        &mut self,
        logits: &[f32],
        history: &[u32],
    ) -> Result<&[Candidate], SamplingError> {
        self.filter(logits, history)?;
        self.cands.sort_unstable_by(by_logit_desc);
        Ok(&self.cands)
    }

    /// Runs penalties, top-k, top-p, min-p and temperature; leaves the survivors, with
    /// probabilities, in `self.cands` (not necessarily sorted).
    fn filter(&mut self, logits: &[f32], history: &[u32]) -> Result<(), SamplingError> {
        if logits.is_empty() {
            return Err(SamplingError::EmptyLogits);
        }
        if u32::try_from(logits.len()).is_err() {
            return Err(SamplingError::TooManyLogits { len: logits.len() });
        }
        let cfg = self.config;

        // A penalized copy of the row, indexed by id: [n_vocab].
        self.scratch.clear();
        self.scratch.extend(logits.iter().map(|&l| {
            if l.is_nan() {
                f32::NEG_INFINITY
            } else {
                // +inf would turn the softmax's `logit - max` into inf - inf = NaN; the largest
                // finite logit gives such a token (and any equal to it) all the probability.
                l.min(f32::MAX)
            }
        }));
        self.apply_penalty(history);
        let no_candidates = SamplingError::NoCandidates { len: logits.len() };

        self.cands.clear();
        if cfg.is_greedy() {
            // First maximum in id order: ties go to the lowest id.
            let mut best = 0;
            for (i, &l) in self.scratch.iter().enumerate() {
                if l > self.scratch[best] {
                    best = i;
                }
            }
            let logit = self.scratch[best];
            if logit == f32::NEG_INFINITY {
                return Err(no_candidates);
            }
            self.cands.push(Candidate {
                id: best as u32,
                logit,
                prob: 1.0,
            });
            return Ok(());
        }

        // Tokens at -inf have probability 0 under every later step: they never become candidates.
        let finite = |(id, &logit): (usize, &f32)| {
            (logit > f32::NEG_INFINITY).then_some(Candidate {
                id: id as u32,
                logit,
                prob: 0.0,
            })
        };
        let mut sorted = false;
        if cfg.top_k > 0 && cfg.top_k < self.scratch.len() {
            // Top-k in one pass: a heap of the k best so far, its top the worst of them. On a
            // real row few tokens beat the k-th best, so this is about one compare per token.
            let mut heap = std::mem::take(&mut self.heap);
            heap.clear();
            // The logit a token must beat to enter: -inf until the heap is full (so -inf never
            // enters), then the worst kept logit. Strictly greater, because a later token with an
            // equal logit has a higher id and ranks lower.
            let mut floor = f32::NEG_INFINITY;
            for (id, &logit) in self.scratch.iter().enumerate() {
                if logit <= floor {
                    continue;
                }
                let c = Worst(Candidate {
                    id: id as u32,
                    logit,
                    prob: 0.0,
                });
                if heap.len() < cfg.top_k {
                    heap.push(c);
                    if heap.len() < cfg.top_k {
                        continue;
                    }
                } else if let Some(mut worst) = heap.peek_mut() {
                    *worst = c;
                }
                floor = heap.peek().map_or(f32::NEG_INFINITY, |w| w.0.logit);
            }
            self.cands.extend(heap.drain().map(|w| w.0));
            self.heap = heap;
            self.cands.sort_unstable_by(by_logit_desc);
            sorted = true;
        } else if cfg.top_p >= 1.0 && cfg.min_p > 0.0 {
            // Min-p comes right after: only tokens it keeps need to become candidates.
            let max = self
                .scratch
                .iter()
                .copied()
                .fold(f32::NEG_INFINITY, f32::max);
            let threshold = max + cfg.min_p.ln();
            let kept = |(_, l): &(usize, &f32)| **l >= threshold;
            self.cands.extend(
                self.scratch
                    .iter()
                    .enumerate()
                    .filter(kept)
                    .filter_map(finite),
            );
        } else {
            self.cands
                .extend(self.scratch.iter().enumerate().filter_map(finite));
        }
        if self.cands.is_empty() {
            return Err(no_candidates);
        }

        if cfg.top_p < 1.0 {
            self.top_p(cfg.top_p, sorted);
            sorted = true;
        }
        if cfg.min_p > 0.0 {
            self.min_p(cfg.min_p, sorted);
        }

        // Temperature, then the softmax. Scaling `logit - max` (rather than the logit) keeps huge
        // logits and small temperatures from overflowing to inf - inf.
        let max = max_logit(&self.cands);
        let t = cfg.temperature;
        let mut sum = 0.0f64;
        for c in self.cands.iter_mut() {
            let p = ((c.logit - max) / t).exp();
            c.prob = p;
            sum += p as f64;
            c.logit /= t;
        }
        for c in self.cands.iter_mut() {
            c.prob = (c.prob as f64 / sum) as f32;
        }
        Ok(())
    }

    /// Divides positive logits by the penalty and multiplies the others, once per distinct token
    /// among the last `repeat_last_n` history tokens, in `self.scratch` (indexed by id).
    fn apply_penalty(&mut self, history: &[u32]) {
        let (n, penalty) = (self.config.repeat_last_n, self.config.repeat_penalty);
        if n == 0 || penalty == 1.0 || history.is_empty() {
            return;
        }
        let start = history.len().saturating_sub(n);
        self.window.clear();
        self.window.extend_from_slice(&history[start..]);
        self.window.sort_unstable();
        self.window.dedup();
        for &id in &self.window {
            if let Some(l) = self.scratch.get_mut(id as usize) {
                if *l <= 0.0 {
                    *l *= penalty;
                } else {
                    *l /= penalty;
                }
            }
        }
    }

    /// Keeps the smallest most-likely prefix whose probability (softmax at temperature 1 over the
    /// current candidates) reaches `p`. Leaves the candidates sorted.
    fn top_p(&mut self, p: f32, sorted: bool) {
        let cands = &mut self.cands;
        let max = max_logit(cands);
        let total: f64 = cands.iter().map(|c| ((c.logit - max).exp()) as f64).sum();
        let target = p as f64 * total;

        // Sort lazily: first the best TOP_P_FIRST_SORT, the rest only if they are needed.
        let mut sorted_len = if sorted {
            cands.len()
        } else if cands.len() > TOP_P_SORT_ALL_BELOW {
            let k = TOP_P_FIRST_SORT;
            cands.select_nth_unstable_by(k - 1, by_logit_desc);
            cands[..k].sort_unstable_by(by_logit_desc);
            k
        } else {
            cands.sort_unstable_by(by_logit_desc);
            cands.len()
        };

        let mut cum = 0.0f64;
        let mut keep = cands.len();
        let mut i = 0;
        while i < cands.len() {
            if i == sorted_len {
                cands[i..].sort_unstable_by(by_logit_desc);
                sorted_len = cands.len();
            }
            cum += ((cands[i].logit - max).exp()) as f64;
            if cum >= target {
                keep = i + 1;
                break;
            }
            i += 1;
        }
        // Every index up to `keep` was sorted before it was read, so the prefix is sorted.
        cands.truncate(keep);
    }

    /// Keeps the candidates whose logit is at least `max + ln(p)`, i.e. probability >= p * p_max.
    fn min_p(&mut self, p: f32, sorted: bool) {
        let max = max_logit(&self.cands);
        let threshold = max + p.ln();
        if sorted {
            let keep = self
                .cands
                .iter()
                .take_while(|c| c.logit >= threshold)
                .count();
            self.cands.truncate(keep.max(1));
        } else {
            self.cands.retain(|c| c.logit >= threshold);
        }
    }

    /// A uniform number in [0, 1) with 53 random bits.
    fn next_f64(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// The largest logit of a non-empty candidate set.
fn max_logit(cands: &[Candidate]) -> f32 {
    cands
        .iter()
        .map(|c| c.logit)
        .fold(f32::NEG_INFINITY, f32::max)
}

/// Inverse-CDF draw: the first candidate whose cumulative probability exceeds `r` (in [0, 1)).
/// Zero-probability candidates are never chosen.
fn draw(cands: &[Candidate], r: f64) -> u32 {
    let total: f64 = cands.iter().map(|c| c.prob as f64).sum();
    let target = r * total;
    let mut cum = 0.0f64;
    let mut last = cands[0].id;
    for c in cands {
        if c.prob > 0.0 {
            cum += c.prob as f64;
            last = c.id;
            if cum > target {
                return c.id;
            }
        }
    }
    // Rounding left `target` at the very top: the last token with a probability.
    last
}

/// A seed from the clock and the process's hash randomness, for `seed: None`.
fn entropy_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    h.finish()
}
