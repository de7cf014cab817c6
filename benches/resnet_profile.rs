//! Per-operation profile of one ResNet-50 inference batch (32 images at 56x56x3, the TL
//! benchmarks' shapes) on burn's `flex` CPU backend, for BENCHMARKS.md "ResNet-50 profile
//! (issue 24)": `cargo bench --bench resnet_profile`.
//!
//! Every backend operation of the forward pass is called directly on `Flex` with ResNet-50's
//! shapes (median of several calls) and summed per kind (convolutions by stage and kernel,
//! batch norm, ReLU, residual add, pooling, dense), with FLOPs and the share of the machine's
//! FMA peak (measured here as in `b3_profile`): the forward pass as pipe runs it (batch norms
//! folded into the convolutions' weights and bias, `fold_bn`; small maps batched into one gemm
//! per chunk of images). `-- --before` adds the pass as pipe ran it before issue 24 (a
//! batch-norm pass after every convolution; the small maps of stages 3–5 one image per call):
//! since the flex patch's change 8 a one-image call pads to a whole chunk, so that table now
//! overstates the old small-map rows (BENCHMARKS.md keeps the comparison measured before it).

// The binary's allocator, as in `pipe` itself (src/allocator.rs).
#[path = "../src/allocator.rs"]
mod allocator;

use burn_backend::ops::{ActivationOps, ConvOptions, FloatTensorOps, ModuleOps};
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;

use std::collections::BTreeMap;

#[path = "common/profile.rs"]
mod profile;
use profile::{fma_peak, print_table, tensor, time};

const BATCH: usize = 32;
const SIDE: usize = 56;
/// Output maps of at most this many pixels took one gemm per image before issue 24 (the flex
/// patch's `SMALL_MAP`).
const SMALL_MAP: usize = 64;

/// Seconds and FLOPs summed per row name, in first-seen order.
#[derive(Default)]
struct Profile {
    order: Vec<String>,
    rows: BTreeMap<String, (f64, f64)>,
    reps: usize,
}

impl Profile {
    fn op<R>(&mut self, name: &str, flops: f64, f: impl FnMut() -> R) {
        let secs = time(self.reps, f);
        if !self.rows.contains_key(name) {
            self.order.push(name.to_string());
        }
        let row = self.rows.entry(name.to_string()).or_default();
        row.0 += secs;
        row.1 += flops;
    }

    fn print(&self, title: &str, peak: f64) -> f64 {
        let rows: Vec<(&str, f64, f64)> = self
            .order
            .iter()
            .map(|name| (name.as_str(), self.rows[name].0, self.rows[name].1))
            .collect();
        print_table(title, &rows, peak, BATCH, 1)
    }
}

/// One convolution of the network: input `[BATCH, c_in, side, side]`, `c_out` filters of
/// `k x k`, stride, padding, and the stage it belongs to (1 = the stem).
struct Conv {
    stage: usize,
    c_in: usize,
    side: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

impl Conv {
    fn out(&self) -> usize {
        (self.side + 2 * self.pad - self.k) / self.stride + 1
    }

    fn flops(&self) -> f64 {
        let o = self.out();
        2.0 * (BATCH * self.c_out * o * o * self.c_in * self.k * self.k) as f64
    }

