//! Unit tests of the trainer: tiny trainings on separable toy data.

use super::prefetch::{PREFETCH_DEPTH, prefetched};
use super::{callbacks::*, checkpoint::*, config::*, fit::*, inference::*, net::*, preprocess::*};
use crate::backend::{self, DeviceChoice, MlError};
use crate::curve::CurveRow;
use crate::models::{self, ModelSpec};
use crate::models::{MIN_INPUT_SIDE, ModelKind};
use crate::resnet::{self};
use pipe_data::Dataset;
use pipe_data::Shape;
use pipe_data::augment::AugmentSpec;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

const SIDE: u32 = MIN_INPUT_SIDE;

/// Two easily separable classes: class 1 has a bright square in the top-left quadrant.
fn toy_dataset(n: usize, seed: u64) -> Dataset {
    let shape = Shape::new(SIDE, SIDE, 3);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut pixels = Vec::with_capacity(n * shape.image_len());
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let label = (i % 2) as u8;
        for y in 0..SIDE {
            for x in 0..SIDE {
                for _ in 0..3 {
                    let noise: u8 = rng.random_range(0..60);
                    let bright = label == 1 && x < SIDE / 2 && y < SIDE / 2;
                    pixels.push(if bright { 180 + noise } else { noise });
                }
            }
        }
        labels.push(label);
    }
    let names = (0..n).map(|i| format!("#{i}")).collect();
    Dataset::new(shape, pixels, Some(labels), names)
}

fn toy_config(kind: ModelKind, epochs: u32) -> TrainConfig {
    let mut spec = ModelSpec::new(kind);
    spec.input = Shape::new(SIDE, SIDE, 3);
    let mut cfg = TrainConfig::new(spec, 1e-3, epochs);
    cfg.batch_size = 32;
    cfg.seed = 11;
    cfg.test_every = 2;
    cfg
}

struct Run {
    summary: TrainSummary,
    resumed_from_epoch: Option<u32>,
    rows: Vec<CurveRow>,
    out: tempfile::TempDir,
}

fn run(
    cfg: &TrainConfig,
    ds: &Dataset,
    resume: &Path,
    stop_at: Option<u32>,
) -> Result<Run, MlError> {
    let train: Vec<usize> = (0..120).collect();
    let val: Vec<usize> = (120..160).collect();
    let test: Vec<usize> = (160..200).collect();
    // B3 trains with the report's augmentation (seeded per epoch and image).
    let aug = AugmentSpec::default();
    let inputs = TrainInputs {
        data: ds,
        train: &train,
        val: &val,
        test: &test,
        augment: (cfg.model.kind == ModelKind::B3).then_some(&aug),
        rescale: 1.0 / 255.0,
    };
    let out = tempfile::tempdir().unwrap();
    let pb = indicatif::ProgressBar::hidden();
    let stop = |e| Some(e) == stop_at;
    let hooks = Hooks {
        stop: &stop,
        ..Hooks::bar(&pb)
    };
    let trained = train_fn(cfg, &inputs, out.path(), resume, &hooks)?;
    let state: ResumeState = read_json(&resume.join(RESUME_STATE)).unwrap();
    assert_eq!(state.epoch_seconds.len(), state.rows.len());
    Ok(Run {
        summary: trained.summary,
        resumed_from_epoch: trained.resumed_from_epoch,
        rows: state.rows,
        out,
    })
}
use super::train as train_fn;

