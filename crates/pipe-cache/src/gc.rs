//! `pipe gc`: plans, then removes, everything in the cache that nothing kept reaches.
//!
//! The caller says what is alive (output digests of the run records it keeps, from
//! `record`); this module follows the objects' manifest refs from there and knows only the
//! cache's layout. It runs under the cache lock, so no run is alive: everything in `tmp/` is a
//! leftover, and `work/<key>` (training resume scratch) is kept only for a key a kept record
//! names and that was never committed (a failed stage that a rerun resumes).
//!
//! Safety: entries are listed with `read_dir` and classified by `file_type`, which does not
//! follow links; a link is removed as a link, never descended; odd names (not hex, not UTF-8,
//! an object in the wrong shard) are reported as stray entries and removed, never sliced.

use super::digest::is_digest;
use super::store::{KeyEntry, Manifest, Store, StoreError, dir_size, remove_entry};
use std::collections::BTreeSet;
use std::fs::DirEntry;
use std::path::{Path, PathBuf};

/// What the caller keeps.
#[derive(Debug, Default)]
pub struct Roots {
    /// Output digests of the kept run records; what their manifests refer to is kept too.
    pub digests: BTreeSet<String>,
    /// Stage keys whose uncommitted `work/<key>` scratch is kept (a rerun resumes from it).
    pub resumable: BTreeSet<String>,
    /// Run records to delete (files under `runs/`).
    pub stale_records: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum What {
    Object,
    Key,
    Record,
    Work,
    Temp,
    Stray,
}

impl What {
    pub fn label(self) -> &'static str {
        match self {
            What::Object => "object",
            What::Key => "key",
            What::Record => "record",
            What::Work => "work",
            What::Temp => "temp",
            What::Stray => "stray",
        }
    }
}

/// One thing gc removes.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub what: What,
    /// Inside the cache.
    pub path: PathBuf,
    pub bytes: u64,
    pub why: String,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub items: Vec<Item>,
}

impl Plan {
    pub fn count(&self, what: What) -> usize {
        self.items.iter().filter(|i| i.what == what).count()
    }

    pub fn bytes(&self) -> u64 {
        self.items.iter().map(|i| i.bytes).sum()
    }

    fn add(&mut self, what: What, path: PathBuf, why: impl Into<String>) {
        self.items.push(Item {
            what,
            bytes: dir_size(&path),
            path,
            why: why.into(),
        });
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Entries of `dir` in name order (deterministic listings).
fn entries(dir: &Path) -> Result<Vec<DirEntry>, StoreError> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        v.push(e.map_err(io(dir))?);
    }
    v.sort_by_key(DirEntry::file_name);
    Ok(v)
}

/// A real directory (not a link) named `ab` (two lowercase hex characters)?
fn is_shard(e: &DirEntry) -> Result<bool, StoreError> {
    let ft = e.file_type().map_err(io(&e.path()))?;
    let name = e.file_name();
    let ok = name
        .to_str()
        .is_some_and(|n| n.len() == 2 && n.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    Ok(ft.is_dir() && ok)
}

fn stray_reason(e: &DirEntry) -> Result<&'static str, StoreError> {
    let ft = e.file_type().map_err(io(&e.path()))?;
    Ok(if ft.is_symlink() {
        "a link (removed, never followed)"
    } else {
        "not something pipe writes here"
    })
}

/// Every digest reachable from the roots through manifest refs. A kept object whose manifest
/// cannot be read is an error: what it refers to would be unknown.
fn reachable(store: &Store, roots: &BTreeSet<String>) -> Result<BTreeSet<String>, StoreError> {
    let mut live = BTreeSet::new();
    let mut todo: Vec<String> = roots.iter().cloned().collect();
    while let Some(d) = todo.pop() {
        if !is_digest(&d) || !live.insert(d.clone()) {
            continue;
        }
        let dir = store.object_dir(&d);
        if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            continue; // gone already, or a link (listed as stray): nothing to follow
        }
        let m = Manifest::read(&dir).map_err(|e| StoreError::Corrupt {
            path: dir.clone(),
            message: format!(
                "a kept object whose manifest cannot be read ({e}): what it refers to is \
                 unknown; rerun its pipeline (which rebuilds it) or remove the object"
            ),
        })?;
        todo.extend(m.refs);
    }
    Ok(live)
}

