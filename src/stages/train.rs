//! `train`: fits B1/B2/B3 on the split's training images (optionally augmented), keeping the
//! best and last checkpoints, the learning curve (CSV + PNG) and the test score every N epochs.

use super::artifacts::{SplitArtifact, to_usize};
use super::augment::Augment;
use super::{ArtifactKind, Problem, Slot, Stage, StageContext, StageError, StageReport};
use crate::data::Shape;
use crate::ml::backend::DeviceChoice;
use crate::ml::models::{Init, ModelKind, ModelSpec};
use crate::ml::train::{self as trainer, EarlyStopping, Plateau, TrainConfig, TrainInputs};
use serde::{Deserialize, Serialize};

fn d_batch() -> usize {
    124
}
fn d_epochs() -> u32 {
    15
}
fn d_dropout() -> f64 {
    0.3
}
fn d_test_every() -> u32 {
    5
}
fn d_rescale() -> f32 {
    1.0 / 255.0
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
    pub model: ModelKind,
    #[serde(default)]
    pub init: Init,
    #[serde(default = "d_dropout")]
    pub dropout: f64,
    /// Adam learning rate; default 1e-3 for b1/b2 and 1e-4 for b3 (the report's).
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

impl Train {
    pub fn config(&self, input: Shape, device: DeviceChoice) -> TrainConfig {
        let lr = self.lr.unwrap_or(match self.model {
            ModelKind::B3 => 1e-4,
            _ => 1e-3,
        });
        TrainConfig {
            model: ModelSpec {
                kind: self.model,
                input,
                init: self.init,
                dropout: self.dropout,
            },
            lr,
            batch_size: self.batch_size,
            epochs: self.epochs,
            seed: self.seed,
            plateau: self.plateau.clone(),
            early_stopping: self.early_stopping.clone(),
            test_every: self.test_every,
            device,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
        }
    }
}

impl Stage for Train {
    const KIND: &'static str = "train";
    const VERSION: u32 = 1;
    const OUTPUT: ArtifactKind = ArtifactKind::Model;
    const INPUTS: &'static [Slot] = &[
        super::required_slot("data", ArtifactKind::Dataset),
        super::required_slot("split", ArtifactKind::Split),
        super::optional_slot("augment", ArtifactKind::Augment),
    ];

    fn check(&self) -> Vec<Problem> {
        trainer::validate(&self.config(Shape::default(), self.device))
            .into_iter()
            .map(|m| Problem::new("", m))
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
        let cfg = self.config(ds.shape, ctx.device.unwrap_or(self.device));
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
        let summary = trainer::train(&cfg, &inputs, ctx.out, ctx.work, &bar, &|_| false)?;
        bar.finish_and_clear();
        let mut report = StageReport {
            summary: format!(
                "{} epochs, best val bacc {:.4} (epoch {}), {:.0} img/s{}",
                summary.epochs_run,
                summary.best_val_bacc,
                summary.best_bacc_epoch,
                summary.train_images_per_second,
                summary
                    .last_test_bacc
                    .map(|t| format!(", test bacc {t:.4}"))
                    .unwrap_or_default()
            ),
            figures: vec!["curve.png".into(), "curve.csv".into()],
            ..Default::default()
        }
        .metric("best_val_bacc", summary.best_val_bacc)
        .metric("best_val_loss", summary.best_val_loss)
        .metric("epochs", summary.epochs_run as f64)
        .metric("train_img_per_s", summary.train_images_per_second)
        .metric("params", summary.params as f64);
        if let Some(t) = summary.last_test_bacc {
            report = report.metric("test_bacc", t);
        }
        Ok(report)
    }
}
