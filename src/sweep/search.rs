//! Random search (`--search PATH=RANGE --trials N --seed S`): each trial draws every range once
//! from a ChaCha8 generator seeded with S, so the same seed and ranges give the same variants on
//! any machine. Drawn floats are rounded to 4 significant digits: names stay readable and the
//! value in the record is the value the stage was given.

use super::{MAX_VARIANTS, SweepError, Variant, check_override};
use crate::quote::quote;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Significant digits kept of a drawn float.
const DIGITS: i32 = 4;

#[derive(Debug, Clone, PartialEq)]
pub enum Range {
    /// Uniform in [lo, hi).
    Uniform { lo: f64, hi: f64 },
    /// Log-uniform in [lo, hi): uniform in the exponent (learning rates).
    LogUniform { lo: f64, hi: f64 },
    /// Uniform integer in lo..=hi.
    Int { lo: i64, hi: i64 },
    /// One of the values (each as `--set` takes it).
    Choice(Vec<String>),
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Range::Uniform { lo, hi } => write!(f, "{lo}..{hi}"),
            Range::LogUniform { lo, hi } => write!(f, "{lo}..{hi}:log"),
            Range::Int { lo, hi } => write!(f, "{lo}..{hi}:int"),
            Range::Choice(values) => write!(f, "{}", values.join("|")),
        }
    }
}

/// One searched path and its range.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchAxis {
    pub path: String,
    pub range: Range,
}

impl std::str::FromStr for SearchAxis {
    type Err = SweepError;
    /// `PATH=lo..hi`, `PATH=lo..hi:log`, `PATH=lo..hi:int` or `PATH=a|b|c`.
    fn from_str(arg: &str) -> Result<Self, SweepError> {
        let (path, spec) = arg.split_once('=').ok_or_else(|| SweepError::NoEquals {
            arg: arg.to_string(),
        })?;
        let bad = |message: String| SweepError::Value {
            arg: arg.to_string(),
            message,
        };
        let path = path.trim().to_string();
        let range = parse_range(spec.trim()).map_err(bad)?;
        let probe = match &range {
            Range::Choice(values) => values.clone(),
            Range::Int { lo, .. } => vec![lo.to_string()],
            Range::Uniform { lo, .. } | Range::LogUniform { lo, .. } => vec![lo.to_string()],
        };
        for v in &probe {
            check_override(&path, v).map_err(bad)?;
        }
        Ok(SearchAxis { path, range })
    }
}

fn parse_range(spec: &str) -> Result<Range, String> {
    if spec.contains('|') {
        let values: Vec<String> = spec.split('|').map(|v| v.trim().to_string()).collect();
        if values.iter().any(String::is_empty) {
            return Err("an empty choice in `a|b|c`".into());
        }
        return Ok(Range::Choice(values));
    }
    let (bounds, scale) = match spec.rsplit_once(':') {
        Some((b, s)) => (b, Some(s.trim())),
        None => (spec, None),
    };
    let (lo, hi) = bounds.split_once("..").ok_or_else(|| {
        format!(
            "`{}`: expected lo..hi, lo..hi:log, lo..hi:int or a|b|c",
            quote(spec)
        )
    })?;
    let float = |s: &str| {
        s.trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .ok_or_else(|| format!("`{}` is not a finite number", quote(s.trim())))
    };
    match scale {
        Some("int") => {
            let int = |s: &str| {
                s.trim()
                    .parse::<i64>()
                    .map_err(|_| format!("`{}` is not an integer", quote(s.trim())))
            };
            let (lo, hi) = (int(lo)?, int(hi)?);
            if lo > hi {
                return Err(format!("empty range: {lo} > {hi}"));
            }
            Ok(Range::Int { lo, hi })
        }
        Some("log") => {
            let (lo, hi) = (float(lo)?, float(hi)?);
            if lo <= 0.0 {
                return Err(format!("a log range needs lo > 0, got {lo}"));
            }
            if lo >= hi {
                return Err(format!("empty range: {lo} >= {hi}"));
            }
            if lo < f64::MIN_POSITIVE {
                return Err(format!(
                    "`{lo:e}` underflows: a log range's bounds must be at least {:e}",
                    f64::MIN_POSITIVE
                ));
            }
            finite_draws(lo, hi)?;
            Ok(Range::LogUniform { lo, hi })
        }
        None => {
            let (lo, hi) = (float(lo)?, float(hi)?);
            if lo >= hi {
                return Err(format!("empty range: {lo} >= {hi}"));
            }
            if !(hi - lo).is_finite() {
                return Err(format!(
                    "`{lo:e}..{hi:e}` is wider than the largest float ({:e}): its draws would \
                     not be finite",
                    f64::MAX
                ));
            }
            finite_draws(lo, hi)?;
            Ok(Range::Uniform { lo, hi })
        }
        Some(other) => Err(format!(
            "unknown scale `:{}` (expected :log or :int)",
            quote(other)
        )),
    }
}

