//! Seeded, label-stratified, group-aware train/validation/test split.
//!
//! Near-duplicate groups (from [`super::index`]) must never straddle two splits, or the test
//! score would be measured on images the model has effectively seen. Each group is assigned
//! whole, under its majority label; within a class the groups are shuffled (seeded), then
//! placed largest first into the split furthest below its target count.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Share of the images in each split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitFractions {
    pub train: f64,
    pub val: f64,
    pub test: f64,
}

impl Default for SplitFractions {
    /// 70% of 85% for training, the rest of that 85% for validation, 30% for test (the
    /// report's protocol).
    fn default() -> Self {
        Self {
            train: 0.595,
            val: 0.105,
            test: 0.30,
        }
    }
}

impl SplitFractions {
    fn as_array(&self) -> [f64; 3] {
        [self.train, self.val, self.test]
    }
}

/// Dataset indices of each split, each ascending.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Split {
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    pub test: Vec<usize>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SplitError {
    #[error(
        "split fractions must be non-negative and sum to 1, got {train} + {val} + {test} = {sum}"
    )]
    Fractions {
        train: f64,
        val: f64,
        test: f64,
        sum: f64,
    },
    #[error("label {0} has no images")]
    EmptyClass(u8),
    #[error("{groups} duplicate groups cannot fill {splits} non-empty splits")]
    TooFewGroups { groups: usize, splits: usize },
    #[error("{items} items but {labels} labels and {groups} group ids")]
    Length {
        items: usize,
        labels: usize,
        groups: usize,
    },
}

const FRACTION_TOLERANCE: f64 = 1e-6;

