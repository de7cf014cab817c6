//! Models declared in YAML: a list of layers (`model: {layers: [...]}`), Keras-`Sequential`
//! style, followed by an output layer as wide as [`ModelSpec::output_units`].
//!
//! This module holds the vocabulary (serde types whose serialised form is canonical: every
//! default written out, so equal architectures give equal cache keys), shape inference with
//! per-layer problems (each names the layer's path, `layers[3]`, which the pipeline validator
//! turns into a `file:line:column`), parameter counts and the Keras-like summary. The burn
//! module is in [`net`].

pub mod net;
#[cfg(test)]
mod tests;

use crate::format::thousands;
use crate::models::ModelSpec;
use pipe_data::Shape;
use serde::{Deserialize, Deserializer, Serialize};

/// A layer's non-linearity. Conv and dense layers default to `relu`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    #[default]
    Relu,
    Linear,
    Tanh,
    Sigmoid,
}

/// Convolution padding: `valid` (none, Keras' default) or `same` (output side = ceil(side /
/// stride); odd kernels only, padded symmetrically).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    #[default]
    Valid,
    Same,
}

fn d_kernel() -> usize {
    3
}
fn d_one() -> usize {
    1
}
fn d_pool() -> usize {
    2
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Conv {
    pub filters: usize,
    #[serde(default = "d_kernel")]
    pub kernel: usize,
    #[serde(default = "d_one")]
    pub stride: usize,
    #[serde(default)]
    pub padding: Padding,
    #[serde(default)]
    pub activation: Activation,
}

/// Max or average pooling over `size`x`size` windows (valid padding); `stride` defaults to
/// `size` (0 in YAML is read as "absent" and written out canonically).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    #[serde(default = "d_pool")]
    pub size: usize,
    #[serde(default)]
    pub stride: usize,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Dense {
    pub units: usize,
    #[serde(default)]
    pub activation: Activation,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Dropout {
    pub rate: f64,
}

/// Layers whose output is added to their input, then `activation` (ResNet's basic block).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Residual {
    #[serde(deserialize_with = "layer_list")]
    pub layers: Vec<Layer>,
    #[serde(default)]
    pub activation: Activation,
}

/// A layer without settings (`- flatten` or `- flatten: {}`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}

/// One layer. In YAML a one-key mapping (`- conv2d: {filters: 16}`) or, for a layer whose
/// settings all have defaults, just its name (`- max_pool`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    Conv2d(Conv),
    MaxPool(Pool),
    AvgPool(Pool),
    GlobalAvgPool(NoSettings),
    BatchNorm(NoSettings),
    Dropout(Dropout),
    Flatten(NoSettings),
    Dense(Dense),
    Residual(Residual),
}

/// The layer names, for messages.
pub const LAYER_NAMES: &str = "conv2d, max_pool, avg_pool, global_avg_pool, batch_norm, \
                               dropout, flatten, dense, residual";

/// Deserialises a list of layers, accepting a bare name for a layer without required settings
/// and filling every default (pool strides), so the serialised form is canonical.
pub fn layer_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Layer>, D::Error> {
    use serde::de::Error;
    let items = Vec::<serde_json::Value>::deserialize(d)?;
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let v = match v {
                serde_json::Value::String(name) => {
                    serde_json::json!({ name: {} })
                }
                serde_json::Value::Object(m)
                    if m.len() == 1 && m.values().next().is_some_and(|x| x.is_null()) =>
                {
                    let (k, _) = m.into_iter().next().unwrap_or_default();
                    serde_json::json!({ k: {} })
                }
                other => other,
            };
            let mut layer = serde_json::from_value::<Layer>(v)
                .map_err(|e| D::Error::custom(format!("layer {}: {e}", i + 1)))?;
            if let Layer::MaxPool(p) | Layer::AvgPool(p) = &mut layer
                && p.stride == 0
            {
                p.stride = p.size;
            }
            Ok(layer)
        })
        .collect()
}

/// A declared architecture: `model: {layers: [...]}` in a train stage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Declared {
    #[serde(deserialize_with = "layer_list")]
    pub layers: Vec<Layer>,
}

