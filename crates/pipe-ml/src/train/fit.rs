//! The training loop: per-epoch shuffle, batches prepared ahead on a second thread
//! ([`prefetch`]), Adam steps, validation, callbacks and the per-epoch resume checkpoint.

use crate::backend::{self, DeviceChoice, MlError};
use crate::curve::CurveRow;
use crate::models;
use burn::nn::loss::{
    BinaryCrossEntropyLoss, BinaryCrossEntropyLossConfig, CrossEntropyLoss, CrossEntropyLossConfig,
};
use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use pipe_data::Dataset;
use pipe_data::augment::AugmentSpec;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::Path;
use std::time::Instant;

use super::prefetch::{PREFETCH_DEPTH, prefetched};
use super::*;

/// The data a run trains on: one dataset and index lists into it.
pub struct TrainInputs<'a> {
    pub data: &'a Dataset,
    pub train: &'a [usize],
    pub val: &'a [usize],
    pub test: &'a [usize],
    /// Augmentation of training batches (validation/test batches are never augmented).
    pub augment: Option<&'a AugmentSpec>,
    /// Pixel scale of B models (the report: 1/255); TL models ignore it (caffe preprocessing).
    pub rescale: f32,
}

/// What [`train`] returns: the model's summary and the facts of this execution, which differ
/// between runs of the same model and so stay out of the model directory.
#[derive(Clone, Debug, PartialEq)]
pub struct Trained {
    pub summary: TrainSummary,
    /// The learning curve, one row per epoch run (as in `curve.csv`): the caller draws it.
    pub curve: Vec<CurveRow>,
    /// Training throughput of this invocation (forward + backward + Adam, data loading overlapped).
    pub images_per_second: f64,
    /// Wall time of all epochs, resumed ones included.
    pub seconds: f64,
    /// The checkpoint's epoch this invocation continued from.
    pub resumed_from_epoch: Option<u32>,
}

/// A seed for one purpose: splitmix64 over (seed, stream, epoch).
pub(super) fn derive_seed(seed: u64, stream: u64, epoch: u64) -> u64 {
    let mut z = seed
        ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ epoch.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
pub(super) const STREAM_INIT: u64 = 1;
pub(super) const STREAM_SHUFFLE: u64 = 2;
pub(super) const STREAM_DROPOUT: u64 = 3;

/// One training batch, prepared and on the device.
pub(super) struct Batch {
    /// The images, `[n, c, h, w]`.
    pub(super) x: Tensor<4>,
    /// One dropout mask per dropout layer ([`models::dropout_layers`]), `[n, width]`.
    pub(super) masks: Vec<Tensor<2>>,
    pub(super) y: Vec<i64>,
    pub(super) labels: Vec<u8>,
    /// The images' indices in the dataset.
    pub(super) indices: Vec<usize>,
}

/// Checks the inputs against the config; every problem at once.
pub(super) fn check_inputs(cfg: &TrainConfig, inputs: &TrainInputs) -> Result<(), MlError> {
    let mut p = validate(cfg);
    let ds = inputs.data;
    if ds.shape != cfg.model.input {
        p.push(format!(
            "data: images are {} but the model expects {}",
            ds.shape, cfg.model.input
        ));
    }
    match &ds.labels {
        None => p.push("data: the training dataset has no labels".into()),
        Some(l) => {
            if ds.num_classes() != cfg.model.classes {
                p.push(format!(
                    "data: {} classes but the model has {}",
                    ds.num_classes(),
                    cfg.model.classes
                ));
            } else if let Some(bad) = l.iter().find(|&&v| v as usize >= cfg.model.classes) {
                p.push(format!(
                    "data: label {bad} is beyond the model's {} classes",
                    cfg.model.classes
                ));
            }
        }
    }
    for (name, idx) in [
        ("train", inputs.train),
        ("val", inputs.val),
        ("test", inputs.test),
    ] {
        if name != "test" && idx.is_empty() {
            p.push(format!("{name}: the split is empty"));
        }
        if let Some(&bad) = idx.iter().find(|&&i| i >= ds.len()) {
            p.push(format!(
                "{name}: index {bad} is out of range for {} images",
                ds.len()
            ));
        }
    }
    if !(inputs.rescale.is_finite() && inputs.rescale > 0.0) {
        p.push(format!(
            "rescale: {} must be a positive number",
            inputs.rescale
        ));
    }
    if p.is_empty() {
        Ok(())
    } else {
        Err(MlError::InvalidConfig(p))
    }
}

/// What the caller of [`train`] sees of it while it runs, and how it may stop it.
pub struct Hooks<'a> {
    /// Moved through each epoch's batches (hidden where no terminal shows it).
    pub progress: &'a indicatif::ProgressBar,
    /// Told each finished epoch, after its checkpoint is written.
    pub epoch_done: &'a (dyn Fn(&EpochDone) + Sync),
    /// Asked after each epoch's checkpoint; `true` ends the call with [`MlError::Interrupted`].
    pub stop: &'a (dyn Fn(u32) -> bool + Sync),
}

