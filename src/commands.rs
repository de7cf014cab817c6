//! One function per subcommand; each returns the process exit code.

use crate::cli::{Cli, Command, DagFormat, Format, RemoteCommand};
use crate::config::{ExecutorKind, ProjectConfig};
use crate::error::{EXIT_INTERNAL, EXIT_INVALID, EXIT_OK};
use crate::exec::budget::Limits;
use crate::graph::Dag;
use crate::ml::backend::DeviceChoice;
use crate::plan::{Plan, Reason, StageState};
use crate::record::Outcome;
use crate::run::{Engine, RunOptions};
use crate::spec::yaml::{Marked, Node, Pos};
use crate::spec::{Diagnostic, Override, Pipeline, load};
use std::path::Path;

pub fn dispatch(cli: Cli) -> i32 {
    let cache = cli.cache.as_path();
    let remote = &cli.remote;
    match cli.command {
        Command::Run {
            file,
            set,
            jobs,
            force,
            until,
            only,
            executor,
            dry_run,
            device,
            no_wait,
            completion_record,
            sweep,
        } => {
            let project = match project_settings() {
                Ok(p) => p,
                Err(code) => return code,
            };
            let opts = RunOptions {
                jobs,
                force,
                until: only.clone().or(until),
                no_wait,
                variant: None,
                overrides: override_texts(&set, device),
                only: only.is_some(),
                limits: project.limits.clone(),
            };
            let slurm = executor.or(project.config.executor.kind) == Some(ExecutorKind::Slurm);
            let sweeping = !sweep.sweep.is_empty() || !sweep.search.is_empty();
            if sweeping && slurm && !dry_run {
                errln!("error: --executor slurm does not run sweeps (yet): use --executor local");
                return EXIT_INVALID;
            }
            if sweeping {
                return run_sweep(&file, cache, &set, device, sweep, opts, dry_run);
            }
            let remote = match crate::remote::commands::open(remote) {
                Ok(r) => r,
                Err(code) => return code,
            };
            let code = with_run_pipeline(&file, &set, device, |p| {
                if dry_run {
                    plan_only_with(p, cache, &opts, remote.clone())
                } else if slurm && !opts.only {
                    crate::slurm::run(&crate::slurm::Request {
                        pipeline: p,
                        file: &file,
                        cache,
                        set: &set,
                        device,
                        opts: &opts,
                        config: &project.config,
                    })
                } else {
                    run(
                        p,
                        cache,
                        &opts,
                        remote.clone(),
                        completion_record.as_deref(),
                    )
                }
            });
            remote.map_or(code, |r| r.exit_code(code))
        }
        Command::Validate { files, set, format } => validate(&files, &set, format),
        Command::Status { file, set, json } => {
            let remote = match crate::remote::commands::open(remote) {
                Ok(r) => r,
                Err(code) => return code,
            };
            with_pipeline(&file, &set, |p| status(p, cache, json, remote))
        }
        Command::Dag { file, format } => with_pipeline(&file, &[], |p| dag(p, format)),
        Command::Why { file, stage, set } => {
            let remote = match crate::remote::commands::open(remote) {
                Ok(r) => r,
                Err(code) => return code,
            };
            with_pipeline(&file, &set, |p| why(p, cache, &stage, remote))
        }
        Command::Gc { grace, dry_run, .. } if remote.remote.is_some() => {
            crate::remote::gc::run(remote, grace, dry_run)
        }
        Command::Gc {
            keep_runs,
            dry_run,
            ignore_unreadable,
            ..
        } => gc(cache, keep_runs, dry_run, ignore_unreadable),
        Command::Push { files, repair } => {
            crate::remote::commands::push(cache, remote, &files, repair)
        }
        Command::Pull { file, set, until } => {
            crate::remote::commands::pull(cache, remote, &file, &set, until.as_deref())
        }
        Command::Remote {
            command: RemoteCommand::Status { file, set },
        } => crate::remote::commands::status(cache, remote, &file, &set),
        Command::Runs { limit } => runs(cache, limit),
        Command::Compare { files, png } => compare(cache, &files, png.as_deref()),
        Command::Report { files, output } => {
            crate::report::html::command::run(cache, &files, &output)
        }
        Command::Model { name, input } => model(&name, &input),
    }
}

