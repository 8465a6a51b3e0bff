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
//!
//! The regexes llama.cpp has no scanner for (DeepSeek's) it runs through `std::regex` on a
//! transformed text: non-ASCII whitespace becomes U+000B, so that `\s` is exactly the
//! White_Space flag and no such character is in a literal class like `[　-。]`; where a regex
//! names a category (`\p{L}`), every non-ASCII character becomes one byte standing for its
//! category, so `\p{L}` is exactly the letter flag. The scanners here test the same flags.

use super::unicode::{cpt_flags, CptFlags};

/// One splitting regex of a pre-tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SplitStep {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    Gpt2,
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,D}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    /// with `D = max_digits` (3 for Llama 3, 1 for Qwen 2). With `marks` (Qwen 3.5), letter runs
    /// take combining marks too: `[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+` and `?[^\s\p{L}\p{M}\p{N}]+`.
    Llama3 { max_digits: usize, marks: bool },
    /// `[^\n]+|[\n]+`: runs of newlines and runs of everything else (Gemma 4).
    Newlines,
    /// `[class]`: isolates every character of the class.
    Each(CharClass),
    /// `[class]+`: isolates runs of the class.
    Runs(CharClass),
    /// `\s?[class]+`: isolates runs of the class, each with the one whitespace before it.
    SpacedRuns(CharClass),
    /// `\s+$`: isolates the whitespace at the end of a segment.
    TrailingWhitespace,
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

/// A character class of the regex-run steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CharClass {
    /// `[\r\n]`
    CrLf,
    /// `\p{L}`
    Letter,
    /// `\p{P}`
    Punctuation,
    /// DeepSeek LLM's letters: the literal class of [`DEEPSEEK_LETTERS`].
    DeepseekLetters,
    /// DeepSeek LLM's punctuation: the literal class of [`DEEPSEEK_PUNCTUATION`].
    DeepseekPunctuation,
    /// DeepSeek's CJK ideographs and Hangul: the literal class of [`DEEPSEEK_CJK`].
    DeepseekCjk,
}

