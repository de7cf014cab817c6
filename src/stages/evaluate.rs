//! `evaluate`: the challenge's score (balanced accuracy) plus accuracy, ROC AUC and the
//! confusion matrix (JSON + PNG) of a trained model on one split, at a fixed or tuned threshold.

use super::artifacts::{SplitArtifact, to_usize};
use super::train::Train;
use super::{ArtifactKind, Problem, Slot, Stage, StageContext, StageError, StageReport, io_err};
use crate::figures::plot::confusion_png;
use crate::ml::metrics::{self, Confusion};
use crate::ml::train::{Checkpoint, predict};
use serde::{Deserialize, Serialize};
use std::io::Write;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum On {
    Train,
    Val,
    #[default]
    Test,
}

/// `0.5`, or `tune`: the threshold maximising balanced accuracy on the validation split.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Threshold {
    Fixed(f32),
    Named(ThresholdName),
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdName {
    Tune,
}

impl Default for Threshold {
    fn default() -> Self {
        Threshold::Fixed(0.5)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Evaluate {
    /// Inference device; `--device` sets it on every stage that runs a model. The default
    /// (`cpu`) is left out of the canonical config so adding the field changed no key.
    #[serde(default, skip_serializing_if = "super::is_default_device")]
    pub device: crate::ml::backend::DeviceChoice,
    #[serde(default)]
    pub on: On,
    #[serde(default)]
    pub checkpoint: Checkpoint,
    #[serde(default)]
    pub threshold: Threshold,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EvaluationResult {
    pub on: On,
    pub checkpoint: Checkpoint,
    pub threshold: f32,
    pub count: usize,
    pub balanced_accuracy: f64,
    pub accuracy: f64,
    pub roc_auc: Option<f64>,
    pub confusion: Confusion,
}

pub const RESULT_FILE: &str = "metrics.json";

impl Stage for Evaluate {
    const KIND: &'static str = "evaluate";
    const VERSION: u32 = 1;
    const OUTPUT: ArtifactKind = ArtifactKind::Evaluation;
    const USES_DEVICE: bool = true;
    const INPUTS: &'static [Slot] = &[
        super::required_slot("model", ArtifactKind::Model),
        super::required_slot("data", ArtifactKind::Dataset),
        super::required_slot("split", ArtifactKind::Split),
    ];

    fn check(&self) -> Vec<Problem> {
        match self.threshold {
            Threshold::Fixed(t) if !(0.0..=1.0).contains(&t) => {
                vec![Problem::new(
                    "threshold",
                    format!("threshold must be within [0, 1] or `tune`, got {t}"),
                )]
            }
            _ => Vec::new(),
        }
    }

    fn run(&self, ctx: &StageContext) -> Result<StageReport, StageError> {
        let ds = ctx.dataset("data")?;
        let labels = ds
            .labels
            .as_deref()
            .ok_or_else(|| StageError::Invalid("evaluate needs a labelled dataset".into()))?;
        let split = SplitArtifact::read(ctx.input("split")?)?;
        let model_dir = ctx.input("model")?;
        let device = self.device;
        let pick = |on: On| match on {
            On::Train => to_usize(&split.train),
            On::Val => to_usize(&split.val),
            On::Test => to_usize(&split.test),
        };
        let idx = pick(self.on);
        let tune = matches!(self.threshold, Threshold::Named(ThresholdName::Tune));
        let val = if tune && self.on != On::Val {
            pick(On::Val)
        } else {
            Vec::new()
        };
        // One model load and one inference pass for the tuning split and the evaluated one.
        let all: Vec<usize> = val.iter().chain(&idx).copied().collect();
        let mut val_probs = model_probs(ctx.store, model_dir, self.checkpoint, &ds, &all, device)?;
        let probs = val_probs.split_off(val.len());
        let scored = Scored {
            on: self.on,
            checkpoint: self.checkpoint,
            threshold: self.threshold,
            idx: &idx,
            probs: &probs,
            val: &val,
            val_probs: &val_probs,
        };
        scored.write(ctx, &ds, labels)
    }
}

/// The probabilities of a model on the evaluated split (and on the validation split when the
/// threshold is tuned and the evaluated split is another), to threshold and score: what
/// `evaluate` and `stack` write.
pub(crate) struct Scored<'a> {
    pub on: On,
    pub checkpoint: Checkpoint,
    pub threshold: Threshold,
    pub idx: &'a [usize],
    pub probs: &'a [f32],
    pub val: &'a [usize],
    pub val_probs: &'a [f32],
}

impl Scored<'_> {
    /// Tunes or takes the threshold, then writes `metrics.json`, `probabilities.csv` and
    /// `confusion.png` into the stage's output; returns the report.
    pub(crate) fn write(
        &self,
        ctx: &StageContext,
        ds: &crate::data::Dataset,
        labels: &[u8],
    ) -> Result<StageReport, StageError> {
        let (idx, probs) = (self.idx, self.probs);
        let threshold = match self.threshold {
            Threshold::Fixed(t) => t,
            Threshold::Named(ThresholdName::Tune) => {
                let (vi, vp) = if self.on == On::Val {
                    (idx, probs)
                } else {
                    (self.val, self.val_probs)
                };
                let l: Vec<u8> = vi.iter().map(|&i| labels[i]).collect();
                metrics::tune_threshold(&l, vp)
            }
        };
        let l: Vec<u8> = idx.iter().map(|&i| labels[i]).collect();
        let c = metrics::confusion(&l, probs, threshold);
        let result = EvaluationResult {
            on: self.on,
            checkpoint: self.checkpoint,
            threshold,
            count: idx.len(),
            balanced_accuracy: c.balanced_accuracy(),
            accuracy: c.accuracy(),
            roc_auc: metrics::roc_auc(&l, probs),
            confusion: c,
        };
        ctx.write_json(RESULT_FILE, &result)?;
        let csv = ctx.out.join("probabilities.csv");
        let mut w = std::io::BufWriter::new(std::fs::File::create(&csv).map_err(io_err(&csv))?);
        writeln!(w, "index,name,label,probability").map_err(io_err(&csv))?;
        for (k, &i) in idx.iter().enumerate() {
            writeln!(w, "{i},{},{},{:.6}", ds.names[i], labels[i], probs[k])
                .map_err(io_err(&csv))?;
        }
        w.flush().map_err(io_err(&csv))?;
        let png = ctx.out.join("confusion.png");
        confusion_png(&png, &format!("{} ({:?} split)", ctx.id, self.on), &c).map_err(|e| {
            StageError::Artifact {
                path: png.clone(),
                message: e.to_string(),
            }
        })?;
        let mut report = StageReport {
            summary: format!(
                "{:?}: balanced accuracy {:.4}, accuracy {:.4}, threshold {threshold:.3}",
                self.on, result.balanced_accuracy, result.accuracy
            ),
            figures: vec!["confusion.png".into(), RESULT_FILE.into()],
            ..Default::default()
        }
        .metric("balanced_accuracy", result.balanced_accuracy)
        .metric("accuracy", result.accuracy)
        .metric("threshold", threshold as f64);
        if let Some(auc) = result.roc_auc {
            report = report.metric("roc_auc", auc);
        }
        Ok(report)
    }
}

/// Probabilities of a model for `indices`: a `train` output directory at `checkpoint`, or a
/// `stack` output (its classifier on the features of the CNN it refers to, which `store`
/// resolves; the stack's own checkpoint applies).
pub(crate) fn model_probs(
    store: &crate::cache::Store,
    model_dir: &std::path::Path,
    checkpoint: Checkpoint,
    ds: &crate::data::Dataset,
    indices: &[usize],
    device: crate::ml::backend::DeviceChoice,
) -> Result<Vec<f32>, StageError> {
    if super::stack::is_stack(model_dir) {
        return super::stack::stack_probs(store, model_dir, ds, indices, device);
    }
    Ok(predict(
        model_dir,
        checkpoint,
        ds,
        indices,
        read_rescale(model_dir),
        device,
    )?)
}

/// The rescale factor the model was trained with (recorded by `train` in `stage.json`).
pub(crate) fn read_rescale(model_dir: &std::path::Path) -> f32 {
    super::artifacts::read_json::<Train>(&model_dir.join("stage.json"))
        .map(|t| t.rescale)
        .unwrap_or(crate::ml::defaults::RESCALE)
}
