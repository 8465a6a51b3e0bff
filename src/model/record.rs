//! Saving a [`Llama`] as a Burn record (a burnpack file, `burn::store`) and loading it back
//! without its GGUF file, quantized weights included.
//!
//! The file holds every parameter of the module under its module path, as it is on the device:
//!
//! | path                                   | dtype | shape                                   |
//! |----------------------------------------|-------|-----------------------------------------|
//! | `token_embd.dense`                     | F32   | `[n_vocab, n_embd]`                     |
//! | `token_embd.quantized.words`           | U32   | `[⌈bytes / 4⌉]`: the GGUF blocks        |
//! | `blocks.{i}.attn.{q,k,v,output}.…`     |       | as a linear layer below                 |
//! | `blocks.{i}.ffn.{gate,up,down}.…`      |       | as a linear layer below (the paths of [`crate::model::tensors`]) |
//! | `blocks.{i}.{attn_norm,ffn_norm}.weight` | F32 | `[n_embd]`                              |
//! | `blocks.{i}.{attn_post_norm,ffn_post_norm}.weight` | F32 | `[n_embd]` (gemma3)          |
//! | `blocks.{i}.attn.{q_norm,k_norm}.weight` | F32 | `[key_length]` (qwen3, gemma3)          |
//! | `output_norm.weight`                   | F32   | `[n_embd]`                              |
//! | `output.…` (absent when tied)          |       | as a linear layer below                 |
//! | linear `….dense` / `….quantized.words` | F32 / U32 | `[n_out, n_in]` / `[⌈bytes / 4⌉]`   |
//! | linear `….bias` (optional)             | F32   | `[n_out]`                               |
//! | linear `….lora.{a,b}` (optional)       | F32   | `[rank, n_in]`, `[n_out, rank]`         |
//!
//! The names are the module paths, but for a matrix ([`Weight`], an enum whose variant is part of
//! the module path `….weight.Dense` / `….weight.Quantized.words`), which the file names
//! `….dense` / `….quantized.words` as the format has since its first version.
//!
//! Quantized weights are their packed words ([`QWeight`]): the file's bytes, never converted to
//! f32, so the record is about the size of the GGUF file's tensor data (each tensor padded to
//! burnpack's 256-byte alignment, each quantized one to whole words).
//!
//! What the tensors do not say (the hyper-parameters, the RoPE frequency divisors, the ggml type
//! of each quantized matrix, which layers have a bias, whether the output is tied) is one JSON
//! document in the burnpack metadata under [`METADATA_KEY`]. Loading reads it first, builds the
//! model with unallocated parameters ([`burn::module::Param::uninitialized`]), then loads every
//! tensor into it with [`ModuleSnapshot::apply`]: each tensor keeps the dtype of the file (the
//! words stay `u32`) and lands on the device asked for, whichever device saved it. A file that
//! does not fill every parameter exactly (a tensor missing, left over, of another shape or dtype)
//! is refused.
//!
//! f32 values in the metadata (epsilon, RoPE base and scale, frequency divisors) are stored as
//! their bit patterns, so the loaded model computes bit for bit what the saved one did (a JSON
//! decimal is not guaranteed to parse back to the same f32).
//!
//! The tokenizer is not part of the record.

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::store::burn_pack::{self, Reader, Writer};
use burn::store::{ApplyResult, ModuleSnapshot};
use burn::tensor::{Bytes, DType, Device, Int, Tensor};
use gguf_importer::GgmlType;
use gguf_kernels::packed::QWeight;
use serde::{Deserialize, Serialize};

use crate::model::block::Block;
use crate::model::config::{
    Activation, AttentionScale, Family, LlamaConfig, RopeConfig, RopeStyle, SlidingWindow,
    SUPPORTED_ARCHITECTURES,
};
use crate::model::embedding::Embedding;
use crate::model::error::ModelError;
use crate::model::linear::Linear;
use crate::model::llama::Llama;
use crate::model::lora::LoraAdapter;
use crate::model::norm::RmsNorm;
use crate::model::rope::Rope;
use crate::model::tensors::{BlockSource, LayerMatrix, LayerNorm};
use crate::model::weight::Weight;

/// The burnpack metadata key of the model description (a JSON document).
pub const METADATA_KEY: &str = "gguf_llama.model";

/// The version of the model description; a file of another version is refused.
pub const FORMAT_VERSION: u32 = 2;

