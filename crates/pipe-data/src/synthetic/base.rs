//! Base images: drawn from seeded streams, with pairwise distinct dHashes.

use super::face::{Face, sample_face};
use super::render::render;
use super::{MAX_REDRAWS, SyntheticConfig, SyntheticError, TRUTH_HASH_SIZE};
use crate::dhash::dhash;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::collections::HashMap;

/// A 64-bit seed from several words (splitmix64 finaliser over a running mix).
pub(super) fn mix(words: &[u64]) -> u64 {
    let mut z: u64 = 0x9E37_79B9_7F4A_7C15;
    for &w in words {
        z = (z ^ w).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
    }
    z
}

const STREAM_BASE: u64 = 1;
pub(super) const STREAM_PLAN: u64 = 2;
pub(super) const STREAM_NEAR: u64 = 3;

/// One base image: its attributes, pixels and dHash.
pub(super) struct Drawn {
    pub(super) face: Face,
    pub(super) pixels: Vec<u8>,
    pub(super) hash: Vec<u8>,
}

/// Draws base image `index` (redraw number `attempt`); depends only on these and the config.
pub(super) fn draw_base(cfg: &SyntheticConfig, index: usize, attempt: u32) -> Drawn {
    let mut rng =
        ChaCha8Rng::seed_from_u64(mix(&[cfg.seed, STREAM_BASE, index as u64, attempt as u64]));
    let face = sample_face(&mut rng, cfg.rule, cfg.width, cfg.height);
    let pixels = render(&face, cfg.width, cfg.height, cfg.channels, &mut rng);
    let hash = dhash(&pixels, cfg.shape(), TRUTH_HASH_SIZE);
    Drawn { face, pixels, hash }
}

/// The `count` base images, each redrawn until its dHash differs from every earlier one's, so
/// that duplicate groups are exactly the planted pairs.
pub(super) fn draw_bases(cfg: &SyntheticConfig) -> Result<Vec<Drawn>, SyntheticError> {
    let n = cfg.count;
    let mut drawn: Vec<Drawn> = (0..n)
        .into_par_iter()
        .map(|i| draw_base(cfg, i, 0))
        .collect();
    // Sequential so the redraws do not depend on scheduling.
    let mut seen: HashMap<Vec<u8>, usize> = HashMap::with_capacity(n);
    for (i, d) in drawn.iter_mut().enumerate() {
        let mut attempt = 0;
        while seen.contains_key(&d.hash) {
            attempt += 1;
            if attempt > MAX_REDRAWS {
                return Err(SyntheticError::HashCollisions {
                    index: i,
                    count: n,
                    shape: cfg.shape(),
                });
            }
            *d = draw_base(cfg, i, attempt);
        }
        seen.insert(d.hash.clone(), i);
    }
    Ok(drawn)
}
