//! Malformed YAML, overrides and source data: exit 2 with a message naming file and line/field/index.
//!
//! Each case is a row of a table: the files to write, the command, and what stderr must say.
//! Every case also checks that nothing panicked and that stderr stays short and free of raw
//! control bytes.

use super::*;
use std::time::{Duration, Instant};

/// Runs `pipe args` in `env`, killing it after `secs` (a source that reads `/dev/zero` or a
/// FIFO must fail at once, not hang); returns (exit code, stderr).
fn pipe_within(env: &Env, args: &[&str], secs: u64) -> (Option<i32>, String) {
    let mut child = env
        .cmd(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("pipe {args:?} still running after {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts exit 2, every `want` in stderr, no panic, and a short, printable stderr.
fn expect_invalid(env: &Env, args: &[&str], want: &[&str], case: &str) {
    let (code, e) = pipe_within(env, args, 60);
    assert_eq!(code, Some(2), "{case}: pipe {args:?}\n{e}");
    for w in want {
        assert!(e.contains(w), "{case}: expected `{w}` in:\n{e}");
    }
    assert!(!e.contains("panicked"), "{case}: {e}");
    assert!(e.len() < 4000, "{case}: {} bytes of stderr", e.len());
    assert!(
        !e.chars().any(|c| c.is_control() && c != '\n'),
        "{case}: control characters in {e:?}"
    );
}

const SYNTH: &str = "stages:\n  faces:\n    kind: source\n    format: synthetic\n    count: 40\n    height: 16\n    width: 16\n    exact_duplicates: 0\n    near_duplicates: 0\n    conflicting_duplicates: 0\n";

/// (case, pipeline text, `--set`s, expected stderr parts); each checked with `validate` and `run`.
const BAD_PIPELINES: &[(&str, &str, &[&str], &[&str])] = &[
    (
        "stage id escaping the cache",
        "stages:\n  ../../../../victim:\n    kind: source\n    format: synthetic\n",
        &[],
        &["p.yaml:2:3: stages: invalid stage id `../../../../victim`"],
    ),
    (
        "empty stage id",
        "stages:\n  \"\":\n    kind: source\n    format: synthetic\n",
        &[],
        &["p.yaml:2:3: stages: invalid stage id ``: empty"],
    ),
    (
        "blank stage id",
        "stages:\n  \" \":\n    kind: source\n    format: synthetic\n",
        &[],
        &["p.yaml:2:3: stages: invalid stage id ` `"],
    ),
    (
        "slash stage id",
        "stages:\n  /:\n    kind: source\n    format: synthetic\n",
        &[],
        &["p.yaml:2:3: stages: invalid stage id `/`"],
    ),
    (
        "pipeline name with a path",
        "name: ../x\nstages:\n  a:\n    kind: source\n    format: synthetic\n",
        &[],
        &["p.yaml:1:7: name: invalid pipeline name `../x`"],
    ),
    (
        "count at i64::MAX",
        SYNTH,
        &["stages.faces.count=9223372036854775807"],
        &["stages.faces.count: `count` 9223372036854775807 exceeds the maximum of 10000000"],
    ),
    (
        "100 million images",
        SYNTH,
        &["stages.faces.count=100000000"],
        &["stages.faces.count: `count` 100000000 exceeds the maximum"],
    ),
    (
        "a dataset too large for memory",
        SYNTH,
        &["stages.faces.count=5000000", "stages.faces.height=1024"],
        &["stages.faces.count", "GiB"],
    ),
    (
        "batch size",
        "stages:\n  t:\n    kind: train\n    model: b1\n    batch_size: 100000000\n",
        &[],
        &["p.yaml:5:17: stages.t.batch_size: batch_size 100000000 exceeds the maximum of 65536"],
    ),
    (
        "figure rows",
        "stages:\n  g:\n    kind: dedup\n    figure_groups: 9223372036854775807\n",
        &[],
        &["p.yaml:4:20: stages.g.figure_groups: figure_groups 9223372036854775807 exceeds"],
    ),
    (
        "a second YAML document",
        "stages:\n  a:\n    kind: source\n    format: synthetic\n---\nstages: {}\n",
        &[],
        &["p.yaml:5:1: YAML syntax: a second YAML document starts here"],
    ),
    (
        "an integer key inside a stage",
        "stages:\n  a:\n    kind: source\n    format: synthetic\n    1: 2\n",
        &[],
        &["p.yaml:5:5: stages.a: field names must be strings, got an integer `1`"],
    ),
    (
        "an unknown parameter in --set",
        "params:\n  seed: 1\nstages:\n  a:\n    kind: split\n    seed: ${params.seed}\n",
        &["params.sede=2"],
        &["--set: params.sede: no parameter `sede` (did you mean `seed`?)"],
    ),
    (
        ".inf",
        "stages:\n  s:\n    kind: split\n    train: .inf\n",
        &[],
        &["p.yaml:4:12: stages.s.train: expected a finite number, got `.inf`"],
    ),
    (
        ".nan in a nested field",
        "stages:\n  t:\n    kind: train\n    model: b1\n    plateau: {factor: .nan}\n",
        &[],
        &["stages.t.plateau.factor: expected a finite number, got `.nan`"],
    ),
    (
        "1e400",
        "stages:\n  e:\n    kind: evaluate\n    threshold: 1e400\n",
        &[],
        &["p.yaml:4:16: stages.e.threshold: expected a finite number, got `1e400`"],
    ),
    (
        ".inf through --set",
        SYNTH,
        &["stages.faces.label_noise=-.inf"],
        &["stages.faces.label_noise: expected a finite number, got `-.inf`"],
    ),
    (
        "a malformed --set",
        SYNTH,
        &["stages.faces"],
        &["--set: `stages.faces`: expected PATH=VALUE"],
    ),
];

#[test]
fn malformed_pipelines_fail_validate_and_run_with_positions() {
    for (case, yaml, sets, want) in BAD_PIPELINES {
        let env = Env::new();
        env.write("p.yaml", yaml);
        for cmd in ["validate", "run"] {
            let mut args = vec![cmd, "p.yaml"];
            for s in *sets {
                args.extend(["--set", s]);
            }
            expect_invalid(&env, &args, want, &format!("{case} ({cmd})"));
        }
    }
}

#[test]
fn a_hostile_stage_id_touches_nothing_outside_the_cache() {
    let env = Env::new();
    env.write("victim/keep.txt", "precious");
    env.write(
        "work/p.yaml",
        "stages:\n  ../../victim:\n    kind: source\n    format: synthetic\n    count: 20\n    height: 16\n    width: 16\n    exact_duplicates: 0\n    near_duplicates: 0\n    conflicting_duplicates: 0\n",
    );
    expect_invalid(
        &env,
        &["run", "work/p.yaml", "--cache", "work/cache"],
        &["invalid stage id `../../victim`"],
        "hostile id",
    );
    assert_eq!(
        std::fs::read_to_string(env.path("victim/keep.txt")).unwrap(),
        "precious"
    );
}

#[test]
fn huge_values_are_echoed_truncated() {
    let env = Env::new();
    let big = "x".repeat(1 << 20);
    env.write(
        "p.yaml",
        &format!(
            "stages:\n  a:\n    kind: source\n    format: raw\n    images: i\n    height: {big}\n"
        ),
    );
    expect_invalid(
        &env,
        &["validate", "p.yaml"],
        &[
            "p.yaml:6:13: stages.a.height: invalid type: string \"xxxx",
            "…",
        ],
        "1 MB value",
    );
    env.write("p.yaml", &format!("stages:\n  a:\n    kind: {big}\n"));
    expect_invalid(
        &env,
        &["validate", "p.yaml"],
        &["unknown stage kind `xxx", "…`"],
        "1 MB kind",
    );
    // One argument is at most 128 KiB on Linux.
    env.write("p.yaml", SYNTH);
    let set = format!("stages.faces.rule={}", "y".repeat(100_000));
    expect_invalid(
        &env,
        &["validate", "p.yaml", "--set", &set],
        &["unknown value `yyy", "…"],
        "big --set",
    );
    let set = format!("{}=1", "z".repeat(100_000));
    expect_invalid(
        &env,
        &["validate", "p.yaml", "--set", &set],
        &["--set: `zzz", "…"],
        "big --set path",
    );
}

#[test]
fn yaml_encoding_problems_have_positions_and_a_bom_is_ignored() {
    let env = Env::new();
    std::fs::write(
        env.path("p.yaml"),
        b"stages:\n  a:\n    kind: source\n    format: synthetic\n    rule: gl\xffsses\n",
    )
    .unwrap();
    expect_invalid(
        &env,
        &["validate", "p.yaml"],
        &["p.yaml:5:13: YAML syntax: not valid UTF-8 (byte 0xFF)"],
        "non-UTF-8 YAML",
    );
    std::fs::write(env.path("p.yaml"), format!("\u{feff}name: bom\n{SYNTH}")).unwrap();
    env.ok(&["validate", "p.yaml"]);
    let out = env.pipe(&["validate", "p.yaml", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
}

/// A folder-source pipeline over `imgs/` with `labels.csv` (the CSV line given as `csv`).
fn folder_env(csv: &[u8], extra: &str) -> Env {
    let env = Env::new();
    std::fs::create_dir_all(env.path("imgs")).unwrap();
    for i in 0..4u8 {
        let img = image::RgbImage::from_fn(12, 12, |x, y| {
            image::Rgb([x as u8 * 9, y as u8 * 9, i * 50])
        });
        img.save(env.path(&format!("imgs/{i}.png"))).unwrap();
    }
    std::fs::write(env.path("labels.csv"), csv).unwrap();
    env.write(
        "f.yaml",
        &format!("stages:\n  src:\n    kind: source\n    format: folder\n    dir: imgs\n    labels: labels.csv\n    height: 8\n    width: 8\n{extra}"),
    );
    env
}

/// (case, CSV bytes, extra YAML, expected stderr parts).
const BAD_CSVS: &[(&str, &[u8], &str, &[&str])] = &[
    (
        "first row with an extra column",
        b"0.png,1,x\n1.png,1\n2.png,0\n3.png,1\n",
        "",
        &["labels.csv: line 1: expected 2 columns `filename,label`, got 3"],
    ),
    (
        "header: false with a header row",
        b"filename,label\n0.png,1\n",
        "    header: false\n",
        // `label` is a class name like any string; the row's file is what is missing.
        &["image 0 `filename` (labels line 1): cannot read"],
    ),
    (
        "non-UTF-8 CSV",
        b"filename,label\n0.png,1\n1\xff.png,0\n",
        "",
        &["labels.csv: line 3: not valid UTF-8: `1\\xFF.png`"],
    ),
    (
        "conflicting duplicate rows",
        b"0.png,1\n1.png,0\n0.png,0\n",
        "",
        &[
            "labels.csv: line 3: `0.png` is listed twice with different labels (1 and 0); first at line 1",
        ],
    ),
    (
        "identical duplicate rows",
        b"0.png,1\n1.png,0\n1.png,0\n",
        "",
        &["labels.csv: line 3: `1.png` is listed twice; first at line 2"],
    ),
    (
        "a garbage label with NUL bytes",
        b"0.png,1\n1.png,\x00\x00\x1b[31mred\n",
        "",
        &["labels.csv: line 2: label `\\0\\0\\u{1b}[31mred` is empty or holds control characters"],
    ),
];

#[test]
fn bad_label_csvs_name_the_line_and_drop_nothing() {
    for (case, csv, extra, want) in BAD_CSVS {
        let env = folder_env(csv, extra);
        expect_invalid(&env, &["run", "f.yaml"], want, case);
    }
    // A BOM before the header, and a header with other known names, are fine.
    let env = folder_env(
        b"\xEF\xBB\xBFfilename,label\n0.png,1\n1.png,0\n2.png,1\n3.png,0\n",
        "",
    );
    assert!(
        env.ok(&["run", "f.yaml"])
            .contains("4 images 8x8x3, 2 labelled 1")
    );
    let env = folder_env(b"0.png,1\n1.png,0\n2.png,1\n3.png,0\n", "");
    assert!(
        env.ok(&["run", "f.yaml"])
            .contains("4 images 8x8x3, 2 labelled 1")
    );
    // A first row with label 2 is a row (not a header): three classes, nothing dropped.
    let env = folder_env(b"0.png,2\n1.png,1\n2.png,0\n3.png,1\n", "");
    let out = env.ok(&["run", "f.yaml"]);
    assert!(out.contains("4 images 8x8x3"), "{out}");
    let env = folder_env(b"image,class\n0.png,1\n", "");
    assert!(
        env.ok(&["run", "f.yaml"])
            .contains("1 images 8x8x3, 1 labelled 1")
    );
}

#[test]
fn sources_read_regular_files_only() {
    let raw = |images: &str, labels: &str| {
        format!(
            "stages:\n  r:\n    kind: source\n    format: raw\n    images: {images}\n{labels}    height: 4\n    width: 4\n"
        )
    };
    let mkfifo = |p: &Path| {
        let status = Command::new("mkfifo").arg(p).status().unwrap();
        assert!(status.success());
    };

    let env = Env::new();
    env.write("p.yaml", &raw("/dev/zero", ""));
    expect_invalid(
        &env,
        &["run", "p.yaml"],
        &["/dev/zero: is a device; expected a regular file"],
        "/dev/zero",
    );

    let env = Env::new();
    mkfifo(&env.path("fifo.raw"));
    env.write("p.yaml", &raw("fifo.raw", ""));
    expect_invalid(&env, &["run", "p.yaml"], &["fifo.raw: is a FIFO"], "FIFO");

    let env = Env::new();
    std::fs::create_dir_all(env.path("dir.raw")).unwrap();
    env.write("p.yaml", &raw("dir.raw", ""));
    expect_invalid(
        &env,
        &["run", "p.yaml"],
        &["dir.raw: is a directory"],
        "directory",
    );

    let env = Env::new();
    env.write("x.raw", &"a".repeat(48));
    std::fs::create_dir_all(env.path("labels.txt")).unwrap();
    env.write("p.yaml", &raw("x.raw", "    labels: labels.txt\n"));
    expect_invalid(
        &env,
        &["run", "p.yaml"],
        &["labels.txt: is a directory"],
        "labels directory",
    );

    let env = Env::new();
    env.write("x.raw", "");
    env.write("p.yaml", &raw("x.raw", ""));
    expect_invalid(
        &env,
        &["run", "p.yaml"],
        &["x.raw: is empty: no images"],
        "empty raw",
    );

    let env = folder_env(b"0.png,1\n", "");
    std::fs::create_dir_all(env.path("labels.csv.d")).unwrap();
    std::fs::remove_file(env.path("labels.csv")).unwrap();
    std::fs::rename(env.path("labels.csv.d"), env.path("labels.csv")).unwrap();
    expect_invalid(
        &env,
        &["run", "f.yaml"],
        &["labels.csv: is a directory"],
        "CSV directory",
    );

    let env = folder_env(b"0.png,1\n1.png,0\n", "");
    std::fs::remove_file(env.path("imgs/1.png")).unwrap();
    mkfifo(&env.path("imgs/1.png"));
    expect_invalid(
        &env,
        &["run", "f.yaml"],
        &["imgs: image 1 `1.png` (labels line 2): is a FIFO"],
        "FIFO image",
    );
}

#[test]
fn non_utf8_file_names_are_reported_by_name() {
    use std::os::unix::ffi::OsStrExt;
    let env = folder_env(b"", "");
    std::fs::remove_file(env.path("labels.csv")).unwrap();
    let odd = env
        .path("imgs")
        .join(std::ffi::OsStr::from_bytes(b"bad\xff.png"));
    std::fs::copy(env.path("imgs/0.png"), odd).unwrap();
    env.write(
        "f.yaml",
        "stages:\n  src:\n    kind: source\n    format: folder\n    dir: imgs\n    height: 8\n    width: 8\n",
    );
    expect_invalid(
        &env,
        &["run", "f.yaml"],
        &["imgs: file name `bad\\xFF.png` is not valid UTF-8"],
        "non-UTF-8 name",
    );
}

#[test]
fn a_cmyk_jpeg_is_read_like_pillow_reads_it() {
    let env = Env::new();
    std::fs::create_dir_all(env.path("imgs")).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/pipe-data/tests/fixtures");
    std::fs::copy(fixtures.join("cmyk.jpg"), env.path("imgs/c.jpg")).unwrap();
    env.write(
        "f.yaml",
        "stages:\n  src:\n    kind: source\n    format: folder\n    dir: imgs\n    height: 8\n    width: 16\n",
    );
    let out = env.ok(&["run", "f.yaml"]);
    assert!(out.contains("1 images 8x16x3, unlabelled"), "{out}");
    // Same size as the file: no resize, so the pixels are Pillow's `convert("RGB")` exactly.
    let pixels = find_files(&env.path("cache"), "pixels.u8");
    assert_eq!(
        std::fs::read(&pixels[0]).unwrap(),
        std::fs::read(fixtures.join("cmyk.rgb")).unwrap()
    );
}

/// A pipeline whose data is not there: every missing file at once, before anything runs, for
/// `run` and `--dry-run` (exit 2); `validate` only notes them; `--until` asks only for what the
/// stages it reaches read.
#[test]
fn missing_data_files_are_all_named_before_anything_runs() {
    let env = Env::new();
    env.write(
        "pipelines/p.yaml",
        "name: p
stages:
  train_raw: {kind: source, format: raw, images: ../data/db_train.raw, labels: ../data/label_train.txt, height: 16, width: 16}
  test_raw: {kind: source, format: raw, images: ../data/db_test.raw, height: 16, width: 16}
  photos: {kind: source, format: folder, dir: ../data/photos, labels: ../data/photos.csv, height: 16, width: 16}
  hashes: {kind: hash, inputs: {data: photos}}
",
    );
    let wanted = [
        "5 input files are missing (README.md, section \"Data\"",
        "pipelines/p.yaml:3:3: stage `train_raw`, images: data/db_train.raw",
        "pipelines/p.yaml:3:3: stage `train_raw`, labels: data/label_train.txt",
        "stage `test_raw`, images: data/db_test.raw",
        "stage `photos`, dir: data/photos",
    ];
    let e = env.err(&["run", "pipelines/p.yaml"], 2);
    for w in wanted {
        assert!(e.contains(w), "missing {w:?} in\n{e}");
    }
    assert!(!env.path("cache/runs").exists() || records(&env).is_empty());
    let e = env.err(&["run", "pipelines/p.yaml", "--dry-run"], 2);
    for w in wanted {
        assert!(e.contains(w), "dry run: missing {w:?} in\n{e}");
    }
    // Where the plan can be made (no folder to list), the dry run prints it first.
    let out = env.pipe(&[
        "run",
        "pipelines/p.yaml",
        "--dry-run",
        "--until",
        "train_raw",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("would run train_raw"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 input files are missing"), "{stderr}");
    let out = env.pipe(&["validate", "pipelines/p.yaml"]);
    assert_eq!(out.status.code(), Some(0));
    let notes = String::from_utf8_lossy(&out.stderr);
    assert!(
        notes.contains("note: pipelines/p.yaml:3:3: stage `train_raw`"),
        "{notes}"
    );

    // Only what `--until test_raw` reaches is asked for.
    let e = env.err(&["run", "pipelines/p.yaml", "--until", "test_raw"], 2);
    assert!(
        e.contains("1 input file is missing") && e.contains("db_test.raw"),
        "{e}"
    );
    assert!(!e.contains("db_train.raw") && !e.contains("photos"), "{e}");
}
