//! Binary-classification metrics on plain slices (no burn): confusion matrix, balanced
//! accuracy, ROC AUC, threshold tuning and binary cross-entropy.
//!
//! Labels are 0/1 (any non-zero label counts as positive); `probs` are the model's
//! probabilities of class 1. A sample is predicted positive iff `prob >= threshold`, so a NaN
//! probability is always predicted negative.

use serde::{Deserialize, Serialize};

/// Counts of a 2x2 confusion matrix (rows: true class, columns: predicted class).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Confusion {
    /// True negatives.
    pub tn: u64,
    /// False positives.
    pub fp: u64,
    /// False negatives (`"fn"` when serialised).
    #[serde(rename = "fn")]
    pub fn_: u64,
    /// True positives.
    pub tp: u64,
}

/// The confusion matrix of `probs` thresholded at `threshold` (predicted 1 iff
/// `prob >= threshold`). Extra elements of the longer slice are ignored.
pub fn confusion(labels: &[u8], probs: &[f32], threshold: f32) -> Confusion {
    debug_assert_eq!(labels.len(), probs.len());
    let mut c = Confusion::default();
    for (&y, &p) in labels.iter().zip(probs) {
        match (y != 0, p >= threshold) {
            (false, false) => c.tn += 1,
            (false, true) => c.fp += 1,
            (true, false) => c.fn_ += 1,
            (true, true) => c.tp += 1,
        }
    }
    c
}

impl Confusion {
    /// Mean of the per-class recalls (TPR and TNR); a class without samples is skipped.
    /// An empty matrix gives 0.
    pub fn balanced_accuracy(&self) -> f64 {
        let pos = self.tp + self.fn_;
        let neg = self.tn + self.fp;
        let mut sum = 0.0;
        let mut classes = 0u32;
        if pos > 0 {
            sum += self.tp as f64 / pos as f64;
            classes += 1;
        }
        if neg > 0 {
            sum += self.tn as f64 / neg as f64;
            classes += 1;
        }
        if classes == 0 {
            0.0
        } else {
            sum / f64::from(classes)
        }
    }

    /// Fraction of correct predictions; an empty matrix gives 0.
    pub fn accuracy(&self) -> f64 {
        let total = self.total();
        if total == 0 {
            0.0
        } else {
            (self.tp + self.tn) as f64 / total as f64
        }
    }

    /// Number of samples counted.
    pub fn total(&self) -> u64 {
        self.tn + self.fp + self.fn_ + self.tp
    }
}

/// Area under the ROC curve via the Mann–Whitney U statistic, tied scores sharing their
/// average rank (so a tie between a positive and a negative counts one half).
/// `None` when either class is absent.
pub fn roc_auc(labels: &[u8], probs: &[f32]) -> Option<f64> {
    debug_assert_eq!(labels.len(), probs.len());
    let n = labels.len().min(probs.len());
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| probs[a].total_cmp(&probs[b]));

    let n_pos = labels[..n].iter().filter(|&&y| y != 0).count();
    let n_neg = n - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }

    // Sum of (1-based, tie-averaged) ranks of the positives.
    let mut rank_sum_pos = 0.0f64;
    let mut start = 0;
    while start < n {
        let v = probs[order[start]];
        let mut end = start + 1;
        while end < n && probs[order[end]].total_cmp(&v).is_eq() {
            end += 1;
        }
        let avg_rank = (start + 1 + end) as f64 / 2.0;
        let pos_in_group = order[start..end]
            .iter()
            .filter(|&&i| labels[i] != 0)
            .count();
        rank_sum_pos += avg_rank * pos_in_group as f64;
        start = end;
    }
    let (p, q) = (n_pos as f64, n_neg as f64);
    Some((rank_sum_pos - p * (p + 1.0) / 2.0) / (p * q))
}

/// The ROC curve (false positive rate, true positive rate) of `probs` as scores of class 1:
/// one point per distinct score (ties move together) from (0, 0) to (1, 1), thinned evenly
/// to at most `max_points` (ends kept).
pub fn roc_curve(labels: &[u8], probs: &[f64], max_points: usize) -> Vec<(f64, f64)> {
    let pos = labels.iter().filter(|&&l| l == 1).count() as f64;
    let neg = labels.len() as f64 - pos;
    let mut order: Vec<usize> = (0..labels.len().min(probs.len())).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    let mut pts = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0.0, 0.0);
    for (k, &i) in order.iter().enumerate() {
        if labels[i] == 1 {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        let last_of_tie = order.get(k + 1).is_none_or(|&j| probs[j] != probs[i]);
        if last_of_tie {
            pts.push((fp / neg.max(1.0), tp / pos.max(1.0)));
        }
    }
    if pts.len() > max_points.max(2) {
        let max_points = max_points.max(2);
        let step = (pts.len() - 1) as f64 / (max_points - 1) as f64;
        pts = (0..max_points)
            .map(|k| pts[((k as f64 * step).round() as usize).min(pts.len() - 1)])
            .collect();
    }
    pts
}

