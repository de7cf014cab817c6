//! The samplers of `--search`: `random` (every trial drawn as [`super::search::draw`] draws it)
//! and `tpe`, the Tree-structured Parzen Estimator (Bergstra et al. 2011) with Optuna's
//! defaults: the first [`STARTUP_TRIALS`] trials are random search's, then each axis is
//! proposed by comparing the density of its values among the best trials (the best
//! min(⌈10 %⌉, 25) of them) with their density among the rest, and taking the best of
//! [`EI_CANDIDATES`] candidates drawn from the former. Axes are independent (Optuna's default,
//! `multivariate=False`).
//!
//! The estimator is the `tpe` crate's (Parzen windows with hyperopt's adaptive bandwidths and a
//! prior for numbers, a histogram with one prior count per choice for choices); this file maps
//! pipe's ranges onto it: log ranges are searched in the exponent, integer ranges as reals in
//! [lo − ½, hi + ½) rounded to the nearest integer, choices by their index. Proposed floats are
//! rounded to 4 significant digits as random search's are, so names stay readable and the value
//! recorded is the value trained with; finished trials are told as those recorded values.
//!
//! Reproducible: trial `k`'s proposal depends only on the seed, `k` and the finished trials
//! (in trial order), so a search rerun with the same seed proposes what it proposed before and
//! a killed search resumes from its records. Trials compete by rank: completed ones by their
//! objective, then pruned ones (a longer run first, then a better last metric), as Optuna ranks
//! them; failed and running trials are not told.

use super::search::{Range, SearchAxis, draw, float_text, round_sig};
use super::trial::{Direction, Outcome, Trial};
use super::{MAX_VARIANTS, SweepError, Variant};
use crate::quote::quote;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Random trials before TPE takes over (Optuna's `n_startup_trials`).
pub const STARTUP_TRIALS: usize = 10;
/// Candidates drawn per axis and proposal (Optuna's `n_ei_candidates`).
pub const EI_CANDIDATES: usize = 24;
/// Share of the told trials that counts as good (Optuna's default `gamma`)…
const GOOD_SHARE: f64 = 0.1;
/// …up to this many.
const MAX_GOOD: usize = 25;

/// `--sampler`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SamplerKind {
    #[default]
    Random,
    Tpe,
}

impl std::str::FromStr for SamplerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "random" => Ok(SamplerKind::Random),
            "tpe" => Ok(SamplerKind::Tpe),
            _ => Err(format!("`{}`: expected random or tpe", quote(s))),
        }
    }
}

impl std::fmt::Display for SamplerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SamplerKind::Random => "random",
            SamplerKind::Tpe => "tpe",
        })
    }
}

/// The TPE settings (Optuna's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TpeSettings {
    /// Trials drawn at random first; TPE also falls back to a random draw while fewer trials
    /// than this have finished (with `-j` some are still running).
    pub startup: usize,
    /// At least 1.
    pub candidates: usize,
}

impl Default for TpeSettings {
    fn default() -> Self {
        TpeSettings {
            startup: STARTUP_TRIALS,
            candidates: EI_CANDIDATES,
        }
    }
}

/// `--sampler`: `random`, `tpe`, or `tpe:startup=N,candidates=N` (Optuna's defaults where not
/// given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SamplerChoice {
    pub kind: SamplerKind,
    /// Used by `tpe` only.
    pub tpe: TpeSettings,
}

impl std::str::FromStr for SamplerChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let quoted = crate::quote::quote(s);
        let (name, params) = match s.split_once(':') {
            Some((n, p)) => (n.trim(), Some(p)),
            None => (s.trim(), None),
        };
        let kind: SamplerKind = name.parse()?;
        let mut tpe = TpeSettings::default();
        for p in params.map(|p| p.split(',')).into_iter().flatten() {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| format!("`{}`: expected KEY=VALUE in `{quoted}`", quote(p)))?;
            let (k, v) = (k.trim(), v.trim());
            let n: usize = v
                .parse()
                .map_err(|_| format!("`{quoted}`: {} must be a whole number", quote(k)))?;
            match (kind, k) {
                (SamplerKind::Tpe, "startup") if n >= 1 => tpe.startup = n,
                (SamplerKind::Tpe, "startup") => {
                    return Err(format!(
                        "`{quoted}`: startup must be at least 1 (TPE learns from finished trials)"
                    ));
                }
                (SamplerKind::Tpe, "candidates") if n >= 1 => tpe.candidates = n,
                (SamplerKind::Tpe, "candidates") => {
                    return Err(format!("`{quoted}`: candidates must be at least 1"));
                }
                (SamplerKind::Tpe, _) => {
                    return Err(format!(
                        "`{quoted}`: tpe has no setting `{}` (it has startup, candidates)",
                        quote(k)
                    ));
                }
                (SamplerKind::Random, _) => {
                    return Err(format!("`{quoted}`: random has no setting `{}`", quote(k)));
                }
            }
        }
        Ok(SamplerChoice { kind, tpe })
    }
}

