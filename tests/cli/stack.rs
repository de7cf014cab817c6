//! The `stack` stage: a classical classifier on a trained CNN's features, evaluated like
//! `evaluate`, an ensemble member and a model `predict` scores with.

use super::*;

const STACKED: &str = "\
name: stacked
stages:
  faces: {kind: source, format: synthetic, count: 120, height: 24, width: 24, exact_duplicates: 0, near_duplicates: 0, conflicting_duplicates: 0}
  split: {kind: split, inputs: {data: faces}}
  cnn: {kind: train, model: b1, epochs: 2, batch_size: 32, seed: 1, inputs: {data: faces, split: split}}
  stack:
    kind: stack
    classifier: {kind: random_forest, trees: 20}
    threshold: tune
    seed: 4
    inputs: {model: cnn, data: faces, split: split}
  evaluate_cnn: {kind: evaluate, threshold: tune, inputs: {model: cnn, data: faces, split: split}}
  evaluate_stack: {kind: evaluate, inputs: {model: stack, data: faces, split: split}}
  ens: {kind: ensemble, inputs: {data: faces, split: split, cnn: cnn, stack: stack}}
  predict: {kind: predict, hash_override: false, inputs: {test: faces, model: stack}}
  predict_ens: {kind: predict, hash_override: false, inputs: {test: faces, ensemble: ens}}
";

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn digest_of(env: &Env, stage: &str) -> String {
    last_digests(env)
        .into_iter()
        .find(|(s, _)| s == stage)
        .unwrap_or_else(|| panic!("no stage {stage}"))
        .1
}

fn object(env: &Env, stage: &str) -> PathBuf {
    let d = digest_of(env, stage);
    env.path("cache/objects").join(&d[..2]).join(d)
}

fn keys(v: &serde_json::Value) -> Vec<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn stack_trains_evaluates_ensembles_predicts_and_caches() {
    let env = Env::new();
    env.write("s.yaml", STACKED);
    let out = env.ok(&["run", "s.yaml"]);
    assert!(ran(&out).contains(&"stack".to_string()), "{out}");
    assert!(out.contains("random forest on 512 features"), "{out}");

    // Evaluated like `evaluate`: the same metrics.json fields and figures.
    let stack = object(&env, "stack");
    let m = json(&stack.join("metrics.json"));
    assert_eq!(
        keys(&m),
        keys(&json(&object(&env, "evaluate_cnn").join("metrics.json")))
    );
    assert_eq!(m["on"], "test");
    let bacc = m["balanced_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&bacc), "{m}");
    let n_test = m["count"].as_u64().unwrap() as usize;
    assert!(n_test > 0);
    assert!(stack.join("confusion.png").is_file());
    let csv = std::fs::read_to_string(stack.join("probabilities.csv")).unwrap();
    assert_eq!(csv.lines().count(), n_test + 1);
    // The features it fitted and scored are in the output: 512 f32 per image.
    let train_idx = std::fs::read_to_string(stack.join("features-train.idx")).unwrap();
    let bytes = std::fs::metadata(stack.join("features-train.f32"))
        .unwrap()
        .len();
    assert_eq!(bytes as usize, train_idx.lines().count() * 512 * 4);
    assert!(stack.join("features-val.f32").is_file(), "threshold: tune");
    assert!(stack.join("features-test.f32").is_file());
    // Its manifest refers to the CNN.
    let manifest = json(&stack.join(".manifest.json"));
    assert_eq!(
        manifest["refs"],
        serde_json::json!([digest_of(&env, "cnn")])
    );

    // `evaluate` on the stack at its tuned threshold reproduces its own scores.
    let e = json(&object(&env, "evaluate_stack").join("metrics.json"));
    let stack_probs: Vec<String> = csv.lines().map(String::from).collect();
    let eval_csv =
        std::fs::read_to_string(object(&env, "evaluate_stack").join("probabilities.csv")).unwrap();
    assert_eq!(eval_csv.lines().collect::<Vec<_>>(), stack_probs);
    assert_eq!(e["roc_auc"], m["roc_auc"]);

    // An ensemble member and a model `predict` scores with.
    let ens = json(&object(&env, "ens").join("ensemble.json"));
    let slots: Vec<&str> = ens["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["slot"].as_str().unwrap())
        .collect();
    assert_eq!(slots, ["cnn", "stack"]);
    for p in ["predict", "predict_ens"] {
        let sub = std::fs::read_to_string(object(&env, p).join("submission.txt")).unwrap();
        assert_eq!(sub.lines().count(), 120, "{p}");
        assert!(sub.lines().all(|l| l == "0" || l == "1"), "{p}: {sub}");
    }
    // predict's probabilities are the stack's on the same images.
    let pred = std::fs::read_to_string(object(&env, "predict").join("probabilities.csv")).unwrap();
    let by_index = |text: &str, prob_col: usize| -> std::collections::BTreeMap<String, String> {
        text.lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f[0].to_string(), f[prob_col].to_string())
            })
            .collect()
    };
    let header: Vec<&str> = pred.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "probability").unwrap();
    let predicted = by_index(&pred, col);
    for (i, p) in by_index(&csv, 3) {
        assert_eq!(predicted[&i], p, "image {i}");
    }

    // Cached: a rerun runs nothing.
    let out = env.ok(&["run", "s.yaml"]);
    assert!(ran(&out).is_empty(), "{out}");

    // A classifier setting reruns the stack and what uses it, not the CNN.
    let out = env.ok(&["run", "s.yaml", "--set", "stages.stack.classifier.trees=9"]);
    assert_eq!(
        ran(&out),
        ["ens", "evaluate_stack", "predict", "predict_ens", "stack"],
        "{out}"
    );
    // So does the classifier itself.
    let out = env.ok(&[
        "run",
        "s.yaml",
        "--set",
        "stages.stack.classifier={kind: gradient_boosting, rounds: 20}",
    ]);
    assert_eq!(
        ran(&out),
        ["ens", "evaluate_stack", "predict", "predict_ens", "stack"],
        "{out}"
    );
    assert!(out.contains("gradient boosting on 512 features"), "{out}");
}

