//! The report's data: everything the page shows, extracted once from run records (numbers,
//! outcomes, timings) and from the cache objects they name (curves, confusion matrices,
//! probabilities, images), so the page code only formats and a test can compare the two.
//!
//! Objects are reached through an [`Objects`] function that returns a *verified* object
//! directory; a damaged or missing object becomes a warning on the page, never a guess.

use crate::ml::curve::{CurveRow, read_csv};
use crate::ml::metrics::Confusion;
use crate::record::StageRecord;
use crate::record::{Outcome, RunRecord};
use crate::sweep::table::METRICS;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A sweep variant's values: override path → value as given (empty outside a sweep).
pub type Variant = BTreeMap<String, String>;

/// Returns the verified directory of an object digest, or why it cannot be used.
pub type Objects<'a> = &'a dyn Fn(&str) -> Result<PathBuf, String>;

/// Stage → input slot → producing stage: the pipeline's graph.
pub type Graph = BTreeMap<String, BTreeMap<String, String>>;

/// One pipeline's latest run, as the report receives it.
pub struct RunInput {
    /// The pipeline file as given on the command line.
    pub file: String,
    /// blake3 of the file's bytes now.
    pub file_digest: String,
    pub graph: Graph,
    pub record: RunRecord,
    /// When `record` is one variant of a sweep: the latest run of every variant of that sweep
    /// (in the order they first ran), whose models and evaluations the page shows; else empty.
    pub sweep: Vec<RunRecord>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub pipe_version: String,
    pub pipelines: Vec<PipelineView>,
    pub data: Vec<DataStage>,
    pub models: Vec<ModelView>,
    pub evaluations: Vec<EvalView>,
    pub figures: Vec<Figure>,
    pub predictions: Vec<PredictView>,
    /// Command stages (their summary and the numbers of their `metrics` file).
    pub commands: Vec<PredictView>,
    /// Command stages' CSV `plots`, drawn as line charts.
    pub plots: Vec<CsvPlot>,
    pub warnings: Vec<String>,
    /// The swept override paths of the runs' sweeps, in order of appearance: Table 1's columns.
    pub swept: Vec<String>,
    /// The runs' sweeps, with the overrides their variants shared.
    pub sweeps: Vec<SweepView>,
    /// Search trials the pruner stopped: Table 1 shows them greyed, after the evaluations.
    pub pruned: Vec<PrunedView>,
}

/// A sweep shown in the report: its id, pipeline, variant count and the `--set` overrides
/// every variant ran with (the swept values are Table 1's columns).
#[derive(Debug)]
pub struct SweepView {
    pub id: String,
    pub pipeline: String,
    pub variants: usize,
    pub shared: Vec<String>,
}

/// A trial's training stopped by a search's pruner (its evaluations never ran).
#[derive(Debug)]
pub struct PrunedView {
    pub stage: String,
    pub variant: Variant,
    pub pipeline: String,
    /// The epoch after which it stopped, of `epochs`.
    pub epoch: u32,
    pub epochs: u32,
    /// Its validation balanced accuracy at that epoch.
    pub val_bacc: Option<f64>,
}

#[derive(Debug)]
pub struct PipelineView {
    pub name: String,
    pub file: String,
    pub file_digest: String,
    pub started: String,
    pub seconds: f64,
    pub ok: bool,
    /// In topological layers (see [`StageView::layer`]), ids sorted within a layer.
    pub stages: Vec<StageView>,
    /// Producer → consumer.
    pub edges: Vec<(String, String)>,
    /// Stage → its `seed` field.
    pub seeds: Vec<(String, u64)>,
    /// Stage → its `device` field (stages that run a model).
    pub devices: Vec<(String, String)>,
    /// The run's `--set` and `--device` overrides as typed.
    pub overrides: Vec<String>,
}

#[derive(Debug)]
pub struct StageView {
    pub id: String,
    pub kind: String,
    /// `None`: in the pipeline but not in this run (e.g. `--until`).
    pub outcome: Option<Outcome>,
    pub seconds: f64,
    pub key: String,
    /// Longest path from a source.
    pub layer: usize,
    pub error: Option<String>,
    /// The run that made the stage's output: this run when it ran, else the newest recorded
    /// run that ran the same key (`None`: no such record is left).
    pub producer: Option<Producer>,
}

