//! The pruners of `--prune`: after each epoch a trial reports its validation metric, and the
//! pruner decides from what is known of the other trials at that moment whether it goes on.
//!
//! - `asha`: asynchronous successive halving (Li et al. 2020) in its stopping form, as Optuna's
//!   `SuccessiveHalvingPruner` and Ray Tune's ASHA run it. Rungs lie at epochs r, r·η, r·η², …;
//!   a trial reaching a rung goes on only when it is among the best ⌊n/η⌋ of the n trials that
//!   reached that rung so far (itself included; the best one while n < η). Asynchronous: no
//!   trial waits for a rung to fill, so about 1/η of the trials pass each rung. A trial's value
//!   at a rung is its best so far, the checkpoint `evaluate` would use.
//! - `median`: Optuna's `MedianPruner`. After `startup` trials completed and past `warmup`
//!   epochs, a trial stops when its best value so far is worse than the median of the completed
//!   trials' values at the same epoch.
//! - `none`: every trial runs to the end.
//!
//! Decisions are pure functions of the trial's curve and the others' (same inputs, same
//! decision), for metrics to maximise or to minimise.

use super::trial::{Direction, Outcome, Trial};
use crate::quote::quote;

/// ASHA's first rung (epochs), when `--prune asha` gives none.
pub const ASHA_MIN_EPOCHS: u32 = 1;
/// ASHA's reduction factor η: a third of the trials pass each rung (Hyperband's default).
pub const ASHA_ETA: u32 = 3;
/// The median rule waits for this many completed trials (Optuna's `n_startup_trials`).
pub const MEDIAN_STARTUP: usize = 5;
/// The median rule never stops a trial in its first this many epochs (`n_warmup_steps`).
pub const MEDIAN_WARMUP: u32 = 0;

/// `--prune`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pruner {
    #[default]
    None,
    /// Rungs at `min_epochs · eta^k`.
    Asha {
        min_epochs: u32,
        eta: u32,
    },
    Median {
        startup: usize,
        warmup: u32,
    },
}

/// What a trial does after an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Continue,
    Prune,
}

impl Pruner {
    /// Whether a trial that reported `curve` (`curve[e - 1]` after epoch `e`) goes on after its
    /// last epoch, given the other trials of the search (finished, pruned or running; the
    /// trial itself not among them).
    pub fn decide(&self, curve: &[f64], others: &[Trial], direction: Direction) -> Decision {
        let epoch = curve.len();
        if epoch == 0 {
            return Decision::Continue;
        }
        let own = direction.best(curve);
        match *self {
            Pruner::None => Decision::Continue,
            Pruner::Asha { min_epochs, eta } => {
                if !is_rung(epoch as u64, min_epochs, eta) {
                    return Decision::Continue;
                }
                let there: Vec<f64> = others
                    .iter()
                    .filter(|t| t.curve.len() >= epoch)
                    .map(|t| t.best_until(epoch, direction))
                    .collect();
                let passing = ((there.len() + 1) / eta as usize).max(1);
                let better = there.iter().filter(|&&v| direction.better(v, own)).count();
                if better < passing {
                    Decision::Continue
                } else {
                    Decision::Prune
                }
            }
            Pruner::Median { startup, warmup } => {
                if epoch <= warmup as usize {
                    return Decision::Continue;
                }
                let complete = |t: &&Trial| matches!(t.outcome, Outcome::Complete(_));
                if others.iter().filter(complete).count() < startup {
                    return Decision::Continue;
                }
                let at: Vec<f64> = others
                    .iter()
                    .filter(complete)
                    .filter_map(|t| t.curve.get(epoch - 1).copied())
                    .filter(|v| !v.is_nan())
                    .collect();
                match median(at) {
                    Some(m) if own.is_nan() || direction.better(m, own) => Decision::Prune,
                    _ => Decision::Continue,
                }
            }
        }
    }

