//! `pipe compare`: the evaluation metrics of the latest runs of some pipelines as a Markdown
//! table (a sweep's variants as one table of their own), and their confusion matrices as one
//! PNG.

use super::exit::{self, EXIT_INTERNAL, EXIT_OK};
use super::load_or_exit;
use crate::sweep::table::Row;
use std::path::Path;

/// Metrics of each pipeline's latest successful run, read from the evaluation objects after
/// checking them against their manifests: a damaged or missing object is never shown (its row
/// is left out with a warning, and the exit code is 1). A pipeline whose latest run was a sweep
/// variant is shown as its sweep's table, one row per variant.
pub(super) fn compare(cache: &Path, files: &[std::path::PathBuf], png: Option<&Path>) -> i32 {
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
                table.extend(
                    r.stages
                        .iter()
                        .filter_map(|(id, s)| Row::pruned(&r.variant, id, s)),
                );
                for (id, report, confusion) in evaluations(store, r, &mut unusable, f) {
                    table.push(Row {
                        variant: r.variant.clone(),
                        stage: id.clone(),
                        metrics: report.metrics,
                        pruned: None,
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
    if png.is_some_and(super::output::is_stdout) {
        super::console::err(format_args!("{table}"), false);
    } else {
        out!("{table}");
    }
    if let Some(png) = png {
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