/// The run that produced a stage's output, and how long the stage took in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Producer {
    /// The run's start time (as `pipe runs` lists it).
    pub started: String,
    pub seconds: f64,
    /// Whether it is the run the page shows.
    pub this_run: bool,
}

/// A data-cleaning stage's counts (its run-record metrics) and, for `split`, class balance.
#[derive(Debug)]
pub struct DataStage {
    pub id: String,
    pub kind: String,
    pub summary: String,
    pub metrics: BTreeMap<String, f64>,
    /// Part → (images, positives).
    pub balance: Vec<(String, usize, usize)>,
    /// N classes: the class names and, per part, its images of each class.
    pub class_balance: Option<(Vec<String>, Vec<PartClasses>)>,
}

/// A split part's name and its number of images of each class.
pub type PartClasses = (String, Vec<usize>);

#[derive(Debug)]
pub struct ModelView {
    pub stage: String,
    pub variant: Variant,
    pub pipeline: String,
    pub model: String,
    pub curve: Vec<CurveRow>,
    pub params: Option<f64>,
    pub train_seconds: Option<f64>,
}

#[derive(Debug)]
pub struct EvalView {
    pub stage: String,
    pub variant: Variant,
    pub pipeline: String,
    pub kind: String,
    /// The trained models it scores (one for `evaluate`, the members of an `ensemble`).
    pub models: Vec<String>,
    pub balanced_accuracy: f64,
    pub accuracy: Option<f64>,
    pub roc_auc: Option<f64>,
    pub threshold: Option<f64>,
    pub params: Option<f64>,
    pub train_seconds: Option<f64>,
    pub confusion: Option<Confusion>,
    /// N classes: the class names, the N×N matrix and each class's scores.
    pub classes: Option<ClassesView>,
    /// (false positive rate, true positive rate), from (0, 0) to (1, 1).
    pub roc: Option<Vec<(f64, f64)>>,
    /// N classes: each class's one-vs-rest ROC curve and their macro average.
    pub class_rocs: Option<crate::ml::multiclass::ClassRocs>,
    /// The keys of [`METRICS`] in which this evaluation is the best of the table.
    pub best: BTreeSet<String>,
}

impl ModelView {
    pub fn label(&self) -> String {
        label(&self.stage, &self.variant)
    }
}

/// An N-class evaluation's `metrics.json` (`evaluate` or `ensemble`).
#[derive(Debug, serde::Deserialize)]
pub struct ClassesView {
    pub classes: Vec<String>,
    /// `matrix[true][predicted]`.
    pub matrix: Vec<Vec<u64>>,
    pub per_class: Vec<crate::ml::multiclass::ClassScores>,
    /// Each class's one-vs-rest ROC AUC (`null` for a class absent from the split).
    #[serde(default)]
    pub roc_auc_per_class: Vec<Option<f64>>,
}

impl EvalView {
    pub fn label(&self) -> String {
        label(&self.stage, &self.variant)
    }

    /// One of [`METRICS`] by its key.
    pub fn metric(&self, key: &str) -> Option<f64> {
        match key {
            "balanced_accuracy" => Some(self.balanced_accuracy),
            "accuracy" => self.accuracy,
            "roc_auc" => self.roc_auc,
            _ => None,
        }
    }
}

#[derive(Debug)]
pub struct Figure {
    pub stage: String,
    pub kind: String,
    pub file: String,
    pub caption: String,
    pub png: Vec<u8>,
}

#[derive(Debug)]
pub struct PredictView {
    pub stage: String,
    pub summary: String,
    pub metrics: BTreeMap<String, f64>,
}

const DATA_KINDS: &[&str] = &["source", "hash", "dedup", "filter_conflicts", "split"];
/// Kinds that run a model, whose `device` (absent from the key when `cpu`) the page shows.
const MODEL_KINDS: &[&str] = &[
    "train", "evaluate", "predict", "ensemble", "analyze", "stack",
];
/// The most points a ROC curve keeps (evenly thinned beyond that, ends kept).
const ROC_POINTS: usize = 300;

