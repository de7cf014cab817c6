//! Per-operation profile of one B3 training step (batch 124) and one inference batch (256) on
//! burn's `flex` CPU backend, for BENCHMARKS.md "Training speed (issue 9)":
//! `cargo bench --bench b3_profile`.
//!
//! Each backend operation the autodiff graph runs is called directly on `Flex` with the
//! shapes of B3 at 56x56x3 (median of several calls), with its FLOPs and the fraction of the
//! machine's peak reached. The peak is measured here too: a large single-precision gemm (the
//! `gemm` crate flex uses, all cores) gives the attainable rate, and an FMA-only loop on
//! independent accumulators the instruction peak.

// The binary's allocator, as in `pipe` itself (src/allocator.rs).
#[path = "../src/allocator.rs"]
mod allocator;

use burn_backend::ops::{ActivationOps, ConvOptions, FloatTensorOps, ModuleOps};
use burn_backend::{DType, IntDType};
use burn_flex::{Flex, FlexTensor};

#[path = "common/profile.rs"]
mod profile;
use profile::{fma_peak, print_table, tensor, time};

const TRAIN_BATCH: usize = 124;
const INFER_BATCH: usize = 256;

/// FLOP/s of a 2048³ f32 gemm on every core (the attainable peak for dense kernels).
fn gemm_peak() -> f64 {
    let n = 2048;
    let a = tensor(&[n, n], 1);
    let b = tensor(&[n, n], 2);
    let s = time(5, || Flex::float_matmul(a.clone(), b.clone()));
    2.0 * (n * n * n) as f64 / s
}

struct Row {
    name: String,
    secs: f64,
    flops: f64,
}

struct Profile {
    rows: Vec<Row>,
    reps: usize,
}

impl Profile {
    fn op<R>(&mut self, name: impl Into<String>, flops: f64, f: impl FnMut() -> R) {
        let secs = time(self.reps, f);
        self.rows.push(Row {
            name: name.into(),
            secs,
            flops,
        });
    }

    fn print(&self, title: &str, peak: f64, images: usize) {
        let rows: Vec<(&str, f64, f64)> = self
            .rows
            .iter()
            .map(|r| (r.name.as_str(), r.secs, r.flops))
            .collect();
        print_table(title, &rows, peak, images, 0);
    }
}

/// One conv layer of B3: input `[n, c, s, s]`, `k` 3x3 filters, valid padding.
struct Conv {
    name: &'static str,
    c: usize,
    k: usize,
    side: usize,
}

impl Conv {
    fn out(&self) -> usize {
        self.side - 2
    }

    /// Multiply-adds ×2 of one pass (forward, data or weight gradient: all the same count).
    fn flops(&self, n: usize) -> f64 {
        2.0 * (n * self.k * self.out() * self.out() * self.c * 9) as f64
    }
}

const CONVS: [Conv; 3] = [
    Conv {
        name: "conv1 3→16 @56",
        c: 3,
        k: 16,
        side: 56,
    },
    Conv {
        name: "conv2 16→64 @27",
        c: 16,
        k: 64,
        side: 27,
    },
    Conv {
        name: "conv3 64→128 @12",
        c: 64,
        k: 128,
        side: 12,
    },
];

fn opts() -> ConvOptions<2> {
    ConvOptions::new([1, 1], [0, 0], [1, 1], 1)
}

/// Pooling with indices as autodiff asks flex for them (flex's default int dtype, i32).
fn pool(x: FlexTensor) -> FlexTensor {
    Flex::max_pool2d_with_indices(x, [2, 2], [2, 2], [0, 0], [1, 1], false, IntDType::I32).output
}

