//! Where tensors live and kernels run, as the YAML, the command line and the keys name it. No
//! burn here: the CLI, the stages' configuration and the Slurm job scripts use it without
//! touching a tensor ([`super::backend::device`] turns it into a burn device).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where tensors live and kernels run.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "snake_case")]
pub enum DeviceChoice {
    /// burn's pure-Rust `flex` CPU backend (cargo feature `cpu`, the default).
    #[default]
    Cpu,
    /// A GPU through wgpu pinned to Vulkan (cargo feature `vulkan`).
    Vulkan,
    /// An NVIDIA GPU through burn-cuda (cargo feature `cuda`).
    Cuda,
}

impl DeviceChoice {
    /// Every choice, in display order.
    pub const ALL: [DeviceChoice; 3] =
        [DeviceChoice::Cpu, DeviceChoice::Vulkan, DeviceChoice::Cuda];

    /// The name used in YAML and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Vulkan => "vulkan",
            DeviceChoice::Cuda => "cuda",
        }
    }

    /// The cargo feature that compiles this backend in.
    pub fn feature(self) -> &'static str {
        self.as_str()
    }

    /// Whether this build contains the backend.
    pub fn is_compiled(self) -> bool {
        match self {
            DeviceChoice::Cpu => cfg!(feature = "cpu"),
            DeviceChoice::Vulkan => cfg!(feature = "vulkan"),
            DeviceChoice::Cuda => cfg!(feature = "cuda"),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeviceChoice::ALL
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown device `{s}`: expected one of cpu, vulkan, cuda"))
    }
}

/// A device as asked for on the command line or in YAML: a concrete one, or `auto` (resolved by
/// [`super::probe::auto`] before any key is computed, so only concrete devices reach a key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceRequest {
    Auto,
    Named(DeviceChoice),
}

/// The word that asks for [`DeviceRequest::Auto`].
pub const AUTO: &str = "auto";

impl fmt::Display for DeviceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceRequest::Auto => f.write_str(AUTO),
            DeviceRequest::Named(d) => d.fmt(f),
        }
    }
}

impl FromStr for DeviceRequest {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case(AUTO) {
            return Ok(DeviceRequest::Auto);
        }
        s.parse()
            .map(DeviceRequest::Named)
            .map_err(|_| format!("unknown device `{s}`: expected one of auto, cpu, vulkan, cuda"))
    }
}

/// The devices this binary was built with.
pub fn compiled_devices() -> Vec<DeviceChoice> {
    DeviceChoice::ALL
        .into_iter()
        .filter(|d| d.is_compiled())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in DeviceChoice::ALL {
            assert_eq!(d.to_string().parse::<DeviceChoice>().unwrap(), d);
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(json, format!("\"{d}\""));
        }
        assert!(
            "tpu"
                .parse::<DeviceChoice>()
                .unwrap_err()
                .contains("cpu, vulkan, cuda")
        );
        assert_eq!("Auto".parse(), Ok(DeviceRequest::Auto));
        assert_eq!("cuda".parse(), Ok(DeviceRequest::Named(DeviceChoice::Cuda)));
        assert_eq!(DeviceRequest::Auto.to_string(), "auto");
        assert!(
            "tpu"
                .parse::<DeviceRequest>()
                .unwrap_err()
                .contains("auto, cpu")
        );
    }
}