/// Kinds whose rows and curves the report shows once per sweep variant.
const SWEPT_KINDS: &[&str] = &["train", "evaluate", "ensemble", "stack"];

/// Builds the report from the given runs; `history` (every readable record) supplies the
/// training time of models that were cached in these runs.
pub fn build(runs: &[RunInput], history: &[RunRecord], objects: Objects) -> Report {
    let mut report = Report {
        pipe_version: env!("CARGO_PKG_VERSION").to_string(),
        ..Default::default()
    };
    // Pipelines share stages through includes: each stage id is shown once (first pipeline),
    // models and evaluations once per sweep variant.
    let mut seen = BTreeSet::new();
    for run in runs {
        let view = pipeline_view(run, history);
        // Topological order, so the page reads like the pipeline (dedup before filter...).
        let order: Vec<String> = view.stages.iter().map(|s| s.id.clone()).collect();
        report.pipelines.push(view);
        let mut cx = Context {
            report: &mut report,
            seen: &mut seen,
            run,
            order: &order,
            objects,
            history,
        };
        if run.sweep.is_empty() {
            cx.add_stages(&run.record, |_| true);
            continue;
        }
        cx.add_stages(&run.record, |k| !SWEPT_KINDS.contains(&k));
        for v in &run.sweep {
            cx.add_stages(v, |k| SWEPT_KINDS.contains(&k));
        }
        let variants: Vec<&RunRecord> = run.sweep.iter().collect();
        report.sweeps.push(SweepView {
            id: run.record.sweep.clone().unwrap_or_default(),
            pipeline: run.record.pipeline.clone(),
            variants: variants.len(),
            shared: crate::record::shared_overrides(&variants),
        });
        for p in run.sweep.iter().flat_map(|v| v.variant.keys()) {
            if !report.swept.contains(p) {
                report.swept.push(p.clone());
            }
        }
    }
    fill_model_facts(&mut report);
    mark_best(&mut report.evaluations);
    report
}

/// What adding one record's stages to the report needs.
struct Context<'a> {
    report: &'a mut Report,
    /// (stage id, variant) already shown; the variant is empty except for [`SWEPT_KINDS`].
    seen: &'a mut BTreeSet<(String, Variant)>,
    run: &'a RunInput,
    order: &'a [String],
    objects: Objects<'a>,
    history: &'a [RunRecord],
}

