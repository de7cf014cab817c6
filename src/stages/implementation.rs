//! The `implementation` component of a stage's cache key: which code outside this crate decides
//! the stage's output bytes. A stage's own algorithm is covered by its `VERSION` (enforced by
//! the golden-digest test); what it delegates to dependencies is named here, with the exact
//! versions from Cargo.lock (see `build.rs`), so a dependency upgrade that may change outputs
//! invalidates them by itself:
//!
//! - ML stages (train, evaluate, ensemble, predict, analyze): burn's version and the backend
//!   that runs the kernels (float results differ between flex, wgpu and CUDA).
//! - `stack`: those two, and the classifier crates (smartcore, forust-ml).
//! - Folder sources: the PNG decoder, the resampler (`image`) and libjpeg-turbo (`mozjpeg-sys`
//!   bundles it; its version is the decoder's).
//!
//! - Command stages: the values of their `env` whitelist (as digests).
//!
//! Figures (PNG encoding, fonts) are deliberately absent: a new encoder may compress a chart
//! differently, but no stage reads a figure, so old and new bytes are equally valid outputs.

use super::StageConfig;
use super::source::Source;
use crate::ml::backend::DeviceChoice;
use std::collections::BTreeMap;

include!(concat!(env!("OUT_DIR"), "/crate_versions.rs"));

/// The locked version of `name` (one of build.rs's `CRATES`).
pub fn crate_version(name: &str) -> &'static str {
    CRATE_VERSIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("unknown", |(_, v)| v)
}

/// burn's CPU backend as built here: `flex` with the convolution patch of
/// `vendor/burn-flex/PATCH.md`. Bump the revision whenever that patch changes, since it changes
/// the bytes every CPU stage computes.
pub const CPU_BACKEND: &str = "flex+pipe-conv.3";

/// The burn backend that runs on `device`.
pub fn backend(device: DeviceChoice) -> &'static str {
    match device {
        DeviceChoice::Cpu => CPU_BACKEND,
        DeviceChoice::Vulkan => "wgpu-vulkan",
        DeviceChoice::Cuda => "cuda",
    }
}

fn entries(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl StageConfig {
    /// Name → version of the external code that decides this stage's output bytes.
    pub fn implementation(&self) -> BTreeMap<String, String> {
        match self {
            StageConfig::Source(Source::Folder(_) | Source::ImageFolder(_)) => entries(&[
                ("image", crate_version("image")),
                ("png", crate_version("png")),
                ("libjpeg-turbo (mozjpeg-sys)", crate_version("mozjpeg-sys")),
            ]),
            StageConfig::Train(_)
            | StageConfig::Evaluate(_)
            | StageConfig::Ensemble(_)
            | StageConfig::Predict(_)
            | StageConfig::Analyze(_) => entries(&[
                ("burn", crate_version("burn")),
                ("backend", backend(self.device())),
            ]),
            // The CNN's features, then the classical classifier's crates.
            StageConfig::Stack(_) => entries(&[
                ("burn", crate_version("burn")),
                ("backend", backend(self.device())),
                ("smartcore", crate_version("smartcore")),
                ("forust-ml", crate_version("forust-ml")),
            ]),
            StageConfig::Source(_)
            | StageConfig::Hash(_)
            | StageConfig::Dedup(_)
            | StageConfig::FilterConflicts(_)
            | StageConfig::Split(_)
            | StageConfig::Augment(_) => BTreeMap::new(),
            // Its program is the user's (a dep when it is a script); what pipe adds to the
            // key is the whitelisted environment.
            StageConfig::Command(c) => c.env_digests(),
        }
    }

    /// The device of an ML stage: its `device` field (the command line's `--device` enters the
    /// configuration there), the CPU when it has none.
    fn device(&self) -> DeviceChoice {
        self.canonical()
            .get("device")
            .and_then(|d| serde_json::from_value(d.clone()).ok())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(kind: &str, fields: serde_json::Value) -> StageConfig {
        StageConfig::from_json(kind, fields).unwrap().unwrap()
    }

    #[test]
    fn versions_come_from_the_lock_file() {
        let lock = include_str!("../../Cargo.lock");
        for (name, version) in CRATE_VERSIONS {
            let entry = format!("name = \"{name}\"\nversion = \"{version}\"");
            assert!(lock.contains(&entry), "{entry}");
        }
        assert_eq!(crate_version("burn"), "0.22.1");
    }

    #[test]
    fn ml_stages_name_burn_and_the_backend_of_their_device() {
        let cpu = stage("train", serde_json::json!({"model": "b1"}));
        let gpu = stage(
            "train",
            serde_json::json!({"model": "b1", "device": "vulkan"}),
        );
        assert_eq!(cpu.implementation()["burn"], crate_version("burn"));
        assert_eq!(cpu.implementation()["backend"], CPU_BACKEND);
        assert_eq!(gpu.implementation()["backend"], "wgpu-vulkan");
        let eval = stage("evaluate", serde_json::json!({}));
        assert_eq!(eval.implementation()["backend"], CPU_BACKEND);
    }

    #[test]
    fn folder_sources_name_their_decoders_and_other_sources_nothing() {
        let folder = stage(
            "source",
            serde_json::json!({"format": "folder", "dir": "imgs"}),
        );
        let imp = folder.implementation();
        assert_eq!(imp["image"], crate_version("image"));
        assert!(imp.contains_key("libjpeg-turbo (mozjpeg-sys)"), "{imp:?}");
        let raw = stage(
            "source",
            serde_json::json!({"format": "raw", "images": "x.raw"}),
        );
        assert!(raw.implementation().is_empty());
        assert!(
            stage("hash", serde_json::json!({}))
                .implementation()
                .is_empty()
        );
    }
}
