//! N-class metrics on plain slices (no burn): the N×N confusion matrix, per-class precision,
//! recall and F1, macro balanced accuracy (the mean of the per-class recalls), top-k accuracy,
//! one-vs-rest ROC AUC, softmax and cross-entropy.
//!
//! `probs` are row-major, `classes` values per sample (softmax probabilities); a sample is
//! predicted as its most probable class, the lowest index on a tie.

use crate::metrics;
use serde::{Deserialize, Serialize};

/// Softmax of each row of `logits` (`classes` values per row), computed stably.
pub fn softmax_rows(logits: &[f32], classes: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(logits.len());
    for row in logits.chunks(classes) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f32> = row.iter().map(|&x| (x - max).exp()).collect();
        let sum: f32 = exp.iter().sum();
        out.extend(exp.iter().map(|&e| e / sum));
    }
    out
}

/// Cross-entropy of one row of logits for the true class `label` (log-sum-exp, stably).
pub fn cross_entropy_of_logits(row: &[f32], label: u8) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = max
        + row
            .iter()
            .map(|&x| (x as f64 - max).exp())
            .sum::<f64>()
            .ln();
    lse - row[label as usize] as f64
}

/// The most probable class of each row (lowest index on a tie; NaN never wins).
pub fn argmax_rows(probs: &[f32], classes: usize) -> Vec<u8> {
    probs
        .chunks(classes)
        .map(|row| {
            let mut best = 0;
            for (i, &p) in row.iter().enumerate() {
                if p > row[best] || row[best].is_nan() && !p.is_nan() {
                    best = i;
                }
            }
            best as u8
        })
        .collect()
}

/// An N×N confusion matrix: `matrix[true][predicted]`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ConfusionMatrix {
    pub matrix: Vec<Vec<u64>>,
}

/// Precision, recall and F1 of one class, and how many samples it has.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ClassScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

impl ConfusionMatrix {
    /// The matrix of `labels` against the most probable class of each row of `probs`.
    pub fn from_probs(labels: &[u8], probs: &[f32], classes: usize) -> Self {
        let mut matrix = vec![vec![0u64; classes]; classes];
        for (&y, p) in labels.iter().zip(argmax_rows(probs, classes)) {
            matrix[y as usize][p as usize] += 1;
        }
        Self { matrix }
    }

    pub fn total(&self) -> u64 {
        self.matrix.iter().flatten().sum()
    }

    /// Fraction of samples on the diagonal (0 when empty).
    pub fn accuracy(&self) -> f64 {
        let right: u64 = (0..self.matrix.len()).map(|i| self.matrix[i][i]).sum();
        right as f64 / self.total().max(1) as f64
    }

    /// Per-class scores; a ratio with a zero denominator is 0.
    pub fn per_class(&self) -> Vec<ClassScores> {
        let n = self.matrix.len();
        (0..n)
            .map(|c| {
                let tp = self.matrix[c][c] as f64;
                let support: u64 = self.matrix[c].iter().sum();
                let predicted: u64 = (0..n).map(|r| self.matrix[r][c]).sum();
                let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
                let precision = ratio(tp, predicted as f64);
                let recall = ratio(tp, support as f64);
                ClassScores {
                    precision,
                    recall,
                    f1: ratio(2.0 * precision * recall, precision + recall),
                    support,
                }
            })
            .collect()
    }

    /// Macro balanced accuracy: the mean recall over the classes that have samples (for two
    /// classes, the binary balanced accuracy). 0 when empty.
    pub fn balanced_accuracy(&self) -> f64 {
        let scores = self.per_class();
        let present: Vec<f64> = scores
            .iter()
            .filter(|s| s.support > 0)
            .map(|s| s.recall)
            .collect();
        if present.is_empty() {
            0.0
        } else {
            present.iter().sum::<f64>() / present.len() as f64
        }
    }

    /// Mean F1 over the classes that have samples.
    pub fn macro_f1(&self) -> f64 {
        let f: Vec<f64> = self
            .per_class()
            .iter()
            .filter(|s| s.support > 0)
            .map(|s| s.f1)
            .collect();
        f.iter().sum::<f64>() / f.len().max(1) as f64
    }
}

