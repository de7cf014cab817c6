//! Near-duplicate grouping of packed hashes: connected components of "Hamming distance
//! <= radius", without comparing every pair.
//!
//! Exact duplicates are merged first by sorting. For radius `r >= 1` the distinct hashes go
//! through multi-index hashing: the bits are cut into `r + 1` chunks, and by pigeonhole two
//! hashes within distance `r` agree exactly on at least one chunk, so only hashes sharing a
//! chunk value are compared. Matches are joined with union-find.

use rayon::prelude::*;

/// Largest radius [`group_by_radius`] accepts (multi-index hashing degrades beyond it).
pub const MAX_RADIUS: u32 = 8;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexError {
    #[error("radius {0} exceeds the maximum of {MAX_RADIUS}")]
    Radius(u32),
    #[error("{len} hash bytes are not a whole number of rows of {width} bytes")]
    Width { len: usize, width: usize },
}

/// Near-duplicate groups: a partition of `0..n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Groups {
    /// Index into `groups` of each image's group.
    pub group_of: Vec<u32>,
    /// Members of each group, ascending; groups ordered by their smallest member.
    pub groups: Vec<Vec<u32>>,
}

/// `hashes`: n rows of `width` bytes each (row-major). Groups = connected components of the
/// relation hamming(a,b) <= radius (radius 0 = equal hashes). Every image is in exactly one group
/// (singletons included). Deterministic: members ascending, groups ordered by their smallest member;
/// group_of[i] is the index of i's group in `groups`.
pub fn group_by_radius(hashes: &[u8], width: usize, radius: u32) -> Result<Groups, IndexError> {
    if radius > MAX_RADIUS {
        return Err(IndexError::Radius(radius));
    }
    if width == 0 {
        if hashes.is_empty() {
            return Ok(Groups {
                group_of: Vec::new(),
                groups: Vec::new(),
            });
        }
        return Err(IndexError::Width {
            len: hashes.len(),
            width,
        });
    }
    if !hashes.len().is_multiple_of(width) {
        return Err(IndexError::Width {
            len: hashes.len(),
            width,
        });
    }
    let n = hashes.len() / width;
    let row = |i: usize| &hashes[i * width..(i + 1) * width];
    let mut uf = UnionFind::new(n);

    // Exact duplicates: sort by bytes, join runs; `reps` keeps one index per distinct hash.
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.par_sort_unstable_by(|&a, &b| row(a as usize).cmp(row(b as usize)).then(a.cmp(&b)));
    let mut reps: Vec<u32> = Vec::new();
    for (k, &i) in order.iter().enumerate() {
        if k > 0 && row(order[k - 1] as usize) == row(i as usize) {
            uf.union(order[k - 1], i);
        } else {
            reps.push(i);
        }
    }

    let nbits = width * 8;
    if radius as usize >= nbits {
        // Any two hashes differ in at most `nbits <= radius` bits.
        for w in reps.windows(2) {
            uf.union(w[0], w[1]);
        }
    } else if radius > 0 {
        let chunks = radius as usize + 1;
        let edges: Vec<Vec<(u32, u32)>> = (0..chunks)
            .into_par_iter()
            .map(|c| {
                let (lo, hi) = (c * nbits / chunks, (c + 1) * nbits / chunks);
                chunk_matches(&reps, &row, lo, hi, radius)
            })
            .collect();
        for (a, b) in edges.into_iter().flatten() {
            uf.union(a, b);
        }
    }

    // Number groups by smallest member: scanning 0..n meets each group first at that member.
    let mut group_of = vec![u32::MAX; n];
    let mut slot_of_root = vec![u32::MAX; n];
    let mut groups: Vec<Vec<u32>> = Vec::new();
    for i in 0..n as u32 {
        let root = uf.find(i) as usize;
        if slot_of_root[root] == u32::MAX {
            slot_of_root[root] = groups.len() as u32;
            groups.push(Vec::new());
        }
        let g = slot_of_root[root];
        group_of[i as usize] = g;
        groups[g as usize].push(i);
    }
    Ok(Groups { group_of, groups })
}

