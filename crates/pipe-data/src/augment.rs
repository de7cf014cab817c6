//! Deterministic image augmentation with the semantics of Keras'
//! `ImageDataGenerator(rescale, rotation_range, zoom_range, width_shift_range,
//! height_shift_range, horizontal_flip, vertical_flip, fill_mode, cval)`, and conversion of
//! HWC `u8` images into the CHW `f32` planes a convolution takes.
//!
//! # How Keras does it (keras/src/legacy/preprocessing/image.py) and how this matches
//! - Random parameters: `theta ~ U(-rotation_range, rotation_range)` degrees; `zx`, `zy`
//!   each `~ U(1 - zoom_range, 1 + zoom_range)` independently; shifts `~ U(-range, range)`
//!   times the image size; each flip with probability 1/2. Here they come from a ChaCha8
//!   stream seeded by blake3 of `(seed, epoch, index)` only ([`draw`]), so an image's
//!   augmentation does not depend on batch order, thread count or anything drawn before.
//! - `apply_affine_transform` builds the *inverse* map (output pixel -> input position)
//!   `R(theta) · Shift(tx, ty) · Zoom(zx, zy)` about the image centre in (x = column,
//!   y = row) coordinates and samples with `scipy.ndimage.affine_transform(order=1)`,
//!   i.e. bilinear. So:
//!   - **positive `theta` turns the picture counter-clockwise** on screen (y points down and
//!     the matrix is applied output -> input);
//!   - **zoom > 1 zooms OUT** (each output pixel looks further from the centre, the content
//!     shrinks), zoom < 1 zooms in;
//!   - a positive shift moves the content left/up (output samples input at `+t`).
//! - Flips are applied after the affine map (`flip_axis` in `apply_transform`), which is the
//!   same as negating the output coordinate before it.
//! - `rescale` multiplies after the random transform (in `standardize`), so `cval` is in raw
//!   pixel units; both are linear, so rendering scales once at the end.
//! - Fill modes follow scipy: `nearest` (a a | a b c d | d d), `constant` (`cval` outside
//!   `[0, n-1]`, no interpolation across the border), `reflect` (half-sample symmetric,
//!   d c b a | a b c d | d c b a) and `wrap` (scipy's `wrap`: period `n - 1`).
//!
//! Deliberate differences: Keras centres its matrix at `(h/2 - 0.5, w/2 - 0.5)` *before*
//! swapping x and y, so its rotation centre is off for non-square images; here the centre is
//! always `((w-1)/2, (h-1)/2)` (identical for square images such as the 56x56 data). Keras
//! also feeds `height_shift_range * h` into the matrix's x (column) shift; here
//! `width_shift_range` shifts columns and `height_shift_range` rows, as the names say.

use crate::{Dataset, Shape};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// How points outside the input are filled (scipy / Keras `fill_mode`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum FillMode {
    /// Replicate the edge pixel.
    #[default]
    Nearest,
    /// Use `cval`.
    Constant,
    /// Mirror about the edge (half-sample symmetric).
    Reflect,
    /// Wrap around to the opposite edge (scipy's `wrap`, period `n - 1`).
    Wrap,
}

/// Augmentation settings, named and defaulted as Keras' `ImageDataGenerator` arguments.
/// The default is the report's B3 generator: `rescale=1/255, rotation_range=10,
/// zoom_range=0.1, horizontal_flip=True, fill_mode='nearest'`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentSpec {
    /// Multiplier applied after the transform (Keras `rescale`).
    pub rescale: f32,
    /// Maximum rotation in degrees, both directions.
    pub rotation_range: f32,
    /// Zoom factors are drawn from `[1 - zoom_range, 1 + zoom_range]`.
    pub zoom_range: f32,
    /// Maximum horizontal shift as a fraction of the width.
    pub width_shift_range: f32,
    /// Maximum vertical shift as a fraction of the height.
    pub height_shift_range: f32,
    /// Mirror left-right with probability 1/2.
    pub horizontal_flip: bool,
    /// Mirror top-bottom with probability 1/2.
    pub vertical_flip: bool,
    /// How points that map outside the image are filled.
    pub fill_mode: FillMode,
    /// Fill value for [`FillMode::Constant`], in raw pixel units (before `rescale`).
    pub cval: f32,
    /// Seed of the per-image parameter streams.
    pub seed: u64,
}