fn train_step(p: &mut Profile, n: usize) {
    for (i, c) in CONVS.iter().enumerate() {
        let x = tensor(&[n, c.c, c.side, c.side], 1);
        let w = tensor(&[c.k, c.c, 3, 3], 2);
        let b = tensor(&[c.k], 3);
        let o = c.out();
        let dy = tensor(&[n, c.k, o, o], 4);
        let f = c.flops(n);
        p.op(format!("{} forward (+bias)", c.name), f, || {
            Flex::conv2d(x.clone(), w.clone(), Some(b.clone()), opts())
        });
        if i > 0 {
            p.op(format!("{} backward-data", c.name), f, || {
                Flex::conv2d_x_backward(x.clone(), w.clone(), dy.clone(), opts())
            });
        }
        p.op(format!("{} backward-weight", c.name), f, || {
            Flex::conv2d_weight_backward(x.clone(), w.clone(), dy.clone(), opts())
        });
        p.op(
            format!("{} backward-bias", c.name),
            (n * c.k * o * o) as f64,
            || Flex::conv2d_bias_backward(x.clone(), b.clone(), dy.clone()),
        );
        // the model's order: conv → pool → ReLU (crates/pipe-ml/src/models.rs)
        let y = tensor(&[n, c.k, o, o], 5);
        let elems = (n * c.k * o * o) as f64;
        let pooled = Flex::max_pool2d_with_indices(
            y.clone(),
            [2, 2],
            [2, 2],
            [0, 0],
            [1, 1],
            false,
            IntDType::I32,
        );
        p.op(
            format!("maxpool {} forward (+indices)", i + 1),
            elems,
            || pool(y.clone()),
        );
        let dp = tensor(&pooled.output.layout().shape().to_vec(), 6);
        p.op(format!("maxpool {} backward", i + 1), elems, || {
            Flex::max_pool2d_with_indices_backward(
                y.clone(),
                [2, 2],
                [2, 2],
                [0, 0],
                [1, 1],
                false,
                dp.clone(),
                pooled.indices.clone(),
            )
        });
        let pooled_elems = (n * c.k * (o / 2) * (o / 2)) as f64;
        p.op(
            format!("relu {} forward (after pooling)", i + 1),
            pooled_elems,
            || Flex::relu(pooled.output.clone()),
        );
        p.op(format!("relu {} backward", i + 1), pooled_elems, || {
            Flex::relu_backward(pooled.output.clone(), dp.clone())
        });
    }
    for (name, d_in, d_out) in [("dense 3200→512", 3200, 512), ("dense 512→512", 512, 512)] {
        let x = tensor(&[n, d_in], 1);
        let w = tensor(&[d_in, d_out], 2);
        let dy = tensor(&[n, d_out], 3);
        let f = 2.0 * (n * d_in * d_out) as f64;
        p.op(format!("{name} forward"), f, || {
            Flex::float_matmul(x.clone(), w.clone())
        });
        p.op(format!("{name} backward (data + weight)"), 2.0 * f, || {
            let dx = Flex::float_matmul(dy.clone(), Flex::float_transpose(w.clone()));
            let dw = Flex::float_matmul(Flex::float_transpose(x.clone()), dy.clone());
            (dx, dw)
        });
    }
    let params = 1_985_665usize;
    let m = tensor(&[params], 1);
    let v = tensor(&[params], 2);
    let g = tensor(&[params], 3);
    // Adam's element-wise chain as burn-optim runs it: moments, bias correction, update.
    p.op(
        "Adam (1.99 M parameters, element-wise ops)",
        12.0 * params as f64,
        || {
            let m2 = Flex::float_add(
                Flex::float_mul_scalar(m.clone(), 0.9.into()),
                Flex::float_mul_scalar(g.clone(), 0.1.into()),
            );
            let v2 = Flex::float_add(
                Flex::float_mul_scalar(v.clone(), 0.999.into()),
                Flex::float_mul_scalar(Flex::float_mul(g.clone(), g.clone()), 0.001.into()),
            );
            let upd = Flex::float_div(
                m2.clone(),
                Flex::float_add_scalar(Flex::float_sqrt(v2.clone()), 1e-7.into()),
            );
            (m2, v2, Flex::float_sub(g.clone(), upd))
        },
    );
}

/// Inference as `Cnn::infer` runs it: the convolutional blocks on slices of `chunk` images
/// (each row times all `n / chunk` slices), the dense head on the whole batch.
fn inference(p: &mut Profile, n: usize, chunk: usize) {
    let reps = n / chunk;
    for (i, c) in CONVS.iter().enumerate() {
        let x = tensor(&[chunk, c.c, c.side, c.side], 1);
        let w = tensor(&[c.k, c.c, 3, 3], 2);
        let b = tensor(&[c.k], 3);
        p.op(format!("{} forward (+bias)", c.name), c.flops(n), || {
            for _ in 0..reps {
                Flex::conv2d(x.clone(), w.clone(), Some(b.clone()), opts());
            }
        });
        let o = c.out();
        let y = tensor(&[chunk, c.k, o, o], 5);
        let elems = (n * c.k * o * o) as f64;
        p.op(format!("maxpool {} (no indices)", i + 1), elems, || {
            for _ in 0..reps {
                Flex::max_pool2d(y.clone(), [2, 2], [2, 2], [0, 0], [1, 1], false);
            }
        });
        let pooled = tensor(&[chunk, c.k, o / 2, o / 2], 6);
        p.op(
            format!("relu {} (after pooling)", i + 1),
            elems / 4.0,
            || {
                for _ in 0..reps {
                    Flex::relu(pooled.clone());
                }
            },
        );
    }
    for (name, d_in, d_out) in [("dense 3200→512", 3200, 512), ("dense 512→512", 512, 512)] {
        let x = tensor(&[n, d_in], 1);
        let w = tensor(&[d_in, d_out], 2);
        p.op(
            format!("{name} forward"),
            2.0 * (n * d_in * d_out) as f64,
            || Flex::float_matmul(x.clone(), w.clone()),
        );
    }
}

fn main() {
    allocator::tune();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let threads = rayon::current_num_threads();
    println!(
        "B3 per-operation profile on flex; {threads} threads; load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let fma = fma_peak();
    let gemm = gemm_peak();
    println!(
        "peak: FMA loop {:.1} GFLOP/s, gemm 2048³ {:.1} GFLOP/s (percentages below use the FMA peak)",
        fma / 1e9,
        gemm / 1e9
    );
    let _ = DType::F32;
    let mut train = Profile {
        rows: vec![],
        reps: 5,
    };
    train_step(&mut train, TRAIN_BATCH);
    train.print(
        &format!("Training step, batch {TRAIN_BATCH}"),
        fma,
        TRAIN_BATCH,
    );
    let mut infer = Profile {
        rows: vec![],
        reps: 5,
    };
    inference(&mut infer, INFER_BATCH, 32);
    infer.print(
        &format!("Inference batch {INFER_BATCH} (convolutional blocks in slices of 32 images)"),
        fma,
        INFER_BATCH,
    );
}
