//! ResNet-50 with the Keras-application layout and the report's classification head, for the
//! transfer-learning experiments TL1–TL3 (report §3.2).
//!
//! # Architecture
//! Keras' `ResNet50(include_top=False)` (keras-applications ≤ 1.0.8 naming: `res5b_branch2b`,
//! `bn5b_branch2b`, …) followed by global average pooling → Dense(512, relu) → Dense(512, relu)
//! → Dense(1) (a logit; the sigmoid lives in the loss):
//! - stem: ZeroPadding2D(3) → `conv1` 7x7/2 (64) → `bn_conv1` → relu → ZeroPadding2D(1) →
//!   MaxPool 3x3/2. Padding is done by the convolution / pooling layers themselves: zero padding
//!   for the convolution, and for the max pool a padding that never wins (the input is a ReLU
//!   output, so Keras' zero padding and burn's never-selected padding give the same result).
//! - stages `res2` (3 blocks, 64/64/256), `res3` (4, 128/128/512), `res4` (6, 256/256/1024),
//!   `res5` (3, 512/512/2048) of bottleneck blocks 1x1 → 3x3 → 1x1 with batch norm, and a
//!   projection shortcut (`branch1` + its batch norm) in the first block of each stage.
//!   As in Keras the stride of a stage sits on the first 1x1 convolution (`branch2a`) and on the
//!   shortcut; every convolution has a bias (Keras' `use_bias=True`), which is what makes the
//!   report's parameter counts.
//!
//! A 56x56 input ends in a 2x2x2048 map, as in the report's Figures 12/14/16.
//!
//! Batch norms use epsilon 1e-5 (torchvision's, since pretrained weights come from there; the
//! old Keras default was 1e-3) and Keras' momentum 0.99 for the moving statistics (burn's
//! `momentum` = 1 - 0.99).
//!
//! # Freezing ([`TransferMode`])
//! Layers are ordered as Keras lists them (`model.layers`, see [`keras_layers`]); a mode
//! makes trainable every layer from a cut-off on: the head for TL1, `res5b_branch2b` (Keras layer
//! index 158, hence the report's "freezing 158 layers") for TL2, everything for TL3. A frozen
//! layer gets burn's [`Module::freeze`]: its parameters stop requiring gradients (the optimiser
//! never sees them) *and* a frozen batch norm runs in inference mode (normalises with its moving
//! statistics and never updates them). That is Keras' behaviour for `trainable=False` batch
//! norms since TF 2.0; Keras 2.2 (the report's era) still used batch statistics in frozen batch
//! norms, which is one reason its TL1/TL2 overfitted. Batch-norm moving mean/variance are never
//! trainable, which is why TL3 reports 53,120 non-trainable parameters.
//!
//! # Pretrained weights
//! [`load_pretrained`] maps torchvision's ResNet-50 state dict (`.pth`/`.pt` through burn-store's
//! `PytorchStore`, or `.safetensors` with the same keys through `SafetensorsStore`) onto our
//! layers: `layerN.M` → `res{N+1}{a,b,c,…}`, `conv1/2/3` → `branch2a/b/c`, `bn1/2/3` → the
//! matching batch norms, `downsample.0/1` → `branch1` and its batch norm, top-level
//! `conv1`/`bn1` → `conv1`/`bn_conv1`. torchvision has no convolution biases: ours stay at zero
//! (their initial value). torchvision's ResNet-50 is "v1.5": its stride sits on the 3x3
//! convolution, while Keras (and this module) put it on the first 1x1. The weights have the same
//! shapes and load fine, but they were trained with the other placement, so they are a good
//! initialisation rather than an exact replica of torchvision's features; fine-tuning (TL2/TL3)
//! absorbs the difference. The `fc` layer is ignored (our head is new).
//!
//! # Input
//! [`caffe_preprocess`] is Keras' `preprocess_input` for ResNet-50 ('caffe' mode): RGB → BGR,
//! minus the ImageNet channel means, no scaling; the model takes `[N, 3, H, W]` (grey images are
//! replicated to three channels).
//!
//! # Layout
//! [`model`] (the modules, seeded init, freezing), [`summary`] (Keras' layer table, parameter
//! counts and `model.summary()`), [`weights`] (torchvision weight loading); input checks and
//! caffe preprocessing are here.

pub mod basic;
#[cfg(test)]
mod basic_tests;
mod fold;
mod freeze;
mod model;
mod summary;
#[cfg(test)]
mod tests;
mod weights;

use pipe_data::Shape;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

// The submodules share their `pub(super)` helpers through here (each has `use super::*`).
pub use fold::{FoldedPrefix, frozen_blocks};
pub use freeze::{Depth, Freeze};
use model::*;
pub use model::{Bottleneck, ResNet50Classifier, build, build_seeded, skeleton};
use summary::*;
pub use summary::{
    KerasLayer, keras_layer_of, keras_layers, param_counts, param_counts_from, summary_tail,
    tensor_sizes,
};
pub use weights::{LoadReport, load_pretrained, torchvision_key};

/// ImageNet channel means in BGR order, as subtracted by Keras' 'caffe' preprocessing.
pub const CAFFE_MEANS_BGR: [f32; 3] = [103.939, 116.779, 123.68];

/// Batch-norm epsilon (torchvision's; the pretrained statistics were computed with it).
const BN_EPSILON: f64 = 1e-5;
/// burn's batch-norm momentum equivalent to Keras' `momentum=0.99`.
const BN_MOMENTUM: f64 = 0.01;
/// Width of the two hidden dense layers of the head.
const HEAD_WIDTH: usize = 512;
/// Smallest input side Keras accepts for `ResNet50(include_top=False)` (also required of
/// resnet18/34: their last stage then sees at least 1x1).
const MIN_SIDE: u32 = 32;
/// Rows shown by [`summary_tail`]: from `add_15` to the output, as in the report's Figure 12.
pub const SUMMARY_TAIL_ROWS: usize = 17;

