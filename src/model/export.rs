//! Saving a [`Llama`] as a GGUF file that llama.cpp loads: [`Llama::save_gguf`].
//!
//! Every tensor is written under llama.cpp's name (see [`crate::model::load`]) in ggml's
//! dimension order (a row-major `[n_out, n_in]` matrix has `ne = [n_in, n_out]`, which
//! [`GgufWriter::add_tensor`] derives from the row-major shape):
//!
//! | tensor                                   | written as                                   |
//! |------------------------------------------|----------------------------------------------|
//! | `token_embd.weight`                      | the [`ExportType`] (Q8_0 for Q4_0, see below) |
//! | `blk.{i}.attn_{q,k,v,output}.weight`     | the [`ExportType`]                           |
//! | `blk.{i}.ffn_{gate,up,down}.weight`      | the [`ExportType`]                           |
//! | `output.weight` (absent when tied)       | the [`ExportType`] (Q8_0 for Q4_0, see below) |
//! | `….bias`, `*_norm.weight`, `rope_freqs.weight` | F32 (llama.cpp's quantizer keeps 1-D tensors F32) |
//!
//! A model loaded from a fused `attn_qkv` file is written with separate `attn_q`, `attn_k` and
//! `attn_v` (llama.cpp loads either). With [`ExportType::Q8_0`] or [`ExportType::Q4_0`], a matrix
//! whose rows are not a whole number of 32-element blocks is written F16, as llama.cpp's
//! quantizer does (`tensor_type_fallback`). With [`ExportType::Q4_0`] the token embedding and the
//! output matrix are written Q8_0: llama.cpp writes them Q6_K, or Q8_0 when their rows are not a
//! whole number of 256-element blocks (SmolLM2's 576, for which the file is llama.cpp's byte for
//! byte); this exporter does not write Q6_K.
//!
//! Where the weights come from: dense parameters are read back from the device as f32;
//! quantized ones ([`QWeight`]) as their file bytes, dequantized with the importer, then
//! quantized to the export type with [`gguf_importer::quants::quantize`]. A matrix already in its
//! target type is copied byte for byte (for Q8_0 that is also what requantizing gives: the block's
//! largest value is `±127·d` exactly, so the new scale is `d` again and every `q` comes back).
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

/// The type of the exported weight matrices (1-D tensors are always F32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum ExportType {
    /// Every tensor F32 (llama.cpp's `LLAMA_FTYPE_ALL_F32`).
    F32,
    /// Matrices F16 (`LLAMA_FTYPE_MOSTLY_F16`).
    F16,
    /// Matrices Q8_0 (`LLAMA_FTYPE_MOSTLY_Q8_0`).
    Q8_0,
    /// Matrices Q4_0 (`LLAMA_FTYPE_MOSTLY_Q4_0`), the token embedding and output Q8_0.
    Q4_0,
}

impl ExportType {
    /// The ggml type of the matrices.
    pub fn ggml_type(self) -> GgmlType {
        match self {
            ExportType::F32 => GgmlType::F32,
            ExportType::F16 => GgmlType::F16,
            ExportType::Q8_0 => GgmlType::Q8_0,
            ExportType::Q4_0 => GgmlType::Q4_0,
        }
    }

    /// llama.cpp's `llama_ftype`, written as `general.file_type`.
    pub fn file_type(self) -> u32 {
        match self {
            ExportType::F32 => 0,
            ExportType::F16 => 1,
            ExportType::Q8_0 => 7,
            ExportType::Q4_0 => 2,
        }
    }

    /// The type a matrix with rows of `row_len` is written in: the export type, or F16 where
    /// its blocks do not fit the rows (as llama.cpp's quantizer falls back).
    pub fn matrix_type(self, row_len: usize) -> GgmlType {
        let ty = self.ggml_type();
        if row_len.is_multiple_of(ty.block_size()) {
            ty
        } else {
            GgmlType::F16
        }
    }

    /// The type the token embedding and the output matrix (rows of `row_len`) are written in:
    /// Q8_0 for [`ExportType::Q4_0`] (see the module documentation), else as
    /// [`ExportType::matrix_type`].
    pub fn embedding_type(self, row_len: usize) -> GgmlType {
        match self {
            ExportType::Q4_0 => ExportType::Q8_0.matrix_type(row_len),
            ty => ty.matrix_type(row_len),
        }
    }
}

impl std::str::FromStr for ExportType {
    type Err = String;

    /// `f32`, `f16`, `q8_0` or `q4_0` (any case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(ExportType::F32),
            "f16" => Ok(ExportType::F16),
            "q8_0" => Ok(ExportType::Q8_0),
            "q4_0" => Ok(ExportType::Q4_0),
            other => Err(format!(
                "unknown export type {other:?}: f32, f16, q8_0 or q4_0"
            )),
        }
    }
}

