//! Saving a [`Llama`] as a GGUF file that llama.cpp loads: [`Llama::save_gguf`].
//!
//! Every tensor is written under llama.cpp's name (see [`crate::model::load`]) in ggml's
//! dimension order (a row-major `[n_out, n_in]` matrix has `ne = [n_in, n_out]`, which
//! [`GgufWriter::add_tensor`] derives from the row-major shape). 1-D tensors (`….bias`,
//! `*_norm.weight`, `rope_freqs.weight`) are written F32, as llama.cpp's quantizer keeps them.
//!
//! The matrices are written in the types llama.cpp's `llama_model_quantize` gives them for the
//! [`ExportType`] (a `llama_ftype`) without an importance matrix, and with the same bytes: each
//! type is ggml's reference quantizer ([`gguf_importer::quants::quantize()`]), and the type of each
//! matrix is [`ExportType::tensor_type`], llama.cpp's `llama_tensor_get_type` for the `llama`
//! architecture:
//!
//! - F32, F16 and BF16 put every matrix in that type.
//! - The quantized types start from the file type's base type ([`ExportType::ggml_type`]); the
//!   output matrix, and the token embedding when the output is tied to it, become Q6_K (Q8_0 in a
//!   Q8_0 file, and Q8_0 when their rows are not whole blocks of the base type); the K-quant mixes
//!   give `attn_v`, `attn_output` and `ffn_down` more bits in some layers (see
//!   [`ExportType::tensor_type`]).
//! - A matrix whose rows are not whole blocks of its type falls back as llama.cpp's
//!   `tensor_type_fallback`: Q2_K and Q3_K to Q4_0, Q4_K to Q5_0, Q5_K to Q5_1, Q6_K to Q8_0,
//!   IQ4_XS to IQ4_NL, and to
//!   F16 where the rows are not whole 32-blocks either (SmolLM2's 576-wide rows keep K-quants only
//!   in `ffn_down`, whose rows are 1536 wide).
//!
//! A model loaded from a fused `attn_qkv` file is written with separate `attn_q`, `attn_k` and
//! `attn_v` (llama.cpp loads either).
//!
//! Where the weights come from: dense parameters are read back from the device as f32;
//! quantized ones ([`QWeight`]) as their file bytes, dequantized with the importer, then
//! quantized to the tensor's type. A matrix already in its target type is copied byte for byte,
//! as llama.cpp's quantizer copies a tensor already in the type it chose.
//!
//! The metadata is the source file's, every key in its order (architecture, hyper-parameters,
//! tokenizer), with `general.file_type` set to the export's llama.cpp file type; the source
//! metadata must describe the model ([`LlamaConfig::from_gguf`] of it equals the model's
//! configuration).

use std::path::{Path, PathBuf};

use burn::tensor::Tensor;
use gguf_importer::quants::{dequantize_into, quantize, QuantizeError};
use gguf_importer::{keys, GgmlType, GgufError, GgufWriter, Metadata, Value};
use gguf_kernels::packed::{words_as_bytes, QWeight};

use crate::model::config::LlamaConfig;
use crate::model::linear::Linear;
use crate::model::llama::Llama;
use crate::model::load::{block_tensor, OUTPUT, OUTPUT_NORM, ROPE_FREQS, TOKEN_EMBD};
use crate::model::tensors::BlockTensor;
pub use crate::model::tensors::LayerMatrix;
use crate::model::weight::Weight;

