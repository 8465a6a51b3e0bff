//! What the model-running examples share: the flags that pick a model, a device and how the
//! weights are held, and the start-up that applies the first two.

use std::path::PathBuf;

use burn::tensor::Device;
use gguf_llama::cli;
use gguf_llama::device::{self, DeviceName};
use gguf_llama::model::{CacheTypes, KvType, Weights};

#[derive(clap::Args, Debug)]
pub struct ModelArgs {
    /// GGUF model file; without it, the embedded stories260K.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Device: wgpu, vulkan, metal, flex, ndarray or cpu (what this build supports).
    #[arg(long, default_value = "flex")]
    pub device: DeviceName,
    /// Threads of the CPU devices (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// `quantized`: weights stay in their GGUF blocks, multiplied by the fused kernels (on CPU
    /// devices activations are rounded to 8 bits per block, as llama.cpp does), so a quantized
    /// file computes what llama.cpp computes on it; `f32`: dequantized to f32 at load.
    #[arg(long, default_value = "quantized")]
    pub weights: Weights,
    /// KV cache type of the keys: f16 (llama.cpp's default), f32 or q8_0.
    #[arg(long, default_value = "f16")]
    pub cache_type_k: KvType,
    /// KV cache type of the values: f16 (llama.cpp's default) or f32 (llama.cpp quantizes values
    /// only with flash attention, which is not implemented here).
    #[arg(long, default_value = "f16")]
    pub cache_type_v: KvType,
}

impl ModelArgs {
    /// The KV cache types of `--cache-type-k` and `--cache-type-v`.
    #[allow(dead_code)] // not every example that includes this module runs a cache
    pub fn cache(&self) -> CacheTypes {
        CacheTypes {
            k: self.cache_type_k,
            v: self.cache_type_v,
        }
    }

    /// Sizes the CPU thread pool (`--threads`) and opens the device (`--device`).
    pub fn device(&self) -> anyhow::Result<Device> {
        cli::set_threads(self.threads);
        Ok(device::device(self.device)?)
    }
}
