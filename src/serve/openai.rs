//! The OpenAI API's request and response bodies: `POST /v1/chat/completions` and
//! `/v1/completions` (streamed as server-sent events or not), and its error shape.
//!
//! Requests are parsed field by field with `serde_path_to_error`, so a malformed one gets a 400
//! that names the field (`messages[0].content: invalid type: ...`). Fields people use are
//! honoured (`max_tokens`/`max_completion_tokens`, `temperature`, `top_p`, `stop`, `seed`,
//! `logprobs`/`top_logprobs`, `stream`, `stream_options.include_usage`, `n` = 1) with llama.cpp's
//! server's extensions (`top_k`, `min_p`, `repeat_penalty`, `ignore_eos`, `cache_prompt`);
//! unknown fields are ignored, as OpenAI's clients send some; fields that would change the
//! answer and are not implemented (`n` > 1, penalties other than 0, `echo`, `suffix`, `tools`)
//! are refused by name. Structured output: `response_format` (JSON schema or any JSON object),
//! and llama.cpp's `json_schema` and `grammar` (Lark), through [`crate::serve::grammar`].

use llguidance::api::TopLevelGrammar;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::chat::ChatMessage;
use crate::sampling::SamplerConfig;
use crate::serve::engine::{FinishReason, Params, TokenLogprob, Usage};
use crate::tokenizer::Tokenizer;

/// An error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `server_error` ...
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    /// A 400 about `param`.
    pub fn invalid(param: Option<&str>, message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            message: message.into(),
            kind: "invalid_request_error",
            param: param.map(str::to_string),
            code: None,
        }
    }

    /// The body.
    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

/// `stop`: one string or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

/// `prompt` of `/v1/completions`: a string, or a list of one string, or token ids.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
}

/// A message's `content`: a string, or parts of which the `text` ones are read.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Clone, Deserialize)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: Option<Content>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StreamOptions {
    pub include_usage: Option<bool>,
}

/// The fields of both endpoints' requests (each reads its own).
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    pub model: Option<String>,
    pub messages: Option<Vec<Message>>,
    pub prompt: Option<Prompt>,
    pub max_tokens: Option<usize>,
    pub max_completion_tokens: Option<usize>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub seed: Option<i64>,
    pub stop: Option<Stop>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub n: Option<usize>,
    /// chat: a boolean; completions: the number of alternatives (0 to 5).
    pub logprobs: Option<Value>,
    pub top_logprobs: Option<usize>,
    pub ignore_eos: Option<bool>,
    pub cache_prompt: Option<bool>,
    pub response_format: Option<Value>,
    /// A JSON schema the answer follows (llama.cpp's server's field).
    pub json_schema: Option<Value>,
    /// A Lark grammar the answer follows (llguidance's dialect).
    pub grammar: Option<String>,
    pub echo: Option<bool>,
    pub suffix: Option<String>,
    pub tools: Option<Value>,
}

/// Parses a request body, naming the field of an error.
pub fn parse(body: &[u8]) -> Result<CompletionRequest, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let request: CompletionRequest = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || inner.is_syntax() || inner.is_eof() {
            ApiError::invalid(None, format!("malformed JSON body: {inner}"))
        } else {
            ApiError::invalid(Some(&path), format!("{path}: {inner}"))
        }
    })?;
    Ok(request)
}

