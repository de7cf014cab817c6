//! The Slurm backend (issue 11): `pipe run FILE --executor slurm`. pipe keeps its own role —
//! the DAG, the keys, what to rerun and why, in the one scheduler — and hands each stage that
//! misses the cache to the cluster's scheduler as one `sbatch` job running
//! `pipe run FILE --only STAGE` against the same cache. See [`backend`] for the backend,
//! [`job`] for what a job is, [`cmd`] for the Slurm commands.

pub mod backend;
pub mod cmd;
pub mod job;
pub mod relay;

use std::path::PathBuf;

pub use backend::{Settings, Slurm};

/// The exit code of `pipe` for a user error (the command layer's `EXIT_INVALID`): a job that
/// ended with it failed on the user's input or configuration, which is then the user's to fix.
pub const JOB_USER_ERROR: i32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("cannot run `{program}` ({source}): is Slurm installed and on the PATH?")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("stage `{stage}`: sbatch refused the job: {message}")]
    Refused { stage: String, message: String },
    #[error(
        "stage `{stage}`: Slurm job {job} can never start ({reason}): its resources exceed what \
         the partition, account or QOS allows; the job was cancelled"
    )]
    NeverStarts {
        stage: String,
        job: u64,
        reason: String,
    },
    #[error("unexpected output from `{command}`: {output}")]
    Parse { command: String, output: String },
    #[error("a job script cannot hold {word:?} (a NUL byte)")]
    Unquotable { word: String },
    #[error(
        "stage `{stage}` failed in Slurm job {job} ({state}{}):\n{message}\n  log: {}",
        exit.map(|c| format!(", exit code {c}")).unwrap_or_default(),
        log.display()
    )]
    JobFailed {
        stage: String,
        job: u64,
        state: String,
        exit: Option<i32>,
        message: String,
        log: PathBuf,
    },
    #[error("interrupted: cancelled Slurm job{} {}", if .cancelled.len() == 1 { "" } else { "s" },
        .cancelled.iter().map(u64::to_string).collect::<Vec<_>>().join(", "))]
    Interrupted { cancelled: Vec<u64> },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
            SlurmError::JobFailed { exit, .. } => *exit == Some(JOB_USER_ERROR),
            SlurmError::Command { .. }
            | SlurmError::Parse { .. }
            | SlurmError::Unquotable { .. }
            | SlurmError::Interrupted { .. }
            | SlurmError::Io { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error, ErrorKind};
    fn p() -> std::path::PathBuf {
        std::path::PathBuf::from("x")
    }
    fn enospc() -> std::io::Error {
        std::io::Error::from(std::io::ErrorKind::StorageFull)
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
}
