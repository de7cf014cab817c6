//! Inference-mode ResNet with the batch norms folded into the convolutions before them
//! (`fold_bn`), and the frozen prefix of TL1/TL2 run that way during training.
//!
//! In inference a batch norm is an affine map per channel, `y = (x − μ)·s + β` with
//! `s = γ / sqrt(σ² + ε)`, so a convolution followed by one is the convolution with weights
//! `W·s` (per output channel) and bias `(b − μ)·s + β`: one pass over the activations instead
//! of two (flex runs a batch norm as its own pass over memory). The folded values are computed
//! in f64 and rounded once to f32, so the folded network equals the unfolded one up to float
//! rounding (not bit for bit: the products are rounded at another point; a test bounds the
//! difference).
//!
//! Frozen layers (a frozen batch norm runs in inference mode, see the module documentation)
//! never change during training, so TL1 (the whole backbone frozen) and TL2 (the stem and the
//! first 14 blocks frozen) fold their frozen prefix once and run it on the inner backend,
//! without autodiff; its output re-enters autodiff for the trainable rest. Gradients are the
//! same (nothing before the first trainable layer needs one).

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, Relu};
use burn::prelude::*;

use super::*;

/// A convolution with the batch norm after it folded in.
fn fold_conv(conv: &Conv2d, bn: &BatchNorm, device: &Device) -> Conv2d {
    let host = |t: Tensor<1>| -> Vec<f64> {
        t.into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32 data")
            .into_iter()
            .map(f64::from)
            .collect()
    };
    let (gamma, beta) = (host(bn.gamma.val()), host(bn.beta.val()));
    let (mean, var) = (host(bn.running_mean.value()), host(bn.running_var.value()));
    let weight = conv.weight.val();
    let dims: [usize; 4] = weight.dims();
    let bias = match &conv.bias {
        Some(b) => host(b.val()),
        None => vec![0.0; dims[0]],
    };
    let scale: Vec<f64> = gamma
        .iter()
        .zip(&var)
        .map(|(g, v)| g / (v + bn.epsilon).sqrt())
        .collect();
    let per_channel = dims[1] * dims[2] * dims[3];
    let mut w = weight
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 data");
    for (row, s) in w.chunks_exact_mut(per_channel).zip(&scale) {
        for v in row {
            *v = (f64::from(*v) * s) as f32;
        }
    }
    let b: Vec<f32> = (0..dims[0])
        .map(|c| ((bias[c] - mean[c]) * scale[c] + beta[c]) as f32)
        .collect();
    Conv2d {
        weight: Param::from_tensor(Tensor::from_data(TensorData::new(w, dims), device)),
        bias: Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(b, [dims[0]]),
            device,
        ))),
        stride: conv.stride,
        kernel_size: conv.kernel_size,
        dilation: conv.dilation,
        groups: conv.groups,
        padding: conv.padding.clone(),
    }
}

/// One bottleneck block, batch norms folded.
#[derive(Debug, Clone)]
struct FoldedBlock {
    branch2a: Conv2d,
    branch2b: Conv2d,
    branch2c: Conv2d,
    branch1: Option<Conv2d>,
}

impl FoldedBlock {
    fn new(block: &Bottleneck, device: &Device) -> Self {
        Self {
            branch2a: fold_conv(&block.branch2a, &block.bn_branch2a, device),
            branch2b: fold_conv(&block.branch2b, &block.bn_branch2b, device),
            branch2c: fold_conv(&block.branch2c, &block.bn_branch2c, device),
            branch1: match (&block.branch1, &block.bn_branch1) {
                (Some(conv), Some(bn)) => Some(fold_conv(conv, bn, device)),
                _ => None,
            },
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let relu = Relu::new();
        let shortcut = match &self.branch1 {
            Some(conv) => conv.forward(x.clone()),
            None => x.clone(),
        };
        let y = relu.forward(self.branch2a.forward(x));
        let y = relu.forward(self.branch2b.forward(y));
        relu.forward(self.branch2c.forward(y) + shortcut)
    }
}

/// The stem and the first blocks of a ResNet-50 in inference mode, batch norms folded
/// (`fold_bn`), on the backend without autodiff.
#[derive(Debug, Clone)]
pub struct FoldedPrefix {
    conv1: Conv2d,
    pool1: MaxPool2d,
    blocks: Vec<FoldedBlock>,
}

impl FoldedPrefix {
    /// Number of bottleneck blocks it replaces.
    pub fn blocks(&self) -> usize {
        self.blocks.len()
    }

