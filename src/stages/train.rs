//! `train`: fits B1/B2/B3 or the ResNet-50 transfer-learning models TL1/TL2/TL3 on the split's training images (optionally augmented), keeping the
//! best and last checkpoints, the learning curve (CSV + PNG) and the test score every N epochs.

use super::artifacts::{SplitArtifact, to_usize};
use super::augment::Augment;
use super::{ArtifactKind, Problem, Slot, Stage, StageContext, StageError, StageReport};
use crate::data::Shape;
use crate::figures::plot::learning_curve_png;
use crate::ml::backend::DeviceChoice;
use crate::ml::curve::CurveRow;
use crate::ml::declared::{self, ModelChoice};
use crate::ml::defaults;
use crate::ml::models::{Init, ModelSpec};
use crate::ml::train::{self as trainer, EarlyStopping, Plateau, TrainConfig, TrainInputs};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

fn d_batch() -> usize {
    defaults::BATCH_SIZE
}
/// Larger batches do not fit a GPU's memory at 56x56 anyway.
const MAX_BATCH_SIZE: usize = 1 << 16;
fn d_epochs() -> u32 {
    defaults::EPOCHS
}
const MAX_EPOCHS: u32 = 100_000;
fn d_dropout() -> f64 {
    defaults::DROPOUT
}
fn d_test_every() -> u32 {
    defaults::TEST_EVERY
}
fn d_rescale() -> f32 {
    defaults::RESCALE
}

/// Which images the model fits on.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum TrainOn {
    /// The training split (model selection, the report's §3).
    #[default]
    Train,
    /// Training and validation splits (the report's final run on all cleaned data).
    TrainVal,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Train {
    /// A named model or a declared one (`{layers: [...]}`).
    pub model: ModelChoice,
    #[serde(default)]
    pub init: Init,
    #[serde(default = "d_dropout")]
    pub dropout: f64,
    /// ResNets (tl1–tl3, resnet18/34/50): torchvision weights of the same network
    /// (`.pth`/`.pt`/`.safetensors`), relative to the pipeline file; absent = random init.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
    /// resnet18/34/50: `all` (only the head trains), `none` or `until LAYER`; absent = `all`
    /// with weights, `none` without. Its canonical form enters the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze: Option<crate::ml::resnet::Freeze>,
    /// Adam learning rate; default 1e-3 for b1/b2 and 1e-4 for b3 and tl1–tl3 (the report's).
    #[serde(default)]
    pub lr: Option<f64>,
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    #[serde(default = "d_epochs")]
    pub epochs: u32,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub plateau: Option<Plateau>,
    #[serde(default)]
    pub early_stopping: Option<EarlyStopping>,
    /// Balanced accuracy on the test split every N epochs (0 = never).
    #[serde(default = "d_test_every")]
    pub test_every: u32,
    #[serde(default)]
    pub device: DeviceChoice,
    #[serde(default = "d_rescale")]
    pub rescale: f32,
    #[serde(default)]
    pub train_on: TrainOn,
}

/// The class names of the model's labels, in the model directory when its data has a
/// vocabulary (predictions are written with them).
pub const CLASSES_FILE: &str = "classes.json";

/// The class names a model directory records, if any.
pub(crate) fn read_classes(model_dir: &Path) -> Result<Option<Vec<String>>, StageError> {
    let path = model_dir.join(CLASSES_FILE);
    if !path.exists() {
        return Ok(None);
    }
    super::artifacts::read_json(&path).map(Some)
}

impl Train {
    /// The trainer's configuration; `base_dir` (the pipeline file's directory) resolves
    /// `weights`.
    pub fn config(&self, input: Shape, device: DeviceChoice, base_dir: &Path) -> TrainConfig {
        let lr = self.lr.unwrap_or(self.model.kind().default_lr());
        let model = ModelSpec {
            input,
            init: self.init,
            dropout: self.dropout,
            weights: self.weights.as_ref().map(|w| base_dir.join(w)),
            layers: self.model.layers().to_vec(),
            freeze: self.freeze.clone(),
            ..ModelSpec::new(self.model.kind())
        };
        // Adam's betas and epsilon stay TrainConfig::new's (Keras') defaults
        TrainConfig {
            batch_size: self.batch_size,
            seed: self.seed,
            plateau: self.plateau.clone(),
            early_stopping: self.early_stopping.clone(),
            test_every: self.test_every,
            device,
            ..TrainConfig::new(model, lr, self.epochs)
        }
    }
}

