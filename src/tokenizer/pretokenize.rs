//! Pre-tokenizers of byte-level BPE vocabularies: split text into words before merging.
//!
//! llama.cpp describes each pre-tokenizer (`tokenizer.ggml.pre`) as a list of regexes applied one
//! after the other, each refining the split of the one before (`unicode_regex_split` in its
//! `unicode.cpp`). The GPT-2 and Llama-3 regexes need look-ahead (`\s+(?!\S)`), which Rust's
//! `regex` lacks, so, like llama.cpp, they are hand-written scanners here; the simple character
//! class regexes (`\p{N}+`, `[0-9]{3}` ...) are scanners too. The scanners reproduce llama.cpp's,
//! quirks included, since the expected token ids come from it.
//!
//! Every step works on a list of segments (lengths in characters): a step never merges across
//! a segment boundary, and sees the characters beyond a segment's ends as absent.

use super::unicode::{cpt_flags, CptFlags};

/// One splitting regex of a pre-tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SplitStep {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    Gpt2,
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,D}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    /// with `D = max_digits` (3 for Llama 3, 1 for Qwen 2).
    Llama3 { max_digits: usize },
    /// `\p{N}+`: isolates runs of numbers.
    NumberRuns,
    /// `\p{N}`: isolates every number character.
    EachNumber,
    /// `[\p{P}\$\+<=>\^~\|]+`: isolates runs of punctuation and these ASCII symbols (and
    /// `` ` `` too when `backtick`, as Falcon's regex has it).
    PunctuationRuns { backtick: bool },
    /// `[0-9][0-9][0-9]`: isolates groups of three ASCII digits, left to right.
    AsciiDigitTriples,
}

/// What a pre-tokenizer name in `tokenizer.ggml.pre` selects (the flags llama.cpp's
/// `llama_vocab::impl::load` sets beside the regexes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PreTokenizerSpec {
    pub steps: Vec<SplitStep>,
    /// A word that is a whole token is taken as it is, without merges.
    pub ignore_merges: bool,
    /// The default of `tokenizer.ggml.add_bos_token`.
    pub add_bos: bool,
    /// Detokenizing removes the spaces before `?!.,` and some apostrophes.
    pub clean_spaces: bool,
}

/// The names accepted in `tokenizer.ggml.pre`, for error messages.
pub(crate) const SUPPORTED_PRE: &[&str] = &[
    "default",
    "gpt-2",
    "phi-2",
    "gigachat",
    "a.x-4.0",
    "mellum",
    "exaone4",
    "mpt",
    "olmo",
    "jais",
    "trillion",
    "granite-docling",
    "llama3",
    "llama-v3",
    "llama-bpe",
    "falcon3",
    "falcon-h1",
    "pixtral",
    "midm-2.0",
    "lfm2",
    "dbrx",
    "smaug-bpe",
    "starcoder",
    "refact",
    "codeshell",
    "exaone",
    "minerva-7b",
    "mellum2",
    "command-r",
    "smollm",
    "qwen2",
    "deepseek-r1-qwen",
    "megrez",
    "stablelm2",
    "falcon",
];

impl PreTokenizerSpec {
    /// The pre-tokenizer llama.cpp selects for a `tokenizer.ggml.pre` value, if supported.
    pub fn from_name(name: &str) -> Option<Self> {
        use SplitStep::*;
        let gpt2_like = |clean_spaces| PreTokenizerSpec {
            steps: vec![Gpt2],
            ignore_merges: false,
            add_bos: false,
            clean_spaces,
        };
        let spec = match name {
            "default" => PreTokenizerSpec {
                steps: vec![
                    PunctuationRuns { backtick: false },
                    Gpt2,
                    NumberRuns,
                    AsciiDigitTriples,
                ],
                ..gpt2_like(true)
            },
            "gpt-2" | "phi-2" | "gigachat" | "a.x-4.0" | "mellum" | "exaone4" | "mpt" | "olmo"
            | "jais" => gpt2_like(true),
            "trillion" | "granite-docling" => gpt2_like(false),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" => PreTokenizerSpec {
                steps: vec![Llama3 { max_digits: 3 }],
                ignore_merges: true,
                add_bos: true,
                clean_spaces: true,
            },
            "dbrx" | "smaug-bpe" => PreTokenizerSpec {
                steps: vec![Llama3 { max_digits: 3 }],
                ..gpt2_like(true)
            },
            "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => {
                PreTokenizerSpec {
                    steps: vec![EachNumber, Gpt2],
                    ..gpt2_like(true)
                }
            }
            "command-r" | "smollm" => PreTokenizerSpec {
                steps: vec![EachNumber, Gpt2],
                ..gpt2_like(false)
            },
            "qwen2" | "deepseek-r1-qwen" => PreTokenizerSpec {
                steps: vec![Llama3 { max_digits: 1 }],
                ..gpt2_like(false)
            },
            "megrez" | "stablelm2" => PreTokenizerSpec {
                steps: vec![Llama3 { max_digits: 1 }],
                ..gpt2_like(true)
            },
            "falcon" => PreTokenizerSpec {
                steps: vec![PunctuationRuns { backtick: true }, Gpt2, AsciiDigitTriples],
                ..gpt2_like(true)
            },
            _ => return None,
        };
        debug_assert!(SUPPORTED_PRE.contains(&name));
        Some(spec)
    }
}