impl Context<'_> {
    /// The class names of the dataset stage `id` reads (its `data` input's vocabulary), or
    /// the `n` indices where it has none or cannot be read.
    fn class_names(&self, id: &str, rec: &RunRecord, n: usize) -> Vec<String> {
        let vocabulary = self
            .run
            .graph
            .get(id)
            .and_then(|ins| ins.get("data"))
            .and_then(|data| rec.stages.get(data)?.digest.clone())
            .and_then(|d| (self.objects)(&d).ok())
            .and_then(|dir| {
                crate::stages::artifacts::read_json::<crate::data::dataset::DatasetMeta>(
                    &dir.join(crate::data::dataset::META_FILE),
                )
                .ok()?
                .classes
            })
            .filter(|c| c.len() == n);
        vocabulary.unwrap_or_else(|| (0..n).map(|k| k.to_string()).collect())
    }

    /// Adds the views of `rec`'s stages whose kind `take` accepts, in topological order.
    fn add_stages(&mut self, rec: &RunRecord, take: fn(&str) -> bool) {
        for (id, s) in self
            .order
            .iter()
            .filter_map(|id| Some((id, rec.stages.get(id)?)))
        {
            let variant = if SWEPT_KINDS.contains(&s.kind.as_str()) {
                rec.variant.clone()
            } else {
                Variant::new()
            };
            if s.outcome == Outcome::Skipped
                || !take(&s.kind)
                || !self.seen.insert((id.clone(), variant.clone()))
            {
                continue;
            }
            self.add_stage(id, s, rec, variant);
        }
    }

    fn add_stage(&mut self, id: &str, s: &StageRecord, rec: &RunRecord, variant: Variant) {
        if s.outcome == Outcome::Pruned {
            let report = &mut *self.report;
            let m = |k: &str| s.report.metrics.get(k).copied();
            report.pruned.push(PrunedView {
                stage: id.to_string(),
                variant,
                pipeline: rec.pipeline.clone(),
                epoch: m(crate::record::PRUNED_EPOCH).map_or(0, |v| v as u32),
                epochs: m("epochs").map_or(0, |v| v as u32),
                val_bacc: m("val_bacc"),
            });
            return;
        }
        if DATA_KINDS.contains(&s.kind.as_str()) {
            let mut d = data_stage(id, s, self.objects, &mut self.report.warnings);
            if let Some((names, _)) = &mut d.class_balance {
                *names = self.class_names(id, rec, names.len());
            }
            self.report.data.push(d);
        }
        let report = &mut *self.report;
        let Some(digest) = &s.digest else { return };
        let dir = match (self.objects)(digest) {
            Ok(d) => d,
            Err(e) => {
                report.warnings.push(format!(
                    "`{}` of {}: its output is damaged or gone ({e}); not shown",
                    label(id, &variant),
                    rec.pipeline
                ));
                return;
            }
        };
        add_figures(report, id, s, &dir);
        match s.kind.as_str() {
            "train" => match read_csv(&dir.join("curve.csv")) {
                Ok(curve) => report.models.push(ModelView {
                    stage: id.to_string(),
                    variant,
                    pipeline: rec.pipeline.clone(),
                    model: model_name(s),
                    curve,
                    params: s.report.metrics.get("params").copied(),
                    train_seconds: train_seconds(id, s, self.history),
                }),
                Err(e) => report
                    .warnings
                    .push(format!("`{}`: {e}", label(id, &variant))),
            },
            "evaluate" | "ensemble" | "stack" => {
                if let Some(e) = eval_view(id, s, self.run, &dir, variant) {
                    report.evaluations.push(e);
                }
            }
            "predict" => report.predictions.push(PredictView {
                stage: id.to_string(),
                summary: s.report.summary.clone(),
                metrics: s.report.metrics.clone(),
            }),
            "command" => {
                report.commands.push(PredictView {
                    stage: label(id, &variant),
                    summary: s.report.summary.clone(),
                    metrics: s.report.metrics.clone(),
                });
                for f in s.report.figures.iter().filter(|f| f.ends_with(".csv")) {
                    match read_plot(&dir.join(f)) {
                        Ok(series) => report.plots.push(CsvPlot {
                            stage: id.to_string(),
                            file: f.clone(),
                            series,
                        }),
                        Err(e) => report.warnings.push(format!("`{id}`: {f}: {e}")),
                    }
                }
            }
            _ => {}
        }
    }
}

/// A CSV plot's columns: the first column's header, then (header, points) of each other column
/// with a number.
pub type PlotColumns = (String, Vec<(String, Vec<(f64, f64)>)>);

/// A command stage's CSV plot: its first column against each other numeric column.
#[derive(Debug)]
pub struct CsvPlot {
    pub stage: String,
    pub file: String,
    /// The first column's header, then (header, points) of each other column with a number.
    pub series: PlotColumns,
}

/// Most rows of a CSV plot read (the chart keeps at most a few hundred points per series).
const MAX_PLOT_ROWS: usize = 1_000_000;

/// The columns of a CSV with a header row; cells that are not numbers are skipped.
fn read_plot(path: &Path) -> Result<PlotColumns, String> {
    let mut r = csv::Reader::from_path(path).map_err(|e| e.to_string())?;
    let headers: Vec<String> = r
        .headers()
        .map_err(|e| e.to_string())?
        .iter()
        .map(str::to_string)
        .collect();
    let Some((x_label, columns)) = headers.split_first() else {
        return Err("no header row".into());
    };
    let mut series: Vec<(String, Vec<(f64, f64)>)> =
        columns.iter().map(|c| (c.clone(), Vec::new())).collect();
    for row in r.records().take(MAX_PLOT_ROWS) {
        let row = row.map_err(|e| e.to_string())?;
        let num = |i: usize| row.get(i).and_then(|c| c.trim().parse::<f64>().ok());
        let Some(x) = num(0).filter(|x| x.is_finite()) else {
            continue;
        };
        for (i, (_, points)) in series.iter_mut().enumerate() {
            if let Some(y) = num(i + 1).filter(|y| y.is_finite()) {
                points.push((x, y));
            }
        }
    }
    series.retain(|(_, p)| !p.is_empty());
    Ok((x_label.clone(), series))
}

