//! The engine's front door: builds the DAG, computes stage keys, asks the planner what stands
//! where ([`crate::plan`]), and for a real run takes the cache lock, plans again under it and
//! hands the plan to the executor ([`crate::exec`]), then records the run.

use crate::cache::key::CACHE_FORMAT;
use crate::cache::statcache::StatCache;
use crate::cache::store::{Store, StoreError};
use crate::cache::{StageKey, lock::CacheLock};
use crate::graph::Dag;
use crate::plan::{self, LastRun, Node, Plan, Reason, StageState, World};
use crate::record::{Outcome, RunRecord, now_rfc3339};
use crate::spec::{Pipeline, StageSpec};
use crate::stages::StageError;
use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub jobs: usize,
    pub force: Vec<String>,
    pub until: Option<String>,
    pub no_wait: bool,
    /// Sweep id and variant values to note in the run record (see [`crate::sweep`]).
    pub variant: Option<(String, BTreeMap<String, String>)>,
    /// The `--set` texts as given, then `--device D`: noted in the run record.
    pub overrides: Vec<String>,
    /// `--only`: `until` names the one stage to run; every stage it reads must be cached. Such
    /// runs (cluster jobs) hold the cache lock shared, so several run at once.
    pub only: bool,
    /// The local executor's resource budget (see [`crate::exec::budget`]).
    pub limits: crate::exec::budget::Limits,
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
    #[error("stage `{stage}` panicked: {message}")]
    Panicked { stage: String, message: String },
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
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("saving the run record: {0}")]
    Record(#[source] std::io::Error),
    #[error("no stage `{0}` in this pipeline{1}")]
    UnknownStage(String, String),
    #[error("cycle: {}", .0.join(" → "))]
    Cycle(Vec<String>),
    #[error(
        "--only {stage}: its input stage{} {} not cached: {}; run {} first (or run without --only)",
        if .missing.len() == 1 { "" } else { "s" },
        if .missing.len() == 1 { "is" } else { "are" },
        .missing.join(", "),
        if .missing.len() == 1 { "it" } else { "them" }
    )]
    OnlyInputsMissing { stage: String, missing: Vec<String> },
    #[error("{}", missing_paths_message(.0))]
    MissingPaths(Vec<MissingPath>),
}

/// A path that a stage's YAML names and that does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingPath {
    pub stage: String,
    /// The stage's field that names it (`images`, `labels`, `dir`, `weights`).
    pub field: &'static str,
    pub path: PathBuf,
    /// `file:line:col` of the stage.
    pub at: String,
}

fn missing_paths_message(missing: &[MissingPath]) -> String {
    let n = missing.len();
    let mut m = format!(
        "{n} input file{} missing (README.md, section \"Data\", says where to get {}):",
        if n == 1 { " is" } else { "s are" },
        if n == 1 { "it" } else { "them" }
    );
    for p in missing {
        m.push_str(&format!(
            "\n  {}: stage `{}`, {}: {}",
            p.at,
            p.stage,
            p.field,
            p.path.display()
        ));
    }
    m
}

/// The paths the stages `ids` of `pipeline` name in their YAML that do not exist.
pub fn missing_paths<'s>(
    pipeline: &Pipeline,
    ids: impl Iterator<Item = &'s String>,
) -> Vec<MissingPath> {
    let mut missing = Vec::new();
    for id in ids {
        let spec = &pipeline.stages[id];
        for (field, path) in spec.config.required_paths(&spec.base_dir) {
            let absent = std::fs::symlink_metadata(&path)
                .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
            if absent {
                missing.push(MissingPath {
                    stage: id.clone(),
                    field,
                    path: tidy(&path),
                    at: format!("{}:{}", spec.file.display(), spec.pos),
                });
            }
        }
    }
    missing
}

/// `a/b/../c` → `a/c`, lexically (the path is shown, never opened, in this form).
fn tidy(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

pub struct Engine<'a> {
    pipeline: &'a Pipeline,
    dag: Dag,
    store: Store,
    stat: StatCache,
    /// The shared remote cache, if one is configured (see [`crate::remote`]).
    remote: Option<std::sync::Arc<crate::remote::Remote>>,
    /// Each stage's last recorded run in this pipeline, read from `runs/` once per plan, when
    /// the first stage that misses asks why.
    last_runs: OnceCell<BTreeMap<String, LastRun>>,
}