/// Splits `text` into words by the steps, in order. The words are consecutive slices of
/// `text` that together cover it.
pub(crate) fn split<'t>(text: &'t str, steps: &[SplitStep]) -> Vec<&'t str> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let flags: Vec<CptFlags> = chars.iter().map(|&(_, c)| cpt_flags(c)).collect();
    let cps: Vec<char> = chars.iter().map(|&(_, c)| c).collect();

    let mut segments = vec![chars.len()];
    for step in steps {
        let mut out = Vec::with_capacity(segments.len());
        let mut start = 0;
        for &len in &segments {
            let seg = Segment {
                cps: &cps,
                flags: &flags,
                ini: start,
                end: start + len,
            };
            match *step {
                SplitStep::Gpt2 => seg.split_gpt2(&mut out),
                SplitStep::Llama3 { max_digits } => seg.split_llama3(max_digits, &mut out),
                SplitStep::NumberRuns => seg.isolate_runs(|_, f| f.is_number(), &mut out),
                SplitStep::EachNumber => seg.isolate_each(|f| f.is_number(), &mut out),
                SplitStep::PunctuationRuns { backtick } => seg.isolate_runs(
                    |c, f| {
                        f.is_punctuation()
                            || matches!(c, '$' | '+' | '<' | '=' | '>' | '^' | '~' | '|')
                            || (backtick && c == '`')
                    },
                    &mut out,
                ),
                SplitStep::AsciiDigitTriples => seg.isolate_ascii_digit_triples(&mut out),
            }
            start += len;
        }
        segments = out;
    }

    let mut words = Vec::with_capacity(segments.len());
    let mut start = 0;
    for len in segments {
        let end = start + len;
        let b0 = chars.get(start).map_or(text.len(), |c| c.0);
        let b1 = chars.get(end).map_or(text.len(), |c| c.0);
        words.push(&text[b0..b1]);
        start = end;
    }
    words
}

/// One segment `[ini, end)` of the text's characters, with helpers that read nothing outside it.
struct Segment<'a> {
    cps: &'a [char],
    flags: &'a [CptFlags],
    ini: usize,
    end: usize,
}

