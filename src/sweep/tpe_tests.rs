//! TPE against its published behaviour: after its random start it concentrates proposals near
//! the optimum far faster than random search, learns the best of several choices, stays inside
//! integer and log ranges with readable values, and proposes the same values from the same seed
//! and finished trials.

use super::*;

fn axis(s: &str) -> SearchAxis {
    s.parse().unwrap()
}

fn sampler(kind: SamplerKind, axes: &[SearchAxis], trials: usize, seed: u64) -> Sampler {
    Sampler::new(kind, TpeSettings::default(), axes, trials, seed).unwrap()
}

fn num(v: &Variant, i: usize) -> f64 {
    v.values[i].1.parse().unwrap()
}

/// Runs a sequential search of `trials` trials of `f`; every trial completes.
fn search(s: &Sampler, trials: usize, dir: Direction, f: impl Fn(&Variant) -> f64) -> Vec<Trial> {
    let mut history = Vec::new();
    for k in 0..trials {
        let v = s.propose(k, &history, dir).unwrap();
        history.push(Trial {
            values: v.values.iter().map(|(_, x)| x.clone()).collect(),
            outcome: Outcome::Complete(f(&v)),
            curve: Vec::new(),
        });
    }
    history
}

fn variant(t: &Trial, axes: &[SearchAxis]) -> Variant {
    Variant {
        values: axes
            .iter()
            .zip(&t.values)
            .map(|(a, v)| (a.path.clone(), v.clone()))
            .collect(),
    }
}

