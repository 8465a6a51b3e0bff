//! placeholder
pub mod cpu;
#[cfg(feature = "wgpu")]
pub mod cube;
pub mod error;
#[cfg(any(feature = "wgpu", feature = "flex", feature = "ndarray"))]
pub mod extension;
pub mod packed;
pub mod reference;