/// `pipe.toml` of the working directory, and the local executor's limits from it.
struct Project {
    config: ProjectConfig,
    limits: Limits,
}

fn project_settings() -> Result<Project, i32> {
    let config = ProjectConfig::load(Path::new(".")).map_err(|e| {
        errln!("error: {e}");
        if e.is_user_error() {
            EXIT_INVALID
        } else {
            EXIT_INTERNAL
        }
    })?;
    let defaults = config.default_resources().map_err(|e| {
        errln!("error: {e}");
        EXIT_INVALID
    })?;
    let limits = Limits {
        defaults,
        gpus: Some(config.executor.local_gpus()),
        cpus: None,
    };
    Ok(Project { config, limits })
}

/// The run's overrides for its record: each `--set` as typed, then `--device D`.
fn override_texts(set: &[Override], device: Option<DeviceChoice>) -> Vec<String> {
    let mut out: Vec<String> = set.iter().map(|o| o.text.clone()).collect();
    out.extend(device.map(|d| format!("--device {d}")));
    out
}

/// `run --sweep` / `run --search`: see [`crate::sweep::driver`].
fn run_sweep(
    file: &Path,
    cache: &Path,
    set: &[Override],
    device: Option<DeviceChoice>,
    args: crate::cli::SweepArgs,
    opts: RunOptions,
    dry_run: bool,
) -> i32 {
    use crate::sweep::driver::{self, Space};
    let space = match Space::from_args(&args.sweep, &args.search, args.trials, args.seed) {
        Ok(s) => s,
        Err(e) => {
            errln!("error: {e}");
            return EXIT_INVALID;
        }
    };
    driver::run(driver::Request {
        file,
        cache,
        set,
        device,
        space,
        objective: args.objective,
        minimize: args.minimize,
        opts,
        dry_run,
    })
}

pub(crate) fn print_diagnostics(diags: &[Diagnostic]) {
    for d in diags {
        errln!("error: {d}");
    }
    errln!(
        "{} error{}",
        diags.len(),
        if diags.len() == 1 { "" } else { "s" }
    );
}

fn with_pipeline(file: &Path, set: &[Override], f: impl FnOnce(&Pipeline) -> i32) -> i32 {
    match load_or_exit(file, set) {
        Ok(p) => f(&p),
        Err(code) => code,
    }
}

/// Loads `file` with `set`, or prints every diagnostic and gives the exit code to return.
pub(crate) fn load_or_exit(file: &Path, set: &[Override]) -> Result<Pipeline, i32> {
    load(file, set).map_err(|diags| {
        print_diagnostics(&diags);
        EXIT_INVALID
    })
}

fn with_run_pipeline(
    file: &Path,
    set: &[Override],
    device: Option<DeviceChoice>,
    f: impl FnOnce(&Pipeline) -> i32,
) -> i32 {
    match load_for_run(file, set, device) {
        Ok(p) => f(&p),
        Err(diags) => {
            print_diagnostics(&diags);
            EXIT_INVALID
        }
    }
}

/// Loads the pipeline for `run` (and each sweep variant). `--device D` is
/// `--set stages.ID.device=D` on every stage whose kind has a `device` field (applied after the
/// user's `--set`s), so it enters the key exactly as the YAML field does and the engine needs to
/// know nothing about devices.
pub(crate) fn load_for_run(
    file: &Path,
    set: &[Override],
    device: Option<DeviceChoice>,
) -> Result<Pipeline, Vec<Diagnostic>> {
    let p = load(file, set)?;
    let Some(device) = device else {
        return Ok(p);
    };
    let mut all = set.to_vec();
    all.extend(device_overrides(&p, device));
    load(file, &all)
}

fn device_overrides(p: &Pipeline, device: DeviceChoice) -> Vec<Override> {
    p.stages
        .values()
        .filter(|s| s.config.uses_device())
        .map(|s| Override {
            path: vec!["stages".into(), s.id.clone(), "device".into()],
            value: Marked::new(Node::Str(device.to_string()), Pos::default()),
            text: format!("--device {device}"),
            error: None,
        })
        .collect()
}

pub(crate) fn fail(e: &crate::run::RunError) -> i32 {
    errln!("error: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !e.to_string().contains(&text) {
            errln!("  caused by: {text}");
        }
        source = s.source();
    }
    e.exit_code()
}