impl Layer {
    /// The layer's YAML name.
    pub fn name(&self) -> &'static str {
        match self {
            Layer::Conv2d(_) => "conv2d",
            Layer::MaxPool(_) => "max_pool",
            Layer::AvgPool(_) => "avg_pool",
            Layer::GlobalAvgPool(_) => "global_avg_pool",
            Layer::BatchNorm(_) => "batch_norm",
            Layer::Dropout(_) => "dropout",
            Layer::Flatten(_) => "flatten",
            Layer::Dense(_) => "dense",
            Layer::Residual(_) => "residual",
        }
    }

    /// Keras' layer name and class, for the summary.
    fn keras(&self) -> (&'static str, &'static str) {
        match self {
            Layer::Conv2d(_) => ("conv2d", "Conv2D"),
            Layer::MaxPool(_) => ("max_pooling2d", "MaxPooling2D"),
            Layer::AvgPool(_) => ("average_pooling2d", "AveragePooling2D"),
            Layer::GlobalAvgPool(_) => ("global_average_pooling2d", "GlobalAveragePooling2D"),
            Layer::BatchNorm(_) => ("batch_normalization", "BatchNormalization"),
            Layer::Dropout(_) => ("dropout", "Dropout"),
            Layer::Flatten(_) => ("flatten", "Flatten"),
            Layer::Dense(_) => ("dense", "Dense"),
            Layer::Residual(_) => ("add", "Add"),
        }
    }
}

/// The shape of an activation (per image).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dims {
    /// Height, width, channels.
    Image(usize, usize, usize),
    Flat(usize),
}

impl Dims {
    /// Values per image.
    pub fn values(self) -> usize {
        match self {
            Dims::Image(h, w, c) => h * w * c,
            Dims::Flat(n) => n,
        }
    }

    /// Keras' `(None, …)` notation (NHWC).
    fn keras(self) -> String {
        match self {
            Dims::Image(h, w, c) => format!("(None, {h}, {w}, {c})"),
            Dims::Flat(n) => format!("(None, {n})"),
        }
    }

    fn channels(self) -> usize {
        match self {
            Dims::Image(_, _, c) => c,
            Dims::Flat(n) => n,
        }
    }
}

/// A problem with one layer: its path below the model (`layers[3]`,
/// `layers[2].residual.layers[0]`) and the message.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerProblem {
    pub path: String,
    pub message: String,
}

/// One row of the summary: the layer's display name, output shape, parameter counts.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub name: String,
    pub out: Dims,
    pub trainable: usize,
    pub non_trainable: usize,
}

/// The result of shape inference over a declared model.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub rows: Vec<Row>,
    pub problems: Vec<LayerProblem>,
    /// Per dropout layer, in forward order: its rate and values per image.
    pub dropout: Vec<(f64, usize)>,
}

/// Spatial side after a window of `k` with `stride` and `pad` on each side; `None` when the
/// window does not fit.
fn window_out(side: usize, k: usize, stride: usize, pad: usize) -> Option<usize> {
    let padded = side + 2 * pad;
    (padded >= k && stride > 0).then(|| (padded - k) / stride + 1)
}

struct Walker {
    plan: Plan,
    counters: std::collections::BTreeMap<&'static str, usize>,
}

impl Walker {
    fn row(&mut self, layer: &Layer, out: Dims, trainable: usize, non_trainable: usize) {
        let (name, class) = layer.keras();
        let n = self.counters.entry(name).or_insert(0);
        *n += 1;
        self.plan.rows.push(Row {
            name: format!("{name}_{n} ({class})"),
            out,
            trainable,
            non_trainable,
        });
    }

    fn problem(&mut self, path: &str, label: &str, message: String) {
        self.plan.problems.push(LayerProblem {
            path: path.to_owned(),
            message: format!("layer {label}: {message}"),
        });
    }

