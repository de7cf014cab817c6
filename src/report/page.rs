//! Page assembly: the sections of the report in order, the style sheet and the small script
//! (table sorting, chart hover, a render mark for tests and benchmarks), all inline.
//!
//! Numbers are shown rounded and carried exactly in `data-v` attributes, which the sorting
//! script and the tests read.

use super::dag;
use super::escape;
use super::model::{EvalView, Figure, ModelView, Report};
use super::svg::{Chart, Mark, Series, Style, color, line_chart};
use crate::ml::multiclass::ClassRocs;
use base64::Engine as _;
use std::fmt::Write;

const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

pub fn render(r: &Report) -> String {
    let mut s = String::with_capacity(1 << 20);
    let names: Vec<&str> = r.pipelines.iter().map(|p| p.name.as_str()).collect();
    let _ = write!(
        s,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>pipe report: {}</title><style>{STYLE}</style></head><body><h1>pipe report: {}</h1>",
        escape(&names.join(", ")),
        escape(&names.join(", "))
    );
    // Only sections with something to show are rendered (and linked).
    let has_data = !r.data.is_empty()
        || r.figures
            .iter()
            .any(|f| DATA_FIGURES.contains(&f.kind.as_str()));
    let has_predictions = !r.predictions.is_empty()
        || r.figures
            .iter()
            .any(|f| PREDICT_FIGURES.contains(&f.kind.as_str()));
    let has_table = !r.evaluations.is_empty();
    s.push_str("<nav>");
    for (shown, id, title) in [
        (true, "dag", "Pipelines"),
        (has_data, "data", "Data cleaning"),
        (true, "training", "Training"),
        (has_table, "table1", "Table 1"),
        (has_predictions, "predictions", "Predictions"),
        (true, "provenance", "Provenance"),
    ] {
        if shown {
            let _ = write!(s, "<a href=\"#{id}\">{title}</a> ");
        }
    }
    s.push_str("</nav>");
    if !r.warnings.is_empty() {
        s.push_str("<section class=\"warnings\"><h2>Warnings</h2><ul>");
        for w in &r.warnings {
            let _ = write!(s, "<li>{}</li>", with_code(w));
        }
        s.push_str("</ul></section>");
    }
    dag_section(&mut s, r);
    if has_data {
        data_section(&mut s, r);
    }
    training_section(&mut s, &r.models);
    if has_table {
        table_section(&mut s, r);
    }
    if has_predictions {
        predictions_section(&mut s, r);
    }
    commands_section(&mut s, r);
    provenance_section(&mut s, r);
    let _ = write!(
        s,
        "<div id=\"tip\" hidden></div><script>{SCRIPT}</script></body></html>"
    );
    s
}

/// Kinds whose figures the data-cleaning section shows.
const DATA_FIGURES: &[&str] = &["dedup", "filter_conflicts", "augment", "source"];
/// Kinds whose figures the predictions section shows.
const PREDICT_FIGURES: &[&str] = &["predict", "analyze"];

/// `text` escaped, with each `quoted` span (ids in messages) set as `<code>` rather than
/// showing its backticks; an unpaired backtick stays as it is.
fn with_code(text: &str) -> String {
    let parts: Vec<&str> = text.split('`').collect();
    let mut out = String::with_capacity(text.len() + 16);
    for (i, part) in parts.iter().enumerate() {
        let quoted = i % 2 == 1 && i + 1 < parts.len();
        if quoted {
            let _ = write!(out, "<code>{}</code>", escape(part));
        } else {
            if i % 2 == 1 {
                out.push('`');
            }
            out.push_str(&escape(part));
        }
    }
    out
}

fn num(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(v) => format!("<td class=\"n\" data-v=\"{v}\">{v:.digits$}</td>"),
        None => "<td class=\"n\" data-v=\"\">–</td>".into(),
    }
}

fn dag_section(s: &mut String, r: &Report) {
    s.push_str("<section id=\"dag\"><h2>Pipelines</h2><p class=\"legend\"><span class=\"ran\">ran</span> <span class=\"cached\">cached</span> <span class=\"failed\">failed</span> <span class=\"skipped\">skipped</span> <span class=\"absent\">not in this run</span></p>");
    for p in &r.pipelines {
        let _ = write!(
            s,
            "<h3>{} <small>({}, {}, {:.1} s, {})</small></h3><div class=\"scroll\">{}</div>",
            escape(&p.name),
            escape(&p.file),
            escape(&p.started),
            p.seconds,
            if p.ok { "ok" } else { "failed" },
            dag::svg(p)
        );
    }
    s.push_str("</section>");
}

