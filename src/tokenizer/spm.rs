//! SentencePiece-style BPE (`tokenizer.ggml.model = "llama"`), as llama.cpp's
//! `llm_tokenizer_spm` does it.
//!
//! The text (spaces already escaped to U+2581 `▁`) starts as one symbol per character. The
//! adjacent pair whose concatenation is the vocabulary token with the highest score is merged
//! (ties: the leftmost pair), and merging repeats until no adjacent pair forms a token. Symbols
//! that are not tokens fall back to byte tokens `<0xXX>`.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::vocab::Vocab;

/// One symbol of the linked list being merged: a byte range of the text.
#[derive(Debug, Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge of symbols `left` and `left`'s successor `right`.
#[derive(Debug, Clone, Copy)]
struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    /// Byte length of the merged text: a bigram whose symbols changed since is stale.
    len: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Max-heap order: the higher score first, then the leftmost.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// Tokenizes `text` (spaces already escaped) and appends the ids to `out`.
pub(crate) fn tokenize(vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    let n_chars = text.chars().count();
    for (i, (start, c)) in text.char_indices().enumerate() {
        symbols.push(Symbol {
            start,
            len: c.len_utf8(),
            prev: i.checked_sub(1),
            next: (i + 1 < n_chars).then_some(i + 1),
        });
    }
    if symbols.is_empty() {
        return;
    }

    let mut queue = BinaryHeap::new();
    let try_add = |symbols: &[Symbol],
                   queue: &mut BinaryHeap<Bigram>,
                   left: Option<usize>,
                   right: Option<usize>| {
        let (Some(left), Some(right)) = (left, right) else {
            return;
        };
        let (l, r) = (symbols[left], symbols[right]);
        let merged = &text[l.start..r.start + r.len];
        if let Some(id) = vocab.id_of(merged) {
            queue.push(Bigram {
                left,
                right,
                score: vocab.score(id),
                len: merged.len(),
            });
        }
    };

    for i in 1..symbols.len() {
        try_add(&symbols, &mut queue, Some(i - 1), Some(i));
    }

    while let Some(bigram) = queue.pop() {
        let (l, r) = (symbols[bigram.left], symbols[bigram.right]);
        // Skip a pair one of whose symbols was merged away or grew since it was queued.
        if l.len == 0 || r.len == 0 || l.len + r.len != bigram.len {
            continue;
        }
        // Merge the right symbol into the left one and unlink it.
        symbols[bigram.left].len += r.len;
        symbols[bigram.right].len = 0;
        symbols[bigram.left].next = r.next;
        if let Some(next) = r.next {
            symbols[next].prev = Some(bigram.left);
        }
        try_add(&symbols, &mut queue, l.prev, Some(bigram.left));
        try_add(&symbols, &mut queue, Some(bigram.left), r.next);
    }

    // Every merged symbol is a token (merges only form tokens); a single character that is not
    // one falls back to its bytes.
    let mut cursor = Some(0);
    while let Some(i) = cursor {
        let sym = symbols[i];
        let piece = &text[sym.start..sym.start + sym.len];
        match vocab.id_of(piece) {
            Some(id) => out.push(id),
            None => out.extend(piece.bytes().filter_map(|b| vocab.byte_token(b))),
        }
        cursor = sym.next;
    }
}