/// What `gc` would remove, without removing anything.
pub fn plan(store: &Store, roots: &Roots) -> Result<Plan, StoreError> {
    let live = reachable(store, &roots.digests)?;
    let mut plan = Plan::default();
    plan_objects(store, &live, &mut plan)?;
    plan_keys(store, &live, &mut plan)?;
    let runs = store.root.join("runs");
    for p in &roots.stale_records {
        if p.parent() == Some(runs.as_path()) {
            plan.add(What::Record, p.clone(), "older than the kept runs");
        }
    }
    for e in entries(&runs)? {
        let p = e.path();
        if p.extension()
            .and_then(|x| x.to_str())
            .is_some_and(pipe_fs::is_temp_extension)
        {
            plan.add(What::Temp, p, "left by an interrupted run");
        }
    }
    for e in entries(&store.root.join("work"))? {
        let name = e.file_name();
        let key = name.to_str().filter(|n| is_digest(n));
        let is_dir = e.file_type().map_err(io(&e.path()))?.is_dir();
        match key {
            Some(k) if is_dir && store.has_key(k) => {
                plan.add(What::Work, e.path(), "its stage has been committed")
            }
            Some(k) if is_dir && roots.resumable.contains(k) => {}
            Some(_) if is_dir => plan.add(What::Work, e.path(), "no kept run resumes it"),
            _ => plan.add(What::Stray, e.path(), stray_reason(&e)?),
        }
    }
    for e in entries(&store.root.join("tmp"))? {
        plan.add(What::Temp, e.path(), "left by a run no longer alive");
    }
    Ok(plan)
}

fn plan_objects(store: &Store, live: &BTreeSet<String>, plan: &mut Plan) -> Result<(), StoreError> {
    for shard in entries(&store.root.join("objects"))? {
        if !is_shard(&shard)? {
            plan.add(What::Stray, shard.path(), stray_reason(&shard)?);
            continue;
        }
        let shard_name = shard.file_name().to_string_lossy().into_owned();
        for obj in entries(&shard.path())? {
            let name = obj.file_name();
            let is_dir = obj.file_type().map_err(io(&obj.path()))?.is_dir();
            match name.to_str().filter(|n| is_digest(n)) {
                Some(d) if is_dir && !d.starts_with(&shard_name) => plan.add(
                    What::Stray,
                    obj.path(),
                    format!(
                        "an object in the wrong shard (it belongs in objects/{})",
                        &d[..2]
                    ),
                ),
                Some(d) if is_dir && live.contains(d) => {}
                Some(_) if is_dir => plan.add(What::Object, obj.path(), "no kept run reaches it"),
                _ => plan.add(What::Stray, obj.path(), stray_reason(&obj)?),
            }
        }
    }
    Ok(())
}

fn plan_keys(store: &Store, live: &BTreeSet<String>, plan: &mut Plan) -> Result<(), StoreError> {
    for shard in entries(&store.root.join("keys"))? {
        if !is_shard(&shard)? {
            plan.add(What::Stray, shard.path(), stray_reason(&shard)?);
            continue;
        }
        let shard_name = shard.file_name().to_string_lossy().into_owned();
        for k in entries(&shard.path())? {
            let name = k.file_name();
            let is_file = k.file_type().map_err(io(&k.path()))?.is_file();
            let key = name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .filter(|n| is_digest(n) && n.starts_with(&shard_name));
            if key.is_none() || !is_file {
                plan.add(What::Stray, k.path(), stray_reason(&k)?);
                continue;
            }
            let entry = std::fs::read(k.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<KeyEntry>(&b).ok());
            match entry {
                Some(e) if live.contains(&e.digest) => {}
                Some(_) => plan.add(What::Key, k.path(), "its object is not kept"),
                None => plan.add(What::Key, k.path(), "unreadable key file"),
            }
        }
    }
    Ok(())
}

