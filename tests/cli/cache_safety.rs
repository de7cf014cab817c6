//! The cache protects itself: confined paths, the cache marker, a safe gc, verified reads.

use super::*;

/// Files under `dir` (recursively), as paths relative to it, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn go(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                go(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    go(dir, dir, &mut out);
    out.sort();
    out
}

fn precious(env: &Env, rel: &str) -> PathBuf {
    env.write(&format!("{rel}/keep.txt"), "precious");
    env.path(rel)
}

fn intact(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("keep.txt")).is_ok_and(|t| t == "precious")
}

/// Digests of the cache's objects (`objects/ab/<digest>`).
fn object_names(env: &Env) -> Vec<String> {
    let mut v: Vec<String> = find_files(&env.path("cache/objects"), ".manifest.json")
        .iter()
        .map(|m| {
            m.parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

const TINY_SOURCE: &str = "{kind: source, format: synthetic, count: 20, height: 16, width: 16, exact_duplicates: 0, near_duplicates: 0, conflicting_duplicates: 0}";

#[test]
fn a_hostile_stage_id_never_touches_a_directory_outside_the_cache() {
    let env = Env::new();
    // Joined unchecked into cache/tmp/<pid>-<n>-<id>, this id names <env>/victim2.
    let victim = precious(&env, "victim2");
    env.write(
        "h.yaml",
        &format!("stages:\n  \"../../../../victim2\": {TINY_SOURCE}\n"),
    );
    let out = env.pipe(&["run", "h.yaml"]);
    // Rejected by validation (exit 2) or run inside the cache (0): either way the directory
    // outside the cache is untouched and nothing of it is in the cache.
    assert!(
        matches!(out.status.code(), Some(0 | 2)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(intact(&victim));
    assert!(find_files(&env.path("cache"), "keep.txt").is_empty());
}

#[test]
fn a_key_file_pointing_outside_the_cache_is_a_miss_with_a_warning() {
    let env = data_env(20);
    env.ok(&["run", "p.yaml"]);
    let victim = precious(&env, "victim3");
    let mut changed = 0;
    for rel in tree(&env.path("cache/keys")) {
        let k = env.path("cache/keys").join(rel);
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&k).unwrap()).unwrap();
        if v["stage"] == "train_raw" {
            v["digest"] = "../../victim3".into();
            std::fs::write(&k, v.to_string()).unwrap();
            changed += 1;
        }
    }
    assert_eq!(changed, 1);
    let out = env.pipe(&["run", "p.yaml"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("unreadable key file") && stderr.contains("not a digest"),
        "{stderr}"
    );
    assert_eq!(ran(&stdout), ["train_raw"], "{stdout}");
    env.ok(&["gc", "--keep-runs", "1"]);
    assert!(intact(&victim));
}

#[test]
fn an_ordinary_directory_is_refused_as_a_cache() {
    let env = data_env(10);
    for rel in ["d/tmp/work", "d/keys/ab", "d/objects/ab/x", "d/runs"] {
        precious(&env, rel);
    }
    env.write("d/notes.txt", "mine");
    let before = tree(&env.path("d"));
    for args in [
        vec!["run", "p.yaml", "--cache", "d"],
        vec!["gc", "--cache", "d"],
        vec!["status", "p.yaml", "--cache", "d"],
        vec!["runs", "--cache", "d"],
    ] {
        let e = env.err(&args, 2);
        assert!(
            e.contains("is not a pipe cache") && e.contains("`notes.txt` was not made by pipe"),
            "{args:?}: {e}"
        );
    }
    assert_eq!(tree(&env.path("d")), before);
    // Only some of pipe's directories, nothing else: still not a cache.
    std::fs::remove_file(env.path("d/notes.txt")).unwrap();
    let e = env.err(&["gc", "--cache", "d"], 2);
    assert!(e.contains("some of pipe's directories"), "{e}");
    assert_eq!(tree(&env.path("d")).len(), before.len() - 1);
    // A new or empty directory becomes a cache, with its marker.
    std::fs::create_dir(env.path("empty")).unwrap();
    env.ok(&["run", "p.yaml", "--cache", "empty"]);
    assert!(env.path("empty/pipe-cache.json").is_file());
}

#[test]
fn a_cache_made_before_the_marker_is_adopted() {
    let env = data_env(20);
    env.ok(&["run", "p.yaml"]);
    std::fs::remove_file(env.path("cache/pipe-cache.json")).unwrap();
    let out = env.ok(&["run", "p.yaml"]);
    assert!(ran(&out).is_empty(), "{out}");
    assert!(env.path("cache/pipe-cache.json").is_file());
}

#[test]
fn gc_refuses_while_a_run_record_is_unreadable_and_runs_lists_it() {
    let env = data_env(20);
    env.ok(&["run", "p.yaml"]);
    let objects = object_names(&env);
    assert_eq!(objects.len(), 5);
    let rec = record_files(&env).pop().unwrap();
    let text = std::fs::read_to_string(&rec).unwrap();
    // A record of the previous format (no `schema`) is still read.
    let mut old: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(old["schema"], 2);
    old.as_object_mut().unwrap().remove("schema");
    std::fs::write(&rec, old.to_string()).unwrap();
    let runs = env.ok(&["runs"]);
    assert!(runs.contains(" ok"), "{runs}");
    // A damaged one stops gc, named, and deletes nothing.
    std::fs::write(&rec, &text[..text.len() / 2]).unwrap();
    let name = rec.file_name().unwrap().to_string_lossy().into_owned();
    let e = env.err(&["gc"], 2);
    assert!(
        e.contains(&name)
            && e.contains("unreadable run record")
            && e.contains("--ignore-unreadable"),
        "{e}"
    );
    assert_eq!(object_names(&env), objects);
    let out = env.pipe(&["runs"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success());
    assert!(
        stdout.contains(&name) && stdout.contains("unreadable"),
        "{stdout}"
    );
    assert!(stderr.contains(&name), "{stderr}");
    // Explicitly ignored: what only that record reached goes; the record stays.
    let gc = env.ok(&["gc", "--ignore-unreadable"]);
    assert!(gc.contains("removed 5 objects, 0 run records"), "{gc}");
    assert!(rec.exists());
}

#[test]
fn gc_never_follows_a_linked_shard_nor_panics_on_odd_names() {
    let env = data_env(20);
    env.ok(&["run", "p.yaml"]);
    let objects = object_names(&env);
    // A copy of a live object in another object's shard, where it does not belong.
    let live = &objects[0];
    let wrong = objects
        .iter()
        .map(|o| &o[..2])
        .find(|s| *s != &live[..2])
        .unwrap();
    let misplaced = env.path("cache/objects").join(wrong).join(live);
    std::fs::create_dir_all(&misplaced).unwrap();
    let outside = precious(&env, "outside");
    let free_shard = (0..=255u8)
        .map(|b| format!("{b:02x}"))
        .find(|s| !env.path("cache/objects").join(s).exists())
        .unwrap();
    std::os::unix::fs::symlink(&outside, env.path("cache/objects").join(&free_shard)).unwrap();
    std::os::unix::fs::symlink(&outside, env.path("cache/work/link")).unwrap();
    for odd in ["objects/zz/x", "objects/aé/y", "keys/zz/k"] {
        std::fs::create_dir_all(env.path("cache").join(odd)).unwrap();
    }
    let dry = env.ok(&["gc", "--dry-run"]);
    for p in [
        format!("objects/{free_shard}"),
        "objects/zz".into(),
        "objects/aé".into(),
        "keys/zz".into(),
        "work/link".into(),
        format!("objects/{wrong}/{live}"),
    ] {
        assert!(
            dry.contains(&format!("would remove stray   {p}  ")),
            "{p}:\n{dry}"
        );
    }
    assert!(dry.contains("wrong shard"), "{dry}");
    assert!(misplaced.exists() && env.path("cache/objects/zz").exists());
    let gc = env.ok(&["gc"]);
    assert!(
        gc.contains("removed 0 objects") && gc.contains("6 stray"),
        "{gc}"
    );
    assert!(intact(&outside));
    assert!(!misplaced.exists(), "reported removed, and removed");
    assert_eq!(object_names(&env), objects);
    let out = env.ok(&["run", "p.yaml"]);
    assert!(ran(&out).is_empty(), "{out}");
}

#[test]
fn gc_collects_orphaned_work_and_tmp_and_dry_run_lists_them() {
    let env = data_env(20);
    env.ok(&["run", "p.yaml"]);
    let orphan = "7e".repeat(32);
    env.write(&format!("cache/work/{orphan}/state.json"), "{\"epoch\": 3}");
    env.write("cache/tmp/999999-0-train/weights.bin", &"w".repeat(5000));
    let dry = env.ok(&["gc", "--dry-run"]);
    assert!(
        dry.contains(&format!(
            "would remove work    work/{orphan}  12 B  (no kept run resumes it)"
        )),
        "{dry}"
    );
    assert!(
        dry.contains("would remove temp    tmp/999999-0-train  5.0 kB"),
        "{dry}"
    );
    assert!(dry.contains("would remove 0 objects"), "{dry}");
    assert!(env.path("cache/tmp/999999-0-train").exists());
    let gc = env.ok(&["gc"]);
    assert!(
        gc.contains("1 work directories, 1 temporary and 0 stray entries"),
        "{gc}"
    );
    assert!(!env.path(&format!("cache/work/{orphan}")).exists());
    assert!(!env.path("cache/tmp/999999-0-train").exists());
}

const TRAINED: &str = "\
name: tiny
stages:
  faces: {kind: source, format: synthetic, count: 120, height: 24, width: 24, exact_duplicates: 0, near_duplicates: 0, conflicting_duplicates: 0}
  split: {kind: split, inputs: {data: faces}}
  train_a: {kind: train, model: b1, epochs: 1, batch_size: 32, seed: 1, inputs: {data: faces, split: split}}
  train_b: {kind: train, model: b1, epochs: 1, batch_size: 32, seed: 2, inputs: {data: faces, split: split}}
  evaluate: {kind: evaluate, inputs: {model: train_a, data: faces, split: split}}
  ens: {kind: ensemble, inputs: {data: faces, split: split, a: train_a, b: train_b}}
  predict: {kind: predict, hash_override: false, inputs: {test: faces, ensemble: ens}}
";

/// The object directory of `stage` in the last run.
fn object_of(env: &Env, stage: &str) -> PathBuf {
    let d = last_digests(env)
        .into_iter()
        .find(|(s, _)| s == stage)
        .unwrap()
        .1;
    env.path("cache/objects").join(&d[..2]).join(d)
}

#[test]
fn damaged_outputs_are_never_reported_or_used_and_ensembles_resolve_members_by_refs() {
    let env = Env::new();
    env.write("t.yaml", TRAINED);
    env.ok(&["run", "t.yaml"]);
    let digests: std::collections::BTreeMap<String, String> =
        last_digests(&env).into_iter().collect();

    // The ensemble's manifest names its members; predict found them through it.
    let ens = object_of(&env, "ens");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ens.join(".manifest.json")).unwrap()).unwrap();
    let mut members = vec![digests["train_a"].clone(), digests["train_b"].clone()];
    members.sort();
    assert_eq!(manifest["refs"], serde_json::json!(members));

    let table = env.ok(&["compare", "t.yaml"]);
    let row = table
        .lines()
        .find(|l| l.contains("| evaluate |"))
        .unwrap()
        .to_string();

    // Edit the evaluation's report in the cache, keeping its size.
    let report = object_of(&env, "evaluate").join("report.json");
    let text = std::fs::read_to_string(&report).unwrap();
    let at = text.find("\"balanced_accuracy\": ").unwrap() + 21;
    let digit = text.as_bytes()[at];
    assert!(digit.is_ascii_digit(), "{text}");
    let mut edited = text.into_bytes();
    edited[at] = if digit == b'9' { b'1' } else { digit + 1 };
    std::fs::write(&report, &edited).unwrap();
    let out = env.pipe(&["compare", "t.yaml"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(!stdout.contains("| evaluate |"), "{stdout}");
    assert!(
        stderr.contains("`evaluate` of tiny: its output is damaged"),
        "{stderr}"
    );

    // `run` sees the damage, rebuilds the final output, and compare is whole again.
    let out = env.ok(&["run", "t.yaml"]);
    assert!(out.contains("damaged evaluate"), "{out}");
    assert_eq!(ran(&out), ["evaluate"], "{out}");
    assert_eq!(
        last_digests(&env)
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>(),
        digests
    );
    let table = env.ok(&["compare", "t.yaml"]);
    assert!(table.contains(&row), "{table}");

    // A damaged ensemble member is rebuilt before predict resolves it through the refs.
    std::fs::write(object_of(&env, "train_b").join("report.json"), b"{}").unwrap();
    let out = env.ok(&["run", "t.yaml", "--force", "predict"]);
    assert!(out.contains("damaged train_b"), "{out}");
    let ran = ran(&out);
    assert!(
        ran.contains(&"train_b".into()) && ran.contains(&"predict".into()),
        "{out}"
    );
}

/// Overwrites the byte at `at` of `path` in place, keeping its size and mtime.
fn poke(path: &Path, at: u64, byte: u8) {
    let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[byte], at).unwrap();
    f.set_modified(mtime).unwrap();
}

/// A source rewritten in place while it is copied into the cache (one byte flipped, same size,
/// mtime restored; the copy slowed by the test-only `PIPE_TEST_SOURCE_READ_DELAY_MS`) fails
/// with exit 1 and commits nothing. Later runs key and store whatever the file then holds:
/// once the original bytes are back, they are stored, never the flipped ones under their key.
#[test]
fn a_source_rewritten_while_it_is_copied_is_refused_and_never_cached() {
    let env = Env::new();
    // 16384 images of 16x16x3: four chunks of the copy, 300 ms apart.
    let original: Vec<u8> = (0..16384 * 768).map(|i| (i * 7 % 251) as u8).collect();
    let raw = env.path("db_train.raw");
    std::fs::write(&raw, &original).unwrap();
    env.write(
        "p.yaml",
        "stages:\n  train_raw: {kind: source, format: raw, images: db_train.raw, height: 16, width: 16}\n",
    );
    let at = original.len() as u64 - 100;
    let mut child = env
        .cmd(&["run", "p.yaml"])
        .env("PIPE_TEST_SOURCE_READ_DELAY_MS", "300")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the copy has begun, flip a byte it has not reached yet.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !find_files(&env.path("cache/tmp"), "pixels.u8")
        .iter()
        .any(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
    {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the copy was never seen"
        );
        assert!(std::time::Instant::now() < deadline, "the copy never began");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    poke(&raw, at, original[at as usize] ^ 1);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("db_train.raw changed while it was read: nothing was stored"),
        "{stderr}"
    );
    assert!(find_files(&env.path("cache/objects"), "pixels.u8").is_empty());
    assert!(tree(&env.path("cache/keys")).is_empty());

    let stored = |env: &Env| {
        let (_, digest) = last_digests(env)
            .into_iter()
            .find(|(s, _)| s == "train_raw")
            .unwrap();
        let dir = env.path("cache/objects").join(&digest[..2]).join(&digest);
        std::fs::read(dir.join("pixels.u8")).unwrap()
    };
    // The file now holds the flipped byte: that is what the next run keys and stores.
    let out = env.ok(&["run", "p.yaml"]);
    assert_eq!(ran(&out), ["train_raw"], "{out}");
    assert!(stored(&env) == std::fs::read(&raw).unwrap());
    assert!(stored(&env) != original);
    // The original bytes restored: keyed anew and stored as they are.
    poke(&raw, at, original[at as usize]);
    let out = env.ok(&["run", "p.yaml"]);
    assert_eq!(ran(&out), ["train_raw"], "{out}");
    assert!(stored(&env) == original);
    let status = env.ok(&["status", "p.yaml"]);
    assert_eq!(status.split_whitespace().nth(1), Some("cached"), "{status}");
}

/// A key file moved (or copied) over another key's file, which would serve the other stage's
/// object, is a miss with a warning: `status` says so and `run` rebuilds the stage.
#[test]
fn a_key_file_holding_another_keys_entry_is_a_miss_with_a_warning() {
    let env = data_env(20);
    env.ok(&["run", "p.yaml"]);
    let mut key_of = std::collections::BTreeMap::new();
    for rel in tree(&env.path("cache/keys")) {
        let k = env.path("cache/keys").join(rel);
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&k).unwrap()).unwrap();
        key_of.insert(v["stage"].as_str().unwrap().to_string(), k);
    }
    std::fs::copy(&key_of["hashes"], &key_of["groups"]).unwrap();
    let out = env.pipe(&["status", "p.yaml"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("the key file holds the entry of another key"),
        "{stderr}"
    );
    let groups = stdout.lines().find(|l| l.starts_with("groups ")).unwrap();
    assert_eq!(groups.split_whitespace().nth(1), Some("stale"), "{stdout}");
    let out = env.ok(&["run", "p.yaml"]);
    assert_eq!(ran(&out), ["groups"], "{out}");
}

/// The source's stored pixels are never the user's file itself (a clone or a copy, never a
/// hardlink): after a run, an in-place edit of the raw file (same size, same inode, mtime put
/// back, as `dd conv=notrunc` or an editor writing in place would) leaves the cached object's
/// bytes and digest as they were, and the source reruns. With the original bytes back, the
/// first run's objects are hits again; gc and later runs go on as usual.
#[test]
fn editing_a_source_file_in_place_after_a_run_never_changes_the_cached_object() {
    let env = data_env(40);
    env.ok(&["run", "p.yaml"]);
    let raw = env.path("data/db_train.raw");
    let original = std::fs::read(&raw).unwrap();
    let first = object_of(&env, "train_raw");
    let pixels = first.join("pixels.u8");
    let recorded = |dir: &Path| -> String {
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(".manifest.json")).unwrap()).unwrap();
        let files = m["files"].as_array().unwrap();
        let f = files.iter().find(|f| f["path"] == "pixels.u8").unwrap();
        f["blake3"].as_str().unwrap().to_string()
    };
    assert_eq!(recorded(&first), blake3::hash(&original).to_hex().as_str());
    assert!(!first.join(".digested.json").exists());
    use std::os::unix::fs::MetadataExt;
    let (a, b) = (
        std::fs::metadata(&raw).unwrap(),
        std::fs::metadata(&pixels).unwrap(),
    );
    assert_ne!(a.ino(), b.ino());

    let at = 16 * 16 * 3 * 10 + 5;
    poke(&raw, at as u64, original[at] ^ 0xff);
    assert!(std::fs::read(&pixels).unwrap() == original);
    assert_eq!(recorded(&first), blake3::hash(&original).to_hex().as_str());
    let out = env.ok(&["run", "p.yaml"]);
    assert_eq!(ran(&out), ALL, "{out}");
    let second = object_of(&env, "train_raw");
    assert_ne!(second, first);
    assert!(std::fs::read(second.join("pixels.u8")).unwrap() == std::fs::read(&raw).unwrap());
    assert!(std::fs::read(&pixels).unwrap() == original);

    // The original bytes back: the first run's key and object are a verified hit.
    poke(&raw, at as u64, original[at]);
    let out = env.ok(&["run", "p.yaml"]);
    assert!(ran(&out).is_empty(), "{out}");
    assert_eq!(object_of(&env, "train_raw"), first);
    // Only the edited file's source object differs (the flipped pixel leaves every dHash).
    let gc = env.ok(&["gc", "--keep-runs", "1"]);
    assert!(gc.contains("removed 1 objects"), "{gc}");
    assert!(!second.exists() && first.exists());
    let out = env.ok(&["run", "p.yaml"]);
    assert!(ran(&out).is_empty(), "{out}");
}
