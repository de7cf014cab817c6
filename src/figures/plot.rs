//! PNG charts: learning curves and confusion matrices, drawn with `plotters` into an RGB
//! buffer and encoded with `image`. Text uses DejaVu Sans embedded in the binary
//! (assets/fonts), so no system font is needed and output is identical on every machine.
//!
//! Text is rasterised here (`Canvas`) rather than by plotters' `ab_glyph` text drawing,
//! which ignores glyph side bearings and so spaces letters unevenly ("Tr ue l abel").
//! plotters' own layout estimate (sum of advances and kerning) is still what sizes label
//! areas; it agrees with the positions used here.

use super::ticks::{Ticks, nice_ticks};
use crate::ml::curve::CurveRow;
use crate::ml::metrics::Confusion;
use ab_glyph::{Font, FontRef, PxScale, ScaleFont, point};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
// `BackendStyle` stays unimported: its `stroke_width` would clash with `Color`'s.
use plotters_backend::{BackendColor, BackendCoord, BackendTextStyle, DrawingErrorKind};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub mod matrix;
pub mod roc;

static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const FONT: &str = "sans-serif";

/// Why a chart could not be drawn or written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("the embedded font could not be loaded")]
    Font,
    #[error("drawing {what}: {message}")]
    Draw { what: String, message: String },
    #[error("{path}: {source}")]
    Encode {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    #[error("nothing to plot: {0}")]
    Empty(&'static str),
    #[error("{count} confusion matrices in one figure, at most {max} fit")]
    TooMany { count: usize, max: usize },
}

/// The embedded font, parsed once; also registered with plotters for its layout estimates.
fn font() -> Result<&'static FontRef<'static>, PlotError> {
    static FONT_REF: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    FONT_REF
        .get_or_init(|| {
            let parsed = FontRef::try_from_slice(DEJAVU_SANS).ok()?;
            plotters::style::register_font(FONT, FontStyle::Normal, DEJAVU_SANS).ok()?;
            Some(parsed)
        })
        .as_ref()
        .ok_or(PlotError::Font)
}

/// A bitmap backend whose text is rasterised with correct glyph placement.
struct Canvas<'a> {
    inner: BitMapBackend<'a>,
    font: &'static FontRef<'static>,
}

type CanvasError<'a> = DrawingErrorKind<<BitMapBackend<'a> as DrawingBackend>::ErrorType>;

impl<'a> DrawingBackend for Canvas<'a> {
    type ErrorType = <BitMapBackend<'a> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }
    fn ensure_prepared(&mut self) -> Result<(), CanvasError<'a>> {
        self.inner.ensure_prepared()
    }
    fn present(&mut self) -> Result<(), CanvasError<'a>> {
        self.inner.present()
    }
    fn draw_pixel(&mut self, p: BackendCoord, c: BackendColor) -> Result<(), CanvasError<'a>> {
        self.inner.draw_pixel(p, c)
    }
    fn draw_line<S: plotters_backend::BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), CanvasError<'a>> {
        self.inner.draw_line(from, to, style)
    }
    fn draw_rect<S: plotters_backend::BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), CanvasError<'a>> {
        self.inner.draw_rect(upper_left, bottom_right, style, fill)
    }
    fn draw_path<S: plotters_backend::BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), CanvasError<'a>> {
        self.inner.draw_path(path, style)
    }
    fn draw_circle<S: plotters_backend::BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), CanvasError<'a>> {
        self.inner.draw_circle(center, radius, style, fill)
    }
    fn fill_polygon<S: plotters_backend::BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), CanvasError<'a>> {
        self.inner.fill_polygon(vert, style)
    }
    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> Result<(), CanvasError<'a>> {
        self.inner.blit_bitmap(pos, size, src)
    }

    fn estimate_text_size<S: BackendTextStyle>(
        &self,
        text: &str,
        style: &S,
    ) -> Result<(u32, u32), CanvasError<'a>> {
        let (width, height) = text_box(self.font, text, style.size() as f32);
        Ok((width.max(0) as u32, height.max(0) as u32))
    }

    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> Result<(), CanvasError<'a>> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let size = style.size() as f32;
        let (width, height) = text_box(self.font, text, size);
        let dx = match style.anchor().h_pos {
            HPos::Left => 0,
            HPos::Right => -width,
            HPos::Center => -width / 2,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0,
            VPos::Center => -height / 2,
            VPos::Bottom => -height,
        };
        let trans = style.transform();
        let (w, h) = self.get_size();
        let mut coverage = Vec::new();
        for glyph in layout(self.font, text, size) {
            if let Some(outline) = self.font.outline_glyph(glyph) {
                let b = outline.px_bounds();
                outline.draw(|gx, gy, c| {
                    coverage.push((b.min.x as i32 + gx as i32, b.min.y as i32 + gy as i32, c));
                });
            }
        }
        for (x, y, c) in coverage {
            let (x, y) = trans.transform(x + dx, y + dy);
            let (x, y) = (pos.0 + x, pos.1 + y);
            if x >= 0 && x < w as i32 && y >= 0 && y < h as i32 && c > 0.0 {
                let alpha = color.alpha * f64::from(c.min(1.0));
                self.inner
                    .draw_pixel((x, y), BackendColor { alpha, ..color })?;
            }
        }
        Ok(())
    }
}

