//! Objects, keys and the commit protocol: a stage writes into `tmp/…`; on success its files are
//! digested into a manifest and the directory is renamed to `objects/ab/<digest>`; only then is
//! the key file (temp + rename) written. A crash at any point leaves either no entry or a whole
//! one; leftovers in `tmp/` are removed by the next run.

use super::key::StageKey;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub const MANIFEST: &str = ".manifest.json";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Corrupt { path: PathBuf, message: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub path: String,
    pub size: u64,
    pub blake3: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub files: Vec<ManifestEntry>,
}

impl Manifest {
    pub fn digest(&self) -> String {
        blake3::hash(&serde_json::to_vec(self).expect("manifest serialises"))
            .to_hex()
            .to_string()
    }
}

/// What `keys/ab/<key>.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyEntry {
    pub digest: String,
    pub stage: String,
    pub key: StageKey,
}

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

fn hash_file(path: &Path) -> Result<(u64, String), StoreError> {
    let mut h = blake3::Hasher::new();
    let size = std::fs::metadata(path).map_err(io(path))?.len();
    if size > 16 << 20 {
        h.update_mmap_rayon(path).map_err(io(path))?;
    } else {
        h.update(&std::fs::read(path).map_err(io(path))?);
    }
    Ok((size, h.finalize().to_hex().to_string()))
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<(), StoreError> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        if entry.file_type().map_err(io(dir))?.is_dir() {
            walk(&entry.path(), &rel, out)?;
        } else if rel != MANIFEST {
            out.push(rel);
        }
    }
    Ok(())
}

impl Store {
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        for sub in ["objects", "keys", "runs", "tmp", "work"] {
            let p = root.join(sub);
            std::fs::create_dir_all(&p).map_err(io(&p))?;
        }
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    pub fn object_dir(&self, digest: &str) -> PathBuf {
        self.root.join("objects").join(&digest[..2]).join(digest)
    }

    fn key_file(&self, key: &str) -> PathBuf {
        self.root
            .join("keys")
            .join(&key[..2])
            .join(format!("{key}.json"))
    }

    pub fn work_dir(&self, key: &str) -> PathBuf {
        self.root.join("work").join(key)
    }

    /// The committed output of `key`, if its object is present and its files look intact
    /// (existence and sizes; full digests are checked by [`Store::verify`] before use).
    pub fn lookup(&self, key: &str) -> Option<KeyEntry> {
        let text = std::fs::read(self.key_file(key)).ok()?;
        let entry: KeyEntry = serde_json::from_slice(&text).ok()?;
        let manifest = self.manifest(&entry.digest).ok()?;
        let dir = self.object_dir(&entry.digest);
        let intact = manifest.files.iter().all(|f| {
            std::fs::metadata(dir.join(&f.path))
                .map(|m| m.len() == f.size)
                .unwrap_or(false)
        });
        intact.then_some(entry)
    }

    pub fn manifest(&self, digest: &str) -> Result<Manifest, StoreError> {
        let p = self.object_dir(digest).join(MANIFEST);
        let bytes = std::fs::read(&p).map_err(io(&p))?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            path: p,
            message: e.to_string(),
        })
    }

    /// Re-digests every file of an object against its manifest.
    pub fn verify(&self, digest: &str) -> Result<(), StoreError> {
        let manifest = self.manifest(digest)?;
        let dir = self.object_dir(digest);
        if manifest.digest() != digest {
            return Err(StoreError::Corrupt {
                path: dir,
                message: "manifest does not match the object's digest".into(),
            });
        }
        manifest.files.par_iter().try_for_each(|f| {
            let p = dir.join(&f.path);
            let (size, d) = hash_file(&p)?;
            if size != f.size || d != f.blake3 {
                return Err(StoreError::Corrupt {
                    path: p,
                    message: "contents do not match the recorded digest".into(),
                });
            }
            Ok(())
        })
    }

    /// Deletes an object (a corrupt one, or by `gc`): renamed away first so readers never see half of it.
    pub fn remove_object(&self, digest: &str) -> Result<(), StoreError> {
        let dir = self.object_dir(digest);
        if !dir.exists() {
            return Ok(());
        }
        let trash = self
            .root
            .join("tmp")
            .join(format!("trash-{digest}-{}", std::process::id()));
        std::fs::rename(&dir, &trash).map_err(io(&dir))?;
        std::fs::remove_dir_all(&trash).map_err(io(&trash))
    }

    /// A fresh temporary output directory.
    pub fn begin(&self, stage: &str) -> Result<TempOut, StoreError> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = self
            .root
            .join("tmp")
            .join(format!("{}-{n}-{stage}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
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
        let entries: Vec<ManifestEntry> = files
            .par_iter()
            .map(|rel| {
                let (size, blake3) = hash_file(&out.dir.join(rel))?;
                Ok(ManifestEntry {
                    path: rel.clone(),
                    size,
                    blake3,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        let manifest = Manifest { files: entries };
        let digest = manifest.digest();
        let mpath = out.dir.join(MANIFEST);
        std::fs::write(
            &mpath,
            serde_json::to_vec_pretty(&manifest).expect("serialises"),
        )
        .map_err(io(&mpath))?;
        let target = self.object_dir(&digest);
        if target.exists() && self.verify(&digest).is_err() {
            self.remove_object(&digest)?;
        }
        if target.exists() {
            // Identical bytes already stored (another key produced them): keep that copy.
            drop(out);
        } else {
            let parent = target.parent().expect("object dirs have a parent");
            std::fs::create_dir_all(parent).map_err(io(parent))?;
            std::fs::rename(&out.dir, &target).map_err(io(&target))?;
            out.committed = true;
        }
        let entry = KeyEntry {
            digest: digest.clone(),
            stage: stage.to_string(),
            key: key.clone(),
        };
        let kpath = self.key_file(&key.digest());
        let parent = kpath.parent().expect("key files have a parent");
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        let tmp = kpath.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, serde_json::to_vec_pretty(&entry).expect("serialises"))
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, &kpath).map_err(io(&kpath))?;
        Ok(digest)
    }

    /// Removes leftovers of interrupted runs (only call while holding the cache lock).
    pub fn clean_tmp(&self) -> u64 {
        let mut freed = 0;
        if let Ok(rd) = std::fs::read_dir(self.root.join("tmp")) {
            for e in rd.flatten() {
                freed += dir_size(&e.path());
                let _ =
                    std::fs::remove_dir_all(e.path()).or_else(|_| std::fs::remove_file(e.path()));
            }
        }
        freed
    }
}

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

    #[test]
    fn commit_lookup_verify_and_detect_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let out = store.begin("s").unwrap();
        std::fs::write(out.dir.join("a.txt"), b"abc").unwrap();
        let digest = store.commit(out, "s", &key()).unwrap();
        let hit = store.lookup(&key().digest()).unwrap();
        assert_eq!(hit.digest, digest);
        store.verify(&digest).unwrap();
        std::fs::write(store.object_dir(&digest).join("a.txt"), b"abd").unwrap();
        assert!(store.verify(&digest).is_err());
        std::fs::write(store.object_dir(&digest).join("a.txt"), b"ab").unwrap();
        assert!(
            store.lookup(&key().digest()).is_none(),
            "size change is a miss"
        );
    }

    #[test]
    fn an_uncommitted_output_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let out = store.begin("s").unwrap();
        let p = out.dir.clone();
        drop(out);
        assert!(!p.exists());
    }
}
