//! Inline SVG charts drawn from numbers (never from PNGs), small enough for 50 models x 1,000
//! epochs: each series is one `<polyline>` of at most [`MAX_POINTS`] points (min/max per
//! bucket, so spikes survive decimation); sparse series (test points) are drawn as markers on
//! an invisible polyline.
//!
//! Every chart carries its plot box and value ranges as `data-*` attributes; the page's script
//! inverts them to show the values under the pointer, so no per-point markup is needed.

use super::escape;
use crate::figures::ticks::nice_ticks;
use std::fmt::Write;

/// Points kept per drawn series.
pub const MAX_POINTS: usize = 200;
const W: f64 = 720.0;
const H: f64 = 320.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 40.0;

/// Colours of series, by model index (Tableau 10).
pub const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

pub fn color(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Solid,
    Dashed,
    /// Markers only (sparse series such as test scores).
    Markers,
}

pub struct Series {
    /// The model (or evaluation) it belongs to: legend and hover text.
    pub owner: String,
    /// `train`, `val`, `test`, `roc`.
    pub name: String,
    pub color: &'static str,
    pub style: Style,
    pub points: Vec<(f64, f64)>,
}

/// A vertical mark (a learning-rate change), with its hover text.
pub struct Mark {
    pub x: f64,
    pub color: &'static str,
    pub text: String,
}

pub struct Chart<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub series: Vec<Series>,
    pub marks: Vec<Mark>,
    /// Fixed axis ranges (e.g. ROC's unit square); `None`: from the data.
    pub x_range: Option<(f64, f64)>,
    pub y_range: Option<(f64, f64)>,
    /// Whole-number x ticks (epochs).
    pub x_integer: bool,
    /// Values the y axis never extends past, padding included (a rate: 0 to 1).
    pub y_limits: Option<(f64, f64)>,
    /// Draw the y = x diagonal (ROC).
    pub diagonal: bool,
}

/// At most `max` points: the first, the last, and the minimum and maximum of each of
/// `(max - 2) / 2` equal buckets of the others, in x order.
pub fn decimate(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max || max < 4 {
        return points.to_vec();
    }
    let inner = &points[1..points.len() - 1];
    let buckets = (max - 2) / 2;
    let mut out = vec![points[0]];
    for b in 0..buckets {
        let lo = b * inner.len() / buckets;
        let hi = ((b + 1) * inner.len() / buckets).max(lo + 1);
        let chunk = &inner[lo..hi.min(inner.len())];
        let Some(imin) = (0..chunk.len()).min_by(|&a, &b| chunk[a].1.total_cmp(&chunk[b].1)) else {
            continue;
        };
        let imax = (0..chunk.len())
            .max_by(|&a, &b| chunk[a].1.total_cmp(&chunk[b].1))
            .unwrap_or(imin);
        let (a, b) = (imin.min(imax), imin.max(imax));
        out.push(chunk[a]);
        if b != a {
            out.push(chunk[b]);
        }
    }
    out.push(points[points.len() - 1]);
    out
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    (lo, hi)
}