/// Glyphs of `text` at `size` px, laid out on one line in a box whose top is y = 0.
fn layout(font: &FontRef<'static>, text: &str, size: f32) -> Vec<ab_glyph::Glyph> {
    let scaled = font.as_scaled(PxScale::from(size));
    // Baseline so that the span from baseline to cap height (0.63 of the size for DejaVu
    // Sans) is centred in the box of height size / 1.24 that plotters assumes.
    let baseline = 0.72 * size;
    let mut x = 0.0f32;
    let mut prev = None;
    let mut glyphs = Vec::with_capacity(text.len());
    for ch in text.chars() {
        let id = scaled.glyph_id(ch);
        if let Some(p) = prev {
            x += scaled.kern(p, id);
        }
        glyphs.push(id.with_scale_and_position(size, point(x, baseline)));
        x += scaled.h_advance(id);
        prev = Some(id);
    }
    glyphs
}

/// Width and height of the text box, the same as plotters' own estimate for this font.
fn text_box(font: &FontRef<'static>, text: &str, size: f32) -> (i32, i32) {
    let scaled = font.as_scaled(PxScale::from(size));
    let mut x = 0.0f32;
    let mut prev = None;
    for ch in text.chars() {
        let id = scaled.glyph_id(ch);
        if let Some(p) = prev {
            x += scaled.kern(p, id);
        }
        x += scaled.h_advance(id);
        prev = Some(id);
    }
    (x as i32, (size / 1.24) as i32)
}

/// Width in pixels of `text` at `size` px in the embedded font.
pub fn text_width(text: &str, size: f32) -> Result<u32, PlotError> {
    Ok(text_box(font()?, text, size).0.max(0) as u32)
}

/// Draws black `text` onto `img` with its box's top-left corner at `(x, y)` (clipped).
pub fn draw_label(
    img: &mut image::RgbImage,
    (x, y): (i32, i32),
    text: &str,
    size: f32,
) -> Result<(), PlotError> {
    let font = font()?;
    let (w, h) = img.dimensions();
    for glyph in layout(font, text, size) {
        let Some(outline) = font.outline_glyph(glyph) else {
            continue;
        };
        let b = outline.px_bounds();
        outline.draw(|gx, gy, c| {
            let px = x + b.min.x as i32 + gx as i32;
            let py = y + b.min.y as i32 + gy as i32;
            if px >= 0 && py >= 0 && (px as u32) < w && (py as u32) < h {
                let p = img.get_pixel_mut(px as u32, py as u32);
                let keep = 1.0 - c.clamp(0.0, 1.0);
                for ch in &mut p.0 {
                    *ch = (f32::from(*ch) * keep).round() as u8;
                }
            }
        });
    }
    Ok(())
}

fn draw_err<E: std::fmt::Debug>(what: &str) -> impl FnOnce(E) -> PlotError + '_ {
    move |e| PlotError::Draw {
        what: what.to_owned(),
        message: format!("{e:?}"),
    }
}

/// Renders `(width, height)` pixels with `draw` and writes them to `path` as PNG.
fn render_png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<Canvas<'_>, Shift>) -> Result<(), PlotError>,
) -> Result<(), PlotError> {
    render(size, draw)?
        .save_with_format(path, image::ImageFormat::Png)
        .map_err(|source| PlotError::Encode {
            path: path.to_path_buf(),
            source,
        })
}

