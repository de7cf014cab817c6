//! The training loop (Adam + BCE-with-logits, Keras-like callbacks), checkpoints, resume, and
//! batched inference.
//!
//! Reproducibility: every random draw comes from ChaCha8 streams derived from the config seed
//! (initial weights; per epoch, the shuffle and the dropout masks; augmentation is seeded by the
//! augment spec per (epoch, image)). Nothing uses burn's backend RNG, which is process-global,
//! so two trainings in one process cannot disturb each other, and a run resumed from its
//! per-epoch checkpoint continues exactly as the uninterrupted run would have (bit for bit on
//! the CPU backend).
//!
//! Both model families run through the same loop: the from-scratch CNNs B1–B3 and the
//! ResNet-50 transfer-learning models TL1–TL3 ([`Net`]). Frozen layers of a TL model do not
//! require gradients, so Adam never sees (or changes) them. Input preprocessing
//! ([`Preprocess`]) is `rescale` for B models and ResNet's 'caffe' mode for TL models (applied
//! after augmentation, which then runs with rescale 1); it is recorded in `model.json`.
//!
//! Weights are saved as burnpack records (`.bpk`, burn 0.22's native format, full precision;
//! burn 0.22 no longer has the `.mpk` recorders) and exported as `.safetensors`.
//!
//! The model directory is a cache object, digested byte for byte: it holds no wall-clock time,
//! no absolute path and nothing that depends on whether the run was resumed (those go to
//! [`Trained`], which the stage reports to the run record), so a forced or resumed training
//! with the same seed commits the same digest and its dependents stay cached.

use crate::data::Dataset;
use crate::data::augment::{AugmentSpec, fill_batch};
use crate::ml::backend::{self, DeviceChoice, MlError};
use crate::ml::curve::{self, CurveRow};
use crate::ml::metrics;
use crate::ml::models::{self, Cnn, DropoutMasks, ModelSpec};
use crate::ml::resnet::{self, CAFFE_MEANS_BGR, ResNet50Classifier};
use burn::module::Module;
use burn::nn::loss::BinaryCrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::store::{ModuleRecord, ModuleSnapshot, SafetensorsStore};
use burn::tensor::Gradients;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

/// Which quantity a callback watches.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    /// Validation loss (lower is better).
    #[default]
    ValLoss,
    /// Validation balanced accuracy (higher is better).
    ValBacc,
}

impl Monitor {
    fn value(self, row: &CurveRow) -> f64 {
        match self {
            Monitor::ValLoss => row.val_loss,
            Monitor::ValBacc => row.val_bacc,
        }
    }

    /// Keras' `monitor_op(current, best)` with an absolute `min_delta`.
    fn improves(self, current: f64, best: Option<f64>, min_delta: f64) -> bool {
        match best {
            None => !current.is_nan(),
            Some(best) => match self {
                Monitor::ValLoss => current < best - min_delta,
                Monitor::ValBacc => current > best + min_delta,
            },
        }
    }
}

fn default_factor() -> f64 {
    0.1
}
fn default_plateau_patience() -> u32 {
    12
}
fn default_min_delta() -> f64 {
    1e-4
}

/// Keras `ReduceLROnPlateau` (mode from the monitor, absolute `min_delta`, no cooldown).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Plateau {
    #[serde(default)]
    pub monitor: Monitor,
    /// New lr = lr * factor.
    #[serde(default = "default_factor")]
    pub factor: f64,
    /// Epochs without improvement before reducing.
    #[serde(default = "default_plateau_patience")]
    pub patience: u32,
    #[serde(default = "default_min_delta")]
    pub min_delta: f64,
    /// Lower bound on the learning rate.
    #[serde(default)]
    pub min_lr: f64,
}

impl Default for Plateau {
    /// The report's final run: divide by 10 after 12 epochs without improvement.
    fn default() -> Self {
        Self {
            monitor: Monitor::ValLoss,
            factor: default_factor(),
            patience: default_plateau_patience(),
            min_delta: default_min_delta(),
            min_lr: 0.0,
        }
    }
}

/// Keras `EarlyStopping` (no restore of best weights: the best checkpoints are kept anyway).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EarlyStopping {
    #[serde(default)]
    pub monitor: Monitor,
    pub patience: u32,
    #[serde(default)]
    pub min_delta: f64,
}