/// The oldest format version this build reads: version 1 held Llama models only (its
/// descriptions lack the family's parameters, which then take Llama's values).
pub const OLDEST_FORMAT_VERSION: u32 = 1;

/// Why a record could not be saved or loaded; each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The burnpack container could not be written or read (I/O, a truncated file, a bad header
    /// or metadata block).
    #[error("burnpack file {path}: {source}")]
    Pack {
        path: PathBuf,
        #[source]
        source: burn_pack::Error,
    },

    /// The file is a burnpack container without this crate's model description.
    #[error("burnpack file {path} has no {METADATA_KEY:?} metadata: not a saved Llama model")]
    MissingMetadata { path: PathBuf },

    /// The model description is unreadable or inconsistent.
    #[error("burnpack file {path}: metadata {METADATA_KEY:?}: {reason}")]
    BadMetadata { path: PathBuf, reason: String },

    /// The description is readable, but is not a model this crate can build.
    #[error("burnpack file {path}: {source}")]
    Model {
        path: PathBuf,
        #[source]
        source: ModelError,
    },

    /// The tensors do not fill the model described: missing, left over, or of another shape or
    /// dtype than the description implies.
    #[error("burnpack file {path}: the tensors do not match the model: {what}")]
    Tensors { path: PathBuf, what: String },
}

/// The model description stored under [`METADATA_KEY`].
#[derive(Debug, Serialize, Deserialize)]
struct Description {
    format_version: u32,
    config: ConfigDescription,
    /// `rope_freqs.weight` as f32 bit patterns.
    rope_freq_factors_bits: Option<Vec<u32>>,
    /// The ggml type of the token embedding when it is kept quantized; `None`: dense f32.
    token_embd: Option<String>,
    /// `None` when the output is tied to the token embedding.
    output: Option<LinearDescription>,
    blocks: Vec<BlockDescription>,
}

/// [`LlamaConfig`], f32 values as bit patterns.
#[derive(Debug, Serialize, Deserialize)]
struct ConfigDescription {
    architecture: String,
    context_length: usize,
    embedding_length: usize,
    block_count: usize,
    feed_forward_length: usize,
    head_count: usize,
    head_count_kv: Vec<usize>,
    key_length: usize,
    value_length: usize,
    rms_norm_eps_bits: u32,
    /// `adjacent` or `halves`.
    rope_style: String,
    rope_dimension_count: usize,
    rope_freq_base_bits: u32,
    rope_freq_scale_bits: u32,
    vocab_size: usize,
    /// RoPE's `attn_factor` (version 2; 1 before).
    #[serde(default)]
    rope_attn_factor_bits: Option<u32>,
    /// YaRN's extrapolation share (version 2; 0 before).
    #[serde(default)]
    rope_ext_factor_bits: Option<u32>,
    /// RoPE's original context length (version 2; the context length before).
    #[serde(default)]
    rope_original_context_length: Option<usize>,
    /// `silu` or `gelu` (version 2; `silu` before).
    #[serde(default)]
    activation: Option<String>,
    /// The embeddings' factor (version 2).
    #[serde(default)]
    embedding_scale_bits: Option<u32>,
    /// The attention's scale (version 2; `1/sqrt(key_length)` before).
    #[serde(default)]
    attention_scale_bits: Option<u32>,
    /// Whether the attention's scale applies to the queries rather than the scores.
    #[serde(default)]
    attention_scale_on_queries: bool,
    /// Sliding-window attention (version 2).
    #[serde(default)]
    sliding_window: Option<SlidingWindowDescription>,
    /// `cap` of the output logits' soft-capping (version 2).
    #[serde(default)]
    final_logit_softcapping_bits: Option<u32>,
}