impl<'a> Hooks<'a> {
    /// A bar and nothing else: no epoch reports, never stopped.
    pub fn bar(progress: &'a indicatif::ProgressBar) -> Self {
        fn ignore(_: &EpochDone) {}
        fn never(_: u32) -> bool {
            false
        }
        Self {
            progress,
            epoch_done: &ignore,
            stop: &never,
        }
    }
}

/// One finished epoch, as a person follows a training: its curve row, throughput, device and
/// the time left. Displayed as `epoch 3/15: loss 0.6012, val loss …, 812 img/s on cpu, ETA 2m`.
#[derive(Clone, Debug)]
pub struct EpochDone {
    pub row: CurveRow,
    pub epochs: u32,
    pub images_per_second: f64,
    /// Where the epoch ran.
    pub device: DeviceChoice,
    /// Epochs left times the mean epoch time so far.
    pub eta: std::time::Duration,
    /// An epoch of the checkpoint a resumed training started from, told again (not run).
    pub replayed: bool,
}

impl std::fmt::Display for EpochDone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.row;
        write!(
            f,
            "epoch {}/{}: loss {:.4}, val loss {:.4}, val balanced accuracy {:.4}, {:.0} img/s on \
             {}, ETA {}",
            r.epoch,
            self.epochs,
            r.train_loss,
            r.val_loss,
            r.val_bacc,
            self.images_per_second,
            self.device,
            humantime::format_duration(self.eta)
        )
    }
}

/// What one training pass over the epoch's shuffled images gave.
struct Pass {
    images: usize,
    seconds: f64,
    loss: f64,
    acc: f64,
    bacc: f64,
}

/// The training loss: BCE-with-logits on one unit (two classes, the report's head), softmax
/// cross-entropy over N > 2 units.
enum Loss {
    Binary(BinaryCrossEntropyLoss),
    Softmax(CrossEntropyLoss),
}

impl Loss {
    fn forward(&self, logits: Tensor<2>, y: Vec<i64>, device: &Device) -> Tensor<1> {
        let n = y.len();
        match self {
            Loss::Binary(bce) => bce.forward(
                logits,
                Tensor::from_data(TensorData::new(y, [n, 1]), device),
            ),
            Loss::Softmax(ce) => {
                ce.forward(logits, Tensor::from_data(TensorData::new(y, [n]), device))
            }
        }
    }
}

/// The set-up every epoch shares: devices, loss, preprocessing and the data.
pub(super) struct Session<'a> {
    cfg: &'a TrainConfig,
    inputs: &'a TrainInputs<'a>,
    resume_dir: &'a Path,
    hooks: &'a Hooks<'a>,
    base: Device,
    ad: Device,
    loss: Loss,
    /// Output units of the model (1: sigmoid; N classes: softmax).
    units: usize,
    prep: Preprocess,
    augment: Option<AugmentSpec>,
    /// Input planes after preprocessing, height, width.
    chw: (usize, usize, usize),
    /// Per dropout layer: rate and values per image.
    dropout: Vec<(f32, usize)>,
    /// The frozen layers' outputs kept across epochs, where that applies ([`frozen`]).
    frozen: Option<FrozenOutputs>,
}