impl Stage for Train {
    const KIND: &'static str = "train";
    // 2: curve.png's axes on round (1-2-5) ticks, epochs whole.
    // 3: N-class curve.png says cross-entropy and macro balanced accuracy.
    const VERSION: u32 = 3;
    const OUTPUT: ArtifactKind = ArtifactKind::Model;
    const USES_DEVICE: bool = true;
    /// A training stopped early (pruned) is continued by one with more epochs.
    const EXTENDS: &'static [&'static str] = &["epochs"];
    const INPUTS: &'static [Slot] = &[
        super::required_slot("data", ArtifactKind::Dataset),
        super::required_slot("split", ArtifactKind::Split),
        super::optional_slot("augment", ArtifactKind::Augment),
    ];

    fn check(&self) -> Vec<Problem> {
        // A declared model's layers are checked on the data's shape, with their positions, by
        // the pipeline validator (see `model_problems`).
        let mut problems: Vec<Problem> =
            trainer::validate(&self.config(Shape::default(), self.device, Path::new("")))
                .into_iter()
                .filter(|m| !(self.declared() && m.starts_with("model.")))
                .map(|m| match m.strip_prefix("freeze: ") {
                    Some(rest) => Problem::new("freeze", format!("{rest}{}", self.freeze_hint())),
                    None => Problem::new("", m),
                })
                .collect();
        problems.extend(Problem::above(
            "batch_size",
            self.batch_size,
            MAX_BATCH_SIZE,
        ));
        problems.extend(Problem::above("epochs", self.epochs, MAX_EPOCHS));
        if self.weights.is_some() && !self.model.kind().is_resnet() {
            problems.push(Problem::new(
                "weights",
                format!(
                    "pretrained weights apply to the ResNets (tl1–tl3, resnet18, resnet34, \
                     resnet50) only, not {}",
                    self.model.kind()
                ),
            ));
        }
        problems
    }

    fn external_files(&self, base: &Path) -> Result<Vec<(String, Vec<PathBuf>)>, StageError> {
        Ok(match &self.weights {
            Some(w) => vec![("weights".into(), vec![base.join(w)])],
            None => Vec::new(),
        })
    }

    fn required_paths(&self, base: &Path) -> Vec<(&'static str, PathBuf)> {
        self.weights
            .iter()
            .map(|w| ("weights", base.join(w)))
            .collect()
    }

    fn run(&self, ctx: &StageContext) -> Result<StageReport, StageError> {
        let ds = ctx.dataset("data")?;
        let split = SplitArtifact::read(ctx.input("split")?)?;
        let spec = match ctx.optional_input("augment") {
            Some(dir) => Some(Augment::read(dir)?),
            None => None,
        };
        if let Some(s) = &spec
            && (s.rescale - self.rescale).abs() > f32::EPSILON * self.rescale.abs().max(1.0)
        {
            return Err(StageError::Invalid(format!(
                "the augment input rescales by {} but this stage by {}: set both `rescale` fields alike",
                s.rescale, self.rescale
            )));
        }
        let mut train_idx = to_usize(&split.train);
        if self.train_on == TrainOn::TrainVal {
            train_idx.extend(to_usize(&split.val));
        }
        let val_idx = to_usize(&split.val);
        let test_idx = to_usize(&split.test);
        let mut cfg = self.config(ds.shape, self.device, ctx.base_dir);
        // The number of classes comes with the data (its vocabulary), whose digest is in
        // this stage's key.
        cfg.model.classes = ds.num_classes();
        let inputs = TrainInputs {
            data: &ds,
            train: &train_idx,
            val: &val_idx,
            test: &test_idx,
            augment: spec.as_ref(),
            rescale: self.rescale,
        };
        let bar = ctx.bar(train_idx.len() as u64, "img");
        ctx.write_json("stage.json", self)?;
        // The last epoch's validation loss and balanced accuracy, once the run's observer (a
        // search's pruner) asked to stop after it.
        let stop: Mutex<Option<(f64, f64)>> = Mutex::new(None);
        // Where no bar is drawn (output piped to a log or `tee`), one line per epoch: the bar's
        // message would otherwise never be seen, and a long training would say nothing for
        // minutes.
        let epoch_done = |e: &trainer::EpochDone| {
            if bar.is_hidden() && !e.replayed {
                (ctx.note)(&format!("  {} {e}", bar.prefix()));
            }
            if !(ctx.epoch_done)(e) {
                *stop.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some((e.row.val_loss, e.row.val_bacc));
            }
        };
        let stopped = || *stop.lock().unwrap_or_else(PoisonError::into_inner);
        let stop_hook = |_epoch: u32| stopped().is_some();
        let hooks = trainer::Hooks {
            epoch_done: &epoch_done,
            stop: &stop_hook,
            ..trainer::Hooks::bar(&bar)
        };
        continue_donor(&cfg, ctx);
        let trained = match trainer::train(&cfg, &inputs, ctx.out, ctx.work, &hooks) {
            Err(crate::ml::backend::MlError::Interrupted { epoch }) => match stopped() {
                Some((val_loss, val_bacc)) => {
                    return Err(StageError::Pruned {
                        epoch,
                        epochs: cfg.epochs,
                        val_loss,
                        val_bacc,
                    });
                }
                None => return Err(crate::ml::backend::MlError::Interrupted { epoch }.into()),
            },
            other => other?,
        };
        bar.finish_and_clear();
        if let Some(classes) = &ds.classes {
            ctx.write_json(CLASSES_FILE, classes)?;
        }
        draw_curve(&cfg, &trained.curve, &ctx.out.join(CURVE_PNG))?;
        let summary = &trained.summary;
        // The summary line and metrics are stored in the output: nothing timing-dependent here
        // (throughput and resume point go to `execution`, i.e. the run record only).
        let mut report = StageReport {
            summary: format!(
                "{} epochs, best val bacc {:.4} (epoch {}){}",
                summary.epochs_run,
                summary.best_val_bacc,
                summary.best_bacc_epoch,
                summary
                    .last_test_bacc
                    .map(|t| format!(", test bacc {t:.4}"))
                    .unwrap_or_default()
            ),
            figures: vec![CURVE_PNG.into(), trainer::CURVE_CSV.into()],
            ..Default::default()
        }
        .metric("best_val_bacc", summary.best_val_bacc)
        .metric("best_val_loss", summary.best_val_loss)
        .metric("epochs", summary.epochs_run as f64)
        .metric("params", summary.params as f64)
        .execution("train_img_per_s", trained.images_per_second)
        .execution("train_seconds", trained.seconds);
        if let Some(e) = trained.resumed_from_epoch {
            report = report.execution("resumed_from_epoch", f64::from(e));
        }
        if let Some(t) = summary.last_test_bacc {
            report = report.metric("test_bacc", t);
        }
        Ok(report)
    }
}