impl std::fmt::Display for SamplerChoice {
    /// The full form, defaults spelt out (it enters a search's id).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            SamplerKind::Random => write!(f, "random"),
            SamplerKind::Tpe => write!(
                f,
                "tpe:startup={},candidates={}",
                self.tpe.startup, self.tpe.candidates
            ),
        }
    }
}

/// Proposes the trials of one search: built once from the axes and the seed, then asked for
/// trial after trial with what is known of the others.
#[derive(Debug, Clone)]
pub struct Sampler {
    kind: SamplerKind,
    tpe: TpeSettings,
    axes: Vec<SearchAxis>,
    seed: u64,
    /// Random search's first trials: all of a random search, the startup trials of TPE.
    drawn: Vec<Variant>,
}

impl Sampler {
    /// A sampler for a search of `trials` trials (at most [`MAX_VARIANTS`]).
    pub fn new(
        kind: SamplerKind,
        tpe: TpeSettings,
        axes: &[SearchAxis],
        trials: usize,
        seed: u64,
    ) -> Result<Sampler, SweepError> {
        let tpe = TpeSettings {
            candidates: tpe.candidates.max(1),
            ..tpe
        };
        let pre = match kind {
            SamplerKind::Random => trials,
            SamplerKind::Tpe => trials.min(tpe.startup),
        };
        if trials > MAX_VARIANTS {
            return Err(SweepError::TooMany {
                what: "--trials".into(),
                count: trials.to_string(),
            });
        }
        Ok(Sampler {
            kind,
            tpe,
            axes: axes.to_vec(),
            seed,
            drawn: draw(axes, pre, seed)?,
        })
    }

    pub fn kind(&self) -> SamplerKind {
        self.kind
    }

    /// The trials drawn before any is told: every trial of a random search, TPE's startup
    /// trials. They can be checked before the search runs.
    pub fn drawn(&self) -> &[Variant] {
        &self.drawn
    }

    /// Whether trial `trial`'s proposal depends on the trials before it.
    pub fn learns_at(&self, trial: usize) -> bool {
        trial >= self.drawn.len()
    }

    /// Trial `trial`'s values (0-based), given the trials the search knows of (in trial order;
    /// any trial may be among them, finished or not).
    pub fn propose(
        &self,
        trial: usize,
        history: &[Trial],
        direction: Direction,
    ) -> Result<Variant, SweepError> {
        if let Some(v) = self.drawn.get(trial) {
            return Ok(v.clone());
        }
        let mut rng = ChaCha8Rng::seed_from_u64(trial_seed(self.seed, trial as u64));
        let told = ranks(history, direction);
        if self.kind == SamplerKind::Random || told.len() < self.tpe.startup {
            return Ok(Variant {
                values: self
                    .axes
                    .iter()
                    .map(|a| (a.path.clone(), a.range.draw(&mut rng)))
                    .collect(),
            });
        }
        let mut rng = Rng010(rng);
        let good = good_share(told.len());
        let mut values = Vec::with_capacity(self.axes.len());
        for (i, axis) in self.axes.iter().enumerate() {
            let space = Space::of(&axis.range);
            let bad = |message: String| SweepError::Value {
                arg: format!("{}={}", axis.path, axis.range),
                message,
            };
            let range = space.range().map_err(|e| bad(e.to_string()))?;
            let mut optimizer = tpe::TpeOptimizerBuilder::new()
                .gamma(good)
                .candidates(self.tpe.candidates)
                .build(space.estimator(), range)
                .map_err(|e| bad(e.to_string()))?;
            for &(t, rank) in &told {
                let x = history[t]
                    .values
                    .get(i)
                    .map_or(f64::NAN, |v| space.internal(v, range));
                // Only a NaN rank is refused, and ranks are numbers.
                optimizer.tell(x, rank).map_err(|e| bad(e.to_string()))?;
            }
            let x = match optimizer.ask(&mut rng) {
                Ok(x) => x,
                Err(never) => match never {},
            };
            values.push((axis.path.clone(), space.external(x)));
        }
        Ok(Variant { values })
    }
}

