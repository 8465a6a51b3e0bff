//! The `serve` example as a user runs it, driven by real clients: OpenAI's Python package
//! (tests/clients/openai_client.py: chat and completions, streamed and not, log-probabilities,
//! a JSON-schema `response_format`, errors as its exception classes) and curl reading the server-sent events raw. Greedy answers
//! must equal `generate`'s for the same prompt (which tests/parity.rs holds to llama.cpp's).
//!
//! The example binary is the one `cargo test --release` builds beside this test
//! (`target/<profile>/examples/serve`). Under CI a missing `python3 -c "import openai"` or curl
//! fails the test (.ci/run installs them); elsewhere it is skipped.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::*;
use gguf_llama::cli;
use gguf_llama::tokenizer::Tokenizer;
use serde_json::Value;

/// The running example and its address; stopped with SIGTERM when dropped.
struct Running {
    child: Child,
    base: String,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let mut child = Command::new(example("serve"))
            .args(args)
            .args(["--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the serve example (cargo test --release builds it)");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let base = loop {
            let line = lines.next().expect("serve ended before listening").unwrap();
            if let Some(rest) = line.strip_prefix("listening on ") {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        // Keep reading stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Running { child, base }
    }

    /// SIGTERM, then the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn has(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `generate`'s greedy text of stories260K for `prompt` (`chat`: with the chat template).
fn greedy(prompt: &str, chat: bool, max_tokens: usize) -> String {
    let file = cli::open_model(None).unwrap();
    let tokenizer = Tokenizer::from_gguf(file.metadata()).unwrap();
    let ids = cli::prompt_tokens(&file, &tokenizer, prompt, chat, None).unwrap();
    common::greedy::generate_greedy(&file, &ids, max_tokens).text
}

#[test]
fn openai_python_client() {
    if !has("python3", &["-c", "import openai"]) {
        let _: Option<()> = missing("the openai Python package (pip install openai)");
        return;
    }
    let server = Running::start(&["--parallel", "2", "--api-key", "sesame", "--ctx", "1024"]);
    let script = root().join("tests/clients/openai_client.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([&server.base, "sesame"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["models"][0], "stories260K");

    let chat = greedy("Tell me a story", true, 24);
    assert_eq!(got["chat"]["content"], chat.as_str());
    assert_eq!(got["chat"]["role"], "assistant");
    assert_eq!(got["chat_stream"]["content"], chat.as_str());
    assert_eq!(
        got["chat_stream"]["finish_reason"],
        got["chat"]["finish_reason"]
    );
    assert_eq!(
        got["chat_stream"]["usage"]["completion_tokens"],
        got["chat"]["usage"]["completion_tokens"]
    );
    let n = got["chat"]["usage"]["completion_tokens"].as_u64().unwrap() as usize;
    let lps = got["chat"]["logprobs"].as_array().unwrap();
    assert_eq!(lps.len(), n);
    assert!(
        lps.iter().all(|t| t["top"][0] == t["token"]),
        "greedy picks the top token"
    );

    let completion = greedy("Once upon a time", false, 24);
    assert_eq!(got["completion"]["text"], completion.as_str());
    assert_eq!(got["completion_stream"]["text"], completion.as_str());

    // The JSON-schema answer parses and follows the schema.
    assert_eq!(got["structured"]["finish_reason"], "stop", "{got}");
    let person: Value =
        serde_json::from_str(got["structured"]["content"].as_str().unwrap()).unwrap();
    let o = person.as_object().unwrap();
    assert_eq!(o.len(), 2, "{person}");
    assert!(
        o["name"].as_str().is_some_and(|s| s.chars().count() <= 12),
        "{person}"
    );
    assert!(o["age"].as_u64().is_some_and(|a| a <= 120), "{person}");

    let errors = &got["errors"];
    assert_eq!(errors["too_long"]["status"], 400, "{errors}");
    assert_eq!(errors["too_long"]["code"], "context_length_exceeded");
    assert_eq!(errors["bad_field"]["status"], 400);
    assert_eq!(errors["bad_field"]["param"], "temperature");
    assert_eq!(errors["bad_key"]["status"], 401);
    assert!(server.stop().success());
}

#[test]
fn curl_reads_the_event_stream() {
    if !has("curl", &["--version"]) {
        let _: Option<()> = missing("curl");
        return;
    }
    let server = Running::start(&[]);
    let body =
        r#"{"prompt": "Once upon a time", "max_tokens": 24, "temperature": 0, "stream": true}"#;
    let out = Command::new("curl")
        .args([
            "-sSN",
            "--fail-with-body",
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
        ])
        .arg(format!("{}/v1/completions", server.base))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // Events are `data: <json>` lines separated by blank lines, the last `data: [DONE]`.
    let events: Vec<&str> = text
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .collect();
    assert!(events.iter().all(|e| e.starts_with("data: ")), "{text}");
    assert_eq!(events.last(), Some(&"data: [DONE]"));
    let streamed: String = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str::<Value>(&e["data: ".len()..]).unwrap())
        .filter_map(|c| c["choices"][0]["text"].as_str().map(String::from))
        .collect();
    assert_eq!(streamed, greedy("Once upon a time", false, 24));
    assert!(server.stop().success());
}