/// A local run; `completion`: where a Slurm job's `--only` run leaves its stage's completion
/// record once it succeeded ([`crate::slurm::job::Completion`]).
fn run(
    p: &Pipeline,
    cache: &Path,
    opts: &RunOptions,
    remote: Option<RemoteRef>,
    completion: Option<&Path>,
) -> i32 {
    let mut engine = match Engine::new(p, cache) {
        Ok(e) => e.with_remote(remote),
        Err(e) => return fail(&e),
    };
    header(p, cache);
    let rec = match engine.run(opts) {
        Ok(rec) => rec,
        Err(e) => return fail(&e),
    };
    done_line(&rec);
    let (Some(path), Some(stage)) = (completion, &opts.until) else {
        return EXIT_OK;
    };
    let Some(done) = crate::slurm::job::Completion::of(&rec, stage) else {
        errln!("error: stage `{stage}` has no output to record as complete");
        return EXIT_INTERNAL;
    };
    match done.save(path) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            errln!("error: writing the completion record: {e}");
            EXIT_INTERNAL
        }
    }
}

/// `done in 1.2 s: 3 ran, 2 cached`.
pub(crate) fn done_line(rec: &crate::record::RunRecord) {
    let count = |o| rec.stages.values().filter(|s| s.outcome == o).count();
    outln!(
        "done in {:.1} s: {} ran, {} cached",
        rec.seconds,
        count(Outcome::Ran),
        count(Outcome::Cached),
    );
}

pub(crate) fn header(p: &Pipeline, cache: &Path) {
    outln!(
        "pipeline {} ({} stages), cache {}",
        p.name,
        p.stages.len(),
        cache.display()
    );
}

type RemoteRef = std::sync::Arc<crate::remote::Remote>;

/// `run --dry-run`: the plan a real run would start from; runs and locks nothing.
pub(crate) fn plan_only(p: &Pipeline, cache: &Path, opts: &RunOptions) -> i32 {
    plan_only_with(p, cache, opts, None)
}

fn plan_only_with(p: &Pipeline, cache: &Path, opts: &RunOptions, remote: Option<RemoteRef>) -> i32 {
    let planned = Engine::new(p, cache)
        .map(|e| e.with_remote(remote))
        .and_then(|mut e| {
            let missing = e.missing_paths(opts.until.as_deref())?;
            match e.plan(opts.until.as_deref(), &opts.force) {
                Ok(plan) => Ok((plan, missing)),
                // A missing folder cannot even be listed for its key: name every missing path.
                Err(_) if !missing.is_empty() => Err(crate::run::RunError::MissingPaths(missing)),
                Err(e) => Err(e),
            }
        });
    let (plan, missing) = match planned {
        Ok(planned) => planned,
        Err(e) => return fail(&e),
    };
    header(p, cache);
    let width = plan.stages.iter().map(|s| s.id.len()).max().unwrap_or(0);
    let mut cached = 0;
    for s in &plan.stages {
        match &s.state {
            StageState::Cached { digest } => {
                cached += 1;
                outln!(
                    "  cached    {:width$}  {}",
                    s.id,
                    &digest[..12.min(digest.len())]
                );
            }
            StageState::Remote { digest } => {
                cached += 1;
                outln!(
                    "  remote    {:width$}  {}  (would be pulled)",
                    s.id,
                    &digest[..12.min(digest.len())]
                );
            }
            StageState::WouldRun { reasons } => {
                outln!("  would run {:width$}  ({})", s.id, joined(reasons))
            }
            StageState::Blocked { .. } => {}
        }
    }
    outln!(
        "dry run: {cached} cached, {} would run (at most: a stage whose inputs come out \
         byte-identical stays cached)",
        plan.would_run().len()
    );
    if missing.is_empty() {
        EXIT_OK
    } else {
        fail(&crate::run::RunError::MissingPaths(missing))
    }
}

