//! Structured output: `response_format` (a JSON schema, or any JSON object) and Lark grammars,
//! through llguidance (the constrained-decoding library llama.cpp and mistral.rs use). At each
//! step the request's [`Constraint`] masks the tokens its grammar forbids before sampling; once
//! the grammar is complete only end-of-generation tokens are allowed.
//!
//! llguidance sees the vocabulary as each token's bytes (a control token as `0xFF` then its
//! text, toktrie's convention for special tokens, so no grammar text can produce one), built
//! once per server ([`Grammars::new`]); requests' grammars are compiled against it in the HTTP
//! handler, so a grammar that does not compile is a 400 before anything is queued.

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};

use crate::tokenizer::{TokenAttr, Tokenizer};

/// The vocabulary as llguidance sees it.
struct Env {
    trie: TokTrie,
}

impl TokenizerEnv for Env {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    /// Text in the middle of an answer, tokenized by longest match in the vocabulary: our
    /// tokenizer would treat it as the start of a text (SentencePiece's leading space).
    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.trie.greedy_tokenize(s)
    }

    fn tokenize_is_canonical(&self) -> bool {
        false
    }
}

/// Compiles requests' grammars for one vocabulary.
pub struct Grammars {
    factory: ParserFactory,
}

impl Grammars {
    /// The vocabulary of `tokenizer` for llguidance (the end-of-generation tokens as its EOS set).
    pub fn new(tokenizer: &Tokenizer) -> Result<Grammars, String> {
        let n = tokenizer.vocab_size();
        let words: Vec<Vec<u8>> = (0..n as u32)
            .map(|id| {
                let attr = tokenizer.token_attr(id);
                let piece = tokenizer.token_to_piece(id, false);
                if attr.intersects(TokenAttr::CONTROL) || piece.is_empty() {
                    let mut w = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                    w.extend_from_slice(tokenizer.token_text(id).unwrap_or("").as_bytes());
                    w
                } else {
                    piece
                }
            })
            .collect();
        let eog = tokenizer.eog_ids();
        let eos = tokenizer
            .eos_id()
            .or_else(|| eog.first().copied())
            .ok_or("the vocabulary has no end-of-generation token")?;
        let info = TokRxInfo::new(n as u32, eos);
        let mut trie = TokTrie::from(&info, &words);
        if !eog.is_empty() {
            trie = trie.with_eos_tokens(&eog);
        }
        let env: TokEnv = Arc::new(Env { trie });
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| e.to_string())?;
        factory.quiet();
        Ok(Grammars { factory })
    }

    /// A constraint for `grammar`, or why it does not compile.
    pub fn constraint(&self, grammar: TopLevelGrammar) -> Result<Constraint, String> {
        let parser = self
            .factory
            .create_parser(grammar)
            .map_err(|e| e.to_string())?;
        let matcher = Matcher::new(Ok(parser));
        match matcher.get_error() {
            Some(e) => Err(e),
            None => Ok(Constraint { matcher }),
        }
    }
}

/// One request's grammar state.
pub struct Constraint {
    matcher: Matcher,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Constraint")
    }
}

impl Constraint {
    /// Sets the logits of the tokens the grammar forbids next to -inf (after the grammar is
    /// complete, all but the end-of-generation tokens).
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<(), String> {
        let allowed = self
            .matcher
            .compute_mask_or_eos()
            .map_err(|e| e.to_string())?;
        for (id, l) in logits.iter_mut().enumerate() {
            if !allowed.is_allowed(id as TokenId) {
                *l = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    /// Advances the grammar past `token` (a token [`Constraint::mask`] allowed).
    pub fn commit(&mut self, token: u32) -> Result<(), String> {
        if self.matcher.is_stopped() {
            return Ok(()); // complete: only end-of-generation tokens were allowed
        }
        self.matcher.consume_token(token).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first token of a JSON object is `{` (stories260K's byte token `<0x7B>`): not the
    /// SentencePiece space our tokenizer puts before a text.
    #[test]
    fn a_json_object_begins_with_a_brace() {
        let file = crate::cli::open_model(None).unwrap();
        let tokenizer = Tokenizer::from_gguf(file.metadata()).unwrap();
        let grammars = Grammars::new(&tokenizer).unwrap();
        let schema = serde_json::json!({"type": "object"});
        let mut c = grammars
            .constraint(TopLevelGrammar::from_json_schema(schema))
            .unwrap();
        let mut logits = vec![0.0f32; tokenizer.vocab_size()];
        c.mask(&mut logits).unwrap();
        let allowed: Vec<Vec<u8>> = (0..logits.len() as u32)
            .filter(|&id| logits[id as usize].is_finite())
            .map(|id| tokenizer.token_to_piece(id, false))
            .collect();
        assert_eq!(allowed, vec![b"{".to_vec()]);
        let brace = tokenizer.token_id("<0x7B>").unwrap();
        c.commit(brace).unwrap();
        assert!(c.commit(brace).is_err(), "a second brace is not JSON");
    }
}
