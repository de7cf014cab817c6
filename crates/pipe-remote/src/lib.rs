//! The shared remote cache (issue 10): the local cache's objects and key records mirrored on
//! object storage (S3 or any S3-compatible server, or a shared directory) through the
//! `object_store` crate, so a stage someone already ran is downloaded instead of recomputed.
//!
//! Remote layout, under the URL's prefix (the local one's, minus scratch):
//! - `objects/ab/<digest>/<file>` and `objects/ab/<digest>/.manifest.json` (written last of
//!   the object's files: an object without its manifest is an upload in progress)
//! - `keys/ab/<key>.json`: the key record, written after its object (and the objects it
//!   refers to), with a conditional put, so no reader ever finds a key whose objects are
//!   incomplete and the first writer of a key wins.
//! - `runs/<stamp>-<pipeline>.json`: the run records `pipe push` shares (see [`runs`]); `gc
//!   --remote` leaves them alone.
//!
//! object_store is async; this module owns the one tokio runtime and blocks on it at its
//! boundary, so the rest of pipe stays synchronous. A remote failure is never fatal unless
//! `--remote-required` says so: it is reported (naming the remote and the key) through the
//! [`Notice`]s the command layer shows, and the command carries on with the local cache.

pub mod gc;
pub mod runs;
pub mod settings;
mod transfer;
mod uploads;

use object_store::ObjectStoreExt;
use object_store::path::Path as RemotePath;
use pipe_cache::store::{KeyEntry, StoreError};
pub use settings::{RemoteSection, Target};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
pub use transfer::Pulled;

