//! The planner and the executor: dry runs, status and run agree; panics, exit codes, concurrency.

use super::*;
use std::time::{Duration, Instant};

/// Stage ids a `run --dry-run` says would run.
fn would_run(stdout: &str) -> Vec<String> {
    let mut v: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("would run "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// Stage ids `status` reports as not cached.
fn not_cached(stdout: &str) -> Vec<String> {
    let mut v: Vec<String> = stdout
        .lines()
        .filter(|l| l.contains(" stale ") || l.contains(" missing "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// The data pipeline's labels with image 10's label flipped, as a second labels file.
fn write_flipped_labels(env: &Env) {
    let text = std::fs::read_to_string(env.path("data/label_train.txt")).unwrap();
    let flipped: String = text
        .lines()
        .enumerate()
        .map(|(i, l)| match (i, l) {
            (10, "1") => "-1\n".to_string(),
            (10, _) => "1\n".to_string(),
            (_, l) => format!("{l}\n"),
        })
        .collect();
    env.write("data/label2.txt", &flipped);
}

#[test]
fn a_dry_run_lists_exactly_the_stages_the_real_run_then_runs() {
    let env = data_env(60);
    env.ok(&["run", "p.yaml"]);
    write_flipped_labels(&env);
    let set = "stages.train_raw.labels=data/label2.txt";
    let dry = env.ok(&["run", "p.yaml", "--dry-run", "--set", set]);
    // Every stage reads the source's dataset: all five would run, not only the source.
    assert_eq!(would_run(&dry), ALL, "{dry}");
    assert!(dry.contains("dry run: 0 cached, 5 would run"), "{dry}");
    assert!(
        dry.contains("input `data` would change (upstream `train_raw` will run)"),
        "{dry}"
    );
    let status = env.ok(&["status", "p.yaml", "--set", set]);
    assert_eq!(not_cached(&status), ALL, "{status}");
    let real = env.ok(&["run", "p.yaml", "--set", set]);
    assert_eq!(ran(&real), would_run(&dry), "{real}");
    let dry = env.ok(&["run", "p.yaml", "--dry-run", "--set", set]);
    assert!(would_run(&dry).is_empty(), "{dry}");
}

#[test]
fn a_changed_middle_stage_plans_its_dependents_with_the_reason() {
    let env = data_env(40);
    env.ok(&["run", "p.yaml"]);
    let set = "stages.groups.radius=2";
    let dry = env.ok(&["run", "p.yaml", "--dry-run", "--set", set]);
    assert_eq!(would_run(&dry), ["clean", "groups", "split"], "{dry}");
    assert!(dry.contains("field `radius`: 0 → 2"), "{dry}");
    let why = env.ok(&["why", "p.yaml", "split", "--set", set]);
    assert!(
        why.contains("upstream `groups`: field `radius`: 0 → 2")
            && why.contains("`split`: input `groups` would change (upstream `groups` will run)"),
        "{why}"
    );
    let real = env.ok(&["run", "p.yaml", "--set", set]);
    assert_eq!(ran(&real), would_run(&dry), "{real}");
}

#[test]
fn a_planned_stage_whose_inputs_come_out_unchanged_is_reported_cached() {
    let env = data_env(40);
    env.ok(&["run", "p.yaml"]);
    let dry = env.ok(&["run", "p.yaml", "--dry-run", "--force", "hashes"]);
    assert_eq!(
        would_run(&dry),
        ["clean", "groups", "hashes", "split"],
        "{dry}"
    );
    assert!(dry.contains("would run hashes     (forced)"), "{dry}");
    // The forced stage's output is byte-identical: early cutoff keeps its dependents cached,
    // and the run says which planned stages turned out cached.
    let out = env.ok(&["run", "p.yaml", "--force", "hashes"]);
    assert_eq!(ran(&out), ["hashes"], "{out}");
    let mut noted: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("planned to run: its inputs turned out unchanged"))
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    noted.sort();
    assert_eq!(noted, ["clean", "groups", "split"], "{out}");
}

#[test]
fn until_blocks_the_stages_it_does_not_need() {
    let env = data_env(40);
    let dry = env.ok(&["run", "p.yaml", "--dry-run", "--until", "hashes"]);
    assert_eq!(would_run(&dry), ["hashes", "train_raw"], "{dry}");
    let out = env.ok(&["run", "p.yaml", "--until", "hashes"]);
    assert_eq!(ran(&out), would_run(&dry), "{out}");
}

/// The output of `child`, killing it (and failing) if it runs longer than `limit`.
fn wait_with_limit(mut child: std::process::Child, limit: Duration) -> Output {
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("pipe still running after {limit:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_panicking_stage_ends_the_run_cleanly_and_releases_the_lock() {
    let env = data_env(40);
    let child = env
        .cmd(&["run", "p.yaml", "-j", "1"])
        .env("PIPE_TEST_PANIC_STAGE", "groups")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_with_limit(child, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("error: stage `groups` panicked: PIPE_TEST_PANIC_STAGE"),
        "{stderr}"
    );
    assert!(stdout.contains("blocked clean"), "{stdout}");
    // The failure is recorded, nothing is left in tmp, and the lock is free.
    let rec = records(&env).pop().unwrap();
    assert_eq!(rec["ok"], false);
    assert_eq!(rec["stages"]["groups"]["outcome"], "failed");
    assert!(
        rec["stages"]["groups"]["error"]
            .as_str()
            .unwrap()
            .contains("panicked")
    );
    assert!(
        std::fs::read_dir(env.path("cache/tmp"))
            .unwrap()
            .next()
            .is_none()
    );
    let out = env.ok(&["run", "p.yaml", "--no-wait"]);
    assert_eq!(ran(&out), ["clean", "groups", "split"], "{out}");
}

#[test]
fn two_concurrent_runs_on_one_cache_both_finish_correctly() {
    let env = data_env(20000);
    let start = || {
        env.cmd(&["run", "p.yaml"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start(), start());
    let outs = [
        wait_with_limit(a, Duration::from_secs(300)),
        wait_with_limit(b, Duration::from_secs(300)),
    ];
    let text = |o: &Output| {
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    for o in &outs {
        assert!(o.status.success(), "{}", text(o));
    }
    let waited: Vec<&Output> = outs
        .iter()
        .filter(|o| String::from_utf8_lossy(&o.stderr).contains("waiting for another pipe run"))
        .collect();
    assert_eq!(
        waited.len(),
        1,
        "{}\n---\n{}",
        text(&outs[0]),
        text(&outs[1])
    );
    // The one that waited planned under the lock: everything the first committed is a hit.
    let w = String::from_utf8_lossy(&waited[0].stdout);
    assert!(ran(&w).is_empty() && w.contains("0 ran, 5 cached"), "{w}");
    let recs = records(&env);
    assert_eq!(recs.len(), 2);
    let digests = |r: &serde_json::Value| -> Vec<(String, String)> {
        r["stages"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v["digest"].as_str().unwrap().to_string()))
            .collect()
    };
    assert_eq!(digests(&recs[0]), digests(&recs[1]));
    assert_eq!(digests(&recs[0]).len(), 5);
}

/// The quickstart, tiny, trained once; `train_b3` has no `device` field.
fn trained_quickstart() -> (Env, Vec<String>) {
    let (env, _) = shipped_env(10, &[]);
    let sets: Vec<String> = [
        "stages.faces.count=300",
        "stages.faces.exact_duplicates=6",
        "stages.faces.near_duplicates=6",
        "stages.faces.conflicting_duplicates=2",
        "params.epochs=1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    run_with(&env, "pipelines/quickstart.yaml", &sets);
    (env, sets)
}

fn args<'a>(sets: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["run", "pipelines/quickstart.yaml"];
    for s in sets {
        v.push("--set");
        v.push(s);
    }
    v.extend_from_slice(extra);
    v
}

#[test]
fn the_device_flag_enters_the_key_exactly_like_the_yaml_field() {
    let (env, sets) = trained_quickstart();
    // `--device cpu` is what the YAML's default already says: every stage is a hit.
    let out = env.ok(&args(&sets, &["--device", "cpu"]));
    assert!(ran(&out).is_empty(), "{out}");
    let yaml = std::fs::read_to_string(env.path("pipelines/quickstart.yaml")).unwrap();
    env.write(
        "pipelines/quickstart.yaml",
        &yaml.replace("    model: b3\n", "    model: b3\n    device: cpu\n"),
    );
    let out = env.ok(&args(&sets, &[]));
    assert!(ran(&out).is_empty(), "{out}");
    // Another device is another key, for training and for inference alike.
    let dry = env.ok(&args(&sets, &["--dry-run", "--device", "vulkan"]));
    assert_eq!(would_run(&dry), ["evaluate", "train_b3"], "{dry}");
    assert!(dry.contains(r#"field `device`: "cpu" → "vulkan""#), "{dry}");
    if !cfg!(feature = "vulkan") {
        let e = env.err(&args(&sets, &["--device", "vulkan"]), 2);
        assert!(
            e.contains("stage `train_b3`") && e.contains("--features vulkan"),
            "{e}"
        );
    }
}

#[test]
fn a_pipeline_that_never_ran_is_missing_not_compared_with_another_pipelines_stages() {
    let env = data_env(40);
    env.ok(&["run", "p.yaml"]);
    // Another pipeline with the same stage ids; its split is seeded differently.
    let other = DATA_PIPELINE
        .replace("name: data", "name: other")
        .replace("seed: 3", "seed: 2019");
    env.write("q.yaml", &other);
    let status = env.ok(&["status", "q.yaml"]);
    let split = status.lines().find(|l| l.starts_with("split")).unwrap();
    assert!(split.contains(" missing "), "{status}");
    assert!(
        !status.contains("→"),
        "compared with `data`'s run: {status}"
    );
    // The stages whose keys `data` committed are cached all the same: the cache is shared.
    assert_eq!(not_cached(&status), ["split"], "{status}");
    let why = env.ok(&["why", "q.yaml", "split"]);
    assert!(why.contains("`split` has never run"), "{why}");
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["status", "q.yaml", "--json"])).unwrap();
    assert_eq!(
        json["split"]["reasons"],
        serde_json::json!(["never ran in this pipeline"])
    );

    // Once it ran, its reasons compare with its own last run, whatever ran since.
    env.ok(&["run", "q.yaml"]);
    env.ok(&["run", "p.yaml", "--set", "params.seed=4"]);
    let status = env.ok(&["status", "q.yaml", "--set", "params.seed=5"]);
    assert!(
        status.contains("2019 → 5") && !status.contains("4 → 5"),
        "{status}"
    );
}

#[test]
fn outcome_words_are_coloured_only_where_colour_is_asked_for() {
    let env = data_env(60);
    // Piped (as here): plain words, byte for byte the lines scripts parse.
    let plain = env.ok(&["run", "p.yaml"]);
    assert!(!plain.contains('\u{1b}'), "{plain}");
    assert!(plain.contains("  ran     "), "{plain}");
    // CLICOLOR_FORCE stands in for a terminal: ran in green, cached in cyan.
    let mut cmd = env.cmd(&["run", "p.yaml", "--force", "train_raw"]);
    let out = cmd.env("CLICOLOR_FORCE", "1").output().unwrap();
    let coloured = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{coloured}");
    assert!(
        coloured.contains("\u{1b}[32mran    \u{1b}[0m"),
        "{coloured:?}"
    );
    assert!(
        coloured.contains("\u{1b}[36mcached \u{1b}[0m"),
        "{coloured:?}"
    );
}

/// A GPU device this binary cannot use (here: CUDA in the default CPU build) fails the stage
/// that needs it before any work, exit 2, with what is missing; nothing new enters the cache.
/// The CUDA build's own check, on a machine without the NVIDIA driver, is BENCHMARKS.md's
/// "GPU path (issue 19)" (`libcuda.so.1 not found`).
#[cfg(not(feature = "cuda"))]
#[test]
fn a_gpu_this_binary_cannot_use_fails_at_once_and_commits_nothing() {
    let (env, sets) = trained_quickstart();
    let before = find_files(&env.path("cache/objects"), ".manifest.json");
    let e = env.err(&args(&sets, &["--device", "cuda"]), 2);
    assert!(
        e.contains("stage `train_b3`")
            && e.contains("--features cuda")
            && e.contains("NVIDIA driver"),
        "{e}"
    );
    assert_eq!(
        find_files(&env.path("cache/objects"), ".manifest.json"),
        before
    );
    // The newest run record (listed first) is the failed one.
    let runs = env.ok(&["runs"]);
    assert!(
        runs.lines().nth(1).is_some_and(|l| l.ends_with("failed")),
        "{runs}"
    );
    let dry = env.ok(&args(&sets, &["--dry-run", "--device", "cuda"]));
    assert_eq!(would_run(&dry), ["evaluate", "train_b3"], "{dry}");
}

/// The device `auto` resolved to, from `pipe run`'s line.
fn auto_choice(stdout: &str) -> String {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("device auto → "))
        .unwrap_or_else(|| panic!("no `device auto` line: {stdout}"));
    line.split_whitespace().next().unwrap().to_string()
}

/// `auto` resolves before any key: on a machine where it picks the CPU, its keys are `cpu`'s
/// (all hits after a CPU run), whether asked on the command line, by `--set` or in the YAML.
#[test]
fn device_auto_enters_the_key_as_the_device_it_resolves_to() {
    let (env, sets) = trained_quickstart();
    let dry = env.ok(&args(&sets, &["--dry-run", "--device", "auto"]));
    let picked = auto_choice(&dry);
    if cfg!(not(any(feature = "cuda", feature = "vulkan"))) {
        assert_eq!(picked, "cpu", "{dry}");
        assert!(
            dry.contains("cuda: not compiled into this binary")
                && dry.contains("vulkan: not compiled into this binary"),
            "{dry}"
        );
    }
    if picked != "cpu" {
        // A GPU is another key, for training and for inference alike.
        assert_eq!(would_run(&dry), ["evaluate", "train_b3"], "{dry}");
        return;
    }
    let out = env.ok(&args(&sets, &["--device", "auto"]));
    assert!(ran(&out).is_empty(), "{out}");
    assert_eq!(auto_choice(&out), "cpu");
    // The record holds the device the run used.
    let recs = records(&env);
    let overrides = recs.iter().map(|r| r["overrides"].to_string());
    assert!(overrides.clone().any(|o| o.contains("--device cpu")));
    assert!(!overrides.clone().any(|o| o.contains("auto")));
    let set_auto = [sets.clone(), vec!["stages.evaluate.device=auto".into()]].concat();
    let out = env.ok(&args(&set_auto, &[]));
    assert!(ran(&out).is_empty() && auto_choice(&out) == "cpu", "{out}");
    let yaml = std::fs::read_to_string(env.path("pipelines/quickstart.yaml")).unwrap();
    env.write(
        "pipelines/quickstart.yaml",
        &yaml.replace("    model: b3\n", "    model: b3\n    device: auto\n"),
    );
    let out = env.ok(&args(&sets, &[]));
    assert!(ran(&out).is_empty() && auto_choice(&out) == "cpu", "{out}");
    // `status` loads the same way: nothing to run.
    let mut status = vec!["status", "pipelines/quickstart.yaml"];
    for s in &sets {
        status.extend(["--set", s.as_str()]);
    }
    let st = env.ok(&status);
    assert!(not_cached(&st).is_empty(), "{st}");
}

#[test]
fn a_device_that_is_not_auto_or_a_backend_is_refused_naming_the_choices() {
    let env = data_env(10);
    let e = env.err(&["run", "p.yaml", "--device", "tpu"], 2);
    assert!(e.contains("auto, cpu, vulkan, cuda"), "{e}");
}

/// `pipe doctor` on the default build: the CPU compiled in, each GPU backend named with the
/// feature that brings it, and `auto` on the CPU.
#[cfg(not(any(feature = "cuda", feature = "vulkan")))]
#[test]
fn doctor_lists_the_backends_of_this_build_and_what_auto_picks() {
    let env = data_env(10);
    let out = env.ok(&["doctor"]);
    let line = |name: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no `{name}` line: {out}"))
            .to_string()
    };
    assert!(line("cpu").contains("compiled in; can start here"), "{out}");
    assert!(
        line("vulkan").contains("not compiled: rebuild with --features vulkan"),
        "{out}"
    );
    assert!(
        line("cuda").contains("not compiled: rebuild with --features cuda"),
        "{out}"
    );
    assert!(
        out.contains("--device auto → cpu (cuda: not compiled into this binary; vulkan: not compiled into this binary; cpu: "),
        "{out}"
    );
}