/// Pixel scale of the B models and of augmentation's output (the report's `rescale=1./255`;
/// TL models use caffe preprocessing). Read by the ML layer through `ml::defaults`.
pub const RESCALE: f32 = 1.0 / 255.0;

impl Default for AugmentSpec {
    fn default() -> Self {
        Self {
            rescale: RESCALE,
            rotation_range: 10.0,
            zoom_range: 0.1,
            width_shift_range: 0.0,
            height_shift_range: 0.0,
            horizontal_flip: true,
            vertical_flip: false,
            fill_mode: FillMode::Nearest,
            cval: 0.0,
            seed: 0,
        }
    }
}

impl AugmentSpec {
    /// No augmentation at all, only `rescale`.
    pub fn identity(rescale: f32) -> Self {
        Self {
            rescale,
            rotation_range: 0.0,
            zoom_range: 0.0,
            width_shift_range: 0.0,
            height_shift_range: 0.0,
            horizontal_flip: false,
            vertical_flip: false,
            fill_mode: FillMode::Nearest,
            cval: 0.0,
            seed: 0,
        }
    }

    /// Every problem with these settings (empty when valid).
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(self.rescale.is_finite() && self.rescale > 0.0) {
            problems.push(format!(
                "rescale must be a positive finite number, got {}",
                self.rescale
            ));
        }
        if !(self.rotation_range.is_finite() && (0.0..=180.0).contains(&self.rotation_range)) {
            problems.push(format!(
                "rotation_range must be between 0 and 180 degrees, got {}",
                self.rotation_range
            ));
        }
        if !(self.zoom_range.is_finite() && (0.0..1.0).contains(&self.zoom_range)) {
            problems.push(format!(
                "zoom_range must be at least 0 and below 1, got {}",
                self.zoom_range
            ));
        }
        for (name, v) in [
            ("width_shift_range", self.width_shift_range),
            ("height_shift_range", self.height_shift_range),
        ] {
            if !(v.is_finite() && (0.0..1.0).contains(&v)) {
                problems.push(format!(
                    "{name} must be a fraction of the image size, at least 0 and below 1, got {v}"
                ));
            }
        }
        if !self.cval.is_finite() {
            problems.push(format!("cval must be finite, got {}", self.cval));
        }
        problems
    }
}

/// One image's random parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transform {
    /// Rotation in degrees; positive turns the picture counter-clockwise.
    pub theta_deg: f32,
    /// Horizontal zoom factor; above 1 zooms out.
    pub zx: f32,
    /// Vertical zoom factor; above 1 zooms out.
    pub zy: f32,
    /// Horizontal shift as a fraction of the width; positive moves the content left.
    pub tx: f32,
    /// Vertical shift as a fraction of the height; positive moves the content up.
    pub ty: f32,
    /// Mirror left-right (after the affine map, as Keras does).
    pub flip_h: bool,
    /// Mirror top-bottom (after the affine map).
    pub flip_v: bool,
}

impl Transform {
    /// The transform that changes nothing.
    pub const IDENTITY: Transform = Transform {
        theta_deg: 0.0,
        zx: 1.0,
        zy: 1.0,
        tx: 0.0,
        ty: 0.0,
        flip_h: false,
        flip_v: false,
    };

    fn is_identity(&self) -> bool {
        *self == Self::IDENTITY
    }
}

/// Draws the parameters of image `index` in epoch `epoch`, from `(spec.seed, epoch, index)`
/// alone. Seven uniforms are always drawn in a fixed order, so setting one range to zero
/// leaves the other parameters unchanged.
pub fn draw(spec: &AugmentSpec, epoch: u64, index: u64) -> Transform {
    let mut h = blake3::Hasher::new();
    h.update(b"pipe.augment.v1");
    h.update(&spec.seed.to_le_bytes());
    h.update(&epoch.to_le_bytes());
    h.update(&index.to_le_bytes());
    let mut rng = ChaCha8Rng::from_seed(*h.finalize().as_bytes());
    let mut sym = |range: f32| {
        let u: f32 = rng.random();
        range * (2.0 * u - 1.0)
    };
    let theta_deg = sym(spec.rotation_range);
    let tx = sym(spec.width_shift_range);
    let ty = sym(spec.height_shift_range);
    let zx = 1.0 + sym(spec.zoom_range);
    let zy = 1.0 + sym(spec.zoom_range);
    let flip_h = rng.random::<f32>() < 0.5 && spec.horizontal_flip;
    let flip_v = rng.random::<f32>() < 0.5 && spec.vertical_flip;
    Transform {
        theta_deg,
        zx,
        zy,
        tx,
        ty,
        flip_h,
        flip_v,
    }
}

