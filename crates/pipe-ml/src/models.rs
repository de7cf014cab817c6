//! The report's CNNs built from scratch (§3.1): B1, B2 and B3 (= B2's architecture), and the
//! model descriptions of the ResNet-50 transfer-learning models TL1–TL3 (§3.2, built in
//! [`crate::resnet`]).
//!
//! Layout (Keras, input `H x W x C`, 56x56x3 in the report):
//! Conv(16, 3x3 valid, relu) → MaxPool2 → Conv(64) → MaxPool2 → Conv(128) → MaxPool2 →
//! Flatten → Dense(512, relu) [→ Dropout → Dense(512, relu) → Dropout] → Dense(1).
//! The output layer emits a logit: the sigmoid is folded into BCE-with-logits for training and
//! applied explicitly at inference.
//!
//! Weights are drawn on the host from a seeded ChaCha8 stream (Glorot-uniform like Keras by
//! default, He-uniform optionally) and biases start at zero like Keras, so a model's initial
//! weights depend on the seed only, not on the backend or on its global RNG state.

use crate::backend::MlError;
use crate::declared::{self, Layer};
use crate::defaults;
use crate::resnet::basic::BasicSpec;
use crate::resnet::{self, Depth, Freeze, ResNetSpec, TransferMode};
use burn::module::{Param, ParamId};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Initializer, Linear, LinearConfig, LinearLayout, Relu};
use burn::prelude::*;
use pipe_data::Shape;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Which of the report's models: the from-scratch CNNs B1–B3 or the ResNet-50 transfer-learning
/// models TL1–TL3.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Three conv+pool blocks, one hidden dense layer.
    B1,
    /// B1 plus a second hidden dense layer and dropout after each hidden dense layer.
    B2,
    /// B2's architecture (it differs by training: augmentation, lr 1e-4).
    B3,
    /// ResNet-50 + dense head, only the head trains.
    Tl1,
    /// ResNet-50 + dense head, trained from `res5b_branch2b` on.
    Tl2,
    /// ResNet-50 + dense head, everything trains.
    Tl3,
    /// torchvision's resnet18 + dense head, any number of classes, `freeze:` chooses what trains.
    Resnet18,
    /// torchvision's resnet34, as `resnet18`.
    Resnet34,
    /// The ResNet-50 of TL1–TL3 as a named model, as `resnet18`.
    Resnet50,
    /// A model declared in YAML (`layers:`, see [`crate::declared`]); not a name users write.
    Declared,
}

impl ModelKind {
    /// Every kind, in display order.
    pub const ALL: [ModelKind; 9] = [
        ModelKind::B1,
        ModelKind::B2,
        ModelKind::B3,
        ModelKind::Tl1,
        ModelKind::Tl2,
        ModelKind::Tl3,
        ModelKind::Resnet18,
        ModelKind::Resnet34,
        ModelKind::Resnet50,
    ];

    /// Whether the architecture has the second hidden dense layer and dropout (B2, B3).
    pub fn regularised(self) -> bool {
        matches!(self, ModelKind::B2 | ModelKind::B3)
    }

    /// The freezing mode of a transfer-learning kind (`None` for B1–B3).
    pub fn transfer_mode(self) -> Option<TransferMode> {
        match self {
            ModelKind::Tl1 => Some(TransferMode::Tl1),
            ModelKind::Tl2 => Some(TransferMode::Tl2),
            ModelKind::Tl3 => Some(TransferMode::Tl3),
            _ => None,
        }
    }

    /// The depth of a named ResNet (`resnet18`, `resnet34`, `resnet50`), whose `freeze:`
    /// chooses what trains.
    pub fn depth(self) -> Option<Depth> {
        match self {
            ModelKind::Resnet18 => Some(Depth::R18),
            ModelKind::Resnet34 => Some(Depth::R34),
            ModelKind::Resnet50 => Some(Depth::R50),
            _ => None,
        }
    }

    /// Whether the kind is a ResNet (TL1–TL3 or a named one): pretrained weights apply.
    pub fn is_resnet(self) -> bool {
        self.transfer_mode().is_some() || self.depth().is_some()
    }

    /// The report's learning rate for this kind: 1e-3 for B1/B2, 1e-4 for B3 and TL1–TL3.
    pub fn default_lr(self) -> f64 {
        match self {
            ModelKind::B1 | ModelKind::B2 | ModelKind::Declared => defaults::LR_B1_B2,
            _ => defaults::LR_B3_TL,
        }
    }

