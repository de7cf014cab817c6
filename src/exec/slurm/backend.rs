//! The Slurm backend: each stage that misses the cache becomes one `sbatch` job running
//! `pipe run FILE --only STAGE` against the same cache ([`job`]). A stage is done when its job
//! has ended, ended successfully (Slurm's `COMPLETED`), and left its completion record
//! ([`job::Completion`]) for the stage's key, which is then in the cache. The key being in the
//! cache alone proves nothing — a forced rerun starts with it there, and a concurrent writer may
//! commit it — so a job that was cancelled, failed or timed out is a failed stage whatever the
//! cache holds. The queue is read once per poll (`squeue`), for all jobs at once.
//!
//! Resumable: a driver killed mid-run leaves its jobs running; the next one finds them in the
//! queue by name (which carries the stage key) and waits for them instead of submitting again.
//! SIGINT/SIGTERM cancel (`scancel`) the jobs this driver submitted, and every later Slurm run
//! of the process (a sweep's next variants) ends at once.
//!
//! In a sweep run at once, a job holds its key and job slot ([`Job::lease`]) until it ended, so
//! `-j` bounds the jobs in flight. In a pruned search, the watched training's job asks the
//! driver after each epoch whether to go on ([`super::relay`]).

use super::cmd::{self, QueuedJob};
use super::relay::Answerer;
use super::{SlurmError, job, relay};
use crate::cache::{StageKey, Store};
use crate::exec::backend::{Backend, Finished, Job, Traits};
use crate::exec::budget::on_gpu;
use crate::exec::error::RunError;
use crate::exec::event::{Observer, Started};
use crate::exec::ledger::last_report;
use crate::exec::shared::{KeyGuard, Permit};
use crate::ml::device::DeviceChoice;
use crate::spec::StageSpec;
use crate::spec::resources::Resources;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// What the Slurm backend is given: the project's settings and what its jobs' command lines
/// repeat from the driver's.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Between two `squeue` polls (`pipe.toml`'s `[executor] poll_seconds`).
    pub poll: Duration,
    /// `pipe.toml`'s `[resources]`: what a stage that declares none asks for.
    pub defaults: Resources,
    /// The pipeline file as given (the jobs load it from the same working directory).
    pub file: PathBuf,
    /// The `--set` overrides as typed.
    pub set: Vec<String>,
    pub device: Option<DeviceChoice>,
    /// The training a pruned search watches: its job relays its epochs ([`super::relay`]).
    pub watch: Option<String>,
}

/// A stage handed to Slurm.
struct Running<'a> {
    id: u64,
    key: StageKey,
    /// The stage's kind (a pruned training's error names it).
    kind: String,
    log: PathBuf,
    /// Its completion record ([`job::Completion`]).
    done: PathBuf,
    since: Instant,
    /// Submitted by this driver (cancelled on Ctrl-C), not found from an earlier one.
    ours: bool,
    /// In a sweep run at once: the key and job slot, given back when the job ended.
    lease: Option<(KeyGuard<'a>, Permit<'a>)>,
    /// The watched training's epochs, answered at each poll.
    relay: Option<Answerer>,
}

pub struct Slurm<'a> {
    settings: &'a Settings,
    store: &'a Store,
    /// The cache as given (the jobs' `--cache`).
    cache: PathBuf,
    running: BTreeMap<String, Running<'a>>,
    /// Jobs of earlier drivers still queued or running, by name; read at the first miss (a run
    /// with nothing to submit never asks Slurm anything).
    earlier: Option<BTreeMap<String, QueuedJob>>,
    log_dir: PathBuf,
    workdir: PathBuf,
    /// Names this cache in job names ([`job::cache_tag`]).
    cache_tag: String,
    exe: PathBuf,
    interrupted: Arc<AtomicBool>,
    /// Told the watched training's epochs (a search's pruner decides).
    observer: &'a dyn Observer,
}

/// Set by SIGINT/SIGTERM once any Slurm run of this process registered for them; every Slurm
/// run of the process reads the same flag, so an interrupted sweep submits nothing more.
static INTERRUPTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// The process's interrupt flag, its handlers registered on first use.
fn interrupt_flag() -> Result<Arc<AtomicBool>, SlurmError> {
    if let Some(f) = INTERRUPTED.get() {
        return Ok(Arc::clone(f));
    }
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&flag)).map_err(|source| SlurmError::Io {
            path: PathBuf::from("signal handler"),
            source,
        })?;
    }
    Ok(Arc::clone(INTERRUPTED.get_or_init(|| flag)))
}

/// Whether SIGINT/SIGTERM interrupted a Slurm run of this process.
pub fn interrupted() -> bool {
    INTERRUPTED.get().is_some_and(|f| f.load(Ordering::SeqCst))
}

