//! A declared model's YAML (`model: {layers: [...]}`) checked layer by layer before it is
//! typed, so that every unknown layer kind, unknown or missing field and bad value is reported
//! at its own `file:line:column`, all at once: serde stops at the first problem and, through
//! the layer list's own deserialiser, can only point at `model:`. Shape errors come later,
//! from the typed layers (`check_declared_models` in [`super::validate`]).

use super::load::RawStage;
use super::yaml::{Marked, Node, Pos};
use super::{Diagnostic, hint};
use crate::ml::declared::{Activation, Conv, Dense, Dropout, LAYER_NAMES, NoSettings, Pool};
use crate::quote::quote;
use serde_json::Value;

/// The problems of the stage's `model:` when it is a mapping (a declared model); none for a
/// model name, which the stage's typing checks.
pub fn check(stage: &RawStage, stage_field: &str) -> Vec<Diagnostic> {
    let Some((_, model)) = stage.tree.get("model") else {
        return Vec::new();
    };
    if !matches!(model.node, Node::Map(_)) {
        return Vec::new();
    }
    let mut c = Checker {
        stage,
        stage_field,
        diags: Vec::new(),
    };
    c.known_keys(model, "model", &["layers"], "a declared model");
    match model.get("layers") {
        Some((_, layers)) => c.list(layers, "model.layers", ""),
        None => c.push(
            model.pos,
            "model",
            "missing field `layers` (a declared model is `model: {layers: [...]}`)".into(),
        ),
    }
    c.diags
}

struct Checker<'a> {
    stage: &'a RawStage,
    stage_field: &'a str,
    diags: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn push(&mut self, pos: Pos, path: &str, message: String) {
        self.diags.push(Diagnostic::new(
            &self.stage.file,
            Some(pos),
            format!("{}.{path}", self.stage_field),
            message,
        ));
    }

    /// `node`'s keys outside `known`, each at its key.
    fn known_keys(&mut self, node: &Marked, path: &str, known: &[&str], what: &str) {
        let Node::Map(entries) = &node.node else {
            return;
        };
        for (k, _) in entries {
            let name = k.as_str().map_or_else(|| "?".to_owned(), str::to_owned);
            if !known.contains(&name.as_str()) {
                let message = format!(
                    "unknown field `{}`{} in {what}; expected {}",
                    quote(&name),
                    hint(&name, known.iter().copied()),
                    known.join(", ")
                );
                self.push(k.pos, &format!("{path}.{}", quote(&name)), message);
            }
        }
    }

    /// A list of layers at `path`; `label` prefixes the layers' numbers (`2.` inside the
    /// second layer's residual block).
    fn list(&mut self, node: &Marked, path: &str, label: &str) {
        let Node::Seq(items) = &node.node else {
            self.push(
                node.pos,
                path,
                format!("expected a list of layers, got {}", node.type_name()),
            );
            return;
        };
        for (i, item) in items.iter().enumerate() {
            self.layer(item, &format!("{path}[{i}]"), &format!("{label}{}", i + 1));
        }
    }

    /// One item of a layer list: `- max_pool` or `- conv2d: {filters: 8}`.
    fn layer(&mut self, item: &Marked, path: &str, label: &str) {
        let (kind, kind_pos, settings) = match &item.node {
            Node::Str(name) => (name.as_str(), item.pos, None),
            Node::Map(m) if m.len() == 1 => {
                let (k, v) = &m[0];
                let Some(name) = k.as_str() else {
                    self.push(
                        k.pos,
                        path,
                        format!(
                            "layer {label}: a layer kind is a name, got {}",
                            k.type_name()
                        ),
                    );
                    return;
                };
                (name, k.pos, Some(v))
            }
            Node::Map(m) => {
                let message = format!(
                    "layer {label}: a layer is one key, its kind, with its settings \
                     (`- conv2d: {{filters: 8}}`), got {} keys",
                    m.len()
                );
                self.push(item.pos, path, message);
                return;
            }
            _ => {
                let message = format!(
                    "layer {label}: expected a layer name or `kind: {{settings}}`, got {}",
                    item.type_name()
                );
                self.push(item.pos, path, message);
                return;
            }
        };
        let names: Vec<&str> = LAYER_NAMES.split(", ").collect();
        if !names.contains(&kind) {
            let message = format!(
                "layer {label}: unknown layer kind `{}`{}; expected one of {LAYER_NAMES}",
                quote(kind),
                hint(kind, names.iter().copied())
            );
            self.push(kind_pos, path, message);
            return;
        }
        let at = format!("{path}.{kind}");
        let full = format!("{label} ({kind})");
        let settings = settings.filter(|s| !matches!(s.node, Node::Null));
        if let Some(s) = settings.filter(|s| !matches!(s.node, Node::Map(_))) {
            let message = format!(
                "layer {full}: expected a mapping of settings, got {}",
                s.type_name()
            );
            self.push(s.pos, &at, message);
            return;
        }
        let node = settings.unwrap_or(item);
        if kind == "residual" {
            return self.residual(node, settings.is_some(), &at, label);
        }
        let mut json = settings.map_or_else(|| Value::Object(Default::default()), Marked::to_json);
        // serde reports one problem at a time: each field at fault is reported and dropped,
        // then the rest retried (a required field dropped for its bad value is not "missing")
        let mut dropped: Vec<String> = Vec::new();
        for _ in 0..64 {
            let Err(e) = settings_of(kind, json.clone()) else {
                return;
            };
            let inner = e.path().to_string();
            let message = e.inner().to_string();
            if let Some(bad) = between(&message, "unknown field `", "`") {
                let expected = backticked_after(&message, "expected one of ");
                let message = if expected.is_empty() {
                    format!(
                        "layer {full}: unknown field `{}`: {kind} takes no settings",
                        quote(&bad)
                    )
                } else {
                    format!(
                        "layer {full}: unknown field `{}`{}; expected one of {}",
                        quote(&bad),
                        hint(&bad, expected.iter().map(String::as_str)),
                        expected.join(", ")
                    )
                };
                let pos = node.get(&bad).map_or(node.pos, |(k, _)| k.pos);
                self.push(pos, &format!("{at}.{}", quote(&bad)), message);
                if let Value::Object(m) = &mut json
                    && m.remove(&bad).is_some()
                {
                    continue;
                }
                return;
            }
            if between(&message, "missing field `", "`").is_some_and(|f| dropped.contains(&f)) {
                return;
            }
            let (pos, field) = if inner == "." || inner.is_empty() {
                (node.pos, at.clone())
            } else {
                (node.locate(&inner), format!("{at}.{inner}"))
            };
            self.push(
                pos,
                &field,
                format!("layer {full}: {}", value_message(&message)),
            );
            let key = inner
                .split(['.', '['])
                .next()
                .unwrap_or_default()
                .to_owned();
            let Value::Object(m) = &mut json else {
                return;
            };
            if m.remove(&key).is_none() {
                return;
            }
            dropped.push(key);
        }
    }

    /// A residual block's settings: `layers` (checked as a list) and `activation`.
    fn residual(&mut self, node: &Marked, has_settings: bool, at: &str, label: &str) {
        let full = format!("{label} (residual)");
        if has_settings {
            self.known_keys(node, at, &["layers", "activation"], "a residual block");
        }
        if let Some((_, a)) = node.get("activation")
            && let Err(e) = serde_json::from_value::<Activation>(a.to_json())
        {
            let message = format!(
                "layer {full}: activation: {}",
                value_message(&e.to_string())
            );
            self.push(a.pos, &format!("{at}.activation"), message);
        }
        match node.get("layers").filter(|_| has_settings) {
            Some((_, layers)) => self.list(layers, &format!("{at}.layers"), &format!("{label}.")),
            None => self.push(
                node.pos,
                at,
                format!("layer {full}: missing field `layers` (the block's list of layers)"),
            ),
        }
    }
}