    /// Lower-case name (`b1`, …, `tl3`).
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::B1 => "b1",
            ModelKind::B2 => "b2",
            ModelKind::B3 => "b3",
            ModelKind::Tl1 => "tl1",
            ModelKind::Tl2 => "tl2",
            ModelKind::Tl3 => "tl3",
            ModelKind::Resnet18 => "resnet18",
            ModelKind::Resnet34 => "resnet34",
            ModelKind::Resnet50 => "resnet50",
            ModelKind::Declared => "declared",
        }
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ModelKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModelKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!(
                    "unknown model `{s}`: expected one of b1, b2, b3, tl1, tl2, tl3, resnet18, \
                     resnet34, resnet50"
                )
            })
    }
}

/// Weight initialisation of conv and dense kernels (biases always start at zero).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// Keras' default `glorot_uniform`: U(-l, l), l = sqrt(6 / (fan_in + fan_out)).
    #[default]
    GlorotUniform,
    /// Keras' `he_uniform`: U(-l, l), l = sqrt(6 / fan_in).
    He,
}

fn default_dropout() -> f64 {
    defaults::DROPOUT
}

/// A model's architecture: everything needed to rebuild it (weights aside).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub kind: ModelKind,
    /// Input image shape (height x width x channels).
    pub input: Shape,
    #[serde(default)]
    pub init: Init,
    /// Dropout rate after each hidden dense layer (B2/B3 only).
    #[serde(default = "default_dropout")]
    pub dropout: f64,
    /// ResNets: a torchvision state dict of the same network (`.pth`, `.pt` or `.safetensors`)
    /// to start from; `None` = random init (with a warning). Ignored by B1–B3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<PathBuf>,
    /// Number of classes the model tells apart. The train stage sets it from its dataset's
    /// vocabulary; 2 (a sigmoid head) is left out of the JSON so binary records are unchanged.
    #[serde(default = "two", skip_serializing_if = "is_two")]
    pub classes: usize,
    /// The layers of a [`ModelKind::Declared`] model (empty for the named ones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<Layer>,
    /// Named ResNets: which layers train; `None` = [`Freeze::default_for`] the weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze: Option<Freeze>,
}

fn two() -> usize {
    2
}

fn is_two(n: &usize) -> bool {
    *n == 2
}

impl ModelSpec {
    /// Units of the output layer: one sigmoid logit for two classes, one softmax logit per
    /// class beyond.
    pub fn output_units(&self) -> usize {
        if self.classes <= 2 { 1 } else { self.classes }
    }

    /// The report's defaults for `kind` at 56x56x3 (no pretrained weights).
    pub fn new(kind: ModelKind) -> Self {
        Self {
            kind,
            input: Shape::default(),
            init: Init::default(),
            dropout: default_dropout(),
            weights: None,
            classes: two(),
            layers: Vec::new(),
            freeze: None,
        }
    }

    /// A declared model of `layers` at 56x56x3.
    pub fn declared(layers: Vec<Layer>) -> Self {
        Self {
            layers,
            ..Self::new(ModelKind::Declared)
        }
    }

    /// The freezing of a named ResNet: `freeze`, else the default for its weights.
    pub fn effective_freeze(&self) -> Freeze {
        self.freeze
            .clone()
            .unwrap_or_else(|| Freeze::default_for(self.weights.is_some()))
    }

    /// The first trainable layer of a named ResNet (`None` for other kinds or an unknown
    /// `freeze: until` layer, which [`validate`] reports).
    fn trainable_from(&self) -> Option<String> {
        self.effective_freeze()
            .first_trainable(self.kind.depth()?)
            .ok()
    }

    /// The ResNet-50 description of TL1–TL3 and `resnet50` (`None` otherwise).
    pub fn resnet(&self) -> Option<ResNetSpec> {
        let (mode, trainable_from) = match self.kind {
            ModelKind::Resnet50 => (TransferMode::Tl3, Some(self.trainable_from()?)),
            kind => (kind.transfer_mode()?, None),
        };
        Some(ResNetSpec {
            mode,
            input: self.input,
            weights: self.weights.clone(),
            units: self.output_units(),
            trainable_from,
        })
    }

    /// The BasicBlock net of `resnet18` / `resnet34` (`None` otherwise).
    pub fn basic(&self) -> Option<BasicSpec> {
        let depth = self.kind.depth().filter(|d| *d != Depth::R50)?;
        Some(BasicSpec {
            depth,
            input: self.input,
            weights: self.weights.clone(),
            units: self.output_units(),
            trainable_from: self.trainable_from()?,
        })
    }
}

const CONV_CHANNELS: [usize; 3] = [16, 64, 128];
const KERNEL: usize = 3;
pub const HIDDEN: usize = 512;
/// Smallest input side for which three valid 3x3 convolutions and 2x2 poolings leave at least
/// one pixel: 22 → 20 → 10 → 8 → 4 → 2 → 1.
pub const MIN_INPUT_SIDE: u32 = 22;

