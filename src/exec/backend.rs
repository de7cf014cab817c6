//! Where the stages that miss the cache run: a small trait between the one scheduler
//! ([`super::scheduler`]) and the machines, modelled on Snakemake's executor plugins. The
//! scheduler decides what runs and records every outcome; a backend only starts jobs and says
//! when they end. A new place to run stages (Kubernetes Jobs, a remote build service) is one new
//! file implementing [`Backend`], not a new loop.

use super::error::RunError;
use super::event::Started;
use super::shared::{KeyGuard, Permit};
use crate::cache::StageKey;
use crate::record::StageReport;
use crate::spec::StageSpec;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One stage to run.
pub struct Job<'a> {
    pub spec: &'a StageSpec,
    pub key: StageKey,
    /// Slot → committed object directory of each input.
    pub inputs: BTreeMap<String, PathBuf>,
    /// `--force`d: run even though the cache holds the key.
    pub forced: bool,
    /// In a sweep run at once: the key and a job slot, held until the stage is committed.
    pub lease: Option<(KeyGuard<'a>, Permit<'a>)>,
}

/// A job that ended.
pub struct Finished {
    pub id: String,
    pub key: StageKey,
    pub seconds: f64,
    /// The job that ran it when it was not run here (e.g. `Slurm job 42`), for the ran line.
    pub job: Option<String>,
    /// The committed output's digest and the stage's report, or why it failed.
    pub result: Result<(String, StageReport), RunError>,
}

/// What the scheduler must know of a backend (Snakemake's `CommonSettings`).
#[derive(Debug, Clone, Copy)]
pub struct Traits {
    /// Jobs run elsewhere, as `pipe run --only` against the same cache: each job pulls its
    /// stage from the remote cache, checks its inputs and pushes its output itself, so the
    /// scheduler does none of that here.
    pub non_local: bool,
}

pub trait Backend<'a> {
    fn traits(&self) -> Traits;

    /// Whether `spec` may start now (free threads, CPUs, GPUs); a backend with nothing
    /// running must say yes.
    fn has_room(&self, spec: &StageSpec) -> bool;

    /// Starts `job`; how it was started, or why it could not be (the stage then fails).
    fn submit(&mut self, job: Job<'a>) -> Result<Started, RunError>;

    /// Blocks until at least one started job ended, or for one polling interval; the jobs that
    /// ended. An error ends the run (the jobs still running are left to it: e.g. Ctrl-C, after
    /// the backend cancelled what it could).
    fn poll(&mut self) -> Result<Vec<Finished>, RunError>;
}
