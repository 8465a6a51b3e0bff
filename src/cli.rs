//! What the examples share: opening a model (a path, or the embedded stories260K), setting the
//! thread count, and building the prompt as llama.cpp's completion and chat do.

use std::path::Path;

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
    let text = if chat {
        let template = ChatTemplate::from_gguf_or_chatml(file.metadata())?;
        let mut messages = Vec::new();
        if let Some(s) = system {
            messages.push(ChatMessage::system(s));
        }
        messages.push(ChatMessage::user(prompt));
        // A template that writes the BOS text itself would get a second BOS from the tokenizer:
        // drop the leading one, as llama.cpp does.
        let rendered = template.render(&messages, true)?;
        template
            .strip_added_tokens(&rendered, tokenizer.add_bos(), false)
            .to_string()
    } else {
        prompt.to_string()
    };
    Ok(tokenizer.encode(&text, true, true))
}
