//! What a training run leaves on disk: the model directory (`model.json`, best/last records,
//! their SafeTensors exports, the curve CSV, `summary.json`) and the per-epoch resume
//! checkpoint (`state.json` + records) with its atomic JSON writes.
//!
//! The resume checkpoint is verified before use: `state.json`, written last, holds the blake3
//! digest of every record it names, and a checkpoint whose state does not parse, whose
//! records are missing, differ from their digests or do not load is discarded with a warning
//! (training restarts from epoch 0) rather than trusted or left to fail every rerun.

use crate::backend::MlError;
use crate::curve::{self, CurveRow};
use crate::models::{self, ModelSpec};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;

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
pub const SUMMARY_FILE: &str = "summary.json";
pub(super) const RESUME_STATE: &str = "state.json";
pub(super) const FORMAT_VERSION: u32 = 1;

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
pub(super) struct Best {
    pub(super) value: Option<f64>,
    pub(super) epoch: u32,
    pub(super) file: Option<String>,
}

/// The resume checkpoint: `state.json` names the record files of the same epoch; it is the
/// commit point (written to a temp file, then renamed).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(super) struct ResumeState {
    pub(super) format_version: u32,
    pub(super) config: TrainConfig,
    /// Last completed epoch.
    pub(super) epoch: u32,
    /// Learning rate for the next epoch.
    pub(super) lr: f64,
    pub(super) rows: Vec<CurveRow>,
    /// Wall-clock seconds of each epoch in `rows` (timings are kept here, out of the curve).
    #[serde(default)]
    pub(super) epoch_seconds: Vec<f64>,
    pub(super) plateau: Watch,
    pub(super) early: Watch,
    pub(super) best_loss: Best,
    pub(super) best_bacc: Best,
    pub(super) stopped_early: bool,
    pub(super) model_file: String,
    pub(super) optim_file: String,
    /// blake3 (hex) of each record file named above, by name. A checkpoint from before the
    /// digests has none and is not used.
    #[serde(default)]
    pub(super) digests: BTreeMap<String, String>,
}

impl ResumeState {
    /// The state before the first epoch.
    pub(super) fn fresh(cfg: &TrainConfig) -> Self {
        ResumeState {
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
        }
    }

    /// The record files the checkpoint names.
    fn files(&self) -> impl Iterator<Item = &String> {
        [
            Some(&self.model_file),
            Some(&self.optim_file),
            self.best_loss.file.as_ref(),
            self.best_bacc.file.as_ref(),
        ]
        .into_iter()
        .flatten()
    }

    /// Records the digest of record file `name`, written this epoch.
    pub(super) fn written(&mut self, name: String, digest: String) {
        self.digests.insert(name, digest);
    }

    /// Forgets the digests of files the checkpoint no longer names (before it is saved).
    pub(super) fn prune_digests(&mut self) {
        let named: Vec<String> = self.files().cloned().collect();
        self.digests.retain(|name, _| named.contains(name));
    }
}

pub(super) fn json_err(path: &Path) -> impl FnOnce(serde_json::Error) -> MlError + '_ {
    move |source| MlError::Json {
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn record_err(path: &Path) -> impl FnOnce(burn::store::RecordError) -> MlError + '_ {
    move |e| MlError::Record {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

pub(super) fn device_err(e: impl std::fmt::Display) -> MlError {
    MlError::Device(e.to_string())
}

/// Encoding weights we hold (a record, an export) in memory failed: an internal failure, like
/// the write that would follow.
pub(super) fn encode_err<E: std::fmt::Display>(path: &Path) -> impl FnOnce(E) -> MlError + '_ {
    move |e| MlError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(format!("cannot encode: {e}")),
    }
}

/// Writes `bytes` to `path` through a temp file + rename (the temp file is removed on
/// failure). A full disk is an [`MlError::Io`].
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), MlError> {
    pipe_fs::write_atomic(path, bytes, pipe_fs::Temp::Beside).map_err(MlError::io(path))
}

