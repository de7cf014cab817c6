//! `pipe diff [A] [B]`: what differs between two recorded runs: their parameters (every
//! stage's configuration), their metrics (with the change, signed) and their stages' output
//! digests.

use super::exit::{EXIT_INVALID, EXIT_OK};
use super::history::{self, Run};
use crate::settings::Settings;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// How `diff` names the runs: A and B as typed (defaults: `latest~1`, `latest`).
pub(super) struct Flags<'a> {
    pub a: &'a str,
    pub b: &'a str,
    pub all: bool,
    pub json: bool,
    pub remote: bool,
}

#[derive(Serialize)]
struct Side {
    id: String,
    pipeline: String,
    started: String,
}

#[derive(Serialize, Debug, PartialEq)]
struct Param {
    name: String,
    a: Option<String>,
    b: Option<String>,
}

#[derive(Serialize, Debug, PartialEq)]
struct Metric {
    name: String,
    a: Option<f64>,
    b: Option<f64>,
    /// b − a, when both have it.
    delta: Option<f64>,
}

#[derive(Serialize, Debug, PartialEq)]
struct Output {
    stage: String,
    a: Option<String>,
    b: Option<String>,
}

#[derive(Serialize)]
struct Diff {
    a: Side,
    b: Side,
    params: Vec<Param>,
    metrics: Vec<Metric>,
    outputs: Vec<Output>,
}

pub(super) fn diff(s: &Settings, f: Flags<'_>) -> i32 {
    let remote = if f.remote {
        match super::remote::open_required(s) {
            Ok(r) => Some(r),
            Err(code) => return code,
        }
    } else {
        None
    };
    let runs = match history::load(&s.cache, remote.as_deref()) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let (a, b) = match (history::select(&runs, f.a), history::select(&runs, f.b)) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => {
            for e in [a.err(), b.err()].into_iter().flatten() {
                errln!("error: {e}");
            }
            return EXIT_INVALID;
        }
    };
    let d = compute(a, b, f.all);
    if f.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&d).expect("a diff serialises")
        );
    } else {
        print_text(&d, f.all);
    }
    EXIT_OK
}

fn side(r: &Run) -> Side {
    Side {
        id: r.id.clone(),
        pipeline: r.record.pipeline.clone(),
        started: r.record.started.clone(),
    }
}

/// Every name either map holds, with both values; only the differing ones unless `all`.
fn pairs<V: PartialEq + Clone>(
    a: &BTreeMap<String, V>,
    b: &BTreeMap<String, V>,
    all: bool,
) -> Vec<(String, Option<V>, Option<V>)> {
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    names
        .into_iter()
        .map(|n| (n.clone(), a.get(n).cloned(), b.get(n).cloned()))
        .filter(|(_, x, y)| all || x != y)
        .collect()
}

fn compute(a: &Run, b: &Run, all: bool) -> Diff {
    let params = pairs(
        &history::params(&a.record),
        &history::params(&b.record),
        all,
    )
    .into_iter()
    .map(|(name, a, b)| Param { name, a, b })
    .collect();
    let metrics = pairs(
        &history::metrics(&a.record),
        &history::metrics(&b.record),
        all,
    )
    .into_iter()
    .map(|(name, a, b)| Metric {
        name,
        a,
        b,
        delta: a.zip(b).map(|(a, b)| b - a),
    })
    .collect();
    let digests = |r: &Run| -> BTreeMap<String, Option<String>> {
        r.record
            .stages
            .iter()
            .map(|(id, s)| (id.clone(), s.digest.clone()))
            .collect()
    };
    let outputs = pairs(&digests(a), &digests(b), all)
        .into_iter()
        .map(|(stage, a, b)| Output {
            stage,
            a: a.flatten(),
            b: b.flatten(),
        })
        .collect();
    Diff {
        a: side(a),
        b: side(b),
        params,
        metrics,
        outputs,
    }
}

/// A number with its sign when it is a change: `+0.0123`, `-2`, `0`.
fn signed(v: f64) -> String {
    let text = number(v);
    if v > 0.0 { format!("+{text}") } else { text }
}

/// Up to 4 decimals, trailing zeros dropped (counts read as integers).
fn number(v: f64) -> String {
    let t = format!("{v:.4}");
    let t = t.trim_end_matches('0').trim_end_matches('.');
    if t == "-0" { "0".into() } else { t.into() }
}

fn or_dash<T: AsRef<str>>(v: &Option<T>) -> &str {
    v.as_ref().map_or("–", AsRef::as_ref)
}

fn print_text(d: &Diff, all: bool) {
    outln!("A  {}  ({}, started {})", d.a.id, d.a.pipeline, d.a.started);
    outln!("B  {}  ({}, started {})", d.b.id, d.b.pipeline, d.b.started);
    let changed = if all { "" } else { "changed " };
    let width = d
        .params
        .iter()
        .map(|p| p.name.len())
        .chain(d.metrics.iter().map(|m| m.name.len()))
        .chain(d.outputs.iter().map(|o| o.stage.len()))
        .max()
        .unwrap_or(0);
    if d.params.is_empty() && d.metrics.is_empty() && d.outputs.is_empty() {
        outln!("no differences in parameters, metrics or outputs");
        return;
    }
    if !d.params.is_empty() {
        outln!("\n{changed}params (A → B)");
        for p in &d.params {
            outln!("  {:width$}  {} → {}", p.name, or_dash(&p.a), or_dash(&p.b));
        }
    }
    if !d.metrics.is_empty() {
        outln!("\n{changed}metrics (A → B, change)");
        for m in &d.metrics {
            let show = |v: Option<f64>| v.map_or("–".into(), number);
            let delta = m
                .delta
                .map_or(String::new(), |x| format!("  ({})", signed(x)));
            outln!("  {:width$}  {} → {}{delta}", m.name, show(m.a), show(m.b));
        }
    }
    if !d.outputs.is_empty() {
        outln!("\n{changed}outputs (A → B)");
        let short = |v: &Option<String>| v.as_ref().map_or("–".into(), |d| d[..12].to_string());
        for o in &d.outputs {
            outln!("  {:width$}  {} → {}", o.stage, short(&o.a), short(&o.b));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_carry_their_sign() {
        assert_eq!(signed(0.0123), "+0.0123");
        assert_eq!(signed(-2.0), "-2");
        assert_eq!(signed(0.0), "0");
        assert_eq!(signed(-0.00001), "0");
        assert_eq!(number(57.0), "57");
    }

    #[test]
    fn only_what_differs_unless_all() {
        let a = BTreeMap::from([("x".to_string(), 1), ("y".to_string(), 2)]);
        let b = BTreeMap::from([("x".to_string(), 1), ("z".to_string(), 3)]);
        let p = pairs(&a, &b, false);
        assert_eq!(
            p,
            [
                ("y".to_string(), Some(2), None),
                ("z".to_string(), None, Some(3))
            ]
        );
        assert_eq!(pairs(&a, &b, true).len(), 3);
    }
}