/// The file type of an export: llama.cpp's `llama_ftype`, the mix of matrix types its quantizer
/// writes (1-D tensors are always F32). Parsed from and displayed as llama-quantize's names
/// (`Q4_K_M`, …; parsing ignores case and takes its aliases `Q3_K`, `Q4_K`, `Q5_K` for the `_M`
/// mixes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum ExportType {
    /// Every tensor F32 (`LLAMA_FTYPE_ALL_F32`).
    F32,
    /// Matrices F16 (`LLAMA_FTYPE_MOSTLY_F16`).
    F16,
    /// Matrices BF16 (`LLAMA_FTYPE_MOSTLY_BF16`).
    BF16,
    /// Matrices Q8_0 (`LLAMA_FTYPE_MOSTLY_Q8_0`).
    Q8_0,
    /// Matrices Q4_0, the output matrix Q6_K (`LLAMA_FTYPE_MOSTLY_Q4_0`).
    Q4_0,
    /// Matrices Q5_0, the output matrix Q6_K (`LLAMA_FTYPE_MOSTLY_Q5_0`).
    Q5_0,
    /// Matrices Q5_1, the output matrix Q6_K (`LLAMA_FTYPE_MOSTLY_Q5_1`).
    Q5_1,
    /// Matrices Q2_K; `attn_output`, `ffn_down` and (with fewer than 4 query heads per KV head)
    /// `attn_v` Q3_K, else `attn_v` Q4_K; the output matrix Q6_K (`LLAMA_FTYPE_MOSTLY_Q2_K`).
    Q2_K,
    /// Matrices Q3_K; `attn_output` Q4_K; `attn_v` Q5_K in layers 0 and 1, else Q4_K; `ffn_down`
    /// Q5_K in the first sixteenth of the layers, else Q4_K; the output matrix Q6_K
    /// (`LLAMA_FTYPE_MOSTLY_Q3_K_M`).
    Q3_K_M,
    /// Matrices Q4_K; `attn_v` Q5_K in layers 0–3, `ffn_down` Q5_K in the first eighth of the
    /// layers; the output matrix Q6_K (`LLAMA_FTYPE_MOSTLY_Q4_K_S`).
    Q4_K_S,
    /// Matrices Q4_K; `attn_v` and `ffn_down` Q6_K in the layers of [`use_more_bits`]; the output
    /// matrix Q6_K (`LLAMA_FTYPE_MOSTLY_Q4_K_M`).
    Q4_K_M,
    /// Matrices Q5_K; `attn_v` and `ffn_down` Q6_K in the layers of [`use_more_bits`]; the output
    /// matrix Q6_K (`LLAMA_FTYPE_MOSTLY_Q5_K_M`).
    Q5_K_M,
    /// Matrices Q6_K (`LLAMA_FTYPE_MOSTLY_Q6_K`).
    Q6_K,
    /// Matrices IQ4_NL; `attn_v` Q5_K with 4 or more query heads per KV head, `ffn_down` Q5_K in
    /// the first eighth of the layers; the output matrix Q6_K (`LLAMA_FTYPE_MOSTLY_IQ4_NL`).
    IQ4_NL,
    /// Matrices IQ4_XS, with IQ4_NL's rules (`LLAMA_FTYPE_MOSTLY_IQ4_XS`).
    IQ4_XS,
}

/// Where a matrix sits in the model: what llama.cpp's type choice reads from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatrixRole {
    /// `token_embd.weight`.
    TokenEmbedding,
    /// `output.weight`.
    Output,
    /// `blk.{layer}.{matrix}.weight`.
    Layer(usize, LayerMatrix),
}

impl MatrixRole {
    /// The role of the matrix named `name` (`token_embd.weight`, `output.weight`,
    /// `blk.{i}.attn_q.weight`, …); `None` for any other tensor.
    pub fn from_tensor_name(name: &str) -> Option<MatrixRole> {
        if name == TOKEN_EMBD {
            return Some(MatrixRole::TokenEmbedding);
        }
        if name == OUTPUT {
            return Some(MatrixRole::Output);
        }
        let rest = name.strip_prefix("blk.")?.strip_suffix(".weight")?;
        let (layer, stem) = rest.split_once('.')?;
        // Digits only: `usize::from_str` would also take a leading '+'.
        if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let matrix = LayerMatrix::ALL.into_iter().find(|m| m.stem() == stem)?;
        Some(MatrixRole::Layer(layer.parse().ok()?, matrix))
    }
}

