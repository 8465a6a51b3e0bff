//! An OpenAI-compatible HTTP server over the model (feature `serve`; `--example serve`).
//!
//! - [`engine`]: one thread owns the model and serves the requests through slots with
//!   continuous batching (one [`crate::model::Llama::forward_ragged`] pass per step over every
//!   busy slot), chunked prefill and a prompt-prefix cache.
//! - [`openai`]: the OpenAI API's request and response bodies and error shape.
//! - [`grammar`]: structured output (JSON schemas, Lark grammars) through llguidance.
//! - [`http`]: the axum routes, server-sent events, authentication, graceful shutdown.
//! - [`metrics`]: Prometheus metrics.
//!
//! The server keeps no state outside its process besides the model file: several replicas can
//! run behind any load balancer (a replica's prefix cache serves the requests it gets; route a
//! conversation to the same replica, e.g. by a session header, to reuse it).

pub mod engine;
pub mod grammar;
pub mod http;
pub mod metrics;
pub mod openai;

pub use engine::{Engine, EngineConfig, Event, FinishReason, Params, Request, Sink, SubmitError};
pub use grammar::Grammars;
pub use http::{router, serve, App};
pub use metrics::Metrics;
