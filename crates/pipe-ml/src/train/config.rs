//! The training configuration ([`TrainConfig`]) with its serde defaults, and its validation.

use crate::backend::DeviceChoice;
use crate::defaults;
use crate::models::{self, ModelSpec};
use serde::{Deserialize, Serialize};

use super::*;

pub(super) fn default_batch_size() -> usize {
    defaults::BATCH_SIZE
}
pub(super) fn default_test_every() -> u32 {
    defaults::TEST_EVERY
}
pub(super) fn default_beta1() -> f64 {
    defaults::ADAM_BETA1
}
pub(super) fn default_beta2() -> f64 {
    defaults::ADAM_BETA2
}
pub(super) fn default_epsilon() -> f64 {
    defaults::ADAM_EPSILON
}

/// Everything that determines a training run (with the data and splits).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub model: ModelSpec,
    /// Initial Adam learning rate.
    pub lr: f64,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    pub epochs: u32,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub plateau: Option<Plateau>,
    #[serde(default)]
    pub early_stopping: Option<EarlyStopping>,
    /// Score the test split every this many epochs (and at the last); 0 = never.
    #[serde(default = "default_test_every")]
    pub test_every: u32,
    #[serde(default)]
    pub device: DeviceChoice,
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    #[serde(default = "default_epsilon")]
    pub epsilon: f64,
}

impl TrainConfig {
    /// The report's settings ([`defaults`]: batch 124, Keras Adam, test every 5 epochs) for `model`.
    pub fn new(model: ModelSpec, lr: f64, epochs: u32) -> Self {
        Self {
            model,
            lr,
            batch_size: default_batch_size(),
            epochs,
            seed: 0,
            plateau: None,
            early_stopping: None,
            test_every: default_test_every(),
            device: DeviceChoice::default(),
            beta1: default_beta1(),
            beta2: default_beta2(),
            epsilon: default_epsilon(),
        }
    }
}

/// Every problem with `cfg`, all at once (empty when valid).
pub fn validate(cfg: &TrainConfig) -> Vec<String> {
    let mut p = models::validate(&cfg.model);
    let positive = |v: f64| v.is_finite() && v > 0.0;
    if !positive(cfg.lr) {
        p.push(format!("lr: {} must be a positive number", cfg.lr));
    }
    if cfg.batch_size == 0 {
        p.push("batch_size: must be at least 1".into());
    }
    if cfg.epochs == 0 {
        p.push("epochs: must be at least 1".into());
    }
    for (name, v) in [("beta1", cfg.beta1), ("beta2", cfg.beta2)] {
        if !(0.0..1.0).contains(&v) {
            p.push(format!("{name}: {v} must be in [0, 1)"));
        }
    }
    if !positive(cfg.epsilon) {
        p.push(format!(
            "epsilon: {} must be a positive number",
            cfg.epsilon
        ));
    }
    if let Some(pl) = &cfg.plateau {
        if !(pl.factor > 0.0 && pl.factor < 1.0) {
            p.push(format!("plateau.factor: {} must be in (0, 1)", pl.factor));
        }
        if !(pl.min_delta >= 0.0 && pl.min_delta.is_finite()) {
            p.push(format!("plateau.min_delta: {} must be >= 0", pl.min_delta));
        }
        if !(pl.min_lr >= 0.0 && pl.min_lr.is_finite()) {
            p.push(format!("plateau.min_lr: {} must be >= 0", pl.min_lr));
        }
    }
    if let Some(es) = &cfg.early_stopping
        && !(es.min_delta >= 0.0 && es.min_delta.is_finite())
    {
        p.push(format!(
            "early_stopping.min_delta: {} must be >= 0",
            es.min_delta
        ));
    }
    p
}
