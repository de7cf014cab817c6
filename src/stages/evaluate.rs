//! `evaluate`: the challenge's score (balanced accuracy) plus accuracy, ROC AUC and the
//! confusion matrix (JSON + PNG) of a trained model on one split, at a fixed or tuned threshold.
//! A model of N > 2 classes is scored by its most probable class: macro balanced accuracy
//! (mean recall), per-class precision/recall/F1, top-k accuracy, one-vs-rest ROC AUC and the
//! N×N confusion matrix, and each class's ROC curve (`roc.json`, `roc.png`); `threshold` is
//! for two classes only.

use super::artifacts::{SplitArtifact, to_usize};
use super::train::Train;
use super::{ArtifactKind, Problem, Slot, Stage, StageContext, StageError, StageReport, io_err};
use crate::figures::plot::confusion_png;
use crate::figures::plot::matrix::confusion_matrix_png;
use crate::figures::plot::roc::class_roc_png;
use crate::ml::metrics::{self, Confusion};
use crate::ml::multiclass::{self, ClassRocs, ClassScores, ConfusionMatrix};
use crate::ml::train::{Checkpoint, output_units, predict};
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
    /// k of the top-k accuracy reported for models of more than k classes.
    #[serde(default = "default_top_k", skip_serializing_if = "is_default_top_k")]
    pub top_k: usize,
}

fn default_top_k() -> usize {
    5
}

fn is_default_top_k(k: &usize) -> bool {
    *k == default_top_k()
}

/// Top-k accuracy: the fraction of images whose class is among the model's k most probable.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopK {
    pub k: usize,
    pub accuracy: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EvaluationResult {
    pub on: On,
    pub checkpoint: Checkpoint,
    /// The decision threshold (two classes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f32>,
    pub count: usize,
    /// Two classes: the binary balanced accuracy; N: the macro one (mean recall).
    pub balanced_accuracy: f64,
    pub accuracy: f64,
    /// Two classes: the ROC AUC; N: the mean of the one-vs-rest AUCs.
    pub roc_auc: Option<f64>,
    /// The 2x2 matrix (two classes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confusion: Option<Confusion>,
    /// The class names, when the data has a vocabulary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<String>>,
    /// N classes: `matrix[true][predicted]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix: Option<Vec<Vec<u64>>>,
    /// N classes: precision, recall, F1 and support per class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_class: Option<Vec<ClassScores>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macro_f1: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<TopK>,
    /// N classes: each class's one-vs-rest ROC AUC (`null` for a class absent from the split).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roc_auc_per_class: Option<Vec<Option<f64>>>,
}

pub const RESULT_FILE: &str = "metrics.json";