    /// Walks `layers` from `input`; the output shape, or `None` after a shape error (the
    /// remaining layers' own settings are still checked).
    fn walk(&mut self, layers: &[Layer], input: Dims, path: &str, label: &str) -> Option<Dims> {
        let mut cur = Some(input);
        for (i, layer) in layers.iter().enumerate() {
            let p = format!("{path}layers[{i}]");
            let l = format!("{label}{} ({})", i + 1, layer.name());
            let settings = settings_problems(layer);
            let bad = !settings.is_empty();
            for m in settings {
                self.problem(&p, &l, m);
            }
            cur = match cur {
                Some(d) if !bad => self.step(layer, d, &p, &l),
                Some(_) | None => {
                    if let Layer::Residual(r) = layer {
                        let inner = format!("{p}.residual.");
                        let lab = format!("{label}{}.", i + 1);
                        // settings only: the input shape is unknown
                        self.walk_settings(&r.layers, &inner, &lab);
                    }
                    None
                }
            };
        }
        cur
    }

    fn walk_settings(&mut self, layers: &[Layer], path: &str, label: &str) {
        for (i, layer) in layers.iter().enumerate() {
            let p = format!("{path}layers[{i}]");
            let l = format!("{label}{} ({})", i + 1, layer.name());
            for m in settings_problems(layer) {
                self.problem(&p, &l, m);
            }
            if let Layer::Residual(r) = layer {
                self.walk_settings(
                    &r.layers,
                    &format!("{p}.residual."),
                    &format!("{label}{}.", i + 1),
                );
            }
        }
    }

    /// One layer on a known input shape.
    fn step(&mut self, layer: &Layer, input: Dims, path: &str, label: &str) -> Option<Dims> {
        let image = |w: &mut Self, what: &str| match input {
            Dims::Image(h, wd, c) => Some((h, wd, c)),
            Dims::Flat(_) => {
                w.problem(
                    path,
                    label,
                    format!("{what} needs an image (height x width x channels) but its input is flat (1-D)"),
                );
                None
            }
        };
        match layer {
            Layer::Conv2d(c) => {
                let (h, w, ch) = image(self, "a convolution")?;
                let pad = match c.padding {
                    Padding::Valid => 0,
                    Padding::Same => (c.kernel - 1) / 2,
                };
                let (Some(oh), Some(ow)) = (
                    window_out(h, c.kernel, c.stride, pad),
                    window_out(w, c.kernel, c.stride, pad),
                ) else {
                    self.problem(
                        path,
                        label,
                        format!(
                            "a {k}x{k} kernel does not fit its {h}x{w} input",
                            k = c.kernel
                        ),
                    );
                    return None;
                };
                let out = Dims::Image(oh, ow, c.filters);
                self.row(
                    layer,
                    out,
                    c.kernel * c.kernel * ch * c.filters + c.filters,
                    0,
                );
                Some(out)
            }
            Layer::MaxPool(p) | Layer::AvgPool(p) => {
                let (h, w, ch) = image(self, "pooling")?;
                let (Some(oh), Some(ow)) = (
                    window_out(h, p.size, p.stride, 0),
                    window_out(w, p.size, p.stride, 0),
                ) else {
                    self.problem(
                        path,
                        label,
                        format!(
                            "a {s}x{s} window does not fit its {h}x{w} input",
                            s = p.size
                        ),
                    );
                    return None;
                };
                let out = Dims::Image(oh, ow, ch);
                self.row(layer, out, 0, 0);
                Some(out)
            }
            Layer::GlobalAvgPool(_) => {
                let (_, _, ch) = image(self, "global pooling")?;
                let out = Dims::Flat(ch);
                self.row(layer, out, 0, 0);
                Some(out)
            }
            Layer::Flatten(_) => {
                let out = Dims::Flat(input.values());
                self.row(layer, out, 0, 0);
                Some(out)
            }
            Layer::BatchNorm(_) => {
                let c = input.channels();
                self.row(layer, input, 2 * c, 2 * c);
                Some(input)
            }
            Layer::Dropout(d) => {
                self.plan.dropout.push((d.rate, input.values()));
                self.row(layer, input, 0, 0);
                Some(input)
            }
            Layer::Dense(d) => {
                let Dims::Flat(n) = input else {
                    self.problem(
                        path,
                        label,
                        "input is 3-D, add flatten (or global_avg_pool) before it".into(),
                    );
                    return None;
                };
                let out = Dims::Flat(d.units);
                self.row(layer, out, n * d.units + d.units, 0);
                Some(out)
            }
            Layer::Residual(r) => {
                let inner = format!("{path}.residual.");
                let lab = label.split(' ').next().unwrap_or_default().to_owned() + ".";
                let out = self.walk(&r.layers, input, &inner, &lab)?;
                if out != input {
                    self.problem(
                        path,
                        label,
                        format!(
                            "its layers output {} but its input is {}: a residual block must keep the shape",
                            out.keras(),
                            input.keras()
                        ),
                    );
                    return None;
                }
                self.row(layer, input, 0, 0);
                Some(input)
            }
        }
    }
}

