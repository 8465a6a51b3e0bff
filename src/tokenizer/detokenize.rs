//! From ids back to text: the bytes of each token (llama.cpp's `token_to_piece`), whole
//! sequences (`llama_detokenize`, with its space clean-up), and a streaming [`Detokenizer`]
//! that hands out only complete UTF-8.

use super::unicode::char_to_byte;
use super::vocab::{TokenAttr, Vocab};
use super::{Model, Tokenizer};

/// The bytes a token stands for when special tokens are rendered (the piece llama.cpp caches).
pub(crate) fn piece_bytes(vocab: &Vocab, model: &Model, id: u32) -> Vec<u8> {
    let attr = vocab.attr(id);
    let Some(text) = vocab.text(id) else {
        return Vec::new();
    };
    if attr.intersects(
        TokenAttr::UNKNOWN
            .union(TokenAttr::CONTROL)
            .union(TokenAttr::USER_DEFINED),
    ) {
        return text.as_bytes().to_vec();
    }
    if attr.is_normal() {
        return match model {
            Model::Spm => text.replace('\u{2581}', " ").into_bytes(),
            // SentencePiece-style BPE (Gemma 4): `▁` for spaces, the rest as it is.
            Model::Bpe { pre, .. } if pre.escape_whitespaces => {
                text.replace('\u{2581}', " ").into_bytes()
            }
            Model::Bpe { .. } => byte_decode(text),
        };
    }
    if attr.is_byte() {
        return vec![byte_of_byte_token(text)];
    }
    // Unused and undefined tokens have no text.
    Vec::new()
}

/// The byte of a `<0xXX>` token, read as llama.cpp reads it (`strtol` of the two characters
/// after `<0x`: leading hex digits, 0 if none).
fn byte_of_byte_token(text: &str) -> u8 {
    let hex = text.get(3..).unwrap_or("");
    let digits: String = hex
        .chars()
        .take(2)
        .take_while(char::is_ascii_hexdigit)
        .collect();
    u8::from_str_radix(&digits, 16).unwrap_or(0)
}

/// Undoes GPT-2's byte-to-character encoding; a character outside the 256 is written as
/// `[UNK_BYTE_0x<hex>` + the whole token text + `]`, as llama.cpp's `llama_decode_text` does.
fn byte_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                let mut utf8 = [0u8; 4];
                for b in c.encode_utf8(&mut utf8).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
    out
}

/// ASCII whitespace as C's `isspace` sees it (including vertical tab).
pub(crate) fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t'..=b'\r')
}

impl Tokenizer {
    /// The bytes of one token, as llama.cpp's `llama_token_to_piece(lstrip = 0)`: with
    /// `special = false`, control and unknown tokens give nothing. Ids outside the vocabulary
    /// give nothing.
    pub fn token_to_piece(&self, id: u32, special: bool) -> Vec<u8> {
        self.piece(id, special).to_vec()
    }

    fn piece(&self, id: u32, special: bool) -> &[u8] {
        if !special
            && self
                .vocab
                .attr(id)
                .intersects(TokenAttr::UNKNOWN.union(TokenAttr::CONTROL))
        {
            return &[];
        }
        self.pieces.get(id as usize).unwrap_or(&[])
    }

    /// Ids to bytes, as llama.cpp's `llama_detokenize`: `remove_special` drops a leading BOS
    /// and a trailing EOS where the model adds them; `unparse_special` renders control tokens.
    /// The space that SentencePiece vocabularies put before the first word is removed, and
    /// vocabularies that ask for it get llama.cpp's clean-up of spaces before punctuation.
    pub fn detokenize(&self, ids: &[u32], remove_special: bool, unparse_special: bool) -> Vec<u8> {
        let mut ids = ids;
        let mut remove_space = self.add_space_prefix;
        if remove_special
            && self.add_bos
            && !ids.is_empty()
            && ids.first().copied() == self.vocab.special.bos
        {
            remove_space = false;
            ids = &ids[1..];
        }
        if remove_special
            && self.add_eos
            && !ids.is_empty()
            && ids.last().copied() == self.vocab.special.eos
        {
            ids = &ids[..ids.len() - 1];
        }

        let mut text = Vec::new();
        for &id in ids {
            let mut piece = self.piece(id, unparse_special);
            if remove_space {
                if let Some(rest) = piece.strip_prefix(b" ") {
                    piece = rest;
                }
            }
            remove_space = false;
            text.extend_from_slice(piece);
        }

        if self.clean_spaces {
            clean_up_spaces(&mut text);
        }
        text
    }

