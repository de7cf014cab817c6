//! Digests of external (source) files, remembered by (path, size, mtime, ctime, inode) so an
//! unchanged 100k-file folder costs one `stat` per file, not one read.
//!
//! Two levels: `stat-lists.txt` maps a fingerprint of a whole file list (every path with its
//! stat) to the list's combined digest, so an unchanged folder costs the stats plus one small
//! lookup; `stat-cache.txt` holds one line per file (`digest size mtime_ns ctime_ns inode
//! path`) and is parsed only when a list changed. Hand-written line formats: parsing 116k JSON
//! objects on every no-op run would cost more than the stats.
//!
//! Racy files: a file changed within one timestamp tick of being stat'ed keeps its stat, so a
//! digest read right after the stat could be remembered for bytes the file no longer holds
//! (git's "racy clean" problem). A digest is therefore remembered only for a file whose ctime
//! lies at least [`RACY_WINDOW_NS`] before the stat (ctime cannot be set back by a user, unlike
//! mtime): any later change gives the file a newer ctime, so the entry no longer matches.
//! A file changed after the key was computed is caught by the stage that reads it (sources
//! digest what they store and compare it with the key).

use rayon::prelude::*;
use std::collections::BTreeMap;
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

    fn of_rustix(st: &rustix::fs::Stat) -> Self {
        Stat {
            size: u64::try_from(st.st_size).unwrap_or_default(),
            mtime_ns: i128::from(st.st_mtime) * 1_000_000_000 + i128::from(st.st_mtime_nsec),
            ctime_ns: i128::from(st.st_ctime) * 1_000_000_000 + i128::from(st.st_ctime_nsec),
            inode: st.st_ino,
        }
    }

    /// A missing file: the stage itself reports it (all of them, with their lines).
    const MISSING: Stat = Stat {
        size: 0,
        mtime_ns: 0,
        ctime_ns: 0,
        inode: 0,
    };
}

/// How long before the stat a file's last change must lie for its digest to be remembered:
/// well above the coarsest timestamp granularity of common file systems (FAT: 2 s).
pub const RACY_WINDOW_NS: i128 = 3_000_000_000;

/// The wall clock in nanoseconds since the epoch (the time base of ctime).
fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// The digest of one role's files, from each file's digest (hex, or `missing`) and its path
/// relative to `base`: what the key records, and what a source recomputes from the bytes it
/// stores.
pub fn combine<'a>(base: &Path, files: impl IntoIterator<Item = (&'a Path, &'a str)>) -> String {
    let mut combined = blake3::Hasher::new();
    for (file, digest) in files {
        let rel = file.strip_prefix(base).unwrap_or(file);
        combined.update(rel.to_string_lossy().as_bytes());
        combined.update(b"\0");
        combined.update(digest.as_bytes());
        combined.update(b"\n");
    }
    combined.finalize().to_hex().to_string()
}

#[derive(Default)]
pub struct StatCache {
    path: PathBuf,
    lists_path: PathBuf,
    entries: BTreeMap<PathBuf, (Stat, String)>,
    lists: BTreeMap<String, String>,
    loaded: bool,
    dirty: bool,
    /// [`RACY_WINDOW_NS`]; tests shorten it to exercise remembered digests.
    racy_ns: i128,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct FileError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

fn parse_entry(line: &str) -> Option<(PathBuf, (Stat, String))> {
    let mut parts = line.splitn(6, ' ');
    let d = parts.next()?;
    let size = parts.next()?.parse().ok()?;
    let mtime_ns = parts.next()?.parse().ok()?;
    let ctime_ns = parts.next()?.parse().ok()?;
    let inode = parts.next()?.parse().ok()?;
    let p = parts.next()?;
    Some((
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
    ))
}

/// The blake3 digest (hex) of the file at `path` of about `size` bytes. Large files are read
/// in chunks hashed on all cores rather than mapped: a file truncated while mapped would kill
/// the process (SIGBUS).
fn hash_file(path: &Path, size: u64) -> std::io::Result<String> {
    use std::io::Read;
    let mut h = blake3::Hasher::new();
    if size > 16 << 20 {
        let mut f = std::fs::File::open(path)?;
        let mut buf = vec![0u8; 8 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update_rayon(&buf[..n]);
        }
    } else {
        h.update(&std::fs::read(path)?);
    }
    Ok(h.finalize().to_hex().to_string())
}

/// Stats every file; files sharing a directory are stat'ed relative to one directory handle
/// (`fstatat`), which saves the kernel a full path walk per file on large folders.
fn stat_all(abs: &[PathBuf]) -> Result<Vec<Stat>, FileError> {
    use rustix::fs::{AtFlags, Mode, OFlags};
    let one = |p: &PathBuf, dir: Option<&rustix::fd::OwnedFd>| -> Result<Stat, FileError> {
        let res: std::io::Result<Stat> = match (dir, p.file_name()) {
            (Some(fd), Some(name)) => rustix::fs::statat(fd, name, AtFlags::empty())
                .map(|st| Stat::of_rustix(&st))
                .map_err(std::io::Error::from),
            _ => std::fs::metadata(p).map(|m| Stat::of(&m)),
        };
        match res {
            Ok(s) => Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Stat::MISSING),
            Err(source) => Err(FileError {
                path: p.clone(),
                source,
            }),
        }
    };
    abs.par_chunks(2048)
        .map(|chunk| {
            let mut dir: Option<(&Path, rustix::fd::OwnedFd)> = None;
            chunk
                .iter()
                .map(|p| {
                    let parent = p.parent().unwrap_or(Path::new("/"));
                    if dir.as_ref().is_none_or(|(d, _)| *d != parent) {
                        dir = rustix::fs::open(
                            parent,
                            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                            Mode::empty(),
                        )
                        .ok()
                        .map(|fd| (parent, fd));
                    }
                    one(p, dir.as_ref().map(|(_, fd)| fd))
                })
                .collect::<Result<Vec<Stat>, FileError>>()
        })
        .collect::<Result<Vec<Vec<Stat>>, FileError>>()
        .map(|v| v.into_iter().flatten().collect())
}

