//! Unicode facts the tokenizers need: the general-category class of a code point (as llama.cpp's
//! `unicode_cpt_flags` groups them), the White_Space property, and GPT-2's byte-to-character map.
//!
//! The category ranges come from `regex-syntax`'s Unicode tables (the same tables behind `\p{L}`
//! in the `regex` crate), limited to the code points assigned by Unicode 15.1 as llama.cpp's
//! table is, and read once into a sorted range list.

use std::sync::OnceLock;

use regex_syntax::hir::{Class, HirKind};

/// The category class of a code point, plus the White_Space property (llama.cpp's
/// `unicode_cpt_flags`; code points outside any assigned category are `undefined`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CptFlags(u16);

impl CptFlags {
    pub const UNDEFINED: u16 = 0x0001;
    pub const NUMBER: u16 = 0x0002; // \p{N}
    pub const LETTER: u16 = 0x0004; // \p{L}
    pub const SEPARATOR: u16 = 0x0008; // \p{Z}
    pub const MARK: u16 = 0x0010; // \p{M}
    pub const PUNCTUATION: u16 = 0x0020; // \p{P}
    pub const SYMBOL: u16 = 0x0040; // \p{S}
    pub const CONTROL: u16 = 0x0080; // \p{Cc} \p{Cf} \p{Co}
    pub const WHITESPACE: u16 = 0x0100; // \s (White_Space)

    /// No flags at all: what llama.cpp's split functions see past the end of a segment.
    pub const NONE: CptFlags = CptFlags(0);

    pub fn is_number(self) -> bool {
        self.0 & Self::NUMBER != 0
    }
    pub fn is_letter(self) -> bool {
        self.0 & Self::LETTER != 0
    }
    pub fn is_mark(self) -> bool {
        self.0 & Self::MARK != 0
    }
    pub fn is_punctuation(self) -> bool {
        self.0 & Self::PUNCTUATION != 0
    }
    pub fn is_whitespace(self) -> bool {
        self.0 & Self::WHITESPACE != 0
    }
    /// Whether any flag is set (false only for [`CptFlags::NONE`]).
    pub fn any(self) -> bool {
        self.0 != 0
    }
}

/// The Unicode version of llama.cpp's category table (`unicode-data.cpp`, generated from
/// UnicodeData.txt 15.1): code points assigned later are `UNDEFINED` there, and so here. (Checked
/// against that table: every code point gets the same flags.)
const UNICODE_AGE: &str = "V15_1";

/// Sorted, non-overlapping `(first, last, category flag)` ranges; gaps are `UNDEFINED`.
fn category_ranges() -> &'static [(u32, u32, u16)] {
    static RANGES: OnceLock<Vec<(u32, u32, u16)>> = OnceLock::new();
    RANGES.get_or_init(|| {
        const CLASSES: [(&str, u16); 9] = [
            ("L", CptFlags::LETTER),
            ("M", CptFlags::MARK),
            ("N", CptFlags::NUMBER),
            ("P", CptFlags::PUNCTUATION),
            ("S", CptFlags::SYMBOL),
            ("Z", CptFlags::SEPARATOR),
            ("Cc", CptFlags::CONTROL),
            ("Cf", CptFlags::CONTROL),
            ("Co", CptFlags::CONTROL),
        ];
        let mut ranges = Vec::new();
        for (name, flag) in CLASSES {
            // The pattern is a fixed, valid Unicode class: parsing cannot fail with the
            // `unicode` features regex-syntax enables by default.
            let Ok(hir) = regex_syntax::Parser::new()
                .parse(&format!(r"[\p{{{name}}}&&\p{{Age={UNICODE_AGE}}}]"))
            else {
                continue;
            };
            if let HirKind::Class(Class::Unicode(class)) = hir.kind() {
                ranges.extend(
                    class
                        .ranges()
                        .iter()
                        .map(|r| (r.start() as u32, r.end() as u32, flag)),
                );
            }
        }
        ranges.sort_unstable();
        ranges
    })
}

