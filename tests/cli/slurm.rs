//! Integration tests of issue 11: `run --only`, per-stage `resources:`, and the Slurm executor on
//! a real one-node Slurm (`.ci/slurm.sh start`). The tests that need Slurm are `#[ignore]`d
//! (`cargo test` counts them as ignored, never as passed); `.ci/run` starts a Slurm and runs them
//! with `--include-ignored`, where a Slurm that does not answer fails them. The `--only` and
//! `resources:` tests, which need no Slurm, always run.
//! Jobs are counted in Slurm's own job-completion log (jobcomp/filetxt: no slurmdbd, so no
//! `sacct`), restricted to the test's working directory.

use super::*;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Fails the test unless a Slurm answers `sinfo`.
pub(super) fn require_slurm() {
    let up = Command::new("sinfo")
        .arg("--noheader")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        up,
        "no Slurm answers `sinfo`: start one with .ci/slurm.sh start"
    );
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// Slurm's `KEY=VALUE` line of a job in `scontrol show config`-style output.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|t| t.strip_prefix(key)?.strip_prefix('='))
}

/// Names of the jobs Slurm ran from `env`'s directory, once none of them is left in the queue
/// (read from the jobcomp log; sorted).
fn jobs_of(env: &Env) -> Vec<String> {
    let dir = env.dir.path().canonicalize().unwrap();
    let dir = dir.to_str().unwrap();
    let t0 = Instant::now();
    loop {
        let q = Command::new("squeue")
            .args(["--me", "--noheader", "--format=%Z"])
            .output()
            .unwrap();
        if !text(&q.stdout).lines().any(|l| l.trim() == dir) {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(300), "jobs never ended");
        std::thread::sleep(Duration::from_millis(200));
    }
    let config = text(
        &Command::new("scontrol")
            .args(["show", "config"])
            .output()
            .unwrap()
            .stdout,
    );
    let loc = config
        .lines()
        .find_map(|l| l.strip_prefix("JobCompLoc"))
        .map(|l| l.trim_start_matches([' ', '=']).trim().to_string())
        .expect("JobCompLoc in scontrol show config");
    // jobcomp writes the line when the job ends, a moment after squeue drops it.
    std::thread::sleep(Duration::from_millis(300));
    let log = std::fs::read_to_string(&loc).unwrap_or_default();
    let mut names: Vec<String> = log
        .lines()
        .filter(|l| field(l, "WorkDir") == Some(dir))
        .filter_map(|l| field(l, "Name"))
        .filter(|n| n.starts_with("pipe."))
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

/// The stage of a job name `pipe.STAGE.KEY.CACHE`.
fn stage_of(name: &str) -> &str {
    name.split('.').nth(1).unwrap()
}

fn stages_of(names: &[String]) -> Vec<String> {
    let mut s: Vec<String> = names.iter().map(|n| stage_of(n).to_string()).collect();
    s.sort();
    s
}

/// The shrunk quickstart: a few hundred faces, one epoch.
fn quick_sets() -> Vec<String> {
    [
        "stages.faces.count=300",
        "stages.faces.exact_duplicates=6",
        "stages.faces.near_duplicates=6",
        "stages.faces.conflicting_duplicates=2",
        "params.epochs=1",
    ]
    .map(String::from)
    .to_vec()
}

fn args_with<'a>(base: &[&'a str], sets: &'a [String]) -> Vec<&'a str> {
    let mut a = base.to_vec();
    for s in sets {
        a.extend(["--set", s.as_str()]);
    }
    a
}

const QUICK: &str = "pipelines/quickstart.yaml";

