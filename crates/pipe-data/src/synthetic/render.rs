//! A face's attributes → pixels: drawn back to front on a [`Canvas`], then converted to the
//! image's channels and noised.

use super::canvas::Canvas;
use super::face::Face;
use rand::RngCore;
use rand_chacha::ChaCha8Rng;

/// Renders a face to HWC `u8` pixels (`channels` 1 or 3), with pixel noise from `rng`.
pub(super) fn render(face: &Face, w: u32, h: u32, channels: u32, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut c = Canvas::new(w as usize, h as usize);
    let s = (w.min(h)) as f32;
    c.gradient(face.bg, face.bg_dir);
    draw_body(&mut c, face, s);
    draw_hair_cap(&mut c, face, s);
    draw_eyes(&mut c, face, s);
    draw_nose_and_mouth(&mut c, face, s);
    if face.glasses {
        draw_glasses(&mut c, face, s);
    }
    let mut out = to_channels(&c, channels);
    add_noise(&mut out, face.noise_amp, rng);
    out
}

/// The width of thin strokes (hair edges, nose, brows, mouth) for an image of side `s`.
fn thin(s: f32) -> f32 {
    (0.024 * s).max(1.0)
}

/// The eyes' height and their horizontal distance from the head's centre.
fn eyes(f: &Face) -> (f32, f32) {
    (f.cy - 0.2 * f.head_ry, 0.44 * f.head_rx)
}

/// Shoulders, long hair behind the head, neck, head.
fn draw_body(c: &mut Canvas, f: &Face, s: f32) {
    let (hrx, hry) = (f.head_rx, f.head_ry);
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
}

/// Hair cap over the top of the head. A darker rim, fringe edge and parting make light hair
/// stand out against light skin.
fn draw_hair_cap(c: &mut Canvas, f: &Face, s: f32) {
    let (hrx, hry) = (f.head_rx, f.head_ry);
    let thin = thin(s);
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
}

/// Eyes (white, iris) and eyebrows, relative to the head.
fn draw_eyes(c: &mut Canvas, f: &Face, s: f32) {
    let (hrx, hry) = (f.head_rx, f.head_ry);
    let (ey, es) = eyes(f);
    for side in [-1.0f32, 1.0] {
        let ex = f.cx + side * es;
        c.ellipse(ex, ey, 0.2 * hrx, 0.1 * hry, [245, 245, 240], f32::MAX);
        c.ellipse(ex, ey, 0.1 * hrx, 0.1 * hrx, f.iris, f32::MAX);
        let by = ey - 0.3 * hry;
        c.segment(
            (ex - 0.2 * hrx, by + side * f.brow_tilt * 0.5),
            (ex + 0.2 * hrx, by - side * f.brow_tilt * 0.5),
            thin(s) * 1.1,
            f.eyebrow,
        );
    }
}

/// The nose, and the mouth as a curve of short segments (curving up when smiling).
fn draw_nose_and_mouth(c: &mut Canvas, f: &Face, s: f32) {
    let (hrx, hry) = (f.head_rx, f.head_ry);
    let thin = thin(s);
    let (ey, _) = eyes(f);
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
}

/// Lenses (optionally tinted), frames, temple arms and the bridge.
fn draw_glasses(c: &mut Canvas, f: &Face, s: f32) {
    let (hrx, hry) = (f.head_rx, f.head_ry);
    let (ey, es) = eyes(f);
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

/// The canvas as HWC bytes: RGB, or greyscale by ITU-R 601 luma (rounded).
fn to_channels(c: &Canvas, channels: u32) -> Vec<u8> {
    if channels == 1 {
        c.px.iter()
            .map(|p| {
                ((299 * p[0] as u32 + 587 * p[1] as u32 + 114 * p[2] as u32 + 500) / 1000) as u8
            })
            .collect()
    } else {
        c.px.iter().flatten().copied().collect()
    }
}

/// Adds uniform noise in `[-amp, amp]` to every byte, from one block of `rng`'s bytes.
fn add_noise(out: &mut [u8], amp: u8, rng: &mut ChaCha8Rng) {
    let mut noise = vec![0u8; out.len()];
    rng.fill_bytes(&mut noise);
    let amp = amp as i32;
    let span = (2 * amp + 1) as u32;
    for (v, n) in out.iter_mut().zip(&noise) {
        let d = ((*n as u32 * span) >> 8) as i32 - amp;
        *v = (*v as i32 + d).clamp(0, 255) as u8;
    }
}
