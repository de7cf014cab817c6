//! Sweeps and random searches: variants share upstream stages through the cache.

use super::*;

/// Synthetic faces → split → a one-epoch b1 → its test evaluation.
const TRAINING: &str = "\
name: t
stages:
  faces: {kind: source, format: synthetic, count: 160, height: 24, width: 24, exact_duplicates: 0, near_duplicates: 0, conflicting_duplicates: 0}
  split: {kind: split, inputs: {data: faces}}
  train: {kind: train, model: b1, epochs: 1, batch_size: 32, inputs: {data: faces, split: split}}
  evaluate: {kind: evaluate, on: test, threshold: tune, inputs: {model: train, data: faces, split: split}}
";

fn training_env() -> Env {
    let env = Env::new();
    env.write("t.yaml", TRAINING);
    env
}

/// The `  variant   N  NAME` lines a sweep prints before running.
fn variant_list(out: &str) -> Vec<String> {
    out.lines()
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("  variant "))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_2x2_sweep_runs_shared_stages_once_and_records_four_variants() {
    let env = training_env();
    let args = [
        "run",
        "t.yaml",
        "--sweep",
        "stages.train.lr=0.01,0.001",
        "--sweep",
        "stages.train.dropout=0.2,0.4",
    ];
    let out = env.ok(&args);
    let mut expected = vec!["faces", "split"];
    expected.extend(["train"; 4]);
    expected.extend(["evaluate"; 4]);
    expected.sort();
    assert_eq!(ran(&out), expected, "{out}");
    assert_eq!(
        variant_list(&out),
        [
            "  variant   1  lr=0.01,dropout=0.2",
            "  variant   2  lr=0.01,dropout=0.4",
            "  variant   3  lr=0.001,dropout=0.2",
            "  variant   4  lr=0.001,dropout=0.4",
        ]
    );
    let recs = records(&env);
    assert_eq!(recs.len(), 4);
    let sweep = recs[0]["sweep"].as_str().unwrap().to_string();
    assert_eq!(sweep.len(), 12);
    let mut seen = std::collections::BTreeSet::new();
    for r in &recs {
        assert_eq!(r["sweep"], sweep.as_str());
        assert_eq!(r["schema"], 2);
        let v = &r["variant"];
        assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
        // The record's training config is the variant's value.
        let lr: f64 = v["stages.train.lr"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            r["stages"]["train"]["key_parts"]["config"]["lr"].as_f64(),
            Some(lr)
        );
        seen.insert(v.to_string());
    }
    assert_eq!(seen.len(), 4, "four distinct variants");

    // The same sweep again: everything cached, and the same sweep id.
    let out = env.ok(&args);
    assert!(ran(&out).is_empty(), "{out}");
    assert_eq!(records(&env)[7]["sweep"], sweep.as_str());

    // `compare` shows the sweep as one table, the swept values as columns.
    let table = env.ok(&["compare", "t.yaml"]);
    assert!(
        table.contains(&format!("sweep {sweep} of t (4 variants)")),
        "{table}"
    );
    assert!(
        table.contains("| dropout | lr | stage | balanced accuracy |"),
        "{table}"
    );
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.contains("| evaluate |"))
        .collect();
    assert_eq!(rows.len(), 4, "{table}");
    assert!(
        rows.iter().any(|r| r.starts_with("| 0.4 | 0.001 |")),
        "{table}"
    );
    assert!(table.contains("**"), "the best value is bold: {table}");
}

