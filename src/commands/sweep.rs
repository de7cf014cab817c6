//! `pipe run --sweep` / `--search`: every variant is loaded and validated first (all problems
//! of all variants reported, nothing run, exit 2), then the variants run one after another (or,
//! with `-j N`, up to N stages at once across variants) through [`Engine`], each recording its
//! sweep id and values; the cache shares what they have in common, and so does the remote cache
//! when one is configured (as for `run`: a stage a colleague ran is pulled, what runs here is
//! pushed, all uploads done before the lock is released). Ends with the ranking by
//! `--objective`. A search whose sampler learns or whose pruner stops trials runs live
//! ([`super::search`]).
//!
//! `--executor slurm`: each variant's stages that miss the cache are submitted as Slurm jobs
//! carrying the variant's overrides (`-j` bounds the jobs in flight across variants); the
//! driver holds the cache lock shared, as `run`'s does, so the jobs can commit. Interrupted
//! (SIGINT/SIGTERM), it cancels its jobs and starts no further variant. Rerun, a sweep or a
//! search finds what its variants committed and adopts the jobs still running.

use super::exit::{self, EXIT_INVALID, EXIT_OK};
use super::render::{self, Lines};
use crate::cache::lock::CacheLock;
use crate::engine::{Engine, RunError, RunOptions};
use crate::exec::Sharing;
use crate::exec::event::Observer;
use crate::exec::shared::Shared;
use crate::exec::slurm;
use crate::ml::device::DeviceChoice;
use crate::record::{RunRecord, now_rfc3339};
use crate::remote::Remote;
use crate::settings::Settings;
use crate::settings::cli::SweepArgs;
use crate::spec::{Override, Pipeline, load_with_device};
use crate::sweep::search::Objective;
use crate::sweep::space::{SearchArgs, Space, best, objective_value};
use crate::sweep::{Variant, check_paths, sweep_id};
use std::path::Path;
use std::sync::Arc;
use std::sync::{Mutex, PoisonError, mpsc};

/// What `run --sweep`/`--search` was given.
pub(super) struct Request<'a> {
    pub file: &'a Path,
    pub cache: &'a Path,
    pub set: &'a [Override],
    pub device: Option<DeviceChoice>,
    pub space: Space,
    pub objective: Option<Objective>,
    pub minimize: bool,
    pub opts: RunOptions,
    pub dry_run: bool,
    /// The shared remote cache, when one is configured.
    pub remote: Option<Arc<Remote>>,
    /// `--executor slurm`: the jobs' settings, before each variant adds its overrides.
    pub slurm: Option<slurm::Settings>,
}

/// The pipeline and overrides `run --sweep`/`--search` was given.
pub(super) struct Given<'a> {
    pub file: &'a Path,
    pub set: &'a [Override],
    pub device: Option<DeviceChoice>,
    pub remote: Option<Arc<Remote>>,
    pub slurm: Option<slurm::Settings>,
}

/// A loaded variant.
pub(super) struct Loaded {
    pub variant: Variant,
    pub pipeline: Pipeline,
}

