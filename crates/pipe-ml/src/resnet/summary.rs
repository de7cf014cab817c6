//! Keras' view of the network: its `model.layers` table and names, parameter counts as Keras
//! counts them, and the `model.summary()` tail of the report's figures.

use crate::format::thousands;
use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use pipe_data::Shape;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::*;

/// One row of Keras' `model.summary()` for [`ResNet50Classifier`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KerasLayer {
    /// Keras layer name (`res5b_branch2b`, `activation_46`, `dense_1`, …).
    pub name: String,
    /// Keras class (`Conv2D`, `BatchNormalization`, `Add`, …).
    pub class: &'static str,
    /// Output shape without the batch axis: `[h, w, c]`, or `[c]` after pooling.
    pub output: Vec<usize>,
    /// Parameters (weights + biases; for a batch norm all four vectors).
    pub params: usize,
    /// Of which not trainable whatever the mode (batch-norm moving mean and variance).
    pub non_trainable: usize,
    /// Names of the input layers.
    pub inputs: Vec<String>,
}

pub(super) struct LayerTable {
    pub(super) layers: Vec<KerasLayer>,
    pub(super) activations: usize,
    pub(super) adds: usize,
}

impl LayerTable {
    fn push(
        &mut self,
        name: String,
        class: &'static str,
        output: Vec<usize>,
        params: usize,
        non_trainable: usize,
        inputs: Vec<String>,
    ) -> (String, Vec<usize>) {
        self.layers.push(KerasLayer {
            name: name.clone(),
            class,
            output: output.clone(),
            params,
            non_trainable,
            inputs,
        });
        (name, output)
    }

    fn conv(
        &mut self,
        name: String,
        input: &(String, Vec<usize>),
        filters: usize,
        kernel: usize,
        stride: usize,
        pad: usize,
    ) -> (String, Vec<usize>) {
        let side = |s: usize| (s + 2 * pad - kernel) / stride + 1;
        let (h, w, c) = (input.1[0], input.1[1], input.1[2]);
        let params = kernel * kernel * c * filters + filters;
        self.push(
            name,
            "Conv2D",
            vec![side(h), side(w), filters],
            params,
            0,
            vec![input.0.clone()],
        )
    }

    fn bn(&mut self, name: String, input: &(String, Vec<usize>)) -> (String, Vec<usize>) {
        let c = input.1[2];
        self.push(
            name,
            "BatchNormalization",
            input.1.clone(),
            4 * c,
            2 * c,
            vec![input.0.clone()],
        )
    }

    fn relu(&mut self, input: &(String, Vec<usize>)) -> (String, Vec<usize>) {
        self.activations += 1;
        let name = format!("activation_{}", self.activations);
        self.push(
            name,
            "Activation",
            input.1.clone(),
            0,
            0,
            vec![input.0.clone()],
        )
    }

    fn add(&mut self, a: &(String, Vec<usize>), b: &(String, Vec<usize>)) -> (String, Vec<usize>) {
        self.adds += 1;
        let name = format!("add_{}", self.adds);
        self.push(
            name,
            "Add",
            a.1.clone(),
            0,
            0,
            vec![a.0.clone(), b.0.clone()],
        )
    }

    fn dense(
        &mut self,
        name: &str,
        input: &(String, Vec<usize>),
        units: usize,
    ) -> (String, Vec<usize>) {
        let params = input.1[0] * units + units;
        self.push(
            name.to_string(),
            "Dense",
            vec![units],
            params,
            0,
            vec![input.0.clone()],
        )
    }
}