#[test]
fn a_seeded_search_draws_the_same_variants_and_names_the_best() {
    let env = training_env();
    let args = [
        "run",
        "t.yaml",
        "--search",
        "stages.train.lr=1e-4..1e-2:log",
        "--search",
        "stages.train.dropout=0.1|0.3",
        "--trials",
        "4",
        "--seed",
        "7",
        "--objective",
        "evaluate.roc_auc",
    ];
    let out = env.ok(&args);
    let drawn = variant_list(&out);
    assert_eq!(drawn.len(), 4, "{out}");
    let mut expected = vec!["faces", "split"];
    expected.extend(["train"; 4]);
    expected.extend(["evaluate"; 4]);
    expected.sort();
    assert_eq!(ran(&out), expected, "{out}");

    // The best named equals the maximum recorded objective, and is that variant's.
    let recs = records(&env);
    assert_eq!(recs.len(), 4);
    let auc = |r: &serde_json::Value| {
        r["stages"]["evaluate"]["report"]["metrics"]["roc_auc"]
            .as_f64()
            .unwrap()
    };
    let aucs: Vec<f64> = recs.iter().map(auc).collect();
    let max = aucs.iter().copied().fold(f64::MIN, f64::max);
    assert!(aucs.iter().any(|&a| a != max), "variants differ: {aucs:?}");
    let best = out
        .lines()
        .find(|l| l.starts_with("best (highest): variant "))
        .unwrap_or_else(|| panic!("no best line in {out}"));
    assert!(
        best.ends_with(&format!("with evaluate.roc_auc = {max:.4}")),
        "{best} (max {max})"
    );
    let k: usize = best["best (highest): variant ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(auc(&recs[k - 1]), max, "{best}");
    assert!(best.contains(drawn[k - 1].split_whitespace().last().unwrap()));

    // Drawn again with the same seed: the same variants, all cached.
    let again = env.ok(&args);
    assert_eq!(variant_list(&again), drawn);
    assert!(ran(&again).is_empty(), "{again}");
    // Another seed draws others.
    let mut other = args.to_vec();
    other[9] = "8";
    let dry = env.ok(&[other.as_slice(), &["--dry-run"]].concat());
    assert_ne!(variant_list(&dry), drawn);
}

#[test]
fn invalid_variants_are_all_reported_before_anything_runs() {
    let env = training_env();
    let e = env.err(
        &["run", "t.yaml", "--sweep", "stages.train.epochs=1,-1,lots"],
        2,
    );
    assert!(e.contains("variant 2 (epochs=-1)"), "{e}");
    assert!(e.contains("variant 3 (epochs=lots)"), "{e}");
    assert!(!e.contains("variant 1 "), "{e}");
    assert!(e.contains("2 errors in the variants; nothing ran"), "{e}");
    assert!(!env.path("cache/runs").exists());

    // A problem every variant shares is said once.
    let e = env.err(
        &[
            "run",
            "t.yaml",
            "--set",
            "stages.trian.lr=1",
            "--sweep",
            "stages.train.epochs=1,x",
        ],
        2,
    );
    assert_eq!(
        e.matches("no stage `trian` (did you mean `train`?)")
            .count(),
        1,
        "{e}"
    );
    assert!(
        e.contains("error: every variant: --set: stages.trian.lr"),
        "{e}"
    );
    assert!(e.contains("variant 2 (epochs=x)"), "{e}");
    assert!(e.contains("2 errors in the variants"), "{e}");

    let e = env.err(
        &[
            "run",
            "t.yaml",
            "--sweep",
            "stages.train.lr=1,2",
            "--set",
            "stages.train.lr=3",
        ],
        2,
    );
    assert!(
        e.contains("`stages.train.lr` is both swept and given to --set"),
        "{e}"
    );

    let e = env.err(
        &[
            "run",
            "t.yaml",
            "--search",
            "stages.train.lr=0..1e-2:log",
            "--trials",
            "2",
            "--objective",
            "evaluate.balanced_accuracy",
        ],
        2,
    );
    assert!(e.contains("a log range needs lo > 0, got 0"), "{e}");

    let e = env.err(
        &[
            "run",
            "t.yaml",
            "--sweep",
            "stages.train.lr=1,2",
            "--objective",
            "evaluat.balanced_accuracy",
        ],
        2,
    );
    assert!(
        e.contains("no stage `evaluat`") && e.contains("did you mean `evaluate`"),
        "{e}"
    );
    // A search needs its trials and objective.
    env.err(&["run", "t.yaml", "--search", "stages.train.lr=1..2"], 2);
    assert!(!env.path("cache/runs").exists());
}

/// The `data-v` numbers of the Table 1 row that starts with `row`.
fn row_values(html: &str, row: &str) -> Vec<f64> {
    let i = html.find(row).unwrap_or_else(|| panic!("no row `{row}`"));
    let tr = &html[i..i + html[i..].find("</tr>").unwrap()];
    tr.split("data-v=\"")
        .skip(1)
        .map(|v| v[..v.find('"').unwrap()].parse().unwrap_or(f64::NAN))
        .collect()
}

/// Each variant's stage digests, in variant order, with its values.
fn variant_digests(env: &Env) -> Vec<(String, Vec<(String, String)>)> {
    records(env)
        .iter()
        .map(|r| {
            let digests = r["stages"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v["digest"].as_str().unwrap().to_string()))
                .collect();
            (r["variant"].to_string(), digests)
        })
        .collect()
}

