//! Unit tests of the report's data model: the numbers it carries are the records'.

use super::*;

fn stage(kind: &str, metrics: &[(&str, f64)], digest: Option<&str>) -> StageRecord {
    let key = crate::cache::StageKey {
        format: 1,
        kind: kind.into(),
        version: 1,
        implementation: Default::default(),
        config: serde_json::json!({"model": "b1", "seed": 3}),
        inputs: Default::default(),
        files: Default::default(),
    };
    let mut report = crate::stages::StageReport {
        summary: format!("{kind} summary"),
        ..Default::default()
    };
    for (k, v) in metrics {
        report = report.metric(k, *v);
    }
    StageRecord {
        kind: kind.into(),
        key: key.digest(),
        key_parts: key,
        digest: digest.map(str::to_string),
        outcome: Outcome::Ran,
        seconds: 2.5,
        report: report.execution("train_seconds", 2.0),
        error: None,
    }
}

fn graph(edges: &[(&str, &str, &str)]) -> Graph {
    let mut g = Graph::new();
    for (to, slot, from) in edges {
        g.entry(to.to_string())
            .or_default()
            .insert(slot.to_string(), from.to_string());
        g.entry(from.to_string()).or_default();
    }
    g
}

/// A run with a dedup, a training and its evaluation, objects in a temp dir.
fn fixture(dir: &Path) -> RunInput {
    let tdig = "11".repeat(32);
    let edig = "22".repeat(32);
    std::fs::create_dir_all(dir.join(&tdig)).unwrap();
    std::fs::create_dir_all(dir.join(&edig)).unwrap();
    let rows: Vec<CurveRow> = (1..=3)
        .map(|e| CurveRow {
            epoch: e,
            lr: if e < 3 { 1e-3 } else { 1e-4 },
            train_loss: 1.0 / e as f64,
            train_acc: 0.5,
            train_bacc: 0.5,
            val_loss: 0.7,
            val_acc: 0.6,
            val_bacc: 0.55 + e as f64 / 100.0,
            test_bacc: (e == 3).then_some(0.61),
        })
        .collect();
    crate::ml::curve::write_csv(&dir.join(&tdig).join("curve.csv"), &rows).unwrap();
    std::fs::write(
        dir.join(&edig).join("metrics.json"),
        r#"{"confusion": {"tn": 5, "fp": 1, "fn": 2, "tp": 4}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join(&edig).join("probabilities.csv"),
        "index,name,label,probability\n0,a,1,0.9\n1,b,0,0.8\n2,c,1,0.3\n3,d,0,0.1\n",
    )
    .unwrap();
    let mut stages = BTreeMap::new();
    stages.insert(
        "groups".into(),
        stage("dedup", &[("duplicate_groups", 7.0), ("copies", 9.0)], None),
    );
    stages.insert(
        "train_b1".into(),
        stage("train", &[("params", 1234.0)], Some(&tdig)),
    );
    stages.insert(
        "evaluate_b1".into(),
        stage(
            "evaluate",
            &[
                ("balanced_accuracy", 0.6875),
                ("accuracy", 0.75),
                ("roc_auc", 0.8),
                ("threshold", 0.5),
            ],
            Some(&edig),
        ),
    );
    RunInput {
        file: "p.yaml".into(),
        file_digest: "ab".repeat(32),
        graph: graph(&[
            ("train_b1", "data", "groups"),
            ("evaluate_b1", "model", "train_b1"),
            ("evaluate_b1", "data", "groups"),
        ]),
        record: RunRecord {
            sweep: None,
            variant: Default::default(),
            overrides: vec!["stages.train_b1.lr=1e-3".into()],
            pipeline: "p".into(),
            file: "p.yaml".into(),
            started: "2026-12-01T08:00:00.000Z".into(),
            seconds: 7.0,
            ok: true,
            stages,
        },
        sweep: Vec::new(),
    }
}