/// The threshold that maximises balanced accuracy of `probs >= threshold` on `labels`.
///
/// Every distinct split of the sorted probabilities is scored (O(n log n)). Each split is
/// reached by an interval of thresholds `(lower, upper]`; its representative is the point of
/// that interval closest to 0.5 (0.5 itself when inside, `upper` when 0.5 lies above it, and
/// the interval's midpoint when 0.5 lies below it, the lower end being open). Among equally
/// good splits the representative closest to 0.5 wins. Input without both classes (empty
/// included) cannot be tuned on and gives 0.5.
pub fn tune_threshold(labels: &[u8], probs: &[f32]) -> f32 {
    debug_assert_eq!(labels.len(), probs.len());
    let n = labels.len().min(probs.len());
    // NaN probabilities never pass any threshold: they count as predicted negative always.
    let mut order: Vec<usize> = (0..n).filter(|&i| !probs[i].is_nan()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));

    let n_pos = labels[..n].iter().filter(|&&y| y != 0).count() as u64;
    let n_neg = n as u64 - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return 0.5;
    }
    let bacc = |tp: u64, fp: u64| {
        Confusion {
            tp,
            fp,
            fn_: n_pos - tp,
            tn: n_neg - fp,
        }
        .balanced_accuracy()
    };

    // Split "nothing positive": thresholds above the maximum probability.
    let max = order.first().map(|&i| probs[i]).unwrap_or(0.0);
    let above_max = if max < 0.5 {
        0.5
    } else if max < 1.0 {
        midpoint(max, 1.0)
    } else {
        max.next_up()
    };
    let mut best = (bacc(0, 0), above_max);

    let (mut tp, mut fp) = (0u64, 0u64);
    let mut start = 0;
    while start < order.len() {
        let v = probs[order[start]];
        let mut end = start + 1;
        while end < order.len() && probs[order[end]] == v {
            end += 1;
        }
        for &i in &order[start..end] {
            if labels[i] != 0 {
                tp += 1;
            } else {
                fp += 1;
            }
        }
        // Thresholds in (lower, v] predict exactly the samples seen so far as positive.
        let lower = order.get(end).map(|&i| probs[i]);
        let rep = if 0.5 > v {
            v
        } else {
            match lower {
                Some(lo) if 0.5 <= lo => midpoint(lo, v),
                _ => 0.5,
            }
        };
        let score = bacc(tp, fp);
        let better = score > best.0 + 1e-12
            || ((score - best.0).abs() <= 1e-12 && (rep - 0.5).abs() < (best.1 - 0.5).abs());
        if better {
            best = (score, rep);
        }
        start = end;
    }
    best.1
}

/// Midpoint of `lo < hi`, never equal to `lo` (falls back to `hi` for adjacent floats).
fn midpoint(lo: f32, hi: f32) -> f32 {
    let m = lo + (hi - lo) / 2.0;
    if m > lo { m } else { hi }
}

