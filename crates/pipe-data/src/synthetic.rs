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

use crate::dataset::{MAX_IMAGES, MAX_SIDE, check_size};
use crate::dhash::dhash;
use crate::{Dataset, Shape};
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};

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

/// The drawn attributes of one face (geometry in pixels of the rendered image).
#[derive(Debug, Clone, PartialEq)]
pub struct Face {
    pub glasses: bool,
    pub light_hair: bool,
    pub smile: bool,
    pub long_hair: bool,
    skin: [u8; 3],
    hair: [u8; 3],
    frame: [u8; 3],
    lens_tint: bool,
    eyebrow: [u8; 3],
    iris: [u8; 3],
    lips: [u8; 3],
    shirt: [u8; 3],
    bg: [[u8; 3]; 2],
    /// 0 flat, 1 vertical, 2 horizontal, 3 diagonal gradient.
    bg_dir: u8,
    cx: f32,
    cy: f32,
    head_rx: f32,
    head_ry: f32,
    /// Hair-cap edge, as a fraction of `head_ry` above the head centre.
    fringe: f32,
    /// Long hair length below the head centre, as a fraction of `head_ry`.
    hair_len: f32,
    /// Horizontal position of the hair parting, as a fraction of `head_rx` from the centre.
    parting: f32,
    /// Mouth-centre depth below the corners, in pixels (> 0 smiles).
    mouth_curve: f32,
    mouth_half_width: f32,
    brow_tilt: f32,
    noise_amp: u8,
}

fn luminance(c: [u8; 3]) -> f32 {
    0.299 * c[0] as f32 + 0.587 * c[1] as f32 + 0.114 * c[2] as f32
}

fn jitter(rng: &mut ChaCha8Rng, c: [u8; 3], amount: i32) -> [u8; 3] {
    c.map(|v| (v as i32 + rng.random_range(-amount..=amount)).clamp(0, 255) as u8)
}

/// A palette colour, jittered by up to `amount` per channel.
fn pick(rng: &mut ChaCha8Rng, palette: &[[u8; 3]], amount: i32) -> [u8; 3] {
    let c = palette[rng.random_range(0..palette.len())];
    jitter(rng, c, amount)
}

const SKIN: [[u8; 3]; 6] = [
    [250, 222, 196],
    [238, 194, 160],
    [224, 172, 132],
    [198, 136, 98],
    [170, 115, 80],
    [142, 96, 68],
];
/// Dark hair: luminance kept below 80.
const DARK_HAIR: [[u8; 3]; 5] = [
    [24, 20, 20],
    [52, 36, 26],
    [78, 52, 34],
    [42, 42, 46],
    [92, 58, 30],
];
/// Light hair: luminance kept above 150.
const LIGHT_HAIR: [[u8; 3]; 5] = [
    [242, 222, 160],
    [232, 196, 118],
    [216, 186, 142],
    [224, 224, 218],
    [228, 162, 100],
];
const FRAMES: [[u8; 3]; 6] = [
    [15, 15, 15],
    [72, 40, 20],
    [160, 22, 32],
    [22, 40, 128],
    [205, 205, 215],
    [215, 172, 58],
];
const IRIS: [[u8; 3]; 4] = [[60, 40, 25], [40, 80, 140], [50, 110, 60], [25, 25, 25]];

