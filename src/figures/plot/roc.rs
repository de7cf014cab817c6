//! One-vs-rest ROC curves of an N-class evaluation: one line per class (at most
//! [`ROC_SHOWN`](crate::ml::multiclass::ROC_SHOWN), those with the lowest AUC when there are more, which the legend says) and
//! the macro average, dashed, over the chance diagonal.

use super::{FONT, PlotError, draw_err, render_png, shorten};
use crate::ml::multiclass::ClassRocs;
use plotters::prelude::*;
use std::path::Path;

/// Tableau 10, the report's series colours.
const PALETTE: [RGBColor; 10] = [
    RGBColor(78, 121, 167),
    RGBColor(242, 142, 43),
    RGBColor(225, 87, 89),
    RGBColor(118, 183, 178),
    RGBColor(89, 161, 79),
    RGBColor(237, 201, 72),
    RGBColor(176, 122, 161),
    RGBColor(255, 157, 167),
    RGBColor(156, 117, 95),
    RGBColor(186, 176, 172),
];

/// Longest class name written in the legend (longer ones end in `…`).
const MAX_NAME_CHARS: usize = 24;

/// Writes the curves of `rocs` as PNG.
pub fn class_roc_png(path: &Path, title: &str, rocs: &ClassRocs) -> Result<(), PlotError> {
    if rocs.macro_average.is_empty() {
        return Err(PlotError::Empty("no class has a ROC curve"));
    }
    render_png(path, (760, 700), |root| {
        let what = "ROC curves";
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 22))
            .margin(18)
            .x_label_area_size(50)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)
            .map_err(draw_err(what))?;
        chart
            .configure_mesh()
            .x_desc("False positive rate")
            .y_desc("True positive rate")
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&|v| format!("{v:.1}"))
            .y_label_formatter(&|v| format!("{v:.1}"))
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 17))
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(225, 225, 225))
            .draw()
            .map_err(draw_err(what))?;
        let grey = RGBColor(150, 150, 150);
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, 0.0), (1.0, 1.0)],
                4,
                6,
                grey.stroke_width(1),
            ))
            .map_err(draw_err(what))?;
        let shown = rocs.shown();
        let with_curve = rocs.with_curve();
        if shown.len() < with_curve {
            // a legend line of its own, without a mark
            chart
                .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
                .map_err(draw_err(what))?
                .label(format!(
                    "the {} of {with_curve} classes with the lowest AUC:",
                    shown.len()
                ))
                .legend(|(x, y)| Circle::new((x, y), 0, TRANSPARENT.filled()));
        }
        for (i, c) in shown.iter().enumerate() {
            let style = PALETTE[i % PALETTE.len()].stroke_width(2);
            chart
                .draw_series(LineSeries::new(c.points.iter().copied(), style))
                .map_err(draw_err(what))?
                .label(format!(
                    "{} (AUC {:.3})",
                    shorten(&c.class, MAX_NAME_CHARS),
                    c.auc.unwrap_or(f64::NAN)
                ))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
        }
        let style = BLACK.stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new(
                rocs.macro_average.iter().copied(),
                8,
                5,
                style,
            ))
            .map_err(draw_err(what))?
            .label(format!(
                "macro average of {with_curve} (mean AUC {:.3})",
                rocs.macro_auc.unwrap_or(f64::NAN)
            ))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(160, 160, 160))
            .label_font((FONT, 15))
            .draw()
            .map_err(draw_err(what))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` classes, two samples each, scored so that AUCs differ between classes.
    fn rocs(n: usize) -> ClassRocs {
        let labels: Vec<u8> = (0..n as u8).flat_map(|c| [c, c]).collect();
        let probs: Vec<f32> = labels
            .iter()
            .enumerate()
            .flat_map(|(s, &y)| {
                (0..n).map(move |c| {
                    let base = if c == y as usize { 0.6 } else { 0.3 };
                    base + ((s * 7 + c * 3) % 10) as f32 * 0.04
                })
            })
            .collect();
        let names: Vec<String> = (0..n).map(|c| format!("class_{c}")).collect();
        ClassRocs::new(&labels, &probs, &names)
    }

    #[test]
    fn draws_three_and_forty_classes() {
        let dir = tempfile::tempdir().unwrap();
        for n in [3usize, 40] {
            let png = dir.path().join(format!("roc{n}.png"));
            class_roc_png(&png, "evaluate (Test split)", &rocs(n)).unwrap();
            let img = image::open(&png).unwrap().to_rgb8();
            assert_eq!(img.dimensions(), (760, 700));
            // the first class colour is drawn
            assert!(img.pixels().any(|p| p.0 == [78, 121, 167]));
            if let Ok(copy) = std::env::var("PIPE_PLOT_COPY_DIR") {
                std::fs::copy(&png, Path::new(&copy).join(format!("roc{n}.png"))).unwrap();
            }
        }
        let none = ClassRocs::new(&[], &[], &["a".to_owned()]);
        let e = class_roc_png(&dir.path().join("x.png"), "x", &none).unwrap_err();
        assert!(matches!(e, PlotError::Empty(_)), "{e}");
    }
}
