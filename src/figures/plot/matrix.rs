//! The N×N confusion matrix of a multi-class evaluation: rows the true classes, columns the
//! predicted ones, each cell shaded by its share of the row (the class's recall on the
//! diagonal) and labelled with its count while the cells are large enough to read.

use super::{Canvas, FONT, PlotError, blues, draw_err, render_png, shorten, text_width};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// Longest class name drawn as a tick label (longer ones end in `…`).
const MAX_TICK_CHARS: usize = 12;

/// Writes the matrix (`matrix[true][predicted]`, one row and column per class name) as PNG.
pub fn confusion_matrix_png(
    path: &Path,
    title: &str,
    classes: &[String],
    matrix: &[Vec<u64>],
) -> Result<(), PlotError> {
    let n = classes.len().max(1);
    let cell = (640 / n as i32).clamp(8, 72);
    // margins sized to the longest tick label, so short names leave no empty band
    let tick_size = tick_size(cell);
    let mut label_w = 0;
    for name in classes {
        label_w = label_w.max(text_width(&shorten(name, MAX_TICK_CHARS), tick_size as f32)? as i32);
    }
    let (left, top, right) = (AXIS_TITLE + label_w + TICK_GAP, 64, 24);
    let bottom = label_w + TICK_GAP + AXIS_TITLE;
    let width =
        (left + n as i32 * cell + right).max(text_width(title, TITLE_SIZE as f32)? as i32 + 32);
    let size = (width as u32, (top + n as i32 * cell + bottom) as u32);
    render_png(path, size, |root| {
        panel(root, title, classes, matrix, (left, top, cell, label_w))
    })
}

/// Room for an axis title ("True label", "Predicted label") beside the tick labels.
const AXIS_TITLE: i32 = 44;
/// Between a tick label and the matrix.
const TICK_GAP: i32 = 8;
const TITLE_SIZE: f64 = 20.0;

fn tick_size(cell: i32) -> f64 {
    f64::from(cell).clamp(9.0, 16.0)
}

fn panel(
    area: &DrawingArea<Canvas<'_>, Shift>,
    title: &str,
    classes: &[String],
    matrix: &[Vec<u64>],
    (x0, y0, cell, label_w): (i32, i32, i32, i32),
) -> Result<(), PlotError> {
    let (w, _) = area.dim_in_pixel();
    let style = |size: f64, h: HPos| {
        (FONT, size)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(h, VPos::Center))
    };
    let text = |s: &str, at: (i32, i32), st: &TextStyle<'_>| {
        area.draw(&Text::new(s.to_owned(), at, st.clone()))
            .map_err(draw_err("confusion matrix"))
    };
    text(title, (w as i32 / 2, 30), &style(TITLE_SIZE, HPos::Center))?;
    let n = classes.len() as i32;
    let counts = if cell >= 24 {
        CellText::Count(f64::from(cell) * 0.36)
    } else {
        CellText::Nothing
    };
    cells(area, (x0, y0, cell), matrix, counts)?;
    let tick_size = tick_size(cell);
    let vertical = (FONT, tick_size)
        .into_font()
        .transform(FontTransform::Rotate270)
        .color(&BLACK)
        .pos(Pos::new(HPos::Right, VPos::Center));
    for (k, name) in classes.iter().enumerate() {
        let mid = k as i32 * cell + cell / 2;
        let label = shorten(name, MAX_TICK_CHARS);
        text(
            &label,
            (x0 - TICK_GAP, y0 + mid),
            &style(tick_size, HPos::Right),
        )?;
        text(&label, (x0 + mid, y0 + n * cell + TICK_GAP), &vertical)?;
    }
    text(
        "Predicted label",
        (
            x0 + n * cell / 2,
            y0 + n * cell + TICK_GAP + label_w + AXIS_TITLE / 2,
        ),
        &style(17.0, HPos::Center),
    )?;
    let true_label = (FONT, 17)
        .into_font()
        .transform(FontTransform::Rotate270)
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Center));
    text(
        "True label",
        (x0 - TICK_GAP - label_w - AXIS_TITLE / 2, y0 + n * cell / 2),
        &true_label,
    )
}

