//! Building a [`Llama`] from a GGUF file: tensor names, shape checks, weights kept in their blocks
//! or dequantized to f32 ([`Weights`]).
//!
//! Tensor names are llama.cpp's (`llama-arch.cpp`). Shapes below are row-major, i.e. ggml's `ne`
//! reversed (see `gguf_importer::burn`): a linear weight is `[n_out, n_in]`.
//!
//! | tensor                       | shape                               | required                 |
//! |------------------------------|-------------------------------------|--------------------------|
//! | `token_embd.weight`          | `[n_vocab, n_embd]`                 | yes                      |
//! | `output_norm.weight`         | `[n_embd]`                          | yes                      |
//! | `output.weight`              | `[n_vocab, n_embd]`                 | no: tied to `token_embd` |
//! | `rope_freqs.weight`          | `[n_rot / 2]`                       | no (Llama 3 files)       |
//! | `blk.{i}.attn_norm.weight`   | `[n_embd]`                          | yes                      |
//! | `blk.{i}.attn_q.weight`      | `[n_head · key_length, n_embd]`     | yes, or `attn_qkv`       |
//! | `blk.{i}.attn_k.weight`      | `[n_head_kv · key_length, n_embd]`  | yes, or `attn_qkv`       |
//! | `blk.{i}.attn_v.weight`      | `[n_head_kv · value_length, n_embd]`| yes, or `attn_qkv`       |
//! | `blk.{i}.attn_qkv.weight`    | q, k and v rows stacked             | instead of q, k, v       |
//! | `blk.{i}.attn_output.weight` | `[n_embd, n_head · value_length]`   | yes                      |
//! | `blk.{i}.ffn_norm.weight`    | `[n_embd]`                          | yes                      |
//! | `blk.{i}.ffn_gate.weight`    | `[n_ff, n_embd]`                    | yes                      |
//! | `blk.{i}.ffn_up.weight`      | `[n_ff, n_embd]`                    | yes                      |
//! | `blk.{i}.ffn_down.weight`    | `[n_embd, n_ff]`                    | yes                      |
//!
//! Every linear layer also takes an optional `.bias` of shape `[n_out]`. The `blk.{i}.*` rows are
//! the block's tensor table ([`crate::model::tensors`]), from which each block is read
//! ([`Block::build`]).
//!
//! Before a tensor is read its presence, shape and type are checked: a missing tensor, another
//! shape or a type without a dequantizer here (an i-quant ...) is an error naming the tensor.
//! The rows of `token_embd` and `output` are checked against the vocabulary first, so that a
//! vocabulary that disagrees with the weights is reported as such.

use burn::tensor::{Device, Tensor};
use gguf_importer::keys::{self, arch_key, llm};
use gguf_importer::{GgmlType, GgufFile};

use crate::model::block::Block;
use crate::model::config::LlamaConfig;
use crate::model::embedding::Embedding;
use crate::model::error::ModelError;
use crate::model::linear::Linear;
use crate::model::llama::Llama;
use crate::model::norm::RmsNorm;
use crate::model::rope::Rope;
use crate::model::tensors::{BlockSource, Fused, LayerMatrix, LayerNorm};
use gguf_kernels::packed::QWeight;

/// Token embedding.
pub const TOKEN_EMBD: &str = "token_embd.weight";
/// Final norm.
pub const OUTPUT_NORM: &str = "output_norm.weight";
/// Output projection (absent when tied to the token embedding).
pub const OUTPUT: &str = "output.weight";
/// Per-pair RoPE frequency divisors (Llama 3).
pub const ROPE_FREQS: &str = "rope_freqs.weight";
/// LongRoPE's divisors beyond the original context (Phi-3).
pub const ROPE_FACTORS_LONG: &str = "rope_factors_long.weight";
/// LongRoPE's divisors within the original context (Phi-3).
pub const ROPE_FACTORS_SHORT: &str = "rope_factors_short.weight";

/// `blk.{layer}.{name}`.
pub fn block_tensor(layer: usize, name: &str) -> String {
    format!("blk.{layer}.{name}")
}

