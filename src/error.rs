//! Exit codes and the one rule that picks them (documented in the README):
//! - 0: success (for `validate`: every file is valid)
//! - 1: internal failure: an I/O error on the cache (a full disk included), a damaged cache
//!   object, a panic in a stage, a backend execution failure
//! - 2: invalid input: a pipeline that does not validate, bad usage (unknown stage, busy cache
//!   with `--no-wait`), and bad data or configuration found while a stage runs (wrong shapes, a
//!   device this build lacks, a weights file that cannot be loaded)
//!
//! Each error enum answers `is_user_error` here, one arm per variant, so the whole policy is
//! in one file and every variant has a test below.

use crate::cache::lock::LockError;
use crate::config::ConfigError;
use crate::data::DatasetError;
use crate::ml::backend::MlError;
use crate::run::RunError;
use crate::slurm::SlurmError;
use crate::stages::StageError;

pub const EXIT_OK: i32 = 0;
pub const EXIT_INTERNAL: i32 = 1;
pub const EXIT_INVALID: i32 = 2;

impl ConfigError {
    /// Every `pipe.toml` error is the user's to fix.
    pub fn is_user_error(&self) -> bool {
        match self {
            ConfigError::Io { .. } | ConfigError::Parse { .. } | ConfigError::Invalid { .. } => {
                true
            }
        }
    }
}

impl crate::remote::RemoteError {
    /// A bad URL or `pipe.toml` is the user's to fix; a remote that fails is not (exit 1 under
    /// `--remote-required`).
    pub fn is_user_error(&self) -> bool {
        use crate::remote::RemoteError as R;
        match self {
            R::Config(_) | R::BadUrl { .. } => true,
            R::Unreachable { .. }
            | R::Refused { .. }
            | R::NoBucket { .. }
            | R::Damaged { .. }
            | R::Transfer { .. }
            | R::Local { .. }
            | R::Store(_) => false,
        }
    }
}

impl RunError {
    /// Bad user data or usage (exit 2) versus an internal failure (exit 1).
    pub fn is_user_error(&self) -> bool {
        match self {
            RunError::Stage { source, .. } | RunError::Sources { source, .. } => {
                source.is_user_error()
            }
            RunError::Lock(e) => e.is_user_error(),
            // A source file that cannot be read, an unknown stage, a cycle: the user's to fix.
            RunError::Files { .. } | RunError::UnknownStage(..) | RunError::Cycle(_) => true,
            // `--only` on a stage whose inputs were never run; data files not where the YAML says.
            RunError::OnlyInputsMissing { .. } | RunError::MissingPaths(_) => true,
            // A `--cache` directory that is not a pipe cache; every other store error is internal.
            RunError::Store(e) => e.is_user_error(),
            RunError::Panicked { .. } | RunError::Io { .. } | RunError::Record(_) => false,
        }
    }

    pub fn exit_code(&self) -> i32 {
        if self.is_user_error() {
            EXIT_INVALID
        } else {
            EXIT_INTERNAL
        }
    }
}

impl SlurmError {
    pub fn is_user_error(&self) -> bool {
        match self {
            // `--executor slurm` where there is no Slurm, a request the cluster cannot meet (more
            // CPUs than any node, an unknown partition): the user's to change.
            SlurmError::Spawn { .. }
            | SlurmError::Refused { .. }
            | SlurmError::NeverStarts { .. } => true,
            // The stage's own verdict, passed through its job's exit code.
            SlurmError::JobFailed { exit, .. } => *exit == Some(EXIT_INVALID),
            SlurmError::Run(e) => e.is_user_error(),
            SlurmError::Command { .. }
            | SlurmError::Parse { .. }
            | SlurmError::Unquotable { .. }
            | SlurmError::Interrupted { .. }
            | SlurmError::Io { .. } => false,
        }
    }
}

