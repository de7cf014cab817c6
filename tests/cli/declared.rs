//! Models declared in YAML (`model: {layers: [...]}`): training, evaluation, prediction and
//! caching on the real binary; shape errors at the layer's position; `pipe model --stage`.

use super::*;

/// A pipeline whose `net` stage is a small declared CNN with every layer kind but avg_pool;
/// `{conv}` is replaced by the first layer's settings.
fn declared_pipeline(conv: &str) -> String {
    format!(
        "\
stages:
  faces: {{kind: source, format: synthetic, count: 120, height: 24, width: 24, seed: 4, exact_duplicates: 0, near_duplicates: 0, conflicting_duplicates: 0}}
  split: {{kind: split, inputs: {{data: faces}}}}
  net:
    kind: train
    epochs: 2
    batch_size: 16
    seed: 5
    inputs: {{data: faces, split: split}}
    model:
      layers:
        - conv2d: {conv}
        - max_pool
        - batch_norm
        - residual:
            layers:
              - conv2d: {{filters: 4, padding: same}}
              - dropout: {{rate: 0.1}}
        - global_avg_pool
        - dense: {{units: 8, activation: tanh}}
  evaluate: {{kind: evaluate, inputs: {{model: net, data: faces, split: split}}}}
  predict: {{kind: predict, hash_override: false, inputs: {{test: faces, model: net}}}}
"
    )
}

#[test]
fn a_declared_model_trains_evaluates_predicts_and_caches() {
    let env = Env::new();
    env.write("p.yaml", &declared_pipeline("{filters: 4, padding: same}"));
    let out = env.ok(&["run", "p.yaml"]);
    assert_eq!(ran(&out), ["evaluate", "faces", "net", "predict", "split"]);
    let out = env.ok(&["run", "p.yaml"]);
    assert!(ran(&out).is_empty(), "{out}");

    // The same architecture written with its defaults spelled out: the same key.
    env.write(
        "p.yaml",
        &declared_pipeline("{filters: 4, kernel: 3, stride: 1, padding: same, activation: relu}"),
    );
    let out = env.ok(&["run", "p.yaml"]);
    assert!(ran(&out).is_empty(), "{out}");

    // One layer changed: the training and what depends on it rerun, the data stays cached.
    env.write(
        "p.yaml",
        &declared_pipeline("{filters: 4, kernel: 5, padding: same}"),
    );
    let out = env.ok(&["run", "p.yaml"]);
    assert_eq!(ran(&out), ["evaluate", "net", "predict"], "{out}");
    let s = env.ok(&["model", "p.yaml", "--stage", "net"]);
    assert!(s.contains("Total params: 517"), "{s}");
}

#[test]
fn pipe_model_prints_the_summary_of_a_declared_stage() {
    let env = Env::new();
    env.write("p.yaml", &declared_pipeline("{filters: 4, padding: same}"));
    let s = env.ok(&["model", "p.yaml", "--stage", "net"]);
    for want in [
        "Model: \"net\"",
        "conv2d_1 (Conv2D)",
        "(None, 24, 24, 4)",
        "max_pooling2d_1 (MaxPooling2D)",
        "(None, 12, 12, 4)",
        "batch_normalization_1 (BatchNormalization)",
        "add_1 (Add)",
        "global_average_pooling2d_1 (GlobalAveragePooling2D)",
        "dense_1 (Dense)",
        "output (Dense)",
        // 112 + 16 + 148 + 40 + 9 (one logit for two classes)
        "Total params: 325",
        "Trainable params: 317",
        "Non-trainable params: 8",
    ] {
        assert!(s.contains(want), "{want}\n{s}");
    }
    // A named model's stage too, and the errors of a wrong stage.
    env.write(
        "b.yaml",
        "stages:\n  faces: {kind: source, format: synthetic, count: 50, height: 24, width: 24, exact_duplicates: 0, near_duplicates: 0, conflicting_duplicates: 0}\n  split: {kind: split, inputs: {data: faces}}\n  t: {kind: train, model: b1, inputs: {data: faces, split: split}}\n",
    );
    let s = env.ok(&["model", "b.yaml", "--stage", "t"]);
    assert!(
        s.contains("(None, 22, 22, 16)") && s.contains("Model: \"b1\""),
        "{s}"
    );
    let e = env.err(&["model", "b.yaml", "--stage", "split"], 2);
    assert!(e.contains("not a train stage"), "{e}");
    let e = env.err(&["model", "b.yaml", "--stage", "nope"], 2);
    assert!(e.contains("no stage `nope`"), "{e}");
}