#[test]
fn stack_is_deterministic_with_a_seed() {
    let env = Env::new();
    let yaml = STACKED.replace(
        "classifier: {kind: random_forest, trees: 20}",
        "classifier: {kind: gradient_boosting, rounds: 15, subsample: 0.5}",
    );
    env.write("s.yaml", &yaml);
    env.ok(&["run", "s.yaml", "--until", "stack"]);
    let first = digest_of(&env, "stack");
    // Forced: the same config and seed give the same bytes.
    let out = env.ok(&["run", "s.yaml", "--until", "stack", "--force", "stack"]);
    assert_eq!(ran(&out), ["stack"], "{out}");
    assert_eq!(digest_of(&env, "stack"), first);
    // Another seed draws other subsamples: another classifier.
    env.ok(&[
        "run",
        "s.yaml",
        "--until",
        "stack",
        "--set",
        "stages.stack.seed=5",
    ]);
    assert_ne!(digest_of(&env, "stack"), first);
}

#[test]
fn invalid_stacks_are_reported_with_positions() {
    let env = Env::new();
    let yaml = STACKED
        .replace(
            "classifier: {kind: random_forest, trees: 20}",
            "classifier: {kind: random_forest, trees: 0}",
        )
        .replace(
            "  evaluate_cnn:",
            "  stack2: {kind: stack, classifier: svm, inputs: {model: cnn, data: faces, split: split}}\n  \
             stack3: {kind: stack, classifier: random_forest, inputs: {model: stack, data: faces, split: split}}\n  \
             stack4: {kind: stack, classifier: random_forest, inputs: {model: evaluate_cnn, data: faces, split: split}}\n  \
             evaluate_cnn:",
        );
    env.write("s.yaml", &yaml);
    let e = env.err(&["validate", "s.yaml"], 2);
    for want in [
        "s.yaml:8:46: stages.stack.classifier.trees: trees: 0 must be from 1",
        "s.yaml:12:37: stages.stack2.classifier: unknown value `svm`; expected one of random_forest, gradient_boosting",
        "s.yaml:13:68: stages.stack3.inputs.model: input `model` expects the model of a `train` stage, but stage `stack` is a `stack`",
        "s.yaml:14:68: stages.stack4.inputs.model: input `model` expects a model artifact, but stage `evaluate_cnn` (evaluate) produces evaluation",
        "4 errors",
    ] {
        assert!(e.contains(want), "expected `{want}` in\n{e}");
    }
    assert!(!e.contains("panicked"), "{e}");
    // Nothing ran.
    let e = env.err(&["run", "s.yaml"], 2);
    assert!(e.contains("unknown value `svm`"), "{e}");
    assert!(!env.path("cache/runs").exists() || record_files(&env).is_empty());
}

#[test]
fn the_shipped_stack_pipeline_runs_and_compare_lists_the_stacks() {
    let (env, _) = shipped_env(160, &[]);
    let out = run_with(&env, "pipelines/stack.yaml", &small_training("train_b3"));
    for s in ["stack_rf", "stack_gb", "ensemble_b3_rf", "evaluate_b3"] {
        assert!(ran(&out).contains(&s.to_string()), "{s}: {out}");
    }
    let table = env.ok(&["compare", "pipelines/stack.yaml"]);
    for s in ["evaluate_b3", "stack_rf", "stack_gb", "ensemble_b3_rf"] {
        assert!(table.contains(s), "{s} missing from\n{table}");
    }
}
