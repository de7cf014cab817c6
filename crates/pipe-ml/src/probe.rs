//! Which backends this binary has, which of them can start on this machine, and what
//! `device: auto` resolves to (CUDA, then Vulkan, then the CPU). No burn here: the probes look
//! for what a backend needs before burn touches a device.

use super::device::DeviceChoice;
use std::sync::OnceLock;

/// Whether a backend can run here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Availability {
    /// Not compiled into this binary (its cargo feature was off).
    NotCompiled,
    /// Compiled in, but this machine lacks what it needs (the message says what).
    Missing(String),
    /// Compiled in and, as far as the probe can tell, able to start; the note says how far
    /// that is.
    Ready(&'static str),
}

/// What `auto` resolved to, and why the devices before it were passed over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutoPick {
    pub device: DeviceChoice,
    /// One clause per device considered, in order: `cuda: not compiled into this binary`.
    pub reasons: Vec<String>,
}

/// `auto`'s order of preference.
pub const AUTO_ORDER: [DeviceChoice; 3] =
    [DeviceChoice::Cuda, DeviceChoice::Vulkan, DeviceChoice::Cpu];

/// Whether `device` can run here.
pub fn availability(device: DeviceChoice) -> Availability {
    if !device.is_compiled() {
        return Availability::NotCompiled;
    }
    match device {
        DeviceChoice::Cpu => Availability::Ready("always available"),
        // wgpu enumerates adapters only by starting an instance (a second or more on a
        // software driver, and a driver crash is a crash of pipe); being compiled in is taken
        // as enough, and a run without an adapter fails the stage with wgpu's message.
        DeviceChoice::Vulkan => {
            Availability::Ready("compiled in; adapters are not probed before a run")
        }
        DeviceChoice::Cuda => match cuda_missing() {
            None => Availability::Ready("the NVIDIA driver and NVRTC load and list a device"),
            Some(why) => Availability::Missing(why),
        },
    }
}

/// `auto` as [`pick`] over this machine's [`availability`], probed once per process.
pub fn auto() -> &'static AutoPick {
    static PICK: OnceLock<AutoPick> = OnceLock::new();
    PICK.get_or_init(|| pick(availability))
}

/// The first device of [`AUTO_ORDER`] that `avail` calls ready; the CPU when none is (a CPU
/// this binary lacks then fails the stage saying which feature to build with).
pub fn pick(avail: impl Fn(DeviceChoice) -> Availability) -> AutoPick {
    let mut reasons = Vec::new();
    for device in AUTO_ORDER {
        let why = match avail(device) {
            Availability::Ready(note) => {
                reasons.push(format!("{device}: {note}"));
                return AutoPick { device, reasons };
            }
            Availability::NotCompiled => "not compiled into this binary".to_string(),
            Availability::Missing(m) => m,
        };
        reasons.push(format!("{device}: {why}"));
    }
    AutoPick {
        device: DeviceChoice::Cpu,
        reasons,
    }
}

/// Why no CUDA device can start here, or `None` when one can (always `Some` without the `cuda`
/// feature).
#[cfg(not(feature = "cuda"))]
pub fn cuda_missing() -> Option<String> {
    Some("not compiled into this binary".into())
}

/// What CUDA needs at run time, looked for before burn touches the device: cudarc loads the
/// driver and NVRTC lazily, on the first kernel, and panics inside a worker thread when either
/// is absent, so a machine without them would fail deep in training instead of at once.
#[cfg(feature = "cuda")]
pub fn cuda_missing() -> Option<String> {
    use cudarc::{driver, nvrtc};
    // SAFETY: both only try to dlopen the libraries by their usual names.
    if !unsafe { driver::sys::is_culib_present() } {
        return Some("libcuda.so.1 not found (no NVIDIA driver on this machine)".into());
    }
    if !unsafe { nvrtc::sys::is_culib_present() } {
        return Some(
            "libnvrtc not found (the CUDA runtime compiler, NVRTC, compiles pipe's kernels)".into(),
        );
    }
    if let Err(e) = driver::result::init() {
        return Some(format!("the NVIDIA driver did not start: {e}"));
    }
    match driver::result::device::get_count() {
        Ok(n) if n > 0 => None,
        Ok(_) => Some("the NVIDIA driver sees no CUDA device".into()),
        Err(e) => Some(format!("the NVIDIA driver lists no device: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_prefers_cuda_then_vulkan_then_cpu() {
        let ready = |d: DeviceChoice| {
            move |x: DeviceChoice| {
                if x == d || x == DeviceChoice::Cpu {
                    Availability::Ready("ok")
                } else {
                    Availability::Missing("no driver".into())
                }
            }
        };
        assert_eq!(pick(ready(DeviceChoice::Cuda)).device, DeviceChoice::Cuda);
        let v = pick(ready(DeviceChoice::Vulkan));
        assert_eq!(v.device, DeviceChoice::Vulkan);
        assert_eq!(v.reasons, ["cuda: no driver", "vulkan: ok"]);
        let c = pick(|d| match d {
            DeviceChoice::Cpu => Availability::Ready("ok"),
            _ => Availability::NotCompiled,
        });
        assert_eq!(c.device, DeviceChoice::Cpu);
        assert_eq!(
            c.reasons,
            [
                "cuda: not compiled into this binary",
                "vulkan: not compiled into this binary",
                "cpu: ok"
            ]
        );
        // Nothing ready: the CPU, whose run then says what to rebuild with.
        assert_eq!(
            pick(|_| Availability::NotCompiled).device,
            DeviceChoice::Cpu
        );
    }

    #[test]
    fn this_build_resolves_auto_to_a_compiled_device() {
        let p = auto();
        assert!(p.device.is_compiled() || compiled_none(), "{p:?}");
        if !cfg!(feature = "cuda") && !cfg!(feature = "vulkan") {
            assert_eq!(p.device, DeviceChoice::Cpu);
            assert_eq!(availability(DeviceChoice::Cuda), Availability::NotCompiled);
        }
    }

    fn compiled_none() -> bool {
        super::super::device::compiled_devices().is_empty()
    }
}