/// Spatial size after one conv(3x3 valid) + maxpool(2) block.
fn block_out(side: usize) -> usize {
    side.saturating_sub(KERNEL - 1) / 2
}

/// Every problem with `spec`, all at once (empty when valid).
pub fn validate(spec: &ModelSpec) -> Vec<String> {
    let mut problems = Vec::new();
    if !(2..=256).contains(&spec.classes) {
        problems.push(format!(
            "model.classes: {} must be between 2 and 256",
            spec.classes
        ));
    }
    if spec.kind == ModelKind::Declared {
        if spec.input.channels == 0 {
            problems.push("model.input: channels must be at least 1".to_owned());
        }
        problems.extend(
            declared::validate(spec)
                .into_iter()
                .map(|p| format!("model.{}: {}", p.path, p.message)),
        );
        return problems;
    } else if !spec.layers.is_empty() {
        problems.push(format!("model: {} takes no layers", spec.kind));
    }
    if let (Some(freeze), None) = (&spec.freeze, spec.kind.depth()) {
        problems.push(format!(
            "freeze: `{freeze}` applies to resnet18, resnet34 and resnet50, not {}",
            spec.kind
        ));
    }
    if let Some(depth) = spec.kind.depth()
        && let Err(e) = spec.effective_freeze().first_trainable(depth)
    {
        problems.push(format!("freeze: {e}"));
    }
    if spec.kind.is_resnet() {
        if let Err(e) = resnet::validate_input(spec.input) {
            problems.push(format!("model.input: {e}"));
        }
        return problems;
    }
    let s = spec.input;
    if s.channels == 0 {
        problems.push("model.input: channels must be at least 1".to_owned());
    }
    for (name, side) in [("height", s.height), ("width", s.width)] {
        if side < MIN_INPUT_SIDE {
            problems.push(format!(
                "model.input: {name} {side} is too small for three conv(3x3)+maxpool(2) blocks \
                 (minimum {MIN_INPUT_SIDE})"
            ));
        }
    }
    if !(0.0..1.0).contains(&spec.dropout) || spec.dropout.is_nan() {
        problems.push(format!("model.dropout: {} must be in [0, 1)", spec.dropout));
    }
    problems
}

/// Spatial side after the three blocks, for one input side.
fn final_side(side: u32) -> usize {
    (0..3).fold(side as usize, |s, _| block_out(s))
}

/// Length of the flattened feature vector fed to the first dense layer.
pub(crate) fn flat_features(spec: &ModelSpec) -> usize {
    final_side(spec.input.height) * final_side(spec.input.width) * CONV_CHANNELS[2]
}

/// The burn module. Dropout is applied with masks supplied by the caller (drawn on the host
/// from the training seed) rather than by burn's `Dropout`, whose backend RNG is global state.
#[derive(Module, Debug)]
pub struct Cnn {
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
    pool: MaxPool2d,
    fc1: Linear,
    fc2: Option<Linear>,
    out: Linear,
    relu: Relu,
}

/// Dropout masks for one batch: `[n, 512]` each, entries 0 or `1 / (1 - rate)` (inverted
/// dropout, as Keras does).
pub struct DropoutMasks {
    pub after_fc1: Tensor<2>,
    pub after_fc2: Tensor<2>,
}

/// Draws one weight tensor's values: uniform in (-limit, limit).
fn uniform(rng: &mut ChaCha8Rng, n: usize, limit: f64) -> Vec<f32> {
    let limit = limit as f32;
    (0..n)
        .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * limit)
        .collect()
}

/// A parameter initialised lazily from host values (zeros when `values` is `None`), with a
/// fixed id so records and optimiser state are reproducible byte for byte.
fn host_param<const D: usize>(
    id: u64,
    values: Option<Vec<f32>>,
    shape: [usize; D],
    device: &Device,
) -> Param<Tensor<D>> {
    Param::uninitialized(
        ParamId::from(id),
        move |device: &Device, require_grad: bool| {
            let t = match values {
                Some(v) => Tensor::<D>::from_data(TensorData::new(v, shape), device),
                None => Tensor::<D>::zeros(shape, device),
            };
            if require_grad { t.require_grad() } else { t }
        },
        device.clone(),
        true,
        shape.into(),
    )
}

/// Draws kernels from an optional seeded stream, numbering parameter ids in draw order.
pub(crate) struct Draw<'a> {
    rng: Option<&'a mut ChaCha8Rng>,
    init: Init,
    next_id: u64,
}

impl<'a> Draw<'a> {
    pub(crate) fn new(rng: Option<&'a mut ChaCha8Rng>, init: Init) -> Self {
        Self {
            rng,
            init,
            next_id: 0,
        }
    }

