//! Byte-level BPE (`tokenizer.ggml.model = "gpt2"`), as llama.cpp's `llm_tokenizer_bpe` does it.
//!
//! The pre-tokenizer splits the text into words; each word's bytes are written as GPT-2's
//! printable byte characters; the word starts as one symbol per (byte) character, and the
//! adjacent pair with the lowest merge rank in `tokenizer.ggml.merges` is merged (ties: the
//! leftmost) until no pair has a rank. Each final symbol is looked up in the vocabulary; one that
//! is not a token is written as single-byte tokens where those exist.
//!
//! Gemma 4 (`tokenizer.ggml.model = "gemma4"`) is the same merging over the raw UTF-8 text with
//! spaces written as `▁`, split only at newlines, and `<0xXX>` byte tokens as the fallback.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::pretokenize::{self, PreTokenizerSpec};
use super::table::PairTable;
use super::unicode::byte_encode_into;
use super::vocab::Vocab;

/// The merge table: `(left, right)` -> rank (its line number in `tokenizer.ggml.merges`).
#[derive(Debug, Clone, Default)]
pub(crate) struct MergeRanks {
    pairs: PairTable,
}

impl MergeRanks {
    /// Reads merge lines `"left right"`: the split is at the first space after the first byte
    /// (as llama.cpp splits them); the first line for a pair wins. Lines without such a space
    /// are skipped, and so are lines past `u32::MAX` merges or bytes.
    pub fn from_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Self {
        let mut pairs = PairTable::default();
        for (rank, line) in lines.into_iter().enumerate() {
            let Some(pos) = line.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1) else {
                continue;
            };
            let Ok(rank) = u32::try_from(rank) else {
                break;
            };
            if pairs.insert(&line[..pos], &line[pos + 1..], rank).is_none() {
                break;
            }
        }
        pairs.shrink_to_fit();
        MergeRanks { pairs }
    }

    /// The number of distinct merges.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    fn rank(&self, left: &str, right: &str) -> Option<u32> {
        self.pairs.rank(left, right)
    }
}

#[derive(Debug, Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge; it is stale once its symbols no longer spell `left_len + right_len` bytes
/// as they did when it was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bigram {
    rank: u32,
    left: usize,
    right: usize,
    left_len: usize,
    right_len: usize,
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Max-heap order: the lowest rank first, then the leftmost.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .rank
            .cmp(&self.rank)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// Tokenizes one text fragment (no special tokens in it) and appends the ids to `out`.
pub(crate) fn tokenize(
    vocab: &Vocab,
    merges: &MergeRanks,
    pre: &PreTokenizerSpec,
    text: &str,
    out: &mut Vec<u32>,
) {
    let escaped;
    let text = match pre.escape_whitespaces {
        true => {
            escaped = text.replace(' ', "\u{2581}");
            escaped.as_str()
        }
        false => text,
    };
    let mut word = String::new();
    for raw in pretokenize::split(text, &pre.steps) {
        word.clear();
        match pre.byte_encode {
            true => byte_encode_into(raw.as_bytes(), &mut word),
            false => word.push_str(raw),
        }
        let whole = pre.ignore_merges || (pre.whole_newlines && word.bytes().all(|b| b == b'\n'));
        if whole {
            if let Some(id) = vocab.id_of(&word) {
                out.push(id);
                continue;
            }
        }
        for piece in merge_word(merges, &word) {
            match vocab.id_of(piece) {
                Some(id) => out.push(id),
                // Not a token: each byte of the piece's UTF-8 as a one-byte token, where the
                // vocabulary has one (llama.cpp drops the others). Byte-level words look the
                // byte up as the one-character text (only ASCII bytes can be one), the others as
                // `<0xXX>`.
                None if pre.byte_encode => out.extend(
                    piece
                        .bytes()
                        .filter(u8::is_ascii)
                        .filter_map(|b| vocab.id_of(std::str::from_utf8(&[b]).unwrap_or_default())),
                ),
                None => out.extend(
                    piece
                        .bytes()
                        .filter_map(|b| vocab.id_of(&format!("<0x{b:02X}>"))),
                ),
            }
        }
    }
}

/// Merges a byte-encoded word by rank; returns its final pieces in order.
fn merge_word<'w>(merges: &MergeRanks, word: &'w str) -> Vec<&'w str> {
    let n_chars = word.chars().count();
    let mut symbols: Vec<Symbol> = word
        .char_indices()
        .enumerate()
        .map(|(i, (start, c))| Symbol {
            start,
            len: c.len_utf8(),
            prev: i.checked_sub(1),
            next: (i + 1 < n_chars).then_some(i + 1),
        })
        .collect();

    let text = |s: &Symbol| &word[s.start..s.start + s.len];
    let mut queue = BinaryHeap::new();
    let try_add = |symbols: &[Symbol],
                   queue: &mut BinaryHeap<Bigram>,
                   left: Option<usize>,
                   right: Option<usize>| {
        let (Some(left), Some(right)) = (left, right) else {
            return;
        };
        let (l, r) = (&symbols[left], &symbols[right]);
        if let Some(rank) = merges.rank(text(l), text(r)) {
            queue.push(Bigram {
                rank,
                left,
                right,
                left_len: l.len,
                right_len: r.len,
            });
        }
    };

    for i in 1..symbols.len() {
        try_add(&symbols, &mut queue, Some(i - 1), Some(i));
    }

    while let Some(bigram) = queue.pop() {
        let (l, r) = (symbols[bigram.left], symbols[bigram.right]);
        // Stale: a symbol was merged away, or grew, since the pair was queued. (Symbols only
        // grow to the right, so equal lengths mean equal texts.)
        if l.len == 0 || r.len == 0 || l.len != bigram.left_len || r.len != bigram.right_len {
            continue;
        }
        symbols[bigram.left].len += r.len;
        symbols[bigram.right].len = 0;
        symbols[bigram.left].next = r.next;
        if let Some(next) = r.next {
            symbols[next].prev = Some(bigram.left);
        }
        try_add(&symbols, &mut queue, l.prev, Some(bigram.left));
        try_add(&symbols, &mut queue, Some(bigram.left), r.next);
    }

    symbols.iter().filter(|s| s.len > 0).map(text).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_lines_split_at_first_space_after_first_byte() {
        let m = MergeRanks::from_lines(["a b", "ab c", "  x", "a b", "nospace"]);
        assert_eq!(m.rank("a", "b"), Some(0));
        assert_eq!(m.rank("ab", "c"), Some(1));
        // "  x": the first space at index >= 1 is the second one.
        assert_eq!(m.rank(" ", "x"), Some(2));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn merges_lowest_rank_first() {
        // With "b c" ranked before "a b", "abc" merges b+c first and then finds no "a bc".
        let m = MergeRanks::from_lines(["b c", "a b"]);
        assert_eq!(merge_word(&m, "abc"), ["a", "bc"]);
        let m = MergeRanks::from_lines(["a b", "ab c"]);
        assert_eq!(merge_word(&m, "abc"), ["abc"]);
    }
}