#[test]
fn only_runs_one_stage_and_names_the_inputs_it_lacks() {
    let env = data_env(40);
    let e = env.err(&["run", "p.yaml", "--only", "hashes"], 2);
    assert!(
        e.contains("--only hashes: its input stage is not cached: train_raw"),
        "{e}"
    );
    env.ok(&["run", "p.yaml", "--until", "train_raw"]);
    assert_eq!(
        ran(&env.ok(&["run", "p.yaml", "--only", "hashes"])),
        ["hashes"]
    );
    let e = env.err(&["run", "p.yaml", "--only", "split"], 2);
    assert!(
        e.contains("input stages are not cached: clean, groups"),
        "{e}"
    );
    let e = env.err(&["run", "p.yaml", "--only", "nope"], 2);
    assert!(e.contains("no stage `nope`"), "{e}");
    // `--only` holds the lock shared: a whole run (exclusive) keeps it out.
    let f = std::fs::File::open(env.path("cache/lock")).unwrap();
    fs4::fs_std::FileExt::lock_exclusive(&f).unwrap();
    let e = env.err(&["run", "p.yaml", "--only", "groups", "--no-wait"], 2);
    assert!(e.contains("in use by another pipe run"), "{e}");
}

#[test]
fn resources_are_validated_with_positions_and_stay_out_of_the_key() {
    let env = data_env(40);
    let first = env.ok(&["run", "p.yaml"]);
    assert_eq!(ran(&first).len(), 5);
    let again = env.ok(&[
        "run",
        "p.yaml",
        "--set",
        "stages.hashes.resources={cpus: 2, mem: 1G, time: 30m, partition: cpu}",
    ]);
    assert!(
        ran(&again).is_empty(),
        "resources are not in the key: {again}"
    );

    env.write(
        "bad.yaml",
        "name: bad\nstages:\n  a:\n    kind: hash\n    inputs: {data: b}\n    resources:\n      \
         cpus: 0\n      mem: lots\n      tiem: 2h\n  b:\n    kind: source\n    format: raw\n    \
         images: data/db_train.raw\n    labels: data/label_train.txt\n    height: 16\n    \
         width: 16\n    resources: [1]\n",
    );
    let e = env.err(&["validate", "bad.yaml"], 2);
    for want in [
        "bad.yaml:7:13: stages.a.resources.cpus: must be at least 1",
        "bad.yaml:8:12: stages.a.resources.mem: `lots` is not a memory size",
        "bad.yaml:9:7: stages.a.resources.tiem: unknown field `tiem` (did you mean `time`?)",
        "bad.yaml:17:16: stages.b.resources: expected a mapping",
        "4 errors",
    ] {
        assert!(e.contains(want), "missing {want:?} in\n{e}");
    }
}

/// Slurm and the local executor give the same bytes; Slurm runs exactly the stages that miss.
#[test]
#[ignore = "needs a running Slurm (.ci/slurm.sh start; run with --include-ignored)"]
fn slurm_runs_each_missing_stage_as_one_job_with_the_local_digests() {
    require_slurm();
    let sets = quick_sets();
    let (local, _) = shipped_env(10, &[]);
    local.ok(&args_with(&["run", QUICK], &sets));
    let expected = last_digests(&local);

    let (env, _) = shipped_env(10, &[]);
    let out = env.ok(&args_with(&["run", QUICK, "--executor", "slurm"], &sets));
    assert_eq!(last_digests(&env), expected, "{out}");
    let all = [
        "augment", "clean", "evaluate", "faces", "groups", "hashes", "split", "train_b3",
    ];
    assert_eq!(ran(&out), all, "{out}");
    assert!(out.contains("Slurm job"), "{out}");
    let jobs = jobs_of(&env);
    assert_eq!(stages_of(&jobs), all, "one job per stage: {jobs:?}");

    // A rerun submits nothing; a local run finds the same cache entries.
    let again = env.ok(&args_with(&["run", QUICK, "--executor", "slurm"], &sets));
    assert!(
        ran(&again).is_empty() && !again.contains("submit"),
        "{again}"
    );
    assert_eq!(jobs_of(&env), jobs);
    assert!(ran(&env.ok(&args_with(&["run", QUICK], &sets))).is_empty());

    // A training tweak submits the training and what reads it, nothing else; pipe.toml can
    // choose the executor.
    env.write(
        "pipe.toml",
        "[executor]\nkind = \"slurm\"\npoll_seconds = 0.2\n",
    );
    let mut tweaked = sets.clone();
    tweaked.push("stages.train_b3.lr=0.002".into());
    let out = env.ok(&args_with(&["run", QUICK], &tweaked));
    assert_eq!(ran(&out), ["evaluate", "train_b3"], "{out}");
    let after = jobs_of(&env);
    let new: Vec<String> = after
        .iter()
        .filter(|n| !jobs.contains(n))
        .cloned()
        .collect();
    assert_eq!(stages_of(&new), ["evaluate", "train_b3"], "{after:?}");
}