/// The told trials (index into the history, rank: 0 the best): completed ones by objective,
/// then pruned ones, the longer run first, then by their last metric; ties in trial order.
fn ranks(history: &[Trial], direction: Direction) -> Vec<(usize, f64)> {
    let mut complete: Vec<(usize, f64)> = Vec::new();
    let mut pruned: Vec<(usize, u32, f64)> = Vec::new();
    for (i, t) in history.iter().enumerate() {
        match t.outcome {
            Outcome::Complete(v) if !v.is_nan() => complete.push((i, v)),
            Outcome::Pruned { epoch, value } => pruned.push((i, epoch, value)),
            _ => {}
        }
    }
    complete.sort_by(|a, b| direction.cmp(a.1, b.1).then(a.0.cmp(&b.0)));
    pruned.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then(direction.cmp(a.2, b.2))
            .then(a.0.cmp(&b.0))
    });
    complete
        .into_iter()
        .map(|(i, _)| i)
        .chain(pruned.into_iter().map(|(i, ..)| i))
        .enumerate()
        .map(|(rank, i)| (i, rank as f64))
        .collect()
}

/// The share of `n` told trials the crate's split (`⌈n · share⌉`) takes as good, such that
/// it takes min(⌈n/10⌉, 25) of them as Optuna does.
fn good_share(n: usize) -> f64 {
    let good = ((n as f64 * GOOD_SHARE).ceil() as usize).clamp(1, MAX_GOOD);
    // Half a trial below `good` so that rounding cannot tip ⌈n · share⌉ over it.
    (good as f64 - 0.5) / n as f64
}

/// Trial `trial`'s generator seed: splitmix64 over (seed, trial), away from random search's
/// stream (which starts from `seed` itself).
fn trial_seed(seed: u64, trial: u64) -> u64 {
    let mut z = seed ^ 0x5450_455f_5452_4941 ^ trial.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// An axis as the estimator sees it.
enum Space<'a> {
    Linear { lo: f64, hi: f64 },
    Log { lo: f64, hi: f64 },
    Int { lo: i64, hi: i64 },
    Choice(&'a [String]),
}

impl<'a> Space<'a> {
    fn of(range: &'a Range) -> Self {
        match range {
            Range::Uniform { lo, hi } => Space::Linear { lo: *lo, hi: *hi },
            Range::LogUniform { lo, hi } => Space::Log { lo: *lo, hi: *hi },
            Range::Int { lo, hi } => Space::Int { lo: *lo, hi: *hi },
            Range::Choice(values) => Space::Choice(values),
        }
    }

    /// The interval the estimator works in.
    fn range(&self) -> Result<tpe::range::Range, tpe::range::RangeError> {
        match self {
            Space::Linear { lo, hi } => tpe::range(*lo, *hi),
            Space::Log { lo, hi } => tpe::range(lo.ln(), hi.ln()),
            Space::Int { lo, hi } => tpe::range(*lo as f64 - 0.5, *hi as f64 + 0.5),
            Space::Choice(values) => tpe::categorical_range(values.len()),
        }
    }

    fn estimator(&self) -> tpe::density_estimation::DefaultEstimatorBuilder {
        match self {
            Space::Choice(_) => tpe::histogram_estimator(),
            _ => tpe::parzen_estimator(),
        }
    }

    /// A recorded value in the estimator's interval (clamped there: a rounded value may lie
    /// just outside), or NaN when it is not one of this axis's values.
    fn internal(&self, text: &str, range: tpe::range::Range) -> f64 {
        let x = match self {
            Space::Linear { .. } | Space::Int { .. } => text.trim().parse::<f64>().ok(),
            Space::Log { .. } => text
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|x| *x > 0.0)
                .map(f64::ln),
            Space::Choice(values) => values.iter().position(|v| v == text).map(|i| i as f64),
        };
        match x {
            Some(x) if x.is_finite() => x.clamp(range.start(), range.end().next_down()),
            _ => f64::NAN,
        }
    }

    /// A proposal as the text `--set` takes.
    fn external(&self, x: f64) -> String {
        match self {
            Space::Linear { .. } => float_text(round_sig(x)),
            Space::Log { .. } => float_text(round_sig(x.exp())),
            Space::Int { lo, hi } => (x.round().clamp(*lo as f64, *hi as f64) as i64).to_string(),
            Space::Choice(values) => values[(x.max(0.0) as usize).min(values.len() - 1)].clone(),
        }
    }
}

/// pipe's ChaCha8 generator (rand 0.9) as the rand 0.10 generator the `tpe` crate takes.
struct Rng010(ChaCha8Rng);

impl rand_core_010::TryRng for Rng010 {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(rand::RngCore::next_u32(&mut self.0))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(rand::RngCore::next_u64(&mut self.0))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        rand::RngCore::fill_bytes(&mut self.0, dst);
        Ok(())
    }
}

#[cfg(test)]
#[path = "tpe_tests.rs"]
mod tests;
