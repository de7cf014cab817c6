//! Raw stage trees → typed [`StageSpec`]s: kinds, fields (did-you-mean), types, semantic checks,
//! input slots, artifact kinds and cycles. Every problem is pushed; none stops the others.

use super::load::RawStage;
use super::yaml::{self, Marked, Node};
use super::{Diagnostic, Pipeline, StageSpec, hint, ident};
use crate::graph::Dag;
use crate::quote::quote;
use crate::stages::{self, KINDS, StageConfig};
use std::collections::BTreeMap;
use std::path::Path;

pub fn validate(
    name: String,
    description: String,
    file: &Path,
    raw: Vec<RawStage>,
    diags: &mut Vec<Diagnostic>,
) -> Pipeline {
    let mut specs = BTreeMap::new();
    let ids: Vec<String> = raw.iter().map(|s| s.id.clone()).collect();
    for stage in &raw {
        if let Some(spec) = type_stage(stage, diags) {
            specs.insert(stage.id.clone(), spec);
        }
    }
    check_inputs(&raw, &specs, &ids, diags);
    command_deps(&raw, &mut specs, &ids, diags);
    check_input_sizes(&specs, diags);
    check_declared_models(&raw, &specs, diags);
    check_two_class_settings(&raw, &specs, diags);
    if let Err(cycle) = Dag::build(specs.iter().map(|(id, s)| (id.as_str(), &s.inputs))) {
        let first = cycle.first().and_then(|id| specs.get(id));
        let (f, pos) = first
            .map(|s| (s.file.clone(), Some(s.pos)))
            .unwrap_or((file.to_path_buf(), None));
        let mut chain = cycle.clone();
        if let Some(c) = cycle.first() {
            chain.push(c.clone());
        }
        diags.push(Diagnostic::new(
            f,
            pos,
            "stages",
            format!("cycle: {}", chain.join(" → ")),
        ));
    }
    Pipeline {
        name,
        description,
        file: file.to_path_buf(),
        stages: specs,
        auto_device: None,
    }
}

/// One stage's tree → its typed spec, in phases: shape, kind, inputs, resources, the kind's
/// fields, the kind's own checks.
fn type_stage(stage: &RawStage, diags: &mut Vec<Diagnostic>) -> Option<StageSpec> {
    let field = format!("stages.{}", quote(&stage.id));
    let entries = stage_entries(stage, &field, diags)?;
    let kind = stage_kind(stage, &field, diags)?;
    let inputs = stage_inputs(stage, &field, diags);
    let fields = entries
        .iter()
        .filter_map(|(k, v)| {
            let key = k.as_str()?;
            (!matches!(key, "kind" | "inputs" | "resources"))
                .then(|| (key.to_string(), v.to_json()))
        })
        .collect();
    let resources = stage
        .tree
        .get("resources")
        .map(|(_, node)| {
            let f = format!("{field}.resources");
            super::resources::from_yaml(node, &stage.file, &f, diags)
        })
        .unwrap_or_default();
    let layers = if kind == "train" {
        super::layers::check(stage, &field)
    } else {
        Vec::new()
    };
    let before = diags.len();
    let config = typed_config(stage, &kind, fields, &field, diags);
    if !layers.is_empty() {
        // each layer's problem at its position replaces serde's first one at `model:`
        let model = format!("{field}.model");
        let mut k = 0;
        diags.retain(|d| {
            k += 1;
            k <= before || d.field != model
        });
        diags.extend(layers);
    }
    let config = config?;
    check_config(&config, stage, &field, diags);
    Some(StageSpec {
        id: stage.id.clone(),
        config,
        inputs,
        file: stage.file.clone(),
        pos: stage.key_pos,
        base_dir: stage.base_dir.clone(),
        resources,
    })
}

