//! What one object directory holds besides the stage's files: the manifest (files, sizes,
//! digests, and the refs to other objects), and the stats of its files when they last matched
//! (`.verified`), which make checking a cache hit cost a few `stat`s.

use super::digest;
use super::error::{StoreError, corrupt, io};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path};

pub const MANIFEST: &str = ".manifest.json";
/// Objects a stage's output refers to, written by the stage through [`declare_refs`]; moved into
/// the manifest's `refs` at commit.
pub const REFS: &str = ".refs.json";
/// Stat fingerprint of the object's files when they last matched the manifest.
pub const VERIFIED: &str = ".verified";
/// Digests a stage computed of files it wrote, each with the file's stats then, written through
/// [`declare_digest`]; commit uses one instead of re-reading the file while its stats are
/// unchanged, then removes the list.
pub const DIGESTED: &str = ".digested.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub path: String,
    pub size: u64,
    #[serde(deserialize_with = "digest::de")]
    pub blake3: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub files: Vec<ManifestEntry>,
    /// Objects this one refers to (an ensemble's members): gc keeps them alive with it, and
    /// [`Store::resolve_ref`] resolves only these. Not digested: the digest is the object's
    /// identity and drives early cutoff; a referring stage also names them in its own files.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "digest::de_vec"
    )]
    pub refs: Vec<String>,
}

impl Manifest {
    /// The object's identity: blake3 over the file list only (as before refs existed, so
    /// objects committed by older versions keep their digests).
    pub fn digest(&self) -> String {
        #[derive(Serialize)]
        struct Digested<'a> {
            files: &'a [ManifestEntry],
        }
        let bytes = serde_json::to_vec(&Digested { files: &self.files })
            .expect("a list of strings and numbers serialises");
        blake3::hash(&bytes).to_hex().to_string()
    }

    /// Reads `dir/.manifest.json`; every file path must stay inside `dir`.
    pub fn read(dir: &Path) -> Result<Self, StoreError> {
        let p = dir.join(MANIFEST);
        let bytes = std::fs::read(&p).map_err(io(&p))?;
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| corrupt(&p, e.to_string()))?;
        for f in &m.files {
            let rel = Path::new(&f.path);
            if f.path.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
                return Err(corrupt(
                    &p,
                    format!("file path {} leaves the object", digest::shown(&f.path)),
                ));
            }
        }
        Ok(m)
    }
}

pub(super) fn hash_file(path: &Path) -> Result<(u64, String), StoreError> {
    let mut h = blake3::Hasher::new();
    let size = std::fs::metadata(path).map_err(io(path))?.len();
    if size > 16 << 20 {
        h.update_mmap_rayon(path).map_err(io(path))?;
    } else {
        h.update(&std::fs::read(path).map_err(io(path))?);
    }
    Ok((size, h.finalize().to_hex().to_string()))
}

/// Files pipe keeps in an object directory besides the stage's own.
fn is_bookkeeping(rel: &str) -> bool {
    rel == MANIFEST
        || rel == REFS
        || rel == VERIFIED
        || rel == DIGESTED
        || rel.starts_with(".verified.tmp")
}

pub(super) fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<(), StoreError> {
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
        } else if !is_bookkeeping(&rel) {
            out.push(rel);
        }
    }
    Ok(())
}

/// Size, times and inode of every file of `m`: equal fingerprints mean untouched files.
pub(super) fn fingerprint(dir: &Path, m: &Manifest) -> Result<String, StoreError> {
    let mut h = blake3::Hasher::new();
    for f in &m.files {
        let p = dir.join(&f.path);
        let meta = std::fs::symlink_metadata(&p).map_err(io(&p))?;
        if meta.len() != f.size {
            return Err(corrupt(
                &p,
                format!("{} bytes, the manifest records {}", meta.len(), f.size),
            ));
        }
        h.update(f.path.as_bytes());
        h.update(b"\0");
        for n in stats(&meta) {
            h.update(&n.to_le_bytes());
        }
    }
    Ok(h.finalize().to_hex().to_string())
}