    pub(crate) fn kernel<const D: usize>(
        &mut self,
        shape: [usize; D],
        fan_in: usize,
        fan_out: usize,
        device: &Device,
    ) -> Param<Tensor<D>> {
        let n = shape.iter().product();
        let limit = match self.init {
            Init::GlorotUniform => (6.0 / (fan_in + fan_out) as f64).sqrt(),
            Init::He => (6.0 / fan_in as f64).sqrt(),
        };
        let values = self.rng.as_deref_mut().map(|r| uniform(r, n, limit));
        self.param(values, shape, device)
    }

    pub(crate) fn bias(&mut self, n: usize, device: &Device) -> Param<Tensor<1>> {
        self.param(None, [n], device)
    }

    pub(crate) fn param<const D: usize>(
        &mut self,
        values: Option<Vec<f32>>,
        shape: [usize; D],
        device: &Device,
    ) -> Param<Tensor<D>> {
        self.next_id += 1;
        host_param(self.next_id, values, shape, device)
    }

    fn conv(&mut self, c_in: usize, c_out: usize, device: &Device) -> Conv2d {
        let mut conv = Conv2dConfig::new([c_in, c_out], [KERNEL, KERNEL])
            .with_initializer(Initializer::Zeros)
            .init(device);
        let k2 = KERNEL * KERNEL;
        conv.weight = self.kernel([c_out, c_in, KERNEL, KERNEL], c_in * k2, c_out * k2, device);
        conv.bias = Some(self.bias(c_out, device));
        conv
    }

    pub(crate) fn dense(&mut self, d_in: usize, d_out: usize, device: &Device) -> Linear {
        let mut lin = LinearConfig::new(d_in, d_out)
            .with_layout(LinearLayout::Row)
            .with_initializer(Initializer::Zeros)
            .init(device);
        lin.weight = self.kernel([d_in, d_out], d_in, d_out, device);
        lin.bias = Some(self.bias(d_out, device));
        lin
    }
}

/// Images per slice of [`Cnn::infer`]'s convolutional blocks (B3 at 56x56x3: conv1's output for
/// 32 images is 6 MB).
pub(crate) const FEATURE_CHUNK: usize = 32;

impl Cnn {
    /// Builds the module on `device`. With `seed`, kernels are drawn from it; without, every
    /// parameter is a lazy zero (for counting parameters or loading a record).
    ///
    /// The caller must have validated `spec` (see [`validate`]).
    pub fn new(spec: &ModelSpec, seed: Option<u64>, device: &Device) -> Self {
        let mut rng = seed.map(ChaCha8Rng::seed_from_u64);
        let mut d = Draw::new(rng.as_mut(), spec.init);
        let c = spec.input.channels as usize;
        let conv1 = d.conv(c, CONV_CHANNELS[0], device);
        let conv2 = d.conv(CONV_CHANNELS[0], CONV_CHANNELS[1], device);
        let conv3 = d.conv(CONV_CHANNELS[1], CONV_CHANNELS[2], device);
        let fc1 = d.dense(flat_features(spec), HIDDEN, device);
        let fc2 = spec
            .kind
            .regularised()
            .then(|| d.dense(HIDDEN, HIDDEN, device));
        let out = d.dense(HIDDEN, spec.output_units(), device);
        Self {
            conv1,
            conv2,
            conv3,
            pool: MaxPool2dConfig::new([2, 2]).init(),
            fc1,
            fc2,
            out,
            relu: Relu::new(),
        }
    }

    /// Training forward pass: `x` `[N, C, H, W]` → logits `[N, 1]`, with dropout `masks` for
    /// B2/B3. ReLU runs after pooling: max and ReLU commute, so values and gradients are those
    /// of Keras' conv → ReLU → pool order while ReLU and its backward touch 4x fewer values.
    pub fn forward(&self, x: Tensor<4>, masks: Option<DropoutMasks>) -> Tensor<2> {
        self.head(self.features(x), masks)
    }

    /// Inference forward pass (no dropout), same result as [`Cnn::forward`] without masks.
    ///
    /// The convolutional blocks run on slices of [`FEATURE_CHUNK`] images, so each block's
    /// output is still in the CPU's cache when the next block reads it (at batch 1024, conv1's
    /// output alone is 190 MB); the dense head then runs on the whole batch. Every image's
    /// features are computed alone either way, so the logits are the same bits.
    pub(crate) fn infer(&self, x: Tensor<4>) -> Tensor<2> {
        let n = x.dims()[0];
        if n <= FEATURE_CHUNK {
            return self.head(self.features(x), None);
        }
        let parts: Vec<Tensor<4>> = (0..n)
            .step_by(FEATURE_CHUNK)
            .map(|s| self.features(x.clone().narrow(0, s, FEATURE_CHUNK.min(n - s))))
            .collect();
        self.head(Tensor::cat(parts, 0), None)
    }