fn data_section(s: &mut String, r: &Report) {
    s.push_str("<section id=\"data\"><h2>Data cleaning</h2><div class=\"scroll\"><table class=\"counts\"><thead><tr><th>stage</th><th>kind</th><th>counts</th><th>summary</th></tr></thead><tbody>");
    for d in &r.data {
        let counts: Vec<String> = d
            .metrics
            .iter()
            .map(|(k, v)| {
                format!(
                    "<span class=\"metric\" data-k=\"{}\" data-v=\"{v}\">{}: {v}</span>",
                    escape(k),
                    escape(k)
                )
            })
            .collect();
        let _ = write!(
            s,
            "<tr data-stage=\"{id}\"><td>{id}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&d.kind),
            counts.join(" "),
            escape(&d.summary),
            id = escape(&d.id),
        );
    }
    s.push_str("</tbody></table></div>");
    for d in r.data.iter().filter(|d| !d.balance.is_empty()) {
        if let Some((names, parts)) = &d.class_balance {
            class_balance(s, &d.id, names, parts);
            continue;
        }
        let _ = write!(
            s,
            "<h3>Split sizes and class balance ({})</h3><table class=\"balance\"><thead><tr><th>part</th><th>images</th><th>positives</th><th>positive share</th></tr></thead><tbody>",
            escape(&d.id)
        );
        for (part, n, pos) in &d.balance {
            let share = *pos as f64 / (*n).max(1) as f64;
            let _ = write!(
                s,
                "<tr><td>{part}</td><td class=\"n\">{n}</td><td class=\"n\">{pos}</td><td class=\"n\"><span class=\"bar\" style=\"width:{:.0}px\"></span> {:.1}%</td></tr>",
                share * 100.0,
                share * 100.0
            );
        }
        s.push_str("</tbody></table>");
    }
    figures(s, &r.figures, DATA_FIGURES);
    s.push_str("</section>");
}

fn figures(s: &mut String, all: &[Figure], kinds: &[&str]) {
    for f in all.iter().filter(|f| kinds.contains(&f.kind.as_str())) {
        let _ = write!(
            s,
            "<figure data-stage=\"{id}\"><img alt=\"{id}: {cap}\" src=\"data:image/png;base64,{}\"><figcaption><code>{id}</code>: {cap}</figcaption></figure>",
            base64::engine::general_purpose::STANDARD.encode(&f.png),
            id = escape(&f.stage),
            cap = escape(&f.caption),
        );
    }
}

fn legend(s: &mut String, models: &[ModelView]) {
    s.push_str("<p class=\"legend\">");
    for (i, m) in models.iter().enumerate() {
        let _ = write!(
            s,
            "<span><i style=\"background:{}\"></i>{} ({})</span> ",
            color(i),
            escape(&m.label()),
            escape(&m.model)
        );
    }
    s.push_str(
        "— solid: train, dashed: validation, dots: test; vertical lines: learning-rate changes</p>",
    );
}

/// A curve column drawn as one series per model: its name, style and value per epoch.
type Column<'a> = (
    &'a str,
    Style,
    fn(&crate::ml::curve::CurveRow) -> Option<f64>,
);

/// Series of one metric family over every model.
fn curves(models: &[ModelView], pick: &[Column]) -> Vec<Series> {
    let mut out = Vec::new();
    for (i, m) in models.iter().enumerate() {
        for (name, style, f) in pick {
            let points: Vec<(f64, f64)> = m
                .curve
                .iter()
                .filter_map(|r| Some((f64::from(r.epoch), f(r)?)))
                .collect();
            if !points.is_empty() {
                out.push(Series {
                    owner: m.label(),
                    name: name.to_string(),
                    color: color(i),
                    style: *style,
                    points,
                });
            }
        }
    }
    out
}

fn lr_marks(models: &[ModelView]) -> Vec<Mark> {
    let mut out = Vec::new();
    for (i, m) in models.iter().enumerate() {
        for w in m.curve.windows(2) {
            if w[1].lr != w[0].lr {
                out.push(Mark {
                    x: f64::from(w[1].epoch),
                    color: color(i),
                    text: format!(
                        "{}: lr {:.1e} → {:.1e} at epoch {}",
                        m.label(),
                        w[0].lr,
                        w[1].lr,
                        w[1].epoch
                    ),
                });
            }
        }
    }
    out
}