/// How the weight matrices are held on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Weights {
    /// Dequantized to f32 at import: four bytes per weight, f32 matmuls. For analysis and for
    /// training the weights themselves; a quantized file then computes what llama.cpp computes
    /// on the same weights dequantized to F32.
    F32,
    /// The default (what [`Llama::from_gguf`] does). Kept in the file's blocks and multiplied by the fused quantized-matmul kernels
    /// (`gguf-kernels`), the token embedding included (rows dequantized on lookup; as the tied
    /// output it is multiplied in its blocks too); F32 matrices and the norms stay f32. On the CPU devices
    /// the kernels round activations to 8 bits per block as llama.cpp's CPU backend does, so a
    /// quantized file computes what llama.cpp computes on it.
    #[default]
    Quantized,
}

impl std::str::FromStr for Weights {
    type Err = String;

    /// `quantized` or `f32` (the command-line spelling).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "quantized" | "q" => Ok(Weights::Quantized),
            "f32" => Ok(Weights::F32),
            other => Err(format!("unknown weights {other:?}: quantized or f32")),
        }
    }
}

impl std::fmt::Display for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Weights::Quantized => "quantized",
            Weights::F32 => "f32",
        })
    }
}

impl Llama {
    /// Reads the configuration ([`LlamaConfig::from_file`]) and every weight onto `device`,
    /// quantized matrices kept in their blocks ([`Weights::Quantized`]).
    pub fn from_gguf(file: &GgufFile, device: &Device) -> Result<Llama, ModelError> {
        Self::from_gguf_with_weights(file, device, Weights::default())
    }

    /// Like [`Llama::from_gguf`], choosing how the linear layers' matrices are held.
    pub fn from_gguf_with_weights(
        file: &GgufFile,
        device: &Device,
        weights: Weights,
    ) -> Result<Llama, ModelError> {
        let config = LlamaConfig::from_file(file)?;
        Self::load(file, config, device, weights)
    }

    /// Like [`Llama::from_gguf_with_weights`] with a given configuration (to change the RoPE
    /// style, say).
    pub fn from_gguf_with_config(
        file: &GgufFile,
        config: LlamaConfig,
        device: &Device,
        weights: Weights,
    ) -> Result<Llama, ModelError> {
        Self::load(file, config, device, weights)
    }

    fn load(
        file: &GgufFile,
        config: LlamaConfig,
        device: &Device,
        weights: Weights,
    ) -> Result<Llama, ModelError> {
        config.validate()?;
        let loader = Loader {
            file,
            device,
            weights,
        };
        let (n_embd, n_vocab) = (config.embedding_length, config.vocab_size);

        loader.check_vocab_rows(TOKEN_EMBD, &config)?;
        loader.check_vocab_rows(OUTPUT, &config)?;
        let token_embd = loader.embedding([n_vocab, n_embd])?;
        let output_norm = RmsNorm::new(
            loader.tensor::<1>(OUTPUT_NORM, [n_embd])?,
            config.rms_norm_eps,
        );
        let output = loader.optional_linear(OUTPUT, [n_vocab, n_embd])?;

        // The per-pair divisors, as llama.cpp's `get_rope_factors` picks them: Llama 3's, else
        // LongRoPE's long ones when the context exceeds the original one, else its short ones.
        let half = config.rope.dimension_count / 2;
        let long = config.context_length > config.rope.original_context_length;
        let factors = [
            ROPE_FREQS,
            if long {
                ROPE_FACTORS_LONG
            } else {
                ROPE_FACTORS_SHORT
            },
        ]
        .into_iter()
        .find(|name| file.tensor(name).is_some());
        let freq_factors = match factors {
            Some(name) => Some((name, loader.host_f32::<1>(name, [half])?)),
            None => None,
        };
        let rope = Rope::with_factors(&config.rope, freq_factors)?;

        let blocks = (0..config.block_count)
            .map(|layer| loader.block(&config, layer))
            .collect::<Result<Vec<_>, _>>()?;
        // The header's pages: its metadata and tensor infos were parsed at open.
        file.release_pages();

        Llama::from_parts(config, rope, token_embd, blocks, output_norm, output)
    }
}

/// Reads tensors of one file onto one device, checking their shapes.
struct Loader<'a> {
    file: &'a GgufFile,
    device: &'a Device,
    weights: Weights,
}

