//! The Slurm driver's loop. It plans like a local run, then decides each stage whose inputs are
//! known with the same [`plan::decide`] (so a hit is a hit wherever the cache lookup finds it),
//! and submits only the misses. A stage is done when its job has ended, ended successfully
//! (Slurm's `COMPLETED`), and left its completion record ([`job::Completion`]) for the stage's
//! key, which is then in the cache. The key being in the cache alone proves nothing — a forced
//! rerun starts with it there, and a concurrent writer may commit it — so a job that was
//! cancelled, failed or timed out is a failed stage whatever the cache holds. The queue is read
//! once per poll (`squeue`), for all jobs at once.
//!
//! Resumable: a driver killed mid-run leaves its jobs running; the next driver finds them in the
//! queue by name (which carries the stage key) and waits for them instead of submitting again.
//! SIGINT/SIGTERM cancel (`scancel`) the jobs this driver submitted.
//!
//! The driver holds the cache lock shared (as the jobs' `--only` runs do), so a local `pipe run`
//! or `gc` waits until the driver and its jobs are done.

use super::cmd::{self, QueuedJob};
use super::job;
use super::{Request, SlurmError};
use crate::cache::StageKey;
use crate::cache::lock::CacheLock;
use crate::commands::{done_line, header};
use crate::error::{EXIT_INTERNAL, EXIT_INVALID, EXIT_OK};
use crate::exec::budget::on_gpu;
use crate::exec::ready::Ready;
use crate::plan::{self, Decision, Plan, StageState};
use crate::record::{Outcome, RunRecord, StageRecord, now_rfc3339};
use crate::run::{CacheWorld, Engine};
use crate::spec::resources::Resources;
use crate::stages::StageReport;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// `pipe run --executor slurm`: the exit code.
pub fn run(req: &Request<'_>) -> i32 {
    match drive(req) {
        Ok(rec) => {
            done_line(&rec);
            EXIT_OK
        }
        Err(e) => {
            errln!("error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                if !e.to_string().contains(&s.to_string()) {
                    errln!("  caused by: {s}");
                }
                source = s.source();
            }
            if e.is_user_error() {
                EXIT_INVALID
            } else {
                EXIT_INTERNAL
            }
        }
    }
}

/// A stage handed to Slurm.
struct Job {
    id: u64,
    key: StageKey,
    log: PathBuf,
    /// Its completion record ([`job::Completion`]).
    done: PathBuf,
    since: Instant,
    /// Submitted by this driver (cancelled on Ctrl-C), not found from an earlier one.
    ours: bool,
}

struct Driver<'r> {
    req: &'r Request<'r>,
    plan: Plan,
    defaults: Resources,
    width: usize,
    digests: BTreeMap<String, String>,
    /// The stages to handle (in plan order) still pending, and which of them can start.
    pending: Ready<'r>,
    running: BTreeMap<String, Job>,
    records: BTreeMap<String, StageRecord>,
    /// Jobs of earlier drivers still queued or running, by name; read at the first miss (a run
    /// with nothing to submit never asks Slurm anything).
    earlier: Option<BTreeMap<String, QueuedJob>>,
    log_dir: PathBuf,
    workdir: PathBuf,
    /// Names this cache in job names ([`job::cache_tag`]).
    cache_tag: String,
    exe: PathBuf,
    failure: Option<SlurmError>,
    interrupted: Arc<AtomicBool>,
}

