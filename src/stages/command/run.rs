//! Running a command stage: the arguments with their references expanded, a fresh temporary
//! working directory, an environment of PATH, the declared `env` and pipe's `PIPE_*`
//! variables only, stdout and stderr into one log, then the checks that decide whether the
//! output may be committed (exit 0, every declared out, readable metrics).

use super::interp::{self, Ref};
use super::{Cmd, Command, LOG, dep_var, param_text, param_var};
use crate::quote::quote;
use crate::stages::{StageContext, StageError, StageReport, io_err};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Lines of the log a failure message quotes.
const TAIL_LINES: usize = 20;
/// Characters kept of each quoted line.
const TAIL_WIDTH: usize = 300;

pub(super) fn run(stage: &Command, ctx: &StageContext) -> Result<StageReport, StageError> {
    let out = absolute(ctx.out)?;
    let deps = dep_paths(stage, ctx)?;
    let argv = arguments(stage, &deps, &out);
    let scratch = tempfile::Builder::new()
        .prefix("pipe-command-")
        .tempdir()
        .map_err(io_err(&std::env::temp_dir()))?;
    // The log is written beside the run's scratch (it survives a failure there) and copied
    // into the output once the command succeeded.
    let log_path = ctx.work.join(LOG);
    let log = std::fs::File::create(&log_path).map_err(io_err(&log_path))?;
    let log2 = log.try_clone().map_err(io_err(&log_path))?;
    let mut child = std::process::Command::new(&argv[0]);
    child
        .args(&argv[1..])
        .current_dir(scratch.path())
        .env_clear()
        .envs(environment(stage, ctx, &deps, &out, scratch.path()))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    (ctx.note)(&format!("{}: running {}", ctx.id, shown(&argv)));
    let status = child
        .status()
        .map_err(|e| StageError::Invalid(format!("cannot start `{}`: {e}", quote(&argv[0]))))?;
    if !status.success() {
        return Err(StageError::Invalid(format!(
            "`{}` {}; the end of its log ({}):\n{}",
            quote(&argv[0]),
            exit_text(status),
            crate::quote::path(&log_path),
            tail(&log_path)
        )));
    }
    check_outs(stage, &out, &log_path)?;
    let metrics = match &stage.metrics {
        Some(m) => read_metrics(&out.join(m))?,
        None => BTreeMap::new(),
    };
    std::fs::copy(&log_path, out.join(LOG)).map_err(io_err(&out.join(LOG)))?;
    let mut figures = stage.plots.clone();
    figures.push(LOG.to_string());
    Ok(StageReport {
        summary: format!(
            "{} out(s){}",
            stage.outs.len(),
            if metrics.is_empty() {
                String::new()
            } else {
                format!(", {} metric(s)", metrics.len())
            }
        ),
        metrics,
        figures,
        execution: BTreeMap::new(),
    })
}

fn absolute(p: &Path) -> Result<PathBuf, StageError> {
    std::path::absolute(p).map_err(io_err(p))
}

/// Each dep as written → the absolute path the command is given (a stage's committed output
/// directory, or the file or folder of the project).
fn dep_paths(stage: &Command, ctx: &StageContext) -> Result<BTreeMap<String, PathBuf>, StageError> {
    stage
        .deps
        .iter()
        .map(|d| {
            let p = if stage.stage_deps.contains(d) {
                ctx.inputs
                    .get(d)
                    .ok_or_else(|| StageError::Invalid(format!("dep `{d}` is not connected")))?
                    .clone()
            } else {
                ctx.base_dir.join(d)
            };
            Ok((d.clone(), absolute(&p)?))
        })
        .collect()
}

