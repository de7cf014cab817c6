//! The whole dataset: base images and their labels, planted copies interleaved at random
//! positions, and the ground truth.

use super::base::{Drawn, STREAM_PLAN, draw_base, draw_bases, mix};
use super::copies::{Plant, Planted, plant_copies};
use super::face::Face;
use super::{SyntheticConfig, SyntheticError, SyntheticTruth};
use crate::Dataset;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// A base image rendered for display (e.g. example grids), with its attributes.
pub fn draw_face(cfg: &SyntheticConfig, index: usize) -> (Face, Vec<u8>) {
    let d = draw_base(cfg, index, 0);
    (d.face, d.pixels)
}

/// Everything [`generate`] computes, with the per-base attributes kept for tests.
#[cfg_attr(not(test), allow(dead_code))]
pub(super) struct Generated {
    pub(super) dataset: Dataset,
    pub(super) truth: SyntheticTruth,
    /// Attributes of base image `i` (named `syn_{i:06}.png`).
    pub(super) faces: Vec<Face>,
    /// Position in the dataset of each base image.
    pub(super) base_pos: Vec<usize>,
    /// `(original base index, position of the copy, plant kind)`.
    pub(super) copies: Vec<(usize, usize, Plant)>,
    /// How many near copies are JPEG re-encodes (the others are brightness shifts).
    pub(super) jpeg_copies: usize,
}

/// Generates the synthetic dataset and its ground truth.
pub fn generate(cfg: &SyntheticConfig) -> Result<(Dataset, SyntheticTruth), SyntheticError> {
    generate_full(cfg).map(|g| (g.dataset, g.truth))
}

pub(super) fn generate_full(cfg: &SyntheticConfig) -> Result<Generated, SyntheticError> {
    cfg.validate()?;
    let drawn = draw_bases(cfg)?;
    // One stream plans labels, copies and positions, in this order.
    let mut plan = ChaCha8Rng::seed_from_u64(mix(&[cfg.seed, STREAM_PLAN]));
    let (labels, flips) = base_labels(cfg, &drawn, &mut plan);
    let (planted, jpeg_copies) = plant_copies(cfg, &drawn, &labels, &mut plan)?;
    let slots = interleave(cfg.count, planted.len(), &mut plan);
    let truth = truth(cfg, flips, planted.len());
    let assembled = assemble(cfg, drawn, &labels, &planted, &slots);
    Ok(Generated {
        dataset: assembled.dataset,
        truth,
        faces: assembled.faces,
        base_pos: assembled.base_pos,
        copies: assembled.copies,
        jpeg_copies,
    })
}

/// Each base image's label under the rule, with a `label_noise` fraction flipped; and how many
/// were flipped.
fn base_labels(cfg: &SyntheticConfig, drawn: &[Drawn], plan: &mut ChaCha8Rng) -> (Vec<u8>, usize) {
    let n = cfg.count;
    let mut labels: Vec<u8> = drawn.iter().map(|d| cfg.rule.label(&d.face)).collect();
    let flips = (cfg.label_noise * n as f64).round() as usize;
    for i in rand::seq::index::sample(plan, n, flips) {
        labels[i] ^= 1;
    }
    (labels, flips)
}

/// The planted copy (if any) at each of the `n + p` positions: copies take a random subset of
/// positions, in shuffled order; base images fill the others in order.
fn interleave(n: usize, p: usize, plan: &mut ChaCha8Rng) -> Vec<Option<usize>> {
    let total = n + p;
    let mut copy_positions: Vec<usize> = rand::seq::index::sample(plan, total, p).into_vec();
    copy_positions.sort_unstable();
    let mut copy_order: Vec<usize> = (0..p).collect();
    copy_order.shuffle(plan);
    let mut slot: Vec<Option<usize>> = vec![None; total];
    for (&pos, &k) in copy_positions.iter().zip(&copy_order) {
        slot[pos] = Some(k);
    }
    slot
}

/// What dHash + dedup + filter_conflicts must find, by construction: each planted copy and its
/// original form one group.
fn truth(cfg: &SyntheticConfig, flips: usize, planted: usize) -> SyntheticTruth {
    let total = cfg.count + planted;
    let conflicting = cfg.conflicting_duplicates;
    let removed = planted + conflicting;
    SyntheticTruth {
        base: cfg.count,
        exact_duplicates: cfg.exact_duplicates,
        near_duplicates: cfg.near_duplicates,
        conflicting_duplicates: conflicting,
        label_noise_flips: flips,
        total,
        duplicate_groups: planted,
        images_in_duplicate_groups: 2 * planted,
        conflicting_groups: conflicting,
        removed_by_filter: removed,
        clean: total - removed,
    }
}

/// The dataset in position order, with where each base image and copy went.
struct Assembled {
    dataset: Dataset,
    faces: Vec<Face>,
    base_pos: Vec<usize>,
    copies: Vec<(usize, usize, Plant)>,
}

fn assemble(
    cfg: &SyntheticConfig,
    drawn: Vec<Drawn>,
    labels: &[u8],
    planted: &[Planted],
    slots: &[Option<usize>],
) -> Assembled {
    let shape = cfg.shape();
    let (n, total) = (cfg.count, slots.len());
    let mut pixels = Vec::with_capacity(total * shape.image_len());
    let mut out_labels = Vec::with_capacity(total);
    let mut names = Vec::with_capacity(total);
    let mut base_pos = vec![0; n];
    let mut copies = Vec::with_capacity(planted.len());
    let mut next_base = 0;
    // Base images are consumed in order, so their pixels are freed as the dataset fills.
    let mut faces = Vec::with_capacity(n);
    let mut bases = drawn.into_iter();
    for (pos, s) in slots.iter().enumerate() {
        match *s {
            Some(k) => {
                let c = &planted[k];
                pixels.extend_from_slice(&c.pixels);
                out_labels.push(c.label);
                names.push(format!("syn_{:06}_dup1.png", c.orig));
                copies.push((c.orig, pos, c.kind));
            }
            None => {
                if let Some(d) = bases.next() {
                    pixels.extend_from_slice(&d.pixels);
                    faces.push(d.face);
                }
                out_labels.push(labels[next_base]);
                names.push(format!("syn_{next_base:06}.png"));
                base_pos[next_base] = pos;
                next_base += 1;
            }
        }
    }
    Assembled {
        dataset: Dataset::new(shape, pixels, Some(out_labels), names),
        faces,
        base_pos,
        copies,
    }
}