/// Draws a face's attributes for an image of `w` x `h` pixels.
fn sample_face(rng: &mut ChaCha8Rng, rule: Rule, w: u32, h: u32) -> Face {
    let p = rule.attribute_probability();
    let glasses = rng.random_bool(p);
    let smile = rng.random_bool(p);
    let light_hair = rng.random_bool(0.5);
    let long_hair = rng.random_bool(0.5);
    let (w, h) = (w as f32, h as f32);
    let s = w.min(h);

    let skin = pick(rng, &SKIN, 8);
    let hair = loop {
        let c = if light_hair {
            pick(rng, &LIGHT_HAIR, 14)
        } else {
            pick(rng, &DARK_HAIR, 14)
        };
        let l = luminance(c);
        if (light_hair && l > 150.0) || (!light_hair && l < 80.0) {
            break c;
        }
    };
    // Frames must stand out from the skin so glasses stay visible in greyscale too.
    let frame = loop {
        let c = pick(rng, &FRAMES, 10);
        if (luminance(c) - luminance(skin)).abs() >= 70.0 {
            break c;
        }
    };
    let scale = rng.random_range(0.9..1.1f32);
    let aspect = rng.random_range(0.95..1.1f32);
    let head_rx = 0.25 * s * scale * aspect;
    let head_ry = 0.31 * s * scale;
    let cx = 0.5 * w + rng.random_range(-0.05..0.05f32) * s;
    let cy = 0.52 * h + rng.random_range(-0.04..0.04f32) * s;
    let bg0 = [0; 3].map(|_: u8| rng.random_range(30..=225u8));
    let bg1 = jitter(rng, bg0, 40);
    Face {
        glasses,
        light_hair,
        smile,
        long_hair,
        skin,
        hair,
        frame,
        lens_tint: rng.random_bool(0.3),
        eyebrow: jitter(rng, [70, 50, 38], 25),
        iris: pick(rng, &IRIS, 10),
        lips: jitter(rng, [160, 60, 65], 20),
        shirt: [0; 3].map(|_: u8| rng.random_range(20..=235u8)),
        bg: [bg0, bg1.map(|v| v.clamp(20, 235))],
        bg_dir: rng.random_range(0..4),
        cx,
        cy,
        head_rx,
        head_ry,
        fringe: rng.random_range(0.42..0.62),
        hair_len: rng.random_range(0.45..0.95),
        parting: rng.random_range(-0.35..0.35),
        mouth_curve: if smile {
            rng.random_range(0.035..0.06f32) * s
        } else {
            rng.random_range(-0.025..0.008f32) * s
        },
        mouth_half_width: rng.random_range(0.28..0.4f32) * head_rx,
        brow_tilt: rng.random_range(-0.015..0.02f32) * s,
        noise_amp: rng.random_range(2..=6),
    }
}

/// An RGB canvas with simple aliased rasterisation (pixel centres tested against shapes).
struct Canvas {
    w: usize,
    h: usize,
    px: Vec<[u8; 3]>,
}

impl Canvas {
    fn new(w: usize, h: usize) -> Self {
        Self {
            w,
            h,
            px: vec![[0; 3]; w * h],
        }
    }

    /// Calls `f(x, y, pixel)` for every pixel whose centre lies in the box (clipped).
    fn for_box(
        &mut self,
        (x0, y0, x1, y1): (f32, f32, f32, f32),
        mut f: impl FnMut(f32, f32, &mut [u8; 3]),
    ) {
        let clip = |v: f32, n: usize| (v.max(0.0) as usize).min(n);
        let (xa, xb) = (clip(x0.floor(), self.w), clip(x1.ceil() + 1.0, self.w));
        let (ya, yb) = (clip(y0.floor(), self.h), clip(y1.ceil() + 1.0, self.h));
        for y in ya..yb {
            for x in xa..xb {
                f(x as f32 + 0.5, y as f32 + 0.5, &mut self.px[y * self.w + x]);
            }
        }
    }

    fn gradient(&mut self, c: [[u8; 3]; 2], dir: u8) {
        let (w, h) = (self.w as f32, self.h as f32);
        self.for_box((0.0, 0.0, w, h), |x, y, p| {
            let t = match dir {
                1 => y / h,
                2 => x / w,
                3 => (x / w + y / h) / 2.0,
                _ => 0.0,
            };
            *p = [0, 1, 2].map(|k| (c[0][k] as f32 * (1.0 - t) + c[1][k] as f32 * t) as u8);
        });
    }

    /// Filled ellipse; only pixels with centre `y < y_max` are painted.
    fn ellipse(&mut self, cx: f32, cy: f32, rx: f32, ry: f32, col: [u8; 3], y_max: f32) {
        self.for_box((cx - rx, cy - ry, cx + rx, cy + ry), |x, y, p| {
            let (u, v) = ((x - cx) / rx, (y - cy) / ry);
            if u * u + v * v <= 1.0 && y < y_max {
                *p = col;
            }
        });
    }