/// The stage's `field: value` entries, when it is a mapping whose fields serde can see in full
/// ([`plain_fields`]).
fn stage_entries<'a>(
    stage: &'a RawStage,
    field: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<&'a [(Marked, Marked)]> {
    let Node::Map(entries) = &stage.tree.node else {
        diags.push(Diagnostic::new(
            &stage.file,
            Some(stage.tree.pos),
            field,
            format!(
                "a stage must be a mapping with `kind:`, got {}",
                stage.tree.type_name()
            ),
        ));
        return None;
    };
    plain_fields(stage, field, diags).then_some(entries.as_slice())
}

/// The stage's `kind:`, one of [`KINDS`].
fn stage_kind(stage: &RawStage, field: &str, diags: &mut Vec<Diagnostic>) -> Option<String> {
    let Some((_, k)) = stage.tree.get("kind") else {
        diags.push(Diagnostic::new(
            &stage.file,
            Some(stage.key_pos),
            field,
            format!("missing `kind` (one of {})", KINDS.join(", ")),
        ));
        return None;
    };
    let message = match k.as_str() {
        Some(s) if KINDS.contains(&s) => return Some(s.to_string()),
        Some(s) => format!(
            "unknown stage kind `{}`{}; known kinds: {}",
            quote(s),
            hint(s, KINDS.iter().copied()),
            KINDS.join(", ")
        ),
        None => format!("expected a string, got {}", k.type_name()),
    };
    diags.push(Diagnostic::new(
        &stage.file,
        Some(k.pos),
        format!("{field}.kind"),
        message,
    ));
    None
}

/// The stage's `inputs:` as slot → stage id (checked against the kind's slots later, in
/// [`check_inputs`]).
fn stage_inputs(
    stage: &RawStage,
    field: &str,
    diags: &mut Vec<Diagnostic>,
) -> BTreeMap<String, String> {
    let mut inputs = BTreeMap::new();
    let Some((_, inp)) = stage.tree.get("inputs") else {
        return inputs;
    };
    let f = format!("{field}.inputs");
    match &inp.node {
        Node::Map(slots) => {
            for (slot, target) in slots {
                match (slot.as_str(), target.as_str()) {
                    (Some(s), Some(t)) => {
                        if let Err(e) = ident::check("input slot", s) {
                            diags.push(Diagnostic::new(&stage.file, Some(slot.pos), &f, e));
                        }
                        inputs.insert(s.to_string(), t.to_string());
                    }
                    _ => diags.push(Diagnostic::new(
                        &stage.file,
                        Some(target.pos),
                        &f,
                        "each input is `slot: stage_id`",
                    )),
                }
            }
        }
        Node::Null => {}
        _ => diags.push(Diagnostic::new(
            &stage.file,
            Some(inp.pos),
            f,
            format!(
                "expected a mapping slot → stage id, got {}",
                inp.type_name()
            ),
        )),
    }
    inputs
}

