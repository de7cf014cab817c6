//! What can end a run, from planning to the last stage, and whether it is the user's to fix
//! (bad input or usage) or an internal failure; the command layer maps that to an exit code.

use crate::cache::StoreError;
use crate::cache::lock::LockError;
use crate::cache::statcache::FileError;
use crate::stages::StageError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("stage `{stage}` ({kind}) failed: {source}")]
    Stage {
        stage: String,
        kind: String,
        #[source]
        source: StageError,
    },
    #[error("stage `{stage}` panicked: {message}")]
    Panicked { stage: String, message: String },
    #[error("stage `{stage}`: {source}")]
    Files {
        stage: String,
        #[source]
        source: FileError,
    },
    #[error("stage `{stage}`: {source}")]
    Sources {
        stage: String,
        #[source]
        source: StageError,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("saving the run record: {0}")]
    Record(#[source] std::io::Error),
    #[error("no stage `{0}` in this pipeline{1}")]
    UnknownStage(String, String),
    #[error("cycle: {}", .0.join(" → "))]
    Cycle(Vec<String>),
    #[error(
        "--only {stage}: its input stage{} {} not cached: {}; run {} first (or run without --only)",
        if .missing.len() == 1 { "" } else { "s" },
        if .missing.len() == 1 { "is" } else { "are" },
        .missing.join(", "),
        if .missing.len() == 1 { "it" } else { "them" }
    )]
    OnlyInputsMissing { stage: String, missing: Vec<String> },
    #[error("{}", missing_paths_message(.0))]
    MissingPaths(Vec<MissingPath>),
    /// A failure of the Slurm backend (a refused job, a job that failed, Ctrl-C).
    #[error(transparent)]
    Slurm(#[from] super::slurm::SlurmError),
}

/// A path that a stage's YAML names and that does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingPath {
    pub stage: String,
    /// The stage's field that names it (`images`, `labels`, `dir`, `weights`).
    pub field: &'static str,
    pub path: PathBuf,
    /// `file:line:col` of the stage.
    pub at: String,
}

fn missing_paths_message(missing: &[MissingPath]) -> String {
    let n = missing.len();
    let mut m = format!(
        "{n} input file{} missing (README.md, section \"Data\", says where to get {}):",
        if n == 1 { " is" } else { "s are" },
        if n == 1 { "it" } else { "them" }
    );
    for p in missing {
        m.push_str(&format!(
            "\n  {}: stage `{}`, {}: {}",
            p.at,
            p.stage,
            p.field,
            p.path.display()
        ));
    }
    m
}

impl RunError {
    /// The stage error of a stage a search's pruner stopped early.
    pub fn pruned(&self) -> Option<&StageError> {
        match self {
            RunError::Stage {
                source: s @ StageError::Pruned { .. },
                ..
            } => Some(s),
            _ => None,
        }
    }

    /// Bad user data or usage versus an internal failure.
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
            RunError::Slurm(e) => e.is_user_error(),
            RunError::Panicked { .. } | RunError::Io { .. } | RunError::Record(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::backend::MlError;
    use crate::ml::device::DeviceChoice;
    use std::io::{Error, ErrorKind};

    fn p() -> PathBuf {
        PathBuf::from("x")
    }
    fn enospc() -> Error {
        Error::from(ErrorKind::StorageFull)
    }

    #[test]
    fn run_errors() {
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
            stage(StageError::Ml(MlError::DeviceMissing {
                device: DeviceChoice::Cuda,
                missing: "libcuda.so.1 not found".into(),
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
            RunError::MissingPaths(vec![MissingPath {
                stage: "s".into(),
                field: "images",
                path: p(),
                at: "p.yaml:3:3".into(),
            }]),
            RunError::Slurm(super::super::slurm::SlurmError::Refused {
                stage: "s".into(),
                message: "More processors requested than permitted".into(),
            }),
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
            RunError::Slurm(super::super::slurm::SlurmError::Interrupted { cancelled: vec![1] }),
        ];
        for e in &user {
            assert!(e.is_user_error(), "{e}");
        }
        for e in &internal {
            assert!(!e.is_user_error(), "{e}");
        }
    }
}
