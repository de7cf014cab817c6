//! The search space of the report's wish-list (§4.2): `batch_size`, `dropout`, `init`, `lr`
//! and the input size are searchable, and a space that reaches an invalid trial is refused
//! before any trial runs, naming the trial's values.

use super::*;

const PIPELINE: &str = "\
name: space
stages:
  faces: {kind: source, format: synthetic, count: 100, height: 24, width: 24, exact_duplicates: 0, near_duplicates: 0, conflicting_duplicates: 0}
  split: {kind: split, inputs: {data: faces}}
  train: {kind: train, model: b2, epochs: 1, batch_size: 32, inputs: {data: faces, split: split}}
  evaluate: {kind: evaluate, inputs: {model: train, data: faces, split: split}}
";

fn search(env: &Env, axes: &[&str], extra: &[&str]) -> Output {
    let mut args = vec!["run", "p.yaml"];
    for a in axes {
        args.extend(["--search", a]);
    }
    args.extend(["--trials", "2", "--objective", "evaluate.balanced_accuracy"]);
    args.extend(extra);
    env.pipe(&args)
}

fn nothing_ran(env: &Env) -> bool {
    !env.path("cache/runs").exists() || record_files(env).is_empty()
}

#[test]
fn batch_size_dropout_init_and_lr_are_searchable() {
    let env = Env::new();
    env.write("p.yaml", PIPELINE);
    let axes = [
        "stages.train.lr=1e-4..1e-2:log",
        "stages.train.batch_size=16..32:int",
        "stages.train.dropout=0.0..0.5",
        "stages.train.init=glorot_uniform|he",
    ];
    let out = search(&env, &axes, &["--sampler", "tpe"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trials: Vec<serde_json::Value> = records(&env)
        .into_iter()
        .filter(|r| r["sweep"].is_string())
        .collect();
    assert_eq!(trials.len(), 2, "{stdout}");
    for t in &trials {
        let v = t["variant"].as_object().unwrap();
        for a in axes {
            let path = a.split_once('=').unwrap().0;
            assert!(v.contains_key(path), "{path} in {v:?}");
        }
        let key = &t["stages"]["train"]["key_parts"]["config"];
        assert_eq!(
            key["batch_size"].to_string(),
            v["stages.train.batch_size"].as_str().unwrap(),
            "the trial's value is the one trained with"
        );
    }
}

#[test]
fn a_space_reaching_an_invalid_trial_is_refused_before_any_runs() {
    let env = Env::new();
    env.write("p.yaml", PIPELINE);
    for (sampler, axes, want) in [
        (
            "tpe",
            [
                "stages.train.dropout=0.2..1.0",
                "stages.train.batch_size=16..32:int",
            ],
            ["dropout=1.0", "dropout: 1 must be in [0, 1)"],
        ),
        (
            "random",
            [
                "stages.train.dropout=0.2..0.5",
                "stages.train.batch_size=0..32:int",
            ],
            ["batch_size=0", "batch"],
        ),
        (
            "tpe",
            [
                "stages.faces.height=12..40:int",
                "stages.train.init=he|glorot_uniform",
            ],
            ["height=12", "height 12 is too small"],
        ),
    ] {
        let out = search(&env, &axes, &["--sampler", sampler]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{axes:?}: {stderr}");
        assert!(stderr.contains("trial at the ranges' ends"), "{stderr}");
        for w in want {
            assert!(stderr.contains(w), "expected `{w}` in\n{stderr}");
        }
        assert!(stderr.contains("nothing ran"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(nothing_ran(&env), "{axes:?}");
    }
    // Outside a search, too small an image for the model is a validation error with a position.
    env.write("p.yaml", &PIPELINE.replace("height: 24", "height: 12"));
    let e = env.err(&["validate", "p.yaml"], 2);
    assert!(
        e.contains("p.yaml:5:") && e.contains("the images of `faces` (12x24x3) do not fit b2"),
        "{e}"
    );
}

/// A declared model's layer settings and its input size are searchable through list indices
/// (`layers.N.…`); a pooling size that leaves no pixels is refused before any trial runs.
#[test]
fn a_declared_models_pooling_and_input_size_are_searchable() {
    let env = Env::new();
    env.write(
        "p.yaml",
        &PIPELINE.replace(
            "model: b2,",
            "model: {layers: [{conv2d: {filters: 4}}, max_pool, flatten, {dense: {units: 8}}]},",
        ),
    );
    let axes = [
        "stages.train.model.layers.1.max_pool.size=2|3",
        "stages.faces.height=20..24:int",
    ];
    let out = search(&env, &axes, &["--sampler", "random"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let sizes: std::collections::BTreeSet<String> = record_files(&env)
        .iter()
        .filter_map(|r| {
            let rec: serde_json::Value =
                serde_json::from_slice(&std::fs::read(r).unwrap()).unwrap();
            rec["variant"]["stages.train.model.layers.1.max_pool.size"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert!(
        !sizes.is_empty(),
        "the trials record the pooling size they ran with"
    );

    // A pooling window larger than the image: refused with the trial's values, nothing ran.
    let env = Env::new();
    env.write(
        "p.yaml",
        &PIPELINE.replace(
            "model: b2,",
            "model: {layers: [{conv2d: {filters: 4}}, max_pool, flatten, {dense: {units: 8}}]},",
        ),
    );
    let out = search(
        &env,
        &["stages.train.model.layers.1.max_pool.size=2|40"],
        &["--sampler", "random"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("layer 2 (max_pool): a 40x40 window does not fit"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing ran"), "{stderr}");
    assert!(nothing_ran(&env));

    // An index outside the list is a clear error.
    let e = env.err(
        &[
            "run",
            "p.yaml",
            "--dry-run",
            "--set",
            "stages.train.model.layers.9.max_pool.size=2",
        ],
        2,
    );
    assert!(e.contains("is not an index of this list of 4"), "{e}");
}
