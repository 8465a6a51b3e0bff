//! The vocabulary: token texts, scores and attributes, the special token ids, and the rules by
//! which llama.cpp (`llama_vocab::impl::load`) fills in what the metadata leaves out.

use std::collections::BTreeSet;

use gguf_importer::{keys, Metadata, Value};

use super::table::StrTable;
use super::TokenizerError;

/// What kind of token an id is (llama.cpp's `llama_token_attr` bit set). GGUF stores one type
/// per token (`tokenizer.ggml.token_type`); loading adds bits by llama.cpp's rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TokenAttr(u16);

impl TokenAttr {
    pub const UNDEFINED: TokenAttr = TokenAttr(0);
    pub const UNKNOWN: TokenAttr = TokenAttr(1 << 0);
    pub const UNUSED: TokenAttr = TokenAttr(1 << 1);
    pub const NORMAL: TokenAttr = TokenAttr(1 << 2);
    pub const CONTROL: TokenAttr = TokenAttr(1 << 3);
    pub const USER_DEFINED: TokenAttr = TokenAttr(1 << 4);
    pub const BYTE: TokenAttr = TokenAttr(1 << 5);
    pub const NORMALIZED: TokenAttr = TokenAttr(1 << 6);
    /// Whitespace before the token is removed when special tokens are split out.
    pub const LSTRIP: TokenAttr = TokenAttr(1 << 7);
    /// Whitespace after the token is removed when special tokens are split out.
    pub const RSTRIP: TokenAttr = TokenAttr(1 << 8);
    pub const SINGLE_WORD: TokenAttr = TokenAttr(1 << 9);

    /// The attribute of a GGUF token type (gguf-py's `TokenType`: 1 normal, 2 unknown,
    /// 3 control, 4 user-defined, 5 unused, 6 byte; anything else undefined).
    pub fn from_token_type(t: i64) -> TokenAttr {
        match t {
            1 => Self::NORMAL,
            2 => Self::UNKNOWN,
            3 => Self::CONTROL,
            4 => Self::USER_DEFINED,
            5 => Self::UNUSED,
            6 => Self::BYTE,
            _ => Self::UNDEFINED,
        }
    }

    /// Whether any bit of `other` is set.
    pub fn intersects(self, other: TokenAttr) -> bool {
        self.0 & other.0 != 0
    }

    pub fn union(self, other: TokenAttr) -> TokenAttr {
        TokenAttr(self.0 | other.0)
    }

    pub fn is_control(self) -> bool {
        self.intersects(Self::CONTROL)
    }
    pub fn is_byte(self) -> bool {
        self.intersects(Self::BYTE)
    }
    pub fn is_unknown(self) -> bool {
        self.intersects(Self::UNKNOWN)
    }
    pub fn is_user_defined(self) -> bool {
        self.intersects(Self::USER_DEFINED)
    }
    pub fn is_unused(self) -> bool {
        self.intersects(Self::UNUSED)
    }
    pub fn is_normal(self) -> bool {
        self.intersects(Self::NORMAL)
    }
}

/// The ids of special tokens; `None` where the vocabulary has none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    /// End of turn (`<|eot_id|>`, `<|im_end|>` ...).
    pub eot: Option<u32>,
    /// End of message (`<|eom_id|>`).
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub sep: Option<u32>,
    pub pad: Option<u32>,
    pub mask: Option<u32>,
    pub fim_pre: Option<u32>,
    pub fim_suf: Option<u32>,
    pub fim_mid: Option<u32>,
    pub fim_pad: Option<u32>,
    pub fim_rep: Option<u32>,
    pub fim_sep: Option<u32>,
}

/// Token texts that llama.cpp takes for end-of-turn when `tokenizer.ggml.eot_token_id` is absent.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];

/// Token texts that end generation (llama.cpp's list in `llama_vocab::impl::load`).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Token texts that llama.cpp always renders (gpt-oss's `<|channel|>` ...): made user-defined.
const ALWAYS_RENDERED_TEXTS: &[&str] =
    &["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"];

