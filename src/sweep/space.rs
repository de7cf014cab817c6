//! What a sweep or search varies ([`Space`]: the grid of `--sweep` axes, or `--search` ranges
//! drawn `--trials` times) and how its variants are ranked by `--objective`.

use super::search::{Objective, SearchAxis};
use super::{Axis, SweepError, Variant, grid};
use crate::record::{Outcome, RunRecord};

/// What to vary.
#[derive(Debug, Clone)]
pub enum Space {
    Grid(Vec<Axis>),
    Search {
        axes: Vec<SearchAxis>,
        trials: usize,
        seed: u64,
    },
}

impl Space {
    /// The space `run --sweep`/`--search` describe. The axes are parsed here rather than by
    /// clap, which would echo a bad 100 KB argument in full.
    pub fn from_args(
        sweep: &[String],
        search: &[String],
        trials: Option<u32>,
        seed: u64,
    ) -> Result<Space, String> {
        match trials {
            Some(trials) => Ok(Space::Search {
                axes: search
                    .iter()
                    .map(|a| a.parse().map_err(|e| format!("--search {e}")))
                    .collect::<Result<_, _>>()?,
                trials: trials as usize,
                seed,
            }),
            None => Ok(Space::Grid(
                sweep
                    .iter()
                    .map(|a| a.parse().map_err(|e| format!("--sweep {e}")))
                    .collect::<Result<_, _>>()?,
            )),
        }
    }

    pub fn variants(&self) -> Result<Vec<Variant>, SweepError> {
        match self {
            Space::Grid(axes) => grid(axes),
            Space::Search { axes, trials, seed } => super::search::draw(axes, *trials, *seed),
        }
    }

    pub fn paths(&self) -> Vec<&str> {
        match self {
            Space::Grid(axes) => axes.iter().map(|a| a.path.as_str()).collect(),
            Space::Search { axes, .. } => axes.iter().map(|a| a.path.as_str()).collect(),
        }
    }

    /// The text the sweep id is made from: the axes, and for a search its trials and seed.
    pub fn spec(&self) -> String {
        match self {
            Space::Grid(axes) => axes
                .iter()
                .map(|a| format!("--sweep {}={}", a.path, a.values.join(",")))
                .collect::<Vec<_>>()
                .join(" "),
            Space::Search { axes, trials, seed } => {
                let ranges: Vec<String> = axes
                    .iter()
                    .map(|a| format!("--search {}={}", a.path, a.range))
                    .collect();
                format!("{} --trials {trials} --seed {seed}", ranges.join(" "))
            }
        }
    }
}

/// The objective's value in a variant's run record.
pub fn objective_value(rec: &RunRecord, o: &Objective) -> Result<f64, String> {
    let s = rec
        .stages
        .get(&o.stage)
        .filter(|s| s.outcome != Outcome::Skipped)
        .ok_or_else(|| format!("--objective {o}: stage `{}` did not run", o.stage))?;
    s.report.metrics.get(&o.metric).copied().ok_or_else(|| {
        let have: Vec<&str> = s.report.metrics.keys().map(String::as_str).collect();
        format!(
            "--objective {o}: stage `{}` reports no `{}` (it reports: {})",
            o.stage,
            o.metric,
            have.join(", ")
        )
    })
}

/// The index (into `scores`) of the best score; ties go to the earlier variant.
pub fn best(scores: &[(usize, f64)], minimize: bool) -> Option<usize> {
    let better = |a: f64, b: f64| if minimize { a < b } else { a > b };
    let mut best: Option<usize> = None;
    for (k, &(_, v)) in scores.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        if best.is_none_or(|b| better(v, scores[b].1)) {
            best = Some(k);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_maximises_or_minimises_and_skips_nan() {
        let s = [(0, 0.5), (1, f64::NAN), (2, 0.9), (3, 0.1), (4, 0.9)];
        assert_eq!(best(&s, false), Some(2), "ties go to the earlier variant");
        assert_eq!(best(&s, true), Some(3));
        assert_eq!(best(&[], false), None);
        assert_eq!(best(&[(0, f64::NAN)], false), None);
    }
}