/// [`SlidingWindow`], f32 values as bit patterns.
#[derive(Debug, Serialize, Deserialize)]
struct SlidingWindowDescription {
    size: usize,
    layers: Vec<bool>,
    freq_base_bits: u32,
    freq_scale_bits: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct LinearDescription {
    /// The ggml type of the weight when it is kept quantized; `None`: dense f32.
    quantized: Option<String>,
    bias: bool,
    /// The layer's LoRA adapter (`….lora.a` `[rank, n_in]`, `….lora.b` `[n_out, rank]`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lora: Option<LoraDescription>,
}

#[derive(Debug, Serialize, Deserialize)]
struct LoraDescription {
    rank: usize,
    /// `alpha / rank` as its f32 bit pattern.
    scale_bits: u32,
}

/// The linear layers of a block, in the order of [`LayerMatrix::ALL`].
#[derive(Debug, Serialize, Deserialize)]
struct BlockDescription {
    linears: Vec<LinearDescription>,
}

impl Llama {
    /// Saves the model to the burnpack file `path` (used as given: no extension is added),
    /// replacing any file there (the new file is written aside and renamed over it, so a failed
    /// save leaves the old one). Quantized weights are saved in their blocks; the tensors are
    /// read back from the device one at a time as they are written.
    pub fn save_record(&self, path: impl AsRef<Path>) -> Result<(), RecordError> {
        let path = path.as_ref();
        let json =
            serde_json::to_string(&describe(self)).map_err(|e| RecordError::BadMetadata {
                path: path.to_path_buf(),
                reason: format!("serializing: {e}"),
            })?;
        let tensors = self
            .collect(None, None, false)
            .into_iter()
            .map(|mut t| {
                t.name = file_name(&t.name);
                t
            })
            .collect();
        Writer::new(tensors)
            .with_metadata(METADATA_KEY, &json)
            .auto_extension(false)
            .overwrite(true)
            .write_to_file(path)
            .map_err(|source| RecordError::Pack {
                path: path.to_path_buf(),
                source,
            })
    }

