//! `pipe compare`: the evaluation metrics of the latest runs of some pipelines as a Markdown
//! table (a sweep's variants as one table of their own), the metrics of command stages, and
//! their confusion matrices as one PNG.

use super::compare_rows::{self, View};
use super::exit::{self, EXIT_INTERNAL, EXIT_INVALID, EXIT_OK};
use super::load_or_exit;
use crate::record::RunRecord;
use crate::remote::Remote;
use crate::settings::Settings;
use crate::settings::filter::Filter;
use crate::sweep::table::Row;
use std::path::{Path, PathBuf};

/// `compare`'s options as typed.
pub(super) struct Flags<'a> {
    pub files: &'a [PathBuf],
    pub png: Option<&'a Path>,
    pub sort: Option<&'a str>,
    pub filters: &'a [Filter],
    pub columns: Option<&'a [String]>,
    /// Every recorded run, not only the latest of each pipeline.
    pub all: bool,
    /// Include the runs colleagues pushed (`--remote`).
    pub remote: bool,
}

impl Flags<'_> {
    /// Whether the experiment table (one row per run and evaluation) is asked for.
    fn experiments(&self) -> bool {
        self.all || self.sort.is_some() || !self.filters.is_empty() || self.columns.is_some()
    }
}

/// Run records, oldest first, each with the path its id comes from.
pub(super) type History = Vec<(PathBuf, RunRecord)>;

/// The records `compare` and `report` read, oldest first: the local ones, with `--remote` the
/// remote's too, whose missing outputs are then pulled (`pull`). `Err` holds the exit code.
pub(super) fn history(
    s: &Settings,
    with_remote: bool,
) -> Result<(History, Option<std::sync::Arc<Remote>>), i32> {
    let remote = if with_remote {
        Some(super::remote::open_required(s)?)
    } else {
        None
    };
    let runs = super::history::load(&s.cache, remote.as_deref())?;
    let records = runs
        .into_iter()
        .map(|r| (PathBuf::from(format!("{}.json", r.id)), r.record))
        .collect();
    Ok((records, remote))
}

/// Downloads from `remote` the outputs of `rec`'s stages of `kinds` (all with `None`) that
/// the local cache lacks, so runs a colleague pushed can be read like local ones; what the
/// remote lacks too stays missing (the reader then warns about it).
pub(super) fn pull_missing(
    store: &crate::cache::Store,
    remote: &Remote,
    rec: &RunRecord,
    kinds: Option<&[&str]>,
) {
    for s in rec.stages.values() {
        let Some(d) = &s.digest else { continue };
        if kinds.is_some_and(|k| !k.contains(&s.kind.as_str())) || store.check(d).is_ok() {
            continue;
        }
        let Some(entry) = remote.lookup(&s.key) else {
            continue;
        };
        if let Err(e) = remote.pull(store, &entry) {
            remote.report(&e);
        }
    }
}