/// items: indices into the dataset; labels[i] and group[i] for each position of items (same length);
/// a group never straddles two splits; stratified by label (a group's label is its majority label);
/// per-class counts in each split as close to the fractions as groups allow; deterministic in seed.
///
/// Labels are classes `0..=max(1, largest label)`; each must have at least one image. A group's
/// majority-label tie goes to the smaller label.
pub fn split(
    items: &[usize],
    labels: &[u8],
    group: &[u32],
    fractions: SplitFractions,
    seed: u64,
) -> Result<Split, SplitError> {
    if labels.len() != items.len() || group.len() != items.len() {
        return Err(SplitError::Length {
            items: items.len(),
            labels: labels.len(),
            groups: group.len(),
        });
    }
    let fr = fractions.as_array();
    let sum: f64 = fr.iter().sum();
    if fr.iter().any(|f| !f.is_finite() || *f < 0.0) || (sum - 1.0).abs() > FRACTION_TOLERANCE {
        return Err(SplitError::Fractions {
            train: fractions.train,
            val: fractions.val,
            test: fractions.test,
            // Rounded so that 0.5 + 0.2 + 0.2 reads 0.9, not 0.8999999999999999.
            sum: (sum * 1e9).round() / 1e9,
        });
    }
    let n_classes = usize::from(labels.iter().copied().max().unwrap_or(0).max(1)) + 1;
    let mut class_items = vec![0usize; n_classes];
    for &l in labels {
        class_items[usize::from(l)] += 1;
    }
    if let Some(empty) = class_items.iter().position(|&c| c == 0) {
        return Err(SplitError::EmptyClass(empty as u8));
    }

    // Groups in ascending id order (BTreeMap: no hash-order dependence).
    let mut members: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (pos, &g) in group.iter().enumerate() {
        members.entry(g).or_default().push(pos);
    }
    let nonzero = fr.iter().filter(|&&f| f > 0.0).count();
    if members.len() < nonzero {
        return Err(SplitError::TooFewGroups {
            groups: members.len(),
            splits: nonzero,
        });
    }

    // Per class: its groups (positions), by majority label.
    let mut by_class: Vec<Vec<Vec<usize>>> = vec![Vec::new(); n_classes];
    for (_, pos) in members {
        let mut votes = vec![0usize; n_classes];
        for &p in &pos {
            votes[usize::from(labels[p])] += 1;
        }
        // First maximum = smallest label on ties.
        let best = votes.iter().max().copied().unwrap_or(0);
        let class = votes.iter().position(|&v| v == best).unwrap_or(0);
        by_class[class].push(pos);
    }

    // assigned[s]: groups (as position lists) of split s.
    let mut assigned: [Vec<Vec<usize>>; 3] = Default::default();
    for (class, mut groups) in by_class.into_iter().enumerate() {
        let mut rng =
            ChaCha8Rng::seed_from_u64(seed ^ (class as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        groups.shuffle(&mut rng);
        // Stable: equal sizes keep their shuffled order.
        groups.sort_by_key(|g| std::cmp::Reverse(g.len()));
        let total: usize = groups.iter().map(Vec::len).sum();
        let target: Vec<f64> = fr.iter().map(|f| f * total as f64).collect();
        let mut count = [0usize; 3];
        for g in groups {
            let s = (0..3)
                .filter(|&s| fr[s] > 0.0)
                .max_by(|&a, &b| {
                    let da = target[a] - count[a] as f64;
                    let db = target[b] - count[b] as f64;
                    // On equal deficits prefer the earlier split (max_by keeps the last max).
                    da.total_cmp(&db).then(b.cmp(&a))
                })
                .unwrap_or(0);
            count[s] += g.len();
            assigned[s].push(g);
        }
    }

    // A split with a non-zero share must not end up empty: move it the smallest group of the
    // split holding the most groups (which keeps at least one).
    for s in 0..3 {
        if fr[s] > 0.0 && assigned[s].is_empty() {
            let donor = (0..3)
                .max_by_key(|&d| (assigned[d].len(), std::cmp::Reverse(d)))
                .unwrap_or(0);
            if assigned[donor].len() > 1
                && let Some(k) =
                    (0..assigned[donor].len()).min_by_key(|&k| assigned[donor][k].len())
            {
                let g = assigned[donor].remove(k);
                assigned[s].push(g);
            }
        }
    }

    let [train, val, test] = assigned.map(|groups| {
        let mut out: Vec<usize> = groups.into_iter().flatten().map(|p| items[p]).collect();
        out.sort_unstable();
        out
    });
    Ok(Split { train, val, test })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    /// Random groups of sizes 1..=max_group, mostly pure in label, some mixed.
    fn random_structure(rng: &mut ChaCha8Rng, n: usize, max_group: usize) -> (Vec<u8>, Vec<u32>) {
        let mut labels = Vec::with_capacity(n);
        let mut group = Vec::with_capacity(n);
        let mut gid = 0u32;
        while labels.len() < n {
            let size = rng.random_range(1..=max_group).min(n - labels.len());
            let label = u8::from(rng.random_bool(0.3));
            let mixed = rng.random_bool(0.1);
            for _ in 0..size {
                let l = if mixed && rng.random_bool(0.3) {
                    1 - label
                } else {
                    label
                };
                labels.push(l);
                // Scatter ids so that group ids are not in item order.
                group.push(gid.wrapping_mul(2_654_435_761) % 1_000_003);
            }
            gid += 1;
        }
        (labels, group)
    }

    #[test]
    fn property_groups_whole_items_once_proportions_close() {
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        for case in 0..60 {
            let n = rng.random_range(200..1500);
            let max_group = rng.random_range(1..6);
            let (labels, group) = random_structure(&mut rng, n, max_group);
            // Items are arbitrary dataset indices, not 0..n.
            let items: Vec<usize> = (0..n).map(|i| i * 3 + 7).collect();
            let fr = SplitFractions::default();
            let sp = split(&items, &labels, &group, fr, case).unwrap();

            let mut split_of = BTreeMap::new();
            for (s, list) in [&sp.train, &sp.val, &sp.test].into_iter().enumerate() {
                assert!(list.windows(2).all(|w| w[0] < w[1]), "not ascending");
                for &it in list {
                    assert!(split_of.insert(it, s).is_none(), "item {it} assigned twice");
                }
            }
            assert_eq!(split_of.len(), n, "every item assigned");

            // No group straddles; per-class counts (by group majority label) near target.
            let mut group_split: BTreeMap<u32, usize> = BTreeMap::new();
            let mut group_items: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
            for p in 0..n {
                let s = split_of[&items[p]];
                assert_eq!(
                    *group_split.entry(group[p]).or_insert(s),
                    s,
                    "group straddles"
                );
                group_items.entry(group[p]).or_default().push(p);
            }
            let mut counts = [[0usize; 3]; 2];
            let mut totals = [0usize; 2];
            for (g, pos) in &group_items {
                let ones = pos.iter().filter(|&&p| labels[p] == 1).count();
                let class = usize::from(ones * 2 > pos.len());
                counts[class][group_split[g]] += pos.len();
                totals[class] += pos.len();
            }
            for c in 0..2 {
                for (s, f) in fr.as_array().into_iter().enumerate() {
                    let want = f * totals[c] as f64;
                    let got = counts[c][s] as f64;
                    assert!(
                        (got - want).abs() <= (2 * max_group) as f64 + 1.0,
                        "case {case} class {c} split {s}: {got} vs {want:.1}"
                    );
                }
            }
        }
    }

    #[test]
    fn seeded_and_deterministic() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (labels, group) = random_structure(&mut rng, 500, 3);
        let items: Vec<usize> = (0..500).collect();
        let fr = SplitFractions::default();
        let a = split(&items, &labels, &group, fr, 1).unwrap();
        assert_eq!(a, split(&items, &labels, &group, fr, 1).unwrap());
        assert_ne!(a, split(&items, &labels, &group, fr, 2).unwrap());
    }

    #[test]
    fn ten_classes_are_stratified_and_groups_stay_whole() {
        // 10 classes x 60 images in pairs (30 groups per class).
        let items: Vec<usize> = (0..600).collect();
        let labels: Vec<u8> = items.iter().map(|&i| (i / 60) as u8).collect();
        let group: Vec<u32> = items.iter().map(|&i| (i / 2) as u32).collect();
        let sp = split(&items, &labels, &group, SplitFractions::default(), 3).unwrap();
        for (part, share) in [(&sp.train, 0.595), (&sp.val, 0.105), (&sp.test, 0.30)] {
            for class in 0..10u8 {
                let n = part.iter().filter(|&&i| labels[i] == class).count() as f64;
                assert!(
                    (n - 60.0 * share).abs() <= 2.0,
                    "class {class}: {n} for {share}"
                );
            }
            for &i in part.iter() {
                assert!(part.contains(&(i ^ 1)), "group of {i} straddles splits");
            }
        }
    }

    #[test]
    fn every_nonzero_split_gets_a_group() {
        // Four groups of two, one label each side: the small val share still gets a group.
        let items: Vec<usize> = (0..8).collect();
        let labels = [0, 0, 1, 1, 0, 0, 1, 1];
        let group = [0, 0, 1, 1, 2, 2, 3, 3];
        let sp = split(&items, &labels, &group, SplitFractions::default(), 0).unwrap();
        assert!(!sp.train.is_empty() && !sp.val.is_empty() && !sp.test.is_empty());
        let no_val = SplitFractions {
            train: 0.7,
            val: 0.0,
            test: 0.3,
        };
        let sp = split(&items, &labels, &group, no_val, 0).unwrap();
        assert!(sp.val.is_empty() && !sp.train.is_empty() && !sp.test.is_empty());
    }

    #[test]
    fn errors() {
        let items = [0, 1, 2, 3];
        let labels = [0, 1, 0, 1];
        let group = [0, 1, 2, 3];
        let bad = SplitFractions {
            train: 0.5,
            val: 0.2,
            test: 0.2,
        };
        let e = split(&items, &labels, &group, bad, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("= 0.9"), "{e}");
        let neg = SplitFractions {
            train: 1.2,
            val: -0.2,
            test: 0.0,
        };
        assert!(matches!(
            split(&items, &labels, &group, neg, 0),
            Err(SplitError::Fractions { .. })
        ));
        assert_eq!(
            split(&items, &[0, 0, 0, 0], &group, SplitFractions::default(), 0)
                .unwrap_err()
                .to_string(),
            "label 1 has no images"
        );
        assert_eq!(
            split(&items, &labels, &[0, 0, 1, 1], SplitFractions::default(), 0),
            Err(SplitError::TooFewGroups {
                groups: 2,
                splits: 3
            })
        );
        assert!(matches!(
            split(&items, &labels[..3], &group, SplitFractions::default(), 0),
            Err(SplitError::Length { .. })
        ));
    }
}