#[test]
fn loss_falls_on_separable_data_and_outputs_are_written() {
    let ds = toy_dataset(200, 1);
    let cfg = toy_config(ModelKind::B1, 3);
    let resume = tempfile::tempdir().unwrap();
    let r = run(&cfg, &ds, resume.path(), None).unwrap();
    assert_eq!(r.summary.epochs_run, 3);
    assert!(
        r.rows[2].train_loss < r.rows[0].train_loss * 0.8,
        "{:?}",
        r.rows
    );
    assert!(r.summary.best_val_bacc > 0.9, "{:?}", r.summary);
    assert!(r.rows[1].test_bacc.is_some());
    assert_eq!(r.rows[0].test_bacc, None);
    assert!(r.rows[2].test_bacc.is_some(), "test at the last epoch");
    for f in [MODEL_FILE, CURVE_CSV, SUMMARY_FILE] {
        assert!(r.out.path().join(f).is_file(), "{f}");
    }
    for ck in Checkpoint::ALL {
        assert!(r.out.path().join(ck.file_name()).is_file());
        assert!(r.out.path().join(ck.safetensors_name()).is_file());
    }
    assert_eq!(r.summary.params, models::param_count(&cfg.model));

    // predict: probabilities in [0, 1], in input order.
    let idx = [199usize, 198, 197, 196];
    let p = predict(
        r.out.path(),
        Checkpoint::Last,
        &ds,
        &idx,
        1.0 / 255.0,
        DeviceChoice::Cpu,
    )
    .unwrap();
    assert_eq!(p.len(), 4);
    assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(
        p[0] > 0.5 && p[1] < 0.5 && p[2] > 0.5 && p[3] < 0.5,
        "{p:?}"
    );
    let rev = predict(
        r.out.path(),
        Checkpoint::Last,
        &ds,
        &[196, 197],
        1.0 / 255.0,
        DeviceChoice::Cpu,
    )
    .unwrap();
    assert!(
        (rev[0] - p[3]).abs() < 1e-5 && (rev[1] - p[2]).abs() < 1e-5,
        "{rev:?} {p:?}"
    );
}

#[test]
fn same_seed_same_bytes_and_resume_is_exact() {
    let ds = toy_dataset(200, 2);
    let mut cfg = toy_config(ModelKind::B3, 3);
    cfg.plateau = Some(Plateau {
        patience: 1,
        ..Plateau::default()
    });
    let r1 = tempfile::tempdir().unwrap();
    let a = run(&cfg, &ds, r1.path(), None).unwrap();
    let r2 = tempfile::tempdir().unwrap();
    let b = run(&cfg, &ds, r2.path(), None).unwrap();
    assert_eq!(a.rows, b.rows);
    let bytes = |r: &Run, f: &str| std::fs::read(r.out.path().join(f)).unwrap();
    // Every file of the model directory (weights, exports, curve, summary) is identical.
    assert_same_files(&a, &b);

    // Interrupted after epoch 1, then resumed: identical to the uninterrupted run.
    let r3 = tempfile::tempdir().unwrap();
    let err = run(&cfg, &ds, r3.path(), Some(1)).err().unwrap();
    assert!(matches!(err, MlError::Interrupted { epoch: 1 }), "{err}");
    let c = run(&cfg, &ds, r3.path(), None).unwrap();
    assert_eq!(c.resumed_from_epoch, Some(1));
    assert_eq!(a.resumed_from_epoch, None);
    assert_eq!(a.rows, c.rows);
    assert_same_files(&a, &c);
    // Another seed gives other weights.
    cfg.seed += 1;
    let r4 = tempfile::tempdir().unwrap();
    let d = run(&cfg, &ds, r4.path(), None).unwrap();
    assert_ne!(bytes(&a, "last.bpk"), bytes(&d, "last.bpk"));
}

