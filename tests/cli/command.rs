//! `kind: command` stages (issue 22): the user's own steps beside the built-in kinds, run by the
//! real binary on the data pipeline's tiny raw data. The commands are `sh` (everywhere pipe
//! runs); the shipped example's test uses `python3` as its README says.

use super::*;

/// The data pipeline plus two command stages: `sizes` reads `split`'s output and a script,
/// `copy` reads `sizes`'s output through `$PIPE_DEP_SIZES`.
fn command_pipeline() -> String {
    format!(
        "{DATA_PIPELINE}{}",
        r#"  sizes:
    kind: command
    cmd: "wc -c < ${deps.split}/split.json > $PIPE_OUT/size.txt && sh ${deps.scripts/tag.sh} ${params.tag} > $PIPE_OUT/tag.txt && echo {\\\"scale\\\": ${params.scale}} > $PIPE_OUT/metrics.json && echo made it"
    deps: [split, scripts/tag.sh]
    params: {tag: hello, scale: 2}
    outs: [size.txt, tag.txt]
    metrics: metrics.json
  copy:
    kind: command
    cmd: [sh, -c, 'cat "$PIPE_DEP_SIZES/tag.txt" > "$PIPE_OUT/copy.txt"; echo "$PIPE_PARAM_N" >> "$PIPE_OUT/copy.txt"']
    deps: [sizes]
    params: {n: 1}
    outs: [copy.txt]
"#
    )
}

fn command_env() -> Env {
    let env = data_env(40);
    env.write("p.yaml", &command_pipeline());
    env.write("scripts/tag.sh", "echo \"tag:$1\"\n");
    env
}

/// The committed output directory of `stage` in the latest run.
fn output_of(env: &Env, stage: &str) -> PathBuf {
    let (_, d) = last_digests(env)
        .into_iter()
        .find(|(s, _)| s == stage)
        .unwrap();
    env.path("cache/objects").join(&d[..2]).join(d)
}

fn read(env: &Env, stage: &str, file: &str) -> String {
    std::fs::read_to_string(output_of(env, stage).join(file)).unwrap()
}

#[test]
fn command_stages_run_cache_and_rerun_exactly_what_a_change_reaches() {
    let env = command_env();
    let out = env.ok(&["run", "p.yaml"]);
    let mut all: Vec<&str> = ALL.to_vec();
    all.extend(["copy", "sizes"]);
    all.sort();
    assert_eq!(ran(&out), all, "{out}");
    assert_eq!(read(&env, "sizes", "tag.txt"), "tag:hello\n");
    assert_eq!(read(&env, "copy", "copy.txt"), "tag:hello\n1\n");
    assert!(read(&env, "sizes", "command.log").contains("made it"));
    let size: usize = read(&env, "sizes", "size.txt").trim().parse().unwrap();
    assert!(size > 100, "{size}");
    let rec = latest_record(&env);
    assert_eq!(rec["stages"]["sizes"]["report"]["metrics"]["scale"], 2.0);

    let out = env.ok(&["run", "p.yaml"]);
    assert!(ran(&out).is_empty(), "a second run is a no-op: {out}");

    // A param of `copy` reruns `copy` only, and says why.
    let set = ["--set", "stages.copy.params.n=2"];
    let why = env.ok(&[&["why", "p.yaml", "copy"][..], &set].concat());
    assert!(why.contains("field `params.n`: 1 → 2"), "{why}");
    let out = env.ok(&[&["run", "p.yaml"][..], &set].concat());
    assert_eq!(ran(&out), ["copy"], "{out}");
    assert_eq!(read(&env, "copy", "copy.txt"), "tag:hello\n2\n");

    // The script is a file dep: editing it reruns `sizes`, and `copy` since its tag changed.
    env.write("scripts/tag.sh", "echo \"label:$1\"\n");
    let st = env.ok(&[&["status", "p.yaml"][..], &set].concat());
    assert!(st.contains("source files (scripts/tag.sh) changed"), "{st}");
    let out = env.ok(&[&["run", "p.yaml"][..], &set].concat());
    assert_eq!(ran(&out), ["copy", "sizes"], "{out}");
    assert_eq!(read(&env, "copy", "copy.txt"), "label:hello\n2\n");

    // An upstream stage's new output reruns the command that reads it.
    let out = env.ok(&[&["run", "p.yaml", "--set", "stages.split.seed=9"][..], &set].concat());
    assert_eq!(ran(&out), ["sizes", "split"], "same tag, same size: {out}");
}

#[test]
fn a_failing_command_fails_its_stage_with_the_log_tail_and_stores_nothing() {
    let env = command_env();
    env.write(
        "scripts/tag.sh",
        "echo first line >&2\necho 'it broke' >&2\nexit 3\n",
    );
    let err = env.err(&["run", "p.yaml"], 2);
    assert!(
        err.contains("sizes") && err.contains("exited with status 3"),
        "{err}"
    );
    assert!(
        err.contains("it broke") && err.contains("first line"),
        "{err}"
    );
    assert!(
        !env.path("cache/objects").exists() || {
            let rec = latest_record(&env);
            rec["stages"]["sizes"]["digest"].is_null()
        }
    );
    let st = env.ok(&["status", "p.yaml"]);
    assert!(st.contains("its last run failed"), "{st}");
    env.write("scripts/tag.sh", "echo \"tag:$1\"\n");
    let out = env.ok(&["run", "p.yaml"]);
    assert_eq!(ran(&out), ["copy", "sizes"], "{out}");
}