impl StageError {
    pub fn is_user_error(&self) -> bool {
        match self {
            StageError::Input { .. } | StageError::Invalid(_) => true,
            StageError::Ml(e) => e.is_user_error(),
            StageError::Dataset(e) => e.is_user_error(),
            // Writing outputs (ENOSPC included), a malformed artifact in the cache, a slot the
            // validator should have caught: ours. A source file rewritten while it was read is
            // no fault of its contents: nothing was stored, the run can be repeated.
            StageError::Io { .. }
            | StageError::Artifact { .. }
            | StageError::MissingInput(_)
            | StageError::Changed { .. } => false,
        }
    }
}

impl MlError {
    pub fn is_user_error(&self) -> bool {
        match self {
            MlError::DeviceUnavailable { .. } | MlError::InvalidConfig(_) => true,
            // Loading a weights file the pipeline names (missing, wrong format, no match).
            MlError::Record { .. } => true,
            MlError::Io { .. }
            | MlError::Json { .. }
            | MlError::Interrupted { .. }
            | MlError::Device(_) => false,
        }
    }
}

impl DatasetError {
    /// Datasets are read from and written to the cache: every failure is internal.
    pub fn is_user_error(&self) -> bool {
        match self {
            DatasetError::Io { .. } | DatasetError::Meta { .. } | DatasetError::Corrupt { .. } => {
                false
            }
        }
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
    use crate::cache::statcache::FileError;
    use crate::cache::store::StoreError;
    use crate::ml::backend::DeviceChoice;
    use std::io::{Error, ErrorKind};
    use std::path::PathBuf;

    fn p() -> PathBuf {
        PathBuf::from("x")
    }
    fn enospc() -> Error {
        Error::from(ErrorKind::StorageFull)
    }
    fn json_err() -> serde_json::Error {
        serde_json::from_str::<u8>("x").unwrap_err()
    }

    #[test]
    fn remote_errors() {
        use crate::remote::RemoteError as R;
        let remote = || "s3://bucket/p".to_string();
        let os = || object_store::Error::NotImplemented {
            operation: "x".into(),
            implementer: "y".into(),
        };
        let user = [
            R::Config(ConfigError::Parse {
                path: p(),
                line: Some(1),
                message: "m".into(),
            }),
            R::BadUrl {
                remote: remote(),
                message: "m".into(),
            },
        ];
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

    #[test]
    fn config_errors() {
        let io = ConfigError::Io {
            path: p(),
            source: Error::from(ErrorKind::PermissionDenied),
        };
        let parse = ConfigError::Parse {
            path: p(),
            line: Some(3),
            message: "unknown field".into(),
        };
        let invalid = ConfigError::Invalid {
            path: p(),
            section: "resources",
            field: "mem",
            message: "not a size".into(),
        };
        assert!(io.is_user_error() && parse.is_user_error() && invalid.is_user_error());
    }

    #[test]
    fn ml_errors() {
        let user = [
            MlError::DeviceUnavailable {
                device: DeviceChoice::Vulkan,
                feature: "vulkan",
                note: "",
            },
            MlError::InvalidConfig(vec!["shape".into()]),
            MlError::Record {
                path: p(),
                message: "not a ResNet".into(),
            },
        ];
        let internal = [
            MlError::Io {
                path: p(),
                source: enospc(),
            },
            MlError::Json {
                path: p(),
                source: json_err(),
            },
            MlError::Interrupted { epoch: 2 },
            MlError::Device("oom".into()),
        ];
        assert!(user.iter().all(MlError::is_user_error));
        assert!(!internal.iter().any(MlError::is_user_error));
    }

    #[test]
    fn dataset_errors_are_internal() {
        for e in [
            DatasetError::Io {
                path: p(),
                source: enospc(),
            },
            DatasetError::Meta {
                path: p(),
                source: json_err(),
            },
            DatasetError::Corrupt {
                path: p(),
                message: "m".into(),
            },
        ] {
            assert!(!e.is_user_error(), "{e}");
        }
    }

    #[test]
    fn stage_errors() {
        let user = [
            StageError::Input {
                path: p(),
                message: "line 3: bad label".into(),
            },
            StageError::Invalid("no images".into()),
            StageError::Ml(MlError::InvalidConfig(vec![])),
        ];
        let internal = [
            StageError::Io {
                path: p(),
                source: enospc(),
            },
            StageError::Artifact {
                path: p(),
                message: "m".into(),
            },
            StageError::MissingInput("data"),
            StageError::Ml(MlError::Device("oom".into())),
            StageError::Dataset(DatasetError::Corrupt {
                path: p(),
                message: "m".into(),
            }),
            StageError::Changed { path: p() },
            // A full disk while training writes a checkpoint or an export.
            StageError::Ml(MlError::Io {
                path: p(),
                source: enospc(),
            }),
        ];
        assert!(user.iter().all(StageError::is_user_error));
        assert!(!internal.iter().any(StageError::is_user_error));
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

    #[test]
    fn slurm_errors() {
        let failed = |exit| SlurmError::JobFailed {
            stage: "s".into(),
            job: 1,
            state: "FAILED".into(),
            exit,
            message: "error: bad".into(),
            log: p(),
        };
        let user = [
            SlurmError::Spawn {
                program: "sbatch".into(),
                source: Error::from(ErrorKind::NotFound),
            },
            SlurmError::Refused {
                stage: "s".into(),
                message: "More processors requested than permitted".into(),
            },
            failed(Some(2)),
            SlurmError::NeverStarts {
                stage: "s".into(),
                job: 1,
                reason: "PartitionConfig".into(),
            },
            SlurmError::Run(RunError::UnknownStage("s".into(), String::new())),
        ];
        let internal = [
            failed(Some(1)),
            failed(None),
            SlurmError::Command {
                command: "squeue".into(),
                status: "exit status: 1".into(),
                stderr: String::new(),
            },
            SlurmError::Parse {
                command: "sbatch".into(),
                output: "?".into(),
            },
            SlurmError::Unquotable { word: "a".into() },
            SlurmError::Interrupted { cancelled: vec![1] },
            SlurmError::Io {
                path: p(),
                source: enospc(),
            },
        ];
        assert!(user.iter().all(SlurmError::is_user_error));
        assert!(!internal.iter().any(SlurmError::is_user_error));
    }

    #[test]
    fn run_errors_and_exit_codes() {
        let stage = |source| RunError::Stage {
            stage: "s".into(),
            kind: "k".into(),
            source,
        };
        let user = [
            stage(StageError::Ml(MlError::DeviceUnavailable {
                device: DeviceChoice::Cuda,
                feature: "cuda",
                note: "",
            })),
            RunError::Sources {
                stage: "s".into(),
                source: StageError::Invalid("m".into()),
            },
            RunError::Lock(LockError::Busy {
                path: p(),
                holder: String::new(),
            }),
            RunError::Files {
                stage: "s".into(),
                source: FileError {
                    path: p(),
                    source: Error::from(ErrorKind::NotFound),
                },
            },
            RunError::UnknownStage("s".into(), String::new()),
            RunError::Cycle(vec!["a".into(), "b".into()]),
            RunError::OnlyInputsMissing {
                stage: "s".into(),
                missing: vec!["a".into()],
            },
            RunError::MissingPaths(vec![crate::run::MissingPath {
                stage: "s".into(),
                field: "images",
                path: p(),
                at: "p.yaml:3:3".into(),
            }]),
        ];
        let internal = [
            stage(StageError::Io {
                path: p(),
                source: enospc(),
            }),
            RunError::Store(StoreError::Io {
                path: p(),
                source: enospc(),
            }),
            RunError::Panicked {
                stage: "s".into(),
                message: "capacity overflow".into(),
            },
            RunError::Io {
                path: p(),
                source: enospc(),
            },
            RunError::Record(enospc()),
        ];
        for e in &user {
            assert_eq!(e.exit_code(), EXIT_INVALID, "{e}");
        }
        for e in &internal {
            assert_eq!(e.exit_code(), EXIT_INTERNAL, "{e}");
        }
    }
}