pub(super) fn run(
    s: &Settings,
    given: Given<'_>,
    args: SweepArgs,
    opts: RunOptions,
    dry_run: bool,
) -> i32 {
    let Given {
        file,
        set,
        device,
        remote,
        slurm,
    } = given;
    let search = SearchArgs {
        trials: args.trials,
        seed: args.seed,
        sampler: args.sampler,
        pruner: args.prune,
    };
    let space = match Space::from_args(&args.sweep, &args.search, search) {
        Ok(s) => s,
        Err(e) => {
            errln!("error: {e}");
            return EXIT_INVALID;
        }
    };
    let req = Request {
        file,
        cache: &s.cache,
        set,
        device,
        space,
        objective: args.objective,
        minimize: args.minimize,
        opts,
        dry_run,
        remote,
        slurm,
    };
    if let Err(e) = check_paths(req.space.paths(), req.set) {
        errln!("error: {e}");
        return EXIT_INVALID;
    }
    let (variants, count, sampler) =
        match (req.space.variants(), req.space.count(), req.space.sampler()) {
            (Ok(v), Ok(n), Ok(s)) => (v, n, s),
            (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => {
                errln!("error: {e}");
                return EXIT_INVALID;
            }
        };
    let loaded = match load_all(&req, &variants, "variant") {
        Ok(l) => l,
        Err(code) => return code,
    };
    // A search's ranges must not reach an invalid trial a sampler could propose later.
    if let Err(code) = load_all(&req, &req.space.bounds(), "trial at the ranges' ends") {
        return code;
    }
    let Some(first) = loaded.first() else {
        errln!("error: no variants to run");
        return EXIT_INVALID;
    };
    if let Some(o) = &req.objective
        && !first.pipeline.stages.contains_key(&o.stage)
    {
        let ids = first.pipeline.stages.keys().map(String::as_str);
        errln!(
            "error: --objective {o}: no stage `{}` in {}{}",
            o.stage,
            req.file.display(),
            crate::spec::hint(&o.stage, ids)
        );
        return EXIT_INVALID;
    }
    let id = sweep_id(&first.pipeline.name, req.set, &req.space.spec());
    outln!(
        "sweep {id}: {count} variant{} of {}",
        if count == 1 { "" } else { "s" },
        first.pipeline.name
    );
    for (i, l) in loaded.iter().enumerate() {
        outln!("  variant {:>3}  {}", i + 1, l.variant.name());
    }
    let live = match sampler {
        Some(s) if req.space.is_live() => Some(s),
        _ => None,
    };
    if let Some(s) = &live
        && loaded.len() < count
    {
        outln!(
            "  variants {}–{count}: proposed by {} from the trials finished before them",
            loaded.len() + 1,
            s.kind()
        );
    }
    if req.dry_run {
        for (i, l) in loaded.iter().enumerate() {
            outln!("\nvariant {}/{}: {}", i + 1, loaded.len(), l.variant.name());
            let code =
                super::dry_run::plan_only(&l.pipeline, req.cache, &req.opts, req.remote.clone());
            if code != EXIT_OK {
                return code;
            }
        }
        return EXIT_OK;
    }
    match live {
        Some(sampler) => super::search::run_live(&req, &id, &sampler, count, loaded),
        None => run_all(&req, &id, &loaded),
    }
}

/// Variant `v` loaded and validated with the sweep's `--set`s, or its problems.
pub(super) fn load_one(req: &Request<'_>, v: &Variant) -> Result<Pipeline, Vec<String>> {
    v.overrides().map_err(|e| vec![e]).and_then(|extra| {
        let mut all = req.set.to_vec();
        all.extend(extra);
        load_with_device(req.file, &all, req.device)
            .map_err(|d| d.iter().map(ToString::to_string).collect::<Vec<_>>())
    })
}

/// Every variant loaded; on any problem, all of them printed (by variant; a problem every
/// variant shares once) and exit 2.
fn load_all(req: &Request<'_>, variants: &[Variant], what: &str) -> Result<Vec<Loaded>, i32> {
    let mut loaded = Vec::new();
    let mut failed: Vec<(usize, Vec<String>)> = Vec::new();
    for (i, v) in variants.iter().enumerate() {
        match load_one(req, v) {
            Ok(pipeline) => loaded.push(Loaded {
                variant: v.clone(),
                pipeline,
            }),
            Err(messages) => failed.push((i, messages)),
        }
    }
    if failed.is_empty() {
        return Ok(loaded);
    }
    let shared: Vec<String> = if loaded.is_empty() {
        let first = &failed[0].1;
        first
            .iter()
            .filter(|m| failed.iter().all(|(_, ms)| ms.contains(m)))
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    for m in &shared {
        errln!("error: every variant: {m}");
    }
    let mut problems = shared.len();
    for (i, messages) in &failed {
        for m in messages.iter().filter(|m| !shared.contains(m)) {
            errln!("error: {what} {} ({}): {m}", i + 1, variants[*i].name());
            problems += 1;
        }
    }
    errln!(
        "{problems} error{} in the variants; nothing ran",
        if problems == 1 { "" } else { "s" }
    );
    Err(EXIT_INVALID)
}

/// Runs the variants under one cache lock: one after another, or with `-j N` (N > 1) up to N
/// stages at once across variants; a failed variant is reported and the others still run.
fn run_all(req: &Request<'_>, id: &str, loaded: &[Loaded]) -> i32 {
    let _lock = match lock(req) {
        Ok(l) => l,
        Err(e) => return exit::run_failed(&e),
    };
    let mut code = EXIT_OK;
    let mut note = |e: &RunError| {
        let c = exit::run_failed(e);
        if code == EXIT_OK {
            code = c;
        }
    };
    let records = if req.opts.jobs > 1 && loaded.len() > 1 {
        run_at_once(req, id, loaded, &mut note)
    } else {
        run_in_turn(req, id, loaded, &mut note)
    };
    wait_uploads(req);
    let mut scores: Vec<(usize, f64)> = Vec::new();
    if let Some(o) = &req.objective {
        for (i, rec) in records.iter().enumerate() {
            let Some(rec) = rec else { continue };
            match objective_value(rec, o) {
                Ok(v) => scores.push((i, v)),
                Err(msg) => {
                    errln!(
                        "error: variant {} ({}): {msg}",
                        i + 1,
                        loaded[i].variant.name()
                    );
                    code = EXIT_INVALID;
                }
            }
        }
        let names: Vec<String> = loaded.iter().map(|l| l.variant.name()).collect();
        print_ranking(&names, &scores, o, req.minimize);
    }
    outln!(
        "\n`pipe compare {}` shows every variant's metrics",
        req.file.display()
    );
    code
}

/// The cache lock of a sweep: its own, or shared with its Slurm jobs (which commit).
pub(super) fn lock(req: &Request<'_>) -> Result<CacheLock, RunError> {
    let busy = render::busy(req.opts.no_wait);
    if req.slurm.is_none() {
        return crate::engine::lock_cache(req.cache, busy);
    }
    crate::cache::Store::open(req.cache)?;
    Ok(CacheLock::acquire_shared(req.cache, busy)?)
}

/// Variant `i`'s run options: the sweep's, plus its id and values for the record, and on Slurm
/// its overrides for the jobs' command lines; `watch`: the training a pruned search watches.
fn variant_opts(req: &Request<'_>, id: &str, l: &Loaded, watch: Option<&str>) -> RunOptions {
    let slurm = req.slurm.as_ref().map(|s| {
        let mut s = s.clone();
        s.set
            .extend(l.variant.values.iter().map(|(p, v)| format!("{p}={v}")));
        s.set
            .extend(l.pipeline.auto_device.iter().flat_map(|a| a.pinned()));
        s.watch = watch.map(str::to_string);
        s
    });
    RunOptions {
        variant: Some((id.to_string(), l.variant.map())),
        slurm,
        ..req.opts.clone()
    }
}

/// Whether SIGINT/SIGTERM stopped a Slurm sweep: no further variant starts.
pub(super) fn interrupted() -> bool {
    slurm::backend::interrupted()
}

/// A variant's run under the sweep's lock: its record (not yet saved) and its first failure.
type Ran = Result<(RunRecord, Option<RunError>), RunError>;

pub(super) fn run_variant(
    req: &Request<'_>,
    id: &str,
    l: &Loaded,
    started: String,
    sharing: &Sharing<'_>,
    lines: &dyn Observer,
    watch: Option<&str>,
) -> Ran {
    let opts = variant_opts(req, id, l, watch);
    Engine::new(&l.pipeline, req.cache)?
        .with_remote(req.remote.clone())
        .run_locked(&opts, started, Some(sharing), lines)
}

/// Waits, under the sweep's lock, for the uploads of what its variants ran (gc cannot remove
/// an object while it is being uploaded), and says what was pushed.
pub(super) fn wait_uploads(req: &Request<'_>) {
    if let Some(r) = &req.remote {
        let p = r.wait_uploads();
        if p.stages > 0 {
            Lines::default().on(&crate::exec::event::Event::Pushed {
                remote: r.shown(),
                stages: p.stages,
                bytes: p.bytes,
                seconds: p.seconds,
            });
        }
    }
}

/// Saves a finished variant's record and prints its last line; the record when it succeeded.
pub(super) fn finish(
    req: &Request<'_>,
    ran: Ran,
    note: &mut dyn FnMut(&RunError),
) -> Option<RunRecord> {
    let (rec, failure) = match ran {
        Ok(r) => r,
        Err(e) => {
            note(&e);
            return None;
        }
    };
    if let Err(e) = rec.save(req.cache) {
        note(&RunError::Record(e));
        return None;
    }
    match failure {
        Some(e) => {
            note(&e);
            None
        }
        None => {
            render::done_line(&rec);
            Some(rec)
        }
    }
}

fn run_in_turn(
    req: &Request<'_>,
    id: &str,
    loaded: &[Loaded],
    note: &mut dyn FnMut(&RunError),
) -> Vec<Option<RunRecord>> {
    // Nothing runs at once here; the registry still makes a forced shared stage run once.
    let shared = Shared::new(1);
    let sharing = Sharing { shared: &shared };
    let mut records = Vec::new();
    for (i, l) in loaded.iter().enumerate() {
        if interrupted() {
            break;
        }
        outln!("\nvariant {}/{}: {}", i + 1, loaded.len(), l.variant.name());
        render::header(&l.pipeline, req.cache);
        let ran = run_variant(req, id, l, now_rfc3339(), &sharing, &Lines::default(), None);
        records.push(finish(req, ran, note));
    }
    records
}

/// Up to `-j` variants at once, sharing the job budget and the stages in flight; each line a
/// variant's executor prints starts with `[N] `. Records are saved in variant order at the end.
fn run_at_once(
    req: &Request<'_>,
    id: &str,
    loaded: &[Loaded],
    note: &mut dyn FnMut(&RunError),
) -> Vec<Option<RunRecord>> {
    let n = loaded.len();
    outln!(
        "\n{n} variants at once, up to {} stages at a time",
        req.opts.jobs
    );
    render::header(&loaded[0].pipeline, req.cache);
    let shared = Shared::new(req.opts.jobs);
    // The next variant to start, and the start time of the last one started.
    let queue = Mutex::new((0usize, String::new()));
    let (tx, rx) = mpsc::channel::<(usize, Ran)>();
    std::thread::scope(|scope| {
        for _ in 0..req.opts.jobs.min(n) {
            let (shared, queue, tx) = (&shared, &queue, tx.clone());
            scope.spawn(move || {
                while let Some((i, started)) = next_variant(queue, n) {
                    let l = &loaded[i];
                    let prefix = format!("[{}] ", i + 1);
                    outln!("{prefix}variant {}/{n}: {}", i + 1, l.variant.name());
                    let sharing = Sharing { shared };
                    let lines = Lines::new(prefix);
                    let ran = run_variant(req, id, l, started, &sharing, &lines, None);
                    let _ = tx.send((i, ran));
                }
            });
        }
    });
    drop(tx);
    let mut ran: Vec<(usize, Ran)> = rx.into_iter().collect();
    ran.sort_by_key(|(i, _)| *i);
    let mut records = Vec::new();
    for (i, r) in ran {
        outln!("\nvariant {}/{n}: {}", i + 1, loaded[i].variant.name());
        records.push(finish(req, r, note));
    }
    records
}

/// Takes the next variant off the queue with its start time, later than the previous one's
/// so that run records (named by start time) list in variant order.
fn next_variant(queue: &Mutex<(usize, String)>, n: usize) -> Option<(usize, String)> {
    let mut q = queue.lock().unwrap_or_else(PoisonError::into_inner);
    if q.0 >= n || interrupted() {
        return None;
    }
    let started = later_than(&q.1);
    q.1.clone_from(&started);
    q.0 += 1;
    Some((q.0 - 1, started))
}

/// The time now, later than `last` (waits a millisecond at a time until it is).
pub(super) fn later_than(last: &str) -> String {
    let mut started = now_rfc3339();
    while started.as_str() <= last {
        std::thread::sleep(std::time::Duration::from_millis(1));
        started = now_rfc3339();
    }
    started
}

pub(super) fn print_ranking(
    names: &[String],
    scores: &[(usize, f64)],
    o: &Objective,
    minimize: bool,
) {
    outln!("\n{o} by variant:");
    for &(i, v) in scores {
        outln!("  variant {:>3}  {v:.4}  {}", i + 1, names[i]);
    }
    match best(scores, minimize) {
        Some(b) => {
            let (i, v) = scores[b];
            outln!(
                "best ({}): variant {} {} with {o} = {v:.4}",
                if minimize { "lowest" } else { "highest" },
                i + 1,
                names[i]
            );
        }
        None => outln!("best: none (no variant reported {o})"),
    }
}