/// The kind's configuration from the stage's fields; `None` after any error. Each round
/// reports one unknown field and retries without it, so all are reported.
fn typed_config(
    stage: &RawStage,
    kind: &str,
    mut fields: serde_json::Map<String, serde_json::Value>,
    field: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<StageConfig> {
    let mut ok = true;
    for _ in 0..32 {
        match StageConfig::from_json(kind, serde_json::Value::Object(fields.clone()))? {
            Ok(config) => return ok.then_some(config),
            Err(err) => {
                ok = false;
                let path = err.path().to_string();
                let message = err.inner().to_string();
                let message = shorten_quoted(message.split(" at line ").next().unwrap_or(&message));
                match unknown_name(&message, "unknown field `") {
                    Some(bad) => {
                        let (parent, _) = split_parent(&path);
                        diags.push(unknown_field(stage, field, parent, &bad, &message));
                        if !remove_field(&mut fields, parent, &bad) {
                            return None;
                        }
                    }
                    None => {
                        diags.push(bad_value(stage, field, &path, message));
                        return None;
                    }
                }
            }
        }
    }
    None
}

/// `unknown field `bad`; expected one of …`, at the field's key.
fn unknown_field(
    stage: &RawStage,
    field: &str,
    parent: &str,
    bad: &str,
    message: &str,
) -> Diagnostic {
    let candidates = backticked(message);
    let f = join(field, &join(parent, bad));
    Diagnostic::new(
        &stage.file,
        Some(stage.tree.locate_key(parent, bad)),
        quote(&f),
        format!(
            "unknown field `{}`{}; expected one of {}",
            quote(bad),
            hint(bad, candidates.iter().map(String::as_str)),
            candidates.join(", ")
        ),
    )
}

/// Any other serde error (a wrong type, an unknown value, a missing field), at the value.
fn bad_value(stage: &RawStage, field: &str, path: &str, message: String) -> Diagnostic {
    let mut pos = stage.tree.locate(path);
    let mut message = message;
    if let Some(bad) = unknown_name(&message, "unknown variant `") {
        let candidates = backticked(&message);
        if path == "." || path.is_empty() {
            pos = find_value(&stage.tree, &bad).unwrap_or(pos);
        }
        message = format!(
            "unknown value `{}`{}; expected one of {}",
            quote(&bad),
            hint(&bad, candidates.iter().map(String::as_str)),
            candidates.join(", ")
        );
    }
    let f = if path == "." {
        field.to_string()
    } else {
        join(field, path)
    };
    Diagnostic::new(&stage.file, Some(pos), f, message)
}

/// The kind's own checks on a well-typed configuration (ranges, combinations of fields).
fn check_config(config: &StageConfig, stage: &RawStage, field: &str, diags: &mut Vec<Diagnostic>) {
    for p in config.check() {
        let (f, pos) = if p.field.is_empty() {
            (field.to_string(), stage.key_pos)
        } else {
            (format!("{field}.{}", p.field), stage.tree.locate(&p.field))
        };
        diags.push(Diagnostic::new(&stage.file, Some(pos), f, p.message));
    }
}

/// Checks what serde cannot see: keys that are not strings (`1: 2`, dropped when converting to
/// JSON) and non-finite numbers (`.inf`, `1e400`, which JSON turns into null). False when the
/// stage has either.
fn plain_fields(stage: &RawStage, field: &str, diags: &mut Vec<Diagnostic>) -> bool {
    let mut ok = true;
    if let Some(entries) = stage.tree.as_map() {
        for (k, _) in entries.iter().filter(|(k, _)| k.as_str().is_none()) {
            ok = false;
            diags.push(Diagnostic::new(
                &stage.file,
                Some(k.pos),
                field,
                format!(
                    "field names must be strings, got {} `{}`",
                    k.type_name(),
                    quote(&yaml_text(k))
                ),
            ));
        }
    }
    for (path, node) in yaml::non_finite(&stage.tree) {
        ok = false;
        diags.push(Diagnostic::new(
            &stage.file,
            Some(node.pos),
            quote(&join(field, &path)),
            format!(
                "expected a finite number, got `{}`",
                quote(&yaml_text(node))
            ),
        ));
    }
    ok
}

/// A scalar as written, for messages.
fn yaml_text(m: &Marked) -> String {
    match &m.node {
        Node::NonFinite(s) | Node::Str(s) => s.clone(),
        _ => m.to_json().to_string(),
    }
}

/// serde echoes a bad string value in full (`invalid type: string "…1 MB…"`): each quoted
/// part of the message is cut to what [`quote`] keeps.
fn shorten_quoted(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(start) = rest.find('"') {
        out.push_str(&rest[..=start]);
        rest = &rest[start + 1..];
        // The closing quote: the first `"` not escaped by a backslash.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in rest.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let Some(end) = end else {
            out.push_str(&quote(rest));
            return out;
        };
        out.push_str(&quote(&rest[..end]));
        out.push('"');
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty() || a == ".", b.is_empty() || b == ".") {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}.{b}"),
    }
}

/// serde_path_to_error points at the unknown field itself; its parent holds it.
fn split_parent(path: &str) -> (&str, &str) {
    match path.rsplit_once('.') {
        Some((p, last)) => (p, last),
        None if path == "." => ("", ""),
        None => ("", path),
    }
}