/// `img` encoded as PNG in memory (for files written outside the cache: [`crate::output`]).
fn png_bytes(img: &image::RgbImage) -> Result<Vec<u8>, PlotError> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| PlotError::Draw {
            what: "PNG".into(),
            message: e.to_string(),
        })?;
    Ok(out.into_inner())
}

/// Renders `(width, height)` pixels with `draw`.
fn render(
    (width, height): (u32, u32),
    draw: impl FnOnce(&DrawingArea<Canvas<'_>, Shift>) -> Result<(), PlotError>,
) -> Result<image::RgbImage, PlotError> {
    let font = font()?;
    let mut buf = vec![255u8; width as usize * height as usize * 3];
    {
        let root = Canvas {
            inner: BitMapBackend::with_buffer(&mut buf, (width, height)),
            font,
        }
        .into_drawing_area();
        root.fill(&WHITE).map_err(draw_err("background"))?;
        draw(&root)?;
        root.present().map_err(draw_err("image"))?;
    }
    image::RgbImage::from_raw(width, height, buf).ok_or(PlotError::Draw {
        what: "image".into(),
        message: "buffer size mismatch".into(),
    })
}

// Matplotlib's default colours, which the report's figures use.
const TRAIN: RGBColor = RGBColor(31, 119, 180);
const VAL: RGBColor = RGBColor(255, 127, 14);
const TEST: RGBColor = RGBColor(44, 160, 44);

/// Two panels side by side like the report's figures: loss (train/val) and balanced accuracy
/// (train/val, and test points where present) per epoch. Non-finite values are skipped. A
/// model of `classes` > 2 is labelled with its cross-entropy and macro balanced accuracy.
pub fn learning_curve_png(
    path: &Path,
    title: &str,
    rows: &[CurveRow],
    classes: usize,
) -> Result<(), PlotError> {
    let (loss_desc, bacc_desc) = if classes > 2 {
        ("Cross-entropy", "Macro balanced accuracy")
    } else {
        ("Binary cross-entropy", "Balanced accuracy")
    };
    if rows.is_empty() {
        return Err(PlotError::Empty("learning curve without epochs"));
    }
    render_png(path, (1400, 560), |root| {
        let body = root
            .titled(title, (FONT, 28).into_font().color(&BLACK))
            .map_err(draw_err("title"))?;
        let panels = body.split_evenly((1, 2));
        let series = |f: fn(&CurveRow) -> f64| -> Vec<(u32, f64)> {
            rows.iter()
                .map(|r| (r.epoch, f(r)))
                .filter(|(_, v)| v.is_finite())
                .collect()
        };
        let test: Vec<(u32, f64)> = rows
            .iter()
            .filter_map(|r| r.test_bacc.map(|v| (r.epoch, v)))
            .filter(|(_, v)| v.is_finite())
            .collect();
        let loss = [
            ("train", TRAIN, series(|r| r.train_loss)),
            ("validation", VAL, series(|r| r.val_loss)),
        ];
        let bacc = [
            ("train", TRAIN, series(|r| r.train_bacc)),
            ("validation", VAL, series(|r| r.val_bacc)),
        ];
        let epochs = || rows.iter().map(|r| r.epoch);
        let (first, last) = (epochs().min().unwrap_or(0), epochs().max().unwrap_or(0));
        // One epoch of margin each side so end points (test markers) are not clipped.
        let x = (first.saturating_sub(1), last.saturating_add(1));
        let x_ticks: Vec<u32> = nice_ticks(f64::from(first), f64::from(last), 12, true)
            .values
            .iter()
            .map(|&v| v as u32)
            .filter(|v| (x.0..=x.1).contains(v))
            .collect();

        let max_loss = loss
            .iter()
            .flat_map(|(_, _, s)| s.iter().map(|p| p.1))
            .fold(0.0f64, f64::max);
        let loss_hi = if max_loss > 0.0 { max_loss * 1.05 } else { 1.0 };
        let loss_panel = Panel {
            caption: "Loss",
            y_desc: loss_desc,
            x,
            x_ticks: x_ticks.clone(),
            y: nice_ticks(0.0, loss_hi, 10, false),
            legend_at: SeriesLabelPosition::UpperRight,
        };
        line_panel(&panels[0], loss_panel, &loss, None)?;

        let min_bacc = bacc
            .iter()
            .flat_map(|(_, _, s)| s.iter().map(|p| p.1))
            .chain(test.iter().map(|p| p.1))
            .fold(1.0f64, f64::min);
        // Balanced accuracy lives in [0, 1]: the axis ends at 1 (a 1-2-5 step divides 1).
        let bacc_panel = Panel {
            caption: "Balanced accuracy",
            y_desc: bacc_desc,
            x,
            x_ticks,
            y: nice_ticks((min_bacc - 0.02).clamp(0.0, 0.9), 1.0, 10, false),
            legend_at: SeriesLabelPosition::LowerRight,
        };
        line_panel(&panels[1], bacc_panel, &bacc, Some(&test))
    })
}

type Series = (&'static str, RGBColor, Vec<(u32, f64)>);

/// A value axis whose ticks are given ([`nice_ticks`]) rather than chosen by plotters.
struct TickedAxis {
    range: std::ops::Range<f64>,
    ticks: Vec<f64>,
}

impl plotters::coord::ranged1d::Ranged for TickedAxis {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        plotters::coord::types::RangedCoordf64::from(self.range.clone()).map(value, limit)
    }
    fn key_points<Hint: plotters::coord::ranged1d::KeyPointHint>(&self, _: Hint) -> Vec<f64> {
        self.ticks.clone()
    }
    fn range(&self) -> std::ops::Range<f64> {
        self.range.clone()
    }
}

/// One chart panel's captions, axis range and ticks (epochs, values) and legend corner; the
/// value axis spans its ticks.
struct Panel {
    caption: &'static str,
    y_desc: &'static str,
    x: (u32, u32),
    x_ticks: Vec<u32>,
    y: Ticks,
    legend_at: SeriesLabelPosition,
}

fn line_panel(
    area: &DrawingArea<Canvas<'_>, Shift>,
    panel: Panel,
    lines: &[Series],
    test: Option<&[(u32, f64)]>,
) -> Result<(), PlotError> {
    let Panel {
        caption,
        y_desc,
        x: (e0, e1),
        x_ticks,
        y,
        legend_at,
    } = panel;
    let (y0, y1) = y.bounds();
    let at = |&(e, v): &(u32, f64)| (f64::from(e), v);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 22))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(
            TickedAxis {
                range: f64::from(e0)..f64::from(e1),
                ticks: x_ticks.iter().map(|&t| f64::from(t)).collect(),
            },
            TickedAxis {
                range: y0..y1,
                ticks: y.values.clone(),
            },
        )
        .map_err(draw_err(caption))?;
    chart
        .configure_mesh()
        .x_desc("Epoch")
        .y_desc(y_desc)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| y.label(*v))
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 17))
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(220, 220, 220))
        .draw()
        .map_err(draw_err(caption))?;
    for (name, color, points) in lines {
        let style = color.stroke_width(2);
        chart
            .draw_series(LineSeries::new(points.iter().map(at), style))
            .map_err(draw_err(caption))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
        // Short runs get point markers too, so that a single epoch is visible at all.
        if points.len() <= 40 {
            chart
                .draw_series(points.iter().map(|p| Circle::new(at(p), 3, color.filled())))
                .map_err(draw_err(caption))?;
        }
    }
    if let Some(points) = test.filter(|t| !t.is_empty()) {
        chart
            .draw_series(
                points
                    .iter()
                    .map(|p| Circle::new(at(p), 6, TEST.filled().stroke_width(1))),
            )
            .map_err(draw_err(caption))?
            .label("test")
            .legend(|(x, y)| Circle::new((x + 12, y), 6, TEST.filled()));
    }
    chart
        .configure_series_labels()
        .position(legend_at)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .label_font((FONT, 16))
        .draw()
        .map_err(draw_err(caption))
}

