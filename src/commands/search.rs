//! `pipe run --search … --sampler tpe` (or `--prune …`): a live search. Trials are proposed one
//! after another from the trials that finished before them and run through the same engine
//! and cache as a sweep's variants, up to `-j` at once, each record saved as its trial ends.
//!
//! Reproducible: with `-j N`, trial k is proposed from trials 1..=k−N exactly (it waits for
//! them to finish), so the same seed proposes the same trials however long each one took.
//!
//! Pruning (`--prune`): the one training the objective's stage reads reports its validation
//! balanced accuracy (its validation loss with `--minimize`) after every epoch; the study asks
//! the pruner, and a trial below the cut stops there, recorded as pruned. With `-j 1` the
//! decisions are reproducible too; with more trials at once they depend on how far the others
//! got.

use super::exit::{EXIT_INVALID, EXIT_OK};
use super::render::{self, Lines};
use super::sweep::{Loaded, Request, finish, later_than, load_one, print_ranking, run_variant};
use crate::engine::RunError;
use crate::exec::Sharing;
use crate::exec::event::{Event, Observer};
use crate::exec::shared::Shared;
use crate::ml::train::EpochDone;
use crate::record::RunRecord;
use crate::spec::Pipeline;
use crate::sweep::Variant;
use crate::sweep::prune::{Decision, Pruner};
use crate::sweep::space::objective_value;
use crate::sweep::study::Study;
use crate::sweep::tpe::Sampler;
use crate::sweep::trial::{Direction, Outcome};
use std::sync::{Condvar, Mutex, PoisonError};

/// The search while it runs, shared by its worker threads.
struct Live<'a> {
    req: &'a Request<'a>,
    id: &'a str,
    sampler: &'a Sampler,
    study: Study,
    trials: usize,
    /// Trials that may still run while a new one is proposed (`-j` − 1).
    lag: usize,
    /// The cache (the watched training's curve of a cached trial is read from it).
    store: crate::cache::Store,
    /// The training the pruner watches (none without `--prune`).
    watched: Option<String>,
    /// The trials loaded before the search started (the sampler's drawn ones).
    first: Vec<Loaded>,
    /// The next trial to propose, and the start time of the last one started.
    queue: Mutex<(usize, String)>,
    /// Signalled whenever a trial finishes.
    finished: Condvar,
    /// Each trial's name, once proposed.
    names: Mutex<Vec<String>>,
    /// The exit code of the first failure.
    code: Mutex<i32>,
}

/// Runs `trials` trials of a live search under one cache lock, then ranks them.
pub(super) fn run_live(
    req: &Request<'_>,
    id: &str,
    sampler: &Sampler,
    trials: usize,
    first: Vec<Loaded>,
) -> i32 {
    let watched = match watched_training(&first[0].pipeline, req) {
        Ok(w) => w,
        Err(e) => {
            errln!("error: {e}");
            return EXIT_INVALID;
        }
    };
    let _lock = match super::sweep::lock(req) {
        Ok(l) => l,
        Err(e) => return super::exit::run_failed(&e),
    };
    let store = match crate::cache::Store::open(req.cache) {
        Ok(s) => s,
        Err(e) => return super::exit::store_failed(&e),
    };
    let workers = req.opts.jobs.clamp(1, trials.max(1));
    let live = Live {
        req,
        id,
        sampler,
        study: Study::new(
            req.space.pruner(),
            Direction::from_minimize(req.minimize),
            Vec::new(),
        ),
        trials,
        lag: workers - 1,
        store,
        watched,
        first,
        queue: Mutex::new((0, String::new())),
        finished: Condvar::new(),
        names: Mutex::new(Vec::new()),
        code: Mutex::new(EXIT_OK),
    };
    if workers > 1 {
        outln!(
            "\nup to {workers} trials at once, up to {} stages at a time",
            req.opts.jobs
        );
    }
    let shared = Shared::new(req.opts.jobs);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let (live, shared) = (&live, &shared);
            scope.spawn(move || live.work(shared, workers > 1));
        }
    });
    super::sweep::wait_uploads(req);
    live.rank()
}