#[test]
#[ignore = "needs a running Slurm (.ci/slurm.sh start; run with --include-ignored)"]
fn a_stage_failing_in_its_job_exits_2_with_its_message_and_log() {
    require_slurm();
    let env = data_env(10);
    env.write("data/label_train.txt", "1\n0\n1\n2\n0\n0\n0\n0\n0\n0\n");
    let out = env.pipe(&["run", "p.yaml", "--executor", "slurm"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("stage `train_raw` failed in Slurm job")
            && stderr.contains("exit code 2")
            && stderr.contains("line 4: unknown label `2`"),
        "{stderr}"
    );
    let log = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("log: "))
        .unwrap_or_else(|| panic!("no log path in {stderr}"));
    assert!(
        std::fs::read_to_string(log)
            .unwrap()
            .contains("unknown label"),
        "{log}"
    );
    assert!(stdout.contains("blocked hashes"), "{stdout}");
}

#[test]
#[ignore = "needs a running Slurm (.ci/slurm.sh start; run with --include-ignored)"]
fn a_stage_asking_more_cpus_than_the_node_has_is_refused_clearly() {
    require_slurm();
    let env = data_env(10);
    let e = env.err(
        &[
            "run",
            "p.yaml",
            "--executor",
            "slurm",
            "--set",
            "stages.hashes.resources={cpus: 4096}",
        ],
        2,
    );
    assert!(
        e.contains("stage `hashes`: sbatch refused the job")
            && e.contains("More processors requested than permitted"),
        "{e}"
    );
}

/// Starts the Slurm driver on the shrunk quickstart; returns it once it submitted `stage` (its
/// further output is drained, so it never writes to a closed pipe).
fn driver_until_submitted(env: &Env, stage: &str) -> std::process::Child {
    let sets = quick_sets();
    let mut child = env
        .cmd(&args_with(&["run", QUICK, "--executor", "slurm"], &sets))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let want = format!("submit  {stage}");
    let found = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.trim_start().starts_with(&want));
    if !found {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the driver ended before submitting {stage}");
    }
    std::thread::spawn(move || lines.for_each(drop));
    child
}

#[test]
#[ignore = "needs a running Slurm (.ci/slurm.sh start; run with --include-ignored)"]
fn a_killed_driver_is_resumed_without_duplicate_jobs() {
    require_slurm();
    let sets = quick_sets();
    let (local, _) = shipped_env(10, &[]);
    local.ok(&args_with(&["run", QUICK], &sets));
    let expected = last_digests(&local);

    let (env, _) = shipped_env(10, &[]);
    let mut driver = driver_until_submitted(&env, "train_b3");
    driver.kill().unwrap(); // SIGKILL: no chance to cancel anything
    driver.wait().unwrap();
    let out = env.ok(&args_with(&["run", QUICK, "--executor", "slurm"], &sets));
    assert!(
        out.contains("waiting train_b3") || !ran(&out).contains(&"train_b3".to_string()),
        "the running training job is waited for: {out}"
    );
    assert!(!out.contains("submit  train_b3"), "{out}");
    assert_eq!(last_digests(&env), expected);
    let jobs = jobs_of(&env);
    let mut unique = jobs.clone();
    unique.dedup();
    assert_eq!(jobs, unique, "a job submitted twice");
    assert_eq!(jobs.len(), 8, "{jobs:?}");
}

