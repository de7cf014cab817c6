//! Digests of external (source) files, remembered by (path, size, mtime, ctime, inode) so an
//! unchanged 100k-file folder costs one `stat` per file, not one read.
//!
//! Stored as one line per file (`digest size mtime_ns ctime_ns inode path`): a hand-written
//! format because parsing 116k JSON objects on every no-op run costs more than the stats.

use rayon::prelude::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stat {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    inode: u64,
}

impl Stat {
    fn of(meta: &std::fs::Metadata) -> Self {
        Stat {
            size: meta.len(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
            inode: meta.ino(),
        }
    }
}

#[derive(Default)]
pub struct StatCache {
    path: PathBuf,
    entries: BTreeMap<PathBuf, (Stat, String)>,
    dirty: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct FileError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl StatCache {
    pub fn load(root: &Path) -> Self {
        let path = root.join("stat-cache.txt");
        let mut entries = BTreeMap::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines() {
                let mut parts = line.splitn(6, ' ');
                let (Some(d), Some(s), Some(m), Some(c), Some(i), Some(p)) = (
                    parts.next(),
                    parts.next(),
                    parts.next(),
                    parts.next(),
                    parts.next(),
                    parts.next(),
                ) else {
                    continue;
                };
                let (Ok(size), Ok(mtime_ns), Ok(ctime_ns), Ok(inode)) =
                    (s.parse(), m.parse(), c.parse(), i.parse())
                else {
                    continue;
                };
                entries.insert(
                    PathBuf::from(p),
                    (
                        Stat {
                            size,
                            mtime_ns,
                            ctime_ns,
                            inode,
                        },
                        d.to_string(),
                    ),
                );
            }
        }
        StatCache {
            path,
            entries,
            dirty: false,
        }
    }

    /// Writes the cache back (temp file + rename) if anything changed.
    pub fn save(&mut self) -> std::io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let tmp = self
            .path
            .with_extension(format!("tmp{}", std::process::id()));
        {
            let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            for (p, (s, d)) in &self.entries {
                if let Some(ps) = p.to_str().filter(|s| !s.contains('\n')) {
                    writeln!(
                        w,
                        "{d} {} {} {} {} {ps}",
                        s.size, s.mtime_ns, s.ctime_ns, s.inode
                    )?;
                }
            }
            w.flush()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        self.dirty = false;
        Ok(())
    }

    /// One digest over `files` (in the given order) and their names relative to `base`.
    pub fn digest_files(&mut self, base: &Path, files: &[PathBuf]) -> Result<String, FileError> {
        let abs: Vec<PathBuf> = files
            .iter()
            .map(|f| std::path::absolute(f).unwrap_or_else(|_| f.clone()))
            .collect();
        let entries = &self.entries;
        let results: Vec<Result<(Stat, String, bool), FileError>> = abs
            .par_iter()
            .map(|p| {
                let err = |source| FileError {
                    path: p.clone(),
                    source,
                };
                let meta = match std::fs::metadata(p) {
                    Ok(m) => m,
                    // The stage itself reports missing files, all of them, with their lines.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Ok((
                            Stat {
                                size: 0,
                                mtime_ns: 0,
                                ctime_ns: 0,
                                inode: 0,
                            },
                            "missing".into(),
                            false,
                        ));
                    }
                    Err(e) => return Err(err(e)),
                };
                let stat = Stat::of(&meta);
                if let Some((s, d)) = entries.get(p)
                    && *s == stat
                {
                    return Ok((stat, d.clone(), false));
                }
                let mut h = blake3::Hasher::new();
                if stat.size > 16 << 20 {
                    h.update_mmap_rayon(p).map_err(err)?;
                } else {
                    h.update(&std::fs::read(p).map_err(err)?);
                }
                Ok((stat, h.finalize().to_hex().to_string(), true))
            })
            .collect();
        let mut combined = blake3::Hasher::new();
        for ((file, p), r) in files.iter().zip(&abs).zip(results) {
            let (stat, digest, fresh) = r?;
            let rel = file.strip_prefix(base).unwrap_or(file);
            combined.update(rel.to_string_lossy().as_bytes());
            combined.update(b"\0");
            combined.update(digest.as_bytes());
            combined.update(b"\n");
            if fresh {
                self.entries.insert(p.clone(), (stat, digest));
                self.dirty = true;
            }
        }
        Ok(combined.finalize().to_hex().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touch_keeps_digest_and_edit_changes_it() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.bin");
        std::fs::write(&f, b"hello").unwrap();
        let mut sc = StatCache::load(dir.path());
        let d1 = sc
            .digest_files(dir.path(), std::slice::from_ref(&f))
            .unwrap();
        sc.save().unwrap();
        let mut sc = StatCache::load(dir.path());
        std::fs::write(&f, b"hello").unwrap(); // same bytes, new mtime
        assert_eq!(
            sc.digest_files(dir.path(), std::slice::from_ref(&f))
                .unwrap(),
            d1
        );
        std::fs::write(&f, b"hellO").unwrap();
        assert_ne!(
            sc.digest_files(dir.path(), std::slice::from_ref(&f))
                .unwrap(),
            d1
        );
    }
}
