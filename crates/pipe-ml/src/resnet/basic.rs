//! torchvision's BasicBlock ResNets, `resnet18` (2-2-2-2 blocks) and `resnet34` (3-4-6-3),
//! exactly as `torchvision.models.resnet` builds them, with the TL models' head.
//!
//! - stem: `conv1` 7x7/2 (64, padding 3) → `bn1` → ReLU → `maxpool` 3x3/2 (padding 1);
//! - `layer1` … `layer4` (64, 128, 256, 512 channels) of blocks conv 3x3 (stride on this
//!   first one) → bn → ReLU → conv 3x3 → bn, plus the input, → ReLU; where the shape changes
//!   (the first block of layer2–4) the shortcut is a 1x1 convolution with the stride and a
//!   batch norm (`downsample.0`, `downsample.1`). No convolution has a bias;
//! - head: global average pool → Dense(512, relu) → Dense(512, relu) → Dense(units), as for
//!   TL1–TL3 (torchvision's `fc` is not loaded: the head is new).
//!
//! Module paths are torchvision's keys (`layer4.1.conv2.weight`), except the shortcut's
//! `downsample_conv` / `downsample_bn` for `downsample.0` / `.1` and burn's batch-norm
//! `gamma`/`beta` for `weight`/`bias`; [`load_pretrained`] maps them. Freezing, seeded init and
//! batch-norm settings are the ResNet-50's (see the parent module).

use burn::module::{Module, ParamId, RunningState};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, Initializer, Linear, PaddingConfig2d, Relu};
use burn::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::freeze::leaf_index;
use super::weights::load_state_dict;
use super::*;
use pipe_data::Shape;

/// Output channels of `layer1` … `layer4`.
const WIDTHS: [usize; 4] = [64, 128, 256, 512];

/// What to build: depth ([`Depth::R18`] or [`Depth::R34`]), input, weights, outputs, and the
/// first trainable layer.
#[derive(Debug, Clone, PartialEq)]
pub struct BasicSpec {
    pub depth: Depth,
    /// Shape of the dataset images (1 or 3 channels; the network always sees 3).
    pub input: Shape,
    /// torchvision state dict of the same depth; `None` = random init.
    pub weights: Option<PathBuf>,
    /// Output units of the last dense layer.
    pub units: usize,
    /// First trainable leaf ([`Freeze::first_trainable`]): every layer before it is frozen.
    pub trainable_from: String,
}

/// torchvision's convolution: no bias, He-normal kernel (replaced by the seeded init).
fn conv(
    channels: [usize; 2],
    kernel: usize,
    stride: usize,
    padding: usize,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new(channels, [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(
            padding, padding, padding, padding,
        ))
        .with_bias(false)
        .with_initializer(Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: false,
        })
        .init(device)
}

/// torchvision's `BasicBlock`.
#[derive(Module, Debug)]
pub struct BasicBlock {
    pub(super) conv1: Conv2d,
    pub(super) bn1: BatchNorm,
    pub(super) conv2: Conv2d,
    pub(super) bn2: BatchNorm,
    pub(super) downsample_conv: Option<Conv2d>,
    pub(super) downsample_bn: Option<BatchNorm>,
    pub(super) relu: Relu,
}

