//! A cache is recognisable: pipe writes `pipe-cache.json` (with a layout version) into every
//! cache it creates, and refuses to treat an existing directory without it as a cache, because
//! `run` empties `tmp/` and `gc` deletes under `objects/` and `keys/`: `--cache ~/data` must not
//! destroy anything.
//!
//! A directory is adopted without a marker only when nothing in it can be lost: it is empty, or
//! holds nothing but files pipe itself writes (`lock`, the stat cache) and a repository's
//! placeholder files (`.gitkeep`, `.gitignore`, a README: a checkout ships `cache/` that way, and
//! pipe never deletes at the cache root, so they are kept), or it is a cache made by a pipe that
//! predates the marker (all five cache directories present, real directories, and nothing else
//! but those files). Adopting writes the marker.

use super::error::StoreError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub const MARKER: &str = "pipe-cache.json";

/// Version of the directory layout (see `cache/mod.rs`); a newer one is refused.
pub const LAYOUT: u32 = 1;

/// The cache's directories, all created by [`super::Store::open`].
pub const SUBDIRS: [&str; 5] = ["objects", "keys", "runs", "tmp", "work"];

/// Files pipe writes at the cache root besides the marker.
const ROOT_FILES: [&str; 3] = ["lock", "stat-cache.txt", "stat-lists.txt"];

/// Placeholder files a repository keeps in an otherwise empty `cache/` (git tracks no empty
/// directory). Only regular files of these names; pipe leaves them where they are.
pub const PLACEHOLDERS: [&str; 6] = [
    ".gitkeep",
    ".keep",
    ".gitignore",
    "README",
    "README.md",
    "README.txt",
];

#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    pipe_cache_layout: u32,
}

/// What a directory given as `--cache` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Does not exist.
    Absent,
    /// Exists and holds nothing pipe could destroy (see the module comment).
    Empty,
    /// Carries a marker of a layout this pipe knows.
    Marked,
    /// A cache of a pipe that predates the marker.
    Legacy,
}

/// Files that pipe writes at the root. Temporary files (left by a killed pipe) are named
/// `stat-cache.tmp<pid>-<n>`, `stat-lists.tmp<pid>-<n>` and `pipe-cache.json.tmp<pid>-<n>`.
fn is_pipe_file(name: &str) -> bool {
    let temp_suffix = |s: &str| {
        !s.is_empty()
            && s.split('-').count() <= 2
            && s.split('-')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    };
    ROOT_FILES.contains(&name)
        || ["stat-cache.tmp", "stat-lists.tmp", "pipe-cache.json.tmp"]
            .iter()
            .any(|p| name.strip_prefix(p).is_some_and(temp_suffix))
}

fn not_a_cache(root: &Path, reason: String) -> StoreError {
    StoreError::NotACache {
        path: root.to_path_buf(),
        reason,
    }
}

fn read_marker(root: &Path) -> Result<Marker, StoreError> {
    let path = root.join(MARKER);
    // A concurrent pipe may be writing it this very moment: an empty or partial marker is
    // read again for a little while before it is called damaged.
    let mut last = String::new();
    for _ in 0..50 {
        let bytes = std::fs::read(&path).map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
        match serde_json::from_slice::<Marker>(&bytes) {
            Ok(m) => return Ok(m),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(StoreError::Corrupt {
        path,
        message: format!("unreadable cache marker: {last}"),
    })
}

fn marked(root: &Path) -> Result<State, StoreError> {
    let m = read_marker(root)?;
    if m.pipe_cache_layout > LAYOUT {
        return Err(not_a_cache(
            root,
            format!(
                "it was made by a newer pipe (cache layout {}, this pipe knows {LAYOUT}); \
                 use that pipe or another --cache",
                m.pipe_cache_layout
            ),
        ));
    }
    Ok(State::Marked)
}

/// Classifies `root` without changing anything.
pub fn inspect(root: &Path) -> Result<State, StoreError> {
    let meta = match std::fs::metadata(root) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::Absent),
        Err(source) => {
            return Err(StoreError::Io {
                path: root.to_path_buf(),
                source,
            });
        }
    };
    if !meta.is_dir() {
        return Err(not_a_cache(root, "it is not a directory".into()));
    }
    if std::fs::symlink_metadata(root.join(MARKER)).is_ok() {
        return marked(root);
    }
    let io = |source| StoreError::Io {
        path: root.to_path_buf(),
        source,
    };
    let mut dirs = 0;
    for entry in std::fs::read_dir(root).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let ft = entry.file_type().map_err(io)?;
        if name == MARKER {
            // Written by a concurrent pipe since the check above.
            return marked(root);
        }
        if SUBDIRS.contains(&&*name) && ft.is_dir() {
            dirs += 1;
        } else if !((is_pipe_file(&name) || PLACEHOLDERS.contains(&&*name)) && ft.is_file()) {
            return Err(not_a_cache(
                root,
                format!(
                    "it is not empty and has no {MARKER}: `{name}` was not made by pipe \
                     (pipe empties and deletes inside its cache, so it only uses a directory \
                     it created; pass a new or empty directory)"
                ),
            ));
        }
    }
    match dirs {
        0 => Ok(State::Empty),
        n if n == SUBDIRS.len() => Ok(State::Legacy),
        _ => Err(not_a_cache(
            root,
            format!(
                "it has some of pipe's directories ({}) but no {MARKER}; pass a new or \
                 empty directory",
                SUBDIRS.join(", ")
            ),
        )),
    }
}

