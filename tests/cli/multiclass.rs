//! N classes end to end: a generated `dir/CLASS/*` tree of three classes through cleaning,
//! stratified split, softmax training, macro metrics with the N×N confusion matrix, predictions
//! written as class names, and the report.

use super::{Env, find_files};
use std::path::Path;

pub(super) const CLASSES: [&str; 3] = ["circle", "cross", "stripes"];
const SIDE: u32 = 24;

/// A seeded image of class `k`: a grey-noise background with the class's shape drawn in a
/// colour and at an offset that vary per image, so the class is in the shape only.
pub(super) fn class_image(k: usize, i: usize) -> image::RgbImage {
    let mut s = (k as u64 * 7919 + i as u64 * 104_729) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let tint = [next() % 120 + 120, next() % 120 + 120, next() % 120 + 120];
    let (dx, dy) = ((next() % 5) as i32 - 2, (next() % 5) as i32 - 2);
    let mut img = image::RgbImage::new(SIDE, SIDE);
    for (x, y, p) in img.enumerate_pixels_mut() {
        let (cx, cy) = (x as i32 - 12 - dx, y as i32 - 12 - dy);
        let on = match k {
            0 => (cx * cx + cy * cy - 49).abs() < 12,
            1 => (cx.abs() <= 1 || cy.abs() <= 1) && cx.abs() < 8 && cy.abs() < 8,
            _ => (x as i32 + dx).rem_euclid(6) < 2,
        };
        let noise = (next() % 40) as u8;
        *p = if on {
            image::Rgb(tint.map(|t| t as u8))
        } else {
            image::Rgb([noise, noise, noise])
        };
    }
    img
}

/// `per_class` images of each class under `dir/CLASS/`, as PNG and as upper-case `.JPG`.
pub(super) fn write_class_folders(root: &Path, per_class: usize) {
    for (k, class) in CLASSES.iter().enumerate() {
        let d = root.join(class);
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..per_class {
            let ext = if i % 4 == 0 { "JPG" } else { "png" };
            let path = d.join(format!("{i:03}.{ext}"));
            let img = class_image(k, i);
            let format = if ext == "JPG" {
                image::ImageFormat::Jpeg
            } else {
                image::ImageFormat::Png
            };
            img.save_with_format(&path, format).unwrap();
        }
    }
}

const PIPELINE: &str = "
name: shapes
stages:
  shapes:
    kind: source
    format: image_folder
    dir: data/shapes
    height: 24
    width: 24
  hashes:
    kind: hash
    inputs: {data: shapes}
  groups:
    kind: dedup
    inputs: {hashes: hashes, data: shapes}
  clean:
    kind: filter_conflicts
    inputs: {groups: groups, data: shapes}
  split:
    kind: split
    seed: 3
    inputs: {data: shapes, selection: clean, groups: groups}
  train:
    kind: train
    model: b1
    epochs: 8
    batch_size: 16
    seed: 3
    inputs: {data: shapes, split: split}
  evaluate:
    kind: evaluate
    on: test
    top_k: 2
    inputs: {model: train, data: shapes, split: split}
  analyze:
    kind: analyze
    per_class: 2
    inputs: {data: shapes, model: train, split: split}
  unseen:
    kind: source
    format: folder
    dir: data/unseen
    height: 24
    width: 24
  predict:
    kind: predict
    inputs: {test: unseen, model: train, train: shapes}
";

fn shapes_env() -> Env {
    let env = Env::new();
    write_class_folders(&env.path("data/shapes"), 40);
    // One image copied into another class: a conflict the filter must drop.
    std::fs::copy(
        env.path("data/shapes/circle/001.png"),
        env.path("data/shapes/cross/dup.png"),
    )
    .unwrap();
    let unseen = env.path("data/unseen");
    std::fs::create_dir_all(&unseen).unwrap();
    for i in 0..6 {
        class_image(i % 3, 500 + i)
            .save(unseen.join(format!("u{i}.png")))
            .unwrap();
    }
    env.write("p.yaml", PIPELINE);
    env
}