fn unknown_name(message: &str, prefix: &str) -> Option<String> {
    let rest = message.split(prefix).nth(1)?;
    Some(rest.split('`').next()?.to_string())
}

/// The expected names listed in a serde message (every backticked word but the first).
fn backticked(message: &str) -> Vec<String> {
    message
        .split('`')
        .skip(1)
        .step_by(2)
        .skip(1)
        .map(str::to_string)
        .collect()
}

fn remove_field(
    fields: &mut serde_json::Map<String, serde_json::Value>,
    parent: &str,
    name: &str,
) -> bool {
    let mut obj = fields;
    for seg in parent.split('.').filter(|s| !s.is_empty() && *s != ".") {
        match obj.get_mut(seg).and_then(|v| v.as_object_mut()) {
            Some(o) => obj = o,
            None => return false,
        }
    }
    obj.remove(name).is_some()
}

fn find_value(tree: &Marked, text: &str) -> Option<super::Pos> {
    tree.as_map()?
        .iter()
        .find(|(_, v)| v.as_str() == Some(text))
        .map(|(_, v)| v.pos)
}

/// Each stage's inputs against its kind's slots: known slots, existing producers of the right
/// artifact kind, required slots present.
fn check_inputs(
    raw: &[RawStage],
    specs: &BTreeMap<String, StageSpec>,
    ids: &[String],
    diags: &mut Vec<Diagnostic>,
) {
    for stage in raw {
        let Some(spec) = specs.get(&stage.id) else {
            continue;
        };
        let input_tree = stage.tree.get("inputs").map(|(_, v)| v);
        for (slot, target) in &spec.inputs {
            if let Err(d) = check_input(stage, spec, specs, ids, input_tree, slot, target) {
                diags.push(d);
            }
        }
        check_required_inputs(spec, input_tree, diags);
    }
}

/// Each `train` whose `data` comes straight from a source: the source's declared image size
/// fits the model (B1–B3 need sides of at least 22 pixels, TL models 32 and 3 channels), so a
/// search over `height`/`width` is refused before any trial runs rather than failing in one.
fn check_input_sizes(specs: &BTreeMap<String, StageSpec>, diags: &mut Vec<Diagnostic>) {
    for spec in specs.values() {
        let StageConfig::Train(train) = &spec.config else {
            continue;
        };
        if train.declared() {
            continue; // its layers are checked on the data's shape by check_declared_models
        }
        let Some(source) = spec.inputs.get("data").and_then(|t| specs.get(t)) else {
            continue;
        };
        let StageConfig::Source(_) = &source.config else {
            continue;
        };
        let c = source.config.canonical();
        let side = |k: &str| c.get(k).and_then(serde_json::Value::as_u64);
        let (Some(h), Some(w), Some(ch)) = (side("height"), side("width"), side("channels")) else {
            continue;
        };
        let (Ok(h), Ok(w), Ok(ch)) = (u32::try_from(h), u32::try_from(w), u32::try_from(ch)) else {
            continue;
        };
        let shape = crate::data::Shape::new(h, w, ch);
        let spec_of = |input| {
            let mut m = crate::ml::models::ModelSpec::new(train.model.kind());
            m.input = input;
            m
        };
        let default = crate::ml::models::validate(&spec_of(crate::data::Shape::default()));
        for m in crate::ml::models::validate(&spec_of(shape)) {
            if !default.contains(&m) {
                diags.push(Diagnostic::new(
                    &spec.file,
                    Some(spec.pos),
                    format!("stages.{}.model", quote(&spec.id)),
                    format!(
                        "the images of `{}` ({shape}) do not fit {}: {m}",
                        source.id,
                        train.model.kind()
                    ),
                ));
            }
        }
    }
}

