//! `ensemble`: combines the probabilities of N trained models — mean, weighted mean (weights
//! fitted on the validation split to maximise balanced accuracy) or majority vote — and reports
//! every member and the ensemble on the evaluation split (the report's §3.3 suggestion of
//! combining TL1's class-1 strength with TL3's class-0 strength).

use super::artifacts::{SplitArtifact, read_json, to_usize};
use super::evaluate::{On, model_probs};
use super::{ArtifactKind, Problem, Slot, Stage, StageContext, StageError, StageReport};
use crate::ml::metrics::{self, Confusion};
use crate::ml::multiclass::{self, ConfusionMatrix};
use crate::ml::train::Checkpoint;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    #[default]
    Mean,
    /// Weights fitted on the validation split.
    Weighted,
    /// Majority of the members' thresholded predictions (ties: mean probability).
    Vote,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Ensemble {
    /// Inference device; `--device` sets it on every stage that runs a model. The default
    /// (`cpu`) is left out of the canonical config so adding the field changed no key.
    #[serde(default, skip_serializing_if = "super::is_default_device")]
    pub device: crate::ml::backend::DeviceChoice,
    #[serde(default)]
    pub method: Method,
    #[serde(default)]
    pub checkpoint: Checkpoint,
    #[serde(default)]
    pub on: On,
    #[serde(default = "half")]
    pub threshold: f32,
}

fn half() -> f32 {
    0.5
}

/// What the ensemble artifact records; `predict` reads it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EnsembleFile {
    pub method: Method,
    pub checkpoint: Checkpoint,
    pub threshold: f32,
    pub members: Vec<Member>,
    /// Probabilities per image of every member: 1 (two classes), or N classes' softmax row.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub units: usize,
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Member {
    /// Input slot name (the stage id it came from is in the run record).
    pub slot: String,
    /// Digest of the member's `train` output; the ensemble's manifest lists it in its refs, and
    /// readers resolve it through the store ([`StageContext::resolve_ref`]).
    #[serde(deserialize_with = "crate::cache::digest::de")]
    pub digest: String,
    pub weight: f64,
    pub balanced_accuracy: f64,
}

pub const ENSEMBLE_FILE: &str = "ensemble.json";

impl EnsembleFile {
    /// The members' object directories, resolved (and verified) through the store from the
    /// ensemble connected to input `slot`.
    pub fn member_dirs(&self, ctx: &StageContext, slot: &str) -> Result<Vec<PathBuf>, StageError> {
        self.members
            .iter()
            .map(|m| ctx.resolve_ref(slot, &m.digest))
            .collect()
    }

    /// Combined probabilities from per-member probabilities (member-major).
    pub fn combine(&self, probs: &[Vec<f32>]) -> Vec<f32> {
        let weights: Vec<f64> = self.members.iter().map(|m| m.weight).collect();
        if self.units > 1 {
            return combine_classes(self.method, &weights, probs, self.units);
        }
        combine(self.method, &weights, probs, self.threshold)
    }
}

pub fn combine(method: Method, weights: &[f64], probs: &[Vec<f32>], threshold: f32) -> Vec<f32> {
    let n = probs.first().map_or(0, Vec::len);
    let total: f64 = weights.iter().sum::<f64>().max(f64::MIN_POSITIVE);
    (0..n)
        .map(|i| {
            let mean = probs
                .iter()
                .zip(weights)
                .map(|(p, w)| p[i] as f64 * w)
                .sum::<f64>()
                / total;
            match method {
                Method::Mean | Method::Weighted => mean as f32,
                Method::Vote => {
                    let votes = probs.iter().filter(|p| p[i] >= threshold).count() * 2;
                    match votes.cmp(&probs.len()) {
                        std::cmp::Ordering::Greater => 1.0,
                        std::cmp::Ordering::Less => 0.0,
                        std::cmp::Ordering::Equal => mean as f32,
                    }
                }
            }
        })
        .collect()
}

