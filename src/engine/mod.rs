//! The engine's front door: builds the DAG, computes stage keys, asks the planner what stands
//! where ([`crate::plan`]), and for a real run takes the cache lock, plans again under it, hands
//! the plan to the one scheduler ([`crate::exec`]) on the backend the options name (this
//! machine's threads, or Slurm), and records the run. It reports what happens as events to the
//! observer it is given, and returns values and errors: it never prints.

mod paths;
mod world;

pub use crate::exec::{MissingPath, RunError};
pub use paths::missing_paths;

use crate::cache::lock::{Busy, CacheLock};
use crate::cache::statcache::StatCache;
use crate::cache::store::Store;
use crate::exec::budget::{Budget, Limits};
use crate::exec::event::{Event, Observer};
use crate::exec::local::Local;
use crate::exec::scheduler::{self, Executed, Input, Sharing};
use crate::exec::slurm::{self, Slurm};
use crate::graph::Dag;
use crate::plan::{self, LastRun, Node, Plan, PlannedStage, StageState};
use crate::record::{RunRecord, now_rfc3339};
use crate::remote::Remote;
use crate::spec::{Pipeline, StageSpec};
use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use world::CacheWorld;

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
    /// The local backend's resource budget (see [`crate::exec::budget`]).
    pub limits: Limits,
    /// Run the stages that miss the cache as Slurm jobs instead of here.
    pub slurm: Option<slurm::Settings>,
}

pub struct Engine<'a> {
    pipeline: &'a Pipeline,
    dag: Dag,
    store: Store,
    stat: StatCache,
    /// The shared remote cache, if one is configured (see [`crate::remote`]).
    remote: Option<Arc<Remote>>,
    /// Each stage's last recorded run in this pipeline, read from `runs/` once per plan, when
    /// the first stage that misses asks why.
    last_runs: OnceCell<BTreeMap<String, LastRun>>,
}

impl<'a> Engine<'a> {
    pub fn new(pipeline: &'a Pipeline, cache_root: &Path) -> Result<Self, RunError> {
        let dag = Dag::build(pipeline.graph()).map_err(RunError::Cycle)?;
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
    pub fn with_remote(mut self, remote: Option<Arc<Remote>>) -> Self {
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

    /// The planner's view of the cache.
    fn world(&mut self) -> CacheWorld<'_> {
        CacheWorld {
            pipeline: self.pipeline,
            store: &self.store,
            stat: &mut self.stat,
            remote: self.remote.as_ref(),
            last_runs: &self.last_runs,
        }
    }

    /// `id` and every stage it depends on, as planned (upstream first): what `pipe why`
    /// explains.
    pub fn why(&mut self, id: &str) -> Result<Vec<PlannedStage>, RunError> {
        self.check_stage(id)?;
        let ancestors = self.dag.ancestors(id);
        let plan = self.plan(None, &[])?;
        Ok(plan
            .stages
            .into_iter()
            .filter(|s| ancestors.contains(&s.id))
            .collect())
    }

    /// Runs the pipeline under the cache lock and saves the run record (also when a stage
    /// failed or panicked).
    pub fn run(
        &mut self,
        opts: &RunOptions,
        observer: &dyn Observer,
    ) -> Result<RunRecord, RunError> {
        for f in &opts.force {
            self.check_stage(f)?;
        }
        let waiting = |cache: &Path, holder: &str| observer.on(&Event::Waiting { cache, holder });
        let busy = if opts.no_wait {
            Busy::Fail
        } else {
            Busy::Wait(&waiting)
        };
        // `--only` jobs and the Slurm driver that waits for them share the lock.
        let _lock = if opts.only || opts.slurm.is_some() {
            CacheLock::acquire_shared(&self.store.root, busy)?
        } else {
            lock_cache(&self.store.root, busy)?
        };
        let (rec, failure) = self.run_locked(opts, now_rfc3339(), None, observer)?;
        // Under the lock still: gc cannot remove an object while it is being uploaded.
        if let Some(r) = &self.remote {
            let p = r.wait_uploads();
            if p.stages > 0 {
                observer.on(&Event::Pushed {
                    remote: r.shown(),
                    stages: p.stages,
                    bytes: p.bytes,
                    seconds: p.seconds,
                });
            }
        }
        rec.save(&self.store.root).map_err(RunError::Record)?;
        match failure {
            Some(e) => Err(e),
            None => Ok(rec),
        }
    }

    /// The run itself, under a lock the caller holds ([`lock_cache`]); returns the record
    /// (unsaved) and the first failure. `sharing` is set when a sweep runs variants at once.
    pub fn run_locked(
        &mut self,
        opts: &RunOptions,
        started: String,
        sharing: Option<&Sharing<'_>>,
        observer: &dyn Observer,
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
        let done = self.execute(&plan, opts, &forced, sharing, observer)?;
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

    /// The plan on the backend `opts` names.
    fn execute(
        &mut self,
        plan: &Plan,
        opts: &RunOptions,
        forced: &BTreeSet<String>,
        sharing: Option<&Sharing<'_>>,
        observer: &dyn Observer,
    ) -> Result<Executed, RunError> {
        let mut world = CacheWorld {
            pipeline: self.pipeline,
            store: &self.store,
            stat: &mut self.stat,
            remote: self.remote.as_ref(),
            last_runs: &self.last_runs,
        };
        let input = Input {
            plan,
            pipeline: self.pipeline,
            store: &self.store,
            remote: self.remote.as_ref(),
            forced,
            sharing,
            observer,
        };
        if let Some(settings) = &opts.slurm {
            let mut backend = Slurm::new(settings, &self.store, &self.store.root, observer)?;
            return Ok(scheduler::execute(input, &mut world, &mut backend));
        }
        let budget = Budget::new(&opts.limits);
        Ok(std::thread::scope(|scope| {
            let mut backend = Local::new(scope, &self.store, observer, opts.jobs, budget);
            scheduler::execute(input, &mut world, &mut backend)
        }))
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

/// Opens (creates) the cache, takes its lock (one process at a time) and clears what crashed
/// runs left in `tmp/`; the lock is held until the returned guard drops.
pub fn lock_cache(cache_root: &Path, busy: Busy<'_>) -> Result<CacheLock, RunError> {
    let store = Store::open(cache_root)?;
    let lock = CacheLock::acquire(cache_root, busy)?;
    store.clean_tmp();
    Ok(lock)
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
            Engine::new(&p, &cache)
                .unwrap()
                .run(&opts, &crate::exec::event::Silent::default())
                .unwrap();
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