    /// Loads a model saved by [`Llama::save_record`] onto `device` (any device: the one it was
    /// saved from or another), without its GGUF file. The weights come back as they were saved,
    /// bit for bit, quantized ones in their blocks.
    ///
    /// The file is read whole before the model is built; the model does not refer to it
    /// afterwards.
    pub fn load_record(path: impl AsRef<Path>, device: &Device) -> Result<Llama, RecordError> {
        let path = path.as_ref();
        let pack_error = |source| RecordError::Pack {
            path: path.to_path_buf(),
            source,
        };
        // The whole file is read now, so that the model does not depend on it afterwards:
        // burnpack's file-backed reader defers each tensor's read to its first use, which would
        // read whatever is at the path then (or fail mid-forward if the file is gone). The
        // tensors are windows into this one buffer (no copy per tensor).
        let bytes = std::fs::read(path).map_err(|source| RecordError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let reader = Reader::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(pack_error)?;
        let json =
            reader
                .metadata()
                .get(METADATA_KEY)
                .ok_or_else(|| RecordError::MissingMetadata {
                    path: path.to_path_buf(),
                })?;
        let description: Description =
            serde_json::from_str(json).map_err(|e| RecordError::BadMetadata {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        let mut model = skeleton(&description, device).map_err(|e| e.at(path))?;

        let mut tensors = reader.into_tensors().map_err(pack_error)?;
        for t in &mut tensors {
            t.name = module_path(&t.name);
        }
        let result = model.apply(tensors, None, None, false);
        check_applied(&result).map_err(|what| RecordError::Tensors {
            path: path.to_path_buf(),
            what,
        })?;
        let mut dtypes = DTypeCheck::default();
        model.visit(&mut dtypes);
        if let Some(what) = dtypes.first_error {
            return Err(RecordError::Tensors {
                path: path.to_path_buf(),
                what,
            });
        }
        Ok(model)
    }
}

/// A weight's tensor in the module (a [`Weight`] enum: its variant is part of the path) and in
/// the file (`dense`, `quantized.words`, as before the enum).
const WEIGHT_PATHS: [(&str, &str); 2] = [
    (".weight.Dense", ".dense"),
    (".weight.Quantized.words", ".quantized.words"),
];

/// The file's name for the tensor at module path `path`.
fn file_name(path: &str) -> String {
    for (module, file) in WEIGHT_PATHS {
        if let Some(stem) = path.strip_suffix(module) {
            return format!("{stem}{file}");
        }
    }
    path.to_string()
}

/// The module path of the file's tensor `name` (the inverse of [`file_name`]).
fn module_path(name: &str) -> String {
    for (module, file) in WEIGHT_PATHS {
        if let Some(stem) = name.strip_suffix(file) {
            return format!("{stem}{module}");
        }
    }
    name.to_string()
}

/// The description of a model's layout and hyper-parameters.
fn describe(model: &Llama) -> Description {
    let c = model.config();
    let config = ConfigDescription {
        architecture: c.architecture.clone(),
        context_length: c.context_length,
        embedding_length: c.embedding_length,
        block_count: c.block_count,
        feed_forward_length: c.feed_forward_length,
        head_count: c.head_count,
        head_count_kv: c.head_count_kv.clone(),
        key_length: c.key_length,
        value_length: c.value_length,
        rms_norm_eps_bits: c.rms_norm_eps.to_bits(),
        rope_style: match c.rope.style {
            RopeStyle::Adjacent => "adjacent",
            RopeStyle::Halves => "halves",
        }
        .to_string(),
        rope_dimension_count: c.rope.dimension_count,
        rope_freq_base_bits: c.rope.freq_base.to_bits(),
        rope_freq_scale_bits: c.rope.freq_scale.to_bits(),
        rope_attn_factor_bits: Some(c.rope.attn_factor.to_bits()),
        rope_ext_factor_bits: Some(c.rope.ext_factor.to_bits()),
        rope_original_context_length: Some(c.rope.original_context_length),
        vocab_size: c.vocab_size,
        activation: Some(
            match c.activation {
                Activation::Silu => "silu",
                Activation::Gelu => "gelu",
            }
            .to_string(),
        ),
        embedding_scale_bits: c.embedding_scale.map(f32::to_bits),
        attention_scale_bits: Some(c.attention_scale.value().to_bits()),
        attention_scale_on_queries: matches!(c.attention_scale, AttentionScale::Queries(_)),
        sliding_window: c.sliding_window.as_ref().map(|w| SlidingWindowDescription {
            size: w.size,
            layers: w.layers.clone(),
            freq_base_bits: w.freq_base.to_bits(),
            freq_scale_bits: w.freq_scale.to_bits(),
        }),
        final_logit_softcapping_bits: c.final_logit_softcapping.map(f32::to_bits),
    };
    let linear = |l: &Linear| LinearDescription {
        quantized: l.quantized_weight().map(|q| q.ty().name().to_string()),
        bias: l.has_bias(),
        lora: l.adapter().map(|a| LoraDescription {
            rank: a.rank(),
            scale_bits: a.scale().to_bits(),
        }),
    };
    Description {
        format_version: FORMAT_VERSION,
        config,
        rope_freq_factors_bits: model
            .rope()
            .freq_factors()
            .map(|f| f.iter().map(|x| x.to_bits()).collect()),
        token_embd: model
            .token_embedding()
            .quantized_weight()
            .map(|q| q.ty().name().to_string()),
        output: model.output().map(linear),
        blocks: model
            .blocks()
            .iter()
            .map(|b| BlockDescription {
                linears: LayerMatrix::ALL
                    .into_iter()
                    .filter_map(|m| b.linear(m))
                    .map(linear)
                    .collect(),
            })
            .collect(),
    }
}

/// A [`RecordError`] before the file's path is known.
enum SkeletonError {
    Metadata(String),
    Model(ModelError),
}

impl SkeletonError {
    fn at(self, path: &Path) -> RecordError {
        let path = path.to_path_buf();
        match self {
            SkeletonError::Metadata(reason) => RecordError::BadMetadata { path, reason },
            SkeletonError::Model(source) => RecordError::Model { path, source },
        }
    }
}

impl From<ModelError> for SkeletonError {
    fn from(e: ModelError) -> Self {
        SkeletonError::Model(e)
    }
}

/// The configuration a description holds, checked ([`LlamaConfig::validate`]).
fn config_of(d: &ConfigDescription) -> Result<LlamaConfig, SkeletonError> {
    let style = match d.rope_style.as_str() {
        "adjacent" => RopeStyle::Adjacent,
        "halves" => RopeStyle::Halves,
        other => {
            return Err(SkeletonError::Metadata(format!(
                "unknown RoPE style {other:?} (adjacent or halves)"
            )))
        }
    };
    let family = Family::from_architecture(&d.architecture).ok_or_else(|| {
        SkeletonError::Metadata(format!(
            "architecture {:?} is not one of {SUPPORTED_ARCHITECTURES}",
            d.architecture
        ))
    })?;
    let activation = match d.activation.as_deref() {
        None | Some("silu") => Activation::Silu,
        Some("gelu") => Activation::Gelu,
        Some(other) => {
            return Err(SkeletonError::Metadata(format!(
                "unknown activation {other:?} (silu or gelu)"
            )))
        }
    };
    let attention_scale = f32::from_bits(
        d.attention_scale_bits
            .unwrap_or_else(|| (1.0 / (d.key_length as f32).sqrt()).to_bits()),
    );
    let config = LlamaConfig {
        architecture: d.architecture.clone(),
        family,
        context_length: d.context_length,
        embedding_length: d.embedding_length,
        block_count: d.block_count,
        feed_forward_length: d.feed_forward_length,
        head_count: d.head_count,
        head_count_kv: d.head_count_kv.clone(),
        key_length: d.key_length,
        value_length: d.value_length,
        rms_norm_eps: f32::from_bits(d.rms_norm_eps_bits),
        rope: RopeConfig {
            style,
            dimension_count: d.rope_dimension_count,
            freq_base: f32::from_bits(d.rope_freq_base_bits),
            freq_scale: f32::from_bits(d.rope_freq_scale_bits),
            attn_factor: f32::from_bits(d.rope_attn_factor_bits.unwrap_or(1f32.to_bits())),
            ext_factor: f32::from_bits(d.rope_ext_factor_bits.unwrap_or(0)),
            yarn_beta: (32.0, 1.0),
            original_context_length: d.rope_original_context_length.unwrap_or(d.context_length),
        },
        vocab_size: d.vocab_size,
        activation,
        embedding_scale: d.embedding_scale_bits.map(f32::from_bits),
        attention_scale: match d.attention_scale_on_queries {
            true => AttentionScale::Queries(attention_scale),
            false => AttentionScale::Scores(attention_scale),
        },
        sliding_window: d.sliding_window.as_ref().map(|w| SlidingWindow {
            size: w.size,
            layers: w.layers.clone(),
            freq_base: f32::from_bits(w.freq_base_bits),
            freq_scale: f32::from_bits(w.freq_scale_bits),
        }),
        final_logit_softcapping: d.final_logit_softcapping_bits.map(f32::from_bits),
    };
    config.validate()?;
    Ok(config)
}

/// The model a description describes, every parameter unallocated: the right shapes, types and
/// devices for [`ModuleSnapshot::apply`] to fill.
fn skeleton(d: &Description, device: &Device) -> Result<Llama, SkeletonError> {
    if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&d.format_version) {
        return Err(SkeletonError::Metadata(format!(
            "format version {}, this build reads versions {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION}",
            d.format_version
        )));
    }
    let config = config_of(&d.config)?;
    let freq_factors = d
        .rope_freq_factors_bits
        .as_ref()
        .map(|bits| bits.iter().copied().map(f32::from_bits).collect());
    let rope = Rope::new(&config.rope, freq_factors)?;
    if d.blocks.len() != config.block_count {
        return Err(SkeletonError::Metadata(format!(
            "{} blocks described for block_count {}",
            d.blocks.len(),
            config.block_count
        )));
    }

    let (n_embd, n_vocab) = (config.embedding_length, config.vocab_size);
    let eps = config.rms_norm_eps;
    let token_embd = Embedding::from_weight(weight(
        "token_embd",
        d.token_embd.as_deref(),
        [n_vocab, n_embd],
        device,
    )?);
    let output = match &d.output {
        Some(l) => Some(linear("output", l, [n_vocab, n_embd], device)?),
        None => None,
    };
    let output_norm = RmsNorm::from_param(f32_param([n_embd], device), eps);
    let blocks = d
        .blocks
        .iter()
        .enumerate()
        .map(|(layer, b)| block(&config, layer, b, device))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Llama::from_parts(
        config,
        rope,
        token_embd,
        blocks,
        output_norm,
        output,
    )?)
}

/// Block `layer` of the skeleton.
fn block(
    config: &LlamaConfig,
    layer: usize,
    d: &BlockDescription,
    device: &Device,
) -> Result<Block, SkeletonError> {
    if d.linears.len() != LayerMatrix::ALL.len() {
        let names: Vec<&str> = LayerMatrix::ALL.iter().map(|m| m.module_path()).collect();
        return Err(SkeletonError::Metadata(format!(
            "block {layer} describes {} linear layers, expected {} ({})",
            d.linears.len(),
            LayerMatrix::ALL.len(),
            names.join(", ")
        )));
    }
    Block::build(
        config,
        layer,
        &mut SkeletonBlock {
            layer,
            description: d,
            eps: config.rms_norm_eps,
            device,
        },
    )
}

/// The unallocated tensors of a described block, for [`Block::build`].
struct SkeletonBlock<'a> {
    layer: usize,
    description: &'a BlockDescription,
    eps: f32,
    device: &'a Device,
}

impl BlockSource for SkeletonBlock<'_> {
    type Error = SkeletonError;