fn default_batch_size() -> usize {
    124
}
fn default_test_every() -> u32 {
    5
}
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn default_epsilon() -> f64 {
    1e-7
}

/// Everything that determines a training run (with the data and splits).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub model: ModelSpec,
    /// Initial Adam learning rate.
    pub lr: f64,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    pub epochs: u32,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub plateau: Option<Plateau>,
    #[serde(default)]
    pub early_stopping: Option<EarlyStopping>,
    /// Score the test split every this many epochs (and at the last); 0 = never.
    #[serde(default = "default_test_every")]
    pub test_every: u32,
    #[serde(default)]
    pub device: DeviceChoice,
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    #[serde(default = "default_epsilon")]
    pub epsilon: f64,
}

impl TrainConfig {
    /// The report's settings (batch 124, Keras Adam defaults, test every 5 epochs) for `model`.
    pub fn new(model: ModelSpec, lr: f64, epochs: u32) -> Self {
        Self {
            model,
            lr,
            batch_size: default_batch_size(),
            epochs,
            seed: 0,
            plateau: None,
            early_stopping: None,
            test_every: default_test_every(),
            device: DeviceChoice::default(),
            beta1: default_beta1(),
            beta2: default_beta2(),
            epsilon: default_epsilon(),
        }
    }
}

/// Every problem with `cfg`, all at once (empty when valid).
pub fn validate(cfg: &TrainConfig) -> Vec<String> {
    let mut p = models::validate(&cfg.model);
    let positive = |v: f64| v.is_finite() && v > 0.0;
    if !positive(cfg.lr) {
        p.push(format!("lr: {} must be a positive number", cfg.lr));
    }
    if cfg.batch_size == 0 {
        p.push("batch_size: must be at least 1".into());
    }
    if cfg.epochs == 0 {
        p.push("epochs: must be at least 1".into());
    }
    for (name, v) in [("beta1", cfg.beta1), ("beta2", cfg.beta2)] {
        if !(0.0..1.0).contains(&v) {
            p.push(format!("{name}: {v} must be in [0, 1)"));
        }
    }
    if !positive(cfg.epsilon) {
        p.push(format!(
            "epsilon: {} must be a positive number",
            cfg.epsilon
        ));
    }
    if let Some(pl) = &cfg.plateau {
        if !(pl.factor > 0.0 && pl.factor < 1.0) {
            p.push(format!("plateau.factor: {} must be in (0, 1)", pl.factor));
        }
        if !(pl.min_delta >= 0.0 && pl.min_delta.is_finite()) {
            p.push(format!("plateau.min_delta: {} must be >= 0", pl.min_delta));
        }
        if !(pl.min_lr >= 0.0 && pl.min_lr.is_finite()) {
            p.push(format!("plateau.min_lr: {} must be >= 0", pl.min_lr));
        }
    }
    if let Some(es) = &cfg.early_stopping
        && !(es.min_delta >= 0.0 && es.min_delta.is_finite())
    {
        p.push(format!(
            "early_stopping.min_delta: {} must be >= 0",
            es.min_delta
        ));
    }
    p
}

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

/// How images become network input (recorded in `model.json`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum Preprocess {
    /// Multiply the pixel values by `factor` (B1–B3; the report: 1/255).
    Rescale { factor: f32 },
    /// ResNet-50's Keras 'caffe' mode: RGB → BGR, ImageNet means subtracted, no scaling
    /// (grey images replicated to three channels). TL1–TL3.
    Caffe,
}

impl Preprocess {
    /// The preprocessing `kind` trains with: caffe for TL kinds, `rescale` otherwise.
    pub fn for_model(kind: models::ModelKind, rescale: f32) -> Self {
        if kind.transfer_mode().is_some() {
            Preprocess::Caffe
        } else {
            Preprocess::Rescale { factor: rescale }
        }
    }

    /// Channels of the network input for images with `channels` channels.
    pub(crate) fn channels_out(self, channels: usize) -> usize {
        match self {
            Preprocess::Rescale { .. } => channels,
            Preprocess::Caffe => 3,
        }
    }