/// What a cell shows over its shade.
pub(super) enum CellText {
    /// The count (30 px) over its share of the row in percent (18 px): the 2×2 matrix.
    CountAndRate,
    /// The count at this size.
    Count(f64),
    Nothing,
}

/// Draws `matrix` (`[true][predicted]`) as square cells of `cell` pixels from `(x0, y0)`,
/// each shaded by its share of its row, with `text` in white on dark cells, and the frame
/// around them: the body of both the 2×2 and the N×N confusion matrix.
pub(super) fn cells<R: AsRef<[u64]>>(
    area: &DrawingArea<Canvas<'_>, Shift>,
    (x0, y0, cell): (i32, i32, i32),
    matrix: &[R],
    text: CellText,
) -> Result<(), PlotError> {
    fn centred(size: f64, ink: &RGBColor) -> TextStyle<'_> {
        (FONT, size)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Center))
            .color(ink)
    }
    let write = |s: String, at: (i32, i32), st: TextStyle<'_>| {
        area.draw(&Text::new(s, at, st))
            .map_err(draw_err("confusion matrix"))
    };
    for (t, row) in matrix.iter().enumerate() {
        let row = row.as_ref();
        let total: u64 = row.iter().sum();
        for (p, &count) in row.iter().enumerate() {
            let rate = if total > 0 {
                count as f64 / total as f64
            } else {
                0.0
            };
            let (cx, cy) = (x0 + p as i32 * cell, y0 + t as i32 * cell);
            area.draw(&Rectangle::new(
                [(cx, cy), (cx + cell, cy + cell)],
                blues(rate).filled(),
            ))
            .map_err(draw_err("confusion matrix"))?;
            let ink = if rate > 0.5 { WHITE } else { BLACK };
            let mid = (cx + cell / 2, cy + cell / 2);
            match text {
                CellText::CountAndRate => {
                    write(count.to_string(), (mid.0, mid.1 - 14), centred(30.0, &ink))?;
                    let rate_text = if total > 0 {
                        format!("{:.1}%", 100.0 * rate)
                    } else {
                        "-".to_owned()
                    };
                    write(rate_text, (mid.0, mid.1 + 20), centred(18.0, &ink))?;
                }
                CellText::Count(size) => write(count.to_string(), mid, centred(size, &ink))?,
                CellText::Nothing => {}
            }
        }
    }
    let (rows, cols) = (
        matrix.len() as i32,
        matrix.first().map_or(0, |r| r.as_ref().len()) as i32,
    );
    area.draw(&Rectangle::new(
        [(x0, y0), (x0 + cols * cell, y0 + rows * cell)],
        RGBColor(90, 90, 90).stroke_width(1),
    ))
    .map_err(draw_err("confusion matrix"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_three_and_forty_classes() {
        let dir = tempfile::tempdir().unwrap();
        for n in [3usize, 40] {
            let classes: Vec<String> = (0..n)
                .map(|i| format!("class_with_a_long_name_{i}"))
                .collect();
            let matrix: Vec<Vec<u64>> = (0..n)
                .map(|t| {
                    (0..n)
                        .map(|p| if t == p { 9 } else { (t + p) as u64 % 3 })
                        .collect()
                })
                .collect();
            let png = dir.path().join(format!("m{n}.png"));
            confusion_matrix_png(&png, "test", &classes, &matrix).unwrap();
            let img = image::open(&png).unwrap().to_rgb8();
            assert!(img.pixels().any(|p| p.0 != [255, 255, 255]));
            if let Ok(copy) = std::env::var("PIPE_PLOT_COPY_DIR") {
                std::fs::copy(&png, Path::new(&copy).join(format!("m{n}.png"))).unwrap();
            }
        }
    }
}
