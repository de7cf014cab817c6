//! Seeded synthetic faces: the `source` stage's `synthetic` format.
//!
//! Each base image is a drawn face (head, skin, eyes, eyebrows, nose, mouth, hair, optional
//! glasses, shirt, background) whose attributes are drawn from a RNG seeded by
//! `(seed, index, attempt)` only, so the bytes do not depend on the thread count. The label is a
//! hidden [`Rule`] over two drawn attributes; a fraction of labels is flipped (label noise), and
//! exact, near (JPEG re-encoded or brightness-shifted) and label-conflicting copies of distinct
//! base images are planted at shuffled positions.
//!
//! [`SyntheticTruth`] states what dHash (`hash_size` 8) at Hamming radius 0 followed by
//! `filter_conflicts` must find. It is exact by construction: base images have pairwise distinct
//! hashes (a colliding base image is redrawn), every near copy is checked to keep its original's
//! hash, and every planted copy has its own original, so duplicate groups are exactly the
//! planted pairs.
//!
//! In steps: `face.rs` draws a face's attributes, `render.rs` draws them on a `canvas.rs`,
//! `base.rs` makes the base images (seeded streams, distinct hashes), `copies.rs` plants the
//! copies and `generate.rs` puts the dataset and its truth together.

mod base;
mod canvas;
mod copies;
mod face;
mod generate;
mod render;

pub use face::Face;
pub use generate::{draw_face, generate};

use crate::Shape;
use crate::dataset::{MAX_IMAGES, MAX_SIDE, check_size};
use serde::{Deserialize, Serialize};

/// The dHash size the truth is computed for (the report's method).
pub const TRUTH_HASH_SIZE: u32 = 8;

/// Redraws allowed per base image whose dHash collides with an earlier one.
const MAX_REDRAWS: u32 = 64;

/// The hidden property that defines the label, as a function of drawn attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Glasses XOR light hair: not linearly separable from pixels, easy for a small CNN.
    #[default]
    GlassesXorLightHair,
    /// Wears glasses.
    Glasses,
    /// Light (blond, grey, strawberry) rather than dark hair.
    LightHair,
    /// Smiling mouth.
    Smile,
    /// Glasses and a smile.
    GlassesAndSmile,
}

impl Rule {
    /// The label (0/1) this rule gives a face.
    pub fn label(self, face: &Face) -> u8 {
        let v = match self {
            Rule::GlassesXorLightHair => face.glasses ^ face.light_hair,
            Rule::Glasses => face.glasses,
            Rule::LightHair => face.light_hair,
            Rule::Smile => face.smile,
            Rule::GlassesAndSmile => face.glasses && face.smile,
        };
        u8::from(v)
    }

    /// Probability that a face wears glasses and that it smiles: chosen so the classes are
    /// balanced under this rule (for a conjunction, each attribute needs p = sqrt(1/2)).
    fn attribute_probability(self) -> f64 {
        match self {
            Rule::GlassesAndSmile => std::f64::consts::FRAC_1_SQRT_2,
            _ => 0.5,
        }
    }
}

/// Configuration of the synthetic source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticConfig {
    /// Base images, before planted copies.
    pub count: usize,
    pub height: u32,
    pub width: u32,
    /// 3 = RGB, 1 = greyscale.
    pub channels: u32,
    pub seed: u64,
    pub rule: Rule,
    /// Fraction of base labels flipped, in [0, 0.5].
    pub label_noise: f64,
    /// Extra byte-identical copies of base images.
    pub exact_duplicates: usize,
    /// Copies re-encoded as JPEG (quality about 90) or brightness-shifted, same dHash.
    pub near_duplicates: usize,
    /// Copies (exact or near) whose label is the opposite of their original's.
    pub conflicting_duplicates: usize,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            count: 10_000,
            height: 56,
            width: 56,
            channels: 3,
            seed: 0,
            rule: Rule::default(),
            label_noise: 0.02,
            exact_duplicates: 60,
            near_duplicates: 60,
            conflicting_duplicates: 12,
        }
    }
}