/// The layers of Keras' `ResNet50(include_top=False)` + our head, in `model.layers` order,
/// with Keras 2 names of a fresh session (`activation_1` … `activation_49`, `add_1` … `add_16`,
/// `dense_1` … `dense_3`). The network always sees three channels (grey is replicated).
pub fn keras_layers(input: Shape) -> Vec<KerasLayer> {
    let (h, w) = (input.height as usize, input.width as usize);
    let mut t = LayerTable {
        layers: Vec::with_capacity(180),
        activations: 0,
        adds: 0,
    };
    let x = t.push("input_1".into(), "InputLayer", vec![h, w, 3], 0, 0, vec![]);
    let x = t.push(
        "conv1_pad".into(),
        "ZeroPadding2D",
        vec![h + 6, w + 6, 3],
        0,
        0,
        vec![x.0],
    );
    let x = t.conv("conv1".into(), &x, 64, 7, 2, 0);
    let x = t.bn("bn_conv1".into(), &x);
    let x = t.relu(&x);
    let x = t.push(
        "pool1_pad".into(),
        "ZeroPadding2D",
        vec![x.1[0] + 2, x.1[1] + 2, 64],
        0,
        0,
        vec![x.0],
    );
    let pooled = |s: usize| (s - 3) / 2 + 1;
    let mut x = t.push(
        "max_pooling2d_1".into(),
        "MaxPooling2D",
        vec![pooled(x.1[0]), pooled(x.1[1]), 64],
        0,
        0,
        vec![x.0],
    );
    for (stage, blocks, [f1, f2, f3], stride) in STAGES {
        for b in 0..blocks {
            let tag = block_tag(stage, b);
            let s = if b == 0 { stride } else { 1 };
            let input = x.clone();
            let y = t.conv(format!("res{tag}_branch2a"), &input, f1, 1, s, 0);
            let y = t.bn(format!("bn{tag}_branch2a"), &y);
            let y = t.relu(&y);
            let y = t.conv(format!("res{tag}_branch2b"), &y, f2, 3, 1, 1);
            let y = t.bn(format!("bn{tag}_branch2b"), &y);
            let y = t.relu(&y);
            let y = t.conv(format!("res{tag}_branch2c"), &y, f3, 1, 1, 0);
            let y = if b == 0 {
                let shortcut = t.conv(format!("res{tag}_branch1"), &input, f3, 1, s, 0);
                let y = t.bn(format!("bn{tag}_branch2c"), &y);
                let shortcut = t.bn(format!("bn{tag}_branch1"), &shortcut);
                t.add(&y, &shortcut)
            } else {
                let y = t.bn(format!("bn{tag}_branch2c"), &y);
                t.add(&y, &input)
            };
            x = t.relu(&y);
        }
    }
    let channels = x.1[2];
    let x = t.push(
        "global_average_pooling2d_1".into(),
        "GlobalAveragePooling2D",
        vec![channels],
        0,
        0,
        vec![x.0],
    );
    let x = t.dense("dense_1", &x, HEAD_WIDTH);
    let x = t.dense("dense_2", &x, HEAD_WIDTH);
    t.dense("dense_3", &x, 1);
    t.layers
}

/// Keras layer name → index in `model.layers` order (shape-independent).
pub(super) fn keras_index() -> BTreeMap<String, usize> {
    keras_layers(Shape::default())
        .into_iter()
        .enumerate()
        .map(|(i, layer)| (layer.name, i))
        .collect()
}

/// The Keras layer name of one of our module paths (`res5.1.branch2b.weight` →
/// `res5b_branch2b`, `res5.1.bn_branch2b.gamma` → `bn5b_branch2b`, `bn_conv1.running_var` →
/// `bn_conv1`, `dense_3.bias` → `dense_3`). `None` for paths outside the network.
pub fn keras_layer_of(path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split('.').collect();
    match parts.as_slice() {
        [
            layer @ ("conv1" | "bn_conv1" | "dense_1" | "dense_2" | "dense_3"),
            _leaf,
        ] => Some((*layer).to_string()),
        [stage, block, layer, _leaf] => {
            let stage: usize = stage.strip_prefix("res")?.parse().ok()?;
            let (_, blocks, _, _) = STAGES.iter().find(|s| s.0 == stage)?;
            let block: usize = block.parse().ok()?;
            if block >= *blocks {
                return None;
            }
            let tag = block_tag(stage, block);
            match layer.strip_prefix("bn_branch") {
                Some(part) => Some(format!("bn{tag}_branch{part}")),
                None if layer.starts_with("branch") => Some(format!("res{tag}_{layer}")),
                None => None,
            }
        }
        _ => None,
    }
}

/// Element counts of a module's float tensors by path (batch-norm running statistics
/// included: burn keeps them as `RunningState`, which visits like a parameter).
#[derive(Default)]
pub(super) struct ParamCollector {
    pub(super) path: Vec<String>,
    pub(super) tensors: Vec<(String, usize)>,
}

impl ModuleVisitor for ParamCollector {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.tensors
            .push((self.path.join("."), param.lazy_shape().num_elements()));
    }
}

/// Every float tensor of `model` as (module path, element count), in module order.
pub fn tensor_sizes(model: &ResNet50Classifier) -> Vec<(String, usize)> {
    let mut collector = ParamCollector::default();
    model.visit(&mut collector);
    collector.tensors
}