impl Train {
    /// " (did you mean `layer4`?)" for an unknown `freeze: until` layer close to a valid one.
    fn freeze_hint(&self) -> String {
        match (&self.freeze, self.model.kind().depth()) {
            (Some(crate::ml::resnet::Freeze::Until(layer)), Some(depth)) => {
                let names = depth.layer_names();
                crate::quote::hint(layer, names.iter().map(String::as_str))
            }
            _ => String::new(),
        }
    }

    pub(crate) fn declared(&self) -> bool {
        matches!(self.model, ModelChoice::Declared(_))
    }

    /// A declared model's problems on images of `input` shape, each at its layer's field
    /// (`model.layers[3]`); none for a named model.
    pub fn model_problems(&self, input: Shape) -> Vec<Problem> {
        if !self.declared() {
            return Vec::new();
        }
        let spec = self.config(input, self.device, Path::new("")).model;
        declared::validate(&spec)
            .into_iter()
            .map(|p| Problem::new(format!("model.{}", p.path), p.message))
            .collect()
    }
}

/// When a checkpoint of this stage's family (the same training with other epochs, stopped
/// early by a pruner) reached further than this stage's own scratch, it is taken over.
/// Best effort: whatever goes wrong, the training starts from its own scratch or from scratch.
fn continue_donor(cfg: &TrainConfig, ctx: &StageContext) {
    let own = trainer::continuable_epoch(ctx.work, cfg).unwrap_or(0);
    let best = ctx
        .donors
        .iter()
        .filter_map(|d| Some((trainer::continuable_epoch(d, cfg)?, d)))
        .filter(|(epoch, _)| *epoch > own)
        .max_by_key(|(epoch, _)| *epoch);
    if let Some((epoch, donor)) = best {
        match trainer::adopt_checkpoint(donor, ctx.work) {
            Ok(_) => {
                tracing::info!(epoch, donor = %donor.display(), "continuing the checkpoint of the same training with other epochs")
            }
            Err(e) => {
                tracing::warn!(donor = %donor.display(), "cannot take over a checkpoint: {e}")
            }
        }
    }
}

/// The learning-curve figure of the model directory (the trainer returns the numbers only).
const CURVE_PNG: &str = "curve.png";

fn draw_curve(cfg: &TrainConfig, rows: &[CurveRow], png: &Path) -> Result<(), StageError> {
    let title = format!(
        "{} (lr {}, batch {})",
        cfg.model.kind.as_str(),
        cfg.lr,
        cfg.batch_size
    );
    learning_curve_png(png, &title, rows, cfg.model.classes).map_err(|e| StageError::Artifact {
        path: png.to_path_buf(),
        message: format!("cannot draw the learning curve: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(json: &str) -> Train {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn weights_resolve_against_the_pipeline_dir_and_enter_the_key() {
        let t = stage(r#"{"model":"tl2","weights":"w/resnet50.pth"}"#);
        let base = Path::new("/pipes");
        let cfg = t.config(Shape::default(), DeviceChoice::Cpu, base);
        assert_eq!(cfg.lr, 1e-4);
        assert_eq!(
            cfg.model.weights,
            Some(PathBuf::from("/pipes/w/resnet50.pth"))
        );
        assert_eq!(
            t.external_files(base).unwrap(),
            vec![(
                "weights".to_string(),
                vec![PathBuf::from("/pipes/w/resnet50.pth")]
            )]
        );
        assert!(t.check().is_empty(), "{:?}", t.check());

        let b = stage(r#"{"model":"b1"}"#);
        assert!(b.external_files(base).unwrap().is_empty());
        assert_eq!(b.config(Shape::default(), DeviceChoice::Cpu, base).lr, 1e-3);
        let bad = stage(r#"{"model":"b3","weights":"w.pth"}"#);
        assert_eq!(bad.check().len(), 1);
    }
}
