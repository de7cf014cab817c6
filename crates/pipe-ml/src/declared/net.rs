//! The burn module of a declared model. Weights are drawn on the host from the seed's ChaCha8
//! stream in layer order (Glorot-uniform or He-uniform kernels as `init` says, zero biases,
//! batch norm scale 1 / offset 0 / statistics 0 and 1), with parameter ids numbered in layer
//! order, exactly as the named CNNs do: the same seed gives the same record bytes.
//!
//! Dropout takes host-drawn masks from the caller (one per dropout layer, in forward order,
//! `[N, values per image]`), like B2/B3's.

use super::{Activation, Layer, Padding};
use crate::models::{Draw, FEATURE_CHUNK, ModelSpec};
use burn::module::{Module, ParamId, RunningState};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AvgPool2dConfig, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, Linear, PaddingConfig2d, Relu};
use burn::prelude::*;
use burn::tensor::activation;

/// Keras' BatchNormalization defaults (epsilon 1e-3, momentum 0.99, i.e. burn's 0.01).
const BN_EPSILON: f64 = 1e-3;
const BN_MOMENTUM: f64 = 0.01;
/// First id of the batch-norm statistics (parameters count from 1), as in the ResNet models.
const RUNNING_ID_BASE: u64 = 1 << 32;

/// One layer's parameters (`Fixed` for the layers without any).
#[derive(Module, Debug)]
pub enum Unit {
    Conv(Conv2d),
    Dense(Linear),
    Norm(BatchNorm),
    Residual(Stack),
    Fixed(Relu),
}

/// A list of layers: their parameters and (outside the record) their description.
#[derive(Module, Debug)]
pub struct Stack {
    units: Vec<Unit>,
    #[module(skip)]
    layers: Vec<Layer>,
}

/// A declared model: the layers, then the output layer.
#[derive(Module, Debug)]
pub struct DeclaredNet {
    body: Stack,
    out: Linear,
}

/// An activation between layers.
enum Act {
    Image(Tensor<4>),
    Flat(Tensor<2>),
}

impl Act {
    fn map(self, f: Activation) -> Act {
        match self {
            Act::Image(t) => Act::Image(apply(f, t)),
            Act::Flat(t) => Act::Flat(apply(f, t)),
        }
    }

    fn image(self) -> Tensor<4> {
        match self {
            Act::Image(t) => t,
            Act::Flat(_) => unreachable!("validated: an image layer gets an image"),
        }
    }

    fn flat(self) -> Tensor<2> {
        match self {
            Act::Flat(t) => t,
            Act::Image(t) => t.flatten(1, 3),
        }
    }
}

fn apply<const D: usize>(f: Activation, t: Tensor<D>) -> Tensor<D> {
    match f {
        Activation::Relu => activation::relu(t),
        Activation::Linear => t,
        Activation::Tanh => activation::tanh(t),
        Activation::Sigmoid => activation::sigmoid(t),
    }
}

struct Builder<'a, 'r> {
    draw: Draw<'r>,
    next_running: u64,
    device: &'a Device,
}