/// Metrics of each pipeline's latest successful run, read from the evaluation objects after
/// checking them against their manifests: a damaged or missing object is never shown (its row
/// is left out with a warning, and the exit code is 1). A pipeline whose latest run was a sweep
/// variant is shown as its sweep's table, one row per variant. With `--sort`, `--filter`,
/// `--columns` or `--all`, one experiment table instead (see [`compare_rows`]).
pub(super) fn compare(s: &Settings, f: Flags<'_>) -> i32 {
    let cache = s.cache.as_path();
    let store = if f.remote {
        crate::cache::Store::open(cache).map(Some)
    } else {
        crate::cache::Store::open_existing(cache)
    };
    let store = match store {
        Ok(s) => s,
        Err(e) => return exit::store_failed(&e),
    };
    let (all, remote) = match store.as_ref().map(|_| history(s, f.remote)) {
        Some(Ok(h)) => h,
        Some(Err(code)) => return code,
        None => (Vec::new(), None),
    };
    // Pulling writes into the cache: not while a run or gc holds it.
    let _lock = match &remote {
        Some(_) => {
            match crate::cache::lock::CacheLock::acquire(cache, super::render::busy(false)) {
                Ok(l) => Some(l),
                Err(e) => return exit::fail(&e, e.is_user_error()),
            }
        }
        None => None,
    };
    let mut names = Vec::new();
    for file in f.files {
        match load_or_exit(file, &[]) {
            Ok(p) => names.push((file, p.name)),
            Err(code) => return code,
        }
    }
    let mut found = Found::default();
    if f.experiments() {
        let Some(store) = &store else {
            errln!("warning: {} holds no cache: no runs", cache.display());
            return EXIT_OK;
        };
        let chosen = chosen_runs(&all, &names, f.all);
        if let Some(r) = &remote {
            for (_, rec) in &chosen {
                pull_missing(store, r, rec, Some(&["evaluate", "ensemble"]));
            }
        }
        let rows = found.experiment_rows(store, &chosen);
        let view = View {
            filters: f.filters,
            sort: f.sort,
            columns: f.columns,
        };
        match compare_rows::table(rows, &view) {
            Ok((md, shown)) => {
                let shown: std::collections::BTreeSet<String> = shown
                    .iter()
                    .map(|r| format!("{} {}", r.stage, r.run))
                    .collect();
                found
                    .matrices
                    .retain(|(caption, _)| shown.contains(caption));
                found.sweeps.push(md);
            }
            Err(e) => {
                errln!("error: {e}");
                return EXIT_INVALID;
            }
        }
    } else {
        for (file, name) in &names {
            let latest = all.iter().rev().find(|(_, r)| &r.pipeline == name && r.ok);
            let (Some((_, rec)), Some(store)) = (latest, &store) else {
                errln!(
                    "warning: {} has no successful run in {}",
                    file.display(),
                    cache.display()
                );
                continue;
            };
            found.add_commands(name, rec);
            let sweep = crate::sweep::table::latest_sweep(&all, name);
            if let Some(r) = &remote {
                for rec in sweep.as_deref().unwrap_or(&[rec]) {
                    pull_missing(store, r, rec, Some(&["evaluate", "ensemble"]));
                }
            }
            match sweep {
                Some(recs) => found.add_sweep(store, name, rec, &recs, file),
                None => found.add_run(store, name, rec, file),
            }
        }
    }
    let table = found.table();
    // `--png -`: stdout carries the figure, so the table goes to stderr.
    if f.png.is_some_and(super::output::is_stdout) {
        super::console::err(format_args!("{table}"), false);
    } else {
        out!("{table}");
    }
    if let Some(png) = f.png
        && let Err(code) = write_matrices(png, found.matrices)
    {
        return code;
    }
    let code = if found.unusable > 0 {
        EXIT_INTERNAL
    } else {
        EXIT_OK
    };
    match &remote {
        Some(r) => super::remote::exit_code(r, code),
        None => code,
    }
}

/// The runs the experiment table shows, oldest first, with their ids: with `all`, every
/// successful run of the named pipelines (of every pipeline when none is named); else the
/// latest successful run of each, or every variant of its latest sweep.
fn chosen_runs<'a>(
    all: &'a [(PathBuf, RunRecord)],
    names: &[(&PathBuf, String)],
    every: bool,
) -> Vec<(String, &'a RunRecord)> {
    let named = |p: &str| names.is_empty() || names.iter().any(|(_, n)| n == p);
    let id = |path: &PathBuf| super::history::id_of(path);
    if every {
        return all
            .iter()
            .filter(|(_, r)| r.ok && named(&r.pipeline))
            .map(|(p, r)| (id(p), r))
            .collect();
    }
    let mut out = Vec::new();
    for (_, name) in names {
        match crate::sweep::table::latest_sweep(all, name) {
            Some(recs) => {
                for (p, r) in all.iter() {
                    if recs.iter().any(|x| std::ptr::eq(*x, r)) {
                        out.push((id(p), r));
                    }
                }
            }
            None => {
                if let Some((p, r)) = all.iter().rev().find(|(_, r)| &r.pipeline == name && r.ok) {
                    out.push((id(p), r));
                }
            }
        }
    }
    out
}