    fn norm(&mut self, _norm: LayerNorm, dim: usize) -> Result<RmsNorm, SkeletonError> {
        Ok(RmsNorm::from_param(f32_param([dim], self.device), self.eps))
    }

    fn linear(&mut self, matrix: LayerMatrix, shape: [usize; 2]) -> Result<Linear, SkeletonError> {
        let i = LayerMatrix::ALL
            .iter()
            .position(|m| *m == matrix)
            .expect("every matrix is in LayerMatrix::ALL");
        let path = format!("blocks.{}.{}", self.layer, matrix.module_path());
        linear(&path, &self.description.linears[i], shape, self.device)
    }
}

/// A linear layer `[n_out, n_in]` of the skeleton.
fn linear(
    path: &str,
    d: &LinearDescription,
    shape: [usize; 2],
    device: &Device,
) -> Result<Linear, SkeletonError> {
    let bias = d.bias.then(|| f32_param([shape[0]], device));
    let lora = match &d.lora {
        Some(l) if l.rank == 0 => {
            return Err(SkeletonError::Metadata(format!("{path}: LoRA rank 0")))
        }
        Some(l) => Some(LoraAdapter::from_params(
            f32_param([l.rank, shape[1]], device),
            f32_param([shape[0], l.rank], device),
            f32::from_bits(l.scale_bits),
        )),
        None => None,
    };
    let weight = weight(path, d.quantized.as_deref(), shape, device)?;
    Ok(Linear::from_parts(weight, bias, lora))
}

