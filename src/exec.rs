//! The executor: runs a [`Plan`] under the cache lock. Stages whose inputs are known are decided
//! with [`plan::decide`] on their real input digests, so a stage the plan said would run stays
//! cached when its upstream reran with byte-identical output (early cutoff); misses run on up to
//! `jobs` worker threads. A worker's panic is caught and reported as that stage's failure, so the
//! run ends (and releases the lock) instead of waiting for a result that never comes.
//! The executors of a sweep's variants can run at once, sharing a job budget and the keys in
//! flight through [`shared::Shared`] (see [`Sharing`]).

pub mod budget;
pub(crate) mod ready;
pub mod shared;

use crate::cache::StageKey;
use crate::cache::store::{Lookup, Store};
use crate::plan::{self, Decision, Plan, StageState};
use crate::record::{Outcome, StageRecord};
use crate::run::{CacheWorld, RunError};
use crate::spec::{Pipeline, StageSpec};
use crate::stages::{StageContext, StageReport};
use indicatif::MultiProgress;
use shared::{Claim, KeyGuard, Permit, Shared};
use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Instant;

/// Test-only: a worker panics when it starts the stage with this id, so tests can exercise the
/// panic path without relying on a bug. Not a user feature; documented here only.
pub const TEST_PANIC_ENV: &str = "PIPE_TEST_PANIC_STAGE";

/// How one variant's executor takes part in a sweep run at once with the others.
pub(crate) struct Sharing<'s> {
    pub(crate) shared: &'s Shared,
    /// Put before every line this executor prints, e.g. `[2] `.
    pub(crate) prefix: String,
}

/// What the executor leaves behind: a record per stage it reached, and the first failure.
pub(crate) struct Executed {
    pub(crate) records: BTreeMap<String, StageRecord>,
    pub(crate) failure: Option<RunError>,
}

type Done = (
    String,
    StageKey,
    f64,
    Result<(String, StageReport), RunError>,
);

/// The executor's bookkeeping while the plan runs.
struct State<'a> {
    plan: &'a Plan,
    pipeline: &'a Pipeline,
    store: &'a Store,
    multi: &'a MultiProgress,
    width: usize,
    digests: BTreeMap<String, String>,
    records: BTreeMap<String, StageRecord>,
    /// The stages to handle (in plan order) still pending, and which of them can start.
    pending: ready::Ready<'a>,
    running: BTreeSet<String>,
    verified: BTreeSet<String>,
    failure: Option<RunError>,
    sharing: Option<&'a Sharing<'a>>,
    /// CPUs and GPUs declared by the running stages ([`budget`]).
    budget: budget::Budget,
    /// The shared remote cache: local misses it holds are pulled, what runs is uploaded.
    remote: Option<&'a std::sync::Arc<crate::remote::Remote>>,
}

/// What to do with a stage whose inputs are all known.
enum Next {
    Cached,
    Run(StageKey),
    /// An input was damaged and is scheduled for a rebuild; look again.
    Rebuild,
}

/// Whether a stage about to run may start.
enum Slot<'a> {
    /// Not in a sweep run at once: the local `jobs` limit is all.
    Alone,
    /// The key and a job slot are this executor's until the worker ends.
    Shared(KeyGuard<'a>, Permit<'a>),
    /// Another variant ran the key meanwhile: decide again (now a cache hit).
    Again,
}

/// Runs every stage of `plan` that is not blocked; returns once no stage is running.
pub(crate) fn execute(
    world: &mut CacheWorld<'_>,
    plan: &Plan,
    jobs: usize,
    forced: &BTreeSet<String>,
    sharing: Option<&Sharing<'_>>,
    budget: budget::Budget,
) -> Executed {
    let multi = MultiProgress::new();
    let selected: Vec<&str> = plan
        .stages
        .iter()
        .filter(|s| !matches!(s.state, StageState::Blocked { .. }))
        .map(|s| s.id.as_str())
        .collect();
    let mut st = State {
        plan,
        pipeline: world.pipeline,
        store: world.store,
        multi: &multi,
        width: selected.iter().map(|s| s.len()).max().unwrap_or(0),
        pending: ready::Ready::new(selected, &world.pipeline.stages),
        digests: BTreeMap::new(),
        records: BTreeMap::new(),
        running: BTreeSet::new(),
        verified: BTreeSet::new(),
        failure: None,
        sharing,
        budget,
        remote: world.remote,
    };
    let jobs = jobs.max(1);
    let (tx, rx) = mpsc::channel::<Done>();
    std::thread::scope(|scope| {
        loop {
            // Start every ready stage (in plan order) while slots are free.
            while st.failure.is_none() {
                let Some(id) = st.first_ready() else {
                    break;
                };
                match st.next(world, id, forced.contains(id)) {
                    Ok(Next::Cached | Next::Rebuild) => {}
                    Ok(Next::Run(_)) if st.running.len() >= jobs => break,
                    Ok(Next::Run(_)) if !st.budget.fits(st.need(id)) => break,
                    Ok(Next::Run(key)) => {
                        let shared = match st.take_shared(&key, forced.contains(id)) {
                            Slot::Again => continue,
                            Slot::Alone => None,
                            Slot::Shared(guard, permit) => Some((guard, permit)),
                        };
                        if let Err(e) = st.spawn(scope, &tx, id, key, shared) {
                            st.failure = Some(e);
                        }
                    }
                    Err(e) => st.failure = Some(e),
                }
            }
            if st.running.is_empty() {
                break;
            }
            // Every worker sends exactly once (panics included), so this returns.
            let Ok(done) = rx.recv() else {
                break;
            };
            st.finished(done);
        }
    });
    st.report_blocked();
    Executed {
        records: st.records,
        failure: st.failure,
    }
}

