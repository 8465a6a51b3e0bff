//! The server's Prometheus metrics (`GET /metrics`, the text exposition format), kept with
//! `prometheus-client`. Names start with `gguf_llama_`.

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// The metrics the engine and the HTTP layer update.
pub struct Metrics {
    registry: Registry,
    /// Requests that got a slot.
    pub requests: Counter,
    /// Requests that ended, by how: `stop`, `length`, `cancelled` (client gone), `error`.
    finished: Family<Labels, Counter>,
    /// Requests refused before queueing, by HTTP status.
    rejected: Family<Labels, Counter>,
    /// Requests waiting for a slot.
    pub queue_length: Gauge,
    /// Slots serving a request.
    pub active_slots: Gauge,
    /// Prompt tokens computed (not counting those the prefix cache held).
    pub prompt_tokens: Counter,
    /// Prompt tokens taken from the prefix cache.
    pub cached_prompt_tokens: Counter,
    /// Tokens generated.
    pub generated_tokens: Counter,
    /// Seconds from a request's slot to its first token.
    pub time_to_first_token: Histogram,
    /// Tokens sampled per second of forward passes, over the steps of the last second or more.
    decode_rate: Gauge<f64, AtomicU64>,
    window: Mutex<(usize, f64)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("gguf_llama");
        let m = Metrics {
            requests: Counter::default(),
            finished: Family::default(),
            rejected: Family::default(),
            queue_length: Gauge::default(),
            active_slots: Gauge::default(),
            prompt_tokens: Counter::default(),
            cached_prompt_tokens: Counter::default(),
            generated_tokens: Counter::default(),
            time_to_first_token: Histogram::new([
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            decode_rate: Gauge::default(),
            window: Mutex::new((0, 0.0)),
            registry: Registry::default(),
        };
        registry.register("requests", "Requests that got a slot", m.requests.clone());
        registry.register(
            "requests_finished",
            "Requests that ended, by reason (stop, length, cancelled, error)",
            m.finished.clone(),
        );
        registry.register(
            "requests_rejected",
            "Requests refused before queueing, by HTTP status",
            m.rejected.clone(),
        );
        registry.register(
            "queue_length",
            "Requests waiting for a slot",
            m.queue_length.clone(),
        );
        registry.register(
            "active_slots",
            "Slots serving a request",
            m.active_slots.clone(),
        );
        registry.register(
            "prompt_tokens",
            "Prompt tokens computed",
            m.prompt_tokens.clone(),
        );
        registry.register(
            "prompt_tokens_cached",
            "Prompt tokens taken from the prefix cache",
            m.cached_prompt_tokens.clone(),
        );
        registry.register(
            "generated_tokens",
            "Tokens generated",
            m.generated_tokens.clone(),
        );
        registry.register(
            "time_to_first_token_seconds",
            "Seconds from a request's slot to its first token",
            m.time_to_first_token.clone(),
        );
        registry.register(
            "decode_tokens_per_second",
            "Tokens sampled per second of forward passes, over the last second",
            m.decode_rate.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts `n` requests that ended with `how`.
    pub fn finished(&self, how: &str, n: u64) {
        self.finished
            .get_or_create(&vec![("reason".to_string(), how.to_string())])
            .inc_by(n);
    }

    /// Counts a request refused with HTTP `status`.
    pub fn rejected(&self, status: u16) {
        self.rejected
            .get_or_create(&vec![("status".to_string(), status.to_string())])
            .inc();
    }

    /// Records a forward pass of `secs` seconds that sampled `tokens` tokens.
    pub fn observe_step(&self, tokens: usize, secs: f64) {
        if let Ok(mut w) = self.window.lock() {
            w.0 += tokens;
            w.1 += secs;
            if w.1 >= 1.0 {
                self.decode_rate.set(w.0 as f64 / w.1);
                *w = (0, 0.0);
            }
        }
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
