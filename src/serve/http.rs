//! The HTTP layer: axum routes of the OpenAI API over the [`Engine`], server-sent events for
//! streams, bearer-key authentication, `/health` and `/metrics`.
//!
//! | route                       | answer                                                     |
//! |-----------------------------|------------------------------------------------------------|
//! | `POST /v1/chat/completions` | the file's chat template, then as below                    |
//! | `POST /v1/completions`      | a completion; `stream: true` as `text/event-stream`        |
//! | `GET /v1/models`            | the one model served                                       |
//! | `GET /health`               | `{"status": "ok"}`                                         |
//! | `GET /metrics`              | Prometheus' text format ([`crate::serve::metrics`])        |
//!
//! Errors are OpenAI's shape ([`ApiError`]): 400 for a malformed body (naming the field), a
//! prompt longer than a slot's context (`context_length_exceeded`) or an unsupported field; 401
//! without the key given to `--api-key`; 503 when the queue is full or the server is shutting
//! down. A client that disconnects (or drops a stream) cancels its request: the engine frees
//! its slot before its next step.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Request as HttpRequest, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::chat::ChatTemplate;
use crate::serve::engine::{Engine, Event, Request, Sink, SubmitError, TokenLogprob};
use crate::serve::grammar::Grammars;
use crate::serve::metrics::Metrics;
use crate::serve::openai::{self, ApiError, CompletionRequest};
use crate::tokenizer::Tokenizer;

/// What the routes share.
pub struct App {
    engine: Engine,
    tokenizer: Arc<Tokenizer>,
    /// The file's chat template (ChatML when it has none, as llama.cpp).
    template: ChatTemplate,
    /// Compiles requests' grammars (structured output).
    grammars: Grammars,
    /// The model's id in `/v1/models` and in answers.
    model_name: String,
    /// The key clients must send as `Authorization: Bearer <key>` (`None`: no authentication).
    api_key: Option<String>,
    /// When the server started (seconds since the epoch): `created` of the model.
    created: u64,
}

impl App {
    /// The routes' state: `engine` serving `model_name`, whose vocabulary is `tokenizer`'s and
    /// whose chat template is `template`; requests must carry `api_key` if given. Builds the
    /// vocabulary's grammar index (structured output).
    pub fn new(
        engine: Engine,
        tokenizer: Arc<Tokenizer>,
        template: ChatTemplate,
        model_name: String,
        api_key: Option<String>,
    ) -> Result<App, String> {
        let grammars = Grammars::new(&tokenizer)?;
        Ok(App {
            engine,
            tokenizer,
            template,
            grammars,
            model_name,
            api_key,
            created: now(),
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn metrics(&self) -> &Metrics {
        self.engine.metrics()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut response = (status, Json(self.body())).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The router of the server.
pub fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route_layer(middleware::from_fn_with_state(app.clone(), authenticate));
    Router::new()
        .merge(api)
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(app)
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, lets the
/// running requests finish, and stops the engine.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let result = axum::serve(listener, router(app.clone()))
        .with_graceful_shutdown(shutdown)
        .await;
    let engine_app = app.clone();
    // Joining the engine's thread blocks: not on the runtime's workers.
    let _ = tokio::task::spawn_blocking(move || engine_app.engine.shutdown()).await;
    result
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh id for an answer of `kind` (`chatcmpl-…`, `cmpl-…`).
fn answer_id(kind: Kind) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let prefix = match kind {
        Kind::Chat => "chatcmpl",
        Kind::Completion => "cmpl",
    };
    format!("{prefix}-{:x}{n:06x}", now())
}

/// An answer's fields around its `choices` (OpenAI's shape), with `usage` if given.
fn answer_body(
    app: &App,
    id: &str,
    object: &str,
    created: u64,
    choices: Value,
    usage: Option<Value>,
) -> Value {
    let mut body = json!({
        "id": id,
        "object": object,
        "created": created,
        "model": app.model_name,
        "choices": choices,
    });
    if let Some(u) = usage {
        body["usage"] = u;
    }
    body
}

async fn authenticate(State(app): State<Arc<App>>, request: HttpRequest, next: Next) -> Response {
    if let Some(key) = &app.api_key {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(key.as_str()) {
            app.metrics().rejected(401);
            return ApiError {
                status: 401,
                message: "invalid or missing API key (Authorization: Bearer <key>)".into(),
                kind: "authentication_error",
                param: None,
                code: Some("invalid_api_key"),
            }
            .into_response();
        }
    }
    next.run(request).await
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics().render(),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError {
        status: 404,
        message: "no such route".into(),
        kind: "invalid_request_error",
        param: None,
        code: Some("not_found"),
    }
}

async fn models(State(app): State<Arc<App>>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{
            "id": app.model_name,
            "object": "model",
            "created": app.created,
            "owned_by": "gguf-llama",
            "meta": {"slot_context": app.engine.slot_context(), "slots": app.engine.config().slots},
        }],
    }))
}

