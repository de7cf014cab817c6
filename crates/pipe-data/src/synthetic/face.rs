//! A face's drawn attributes.

use super::Rule;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The drawn attributes of one face (geometry in pixels of the rendered image).
#[derive(Debug, Clone, PartialEq)]
pub struct Face {
    pub glasses: bool,
    pub light_hair: bool,
    pub smile: bool,
    pub long_hair: bool,
    pub(super) skin: [u8; 3],
    pub(super) hair: [u8; 3],
    pub(super) frame: [u8; 3],
    pub(super) lens_tint: bool,
    pub(super) eyebrow: [u8; 3],
    pub(super) iris: [u8; 3],
    pub(super) lips: [u8; 3],
    pub(super) shirt: [u8; 3],
    pub(super) bg: [[u8; 3]; 2],
    /// 0 flat, 1 vertical, 2 horizontal, 3 diagonal gradient.
    pub(super) bg_dir: u8,
    pub(super) cx: f32,
    pub(super) cy: f32,
    pub(super) head_rx: f32,
    pub(super) head_ry: f32,
    /// Hair-cap edge, as a fraction of `head_ry` above the head centre.
    pub(super) fringe: f32,
    /// Long hair length below the head centre, as a fraction of `head_ry`.
    pub(super) hair_len: f32,
    /// Horizontal position of the hair parting, as a fraction of `head_rx` from the centre.
    pub(super) parting: f32,
    /// Mouth-centre depth below the corners, in pixels (> 0 smiles).
    pub(super) mouth_curve: f32,
    pub(super) mouth_half_width: f32,
    pub(super) brow_tilt: f32,
    pub(super) noise_amp: u8,
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
pub(super) fn sample_face(rng: &mut ChaCha8Rng, rule: Rule, w: u32, h: u32) -> Face {
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
