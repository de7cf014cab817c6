//! The N×N confusion matrix of a multi-class evaluation: rows the true classes, columns the
//! predicted ones, each cell shaded by its share of the row (the class's recall on the
//! diagonal) and labelled with its count while the cells are large enough to read.

use super::{Canvas, FONT, PlotError, blues, draw_err, render_png};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// Longest class name drawn as a tick label (longer ones end in `…`).
const MAX_TICK_CHARS: usize = 12;

fn tick_text(name: &str) -> String {
    if name.chars().count() > MAX_TICK_CHARS {
        let mut s: String = name.chars().take(MAX_TICK_CHARS - 1).collect();
        s.push('…');
        s
    } else {
        name.to_owned()
    }
}

/// Writes the matrix (`matrix[true][predicted]`, one row and column per class name) as PNG.
pub fn confusion_matrix_png(
    path: &Path,
    title: &str,
    classes: &[String],
    matrix: &[Vec<u64>],
) -> Result<(), PlotError> {
    let n = classes.len().max(1);
    let cell = (640 / n as i32).clamp(8, 72);
    let (left, top, bottom, right) = (150, 64, 150, 24);
    let size = (
        (left + n as i32 * cell + right).max(420) as u32,
        (top + n as i32 * cell + bottom) as u32,
    );
    render_png(path, size, |root| {
        panel(root, title, classes, matrix, (left, top, cell))
    })
}

fn panel(
    area: &DrawingArea<Canvas<'_>, Shift>,
    title: &str,
    classes: &[String],
    matrix: &[Vec<u64>],
    (x0, y0, cell): (i32, i32, i32),
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
    text(title, (w as i32 / 2, 30), &style(20.0, HPos::Center))?;
    let n = classes.len() as i32;
    for (t, row) in matrix.iter().enumerate() {
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
            if cell >= 24 {
                let ink = if rate > 0.5 { WHITE } else { BLACK };
                let st = style(f64::from(cell) * 0.36, HPos::Center).color(&ink);
                text(&count.to_string(), (cx + cell / 2, cy + cell / 2), &st)?;
            }
        }
    }
    area.draw(&Rectangle::new(
        [(x0, y0), (x0 + n * cell, y0 + n * cell)],
        RGBColor(90, 90, 90).stroke_width(1),
    ))
    .map_err(draw_err("confusion matrix"))?;
    let tick_size = f64::from(cell).clamp(9.0, 16.0);
    let vertical = (FONT, tick_size)
        .into_font()
        .transform(FontTransform::Rotate270)
        .color(&BLACK)
        .pos(Pos::new(HPos::Right, VPos::Center));
    for (k, name) in classes.iter().enumerate() {
        let mid = k as i32 * cell + cell / 2;
        let label = tick_text(name);
        text(&label, (x0 - 8, y0 + mid), &style(tick_size, HPos::Right))?;
        text(&label, (x0 + mid, y0 + n * cell + 8), &vertical)?;
    }
    text(
        "Predicted label",
        (x0 + n * cell / 2, y0 + n * cell + 130),
        &style(17.0, HPos::Center),
    )?;
    let true_label = (FONT, 17)
        .into_font()
        .transform(FontTransform::Rotate270)
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Center));
    text("True label", (18, y0 + n * cell / 2), &true_label)
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
        }
    }
}
