//! Planted copies of base images: exact, near (JPEG re-encoded or brightness-shifted, keeping
//! the original's dHash) and label-conflicting ones, each of its own original.

use super::base::{Drawn, STREAM_NEAR, mix};
use super::{SyntheticConfig, SyntheticError, TRUTH_HASH_SIZE};
use crate::Shape;
use crate::dhash::dhash;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Plant {
    Exact,
    Near,
    ConflictExact,
    ConflictNear,
}

impl Plant {
    /// The copies to plant, in order: exact, near, then the conflicting ones, alternately exact
    /// and near.
    fn all(cfg: &SyntheticConfig) -> Vec<Plant> {
        let mut kinds = Vec::with_capacity(cfg.plants());
        kinds.extend(std::iter::repeat_n(Plant::Exact, cfg.exact_duplicates));
        kinds.extend(std::iter::repeat_n(Plant::Near, cfg.near_duplicates));
        kinds.extend((0..cfg.conflicting_duplicates).map(|k| {
            if k % 2 == 0 {
                Plant::ConflictExact
            } else {
                Plant::ConflictNear
            }
        }));
        kinds
    }
}

/// One planted copy: its original (a base image index), pixels, label and kind.
pub(super) struct Planted {
    pub(super) orig: usize,
    pub(super) pixels: Vec<u8>,
    pub(super) label: u8,
    pub(super) kind: Plant,
}

/// The planted copies, each with its own original taken from a shuffled order of the base
/// images, and how many of them are JPEG re-encodes.
pub(super) fn plant_copies(
    cfg: &SyntheticConfig,
    drawn: &[Drawn],
    labels: &[u8],
    plan: &mut ChaCha8Rng,
) -> Result<(Vec<Planted>, usize), SyntheticError> {
    let kinds = Plant::all(cfg);
    let mut order: Vec<usize> = (0..cfg.count).collect();
    order.shuffle(plan);
    let mut originals = Originals {
        drawn,
        pool: order.into(),
        shape: cfg.shape(),
        seed: cfg.seed,
        jpeg_copies: 0,
    };
    let mut planted = Vec::with_capacity(kinds.len());
    for (done, &kind) in kinds.iter().enumerate() {
        let chosen = match kind {
            Plant::Exact | Plant::ConflictExact => originals.exact(),
            Plant::Near | Plant::ConflictNear => originals.near(plan)?,
        };
        let Some((orig, pixels)) = chosen else {
            return Err(SyntheticError::NotEnoughOriginals {
                planted: done,
                wanted: kinds.len(),
            });
        };
        let label = match kind {
            Plant::ConflictExact | Plant::ConflictNear => labels[orig] ^ 1,
            _ => labels[orig],
        };
        planted.push(Planted {
            orig,
            pixels,
            label,
            kind,
        });
    }
    Ok((planted, originals.jpeg_copies))
}

/// The base images not yet used as an original, in the order they are offered.
struct Originals<'a> {
    drawn: &'a [Drawn],
    pool: VecDeque<usize>,
    shape: Shape,
    seed: u64,
    /// Near copies made so far that are JPEG re-encodes.
    jpeg_copies: usize,
}