impl SyntheticConfig {
    /// The image shape this configuration produces.
    pub fn shape(&self) -> Shape {
        Shape::new(self.height, self.width, self.channels)
    }

    /// Saturating: a huge field must fail validation, not overflow.
    fn plants(&self) -> usize {
        self.exact_duplicates
            .saturating_add(self.near_duplicates)
            .saturating_add(self.conflicting_duplicates)
    }

    /// Checks every field; the error names the offending one.
    pub fn validate(&self) -> Result<(), SyntheticError> {
        let invalid =
            |field: &'static str, message: String| SyntheticError::Invalid { field, message };
        if self.count == 0 {
            return Err(invalid("count", "must be at least 1".into()));
        }
        if self.count > MAX_IMAGES {
            return Err(invalid(
                "count",
                format!("{} exceeds the maximum of {MAX_IMAGES}", self.count),
            ));
        }
        if self.channels != 1 && self.channels != 3 {
            return Err(invalid(
                "channels",
                format!("must be 1 (greyscale) or 3 (RGB), got {}", self.channels),
            ));
        }
        for (field, v) in [("height", self.height), ("width", self.width)] {
            if !(8..=MAX_SIDE).contains(&v) {
                return Err(invalid(
                    field,
                    format!("must be between 8 and {MAX_SIDE} pixels, got {v}"),
                ));
            }
        }
        if !(0.0..=0.5).contains(&self.label_noise) {
            return Err(invalid(
                "label_noise",
                format!("must be a fraction in [0, 0.5], got {}", self.label_noise),
            ));
        }
        if self.plants() > self.count {
            return Err(invalid(
                "exact_duplicates",
                format!(
                    "exact_duplicates + near_duplicates + conflicting_duplicates = {} exceeds \
                     count = {}: each planted copy needs its own base image",
                    self.plants(),
                    self.count
                ),
            ));
        }
        // Base images and planted copies are held in memory together.
        check_size(self.count + self.plants(), self.shape())
            .map_err(|e| invalid("count", format!("too large: {e}")))
    }
}

/// Ground truth of a generated dataset, for the source artifact's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyntheticTruth {
    pub base: usize,
    pub exact_duplicates: usize,
    pub near_duplicates: usize,
    pub conflicting_duplicates: usize,
    pub label_noise_flips: usize,
    pub total: usize,
    /// What dHash(8) + dedup radius 0 + filter_conflicts (drop non-keepers and all members of
    /// label-conflicting groups) must find: groups with at least 2 members.
    pub duplicate_groups: usize,
    pub images_in_duplicate_groups: usize,
    pub conflicting_groups: usize,
    /// Non-keeper copies plus the keepers of conflicting groups.
    pub removed_by_filter: usize,
    /// `total - removed_by_filter`.
    pub clean: usize,
}

/// Errors of [`generate`].
#[derive(Debug, thiserror::Error)]
pub enum SyntheticError {
    #[error("invalid synthetic config: `{field}` {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(
        "synthetic: base image {index} still shares its dHash with an earlier image after \
         {MAX_REDRAWS} redraws ({count} images of {shape}); use larger images or a smaller count"
    )]
    HashCollisions {
        index: usize,
        count: usize,
        shape: Shape,
    },
    #[error(
        "synthetic: ran out of base images to plant near duplicates from: only {planted} of \
         {wanted} planted copies could keep their original's dHash; lower near_duplicates or \
         conflicting_duplicates, or raise count"
    )]
    NotEnoughOriginals { planted: usize, wanted: usize },
    #[error("synthetic: JPEG re-encoding of a near duplicate failed: {0}")]
    Jpeg(#[from] image::ImageError),
}

#[cfg(test)]
mod tests {
    use super::copies::Plant;
    use super::generate::generate_full;
    use super::*;
    use crate::dhash::dhash;
    use rayon::prelude::*;
    use std::collections::BTreeMap;

