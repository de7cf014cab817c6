//! Integration tests of the shared remote cache (issue 10), against a real S3 server (`s3s-fs`,
//! which `.ci/run` installs) started by each test on 127.0.0.1, and against a `file://`
//! directory. The tests that need the server are `#[ignore]`d (`cargo test` counts them as
//! ignored, never as passed); `.ci/run` installs s3s-fs and runs them with `--include-ignored`,
//! where a missing server fails them. The `file://` tests check the same properties and always run.

use super::*;
use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const ACCESS_KEY: &str = "pipetestaccess";
/// Grepped for in every output: it must never appear.
pub(super) const SECRET: &str = "pipe-secret-7f3a9c51e2";
pub(super) const BUCKET: &str = "shared";

/// A real S3 server on a free loopback port, serving a temporary directory; killed on drop.
pub(super) struct S3Server {
    child: Option<Child>,
    pub(super) port: u16,
    root: tempfile::TempDir,
}

fn s3s_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("PIPE_TEST_S3S_FS") {
        return Some(PathBuf::from(p));
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("s3s-fs"))
        .find(|p| p.is_file())
}

impl S3Server {
    /// Starts the server; a missing binary fails the test (it runs only when asked for, with
    /// `--include-ignored`).
    pub(super) fn start() -> S3Server {
        let bin = s3s_binary().expect(
            "s3s-fs not found: cargo install --locked s3s-fs --version 0.14.1 --features binary \
             (or set PIPE_TEST_S3S_FS)",
        );
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "s3s-fs did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        S3Server {
            child: Some(child),
            port,
            root,
        }
    }

    /// SIGKILL.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Where the server keeps `rel` of the bucket.
    pub(super) fn file(&self, rel: &str) -> PathBuf {
        self.root.path().join(BUCKET).join(rel)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `pipe.toml` naming the server (`bucket` in it) or a `file://` directory.
pub(super) fn s3_config(env: &Env, port: u16, bucket: &str) {
    env.write(
        "pipe.toml",
        &format!(
            "[remote]\nurl = \"s3://{bucket}/team\"\nendpoint = \"http://127.0.0.1:{port}\"\n\
             region = \"us-east-1\"\npath_style = true\nallow_http = true\n"
        ),
    );
}

pub(super) fn file_config(env: &Env, dir: &Path) {
    env.write(
        "pipe.toml",
        &format!("[remote]\nurl = \"file://{}\"\n", dir.display()),
    );
}

/// `pipe` with the test's AWS credentials and no other remote settings from outside.
fn rcmd(env: &Env, args: &[&str]) -> Command {
    let mut c = env.cmd(args);
    for v in [
        "PIPE_REMOTE",
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT",
        "AWS_ENDPOINT_URL",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_ALLOW_HTTP",
    ] {
        c.env_remove(v);
    }
    c.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET);
    c
}

/// Runs; returns (exit code, stdout, stderr) after checking the secret appears in neither.
pub(super) fn rrun(env: &Env, args: &[&str]) -> (i32, String, String) {
    finish(rcmd(env, args).output().unwrap(), args)
}