    /// The augmentation to apply before this preprocessing: caffe needs raw pixel values.
    pub(crate) fn augment_spec(self, spec: Option<&AugmentSpec>) -> Option<AugmentSpec> {
        spec.map(|a| match self {
            Preprocess::Rescale { .. } => a.clone(),
            Preprocess::Caffe => AugmentSpec {
                rescale: 1.0,
                ..a.clone()
            },
        })
    }

    /// Fills a `[indices.len(), C', H, W]` batch (C' = [`Preprocess::channels_out`]) with the
    /// images at `indices`, augmented by `augment` (from [`Preprocess::augment_spec`]) if
    /// given. Augmented B batches are scaled by the augmentation's own `rescale`, as in Keras.
    pub(crate) fn fill(
        self,
        ds: &Dataset,
        indices: &[usize],
        augment: Option<&AugmentSpec>,
        epoch: u64,
    ) -> Vec<f32> {
        let img = ds.shape.image_len();
        match self {
            Preprocess::Rescale { factor } => {
                let mut x = vec![0.0f32; indices.len() * img];
                fill_batch(ds, indices, augment, epoch, factor, &mut x);
                x
            }
            Preprocess::Caffe => {
                let mut raw = vec![0.0f32; indices.len() * img];
                fill_batch(ds, indices, augment, epoch, 1.0, &mut raw);
                let c = ds.shape.channels as usize;
                let plane = ds.shape.height as usize * ds.shape.width as usize;
                let mut x = vec![0.0f32; indices.len() * 3 * plane];
                if img > 0 {
                    for (src, dst) in raw.chunks_exact(img).zip(x.chunks_exact_mut(3 * plane)) {
                        caffe_planes(src, c, plane, dst);
                    }
                }
                x
            }
        }
    }
}

/// Caffe mode on CHW planes with raw pixel values: `dst` gets B, G, R planes minus the
/// ImageNet means (a single grey plane is replicated).
fn caffe_planes(src: &[f32], channels: usize, plane: usize, dst: &mut [f32]) {
    for (k, mean) in CAFFE_MEANS_BGR.iter().enumerate() {
        // BGR output plane k comes from RGB input plane 2 - k.
        let from = if channels >= 3 { 2 - k } else { 0 };
        let s = &src[from * plane..(from + 1) * plane];
        for (d, &v) in dst[k * plane..(k + 1) * plane].iter_mut().zip(s) {
            *d = v - mean;
        }
    }
}

/// What a finished run reports about the model (written as `summary.json`, so only what the
/// weights determine: no timings).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TrainSummary {
    pub epochs_run: u32,
    pub best_loss_epoch: u32,
    pub best_bacc_epoch: u32,
    pub best_val_loss: f64,
    pub best_val_bacc: f64,
    pub last_val_bacc: f64,
    pub last_test_bacc: Option<f64>,
    pub stopped_early: bool,
    pub params: usize,
}

/// What [`train`] returns: the model's summary and the facts of this execution, which differ
/// between runs of the same model and so stay out of the model directory.
#[derive(Clone, Debug, PartialEq)]
pub struct Trained {
    pub summary: TrainSummary,
    /// Training throughput of this invocation (forward + backward + Adam, data loading overlapped).
    pub images_per_second: f64,
    /// Wall time of all epochs, resumed ones included.
    pub seconds: f64,
    /// The checkpoint's epoch this invocation continued from.
    pub resumed_from_epoch: Option<u32>,
}

/// Which saved weights to use.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Checkpoint {
    /// Lowest validation loss.
    BestLoss,
    /// Highest validation balanced accuracy.
    #[default]
    BestBacc,
    /// The last epoch.
    Last,
}

impl Checkpoint {
    pub const ALL: [Checkpoint; 3] = [Checkpoint::BestLoss, Checkpoint::BestBacc, Checkpoint::Last];

    fn stem(self) -> &'static str {
        match self {
            Checkpoint::BestLoss => "best_loss",
            Checkpoint::BestBacc => "best_bacc",
            Checkpoint::Last => "last",
        }
    }

    /// The burnpack record in a model directory (`best_bacc.bpk`, ...).
    pub fn file_name(self) -> String {
        format!("{}.bpk", self.stem())
    }

    /// The SafeTensors export in a model directory (`best_bacc.safetensors`, ...).
    pub fn safetensors_name(self) -> String {
        format!("{}.safetensors", self.stem())
    }
}