/// A remote operation that failed. Messages name the remote (its URL without credentials)
/// and, where there is one, the key or object.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("remote {remote}: {message}")]
    BadUrl { remote: String, message: String },
    #[error("remote {remote}: cannot reach the server ({what}): {source}")]
    Unreachable {
        remote: String,
        what: String,
        #[source]
        source: object_store::Error,
    },
    #[error(
        "remote {remote}: credentials refused ({what}): check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
    )]
    Refused {
        remote: String,
        what: String,
        #[source]
        source: object_store::Error,
    },
    #[error("remote {remote}: the bucket or directory is missing: {detail}")]
    NoBucket { remote: String, detail: String },
    /// The remote holds a key record whose object is absent, damaged or truncated.
    #[error("remote {remote}: key {key}: {message}")]
    Damaged {
        remote: String,
        key: String,
        message: String,
    },
    #[error("remote {remote}: {what}: {source}")]
    Transfer {
        remote: String,
        what: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{path}: {source}")]
    Local {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RemoteError {
    /// Whether the remote as a whole is unusable (later operations are skipped).
    fn is_fatal_for_remote(&self) -> bool {
        matches!(
            self,
            RemoteError::Unreachable { .. }
                | RemoteError::Refused { .. }
                | RemoteError::NoBucket { .. }
        )
    }
}

/// Something a person should hear about the remote while a command uses it.
#[derive(Debug, Clone, Copy)]
pub enum Notice<'a> {
    /// An operation failed: a warning (the command carries on with the local cache), or an
    /// error when `required` (`--remote-required`: the command will exit 1).
    Failed {
        error: &'a RemoteError,
        required: bool,
    },
    /// `push --repair` replaced damaged remote files of an object.
    Repaired { digest: &'a str, files: usize },
    /// The background upload of a stage panicked.
    UploadPanicked { stage: &'a str, remote: &'a str },
}

/// Where a remote's [`Notice`]s go (the command layer renders them).
pub type Notices = Box<dyn Fn(&Notice<'_>) + Send + Sync>;

/// How a command uses the remote.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// `--remote-required`: a remote failure fails the command (exit 1).
    pub required: bool,
    /// Runs upload what they commit (not with `--no-push`).
    pub push: bool,
}

/// An open remote: the store, the runtime that drives it, and what this process did with it.
pub struct Remote {
    target: Target,
    rt: tokio::runtime::Runtime,
    required: bool,
    push: bool,
    notices: Notices,
    /// Set by the first failure that makes the remote unusable: later operations are skipped.
    down: AtomicBool,
    failed: AtomicBool,
    /// Key lookups already answered in this process (the planner and the executor ask alike).
    keys: Mutex<BTreeMap<String, Option<KeyEntry>>>,
    uploads: uploads::Queue,
    stats: Mutex<Stats>,
}

/// What this process transferred.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub pulled_objects: u64,
    pub pulled_bytes: u64,
    pub pulled_seconds: f64,
}

impl Remote {
    /// Opens the remote `target` names and checks it answers: an unreachable server, refused
    /// credentials or a missing bucket are found here, once.
    pub fn connect(
        target: Target,
        options: Options,
        notices: Notices,
    ) -> Result<Arc<Remote>, RemoteError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|source| RemoteError::Local {
                path: "tokio runtime".into(),
                source,
            })?;
        let remote = Remote {
            target,
            rt,
            required: options.required,
            push: options.push,
            notices,
            down: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            keys: Mutex::new(BTreeMap::new()),
            uploads: uploads::Queue::default(),
            stats: Mutex::new(Stats::default()),
        };
        remote.probe()?;
        Ok(Arc::new(remote))
    }

    /// The URL as shown to users.
    pub fn shown(&self) -> &str {
        &self.target.shown
    }

    pub fn required(&self) -> bool {
        self.required
    }

    /// Whether some remote operation failed in this process.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> Stats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// One listing: the cheapest request that fails for each way a remote can be unusable.
    fn probe(&self) -> Result<(), RemoteError> {
        let prefix = self.path("keys");
        let res = self
            .rt
            .block_on(self.target.store.list_with_delimiter(Some(&prefix)));
        match res {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(e, object_store::Error::NotFound { .. })
                    || chain_says(&e, &["NoSuchBucket", "404 Not Found"]) =>
            {
                Err(RemoteError::NoBucket {
                    remote: self.target.shown.clone(),
                    detail: "the server answered 404 (NoSuchBucket): create it first".into(),
                })
            }
            Err(e) => Err(self.classify("listing keys/", e)),
        }
    }

    /// `rel` under the remote's prefix.
    fn path(&self, rel: &str) -> RemotePath {
        let prefix = self.target.prefix.as_ref();
        if prefix.is_empty() {
            RemotePath::from(rel)
        } else {
            RemotePath::from(format!("{prefix}/{rel}"))
        }
    }

    fn key_path(&self, key: &str) -> RemotePath {
        self.path(&format!("keys/{}/{key}.json", &key[..2]))
    }

    fn object_path(&self, digest: &str, file: &str) -> RemotePath {
        self.path(&format!("objects/{}/{digest}/{file}", &digest[..2]))
    }

    /// Names the failure of one operation (`what`) on this remote.
    fn classify(&self, what: &str, e: object_store::Error) -> RemoteError {
        let remote = self.target.shown.clone();
        let what = what.to_string();
        match e {
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => RemoteError::Refused {
                remote,
                what,
                source: e,
            },
            // Listings and multipart requests report a refusal as a generic error.
            e if chain_says(&e, REFUSALS) => RemoteError::Refused {
                remote,
                what,
                source: e,
            },
            e if is_connection_error(&e) => RemoteError::Unreachable {
                remote,
                what,
                source: e,
            },
            e => RemoteError::Transfer {
                remote,
                what,
                source: e,
            },
        }
    }

    /// Reports a failure ([`Notice::Failed`]; once for a remote that went down as a whole)
    /// and remembers it ([`Remote::failed`]).
    pub fn report(&self, e: &RemoteError) {
        self.failed.store(true, Ordering::Relaxed);
        let first_down = e.is_fatal_for_remote() && !self.down.swap(true, Ordering::Relaxed);
        if e.is_fatal_for_remote() && !first_down {
            return;
        }
        tracing::debug!("remote failure: {e}");
        self.notify(&Notice::Failed {
            error: e,
            required: self.required,
        });
    }

    pub(crate) fn notify(&self, notice: &Notice<'_>) {
        (self.notices)(notice);
    }

    /// Whether the remote is still worth asking.
    fn usable(&self) -> bool {
        !self.down.load(Ordering::Relaxed)
    }

    /// The remote's key record of `key_hex`, if it has one (remembered for the process). A
    /// failure is reported and answers `None`.
    pub fn lookup(&self, key_hex: &str) -> Option<KeyEntry> {
        if !pipe_cache::digest::is_digest(key_hex) || !self.usable() {
            return None;
        }
        if let Some(known) = self.keys.lock().ok()?.get(key_hex) {
            return known.clone();
        }
        let found = match self.fetch_key(key_hex) {
            Ok(f) => f,
            Err(e) => {
                self.report(&e);
                None
            }
        };
        if let Ok(mut keys) = self.keys.lock() {
            keys.insert(key_hex.to_string(), found.clone());
        }
        found
    }

    /// Forgets what [`Remote::lookup`] answered for `key_hex` (after a failed pull).
    pub fn forget(&self, key_hex: &str) {
        if let Ok(mut keys) = self.keys.lock() {
            keys.insert(key_hex.to_string(), None);
        }
    }

    /// GETs and checks one key record: it must be the record of `key_hex`.
    fn fetch_key(&self, key_hex: &str) -> Result<Option<KeyEntry>, RemoteError> {
        let path = self.key_path(key_hex);
        let bytes = match self.rt.block_on(async {
            let r = self.target.store.get(&path).await?;
            r.bytes().await
        }) {
            Ok(b) => b,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.classify(&format!("reading key {key_hex}"), e)),
        };
        let damaged = |message: String| RemoteError::Damaged {
            remote: self.target.shown.clone(),
            key: key_hex.to_string(),
            message,
        };
        let entry: KeyEntry = serde_json::from_slice(&bytes)
            .map_err(|e| damaged(format!("unreadable key record ({e})")))?;
        if entry.key.digest() != key_hex {
            return Err(damaged("the key record describes another key".into()));
        }
        Ok(Some(entry))
    }
}