#[test]
fn a_longer_training_continues_the_checkpoint_of_a_shorter_one_stopped_early() {
    let ds = toy_dataset(200, 5);
    let long = toy_config(ModelKind::B1, 3);
    let r1 = tempfile::tempdir().unwrap();
    let whole = run(&long, &ds, r1.path(), None).unwrap();

    // A 2-epoch training stopped after epoch 1 (as a pruner stops one).
    let short = toy_config(ModelKind::B1, 2);
    let pruned = tempfile::tempdir().unwrap();
    let err = run(&short, &ds, pruned.path(), Some(1)).err().unwrap();
    assert!(matches!(err, MlError::Interrupted { epoch: 1 }), "{err}");
    assert_eq!(continuable_epoch(pruned.path(), &long), Some(1));
    assert_eq!(continuable_epoch(pruned.path(), &short), Some(1));
    let one = toy_config(ModelKind::B1, 1);
    assert_eq!(
        continuable_epoch(pruned.path(), &one),
        None,
        "epoch 1 is its end"
    );
    let mut other = long.clone();
    other.lr *= 2.0;
    assert_eq!(continuable_epoch(pruned.path(), &other), None, "another lr");

    // The 3-epoch training adopts it and ends exactly as the uninterrupted one.
    let r2 = tempfile::tempdir().unwrap();
    assert_eq!(adopt_checkpoint(pruned.path(), r2.path()).unwrap(), 1);
    let continued = run(&long, &ds, r2.path(), None).unwrap();
    assert_eq!(continued.resumed_from_epoch, Some(1));
    assert_eq!(continued.rows, whole.rows);
    assert_same_files(&whole, &continued);
    // The donor's checkpoint is untouched: its own rerun still resumes it.
    assert_eq!(continuable_epoch(pruned.path(), &short), Some(1));
    // Resumed, it tells its epochs again first, and stopped there it trains none.
    let err = run(&short, &ds, pruned.path(), Some(1)).err().unwrap();
    assert!(matches!(err, MlError::Interrupted { epoch: 1 }), "{err}");
    assert_eq!(continuable_epoch(pruned.path(), &short), Some(1));

    // A finished training's checkpoint is not continued by a longer one.
    let done = tempfile::tempdir().unwrap();
    run(&short, &ds, done.path(), None).unwrap();
    assert_eq!(
        continuable_epoch(done.path(), &short),
        Some(2),
        "its own rerun"
    );
    assert_eq!(continuable_epoch(done.path(), &long), None);
}

/// Both model directories hold the same file names with the same bytes.
fn assert_same_files(a: &Run, b: &Run) {
    let listing = |r: &Run| -> std::collections::BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(r.out.path())
            .unwrap()
            .flatten()
            .map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                (name, std::fs::read(e.path()).unwrap())
            })
            .collect()
    };
    let (la, lb) = (listing(a), listing(b));
    assert_eq!(la.keys().collect::<Vec<_>>(), lb.keys().collect::<Vec<_>>());
    for (name, bytes) in &la {
        assert!(bytes == &lb[name], "{name} differs between the two runs");
    }
}

#[test]
fn model_json_names_the_weights_file_without_its_directory() {
    let mut spec = ModelSpec::new(ModelKind::Tl2);
    spec.weights = Some(PathBuf::from("/somewhere/else/resnet50.pth"));
    let cfg = TrainConfig::new(spec, 1e-4, 1);
    let p = portable(&cfg);
    assert_eq!(p.model.weights, Some(PathBuf::from("resnet50.pth")));
    assert_eq!(portable(&p), p);
    assert_eq!(portable(&toy_config(ModelKind::B1, 1)).model.weights, None);
}