impl Originals<'_> {
    /// The stream a near copy of base image `orig` draws from.
    fn rng(&self, orig: usize) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(mix(&[self.seed, STREAM_NEAR, orig as u64]))
    }

    /// The next original and an exact copy of it; `None` when none is left.
    fn exact(&mut self) -> Option<(usize, Vec<u8>)> {
        let orig = self.pool.pop_front()?;
        Some((orig, self.drawn[orig].pixels.clone()))
    }

    /// An original and a near copy of it; `None` when no original is left that allows one.
    fn near(
        &mut self,
        plan: &mut ChaCha8Rng,
    ) -> Result<Option<(usize, Vec<u8>)>, image::ImageError> {
        // Half the near copies are JPEG re-encodes where a nearby original allows it.
        if plan.random_bool(0.5)
            && let Some(chosen) = self.jpeg_near()?
        {
            return Ok(Some(chosen));
        }
        let drawn = self.drawn;
        while let Some(orig) = self.pool.pop_front() {
            let src = &drawn[orig];
            if let Some((px, how)) = near_copy(
                &src.pixels,
                &src.hash,
                self.shape,
                &mut self.rng(orig),
                false,
            )? {
                if matches!(how, Perturbation::Jpeg(_)) {
                    self.jpeg_copies += 1;
                }
                return Ok(Some((orig, px)));
            }
        }
        Ok(None)
    }

    /// A JPEG re-encode of one of the next [`JPEG_LOOKAHEAD`] originals that keeps its dHash.
    fn jpeg_near(&mut self) -> Result<Option<(usize, Vec<u8>)>, image::ImageError> {
        let drawn = self.drawn;
        for k in 0..self.pool.len().min(JPEG_LOOKAHEAD) {
            let orig = self.pool[k];
            let src = &drawn[orig];
            if let Some((px, _)) = near_copy(
                &src.pixels,
                &src.hash,
                self.shape,
                &mut self.rng(orig),
                true,
            )? {
                self.pool.remove(k);
                self.jpeg_copies += 1;
                return Ok(Some((orig, px)));
            }
        }
        Ok(None)
    }
}

fn jpeg_round_trip(pixels: &[u8], shape: Shape, quality: u8) -> Result<Vec<u8>, image::ImageError> {
    use image::codecs::jpeg::JpegEncoder;
    let color = if shape.channels == 1 {
        image::ExtendedColorType::L8
    } else {
        image::ExtendedColorType::Rgb8
    };
    let mut buf = Vec::new();
    JpegEncoder::new_with_quality(&mut buf, quality).encode(
        pixels,
        shape.width,
        shape.height,
        color,
    )?;
    let img = image::load_from_memory_with_format(&buf, image::ImageFormat::Jpeg)?;
    Ok(if shape.channels == 1 {
        img.into_luma8().into_raw()
    } else {
        img.into_rgb8().into_raw()
    })
}

fn brightness_shift(pixels: &[u8], delta: i32) -> Vec<u8> {
    pixels
        .iter()
        .map(|&v| (v as i32 + delta).clamp(0, 255) as u8)
        .collect()
}

/// How a near copy was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Perturbation {
    Jpeg(u8),
    Brightness(i32),
}

fn perturb(pixels: &[u8], shape: Shape, p: Perturbation) -> Result<Vec<u8>, image::ImageError> {
    match p {
        Perturbation::Jpeg(q) => jpeg_round_trip(pixels, shape, q),
        Perturbation::Brightness(d) => Ok(brightness_shift(pixels, d)),
    }
}

/// Base images a JPEG-preferring near copy may look through for one whose re-encode keeps
/// its dHash, before it settles for a brightness shift.
const JPEG_LOOKAHEAD: usize = 16;

/// A near copy of `pixels` that differs in bytes but keeps dHash `hash`, or `None`.
/// With `jpeg_only`, only JPEG re-encodes at qualities around 90 are tried; otherwise
/// brightness shifts first, then re-encodes. Each candidate's hash is checked.
fn near_copy(
    pixels: &[u8],
    hash: &[u8],
    shape: Shape,
    rng: &mut ChaCha8Rng,
    jpeg_only: bool,
) -> Result<Option<(Vec<u8>, Perturbation)>, image::ImageError> {
    let d = rng.random_range(5..=12);
    let sign = if rng.random_bool(0.5) { 1 } else { -1 };
    let shifts = [sign * d, -sign * d, sign * 3, -sign * 3, sign, -sign];
    let jpegs = [90u8, 88, 92, 86, 94, 84, 96];
    let jpeg = jpegs.iter().map(|&q| Perturbation::Jpeg(q));
    let order: Vec<Perturbation> = if jpeg_only {
        jpeg.collect()
    } else {
        shifts
            .iter()
            .map(|&d| Perturbation::Brightness(d))
            .chain(jpeg)
            .collect()
    };
    for p in order {
        let c = perturb(pixels, shape, p)?;
        if c != pixels && dhash(&c, shape, TRUTH_HASH_SIZE) == hash {
            return Ok(Some((c, p)));
        }
    }
    Ok(None)
}
