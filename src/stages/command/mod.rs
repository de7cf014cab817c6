//! `command`: a step of the user's own (a script, a tool) beside the built-in kinds, as DVC and
//! Snakemake run them. Its key covers the command, its params, the digests of its deps (files
//! and folders of the project, upstream stages' outputs) and the values of a declared `env`
//! whitelist; it runs in a fresh temporary directory with nothing else of pipe's environment,
//! writes its `outs` under `$PIPE_OUT`, and is committed only when it exits 0 having created
//! every declared out. See the README's "Command stages".

pub mod interp;
mod run;

use super::{ArtifactKind, Problem, Slot, Stage, StageContext, StageError, StageReport};
use crate::quote::quote;
use interp::{Piece, Ref};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

/// The log of the command's stdout and stderr, kept in its output.
pub const LOG: &str = "command.log";
/// Names pipe writes in every output directory: no out may take them.
const RESERVED: &[&str] = &[LOG, "report.json", ".manifest.json", ".refs.json"];

/// `cmd`: a list of arguments (run as is) or a string (run by `sh -c`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged, expecting = "a command string or a list of arguments")]
pub enum Cmd {
    Args(Vec<String>),
    Shell(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Command {
    pub cmd: Cmd,
    /// Files or folders (relative to the pipeline file) and upstream stages' ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deps: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Files or folders the command must create under `$PIPE_OUT`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outs: Vec<String>,
    /// A JSON file under `$PIPE_OUT` whose numbers become the stage's metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
    /// Files under `$PIPE_OUT` the report shows (PNG, SVG, CSV).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plots: Vec<String>,
    /// Environment variables passed to the command; their values enter the key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// The deps that are stages of the pipeline (set by [`Command::resolve_deps`]); the rest are
    /// paths. Not part of the key beyond `deps` itself: the inputs' digests are.
    #[serde(skip)]
    pub stage_deps: BTreeSet<String>,
}

impl Stage for Command {
    const KIND: &'static str = "command";
    const VERSION: u32 = 1;
    const OUTPUT: ArtifactKind = ArtifactKind::Files;
    /// Upstream stages come from `deps`, not `inputs:` (see [`Command::resolve_deps`]).
    const INPUTS: &'static [Slot] = &[];

    fn check(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        match &self.cmd {
            Cmd::Args(a) if a.is_empty() => problems.push(Problem::new("cmd", "is empty")),
            Cmd::Shell(s) if s.trim().is_empty() => problems.push(Problem::new("cmd", "is empty")),
            _ => {}
        }
        for (field, template) in self.templates() {
            problems.extend(self.check_template(&template, &field));
        }
        problems.extend(self.check_params());
        for (i, d) in self.deps.iter().enumerate() {
            if let Err(m) = relative("a dep", d) {
                problems.push(Problem::new(format!("deps[{i}]"), m));
            }
        }
        let outs = self
            .outs
            .iter()
            .enumerate()
            .map(|(i, o)| (format!("outs[{i}]"), o));
        let metrics = self.metrics.iter().map(|m| ("metrics".to_string(), m));
        let plots = self.plots.iter().enumerate();
        let plots = plots.map(|(i, p)| (format!("plots[{i}]"), p));
        for (field, path) in outs.chain(metrics).chain(plots) {
            if let Err(m) = out_path(path) {
                problems.push(Problem::new(field, m));
            }
        }
        for (i, name) in self.env.iter().enumerate() {
            if !is_env_name(name) || name.starts_with("PIPE_") {
                problems.push(Problem::new(
                    format!("env[{i}]"),
                    format!(
                        "`{}` is not a variable name to pass (letters, digits and `_`, not \
                         starting with a digit or `PIPE_`)",
                        quote(name)
                    ),
                ));
            }
        }
        problems
    }

    fn external_files(&self, base: &Path) -> Result<Vec<(String, Vec<PathBuf>)>, StageError> {
        self.file_deps()
            .map(|d| Ok((d.to_string(), list_files(&base.join(d))?)))
            .collect()
    }

    fn required_paths(&self, base: &Path) -> Vec<(&'static str, PathBuf)> {
        self.file_deps().map(|d| ("deps", base.join(d))).collect()
    }

    fn run(&self, ctx: &StageContext) -> Result<StageReport, StageError> {
        run::run(self, ctx)
    }
}

impl Command {
    /// Sorts `deps` into upstream stages (those named in `ids`, recorded in `stage_deps`) and
    /// paths relative to `base`; returns the index of each dep that is neither a stage nor an
    /// existing file or folder.
    pub fn resolve_deps(&mut self, ids: &[String], base: &Path) -> Vec<usize> {
        let mut bad = Vec::new();
        for (i, d) in self.deps.iter().enumerate() {
            if ids.iter().any(|id| id == d) {
                self.stage_deps.insert(d.clone());
            } else if relative("a dep", d).is_ok()
                && std::fs::symlink_metadata(base.join(d)).is_err()
            {
                bad.push(i);
            }
        }
        bad
    }

    /// The deps that are paths.
    fn file_deps(&self) -> impl Iterator<Item = &str> {
        self.deps
            .iter()
            .filter(|d| !self.stage_deps.contains(*d))
            .map(String::as_str)
    }

    /// Every string of `cmd` with its field.
    fn templates(&self) -> Vec<(String, String)> {
        match &self.cmd {
            Cmd::Shell(s) => vec![("cmd".into(), s.clone())],
            Cmd::Args(a) => a
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("cmd[{i}]"), s.clone()))
                .collect(),
        }
    }

