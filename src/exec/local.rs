//! The local backend: stages that miss the cache run on up to `-j` worker threads of this
//! process, within the CPUs and GPUs they declare ([`Budget`]). A worker's panic is caught and
//! reported as that stage's failure, so the run ends (and releases the lock) instead of waiting
//! for a result that never comes.

use super::backend::{Backend, Finished, Job, Traits};
use super::budget::{Budget, Need};
use super::error::RunError;
use super::event::{Event, Observer, Started};
use crate::cache::store::TempOut;
use crate::cache::{StageKey, Store};
use crate::record::StageReport;
use crate::spec::StageSpec;
use crate::stages::StageContext;
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::Scope;
use std::time::Instant;

/// Test-only: a worker panics when it starts the stage with this id, so tests can exercise the
/// panic path without relying on a bug. Not a user feature; documented here only.
pub const TEST_PANIC_ENV: &str = "PIPE_TEST_PANIC_STAGE";

/// The thread pool of one run; lives inside the scope its workers are spawned in.
pub struct Local<'scope, 'env> {
    scope: &'scope Scope<'scope, 'env>,
    store: &'env Store,
    observer: &'env dyn Observer,
    jobs: usize,
    budget: Budget,
    /// What each running stage took from the budget.
    running: BTreeMap<String, Need>,
    tx: mpsc::Sender<Finished>,
    rx: mpsc::Receiver<Finished>,
}

impl<'scope, 'env> Local<'scope, 'env> {
    pub fn new(
        scope: &'scope Scope<'scope, 'env>,
        store: &'env Store,
        observer: &'env dyn Observer,
        jobs: usize,
        budget: Budget,
    ) -> Self {
        let (tx, rx) = mpsc::channel();
        Self {
            scope,
            store,
            observer,
            jobs: jobs.max(1),
            budget,
            running: BTreeMap::new(),
            tx,
            rx,
        }
    }
}

impl<'env> Backend<'env> for Local<'_, 'env> {
    fn traits(&self) -> Traits {
        Traits { non_local: false }
    }

    fn has_room(&self, spec: &StageSpec) -> bool {
        self.running.len() < self.jobs && self.budget.fits(self.budget.need(spec))
    }

    /// Starts the stage on a worker thread; a panic in it is caught and sent as its result.
    fn submit(&mut self, job: Job<'env>) -> Result<Started, RunError> {
        let spec = job.spec;
        let out = self.store.begin(&spec.id)?;
        let need = self.budget.need(spec);
        self.budget.take(need);
        self.running.insert(spec.id.clone(), need);
        let (store, observer, tx) = (self.store, self.observer, self.tx.clone());
        let Job {
            key, inputs, lease, ..
        } = job;
        self.scope.spawn(move || {
            let t = Instant::now();
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                run_stage(store, spec, &key, out, inputs, observer)
            }))
            .unwrap_or_else(|payload| {
                Err(RunError::Panicked {
                    stage: spec.id.clone(),
                    message: panic_message(payload.as_ref()),
                })
            });
            // Committed (or failed) before the key is released: a waiter then decides again.
            if let Some((mut guard, permit)) = lease {
                if result.is_ok() {
                    guard.succeeded();
                }
                drop((guard, permit));
            }
            let _ = tx.send(Finished {
                id: spec.id.clone(),
                key,
                seconds: t.elapsed().as_secs_f64(),
                job: None,
                result,
            });
        });
        Ok(Started::Here)
    }

    /// Waits for the next worker to end: every worker sends exactly once (panics included).
    fn poll(&mut self) -> Result<Vec<Finished>, RunError> {
        let Ok(done) = self.rx.recv() else {
            return Ok(Vec::new());
        };
        if let Some(need) = self.running.remove(&done.id) {
            self.budget.give(need);
        }
        Ok(vec![done])
    }
}

/// Runs one stage into `out` and commits it; everything a worker thread does.
fn run_stage(
    store: &Store,
    spec: &StageSpec,
    key: &StageKey,
    out: TempOut,
    inputs: BTreeMap<String, PathBuf>,
    observer: &dyn Observer,
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
    let donors = match key.family_digest(spec.config.extends()) {
        Some(family) => {
            store.join_family(&work, &family)?;
            store.family_work_dirs(&family, &work)
        }
        None => Vec::new(),
    };
    let note = |line: &str| observer.on(&Event::Note { line });
    let epoch_done = |done: &crate::ml::train::EpochDone| observer.epoch(&spec.id, done);
    let ctx = StageContext {
        id: &spec.id,
        inputs,
        out: &out.dir,
        base_dir: &spec.base_dir,
        work: &work,
        files: &key.files,
        progress: observer.progress(),
        note: &note,
        epoch_done: &epoch_done,
        donors: &donors,
        store,
    };
    let report = spec.config.run(&ctx).map_err(stage_err)?;
    crate::stages::artifacts::write_json(&out.dir.join("report.json"), &report.digested())
        .map_err(stage_err)?;
    let digest = store.commit(out, &spec.id, key)?;
    let _ = std::fs::remove_dir_all(&work);
    Ok((digest, report))
}

/// The text of a panic payload (`panic!` with a literal or a formatted message).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
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