fn digest(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Writes a record's bytes to `path` ([`write_atomic`]) and returns their digest.
pub(super) fn write_record(path: &Path, bytes: &[u8]) -> Result<String, MlError> {
    write_atomic(path, bytes)?;
    Ok(digest(bytes))
}

pub(super) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), MlError> {
    let text = serde_json::to_string_pretty(value).map_err(json_err(path))?;
    write_atomic(path, text.as_bytes())
}

pub(super) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, MlError> {
    let text = std::fs::read_to_string(path).map_err(MlError::io(path))?;
    serde_json::from_str(&text).map_err(json_err(path))
}

/// Reads the resume checkpoint in `resume_dir` made by the same config, if any, and hands its
/// model and optimiser records (verified against their digests) to `load`. A checkpoint that
/// is damaged (see the module documentation) or that `load` rejects is discarded with a
/// warning: `Ok(None)`, training starts from scratch.
pub(super) fn read_resume<T>(
    resume_dir: &Path,
    cfg: &TrainConfig,
    load: impl FnOnce(&ResumeState, Vec<u8>, Vec<u8>) -> Result<T, MlError>,
) -> Result<Option<(ResumeState, T)>, MlError> {
    let path = resume_dir.join(RESUME_STATE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return discard(resume_dir, &format!("{RESUME_STATE}: {e}")),
    };
    let state: ResumeState = match serde_json::from_slice(&text) {
        Ok(s) => s,
        Err(e) => return discard(resume_dir, &format!("{RESUME_STATE}: {e}")),
    };
    if state.format_version != FORMAT_VERSION || !continues(&state, cfg) {
        tracing::warn!(
            path = %path.display(),
            "resume checkpoint was made with another configuration: starting from scratch"
        );
        return Ok(None);
    }
    let read =
        |name: &String| verified(resume_dir, &state, name).map_err(|why| format!("{name}: {why}"));
    let records = read(&state.model_file).and_then(|model| {
        let optim = read(&state.optim_file)?;
        for best in [&state.best_loss.file, &state.best_bacc.file] {
            best.iter().try_for_each(|b| read(b).map(drop))?;
        }
        Ok((model, optim))
    });
    let (model, optim) = match records {
        Ok(r) => r,
        Err(why) => return discard(resume_dir, &why),
    };
    let state = ResumeState {
        config: cfg.clone(),
        ..state
    };
    match load(&state, model, optim) {
        Ok(t) => Ok(Some((state, t))),
        Err(e) => discard(resume_dir, &e.to_string()),
    }
}

/// Whether a training with `cfg` may continue from `state`: made with the same configuration,
/// or with the same but for fewer epochs (a training stopped early, e.g. by a search's pruner,
/// continued by one that runs longer). Such a checkpoint must have stopped before the end of
/// its own run and of this one, and not by early stopping: then its epochs are exactly the
/// first epochs of this run (nothing before the last epoch depends on `epochs`).
fn continues(state: &ResumeState, cfg: &TrainConfig) -> bool {
    if state.config == *cfg {
        return true;
    }
    let same_but_epochs = TrainConfig {
        epochs: cfg.epochs,
        ..state.config.clone()
    } == *cfg;
    same_but_epochs
        && !state.stopped_early
        && state.epoch < state.config.epochs
        && state.epoch < cfg.epochs
}

/// The epoch the checkpoint in `dir` ended at, when a training with `cfg` may continue it
/// (see [`continues`]); `None` when there is none or it may not. Its records are verified
/// when the training reads them.
pub fn continuable_epoch(dir: &Path, cfg: &TrainConfig) -> Option<u32> {
    let state: ResumeState = read_json(&dir.join(RESUME_STATE)).ok()?;
    (state.format_version == FORMAT_VERSION && continues(&state, cfg)).then_some(state.epoch)
}

/// Puts the resume checkpoint of `from` into `to` (an empty resume dir), so that a training
/// there continues it: its records hard-linked (copied where links cannot be made; records are
/// never written in place, so sharing them is safe), `state.json` last. Returns its epoch.
pub fn adopt_checkpoint(from: &Path, to: &Path) -> Result<u32, MlError> {
    let state: ResumeState = read_json(&from.join(RESUME_STATE))?;
    for name in state.files().chain([&RESUME_STATE.to_string()]) {
        let (src, dst) = (from.join(name), to.join(name));
        if dst.exists() {
            std::fs::remove_file(&dst).map_err(MlError::io(&dst))?;
        }
        if std::fs::hard_link(&src, &dst).is_err() {
            let tmp = to.join(format!("{name}.adopting"));
            std::fs::copy(&src, &tmp).map_err(MlError::io(&src))?;
            std::fs::rename(&tmp, &dst).map_err(MlError::io(&dst))?;
        }
    }
    Ok(state.epoch)
}

