//! Objects, keys and the commit protocol: a stage writes into `tmp/…`; on success its files are
//! digested into a manifest and the directory is renamed to `objects/ab/<digest>`; only then is
//! the key file (temp + rename) written. A crash or a full disk at any point leaves either no
//! entry or a whole one; leftovers in `tmp/` are removed by the next run or `gc`.
//!
//! Confinement: every path this module deletes or renames is built from a checked digest or a
//! name it generates itself, under a directory that is not a link; digests read back from key
//! files and manifests are validated when parsed ([`super::digest`]).
//!
//! Verification: [`Store::verify`] re-digests an object's files; [`Store::check`] does the same
//! only when a stat fingerprint of the files (size, mtime, ctime, inode) differs from the one
//! recorded at commit or at the last full verification (`.verified`, beside the manifest, not
//! part of the object), so every cache hit can be checked for the cost of a few `stat`s.

use super::digest::{self, is_digest};
pub use super::error::StoreError;
pub(super) use super::error::{corrupt, io};
use super::key::StageKey;
use super::marker;
pub use super::object::{
    DIGESTED, MANIFEST, Manifest, ManifestEntry, REFS, VERIFIED, declare_digest, declare_refs,
    object_digest,
};
use super::object::{digest_outputs, fingerprint, hash_file, read_refs, record_fingerprint, walk};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyEntry {
    #[serde(deserialize_with = "digest::de")]
    pub digest: String,
    pub stage: String,
    pub key: StageKey,
}

/// The answer to "is this key's output in the cache, intact?".
#[derive(Debug)]
pub enum Lookup {
    Hit(KeyEntry),
    Miss,
    /// The key's object exists but its files no longer match its manifest.
    Damaged {
        entry: KeyEntry,
        error: StoreError,
    },
}

impl Lookup {
    pub fn hit(self) -> Option<KeyEntry> {
        match self {
            Lookup::Hit(e) => Some(e),
            _ => None,
        }
    }
}

/// The file in a scratch directory naming its family (see [`Store::join_family`]).
pub const FAMILY_FILE: &str = "family";

pub struct Store {
    pub root: PathBuf,
}

/// A stage's output directory until it is committed; removed on drop otherwise.
pub struct TempOut {
    pub dir: PathBuf,
    committed: bool,
}

impl Drop for TempOut {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name unique to this process for something under `tmp/`.
/// Serialises the final step of [`Store::commit`] between threads.
static COMMITS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{n}-{prefix}", std::process::id())
}

fn ensure_real_dir(p: &Path) -> Result<(), StoreError> {
    match std::fs::create_dir(p) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(p)(e)),
    }
    let meta = std::fs::symlink_metadata(p).map_err(io(p))?;
    if meta.is_dir() {
        Ok(())
    } else {
        Err(corrupt(
            p,
            "not a directory (a link?): pipe never writes through links in its cache",
        ))
    }
}

/// Where a directory of the cache's own layout (a shard, an object) should be, a link or a file
/// is foreign: it is unlinked (its target is never touched) so the commit can proceed.
fn unlink_if_not_dir(p: &Path) -> Result<(), StoreError> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if !m.is_dir() => {
            tracing::warn!(
                "{}: not a directory (a link?): removed it; pipe never follows links in its cache",
                p.display()
            );
            std::fs::remove_file(p).map_err(io(p))
        }
        _ => Ok(()),
    }
}

/// Whether `p` is a real directory; `Ok(false)` when it does not exist, an error when it is
/// anything else (a link is never followed).
fn is_real_dir(p: &Path) -> Result<bool, StoreError> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => Ok(true),
        Ok(_) => Err(corrupt(
            p,
            "not a directory (a link?): pipe never follows links in its cache",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io(p)(e)),
    }
}

/// Removes `p` without following links: a link or a file is unlinked, a directory is emptied
/// (std's `remove_dir_all` does not follow links inside it either).
pub fn remove_entry(p: &Path) -> Result<(), StoreError> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p).map_err(io(p)),
        Ok(_) => std::fs::remove_file(p).map_err(io(p)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(p)(e)),
    }
}