impl StatCache {
    pub fn load(root: &Path) -> Self {
        let lists_path = root.join("stat-lists.txt");
        let lists = std::fs::read_to_string(&lists_path)
            .map(|t| {
                t.lines()
                    .filter_map(|l| l.split_once(' '))
                    .map(|(f, d)| (f.to_string(), d.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        StatCache {
            path: root.join("stat-cache.txt"),
            lists_path,
            lists,
            racy_ns: RACY_WINDOW_NS,
            ..Default::default()
        }
    }

    /// Whether a file with stat `s`, stat'ed at `now`, changed too recently for its digest to
    /// be remembered (see the module documentation).
    fn racy(&self, s: &Stat, now: i128) -> bool {
        s.ctime_ns > now - self.racy_ns
    }

    /// Parses the per-file table on first need.
    fn load_entries(&mut self) {
        if !self.loaded {
            self.loaded = true;
            if let Ok(text) = std::fs::read_to_string(&self.path) {
                self.entries = text.lines().filter_map(parse_entry).collect();
            }
        }
    }

    /// Writes the cache back (temp files + rename) if anything changed.
    pub fn save(&mut self) -> std::io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        if self.loaded {
            let entries = &self.entries;
            pipe_fs::write_atomic_with(&self.path, pipe_fs::Temp::Unique, |w| {
                for (p, (s, d)) in entries {
                    if let Some(ps) = p.to_str().filter(|s| !s.contains('\n')) {
                        writeln!(
                            w,
                            "{d} {} {} {} {} {ps}",
                            s.size, s.mtime_ns, s.ctime_ns, s.inode
                        )?;
                    }
                }
                Ok(())
            })?;
        }
        let lists = &self.lists;
        pipe_fs::write_atomic_with(&self.lists_path, pipe_fs::Temp::Unique, |w| {
            for (f, d) in lists {
                writeln!(w, "{f} {d}")?;
            }
            Ok(())
        })?;
        self.dirty = false;
        Ok(())
    }

    /// One digest over `files` (in the given order) and their names relative to `base`.
    pub fn digest_files(&mut self, base: &Path, files: &[PathBuf]) -> Result<String, FileError> {
        let cwd = std::env::current_dir().unwrap_or_default();
        let abs: Vec<PathBuf> = files
            .par_iter()
            .map(|f| {
                if f.is_absolute() {
                    f.clone()
                } else {
                    cwd.join(f)
                }
            })
            .collect();
        let now = now_ns();
        let stats = stat_all(&abs)?;
        let mut fp = blake3::Hasher::new();
        fp.update(base.to_string_lossy().as_bytes());
        for ((f, p), s) in files.iter().zip(&abs).zip(&stats) {
            fp.update(f.to_string_lossy().as_bytes());
            fp.update(p.to_string_lossy().as_bytes());
            fp.update(&s.size.to_le_bytes());
            fp.update(&s.mtime_ns.to_le_bytes());
            fp.update(&s.ctime_ns.to_le_bytes());
            fp.update(&s.inode.to_le_bytes());
            fp.update(b"\n");
        }
        let fingerprint = fp.finalize().to_hex().to_string();
        if let Some(d) = self.lists.get(&fingerprint) {
            return Ok(d.clone());
        }

        self.load_entries();
        let entries = &self.entries;
        let results: Vec<Result<(String, bool), FileError>> = abs
            .par_iter()
            .zip(&stats)
            .map(|(p, stat)| {
                if *stat == Stat::MISSING {
                    return Ok(("missing".to_string(), false));
                }
                if let Some((s, d)) = entries.get(p)
                    && s == stat
                {
                    return Ok((d.clone(), false));
                }
                let err = |source| FileError {
                    path: p.clone(),
                    source,
                };
                Ok((hash_file(p, stat.size).map_err(err)?, true))
            })
            .collect();
        let mut digests = Vec::with_capacity(files.len());
        // The list is remembered only when every file's digest is (no file missing or racy).
        let mut remember_list = true;
        for ((p, stat), r) in abs.iter().zip(stats).zip(results) {
            let (digest, fresh) = r?;
            if stat == Stat::MISSING || self.racy(&stat, now) {
                remember_list = false;
            } else if fresh {
                self.entries.insert(p.clone(), (stat, digest.clone()));
                self.dirty = true;
            }
            digests.push(digest);
        }
        let digest = combine(
            base,
            files
                .iter()
                .map(PathBuf::as_path)
                .zip(digests.iter().map(String::as_str)),
        );
        if remember_list {
            self.lists.insert(fingerprint, digest.clone());
            self.dirty = true;
        }
        Ok(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stat cache that remembers digests of files changed a moment ago (the files of these
    /// tests are all new).
    fn trusting(root: &Path) -> StatCache {
        StatCache {
            racy_ns: 0,
            ..StatCache::load(root)
        }
    }

    #[test]
    fn touch_keeps_digest_and_edit_changes_it() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.bin");
        std::fs::write(&f, b"hello").unwrap();
        let mut sc = trusting(dir.path());
        let d1 = sc
            .digest_files(dir.path(), std::slice::from_ref(&f))
            .unwrap();
        sc.save().unwrap();
        let mut sc = trusting(dir.path());
        assert_eq!(
            sc.digest_files(dir.path(), std::slice::from_ref(&f))
                .unwrap(),
            d1
        );
        assert!(
            !sc.loaded,
            "an unchanged list never reads the per-file table"
        );
        std::fs::write(&f, b"hello").unwrap(); // same bytes, new mtime
        assert_eq!(
            sc.digest_files(dir.path(), std::slice::from_ref(&f))
                .unwrap(),
            d1
        );
        // Distinct timestamps for the edit (the default racy window covers coarser clocks).
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&f, b"hellO").unwrap();
        assert_ne!(
            sc.digest_files(dir.path(), std::slice::from_ref(&f))
                .unwrap(),
            d1
        );
    }

    /// A file rewritten in place right after it was digested (same size, mtime restored) may
    /// keep its whole stat on a file system with coarse timestamps: its digest must not have
    /// been remembered.
    #[test]
    fn a_file_changed_a_moment_ago_is_never_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.bin");
        std::fs::write(&f, b"hello").unwrap();
        let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
        let mut sc = StatCache::load(dir.path());
        let files = std::slice::from_ref(&f);
        let d1 = sc.digest_files(dir.path(), files).unwrap();
        assert!(sc.entries.is_empty() && sc.lists.is_empty() && !sc.dirty);
        let file = std::fs::OpenOptions::new().write(true).open(&f).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, b"J", 0).unwrap();
        file.set_modified(mtime).unwrap();
        drop(file);
        let d2 = sc.digest_files(dir.path(), files).unwrap();
        assert_ne!(d1, d2);
        assert_eq!(
            d2,
            combine(
                dir.path(),
                [(f.as_path(), blake3::hash(b"Jello").to_hex().as_str())]
            )
        );
    }

    /// The key's digest of a role is what a source recomputes from the bytes it stores.
    #[test]
    fn combine_matches_digest_files() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("x/a.png"), dir.path().join("b.png"));
        std::fs::create_dir(dir.path().join("x")).unwrap();
        std::fs::write(&a, b"aaa").unwrap();
        let big = vec![7u8; (16 << 20) + 5];
        std::fs::write(&b, &big).unwrap();
        let missing = dir.path().join("gone.png");
        let files = [a.clone(), b.clone(), missing.clone()];
        let d = StatCache::load(dir.path())
            .digest_files(dir.path(), &files)
            .unwrap();
        let (ha, hb) = (blake3::hash(b"aaa").to_hex(), blake3::hash(&big).to_hex());
        let want = combine(
            dir.path(),
            [
                (a.as_path(), ha.as_str()),
                (b.as_path(), hb.as_str()),
                (missing.as_path(), "missing"),
            ],
        );
        assert_eq!(d, want);
    }
}
