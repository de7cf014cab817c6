//! Byte-identical outputs and enforced implementation versions.
//!
//! A stage's output digest must depend on its key only: not on wall-clock time, on whether a
//! training was forced, killed or resumed, on the thread count or run order, or on where the
//! files live. And a kind whose output changes for the same inputs must bump its `VERSION`:
//! the golden test runs every kind on fixed inputs and compares with `tests/golden/digests.json`.

use super::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The last run record's stages (id → record).
fn last_stages(env: &Env) -> serde_json::Map<String, serde_json::Value> {
    latest_record(env)["stages"].as_object().unwrap().clone()
}

const TRAINING: &str = "\
stages:
  faces: {kind: source, format: synthetic, count: 300, height: 24, width: 24, seed: 3}
  split: {kind: split, inputs: {data: faces}}
  train: {kind: train, model: b1, epochs: 4, batch_size: 16, seed: 9, inputs: {data: faces, split: split}}
  evaluate: {kind: evaluate, threshold: tune, inputs: {model: train, data: faces, split: split}}
";

fn training_env() -> Env {
    let env = Env::new();
    env.write("t.yaml", TRAINING);
    env
}

/// Every file of every committed object contains no absolute path of the test's directory.
fn assert_no_absolute_paths(env: &Env) {
    let root = env.dir.path().to_string_lossy().into_owned();
    let canonical = std::fs::canonicalize(env.dir.path())
        .unwrap()
        .to_string_lossy()
        .into_owned();
    for m in find_files(&env.path("cache/objects"), ".manifest.json") {
        let dir = m.parent().unwrap();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let text = String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned();
            assert!(
                !text.contains(&root) && !text.contains(&canonical),
                "{} holds an absolute path",
                e.path().display()
            );
        }
    }
}

#[test]
fn a_forced_retrain_commits_the_same_digest_and_leaves_evaluate_cached() {
    let env = training_env();
    let first = env.ok(&["run", "t.yaml"]);
    assert_eq!(ran(&first), ["evaluate", "faces", "split", "train"]);
    let before = last_digests(&env);
    let again = env.ok(&["run", "t.yaml", "--force", "train"]);
    assert_eq!(ran(&again), ["train"], "{again}");
    assert_eq!(last_digests(&env), before);
    // The timings went to the run record, not into the object.
    let stages = last_stages(&env);
    let exec = &stages["train"]["report"]["execution"];
    assert!(exec["train_img_per_s"].as_f64().unwrap() > 0.0, "{exec}");
    assert!(exec["train_seconds"].as_f64().unwrap() > 0.0, "{exec}");
    let report = find_files(&env.path("cache/objects"), "report.json");
    for r in report {
        let text = std::fs::read_to_string(&r).unwrap();
        assert!(
            !text.contains("execution") && !text.contains("img/s"),
            "{text}"
        );
    }
    let csv = find_files(&env.path("cache/objects"), "curve.csv");
    let header = std::fs::read_to_string(&csv[0]).unwrap();
    assert!(!header.contains("seconds"), "{header}");
    assert_no_absolute_paths(&env);
}

/// The epoch of the resume checkpoint under `cache/work/`, if one was written.
fn checkpoint_epoch(env: &Env) -> Option<u64> {
    find_files(&env.path("cache/work"), "state.json")
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .filter_map(|v| v["epoch"].as_u64())
        .max()
}