    /// The three conv → pool → ReLU blocks. Pooling goes through burn's `MaxPool2d`: flex
    /// (with pipe's patch, `vendor/burn-flex/PATCH.md`) pools whole windows directly and makes
    /// argmax indices only when autodiff tracks the input.
    fn features(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.relu.forward(self.pool.forward(self.conv1.forward(x)));
        let x = self.relu.forward(self.pool.forward(self.conv2.forward(x)));
        self.relu.forward(self.pool.forward(self.conv3.forward(x)))
    }

    /// Inference up to the last hidden dense layer (after its ReLU): `[N, 512]`, what
    /// `stack` fits a classical classifier on. Chunked like [`Cnn::infer`].
    pub(crate) fn embed(&self, x: Tensor<4>) -> Tensor<2> {
        let n = x.dims()[0];
        if n <= FEATURE_CHUNK {
            return self.hidden(self.features(x), None);
        }
        let parts: Vec<Tensor<4>> = (0..n)
            .step_by(FEATURE_CHUNK)
            .map(|s| self.features(x.clone().narrow(0, s, FEATURE_CHUNK.min(n - s))))
            .collect();
        self.hidden(Tensor::cat(parts, 0), None)
    }

    fn head(&self, x: Tensor<4>, masks: Option<DropoutMasks>) -> Tensor<2> {
        self.out.forward(self.hidden(x, masks))
    }

    /// The dense layers before the output: the last hidden layer's activations.
    fn hidden(&self, x: Tensor<4>, masks: Option<DropoutMasks>) -> Tensor<2> {
        // burn is NCHW, so this flattens in (C, H, W) order where Keras (NHWC) flattens in
        // (H, W, C) order. Irrelevant when training from scratch; it would matter only when
        // importing Keras dense weights, whose rows would need permuting.
        let x: Tensor<2> = x.flatten(1, 3);
        let mut x = self.relu.forward(self.fc1.forward(x));
        let (m1, m2) = match masks {
            Some(m) => (Some(m.after_fc1), Some(m.after_fc2)),
            None => (None, None),
        };
        if let Some(fc2) = &self.fc2 {
            if let Some(m) = m1 {
                x = x * m;
            }
            x = self.relu.forward(fc2.forward(x));
            if let Some(m) = m2 {
                x = x * m;
            }
        }
        x
    }

    /// Parameter counts per layer, in layer order (for the summary table).
    fn layer_params(&self) -> [usize; 5] {
        [
            self.conv1.num_params(),
            self.conv2.num_params(),
            self.conv3.num_params(),
            self.fc1.num_params(),
            self.fc2.as_ref().map_or(0, |l| l.num_params()),
        ]
    }
}

/// A device for building lazy modules that are never run (parameter counts, summaries).
fn any_device() -> Result<Device, MlError> {
    let choice = crate::backend::compiled_devices()
        .into_iter()
        .next()
        .unwrap_or_default();
    crate::backend::device(choice)
}

/// Number of trainable parameters, from the real burn module (nothing is allocated).
///
/// Returns 0 when `spec` is invalid or when the build has no backend at all.
pub fn param_count(spec: &ModelSpec) -> usize {
    param_counts(spec).0
}

/// (trainable, total) parameters, counted as Keras does (for TL kinds the total includes the
/// frozen layers and the batch-norm moving statistics; B1–B3 have no non-trainable ones).
///
/// Returns (0, 0) when `spec` is invalid or when the build has no backend at all.
pub fn param_counts(spec: &ModelSpec) -> (usize, usize) {
    if !validate(spec).is_empty() {
        return (0, 0);
    }
    if let Some(mode) = spec.kind.transfer_mode() {
        return resnet::param_counts(mode, spec.input);
    }
    if let Some(b) = spec.basic() {
        return resnet::basic::param_counts(&b);
    }
    if let Some(rs) = spec.resnet() {
        return resnet::param_counts_from(rs.first_trainable(), rs.units);
    }
    if spec.kind == ModelKind::Declared {
        return declared::param_counts(spec);
    }
    let n = any_device().map_or(0, |d| Cnn::new(spec, None, &d).num_params());
    (n, n)
}

