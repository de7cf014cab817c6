//! `pipe compare`'s experiment table (`--sort`, `--filter`, `--columns`, `--all`): one row per
//! run and evaluation, with the run's parameters beside the evaluation's metrics; filtered,
//! sorted and cut to the chosen columns.

use crate::settings::filter::{Filter, Op};
use std::collections::{BTreeMap, BTreeSet};

/// One evaluation of one run.
#[derive(Debug, Clone)]
pub(super) struct Row {
    pub run: String,
    pub pipeline: String,
    pub stage: String,
    /// The run's parameters, `stage.field` → value (see `history::params`).
    pub params: BTreeMap<String, String>,
    pub metrics: BTreeMap<String, f64>,
}

/// The metrics shown when `--columns` does not say.
const METRICS: [&str; 4] = ["balanced_accuracy", "accuracy", "roc_auc", "threshold"];

/// A value of a row's cell: a metric, or text (a parameter, or run/pipeline/stage).
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Num(f64),
    Text(String),
}

impl Cell {
    fn num(&self) -> Option<f64> {
        match self {
            Cell::Num(v) => Some(*v),
            Cell::Text(t) => t.parse().ok(),
        }
    }

    fn shown(&self) -> String {
        match self {
            Cell::Num(v) => format!("{v:.4}"),
            Cell::Text(t) => t.clone(),
        }
    }
}

impl Row {
    /// The values `name` names in this row: run, pipeline, stage, a metric, a parameter by its
    /// full name (`train_b3.lr`) or by its last part (`lr`: every stage's `lr`).
    fn values(&self, name: &str) -> Vec<Cell> {
        match name {
            "run" => return vec![Cell::Text(self.run.clone())],
            "pipeline" => return vec![Cell::Text(self.pipeline.clone())],
            "stage" => return vec![Cell::Text(self.stage.clone())],
            _ => {}
        }
        if let Some(v) = self.metrics.get(name) {
            return vec![Cell::Num(*v)];
        }
        if let Some(v) = self.params.get(name) {
            return vec![Cell::Text(v.clone())];
        }
        let suffix = format!(".{name}");
        let found: BTreeSet<&String> = self
            .params
            .iter()
            .filter(|(k, _)| k.ends_with(&suffix))
            .map(|(_, v)| v)
            .collect();
        found.into_iter().map(|v| Cell::Text(v.clone())).collect()
    }

    /// One cell for a column: the value, or the values joined when several stages share the
    /// name, or "–".
    fn cell(&self, name: &str) -> String {
        let v = self.values(name);
        if v.is_empty() {
            "–".into()
        } else {
            v.iter().map(Cell::shown).collect::<Vec<_>>().join(" / ")
        }
    }
}

impl Filter {
    /// Whether `row` passes: some value of the name satisfies the comparison (numbers as
    /// numbers, else as text); a row without the name does not pass.
    fn passes(&self, row: &Row) -> bool {
        let want = self.value.parse::<f64>().ok();
        row.values(&self.name).iter().any(|c| {
            let ord = match (c.num(), want) {
                (Some(a), Some(b)) => a.partial_cmp(&b),
                _ => Some(c.shown().as_str().cmp(self.value.as_str())),
            };
            let Some(ord) = ord else { return false };
            match self.op {
                Op::Lt => ord.is_lt(),
                Op::Le => ord.is_le(),
                Op::Gt => ord.is_gt(),
                Op::Ge => ord.is_ge(),
                Op::Eq => ord.is_eq(),
                Op::Ne => ord.is_ne(),
            }
        })
    }
}

/// What the experiment table shows and how.
pub(super) struct View<'a> {
    pub filters: &'a [Filter],
    pub sort: Option<&'a str>,
    pub columns: Option<&'a [String]>,
}

/// Names that no row has: a typo would otherwise empty the table or a column silently.
fn unknown<'a>(rows: &[Row], names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    names
        .into_iter()
        .filter(|n| rows.iter().all(|r| r.values(n).is_empty()))
        .map(String::from)
        .collect()
}

/// Whether a metric is better low (a loss or an error): `--sort` puts those lowest first.
fn lower_is_better(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    last.contains("loss") || last.contains("error")
}

/// The parameters worth a column: those that differ between two rows of one pipeline, by
/// their short name where that is unambiguous.
fn varying(rows: &[Row]) -> Vec<String> {
    let mut names = BTreeSet::new();
    for (i, a) in rows.iter().enumerate() {
        for b in rows[i + 1..].iter().filter(|b| b.pipeline == a.pipeline) {
            let keys: BTreeSet<&String> = a.params.keys().chain(b.params.keys()).collect();
            names.extend(
                keys.into_iter()
                    .filter(|k| a.params.get(*k) != b.params.get(*k))
                    .cloned(),
            );
        }
    }
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut out: Vec<String> = Vec::new();
    for n in &all {
        let short = crate::sweep::short_name(n, &all).to_string();
        if !out.contains(&short) {
            out.push(short);
        }
    }
    out
}

