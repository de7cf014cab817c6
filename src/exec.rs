//! The executor: runs a [`Plan`] under the cache lock. Stages whose inputs are known are decided
//! with [`plan::decide`] on their real input digests, so a stage the plan said would run stays
//! cached when its upstream reran with byte-identical output (early cutoff); misses run on up to
//! `jobs` worker threads. A worker's panic is caught and reported as that stage's failure, so the
//! run ends (and releases the lock) instead of waiting for a result that never comes.

use crate::cache::StageKey;
use crate::cache::store::Store;
use crate::plan::{self, Decision, Plan, StageState};
use crate::record::{Outcome, StageRecord};
use crate::run::{CacheWorld, RunError};
use crate::spec::StageSpec;
use crate::stages::{StageContext, StageReport};
use indicatif::MultiProgress;
use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Instant;

/// Test-only: a worker panics when it starts the stage with this id, so tests can exercise the
/// panic path without relying on a bug. Not a user feature; documented here only.
pub const TEST_PANIC_ENV: &str = "PIPE_TEST_PANIC_STAGE";

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

/// Runs every stage of `plan` that is not blocked; returns once no stage is running.
pub(crate) fn execute(
    world: &mut CacheWorld<'_>,
    plan: &Plan,
    jobs: usize,
    forced: &BTreeSet<String>,
) -> Executed {
    let pipeline = world.pipeline;
    let store = world.store;
    let selected: Vec<&str> = plan
        .stages
        .iter()
        .filter(|s| !matches!(s.state, StageState::Blocked { .. }))
        .map(|s| s.id.as_str())
        .collect();
    let multi = MultiProgress::new();
    let say = |line: String| multi.suspend(|| println!("{line}"));
    let width = selected.iter().map(|s| s.len()).max().unwrap_or(0);
    let jobs = jobs.max(1);

    let mut digests: BTreeMap<String, String> = BTreeMap::new();
    let mut records: BTreeMap<String, StageRecord> = BTreeMap::new();
    let mut pending: BTreeSet<&str> = selected.iter().copied().collect();
    let mut running: BTreeSet<String> = BTreeSet::new();
    let mut verified: BTreeSet<String> = BTreeSet::new();
    let mut failure: Option<RunError> = None;
    let (tx, rx) = mpsc::channel::<Done>();

    std::thread::scope(|scope| {
        loop {
            // Start every ready stage (in plan order) while slots are free.
            let mut progressed = true;
            while progressed && failure.is_none() {
                progressed = false;
                let ready: Vec<&str> = selected
                    .iter()
                    .copied()
                    .filter(|id| pending.contains(id))
                    .filter(|id| {
                        pipeline.stages[*id]
                            .inputs
                            .values()
                            .all(|p| digests.contains_key(p))
                    })
                    .collect();
                for id in ready {
                    let spec = &pipeline.stages[id];
                    let inputs: BTreeMap<String, String> = spec
                        .inputs
                        .iter()
                        .map(|(slot, p)| (slot.clone(), digests[p].clone()))
                        .collect();
                    let key = match plan::decide(world, id, &inputs, forced.contains(id)) {
                        Ok(Decision::Hit { key, digest }) => {
                            pending.remove(id);
                            let note = match plan.get(id).map(|p| &p.state) {
                                Some(StageState::WouldRun { .. }) => {
                                    "  (planned to run: its inputs turned out unchanged)"
                                }
                                _ => "",
                            };
                            say(format!("  cached  {id:width$}  {}{note}", short(&digest)));
                            let report = last_report(store, &digest);
                            records.insert(
                                id.to_string(),
                                record(
                                    spec,
                                    &key,
                                    Some(digest.clone()),
                                    Outcome::Cached,
                                    0.0,
                                    report,
                                ),
                            );
                            digests.insert(id.to_string(), digest);
                            progressed = true;
                            continue;
                        }
                        Ok(Decision::Miss { key }) => key,
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    };
                    if running.len() >= jobs {
                        break;
                    }
                    // Inputs are about to be read: re-digest them, rebuild any that rotted.
                    if let Some((producer, e)) = first_damaged(store, spec, &digests, &mut verified)
                    {
                        say(format!("  damaged {producer:width$}  {e}: rebuilding"));
                        if let Some(d) = digests.remove(&producer)
                            && let Err(e) = store.remove_object(&d)
                        {
                            failure = Some(e.into());
                            break;
                        }
                        if let Some(p) = selected.iter().find(|s| **s == producer) {
                            pending.insert(*p);
                        }
                        progressed = true;
                        break;
                    }
                    let out = match store.begin(id) {
                        Ok(o) => o,
                        Err(e) => {
                            failure = Some(e.into());
                            break;
                        }
                    };
                    pending.remove(id);
                    running.insert(id.to_string());
                    tracing::info!(stage = %id, key = %key.digest(), "cache miss: running");
                    say(format!("  run     {id:width$}  ({})", spec.config.kind()));
                    let dirs: BTreeMap<String, PathBuf> = inputs
                        .iter()
                        .map(|(slot, d)| (slot.clone(), store.object_dir(d)))
                        .collect();
                    let tx = tx.clone();
                    let multi = &multi;
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
                        let _ = tx.send((spec.id.clone(), key, t.elapsed().as_secs_f64(), result));
                    });
                    progressed = true;
                }
            }
            if running.is_empty() {
                break;
            }
            // Every worker sends exactly once (panics included), so this returns.
            let Ok((id, key, secs, result)) = rx.recv() else {
                break;
            };
            running.remove(&id);
            let spec = &pipeline.stages[&id];
            match result {
                Ok((digest, report)) => {
                    let figures = if report.figures.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", report.figures.join(", "))
                    };
                    say(format!(
                        "  ran     {id:width$}  in {secs:.1} s: {} → {}{figures}",
                        report.summary,
                        store.object_dir(&digest).display()
                    ));
                    verified.insert(id.clone());
                    records.insert(
                        id.clone(),
                        record(spec, &key, Some(digest.clone()), Outcome::Ran, secs, report),
                    );
                    digests.insert(id, digest);
                }
                Err(e) => {
                    say(format!("  failed  {id:width$}  after {secs:.1} s"));
                    let mut r = record(
                        spec,
                        &key,
                        None,
                        Outcome::Failed,
                        secs,
                        StageReport::default(),
                    );
                    r.error = Some(e.to_string());
                    records.insert(id, r);
                    failure.get_or_insert(e);
                }
            }
        }
    });
    if let Some(f) = &failure {
        for id in selected.iter().filter(|id| pending.contains(*id)) {
            say(format!(
                "  blocked {id:width$}  ({})",
                blocked_reason(plan, pipeline, id, &records, f)
            ));
        }
    }
    Executed { records, failure }
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
        progress: multi,
    };
    let report = spec.config.run(&ctx).map_err(stage_err)?;
    crate::stages::artifacts::write_json(&out.dir.join("report.json"), &report)
        .map_err(stage_err)?;
    let digest = store.commit(out, &spec.id, key)?;
    let _ = std::fs::remove_dir_all(&work);
    Ok((digest, report))
}

