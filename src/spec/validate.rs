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
    }
}

fn type_stage(stage: &RawStage, diags: &mut Vec<Diagnostic>) -> Option<StageSpec> {
    let field = format!("stages.{}", quote(&stage.id));
    let push = |diags: &mut Vec<Diagnostic>, pos, f: String, msg: String| {
        diags.push(Diagnostic::new(&stage.file, Some(pos), f, msg));
    };
    let Node::Map(entries) = &stage.tree.node else {
        push(
            diags,
            stage.tree.pos,
            field,
            format!(
                "a stage must be a mapping with `kind:`, got {}",
                stage.tree.type_name()
            ),
        );
        return None;
    };
    if !plain_fields(stage, &field, diags) {
        return None;
    }
    let kind = match stage.tree.get("kind") {
        None => {
            push(
                diags,
                stage.key_pos,
                field,
                format!("missing `kind` (one of {})", KINDS.join(", ")),
            );
            return None;
        }
        Some((_, k)) => match k.as_str() {
            Some(s) if KINDS.contains(&s) => s.to_string(),
            Some(s) => {
                push(
                    diags,
                    k.pos,
                    format!("{field}.kind"),
                    format!(
                        "unknown stage kind `{}`{}; known kinds: {}",
                        quote(s),
                        hint(s, KINDS.iter().copied()),
                        KINDS.join(", ")
                    ),
                );
                return None;
            }
            None => {
                push(
                    diags,
                    k.pos,
                    format!("{field}.kind"),
                    format!("expected a string, got {}", k.type_name()),
                );
                return None;
            }
        },
    };
    let mut inputs = BTreeMap::new();
    if let Some((_, inp)) = stage.tree.get("inputs") {
        match &inp.node {
            Node::Map(slots) => {
                for (slot, target) in slots {
                    match (slot.as_str(), target.as_str()) {
                        (Some(s), Some(t)) => {
                            if let Err(e) = ident::check("input slot", s) {
                                push(diags, slot.pos, format!("{field}.inputs"), e);
                            }
                            inputs.insert(s.to_string(), t.to_string());
                        }
                        _ => push(
                            diags,
                            target.pos,
                            format!("{field}.inputs"),
                            "each input is `slot: stage_id`".into(),
                        ),
                    }
                }
            }
            Node::Null => {}
            _ => push(
                diags,
                inp.pos,
                format!("{field}.inputs"),
                format!(
                    "expected a mapping slot → stage id, got {}",
                    inp.type_name()
                ),
            ),
        }
    }

    let mut fields: serde_json::Map<String, serde_json::Value> = entries
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
    let mut ok = true;
    // Each round reports one unknown field and retries without it, so all are reported.
    for _ in 0..32 {
        let result = StageConfig::from_json(&kind, serde_json::Value::Object(fields.clone()))?;
        match result {
            Ok(config) => {
                if !ok {
                    return None;
                }
                for p in config.check() {
                    let f = if p.field.is_empty() {
                        field.clone()
                    } else {
                        format!("{field}.{}", p.field)
                    };
                    let pos = if p.field.is_empty() {
                        stage.key_pos
                    } else {
                        stage.tree.locate(&p.field)
                    };
                    push(diags, pos, f, p.message);
                }
                return Some(StageSpec {
                    id: stage.id.clone(),
                    config,
                    inputs,
                    file: stage.file.clone(),
                    pos: stage.key_pos,
                    base_dir: stage.base_dir.clone(),
                    resources,
                });
            }
            Err(err) => {
                ok = false;
                let path = err.path().to_string();
                let message = err.inner().to_string();
                let message = shorten_quoted(message.split(" at line ").next().unwrap_or(&message));
                if let Some(bad) = unknown_name(&message, "unknown field `") {
                    let (parent, _) = split_parent(&path);
                    let candidates = backticked(&message);
                    let pos = stage.tree.locate_key(parent, &bad);
                    let f = join(&field, &join(parent, &bad));
                    push(
                        diags,
                        pos,
                        quote(&f),
                        format!(
                            "unknown field `{}`{}; expected one of {}",
                            quote(&bad),
                            hint(&bad, candidates.iter().map(String::as_str)),
                            candidates.join(", ")
                        ),
                    );
                    if !remove_field(&mut fields, parent, &bad) {
                        return None;
                    }
                    continue;
                }
                let mut pos = stage.tree.locate(&path);
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
                    field.clone()
                } else {
                    join(&field, &path)
                };
                push(diags, pos, f, message);
                return None;
            }
        }
    }
    None
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
        let slots = spec.config.inputs();
        let field = format!("stages.{}.inputs", quote(&stage.id));
        let input_tree = stage.tree.get("inputs").map(|(_, v)| v);
        for (slot, target) in &spec.inputs {
            let pos = input_tree
                .and_then(|t| t.get(slot))
                .map(|(_, v)| v.pos)
                .unwrap_or(spec.pos);
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
                diags.push(Diagnostic::new(
                    &spec.file,
                    Some(
                        input_tree
                            .and_then(|t| t.get(slot))
                            .map(|(k, _)| k.pos)
                            .unwrap_or(pos),
                    ),
                    format!("{field}.{}", quote(slot)),
                    format!(
                        "`{}` has no input `{}`{}; {expected}",
                        spec.config.kind(),
                        quote(slot),
                        hint(slot, names.iter().copied())
                    ),
                ));
                continue;
            };
            if target == &stage.id {
                continue; // reported as a cycle
            }
            match specs.get(target) {
                Some(producer) if producer.config.output() != def.kind => diags.push(Diagnostic::new(
                    &spec.file,
                    Some(pos),
                    format!("{field}.{slot}"),
                    format!(
                        "input `{slot}` expects a {} artifact, but stage `{target}` ({}) produces {}",
                        def.kind,
                        producer.config.kind(),
                        producer.config.output()
                    ),
                )),
                Some(_) => {}
                None if ids.contains(target) => {} // the producer had its own errors
                None => diags.push(Diagnostic::new(
                    &spec.file,
                    Some(pos),
                    format!("{field}.{slot}"),
                    format!("unknown stage `{}`{}", quote(target), hint(target, ids.iter().map(String::as_str))),
                )),
            }
        }
        for def in slots.iter().filter(|s| s.required) {
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
}