#[test]
#[ignore = "needs a running Slurm (.ci/slurm.sh start; run with --include-ignored)"]
fn sigint_cancels_the_jobs_the_driver_submitted() {
    require_slurm();
    let (env, _) = shipped_env(10, &[]);
    let mut driver = driver_until_submitted(&env, "train_b3");
    let pid = driver.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = driver.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let jobs = jobs_of(&env);
    assert!(jobs.iter().any(|n| stage_of(n) == "train_b3"), "{jobs:?}");
    let dir = env.dir.path().canonicalize().unwrap();
    let log = std::fs::read_to_string(
        text(
            &Command::new("scontrol")
                .args(["show", "config"])
                .output()
                .unwrap()
                .stdout,
        )
        .lines()
        .find_map(|l| l.strip_prefix("JobCompLoc"))
        .map(|l| l.trim_start_matches([' ', '=']).trim().to_string())
        .unwrap(),
    )
    .unwrap();
    let train = log
        .lines()
        .filter(|l| field(l, "WorkDir") == dir.to_str())
        .find(|l| field(l, "Name").is_some_and(|n| stage_of(n) == "train_b3"))
        .unwrap();
    assert_eq!(field(train, "JobState"), Some("CANCELLED"), "{train}");
    // Nothing of it was committed: the next run trains.
    let out = env.ok(&args_with(&["run", QUICK], &quick_sets()));
    assert!(ran(&out).contains(&"train_b3".to_string()), "{out}");
}

type Lines = std::io::Lines<BufReader<std::process::ChildStdout>>;