pub(super) fn is_running_stat(path: &str) -> bool {
    path.ends_with(".running_mean") || path.ends_with(".running_var")
}

/// (trainable, total) parameters of the network in `mode`, counted as Keras does: the total
/// includes the batch-norm moving statistics (never trainable). Counted on a real module built
/// lazily (no weights are materialised); `input` only needs to be valid for
/// [`validate_input`] and does not change the counts (the network is fully convolutional up to
/// the global pool and always has three input channels).
pub fn param_counts(mode: TransferMode, _input: Shape) -> (usize, usize) {
    let model = ResNet50Classifier::new(&Device::default());
    count_params(&model, mode)
}

/// (trainable, total) parameters of the network with `units` outputs, trained from the Keras
/// layer `first_trainable` on (see [`param_counts`]).
pub fn param_counts_from(first_trainable: &str, units: usize) -> (usize, usize) {
    let model = ResNet50Classifier::with_units(units, &Device::default());
    count_params_from(&model, first_trainable)
}

pub(super) fn count_params(model: &ResNet50Classifier, mode: TransferMode) -> (usize, usize) {
    count_params_from(model, mode.first_trainable_layer())
}

fn count_params_from(model: &ResNet50Classifier, first_trainable: &str) -> (usize, usize) {
    let index = keras_index();
    let cutoff = index.get(first_trainable).copied().unwrap_or(0);
    let mut trainable = 0;
    let mut total = 0;
    for (path, n) in tensor_sizes(model) {
        total += n;
        let layer_index = keras_layer_of(&path).and_then(|l| index.get(&l).copied());
        if !is_running_stat(&path) && layer_index.is_some_and(|i| i >= cutoff) {
            trainable += n;
        }
    }
    (trainable, total)
}

/// Keras 2's `print_summary` row (line length 98, columns ending at 32, 53, 65, 98): each field
/// is cut where its column ends, and the last character before the next field is a space.
pub(super) fn summary_row(fields: [&str; 4]) -> String {
    const POSITIONS: [usize; 4] = [32, 53, 65, 98];
    let mut line: Vec<char> = Vec::with_capacity(98);
    for (i, (field, end)) in fields.iter().zip(POSITIONS).enumerate() {
        if i > 0 {
            line.pop();
            line.push(' ');
        }
        line.extend(field.chars());
        line.truncate(end);
        line.resize(end, ' ');
    }
    line.into_iter().collect::<String>().trim_end().to_string()
}

/// A Keras-like `model.summary()` of the last [`SUMMARY_TAIL_ROWS`] layers (from `add_15` on,
/// like the report's Figures 12/14/16) and the totals for `spec.mode`.
pub fn summary_tail(spec: &ResNetSpec) -> String {
    let layers = keras_layers(spec.input);
    let (trainable, total) = param_counts_from(spec.first_trainable(), spec.units);
    let mut out = String::new();
    let rule = |c: char| c.to_string().repeat(98);
    let _ = writeln!(out, "Model: \"{}\" (last layers)", spec.title());
    let _ = writeln!(out, "{}", rule('_'));
    let _ = writeln!(
        out,
        "{}",
        summary_row(["Layer (type)", "Output Shape", "Param #", "Connected to"])
    );
    let _ = writeln!(out, "{}", rule('='));
    let _ = writeln!(out, "...");
    let _ = writeln!(out, "{}", rule('_'));
    let start = layers.len().saturating_sub(SUMMARY_TAIL_ROWS);
    for (i, layer) in layers.iter().enumerate().skip(start) {
        let shape = format!(
            "(None, {})",
            layer
                .output
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        let name = format!("{} ({})", layer.name, layer.class);
        let inputs: Vec<String> = layer.inputs.iter().map(|i| format!("{i}[0][0]")).collect();
        let first_input = inputs.first().map(String::as_str).unwrap_or("");
        let _ = writeln!(
            out,
            "{}",
            summary_row([&name, &shape, &layer.params.to_string(), first_input])
        );
        for more in inputs.iter().skip(1) {
            let _ = writeln!(out, "{}", summary_row(["", "", "", more]));
        }
        let last = i + 1 == layers.len();
        let _ = writeln!(out, "{}", rule(if last { '=' } else { '_' }));
    }
    let _ = writeln!(out, "Total params: {}", thousands(total));
    let _ = writeln!(out, "Trainable params: {}", thousands(trainable));
    let _ = writeln!(
        out,
        "Non-trainable params: {}",
        thousands(total - trainable)
    );
    let _ = write!(out, "{}", rule('_'));
    out
}