/// How many entries `dir` holds (0 when it does not exist).
fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// Starts `pipe run t.yaml`, SIGKILLs it once `ready` holds (then after `extra`), waits for it.
fn kill_when(env: &Env, ready: impl Fn(&Env) -> bool, extra: Duration) {
    let mut child = env
        .cmd(&["run", "t.yaml", "-j", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !ready(env) {
        if child.try_wait().unwrap().is_some() {
            break; // finished before the kill point: the rerun is then all cached
        }
        assert!(Instant::now() < deadline, "the kill point never came");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(extra);
    let _ = child.kill(); // SIGKILL
    child.wait().unwrap();
}

#[test]
fn a_training_killed_at_any_point_resumes_to_the_uninterrupted_digests() {
    let reference = training_env();
    reference.ok(&["run", "t.yaml"]);
    let expected = last_digests(&reference);

    // Killed right after epoch 1's checkpoint, rerun and killed again in the middle of epoch
    // 3 (resuming from 2), then rerun to the end: a chain of resumes.
    let env = training_env();
    kill_when(&env, |e| checkpoint_epoch(e) >= Some(1), Duration::ZERO);
    assert_eq!(checkpoint_epoch(&env), Some(1), "killed after epoch 1");
    let mut child = env
        .cmd(&["run", "t.yaml", "-j", "1"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while checkpoint_epoch(&env) < Some(2) {
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "epoch 2 never ended"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // A third of (start-up + one epoch): the kill lands inside epoch 3.
    std::thread::sleep(t0.elapsed() / 3);
    let _ = child.kill();
    child.wait().unwrap();
    let at = checkpoint_epoch(&env);
    assert!(
        matches!(at, Some(2 | 3)),
        "killed during epoch 3 or 4: {at:?}"
    );
    let out = env.ok(&["run", "t.yaml"]);
    assert_eq!(ran(&out), ["evaluate", "train"], "{out}");
    assert_eq!(last_digests(&env), expected);
    let resumed = &last_stages(&env)["train"]["report"]["execution"]["resumed_from_epoch"];
    assert_eq!(resumed.as_f64(), at.map(|e| e as f64), "{resumed}");

    // Killed mid-epoch 1, before any checkpoint: starts over, same result.
    let early = training_env();
    // With -j 1, faces and split commit first; the next scratch directory is train's.
    let training_started = |e: &Env| {
        let committed: usize = std::fs::read_dir(e.path("cache/keys"))
            .map(|shards| shards.flatten().map(|s| entries(&s.path())).sum())
            .unwrap_or(0);
        committed == 2 && entries(&e.path("cache/work")) > 0
    };
    // Killed as soon as its scratch directory appears: an epoch of this tiny set can end
    // within 100 ms on an idle machine, so no extra wait.
    kill_when(&early, training_started, Duration::ZERO);
    assert_eq!(
        checkpoint_epoch(&early),
        None,
        "killed before epoch 1 ended"
    );
    early.ok(&["run", "t.yaml"]);
    assert_eq!(last_digests(&early), expected);
}

#[test]
fn digests_do_not_depend_on_thread_count_or_run_order() {
    let run = |jobs: &str| {
        let env = golden_env();
        let out = env
            .cmd(&["run", "pipeline.yaml", "-j", jobs])
            .env("RAYON_NUM_THREADS", jobs)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        env
    };
    let (one, many) = (run("1"), run("4"));
    assert_eq!(last_digests(&one), last_digests(&many));
    assert_no_absolute_paths(&many);
}

// ---------- golden digests: VERSION bumps that cannot be forgotten ----------

const GOLDEN_DIR: &str = "tests/golden";

/// A temp dir holding the golden pipeline, its folder images and a generated raw file.
fn golden_env() -> Env {
    let env = Env::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN_DIR);
    std::fs::copy(src.join("pipeline.yaml"), env.path("pipeline.yaml")).unwrap();
    std::fs::create_dir_all(env.path("folder")).unwrap();
    for e in std::fs::read_dir(src.join("folder")).unwrap().flatten() {
        std::fs::copy(e.path(), env.path("folder").join(e.file_name())).unwrap();
    }
    let (n, side) = (6usize, 24usize);
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    let pixels: Vec<u8> = (0..n * side * side * 3)
        .map(|_| (xorshift(&mut s) >> 56) as u8)
        .collect();
    std::fs::write(env.path("golden.raw"), pixels).unwrap();
    env.write("golden_labels.txt", "1\n-1\n1\n1\n-1\n-1\n");
    env
}

/// One stage's line in `digests.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Golden {
    kind: String,
    version: u64,
    implementation: BTreeMap<String, String>,
    digest: String,
}

fn golden_of(stages: &serde_json::Map<String, serde_json::Value>) -> BTreeMap<String, Golden> {
    stages
        .iter()
        .map(|(id, s)| {
            let parts = &s["key_parts"];
            let g = Golden {
                kind: s["kind"].as_str().unwrap().to_string(),
                version: parts["version"].as_u64().unwrap(),
                implementation: serde_json::from_value(parts["implementation"].clone()).unwrap(),
                digest: s["digest"].as_str().unwrap().to_string(),
            };
            (id.clone(), g)
        })
        .collect()
}

/// Why the run's stages disagree with the blessed table; empty when they agree.
/// A stage whose inputs changed is left to the stage that changed them.
fn golden_problems(
    now: &BTreeMap<String, Golden>,
    blessed: &BTreeMap<String, Golden>,
    inputs: &BTreeMap<String, Vec<String>>,
) -> Vec<String> {
    const BLESS: &str = "PIPE_BLESS=1 cargo test golden";
    let blessed_digests: Vec<&String> = blessed.values().map(|g| &g.digest).collect();
    let mut problems = Vec::new();
    for (id, g) in now {
        let Some(b) = blessed.get(id) else {
            problems.push(format!(
                "stage `{id}` has no golden digest: re-bless with {BLESS}"
            ));
            continue;
        };
        let kind = &g.kind;
        if g.version != b.version || g.implementation != b.implementation {
            if g != b {
                problems.push(format!(
                    "`VERSION` or implementation of `{kind}` changed (stage `{id}`: version {} → {}, {:?} → {:?}) but tests/golden/digests.json was not re-blessed: run {BLESS}",
                    b.version, g.version, b.implementation, g.implementation
                ));
            }
            continue;
        }
        let inputs_unchanged = inputs[id].iter().all(|d| blessed_digests.contains(&d));
        if g.digest != b.digest && inputs_unchanged {
            problems.push(format!(
                "output of `{kind}` changed (stage `{id}`): bump `VERSION` of {kind} (src/stages/{kind}.rs) and re-bless with {BLESS}"
            ));
        }
    }
    problems
}

#[test]
fn golden_digests_change_only_with_a_version_bump() {
    let env = golden_env();
    env.ok(&["run", "pipeline.yaml"]);
    let stages = last_stages(&env);
    let kinds: std::collections::BTreeSet<&str> = stages
        .values()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.len(),
        12,
        "the golden pipeline covers every kind: {kinds:?}"
    );
    let now = golden_of(&stages);
    let inputs: BTreeMap<String, Vec<String>> = stages
        .iter()
        .map(|(id, s)| {
            let ins = s["key_parts"]["inputs"].as_object().unwrap();
            let ds = ins.values().map(|d| d.as_str().unwrap().to_string());
            (id.clone(), ds.collect())
        })
        .collect();
    let table = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(GOLDEN_DIR)
        .join("digests.json");
    if std::env::var_os("PIPE_BLESS").is_some_and(|v| v == "1") {
        let text = serde_json::to_string_pretty(&now).unwrap() + "\n";
        std::fs::write(&table, text).unwrap();
        return;
    }
    let blessed: BTreeMap<String, Golden> =
        serde_json::from_slice(&std::fs::read(&table).unwrap()).unwrap();
    let problems = golden_problems(&now, &blessed, &inputs);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn golden_check_names_the_kind_to_bump_and_a_missing_bless() {
    let g = |version: u64, digest: &str| Golden {
        kind: "dedup".into(),
        version,
        implementation: BTreeMap::new(),
        digest: digest.repeat(64),
    };
    let blessed = BTreeMap::from([("groups".to_string(), g(1, "a"))]);
    let inputs = BTreeMap::from([("groups".to_string(), vec![])]);
    let changed = BTreeMap::from([("groups".to_string(), g(1, "b"))]);
    let p = golden_problems(&changed, &blessed, &inputs);
    assert_eq!(p.len(), 1);
    assert!(
        p[0].contains("output of `dedup` changed")
            && p[0].contains("bump `VERSION` of dedup (src/stages/dedup.rs)")
            && p[0].contains("PIPE_BLESS=1 cargo test golden"),
        "{p:?}"
    );
    // Bumped but not re-blessed.
    let bumped = BTreeMap::from([("groups".to_string(), g(2, "b"))]);
    let p = golden_problems(&bumped, &blessed, &inputs);
    assert!(p.len() == 1 && p[0].contains("was not re-blessed"), "{p:?}");
    // A changed input explains the change: the upstream stage is the one to blame.
    let moved = BTreeMap::from([("groups".to_string(), vec!["c".repeat(64)])]);
    assert!(golden_problems(&changed, &blessed, &moved).is_empty());
    // Unchanged: nothing to say.
    assert!(golden_problems(&blessed, &blessed, &inputs).is_empty());
}
