//! Checks a cache directory for invalid entries, for `bench/kill_campaign.sh`: every object's
//! files must match its manifest (sizes and blake3), the manifest must hash to the object's
//! name, and every key file must name an object that is present. Prints each problem and a
//! one-line count; exits 1 when anything is invalid.
//!
//! Usage: `cargo run --example cache_check -- CACHE_DIR`

use pipe::cache::store::{KeyEntry, MANIFEST, Manifest};
use std::path::{Path, PathBuf};

fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Problems with the object in `dir` (named by its digest).
fn check_object(dir: &Path) -> Vec<String> {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    let mpath = dir.join(MANIFEST);
    let manifest: Manifest = match std::fs::read(&mpath)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(m) => m,
        Err(e) => return vec![format!("{}: {e}", mpath.display())],
    };
    let mut problems = Vec::new();
    if name.as_deref() != Some(manifest.digest().as_str()) {
        problems.push(format!(
            "{}: manifest does not hash to the name",
            dir.display()
        ));
    }
    for f in &manifest.files {
        let p = dir.join(&f.path);
        match std::fs::read(&p) {
            Ok(bytes)
                if bytes.len() as u64 == f.size
                    && blake3::hash(&bytes).to_hex().as_str() == f.blake3 => {}
            Ok(_) => problems.push(format!(
                "{}: contents differ from the manifest",
                p.display()
            )),
            Err(e) => problems.push(format!("{}: {e}", p.display())),
        }
    }
    problems
}

fn main() {
    let Some(root) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: cache_check CACHE_DIR");
        std::process::exit(2);
    };
    let mut problems = Vec::new();
    let mut objects = 0;
    for shard in entries(&root.join("objects")) {
        for obj in entries(&shard) {
            objects += 1;
            problems.extend(check_object(&obj));
        }
    }
    let mut keys = 0;
    for shard in entries(&root.join("keys")) {
        for key in entries(&shard) {
            keys += 1;
            let entry: Result<KeyEntry, String> = std::fs::read(&key)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()));
            match entry {
                Ok(e)
                    if e.digest.len() == 64 && e.digest.bytes().all(|b| b.is_ascii_hexdigit()) =>
                {
                    let obj = root.join("objects").join(&e.digest[..2]).join(&e.digest);
                    if !obj.join(MANIFEST).is_file() {
                        problems.push(format!(
                            "{}: names missing object {}",
                            key.display(),
                            e.digest
                        ));
                    }
                }
                Ok(e) => problems.push(format!("{}: bad digest {:?}", key.display(), e.digest)),
                Err(e) => problems.push(format!("{}: {e}", key.display())),
            }
        }
    }
    for p in &problems {
        println!("invalid: {p}");
    }
    println!("objects {objects} keys {keys} invalid {}", problems.len());
    std::process::exit(i32::from(!problems.is_empty()));
}