    fn small(count: usize) -> SyntheticConfig {
        SyntheticConfig {
            count,
            exact_duplicates: 20,
            near_duplicates: 20,
            conflicting_duplicates: 6,
            ..SyntheticConfig::default()
        }
    }

    #[test]
    fn same_seed_same_bytes_other_seed_differs() {
        let cfg = small(400);
        let (a, ta) = generate(&cfg).unwrap();
        let (b, tb) = generate(&cfg).unwrap();
        assert_eq!(&*a.pixels, &*b.pixels);
        assert_eq!(a.labels, b.labels);
        assert_eq!(a.names, b.names);
        assert_eq!(ta, tb);
        // Same bytes on a single thread: generation does not depend on scheduling.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let (c, _) = pool.install(|| generate(&cfg)).unwrap();
        assert_eq!(&*a.pixels, &*c.pixels);
        let (d, _) = generate(&SyntheticConfig { seed: 1, ..cfg }).unwrap();
        assert_ne!(&*a.pixels, &*d.pixels);
        assert_ne!(a.image(0), d.image(0));
    }

    #[test]
    fn truth_counts_match_dataset_and_classes_are_balanced() {
        let cfg = small(1000);
        let (ds, t) = generate(&cfg).unwrap();
        assert_eq!(t.base, 1000);
        assert_eq!(t.total, 1000 + 46);
        assert_eq!(ds.len(), t.total);
        assert_eq!(ds.shape, Shape::new(56, 56, 3));
        assert_eq!(ds.pixels.len(), t.total * 56 * 56 * 3);
        assert_eq!(t.label_noise_flips, 20);
        assert_eq!(t.duplicate_groups, 46);
        assert_eq!(t.images_in_duplicate_groups, 92);
        assert_eq!(t.conflicting_groups, 6);
        assert_eq!(t.removed_by_filter, 52);
        assert_eq!(t.clean, t.total - 52);
        let copies: Vec<usize> = (0..ds.len())
            .filter(|&i| ds.names[i].contains("_dup"))
            .collect();
        assert_eq!(copies.len(), 46);
        // Interleaved, not all at the end.
        assert!(copies[0] < ds.len() / 2, "first copy at {}", copies[0]);
        let labels = ds.labels.as_ref().unwrap();
        for rule in [
            Rule::GlassesXorLightHair,
            Rule::Glasses,
            Rule::LightHair,
            Rule::Smile,
            Rule::GlassesAndSmile,
        ] {
            let (ds, _) = generate(&SyntheticConfig {
                rule,
                ..cfg.clone()
            })
            .unwrap();
            let l = ds.labels.unwrap();
            let pos = l.iter().filter(|&&v| v == 1).count() as f64 / l.len() as f64;
            assert!((0.35..=0.65).contains(&pos), "{rule:?}: {pos}");
        }
        assert!(labels.iter().all(|&v| v <= 1));
    }

    #[test]
    fn labels_follow_the_rule_up_to_planted_noise() {
        let cfg = small(1000);
        let g = generate_full(&cfg).unwrap();
        let labels = g.dataset.labels.as_ref().unwrap();
        let mut flipped = 0;
        for (i, face) in g.faces.iter().enumerate() {
            let pos = g.base_pos[i];
            assert_eq!(g.dataset.names[pos], format!("syn_{i:06}.png"));
            if labels[pos] != cfg.rule.label(face) {
                flipped += 1;
            }
        }
        assert_eq!(flipped, g.truth.label_noise_flips);
        for &(orig, pos, kind) in &g.copies {
            let conflict = matches!(kind, Plant::ConflictExact | Plant::ConflictNear);
            assert_eq!(labels[pos] != labels[g.base_pos[orig]], conflict);
            let same = g.dataset.image(pos) == g.dataset.image(g.base_pos[orig]);
            assert_eq!(
                same,
                matches!(kind, Plant::Exact | Plant::ConflictExact),
                "{kind:?}"
            );
        }
    }

