//! The executor: walk the DAG in topological order, compute each stage's key from its config and
//! its inputs' output digests, skip hits, run misses (independent ones in parallel), commit
//! outputs, and record the run.

use crate::cache::key::CACHE_FORMAT;
use crate::cache::statcache::StatCache;
use crate::cache::store::{KeyEntry, Lookup, Store, StoreError};
use crate::cache::{StageKey, lock::CacheLock};
use crate::graph::Dag;
use crate::ml::backend::DeviceChoice;
use crate::record::{Outcome, RunRecord, StageRecord, now_rfc3339};
use crate::spec::{Pipeline, StageSpec};
use crate::stages::{StageContext, StageError, StageReport};
use indicatif::MultiProgress;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub jobs: usize,
    pub force: Vec<String>,
    pub until: Option<String>,
    pub dry_run: bool,
    pub device: Option<DeviceChoice>,
    pub no_wait: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lock(#[from] crate::cache::lock::LockError),
    #[error("stage `{stage}` ({kind}) failed: {source}")]
    Stage {
        stage: String,
        kind: String,
        #[source]
        source: StageError,
    },
    #[error("stage `{stage}`: {source}")]
    Files {
        stage: String,
        #[source]
        source: crate::cache::statcache::FileError,
    },
    #[error("stage `{stage}`: {source}")]
    Sources {
        stage: String,
        #[source]
        source: StageError,
    },
    #[error("no stage `{0}` in this pipeline{1}")]
    UnknownStage(String, String),
    #[error("{0}")]
    Other(String),
}

impl RunError {
    /// Bad user data or usage (exit 2) versus an internal failure (exit 1).
    pub fn is_user_error(&self) -> bool {
        match self {
            RunError::Stage { source, .. } | RunError::Sources { source, .. } => matches!(
                source,
                StageError::Input { .. } | StageError::Invalid(_) | StageError::Dataset(_)
            ),
            RunError::Files { .. } | RunError::UnknownStage(..) | RunError::Lock(_) => true,
            RunError::Store(e) => e.is_user_error(),
            _ => false,
        }
    }
}

/// Where a stage stands without running anything.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StageState {
    Cached { digest: String },
    Stale { reasons: Vec<String> },
    Missing,
}

pub struct Engine<'a> {
    pub pipeline: &'a Pipeline,
    pub dag: Dag,
    pub store: Store,
    stat: StatCache,
}

impl<'a> Engine<'a> {
    pub fn new(pipeline: &'a Pipeline, cache_root: &Path) -> Result<Self, RunError> {
        let dag = Dag::build(&pipeline.stages)
            .map_err(|c| RunError::Other(format!("cycle: {}", c.join(" → "))))?;
        let store = Store::open(cache_root)?;
        let stat = StatCache::load(cache_root);
        Ok(Self {
            pipeline,
            dag,
            store,
            stat,
        })
    }

    fn check_stage(&self, id: &str) -> Result<(), RunError> {
        if self.pipeline.stages.contains_key(id) {
            Ok(())
        } else {
            let ids = self.pipeline.stages.keys().map(String::as_str);
            Err(RunError::UnknownStage(
                id.to_string(),
                crate::spec::hint(id, ids),
            ))
        }
    }

    /// The key of `spec` given its inputs' digests (None when an input is not yet known).
    pub fn key(
        &mut self,
        spec: &StageSpec,
        digests: &BTreeMap<String, String>,
    ) -> Result<Option<StageKey>, RunError> {
        compute_key(&mut self.stat, spec, digests)
    }
}

