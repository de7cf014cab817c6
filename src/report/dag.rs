//! The pipeline graph as inline SVG: one column per topological layer, stages coloured by their
//! outcome in the run, each with its cache-key prefix and the run that produced its output (for
//! a cached stage, the earlier run that ran it) with the stage's seconds in that run.

use super::escape;
use super::model::PipelineView;
use crate::record::Outcome;
use std::collections::BTreeMap;
use std::fmt::Write;

const COL: f64 = 225.0;
const ROW: f64 = 70.0;
const BOX_W: f64 = 200.0;
const BOX_H: f64 = 60.0;
const PAD: f64 = 10.0;

/// CSS class of an outcome (colours live in the page's style sheet).
pub fn outcome_class(o: Option<Outcome>) -> &'static str {
    match o {
        Some(Outcome::Ran) => "ran",
        Some(Outcome::Cached) => "cached",
        Some(Outcome::Failed) => "failed",
        Some(Outcome::Skipped) => "skipped",
        Some(Outcome::Pruned) => "pruned",
        None => "absent",
    }
}

pub fn svg(p: &PipelineView) -> String {
    let mut pos = BTreeMap::new();
    let mut rows: BTreeMap<usize, usize> = BTreeMap::new();
    for s in &p.stages {
        let r = rows.entry(s.layer).or_default();
        pos.insert(
            s.id.as_str(),
            (PAD + s.layer as f64 * COL, PAD + *r as f64 * ROW),
        );
        *r += 1;
    }
    let w = PAD * 2.0 + rows.len() as f64 * COL;
    let h = PAD * 2.0 + rows.values().copied().max().unwrap_or(1) as f64 * ROW;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="dag" viewBox="0 0 {w} {h}" width="{w}" style="max-width:100%;height:auto" data-stages="{}"><title>{}</title>"#,
        p.stages.len(),
        escape(&p.name)
    );
    for (from, to) in &p.edges {
        if let (Some(a), Some(b)) = (pos.get(from.as_str()), pos.get(to.as_str())) {
            let _ = write!(
                s,
                r#"<line class="edge" x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}"/>"#,
                a.0 + BOX_W,
                a.1 + BOX_H / 2.0,
                b.0,
                b.1 + BOX_H / 2.0
            );
        }
    }
    for st in &p.stages {
        let (x, y) = pos[st.id.as_str()];
        let class = outcome_class(st.outcome);
        let key = &st.key[..8.min(st.key.len())];
        let made = match &st.producer {
            Some(p) if p.this_run => format!("this run · {:.1} s", p.seconds),
            Some(p) => format!("run {} · {:.1} s", short_time(&p.started), p.seconds),
            None if st.outcome == Some(Outcome::Cached) => "producing run unknown".into(),
            None => String::new(),
        };
        let hover = match (&st.error, &st.producer) {
            (Some(e), _) => format!("{} ({}): {class}; {e}", st.id, st.kind),
            (None, Some(p)) => format!(
                "{} ({}): {class}, key {}; output made by the run started {} in {:.2} s",
                st.id, st.kind, st.key, p.started, p.seconds
            ),
            (None, None) => format!("{} ({}): {class}, key {}", st.id, st.kind, st.key),
        };
        let _ = write!(
            s,
            r#"<g class="stage {class}" data-id="{id}" data-made-by="{}"><title>{}</title><rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6"/><text x="{tx:.1}" y="{:.1}" class="sid">{id}</text><text x="{tx:.1}" y="{:.1}" class="sinfo">{class} · {key}</text><text x="{tx:.1}" y="{:.1}" class="sinfo made">{}</text></g>"#,
            escape(st.producer.as_ref().map_or("", |p| p.started.as_str())),
            escape(&hover),
            y + 18.0,
            y + 35.0,
            y + 51.0,
            escape(&made),
            tx = x + 8.0,
            id = escape(&st.id),
        );
    }
    s.push_str("</svg>");
    s
}

/// `2026-12-05T14:03:22.123Z` as `12-05 14:03:22` (a box's width); other forms unchanged.
fn short_time(started: &str) -> String {
    match (started.get(5..10), started.get(11..19)) {
        (Some(day), Some(time)) if started.as_bytes().get(10) == Some(&b'T') => {
            format!("{day} {time}")
        }
        _ => started.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn run_times_are_shortened_to_fit_a_box() {
        assert_eq!(
            super::short_time("2026-12-05T14:03:22.123Z"),
            "12-05 14:03:22"
        );
        assert_eq!(super::short_time("yesterday"), "yesterday");
    }
}
