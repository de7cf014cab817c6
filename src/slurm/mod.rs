//! The Slurm executor (issue 11): `pipe run FILE --executor slurm`. pipe keeps its own role —
//! the DAG, the keys, what to rerun and why — and hands each stage that misses the cache to the
//! cluster's scheduler as one `sbatch` job running `pipe run FILE --only STAGE` against the same
//! cache; it never schedules anything itself. See [`driver`] for the loop, [`job`] for what a job
//! is, [`cmd`] for the Slurm commands.

pub mod cmd;
pub mod driver;
pub mod job;

use crate::config::ProjectConfig;
use crate::ml::backend::DeviceChoice;
use crate::run::{RunError, RunOptions};
use crate::spec::{Override, Pipeline};
use std::path::{Path, PathBuf};

pub use driver::run;

/// What `pipe run --executor slurm` was given.
pub struct Request<'a> {
    pub pipeline: &'a Pipeline,
    /// The pipeline file as given (the jobs load it from the same working directory).
    pub file: &'a Path,
    pub cache: &'a Path,
    pub set: &'a [Override],
    pub device: Option<DeviceChoice>,
    pub opts: &'a RunOptions,
    pub config: &'a ProjectConfig,
}

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
    #[error(transparent)]
    Run(#[from] RunError),
}