/// A Keras-like summary table (shapes in Keras NHWC notation, like the report's Figure 4).
pub fn summary(spec: &ModelSpec) -> String {
    let problems = validate(spec);
    if !problems.is_empty() {
        return format!("invalid model: {}\n", problems.join("; "));
    }
    if let Some(rs) = spec.resnet() {
        let mut s = resnet::summary_tail(&rs);
        s.push('\n');
        return s;
    }
    if let Some(b) = spec.basic() {
        return resnet::basic::summary(&b);
    }
    if spec.kind == ModelKind::Declared {
        return declared::summary(spec, "declared");
    }
    let Ok(device) = any_device() else {
        return "no backend compiled in\n".to_owned();
    };
    let model = Cnn::new(spec, None, &device);
    let per = model.layer_params();
    let total = model.num_params();

    let shape = |dims: &[usize]| {
        let inner: Vec<String> = dims.iter().map(usize::to_string).collect();
        format!("(None, {})", inner.join(", "))
    };
    let c = spec.input.channels as usize;
    let (mut h, mut w) = (spec.input.height as usize, spec.input.width as usize);
    let mut rows: Vec<(String, String, usize)> =
        vec![("input (InputLayer)".into(), shape(&[h, w, c]), 0)];
    for (i, &ch) in CONV_CHANNELS.iter().enumerate() {
        h -= KERNEL - 1;
        w -= KERNEL - 1;
        rows.push((
            format!("conv2d_{} (Conv2D)", i + 1),
            shape(&[h, w, ch]),
            per[i],
        ));
        h /= 2;
        w /= 2;
        rows.push((
            format!("max_pooling2d_{} (MaxPooling2D)", i + 1),
            shape(&[h, w, ch]),
            0,
        ));
    }
    rows.push((
        "flatten (Flatten)".into(),
        shape(&[h * w * CONV_CHANNELS[2]]),
        0,
    ));
    rows.push(("dense_1 (Dense)".into(), shape(&[HIDDEN]), per[3]));
    let mut dense = 1;
    if spec.kind.regularised() {
        rows.push(("dropout_1 (Dropout)".into(), shape(&[HIDDEN]), 0));
        dense += 1;
        rows.push((format!("dense_{dense} (Dense)"), shape(&[HIDDEN]), per[4]));
        rows.push(("dropout_2 (Dropout)".into(), shape(&[HIDDEN]), 0));
    }
    dense += 1;
    let out_params = total - per.iter().sum::<usize>();
    rows.push((
        format!("dense_{dense} (Dense)"),
        shape(&[spec.output_units()]),
        out_params,
    ));

    declared::render_table(spec.kind.as_str(), &rows, total, 0)
}

/// Values per image that a training step keeps for its backward pass: the output of every
/// layer from the first trainable one on (the input included). A lower bound of what autodiff
/// holds (some operations keep more), used to tell a batch that cannot fit before training.
/// 0 for an invalid spec.
pub fn activation_values(spec: &ModelSpec) -> usize {
    if !validate(spec).is_empty() {
        return 0;
    }
    let input = spec.input.image_len();
    if let Some(mode) = spec.kind.transfer_mode() {
        let layers = resnet::keras_layers(spec.input);
        let first = layers
            .iter()
            .position(|l| l.name == mode.first_trainable_layer())
            .unwrap_or(0);
        // Frozen layers run without autodiff: only what follows the first trainable one is
        // kept.
        return layers[first..]
            .iter()
            .filter(|l| l.class != "ZeroPadding2D")
            .map(|l| l.output.iter().product::<usize>())
            .sum();
    }
    if spec.kind == ModelKind::Declared {
        let plan = declared::plan(&spec.layers, spec.input, spec.output_units());
        return input + plan.rows.iter().map(|r| r.out.values()).sum::<usize>();
    }
    let (mut h, mut w) = (spec.input.height as usize, spec.input.width as usize);
    let mut values = input;
    for ch in CONV_CHANNELS {
        (h, w) = (h - (KERNEL - 1), w - (KERNEL - 1));
        values += h * w * ch; // convolution
        (h, w) = (h / 2, w / 2);
        values += 2 * h * w * ch; // pooling, ReLU
    }
    let dense = if spec.kind.regularised() { 2 } else { 1 };
    // Each hidden dense layer: its output, ReLU and (B2/B3) the dropout product.
    values + dense * 3 * HIDDEN + spec.output_units()
}