/// Size, mtime, ctime (nanoseconds) and inode: what a fingerprint records of one file.
fn stats(meta: &std::fs::Metadata) -> [i128; 4] {
    [
        i128::from(meta.len()),
        i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        i128::from(meta.ino()),
    ]
}

#[derive(Serialize, Deserialize)]
struct Digested {
    path: String,
    #[serde(deserialize_with = "digest::de")]
    blake3: String,
    stats: [i128; 4],
}

/// Records that the file `rel` of the output being written in `out` holds bytes of digest
/// `blake3` (computed by the stage from the very bytes it stored, e.g. while copying them), so
/// that commit need not read the file again. Commit trusts it only while the file's size,
/// mtime, ctime and inode are those seen here; the first stage to use the object re-digests it
/// in full as for any other output.
pub fn declare_digest(out: &Path, rel: &str, blake3: &str) -> Result<(), StoreError> {
    let p = out.join(DIGESTED);
    digest::check(blake3).map_err(|e| corrupt(&p, e.to_string()))?;
    let file = out.join(rel);
    let meta = std::fs::symlink_metadata(&file).map_err(io(&file))?;
    let mut list = read_digested(out)?;
    list.retain(|d| d.path != rel);
    list.push(Digested {
        path: rel.to_string(),
        blake3: blake3.to_string(),
        stats: stats(&meta),
    });
    let text = serde_json::to_vec(&list).expect("paths, digests and numbers serialise");
    std::fs::write(&p, text).map_err(io(&p))
}

fn read_digested(out: &Path) -> Result<Vec<Digested>, StoreError> {
    let p = out.join(DIGESTED);
    match std::fs::read(&p) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| corrupt(&p, e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io(&p)(e)),
    }
}

/// Size and digest of every file `rels` of `out`: the declared digest of a file whose stats
/// are unchanged since it was declared, else a fresh digest of its bytes.
pub(super) fn digest_outputs(
    out: &Path,
    rels: &[String],
) -> Result<Vec<ManifestEntry>, StoreError> {
    use rayon::prelude::*;
    let declared = read_digested(out)?;
    rels.par_iter()
        .map(|rel| {
            let p = out.join(rel);
            let known = declared.iter().find(|d| d.path == *rel).and_then(|d| {
                let meta = std::fs::symlink_metadata(&p).ok()?;
                (meta.is_file() && stats(&meta) == d.stats).then(|| (meta.len(), d.blake3.clone()))
            });
            let (size, blake3) = match known {
                Some(k) => k,
                None => hash_file(&p)?,
            };
            Ok(ManifestEntry {
                path: rel.clone(),
                size,
                blake3,
            })
        })
        .collect()
}

/// Remembers that the files of the object in `dir` matched its manifest with these stats.
/// Best effort: without it the next check re-digests.
pub(super) fn record_fingerprint(dir: &Path, fp: &str) {
    let _ = pipe_fs::write_atomic(&dir.join(VERIFIED), fp.as_bytes(), pipe_fs::Temp::Unique);
}

/// Records that the output being written in `out` refers to these objects (validated digests),
/// so they stay alive and resolvable as long as it does.
pub fn declare_refs(out: &Path, digests: &[String]) -> Result<(), StoreError> {
    let p = out.join(REFS);
    for d in digests {
        digest::check(d).map_err(|e| corrupt(&p, e.to_string()))?;
    }
    let mut refs = digests.to_vec();
    refs.sort();
    refs.dedup();
    let text = serde_json::to_vec(&refs).expect("a list of strings serialises");
    std::fs::write(&p, text).map_err(io(&p))
}

pub(super) fn read_refs(out: &Path) -> Result<Vec<String>, StoreError> {
    let p = out.join(REFS);
    match std::fs::read(&p) {
        Ok(bytes) => {
            #[derive(Deserialize)]
            struct Refs(#[serde(deserialize_with = "digest::de_vec")] Vec<String>);
            let Refs(v) = serde_json::from_slice(&bytes).map_err(|e| corrupt(&p, e.to_string()))?;
            Ok(v)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io(&p)(e)),
    }
}

/// The digest of the committed object in `dir` (its identity, from its manifest).
pub fn object_digest(dir: &Path) -> Result<String, StoreError> {
    Manifest::read(dir).map(|m| m.digest())
}