    /// Brute force: group all images by dHash and apply dedup + filter_conflicts.
    fn check_structure(cfg: &SyntheticConfig) {
        let (ds, t) = generate(cfg).unwrap();
        let labels = ds.labels.as_ref().unwrap();
        let mut groups: BTreeMap<Vec<u8>, Vec<usize>> = BTreeMap::new();
        for i in 0..ds.len() {
            groups
                .entry(dhash(ds.image(i), ds.shape, 8))
                .or_default()
                .push(i);
        }
        let dup: Vec<&Vec<usize>> = groups.values().filter(|g| g.len() >= 2).collect();
        assert_eq!(dup.len(), t.duplicate_groups);
        assert!(dup.iter().all(|g| g.len() == 2), "groups are pairs");
        assert_eq!(
            dup.iter().map(|g| g.len()).sum::<usize>(),
            t.images_in_duplicate_groups
        );
        let conflicting: Vec<&&Vec<usize>> = dup
            .iter()
            .filter(|g| g.iter().any(|&i| labels[i] != labels[g[0]]))
            .collect();
        assert_eq!(conflicting.len(), t.conflicting_groups);
        let removed: usize = dup.iter().map(|g| g.len() - 1).sum::<usize>() + conflicting.len();
        assert_eq!(removed, t.removed_by_filter);
        assert_eq!(ds.len() - removed, t.clean);
        // Exact copies are byte-identical, near copies are not.
        let exact = dup
            .iter()
            .filter(|g| ds.image(g[0]) == ds.image(g[1]))
            .count();
        let near_conflicts = cfg.conflicting_duplicates / 2;
        assert_eq!(
            exact,
            cfg.exact_duplicates + cfg.conflicting_duplicates - near_conflicts
        );
        for g in &dup {
            let stem = |i: usize| ds.names[i][..10].to_string();
            assert_eq!(stem(g[0]), stem(g[1]), "a copy is named after its original");
        }
    }

    #[test]
    fn planted_duplicates_are_exactly_what_dhash_finds() {
        check_structure(&small(1500));
        check_structure(&SyntheticConfig {
            count: 300,
            height: 24,
            width: 32,
            channels: 1,
            seed: 7,
            near_duplicates: 30,
            exact_duplicates: 5,
            conflicting_duplicates: 9,
            ..SyntheticConfig::default()
        });
    }

    #[test]
    fn invalid_configs_name_the_field() {
        let check = |cfg: SyntheticConfig, field: &str| {
            let err = generate(&cfg).unwrap_err().to_string();
            assert!(err.contains(&format!("`{field}`")), "{err}");
        };
        let base = small(100);
        check(
            SyntheticConfig {
                count: 0,
                ..base.clone()
            },
            "count",
        );
        check(
            SyntheticConfig {
                channels: 2,
                ..base.clone()
            },
            "channels",
        );
        check(
            SyntheticConfig {
                height: 7,
                ..base.clone()
            },
            "height",
        );
        check(
            SyntheticConfig {
                width: 5000,
                ..base.clone()
            },
            "width",
        );
        check(
            SyntheticConfig {
                label_noise: 0.6,
                ..base.clone()
            },
            "label_noise",
        );
        check(
            SyntheticConfig {
                label_noise: f64::NAN,
                ..base.clone()
            },
            "label_noise",
        );
        check(
            SyntheticConfig {
                count: 40,
                ..base.clone()
            },
            "exact_duplicates",
        );
        assert!(generate(&SyntheticConfig { count: 46, ..base }).is_ok());
    }

    #[test]
    fn config_yaml_uses_snake_case_and_rejects_unknown_fields() {
        let cfg: SyntheticConfig =
            serde_json::from_value(serde_json::json!({"count": 5, "rule": "glasses_and_smile"}))
                .unwrap();
        assert_eq!(cfg.count, 5);
        assert_eq!(cfg.rule, Rule::GlassesAndSmile);
        assert_eq!(cfg.height, 56);
        let json = serde_json::to_value(SyntheticConfig::default()).unwrap();
        assert_eq!(json["rule"], "glasses_xor_light_hair");
        assert!(serde_json::from_value::<SyntheticConfig>(serde_json::json!({"cont": 5})).is_err());
    }

