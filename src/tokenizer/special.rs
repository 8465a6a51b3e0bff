//! Splitting special tokens out of text before tokenization (llama.cpp's
//! `tokenizer_st_partition`).
//!
//! Special tokens are taken longest first; each one is cut out of every text fragment that is
//! left, left to right. Control and unknown tokens are only cut out when `parse_special` is
//! set; user-defined tokens always are.

use super::detokenize::is_c_space;
use super::vocab::{TokenAttr, Vocab};

/// A piece of the input: text still to tokenize, or a special token already recognized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fragment<'t> {
    Text(&'t str),
    Token(u32),
}

/// Splits `text` into fragments.
pub(crate) fn partition<'t>(
    vocab: &Vocab,
    text: &'t str,
    parse_special: bool,
) -> Vec<Fragment<'t>> {
    let mut fragments = Vec::new();
    if text.is_empty() {
        return fragments;
    }
    fragments.push(Fragment::Text(text));

    for &id in vocab.special_by_len() {
        let attr = vocab.attr(id);
        if !parse_special && attr.intersects(TokenAttr::CONTROL.union(TokenAttr::UNKNOWN)) {
            continue;
        }
        let Some(needle) = vocab.text(id) else {
            continue;
        };
        // Texts are never empty (empty ones were renamed at load), but an empty needle would
        // match everywhere: skip it rather than loop.
        if needle.is_empty()
            || !fragments
                .iter()
                .any(|f| matches!(f, Fragment::Text(t) if t.contains(needle)))
        {
            continue;
        }
        let mut next = Vec::with_capacity(fragments.len() + 2);
        for fragment in fragments {
            let Fragment::Text(mut rest) = fragment else {
                next.push(fragment);
                continue;
            };
            while let Some(at) = rest.find(needle) {
                let mut left = &rest[..at];
                if attr.intersects(TokenAttr::LSTRIP) {
                    left = left.trim_end_matches(|c: char| c.is_ascii() && is_c_space(c as u8));
                }
                if !left.is_empty() {
                    next.push(Fragment::Text(left));
                }
                next.push(Fragment::Token(id));
                rest = &rest[at + needle.len()..];
                if attr.intersects(TokenAttr::RSTRIP) {
                    rest = rest.trim_start_matches(|c: char| c.is_ascii() && is_c_space(c as u8));
                }
            }
            if !rest.is_empty() {
                next.push(Fragment::Text(rest));
            }
        }
        fragments = next;
    }
    fragments
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::vocab::SpecialTokens;
    use gguf_importer::{Metadata, Value, ValueType};

    /// A vocabulary of the given (text, GGUF token type) pairs.
    fn vocab(tokens: &[(&str, i32)], name: &str) -> Vocab {
        let mut md = Metadata::new();
        let texts = tokens
            .iter()
            .map(|(t, _)| Value::String(t.to_string()))
            .collect();
        let types = tokens.iter().map(|&(_, ty)| Value::I32(ty)).collect();
        md.set(
            "tokenizer.ggml.tokens",
            Value::Array(ValueType::String, texts),
        );
        md.set(
            "tokenizer.ggml.token_type",
            Value::Array(ValueType::I32, types),
        );
        md.set("general.name", Value::String(name.into()));
        let mut v = Vocab::from_gguf(&md, SpecialTokens::default()).expect("vocab");
        v.apply_name_rules(&md);
        v
    }

    // Expected fragments follow llama.cpp's tokenizer_st_partition, applied by hand.
    #[test]
    fn longest_special_first_and_control_only_when_parsing() {
        // Types: 1 normal, 3 control, 4 user-defined.
        let v = vocab(&[("a", 1), ("<|x|>", 3), ("<|x|>y", 3), ("<u>", 4)], "test");
        let frags = partition(&v, "a<|x|>y<|x|>b<u>", true);
        assert_eq!(
            frags,
            [
                Fragment::Text("a"),
                Fragment::Token(2),
                Fragment::Token(1),
                Fragment::Text("b"),
                Fragment::Token(3)
            ]
        );
        // Without parse_special only the user-defined token is split out.
        let frags = partition(&v, "a<|x|>y<|x|>b<u>", false);
        assert_eq!(frags, [Fragment::Text("a<|x|>y<|x|>b"), Fragment::Token(3)]);
        assert!(partition(&v, "", true).is_empty());
    }

    #[test]
    fn phi3_special_tokens_eat_following_whitespace() {
        // llama.cpp marks Phi-3's special tokens RSTRIP, except <s>, <unk>, <|endoftext|>.
        let v = vocab(
            &[
                ("<unk>", 2),
                ("<s>", 3),
                ("</s>", 3),
                ("<|end|>", 3),
                ("x", 1),
            ],
            "Phi-3 mini",
        );
        assert_eq!(
            partition(&v, "x<|end|> \n x", true),
            [Fragment::Text("x"), Fragment::Token(3), Fragment::Text("x")]
        );
        assert_eq!(
            partition(&v, "<s> x", true),
            [Fragment::Token(1), Fragment::Text(" x")]
        );
    }
}