fn add_figures(report: &mut Report, id: &str, s: &StageRecord, dir: &Path) {
    for f in s.report.figures.iter().filter(|f| f.ends_with(".png")) {
        if let Some(caption) = caption(&s.kind, f) {
            match std::fs::read(dir.join(f)) {
                Ok(png) => report.figures.push(Figure {
                    stage: id.to_string(),
                    kind: s.kind.clone(),
                    file: f.clone(),
                    caption,
                    png,
                }),
                Err(e) => report.warnings.push(format!("`{id}`: {f}: {e}")),
            }
        }
    }
}

/// `train_b3 [lr=1e-3,dropout=0.3]` for a sweep variant's stage, the bare id otherwise.
pub fn label(stage: &str, variant: &Variant) -> String {
    if variant.is_empty() {
        stage.to_string()
    } else {
        format!("{stage} [{}]", crate::sweep::name_of(variant))
    }
}

/// Marks the best (highest) value of each of [`METRICS`] over the evaluations.
fn mark_best(evals: &mut [EvalView]) {
    for (k, _) in METRICS {
        let best = evals
            .iter()
            .filter_map(|e| e.metric(k))
            .filter(|v| !v.is_nan())
            .reduce(f64::max);
        for e in evals.iter_mut() {
            if best.is_some() && e.metric(k) == best {
                e.best.insert(k.to_string());
            }
        }
    }
}

/// A train stage's model: its name, or `declared (N layers)` for a declared one.
fn model_name(s: &StageRecord) -> String {
    match s.key_parts.config.get("model") {
        Some(serde_json::Value::Object(m)) => {
            let n = m
                .get("layers")
                .and_then(|l| l.as_array())
                .map_or(0, Vec::len);
            format!("declared ({n} layers)")
        }
        _ => config_str(s, "model").unwrap_or_default(),
    }
}

fn config_str(s: &StageRecord, field: &str) -> Option<String> {
    s.key_parts.config.get(field)?.as_str().map(str::to_string)
}

fn pipeline_view(run: &RunInput, history: &[RunRecord]) -> PipelineView {
    let rec = &run.record;
    let layers = layers(&run.graph);
    let mut stages: Vec<StageView> = layers
        .iter()
        .map(|(id, &layer)| {
            let s = rec.stages.get(id);
            StageView {
                id: id.clone(),
                kind: s.map(|s| s.kind.clone()).unwrap_or_default(),
                outcome: s.map(|s| s.outcome),
                seconds: s.map_or(0.0, |s| s.seconds),
                key: s.map(|s| s.key.clone()).unwrap_or_default(),
                layer,
                error: s.and_then(|s| s.error.clone()),
                producer: s.and_then(|s| producer(id, s, rec, history)),
            }
        })
        .collect();
    stages.sort_by(|a, b| (a.layer, &a.id).cmp(&(b.layer, &b.id)));
    let edges = run
        .graph
        .iter()
        .flat_map(|(to, ins)| ins.values().map(move |from| (from.clone(), to.clone())))
        .filter(|(from, _)| run.graph.contains_key(from))
        .collect();
    let seeds = rec
        .stages
        .iter()
        .filter_map(|(id, s)| Some((id.clone(), s.key_parts.config.get("seed")?.as_u64()?)))
        .collect();
    let devices = rec
        .stages
        .iter()
        .filter(|(_, s)| MODEL_KINDS.contains(&s.kind.as_str()))
        .map(|(id, s)| (id.clone(), config_str(s, "device").unwrap_or("cpu".into())))
        .collect();
    PipelineView {
        name: rec.pipeline.clone(),
        file: run.file.clone(),
        file_digest: run.file_digest.clone(),
        started: rec.started.clone(),
        seconds: rec.seconds,
        ok: rec.ok,
        stages,
        edges,
        seeds,
        devices,
        overrides: rec.overrides.clone(),
    }
}