/// The key of `spec` given its inputs' digests (None when an input is not yet known).
pub fn compute_key(
    stat: &mut StatCache,
    spec: &StageSpec,
    digests: &BTreeMap<String, String>,
) -> Result<Option<StageKey>, RunError> {
    let mut inputs = BTreeMap::new();
    for (slot, producer) in &spec.inputs {
        match digests.get(producer) {
            Some(d) => {
                inputs.insert(slot.clone(), d.clone());
            }
            None => return Ok(None),
        }
    }
    let mut files = BTreeMap::new();
    let external = spec
        .config
        .external_files(&spec.base_dir)
        .map_err(|source| RunError::Sources {
            stage: spec.id.clone(),
            source,
        })?;
    for (role, paths) in external {
        let d = stat
            .digest_files(&spec.base_dir, &paths)
            .map_err(|source| RunError::Files {
                stage: spec.id.clone(),
                source,
            })?;
        files.insert(role, d);
    }
    Ok(Some(StageKey {
        format: CACHE_FORMAT,
        kind: spec.config.kind().to_string(),
        version: spec.config.version(),
        config: spec.config.canonical(),
        inputs,
        files,
    }))
}

impl<'a> Engine<'a> {
    fn selected(&self, until: Option<&str>) -> Result<Vec<String>, RunError> {
        let order = self.dag.order();
        Ok(match until {
            Some(u) => {
                self.check_stage(u)?;
                let keep = self.dag.ancestors(u);
                order.into_iter().filter(|id| keep.contains(id)).collect()
            }
            None => order,
        })
    }

    /// Each stage's state and why, without running or locking anything.
    pub fn status(&mut self) -> Result<Vec<(String, StageState)>, RunError> {
        let mut digests = BTreeMap::new();
        let mut out = Vec::new();
        for id in self.dag.order() {
            let spec = &self.pipeline.stages[&id];
            let key = self.key(spec, &digests)?;
            let state = match key {
                Some(k) => match self.store.lookup(&k.digest()).hit() {
                    Some(e) => {
                        digests.insert(id.clone(), e.digest.clone());
                        StageState::Cached { digest: e.digest }
                    }
                    None => self.explain(&id, Some(&k)),
                },
                None => {
                    let ups: Vec<String> = spec
                        .inputs
                        .values()
                        .filter(|p| !digests.contains_key(*p))
                        .map(|p| format!("upstream `{p}` will run"))
                        .collect();
                    match self.explain(&id, None) {
                        StageState::Missing => StageState::Missing,
                        _ => StageState::Stale { reasons: ups },
                    }
                }
            };
            out.push((id, state));
        }
        Ok(out)
    }

    /// Why a stage with this (or an unknown) key is not cached, against its last recorded run.
    fn explain(&self, id: &str, key: Option<&StageKey>) -> StageState {
        let Some(last) =
            crate::record::last_stage_record(&self.store.root, &self.pipeline.name, id)
        else {
            return StageState::Missing;
        };
        let mut reasons = match key {
            Some(k) => k.diff(&last.key_parts),
            None => Vec::new(),
        };
        if reasons.is_empty() {
            reasons.push(match last.outcome {
                Outcome::Failed => "its last run failed".to_string(),
                _ => "its cached output was removed or is damaged".to_string(),
            });
        }
        StageState::Stale { reasons }
    }

    /// The key components of `id` that differ from its last recorded run, upstream first.
    pub fn why(&mut self, id: &str) -> Result<Vec<String>, RunError> {
        self.check_stage(id)?;
        let ancestors = self.dag.ancestors(id);
        let mut lines = Vec::new();
        for (sid, state) in self.status()? {
            if !ancestors.contains(&sid) {
                continue;
            }
            let who = if sid == id {
                format!("`{sid}`")
            } else {
                format!("upstream `{sid}`")
            };
            match state {
                StageState::Cached { .. } if sid == id => {
                    lines.push(format!("`{sid}` is cached: nothing changed"))
                }
                StageState::Cached { .. } => {}
                StageState::Missing => lines.push(format!("{who} has never run with this cache")),
                StageState::Stale { reasons } => {
                    for r in reasons {
                        lines.push(format!("{who}: {r}"));
                    }
                }
            }
        }
        Ok(lines)
    }