impl BasicBlock {
    pub fn new(in_channels: usize, channels: usize, stride: usize, device: &Device) -> Self {
        let projection = stride != 1 || in_channels != channels;
        Self {
            conv1: conv([in_channels, channels], 3, stride, 1, device),
            bn1: batch_norm(channels, device),
            conv2: conv([channels, channels], 3, 1, 1, device),
            bn2: batch_norm(channels, device),
            downsample_conv: projection
                .then(|| conv([in_channels, channels], 1, stride, 0, device)),
            downsample_bn: projection.then(|| batch_norm(channels, device)),
            relu: Relu::new(),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match (&self.downsample_conv, &self.downsample_bn) {
            (Some(conv), Some(bn)) => bn.forward(conv.forward(x.clone())),
            _ => x.clone(),
        };
        let y = self.relu.forward(self.bn1.forward(self.conv1.forward(x)));
        let y = self.bn2.forward(self.conv2.forward(y));
        self.relu.forward(y + identity)
    }

    /// Freeze the leaves `prefix.conv1`, … (torchvision names) for which `frozen` holds.
    fn freeze_where(mut self, prefix: &str, frozen: &impl Fn(&str) -> bool) -> Self {
        let f = |leaf: &str| frozen(&format!("{prefix}.{leaf}"));
        if f("conv1") {
            self.conv1 = self.conv1.freeze();
        }
        if f("bn1") {
            self.bn1 = self.bn1.freeze();
        }
        if f("conv2") {
            self.conv2 = self.conv2.freeze();
        }
        if f("bn2") {
            self.bn2 = self.bn2.freeze();
        }
        if f("downsample.0") {
            self.downsample_conv = self.downsample_conv.map(Module::freeze);
        }
        if f("downsample.1") {
            self.downsample_bn = self.downsample_bn.map(Module::freeze);
        }
        self
    }
}

/// resnet18 / resnet34 + global average pool + Dense(512, relu) x2 + Dense(units).
///
/// Input `[N, 3, H, W]` (torchvision's ImageNet normalisation); output `[N, units]` logits.
#[derive(Module, Debug)]
pub struct BasicResNet {
    pub(super) conv1: Conv2d,
    pub(super) bn1: BatchNorm,
    pub(super) maxpool: MaxPool2d,
    pub(super) layer1: Vec<BasicBlock>,
    pub(super) layer2: Vec<BasicBlock>,
    pub(super) layer3: Vec<BasicBlock>,
    pub(super) layer4: Vec<BasicBlock>,
    pub(super) avgpool: AdaptiveAvgPool2d,
    pub(super) dense_1: Linear,
    pub(super) dense_2: Linear,
    pub(super) dense_3: Linear,
    pub(super) relu: Relu,
}

impl BasicResNet {
    /// A randomly initialised network of `depth` (R18 or R34) with `units` outputs, nothing
    /// frozen.
    pub fn new(depth: Depth, units: usize, device: &Device) -> Self {
        let blocks = depth.blocks();
        let mut in_channels = 64;
        // Struct fields are evaluated in source order, so `in_channels` threads through.
        let mut stage = |s: usize| -> Vec<BasicBlock> {
            (0..blocks[s])
                .map(|b| {
                    let stride = if b == 0 && s > 0 { 2 } else { 1 };
                    let block = BasicBlock::new(in_channels, WIDTHS[s], stride, device);
                    in_channels = WIDTHS[s];
                    block
                })
                .collect()
        };
        Self {
            conv1: conv([3, 64], 7, 2, 3, device),
            bn1: batch_norm(64, device),
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            layer1: stage(0),
            layer2: stage(1),
            layer3: stage(2),
            layer4: stage(3),
            avgpool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            dense_1: dense(WIDTHS[3], HEAD_WIDTH, device),
            dense_2: dense(HEAD_WIDTH, HEAD_WIDTH, device),
            dense_3: dense(HEAD_WIDTH, units, device),
            relu: Relu::new(),
        }
    }

    fn blocks(&self) -> impl Iterator<Item = &BasicBlock> {
        self.layer1
            .iter()
            .chain(&self.layer2)
            .chain(&self.layer3)
            .chain(&self.layer4)
    }

    /// The backbone's feature map: `[N, 3, H, W]` → `[N, 512, H/32, W/32]` (rounded up).
    pub fn features(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.relu.forward(self.bn1.forward(self.conv1.forward(x)));
        self.blocks()
            .fold(self.maxpool.forward(x), |x, block| block.forward(x))
    }

    /// The head's last hidden layer (`dense_2` after its ReLU): `[N, 512]`.
    pub fn embed(&self, x: Tensor<4>) -> Tensor<2> {
        let x: Tensor<2> = self.avgpool.forward(self.features(x)).flatten(1, 3);
        let x = self.relu.forward(self.dense_1.forward(x));
        self.relu.forward(self.dense_2.forward(x))
    }

    /// `[N, 3, H, W]` normalised images → `[N, units]` logits.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.dense_3.forward(self.embed(x))
    }