impl Builder<'_, '_> {
    /// The units of `layers` on inputs of `channels` channels (or features, once flat); the
    /// channels they output.
    fn stack(
        &mut self,
        layers: &[Layer],
        mut channels: usize,
        mut flat: Option<usize>,
        hw: (usize, usize),
    ) -> (Stack, usize, Option<usize>, (usize, usize)) {
        let mut units = Vec::with_capacity(layers.len());
        let mut hw = hw;
        for layer in layers {
            let unit = match layer {
                Layer::Conv2d(c) => {
                    let k = c.kernel;
                    let pad = match c.padding {
                        Padding::Valid => 0,
                        Padding::Same => (k - 1) / 2,
                    };
                    let mut conv = Conv2dConfig::new([channels, c.filters], [k, k])
                        .with_stride([c.stride, c.stride])
                        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                        .with_initializer(Initializer::Zeros)
                        .init(self.device);
                    conv.weight = self.draw.kernel(
                        [c.filters, channels, k, k],
                        channels * k * k,
                        c.filters * k * k,
                        self.device,
                    );
                    conv.bias = Some(self.draw.bias(c.filters, self.device));
                    hw = (
                        (hw.0 + 2 * pad - k) / c.stride + 1,
                        (hw.1 + 2 * pad - k) / c.stride + 1,
                    );
                    channels = c.filters;
                    Unit::Conv(conv)
                }
                Layer::MaxPool(p) | Layer::AvgPool(p) => {
                    hw = (
                        (hw.0 - p.size) / p.stride + 1,
                        (hw.1 - p.size) / p.stride + 1,
                    );
                    Unit::Fixed(Relu::new())
                }
                Layer::GlobalAvgPool(_) => {
                    flat = Some(channels);
                    Unit::Fixed(Relu::new())
                }
                Layer::Flatten(_) => {
                    flat = Some(flat.unwrap_or(channels * hw.0 * hw.1));
                    Unit::Fixed(Relu::new())
                }
                Layer::Dropout(_) => Unit::Fixed(Relu::new()),
                Layer::BatchNorm(_) => {
                    let c = flat.unwrap_or(channels);
                    let mut bn = BatchNormConfig::new(c)
                        .with_epsilon(BN_EPSILON)
                        .with_momentum(BN_MOMENTUM)
                        .init(self.device);
                    bn.gamma = self.draw.param(Some(vec![1.0; c]), [c], self.device);
                    bn.beta = self.draw.bias(c, self.device);
                    for (stat, v) in [(&mut bn.running_mean, 0.0), (&mut bn.running_var, 1.0)] {
                        self.next_running += 1;
                        *stat = RunningState::with_id(
                            ParamId::from(self.next_running),
                            Tensor::<1>::full([c], v, self.device),
                        );
                    }
                    Unit::Norm(bn)
                }
                Layer::Dense(d) => {
                    let n = flat.unwrap_or(channels * hw.0 * hw.1);
                    flat = Some(d.units);
                    Unit::Dense(self.draw.dense(n, d.units, self.device))
                }
                Layer::Residual(r) => {
                    let (s, ..) = self.stack(&r.layers, channels, flat, hw);
                    Unit::Residual(s)
                }
            };
            units.push(unit);
        }
        let stack = Stack {
            units,
            layers: layers.to_vec(),
        };
        (stack, channels, flat, hw)
    }
}

impl DeclaredNet {
    /// Builds the module for a validated declared `spec` (see [`super::validate`]). With
    /// `seed`, kernels are drawn from it; without, every parameter is a lazy zero (for
    /// counting parameters or loading a record).
    pub fn new(spec: &ModelSpec, seed: Option<u64>, device: &Device) -> Self {
        let mut rng = seed.map(<rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64);
        let mut b = Builder {
            draw: Draw::new(rng.as_mut(), spec.init),
            next_running: RUNNING_ID_BASE,
            device,
        };
        let s = spec.input;
        let hw = (s.height as usize, s.width as usize);
        let (body, channels, flat, hw) = b.stack(&spec.layers, s.channels as usize, None, hw);
        let n = flat.unwrap_or(channels * hw.0 * hw.1);
        let out = b.draw.dense(n, spec.output_units(), device);
        Self { body, out }
    }

    /// Training forward pass: `x` `[N, C, H, W]` → logits `[N, output units]`, with one
    /// dropout mask per dropout layer (none at inference).
    pub fn forward(&self, x: Tensor<4>, masks: Vec<Tensor<2>>) -> Tensor<2> {
        let mut masks = masks.into_iter();
        let y = self.body.forward(Act::Image(x), &mut masks);
        self.out.forward(y.flat())
    }

