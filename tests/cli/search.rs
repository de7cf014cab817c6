//! Live searches: `--sampler tpe` proposes trials from the finished ones, reproducibly, and
//! `--prune` stops poor trials early, keeping their checkpoints.

use super::*;

/// Synthetic faces → split → b1 → its test evaluation (`epochs` epochs).
fn training(epochs: u32) -> String {
    format!(
        "\
name: t
stages:
  faces: {{kind: source, format: synthetic, count: 160, height: 24, width: 24, exact_duplicates: 0, near_duplicates: 0, conflicting_duplicates: 0}}
  split: {{kind: split, inputs: {{data: faces}}}}
  train: {{kind: train, model: b1, epochs: {epochs}, batch_size: 32, inputs: {{data: faces, split: split}}}}
  evaluate: {{kind: evaluate, on: test, threshold: tune, inputs: {{model: train, data: faces, split: split}}}}
"
    )
}

fn env_with(epochs: u32) -> Env {
    let env = Env::new();
    env.write("t.yaml", &training(epochs));
    env
}

/// Each record's (variant values, objective) in the order the trials started.
fn trials(env: &Env, stage: &str, metric: &str) -> Vec<(String, Option<f64>)> {
    records(env)
        .iter()
        .map(|r| {
            (
                r["variant"].to_string(),
                r["stages"][stage]["report"]["metrics"][metric].as_f64(),
            )
        })
        .collect()
}

const TPE: [&str; 14] = [
    "run",
    "t.yaml",
    "--search",
    "stages.train.lr=1e-4..1e-1:log",
    "--search",
    "stages.train.dropout=0.1|0.3|0.5",
    "--trials",
    "5",
    "--seed",
    "3",
    "--sampler",
    "tpe:startup=2",
    "--objective",
    "evaluate.roc_auc",
];

#[test]
fn a_tpe_search_proposes_from_finished_trials_and_is_reproducible() {
    let a = env_with(1);
    let out = a.ok(&TPE);
    assert!(out.contains("  variant   1  lr="), "{out}");
    assert!(out.contains("  variant   2  lr="), "{out}");
    assert!(
        out.contains("  variants 3–5: proposed by tpe from the trials finished before them"),
        "{out}"
    );
    assert!(out.contains("best (highest): variant "), "{out}");
    let first = trials(&a, "evaluate", "roc_auc");
    assert_eq!(first.len(), 5, "{out}");
    for (values, auc) in &first {
        assert!(auc.is_some(), "{values}");
        let v: serde_json::Value = serde_json::from_str(values).unwrap();
        let lr: f64 = v["stages.train.lr"].as_str().unwrap().parse().unwrap();
        assert!((1e-4..=1e-1).contains(&lr), "{lr}");
        let d = v["stages.train.dropout"].as_str().unwrap();
        assert!(["0.1", "0.3", "0.5"].contains(&d), "{d}");
    }
    let sweep = records(&a)[0]["sweep"].as_str().unwrap().to_string();
    assert!(records(&a).iter().all(|r| r["sweep"] == sweep.as_str()));

    // A fresh cache, the same seed: the same trials, proposed from the same finished ones.
    let b = env_with(1);
    b.ok(&TPE);
    assert_eq!(trials(&b, "evaluate", "roc_auc"), first);
    assert_eq!(records(&b)[0]["sweep"], sweep.as_str());

    // Rerun in the same cache: every trial proposed again and found in the cache.
    let again = a.ok(&TPE);
    assert!(ran(&again).is_empty(), "{again}");
    // Random search over the same ranges is another search (another id).
    let mut random = TPE.to_vec();
    random[11] = "random";
    let dry = a.ok(&[random.as_slice(), &["--dry-run"]].concat());
    assert!(!dry.contains(&sweep), "{dry}");
}

#[test]
fn unknown_samplers_and_pruners_are_refused_with_exit_2() {
    let env = env_with(1);
    let with = |flag: &str, value: &str| {
        let mut args = TPE.to_vec();
        args.truncate(10);
        args.extend([flag, value, "--objective", "evaluate.roc_auc"]);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        env.err(&args, 2)
    };
    let e = run(with("--sampler", "bayes"));
    assert!(e.contains("`bayes`: expected random or tpe"), "{e}");
    let e = run(with("--sampler", "tpe:warmup=3"));
    assert!(e.contains("tpe has no setting `warmup`"), "{e}");
    let e = run(with("--sampler", "tpe:startup=0"));
    assert!(e.contains("startup must be at least 1"), "{e}");
    let e = run(with("--prune", "hyperband"));
    assert!(e.contains("expected none, asha or median"), "{e}");
    // Only a search has a sampler.
    env.err(&["run", "t.yaml", "--sampler", "tpe"], 2);
    assert!(!env.path("cache/runs").exists());
}
