//! Writes a synthetic history for `bench/report.sh`: a pipeline file with M trained models and
//! their evaluations, a cache holding one committed object per stage (E-epoch learning curves,
//! 3,000 test probabilities each) and one run record naming them, so `pipe report` can be timed
//! at the issue's scale (50 models x 1,000 epochs) without training anything.
//!
//! Usage: `cargo run --example report_synth -- DIR [MODELS] [EPOCHS]`; then
//! `pipe --cache DIR/cache report DIR/synth.yaml`.

use pipe::cache::{StageKey, Store};
use pipe::ml::curve::{CurveRow, write_csv};
use pipe::record::{Outcome, RunRecord, StageRecord};
use pipe::stages::StageReport;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

fn key(kind: &str, id: &str) -> StageKey {
    StageKey {
        format: 1,
        kind: kind.into(),
        version: 1,
        implementation: Default::default(),
        config: serde_json::json!({"model": "b1", "seed": 0, "id": id}),
        inputs: Default::default(),
        files: Default::default(),
    }
}

/// A small deterministic generator (no wall clock, no OS randomness).
fn noise(state: &mut u64) -> f64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state >> 11) as f64 / (1u64 << 53) as f64
}

fn commit(
    store: &Store,
    id: &str,
    kind: &str,
    report: StageReport,
    write: impl FnOnce(&Path),
) -> anyhow::Result<StageRecord> {
    let out = store.begin(id)?;
    write(&out.dir);
    let k = key(kind, id);
    let digest = store.commit(out, id, &k)?;
    Ok(StageRecord {
        kind: kind.into(),
        key: k.digest(),
        key_parts: k,
        digest: Some(digest),
        outcome: Outcome::Ran,
        seconds: 1.0,
        report,
        error: None,
    })
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = Path::new(
        args.get(1)
            .map(String::as_str)
            .unwrap_or("bench/out/report"),
    );
    let models: usize = args.get(2).map_or(Ok(50), |a| a.parse())?;
    let epochs: u32 = args.get(3).map_or(Ok(1000), |a| a.parse())?;
    std::fs::create_dir_all(dir)?;
    let store = Store::open(&dir.join("cache"))?;
    let mut yaml = String::from(
        "name: synth\nstages:\n  faces: {kind: source, format: synthetic, count: 1000}\n  split: {kind: split, inputs: {data: faces}}\n",
    );
    let mut stages = BTreeMap::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    for m in 0..models {
        let (t, e) = (format!("train_m{m:02}"), format!("evaluate_m{m:02}"));
        let _ = writeln!(
            yaml,
            "  {t}: {{kind: train, model: b1, inputs: {{data: faces, split: split}}}}\n  {e}: {{kind: evaluate, inputs: {{model: {t}, data: faces, split: split}}}}"
        );
        let rows: Vec<CurveRow> = (1..=epochs)
            .map(|ep| {
                let f = f64::from(ep) / f64::from(epochs);
                CurveRow {
                    epoch: ep,
                    lr: if f < 0.5 { 1e-3 } else { 1e-4 },
                    train_loss: 0.7 * (-3.0 * f).exp() + 0.05 * noise(&mut rng),
                    train_acc: 0.5 + 0.45 * f,
                    train_bacc: 0.5 + 0.45 * f + 0.02 * noise(&mut rng),
                    val_loss: 0.7 * (-2.0 * f).exp() + 0.1 * noise(&mut rng),
                    val_acc: 0.5 + 0.4 * f,
                    val_bacc: 0.5 + 0.4 * f + 0.03 * noise(&mut rng),
                    test_bacc: (ep % 5 == 0).then_some(0.5 + 0.4 * f),
                }
            })
            .collect();
        let report = StageReport::default()
            .metric("params", 100_000.0 + m as f64)
            .execution("train_seconds", 60.0);
        stages.insert(
            t.clone(),
            commit(&store, &t, "train", report, |d| {
                write_csv(&d.join("curve.csv"), &rows).expect("curve written")
            })?,
        );
        let mut probs = String::from("index,name,label,probability\n");
        for i in 0..3000 {
            let label = i % 2;
            let p = (0.5 * noise(&mut rng) + 0.4 * label as f64).min(1.0);
            let _ = writeln!(probs, "{i},img{i},{label},{p:.6}");
        }
        let report = StageReport::default()
            .metric("balanced_accuracy", 0.8 + m as f64 / 1000.0)
            .metric("accuracy", 0.8)
            .metric("roc_auc", 0.85)
            .metric("threshold", 0.5);
        stages.insert(
            e.clone(),
            commit(&store, &e, "evaluate", report, |d| {
                std::fs::write(
                    d.join("metrics.json"),
                    r#"{"confusion": {"tn": 1200, "fp": 300, "fn": 300, "tp": 1200}}"#,
                )
                .expect("metrics written");
                std::fs::write(d.join("probabilities.csv"), &probs).expect("probabilities written");
            })?,
        );
    }
    std::fs::write(dir.join("synth.yaml"), yaml)?;
    RunRecord {
        sweep: None,
        variant: Default::default(),
        overrides: Vec::new(),
        pipeline: "synth".into(),
        file: "synth.yaml".into(),
        started: pipe::record::now_rfc3339(),
        seconds: 3600.0,
        ok: true,
        stages,
    }
    .save(&dir.join("cache"))?;
    println!("{models} models x {epochs} epochs under {}", dir.display());
    Ok(())
}