    /// Held-out balanced accuracy of an L2-regularised logistic regression on raw pixels.
    fn linear_balanced_accuracy(cfg: &SyntheticConfig, train: usize, steps: usize) -> f64 {
        let (ds, _) = generate(cfg).unwrap();
        let labels = ds.labels.as_ref().unwrap();
        let d = ds.shape.image_len();
        let x: Vec<f32> = ds.pixels.iter().map(|&v| v as f32 / 255.0 - 0.5).collect();
        let row = |i: usize| &x[i * d..(i + 1) * d];
        let y: Vec<f32> = labels.iter().map(|&l| l as f32).collect();
        let (mut w, mut b) = (vec![0f32; d], 0f32);
        let (lr, l2) = (0.5f32, 1e-3f32);
        let dot = |w: &[f32], x: &[f32]| w.iter().zip(x).map(|(a, b)| a * b).sum::<f32>();
        for _ in 0..steps {
            let errs: Vec<f32> = (0..train)
                .into_par_iter()
                .map(|i| 1.0 / (1.0 + (-(dot(&w, row(i)) + b)).exp()) - y[i])
                .collect();
            let grad = (0..train)
                .into_par_iter()
                .fold(
                    || vec![0f32; d],
                    |mut g, i| {
                        for (gj, xj) in g.iter_mut().zip(row(i)) {
                            *gj += errs[i] * xj;
                        }
                        g
                    },
                )
                .reduce(
                    || vec![0f32; d],
                    |mut a, b| {
                        a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                        a
                    },
                );
            for (wj, gj) in w.iter_mut().zip(&grad) {
                *wj -= lr * (gj / train as f32 + l2 * *wj);
            }
            b -= lr * errs.iter().sum::<f32>() / train as f32;
        }
        let mut hit = [0usize; 2];
        let mut n = [0usize; 2];
        for (i, &label) in labels.iter().enumerate().skip(train) {
            let pred = u8::from(dot(&w, row(i)) + b > 0.0);
            n[label as usize] += 1;
            hit[label as usize] += usize::from(pred == label);
        }
        (hit[0] as f64 / n[0] as f64 + hit[1] as f64 / n[1] as f64) / 2.0
    }

    #[test]
    fn xor_rule_defeats_a_linear_model_on_pixels() {
        let cfg = SyntheticConfig {
            count: 2600,
            label_noise: 0.0,
            exact_duplicates: 0,
            near_duplicates: 0,
            conflicting_duplicates: 0,
            ..SyntheticConfig::default()
        };
        let xor = linear_balanced_accuracy(&cfg, 2000, 120);
        // The same model does learn a single attribute, so a low figure is the rule's doing.
        let hair = linear_balanced_accuracy(
            &SyntheticConfig {
                rule: Rule::LightHair,
                ..cfg
            },
            2000,
            30,
        );
        eprintln!("linear held-out balanced accuracy: xor {xor:.3}, light_hair {hair:.3}");
        assert!(xor < 0.75, "xor {xor}");
        assert!(hair > 0.9, "light_hair {hair}");
    }

    #[test]
    fn default_config_truth() {
        let g = generate_full(&SyntheticConfig::default()).unwrap();
        let t = &g.truth;
        assert_eq!(
            (t.base, t.total, t.label_noise_flips),
            (10_000, 10_132, 200)
        );
        assert_eq!(
            (t.duplicate_groups, t.removed_by_filter, t.clean),
            (132, 144, 9_988)
        );
        // Both kinds of near copies occur (66 = 60 near + 6 near conflicting copies).
        assert!(g.jpeg_copies > 0 && g.jpeg_copies < 66, "{}", g.jpeg_copies);
        eprintln!("JPEG near copies: {} of 66", g.jpeg_copies);
    }
}