    /// Ellipse interior blended towards `col` by `alpha`.
    fn tint_ellipse(&mut self, cx: f32, cy: f32, rx: f32, ry: f32, col: [u8; 3], alpha: f32) {
        self.for_box((cx - rx, cy - ry, cx + rx, cy + ry), |x, y, p| {
            let (u, v) = ((x - cx) / rx, (y - cy) / ry);
            if u * u + v * v <= 1.0 {
                *p = [0, 1, 2].map(|k| (p[k] as f32 * (1.0 - alpha) + col[k] as f32 * alpha) as u8);
            }
        });
    }

    /// Elliptical ring of the given thickness (outer radii `rx`, `ry`).
    fn ring(&mut self, cx: f32, cy: f32, rx: f32, ry: f32, t: f32, col: [u8; 3]) {
        let (irx, iry) = ((rx - t).max(0.1), (ry - t).max(0.1));
        self.for_box((cx - rx, cy - ry, cx + rx, cy + ry), |x, y, p| {
            let (u, v) = ((x - cx) / rx, (y - cy) / ry);
            let (a, b) = ((x - cx) / irx, (y - cy) / iry);
            if u * u + v * v <= 1.0 && a * a + b * b > 1.0 {
                *p = col;
            }
        });
    }

    fn rect(&mut self, x0: f32, y0: f32, x1: f32, y1: f32, col: [u8; 3]) {
        self.for_box((x0, y0, x1, y1), |x, y, p| {
            if x >= x0 && x < x1 && y >= y0 && y < y1 {
                *p = col;
            }
        });
    }

    /// Segment of thickness `t` (pixels whose centre is within `t / 2`).
    fn segment(&mut self, (x0, y0): (f32, f32), (x1, y1): (f32, f32), t: f32, col: [u8; 3]) {
        let r = t / 2.0;
        let (dx, dy) = (x1 - x0, y1 - y0);
        let len2 = (dx * dx + dy * dy).max(1e-6);
        let bbox = (
            x0.min(x1) - r,
            y0.min(y1) - r,
            x0.max(x1) + r,
            y0.max(y1) + r,
        );
        self.for_box(bbox, |x, y, p| {
            let s = (((x - x0) * dx + (y - y0) * dy) / len2).clamp(0.0, 1.0);
            let (ex, ey) = (x - x0 - s * dx, y - y0 - s * dy);
            if ex * ex + ey * ey <= r * r {
                *p = col;
            }
        });
    }
}

