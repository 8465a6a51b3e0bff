//! The tokenizer of a GGUF model, equal to llama.cpp's (`llama-vocab.cpp`).
//!
//! Three models are supported, chosen by `tokenizer.ggml.model`:
//! - `llama`: SentencePiece BPE by token scores, `▁` for spaces, byte fallback (`spm.rs`);
//! - `gpt2`: byte-level BPE by merge ranks (`bpe.rs`), with the pre-tokenizer named by
//!   `tokenizer.ggml.pre` (`pretokenize.rs` lists the supported names);
//! - `gemma4`: BPE by merge ranks over the text itself, `▁` for spaces, `<0xXX>` byte fallback
//!   (`bpe.rs` with the `gemma4` pre-tokenizer, whatever `tokenizer.ggml.pre` says).
//!
//! Others (`bert`'s WordPiece, `t5`'s Unigram, `rwkv` ...) are refused with
//! [`TokenizerError::UnknownModel`].
//!
//! Special tokens written in the text are split out first (`special.rs`); ids go back to text
//! through each token's bytes (`detokenize.rs`, with the streaming [`Detokenizer`]).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use gguf_llama::tokenizer::Tokenizer;
//! let file = gguf_importer::GgufFile::open("model.gguf")?;
//! let tok = Tokenizer::from_gguf(file.metadata())?;
//! let ids = tok.encode("Hello world", true, false);
//! assert_eq!(tok.decode(&ids[1..]), "Hello world");
//! # Ok(()) }
//! ```
//!
//! Metadata keys read (all under `tokenizer.ggml.`): `model` and `tokens` (required), `merges`
//! (required for `gpt2`), `pre` (for `gpt2`; absent means `default`), `scores`, `token_type`,
//! the `*_token_id` keys, `add_bos_token`, `add_eos_token`, `add_space_prefix`; and
//! `general.name` (Phi-3's whitespace rules). Defaults are llama.cpp's.

mod bpe;
mod detokenize;
mod error;
mod pretokenize;
mod special;
mod spm;
mod table;
mod unicode;
mod vocab;

pub use detokenize::Detokenizer;
pub use error::TokenizerError;
pub use vocab::{SpecialTokens, TokenAttr};

use gguf_importer::{keys, Metadata};

use bpe::MergeRanks;
use pretokenize::{PreTokenizerSpec, SUPPORTED_PRE};
use special::Fragment;
use table::ByteTable;
use vocab::Vocab;

/// The tokenization algorithm of a vocabulary.
#[derive(Debug, Clone)]
pub(crate) enum Model {
    /// SentencePiece BPE (`llama`).
    Spm,
    /// Byte-level BPE (`gpt2`) with its merges and pre-tokenizer.
    Bpe {
        merges: MergeRanks,
        pre_name: String,
        pre: PreTokenizerSpec,
    },
}

/// Which tokenizer model a vocabulary uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerKind {
    /// `tokenizer.ggml.model = "llama"`: SentencePiece BPE.
    SentencePiece,
    /// `tokenizer.ggml.model = "gpt2"`: byte-level BPE; also `"gemma4"`, BPE over the text with
    /// `▁` for spaces.
    BytePairEncoding,
}

/// A vocabulary and the rules to turn text into its ids and back.
#[derive(Clone)]
pub struct Tokenizer {
    vocab: Vocab,
    model: Model,
    add_bos: bool,
    add_eos: bool,
    /// Put a space before the text (SentencePiece), and take it off when decoding.
    add_space_prefix: bool,
    /// llama.cpp's `clean_up_tokenization_spaces` when decoding.
    clean_spaces: bool,
    /// Each token's bytes with special tokens rendered (llama.cpp's piece cache).
    pieces: ByteTable,
}

