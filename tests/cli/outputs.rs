//! What pipe writes outside the cache (`report -o`, `compare --png`: `src/commands/output.rs`) and on its
//! standard streams when their readers go away (`src/commands/console.rs`).

use super::*;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::FileTypeExt;
use std::process::Stdio;

/// A small trained pipeline for `compare`: one epoch of B1, evaluated.
const TRAINED: &str = "name: t
stages:
  faces: {kind: source, format: synthetic, count: 120, height: 24, width: 24, exact_duplicates: 0, near_duplicates: 0, conflicting_duplicates: 0}
  split: {kind: split, inputs: {data: faces}}
  train: {kind: train, model: b1, epochs: 1, batch_size: 32, inputs: {data: faces, split: split}}
  evaluate: {kind: evaluate, inputs: {model: train, data: faces, split: split}}
";

/// The entries of `env`'s directory, sorted.
fn entries(env: &Env) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn report_replaces_only_regular_files_and_writes_into_everything_else() {
    let env = data_env(40);
    env.ok(&["run", "p.yaml"]);

    // A regular file: replaced through a fresh temporary name, never the user's `X.tmp`.
    env.write("notes.html.tmp", "my notes");
    env.write("notes.html", "old page");
    let before = entries(&env);
    let out = env.ok(&["report", "p.yaml", "-o", "notes.html"]);
    assert!(out.starts_with("report: notes.html ("), "{out}");
    let page = std::fs::read_to_string(env.path("notes.html")).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>") && page.trim_end().ends_with("</html>"));
    assert_eq!(
        std::fs::read_to_string(env.path("notes.html.tmp")).unwrap(),
        "my notes"
    );
    assert_eq!(entries(&env), before, "no temporary file left behind");

    // Devices stay devices.
    let out = env.ok(&["report", "p.yaml", "-o", "/dev/null"]);
    assert!(out.contains("report: /dev/null"), "{out}");
    assert!(
        std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device()
    );
    let e = env.err(&["report", "p.yaml", "-o", "/dev/full"], 1);
    assert!(
        e.contains("/dev/full: No space left on device"),
        "a full device is an error: {e}"
    );

    // `-` and `/dev/stdout` (a pipe here): the page on stdout, the note on stderr.
    for dest in ["-", "/dev/stdout"] {
        let out = env.pipe(&["report", "p.yaml", "-o", dest]);
        assert!(out.status.success(), "{dest}: {out:?}");
        let stdout = text(&out.stdout);
        assert!(
            stdout.starts_with("<!DOCTYPE html>") && stdout.trim_end().ends_with("</html>"),
            "{dest}: stdout holds exactly the page"
        );
        assert!(
            text(&out.stderr).contains(&format!("report: {dest} (")),
            "{dest}: {}",
            text(&out.stderr)
        );
    }

    // A FIFO: written into, and still a FIFO.
    let fifo = env.path("page.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    env.ok(&["report", "p.yaml", "-o", "page.fifo"]);
    assert!(reader.join().unwrap().starts_with("<!DOCTYPE html>"));
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
}

#[test]
fn compare_png_follows_the_same_rule() {
    let env = Env::new();
    env.write("t.yaml", TRAINED);
    env.ok(&["run", "t.yaml"]);
    env.write("cm.png.tmp", "mine");
    let out = env.ok(&["compare", "t.yaml", "--png", "cm.png"]);
    assert!(out.contains("| t | evaluate |"), "{out}");
    let png = std::fs::read(env.path("cm.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    assert_eq!(std::fs::read(env.path("cm.png.tmp")).unwrap(), b"mine");

    env.ok(&["compare", "t.yaml", "--png", "/dev/null"]);
    assert!(
        std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device()
    );
    let e = env.err(&["compare", "t.yaml", "--png", "/dev/full"], 1);
    assert!(e.contains("/dev/full: No space left on device"), "{e}");
    // `--png -`: the figure alone on stdout, the table on stderr.
    let out = env.pipe(&["compare", "t.yaml", "--png", "-"]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.starts_with(b"\x89PNG"));
    assert!(text(&out.stderr).contains("| t | evaluate |"));
}

/// A command whose stdout (and, with `stderr_too`, stderr) is a pipe nobody reads any more.
fn with_closed_output(env: &Env, args: &[&str], stderr_too: bool) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = env.cmd(args);
    if stderr_too {
        cmd.stderr(writer.try_clone().unwrap());
    }
    cmd.stdout(writer).output().unwrap()
}

#[test]
fn a_closed_stdout_stops_the_output_quietly_and_runs_keep_their_records() {
    let env = data_env(40);
    // `pipe run … | true`: the run completes, saves its record and releases the lock.
    let out = with_closed_output(&env, &["run", "p.yaml"], false);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("panicked"), "{out:?}");
    let rec = latest_record(&env);
    assert_eq!(rec["ok"], true);
    assert_eq!(rec["stages"].as_object().unwrap().len(), ALL.len());
    let again = env.ok(&["run", "p.yaml", "--no-wait"]);
    assert!(again.contains("0 ran, 5 cached"), "{again}");

    for args in [
        &["status", "p.yaml"][..],
        &["status", "p.yaml", "--json"],
        &["run", "p.yaml", "--dry-run"],
        &["dag", "p.yaml"],
        &["runs"],
        &["why", "p.yaml", "split"],
    ] {
        let out = with_closed_output(&env, args, false);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        assert!(out.stderr.is_empty(), "{args:?}: {}", text(&out.stderr));
    }
    // Both streams closed and a failing run: its own exit code, not a panic's 101.
    env.write("data/label_train.txt", "1\n2\n");
    let out = with_closed_output(&env, &["run", "p.yaml"], true);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn a_reader_leaving_mid_run_does_not_cost_the_run_its_record() {
    let env = Env::new();
    env.write("t.yaml", TRAINED);
    // `pipe run t.yaml | head -2`: the reader leaves while the training runs.
    let mut child = env
        .cmd(&["run", "t.yaml", "-j", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for l in lines.by_ref().map_while(Result::ok) {
        let training = l.trim_start().starts_with("run     train");
        seen.push(l);
        if training {
            break;
        }
    }
    assert!(seen.last().is_some_and(|l| l.contains("train")), "{seen:?}");
    drop(lines);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let rec = latest_record(&env);
    assert_eq!(rec["ok"], true);
    assert_eq!(rec["stages"]["evaluate"]["outcome"], "ran");
    assert!(env.ok(&["run", "t.yaml"]).contains("0 ran, 4 cached"));
}
