//! `stack`: a classical classifier (random forest or gradient-boosted trees, see
//! [`crate::ml::classical`]) fitted on a trained CNN's features — its last hidden dense layer's
//! activations — of the training split (the report's §4.2), then thresholded and scored on the
//! evaluated split like `evaluate` (same `metrics.json`, `probabilities.csv`, `confusion.png`).
//!
//! The output is a model artifact: `ensemble` averages its probabilities like a CNN's and
//! `predict` scores a test set with it. It holds the fitted classifier, the features it was
//! fitted and scored on (cached, so nothing recomputes them), and a manifest ref to the CNN,
//! whose features every later use of the stack computes with the checkpoint recorded here.

use super::artifacts::{SplitArtifact, read_json, to_usize};
use super::evaluate::{On, Scored, Threshold, ThresholdName, read_rescale};
use super::{ArtifactKind, Problem, Slot, Stage, StageContext, StageError, StageReport, io_err};
use crate::ml::classical::{Classifier, Features, Model};
use crate::ml::train::Checkpoint;
use serde::{Deserialize, Deserializer, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Stack {
    /// Device of the CNN's inference (the classifier runs on the CPU).
    #[serde(default, skip_serializing_if = "super::is_default_device")]
    pub device: crate::ml::backend::DeviceChoice,
    /// `random_forest` or `gradient_boosting` (defaults), or a map with `kind:` and its
    /// settings (`trees`, `max_depth`, … see [`Classifier`]).
    #[serde(deserialize_with = "classifier")]
    pub classifier: Classifier,
    /// The CNN's weights the features come from.
    #[serde(default)]
    pub checkpoint: Checkpoint,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub on: On,
    #[serde(default)]
    pub threshold: Threshold,
}

/// A classifier's name alone, or a map with its `kind` and settings.
fn classifier<'de, D: Deserializer<'de>>(d: D) -> Result<Classifier, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    let v = match v {
        serde_json::Value::String(kind) => serde_json::json!({ "kind": kind }),
        other => other,
    };
    serde_json::from_value(v).map_err(serde::de::Error::custom)
}

/// What a stack output records besides its classifier; `is_stack` looks for it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StackFile {
    /// The CNN (a `train` output), a manifest ref of this object.
    #[serde(deserialize_with = "crate::cache::digest::de")]
    pub cnn: String,
    pub checkpoint: Checkpoint,
    /// Width of a feature vector.
    pub features: usize,
    /// Training images the classifier was fitted on.
    pub fitted_on: usize,
}

pub const STACK_FILE: &str = "stack.json";
const CLASSIFIER_FILE: &str = "classifier.json";

/// Whether `dir` is a `stack` output (rather than a `train` one).
pub(crate) fn is_stack(dir: &Path) -> bool {
    dir.join(STACK_FILE).is_file()
}

