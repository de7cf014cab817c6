//! Difference hash (dHash) bit-identical to Python ImageHash 4.3.2 `imagehash.dhash`.
//!
//! ImageHash computes `image.convert("L").resize((hash_size + 1, hash_size), LANCZOS)` and
//! sets bit `(r, c)` when pixel `(r, c + 1)` is brighter than pixel `(r, c)`. To agree bit for
//! bit this module emulates Pillow (checked against Pillow 13.0):
//! - `convert("L")` from RGB(A): `L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16` (Convert.c);
//! - `resize(.., LANCZOS)` with no box and no `reducing_gap`: `ImagingResample` (Resample.c),
//!   coefficients computed in `f64` exactly as `precompute_coeffs`, quantised to
//!   `PRECISION_BITS = 22` fixed point, a horizontal pass over the rows the vertical pass uses,
//!   clipped to `u8`, then a vertical pass clipped to `u8`; a pass is skipped when that
//!   dimension is unchanged (and the resize is a copy when both are).

use super::{Dataset, Shape};
use rayon::prelude::*;

/// Fixed-point precision of Pillow's 8-bit resampling (`32 - 8 - 2`).
const PRECISION_BITS: u32 = 22;
const LANCZOS_SUPPORT: f64 = 3.0;

/// Bytes of one packed hash: `ceil(hash_size^2 / 8)`.
pub fn dhash_bytes(hash_size: u32) -> usize {
    (hash_size as usize * hash_size as usize).div_ceil(8)
}

/// dHash bits packed MSB-first in row-major order, exactly as imagehash's hex string encodes them;
/// returns ceil(hash_size*hash_size/8) bytes.
///
/// `image` is HWC `u8` of `shape`: 1 channel is used as is, 3 or more are converted with
/// Pillow's luma formula (a 4th channel, alpha, is ignored like Pillow's `RGBA -> L`), and 2
/// channels use the first (the L of LA). When the bit count is not a multiple of 8 the last
/// byte is padded with zero bits. An image with no pixels hashes to all zeros.
///
/// # Panics
/// When `image.len() != shape.image_len()` (a caller bug, like an out-of-range slice).
pub fn dhash(image: &[u8], shape: Shape, hash_size: u32) -> Vec<u8> {
    assert_eq!(
        image.len(),
        shape.image_len(),
        "dhash: {} bytes for an image of shape {shape}",
        image.len()
    );
    let mut out = vec![0u8; dhash_bytes(hash_size)];
    if let Some(plan) = Plan::new(shape, hash_size) {
        plan.hash_into(image, &mut Scratch::default(), &mut out);
    }
    out
}

/// Hash every image of a dataset in parallel (rayon); row i = image i; each row `dhash_bytes(hash_size)` long.
pub fn dhash_all(ds: &Dataset, hash_size: u32) -> Vec<u8> {
    let width = dhash_bytes(hash_size);
    let mut out = vec![0u8; ds.len() * width];
    if width == 0 {
        return out;
    }
    let Some(plan) = Plan::new(ds.shape, hash_size) else {
        return out;
    };
    // Chunks of images amortise rayon's per-task cost: one hash takes only microseconds.
    const CHUNK: usize = 256;
    out.par_chunks_mut(width * CHUNK).enumerate().for_each_init(
        Scratch::default,
        |scratch, (chunk, rows)| {
            for (k, row) in rows.chunks_mut(width).enumerate() {
                plan.hash_into(ds.image(chunk * CHUNK + k), scratch, row);
            }
        },
    );
    out
}

/// Lowercase hex of `bits`; for hash_size 8 the same string as `str(imagehash.dhash(img))`.
pub fn to_hex(bits: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bits.len() * 2);
    for &b in bits {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Number of differing bits; bytes beyond the shorter slice count all their set bits.
pub fn hamming(a: &[u8], b: &[u8]) -> u32 {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let mut d: u32 = 0;
    let mut i = 0;
    while i + 8 <= short.len() {
        let x = u64::from_le_bytes(short[i..i + 8].try_into().unwrap_or([0; 8]));
        let y = u64::from_le_bytes(long[i..i + 8].try_into().unwrap_or([0; 8]));
        d += (x ^ y).count_ones();
        i += 8;
    }
    d += short[i..]
        .iter()
        .zip(&long[i..])
        .map(|(x, y)| (x ^ y).count_ones())
        .sum::<u32>();
    d + long[short.len()..]
        .iter()
        .map(|x| x.count_ones())
        .sum::<u32>()
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        return 1.0;
    }
    let x = x * std::f64::consts::PI;
    x.sin() / x
}