#[test]
fn a_three_class_image_folder_runs_end_to_end() {
    let env = shapes_env();
    let out = env.ok(&["run", "p.yaml"]);
    assert!(
        out.contains("121 images 24x24x3, 3 classes (smallest 40 images)"),
        "{out}"
    );
    assert!(out.contains("1 conflicting groups"), "{out}");
    assert!(out.contains("stratified over 3 classes"), "{out}");
    assert!(out.contains("macro balanced accuracy"), "{out}");

    let metrics_path = find_files(&env.path("cache/objects"), "metrics.json")
        .into_iter()
        .find(|p| std::fs::read_to_string(p).unwrap().contains("per_class"))
        .expect("the evaluation's metrics.json");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&metrics_path).unwrap()).unwrap();
    assert_eq!(m["classes"], serde_json::json!(CLASSES));
    let matrix = m["matrix"].as_array().unwrap();
    assert_eq!(matrix.len(), 3);
    let total: u64 = matrix
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, m["count"].as_u64().unwrap());
    assert_eq!(m["per_class"].as_array().unwrap().len(), 3);
    assert_eq!(m["top_k"]["k"], 2);
    assert!(m.get("threshold").is_none() && m.get("confusion").is_none());
    let bacc = m["balanced_accuracy"].as_f64().unwrap();
    assert!(
        bacc > 0.45,
        "three shapes are learnt in eight epochs (chance: 1/3): {bacc}"
    );
    assert_eq!(m["roc_auc_per_class"].as_array().unwrap().len(), 3);
    assert!(metrics_path.with_file_name("confusion.png").exists());
    // Each class's one-vs-rest ROC curve, with the AUC metrics.json reports, and its figure.
    let rocs: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(metrics_path.with_file_name("roc.json")).unwrap(),
    )
    .unwrap();
    let curves = rocs["classes"].as_array().unwrap();
    assert_eq!(curves.len(), 3);
    for (k, c) in curves.iter().enumerate() {
        assert_eq!(c["class"], CLASSES[k]);
        assert_eq!(c["auc"], m["roc_auc_per_class"][k]);
        let points = c["points"].as_array().unwrap();
        assert_eq!(points[0], serde_json::json!([0.0, 0.0]));
        assert_eq!(points[points.len() - 1], serde_json::json!([1.0, 1.0]));
    }
    assert_eq!(rocs["macro_auc"], m["roc_auc"]);
    let png = image::open(metrics_path.with_file_name("roc.png")).unwrap();
    assert!(png.width() > 400 && png.height() > 400);

    // The model carries its vocabulary; predictions are class names, one per line.
    assert_eq!(
        find_files(&env.path("cache/objects"), "classes.json").len(),
        1
    );
    let sub = find_files(&env.path("cache/objects"), "submission.txt");
    let text = std::fs::read_to_string(&sub[0]).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6);
    assert!(lines.iter().all(|l| CLASSES.contains(l)), "{lines:?}");

    // Class means and saliency of each class.
    assert!(
        out.contains("class means of 3 classes; saliency maps for 6 images"),
        "{out}"
    );

    env.ok(&["report", "p.yaml", "-o", "report.html"]);
    let html = std::fs::read_to_string(env.path("report.html")).unwrap();
    assert!(
        html.contains("by class") && html.contains("stripes"),
        "report"
    );
    // the per-class table's AUC column and the per-class ROC chart with its legend
    assert!(html.contains("ROC AUC (one vs rest)"), "report");
    assert!(html.contains("id=\"chart-class-roc-"), "report");
    for c in CLASSES {
        assert!(
            html.contains(&format!("{c} (AUC 0.")) || html.contains(&format!("{c} (AUC 1.")),
            "{c}"
        );
    }
    assert!(html.contains("macro average of 3 (mean AUC"), "report");
    // the split's balance per class, by name
    assert!(
        html.contains("<th>part</th><th>images</th><th>circle</th><th>cross</th><th>stripes</th>"),
        "report"
    );
}

#[test]
fn n_class_only_settings_are_refused_clearly() {
    let env = shapes_env();
    env.write(
        "tune.yaml",
        &PIPELINE.replace("    top_k: 2\n", "    threshold: tune\n"),
    );
    // Caught at validation (the image folder's classes are known before anything runs), at
    // the field's position; a run refuses it before it starts.
    let err = env.err(&["validate", "tune.yaml"], 2);
    assert!(
        err.contains("`tune` applies to two classes; the data has 3") && err.contains(".threshold"),
        "{err}"
    );
    assert!(err.contains("tune.yaml:"), "{err}");
    let err = env.err(&["run", "tune.yaml"], 2);
    assert!(err.contains("`tune` applies to two classes"), "{err}");
    // The summary's output layer has one unit per class folder.
    env.write("plain.yaml", PIPELINE);
    let summary = env.ok(&["model", "plain.yaml", "--stage", "train"]);
    assert!(summary.contains("(None, 3)"), "{summary}");
    assert!(
        !env.path("cache/objects").exists()
            || std::fs::read_dir(env.path("cache/objects"))
                .unwrap()
                .next()
                .is_none(),
        "nothing ran"
    );
    env.write(
        "minus.yaml",
        &format!("{PIPELINE}    label_format: minus_one_one\n"),
    );
    let err = env.err(&["run", "minus.yaml"], 2);
    assert!(err.contains("`minus_one_one` is for two classes"), "{err}");
}

#[test]
fn string_labels_in_a_csv_and_a_class_subset() {
    let env = Env::new();
    write_class_folders(&env.path("data/shapes"), 3);
    let mut csv = String::from("filename,label\n");
    for c in CLASSES {
        for i in 0..3 {
            let ext = if i % 4 == 0 { "JPG" } else { "png" };
            csv.push_str(&format!("{c}/{i:03}.{ext},{c}\n"));
        }
    }
    env.write("labels.csv", &csv);
    env.write(
        "p.yaml",
        "
stages:
  csv:
    kind: source
    format: folder
    dir: data/shapes
    labels: labels.csv
    height: 24
    width: 24
  two:
    kind: source
    format: image_folder
    dir: data/shapes
    classes: [stripes, circle]
    height: 24
    width: 24
",
    );
    let out = env.ok(&["run", "p.yaml"]);
    assert!(out.contains("9 images 24x24x3, 3 classes"), "{out}");
    assert!(out.contains("6 images 24x24x3, 2 classes"), "{out}");
    let metas = find_files(&env.path("cache/objects"), "dataset.json");
    let texts: Vec<String> = metas
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("\"stripes\",\n    \"circle\"")),
        "{texts:?}"
    );
}