    /// `[N, 3, H, W]` (any device) → the output of its last block, on the inner device.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_from(0, self.stem(x))
    }

    /// `[N, 3, H, W]` (any device) → the stem's output (the first block's input), on the inner
    /// device.
    fn stem(&self, x: Tensor<4>) -> Tensor<4> {
        // ReLU after the pooling: max and ReLU commute, and the map is 4x smaller there.
        let x = self.pool1.forward(self.conv1.forward(x.inner()));
        Relu::new().forward(x)
    }

    /// The output of the first `done` blocks → the output of its last block (`x` itself when
    /// `done` is past them).
    fn forward_from(&self, done: usize, x: Tensor<4>) -> Tensor<4> {
        let mut x = x.inner();
        for block in self.blocks.iter().skip(done) {
            x = block.forward(x);
        }
        x
    }
}

impl ResNet50Classifier {
    fn blocks(&self) -> impl Iterator<Item = &Bottleneck> {
        self.res2
            .iter()
            .chain(&self.res3)
            .chain(&self.res4)
            .chain(&self.res5)
    }

    /// `fold_bn`: the stem and the first `blocks` blocks in inference mode with every batch
    /// norm folded into its convolution, on `device`'s backend without autodiff (frozen
    /// weights, or an inference copy: the folded values do not follow later changes).
    pub fn fold_prefix(&self, blocks: usize) -> FoldedPrefix {
        let device = self.conv1.weight.val().device().inner();
        FoldedPrefix {
            conv1: fold_conv(&self.conv1, &self.bn_conv1, &device),
            pool1: self.pool1.clone(),
            blocks: self
                .blocks()
                .take(blocks)
                .map(|b| FoldedBlock::new(b, &device))
                .collect(),
        }
    }

    /// The whole backbone folded: the inference network (see [`Self::forward_folded`]).
    pub fn fold_bn(&self) -> FoldedPrefix {
        self.fold_prefix(self.blocks().count())
    }

    /// [`Self::features`] with the first blocks run by `prefix` (no autodiff); the rest runs
    /// on the device `x` came on (re-entering autodiff if it did).
    pub fn features_folded(&self, prefix: &FoldedPrefix, x: Tensor<4>) -> Tensor<4> {
        let autodiff = x.is_autodiff();
        self.features_after(prefix, 0, prefix.stem(x), autodiff)
    }

    /// [`Self::features_folded`] from `x`, the output of the first `done` blocks (0: of the
    /// stem): `prefix`'s blocks past `done`, then the model's own past `prefix`, on autodiff
    /// from there when `autodiff`.
    fn features_after(
        &self,
        prefix: &FoldedPrefix,
        done: usize,
        x: Tensor<4>,
        autodiff: bool,
    ) -> Tensor<4> {
        let mut x = prefix.forward_from(done, x);
        if autodiff {
            x = x.autodiff();
        }
        for block in self.blocks().skip(prefix.blocks().max(done)) {
            x = block.forward(x);
        }
        x
    }

    /// [`Self::forward_folded`] from `x`, the output of the first `done` blocks as
    /// [`FoldedPrefix::forward`] of a prefix that long gives it (e.g. kept from an earlier
    /// epoch): the logits, with autodiff from the first layer after `prefix` when `autodiff`.
    pub fn forward_after(
        &self,
        prefix: &FoldedPrefix,
        done: usize,
        x: Tensor<4>,
        autodiff: bool,
    ) -> Tensor<2> {
        let features = self.features_after(prefix, done, x, autodiff);
        self.dense_3.forward(self.head_hidden(features))
    }

    /// [`Self::forward`] through [`Self::features_folded`].
    pub fn forward_folded(&self, prefix: &FoldedPrefix, x: Tensor<4>) -> Tensor<2> {
        self.dense_3.forward(self.embed_folded(prefix, x))
    }

    /// [`Self::embed`] through [`Self::features_folded`].
    pub fn embed_folded(&self, prefix: &FoldedPrefix, x: Tensor<4>) -> Tensor<2> {
        self.head_hidden(self.features_folded(prefix, x))
    }

    /// Global pooling and the two hidden dense layers of the head.
    fn head_hidden(&self, features: Tensor<4>) -> Tensor<2> {
        let x: Tensor<2> = self.avg_pool.forward(features).flatten(1, 3);
        let x = self.relu.forward(self.dense_1.forward(x));
        self.relu.forward(self.dense_2.forward(x))
    }
}