/// The vocabulary proper.
#[derive(Debug, Clone)]
pub(crate) struct Vocab {
    /// Token texts, looked up by id and by text.
    texts: StrTable,
    scores: Vec<f32>,
    attrs: Vec<TokenAttr>,
    pub special: SpecialTokens,
    eog: BTreeSet<u32>,
    /// Control, user-defined and unknown tokens, longest text first: the order in which
    /// special tokens are split out of text.
    special_by_len: Vec<u32>,
}

/// Picks one id field of [`SpecialTokens`].
type Slot = fn(&mut SpecialTokens) -> &mut Option<u32>;

/// Reads an optional token id key: `Ok(None)` when absent.
fn optional_id(md: &Metadata, key: &'static str) -> Result<Option<i128>, TokenizerError> {
    match md.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_integer()
            .map(Some)
            .ok_or_else(|| TokenizerError::BadValue {
                key,
                reason: format!("expected an integer token id, found {}", v.value_type()),
            }),
    }
}

impl Vocab {
    /// Reads texts, scores and types, then the special ids (`defaults` where a key is absent).
    pub fn from_gguf(md: &Metadata, defaults: SpecialTokens) -> Result<Self, TokenizerError> {
        use keys::tokenizer as k;
        if !md.contains(k::TOKENS) {
            return Err(TokenizerError::MissingKey { key: k::TOKENS });
        }
        let raw = md.get_str_array(k::TOKENS)?;
        let n = raw.len();
        if n == 0 || n > u32::MAX as usize {
            return Err(TokenizerError::BadValue {
                key: k::TOKENS,
                reason: format!("{n} tokens; a vocabulary needs between 1 and 2^32 - 1"),
            });
        }
        // Later duplicates win the lookup, as in llama.cpp's `token_to_id[word] = i`.
        let mut texts = StrTable::default();
        for (i, t) in raw.iter().enumerate() {
            let pushed = match t.is_empty() {
                true => texts.push(&format!("[EMPTY_{i}]")),
                false => texts.push(t),
            };
            pushed.ok_or_else(|| TokenizerError::BadValue {
                key: k::TOKENS,
                reason: "the token texts take more than 4 GiB".to_string(),
            })?;
        }
        texts.shrink_to_fit();

        let scores = match md.contains(k::SCORES) {
            true => {
                let s = md.get_f32_array(k::SCORES)?;
                if s.len() < n {
                    return Err(TokenizerError::BadValue {
                        key: k::SCORES,
                        reason: format!("{} scores for {n} tokens", s.len()),
                    });
                }
                s[..n].to_vec()
            }
            false => vec![0.0; n],
        };

        let mut attrs = match md.contains(k::TOKEN_TYPE) {
            true => {
                let t = md.get_i64_array(k::TOKEN_TYPE)?;
                if t.len() < n {
                    return Err(TokenizerError::BadValue {
                        key: k::TOKEN_TYPE,
                        reason: format!("{} token types for {n} tokens", t.len()),
                    });
                }
                t[..n]
                    .iter()
                    .map(|&t| TokenAttr::from_token_type(t))
                    .collect()
            }
            false => vec![TokenAttr::NORMAL; n],
        };

        // Special ids: a default outside the vocabulary is dropped; a key outside it is ignored.
        let in_range = |id: Option<u32>| id.filter(|&id| (id as usize) < n);
        let mut special = SpecialTokens {
            bos: in_range(defaults.bos),
            eos: in_range(defaults.eos),
            eot: in_range(defaults.eot),
            eom: in_range(defaults.eom),
            unk: in_range(defaults.unk),
            sep: in_range(defaults.sep),
            pad: in_range(defaults.pad),
            mask: in_range(defaults.mask),
            fim_pre: in_range(defaults.fim_pre),
            fim_suf: in_range(defaults.fim_suf),
            fim_mid: in_range(defaults.fim_mid),
            fim_pad: in_range(defaults.fim_pad),
            fim_rep: in_range(defaults.fim_rep),
            fim_sep: in_range(defaults.fim_sep),
        };
        let id_keys: [(&'static str, Slot); 17] = [
            (k::BOS_ID, |s| &mut s.bos),
            (k::EOS_ID, |s| &mut s.eos),
            (k::EOT_ID, |s| &mut s.eot),
            (k::EOM_ID, |s| &mut s.eom),
            (k::UNK_ID, |s| &mut s.unk),
            (k::SEP_ID, |s| &mut s.sep),
            (k::PAD_ID, |s| &mut s.pad),
            ("tokenizer.ggml.mask_token_id", |s| &mut s.mask),
            ("tokenizer.ggml.fim_pre_token_id", |s| &mut s.fim_pre),
            ("tokenizer.ggml.fim_suf_token_id", |s| &mut s.fim_suf),
            ("tokenizer.ggml.fim_mid_token_id", |s| &mut s.fim_mid),
            ("tokenizer.ggml.fim_pad_token_id", |s| &mut s.fim_pad),
            ("tokenizer.ggml.fim_rep_token_id", |s| &mut s.fim_rep),
            ("tokenizer.ggml.fim_sep_token_id", |s| &mut s.fim_sep),
            // Older names of the FIM keys.
            ("tokenizer.ggml.prefix_token_id", |s| &mut s.fim_pre),
            ("tokenizer.ggml.suffix_token_id", |s| &mut s.fim_suf),
            ("tokenizer.ggml.middle_token_id", |s| &mut s.fim_mid),
        ];
        for (key, slot) in id_keys {
            if let Some(id) = optional_id(md, key)? {
                let slot = slot(&mut special);
                match u32::try_from(id).ok().filter(|&id| (id as usize) < n) {
                    Some(id) => *slot = Some(id),
                    None => log::warn!(
                        "{key} = {id} is outside the vocabulary of {n} tokens; keeping {slot:?}"
                    ),
                }
            }
        }

        let mut vocab = Vocab {
            texts,
            scores,
            attrs: Vec::new(),
            special,
            eog: BTreeSet::new(),
            special_by_len: Vec::new(),
        };
        vocab.detect_specials(&mut attrs);
        vocab.attrs = attrs;
        vocab.special_by_len = (0..n as u32)
            .filter(|&id| {
                vocab.attrs[id as usize].intersects(
                    TokenAttr::CONTROL
                        .union(TokenAttr::USER_DEFINED)
                        .union(TokenAttr::UNKNOWN),
                )
            })
            .collect();
        // Longest first; ties by id (llama.cpp's sort leaves ties in an unspecified order).
        vocab
            .special_by_len
            .sort_by_key(|&id| std::cmp::Reverse(vocab.texts.get(id as usize).map_or(0, str::len)));
        Ok(vocab)
    }

    /// llama.cpp's text-based rules: find EOT/EOM/FIM tokens the metadata does not name (where
    /// several texts match, the first in the list; llama.cpp takes the first in its hash-map
    /// order, which is unspecified),
    /// mark them control, mark unused control tokens, and build the end-of-generation set.
    fn detect_specials(&mut self, attrs: &mut [TokenAttr]) {
        let lists: [(&[&str], Slot); 8] = [
            (EOT_TEXTS, |s| &mut s.eot),
            (EOM_TEXTS, |s| &mut s.eom),
            (FIM_PRE_TEXTS, |s| &mut s.fim_pre),
            (FIM_SUF_TEXTS, |s| &mut s.fim_suf),
            (FIM_MID_TEXTS, |s| &mut s.fim_mid),
            (FIM_PAD_TEXTS, |s| &mut s.fim_pad),
            (FIM_REP_TEXTS, |s| &mut s.fim_rep),
            (FIM_SEP_TEXTS, |s| &mut s.fim_sep),
        ];
        for (texts, slot) in lists {
            if slot(&mut self.special).is_some() {
                continue;
            }
            let found = texts.iter().find_map(|t| self.texts.find(t));
            if let Some(id) = found {
                *slot(&mut self.special) = Some(id);
                attrs[id as usize] = attrs[id as usize].union(TokenAttr::CONTROL);
            }
        }

        // Control tokens named "unused" are unused.
        for (text, attr) in self.texts.iter().zip(attrs.iter_mut()) {
            if attr.is_control() && text.contains("unused") {
                *attr = attr.union(TokenAttr::UNUSED);
            }
        }

        // End of generation: FIM pad/repo/separator, the listed texts, then EOS, EOT and EOM.
        let s = self.special;
        self.eog
            .extend([s.fim_pad, s.fim_rep, s.fim_sep].into_iter().flatten());
        for text in EOG_TEXTS {
            if let Some(id) = self.texts.find(text) {
                self.eog.insert(id);
                attrs[id as usize] = attrs[id as usize].union(TokenAttr::CONTROL);
            }
        }
        for text in ALWAYS_RENDERED_TEXTS {
            if let Some(id) = self.texts.find(text) {
                attrs[id as usize] = TokenAttr::USER_DEFINED;
            }
        }
        self.eog.extend([s.eos, s.eot, s.eom].into_iter().flatten());

        // gpt-oss and solar-open: "<|end|>" ends a message, not the generation, when
        // "<|return|>" and "<|call|>" (or "<|calls|>" and "<|flush|>") exist.
        let eog_text = |vocab: &Vocab, t: &str| {
            vocab
                .eog
                .iter()
                .find(|&&id| vocab.texts.get(id as usize) == Some(t))
                .copied()
        };
        let has = |t: &str| eog_text(self, t).is_some();
        let has_call = has("<|call|>") || has("<|calls|>");
        let drop_end = has_call && (has("<|return|>") || has("<|flush|>"));
        let s_is_normal = has("<|tool_response>") || has("<|plamo:eos|>");
        if let Some(end) = eog_text(self, "<|end|>").filter(|_| drop_end) {
            self.eog.remove(&end);
            attrs[end as usize] = TokenAttr::USER_DEFINED;
        }
        // gemma4 and plamo: "</s>" is a normal token there.
        if let Some(s_id) = eog_text(self, "</s>").filter(|_| s_is_normal) {
            self.eog.remove(&s_id);
            attrs[s_id as usize] = TokenAttr::NORMAL;
        }
    }

    /// Sets LSTRIP/RSTRIP attributes that llama.cpp derives from `general.name` (Phi-3 strips
    /// the whitespace after its special tokens).
    pub fn apply_name_rules(&mut self, md: &Metadata) {
        let name = md
            .get(keys::GENERAL_NAME)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_lowercase();
        if name.contains("phi-3") || name.contains("phi3") {
            for &id in &self.special_by_len {
                self.attrs[id as usize] = self.attrs[id as usize].union(TokenAttr::RSTRIP);
            }
            if let Some(id) = self.texts.find("</s>") {
                self.attrs[id as usize] = self.attrs[id as usize].union(TokenAttr::RSTRIP);
            }
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                if let Some(id) = self.texts.find(t) {
                    self.attrs[id as usize] =
                        TokenAttr(self.attrs[id as usize].0 & !TokenAttr::RSTRIP.0);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn id_of(&self, text: &str) -> Option<u32> {
        self.texts.find(text)
    }

    pub fn text(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize)
    }

    /// The score of a token (0 for ids outside the vocabulary).
    pub fn score(&self, id: u32) -> f32 {
        self.scores.get(id as usize).copied().unwrap_or(0.0)
    }

    /// The attributes of a token (undefined for ids outside the vocabulary).
    pub fn attr(&self, id: u32) -> TokenAttr {
        self.attrs.get(id as usize).copied().unwrap_or_default()
    }

    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    pub fn eog_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.eog.iter().copied()
    }

    /// Special tokens in the order they are split out of text.
    pub fn special_by_len(&self) -> &[u32] {
        &self.special_by_len
    }

    /// The SentencePiece byte-fallback token of a byte: `<0xXX>`, else the byte as a
    /// one-character token, else the unknown token (where llama.cpp would throw).
    pub fn byte_token(&self, b: u8) -> Option<u32> {
        self.id_of(&format!("<0x{b:02X}>"))
            .or_else(|| std::str::from_utf8(&[b]).ok().and_then(|s| self.id_of(s)))
            .or(self.special.unk)
    }
}
