//! The README's main job as a new user meets it: the files git ships, in a folder of their own,
//! `pipe run pipelines/quickstart.yaml` with the default `./cache`. Temp-dir tests with fresh
//! caches cannot notice a shipped file (say a placeholder in `cache/`) that breaks the first run.

use super::*;

/// The files git would ship from this checkout (tracked, plus untracked ones not ignored, as
/// they are in the working tree), copied into a new directory.
fn shipped_copy() -> tempfile::TempDir {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .output()
        .expect("git is needed to list the files the repository ships");
    assert!(
        out.status.success(),
        "`git ls-files` failed (run the tests from a git checkout): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dest = tempfile::tempdir().unwrap();
    let mut copied = 0;
    for rel in out.stdout.split(|&b| b == 0).filter(|r| !r.is_empty()) {
        let rel = std::str::from_utf8(rel).unwrap();
        let from = repo.join(rel);
        // Deleted in the working tree but still in the index: not shipped once committed.
        let Ok(meta) = std::fs::symlink_metadata(&from) else {
            continue;
        };
        let to = dest.path().join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        if meta.is_file() {
            std::fs::copy(&from, &to).unwrap();
            copied += 1;
        }
    }
    assert!(
        dest.path().join("pipelines/quickstart.yaml").is_file(),
        "the copy lacks the quickstart ({copied} files)"
    );
    dest
}

fn pipe_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pipe"))
        .current_dir(dir)
        .env_remove("PIPE_CACHE")
        .env_remove("PIPE_REMOTE")
        .env_remove("RUST_LOG")
        .args(args)
        .output()
        .unwrap()
}

fn assert_ok(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed in a fresh copy of the repository\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

const QUICKSTART_STAGES: [&str; 8] = [
    "augment", "clean", "evaluate", "faces", "groups", "hashes", "split", "train_b3",
];

#[test]
fn the_readme_main_job_runs_in_a_fresh_copy_of_the_repository() {
    let clone = shipped_copy();
    let dir = clone.path();
    let shipped_cache: Vec<_> = std::fs::read_dir(dir.join("cache"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();

    let plan = assert_ok(
        &pipe_in(dir, &["run", "pipelines/quickstart.yaml", "--dry-run"]),
        "pipe run pipelines/quickstart.yaml --dry-run",
    );
    let mut would_run: Vec<&str> = plan
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("would run "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    would_run.sort();
    assert_eq!(would_run, QUICKSTART_STAGES, "{plan}");

    let mut args = vec!["run", "pipelines/quickstart.yaml"];
    let sets = [
        "stages.faces.count=300",
        "stages.faces.exact_duplicates=6",
        "stages.faces.near_duplicates=6",
        "stages.faces.conflicting_duplicates=2",
        "params.epochs=1",
    ];
    for s in &sets {
        args.extend(["--set", s]);
    }
    let out = assert_ok(&pipe_in(dir, &args), "pipe run pipelines/quickstart.yaml");
    assert_eq!(ran(&out), QUICKSTART_STAGES, "{out}");
    assert!(dir.join("cache/pipe-cache.json").is_file());
    // What the repository ships in `cache/` is left where it was.
    for name in shipped_cache {
        assert!(
            dir.join("cache").join(&name).exists(),
            "{name:?} was removed"
        );
    }
    let again = assert_ok(&pipe_in(dir, &args), "the second run");
    assert!(ran(&again).is_empty(), "{again}");
}