/// Removes what `plan` lists. Directories are renamed into `tmp/` first, so nobody ever sees
/// half an object; links are unlinked.
pub fn apply(store: &Store, plan: &Plan) -> Result<(), StoreError> {
    for item in &plan.items {
        if !item.path.starts_with(&store.root) {
            continue; // never: every path was listed under the cache root
        }
        let is_dir = std::fs::symlink_metadata(&item.path).is_ok_and(|m| m.is_dir());
        if is_dir && matches!(item.what, What::Object | What::Work) {
            store.discard(&item.path)?;
        } else {
            remove_entry(&item.path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StageKey;
    use crate::store::declare_refs;

    fn key(kind: &str) -> StageKey {
        StageKey {
            format: 1,
            kind: kind.into(),
            version: 1,
            implementation: Default::default(),
            config: serde_json::json!({}),
            inputs: Default::default(),
            files: Default::default(),
        }
    }

    fn commit(store: &Store, kind: &str, text: &str, refs: &[String]) -> String {
        let out = store.begin(kind).unwrap();
        std::fs::write(out.dir.join("f"), text).unwrap();
        declare_refs(&out.dir, refs).unwrap();
        store.commit(out, kind, &key(kind)).unwrap()
    }

    fn rel(store: &Store, plan: &Plan) -> Vec<(What, String)> {
        plan.items
            .iter()
            .map(|i| {
                let p = i.path.strip_prefix(&store.root).unwrap();
                (i.what, p.to_string_lossy().into_owned())
            })
            .collect()
    }

    #[test]
    fn refs_keep_objects_alive_transitively_and_the_rest_goes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let member = commit(&store, "train", "w", &[]);
        let ens = commit(&store, "ensemble", "e", std::slice::from_ref(&member));
        let pred = commit(&store, "predict", "p", &[]);
        let dead = commit(&store, "hash", "old", &[]);
        let roots = Roots {
            digests: BTreeSet::from([ens.clone(), pred.clone()]),
            ..Default::default()
        };
        let found = plan(&store, &roots).unwrap();
        let listed = rel(&store, &found);
        assert_eq!(
            listed,
            [
                (What::Object, format!("objects/{}/{dead}", &dead[..2])),
                (What::Key, {
                    let k = key("hash").digest();
                    format!("keys/{}/{k}.json", &k[..2])
                }),
            ]
        );
        assert!(found.bytes() > 0);
        apply(&store, &found).unwrap();
        for d in [&member, &ens, &pred] {
            store.verify(d).unwrap();
        }
        assert!(!store.object_dir(&dead).exists());
    }

    #[test]
    fn links_odd_names_and_misplaced_objects_are_handled_without_following_or_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("cache")).unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(outside.join("precious")).unwrap();
        std::fs::write(outside.join("precious/file"), b"keep me").unwrap();
        let objects = store.root.join("objects");
        std::os::unix::fs::symlink(&outside, objects.join("ab")).unwrap();
        std::os::unix::fs::symlink(&outside, store.root.join("tmp/link")).unwrap();
        std::os::unix::fs::symlink(&outside, store.root.join("work/link")).unwrap();
        std::fs::create_dir_all(objects.join("zz/x")).unwrap();
        std::fs::create_dir_all(objects.join("aé/y")).unwrap();
        std::fs::create_dir_all(objects.join("cd/é")).unwrap();
        let misplaced = format!("ef{}", "0".repeat(62));
        std::fs::create_dir_all(objects.join("cd").join(&misplaced)).unwrap();
        std::fs::create_dir_all(store.root.join("keys/zz")).unwrap();
        let found = plan(&store, &Roots::default()).unwrap();
        let listed = rel(&store, &found);
        for (what, p) in [
            (What::Stray, "objects/ab".to_string()),
            (What::Stray, "objects/zz".into()),
            (What::Stray, "objects/aé".into()),
            (What::Stray, "objects/cd/é".into()),
            (What::Stray, format!("objects/cd/{misplaced}")),
            (What::Stray, "keys/zz".into()),
            (What::Stray, "work/link".into()),
            (What::Temp, "tmp/link".into()),
        ] {
            assert!(listed.contains(&(what, p.clone())), "{p} in {listed:?}");
        }
        let wrong = found
            .items
            .iter()
            .find(|i| i.path.ends_with(&misplaced))
            .unwrap();
        assert!(
            wrong.why.contains("wrong shard (it belongs in objects/ef)"),
            "{}",
            wrong.why
        );
        apply(&store, &found).unwrap();
        assert_eq!(
            std::fs::read(outside.join("precious/file")).unwrap(),
            b"keep me"
        );
        assert!(
            !objects.join("cd").join(&misplaced).exists(),
            "reported removed, and is"
        );
        assert!(plan(&store, &Roots::default()).unwrap().items.is_empty());
    }

    #[test]
    fn work_scratch_is_kept_only_while_a_kept_record_can_resume_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let committed = key("hash").digest();
        commit(&store, "hash", "h", &[]);
        let failed = "aa".repeat(32);
        let orphan = "bb".repeat(32);
        for k in [&committed, &failed, &orphan] {
            std::fs::create_dir_all(store.work_dir(k).join("epoch-1")).unwrap();
        }
        std::fs::create_dir_all(store.root.join("tmp/123-0-train")).unwrap();
        let roots = Roots {
            resumable: BTreeSet::from([failed.clone(), committed.clone()]),
            ..Default::default()
        };
        let p = plan(&store, &roots).unwrap();
        let works: Vec<_> = p.items.iter().filter(|i| i.what == What::Work).collect();
        assert_eq!(works.len(), 2, "{:?}", p.items);
        assert!(works.iter().any(|i| i.path.ends_with(&committed)));
        assert!(works.iter().any(|i| i.path.ends_with(&orphan)));
        assert_eq!(p.count(What::Temp), 1);
        apply(&store, &p).unwrap();
        assert!(store.work_dir(&failed).exists());
        assert!(!store.work_dir(&orphan).exists());
    }
}