impl Stage for Stack {
    const KIND: &'static str = "stack";
    const VERSION: u32 = 1;
    const OUTPUT: ArtifactKind = ArtifactKind::Model;
    const USES_DEVICE: bool = true;
    const INPUTS: &'static [Slot] = &[
        super::required_slot("model", ArtifactKind::Model).produced_by("train"),
        super::required_slot("data", ArtifactKind::Dataset),
        super::required_slot("split", ArtifactKind::Split),
    ];

    fn check(&self) -> Vec<Problem> {
        let mut p: Vec<Problem> = self
            .classifier
            .validate()
            .into_iter()
            .map(|m| match m.split_once(": ") {
                Some((field, message)) => {
                    Problem::new(format!("classifier.{field}"), format!("{field}: {message}"))
                }
                None => Problem::new("classifier", m),
            })
            .collect();
        if let Threshold::Fixed(t) = self.threshold
            && !(0.0..=1.0).contains(&t)
        {
            p.push(Problem::new(
                "threshold",
                format!("threshold must be within [0, 1] or `tune`, got {t}"),
            ));
        }
        p
    }

    fn run(&self, ctx: &StageContext) -> Result<StageReport, StageError> {
        let ds = ctx.dataset("data")?;
        let labels = ds
            .labels
            .as_deref()
            .ok_or_else(|| StageError::Invalid("stack needs a labelled dataset".into()))?;
        if ds.num_classes() > 2 {
            return Err(StageError::Invalid(format!(
                "stack fits two classes; the data has {} (use `evaluate` or an `ensemble` of \
                 CNNs for N classes)",
                ds.num_classes()
            )));
        }
        let split = SplitArtifact::read(ctx.input("split")?)?;
        let cnn = ctx.input("model")?;
        let pick = |on: On| match on {
            On::Train => to_usize(&split.train),
            On::Val => to_usize(&split.val),
            On::Test => to_usize(&split.test),
        };
        let train = pick(On::Train);
        let idx = pick(self.on);
        let tune = matches!(self.threshold, Threshold::Named(ThresholdName::Tune));
        let val = if tune && self.on != On::Val {
            pick(On::Val)
        } else {
            Vec::new()
        };
        // One model load and one pass over every image the stage needs, then split up.
        let all: Vec<usize> = train.iter().chain(&val).chain(&idx).copied().collect();
        let (feats, width) = self.features(cnn, &ds, &all)?;
        let (train_x, rest) = feats.split_at(train.len() * width);
        let (val_x, eval_x) = rest.split_at(val.len() * width);
        let y: Vec<u32> = train.iter().map(|&i| u32::from(labels[i])).collect();
        let fit_err = |e: crate::ml::classical::ClassicalError| {
            StageError::Invalid(format!("{}: {e}", ctx.id))
        };
        let model = Model::fit(&self.classifier, rows(train_x, width), &y, 2, self.seed)
            .map_err(fit_err)?;
        let probs = positive(&model, eval_x, width).map_err(fit_err)?;
        let val_probs = positive(&model, val_x, width).map_err(fit_err)?;

        let digest = ctx.input_digest("model")?;
        ctx.declare_refs(std::slice::from_ref(&digest))?;
        ctx.write_json(
            STACK_FILE,
            &StackFile {
                cnn: digest,
                checkpoint: self.checkpoint,
                features: width,
                fitted_on: train.len(),
            },
        )?;
        let path = ctx.out.join(CLASSIFIER_FILE);
        let bytes = model.to_bytes().map_err(|e| StageError::Artifact {
            path: path.clone(),
            message: e.to_string(),
        })?;
        std::fs::write(&path, bytes).map_err(io_err(&path))?;
        write_features(ctx.out, "train", &train, train_x)?;
        if !val.is_empty() {
            write_features(ctx.out, "val", &val, val_x)?;
        }
        write_features(
            ctx.out,
            &format!("{:?}", self.on).to_lowercase(),
            &idx,
            eval_x,
        )?;

        let scored = Scored {
            on: self.on,
            checkpoint: self.checkpoint,
            threshold: self.threshold,
            idx: &idx,
            probs: &probs,
            val: &val,
            val_probs: &val_probs,
        };
        let mut report = scored.write(ctx, &ds, labels)?;
        report.summary = format!(
            "{} on {width} features: {}",
            self.kind_name(),
            report.summary
        );
        Ok(report)
    }
}

impl Stack {
    fn kind_name(&self) -> &'static str {
        match self.classifier {
            Classifier::RandomForest(_) => "random forest",
            Classifier::GradientBoosting(_) => "gradient boosting",
        }
    }

    fn features(
        &self,
        cnn: &Path,
        ds: &crate::data::Dataset,
        indices: &[usize],
    ) -> Result<(Vec<f32>, usize), StageError> {
        Ok(crate::ml::train::features(
            cnn,
            self.checkpoint,
            ds,
            indices,
            read_rescale(cnn),
            self.device,
        )?)
    }
}

fn rows(data: &[f32], cols: usize) -> Features<'_> {
    Features {
        rows: data.len().checked_div(cols).unwrap_or(0),
        cols,
        data,
    }
}