    /// The epochs (below `max_epochs`, where a trial ends anyway) after which this pruner may
    /// stop a trial: where a training must report, or a cluster job end so the driver decides.
    pub fn decision_epochs(&self, max_epochs: u32) -> Vec<u32> {
        match *self {
            Pruner::None => Vec::new(),
            Pruner::Asha { min_epochs, eta } => (1..max_epochs)
                .filter(|&e| is_rung(u64::from(e), min_epochs, eta))
                .collect(),
            Pruner::Median { warmup, .. } => (warmup.saturating_add(1)..max_epochs).collect(),
        }
    }
}

/// Whether `epoch` is one of ASHA's rungs `r · η^k`.
fn is_rung(epoch: u64, min_epochs: u32, eta: u32) -> bool {
    let (r, eta) = (u64::from(min_epochs), u64::from(eta));
    if r == 0 || eta < 2 || epoch < r || !epoch.is_multiple_of(r) {
        return false;
    }
    let mut q = epoch / r;
    while q.is_multiple_of(eta) {
        q /= eta;
    }
    q == 1
}

/// The median (the mean of the middle two of an even count); `None` for no values.
fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

impl std::str::FromStr for Pruner {
    type Err = String;
    /// `none`, `median`, `median:startup=N,warmup=E`, `asha` or `asha:r=E,eta=N`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, params) = match s.split_once(':') {
            Some((n, p)) => (n.trim(), Some(p)),
            None => (s.trim(), None),
        };
        let mut given: Vec<(&str, u64)> = Vec::new();
        for p in params.map(|p| p.split(',')).into_iter().flatten() {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| format!("`{}`: expected KEY=VALUE in `{}`", quote(p), quote(s)))?;
            let v: u64 = v.trim().parse().map_err(|_| {
                format!("`{}`: {} must be a whole number", quote(s), quote(k.trim()))
            })?;
            given.push((k.trim(), v));
        }
        let known: &[&str] = match name {
            "none" => &[],
            "asha" => &["r", "eta"],
            "median" => &["startup", "warmup"],
            _ => return Err(format!("`{}`: expected none, asha or median", quote(s))),
        };
        if let Some((k, _)) = given.iter().find(|(k, _)| !known.contains(k)) {
            return Err(format!(
                "`{}`: {name} has no setting `{}`{}",
                quote(s),
                quote(k),
                if known.is_empty() {
                    String::new()
                } else {
                    format!(" (it has {})", known.join(", "))
                }
            ));
        }
        let get = |k: &str, default: u64| {
            given
                .iter()
                .rev()
                .find(|(g, _)| *g == k)
                .map_or(default, |(_, v)| *v)
        };
        let small = |k: &str, v: u64, min: u64| {
            u32::try_from(v)
                .ok()
                .filter(|&v| u64::from(v) >= min)
                .ok_or_else(|| format!("`{}`: {k} must be from {min} to {}", quote(s), u32::MAX))
        };
        Ok(match name {
            "none" => Pruner::None,
            "asha" => Pruner::Asha {
                min_epochs: small("r", get("r", u64::from(ASHA_MIN_EPOCHS)), 1)?,
                eta: small("eta", get("eta", u64::from(ASHA_ETA)), 2)?,
            },
            _ => Pruner::Median {
                startup: small("startup", get("startup", MEDIAN_STARTUP as u64), 0)? as usize,
                warmup: small("warmup", get("warmup", u64::from(MEDIAN_WARMUP)), 0)?,
            },
        })
    }
}

impl std::fmt::Display for Pruner {
    /// The full form, defaults spelt out (it enters a search's id).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pruner::None => write!(f, "none"),
            Pruner::Asha { min_epochs, eta } => write!(f, "asha:r={min_epochs},eta={eta}"),
            Pruner::Median { startup, warmup } => {
                write!(f, "median:startup={startup},warmup={warmup}")
            }
        }
    }
}

#[cfg(test)]
#[path = "prune_tests.rs"]
mod tests;
