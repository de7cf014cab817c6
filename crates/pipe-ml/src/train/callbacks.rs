//! Keras-like callbacks: what `ReduceLROnPlateau` and `EarlyStopping` watch, their settings
//! and counters (the training loop applies them after each epoch's validation).

use crate::curve::CurveRow;
use crate::defaults;
use serde::{Deserialize, Serialize};

/// Which quantity a callback watches.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    /// Validation loss (lower is better).
    #[default]
    ValLoss,
    /// Validation balanced accuracy (higher is better).
    ValBacc,
}

impl Monitor {
    pub(super) fn value(self, row: &CurveRow) -> f64 {
        match self {
            Monitor::ValLoss => row.val_loss,
            Monitor::ValBacc => row.val_bacc,
        }
    }

    /// Keras' `monitor_op(current, best)` with an absolute `min_delta`.
    pub(super) fn improves(self, current: f64, best: Option<f64>, min_delta: f64) -> bool {
        match best {
            None => !current.is_nan(),
            Some(best) => match self {
                Monitor::ValLoss => current < best - min_delta,
                Monitor::ValBacc => current > best + min_delta,
            },
        }
    }
}

pub(super) fn default_factor() -> f64 {
    defaults::PLATEAU_FACTOR
}
pub(super) fn default_plateau_patience() -> u32 {
    defaults::PLATEAU_PATIENCE
}
pub(super) fn default_min_delta() -> f64 {
    defaults::PLATEAU_MIN_DELTA
}

/// Keras `ReduceLROnPlateau` (mode from the monitor, absolute `min_delta`, no cooldown).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Plateau {
    #[serde(default)]
    pub monitor: Monitor,
    /// New lr = lr * factor.
    #[serde(default = "default_factor")]
    pub factor: f64,
    /// Epochs without improvement before reducing.
    #[serde(default = "default_plateau_patience")]
    pub patience: u32,
    #[serde(default = "default_min_delta")]
    pub min_delta: f64,
    /// Lower bound on the learning rate.
    #[serde(default)]
    pub min_lr: f64,
}

impl Default for Plateau {
    /// The report's final run: divide by 10 after 12 epochs without improvement.
    fn default() -> Self {
        Self {
            monitor: Monitor::ValLoss,
            factor: default_factor(),
            patience: default_plateau_patience(),
            min_delta: default_min_delta(),
            min_lr: 0.0,
        }
    }
}

/// Keras `EarlyStopping` (no restore of best weights: the best checkpoints are kept anyway).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EarlyStopping {
    #[serde(default)]
    pub monitor: Monitor,
    pub patience: u32,
    #[serde(default)]
    pub min_delta: f64,
}

/// Keras callback counters.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub(super) struct Watch {
    pub(super) best: Option<f64>,
    pub(super) wait: u32,
}