/// What S3-compatible servers answer to credentials they refuse.
const REFUSALS: &[&str] = &[
    "403 Forbidden",
    "401 Unauthorized",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "AccessDenied",
];

/// Whether the text of `e` or of an error in its chain contains one of `needles`.
fn chain_says(e: &object_store::Error, needles: &[&str]) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if needles.iter().any(|n| text.contains(n)) {
            return true;
        }
        cur = err.source();
    }
    false
}

/// A failure to connect or a connection lost mid-transfer (a refused or reset socket, a
/// timeout, a body cut short), found anywhere in the error's chain.
fn is_connection_error(e: &object_store::Error) -> bool {
    use std::io::ErrorKind as K;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                K::ConnectionRefused
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::NotConnected
                    | K::TimedOut
                    | K::BrokenPipe
                    | K::UnexpectedEof
            )
        {
            return true;
        }
        let text = err.to_string().to_ascii_lowercase();
        if text.contains("error sending request")
            || text.contains("connection refused")
            || text.contains("connection closed")
            || text.contains("timed out")
            || text.contains("incomplete")
        {
            return true;
        }
        cur = err.source();
    }
    false
}

impl RemoteError {
    /// A bad URL is the user's to fix; a remote that fails is not (exit 1 under
    /// `--remote-required`).
    pub fn is_user_error(&self) -> bool {
        match self {
            RemoteError::BadUrl { .. } => true,
            RemoteError::Unreachable { .. }
            | RemoteError::Refused { .. }
            | RemoteError::NoBucket { .. }
            | RemoteError::Damaged { .. }
            | RemoteError::Transfer { .. }
            | RemoteError::Local { .. }
            | RemoteError::Store(_) => false,
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
    fn remote_errors() {
        use RemoteError as R;
        let remote = || "s3://bucket/p".to_string();
        let os = || object_store::Error::NotImplemented {
            operation: "x".into(),
            implementer: "y".into(),
        };
        let user = [R::BadUrl {
            remote: remote(),
            message: "m".into(),
        }];
        let internal = [
            R::Unreachable {
                remote: remote(),
                what: "w".into(),
                source: os(),
            },
            R::Refused {
                remote: remote(),
                what: "w".into(),
                source: os(),
            },
            R::NoBucket {
                remote: remote(),
                detail: "d".into(),
            },
            R::Damaged {
                remote: remote(),
                key: "k".into(),
                message: "m".into(),
            },
            R::Transfer {
                remote: remote(),
                what: "w".into(),
                source: os(),
            },
            R::Local {
                path: p(),
                source: enospc(),
            },
            R::Store(StoreError::Io {
                path: p(),
                source: enospc(),
            }),
        ];
        assert!(user.iter().all(R::is_user_error));
        assert!(!internal.iter().any(R::is_user_error));
        assert!(
            internal
                .iter()
                .all(|e| e.to_string().contains("s3://bucket/p")
                    || matches!(e, R::Local { .. } | R::Store(_)))
        );
    }
}