/// Refuses a range whose extreme draws, rounded to [`DIGITS`] digits, are not finite
/// (`1.7976e308` rounds up past the largest float).
fn finite_draws(lo: f64, hi: f64) -> Result<(), String> {
    for x in [lo, hi] {
        if !round_sig(x).is_finite() {
            return Err(format!(
                "`{x:e}` rounds to {} significant digits beyond the largest float ({:e})",
                DIGITS,
                f64::MAX
            ));
        }
    }
    Ok(())
}

/// `x` rounded to [`DIGITS`] significant digits.
pub(super) fn round_sig(x: f64) -> f64 {
    if x == 0.0 {
        return 0.0;
    }
    let scale = 10f64.powi(DIGITS - 1 - x.abs().log10().floor() as i32);
    let rounded = (x * scale).round() / scale;
    if rounded.is_finite() || !x.is_finite() {
        return rounded;
    }
    // Below about 1e-305 `scale` overflows; printing rounds without it.
    format!("{x:.*e}", (DIGITS - 1) as usize)
        .parse()
        .unwrap_or(x)
}

impl Range {
    /// One draw, as the text `--set` takes.
    pub(super) fn draw(&self, rng: &mut ChaCha8Rng) -> String {
        match self {
            Range::Uniform { lo, hi } => {
                float_text(round_sig(lo + (hi - lo) * rng.random::<f64>()))
            }
            Range::LogUniform { lo, hi } => {
                let (a, b) = (lo.ln(), hi.ln());
                float_text(round_sig((a + (b - a) * rng.random::<f64>()).exp()))
            }
            Range::Int { lo, hi } => rng.random_range(*lo..=*hi).to_string(),
            Range::Choice(values) => values[rng.random_range(0..values.len())].clone(),
        }
    }
}

impl Range {
    /// The values at the range's ends (both ends, each choice), as `--set` takes them: a
    /// rounded draw may land on `hi` itself.
    fn ends(&self) -> Vec<String> {
        match self {
            Range::Uniform { lo, hi } | Range::LogUniform { lo, hi } => {
                vec![float_text(round_sig(*lo)), float_text(round_sig(*hi))]
            }
            Range::Int { lo, hi } => vec![lo.to_string(), hi.to_string()],
            Range::Choice(values) => values.clone(),
        }
    }
}

/// Most trials [`bounds`] builds from every combination of the axes' ends.
const MAX_BOUNDS: usize = 64;

/// Trials at the edges of the search space, loaded and validated before any trial runs so a
/// space that can propose an invalid trial (a dropout of 1, a batch of 0) is refused up front,
/// whatever a sampler would draw later: every combination of the axes' ends when there are at
/// most [`MAX_BOUNDS`], else each axis' ends with the other axes at their first end. The
/// stages' checks bound each field on its own (and size limits grow with each value), so
/// the ends are where a range turns invalid.
pub fn bounds(axes: &[SearchAxis]) -> Vec<Variant> {
    let ends: Vec<Vec<String>> = axes.iter().map(|a| a.range.ends()).collect();
    let product = ends
        .iter()
        .try_fold(1usize, |n, e| n.checked_mul(e.len()))
        .filter(|n| *n <= MAX_BOUNDS);
    let variant = |pick: &[usize]| Variant {
        values: axes
            .iter()
            .zip(&ends)
            .zip(pick)
            .map(|((a, e), &i)| (a.path.clone(), e[i].clone()))
            .collect(),
    };
    let mut out: Vec<Variant> = Vec::new();
    if let Some(n) = product {
        for mut k in 0..n {
            let pick: Vec<usize> = ends
                .iter()
                .rev()
                .map(|e| {
                    let i = k % e.len();
                    k /= e.len();
                    i
                })
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            out.push(variant(&pick));
        }
    } else {
        for (axis, e) in ends.iter().enumerate() {
            for i in 0..e.len() {
                let mut pick = vec![0; ends.len()];
                pick[axis] = i;
                let v = variant(&pick);
                if !out.contains(&v) {
                    out.push(v);
                }
            }
        }
    }
    out
}