/// `model.json` in a model directory: describes the weights beside it.
pub const MODEL_FILE: &str = "model.json";
pub const CURVE_CSV: &str = "curve.csv";
pub const CURVE_PNG: &str = "curve.png";
pub const SUMMARY_FILE: &str = "summary.json";
const RESUME_STATE: &str = "state.json";
const FORMAT_VERSION: u32 = 1;

/// Contents of `model.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    pub format_version: u32,
    pub model: ModelSpec,
    pub train: TrainConfig,
    /// Trainable parameters.
    pub params: usize,
    /// Input preprocessing the model was trained with (absent in older model directories:
    /// [`predict`] then uses its `rescale` argument).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocess: Option<Preprocess>,
}

/// Best value of a monitored quantity and the epoch it was reached, with its record file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
struct Best {
    value: Option<f64>,
    epoch: u32,
    file: Option<String>,
}

/// Keras callback counters.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
struct Watch {
    best: Option<f64>,
    wait: u32,
}

/// The resume checkpoint: `state.json` names the record files of the same epoch; it is the
/// commit point (written to a temp file, then renamed).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct ResumeState {
    format_version: u32,
    config: TrainConfig,
    /// Last completed epoch.
    epoch: u32,
    /// Learning rate for the next epoch.
    lr: f64,
    rows: Vec<CurveRow>,
    /// Wall-clock seconds of each epoch in `rows` (timings are kept here, out of the curve).
    #[serde(default)]
    epoch_seconds: Vec<f64>,
    plateau: Watch,
    early: Watch,
    best_loss: Best,
    best_bacc: Best,
    stopped_early: bool,
    model_file: String,
    optim_file: String,
}

fn json_err(path: &Path) -> impl FnOnce(serde_json::Error) -> MlError + '_ {
    move |source| MlError::Json {
        path: path.to_path_buf(),
        source,
    }
}

fn record_err(path: &Path) -> impl FnOnce(burn::store::RecordError) -> MlError + '_ {
    move |e| MlError::Record {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn device_err(e: impl std::fmt::Display) -> MlError {
    MlError::Device(e.to_string())
}

/// Writes `bytes` to `path` through a temp file + rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), MlError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(MlError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(MlError::io(path))
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), MlError> {
    let text = serde_json::to_string_pretty(value).map_err(json_err(path))?;
    write_atomic(path, text.as_bytes())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, MlError> {
    let text = std::fs::read_to_string(path).map_err(MlError::io(path))?;
    serde_json::from_str(&text).map_err(json_err(path))
}

/// A seed for one purpose: splitmix64 over (seed, stream, epoch).
fn derive_seed(seed: u64, stream: u64, epoch: u64) -> u64 {
    let mut z = seed
        ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ epoch.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
const STREAM_INIT: u64 = 1;
const STREAM_SHUFFLE: u64 = 2;
const STREAM_DROPOUT: u64 = 3;

/// Binary cross-entropy of one logit, computed stably (what BCE-with-logits computes).
fn bce_of_logit(logit: f32, label: u8) -> f64 {
    let x = logit as f64;
    let y = label as f64;
    x.max(0.0) - x * y + (-x.abs()).exp().ln_1p()
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Runs the model (no autodiff) over `indices` in batches, data prepared one batch ahead on a
/// second thread. Returns the logits in input order.
fn infer_logits(
    model: &Net,
    ds: &Dataset,
    indices: &[usize],
    prep: Preprocess,
    device: &Device,
    batch: usize,
) -> Result<Vec<f32>, MlError> {
    let s = ds.shape;
    let (c, h, w) = (
        prep.channels_out(s.channels as usize),
        s.height as usize,
        s.width as usize,
    );
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
            let out = model.infer(x);
            let data = out.into_data();
            logits.extend_from_slice(data.as_slice::<f32>().map_err(device_err)?);
        }
        Ok(())
    })?;
    Ok(logits)
}