fn training_section(s: &mut String, models: &[ModelView]) {
    s.push_str("<section id=\"training\"><h2>Training</h2>");
    if models.is_empty() {
        s.push_str("<p>No trained model in these runs.</p></section>");
        return;
    }
    legend(s, models);
    let loss = curves(
        models,
        &[
            ("train", Style::Solid, |r| Some(r.train_loss)),
            ("val", Style::Dashed, |r| Some(r.val_loss)),
        ],
    );
    let bacc = curves(
        models,
        &[
            ("train", Style::Solid, |r| Some(r.train_bacc)),
            ("val", Style::Dashed, |r| Some(r.val_bacc)),
            ("test", Style::Markers, |r| r.test_bacc),
        ],
    );
    for (id, title, y, series, y_limits) in [
        (
            "chart-loss",
            "Loss",
            "loss",
            loss,
            Some((0.0, f64::INFINITY)),
        ),
        (
            "chart-bacc",
            "Balanced accuracy",
            "balanced accuracy",
            bacc,
            Some((0.0, 1.0)),
        ),
    ] {
        s.push_str(&line_chart(&Chart {
            id,
            title,
            x_label: "epoch",
            y_label: y,
            series,
            marks: lr_marks(models),
            x_range: None,
            y_range: None,
            x_integer: true,
            y_limits,
            diagonal: false,
        }));
    }
    s.push_str("<div class=\"scroll\"><table class=\"sortable\" id=\"models\"><thead><tr><th>stage</th><th>model</th><th>epochs</th><th>parameters</th><th>training s</th></tr></thead><tbody>");
    for m in models {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td>{}{}{}</tr>",
            escape(&m.label()),
            escape(&m.model),
            num(Some(m.curve.len() as f64), 0),
            num(m.params, 0),
            num(m.train_seconds, 1)
        );
    }
    s.push_str("</tbody></table></div></section>");
}

/// A metric cell; the table's best value of the metric bold (`best`).
fn metric(e: &EvalView, key: &str, v: Option<f64>) -> String {
    match v {
        Some(v) if e.best.contains(key) => {
            format!("<td class=\"n best\" data-v=\"{v}\"><b>{v:.4}</b></td>")
        }
        v => num(v, 4),
    }
}

/// Table 1's heading, its sweeps' shared overrides, and its header: the pipeline, the swept
/// paths (short names), then the facts.
fn table_head(s: &mut String, r: &Report) {
    s.push_str("<section id=\"table1\"><h2>Table 1: evaluations</h2><p>Click a header to sort; the best value of each metric is bold.</p>");
    if r.evaluations.iter().any(|e| e.classes.is_some()) {
        s.push_str("<p>For more than two classes, balanced accuracy is the macro one (the mean of the per-class recalls) and ROC AUC the mean of the one-vs-rest AUCs; each such evaluation's classes are shown below the table.</p>");
    }
    for w in &r.sweeps {
        let _ = write!(
            s,
            "<p class=\"sweep\" data-sweep=\"{}\">Sweep <code>{}</code> of {} ({} variants): the swept values are columns; {}.</p>",
            escape(&w.id),
            escape(&w.id),
            escape(&w.pipeline),
            w.variants,
            if w.shared.is_empty() {
                "no other overrides".to_string()
            } else {
                format!("every variant also ran with {}", overrides(&w.shared))
            }
        );
    }
    s.push_str("<div class=\"scroll\"><table class=\"sortable\" id=\"evaluations\"><thead><tr><th>pipeline</th>");
    let all: Vec<&str> = r.swept.iter().map(String::as_str).collect();
    for p in &all {
        let _ = write!(
            s,
            "<th class=\"swept\" title=\"{}\">{}</th>",
            escape(p),
            escape(crate::sweep::short_name(p, &all))
        );
    }
    s.push_str("<th>stage</th><th>model(s)</th><th>balanced accuracy</th><th>accuracy</th><th>ROC AUC</th><th>threshold</th><th>parameters</th><th>training s</th></tr></thead><tbody>");
}

