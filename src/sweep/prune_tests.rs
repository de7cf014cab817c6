use super::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const MAX: Direction = Direction::Maximize;
const MIN: Direction = Direction::Minimize;
const ASHA: Pruner = Pruner::Asha {
    min_epochs: 1,
    eta: 3,
};

fn trial(outcome: Outcome, curve: &[f64]) -> Trial {
    Trial {
        values: Vec::new(),
        outcome,
        curve: curve.to_vec(),
    }
}

fn running(curve: &[f64]) -> Trial {
    trial(Outcome::Running, curve)
}

fn complete(curve: &[f64]) -> Trial {
    trial(Outcome::Complete(*curve.last().unwrap()), curve)
}

#[test]
fn pruners_parse_with_their_defaults_and_print_in_full() {
    let p = |s: &str| s.parse::<Pruner>().unwrap();
    assert_eq!(p("none"), Pruner::None);
    assert_eq!(Pruner::default(), Pruner::None);
    assert_eq!(p("asha"), ASHA);
    assert_eq!(
        p("asha:r=2, eta=4"),
        Pruner::Asha {
            min_epochs: 2,
            eta: 4
        }
    );
    assert_eq!(
        p("median"),
        Pruner::Median {
            startup: 5,
            warmup: 0
        }
    );
    assert_eq!(
        p("median:warmup=2"),
        Pruner::Median {
            startup: 5,
            warmup: 2
        }
    );
    for s in ["none", "asha", "asha:eta=2", "median:startup=0,warmup=3"] {
        assert_eq!(p(&p(s).to_string()), p(s), "{s}");
    }
    assert_eq!(p("asha").to_string(), "asha:r=1,eta=3");
    let err = |s: &str| s.parse::<Pruner>().unwrap_err();
    assert!(err("hyperband").contains("expected none, asha or median"));
    assert!(
        err("asha:r=0").contains("r must be from 1"),
        "{}",
        err("asha:r=0")
    );
    assert!(err("asha:eta=1").contains("eta must be from 2"));
    assert!(err("asha:eta=99999999999").contains("eta must be from 2"));
    assert!(err("asha:warmup=1").contains("asha has no setting `warmup` (it has r, eta)"));
    assert!(err("none:r=1").contains("none has no setting `r`"));
    assert!(err("asha:r").contains("expected KEY=VALUE"));
    assert!(err("asha:r=a").contains("r must be a whole number"));
}

#[test]
fn asha_rungs_lie_at_r_times_powers_of_eta() {
    assert_eq!(ASHA.decision_epochs(15), [1, 3, 9]);
    assert_eq!(ASHA.decision_epochs(9), [1, 3], "the last epoch is no rung");
    let r2 = Pruner::Asha {
        min_epochs: 2,
        eta: 2,
    };
    assert_eq!(r2.decision_epochs(40), [2, 4, 8, 16, 32]);
    let median = Pruner::Median {
        startup: 5,
        warmup: 2,
    };
    assert_eq!(median.decision_epochs(6), [3, 4, 5]);
    assert!(Pruner::None.decision_epochs(15).is_empty());
    assert!(!is_rung(0, 1, 3) && !is_rung(6, 1, 3) && !is_rung(1, 2, 2) && !is_rung(6, 2, 2));
}

/// Li et al.'s asynchronous promotion rule on trials reaching rung 1 one after another: each
/// goes on when it is among the best ⌊n/η⌋ of the n there (the best one while n < η).
#[test]
fn asha_keeps_the_best_third_of_those_at_a_rung_as_they_arrive() {
    let values = [0.5, 0.4, 0.6, 0.3, 0.7, 0.55, 0.2, 0.65, 0.1];
    let run = |dir: Direction, sign: f64| {
        let mut others: Vec<Trial> = Vec::new();
        let mut went_on = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let curve = [sign * v];
            if ASHA.decide(&curve, &others, dir) == Decision::Continue {
                went_on.push(i);
            }
            others.push(running(&curve));
        }
        went_on
    };
    assert_eq!(run(MAX, 1.0), [0, 2, 4, 7]);
    assert_eq!(
        run(MIN, -1.0),
        [0, 2, 4, 7],
        "minimising the negated metric"
    );
}