impl std::fmt::Display for ExportType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.ggml_type().name())
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
    /// Writes the model to the GGUF file `path` (used as given), its matrices as `ty`, with
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

        let embd = self.token_embedding();
        let (shape, (embd_ty, data)) = match (embd.dense(), embd.quantized_weight()) {
            (_, Some(q)) => (
                [q.rows(), q.cols()],
                quantized_matrix(TOKEN_EMBD, q, ty.embedding_type(q.cols()))?,
            ),
            (Some(t), None) => {
                let target = ty.embedding_type(t.dims()[1]);
                (t.dims(), dense_matrix(TOKEN_EMBD, t, target)?) // [n_vocab, n_embd]
            }
            (None, None) => {
                return Err(ExportError::Readback {
                    tensor: TOKEN_EMBD.into(),
                    reason: "the embedding has no weight".into(),
                })
            }
        };
        add(TOKEN_EMBD, &shape, embd_ty, data)?;

        if let Some(factors) = self.rope().freq_factors() {
            add(
                ROPE_FREQS,
                &[factors.len()],
                GgmlType::F32,
                f32_bytes(factors),
            )?;
        }

        for (layer, block) in self.blocks().iter().enumerate() {
            let name = |n: &str| block_tensor(layer, n);
            let norm = name("attn_norm.weight");
            let values = read_f32(&norm, block.attn_norm().weight())?;
            add(&norm, &[values.len()], GgmlType::F32, f32_bytes(&values))?;
            let attn = block.attention().linears();
            for (linear, stem) in
                attn.into_iter()
                    .zip(["attn_q", "attn_k", "attn_v", "attn_output"])
            {
                for (n, shape, t, data) in
                    linear_tensors(&name(stem), linear, |c| ty.matrix_type(c))?
                {
                    add(&n, &shape, t, data)?;
                }
            }
            let norm = name("ffn_norm.weight");
            let values = read_f32(&norm, block.ffn_norm().weight())?;
            add(&norm, &[values.len()], GgmlType::F32, f32_bytes(&values))?;
            let ffn = block.feed_forward().linears();
            for (linear, stem) in ffn.into_iter().zip(["ffn_gate", "ffn_up", "ffn_down"]) {
                for (n, shape, t, data) in
                    linear_tensors(&name(stem), linear, |c| ty.matrix_type(c))?
                {
                    add(&n, &shape, t, data)?;
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
            for (n, shape, t, data) in linear_tensors(stem, output, |c| ty.embedding_type(c))? {
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
    let (shape, (wty, data)) = match (linear.dense_weight(), linear.quantized_weight()) {
        (_, Some(q)) => (
            vec![q.rows(), q.cols()],
            quantized_matrix(&weight_name, q, target(q.cols()))?,
        ),
        (Some(t), None) => {
            let target = target(t.dims()[1]);
            (t.dims().to_vec(), dense_matrix(&weight_name, t, target)?)
        }
        (None, None) => {
            return Err(ExportError::Readback {
                tensor: weight_name,
                reason: "the linear layer has no weight".into(),
            })
        }
    };
    out.push((weight_name, shape, wty, data));
    if let Some(bias) = linear.bias() {
        let name = format!("{stem}.bias");
        let values = read_f32(&name, bias)?;
        out.push((name, vec![values.len()], GgmlType::F32, f32_bytes(&values)));
    }
    Ok(out)
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

/// A quantized matrix as `target`: Q8_0 to Q8_0 copied, anything else dequantized and
/// converted.
fn quantized_matrix(
    name: &str,
    q: &QWeight,
    target: GgmlType,
) -> Result<(GgmlType, Vec<u8>), ExportError> {
    let words = q
        .words()
        .clone()
        .into_data()
        .try_into_vec::<u32>()
        .map_err(|e| ExportError::Readback {
            tensor: name.to_string(),
            reason: format!("{e:?}"),
        })?;
    if words.len() * 4 < q.file_bytes() {
        return Err(ExportError::Readback {
            tensor: name.to_string(),
            reason: format!(
                "{} words hold fewer than the {} bytes of the matrix",
                words.len(),
                q.file_bytes()
            ),
        });
    }
    let bytes = words_as_bytes(&words, q.file_bytes());
    if q.ty() == target {
        return Ok((target, bytes.into_owned()));
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
    t.into_data()
        .try_into_vec::<f32>()
        .map_err(|e| ExportError::Readback {
            tensor: name.to_string(),
            reason: format!("{e:?}"),
        })
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}