/// How many leading blocks are frozen entirely (with the stem) when `first_trainable` (a Keras
/// layer name, [`ResNetSpec::first_trainable`]) is the first layer that trains: the blocks a training
/// prefix can fold (`None`: the stem trains, nothing to fold).
pub fn frozen_blocks(first_trainable: &str) -> Option<usize> {
    let index = keras_index();
    let cutoff = index.get(first_trainable).copied().unwrap_or(0);
    let frozen = |name: &str| index.get(name).is_some_and(|&i| i < cutoff);
    if !(frozen("conv1") && frozen("bn_conv1")) {
        return None;
    }
    let mut count = 0;
    for &(stage, blocks, _, _) in &STAGES {
        for b in 0..blocks {
            let tag = block_tag(stage, b);
            let mut layers = vec!["2a", "2b", "2c"];
            // every stage's first block has the projection shortcut
            if b == 0 {
                layers.push("1");
            }
            let all = layers.iter().all(|part| {
                let conv = format!("res{tag}_branch{part}");
                let bn = format!("bn{tag}_branch{part}");
                frozen(&conv) && frozen(&bn)
            });
            if !all {
                return Some(count);
            }
            count += 1;
        }
    }
    Some(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::{ParamId, RunningState};
    use burn::optim::GradientsParams;
    use pipe_data::Shape;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Largest |a − b| relative to the largest |b| (the outputs' scale).
    fn relative_gap(a: Tensor<2>, b: Tensor<2>) -> f64 {
        let a = a.into_data().try_to_vec::<f32>().unwrap();
        let b = b.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(0f64, |m, v| m.max(f64::from(v.abs())));
        let gap = a
            .iter()
            .zip(&b)
            .fold(0f64, |m, (x, y)| m.max(f64::from((x - y).abs())));
        gap / scale.max(f64::MIN_POSITIVE)
    }

    /// A seeded network whose batch norms have non-trivial statistics and affine parameters
    /// (fresh ones are the identity, which would fold trivially).
    fn network(mode: TransferMode, device: &Device) -> ResNet50Classifier {
        let spec = ResNetSpec {
            mode,
            input: Shape::new(32, 32, 3),
            weights: None,
            units: 1,
            trainable_from: None,
        };
        let mut model = build_seeded(&spec, 11, device).unwrap_or_else(|e| panic!("{e}"));
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut perturb = |bn: &mut BatchNorm| {
            let n = bn.gamma.shape().dims::<1>()[0];
            let mut draw = |lo: f32, hi: f32| -> Tensor<1> {
                let v: Vec<f32> = (0..n).map(|_| rng.random_range(lo..hi)).collect();
                Tensor::from_data(TensorData::new(v, [n]), device)
            };
            bn.gamma = Param::initialized(bn.gamma.id, draw(0.5, 1.5).set_require_grad(false));
            bn.beta = Param::initialized(bn.beta.id, draw(-0.5, 0.5).set_require_grad(false));
            bn.running_mean = RunningState::with_id(ParamId::new(), draw(-0.5, 0.5));
            bn.running_var = RunningState::with_id(ParamId::new(), draw(0.5, 2.0));
        };
        model.for_each_batch_norm(&mut perturb);
        model
    }

    fn input(device: &Device) -> Tensor<4> {
        Tensor::<4>::random(
            [3, 3, 32, 32],
            burn::tensor::Distribution::Uniform(-100.0, 100.0),
            device,
        )
    }

    /// `fold_bn` changes values by float rounding only: logits and embeddings of the folded
    /// network within 1e-4 of the unfolded one's, relative to the outputs' largest magnitude.
    #[test]
    fn folded_inference_matches_unfolded() {
        let device = Device::default();
        device.seed(3);
        let model = network(TransferMode::Tl3, &device).valid();
        let folded = model.fold_bn();
        assert_eq!(folded.blocks(), 16);
        let x = input(&device);
        let gap = relative_gap(
            model.forward_folded(&folded, x.clone()),
            model.forward(x.clone()),
        );
        assert!(gap < 1e-4, "logits differ by {gap:e} of their scale");
        let gap = relative_gap(model.embed_folded(&folded, x.clone()), model.embed(x));
        assert!(gap < 1e-4, "embeddings differ by {gap:e} of their scale");
    }

    #[test]
    fn frozen_blocks_follow_the_transfer_modes() {
        assert_eq!(
            frozen_blocks(TransferMode::Tl1.first_trainable_layer()),
            Some(16)
        );
        // TL2 trains from res5b_branch2b: res5a is the last block frozen whole
        assert_eq!(
            frozen_blocks(TransferMode::Tl2.first_trainable_layer()),
            Some(14)
        );
        assert_eq!(
            frozen_blocks(TransferMode::Tl3.first_trainable_layer()),
            None
        );
    }

    /// Training TL2 through the folded frozen prefix (no autodiff there) gives the trainable
    /// layers the gradients the plain forward pass gives them, up to float rounding.
    #[test]
    fn frozen_prefix_keeps_the_gradients() {
        let device = Device::default().autodiff();
        device.seed(4);
        let model = network(TransferMode::Tl2, &device);
        let prefix =
            model.fold_prefix(frozen_blocks(TransferMode::Tl2.first_trainable_layer()).unwrap());
        let x = input(&device);
        let grads =
            |logits: Tensor<2>| GradientsParams::from_grads(logits.sum().backward(), &model);
        let plain = grads(model.forward(x.clone()));
        let folded = grads(model.forward_folded(&prefix, x));
        let dense = |g: &GradientsParams| g.get::<2>(model.dense_3.weight.id).unwrap();
        let conv = |g: &GradientsParams| {
            g.get::<4>(model.res5[1].branch2b.weight.id)
                .unwrap()
                .flatten::<2>(0, 2)
        };
        // res5b_branch2b sits before a training-mode batch norm whose statistics come from 3
        // images on 1x1 maps: it amplifies the rounding differences of its input.
        for (what, a, b, tolerance) in [
            ("dense_3", dense(&folded), dense(&plain), 1e-3),
            ("res5b_branch2b", conv(&folded), conv(&plain), 1e-2),
        ] {
            let gap = relative_gap(a, b);
            assert!(
                gap < tolerance,
                "{what}: gradients differ by {gap:e} of their scale"
            );
        }
        assert!(
            folded.get::<4>(model.res5[0].branch2a.weight.id).is_none(),
            "frozen layers get no gradient"
        );
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    /// What the per-image cache of frozen outputs rests on: an image's prefix output is the
    /// same bits whatever batch it runs in (alone, first, last, in a chunk of the small-map
    /// gemm with other images).
    #[test]
    fn the_prefix_output_of_an_image_does_not_depend_on_its_batch() {
        let device = Device::default();
        device.seed(6);
        let model = network(TransferMode::Tl1, &device).valid();
        let prefix = model.fold_prefix(16);
        let x = Tensor::<4>::random(
            [5, 3, 32, 32],
            burn::tensor::Distribution::Uniform(-100.0, 100.0),
            &device,
        );
        let whole = values(prefix.forward(x.clone()));
        let per_image = whole.len() / 5;
        for groups in [
            vec![0..1, 1..2, 2..3, 3..4, 4..5],
            vec![0..2, 2..5],
            vec![0..3, 3..5],
        ] {
            let mut parts = Vec::new();
            for g in groups {
                parts.extend(values(prefix.forward(x.clone().slice([g]))));
            }
            assert_eq!(parts.len(), whole.len());
            for (i, (a, b)) in parts
                .chunks(per_image)
                .zip(whole.chunks(per_image))
                .enumerate()
            {
                assert!(a == b, "image {i}: its prefix output depends on its batch");
            }
        }
    }

    /// The logits from a kept prefix output equal the whole pass's, bit for bit: in training
    /// (TL2's 14 frozen blocks) and in inference (the whole backbone folded, resumed after 14).
    #[test]
    fn the_pass_after_a_kept_prefix_output_equals_the_whole_pass() {
        let device = Device::default().autodiff();
        device.seed(7);
        let model = network(TransferMode::Tl2, &device);
        let prefix = model.fold_prefix(14);
        let x = input(&device);
        let kept = prefix.forward(x.clone());
        let whole = values(model.forward_folded(&prefix, x.clone()));
        let after = model.forward_after(&prefix, 14, kept.clone(), true);
        assert!(after.is_autodiff());
        assert_eq!(values(after), whole);

        let eval = model.valid();
        let folded = eval.fold_bn();
        let x = x.inner();
        let whole = values(eval.forward_folded(&folded, x));
        assert_eq!(values(eval.forward_after(&folded, 14, kept, false)), whole);
    }
}