impl<'a> Slurm<'a> {
    /// Prepares the job directory (`<cache>/work/slurm`) and the Ctrl-C handler.
    pub fn new(
        settings: &'a Settings,
        store: &'a Store,
        cache: &Path,
        observer: &'a dyn Observer,
    ) -> Result<Self, SlurmError> {
        let interrupted = interrupt_flag()?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SlurmError::Io { path, source }
        };
        let workdir = std::env::current_dir().map_err(io(Path::new(".")))?;
        let abs_cache = workdir.join(cache);
        let log_dir = abs_cache.join("work").join("slurm");
        std::fs::create_dir_all(&log_dir).map_err(io(&log_dir))?;
        let exe = std::env::current_exe().map_err(io(Path::new("pipe")))?;
        Ok(Self {
            settings,
            store,
            cache: cache.to_path_buf(),
            running: BTreeMap::new(),
            earlier: None,
            cache_tag: job::cache_tag(&abs_cache),
            log_dir,
            workdir,
            exe,
            interrupted,
            observer,
        })
    }

    /// The relay of stage `id`'s job `job` when the search watches it.
    fn relay(&self, id: &str, name: &str, job: u64) -> Option<Answerer> {
        (self.settings.watch.as_deref() == Some(id))
            .then(|| Answerer::new(relay::paths(&self.log_dir, name, &job.to_string())))
    }

    /// Answers the epochs the watched trainings told since the last poll.
    fn answer(&mut self) -> Result<(), SlurmError> {
        let observer = self.observer;
        for (id, job) in &mut self.running {
            if let Some(r) = &mut job.relay {
                r.answer(|done| observer.epoch(id, done))
                    .map_err(|source| SlurmError::Io {
                        path: self.log_dir.clone(),
                        source,
                    })?;
            }
        }
        Ok(())
    }

    /// The job an earlier driver submitted under `name`, still queued or running.
    fn earlier(&mut self, name: &str) -> Result<Option<QueuedJob>, SlurmError> {
        if self.earlier.is_none() {
            let active = cmd::queue()?
                .into_iter()
                .filter(|j| j.active() && j.name.starts_with("pipe."))
                .map(|j| (j.name.clone(), j))
                .collect();
            self.earlier = Some(active);
        }
        Ok(self.earlier.as_mut().and_then(|e| e.remove(name)))
    }

    /// Writes the job's script and submits it.
    fn sbatch(
        &self,
        spec: &StageSpec,
        key: &StageKey,
        forced: bool,
        name: &str,
    ) -> Result<u64, SlurmError> {
        let s = self.settings;
        let command = job::Command {
            exe: &self.exe,
            file: &s.file,
            cache: &self.cache,
            stage: &spec.id,
            set: &s.set,
            device: s.device,
            forced,
            name,
            dir: &self.log_dir,
            relay: s.watch.as_deref() == Some(spec.id.as_str()),
        };
        let script = self.log_dir.join(format!("{name}.sh"));
        std::fs::write(&script, command.script(key)?).map_err(|source| SlurmError::Io {
            path: script.clone(),
            source,
        })?;
        let resources = spec.resources.or(&s.defaults);
        let mut args = job::sbatch_args(
            name,
            &job::log_pattern(&self.log_dir, name),
            &self.workdir,
            &resources,
            on_gpu(spec),
        );
        args.push(script.display().to_string());
        cmd::submit(&spec.id, &args)
    }

    /// Sleeps one poll interval, waking early on Ctrl-C.
    fn sleep(&self) {
        let poll = self.settings.poll;
        let until = Instant::now() + poll;
        while Instant::now() < until && !self.interrupted.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20).min(poll));
        }
    }

    /// Ctrl-C: cancels the jobs this driver submitted; the error that ends the run.
    fn cancel(&mut self) -> SlurmError {
        let ours: Vec<u64> = self
            .running
            .values()
            .filter(|j| j.ours)
            .map(|j| j.id)
            .collect();
        cmd::cancel(&ours);
        SlurmError::Interrupted { cancelled: ours }
    }
}