/// The classifier's probability of class 1 for each row (none for no rows).
fn positive(
    model: &Model,
    data: &[f32],
    cols: usize,
) -> Result<Vec<f32>, crate::ml::classical::ClassicalError> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
    model.positive(rows(data, cols))
}

/// `features-<name>.f32` (the rows, little-endian f32, row after row) and
/// `features-<name>.idx` (their image indices, one a line).
fn write_features(dir: &Path, name: &str, idx: &[usize], x: &[f32]) -> Result<(), StageError> {
    let bin = dir.join(format!("features-{name}.f32"));
    let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&bin, bytes).map_err(io_err(&bin))?;
    let list = dir.join(format!("features-{name}.idx"));
    let text: String = idx.iter().map(|i| format!("{i}\n")).collect();
    std::fs::write(&list, text).map_err(io_err(&list))
}

/// Probabilities of class 1 of the stack output `dir` for `indices` of `ds`: the CNN it refers
/// to (resolved through `store`) gives the features, at the checkpoint the stack was fitted on.
pub(crate) fn stack_probs(
    store: &crate::cache::Store,
    dir: &Path,
    ds: &crate::data::Dataset,
    indices: &[usize],
    device: crate::ml::backend::DeviceChoice,
) -> Result<Vec<f32>, StageError> {
    let file: StackFile = read_json(&dir.join(STACK_FILE))?;
    let cnn: PathBuf = store
        .resolve_ref(dir, &file.cnn)
        .map_err(|e| StageError::Artifact {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
    let path = dir.join(CLASSIFIER_FILE);
    let bytes = std::fs::read(&path).map_err(io_err(&path))?;
    let model = Model::from_bytes(&bytes).map_err(|e| StageError::Artifact {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let (x, width) = crate::ml::train::features(
        &cnn,
        file.checkpoint,
        ds,
        indices,
        read_rescale(&cnn),
        device,
    )?;
    positive(&model, &x, width).map_err(|e| StageError::Artifact {
        path,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: serde_json::Value) -> Result<Stack, String> {
        <Stack as Stage>::from_json(yaml).map_err(|e| format!("{}: {}", e.path(), e.inner()))
    }

    #[test]
    fn classifier_by_name_or_with_settings() {
        let s = parse(serde_json::json!({"classifier": "random_forest"})).unwrap();
        assert_eq!(
            s.classifier,
            parse_classifier(r#"{"kind":"random_forest"}"#)
        );
        let s = parse(serde_json::json!({
            "classifier": {"kind": "gradient_boosting", "rounds": 7, "learning_rate": 0.3}
        }))
        .unwrap();
        let Classifier::GradientBoosting(b) = &s.classifier else {
            panic!("{s:?}")
        };
        assert_eq!((b.rounds, b.learning_rate), (7, 0.3));
        // The canonical config names the kind and every setting, defaults included.
        let c = serde_json::to_value(&s).unwrap();
        assert_eq!(c["classifier"]["kind"], "gradient_boosting");
        assert_eq!(c["classifier"]["max_depth"], 3);
    }

    fn parse_classifier(s: &str) -> Classifier {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn bad_classifiers_are_named() {
        let e = parse(serde_json::json!({"classifier": "svm"})).unwrap_err();
        assert!(e.contains("classifier") && e.contains("svm"), "{e}");
        let e = parse(serde_json::json!({"classifier": {"kind": "random_forest", "tres": 3}}))
            .unwrap_err();
        assert!(e.contains("tres"), "{e}");
        assert!(
            parse(serde_json::json!({})).is_err(),
            "classifier is required"
        );
        let s = parse(serde_json::json!({
            "classifier": {"kind": "gradient_boosting", "rounds": 0, "learning_rate": 2.0},
            "threshold": 1.5
        }))
        .unwrap();
        let fields: Vec<String> = s.check().into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            ["classifier.rounds", "classifier.learning_rate", "threshold"]
        );
    }
}