/// The bytes of record `name` of the checkpoint when they match the digest `state` recorded;
/// otherwise why not.
fn verified(resume_dir: &Path, state: &ResumeState, name: &str) -> Result<Vec<u8>, String> {
    let want = state
        .digests
        .get(name)
        .ok_or("no digest recorded (a checkpoint of an older version)")?;
    let bytes = std::fs::read(resume_dir.join(name)).map_err(|e| e.to_string())?;
    if digest(&bytes) == *want {
        Ok(bytes)
    } else {
        Err(format!(
            "contents do not match the digest in {RESUME_STATE}"
        ))
    }
}

/// Warns and empties `resume_dir` (the stage's scratch): training restarts from epoch 0.
fn discard<T>(resume_dir: &Path, why: &str) -> Result<Option<T>, MlError> {
    tracing::warn!(
        "{}: resume checkpoint damaged: training restarts from epoch 0 ({why})",
        resume_dir.display()
    );
    let entries = std::fs::read_dir(resume_dir).map_err(MlError::io(resume_dir))?;
    for entry in entries {
        let p = entry.map_err(MlError::io(resume_dir))?.path();
        let res = match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p),
            _ => std::fs::remove_file(&p),
        };
        res.map_err(MlError::io(&p))?;
    }
    Ok(None)
}

/// Copies record `name` of the checkpoint to `dst`, checking it against its digest on the way
/// (it is read once).
fn copy_verified(
    resume_dir: &Path,
    st: &ResumeState,
    name: &str,
    dst: &Path,
) -> Result<(), MlError> {
    let src = resume_dir.join(name);
    let bytes = verified(resume_dir, st, name).map_err(|why| MlError::Io {
        path: src.clone(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("resume checkpoint damaged: {why}; rerun to train again"),
        ),
    })?;
    std::fs::write(dst, bytes).map_err(MlError::io(dst))
}

/// Removes record files of `resume_dir` that `state` no longer names.
pub(super) fn prune_resume(resume_dir: &Path, state: &ResumeState) -> Result<(), MlError> {
    let keep: Vec<&String> = state.files().collect();
    let entries = std::fs::read_dir(resume_dir).map_err(MlError::io(resume_dir))?;
    for entry in entries {
        let entry = entry.map_err(MlError::io(resume_dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".bpk") && !keep.iter().any(|k| **k == name) {
            let p = entry.path();
            std::fs::remove_file(&p).map_err(MlError::io(&p))?;
        }
    }
    Ok(())
}

/// `cfg` as recorded in `model.json`: the pretrained weights by file name only, so the
/// object does not depend on where the pipeline lives (their contents are in the stage's key).
pub(super) fn portable(cfg: &TrainConfig) -> TrainConfig {
    let mut cfg = cfg.clone();
    cfg.model.weights = cfg
        .model
        .weights
        .as_ref()
        .map(|w| w.file_name().map_or_else(|| w.clone(), PathBuf::from));
    cfg
}

/// Writes the model directory from the final state.
pub(super) fn finish(
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
        match &best.file {
            Some(f) => copy_verified(resume_dir, st, f, &dst)?,
            // No best (every validation loss NaN): the last weights stand in.
            None => {
                std::fs::copy(&last_path, &dst).map_err(MlError::io(&dst))?;
            }
        }
    }
    for ck in Checkpoint::ALL {
        let m = load_model(&cfg.model, &out_dir.join(ck.file_name()), base)?;
        m.save_safetensors(&out_dir.join(ck.safetensors_name()))?;
    }

    let csv = out_dir.join(CURVE_CSV);
    curve::write_csv(&csv, &st.rows).map_err(MlError::io(&csv))?;

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