#[test]
fn unsupported_device_is_reported() {
    let ds = toy_dataset(200, 3);
    let mut cfg = toy_config(ModelKind::B1, 1);
    cfg.device = DeviceChoice::Vulkan;
    let resume = tempfile::tempdir().unwrap();
    match run(&cfg, &ds, resume.path(), None) {
        Err(e @ MlError::DeviceUnavailable { .. }) if !cfg!(feature = "vulkan") => {
            assert!(e.to_string().contains("--features vulkan"), "{e}");
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => {
            if !cfg!(feature = "vulkan") {
                panic!("a vulkan run succeeded in a build without vulkan")
            }
        }
    }
}

#[test]
fn validation_lists_every_problem() {
    let mut cfg = toy_config(ModelKind::B2, 0);
    cfg.lr = 0.0;
    cfg.batch_size = 0;
    cfg.plateau = Some(Plateau {
        factor: 1.5,
        ..Plateau::default()
    });
    cfg.model.input = Shape::new(10, 56, 3);
    let p = validate(&cfg);
    assert_eq!(p.len(), 5, "{p:?}");
    for needle in ["lr", "batch_size", "epochs", "plateau.factor", "height 10"] {
        assert!(p.iter().any(|m| m.contains(needle)), "{needle}: {p:?}");
    }
    assert!(validate(&toy_config(ModelKind::B2, 1)).is_empty());
}

#[test]
fn config_serde_defaults() {
    let cfg: TrainConfig = serde_json::from_str(
        r#"{"model":{"kind":"b3","input":{"height":56,"width":56,"channels":3}},
            "lr":0.0001,"epochs":100,"plateau":{}}"#,
    )
    .unwrap();
    assert_eq!(cfg.batch_size, 124);
    assert_eq!(cfg.test_every, 5);
    assert_eq!(cfg.epsilon, 1e-7);
    assert_eq!(cfg.plateau, Some(Plateau::default()));
    assert!(serde_json::from_str::<TrainConfig>(r#"{"model":{"kind":"b1","input":{"height":56,"width":56,"channels":3}},"lr":1,"epochs":1,"lr_decay":2}"#).is_err());
}

#[test]
fn callbacks_follow_keras() {
    assert!(Monitor::ValLoss.improves(0.5, None, 1e-4));
    assert!(!Monitor::ValLoss.improves(0.49995, Some(0.5), 1e-4));
    assert!(Monitor::ValLoss.improves(0.4, Some(0.5), 1e-4));
    assert!(Monitor::ValBacc.improves(0.8, Some(0.7), 0.0));
    assert!(!Monitor::ValBacc.improves(f64::NAN, None, 0.0));
    assert!((bce_of_logit(0.0, 1) - std::f64::consts::LN_2).abs() < 1e-12);
    assert!(bce_of_logit(-100.0, 1) > 99.0 && bce_of_logit(-100.0, 0) < 1e-12);
}

/// Every tensor of a SafeTensors file: name → little-endian bytes.
fn tensors(path: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(k, v)| (k, v.data().to_vec()))
        .collect()
}

#[test]
fn tl1_trains_only_the_head_and_predicts() {
    let side = 32;
    let shape = Shape::new(side, side, 3);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let n = 24;
    let pixels: Vec<u8> = (0..n * shape.image_len()).map(|_| rng.random()).collect();
    let labels = (0..n).map(|i| (i % 2) as u8).collect();
    let names = (0..n).map(|i| i.to_string()).collect();
    let ds = Dataset::new(shape, pixels, Some(labels), names);
    let mut spec = ModelSpec::new(ModelKind::Tl1);
    spec.input = shape;
    let mut cfg = TrainConfig::new(spec, 1e-3, 1);
    cfg.batch_size = 8;
    cfg.seed = 4;
    cfg.test_every = 1;
    let train: Vec<usize> = (0..16).collect();
    let val: Vec<usize> = (16..20).collect();
    let test: Vec<usize> = (20..24).collect();
    let aug = AugmentSpec::default();
    let inputs = TrainInputs {
        data: &ds,
        train: &train,
        val: &val,
        test: &test,
        augment: Some(&aug),
        rescale: 1.0 / 255.0,
    };
    let out = tempfile::tempdir().unwrap();
    let resume = tempfile::tempdir().unwrap();
    let pb = indicatif::ProgressBar::hidden();
    let s = train_fn(&cfg, &inputs, out.path(), resume.path(), &Hooks::bar(&pb))
        .unwrap()
        .summary;
    assert_eq!(s.epochs_run, 1);
    assert_eq!(s.params, 1_312_257);
    for ck in Checkpoint::ALL {
        assert!(out.path().join(ck.file_name()).is_file());
        assert!(out.path().join(ck.safetensors_name()).is_file());
    }
    let mf: ModelFile = read_json(&out.path().join(MODEL_FILE)).unwrap();
    assert_eq!(mf.preprocess, Some(Preprocess::Caffe));

    // The initial weights depend on the seed only; tl1 changed the head and nothing else.
    let dev = backend::device(DeviceChoice::Cpu).unwrap();
    let init_path = out.path().join("init.safetensors");
    let seed = derive_seed(cfg.seed, STREAM_INIT, 0);
    Net::init(&cfg.model, seed, &dev)
        .unwrap()
        .save_safetensors(&init_path)
        .unwrap();
    let before = tensors(&init_path);
    let after = tensors(&out.path().join(Checkpoint::Last.safetensors_name()));
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    let mut head_changed = 0;
    for (k, v) in &before {
        if k.starts_with("dense_") {
            head_changed += usize::from(after[k] != *v);
        } else {
            assert!(after[k] == *v, "backbone tensor {k} changed");
        }
    }
    assert!(head_changed >= 3, "{head_changed} head tensors changed");

    let p = predict(
        out.path(),
        Checkpoint::Last,
        &ds,
        &[3, 2, 1],
        0.5,
        DeviceChoice::Cpu,
    )
    .unwrap();
    assert_eq!(p.len(), 3);
    assert!(p.iter().all(|v| (0.0..=1.0).contains(v)), "{p:?}");
    // Saliency runs through the frozen ResNet too.
    let maps = crate::saliency::saliency(
        out.path(),
        Checkpoint::BestBacc,
        &ds,
        &[0, 5],
        DeviceChoice::Cpu,
    )
    .unwrap();
    assert_eq!(maps.len(), 2);
    for m in &maps {
        assert_eq!(m.len(), 32 * 32);
        assert!(m.iter().all(|v| v.is_finite() && *v >= 0.0));
        assert!(m.iter().any(|v| *v > 0.0));
    }
    // Caffe preprocessing is recorded: the `rescale` argument is not used.
    let q = predict(
        out.path(),
        Checkpoint::Last,
        &ds,
        &[3, 2, 1],
        1.0 / 255.0,
        DeviceChoice::Cpu,
    )
    .unwrap();
    assert_eq!(p, q);
}

#[test]
fn tl2_is_deterministic_and_resumes_exactly() {
    let shape = Shape::new(32, 32, 1);
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let n = 20;
    let pixels: Vec<u8> = (0..n * shape.image_len()).map(|_| rng.random()).collect();
    let labels = (0..n).map(|i| (i % 2) as u8).collect();
    let names = (0..n).map(|i| i.to_string()).collect();
    let ds = Dataset::new(shape, pixels, Some(labels), names);
    let mut spec = ModelSpec::new(ModelKind::Tl2);
    spec.input = shape;
    let mut cfg = TrainConfig::new(spec, 1e-4, 2);
    cfg.batch_size = 8;
    cfg.test_every = 0;
    let train: Vec<usize> = (0..16).collect();
    let val: Vec<usize> = (16..20).collect();
    let inputs = TrainInputs {
        data: &ds,
        train: &train,
        val: &val,
        test: &[],
        augment: None,
        rescale: 1.0 / 255.0,
    };
    let pb = indicatif::ProgressBar::hidden();
    let go = |stop_at: Option<u32>, resume: &Path, out: &Path| {
        let stop = |e| Some(e) == stop_at;
        let hooks = Hooks {
            stop: &stop,
            ..Hooks::bar(&pb)
        };
        train_fn(&cfg, &inputs, out, resume, &hooks)
    };
    let last = |out: &Path| tensors(&out.join(Checkpoint::Last.safetensors_name()));
    let (r1, o1) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    go(None, r1.path(), o1.path()).unwrap();
    let (r2, o2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let err = go(Some(1), r2.path(), o2.path()).err().unwrap();
    assert!(matches!(err, MlError::Interrupted { epoch: 1 }), "{err}");
    let s = go(None, r2.path(), o2.path()).unwrap();
    assert_eq!(s.resumed_from_epoch, Some(1));
    assert!(last(o1.path()) == last(o2.path()), "resumed run differs");
    let bpk = |out: &Path| std::fs::read(out.join(Checkpoint::Last.file_name())).unwrap();
    assert!(bpk(o1.path()) == bpk(o2.path()), "records differ");
    let a: ResumeState = read_json(&r1.path().join(RESUME_STATE)).unwrap();
    let b: ResumeState = read_json(&r2.path().join(RESUME_STATE)).unwrap();
    assert_eq!(a.rows, b.rows);
}

/// TL1 without augmentation keeps its frozen backbone's outputs from epoch 1 (the module
/// `frozen`): three epochs give the bytes and the curve of the run that recomputes them.
#[test]
fn kept_frozen_outputs_train_the_same_bytes() {
    let shape = Shape::new(32, 32, 3);
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let n = 28;
    let pixels: Vec<u8> = (0..n * shape.image_len()).map(|_| rng.random()).collect();
    let labels = (0..n).map(|i| (i % 2) as u8).collect();
    let ds = Dataset::new(
        shape,
        pixels,
        Some(labels),
        (0..n).map(|i| i.to_string()).collect(),
    );
    let mut spec = ModelSpec::new(ModelKind::Tl1);
    spec.input = shape;
    let mut cfg = TrainConfig::new(spec, 1e-3, 3);
    // 18 images in batches of 7: a last batch of 4, other images in it each epoch
    cfg.batch_size = 7;
    cfg.test_every = 2;
    let (train, val, test): (Vec<usize>, Vec<usize>, Vec<usize>) =
        ((0..18).collect(), (18..23).collect(), (23..28).collect());
    let inputs = TrainInputs {
        data: &ds,
        train: &train,
        val: &val,
        test: &test,
        augment: None,
        rescale: 1.0,
    };
    let pb = indicatif::ProgressBar::hidden();
    let go = |keep: bool| {
        super::frozen::OFF.set(!keep);
        let (out, resume) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let t = train_fn(&cfg, &inputs, out.path(), resume.path(), &Hooks::bar(&pb)).unwrap();
        let bpk = std::fs::read(out.path().join(Checkpoint::Last.file_name())).unwrap();
        (bpk, t.curve)
    };
    let (kept, recomputed) = (go(true), go(false));
    super::frozen::OFF.set(false);
    assert!(kept.0 == recomputed.0, "the weights differ");
    assert_eq!(kept.1, recomputed.1);
}

#[test]
fn caffe_batches_match_resnet_preprocessing() {
    let ds = toy_dataset(3, 7);
    let x = Preprocess::Caffe.fill(&ds, &[2, 0], None, 0);
    let len = ds.shape.image_len();
    let mut want = vec![0.0f32; len];
    resnet::caffe_preprocess(ds.image(0), ds.shape, &mut want).unwrap();
    assert_eq!(&x[len..], &want[..]);
    let r = Preprocess::for_model(ModelKind::B2, 0.5).fill(&ds, &[1], None, 0);
    assert_eq!(r[0], f32::from(ds.image(1)[0]) * 0.5);
    assert_eq!(
        Preprocess::for_model(ModelKind::Tl3, 0.5),
        Preprocess::Caffe
    );
}

#[test]
fn named_resnets_use_torchvisions_normalisation() {
    let ds = toy_dataset(2, 8);
    for kind in [
        ModelKind::Resnet18,
        ModelKind::Resnet34,
        ModelKind::Resnet50,
    ] {
        assert_eq!(Preprocess::for_model(kind, 0.5), Preprocess::Imagenet);
    }
    let x = Preprocess::Imagenet.fill(&ds, &[1], None, 0);
    let plane = (ds.shape.height * ds.shape.width) as usize;
    assert_eq!(x.len(), 3 * plane);
    let c = ds.shape.channels as usize;
    // Pixel 0 of each RGB plane (a grey image is replicated).
    for k in 0..3 {
        let v = f32::from(ds.image(1)[if c >= 3 { k } else { 0 }]);
        let want = (v / 255.0 - IMAGENET_MEAN[k]) / IMAGENET_STD[k];
        assert!((x[k * plane] - want).abs() < 1e-6, "{k}");
    }
}

/// Flips one byte of `path` in place, `back` bytes before its end.
fn flip_byte(path: &Path, back: usize) {
    let mut b = std::fs::read(path).unwrap();
    let at = b.len() - back;
    b[at] ^= 0x10;
    std::fs::write(path, b).unwrap();
}

/// A damaged checkpoint of an interrupted training (one byte flipped in a record, a truncated
/// `state.json`, or a state without digests) is discarded: the rerun trains from epoch 0 to the
/// uninterrupted run's bytes instead of resuming from damaged weights or failing every time.
#[test]
fn a_damaged_resume_checkpoint_is_discarded_and_training_restarts() {
    let ds = toy_dataset(200, 4);
    let cfg = toy_config(ModelKind::B1, 2);
    let clean = tempfile::tempdir().unwrap();
    let a = run(&cfg, &ds, clean.path(), None).unwrap();
    let truncate = |p: &Path| {
        let b = std::fs::read(p).unwrap();
        std::fs::write(p, &b[..b.len() / 2]).unwrap();
    };
    let undigested = |p: &Path| {
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        v.as_object_mut().unwrap().remove("digests").unwrap();
        std::fs::write(p, v.to_string()).unwrap();
    };
    type Damage<'a> = (&'a str, &'a dyn Fn(&Path));
    let damages: [Damage; 6] = [
        ("optim-00001.bpk", &|p| flip_byte(p, 3)),
        ("optim-00001.bpk", &|p| {
            flip_byte(p, std::fs::metadata(p).unwrap().len() as usize / 2)
        }),
        ("model-00001.bpk", &|p| flip_byte(p, 3)),
        ("best_bacc-00001.bpk", &|p| flip_byte(p, 3)),
        (RESUME_STATE, &truncate),
        (RESUME_STATE, &undigested),
    ];
    for (file, damage) in damages {
        let resume = tempfile::tempdir().unwrap();
        let err = run(&cfg, &ds, resume.path(), Some(1)).err().unwrap();
        assert!(matches!(err, MlError::Interrupted { epoch: 1 }), "{err}");
        damage(&resume.path().join(file));
        let c = run(&cfg, &ds, resume.path(), None).unwrap();
        assert_eq!(c.resumed_from_epoch, None, "{file}: resumed from damage");
        assert_eq!(a.rows, c.rows, "{file}");
        assert_same_files(&a, &c);
    }
    // An intact checkpoint still resumes.
    let resume = tempfile::tempdir().unwrap();
    run(&cfg, &ds, resume.path(), Some(1)).err().unwrap();
    let c = run(&cfg, &ds, resume.path(), None).unwrap();
    assert_eq!(c.resumed_from_epoch, Some(1));
    assert_same_files(&a, &c);
}

/// A full disk while training writes a checkpoint record or an export is an I/O error (exit
/// 1), not a bad weights file (exit 2). Writes to /dev/full fail with ENOSPC.
#[test]
fn a_full_disk_while_saving_weights_is_an_internal_error() {
    let ds = toy_dataset(200, 5);
    let cfg = toy_config(ModelKind::B1, 1);
    let train: Vec<usize> = (0..120).collect();
    let val: Vec<usize> = (120..160).collect();
    let inputs = TrainInputs {
        data: &ds,
        train: &train,
        val: &val,
        test: &[],
        augment: None,
        rescale: 1.0 / 255.0,
    };
    let pb = indicatif::ProgressBar::hidden();
    // Temporary names of: the optimiser and model records of the resume checkpoint, a best
    // record, then (in the model directory) the last record and a SafeTensors export.
    let cases = [
        (true, "optim-00001.tmp"),
        (true, "model-00001.tmp"),
        (true, "best_loss-00001.tmp"),
        (false, "last.tmp"),
        (false, "best_bacc.tmp"),
    ];
    for (in_resume, tmp) in cases {
        let (resume, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let dir = if in_resume { resume.path() } else { out.path() };
        std::os::unix::fs::symlink("/dev/full", dir.join(tmp)).unwrap();
        let err = train_fn(&cfg, &inputs, out.path(), resume.path(), &Hooks::bar(&pb))
            .err()
            .unwrap_or_else(|| panic!("{tmp}: no error"));
        assert!(
            matches!(&err, MlError::Io { source, .. } if source.raw_os_error() == Some(28)),
            "{tmp}: {err:?}"
        );
        assert!(!err.is_user_error(), "{tmp}");
        assert!(
            std::fs::symlink_metadata(dir.join(tmp)).is_err(),
            "{tmp} left behind"
        );
    }
}

/// A declared model with every kind of layer: learns, same seed ⇒ same bytes, resumes exactly,
/// predicts.
#[test]
fn a_declared_model_trains_deterministically_and_resumes_exactly() {
    let ds = toy_dataset(200, 6);
    let layers: crate::declared::Declared = serde_json::from_value(serde_json::json!({"layers": [
        {"conv2d": {"filters": 8, "stride": 2, "padding": "same"}},
        "batch_norm",
        {"residual": {"layers": [
            {"conv2d": {"filters": 8, "padding": "same"}},
            {"dropout": {"rate": 0.2}},
            {"conv2d": {"filters": 8, "padding": "same", "activation": "linear"}},
        ]}},
        {"max_pool": {"size": 3, "stride": 2}},
        {"avg_pool": {"size": 2}},
        "flatten",
        {"dense": {"units": 16, "activation": "tanh"}},
        {"dropout": {"rate": 0.3}},
        "batch_norm",
    ]}))
    .unwrap();
    let mut spec = ModelSpec::declared(layers.layers);
    spec.input = Shape::new(SIDE, SIDE, 3);
    assert!(
        models::validate(&spec).is_empty(),
        "{:?}",
        models::validate(&spec)
    );
    assert_eq!(models::dropout_layers(&spec).len(), 2);
    let mut cfg = TrainConfig::new(spec, 3e-3, 3);
    cfg.batch_size = 32;
    cfg.seed = 4;
    cfg.test_every = 0;
    let r1 = tempfile::tempdir().unwrap();
    let a = run(&cfg, &ds, r1.path(), None).unwrap();
    assert!(a.summary.best_val_bacc > 0.9, "{:?}", a.rows);
    assert_eq!(a.summary.params, models::param_count(&cfg.model));
    let r2 = tempfile::tempdir().unwrap();
    let b = run(&cfg, &ds, r2.path(), None).unwrap();
    assert_eq!(a.rows, b.rows);
    assert_same_files(&a, &b);
    let r3 = tempfile::tempdir().unwrap();
    let err = run(&cfg, &ds, r3.path(), Some(2)).err().unwrap();
    assert!(matches!(err, MlError::Interrupted { epoch: 2 }), "{err}");
    let c = run(&cfg, &ds, r3.path(), None).unwrap();
    assert_eq!(c.resumed_from_epoch, Some(2));
    assert_same_files(&a, &c);
    let p = predict(
        a.out.path(),
        Checkpoint::BestBacc,
        &ds,
        &[198, 199],
        1.0 / 255.0,
        DeviceChoice::Cpu,
    )
    .unwrap();
    assert!(p[0] < 0.5 && p[1] > 0.5, "{p:?}");
}

/// A batch as host values: images, masks, targets, labels.
fn host(b: Batch) -> (Vec<f32>, Vec<Vec<f32>>, Vec<i64>, Vec<u8>) {
    let f = |t: burn::prelude::TensorData| t.try_to_vec::<f32>().unwrap();
    (
        f(b.x.into_data()),
        b.masks.into_iter().map(|m| f(m.into_data())).collect(),
        b.y,
        b.labels,
    )
}

#[test]
fn prefetched_batches_equal_the_sequential_ones() {
    // B3: augmented images and two dropout masks per batch, all drawn on the producer thread.
    let ds = toy_dataset(200, 1);
    let cfg = toy_config(ModelKind::B3, 2);
    let train: Vec<usize> = (0..120).collect();
    let val: Vec<usize> = (120..160).collect();
    let aug = AugmentSpec::default();
    let inputs = TrainInputs {
        data: &ds,
        train: &train,
        val: &val,
        test: &[],
        augment: Some(&aug),
        rescale: 1.0 / 255.0,
    };
    let resume = tempfile::tempdir().unwrap();
    let pb = indicatif::ProgressBar::hidden();
    let hooks = Hooks::bar(&pb);
    let s = Session::new(&cfg, &inputs, resume.path(), &hooks).unwrap();
    let order = s.epoch_order(2);
    let sequential: Vec<_> = s.batches(&order, 2).map(host).collect();
    let mut ahead = Vec::new();
    prefetched(PREFETCH_DEPTH, s.batches(&order, 2), |b| {
        ahead.push(host(b));
        Ok::<_, ()>(())
    })
    .unwrap();
    assert_eq!(sequential.len(), 4); // 120 images in batches of 32
    assert_eq!(sequential[3].3.len(), 24);
    assert_eq!(sequential[0].1.len(), 2, "two dropout masks");
    assert!(sequential == ahead, "the prefetched batches differ");
    // Another epoch draws other masks and another order.
    let other: Vec<_> = s.batches(&s.epoch_order(3), 3).map(host).collect();
    assert!(other != sequential);
}
