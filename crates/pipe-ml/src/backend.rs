//! The burn device for a [`DeviceChoice`], and the error type of everything under `ml`.
//!
//! The crate is built for one or more burn backends (`cpu` = burn's pure-Rust `flex` backend,
//! the default; `vulkan`; `cuda`); the device is picked at run time from what was compiled in.

pub use super::device::{DeviceChoice, compiled_devices};
use std::path::PathBuf;

/// Errors of model building, training and inference.
#[derive(Debug, thiserror::Error)]
pub enum MlError {
    /// The requested device's backend was not compiled into this binary.
    #[error(
        "device `{device}` is not available in this build: it needs the cargo feature `{feature}`; \
         rebuild with `cargo build --release --features {feature}`{note}"
    )]
    DeviceUnavailable {
        device: DeviceChoice,
        feature: &'static str,
        /// Extra advice (e.g. what the device needs at run time).
        note: &'static str,
    },
    /// The backend is compiled in, but this machine cannot run it (no driver, no device).
    #[error("device `{device}` cannot start on this machine: {missing}")]
    DeviceMissing {
        device: DeviceChoice,
        missing: String,
    },
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A weights / optimiser record could not be saved, loaded or applied.
    #[error("{path}: {message}")]
    Record { path: PathBuf, message: String },
    /// A JSON side file (model.json, resume state) is malformed.
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// Training was stopped by the caller after an epoch; the resume checkpoint is in place.
    #[error("training interrupted after epoch {epoch}; rerun to resume from the checkpoint")]
    Interrupted { epoch: u32 },
    /// The configuration (or the data given with it) is invalid; every problem is listed.
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    InvalidConfig(Vec<String>),
    /// The backend reported an execution failure.
    #[error("device error: {0}")]
    Device(String),
    /// A training step of this batch size does not fit the device's memory.
    #[error("batch_size {batch} does not fit the memory of device `{device}`: {detail}")]
    TooLarge {
        device: DeviceChoice,
        batch: usize,
        detail: String,
    },
}

impl MlError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> MlError {
        let path = path.into();
        move |source| MlError::Io { path, source }
    }
}

/// The plain (non-autodiff) burn device for `choice`, or why it is not available.
pub fn device(choice: DeviceChoice) -> Result<burn::prelude::Device, MlError> {
    match choice {
        #[cfg(feature = "cpu")]
        DeviceChoice::Cpu => Ok(burn::prelude::Device::flex()),
        #[cfg(feature = "vulkan")]
        DeviceChoice::Vulkan => Ok(burn::prelude::Device::vulkan(Default::default())),
        #[cfg(feature = "cuda")]
        DeviceChoice::Cuda => match super::probe::cuda_missing() {
            None => Ok(burn::prelude::Device::cuda(0)),
            Some(missing) => Err(MlError::DeviceMissing {
                device: DeviceChoice::Cuda,
                missing,
            }),
        },
        #[allow(unreachable_patterns)]
        other => Err(MlError::DeviceUnavailable {
            device: other,
            feature: other.feature(),
            note: match other {
                DeviceChoice::Cuda => {
                    " (builds offline; needs an NVIDIA driver and NVRTC, libnvrtc, at run time)"
                }
                DeviceChoice::Vulkan => " (needs a Vulkan driver at run time)",
                DeviceChoice::Cpu => "",
            },
        }),
    }
}

impl MlError {
    pub fn is_user_error(&self) -> bool {
        match self {
            MlError::DeviceUnavailable { .. }
            | MlError::DeviceMissing { .. }
            | MlError::InvalidConfig(_)
            | MlError::TooLarge { .. } => true,
            // Loading a weights file the pipeline names (missing, wrong format, no match).
            MlError::Record { .. } => true,
            MlError::Io { .. }
            | MlError::Json { .. }
            | MlError::Interrupted { .. }
            | MlError::Device(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_devices_match_features() {
        let got = compiled_devices();
        assert_eq!(got.contains(&DeviceChoice::Cpu), cfg!(feature = "cpu"));
        for d in got {
            assert!(device(d).is_ok());
        }
    }

    #[cfg(not(feature = "vulkan"))]
    #[test]
    fn missing_backend_names_feature_and_rebuild_command() {
        let err = device(DeviceChoice::Vulkan).unwrap_err();
        assert!(matches!(err, MlError::DeviceUnavailable { .. }));
        let msg = err.to_string();
        assert!(msg.contains("`vulkan`"), "{msg}");
        assert!(
            msg.contains("cargo build --release --features vulkan"),
            "{msg}"
        );
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn missing_cuda_names_feature_and_run_time_needs() {
        let msg = device(DeviceChoice::Cuda).unwrap_err().to_string();
        assert!(
            msg.contains("--features cuda") && msg.contains("NVRTC"),
            "{msg}"
        );
    }

    fn p() -> std::path::PathBuf {
        std::path::PathBuf::from("x")
    }
    fn enospc() -> std::io::Error {
        std::io::Error::from(std::io::ErrorKind::StorageFull)
    }
    fn json_err() -> serde_json::Error {
        serde_json::from_str::<u8>("x").unwrap_err()
    }

    #[test]
    fn ml_errors() {
        let user = [
            MlError::DeviceUnavailable {
                device: DeviceChoice::Vulkan,
                feature: "vulkan",
                note: "",
            },
            MlError::InvalidConfig(vec!["shape".into()]),
            MlError::Record {
                path: p(),
                message: "not a ResNet".into(),
            },
        ];
        let internal = [
            MlError::Io {
                path: p(),
                source: enospc(),
            },
            MlError::Json {
                path: p(),
                source: json_err(),
            },
            MlError::Interrupted { epoch: 2 },
            MlError::Device("oom".into()),
        ];
        assert!(user.iter().all(MlError::is_user_error));
        assert!(!internal.iter().any(MlError::is_user_error));
    }
}