/// What llama.cpp's type choice reads from the model besides a matrix's role and row length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelShape {
    /// Transformer blocks (`n_layer`).
    pub n_layer: usize,
    /// Query heads (`n_head`).
    pub n_head: usize,
    /// Key/value heads of layer 0 (`n_head_kv`: llama.cpp's `n_gqa()` reads layer 0).
    pub n_head_kv: usize,
    /// No `output.weight`: the output is the token embedding, which then takes the output's type.
    pub tied_embeddings: bool,
}

impl ModelShape {
    /// The shape of a model of `config`, with or without its own output matrix.
    pub fn new(config: &LlamaConfig, tied_embeddings: bool) -> ModelShape {
        ModelShape {
            n_layer: config.block_count,
            n_head: config.head_count,
            n_head_kv: config.head_count_kv.first().copied().unwrap_or(0),
            tied_embeddings,
        }
    }

    /// The shape of `model` as it would be exported.
    pub fn of(model: &Llama) -> ModelShape {
        ModelShape::new(model.config(), model.output().is_none())
    }

    /// Query heads per key/value head (llama.cpp's `n_gqa()`, 0 without KV heads).
    fn n_gqa(&self) -> usize {
        self.n_head.checked_div(self.n_head_kv).unwrap_or(0)
    }

    /// llama.cpp's `LLM_TYPE_70B` for the `llama` architecture: 80 layers with grouped KV heads.
    fn is_70b(&self) -> bool {
        self.n_layer == 80 && self.n_head != self.n_head_kv
    }
}

/// Whether layer `layer` of `n_layer` gets more bits in the `_M` mixes (llama.cpp's
/// `use_more_bits`): the first and last eighth of the layers, and every third layer between.
pub fn use_more_bits(layer: usize, n_layer: usize) -> bool {
    layer < n_layer / 8 || layer >= 7 * n_layer / 8 || (layer - n_layer / 8) % 3 == 2
}

/// `ty`, or llama.cpp's fallback when rows of `row_len` are not whole blocks of it
/// (`tensor_type_fallback`).
fn fallback(ty: GgmlType, row_len: usize) -> GgmlType {
    if row_len.is_multiple_of(ty.block_size()) {
        return ty;
    }
    let smaller = match ty {
        GgmlType::Q2_K | GgmlType::Q3_K => GgmlType::Q4_0,
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        GgmlType::IQ4_XS => GgmlType::IQ4_NL,
        other => other,
    };
    if row_len.is_multiple_of(smaller.block_size()) {
        smaller
    } else {
        GgmlType::F16
    }
}

impl ExportType {
    /// Every export type.
    pub const ALL: [ExportType; 15] = [
        ExportType::F32,
        ExportType::F16,
        ExportType::BF16,
        ExportType::Q8_0,
        ExportType::Q4_0,
        ExportType::Q5_0,
        ExportType::Q5_1,
        ExportType::Q2_K,
        ExportType::Q3_K_M,
        ExportType::Q4_K_S,
        ExportType::Q4_K_M,
        ExportType::Q5_K_M,
        ExportType::Q6_K,
        ExportType::IQ4_NL,
        ExportType::IQ4_XS,
    ];

