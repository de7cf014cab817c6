//! The pipeline graph as inline SVG: one column per topological layer, stages coloured by their
//! outcome in the run, each with its seconds and cache-key prefix.

use super::escape;
use super::model::PipelineView;
use crate::record::Outcome;
use std::collections::BTreeMap;
use std::fmt::Write;

const COL: f64 = 200.0;
const ROW: f64 = 58.0;
const BOX_W: f64 = 170.0;
const BOX_H: f64 = 46.0;
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
        let hover = match &st.error {
            Some(e) => format!("{} ({}): {class}; {e}", st.id, st.kind),
            None => format!(
                "{} ({}): {class}, {:.2} s, key {}",
                st.id, st.kind, st.seconds, st.key
            ),
        };
        let _ = write!(
            s,
            r#"<g class="stage {class}" data-id="{id}"><title>{}</title><rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6"/><text x="{:.1}" y="{:.1}" class="sid">{id}</text><text x="{:.1}" y="{:.1}" class="sinfo">{class} · {:.1} s · {key}</text></g>"#,
            escape(&hover),
            x + 8.0,
            y + 19.0,
            x + 8.0,
            y + 37.0,
            st.seconds,
            id = escape(&st.id),
        );
    }
    s.push_str("</svg>");
    s
}
