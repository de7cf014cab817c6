//! Loading torchvision's pretrained ResNet weights: ResNet-50 onto our Keras-named layers, and
//! the state-dict loader the BasicBlock nets ([`super::basic`]) share.

use burn::module::Module;
use burn::store::{
    KeyRemapper, ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};
use std::collections::BTreeMap;
use std::path::Path;

use super::*;

/// What [`load_pretrained`] did, in the file's (torchvision) key names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Tensors copied into the network.
    pub loaded: Vec<String>,
    /// Tensors of the file the network has no place for (`fc.*`, `*.num_batches_tracked`, …).
    pub skipped: Vec<String>,
    /// Backbone tensors torchvision has but the file lacks (they keep their random init).
    /// Convolution biases (absent from torchvision, kept at zero) and the new head are never
    /// listed.
    pub missing: Vec<String>,
}

/// Our module path prefix of a layer → torchvision's (`res5.1.branch2b` → `layer4.1.conv2`,
/// `res2.0.bn_branch1` → `layer1.0.downsample.1`, `bn_conv1` → `bn1`).
pub(super) fn torchvision_prefix(prefix: &str) -> Option<String> {
    let parts: Vec<&str> = prefix.split('.').collect();
    match parts.as_slice() {
        ["conv1"] => Some("conv1".into()),
        ["bn_conv1"] => Some("bn1".into()),
        [stage, block, layer] => {
            let stage: usize = stage.strip_prefix("res")?.parse().ok()?;
            let layer = match *layer {
                "branch2a" => "conv1",
                "branch2b" => "conv2",
                "branch2c" => "conv3",
                "bn_branch2a" => "bn1",
                "bn_branch2b" => "bn2",
                "bn_branch2c" => "bn3",
                "branch1" => "downsample.0",
                "bn_branch1" => "downsample.1",
                _ => return None,
            };
            Some(format!("layer{}.{block}.{layer}", stage.checked_sub(1)?))
        }
        _ => None,
    }
}

/// torchvision key of one of our module paths (`res5.1.bn_branch2b.gamma` →
/// `layer4.1.bn2.weight`); `None` for the head.
pub fn torchvision_key(path: &str) -> Option<String> {
    let (prefix, leaf) = path.rsplit_once('.')?;
    let leaf = match leaf {
        "gamma" => "weight",
        "beta" => "bias",
        other => other,
    };
    Some(format!("{}.{leaf}", torchvision_prefix(prefix)?))
}

/// Exact-key remapping patterns torchvision → our paths, generated from the network itself so
/// the two cannot drift apart. Leaves keep torchvision's names: burn-store's PyTorch adapter
/// matches a batch norm's `gamma`/`beta` to `weight`/`bias`.
pub(super) fn remap_patterns(model: &ResNet50Classifier) -> Vec<(String, String)> {
    let mut patterns: BTreeMap<String, String> = BTreeMap::new();
    for (path, _) in tensor_sizes(model) {
        let Some((prefix, _)) = path.rsplit_once('.') else {
            continue;
        };
        let Some(tv_prefix) = torchvision_prefix(prefix) else {
            continue;
        };
        let leaves: &[&str] = if prefix.contains("bn") {
            &["weight", "bias", "running_mean", "running_var"]
        } else {
            &["weight", "bias"]
        };
        for leaf in leaves {
            patterns.insert(
                format!("^{}\\.{leaf}$", tv_prefix.replace('.', "\\.")),
                format!("{prefix}.{leaf}"),
            );
        }
    }
    patterns.into_iter().collect()
}

pub(super) fn is_conv_bias_or_head(path: &str) -> bool {
    path.starts_with("dense_")
        || (path.ends_with(".bias")
            && keras_layer_of(path).is_some_and(|l| l.starts_with("res") || l == "conv1"))
}

/// Loads a torchvision ResNet-50 state dict (`.pth`/`.pt` pickle, or `.safetensors` with the
/// same keys) into `model` (see the module documentation for the mapping). Shape mismatches are
/// errors; missing and extra tensors are reported in [`LoadReport`]. A file with no usable
/// tensor at all is an error ([`ResNetError::NoMatch`]). Apply freezing after loading.
pub fn load_pretrained(
    model: ResNet50Classifier,
    path: &Path,
) -> Result<(ResNet50Classifier, LoadReport), ResNetError> {
    let patterns = remap_patterns(&model);
    let to_tv = |p: &String| torchvision_key(p).unwrap_or_else(|| p.clone());
    load_state_dict(model, path, patterns, to_tv, is_conv_bias_or_head)
}

/// Loads a torchvision state dict into `model` through the exact-key `patterns` (torchvision
/// → our paths); `to_tv` names our paths in the report, and missing tensors for which
/// `expected_missing` holds (the new head, …) are not reported.
pub(super) fn load_state_dict<M: Module>(
    model: M,
    path: &Path,
    patterns: Vec<(String, String)>,
    to_tv: impl Fn(&String) -> String,
    expected_missing: impl Fn(&str) -> bool,
) -> Result<(M, LoadReport), ResNetError> {
    if !path.is_file() {
        return Err(ResNetError::WeightsNotFound {
            path: path.to_path_buf(),
        });
    }
    let load_err = |source: Box<dyn std::error::Error + Send + Sync>| ResNetError::Load {
        path: path.to_path_buf(),
        source,
    };
    // The patterns are generated from our own paths; a failure here would be a bug (and
    // regex's error type does not implement `std::error::Error` in burn-store's build).
    let remap = KeyRemapper::from_patterns(patterns).map_err(|e| load_err(e.to_string().into()))?;
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let mut model = model;
    let result = match extension.as_deref() {
        Some("safetensors") => {
            let mut store = SafetensorsStore::from_file(path)
                .with_from_adapter(PyTorchToBurnAdapter)
                .remap(remap)
                .map_indices_contiguous(false)
                .allow_partial(true)
                .validate(true);
            model
                .load_from(&mut store)
                .map_err(|e| load_err(Box::new(e)))?
        }
        Some("pth" | "pt") => {
            let mut load = |store: PytorchStore| {
                // Keys are exact; no renumbering of `layerN.M` indices (PytorchStore's default
                // would shift `layer4.1` to `layer4.0` in a file that lacks `layer4.0`).
                let mut store = store
                    .remap(remap.clone())
                    .map_indices_contiguous(false)
                    .allow_partial(true)
                    .validate(true);
                model.load_from(&mut store)
            };
            match load(PytorchStore::from_file(path)) {
                Ok(result) if !result.applied.is_empty() => result,
                plain => {
                    // Training checkpoints often nest the weights: {"state_dict": {...}}.
                    match load(PytorchStore::from_file(path).with_top_level_key("state_dict")) {
                        Ok(nested) if !nested.applied.is_empty() => nested,
                        _ => plain.map_err(|e| load_err(Box::new(e)))?,
                    }
                }
            }
        }
        _ => {
            return Err(ResNetError::UnsupportedFormat {
                path: path.to_path_buf(),
            });
        }
    };
    if result.applied.is_empty() {
        return Err(ResNetError::NoMatch {
            path: path.to_path_buf(),
        });
    }
    let mut report = LoadReport {
        loaded: result.applied.iter().map(&to_tv).collect(),
        skipped: result.unused.iter().map(&to_tv).collect(),
        missing: result
            .missing
            .iter()
            .map(|(p, _)| p)
            .filter(|p| !expected_missing(p))
            .map(&to_tv)
            .collect(),
    };
    report.loaded.sort();
    report.skipped.sort();
    report.missing.sort();
    Ok((model, report))
}