impl CompletionRequest {
    /// The engine's parameters (llama.cpp's server defaults for fields not given: its sampler's,
    /// [`SamplerConfig::default`]; 16 tokens for completions as OpenAI's, and up to the context
    /// for chat).
    pub fn params(&self, chat: bool, context: usize) -> Result<Params, ApiError> {
        let refuse = |param: &str, why: &str| Err(ApiError::invalid(Some(param), why.to_string()));
        if self.n.is_some_and(|n| n != 1) {
            return refuse("n", "only n = 1 is supported");
        }
        for (name, v) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if v.is_some_and(|v| v != 0.0) {
                return refuse(name, "only 0 is supported (see repeat_penalty)");
            }
        }
        if self.echo == Some(true) {
            return refuse("echo", "echo is not supported");
        }
        if self.suffix.is_some() {
            return refuse("suffix", "suffix is not supported");
        }
        if self.tools.as_ref().is_some_and(|t| !t.is_null()) {
            return refuse("tools", "tool calls are not supported");
        }
        let defaults = SamplerConfig::default();
        let sampler = SamplerConfig {
            temperature: self.temperature.unwrap_or(defaults.temperature),
            top_k: self.top_k.unwrap_or(defaults.top_k),
            top_p: self.top_p.unwrap_or(defaults.top_p),
            min_p: self.min_p.unwrap_or(defaults.min_p),
            repeat_penalty: self.repeat_penalty.unwrap_or(defaults.repeat_penalty),
            seed: self.seed.and_then(|s| u64::try_from(s).ok()),
            ..defaults
        };
        sampler.validate().map_err(|e| {
            let param = match &e {
                crate::sampling::SamplingError::InvalidParameter { name, .. } => Some(*name),
                _ => None,
            };
            ApiError::invalid(param, e.to_string())
        })?;
        let logprobs = match (chat, &self.logprobs) {
            (_, None | Some(Value::Null)) => None,
            (true, Some(Value::Bool(false))) => None,
            (true, Some(Value::Bool(true))) => Some(self.top_logprobs.unwrap_or(0)),
            (true, Some(_)) => return refuse("logprobs", "logprobs must be a boolean"),
            (false, Some(v)) => match v.as_u64() {
                Some(n) if n <= 20 => Some(n as usize),
                _ => return refuse("logprobs", "logprobs must be an integer from 0 to 20"),
            },
        };
        if logprobs.is_some_and(|n| n > 20) {
            return refuse("top_logprobs", "top_logprobs must be at most 20");
        }
        let max_tokens = match (self.max_completion_tokens.or(self.max_tokens), chat) {
            (Some(0), _) => return refuse("max_tokens", "max_tokens must be at least 1"),
            (Some(n), _) => n,
            (None, true) => context,
            (None, false) => 16,
        };
        let stop = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) if v.len() <= 4 => v.clone(),
            Some(Stop::Many(_)) => return refuse("stop", "at most 4 stop strings"),
        };
        Ok(Params {
            max_tokens,
            sampler,
            stop: stop.into_iter().filter(|s| !s.is_empty()).collect(),
            logprobs,
            ignore_eos: self.ignore_eos.unwrap_or(false),
            cache_prompt: self.cache_prompt.unwrap_or(true),
        })
    }

    /// The grammar the answer must follow: `response_format` `{"type": "json_schema",
    /// "json_schema": {"schema": S}}` (OpenAI's), `{"type": "json_object"}` (any object),
    /// `{"type": "text"}` (none); or llama.cpp's `json_schema` (a schema) and `grammar` (here a
    /// Lark grammar, llguidance's dialect). With the field it came from.
    pub fn grammar(&self) -> Result<Option<(&'static str, TopLevelGrammar)>, ApiError> {
        let set = [
            self.response_format.is_some(),
            self.json_schema.is_some(),
            self.grammar.is_some(),
        ];
        if set.iter().filter(|&&b| b).count() > 1 {
            return Err(ApiError::invalid(
                Some("response_format"),
                "give one of response_format, json_schema and grammar",
            ));
        }
        if let Some(f) = &self.response_format {
            let bad = |why: &str| Err(ApiError::invalid(Some("response_format"), why.to_string()));
            return match f.get("type").and_then(Value::as_str) {
                Some("text") => Ok(None),
                Some("json_object") => Ok(Some((
                    "response_format",
                    json_grammar(json!({"type": "object"})),
                ))),
                Some("json_schema") => match f.pointer("/json_schema/schema") {
                    Some(schema) => Ok(Some(("response_format", json_grammar(schema.clone())))),
                    None => bad("response_format.json_schema.schema is missing"),
                },
                _ => bad("response_format.type must be text, json_object or json_schema"),
            };
        }
        if let Some(schema) = &self.json_schema {
            return Ok(Some(("json_schema", json_grammar(schema.clone()))));
        }
        Ok(self
            .grammar
            .as_ref()
            .map(|g| ("grammar", TopLevelGrammar::from_lark(g.clone()))))
    }

    /// Whether the answer is streamed.
    pub fn stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether a stream ends with a chunk of usage.
    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// The chat messages, their contents as text.
    pub fn chat_messages(&self) -> Result<Vec<ChatMessage>, ApiError> {
        let messages = self
            .messages
            .as_ref()
            .ok_or_else(|| ApiError::invalid(Some("messages"), "missing field `messages`"))?;
        if messages.is_empty() {
            return Err(ApiError::invalid(
                Some("messages"),
                "messages must not be empty",
            ));
        }
        messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let content = match &m.content {
                    None => String::new(),
                    Some(Content::Text(t)) => t.clone(),
                    Some(Content::Parts(parts)) => {
                        let mut text = String::new();
                        for (j, p) in parts.iter().enumerate() {
                            match (p.kind.as_str(), &p.text) {
                                ("text", Some(t)) => text.push_str(t),
                                _ => {
                                    return Err(ApiError::invalid(
                                        Some(&format!("messages[{i}].content[{j}]")),
                                        format!(
                                        "content parts of type {:?} are not supported (text only)",
                                        p.kind
                                    ),
                                    ))
                                }
                            }
                        }
                        text
                    }
                };
                Ok(ChatMessage::new(m.role.clone(), content))
            })
            .collect()
    }

    /// The prompt of a completion as token ids (`tokenize` for text).
    pub fn prompt_tokens(&self, tokenize: impl Fn(&str) -> Vec<u32>) -> Result<Vec<u32>, ApiError> {
        match &self.prompt {
            None => Err(ApiError::invalid(Some("prompt"), "missing field `prompt`")),
            Some(Prompt::Text(t)) => Ok(tokenize(t)),
            Some(Prompt::Texts(v)) if v.len() == 1 => Ok(tokenize(&v[0])),
            Some(Prompt::Texts(_)) => Err(ApiError::invalid(
                Some("prompt"),
                "only one prompt per request is supported",
            )),
            Some(Prompt::Tokens(ids)) => Ok(ids.clone()),
        }
    }
}

