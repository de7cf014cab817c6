//! Experiments (issue 22): `pipe diff` between recorded runs, `pipe compare`'s sort, filter,
//! columns and `--all`, run records shared through the remote (`push`, `runs --remote`,
//! `compare --remote`, `report --remote`), shell completions and `pipe init`.

use super::remote::{self, S3Server};
use super::*;

/// Synthetic faces, cleaned, split, one epoch of B3, evaluated: under a second.
const PIPELINE: &str = "\
name: exp
params:
  count: 200
stages:
  faces:
    kind: source
    format: synthetic
    count: ${params.count}
    height: 24
    width: 24
    channels: 3
    seed: 5
    rule: glasses_xor_light_hair
    exact_duplicates: 4
    near_duplicates: 4
    conflicting_duplicates: 2
  hashes:
    kind: hash
    inputs: {data: faces}
  groups:
    kind: dedup
    inputs: {hashes: hashes, data: faces}
  clean:
    kind: filter_conflicts
    inputs: {groups: groups, data: faces}
  split:
    kind: split
    seed: 1
    inputs: {data: faces, selection: clean, groups: groups}
  train:
    kind: train
    model: b3
    lr: 1.0e-3
    epochs: 1
    batch_size: 32
    seed: 1
    inputs: {data: faces, split: split}
  evaluate:
    kind: evaluate
    on: test
    inputs: {model: train, data: faces, split: split}
";

fn exp_env() -> Env {
    let env = Env::new();
    env.write("p.yaml", PIPELINE);
    env
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The entry of `list` (the diff's params, metrics or outputs) whose `field` is `name`.
fn entry<'a>(list: &'a serde_json::Value, field: &str, name: &str) -> &'a serde_json::Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|e| e[field] == name)
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

/// The run ids `pipe runs` lists, newest first.
fn run_ids(env: &Env) -> Vec<String> {
    env.ok(&["runs"])
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

#[test]
fn diff_shows_changed_params_metrics_and_outputs_with_signs() {
    let env = exp_env();
    env.ok(&["run", "p.yaml"]);
    env.ok(&["run", "p.yaml", "--set", "params.count=300"]);
    // Defaults: latest~1 → latest.
    let out = env.ok(&["diff"]);
    let line = |name: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} line in\n{out}"))
            .to_string()
    };
    assert!(line("faces.count").ends_with("200 → 300"), "{out}");
    assert!(line("faces.images").ends_with("210 → 310  (+100)"), "{out}");
    assert!(out.contains("\nchanged outputs (A → B)\n"), "{out}");
    // What did not change is left out, unless --all.
    assert!(!out.contains("train.lr"), "{out}");
    assert!(env.ok(&["diff", "--all"]).contains("train.lr"));

    let d = json(&env.ok(&["diff", "latest~1", "latest", "--json"]));
    let ids = run_ids(&env);
    assert_eq!(d["a"]["id"], ids[1].as_str());
    assert_eq!(d["b"]["id"], ids[0].as_str());
    let count = entry(&d["params"], "name", "faces.count");
    assert_eq!((&count["a"], &count["b"]), (&"200".into(), &"300".into()));
    let images = entry(&d["metrics"], "name", "faces.images");
    assert_eq!(images["delta"], 100.0);
    // Every change is b − a, and the text shows it with its sign.
    for m in d["metrics"].as_array().unwrap() {
        if let (Some(a), Some(b)) = (m["a"].as_f64(), m["b"].as_f64()) {
            assert!(
                (m["delta"].as_f64().unwrap() - (b - a)).abs() < 1e-12,
                "{m}"
            );
        }
    }
    let faces = entry(&d["outputs"], "stage", "faces");
    assert_ne!(faces["a"], faces["b"]);
    // Backwards: the signs flip. Runs are named by id (or its start) and by pipeline file.
    let back = env.ok(&["diff", &ids[0][..20], &ids[1]]);
    assert!(back.contains("310 → 210  (-100)"), "{back}");
    let same = env.ok(&["diff", "p.yaml", "latest"]);
    assert!(same.contains("no differences"), "{same}");
    let e = env.err(&["diff", "latest~5"], 2);
    assert!(e.contains("only 2 recorded run(s)"), "{e}");
    let e = env.err(&["diff", "nosuchrun", "latest"], 2);
    assert!(e.contains("`nosuchrun`: no such run id"), "{e}");
}