impl<'a> State<'a> {
    fn say(&self, line: String) {
        let prefix = self.sharing.map_or("", |s| s.prefix.as_str());
        self.multi.suspend(|| outln!("{prefix}{line}"));
    }

    /// In a shared run: the right to run `key` and a job slot, blocking while another variant
    /// runs it or every slot is taken.
    fn take_shared(&self, key: &StageKey, forced: bool) -> Slot<'a> {
        let Some(sharing) = self.sharing else {
            return Slot::Alone;
        };
        let hex = key.digest();
        let guard = match sharing.shared.claim(&hex) {
            Claim::WaitedFor => return Slot::Again,
            Claim::Mine(g) => g,
        };
        // Another variant may have committed it between our decision and the claim.
        if sharing.shared.ran(&hex) || (!forced && self.store.lookup(&hex).hit().is_some()) {
            return Slot::Again;
        }
        Slot::Shared(guard, sharing.shared.permit())
    }

    fn need(&self, id: &str) -> budget::Need {
        self.budget.need(&self.pipeline.stages[id])
    }

    /// The first pending stage (in plan order) whose inputs are all known.
    fn first_ready(&self) -> Option<&'a str> {
        self.pending.first()
    }

    /// Decides a ready stage on its real input digests; records a hit at once.
    fn next(
        &mut self,
        world: &mut CacheWorld<'_>,
        id: &'a str,
        forced: bool,
    ) -> Result<Next, RunError> {
        let spec = &self.pipeline.stages[id];
        let inputs = self.inputs(spec);
        let mut decision = plan::decide(world, id, &inputs, forced)?;
        // A forced stage another variant already ran in this sweep is not run again.
        if let (Decision::Miss { key }, true, Some(s)) = (&decision, forced, self.sharing)
            && s.shared.ran(&key.digest())
        {
            decision = plan::decide(world, id, &inputs, false)?;
        }
        let key = match decision {
            Decision::Hit { key, digest } => {
                self.cached(spec, key, digest);
                return Ok(Next::Cached);
            }
            Decision::Remote { key, .. } => {
                if let Some(digest) = self.pull(id, &key) {
                    self.record_cached(spec, key, digest);
                    return Ok(Next::Cached);
                }
                key
            }
            Decision::Miss { key } => {
                if !forced && let Lookup::Damaged { error, .. } = self.store.lookup(&key.digest()) {
                    let w = self.width;
                    self.say(format!("  damaged {id:w$}  {error}: rebuilding"));
                }
                key
            }
        };
        // Inputs are about to be read: re-digest them, rebuild any that rotted.
        if let Some((producer, e)) = self.first_damaged(spec) {
            let w = self.width;
            self.say(format!("  damaged {producer:w$}  {e}: rebuilding"));
            if let Some(d) = self.digests.remove(&producer) {
                self.pending.forgotten(&producer);
                self.store.remove_object(&d)?;
            }
            self.pending.put_back(&producer);
            return Ok(Next::Rebuild);
        }
        Ok(Next::Run(key))
    }

    fn inputs(&self, spec: &StageSpec) -> BTreeMap<String, String> {
        spec.inputs
            .iter()
            .map(|(slot, p)| (slot.clone(), self.digests[p].clone()))
            .collect()
    }

    fn cached(&mut self, spec: &StageSpec, key: StageKey, digest: String) {
        let id = spec.id.as_str();
        self.pending.take(id);
        let by_another = self.sharing.is_some_and(|s| s.shared.ran(&key.digest()));
        let note = match self.plan.get(id).map(|p| &p.state) {
            Some(StageState::WouldRun { .. }) if by_another => "  (run by another variant)",
            Some(StageState::WouldRun { .. }) => {
                "  (planned to run: its inputs turned out unchanged)"
            }
            _ => "",
        };
        let w = self.width;
        self.say(format!("  cached  {id:w$}  {}{note}", short(&digest)));
        self.record_cached(spec, key, digest);
    }

    /// Downloads the remote's output of `key` into the cache; `None` (after a warning) when it
    /// cannot be used, and the stage runs locally.
    fn pull(&self, id: &str, key: &StageKey) -> Option<String> {
        let remote = self.remote?;
        let entry = remote.lookup(&key.digest())?;
        let w = self.width;
        match remote.pull(self.store, &entry) {
            Ok(p) => {
                self.say(format!(
                    "  pulled  {id:w$}  {}  {} in {:.1} s",
                    short(&p.digest),
                    crate::commands::human_bytes(p.bytes),
                    p.seconds
                ));
                Some(p.digest)
            }
            Err(e) => {
                self.multi.suspend(|| remote.report(&e));
                remote.forget(&key.digest());
                if matches!(e, crate::remote::RemoteError::Damaged { .. }) {
                    self.say(format!(
                        "  remote  {id:w$}  not used: running it locally (then `pipe push \
                         --repair` replaces the remote copy)"
                    ));
                }
                None
            }
        }
    }

    /// Records a stage whose output is in the cache (found or just pulled).
    fn record_cached(&mut self, spec: &StageSpec, key: StageKey, digest: String) {
        let id = spec.id.as_str();
        self.pending.take(id);
        self.records.insert(
            id.to_string(),
            cached_record(self.store, spec, &key, &digest),
        );
        self.pending.known(id);
        self.digests.insert(id.to_string(), digest);
    }

    /// The first input of `spec` whose object no longer matches its manifest.
    fn first_damaged(&mut self, spec: &StageSpec) -> Option<(String, crate::cache::StoreError)> {
        for producer in spec.inputs.values() {
            if self.verified.contains(producer) {
                continue;
            }
            match self.store.verify(&self.digests[producer]) {
                Ok(()) => {
                    self.verified.insert(producer.clone());
                }
                Err(e) => return Some((producer.clone(), e)),
            }
        }
        None
    }

    /// Starts `id` on a worker thread; a panic in it is caught and sent as its result.
    fn spawn<'scope>(
        &mut self,
        scope: &'scope std::thread::Scope<'scope, '_>,
        tx: &mpsc::Sender<Done>,
        id: &'a str,
        key: StageKey,
        shared: Option<(KeyGuard<'a>, Permit<'a>)>,
    ) -> Result<(), RunError>
    where
        'a: 'scope,
    {
        let spec = &self.pipeline.stages[id];
        let out = self.store.begin(id)?;
        self.pending.take(id);
        self.running.insert(id.to_string());
        self.budget.take(self.need(id));
        tracing::info!(stage = %id, key = %key.digest(), "cache miss: running");
        let w = self.width;
        self.say(format!("  run     {id:w$}  ({})", spec.config.kind()));
        let dirs: BTreeMap<String, PathBuf> = self
            .inputs(spec)
            .into_iter()
            .map(|(slot, d)| (slot, self.store.object_dir(&d)))
            .collect();
        let (store, multi, tx) = (self.store, self.multi, tx.clone());
        scope.spawn(move || {
            let t = Instant::now();
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                run_stage(store, spec, &key, out, dirs, multi)
            }))
            .unwrap_or_else(|payload| {
                Err(RunError::Panicked {
                    stage: spec.id.clone(),
                    message: panic_message(payload.as_ref()),
                })
            });
            // Committed (or failed) before the key is released: a waiter then decides again.
            if let Some((mut guard, permit)) = shared {
                if result.is_ok() {
                    guard.succeeded();
                }
                drop((guard, permit));
            }
            let _ = tx.send((spec.id.clone(), key, t.elapsed().as_secs_f64(), result));
        });
        Ok(())
    }

    /// Records a worker's result.
    fn finished(&mut self, (id, key, secs, result): Done) {
        self.running.remove(&id);
        self.budget.give(self.need(&id));
        let spec = &self.pipeline.stages[&id];
        let w = self.width;
        match result {
            Ok((digest, report)) => {
                let figures = if report.figures.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", report.figures.join(", "))
                };
                self.say(format!(
                    "  ran     {id:w$}  in {secs:.1} s: {} → {}{figures}",
                    report.summary,
                    self.store.object_dir(&digest).display()
                ));
                self.verified.insert(id.clone());
                if let Some(r) = self.remote {
                    r.push_later(
                        &self.store.root,
                        crate::cache::store::KeyEntry {
                            digest: digest.clone(),
                            stage: id.clone(),
                            key: key.clone(),
                        },
                    );
                }
                self.records.insert(
                    id.clone(),
                    record(spec, &key, Some(digest.clone()), Outcome::Ran, secs, report),
                );
                self.pending.known(&id);
                self.digests.insert(id, digest);
            }
            Err(e) => {
                self.say(format!("  failed  {id:w$}  after {secs:.1} s"));
                let mut r = record(
                    spec,
                    &key,
                    None,
                    Outcome::Failed,
                    secs,
                    StageReport::default(),
                );
                r.error = Some(e.to_string());
                self.records.insert(id, r);
                self.failure.get_or_insert(e);
            }
        }
    }

    /// After a failure: one line per stage that never started, saying why.
    fn report_blocked(&self) {
        let Some(failure) = &self.failure else {
            return;
        };
        let failed: Vec<&String> = self
            .records
            .iter()
            .filter(|(_, r)| r.outcome == Outcome::Failed)
            .map(|(id, _)| id)
            .collect();
        let w = self.width;
        for id in self.pending.pending() {
            let upstream = failed.iter().find(|f| depends_on(self.pipeline, id, f));
            let why = match upstream {
                Some(f) => format!("upstream `{f}` failed"),
                None => format!("not started: the run stopped ({failure})"),
            };
            self.say(format!("  blocked {id:w$}  ({why})"));
        }
    }
}

