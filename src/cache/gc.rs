//! `pipe gc`: removes objects and keys that no kept run record reaches.

use super::store::{Store, dir_size};
use crate::record::load_all;
use std::collections::BTreeSet;

#[derive(Debug, Default)]
pub struct GcReport {
    pub objects_removed: usize,
    pub runs_removed: usize,
    pub bytes_freed: u64,
}

/// Keeps the newest `keep_runs` run records and everything they reach.
pub fn gc(store: &Store, keep_runs: usize, dry_run: bool) -> std::io::Result<GcReport> {
    let mut report = GcReport::default();
    let runs = load_all(&store.root);
    let cut = runs.len().saturating_sub(keep_runs);
    let mut live = BTreeSet::new();
    for (i, (path, rec)) in runs.iter().enumerate() {
        if i < cut {
            report.runs_removed += 1;
            if !dry_run {
                std::fs::remove_file(path)?;
            }
        } else {
            live.extend(rec.stages.values().filter_map(|s| s.digest.clone()));
        }
    }
    let objects = store.root.join("objects");
    for shard in std::fs::read_dir(&objects)?.flatten() {
        for obj in std::fs::read_dir(shard.path())?.flatten() {
            let digest = obj.file_name().to_string_lossy().into_owned();
            if !live.contains(&digest) {
                report.objects_removed += 1;
                report.bytes_freed += dir_size(&obj.path());
                if !dry_run {
                    store
                        .remove_object(&digest)
                        .map_err(std::io::Error::other)?;
                }
            }
        }
    }
    let keys = store.root.join("keys");
    for shard in std::fs::read_dir(&keys)?.flatten() {
        for k in std::fs::read_dir(shard.path())?.flatten() {
            let dead = std::fs::read(k.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<super::store::KeyEntry>(&b).ok())
                .is_none_or(|e| !live.contains(&e.digest));
            if dead && !dry_run {
                std::fs::remove_file(k.path())?;
            }
        }
    }
    if !dry_run {
        report.bytes_freed += store.clean_tmp();
    }
    Ok(report)
}