/// The dropout layers of `spec` in forward order: (rate, values per image). B2/B3 have two
/// after their hidden dense layers (none at rate 0); B1 and the TL models none.
pub fn dropout_layers(spec: &ModelSpec) -> Vec<(f64, usize)> {
    match spec.kind {
        ModelKind::Declared => {
            declared::plan(&spec.layers, spec.input, spec.output_units()).dropout
        }
        k if k.regularised() && spec.dropout > 0.0 => vec![(spec.dropout, HIDDEN); 2],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedding_is_the_last_hidden_layer_the_output_reads() {
        let dev = any_device().unwrap();
        for kind in [ModelKind::B1, ModelKind::B2] {
            let mut spec = ModelSpec::new(kind);
            spec.input = Shape::new(MIN_INPUT_SIDE, MIN_INPUT_SIDE, 3);
            let net = Cnn::new(&spec, Some(3), &dev);
            let side = MIN_INPUT_SIDE as usize;
            // More images than one feature chunk, so the chunked path runs too.
            let n = FEATURE_CHUNK + 3;
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            let x: Vec<f32> = (0..n * 3 * side * side).map(|_| rng.random()).collect();
            let x = Tensor::<4>::from_data(TensorData::new(x, [n, 3, side, side]), &dev);
            let e = net.embed(x.clone());
            assert_eq!(e.dims(), [n, HIDDEN], "{kind:?}");
            let values = e.clone().into_data().try_to_vec::<f32>().unwrap();
            assert!(values.iter().all(|v| *v >= 0.0), "after ReLU");
            assert!(values.iter().any(|v| *v > 0.0));
            let logits = net.infer(x).into_data().try_to_vec::<f32>().unwrap();
            let from_embedding = net.out.forward(e).into_data().try_to_vec::<f32>().unwrap();
            assert_eq!(logits, from_embedding, "{kind:?}");
        }
    }

    #[test]
    fn parameter_counts_match_the_report() {
        assert_eq!(param_count(&ModelSpec::new(ModelKind::B1)), 1_723_009);
        assert_eq!(param_count(&ModelSpec::new(ModelKind::B2)), 1_985_665);
        assert_eq!(param_count(&ModelSpec::new(ModelKind::B3)), 1_985_665);
    }

    #[test]
    fn transfer_learning_counts_and_summary() {
        let tl = |kind| ModelSpec::new(kind);
        assert_eq!(param_count(&tl(ModelKind::Tl1)), 1_312_257);
        assert_eq!(param_count(&tl(ModelKind::Tl2)), 9_193_473);
        assert_eq!(param_count(&tl(ModelKind::Tl3)), 24_846_849);
        assert_eq!(param_counts(&tl(ModelKind::Tl1)), (1_312_257, 24_899_969));
        assert_eq!(
            param_counts(&ModelSpec::new(ModelKind::B1)),
            (1_723_009, 1_723_009)
        );
        let s = summary(&tl(ModelKind::Tl2));
        assert!(s.contains("Trainable params: 9,193,473"), "{s}");
        let mut small = tl(ModelKind::Tl1);
        small.input = Shape::new(31, 56, 3);
        let p = validate(&small);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("32x32"), "{p:?}");
        assert_eq!(param_count(&small), 0);
        small.input = Shape::new(32, 32, 1);
        assert!(validate(&small).is_empty());
        assert_eq!(ModelKind::Tl3.default_lr(), 1e-4);
        assert_eq!(ModelKind::B2.default_lr(), 1e-3);
        assert!(!ModelKind::Tl2.regularised() && ModelKind::B3.regularised());
        for k in ModelKind::ALL {
            assert_eq!(k.to_string().parse::<ModelKind>(), Ok(k));
        }
    }

    #[test]
    fn tl_spec_serde() {
        let spec: ModelSpec = serde_json::from_str(
            r#"{"kind":"tl2","input":{"height":56,"width":56,"channels":3},"weights":"/w/r50.pth"}"#,
        )
        .unwrap();
        assert_eq!(spec.kind, ModelKind::Tl2);
        assert_eq!(spec.weights, Some(PathBuf::from("/w/r50.pth")));
        let rs = spec.resnet().unwrap();
        assert_eq!(rs.mode, TransferMode::Tl2);
        assert_eq!(rs.weights, spec.weights);
        // No `weights` key for B models: their serialised form is unchanged.
        let b = serde_json::to_string(&ModelSpec::new(ModelKind::B1)).unwrap();
        assert!(!b.contains("weights"), "{b}");
        assert!(ModelSpec::new(ModelKind::B1).resnet().is_none());
    }

    #[test]
    fn summary_shows_keras_shapes_and_totals() {
        let s = summary(&ModelSpec::new(ModelKind::B1));
        assert!(s.contains("Total params: 1,723,009"), "{s}");
        assert!(
            s.contains("(None, 54, 54, 16)") && s.contains("(None, 3200)"),
            "{s}"
        );
        assert!(s.contains("1,638,912") && s.contains("73,856"), "{s}");
        let s2 = summary(&ModelSpec::new(ModelKind::B2));
        assert!(s2.contains("Total params: 1,985,665"), "{s2}");
        assert!(
            s2.contains("dropout_2 (Dropout)") && s2.contains("262,656"),
            "{s2}"
        );
    }

    #[test]
    fn minimum_input_is_22_pixels() {
        let mut spec = ModelSpec::new(ModelKind::B1);
        spec.input = Shape::new(MIN_INPUT_SIDE, MIN_INPUT_SIDE, 3);
        assert!(validate(&spec).is_empty());
        assert_eq!(flat_features(&spec), 128);
        spec.input = Shape::new(21, 40, 0);
        spec.dropout = 1.0;
        let problems = validate(&spec);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("height 21")));
        assert_eq!(param_count(&spec), 0);
    }

    #[test]
    fn spec_serde_defaults_and_rejects_unknown_fields() {
        let spec: ModelSpec =
            serde_json::from_str(r#"{"kind":"b3","input":{"height":56,"width":56,"channels":3}}"#)
                .unwrap();
        assert_eq!(spec, ModelSpec::new(ModelKind::B3));
        let err = serde_json::from_str::<ModelSpec>(
            r#"{"kind":"b3","input":{"height":56,"width":56,"channels":3},"dropot":0.1}"#,
        );
        assert!(err.is_err());
    }

    #[test]
    fn seeded_init_is_reproducible_glorot_and_zero_bias() {
        let device = any_device().unwrap();
        let mut spec = ModelSpec::new(ModelKind::B1);
        spec.input = Shape::new(22, 22, 3);
        let a = Cnn::new(&spec, Some(7), &device);
        let b = Cnn::new(&spec, Some(7), &device);
        let c = Cnn::new(&spec, Some(8), &device);
        let wa = a
            .fc1
            .weight
            .val()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let wb = b
            .fc1
            .weight
            .val()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let wc = c
            .fc1
            .weight
            .val()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        assert_eq!(wa, wb);
        assert_ne!(wa, wc);
        let limit = (6.0f32 / (128 + 512) as f32).sqrt();
        assert!(wa.iter().all(|v| v.abs() <= limit));
        assert!(wa.iter().any(|v| v.abs() > 0.9 * limit));
        let bias = a
            .conv2
            .bias
            .as_ref()
            .unwrap()
            .val()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        assert!(bias.iter().all(|&v| v == 0.0));
        let x = Tensor::<4>::zeros([2, 3, 22, 22], &device);
        assert_eq!(a.forward(x, None).dims(), [2, 1]);
    }

    /// Inference on slices of the batch gives the same bits as one forward pass of the whole
    /// batch, for a batch that is not a multiple of the slice.
    #[test]
    fn sliced_inference_is_bit_identical() {
        let device = any_device().unwrap();
        let mut spec = ModelSpec::new(ModelKind::B3);
        spec.input = Shape::new(13, 11, 3);
        let m = Cnn::new(&spec, Some(3), &device).valid();
        let n = 2 * FEATURE_CHUNK + 5;
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let v: Vec<f32> = (0..n * 3 * 13 * 11).map(|_| rng.random::<f32>()).collect();
        let x = Tensor::<4>::from_data(TensorData::new(v, [n, 3, 13, 11]), &device);
        let whole = m.forward(x.clone(), None).into_data();
        let sliced = m.infer(x).into_data();
        assert_eq!(whole.shape().to_vec(), vec![n, 1]);
        assert_eq!(whole, sliced);
    }

    /// The model pools before its ReLU; Keras' order is ReLU then pool. Both orders give the
    /// same bits forward and the same input gradient, on odd sizes, ties and negative windows.
    #[test]
    fn relu_after_pooling_matches_keras_order() {
        let device = any_device().unwrap().autodiff();
        let pool = MaxPool2dConfig::new([2, 2]).init();
        let relu = Relu::new();
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        // a coarse grid of values around zero: ties and all-negative windows are common
        let v: Vec<f32> = (0..4 * 3 * 9 * 7)
            .map(|_| (rng.random_range(0..9) as f32 - 5.0) * 0.5)
            .collect();
        let g: Vec<f32> = (0..4 * 3 * 4 * 3)
            .map(|_| rng.random::<f32>() - 0.5)
            .collect();
        let run = |pool_first: bool| {
            let x = Tensor::<4>::from_data(TensorData::new(v.clone(), [4, 3, 9, 7]), &device)
                .require_grad();
            let y = if pool_first {
                relu.forward(pool.forward(x.clone()))
            } else {
                pool.forward(relu.forward(x.clone()))
            };
            let w = Tensor::<4>::from_data(TensorData::new(g.clone(), [4, 3, 4, 3]), &device);
            let grads = (y.clone() * w).sum().backward();
            let dx = x
                .grad(&grads)
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            let y = y.into_data().try_to_vec::<f32>().unwrap();
            // +0.0 and -0.0 are the same gradient
            let dx: Vec<f32> = dx.into_iter().map(|d| d + 0.0).collect();
            (y, dx)
        };
        let (y_keras, dx_keras) = run(false);
        let (y_pipe, dx_pipe) = run(true);
        assert_eq!(y_keras, y_pipe);
        assert_eq!(dx_keras, dx_pipe);
        assert!(dx_pipe.iter().any(|&d| d != 0.0));
    }
}