impl<'a> Engine<'a> {
    pub fn new(pipeline: &'a Pipeline, cache_root: &Path) -> Result<Self, RunError> {
        let dag = Dag::build(&pipeline.stages).map_err(RunError::Cycle)?;
        let store = Store::open(cache_root)?;
        // GPU kernels' autotune results live beside the objects they speed up.
        crate::ml::gpu::use_cache_dir(cache_root);
        let stat = StatCache::load(cache_root);
        Ok(Self {
            pipeline,
            dag,
            store,
            stat,
            remote: None,
            last_runs: OnceCell::new(),
        })
    }

    /// Consult (and, when running, upload to) this remote cache.
    pub fn with_remote(mut self, remote: Option<std::sync::Arc<crate::remote::Remote>>) -> Self {
        self.remote = remote;
        self
    }

    fn check_stage(&self, id: &str) -> Result<(), RunError> {
        if self.pipeline.stages.contains_key(id) {
            Ok(())
        } else {
            let ids = self.pipeline.stages.keys().map(String::as_str);
            Err(RunError::UnknownStage(
                crate::quote::quote(id),
                crate::spec::hint(id, ids),
            ))
        }
    }

    /// Every stage's state: cached, would run (and why) or blocked; runs and locks nothing.
    pub fn plan(&mut self, until: Option<&str>, force: &[String]) -> Result<Plan, RunError> {
        for f in force {
            self.check_stage(f)?;
        }
        let order = self.dag.order();
        let selected: BTreeSet<String> = match until {
            Some(u) => {
                self.check_stage(u)?;
                self.dag.ancestors(u)
            }
            None => order.iter().cloned().collect(),
        };
        let nodes: Vec<Node> = order
            .iter()
            .map(|id| Node {
                id: id.clone(),
                inputs: self.pipeline.stages[id].inputs.clone(),
            })
            .collect();
        let unselected = format!("not needed by --until {}", until.unwrap_or_default());
        // Records saved since the last plan (a run under the lock) count.
        self.last_runs = OnceCell::new();
        let req = plan::Request {
            nodes: &nodes,
            selected: &selected,
            forced: &force.iter().cloned().collect(),
            unselected_reason: &unselected,
        };
        plan::plan(&req, &mut self.world())
    }

    /// Every path that the stages a run would consider (those `until` needs, or all) name in
    /// their YAML and that does not exist, in plan order.
    pub fn missing_paths(&self, until: Option<&str>) -> Result<Vec<MissingPath>, RunError> {
        let order = self.dag.order();
        Ok(match until {
            Some(u) => {
                self.check_stage(u)?;
                let needed = self.dag.ancestors(u);
                missing_paths(
                    self.pipeline,
                    order.iter().filter(|id| needed.contains(*id)),
                )
            }
            None => missing_paths(self.pipeline, order.iter()),
        })
    }

    /// Fails with every missing path at once (see [`Self::missing_paths`]).
    pub fn check_paths(&self, until: Option<&str>) -> Result<(), RunError> {
        let missing = self.missing_paths(until)?;
        if missing.is_empty() {
            Ok(())
        } else {
            Err(RunError::MissingPaths(missing))
        }
    }