/// A float as YAML reads it back as a float (`1` would be an integer).
pub(super) fn float_text(x: f64) -> String {
    let s = format!("{x}");
    if s.contains(['.', 'e', 'E']) {
        s
    } else {
        format!("{s}.0")
    }
}

/// `trials` variants drawn with `seed`: trial by trial, axis by axis in the order given; at most
/// [`MAX_VARIANTS`].
pub fn draw(axes: &[SearchAxis], trials: usize, seed: u64) -> Result<Vec<Variant>, SweepError> {
    if trials > MAX_VARIANTS {
        return Err(SweepError::TooMany {
            what: "--trials".into(),
            count: trials.to_string(),
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let variants = (0..trials)
        .map(|_| Variant {
            values: axes
                .iter()
                .map(|a| (a.path.clone(), a.range.draw(&mut rng)))
                .collect(),
        })
        .collect();
    Ok(variants)
}

/// `STAGE.METRIC` of `--objective`.
#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    pub stage: String,
    pub metric: String,
}

impl std::str::FromStr for Objective {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('.') {
            Some((stage, metric)) if !stage.is_empty() && !metric.is_empty() => Ok(Objective {
                stage: stage.into(),
                metric: metric.into(),
            }),
            _ => Err(format!(
                "`{s}`: expected STAGE.METRIC, e.g. evaluate_b3.balanced_accuracy"
            )),
        }
    }
}

impl std::fmt::Display for Objective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.stage, self.metric)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axis(s: &str) -> SearchAxis {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_parse() {
        assert_eq!(
            axis("stages.t.lr=1e-5..1e-2:log").range,
            Range::LogUniform { lo: 1e-5, hi: 1e-2 }
        );
        assert_eq!(
            axis("stages.t.dropout=0..0.5").range,
            Range::Uniform { lo: 0.0, hi: 0.5 }
        );
        assert_eq!(
            axis("stages.t.batch_size=16..64:int").range,
            Range::Int { lo: 16, hi: 64 }
        );
        assert_eq!(
            axis("stages.t.model=b1|b2| b3").range,
            Range::Choice(vec!["b1".into(), "b2".into(), "b3".into()])
        );
    }

    #[test]
    fn ranges_print_as_they_parse() {
        for text in ["1e-5..0.01:log", "0..0.5", "16..64:int", "b1|b2"] {
            let a = axis(&format!("stages.t.x={text}"));
            assert_eq!(axis(&format!("stages.t.x={}", a.range)), a);
        }
    }

    #[test]
    fn bad_ranges_are_clear_errors() {
        let err = |s: &str| s.parse::<SearchAxis>().unwrap_err().to_string();
        assert!(err("stages.t.lr").contains("expected PATH=VALUES"));
        assert!(err("stages.t.lr=0..1e-2:log").contains("needs lo > 0"));
        assert!(err("stages.t.lr=1..1").contains("empty range"));
        assert!(err("stages.t.lr=2..1:int").contains("empty range: 2 > 1"));
        assert!(err("stages.t.lr=1.5..3:int").contains("`1.5` is not an integer"));
        assert!(err("stages.t.lr=a..b").contains("`a` is not a finite number"));
        assert!(err("stages.t.lr=1..2:cube").contains("unknown scale `:cube`"));
        assert!(err("stages.t.lr=0.1").contains("expected lo..hi"));
        assert!(err("stages.t.lr=a||b").contains("an empty choice"));
        assert!(err("t.lr=1..2").contains("stages.ID.FIELD"));
        let wide = err("stages.t.lr=-1e308..1e308");
        assert!(wide.contains("wider than the largest float"), "{wide}");
        let under = err("stages.t.lr=1e-320..1e-310:log");
        assert!(under.contains("`1e-320` underflows"), "{under}");
        let top = err("stages.t.lr=1..1.7976e308");
        assert!(top.contains("beyond the largest float"), "{top}");
        assert!(err("stages.t.lr=1..1.7976e308:log").contains("beyond the largest float"));
    }

