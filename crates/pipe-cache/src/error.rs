//! The store's error, in a file of its own: every part of the cache (objects, marker, gc,
//! store) reports through it without importing the store, so the module has no inner circle.

use std::path::{Path, PathBuf};

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
    #[error("{path} is not a pipe cache: {reason}")]
    NotACache { path: PathBuf, reason: String },
}

impl StoreError {
    /// A directory given as `--cache` that is not one is bad usage (exit 2); everything else
    /// is an I/O failure or a damaged cache (exit 1).
    pub fn is_user_error(&self) -> bool {
        matches!(self, StoreError::NotACache { .. })
    }
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn corrupt(path: &Path, message: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        message: message.into(),
    }
}