/// Trains `cfg.model` on `inputs`, writing the model directory into `out_dir` and a per-epoch
/// resume checkpoint into `resume_dir` (both must exist). If `resume_dir` already holds a
/// checkpoint of the same config, training continues after its epoch.
pub fn train(
    cfg: &TrainConfig,
    inputs: &TrainInputs,
    out_dir: &Path,
    resume_dir: &Path,
    hooks: &Hooks,
) -> Result<Trained, MlError> {
    check_inputs(cfg, inputs)?;
    memory::check_cpu_fits(cfg, cfg.batch_size.min(inputs.train.len()))?;
    let mut s = Session::new(cfg, inputs, resume_dir, hooks)?;
    let (mut model, mut optim, mut st, resumed_from_epoch) = s.start()?;
    s.frozen = s.plan_frozen(&model);
    // A resumed training tells its checkpoint's epochs again, so that whoever follows the
    // curve (a search's pruner) sees all of it, and may stop the training right there.
    if resumed_from_epoch.is_some() && st.epoch < cfg.epochs && !st.stopped_early {
        for row in &st.rows {
            (hooks.epoch_done)(&EpochDone {
                row: row.clone(),
                epochs: cfg.epochs,
                images_per_second: 0.0,
                device: cfg.device,
                eta: std::time::Duration::ZERO,
                replayed: true,
            });
            if (hooks.stop)(row.epoch) {
                return Err(MlError::Interrupted { epoch: st.epoch });
            }
        }
    }
    let (mut session_images, mut session_train_secs) = (0usize, 0.0f64);
    hooks.progress.set_length(inputs.train.len() as u64);
    while st.epoch < cfg.epochs && !st.stopped_early {
        let epoch = st.epoch + 1;
        let t_epoch = Instant::now();
        let lr = st.lr;
        let pass;
        (model, pass) = s.train_epoch(model, &mut optim, epoch, lr)?;
        session_images += pass.images;
        session_train_secs += pass.seconds;
        let row = s.validate(&model, &mut st, epoch, lr, &pass)?;
        s.save_best(&model, &mut st, &row)?;
        reduce_on_plateau(cfg, &mut st, &row);
        st.epoch_seconds.push(t_epoch.elapsed().as_secs_f64());
        (hooks.epoch_done)(&epoch_done(cfg, &row, &pass, &st.epoch_seconds));
        tracing::info!(
            epoch,
            train_loss = row.train_loss,
            val_loss = row.val_loss,
            val_bacc = row.val_bacc,
            test_bacc = row.test_bacc,
            "epoch done"
        );
        st.rows.push(row);
        st.epoch = epoch;
        s.checkpoint(&model, &optim, &mut st)?;
        let finished = st.epoch >= cfg.epochs || st.stopped_early;
        if !finished && (hooks.stop)(epoch) {
            return Err(MlError::Interrupted { epoch });
        }
    }
    let summary = finish(cfg, &st, &model, resume_dir, out_dir, &s.base, s.prep)?;
    Ok(Trained {
        summary,
        curve: st.rows,
        images_per_second: if session_train_secs > 0.0 {
            session_images as f64 / session_train_secs
        } else {
            0.0
        },
        seconds: st.epoch_seconds.iter().sum(),
        resumed_from_epoch,
    })
}

impl<'a> Session<'a> {
    pub(super) fn new(
        cfg: &'a TrainConfig,
        inputs: &'a TrainInputs<'a>,
        resume_dir: &'a Path,
        hooks: &'a Hooks<'a>,
    ) -> Result<Self, MlError> {
        let base = backend::device(cfg.device)?;
        let ad = base.clone().autodiff();
        let spec = &cfg.model;
        let dropout = models::dropout_layers(spec)
            .into_iter()
            .map(|(rate, width)| (rate as f32, width))
            .collect();
        let units = spec.output_units();
        let loss = if units == 1 {
            Loss::Binary(
                BinaryCrossEntropyLossConfig::new()
                    .with_logits(true)
                    .init(&ad),
            )
        } else {
            Loss::Softmax(CrossEntropyLossConfig::new().init(&ad))
        };
        let prep = Preprocess::for_model(spec.kind, inputs.rescale);
        Ok(Self {
            chw: prep.input_dims(spec.input),
            augment: prep.augment_spec(inputs.augment),
            cfg,
            inputs,
            resume_dir,
            hooks,
            base,
            ad,
            loss,
            units,
            prep,
            dropout,
            frozen: None,
        })
    }

    /// The store of frozen layers' outputs for training `model`, where it applies.
    fn plan_frozen(&self, model: &Net) -> Option<FrozenOutputs> {
        let (c, h, w) = self.chw;
        let image = Tensor::zeros([1, c, h, w], &self.base);
        let scores_test = self.cfg.test_every > 0 && !self.inputs.test.is_empty();
        FrozenOutputs::plan(
            model,
            self.inputs,
            self.augment.is_some(),
            scores_test,
            image,
        )
    }