/// The shrunk quickstart run locally (so every stage is cached), then the Slurm driver started
/// with `--force train_b3`; returns it once it submitted `train_b3`, with the rest of its
/// stdout's lines and that job's id.
fn forced_driver(env: &Env) -> (std::process::Child, Lines, u64) {
    let sets = quick_sets();
    env.ok(&args_with(&["run", QUICK], &sets));
    let mut child = env
        .cmd(&args_with(
            &["run", QUICK, "--executor", "slurm", "--force", "train_b3"],
            &sets,
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for l in lines.by_ref().map_while(Result::ok) {
        let job = l
            .trim_start()
            .strip_prefix("submit  train_b3")
            .and_then(|r| r.split("Slurm job ").nth(1))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|j| j.parse().ok());
        seen.push(l);
        if let Some(job) = job {
            return (child, lines, job);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the driver never submitted train_b3: {seen:?}");
}

/// Slurm's state of job `id` (`squeue` lists ended jobs for a while; empty once forgotten).
fn job_state(id: u64) -> String {
    text(
        &Command::new("squeue")
            .args(["--noheader", "--states=all", "--format=%T", "--jobs"])
            .arg(id.to_string())
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .to_string()
}

/// The rest of `child`'s stderr and its exit code.
fn finish(mut child: std::process::Child) -> (String, Option<i32>) {
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (stderr, child.wait().unwrap().code())
}

/// A forced stage's key is in the cache before its job even starts: the driver must wait for
/// the job to end (it used to say `ran` a second after submitting, the job still running).
#[test]
#[ignore = "needs a running Slurm (.ci/slurm.sh start; run with --include-ignored)"]
fn a_forced_stage_is_done_only_once_its_job_has_ended() {
    require_slurm();
    let (env, _) = shipped_env(10, &[]);
    let (driver, lines, job) = forced_driver(&env);
    let mut rest = Vec::new();
    for l in lines.map_while(Result::ok) {
        if l.trim_start().starts_with("ran     train_b3") {
            let state = job_state(job);
            assert!(
                state.is_empty() || state == "COMPLETED",
                "`ran` while Slurm job {job} is {state}: {l}"
            );
        }
        rest.push(l);
    }
    let (stderr, code) = finish(driver);
    assert_eq!(code, Some(0), "{rest:?}\n{stderr}");
    assert!(ran(&rest.join("\n")) == ["train_b3"], "{rest:?}");
    let rec = latest_record(&env);
    assert_eq!(rec["stages"]["train_b3"]["outcome"], "ran");
}

/// A forced stage whose job is cancelled failed, whatever the cache holds (its key is there from
/// the earlier run); what reads it is not judged against the old output.
#[test]
#[ignore = "needs a running Slurm (.ci/slurm.sh start; run with --include-ignored)"]
fn a_forced_stage_whose_job_is_cancelled_fails() {
    require_slurm();
    let (env, _) = shipped_env(10, &[]);
    let (driver, lines, job) = forced_driver(&env);
    assert!(
        Command::new("scancel")
            .arg(job.to_string())
            .status()
            .unwrap()
            .success()
    );
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let (stderr, code) = finish(driver);
    let out = rest.join("\n");
    assert_eq!(code, Some(1), "{out}\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "stage `train_b3` failed in Slurm job {job} (CANCELLED"
        )),
        "{stderr}"
    );
    assert!(ran(&out).is_empty(), "{out}");
    assert!(
        !out.contains("cached  evaluate") && out.contains("blocked evaluate"),
        "{out}"
    );
    let rec = latest_record(&env);
    assert_eq!(rec["ok"], false);
    assert_eq!(rec["stages"]["train_b3"]["outcome"], "failed");
    assert!(rec["stages"].get("evaluate").is_none(), "{rec}");
}

/// `resources: {gpus: 0}` wins over a GPU `device`: the job is submitted without `--gres`
/// (which this node, without GPUs, refuses) and fails in its own way (no Vulkan in this build).
#[test]
#[ignore = "needs a running Slurm (.ci/slurm.sh start; run with --include-ignored)"]
fn declared_gpus_win_over_the_device() {
    require_slurm();
    let (env, _) = shipped_env(10, &[]);
    let mut sets = quick_sets();
    env.ok(&args_with(&["run", QUICK, "--until", "augment"], &sets));
    sets.push("stages.train_b3.device=vulkan".into());
    sets.push("stages.train_b3.resources={gpus: 0}".into());
    let out = env.pipe(&args_with(
        &["run", QUICK, "--executor", "slurm", "--until", "train_b3"],
        &sets,
    ));
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("sbatch refused"), "{stderr}");
    assert!(
        stderr.contains("stage `train_b3` failed in Slurm job")
            && stderr.contains("needs the cargo feature `vulkan`"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(2), "{stderr}");
}

/// A Slurm project polling fast, for searches on tiny data.
fn slurm_search_env(epochs: u32) -> Env {
    let env = super::search::env_with(epochs);
    env.write("pipe.toml", "[executor]\npoll_seconds = 0.2\n");
    env
}

/// The records of a search's trials (its jobs' `--only` runs leave records too).
fn searched(env: &Env) -> Vec<serde_json::Value> {
    records(env)
        .into_iter()
        .filter(|r| r["sweep"].is_string())
        .collect()
}

/// Each trial's variant, training outcome, epoch it was pruned after and trained model.
fn trained(env: &Env) -> Vec<(String, String, serde_json::Value, serde_json::Value)> {
    searched(env)
        .iter()
        .map(|r| {
            let t = &r["stages"]["train"];
            (
                r["variant"].to_string(),
                t["outcome"].as_str().unwrap_or("none").to_string(),
                t["report"]["metrics"]["pruned_epoch"].clone(),
                t["digest"].clone(),
            )
        })
        .collect()
}

/// ASHA on Slurm: the watched training's job relays each epoch to the driver and waits for its
/// verdict, so the trials stop where they stop here, recorded as pruned, with the same models.
#[test]
#[ignore = "needs a running Slurm (.ci/slurm.sh start; run with --include-ignored)"]
fn a_pruned_search_on_slurm_decides_as_it_does_here() {
    require_slurm();
    let here = super::search::env_with(3);
    here.ok(&super::search::ASHA);
    let want = trained(&here);
    assert!(want.iter().any(|t| t.1 == "pruned"), "{want:?}");

    let env = slurm_search_env(3);
    let args = [&super::search::ASHA[..], &["--executor", "slurm"]].concat();
    let out = env.ok(&args);
    assert_eq!(trained(&env), want, "{out}");
    assert!(out.contains("Slurm job"), "{out}");
    assert!(out.contains("pruned after epoch"), "{out}");
    // Every training ran as a job; a pruned one's checkpoint stays for a longer run.
    let jobs = jobs_of(&env);
    let trainings = jobs.iter().filter(|n| stage_of(n) == "train").count();
    assert_eq!(trainings, want.len(), "{jobs:?}");
    for r in searched(&env) {
        let t = &r["stages"]["train"];
        if t["outcome"] == "pruned" {
            let key = t["key"].as_str().unwrap();
            assert!(env.path(&format!("cache/work/{key}/state.json")).is_file());
        }
    }
}

/// A TPE search on Slurm stopped by SIGTERM after its first trial: its jobs are cancelled, no
/// further trial starts; rerun, it finds the first trial in the cache and proposes what an
/// uninterrupted search proposes.
#[test]
#[ignore = "needs a running Slurm (.ci/slurm.sh start; run with --include-ignored)"]
fn a_search_on_slurm_stopped_by_sigterm_resumes_from_its_finished_trials() {
    use super::search::{killed_after_first_trial, outcomes, resumable};
    require_slurm();
    let whole = super::search::env_with(2);
    let here: Vec<String> = resumable(&[]);
    whole.ok(&here.iter().map(String::as_str).collect::<Vec<_>>());
    let want = outcomes(&records(&whole));

    let env = slurm_search_env(2);
    let args = resumable(&["--executor", "slurm"]);
    assert_eq!(killed_after_first_trial(&env, &args, "-TERM"), Some(1));
    let before = searched(&env);
    assert_eq!(before.len(), 2, "no trial after the second");
    assert_eq!(outcomes(&before[..1])[0], want[0]);
    assert_eq!(before[1]["ok"], false, "the second trial was stopped");
    assert!(before[1]["stages"]["train"]["digest"].is_null());

    let all: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.ok(&all);
    let rerun = outcomes(&searched(&env)[2..]);
    assert_eq!(rerun[0].1, "cached", "{out}");
    let values = |v: &[(String, String)]| v.iter().map(|(v, _)| v.clone()).collect::<Vec<_>>();
    assert_eq!(values(&rerun), values(&want), "the same proposals: {out}");
    let digest = |r: &serde_json::Value| r["stages"]["evaluate"]["digest"].clone();
    assert_eq!(
        searched(&env)[2..].iter().map(digest).collect::<Vec<_>>(),
        records(&whole).iter().map(digest).collect::<Vec<_>>()
    );
}

/// The pruned search on Slurm killed (SIGKILL) once its second trial's training was submitted:
/// that job waits for verdicts nobody gives; the rerun adopts it, answers its epochs from the
/// first, and the search ends as an uninterrupted one does, its first trial found in the cache.
#[test]
#[ignore = "needs a running Slurm (.ci/slurm.sh start; run with --include-ignored)"]
fn a_killed_pruned_search_on_slurm_adopts_its_waiting_training() {
    require_slurm();
    let here = super::search::env_with(3);
    here.ok(&super::search::ASHA);
    let want = trained(&here);

    let env = slurm_search_env(3);
    let args = [&super::search::ASHA[..], &["--executor", "slurm"]].concat();
    let mut driver = env
        .cmd(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(driver.stdout.take().unwrap()).lines();
    let mut second = false;
    let submitted = lines.by_ref().map_while(Result::ok).any(|l| {
        second |= l.starts_with("variant 2/6");
        second && l.trim_start().starts_with("submit  train")
    });
    assert!(submitted, "the search ended before its second training");
    driver.kill().unwrap();
    driver.wait().unwrap();
    std::thread::spawn(move || lines.for_each(drop));

    let out = env.ok(&args);
    assert!(out.contains("waiting train"), "the job is adopted: {out}");
    let got = trained(&env);
    let rerun = &got[got.len() - want.len()..];
    assert_eq!(rerun[0].1, "cached", "{out}");
    assert_eq!(rerun[1..], want[1..], "{out}");
}