/// Renders a face to HWC `u8` pixels (`channels` 1 or 3), with pixel noise from `rng`.
fn render(face: &Face, w: u32, h: u32, channels: u32, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut c = Canvas::new(w as usize, h as usize);
    let s = (w.min(h)) as f32;
    let f = face;
    let (hrx, hry) = (f.head_rx, f.head_ry);
    let thin = (0.024 * s).max(1.0);

    c.gradient(f.bg, f.bg_dir);
    // Shoulders, long hair behind the head, neck.
    c.ellipse(
        f.cx,
        f.cy + hry + 0.22 * s,
        0.44 * s,
        0.24 * s,
        f.shirt,
        f32::MAX,
    );
    if f.long_hair {
        let (rx, top) = (hrx * 1.22, f.cy - 0.02 * s);
        c.ellipse(f.cx, top, rx, hry * 1.1, f.hair, f32::MAX);
        c.rect(f.cx - rx, f.cy, f.cx + rx, f.cy + hry * f.hair_len, f.hair);
    }
    c.rect(
        f.cx - 0.38 * hrx,
        f.cy,
        f.cx + 0.38 * hrx,
        f.cy + hry + 0.1 * s,
        f.skin,
    );
    c.ellipse(f.cx, f.cy, hrx, hry, f.skin, f32::MAX);
    // Hair cap over the top of the head.
    // A darker rim, fringe edge and parting make light hair stand out against light skin.
    let fringe_y = f.cy - f.fringe * hry;
    let shade = f.hair.map(|v| (v as f32 * 0.72) as u8);
    let (cap_cy, cap_rx, cap_ry) = (f.cy - 0.03 * s, hrx * 1.07, hry * 1.04);
    c.ellipse(f.cx, cap_cy, cap_rx + 0.8, cap_ry + 0.8, shade, fringe_y);
    c.ellipse(f.cx, cap_cy, cap_rx, cap_ry, f.hair, fringe_y - thin);
    let v = (fringe_y - thin / 2.0 - cap_cy) / cap_ry;
    let half = cap_rx * (1.0 - v * v).max(0.0).sqrt();
    c.segment(
        (f.cx - half, fringe_y - thin / 2.0),
        (f.cx + half, fringe_y - thin / 2.0),
        thin,
        shade,
    );
    let part_x = f.cx + f.parting * hrx;
    c.segment(
        (part_x, cap_cy - 0.85 * cap_ry),
        (part_x, fringe_y - thin),
        thin,
        shade,
    );

    // Eyes, eyebrows, nose, mouth (all relative to the head).
    let ey = f.cy - 0.2 * hry;
    let es = 0.44 * hrx;
    for side in [-1.0f32, 1.0] {
        let ex = f.cx + side * es;
        c.ellipse(ex, ey, 0.2 * hrx, 0.1 * hry, [245, 245, 240], f32::MAX);
        c.ellipse(ex, ey, 0.1 * hrx, 0.1 * hrx, f.iris, f32::MAX);
        let by = ey - 0.3 * hry;
        c.segment(
            (ex - 0.2 * hrx, by + side * f.brow_tilt * 0.5),
            (ex + 0.2 * hrx, by - side * f.brow_tilt * 0.5),
            thin * 1.1,
            f.eyebrow,
        );
    }
    let nose = f.skin.map(|v| (v as f32 * 0.78) as u8);
    c.segment(
        (f.cx, ey + 0.12 * hry),
        (f.cx + 0.04 * hrx, f.cy + 0.22 * hry),
        thin,
        nose,
    );
    let my = f.cy + 0.52 * hry;
    let steps = 8;
    let mouth_pt = |i: i32| {
        let u = i as f32 / steps as f32 * 2.0 - 1.0;
        (
            f.cx + u * f.mouth_half_width,
            my + f.mouth_curve * (1.0 - u * u) - f.mouth_curve / 2.0,
        )
    };
    for i in 0..steps {
        c.segment(mouth_pt(i), mouth_pt(i + 1), thin * 1.2, f.lips);
    }

    if f.glasses {
        let (rx, ry) = (0.33 * hrx, 0.23 * hrx);
        let t = (0.028 * s).max(1.0);
        for side in [-1.0f32, 1.0] {
            let ex = f.cx + side * es;
            if f.lens_tint {
                c.tint_ellipse(ex, ey, rx, ry, f.frame, 0.3);
            }
            c.ring(ex, ey, rx, ry, t, f.frame);
            // Temple arm, kept inside the head so glasses never overlap hair.
            let v = (ey - f.cy) / hry;
            let edge = hrx * (1.0 - v * v).max(0.0).sqrt() * 0.93;
            c.segment(
                (ex + side * rx, ey),
                (f.cx + side * edge, ey - 0.02 * s),
                t,
                f.frame,
            );
        }
        c.segment((f.cx - es + rx, ey), (f.cx + es - rx, ey), t, f.frame);
    }

    let mut out: Vec<u8> = if channels == 1 {
        c.px.iter()
            .map(|p| {
                ((299 * p[0] as u32 + 587 * p[1] as u32 + 114 * p[2] as u32 + 500) / 1000) as u8
            })
            .collect()
    } else {
        c.px.iter().flatten().copied().collect()
    };
    let mut noise = vec![0u8; out.len()];
    rng.fill_bytes(&mut noise);
    let amp = f.noise_amp as i32;
    let span = (2 * amp + 1) as u32;
    for (v, n) in out.iter_mut().zip(&noise) {
        let d = ((*n as u32 * span) >> 8) as i32 - amp;
        *v = (*v as i32 + d).clamp(0, 255) as u8;
    }
    out
}

