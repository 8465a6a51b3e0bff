//! What the examples share: opening a model (a path, or the embedded stories260K), setting the
//! thread count, building the prompt as llama.cpp's completion and chat do, parsing numeric flags
//! that must be positive, and ending with a one-line error instead of a backtrace.

use std::error::Error as StdError;
use std::path::Path;
use std::process::ExitCode;

use crate::chat::{ChatMessage, ChatTemplate};
use crate::error::Result;
use crate::gguf::GgufFile;
use crate::tokenizer::Tokenizer;

/// The default model, committed to the repository and embedded in the examples: stories260K
/// (a 260K-parameter Llama trained on TinyStories), F32.
pub const EMBEDDED_MODEL: &[u8] = include_bytes!("../models/stories260k-f32.gguf");

/// Opens `path`, or the embedded stories260K when `None`.
pub fn open_model(path: Option<&Path>) -> Result<GgufFile> {
    Ok(match path {
        Some(p) => GgufFile::open(p)?,
        None => GgufFile::from_bytes(EMBEDDED_MODEL.to_vec())?,
    })
}

/// Sets the number of threads of the CPU devices (rayon's global pool). Call once, early.
pub fn set_threads(n: Option<usize>) {
    if let Some(n) = n {
        // Fails only if the pool was already built, in which case it keeps its size.
        if rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .is_err()
        {
            log::warn!("thread pool already initialized; --threads {n} ignored");
        }
    }
}

/// The prompt's token ids, as llama.cpp's completion tokenizes a prompt: BOS per the file's
/// `add_bos_token`, special tokens in the text parsed. With `chat`, the text is first rendered as
/// a user message (after an optional system message) with the file's chat template (ChatML when it
/// has none) and the generation prompt.
pub fn prompt_tokens(
    file: &GgufFile,
    tokenizer: &Tokenizer,
    prompt: &str,
    chat: bool,
    system: Option<&str>,
) -> Result<Vec<u32>> {
    let template = match chat {
        true => Some(ChatTemplate::from_gguf_or_chatml(file.metadata())?),
        false => None,
    };
    prompt_tokens_with(tokenizer, prompt, template.as_ref(), system)
}

/// [`prompt_tokens`] with the chat template `template` (`None`: the prompt as it is), e.g. one
/// read from a file (llama.cpp's `--chat-template-file`) for a GGUF file without a template.
pub fn prompt_tokens_with(
    tokenizer: &Tokenizer,
    prompt: &str,
    template: Option<&ChatTemplate>,
    system: Option<&str>,
) -> Result<Vec<u32>> {
    let Some(template) = template else {
        return Ok(tokenizer.encode(prompt, true, true));
    };
    let mut messages = Vec::new();
    if let Some(s) = system {
        messages.push(ChatMessage::system(s));
    }
    messages.push(ChatMessage::user(prompt));
    Ok(template.prompt_tokens(tokenizer, &messages)?)
}

/// A command-line value out of range, for clap's `value_parser` (clap prints it as
/// `invalid value '0' for '--max-tokens <MAX_TOKENS>': ...` and exits with status 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// A count that must be at least 1 (tokens to generate, runs, steps ...).
    #[error("{value:?} is not a whole number of at least 1")]
    NotPositiveCount { value: String },
    /// A real number that must be finite and above 0 (a learning rate).
    #[error("{value:?} is not a finite number above 0")]
    NotPositiveNumber { value: String },
}

/// Parses a count of at least 1: `--max-tokens 0`, `--runs -1` or `--steps x` are errors.
pub fn positive_count(s: &str) -> Result<usize, ArgError> {
    s.trim()
        .parse::<usize>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| ArgError::NotPositiveCount {
            value: s.to_string(),
        })
}

/// Parses a finite real number above 0 (`--lr`).
pub fn positive_number(s: &str) -> Result<f64, ArgError> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x > 0.0)
        .ok_or_else(|| ArgError::NotPositiveNumber {
            value: s.to_string(),
        })
}

/// `error` and its causes as one line: each cause is appended after `: ` unless the text so far
/// already ends with it (an error whose message embeds its source, as `ModelError::Tensor`
/// does, would otherwise print it twice); line breaks inside a message become spaces.
pub fn error_line(error: &(dyn StdError + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let text = e.to_string();
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = e.source();
    }
    line.replace(['\r', '\n'], " ")
}

/// How an example's `main` ends: success exits with status 0; an error is printed to stderr as
/// one line, `error: ` and [`error_line`], and exits with status 1.
///
/// Returning the error from `main` instead would print its `Debug` form: anyhow's spreads the
/// causes over several lines and, with `RUST_BACKTRACE` set, adds a stack backtrace, which says
/// "the program is broken" about what is a bad input. `E` is `anyhow::Error` in the examples, or
/// any error type.
///
/// ```no_run
/// fn main() -> std::process::ExitCode {
///     gguf_llama::cli::exit_code(run())
/// }
/// fn run() -> Result<(), gguf_llama::Error> {
///     let _file = gguf_llama::cli::open_model(Some("model.gguf".as_ref()))?;
///     Ok(())
/// }
/// ```
pub fn exit_code<E: Into<Box<dyn StdError>>>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_line(e.into().as_ref()));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_must_be_positive_whole_numbers() {
        assert_eq!(positive_count("3"), Ok(3));
        for bad in ["0", "-1", "1.5", "", "x"] {
            assert_eq!(
                positive_count(bad),
                Err(ArgError::NotPositiveCount { value: bad.into() })
            );
        }
        assert_eq!(positive_number("1e-3"), Ok(1e-3));
        for bad in ["0", "-0.1", "inf", "NaN", "x"] {
            assert_eq!(
                positive_number(bad),
                Err(ArgError::NotPositiveNumber { value: bad.into() })
            );
        }
    }

    #[test]
    fn an_error_and_its_causes_make_one_line_each_cause_once() {
        let source = gguf_importer::GgufError::MissingTensor { name: "t".into() };
        let embedding = crate::model::ModelError::Tensor {
            name: "t".into(),
            source,
        };
        // The message embeds its source: printed once.
        assert_eq!(
            error_line(&embedding),
            "loading tensor \"t\": no tensor named \"t\" in the file"
        );
        // A wrapper whose message does not: appended.
        #[derive(Debug, thiserror::Error)]
        #[error("opening\nthe  model")]
        struct Context(#[source] crate::model::ModelError);
        assert_eq!(
            error_line(&Context(embedding)),
            "opening the  model: loading tensor \"t\": no tensor named \"t\" in the file"
        );
    }
}