impl Store {
    /// Opens (creating or adopting, see [`marker`]) the cache at `root`; refuses a directory
    /// that is not a cache.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        marker::ensure(root)?;
        for sub in marker::SUBDIRS {
            let p = root.join(sub);
            ensure_real_dir(&p).map_err(|e| match e {
                StoreError::Corrupt { message, .. } => StoreError::NotACache {
                    path: root.to_path_buf(),
                    reason: format!("`{sub}` is {message}"),
                },
                other => other,
            })?;
        }
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    /// For commands that only read: `None` when there is no cache yet; nothing is created.
    pub fn open_existing(root: &Path) -> Result<Option<Self>, StoreError> {
        Ok(match marker::inspect(root)? {
            marker::State::Absent | marker::State::Empty => None,
            marker::State::Marked | marker::State::Legacy => Some(Store {
                root: root.to_path_buf(),
            }),
        })
    }

    /// `objects/ab/<digest>`. Digests reaching here were computed by a commit or validated when
    /// read; anything else maps to a path inside the cache that never exists.
    pub fn object_dir(&self, digest: &str) -> PathBuf {
        let d = if is_digest(digest) {
            digest
        } else {
            "not-a-digest"
        };
        self.root.join("objects").join(&d[..2]).join(d)
    }

    fn key_file(&self, key: &str) -> PathBuf {
        let k = if is_digest(key) { key } else { "not-a-key" };
        self.root
            .join("keys")
            .join(&k[..2])
            .join(format!("{k}.json"))
    }

    /// A stage's scratch directory (`work/<key>`), which survives its failed runs.
    pub fn work_dir(&self, key: &str) -> PathBuf {
        let k = if is_digest(key) { key } else { "not-a-key" };
        self.root.join("work").join(k)
    }

    /// Notes that the scratch `work` (a [`Store::work_dir`]) belongs to `family`
    /// ([`crate::StageKey::family_digest`]).
    pub fn join_family(&self, work: &Path, family: &str) -> Result<(), StoreError> {
        let path = work.join(FAMILY_FILE);
        pipe_fs::write_atomic(&path, family.as_bytes(), pipe_fs::Temp::Beside)
            .map_err(|source| StoreError::Io { path, source })
    }