/// Who made the output of stage `id` (record `s` in run `rec`): `rec` when the stage ran or
/// failed in it, else the newest run in `history` that ran the same key.
fn producer(id: &str, s: &StageRecord, rec: &RunRecord, history: &[RunRecord]) -> Option<Producer> {
    match s.outcome {
        Outcome::Ran | Outcome::Failed => Some(Producer {
            started: rec.started.clone(),
            seconds: s.seconds,
            this_run: true,
        }),
        Outcome::Cached => history.iter().rev().find_map(|r| {
            let h = r.stages.get(id)?;
            (h.key == s.key && h.outcome == Outcome::Ran).then(|| Producer {
                started: r.started.clone(),
                seconds: h.seconds,
                this_run: false,
            })
        }),
        Outcome::Skipped | Outcome::Pruned => None,
    }
}

/// Each stage's layer: the length of the longest producer chain above it.
pub fn layers(graph: &Graph) -> BTreeMap<String, usize> {
    fn depth(id: &str, graph: &Graph, memo: &mut BTreeMap<String, usize>, guard: usize) -> usize {
        if let Some(&d) = memo.get(id) {
            return d;
        }
        // The graph was validated acyclic; the guard only bounds a hand-made one.
        let d = if guard > graph.len() {
            0
        } else {
            graph
                .get(id)
                .into_iter()
                .flat_map(|ins| ins.values())
                .filter(|p| graph.contains_key(*p))
                .map(|p| depth(p, graph, memo, guard + 1) + 1)
                .max()
                .unwrap_or(0)
        };
        memo.insert(id.to_string(), d);
        d
    }
    let mut memo = BTreeMap::new();
    for id in graph.keys() {
        depth(id, graph, &mut memo, 0);
    }
    memo
}

fn data_stage(
    id: &str,
    s: &StageRecord,
    objects: Objects,
    warnings: &mut Vec<String>,
) -> DataStage {
    let mut balance = Vec::new();
    let mut classes: Vec<(String, Vec<usize>)> = Vec::new();
    if s.kind == "split"
        && let Some(d) = &s.digest
    {
        let read = objects(d).and_then(|dir| {
            crate::stages::artifacts::read_json::<crate::stages::artifacts::SplitArtifact>(
                &dir.join(crate::stages::artifacts::SPLIT),
            )
            .map_err(|e| e.to_string())
        });
        match read {
            Ok(a) => {
                for part in ["train", "val", "test"] {
                    if let Some(b) = a.balance.get(part) {
                        balance.push((part.to_string(), b.count, b.positives));
                        if let Some(c) = &b.class_counts {
                            classes.push((part.to_string(), c.clone()));
                        }
                    }
                }
            }
            Err(e) => warnings.push(format!("`{id}`: class balance not shown: {e}")),
        }
    }
    DataStage {
        id: id.to_string(),
        kind: s.kind.clone(),
        summary: s.report.summary.clone(),
        metrics: s.report.metrics.clone(),
        balance,
        // the names are filled in by the caller, which sees the data stage
        class_balance: classes
            .first()
            .map(|(_, c)| vec![String::new(); c.len()])
            .map(|names| (names, classes)),
    }
}

/// The caption of a stage's figure (the page puts the stage id before it), or `None` for
/// figures the report draws itself.
fn caption(kind: &str, file: &str) -> Option<String> {
    Some(match (kind, file) {
        ("dedup", "duplicates.png") => "duplicate groups, one group per row (images with the \
             same hash); each image is captioned with its name, index and label, and the first \
             of a row is the copy kept when the labels agree"
            .into(),
        ("filter_conflicts", "conflicts.png") => "duplicate groups whose labels disagree, one \
             per row: an image labelled 0, one labelled 1, and the difference image |a − b| \
             (stretched so the largest difference is white; black where they are identical); \
             each image is captioned with its name, index, label and whether the policy kept \
             or dropped it"
            .into(),
        ("augment", "preview.png") => "augmentation preview".into(),
        ("predict", "overrides.png") => "overridden test images; each row: the test image \
             (left) and the training image with the same hash (right) whose label it took"
            .into(),
        ("analyze", "class_means.png") => {
            "class means: mean negative image, mean positive image, their difference".into()
        }
        ("analyze", "saliency.png") => {
            "saliency maps: image and gradient magnitude of the model's output".into()
        }
        ("evaluate" | "ensemble" | "stack" | "train", _) => return None,
        _ => file.to_string(),
    })
}