/// The program and its arguments: a list with references expanded in place, or `sh -c` with
/// the string's references expanded shell-quoted (a path with a space stays one word).
fn arguments(stage: &Command, deps: &BTreeMap<String, PathBuf>, out: &Path) -> Vec<String> {
    let value = |r: &Ref| match r {
        Ref::Param(p) => stage.params.get(*p).map(param_text).unwrap_or_default(),
        Ref::Dep(d) => deps
            .get(*d)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        Ref::Out => out.to_string_lossy().into_owned(),
    };
    let expand = |t: &str, quoted: bool| {
        interp::expand(t, |r| {
            let v = value(r);
            if quoted {
                shlex::try_quote(&v).map_or(v.clone(), |q| q.into_owned())
            } else {
                v
            }
        })
    };
    match &stage.cmd {
        Cmd::Args(args) => args.iter().map(|a| expand(a, false)).collect(),
        Cmd::Shell(s) => vec!["sh".into(), "-c".into(), expand(s, true)],
    }
}

/// PATH (to find programs; not keyed), the whitelisted variables (keyed), and pipe's own.
fn environment(
    stage: &Command,
    ctx: &StageContext,
    deps: &BTreeMap<String, PathBuf>,
    out: &Path,
    scratch: &Path,
) -> Vec<(String, std::ffi::OsString)> {
    let mut env = Vec::new();
    for name in std::iter::once("PATH").chain(stage.env.iter().map(String::as_str)) {
        if let Some(v) = std::env::var_os(name) {
            env.push((name.to_string(), v));
        }
    }
    env.push(("TMPDIR".into(), scratch.into()));
    env.push(("PIPE_OUT".into(), out.into()));
    env.push(("PIPE_STAGE".into(), ctx.id.into()));
    for (name, value) in &stage.params {
        env.push((param_var(name), param_text(value).into()));
    }
    for id in &stage.stage_deps {
        if let Some(p) = deps.get(id) {
            env.push((dep_var(id), p.into()));
        }
    }
    env
}

/// Every declared out and plot exists, and the metrics file: all missing ones named at once.
fn check_outs(stage: &Command, out: &Path, log: &Path) -> Result<(), StageError> {
    let declared = stage.outs.iter().chain(&stage.metrics).chain(&stage.plots);
    let missing: Vec<String> = declared
        .filter(|o| std::fs::symlink_metadata(out.join(o)).is_err())
        .map(|o| format!("`{}`", quote(o)))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(StageError::Invalid(format!(
        "the command exited 0 but did not create {} under $PIPE_OUT; the end of its log ({}):\n{}",
        missing.join(", "),
        crate::quote::path(log),
        tail(log)
    )))
}

/// The numbers of a metrics JSON object, nested keys joined by `.` (`{"a": {"b": 1}}` → `a.b`).
fn read_metrics(path: &Path) -> Result<BTreeMap<String, f64>, StageError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let bad = |message: String| StageError::Input {
        path: path.to_path_buf(),
        message,
    };
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| bad(format!("the metrics are not JSON: {e}")))?;
    if !value.is_object() {
        return Err(bad("the metrics must be a JSON object".into()));
    }
    let mut metrics = BTreeMap::new();
    flatten("", &value, &mut metrics);
    Ok(metrics)
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, f64>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        serde_json::Value::Number(n) => {
            if let Some(f) = n.as_f64() {
                out.insert(prefix.to_string(), f);
            }
        }
        serde_json::Value::Bool(b) => {
            out.insert(prefix.to_string(), f64::from(u8::from(*b)));
        }
        _ => {}
    }
}

fn exit_text(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        _ => format!("ended with {status}"),
    }
}

/// The last lines of the log, indented, each cut to a readable width.
fn tail(log: &Path) -> String {
    let Ok(bytes) = std::fs::read(log) else {
        return "  (the log cannot be read)".into();
    };
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return "  (the log is empty)".into();
    }
    lines[lines.len().saturating_sub(TAIL_LINES)..]
        .iter()
        .map(|l| format!("  {}", l.chars().take(TAIL_WIDTH).collect::<String>()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The command line for a note, shell-quoted.
fn shown(argv: &[String]) -> String {
    let s = shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| argv.join(" "));
    s.chars().take(200).collect()
}