impl Segment<'_> {
    /// The character at `pos`, `None` outside the segment.
    fn cpt(&self, pos: usize) -> Option<char> {
        (self.ini <= pos && pos < self.end).then(|| self.cps[pos])
    }

    /// The flags at `pos`, no flags outside the segment.
    fn flags(&self, pos: usize) -> CptFlags {
        if self.ini <= pos && pos < self.end {
            self.flags[pos]
        } else {
            CptFlags::NONE
        }
    }

    /// Length of the run of whitespace starting at `pos`, and the end of its last `\r`/`\n`.
    fn whitespace_run(&self, pos: usize) -> (usize, Option<usize>) {
        let mut n = 0;
        let mut last_newline_end = None;
        while self.flags(pos + n).is_whitespace() {
            if matches!(self.cpt(pos + n), Some('\r' | '\n')) {
                last_newline_end = Some(pos + n + 1);
            }
            n += 1;
        }
        (n, last_newline_end)
    }

    /// A contraction `'s 't 'm 'd 're 've 'll` at `pos` (ASCII case-folded if `any_case`):
    /// its length in characters.
    fn contraction(&self, pos: usize, any_case: bool) -> Option<usize> {
        if self.cpt(pos) != Some('\'') {
            return None;
        }
        let fold = |c: Option<char>| c.map(|c| if any_case { c.to_ascii_lowercase() } else { c });
        let next = fold(self.cpt(pos + 1))?;
        if matches!(next, 's' | 't' | 'm' | 'd') {
            return Some(2);
        }
        let next2 = fold(self.cpt(pos + 2))?;
        matches!((next, next2), ('r', 'e') | ('v', 'e') | ('l', 'l')).then_some(3)
    }

    /// GPT-2's regex, scanned as llama.cpp's `unicode_regex_split_custom_gpt2` does.
    fn split_gpt2(&self, out: &mut Vec<usize>) {
        let mut words = Words::new(self.ini, out);
        let mut pos = self.ini;
        while pos < self.end {
            let cpt = self.cpt(pos);
            // 's|'t|'re|'ve|'m|'ll|'d
            if let Some(n) = self.contraction(pos, false) {
                pos += n;
                words.end_at(pos);
                continue;
            }
            // An optional leading space, then a run of one class.
            let space = usize::from(cpt == Some(' '));
            let first = self.flags(pos + space);
            let runs: [fn(CptFlags) -> bool; 3] = [
                // ?\p{L}+
                CptFlags::is_letter,
                // ?\p{N}+
                CptFlags::is_number,
                // ?[^\s\p{L}\p{N}]+ (the flag test excludes the end of the segment)
                |f| !(f.is_whitespace() || f.is_letter() || f.is_number()) && f.any(),
            ];
            if let Some(in_run) = runs.into_iter().find(|in_run| in_run(first)) {
                pos += space;
                while in_run(self.flags(pos)) {
                    pos += 1;
                }
                words.end_at(pos);
                continue;
            }
            let (n_ws, _) = self.whitespace_run(pos);
            if n_ws > 1 && self.cpt(pos + n_ws).is_some() {
                // \s+(?!\S): leave the last space to the word that follows.
                pos += n_ws - 1;
            } else if n_ws > 0 {
                // \s+
                pos += n_ws;
            } else {
                // No match: the character stands alone.
                pos += 1;
            }
            words.end_at(pos);
        }
    }

    /// Llama 3's regex (`max_digits` = 3) or Qwen 2's (1), scanned as llama.cpp's
    /// `unicode_regex_split_custom_llama3` / `_qwen2` do.
    fn split_llama3(&self, max_digits: usize, out: &mut Vec<usize>) {
        let mut words = Words::new(self.ini, out);
        let mut pos = self.ini;
        while pos < self.end {
            let cpt = self.cpt(pos);
            let flags = self.flags(pos);
            // (?i:'s|'t|'re|'ve|'m|'ll|'d)
            if let Some(n) = self.contraction(pos, true) {
                pos += n;
                words.end_at(pos);
                continue;
            }
            // [^\r\n\p{L}\p{N}]?\p{L}+
            if !matches!(cpt, Some('\r' | '\n'))
                && !flags.is_number()
                && (flags.is_letter() || self.flags(pos + 1).is_letter())
            {
                pos += 1;
                while self.flags(pos).is_letter() {
                    pos += 1;
                }
                words.end_at(pos);
                continue;
            }
            // \p{N}{1,max_digits}
            if flags.is_number() {
                let mut run_start = pos;
                while self.flags(pos).is_number() {
                    pos += 1;
                    if pos - run_start >= max_digits {
                        words.end_at(pos);
                        run_start = pos;
                    }
                }
                words.end_at(pos);
                continue;
            }
            // ?[^\s\p{L}\p{N}]+[\r\n]*  (llama.cpp tests the flags of `pos` itself for "any",
            // so a lone space at the end of a segment takes this branch; the word is the same)
            let not_wln = |f: CptFlags| !(f.is_whitespace() || f.is_letter() || f.is_number());
            let space = usize::from(cpt == Some(' '));
            if not_wln(self.flags(pos + space)) && flags.any() {
                pos += space;
                while not_wln(self.flags(pos)) && self.flags(pos).any() {
                    pos += 1;
                }
                while matches!(self.cpt(pos), Some('\r' | '\n')) {
                    pos += 1;
                }
                words.end_at(pos);
                continue;
            }
            let (n_ws, last_newline_end) = self.whitespace_run(pos);
            if let Some(end) = last_newline_end {
                // \s*[\r\n]+
                pos = end;
            } else if n_ws > 1 && self.cpt(pos + n_ws).is_some() {
                // \s+(?!\S)
                pos += n_ws - 1;
            } else if n_ws > 0 {
                // \s+
                pos += n_ws;
            } else {
                pos += 1;
            }
            words.end_at(pos);
        }
    }

    /// `[class]+`: maximal runs of the class become words, and so do the gaps between them.
    fn isolate_runs(&self, in_class: impl Fn(char, CptFlags) -> bool, out: &mut Vec<usize>) {
        let mut words = Words::new(self.ini, out);
        let mut pos = self.ini;
        while pos < self.end {
            let inside = in_class(self.cps[pos], self.flags[pos]);
            while pos < self.end && in_class(self.cps[pos], self.flags[pos]) == inside {
                pos += 1;
            }
            words.end_at(pos);
        }
    }

    /// `[class]`: every character of the class is a word; the gaps between them are words.
    fn isolate_each(&self, in_class: impl Fn(CptFlags) -> bool, out: &mut Vec<usize>) {
        let mut words = Words::new(self.ini, out);
        for pos in self.ini..self.end {
            if in_class(self.flags[pos]) {
                words.end_at(pos);
                words.end_at(pos + 1);
            }
        }
        words.end_at(self.end);
    }

    /// `[0-9][0-9][0-9]`, leftmost matches without overlap.
    fn isolate_ascii_digit_triples(&self, out: &mut Vec<usize>) {
        let mut words = Words::new(self.ini, out);
        let mut pos = self.ini;
        while pos + 3 <= self.end {
            if self.cps[pos..pos + 3].iter().all(char::is_ascii_digit) {
                words.end_at(pos);
                words.end_at(pos + 3);
                pos += 3;
            } else {
                pos += 1;
            }
        }
        words.end_at(self.end);
    }
}