impl std::fmt::Debug for Tokenizer {
    /// A summary: the vocabulary itself is too long to print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.kind())
            .field("pre_tokenizer", &self.pre_tokenizer())
            .field("vocab_size", &self.vocab_size())
            .field("special", &self.vocab.special)
            .field("add_bos", &self.add_bos)
            .field("add_eos", &self.add_eos)
            .finish_non_exhaustive()
    }
}

/// An optional boolean key: `Ok(None)` when absent, an error when of another type.
fn optional_bool(md: &Metadata, key: &'static str) -> Result<Option<bool>, TokenizerError> {
    match md.contains(key) {
        true => Ok(Some(md.get_bool(key)?)),
        false => Ok(None),
    }
}

impl Tokenizer {
    /// Builds the tokenizer from a GGUF file's metadata, as llama.cpp's vocabulary loader does.
    pub fn from_gguf(md: &Metadata) -> Result<Self, TokenizerError> {
        use keys::tokenizer as k;
        if !md.contains(k::MODEL) {
            return Err(TokenizerError::MissingKey { key: k::MODEL });
        }
        let model_name = md.get_str(k::MODEL)?;

        // Per model: the algorithm, default special ids and flags.
        let (model, defaults, mut add_bos, mut add_space_prefix, clean_spaces) = match model_name {
            "llama" => {
                let defaults = SpecialTokens {
                    bos: Some(1),
                    eos: Some(2),
                    unk: Some(0),
                    ..SpecialTokens::default()
                };
                (Model::Spm, defaults, true, true, false)
            }
            "gpt2" | "gemma4" => {
                // Gemma 4's model always takes its own pre-tokenizer, whatever the key says.
                let pre_name = match (model_name, md.contains(k::PRE)) {
                    ("gemma4", _) => "gemma4".to_string(),
                    (_, true) => md.get_str(k::PRE)?.to_string(),
                    (_, false) => {
                        log::warn!("{} is missing: using the 'default' pre-tokenizer; tokenization may differ from the model's", k::PRE);
                        "default".to_string()
                    }
                };
                let pre = PreTokenizerSpec::from_name(&pre_name).ok_or_else(|| {
                    TokenizerError::UnknownPreTokenizer {
                        pre: pre_name.clone(),
                        supported: SUPPORTED_PRE.join(", "),
                    }
                })?;
                if !md.contains(k::MERGES) {
                    return Err(TokenizerError::MissingKey { key: k::MERGES });
                }
                let merges = MergeRanks::from_lines(md.get_str_array(k::MERGES)?);
                // llama.cpp's defaults: 11 for GPT-2-style files, none for Gemma 4 (its ids are
                // all in the metadata).
                let defaults = match model_name {
                    "gpt2" => SpecialTokens {
                        bos: Some(11),
                        eos: Some(11),
                        ..SpecialTokens::default()
                    },
                    _ => SpecialTokens::default(),
                };
                let (add_bos, clean_spaces) = (pre.add_bos, pre.clean_spaces);
                (
                    Model::Bpe {
                        merges,
                        pre_name,
                        pre,
                    },
                    defaults,
                    add_bos,
                    false,
                    clean_spaces,
                )
            }
            other => {
                return Err(TokenizerError::UnknownModel {
                    model: other.to_string(),
                })
            }
        };
        if let Some(v) = optional_bool(md, k::ADD_SPACE_PREFIX)? {
            add_space_prefix = v;
        }

        let mut vocab = Vocab::from_gguf(md, defaults)?;

        let mut add_eos = false;
        if let Some(v) = optional_bool(md, k::ADD_BOS)? {
            add_bos = v;
        }
        // llama.cpp overrides a Gemma 4 file that says not to add BOS (its PR 21500).
        if matches!(&model, Model::Bpe { pre_name, .. } if pre_name == "gemma4") {
            add_bos = true;
        }
        if let Some(v) = optional_bool(md, k::ADD_EOS)? {
            add_eos = v;
        }

        let mut pieces = ByteTable::default();
        for id in 0..vocab.len() as u32 {
            // The pieces are at most a few bytes longer than the texts, which fit.
            pieces
                .push(&detokenize::piece_bytes(&vocab, &model, id))
                .ok_or_else(|| TokenizerError::BadValue {
                    key: k::TOKENS,
                    reason: "the token pieces take more than 4 GiB".to_string(),
                })?;
        }
        pieces.shrink_to_fit();
        vocab.apply_name_rules(md);

        Ok(Tokenizer {
            vocab,
            model,
            add_bos,
            add_eos,
            add_space_prefix,
            clean_spaces,
            pieces,
        })
    }

