//! The network modules (bottleneck blocks, the classifier), their seeded host-side
//! initialisation, and freezing by Keras layer index.

use burn::module::{Module, ModuleMapper, Param, ParamId, RunningState};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig, PaddingConfig2d, Relu,
};
use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

/// Keras-style convolution: zero bias (Keras' `bias_initializer='zeros'`), He-normal kernel
/// (keras-applications' `kernel_initializer='he_normal'`).
pub(super) fn conv(
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

pub(super) fn batch_norm(features: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(features)
        .with_epsilon(BN_EPSILON)
        .with_momentum(BN_MOMENTUM)
        .init(device)
}

/// Keras Dense: Glorot-uniform kernel, zero bias.
pub(super) fn dense(d_in: usize, d_out: usize, device: &Device) -> Linear {
    let mut linear = LinearConfig::new(d_in, d_out)
        .with_initializer(Initializer::XavierUniform { gain: 1.0 })
        .init(device);
    linear.bias = Some(Initializer::Zeros.init([d_out], device));
    linear
}

/// One bottleneck block (Keras `conv_block` when `branch1` is present, else `identity_block`).
#[derive(Module, Debug)]
pub struct Bottleneck {
    pub(super) branch2a: Conv2d,
    pub(super) bn_branch2a: BatchNorm,
    pub(super) branch2b: Conv2d,
    pub(super) bn_branch2b: BatchNorm,
    pub(super) branch2c: Conv2d,
    pub(super) bn_branch2c: BatchNorm,
    pub(super) branch1: Option<Conv2d>,
    pub(super) bn_branch1: Option<BatchNorm>,
    pub(super) relu: Relu,
}

impl Bottleneck {
    /// A block from `in_channels` to `filters[2]` (projection shortcut when the shape changes).
    pub fn new(in_channels: usize, filters: [usize; 3], stride: usize, device: &Device) -> Self {
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

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
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
    pub(super) conv1: Conv2d,
    pub(super) bn_conv1: BatchNorm,
    pub(super) pool1: MaxPool2d,
    pub(super) res2: Vec<Bottleneck>,
    pub(super) res3: Vec<Bottleneck>,
    pub(super) res4: Vec<Bottleneck>,
    pub(super) res5: Vec<Bottleneck>,
    pub(super) avg_pool: AdaptiveAvgPool2d,
    pub(super) dense_1: Linear,
    pub(super) dense_2: Linear,
    pub(super) dense_3: Linear,
    pub(super) relu: Relu,
}

impl ResNet50Classifier {
    /// A randomly initialised network with one output unit, nothing frozen (see [`build`] for
    /// the full recipe).
    pub fn new(device: &Device) -> Self {
        Self::with_units(1, device)
    }

    /// [`ResNet50Classifier::new`] with `units` outputs (1: a sigmoid logit; N > 2: one logit
    /// per class for softmax).
    pub fn with_units(units: usize, device: &Device) -> Self {
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
            dense_3: dense(HEAD_WIDTH, units, device),
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
        self.dense_3.forward(self.embed(x))
    }

    /// The head's last hidden layer (`dense_2` after its ReLU): `[N, 512]`.
    pub fn embed(&self, x: Tensor<4>) -> Tensor<2> {
        let x: Tensor<2> = self.avg_pool.forward(self.features(x)).flatten(1, 3);
        let x = self.relu.forward(self.dense_1.forward(x));
        self.relu.forward(self.dense_2.forward(x))
    }

    /// Freeze every layer before `mode`'s first trainable layer (Keras order), see the module
    /// documentation. Call it once, on a freshly built network.
    pub fn apply_transfer_mode(self, mode: TransferMode) -> Self {
        self.freeze_before(mode.first_trainable_layer())
    }

    /// Freeze every layer before the Keras layer `first_trainable` (Keras order; `dense_1`:
    /// only the head trains, `conv1`: everything does). Call it once, on a freshly built
    /// network.
    pub fn freeze_before(mut self, first_trainable: &str) -> Self {
        let index = keras_index();
        let cutoff = index.get(first_trainable).copied().unwrap_or(0);
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
pub(super) fn block_tag(stage: usize, block: usize) -> String {
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
    load_weights_and_freeze(spec, ResNet50Classifier::with_units(spec.units, device))
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
    let mut model = ResNet50Classifier::with_units(spec.units, device).map(&mut init);
    number_running_stats(&mut model);
    load_weights_and_freeze(spec, model)
}

/// First id of the batch-norm statistics in [`build_seeded`] (parameters count from 1).
pub(super) const RUNNING_ID_BASE: u64 = 1 << 32;

/// Gives the batch-norm statistics fixed ids, in module order. They are not parameters (a
/// mapper cannot renumber them, and loading a record keeps the destination's ids) but their
/// ids are written into records.
pub(super) fn number_running_stats(model: &mut ResNet50Classifier) {
    let mut next = RUNNING_ID_BASE;
    let mut renumber = |bn: &mut BatchNorm| {
        for stat in [&mut bn.running_mean, &mut bn.running_var] {
            next += 1;
            *stat = RunningState::with_id(ParamId::from(next), stat.value());
        }
    };
    model.for_each_batch_norm(&mut renumber);
}

impl ResNet50Classifier {
    /// Calls `f` on every batch norm of the backbone, in module order (`bn_conv1`, then each
    /// block's `2a`, `2b`, `2c` and, in a stage's first block, the shortcut's).
    pub(super) fn for_each_batch_norm(&mut self, mut f: impl FnMut(&mut BatchNorm)) {
        f(&mut self.bn_conv1);
        for block in self
            .res2
            .iter_mut()
            .chain(&mut self.res3)
            .chain(&mut self.res4)
            .chain(&mut self.res5)
        {
            f(&mut block.bn_branch2a);
            f(&mut block.bn_branch2b);
            f(&mut block.bn_branch2c);
            if let Some(bn) = &mut block.bn_branch1 {
                f(bn);
            }
        }
    }
}

/// The network skeleton for loading a record written from a model built for `spec` (same
/// freezing; values and parameter ids come from the record). Nothing is materialised.
pub fn skeleton(spec: &ResNetSpec, device: &Device) -> Result<ResNet50Classifier, ResNetError> {
    validate_input(spec.input)?;
    let mut model = ResNet50Classifier::with_units(spec.units, device);
    number_running_stats(&mut model);
    Ok(model.freeze_before(spec.first_trainable()))
}

pub(super) fn load_weights_and_freeze(
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
    Ok(model.freeze_before(spec.first_trainable()))
}

/// Re-initialises every parameter from a host RNG (see [`build_seeded`]). Kernels are
/// recognised by rank: 4 = convolution `[out, in, k, k]`, 2 = dense `[in, out]` (or
/// `[out, in]`: Glorot is symmetric in the fans).
pub(super) struct HostInit {
    pub(super) rng: ChaCha8Rng,
    pub(super) next_id: u64,
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