    /// The model, optimiser and state to start from: the checkpoint's in `resume_dir` when it
    /// holds one of this config, else fresh ones; and the epoch resumed from.
    fn start(&self) -> Result<(Net, ModuleOptimizer, ResumeState, Option<u32>), MlError> {
        let (cfg, spec, ad, dir) = (self.cfg, &self.cfg.model, &self.ad, self.resume_dir);
        let model = Net::init(spec, derive_seed(cfg.seed, STREAM_INIT, 0), ad)?;
        let optim = build_optim(cfg);
        let resumed = read_resume(dir, cfg, |st, model_bytes, optim_bytes| {
            let mp = dir.join(&st.model_file);
            let model = Net::from_record_bytes(spec, model_bytes, &mp, ad)?;
            let op = dir.join(&st.optim_file);
            let optim = build_optim(cfg)
                .from_bytes(burn::tensor::Bytes::from_bytes_vec(optim_bytes))
                .map_err(record_err(&op))?;
            Ok((model, optim))
        })?;
        Ok(match resumed {
            Some((st, (m, o))) => {
                let from = Some(st.epoch);
                (m, o, st, from)
            }
            None => (model, optim, ResumeState::fresh(cfg), None),
        })
    }

    /// This epoch's order of the training images.
    pub(super) fn epoch_order(&self, epoch: u32) -> Vec<usize> {
        let mut order = self.inputs.train.to_vec();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(derive_seed(
            self.cfg.seed,
            STREAM_SHUFFLE,
            epoch as u64,
        )));
        order
    }

    /// One pass over the training images in this epoch's shuffled order: a producer thread
    /// prepares the batches ahead of the model ([`prefetched`]), which takes an Adam step per
    /// batch.
    fn train_epoch(
        &self,
        model: Net,
        optim: &mut ModuleOptimizer,
        epoch: u32,
        lr: f64,
    ) -> Result<(Net, Pass), MlError> {
        let order = self.epoch_order(epoch);
        let progress = self.hooks.progress;
        progress.set_position(0);
        let mut logits_all: Vec<f32> = Vec::with_capacity(order.len());
        let mut labels_all: Vec<u8> = Vec::with_capacity(order.len());
        let mut loss_sum = 0.0f64;
        let t_train = Instant::now();
        // The model moves in and out of each step so the optimiser owns the only handle to its
        // tensors.
        let mut current = Some(model);
        prefetched(PREFETCH_DEPTH, self.batches(&order, epoch), |mut b| {
            let model = current.take().expect("every step puts the model back");
            let labels = std::mem::take(&mut b.labels);
            let (model, v) = self.step(model, optim, lr, b)?;
            current = Some(model);
            loss_sum += v
                .chunks(self.units)
                .zip(&labels)
                .map(|(x, &y)| loss_of_logits(x, y))
                .sum::<f64>();
            logits_all.extend_from_slice(&v);
            labels_all.extend_from_slice(&labels);
            let done = labels_all.len();
            let rate = done as f64 / t_train.elapsed().as_secs_f64().max(1e-9);
            progress.set_position(done as u64);
            progress.set_message(format!(
                "epoch {epoch}/{} loss {:.4} {rate:.0} img/s on {}",
                self.cfg.epochs,
                loss_sum / done as f64,
                self.cfg.device
            ));
            Ok(())
        })?;
        let model = current.expect("every step puts the model back");
        self.base.sync().map_err(device_err)?;
        let (loss, acc, bacc) = score(&logits_all, &labels_all, self.units);
        let pass = Pass {
            images: order.len(),
            seconds: t_train.elapsed().as_secs_f64(),
            loss,
            acc,
            bacc,
        };
        Ok((model, pass))
    }

    /// One Adam step on `b`: the updated model and the batch's logits. On a cubecl device an
    /// allocation that fails for want of memory, whether the backend says so in an error or in
    /// a panic, becomes [`MlError::TooLarge`] (on the CPU, [`memory::check_cpu_fits`] stands
    /// for it before training).
    fn step(
        &self,
        model: Net,
        optim: &mut ModuleOptimizer,
        lr: f64,
        b: Batch,
    ) -> Result<(Net, Vec<f32>), MlError> {
        let n = b.y.len();
        let run = || -> Result<(Net, Vec<f32>), MlError> {
            let logits = match &self.frozen {
                Some(f) => f.train_logits(&model, b.x, &b.indices, &self.base)?,
                None => model.forward(b.x, b.masks),
            };
            let loss = self.loss.forward(logits.clone(), b.y, &self.ad);
            let model = model.step(optim, lr, loss.backward());
            let data = logits.into_data();
            let v = data.as_slice::<f32>().map_err(device_err)?.to_vec();
            Ok((model, v))
        };
        let device = self.cfg.device;
        if device == DeviceChoice::Cpu {
            return run();
        }
        let memory = || memory::device_memory(&self.base);
        match catch_unwind(AssertUnwindSafe(run)) {
            Ok(Err(MlError::Device(m))) => Err(memory::step_error(device, memory(), n, m)),
            Ok(r) => r,
            Err(payload) => {
                let m = memory::panic_message(payload.as_ref());
                if !memory::says_out_of_memory(&m) {
                    resume_unwind(payload);
                }
                Err(memory::step_error(device, memory(), n, m))
            }
        }
    }

    /// The batches of `order`, in order: augmented, with their dropout masks drawn from the
    /// epoch's stream, on the device. [`Session::train_epoch`] runs it on the producer thread;
    /// every draw happens here in batch order, so the batches do not depend on timing.
    pub(super) fn batches<'s>(
        &'s self,
        order: &'s [usize],
        epoch: u32,
    ) -> impl Iterator<Item = Batch> + Send + 's {
        let mut mask_rng =
            ChaCha8Rng::seed_from_u64(derive_seed(self.cfg.seed, STREAM_DROPOUT, epoch as u64));
        order
            .chunks(self.cfg.batch_size)
            .map(move |chunk| self.batch(chunk, epoch, &mut mask_rng))
    }

    fn batch(&self, chunk: &[usize], epoch: u32, mask_rng: &mut ChaCha8Rng) -> Batch {
        let ds = self.inputs.data;
        let all_labels = ds.labels.as_deref().unwrap_or_default();
        let (c, h, w) = self.chw;
        let n = chunk.len();
        let x = self
            .prep
            .fill(ds, chunk, self.augment.as_ref(), epoch as u64);
        let labels: Vec<u8> = chunk.iter().map(|&i| all_labels[i]).collect();
        let y = labels.iter().map(|&l| l as i64).collect();
        let masks = self
            .dropout
            .iter()
            .map(|&(rate, width)| {
                let scale = 1.0 / (1.0 - rate);
                let m = (0..n * width)
                    .map(|_| {
                        if mask_rng.random::<f32>() < rate {
                            0.0
                        } else {
                            scale
                        }
                    })
                    .collect();
                Tensor::from_data(TensorData::new(m, [n, width]), &self.ad)
            })
            .collect();
        Batch {
            x: Tensor::from_data(TensorData::new(x, [n, c, h, w]), &self.ad),
            masks,
            y,
            labels,
            indices: chunk.to_vec(),
        }
    }

    /// Validation (and, when due, the test split) with the inference copy: no autodiff, no
    /// dropout. Early stopping watches the row it makes.
    fn validate(
        &self,
        model: &Net,
        st: &mut ResumeState,
        epoch: u32,
        lr: f64,
        pass: &Pass,
    ) -> Result<CurveRow, MlError> {
        let (cfg, inputs) = (self.cfg, self.inputs);
        let ds = inputs.data;
        let all_labels = ds.labels.as_deref().unwrap_or_default();
        let eval = model.inference();
        let labels_of = |idx: &[usize]| idx.iter().map(|&i| all_labels[i]).collect::<Vec<u8>>();
        let logits_of = |idx: &[usize]| match &self.frozen {
            Some(f) => f.infer_logits(model, &eval, ds, idx, self.prep, &self.base, INFER_BATCH),
            None => infer_logits(&eval, ds, idx, self.prep, &self.base, INFER_BATCH),
        };
        let val_logits = logits_of(inputs.val)?;
        let (val_loss, val_acc, val_bacc) = score(&val_logits, &labels_of(inputs.val), self.units);
        let mut row = CurveRow {
            epoch,
            lr,
            train_loss: pass.loss,
            train_acc: pass.acc,
            train_bacc: pass.bacc,
            val_loss,
            val_acc,
            val_bacc,
            test_bacc: None,
        };
        if let Some(es) = &cfg.early_stopping {
            let current = es.monitor.value(&row);
            if es.monitor.improves(current, st.early.best, es.min_delta) {
                st.early.best = Some(current);
                st.early.wait = 0;
            } else {
                st.early.wait += 1;
                if st.early.wait >= es.patience {
                    st.stopped_early = true;
                }
            }
        }
        let last = epoch == cfg.epochs || st.stopped_early;
        if cfg.test_every > 0
            && !inputs.test.is_empty()
            && (epoch.is_multiple_of(cfg.test_every) || last)
        {
            let t = logits_of(inputs.test)?;
            row.test_bacc = Some(score(&t, &labels_of(inputs.test), self.units).2);
        }
        Ok(row)
    }

    /// Best checkpoints (lowest val loss, highest val balanced accuracy), written into the
    /// resume dir under per-epoch names.
    fn save_best(&self, model: &Net, st: &mut ResumeState, row: &CurveRow) -> Result<(), MlError> {
        let epoch = row.epoch;
        if Monitor::ValLoss.improves(row.val_loss, st.best_loss.value, 0.0) {
            let name = format!("best_loss-{epoch:05}.bpk");
            st.written(
                name.clone(),
                save_record(model, &self.resume_dir.join(&name))?,
            );
            st.best_loss = Best {
                value: Some(row.val_loss),
                epoch,
                file: Some(name),
            };
        }
        if Monitor::ValBacc.improves(row.val_bacc, st.best_bacc.value, 0.0) {
            let name = format!("best_bacc-{epoch:05}.bpk");
            st.written(
                name.clone(),
                save_record(model, &self.resume_dir.join(&name))?,
            );
            st.best_bacc = Best {
                value: Some(row.val_bacc),
                epoch,
                file: Some(name),
            };
        }
        Ok(())
    }

    /// The resume checkpoint of the epoch `st` ends with: records first, then the state file
    /// that names them and holds their digests (commit).
    fn checkpoint(
        &self,
        model: &Net,
        optim: &ModuleOptimizer,
        st: &mut ResumeState,
    ) -> Result<(), MlError> {
        let (dir, epoch) = (self.resume_dir, st.epoch);
        st.model_file = format!("model-{epoch:05}.bpk");
        st.optim_file = format!("optim-{epoch:05}.bpk");
        let md = save_record(model, &dir.join(&st.model_file))?;
        st.written(st.model_file.clone(), md);
        let op = dir.join(&st.optim_file);
        let od = write_record(&op, &optim.into_bytes().map_err(encode_err(&op))?)?;
        st.written(st.optim_file.clone(), od);
        st.prune_digests();
        write_json(&dir.join(RESUME_STATE), st)?;
        prune_resume(dir, st)
    }
}