impl Loader<'_> {
    /// Checks that tensor `name` exists with row-major shape `expected`, in a type that can be
    /// loaded.
    fn check_shape<const D: usize>(
        &self,
        name: &str,
        expected: [usize; D],
    ) -> Result<(), ModelError> {
        let info = self
            .file
            .tensor(name)
            .ok_or_else(|| ModelError::MissingTensor {
                name: name.to_string(),
            })?;
        if !info.ty.is_supported() {
            return Err(ModelError::UnsupportedTensorType {
                name: name.to_string(),
                ty: info.ty,
                supported: GgmlType::all()
                    .filter(|t| t.is_supported())
                    .map(GgmlType::name)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let mismatch = || ModelError::ShapeMismatch {
            name: name.to_string(),
            expected: expected.to_vec(),
            found: info.shape(),
        };
        match gguf_importer::burn::dims::<D>(info) {
            Ok(found) if found == expected => Ok(()),
            _ => Err(mismatch()),
        }
    }

    /// Checks that the matrix `name` `[rows, n_embd]`, when present, has one row per token of the
    /// vocabulary ([`ModelError::VocabMismatch`]). Other defects (absent, not a matrix) are left
    /// to the shape check that follows.
    fn check_vocab_rows(&self, name: &str, config: &LlamaConfig) -> Result<(), ModelError> {
        let Some(info) = self.file.tensor(name) else {
            return Ok(());
        };
        match gguf_importer::burn::dims::<2>(info) {
            Ok([rows, _]) if rows != config.vocab_size => Err(ModelError::VocabMismatch {
                tensor: name.to_string(),
                rows,
                vocab_size: config.vocab_size,
                vocab_from: vocab_source(self.file, config),
            }),
            _ => Ok(()),
        }
    }

    /// Tensor `name`, which must have row-major shape `expected`, dequantized to f32 on the device.
    fn tensor<const D: usize>(
        &self,
        name: &str,
        expected: [usize; D],
    ) -> Result<Tensor<D>, ModelError> {
        self.check_shape(name, expected)?;
        let t = gguf_importer::burn::tensor_f32_shaped(self.file, name, expected, self.device)
            .map_err(|source| tensor_error(name, source))?;
        self.release(name);
        Ok(t)
    }

    /// Drops tensor `name`'s pages of the mapped file from resident memory once it is copied.
    fn release(&self, name: &str) {
        if let Some(info) = self.file.tensor(name) {
            self.file.release_tensor_pages(info);
        }
    }

    /// Tensor `name` of row-major shape `expected`, dequantized to f32 on the host.
    fn host_f32<const D: usize>(
        &self,
        name: &str,
        expected: [usize; D],
    ) -> Result<Vec<f32>, ModelError> {
        self.check_shape(name, expected)?;
        self.file
            .dequantize(name)
            .map_err(|source| tensor_error(name, source))
    }

    /// The linear layer `{prefix}.weight` `[n_out, n_in]` with its optional `{prefix}.bias`.
    fn linear(&self, weight_name: &str, shape: [usize; 2]) -> Result<Linear, ModelError> {
        // Missing or misshapen weights fail here, before anything is read.
        self.check_shape(weight_name, shape)?;
        let bias_name = bias_name(weight_name);
        let bias = match self.file.tensor(&bias_name) {
            Some(_) => Some(self.tensor::<1>(&bias_name, [shape[0]])?),
            None => None,
        };
        match self.quantized_weight(weight_name, shape)? {
            Some(q) => Ok(Linear::quantized(q, bias)),
            None => Ok(Linear::new(self.tensor::<2>(weight_name, shape)?, bias)),
        }
    }

    /// `token_embd.weight` `[n_vocab, n_embd]`: kept in its blocks with [`Weights::Quantized`]
    /// (unless F32), else f32.
    fn embedding(&self, shape: [usize; 2]) -> Result<Embedding, ModelError> {
        match self.quantized_weight(TOKEN_EMBD, shape)? {
            Some(q) => Ok(Embedding::quantized(q)),
            None => Ok(Embedding::new(self.tensor::<2>(TOKEN_EMBD, shape)?)),
        }
    }

    /// Whether matrix `name` of type `ty` is kept in its blocks: with [`Weights::Quantized`],
    /// unless F32, or a format the CPU kernels multiply but the device's (the GPU's) do not yet,
    /// which is dequantized to f32 there. A format no kernel multiplies is an error naming it.
    fn keeps_blocks(&self, name: &str, ty: GgmlType) -> Result<bool, ModelError> {
        if self.weights != Weights::Quantized || ty == GgmlType::F32 {
            return Ok(false);
        }
        check_kernel(name, ty)?;
        Ok(gguf_kernels::extension::has_kernel(self.device, ty))
    }

    /// Tensor `name` `[rows, cols]` as a [`QWeight`] when the weights stay quantized and the
    /// tensor is not F32; `None` otherwise.
    fn quantized_weight(
        &self,
        name: &str,
        shape: [usize; 2],
    ) -> Result<Option<QWeight>, ModelError> {
        self.check_shape(name, shape)?;
        let info = self
            .file
            .require_tensor(name)
            .map_err(|e| tensor_error(name, e))?;
        if !self.keeps_blocks(name, info.ty)? {
            return Ok(None);
        }
        let [rows, cols] = shape;
        let (data, row_bytes) = (self.file.tensor_data(info), info.row_bytes());
        let band = gguf_kernels::packed::band_rows(rows, row_bytes);
        if band == rows {
            let q = QWeight::new(info.ty, rows, cols, data, self.device)?;
            self.file.release_tensor_pages(info);
            return Ok(Some(q));
        }
        // A matrix kept in row bands: uploaded band by band, each band's pages of the mapped
        // file dropped once copied, so the load peaks at one band over the copies (Gemma 3's
        // 178 MB embedding: peak RSS 406 -> 296 MB in `bench`).
        let mut bands = Vec::new();
        for start in (0..rows).step_by(band) {
            let n = band.min(rows - start);
            let range = start * row_bytes..(start + n) * row_bytes;
            bands.push(QWeight::new(
                info.ty,
                n,
                cols,
                &data[range.clone()],
                self.device,
            )?);
            self.file
                .release_tensor_range(info, range.start, range.end - range.start);
        }
        self.file.release_tensor_pages(info);
        Ok(Some(QWeight::from_bands(bands)?))
    }

    /// [`Loader::linear`], or `None` when the weight is absent.
    fn optional_linear(
        &self,
        weight_name: &str,
        shape: [usize; 2],
    ) -> Result<Option<Linear>, ModelError> {
        match self.file.tensor(weight_name) {
            Some(_) => self.linear(weight_name, shape).map(Some),
            None => Ok(None),
        }
    }

    /// Block `layer`.
    fn block(&self, config: &LlamaConfig, layer: usize) -> Result<Block, ModelError> {
        Block::build(
            config,
            layer,
            &mut GgufBlock {
                loader: self,
                config,
                layer,
                split: Vec::new(),
            },
        )
    }

    /// The matrices of `fused` in block `layer` (shapes as `config` says), the rows of its tensor
    /// split apart: quantized rows stay in their blocks ([`Weights::Quantized`]; each row is whole
    /// blocks, so each part computes what the fused matmul computes for its rows), else f32.
    fn fused(
        &self,
        config: &LlamaConfig,
        layer: usize,
        fused: &Fused,
    ) -> Result<Vec<(LayerMatrix, Linear)>, ModelError> {
        let name = block_tensor(layer, &format!("{}.weight", fused.stem));
        let shapes: Vec<[usize; 2]> = fused.parts.iter().map(|m| m.shape(config, layer)).collect();
        let n_in = shapes[0][1];
        let total = shapes.iter().map(|[rows, _]| rows).sum();
        self.check_shape(&name, [total, n_in])?;
        let bias_name = bias_name(&name);
        let bias = match self.file.tensor(&bias_name) {
            Some(_) => Some(self.tensor::<1>(&bias_name, [total])?),
            None => None,
        };
        let info = self
            .file
            .require_tensor(&name)
            .map_err(|e| tensor_error(&name, e))?;
        let quantized = self.keeps_blocks(&name, info.ty)?;
        let dense = match quantized {
            true => None,
            false => Some(self.tensor::<2>(&name, [total, n_in])?), // [Σ rows, n_in]
        };
        let (data, row_bytes) = (self.file.tensor_data(info), info.row_bytes());
        let mut start = 0;
        let mut parts = Vec::with_capacity(shapes.len());
        for (&m, [rows, _]) in fused.parts.iter().zip(shapes) {
            let bias = bias.clone().map(|b| b.narrow(0, start, rows));
            let part = match &dense {
                Some(w) => Linear::new(w.clone().narrow(0, start, rows), bias),
                None => {
                    let bytes = &data[start * row_bytes..(start + rows) * row_bytes];
                    let q = QWeight::new(info.ty, rows, n_in, bytes, self.device)?;
                    Linear::quantized(q, bias)
                }
            };
            parts.push((m, part));
            start += rows;
        }
        self.file.release_tensor_pages(info);
        Ok(parts)
    }
}

/// The tensors of one block of a GGUF file, for [`Block::build`].
struct GgufBlock<'a> {
    loader: &'a Loader<'a>,
    config: &'a LlamaConfig,
    layer: usize,
    /// The matrices of a fused tensor not yet asked for.
    split: Vec<(LayerMatrix, Linear)>,
}

impl BlockSource for GgufBlock<'_> {
    type Error = ModelError;

    fn norm(&mut self, norm: LayerNorm, dim: usize) -> Result<RmsNorm, ModelError> {
        let name = block_tensor(self.layer, &format!("{}.weight", norm.stem()));
        let weight = self.loader.tensor::<1>(&name, [dim])?;
        Ok(RmsNorm::new(weight, self.config.rms_norm_eps))
    }

    /// `{stem}.weight` with its optional bias; or, when the file has no tensor of the fused
    /// tensor's first matrix but has the fused one, its part of that.
    fn linear(&mut self, matrix: LayerMatrix, shape: [usize; 2]) -> Result<Linear, ModelError> {
        if let Some(i) = self.split.iter().position(|(m, _)| *m == matrix) {
            return Ok(self.split.swap_remove(i).1);
        }
        let file = self.loader.file;
        let name = |stem: &str| block_tensor(self.layer, &format!("{stem}.weight"));
        if let Some(fused) = matrix.fused() {
            if file.tensor(&name(fused.parts[0].stem())).is_none()
                && file.tensor(&name(fused.stem)).is_some()
            {
                self.split = self.loader.fused(self.config, self.layer, fused)?;
                return self.linear(matrix, shape);
            }
        }
        self.loader.linear(&name(matrix.stem()), shape)
    }
}