#[test]
fn a_missing_declared_out_fails_naming_it() {
    let env = command_env();
    let text = command_pipeline().replace("outs: [copy.txt]", "outs: [copy.txt, gone.csv]");
    env.write("p.yaml", &text);
    let err = env.err(&["run", "p.yaml"], 2);
    assert!(
        err.contains("did not create `gone.csv` under $PIPE_OUT"),
        "{err}"
    );
    let rec = latest_record(&env);
    assert!(rec["stages"]["copy"]["digest"].is_null(), "{rec}");
}

#[test]
fn independent_command_stages_run_side_by_side_with_j2() {
    let env = data_env(20);
    let mut text = DATA_PIPELINE.to_string();
    for id in ["a", "b", "c"] {
        text.push_str(&format!(
            "  {id}:\n    kind: command\n    cmd: [sh, -c, 'sleep 0.3; echo {id} > $PIPE_OUT/{id}.txt']\n    deps: [split]\n    outs: [{id}.txt]\n"
        ));
    }
    env.write("p.yaml", &text);
    let out = env.ok(&["run", "p.yaml", "-j", "2"]);
    let mut all: Vec<&str> = ALL.to_vec();
    all.extend(["a", "b", "c"]);
    all.sort();
    assert_eq!(ran(&out), all, "{out}");
    assert_eq!(read(&env, "c", "c.txt"), "c\n");
    assert!(ran(&env.ok(&["run", "p.yaml", "-j", "2"])).is_empty());
}

#[test]
fn bad_command_stages_are_reported_with_positions_all_at_once() {
    let env = command_env();
    env.write(
        "bad.yaml",
        "name: bad\nstages:\n  a:\n    kind: command\n    cmd: [sh, '${params.x}']\n    deps: [nope.py, splitt]\n  c:\n    kind: command\n    cmd: echo\n    outz: [x]\n  b:\n    kind: command\n    cmd: echo\n    deps: [a]\n    inputs: {x: a}\n",
    );
    let err = env.err(&["validate", "bad.yaml"], 2);
    for want in [
        "bad.yaml:5:",
        "`${params.x}`: no param `x`",
        "bad.yaml:6:12: stages.a.deps[0]: `nope.py` is neither a stage of this pipeline nor a file or folder",
        "bad.yaml:6:21: stages.a.deps[1]: `splitt` is neither a stage of this pipeline nor a file or folder in",
        "bad.yaml:10:5: stages.c.outz: unknown field `outz`",
        "`command` has no input `x`",
    ] {
        assert!(err.contains(want), "missing {want:?} in\n{err}");
    }
}

#[test]
fn stage_deps_that_would_share_a_variable_are_refused() {
    let env = command_env();
    env.write(
        "clash.yaml",
        "name: clash\nstages:\n  eval-b:\n    kind: command\n    cmd: echo\n  eval_b:\n    kind: command\n    cmd: echo\n  use:\n    kind: command\n    cmd: echo\n    deps: [eval-b, eval_b]\n",
    );
    let err = env.err(&["validate", "clash.yaml"], 2);
    assert!(
        err.contains("clash.yaml:12:")
            && err
                .contains("stages `eval-b` and `eval_b` would share the variable $PIPE_DEP_EVAL_B"),
        "{err}"
    );
}

#[test]
fn a_sweep_over_a_param_runs_one_command_per_value() {
    let env = command_env();
    env.ok(&["run", "p.yaml"]);
    let out = env.ok(&["run", "p.yaml", "--sweep", "stages.copy.params.n=3,4"]);
    assert_eq!(ran(&out), ["copy", "copy"], "{out}");
    let recs = records(&env);
    let texts: Vec<String> = recs[recs.len() - 2..]
        .iter()
        .map(|r| {
            let d = r["stages"]["copy"]["digest"].as_str().unwrap();
            std::fs::read_to_string(
                env.path("cache/objects")
                    .join(&d[..2])
                    .join(d)
                    .join("copy.txt"),
            )
            .unwrap()
        })
        .collect();
    assert_eq!(texts, ["tag:hello\n3\n", "tag:hello\n4\n"]);
}