fn drive(req: &Request<'_>) -> Result<RunRecord, SlurmError> {
    let started = now_rfc3339();
    let t0 = Instant::now();
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&interrupted)).map_err(|source| {
            SlurmError::Io {
                path: PathBuf::from("signal handler"),
                source,
            }
        })?;
    }
    let mut engine = Engine::new(req.pipeline, req.cache)?;
    engine.check_paths(req.opts.until.as_deref())?;
    let _lock = CacheLock::acquire_shared(req.cache, req.opts.no_wait)
        .map_err(|e| SlurmError::Run(e.into()))?;
    let plan = engine.plan(req.opts.until.as_deref(), &req.opts.force)?;
    header(req.pipeline, req.cache);
    let io = |path: &PathBuf| {
        let path = path.clone();
        move |source| SlurmError::Io { path, source }
    };
    let workdir = std::env::current_dir().map_err(io(&PathBuf::from(".")))?;
    let abs_cache = workdir.join(req.cache);
    let cache_tag = job::cache_tag(&abs_cache);
    let log_dir = abs_cache.join("work").join("slurm");
    std::fs::create_dir_all(&log_dir).map_err(io(&log_dir))?;
    let exe = std::env::current_exe().map_err(io(&PathBuf::from("pipe")))?;
    let selected: Vec<&str> = plan
        .stages
        .iter()
        .filter(|s| !matches!(s.state, StageState::Blocked { .. }))
        .filter_map(|s| req.pipeline.stages.get_key_value(&s.id))
        .map(|(id, _)| id.as_str())
        .collect();
    let defaults = req
        .config
        .default_resources()
        .map_err(|e| SlurmError::Parse {
            command: crate::config::FILE_NAME.into(),
            output: e.to_string(),
        })?;
    let mut d = Driver {
        req,
        width: selected.iter().map(|s| s.len()).max().unwrap_or(0),
        pending: Ready::new(selected, &req.pipeline.stages),
        plan,
        defaults,
        digests: BTreeMap::new(),
        running: BTreeMap::new(),
        records: BTreeMap::new(),
        earlier: None,
        log_dir,
        workdir,
        cache_tag,
        exe,
        failure: None,
        interrupted,
    };
    let poll = req.config.executor.poll();
    let mut world = engine.world();
    loop {
        d.start_ready(&mut world)?;
        if d.running.is_empty() {
            break;
        }
        d.sleep(poll);
        if d.interrupted.load(Ordering::SeqCst) {
            let ours: Vec<u64> = d
                .running
                .values()
                .filter(|j| j.ours)
                .map(|j| j.id)
                .collect();
            cmd::cancel(&ours);
            return Err(SlurmError::Interrupted { cancelled: ours });
        }
        d.poll(&world)?;
    }
    d.report_blocked();
    let rec = RunRecord {
        pipeline: req.pipeline.name.clone(),
        file: req.pipeline.file.display().to_string(),
        started,
        seconds: t0.elapsed().as_secs_f64(),
        ok: d.failure.is_none(),
        stages: std::mem::take(&mut d.records),
        sweep: None,
        variant: BTreeMap::new(),
        overrides: req.opts.overrides.clone(),
    };
    rec.save(req.cache)
        .map_err(|e| SlurmError::Run(crate::run::RunError::Record(e)))?;
    match d.failure {
        Some(e) => Err(e),
        None => Ok(rec),
    }
}