/// What the pipelines' runs hold, gathered for the table and the figure.
#[derive(Default)]
struct Found {
    /// A plain run's evaluations: (stage id, Markdown row).
    rows: Vec<(String, String)>,
    /// Each sweep's table, with its heading.
    sweeps: Vec<String>,
    /// Confusion matrices by caption.
    matrices: Vec<(String, Confusion)>,
    /// Evaluations whose objects were damaged or gone.
    unusable: usize,
    /// Command stages' metrics: `| pipeline | stage | metric | value |` rows.
    commands: Vec<String>,
}

impl Found {
    /// One row per metric of each command stage of the run `rec` (from its `metrics` file, as
    /// recorded).
    fn add_commands(&mut self, name: &str, rec: &RunRecord) {
        for (id, s) in rec.stages.iter().filter(|(_, s)| s.kind == "command") {
            for (k, v) in &s.report.metrics {
                self.commands
                    .push(format!("| {name} | {id} | {k} | {v:.4} |"));
            }
        }
    }

    /// One row per evaluation of the run `rec` of pipeline `name`.
    fn add_run(&mut self, store: &crate::cache::Store, name: &str, rec: &RunRecord, f: &Path) {
        for (id, report, confusion) in evaluations(store, rec, &mut self.unusable, f) {
            let m = |k: &str| {
                report
                    .metrics
                    .get(k)
                    .map(|v| format!("{v:.4}"))
                    .unwrap_or_else(|| "–".into())
            };
            self.rows.push((
                id.clone(),
                format!(
                    "| {name} | {id} | {} | {} | {} | {} |",
                    m("balanced_accuracy"),
                    m("accuracy"),
                    m("roc_auc"),
                    m("threshold")
                ),
            ));
            if let Some(c) = confusion {
                self.matrices.push((id, c));
            }
        }
    }

    /// One table for the sweep whose variants' records are `recs` (`rec`, the latest run, names
    /// the sweep): a row per variant and evaluation, the swept values as columns.
    fn add_sweep(
        &mut self,
        store: &crate::cache::Store,
        name: &str,
        rec: &RunRecord,
        recs: &[&RunRecord],
        f: &Path,
    ) {
        let mut table = Vec::new();
        for r in recs {
            let variant = variant_name(r);
            table.extend(
                r.stages
                    .iter()
                    .filter_map(|(id, s)| Row::pruned(&r.variant, id, s)),
            );
            for (id, report, confusion) in evaluations(store, r, &mut self.unusable, f) {
                table.push(Row {
                    variant: r.variant.clone(),
                    stage: id.clone(),
                    metrics: report.metrics,
                    pruned: None,
                });
                if let Some(c) = confusion {
                    self.matrices.push((format!("{id} {variant}"), c));
                }
            }
        }
        let paths: std::collections::BTreeSet<String> = recs
            .iter()
            .flat_map(|r| r.variant.keys().cloned())
            .collect();
        let paths: Vec<String> = paths.into_iter().collect();
        // The `--set`s every variant shared (epochs, image count): the table shows only what
        // differs.
        let shared = crate::record::shared_overrides(recs);
        let shared = if shared.is_empty() {
            String::new()
        } else {
            format!("\nevery variant ran with: {}\n", shared.join(", "))
        };
        self.sweeps.push(format!(
            "sweep {} of {name} ({} variants)\n{shared}\n{}",
            rec.sweep.as_deref().unwrap_or_default(),
            recs.len(),
            crate::sweep::table::markdown(&paths, &table)
        ));
    }

