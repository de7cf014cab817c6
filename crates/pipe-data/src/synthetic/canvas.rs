//! The canvas faces are drawn on.

/// An RGB canvas with simple aliased rasterisation (pixel centres tested against shapes).
pub(super) struct Canvas {
    w: usize,
    h: usize,
    pub(super) px: Vec<[u8; 3]>,
}

impl Canvas {
    pub(super) fn new(w: usize, h: usize) -> Self {
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

    pub(super) fn gradient(&mut self, c: [[u8; 3]; 2], dir: u8) {
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
    pub(super) fn ellipse(&mut self, cx: f32, cy: f32, rx: f32, ry: f32, col: [u8; 3], y_max: f32) {
        self.for_box((cx - rx, cy - ry, cx + rx, cy + ry), |x, y, p| {
            let (u, v) = ((x - cx) / rx, (y - cy) / ry);
            if u * u + v * v <= 1.0 && y < y_max {
                *p = col;
            }
        });
    }

    /// Ellipse interior blended towards `col` by `alpha`.
    pub(super) fn tint_ellipse(
        &mut self,
        cx: f32,
        cy: f32,
        rx: f32,
        ry: f32,
        col: [u8; 3],
        alpha: f32,
    ) {
        self.for_box((cx - rx, cy - ry, cx + rx, cy + ry), |x, y, p| {
            let (u, v) = ((x - cx) / rx, (y - cy) / ry);
            if u * u + v * v <= 1.0 {
                *p = [0, 1, 2].map(|k| (p[k] as f32 * (1.0 - alpha) + col[k] as f32 * alpha) as u8);
            }
        });
    }

    /// Elliptical ring of the given thickness (outer radii `rx`, `ry`).
    pub(super) fn ring(&mut self, cx: f32, cy: f32, rx: f32, ry: f32, t: f32, col: [u8; 3]) {
        let (irx, iry) = ((rx - t).max(0.1), (ry - t).max(0.1));
        self.for_box((cx - rx, cy - ry, cx + rx, cy + ry), |x, y, p| {
            let (u, v) = ((x - cx) / rx, (y - cy) / ry);
            let (a, b) = ((x - cx) / irx, (y - cy) / iry);
            if u * u + v * v <= 1.0 && a * a + b * b > 1.0 {
                *p = col;
            }
        });
    }

    pub(super) fn rect(&mut self, x0: f32, y0: f32, x1: f32, y1: f32, col: [u8; 3]) {
        self.for_box((x0, y0, x1, y1), |x, y, p| {
            if x >= x0 && x < x1 && y >= y0 && y < y1 {
                *p = col;
            }
        });
    }

    /// Segment of thickness `t` (pixels whose centre is within `t / 2`).
    pub(super) fn segment(
        &mut self,
        (x0, y0): (f32, f32),
        (x1, y1): (f32, f32),
        t: f32,
        col: [u8; 3],
    ) {
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