/// Table 1's greyed rows: search trials the pruner stopped, with the epoch they stopped after.
fn pruned_rows(s: &mut String, r: &Report) {
    for p in &r.pruned {
        let mut swept = String::new();
        for path in &r.swept {
            let v = p.variant.get(path).map_or("–".into(), |v| escape(v));
            let _ = write!(swept, "<td class=\"swept\">{v}</td>");
        }
        let val = p
            .val_bacc
            .map(|v| format!(" title=\"validation balanced accuracy {v:.4} at that epoch\""))
            .unwrap_or_default();
        let _ = write!(
            s,
            "<tr class=\"pruned\" data-stage=\"{st}\" data-variant=\"{}\"{val}><td>{}</td>{swept}<td>{st}</td><td>pruned @ epoch {} of {}</td><td>–</td><td>–</td><td>–</td><td>–</td><td>–</td><td>–</td></tr>",
            escape(&crate::sweep::name_of(&p.variant)),
            escape(&p.pipeline),
            p.epoch,
            p.epochs,
            st = escape(&p.stage),
        );
    }
}

fn table_section(s: &mut String, r: &Report) {
    let evals = &r.evaluations;
    table_head(s, r);
    for e in evals {
        let mut swept = String::new();
        for p in &r.swept {
            let v = e.variant.get(p).map_or("–".into(), |v| escape(v));
            let _ = write!(swept, "<td class=\"swept\">{v}</td>");
        }
        let variant = if e.variant.is_empty() {
            String::new()
        } else {
            format!(
                " data-variant=\"{}\"",
                escape(&crate::sweep::name_of(&e.variant))
            )
        };
        let _ = write!(
            s,
            "<tr data-stage=\"{st}\"{variant}><td>{}</td>{swept}<td>{st}</td><td>{}</td>{}{}{}{}{}{}</tr>",
            escape(&e.pipeline),
            escape(&e.models.join(" + ")),
            metric(e, "balanced_accuracy", Some(e.balanced_accuracy)),
            metric(e, "accuracy", e.accuracy),
            metric(e, "roc_auc", e.roc_auc),
            num(e.threshold, 3),
            num(e.params, 0),
            num(e.train_seconds, 1),
            st = escape(&e.stage),
        );
    }
    pruned_rows(s, r);
    s.push_str("</tbody></table></div>");
    if evals.iter().any(|e| e.confusion.is_some()) {
        s.push_str("<h3>Confusion matrices</h3><div class=\"matrices\">");
    }
    for e in evals {
        let Some(c) = &e.confusion else { continue };
        let _ = write!(
            s,
            "<table class=\"confusion\"><caption>{}</caption><tr><th></th><th>pred 0</th><th>pred 1</th></tr><tr><th>true 0</th><td>{}</td><td>{}</td></tr><tr><th>true 1</th><td>{}</td><td>{}</td></tr></table>",
            escape(&e.label()),
            c.tn,
            c.fp,
            c.fn_,
            c.tp
        );
    }
    if evals.iter().any(|e| e.confusion.is_some()) {
        s.push_str("</div>");
    }
    for (i, e) in evals.iter().enumerate() {
        if let Some(c) = &e.classes {
            class_tables(s, &e.label(), c);
        }
        if let Some(r) = &e.class_rocs {
            class_roc_chart(s, &e.label(), r, i);
        }
    }
    let roc: Vec<Series> = evals
        .iter()
        .enumerate()
        .filter_map(|(i, e)| {
            Some(Series {
                owner: e.label(),
                name: "roc".into(),
                color: color(i),
                style: Style::Solid,
                points: e.roc.clone()?,
            })
        })
        .collect();
    if !roc.is_empty() {
        s.push_str("<h3>ROC curves</h3><p class=\"legend\">");
        for (i, e) in evals.iter().enumerate().filter(|(_, e)| e.roc.is_some()) {
            let _ = write!(
                s,
                "<span><i style=\"background:{}\"></i>{}</span> ",
                color(i),
                escape(&e.label())
            );
        }
        s.push_str("</p>");
        s.push_str(&line_chart(&Chart {
            id: "chart-roc",
            title: "ROC",
            x_label: "false positive rate",
            y_label: "true positive rate",
            series: roc,
            marks: Vec::new(),
            x_range: Some((0.0, 1.0)),
            y_range: Some((0.0, 1.0)),
            x_integer: false,
            y_limits: None,
            diagonal: true,
        }));
    }
    s.push_str("</section>");
}

fn predictions_section(s: &mut String, r: &Report) {
    s.push_str("<section id=\"predictions\"><h2>Predictions</h2>");
    for p in &r.predictions {
        let _ = write!(
            s,
            "<h3>{}</h3><p>{}</p>",
            escape(&p.stage),
            escape(&p.summary)
        );
        if !p.metrics.is_empty() {
            s.push_str("<ul>");
            for (k, v) in &p.metrics {
                let _ = write!(s, "<li>{}: {v}</li>", escape(k));
            }
            s.push_str("</ul>");
        }
    }
    figures(s, &r.figures, PREDICT_FIGURES);
    s.push_str("</section>");
}