/// [`combine`] for rows of `units` class probabilities: the (weighted) mean row, or for a
/// vote the share of members whose most probable class each class is (a tie between the
/// leading classes: the mean row).
pub fn combine_classes(
    method: Method,
    weights: &[f64],
    probs: &[Vec<f32>],
    units: usize,
) -> Vec<f32> {
    let mean = combine(Method::Weighted, weights, probs, 0.5);
    if method != Method::Vote {
        return mean;
    }
    let votes: Vec<Vec<u8>> = probs
        .iter()
        .map(|p| multiclass::argmax_rows(p, units))
        .collect();
    let mut out = Vec::with_capacity(mean.len());
    for (i, mean_row) in mean.chunks(units).enumerate() {
        let mut count = vec![0usize; units];
        for v in &votes {
            count[v[i] as usize] += 1;
        }
        let top = count.iter().copied().max().unwrap_or(0);
        if count.iter().filter(|&&c| c == top).count() > 1 {
            out.extend_from_slice(mean_row);
        } else {
            out.extend(count.iter().map(|&c| c as f32 / probs.len() as f32));
        }
    }
    out
}

/// Weights (summing to 1) maximising balanced accuracy of the weighted mean on `labels`:
/// coordinate ascent from equal weights (steps of 0.05 and 0.25, or dropping a member),
/// deterministic.
pub fn fit_weights(probs: &[Vec<f32>], labels: &[u8], threshold: f32) -> Vec<f64> {
    fit_weights_by(probs.len(), |w| {
        let p = combine(Method::Weighted, w, probs, threshold);
        metrics::confusion(labels, &p, threshold).balanced_accuracy()
    })
}

/// [`fit_weights`]'s search for `k` members, maximising `score` of the weights.
fn fit_weights_by(k: usize, score: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut w = vec![1.0 / k as f64; k];
    let mut best = score(&w);
    for _ in 0..200 {
        let mut improved = false;
        for i in 0..k {
            for delta in [0.05, -0.05, 0.25, -0.25, -1.0] {
                let mut c = w.clone();
                c[i] = (c[i] + delta).max(0.0);
                let sum: f64 = c.iter().sum();
                if sum <= 0.0 {
                    continue;
                }
                c.iter_mut().for_each(|v| *v /= sum);
                let s = score(&c);
                if s > best + 1e-12 {
                    best = s;
                    w = c;
                    improved = true;
                }
            }
        }
        if !improved {
            break;
        }
    }
    w
}

impl Stage for Ensemble {
    const KIND: &'static str = "ensemble";
    /// 2: members are declared as manifest refs (an older ensemble object lacks them).
    /// 3: N classes also write roc.json/roc.png and per-class AUCs.
    const VERSION: u32 = 3;
    const OUTPUT: ArtifactKind = ArtifactKind::Ensemble;
    /// Every other slot (any name) takes a trained model.
    const USES_DEVICE: bool = true;
    const INPUTS: &'static [Slot] = &[
        super::required_slot("data", ArtifactKind::Dataset),
        super::required_slot("split", ArtifactKind::Split),
        super::any_slot(ArtifactKind::Model),
    ];

    fn check(&self) -> Vec<Problem> {
        if !(0.0..=1.0).contains(&self.threshold) {
            return vec![Problem::new("threshold", "threshold must be within [0, 1]")];
        }
        Vec::new()
    }

    fn run(&self, ctx: &StageContext) -> Result<StageReport, StageError> {
        let members = model_inputs(ctx)?;
        let units = member_units(&members)?;
        if units > 1 {
            return self.run_multiclass(ctx, &members, units);
        }
        let Prepared {
            ds: _,
            val_labels,
            eval_labels,
            val_probs,
            eval_probs,
            digests,
        } = self.prepare(ctx, &members)?;
        let weights = match self.method {
            Method::Weighted => fit_weights(&val_probs, &val_labels, self.threshold),
            _ => vec![1.0 / members.len() as f64; members.len()],
        };
        let file = self.file(&members, &digests, &weights, 1, |i| {
            metrics::confusion(&eval_labels, &eval_probs[i], self.threshold).balanced_accuracy()
        });
        let combined = file.combine(&eval_probs);
        let c: Confusion = metrics::confusion(&eval_labels, &combined, self.threshold);
        ctx.write_json(ENSEMBLE_FILE, &file)?;
        ctx.write_json(
            "metrics.json",
            &serde_json::json!({
                "on": self.on,
                "balanced_accuracy": c.balanced_accuracy(),
                "accuracy": c.accuracy(),
                "roc_auc": metrics::roc_auc(&eval_labels, &combined),
                "confusion": c,
            }),
        )?;
        self.draw_confusions(ctx, &file, &eval_probs, &eval_labels, c)?;
        Ok(self.report(&file, &c))
    }
}