/// Declared models' layers, checked on the shape of the images their `data` input holds, each
/// problem at its layer's position.
fn check_declared_models(
    raw: &[RawStage],
    specs: &BTreeMap<String, StageSpec>,
    diags: &mut Vec<Diagnostic>,
) {
    for stage in raw {
        let Some(StageConfig::Train(train)) = specs.get(&stage.id).map(|s| &s.config) else {
            continue;
        };
        let shape = data_shape(specs, &stage.id).unwrap_or_default();
        for p in train.model_problems(shape) {
            diags.push(Diagnostic::new(
                &stage.file,
                Some(stage.tree.locate(&p.field)),
                format!("stages.{}.{}", quote(&stage.id), p.field),
                p.message,
            ));
        }
    }
}

/// `threshold: tune` on an evaluation whose data has more than two classes (known before it
/// runs: an image folder's class folders); the run would refuse it, validation says so first.
fn check_two_class_settings(
    raw: &[RawStage],
    specs: &BTreeMap<String, StageSpec>,
    diags: &mut Vec<Diagnostic>,
) {
    for stage in raw {
        let Some(StageConfig::Evaluate(e)) = specs.get(&stage.id).map(|s| &s.config) else {
            continue;
        };
        let tune = matches!(
            e.threshold,
            crate::stages::evaluate::Threshold::Named(crate::stages::evaluate::ThresholdName::Tune)
        );
        if !tune {
            continue;
        }
        if let Some(n) = data_classes(specs, &stage.id).filter(|&n| n > 2) {
            diags.push(Diagnostic::new(
                &stage.file,
                Some(stage.tree.locate("threshold")),
                format!("stages.{}.threshold", quote(&stage.id)),
                format!(
                    "`tune` applies to two classes; the data has {n} (remove `threshold`: N \
                     classes are scored by their most probable class)"
                ),
            ));
        }
    }
}

/// The number of classes of the data stage `id` reads, when known before anything runs.
pub(crate) fn data_classes(specs: &BTreeMap<String, StageSpec>, id: &str) -> Option<usize> {
    let mut cur = specs.get(id)?;
    for _ in 0..=specs.len() {
        if let StageConfig::Source(s) = &cur.config {
            return s.class_count(&cur.base_dir);
        }
        cur = specs.get(cur.inputs.get("data")?)?;
    }
    None
}

/// The image shape of the dataset stage `id` reads: its `data` input followed up to the
/// source (`None` when the chain is broken; validation reports that elsewhere).
pub(crate) fn data_shape(
    specs: &BTreeMap<String, StageSpec>,
    id: &str,
) -> Option<crate::data::Shape> {
    let mut cur = specs.get(id)?;
    for _ in 0..=specs.len() {
        if let StageConfig::Source(s) = &cur.config {
            return Some(s.image_shape());
        }
        cur = specs.get(cur.inputs.get("data")?)?;
    }
    None
}

/// One `slot: target` of a stage's inputs.
fn check_input(
    stage: &RawStage,
    spec: &StageSpec,
    specs: &BTreeMap<String, StageSpec>,
    ids: &[String],
    input_tree: Option<&Marked>,
    slot: &str,
    target: &str,
) -> Result<(), Diagnostic> {
    let slots = spec.config.inputs();
    let field = format!("stages.{}.inputs", quote(&stage.id));
    let entry = input_tree.and_then(|t| t.get(slot));
    let pos = entry.map(|(_, v)| v.pos).unwrap_or(spec.pos);
    let def = slots
        .iter()
        .find(|s| s.name == slot)
        .or_else(|| slots.iter().find(|s| s.name == stages::ANY_SLOT));
    let Some(def) = def else {
        let names: Vec<&str> = slots.iter().map(|s| s.name).collect();
        let expected = if names.is_empty() {
            "it takes no inputs".to_string()
        } else {
            format!("its slots: {}", names.join(", "))
        };
        return Err(Diagnostic::new(
            &spec.file,
            Some(entry.map(|(k, _)| k.pos).unwrap_or(pos)),
            format!("{field}.{}", quote(slot)),
            format!(
                "`{}` has no input `{}`{}; {expected}",
                spec.config.kind(),
                quote(slot),
                hint(slot, names.iter().copied())
            ),
        ));
    };
    if target == stage.id {
        return Ok(()); // reported as a cycle
    }
    let message = match specs.get(target) {
        Some(producer) if producer.config.output() != def.kind => format!(
            "input `{slot}` expects a {} artifact, but stage `{target}` ({}) produces {}",
            def.kind,
            producer.config.kind(),
            producer.config.output()
        ),
        Some(producer) if def.producer.is_some_and(|k| k != producer.config.kind()) => format!(
            "input `{slot}` expects the {} of a `{}` stage, but stage `{target}` is a `{}`",
            def.kind,
            def.producer.unwrap_or_default(),
            producer.config.kind()
        ),
        Some(_) => return Ok(()),
        None if ids.iter().any(|id| id == target) => return Ok(()), // the producer had its own errors
        None => format!(
            "unknown stage `{}`{}",
            quote(target),
            hint(target, ids.iter().map(String::as_str))
        ),
    };
    Err(Diagnostic::new(
        &spec.file,
        Some(pos),
        format!("{field}.{slot}"),
        message,
    ))
}