/// The literal classes of llama.cpp's DeepSeek regexes (`llama-vocab.cpp`), range by range, with
/// the characters as code points: several of them (U+1FBE, U+2126, U+212A ...) would turn into
/// others under Unicode normalization, which editors may apply to literal text.
///
/// `[A-Za-zµÀ-ÖØ-öø-ƺ...𞤀-𞥃]`, DeepSeek LLM's letters.
const DEEPSEEK_LETTERS: &[(char, char)] = &[
    ('A', 'Z'),
    ('a', 'z'),
    ('\u{b5}', '\u{b5}'),
    ('\u{c0}', '\u{d6}'),
    ('\u{d8}', '\u{f6}'),
    ('\u{f8}', '\u{1ba}'),
    ('\u{1bc}', '\u{1bf}'),
    ('\u{1c4}', '\u{293}'),
    ('\u{295}', '\u{2af}'),
    ('\u{370}', '\u{373}'),
    ('\u{376}', '\u{376}'),
    ('\u{377}', '\u{377}'),
    ('\u{37b}', '\u{37d}'),
    ('\u{37f}', '\u{37f}'),
    ('\u{386}', '\u{386}'),
    ('\u{388}', '\u{38a}'),
    ('\u{38c}', '\u{38c}'),
    ('\u{38e}', '\u{3a1}'),
    ('\u{3a3}', '\u{3f5}'),
    ('\u{3f7}', '\u{481}'),
    ('\u{48a}', '\u{52f}'),
    ('\u{531}', '\u{556}'),
    ('\u{10a0}', '\u{10c5}'),
    ('\u{13a0}', '\u{13f5}'),
    ('\u{13f8}', '\u{13fd}'),
    ('\u{1c90}', '\u{1cba}'),
    ('\u{1cbd}', '\u{1cbf}'),
    ('\u{1d00}', '\u{1d2b}'),
    ('\u{1d6b}', '\u{1d77}'),
    ('\u{1d79}', '\u{1d9a}'),
    ('\u{1e00}', '\u{1f15}'),
    ('\u{1f18}', '\u{1f1d}'),
    ('\u{1f20}', '\u{1f45}'),
    ('\u{1f48}', '\u{1f4d}'),
    ('\u{1f50}', '\u{1f57}'),
    ('\u{1f59}', '\u{1f59}'),
    ('\u{1f5b}', '\u{1f5b}'),
    ('\u{1f5d}', '\u{1f5d}'),
    ('\u{1f5f}', '\u{1f7d}'),
    ('\u{1f80}', '\u{1fb4}'),
    ('\u{1fb6}', '\u{1fbc}'),
    ('\u{1fbe}', '\u{1fbe}'),
    ('\u{1fc2}', '\u{1fc4}'),
    ('\u{1fc6}', '\u{1fcc}'),
    ('\u{1fd0}', '\u{1fd3}'),
    ('\u{1fd6}', '\u{1fdb}'),
    ('\u{1fe0}', '\u{1fec}'),
    ('\u{1ff2}', '\u{1ff4}'),
    ('\u{1ff6}', '\u{1ffc}'),
    ('\u{2102}', '\u{2102}'),
    ('\u{2107}', '\u{2107}'),
    ('\u{210a}', '\u{2113}'),
    ('\u{2115}', '\u{2115}'),
    ('\u{2119}', '\u{211d}'),
    ('\u{2124}', '\u{2124}'),
    ('\u{2126}', '\u{2126}'),
    ('\u{2128}', '\u{2128}'),
    ('\u{212a}', '\u{212d}'),
    ('\u{212f}', '\u{2134}'),
    ('\u{2139}', '\u{2139}'),
    ('\u{213c}', '\u{213f}'),
    ('\u{2145}', '\u{2149}'),
    ('\u{214e}', '\u{214e}'),
    ('\u{2183}', '\u{2183}'),
    ('\u{2184}', '\u{2184}'),
    ('\u{2c00}', '\u{2c7b}'),
    ('\u{2c7e}', '\u{2ce4}'),
    ('\u{2ceb}', '\u{2cee}'),
    ('\u{2cf2}', '\u{2cf2}'),
    ('\u{2cf3}', '\u{2cf3}'),
    ('\u{a640}', '\u{a66d}'),
    ('\u{a680}', '\u{a69b}'),
    ('\u{a722}', '\u{a76f}'),
    ('\u{a771}', '\u{a787}'),
    ('\u{a78b}', '\u{a78e}'),
    ('\u{ab70}', '\u{abbf}'),
    ('\u{fb00}', '\u{fb06}'),
    ('\u{fb13}', '\u{fb17}'),
    ('\u{ff21}', '\u{ff3a}'),
    ('\u{ff41}', '\u{ff5a}'),
    ('\u{10400}', '\u{1044f}'),
    ('\u{104b0}', '\u{104d3}'),
    ('\u{104d8}', '\u{104fb}'),
    ('\u{10c80}', '\u{10cb2}'),
    ('\u{10cc0}', '\u{10cf2}'),
    ('\u{118a0}', '\u{118df}'),
    ('\u{1e900}', '\u{1e943}'),
];
/// `[!-/:-~！-／：-～‘-‟　-。]`, DeepSeek LLM's punctuation (and ASCII letters: `:-~` holds them).
const DEEPSEEK_PUNCTUATION: &[(char, char)] = &[
    ('!', '/'),
    (':', '~'),
    ('\u{ff01}', '\u{ff0f}'),
    ('\u{ff1a}', '\u{ff5e}'),
    ('\u{2018}', '\u{201f}'),
    ('\u{3000}', '\u{3002}'),
];
/// `[一-龥ࠀ-一가-퟿]`, DeepSeek's CJK ideographs and Hangul (U+0800..U+4E00 as written).
const DEEPSEEK_CJK: &[(char, char)] = &[
    ('\u{4e00}', '\u{9fa5}'),
    ('\u{800}', '\u{4e00}'),
    ('\u{ac00}', '\u{d7ff}'),
];

fn in_ranges(ranges: &[(char, char)], c: char) -> bool {
    ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi)
}