    fn name(&self) -> String {
        if self.stage == 1 {
            format!("conv1 7x7/2 @{}", self.side)
        } else {
            format!(
                "stage {} convs {}x{} (@{})",
                self.stage,
                self.k,
                self.k,
                self.out()
            )
        }
    }
}

/// Keras' ResNet-50 at 56x56: (stage, blocks, filters, stride) as in `resnet::STAGES`.
const STAGES: [(usize, usize, [usize; 3], usize); 4] = [
    (2, 3, [64, 64, 256], 1),
    (3, 4, [128, 128, 512], 2),
    (4, 6, [256, 256, 1024], 2),
    (5, 3, [512, 512, 2048], 2),
];

/// What follows a convolution (after its batch norm).
#[derive(Clone, Copy, PartialEq)]
enum Then {
    /// The stem: max pooling, then ReLU on the pooled map.
    PoolRelu,
    /// `branch2a`, `branch2b`.
    Relu,
    /// `branch2c`: the residual add, then ReLU.
    AddRelu,
    /// The shortcut projection `branch1`: nothing.
    Nothing,
}

/// Every convolution of one forward pass and what follows it.
fn convolutions() -> Vec<(Conv, Then)> {
    let mut convs = vec![(
        Conv {
            stage: 1,
            c_in: 3,
            side: SIDE,
            c_out: 64,
            k: 7,
            stride: 2,
            pad: 3,
        },
        Then::PoolRelu,
    )];
    let (mut c_in, mut side) = (64, SIDE / 4);
    for (stage, blocks, [f1, f2, f3], stride) in STAGES {
        for b in 0..blocks {
            let s = if b == 0 { stride } else { 1 };
            let out = (side - 1) / s + 1;
            let c = |c_in, side, c_out, k, stride, pad| Conv {
                stage,
                c_in,
                side,
                c_out,
                k,
                stride,
                pad,
            };
            convs.push((c(c_in, side, f1, 1, s, 0), Then::Relu));
            convs.push((c(f1, out, f2, 3, 1, 1), Then::Relu));
            convs.push((c(f2, out, f3, 1, 1, 0), Then::AddRelu));
            if b == 0 {
                convs.push((c(c_in, side, f3, 1, s, 0), Then::Nothing));
            }
            c_in = f3;
            side = out;
        }
    }
    convs
}

fn options(c: &Conv) -> ConvOptions<2> {
    ConvOptions::new([c.stride; 2], [c.pad; 2], [1, 1], 1)
}

/// The forward pass, op by op. `folded`: batch norms folded (no batch-norm rows) and small
/// maps batched (the current flex patch); else a batch-norm pass after every convolution and
/// the small-map convolutions as one gemm per image (images in parallel, as before).
fn forward(p: &mut Profile, folded: bool) {
    for (i, (c, then)) in convolutions().iter().enumerate() {
        let o = c.out();
        let x = tensor(&[BATCH, c.c_in, c.side, c.side], i as u32);
        let w = tensor(&[c.c_out, c.c_in, c.k, c.k], 7);
        let b = tensor(&[c.c_out], 8);
        let per_image = !folded && o * o <= SMALL_MAP;
        if per_image {
            let images: Vec<FlexTensor> = (0..BATCH)
                .map(|j| tensor(&[1, c.c_in, c.side, c.side], j as u32))
                .collect();
            p.op(&c.name(), c.flops(), || {
                images
                    .par_iter()
                    .map(|x| Flex::conv2d(x.clone(), w.clone(), Some(b.clone()), options(c)))
                    .collect::<Vec<_>>()
            });
        } else {
            p.op(&c.name(), c.flops(), || {
                Flex::conv2d(x.clone(), w.clone(), Some(b.clone()), options(c))
            });
        }
        let elems = (BATCH * c.c_out * o * o) as f64;
        let y = tensor(&[BATCH, c.c_out, o, o], 9);
        if !folded {
            let ch = |s| tensor(&[c.c_out], s);
            let var = Flex::float_abs(ch(13));
            p.op("batch norm (inference)", 2.0 * elems, || {
                Flex::batch_norm(y.clone(), ch(10), ch(11), ch(12), var.clone(), 1e-5)
            });
        }
        match then {
            Then::PoolRelu => {
                let pooled = o.div_ceil(2);
                p.op("max pool 3x3/2, padding 1", elems, || {
                    Flex::max_pool2d(y.clone(), [3, 3], [2, 2], [1, 1], [1, 1], false)
                });
                let z = tensor(&[BATCH, c.c_out, pooled, pooled], 14);
                p.op("ReLU", elems / 4.0, || Flex::relu(z.clone()));
            }
            Then::Relu => p.op("ReLU", elems, || Flex::relu(y.clone())),
            Then::AddRelu => {
                let s = tensor(&[BATCH, c.c_out, o, o], 15);
                p.op("residual add", elems, || {
                    Flex::float_add(y.clone(), s.clone())
                });
                p.op("ReLU", elems, || Flex::relu(y.clone()));
            }
            Then::Nothing => {}
        }
    }
    let x = tensor(&[BATCH, 2048, 2, 2], 16);
    p.op("global average pool", (BATCH * 2048 * 4) as f64, || {
        Flex::adaptive_avg_pool2d(x.clone(), [1, 1])
    });
    for (d_in, d_out) in [(2048, 512), (512, 512), (512, 1)] {
        let x = tensor(&[BATCH, d_in], 17);
        let w = tensor(&[d_in, d_out], 18);
        p.op(
            "dense head (3 layers)",
            2.0 * (BATCH * d_in * d_out) as f64,
            || Flex::float_matmul(x.clone(), w.clone()),
        );
    }
}

fn main() {
    allocator::tune();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "ResNet-50 per-operation profile on flex, batch {BATCH} at {SIDE}x{SIDE}x3; {} threads; \
         load average {}",
        rayon::current_num_threads(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let fma = fma_peak();
    println!("peak: FMA loop {:.1} GFLOP/s", fma / 1e9);
    let before = std::env::args().any(|a| a == "--before").then(|| {
        let mut p = Profile {
            reps: 3,
            ..Profile::default()
        };
        forward(&mut p, false);
        p.print(
            "Before: batch norm as its own pass, small maps one image per call (padded since \
             flex change 8: overstated)",
            fma,
        )
    });
    let mut after = Profile {
        reps: 3,
        ..Profile::default()
    };
    forward(&mut after, true);
    let t1 = after.print(
        "Now: batch norms folded (fold_bn), small maps batched into one gemm per chunk",
        fma,
    );
    if let Some(t0) = before {
        println!("\nsum of operations: {:.2}x faster", t0 / t1);
    }
}
