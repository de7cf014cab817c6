//! The two file rules every layer of pipe shares, written once: a file is replaced whole or not
//! at all ([`write_atomic`]: a temporary file beside it, then a rename), and a name taken from
//! user text stays a plain file-name fragment ([`safe_name`]). The bottom of the workspace: no
//! dependency, so the cache, the data layer and the ML layer can all use it.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// How [`write_atomic`] names its temporary file: the file's extension replaced by one that
/// marks it as a leftover of a killed pipe ([`is_temp_extension`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temp {
    /// `key.tmp4242`, for files several processes (Slurm jobs sharing a cache) may replace at
    /// once — the cache's own files: the process id keeps processes apart, and a thread that
    /// writes the same file while another thread of the process does gets `key.tmp4242-1`.
    Unique,
    /// `model-00001.tmp`, for a directory this writer alone writes into (a stage's work or
    /// output directory); a leftover of a killed run is overwritten.
    Beside,
}

/// The temporary paths of this process being written, so two threads never share one.
static IN_FLIGHT: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// A temporary path reserved in [`IN_FLIGHT`] until dropped.
struct Reserved(PathBuf);

impl Drop for Reserved {
    fn drop(&mut self) {
        IN_FLIGHT
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.0);
    }
}

/// The temporary name [`write_atomic`] writes `path` under (see [`Temp`]).
pub fn temp_path(path: &Path, temp: Temp) -> PathBuf {
    reserve(path, temp).0.clone()
}

fn reserve(path: &Path, temp: Temp) -> Reserved {
    let pid = std::process::id();
    let mut in_flight = IN_FLIGHT.lock().unwrap_or_else(PoisonError::into_inner);
    let mut tmp = match temp {
        Temp::Unique => path.with_extension(format!("tmp{pid}")),
        Temp::Beside => path.with_extension("tmp"),
    };
    let mut n = 1;
    while in_flight.contains(&tmp) {
        tmp = path.with_extension(format!("tmp{pid}-{n}"));
        n += 1;
    }
    in_flight.insert(tmp.clone());
    Reserved(tmp)
}

/// Whether `extension` is one [`temp_path`] gives: `tmp`, `tmp<pid>` or `tmp<pid>-<n>`.
pub fn is_temp_extension(extension: &str) -> bool {
    let Some(rest) = extension.strip_prefix("tmp") else {
        return false;
    };
    rest.is_empty()
        || rest.split('-').count() <= 2
            && rest
                .split('-')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Writes `bytes` to `path` through a temporary file beside it and a rename: a reader (or a
/// pipe killed midway) sees the old file or the new one, never a part. On failure the
/// temporary file is removed and the error returned.
pub fn write_atomic(path: &Path, bytes: &[u8], temp: Temp) -> std::io::Result<()> {
    write_atomic_with(path, temp, |w| w.write_all(bytes))
}

/// [`write_atomic`] for content produced by `write` (buffered), e.g. a long listing.
pub fn write_atomic_with(
    path: &Path,
    temp: Temp,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let reserved = reserve(path, temp);
    let tmp = &reserved.0;
    let res = (|| {
        let mut w = std::io::BufWriter::new(std::fs::File::create(tmp)?);
        write(&mut w)?;
        w.into_inner().map_err(|e| e.into_error())?;
        std::fs::rename(tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    res
}

/// `name` as a file-name fragment of at most `max` characters: ASCII letters, digits, `_` and
/// `-` kept, anything else `_`. Ids are validated elsewhere; this keeps a path inside its
/// directory whatever it is given.
pub fn safe_name(name: &str, max: usize) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(max)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_file_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key.json");
        write_atomic(&p, b"old", Temp::Unique).unwrap();
        write_atomic(&p, b"new", Temp::Beside).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        let fail = |_: &mut dyn Write| Err(std::io::Error::other("disk full"));
        let e = write_atomic_with(&p, Temp::Unique, fail).unwrap_err();
        assert_eq!(e.to_string(), "disk full");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // Into a directory that does not exist: the error, and nothing created.
        assert!(write_atomic(&dir.path().join("no/such/f"), b"x", Temp::Beside).is_err());
    }

    #[test]
    fn temporary_names_are_recognised() {
        for temp in [Temp::Unique, Temp::Beside] {
            let t = temp_path(Path::new("runs/a.json"), temp);
            let ext = t.extension().unwrap().to_str().unwrap();
            assert!(is_temp_extension(ext), "{t:?}");
        }
        let pid = std::process::id();
        let k = Path::new("k.json");
        assert_eq!(
            temp_path(k, Temp::Unique),
            Path::new(&format!("k.tmp{pid}"))
        );
        // While one thread writes `k.json`, another gets a name of its own.
        let first = reserve(k, Temp::Unique);
        assert_eq!(
            temp_path(k, Temp::Unique),
            Path::new(&format!("k.tmp{pid}-1"))
        );
        drop(first);
        let m = temp_path(Path::new(".manifest.json"), Temp::Unique);
        assert_eq!(m.file_stem().unwrap(), ".manifest");
        let v = temp_path(Path::new(".verified"), Temp::Unique);
        assert!(v.to_str().unwrap().starts_with(".verified.tmp"));
        assert_eq!(
            temp_path(Path::new("m-1.bpk"), Temp::Beside),
            Path::new("m-1.tmp")
        );
        assert!(is_temp_extension("tmp"));
        assert!(is_temp_extension("tmp42"));
        for no in ["json", "tmpx", "tmp1-", "tmp1-2-3", "tm"] {
            assert!(!is_temp_extension(no), "{no}");
        }
    }

    #[test]
    fn names_stay_in_their_directory() {
        assert_eq!(safe_name("../../etc/passwd", 60), "______etc_passwd");
        assert_eq!(safe_name("train_b3-x", 60), "train_b3-x");
        assert_eq!(safe_name(&"a".repeat(100), 40).len(), 40);
    }
}