/// Loss, accuracy and balanced accuracy of logits against labels.
fn score(logits: &[f32], labels: &[u8]) -> (f64, f64, f64) {
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

/// One prepared training batch.
struct Batch {
    x: Vec<f32>,
    y: Vec<i64>,
    labels: Vec<u8>,
    masks: Option<(Vec<f32>, Vec<f32>)>,
}

/// Checks the inputs against the config; every problem at once.
fn check_inputs(cfg: &TrainConfig, inputs: &TrainInputs) -> Result<(), MlError> {
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

/// The network of either family. Records and SafeTensors exports are those of the inner
/// module, so B1–B3 files are unchanged by the TL support.
#[derive(Debug)]
pub(crate) enum Net {
    Cnn(Cnn),
    ResNet(ResNet50Classifier),
}

fn resnet_err(e: resnet::ResNetError) -> MlError {
    match e {
        resnet::ResNetError::Shape { .. } | resnet::ResNetError::Buffer { .. } => {
            MlError::InvalidConfig(vec![e.to_string()])
        }
        resnet::ResNetError::WeightsNotFound { ref path }
        | resnet::ResNetError::UnsupportedFormat { ref path }
        | resnet::ResNetError::Load { ref path, .. }
        | resnet::ResNetError::NoMatch { ref path } => MlError::Record {
            path: path.clone(),
            message: e.to_string(),
        },
    }
}

impl Net {
    /// A freshly initialised network for `spec` (weights from `seed`; TL: then the pretrained
    /// file, then freezing). The caller must have validated `spec`.
    pub(crate) fn init(spec: &ModelSpec, seed: u64, device: &Device) -> Result<Self, MlError> {
        match spec.resnet() {
            Some(rs) => Ok(Net::ResNet(
                resnet::build_seeded(&rs, seed, device).map_err(resnet_err)?,
            )),
            None => Ok(Net::Cnn(Cnn::new(spec, Some(seed), device))),
        }
    }

    /// The network of `spec` with the weights of the record at `path`.
    pub(crate) fn load(spec: &ModelSpec, path: &Path, device: &Device) -> Result<Self, MlError> {
        let record = ModuleRecord::load(path).map_err(record_err(path))?;
        match spec.resnet() {
            Some(rs) => Ok(Net::ResNet(
                resnet::skeleton(&rs, device)
                    .map_err(resnet_err)?
                    .try_load_record(record)
                    .map_err(record_err(path))?,
            )),
            None => Ok(Net::Cnn(
                Cnn::new(spec, None, device)
                    .try_load_record(record)
                    .map_err(record_err(path))?,
            )),
        }
    }

    /// Training forward pass → logits `[N, 1]` (dropout masks are used by B2/B3 only).
    pub(crate) fn forward(&self, x: Tensor<4>, masks: Option<DropoutMasks>) -> Tensor<2> {
        match self {
            Net::Cnn(m) => m.forward(x, masks),
            Net::ResNet(m) => m.forward(x),
        }
    }

    /// Inference forward pass (on a [`Net::valid`] copy) → logits `[N, 1]`.
    pub(crate) fn infer(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Net::Cnn(m) => m.infer(x),
            Net::ResNet(m) => m.forward(x),
        }
    }

    /// The inference copy (no autodiff).
    pub(crate) fn valid(&self) -> Self {
        match self {
            Net::Cnn(m) => Net::Cnn(m.valid()),
            Net::ResNet(m) => Net::ResNet(m.valid()),
        }
    }

    /// One optimiser step from the gradients of a backward pass.
    fn step(self, optim: &mut ModuleOptimizer, lr: f64, grads: Gradients) -> Self {
        match self {
            Net::Cnn(m) => {
                let g = GradientsParams::from_grads(grads, &m);
                Net::Cnn(optim.step(lr, m, g))
            }
            Net::ResNet(m) => {
                let g = GradientsParams::from_grads(grads, &m);
                Net::ResNet(optim.step(lr, m, g))
            }
        }
    }

    fn save_record(&self, path: &Path) -> Result<(), MlError> {
        match self.valid() {
            Net::Cnn(m) => m.into_record().save(path),
            Net::ResNet(m) => m.into_record().save(path),
        }
        .map_err(record_err(path))
    }

    fn save_safetensors(&self, path: &Path) -> Result<(), MlError> {
        let mut store = SafetensorsStore::from_file(path).overwrite(true);
        match self {
            Net::Cnn(m) => m.save_into(&mut store),
            Net::ResNet(m) => m.save_into(&mut store),
        }
        .map_err(|e| MlError::Record {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        crate::ml::export::sort_header(path)
    }
}

fn save_record(model: &Net, path: &Path) -> Result<(), MlError> {
    model.save_record(path)
}

pub(crate) fn load_model(spec: &ModelSpec, path: &Path, device: &Device) -> Result<Net, MlError> {
    Net::load(spec, path, device)
}

fn build_optim(cfg: &TrainConfig) -> ModuleOptimizer {
    AdamConfig::new()
        .with_beta_1(cfg.beta1 as f32)
        .with_beta_2(cfg.beta2 as f32)
        .with_epsilon(cfg.epsilon as f32)
        .init()
}

/// Reads a resume checkpoint made by the same config, if any.
fn read_resume(resume_dir: &Path, cfg: &TrainConfig) -> Result<Option<ResumeState>, MlError> {
    let path = resume_dir.join(RESUME_STATE);
    if !path.exists() {
        return Ok(None);
    }
    let state: ResumeState = read_json(&path)?;
    if state.format_version != FORMAT_VERSION || state.config != *cfg {
        tracing::warn!(
            path = %path.display(),
            "resume checkpoint was made with another configuration: starting from scratch"
        );
        return Ok(None);
    }
    Ok(Some(state))
}

/// Removes record files of `resume_dir` that `state` no longer names.
fn prune_resume(resume_dir: &Path, state: &ResumeState) -> Result<(), MlError> {
    let keep = [
        Some(&state.model_file),
        Some(&state.optim_file),
        state.best_loss.file.as_ref(),
        state.best_bacc.file.as_ref(),
    ];
    let entries = std::fs::read_dir(resume_dir).map_err(MlError::io(resume_dir))?;
    for entry in entries {
        let entry = entry.map_err(MlError::io(resume_dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".bpk") && !keep.iter().any(|k| k.is_some_and(|k| *k == name)) {
            let p = entry.path();
            std::fs::remove_file(&p).map_err(MlError::io(&p))?;
        }
    }
    Ok(())
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
    let resumed = read_resume(resume_dir, cfg)?;
    let mut st = match resumed.clone() {
        Some(st) => {
            let mp = resume_dir.join(&st.model_file);
            model = load_model(spec, &mp, &ad)?;
            let op = resume_dir.join(&st.optim_file);
            optim = optim.load(&op).map_err(record_err(&op))?;
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
        },
    };
    let resumed_from_epoch = resumed.map(|s| s.epoch);

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
            save_record(&model, &resume_dir.join(&name))?;
            st.best_loss = Best {
                value: Some(val_loss),
                epoch,
                file: Some(name),
            };
        }
        if Monitor::ValBacc.improves(val_bacc, st.best_bacc.value, 0.0) {
            let name = format!("best_bacc-{epoch:05}.bpk");
            save_record(&model, &resume_dir.join(&name))?;
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

        // Resume checkpoint: records first, then the state file that names them (commit).
        st.model_file = format!("model-{epoch:05}.bpk");
        st.optim_file = format!("optim-{epoch:05}.bpk");
        save_record(&model, &resume_dir.join(&st.model_file))?;
        let op = resume_dir.join(&st.optim_file);
        optim.save(&op).map_err(record_err(&op))?;
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
        images_per_second: if session_train_secs > 0.0 {
            session_images as f64 / session_train_secs
        } else {
            0.0
        },
        seconds: st.epoch_seconds.iter().sum(),
        resumed_from_epoch,
    })
}

/// Inference batch: 256 measured fastest on flex (B3 at 56x56x3: ~1,950 img/s against ~800 at
/// 1024 on 2 cores; the activations stay in cache).
pub const INFER_BATCH: usize = 256;

/// `cfg` as recorded in `model.json`: the pretrained weights by file name only, so the
/// object does not depend on where the pipeline lives (their contents are in the stage's key).
fn portable(cfg: &TrainConfig) -> TrainConfig {
    let mut cfg = cfg.clone();
    cfg.model.weights = cfg
        .model
        .weights
        .as_ref()
        .map(|w| w.file_name().map_or_else(|| w.clone(), PathBuf::from));
    cfg
}

/// Writes the model directory from the final state.
fn finish(
    cfg: &TrainConfig,
    st: &ResumeState,
    model: &Net,
    resume_dir: &Path,
    out_dir: &Path,
    base: &Device,
    prep: Preprocess,
) -> Result<TrainSummary, MlError> {
    let params = models::param_count(&cfg.model);
    let recorded = portable(cfg);
    write_json(
        &out_dir.join(MODEL_FILE),
        &ModelFile {
            format_version: FORMAT_VERSION,
            model: recorded.model.clone(),
            train: recorded,
            params,
            preprocess: Some(prep),
        },
    )?;
    let last_path = out_dir.join(Checkpoint::Last.file_name());
    save_record(model, &last_path)?;
    for (ck, best) in [
        (Checkpoint::BestLoss, &st.best_loss),
        (Checkpoint::BestBacc, &st.best_bacc),
    ] {
        let dst = out_dir.join(ck.file_name());
        // No best (every validation loss NaN): the last weights stand in.
        let src = best
            .file
            .as_ref()
            .map_or_else(|| last_path.clone(), |f| resume_dir.join(f));
        std::fs::copy(&src, &dst).map_err(MlError::io(&dst))?;
    }
    for ck in Checkpoint::ALL {
        let m = load_model(&cfg.model, &out_dir.join(ck.file_name()), base)?;
        m.save_safetensors(&out_dir.join(ck.safetensors_name()))?;
    }

    let csv = out_dir.join(CURVE_CSV);
    curve::write_csv(&csv, &st.rows).map_err(MlError::io(&csv))?;
    let png = out_dir.join(CURVE_PNG);
    let title = format!(
        "{} (lr {}, batch {})",
        cfg.model.kind.as_str(),
        cfg.lr,
        cfg.batch_size
    );
    crate::report::plot::learning_curve_png(&png, &title, &st.rows).map_err(|e| MlError::Plot {
        path: png.clone(),
        message: e.to_string(),
    })?;

    let last = st.rows.last();
    let summary = TrainSummary {
        epochs_run: st.epoch,
        best_loss_epoch: st.best_loss.epoch,
        best_bacc_epoch: st.best_bacc.epoch,
        best_val_loss: st.best_loss.value.unwrap_or(f64::NAN),
        best_val_bacc: st.best_bacc.value.unwrap_or(f64::NAN),
        last_val_bacc: last.map_or(f64::NAN, |r| r.val_bacc),
        last_test_bacc: st.rows.iter().rev().find_map(|r| r.test_bacc),
        stopped_early: st.stopped_early,
        params,
    };
    write_json(&out_dir.join(SUMMARY_FILE), &summary)?;
    Ok(summary)
}

/// Sigmoid probabilities of the images at `indices` (input order) from a model directory
/// written by [`train`]. Inference only (no autodiff), in batches of [`INFER_BATCH`].
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
    let (mf, model, dev) = open_model(model_dir, checkpoint, data, indices, device)?;
    let prep = mf
        .preprocess
        .unwrap_or(Preprocess::Rescale { factor: rescale });
    let logits = infer_logits(&model.valid(), data, indices, prep, &dev, INFER_BATCH)?;
    Ok(logits.into_iter().map(sigmoid).collect())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Shape;
    use crate::ml::models::{MIN_INPUT_SIDE, ModelKind};

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
        let trained = train_fn(cfg, &inputs, out.path(), resume, &pb, &|e| {
            Some(e) == stop_at
        })?;
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
        for f in [MODEL_FILE, CURVE_CSV, CURVE_PNG, SUMMARY_FILE] {
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
        let s = train_fn(&cfg, &inputs, out.path(), resume.path(), &pb, &|_| false)
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
        let maps = crate::ml::saliency::saliency(
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
            train_fn(&cfg, &inputs, out, resume, &pb, &|e| Some(e) == stop_at)
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

    /// TL throughput at the report's shape, batch 32:
    /// `cargo test --lib bench_tl -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn bench_tl() {
        let n = 32 * 5;
        let shape = Shape::default();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let pixels: Vec<u8> = (0..n * shape.image_len()).map(|_| rng.random()).collect();
        let labels = (0..n).map(|i| (i % 2) as u8).collect();
        let names = (0..n).map(|i| i.to_string()).collect();
        let ds = Dataset::new(shape, pixels, Some(labels), names);
        let train: Vec<usize> = (0..32 * 4).collect();
        let val: Vec<usize> = (32 * 4..n).collect();
        for kind in [ModelKind::Tl1, ModelKind::Tl2, ModelKind::Tl3] {
            let mut cfg = TrainConfig::new(ModelSpec::new(kind), 1e-4, 1);
            cfg.batch_size = 32;
            cfg.test_every = 0;
            let inputs = TrainInputs {
                data: &ds,
                train: &train,
                val: &val,
                test: &[],
                augment: None,
                rescale: 1.0 / 255.0,
            };
            let out = tempfile::tempdir().unwrap();
            let resume = tempfile::tempdir().unwrap();
            let pb = indicatif::ProgressBar::hidden();
            let s = train_fn(&cfg, &inputs, out.path(), resume.path(), &pb, &|_| false).unwrap();
            let t = Instant::now();
            let p = predict(
                out.path(),
                Checkpoint::Last,
                &ds,
                &val,
                1.0,
                DeviceChoice::Cpu,
            )
            .unwrap();
            println!(
                "{kind} train: {:.1} img/s (1 epoch of {}, batch 32); predict {:.1} img/s",
                s.images_per_second,
                train.len(),
                p.len() as f64 / t.elapsed().as_secs_f64()
            );
        }
    }

    /// B3 throughput at the report's shape: `cargo test --release --lib bench_b3 -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn bench_b3() {
        // As the `pipe` binary does at start-up.
        crate::ml::backend::tune_allocator();
        let n = 124 * 12;
        let shape = Shape::default();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let pixels: Vec<u8> = (0..n * shape.image_len()).map(|_| rng.random()).collect();
        let labels = (0..n).map(|i| (i % 2) as u8).collect();
        let ds = Dataset::new(
            shape,
            pixels,
            Some(labels),
            (0..n).map(|i| i.to_string()).collect(),
        );
        let mut cfg = TrainConfig::new(ModelSpec::new(ModelKind::B3), 1e-4, 2);
        cfg.test_every = 0;
        let train: Vec<usize> = (0..124 * 10).collect();
        let val: Vec<usize> = (124 * 10..n).collect();
        let inputs = TrainInputs {
            data: &ds,
            train: &train,
            val: &val,
            test: &[],
            augment: None,
            rescale: 1.0 / 255.0,
        };
        let out = tempfile::tempdir().unwrap();
        let resume = tempfile::tempdir().unwrap();
        let pb = indicatif::ProgressBar::hidden();
        let s = train_fn(&cfg, &inputs, out.path(), resume.path(), &pb, &|_| false).unwrap();
        println!(
            "B3 train: {:.1} img/s (2 epochs of 1240)",
            s.images_per_second
        );
        let all: Vec<usize> = (0..n).collect();
        let _ = predict(
            out.path(),
            Checkpoint::Last,
            &ds,
            &all[..1024],
            1.0 / 255.0,
            DeviceChoice::Cpu,
        )
        .unwrap();
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
            .unwrap();
            assert_eq!(p.len(), n);
        }
        let ips = (reps * n) as f64 / t.elapsed().as_secs_f64();
        println!("B3 predict: {ips:.1} img/s ({n} images x {reps}, batch {INFER_BATCH})");

        // Inference batch-size sweep on the raw loop (model already loaded).
        let dev = backend::device(DeviceChoice::Cpu).unwrap();
        let model = load_model(&cfg.model, &out.path().join("last.bpk"), &dev)
            .unwrap()
            .valid();
        for batch in [128, 256, 512, 1024, 2048] {
            let t = Instant::now();
            let l = infer_logits(
                &model,
                &ds,
                &all,
                Preprocess::Rescale {
                    factor: 1.0 / 255.0,
                },
                &dev,
                batch,
            )
            .unwrap();
            assert_eq!(l.len(), n);
            let ips = n as f64 / t.elapsed().as_secs_f64();
            println!("  infer batch {batch}: {ips:.1} img/s");
        }
    }
}