fn lanczos(x: f64) -> f64 {
    if (-3.0..3.0).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

/// Pillow's `clip8`: `in >> PRECISION_BITS` clamped to 0..=255.
#[inline(always)]
fn clip8(v: i32) -> i32 {
    (v >> PRECISION_BITS).clamp(0, 255)
}

/// One resampling direction in Pillow's fixed point, laid out for fixed-length dot products:
/// output `i` reads `len` inputs from `start[i]` (relative to the first row/column the pass
/// reads) with weights `coef[i*len..(i+1)*len]`; the taps Pillow does not use are zero.
#[derive(Debug, Clone)]
struct Kernel {
    len: usize,
    start: Vec<usize>,
    coef: Vec<i32>,
}

/// Pillow's `precompute_coeffs` for box `(0, in_size)`: per output `(xmin, weights)`.
fn pillow_coeffs(in_size: usize, out_size: usize) -> Vec<(usize, Vec<f64>)> {
    // Pillow passes the box as C floats: in1 - in0 is computed in f32, then widened.
    let in0 = 0.0f32;
    let in1 = in_size as f32;
    let scale = f64::from(in1 - in0) / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = LANCZOS_SUPPORT * filterscale;
    let ss = 1.0 / filterscale;
    (0..out_size)
        .map(|xx| {
            let center = f64::from(in0) + (xx as f64 + 0.5) * scale;
            // C `(int)` truncates toward zero, as does `as i64`.
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) - xmin;
            let mut w: Vec<f64> = (0..xmax.max(0))
                .map(|x| lanczos(((x + xmin) as f64 - center + 0.5) * ss))
                .collect();
            let ww: f64 = w.iter().sum();
            if ww != 0.0 {
                for k in &mut w {
                    *k /= ww;
                }
            }
            (xmin as usize, w)
        })
        .collect()
}

/// `normalize_coeffs_8bpc`: round half away from zero, truncating like C.
fn quantise(k: f64) -> i32 {
    let scaled = k * f64::from(1u32 << PRECISION_BITS);
    if k < 0.0 {
        (-0.5 + scaled) as i32
    } else {
        (0.5 + scaled) as i32
    }
}

impl Kernel {
    /// Lays out Pillow's coefficients for inputs restricted to `lo..hi` (which must contain
    /// every tap Pillow uses).
    fn new(coeffs: &[(usize, Vec<f64>)], lo: usize, hi: usize) -> Self {
        let widest = coeffs.iter().map(|(_, w)| w.len()).max().unwrap_or(0);
        let len = widest.min(hi - lo).max(1);
        let mut start = Vec::with_capacity(coeffs.len());
        let mut coef = vec![0i32; coeffs.len() * len];
        for (i, (xmin, w)) in coeffs.iter().enumerate() {
            let s = (*xmin).min(hi.saturating_sub(len)).max(lo);
            for (j, &k) in w.iter().enumerate() {
                coef[i * len + xmin + j - s] = quantise(k);
            }
            start.push(s - lo);
        }
        Self { len, start, coef }
    }
}

/// Everything that depends only on (shape, hash_size), computed once.
#[derive(Debug, Clone)]
struct Plan {
    width: usize,
    channels: usize,
    hash_size: usize,
    out_w: usize,
    /// Source rows `row0..row1` are the only ones the resize reads.
    row0: usize,
    row1: usize,
    horizontal: Option<Kernel>,
    vertical: Option<Kernel>,
    /// Pass order when both passes run.
    vertical_first: bool,
}