/// Stages: (Keras stage number, blocks, [filters 2a, 2b, 2c], stride of the first block).
const STAGES: [(usize, usize, [usize; 3], usize); 4] = [
    (2, 3, [64, 64, 256], 1),
    (3, 4, [128, 128, 512], 2),
    (4, 6, [256, 256, 1024], 2),
    (5, 3, [512, 512, 2048], 2),
];

/// Which layers are trained (report §3.2.1–3.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferMode {
    /// Only the classification head (global pool + three dense layers).
    Tl1,
    /// The head and every layer from `res5b_branch2b` on (the first 158 Keras layers frozen).
    Tl2,
    /// Everything (pretrained weights as initialisation only).
    Tl3,
}

impl TransferMode {
    /// Name of the first trainable Keras layer.
    pub fn first_trainable_layer(self) -> &'static str {
        match self {
            TransferMode::Tl1 => "dense_1",
            TransferMode::Tl2 => "res5b_branch2b",
            TransferMode::Tl3 => "conv1",
        }
    }
}

impl std::fmt::Display for TransferMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TransferMode::Tl1 => "tl1",
            TransferMode::Tl2 => "tl2",
            TransferMode::Tl3 => "tl3",
        })
    }
}

/// What to build: freezing mode, input shape, and an optional torchvision weights file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResNetSpec {
    /// Which layers train.
    pub mode: TransferMode,
    /// Shape of the dataset images (1 or 3 channels; the network always sees 3 after
    /// [`caffe_preprocess`]).
    pub input: Shape,
    /// torchvision ResNet-50 state dict (`.pth`, `.pt` or `.safetensors`); `None` = random init.
    #[serde(default)]
    pub weights: Option<PathBuf>,
    /// Output units of the last dense layer ([`crate::models::ModelSpec::output_units`]).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub units: usize,
    /// The named `resnet50`: its first trainable Keras layer (from `freeze:`), which replaces
    /// `mode`'s. `None` for TL1–TL3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trainable_from: Option<String>,
}

impl ResNetSpec {
    /// The first trainable Keras layer: `trainable_from`, else `mode`'s.
    pub fn first_trainable(&self) -> &str {
        self.trainable_from
            .as_deref()
            .unwrap_or(self.mode.first_trainable_layer())
    }

    /// The model's name in summaries (`resnet50_tl2`, or `resnet50` for the named model).
    pub fn title(&self) -> String {
        match self.trainable_from {
            Some(_) => "resnet50".to_owned(),
            None => format!("resnet50_{}", self.mode),
        }
    }
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum ResNetError {
    #[error("input shape {shape}: {reason}")]
    Shape { shape: Shape, reason: &'static str },
    #[error("{what}: expected {expected} values, got {got}")]
    Buffer {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("{}: weights file not found", path.display())]
    WeightsNotFound { path: PathBuf },
    #[error(
        "{}: unsupported weights file (expected .pth, .pt or .safetensors)",
        path.display()
    )]
    UnsupportedFormat { path: PathBuf },
    #[error("{}: cannot load weights: {source}", path.display())]
    Load {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "{}: no ResNet tensor found (expected torchvision keys such as `layer4.1.conv2.weight`)",
        path.display()
    )]
    NoMatch { path: PathBuf },
}

/// Checks that `shape` is an input the network (and Keras' `ResNet50`) accepts.
pub fn validate_input(shape: Shape) -> Result<(), ResNetError> {
    if shape.channels != 1 && shape.channels != 3 {
        return Err(ResNetError::Shape {
            shape,
            reason: "a ResNet needs 1 (grey, replicated) or 3 (RGB) channels",
        });
    }
    if shape.height < MIN_SIDE || shape.width < MIN_SIDE {
        return Err(ResNetError::Shape {
            shape,
            reason: "a ResNet needs images of at least 32x32",
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Preprocessing
// ---------------------------------------------------------------------------------------------

/// Keras' ResNet-50 `preprocess_input` ('caffe' mode) for one image: `image` is row-major HWC
/// `u8` RGB (or grey, replicated to three channels) of `shape`; `out` receives CHW `f32` in BGR
/// order minus [`CAFFE_MEANS_BGR`], no scaling (`out.len() == 3 * height * width`).
pub fn caffe_preprocess(image: &[u8], shape: Shape, out: &mut [f32]) -> Result<(), ResNetError> {
    let channels = shape.channels as usize;
    if channels != 1 && channels != 3 {
        return Err(ResNetError::Shape {
            shape,
            reason: "caffe preprocessing needs 1 or 3 channels",
        });
    }
    let plane = shape.height as usize * shape.width as usize;
    if image.len() != plane * channels {
        return Err(ResNetError::Buffer {
            what: "image",
            expected: plane * channels,
            got: image.len(),
        });
    }
    if out.len() != 3 * plane {
        return Err(ResNetError::Buffer {
            what: "output",
            expected: 3 * plane,
            got: out.len(),
        });
    }
    let (blue, rest) = out.split_at_mut(plane);
    let (green, red) = rest.split_at_mut(plane);
    let [mb, mg, mr] = CAFFE_MEANS_BGR;
    if channels == 1 {
        for (i, &v) in image.iter().enumerate() {
            let v = f32::from(v);
            blue[i] = v - mb;
            green[i] = v - mg;
            red[i] = v - mr;
        }
    } else {
        for (i, px) in image.chunks_exact(3).enumerate() {
            red[i] = f32::from(px[0]) - mr;
            green[i] = f32::from(px[1]) - mg;
            blue[i] = f32::from(px[2]) - mb;
        }
    }
    Ok(())
}