/// Mean binary cross-entropy of `probs` against `labels`, probabilities clamped to
/// `[1e-7, 1 - 1e-7]` as Keras does; 0 for empty input.
pub fn bce_from_probs(labels: &[u8], probs: &[f32]) -> f64 {
    debug_assert_eq!(labels.len(), probs.len());
    const EPS: f64 = 1e-7;
    let n = labels.len().min(probs.len());
    if n == 0 {
        return 0.0;
    }
    let sum: f64 = labels
        .iter()
        .zip(probs)
        .map(|(&y, &p)| {
            let p = if p.is_nan() { 0.5 } else { f64::from(p) }.clamp(EPS, 1.0 - EPS);
            if y != 0 { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum();
    sum / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn confusion_counts_and_threshold_is_inclusive() {
        let labels = [0, 0, 1, 1, 1, 0];
        let probs = [0.1, 0.5, 0.5, 0.9, 0.2, 0.7];
        let c = confusion(&labels, &probs, 0.5);
        assert_eq!(
            c,
            Confusion {
                tn: 1,
                fp: 2,
                fn_: 1,
                tp: 2
            }
        );
        assert_eq!(c.total(), 6);
        assert!(close(c.accuracy(), 0.5));
    }

    #[test]
    fn balanced_accuracy_of_known_matrix() {
        // TPR = 8/10, TNR = 45/90 -> (0.8 + 0.5) / 2.
        let c = Confusion {
            tn: 45,
            fp: 45,
            fn_: 2,
            tp: 8,
        };
        assert!(close(c.balanced_accuracy(), 0.65));
        assert!(close(c.accuracy(), 0.53));
        // A class with no samples is skipped.
        let only_neg = Confusion {
            tn: 3,
            fp: 1,
            fn_: 0,
            tp: 0,
        };
        assert!(close(only_neg.balanced_accuracy(), 0.75));
        assert_eq!(Confusion::default().balanced_accuracy(), 0.0);
    }

    #[test]
    fn confusion_serialises_fn_as_fn() {
        let c = Confusion {
            tn: 1,
            fp: 2,
            fn_: 3,
            tp: 4,
        };
        let s = serde_json::to_string(&c).unwrap();
        assert_eq!(s, r#"{"tn":1,"fp":2,"fn":3,"tp":4}"#);
        assert_eq!(serde_json::from_str::<Confusion>(&s).unwrap(), c);
    }

    #[test]
    fn auc_of_known_rankings() {
        assert_eq!(roc_auc(&[0, 0, 1, 1], &[0.1, 0.2, 0.3, 0.4]), Some(1.0));
        assert_eq!(roc_auc(&[1, 1, 0, 0], &[0.1, 0.2, 0.3, 0.4]), Some(0.0));
        // Pairs (pos, neg): (0.35, 0.1) win, (0.35, 0.4) lose, (0.8, *) win twice -> 3/4.
        assert_eq!(roc_auc(&[0, 1, 0, 1], &[0.1, 0.35, 0.4, 0.8]), Some(0.75));
        // A positive tied with a negative counts one half: pairs (0.5,0.5)=0.5, (0.5,0.2)=1,
        // (0.9,0.5)=1, (0.9,0.2)=1 -> 3.5/4.
        assert_eq!(roc_auc(&[0, 1, 0, 1], &[0.5, 0.5, 0.2, 0.9]), Some(0.875));
        // All tied: 0.5.
        assert_eq!(roc_auc(&[0, 1, 1], &[0.3, 0.3, 0.3]), Some(0.5));
        assert_eq!(roc_auc(&[1, 1], &[0.3, 0.6]), None);
        assert_eq!(roc_auc(&[], &[]), None);
    }

    #[test]
    fn tuned_threshold_beats_half_when_half_is_wrong() {
        // A model whose probabilities are all low: 0.5 predicts everything negative
        // (bacc 0.5); 0.3 separates perfectly.
        let labels = [0, 0, 0, 1, 1];
        let probs = [0.05, 0.1, 0.2, 0.3, 0.4];
        assert!(close(
            confusion(&labels, &probs, 0.5).balanced_accuracy(),
            0.5
        ));
        let t = tune_threshold(&labels, &probs);
        assert_eq!(t, 0.3);
        assert!(close(
            confusion(&labels, &probs, t).balanced_accuracy(),
            1.0
        ));

        // All high: the perfect split is (0.7, 0.8]; 0.5 is outside, the midpoint is used.
        let probs_hi = [0.6, 0.65, 0.7, 0.8, 0.9];
        let t = tune_threshold(&labels, &probs_hi);
        assert_eq!(t, 0.75);
        assert!(close(
            confusion(&labels, &probs_hi, t).balanced_accuracy(),
            1.0
        ));
    }

    #[test]
    fn tuned_threshold_prefers_half_among_ties() {
        // Perfect split anywhere in (0.2, 0.8]: 0.5 itself is chosen.
        assert_eq!(tune_threshold(&[0, 1], &[0.2, 0.8]), 0.5);
        // Without both classes there is nothing to tune on.
        assert_eq!(tune_threshold(&[1, 1, 1], &[0.9, 0.1, 0.4]), 0.5);
        assert_eq!(tune_threshold(&[], &[]), 0.5);
    }

    #[test]
    fn tuned_threshold_is_optimal_on_random_data() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let labels: Vec<u8> = (0..300).map(|_| rng.random_range(0..2)).collect();
        let probs: Vec<f32> = labels
            .iter()
            .map(|&y| (rng.random::<f32>() * 0.7 + 0.2 * f32::from(y)).min(1.0))
            .map(|p| (p * 50.0).round() / 50.0) // many ties
            .collect();
        let t = tune_threshold(&labels, &probs);
        let best = confusion(&labels, &probs, t).balanced_accuracy();
        for k in 0..=1000 {
            let cand = k as f32 / 1000.0;
            assert!(confusion(&labels, &probs, cand).balanced_accuracy() <= best + 1e-12);
        }
    }

    #[test]
    fn bce_known_values_and_clamping() {
        let v = bce_from_probs(&[1, 0], &[0.8, 0.4]);
        let expected = (-f64::from(0.8f32).ln() - (1.0 - f64::from(0.4f32)).ln()) / 2.0;
        assert!(close(v, expected));
        // A confident mistake is clamped, not infinite.
        let v = bce_from_probs(&[1], &[0.0]);
        assert!(close(v, -(1e-7f64).ln()));
        assert_eq!(bce_from_probs(&[], &[]), 0.0);
    }
}
