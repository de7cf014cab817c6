//! `predict`: scores a test set with a model or an ensemble, lets test images whose dHash
//! matches a training image take that training label (the report found 213 such images), and
//! writes the submission (one label per line, input order) and the probabilities.

use super::ensemble;
use super::evaluate::{EvaluationResult, RESULT_FILE, model_probs};
use super::{ArtifactKind, Problem, Slot, Stage, StageContext, StageError, StageReport, io_err};
use crate::data::{Dataset, dhash, index};
use crate::figures::grid::{GridImage, save_captioned_grid};
use crate::ml::train::Checkpoint;
use serde::{Deserialize, Serialize};
use std::io::Write;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LabelFormat {
    /// `0` / `1`
    #[default]
    ZeroOne,
    /// `-1` / `1` (the challenge's label file format)
    MinusOneOne,
}

fn yes() -> bool {
    true
}
fn d12() -> usize {
    12
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Predict {
    /// Inference device; `--device` sets it on every stage that runs a model. The default
    /// (`cpu`) is left out of the canonical config so adding the field changed no key.
    #[serde(default, skip_serializing_if = "super::is_default_device")]
    pub device: crate::ml::backend::DeviceChoice,
    #[serde(default)]
    pub checkpoint: Checkpoint,
    /// Probability threshold; default 0.5, or the threshold of the `evaluation` input.
    #[serde(default)]
    pub threshold: Option<f32>,
    /// Give test images whose hash matches a training image that image's label.
    #[serde(default = "yes")]
    pub hash_override: bool,
    /// Hamming radius of a match (0 = equal 64-bit dHashes).
    #[serde(default)]
    pub override_radius: u32,
    #[serde(default)]
    pub label_format: LabelFormat,
    /// Matched test/train pairs drawn in `overrides.png` (report Figure 19).
    #[serde(default = "d12")]
    pub figure_pairs: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PredictSummary {
    pub count: usize,
    pub threshold: f32,
    pub predicted_positive: usize,
    /// Test images that took a training image's label through a hash match.
    pub overridden: usize,
    /// ... of which the model had predicted the other label.
    pub overridden_changed: usize,
    /// Matches skipped because the matching training images disagree.
    pub ambiguous_matches: usize,
}

impl Stage for Predict {
    const KIND: &'static str = "predict";
    const VERSION: u32 = 2;
    const OUTPUT: ArtifactKind = ArtifactKind::Predictions;
    const USES_DEVICE: bool = true;
    const INPUTS: &'static [Slot] = &[
        super::required_slot("test", ArtifactKind::Dataset),
        super::optional_slot("model", ArtifactKind::Model),
        super::optional_slot("ensemble", ArtifactKind::Ensemble),
        super::optional_slot("train", ArtifactKind::Dataset),
        super::optional_slot("evaluation", ArtifactKind::Evaluation),
    ];

    fn check(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.override_radius > index::MAX_RADIUS {
            p.push(Problem::new(
                "override_radius",
                format!(
                    "radius {} exceeds the maximum of {}",
                    self.override_radius,
                    index::MAX_RADIUS
                ),
            ));
        }
        p.extend(Problem::above(
            "figure_pairs",
            self.figure_pairs,
            super::MAX_FIGURE_ROWS,
        ));
        if let Some(t) = self.threshold
            && !(0.0..=1.0).contains(&t)
        {
            p.push(Problem::new(
                "threshold",
                format!("threshold must be within [0, 1], got {t}"),
            ));
        }
        p
    }

    fn run(&self, ctx: &StageContext) -> Result<StageReport, StageError> {
        let test = ctx.dataset("test")?;
        let all: Vec<usize> = (0..test.len()).collect();
        let device = self.device;
        let probs = match (ctx.optional_input("model"), ctx.optional_input("ensemble")) {
            (Some(model), None) => model_probs(model, self.checkpoint, &test, &all, device)?,
            (None, Some(dir)) => {
                let ens = ensemble::read(dir)?;
                let mut member_probs = Vec::new();
                for m in ens.member_dirs(ctx, "ensemble")? {
                    member_probs.push(model_probs(&m, ens.checkpoint, &test, &all, device)?);
                }
                ens.combine(&member_probs)
            }
            _ => {
                return Err(StageError::Invalid(
                    "predict needs exactly one of the inputs `model` and `ensemble`".into(),
                ));
            }
        };
        let threshold = match (self.threshold, ctx.optional_input("evaluation")) {
            (Some(t), _) => t,
            (None, Some(dir)) => {
                super::artifacts::read_json::<EvaluationResult>(&dir.join(RESULT_FILE))?.threshold
            }
            (None, None) => 0.5,
        };
        let model_labels: Vec<u8> = probs.iter().map(|&p| u8::from(p >= threshold)).collect();
        let mut labels = model_labels.clone();
        let mut hash_labels: Vec<Option<u8>> = vec![None; test.len()];
        let mut summary = PredictSummary {
            count: test.len(),
            threshold,
            predicted_positive: 0,
            overridden: 0,
            overridden_changed: 0,
            ambiguous_matches: 0,
        };
        let mut figures = vec![
            "submission.txt".to_string(),
            "probabilities.csv".to_string(),
        ];
        if self.hash_override
            && let Some(dir) = ctx.optional_input("train")
        {
            let train = Dataset::open(dir)?;
            let (matches, ambiguous) = hash_matches(&train, &test, self.override_radius)?;
            summary.ambiguous_matches = ambiguous;
            for &(t, _, label) in &matches {
                hash_labels[t] = Some(label);
                labels[t] = label;
                summary.overridden += 1;
                summary.overridden_changed += usize::from(model_labels[t] != label);
            }
            if !matches.is_empty() {
                let rows: Vec<Vec<GridImage>> = matches
                    .iter()
                    .take(self.figure_pairs)
                    .map(|&(t, tr, _)| {
                        vec![
                            GridImage {
                                pixels: test.image(t).to_vec(),
                                shape: test.shape,
                            },
                            GridImage {
                                pixels: train.image(tr).to_vec(),
                                shape: train.shape,
                            },
                        ]
                    })
                    .collect();
                let captions: Vec<String> = matches
                    .iter()
                    .take(self.figure_pairs)
                    .map(|&(t, tr, label)| {
                        format!(
                            "test #{t} = train #{tr}: label {label} taken (model said {})",
                            model_labels[t]
                        )
                    })
                    .collect();
                let png = ctx.out.join("overrides.png");
                save_captioned_grid(
                    &png,
                    &rows,
                    2,
                    "left: test image, right: training image with the same hash",
                    &captions,
                )
                .map_err(|e| StageError::Artifact {
                    path: png.clone(),
                    message: e.to_string(),
                })?;
                figures.push("overrides.png".into());
            }
        }
        summary.predicted_positive = labels.iter().filter(|&&l| l == 1).count();

        let fmt = |l: u8| match (self.label_format, l) {
            (LabelFormat::ZeroOne, l) => l.to_string(),
            (LabelFormat::MinusOneOne, 1) => "1".to_string(),
            (LabelFormat::MinusOneOne, _) => "-1".to_string(),
        };
        let sub = ctx.out.join("submission.txt");
        let mut w = std::io::BufWriter::new(std::fs::File::create(&sub).map_err(io_err(&sub))?);
        for &l in &labels {
            writeln!(w, "{}", fmt(l)).map_err(io_err(&sub))?;
        }
        w.flush().map_err(io_err(&sub))?;
        let csv = ctx.out.join("probabilities.csv");
        let mut w = std::io::BufWriter::new(std::fs::File::create(&csv).map_err(io_err(&csv))?);
        writeln!(w, "index,name,probability,model_label,hash_label,label").map_err(io_err(&csv))?;
        for i in 0..test.len() {
            let h = hash_labels[i].map(fmt).unwrap_or_default();
            writeln!(
                w,
                "{i},{},{:.6},{},{h},{}",
                test.names[i],
                probs[i],
                fmt(model_labels[i]),
                fmt(labels[i])
            )
            .map_err(io_err(&csv))?;
        }
        w.flush().map_err(io_err(&csv))?;
        ctx.write_json("predict.json", &summary)?;
        Ok(StageReport {
            summary: format!(
                "{} test images, {} labelled 1 at threshold {threshold:.3}; {} took a training label by hash ({} changed)",
                summary.count, summary.predicted_positive, summary.overridden, summary.overridden_changed
            ),
            figures,
            ..Default::default()
        }
        .metric("count", summary.count as f64)
        .metric("overridden", summary.overridden as f64)
        .metric("overridden_changed", summary.overridden_changed as f64)
        .metric("threshold", threshold as f64))
    }
}

/// (test index, a matching train index, label).
pub type HashMatch = (usize, usize, u8);

/// A [`HashMatch`] for every test image whose 64-bit dHash is within
/// `radius` of training images that all carry one label; and how many matches were ambiguous.
pub fn hash_matches(
    train: &Dataset,
    test: &Dataset,
    radius: u32,
) -> Result<(Vec<HashMatch>, usize), StageError> {
    let train_labels = train.labels.as_deref().ok_or_else(|| {
        StageError::Invalid("the `train` input of predict must be labelled".into())
    })?;
    let width = dhash::dhash_bytes(8);
    let mut rows = dhash::dhash_all(train, 8);
    rows.extend(dhash::dhash_all(test, 8));
    let groups = index::group_by_radius(&rows, width, radius)
        .map_err(|e| StageError::Invalid(e.to_string()))?;
    let n = train.len();
    let mut matches = Vec::new();
    let mut ambiguous = 0;
    for g in &groups.groups {
        let trains: Vec<usize> = g.iter().map(|&i| i as usize).filter(|&i| i < n).collect();
        let tests: Vec<usize> = g.iter().map(|&i| i as usize).filter(|&i| i >= n).collect();
        if trains.is_empty() || tests.is_empty() {
            continue;
        }
        let first = train_labels[trains[0]];
        if trains.iter().any(|&i| train_labels[i] != first) {
            ambiguous += tests.len();
            continue;
        }
        matches.extend(tests.iter().map(|&t| (t - n, trains[0], first)));
    }
    matches.sort_unstable();
    Ok((matches, ambiguous))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synthetic::{SyntheticConfig, generate};

    #[test]
    fn planted_train_test_duplicates_are_matched_exactly() {
        let cfg = SyntheticConfig {
            count: 300,
            exact_duplicates: 0,
            near_duplicates: 0,
            conflicting_duplicates: 0,
            ..SyntheticConfig::default()
        };
        let (train, _) = generate(&cfg).unwrap();
        let (other, _) = generate(&SyntheticConfig {
            seed: 99,
            count: 40,
            ..cfg.clone()
        })
        .unwrap();
        // Test set: 40 new faces plus 7 copies of training images at known positions.
        let picks = [3usize, 50, 77, 120, 199, 250, 299];
        let mut order: Vec<(bool, usize)> = (0..40).map(|i| (false, i)).collect();
        for (k, &p) in picks.iter().enumerate() {
            order.insert(k * 5 + 1, (true, p));
        }
        let mut pixels = Vec::new();
        for &(from_train, i) in &order {
            pixels.extend_from_slice(if from_train {
                train.image(i)
            } else {
                other.image(i)
            });
        }
        let names = (0..order.len()).map(|i| format!("t{i}")).collect();
        let test = Dataset::new(train.shape, pixels, None, names);
        let (m, ambiguous) = hash_matches(&train, &test, 0).unwrap();
        assert_eq!(ambiguous, 0);
        assert_eq!(m.len(), picks.len());
        for (t, tr, label) in m {
            let (from_train, i) = order[t];
            assert!(from_train);
            assert_eq!(tr, i);
            assert_eq!(Some(label), train.label(i));
        }
    }
}
