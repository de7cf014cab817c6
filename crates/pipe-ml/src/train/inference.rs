//! Batched inference without autodiff (validation during training, `predict`), and the
//! loss/accuracy scores of logits.

use crate::backend::{self, DeviceChoice, MlError};
use crate::models::{self};
use crate::{metrics, multiclass};
use burn::prelude::*;
use pipe_data::Dataset;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;

use super::*;

/// Binary cross-entropy of one logit, computed stably (what BCE-with-logits computes).
pub(super) fn bce_of_logit(logit: f32, label: u8) -> f64 {
    let x = logit as f64;
    let y = label as f64;
    x.max(0.0) - x * y + (-x.abs()).exp().ln_1p()
}

pub(super) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The loss of one sample's logits (`units` of them): binary cross-entropy of one logit,
/// cross-entropy of a softmax row beyond.
pub(super) fn loss_of_logits(logits: &[f32], label: u8) -> f64 {
    match logits {
        [x] => bce_of_logit(*x, label),
        row => multiclass::cross_entropy_of_logits(row, label),
    }
}

/// Probabilities of `logits` with `units` values per sample: the sigmoid of one logit (the
/// probability of class 1), or a softmax row over the classes.
pub(super) fn probabilities(logits: Vec<f32>, units: usize) -> Vec<f32> {
    if units == 1 {
        logits.into_iter().map(sigmoid).collect()
    } else {
        multiclass::softmax_rows(&logits, units)
    }
}

/// Runs the model (no autodiff) over `indices` in batches. Returns the logits in input order.
pub(super) fn infer_logits(
    model: &Net,
    ds: &Dataset,
    indices: &[usize],
    prep: Preprocess,
    device: &Device,
    batch: usize,
) -> Result<Vec<f32>, MlError> {
    infer_rows(ds, indices, prep, device, batch, |x| model.infer(x))
}

/// Runs `f` (a forward pass to `[n, k]`) over `indices` in batches, data prepared one batch
/// ahead on a second thread. Returns the rows in input order, row after row.
fn infer_rows(
    ds: &Dataset,
    indices: &[usize],
    prep: Preprocess,
    device: &Device,
    batch: usize,
    f: impl Fn(Tensor<4>) -> Tensor<2>,
) -> Result<Vec<f32>, MlError> {
    let (c, h, w) = prep.input_dims(ds.shape);
    let mut logits = Vec::with_capacity(indices.len());
    std::thread::scope(|scope| -> Result<(), MlError> {
        let (tx, rx) = sync_channel::<(usize, Vec<f32>)>(2);
        scope.spawn(move || {
            for chunk in indices.chunks(batch) {
                let x = prep.fill(ds, chunk, None, 0);
                if tx.send((chunk.len(), x)).is_err() {
                    break;
                }
            }
        });
        for (n, x) in rx {
            let x = Tensor::<4>::from_data(TensorData::new(x, [n, c, h, w]), device);
            let out = f(x);
            let data = out.into_data();
            logits.extend_from_slice(data.as_slice::<f32>().map_err(device_err)?);
        }
        Ok(())
    })?;
    Ok(logits)
}

/// Loss, accuracy and balanced accuracy of logits against labels.
pub(super) fn score(logits: &[f32], labels: &[u8], units: usize) -> (f64, f64, f64) {
    if units > 1 {
        let loss = if labels.is_empty() {
            f64::NAN
        } else {
            logits
                .chunks(units)
                .zip(labels)
                .map(|(row, &y)| loss_of_logits(row, y))
                .sum::<f64>()
                / labels.len() as f64
        };
        let c = multiclass::ConfusionMatrix::from_probs(labels, logits, units);
        return (loss, c.accuracy(), c.balanced_accuracy());
    }
    let loss = if logits.is_empty() {
        f64::NAN
    } else {
        logits
            .iter()
            .zip(labels)
            .map(|(&x, &y)| bce_of_logit(x, y))
            .sum::<f64>()
            / logits.len() as f64
    };
    let probs: Vec<f32> = logits.iter().map(|&x| sigmoid(x)).collect();
    let conf = metrics::confusion(labels, &probs, 0.5);
    (loss, conf.accuracy(), conf.balanced_accuracy())
}