/// The first input of `spec` whose object no longer matches its manifest.
fn first_damaged(
    store: &Store,
    spec: &StageSpec,
    digests: &BTreeMap<String, String>,
    verified: &mut BTreeSet<String>,
) -> Option<(String, crate::cache::StoreError)> {
    for producer in spec.inputs.values() {
        if verified.contains(producer) {
            continue;
        }
        match store.verify(&digests[producer]) {
            Ok(()) => {
                verified.insert(producer.clone());
            }
            Err(e) => return Some((producer.clone(), e)),
        }
    }
    None
}

/// Why a stage that was never started did not run.
fn blocked_reason(
    plan: &Plan,
    pipeline: &crate::spec::Pipeline,
    id: &str,
    records: &BTreeMap<String, StageRecord>,
    failure: &RunError,
) -> String {
    let failed: Vec<&String> = records
        .iter()
        .filter(|(_, r)| r.outcome == Outcome::Failed)
        .map(|(id, _)| id)
        .collect();
    let upstream = plan
        .stages
        .iter()
        .map(|s| &s.id)
        .filter(|s| failed.contains(s))
        .find(|f| depends_on(pipeline, id, f));
    match upstream {
        Some(f) => format!("upstream `{f}` failed"),
        None => format!("not started: the run stopped ({failure})"),
    }
}

fn depends_on(pipeline: &crate::spec::Pipeline, id: &str, on: &str) -> bool {
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

fn record(
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

/// A cached stage's report, read back from its object so metrics stay in every run record.
fn last_report(store: &Store, digest: &str) -> StageReport {
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