/// Training time: this run's, or that of the newest run that trained the same key.
fn train_seconds(id: &str, s: &StageRecord, history: &[RunRecord]) -> Option<f64> {
    let of = |s: &StageRecord| {
        s.report
            .execution
            .get("train_seconds")
            .copied()
            .or((s.outcome == Outcome::Ran).then_some(s.seconds))
    };
    if s.outcome == Outcome::Ran {
        return of(s);
    }
    history.iter().rev().find_map(|r| {
        r.stages
            .get(id)
            .filter(|h| h.key == s.key && h.outcome == Outcome::Ran)
            .and_then(of)
    })
}

fn eval_view(
    id: &str,
    s: &StageRecord,
    run: &RunInput,
    dir: &Path,
    variant: Variant,
) -> Option<EvalView> {
    let m = &s.report.metrics;
    let balanced_accuracy = *m.get("balanced_accuracy")?;
    let models = run
        .graph
        .get(id)
        .map(|ins| {
            ins.iter()
                .filter(|(slot, _)| !matches!(slot.as_str(), "data" | "split"))
                .map(|(_, p)| p.clone())
                .collect()
        })
        .unwrap_or_default();
    let metrics: Option<serde_json::Value> = std::fs::read(dir.join("metrics.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let confusion = metrics
        .as_ref()
        .and_then(|v| serde_json::from_value(v["confusion"].clone()).ok());
    let classes = metrics
        .as_ref()
        .and_then(|v| serde_json::from_value::<ClassesView>(v.clone()).ok());
    Some(EvalView {
        stage: id.to_string(),
        variant,
        pipeline: run.record.pipeline.clone(),
        kind: s.kind.clone(),
        models,
        balanced_accuracy,
        accuracy: m.get("accuracy").copied(),
        // `ensemble` keeps its AUC in metrics.json only.
        roc_auc: m
            .get("roc_auc")
            .copied()
            .or_else(|| metrics.as_ref().and_then(|v| v["roc_auc"].as_f64())),
        threshold: m.get("threshold").copied(),
        params: None,
        train_seconds: None,
        confusion,
        classes,
        roc: read_probabilities(&dir.join("probabilities.csv"))
            .map(|(l, p)| crate::ml::metrics::roc_curve(&l, &p, ROC_POINTS)),
        class_rocs: std::fs::read(dir.join(crate::stages::evaluate::CLASS_ROC_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok()),
        best: BTreeSet::new(),
    })
}

/// Parameters and training time of an evaluation: those of its model(s), summed.
fn fill_model_facts(report: &mut Report) {
    for e in &mut report.evaluations {
        let ms: Vec<&ModelView> = e
            .models
            .iter()
            .filter_map(|id| {
                report
                    .models
                    .iter()
                    .find(|m| &m.stage == id && m.variant == e.variant)
            })
            .collect();
        if ms.is_empty() || ms.len() != e.models.len() {
            continue;
        }
        e.params = ms.iter().map(|m| m.params).sum();
        e.train_seconds = ms.iter().map(|m| m.train_seconds).sum();
    }
}

/// `index,name,label,probability` (evaluate's output): labels and probabilities.
fn read_probabilities(path: &Path) -> Option<(Vec<u8>, Vec<f64>)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut labels = Vec::new();
    let mut probs = Vec::new();
    for line in text.lines().skip(1) {
        // Names may hold commas: label and probability are the last two cells.
        let mut cells = line.rsplitn(3, ',');
        let p: f64 = cells.next()?.trim().parse().ok()?;
        let l: u8 = cells.next()?.trim().parse().ok()?;
        probs.push(p);
        labels.push(l);
    }
    Some((labels, probs))
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
