//! Live searches: `--sampler tpe` proposes trials from the finished ones, reproducibly, and
//! `--prune` stops poor trials early, keeping their checkpoints.

use super::*;

/// Synthetic faces → split → b1 → its test evaluation (`epochs` epochs).
pub(super) fn training(epochs: u32) -> String {
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

pub(super) fn env_with(epochs: u32) -> Env {
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

/// A search over learning rates as wide as to make some trials hopeless, pruned by ASHA at
/// epochs 1 and 2 of 3, ranked by the training's own validation loss.
pub(super) const ASHA: [&str; 14] = [
    "run",
    "t.yaml",
    "--search",
    "stages.train.lr=1e-5..3e-1:log",
    "--trials",
    "6",
    "--seed",
    "5",
    "--prune",
    "asha:r=1,eta=2",
    "--objective",
    "train.best_val_loss",
    "--minimize",
    "-j1",
];

#[test]
fn asha_prunes_poor_trials_keeps_their_checkpoints_and_a_longer_run_resumes_one() {
    let env = env_with(3);
    let out = env.ok(&ASHA);
    let recs = records(&env);
    assert_eq!(recs.len(), 6, "{out}");
    let pruned: Vec<&serde_json::Value> = recs
        .iter()
        .filter(|r| r["stages"]["train"]["outcome"] == "pruned")
        .collect();
    assert!(!pruned.is_empty(), "some trial is pruned: {out}");
    assert!(pruned.len() < 6, "the first trial never is: {out}");
    for r in &pruned {
        // Not a failure: the run is ok, its evaluation never started.
        assert_eq!(r["ok"], true, "{r}");
        let train = &r["stages"]["train"];
        assert!(train["error"].is_null(), "{train}");
        let m = &train["report"]["metrics"];
        let epoch = m["pruned_epoch"].as_f64().unwrap();
        assert!(epoch == 1.0 || epoch == 2.0, "{m}");
        assert_eq!(m["epochs"].as_f64(), Some(3.0));
        assert!(m["val_loss"].as_f64().unwrap().is_finite(), "{m}");
        assert!(r["stages"].get("evaluate").is_none(), "{r}");
        // Its checkpoint stays in the cache's scratch.
        let key = train["key"].as_str().unwrap();
        assert!(
            env.path(&format!("cache/work/{key}/state.json")).is_file(),
            "{key}"
        );
    }
    assert!(out.contains("  pruned  train"), "{out}");
    assert!(out.contains("pruned after epoch"), "{out}");
    let complete = recs
        .iter()
        .filter(|r| r["stages"]["train"]["outcome"] == "ran")
        .count();
    assert_eq!(complete + pruned.len(), 6);

    // `compare` lists the pruned trials, marked, with the epoch they stopped after.
    let table = env.ok(&["compare", "t.yaml"]);
    let epoch = pruned[0]["stages"]["train"]["report"]["metrics"]["pruned_epoch"]
        .as_f64()
        .unwrap();
    assert!(
        table.contains(&format!("*train pruned after epoch {epoch} of 3*")),
        "{table}"
    );

    // `gc` keeps the checkpoint of a pruned trial a kept record names.
    let key = pruned[0]["stages"]["train"]["key"].as_str().unwrap();
    env.ok(&["gc", "--keep-runs", "100"]);
    assert!(env.path(&format!("cache/work/{key}/state.json")).is_file());

    // The pruned trial's configuration with more epochs continues its checkpoint.
    let lr = pruned[0]["variant"]["stages.train.lr"].as_str().unwrap();
    let out = env.ok(&[
        "run",
        "t.yaml",
        "--set",
        &format!("stages.train.lr={lr}"),
        "--set",
        "stages.train.epochs=4",
    ]);
    let rec = latest_record(&env);
    assert_eq!(rec["stages"]["train"]["outcome"], "ran", "{out}");
    assert_eq!(
        rec["stages"]["train"]["report"]["execution"]["resumed_from_epoch"].as_f64(),
        Some(epoch),
        "{out}"
    );
    assert_eq!(
        rec["stages"]["train"]["report"]["metrics"]["epochs"].as_f64(),
        Some(4.0)
    );

    // The search again: finished trials are cache hits (their curves read from their models),
    // pruned ones replay their checkpoints' epochs and are pruned again at the same epoch,
    // without training one.
    let again = env.ok(&ASHA);
    let all = records(&env);
    assert_eq!(all.len(), 13, "{again}");
    assert!(!again.contains("train epoch"), "no epoch trained: {again}");
    assert!(!ran(&again).contains(&"train".to_string()), "{again}");
    let outcome = |r: &serde_json::Value| {
        let t = &r["stages"]["train"];
        (
            r["variant"].to_string(),
            t["outcome"] == "pruned",
            t["report"]["metrics"]["pruned_epoch"].clone(),
        )
    };
    let first: Vec<_> = all[..6].iter().map(outcome).collect();
    let rerun: Vec<_> = all[7..].iter().map(outcome).collect();
    assert_eq!(rerun, first);
}

#[test]
fn pruning_needs_one_training_upstream_of_the_objective() {
    let env = env_with(1);
    let e = env.err(
        &[
            "run",
            "t.yaml",
            "--search",
            "stages.train.lr=1e-4..1e-2:log",
            "--trials",
            "2",
            "--prune",
            "median",
            "--objective",
            "split.train",
        ],
        2,
    );
    assert!(e.contains("--prune: no train stage feeds `split`"), "{e}");
    assert!(!env.path("cache/runs").exists());
}

/// A TPE search of 4 one-at-a-time trials of 2 epochs, learning from trial 3 on.
pub(super) fn resumable(extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = TPE.iter().map(|s| s.to_string()).collect();
    a[7] = "4".into();
    a.push("-j1".into());
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// Starts `args` and sends `signal` to the driver once the first trial finished (the second
/// started); returns its exit code.
pub(super) fn killed_after_first_trial(env: &Env, args: &[String], signal: &str) -> Option<i32> {
    use std::io::{BufRead, BufReader};
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = env
        .cmd(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let second = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.trim_start().starts_with("variant 2/4"));
    assert!(second, "the search ended before its second trial");
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success()
    );
    std::thread::spawn(move || lines.for_each(drop));
    child.wait().unwrap().code()
}

/// Each record's variant and its training's outcome, in trial order.
pub(super) fn outcomes(recs: &[serde_json::Value]) -> Vec<(String, String)> {
    recs.iter()
        .map(|r| {
            (
                r["variant"].to_string(),
                r["stages"]["train"]["outcome"]
                    .as_str()
                    .unwrap_or("none")
                    .to_string(),
            )
        })
        .collect()
}

#[test]
fn a_killed_search_resumes_from_its_finished_trials() {
    let args = resumable(&[]);
    let all: Vec<&str> = args.iter().map(String::as_str).collect();
    let whole = env_with(2);
    whole.ok(&all);
    let want = outcomes(&records(&whole));
    assert_eq!(want.len(), 4);

    let env = env_with(2);
    assert_eq!(killed_after_first_trial(&env, &args, "-KILL"), None);
    let before = records(&env);
    assert_eq!(outcomes(&before), want[..1], "the first trial's record");
    let out = env.ok(&all);
    let rerun = &records(&env)[before.len()..];
    let got = outcomes(rerun);
    assert_eq!(got[0].1, "cached", "{out}");
    let values = |v: &[(String, String)]| v.iter().map(|(v, _)| v.clone()).collect::<Vec<_>>();
    assert_eq!(values(&got), values(&want), "the same proposals");
    // What the rerun's trials trained is what the whole search trained.
    let digest = |r: &serde_json::Value| r["stages"]["evaluate"]["digest"].clone();
    let whole_digests: Vec<_> = records(&whole).iter().map(digest).collect();
    assert_eq!(rerun.iter().map(digest).collect::<Vec<_>>(), whole_digests);
    assert!(out.contains("best (highest): variant "), "{out}");
}