/// Probabilities of several models, member-major.
type Probs = Vec<Vec<f32>>;

/// The inputs that are models (every slot but `data` and `split`): at least two.
fn model_inputs<'a>(
    ctx: &'a StageContext<'_>,
) -> Result<Vec<(&'a String, &'a PathBuf)>, StageError> {
    let members: Vec<(&String, &PathBuf)> = ctx
        .inputs
        .iter()
        .filter(|(slot, _)| *slot != "data" && *slot != "split")
        .collect();
    if members.len() < 2 {
        return Err(StageError::Invalid(format!(
            "an ensemble needs at least two model inputs, got {}",
            members.len()
        )));
    }
    Ok(members)
}

/// The output units every member shares (1 for two classes, N beyond).
fn member_units(members: &[(&String, &PathBuf)]) -> Result<usize, StageError> {
    let mut units = Vec::new();
    for (_, dir) in members {
        units.push(super::evaluate::model_units(dir)?);
    }
    if units.iter().any(|&u| u != units[0]) {
        let shown: Vec<String> = members
            .iter()
            .zip(&units)
            .map(|((slot, _), u)| format!("{slot}: {}", if *u == 1 { 2 } else { *u }))
            .collect();
        return Err(StageError::Invalid(format!(
            "ensemble members tell different numbers of classes apart ({})",
            shown.join(", ")
        )));
    }
    Ok(units[0])
}

/// What both ensemble paths start from: the data, the labels and every member's probabilities
/// on the validation images and the evaluated ones, and the members' digests (declared as the
/// output's refs).
struct Prepared {
    ds: crate::data::Dataset,
    val_labels: Vec<u8>,
    eval_labels: Vec<u8>,
    val_probs: Probs,
    eval_probs: Probs,
    digests: Vec<String>,
}

impl Ensemble {
    fn prepare(
        &self,
        ctx: &StageContext,
        members: &[(&String, &PathBuf)],
    ) -> Result<Prepared, StageError> {
        let ds = ctx.dataset("data")?;
        let labels = ds
            .labels
            .as_deref()
            .ok_or_else(|| StageError::Invalid("ensemble needs a labelled dataset".into()))?;
        let split = SplitArtifact::read(ctx.input("split")?)?;
        let val = to_usize(&split.val);
        let eval = to_usize(match self.on {
            On::Train => &split.train,
            On::Val => &split.val,
            On::Test => &split.test,
        });
        let pick = |idx: &[usize]| idx.iter().map(|&i| labels[i]).collect::<Vec<u8>>();
        let (val_labels, eval_labels) = (pick(&val), pick(&eval));
        let (val_probs, eval_probs) = self.member_probs(ctx.store, members, &ds, &val, &eval)?;
        let digests = members
            .iter()
            .map(|(slot, _)| ctx.input_digest(slot))
            .collect::<Result<Vec<String>, StageError>>()?;
        ctx.declare_refs(&digests)?;
        Ok(Prepared {
            ds,
            val_labels,
            eval_labels,
            val_probs,
            eval_probs,
            digests,
        })
    }

    /// The ensemble's file: its settings and each member's slot, digest, weight and balanced
    /// accuracy on the evaluated images (`bacc(i)` for member `i`).
    fn file(
        &self,
        members: &[(&String, &PathBuf)],
        digests: &[String],
        weights: &[f64],
        units: usize,
        bacc: impl Fn(usize) -> f64,
    ) -> EnsembleFile {
        EnsembleFile {
            method: self.method,
            checkpoint: self.checkpoint,
            threshold: self.threshold,
            members: members
                .iter()
                .zip(digests)
                .zip(weights)
                .enumerate()
                .map(|(i, (((slot, _), digest), &weight))| Member {
                    slot: (*slot).clone(),
                    digest: digest.clone(),
                    weight,
                    balanced_accuracy: bacc(i),
                })
                .collect(),
            units,
        }
    }

