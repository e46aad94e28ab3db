//! Which device runs the model: the CPU by default, an NVIDIA GPU with the `cuda` feature.
//!
//! The device is an option string (`cpu`, `cuda`, `cuda:N`) so that configuration files and the
//! CLI can name it. A build without the `cuda` feature still parses `cuda` (so a config stays
//! valid across builds) but refuses to open it with a message saying how to get it.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

use super::ParseOptionError;

/// A device request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    #[default]
    Cpu,
    /// A CUDA device by ordinal (`cuda` is `cuda:0`).
    Cuda(usize),
}

impl DeviceSpec {
    /// Whether this build can open CUDA devices.
    pub const CUDA_COMPILED: bool = cfg!(feature = "cuda");

    pub fn is_cpu(self) -> bool {
        matches!(self, DeviceSpec::Cpu)
    }

    /// Opens the device. `Err` carries a message for the user.
    pub(crate) fn open(self) -> Result<Device, String> {
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(n) => {
                if !Self::CUDA_COMPILED {
                    return Err(format!(
                        "device `cuda:{n}` requested, but this build has no CUDA support \
                         (rebuild with `--features cuda`, or use device `cpu`)"
                    ));
                }
                Device::new_cuda(n).map_err(|e| format!("cannot open device `cuda:{n}`: {e}"))
            }
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = ParseOptionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            other => {
                if let Some(n) = other.strip_prefix("cuda:") {
                    n.parse::<usize>()
                        .map(DeviceSpec::Cuda)
                        .map_err(|_| ParseOptionError(format!("invalid CUDA ordinal in device `{other}`")))
                } else {
                    Err(ParseOptionError(format!("unknown device `{other}` (expected `cpu`, `cuda` or `cuda:N`)")))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!("cpu".parse::<DeviceSpec>().ok(), Some(DeviceSpec::Cpu));
        assert_eq!("CUDA".parse::<DeviceSpec>().ok(), Some(DeviceSpec::Cuda(0)));
        assert_eq!("cuda:3".parse::<DeviceSpec>().ok(), Some(DeviceSpec::Cuda(3)));
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
        assert!("metal".parse::<DeviceSpec>().is_err());
        assert_eq!(DeviceSpec::Cuda(1).to_string(), "cuda:1");
        assert_eq!(DeviceSpec::Cpu.to_string(), "cpu");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_feature_is_a_clear_error() {
        let err = DeviceSpec::Cuda(0).open().err().unwrap_or_default();
        assert!(err.contains("--features cuda"), "{err}");
    }
}