    /// Runs the pipeline. Returns the run record (also saved unless `dry_run`).
    pub fn run(&mut self, opts: &RunOptions) -> Result<RunRecord, RunError> {
        for f in &opts.force {
            self.check_stage(f)?;
        }
        let selected = self.selected(opts.until.as_deref())?;
        let _lock = if opts.dry_run {
            None
        } else {
            Some(CacheLock::acquire(&self.store.root, opts.no_wait)?)
        };
        if !opts.dry_run {
            self.store.clean_tmp();
        }
        let started = now_rfc3339();
        let t0 = Instant::now();
        let multi = MultiProgress::new();
        let say = |line: String| multi.suspend(|| println!("{line}"));
        let width = selected.iter().map(String::len).max().unwrap_or(0);
        let jobs = opts.jobs.max(1);
        let pipeline = self.pipeline;
        let mut stat = std::mem::take(&mut self.stat);

        let mut digests: BTreeMap<String, String> = BTreeMap::new();
        let mut records: BTreeMap<String, StageRecord> = BTreeMap::new();
        let mut pending: BTreeSet<String> = selected.iter().cloned().collect();
        let mut running: BTreeSet<String> = BTreeSet::new();
        let mut verified: BTreeSet<String> = BTreeSet::new();
        let mut failure: Option<RunError> = None;
        let (tx, rx) = mpsc::channel::<(
            String,
            StageKey,
            f64,
            Result<(String, StageReport), RunError>,
        )>();

        std::thread::scope(|scope| -> Result<(), RunError> {
            loop {
                // Start every ready stage (in topological, then id, order) while slots are free.
                let mut progressed = true;
                while progressed && failure.is_none() {
                    progressed = false;
                    let ready: Vec<String> = selected
                        .iter()
                        .filter(|id| pending.contains(*id))
                        .filter(|id| {
                            pipeline.stages[*id]
                                .inputs
                                .values()
                                .all(|p| digests.contains_key(p))
                        })
                        .cloned()
                        .collect();
                    for id in ready {
                        let spec = &pipeline.stages[&id];
                        let key = match compute_key(&mut stat, spec, &digests) {
                            Ok(Some(k)) => k,
                            Ok(None) => continue,
                            Err(e) => {
                                failure = Some(e);
                                break;
                            }
                        };
                        let key_hex = key.digest();
                        tracing::debug!(stage = %id, key = %key_hex, "key computed");
                        let forced = opts.force.contains(&id);
                        let hit = match self.store.lookup(&key_hex) {
                            Lookup::Damaged { error, .. } if !forced => {
                                say(format!("  damaged {id:width$}  {error}: rebuilding"));
                                None
                            }
                            found => found.hit(),
                        };
                        if !forced && let Some(entry) = hit {
                            pending.remove(&id);
                            say(format!("  cached  {id:width$}  {}", short(&entry.digest)));
                            records.insert(
                                id.clone(),
                                record(
                                    spec,
                                    &key,
                                    Some(entry.digest.clone()),
                                    Outcome::Cached,
                                    0.0,
                                    last_report(&self.store, &entry),
                                ),
                            );
                            digests.insert(id.clone(), entry.digest);
                            progressed = true;
                            continue;
                        }
                        if opts.dry_run {
                            pending.remove(&id);
                            let why = match self.explain(&id, Some(&key)) {
                                StageState::Stale { reasons } => reasons.join("; "),
                                _ => "never ran".into(),
                            };
                            say(format!("  would run {id:width$}  ({why})"));
                            records.insert(
                                id.clone(),
                                record(
                                    spec,
                                    &key,
                                    None,
                                    Outcome::Skipped,
                                    0.0,
                                    StageReport::default(),
                                ),
                            );
                            continue;
                        }
                        if running.len() >= jobs {
                            break;
                        }
                        // Inputs are about to be read: re-digest them, rebuild any that rotted.
                        let mut damaged = None;
                        for producer in spec.inputs.values() {
                            if verified.contains(producer) {
                                continue;
                            }
                            let d = &digests[producer];
                            match self.store.verify(d) {
                                Ok(()) => {
                                    verified.insert(producer.clone());
                                }
                                Err(e) => {
                                    damaged = Some((producer.clone(), e));
                                    break;
                                }
                            }
                        }
                        if let Some((producer, e)) = damaged {
                            say(format!("  damaged {producer:width$}  {e}: rebuilding"));
                            let d = digests
                                .remove(&producer)
                                .expect("verified input had a digest");
                            self.store.remove_object(&d)?;
                            pending.insert(producer);
                            progressed = true;
                            break;
                        }
                        pending.remove(&id);
                        running.insert(id.clone());
                        tracing::info!(stage = %id, key = %key_hex, forced, "cache miss: running");
                        let out = self.store.begin(&id)?;
                        let work = self.store.work_dir(&key_hex);
                        let inputs: BTreeMap<String, PathBuf> = spec
                            .inputs
                            .iter()
                            .map(|(slot, p)| (slot.clone(), self.store.object_dir(&digests[p])))
                            .collect();
                        let tx = tx.clone();
                        let store = &self.store;
                        let multi = &multi;
                        let device = opts.device;
                        say(format!("  run     {id:width$}  ({})", spec.config.kind()));
                        scope.spawn(move || {
                            let t = Instant::now();
                            let span = tracing::info_span!("stage", id = %spec.id, kind = spec.config.kind());
                            let _enter = span.enter();
                            let result = std::fs::create_dir_all(&work)
                                .map_err(|e| RunError::Other(format!("{}: {e}", work.display())))
                                .and_then(|()| {
                                    let ctx = StageContext {
                                        id: &spec.id,
                                        inputs,
                                        out: &out.dir,
                                        base_dir: &spec.base_dir,
                                        work: &work,
                                        progress: multi,
                                        device,
                                        store,
                                    };
                                    spec.config.run(&ctx).map_err(|source| RunError::Stage {
                                        stage: spec.id.clone(),
                                        kind: spec.config.kind().to_string(),
                                        source,
                                    })
                                })
                                .and_then(|report| {
                                    crate::stages::artifacts::write_json(&out.dir.join("report.json"), &report)
                                        .map_err(|source| RunError::Stage { stage: spec.id.clone(), kind: spec.config.kind().into(), source })?;
                                    let digest = store.commit(out, &spec.id, &key)?;
                                    let _ = std::fs::remove_dir_all(&work);
                                    Ok((digest, report))
                                });
                            let _ = tx.send((spec.id.clone(), key, t.elapsed().as_secs_f64(), result));
                        });
                        progressed = true;
                    }
                }
                if running.is_empty() {
                    break;
                }
                let (id, key, secs, result) =
                    rx.recv().map_err(|e| RunError::Other(e.to_string()))?;
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
                            self.store.object_dir(&digest).display()
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
                        if failure.is_none() {
                            failure = Some(e);
                        }
                    }
                }
            }
            Ok(())
        })?;

        self.stat = stat;
        let _ = self.stat.save();
        let rec = RunRecord {
            pipeline: self.pipeline.name.clone(),
            file: self.pipeline.file.display().to_string(),
            started,
            seconds: t0.elapsed().as_secs_f64(),
            ok: failure.is_none(),
            stages: records,
        };
        if !opts.dry_run {
            rec.save(&self.store.root)
                .map_err(|e| RunError::Other(format!("saving the run record: {e}")))?;
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(rec),
        }
    }
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
fn last_report(store: &Store, entry: &KeyEntry) -> StageReport {
    crate::stages::artifacts::read_json(&store.object_dir(&entry.digest).join("report.json"))
        .unwrap_or_default()
}