/// Runs one stage into `out` and commits it; everything a worker thread does.
fn run_stage(
    store: &Store,
    spec: &StageSpec,
    key: &StageKey,
    out: crate::cache::store::TempOut,
    inputs: BTreeMap<String, PathBuf>,
    multi: &MultiProgress,
) -> Result<(String, StageReport), RunError> {
    let span = tracing::info_span!("stage", id = %spec.id, kind = spec.config.kind());
    let _enter = span.enter();
    if std::env::var(TEST_PANIC_ENV).is_ok_and(|v| v == spec.id) {
        panic!("{TEST_PANIC_ENV} asked stage `{}` to panic", spec.id);
    }
    let stage_err = |source| RunError::Stage {
        stage: spec.id.clone(),
        kind: spec.config.kind().to_string(),
        source,
    };
    let work = store.work_dir(&key.digest());
    std::fs::create_dir_all(&work).map_err(|source| RunError::Io {
        path: work.clone(),
        source,
    })?;
    let ctx = StageContext {
        id: &spec.id,
        inputs,
        out: &out.dir,
        base_dir: &spec.base_dir,
        work: &work,
        files: &key.files,
        progress: multi,
        store,
    };
    let report = spec.config.run(&ctx).map_err(stage_err)?;
    crate::stages::artifacts::write_json(&out.dir.join("report.json"), &report.digested())
        .map_err(stage_err)?;
    let digest = store.commit(out, &spec.id, key)?;
    let _ = std::fs::remove_dir_all(&work);
    Ok((digest, report))
}