#[test]
fn the_data_model_carries_the_records_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let run = fixture(tmp.path());
    let root = tmp.path().to_path_buf();
    let objects = move |d: &str| Ok(root.join(d));
    let r = build(std::slice::from_ref(&run), &[], &objects);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let rec = &run.record.stages;
    assert_eq!(r.data.len(), 1);
    assert_eq!(r.data[0].metrics, rec["groups"].report.metrics);
    let e = &r.evaluations[0];
    let m = &rec["evaluate_b1"].report.metrics;
    assert_eq!(e.balanced_accuracy, m["balanced_accuracy"]);
    assert_eq!(e.accuracy, Some(m["accuracy"]));
    assert_eq!(e.roc_auc, Some(m["roc_auc"]));
    assert_eq!(e.threshold, Some(m["threshold"]));
    assert_eq!(e.models, ["train_b1"]);
    assert_eq!(e.params, Some(1234.0));
    assert_eq!(e.train_seconds, Some(2.0));
    assert_eq!(e.confusion.unwrap().fn_, 2);
    assert_eq!(
        e.roc.as_deref().unwrap(),
        [(0.0, 0.0), (0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (1.0, 1.0)]
    );
    assert_eq!(r.models[0].curve.len(), 3);
    assert_eq!(r.models[0].model, "b1");
    let p = &r.pipelines[0];
    let order: Vec<(&str, usize)> = p.stages.iter().map(|s| (&*s.id, s.layer)).collect();
    assert_eq!(order, [("groups", 0), ("train_b1", 1), ("evaluate_b1", 2)]);
    assert_eq!(p.seeds.len(), 3);
    assert_eq!(
        p.devices,
        [
            ("evaluate_b1".to_string(), "cpu".to_string()),
            ("train_b1".to_string(), "cpu".to_string())
        ]
    );
}

#[test]
fn an_ensembles_auc_comes_from_its_metrics_file() {
    let tmp = tempfile::tempdir().unwrap();
    let mut run = fixture(tmp.path());
    let e = run.record.stages.get_mut("evaluate_b1").unwrap();
    e.kind = "ensemble".into();
    e.report.metrics.remove("roc_auc");
    let dir = tmp.path().join(e.digest.as_ref().unwrap());
    std::fs::write(
        dir.join("metrics.json"),
        r#"{"roc_auc": 0.71, "confusion": {"tn": 1, "fp": 0, "fn": 0, "tp": 1}}"#,
    )
    .unwrap();
    let root = tmp.path().to_path_buf();
    let objects = move |d: &str| Ok(root.join(d));
    let r = build(std::slice::from_ref(&run), &[], &objects);
    assert_eq!(r.evaluations[0].roc_auc, Some(0.71));
    assert_eq!(r.evaluations[0].kind, "ensemble");
}

#[test]
fn a_damaged_object_is_a_warning_not_a_number() {
    let tmp = tempfile::tempdir().unwrap();
    let run = fixture(tmp.path());
    let objects = |_: &str| Err("contents do not match".to_string());
    let r = build(std::slice::from_ref(&run), &[], &objects);
    assert!(r.evaluations.is_empty() && r.models.is_empty());
    assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
    assert!(r.warnings[0].contains("damaged"), "{:?}", r.warnings);
}

#[test]
fn a_cached_model_takes_its_training_time_from_the_run_that_trained_it() {
    let tmp = tempfile::tempdir().unwrap();
    let first = fixture(tmp.path());
    let mut run = fixture(tmp.path());
    let t = run.record.stages.get_mut("train_b1").unwrap();
    t.outcome = Outcome::Cached;
    t.seconds = 0.01;
    t.report.execution.clear();
    let root = tmp.path().to_path_buf();
    let objects = move |d: &str| Ok(root.join(d));
    let r = build(std::slice::from_ref(&run), &[first.record], &objects);
    assert_eq!(r.models[0].train_seconds, Some(2.0));
}

/// `run` as a variant of sweep `s` with `lr` and the given balanced accuracy.
fn variant(run: &RunInput, lr: &str, bacc: f64) -> RunRecord {
    let mut r = run.record.clone();
    r.sweep = Some("s".into());
    r.variant = BTreeMap::from([("stages.train_b1.lr".to_string(), lr.to_string())]);
    r.overrides = vec![format!("stages.train_b1.epochs=<{lr}>")];
    let e = r.stages.get_mut("evaluate_b1").unwrap();
    e.report.metrics.insert("balanced_accuracy".into(), bacc);
    r
}