/// The pipelines' command stages: summary, metrics and plots (absent when there are none).
fn commands_section(s: &mut String, r: &Report) {
    if r.commands.is_empty() {
        return;
    }
    s.push_str("<section id=\"commands\"><h2>Command stages</h2>");
    for c in &r.commands {
        let _ = write!(
            s,
            "<h3>{}</h3><p>{}</p><ul>",
            escape(&c.stage),
            escape(&c.summary)
        );
        for (k, v) in &c.metrics {
            let _ = write!(s, "<li>{}: {v}</li>", escape(k));
        }
        s.push_str("</ul>");
    }
    for (i, p) in r.plots.iter().enumerate() {
        let (x_label, columns) = &p.series;
        let title = format!("{}: {}", p.stage, p.file);
        let _ = write!(s, "<h3>{}</h3><p class=\"legend\">", escape(&title));
        let mut series = Vec::new();
        for (k, (name, points)) in columns.iter().enumerate() {
            let _ = write!(
                s,
                "<span><i style=\"background:{}\"></i>{}</span> ",
                color(k),
                escape(name)
            );
            series.push(Series {
                owner: p.stage.clone(),
                name: name.clone(),
                color: color(k),
                style: Style::Solid,
                points: points.clone(),
            });
        }
        s.push_str("</p>");
        s.push_str(&line_chart(&Chart {
            id: &format!("chart-command-{i}"),
            title: &title,
            x_label,
            y_label: "",
            series,
            marks: Vec::new(),
            x_range: None,
            y_range: None,
            diagonal: false,
            x_integer: false,
            y_limits: None,
        }));
    }
    figures(s, &r.figures, &["command"]);
    s.push_str("</section>");
}