/// The inverse map: input position `(x, y)` = `(ax·c + bx·r + x0, ay·c + by·r + y0)` for
/// output pixel (row `r`, column `c`).
struct InverseMap {
    ax: f32,
    bx: f32,
    x0: f32,
    ay: f32,
    by: f32,
    y0: f32,
}

impl InverseMap {
    fn new(t: &Transform, shape: Shape) -> Self {
        let (w, h) = (f64::from(shape.width), f64::from(shape.height));
        let (cx, cy) = ((w - 1.0) / 2.0, (h - 1.0) / 2.0);
        let (sin, cos) = f64::from(t.theta_deg).to_radians().sin_cos();
        // Flipping the output after the affine map = negating the centred output coordinate.
        let sx = if t.flip_h { -1.0 } else { 1.0 } * f64::from(t.zx);
        let sy = if t.flip_v { -1.0 } else { 1.0 } * f64::from(t.zy);
        let (tx, ty) = (f64::from(t.tx) * w, f64::from(t.ty) * h);
        let (ax, bx) = (cos * sx, -sin * sy);
        let (ay, by) = (sin * sx, cos * sy);
        Self {
            ax: ax as f32,
            bx: bx as f32,
            x0: (cx - ax * cx - bx * cy + cos * tx - sin * ty) as f32,
            ay: ay as f32,
            by: by as f32,
            y0: (cy - ay * cx - by * cy + sin * tx + cos * ty) as f32,
        }
    }
}

const NEAREST: u8 = 0;
const CONSTANT: u8 = 1;
const REFLECT: u8 = 2;
const WRAP: u8 = 3;

/// Maps a continuous coordinate into `[0, n-1]` by the fill mode; `None` = use `cval`.
#[inline(always)]
fn map_coord<const MODE: u8>(x: f32, n: usize) -> Option<f32> {
    let last = (n - 1) as f32;
    match MODE {
        NEAREST => Some(x.clamp(0.0, last)),
        CONSTANT => {
            // scipy's tolerance for coordinates a rounding error outside the grid.
            const TOL: f32 = 1e-3;
            if (-TOL..=last + TOL).contains(&x) {
                Some(x.clamp(0.0, last))
            } else {
                None
            }
        }
        REFLECT => {
            if (0.0..=last).contains(&x) {
                return Some(x);
            }
            let period = 2.0 * n as f32;
            let mut y = x.rem_euclid(period);
            if y >= n as f32 {
                y = period - 1.0 - y;
            }
            Some(y.clamp(0.0, last))
        }
        _ => {
            if n == 1 || (0.0..=last).contains(&x) {
                return Some(x.clamp(0.0, last));
            }
            Some(x.rem_euclid(last).clamp(0.0, last))
        }
    }
}

/// Applies `t` to one HWC `u8` image and writes CHW `f32` into `out`, times `spec.rescale`.
/// Bilinear sampling, out-of-image points filled by `spec.fill_mode`.
///
/// Panics if `image` or `out` is not `shape.image_len()` long (a caller bug).
pub fn render(spec: &AugmentSpec, t: &Transform, image: &[u8], shape: Shape, out: &mut [f32]) {
    assert_eq!(image.len(), shape.image_len(), "image size");
    assert_eq!(out.len(), shape.image_len(), "output size");
    if t.is_identity() || shape.image_len() == 0 {
        to_chw(image, shape, spec.rescale, out);
        return;
    }
    let map = InverseMap::new(t, shape);
    match spec.fill_mode {
        FillMode::Nearest => render_mode::<NEAREST>(spec, &map, image, shape, out),
        FillMode::Constant => render_mode::<CONSTANT>(spec, &map, image, shape, out),
        FillMode::Reflect => render_mode::<REFLECT>(spec, &map, image, shape, out),
        FillMode::Wrap => render_mode::<WRAP>(spec, &map, image, shape, out),
    }
}

