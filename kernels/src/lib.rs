//! Kernels for GGUF models in Burn: the fused quantized matmul ([`extension`]: CubeCL kernels in
//! [`cube`] for wgpu, SIMD kernels in [`cpu`] for the CPU devices, [`reference`] as the plain
//! dequantize-then-multiply they are tested against), the packed weights they read ([`packed`]),
//! and the layer operations in ggml's order for the CPU devices ([`ggml_ops`]).
pub mod cpu;
#[cfg(feature = "wgpu")]
pub mod cube;
pub mod error;
#[cfg(any(feature = "wgpu", feature = "flex", feature = "ndarray"))]
pub mod extension;
#[cfg(any(feature = "flex", feature = "ndarray"))]
pub mod ggml_ops;
pub mod packed;
pub mod reference;