#[test]
fn asha_passes_about_one_in_eta_per_rung_and_never_stops_the_best_trial() {
    const N: usize = 2000;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let epochs = 15;
    let mut history: Vec<Trial> = Vec::new();
    let mut quality = Vec::new();
    for _ in 0..N {
        // A learning curve rising towards the trial's quality, with a little noise.
        let q: f64 = rng.random();
        let mut curve = Vec::new();
        let outcome = loop {
            let e = curve.len() as f64 + 1.0;
            curve.push(q * (1.0 - 0.5f64.powf(e)) + 0.01 * rng.random::<f64>());
            if curve.len() == epochs {
                break Outcome::Complete(*curve.last().unwrap());
            }
            if ASHA.decide(&curve, &history, MAX) == Decision::Prune {
                break Outcome::Pruned {
                    epoch: curve.len() as u32,
                    value: *curve.last().unwrap(),
                };
            }
        };
        quality.push(q);
        history.push(trial(outcome, &curve));
    }
    let reached = |e: usize| history.iter().filter(|t| t.curve.len() > e).count() as f64 / N as f64;
    // 1/3, 1/9 and 1/27 (a little more: the first trials at a rung pass easily).
    let (past1, past3, past9) = (reached(1), reached(3), reached(9));
    assert!((0.29..0.40).contains(&past1), "{past1} went past rung 1");
    assert!((0.08..0.16).contains(&past3), "{past3} went past rung 3");
    assert!((0.02..0.07).contains(&past9), "{past9} went past rung 9");
    let spent: usize = history.iter().map(|t| t.curve.len()).sum();
    assert!(
        spent * 100 < N * epochs * 25,
        "{spent} epochs of {} without pruning",
        N * epochs
    );
    let best = (0..N)
        .max_by(|&a, &b| quality[a].total_cmp(&quality[b]))
        .unwrap();
    assert_eq!(
        history[best].curve.len(),
        epochs,
        "the best trial ran to the end"
    );
}

#[test]
fn asha_compares_best_values_so_far_of_the_trials_that_reached_the_rung() {
    let others = [
        running(&[0.6, 0.6, 0.6]),
        running(&[0.5, 0.5, 0.5]),
        running(&[0.9]),
    ];
    // At rung 3 only the first two count (n = 3, one goes on): 0.9 early beats 0.6.
    assert_eq!(
        ASHA.decide(&[0.9, 0.2, 0.3], &others, MAX),
        Decision::Continue
    );
    assert_eq!(
        ASHA.decide(&[0.5, 0.55, 0.58], &others, MAX),
        Decision::Prune
    );
    // Epoch 2 is no rung.
    assert_eq!(ASHA.decide(&[0.0, 0.0], &others, MAX), Decision::Continue);
    // A NaN metric loses to any number, but alone at a rung it goes on.
    assert_eq!(ASHA.decide(&[f64::NAN], &others, MAX), Decision::Prune);
    assert_eq!(ASHA.decide(&[f64::NAN], &[], MAX), Decision::Continue);
    assert_eq!(
        Pruner::None.decide(&[f64::NAN], &others, MAX),
        Decision::Continue
    );
    assert_eq!(ASHA.decide(&[], &others, MAX), Decision::Continue);
}

#[test]
fn the_median_rule_stops_a_trial_worse_than_the_completed_trials_median() {
    let median = Pruner::Median {
        startup: 5,
        warmup: 1,
    };
    let done: Vec<Trial> = [0.1, 0.2, 0.3, 0.4, 0.5]
        .iter()
        .map(|&v| complete(&[v / 2.0, v, v]))
        .collect();
    // Median at epoch 2: 0.3.
    assert_eq!(median.decide(&[0.1, 0.25], &done, MAX), Decision::Prune);
    assert_eq!(
        median.decide(&[0.1, 0.3], &done, MAX),
        Decision::Continue,
        "a tie"
    );
    assert_eq!(
        median.decide(&[0.35, 0.25], &done, MAX),
        Decision::Continue,
        "its best so far counts"
    );
    assert_eq!(
        median.decide(&[0.4, f64::NAN], &done, MAX),
        Decision::Continue
    );
    assert_eq!(median.decide(&[0.1, f64::NAN], &done, MAX), Decision::Prune);
    assert_eq!(
        median.decide(&[f64::NAN, f64::NAN], &done, MAX),
        Decision::Prune
    );
    // Warm-up: epoch 1 is never judged.
    assert_eq!(median.decide(&[0.0], &done, MAX), Decision::Continue);
    // Fewer than `startup` completed: no judgement; running and pruned trials do not count.
    let mut few = done[..4].to_vec();
    few.push(running(&[0.9, 0.9]));
    few.push(trial(
        Outcome::Pruned {
            epoch: 2,
            value: 0.9,
        },
        &[0.9, 0.9],
    ));
    assert_eq!(median.decide(&[0.0, 0.0], &few, MAX), Decision::Continue);
    // Past the completed trials' length: no values there, no judgement.
    assert_eq!(
        median.decide(&[0.0, 0.0, 0.0, 0.0], &done, MAX),
        Decision::Continue
    );
    // Minimising: lower is better, the same median.
    assert_eq!(median.decide(&[0.5, 0.35], &done, MIN), Decision::Prune);
    assert_eq!(median.decide(&[0.5, 0.25], &done, MIN), Decision::Continue);
    // An even count: the mean of the middle two (0.25 and 0.3 at epoch 2 of six).
    let mut six = done.clone();
    six.push(complete(&[0.0, 0.25, 0.25]));
    assert_eq!(median.decide(&[0.0, 0.28], &six, MAX), Decision::Continue);
    assert_eq!(median.decide(&[0.0, 0.27], &six, MAX), Decision::Prune);
    assert_eq!(median.decide(&[0.0, 0.28], &done, MAX), Decision::Prune);
}
