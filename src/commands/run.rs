//! `pipe run`: a pipeline on this machine or on Slurm, its plan (`--dry-run`), one stage of it
//! (`--only`, what each cluster job runs), or a sweep of variants ([`super::sweep`]).

use super::exit::{self, EXIT_INTERNAL, EXIT_INVALID, EXIT_OK};
use super::render::{self, Lines};
use super::{print_diagnostics, remote};
use crate::engine::{Engine, RunOptions};
use crate::exec::event::{Event, Observer};
use crate::exec::slurm::job::Completion;
use crate::exec::slurm::relay::{self, Asker};
use crate::ml::device::DeviceRequest;
use crate::ml::probe::{self, AutoPick};
use crate::remote::Remote;
use crate::settings::cli::SweepArgs;
use crate::settings::project::ExecutorKind;
use crate::settings::{self, Settings};
use crate::spec::{Override, Pipeline, load_with_device};
use std::path::Path;
use std::sync::Arc;

/// `run`'s flags.
pub(super) struct Flags<'a> {
    pub file: &'a Path,
    pub set: &'a [Override],
    pub jobs: usize,
    pub force: Vec<String>,
    pub until: Option<String>,
    pub only: Option<String>,
    pub executor: Option<ExecutorKind>,
    pub dry_run: bool,
    pub device: Option<DeviceRequest>,
    pub no_wait: bool,
    /// Where a Slurm job's `--only` run leaves its stage's completion record once it succeeded
    /// ([`Completion`]).
    pub completion_record: Option<&'a Path>,
    /// The Slurm job of a training a pruned search watches: where it tells its epochs
    /// ([`relay`]).
    pub epoch_relay: Option<&'a Path>,
}

pub(super) fn run(s: &Settings, f: Flags<'_>, sweep: SweepArgs) -> i32 {
    // `--device auto` is resolved here, once: the keys, the record's overrides and the Slurm
    // jobs' command lines all hold the device it picked.
    let device = f.device.map(|d| match d {
        DeviceRequest::Named(d) => d,
        DeviceRequest::Auto => {
            let pick = probe::auto();
            auto_line(pick);
            pick.device
        }
    });
    let mut opts = settings::run_options(
        f.jobs,
        f.force.clone(),
        f.only.clone().or(f.until.clone()),
        f.only.is_some(),
        f.no_wait,
        f.set,
        device,
    );
    let resolved = s
        .limits()
        .and_then(|limits| Ok((limits, s.slurm(f.executor)?)));
    let (limits, slurm) = match resolved {
        Ok(r) => r,
        Err(e) => return exit::fail(&e, e.is_user_error()),
    };
    opts.limits = limits;
    let sweeping = !sweep.sweep.is_empty() || !sweep.search.is_empty();
    let remote = match remote::open(s) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if sweeping {
        // Each variant's jobs add its own overrides (and pinned `auto` devices) to these.
        let slurm = match slurm.then(|| s.slurm_settings(f.file, f.set, device)) {
            Some(Err(e)) => return exit::fail(&e, e.is_user_error()),
            Some(Ok(settings)) => Some(settings),
            None => None,
        };
        let req = super::sweep::Given {
            file: f.file,
            set: f.set,
            device,
            remote: remote.clone(),
            slurm,
        };
        let code = super::sweep::run(s, req, sweep, opts, f.dry_run);
        return remote.map_or(code, |r| remote::exit_code(&r, code));
    }
    let p = match load_with_device(f.file, f.set, device) {
        Ok(p) => p,
        Err(diags) => {
            print_diagnostics(&diags);
            return EXIT_INVALID;
        }
    };
    if let Some(auto) = p.auto_device.as_ref().filter(|_| device.is_none()) {
        auto_line(&auto.pick);
    }
    let code = if f.dry_run {
        super::dry_run::plan_only(&p, &s.cache, &opts, remote.clone())
    } else {
        if slurm && !opts.only {
            match s.slurm_settings(f.file, f.set, device) {
                Ok(mut settings) => {
                    settings
                        .set
                        .extend(p.auto_device.iter().flat_map(|a| a.pinned()));
                    opts.slurm = Some(settings);
                }
                Err(e) => return exit::fail(&e, e.is_user_error()),
            }
        }
        let job = Job {
            completion: f.completion_record,
            relay: f.epoch_relay,
        };
        run_here(&p, &s.cache, &opts, remote.clone(), job)
    };
    remote.map_or(code, |r| remote::exit_code(&r, code))
}

/// Which device `auto` chose and why, one line.
fn auto_line(pick: &AutoPick) {
    outln!(
        "device auto → {} ({})",
        pick.device,
        pick.reasons.join("; ")
    );
}

/// What a Slurm job's `--only` run was given besides the stage: see [`Flags`].
struct Job<'a> {
    completion: Option<&'a Path>,
    relay: Option<&'a Path>,
}

/// A run (its stages here or on Slurm, as `opts` says).
fn run_here(
    p: &Pipeline,
    cache: &Path,
    opts: &RunOptions,
    remote: Option<Arc<Remote>>,
    job: Job<'_>,
) -> i32 {
    let mut engine = match Engine::new(p, cache) {
        Ok(e) => e.with_remote(remote),
        Err(e) => return exit::run_failed(&e),
    };
    render::header(p, cache);
    let lines = Lines::default();
    let relayed;
    let observer: &dyn Observer = match (job.relay, &opts.until) {
        (Some(prefix), Some(stage)) => {
            relayed = Relayed {
                lines,
                stage,
                asker: Asker::new(prefix, relay::PATIENCE),
            };
            &relayed
        }
        _ => &lines,
    };
    let completion = job.completion;
    let rec = match engine.run(opts, observer) {
        Ok(rec) => rec,
        Err(e) => return exit::run_failed(&e),
    };
    render::done_line(&rec);
    let (Some(path), Some(stage)) = (completion, &opts.until) else {
        return EXIT_OK;
    };
    let Some(done) = Completion::of(&rec, stage) else {
        errln!("error: stage `{stage}` has no output to record as complete");
        return EXIT_INTERNAL;
    };
    match done.save(path) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            errln!(
                "error: writing the completion record: {}: {e}",
                path.display()
            );
            EXIT_INTERNAL
        }
    }
}

/// A watched training's job: its epochs are told to the search's driver, which decides whether
/// it goes on ([`relay`]).
struct Relayed<'a> {
    lines: Lines,
    stage: &'a str,
    asker: Asker,
}

impl Observer for Relayed<'_> {
    fn on(&self, event: &Event<'_>) {
        self.lines.on(event);
    }

    fn progress(&self) -> &indicatif::MultiProgress {
        self.lines.progress()
    }

    fn epoch(&self, id: &str, done: &crate::ml::train::EpochDone) -> bool {
        if id != self.stage {
            return true;
        }
        self.asker.ask(done).unwrap_or_else(|e| {
            errln!("warning: {e}");
            true
        })
    }
}