    /// The planner's view of the cache, for executors that decide stage by stage.
    pub(crate) fn world(&mut self) -> CacheWorld<'_> {
        CacheWorld {
            pipeline: self.pipeline,
            store: &self.store,
            stat: &mut self.stat,
            remote: self.remote.as_ref(),
            last_runs: &self.last_runs,
        }
    }

    /// What made `id` (and each stage it depends on) not cached, upstream first.
    pub fn why(&mut self, id: &str) -> Result<Vec<String>, RunError> {
        self.check_stage(id)?;
        let ancestors = self.dag.ancestors(id);
        let mut lines = Vec::new();
        for s in self.plan(None, &[])?.stages {
            if !ancestors.contains(&s.id) {
                continue;
            }
            let sid = &s.id;
            let who = if sid == id {
                format!("`{sid}`")
            } else {
                format!("upstream `{sid}`")
            };
            match s.state {
                StageState::Cached { .. } if sid == id => {
                    lines.push(format!("`{sid}` is cached: nothing changed"))
                }
                StageState::Remote { .. } if sid == id => lines.push(format!(
                    "`{sid}` is not in the local cache but the remote holds it: a run pulls it"
                )),
                StageState::Cached { .. } | StageState::Remote { .. } => {}
                StageState::Blocked { reason } => lines.push(format!("{who} is blocked: {reason}")),
                StageState::WouldRun { reasons } => {
                    for r in reasons {
                        lines.push(match r {
                            Reason::NeverRan => format!("{who} has never run in this pipeline"),
                            r => format!("{who}: {r}"),
                        });
                    }
                }
            }
        }
        Ok(lines)
    }

    /// Runs the pipeline under the cache lock and saves the run record (also when a stage
    /// failed or panicked).
    pub fn run(&mut self, opts: &RunOptions) -> Result<RunRecord, RunError> {
        for f in &opts.force {
            self.check_stage(f)?;
        }
        let _lock = if opts.only {
            CacheLock::acquire_shared(&self.store.root, opts.no_wait)?
        } else {
            lock_cache(&self.store.root, opts.no_wait)?
        };
        let (rec, failure) = self.run_locked(opts, now_rfc3339(), None)?;
        // Under the lock still: gc cannot remove an object while it is being uploaded.
        if let Some(r) = &self.remote {
            crate::remote::commands::report_pushed(r, r.wait_uploads());
        }
        rec.save(&self.store.root).map_err(RunError::Record)?;
        match failure {
            Some(e) => Err(e),
            None => Ok(rec),
        }
    }

    /// The run itself, under a lock the caller holds ([`lock_cache`]); returns the record
    /// (unsaved) and the first failure. `sharing` is set when a sweep runs variants at once.
    pub(crate) fn run_locked(
        &mut self,
        opts: &RunOptions,
        started: String,
        sharing: Option<&crate::exec::Sharing<'_>>,
    ) -> Result<(RunRecord, Option<RunError>), RunError> {
        for f in &opts.force {
            self.check_stage(f)?;
        }
        self.check_paths(opts.until.as_deref())?;
        let t0 = Instant::now();
        // Planned under the lock: what another run committed meanwhile counts.
        let plan = self.plan(opts.until.as_deref(), &opts.force)?;
        if opts.only
            && let Some(stage) = &opts.until
        {
            only_inputs_cached(&plan, &self.pipeline.stages[stage])?;
        }
        let forced: BTreeSet<String> = opts.force.iter().cloned().collect();
        let budget = crate::exec::budget::Budget::new(&opts.limits);
        let done = crate::exec::execute(
            &mut self.world(),
            &plan,
            opts.jobs,
            &forced,
            sharing,
            budget,
        );
        let _ = self.stat.save();
        let rec = RunRecord {
            pipeline: self.pipeline.name.clone(),
            file: self.pipeline.file.display().to_string(),
            started,
            seconds: t0.elapsed().as_secs_f64(),
            ok: done.failure.is_none(),
            stages: done.records,
            sweep: opts.variant.as_ref().map(|v| v.0.clone()),
            variant: opts
                .variant
                .as_ref()
                .map(|v| v.1.clone())
                .unwrap_or_default(),
            overrides: opts.overrides.clone(),
        };
        Ok((rec, done.failure))
    }
}

/// `--only`: every stage `spec` reads must be cached (a cluster job never runs its inputs).
fn only_inputs_cached(plan: &Plan, spec: &StageSpec) -> Result<(), RunError> {
    let missing: Vec<String> = spec
        .inputs
        .values()
        .filter(|p| {
            !matches!(
                plan.get(p).map(|s| &s.state),
                Some(StageState::Cached { .. })
            )
        })
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(RunError::OnlyInputsMissing {
            stage: spec.id.clone(),
            missing,
        })
    }
}