#[test]
fn the_report_shows_every_variant_of_a_sweep_and_the_runs_overrides() {
    let env = training_env();
    let set = "stages.train.batch_size=16";
    env.ok(&[
        "run",
        "t.yaml",
        "--set",
        set,
        "--sweep",
        "stages.train.lr=0.01,0.001",
    ]);
    let recs = records(&env);
    let out = env.ok(&["report", "t.yaml", "-o", "r.html"]);
    assert!(out.contains("2 model(s), 2 evaluation(s)"), "{out}");
    let html = std::fs::read_to_string(env.path("r.html")).unwrap();
    assert!(html.contains("<th class=\"swept\" title=\"stages.train.lr\">lr</th>"));
    let mut best = 0;
    for r in &recs {
        assert_eq!(
            r["overrides"],
            serde_json::json!([set]),
            "recorded as typed"
        );
        let lr = r["variant"]["stages.train.lr"].as_str().unwrap();
        let row = format!(
            "<tr data-stage=\"evaluate\" data-variant=\"lr={lr}\"><td>t</td><td class=\"swept\">{lr}</td>"
        );
        let values = row_values(&html, &row);
        let m = &r["stages"]["evaluate"]["report"]["metrics"];
        assert_eq!(values[0], m["balanced_accuracy"].as_f64().unwrap(), "{lr}");
        assert_eq!(values[1], m["accuracy"].as_f64().unwrap(), "{lr}");
        assert!(
            html.contains(&format!("data-owner=\"train [lr={lr}]\"")),
            "{lr} curves"
        );
        best += usize::from(html[html.find(&row).unwrap()..].starts_with(&format!(
            "{row}<td>evaluate</td><td>train</td><td class=\"n best\""
        )));
    }
    let bacc = |r: &serde_json::Value| {
        r["stages"]["evaluate"]["report"]["metrics"]["balanced_accuracy"]
            .as_f64()
            .unwrap()
    };
    let top = recs.iter().map(bacc).fold(f64::MIN, f64::max);
    let tied = recs.iter().filter(|r| bacc(r) == top).count();
    assert_eq!(
        best, tied,
        "the best balanced accuracy (every one, if tied) is bold"
    );
    assert!(html.contains(&format!("<td class=\"overrides\"><code>{set}</code></td>")));
    assert!(!html.contains("not kept in run records"));

    // A plain run after the sweep: one row again, its `--set`s and `--device` in provenance.
    env.ok(&[
        "run",
        "t.yaml",
        "--set",
        set,
        "--set",
        "stages.train.lr=0.01",
        "--device",
        "cpu",
    ]);
    env.ok(&["report", "t.yaml", "-o", "p.html"]);
    let html = std::fs::read_to_string(env.path("p.html")).unwrap();
    assert_eq!(html.matches("<tr data-stage=\"evaluate\"").count(), 1);
    assert!(!html.contains("class=\"swept\""));
    assert!(html.contains(&format!(
        "<td class=\"overrides\"><code>{set}</code> <code>stages.train.lr=0.01</code> <code>--device cpu</code></td>"
    )));
}

#[test]
fn variants_run_at_once_share_stages_and_match_one_at_a_time() {
    let sweep = |jobs: &str| {
        let env = training_env();
        let out = env.ok(&[
            "run",
            "t.yaml",
            "-j",
            jobs,
            "--sweep",
            "stages.train.lr=0.01,0.001",
            "--sweep",
            "stages.train.dropout=0.2,0.4",
        ]);
        (env, out)
    };
    let (at_once, out) = sweep("4");
    let mut expected = vec!["faces", "split"];
    expected.extend(["train"; 4]);
    expected.extend(["evaluate"; 4]);
    expected.sort();
    assert_eq!(ran(&out), expected, "each shared stage exactly once: {out}");
    for v in 1..=4 {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("[{v}]   ran     evaluate"))),
            "variant {v}'s lines carry its prefix: {out}"
        );
    }
    let (in_turn, out1) = sweep("1");
    assert_eq!(ran(&out1), expected, "{out1}");
    assert!(!out1.contains("[1] "), "one at a time: no prefixes: {out1}");
    let digests = variant_digests(&at_once);
    assert_eq!(digests.len(), 4);
    assert_eq!(
        digests,
        variant_digests(&in_turn),
        "records in variant order"
    );

    // A forced stage the variants share also runs once; its identical output leaves the rest
    // cached.
    for (env, jobs) in [(&at_once, "4"), (&in_turn, "1")] {
        let out = env.ok(&[
            "run",
            "t.yaml",
            "-j",
            jobs,
            "--force",
            "split",
            "--sweep",
            "stages.train.lr=0.01,0.001",
            "--sweep",
            "stages.train.dropout=0.2,0.4",
        ]);
        assert_eq!(ran(&out), ["split"], "-j {jobs}: {out}");
    }
}