/// Problems with a layer's own settings (independent of its input).
fn settings_problems(layer: &Layer) -> Vec<String> {
    let mut p = Vec::new();
    let mut positive = |name: &str, v: usize| {
        if v == 0 {
            p.push(format!("{name} must be at least 1"));
        }
    };
    match layer {
        Layer::Conv2d(c) => {
            positive("filters", c.filters);
            positive("kernel", c.kernel);
            positive("stride", c.stride);
            if c.padding == Padding::Same && c.kernel % 2 == 0 {
                p.push(format!(
                    "padding `same` needs an odd kernel, got {}",
                    c.kernel
                ));
            }
        }
        Layer::MaxPool(s) | Layer::AvgPool(s) => {
            positive("size", s.size);
            positive("stride", s.stride);
        }
        Layer::Dense(d) => positive("units", d.units),
        Layer::Dropout(d) => {
            if !(0.0..1.0).contains(&d.rate) {
                p.push(format!("rate {} must be in [0, 1)", d.rate));
            }
        }
        Layer::Residual(r) => {
            if r.layers.is_empty() {
                p.push("a residual block needs at least one layer".to_owned());
            }
        }
        Layer::GlobalAvgPool(_) | Layer::BatchNorm(_) | Layer::Flatten(_) => {}
    }
    p
}

/// Largest number of values per image between two layers (an activation this large would
/// exhaust memory at any useful batch size).
pub const MAX_ACTIVATION: usize = 1 << 26;

/// Shape inference for `layers` on `input` images, with the output layer of `out_units`.
pub fn plan(layers: &[Layer], input: Shape, out_units: usize) -> Plan {
    let mut w = Walker {
        plan: Plan::default(),
        counters: Default::default(),
    };
    if layers.is_empty() {
        w.plan.problems.push(LayerProblem {
            path: "layers".into(),
            message: "a declared model needs at least one layer".into(),
        });
        return w.plan;
    }
    let input = Dims::Image(
        input.height as usize,
        input.width as usize,
        input.channels as usize,
    );
    match w.walk(layers, input, "", "") {
        Some(Dims::Flat(n)) => {
            let out = Dims::Flat(out_units);
            w.plan.rows.push(Row {
                name: "output (Dense)".into(),
                out,
                trainable: n * out_units + out_units,
                non_trainable: 0,
            });
        }
        Some(Dims::Image(..)) => {
            let last = layers.len() - 1;
            w.plan.problems.push(LayerProblem {
                path: format!("layers[{last}]"),
                message: format!(
                    "layer {} ({}): the output layer needs a flat input, but this layer's output is 3-D: add flatten or global_avg_pool at the end",
                    last + 1,
                    layers[last].name()
                ),
            });
        }
        None => {}
    }
    if let Some(r) = w.plan.rows.iter().find(|r| r.out.values() > MAX_ACTIVATION) {
        w.plan.problems.push(LayerProblem {
            path: "layers".into(),
            message: format!(
                "{} outputs {} values per image, more than the {MAX_ACTIVATION} allowed",
                r.name,
                r.out.values()
            ),
        });
    }
    w.plan
}

/// Every problem of a declared `spec`, each with its layer's path.
pub fn validate(spec: &ModelSpec) -> Vec<LayerProblem> {
    plan(&spec.layers, spec.input, spec.output_units()).problems
}

/// (trainable, total) parameters; (0, 0) when invalid.
pub fn param_counts(spec: &ModelSpec) -> (usize, usize) {
    let p = plan(&spec.layers, spec.input, spec.output_units());
    if !p.problems.is_empty() {
        return (0, 0);
    }
    let t: usize = p.rows.iter().map(|r| r.trainable).sum();
    let n: usize = p.rows.iter().map(|r| r.non_trainable).sum();
    (t, t + n)
}