#[test]
fn shape_errors_are_reported_at_the_layer_before_anything_runs() {
    let env = Env::new();
    // layer 3 (dense) gets the pooled image; the residual block changes the channels
    let text = "\
stages:
  faces: {kind: source, format: synthetic, count: 60, height: 24, width: 24, exact_duplicates: 0, near_duplicates: 0, conflicting_duplicates: 0}
  split: {kind: split, inputs: {data: faces}}
  net:
    kind: train
    inputs: {data: faces, split: split}
    model:
      layers:
        - residual:
            layers:
              - conv2d: {filters: 3, padding: same}
              - conv2d: {filters: 2, kernel: 1}
        - max_pool: {size: 30}
        - conv2d: {filters: 8}
        - dense: {units: 0}
";
    env.write("p.yaml", text);
    let e = env.err(&["run", "p.yaml"], 2);
    assert!(
        e.contains(
            "p.yaml:9:19: stages.net.model.layers[0]: layer 1 (residual): its layers output (None, 24, 24, 2) but its input is (None, 24, 24, 3)"
        ),
        "{e}"
    );
    assert!(
        e.contains(
            "p.yaml:15:16: stages.net.model.layers[3]: layer 4 (dense): units must be at least 1"
        ),
        "{e}"
    );
    let out = env.pipe(&["run", "p.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(ran(&stdout).is_empty(), "nothing runs: {stdout}");
    // dense on an image: the message says what to add
    env.write(
        "p.yaml",
        &text
            .replace("        - residual:\n            layers:\n              - conv2d: {filters: 3, padding: same}\n              - conv2d: {filters: 2, kernel: 1}\n", "")
            .replace("size: 30", "size: 2")
            .replace("units: 0", "units: 4"),
    );
    let e = env.err(&["validate", "p.yaml"], 2);
    assert!(
        e.contains(
            "p.yaml:11:16: stages.net.model.layers[2]: layer 3 (dense): input is 3-D, add flatten"
        ),
        "{e}"
    );
    let e = env.err(&["model", "p.yaml", "--stage", "net"], 2);
    assert!(e.contains("input is 3-D, add flatten"), "{e}");
    // an unknown layer names itself and its list
    env.write(
        "p.yaml",
        &text.replace("max_pool: {size: 30}", "maxpool: {size: 30}"),
    );
    let e = env.err(&["validate", "p.yaml"], 2);
    assert!(
        e.contains("p.yaml:13:11: stages.net.model.layers[1]: layer 2: unknown layer kind `maxpool` (did you mean `max_pool`?)"),
        "{e}"
    );
}

#[test]
fn layer_syntax_errors_are_each_reported_at_their_layer() {
    let env = Env::new();
    // line numbers below are those of this text
    let text = "\
stages:
  faces: {kind: source, format: synthetic, count: 60, height: 24, width: 24, exact_duplicates: 0, near_duplicates: 0, conflicting_duplicates: 0}
  split: {kind: split, inputs: {data: faces}}
  net:
    kind: train
    inputs: {data: faces, split: split}
    model:
      layers:
        - conv2d: {filterz: 8, kernal: 3}
        - maxpool
        - dens: {units: 4}
        - conv2d: {filters: eight, activation: relux}
        - residual:
            layers:
              - conv2d: {kernel: 3}
              - flatten: {size: 2}
            activaton: relu
        - dense: {}
";
    env.write("p.yaml", text);
    let e = env.err(&["validate", "p.yaml"], 2);
    for want in [
        "p.yaml:9:20: stages.net.model.layers[0].conv2d.filterz: layer 1 (conv2d): unknown field `filterz` (did you mean `filters`?); expected one of filters, kernel, stride, padding, activation",
        "p.yaml:9:32: stages.net.model.layers[0].conv2d.kernal: layer 1 (conv2d): unknown field `kernal` (did you mean `kernel`?)",
        // after its unknown fields, the layer's missing one
        "p.yaml:9:19: stages.net.model.layers[0].conv2d: layer 1 (conv2d): missing field `filters`",
        "p.yaml:10:11: stages.net.model.layers[1]: layer 2: unknown layer kind `maxpool` (did you mean `max_pool`?)",
        "p.yaml:11:11: stages.net.model.layers[2]: layer 3: unknown layer kind `dens` (did you mean `dense`?)",
        "p.yaml:12:29: stages.net.model.layers[3].conv2d.filters: layer 4 (conv2d): invalid type: string \"eight\"",
        "p.yaml:15:25: stages.net.model.layers[4].residual.layers[0].conv2d: layer 5.1 (conv2d): missing field `filters`",
        "p.yaml:16:27: stages.net.model.layers[4].residual.layers[1].flatten.size: layer 5.2 (flatten): unknown field `size`: flatten takes no settings",
        "p.yaml:17:13: stages.net.model.layers[4].residual.activaton: unknown field `activaton` (did you mean `activation`?) in a residual block",
        "p.yaml:18:18: stages.net.model.layers[5].dense: layer 6 (dense): missing field `units`",
    ] {
        assert!(e.contains(want), "missing {want:?} in\n{e}");
    }
    // serde's single message at `model:` is replaced by the layers' own
    assert!(!e.contains("stages.net.model: "), "{e}");
    // a bad value of the activation: its alternatives, at the value
    env.write("p.yaml", &text.replace("filters: eight", "filters: 8"));
    let e = env.err(&["run", "p.yaml"], 2);
    assert!(
        e.contains("p.yaml:12:44: stages.net.model.layers[3].conv2d.activation: layer 4 (conv2d): unknown value `relux` (did you mean `relu`?); expected one of relu, linear, tanh, sigmoid"),
        "{e}"
    );
    // the model mapping's own keys
    env.write(
        "p.yaml",
        &text.replace(
            "      layers:\n        - conv2d: {filterz",
            "      layerz: []\n      layers:\n        - conv2d: {filterz",
        ),
    );
    let e = env.err(&["validate", "p.yaml"], 2);
    assert!(
        e.contains("p.yaml:8:7: stages.net.model.layerz: unknown field `layerz` (did you mean `layers`?) in a declared model; expected layers"),
        "{e}"
    );
}

/// A batch whose training step cannot fit any machine's memory: 65,000 filters at 32x32 keep
/// ~266 MB per image for the backward pass, and the batch is the whole training split (~5,600
/// images, over a TiB). The stage fails before training, exit 2, naming the numbers; nothing is
/// committed.
#[test]
fn a_batch_too_large_for_memory_fails_the_stage_with_its_numbers() {
    let env = Env::new();
    env.write(
        "p.yaml",
        "\
stages:
  faces: {kind: source, format: synthetic, count: 8000, height: 32, width: 32, seed: 4, exact_duplicates: 0, near_duplicates: 0, conflicting_duplicates: 0}
  split: {kind: split, inputs: {data: faces}}
  net:
    kind: train
    epochs: 1
    batch_size: 8000
    inputs: {data: faces, split: split}
    model:
      layers:
        - conv2d: {filters: 65000, padding: same}
        - global_avg_pool
",
    );
    let err = env.err(&["run", "p.yaml"], 2);
    for want in [
        "net",
        "does not fit the memory of device `cpu`",
        "TiB",
        "is available",
        "images per batch would fit",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    // Nothing of `net` was committed: the next run tries it again (and fails the same way).
    let err = env.err(&["run", "p.yaml"], 2);
    assert!(err.contains("does not fit"), "{err}");
}