fn objective(t: &Trial) -> f64 {
    match t.outcome {
        Outcome::Complete(v) => v,
        _ => panic!("not complete"),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn sampler_kinds_parse_and_print() {
    assert_eq!("tpe".parse::<SamplerKind>().unwrap(), SamplerKind::Tpe);
    assert_eq!(
        "random".parse::<SamplerKind>().unwrap(),
        SamplerKind::Random
    );
    assert_eq!(SamplerKind::default(), SamplerKind::Random);
    assert_eq!(SamplerKind::Tpe.to_string(), "tpe");
    let e = "bayes".parse::<SamplerKind>().unwrap_err();
    assert!(e.contains("expected random or tpe"), "{e}");
}

#[test]
fn random_sampling_is_random_search_and_tpe_starts_with_it() {
    let axes = [
        axis("stages.t.lr=1e-5..1e-2:log"),
        axis("stages.t.model=b1|b2|b3"),
    ];
    let drawn = draw(&axes, 30, 4).unwrap();
    let random = sampler(SamplerKind::Random, &axes, 30, 4);
    let tpe = sampler(SamplerKind::Tpe, &axes, 30, 4);
    let f = |v: &Variant| num(v, 0);
    let r = search(&random, 30, Direction::Maximize, f);
    let t = search(&tpe, 30, Direction::Maximize, f);
    for k in 0..30 {
        assert_eq!(variant(&r[k], &axes), drawn[k], "random trial {k}");
    }
    for k in 0..STARTUP_TRIALS {
        assert_eq!(variant(&t[k], &axes), drawn[k], "startup trial {k}");
    }
    assert_ne!(t[STARTUP_TRIALS..], r[STARTUP_TRIALS..]);
}

#[test]
fn proposals_are_reproducible_from_the_seed_and_the_finished_trials() {
    let axes = [axis("stages.t.x=-10..10"), axis("stages.t.k=a|b|c")];
    let f = |v: &Variant| -(num(v, 0) - 3.0).powi(2);
    let a = search(
        &sampler(SamplerKind::Tpe, &axes, 40, 9),
        40,
        Direction::Maximize,
        f,
    );
    let b = search(
        &sampler(SamplerKind::Tpe, &axes, 40, 9),
        40,
        Direction::Maximize,
        f,
    );
    assert_eq!(a, b);
    let c = search(
        &sampler(SamplerKind::Tpe, &axes, 40, 10),
        40,
        Direction::Maximize,
        f,
    );
    assert_ne!(a, c);

    // A resumed search (a new sampler, the history from records) proposes the same trial;
    // failed and running trials in the history change nothing.
    let s = sampler(SamplerKind::Tpe, &axes, 40, 9);
    let next = s.propose(40, &a, Direction::Maximize).unwrap();
    assert_eq!(next, s.propose(40, &a, Direction::Maximize).unwrap());
    let mut noisy = a.clone();
    for (at, outcome) in [(5, Outcome::Failed), (20, Outcome::Running)] {
        noisy.insert(
            at,
            Trial {
                values: vec!["3.0".into(), "c".into()],
                outcome,
                curve: vec![0.9],
            },
        );
    }
    noisy.push(Trial {
        values: vec!["1.0".into(), "a".into()],
        outcome: Outcome::Complete(f64::NAN),
        curve: Vec::new(),
    });
    assert_eq!(next, s.propose(40, &noisy, Direction::Maximize).unwrap());
    // Another trial index draws other candidates.
    assert_ne!(next, s.propose(41, &a, Direction::Maximize).unwrap());
}

/// Over `seeds` searches of `trials` trials with each sampler: the median best value, and the
/// mean objective of the trials after the first `late` (where a learning sampler should have
/// concentrated its proposals), each as (tpe, random).
fn compare(
    axes: &[SearchAxis],
    trials: usize,
    late: usize,
    seeds: u64,
    dir: Direction,
    f: impl Fn(&Variant) -> f64 + Copy,
) -> ((f64, f64), (f64, f64)) {
    let run = |kind| {
        let (mut best, mut late_mean) = (Vec::new(), Vec::new());
        for seed in 0..seeds {
            let h = search(&sampler(kind, axes, trials, seed), trials, dir, f);
            let values: Vec<f64> = h.iter().map(objective).collect();
            best.push(dir.best(&values));
            late_mean.push(values[late..].iter().sum::<f64>() / (trials - late) as f64);
        }
        (median(best), late_mean.iter().sum::<f64>() / seeds as f64)
    };
    let (t, r) = (run(SamplerKind::Tpe), run(SamplerKind::Random));
    ((t.0, r.0), (t.1, r.1))
}

#[test]
fn on_a_quadratic_tpe_concentrates_near_the_optimum_far_faster_than_random() {
    let axes = [axis("stages.t.x=-10..10")];
    let f = |v: &Variant| (num(v, 0) - 3.0).powi(2);
    let (mut near_tpe, mut near_random) = (0, 0);
    for seed in 0..5 {
        for (kind, near) in [
            (SamplerKind::Tpe, &mut near_tpe),
            (SamplerKind::Random, &mut near_random),
        ] {
            let h = search(&sampler(kind, &axes, 50, seed), 50, Direction::Minimize, f);
            *near += h[STARTUP_TRIALS..]
                .iter()
                .filter(|t| objective(t) < 1.0)
                .count();
        }
    }
    // Random search puts 1 trial in 10 within ±1 of the optimum: about 20 of 200.
    assert!(
        near_tpe >= 2 * near_random.max(20),
        "within ±1 of the optimum: tpe {near_tpe}, random {near_random} of 200"
    );
    let ((bt, br), (lt, lr)) = compare(&axes, 50, 30, 7, Direction::Minimize, f);
    assert!(bt < br / 2.0, "median best: tpe {bt}, random {br}");
    assert!(lt < lr / 3.0, "mean of the last 20: tpe {lt}, random {lr}");
}

#[test]
fn on_a_2d_quadratic_with_a_log_axis_tpe_beats_random_search() {
    let axes = [
        axis("stages.t.lr=1e-6..1e-1:log"),
        axis("stages.t.dropout=0..0.8"),
    ];
    // Optimum at lr = 10^-3.5, dropout 0.25.
    let f = |v: &Variant| (num(v, 0).log10() + 3.5).powi(2) + 4.0 * (num(v, 1) - 0.25).powi(2);
    let ((bt, br), (lt, lr)) = compare(&axes, 40, 20, 9, Direction::Minimize, f);
    assert!(bt < br, "median best: tpe {bt}, random {br}");
    assert!(lt < lr / 2.0, "mean of the last 20: tpe {lt}, random {lr}");
}

#[test]
fn on_choices_tpe_learns_the_best_arm() {
    let axes = [axis("stages.t.model=a|b|c|d|e")];
    let reward = |v: &Variant| match v.values[0].1.as_str() {
        "a" => 0.2,
        "b" => 0.8,
        "c" => 0.4,
        "d" => 0.3,
        _ => 0.5,
    };
    let mut picked = 0;
    for seed in 0..5 {
        let h = search(
            &sampler(SamplerKind::Tpe, &axes, 40, seed),
            40,
            Direction::Maximize,
            reward,
        );
        let best = h[20..].iter().filter(|t| t.values[0] == "b").count();
        assert!(best >= 8, "seed {seed}: b in {best} of the last 20 trials");
        picked += best;
    }
    // Random search picks it in a fifth of the trials: 20 of 100.
    assert!(picked >= 60, "b in {picked} of 100 late trials");
}

#[test]
fn on_an_integer_axis_tpe_homes_in_and_proposes_integers_in_range() {
    let axes = [axis("stages.t.batch_size=0..30:int")];
    let f = |v: &Variant| (num(v, 0) - 17.0).abs();
    let ((bt, br), (lt, lr)) = compare(&axes, 40, 20, 7, Direction::Minimize, f);
    assert!(bt <= br, "median best: tpe {bt}, random {br}");
    assert!(
        lt < lr / 2.0,
        "mean distance of the last 20: tpe {lt}, random {lr}"
    );
    for seed in 0..3 {
        let h = search(
            &sampler(SamplerKind::Tpe, &axes, 40, seed),
            40,
            Direction::Minimize,
            f,
        );
        let mut seen = std::collections::BTreeSet::new();
        for t in &h {
            let n: i64 = t.values[0].parse().unwrap();
            assert!((0..=30).contains(&n), "{n}");
            seen.insert(n);
        }
        assert!(seen.len() > 5, "seed {seed}: {seen:?}");
    }
}

#[test]
fn proposals_stay_in_their_ranges_with_four_significant_digits() {
    let axes = [
        axis("stages.t.lr=1e-5..1e-2:log"),
        axis("stages.t.dropout=0.1..0.5"),
        axis("stages.t.batch_size=16..18:int"),
        axis("stages.t.model=b1|b2"),
        axis("stages.t.bias=-3..-1"),
    ];
    // Pushes every axis towards an edge of its range.
    let f = |v: &Variant| num(v, 0).ln() + num(v, 1) + num(v, 2) - num(v, 4);
    let h = search(
        &sampler(SamplerKind::Tpe, &axes, 120, 3),
        120,
        Direction::Maximize,
        f,
    );
    let mut sizes = std::collections::BTreeSet::new();
    for t in &h {
        let v = variant(t, &axes);
        let (lr, d, b) = (num(&v, 0), num(&v, 1), num(&v, 4));
        assert!((1e-5..=1e-2).contains(&lr), "{lr}");
        assert!((0.1..=0.5).contains(&d), "{d}");
        assert!((-3.0..=-1.0).contains(&b), "{b}");
        for x in [lr, d, b] {
            assert_eq!(round_sig(x), x, "{x} has more than 4 significant digits");
        }
        for i in [0, 1, 4] {
            assert!(v.values[i].1.contains(['.', 'e']), "{}", v.values[i].1);
        }
        sizes.insert(v.values[2].1.clone());
        assert!(["b1", "b2"].contains(&v.values[3].1.as_str()));
        assert!(v.overrides().is_ok());
    }
    assert_eq!(sizes.len(), 3, "{sizes:?}");
    // It learnt the edges: most late proposals near the top of lr and dropout.
    let late = &h[80..];
    let high = late
        .iter()
        .filter(|t| t.values[0].parse::<f64>().unwrap() > 1e-3)
        .count();
    assert!(high >= 25, "{high} of 40 late lrs above 1e-3");
}

#[test]
fn maximising_f_proposes_what_minimising_minus_f_does() {
    let axes = [axis("stages.t.x=0..1"), axis("stages.t.y=1..100:log")];
    let f = |v: &Variant| (num(v, 0) - 0.7).powi(2) + num(v, 1).ln();
    let s = sampler(SamplerKind::Tpe, &axes, 30, 5);
    let max = search(&s, 30, Direction::Maximize, |v| -f(v));
    let min = search(&s, 30, Direction::Minimize, f);
    let values = |h: &[Trial]| h.iter().map(|t| t.values.clone()).collect::<Vec<_>>();
    assert_eq!(values(&max), values(&min));
}

#[test]
fn completed_trials_rank_first_then_pruned_ones_by_how_far_they_ran() {
    let t = |outcome| Trial {
        values: Vec::new(),
        outcome,
        curve: Vec::new(),
    };
    let history = [
        t(Outcome::Pruned {
            epoch: 1,
            value: 0.9,
        }),
        t(Outcome::Complete(0.6)),
        t(Outcome::Failed),
        t(Outcome::Pruned {
            epoch: 3,
            value: 0.5,
        }),
        t(Outcome::Complete(0.8)),
        t(Outcome::Running),
        t(Outcome::Pruned {
            epoch: 3,
            value: 0.7,
        }),
        t(Outcome::Complete(f64::NAN)),
        t(Outcome::Complete(0.6)),
    ];
    let order = |dir| {
        ranks(&history, dir)
            .into_iter()
            .map(|(i, _)| i)
            .collect::<Vec<_>>()
    };
    assert_eq!(order(Direction::Maximize), [4, 1, 8, 6, 3, 0]);
    assert_eq!(order(Direction::Minimize), [1, 8, 4, 3, 6, 0]);
    let r = ranks(&history, Direction::Maximize);
    assert_eq!(
        r.iter().map(|(_, r)| *r).collect::<Vec<_>>(),
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    );
}

#[test]
fn the_good_trials_are_a_tenth_of_the_told_ones_and_at_most_25() {
    for n in 1..=2000usize {
        let want = n.div_ceil(10).min(25);
        let got = (n as f64 * good_share(n)).ceil() as usize;
        assert_eq!(got, want, "{n} told trials");
    }
}

#[test]
fn values_that_are_not_the_axis_are_ignored_and_few_finished_trials_mean_a_random_draw() {
    let axes = [axis("stages.t.lr=1e-4..1e-1:log"), axis("stages.t.m=x|y")];
    let s = sampler(SamplerKind::Tpe, &axes, 50, 2);
    let odd = |a: &str, b: &str, v| Trial {
        values: vec![a.into(), b.into()],
        outcome: Outcome::Complete(v),
        curve: Vec::new(),
    };
    // Only 3 finished trials at trial 12 (the others are still running): a random draw.
    let few = vec![
        odd("0.01", "x", 0.5),
        odd("0.001", "y", 0.4),
        odd("1e-4", "x", 0.7),
    ];
    let v = s.propose(12, &few, Direction::Maximize).unwrap();
    assert_eq!(v, s.propose(12, &few, Direction::Maximize).unwrap());
    assert!((1e-4..=1e-1).contains(&num(&v, 0)));
    // Enough finished trials, some with values no axis has: TPE still proposes.
    let mut many: Vec<Trial> = (0..12)
        .map(|i| {
            odd(
                &format!("{}", 10f64.powi(-1 - i % 3)),
                ["x", "y"][i as usize % 2],
                i as f64,
            )
        })
        .collect();
    many.push(odd("-1", "z", 100.0));
    many.push(odd("banana", "x", 101.0));
    many.push(Trial {
        values: Vec::new(),
        outcome: Outcome::Complete(102.0),
        curve: Vec::new(),
    });
    let v = s.propose(15, &many, Direction::Maximize).unwrap();
    assert!((1e-4..=1e-1).contains(&num(&v, 0)));
    assert!(["x", "y"].contains(&v.values[1].1.as_str()));
}

#[test]
fn more_trials_than_the_bound_are_refused() {
    let axes = [axis("stages.t.x=0..1")];
    let e = Sampler::new(SamplerKind::Tpe, TpeSettings::default(), &axes, 1 << 40, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--trials makes"), "{e}");
}

#[test]
fn sampler_choices_parse_with_their_settings_and_print_in_full() {
    let p = |s: &str| s.parse::<SamplerChoice>();
    assert_eq!(p("random").unwrap(), SamplerChoice::default());
    let tpe = p("tpe").unwrap();
    assert_eq!(tpe.kind, SamplerKind::Tpe);
    assert_eq!(tpe.tpe, TpeSettings::default());
    assert_eq!(tpe.to_string(), "tpe:startup=10,candidates=24");
    let small = p("tpe:startup=3, candidates=8").unwrap();
    assert_eq!(
        small.tpe,
        TpeSettings {
            startup: 3,
            candidates: 8
        }
    );
    assert_eq!(p(&small.to_string()).unwrap(), small);
    assert_eq!(SamplerChoice::default().to_string(), "random");
    let err = |s: &str| p(s).unwrap_err();
    assert!(err("bayes").contains("expected random or tpe"));
    assert!(err("tpe:startup=0").contains("startup must be at least 1"));
    assert!(err("tpe:candidates=0").contains("candidates must be at least 1"));
    assert!(err("tpe:warmup=1").contains("tpe has no setting `warmup`"));
    assert!(err("random:startup=1").contains("random has no setting `startup`"));
    assert!(err("tpe:startup").contains("expected KEY=VALUE"));
    assert!(err("tpe:startup=x").contains("startup must be a whole number"));
}

#[test]
fn a_search_knows_which_trials_it_drew_and_from_which_it_learns() {
    let axes = [axis("stages.t.lr=1e-5..1e-2:log")];
    let tpe = Sampler::new(
        SamplerKind::Tpe,
        TpeSettings {
            startup: 3,
            candidates: 24,
        },
        &axes,
        8,
        1,
    )
    .unwrap();
    assert_eq!(tpe.drawn(), draw(&axes, 3, 1).unwrap().as_slice());
    assert!(!tpe.learns_at(2) && tpe.learns_at(3));
    let random = sampler(SamplerKind::Random, &axes, 8, 1);
    assert_eq!(random.drawn().len(), 8);
    assert!(!random.learns_at(7));
}
