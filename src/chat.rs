//! Chat templates: turning a conversation into the prompt text a chat model was trained on.
//!
//! GGUF files carry the model's Hugging Face chat template, a Jinja2 program, under
//! `tokenizer.chat_template`. It is rendered here with `minijinja` in the environment that
//! Hugging Face's `apply_chat_template` (and llama.cpp's `--jinja` path) provide:
//!
//! - variables `messages` (a list of `{role, content}`), `add_generation_prompt`, `bos_token`,
//!   `eos_token` (the texts of the vocabulary's BOS and EOS tokens, empty if it has none);
//! - `trim_blocks` and `lstrip_blocks` on, a single trailing newline of the template dropped
//!   (Jinja2's defaults, which HF keeps), `break`/`continue` in loops (HF's `loopcontrols`);
//! - `raise_exception(message)`, which makes rendering fail with [`ChatError::Raised`];
//! - `strftime_now(format)`: the local time formatted with C `strftime` specifiers;
//! - Python string, dict and list methods (`.strip()`, `.startswith()`, `.split()`, `.items()`,
//!   ...) through `minijinja-contrib`'s pycompat layer;
//! - a `tojson` filter that writes JSON as Python's `json.dumps(x, ensure_ascii=False)` does
//!   (`", "` and `": "` separators, `indent=n` for pretty output, no HTML escaping), as HF's does;
//! - bounds on what one rendering may do, since the template comes from the model file:
//!   [`MAX_FUEL`] instructions and [`MAX_OUTPUT_BYTES`] of text (a [`ChatError::Render`] beyond).
//!
//! A file without a template gets [`ChatTemplate::chatml`], as in llama.cpp (`common/chat.cpp`
//! falls back to ChatML when `tokenizer.chat_template` is absent or empty); see
//! [`ChatTemplate::from_gguf_or_chatml`].

