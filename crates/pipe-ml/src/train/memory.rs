//! Whether a training step's batch fits the device's memory, told in words instead of an
//! allocator's panic.
//!
//! On the CPU the step's memory is estimated before training (the activations autodiff keeps
//! for the backward pass, from the model's layer shapes, times the batch; weights, gradients and
//! Adam's two moments) and compared with the memory the machine (or its cgroup, under Slurm)
//! has available. On a cubecl device (Vulkan, CUDA) the allocator's own refusal, an error or a
//! panic of the first steps whose message says it is out of memory, becomes the same error.

use crate::backend::{DeviceChoice, MlError};
use crate::models;
use indicatif::HumanBytes;

use super::*;

/// Bytes of one `f32`.
const F32: u64 = 4;

/// What a training step on batches of `batch` images holds at least: the kept activations, the
/// trainable weights with their gradients and Adam moments, and the frozen weights.
pub(super) fn step_bytes(spec: &models::ModelSpec, batch: usize) -> u64 {
    let per_image = models::activation_values(spec) as u64;
    let (trainable, total) = models::param_counts(spec);
    let frozen = total.saturating_sub(trainable) as u64;
    F32 * (batch as u64 * per_image + 4 * trainable as u64 + frozen)
}

/// Memory this process may still take: the machine's available memory, or its cgroup's free
/// memory where that is less (a Slurm job's limit).
pub(super) fn available_bytes() -> u64 {
    let mut sys = sysinfo::System::new();
    sys.refresh_memory();
    let machine = sys.available_memory();
    match sys.cgroup_limits() {
        Some(c) if c.free_memory > 0 => machine.min(c.free_memory),
        _ => machine,
    }
}

/// Refuses a CPU training whose step cannot fit: `batch` is the largest batch the epoch makes
/// (the batch size, or the training split when it is smaller).
pub(super) fn check_cpu_fits(cfg: &TrainConfig, batch: usize) -> Result<(), MlError> {
    if cfg.device != DeviceChoice::Cpu {
        return Ok(());
    }
    let needed = step_bytes(&cfg.model, batch);
    let available = available_bytes();
    if needed <= available {
        return Ok(());
    }
    Err(too_large(cfg, batch, needed, available))
}

fn too_large(cfg: &TrainConfig, batch: usize, needed: u64, available: u64) -> MlError {
    let fixed = step_bytes(&cfg.model, 0);
    let per_image = step_bytes(&cfg.model, 1) - fixed;
    let fits = available.saturating_sub(fixed) / per_image.max(1);
    let advice = if fits == 0 {
        "even one image does not fit: use a smaller model or smaller images".to_string()
    } else {
        format!("at most about {fits} images per batch would fit")
    };
    MlError::TooLarge {
        device: cfg.device,
        batch,
        detail: format!(
            "a training step needs at least {} (the activations of {batch} images kept for the \
             backward pass, {} each, and {} of weights, gradients and Adam moments), but {} of \
             memory is available; {advice}",
            HumanBytes(needed),
            HumanBytes(per_image),
            HumanBytes(fixed),
            HumanBytes(available),
        ),
    }
}

/// Whether a backend's message says that an allocation failed for want of memory (cubecl's
/// `IoError::OutOfMemory` / `BufferTooBig`, `LaunchError::OutOfMemory`, the drivers' own words).
pub(super) fn says_out_of_memory(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "out of memory",
        "out-of-memory",
        "out of device memory",
        "can't allocate buffer",
        "outofmemory",
        "buffertoobig",
        "cuda_error_out_of_memory",
        "error_out_of_device_memory",
    ]
    .iter()
    .any(|p| m.contains(p))
}

/// The error of a step that failed with `message`: [`MlError::TooLarge`] when the message says
/// the device ran out of memory, else the backend's error as it is.
pub(super) fn step_error(
    device: DeviceChoice,
    memory: Option<u64>,
    batch: usize,
    message: String,
) -> MlError {
    if !says_out_of_memory(&message) {
        return MlError::Device(message);
    }
    let first = message.lines().next().unwrap_or_default().trim();
    let memory = memory.map_or_else(
        || "its memory size is not reported".to_string(),
        |m| format!("the device has {} of memory", HumanBytes(m)),
    );
    MlError::TooLarge {
        device,
        batch,
        detail: format!("a training step could not allocate ({first}); {memory}"),
    }
}

/// The text of a caught panic.
pub(super) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// The total memory of a cubecl device, where its runtime reports it.
pub(super) fn device_memory(device: &burn::prelude::Device) -> Option<u64> {
    #[cfg(any(feature = "vulkan", feature = "cuda"))]
    {
        use burn::backend::DispatchDevice;
        match device.as_dispatch() {
            DispatchDevice::Cube(d) => d.client().properties().memory.max_memory(),
            _ => None,
        }
    }
    #[cfg(not(any(feature = "vulkan", feature = "cuda")))]
    {
        let _ = device;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{ModelKind, ModelSpec};
    use pipe_data::Shape;

    #[test]
    fn the_estimate_grows_with_the_batch_and_the_image() {
        let b3 = ModelSpec::new(ModelKind::B3);
        let (one, two) = (step_bytes(&b3, 124), step_bytes(&b3, 248));
        let fixed = step_bytes(&b3, 0);
        assert_eq!(two - fixed, 2 * (one - fixed));
        // B3's weights, each with a gradient and two moments.
        assert_eq!(fixed, 16 * models::param_count(&b3) as u64);
        let mut big = b3.clone();
        big.input = Shape::new(224, 224, 3);
        assert!(step_bytes(&big, 124) > 10 * one);
        // A frozen ResNet base keeps no activations: TL1 holds less per image than TL3.
        let tl = |k| step_bytes(&ModelSpec::new(k), 1) - step_bytes(&ModelSpec::new(k), 0);
        assert!(tl(ModelKind::Tl3) > 0);
        assert!(tl(ModelKind::Tl1) < tl(ModelKind::Tl3) / 100);
    }

    #[test]
    fn an_absurd_batch_is_refused_with_its_numbers() {
        let mut cfg = TrainConfig::new(ModelSpec::new(ModelKind::B1), 1e-3, 1);
        cfg.model.input = Shape::new(512, 512, 3);
        cfg.batch_size = 1 << 16;
        let err = check_cpu_fits(&cfg, cfg.batch_size).unwrap_err();
        assert!(err.is_user_error());
        let msg = err.to_string();
        for want in ["batch_size 65536", "cpu", "TiB", "available", "would fit"] {
            assert!(msg.contains(want), "{want}: {msg}");
        }
        // The report's setting fits any machine that runs the tests.
        let mut ok = TrainConfig::new(ModelSpec::new(ModelKind::B1), 1e-3, 1);
        ok.batch_size = 16;
        check_cpu_fits(&ok, 16).unwrap();
    }

    #[test]
    fn allocator_messages_become_a_batch_error() {
        for m in [
            "out of device memory allocating 4294967296 bytes\nbacktrace…",
            "An out-of-memory error happened during launch",
            "can't allocate buffer of size: 123",
            "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")",
        ] {
            let e = step_error(DeviceChoice::Cuda, Some(80 << 30), 4096, m.into());
            let msg = e.to_string();
            assert!(matches!(e, MlError::TooLarge { .. }), "{msg}");
            assert!(
                msg.contains("batch_size 4096") && msg.contains("80.00 GiB"),
                "{msg}"
            );
            assert!(!msg.contains("backtrace"), "{msg}");
        }
        let other = step_error(DeviceChoice::Vulkan, None, 8, "shader failed".into());
        assert!(matches!(other, MlError::Device(_)));
    }
}