    /// Inference up to the output layer: the (flattened) activations it reads, on slices of
    /// [`FEATURE_CHUNK`] images (the features `stack` fits a classifier on).
    pub fn embed(&self, x: Tensor<4>) -> Tensor<2> {
        let n = x.dims()[0];
        let body = |x: Tensor<4>| {
            self.body
                .forward(Act::Image(x), &mut std::iter::empty())
                .flat()
        };
        if n <= FEATURE_CHUNK {
            return body(x);
        }
        let parts: Vec<Tensor<2>> = (0..n)
            .step_by(FEATURE_CHUNK)
            .map(|s| body(x.clone().narrow(0, s, FEATURE_CHUNK.min(n - s))))
            .collect();
        Tensor::cat(parts, 0)
    }

    /// Inference forward pass (no dropout, batch norm on its running statistics) on slices of
    /// [`FEATURE_CHUNK`] images, so a large batch's activations stay small.
    pub fn infer(&self, x: Tensor<4>) -> Tensor<2> {
        let n = x.dims()[0];
        if n <= FEATURE_CHUNK {
            return self.forward(x, Vec::new());
        }
        let parts: Vec<Tensor<2>> = (0..n)
            .step_by(FEATURE_CHUNK)
            .map(|s| self.forward(x.clone().narrow(0, s, FEATURE_CHUNK.min(n - s)), Vec::new()))
            .collect();
        Tensor::cat(parts, 0)
    }
}

impl Stack {
    fn forward(&self, x: Act, masks: &mut impl Iterator<Item = Tensor<2>>) -> Act {
        let mut x = x;
        for (unit, layer) in self.units.iter().zip(&self.layers) {
            x = match (layer, unit) {
                (Layer::Conv2d(c), Unit::Conv(conv)) => {
                    Act::Image(conv.forward(x.image())).map(c.activation)
                }
                (Layer::MaxPool(p), _) => Act::Image(
                    MaxPool2dConfig::new([p.size, p.size])
                        .with_strides([p.stride, p.stride])
                        .init()
                        .forward(x.image()),
                ),
                (Layer::AvgPool(p), _) => Act::Image(
                    AvgPool2dConfig::new([p.size, p.size])
                        .with_strides([p.stride, p.stride])
                        .init()
                        .forward(x.image()),
                ),
                (Layer::GlobalAvgPool(_), _) => {
                    let t: Tensor<3> = x.image().flatten(2, 3);
                    Act::Flat(t.mean_dim(2).squeeze_dim::<2>(2))
                }
                (Layer::Flatten(_), _) => Act::Flat(x.flat()),
                (Layer::Dropout(_), _) => match masks.next() {
                    None => x,
                    Some(m) => match x {
                        Act::Flat(t) => Act::Flat(t * m),
                        Act::Image(t) => {
                            let dims = t.dims();
                            Act::Image(t * m.reshape(dims))
                        }
                    },
                },
                (Layer::BatchNorm(_), Unit::Norm(bn)) => match x {
                    Act::Flat(t) => Act::Flat(bn.forward(t)),
                    Act::Image(t) => Act::Image(bn.forward(t)),
                },
                (Layer::Dense(d), Unit::Dense(lin)) => {
                    Act::Flat(lin.forward(x.flat())).map(d.activation)
                }
                (Layer::Residual(r), Unit::Residual(inner)) => {
                    let y = match x {
                        Act::Image(t) => match inner.forward(Act::Image(t.clone()), masks) {
                            Act::Image(y) => Act::Image(y + t),
                            Act::Flat(_) => {
                                unreachable!("validated: a residual block keeps its shape")
                            }
                        },
                        Act::Flat(t) => {
                            Act::Flat(inner.forward(Act::Flat(t.clone()), masks).flat() + t)
                        }
                    };
                    y.map(r.activation)
                }
                _ => unreachable!("units are built from the same layers"),
            };
        }
        x
    }
}