use gguf_importer::{keys, GgufError, Metadata, Value, ValueType};
use minijinja::value::{Kwargs, Value as JValue};
use minijinja::{context, Environment, ErrorKind};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant` (templates may accept others, or reject them).
    pub role: String,
    /// The text of the turn.
    pub content: String,
}

impl ChatMessage {
    /// A message with any role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// Why a chat template could not be loaded or rendered.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// A metadata key the template needs has the wrong type.
    #[error("metadata key {key:?} has type {found}, expected {expected}")]
    WrongType {
        key: &'static str,
        expected: &'static str,
        found: ValueType,
    },

    /// The BOS or EOS id names no token of the vocabulary.
    #[error("metadata key {key:?} = {id} is not a token id: the vocabulary has {n_tokens} tokens")]
    BadTokenId {
        key: &'static str,
        id: u64,
        n_tokens: usize,
    },

    /// Reading a metadata value failed.
    #[error("reading metadata key {key:?}: {source}")]
    Metadata {
        key: &'static str,
        #[source]
        source: GgufError,
    },

    /// The template is not valid Jinja.
    #[error("the chat template does not compile: {source}")]
    Syntax {
        #[source]
        source: minijinja::Error,
    },

    /// The template called `raise_exception(message)`.
    #[error("the chat template raised an exception: {message}")]
    Raised { message: String },

    /// Rendering failed for another reason (an undefined method, a type error, ...).
    #[error("rendering the chat template failed: {source}")]
    Render {
        #[source]
        source: minijinja::Error,
    },
}

/// The payload of a `raise_exception` call, carried as the source of the minijinja error so that
/// [`ChatTemplate::render`] can tell it from other failures.
#[derive(Debug)]
struct RaisedException(String);

impl fmt::Display for RaisedException {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RaisedException {}

/// The most minijinja instructions one rendering may execute (its `fuel`; most instructions
/// take 1) before it fails with [`ChatError::Render`] (`ErrorKind::OutOfFuel`). A template comes
/// from the model file, and a hostile one could loop for hours (`{% for a in range(99999) %}{%
/// for b in range(99999) %}...`, in `fuzz/regressions/chat_template/`). Real templates take
/// some tens of instructions per message (SmolLM2's about 23, Llama 3's about 32), so this allows
/// conversations of tens of thousands of turns; a release build uses it up in about 60 ms.
pub const MAX_FUEL: u64 = 2_000_000;

/// The most bytes a rendering may produce before it fails with [`ChatError::Render`]: a short
/// hostile template can otherwise ask for gigabytes (`{% for i in range(99999) %}{{ "a" *
/// 99999999 }}{% endfor %}`). Far above any prompt a context window holds.
pub const MAX_OUTPUT_BYTES: usize = 256 << 20;

/// Collects the rendered text, refusing a write that would take it over [`MAX_OUTPUT_BYTES`].
struct LimitedWriter(Vec<u8>);

impl std::io::Write for LimitedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len().saturating_add(buf.len()) > MAX_OUTPUT_BYTES {
            return Err(std::io::Error::other(format!(
                "the rendered text exceeds {MAX_OUTPUT_BYTES} bytes"
            )));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Name of the one template in each environment.
const TEMPLATE_NAME: &str = "chat_template";

/// ChatML, the fallback for files without a template. Renders exactly as llama.cpp's fallback
/// (`CHATML_TEMPLATE_SRC` in `common/chat.cpp`): `<|im_start|>{role}\n{content}<|im_end|>\n` per
/// message, then `<|im_start|>assistant\n` when a generation prompt is asked for; no BOS.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}\
{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}\
{% endfor %}\
{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// A compiled chat template with the BOS and EOS texts it is rendered with.
#[derive(Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_len", &self.source.len())
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles `source` (Jinja2 as in HF's `tokenizer_config.json` / the GGUF key) for rendering
    /// with the given BOS and EOS texts.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, ChatError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        // A template is a program from the model file: bound its work (see `MAX_FUEL`).
        env.set_fuel(Some(MAX_FUEL));
        // No source excerpts in errors, in debug builds as in release ones (minijinja's default
        // is on with debug assertions): for some errors of a hostile template, rendering the
        // excerpt panics inside minijinja 2.24 whenever the error is formatted with `{:?}`
        // (`unwrap`) or `{:#}`: `{% for in messages %}` fails with a span that ends before it
        // starts, and `debug.rs` computes `end_col - start_col`. Found by the `chat_template`
        // fuzz target (fuzz/README.md, bug 6).
        env.set_debug(false);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned(TEMPLATE_NAME, source.to_owned())
            .map_err(|source| ChatError::Syntax { source })?;
        Ok(Self {
            env,
            source: source.to_owned(),
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
        })
    }

    /// The template of a GGUF file (`tokenizer.chat_template`), with the texts of its BOS and EOS
    /// tokens (`tokenizer.ggml.bos_token_id` / `eos_token_id` looked up in `tokenizer.ggml.tokens`;
    /// empty when the id or the token list is absent, as llama.cpp does).
    ///
    /// `Ok(None)` when the key is absent or empty: use [`ChatTemplate::chatml`] then, as llama.cpp
    /// does ([`ChatTemplate::from_gguf_or_chatml`]).
    pub fn from_gguf(metadata: &Metadata) -> Result<Option<Self>, ChatError> {
        const KEY: &str = keys::tokenizer::CHAT_TEMPLATE;
        let source = match metadata.get(KEY) {
            None => return Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
            Some(Value::String(s)) => s,
            Some(other) => {
                return Err(ChatError::WrongType {
                    key: KEY,
                    expected: "STRING",
                    found: other.value_type(),
                })
            }
        };
        let bos = special_token_text(metadata, keys::tokenizer::BOS_ID)?;
        let eos = special_token_text(metadata, keys::tokenizer::EOS_ID)?;
        Self::new(source, bos, eos).map(Some)
    }

    /// [`ChatTemplate::from_gguf`], or ChatML (with the file's BOS and EOS texts) when the file has
    /// no template: llama.cpp's behaviour.
    pub fn from_gguf_or_chatml(metadata: &Metadata) -> Result<Self, ChatError> {
        match Self::from_gguf(metadata)? {
            Some(t) => Ok(t),
            None => {
                let bos = special_token_text(metadata, keys::tokenizer::BOS_ID)?;
                let eos = special_token_text(metadata, keys::tokenizer::EOS_ID)?;
                Self::new(CHATML_TEMPLATE, bos, eos)
            }
        }
    }

    /// The template `source` (a file the user names, llama.cpp's `--chat-template-file`) with the
    /// BOS and EOS texts of the GGUF file's tokenizer, as [`ChatTemplate::from_gguf`] takes them.
    pub fn with_gguf_tokens(source: &str, metadata: &Metadata) -> Result<Self, ChatError> {
        let bos = special_token_text(metadata, keys::tokenizer::BOS_ID)?;
        let eos = special_token_text(metadata, keys::tokenizer::EOS_ID)?;
        Self::new(source, bos, eos)
    }

    /// The ChatML template ([`CHATML_TEMPLATE`]), llama.cpp's fallback, with `<|im_start|>` and
    /// `<|im_end|>` as BOS and EOS texts (ChatML itself uses neither variable).
    pub fn chatml() -> Self {
        match Self::new(CHATML_TEMPLATE, "<|im_start|>", "<|im_end|>") {
            Ok(t) => t,
            // CHATML_TEMPLATE is a constant that compiles (tested in tests/chat.rs).
            Err(e) => unreachable!("the built-in ChatML template does not compile: {e}"),
        }
    }

    /// The Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The text bound to `bos_token`.
    pub fn bos_token(&self) -> &str {
        &self.bos_token
    }

    /// The text bound to `eos_token`.
    pub fn eos_token(&self) -> &str {
        &self.eos_token
    }

    /// Renders a conversation. With `add_generation_prompt`, the text ends with the header of an
    /// assistant turn, ready for the model to continue.
    ///
    /// The text is what HF's `apply_chat_template(..., tokenize=False)` returns. It may begin with
    /// the BOS text: tokenize it with special tokens parsed, and without adding another BOS, or
    /// strip it first with [`ChatTemplate::strip_added_tokens`] as llama.cpp does.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|source| ChatError::Render { source })?;
        let ctx = context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        };
        let mut out = LimitedWriter(Vec::new());
        template
            .render_captured_to(ctx, &mut out)
            .map_err(classify)?;
        // minijinja writes whole `&str` pieces, and the writer takes a piece whole or not at all.
        String::from_utf8(out.0).map_err(|_| ChatError::Render {
            source: minijinja::Error::new(
                ErrorKind::InvalidOperation,
                "the rendered text is not UTF-8",
            ),
        })
    }

    /// The token ids of `messages` rendered with the generation prompt, as llama.cpp tokenizes a
    /// chat: a BOS text the template writes is dropped when the tokenizer adds BOS itself
    /// ([`ChatTemplate::strip_added_tokens`]), then the text is encoded with BOS per the file
    /// and special tokens parsed.
    pub fn prompt_tokens(
        &self,
        tokenizer: &crate::tokenizer::Tokenizer,
        messages: &[ChatMessage],
    ) -> Result<Vec<u32>, ChatError> {
        let rendered = self.render(messages, true)?;
        let text = self.strip_added_tokens(&rendered, tokenizer.add_bos(), false);
        Ok(tokenizer.encode(text, true, true))
    }

    /// Removes a leading BOS text when the tokenizer will add BOS itself (`add_bos`), and a
    /// trailing EOS text when it will add EOS (`add_eos`), as llama.cpp's
    /// `common_chat_template_direct_apply_impl` does, so that the prompt does not get them twice.
    pub fn strip_added_tokens<'a>(
        &self,
        rendered: &'a str,
        add_bos: bool,
        add_eos: bool,
    ) -> &'a str {
        let mut text = rendered;
        if add_bos && !self.bos_token.is_empty() {
            text = text.strip_prefix(self.bos_token.as_str()).unwrap_or(text);
        }
        if add_eos && !self.eos_token.is_empty() {
            text = text.strip_suffix(self.eos_token.as_str()).unwrap_or(text);
        }
        text
    }
}

