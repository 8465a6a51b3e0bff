//! The OpenAI-compatible server ([`gguf_llama::serve`]) driven over HTTP by a Rust client: answers
//! against `generate` (greedy, the same prompt), streams against whole answers, a batch of
//! concurrent requests against each alone, and every error case's status and body.
//!
//! Servers run in-process on 127.0.0.1 with a port the system picks. The references are this
//! crate's `generate`, which tests/parity.rs holds to llama.cpp's greedy tokens.

mod common;

use std::sync::Arc;
use std::time::Duration;

use burn::tensor::Device;
use common::*;
use futures_util::StreamExt;
use gguf_llama::chat::ChatTemplate;
use gguf_llama::cli;
use gguf_llama::gguf::GgufFile;
use gguf_llama::model::{CacheTypes, Llama};
use gguf_llama::serve::{App, Engine, EngineConfig};
use gguf_llama::tokenizer::Tokenizer;
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// A server on its own runtime task.
struct Server {
    base: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    client: reqwest::Client,
}

impl Server {
    async fn start(file: &GgufFile, config: EngineConfig, api_key: Option<&str>) -> Server {
        let tokenizer = Arc::new(Tokenizer::from_gguf(file.metadata()).unwrap());
        let template = ChatTemplate::from_gguf_or_chatml(file.metadata()).unwrap();
        let model = Llama::from_gguf(file, &Device::flex()).unwrap();
        let engine = Engine::start(model, tokenizer.clone(), config).unwrap();
        let app = App::new(
            engine,
            tokenizer,
            template,
            "test-model".into(),
            api_key.map(str::to_string),
        );
        let app = Arc::new(app.unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(gguf_llama::serve::serve(listener, app, async {
            let _ = stopped.await;
        }));
        Server {
            base,
            stop: Some(stop),
            task,
            client: reqwest::Client::new(),
        }
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    async fn post_raw(&self, path: &str, body: &'static str) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    /// The `data:` payloads of a streamed answer, up to and without `[DONE]` (which must end it).
    async fn stream(&self, path: &str, body: Value) -> Vec<Value> {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        let text = r.text().await.unwrap();
        let datas: Vec<&str> = text
            .split("\n\n")
            .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
            .collect();
        assert_eq!(datas.last(), Some(&"[DONE]"), "stream: {text}");
        datas[..datas.len() - 1]
            .iter()
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    async fn metrics(&self) -> String {
        let r = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap();
        r.text().await.unwrap()
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap().unwrap();
    }
}

fn config(slots: usize, queue: usize) -> EngineConfig {
    EngineConfig {
        slots,
        context: 128 * slots,
        batch_tokens: 512,
        queue,
        cache: CacheTypes::default(),
    }
}

/// `generate`'s greedy text of `prompt` with up to `max_tokens` tokens, and its token count.
fn greedy_text(file: &GgufFile, prompt: &[u32], max_tokens: usize) -> (String, usize) {
    let g = common::greedy::generate_greedy(file, prompt, max_tokens);
    (g.text, g.tokens.len())
}

fn stories() -> GgufFile {
    cli::open_model(None).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_equal_generate_whole_and_streamed() {
    let file = stories();
    let tokenizer = Tokenizer::from_gguf(file.metadata()).unwrap();
    let prompt = "Once upon a time";
    let ids = cli::prompt_tokens(&file, &tokenizer, prompt, false, None).unwrap();
    let (want, n) = greedy_text(&file, &ids, 40);
    let server = Server::start(&file, config(2, 4), None).await;
    let body = json!({"model": "test-model", "prompt": prompt, "max_tokens": 40, "temperature": 0});
    let (status, answer) = server.post("/v1/completions", body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["object"], "text_completion");
    assert_eq!(answer["choices"][0]["text"], want.as_str());
    let reason = if n == 40 { "length" } else { "stop" };
    assert_eq!(answer["choices"][0]["finish_reason"], reason);
    assert_eq!(answer["usage"]["prompt_tokens"], ids.len());
    assert_eq!(answer["usage"]["completion_tokens"], n);
    assert_eq!(answer["usage"]["total_tokens"], ids.len() + n);

    // Streamed, with usage at the end; the same prompt again takes its cached prefix.
    let mut body = body;
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let chunks = server.stream("/v1/completions", body).await;
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .map(|c| c["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, want);
    let last_choice = chunks
        .iter()
        .rev()
        .find_map(|c| c["choices"].get(0))
        .unwrap();
    assert_eq!(last_choice["finish_reason"], reason);
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], n);
    assert_eq!(
        usage["prompt_tokens_details"]["cached_tokens"],
        ids.len() - 1
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_completions_render_the_template_and_equal_generate() {
    let file = stories();
    let tokenizer = Tokenizer::from_gguf(file.metadata()).unwrap();
    let ids = cli::prompt_tokens(&file, &tokenizer, "Tell me a story", true, None).unwrap();
    let (want, _) = greedy_text(&file, &ids, 30);
    let server = Server::start(&file, config(2, 4), None).await;
    let body = json!({
        "model": "test-model",
        "messages": [{"role": "user", "content": "Tell me a story"}],
        "max_tokens": 30, "temperature": 0, "logprobs": true, "top_logprobs": 3,
    });
    let (status, answer) = server.post("/v1/chat/completions", body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["object"], "chat.completion");
    let choice = &answer["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], want.as_str());
    assert_eq!(answer["usage"]["prompt_tokens"], ids.len());
    // Greedy: each token is the most likely, its log-probability the first of the top 3.
    let lps = choice["logprobs"]["content"].as_array().unwrap();
    assert_eq!(
        lps.len(),
        answer["usage"]["completion_tokens"].as_u64().unwrap() as usize
    );
    for lp in lps {
        let top = lp["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        assert_eq!(top[0]["token"], lp["token"]);
        assert_eq!(top[0]["logprob"], lp["logprob"]);
        assert!(lp["logprob"].as_f64().unwrap() <= 0.0);
    }
    // Content as parts, streamed: the same text.
    let mut body = body;
    body["messages"] =
        json!([{"role": "user", "content": [{"type": "text", "text": "Tell me a story"}]}]);
    body["stream"] = json!(true);
    let chunks = server.stream("/v1/chat/completions", body).await;
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, want);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_strings_end_the_text_before_them() {
    let file = stories();
    let tokenizer = Tokenizer::from_gguf(file.metadata()).unwrap();
    let ids = cli::prompt_tokens(&file, &tokenizer, "Once upon a time", false, None).unwrap();
    let (want, _) = greedy_text(&file, &ids, 40);
    // A stop string from the middle of the greedy text (a few characters after its 10th).
    let cut = want.char_indices().nth(12).unwrap().0;
    let stop: String = want[cut..].chars().take(4).collect();
    let first = want.find(&stop).unwrap();
    let server = Server::start(&file, config(1, 4), None).await;
    for stream in [false, true] {
        let body = json!({"prompt": "Once upon a time", "max_tokens": 40, "temperature": 0,
                          "stop": [stop.clone()], "stream": stream});
        let text = match stream {
            false => {
                let (status, a) = server.post("/v1/completions", body).await;
                assert_eq!(status, 200, "{a}");
                assert_eq!(a["choices"][0]["finish_reason"], "stop");
                a["choices"][0]["text"].as_str().unwrap().to_string()
            }
            true => server
                .stream("/v1/completions", body)
                .await
                .iter()
                .filter_map(|c| c["choices"][0]["text"].as_str())
                .collect(),
        };
        assert_eq!(text, want[..first], "stop {stop:?}");
    }
    server.shutdown().await;
}

/// Concurrent greedy requests, batched in one pass per step, each equal to its output alone, on
/// SmolLM2 Q4_1 (whose matmuls sum a row the same way for any number of rows:
/// tests/batch.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_equal_each_alone() {
    let Some(path) = smollm2() else { return };
    let file = GgufFile::open(&path).unwrap();
    let prompts = [
        "The capital of France is",
        "Write a haiku about the sea.",
        "List three colors:",
        "What is 2 + 2?",
        "Once upon a time",
        "def fibonacci(n):",
        "The best way to learn a language is",
        "Translate to French: good morning",
    ];
    let server = Server::start(&file, config(8, 16), None).await;
    let body = |p: &str| json!({"messages": [{"role": "user", "content": p}], "max_tokens": 24, "temperature": 0});
    let mut alone = Vec::new();
    for p in prompts {
        let (status, a) = server.post("/v1/chat/completions", body(p)).await;
        assert_eq!(status, 200, "{a}");
        alone.push(
            a["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    // Twice: the second round finds every prompt's prefix cached.
    for round in 0..2 {
        let answers = futures_util::future::join_all(prompts.iter().map(|p| {
            let (server, body) = (&server, body(p));
            async move { server.post("/v1/chat/completions", body).await }
        }))
        .await;
        for ((status, a), (p, want)) in answers.iter().zip(prompts.iter().zip(&alone)) {
            assert_eq!(*status, 200, "{a}");
            assert_eq!(
                a["choices"][0]["message"]["content"],
                want.as_str(),
                "round {round}: {p}"
            );
        }
    }
    let metrics = server.metrics().await;
    assert!(metrics.contains("gguf_llama_active_slots 0"), "{metrics}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_400_naming_the_field() {
    let file = stories();
    let server = Server::start(&file, config(1, 1), None).await;
    let (status, e) = server
        .post_raw("/v1/chat/completions", "{\"messages\": [")
        .await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["type"], "invalid_request_error");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("malformed JSON"),
        "{e}"
    );
    let cases = [
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": 5}]}),
            "messages[0].content",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": "hi"}),
            "messages",
        ),
        ("/v1/chat/completions", json!({"model": "m"}), "messages"),
        ("/v1/chat/completions", json!({"messages": []}), "messages"),
        (
            "/v1/completions",
            json!({"prompt": "a", "temperature": "hot"}),
            "temperature",
        ),
        (
            "/v1/completions",
            json!({"prompt": "a", "max_tokens": -1}),
            "max_tokens",
        ),
        (
            "/v1/completions",
            json!({"prompt": "a", "max_tokens": 0}),
            "max_tokens",
        ),
        (
            "/v1/completions",
            json!({"prompt": "a", "top_p": 2.0}),
            "top_p",
        ),
        ("/v1/completions", json!({"prompt": "a", "n": 2}), "n"),
        (
            "/v1/completions",
            json!({"prompt": "a", "logprobs": 50}),
            "logprobs",
        ),
        ("/v1/completions", json!({"max_tokens": 3}), "prompt"),
        ("/v1/completions", json!({"prompt": []}), "prompt"),
        ("/v1/completions", json!({"prompt": [1, 100000]}), "prompt"),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "a"}],
            "response_format": {"type": "xml"}}),
            "response_format",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "a"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}),
            "response_format",
        ),
        (
            "/v1/completions",
            json!({"prompt": "a", "grammar": "start: (("}),
            "grammar",
        ),
        (
            "/v1/completions",
            json!({"prompt": "a", "json_schema": {"type": "no-such-type"}}),
            "json_schema",
        ),
    ];
    for (path, body, param) in cases {
        let (status, e) = server.post(path, body.clone()).await;
        assert_eq!(status, 400, "{body}: {e}");
        assert_eq!(e["error"]["param"], param, "{body}: {e}");
        assert!(!e["error"]["message"].as_str().unwrap().is_empty());
    }
    // A prompt longer than a slot's context (128 positions).
    let long = "once upon a time ".repeat(100);
    let (status, e) = server
        .post("/v1/completions", json!({"prompt": long}))
        .await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["code"], "context_length_exceeded");
    // Unknown routes.
    let r = server
        .client
        .get(format!("{}/v2/nothing", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    // Nothing was left in flight.
    let metrics = server.metrics().await;
    assert!(metrics.contains("gguf_llama_active_slots 0"), "{metrics}");
    assert!(
        metrics.contains("gguf_llama_requests_rejected_total{status=\"400\"}"),
        "{metrics}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_models_health_and_metrics() {
    let file = stories();
    let server = Server::start(&file, config(1, 1), Some("sesame")).await;
    let url = |p: &str| format!("{}{p}", server.base);
    let c = &server.client;
    let r = c.get(url("/v1/models")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["type"], "authentication_error");
    let r = c
        .get(url("/v1/models"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = c
        .post(url("/v1/completions"))
        .json(&json!({"prompt": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let models: Value = c
        .get(url("/v1/models"))
        .bearer_auth("sesame")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "test-model");
    let r = c
        .post(url("/v1/completions"))
        .bearer_auth("sesame")
        .json(&json!({"prompt": "Once", "max_tokens": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // /health and /metrics need no key.
    let health: Value = c
        .get(url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let metrics = server.metrics().await;
    for name in [
        "gguf_llama_requests_total 1",
        "gguf_llama_generated_tokens_total",
        "gguf_llama_queue_length 0",
        "gguf_llama_time_to_first_token_seconds_count 1",
        "gguf_llama_requests_rejected_total{status=\"401\"} 3",
        "gguf_llama_decode_tokens_per_second",
    ] {
        assert!(metrics.contains(name), "{name} in {metrics}");
    }
    server.shutdown().await;
}

/// Polls `/metrics` until it contains `what` (the engine updates it between steps).
async fn wait_for_metric(server: &Server, what: &str) -> String {
    for _ in 0..200 {
        let m = server.metrics().await;
        if m.contains(what) {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what} never appeared in {}", server.metrics().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_503_and_a_gone_client_frees_its_slot() {
    let file = stories();
    // One slot, no queue: while a stream runs, the next request is refused.
    let server = Server::start(&file, config(1, 0), None).await;
    let long = json!({"prompt": "Once upon a time", "max_tokens": 100000, "ignore_eos": true,
                      "stream": true});
    let r = server
        .client
        .post(format!("{}/v1/completions", server.base))
        .json(&long)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut body = r.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "), "{first:?}");
    let (status, e) = server.post("/v1/completions", json!({"prompt": "a"})).await;
    assert_eq!(status, 503, "{e}");
    assert_eq!(e["error"]["type"], "server_error");
    // The client goes away: its slot is freed, and the next request is served.
    drop(body);
    wait_for_metric(
        &server,
        "gguf_llama_requests_finished_total{reason=\"cancelled\"} 1",
    )
    .await;
    wait_for_metric(&server, "gguf_llama_active_slots 0").await;
    let (status, a) = server
        .post(
            "/v1/completions",
            json!({"prompt": "Once", "max_tokens": 4}),
        )
        .await;
    assert_eq!(status, 200, "{a}");

    // The same with a whole (not streamed) answer: dropping the request cancels it.
    let client = server.client.clone();
    let url = format!("{}/v1/completions", server.base);
    let waiting = tokio::spawn(async move {
        client
            .post(url)
            .json(&json!({"prompt": "Once", "max_tokens": 100000, "ignore_eos": true}))
            .send()
            .await
    });
    wait_for_metric(&server, "gguf_llama_active_slots 1").await;
    waiting.abort();
    wait_for_metric(
        &server,
        "gguf_llama_requests_finished_total{reason=\"cancelled\"} 2",
    )
    .await;
    wait_for_metric(&server, "gguf_llama_active_slots 0").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_running_requests() {
    let file = stories();
    let server = Server::start(&file, config(2, 2), None).await;
    let client = server.client.clone();
    let url = format!("{}/v1/completions", server.base);
    let running = tokio::spawn(async move {
        let r = client
            .post(url)
            .json(
                &json!({"prompt": "Once", "max_tokens": 100, "ignore_eos": true, "temperature": 0}),
            )
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    });
    wait_for_metric(&server, "gguf_llama_active_slots 1").await;
    server.shutdown().await;
    let (status, answer) = running.await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["usage"]["completion_tokens"], 100);
    assert_eq!(answer["choices"][0]["finish_reason"], "length");
}

/// The schema of the structured-output test: every value bounded, so an answer completes.
fn person_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 12},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "pet": {"enum": ["cat", "dog", "none"]},
        },
        "required": ["name", "age", "pet"],
        "additionalProperties": false,
    })
}

/// `answer` parses as JSON and follows [`person_schema`].
fn check_person(answer: &str) {
    let v: Value = serde_json::from_str(answer).unwrap_or_else(|e| panic!("{answer:?}: {e}"));
    let o = v
        .as_object()
        .unwrap_or_else(|| panic!("{answer:?} is not an object"));
    let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["age", "name", "pet"], "{answer}");
    assert!(
        o["name"].as_str().is_some_and(|s| s.chars().count() <= 12),
        "{answer}"
    );
    assert!(o["age"].as_u64().is_some_and(|a| a <= 120), "{answer}");
    assert!(
        ["cat", "dog", "none"].contains(&o["pet"].as_str().unwrap_or("")),
        "{answer}"
    );
}

/// JSON-schema answers parse and follow the schema, greedy and sampled, streamed and not; a Lark
/// grammar's answers are in its language.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_output_follows_the_schema_and_grammar() {
    let file = stories();
    let server = Server::start(&file, config(2, 4), None).await;
    let format = json!({"type": "json_schema", "json_schema": {"name": "person", "schema": person_schema()}});
    for (temperature, seed) in [(0.0, 0), (1.0, 1), (1.0, 2), (1.5, 3)] {
        let body = json!({"messages": [{"role": "user", "content": "Describe a person."}],
                          "response_format": format, "max_tokens": 120,
                          "temperature": temperature, "seed": seed});
        let (status, a) = server.post("/v1/chat/completions", body.clone()).await;
        assert_eq!(status, 200, "{a}");
        assert_eq!(a["choices"][0]["finish_reason"], "stop", "{a}");
        check_person(a["choices"][0]["message"]["content"].as_str().unwrap());
        let mut body = body;
        body["stream"] = json!(true);
        let text: String = server
            .stream("/v1/chat/completions", body)
            .await
            .iter()
            .filter_map(|c| {
                c["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(String::from)
            })
            .collect();
        check_person(&text);
    }
    // llama.cpp's `json_schema` field, on completions.
    let (status, a) = server
        .post(
            "/v1/completions",
            json!({"prompt": "Once upon a time", "json_schema": person_schema(),
                                         "max_tokens": 120, "temperature": 0}),
        )
        .await;
    assert_eq!(status, 200, "{a}");
    check_person(a["choices"][0]["text"].as_str().unwrap());
    // Any JSON object.
    let (status, a) = server
        .post(
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "Hi"}],
            "response_format": {"type": "json_object"}, "max_tokens": 60, "temperature": 0}),
        )
        .await;
    assert_eq!(status, 200, "{a}");
    if a["choices"][0]["finish_reason"] == "stop" {
        let v: Value =
            serde_json::from_str(a["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
        assert!(v.is_object(), "{a}");
    }
    // A Lark grammar.
    for seed in 0..4 {
        let (status, a) = server
            .post("/v1/completions", json!({"prompt": "Is the sky blue?", "temperature": 1.0, "seed": seed,
                "grammar": "start: (\"yes\" | \"no\") \" \" NUMBER\nNUMBER: /[0-9]{1,3}/", "max_tokens": 10}))
            .await;
        assert_eq!(status, 200, "{a}");
        let text = a["choices"][0]["text"].as_str().unwrap();
        let (word, number) = text.split_once(' ').unwrap_or_else(|| panic!("{text:?}"));
        assert!(["yes", "no"].contains(&word), "{text:?}");
        assert!(
            (1..=3).contains(&number.len()) && number.bytes().all(|b| b.is_ascii_digit()),
            "{text:?}"
        );
    }
    server.shutdown().await;
}

/// SmolLM2's greedy answers through the API are llama.cpp's (tests/fixtures/llama/smollm2.json,
/// scripts/make_llama_fixtures.py: llama.cpp's 32 greedy tokens with its default F16 KV cache,
/// continuing past end-of-generation tokens), asked one at a time and all at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_answers_are_llama_cpps() {
    let Some(path) = smollm2() else { return };
    let file = GgufFile::open(&path).unwrap();
    let tokenizer = Tokenizer::from_gguf(file.metadata()).unwrap();
    let reference = read_json("llama/smollm2.json");
    let mut cases = Vec::new();
    for p in reference["prompts"].as_array().unwrap() {
        let tokens = match p["same_tokens_with_f16_kv_cache"].as_bool() {
            Some(true) => ids(&p["greedy_tokens"]),
            _ => ids(&p["greedy_tokens_f16_kv_cache"]),
        };
        // The text the engine streams for these tokens (control tokens not rendered).
        let mut detok = gguf_llama::tokenizer::Detokenizer::new(false);
        let mut want: String = tokens.iter().map(|&t| detok.push(&tokenizer, t)).collect();
        want.push_str(&detok.finish());
        let text = p["prompt"].as_str().unwrap();
        let (path, body) = match p["kind"].as_str().unwrap() {
            "chat" => (
                "/v1/chat/completions",
                json!({"messages": [{"role": "user", "content": text}]}),
            ),
            _ => ("/v1/completions", json!({"prompt": text})),
        };
        let mut body = body;
        body["max_tokens"] = json!(tokens.len());
        body["temperature"] = json!(0);
        body["ignore_eos"] = json!(true);
        cases.push((path, body, want, text.to_string()));
    }
    let server = Server::start(&file, config(cases.len(), 4), None).await;
    let text_of = |a: &Value| -> String {
        let c = &a["choices"][0];
        c["text"]
            .as_str()
            .or(c["message"]["content"].as_str())
            .unwrap()
            .to_string()
    };
    for (path, body, want, prompt) in &cases {
        let (status, a) = server.post(path, body.clone()).await;
        assert_eq!(status, 200, "{a}");
        assert_eq!(&text_of(&a), want, "alone: {prompt:?}");
    }
    let answers = futures_util::future::join_all(
        cases
            .iter()
            .map(|(path, body, _, _)| server.post(path, body.clone())),
    )
    .await;
    for ((status, a), (_, _, want, prompt)) in answers.iter().zip(&cases) {
        assert_eq!(*status, 200, "{a}");
        assert_eq!(&text_of(a), want, "batched: {prompt:?}");
    }
    server.shutdown().await;
}