fn joined(reasons: &[Reason]) -> String {
    reasons
        .iter()
        .map(Reason::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn validate(files: &[std::path::PathBuf], set: &[Override], format: Format) -> i32 {
    let mut all = Vec::new();
    // Data files a valid pipeline names but that are not there (yet): notes, not errors, since
    // a pipeline is checked where its data is absent too (CI).
    let mut missing: Vec<crate::run::MissingPath> = Vec::new();
    for f in files {
        match load(f, set) {
            Ok(p) => {
                for m in crate::run::missing_paths(&p, p.stages.keys()) {
                    if !missing.contains(&m) {
                        missing.push(m);
                    }
                }
            }
            // A file included by several of the given files is reported once.
            Err(d) => {
                for diag in d {
                    if !all.contains(&diag) {
                        all.push(diag);
                    }
                }
            }
        }
    }
    match format {
        Format::Json => {
            let missing: Vec<_> = missing
                .iter()
                .map(|m| {
                    serde_json::json!({"at": m.at, "stage": m.stage, "field": m.field,
                                       "path": m.path.display().to_string()})
                })
                .collect();
            outln!(
                "{}",
                serde_json::json!({"valid": all.is_empty(), "errors": all, "missing_files": missing})
            )
        }
        Format::Text if all.is_empty() => outln!("{} pipeline file(s) valid", files.len()),
        Format::Text => print_diagnostics(&all),
    }
    if matches!(format, Format::Text) && !missing.is_empty() {
        for line in crate::run::RunError::MissingPaths(missing)
            .to_string()
            .lines()
        {
            errln!("note: {}", line.trim_start());
        }
    }
    if all.is_empty() {
        EXIT_OK
    } else {
        EXIT_INVALID
    }
}

fn status(p: &Pipeline, cache: &Path, json: bool, remote: Option<RemoteRef>) -> i32 {
    match Engine::new(p, cache)
        .map(|e| e.with_remote(remote))
        .and_then(|mut e| e.plan(None, &[]))
    {
        Ok(plan) if json => {
            let map: serde_json::Map<String, serde_json::Value> = plan
                .stages
                .iter()
                .map(|s| {
                    (
                        s.id.clone(),
                        serde_json::to_value(&s.state).unwrap_or_default(),
                    )
                })
                .collect();
            outln!("{}", serde_json::Value::Object(map));
            EXIT_OK
        }
        Ok(plan) => {
            print_status(&plan);
            EXIT_OK
        }
        Err(e) => fail(&e),
    }
}

/// One line per stage: `cached`, `remote` (a run pulls it), `missing` (never ran), `stale`
/// (with why) or `blocked`.
fn print_status(plan: &Plan) {
    let width = plan.stages.iter().map(|s| s.id.len()).max().unwrap_or(0);
    for s in &plan.stages {
        let id = &s.id;
        match &s.state {
            StageState::Cached { digest } => {
                outln!("{id:width$}  cached   {}", &digest[..12.min(digest.len())])
            }
            StageState::Remote { digest } => {
                outln!("{id:width$}  remote   {}", &digest[..12.min(digest.len())])
            }
            StageState::WouldRun { reasons } if reasons.contains(&Reason::NeverRan) => {
                outln!("{id:width$}  missing  ({})", joined(reasons))
            }
            StageState::WouldRun { reasons } => {
                outln!("{id:width$}  stale    {}", joined(reasons))
            }
            StageState::Blocked { reason } => outln!("{id:width$}  blocked  {reason}"),
        }
    }
}

fn dag(p: &Pipeline, format: DagFormat) -> i32 {
    match Dag::build(&p.stages) {
        Ok(d) => {
            out!(
                "{}",
                if format == DagFormat::Dot {
                    d.to_dot(&p.stages)
                } else {
                    d.to_mermaid(&p.stages)
                }
            );
            EXIT_OK
        }
        Err(cycle) => {
            errln!("error: cycle: {}", cycle.join(" → "));
            EXIT_INVALID
        }
    }
}

fn why(p: &Pipeline, cache: &Path, stage: &str, remote: Option<RemoteRef>) -> i32 {
    match Engine::new(p, cache)
        .map(|e| e.with_remote(remote))
        .and_then(|mut e| e.why(stage))
    {
        Ok(lines) => {
            for l in lines {
                outln!("{l}");
            }
            EXIT_OK
        }
        Err(e) => fail(&e),
    }
}

/// A store error: a directory that is not a cache is bad usage (2), the rest internal (1).
pub(crate) fn store_fail(e: &crate::cache::StoreError) -> i32 {
    errln!("error: {e}");
    if e.is_user_error() {
        EXIT_INVALID
    } else {
        EXIT_INTERNAL
    }
}

/// `1.2 MB`, `13.0 kB`, `512 B`.
pub(crate) fn human_bytes(n: u64) -> String {
    match n {
        0..1_000 => format!("{n} B"),
        1_000..1_000_000 => format!("{:.1} kB", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        _ => format!("{:.1} GB", n as f64 / 1e9),
    }
}

/// Decides from the run records what is alive (gc itself knows only the cache's layout), then
/// plans, lists or removes the rest, holding the cache lock throughout.
fn gc(cache: &Path, keep: usize, dry_run: bool, ignore_unreadable: bool) -> i32 {
    use crate::cache::gc::{self as cache_gc, Roots, What};
    let store = match crate::cache::Store::open(cache) {
        Ok(s) => s,
        Err(e) => return store_fail(&e),
    };
    let _lock = match crate::cache::lock::CacheLock::acquire(cache, false) {
        Ok(l) => l,
        Err(e) => {
            errln!("error: {e}");
            return EXIT_INTERNAL;
        }
    };
    let loaded = match crate::record::load_all(cache) {
        Ok(l) => l,
        Err(e) => {
            errln!("error: {e}");
            return EXIT_INTERNAL;
        }
    };
    let (readable, unreadable) = crate::record::split(loaded);
    if !unreadable.is_empty() {
        let level = if ignore_unreadable {
            "warning"
        } else {
            "error"
        };
        for e in &unreadable {
            errln!("{level}: {e}");
        }
        if !ignore_unreadable {
            errln!(
                "gc removes only what no run record reaches, so it stops while {} record(s) \
                 cannot be read: repair or delete them, or pass --ignore-unreadable",
                unreadable.len()
            );
            return EXIT_INVALID;
        }
    }
    let cut = readable.len().saturating_sub(keep);
    let mut roots = Roots::default();
    for (i, (path, rec)) in readable.iter().enumerate() {
        if i < cut {
            roots.stale_records.push(path.clone());
            continue;
        }
        for s in rec.stages.values() {
            roots.digests.extend(s.digest.iter().cloned());
            if s.outcome == Outcome::Failed {
                roots.resumable.insert(s.key.clone());
            }
        }
    }
    let plan = match cache_gc::plan(&store, &roots) {
        Ok(p) => p,
        Err(e) => return store_fail(&e),
    };
    if dry_run {
        for item in &plan.items {
            let rel = item.path.strip_prefix(cache).unwrap_or(&item.path);
            outln!(
                "would remove {:<6}  {}  {}  ({})",
                item.what.label(),
                rel.display(),
                human_bytes(item.bytes),
                item.why
            );
        }
    } else if let Err(e) = cache_gc::apply(&store, &plan) {
        return store_fail(&e);
    }
    outln!(
        "{}{} objects, {} run records, {} keys, {} work directories, {} temporary and {} stray \
         entries; {:.1} MB {}",
        if dry_run { "would remove " } else { "removed " },
        plan.count(What::Object),
        plan.count(What::Record),
        plan.count(What::Key),
        plan.count(What::Work),
        plan.count(What::Temp),
        plan.count(What::Stray),
        plan.bytes() as f64 / 1e6,
        if dry_run { "to free" } else { "freed" }
    );
    EXIT_OK
}

/// Every record, newest first; one that cannot be read is listed as such, with a warning.
fn runs(cache: &Path, limit: usize) -> i32 {
    let loaded = match crate::cache::Store::open_existing(cache) {
        Ok(None) => Vec::new(),
        Ok(Some(_)) => match crate::record::load_all(cache) {
            Ok(l) => l,
            Err(e) => {
                errln!("error: {e}");
                return EXIT_INTERNAL;
            }
        },
        Err(e) => return store_fail(&e),
    };
    outln!(
        "{:<26} {:<16} {:>5} {:>6} {:>8}  status",
        "started",
        "pipeline",
        "ran",
        "cached",
        "seconds"
    );
    for l in loaded.iter().rev().take(limit) {
        match &l.record {
            Ok(r) => {
                let count = |o| r.stages.values().filter(|s| s.outcome == o).count();
                outln!(
                    "{:<26} {:<16} {:>5} {:>6} {:>8.1}  {}",
                    r.started,
                    r.pipeline,
                    count(Outcome::Ran),
                    count(Outcome::Cached),
                    r.seconds,
                    if r.ok { "ok" } else { "failed" }
                );
            }
            Err(e) => {
                let name = l.path.file_name().unwrap_or_default().to_string_lossy();
                outln!(
                    "{name:<26} {:<16} {:>5} {:>6} {:>8}  unreadable",
                    "?",
                    "?",
                    "?",
                    "?"
                );
                errln!("warning: {e}");
            }
        }
    }
    EXIT_OK
}

/// Metrics of each pipeline's latest successful run, read from the evaluation objects after
/// checking them against their manifests: a damaged or missing object is never shown (its row
/// is left out with a warning, and the exit code is 1). A pipeline whose latest run was a sweep
/// variant is shown as its sweep's table, one row per variant.
fn compare(cache: &Path, files: &[std::path::PathBuf], png: Option<&Path>) -> i32 {
    let store = match crate::cache::Store::open_existing(cache) {
        Ok(s) => s,
        Err(e) => return store_fail(&e),
    };
    let all = match store.as_ref().map(|_| crate::record::load_all(cache)) {
        Some(Ok(loaded)) => {
            let (readable, unreadable) = crate::record::split(loaded);
            for e in unreadable {
                errln!("warning: {e} (a newer run may be missing from the table)");
            }
            readable
        }
        Some(Err(e)) => {
            errln!("error: {e}");
            return EXIT_INTERNAL;
        }
        None => Vec::new(),
    };
    let mut rows = Vec::new();
    let mut sweeps = Vec::new();
    let mut matrices = Vec::new();
    let mut unusable = 0;
    for f in files {
        let p = match load_or_exit(f, &[]) {
            Ok(p) => p,
            Err(code) => return code,
        };
        let found = all.iter().rev().find(|(_, r)| r.pipeline == p.name && r.ok);
        let (Some((_, rec)), Some(store)) = (found, &store) else {
            errln!(
                "warning: {} has no successful run in {}",
                f.display(),
                cache.display()
            );
            continue;
        };
        if let Some(recs) = crate::sweep::table::latest_sweep(&all, &p.name) {
            let mut table = Vec::new();
            for r in &recs {
                let name = variant_name(r);
                for (id, report, confusion) in evaluations(store, r, &mut unusable, f) {
                    table.push(crate::sweep::table::Row {
                        variant: r.variant.clone(),
                        stage: id.clone(),
                        metrics: report.metrics,
                    });
                    if let Some(c) = confusion {
                        matrices.push((format!("{id} {name}"), c));
                    }
                }
            }
            let paths: std::collections::BTreeSet<String> = recs
                .iter()
                .flat_map(|r| r.variant.keys().cloned())
                .collect();
            let paths: Vec<String> = paths.into_iter().collect();
            sweeps.push(format!(
                "sweep {} of {} ({} variants)\n\n{}",
                rec.sweep.as_deref().unwrap_or_default(),
                p.name,
                recs.len(),
                crate::sweep::table::markdown(&paths, &table)
            ));
            continue;
        }
        for (id, report, confusion) in evaluations(store, rec, &mut unusable, f) {
            let m = |k: &str| {
                report
                    .metrics
                    .get(k)
                    .map(|v| format!("{v:.4}"))
                    .unwrap_or_else(|| "–".into())
            };
            rows.push((
                id.clone(),
                format!(
                    "| {} | {id} | {} | {} | {} | {} |",
                    p.name,
                    m("balanced_accuracy"),
                    m("accuracy"),
                    m("roc_auc"),
                    m("threshold")
                ),
            ));
            if let Some(c) = confusion {
                matrices.push((id, c));
            }
        }
    }
    rows.sort();
    rows.dedup();
    let mut table = String::new();
    if !rows.is_empty() || sweeps.is_empty() {
        table.push_str(
            "| pipeline | stage | balanced accuracy | accuracy | ROC AUC | threshold |\n",
        );
        table.push_str("|---|---|---|---|---|---|\n");
        for (_, r) in &rows {
            table.push_str(r);
            table.push('\n');
        }
    }
    for (i, t) in sweeps.iter().enumerate() {
        if i > 0 || !rows.is_empty() {
            table.push('\n');
        }
        table.push_str(t);
    }
    // `--png -`: stdout carries the figure, so the table goes to stderr.
    if png.is_some_and(crate::output::is_stdout) {
        crate::console::err(format_args!("{table}"), false);
    } else {
        out!("{table}");
    }
    if let Some(png) = png {
        matrices.sort_by(|a, b| a.0.cmp(&b.0));
        matrices.dedup_by(|a, b| a.0 == b.0);
        let written = crate::report::plot::confusion_grid_png_bytes(&matrices)
            .map_err(|e| format!("{}: {e}", png.display()))
            .and_then(|bytes| crate::output::write(png, &bytes).map_err(|e| e.to_string()));
        match written {
            Ok(crate::output::Written::Stdout) => {
                errln!("confusion matrices: {}", png.display())
            }
            Ok(_) => outln!("\nconfusion matrices: {}", png.display()),
            Err(e) => {
                errln!("error: {e}");
                return EXIT_INTERNAL;
            }
        }
    }
    if unusable > 0 { EXIT_INTERNAL } else { EXIT_OK }
}

/// `[lr=0.001,dropout=0.3]` of a sweep variant's record.
fn variant_name(r: &crate::record::RunRecord) -> String {
    format!("[{}]", crate::sweep::name_of(&r.variant))
}

type Confusion = crate::ml::metrics::Confusion;

/// The evaluation and ensemble stages of `rec` that report a balanced accuracy: id, report
/// (verified against the object's manifest) and confusion matrix. A damaged or missing object
/// is warned about and counted in `unusable`.
fn evaluations(
    store: &crate::cache::Store,
    rec: &crate::record::RunRecord,
    unusable: &mut usize,
    file: &Path,
) -> Vec<(String, crate::stages::StageReport, Option<Confusion>)> {
    use crate::stages::StageReport;
    use crate::stages::artifacts::read_json;
    use crate::stages::evaluate::{EvaluationResult, RESULT_FILE};
    let mut out = Vec::new();
    for (id, s) in &rec.stages {
        if !matches!(s.kind.as_str(), "evaluate" | "ensemble") {
            continue;
        }
        let Some(d) = &s.digest else { continue };
        let dir = store.object_dir(d);
        let report = store.check(d).map_err(|e| e.to_string()).and_then(|()| {
            read_json::<StageReport>(&dir.join("report.json")).map_err(|e| e.to_string())
        });
        let report = match report {
            Ok(r) => r,
            Err(e) => {
                errln!(
                    "warning: `{id}` of {}: its output is damaged or gone ({e}); not shown: \
                     `pipe run {}` rebuilds it",
                    rec.pipeline,
                    file.display()
                );
                *unusable += 1;
                continue;
            }
        };
        if !report.metrics.contains_key("balanced_accuracy") {
            continue;
        }
        let path = dir.join(RESULT_FILE);
        let confusion = if let Ok(r) = read_json::<EvaluationResult>(&path) {
            Some(r.confusion)
        } else if let Ok(v) = read_json::<serde_json::Value>(&path)
            && let Ok(c) = serde_json::from_value(v["confusion"].clone())
        {
            Some(c)
        } else {
            None
        };
        out.push((id.clone(), report, confusion));
    }
    out
}

fn model(name: &str, input: &str) -> i32 {
    use crate::ml::models::{ModelKind, ModelSpec, summary};
    let kind: ModelKind = match name.parse() {
        Ok(k) => k,
        Err(e) => {
            errln!("error: {e}");
            return EXIT_INVALID;
        }
    };
    let dims: Vec<u32> = input.split('x').filter_map(|s| s.parse().ok()).collect();
    let [h, w, c] = dims[..] else {
        errln!("error: --input must look like 56x56x3");
        return EXIT_INVALID;
    };
    let spec = ModelSpec {
        kind,
        input: crate::data::Shape::new(h, w, c),
        init: Default::default(),
        dropout: crate::ml::defaults::DROPOUT,
        weights: None,
    };
    let problems = crate::ml::models::validate(&spec);
    if !problems.is_empty() {
        for p in problems {
            errln!("error: {p}");
        }
        return EXIT_INVALID;
    }
    out!("{}", summary(&spec));
    EXIT_OK
}
