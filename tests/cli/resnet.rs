//! The named ResNets: a three-class image folder trains resnet18 over torchvision-keyed weights
//! with `freeze: until layer4`, end to end; frozen layers keep the file's values; `freeze:`
//! mistakes are validation errors at their position.

use super::multiclass::{CLASSES, class_image, write_class_folders};
use super::{Env, find_files};
use std::path::Path;

const PIPELINE: &str = "
name: resnet_shapes
stages:
  shapes:
    kind: source
    format: image_folder
    dir: data/shapes
    height: 32
    width: 32
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
    model: resnet18
    weights: weights/resnet18.safetensors
    freeze: until layer4
    epochs: 2
    batch_size: 16
    seed: 3
    inputs: {data: shapes, split: split}
  evaluate:
    kind: evaluate
    on: test
    top_k: 2
    inputs: {model: train, data: shapes, split: split}
  unseen:
    kind: source
    format: folder
    dir: data/unseen
    height: 32
    width: 32
  predict:
    kind: predict
    inputs: {test: unseen, model: train, train: shapes}
";

/// A few torchvision-keyed resnet18 tensors (the rest stay at their seeded init), seeded values.
fn weights() -> Vec<(&'static str, Vec<usize>, Vec<f32>)> {
    let shapes: [(&str, Vec<usize>); 4] = [
        ("conv1.weight", vec![64, 3, 7, 7]),
        ("bn1.running_var", vec![64]),
        ("layer3.1.conv2.weight", vec![256, 256, 3, 3]),
        ("layer4.0.conv1.weight", vec![512, 256, 3, 3]),
    ];
    shapes
        .into_iter()
        .enumerate()
        .map(|(t, (k, s))| {
            let n: usize = s.iter().product();
            let v = (0..n)
                .map(|i| ((i * 7 + t * 13) % 101) as f32 * 1e-3 + 0.5)
                .collect();
            (k, s, v)
        })
        .collect()
}

/// A SafeTensors file of f32 tensors (the format is a length-prefixed JSON header and the
/// little-endian data).
fn write_safetensors(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
    let mut header = serde_json::Map::new();
    let mut data: Vec<u8> = Vec::new();
    for (name, shape, values) in tensors {
        let start = data.len();
        data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let header = serde_json::to_vec(&header).unwrap();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header);
    bytes.extend(data);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// One f32 tensor of a SafeTensors file.
fn read_tensor(path: &Path, name: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
    let offsets = &header[name]["data_offsets"];
    let (a, b) = (
        offsets[0].as_u64().unwrap() as usize,
        offsets[1].as_u64().unwrap() as usize,
    );
    bytes[8 + len + a..8 + len + b]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn resnet_env() -> Env {
    let env = Env::new();
    write_class_folders(&env.path("data/shapes"), 12);
    let unseen = env.path("data/unseen");
    std::fs::create_dir_all(&unseen).unwrap();
    for i in 0..3 {
        class_image(i, 700 + i)
            .save(unseen.join(format!("u{i}.png")))
            .unwrap();
    }
    write_safetensors(&env.path("weights/resnet18.safetensors"), &weights());
    env.write("p.yaml", PIPELINE);
    env
}

#[test]
fn resnet18_trains_on_an_image_folder_with_frozen_layers() {
    let env = resnet_env();
    let summary = env.ok(&["model", "p.yaml", "--stage", "train"]);
    // layer4 (8,393,728) and the head for three classes (526,851) train.
    assert!(summary.contains("Trainable params: 8,920,579"), "{summary}");
    assert!(summary.contains("layer4.1.bn2 (BatchNorm)"), "{summary}");
    env.write(
        "all.yaml",
        &PIPELINE.replace("freeze: until layer4", "freeze: all"),
    );
    let all = env.ok(&["model", "all.yaml", "--stage", "train"]);
    assert!(all.contains("Trainable params: 526,851"), "{all}");

    let out = env.ok(&["run", "p.yaml"]);
    assert!(out.contains("3 classes"), "{out}");
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
    assert!(matrix.iter().all(|r| r.as_array().unwrap().len() == 3));
    let sub = find_files(&env.path("cache/objects"), "submission.txt");
    let text = std::fs::read_to_string(&sub[0]).unwrap();
    assert_eq!(text.lines().count(), 3);
    assert!(text.lines().all(|l| CLASSES.contains(&l)), "{text}");

    // The file's tensors were loaded; the frozen ones are unchanged after training, layer4's
    // trained.
    let model = find_files(&env.path("cache/objects"), "last.safetensors");
    assert_eq!(model.len(), 1);
    for (name, _, values) in weights() {
        let after = read_tensor(&model[0], name);
        if name.starts_with("layer4") {
            assert_ne!(after, values, "{name} trains");
        } else {
            assert_eq!(after, values, "{name} is frozen");
        }
    }
    env.ok(&["report", "p.yaml", "-o", "report.html"]);
    let html = std::fs::read_to_string(env.path("report.html")).unwrap();
    assert!(html.contains("resnet18") && html.contains("stripes"));
}

#[test]
fn freeze_mistakes_are_validation_errors_at_their_position() {
    let env = resnet_env();
    // The line of `freeze:`; its value starts at column 13.
    let line = PIPELINE
        .lines()
        .position(|l| l.contains("freeze:"))
        .unwrap()
        + 1;
    env.write(
        "typo.yaml",
        &PIPELINE.replace("until layer4", "until layr4"),
    );
    let err = env.err(&["validate", "typo.yaml"], 2);
    assert!(err.contains(&format!("typo.yaml:{line}:13")), "{err}");
    assert!(
        err.contains("unknown layer `layr4` for resnet18") && err.contains("did you mean `layer4`"),
        "{err}"
    );
    assert!(
        err.contains("layer4.0–1"),
        "the valid names are listed: {err}"
    );

    env.write(
        "b1.yaml",
        &PIPELINE
            .replace("model: resnet18", "model: b1")
            .replace("    weights: weights/resnet18.safetensors\n", ""),
    );
    let err = env.err(&["validate", "b1.yaml"], 2);
    assert!(err.contains(&format!("b1.yaml:{}:", line - 1)), "{err}");
    assert!(
        err.contains("applies to resnet18, resnet34 and resnet50, not b1"),
        "{err}"
    );

    env.write("small.yaml", &PIPELINE.replace(": 32\n", ": 24\n"));
    let err = env.err(&["validate", "small.yaml"], 2);
    assert!(err.contains("at least 32x32"), "{err}");
    assert!(
        !env.path("cache/objects").exists()
            || std::fs::read_dir(env.path("cache/objects"))
                .unwrap()
                .next()
                .is_none(),
        "nothing ran"
    );
}