/// 2x2 confusion matrix heat map with counts and row-normalised rates, labelled axes
/// (true/predicted, 0/1).
pub fn confusion_png(path: &Path, title: &str, c: &Confusion) -> Result<(), PlotError> {
    render_png(path, (560, 560), |root| confusion_panel(root, title, c))
}

/// Most panels per row of [`confusion_grid_png`].
pub const GRID_COLUMNS: usize = 4;
/// Most matrices [`confusion_grid_png`] draws in one figure.
pub const GRID_MAX: usize = 32;

/// Several confusion matrices side by side (report Figure 18), each with its title; more
/// than [`GRID_COLUMNS`] wrap onto further rows.
pub fn confusion_grid_png(path: &Path, items: &[(String, Confusion)]) -> Result<(), PlotError> {
    confusion_grid(items)?
        .save_with_format(path, image::ImageFormat::Png)
        .map_err(|source| PlotError::Encode {
            path: path.to_path_buf(),
            source,
        })
}

/// [`confusion_grid_png`]'s figure as PNG bytes.
pub fn confusion_grid_png_bytes(items: &[(String, Confusion)]) -> Result<Vec<u8>, PlotError> {
    png_bytes(&confusion_grid(items)?)
}

fn confusion_grid(items: &[(String, Confusion)]) -> Result<image::RgbImage, PlotError> {
    if items.is_empty() {
        return Err(PlotError::Empty("no confusion matrices"));
    }
    if items.len() > GRID_MAX {
        return Err(PlotError::TooMany {
            count: items.len(),
            max: GRID_MAX,
        });
    }
    let cols = items.len().min(GRID_COLUMNS);
    let rows = items.len().div_ceil(cols);
    render((480 * cols as u32, 500 * rows as u32), |root| {
        for (area, (title, c)) in root.split_evenly((rows, cols)).iter().zip(items) {
            confusion_panel(area, title, c)?;
        }
        Ok(())
    })
}

