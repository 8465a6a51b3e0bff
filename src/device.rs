//! Devices by name (`--device wgpu|vulkan|metal|flex|ndarray|cpu`), with a clear error when a
//! device is missing or not built, instead of the panic a lazily created wgpu device gives on its
//! first operation.

use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};

use burn::tensor::Device;

/// A device kind a model can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceName {
    /// wgpu on whichever graphics API the machine offers (Vulkan, Metal, DX12).
    Wgpu,
    /// wgpu pinned to Vulkan.
    Vulkan,
    /// wgpu pinned to Metal.
    Metal,
    /// Burn's pure-Rust CPU backend (the fast CPU device).
    Flex,
    /// Burn's NdArray CPU backend (deprecated by Burn in favour of flex; supported).
    NdArray,
    /// CubeCL's CPU backend (needs burn's `cpu` feature, not in the default build).
    Cpu,
}

impl DeviceName {
    /// Every name, for help texts.
    pub const ALL: [DeviceName; 6] = [
        DeviceName::Wgpu,
        DeviceName::Vulkan,
        DeviceName::Metal,
        DeviceName::Flex,
        DeviceName::NdArray,
        DeviceName::Cpu,
    ];

    /// The name as written on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceName::Wgpu => "wgpu",
            DeviceName::Vulkan => "vulkan",
            DeviceName::Metal => "metal",
            DeviceName::Flex => "flex",
            DeviceName::NdArray => "ndarray",
            DeviceName::Cpu => "cpu",
        }
    }
}

impl fmt::Display for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeviceName {
    type Err = DeviceError;
    fn from_str(s: &str) -> Result<Self, DeviceError> {
        DeviceName::ALL
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| DeviceError::UnknownName {
                name: s.to_string(),
            })
    }
}

/// Why a device could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeviceError {
    #[error("unknown device {name:?}: expected one of wgpu, vulkan, metal, flex, ndarray, cpu")]
    UnknownName { name: String },
    #[error("device {name} is not in this build (enable the `{feature}` feature)")]
    NotBuilt {
        name: DeviceName,
        feature: &'static str,
    },
    #[error("device {name} is unavailable: {reason}")]
    Unavailable { name: DeviceName, reason: String },
}

/// wgpu runtimes can be initialized once per process: keep each one's device (or its error).
#[cfg(feature = "wgpu")]
fn wgpu_device(
    name: DeviceName,
    api: burn::tensor::wgpu::WgpuBackend,
) -> Result<Device, DeviceError> {
    type Cache = Mutex<Vec<(DeviceName, Result<Device, String>)>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(Vec::new()));
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, r)) = cache.iter().find(|(n, _)| *n == name) {
        return r
            .clone()
            .map_err(|reason| DeviceError::Unavailable { name, reason });
    }
    let result = Device::wgpu_options()
        .graphics_api(api)
        .init()
        .map_err(|e| e.to_string());
    cache.push((name, result.clone()));
    result.map_err(|reason| DeviceError::Unavailable { name, reason })
}

/// The device of a name, initialized, or why not.
pub fn device(name: DeviceName) -> Result<Device, DeviceError> {
    #[allow(unreachable_code)]
    match name {
        DeviceName::Wgpu | DeviceName::Vulkan | DeviceName::Metal => {
            #[cfg(feature = "wgpu")]
            {
                use burn::tensor::wgpu::WgpuBackend;
                let api = match name {
                    DeviceName::Vulkan => WgpuBackend::Vulkan,
                    DeviceName::Metal => WgpuBackend::Metal,
                    _ => WgpuBackend::Auto,
                };
                return wgpu_device(name, api);
            }
            Err(DeviceError::NotBuilt {
                name,
                feature: "wgpu",
            })
        }
        DeviceName::Flex => {
            #[cfg(feature = "flex")]
            return Ok(Device::flex());
            Err(DeviceError::NotBuilt {
                name,
                feature: "flex",
            })
        }
        DeviceName::NdArray => {
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            return Ok(Device::ndarray());
            Err(DeviceError::NotBuilt {
                name,
                feature: "ndarray",
            })
        }
        DeviceName::Cpu => Err(DeviceError::NotBuilt {
            name,
            feature: "burn/cpu",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print() {
        for d in DeviceName::ALL {
            assert_eq!(d.as_str().parse::<DeviceName>().unwrap(), d);
        }
        assert!(matches!(
            "tpu".parse::<DeviceName>(),
            Err(DeviceError::UnknownName { .. })
        ));
    }
}