/// An error naming tensor `name` when no kernel multiplies its type `ty` in its blocks.
fn check_kernel(name: &str, ty: GgmlType) -> Result<(), ModelError> {
    if gguf_kernels::cpu::has_kernel(ty) {
        return Ok(());
    }
    Err(ModelError::NoKernel {
        name: name.to_string(),
        ty,
        kernels: GgmlType::all()
            .filter(|&t| gguf_kernels::cpu::has_kernel(t))
            .map(GgmlType::name)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

fn tensor_error(name: &str, source: gguf_importer::GgufError) -> ModelError {
    ModelError::Tensor {
        name: name.to_string(),
        source,
    }
}

/// Where `config.vocab_size` came from, for [`ModelError::VocabMismatch`]: the metadata key that
/// holds that number (`{arch}.vocab_size`, or the length of `tokenizer.ggml.tokens`), else the
/// configuration itself (built or edited by hand).
fn vocab_source(file: &GgufFile, config: &LlamaConfig) -> String {
    let md = file.metadata();
    let key = arch_key(&config.architecture, llm::VOCAB_SIZE);
    if md.get_usize(&key).ok() == Some(config.vocab_size) {
        return key;
    }
    let tokens = md.get_array(keys::tokenizer::TOKENS).map(|(_, t)| t.len());
    if tokens.ok() == Some(config.vocab_size) {
        return format!("the length of {}", keys::tokenizer::TOKENS);
    }
    "the configuration's vocab_size".to_string()
}

/// `x.weight` -> `x.bias`.
fn bias_name(weight_name: &str) -> String {
    match weight_name.strip_suffix(".weight") {
        Some(stem) => format!("{stem}.bias"),
        None => format!("{weight_name}.bias"),
    }
}