/// The engine's events for one request, through a channel the handler reads.
struct ChannelSink(mpsc::UnboundedSender<Event>);

impl Sink for ChannelSink {
    fn send(&mut self, event: Event) -> bool {
        self.0.send(event).is_ok()
    }
    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// Which endpoint an answer is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Completion,
}

async fn chat_completions(State(app): State<Arc<App>>, body: Bytes) -> Response {
    handle(app, body, Kind::Chat).await
}

async fn completions(State(app): State<Arc<App>>, body: Bytes) -> Response {
    handle(app, body, Kind::Completion).await
}

async fn handle(app: Arc<App>, body: Bytes, kind: Kind) -> Response {
    match start(&app, &body, kind) {
        Ok((request, rx)) => match request.stream() {
            true => stream_answer(app, request, rx, kind).into_response(),
            false => whole_answer(app, rx, kind).await,
        },
        Err(e) => {
            app.metrics().rejected(e.status);
            e.into_response()
        }
    }
}

/// Parses and queues a request.
fn start(
    app: &App,
    body: &[u8],
    kind: Kind,
) -> Result<(CompletionRequest, mpsc::UnboundedReceiver<Event>), ApiError> {
    let request = openai::parse(body)?;
    let chat = kind == Kind::Chat;
    let params = request.params(chat, app.engine.slot_context())?;
    let prompt = match kind {
        Kind::Chat => {
            let messages = request.chat_messages()?;
            app.template
                .prompt_tokens(&app.tokenizer, &messages)
                .map_err(|e| ApiError::invalid(Some("messages"), e.to_string()))?
        }
        Kind::Completion => request.prompt_tokens(|t| app.tokenizer.encode(t, true, true))?,
    };
    let constraint = match request.grammar()? {
        Some((field, grammar)) => Some(
            app.grammars
                .constraint(grammar)
                .map_err(|e| ApiError::invalid(Some(field), format!("{field}: {e}")))?,
        ),
        None => None,
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let submitted = app.engine.submit(Request {
        prompt,
        params,
        constraint,
        sink: Box::new(ChannelSink(tx)),
    });
    submitted.map_err(|e| {
        let param = match kind {
            Kind::Chat => "messages",
            Kind::Completion => "prompt",
        };
        match e {
            SubmitError::PromptTooLong { .. } => ApiError {
                code: Some("context_length_exceeded"),
                ..ApiError::invalid(Some(param), e.to_string())
            },
            SubmitError::EmptyPrompt | SubmitError::Invalid(_) => {
                ApiError::invalid(Some(param), e.to_string())
            }
            SubmitError::QueueFull { .. } | SubmitError::ShuttingDown => ApiError {
                status: 503,
                message: e.to_string(),
                kind: "server_error",
                param: None,
                code: Some("server_busy"),
            },
        }
    })?;
    Ok((request, rx))
}

/// Collects a request's events into one answer.
async fn whole_answer(
    app: Arc<App>,
    mut rx: mpsc::UnboundedReceiver<Event>,
    kind: Kind,
) -> Response {
    let mut text = String::new();
    let mut logprobs: Vec<(u32, TokenLogprob)> = Vec::new();
    let mut want_logprobs = false;
    while let Some(event) = rx.recv().await {
        match event {
            Event::Token {
                id,
                text: t,
                logprob,
            } => {
                text.push_str(&t);
                if let Some(lp) = logprob {
                    want_logprobs = true;
                    logprobs.push((id, lp));
                }
            }
            Event::Done {
                text: t,
                reason,
                usage,
            } => {
                text.push_str(&t);
                let reason = openai::finish_reason(reason);
                let tk = &app.tokenizer;
                let (object, choice) = match kind {
                    Kind::Chat => {
                        let lp = want_logprobs.then(|| {
                            json!({"content": logprobs.iter().map(|(id, lp)| openai::chat_logprob(tk, *id, lp)).collect::<Vec<_>>()})
                        });
                        let message = json!({"role": "assistant", "content": text});
                        let choice = json!({"index": 0, "message": message, "logprobs": lp, "finish_reason": reason});
                        ("chat.completion", choice)
                    }
                    Kind::Completion => {
                        let lp =
                            want_logprobs.then(|| openai::completion_logprobs(tk, &logprobs, 0));
                        let choice = json!({"index": 0, "text": text, "logprobs": lp, "finish_reason": reason});
                        ("text_completion", choice)
                    }
                };
                let usage = Some(openai::usage(&usage));
                let id = answer_id(kind);
                let body = answer_body(&app, &id, object, now(), json!([choice]), usage);
                return Json(body).into_response();
            }
            Event::Error(message) => return server_error(message).into_response(),
        }
    }
    server_error("the engine dropped the request".into()).into_response()
}

fn server_error(message: String) -> ApiError {
    ApiError {
        status: 500,
        message,
        kind: "server_error",
        param: None,
        code: None,
    }
}

/// What a stream has sent so far.
struct StreamState {
    app: Arc<App>,
    rx: mpsc::UnboundedReceiver<Event>,
    kind: Kind,
    id: String,
    created: u64,
    include_usage: bool,
    /// Text bytes sent (the completions' `text_offset`).
    offset: usize,
    started: bool,
    done: bool,
}

impl StreamState {
    /// A chunk with `choice` (or no choices and `usage`).
    fn chunk(&self, choices: Value, usage: Option<Value>) -> SseEvent {
        let object = match self.kind {
            Kind::Chat => "chat.completion.chunk",
            Kind::Completion => "text_completion",
        };
        let c = answer_body(&self.app, &self.id, object, self.created, choices, usage);
        SseEvent::default().data(c.to_string())
    }

    /// The chunk of `text` (with one token's log-probabilities), or the last one with
    /// `finish_reason`.
    fn text_chunk(
        &mut self,
        text: &str,
        token: Option<(u32, &TokenLogprob)>,
        finish: Option<&str>,
    ) -> SseEvent {
        let tk = &self.app.tokenizer;
        let choice = match self.kind {
            Kind::Chat => {
                let mut delta = json!({});
                if !self.started {
                    delta["role"] = json!("assistant");
                }
                if finish.is_none() || !text.is_empty() {
                    delta["content"] = json!(text);
                }
                let lp =
                    token.map(|(id, lp)| json!({"content": [openai::chat_logprob(tk, id, lp)]}));
                json!({"index": 0, "delta": delta, "logprobs": lp, "finish_reason": finish})
            }
            Kind::Completion => {
                let lp = token.map(|(id, lp)| {
                    openai::completion_logprobs(tk, &[(id, lp.clone())], self.offset)
                });
                json!({"index": 0, "text": text, "logprobs": lp, "finish_reason": finish})
            }
        };
        self.started = true;
        self.offset += text.len();
        self.chunk(json!([choice]), None)
    }

    /// The server-sent events of the engine's next event (none when the stream is over).
    async fn next_events(&mut self) -> Option<Vec<SseEvent>> {
        if self.done {
            return None;
        }
        let Some(event) = self.rx.recv().await else {
            self.done = true;
            let e = server_error("the engine dropped the request".into());
            return Some(vec![SseEvent::default().data(e.body().to_string())]);
        };
        Some(match event {
            Event::Token { id, text, logprob } => {
                if text.is_empty() && logprob.is_none() {
                    Vec::new()
                } else {
                    vec![self.text_chunk(&text, logprob.as_ref().map(|lp| (id, lp)), None)]
                }
            }
            Event::Done {
                text,
                reason,
                usage,
            } => {
                self.done = true;
                let mut out = Vec::new();
                if !text.is_empty() {
                    out.push(self.text_chunk(&text, None, None));
                }
                out.push(self.text_chunk("", None, Some(openai::finish_reason(reason))));
                if self.include_usage {
                    out.push(self.chunk(json!([]), Some(openai::usage(&usage))));
                }
                out.push(SseEvent::default().data("[DONE]"));
                out
            }
            Event::Error(message) => {
                self.done = true;
                vec![SseEvent::default().data(server_error(message).body().to_string())]
            }
        })
    }
}

/// A request's events as server-sent events, ending with `data: [DONE]`. Dropping the stream
/// (the client went away) drops the receiver, which cancels the request.
fn stream_answer(
    app: Arc<App>,
    request: CompletionRequest,
    rx: mpsc::UnboundedReceiver<Event>,
    kind: Kind,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let state = StreamState {
        app,
        rx,
        kind,
        id: answer_id(kind),
        created: now(),
        include_usage: request.include_usage(),
        offset: 0,
        started: false,
        done: false,
    };
    let events = stream::unfold(state, |mut state| async move {
        let events = state.next_events().await?;
        Some((stream::iter(events.into_iter().map(Ok)), state))
    })
    .flatten();
    Sse::new(events).keep_alive(KeepAlive::default())
}
