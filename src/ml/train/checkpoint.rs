//! What a training run leaves on disk: the model directory (`model.json`, best/last records,
//! their SafeTensors exports, the curve CSV, `summary.json`) and the per-epoch resume
//! checkpoint (`state.json` + records) with its atomic JSON writes.

use crate::ml::backend::MlError;
use crate::ml::curve::{self, CurveRow};
use crate::ml::models::{self, ModelSpec};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
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

/// Writes `bytes` to `path` through a temp file + rename.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), MlError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(MlError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(MlError::io(path))
}

pub(super) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), MlError> {
    let text = serde_json::to_string_pretty(value).map_err(json_err(path))?;
    write_atomic(path, text.as_bytes())
}

pub(super) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, MlError> {
    let text = std::fs::read_to_string(path).map_err(MlError::io(path))?;
    serde_json::from_str(&text).map_err(json_err(path))
}

/// Reads a resume checkpoint made by the same config, if any.
pub(super) fn read_resume(
    resume_dir: &Path,
    cfg: &TrainConfig,
) -> Result<Option<ResumeState>, MlError> {
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
pub(super) fn prune_resume(resume_dir: &Path, state: &ResumeState) -> Result<(), MlError> {
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