/// Collects word lengths: each `end_at` closes the word that started where the last one ended
/// (empty words are dropped).
struct Words<'o> {
    prev_end: usize,
    out: &'o mut Vec<usize>,
}

impl<'o> Words<'o> {
    fn new(start: usize, out: &'o mut Vec<usize>) -> Self {
        Words {
            prev_end: start,
            out,
        }
    }

    fn end_at(&mut self, end: usize) {
        if end > self.prev_end {
            self.out.push(end - self.prev_end);
        }
        self.prev_end = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpt2(text: &str) -> Vec<&str> {
        split(text, &[SplitStep::Gpt2])
    }

    fn llama3(text: &str) -> Vec<&str> {
        split(text, &[SplitStep::Llama3 { max_digits: 3 }])
    }

    // Expected splits follow from the regexes as written in llama.cpp's llama-vocab.cpp
    // (applied by hand).
    #[test]
    fn gpt2_splits() {
        assert_eq!(gpt2("Hello world"), ["Hello", " world"]);
        assert_eq!(gpt2("I'm here"), ["I", "'m", " here"]);
        assert_eq!(gpt2("a   b"), ["a", "  ", " b"]);
        assert_eq!(gpt2("x  "), ["x", "  "]);
        assert_eq!(gpt2("3.14!!"), ["3", ".", "14", "!!"]);
        assert_eq!(gpt2(" \n"), [" \n"]);
        assert_eq!(gpt2(""), Vec::<&str>::new());
    }

    #[test]
    fn llama3_splits() {
        assert_eq!(llama3("Hello world"), ["Hello", " world"]);
        assert_eq!(llama3("I'M 12345"), ["I", "'M", " ", "123", "45"]);
        assert_eq!(llama3("a\n\n b"), ["a", "\n\n", " b"]);
        assert_eq!(llama3("x  \n  y"), ["x", "  \n", " ", " y"]);
        assert_eq!(llama3("(ok)"), ["(ok", ")"]);
        assert_eq!(llama3("..\n\nz"), ["..\n\n", "z"]);
    }

    #[test]
    fn every_listed_name_is_supported() {
        for name in SUPPORTED_PRE {
            assert!(PreTokenizerSpec::from_name(name).is_some(), "{name}");
        }
        assert!(PreTokenizerSpec::from_name("deepseek-coder").is_none());
    }

    #[test]
    fn class_steps() {
        assert_eq!(
            split("ab12c3", &[SplitStep::EachNumber]),
            ["ab", "1", "2", "c", "3"]
        );
        assert_eq!(
            split("ab12c3", &[SplitStep::NumberRuns]),
            ["ab", "12", "c", "3"]
        );
        assert_eq!(
            split("1234567", &[SplitStep::AsciiDigitTriples]),
            ["123", "456", "7"]
        );
        assert_eq!(
            split("a+=b.`", &[SplitStep::PunctuationRuns { backtick: false }]),
            ["a", "+=", "b", ".", "`"]
        );
        assert_eq!(
            split("a+=b.`", &[SplitStep::PunctuationRuns { backtick: true }]),
            ["a", "+=", "b", ".`"]
        );
    }
}