impl CharClass {
    /// Whether `c` (with flags `f`) is in the class, as llama.cpp's regex sees it: a non-ASCII
    /// whitespace character is in none of the literal classes (it reaches the regex as U+000B).
    fn contains(self, c: char, f: CptFlags) -> bool {
        let literal = |ranges: &[(char, char)]| {
            !(c as u32 > 0x7F && f.is_whitespace()) && in_ranges(ranges, c)
        };
        match self {
            CharClass::CrLf => matches!(c, '\r' | '\n'),
            CharClass::Letter => f.is_letter(),
            CharClass::Punctuation => f.is_punctuation(),
            CharClass::DeepseekLetters => literal(DEEPSEEK_LETTERS),
            CharClass::DeepseekPunctuation => literal(DEEPSEEK_PUNCTUATION),
            CharClass::DeepseekCjk => literal(DEEPSEEK_CJK),
        }
    }
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
    /// Words are merged as GPT-2's byte characters (false: as their UTF-8 text, with `<0xXX>`
    /// byte tokens for what no token covers: Gemma 4's SentencePiece-style BPE).
    pub byte_encode: bool,
    /// Spaces are written as `▁` (U+2581) before splitting, and `▁` decodes to a space.
    pub escape_whitespaces: bool,
    /// A word of newlines only that is a token is taken whole (Gemma 4).
    pub whole_newlines: bool,
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
    "kormo",
    "f2llmv2",
    "megrez",
    "stablelm2",
    "hunyuan",
    "solar-open",
    "grok-2",
    "qwen35",
    "falcon",
    "deepseek-llm",
    "deepseek-coder",
    "gemma4",
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
            byte_encode: true,
            escape_whitespaces: false,
            whole_newlines: false,
        };
        let llama3 = Llama3 {
            max_digits: 3,
            marks: false,
        };
        let qwen2 = Llama3 {
            max_digits: 1,
            marks: false,
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
                steps: vec![llama3],
                ignore_merges: true,
                add_bos: true,
                ..gpt2_like(true)
            },
            "dbrx" | "smaug-bpe" => PreTokenizerSpec {
                steps: vec![llama3],
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
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "hunyuan" | "solar-open"
            | "grok-2" => PreTokenizerSpec {
                steps: vec![qwen2],
                ..gpt2_like(false)
            },
            "megrez" | "stablelm2" => PreTokenizerSpec {
                steps: vec![qwen2],
                ..gpt2_like(true)
            },
            "qwen35" => PreTokenizerSpec {
                steps: vec![Llama3 {
                    max_digits: 1,
                    marks: true,
                }],
                ..gpt2_like(false)
            },
            "falcon" => PreTokenizerSpec {
                steps: vec![PunctuationRuns { backtick: true }, Gpt2, AsciiDigitTriples],
                ..gpt2_like(true)
            },
            "deepseek-llm" => PreTokenizerSpec {
                steps: vec![
                    Each(CharClass::CrLf),
                    SpacedRuns(CharClass::DeepseekLetters),
                    SpacedRuns(CharClass::DeepseekPunctuation),
                    TrailingWhitespace,
                    Runs(CharClass::DeepseekCjk),
                    NumberRuns,
                ],
                ..gpt2_like(false)
            },
            "deepseek-coder" => PreTokenizerSpec {
                steps: vec![
                    Each(CharClass::CrLf),
                    SpacedRuns(CharClass::Letter),
                    SpacedRuns(CharClass::Punctuation),
                    Runs(CharClass::DeepseekCjk),
                    EachNumber,
                ],
                ..gpt2_like(false)
            },
            // SentencePiece-style BPE over the raw text (`tokenizer.ggml.model = "gemma4"`
            // always selects it).
            "gemma4" => PreTokenizerSpec {
                steps: vec![Newlines],
                add_bos: true,
                byte_encode: false,
                escape_whitespaces: true,
                whole_newlines: true,
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
                SplitStep::Llama3 { max_digits, marks } => {
                    seg.split_llama3(max_digits, marks, &mut out)
                }
                SplitStep::Newlines => seg.isolate_runs(|c, _| c == '\n', &mut out),
                SplitStep::Each(class) => seg.isolate_each(|c, f| class.contains(c, f), &mut out),
                SplitStep::Runs(class) => seg.isolate_runs(|c, f| class.contains(c, f), &mut out),
                SplitStep::SpacedRuns(class) => seg.isolate_spaced_runs(class, &mut out),
                SplitStep::TrailingWhitespace => seg.isolate_trailing_whitespace(&mut out),
                SplitStep::NumberRuns => seg.isolate_runs(|_, f| f.is_number(), &mut out),
                SplitStep::EachNumber => seg.isolate_each(|_, f| f.is_number(), &mut out),
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

    /// Llama 3's regex (`max_digits` = 3) or Qwen 2's (1), or with `marks` Qwen 3.5's, scanned as
    /// llama.cpp's `unicode_regex_split_custom_llama3` / `_qwen2` / `_qwen35` do.
    fn split_llama3(&self, max_digits: usize, marks: bool, out: &mut Vec<usize>) {
        // \p{L}, or [\p{L}\p{M}] with marks.
        let letter = |f: CptFlags| f.is_letter() || (marks && f.is_mark());
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
                && (letter(flags) || letter(self.flags(pos + 1)))
            {
                pos += 1;
                while letter(self.flags(pos)) {
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
            let not_wln = |f: CptFlags| !(f.is_whitespace() || letter(f) || f.is_number());
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
    fn isolate_each(&self, in_class: impl Fn(char, CptFlags) -> bool, out: &mut Vec<usize>) {
        let mut words = Words::new(self.ini, out);
        for pos in self.ini..self.end {
            if in_class(self.cps[pos], self.flags[pos]) {
                words.end_at(pos);
                words.end_at(pos + 1);
            }
        }
        words.end_at(self.end);
    }

    /// `\s?[class]+`, leftmost matches without overlap: a run of the class, with the
    /// whitespace character just before it when there is one.
    fn isolate_spaced_runs(&self, class: CharClass, out: &mut Vec<usize>) {
        let in_class =
            |pos: usize| pos < self.end && class.contains(self.cps[pos], self.flags[pos]);
        let mut words = Words::new(self.ini, out);
        let mut pos = self.ini;
        while pos < self.end {
            let start = pos;
            if self.flags[pos].is_whitespace() && in_class(pos + 1) {
                pos += 1;
            } else if !in_class(pos) {
                pos += 1;
                continue;
            }
            while in_class(pos) {
                pos += 1;
            }
            words.end_at(start);
            words.end_at(pos);
        }
        words.end_at(self.end);
    }

    /// `\s+$`: the whitespace run that ends the segment.
    fn isolate_trailing_whitespace(&self, out: &mut Vec<usize>) {
        let mut start = self.end;
        while start > self.ini && self.flags[start - 1].is_whitespace() {
            start -= 1;
        }
        let mut words = Words::new(self.ini, out);
        words.end_at(start);
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
        split(
            text,
            &[SplitStep::Llama3 {
                max_digits: 3,
                marks: false,
            }],
        )
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
        assert!(PreTokenizerSpec::from_name("deepseek-v3").is_none());
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
        assert_eq!(
            split("ab\n\ncd\n", &[SplitStep::Newlines]),
            ["ab", "\n\n", "cd", "\n"]
        );
        assert_eq!(
            split("a\r\nb", &[SplitStep::Each(CharClass::CrLf)]),
            ["a", "\r", "\n", "b"]
        );
        assert_eq!(
            split("x  yz, w", &[SplitStep::SpacedRuns(CharClass::Letter)]),
            ["x", " ", " yz", ",", " w"]
        );
        assert_eq!(
            split("a b  \t", &[SplitStep::TrailingWhitespace]),
            ["a b", "  \t"]
        );
    }

    #[test]
    fn deepseek_classes() {
        // Ranges as written in llama.cpp: "µ" alone, "À-Ö" a range, U+2126 OHM SIGN alone.
        assert!(CharClass::DeepseekLetters.contains('µ', cpt_flags('µ')));
        assert!(CharClass::DeepseekLetters.contains('\u{2126}', cpt_flags('\u{2126}')));
        assert!(CharClass::DeepseekLetters.contains('\u{1FD3}', cpt_flags('\u{1FD3}')));
        assert!(CharClass::DeepseekLetters.contains('Ä', cpt_flags('Ä')));
        assert!(!CharClass::DeepseekLetters.contains('×', cpt_flags('×')));
        assert!(CharClass::DeepseekPunctuation.contains('、', cpt_flags('、')));
        // U+3000 is in the class as written but reaches the regex as U+000B.
        assert!(!CharClass::DeepseekPunctuation.contains('\u{3000}', cpt_flags('\u{3000}')));
        assert!(CharClass::DeepseekCjk.contains('中', cpt_flags('中')));
        assert!(CharClass::DeepseekCjk.contains('한', cpt_flags('한')));
    }

    #[test]
    fn qwen35_takes_marks_into_words() {
        let qwen35 = [SplitStep::Llama3 {
            max_digits: 1,
            marks: true,
        }];
        let qwen2 = [SplitStep::Llama3 {
            max_digits: 1,
            marks: false,
        }];
        // "e" + U+0301 COMBINING ACUTE ACCENT.
        assert_eq!(
            split("cafe\u{301} 12", &qwen35),
            ["cafe\u{301}", " ", "1", "2"]
        );
        assert_eq!(
            split("cafe\u{301} 12", &qwen2),
            ["cafe", "\u{301}", " ", "1", "2"]
        );
    }
}