#[test]
fn env_whitelist_values_enter_the_key_and_nothing_else_is_passed() {
    let env = command_env();
    let text = command_pipeline().replace(
        "    params: {n: 1}\n",
        "    params: {n: 1}\n    env: [TEST_CMD_COLOUR]\n",
    ).replace(
        "echo \"$PIPE_PARAM_N\" >> \"$PIPE_OUT/copy.txt\"",
        "echo \"$PIPE_PARAM_N ${TEST_CMD_COLOUR:-none} ${TEST_CMD_OTHER:-none}\" >> \"$PIPE_OUT/copy.txt\"",
    );
    env.write("p.yaml", &text);
    let run = |colour: &str| {
        let out = env
            .cmd(&["run", "p.yaml"])
            .env("TEST_CMD_COLOUR", colour)
            .env("TEST_CMD_OTHER", colour)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run("red");
    assert_eq!(read(&env, "copy", "copy.txt"), "tag:hello\n1 red none\n");
    assert!(ran(&run("red")).is_empty());
    let out = run("blue");
    assert_eq!(ran(&out), ["copy"], "{out}");
    assert_eq!(read(&env, "copy", "copy.txt"), "tag:hello\n1 blue none\n");
    let rec = latest_record(&env).to_string();
    assert!(
        !rec.contains("blue"),
        "values enter the key as digests only"
    );
}

/// Runs the command pipeline with a remote; a second cache pulls every output.
fn remote_round_trip(a: &Env, b: &Env) {
    let out = super::remote::rok(a, &["run", "p.yaml"]);
    assert!(out.contains("pushed 7 stage(s)"), "{out}");
    let out = super::remote::rok(b, &["run", "p.yaml"]);
    assert!(ran(&out).is_empty(), "B ran stages: {out}");
    assert_eq!(super::remote::said(&out, "pulled").len(), 7, "{out}");
    assert_eq!(read(b, "copy", "copy.txt"), "tag:hello\n1\n");
    assert_eq!(last_digests(a), last_digests(b));
}

#[test]
fn command_outputs_round_trip_through_a_file_remote() {
    let shared = tempfile::tempdir().unwrap();
    let (a, b) = (command_env(), command_env());
    super::remote::file_config(&a, shared.path());
    super::remote::file_config(&b, shared.path());
    remote_round_trip(&a, &b);
}

#[test]
#[ignore = "needs s3s-fs, an S3 server (.ci/run installs it; run with --include-ignored)"]
fn command_outputs_round_trip_through_s3() {
    let srv = super::remote::S3Server::start();
    let (a, b) = (command_env(), command_env());
    super::remote::s3_config(&a, srv.port, "shared");
    super::remote::s3_config(&b, srv.port, "shared");
    remote_round_trip(&a, &b);
}

#[test]
#[ignore = "needs a running Slurm (.ci/slurm.sh start; run with --include-ignored)"]
fn command_stages_run_as_slurm_jobs_with_the_local_digests() {
    super::slurm::require_slurm();
    let local = command_env();
    local.ok(&["run", "p.yaml"]);
    let env = command_env();
    let out = env.ok(&["run", "p.yaml", "--executor", "slurm"]);
    assert!(out.contains("Slurm job"), "{out}");
    assert_eq!(last_digests(&env), last_digests(&local), "{out}");
    assert_eq!(read(&env, "copy", "copy.txt"), "tag:hello\n1\n");
    let out = env.ok(&[
        "run",
        "p.yaml",
        "--executor",
        "slurm",
        "--set",
        "stages.copy.params.n=5",
    ]);
    assert_eq!(ran(&out), ["copy"], "{out}");
}

#[test]
fn the_shipped_calibration_pipeline_mixes_built_in_and_command_stages() {
    let (env, _) = shipped_env(160, &[]);
    let sets = small_training("train_b1");
    let out = run_with(&env, "pipelines/calibration.yaml", &sets);
    assert!(ran(&out).contains(&"calibration".to_string()), "{out}");
    let rec = latest_record(&env);
    let metrics = &rec["stages"]["calibration"]["report"]["metrics"];
    let brier = metrics["brier"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&brier), "{metrics}");
    assert!(metrics["ece"].as_f64().is_some(), "{metrics}");
    let png = std::fs::read(output_of(&env, "calibration").join("reliability.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let csv = read(&env, "calibration", "reliability.csv");
    assert_eq!(csv.lines().count(), 11, "{csv}");
    assert!(ran(&run_with(&env, "pipelines/calibration.yaml", &sets)).is_empty());
    let table = env.ok(&["compare", "pipelines/calibration.yaml"]);
    assert!(
        table.contains("| calibration | calibration | brier | "),
        "{table}"
    );
    assert!(table.contains("evaluate_b1"), "{table}");
    env.ok(&["report", "pipelines/calibration.yaml", "-o", "r.html"]);
    let html = std::fs::read_to_string(env.path("r.html")).unwrap();
    assert!(
        html.contains("<h2>Command stages</h2>"),
        "no command section"
    );
    assert!(html.contains("reliability.png"), "no plot caption");
    assert!(
        html.contains("calibration: calibration_curve.csv"),
        "no CSV chart"
    );
    assert!(html.contains("id=\"chart-command-0\""), "no CSV chart");
    let mut five = sets.clone();
    five.push("stages.calibration.params.bins=5".into());
    let out = run_with(&env, "pipelines/calibration.yaml", &five);
    assert_eq!(ran(&out), ["calibration"], "{out}");
    assert_eq!(
        read(&env, "calibration", "reliability.csv").lines().count(),
        6
    );
}