impl<'a> Backend<'a> for Slurm<'a> {
    fn traits(&self) -> Traits {
        Traits { non_local: true }
    }

    /// The cluster's scheduler decides when jobs start: every miss is submitted at once.
    fn has_room(&self, _: &StageSpec) -> bool {
        true
    }

    /// Submits the stage's job, or adopts the job an earlier driver submitted for the same key.
    fn submit(&mut self, job: Job<'a>) -> Result<Started, RunError> {
        let Job {
            spec,
            key,
            forced,
            lease,
            ..
        } = job;
        if self.interrupted.load(Ordering::SeqCst) {
            return Err(SlurmError::Interrupted {
                cancelled: Vec::new(),
            }
            .into());
        }
        let id = spec.id.as_str();
        let kind = spec.config.kind().to_string();
        let name = job::name(id, &key, &self.cache_tag);
        if let Some(q) = self.earlier(&name)?.filter(|_| !forced) {
            self.running.insert(
                id.to_string(),
                Running {
                    id: q.id,
                    log: job::log_path(&self.log_dir, &name, q.id),
                    done: job::completion_path(&self.log_dir, &name, q.id),
                    key,
                    kind,
                    since: Instant::now(),
                    ours: false,
                    lease,
                    relay: self.relay(id, &name, q.id),
                },
            );
            return Ok(Started::Adopted {
                label: format!("Slurm job {}", q.id),
                state: q.state.to_lowercase(),
            });
        }
        let since = Instant::now();
        let jid = self.sbatch(spec, &key, forced, &name)?;
        let log = job::log_path(&self.log_dir, &name, jid);
        tracing::info!(stage = %id, key = %key.digest(), job = jid, "submitted");
        self.running.insert(
            id.to_string(),
            Running {
                id: jid,
                key,
                kind,
                log: log.clone(),
                done: job::completion_path(&self.log_dir, &name, jid),
                since,
                ours: true,
                lease,
                relay: self.relay(id, &name, jid),
            },
        );
        Ok(Started::Job {
            label: format!("Slurm job {jid}"),
            log,
        })
    }

    /// One look at the queue after a poll interval: a job that ended is its stage's end, done
    /// or failed ([`ended_job`]); a job that can never start is cancelled and failed.
    fn poll(&mut self) -> Result<Vec<Finished>, RunError> {
        self.sleep();
        if self.interrupted.load(Ordering::SeqCst) {
            return Err(self.cancel().into());
        }
        self.answer()?;
        let queue: BTreeMap<u64, QueuedJob> =
            cmd::queue()?.into_iter().map(|j| (j.id, j)).collect();
        let ids: Vec<String> = self.running.keys().cloned().collect();
        let mut finished = Vec::new();
        for id in ids {
            let seen = queue.get(&self.running[&id].id);
            let never = seen.filter(|q| q.never_starts()).map(|q| q.reason.clone());
            // A job squeue no longer lists has ended (Slurm forgets ended jobs after a while).
            let ended = seen.is_none_or(|q| !q.active());
            if !ended && never.is_none() {
                continue;
            }
            let state = seen.filter(|_| ended).map(|q| q.state.clone());
            let Some(mut job) = self.running.remove(&id) else {
                continue;
            };
            let result = match never {
                Some(reason) => {
                    if job.ours {
                        cmd::cancel(&[job.id]);
                    }
                    Err(SlurmError::NeverStarts {
                        stage: id.clone(),
                        job: job.id,
                        reason,
                    }
                    .into())
                }
                None => ended_job(self.store, &id, &job, state),
            };
            // Given back once the stage is committed (or failed): a waiter then decides again.
            if let Some((mut guard, permit)) = job.lease.take() {
                if result.is_ok() {
                    guard.succeeded();
                }
                drop((guard, permit));
            }
            finished.push(Finished {
                seconds: job.since.elapsed().as_secs_f64(),
                job: Some(format!("Slurm job {}", job.id)),
                result: result.map(|digest| {
                    let report = last_report(self.store, &digest);
                    (digest, report)
                }),
                key: job.key,
                id,
            });
        }
        Ok(finished)
    }
}

/// How an ended job's stage stands: its output digest when the job ended successfully and
/// committed (see the module documentation), else the stage's error. `state` is the job's end
/// as `squeue` still lists it; asked of `scontrol` otherwise.
fn ended_job(
    store: &Store,
    id: &str,
    job: &Running<'_>,
    state: Option<String>,
) -> Result<String, RunError> {
    let hex = job.key.digest();
    let end = match state {
        Some(s) => Some((s, None)),
        None => cmd::job_end(job.id),
    };
    // Slurm may have forgotten a job long ended: its completion record then speaks for it.
    let succeeded = end.as_ref().is_none_or(|(s, _)| s == "COMPLETED");
    let completed = job::Completion::load(&job.done).filter(|c| c.key == hex && c.stage == id);
    let committed = store.lookup(&hex).hit();
    match (succeeded, completed, committed) {
        (
            true,
            Some(job::Completion {
                pruned: Some(p),
                digest: None,
                ..
            }),
            _,
        ) => Err(RunError::Stage {
            stage: id.to_string(),
            kind: job.kind.clone(),
            source: p.error(),
        }),
        (true, Some(_), Some(entry)) => Ok(entry.digest),
        _ => Err(job_failed(id, job, end).into()),
    }
}

/// The error of a job that ended without completing its stage: how Slurm says it ended, and
/// what pipe wrote in its log.
fn job_failed(id: &str, job: &Running<'_>, end: Option<(String, Option<i32>)>) -> SlurmError {
    // squeue knows the state, scontrol also the exit code.
    let (state, exit) = match (end, cmd::job_end(job.id)) {
        (_, Some((s, code))) => (s, code),
        (Some((s, _)), None) => (s, None),
        (None, None) => ("ENDED".into(), None),
    };
    let mut message = match std::fs::read(&job.log) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(64 << 10)..]);
            job::failure_message(&text)
        }
        Err(e) => format!("(its log could not be read: {e})"),
    };
    if state == "COMPLETED" {
        message = format!(
            "the job left no completion record for this stage's key ({}); its log ends:\n{message}",
            job.done.display()
        );
    }
    SlurmError::JobFailed {
        stage: id.to_string(),
        job: job.id,
        state,
        exit,
        message,
        log: job.log.clone(),
    }
}