    /// The experiment table's rows: one per evaluation of each run of `runs`.
    fn experiment_rows(
        &mut self,
        store: &crate::cache::Store,
        runs: &[(String, &RunRecord)],
    ) -> Vec<compare_rows::Row> {
        let mut rows = Vec::new();
        for (id, rec) in runs {
            let params = super::history::params(rec);
            let file = Path::new(&rec.file);
            for (stage, report, confusion) in evaluations(store, rec, &mut self.unusable, file) {
                if let Some(c) = confusion {
                    self.matrices.push((format!("{stage} {id}"), c));
                }
                rows.push(compare_rows::Row {
                    run: id.clone(),
                    pipeline: rec.pipeline.clone(),
                    stage,
                    params: params.clone(),
                    metrics: report.metrics,
                });
            }
        }
        rows
    }

    /// The Markdown: the plain runs' table (also when there is nothing at all), then each
    /// sweep's.
    fn table(&mut self) -> String {
        self.rows.sort();
        self.rows.dedup();
        let mut table = String::new();
        if !self.rows.is_empty() || self.sweeps.is_empty() {
            // (The experiment table, when asked for, is the one entry of `sweeps`.)
            table.push_str(
                "| pipeline | stage | balanced accuracy | accuracy | ROC AUC | threshold |\n",
            );
            table.push_str("|---|---|---|---|---|---|\n");
            for (_, r) in &self.rows {
                table.push_str(r);
                table.push('\n');
            }
        }
        for (i, t) in self.sweeps.iter().enumerate() {
            if i > 0 || !self.rows.is_empty() {
                table.push('\n');
            }
            table.push_str(t);
        }
        self.commands.dedup();
        if !self.commands.is_empty() {
            table.push_str("\n| pipeline | command stage | metric | value |\n|---|---|---|---|\n");
            for r in &self.commands {
                table.push_str(r);
                table.push('\n');
            }
        }
        table
    }
}

/// `--png`: the confusion matrices, one per caption, as one PNG; `Err` holds the exit code.
fn write_matrices(png: &Path, mut matrices: Vec<(String, Confusion)>) -> Result<(), i32> {
    matrices.sort_by(|a, b| a.0.cmp(&b.0));
    matrices.dedup_by(|a, b| a.0 == b.0);
    let written = crate::figures::plot::confusion_grid_png_bytes(&matrices)
        .map_err(|e| format!("{}: {e}", png.display()))
        .and_then(|bytes| super::output::write(png, &bytes).map_err(|e| e.to_string()));
    match written {
        Ok(super::output::Written::Stdout) => {
            errln!("confusion matrices: {}", png.display())
        }
        Ok(_) => outln!("\nconfusion matrices: {}", png.display()),
        Err(e) => {
            errln!("error: {e}");
            return Err(EXIT_INTERNAL);
        }
    }
    Ok(())
}

/// `[lr=0.001,dropout=0.3]` of a sweep variant's record.
fn variant_name(r: &RunRecord) -> String {
    format!("[{}]", crate::sweep::name_of(&r.variant))
}

type Confusion = crate::ml::metrics::Confusion;

/// The evaluation and ensemble stages of `rec` that report a balanced accuracy: id, report
/// (verified against the object's manifest) and confusion matrix. A damaged or missing object
/// is warned about and counted in `unusable`.
fn evaluations(
    store: &crate::cache::Store,
    rec: &RunRecord,
    unusable: &mut usize,
    file: &Path,
) -> Vec<(String, crate::stages::StageReport, Option<Confusion>)> {
    use crate::stages::StageReport;
    use crate::stages::artifacts::read_json;
    use crate::stages::evaluate::{EvaluationResult, RESULT_FILE};
    let mut out = Vec::new();
    for (id, s) in &rec.stages {
        if !matches!(s.kind.as_str(), "evaluate" | "ensemble" | "stack") {
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
            r.confusion
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