/// A 64-bit seed from several words (splitmix64 finaliser over a running mix).
fn mix(words: &[u64]) -> u64 {
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
const STREAM_PLAN: u64 = 2;
const STREAM_NEAR: u64 = 3;

/// One base image: its attributes, pixels and dHash.
struct Drawn {
    face: Face,
    pixels: Vec<u8>,
    hash: Vec<u8>,
}

/// Draws base image `index` (redraw number `attempt`); depends only on these and the config.
fn draw_base(cfg: &SyntheticConfig, index: usize, attempt: u32) -> Drawn {
    let mut rng =
        ChaCha8Rng::seed_from_u64(mix(&[cfg.seed, STREAM_BASE, index as u64, attempt as u64]));
    let face = sample_face(&mut rng, cfg.rule, cfg.width, cfg.height);
    let pixels = render(&face, cfg.width, cfg.height, cfg.channels, &mut rng);
    let hash = dhash(&pixels, cfg.shape(), TRUTH_HASH_SIZE);
    Drawn { face, pixels, hash }
}

/// A base image rendered for display (e.g. example grids), with its attributes.
pub fn draw_face(cfg: &SyntheticConfig, index: usize) -> (Face, Vec<u8>) {
    let d = draw_base(cfg, index, 0);
    (d.face, d.pixels)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plant {
    Exact,
    Near,
    ConflictExact,
    ConflictNear,
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

/// Everything [`generate`] computes, with the per-base attributes kept for tests.
#[cfg_attr(not(test), allow(dead_code))]
struct Generated {
    dataset: Dataset,
    truth: SyntheticTruth,
    /// Attributes of base image `i` (named `syn_{i:06}.png`).
    faces: Vec<Face>,
    /// Position in the dataset of each base image.
    base_pos: Vec<usize>,
    /// `(original base index, position of the copy, plant kind)`.
    copies: Vec<(usize, usize, Plant)>,
    /// How many near copies are JPEG re-encodes (the others are brightness shifts).
    jpeg_copies: usize,
}

/// Generates the synthetic dataset and its ground truth.
pub fn generate(cfg: &SyntheticConfig) -> Result<(Dataset, SyntheticTruth), SyntheticError> {
    generate_full(cfg).map(|g| (g.dataset, g.truth))
}

fn generate_full(cfg: &SyntheticConfig) -> Result<Generated, SyntheticError> {
    cfg.validate()?;
    let shape = cfg.shape();
    let n = cfg.count;

    let mut drawn: Vec<Drawn> = (0..n)
        .into_par_iter()
        .map(|i| draw_base(cfg, i, 0))
        .collect();
    // Distinct base hashes, so that duplicate groups are exactly the planted pairs. Sequential
    // so the redraws do not depend on scheduling.
    let mut seen: HashMap<Vec<u8>, usize> = HashMap::with_capacity(n);
    for (i, d) in drawn.iter_mut().enumerate() {
        let mut attempt = 0;
        while seen.contains_key(&d.hash) {
            attempt += 1;
            if attempt > MAX_REDRAWS {
                return Err(SyntheticError::HashCollisions {
                    index: i,
                    count: n,
                    shape,
                });
            }
            *d = draw_base(cfg, i, attempt);
        }
        seen.insert(d.hash.clone(), i);
    }
    drop(seen);

    let mut labels: Vec<u8> = drawn.iter().map(|d| cfg.rule.label(&d.face)).collect();
    let mut plan = ChaCha8Rng::seed_from_u64(mix(&[cfg.seed, STREAM_PLAN]));
    let flips = (cfg.label_noise * n as f64).round() as usize;
    for i in rand::seq::index::sample(&mut plan, n, flips) {
        labels[i] ^= 1;
    }

    // Plants, each with its own original taken from a shuffled order of the base images.
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
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut plan);
    let mut pool: VecDeque<usize> = order.into();
    let mut jpeg_copies = 0;
    let near_rng =
        |orig: usize| ChaCha8Rng::seed_from_u64(mix(&[cfg.seed, STREAM_NEAR, orig as u64]));
    // (original, pixels, label, kind)
    let mut planted: Vec<(usize, Vec<u8>, u8, Plant)> = Vec::with_capacity(kinds.len());
    for (done, &kind) in kinds.iter().enumerate() {
        let exhausted = SyntheticError::NotEnoughOriginals {
            planted: done,
            wanted: kinds.len(),
        };
        let (orig, pixels) = match kind {
            Plant::Exact | Plant::ConflictExact => {
                let orig = pool.pop_front().ok_or(exhausted)?;
                (orig, drawn[orig].pixels.clone())
            }
            Plant::Near | Plant::ConflictNear => {
                let mut chosen = None;
                // Half the near copies are JPEG re-encodes where a nearby original allows it.
                if plan.random_bool(0.5) {
                    for k in 0..pool.len().min(JPEG_LOOKAHEAD) {
                        let orig = pool[k];
                        let src = &drawn[orig];
                        if let Some((px, _)) =
                            near_copy(&src.pixels, &src.hash, shape, &mut near_rng(orig), true)?
                        {
                            pool.remove(k);
                            jpeg_copies += 1;
                            chosen = Some((orig, px));
                            break;
                        }
                    }
                }
                while chosen.is_none() {
                    let Some(orig) = pool.pop_front() else {
                        return Err(exhausted);
                    };
                    let src = &drawn[orig];
                    chosen = near_copy(&src.pixels, &src.hash, shape, &mut near_rng(orig), false)?
                        .map(|(px, how)| {
                            if matches!(how, Perturbation::Jpeg(_)) {
                                jpeg_copies += 1;
                            }
                            (orig, px)
                        });
                }
                chosen.ok_or(exhausted)?
            }
        };
        let label = match kind {
            Plant::ConflictExact | Plant::ConflictNear => labels[orig] ^ 1,
            _ => labels[orig],
        };
        planted.push((orig, pixels, label, kind));
    }

    // Interleave: copies take a random subset of positions, in shuffled order.
    let p = planted.len();
    let total = n + p;
    let mut copy_positions: Vec<usize> = rand::seq::index::sample(&mut plan, total, p).into_vec();
    copy_positions.sort_unstable();
    let mut copy_order: Vec<usize> = (0..p).collect();
    copy_order.shuffle(&mut plan);
    let mut slot: Vec<Option<usize>> = vec![None; total];
    for (&pos, &k) in copy_positions.iter().zip(&copy_order) {
        slot[pos] = Some(k);
    }

    let len = shape.image_len();
    let mut pixels = Vec::with_capacity(total * len);
    let mut out_labels = Vec::with_capacity(total);
    let mut names = Vec::with_capacity(total);
    let mut base_pos = vec![0; n];
    let mut copies = Vec::with_capacity(p);
    let mut next_base = 0;
    // Base images are consumed in order, so their pixels are freed as the dataset fills.
    let mut faces = Vec::with_capacity(n);
    let mut bases = drawn.into_iter();
    for (pos, s) in slot.iter().enumerate() {
        match *s {
            Some(k) => {
                let (orig, px, label, kind) = &planted[k];
                pixels.extend_from_slice(px);
                out_labels.push(*label);
                names.push(format!("syn_{orig:06}_dup1.png"));
                copies.push((*orig, pos, *kind));
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

    let conflicting = cfg.conflicting_duplicates;
    let removed = p + conflicting;
    let truth = SyntheticTruth {
        base: n,
        exact_duplicates: cfg.exact_duplicates,
        near_duplicates: cfg.near_duplicates,
        conflicting_duplicates: conflicting,
        label_noise_flips: flips,
        total,
        duplicate_groups: p,
        images_in_duplicate_groups: 2 * p,
        conflicting_groups: conflicting,
        removed_by_filter: removed,
        clean: total - removed,
    };
    Ok(Generated {
        dataset: Dataset::new(shape, pixels, Some(out_labels), names),
        truth,
        faces,
        base_pos,
        copies,
        jpeg_copies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
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