/// `ImagingResampleHorizontal_8bpc` on rows of `width` grey values, appended to `out`.
#[inline(always)]
fn horizontal_pass(k: &Kernel, input: &[i32], width: usize, out: &mut Vec<i32>) {
    out.clear();
    for row in input.chunks_exact(width) {
        for (&st, coef) in k.start.iter().zip(k.coef.chunks_exact(k.len)) {
            let px = &row[st..st + k.len];
            let mut sum: i32 = 1 << (PRECISION_BITS - 1);
            for (&p, &q) in px.iter().zip(coef) {
                sum = sum.wrapping_add(p.wrapping_mul(q));
            }
            out.push(clip8(sum));
        }
    }
}

/// `ImagingResampleVertical_8bpc` on rows of `width` grey values, into `out`.
#[inline(always)]
fn vertical_pass(k: &Kernel, input: &[i32], width: usize, out: &mut Vec<i32>, acc: &mut Vec<i32>) {
    out.clear();
    for (&st, coef) in k.start.iter().zip(k.coef.chunks_exact(k.len)) {
        acc.clear();
        acc.resize(width, 1 << (PRECISION_BITS - 1));
        for (j, &q) in coef.iter().enumerate() {
            let r = &input[(st + j) * width..(st + j + 1) * width];
            for (a, &p) in acc.iter_mut().zip(r) {
                *a = a.wrapping_add(p.wrapping_mul(q));
            }
        }
        for &v in acc.iter() {
            out.push(clip8(v));
        }
    }
}

/// Per-thread buffers reused between images.
#[derive(Debug, Default)]
struct Scratch {
    grey: Vec<i32>,
    mid: Vec<i32>,
    small: Vec<i32>,
    acc: Vec<i32>,
    t_in: Vec<i32>,
    t_out: Vec<i32>,
}

/// Pillow's `L24(rgb) >> 16` (ITU-R 601-2 luma in 16-bit fixed point).
#[inline(always)]
fn luma(r: u8, g: u8, b: u8) -> i32 {
    ((u32::from(r) * 19595 + u32::from(g) * 38470 + u32::from(b) * 7471 + 0x8000) >> 16) as i32
}

/// `out` = `input` (`rows` x `cols`, row-major) transposed.
#[inline(always)]
fn transpose(input: &[i32], rows: usize, cols: usize, out: &mut Vec<i32>) {
    out.clear();
    out.resize(rows * cols, 0);
    for (r, line) in input.chunks_exact(cols).enumerate() {
        for (c, &v) in line.iter().enumerate() {
            out[c * rows + r] = v;
        }
    }
}

impl Plan {
    /// `None` when the image has no pixels or the hash no bits (the hash is then all zeros).
    fn new(shape: Shape, hash_size: u32) -> Option<Self> {
        let (h, w) = (shape.height as usize, shape.width as usize);
        let hs = hash_size as usize;
        if h == 0 || w == 0 || shape.channels == 0 || hs == 0 {
            return None;
        }
        let (out_w, out_h) = (hs + 1, hs);
        let vcoeffs = pillow_coeffs(h, out_h);
        let row0 = vcoeffs.iter().map(|(m, _)| *m).min().unwrap_or(0);
        let row1 = vcoeffs
            .iter()
            .map(|(m, k)| m + k.len())
            .max()
            .unwrap_or(h)
            .max(row0 + 1);
        let horizontal = (out_w != w).then(|| Kernel::new(&pillow_coeffs(w, out_w), 0, w));
        let vertical = (out_h != h).then(|| Kernel::new(&vcoeffs, row0, row1));
        // Pillow (13.0, Resample.c) runs the vertical pass first when the height shrinks by
        // more than twice as many pixels as the width.
        let shrink_h = h as i64 - out_h as i64;
        let vertical_first = shrink_h > 0 && shrink_h > (w as i64 - out_w as i64) * 2;
        Some(Self {
            vertical_first,
            width: w,
            channels: shape.channels as usize,
            hash_size: hs,
            out_w,
            row0,
            row1,
            horizontal,
            vertical,
        })
    }