/// The flags of one code point.
pub(crate) fn cpt_flags(c: char) -> CptFlags {
    let cp = c as u32;
    let ranges = category_ranges();
    // Last range starting at or before `cp`.
    let idx = ranges.partition_point(|r| r.0 <= cp);
    let mut flags = match idx.checked_sub(1).map(|i| ranges[i]) {
        Some((_, last, flag)) if cp <= last => flag,
        _ => CptFlags::UNDEFINED,
    };
    if c.is_whitespace() {
        flags |= CptFlags::WHITESPACE;
    }
    CptFlags(flags)
}

/// GPT-2's reversible map from bytes to printable characters: the printable Latin-1 bytes
/// (`!`..=`~`, `¡`..=`¬`, `®`..=`ÿ`) stand for themselves, the other 68 bytes take the
/// characters U+0100, U+0101, ... in byte order.
fn byte_chars() -> &'static [char; 256] {
    static MAP: OnceLock<[char; 256]> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut map = ['\0'; 256];
        let mut next = 256u32;
        for (b, slot) in map.iter_mut().enumerate() {
            let printable = matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
            let cp = if printable {
                b as u32
            } else {
                next += 1;
                next - 1
            };
            *slot = char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER);
        }
        map
    })
}

/// The character GPT-2's byte-level BPE writes for a byte.
pub(crate) fn byte_to_char(b: u8) -> char {
    byte_chars()[b as usize]
}

/// The byte a GPT-2 byte-level character stands for, if it is one of the 256.
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    // The 256 characters all lie below U+0144.
    static INVERSE: OnceLock<[Option<u8>; 0x144]> = OnceLock::new();
    let inverse = INVERSE.get_or_init(|| {
        let mut inv = [None; 0x144];
        for b in 0..=255u8 {
            inv[byte_to_char(b) as usize] = Some(b);
        }
        inv
    });
    inverse.get(c as usize).copied().flatten()
}

/// Appends the byte-level encoding of `bytes` (each byte as its GPT-2 character).
pub(crate) fn byte_encode_into(bytes: &[u8], out: &mut String) {
    out.extend(bytes.iter().map(|&b| byte_to_char(b)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_map_is_a_bijection() {
        // GPT-2's bytes_to_unicode: 256 distinct characters, and the inverse maps back.
        let mut seen = std::collections::HashSet::new();
        for b in 0..=255u8 {
            let c = byte_to_char(b);
            assert!(seen.insert(c));
            assert_eq!(char_to_byte(c), Some(b));
        }
        // Known values from GPT-2's encoder: space is 'Ġ' (U+0120), newline 'Ċ' (U+010A).
        assert_eq!(byte_to_char(b' '), '\u{120}');
        assert_eq!(byte_to_char(b'\n'), '\u{10A}');
        assert_eq!(byte_to_char(b'a'), 'a');
    }

    #[test]
    fn categories() {
        assert!(cpt_flags('a').is_letter());
        assert!(cpt_flags('Ж').is_letter());
        assert!(cpt_flags('7').is_number());
        assert!(cpt_flags('½').is_number());
        assert!(cpt_flags('!').is_punctuation());
        assert!(cpt_flags(' ').is_whitespace());
        assert!(cpt_flags('\u{3000}').is_whitespace());
        assert_eq!(cpt_flags('$').0, CptFlags::SYMBOL);
        assert_eq!(cpt_flags('\u{0378}').0, CptFlags::UNDEFINED); // unassigned
        assert_eq!(cpt_flags('\u{E000}').0, CptFlags::CONTROL); // private use
                                                                // U+1C89 CYRILLIC CAPITAL LETTER TJE came with Unicode 16.0: undefined for llama.cpp.
        assert_eq!(cpt_flags('\u{1C89}').0, CptFlags::UNDEFINED);
        // U+2FFC IDEOGRAPHIC DESCRIPTION CHARACTER SURROUND FROM RIGHT came with 15.1: a symbol.
        assert_eq!(cpt_flags('\u{2FFC}').0, CptFlags::SYMBOL);
    }
}