    /// llama-quantize's name: `F32`, `BF16`, `Q4_K_M`, ….
    pub fn name(self) -> &'static str {
        match self {
            ExportType::F32 => "F32",
            ExportType::F16 => "F16",
            ExportType::BF16 => "BF16",
            ExportType::Q8_0 => "Q8_0",
            ExportType::Q4_0 => "Q4_0",
            ExportType::Q5_0 => "Q5_0",
            ExportType::Q5_1 => "Q5_1",
            ExportType::Q2_K => "Q2_K",
            ExportType::Q3_K_M => "Q3_K_M",
            ExportType::Q4_K_S => "Q4_K_S",
            ExportType::Q4_K_M => "Q4_K_M",
            ExportType::Q5_K_M => "Q5_K_M",
            ExportType::Q6_K => "Q6_K",
            ExportType::IQ4_NL => "IQ4_NL",
            ExportType::IQ4_XS => "IQ4_XS",
        }
    }

    /// The base type of the mix (llama.cpp's `llama_ftype_get_default_type`): the type of every
    /// matrix that no rule and no fallback changes.
    pub fn ggml_type(self) -> GgmlType {
        match self {
            ExportType::F32 => GgmlType::F32,
            ExportType::F16 => GgmlType::F16,
            ExportType::BF16 => GgmlType::BF16,
            ExportType::Q8_0 => GgmlType::Q8_0,
            ExportType::Q4_0 => GgmlType::Q4_0,
            ExportType::Q5_0 => GgmlType::Q5_0,
            ExportType::Q5_1 => GgmlType::Q5_1,
            ExportType::Q2_K => GgmlType::Q2_K,
            ExportType::Q3_K_M => GgmlType::Q3_K,
            ExportType::Q4_K_S | ExportType::Q4_K_M => GgmlType::Q4_K,
            ExportType::Q5_K_M => GgmlType::Q5_K,
            ExportType::Q6_K => GgmlType::Q6_K,
            ExportType::IQ4_NL => GgmlType::IQ4_NL,
            ExportType::IQ4_XS => GgmlType::IQ4_XS,
        }
    }

    /// llama.cpp's `llama_ftype` (llama.h), written as `general.file_type`.
    pub fn file_type(self) -> u32 {
        match self {
            ExportType::F32 => 0,
            ExportType::F16 => 1,
            ExportType::Q4_0 => 2,
            ExportType::Q8_0 => 7,
            ExportType::Q5_0 => 8,
            ExportType::Q5_1 => 9,
            ExportType::Q2_K => 10,
            ExportType::Q3_K_M => 12,
            ExportType::Q4_K_S => 14,
            ExportType::Q4_K_M => 15,
            ExportType::Q5_K_M => 17,
            ExportType::Q6_K => 18,
            ExportType::IQ4_NL => 25,
            ExportType::IQ4_XS => 30,
            ExportType::BF16 => 32,
        }
    }

    /// The type of the matrix `role` (rows of `row_len`) of a model of `shape` in this file type,
    /// as llama.cpp's `llama_tensor_get_type` chooses it for the `llama` architecture without an
    /// importance matrix. F32, F16 and BF16: that type. The quantized types: the base type
    /// ([`ExportType::ggml_type`]) changed by the mix's rules,
    ///
    /// - the output matrix, and the token embedding when tied (no output matrix): Q8_0 if its rows
    ///   are not whole blocks of the base type, else Q6_K (Q8_0 stays Q8_0);
    /// - `attn_v`, `ffn_down`, `attn_output` of layer `i`: as listed on the variants, with
    ///   [`use_more_bits`] for the `_M` mixes, and Q3_K or Q4_K `attn_v` raised to Q5_K in an
    ///   80-layer model with grouped KV heads (llama.cpp's 70B rule);
    ///
    /// then llama.cpp's fallback for rows that are not whole blocks of the chosen type (see the
    /// [module documentation](self)).
    pub fn tensor_type(self, shape: &ModelShape, role: MatrixRole, row_len: usize) -> GgmlType {
        let base = self.ggml_type();
        if !base.is_quantized() {
            return base;
        }
        fallback(self.mix_type(shape, role, row_len), row_len)
    }

    /// llama.cpp's `llama_tensor_get_type_impl` for this file type (quantized ones only).
    fn mix_type(self, shape: &ModelShape, role: MatrixRole, row_len: usize) -> GgmlType {
        use ExportType as E;
        use GgmlType as G;
        let base = self.ggml_type();
        let n_layer = shape.n_layer;
        let (layer, matrix) = match role {
            MatrixRole::Output | MatrixRole::TokenEmbedding
                if role == MatrixRole::Output || shape.tied_embeddings =>
            {
                return if !row_len.is_multiple_of(base.block_size()) {
                    G::Q8_0
                } else if base != G::Q8_0 {
                    G::Q6_K
                } else {
                    base
                };
            }
            MatrixRole::Output | MatrixRole::TokenEmbedding => return base,
            MatrixRole::Layer(layer, matrix) => (layer, matrix),
        };
        match matrix {
            LayerMatrix::AttnV => {
                let ty = match self {
                    E::Q2_K if shape.n_gqa() >= 4 => G::Q4_K,
                    E::Q2_K => G::Q3_K,
                    E::Q3_K_M if layer < 2 => G::Q5_K,
                    E::Q3_K_M => G::Q4_K,
                    E::Q4_K_M | E::Q5_K_M if use_more_bits(layer, n_layer) => G::Q6_K,
                    E::IQ4_NL | E::IQ4_XS if shape.n_gqa() >= 4 => G::Q5_K,
                    E::Q4_K_S if layer < 4 => G::Q5_K,
                    _ => base,
                };
                if shape.is_70b() && matches!(ty, G::Q3_K | G::Q4_K) {
                    G::Q5_K
                } else {
                    ty
                }
            }
            LayerMatrix::FfnDown => match self {
                E::Q2_K => G::Q3_K,
                E::Q3_K_M if layer < n_layer / 16 => G::Q5_K,
                E::Q3_K_M => G::Q4_K,
                E::Q4_K_M | E::Q5_K_M if use_more_bits(layer, n_layer) => G::Q6_K,
                E::IQ4_NL | E::IQ4_XS if layer < n_layer / 8 => G::Q5_K,
                E::Q4_K_S if layer < n_layer / 8 => G::Q5_K,
                _ => base,
            },
            LayerMatrix::AttnOutput => match self {
                E::Q2_K => G::Q3_K,
                E::Q3_K_M => G::Q4_K,
                _ => base,
            },
            LayerMatrix::AttnQ | LayerMatrix::AttnK | LayerMatrix::FfnGate | LayerMatrix::FfnUp => {
                base
            }
        }
    }
}