/// Opens (creates) the cache, takes its lock (one process at a time) and clears what crashed runs left in
/// `tmp/`; the lock is held until the returned guard drops.
pub fn lock_cache(cache_root: &Path, no_wait: bool) -> Result<CacheLock, RunError> {
    let store = Store::open(cache_root)?;
    let lock = CacheLock::acquire(cache_root, no_wait)?;
    store.clean_tmp();
    Ok(lock)
}

/// The planner's and executor's view of the real cache.
pub(crate) struct CacheWorld<'a> {
    pub pipeline: &'a Pipeline,
    pub store: &'a Store,
    pub stat: &'a mut StatCache,
    pub remote: Option<&'a std::sync::Arc<crate::remote::Remote>>,
    last_runs: &'a OnceCell<BTreeMap<String, LastRun>>,
}

impl World for CacheWorld<'_> {
    fn key(&mut self, id: &str, inputs: &BTreeMap<String, String>) -> Result<StageKey, RunError> {
        compute_key(self.stat, &self.pipeline.stages[id], inputs)
    }

    fn lookup(&self, key_hex: &str) -> Option<String> {
        self.store.lookup(key_hex).hit().map(|e| e.digest)
    }

    fn remote_lookup(&self, key_hex: &str) -> Option<String> {
        self.remote?.lookup(key_hex).map(|e| e.digest)
    }

    fn last_run(&self, id: &str) -> Option<LastRun> {
        let all = self.last_runs.get_or_init(|| {
            let root = &self.store.root;
            let ids = self.pipeline.stages.keys();
            crate::record::last_stage_records(root, &self.pipeline.name, ids)
                .into_iter()
                .map(|(id, r)| {
                    let failed = r.outcome == Outcome::Failed;
                    (
                        id,
                        LastRun {
                            key: r.key_parts,
                            failed,
                        },
                    )
                })
                .collect()
        });
        all.get(id).cloned()
    }
}

/// The key of `spec` given its inputs' output digests (slot → digest).
pub fn compute_key(
    stat: &mut StatCache,
    spec: &StageSpec,
    inputs: &BTreeMap<String, String>,
) -> Result<StageKey, RunError> {
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
    Ok(StageKey {
        format: CACHE_FORMAT,
        kind: spec.config.kind().to_string(),
        version: spec.config.version(),
        implementation: spec.config.implementation(),
        config: spec.config.canonical(),
        inputs: inputs.clone(),
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Override;

    /// 20 sources seeded from `params.seed`, each hashed: 40 stages.
    fn pipeline(dir: &Path, set: &[Override]) -> Pipeline {
        let mut yaml = String::from("name: many\nparams:\n  seed: 1\nstages:\n");
        for i in 0..20 {
            yaml.push_str(&format!(
                "  s{i}: {{kind: source, format: synthetic, count: 8, height: 16, width: 16, \
                 seed: \"${{params.seed}}\", exact_duplicates: 0, near_duplicates: 0, \
                 conflicting_duplicates: 0}}\n  h{i}: {{kind: hash, inputs: {{data: s{i}}}}}\n"
            ));
        }
        let file = dir.join("many.yaml");
        std::fs::write(&file, yaml).unwrap();
        crate::spec::load(&file, set).unwrap()
    }

    #[test]
    fn a_plan_reads_the_run_records_once_however_many_stages_are_stale() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let opts = RunOptions {
            jobs: 2,
            ..RunOptions::default()
        };
        let p = pipeline(dir.path(), &[]);
        for _ in 0..2 {
            Engine::new(&p, &cache).unwrap().run(&opts).unwrap();
        }
        let changed = pipeline(dir.path(), &["params.seed=2".parse().unwrap()]);
        crate::record::READS.with(|n| n.set(0));
        let plan = Engine::new(&changed, &cache)
            .unwrap()
            .plan(None, &[])
            .unwrap();
        assert_eq!(plan.would_run().len(), 40);
        let StageState::WouldRun { reasons } = &plan.get("s3").unwrap().state else {
            panic!("s3 is stale")
        };
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(reasons[0].to_string().contains("1 → 2"), "{reasons:?}");
        assert_eq!(
            crate::record::READS.with(|n| n.get()),
            1,
            "records read once"
        );
    }
}
