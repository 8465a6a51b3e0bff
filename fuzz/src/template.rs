//! The chat-template property (`chat_template` target): rendering ends in `Ok` or a
//! [`ChatError`], never in a panic or a hang, for
//!
//! - the committed templates (`tests/fixtures/chat/*.jinja`: ChatML, Llama 3, SmolLM2's, and
//!   one that uses every extension of the environment) and the built-in ChatML fallback, with a
//!   conversation drawn from the input: any roles, any contents, any number of messages, with
//!   and without the generation prompt;
//! - the input itself as the template source, as a hostile GGUF file could carry it
//!   (`tokenizer.chat_template` is a program), rendered with a conversation drawn from the rest.
//!
//! Input: `[mode, ...]`. `mode & 0x80` set: `[mode, source.., 0, conversation..]`; clear:
//! template `mode % 5` with `[mode, conversation..]`. `mode & 1`: `add_generation_prompt`.
//! A conversation: messages separated by `\x1e`, each `[role, content..]` where the role byte
//! picks `system`, `user`, `assistant`, `tool` (`role % 4`), or, from 0xf0 up, the content up to
//! its first `:` is the role and the rest the content.
//!
//! Shared by `fuzz_targets/chat_template.rs` and `tests/fuzz_replay.rs`, which includes this file
//! with `#[path]`: it names the chat module only as `crate::chat` and uses `std`.

use crate::chat::{ChatError, ChatMessage, ChatTemplate, CHATML_TEMPLATE};

/// The committed templates, by `mode % 5`.
pub const TEMPLATES: [(&str, &str); 5] = [
    (
        "chatml",
        include_str!("../../tests/fixtures/chat/chatml.jinja"),
    ),
    (
        "llama3",
        include_str!("../../tests/fixtures/chat/llama3.jinja"),
    ),
    (
        "smollm2",
        include_str!("../../tests/fixtures/chat/smollm2.jinja"),
    ),
    (
        "features",
        include_str!("../../tests/fixtures/chat/features.jinja"),
    ),
    ("builtin_chatml", CHATML_TEMPLATE),
];

/// Bit of the mode byte: the input carries its own template source.
pub const OWN_SOURCE: u8 = 0x80;
/// Bit of the mode byte: `add_generation_prompt`.
pub const GENERATION_PROMPT: u8 = 1;
/// Separates messages in the conversation bytes.
pub const MESSAGE_SEPARATOR: u8 = 0x1e;
/// At most this many messages are drawn (more only repeat what fewer reach).
pub const MAX_MESSAGES: usize = 64;

const ROLES: [&str; 4] = ["system", "user", "assistant", "tool"];

/// The conversation of the input bytes (see the module documentation).
pub fn messages(data: &[u8]) -> Vec<ChatMessage> {
    if data.is_empty() {
        return Vec::new();
    }
    data.split(|&b| b == MESSAGE_SEPARATOR)
        .take(MAX_MESSAGES)
        .map(|field| match field.split_first() {
            None => ChatMessage::new("", ""),
            Some((&r, rest)) if r >= 0xf0 => {
                let text = String::from_utf8_lossy(rest);
                match text.split_once(':') {
                    Some((role, content)) => ChatMessage::new(role, content),
                    None => ChatMessage::new(text, ""),
                }
            }
            Some((&r, rest)) => ChatMessage::new(
                ROLES[usize::from(r) % ROLES.len()],
                String::from_utf8_lossy(rest),
            ),
        })
        .collect()
}

/// One fuzz input (see the module documentation).
pub fn check_input(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let generation_prompt = mode & GENERATION_PROMPT != 0;
    if mode & OWN_SOURCE != 0 {
        let (source, conversation) = match rest.iter().position(|&b| b == 0) {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => (rest, &[][..]),
        };
        let source = String::from_utf8_lossy(source);
        check_template(&source, &messages(conversation), generation_prompt);
    } else {
        let (_, source) = TEMPLATES[usize::from(mode) % TEMPLATES.len()];
        let template = ChatTemplate::new(source, "<s>", "</s>")
            .unwrap_or_else(|e| panic!("a committed template does not compile: {e}"));
        check_render(&template, &messages(rest), generation_prompt);
    }
}

/// Compiles and renders `source`: either may fail, with a `ChatError`.
pub fn check_template(source: &str, messages: &[ChatMessage], generation_prompt: bool) {
    match ChatTemplate::new(source, "<|bos|>", "<|eos|>") {
        Ok(template) => {
            assert_eq!(template.source(), source);
            check_render(&template, messages, generation_prompt);
        }
        Err(e) => {
            assert!(matches!(e, ChatError::Syntax { .. }), "{e:?}");
            let _ = (e.to_string(), format!("{e:?}"));
        }
    }
}

/// Renders `messages`; an error is a valid outcome, and is rendered itself.
pub fn check_render(template: &ChatTemplate, messages: &[ChatMessage], generation_prompt: bool) {
    let _ = format!("{template:?}");
    match template.render(messages, generation_prompt) {
        Ok(text) => {
            for (bos, eos) in [(false, false), (true, false), (false, true), (true, true)] {
                let stripped = template.strip_added_tokens(&text, bos, eos);
                assert!(text.contains(stripped));
            }
        }
        Err(e) => {
            assert!(
                matches!(e, ChatError::Raised { .. } | ChatError::Render { .. }),
                "{e:?}"
            );
            let _ = (e.to_string(), format!("{e:?}"));
        }
    }
}
