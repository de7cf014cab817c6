//! "Nice" axis ticks shared by the PNG plots and the report's SVG charts: steps of 1, 2 or 5
//! times a power of ten, ticks on multiples of the step, labels with just the decimals the
//! step needs (0.480, 0.485, ... rather than 0.483, 0.501; epochs 1, 2, 3 rather than 1.25).
//!
//! Hand-rolled (a few lines): plotters picks its own key points and the SVG charts have no
//! plotting library, and both must agree.

/// Ticks covering a range: `values` run from a multiple of `step` at or below the range's low
/// end to one at or above its high end.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticks {
    pub step: f64,
    pub values: Vec<f64>,
}

impl Ticks {
    /// The first and last tick: the axis range that shows every tick.
    pub fn bounds(&self) -> (f64, f64) {
        (self.values[0], self.values[self.values.len() - 1])
    }

    /// `v` with as many decimals as the step has (`0.485` for a step of 0.005, `20` for 20).
    pub fn label(&self, v: f64) -> String {
        let v = if v == 0.0 { 0.0 } else { v }; // no "-0"
        format!("{v:.*}", decimals(self.step))
    }
}

/// Decimals needed to write multiples of a 1-2-5 `step` exactly.
fn decimals(step: f64) -> usize {
    (-step.log10().floor()).max(0.0) as usize
}

/// At most about `max_ticks` (at least 2) ticks covering `[lo, hi]`; `integer` keeps the step
/// a whole number (epochs). An empty or one-point range is widened around its value; a
/// non-finite one becomes `[0, 1]`.
pub fn nice_ticks(lo: f64, hi: f64, max_ticks: usize, integer: bool) -> Ticks {
    let (mut lo, mut hi) = if lo.is_finite() && hi.is_finite() {
        (lo.min(hi), lo.max(hi))
    } else {
        (0.0, 1.0)
    };
    if hi - lo < 1e-12 * lo.abs().max(1.0) {
        let half = if integer {
            1.0
        } else {
            (lo.abs() * 0.1).max(0.5)
        };
        (lo, hi) = (lo - half, hi + half);
    }
    let raw = (hi - lo) / (max_ticks.max(2) - 1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let mut step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude);
    if integer {
        step = step.max(1.0).round();
    }
    // Tick i is i * step; the small slack keeps 0.5 / 0.1 from landing on 4.999... or 5.0...1.
    let first = (lo / step + 1e-9).floor() as i64;
    let last = (hi / step - 1e-9).ceil() as i64;
    let scale = 10f64.powi(decimals(step) as i32);
    let values = (first..=last.max(first + 1))
        .map(|i| (i as f64 * step * scale).round() / scale)
        .collect();
    Ticks { step, values }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(t: &Ticks) -> Vec<String> {
        t.values.iter().map(|&v| t.label(v)).collect()
    }

    #[test]
    fn a_narrow_accuracy_range_gets_half_percent_steps() {
        let t = nice_ticks(0.483, 0.501, 6, false);
        assert_eq!(t.step, 0.005);
        assert_eq!(
            labels(&t),
            ["0.480", "0.485", "0.490", "0.495", "0.500", "0.505"]
        );
    }

    #[test]
    fn a_unit_range_ends_exactly_at_its_ends() {
        let t = nice_ticks(0.5, 1.0, 6, false);
        assert_eq!(t.values, [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]);
        assert_eq!(t.bounds(), (0.5, 1.0));
        assert_eq!(labels(&t)[5], "1.0");
        let roc = nice_ticks(0.0, 1.0, 6, false);
        assert_eq!(roc.values, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        // Just below 1 (a padded accuracy clamped to 1) still ends at 1, never 1.011.
        assert_eq!(nice_ticks(0.41, 0.999, 6, false).bounds(), (0.4, 1.0));
    }

    #[test]
    fn epochs_are_whole_numbers() {
        let t = nice_ticks(1.0, 4.0, 6, true);
        assert_eq!(t.values, [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(labels(&t), ["1", "2", "3", "4"]);
        let t = nice_ticks(1.0, 100.0, 6, true);
        assert_eq!(t.step, 20.0);
        assert_eq!(t.values, [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        let t = nice_ticks(1.0, 2.0, 12, true);
        assert_eq!(t.values, [1.0, 2.0], "never a fractional epoch");
        assert_eq!(nice_ticks(3.0, 3.0, 6, true).values, [2.0, 3.0, 4.0]);
    }

    #[test]
    fn every_step_is_one_two_or_five_times_a_power_of_ten() {
        for (lo, hi) in [
            (0.0, 0.7),
            (0.13, 0.93),
            (2.0, 7300.0),
            (-3.2, 0.4),
            (1e-5, 3e-5),
        ] {
            let t = nice_ticks(lo, hi, 8, false);
            let m = t.step / 10f64.powf(t.step.log10().floor());
            assert!(
                [1.0, 2.0, 5.0].iter().any(|x| (m - x).abs() < 1e-9),
                "{lo}..{hi}: {t:?}"
            );
            let (a, b) = t.bounds();
            assert!(a <= lo && b >= hi, "{lo}..{hi}: {t:?}");
            assert!(t.values.len() <= 9, "{lo}..{hi}: {t:?}");
        }
        assert_eq!(nice_ticks(f64::NAN, 1.0, 6, false).bounds(), (0.0, 1.0));
        assert_eq!(nice_ticks(0.7, 0.7, 6, false).bounds(), (0.2, 1.2));
        assert_eq!(nice_ticks(-0.1, 0.1, 3, false).label(0.0), "0.0");
    }
}