fn depends_on(pipeline: &Pipeline, id: &str, on: &str) -> bool {
    let mut stack = vec![id];
    let mut seen = BTreeSet::new();
    while let Some(s) = stack.pop() {
        if s == on {
            return true;
        }
        if seen.insert(s) {
            stack.extend(pipeline.stages[s].inputs.values().map(String::as_str));
        }
    }
    false
}

/// The text of a panic payload (`panic!` with a literal or a formatted message).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

fn short(d: &str) -> &str {
    &d[..12.min(d.len())]
}

pub(crate) fn record(
    spec: &StageSpec,
    key: &StageKey,
    digest: Option<String>,
    outcome: Outcome,
    seconds: f64,
    report: StageReport,
) -> StageRecord {
    StageRecord {
        kind: spec.config.kind().to_string(),
        key: key.digest(),
        key_parts: key.clone(),
        digest,
        outcome,
        seconds,
        report,
        error: None,
    }
}

/// The record of a stage whose output was found in the cache, its report read back from the object.
pub(crate) fn cached_record(
    store: &Store,
    spec: &StageSpec,
    key: &StageKey,
    digest: &str,
) -> StageRecord {
    let report = last_report(store, digest);
    record(
        spec,
        key,
        Some(digest.to_string()),
        Outcome::Cached,
        0.0,
        report,
    )
}

/// A cached stage's report, read back from its object so metrics stay in every run record.
pub(crate) fn last_report(store: &Store, digest: &str) -> StageReport {
    crate::stages::artifacts::read_json(&store.object_dir(digest).join("report.json"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_payloads_become_messages() {
        let p = std::panic::catch_unwind(|| panic!("capacity overflow")).unwrap_err();
        assert_eq!(panic_message(p.as_ref()), "capacity overflow");
        let n = 3;
        let p = std::panic::catch_unwind(|| panic!("index {n} out of range")).unwrap_err();
        assert_eq!(panic_message(p.as_ref()), "index 3 out of range");
    }
}