/// Inference batch: 256 measured fastest on flex (B3 at 56x56x3: ~1,950 img/s against ~800 at
/// 1024 on 2 cores; the activations stay in cache).
pub const INFER_BATCH: usize = 256;

/// Probabilities of the images at `indices` (input order) from a model directory written by
/// [`train`](super::train): one per image (the sigmoid's, of class 1) for a two-class model,
/// a softmax row of `classes` per image beyond (see [`output_units`]). Inference only (no autodiff), in batches of [`INFER_BATCH`].
/// The images are preprocessed as recorded in `model.json`; `rescale` is used only for model
/// directories that predate that record.
pub fn predict(
    model_dir: &Path,
    checkpoint: Checkpoint,
    data: &Dataset,
    indices: &[usize],
    rescale: f32,
    device: DeviceChoice,
) -> Result<Vec<f32>, MlError> {
    predict_batched(
        model_dir,
        checkpoint,
        data,
        indices,
        rescale,
        device,
        INFER_BATCH,
    )
}

/// [`predict`] in batches of `batch` images (the throughput benchmarks sweep it).
pub fn predict_batched(
    model_dir: &Path,
    checkpoint: Checkpoint,
    data: &Dataset,
    indices: &[usize],
    rescale: f32,
    device: DeviceChoice,
    batch: usize,
) -> Result<Vec<f32>, MlError> {
    if batch == 0 {
        return Err(MlError::InvalidConfig(vec![
            "batch: must be at least 1".into(),
        ]));
    }
    let (mf, model, dev) = open_model(model_dir, checkpoint, data, indices, device)?;
    let prep = mf
        .preprocess
        .unwrap_or(Preprocess::Rescale { factor: rescale });
    let logits = infer_logits(&model.inference(), data, indices, prep, &dev, batch)?;
    Ok(probabilities(logits, mf.model.output_units()))
}

/// Values per image that [`predict`] returns for the model in `model_dir` (1, or its number
/// of classes beyond two), from its `model.json`.
pub fn output_units(model_dir: &Path) -> Result<usize, MlError> {
    let mf: ModelFile = read_json(&model_dir.join(MODEL_FILE))?;
    Ok(mf.model.output_units())
}

/// The last hidden layer's activations of the images at `indices` (input order), row after
/// row, and their width: the features `stack` fits a classical classifier on. Preprocessing and
/// batching as in [`predict`].
pub fn features(
    model_dir: &Path,
    checkpoint: Checkpoint,
    data: &Dataset,
    indices: &[usize],
    rescale: f32,
    device: DeviceChoice,
) -> Result<(Vec<f32>, usize), MlError> {
    let (mf, model, dev) = open_model(model_dir, checkpoint, data, indices, device)?;
    let prep = mf
        .preprocess
        .unwrap_or(Preprocess::Rescale { factor: rescale });
    let model = model.inference();
    let rows = infer_rows(data, indices, prep, &dev, INFER_BATCH, |x| model.embed(x))?;
    let width = if indices.is_empty() {
        0
    } else {
        rows.len() / indices.len()
    };
    Ok((rows, width))
}

/// Reads `model.json`, checks `data`/`indices` against it and loads the `checkpoint` weights
/// (on an autodiff device when `autodiff`, for gradients with respect to the input).
pub(crate) fn open_model(
    model_dir: &Path,
    checkpoint: Checkpoint,
    data: &Dataset,
    indices: &[usize],
    device: DeviceChoice,
) -> Result<(ModelFile, Net, Device), MlError> {
    let mf_path = model_dir.join(MODEL_FILE);
    let mf: ModelFile = read_json(&mf_path)?;
    let mut problems = models::validate(&mf.model);
    if data.shape != mf.model.input {
        problems.push(format!(
            "data: images are {} but the model in {} expects {}",
            data.shape,
            model_dir.display(),
            mf.model.input
        ));
    }
    if let Some(&bad) = indices.iter().find(|&&i| i >= data.len()) {
        problems.push(format!(
            "index {bad} is out of range for {} images",
            data.len()
        ));
    }
    if !problems.is_empty() {
        return Err(MlError::InvalidConfig(problems));
    }
    let dev = backend::device(device)?;
    let path: PathBuf = model_dir.join(checkpoint.file_name());
    let model = load_model(&mf.model, &path, &dev)?;
    Ok((mf, model, dev))
}