/// Fraction of samples whose true class is among the `k` most probable (ties broken towards
/// the lower index, as [`argmax_rows`]).
pub fn top_k_accuracy(labels: &[u8], probs: &[f32], classes: usize, k: usize) -> f64 {
    let hits = labels
        .iter()
        .zip(probs.chunks(classes))
        .filter(|(y, row)| {
            let p = row[**y as usize];
            let above = row
                .iter()
                .enumerate()
                .filter(|&(i, &q)| q > p || (q == p && i < **y as usize))
                .count();
            above < k
        })
        .count();
    hits as f64 / labels.len().max(1) as f64
}

/// One-vs-rest ROC AUC of each class (`None` where a class has no samples or no others).
pub fn roc_auc_ovr(labels: &[u8], probs: &[f32], classes: usize) -> Vec<Option<f64>> {
    (0..classes)
        .map(|c| {
            let y: Vec<u8> = labels.iter().map(|&l| u8::from(l as usize == c)).collect();
            let p: Vec<f32> = probs.chunks(classes).map(|row| row[c]).collect();
            metrics::roc_auc(&y, &p)
        })
        .collect()
}

/// The mean of the defined one-vs-rest AUCs (macro AUC).
pub fn macro_auc(aucs: &[Option<f64>]) -> Option<f64> {
    let v: Vec<f64> = aucs.iter().flatten().copied().collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Most points kept per ROC curve (see [`metrics::roc_curve`]).
pub const ROC_POINTS: usize = 300;
/// Most per-class curves a ROC figure draws: beyond that, those of the classes with the
/// lowest AUC (with the macro average, always drawn).
pub const ROC_SHOWN: usize = 10;
/// Evenly spaced false positive rates of the macro-average curve, beyond 0.
const MACRO_STEPS: usize = 100;

/// One class's one-vs-rest ROC curve: (false positive rate, true positive rate) points from
/// (0, 0) to (1, 1); no points and no AUC when the split lacks the class or the others.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ClassRoc {
    pub class: String,
    pub auc: Option<f64>,
    pub points: Vec<(f64, f64)>,
}

/// Every class's one-vs-rest ROC curve and their macro average (`roc.json` of an N-class
/// evaluation).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ClassRocs {
    pub classes: Vec<ClassRoc>,
    /// The mean of the defined per-class AUCs.
    pub macro_auc: Option<f64>,
    /// The mean true positive rate of the defined curves at evenly spaced false positive rates.
    pub macro_average: Vec<(f64, f64)>,
}

impl ClassRocs {
    /// The curves of `labels` against each column of `probs`, one per name in `names`.
    pub fn new(labels: &[u8], probs: &[f32], names: &[String]) -> Self {
        let n = names.len();
        let aucs = roc_auc_ovr(labels, probs, n);
        let classes: Vec<ClassRoc> = names
            .iter()
            .zip(&aucs)
            .enumerate()
            .map(|(c, (name, &auc))| {
                let points = match auc {
                    Some(_) => {
                        let y: Vec<u8> =
                            labels.iter().map(|&l| u8::from(l as usize == c)).collect();
                        let p: Vec<f64> = probs.chunks(n).map(|row| f64::from(row[c])).collect();
                        metrics::roc_curve(&y, &p, ROC_POINTS)
                    }
                    None => Vec::new(),
                };
                ClassRoc {
                    class: name.clone(),
                    auc,
                    points,
                }
            })
            .collect();
        let curves: Vec<&[(f64, f64)]> = classes
            .iter()
            .filter(|c| !c.points.is_empty())
            .map(|c| c.points.as_slice())
            .collect();
        Self {
            macro_auc: macro_auc(&aucs),
            macro_average: macro_roc(&curves),
            classes,
        }
    }

    /// The classes a figure draws: every class with a curve when at most [`ROC_SHOWN`] have
    /// one (in class order), else the [`ROC_SHOWN`] with the lowest AUC, lowest first.
    pub fn shown(&self) -> Vec<&ClassRoc> {
        let mut drawn: Vec<&ClassRoc> = self.classes.iter().filter(|c| c.auc.is_some()).collect();
        if drawn.len() > ROC_SHOWN {
            // stable: equal AUCs keep class order
            drawn.sort_by(|a, b| a.auc.unwrap_or(0.0).total_cmp(&b.auc.unwrap_or(0.0)));
            drawn.truncate(ROC_SHOWN);
        }
        drawn
    }