    /// An ensemble of N-class models: class probabilities averaged (weights fitted for macro
    /// balanced accuracy) or voted; scored like `evaluate` scores one model.
    fn run_multiclass(
        &self,
        ctx: &StageContext,
        members: &[(&String, &PathBuf)],
        units: usize,
    ) -> Result<StageReport, StageError> {
        let Prepared {
            ds,
            val_labels,
            eval_labels,
            val_probs,
            eval_probs,
            digests,
        } = self.prepare(ctx, members)?;
        let bacc =
            |l: &[u8], p: &[f32]| ConfusionMatrix::from_probs(l, p, units).balanced_accuracy();
        let weights = match self.method {
            Method::Weighted => fit_weights_by(members.len(), |w| {
                bacc(
                    &val_labels,
                    &combine_classes(Method::Weighted, w, &val_probs, units),
                )
            }),
            _ => vec![1.0 / members.len() as f64; members.len()],
        };
        let file = self.file(members, &digests, &weights, units, |i| {
            bacc(&eval_labels, &eval_probs[i])
        });
        let combined = file.combine(&eval_probs);
        let c = ConfusionMatrix::from_probs(&eval_labels, &combined, units);
        let classes: Vec<String> = (0..units).map(|k| ds.class_name(k as u8)).collect();
        ctx.write_json(ENSEMBLE_FILE, &file)?;
        let title = format!("ensemble ({:?})", self.method).to_lowercase();
        let rocs =
            super::evaluate::write_class_rocs(ctx, &title, &eval_labels, &combined, &classes)?;
        let aucs: Vec<Option<f64>> = rocs.classes.iter().map(|c| c.auc).collect();
        ctx.write_json(
            "metrics.json",
            &serde_json::json!({
                "on": self.on,
                "balanced_accuracy": c.balanced_accuracy(),
                "accuracy": c.accuracy(),
                "roc_auc": rocs.macro_auc,
                "classes": classes,
                "matrix": c.matrix,
                "per_class": c.per_class(),
                "roc_auc_per_class": aucs,
            }),
        )?;
        let png = ctx.out.join("confusion.png");
        crate::figures::plot::matrix::confusion_matrix_png(&png, &title, &classes, &c.matrix)
            .map_err(|e| StageError::Artifact {
                path: png.clone(),
                message: e.to_string(),
            })?;
        let mut report = self.report_with(&file, c.balanced_accuracy(), c.accuracy());
        if !rocs.macro_average.is_empty() {
            report.figures.push(super::evaluate::CLASS_ROC_PNG.into());
        }
        report.figures.push(super::evaluate::CLASS_ROC_FILE.into());
        Ok(report)
    }

    /// Each member's probabilities on the validation images (only to fit weights; empty
    /// otherwise) and on the evaluated ones.
    fn member_probs(
        &self,
        store: &crate::cache::Store,
        members: &[(&String, &PathBuf)],
        ds: &crate::data::Dataset,
        val: &[usize],
        eval: &[usize],
    ) -> Result<(Probs, Probs), StageError> {
        let mut val_probs = Vec::new();
        let mut eval_probs = Vec::new();
        for (_, dir) in members {
            if self.method == Method::Weighted {
                val_probs.push(model_probs(
                    store,
                    dir,
                    self.checkpoint,
                    ds,
                    val,
                    self.device,
                )?);
            }
            eval_probs.push(model_probs(
                store,
                dir,
                self.checkpoint,
                ds,
                eval,
                self.device,
            )?);
        }
        Ok((val_probs, eval_probs))
    }

    /// `confusion.png`: each member's confusion matrix and the ensemble's (`c`).
    fn draw_confusions(
        &self,
        ctx: &StageContext,
        file: &EnsembleFile,
        eval_probs: &[Vec<f32>],
        eval_labels: &[u8],
        c: Confusion,
    ) -> Result<(), StageError> {
        let mut items: Vec<(String, Confusion)> = file
            .members
            .iter()
            .zip(eval_probs)
            .map(|(m, p)| {
                (
                    m.slot.clone(),
                    metrics::confusion(eval_labels, p, self.threshold),
                )
            })
            .collect();
        items.push((format!("ensemble ({:?})", self.method).to_lowercase(), c));
        let png = ctx.out.join("confusion.png");
        crate::figures::plot::confusion_grid_png(&png, &items).map_err(|e| StageError::Artifact {
            path: png.clone(),
            message: e.to_string(),
        })
    }