    /// The scratch directories of `family` other than `except`, in name order: what stages
    /// of the same family left when they stopped early.
    pub fn family_work_dirs(&self, family: &str, except: &Path) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.root.join("work")) else {
            return Vec::new();
        };
        let mut dirs: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p != except)
            .filter(|p| std::fs::read(p.join(FAMILY_FILE)).is_ok_and(|f| f == family.as_bytes()))
            .collect();
        dirs.sort();
        dirs
    }

    /// Whether `key` has a key file (its output was committed once).
    pub fn has_key(&self, key: &str) -> bool {
        is_digest(key) && self.key_file(key).is_file()
    }

    /// The committed output of `key`, checked against its manifest ([`Store::check`]: a few
    /// stats, a full re-digest when they changed). A key file that does not parse, or whose
    /// entry is not that of `key` (its own key digests to another name), is a miss, with a
    /// warning.
    pub fn lookup(&self, key: &str) -> Lookup {
        if !is_digest(key) {
            return Lookup::Miss;
        }
        let path = self.key_file(key);
        let Ok(bytes) = std::fs::read(&path) else {
            return Lookup::Miss;
        };
        let entry: KeyEntry = match serde_json::from_slice(&bytes) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(
                    "{}: unreadable key file ({e}): treated as a miss",
                    path.display()
                );
                return Lookup::Miss;
            }
        };
        // An entry moved or edited to another key's file would serve that key's object.
        if entry.key.digest() != key {
            tracing::warn!(
                "{}: the key file holds the entry of another key ({}): treated as a miss",
                path.display(),
                entry.key.digest()
            );
            return Lookup::Miss;
        }
        if !matches!(is_real_dir(&self.object_dir(&entry.digest)), Ok(true)) {
            return Lookup::Miss;
        }
        match self.check(&entry.digest) {
            Ok(()) => Lookup::Hit(entry),
            Err(error) => Lookup::Damaged { entry, error },
        }
    }

    pub fn manifest(&self, digest: &str) -> Result<Manifest, StoreError> {
        let dir = self.object_dir(digest);
        digest::check(digest).map_err(|e| corrupt(&dir, e.to_string()))?;
        let m = Manifest::read(&dir)?;
        if m.digest() != digest {
            return Err(corrupt(
                &dir.join(MANIFEST),
                "manifest does not match the object's digest",
            ));
        }
        Ok(m)
    }

    /// Like [`Store::verify`], but trusts files whose stats equal those recorded when they last
    /// matched (so a hit costs a few `stat`s); any change of size, mtime, ctime or inode — an
    /// edit, even one that keeps the size — means a full re-digest.
    pub fn check(&self, digest: &str) -> Result<(), StoreError> {
        let manifest = self.manifest(digest)?;
        let dir = self.object_dir(digest);
        let fp = fingerprint(&dir, &manifest)?;
        let recorded = std::fs::read_to_string(dir.join(VERIFIED)).unwrap_or_default();
        if recorded.trim() == fp {
            return Ok(());
        }
        self.verify(digest)
    }

    /// Re-digests every file of an object against its manifest (and remembers the files'
    /// stats when they match).
    pub fn verify(&self, digest: &str) -> Result<(), StoreError> {
        let manifest = self.manifest(digest)?;
        let dir = self.object_dir(digest);
        let before = fingerprint(&dir, &manifest)?;
        manifest.files.par_iter().try_for_each(|f| {
            let p = dir.join(&f.path);
            let (size, d) = hash_file(&p)?;
            if size != f.size || d != f.blake3 {
                return Err(corrupt(&p, "contents do not match the recorded digest"));
            }
            Ok(())
        })?;
        // Files changed while being read are not vouched for.
        if fingerprint(&dir, &manifest).is_ok_and(|after| after == before) {
            record_fingerprint(&dir, &before);
        }
        Ok(())
    }

    /// The directory of `digest`, which the object in `referrer` declares in its manifest's
    /// refs, fully verified. A damaged one is removed (the next run rebuilds its stage).
    pub fn resolve_ref(&self, referrer: &Path, digest: &str) -> Result<PathBuf, StoreError> {
        let m = Manifest::read(referrer)?;
        let mpath = referrer.join(MANIFEST);
        digest::check(digest).map_err(|e| corrupt(&mpath, e.to_string()))?;
        if !m.refs.iter().any(|r| r == digest) {
            return Err(corrupt(
                &mpath,
                format!("object {digest} is not among this object's refs"),
            ));
        }
        let dir = self.object_dir(digest);
        if !is_real_dir(&dir)? {
            return Err(corrupt(
                &dir,
                "a referenced object is missing: rerun the stage that produced it",
            ));
        }
        if let Err(e) = self.verify(digest) {
            self.remove_object(digest)?;
            return Err(corrupt(
                &dir,
                format!("{e}; removed it: the next run rebuilds the stage that produced it"),
            ));
        }
        Ok(dir)
    }

    /// Deletes an object (a corrupt one, or by `gc`): renamed away first so readers never see
    /// half of it. Only a checked digest, under real directories, is ever removed.
    pub fn remove_object(&self, digest: &str) -> Result<(), StoreError> {
        let dir = self.object_dir(digest);
        digest::check(digest).map_err(|e| corrupt(&dir, e.to_string()))?;
        let shard = dir.parent().unwrap_or(self.root.as_path());
        if !is_real_dir(shard)? || !is_real_dir(&dir)? {
            return Ok(());
        }
        self.discard(&dir)
    }

    /// Renames `path` (inside the cache) into `tmp/` and deletes it there.
    pub fn discard(&self, path: &Path) -> Result<(), StoreError> {
        let trash = self.root.join("tmp").join(unique("trash"));
        std::fs::rename(path, &trash).map_err(io(path))?;
        remove_entry(&trash)
    }

    /// A fresh temporary output directory for stage `stage` (any id: only a sanitised form
    /// enters the name).
    pub fn begin(&self, stage: &str) -> Result<TempOut, StoreError> {
        let dir = self
            .root
            .join("tmp")
            .join(unique(&pipe_fs::safe_name(stage, 40)));
        std::fs::create_dir(&dir).map_err(io(&dir))?;
        Ok(TempOut {
            dir,
            committed: false,
        })
    }

    /// Digests the output, moves it into `objects/` and records the key. Returns the digest.
    pub fn commit(
        &self,
        mut out: TempOut,
        stage: &str,
        key: &StageKey,
    ) -> Result<String, StoreError> {
        let mut files = Vec::new();
        walk(&out.dir, "", &mut files)?;
        files.sort();
        let manifest = Manifest {
            files: digest_outputs(&out.dir, &files)?,
            refs: read_refs(&out.dir)?,
        };
        remove_entry(&out.dir.join(REFS))?;
        remove_entry(&out.dir.join(DIGESTED))?;
        let digest = manifest.digest();
        let mpath = out.dir.join(MANIFEST);
        std::fs::write(
            &mpath,
            serde_json::to_vec_pretty(&manifest).expect("a manifest serialises"),
        )
        .map_err(io(&mpath))?;
        let target = self.object_dir(&digest);
        // Two variants of a sweep may commit identical bytes at once: check-then-rename is
        // one step per process (other processes are kept out by the cache lock).
        let _one = COMMITS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let shard = target.parent().unwrap_or(self.root.as_path());
        unlink_if_not_dir(shard)?;
        ensure_real_dir(shard)?;
        unlink_if_not_dir(&target)?;
        if is_real_dir(&target)? && self.verify(&digest).is_err() {
            self.remove_object(&digest)?;
        }
        if is_real_dir(&target)? {
            // Identical bytes already stored (another key produced them): keep that copy.
            self.add_refs(&target, &manifest.refs)?;
            drop(out);
        } else {
            std::fs::rename(&out.dir, &target).map_err(io(&target))?;
            out.committed = true;
            if let Ok(fp) = fingerprint(&target, &manifest) {
                record_fingerprint(&target, &fp);
            }
        }
        self.write_key(&digest, stage, key)?;
        Ok(digest)
    }

    /// Makes the stored manifest at `dir` declare `refs` too (an object stored before refs
    /// existed). Refs are not digested, so the object's identity does not change.
    fn add_refs(&self, dir: &Path, refs: &[String]) -> Result<(), StoreError> {
        let mut m = Manifest::read(dir)?;
        if refs.iter().all(|r| m.refs.contains(r)) {
            return Ok(());
        }
        m.refs.extend(refs.iter().cloned());
        m.refs.sort();
        m.refs.dedup();
        let p = dir.join(MANIFEST);
        let text = serde_json::to_vec_pretty(&m).expect("a manifest serialises");
        pipe_fs::write_atomic(&p, &text, pipe_fs::Temp::Unique).map_err(io(&p))
    }

    /// The key file, written to a temporary name and renamed; on failure (a full disk) the
    /// temporary file is removed and no key exists: the object is whole but unreferenced.
    fn write_key(&self, digest: &str, stage: &str, key: &StageKey) -> Result<(), StoreError> {
        let entry = KeyEntry {
            digest: digest.to_string(),
            stage: stage.to_string(),
            key: key.clone(),
        };
        let kpath = self.key_file(&key.digest());
        let shard = kpath.parent().unwrap_or(self.root.as_path());
        unlink_if_not_dir(shard)?;
        ensure_real_dir(shard)?;
        let text = serde_json::to_vec_pretty(&entry).expect("a key entry serialises");
        pipe_fs::write_atomic(&kpath, &text, pipe_fs::Temp::Unique).map_err(io(&kpath))
    }

    /// Removes leftovers of interrupted runs (only call while holding the cache lock: no
    /// run is alive then). Links are removed, never followed.
    pub fn clean_tmp(&self) -> u64 {
        let mut freed = 0;
        if let Ok(rd) = std::fs::read_dir(self.root.join("tmp")) {
            for e in rd.flatten() {
                freed += dir_size(&e.path());
                let _ = remove_entry(&e.path());
            }
        }
        freed
    }
}

