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

use crate::data::Shape;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId, RunningState};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig, PaddingConfig2d, Relu,
};
use burn::prelude::*;
use burn::store::{
    KeyRemapper, ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// ImageNet channel means in BGR order, as subtracted by Keras' 'caffe' preprocessing.
pub const CAFFE_MEANS_BGR: [f32; 3] = [103.939, 116.779, 123.68];

/// Batch-norm epsilon (torchvision's; the pretrained statistics were computed with it).
const BN_EPSILON: f64 = 1e-5;
/// burn's batch-norm momentum equivalent to Keras' `momentum=0.99`.
const BN_MOMENTUM: f64 = 0.01;
/// Width of the two hidden dense layers of the head.
const HEAD_WIDTH: usize = 512;
/// Smallest input side Keras accepts for `ResNet50(include_top=False)`.
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
        "{}: no ResNet-50 tensor found (expected torchvision keys such as `layer4.1.conv2.weight`)",
        path.display()
    )]
    NoMatch { path: PathBuf },
}

// ---------------------------------------------------------------------------------------------
// Modules
// ---------------------------------------------------------------------------------------------

/// Keras-style convolution: zero bias (Keras' `bias_initializer='zeros'`), He-normal kernel
/// (keras-applications' `kernel_initializer='he_normal'`).
fn conv(
    channels: [usize; 2],
    kernel: usize,
    stride: usize,
    padding: usize,
    device: &Device,
) -> Conv2d {
    let mut conv = Conv2dConfig::new(channels, [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(
            padding, padding, padding, padding,
        ))
        .with_initializer(Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: false,
        })
        .init(device);
    conv.bias = Some(Initializer::Zeros.init([channels[1]], device));
    conv
}

fn batch_norm(features: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(features)
        .with_epsilon(BN_EPSILON)
        .with_momentum(BN_MOMENTUM)
        .init(device)
}

/// Keras Dense: Glorot-uniform kernel, zero bias.
fn dense(d_in: usize, d_out: usize, device: &Device) -> Linear {
    let mut linear = LinearConfig::new(d_in, d_out)
        .with_initializer(Initializer::XavierUniform { gain: 1.0 })
        .init(device);
    linear.bias = Some(Initializer::Zeros.init([d_out], device));
    linear
}

/// One bottleneck block (Keras `conv_block` when `branch1` is present, else `identity_block`).
#[derive(Module, Debug)]
pub struct Bottleneck {
    branch2a: Conv2d,
    bn_branch2a: BatchNorm,
    branch2b: Conv2d,
    bn_branch2b: BatchNorm,
    branch2c: Conv2d,
    bn_branch2c: BatchNorm,
    branch1: Option<Conv2d>,
    bn_branch1: Option<BatchNorm>,
    relu: Relu,
}