    /// The summary line and metrics: the ensemble's, and each member's balanced accuracy.
    fn report(&self, file: &EnsembleFile, c: &Confusion) -> StageReport {
        self.report_with(file, c.balanced_accuracy(), c.accuracy())
    }

    fn report_with(&self, file: &EnsembleFile, bacc: f64, accuracy: f64) -> StageReport {
        let members_text: Vec<String> = file
            .members
            .iter()
            .map(|m| format!("{} {:.4} (w {:.2})", m.slot, m.balanced_accuracy, m.weight))
            .collect();
        let mut report = StageReport {
            summary: format!(
                "{:?} ensemble balanced accuracy {:.4} on {:?}; members: {}",
                self.method,
                bacc,
                self.on,
                members_text.join(", ")
            ),
            figures: vec!["confusion.png".into(), "metrics.json".into()],
            ..Default::default()
        }
        .metric("balanced_accuracy", bacc)
        .metric("accuracy", accuracy);
        for m in &file.members {
            report = report.metric(&format!("member_{}_bacc", m.slot), m.balanced_accuracy);
        }
        report
    }
}

pub fn read(dir: &Path) -> Result<EnsembleFile, StageError> {
    read_json(&dir.join(ENSEMBLE_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_vote_and_weights_on_hand_made_probabilities() {
        // a misses one negative, b misses one positive, c is wrong everywhere.
        let labels = [1u8, 1, 1, 1, 0, 0, 0, 0];
        let a = vec![0.9f32, 0.9, 0.9, 0.9, 0.6, 0.1, 0.1, 0.1];
        let b = vec![0.6f32, 0.6, 0.6, 0.4, 0.0, 0.4, 0.4, 0.4];
        let c = vec![0.0f32, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0];
        let probs = vec![a.clone(), b.clone(), c.clone()];
        let mean = combine(Method::Mean, &[1.0, 1.0, 1.0], &probs, 0.5);
        assert!((mean[0] - 1.5 / 3.0).abs() < 1e-6);
        assert!(metrics::confusion(&labels, &mean, 0.5).balanced_accuracy() < 1.0);
        let vote = combine(Method::Vote, &[1.0, 1.0, 1.0], &probs, 0.5);
        assert_eq!(vote[0], 1.0); // a yes, b yes, c no
        assert_eq!(vote[3], 0.0); // a yes, b no, c no
        assert_eq!(vote[4], 1.0); // a yes, b no, c yes
        let w = fit_weights(&probs, &labels, 0.5);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let fitted = combine(Method::Weighted, &w, &probs, 0.5);
        let bacc = metrics::confusion(&labels, &fitted, 0.5).balanced_accuracy();
        assert_eq!(bacc, 1.0, "weights {w:?}");
        for p in &probs {
            assert!(metrics::confusion(&labels, p, 0.5).balanced_accuracy() < 1.0);
        }
    }

    #[test]
    fn class_rows_average_and_vote() {
        // Two images, three classes, three members.
        let a = vec![0.6f32, 0.3, 0.1, 0.2, 0.2, 0.6];
        let b = vec![0.5f32, 0.4, 0.1, 0.1, 0.8, 0.1];
        let c = vec![0.1f32, 0.8, 0.1, 0.3, 0.3, 0.4];
        let probs = vec![a, b, c];
        let mean = combine_classes(Method::Mean, &[1.0, 1.0, 1.0], &probs, 3);
        assert!((mean[0] - 0.4).abs() < 1e-6 && (mean[1] - 0.5).abs() < 1e-6);
        let vote = combine_classes(Method::Vote, &[1.0, 1.0, 1.0], &probs, 3);
        // Image 0: votes 0, 0, 1; image 1: votes 2, 1, 2.
        assert_eq!(multiclass::argmax_rows(&vote, 3), [0, 2]);
        assert!((vote[0] - 2.0 / 3.0).abs() < 1e-6);
    }
}