    /// Freeze every leaf before `first_trainable` (see [`leaves`]). Call it once, on a freshly
    /// built network.
    pub fn freeze_before(mut self, depth: Depth, first_trainable: &str) -> Self {
        let all = leaves(depth);
        let index = leaf_index(&all);
        let cutoff = index.get(first_trainable).copied().unwrap_or(0);
        let frozen = |name: &str| index.get(name).is_some_and(|&i| i < cutoff);
        if frozen("conv1") {
            self.conv1 = self.conv1.freeze();
        }
        if frozen("bn1") {
            self.bn1 = self.bn1.freeze();
        }
        let stage = |s: usize, blocks: Vec<BasicBlock>| -> Vec<BasicBlock> {
            blocks
                .into_iter()
                .enumerate()
                .map(|(b, block)| block.freeze_where(&format!("layer{s}.{b}"), &frozen))
                .collect()
        };
        self.layer1 = stage(1, self.layer1);
        self.layer2 = stage(2, self.layer2);
        self.layer3 = stage(3, self.layer3);
        self.layer4 = stage(4, self.layer4);
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

/// Every leaf layer in network order: torchvision's backbone leaves, then the head.
pub fn leaves(depth: Depth) -> Vec<String> {
    let mut all = depth.torchvision_leaves();
    all.extend(["dense_1", "dense_2", "dense_3"].map(String::from));
    all
}

/// The torchvision leaf of one of our module paths' layer prefix
/// (`layer2.0.downsample_bn` → `layer2.0.downsample.1`).
fn torchvision_leaf(prefix: &str) -> String {
    prefix
        .replace("downsample_conv", "downsample.0")
        .replace("downsample_bn", "downsample.1")
}

/// torchvision key of one of our tensor paths (`layer4.1.bn2.gamma` → `layer4.1.bn2.weight`);
/// head paths are returned as they are.
pub fn torchvision_key(path: &str) -> String {
    let Some((prefix, leaf)) = path.rsplit_once('.') else {
        return path.to_owned();
    };
    let leaf = match leaf {
        "gamma" => "weight",
        "beta" => "bias",
        other => other,
    };
    format!("{}.{leaf}", torchvision_leaf(prefix))
}

/// Every float tensor of `model` as (module path, element count), in module order.
pub fn tensor_sizes(model: &BasicResNet) -> Vec<(String, usize)> {
    let mut collector = ParamCollector::default();
    model.visit(&mut collector);
    collector.tensors
}

/// Exact-key patterns torchvision → our paths, generated from the network itself.
fn remap_patterns(model: &BasicResNet) -> Vec<(String, String)> {
    let mut patterns: BTreeMap<String, String> = BTreeMap::new();
    for (path, _) in tensor_sizes(model) {
        let Some((prefix, _)) = path.rsplit_once('.') else {
            continue;
        };
        if prefix.starts_with("dense_") {
            continue;
        }
        let leaves: &[&str] = if prefix.contains("bn") {
            &["weight", "bias", "running_mean", "running_var"]
        } else {
            &["weight"]
        };
        for leaf in leaves {
            let tv = torchvision_leaf(prefix).replace('.', "\\.");
            patterns.insert(format!("^{tv}\\.{leaf}$"), format!("{prefix}.{leaf}"));
        }
    }
    patterns.into_iter().collect()
}

/// Loads a torchvision resnet18/34 state dict (`.pth`/`.pt`, or `.safetensors` with the same
/// keys) key for key; `fc.*` and `num_batches_tracked` are reported as skipped, backbone
/// tensors the file lacks as missing (they keep their random init). Apply freezing after.
pub fn load_pretrained(
    model: BasicResNet,
    path: &Path,
) -> Result<(BasicResNet, LoadReport), ResNetError> {
    let patterns = remap_patterns(&model);
    let to_tv = |p: &String| torchvision_key(p);
    load_state_dict(model, path, patterns, to_tv, |p| p.starts_with("dense_"))
}

/// Gives the batch-norm statistics fixed ids, in module order (see the ResNet-50's
/// `number_running_stats`).
fn number_running_stats(model: &mut BasicResNet) {
    let mut next = RUNNING_ID_BASE;
    let mut renumber = |bn: &mut BatchNorm| {
        for stat in [&mut bn.running_mean, &mut bn.running_var] {
            next += 1;
            *stat = RunningState::with_id(ParamId::from(next), stat.value());
        }
    };
    renumber(&mut model.bn1);
    for block in model
        .layer1
        .iter_mut()
        .chain(&mut model.layer2)
        .chain(&mut model.layer3)
        .chain(&mut model.layer4)
    {
        renumber(&mut block.bn1);
        renumber(&mut block.bn2);
        if let Some(bn) = &mut block.downsample_bn {
            renumber(bn);
        }
    }
}

/// The network for `spec` with reproducible random init from `seed` (as the ResNet-50's
/// [`super::build_seeded`]), then the weights file if any, then the freezing.
pub fn build_seeded(
    spec: &BasicSpec,
    seed: u64,
    device: &Device,
) -> Result<BasicResNet, ResNetError> {
    validate_input(spec.input)?;
    let mut init = HostInit {
        rng: ChaCha8Rng::seed_from_u64(seed),
        next_id: 0,
    };
    let mut model = BasicResNet::new(spec.depth, spec.units, device).map(&mut init);
    number_running_stats(&mut model);
    let model = match &spec.weights {
        Some(path) => {
            let (model, report) = load_pretrained(model, path)?;
            tracing::info!(
                path = %path.display(),
                loaded = report.loaded.len(),
                skipped = report.skipped.len(),
                missing = report.missing.len(),
                "{} weights loaded",
                spec.depth.name()
            );
            if !report.missing.is_empty() {
                tracing::warn!(
                    path = %path.display(),
                    missing = ?report.missing,
                    "tensors missing from the weights file keep their random init"
                );
            }
            model
        }
        None => {
            tracing::warn!(
                "no {} weights file given: starting from random init",
                spec.depth.name()
            );
            model
        }
    };
    Ok(model.freeze_before(spec.depth, &spec.trainable_from))
}

/// The network skeleton for loading a record written from a model built for `spec`.
pub fn skeleton(spec: &BasicSpec, device: &Device) -> Result<BasicResNet, ResNetError> {
    validate_input(spec.input)?;
    let mut model = BasicResNet::new(spec.depth, spec.units, device);
    number_running_stats(&mut model);
    Ok(model.freeze_before(spec.depth, &spec.trainable_from))
}

/// (trainable, total) parameters; the total includes the batch-norm moving statistics (never
/// trainable), as Keras counts. Counted on a lazily built module (nothing materialised).
pub fn param_counts(spec: &BasicSpec) -> (usize, usize) {
    let model = BasicResNet::new(spec.depth, spec.units, &Device::default());
    let all = leaves(spec.depth);
    let index = leaf_index(&all);
    let cutoff = index
        .get(spec.trainable_from.as_str())
        .copied()
        .unwrap_or(0);
    let mut trainable = 0;
    let mut total = 0;
    for (path, n) in tensor_sizes(&model) {
        total += n;
        let leaf = path.rsplit_once('.').map(|(p, _)| torchvision_leaf(p));
        let at = leaf.and_then(|l| index.get(l.as_str()).copied());
        if !is_running_stat(&path) && at.is_some_and(|i| i >= cutoff) {
            trainable += n;
        }
    }
    (trainable, total)
}

/// The Keras-like summary: one row per layer (torchvision names) with its output shape (NHWC
/// notation, like the other summaries) and parameters, then the trainable / non-trainable totals.
pub fn summary(spec: &BasicSpec) -> String {
    let shape = |dims: &[usize]| {
        let inner: Vec<String> = dims.iter().map(usize::to_string).collect();
        format!("(None, {})", inner.join(", "))
    };
    let (mut h, mut w) = (spec.input.height as usize, spec.input.width as usize);
    let mut rows: Vec<(String, String, usize)> =
        vec![("input_1 (InputLayer)".into(), shape(&[h, w, 3]), 0)];
    // 3x3 padding 1 and 1x1 padding 0 give the same side for a stride.
    let down = |s: usize, stride: usize| (s - 1) / stride + 1;
    let conv_row = |name: String, c_in: usize, c_out: usize, k: usize, h: usize, w: usize| {
        (
            format!("{name} (Conv2D)"),
            shape(&[h, w, c_out]),
            k * k * c_in * c_out,
        )
    };
    let bn_row = |name: String, c: usize, h: usize, w: usize| {
        (format!("{name} (BatchNorm)"), shape(&[h, w, c]), 4 * c)
    };
    (h, w) = (down(h, 2), down(w, 2));
    rows.push(conv_row("conv1".into(), 3, 64, 7, h, w));
    rows.push(bn_row("bn1".into(), 64, h, w));
    (h, w) = (down(h, 2), down(w, 2));
    rows.push(("maxpool (MaxPooling2D)".into(), shape(&[h, w, 64]), 0));
    let mut c_in = 64;
    for (s, blocks) in spec.depth.blocks().into_iter().enumerate() {
        let c = WIDTHS[s];
        for b in 0..blocks {
            let name = |leaf: &str| format!("layer{}.{b}.{leaf}", s + 1);
            let stride = if b == 0 && s > 0 { 2 } else { 1 };
            (h, w) = (down(h, stride), down(w, stride));
            rows.push(conv_row(name("conv1"), c_in, c, 3, h, w));
            rows.push(bn_row(name("bn1"), c, h, w));
            rows.push(conv_row(name("conv2"), c, c, 3, h, w));
            rows.push(bn_row(name("bn2"), c, h, w));
            if c_in != c || stride != 1 {
                rows.push(conv_row(name("downsample.0"), c_in, c, 1, h, w));
                rows.push(bn_row(name("downsample.1"), c, h, w));
            }
            c_in = c;
        }
    }
    rows.push(("avgpool (GlobalAveragePooling2D)".into(), shape(&[c_in]), 0));
    let dense_row = |name: &str, d_in: usize, d_out: usize| {
        (
            format!("{name} (Dense)"),
            shape(&[d_out]),
            d_in * d_out + d_out,
        )
    };
    rows.push(dense_row("dense_1", c_in, HEAD_WIDTH));
    rows.push(dense_row("dense_2", HEAD_WIDTH, HEAD_WIDTH));
    rows.push(dense_row("dense_3", HEAD_WIDTH, spec.units));
    let (trainable, total) = param_counts(spec);
    crate::declared::render_table(spec.depth.name(), &rows, trainable, total - trainable)
}
