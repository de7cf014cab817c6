//! `pipe compare`: the evaluation metrics of the latest runs of some pipelines as a Markdown
//! table (a sweep's variants as one table of their own), the metrics of command stages, and
//! their confusion matrices as one PNG.

use super::exit::{self, EXIT_INTERNAL, EXIT_OK};
use super::load_or_exit;
use crate::record::RunRecord;
use crate::sweep::table::Row;
use std::path::{Path, PathBuf};

/// Metrics of each pipeline's latest successful run, read from the evaluation objects after
/// checking them against their manifests: a damaged or missing object is never shown (its row
/// is left out with a warning, and the exit code is 1). A pipeline whose latest run was a sweep
/// variant is shown as its sweep's table, one row per variant.
pub(super) fn compare(cache: &Path, files: &[PathBuf], png: Option<&Path>) -> i32 {
    let store = match crate::cache::Store::open_existing(cache) {
        Ok(s) => s,
        Err(e) => return exit::store_failed(&e),
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
    let mut found = Found::default();
    for f in files {
        let p = match load_or_exit(f, &[]) {
            Ok(p) => p,
            Err(code) => return code,
        };
        let latest = all.iter().rev().find(|(_, r)| r.pipeline == p.name && r.ok);
        let (Some((_, rec)), Some(store)) = (latest, &store) else {
            errln!(
                "warning: {} has no successful run in {}",
                f.display(),
                cache.display()
            );
            continue;
        };
        found.add_commands(&p.name, rec);
        match crate::sweep::table::latest_sweep(&all, &p.name) {
            Some(recs) => found.add_sweep(store, &p.name, rec, &recs, f),
            None => found.add_run(store, &p.name, rec, f),
        }
    }
    let table = found.table();
    // `--png -`: stdout carries the figure, so the table goes to stderr.
    if png.is_some_and(super::output::is_stdout) {
        super::console::err(format_args!("{table}"), false);
    } else {
        out!("{table}");
    }
    if let Some(png) = png
        && let Err(code) = write_matrices(png, found.matrices)
    {
        return code;
    }
    if found.unusable > 0 {
        EXIT_INTERNAL
    } else {
        EXIT_OK
    }
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
        self.sweeps.push(format!(
            "sweep {} of {name} ({} variants)\n\n{}",
            rec.sweep.as_deref().unwrap_or_default(),
            recs.len(),
            crate::sweep::table::markdown(&paths, &table)
        ));
    }

    /// The Markdown: the plain runs' table (also when there is nothing at all), then each
    /// sweep's.
    fn table(&mut self) -> String {
        self.rows.sort();
        self.rows.dedup();
        let mut table = String::new();
        if !self.rows.is_empty() || self.sweeps.is_empty() {
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
