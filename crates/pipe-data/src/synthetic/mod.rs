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
#[cfg(test)]
mod tests;

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