    fn hash_into(&self, image: &[u8], s: &mut Scratch, out: &mut [u8]) {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { self.hash_into_avx2(image, s, out) };
            return;
        }
        self.hash_into_generic(image, s, out);
    }

    /// The same code compiled for AVX2, where the i32 multiply-adds vectorise 8 wide (the
    /// x86-64 baseline has no packed 32-bit multiply).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn hash_into_avx2(&self, image: &[u8], s: &mut Scratch, out: &mut [u8]) {
        self.hash_into_generic(image, s, out);
    }

    #[inline(always)]
    fn hash_into_generic(&self, image: &[u8], s: &mut Scratch, out: &mut [u8]) {
        let (w, c) = (self.width, self.channels);

        // convert("L") on the rows the resize reads. Plain loops rather than `extend`, so
        // that everything is inlined into (and vectorised for) the AVX2 copy.
        let src = &image[self.row0 * w * c..self.row1 * w * c];
        s.grey.clear();
        s.grey.resize((self.row1 - self.row0) * w, 0);
        match c {
            1 => {
                for (g, &v) in s.grey.iter_mut().zip(src) {
                    *g = i32::from(v);
                }
            }
            2 => {
                for (g, p) in s.grey.iter_mut().zip(src.chunks_exact(2)) {
                    *g = i32::from(p[0]);
                }
            }
            // Its own arm so that the chunk length is a constant the compiler can vectorise.
            3 => {
                for (g, p) in s.grey.iter_mut().zip(src.chunks_exact(3)) {
                    *g = luma(p[0], p[1], p[2]);
                }
            }
            _ => {
                for (g, p) in s.grey.iter_mut().zip(src.chunks_exact(c)) {
                    *g = luma(p[0], p[1], p[2]);
                }
            }
        }

        let Scratch {
            grey,
            mid,
            small,
            acc,
            t_in,
            t_out,
        } = s;
        let small: &[i32] = match (&self.horizontal, &self.vertical) {
            (None, None) => grey,
            (Some(hk), None) => {
                horizontal_pass(hk, grey, w, small);
                small
            }
            (None, Some(vk)) => {
                vertical_pass(vk, grey, w, small, acc);
                small
            }
            (Some(hk), Some(vk)) if self.vertical_first => {
                vertical_pass(vk, grey, w, mid, acc);
                horizontal_pass(hk, mid, w, small);
                small
            }
            (Some(hk), Some(vk)) => {
                // Same arithmetic as horizontal then vertical, on transposed data: each pass
                // then adds whole contiguous lines scaled by one weight (vectorises well)
                // instead of ending every output in a horizontal reduction.
                let nrows = self.row1 - self.row0;
                transpose(grey, nrows, w, t_in);
                vertical_pass(hk, t_in, nrows, mid, acc);
                horizontal_pass(vk, mid, nrows, t_out);
                transpose(t_out, self.out_w, self.hash_size, small);
                small
            }
        };

        let ow = self.out_w;
        out.fill(0);
        let hs = self.hash_size;
        for r in 0..hs {
            let line = &small[r * ow..(r + 1) * ow];
            for col in 0..hs {
                if line[col + 1] > line[col] {
                    let bit = r * hs + col;
                    out[bit / 8] |= 0x80 >> (bit % 8);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// splitmix64, mirrored by tests/fixtures/imagehash/generate.py.
    struct SplitMix64(u64);

    impl SplitMix64 {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> i64 {
            (self.next() % n) as i64
        }
    }

    const SIZES: [(u32, u32, u32); 16] = [
        (56, 56, 3),
        (56, 56, 3),
        (56, 56, 1),
        (64, 64, 1),
        (37, 23, 3),
        (23, 37, 1),
        (8, 9, 1),
        (8, 9, 3),
        (16, 9, 3),
        (8, 30, 1),
        (5, 7, 3),
        (3, 4, 1),
        (100, 80, 3),
        (61, 47, 1),
        (128, 128, 3),
        (9, 8, 1),
    ];
    const HASH_SIZES: [u32; 10] = [8, 8, 8, 8, 8, 8, 4, 5, 7, 16];

    /// The Python script's `generated_image`, step for step.
    fn generated_image(index: u64) -> (Vec<u8>, Shape, u32) {
        let mut rng = SplitMix64(index.wrapping_mul(0x100_0000_01B3).wrapping_add(12345));
        let (h, w, c) = SIZES[rng.below(SIZES.len() as u64) as usize];
        let hash_size = HASH_SIZES[rng.below(HASH_SIZES.len() as u64) as usize];
        let kind = rng.below(8);
        let chans: Vec<(i64, i64, i64)> = (0..c)
            .map(|_| {
                let base = rng.below(256);
                let gx = rng.below(33) - 16;
                let gy = rng.below(33) - 16;
                if kind == 0 {
                    (base, 0, 0)
                } else {
                    (base, gx, gy)
                }
            })
            .collect();
        let nb = if kind == 0 { 0 } else { rng.below(5) };
        let blobs: Vec<(i64, i64, i64, Vec<i64>)> = (0..nb)
            .map(|_| {
                let cx = rng.below(u64::from(w));
                let cy = rng.below(u64::from(h));
                let r2 = 1 + rng.below(u64::from(h * w));
                let amps = (0..c).map(|_| rng.below(513) - 256).collect();
                (cx, cy, r2, amps)
            })
            .collect();
        let na = if kind == 0 {
            rng.below(3)
        } else {
            rng.below(24)
        };
        let mut px = Vec::with_capacity((h * w * c) as usize);
        for y in 0..i64::from(h) {
            for x in 0..i64::from(w) {
                for (ch, &(base, gx, gy)) in chans.iter().enumerate() {
                    let mut acc = base * 256 + gx * x * 64 + gy * y * 64;
                    for (cx, cy, r2, amps) in &blobs {
                        let d2 = (x - cx) * (x - cx) + (y - cy) * (y - cy);
                        let a = amps[ch];
                        let term = a.abs() * 256 * r2 / (r2 + d2);
                        acc += if a >= 0 { term } else { -term };
                    }
                    let mut v = acc >> 8;
                    if na > 0 {
                        v += rng.below((2 * na + 1) as u64) - na;
                    }
                    px.push(v.clamp(0, 255) as u8);
                }
            }
        }
        (px, Shape::new(h, w, c), hash_size)
    }

    /// imagehash's hex (an integer, zero-padded to whole hex digits) as our packed bytes.
    fn imagehash_hex_to_bits(hex: &str, nbits: usize) -> Vec<u8> {
        let all: Vec<bool> = hex
            .chars()
            .flat_map(|ch| {
                let v = ch.to_digit(16).unwrap();
                (0..4).rev().map(move |b| (v >> b) & 1 == 1)
            })
            .collect();
        let bits = &all[all.len() - nbits..];
        let mut out = vec![0u8; nbits.div_ceil(8)];
        for (i, _) in bits.iter().enumerate().filter(|(_, b)| **b) {
            out[i / 8] |= 0x80 >> (i % 8);
        }
        out
    }

    fn fixture(name: &str) -> String {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/imagehash")
            .join(name);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// Counts of distances 0, 1, 2 and worse.
    #[derive(Debug, Default)]
    struct Tally([usize; 4]);

    impl Tally {
        fn add(&mut self, d: u32) {
            self.0[(d as usize).min(3)] += 1;
        }
        /// Asserts at least `min_identical` of the hashes are identical and none is more
        /// than 2 bits away.
        fn check(&self, what: &str, min_identical: f64) {
            let n: usize = self.0.iter().sum();
            let [same, one, two, worse] = self.0;
            println!(
                "{what}: {n} images, identical {same}, within 1 {}, within 2 {}, worse {worse}",
                same + one,
                same + one + two
            );
            assert!(
                n >= 1000 || what.starts_with("generated"),
                "{what}: only {n} images"
            );
            assert_eq!(
                worse, 0,
                "{what}: {worse} hashes differ by more than 2 bits"
            );
            assert!(
                same as f64 >= min_identical * n as f64,
                "{what}: only {same}/{n} identical"
            );
        }
    }

    #[test]
    fn generated_images_match_imagehash() {
        let text = fixture("generated.csv");
        let mut tally = Tally::default();
        let mut rows = 0;
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let index: u64 = f[0].parse().unwrap();
            let (px, shape, hs) = generated_image(index);
            let expect_shape: Vec<u32> = f[1..5].iter().map(|v| v.parse().unwrap()).collect();
            assert_eq!(
                [shape.height, shape.width, shape.channels, hs].as_slice(),
                expect_shape,
                "image {index}: generator out of step with the Python script"
            );
            let ours = dhash(&px, shape, hs);
            let theirs = imagehash_hex_to_bits(f[5], (hs * hs) as usize);
            let d = hamming(&ours, &theirs);
            if d != 0 {
                println!("generated {index} ({shape}, hash_size {hs}): hamming {d}");
            }
            tally.add(d);
            if hs == 8 {
                assert!(d != 0 || to_hex(&ours) == f[5]);
            }
            rows += 1;
        }
        assert!(rows >= 600, "{rows} generated rows");
        tally.check("generated", 0.995);
    }

    #[test]
    #[ignore = "needs the SMILE faces in ../shared/data/smile (run with --include-ignored)"]
    fn smile_jpegs_match_imagehash() {
        let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/smile");
        assert!(
            dir.join("images").is_dir(),
            "{} is absent: the real faces this test compares with imagehash",
            dir.display()
        );
        let text = fixture("smile.csv");
        let mut tally = Tally::default();
        for line in text.lines().skip(1) {
            let (name, hex) = line.split_once(',').unwrap();
            let bytes = std::fs::read(dir.join("images").join(name)).unwrap();
            let img = crate::jpeg::decode(&bytes).unwrap();
            let (px, shape) = match img {
                image::DynamicImage::ImageLuma8(g) => {
                    let shape = Shape::new(g.height(), g.width(), 1);
                    (g.into_raw(), shape)
                }
                other => {
                    let rgb = other.to_rgb8();
                    let shape = Shape::new(rgb.height(), rgb.width(), 3);
                    (rgb.into_raw(), shape)
                }
            };
            let ours = dhash(&px, shape, 8);
            let d = hamming(&ours, &imagehash_hex_to_bits(hex, 64));
            tally.add(d);
        }
        // Decoded with libjpeg-turbo's decoder (data::jpeg), as Pillow does: 1013/1013
        // identical. (The `image` crate's zune-jpeg gave 993/1013, all within 1 bit.)
        tally.check("smile JPEGs", 0.995);
    }

    #[test]
    fn hex_hamming_and_sizes() {
        assert_eq!(to_hex(&[0x0f, 0xa0]), "0fa0");
        assert_eq!(hamming(&[0xff, 0x01], &[0x0f, 0x03]), 5);
        assert_eq!(hamming(&[0xff], &[0xff, 0x81]), 2);
        assert_eq!(dhash_bytes(8), 8);
        assert_eq!(dhash_bytes(5), 4);
        assert_eq!(dhash(&[], Shape::new(0, 0, 3), 8), vec![0; 8]);
        // A left-to-right ramp sets every bit; its mirror none.
        let ramp: Vec<u8> = (0..32 * 32).map(|i| (i % 32 * 8) as u8).collect();
        assert_eq!(
            to_hex(&dhash(&ramp, Shape::new(32, 32, 1), 8)),
            "ffffffffffffffff"
        );
        let back: Vec<u8> = ramp.iter().map(|v| 255 - v).collect();
        assert_eq!(
            to_hex(&dhash(&back, Shape::new(32, 32, 1), 8)),
            "0000000000000000"
        );
    }

    #[test]
    fn dhash_all_matches_single_hashes() {
        let shape = Shape::new(56, 56, 3);
        let mut pixels = Vec::new();
        let n = 300;
        for i in 0..n {
            let mut rng = SplitMix64(i);
            pixels.extend((0..shape.image_len()).map(|_| rng.next() as u8));
        }
        let names = (0..n).map(|i| format!("#{i}")).collect();
        let ds = Dataset::new(shape, pixels, None, names);
        let all = dhash_all(&ds, 8);
        assert_eq!(all.len(), n as usize * 8);
        for i in 0..n as usize {
            assert_eq!(
                &all[i * 8..(i + 1) * 8],
                dhash(ds.image(i), shape, 8).as_slice()
            );
        }
    }
}