fn render_mode<const MODE: u8>(
    spec: &AugmentSpec,
    map: &InverseMap,
    image: &[u8],
    shape: Shape,
    out: &mut [f32],
) {
    // Constant channel counts let the compiler unroll the per-channel loop.
    match shape.channels {
        1 => sample::<MODE>(spec, map, image, shape, 1, out),
        3 => sample::<MODE>(spec, map, image, shape, 3, out),
        ch => sample::<MODE>(spec, map, image, shape, ch as usize, out),
    }
}

#[inline(always)]
fn sample<const MODE: u8>(
    spec: &AugmentSpec,
    map: &InverseMap,
    image: &[u8],
    shape: Shape,
    ch: usize,
    out: &mut [f32],
) {
    let (h, w) = (shape.height as usize, shape.width as usize);
    let plane = h * w;
    let scale = spec.rescale;
    let fill = spec.cval * scale;
    for r in 0..h {
        let rf = r as f32;
        let row_x = map.bx * rf + map.x0;
        let row_y = map.by * rf + map.y0;
        for c in 0..w {
            let cf = c as f32;
            let o = r * w + c;
            let (Some(x), Some(y)) = (
                map_coord::<MODE>(map.ax * cf + row_x, w),
                map_coord::<MODE>(map.ay * cf + row_y, h),
            ) else {
                for k in 0..ch {
                    out[k * plane + o] = fill;
                }
                continue;
            };
            // x, y are in [0, n-1], so truncation is floor.
            let (x0, y0) = (x as usize, y as usize);
            let (fx, fy) = (x - x0 as f32, y - y0 as f32);
            let dx = usize::from(x0 + 1 < w) * ch;
            let dy = usize::from(y0 + 1 < h) * w * ch;
            let i00 = (y0 * w + x0) * ch;
            let px = &image[i00..i00 + dy + dx + ch];
            for k in 0..ch {
                let p00 = f32::from(px[k]);
                let p01 = f32::from(px[dx + k]);
                let p10 = f32::from(px[dy + k]);
                let p11 = f32::from(px[dy + dx + k]);
                let top = p00 + fx * (p01 - p00);
                let bottom = p10 + fx * (p11 - p10);
                out[k * plane + o] = (top + fy * (bottom - top)) * scale;
            }
        }
    }
}

/// No augmentation: HWC `u8` -> CHW `f32`, times `rescale`.
///
/// Panics if `image` or `out` is not `shape.image_len()` long (a caller bug).
pub fn to_chw(image: &[u8], shape: Shape, rescale: f32, out: &mut [f32]) {
    assert_eq!(image.len(), shape.image_len(), "image size");
    assert_eq!(out.len(), shape.image_len(), "output size");
    let ch = shape.channels as usize;
    let plane = shape.height as usize * shape.width as usize;
    for (k, dst) in out.chunks_exact_mut(plane.max(1)).enumerate().take(ch) {
        for (i, d) in dst.iter_mut().enumerate() {
            *d = f32::from(image[i * ch + k]) * rescale;
        }
    }
}