fn finish(out: Output, args: &[&str]) -> (i32, String, String) {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stdout.contains(SECRET) && !stderr.contains(SECRET),
        "pipe {args:?} printed the secret:\n{stdout}\n{stderr}"
    );
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// Runs and asserts success; returns stdout and stderr together.
pub(super) fn rok(env: &Env, args: &[&str]) -> String {
    let (code, stdout, stderr) = rrun(env, args);
    assert_eq!(
        code, 0,
        "pipe {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    format!("{stdout}{stderr}")
}

/// Lines of a run's output saying `word` (e.g. `pulled`), as stage ids, sorted.
pub(super) fn said(out: &str, word: &str) -> Vec<String> {
    let mut v: Vec<String> = out
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix(&format!("{word} ")))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// No file of the cache (key records, run records, manifests) holds the secret.
pub(super) fn assert_no_secret_in(dir: &Path) {
    for entry in walk(dir) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(SECRET),
            "{} holds the secret",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().unwrap().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// The remote copy of the largest file of the object `digest` (under the remote's `team/`).
fn largest_remote_file(objects_root: &Path, digest: &str) -> PathBuf {
    let dir = objects_root.join(&digest[..2]).join(digest);
    walk(&dir)
        .into_iter()
        .filter(|p| !p.ends_with(".manifest.json"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap()
}

fn digest_of(env: &Env, stage: &str) -> String {
    last_digests(env)
        .into_iter()
        .find(|(s, _)| s == stage)
        .unwrap()
        .1
}

/// A on one cache, B on another, one remote: B runs nothing and ends with A's digests; a
/// tweak on B reruns only what it reaches, and A then pulls those stages.
fn two_caches_share_one_remote(a: &Env, b: &Env) {
    let out = rok(a, &["run", "p.yaml"]);
    assert_eq!(ran(&out), ALL);
    assert!(out.contains("pushed 5 stage(s)"), "{out}");

    let out = rok(b, &["status", "p.yaml"]);
    assert_eq!(out.matches("  remote  ").count(), 5, "{out}");
    let out = rok(b, &["run", "p.yaml"]);
    assert!(ran(&out).is_empty(), "B ran stages: {out}");
    assert_eq!(said(&out, "pulled"), ALL, "{out}");
    assert_eq!(last_digests(b), last_digests(a));
    let out = rok(b, &["run", "p.yaml"]);
    assert!(
        out.contains("0 ran, 5 cached") && !out.contains("pulled"),
        "{out}"
    );

    let tweak = ["--set", "stages.groups.radius=2"];
    let out = rok(b, &[&["run", "p.yaml"][..], &tweak].concat());
    assert_eq!(ran(&out), ["clean", "groups", "split"]);
    assert!(out.contains("pushed 3 stage(s)"), "{out}");
    let out = rok(a, &[&["pull", "p.yaml"][..], &tweak].concat());
    assert_eq!(said(&out, "pulled"), ["clean", "groups", "split"], "{out}");
    let out = rok(a, &[&["run", "p.yaml"][..], &tweak].concat());
    assert!(ran(&out).is_empty(), "{out}");
    assert_eq!(last_digests(a), last_digests(b));
    assert_no_secret_in(&a.path("cache"));
    assert_no_secret_in(&b.path("cache"));
}

#[test]
#[ignore = "needs s3s-fs, an S3 server (.ci/run installs it; run with --include-ignored)"]
fn s3_two_caches_share_one_bucket() {
    let srv = S3Server::start();
    let (a, b) = (data_env(60), data_env(60));
    s3_config(&a, srv.port, BUCKET);
    s3_config(&b, srv.port, BUCKET);
    two_caches_share_one_remote(&a, &b);
    assert!(srv.file("team/keys").is_dir() && srv.file("team/objects").is_dir());
    assert_no_secret_in(srv.root.path());
}

#[test]
fn file_remote_two_caches_share_one_directory() {
    let shared = tempfile::tempdir().unwrap();
    let (a, b) = (data_env(60), data_env(60));
    file_config(&a, shared.path());
    file_config(&b, shared.path());
    two_caches_share_one_remote(&a, &b);
}

#[test]
fn push_pull_and_remote_status_commands() {
    let shared = tempfile::tempdir().unwrap();
    let (a, b) = (data_env(60), data_env(60));
    file_config(&a, shared.path());
    file_config(&b, shared.path());
    let out = rok(&a, &["run", "p.yaml", "--no-push"]);
    assert!(!out.contains("pushed"), "{out}");
    let out = rok(&a, &["remote", "status", "p.yaml"]);
    assert_eq!(out.matches("local only").count(), 5, "{out}");
    let out = rok(&a, &["push", "p.yaml"]);
    assert!(out.contains("pushed 5 object(s)"), "{out}");
    let out = rok(&a, &["push"]);
    assert!(out.contains("pushed 0 object(s)"), "{out}");
    let out = rok(&a, &["remote", "status", "p.yaml"]);
    assert_eq!(out.matches("local+remote").count(), 5, "{out}");

    let out = rok(&b, &["pull", "p.yaml", "--until", "groups"]);
    assert_eq!(
        said(&out, "pulled"),
        ["groups", "hashes", "train_raw"],
        "{out}"
    );
    let out = rok(&b, &["run", "p.yaml", "--dry-run"]);
    assert_eq!(said(&out, "remote"), ["clean", "split"], "{out}");
    assert_eq!(
        said(&out, "cached"),
        ["groups", "hashes", "train_raw"],
        "{out}"
    );
    let out = rok(&b, &["why", "p.yaml", "split"]);
    assert!(out.contains("the remote holds it"), "{out}");
    // --no-remote: the remote is not consulted at all.
    let out = rok(&b, &["status", "p.yaml", "--no-remote"]);
    assert!(!out.contains("remote"), "{out}");
    assert_eq!(out.matches("missing").count(), 2, "{out}");
}

#[test]
fn an_unreachable_server_warns_and_runs_locally_unless_required() {
    let env = data_env(60);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    s3_config(&env, port, BUCKET);
    let (code, _, err) = rrun(&env, &["run", "p.yaml", "--remote-required"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("s3://shared/team") && err.contains("cannot reach"),
        "{err}"
    );
    assert!(!env.path("cache/runs").exists() || records(&env).is_empty());
    let (code, out, err) = rrun(&env, &["run", "p.yaml"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: remote s3://shared/team: cannot reach"),
        "{err}"
    );
    assert_eq!(ran(&out), ALL);
}

#[test]
#[ignore = "needs s3s-fs, an S3 server (.ci/run installs it; run with --include-ignored)"]
fn refused_credentials_and_a_missing_bucket_are_named() {
    let srv = S3Server::start();
    let env = data_env(60);
    s3_config(&env, srv.port, BUCKET);
    let wrong = "wrong-secret-0b9e";
    let out = rcmd(&env, &["run", "p.yaml", "--remote-required"])
        .env("AWS_SECRET_ACCESS_KEY", wrong)
        .output()
        .unwrap();
    let (code, _, err) = finish(out, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("s3://shared/team: credentials refused"),
        "{err}"
    );
    assert!(!err.contains(wrong), "{err}");

    s3_config(&env, srv.port, "nosuchbucket");
    let (code, _, err) = rrun(&env, &["run", "p.yaml", "--remote-required"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("s3://nosuchbucket/team: the bucket or directory is missing"),
        "{err}"
    );
    let (code, out, err) = rrun(&env, &["run", "p.yaml"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning:") && err.contains("missing"), "{err}");
    assert_eq!(ran(&out), ALL);

    file_config(&env, Path::new("/nonexistent/pipe-remote"));
    let (code, _, err) = rrun(&env, &["status", "p.yaml", "--remote-required"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("file:///nonexistent/pipe-remote"), "{err}");
    // A malformed URL is the user's to fix.
    let (code, _, err) = rrun(&env, &["status", "p.yaml", "--remote", "ftp://x"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
#[ignore = "needs s3s-fs, an S3 server (.ci/run installs it; run with --include-ignored)"]
fn corrupted_truncated_and_missing_remote_objects_are_never_used() {
    let srv = S3Server::start();
    let a = data_env(60);
    s3_config(&a, srv.port, BUCKET);
    rok(&a, &["run", "p.yaml"]);
    let objects = srv.file("team/objects");

    // A byte flipped in train_raw's remote copy; hashes' remote copy truncated; the object of
    // split removed while its key record stays.
    let flipped = largest_remote_file(&objects, &digest_of(&a, "train_raw"));
    let mut bytes = std::fs::read(&flipped).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&flipped, &bytes).unwrap();
    let cut = largest_remote_file(&objects, &digest_of(&a, "hashes"));
    let len = std::fs::metadata(&cut).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cut)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let split = digest_of(&a, "split");
    std::fs::remove_dir_all(objects.join(&split[..2]).join(&split)).unwrap();

    let b = data_env(60);
    s3_config(&b, srv.port, BUCKET);
    let (code, out, err) = rrun(&b, &["run", "p.yaml", "--no-push"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("corrupted remote object"), "{err}");
    assert!(err.contains("truncated"), "{err}");
    assert!(err.contains("is not on the remote"), "{err}");
    assert!(err.contains("s3://shared/team: key "), "{err}");
    assert!(out.contains("pipe push --repair"), "{out}");
    assert!(ran(&out).contains(&"train_raw".to_string()), "{out}");
    assert!(ran(&out).contains(&"hashes".to_string()), "{out}");
    assert!(ran(&out).contains(&"split".to_string()), "{out}");
    assert_eq!(
        last_digests(&b),
        last_digests(&a),
        "rebuilt locally, same bytes"
    );

    // --remote-required: a damaged remote object fails the run (after building locally).
    let c = data_env(60);
    s3_config(&c, srv.port, BUCKET);
    let (code, _, err) = rrun(&c, &["run", "p.yaml", "--no-push", "--remote-required"]);
    assert_eq!(code, 1, "{err}");

    // The repair replaces the damaged copies and re-uploads the missing object.
    let out = rok(&b, &["push", "--repair"]);
    assert!(out.contains("repair"), "{out}");
    let d = data_env(60);
    s3_config(&d, srv.port, BUCKET);
    let out = rok(&d, &["run", "p.yaml"]);
    assert!(ran(&out).is_empty(), "{out}");
    assert_eq!(last_digests(&d), last_digests(&a));
}

/// Waits until a file under `dir` has some but not all bytes (a download in progress).
fn wait_for_partial_download(dir: &Path, child: &mut Child) {
    let t0 = Instant::now();
    loop {
        let started = walk(dir).iter().any(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.len() > 0) && !p.ends_with(".manifest.json")
        });
        if started {
            return;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "pipe ended before the download started"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no download started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[ignore = "needs s3s-fs, an S3 server (.ci/run installs it; run with --include-ignored)"]
fn a_download_or_a_server_killed_midway_leaves_a_valid_cache() {
    let mut srv = S3Server::start();
    let a = data_env(3000);
    s3_config(&a, srv.port, BUCKET);
    rok(&a, &["run", "p.yaml"]);

    // pipe killed while it downloads: the next run pulls again and ends with A's digests.
    let b = data_env(3000);
    s3_config(&b, srv.port, BUCKET);
    let mut child = rcmd(&b, &["run", "p.yaml", "-j", "1"])
        .env("PIPE_TEST_TRANSFER_DELAY_MS", "200")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_partial_download(&b.path("cache/tmp"), &mut child);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        walk(&b.path("cache/keys")).is_empty(),
        "no key before its object"
    );
    let out = rok(&b, &["run", "p.yaml"]);
    assert!(ran(&out).is_empty() && !out.contains("damaged"), "{out}");
    assert_eq!(last_digests(&b), last_digests(&a));

    // The server SIGKILLed mid-transfer: the stage runs locally; --remote-required exits 1.
    let c = data_env(3000);
    s3_config(&c, srv.port, BUCKET);
    let child = rcmd(&c, &["run", "p.yaml", "-j", "1", "--remote-required"])
        .env("PIPE_TEST_TRANSFER_DELAY_MS", "200")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = child;
    wait_for_partial_download(&c.path("cache/tmp"), &mut child);
    srv.kill();
    let (code, out, err) = finish(child.wait_with_output().unwrap(), &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("s3://shared/team"), "{err}");
    // What was already in the socket's buffers may still arrive whole; what was not, runs here.
    assert!(!ran(&out).is_empty(), "{out}");
    let out = rok(&c, &["run", "p.yaml", "--no-remote"]);
    assert!(ran(&out).is_empty() && !out.contains("damaged"), "{out}");
    assert_eq!(last_digests(&c), last_digests(&a));
}

#[test]
fn remote_gc_removes_only_unreached_objects_past_the_grace_period() {
    let shared = tempfile::tempdir().unwrap();
    let a = data_env(60);
    file_config(&a, shared.path());
    rok(&a, &["run", "p.yaml"]);
    // An object no key reaches (an upload whose key never came), and a live one.
    let orphan = "f0".repeat(32);
    let dir = shared.path().join("objects/f0").join(&orphan);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("data.bin"), b"orphan bytes").unwrap();
    let out = rok(&a, &["gc", "--remote", "--dry-run"]);
    assert!(out.contains("would remove 0 object(s)"), "{out}");
    assert!(out.contains("1 younger than 6h"), "{out}");
    // Old enough now.
    let status = Command::new("touch")
        .args(["-d", "2 days ago"])
        .arg(dir.join("data.bin"))
        .status()
        .unwrap();
    assert!(status.success());
    let out = rok(&a, &["gc", "--remote", "--grace", "1h"]);
    assert!(out.contains(&format!("removing object {orphan}")), "{out}");
    assert!(
        out.contains("removed 1 object(s)") && out.contains("kept 5 reached"),
        "{out}"
    );
    assert!(!dir.join("data.bin").exists());
    let b = data_env(60);
    file_config(&b, shared.path());
    let out = rok(&b, &["run", "p.yaml"]);
    assert!(ran(&out).is_empty(), "{out}");
}

#[test]
fn a_search_pulls_what_a_colleague_ran_and_pushes_what_it_runs() {
    let shared = tempfile::tempdir().unwrap();
    let (a, b) = (Env::new(), Env::new());
    for env in [&a, &b] {
        env.write("t.yaml", &super::search::training(1));
        file_config(env, shared.path());
    }
    let search = [
        "run",
        "t.yaml",
        "--search",
        "stages.train.lr=1e-4..1e-2:log",
        "--trials",
        "3",
        "--sampler",
        "tpe:startup=2",
        "--objective",
        "evaluate.roc_auc",
        "-j1",
    ];
    let out = rok(&a, &search);
    assert!(out.contains("pushed "), "{out}");
    let mut runs = said(&out, "ran");
    runs.sort();
    assert_eq!(
        runs,
        [
            "evaluate", "evaluate", "evaluate", "faces", "split", "train", "train", "train"
        ],
        "{out}"
    );

    // Another cache, the same remote: every trial's stages are pulled, none trained again,
    // and TPE proposes the same third trial from the same (pulled) results.
    let out = rok(&b, &search);
    assert!(said(&out, "ran").is_empty(), "{out}");
    let mut pulled = said(&out, "pulled");
    pulled.sort();
    assert_eq!(
        pulled,
        [
            "evaluate", "evaluate", "evaluate", "faces", "split", "train", "train", "train"
        ],
        "{out}"
    );
    let variants = |env: &Env| -> Vec<String> {
        records(env)
            .iter()
            .map(|r| r["variant"].to_string())
            .collect()
    };
    assert_eq!(variants(&a), variants(&b));

    // A grid sweep in a third cache: its dry run says which stages the remote holds.
    let c = Env::new();
    c.write("t.yaml", &super::search::training(1));
    file_config(&c, shared.path());
    let out = rok(
        &c,
        &[
            "run",
            "t.yaml",
            "--sweep",
            "stages.train.dropout=0.2,0.4",
            "--dry-run",
        ],
    );
    assert_eq!(
        said(&out, "remote"),
        ["faces", "faces", "split", "split"],
        "{out}"
    );
}