/// Bytes under `p`, links counted as themselves and never followed.
pub fn dir_size(p: &Path) -> u64 {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::read_dir(p)
            .map(|rd| rd.flatten().map(|e| dir_size(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_dirs_of_a_family_are_found_by_their_marker() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("cache")).unwrap();
        let work = |k: &str| {
            let w = store.work_dir(&k.repeat(64));
            std::fs::create_dir_all(&w).unwrap();
            w
        };
        let (a, b, c, d) = (work("a"), work("b"), work("c"), work("d"));
        for w in [&a, &b, &c] {
            store.join_family(w, "family-1").unwrap();
        }
        store.join_family(&d, "family-2").unwrap();
        assert_eq!(
            store.family_work_dirs("family-1", &b),
            [a.clone(), c.clone()]
        );
        assert_eq!(store.family_work_dirs("family-2", &a), [d]);
        assert!(store.family_work_dirs("family-3", &a).is_empty());
    }

    fn key() -> StageKey {
        StageKey {
            format: 1,
            kind: "hash".into(),
            version: 1,
            implementation: Default::default(),
            config: serde_json::json!({}),
            inputs: Default::default(),
            files: Default::default(),
        }
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("cache")).unwrap();
        (dir, store)
    }

    fn commit_one(store: &Store, text: &[u8]) -> String {
        let out = store.begin("s").unwrap();
        std::fs::write(out.dir.join("a.txt"), text).unwrap();
        store.commit(out, "s", &key()).unwrap()
    }

    /// Two threads (two variants of a sweep run at once) committing identical bytes under
    /// different keys: both commits succeed and name one object.
    #[test]
    fn concurrent_commits_of_identical_bytes_both_succeed() {
        let (_d, store) = store();
        for round in 0..40 {
            let text = format!("same bytes {round}");
            let digests: Vec<String> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..8)
                    .map(|t| {
                        let (store, text) = (&store, &text);
                        s.spawn(move || {
                            let out = store.begin("s").unwrap();
                            std::fs::write(out.dir.join("a.txt"), text).unwrap();
                            let mut k = key();
                            k.config = serde_json::json!({ "thread": t });
                            store.commit(out, "s", &k)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap().unwrap())
                    .collect()
            });
            assert!(digests.iter().all(|d| *d == digests[0]), "{digests:?}");
            store.verify(&digests[0]).unwrap();
        }
    }

    #[test]
    fn commit_lookup_verify_and_detect_corruption() {
        let (_d, store) = store();
        let digest = commit_one(&store, b"abc");
        let hit = store.lookup(&key().digest()).hit().unwrap();
        assert_eq!(hit.digest, digest);
        store.verify(&digest).unwrap();
        std::fs::write(store.object_dir(&digest).join("a.txt"), b"abd").unwrap();
        assert!(store.verify(&digest).is_err());
        assert!(matches!(
            store.lookup(&key().digest()),
            Lookup::Damaged { .. }
        ));
        std::fs::write(store.object_dir(&digest).join("a.txt"), b"ab").unwrap();
        assert!(store.lookup(&key().digest()).hit().is_none(), "size change");
    }

    /// A key file whose entry is another key's (moved, copied or edited) would serve that
    /// key's object: it is a miss.
    #[test]
    fn a_key_file_holding_another_keys_entry_is_a_miss() {
        let (_d, store) = store();
        commit_one(&store, b"abc");
        let mut other = key();
        other.kind = "train".into();
        let other_file = store.key_file(&other.digest());
        std::fs::create_dir_all(other_file.parent().unwrap()).unwrap();
        std::fs::copy(store.key_file(&key().digest()), &other_file).unwrap();
        assert!(matches!(store.lookup(&other.digest()), Lookup::Miss));
        assert!(store.lookup(&key().digest()).hit().is_some());
        // Edited in place: the entry's key no longer digests to the file's name.
        let kfile = store.key_file(&key().digest());
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&kfile).unwrap()).unwrap();
        v["key"]["config"] = serde_json::json!({"edited": true});
        std::fs::write(&kfile, v.to_string()).unwrap();
        assert!(matches!(store.lookup(&key().digest()), Lookup::Miss));
    }

    /// A key read back from its file digests to its name, whatever floats its configuration
    /// holds (a search's sampled values have up to 17 significant digits). serde_json parses
    /// these exactly only with its `float_roundtrip` feature: without it, about one float in
    /// four comes back one ulp off, and the key would be a miss forever.
    #[test]
    fn a_committed_key_reads_back_to_its_own_name() {
        let (_d, store) = store();
        let floats = [
            0.1 + 0.2,
            1e-7 / 3.0,
            0.000_316_227_766_016_837_94,
            8.502_574_670_373_677e-14,
            -1.819_967_304_027_17e-179,
            1.586_084_611_999_269_7e-265,
            -1.603_964_615_428_183e143,
            f64::MIN_POSITIVE,
            5e-324,
        ];
        for (i, f) in floats.into_iter().enumerate() {
            let mut k = key();
            k.config = serde_json::json!({ "lr": f, "i": i });
            let out = store.begin("s").unwrap();
            std::fs::write(out.dir.join("a.txt"), format!("{i}")).unwrap();
            store.commit(out, "s", &k).unwrap();
            assert!(store.lookup(&k.digest()).hit().is_some(), "{f:e}");
        }
    }

    #[test]
    fn check_trusts_recorded_stats_and_re_digests_when_they_change() {
        let (_d, store) = store();
        let digest = commit_one(&store, b"abc");
        let dir = store.object_dir(&digest);
        assert!(dir.join(VERIFIED).exists(), "commit records the stats");
        store.check(&digest).unwrap();
        // An edit that keeps the size changes mtime/ctime: re-digested, caught.
        std::fs::write(dir.join("a.txt"), b"xyz").unwrap();
        let e = store.check(&digest).unwrap_err().to_string();
        assert!(e.contains("contents do not match"), "{e}");
        // Restoring the bytes (new stats) re-digests once and is trusted again.
        std::fs::write(dir.join("a.txt"), b"abc").unwrap();
        store.check(&digest).unwrap();
        // A lying fingerprint file only costs a re-digest.
        std::fs::write(dir.join(VERIFIED), "0".repeat(64)).unwrap();
        store.check(&digest).unwrap();
    }

    /// A digest the stage declared for a file it wrote is what commit records while the file's
    /// stats are unchanged (no second read); once the file changed it is digested anew. The
    /// declaration never becomes part of the object.
    #[test]
    fn a_declared_digest_is_used_only_while_the_file_is_unchanged() {
        let (_d, store) = store();
        let committed = |bytes: &[u8], declared: &[u8], edit: Option<&[u8]>| {
            let out = store.begin("s").unwrap();
            std::fs::write(out.dir.join("a.u8"), bytes).unwrap();
            let d = blake3::hash(declared).to_hex().to_string();
            declare_digest(&out.dir, "a.u8", &d).unwrap();
            if let Some(e) = edit {
                std::thread::sleep(std::time::Duration::from_millis(10));
                std::fs::write(out.dir.join("a.u8"), e).unwrap();
            }
            let digest = store.commit(out, "s", &key()).unwrap();
            assert!(!store.object_dir(&digest).join(DIGESTED).exists());
            store.manifest(&digest).unwrap().files[0].blake3.clone()
        };
        let h = |b: &[u8]| blake3::hash(b).to_hex().to_string();
        assert_eq!(committed(b"abc", b"abc", None), h(b"abc"));
        // Trusted as declared: proof that commit did not read the file again.
        assert_eq!(committed(b"xyz", b"not xyz", None), h(b"not xyz"));
        // Written again after the declaration (same size): digested from its bytes.
        assert_eq!(committed(b"uvw", b"uvw", Some(b"UVW")), h(b"UVW"));
        let e = declare_digest(Path::new("."), "a.u8", "nope").unwrap_err();
        assert!(e.to_string().contains(DIGESTED), "{e}");
    }

    #[test]
    fn old_manifests_keep_their_digest_and_refs_are_not_digested() {
        let entry = ManifestEntry {
            path: "a".into(),
            size: 1,
            blake3: "ab".repeat(32),
        };
        let plain = Manifest {
            files: vec![entry.clone()],
            refs: vec![],
        };
        let legacy = format!(
            r#"{{"files":[{{"path":"a","size":1,"blake3":"{}"}}]}}"#,
            "ab".repeat(32)
        );
        assert_eq!(
            plain.digest(),
            blake3::hash(legacy.as_bytes()).to_hex().to_string()
        );
        let with_refs = Manifest {
            files: vec![entry],
            refs: vec!["cd".repeat(32)],
        };
        assert_eq!(plain.digest(), with_refs.digest());
    }

    #[test]
    fn a_hostile_stage_id_stays_inside_tmp() {
        let (d, store) = store();
        let victim = d.path().join("victim2");
        std::fs::create_dir(&victim).unwrap();
        std::fs::write(victim.join("keep"), b"x").unwrap();
        for id in [
            "../../../../../victim2",
            "../victim2",
            "/",
            "",
            " ",
            "a/../../b",
        ] {
            let out = store.begin(id).unwrap();
            assert_eq!(out.dir.parent().unwrap(), store.root.join("tmp"), "{id}");
            drop(out);
        }
        assert!(victim.join("keep").exists());
    }

    #[test]
    fn digests_read_from_key_files_and_manifests_are_validated() {
        let (d, store) = store();
        let victim = d.path().join("victim3");
        std::fs::create_dir(&victim).unwrap();
        std::fs::write(victim.join(MANIFEST), br#"{"files": []}"#).unwrap();
        let k = key().digest();
        let kfile = store.key_file(&k);
        std::fs::create_dir_all(kfile.parent().unwrap()).unwrap();
        let entry = serde_json::json!({"digest": "../../victim3", "stage": "s", "key": key()});
        std::fs::write(&kfile, entry.to_string()).unwrap();
        assert!(matches!(store.lookup(&k), Lookup::Miss));
        for bad in ["../../victim3", "..", "", "é"] {
            assert!(store.remove_object(bad).is_err(), "{bad}");
            assert!(
                store
                    .object_dir(bad)
                    .starts_with(store.root.join("objects"))
            );
        }
        assert!(victim.join(MANIFEST).exists());
        let obj = store.root.join("objects/x");
        std::fs::create_dir_all(&obj).unwrap();
        std::fs::write(
            obj.join(MANIFEST),
            format!(
                r#"{{"files":[{{"path":"../../../victim3/{MANIFEST}","size":1,"blake3":"{}"}}]}}"#,
                "ab".repeat(32)
            ),
        )
        .unwrap();
        let e = Manifest::read(&obj).unwrap_err().to_string();
        assert!(e.contains("leaves the object"), "{e}");
    }

    #[test]
    fn removing_never_follows_a_linked_shard() {
        let (d, store) = store();
        let digest = commit_one(&store, b"abc");
        let outside = d.path().join("outside");
        let shard = store.object_dir(&digest).parent().unwrap().to_path_buf();
        std::fs::rename(&shard, &outside).unwrap();
        std::os::unix::fs::symlink(&outside, &shard).unwrap();
        store.remove_object(&digest).unwrap_err();
        assert!(outside.join(&digest).join("a.txt").exists());
        // A commit replaces the link by a real shard, leaving its target alone.
        let out = store.begin("s").unwrap();
        std::fs::write(out.dir.join("a.txt"), b"abc").unwrap();
        assert_eq!(store.commit(out, "s", &key()).unwrap(), digest);
        assert!(std::fs::symlink_metadata(&shard).unwrap().is_dir());
        assert!(outside.join(&digest).join("a.txt").exists());
        // So does a link in place of the object itself.
        let obj = store.object_dir(&digest);
        std::fs::remove_dir_all(&obj).unwrap();
        std::os::unix::fs::symlink(outside.join(&digest), &obj).unwrap();
        assert!(store.lookup(&key().digest()).hit().is_none());
        let out = store.begin("s").unwrap();
        std::fs::write(out.dir.join("a.txt"), b"abc").unwrap();
        store.commit(out, "s", &key()).unwrap();
        assert!(std::fs::symlink_metadata(&obj).unwrap().is_dir());
        assert!(outside.join(&digest).join("a.txt").exists());
    }

    #[test]
    fn refs_are_recorded_resolved_and_checked() {
        let (_d, store) = store();
        let member = commit_one(&store, b"weights");
        let out = store.begin("ens").unwrap();
        std::fs::write(out.dir.join("e.json"), member.as_bytes()).unwrap();
        declare_refs(&out.dir, std::slice::from_ref(&member)).unwrap();
        let mut k = key();
        k.kind = "ensemble".into();
        let ens = store.commit(out, "ens", &k).unwrap();
        let ens_dir = store.object_dir(&ens);
        assert!(!ens_dir.join(REFS).exists());
        assert_eq!(
            store.manifest(&ens).unwrap().refs,
            std::slice::from_ref(&member)
        );
        assert_eq!(
            store.resolve_ref(&ens_dir, &member).unwrap(),
            store.object_dir(&member)
        );
        let other = "ef".repeat(32);
        let e = store.resolve_ref(&ens_dir, &other).unwrap_err().to_string();
        assert!(e.contains("not among this object's refs"), "{e}");
        // A damaged member is never used: removed, with a message saying what happens next.
        std::fs::write(store.object_dir(&member).join("a.txt"), b"weightz").unwrap();
        let e = store
            .resolve_ref(&ens_dir, &member)
            .unwrap_err()
            .to_string();
        assert!(e.contains("next run rebuilds"), "{e}");
        assert!(!store.object_dir(&member).exists());
        assert!(declare_refs(&ens_dir, &["../x".to_string()]).is_err());
    }

    #[test]
    fn an_uncommitted_output_is_removed() {
        let (_d, store) = store();
        let out = store.begin("s").unwrap();
        let p = out.dir.clone();
        drop(out);
        assert!(!p.exists());
    }

    /// A full disk (writes to /dev/full fail with ENOSPC) while committing is an I/O error and
    /// leaves no half entry: either no object and no key, or a whole object without a key.
    #[test]
    fn a_full_disk_while_committing_leaves_no_half_entry() {
        let (_d, store) = store();
        let out = store.begin("s").unwrap();
        let tmp = out.dir.clone();
        std::fs::write(out.dir.join("a.txt"), b"abc").unwrap();
        std::os::unix::fs::symlink("/dev/full", out.dir.join(MANIFEST)).unwrap();
        let e = store.commit(out, "s", &key()).unwrap_err();
        assert!(matches!(&e, StoreError::Io { source, .. } if source.raw_os_error() == Some(28)));
        assert!(!e.is_user_error());
        assert!(!tmp.exists(), "the temporary output is removed");
        assert!(store.lookup(&key().digest()).hit().is_none());
        assert_eq!(dir_size(&store.root.join("objects")), 0);

        // Full disk at the key file: the object is whole, no key (nor temporary key) exists.
        let kfile = store.key_file(&key().digest());
        std::fs::create_dir_all(kfile.parent().unwrap()).unwrap();
        let ktmp = kfile.with_extension(format!("tmp{}", std::process::id()));
        std::os::unix::fs::symlink("/dev/full", &ktmp).unwrap();
        let out = store.begin("s").unwrap();
        std::fs::write(out.dir.join("a.txt"), b"abc").unwrap();
        let e = store.commit(out, "s", &key()).unwrap_err();
        assert!(matches!(&e, StoreError::Io { source, .. } if source.raw_os_error() == Some(28)));
        assert!(!kfile.exists() && std::fs::symlink_metadata(&ktmp).is_err());
        let objects: Vec<_> = std::fs::read_dir(store.root.join("objects"))
            .unwrap()
            .flatten()
            .flat_map(|s| std::fs::read_dir(s.path()).unwrap().flatten())
            .collect();
        assert_eq!(objects.len(), 1);
        let digest = objects[0].file_name().to_string_lossy().into_owned();
        store.verify(&digest).unwrap();
    }
}