impl Driver<'_> {
    fn say(&self, line: String) {
        outln!("{line}");
    }

    /// Decides every ready stage: records hits, submits (or finds queued) jobs for misses.
    fn start_ready(&mut self, world: &mut CacheWorld<'_>) -> Result<(), SlurmError> {
        while self.failure.is_none() && !self.interrupted.load(Ordering::SeqCst) {
            let Some(id) = self.first_ready() else {
                return Ok(());
            };
            let inputs = self.inputs(&id);
            let forced = self.req.opts.force.contains(&id);
            match plan::decide(world, &id, &inputs, forced)? {
                Decision::Hit { key, digest } => self.cached(world, &id, key, digest),
                // A stage the remote holds is pulled by its job, on the node that needs it.
                Decision::Miss { key } | Decision::Remote { key, .. } => {
                    self.pending.take(&id);
                    match self.submit(&id, key.clone(), forced) {
                        Ok(job) => {
                            self.running.insert(id, job);
                        }
                        Err(e) => self.fail(&id, &key, 0.0, e),
                    }
                }
            }
        }
        Ok(())
    }

    /// The first pending stage (in plan order) whose inputs are all committed.
    fn first_ready(&self) -> Option<String> {
        self.pending.first().map(str::to_string)
    }

    fn inputs(&self, id: &str) -> BTreeMap<String, String> {
        self.req.pipeline.stages[id]
            .inputs
            .iter()
            .map(|(slot, p)| (slot.clone(), self.digests[p].clone()))
            .collect()
    }

    fn cached(&mut self, world: &CacheWorld<'_>, id: &str, key: StageKey, digest: String) {
        self.pending.take(id);
        let w = self.width;
        let note = match self.plan.get(id).map(|p| &p.state) {
            Some(StageState::WouldRun { .. }) => {
                "  (planned to run: its inputs turned out unchanged)"
            }
            _ => "",
        };
        self.say(format!(
            "  cached  {id:w$}  {}{note}",
            &digest[..12.min(digest.len())]
        ));
        let spec = &self.req.pipeline.stages[id];
        let r = crate::exec::cached_record(world.store, spec, &key, &digest);
        self.records.insert(id.to_string(), r);
        self.pending.known(id);
        self.digests.insert(id.to_string(), digest);
    }

    /// Submits `id`'s job, or adopts the job an earlier driver submitted for the same key.
    fn submit(&mut self, id: &str, key: StageKey, forced: bool) -> Result<Job, SlurmError> {
        let name = job::name(id, &key, &self.cache_tag);
        let w = self.width;
        if self.earlier.is_none() {
            let active = cmd::queue()?
                .into_iter()
                .filter(|j| j.active() && j.name.starts_with("pipe."))
                .map(|j| (j.name.clone(), j))
                .collect();
            self.earlier = Some(active);
        }
        let earlier = self.earlier.as_mut().and_then(|e| e.remove(&name));
        if let Some(q) = earlier.filter(|_| !forced) {
            self.say(format!(
                "  waiting {id:w$}  Slurm job {} ({}, submitted by an earlier run)",
                q.id,
                q.state.to_lowercase()
            ));
            return Ok(Job {
                id: q.id,
                log: job::log_path(&self.log_dir, &name, q.id),
                done: job::completion_path(&self.log_dir, &name, q.id),
                key,
                since: Instant::now(),
                ours: false,
            });
        }
        let spec = &self.req.pipeline.stages[id];
        let command = job::Command {
            exe: &self.exe,
            file: self.req.file,
            cache: self.req.cache,
            stage: id,
            set: self.req.set,
            device: self.req.device,
            forced,
            name: &name,
            dir: &self.log_dir,
        };
        let script = self.log_dir.join(format!("{name}.sh"));
        std::fs::write(&script, command.script(&key)?).map_err(|source| SlurmError::Io {
            path: script.clone(),
            source,
        })?;
        let resources = spec.resources.or(&self.defaults);
        let mut args = job::sbatch_args(
            &name,
            &job::log_pattern(&self.log_dir, &name),
            &self.workdir,
            &resources,
            on_gpu(spec),
        );
        args.push(script.display().to_string());
        let since = Instant::now();
        let jid = cmd::submit(id, &args)?;
        let log = job::log_path(&self.log_dir, &name, jid);
        let done = job::completion_path(&self.log_dir, &name, jid);
        tracing::info!(stage = %id, key = %key.digest(), job = jid, "cache miss: submitted");
        self.say(format!(
            "  submit  {id:w$}  Slurm job {jid} ({}) → {}",
            spec.config.kind(),
            log.display()
        ));
        Ok(Job {
            id: jid,
            key,
            log,
            done,
            since,
            ours: true,
        })
    }

    /// Sleeps one poll interval, waking early on Ctrl-C.
    fn sleep(&self, poll: Duration) {
        let until = Instant::now() + poll;
        while Instant::now() < until && !self.interrupted.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20).min(poll));
        }
    }

    /// One look at the queue: a job that ended is its stage's end, done or failed
    /// ([`ended_job`]); a job that can never start is cancelled and failed.
    fn poll(&mut self, world: &CacheWorld<'_>) -> Result<(), SlurmError> {
        let queue: BTreeMap<u64, QueuedJob> =
            cmd::queue()?.into_iter().map(|j| (j.id, j)).collect();
        let ids: Vec<String> = self.running.keys().cloned().collect();
        for id in ids {
            let seen = queue.get(&self.running[&id].id);
            let never = seen.filter(|q| q.never_starts()).map(|q| q.reason.clone());
            // A job squeue no longer lists has ended (Slurm forgets ended jobs after a while).
            let ended = seen.is_none_or(|q| !q.active());
            if !ended && never.is_none() {
                continue;
            }
            let state = seen.filter(|_| ended).map(|q| q.state.clone());
            let Some(job) = self.running.remove(&id) else {
                continue;
            };
            let secs = job.since.elapsed().as_secs_f64();
            if let Some(reason) = never {
                if job.ours {
                    cmd::cancel(&[job.id]);
                }
                let e = SlurmError::NeverStarts {
                    stage: id.clone(),
                    job: job.id,
                    reason,
                };
                self.fail(&id, &job.key, secs, e);
                continue;
            }
            match ended_job(world, &id, &job, state) {
                Ok(digest) => self.ran(world, &id, job, digest),
                Err(e) => self.fail(&id, &job.key, secs, e),
            }
        }
        Ok(())
    }

    fn ran(&mut self, world: &CacheWorld<'_>, id: &str, job: Job, digest: String) {
        let secs = job.since.elapsed().as_secs_f64();
        let report = crate::exec::last_report(world.store, &digest);
        let w = self.width;
        let figures = if report.figures.is_empty() {
            String::new()
        } else {
            format!(" [{}]", report.figures.join(", "))
        };
        self.say(format!(
            "  ran     {id:w$}  in {secs:.1} s (Slurm job {}): {} → {}{figures}",
            job.id,
            report.summary,
            world.store.object_dir(&digest).display()
        ));
        let spec = &self.req.pipeline.stages[id];
        let r = crate::exec::record(
            spec,
            &job.key,
            Some(digest.clone()),
            Outcome::Ran,
            secs,
            report,
        );
        self.records.insert(id.to_string(), r);
        self.pending.known(id);
        self.digests.insert(id.to_string(), digest);
    }

    fn fail(&mut self, id: &str, key: &StageKey, secs: f64, e: SlurmError) {
        let w = self.width;
        self.say(format!("  failed  {id:w$}  after {secs:.1} s"));
        let spec = &self.req.pipeline.stages[id];
        let mut r = crate::exec::record(
            spec,
            key,
            None,
            Outcome::Failed,
            secs,
            StageReport::default(),
        );
        r.error = Some(e.to_string());
        self.records.insert(id.to_string(), r);
        self.failure.get_or_insert(e);
    }

    /// After a failure: one line per stage never submitted, saying why.
    fn report_blocked(&self) {
        if self.failure.is_none() {
            return;
        }
        let w = self.width;
        for id in self.pending.pending() {
            self.say(format!(
                "  blocked {id:w$}  (not submitted: a stage failed)"
            ));
        }
    }
}

/// How an ended job's stage stands: its output digest when the job ended successfully and
/// committed (see the module documentation), else the stage's error. `state` is the job's end
/// as `squeue` still lists it; asked of `scontrol` otherwise.
fn ended_job(
    world: &CacheWorld<'_>,
    id: &str,
    job: &Job,
    state: Option<String>,
) -> Result<String, SlurmError> {
    let hex = job.key.digest();
    let end = match state {
        Some(s) => Some((s, None)),
        None => cmd::job_end(job.id),
    };
    // Slurm may have forgotten a job long ended: its completion record then speaks for it.
    let succeeded = end.as_ref().is_none_or(|(s, _)| s == "COMPLETED");
    let completed = job::Completion::load(&job.done).filter(|c| c.key == hex && c.stage == id);
    let committed = world.store.lookup(&hex).hit();
    match (succeeded, completed, committed) {
        (true, Some(_), Some(entry)) => Ok(entry.digest),
        _ => Err(job_failed(id, job, end)),
    }
}

/// The error of a job that ended without completing its stage: how Slurm says it ended, and
/// what pipe wrote in its log.
fn job_failed(id: &str, job: &Job, end: Option<(String, Option<i32>)>) -> SlurmError {
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
