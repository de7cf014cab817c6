//! One `pipe run` (or `gc`) at a time per cache: an exclusive advisory lock (flock) on
//! `cache/lock`. The kernel drops it when the holder dies, so a lock left by a killed process
//! is taken over at once.

use fs4::fs_std::FileExt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

pub struct CacheLock {
    file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the cache {path} is in use by another pipe run{holder}; rerun without --no-wait to wait for it"
    )]
    Busy {
        path: std::path::PathBuf,
        holder: String,
    },
}

/// What to do when another pipe holds the lock.
#[derive(Clone, Copy)]
pub enum Busy<'a> {
    /// Fail at once with [`LockError::Busy`] (`--no-wait`).
    Fail,
    /// Wait for it; first tell `waiting` the cache and its holder (` (pid N)` when known, else
    /// empty), so the person knows why nothing happens.
    Wait(&'a dyn Fn(&Path, &str)),
}

impl CacheLock {
    /// Takes the lock; when busy, as `busy` says.
    pub fn acquire(root: &Path, busy: Busy<'_>) -> Result<Self, LockError> {
        let (mut file, io) = open(root)?;
        if !FileExt::try_lock_exclusive(&file).map_err(io)? {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => String::new(),
                h => format!(" (pid {h})"),
            };
            wait_or_busy(root, busy, holder, || {
                FileExt::lock_exclusive(&file).map_err(io)
            })?;
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        Ok(Self { file })
    }

    /// A shared hold on the same lock, for processes that only add to the cache and clear
    /// nothing: the cluster jobs of `run --only` and the Slurm driver waiting for them. Any
    /// number run at once; a whole `run` or `gc` (exclusive) waits for them all, and they for it.
    pub fn acquire_shared(root: &Path, busy: Busy<'_>) -> Result<Self, LockError> {
        let (file, io) = open(root)?;
        if !FileExt::try_lock_shared(&file).map_err(io)? {
            wait_or_busy(root, busy, String::new(), || {
                FileExt::lock_shared(&file).map_err(io)
            })?;
        }
        Ok(Self { file })
    }
}

/// Opens (creating) `root/lock`, with the error builder for it.
fn open(
    root: &Path,
) -> Result<(File, impl Fn(std::io::Error) -> LockError + Copy + '_), LockError> {
    let io = move |source| LockError::Io {
        path: root.join("lock"),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(root.join("lock"))
        .map_err(io)?;
    Ok((file, io))
}

/// The lock is held elsewhere: `Busy` or, after telling why, block in `lock`.
fn wait_or_busy(
    root: &Path,
    busy: Busy<'_>,
    holder: String,
    lock: impl FnOnce() -> Result<(), LockError>,
) -> Result<(), LockError> {
    match busy {
        Busy::Fail => Err(LockError::Busy {
            path: root.to_path_buf(),
            holder,
        }),
        Busy::Wait(waiting) => {
            waiting(root, &holder);
            lock()
        }
    }
}

impl Drop for CacheLock {
    fn drop(&mut self) {
        let _ = FileExt::unlock(&self.file);
    }
}

impl LockError {
    /// A busy cache with `--no-wait` is a usage outcome; failing to open the lock file is not.
    pub fn is_user_error(&self) -> bool {
        match self {
            LockError::Busy { .. } => true,
            LockError::Io { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn p() -> std::path::PathBuf {
        std::path::PathBuf::from("x")
    }
    fn enospc() -> std::io::Error {
        std::io::Error::from(std::io::ErrorKind::StorageFull)
    }

    #[test]
    fn lock_errors() {
        assert!(
            LockError::Busy {
                path: p(),
                holder: String::new()
            }
            .is_user_error()
        );
        assert!(
            !LockError::Io {
                path: p(),
                source: enospc()
            }
            .is_user_error()
        );
    }
}