impl std::str::FromStr for ExportType {
    type Err = String;

    /// A name of [`ExportType::name`] or one of llama-quantize's aliases `Q3_K`, `Q4_K`, `Q5_K`
    /// (for the `_M` mixes), in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.to_ascii_uppercase();
        let alias = match upper.as_str() {
            "Q3_K" => Some(ExportType::Q3_K_M),
            "Q4_K" => Some(ExportType::Q4_K_M),
            "Q5_K" => Some(ExportType::Q5_K_M),
            _ => None,
        };
        alias
            .or_else(|| ExportType::ALL.into_iter().find(|t| t.name() == upper))
            .ok_or_else(|| {
                let names: Vec<String> = ExportType::ALL
                    .iter()
                    .map(|t| t.name().to_ascii_lowercase())
                    .collect();
                let (last, rest) = names.split_last().expect("ExportType::ALL is not empty");
                format!(
                    "unknown export type {:?}: {} or {last}",
                    s.to_ascii_lowercase(),
                    rest.join(", ")
                )
            })
    }
}

impl std::fmt::Display for ExportType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a model could not be exported; each variant names the tensor or file.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The source metadata does not describe this model.
    #[error("the source metadata does not describe the model being exported: {reason}")]
    MetadataMismatch { reason: String },

    /// A tensor could not be read back from the device.
    #[error("reading tensor {tensor:?} back from the device: {reason}")]
    Readback { tensor: String, reason: String },

    /// A quantized weight's bytes could not be dequantized.
    #[error("dequantizing tensor {tensor:?}: {source}")]
    Dequantize {
        tensor: String,
        #[source]
        source: GgufError,
    },

    /// A tensor could not be converted to the export type.
    #[error("converting tensor {tensor:?}: {source}")]
    Quantize {
        tensor: String,
        #[source]
        source: QuantizeError,
    },

    /// The GGUF writer refused a key or tensor, or the file could not be written.
    #[error("writing GGUF file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: GgufError,
    },

    /// The model's family is written with tensors this exporter does not produce yet.
    #[error("exporting the {family} architecture is not implemented: {reason}")]
    UnsupportedFamily {
        family: crate::model::config::Family,
        reason: &'static str,
    },

    /// The model still has LoRA adapters: GGUF holds the merged weights
    /// ([`Llama::merge_lora`] first).
    #[error("the model has {count} unmerged LoRA adapters: merge them first (Llama::merge_lora)")]
    UnmergedAdapters { count: usize },

    /// The written file could not be moved over `path`.
    #[error("replacing {path} with the new file: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Llama {
    /// Writes the model to the GGUF file `path` (used as given), its matrices in the types of the
    /// file type `ty` ([`ExportType::tensor_type`] with [`ModelShape::of`] this model), with
    /// `source_metadata` (the metadata of the file the model came from) as its metadata and
    /// `general.file_type` set to `ty`'s file type. See the [module documentation](self).
    ///
    /// The file is built in memory (the size of the export), written beside `path` and renamed
    /// over it, so a failed export leaves any file at `path` as it was.
    pub fn save_gguf(
        &self,
        source_metadata: &Metadata,
        path: impl AsRef<Path>,
        ty: ExportType,
    ) -> Result<(), ExportError> {
        let path = path.as_ref();
        check_metadata(self.config(), source_metadata)?;
        if self.config().family == crate::model::config::Family::Phi3 {
            return Err(ExportError::UnsupportedFamily {
                family: self.config().family,
                reason: "llama.cpp reads Phi-3's gate and up projections fused in `ffn_up` \
                         and its LongRoPE factors as tensors, which the exporter does not write",
            });
        }
        let count = self.lora_adapters().len();
        if count > 0 {
            return Err(ExportError::UnmergedAdapters { count });
        }
        let write_error = |source| ExportError::Write {
            path: path.to_path_buf(),
            source,
        };
        let mut w = GgufWriter::new();
        for (key, value) in export_metadata(source_metadata, ty).iter() {
            w.add_metadata(key, value.clone()).map_err(write_error)?;
        }
        let mut add = |name: &str, shape: &[usize], ty: GgmlType, data: Vec<u8>| {
            w.add_tensor(name, shape, ty, data)
                .map(|_| ())
                .map_err(write_error)
        };

        let model_shape = ModelShape::of(self);
        let target = |role: MatrixRole, row_len: usize| ty.tensor_type(&model_shape, role, row_len);

        let embd = self.token_embedding().weight(); // [n_vocab, n_embd]
        let (embd_ty, data) = matrix(TOKEN_EMBD, embd, |c| target(MatrixRole::TokenEmbedding, c))?;
        add(TOKEN_EMBD, &embd.shape(), embd_ty, data)?;

        if let Some(factors) = self.rope().freq_factors() {
            add(
                ROPE_FREQS,
                &[factors.len()],
                GgmlType::F32,
                f32_bytes(factors),
            )?;
        }

        for (layer, block) in self.blocks().iter().enumerate() {
            for tensor in BlockTensor::of(self.config().family) {
                let stem = block_tensor(layer, tensor.stem());
                match tensor {
                    BlockTensor::Norm(norm) => {
                        let name = format!("{stem}.weight");
                        let weight = block.norm(norm).ok_or_else(|| ExportError::Readback {
                            tensor: name.clone(),
                            reason: "the block has no such norm".into(),
                        })?;
                        let values = read_f32(&name, weight.weight())?;
                        add(&name, &[values.len()], GgmlType::F32, f32_bytes(&values))?;
                    }
                    BlockTensor::Matrix(matrix) => {
                        let linear = block.linear(matrix).ok_or_else(|| ExportError::Readback {
                            tensor: format!("{stem}.weight"),
                            reason: "the block has no such layer".into(),
                        })?;
                        let role = MatrixRole::Layer(layer, matrix);
                        for (n, shape, t, data) in
                            linear_tensors(&stem, linear, |c| target(role, c))?
                        {
                            add(&n, &shape, t, data)?;
                        }
                    }
                }
            }
        }

        let values = read_f32(OUTPUT_NORM, self.output_norm().weight())?;
        add(
            OUTPUT_NORM,
            &[values.len()],
            GgmlType::F32,
            f32_bytes(&values),
        )?;
        if let Some(output) = self.output() {
            let stem = OUTPUT.strip_suffix(".weight").unwrap_or(OUTPUT);
            for (n, shape, t, data) in
                linear_tensors(stem, output, |c| target(MatrixRole::Output, c))?
            {
                add(&n, &shape, t, data)?;
            }
        }
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        if let Err(source) = w.write_file(&partial) {
            let _ = std::fs::remove_file(&partial);
            return Err(write_error(source));
        }
        std::fs::rename(&partial, path).map_err(|source| {
            let _ = std::fs::remove_file(&partial);
            ExportError::Io {
                path: path.to_path_buf(),
                source,
            }
        })
    }
}