/// The text of the token whose id is under `id_key`; empty if the id or the token list is absent.
fn special_token_text<'m>(
    metadata: &'m Metadata,
    id_key: &'static str,
) -> Result<&'m str, ChatError> {
    const TOKENS: &str = keys::tokenizer::TOKENS;
    if !metadata.contains(id_key) {
        return Ok("");
    }
    let id = metadata
        .get_u64(id_key)
        .map_err(|source| ChatError::Metadata {
            key: id_key,
            source,
        })?;
    let tokens = match metadata.get(TOKENS) {
        None => return Ok(""),
        Some(Value::Array(_, items)) => items,
        Some(other) => {
            return Err(ChatError::WrongType {
                key: TOKENS,
                expected: "ARRAY of STRING",
                found: other.value_type(),
            })
        }
    };
    let token = usize::try_from(id).ok().and_then(|i| tokens.get(i));
    match token {
        None => Err(ChatError::BadTokenId {
            key: id_key,
            id,
            n_tokens: tokens.len(),
        }),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(ChatError::WrongType {
            key: TOKENS,
            expected: "ARRAY of STRING",
            found: other.value_type(),
        }),
    }
}

/// Tells a `raise_exception` call from other rendering failures.
fn classify(err: minijinja::Error) -> ChatError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = source {
        if let Some(raised) = e.downcast_ref::<RaisedException>() {
            return ChatError::Raised {
                message: raised.0.clone(),
            };
        }
        source = e.source();
    }
    ChatError::Render { source: err }
}