    /// How many classes have a curve.
    pub fn with_curve(&self) -> usize {
        self.classes.iter().filter(|c| c.auc.is_some()).count()
    }
}

/// The macro-average ROC curve: at each of evenly spaced false positive rates, the mean of
/// the curves' true positive rates (linearly interpolated between their points, the highest
/// on a vertical step). Empty without curves.
pub fn macro_roc(curves: &[&[(f64, f64)]]) -> Vec<(f64, f64)> {
    if curves.is_empty() {
        return Vec::new();
    }
    (0..=MACRO_STEPS)
        .map(|k| {
            let x = k as f64 / MACRO_STEPS as f64;
            let sum: f64 = curves.iter().map(|c| tpr_at(c, x)).sum();
            (x, sum / curves.len() as f64)
        })
        .collect()
}

/// The true positive rate of a ROC curve (monotone in both coordinates) at `fpr`.
fn tpr_at(curve: &[(f64, f64)], fpr: f64) -> f64 {
    let mut best = curve.first().map_or(0.0, |p| p.1);
    for w in curve.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if x0 <= fpr && fpr <= x1 {
            let y = if x1 > x0 {
                y0 + (y1 - y0) * (fpr - x0) / (x1 - x0)
            } else {
                y1
            };
            best = best.max(y);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    // Three classes, four samples: rows of probabilities.
    const PROBS: [f32; 12] = [
        0.7, 0.2, 0.1, // true 0, predicted 0
        0.1, 0.5, 0.4, // true 1, predicted 1
        0.3, 0.4, 0.3, // true 2, predicted 1
        0.1, 0.1, 0.8, // true 2, predicted 2
    ];
    const LABELS: [u8; 4] = [0, 1, 2, 2];

    #[test]
    fn confusion_and_scores_by_hand() {
        let c = ConfusionMatrix::from_probs(&LABELS, &PROBS, 3);
        assert_eq!(c.matrix, vec![vec![1, 0, 0], vec![0, 1, 0], vec![0, 1, 1]]);
        assert_eq!(c.accuracy(), 0.75);
        // Recalls 1, 1, 0.5 → macro balanced accuracy 2.5 / 3.
        assert!((c.balanced_accuracy() - 2.5 / 3.0).abs() < 1e-12);
        let s = c.per_class();
        assert_eq!((s[1].precision, s[1].recall, s[1].support), (0.5, 1.0, 1));
        assert!((s[1].f1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(top_k_accuracy(&LABELS, &PROBS, 3, 1), 0.75);
        // Sample 3's class 2 (0.3) ties class 0 (0.3), which wins the tie: third, not second.
        assert_eq!(top_k_accuracy(&LABELS, &PROBS, 3, 2), 0.75);
        assert_eq!(top_k_accuracy(&LABELS, &PROBS, 3, 3), 1.0);
    }

    #[test]
    fn two_classes_agree_with_the_binary_balanced_accuracy() {
        let labels = [0u8, 0, 1, 1, 1];
        let p1 = [0.2f32, 0.6, 0.7, 0.4, 0.9];
        let rows: Vec<f32> = p1.iter().flat_map(|&p| [1.0 - p, p]).collect();
        let c = ConfusionMatrix::from_probs(&labels, &rows, 2);
        let b = metrics::confusion(&labels, &p1, 0.5);
        assert!((c.balanced_accuracy() - b.balanced_accuracy()).abs() < 1e-12);
        let auc = roc_auc_ovr(&labels, &rows, 2);
        assert_eq!(auc[1], metrics::roc_auc(&labels, &p1));
    }

    #[test]
    fn softmax_and_cross_entropy_are_stable() {
        let p = softmax_rows(&[1000.0, 1000.0, 0.0, 0.0], 2);
        assert_eq!(p, [0.5, 0.5, 0.5, 0.5]);
        let ce = cross_entropy_of_logits(&[0.0, 0.0, 0.0], 1);
        assert!((ce - 3f64.ln()).abs() < 1e-9);
        assert!(cross_entropy_of_logits(&[1e4, -1e4], 1).is_finite());
        assert_eq!(argmax_rows(&[f32::NAN, 0.1, 0.2, 0.2], 2), [1, 0]);
    }

    #[test]
    fn one_vs_rest_auc_is_none_for_an_absent_class() {
        let aucs = roc_auc_ovr(&[0, 1], &[0.9, 0.1, 0.0, 0.2, 0.8, 0.0], 3);
        assert_eq!(aucs, vec![Some(1.0), Some(1.0), None]);
        assert_eq!(macro_auc(&aucs), Some(1.0));
    }

    #[test]
    fn class_curves_their_macro_average_and_the_shown_classes() {
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let r = ClassRocs::new(&LABELS, &PROBS, &names);
        let aucs: Vec<Option<f64>> = r.classes.iter().map(|c| c.auc).collect();
        assert_eq!(aucs, roc_auc_ovr(&LABELS, &PROBS, 3));
        for c in &r.classes {
            assert_eq!(c.points.first(), Some(&(0.0, 0.0)));
            assert_eq!(c.points.last(), Some(&(1.0, 1.0)));
        }
        // class 0 is ranked first by its score: a perfect curve through (0, 1)
        assert!(r.classes[0].points.contains(&(0.0, 1.0)));
        assert_eq!(r.macro_auc, macro_auc(&aucs));
        assert_eq!(r.macro_average.len(), MACRO_STEPS + 1);
        assert_eq!(r.macro_average.last(), Some(&(1.0, 1.0)));
        assert!(r.macro_average.windows(2).all(|w| w[0].1 <= w[1].1));
        assert_eq!(r.shown().len(), 3);
        // an absent class has no curve and is not drawn
        let r = ClassRocs::new(&[0, 1], &[0.9, 0.1, 0.0, 0.2, 0.8, 0.0], &names);
        assert!(r.classes[2].points.is_empty() && r.classes[2].auc.is_none());
        assert_eq!(r.with_curve(), 2);
        assert_eq!(
            r.shown()
                .iter()
                .map(|c| c.class.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn many_classes_show_the_lowest_aucs_lowest_first() {
        let n = ROC_SHOWN + 5;
        // sample i is of class i; class c scores every sample by how close it is to c, so
        // its AUC falls with c's noise level
        let labels: Vec<u8> = (0..n as u8).flat_map(|c| [c, c]).collect();
        let probs: Vec<f32> = labels
            .iter()
            .enumerate()
            .flat_map(|(s, &y)| {
                (0..n).map(move |c| {
                    if c == y as usize {
                        0.5
                    } else if (s + c) % n < c / 3 {
                        0.9
                    } else {
                        0.1
                    }
                })
            })
            .collect();
        let names: Vec<String> = (0..n).map(|c| format!("c{c}")).collect();
        let r = ClassRocs::new(&labels, &probs, &names);
        let shown = r.shown();
        assert_eq!(shown.len(), ROC_SHOWN);
        let lowest: Vec<f64> = shown.iter().map(|c| c.auc.unwrap()).collect();
        assert!(lowest.windows(2).all(|w| w[0] <= w[1]));
        let worst_hidden = r
            .classes
            .iter()
            .filter(|c| !shown.iter().any(|s| s.class == c.class))
            .map(|c| c.auc.unwrap())
            .fold(f64::INFINITY, f64::min);
        assert!(lowest.last().unwrap() <= &worst_hidden);
    }

    #[test]
    fn macro_average_interpolates_and_takes_the_top_of_a_step() {
        let perfect = [(0.0, 0.0), (0.0, 1.0), (1.0, 1.0)];
        let diagonal = [(0.0, 0.0), (1.0, 1.0)];
        let m = macro_roc(&[&perfect, &diagonal]);
        assert_eq!(m[0], (0.0, 0.5));
        assert!((m[50].1 - 0.75).abs() < 1e-12);
        assert!(macro_roc(&[]).is_empty());
    }
}