/// The rows of a Markdown table (header and separator left out), as cells.
fn rows(md: &str) -> Vec<Vec<String>> {
    md.lines()
        .filter(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

#[test]
fn compare_sorts_filters_picks_columns_and_shows_every_run() {
    let env = exp_env();
    for lr in ["0.01", "0.0005", "0.002"] {
        env.ok(&["run", "p.yaml", "--set", &format!("stages.train.lr={lr}")]);
    }
    // Without --all: the latest run only.
    let latest = env.ok(&["compare", "p.yaml", "--columns", "lr,balanced_accuracy"]);
    assert_eq!(rows(&latest).len(), 1, "{latest}");
    assert_eq!(rows(&latest)[0][0], "0.002", "{latest}");
    // --all: every run, oldest first; the default columns show what differs (lr).
    let all = env.ok(&["compare", "--all"]);
    assert!(
        all.starts_with("| run | pipeline | stage | lr | balanced_accuracy | accuracy"),
        "{all}"
    );
    let lrs: Vec<String> = rows(&all).iter().map(|r| r[3].clone()).collect();
    assert_eq!(lrs, ["0.01", "0.0005", "0.002"], "{all}");
    // --filter: numbers compare as numbers; several filters all hold.
    let cols = ["--columns", "lr,epochs,balanced_accuracy"];
    let small = env.ok(&[
        &["compare", "p.yaml", "--all", "--filter", "lr<0.005"][..],
        &cols,
    ]
    .concat());
    let lrs: Vec<String> = rows(&small).iter().map(|r| r[0].clone()).collect();
    assert_eq!(lrs, ["0.0005", "0.002"], "{small}");
    let both = env.ok(&[
        &[
            "compare",
            "p.yaml",
            "--all",
            "--filter",
            "lr>=0.001",
            "--filter",
            "model=b3",
        ][..],
        &cols,
    ]
    .concat());
    assert_eq!(rows(&both).len(), 2, "{both}");
    let none = env.ok(&["compare", "--all", "--filter", "epochs>1"]);
    assert!(rows(&none).is_empty(), "{none}");
    // --sort: highest first; ties keep run order.
    let sorted = env.ok(&[
        &["compare", "--all", "--sort", "balanced_accuracy"][..],
        &cols,
    ]
    .concat());
    let bacc: Vec<f64> = rows(&sorted)
        .iter()
        .map(|r| r[2].parse().unwrap())
        .collect();
    assert_eq!(bacc.len(), 3, "{sorted}");
    assert!(bacc.windows(2).all(|w| w[0] >= w[1]), "{sorted}");
    // Bad expressions and unknown names: exit 2, said clearly.
    let e = env.err(&["compare", "--all", "--filter", "lr~0.1"], 2);
    assert!(e.contains("no comparison"), "{e}");
    let e = env.err(&["compare", "--all", "--filter", "lr<fast"], 2);
    assert!(e.contains("compares numbers"), "{e}");
    let e = env.err(&["compare", "--all", "--sort", "bacc"], 2);
    assert!(e.contains("no compared run has `bacc`"), "{e}");
    let e = env.err(&["compare", "--all", "--columns", "run,nope"], 2);
    assert!(e.contains("`nope`"), "{e}");
}

#[test]
fn completions_name_every_subcommand() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish"] {
        let script = env.ok(&["completions", shell]);
        for sub in [
            "run",
            "diff",
            "compare",
            "init",
            "completions",
            "runs",
            "push",
        ] {
            assert!(script.contains(sub), "{shell} script lacks {sub}");
        }
    }
    assert!(env.ok(&["completions", "bash"]).contains("complete -F"));
    env.err(&["completions", "tcsh"], 2);
}