/// The source metadata with `general.file_type` set to `ty`'s (in place, or appended when the
/// source has none).
pub fn export_metadata(source: &Metadata, ty: ExportType) -> Metadata {
    let file_type = Value::U32(ty.file_type());
    let mut out = Metadata::new();
    let mut seen = false;
    for (key, value) in source.iter() {
        let value = if key == keys::GENERAL_FILE_TYPE {
            seen = true;
            file_type.clone()
        } else {
            value.clone()
        };
        // Keys of a Metadata are unique, so inserting them again cannot collide.
        let _ = out.insert(key, value);
    }
    if !seen {
        let _ = out.insert(keys::GENERAL_FILE_TYPE, file_type);
    }
    out
}

/// Refuses metadata from which another configuration than the model's would be read.
fn check_metadata(config: &LlamaConfig, metadata: &Metadata) -> Result<(), ExportError> {
    let from_metadata =
        LlamaConfig::from_gguf(metadata).map_err(|e| ExportError::MetadataMismatch {
            reason: format!("it is not a Llama model's: {e}"),
        })?;
    if from_metadata != *config {
        return Err(ExportError::MetadataMismatch {
            reason: format!("it describes {from_metadata:?}, the model has {config:?}"),
        });
    }
    Ok(())
}

/// One tensor to write: name, row-major shape, type, bytes.
type TensorOut = (String, Vec<usize>, GgmlType, Vec<u8>);