/// A command stage's `deps`: those naming a stage become its inputs (slot = the stage id);
/// each other must be a file or folder beside the pipeline file.
fn command_deps(
    raw: &[RawStage],
    specs: &mut BTreeMap<String, StageSpec>,
    ids: &[String],
    diags: &mut Vec<Diagnostic>,
) {
    for stage in raw {
        let Some(spec) = specs.get_mut(&stage.id) else {
            continue;
        };
        let StageConfig::Command(c) = &mut spec.config else {
            continue;
        };
        for i in c.resolve_deps(ids, &spec.base_dir) {
            let dep = &c.deps[i];
            let field = format!("deps[{i}]");
            let base = match spec.base_dir.as_os_str().is_empty() {
                true => Path::new("."),
                false => spec.base_dir.as_path(),
            };
            diags.push(Diagnostic::new(
                &spec.file,
                Some(stage.tree.locate(&field)),
                format!("stages.{}.{field}", quote(&stage.id)),
                format!(
                    "`{}` is neither a stage of this pipeline nor a file or folder in {}{}",
                    quote(dep),
                    crate::quote::path(base),
                    hint(dep, ids.iter().map(String::as_str))
                ),
            ));
        }
        // Two stage deps whose ids differ only in characters `$PIPE_DEP_…` cannot hold.
        let mut vars: BTreeMap<String, &String> = BTreeMap::new();
        for id in &c.stage_deps {
            let var = crate::stages::command::dep_var(id);
            if let Some(other) = vars.insert(var.clone(), id) {
                let field = c
                    .deps
                    .iter()
                    .position(|d| d == id)
                    .map(|i| format!("deps[{i}]"));
                let field = field.unwrap_or_else(|| "deps".into());
                diags.push(Diagnostic::new(
                    &spec.file,
                    Some(stage.tree.locate(&field)),
                    format!("stages.{}.{field}", quote(&stage.id)),
                    format!(
                        "stages `{}` and `{}` would share the variable ${var}: depend on one \
                         of them, or rename one",
                        quote(other),
                        quote(id)
                    ),
                ));
            }
        }
        for id in c.stage_deps.clone() {
            spec.inputs.insert(id.clone(), id);
        }
    }
}

/// Every required slot of the stage's kind has an input.
fn check_required_inputs(
    spec: &StageSpec,
    input_tree: Option<&Marked>,
    diags: &mut Vec<Diagnostic>,
) {
    let field = format!("stages.{}.inputs", quote(&spec.id));
    for def in spec.config.inputs().iter().filter(|s| s.required) {
        if !spec.inputs.contains_key(def.name) {
            diags.push(Diagnostic::new(
                &spec.file,
                Some(input_tree.map(|t| t.pos).unwrap_or(spec.pos)),
                field.clone(),
                format!(
                    "missing input `{}` (a {} artifact) for `{}`",
                    def.name,
                    def.kind,
                    spec.config.kind()
                ),
            ));
        }
    }
}
