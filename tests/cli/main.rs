//! Integration tests: the real `pipe` binary on temporary directories with tiny generated data.
//!
//! One test binary; topics live in submodules, which use this file's helpers through `super::`.

mod cache_safety;
mod command;
mod declared;
mod determinism;
mod engine;
mod experiments;
mod fresh_clone;
mod inputs;
mod multiclass;
mod outputs;
mod remote;
mod report;
mod resnet;
mod search;
mod search_space;
mod slurm;
mod stack;
mod sweep;
mod yaml;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pipe"));
        c.current_dir(self.dir.path())
            .env_remove("PIPE_CACHE")
            .env_remove("RUST_LOG")
            .args(args);
        c
    }

    fn pipe(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs and asserts success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.pipe(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "pipe {args:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        stdout
    }

    /// Runs and asserts failure with `code`; returns stderr.
    fn err(&self, args: &[&str], code: i32) -> String {
        let out = self.pipe(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "pipe {args:?}\nstdout: {}\nstderr: {stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
        stderr
    }
}

/// Stage ids that ran (not cached) in a `pipe run` output.
fn ran(stdout: &str) -> Vec<String> {
    let mut v: Vec<String> = stdout
        .lines()
        .map(|l| strip_variant(l).trim_start())
        .filter_map(|l| l.strip_prefix("ran "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// A line without the `[N] ` a sweep's variant puts before it when variants run at once.
fn strip_variant(line: &str) -> &str {
    line.strip_prefix('[')
        .and_then(|r| r.split_once("] "))
        .filter(|(n, _)| n.parse::<usize>().is_ok())
        .map_or(line, |(_, rest)| rest)
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// `n` images of 16x16x3 in the challenge's raw layout, smooth enough for dHash, with images
/// 1 and 3 exact copies of 0 and 2, and image 3 labelled against image 2 (a conflict).
fn write_raw(env: &Env, n: usize) {
    let (h, w, c) = (16usize, 16usize, 3usize);
    let mut pixels = Vec::with_capacity(n * h * w * c);
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..n {
        if i == 1 || i == 3 {
            let start = (i - 1) * h * w * c;
            pixels.extend_from_within(start..start + h * w * c);
            continue;
        }
        // Random 4x4-pixel blocks: distinct dHashes, yet smooth enough to survive resizing.
        let blocks: Vec<u8> = (0..16 * c)
            .map(|_| (xorshift(&mut s) >> 24) as u8)
            .collect();
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    pixels.push(blocks[((y / 4) * 4 + x / 4) * c + ch]);
                }
            }
        }
    }
    std::fs::create_dir_all(env.path("data")).unwrap();
    std::fs::write(env.path("data/db_train.raw"), &pixels).unwrap();
    let labels: String = (0..n)
        .map(|i| match i {
            0..=2 => "1\n".to_string(),
            3 => "-1\n".to_string(),
            _ => format!("{}\n", if i % 2 == 0 { 1 } else { -1 }),
        })
        .collect();
    std::fs::write(env.path("data/label_train.txt"), labels).unwrap();
}

const DATA_PIPELINE: &str = "\
name: data
params:
  seed: 3
stages:
  train_raw:
    kind: source
    format: raw
    images: data/db_train.raw
    labels: data/label_train.txt
    height: 16
    width: 16
  hashes:
    kind: hash
    inputs: {data: train_raw}
  groups:
    kind: dedup
    inputs: {hashes: hashes, data: train_raw}
  clean:
    kind: filter_conflicts
    inputs: {groups: groups, data: train_raw}
  split:
    kind: split
    seed: ${params.seed}
    inputs: {data: train_raw, selection: clean, groups: groups}
";

fn data_env(n: usize) -> Env {
    let env = Env::new();
    write_raw(&env, n);
    env.write("p.yaml", DATA_PIPELINE);
    env
}

const ALL: [&str; 5] = ["clean", "groups", "hashes", "split", "train_raw"];

#[test]
fn first_run_runs_everything_and_second_run_nothing() {
    let env = data_env(60);
    let out = env.ok(&["run", "p.yaml"]);
    assert_eq!(ran(&out), ALL);
    assert!(
        out.contains("kept 57 of 60 (removed 3: 1 copies, 2 in 1 conflicting groups)"),
        "{out}"
    );
    let out = env.ok(&["run", "p.yaml"]);
    assert!(ran(&out).is_empty(), "{out}");
    assert!(out.contains("0 ran, 5 cached"), "{out}");
}

#[test]
fn changing_a_stage_field_reruns_that_stage_and_its_dependents_only() {
    let env = data_env(60);
    env.ok(&["run", "p.yaml"]);
    let out = env.ok(&["run", "p.yaml", "--set", "stages.groups.radius=2"]);
    assert_eq!(ran(&out), ["clean", "groups", "split"]);
}

#[test]
fn a_rerun_with_identical_output_leaves_dependents_cached() {
    let env = data_env(60);
    env.ok(&["run", "p.yaml"]);
    // The only conflicting group is a 1-vs-1 tie: `majority` drops it too, same selection.
    let out = env.ok(&["run", "p.yaml", "--set", "stages.clean.policy=majority"]);
    assert_eq!(ran(&out), ["clean"]);
}

#[test]
fn touching_a_source_file_without_changing_its_bytes_reruns_nothing() {
    let env = data_env(40);
    env.ok(&["run", "p.yaml"]);
    let bytes = std::fs::read(env.path("data/db_train.raw")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(env.path("data/db_train.raw"), bytes).unwrap();
    let out = env.ok(&["run", "p.yaml"]);
    assert!(ran(&out).is_empty(), "{out}");
}

#[test]
fn changing_one_source_byte_reruns_the_source_and_everything_downstream() {
    let env = data_env(40);
    env.ok(&["run", "p.yaml"]);
    let mut bytes = std::fs::read(env.path("data/db_train.raw")).unwrap();
    bytes[16 * 16 * 3 * 10 + 5] ^= 0xff;
    std::fs::write(env.path("data/db_train.raw"), bytes).unwrap();
    let out = env.ok(&["run", "p.yaml"]);
    assert_eq!(ran(&out), ALL);
}

#[test]
fn a_set_override_equals_the_file_edit() {
    let env = data_env(40);
    let out = env.ok(&["run", "p.yaml", "--set", "stages.split.seed=11"]);
    assert_eq!(ran(&out), ALL);
    env.write(
        "p.yaml",
        &DATA_PIPELINE.replace("seed: ${params.seed}", "seed: 11"),
    );
    let out = env.ok(&["run", "p.yaml"]);
    assert!(ran(&out).is_empty(), "{out}");
    let out = env.ok(&["run", "p.yaml", "--set", "stages.split.seed=12"]);
    assert_eq!(ran(&out), ["split"]);
    // params too
    env.write("p.yaml", DATA_PIPELINE);
    let out = env.ok(&["run", "p.yaml", "--set", "params.seed=12"]);
    assert!(ran(&out).is_empty(), "{out}");
}

#[test]
fn status_why_dag_runs_and_gc_explain_the_cache() {
    let env = data_env(40);
    let st = env.ok(&["status", "p.yaml"]);
    assert!(st.lines().all(|l| l.contains("missing")), "{st}");
    env.ok(&["run", "p.yaml"]);
    let st = env.ok(&["status", "p.yaml", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&st).unwrap();
    assert_eq!(v["split"]["state"], "cached");
    let st = env.ok(&[
        "status",
        "p.yaml",
        "--set",
        "stages.split.train=0.5",
        "--set",
        "stages.split.val=0.2",
    ]);
    assert!(
        st.contains("split") && st.contains("field `train`: 0.595 → 0.5"),
        "{st}"
    );
    let why = env.ok(&["why", "p.yaml", "split", "--set", "stages.split.seed=9"]);
    assert!(why.contains("`split`: field `seed`: 3 → 9"), "{why}");
    let why = env.ok(&["why", "p.yaml", "hashes"]);
    assert!(why.contains("cached"), "{why}");
    let dot = env.ok(&["dag", "p.yaml"]);
    assert!(dot.contains("\"hashes\" -> \"groups\""), "{dot}");
    let mer = env.ok(&["dag", "p.yaml", "--format", "mermaid"]);
    assert!(mer.starts_with("flowchart LR"), "{mer}");
    env.ok(&["run", "p.yaml", "--set", "stages.split.seed=5"]);
    let runs = env.ok(&["runs"]);
    assert_eq!(runs.lines().count(), 3, "{runs}");
    let gc = env.ok(&["gc", "--keep-runs", "1"]);
    assert!(gc.contains("removed 1 objects, 1 run records"), "{gc}");
    let out = env.ok(&["run", "p.yaml", "--set", "stages.split.seed=5"]);
    assert!(ran(&out).is_empty(), "{out}");
}

#[test]
fn force_until_and_dry_run() {
    let env = data_env(40);
    let out = env.ok(&["run", "p.yaml", "--until", "hashes"]);
    assert_eq!(ran(&out), ["hashes", "train_raw"]);
    let out = env.ok(&["run", "p.yaml", "--dry-run"]);
    assert!(ran(&out).is_empty());
    assert!(out.contains("would run groups"), "{out}");
    env.ok(&["run", "p.yaml"]);
    let out = env.ok(&["run", "p.yaml", "--force", "hashes"]);
    // identical output: early cutoff keeps everything downstream cached
    assert_eq!(ran(&out), ["hashes"]);
    let e = env.err(&["run", "p.yaml", "--force", "hashs"], 2);
    assert!(e.contains("did you mean `hashes`"), "{e}");
}

#[test]
fn a_damaged_object_is_detected_on_use_and_rebuilt() {
    let env = data_env(40);
    env.ok(&["run", "p.yaml"]);
    // Flip a byte inside the source's cached pixels, keeping the size.
    let pixels = find_files(&env.path("cache/objects"), "pixels.u8");
    assert_eq!(pixels.len(), 1);
    let mut b = std::fs::read(&pixels[0]).unwrap();
    b[7] ^= 1;
    std::fs::write(&pixels[0], b).unwrap();
    let out = env.ok(&["run", "p.yaml", "--set", "stages.split.seed=8"]);
    assert!(out.contains("damaged train_raw"), "{out}");
    assert!(ran(&out).contains(&"train_raw".to_string()), "{out}");
    let b = std::fs::read(&find_files(&env.path("cache/objects"), "pixels.u8")[0]).unwrap();
    assert_eq!(b, std::fs::read(env.path("data/db_train.raw")).unwrap());
}

fn find_files(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(find_files(&p, name));
            } else if p.file_name().is_some_and(|n| n == name) {
                out.push(p);
            }
        }
    }
    out
}

/// The run records of `env`'s cache, oldest first (their file names start with the start time).
fn record_files(env: &Env) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(env.path("cache/runs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

/// Every run record, oldest first, as JSON.
fn records(env: &Env) -> Vec<serde_json::Value> {
    record_files(env)
        .iter()
        .map(|f| serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap())
        .collect()
}

fn latest_record(env: &Env) -> serde_json::Value {
    records(env).pop().unwrap()
}

/// The latest run's stage → output digest ("" for a stage without one).
fn last_digests(env: &Env) -> Vec<(String, String)> {
    latest_record(env)["stages"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v["digest"].as_str().unwrap_or("").to_string()))
        .collect()
}

#[test]
fn killing_pipe_mid_stage_leaves_a_valid_cache_and_a_correct_next_run() {
    let reference = data_env(3000);
    reference.ok(&["run", "p.yaml"]);
    let expected = last_digests(&reference);

    let env = data_env(3000);
    for delay_ms in [5u64, 30, 80, 150, 300] {
        let mut child = env
            .cmd(&["run", "p.yaml", "-j", "1"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // Whatever was committed verifies.
        for m in find_files(&env.path("cache/objects"), ".manifest.json") {
            let dir = m.parent().unwrap();
            let man: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&m).unwrap()).unwrap();
            for f in man["files"].as_array().unwrap() {
                let bytes = std::fs::read(dir.join(f["path"].as_str().unwrap())).unwrap();
                assert_eq!(
                    blake3::hash(&bytes).to_hex().as_str(),
                    f["blake3"].as_str().unwrap()
                );
            }
        }
    }
    env.ok(&["run", "p.yaml"]);
    assert_eq!(last_digests(&env), expected);
    assert!(
        std::fs::read_dir(env.path("cache/tmp"))
            .unwrap()
            .next()
            .is_none(),
        "tmp is cleaned"
    );
}

#[test]
fn no_wait_fails_clearly_while_another_run_holds_the_lock() {
    let env = data_env(10);
    std::fs::create_dir_all(env.path("cache")).unwrap();
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(env.path("cache/lock"))
        .unwrap();
    fs4::fs_std::FileExt::lock_exclusive(&f).unwrap();
    let e = env.err(&["run", "p.yaml", "--no-wait"], 2);
    assert!(e.contains("in use by another pipe run"), "{e}");
}

// ---------- bad data ----------

#[test]
fn bad_raw_data_gets_a_clear_error_naming_the_file() {
    let env = data_env(10);
    std::fs::write(
        env.path("data/db_train.raw"),
        vec![0u8; 16 * 16 * 3 * 10 + 5],
    )
    .unwrap();
    let e = env.err(&["run", "p.yaml"], 2);
    assert!(
        e.contains("db_train.raw") && e.contains("not a multiple of 16x16x3 = 768"),
        "{e}"
    );

    let env = data_env(10);
    env.write("data/label_train.txt", "1\n0\n");
    let e = env.err(&["run", "p.yaml"], 2);
    assert!(
        e.contains("label_train.txt") && e.contains("2 labels for 10 images"),
        "{e}"
    );

    let env = data_env(10);
    env.write("data/label_train.txt", "1\n0\n1\n2\n0\n0\n0\n0\n0\n0\n");
    let e = env.err(&["run", "p.yaml"], 2);
    assert!(e.contains("line 4: unknown label `2`"), "{e}");

    let env = data_env(10);
    std::fs::remove_file(env.path("data/db_train.raw")).unwrap();
    let e = env.err(&["run", "p.yaml"], 2);
    assert!(e.contains("db_train.raw"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
}

#[test]
fn a_folder_source_reads_png_and_jpeg_and_names_bad_images() {
    let env = Env::new();
    std::fs::create_dir_all(env.path("imgs")).unwrap();
    for i in 0..6u8 {
        let img = image::RgbImage::from_fn(20, 12, |x, y| {
            image::Rgb([x as u8 * 10, y as u8 * 10 + i, i * 30])
        });
        let ext = if i % 2 == 0 { "png" } else { "jpg" };
        img.save(env.path(&format!("imgs/{i}.{ext}"))).unwrap();
    }
    env.write(
        "labels.csv",
        "filename,label\n0.png,0\n1.jpg,1\n2.png,0\n3.jpg,1\n4.png,1\n5.jpg,0\n",
    );
    env.write(
        "f.yaml",
        "stages:\n  src:\n    kind: source\n    format: folder\n    dir: imgs\n    labels: labels.csv\n    height: 10\n    width: 10\n    channels: 1\n",
    );
    let out = env.ok(&["run", "f.yaml"]);
    assert!(out.contains("6 images 10x10x1, 3 labelled 1"), "{out}");
    std::fs::write(env.path("imgs/2.png"), b"not a png").unwrap();
    let jpg = std::fs::read(env.path("imgs/3.jpg")).unwrap();
    std::fs::write(env.path("imgs/3.jpg"), &jpg[..jpg.len() / 2]).unwrap();
    env.write(
        "labels.csv",
        "filename,label\n0.png,0\n1.jpg,1\n2.png,0\n3.jpg,1\n4.png,1\n5.jpg,0\nmissing.png,1\n",
    );
    let e = env.err(&["run", "f.yaml"], 2);
    assert!(e.contains("3 of 7 images could not be read"), "{e}");
    assert!(
        e.contains("image 3 `3.jpg` (labels line 5): truncated JPEG"),
        "{e}"
    );
    assert!(
        e.contains("image 2 `2.png` (labels line 4): cannot decode"),
        "{e}"
    );
    assert!(e.contains("image 6 `missing.png` (labels line 8)"), "{e}");
}

// ---------- validation ----------

/// (pipeline text, expected substrings of the diagnostics, including line:column).
const INVALID: &[(&str, &[&str])] = &[
    (
        "stages:\n  a:\n    kind: sorce\n",
        &["p.yaml:3:11: stages.a.kind: unknown stage kind `sorce` (did you mean `source`?)"],
    ),
    (
        "stages:\n  a:\n    format: raw\n",
        &["p.yaml:2:3: stages.a: missing `kind`"],
    ),
    (
        "stages:\n  a:\n    kind: source\n    format: raw\n    images: x\n    hieght: 5\n",
        &["p.yaml:6:5: stages.a.hieght: unknown field `hieght` (did you mean `height`?)"],
    ),
    (
        "stages:\n  a:\n    kind: source\n    format: raw\n    images: x\n    height: big\n",
        &["p.yaml:6:13: stages.a.height: invalid type: string \"big\", expected u32"],
    ),
    (
        "stages:\n  a:\n    kind: source\n    format: rw\n    images: x\n",
        &["p.yaml:4:13: stages.a.format: unknown value `rw` (did you mean `raw`?)"],
    ),
    (
        "stages:\n  h:\n    kind: hash\n    inputs: {data: nope}\n",
        &["p.yaml:4:20: stages.h.inputs.data: unknown stage `nope`"],
    ),
    (
        "stages:\n  a:\n    kind: source\n    format: synthetic\n  h:\n    kind: hash\n    inputs: {dat: a}\n",
        &[
            "p.yaml:7:14: stages.h.inputs.dat: `hash` has no input `dat` (did you mean `data`?)",
            "stages.h.inputs: missing input `data`",
        ],
    ),
    (
        "stages:\n  a:\n    kind: source\n    format: synthetic\n  h:\n    kind: hash\n    inputs: {data: a}\n  g:\n    kind: dedup\n    inputs: {hashes: a, data: a}\n",
        &[
            "p.yaml:10:22: stages.g.inputs.hashes: input `hashes` expects a hashes artifact, but stage `a` (source) produces dataset",
        ],
    ),
    (
        "stages:\n  a:\n    kind: source\n    format: synthetic\n  a:\n    kind: hash\n",
        &["p.yaml:5:3: YAML syntax: duplicate key `a` (first at line 2)"],
    ),
    (
        "stages:\n  h:\n    kind: hash\n    inputs: {data: g}\n  g:\n    kind: dedup\n    inputs: {hashes: h, data: h}\n",
        &["cycle: g → h → g", "produces hashes"],
    ),
    (
        "stages:\n  g:\n    kind: dedup\n    radius: 9\n",
        &["p.yaml:4:13: stages.g.radius: radius 9 exceeds the maximum of 8"],
    ),
    (
        "stages:\n  s:\n    kind: split\n    train: 0.5\n    val: 0.1\n    test: 0.1\n",
        &["stages.s.test: train + val + test must sum to 1, got 0.5 + 0.1 + 0.1"],
    ),
    (
        "stages:\n  s:\n    kind: split\n    seed: ${params.sed}\nparams:\n  seed: 1\n",
        &[
            "p.yaml:4:11: stages.s.seed: unresolved `${params.sed}`: no parameter `sed` (did you mean `seed`?)",
        ],
    ),
    (
        "stagess:\n  a: 1\n",
        &["p.yaml:1:1: stagess: unknown top-level key `stagess` (did you mean `stages`?)"],
    ),
    (
        "include: [p.yaml]\nstages: {}\n",
        &["p.yaml:1:11: include: include loop: p.yaml → p.yaml"],
    ),
    ("stages:\n  a: [1, 2\n", &["p.yaml:", "YAML syntax"]),
    (
        "stages:\n  t:\n    kind: train\n    model: b4\n",
        &["p.yaml:4:12: stages.t.model: unknown value `b4`"],
    ),
    (
        "stages:\n  h:\n    kind: hash\n    hash_size: 1\n    algorithm: fast\n",
        &["stages.h.algorithm: unknown value `fast`"],
    ),
    (
        "stages:\n  a:\n    kind: source\n    format: raw\n    images: x\n    channels: 2\n    colour: rgb\n",
        &["stages.a.colour: unknown field `colour`"],
    ),
];

#[test]
fn invalid_pipelines_are_reported_with_positions() {
    assert!(INVALID.len() >= 15);
    for (i, (yaml, expected)) in INVALID.iter().enumerate() {
        let env = Env::new();
        env.write("p.yaml", yaml);
        let e = env.err(&["validate", "p.yaml"], 2);
        for want in *expected {
            assert!(
                e.contains(want),
                "case {i}: expected `{want}` in:\n{e}\n--- yaml ---\n{yaml}"
            );
        }
        assert!(!e.contains("panicked"), "case {i}: {e}");
    }
}

#[test]
fn validation_reports_every_error_at_once_and_json() {
    let env = Env::new();
    env.write(
        "p.yaml",
        "stages:\n  a:\n    kind: source\n    format: raw\n    images: x\n    hieght: 5\n    wdth: 3\n  g:\n    kind: dedup\n    radius: 12\n    inputs: {hashes: zz, data: a}\n",
    );
    let e = env.err(&["validate", "p.yaml"], 2);
    for want in [
        "`hieght`",
        "`wdth`",
        "radius 12",
        "unknown stage `zz`",
        "4 errors",
    ] {
        assert!(e.contains(want), "expected {want} in\n{e}");
    }
    let out = env.pipe(&["validate", "p.yaml", "--format", "json"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"].as_array().unwrap().len(), 4);
    assert_eq!(v["errors"][0]["line"], 6);
}

#[test]
fn includes_share_stages_and_cache_entries() {
    let env = data_env(40);
    env.write(
        "exp.yaml",
        "name: exp\ninclude: [p.yaml]\nstages:\n  split2:\n    kind: split\n    seed: 99\n    inputs: {data: train_raw, selection: clean}\n",
    );
    env.ok(&["validate", "p.yaml", "exp.yaml"]);
    env.ok(&["run", "p.yaml"]);
    let out = env.ok(&["run", "exp.yaml"]);
    assert_eq!(ran(&out), ["split2"]);
}

// ---------- shipped pipelines, end to end on tiny synthetic data ----------

/// Copies `pipelines/` into a temp dir and writes tiny challenge files into its `data/`:
/// synthetic faces as `db_train.raw` + `label_train.txt`, and a `db_test.raw` made of new faces
/// with `copies` training images planted at known positions.
fn shipped_env(n_train: usize, copies: &[usize]) -> (Env, Vec<usize>) {
    use pipe::data::synthetic::{SyntheticConfig, generate};
    let env = Env::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        std::fs::create_dir_all(env.path("pipelines")).unwrap();
        std::fs::copy(e.path(), env.path("pipelines").join(e.file_name())).unwrap();
    }
    let cfg = SyntheticConfig {
        count: n_train,
        exact_duplicates: 4,
        near_duplicates: 4,
        conflicting_duplicates: 2,
        ..SyntheticConfig::default()
    };
    let (train, _) = generate(&cfg).unwrap();
    let (fresh, _) = generate(&SyntheticConfig {
        seed: 1234,
        count: 30,
        exact_duplicates: 0,
        near_duplicates: 0,
        conflicting_duplicates: 0,
        ..cfg.clone()
    })
    .unwrap();
    std::fs::create_dir_all(env.path("data")).unwrap();
    std::fs::write(env.path("data/db_train.raw"), &train.pixels[..]).unwrap();
    let labels: String = train
        .labels
        .as_ref()
        .unwrap()
        .iter()
        .map(|&l| if l == 1 { "1\n" } else { "-1\n" })
        .collect();
    std::fs::write(env.path("data/label_train.txt"), labels).unwrap();
    let mut test = Vec::new();
    let mut positions = Vec::new();
    let mut next_copy = copies.iter();
    for i in 0..fresh.len() {
        if i % 4 == 1
            && let Some(&c) = next_copy.next()
        {
            positions.push(test.len() / fresh.shape.image_len());
            test.extend_from_slice(train.image(c));
        }
        test.extend_from_slice(fresh.image(i));
    }
    std::fs::write(env.path("data/db_test.raw"), &test).unwrap();
    (env, positions)
}

fn small_training(stage: &str) -> Vec<String> {
    [
        format!("stages.{stage}.epochs=1"),
        format!("stages.{stage}.batch_size=32"),
    ]
    .to_vec()
}

fn run_with(env: &Env, file: &str, sets: &[String]) -> String {
    let mut args = vec!["run", file];
    for s in sets {
        args.push("--set");
        args.push(s);
    }
    env.ok(&args)
}

#[test]
fn final_b3_pipeline_writes_the_submission_with_hash_overrides() {
    let copies = [2usize, 40, 90, 150, 199];
    let (env, positions) = shipped_env(240, &copies);
    let out = run_with(
        &env,
        "pipelines/final_b3.yaml",
        &small_training("train_final"),
    );
    assert!(out.contains("took a training label by hash"), "{out}");
    let obj = find_files(&env.path("cache/objects"), "submission.txt");
    assert_eq!(obj.len(), 1);
    let sub = std::fs::read_to_string(&obj[0]).unwrap();
    let lines: Vec<&str> = sub.lines().collect();
    assert_eq!(lines.len(), 30 + copies.len(), "one label per test image");
    assert!(lines.iter().all(|l| *l == "1" || *l == "-1"));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(obj[0].with_file_name("predict.json")).unwrap())
            .unwrap();
    assert_eq!(summary["overridden"], copies.len());
    // The planted copies carry their training labels, in input order.
    let train_labels: Vec<String> = std::fs::read_to_string(env.path("data/label_train.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    for (p, c) in positions.iter().zip(copies) {
        assert_eq!(
            lines[*p], train_labels[c],
            "test image {p} is a copy of training image {c}"
        );
    }
    assert!(obj[0].with_file_name("overrides.png").exists());
    let analyze = find_files(&env.path("cache/objects"), "saliency.png");
    assert_eq!(analyze.len(), 1);
}

#[test]
fn model_pipelines_run_end_to_end_and_compare_prints_table_1() {
    let (env, _) = shipped_env(160, &[]);
    let mut sets = Vec::new();
    for m in ["b1", "b2", "b3", "tl1", "tl2", "tl3"] {
        sets.extend(small_training(&format!("train_{m}")));
    }
    for m in ["tl1", "tl2", "tl3"] {
        sets.push(format!("stages.train_{m}.weights=null"));
    }
    let out = run_with(&env, "pipelines/compare.yaml", &sets);
    assert!(out.contains("ensemble balanced accuracy"), "{out}");
    let table = env.ok(&["compare", "pipelines/compare.yaml", "--png", "table1.png"]);
    for m in [
        "evaluate_b1",
        "evaluate_b2",
        "evaluate_b3",
        "evaluate_tl1",
        "evaluate_tl2",
        "evaluate_tl3",
        "ensemble_tl1_tl3",
    ] {
        assert!(table.contains(m), "{m} missing from\n{table}");
    }
    assert!(env.path("table1.png").exists());
    // Each single-model pipeline shares the data stages and the trained models' cache entries.
    for m in ["b1", "b2", "b3", "tl1", "tl2", "tl3"] {
        let mut s = small_training(&format!("train_{m}"));
        if m.starts_with("tl") {
            s.push(format!("stages.train_{m}.weights=null"));
        }
        let out = run_with(&env, &format!("pipelines/{m}.yaml"), &s);
        assert!(ran(&out).is_empty(), "{m}: {out}");
    }
}

#[test]
fn a_killed_training_resumes_from_its_last_epoch() {
    let env = Env::new();
    env.write(
        "t.yaml",
        "stages:\n  faces: {kind: source, format: synthetic, count: 150, height: 24, width: 24, exact_duplicates: 0, near_duplicates: 0, conflicting_duplicates: 0}\n  split: {kind: split, inputs: {data: faces}}\n  train: {kind: train, model: b1, epochs: 30, batch_size: 16, inputs: {data: faces, split: split}}\n",
    );
    let mut child = env
        .cmd(&["run", "t.yaml"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if !find_files(&env.path("cache/work"), "state.json").is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no epoch checkpoint appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    env.ok(&["run", "t.yaml"]);
    let summary = find_files(&env.path("cache/objects"), "summary.json");
    assert_eq!(summary.len(), 1);
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary[0]).unwrap()).unwrap();
    assert_eq!(s["epochs_run"], 30);
    // Where it resumed is a fact of the run (run record), not of the model (object).
    assert!(s.get("resumed_from_epoch").is_none(), "{s}");
    let rec = latest_record(&env);
    let resumed = &rec["stages"]["train"]["report"]["execution"]["resumed_from_epoch"];
    assert!(
        resumed.as_f64().is_some_and(|e| (1.0..30.0).contains(&e)),
        "{rec}"
    );
    assert!(
        find_files(&env.path("cache/work"), "state.json").is_empty(),
        "work dir removed after commit"
    );
}

#[test]
fn the_data_stages_recover_the_planted_synthetic_counts_exactly() {
    let env = Env::new();
    env.write(
        "s.yaml",
        "stages:\n  faces: {kind: source, format: synthetic, count: 3000, seed: 5, exact_duplicates: 40, near_duplicates: 30, conflicting_duplicates: 9}\n  hashes: {kind: hash, inputs: {data: faces}}\n  groups: {kind: dedup, inputs: {hashes: hashes, data: faces}}\n  clean: {kind: filter_conflicts, inputs: {groups: groups, data: faces}}\n  split: {kind: split, inputs: {data: faces, selection: clean, groups: groups}}\n",
    );
    env.ok(&["run", "s.yaml"]);
    let truth: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&find_files(&env.path("cache/objects"), "truth.json")[0]).unwrap(),
    )
    .unwrap();
    let groups: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&find_files(&env.path("cache/objects"), "groups.json")[0]).unwrap(),
    )
    .unwrap();
    let sel: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&find_files(&env.path("cache/objects"), "selection.json")[0]).unwrap(),
    )
    .unwrap();
    let dup = groups["duplicate_groups"].as_array().unwrap();
    assert_eq!(
        dup.len() as u64,
        truth["duplicate_groups"].as_u64().unwrap()
    );
    let in_groups: usize = dup.iter().map(|g| g.as_array().unwrap().len()).sum();
    assert_eq!(
        in_groups as u64,
        truth["images_in_duplicate_groups"].as_u64().unwrap()
    );
    assert_eq!(sel["conflicting_groups"], truth["conflicting_groups"]);
    assert_eq!(
        sel["kept"].as_array().unwrap().len() as u64,
        truth["clean"].as_u64().unwrap()
    );
    assert_eq!(truth["conflicting_groups"], 9);
    // No duplicate group straddles two splits.
    let split: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&find_files(&env.path("cache/objects"), "split.json")[0]).unwrap(),
    )
    .unwrap();
    let group_of = groups["group_of"].as_array().unwrap();
    let mut part_of_group = std::collections::BTreeMap::new();
    for part in ["train", "val", "test"] {
        for i in split[part].as_array().unwrap() {
            let g = group_of[i.as_u64().unwrap() as usize].as_u64().unwrap();
            assert_eq!(*part_of_group.entry(g).or_insert(part), part);
        }
    }
}

#[test]
fn the_quickstart_pipeline_runs_end_to_end_on_a_small_override() {
    let (env, _) = shipped_env(10, &[]);
    let out = run_with(
        &env,
        "pipelines/quickstart.yaml",
        &[
            "stages.faces.count=300".into(),
            "stages.faces.exact_duplicates=6".into(),
            "stages.faces.near_duplicates=6".into(),
            "stages.faces.conflicting_duplicates=2".into(),
            "params.epochs=1".into(),
        ],
    );
    // 300 faces + 6 exact + 6 near + 2 conflicting copies; filter drops the 12 plain copies and
    // both members of the 2 conflicting pairs.
    assert!(
        out.contains("kept 298 of 314 (removed 16: 12 copies, 4 in 2 conflicting groups)"),
        "{out}"
    );
    assert!(out.contains("Test: balanced accuracy"), "{out}");
    for png in [
        "duplicates.png",
        "conflicts.png",
        "preview.png",
        "curve.png",
        "confusion.png",
    ] {
        assert_eq!(
            find_files(&env.path("cache/objects"), png).len(),
            1,
            "{png}"
        );
    }
}
