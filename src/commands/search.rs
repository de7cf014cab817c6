//! `pipe run --search … --sampler tpe` (or `--prune …`): a live search. Trials are proposed one
//! after another from the trials that finished before them and run through the same engine
//! and cache as a sweep's variants, up to `-j` at once, each record saved as its trial ends.
//!
//! Reproducible: with `-j N`, trial k is proposed from trials 1..=k−N exactly (it waits for
//! them to finish), so the same seed proposes the same trials however long each one took.

use super::exit::{EXIT_INVALID, EXIT_OK};
use super::render::{self, Lines};
use super::sweep::{Loaded, Request, finish, later_than, load_one, print_ranking, run_variant};
use crate::engine::RunError;
use crate::exec::Sharing;
use crate::exec::shared::Shared;
use crate::record::RunRecord;
use crate::sweep::Variant;
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
    let _lock = match crate::engine::lock_cache(req.cache, render::busy(req.opts.no_wait)) {
        Ok(l) => l,
        Err(e) => return super::exit::run_failed(&e),
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
            let lines = Lines::new(prefix);
            let ran = run_variant(self.req, self.id, &l, started, &sharing, &lines);
            let rec = finish(self.req, ran, &mut |e: &RunError| {
                self.note_code(super::exit::run_failed(e))
            });
            let outcome = self.outcome(k, &l, rec.as_ref());
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
            if k >= self.trials {
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
        outln!(
            "\n`pipe compare {}` shows every variant's metrics",
            self.req.file.display()
        );
        self.code
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