/// The Markdown table of `rows` (oldest run first) under `view`, or the error (exit 2) for a
/// name that no row has.
pub(super) fn table(mut rows: Vec<Row>, view: &View<'_>) -> Result<(String, Vec<Row>), String> {
    let mut asked: Vec<&str> = view.filters.iter().map(|f| f.name.as_str()).collect();
    asked.extend(view.sort);
    asked.extend(view.columns.unwrap_or_default().iter().map(String::as_str));
    let missing = unknown(&rows, asked);
    if !rows.is_empty() && !missing.is_empty() {
        return Err(format!(
            "no compared run has {}: a column is run, pipeline, stage, a metric (e.g. \
             balanced_accuracy) or a parameter (stage.field, or just field)",
            missing
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    rows.retain(|r| view.filters.iter().all(|f| f.passes(r)));
    if let Some(key) = view.sort {
        let low = lower_is_better(key);
        // Stable: ties keep the run order; rows without the value go last.
        rows.sort_by(|a, b| {
            let first = |r: &Row| r.values(key).first().cloned();
            match (first(a), first(b)) {
                (Some(x), Some(y)) => {
                    let ord = match (x.num(), y.num()) {
                        (Some(x), Some(y)) => {
                            x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal)
                        }
                        _ => x.shown().cmp(&y.shown()),
                    };
                    if low { ord } else { ord.reverse() }
                }
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            }
        });
    }
    let columns: Vec<String> = match view.columns {
        Some(c) => c.to_vec(),
        None => ["run", "pipeline", "stage"]
            .into_iter()
            .map(String::from)
            .chain(varying(&rows))
            .chain(METRICS.into_iter().map(String::from))
            .collect(),
    };
    let mut md = format!("| {} |\n", columns.join(" | "));
    md.push_str(&format!("|{}\n", "---|".repeat(columns.len())));
    for r in &rows {
        let cells: Vec<String> = columns.iter().map(|c| r.cell(c)).collect();
        md.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    Ok((md, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(run: &str, lr: &str, epochs: &str, bacc: Option<f64>) -> Row {
        Row {
            run: run.into(),
            pipeline: "p".into(),
            stage: "evaluate".into(),
            params: BTreeMap::from([
                ("train.lr".to_string(), lr.to_string()),
                ("train.epochs".to_string(), epochs.to_string()),
                ("train.model".to_string(), "b3".to_string()),
            ]),
            metrics: bacc
                .map(|b| BTreeMap::from([("balanced_accuracy".to_string(), b)]))
                .unwrap_or_default(),
        }
    }

    fn runs(rows: &[Row]) -> Vec<&str> {
        rows.iter().map(|r| r.run.as_str()).collect()
    }

    #[test]
    fn filters_parse_and_bad_ones_say_why() {
        let f: Filter = "lr<0.001".parse().unwrap();
        assert_eq!(
            (f.name.as_str(), f.op, f.value.as_str()),
            ("lr", Op::Lt, "0.001")
        );
        let f: Filter = "epochs >= 5".parse().unwrap();
        assert_eq!((f.name.as_str(), f.op), ("epochs", Op::Ge));
        assert_eq!("model=b3".parse::<Filter>().unwrap().op, Op::Eq);
        assert_eq!("model!=b3".parse::<Filter>().unwrap().op, Op::Ne);
        assert!(
            "lr".parse::<Filter>()
                .unwrap_err()
                .contains("no comparison")
        );
        assert!(
            "<3".parse::<Filter>()
                .unwrap_err()
                .contains("a name and a value")
        );
        assert!(
            "lr<fast"
                .parse::<Filter>()
                .unwrap_err()
                .contains("compares numbers")
        );
    }

    #[test]
    fn filter_sort_and_columns() {
        let rows = vec![
            row("r1", "0.01", "5", Some(0.7)),
            row("r2", "0.0005", "5", Some(0.9)),
            row("r3", "0.0001", "3", None),
            row("r4", "0.0002", "8", Some(0.9)),
        ];
        let f = ["lr<0.001".parse().unwrap(), "epochs>=5".parse().unwrap()];
        let view = View {
            filters: &f,
            sort: None,
            columns: None,
        };
        let (md, kept) = table(rows.clone(), &view).unwrap();
        assert_eq!(runs(&kept), ["r2", "r4"]);
        assert!(
            md.starts_with("| run | pipeline | stage | epochs | lr | balanced_accuracy"),
            "{md}"
        );
        // Highest first, ties in run order, absent last.
        let view = View {
            filters: &[],
            sort: Some("balanced_accuracy"),
            columns: Some(&["run".to_string(), "lr".to_string()]),
        };
        let (md, kept) = table(rows.clone(), &view).unwrap();
        assert_eq!(runs(&kept), ["r2", "r4", "r1", "r3"]);
        assert!(
            md.starts_with("| run | lr |\n|---|---|\n| r2 | 0.0005 |"),
            "{md}"
        );
        let e = table(
            rows,
            &View {
                filters: &[],
                sort: Some("bacc"),
                columns: None,
            },
        )
        .unwrap_err();
        assert!(e.contains("no compared run has `bacc`"), "{e}");
    }

    #[test]
    fn losses_sort_lowest_first() {
        assert!(lower_is_better("train.val_loss"));
        assert!(!lower_is_better("balanced_accuracy"));
    }
}