impl Live<'_> {
    /// One worker: takes the next trial, proposes and runs it, until none is left.
    fn work(&self, shared: &Shared, prefixed: bool) {
        while let Some((k, proposed, started)) = self.take() {
            let n = self.trials;
            let l = match proposed {
                Ok(l) => l,
                Err(messages) => {
                    for m in messages {
                        errln!("error: variant {}{m}", k + 1);
                    }
                    self.note_code(EXIT_INVALID);
                    self.end(k, Outcome::Failed);
                    continue;
                }
            };
            let prefix = if prefixed {
                format!("[{}] ", k + 1)
            } else {
                String::new()
            };
            outln!("\n{prefix}variant {}/{n}: {}", k + 1, l.variant.name());
            if !prefixed {
                render::header(&l.pipeline, self.req.cache);
            }
            let sharing = Sharing { shared };
            let watch = Watch {
                lines: Lines::new(prefix),
                live: self,
                trial: k,
                curve: Mutex::new(Vec::new()),
            };
            let watched = self.watched.as_deref();
            let ran = run_variant(self.req, self.id, &l, started, &sharing, &watch, watched);
            let rec = finish(self.req, ran, &mut |e: &RunError| {
                self.note_code(super::exit::run_failed(e))
            });
            let outcome = self.outcome(k, &l, rec.as_ref());
            if let Some(curve) = rec.as_ref().and_then(|r| self.curve_of(r)) {
                self.study.set_curve(k, curve);
            }
            self.end(k, outcome);
        }
    }

    /// The next trial: its index, its loaded variant (or why it did not load), and its start
    /// time. A trial whose sampler learns waits until the trials it learns from finished.
    #[allow(clippy::type_complexity)]
    fn take(&self) -> Option<(usize, Result<Loaded, Vec<String>>, String)> {
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let k = q.0;
            if k >= self.trials || super::sweep::interrupted() {
                return None;
            }
            let known = k.saturating_sub(self.lag);
            let history = self.study.snapshot();
            let ready = !self.sampler.learns_at(k)
                || history[..known]
                    .iter()
                    .all(|t| t.outcome != Outcome::Running);
            if ready {
                let proposed = self.propose(k, &history[..known]);
                let values = match &proposed {
                    Ok(l) => l.variant.values.iter().map(|(_, v)| v.clone()).collect(),
                    Err(_) => Vec::new(),
                };
                let t = self.study.start(values);
                debug_assert_eq!(t, k, "trials are registered in order");
                let name = proposed
                    .as_ref()
                    .map_or(String::new(), |l| l.variant.name());
                self.names
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(name);
                // Run records are named by start time: later trials start later.
                let started = later_than(&q.1);
                q.1.clone_from(&started);
                q.0 += 1;
                return Some((k, proposed, started));
            }
            q = self
                .finished
                .wait(q)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Trial `k`, loaded: drawn ones were loaded (and checked) before the search began.
    fn propose(
        &self,
        k: usize,
        history: &[crate::sweep::trial::Trial],
    ) -> Result<Loaded, Vec<String>> {
        if let Some(l) = self.first.get(k) {
            return Ok(Loaded {
                variant: l.variant.clone(),
                pipeline: l.pipeline.clone(),
            });
        }
        let variant: Variant = self
            .sampler
            .propose(k, history, self.study.direction())
            .map_err(|e| vec![format!(": {e}")])?;
        let pipeline = load_one(self.req, &variant).map_err(|ms| {
            ms.into_iter()
                .map(|m| format!(" ({}): {m}", variant.name()))
                .collect::<Vec<_>>()
        })?;
        Ok(Loaded { variant, pipeline })
    }

    /// What became of trial `k` from its record: its objective, or a failure.
    fn outcome(&self, k: usize, l: &Loaded, rec: Option<&RunRecord>) -> Outcome {
        if let Some(t) = self.study.snapshot().get(k)
            && let Outcome::Pruned { .. } = t.outcome
        {
            return t.outcome.clone();
        }
        let Some(rec) = rec else {
            return Outcome::Failed;
        };
        let Some(o) = &self.req.objective else {
            return Outcome::Failed;
        };
        match objective_value(rec, o) {
            Ok(v) => Outcome::Complete(v),
            Err(msg) => {
                errln!("error: variant {} ({}): {msg}", k + 1, l.variant.name());
                self.note_code(EXIT_INVALID);
                Outcome::Failed
            }
        }
    }

    /// The watched training's whole curve, from its model's `curve.csv` (a cached training
    /// reports no epochs; the pruners compare the next trials with it all the same).
    fn curve_of(&self, rec: &RunRecord) -> Option<Vec<f64>> {
        let stage = rec.stages.get(self.watched.as_deref()?)?;
        let object = self.store.object_dir(stage.digest.as_deref()?);
        let path = object.join(crate::ml::train::CURVE_CSV);
        let rows = crate::ml::curve::read_csv(&path).ok()?;
        Some(
            rows.iter()
                .map(|r| {
                    if self.req.minimize {
                        r.val_loss
                    } else {
                        r.val_bacc
                    }
                })
                .collect(),
        )
    }

    /// Trial `k` ended: told to the study, and to the workers waiting for it.
    fn end(&self, k: usize, outcome: Outcome) {
        let _q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        self.study.finish(k, outcome);
        self.finished.notify_all();
    }

    fn note_code(&self, c: i32) {
        let mut code = self.code.lock().unwrap_or_else(PoisonError::into_inner);
        if *code == EXIT_OK {
            *code = c;
        }
    }

    /// The ranking by the objective, and the exit code.
    fn rank(self) -> i32 {
        let names = self
            .names
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let trials = self.study.snapshot();
        let scores: Vec<(usize, f64)> = trials
            .iter()
            .enumerate()
            .filter_map(|(i, t)| match t.outcome {
                Outcome::Complete(v) => Some((i, v)),
                _ => None,
            })
            .collect();
        if let Some(o) = &self.req.objective {
            print_ranking(&names, &scores, o, self.req.minimize);
        }
        let metric = if self.req.minimize {
            "val loss"
        } else {
            "val balanced accuracy"
        };
        let pruned = trials
            .iter()
            .filter(|t| matches!(t.outcome, Outcome::Pruned { .. }))
            .count();
        if pruned > 0 {
            outln!("pruned ({pruned}):");
        }
        for (i, t) in trials.iter().enumerate() {
            if let Outcome::Pruned { epoch, value } = t.outcome {
                outln!(
                    "  variant {:>3}  pruned after epoch {epoch} ({metric} {value:.4})  {}",
                    i + 1,
                    names[i]
                );
            }
        }
        outln!(
            "\n`pipe compare {}` shows every variant's metrics",
            self.req.file.display()
        );
        self.code
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The training `--prune` watches: the one train stage the objective's stage is or reads
/// (directly or not). `None` without a pruner; an error when there is none or more than one.
fn watched_training(p: &Pipeline, req: &Request<'_>) -> Result<Option<String>, String> {
    let (Some(o), true) = (&req.objective, req.space.pruner() != Pruner::None) else {
        return Ok(None);
    };
    let mut stack = vec![o.stage.as_str()];
    let mut seen = std::collections::BTreeSet::new();
    while let Some(id) = stack.pop() {
        if seen.insert(id)
            && let Some(spec) = p.stages.get(id)
        {
            stack.extend(spec.inputs.values().map(String::as_str));
        }
    }
    let trains: Vec<&str> = seen
        .into_iter()
        .filter(|id| {
            p.stages
                .get(*id)
                .is_some_and(|s| s.config.kind() == "train")
        })
        .collect();
    match trains[..] {
        [one] => Ok(Some(one.to_string())),
        [] => Err(format!(
            "--prune: no train stage feeds `{}`, so no trial reports a metric per epoch",
            o.stage
        )),
        _ => Err(format!(
            "--prune: `{}` reads {} trainings ({}); pruning watches one",
            o.stage,
            trains.len(),
            trains.join(", ")
        )),
    }
}

/// What one trial shows, and where its training's epochs go: the study, which asks the
/// pruner whether it goes on.
struct Watch<'a> {
    lines: Lines,
    live: &'a Live<'a>,
    trial: usize,
    /// The watched metric after each epoch (NaN for epochs a resumed training did not run).
    curve: Mutex<Vec<f64>>,
}

impl Observer for Watch<'_> {
    fn on(&self, event: &Event<'_>) {
        self.lines.on(event);
    }

    fn progress(&self) -> &indicatif::MultiProgress {
        self.lines.progress()
    }

    fn epoch(&self, id: &str, done: &EpochDone) -> bool {
        if self.live.watched.as_deref() != Some(id) {
            return true;
        }
        let value = if self.live.req.minimize {
            done.row.val_loss
        } else {
            done.row.val_bacc
        };
        let mut curve = self.curve.lock().unwrap_or_else(PoisonError::into_inner);
        let before = (done.row.epoch as usize).saturating_sub(1);
        curve.truncate(before);
        curve.resize(before, f64::NAN);
        curve.push(value);
        self.live.study.report(self.trial, &curve) == Decision::Continue
    }
}