/// The grammar of JSON following `schema`, laid out as `{"a": 1, "b": [2, 3]}`: no whitespace
/// but one space after `:` and `,` (llguidance's default allows any whitespace between tokens,
/// which lets a small model write newlines until `max_tokens`). A schema's own `x-guidance`
/// options take precedence.
fn json_grammar(mut schema: Value) -> TopLevelGrammar {
    if let Some(o) = schema.as_object_mut() {
        o.entry("x-guidance").or_insert_with(
            || json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}),
        );
    }
    TopLevelGrammar::from_json_schema(schema)
}

/// The text of token `id` as the tokenizer prints it (lossy for a piece of a UTF-8 character),
/// and its bytes.
fn token_text(tokenizer: &Tokenizer, id: u32) -> (String, Vec<u8>) {
    let bytes = tokenizer.token_to_piece(id, true);
    (String::from_utf8_lossy(&bytes).into_owned(), bytes)
}

/// A chat answer's `logprobs.content` entry for one token.
pub fn chat_logprob(tokenizer: &Tokenizer, id: u32, lp: &TokenLogprob) -> Value {
    let entry = |id: u32, logprob: f32| {
        let (token, bytes) = token_text(tokenizer, id);
        json!({"token": token, "logprob": logprob, "bytes": bytes})
    };
    let mut e = entry(id, lp.logprob);
    e["top_logprobs"] = Value::Array(lp.top.iter().map(|&(t, l)| entry(t, l)).collect());
    e
}

/// The legacy completions' `logprobs` of some tokens: `tokens`, `token_logprobs`,
/// `top_logprobs` (text to log-probability), `text_offset` (from `offset`).
pub fn completion_logprobs(
    tokenizer: &Tokenizer,
    tokens: &[(u32, TokenLogprob)],
    mut offset: usize,
) -> Value {
    let mut texts = Vec::new();
    let mut lps = Vec::new();
    let mut tops = Vec::new();
    let mut offsets = Vec::new();
    for (id, lp) in tokens {
        let (text, _) = token_text(tokenizer, *id);
        offsets.push(offset);
        offset += text.len();
        texts.push(text);
        lps.push(lp.logprob);
        let top: serde_json::Map<String, Value> = lp
            .top
            .iter()
            .map(|&(t, l)| (token_text(tokenizer, t).0, json!(l)))
            .collect();
        tops.push(Value::Object(top));
    }
    json!({"tokens": texts, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets})
}

/// OpenAI's name of a finish reason.
pub fn finish_reason(r: FinishReason) -> &'static str {
    match r {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

/// The `usage` object.
pub fn usage(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    })
}