/// Fills `out`, a `[indices.len(), C, H, W]` batch buffer, with the images of `ds` at
/// `indices`, in parallel. With `spec`, each image is augmented by
/// `draw(spec, epoch, dataset_index)` and scaled by `spec.rescale`; without, it is only
/// converted and scaled by `rescale`.
///
/// Panics if `out.len() != indices.len() * ds.shape.image_len()` or an index is out of range
/// (caller bugs).
pub fn fill_batch(
    ds: &Dataset,
    indices: &[usize],
    spec: Option<&AugmentSpec>,
    epoch: u64,
    rescale: f32,
    out: &mut [f32],
) {
    let n = ds.shape.image_len();
    assert_eq!(out.len(), indices.len() * n, "batch buffer size");
    if n == 0 {
        return;
    }
    out.par_chunks_mut(n)
        .zip(indices.par_iter())
        .with_min_len(8)
        .for_each(|(dst, &i)| match spec {
            Some(spec) => {
                let t = draw(spec, epoch, i as u64);
                render(spec, &t, ds.image(i), ds.shape, dst);
            }
            None => to_chw(ds.image(i), ds.shape, rescale, dst),
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1-channel image whose pixel (r, c) has value `f(r, c)`.
    fn gray(h: u32, w: u32, f: impl Fn(usize, usize) -> u8) -> (Vec<u8>, Shape) {
        let shape = Shape::new(h, w, 1);
        let img = (0..h as usize)
            .flat_map(|r| (0..w as usize).map(move |c| (r, c)))
            .map(|(r, c)| f(r, c))
            .collect();
        (img, shape)
    }

    fn apply(t: Transform, img: &[u8], shape: Shape, mode: FillMode) -> Vec<f32> {
        let spec = AugmentSpec {
            fill_mode: mode,
            cval: 7.0,
            ..AugmentSpec::identity(1.0)
        };
        let mut out = vec![f32::NAN; shape.image_len()];
        render(&spec, &t, img, shape, &mut out);
        out
    }

    fn t(theta: f32, zoom: f32, tx: f32, ty: f32, flip_h: bool) -> Transform {
        Transform {
            theta_deg: theta,
            zx: zoom,
            zy: zoom,
            tx,
            ty,
            flip_h,
            flip_v: false,
        }
    }

    fn approx(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-3)
    }

    #[test]
    fn defaults_are_the_report_settings_and_valid() {
        let s = AugmentSpec::default();
        assert_eq!((s.rotation_range, s.zoom_range), (10.0, 0.1));
        assert!(s.horizontal_flip && !s.vertical_flip);
        assert_eq!(s.fill_mode, FillMode::Nearest);
        assert!(s.validate().is_empty());
        assert!(AugmentSpec::identity(1.0).validate().is_empty());
        let y: AugmentSpec = serde_json::from_value(
            serde_json::json!({"rotation_range": 5, "fill_mode": "reflect"}),
        )
        .unwrap();
        assert_eq!(y.rotation_range, 5.0);
        assert_eq!(y.fill_mode, FillMode::Reflect);
        assert_eq!(y.zoom_range, 0.1);
        assert!(
            serde_json::from_value::<AugmentSpec>(serde_json::json!({"rotaton_range": 5})).is_err()
        );
    }

    #[test]
    fn validate_lists_every_problem() {
        let s = AugmentSpec {
            rescale: 0.0,
            rotation_range: 200.0,
            zoom_range: 1.0,
            width_shift_range: -0.1,
            height_shift_range: f32::NAN,
            cval: f32::INFINITY,
            ..AugmentSpec::default()
        };
        let p = s.validate();
        assert_eq!(p.len(), 6, "{p:?}");
        assert!(p[1].contains("rotation_range"));
    }

    #[test]
    fn draws_are_deterministic_per_seed_epoch_index() {
        let s = AugmentSpec::default();
        assert_eq!(draw(&s, 3, 17), draw(&s, 3, 17));
        assert_ne!(draw(&s, 3, 17), draw(&s, 4, 17));
        assert_ne!(draw(&s, 3, 17), draw(&s, 3, 18));
        let other = AugmentSpec {
            seed: 1,
            ..s.clone()
        };
        assert_ne!(draw(&s, 3, 17), draw(&other, 3, 17));

        let (img, shape) = gray(8, 8, |r, c| (r * 30 + c * 3) as u8);
        let mut a = vec![0.0; 64];
        let mut b = vec![0.0; 64];
        render(&s, &draw(&s, 1, 0), &img, shape, &mut a);
        render(&s, &draw(&s, 1, 0), &img, shape, &mut b);
        assert_eq!(a, b);
        render(&s, &draw(&s, 2, 0), &img, shape, &mut b);
        assert_ne!(a, b);
    }

    #[test]
    fn drawn_parameters_stay_in_range_and_cover_it() {
        let s = AugmentSpec {
            width_shift_range: 0.2,
            ..AugmentSpec::default()
        };
        let (mut min_t, mut max_t, mut flips) = (f32::MAX, f32::MIN, 0);
        for i in 0..10_000 {
            let t = draw(&s, 0, i);
            assert!(t.theta_deg.abs() <= 10.0, "{t:?}");
            assert!(
                (0.9..=1.1).contains(&t.zx) && (0.9..=1.1).contains(&t.zy),
                "{t:?}"
            );
            assert!(t.tx.abs() <= 0.2 && t.ty == 0.0 && !t.flip_v, "{t:?}");
            min_t = min_t.min(t.theta_deg);
            max_t = max_t.max(t.theta_deg);
            flips += usize::from(t.flip_h);
        }
        assert!(min_t < -9.9 && max_t > 9.9, "{min_t} {max_t}");
        assert!((4700..5300).contains(&flips), "{flips}");
        // Zero ranges give exactly the identity.
        let id = AugmentSpec::identity(1.0);
        assert!((0..100).all(|i| draw(&id, 0, i) == Transform::IDENTITY));
    }

    #[test]
    fn identity_reproduces_input_exactly() {
        let shape = Shape::new(5, 7, 3);
        let img: Vec<u8> = (0..shape.image_len())
            .map(|i| (i * 37 % 256) as u8)
            .collect();
        let mut expected = vec![0.0; img.len()];
        to_chw(&img, shape, 0.5, &mut expected);
        // CHW layout: channel k of pixel (r, c) at k*H*W + r*W + c.
        assert_eq!(
            expected[2 * 35 + 7 + 3],
            f32::from(img[(7 + 3) * 3 + 2]) * 0.5
        );
        for mode in [
            FillMode::Nearest,
            FillMode::Constant,
            FillMode::Reflect,
            FillMode::Wrap,
        ] {
            let spec = AugmentSpec {
                fill_mode: mode,
                ..AugmentSpec::identity(0.5)
            };
            let mut out = vec![0.0; img.len()];
            // The general sampling path must be exact too, not only the identity shortcut.
            render_mode_for_test(&spec, &Transform::IDENTITY, &img, shape, &mut out);
            assert_eq!(out, expected, "{mode:?}");
            render(&spec, &Transform::IDENTITY, &img, shape, &mut out);
            assert_eq!(out, expected);
        }
    }

    fn render_mode_for_test(
        spec: &AugmentSpec,
        t: &Transform,
        img: &[u8],
        shape: Shape,
        out: &mut [f32],
    ) {
        let map = InverseMap::new(t, shape);
        match spec.fill_mode {
            FillMode::Nearest => render_mode::<NEAREST>(spec, &map, img, shape, out),
            FillMode::Constant => render_mode::<CONSTANT>(spec, &map, img, shape, out),
            FillMode::Reflect => render_mode::<REFLECT>(spec, &map, img, shape, out),
            FillMode::Wrap => render_mode::<WRAP>(spec, &map, img, shape, out),
        }
    }

    #[test]
    fn rotation_is_counter_clockwise_and_flip_mirrors_columns() {
        // 3x3 with a single bright pixel at the top centre (row 0, column 1).
        let (img, shape) = gray(3, 3, |r, c| if (r, c) == (0, 1) { 200 } else { 0 });
        let at = |v: &[f32], r: usize, c: usize| v[r * 3 + c];

        // Keras: theta = +90 turns the picture counter-clockwise, top goes to the left.
        let ccw = apply(
            t(90.0, 1.0, 0.0, 0.0, false),
            &img,
            shape,
            FillMode::Nearest,
        );
        assert!((at(&ccw, 1, 0) - 200.0).abs() < 1e-3, "{ccw:?}");
        assert!(ccw.iter().map(|v| v.abs()).sum::<f32>() < 200.01);
        let cw = apply(
            t(-90.0, 1.0, 0.0, 0.0, false),
            &img,
            shape,
            FillMode::Nearest,
        );
        assert!((at(&cw, 1, 2) - 200.0).abs() < 1e-3, "{cw:?}");

        // Asymmetric image for the flip: marker at (0, 0).
        let (img, shape) = gray(3, 3, |r, c| if (r, c) == (0, 0) { 100 } else { 0 });
        let flipped = apply(t(0.0, 1.0, 0.0, 0.0, true), &img, shape, FillMode::Nearest);
        assert_eq!(at(&flipped, 0, 2), 100.0);
        // Keras flips after rotating: rotate (0,0) CCW to (2,0), then mirror to (2,2).
        let both = apply(t(90.0, 1.0, 0.0, 0.0, true), &img, shape, FillMode::Nearest);
        assert!((at(&both, 2, 2) - 100.0).abs() < 1e-3, "{both:?}");
        let v = Transform {
            flip_v: true,
            ..Transform::IDENTITY
        };
        let vflip = apply(v, &img, shape, FillMode::Nearest);
        assert_eq!(at(&vflip, 2, 0), 100.0);
    }

    #[test]
    fn zoom_above_one_zooms_out_and_nearest_replicates_edges() {
        // Row-constant ramp along columns: value = 10 * column.
        let (img, shape) = gray(5, 5, |_, c| (10 * c) as u8);
        let out = apply(t(0.0, 2.0, 0.0, 0.0, false), &img, shape, FillMode::Nearest);
        // Output column 3 (one right of centre) shows input column 4: content shrank.
        assert!(
            approx(&out[10..15], &[0.0, 0.0, 20.0, 40.0, 40.0]),
            "{out:?}"
        );
        let zin = apply(t(0.0, 0.5, 0.0, 0.0, false), &img, shape, FillMode::Nearest);
        // Zoom in: column 4 shows input column 3 (bilinear between 2.5 .. 3).
        assert!(
            approx(&zin[10..15], &[10.0, 15.0, 20.0, 25.0, 30.0]),
            "{zin:?}"
        );
    }

    #[test]
    fn shifts_and_fill_modes() {
        // Ramp along columns 0, 10, 20, 30; shift by half the width (2 columns).
        let (img, shape) = gray(2, 4, |_, c| (10 * c) as u8);
        let row = |v: Vec<f32>| v[..4].to_vec();
        let shifted = |mode| row(apply(t(0.0, 1.0, 0.5, 0.0, false), &img, shape, mode));
        assert_eq!(shifted(FillMode::Nearest), vec![20.0, 30.0, 30.0, 30.0]);
        assert_eq!(shifted(FillMode::Constant), vec![20.0, 30.0, 7.0, 7.0]);
        // Half-sample symmetric: index 4 -> 3, 5 -> 2.
        assert_eq!(shifted(FillMode::Reflect), vec![20.0, 30.0, 30.0, 20.0]);
        // scipy wrap, period n-1 = 3: 4 -> 1, 5 -> 2.
        assert_eq!(shifted(FillMode::Wrap), vec![20.0, 30.0, 10.0, 20.0]);
        // Negative shift moves content right; vertical shift works on rows.
        let left = row(apply(
            t(0.0, 1.0, -0.25, 0.0, false),
            &img,
            shape,
            FillMode::Nearest,
        ));
        assert_eq!(left, vec![0.0, 0.0, 10.0, 20.0]);
        let (img_v, shape_v) = gray(4, 1, |r, _| (10 * r) as u8);
        let down = apply(
            t(0.0, 1.0, 0.0, 0.5, false),
            &img_v,
            shape_v,
            FillMode::Nearest,
        );
        assert_eq!(down, vec![20.0, 30.0, 30.0, 30.0]);
        // Constant fill is in raw units, then rescaled.
        let spec = AugmentSpec {
            fill_mode: FillMode::Constant,
            cval: 100.0,
            ..AugmentSpec::identity(0.5)
        };
        let mut out = vec![0.0; 8];
        render(&spec, &t(0.0, 1.0, 0.5, 0.0, false), &img, shape, &mut out);
        assert_eq!(&out[..4], &[10.0, 15.0, 50.0, 50.0]);
    }

    #[test]
    fn matches_keras_and_scipy_reference() {
        // Expected values computed by Keras' legacy `apply_affine_transform` code (matrix
        // construction, centring and x/y swap) with scipy 1.17 `ndimage.affine_transform`
        // (order=1, cval=17), then `flip_axis` for the flips: 5x5, one channel, rescale 1.
        // Keras shift parameters in pixels are `tx * 5` (columns) and `ty * 5` (rows).
        let image: Vec<u8> = (0..25u32).map(|i| (i * 37 % 251) as u8).collect();
        let shape = Shape::new(5, 5, 1);
        let cases: [(FillMode, Transform, [f32; 25]); 4] = [
            (
                FillMode::Nearest,
                Transform {
                    theta_deg: 20.0,
                    zx: 1.1,
                    zy: 0.9,
                    tx: 0.1,
                    ty: -0.1,
                    flip_h: true,
                    flip_v: false,
                },
                [
                    97.697, 122.528, 119.849, 82.245, 43.999, 41.880, 67.084, 52.642, 49.450,
                    51.664, 99.917, 93.647, 161.427, 120.137, 196.734, 181.244, 175.566, 169.228,
                    155.813, 142.398, 135.000, 115.436, 102.021, 88.641, 76.749,
                ],
            ),
            (
                FillMode::Constant,
                Transform {
                    theta_deg: -25.0,
                    zx: 0.85,
                    zy: 1.15,
                    tx: 0.0,
                    ty: 0.15,
                    flip_h: false,
                    flip_v: true,
                },
                [
                    17.000, 17.000, 17.000, 17.000, 17.000, 17.000, 17.000, 109.059, 161.271,
                    17.000, 77.804, 107.653, 159.865, 197.184, 47.627, 106.247, 158.409, 135.061,
                    81.725, 64.096, 17.000, 197.832, 108.344, 62.690, 17.000,
                ],
            ),
            (
                FillMode::Reflect,
                Transform {
                    theta_deg: 12.5,
                    zx: 1.2,
                    zy: 1.2,
                    tx: -0.15,
                    ty: 0.05,
                    flip_h: false,
                    flip_v: false,
                },
                [
                    0.000, 20.778, 64.126, 107.473, 130.966, 72.286, 131.503, 114.750, 63.298,
                    66.642, 152.678, 132.305, 158.511, 184.716, 155.189, 84.966, 53.424, 74.506,
                    97.784, 123.989, 97.043, 238.000, 89.438, 56.033, 99.381,
                ],
            ),
            (
                FillMode::Wrap,
                Transform {
                    theta_deg: -7.0,
                    zx: 0.9,
                    zy: 1.05,
                    tx: 0.2,
                    ty: 0.0,
                    flip_h: true,
                    flip_v: true,
                },
                [
                    42.252, 185.668, 109.670, 82.379, 66.649, 106.300, 66.010, 171.308, 133.428,
                    93.137, 170.349, 49.078, 207.178, 194.418, 157.186, 138.163, 91.107, 50.816,
                    17.340, 202.740, 103.191, 142.156, 101.865, 61.574, 37.584,
                ],
            ),
        ];
        for (mode, t, expected) in cases {
            let spec = AugmentSpec {
                fill_mode: mode,
                cval: 17.0,
                ..AugmentSpec::identity(1.0)
            };
            let mut out = vec![0.0; 25];
            render(&spec, &t, &image, shape, &mut out);
            for (i, (a, e)) in out.iter().zip(expected).enumerate() {
                assert!((a - e).abs() < 2e-3, "{mode:?} pixel {i}: {a} vs keras {e}");
            }
        }
    }

    #[test]
    fn fill_batch_matches_per_image_rendering() {
        let shape = Shape::new(6, 6, 3);
        let n = 20;
        let pixels: Vec<u8> = (0..n * shape.image_len())
            .map(|i| (i * 13 % 251) as u8)
            .collect();
        let names = (0..n).map(|i| format!("{i}.png")).collect();
        let ds = Dataset::new(shape, pixels, None, names);
        let idx = [5usize, 0, 19, 5];
        let len = shape.image_len();
        let spec = AugmentSpec::default();
        let mut batch = vec![0.0; idx.len() * len];
        fill_batch(&ds, &idx, Some(&spec), 4, 1.0, &mut batch);
        for (j, &i) in idx.iter().enumerate() {
            let mut one = vec![0.0; len];
            render(
                &spec,
                &draw(&spec, 4, i as u64),
                ds.image(i),
                shape,
                &mut one,
            );
            assert_eq!(&batch[j * len..(j + 1) * len], &one[..]);
        }
        // Same dataset index -> same augmentation, wherever it sits in the batch.
        assert_eq!(batch[..len], batch[3 * len..]);
        fill_batch(&ds, &idx, None, 4, 2.0, &mut batch);
        let mut plain = vec![0.0; len];
        to_chw(ds.image(19), shape, 2.0, &mut plain);
        assert_eq!(&batch[2 * len..3 * len], &plain[..]);
    }

    #[test]
    fn render_throughput() {
        // Release builds do > 20,000 images/s per core; this debug-profile check only guards
        // against a pathological slowdown.
        let shape = Shape::default();
        let img: Vec<u8> = (0..shape.image_len()).map(|i| (i % 256) as u8).collect();
        let spec = AugmentSpec::default();
        let mut out = vec![0.0; shape.image_len()];
        let n = 2000;
        let start = std::time::Instant::now();
        for i in 0..n {
            render(&spec, &draw(&spec, 0, i), &img, shape, &mut out);
        }
        let per_s = n as f64 / start.elapsed().as_secs_f64();
        eprintln!("augment render: {per_s:.0} images/s (56x56x3, one core)");
        assert!(per_s > 1000.0, "{per_s}");
    }
}