/// `raise_exception(message)`: fails the rendering with `message`.
fn raise_exception(message: String) -> Result<JValue, minijinja::Error> {
    Err(
        minijinja::Error::new(ErrorKind::InvalidOperation, "raise_exception called")
            .with_source(RaisedException(message)),
    )
}

/// `strftime_now(format)`: the local time, formatted with C `strftime` specifiers (HF passes
/// `datetime.now().strftime`). An unknown specifier is a rendering error, not a panic.
fn strftime_now(format: String) -> Result<String, minijinja::Error> {
    use chrono::format::{Item, StrftimeItems};
    use std::fmt::Write;
    let items: Vec<Item<'_>> = StrftimeItems::new(&format).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: invalid format string {format:?}"),
        ));
    }
    let mut out = String::new();
    write!(
        out,
        "{}",
        chrono::Local::now().format_with_items(items.into_iter())
    )
    .map_err(|_| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            "strftime_now: formatting failed",
        )
    })?;
    Ok(out)
}

/// `tojson`, as HF's: `json.dumps(value, ensure_ascii=False, indent=indent)`.
fn tojson(value: JValue, kwargs: Kwargs) -> Result<String, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let mut out = Vec::new();
    let result = match indent {
        // Python's indented output uses "," at line ends and ": " after keys, like serde_json's
        // pretty printer.
        Some(n) => {
            let pad = vec![b' '; n];
            let fmt = serde_json::ser::PrettyFormatter::with_indent(&pad);
            value.serialize(&mut serde_json::Serializer::with_formatter(&mut out, fmt))
        }
        None => value.serialize(&mut serde_json::Serializer::with_formatter(
            &mut out,
            PythonCompact,
        )),
    };
    result.map_err(|e| {
        minijinja::Error::new(ErrorKind::InvalidOperation, "tojson: cannot serialize")
            .with_source(e)
    })?;
    String::from_utf8(out)
        .map_err(|_| minijinja::Error::new(ErrorKind::InvalidOperation, "tojson: invalid UTF-8"))
}

/// Python's `json.dumps` default separators: `", "` between items, `": "` after keys.
struct PythonCompact;

impl serde_json::ser::Formatter for PythonCompact {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}