    fn check_template(&self, template: &str, field: &str) -> Vec<Problem> {
        let pieces = interp::parse(template);
        let mut problems = Vec::new();
        for p in pieces {
            let message = match p {
                Piece::Ref(Ref::Param(name)) if !self.params.contains_key(name) => format!(
                    "`${{params.{}}}`: no param `{}` (params: {})",
                    quote(name),
                    quote(name),
                    names(self.params.keys())
                ),
                Piece::Ref(Ref::Dep(dep)) if !self.deps.iter().any(|d| d == dep) => format!(
                    "`${{deps.{}}}`: `{}` is not one of deps ({})",
                    quote(dep),
                    quote(dep),
                    names(self.deps.iter())
                ),
                _ => continue,
            };
            problems.push(Problem::new(field, message));
        }
        problems
    }

    fn check_params(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut env_names = BTreeMap::new();
        for (name, value) in &self.params {
            let field = format!("params.{name}");
            if !is_env_name(name) {
                problems.push(Problem::new(
                    &field,
                    format!(
                        "param name `{}`: use letters, digits and `_`, not starting with a digit",
                        quote(name)
                    ),
                ));
            } else if let Some(other) = env_names.insert(param_var(name), name) {
                problems.push(Problem::new(
                    &field,
                    format!(
                        "params `{other}` and `{name}` would both be passed as {}",
                        param_var(name)
                    ),
                ));
            }
            if value.is_object() || value.is_array() || value.is_null() {
                problems.push(Problem::new(
                    &field,
                    "expected a string, a number or a boolean",
                ));
            }
        }
        problems
    }

    /// The whitelisted variables' values as the key holds them: a digest, never the value
    /// (a token must not reach run records), `(unset)` when absent.
    pub fn env_digests(&self) -> BTreeMap<String, String> {
        self.env
            .iter()
            .map(|name| {
                let v = std::env::var_os(name).map_or_else(
                    || "(unset)".to_string(),
                    |v| blake3::hash(v.as_encoded_bytes()).to_hex()[..16].to_string(),
                );
                (format!("env {name}"), v)
            })
            .collect()
    }
}

/// `a, b` or `none`, for messages.
fn names<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<String> = names.map(|n| format!("`{}`", quote(n))).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// A param's value as the command sees it: strings as written, numbers and booleans as JSON.
pub fn param_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `PIPE_PARAM_LR` for param `lr`.
pub fn param_var(name: &str) -> String {
    format!("PIPE_PARAM_{}", name.to_ascii_uppercase())
}

/// `PIPE_DEP_EVAL_B3` for stage `eval-b3` (characters outside `[A-Za-z0-9_]` become `_`).
pub fn dep_var(id: &str) -> String {
    let name: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("PIPE_DEP_{name}")
}

fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A relative path that stays inside its base (no `..`, not absolute, not empty).
fn relative(what: &str, p: &str) -> Result<(), String> {
    let path = Path::new(p);
    let inside = path
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if p.is_empty() || !inside || path.components().next().is_none() {
        return Err(format!(
            "`{}`: {what} is a relative path inside the project, without `..`",
            quote(p)
        ));
    }
    Ok(())
}

/// An out, metrics or plot path: relative, inside `$PIPE_OUT`, not a name pipe writes.
fn out_path(p: &str) -> Result<(), String> {
    relative("an output", p)?;
    let first = Path::new(p).components().find_map(|c| match c {
        Component::Normal(n) => n.to_str(),
        _ => None,
    });
    match first {
        Some(n) if RESERVED.contains(&n) => Err(format!("`{n}` is a name pipe writes itself")),
        _ => Ok(()),
    }
}

/// `path` itself when a file, else every file under it (sorted, links not followed into
/// folders); a path that does not exist is listed as itself (its digest reads `missing`).
fn list_files(path: &Path) -> Result<Vec<PathBuf>, StageError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(_) => return Ok(vec![path.to_path_buf()]),
    };
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(super::io_err(&dir))? {
            let entry = entry.map_err(super::io_err(&dir))?;
            let p = entry.path();
            let ty = entry.file_type().map_err(super::io_err(&p))?;
            if ty.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests;