#[test]
fn a_sweep_shows_every_variant_with_its_values_and_the_best_marked() {
    let tmp = tempfile::tempdir().unwrap();
    let mut run = fixture(tmp.path());
    let a = variant(&run, "1e-3", 0.7);
    let b = variant(&run, "1e-2", 0.9);
    run.record = b.clone();
    run.sweep = vec![a.clone(), b.clone()];
    let root = tmp.path().to_path_buf();
    let objects = move |d: &str| Ok(root.join(d));
    let r = build(std::slice::from_ref(&run), &[], &objects);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(r.swept, ["stages.train_b1.lr"]);
    assert_eq!(r.data.len(), 1, "shared stages are shown once");
    assert_eq!(r.evaluations.len(), 2);
    for (e, rec) in r.evaluations.iter().zip([&a, &b]) {
        let m = &rec.stages["evaluate_b1"].report.metrics;
        assert_eq!(e.variant, rec.variant);
        assert_eq!(e.balanced_accuracy, m["balanced_accuracy"]);
        assert_eq!(e.accuracy, Some(m["accuracy"]));
        assert_eq!(e.params, Some(1234.0), "its own variant's model");
    }
    let labels: Vec<String> = r.models.iter().map(ModelView::label).collect();
    assert_eq!(labels, ["train_b1 [lr=1e-3]", "train_b1 [lr=1e-2]"]);
    // 0.9 is the best balanced accuracy; both share the best accuracy.
    assert!(!r.evaluations[0].best.contains("balanced_accuracy"));
    assert!(r.evaluations[1].best.contains("balanced_accuracy"));
    assert!(r.evaluations.iter().all(|e| e.best.contains("accuracy")));
    assert_eq!(r.pipelines[0].overrides, b.overrides);

    let html = super::super::page::render(&r);
    assert!(html.contains("<th class=\"swept\" title=\"stages.train_b1.lr\">lr</th>"));
    for (lr, bacc, class) in [("1e-3", 0.7, "n"), ("1e-2", 0.9, "n best")] {
        let row = format!(
            "<tr data-stage=\"evaluate_b1\" data-variant=\"lr={lr}\"><td>p</td><td class=\"swept\">{lr}</td><td>evaluate_b1</td><td>train_b1</td><td class=\"{class}\" data-v=\"{bacc}\">"
        );
        assert!(html.contains(&row), "no row {row}");
    }
    assert!(
        html.contains(
            "<td class=\"overrides\"><code>stages.train_b1.epochs=&lt;1e-2&gt;</code></td>"
        ),
        "overrides shown, escaped"
    );
}

#[test]
fn a_pruned_trial_is_a_greyed_row_with_its_stop_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let mut run = fixture(tmp.path());
    let done = variant(&run, "1e-3", 0.7);
    // The pruner stopped the second trial's training after epoch 2 of 9: no digest, and its
    // evaluation never ran.
    let mut stopped = variant(&run, "1e-1", 0.0);
    stopped.stages.remove("evaluate_b1");
    let t = stopped.stages.get_mut("train_b1").unwrap();
    t.outcome = Outcome::Pruned;
    t.digest = None;
    t.report.metrics = BTreeMap::from([
        (crate::record::PRUNED_EPOCH.to_string(), 2.0),
        ("epochs".to_string(), 9.0),
        ("val_bacc".to_string(), 0.52),
    ]);
    run.record = done.clone();
    run.sweep = vec![done, stopped];
    let root = tmp.path().to_path_buf();
    let objects = move |d: &str| Ok(root.join(d));
    let r = build(std::slice::from_ref(&run), &[], &objects);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(r.evaluations.len(), 1);
    assert_eq!(r.pruned.len(), 1);
    let p = &r.pruned[0];
    assert_eq!((p.stage.as_str(), p.epoch, p.epochs), ("train_b1", 2, 9));
    assert_eq!(p.val_bacc, Some(0.52));
    let html = super::super::page::render(&r);
    let row = "<tr class=\"pruned\" data-stage=\"train_b1\" data-variant=\"lr=1e-1\" title=\"validation balanced accuracy 0.5200 at that epoch\"><td>p</td><td class=\"swept\">1e-1</td><td>train_b1</td><td>pruned @ epoch 2 of 9</td>";
    assert!(html.contains(row), "no row {row} in the page");
    assert!(html.contains("tr.pruned{color:#999"), "greyed");
}
