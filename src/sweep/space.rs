//! What a sweep or search varies ([`Space`]: the grid of `--sweep` axes, or `--search` ranges
//! drawn `--trials` times) and how its variants are ranked by `--objective`.

use super::prune::Pruner;
use super::search::{Objective, SearchAxis};
use super::tpe::{Sampler, SamplerChoice, SamplerKind};
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
        sampler: SamplerChoice,
        pruner: Pruner,
    },
}

/// What `run --search` was given besides its ranges.
#[derive(Debug, Clone, Copy, Default)]
pub struct SearchArgs {
    pub trials: Option<u32>,
    pub seed: u64,
    pub sampler: SamplerChoice,
    pub pruner: Pruner,
}

impl Space {
    /// The space `run --sweep`/`--search` describe. The axes are parsed here rather than by
    /// clap, which would echo a bad 100 KB argument in full.
    pub fn from_args(
        sweep: &[String],
        search: &[String],
        args: SearchArgs,
    ) -> Result<Space, String> {
        match args.trials {
            Some(trials) => Ok(Space::Search {
                axes: search
                    .iter()
                    .map(|a| a.parse().map_err(|e| format!("--search {e}")))
                    .collect::<Result<_, _>>()?,
                trials: trials as usize,
                seed: args.seed,
                sampler: args.sampler,
                pruner: args.pruner,
            }),
            None => Ok(Space::Grid(
                sweep
                    .iter()
                    .map(|a| a.parse().map_err(|e| format!("--sweep {e}")))
                    .collect::<Result<_, _>>()?,
            )),
        }
    }

    /// The variants known before any runs: the grid, or the trials a search draws before its
    /// sampler learns from finished ones (all of a random search).
    pub fn variants(&self) -> Result<Vec<Variant>, SweepError> {
        match self {
            Space::Grid(axes) => grid(axes),
            Space::Search { .. } => Ok(self
                .sampler()?
                .map_or_else(Vec::new, |s| s.drawn().to_vec())),
        }
    }

    /// A search's sampler (`None` for a grid).
    pub fn sampler(&self) -> Result<Option<Sampler>, SweepError> {
        match self {
            Space::Grid(_) => Ok(None),
            Space::Search {
                axes,
                trials,
                seed,
                sampler,
                ..
            } => Sampler::new(sampler.kind, sampler.tpe, axes, *trials, *seed).map(Some),
        }
    }

    /// How many variants run: the grid's, or `--trials`.
    pub fn count(&self) -> Result<usize, SweepError> {
        match self {
            Space::Grid(axes) => Ok(grid(axes)?.len()),
            Space::Search { trials, .. } => Ok(*trials),
        }
    }

    /// Trials at the edges of a search's ranges (none for a grid, whose variants are all
    /// known): see [`super::search::bounds`].
    pub fn bounds(&self) -> Vec<Variant> {
        match self {
            Space::Grid(_) => Vec::new(),
            Space::Search { axes, .. } => super::search::bounds(axes),
        }
    }

    /// `--prune` (none for a grid).
    pub fn pruner(&self) -> Pruner {
        match self {
            Space::Grid(_) => Pruner::None,
            Space::Search { pruner, .. } => *pruner,
        }
    }

    /// Whether the variants run as a live search (trials proposed from finished ones, or
    /// stopped early by a pruner) rather than as a list fixed beforehand.
    pub fn is_live(&self) -> bool {
        match self {
            Space::Grid(_) => false,
            Space::Search {
                sampler, pruner, ..
            } => sampler.kind != SamplerKind::Random || *pruner != Pruner::None,
        }
    }

    pub fn paths(&self) -> Vec<&str> {
        match self {
            Space::Grid(axes) => axes.iter().map(|a| a.path.as_str()).collect(),
            Space::Search { axes, .. } => axes.iter().map(|a| a.path.as_str()).collect(),
        }
    }

    /// The text the sweep id is made from: the axes, and for a search its trials, seed, sampler
    /// and pruner.
    pub fn spec(&self) -> String {
        match self {
            Space::Grid(axes) => axes
                .iter()
                .map(|a| format!("--sweep {}={}", a.path, a.values.join(",")))
                .collect::<Vec<_>>()
                .join(" "),
            Space::Search {
                axes,
                trials,
                seed,
                sampler,
                pruner,
            } => {
                let ranges: Vec<String> = axes
                    .iter()
                    .map(|a| format!("--search {}={}", a.path, a.range))
                    .collect();
                // A random search without pruning keeps the id it had before both existed.
                let mut spec = format!("{} --trials {trials} --seed {seed}", ranges.join(" "));
                if sampler.kind != SamplerKind::Random {
                    spec.push_str(&format!(" --sampler {sampler}"));
                }
                if *pruner != Pruner::None {
                    spec.push_str(&format!(" --prune {pruner}"));
                }
                spec
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

    fn search(sampler: &str, prune: &str) -> Space {
        let args = SearchArgs {
            trials: Some(12),
            seed: 1,
            sampler: sampler.parse().unwrap(),
            pruner: prune.parse().unwrap(),
        };
        Space::from_args(&[], &["stages.t.lr=1e-4..1e-2:log".to_string()], args).unwrap()
    }

    #[test]
    fn a_search_is_live_when_its_sampler_learns_or_its_pruner_stops_trials() {
        let random = search("random", "none");
        assert!(!random.is_live());
        assert_eq!(random.variants().unwrap().len(), 12);
        assert_eq!(
            random.spec(),
            "--search stages.t.lr=0.0001..0.01:log --trials 12 --seed 1",
            "the id of a random search is the one it had before samplers"
        );
        let tpe = search("tpe", "none");
        assert!(tpe.is_live());
        assert_eq!(tpe.count().unwrap(), 12);
        assert_eq!(tpe.variants().unwrap().len(), 10, "TPE's random start");
        assert!(
            tpe.spec()
                .ends_with(" --sampler tpe:startup=10,candidates=24")
        );
        let pruned = search("random", "asha");
        assert!(pruned.is_live());
        assert!(pruned.spec().ends_with(" --prune asha:r=1,eta=3"));
        assert_eq!(pruned.pruner(), "asha".parse().unwrap());
        let grid =
            Space::from_args(&["stages.t.lr=1,2".to_string()], &[], SearchArgs::default()).unwrap();
        assert!(!grid.is_live() && grid.sampler().unwrap().is_none());
        assert_eq!(grid.pruner(), Pruner::None);
    }

    #[test]
    fn best_maximises_or_minimises_and_skips_nan() {
        let s = [(0, 0.5), (1, f64::NAN), (2, 0.9), (3, 0.1), (4, 0.9)];
        assert_eq!(best(&s, false), Some(2), "ties go to the earlier variant");
        assert_eq!(best(&s, true), Some(3));
        assert_eq!(best(&[], false), None);
        assert_eq!(best(&[(0, f64::NAN)], false), None);
    }
}
