//! A sweep as one table (like `dvc exp show`): the swept values as columns, one row per variant
//! and evaluation stage, the best value of each metric in bold. Which records form the sweep is
//! decided here too; reading the verified metrics is the caller's (`pipe compare`).

use super::short_name;
use crate::record::{Outcome, PRUNED_EPOCH, RunRecord, StageRecord};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Metric columns: (report key, header). Every one is better when higher.
pub const METRICS: [(&str, &str); 3] = [
    ("balanced_accuracy", "balanced accuracy"),
    ("accuracy", "accuracy"),
    ("roc_auc", "ROC AUC"),
];

pub struct Row {
    pub variant: BTreeMap<String, String>,
    pub stage: String,
    pub metrics: BTreeMap<String, f64>,
    /// A trial a search's pruner stopped: the epoch it stopped after, of how many. Its row
    /// names the pruned stage, in italics, and has no metrics.
    pub pruned: Option<(u32, u32)>,
}

impl Row {
    /// The row of stage `stage` of a variant, pruned as its record says: `None` unless it was.
    pub fn pruned(
        variant: &BTreeMap<String, String>,
        stage: &str,
        rec: &StageRecord,
    ) -> Option<Row> {
        if rec.outcome != Outcome::Pruned {
            return None;
        }
        let m = |k: &str| rec.report.metrics.get(k).map_or(0, |v| *v as u32);
        Some(Row {
            variant: variant.clone(),
            stage: stage.to_string(),
            metrics: BTreeMap::new(),
            pruned: Some((m(PRUNED_EPOCH), m("epochs"))),
        })
    }
}

/// The records of the latest sweep of `pipeline`, latest per variant, in the order the
/// variants first ran; `None` when the pipeline's latest successful run was not in a sweep.
pub fn latest_sweep<'a>(
    records: &'a [(PathBuf, RunRecord)],
    pipeline: &str,
) -> Option<Vec<&'a RunRecord>> {
    let ok = |r: &&RunRecord| r.pipeline == pipeline && r.ok;
    let latest = records.iter().map(|(_, r)| r).rev().find(ok)?;
    let id = latest.sweep.as_ref()?;
    let mut out: Vec<&RunRecord> = Vec::new();
    for r in records
        .iter()
        .map(|(_, r)| r)
        .filter(ok)
        .filter(|r| r.sweep.as_ref() == Some(id))
    {
        match out.iter_mut().find(|o| o.variant == r.variant) {
            Some(slot) => *slot = r,
            None => out.push(r),
        }
    }
    Some(out)
}