/// A matrix `[rows, cols]`, unallocated: quantized in the ggml type named `quantized`, else
/// dense f32.
fn weight(
    path: &str,
    quantized: Option<&str>,
    [rows, cols]: [usize; 2],
    device: &Device,
) -> Result<Weight, SkeletonError> {
    let Some(ty) = quantized else {
        return Ok(Weight::Dense(f32_param([rows, cols], device)));
    };
    let ggml = GgmlType::from_name(ty)
        .ok_or_else(|| SkeletonError::Metadata(format!("{path}: unknown ggml type {ty:?}")))?;
    QWeight::uninitialized(ggml, rows, cols, device)
        .map(Weight::Quantized)
        .map_err(|e| SkeletonError::Metadata(format!("{path}: {e}")))
}

/// An unallocated f32 parameter (zeros if it were ever read unloaded), trainable as
/// [`Param::from_tensor`] makes them.
fn f32_param<const D: usize>(shape: [usize; D], device: &Device) -> Param<Tensor<D>> {
    Param::uninitialized(
        ParamId::new(),
        move |device: &Device, require_grad| {
            Tensor::<D>::zeros(shape, device).set_require_grad(require_grad)
        },
        device.clone(),
        true,
        shape.into(),
    )
}

/// Whether [`ModuleSnapshot::apply`] filled every parameter with a tensor of the file, and used
/// every tensor; else what went wrong.
fn check_applied(result: &ApplyResult) -> Result<(), String> {
    let mut problems = Vec::new();
    if !result.errors.is_empty() {
        let errors: Vec<String> = result.errors.iter().map(ToString::to_string).collect();
        problems.push(errors.join("; "));
    }
    if !result.missing.is_empty() {
        let missing: Vec<&str> = result.missing.iter().map(|(p, _)| p.as_str()).collect();
        problems.push(format!("missing {}", missing.join(", ")));
    }
    if !result.unused.is_empty() {
        problems.push(format!("not in the model: {}", result.unused.join(", ")));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Finds the first parameter whose dtype is not the one the forward pass computes with: f32 for
/// float parameters, u32 for the packed words (the quantized-matmul kernels read nothing else).
#[derive(Default)]
struct DTypeCheck {
    path: Vec<String>,
    first_error: Option<String>,
}

impl DTypeCheck {
    fn check(&mut self, found: DType, expected: DType) {
        if found != expected && self.first_error.is_none() {
            self.first_error = Some(format!(
                "{} is {found:?}, expected {expected:?}",
                self.path.join(".")
            ));
        }
    }
}

impl ModuleVisitor for DTypeCheck {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.check(param.dtype(), DType::F32);
    }

    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<D, Int>>) {
        self.check(param.dtype(), DType::U32);
    }
}