/// `{stem}.weight` in the type `target` gives for its row length, and `{stem}.bias` F32, if any.
fn linear_tensors(
    stem: &str,
    linear: &Linear,
    target: impl Fn(usize) -> GgmlType,
) -> Result<Vec<TensorOut>, ExportError> {
    let weight_name = format!("{stem}.weight");
    let mut out = Vec::with_capacity(2);
    let (wty, data) = matrix(&weight_name, linear.weight(), target)?;
    out.push((weight_name, linear.shape().to_vec(), wty, data));
    if let Some(bias) = linear.bias() {
        let name = format!("{stem}.bias");
        let values = read_f32(&name, bias)?;
        out.push((name, vec![values.len()], GgmlType::F32, f32_bytes(&values)));
    }
    Ok(out)
}

/// A matrix `[rows, cols]` in the type `target` gives for its row length `cols`.
fn matrix(
    name: &str,
    weight: &Weight,
    target: impl Fn(usize) -> GgmlType,
) -> Result<(GgmlType, Vec<u8>), ExportError> {
    let [_, cols] = weight.shape();
    match weight {
        Weight::Dense(t) => dense_matrix(name, t.val(), target(cols)),
        Weight::Quantized(q) => quantized_matrix(name, q, target(cols)),
    }
}

/// A dense f32 matrix `[rows, cols]` as `target`.
fn dense_matrix(
    name: &str,
    t: Tensor<2>,
    target: GgmlType,
) -> Result<(GgmlType, Vec<u8>), ExportError> {
    let [_, cols] = t.dims();
    let values = read_f32(name, t)?; // [rows · cols], row-major
    convert(name, &values, cols, target)
}