/// The chart as one `<svg>` element.
pub fn line_chart(c: &Chart) -> String {
    let (x0, x1) = c
        .x_range
        .unwrap_or_else(|| range(c.series.iter().flat_map(|s| s.points.iter().map(|p| p.0))));
    let (y0, y1) = c.y_range.unwrap_or_else(|| {
        let (lo, hi) = range(c.series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
        let pad = (hi - lo) * 0.05;
        let (min, max) = c.y_limits.unwrap_or((f64::NEG_INFINITY, f64::INFINITY));
        ((lo - pad).max(min), (hi + pad).min(max))
    });
    // The axes span their ticks, so they start and end on round values.
    let x_ticks = nice_ticks(x0, x1, 8, c.x_integer);
    let y_ticks = nice_ticks(y0, y1, 6, false);
    let ((x0, x1), (y0, y1)) = (x_ticks.bounds(), y_ticks.bounds());
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let sx = |x: f64| LEFT + (x - x0) / (x1 - x0).max(1e-12) * pw;
    let sy = |y: f64| TOP + ph - (y - y0) / (y1 - y0).max(1e-12) * ph;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" id="{id}" viewBox="0 0 {W} {H}" role="img" data-x0="{x0}" data-x1="{x1}" data-y0="{y0}" data-y1="{y1}" data-left="{LEFT}" data-top="{TOP}" data-pw="{pw}" data-ph="{ph}" data-series="{n}"><title>{title}</title>"#,
        id = escape(c.id),
        title = escape(c.title),
        n = c.series.len(),
    );
    s.push_str("<defs>");
    for (k, col) in PALETTE.iter().enumerate() {
        let _ = write!(
            s,
            r#"<marker id="{}-dot{k}" viewBox="0 0 8 8" refX="4" refY="4" markerWidth="7" markerHeight="7" markerUnits="userSpaceOnUse"><circle cx="4" cy="4" r="3.5" fill="{col}"/></marker>"#,
            escape(c.id)
        );
    }
    s.push_str("</defs>");
    let _ = write!(
        s,
        r#"<text x="{}" y="18" class="ctitle">{}</text><rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" class="plot"/>"#,
        LEFT,
        escape(c.title)
    );
    for &fy in &y_ticks.values {
        let _ = write!(
            s,
            r#"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" class="grid"/><text x="{:.1}" y="{:.1}" class="tick" text-anchor="end">{}</text>"#,
            LEFT + pw,
            LEFT - 4.0,
            sy(fy) + 4.0,
            y_ticks.label(fy),
            y = sy(fy),
        );
    }
    for &fx in &x_ticks.values {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" class="tick" text-anchor="middle">{}</text>"#,
            sx(fx),
            TOP + ph + 14.0,
            x_ticks.label(fx),
        );
    }
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}" class="axis" text-anchor="middle">{}</text><text x="12" y="{:.1}" class="axis" text-anchor="middle" transform="rotate(-90 12 {:.1})">{}</text>"#,
        LEFT + pw / 2.0,
        H - 6.0,
        escape(c.x_label),
        TOP + ph / 2.0,
        TOP + ph / 2.0,
        escape(c.y_label)
    );
    if c.diagonal {
        let _ = write!(
            s,
            r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" class="diag"/>"#,
            sx(x0),
            sy(y0),
            sx(x1),
            sy(y1)
        );
    }
    for m in &c.marks {
        let _ = write!(
            s,
            r#"<line class="lr" x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{:.1}" stroke="{}"><title>{}</title></line>"#,
            TOP + ph,
            m.color,
            escape(&m.text),
            x = sx(m.x),
        );
    }
    for se in &c.series {
        let pts = decimate(&se.points, MAX_POINTS);
        let _ = write!(
            s,
            r#"<g class="series" data-owner="{}" data-name="{}" data-points="{}" stroke="{c}" fill="{c}">"#,
            escape(&se.owner),
            escape(&se.name),
            pts.len(),
            c = se.color,
        );
        if se.style == Style::Markers {
            // One polyline whose vertices carry the chart's dot marker: a few bytes per point
            // instead of an element each (the script's hover gives the values).
            let coords: Vec<String> = pts
                .iter()
                .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
                .collect();
            let dot = format!(
                "url(#{}-dot{})",
                escape(c.id),
                PALETTE.iter().position(|p| *p == se.color).unwrap_or(0)
            );
            let _ = write!(
                s,
                r#"<polyline fill="none" stroke="none" marker-start="{dot}" marker-mid="{dot}" marker-end="{dot}" points="{}"><title>{} {}</title></polyline>"#,
                coords.join(" "),
                escape(&se.owner),
                escape(&se.name),
            );
        } else {
            let coords: Vec<String> = pts
                .iter()
                .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
                .collect();
            let _ = write!(
                s,
                r#"<polyline fill="none" points="{}"{}><title>{} {}</title></polyline>"#,
                coords.join(" "),
                if se.style == Style::Dashed {
                    r#" stroke-dasharray="5 3""#
                } else {
                    ""
                },
                escape(&se.owner),
                escape(&se.name),
            );
        }
        s.push_str("</g>");
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimation_keeps_ends_and_extremes_within_the_budget() {
        let pts: Vec<(f64, f64)> = (0..1000)
            .map(|i| (i as f64, if i == 437 { 9.0 } else { (i as f64).sin() }))
            .collect();
        let d = decimate(&pts, MAX_POINTS);
        assert!(d.len() <= MAX_POINTS, "{}", d.len());
        assert_eq!(d[0], pts[0]);
        assert_eq!(d[d.len() - 1], pts[999]);
        assert!(d.contains(&(437.0, 9.0)), "the spike survives");
        assert!(d.windows(2).all(|w| w[0].0 < w[1].0), "x order kept");
        assert_eq!(decimate(&pts[..50], MAX_POINTS), pts[..50]);
    }

    #[test]
    fn a_chart_has_one_group_per_series_and_escapes_names() {
        let c = Chart {
            id: "loss",
            title: "Loss",
            x_label: "epoch",
            y_label: "loss",
            series: vec![
                Series {
                    owner: "<b>".into(),
                    name: "train".into(),
                    color: color(0),
                    style: Style::Solid,
                    points: vec![(1.0, 0.5), (2.0, 0.4)],
                },
                Series {
                    owner: "m".into(),
                    name: "test".into(),
                    color: color(1),
                    style: Style::Markers,
                    points: vec![(2.0, 0.7)],
                },
            ],
            marks: vec![],
            x_range: None,
            y_range: None,
            x_integer: true,
            y_limits: Some((0.0, 1.0)),
            diagonal: false,
        };
        let svg = line_chart(&c);
        // Round ticks: epochs 1 and 2 only; values by 0.1 around the padded 0.4 to 0.7.
        let ticks: Vec<&str> = svg
            .match_indices(r#"class="tick""#)
            .map(|(i, _)| {
                let text = &svg[i..];
                &text[text.find('>').unwrap() + 1..text.find('<').unwrap()]
            })
            .collect();
        assert_eq!(ticks, ["0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "1", "2"]);
        assert!(svg.contains(r#"data-y0="0.3" data-y1="0.8""#), "{svg}");
        assert_eq!(svg.matches(r#"<g class="series""#).count(), 2);
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b>"));
        assert_eq!(svg.matches("marker-mid=\"url(#loss-dot1)\"").count(), 1);
    }
}