/// Types one layer's settings as its kind's (every kind but `residual`).
fn settings_of(kind: &str, v: Value) -> Result<(), serde_path_to_error::Error<serde_json::Error>> {
    use serde_path_to_error::deserialize as de;
    match kind {
        "conv2d" => de::<_, Conv>(v).map(drop),
        "max_pool" | "avg_pool" => de::<_, Pool>(v).map(drop),
        "dense" => de::<_, Dense>(v).map(drop),
        "dropout" => de::<_, Dropout>(v).map(drop),
        _ => de::<_, NoSettings>(v).map(drop),
    }
}

/// serde's message for a bad value, with an unknown variant's alternatives and a hint.
fn value_message(message: &str) -> String {
    match between(message, "unknown variant `", "`") {
        Some(bad) => {
            let expected = backticked_after(message, "expected one of ");
            format!(
                "unknown value `{}`{}; expected one of {}",
                quote(&bad),
                hint(&bad, expected.iter().map(String::as_str)),
                expected.join(", ")
            )
        }
        None => message.to_owned(),
    }
}

fn between(s: &str, start: &str, end: &str) -> Option<String> {
    let rest = s.split_once(start)?.1;
    Some(rest.split_once(end)?.0.to_owned())
}

/// The backticked words after `marker` (serde's list of expected names).
fn backticked_after(s: &str, marker: &str) -> Vec<String> {
    s.split_once(marker).map_or_else(Vec::new, |(_, rest)| {
        rest.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_are_read() {
        let m = "unknown field `filterz`, expected one of `filters`, `kernel`";
        assert_eq!(
            between(m, "unknown field `", "`").as_deref(),
            Some("filterz")
        );
        assert_eq!(
            backticked_after(m, "expected one of "),
            ["filters", "kernel"]
        );
        assert!(
            backticked_after("unknown field `x`, there are no fields", "expected one of ")
                .is_empty()
        );
        assert_eq!(
            value_message("unknown variant `relux`, expected one of `relu`, `tanh`"),
            "unknown value `relux` (did you mean `relu`?); expected one of relu, tanh"
        );
    }
}