    /// Ids to text, as llama.cpp's `common_detokenize(tokens, special = true)`: control tokens
    /// are rendered; bytes that are not valid UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        String::from_utf8_lossy(&self.detokenize(ids, false, true)).into_owned()
    }
}

/// llama.cpp's three clean-up passes (`clean_up_tokenization_spaces`), done in place over the
/// bytes exactly as it does them:
/// 1. drop a space before `?`, `!`, `.`, `,`;
/// 2. `" ' "` becomes `"'"` (both spaces dropped);
/// 3. drop the space before `'s`, `'m`, `'re`, `'ve`.
fn clean_up_spaces(text: &mut Vec<u8>) {
    // Pass 1.
    let n = text.len();
    let mut total = usize::from(n > 0);
    for i in 1..n {
        let x = text[i];
        if text[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            total -= 1;
        }
        text[total] = x;
        total += 1;
    }
    text.truncate(total);

    // Pass 2: the byte after a lone apostrophe is zeroed and skipped, as in llama.cpp.
    let n = text.len();
    let mut total = usize::from(n > 0);
    let mut i = 1;
    while i < n {
        let x = text[i];
        if x == b'\'' && i + 1 < n && text[i - 1] == b' ' && text[i + 1] == b' ' {
            total -= 1;
            i += 1;
            text[i] = 0;
        }
        text[total] = x;
        total += 1;
        i += 1;
    }
    text.truncate(total);

    // Pass 3.
    let n = text.len();
    let mut total = usize::from(n > 0);
    for i in 1..n {
        let x = text[i];
        if text[i - 1] == b' ' && x == b'\'' && i + 1 < n {
            let x1 = text[i + 1];
            let x2 = text.get(i + 2).copied().filter(|_| i + 2 < n);
            let drop_space = matches!(x1, b's' | b'm')
                || matches!((x1, x2), (b'r', Some(b'e')) | (b'v', Some(b'e')));
            if drop_space {
                total -= 1;
            }
        }
        text[total] = x;
        total += 1;
    }
    text.truncate(total);
}

/// Streaming detokenization: push ids as they are generated, get back the text that became
/// complete. Bytes of a UTF-8 sequence split across tokens (byte-fallback tokens, byte-level
/// BPE pieces) are held back until the sequence is complete; bytes that can never become valid
/// UTF-8 come out as U+FFFD.
///
/// Pieces are llama.cpp's `token_to_piece` (no leading-space removal, no space clean-up), as
/// its streaming front ends print them.
#[derive(Debug, Clone, Default)]
pub struct Detokenizer {
    special: bool,
    pending: Vec<u8>,
}

impl Detokenizer {
    /// A detokenizer that renders control tokens' text when `special` is true.
    pub fn new(special: bool) -> Self {
        Detokenizer {
            special,
            pending: Vec::new(),
        }
    }

    /// Adds one token; returns the text that is now complete (possibly empty).
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> String {
        self.pending
            .extend_from_slice(tokenizer.piece(id, self.special));
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // The prefix was just checked to be valid UTF-8.
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        // An incomplete sequence at the end: wait for more bytes.
                        None => {
                            self.pending.drain(..valid);
                            break;
                        }
                        // Bytes that no continuation can repair.
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
        out
    }

    /// Bytes held back for an incomplete sequence.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// Ends the stream: whatever is held back, with U+FFFD for incomplete sequences.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(s: &str) -> String {
        let mut v = s.as_bytes().to_vec();
        clean_up_spaces(&mut v);
        String::from_utf8(v).unwrap()
    }

    // Expected values follow llama.cpp's `llama_vocab::impl::detokenize` clean-up passes,
    // applied by hand.
    #[test]
    fn clean_up_passes() {
        assert_eq!(clean("Hello , world !"), "Hello, world!");
        assert_eq!(clean("a ' b"), "a'b");
        assert_eq!(
            clean("it 's I 'm we 're they 've"),
            "it's I'm we're they've"
        );
        assert_eq!(clean("don 't we 'll"), "don 't we 'll");
        assert_eq!(clean(""), "");
        assert_eq!(clean(" ."), ".");
    }

    #[test]
    fn byte_token_text() {
        assert_eq!(byte_of_byte_token("<0x0A>"), 0x0A);
        assert_eq!(byte_of_byte_token("<0xE2>"), 0xE2);
        assert_eq!(byte_of_byte_token("<0x>"), 0);
    }
}