/// Keras' `ReduceLROnPlateau` after an epoch: the learning rate of the next one.
fn reduce_on_plateau(cfg: &TrainConfig, st: &mut ResumeState, row: &CurveRow) {
    let Some(pl) = &cfg.plateau else {
        return;
    };
    let current = pl.monitor.value(row);
    if pl.monitor.improves(current, st.plateau.best, pl.min_delta) {
        st.plateau.best = Some(current);
        st.plateau.wait = 0;
    } else {
        st.plateau.wait += 1;
        if st.plateau.wait >= pl.patience && st.lr > pl.min_lr {
            st.lr = (st.lr * pl.factor).max(pl.min_lr);
            st.plateau.wait = 0;
            tracing::info!(
                epoch = row.epoch,
                lr = st.lr,
                "reducing learning rate on plateau"
            );
        }
    }
}

/// The report of a finished epoch; the time left is the mean epoch time so far times the
/// epochs left.
fn epoch_done(cfg: &TrainConfig, row: &CurveRow, pass: &Pass, epoch_seconds: &[f64]) -> EpochDone {
    let epochs = cfg.epochs;
    let left = epochs.saturating_sub(row.epoch) as f64;
    let mean = epoch_seconds.iter().sum::<f64>() / epoch_seconds.len().max(1) as f64;
    EpochDone {
        row: row.clone(),
        epochs,
        images_per_second: pass.images as f64 / pass.seconds,
        device: cfg.device,
        eta: std::time::Duration::from_secs((left * mean).round() as u64),
        replayed: false,
    }
}
