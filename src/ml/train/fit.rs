//! The training loop: per-epoch shuffle, batches prepared ahead on a second thread, Adam steps,
//! validation, callbacks and the per-epoch resume checkpoint.

use crate::data::Dataset;
use crate::data::augment::AugmentSpec;
use crate::ml::backend::{self, MlError};
use crate::ml::curve::CurveRow;
use crate::ml::models::{self, DropoutMasks};
use burn::nn::loss::BinaryCrossEntropyLossConfig;
use burn::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use std::sync::mpsc::sync_channel;
use std::time::Instant;

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

/// One prepared training batch.
pub(super) struct Batch {
    pub(super) x: Vec<f32>,
    pub(super) y: Vec<i64>,
    pub(super) labels: Vec<u8>,
    pub(super) masks: Option<(Vec<f32>, Vec<f32>)>,
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
    if ds.labels.is_none() {
        p.push("data: the training dataset has no labels".into());
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

/// Trains `cfg.model` on `inputs`, writing the model directory into `out_dir` and a per-epoch
/// resume checkpoint into `resume_dir` (both must exist). If `resume_dir` already holds a
/// checkpoint of the same config, training continues after its epoch. `stop(epoch)` is asked
/// after each checkpoint; `true` ends the call with [`MlError::Interrupted`].
pub fn train(
    cfg: &TrainConfig,
    inputs: &TrainInputs,
    out_dir: &Path,
    resume_dir: &Path,
    progress: &indicatif::ProgressBar,
    stop: &dyn Fn(u32) -> bool,
) -> Result<Trained, MlError> {
    check_inputs(cfg, inputs)?;
    let base = backend::device(cfg.device)?;
    let ad = base.clone().autodiff();
    let ds = inputs.data;
    let all_labels = ds.labels.as_deref().unwrap_or_default();
    let spec = &cfg.model;
    let (c, h, w) = (
        spec.input.channels as usize,
        spec.input.height as usize,
        spec.input.width as usize,
    );
    let bs = cfg.batch_size;
    let dropout = if spec.kind.regularised() && spec.dropout > 0.0 {
        Some(spec.dropout as f32)
    } else {
        None
    };
    let bce = BinaryCrossEntropyLossConfig::new()
        .with_logits(true)
        .init(&ad);

    let prep = Preprocess::for_model(spec.kind, inputs.rescale);
    let c = prep.channels_out(c);
    let augment = prep.augment_spec(inputs.augment);
    let augment = augment.as_ref();
    let mut model = Net::init(spec, derive_seed(cfg.seed, STREAM_INIT, 0), &ad)?;
    let mut optim = build_optim(cfg);
    let resumed = read_resume(resume_dir, cfg, |st, model_bytes, optim_bytes| {
        let mp = resume_dir.join(&st.model_file);
        let model = Net::from_record_bytes(spec, model_bytes, &mp, &ad)?;
        let op = resume_dir.join(&st.optim_file);
        let optim = build_optim(cfg)
            .from_bytes(burn::tensor::Bytes::from_bytes_vec(optim_bytes))
            .map_err(record_err(&op))?;
        Ok((model, optim))
    })?;
    let resumed_from_epoch = resumed.as_ref().map(|(st, _)| st.epoch);
    let mut st = match resumed {
        Some((st, (m, o))) => {
            model = m;
            optim = o;
            st
        }
        None => ResumeState {
            format_version: FORMAT_VERSION,
            config: cfg.clone(),
            epoch: 0,
            lr: cfg.lr,
            rows: Vec::new(),
            epoch_seconds: Vec::new(),
            plateau: Watch::default(),
            early: Watch::default(),
            best_loss: Best::default(),
            best_bacc: Best::default(),
            stopped_early: false,
            model_file: String::new(),
            optim_file: String::new(),
            digests: Default::default(),
        },
    };

    let mut session_images = 0usize;
    let mut session_train_secs = 0.0f64;
    progress.set_length(inputs.train.len() as u64);

    while st.epoch < cfg.epochs && !st.stopped_early {
        let epoch = st.epoch + 1;
        let t_epoch = Instant::now();
        let lr = st.lr;
        let mut order = inputs.train.to_vec();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(derive_seed(
            cfg.seed,
            STREAM_SHUFFLE,
            epoch as u64,
        )));
        progress.set_position(0);

        // Training pass: a producer thread prepares (augments) batches ahead of the model.
        let mut train_logits: Vec<f32> = Vec::with_capacity(order.len());
        let mut train_labels: Vec<u8> = Vec::with_capacity(order.len());
        let mut loss_sum = 0.0f64;
        let t_train = Instant::now();
        model = std::thread::scope(|scope| -> Result<Net, MlError> {
            // The model moves in and out so the optimiser owns the only handle to its tensors.
            let mut model = model;
            let (tx, rx) = sync_channel::<Batch>(3);
            let order = &order;
            scope.spawn(move || {
                let mut mask_rng =
                    ChaCha8Rng::seed_from_u64(derive_seed(cfg.seed, STREAM_DROPOUT, epoch as u64));
                for chunk in order.chunks(bs) {
                    let n = chunk.len();
                    let x = prep.fill(ds, chunk, augment, epoch as u64);
                    let labels: Vec<u8> = chunk.iter().map(|&i| all_labels[i]).collect();
                    let y = labels.iter().map(|&l| l as i64).collect();
                    let masks = dropout.map(|rate| {
                        let scale = 1.0 / (1.0 - rate);
                        let mut draw = || -> Vec<f32> {
                            (0..n * models::HIDDEN)
                                .map(|_| {
                                    if mask_rng.random::<f32>() < rate {
                                        0.0
                                    } else {
                                        scale
                                    }
                                })
                                .collect()
                        };
                        let m1 = draw();
                        (m1, draw())
                    });
                    if tx
                        .send(Batch {
                            x,
                            y,
                            labels,
                            masks,
                        })
                        .is_err()
                    {
                        break;
                    }
                }
            });
            for b in rx {
                let n = b.labels.len();
                let x = Tensor::<4>::from_data(TensorData::new(b.x, [n, c, h, w]), &ad);
                let y = Tensor::<2, Int>::from_data(TensorData::new(b.y, [n, 1]), &ad);
                let masks = b.masks.map(|(m1, m2)| DropoutMasks {
                    after_fc1: Tensor::from_data(TensorData::new(m1, [n, models::HIDDEN]), &ad),
                    after_fc2: Tensor::from_data(TensorData::new(m2, [n, models::HIDDEN]), &ad),
                });
                let logits = model.forward(x, masks);
                let loss = bce.forward(logits.clone(), y);
                model = model.step(&mut optim, lr, loss.backward());
                let data = logits.into_data();
                let v = data.as_slice::<f32>().map_err(device_err)?;
                let batch_loss: f64 = v
                    .iter()
                    .zip(&b.labels)
                    .map(|(&x, &y)| bce_of_logit(x, y))
                    .sum();
                loss_sum += batch_loss;
                train_logits.extend_from_slice(v);
                train_labels.extend_from_slice(&b.labels);
                let done = train_labels.len();
                let rate = done as f64 / t_train.elapsed().as_secs_f64().max(1e-9);
                progress.set_position(done as u64);
                progress.set_message(format!(
                    "epoch {epoch}/{} loss {:.4} {rate:.0} img/s",
                    cfg.epochs,
                    loss_sum / done as f64
                ));
            }
            Ok(model)
        })?;
        base.sync().map_err(device_err)?;
        let train_secs = t_train.elapsed().as_secs_f64();
        session_images += order.len();
        session_train_secs += train_secs;
        let (train_loss, train_acc, train_bacc) = score(&train_logits, &train_labels);

        // Validation (and test) with the inference copy: no autodiff, no dropout.
        let eval = model.valid();
        let labels_of = |idx: &[usize]| idx.iter().map(|&i| all_labels[i]).collect::<Vec<u8>>();
        let val_logits = infer_logits(&eval, ds, inputs.val, prep, &base, INFER_BATCH)?;
        let (val_loss, val_acc, val_bacc) = score(&val_logits, &labels_of(inputs.val));
        let mut row = CurveRow {
            epoch,
            lr,
            train_loss,
            train_acc,
            train_bacc,
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
        if cfg.test_every > 0 && !inputs.test.is_empty() && (epoch % cfg.test_every == 0 || last) {
            let t = infer_logits(&eval, ds, inputs.test, prep, &base, INFER_BATCH)?;
            row.test_bacc = Some(score(&t, &labels_of(inputs.test)).2);
        }

        // Best checkpoints, written into the resume dir under per-epoch names.
        if Monitor::ValLoss.improves(val_loss, st.best_loss.value, 0.0) {
            let name = format!("best_loss-{epoch:05}.bpk");
            st.written(name.clone(), save_record(&model, &resume_dir.join(&name))?);
            st.best_loss = Best {
                value: Some(val_loss),
                epoch,
                file: Some(name),
            };
        }
        if Monitor::ValBacc.improves(val_bacc, st.best_bacc.value, 0.0) {
            let name = format!("best_bacc-{epoch:05}.bpk");
            st.written(name.clone(), save_record(&model, &resume_dir.join(&name))?);
            st.best_bacc = Best {
                value: Some(val_bacc),
                epoch,
                file: Some(name),
            };
        }

        if let Some(pl) = &cfg.plateau {
            let current = pl.monitor.value(&row);
            if pl.monitor.improves(current, st.plateau.best, pl.min_delta) {
                st.plateau.best = Some(current);
                st.plateau.wait = 0;
            } else {
                st.plateau.wait += 1;
                if st.plateau.wait >= pl.patience && st.lr > pl.min_lr {
                    st.lr = (st.lr * pl.factor).max(pl.min_lr);
                    st.plateau.wait = 0;
                    tracing::info!(epoch, lr = st.lr, "reducing learning rate on plateau");
                }
            }
        }

        st.epoch_seconds.push(t_epoch.elapsed().as_secs_f64());
        epoch_line(
            progress,
            &row,
            cfg.epochs,
            order.len() as f64 / train_secs,
            &st.epoch_seconds,
        );
        tracing::info!(
            epoch,
            train_loss,
            val_loss,
            val_bacc,
            test_bacc = row.test_bacc,
            "epoch done"
        );
        st.rows.push(row);
        st.epoch = epoch;

        // Resume checkpoint: records first, then the state file that names them and holds
        // their digests (commit).
        st.model_file = format!("model-{epoch:05}.bpk");
        st.optim_file = format!("optim-{epoch:05}.bpk");
        let md = save_record(&model, &resume_dir.join(&st.model_file))?;
        st.written(st.model_file.clone(), md);
        let op = resume_dir.join(&st.optim_file);
        let od = write_record(&op, &optim.into_bytes().map_err(encode_err(&op))?)?;
        st.written(st.optim_file.clone(), od);
        st.prune_digests();
        write_json(&resume_dir.join(RESUME_STATE), &st)?;
        prune_resume(resume_dir, &st)?;

        let finished = st.epoch >= cfg.epochs || st.stopped_early;
        if !finished && stop(epoch) {
            return Err(MlError::Interrupted { epoch });
        }
    }

    let summary = finish(cfg, &st, &model, resume_dir, out_dir, &base, prep)?;
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

/// One line per epoch where no bar is drawn (output piped to a log or `tee`): the bar's
/// message would otherwise never be seen, and a long training would print nothing for minutes.
fn epoch_line(
    progress: &indicatif::ProgressBar,
    row: &CurveRow,
    epochs: u32,
    img_per_s: f64,
    epoch_seconds: &[f64],
) {
    if !progress.is_hidden() {
        return;
    }
    let left = epochs.saturating_sub(row.epoch) as f64;
    let mean = epoch_seconds.iter().sum::<f64>() / epoch_seconds.len().max(1) as f64;
    let eta = std::time::Duration::from_secs((left * mean).round() as u64);
    crate::outln!(
        "  {} epoch {}/{epochs}: loss {:.4}, val loss {:.4}, val balanced accuracy {:.4}, \
         {img_per_s:.0} img/s, ETA {}",
        progress.prefix(),
        row.epoch,
        row.train_loss,
        row.val_loss,
        row.val_bacc,
        humantime::format_duration(eta)
    );
}