fn provenance_section(s: &mut String, r: &Report) {
    let _ = write!(
        s,
        "<section id=\"provenance\"><h2>Provenance</h2><p>pipe {}.</p><div class=\"scroll\"><table class=\"provenance\"><thead><tr><th>pipeline</th><th>file</th><th>file blake3</th><th>started</th><th>seconds</th><th>overrides</th><th>seeds</th><th>devices</th></tr></thead><tbody>",
        escape(&r.pipe_version)
    );
    for p in &r.pipelines {
        let join = |v: &[(String, String)]| {
            v.iter()
                .map(|(a, b)| format!("{}={}", escape(a), escape(b)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let seeds: Vec<(String, String)> = p
            .seeds
            .iter()
            .map(|(a, b)| (a.clone(), b.to_string()))
            .collect();
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td class=\"n\">{:.1}</td><td class=\"overrides\">{}</td><td>{}</td><td>{}</td></tr>",
            escape(&p.name),
            escape(&p.file),
            escape(&p.file_digest),
            escape(&p.started),
            p.seconds,
            overrides(&p.overrides),
            join(&seeds),
            join(&p.devices)
        );
    }
    s.push_str("</tbody></table></div></section>");
}

/// The run's overrides, one `<code>` each (escaped), or `none`.
fn overrides(all: &[String]) -> String {
    if all.is_empty() {
        return "none".into();
    }
    all.iter()
        .map(|o| format!("<code>{}</code>", escape(o)))
        .collect::<Vec<_>>()
        .join(" ")
}
/// A split of N classes: per part, its images and each class's count and share.
fn class_balance(s: &mut String, id: &str, names: &[String], parts: &[super::model::PartClasses]) {
    let _ = write!(
        s,
        "<h3>Split sizes and class balance ({})</h3><div class=\"scroll\"><table class=\"balance\"><thead><tr><th>part</th><th>images</th>",
        escape(id)
    );
    for name in names {
        let _ = write!(s, "<th>{}</th>", escape(name));
    }
    s.push_str("</tr></thead><tbody>");
    for (part, counts) in parts {
        let n: usize = counts.iter().sum();
        let _ = write!(s, "<tr><td>{}</td><td class=\"n\">{n}</td>", escape(part));
        for c in counts {
            let share = *c as f64 / n.max(1) as f64 * 100.0;
            let _ = write!(s, "<td class=\"n\">{c} ({share:.1}%)</td>");
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table></div>");
}

/// An N-class evaluation: its N×N confusion matrix (rows true, columns predicted) and each
/// class's precision, recall and F1.
fn class_tables(s: &mut String, label: &str, c: &super::model::ClassesView) {
    let _ = write!(
        s,
        "<h3>{} by class</h3><div class=\"scroll\"><table class=\"confusion multiclass\"><tr><th>true \\ predicted</th>",
        escape(label)
    );
    for name in &c.classes {
        let _ = write!(s, "<th>{}</th>", escape(name));
    }
    s.push_str("</tr>");
    for (name, row) in c.classes.iter().zip(&c.matrix) {
        let _ = write!(s, "<tr><th>{}</th>", escape(name));
        let total: u64 = row.iter().sum();
        for v in row {
            // shaded by the share of the row, as confusion.png
            let rate = *v as f64 / total.max(1) as f64;
            let b = crate::figures::plot::blues(rate);
            let ink = if rate > 0.5 { "#fff" } else { "#000" };
            let _ = write!(
                s,
                "<td style=\"background:rgb({},{},{});color:{ink}\">{v}</td>",
                b.0, b.1, b.2
            );
        }
        s.push_str("</tr>");
    }
    let auc = c.roc_auc_per_class.len() == c.classes.len();
    s.push_str("</table></div><div class=\"scroll\"><table class=\"per-class\"><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th>");
    if auc {
        s.push_str("<th>ROC AUC (one vs rest)</th>");
    }
    s.push_str("<th>support</th></tr>");
    for (i, (name, k)) in c.classes.iter().zip(&c.per_class).enumerate() {
        let _ = write!(
            s,
            "<tr><td>{}</td>{}{}{}",
            escape(name),
            num(Some(k.precision), 4),
            num(Some(k.recall), 4),
            num(Some(k.f1), 4),
        );
        if auc {
            s.push_str(&num(c.roc_auc_per_class[i], 4));
        }
        let _ = write!(s, "<td class=\"n\">{}</td></tr>", k.support);
    }
    s.push_str("</table></div>");
}

/// An N-class evaluation's one-vs-rest ROC curves: every class's, or the
/// [`ROC_SHOWN`](crate::ml::multiclass::ROC_SHOWN) with the lowest AUC when there are more
/// (the legend says so), and the macro average, dashed.
fn class_roc_chart(s: &mut String, label: &str, r: &ClassRocs, index: usize) {
    if r.macro_average.is_empty() {
        return;
    }
    let shown = r.shown();
    let with_curve = r.with_curve();
    let _ = write!(
        s,
        "<h3>{} ROC curves by class (one vs rest)</h3><p class=\"legend\">",
        escape(label)
    );
    if shown.len() < with_curve {
        let _ = write!(
            s,
            "<span>the {} of {with_curve} classes with the lowest AUC:</span> ",
            shown.len()
        );
    }
    let mut series = Vec::new();
    for (k, c) in shown.iter().enumerate() {
        let _ = write!(
            s,
            "<span><i style=\"background:{}\"></i>{} (AUC {})</span> ",
            color(k),
            escape(&c.class),
            auc3(c.auc)
        );
        series.push(Series {
            owner: c.class.clone(),
            name: "roc".into(),
            color: color(k),
            style: Style::Solid,
            points: c.points.clone(),
        });
    }
    let _ = write!(
        s,
        "<span><i style=\"background:{MACRO_COLOR}\"></i>macro average of {with_curve} (mean AUC {}), dashed</span></p>",
        auc3(r.macro_auc)
    );
    series.push(Series {
        owner: "macro average".into(),
        name: "roc".into(),
        color: MACRO_COLOR,
        style: Style::Dashed,
        points: r.macro_average.clone(),
    });
    s.push_str(&line_chart(&Chart {
        id: &format!("chart-class-roc-{index}"),
        title: &format!("{label}: ROC by class"),
        x_label: "false positive rate",
        y_label: "true positive rate",
        series,
        marks: Vec::new(),
        x_range: Some((0.0, 1.0)),
        y_range: Some((0.0, 1.0)),
        x_integer: false,
        y_limits: None,
        diagonal: true,
    }));
}

fn auc3(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.3}"))
}

/// The macro-average curve's colour (the class curves take the palette's).
const MACRO_COLOR: &str = "#333333";

#[cfg(test)]
mod tests {
    #[test]
    fn quoted_ids_become_code_and_stray_backticks_stay() {
        assert_eq!(
            super::with_code("`train_b2` of <p>: `x"),
            "<code>train_b2</code> of &lt;p&gt;: `x"
        );
        assert_eq!(super::with_code("no quotes"), "no quotes");
    }
}
