//! What a search knows of its trials, as the sampler ([`super::tpe`]) and the pruners
//! ([`super::prune`]) read it: each trial's values, what became of it, and the metric it
//! reported after each epoch. The driver builds this history from the run records of a search
//! (so a killed search resumes from what its records say) and from trials in flight.

use std::cmp::Ordering;

/// Whether higher or lower values of the objective (and of the per-epoch metric a trial reports
/// for pruning, which must go the same way) are better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    Maximize,
    Minimize,
}

impl Direction {
    /// `--minimize` or not.
    pub fn from_minimize(minimize: bool) -> Self {
        if minimize {
            Direction::Minimize
        } else {
            Direction::Maximize
        }
    }

    /// Orders `a` before `b` when `a` is better; NaN is worse than any number.
    pub fn cmp(self, a: f64, b: f64) -> Ordering {
        match (a.is_nan(), b.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => match self {
                Direction::Maximize => b.total_cmp(&a),
                Direction::Minimize => a.total_cmp(&b),
            },
        }
    }

    /// Whether `a` is strictly better than `b`.
    pub fn better(self, a: f64, b: f64) -> bool {
        self.cmp(a, b) == Ordering::Less
    }

    /// The best of `values` (NaN only when all are NaN or there are none).
    pub fn best(self, values: &[f64]) -> f64 {
        values
            .iter()
            .copied()
            .min_by(|a, b| self.cmp(*a, *b))
            .unwrap_or(f64::NAN)
    }
}

/// What became of a trial.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Started, not finished: its curve so far counts for the pruners, not for the sampler.
    Running,
    /// Ran to the end; the objective's value.
    Complete(f64),
    /// Stopped by the pruner after `epoch` epochs; the metric it last reported.
    Pruned { epoch: u32, value: f64 },
    /// Failed (or reported no objective): ignored by the sampler.
    Failed,
}

/// One trial of a search.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    /// One value per search axis, in the axes' order, as the sampler proposed it (the text
    /// `--set` takes).
    pub values: Vec<String>,
    pub outcome: Outcome,
    /// The per-epoch metric the trial reported: `curve[e - 1]` after epoch `e`.
    pub curve: Vec<f64>,
}

impl Trial {
    /// The best of the trial's metric over its first `epochs` epochs (all it has if fewer).
    pub fn best_until(&self, epochs: usize, direction: Direction) -> f64 {
        direction.best(&self.curve[..epochs.min(self.curve.len())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directions_order_values_and_put_nan_last() {
        let max = Direction::Maximize;
        let min = Direction::Minimize;
        assert!(max.better(0.9, 0.5));
        assert!(min.better(0.5, 0.9));
        assert!(!max.better(0.5, 0.5));
        assert!(max.better(0.1, f64::NAN) && min.better(0.1, f64::NAN));
        assert!(!max.better(f64::NAN, 0.1) && !min.better(f64::NAN, 0.1));
        assert_eq!(max.best(&[0.2, f64::NAN, 0.7, 0.4]), 0.7);
        assert_eq!(min.best(&[0.2, f64::NAN, 0.7, 0.4]), 0.2);
        assert!(max.best(&[]).is_nan());
        assert!(max.best(&[f64::NAN]).is_nan());
        assert_eq!(Direction::from_minimize(true), min);
        assert_eq!(Direction::from_minimize(false), max);
    }

    #[test]
    fn best_until_looks_at_the_first_epochs_only() {
        let t = Trial {
            values: vec![],
            outcome: Outcome::Running,
            curve: vec![0.5, 0.7, 0.6, 0.9],
        };
        assert_eq!(t.best_until(3, Direction::Maximize), 0.7);
        assert_eq!(t.best_until(10, Direction::Maximize), 0.9);
        assert_eq!(t.best_until(2, Direction::Minimize), 0.5);
        assert!(t.best_until(0, Direction::Maximize).is_nan());
    }
}
