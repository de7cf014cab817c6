//! A search's trials while it runs, shared by the threads of up to `-j` trials in flight: the
//! driver registers each trial it starts and what became of it, a trial's training reports its
//! validation curve after every epoch and hears whether to go on, and the sampler proposes the
//! next trial from a snapshot. Trials finished before (read back from the run records of a
//! killed search) seed it, so a resumed search decides as the first run would have.

use super::prune::{Decision, Pruner};
use super::trial::{Direction, Outcome, Trial};
use std::sync::{Mutex, MutexGuard, PoisonError};

#[derive(Debug)]
pub struct Study {
    pruner: Pruner,
    direction: Direction,
    trials: Mutex<Vec<Trial>>,
}

impl Study {
    /// A study whose first trials are `known` (in trial order).
    pub fn new(pruner: Pruner, direction: Direction, known: Vec<Trial>) -> Study {
        Study {
            pruner,
            direction,
            trials: Mutex::new(known),
        }
    }

    pub fn pruner(&self) -> Pruner {
        self.pruner
    }

    pub fn direction(&self) -> Direction {
        self.direction
    }

    fn trials(&self) -> MutexGuard<'_, Vec<Trial>> {
        self.trials.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a running trial with its values; its index.
    pub fn start(&self, values: Vec<String>) -> usize {
        let mut trials = self.trials();
        trials.push(Trial {
            values,
            outcome: Outcome::Running,
            curve: Vec::new(),
        });
        trials.len() - 1
    }

    /// Trial `trial` reports its whole curve so far (`curve[e - 1]` after epoch `e`: a training
    /// resumed from a checkpoint reports the epochs it did not run too); whether it goes on.
    /// A pruned trial is recorded as such, with its last metric. A trial that is not running
    /// (unknown, finished) is told to go on and nothing is recorded.
    pub fn report(&self, trial: usize, curve: &[f64]) -> Decision {
        let mut trials = self.trials();
        if trials
            .get(trial)
            .is_none_or(|t| t.outcome != Outcome::Running)
        {
            return Decision::Continue;
        }
        trials[trial].curve = curve.to_vec();
        let others: Vec<Trial> = trials
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != trial)
            .map(|(_, t)| t.clone())
            .collect();
        let decision = self.pruner.decide(curve, &others, self.direction);
        if decision == Decision::Prune
            && let Some(&value) = curve.last()
        {
            trials[trial].outcome = Outcome::Pruned {
                epoch: curve.len() as u32,
                value,
            };
        }
        decision
    }

    /// Trial `trial`'s whole curve, known once it ended (a cached training reports no epochs
    /// while it "runs": its curve is read back from its output).
    pub fn set_curve(&self, trial: usize, curve: Vec<f64>) {
        if let Some(t) = self.trials().get_mut(trial) {
            t.curve = curve;
        }
    }

    /// What became of trial `trial` (a pruned trial stays pruned).
    pub fn finish(&self, trial: usize, outcome: Outcome) {
        if let Some(t) = self.trials().get_mut(trial)
            && t.outcome == Outcome::Running
        {
            t.outcome = outcome;
        }
    }

    /// Every trial so far, in trial order.
    pub fn snapshot(&self) -> Vec<Trial> {
        self.trials().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASHA: Pruner = Pruner::Asha {
        min_epochs: 1,
        eta: 3,
    };

    #[test]
    fn trials_report_their_curves_and_the_pruned_stay_pruned() {
        let known = vec![Trial {
            values: vec!["0.1".into()],
            outcome: Outcome::Complete(0.9),
            curve: vec![0.8, 0.9, 0.9],
        }];
        let study = Study::new(ASHA, Direction::Maximize, known);
        let a = study.start(vec!["0.2".into()]);
        assert_eq!(a, 1);
        // Two at rung 1, one goes on: the better.
        assert_eq!(study.report(a, &[0.5]), Decision::Prune);
        assert_eq!(
            study.snapshot()[a].outcome,
            Outcome::Pruned {
                epoch: 1,
                value: 0.5
            }
        );
        study.finish(a, Outcome::Complete(0.5));
        assert!(matches!(
            study.snapshot()[a].outcome,
            Outcome::Pruned { .. }
        ));
        assert_eq!(study.report(a, &[0.99]), Decision::Continue, "not running");
        assert_eq!(study.snapshot()[a].curve, [0.5]);

        let b = study.start(vec!["0.3".into()]);
        assert_eq!(
            study.report(b, &[0.85]),
            Decision::Continue,
            "best of 3 at rung 1"
        );
        assert_eq!(
            study.report(b, &[0.85, 0.86]),
            Decision::Continue,
            "no rung"
        );
        assert_eq!(study.report(b, &[0.85, 0.86, 0.95]), Decision::Continue);
        study.finish(b, Outcome::Complete(0.95));
        let s = study.snapshot();
        assert_eq!(s[b].outcome, Outcome::Complete(0.95));
        assert_eq!(s[b].curve, [0.85, 0.86, 0.95]);
        assert_eq!(study.report(7, &[0.1]), Decision::Continue, "unknown trial");
    }

    #[test]
    fn trials_in_flight_report_from_several_threads() {
        let study = Study::new(Pruner::None, Direction::Minimize, Vec::new());
        std::thread::scope(|scope| {
            for i in 0..8 {
                let study = &study;
                scope.spawn(move || {
                    let t = study.start(vec![i.to_string()]);
                    let mut curve = Vec::new();
                    for e in 0..5 {
                        curve.push(f64::from(i * 10 + e));
                        assert_eq!(study.report(t, &curve), Decision::Continue);
                    }
                    study.finish(t, Outcome::Complete(curve[4]));
                });
            }
        });
        let s = study.snapshot();
        assert_eq!(s.len(), 8);
        for t in &s {
            let i: f64 = t.values[0].parse().unwrap();
            assert_eq!(t.outcome, Outcome::Complete(i * 10.0 + 4.0));
            assert_eq!(t.curve.len(), 5);
        }
    }
}