    /// Text to ids, as llama.cpp's `llama_tokenize(text, add_special, parse_special)`.
    ///
    /// `add_special` adds BOS (and EOS) where the model asks for them ([`Tokenizer::add_bos`],
    /// [`Tokenizer::add_eos`]). `parse_special` recognizes control tokens written in the text
    /// (`<|im_start|>`, `<s>` ...); user-defined tokens are always recognized.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let fragments = special::partition(&self.vocab, text, parse_special);
        let mut out = Vec::new();
        let special = self.vocab.special;
        if add_special && self.add_bos {
            out.extend(special.bos);
        }
        match &self.model {
            Model::Spm => {
                // A space goes before the text at the start and after each special token.
                let mut after_special = true;
                let mut buf = String::new();
                for fragment in fragments {
                    match fragment {
                        Fragment::Text(t) => {
                            buf.clear();
                            if self.add_space_prefix && after_special {
                                buf.push('\u{2581}');
                            }
                            buf.extend(t.chars().map(|c| if c == ' ' { '\u{2581}' } else { c }));
                            spm::tokenize(&self.vocab, &buf, &mut out);
                            after_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(id);
                            after_special = true;
                        }
                    }
                }
            }
            Model::Bpe { merges, pre, .. } => {
                for fragment in fragments {
                    match fragment {
                        Fragment::Text(t) => bpe::tokenize(&self.vocab, merges, pre, t, &mut out),
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(special.eos);
        }
        out
    }

    /// The number of tokens.
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// The vocabulary text of a token (`▁`/`Ġ` spellings included).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.text(id)
    }

    /// The id whose vocabulary text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.id_of(text)
    }

    /// The attributes of a token (undefined for ids outside the vocabulary).
    pub fn token_attr(&self, id: u32) -> TokenAttr {
        self.vocab.attr(id)
    }

    /// The SentencePiece score of a token (0 for byte-level BPE vocabularies).
    pub fn token_score(&self, id: u32) -> f32 {
        self.vocab.score(id)
    }

    /// All special token ids.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.vocab.special
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.vocab.special.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.vocab.special.eos
    }

    pub fn eot_id(&self) -> Option<u32> {
        self.vocab.special.eot
    }

    pub fn unk_id(&self) -> Option<u32> {
        self.vocab.special.unk
    }

    /// Whether generation stops at this token (EOS, EOT, EOM and the texts llama.cpp lists).
    pub fn is_eog(&self, id: u32) -> bool {
        self.vocab.is_eog(id)
    }

    /// Every end-of-generation id, ascending.
    pub fn eog_ids(&self) -> Vec<u32> {
        self.vocab.eog_ids().collect()
    }

    /// Whether `encode(.., add_special = true, ..)` puts BOS first.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether `encode(.., add_special = true, ..)` puts EOS last.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    pub fn kind(&self) -> TokenizerKind {
        match self.model {
            Model::Spm => TokenizerKind::SentencePiece,
            Model::Bpe { .. } => TokenizerKind::BytePairEncoding,
        }
    }

    /// The pre-tokenizer name of a byte-level BPE vocabulary.
    pub fn pre_tokenizer(&self) -> Option<&str> {
        match &self.model {
            Model::Spm => None,
            Model::Bpe { pre_name, .. } => Some(pre_name),
        }
    }
}
