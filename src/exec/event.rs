//! What a run tells the person watching it, as values: the scheduler and the engine report each
//! step to an [`Observer`], and the command layer decides how it looks (the lines of `pipe run`
//! today; a JSON stream or a UI tomorrow). Nothing below the command layer prints.

use crate::cache::StoreError;
use crate::record::StageReport;
use std::path::Path;

/// How a stage that misses the cache was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// On this machine, by the local thread pool.
    Here,
    /// Handed to a cluster as a job (`label`: e.g. `Slurm job 42`), logging to `log`.
    Job {
        label: String,
        log: std::path::PathBuf,
    },
    /// A job an earlier run submitted for the same key, still queued or running: waited for.
    Adopted { label: String, state: String },
}

/// Why a stage reached no outcome.
#[derive(Debug, Clone, Copy)]
pub enum Blocked<'a> {
    /// A stage it reads (directly or not) failed.
    UpstreamFailed(&'a str),
    /// A stage it reads (directly or not) was stopped early by a search's pruner.
    UpstreamPruned(&'a str),
    /// The run stopped (at its first failure) before the stage could start.
    RunStopped(&'a dyn std::error::Error),
}

/// Why a stage the plan expected to run was a cache hit after all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HitNote {
    /// As planned.
    None,
    /// Planned to run, but its inputs turned out unchanged (early cutoff).
    InputsUnchanged,
    /// Another variant of the same sweep ran the stage meanwhile.
    RunByAnother,
}

/// One step of a run.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// Another pipe holds the cache: the run waits for it (`holder`: ` (pid N)` or empty).
    Waiting {
        cache: &'a Path,
        holder: &'a str,
    },
    /// The stages the scheduler will handle, in plan order.
    Scheduled {
        ids: &'a [&'a str],
    },
    Cached {
        id: &'a str,
        digest: &'a str,
        note: HitNote,
    },
    /// Downloaded from the remote cache instead of run.
    Pulled {
        id: &'a str,
        digest: &'a str,
        bytes: u64,
        seconds: f64,
    },
    /// The remote's copy could not be used (damaged): the stage runs here.
    RemoteNotUsed {
        id: &'a str,
    },
    /// A committed output no longer matches its manifest: it is rebuilt.
    Damaged {
        id: &'a str,
        error: &'a StoreError,
    },
    Started {
        id: &'a str,
        kind: &'a str,
        how: &'a Started,
    },
    Ran {
        id: &'a str,
        seconds: f64,
        /// The job that ran it, when it was not run here (e.g. `Slurm job 42`).
        job: Option<&'a str>,
        report: &'a StageReport,
        dir: &'a Path,
    },
    Failed {
        id: &'a str,
        seconds: f64,
    },
    /// Stopped early by a search's pruner (not a failure): its checkpoint is kept.
    Pruned {
        id: &'a str,
        seconds: f64,
        report: &'a StageReport,
    },
    Blocked {
        id: &'a str,
        why: Blocked<'a>,
    },
    /// A line a running stage has for the person (an epoch's numbers where no bar is drawn).
    Note {
        line: &'a str,
    },
    /// The run's uploads to the remote cache are done.
    Pushed {
        remote: &'a str,
        stages: usize,
        bytes: u64,
        seconds: f64,
    },
}

/// Receives a run's events; shared by the threads of a run (stages send [`Event::Note`]s).
pub trait Observer: Sync {
    fn on(&self, event: &Event<'_>);

    /// Where running stages draw their progress bars: the observer owns the screen, so its
    /// lines and the bars do not overwrite each other. Hidden by default.
    fn progress(&self) -> &indicatif::MultiProgress;

    /// Stage `id` (a training) finished an epoch; whether it goes on. Always, unless a search
    /// watches it to stop poor trials early.
    fn epoch(&self, _id: &str, _done: &crate::ml::train::EpochDone) -> bool {
        true
    }
}

/// An observer that shows nothing (tests, and callers that only want the record).
pub struct Silent(indicatif::MultiProgress);

impl Default for Silent {
    fn default() -> Self {
        Self(indicatif::MultiProgress::with_draw_target(
            indicatif::ProgressDrawTarget::hidden(),
        ))
    }
}

impl Observer for Silent {
    fn on(&self, _: &Event<'_>) {}
    fn progress(&self) -> &indicatif::MultiProgress {
        &self.0
    }
}