    #[test]
    fn draws_of_extreme_but_accepted_ranges_are_finite() {
        for range in [
            "-1e300..1e300",
            "1e-300..1e300:log",
            "2.3e-308..1e-300:log",
            "1e-320..1e-310",
            "-1e-310..1e-310",
            "1.7e308..1.79e308",
        ] {
            let axes = [axis(&format!("stages.t.lr={range}"))];
            for v in draw(&axes, 100, 1).unwrap() {
                let x: f64 = v.values[0].1.parse().unwrap();
                assert!(x.is_finite(), "{range}: {x}");
                assert!(v.overrides().is_ok(), "{range}: {}", v.values[0].1);
            }
        }
    }

    #[test]
    fn trials_beyond_the_bound_are_refused() {
        let axes = [axis("stages.t.lr=0..1")];
        let e = draw(&axes, 1_000_000_000, 0).unwrap_err().to_string();
        assert!(
            e.contains("--trials makes 1000000000 variants, more than the 100000"),
            "{e}"
        );
    }

    #[test]
    fn draws_are_seeded_and_inside_their_ranges() {
        let axes = [
            axis("stages.t.lr=1e-5..1e-2:log"),
            axis("stages.t.dropout=0.1..0.5"),
            axis("stages.t.batch_size=16..18:int"),
            axis("stages.t.model=b1|b2"),
        ];
        let a = draw(&axes, 200, 7).unwrap();
        assert_eq!(a, draw(&axes, 200, 7).unwrap());
        assert_ne!(a, draw(&axes, 200, 8).unwrap());
        let mut lrs = Vec::new();
        let mut sizes = std::collections::BTreeSet::new();
        for v in &a {
            let lr: f64 = v.values[0].1.parse().unwrap();
            assert!((1e-5..=1e-2).contains(&lr), "{lr}");
            lrs.push(lr);
            let d: f64 = v.values[1].1.parse().unwrap();
            assert!((0.1..=0.5).contains(&d), "{d}");
            sizes.insert(v.values[2].1.clone());
            assert!(["b1", "b2"].contains(&v.values[3].1.as_str()));
            assert!(v.overrides().is_ok());
        }
        assert_eq!(sizes.len(), 3, "16, 17 and 18 all drawn: {sizes:?}");
        // Log-uniform: about a third of the draws in each decade.
        let below_1e4 = lrs.iter().filter(|&&x| x < 1e-4).count();
        assert!(
            (40..95).contains(&below_1e4),
            "{below_1e4} of 200 below 1e-4"
        );
    }

    #[test]
    fn drawn_floats_are_short_and_stay_floats() {
        assert_eq!(round_sig(0.000123456), 0.0001235);
        assert_eq!(round_sig(123.456), 123.5);
        assert_eq!(float_text(2.0), "2.0");
        assert_eq!(float_text(0.0001235), "0.0001235");
    }

    #[test]
    fn bounds_are_the_corners_of_small_spaces_and_the_axes_ends_of_large_ones() {
        let axes = [
            axis("stages.t.dropout=0.1..1.0"),
            axis("stages.t.batch_size=0..64:int"),
            axis("stages.t.init=glorot_uniform|he"),
        ];
        let b = bounds(&axes);
        assert_eq!(b.len(), 8);
        let names: Vec<String> = b.iter().map(Variant::name).collect();
        assert_eq!(names[0], "dropout=0.1,batch_size=0,init=glorot_uniform");
        assert_eq!(names[7], "dropout=1.0,batch_size=64,init=he");
        // Eight choices on three axes: 512 corners, so each axis' ends alone.
        let wide: Vec<SearchAxis> = (0..3)
            .map(|i| axis(&format!("stages.t{i}.x=a|b|c|d|e|f|g|h")))
            .collect();
        assert_eq!(bounds(&wide).len(), 1 + 3 * 7);
    }

    #[test]
    fn objectives_parse() {
        let o: Objective = "evaluate_b3.balanced_accuracy".parse().unwrap();
        assert_eq!(o.stage, "evaluate_b3");
        assert_eq!(o.to_string(), "evaluate_b3.balanced_accuracy");
        assert!("evaluate".parse::<Objective>().is_err());
        assert!(".x".parse::<Objective>().is_err());
    }
}