/// Makes sure `root` is a cache: creates it (or adopts an empty or legacy one, writing the
/// marker) or refuses a directory pipe did not make.
pub fn ensure(root: &Path) -> Result<State, StoreError> {
    let state = inspect(root)?;
    if matches!(state, State::Absent | State::Empty | State::Legacy) {
        std::fs::create_dir_all(root).map_err(|source| StoreError::Io {
            path: root.to_path_buf(),
            source,
        })?;
        write_marker(root)?;
        if state == State::Legacy {
            tracing::info!(cache = %root.display(), "adopted a cache made before the cache marker");
        }
    }
    Ok(state)
}

/// Written before any directory of the cache, so a concurrent pipe that sees a directory also
/// sees the marker. The bytes go to a temporary file first and are then hard-linked to the
/// marker's name: the link is atomic and fails if the marker exists, so the first writer wins
/// and a pipe killed at any moment never leaves an empty or partial marker.
fn write_marker(root: &Path) -> Result<(), StoreError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let path: PathBuf = root.join(MARKER);
    let text = serde_json::to_vec(&Marker {
        pipe_cache_layout: LAYOUT,
    })
    .map_err(|e| StoreError::Corrupt {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = root.join(format!("{MARKER}.tmp{}-{n}", std::process::id()));
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| StoreError::Io { path: p, source }
    };
    let linked = std::fs::write(&tmp, &text)
        .map_err(io(&tmp))
        .and_then(|()| match std::fs::hard_link(&tmp, &path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io(&path)(e)),
        });
    let _ = std::fs::remove_file(&tmp);
    if !linked? {
        read_marker(root)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_empty_and_legacy_directories_become_caches_others_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("new");
        assert_eq!(ensure(&fresh).unwrap(), State::Absent);
        assert_eq!(inspect(&fresh).unwrap(), State::Marked);

        let only_lock = dir.path().join("lock-only");
        std::fs::create_dir(&only_lock).unwrap();
        std::fs::write(only_lock.join("lock"), b"123").unwrap();
        assert_eq!(ensure(&only_lock).unwrap(), State::Empty);

        let legacy = dir.path().join("legacy");
        for s in SUBDIRS {
            std::fs::create_dir_all(legacy.join(s)).unwrap();
        }
        std::fs::write(legacy.join("stat-cache.txt"), b"").unwrap();
        assert_eq!(ensure(&legacy).unwrap(), State::Legacy);
        assert!(legacy.join(MARKER).exists());

        let checkout = dir.path().join("checkout");
        std::fs::create_dir(&checkout).unwrap();
        std::fs::write(checkout.join(".gitkeep"), b"").unwrap();
        std::fs::write(checkout.join(".gitignore"), b"*\n").unwrap();
        assert_eq!(ensure(&checkout).unwrap(), State::Empty);
        assert!(checkout.join(MARKER).exists());
        assert!(checkout.join(".gitkeep").exists() && checkout.join(".gitignore").exists());

        // A placeholder's name on something else than a regular file is not a placeholder.
        let odd = dir.path().join("odd");
        std::fs::create_dir_all(odd.join(".gitkeep")).unwrap();
        let e = ensure(&odd).unwrap_err().to_string();
        assert!(e.contains("`.gitkeep` was not made by pipe"), "{e}");

        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join("tmp")).unwrap();
        std::fs::write(home.join("notes.txt"), b"precious").unwrap();
        let e = ensure(&home).unwrap_err().to_string();
        assert!(e.contains("`notes.txt` was not made by pipe"), "{e}");
        assert!(!home.join(MARKER).exists());

        let partial = dir.path().join("partial");
        std::fs::create_dir_all(partial.join("tmp")).unwrap();
        let e = ensure(&partial).unwrap_err().to_string();
        assert!(e.contains("some of pipe's directories"), "{e}");

        std::fs::write(fresh.join(MARKER), br#"{"pipe_cache_layout": 99}"#).unwrap();
        let e = ensure(&fresh).unwrap_err().to_string();
        assert!(e.contains("newer pipe (cache layout 99"), "{e}");
    }

    /// A pipe killed while creating a cache leaves at most its temporary files, never an empty
    /// marker; the next pipe adopts the directory and many concurrent creators agree on one marker.
    #[test]
    fn a_killed_creation_leaves_no_partial_marker_and_creators_race_safely() {
        let dir = tempfile::tempdir().unwrap();
        let killed = dir.path().join("killed");
        std::fs::create_dir(&killed).unwrap();
        std::fs::write(killed.join("pipe-cache.json.tmp4242-0"), b"{\"pipe_cache").unwrap();
        std::fs::write(killed.join("stat-cache.tmp4242-3"), b"").unwrap();
        std::fs::write(killed.join("lock"), b"").unwrap();
        assert_eq!(ensure(&killed).unwrap(), State::Empty);
        assert_eq!(inspect(&killed).unwrap(), State::Marked);
        assert!(!is_pipe_file("pipe-cache.json.tmp"));
        assert!(!is_pipe_file("stat-cache.tmp1-2-3"));
        assert!(!is_pipe_file("stat-cache.tmp1-x"));

        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| write_marker(&shared).unwrap());
            }
        });
        read_marker(&shared).unwrap();
        let names: Vec<_> = std::fs::read_dir(&shared).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "only the marker is left");
    }
}