/// `name`, cut to `max` characters when longer by an `…` in its middle, so that names
/// differing only at their end (`class_with_a_long_name_3`) stay apart.
fn shorten(name: &str, max: usize) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() <= max {
        return name.to_owned();
    }
    let head = max.saturating_sub(1) / 2;
    let tail = max.saturating_sub(1) - head;
    let mut s: String = chars[..head].iter().collect();
    s.push('…');
    s.extend(&chars[chars.len() - tail..]);
    s
}

/// Matplotlib's "Blues" end points, interpolated linearly by `t` in [0, 1].
pub(crate) fn blues(t: f64) -> RGBColor {
    let (a, b) = ((247.0, 251.0, 255.0), (8.0, 48.0, 107.0));
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let mix = |x: f64, y: f64| (x + (y - x) * t).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

fn confusion_panel(
    area: &DrawingArea<Canvas<'_>, Shift>,
    title: &str,
    c: &Confusion,
) -> Result<(), PlotError> {
    let (w, h) = area.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    let centred = |size: f64| {
        (FONT, size)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Center))
    };
    let text = |s: &str, at: (i32, i32), style: &TextStyle<'_>| {
        area.draw(&Text::new(s.to_owned(), at, style.clone()))
            .map_err(draw_err("confusion matrix"))
    };

    // Layout: title on top, "True label" + tick labels on the left, "Predicted label" below.
    let (left, top, bottom, right) = (90, 64, 84, 24);
    let side = (w - left - right).min(h - top - bottom).max(40);
    let cell = side / 2;
    let x0 = left + (w - left - right - 2 * cell) / 2;
    let y0 = top;

    // Long titles shrink to fit the panel rather than run off its edges.
    let mut title_size = 22.0;
    while title_size > 11.0 {
        let (tw, _) = area
            .estimate_text_size(title, &centred(title_size))
            .map_err(draw_err("confusion matrix title"))?;
        if (tw as i32) <= w - 16 {
            break;
        }
        title_size -= 1.0;
    }
    text(title, (w / 2, 30), &centred(title_size))?;

    let rows = [[c.tn, c.fp], [c.fn_, c.tp]];
    matrix::cells(area, (x0, y0, cell), &rows, matrix::CellText::CountAndRate)?;

    let tick = centred(18.0);
    for k in 0..2 {
        let label = k.to_string();
        text(
            &label,
            (x0 + k * cell + cell / 2, y0 + 2 * cell + 16),
            &tick,
        )?;
        text(&label, (x0 - 16, y0 + k * cell + cell / 2), &tick)?;
    }
    text(
        "Predicted label",
        (x0 + cell, y0 + 2 * cell + 48),
        &centred(19.0),
    )?;
    let vertical = (FONT, 19)
        .into_font()
        .transform(FontTransform::Rotate270)
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Center));
    text("True label", (x0 - 52, y0 + cell), &vertical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded_size(path: &Path) -> (u32, u32) {
        let img = image::open(path).unwrap().to_rgb8();
        // Not blank: something besides the white background was drawn.
        assert!(img.pixels().any(|p| p.0 != [255, 255, 255]));
        img.dimensions()
    }

    fn rows() -> Vec<CurveRow> {
        (1..=30)
            .map(|e| {
                let x = f64::from(e);
                CurveRow {
                    epoch: e,
                    lr: 1e-3,
                    train_loss: 0.7 * (-x / 10.0).exp() + 0.05,
                    train_acc: 0.6 + 0.35 * (1.0 - (-x / 8.0).exp()),
                    train_bacc: 0.55 + 0.4 * (1.0 - (-x / 8.0).exp()),
                    val_loss: 0.6 * (-x / 12.0).exp() + 0.15 + 0.004 * x,
                    val_acc: 0.6 + 0.3 * (1.0 - (-x / 9.0).exp()),
                    val_bacc: 0.55 + 0.32 * (1.0 - (-x / 9.0).exp()),
                    test_bacc: (e % 10 == 0).then_some(0.5 + 0.3 * (1.0 - (-x / 9.0).exp())),
                }
            })
            .collect()
    }

    #[test]
    fn learning_curve_png_decodes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("curve.png");
        learning_curve_png(&p, "B3: augmented CNN", &rows(), 2).unwrap();
        assert_eq!(decoded_size(&p), (1400, 560));
        if let Ok(copy) = std::env::var("PIPE_PLOT_COPY_DIR") {
            std::fs::copy(&p, Path::new(&copy).join("curve.png")).unwrap();
        }
        // A single epoch and non-finite values still plot.
        let mut one = rows()[..1].to_vec();
        one[0].val_loss = f64::NAN;
        learning_curve_png(&p, "one epoch", &one, 3).unwrap();
        if let Ok(copy) = std::env::var("PIPE_PLOT_COPY_DIR") {
            std::fs::copy(&p, Path::new(&copy).join("curve1.png")).unwrap();
        }
        assert!(matches!(
            learning_curve_png(&p, "none", &[], 2),
            Err(PlotError::Empty(_))
        ));
    }

    #[test]
    fn confusion_pngs_decode() {
        let dir = tempfile::tempdir().unwrap();
        let c = Confusion {
            tn: 1800,
            fp: 212,
            fn_: 35,
            tp: 153,
        };
        let p = dir.path().join("cm.png");
        confusion_png(&p, "B3 test (threshold 0.42)", &c).unwrap();
        assert_eq!(decoded_size(&p), (560, 560));
        let items = vec![
            ("B1".to_owned(), c),
            (
                "B2".to_owned(),
                Confusion {
                    tp: 0,
                    fn_: 188,
                    ..c
                },
            ),
            ("B3".to_owned(), Confusion::default()),
        ];
        let g = dir.path().join("grid.png");
        confusion_grid_png(&g, &items).unwrap();
        assert_eq!(decoded_size(&g), (1440, 500));
        if let Ok(copy) = std::env::var("PIPE_PLOT_COPY_DIR") {
            std::fs::copy(&p, Path::new(&copy).join("cm.png")).unwrap();
            std::fs::copy(&g, Path::new(&copy).join("grid.png")).unwrap();
        }
        assert!(matches!(
            confusion_grid_png(&g, &[]),
            Err(PlotError::Empty(_))
        ));
        // Five wrap onto a second row of four columns.
        let mut five: Vec<_> = (0..5).map(|i| (format!("model {i}"), c)).collect();
        five[1].0 = "B3 with augmentation, tuned threshold 0.37, test split".to_owned();
        confusion_grid_png(&g, &five).unwrap();
        assert_eq!(decoded_size(&g), (1920, 1000));
        if let Ok(copy) = std::env::var("PIPE_PLOT_COPY_DIR") {
            std::fs::copy(&g, Path::new(&copy).join("grid5.png")).unwrap();
        }
        let many = vec![("m".to_owned(), c); GRID_MAX + 1];
        assert!(matches!(
            confusion_grid_png(&g, &many),
            Err(PlotError::TooMany { .. })
        ));
    }

    #[test]
    fn long_names_keep_their_start_and_end() {
        assert_eq!(shorten("class_with_a_long_name_3", 12), "class…name_3");
        assert_eq!(shorten("short", 12), "short");
        assert_eq!(shorten("abcdef", 5), "ab…ef");
    }

    #[test]
    fn unwritable_path_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing-dir").join("cm.png");
        let e = confusion_png(&p, "x", &Confusion::default()).unwrap_err();
        assert!(matches!(e, PlotError::Encode { .. }), "{e}");
    }
}
