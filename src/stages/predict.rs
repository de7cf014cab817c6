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
use std::path::Path;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LabelFormat {
    /// `0` / `1`; the class names when the model's data has them (the default).
    #[default]
    ZeroOne,
    /// `-1` / `1` (the challenge's label file format; two classes only)
    MinusOneOne,
    /// The class names (the labels' vocabulary); indices when the data has none.
    Name,
    /// The class indices `0` … `N-1`.
    Index,
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
    /// The decision threshold (two-class models only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f32>,
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
    // 3: N-class override captions name the classes.
    const VERSION: u32 = 3;
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
        let (probs, units, classes) = self.probabilities(ctx, &test)?;
        if units > 1 {
            return self.run_multiclass(ctx, &test, &probs, units, classes);
        }
        let names = Names::new(self.label_format, classes, 2)?;
        let threshold = self.threshold_for(ctx)?;
        let model: Vec<u8> = probs.iter().map(|&p| u8::from(p >= threshold)).collect();
        let mut labels = Labels {
            submitted: model.clone(),
            model,
            hash: vec![None; test.len()],
        };
        let mut summary = PredictSummary {
            count: test.len(),
            threshold: Some(threshold),
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
            && self.override_by_hash(ctx, &test, dir, &mut labels, &mut summary)?
        {
            figures.push("overrides.png".into());
        }
        summary.predicted_positive = labels.submitted.iter().filter(|&&l| l == 1).count();
        write_submission(ctx, &labels, &names)?;
        self.write_probabilities(ctx, &test, &probs, &labels, &names)?;
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

/// The labels of the test images.
struct Labels {
    /// The model's (or ensemble's) at the threshold.
    model: Vec<u8>,
    /// The label a hash match with a training image gave, if any.
    hash: Vec<Option<u8>>,
    /// What the submission says: the hash label where there is one, else the model's.
    submitted: Vec<u8>,
}

/// How labels are written: `label_format` and the class names it may use.
struct Names {
    format: LabelFormat,
    classes: Option<Vec<String>>,
}

impl Names {
    /// Checks `format` against a model of `n` classes with the vocabulary `classes`.
    fn new(
        format: LabelFormat,
        classes: Option<Vec<String>>,
        n: usize,
    ) -> Result<Self, StageError> {
        if format == LabelFormat::MinusOneOne && n > 2 {
            return Err(StageError::Invalid(format!(
                "label_format: `minus_one_one` is for two classes; the model has {n} \
                 (use `name` or `index`)"
            )));
        }
        Ok(Self { format, classes })
    }

    fn text(&self, l: u8) -> String {
        match (self.format, l, &self.classes) {
            (LabelFormat::ZeroOne | LabelFormat::Name, l, Some(c)) => c[l as usize].clone(),
            (LabelFormat::MinusOneOne, 1, _) => "1".to_string(),
            (LabelFormat::MinusOneOne, _, _) => "-1".to_string(),
            (_, l, _) => l.to_string(),
        }
    }
}

impl Predict {
    /// Each test image's probability of label 1 (two classes), or its row of class
    /// probabilities, from the `model` or the `ensemble` input; with the values per image and
    /// the class names the (first) model records.
    fn probabilities(&self, ctx: &StageContext, test: &Dataset) -> Result<Probs, StageError> {
        let all: Vec<usize> = (0..test.len()).collect();
        let device = self.device;
        let facts = |dir: &Path| -> Result<(usize, Option<Vec<String>>), StageError> {
            Ok((
                super::evaluate::model_units(dir)?,
                super::train::read_classes(dir)?,
            ))
        };
        match (ctx.optional_input("model"), ctx.optional_input("ensemble")) {
            (Some(model), None) => {
                let (units, classes) = facts(model)?;
                let p = model_probs(ctx.store, model, self.checkpoint, test, &all, device)?;
                Ok((p, units, classes))
            }
            (None, Some(dir)) => {
                let ens = ensemble::read(dir)?;
                let members = ens.member_dirs(ctx, "ensemble")?;
                let (units, classes) = match members.first() {
                    Some(m) => facts(m)?,
                    None => (1, None),
                };
                let mut member_probs = Vec::new();
                for m in &members {
                    member_probs.push(model_probs(
                        ctx.store,
                        m,
                        ens.checkpoint,
                        test,
                        &all,
                        device,
                    )?);
                }
                Ok((ens.combine(&member_probs), units, classes))
            }
            _ => Err(StageError::Invalid(
                "predict needs exactly one of the inputs `model` and `ensemble`".into(),
            )),
        }
    }

    /// Predictions of a model of `units` > 2 classes: each image's most probable class.
    fn run_multiclass(
        &self,
        ctx: &StageContext,
        test: &Dataset,
        probs: &[f32],
        units: usize,
        classes: Option<Vec<String>>,
    ) -> Result<StageReport, StageError> {
        if self.threshold.is_some() {
            return Err(StageError::Invalid(format!(
                "threshold: applies to two classes; the model has {units} (remove `threshold`)"
            )));
        }
        let names = Names::new(self.label_format, classes, units)?;
        let model = crate::ml::multiclass::argmax_rows(probs, units);
        let mut labels = Labels {
            submitted: model.clone(),
            model,
            hash: vec![None; test.len()],
        };
        let mut summary = PredictSummary {
            count: test.len(),
            threshold: None,
            predicted_positive: 0,
            overridden: 0,
            overridden_changed: 0,
            ambiguous_matches: 0,
        };
        let mut figures = vec!["submission.txt".to_string(), "probabilities.csv".into()];
        if self.hash_override
            && let Some(dir) = ctx.optional_input("train")
            && self.override_by_hash(ctx, test, dir, &mut labels, &mut summary)?
        {
            figures.push("overrides.png".into());
        }
        write_submission(ctx, &labels, &names)?;
        write_class_probabilities(ctx, test, probs, units, &labels, &names)?;
        ctx.write_json("predict.json", &summary)?;
        Ok(StageReport {
            summary: format!(
                "{} test images over {units} classes; {} took a training label by hash ({} changed)",
                summary.count, summary.overridden, summary.overridden_changed
            ),
            figures,
            ..Default::default()
        }
        .metric("count", summary.count as f64)
        .metric("overridden", summary.overridden as f64)
        .metric("overridden_changed", summary.overridden_changed as f64))
    }

    /// `threshold`, else the `evaluation` input's, else 0.5.
    fn threshold_for(&self, ctx: &StageContext) -> Result<f32, StageError> {
        Ok(match (self.threshold, ctx.optional_input("evaluation")) {
            (Some(t), _) => t,
            (None, Some(dir)) => {
                let r = super::artifacts::read_json::<EvaluationResult>(&dir.join(RESULT_FILE))?;
                r.threshold.unwrap_or(0.5)
            }
            (None, None) => 0.5,
        })
    }

    /// Gives test images that match a training image (in `train_dir`) by hash that image's
    /// label, counting in `summary`; true when it drew `overrides.png` (there were matches).
    fn override_by_hash(
        &self,
        ctx: &StageContext,
        test: &Dataset,
        train_dir: &Path,
        labels: &mut Labels,
        summary: &mut PredictSummary,
    ) -> Result<bool, StageError> {
        let train = Dataset::open(train_dir)?;
        let (matches, ambiguous) = hash_matches(&train, test, self.override_radius)?;
        summary.ambiguous_matches = ambiguous;
        for &(t, _, label) in &matches {
            labels.hash[t] = Some(label);
            labels.submitted[t] = label;
            summary.overridden += 1;
            summary.overridden_changed += usize::from(labels.model[t] != label);
        }
        if matches.is_empty() {
            return Ok(false);
        }
        self.draw_overrides(
            &ctx.out.join("overrides.png"),
            test,
            &train,
            &matches,
            labels,
        )?;
        Ok(true)
    }

    /// The first `figure_pairs` matches, test image beside training image (report Figure 19).
    fn draw_overrides(
        &self,
        png: &Path,
        test: &Dataset,
        train: &Dataset,
        matches: &[HashMatch],
        labels: &Labels,
    ) -> Result<(), StageError> {
        let shown = &matches[..matches.len().min(self.figure_pairs)];
        let rows: Vec<Vec<GridImage>> = shown
            .iter()
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
        let captions: Vec<String> = shown
            .iter()
            .map(|&(t, tr, label)| {
                // class names where the data has them (indices, as before, where not)
                format!(
                    "test #{t} = train #{tr}: label {} taken (model said {})",
                    train.class_name(label),
                    train.class_name(labels.model[t])
                )
            })
            .collect();
        save_captioned_grid(
            png,
            &rows,
            2,
            "left: test image, right: training image with the same hash",
            &captions,
        )
        .map_err(|e| StageError::Artifact {
            path: png.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// `probabilities.csv`: each test image's probability and labels.
    fn write_probabilities(
        &self,
        ctx: &StageContext,
        test: &Dataset,
        probs: &[f32],
        labels: &Labels,
        names: &Names,
    ) -> Result<(), StageError> {
        let fmt = |l: u8| names.text(l);
        let csv = ctx.out.join("probabilities.csv");
        let mut w = std::io::BufWriter::new(std::fs::File::create(&csv).map_err(io_err(&csv))?);
        writeln!(w, "index,name,probability,model_label,hash_label,label").map_err(io_err(&csv))?;
        for (i, name) in test.names.iter().enumerate() {
            let h = labels.hash[i].map(fmt).unwrap_or_default();
            writeln!(
                w,
                "{i},{},{:.6},{},{h},{}",
                name,
                probs[i],
                fmt(labels.model[i]),
                fmt(labels.submitted[i])
            )
            .map_err(io_err(&csv))?;
        }
        w.flush().map_err(io_err(&csv))
    }
}

/// Probabilities (one per image, or a row per image), values per image, class names.
type Probs = (Vec<f32>, usize, Option<Vec<String>>);

/// `submission.txt`: one label per line, in input order.
fn write_submission(ctx: &StageContext, labels: &Labels, names: &Names) -> Result<(), StageError> {
    let sub = ctx.out.join("submission.txt");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&sub).map_err(io_err(&sub))?);
    for &l in &labels.submitted {
        writeln!(w, "{}", names.text(l)).map_err(io_err(&sub))?;
    }
    w.flush().map_err(io_err(&sub))
}

/// `probabilities.csv` of an N-class model: index, name, the model's, the hash's and the
/// submitted label, then one probability column per class.
fn write_class_probabilities(
    ctx: &StageContext,
    test: &Dataset,
    probs: &[f32],
    units: usize,
    labels: &Labels,
    names: &Names,
) -> Result<(), StageError> {
    let path = ctx.out.join("probabilities.csv");
    let csv_err = |e: csv::Error| StageError::Artifact {
        path: path.clone(),
        message: e.to_string(),
    };
    let mut w = csv::Writer::from_path(&path).map_err(csv_err)?;
    let mut header: Vec<String> = ["index", "name", "model_label", "hash_label", "label"]
        .map(String::from)
        .to_vec();
    header.extend((0..units).map(|k| format!("p_{}", names.text(k as u8))));
    w.write_record(&header).map_err(csv_err)?;
    for (i, name) in test.names.iter().enumerate() {
        let mut row = vec![
            i.to_string(),
            name.clone(),
            names.text(labels.model[i]),
            labels.hash[i].map(|l| names.text(l)).unwrap_or_default(),
            names.text(labels.submitted[i]),
        ];
        row.extend(
            probs[i * units..(i + 1) * units]
                .iter()
                .map(|p| format!("{p:.6}")),
        );
        w.write_record(&row).map_err(csv_err)?;
    }
    w.flush().map_err(io_err(&path))
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