/// The Markdown table of `rows`; `paths` are the swept paths (the columns before the stage).
pub fn markdown(paths: &[String], rows: &[Row]) -> String {
    let all: Vec<&str> = paths.iter().map(String::as_str).collect();
    let mut head: Vec<&str> = all.iter().map(|p| short_name(p, &all)).collect();
    head.push("stage");
    head.extend(METRICS.iter().map(|(_, h)| *h));
    head.push("threshold");
    let mut out = format!("| {} |\n|{}\n", head.join(" | "), "---|".repeat(head.len()));
    let best: Vec<Option<f64>> = METRICS
        .iter()
        .map(|(k, _)| {
            rows.iter()
                .filter_map(|r| r.metrics.get(*k).copied())
                .filter(|v| !v.is_nan())
                .reduce(f64::max)
        })
        .collect();
    for r in rows {
        let mut cells: Vec<String> = paths
            .iter()
            .map(|p| r.variant.get(p).cloned().unwrap_or_else(|| "–".into()))
            .collect();
        cells.push(match r.pruned {
            Some((epoch, of)) => format!("*{} pruned after epoch {epoch} of {of}*", r.stage),
            None => r.stage.clone(),
        });
        for ((k, _), b) in METRICS.iter().zip(&best) {
            cells.push(match r.metrics.get(*k) {
                Some(v) if Some(*v) == *b => format!("**{v:.4}**"),
                Some(v) => format!("{v:.4}"),
                None => "–".into(),
            });
        }
        cells.push(
            r.metrics
                .get("threshold")
                .map(|v| format!("{v:.4}"))
                .unwrap_or_else(|| "–".into()),
        );
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(sweep: Option<&str>, lr: &str, started: &str) -> (PathBuf, RunRecord) {
        let variant = if sweep.is_some() {
            BTreeMap::from([("stages.t.lr".to_string(), lr.to_string())])
        } else {
            BTreeMap::new()
        };
        let r = RunRecord {
            pipeline: "b3".into(),
            file: "b3.yaml".into(),
            started: started.into(),
            seconds: 1.0,
            ok: true,
            stages: BTreeMap::new(),
            sweep: sweep.map(String::from),
            variant,
            overrides: Vec::new(),
        };
        (PathBuf::from(started), r)
    }

    #[test]
    fn the_latest_sweep_keeps_the_latest_run_of_each_variant() {
        let recs = vec![
            rec(Some("old"), "1", "a"),
            rec(Some("s"), "1", "b"),
            rec(Some("s"), "2", "c"),
            rec(Some("s"), "1", "d"),
        ];
        let got = latest_sweep(&recs, "b3").unwrap();
        let started: Vec<&str> = got.iter().map(|r| r.started.as_str()).collect();
        assert_eq!(started, ["d", "c"]);
        assert!(latest_sweep(&recs, "other").is_none());
        let mut plain = recs.clone();
        plain.push(rec(None, "", "e"));
        assert!(
            latest_sweep(&plain, "b3").is_none(),
            "latest run not a sweep"
        );
    }

    #[test]
    fn swept_values_are_columns_and_the_best_is_bold() {
        let row = |lr: &str, b: f64, a: f64| Row {
            variant: BTreeMap::from([
                ("stages.t.lr".to_string(), lr.to_string()),
                ("stages.t.dropout".to_string(), "0.3".to_string()),
            ]),
            stage: "evaluate".into(),
            metrics: BTreeMap::from([
                ("balanced_accuracy".to_string(), b),
                ("accuracy".to_string(), a),
                ("threshold".to_string(), 0.5),
            ]),
            pruned: None,
        };
        let paths = ["stages.t.lr".to_string(), "stages.t.dropout".to_string()];
        let md = markdown(&paths, &[row("0.01", 0.8, 0.9), row("0.001", 0.85, 0.7)]);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(
            lines[0],
            "| lr | dropout | stage | balanced accuracy | accuracy | ROC AUC | threshold |"
        );
        assert_eq!(lines[1], "|---|---|---|---|---|---|---|");
        assert_eq!(
            lines[2],
            "| 0.01 | 0.3 | evaluate | 0.8000 | **0.9000** | – | 0.5000 |"
        );
        assert_eq!(
            lines[3],
            "| 0.001 | 0.3 | evaluate | **0.8500** | 0.7000 | – | 0.5000 |"
        );
    }

    #[test]
    fn pruned_trials_are_marked_with_their_stop_epoch() {
        let variant = BTreeMap::from([("stages.t.lr".to_string(), "0.1".to_string())]);
        let mut rec: StageRecord = serde_json::from_value(serde_json::json!({
            "kind": "train", "key": "ab".repeat(32), "outcome": "pruned", "seconds": 1.0,
            "key_parts": {"format": 2, "kind": "train", "version": 1, "config": {},
                          "inputs": {}, "files": {}},
            "report": {"metrics": {"pruned_epoch": 3.0, "epochs": 9.0, "val_bacc": 0.5},
                       "summary": "", "figures": []}
        }))
        .unwrap();
        let row = Row::pruned(&variant, "t", &rec).unwrap();
        assert_eq!(row.pruned, Some((3, 9)));
        let md = markdown(&["stages.t.lr".to_string()], &[row]);
        assert_eq!(
            md.lines().nth(2),
            Some("| 0.1 | *t pruned after epoch 3 of 9* | – | – | – | – |")
        );
        rec.outcome = Outcome::Ran;
        assert!(Row::pruned(&variant, "t", &rec).is_none());
    }
}