impl Bottleneck {
    fn new(in_channels: usize, filters: [usize; 3], stride: usize, device: &Device) -> Self {
        let [f1, f2, f3] = filters;
        let projection = stride != 1 || in_channels != f3;
        Self {
            branch2a: conv([in_channels, f1], 1, stride, 0, device),
            bn_branch2a: batch_norm(f1, device),
            branch2b: conv([f1, f2], 3, 1, 1, device),
            bn_branch2b: batch_norm(f2, device),
            branch2c: conv([f2, f3], 1, 1, 0, device),
            bn_branch2c: batch_norm(f3, device),
            branch1: projection.then(|| conv([in_channels, f3], 1, stride, 0, device)),
            bn_branch1: projection.then(|| batch_norm(f3, device)),
            relu: Relu::new(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let shortcut = match (&self.branch1, &self.bn_branch1) {
            (Some(conv), Some(bn)) => bn.forward(conv.forward(x.clone())),
            _ => x.clone(),
        };
        let y = self
            .relu
            .forward(self.bn_branch2a.forward(self.branch2a.forward(x)));
        let y = self
            .relu
            .forward(self.bn_branch2b.forward(self.branch2b.forward(y)));
        let y = self.bn_branch2c.forward(self.branch2c.forward(y));
        self.relu.forward(y + shortcut)
    }

    /// Freeze the layers whose Keras name (`res5b_branch2a`, `bn5b_branch2a`, …, built from
    /// `tag` = "5b") satisfies `frozen`.
    fn freeze_where(mut self, tag: &str, frozen: &impl Fn(&str) -> bool) -> Self {
        let f = |kind: &str, part: &str| frozen(&format!("{kind}{tag}_branch{part}"));
        if f("res", "2a") {
            self.branch2a = self.branch2a.freeze();
        }
        if f("bn", "2a") {
            self.bn_branch2a = self.bn_branch2a.freeze();
        }
        if f("res", "2b") {
            self.branch2b = self.branch2b.freeze();
        }
        if f("bn", "2b") {
            self.bn_branch2b = self.bn_branch2b.freeze();
        }
        if f("res", "2c") {
            self.branch2c = self.branch2c.freeze();
        }
        if f("bn", "2c") {
            self.bn_branch2c = self.bn_branch2c.freeze();
        }
        if f("res", "1") {
            self.branch1 = self.branch1.map(Module::freeze);
        }
        if f("bn", "1") {
            self.bn_branch1 = self.bn_branch1.map(Module::freeze);
        }
        self
    }
}

/// ResNet-50 (Keras layout) + global average pool + Dense(512, relu) x2 + Dense(1) logit.
///
/// Input `[N, 3, H, W]` after [`caffe_preprocess`]; output `[N, 1]` logits.
#[derive(Module, Debug)]
pub struct ResNet50Classifier {
    conv1: Conv2d,
    bn_conv1: BatchNorm,
    pool1: MaxPool2d,
    res2: Vec<Bottleneck>,
    res3: Vec<Bottleneck>,
    res4: Vec<Bottleneck>,
    res5: Vec<Bottleneck>,
    avg_pool: AdaptiveAvgPool2d,
    dense_1: Linear,
    dense_2: Linear,
    dense_3: Linear,
    relu: Relu,
}

impl ResNet50Classifier {
    /// A randomly initialised network, nothing frozen (see [`build`] for the full recipe).
    pub fn new(device: &Device) -> Self {
        let mut in_channels = 64;
        // Struct fields are evaluated in source order, so `in_channels` threads through.
        let mut stage = |index: usize| -> Vec<Bottleneck> {
            let (_, blocks, filters, stride) = STAGES[index];
            (0..blocks)
                .map(|b| {
                    let stride = if b == 0 { stride } else { 1 };
                    let block = Bottleneck::new(in_channels, filters, stride, device);
                    in_channels = filters[2];
                    block
                })
                .collect()
        };
        Self {
            conv1: conv([3, 64], 7, 2, 3, device),
            bn_conv1: batch_norm(64, device),
            pool1: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            res2: stage(0),
            res3: stage(1),
            res4: stage(2),
            res5: stage(3),
            avg_pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            dense_1: dense(2048, HEAD_WIDTH, device),
            dense_2: dense(HEAD_WIDTH, HEAD_WIDTH, device),
            dense_3: dense(HEAD_WIDTH, 1, device),
            relu: Relu::new(),
        }
    }

    /// The backbone's feature map: `[N, 3, H, W]` → `[N, 2048, h, w]` (2x2 for 56x56 inputs).
    pub fn features(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self
            .relu
            .forward(self.bn_conv1.forward(self.conv1.forward(x)));
        let mut x = self.pool1.forward(x);
        for block in self
            .res2
            .iter()
            .chain(&self.res3)
            .chain(&self.res4)
            .chain(&self.res5)
        {
            x = block.forward(x);
        }
        x
    }

    /// `[N, 3, H, W]` caffe-preprocessed images → `[N, 1]` logits.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x: Tensor<2> = self.avg_pool.forward(self.features(x)).flatten(1, 3);
        let x = self.relu.forward(self.dense_1.forward(x));
        let x = self.relu.forward(self.dense_2.forward(x));
        self.dense_3.forward(x)
    }

    /// Freeze every layer before `mode`'s first trainable layer (Keras order), see the module
    /// documentation. Call it once, on a freshly built network.
    pub fn apply_transfer_mode(mut self, mode: TransferMode) -> Self {
        let index = keras_index();
        let cutoff = index
            .get(mode.first_trainable_layer())
            .copied()
            .unwrap_or(0);
        let frozen = |name: &str| index.get(name).is_some_and(|&i| i < cutoff);
        if frozen("conv1") {
            self.conv1 = self.conv1.freeze();
        }
        if frozen("bn_conv1") {
            self.bn_conv1 = self.bn_conv1.freeze();
        }
        let freeze_stage = |stage_no: usize, stage: Vec<Bottleneck>| -> Vec<Bottleneck> {
            stage
                .into_iter()
                .enumerate()
                .map(|(b, block)| block.freeze_where(&block_tag(stage_no, b), &frozen))
                .collect()
        };
        self.res2 = freeze_stage(2, self.res2);
        self.res3 = freeze_stage(3, self.res3);
        self.res4 = freeze_stage(4, self.res4);
        self.res5 = freeze_stage(5, self.res5);
        if frozen("dense_1") {
            self.dense_1 = self.dense_1.freeze();
        }
        if frozen("dense_2") {
            self.dense_2 = self.dense_2.freeze();
        }
        if frozen("dense_3") {
            self.dense_3 = self.dense_3.freeze();
        }
        self
    }
}

/// Keras block tag: stage 5, block 1 → "5b".
fn block_tag(stage: usize, block: usize) -> String {
    // At most 6 blocks per stage: 'a'..='f'.
    let letter = char::from(b'a' + block as u8);
    format!("{stage}{letter}")
}

/// Builds the network for `spec` on `device`: random init, then the pretrained weights if a
/// file is given (a `tracing` warning otherwise), then the freezing of `spec.mode`.
/// Use an autodiff device for training and `model.valid()` for inference; the random init
/// draws from the device's generator, so seed it (`device.seed(..)`) for repeatable runs.
pub fn build(spec: &ResNetSpec, device: &Device) -> Result<ResNet50Classifier, ResNetError> {
    validate_input(spec.input)?;
    load_weights_and_freeze(spec, ResNet50Classifier::new(device))
}

/// [`build`] with reproducible random init: every weight drawn on the host from a ChaCha8
/// stream of `seed` (He-normal convolution kernels, Glorot-uniform dense kernels, like
/// [`ResNet50Classifier::new`]; biases, batch-norm scales/offsets and statistics keep their
/// constant initial values), and parameter ids numbered in module order. The result depends on
/// `seed` only, never on the backend's global generator, so concurrent builds cannot disturb
/// each other and records are identical byte for byte across runs. Pretrained weights (if any) are loaded
/// over the random init, then `spec.mode` freezes.
pub fn build_seeded(
    spec: &ResNetSpec,
    seed: u64,
    device: &Device,
) -> Result<ResNet50Classifier, ResNetError> {
    validate_input(spec.input)?;
    let mut init = HostInit {
        rng: ChaCha8Rng::seed_from_u64(seed),
        next_id: 0,
    };
    let mut model = ResNet50Classifier::new(device).map(&mut init);
    number_running_stats(&mut model);
    load_weights_and_freeze(spec, model)
}

/// First id of the batch-norm statistics in [`build_seeded`] (parameters count from 1).
const RUNNING_ID_BASE: u64 = 1 << 32;

/// Gives the batch-norm statistics fixed ids, in module order. They are not parameters (a
/// mapper cannot renumber them, and loading a record keeps the destination's ids) but their
/// ids are written into records.
fn number_running_stats(model: &mut ResNet50Classifier) {
    let mut next = RUNNING_ID_BASE;
    let mut renumber = |bn: &mut BatchNorm| {
        for stat in [&mut bn.running_mean, &mut bn.running_var] {
            next += 1;
            *stat = RunningState::with_id(ParamId::from(next), stat.value());
        }
    };
    renumber(&mut model.bn_conv1);
    for block in model
        .res2
        .iter_mut()
        .chain(&mut model.res3)
        .chain(&mut model.res4)
        .chain(&mut model.res5)
    {
        renumber(&mut block.bn_branch2a);
        renumber(&mut block.bn_branch2b);
        renumber(&mut block.bn_branch2c);
        if let Some(bn) = &mut block.bn_branch1 {
            renumber(bn);
        }
    }
}

/// The network skeleton for loading a record written from a model built for `spec` (same
/// freezing; values and parameter ids come from the record). Nothing is materialised.
pub fn skeleton(spec: &ResNetSpec, device: &Device) -> Result<ResNet50Classifier, ResNetError> {
    validate_input(spec.input)?;
    let mut model = ResNet50Classifier::new(device);
    number_running_stats(&mut model);
    Ok(model.apply_transfer_mode(spec.mode))
}

fn load_weights_and_freeze(
    spec: &ResNetSpec,
    model: ResNet50Classifier,
) -> Result<ResNet50Classifier, ResNetError> {
    let model = match &spec.weights {
        Some(path) => {
            let (model, report) = load_pretrained(model, path)?;
            tracing::info!(
                path = %path.display(),
                loaded = report.loaded.len(),
                skipped = report.skipped.len(),
                missing = report.missing.len(),
                "ResNet-50 weights loaded"
            );
            if !report.missing.is_empty() {
                tracing::warn!(
                    path = %path.display(),
                    missing = ?report.missing,
                    "ResNet-50 tensors missing from the weights file keep their random init"
                );
            }
            model
        }
        None => {
            tracing::warn!("no ResNet-50 weights file given: starting from random init");
            model
        }
    };
    Ok(model.apply_transfer_mode(spec.mode))
}

/// Re-initialises every parameter from a host RNG (see [`build_seeded`]). Kernels are
/// recognised by rank: 4 = convolution `[out, in, k, k]`, 2 = dense `[in, out]` (or
/// `[out, in]`: Glorot is symmetric in the fans).
struct HostInit {
    rng: ChaCha8Rng,
    next_id: u64,
}

impl HostInit {
    fn normal(&mut self, n: usize, std: f64) -> Vec<f32> {
        // Box-Muller, two values per pair of uniforms.
        let mut out = Vec::with_capacity(n + 1);
        while out.len() < n {
            let u1: f64 = 1.0 - self.rng.random::<f64>();
            let u2: f64 = self.rng.random::<f64>();
            let r = (-2.0 * u1.ln()).sqrt() * std;
            let t = std::f64::consts::TAU * u2;
            out.push((r * t.cos()) as f32);
            out.push((r * t.sin()) as f32);
        }
        out.truncate(n);
        out
    }
}

impl ModuleMapper for HostInit {
    fn map_float<const D: usize>(&mut self, mut param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        self.next_id += 1;
        let id = ParamId::from(self.next_id);
        let dims: [usize; D] = param.lazy_shape().dims::<D>();
        let n: usize = dims.iter().product();
        let values = match D {
            4 => {
                let fan_in = dims[1] * dims[2] * dims[3];
                Some(self.normal(n, (2.0 / fan_in as f64).sqrt()))
            }
            2 => {
                let limit = (6.0 / (dims[0] + dims[1]) as f64).sqrt() as f32;
                Some(
                    (0..n)
                        .map(|_| (self.rng.random::<f32>() * 2.0 - 1.0) * limit)
                        .collect(),
                )
            }
            _ => None,
        };
        match values {
            Some(v) => {
                let device = param.lazy_device();
                Param::uninitialized(
                    id,
                    move |device: &Device, require_grad: bool| {
                        let t = Tensor::<D>::from_data(TensorData::new(v, dims), device);
                        if require_grad { t.require_grad() } else { t }
                    },
                    device,
                    true,
                    dims.into(),
                )
            }
            None => {
                param.id = id;
                param
            }
        }
    }
}

/// Checks that `shape` is an input the network (and Keras' `ResNet50`) accepts.
pub fn validate_input(shape: Shape) -> Result<(), ResNetError> {
    if shape.channels != 1 && shape.channels != 3 {
        return Err(ResNetError::Shape {
            shape,
            reason: "ResNet-50 needs 1 (grey, replicated) or 3 (RGB) channels",
        });
    }
    if shape.height < MIN_SIDE || shape.width < MIN_SIDE {
        return Err(ResNetError::Shape {
            shape,
            reason: "ResNet-50 needs images of at least 32x32",
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

// ---------------------------------------------------------------------------------------------
// Keras layer table, parameter counts, summary
// ---------------------------------------------------------------------------------------------

/// One row of Keras' `model.summary()` for [`ResNet50Classifier`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KerasLayer {
    /// Keras layer name (`res5b_branch2b`, `activation_46`, `dense_1`, …).
    pub name: String,
    /// Keras class (`Conv2D`, `BatchNormalization`, `Add`, …).
    pub class: &'static str,
    /// Output shape without the batch axis: `[h, w, c]`, or `[c]` after pooling.
    pub output: Vec<usize>,
    /// Parameters (weights + biases; for a batch norm all four vectors).
    pub params: usize,
    /// Of which not trainable whatever the mode (batch-norm moving mean and variance).
    pub non_trainable: usize,
    /// Names of the input layers.
    pub inputs: Vec<String>,
}

struct LayerTable {
    layers: Vec<KerasLayer>,
    activations: usize,
    adds: usize,
}

impl LayerTable {
    fn push(
        &mut self,
        name: String,
        class: &'static str,
        output: Vec<usize>,
        params: usize,
        non_trainable: usize,
        inputs: Vec<String>,
    ) -> (String, Vec<usize>) {
        self.layers.push(KerasLayer {
            name: name.clone(),
            class,
            output: output.clone(),
            params,
            non_trainable,
            inputs,
        });
        (name, output)
    }

    fn conv(
        &mut self,
        name: String,
        input: &(String, Vec<usize>),
        filters: usize,
        kernel: usize,
        stride: usize,
        pad: usize,
    ) -> (String, Vec<usize>) {
        let side = |s: usize| (s + 2 * pad - kernel) / stride + 1;
        let (h, w, c) = (input.1[0], input.1[1], input.1[2]);
        let params = kernel * kernel * c * filters + filters;
        self.push(
            name,
            "Conv2D",
            vec![side(h), side(w), filters],
            params,
            0,
            vec![input.0.clone()],
        )
    }

    fn bn(&mut self, name: String, input: &(String, Vec<usize>)) -> (String, Vec<usize>) {
        let c = input.1[2];
        self.push(
            name,
            "BatchNormalization",
            input.1.clone(),
            4 * c,
            2 * c,
            vec![input.0.clone()],
        )
    }

    fn relu(&mut self, input: &(String, Vec<usize>)) -> (String, Vec<usize>) {
        self.activations += 1;
        let name = format!("activation_{}", self.activations);
        self.push(
            name,
            "Activation",
            input.1.clone(),
            0,
            0,
            vec![input.0.clone()],
        )
    }

    fn add(&mut self, a: &(String, Vec<usize>), b: &(String, Vec<usize>)) -> (String, Vec<usize>) {
        self.adds += 1;
        let name = format!("add_{}", self.adds);
        self.push(
            name,
            "Add",
            a.1.clone(),
            0,
            0,
            vec![a.0.clone(), b.0.clone()],
        )
    }

    fn dense(
        &mut self,
        name: &str,
        input: &(String, Vec<usize>),
        units: usize,
    ) -> (String, Vec<usize>) {
        let params = input.1[0] * units + units;
        self.push(
            name.to_string(),
            "Dense",
            vec![units],
            params,
            0,
            vec![input.0.clone()],
        )
    }
}

/// The layers of Keras' `ResNet50(include_top=False)` + our head, in `model.layers` order,
/// with Keras 2 names of a fresh session (`activation_1` … `activation_49`, `add_1` … `add_16`,
/// `dense_1` … `dense_3`). The network always sees three channels (grey is replicated).
pub fn keras_layers(input: Shape) -> Vec<KerasLayer> {
    let (h, w) = (input.height as usize, input.width as usize);
    let mut t = LayerTable {
        layers: Vec::with_capacity(180),
        activations: 0,
        adds: 0,
    };
    let x = t.push("input_1".into(), "InputLayer", vec![h, w, 3], 0, 0, vec![]);
    let x = t.push(
        "conv1_pad".into(),
        "ZeroPadding2D",
        vec![h + 6, w + 6, 3],
        0,
        0,
        vec![x.0],
    );
    let x = t.conv("conv1".into(), &x, 64, 7, 2, 0);
    let x = t.bn("bn_conv1".into(), &x);
    let x = t.relu(&x);
    let x = t.push(
        "pool1_pad".into(),
        "ZeroPadding2D",
        vec![x.1[0] + 2, x.1[1] + 2, 64],
        0,
        0,
        vec![x.0],
    );
    let pooled = |s: usize| (s - 3) / 2 + 1;
    let mut x = t.push(
        "max_pooling2d_1".into(),
        "MaxPooling2D",
        vec![pooled(x.1[0]), pooled(x.1[1]), 64],
        0,
        0,
        vec![x.0],
    );
    for (stage, blocks, [f1, f2, f3], stride) in STAGES {
        for b in 0..blocks {
            let tag = block_tag(stage, b);
            let s = if b == 0 { stride } else { 1 };
            let input = x.clone();
            let y = t.conv(format!("res{tag}_branch2a"), &input, f1, 1, s, 0);
            let y = t.bn(format!("bn{tag}_branch2a"), &y);
            let y = t.relu(&y);
            let y = t.conv(format!("res{tag}_branch2b"), &y, f2, 3, 1, 1);
            let y = t.bn(format!("bn{tag}_branch2b"), &y);
            let y = t.relu(&y);
            let y = t.conv(format!("res{tag}_branch2c"), &y, f3, 1, 1, 0);
            let y = if b == 0 {
                let shortcut = t.conv(format!("res{tag}_branch1"), &input, f3, 1, s, 0);
                let y = t.bn(format!("bn{tag}_branch2c"), &y);
                let shortcut = t.bn(format!("bn{tag}_branch1"), &shortcut);
                t.add(&y, &shortcut)
            } else {
                let y = t.bn(format!("bn{tag}_branch2c"), &y);
                t.add(&y, &input)
            };
            x = t.relu(&y);
        }
    }
    let channels = x.1[2];
    let x = t.push(
        "global_average_pooling2d_1".into(),
        "GlobalAveragePooling2D",
        vec![channels],
        0,
        0,
        vec![x.0],
    );
    let x = t.dense("dense_1", &x, HEAD_WIDTH);
    let x = t.dense("dense_2", &x, HEAD_WIDTH);
    t.dense("dense_3", &x, 1);
    t.layers
}

/// Keras layer name → index in `model.layers` order (shape-independent).
fn keras_index() -> BTreeMap<String, usize> {
    keras_layers(Shape::default())
        .into_iter()
        .enumerate()
        .map(|(i, layer)| (layer.name, i))
        .collect()
}

/// The Keras layer name of one of our module paths (`res5.1.branch2b.weight` →
/// `res5b_branch2b`, `res5.1.bn_branch2b.gamma` → `bn5b_branch2b`, `bn_conv1.running_var` →
/// `bn_conv1`, `dense_3.bias` → `dense_3`). `None` for paths outside the network.
pub fn keras_layer_of(path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split('.').collect();
    match parts.as_slice() {
        [
            layer @ ("conv1" | "bn_conv1" | "dense_1" | "dense_2" | "dense_3"),
            _leaf,
        ] => Some((*layer).to_string()),
        [stage, block, layer, _leaf] => {
            let stage: usize = stage.strip_prefix("res")?.parse().ok()?;
            let (_, blocks, _, _) = STAGES.iter().find(|s| s.0 == stage)?;
            let block: usize = block.parse().ok()?;
            if block >= *blocks {
                return None;
            }
            let tag = block_tag(stage, block);
            match layer.strip_prefix("bn_branch") {
                Some(part) => Some(format!("bn{tag}_branch{part}")),
                None if layer.starts_with("branch") => Some(format!("res{tag}_{layer}")),
                None => None,
            }
        }
        _ => None,
    }
}

/// Element counts of a module's float tensors by path (batch-norm running statistics
/// included: burn keeps them as `RunningState`, which visits like a parameter).
#[derive(Default)]
struct ParamCollector {
    path: Vec<String>,
    tensors: Vec<(String, usize)>,
}

impl ModuleVisitor for ParamCollector {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.tensors
            .push((self.path.join("."), param.lazy_shape().num_elements()));
    }
}

/// Every float tensor of `model` as (module path, element count), in module order.
pub fn tensor_sizes(model: &ResNet50Classifier) -> Vec<(String, usize)> {
    let mut collector = ParamCollector::default();
    model.visit(&mut collector);
    collector.tensors
}

fn is_running_stat(path: &str) -> bool {
    path.ends_with(".running_mean") || path.ends_with(".running_var")
}

/// (trainable, total) parameters of the network in `mode`, counted as Keras does: the total
/// includes the batch-norm moving statistics (never trainable). Counted on a real module built
/// lazily (no weights are materialised); `input` only needs to be valid for
/// [`validate_input`] and does not change the counts (the network is fully convolutional up to
/// the global pool and always has three input channels).
pub fn param_counts(mode: TransferMode, _input: Shape) -> (usize, usize) {
    let model = ResNet50Classifier::new(&Device::default());
    count_params(&model, mode)
}

fn count_params(model: &ResNet50Classifier, mode: TransferMode) -> (usize, usize) {
    let index = keras_index();
    let cutoff = index
        .get(mode.first_trainable_layer())
        .copied()
        .unwrap_or(0);
    let mut trainable = 0;
    let mut total = 0;
    for (path, n) in tensor_sizes(model) {
        total += n;
        let layer_index = keras_layer_of(&path).and_then(|l| index.get(&l).copied());
        if !is_running_stat(&path) && layer_index.is_some_and(|i| i >= cutoff) {
            trainable += n;
        }
    }
    (trainable, total)
}

/// `1312257` → `1,312,257`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Keras 2's `print_summary` row (line length 98, columns ending at 32, 53, 65, 98): each field
/// is cut where its column ends, and the last character before the next field is a space.
fn summary_row(fields: [&str; 4]) -> String {
    const POSITIONS: [usize; 4] = [32, 53, 65, 98];
    let mut line: Vec<char> = Vec::with_capacity(98);
    for (i, (field, end)) in fields.iter().zip(POSITIONS).enumerate() {
        if i > 0 {
            line.pop();
            line.push(' ');
        }
        line.extend(field.chars());
        line.truncate(end);
        line.resize(end, ' ');
    }
    line.into_iter().collect::<String>().trim_end().to_string()
}

/// A Keras-like `model.summary()` of the last [`SUMMARY_TAIL_ROWS`] layers (from `add_15` on,
/// like the report's Figures 12/14/16) and the totals for `spec.mode`.
pub fn summary_tail(spec: &ResNetSpec) -> String {
    let layers = keras_layers(spec.input);
    let (trainable, total) = param_counts(spec.mode, spec.input);
    let mut out = String::new();
    let rule = |c: char| c.to_string().repeat(98);
    let _ = writeln!(out, "Model: \"resnet50_{}\" (last layers)", spec.mode);
    let _ = writeln!(out, "{}", rule('_'));
    let _ = writeln!(
        out,
        "{}",
        summary_row(["Layer (type)", "Output Shape", "Param #", "Connected to"])
    );
    let _ = writeln!(out, "{}", rule('='));
    let _ = writeln!(out, "...");
    let _ = writeln!(out, "{}", rule('_'));
    let start = layers.len().saturating_sub(SUMMARY_TAIL_ROWS);
    for (i, layer) in layers.iter().enumerate().skip(start) {
        let shape = format!(
            "(None, {})",
            layer
                .output
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        let name = format!("{} ({})", layer.name, layer.class);
        let inputs: Vec<String> = layer.inputs.iter().map(|i| format!("{i}[0][0]")).collect();
        let first_input = inputs.first().map(String::as_str).unwrap_or("");
        let _ = writeln!(
            out,
            "{}",
            summary_row([&name, &shape, &layer.params.to_string(), first_input])
        );
        for more in inputs.iter().skip(1) {
            let _ = writeln!(out, "{}", summary_row(["", "", "", more]));
        }
        let last = i + 1 == layers.len();
        let _ = writeln!(out, "{}", rule(if last { '=' } else { '_' }));
    }
    let _ = writeln!(out, "Total params: {}", thousands(total));
    let _ = writeln!(out, "Trainable params: {}", thousands(trainable));
    let _ = writeln!(
        out,
        "Non-trainable params: {}",
        thousands(total - trainable)
    );
    let _ = write!(out, "{}", rule('_'));
    out
}

// ---------------------------------------------------------------------------------------------
// Pretrained weights
// ---------------------------------------------------------------------------------------------

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
fn torchvision_prefix(prefix: &str) -> Option<String> {
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
fn remap_patterns(model: &ResNet50Classifier) -> Vec<(String, String)> {
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

fn is_conv_bias_or_head(path: &str) -> bool {
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
    let remap = KeyRemapper::from_patterns(remap_patterns(&model))
        .map_err(|e| load_err(e.to_string().into()))?;
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
    let to_tv = |p: &String| torchvision_key(p).unwrap_or_else(|| p.clone());
    let mut report = LoadReport {
        loaded: result.applied.iter().map(to_tv).collect(),
        skipped: result.unused.iter().map(to_tv).collect(),
        missing: result
            .missing
            .iter()
            .map(|(p, _)| p)
            .filter(|p| !is_conv_bias_or_head(p))
            .map(to_tv)
            .collect(),
    };
    report.loaded.sort();
    report.skipped.sort();
    report.missing.sort();
    Ok((model, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::loss::BinaryCrossEntropyLossConfig;
    use burn::optim::{AdamConfig, GradientsParams};
    use safetensors::tensor::{Dtype, TensorView};
    use std::time::Instant;

    fn values(t: Tensor<1>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap_or_default()
    }

    fn flat<const D: usize>(p: &Param<Tensor<D>>) -> Vec<f32> {
        values(p.val().flatten(0, D - 1))
    }

    /// Equality of two long vectors without printing millions of values on failure.
    #[track_caller]
    fn assert_same(actual: &[f32], expected: &[f32], what: &str) {
        assert_eq!(actual.len(), expected.len(), "{what}: length");
        if let Some(i) = actual.iter().zip(expected).position(|(a, b)| a != b) {
            panic!("{what}: index {i}: {} != {}", actual[i], expected[i]);
        }
    }

    #[test]
    fn param_counts_reproduce_the_report() {
        let input = Shape::default();
        assert_eq!(
            param_counts(TransferMode::Tl1, input),
            (1_312_257, 24_899_969)
        );
        assert_eq!(
            param_counts(TransferMode::Tl2, input),
            (9_193_473, 24_899_969)
        );
        assert_eq!(
            param_counts(TransferMode::Tl3, input),
            (24_846_849, 24_899_969)
        );
        // burn's own count (running statistics included) agrees with the Keras total.
        assert_eq!(
            ResNet50Classifier::new(&Device::default()).num_params(),
            24_899_969
        );
    }

    #[test]
    fn keras_table_matches_the_module_layer_by_layer() {
        let layers = keras_layers(Shape::default());
        assert_eq!(layers.len(), 179);
        let index = keras_index();
        // "Freezing 158 layers" (report §3.2.2) = everything before res5b_branch2b.
        assert_eq!(index["res5b_branch2b"], 158);
        assert_eq!(layers.iter().map(|l| l.params).sum::<usize>(), 24_899_969);
        assert_eq!(
            layers.iter().map(|l| l.non_trainable).sum::<usize>(),
            53_120
        );
        // Per-layer counts from the real module equal the table's.
        let mut from_module: BTreeMap<String, usize> = BTreeMap::new();
        for (path, n) in tensor_sizes(&ResNet50Classifier::new(&Device::default())) {
            let layer = keras_layer_of(&path);
            assert!(layer.is_some(), "{path} has no Keras layer");
            *from_module.entry(layer.unwrap_or_default()).or_default() += n;
        }
        let from_table: BTreeMap<String, usize> = layers
            .iter()
            .filter(|l| l.params > 0)
            .map(|l| (l.name.clone(), l.params))
            .collect();
        assert_eq!(from_module, from_table);
        // Keras' shapes for 56x56: 28 after conv1, 14 after the pool, 2x2x2048 at the end.
        let shape = |name: &str| layers[index[name]].output.clone();
        assert_eq!(shape("conv1"), vec![28, 28, 64]);
        assert_eq!(shape("max_pooling2d_1"), vec![14, 14, 64]);
        assert_eq!(shape("res3a_branch2a"), vec![7, 7, 128]);
        assert_eq!(shape("res4a_branch1"), vec![4, 4, 1024]);
        assert_eq!(shape("activation_49"), vec![2, 2, 2048]);
        assert_eq!(shape("dense_3"), vec![1]);
        assert_eq!(
            layers[index["add_15"]].inputs,
            vec!["bn5b_branch2c".to_string(), "activation_43".to_string()]
        );
    }

    #[test]
    fn names_map_between_module_keras_and_torchvision() {
        let cases = [
            (
                "res5.1.branch2b.weight",
                "res5b_branch2b",
                "layer4.1.conv2.weight",
            ),
            (
                "res5.1.bn_branch2b.gamma",
                "bn5b_branch2b",
                "layer4.1.bn2.weight",
            ),
            (
                "res2.0.bn_branch1.beta",
                "bn2a_branch1",
                "layer1.0.downsample.1.bias",
            ),
            (
                "res4.5.branch2c.bias",
                "res4f_branch2c",
                "layer3.5.conv3.bias",
            ),
            (
                "res3.0.branch1.weight",
                "res3a_branch1",
                "layer2.0.downsample.0.weight",
            ),
            ("bn_conv1.running_var", "bn_conv1", "bn1.running_var"),
            ("conv1.weight", "conv1", "conv1.weight"),
        ];
        for (path, keras, tv) in cases {
            assert_eq!(keras_layer_of(path).as_deref(), Some(keras), "{path}");
            assert_eq!(torchvision_key(path).as_deref(), Some(tv), "{path}");
        }
        assert_eq!(keras_layer_of("dense_3.weight").as_deref(), Some("dense_3"));
        assert_eq!(torchvision_key("dense_3.weight"), None);
        assert_eq!(keras_layer_of("res5.3.branch2a.weight"), None);
        assert_eq!(keras_layer_of("res6.0.branch2a.weight"), None);
    }

    #[test]
    fn forward_gives_keras_shapes() {
        let device = Device::default();
        let model = ResNet50Classifier::new(&device);
        let x = Tensor::<4>::random([2, 3, 56, 56], burn::tensor::Distribution::Default, &device);
        let features = model.features(x.clone());
        assert_eq!(features.dims(), [2, 2048, 2, 2]);
        assert_eq!(model.forward(x).dims(), [2, 1]);
    }

    #[test]
    fn caffe_preprocess_is_bgr_minus_imagenet_means() {
        let shape = Shape::new(1, 2, 3);
        let image = [10, 20, 30, 255, 0, 128];
        let mut out = [0.0; 6];
        caffe_preprocess(&image, shape, &mut out).unwrap_or_else(|e| panic!("{e}"));
        let expected = [
            30.0 - 103.939,
            128.0 - 103.939, // B plane
            20.0 - 116.779,
            0.0 - 116.779, // G plane
            10.0 - 123.68,
            255.0 - 123.68, // R plane
        ];
        for (a, b) in out.iter().zip(expected) {
            assert!((a - b).abs() < 1e-4, "{out:?}");
        }
        // Grey: one value replicated to B, G and R.
        let mut out = [0.0; 3];
        caffe_preprocess(&[100], Shape::new(1, 1, 1), &mut out).unwrap_or_else(|e| panic!("{e}"));
        assert!((out[0] - (100.0 - 103.939)).abs() < 1e-4);
        assert!((out[2] - (100.0 - 123.68)).abs() < 1e-4);
        // Wrong lengths and channel counts are errors, not panics.
        assert!(matches!(
            caffe_preprocess(&image[..5], shape, &mut [0.0; 6]),
            Err(ResNetError::Buffer { what: "image", .. })
        ));
        assert!(matches!(
            caffe_preprocess(&image, shape, &mut [0.0; 5]),
            Err(ResNetError::Buffer { what: "output", .. })
        ));
        assert!(matches!(
            caffe_preprocess(&[0; 8], Shape::new(1, 2, 4), &mut [0.0; 6]),
            Err(ResNetError::Shape { .. })
        ));
    }

    #[test]
    fn input_shapes_are_validated() {
        assert!(validate_input(Shape::new(56, 56, 3)).is_ok());
        assert!(validate_input(Shape::new(56, 56, 1)).is_ok());
        assert!(validate_input(Shape::new(31, 56, 3)).is_err());
        assert!(validate_input(Shape::new(56, 56, 4)).is_err());
        let spec = ResNetSpec {
            mode: TransferMode::Tl1,
            input: Shape::new(16, 16, 3),
            weights: None,
        };
        assert!(matches!(
            build(&spec, &Device::default()),
            Err(ResNetError::Shape { .. })
        ));
    }

    #[test]
    fn spec_serde_uses_snake_case_modes() {
        let spec: ResNetSpec = serde_json::from_str(
            r#"{"mode":"tl2","input":{"height":56,"width":56,"channels":3},"weights":"w.pth"}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(spec.mode, TransferMode::Tl2);
        assert_eq!(spec.weights, Some(PathBuf::from("w.pth")));
        let json = serde_json::to_string(&spec).unwrap_or_default();
        assert!(json.contains(r#""mode":"tl2""#), "{json}");
        assert!(serde_json::from_str::<TransferMode>(r#""TL2""#).is_err());
    }

    #[test]
    fn summary_tail_looks_like_figure_12() {
        let spec = ResNetSpec {
            mode: TransferMode::Tl1,
            input: Shape::default(),
            weights: None,
        };
        let summary = summary_tail(&spec);
        for needle in [
            "add_15 (Add)                    (None, 2, 2, 2048)   0           bn5b_branch2c[0][0]",
            "activation_43[0][0]",
            "res5c_branch2b (Conv2D)         (None, 2, 2, 512)    2359808     activation_47[0][0]",
            "bn5c_branch2a (BatchNormalizati (None, 2, 2, 512)    2048",
            "dense_1 (Dense)                 (None, 512)          1049088     global_average_pooling2d_1[0][0]",
            "dense_3 (Dense)                 (None, 1)            513",
            "Total params: 24,899,969",
            "Trainable params: 1,312,257",
            "Non-trainable params: 23,587,712",
        ] {
            assert!(summary.contains(needle), "missing {needle:?} in\n{summary}");
        }
        let tl3 = summary_tail(&ResNetSpec {
            mode: TransferMode::Tl3,
            ..spec
        });
        assert!(tl3.contains("Non-trainable params: 53,120"), "{tl3}");
    }

    /// Writes a safetensors file with torchvision's key names (a subset, real shapes).
    fn write_torchvision_subset(
        path: &Path,
        extra: &[(&str, Vec<usize>)],
    ) -> Vec<(String, Vec<f32>)> {
        let mut specs: Vec<(String, Vec<usize>)> = vec![
            ("conv1.weight".into(), vec![64, 3, 7, 7]),
            ("bn1.weight".into(), vec![64]),
            ("bn1.bias".into(), vec![64]),
            ("bn1.running_mean".into(), vec![64]),
            ("bn1.running_var".into(), vec![64]),
            ("layer1.0.downsample.0.weight".into(), vec![256, 64, 1, 1]),
            ("layer1.0.downsample.1.weight".into(), vec![256]),
            ("layer4.1.conv2.weight".into(), vec![512, 512, 3, 3]),
            ("layer4.1.bn2.running_var".into(), vec![512]),
            ("fc.weight".into(), vec![1000, 2048]),
            ("fc.bias".into(), vec![1000]),
        ];
        specs.extend(extra.iter().map(|(k, s)| (k.to_string(), s.clone())));
        let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = specs
            .into_iter()
            .enumerate()
            .map(|(t, (key, shape))| {
                let n: usize = shape.iter().product();
                let data = (0..n).map(|i| t as f32 + (i % 997) as f32 * 1e-3).collect();
                (key, shape, data)
            })
            .collect();
        let bytes: Vec<Vec<u8>> = tensors
            .iter()
            .map(|(_, _, d)| d.iter().flat_map(|v| v.to_le_bytes()).collect())
            .collect();
        let counter = 7i64.to_le_bytes();
        let mut views: Vec<(String, TensorView<'_>)> = tensors
            .iter()
            .zip(&bytes)
            .map(|((key, shape, _), b)| {
                let view = TensorView::new(Dtype::F32, shape.clone(), b);
                (key.clone(), view.unwrap_or_else(|e| panic!("{e}")))
            })
            .collect();
        views.push((
            "bn1.num_batches_tracked".into(),
            TensorView::new(Dtype::I64, vec![], &counter).unwrap_or_else(|e| panic!("{e}")),
        ));
        let file = safetensors::tensor::serialize(views, None).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(path, file).unwrap_or_else(|e| panic!("{e}"));
        tensors.into_iter().map(|(k, _, d)| (k, d)).collect()
    }

    #[test]
    fn loads_torchvision_keys_from_safetensors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("resnet50.safetensors");
        let written: BTreeMap<String, Vec<f32>> =
            write_torchvision_subset(&path, &[]).into_iter().collect();
        let device = Device::default();
        let (model, report) = load_pretrained(ResNet50Classifier::new(&device), &path)
            .unwrap_or_else(|e| panic!("{e}"));

        assert_eq!(
            flat(&model.res5[1].branch2b.weight),
            written["layer4.1.conv2.weight"]
        );
        assert_eq!(flat(&model.conv1.weight), written["conv1.weight"]);
        assert_eq!(flat(&model.bn_conv1.gamma), written["bn1.weight"]);
        assert_eq!(flat(&model.bn_conv1.beta), written["bn1.bias"]);
        assert_eq!(
            values(model.bn_conv1.running_mean.value()),
            written["bn1.running_mean"]
        );
        assert_eq!(
            values(model.res5[1].bn_branch2b.running_var.value()),
            written["layer4.1.bn2.running_var"]
        );
        assert_eq!(
            model.res2[0].branch1.as_ref().map(|c| flat(&c.weight)),
            Some(written["layer1.0.downsample.0.weight"].clone())
        );
        assert_eq!(
            model.res2[0].bn_branch1.as_ref().map(|b| flat(&b.gamma)),
            Some(written["layer1.0.downsample.1.weight"].clone())
        );
        // Convolution biases stay at zero.
        let bias = model.res5[1]
            .branch2b
            .bias
            .as_ref()
            .map(flat)
            .unwrap_or_default();
        assert_eq!(bias.len(), 512);
        assert!(bias.iter().all(|&b| b == 0.0));

        assert_eq!(report.loaded.len(), 9, "{report:?}");
        assert!(report.loaded.contains(&"layer4.1.conv2.weight".to_string()));
        assert_eq!(
            report.skipped,
            vec!["bn1.num_batches_tracked", "fc.bias", "fc.weight"]
        );
        // torchvision has 265 backbone tensors (53 convolutions, 53 x 4 batch-norm vectors).
        assert_eq!(report.missing.len(), 265 - 9, "{:?}", report.missing);
        assert!(
            report
                .missing
                .contains(&"layer4.2.conv3.weight".to_string())
        );
        assert!(
            report
                .missing
                .contains(&"layer3.0.downsample.1.running_var".to_string())
        );
        assert!(
            !report
                .missing
                .iter()
                .any(|k| k.starts_with("dense") || k.ends_with("conv1.bias"))
        );
    }

    #[test]
    fn bad_weight_files_are_errors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let device = Device::default();
        let missing = dir.path().join("none.safetensors");
        assert!(matches!(
            load_pretrained(ResNet50Classifier::new(&device), &missing),
            Err(ResNetError::WeightsNotFound { .. })
        ));
        let h5 = dir.path().join("weights.h5");
        std::fs::write(&h5, b"x").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            load_pretrained(ResNet50Classifier::new(&device), &h5),
            Err(ResNetError::UnsupportedFormat { .. })
        ));
        let garbage = dir.path().join("garbage.safetensors");
        std::fs::write(&garbage, b"not a safetensors file").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            load_pretrained(ResNet50Classifier::new(&device), &garbage),
            Err(ResNetError::Load { .. })
        ));
        // A wrong shape (e.g. a ResNet-18 layer) is an error, not a silent skip.
        let wrong = dir.path().join("wrong.safetensors");
        write_torchvision_subset(&wrong, &[("layer4.0.conv1.weight", vec![512, 256, 3, 3])]);
        assert!(matches!(
            load_pretrained(ResNet50Classifier::new(&device), &wrong),
            Err(ResNetError::Load { .. })
        ));
    }

    /// A minimal `torch.save` writer (no torch needed): a zip of stored entries (CRC left at 0,
    /// which `torch.save(..., _use_new_zipfile_serialization=True)` also writes when asked not
    /// to checksum) holding `archive/data.pkl`, one `archive/data/<n>` per tensor and
    /// `archive/version`. The pickle is what torch writes for a state dict: an `OrderedDict` of
    /// `torch._utils._rebuild_tensor_v2(persistent storage, offset, size, stride, False, {})`.
    fn write_pth(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)], nested: bool) {
        fn global(p: &mut Vec<u8>, module: &str, name: &str) {
            p.push(b'c');
            p.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
        }
        fn unicode(p: &mut Vec<u8>, s: &str) {
            p.push(b'X');
            p.extend_from_slice(&(s.len() as u32).to_le_bytes());
            p.extend_from_slice(s.as_bytes());
        }
        fn int(p: &mut Vec<u8>, v: usize) {
            p.push(b'J');
            p.extend_from_slice(&(v as i32).to_le_bytes());
        }
        fn ints(p: &mut Vec<u8>, vs: &[usize]) {
            p.push(b'(');
            vs.iter().for_each(|&v| int(p, v));
            p.push(b't');
        }
        fn ordered_dict(p: &mut Vec<u8>) {
            global(p, "collections", "OrderedDict");
            p.extend_from_slice(b")R");
        }
        let mut pkl = vec![0x80, 2];
        if nested {
            pkl.push(b'}');
            unicode(&mut pkl, "state_dict");
        }
        ordered_dict(&mut pkl);
        for (i, (key, shape, _)) in tensors.iter().enumerate() {
            unicode(&mut pkl, key);
            global(&mut pkl, "torch._utils", "_rebuild_tensor_v2");
            pkl.push(b'(');
            pkl.push(b'(');
            unicode(&mut pkl, "storage");
            global(&mut pkl, "torch", "FloatStorage");
            unicode(&mut pkl, &i.to_string());
            unicode(&mut pkl, "cpu");
            int(&mut pkl, shape.iter().product());
            pkl.extend_from_slice(b"tQ");
            int(&mut pkl, 0);
            ints(&mut pkl, shape);
            let strides: Vec<usize> = (0..shape.len())
                .map(|d| shape[d + 1..].iter().product())
                .collect();
            ints(&mut pkl, &strides);
            pkl.push(0x89); // False
            ordered_dict(&mut pkl);
            pkl.extend_from_slice(b"tRs");
        }
        if nested {
            pkl.push(b's');
        }
        pkl.push(b'.');

        let mut entries: Vec<(String, Vec<u8>)> = vec![("archive/data.pkl".into(), pkl)];
        for (i, (_, _, data)) in tensors.iter().enumerate() {
            let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
            entries.push((format!("archive/data/{i}"), bytes));
        }
        entries.push(("archive/version".into(), b"3\n".to_vec()));
        let (mut zip, mut central) = (Vec::new(), Vec::new());
        let u16le = |v: usize| (v as u16).to_le_bytes();
        let u32le = |v: usize| (v as u32).to_le_bytes();
        for (name, data) in &entries {
            let offset = zip.len();
            // Local header: signature, version 2.0, flags, method 0 (stored), time, date, CRC 0.
            for field in [
                &u32le(0x0403_4b50)[..],
                &u16le(20),
                &[0; 2],
                &[0; 2],
                &[0; 4],
                &[0; 4],
            ] {
                zip.extend_from_slice(field);
            }
            for field in [u32le(data.len()), u32le(data.len())] {
                zip.extend_from_slice(&field);
            }
            zip.extend_from_slice(&u16le(name.len()));
            zip.extend_from_slice(&[0; 2]);
            zip.extend_from_slice(name.as_bytes());
            zip.extend_from_slice(data);
            // Central directory entry.
            for field in [
                &u32le(0x0201_4b50)[..],
                &u16le(20),
                &u16le(20),
                &[0; 2],
                &[0; 2],
                &[0; 4],
                &[0; 4],
            ] {
                central.extend_from_slice(field);
            }
            for field in [u32le(data.len()), u32le(data.len())] {
                central.extend_from_slice(&field);
            }
            central.extend_from_slice(&u16le(name.len()));
            central.extend_from_slice(&[0; 12]); // extra, comment, disk, attributes
            central.extend_from_slice(&u32le(offset));
            central.extend_from_slice(name.as_bytes());
        }
        let central_offset = zip.len();
        zip.extend_from_slice(&central);
        for field in [
            &u32le(0x0605_4b50)[..],
            &[0; 4],
            &u16le(entries.len()),
            &u16le(entries.len()),
        ] {
            zip.extend_from_slice(field);
        }
        zip.extend_from_slice(&u32le(central.len()));
        zip.extend_from_slice(&u32le(central_offset));
        zip.extend_from_slice(&[0; 2]);
        std::fs::write(path, zip).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn loads_torchvision_keys_from_pth() {
        let pattern = |n: usize, k: f32| -> Vec<f32> {
            (0..n).map(|i| k + (i % 991) as f32 * 1e-3).collect()
        };
        let tensors = vec![
            (
                "conv1.weight".to_string(),
                vec![64, 3, 7, 7],
                pattern(64 * 147, 1.0),
            ),
            ("bn1.weight".to_string(), vec![64], pattern(64, 2.0)),
            (
                "layer4.1.conv2.weight".to_string(),
                vec![512, 512, 3, 3],
                pattern(512 * 512 * 9, 3.0),
            ),
            (
                "layer1.0.downsample.1.running_mean".to_string(),
                vec![256],
                pattern(256, 4.0),
            ),
            ("fc.bias".to_string(), vec![1000], pattern(1000, 5.0)),
        ];
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let device = Device::default();
        for nested in [false, true] {
            let path = dir.path().join(format!("resnet50_{nested}.pth"));
            write_pth(&path, &tensors, nested);
            let (model, report) = load_pretrained(ResNet50Classifier::new(&device), &path)
                .unwrap_or_else(|e| panic!("nested={nested}: {e}"));
            let what = |t: &str| format!("nested={nested} {t} {report:?}");
            assert_same(&flat(&model.conv1.weight), &tensors[0].2, &what("conv1"));
            assert_same(&flat(&model.bn_conv1.gamma), &tensors[1].2, &what("bn1"));
            let w = flat(&model.res5[1].branch2b.weight);
            assert_same(&w, &tensors[2].2, &what("layer4.1.conv2"));
            let mean = model.res2[0]
                .bn_branch1
                .as_ref()
                .map(|b| values(b.running_mean.value()));
            assert_same(
                &mean.unwrap_or_default(),
                &tensors[3].2,
                &what("downsample.1"),
            );
            assert_eq!(report.loaded.len(), 4, "{report:?}");
            assert_eq!(report.skipped, vec!["fc.bias"]);
            assert_eq!(report.missing.len(), 265 - 4);
        }
    }

    /// Counts the elements of the parameters that received a gradient.
    struct GradElements<'a> {
        grads: &'a GradientsParams,
        elements: usize,
    }

    impl ModuleVisitor for GradElements<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.grads.get::<D>(param.id).is_some() {
                self.elements += param.lazy_shape().num_elements();
            }
        }
    }

    #[test]
    fn tl2_training_updates_only_the_unfrozen_layers() {
        let device = Device::default().autodiff();
        device.seed(7);
        let spec = ResNetSpec {
            mode: TransferMode::Tl2,
            input: Shape::new(32, 32, 3),
            weights: None,
        };
        let mut model = build(&spec, &device).unwrap_or_else(|e| panic!("{e}"));
        let snapshot = |m: &ResNet50Classifier| {
            (
                flat(&m.conv1.weight),
                flat(&m.res5[1].branch2a.weight),
                values(m.res5[1].bn_branch2a.running_mean.value()),
                flat(&m.res5[1].branch2b.weight),
                values(m.res5[1].bn_branch2b.running_mean.value()),
                flat(&m.dense_3.weight),
            )
        };
        let before = snapshot(&model);
        let mut optim = AdamConfig::new().with_epsilon(1e-7).init();
        let bce = BinaryCrossEntropyLossConfig::new()
            .with_logits(true)
            .init(&device);
        let x = Tensor::<4>::random(
            [4, 3, 32, 32],
            burn::tensor::Distribution::Uniform(-100.0, 100.0),
            &device,
        );
        let y = Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 1, 1, 0], [4, 1]), &device);
        for step in 0..2 {
            let loss = bce.forward(model.forward(x.clone()), y.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            if step == 0 {
                // Exactly the trainable parameters get gradients.
                let mut counter = GradElements {
                    grads: &grads,
                    elements: 0,
                };
                model.visit(&mut counter);
                assert_eq!(counter.elements, 9_193_473);
            }
            model = optim.step(1e-3, model, grads);
        }
        let after = snapshot(&model);
        assert_eq!(before.0, after.0, "conv1 is frozen");
        assert_eq!(before.1, after.1, "res5b_branch2a is frozen");
        assert_eq!(
            before.2, after.2,
            "frozen batch norms keep their moving mean"
        );
        assert_ne!(before.3, after.3, "res5b_branch2b trains");
        assert_ne!(
            before.4, after.4,
            "trainable batch norms update their moving mean"
        );
        assert_ne!(before.5, after.5, "the head trains");
    }

    /// Training and inference throughput of ResNet-50 + head for TL3 (everything trains) and
    /// TL1 (head only) at batch 32 on 56x56 inputs, next to Keras' (`bench/resnet_keras.py`,
    /// run when `python3` can import tensorflow):
    /// `cargo test --release --lib bench_resnet -- --ignored --nocapture`
    /// (`BENCH_STEPS` = timed training steps, default 10).
    #[test]
    #[ignore = "benchmark: minutes of CPU"]
    fn bench_resnet() {
        const BATCH: usize = 32;
        let train_steps: usize = std::env::var("BENCH_STEPS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10);
        let infer_batches = 10;
        let base = Device::default();
        let device = base.clone().autodiff();
        device.seed(1);
        let host: Vec<f32> = (0..BATCH * 3 * 56 * 56)
            .map(|i| (i % 251) as f32 - 125.0)
            .collect();
        let labels: Vec<i64> = (0..BATCH as i64).map(|i| i % 2).collect();
        let mut burn_rates = BTreeMap::new();
        for mode in [TransferMode::Tl3, TransferMode::Tl1] {
            let spec = ResNetSpec {
                mode,
                input: Shape::default(),
                weights: None,
            };
            let mut model = build(&spec, &device).unwrap_or_else(|e| panic!("{e}"));
            let mut optim = AdamConfig::new().with_epsilon(1e-7).init();
            let bce = BinaryCrossEntropyLossConfig::new()
                .with_logits(true)
                .init(&device);
            let mut step = |model: ResNet50Classifier| {
                let x = Tensor::<4>::from_data(
                    TensorData::new(host.clone(), [BATCH, 3, 56, 56]),
                    &device,
                );
                let y = Tensor::<2, Int>::from_data(
                    TensorData::new(labels.clone(), [BATCH, 1]),
                    &device,
                );
                let loss = bce.forward(model.forward(x), y);
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                let model = optim.step(1e-4, model, grads);
                let _ = loss.into_scalar::<f32>();
                model
            };
            model = step(model); // warm-up
            let t = Instant::now();
            for _ in 0..train_steps {
                model = step(model);
            }
            let train_rate = (train_steps * BATCH) as f64 / t.elapsed().as_secs_f64();

            let eval = model.valid();
            let infer = |m: &ResNet50Classifier| {
                let x = Tensor::<4>::from_data(
                    TensorData::new(host.clone(), [BATCH, 3, 56, 56]),
                    &base,
                );
                let _ = m.forward(x).into_data();
            };
            infer(&eval); // warm-up
            let t = Instant::now();
            for _ in 0..infer_batches {
                infer(&eval);
            }
            let infer_rate = (infer_batches * BATCH) as f64 / t.elapsed().as_secs_f64();
            println!(
                "burn  {base:?} {mode}: train {train_rate:.1} img/s ({train_steps} steps of \
                 {BATCH}), inference {infer_rate:.1} img/s"
            );
            burn_rates.insert(mode.to_string(), (train_rate, infer_rate));
        }

        let keras = std::process::Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/bench/resnet_keras.py"
            ))
            .arg(train_steps.to_string())
            .arg(infer_batches.to_string())
            .output();
        let out = match keras {
            Ok(out) if out.status.success() => out,
            Ok(out) => {
                let err = String::from_utf8_lossy(&out.stderr);
                println!("keras benchmark failed: {err}");
                return;
            }
            Err(e) => {
                println!("keras benchmark not run: {e}");
                return;
            }
        };
        let text = String::from_utf8_lossy(&out.stdout);
        for line in text.lines().filter_map(|l| l.strip_prefix("RESULT ")) {
            let Ok(r) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let mode = r["mode"].as_str().unwrap_or("?");
            let kt = r["train_img_s"].as_f64().unwrap_or(f64::NAN);
            let ki = r["infer_img_s"].as_f64().unwrap_or(f64::NAN);
            println!(
                "keras {} {mode}: {} trainable, train {kt:.1} img/s, inference {ki:.1} img/s",
                r["backend"], r["trainable"]
            );
            if let Some((bt, bi)) = burn_rates.get(mode) {
                println!(
                    "burn / keras {mode}: train {:.2}x, inference {:.2}x",
                    bt / kt,
                    bi / ki
                );
            }
        }
    }
}