/// The Keras-like summary table of a valid declared `spec` (the problems otherwise).
pub fn summary(spec: &ModelSpec, name: &str) -> String {
    let p = plan(&spec.layers, spec.input, spec.output_units());
    if !p.problems.is_empty() {
        let m: Vec<&str> = p.problems.iter().map(|p| p.message.as_str()).collect();
        return format!("invalid model: {}\n", m.join("; "));
    }
    let s = spec.input;
    let mut rows = vec![(
        "input (InputLayer)".to_owned(),
        Dims::Image(s.height as usize, s.width as usize, s.channels as usize).keras(),
        0,
    )];
    rows.extend(
        p.rows
            .iter()
            .map(|r| (r.name.clone(), r.out.keras(), r.trainable + r.non_trainable)),
    );
    let trainable: usize = p.rows.iter().map(|r| r.trainable).sum();
    let fixed: usize = p.rows.iter().map(|r| r.non_trainable).sum();
    render_table(name, &rows, trainable, fixed)
}

/// Keras' `model.summary()` layout: one row per layer (name, output shape, parameters), then
/// the totals.
pub fn render_table(
    name: &str,
    rows: &[(String, String, usize)],
    trainable: usize,
    non_trainable: usize,
) -> String {
    let rule = |c: char| c.to_string().repeat(72);
    let mut s = format!("Model: \"{name}\"\n{}\n", rule('_'));
    s.push_str(&format!(
        "{:<34}{:<26}{:>12}\n{}\n",
        "Layer (type)",
        "Output Shape",
        "Param #",
        rule('=')
    ));
    for (i, (name, shp, p)) in rows.iter().enumerate() {
        s.push_str(&format!("{name:<34}{shp:<26}{:>12}\n", thousands(*p)));
        s.push_str(&rule(if i + 1 == rows.len() { '=' } else { '_' }));
        s.push('\n');
    }
    s.push_str(&format!(
        "Total params: {}\nTrainable params: {}\nNon-trainable params: {}\n",
        thousands(trainable + non_trainable),
        thousands(trainable),
        thousands(non_trainable)
    ));
    s
}

/// A train stage's `model:`: a name (`b1`, …, `tl3`) or a declared architecture
/// (`{layers: [...]}`). A name serialises as the bare name, so the keys of named models are
/// those from before declared models existed.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelChoice {
    Named(crate::models::ModelKind),
    Declared(Declared),
}

impl ModelChoice {
    /// The kind ([`crate::models::ModelKind::Declared`] for a declared model).
    pub fn kind(&self) -> crate::models::ModelKind {
        match self {
            ModelChoice::Named(k) => *k,
            ModelChoice::Declared(_) => crate::models::ModelKind::Declared,
        }
    }

    /// The declared layers (empty for a named model).
    pub fn layers(&self) -> &[Layer] {
        match self {
            ModelChoice::Named(_) => &[],
            ModelChoice::Declared(d) => &d.layers,
        }
    }
}

impl Serialize for ModelChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ModelChoice::Named(k) => k.serialize(s),
            ModelChoice::Declared(d) => d.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ModelChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use crate::models::ModelKind;
        use serde::de::Error;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => {
                match ModelKind::ALL.into_iter().find(|k| k.as_str() == s) {
                    Some(k) => Ok(ModelChoice::Named(k)),
                    None => {
                        let names: Vec<String> =
                            ModelKind::ALL.iter().map(|k| format!("`{k}`")).collect();
                        // serde's wording, so the validator adds its did-you-mean hint
                        Err(D::Error::custom(format!(
                            "unknown variant `{s}`, expected one of {}, or a mapping with layers:",
                            names.join(", ")
                        )))
                    }
                }
            }
            // serde's backticks would make the validator read a layer's unknown field as
            // one of the stage's
            v @ serde_json::Value::Object(_) => serde_json::from_value(v)
                .map(ModelChoice::Declared)
                .map_err(|e| {
                    D::Error::custom(format!("model: {}", e.to_string().replace('`', "'")))
                }),
            other => Err(D::Error::custom(format!(
                "expected a model name (b1, b2, b3, tl1, tl2, tl3, resnet18, resnet34, resnet50) or a mapping with `layers`, got {other}"
            ))),
        }
    }
}
