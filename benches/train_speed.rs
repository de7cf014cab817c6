//! Training and inference throughput of B3 and the ResNet-50 TL models on this machine (the
//! figures of BENCHMARKS.md; bench/b3_keras.sh parses the B3 lines). A `cargo bench` target
//! rather than ignored unit tests, so timing code stays out of the test modules and runs with
//! the release profile:
//!
//! `cargo bench --bench train_speed -- b3` (or `tl`, `resnet`, `tl1run`; none = all).
//! `BENCH_B3_BATCHES` = B3 training batches of 124 (default 10); `BENCH_STEPS` = timed ResNet
//! training steps (default 10): small values give a quick smoke run.

// The binary's allocator, as in `pipe` itself (src/allocator.rs).
#[path = "../src/allocator.rs"]
mod allocator;

use burn::module::Module;
use burn::nn::loss::BinaryCrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use pipe::data::{Dataset, Shape};
use pipe::ml::backend::DeviceChoice;
use pipe::ml::defaults;
use pipe::ml::models::{ModelKind, ModelSpec};
use pipe::ml::resnet::{self, ResNet50Classifier, ResNetSpec, TransferMode};
use pipe::ml::train::{
    Checkpoint, Hooks, INFER_BATCH, TrainConfig, TrainInputs, predict, predict_batched, train,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::time::Instant;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// `n` random labelled images of the report's shape (56x56x3).
fn random_dataset(n: usize) -> Dataset {
    let shape = Shape::default();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let pixels: Vec<u8> = (0..n * shape.image_len()).map(|_| rng.random()).collect();
    let labels = (0..n).map(|i| (i % 2) as u8).collect();
    let names = (0..n).map(|i| i.to_string()).collect();
    Dataset::new(shape, pixels, Some(labels), names)
}

/// Trains `cfg` on `train`/`val` of `ds` into a fresh model directory (returned with the
/// training throughput).
fn fit(
    cfg: &TrainConfig,
    ds: &Dataset,
    train_idx: &[usize],
    val: &[usize],
) -> (tempfile::TempDir, f64) {
    let inputs = TrainInputs {
        data: ds,
        train: train_idx,
        val,
        test: &[],
        augment: None,
        rescale: 1.0 / 255.0,
    };
    let out = tempfile::tempdir().expect("temp dir");
    let resume = tempfile::tempdir().expect("temp dir");
    let pb = indicatif::ProgressBar::hidden();
    let s = train(cfg, &inputs, out.path(), resume.path(), &Hooks::bar(&pb))
        .unwrap_or_else(|e| panic!("training failed: {e}"));
    (out, s.images_per_second)
}

/// B3 at the report's shape and batch 124: 2 epochs of training, then inference.
fn bench_b3() {
    let batches = env_usize("BENCH_B3_BATCHES", 10).max(1);
    let n = 124 * (batches + 2);
    let ds = random_dataset(n);
    let mut cfg = TrainConfig::new(ModelSpec::new(ModelKind::B3), 1e-4, 2);
    cfg.test_every = 0;
    let train_idx: Vec<usize> = (0..124 * batches).collect();
    let val: Vec<usize> = (124 * batches..n).collect();
    let (out, rate) = fit(&cfg, &ds, &train_idx, &val);
    println!(
        "B3 train: {rate:.1} img/s (2 epochs of {})",
        train_idx.len()
    );
    let all: Vec<usize> = (0..n).collect();
    let run = |batch: usize| {
        let p = predict_batched(
            out.path(),
            Checkpoint::Last,
            &ds,
            &all,
            1.0 / 255.0,
            DeviceChoice::Cpu,
            batch,
        )
        .unwrap_or_else(|e| panic!("inference failed: {e}"));
        assert_eq!(p.len(), n);
    };
    run(INFER_BATCH); // warm-up
    let t = Instant::now();
    let reps = 3;
    for _ in 0..reps {
        let p = predict(
            out.path(),
            Checkpoint::Last,
            &ds,
            &all,
            1.0 / 255.0,
            DeviceChoice::Cpu,
        )
        .unwrap_or_else(|e| panic!("inference failed: {e}"));
        assert_eq!(p.len(), n);
    }
    let ips = (reps * n) as f64 / t.elapsed().as_secs_f64();
    println!("B3 predict: {ips:.1} img/s ({n} images x {reps}, batch {INFER_BATCH})");

    // Inference batch-size sweep (each call also reads the small B3 record: ~1 ms).
    for batch in [128, 256, 512, 1024, 2048] {
        let t = Instant::now();
        run(batch);
        let ips = n as f64 / t.elapsed().as_secs_f64();
        println!("  infer batch {batch}: {ips:.1} img/s");
    }
}

/// TL1–TL3 at the report's shape, batch 32: one epoch of 4 batches, then inference.
fn bench_tl() {
    let n = 32 * 5;
    let ds = random_dataset(n);
    let train_idx: Vec<usize> = (0..32 * 4).collect();
    let val: Vec<usize> = (32 * 4..n).collect();
    for kind in [ModelKind::Tl1, ModelKind::Tl2, ModelKind::Tl3] {
        let mut cfg = TrainConfig::new(ModelSpec::new(kind), 1e-4, 1);
        cfg.batch_size = 32;
        cfg.test_every = 0;
        let (out, rate) = fit(&cfg, &ds, &train_idx, &val);
        let t = Instant::now();
        let p = predict(
            out.path(),
            Checkpoint::Last,
            &ds,
            &val,
            1.0,
            DeviceChoice::Cpu,
        )
        .unwrap_or_else(|e| panic!("inference failed: {e}"));
        println!(
            "{kind} train: {rate:.1} img/s (1 epoch of {}, batch 32); predict {:.1} img/s",
            train_idx.len(),
            p.len() as f64 / t.elapsed().as_secs_f64()
        );
    }
}

/// TL3 and TL1 training steps and inference at batch 32 on 56x56 inputs on the raw module
/// (no data pipeline), next to Keras' (`bench/resnet_keras.py`, run when `python3` can import
/// tensorflow).
fn bench_resnet() {
    const BATCH: usize = 32;
    let train_steps = env_usize("BENCH_STEPS", 10);
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
            units: 1,
            trainable_from: None,
        };
        let mut model = resnet::build(&spec, &device).unwrap_or_else(|e| panic!("{e}"));
        // as pipe trains: the frozen stem and blocks (TL1: the whole backbone) folded, without
        // autodiff
        let prefix = resnet::frozen_blocks(mode.first_trainable_layer())
            .map(|blocks| model.fold_prefix(blocks));
        let mut optim = AdamConfig::new()
            .with_epsilon(defaults::ADAM_EPSILON as f32)
            .init();
        let bce = BinaryCrossEntropyLossConfig::new()
            .with_logits(true)
            .init(&device);
        let mut step = |model: ResNet50Classifier| {
            let x =
                Tensor::<4>::from_data(TensorData::new(host.clone(), [BATCH, 3, 56, 56]), &device);
            let y =
                Tensor::<2, Int>::from_data(TensorData::new(labels.clone(), [BATCH, 1]), &device);
            let logits = match &prefix {
                Some(prefix) => model.forward_folded(prefix, x),
                None => model.forward(x),
            };
            let loss = bce.forward(logits, y);
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
        let t = Instant::now();
        let folded = eval.fold_bn();
        let fold_ms = t.elapsed().as_secs_f64() * 1e3;
        let rate = |fold: bool| {
            let infer = || {
                let x = Tensor::<4>::from_data(
                    TensorData::new(host.clone(), [BATCH, 3, 56, 56]),
                    &base,
                );
                let y = if fold {
                    eval.forward_folded(&folded, x)
                } else {
                    eval.forward(x)
                };
                let _ = y.into_data();
            };
            infer(); // warm-up
            let t = Instant::now();
            for _ in 0..infer_batches {
                infer();
            }
            (infer_batches * BATCH) as f64 / t.elapsed().as_secs_f64()
        };
        let unfolded_rate = rate(false);
        let infer_rate = rate(true);
        println!(
            "burn  {base:?} {mode}: train {train_rate:.1} img/s ({train_steps} steps of \
             {BATCH}), inference {infer_rate:.1} img/s (batch norms folded, as pipe infers; \
             fold {fold_ms:.0} ms once; unfolded {unfolded_rate:.1} img/s)"
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

/// A whole TL1 training as the train stage runs it (no augmentation: the frozen backbone's
/// outputs are kept from epoch 1), against Keras' `fit` of the same run
/// (`bench/tl1_run_keras.py`, which runs the frozen base every epoch). `BENCH_TL1_TRAIN`
/// (default 512), `BENCH_TL1_EPOCHS` (default 5); 128 validation images.
fn bench_tl1_run() {
    let n_train = env_usize("BENCH_TL1_TRAIN", 512);
    let epochs = env_usize("BENCH_TL1_EPOCHS", 5);
    let n_val = 128;
    let ds = random_dataset(n_train + n_val);
    let mut cfg = TrainConfig::new(ModelSpec::new(ModelKind::Tl1), 1e-4, epochs as u32);
    cfg.batch_size = 32;
    cfg.test_every = 0;
    let train_idx: Vec<usize> = (0..n_train).collect();
    let val: Vec<usize> = (n_train..n_train + n_val).collect();
    let t = Instant::now();
    let _ = fit(&cfg, &ds, &train_idx, &val);
    let pipe_s = t.elapsed().as_secs_f64();
    println!(
        "pipe tl1: {epochs} epochs over {n_train} images (validation over {n_val} each) in \
         {pipe_s:.1} s ({:.1} img/s)",
        (n_train * epochs) as f64 / pipe_s
    );
    let keras = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/bench/tl1_run_keras.py"
        ))
        .args([n_train, n_val, epochs].map(|v| v.to_string()))
        .output();
    let out = match keras {
        Ok(out) if out.status.success() => out,
        Ok(out) => {
            println!(
                "keras benchmark failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        Err(e) => {
            println!("keras not run: {e}");
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let seconds = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .filter_map(|j| serde_json::from_str::<serde_json::Value>(j).ok())
        .find_map(|v| v["seconds"].as_f64());
    print!("{stdout}");
    if let Some(k) = seconds {
        println!(
            "pipe / keras tl1 run: {:.2}x (Keras seconds / pipe seconds)",
            k / pipe_s
        );
    }
}

fn main() {
    // As the `pipe` binary does at start-up.
    allocator::tune();
    // `cargo bench` passes `--bench`; the other arguments select benchmarks.
    let picked: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let benches: [(&str, fn()); 4] = [
        ("b3", bench_b3),
        ("tl", bench_tl),
        ("resnet", bench_resnet),
        ("tl1run", bench_tl1_run),
    ];
    let unknown: Vec<&String> = picked
        .iter()
        .filter(|p| !benches.iter().any(|(name, _)| name == p))
        .collect();
    if !unknown.is_empty() {
        eprintln!("unknown benchmark(s) {unknown:?}: choose from b3, tl, resnet, tl1run");
        std::process::exit(2);
    }
    println!("load average: {}", load_average());
    for (name, run) in benches {
        if picked.is_empty() || picked.iter().any(|p| p == name) {
            run();
        }
    }
}

/// The first three fields of /proc/loadavg ("?" elsewhere).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}