#[test]
fn init_starts_a_project_whose_first_run_works_and_never_overwrites() {
    let env = Env::new();
    let out = env.ok(&["init", "proj"]);
    let next = out
        .lines()
        .find_map(|l| l.strip_prefix("next: "))
        .unwrap_or_else(|| panic!("no next command in {out}"));
    assert_eq!(next, "cd proj && pipe run pipelines/example.yaml");
    for f in ["pipe.toml", ".gitignore", "pipelines/example.yaml"] {
        assert!(env.path("proj").join(f).is_file(), "{f} missing: {out}");
    }
    let gitignore = std::fs::read_to_string(env.path("proj/.gitignore")).unwrap();
    assert!(gitignore.contains("/cache/") && gitignore.contains("/data/"));
    // The printed command, in the project: it validates, plans, and (smaller) runs.
    let run: Vec<&str> = next
        .split(" && ")
        .nth(1)
        .unwrap()
        .split(' ')
        .skip(1)
        .collect();
    let in_proj = |args: &[&str]| {
        let mut c = env.cmd(args);
        c.current_dir(env.path("proj"));
        let o = c.output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "{args:?}: {text}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        text
    };
    in_proj(&["validate", run[1]]);
    let dry = in_proj(&[&run[..], &["--dry-run"]].concat());
    assert!(dry.contains("evaluate"), "{dry}");
    let small = ["--set", "params.count=300", "--set", "params.epochs=1"];
    let done = in_proj(&[&run[..], &small].concat());
    assert!(done.contains("7 ran, 0 cached"), "{done}");
    // A second init writes nothing over what is there.
    std::fs::write(env.path("proj/pipe.toml"), "# mine\n").unwrap();
    let e = env.err(&["init", "proj"], 2);
    assert!(
        e.contains("pipe.toml") && e.contains("writes nothing"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(env.path("proj/pipe.toml")).unwrap(),
        "# mine\n"
    );
}

/// A runs and pushes; B, another cache and directory on the same remote, sees A's runs with
/// who/where/when, compares and reports them (pulling what it needs), diffs them; the shared
/// records hold no path of A's machine.
fn records_round_trip(a: &Env, b: &Env) {
    // An absolute pipeline path: the record holds it, the shared copy must not. Runs upload
    // their outputs; `push` then shares the records.
    let abs = a.path("p.yaml").display().to_string();
    remote::rok(a, &["run", &abs]);
    remote::rok(a, &["run", "p.yaml", "--set", "stages.train.lr=0.002"]);
    let out = remote::rok(a, &["push", "p.yaml"]);
    assert!(out.contains("shared 2 run record(s)"), "{out}");
    assert!(out.contains("as relative paths"), "{out}");
    let out = remote::rok(a, &["push", "p.yaml"]);
    assert!(
        out.contains("shared 0 run record(s)") && out.contains("(2 already there)"),
        "{out}"
    );

    let listed = remote::rok(b, &["runs", "--remote"]);
    let ids = run_ids(a);
    for id in &ids {
        assert!(listed.contains(id.as_str()), "{id} not in\n{listed}");
    }
    let user = ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "unknown".into());
    assert!(listed.contains(&user), "{listed}");
    // B has no runs of its own: --remote brings A's.
    let local = b.err(&["diff"], 2);
    assert!(local.contains("only 0 recorded run(s)"), "{local}");
    let d = json(&remote::rok(b, &["diff", "--json", "--remote"]));
    assert_eq!(entry(&d["params"], "name", "train.lr")["b"], "0.002");
    let table = remote::rok(
        b,
        &[
            "compare",
            "p.yaml",
            "--all",
            "--columns",
            "run,lr",
            "--remote",
        ],
    );
    let shown: Vec<String> = rows(&table).iter().map(|r| r[1].clone()).collect();
    assert_eq!(shown, ["0.001", "0.002"], "{table}");
    let plain = remote::rok(b, &["compare", "p.yaml", "--remote"]);
    assert!(plain.contains("| exp | evaluate |"), "{plain}");
    let report = remote::rok(b, &["report", "p.yaml", "-o", "r.html", "--remote"]);
    assert!(report.contains("1 evaluation(s)"), "{report}");
    // Remote records are read, never copied into B's own runs/.
    assert!(walk_json(&b.path("cache/runs")).is_empty());
}

fn walk_json(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Every shared record under `runs` of the remote directory `root`: none names `dir`.
fn assert_no_path_of(root: &Path, dir: &Path) {
    let dir = dir.display().to_string();
    let records = walk_json(root);
    assert_eq!(records.len(), 2, "{records:?}");
    for r in records {
        let text = std::fs::read_to_string(&r).unwrap();
        assert!(!text.contains(&dir), "{} names {dir}:\n{text}", r.display());
        assert!(!text.contains(remote::SECRET), "{}", r.display());
        let v = json(&text);
        assert!(v["shared"]["host"].is_string() && v["shared"]["pushed"].is_string());
    }
}

#[test]
fn run_records_round_trip_through_a_file_remote() {
    let shared = tempfile::tempdir().unwrap();
    let (a, b) = (exp_env(), exp_env());
    remote::file_config(&a, shared.path());
    remote::file_config(&b, shared.path());
    records_round_trip(&a, &b);
    assert_no_path_of(&shared.path().join("runs"), a.dir.path());
}

#[test]
#[ignore = "needs s3s-fs, an S3 server (.ci/run installs it; run with --include-ignored)"]
fn run_records_round_trip_through_the_s3_server() {
    let srv = S3Server::start();
    let (a, b) = (exp_env(), exp_env());
    remote::s3_config(&a, srv.port, remote::BUCKET);
    remote::s3_config(&b, srv.port, remote::BUCKET);
    records_round_trip(&a, &b);
    assert_no_path_of(&srv.file("team/runs"), a.dir.path());
    remote::assert_no_secret_in(srv.file("team").as_path());
}
