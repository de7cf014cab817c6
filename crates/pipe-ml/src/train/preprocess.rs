//! How images become network input: rescale (B1–B3), ResNet's caffe mode (TL1–TL3) or
//! torchvision's ImageNet normalisation (resnet18/34/50).

use crate::models::{self};
use crate::resnet::CAFFE_MEANS_BGR;
use pipe_data::augment::{AugmentSpec, fill_batch};
use pipe_data::{Dataset, Shape};
use serde::{Deserialize, Serialize};

/// How images become network input (recorded in `model.json`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum Preprocess {
    /// Multiply the pixel values by `factor` (B1–B3; the report: 1/255).
    Rescale { factor: f32 },
    /// ResNet-50's Keras 'caffe' mode: RGB → BGR, ImageNet means subtracted, no scaling
    /// (grey images replicated to three channels). TL1–TL3.
    Caffe,
    /// torchvision's ImageNet normalisation, what its pretrained ResNets expect: RGB scaled to
    /// [0, 1], minus [`IMAGENET_MEAN`], divided by [`IMAGENET_STD`] (grey replicated).
    /// resnet18, resnet34, resnet50.
    Imagenet,
}

/// torchvision's ImageNet channel means (RGB, on [0, 1] values).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// torchvision's ImageNet channel standard deviations (RGB).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

impl Preprocess {
    /// The preprocessing `kind` trains with: caffe for TL kinds, ImageNet normalisation for
    /// the named ResNets, `rescale` otherwise.
    pub fn for_model(kind: models::ModelKind, rescale: f32) -> Self {
        if kind.transfer_mode().is_some() {
            Preprocess::Caffe
        } else if kind.depth().is_some() {
            Preprocess::Imagenet
        } else {
            Preprocess::Rescale { factor: rescale }
        }
    }

    /// Channels of the network input for images with `channels` channels.
    pub(crate) fn channels_out(self, channels: usize) -> usize {
        match self {
            Preprocess::Rescale { .. } => channels,
            Preprocess::Caffe | Preprocess::Imagenet => 3,
        }
    }

    /// The network input's (channels, height, width) for images of `shape`.
    pub(crate) fn input_dims(self, shape: Shape) -> (usize, usize, usize) {
        (
            self.channels_out(shape.channels as usize),
            shape.height as usize,
            shape.width as usize,
        )
    }

    /// The augmentation to apply before this preprocessing: caffe needs raw pixel values.
    pub(crate) fn augment_spec(self, spec: Option<&AugmentSpec>) -> Option<AugmentSpec> {
        spec.map(|a| match self {
            Preprocess::Rescale { .. } => a.clone(),
            Preprocess::Caffe | Preprocess::Imagenet => AugmentSpec {
                rescale: 1.0,
                ..a.clone()
            },
        })
    }

    /// Fills a `[indices.len(), C', H, W]` batch (C' = [`Preprocess::channels_out`]) with the
    /// images at `indices`, augmented by `augment` (from [`Preprocess::augment_spec`]) if
    /// given. Augmented B batches are scaled by the augmentation's own `rescale`, as in Keras.
    pub(crate) fn fill(
        self,
        ds: &Dataset,
        indices: &[usize],
        augment: Option<&AugmentSpec>,
        epoch: u64,
    ) -> Vec<f32> {
        let img = ds.shape.image_len();
        match self {
            Preprocess::Rescale { factor } => {
                let mut x = vec![0.0f32; indices.len() * img];
                fill_batch(ds, indices, augment, epoch, factor, &mut x);
                x
            }
            Preprocess::Caffe | Preprocess::Imagenet => {
                let mut raw = vec![0.0f32; indices.len() * img];
                fill_batch(ds, indices, augment, epoch, 1.0, &mut raw);
                let c = ds.shape.channels as usize;
                let plane = ds.shape.height as usize * ds.shape.width as usize;
                let mut x = vec![0.0f32; indices.len() * 3 * plane];
                if img > 0 {
                    for (src, dst) in raw.chunks_exact(img).zip(x.chunks_exact_mut(3 * plane)) {
                        if self == Preprocess::Caffe {
                            caffe_planes(src, c, plane, dst);
                        } else {
                            imagenet_planes(src, c, plane, dst);
                        }
                    }
                }
                x
            }
        }
    }
}

/// Caffe mode on CHW planes with raw pixel values: `dst` gets B, G, R planes minus the
/// ImageNet means (a single grey plane is replicated).
pub(super) fn caffe_planes(src: &[f32], channels: usize, plane: usize, dst: &mut [f32]) {
    for (k, mean) in CAFFE_MEANS_BGR.iter().enumerate() {
        // BGR output plane k comes from RGB input plane 2 - k.
        let from = if channels >= 3 { 2 - k } else { 0 };
        let s = &src[from * plane..(from + 1) * plane];
        for (d, &v) in dst[k * plane..(k + 1) * plane].iter_mut().zip(s) {
            *d = v - mean;
        }
    }
}

/// ImageNet normalisation on CHW planes with raw pixel values: `dst` gets R, G, B planes of
/// `(v / 255 - mean) / std` (a single grey plane is replicated).
pub(super) fn imagenet_planes(src: &[f32], channels: usize, plane: usize, dst: &mut [f32]) {
    for k in 0..3 {
        let from = if channels >= 3 { k } else { 0 };
        let s = &src[from * plane..(from + 1) * plane];
        let (mean, std) = (IMAGENET_MEAN[k], IMAGENET_STD[k]);
        for (d, &v) in dst[k * plane..(k + 1) * plane].iter_mut().zip(s) {
            *d = (v / 255.0 - mean) / std;
        }
    }
}