/// Pairs of `reps` within `radius` that agree on bits `lo..hi`.
fn chunk_matches<'a>(
    reps: &[u32],
    row: &(impl Fn(usize) -> &'a [u8] + Sync),
    lo: usize,
    hi: usize,
    radius: u32,
) -> Vec<(u32, u32)> {
    let words = (hi - lo).div_ceil(64);
    let mut keys = vec![0u64; reps.len() * words];
    for (k, &i) in reps.iter().enumerate() {
        let r = row(i as usize);
        let key = &mut keys[k * words..(k + 1) * words];
        for (j, b) in (lo..hi).enumerate() {
            let bit = (r[b / 8] >> (7 - b % 8)) & 1;
            key[j / 64] |= u64::from(bit) << (j % 64);
        }
    }
    let key = |k: usize| &keys[k * words..(k + 1) * words];
    let mut order: Vec<usize> = (0..reps.len()).collect();
    order.sort_unstable_by(|&a, &b| key(a).cmp(key(b)).then(a.cmp(&b)));
    let mut edges = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && key(order[end]) == key(order[start]) {
            end += 1;
        }
        let run = &order[start..end];
        for (x, &a) in run.iter().enumerate() {
            let ra = row(reps[a] as usize);
            for &b in &run[x + 1..] {
                if super::dhash::hamming(ra, row(reps[b] as usize)) <= radius {
                    edges.push((reps[a], reps[b]));
                }
            }
        }
        start = end;
    }
    edges
}

/// Union-find with path halving and union by size.
struct UnionFind {
    parent: Vec<u32>,
    size: Vec<u32>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        Self {
            parent: (0..n as u32).collect(),
            size: vec![1; n],
        }
    }

    fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let p = self.parent[x as usize];
            self.parent[x as usize] = self.parent[p as usize];
            x = p;
        }
        x
    }

    fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return;
        }
        let (big, small) = if self.size[ra as usize] >= self.size[rb as usize] {
            (ra, rb)
        } else {
            (rb, ra)
        };
        self.parent[small as usize] = big;
        self.size[big as usize] += self.size[small as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhash::hamming;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// O(n^2) reference: components by flood fill over every pair.
    fn brute_force(hashes: &[u8], width: usize, radius: u32) -> Vec<Vec<u32>> {
        let n = hashes.len() / width;
        let row = |i: usize| &hashes[i * width..(i + 1) * width];
        let mut comp = vec![usize::MAX; n];
        let mut groups = Vec::new();
        for s in 0..n {
            if comp[s] != usize::MAX {
                continue;
            }
            let g = groups.len();
            comp[s] = g;
            let mut members = vec![s as u32];
            let mut stack = vec![s];
            while let Some(a) = stack.pop() {
                for (b, cb) in comp.iter_mut().enumerate() {
                    if *cb == usize::MAX && hamming(row(a), row(b)) <= radius {
                        *cb = g;
                        members.push(b as u32);
                        stack.push(b);
                    }
                }
            }
            members.sort_unstable();
            groups.push(members);
        }
        groups
    }

    /// Random hashes with planted chains of near neighbours and exact copies.
    fn planted(n: usize, width: usize, seed: u64) -> Vec<u8> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut hashes: Vec<u8> = Vec::with_capacity(n * width);
        for i in 0..n {
            if i > 0 && rng.random_bool(0.4) {
                let src = rng.random_range(0..i);
                let mut h = hashes[src * width..(src + 1) * width].to_vec();
                for _ in 0..rng.random_range(0..=6) {
                    let b = rng.random_range(0..width * 8);
                    h[b / 8] ^= 0x80 >> (b % 8);
                }
                hashes.extend(h);
            } else {
                hashes.extend((0..width).map(|_| rng.random::<u8>()));
            }
        }
        hashes
    }

    #[test]
    fn matches_brute_force_for_every_radius() {
        for (width, seed) in [(8usize, 1u64), (2, 2), (4, 3)] {
            let hashes = planted(2000, width, seed);
            for radius in 0..=MAX_RADIUS {
                let got = group_by_radius(&hashes, width, radius).unwrap();
                let want = brute_force(&hashes, width, radius);
                assert_eq!(got.groups, want, "width {width} radius {radius}");
                for (g, members) in got.groups.iter().enumerate() {
                    for &m in members {
                        assert_eq!(got.group_of[m as usize], g as u32);
                    }
                }
                if width == 8 && radius == 4 {
                    // The planted neighbours must actually form groups.
                    assert!(got.groups.len() < 1900, "{} groups", got.groups.len());
                }
            }
        }
    }

    #[test]
    fn errors_and_edge_cases() {
        assert_eq!(
            group_by_radius(&[0; 8], 8, 9).unwrap_err().to_string(),
            "radius 9 exceeds the maximum of 8"
        );
        assert!(matches!(
            group_by_radius(&[0; 9], 8, 1),
            Err(IndexError::Width { len: 9, width: 8 })
        ));
        let empty = group_by_radius(&[], 8, 3).unwrap();
        assert!(empty.groups.is_empty() && empty.group_of.is_empty());
        let g = group_by_radius(&[5, 1, 5, 2], 1, 0).unwrap();
        assert_eq!(g.groups, vec![vec![0, 2], vec![1], vec![3]]);
        assert_eq!(g.group_of, vec![0, 1, 0, 2]);
    }
}