impl Stage for Evaluate {
    const KIND: &'static str = "evaluate";
    // 2: N classes also write roc.json/roc.png; N-class figures name the classes.
    const VERSION: u32 = 2;
    const OUTPUT: ArtifactKind = ArtifactKind::Evaluation;
    const USES_DEVICE: bool = true;
    const INPUTS: &'static [Slot] = &[
        super::required_slot("model", ArtifactKind::Model),
        super::required_slot("data", ArtifactKind::Dataset),
        super::required_slot("split", ArtifactKind::Split),
    ];

    fn check(&self) -> Vec<Problem> {
        let mut p = match self.threshold {
            Threshold::Fixed(t) if !(0.0..=1.0).contains(&t) => {
                vec![Problem::new(
                    "threshold",
                    format!("threshold must be within [0, 1] or `tune`, got {t}"),
                )]
            }
            _ => Vec::new(),
        };
        if self.top_k == 0 {
            p.push(Problem::new("top_k", "top_k must be at least 1"));
        }
        p
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
        let units = model_units(model_dir)?;
        if units > 1 {
            return self.run_multiclass(ctx, &ds, labels, model_dir, &idx, units);
        }
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
            threshold: Some(threshold),
            count: idx.len(),
            balanced_accuracy: c.balanced_accuracy(),
            accuracy: c.accuracy(),
            roc_auc: metrics::roc_auc(&l, probs),
            confusion: Some(c),
            classes: ds.classes.clone(),
            matrix: None,
            per_class: None,
            macro_f1: None,
            top_k: None,
            roc_auc_per_class: None,
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

impl Default for Evaluate {
    fn default() -> Self {
        Self {
            device: Default::default(),
            on: On::default(),
            checkpoint: Checkpoint::default(),
            threshold: Threshold::default(),
            top_k: default_top_k(),
        }
    }
}

impl Evaluate {
    /// Scores a model of `units` > 2 classes by its most probable class.
    fn run_multiclass(
        &self,
        ctx: &StageContext,
        ds: &crate::data::Dataset,
        labels: &[u8],
        model_dir: &std::path::Path,
        idx: &[usize],
        units: usize,
    ) -> Result<StageReport, StageError> {
        if matches!(self.threshold, Threshold::Named(ThresholdName::Tune)) {
            return Err(StageError::Invalid(format!(
                "threshold: `tune` applies to two classes; the model tells {units} apart \
                 (remove `threshold`)"
            )));
        }
        if ds.num_classes() != units {
            return Err(StageError::Invalid(format!(
                "the model has {units} classes but the data {}",
                ds.num_classes()
            )));
        }
        let probs = model_probs(ctx.store, model_dir, self.checkpoint, ds, idx, self.device)?;
        let l: Vec<u8> = idx.iter().map(|&i| labels[i]).collect();
        let c = ConfusionMatrix::from_probs(&l, &probs, units);
        let classes: Vec<String> = (0..units).map(|k| ds.class_name(k as u8)).collect();
        let title = format!("{} ({:?} split)", ctx.id, self.on);
        let rocs = write_class_rocs(ctx, &title, &l, &probs, &classes)?;
        let aucs: Vec<Option<f64>> = rocs.classes.iter().map(|c| c.auc).collect();
        let result = EvaluationResult {
            on: self.on,
            checkpoint: self.checkpoint,
            threshold: None,
            count: idx.len(),
            balanced_accuracy: c.balanced_accuracy(),
            accuracy: c.accuracy(),
            roc_auc: rocs.macro_auc,
            confusion: None,
            classes: Some(classes.clone()),
            per_class: Some(c.per_class()),
            macro_f1: Some(c.macro_f1()),
            top_k: (self.top_k < units).then(|| TopK {
                k: self.top_k,
                accuracy: multiclass::top_k_accuracy(&l, &probs, units, self.top_k),
            }),
            roc_auc_per_class: Some(aucs),
            matrix: Some(c.matrix.clone()),
        };
        ctx.write_json(RESULT_FILE, &result)?;
        write_class_probabilities(ctx, ds, idx, &l, &probs, &classes)?;
        let png = ctx.out.join("confusion.png");
        confusion_matrix_png(&png, &title, &classes, &c.matrix).map_err(|e| {
            StageError::Artifact {
                path: png.clone(),
                message: e.to_string(),
            }
        })?;
        let mut summary = format!(
            "{:?}: macro balanced accuracy {:.4}, accuracy {:.4}, macro F1 {:.4}",
            self.on,
            result.balanced_accuracy,
            result.accuracy,
            c.macro_f1()
        );
        let mut report = StageReport::default()
            .metric("balanced_accuracy", result.balanced_accuracy)
            .metric("accuracy", result.accuracy)
            .metric("macro_f1", c.macro_f1());
        if let Some(t) = &result.top_k {
            summary.push_str(&format!(", top-{} {:.4}", t.k, t.accuracy));
            report = report.metric(&format!("top_{}_accuracy", t.k), t.accuracy);
        }
        if let Some(auc) = result.roc_auc {
            report = report.metric("roc_auc", auc);
        }
        report.summary = summary;
        report.figures = vec!["confusion.png".into(), RESULT_FILE.into()];
        if !rocs.macro_average.is_empty() {
            report.figures.push(CLASS_ROC_PNG.into());
        }
        report.figures.push(CLASS_ROC_FILE.into());
        Ok(report)
    }
}

/// N classes: each class's one-vs-rest ROC curve and their macro average (JSON), drawn next
/// to it (PNG).
pub const CLASS_ROC_FILE: &str = "roc.json";
pub const CLASS_ROC_PNG: &str = "roc.png";

/// Writes [`CLASS_ROC_FILE`] and, when some class has a curve, [`CLASS_ROC_PNG`] of an
/// N-class evaluation (`evaluate`, `ensemble`); returns the curves.
pub(crate) fn write_class_rocs(
    ctx: &StageContext,
    title: &str,
    labels: &[u8],
    probs: &[f32],
    classes: &[String],
) -> Result<ClassRocs, StageError> {
    let rocs = ClassRocs::new(labels, probs, classes);
    ctx.write_json(CLASS_ROC_FILE, &rocs)?;
    if !rocs.macro_average.is_empty() {
        let png = ctx.out.join(CLASS_ROC_PNG);
        class_roc_png(&png, &format!("{title}: one-vs-rest ROC"), &rocs).map_err(|e| {
            StageError::Artifact {
                path: png.clone(),
                message: e.to_string(),
            }
        })?;
    }
    Ok(rocs)
}

/// `probabilities.csv` of an N-class evaluation: index, name, true and predicted class, then
/// one probability column per class.
fn write_class_probabilities(
    ctx: &StageContext,
    ds: &crate::data::Dataset,
    idx: &[usize],
    labels: &[u8],
    probs: &[f32],
    classes: &[String],
) -> Result<(), StageError> {
    let path = ctx.out.join("probabilities.csv");
    let csv_err = |e: csv::Error| StageError::Artifact {
        path: path.clone(),
        message: e.to_string(),
    };
    let mut w = csv::Writer::from_path(&path).map_err(csv_err)?;
    let mut header = vec![
        "index".to_string(),
        "name".into(),
        "label".into(),
        "predicted".into(),
    ];
    header.extend(classes.iter().map(|c| format!("p_{c}")));
    w.write_record(&header).map_err(csv_err)?;
    let n = classes.len();
    let predicted = multiclass::argmax_rows(probs, n);
    for (k, &i) in idx.iter().enumerate() {
        let mut row = vec![
            i.to_string(),
            ds.names[i].clone(),
            classes[labels[k] as usize].clone(),
            classes[predicted[k] as usize].clone(),
        ];
        row.extend(probs[k * n..(k + 1) * n].iter().map(|p| format!("{p:.6}")));
        w.write_record(&row).map_err(csv_err)?;
    }
    w.flush().map_err(io_err(&path))
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

/// Probabilities per image of the model in `model_dir`: 1 (of class 1) for two classes and for
/// a `stack`, else its number of classes.
pub(crate) fn model_units(model_dir: &std::path::Path) -> Result<usize, StageError> {
    if super::stack::is_stack(model_dir) {
        return Ok(1);
    }
    Ok(output_units(model_dir)?)
}

/// The rescale factor the model was trained with (recorded by `train` in `stage.json`).
pub(crate) fn read_rescale(model_dir: &std::path::Path) -> f32 {
    super::artifacts::read_json::<Train>(&model_dir.join("stage.json"))
        .map(|t| t.rescale)
        .unwrap_or(crate::ml::defaults::RESCALE)
}