/// A quantized matrix as `target`: copied when already of that type (as llama.cpp's quantizer
/// does), else dequantized and converted.
fn quantized_matrix(
    name: &str,
    q: &QWeight,
    target: GgmlType,
) -> Result<(GgmlType, Vec<u8>), ExportError> {
    // The file's bytes, band by band (one band unless the matrix is banded).
    let mut bytes = Vec::with_capacity(q.file_bytes());
    for band in q.bands() {
        let words = band
            .words
            .clone()
            .try_into_data()
            .map_err(|e| format!("{e}"))
            .and_then(|d| d.try_into_vec::<u32>().map_err(|e| format!("{e:?}")))
            .map_err(|reason| ExportError::Readback {
                tensor: name.to_string(),
                reason,
            })?;
        if words.len() * 4 < band.n_bytes {
            return Err(ExportError::Readback {
                tensor: name.to_string(),
                reason: format!(
                    "{} words hold fewer than the {} bytes of the band",
                    words.len(),
                    band.n_bytes
                ),
            });
        }
        bytes.extend_from_slice(&words_as_bytes(&words, band.n_bytes));
    }
    if q.ty() == target {
        return Ok((target, bytes));
    }
    let mut values = vec![0f32; q.rows() * q.cols()]; // [rows, cols]
    dequantize_into(name, q.ty(), &bytes, &mut values).map_err(|source| {
        ExportError::Dequantize {
            tensor: name.to_string(),
            source,
        }
    })?;
    convert(name, &values, q.cols(), target)
}

/// Row-major f32 values with rows of `cols` as `target`.
fn convert(
    name: &str,
    values: &[f32],
    cols: usize,
    target: GgmlType,
) -> Result<(GgmlType, Vec<u8>), ExportError> {
    let data = quantize(target, cols, values).map_err(|source| ExportError::Quantize {
        tensor: name.to_string(),
        source,
    })?;
    Ok((target, data))
}

/// The values of an f32 tensor, row-major.
fn read_f32<const D: usize>(name: &str, t: Tensor<D>) -> Result<Vec<f32>, ExportError> {
    t.try_into_data()
        .map_err(|e| format!("{e}"))
        .and_then(|d| d.try_into_vec::<f32>().map_err(|e| format!("{e:?}")))
        .map_err(|reason| ExportError::Readback {
            tensor: name.to_string(),
            reason,
        })
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_take_llama_quantizes_aliases() {
        for ty in ExportType::ALL {
            assert_eq!(ty.to_string().parse::<ExportType>(), Ok(ty));
            assert_eq!(ty.name().to_ascii_lowercase().parse::<ExportType>(), Ok(ty));
        }
        assert_eq!("q4_k".parse::<ExportType>(), Ok(ExportType::Q4_K_M));
        assert_eq!("Q3_K".parse::<ExportType>(), Ok(ExportType::Q3_K_M));
        assert_eq!("q5_k".parse::<ExportType>(), Ok(ExportType::Q5_K_M));
        assert!("q4_1".parse::<ExportType>().is_err());
    }

    #[test]
    fn roles_from_tensor_names() {
        assert_eq!(
            MatrixRole::from_tensor_name("token_embd.weight"),
            Some(MatrixRole::TokenEmbedding)
        );
        assert_eq!(
            MatrixRole::from_tensor_name("output.weight"),
            Some(MatrixRole::Output)
        );
        assert_eq!(
            MatrixRole::from_tensor_name("blk.12.ffn_down.weight"),
            Some(MatrixRole::Layer(12, LayerMatrix::FfnDown))
        );
        assert_eq!(
            MatrixRole::from_tensor_name("blk.0.attn_v.weight"),
            Some(MatrixRole::Layer(0, LayerMatrix::AttnV))
        );
        for other in [
            "output_norm.weight",
            "blk.0.attn_norm.weight",
            "blk.0.attn_q.bias",
            "blk.+1.attn_q.weight",
            "blk..attn_q.weight",
            "rope_freqs.weight",
        ] {
            assert_eq!(MatrixRole::from_tensor_name(other), None, "{other}");
        }
    }
}
