//! The recorded runs as the experiment commands see them (`diff`, `compare`, `runs`, `report`):
//! the local records and, with `--remote`, the ones colleagues pushed; run ids and how a person
//! names a run; a run's parameters and metrics as flat `stage.field` maps.

use super::exit::EXIT_INTERNAL;
use crate::record::RunRecord;
use crate::remote::Remote;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Who shared a record, from where and when: added by `pipe push` beside the record's fields.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(super) struct Shared {
    pub user: String,
    pub host: String,
    /// When it was pushed (RFC 3339, UTC).
    pub pushed: String,
}

/// A record as shared on the remote: the local record's fields, its schema, and [`Shared`].
#[derive(Serialize)]
pub(super) struct SharedOut<'a> {
    pub schema: u32,
    #[serde(flatten)]
    pub record: &'a RunRecord,
    pub shared: &'a Shared,
}

#[derive(Deserialize)]
struct SharedIn {
    shared: Option<Shared>,
}

/// One recorded run: its id (the record's file name without `.json`), the record, and who
/// shared it when it came from the remote.
#[derive(Debug, Clone)]
pub(super) struct Run {
    pub id: String,
    pub record: RunRecord,
    pub shared: Option<Shared>,
}

/// The id of the record stored at `path`.
pub(super) fn id_of(path: &Path) -> String {
    path.file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// The readable local records, oldest first; each unreadable one is a warning. `Err` holds
/// the exit code.
pub(super) fn local(cache: &Path) -> Result<Vec<Run>, i32> {
    let loaded = match crate::record::load_all(cache) {
        Ok(l) => l,
        Err(e) => {
            errln!("error: {e}");
            return Err(EXIT_INTERNAL);
        }
    };
    let (readable, unreadable) = crate::record::split(loaded);
    for e in unreadable {
        errln!("warning: {e} (left out)");
    }
    Ok(readable
        .into_iter()
        .map(|(path, record)| Run {
            id: id_of(&path),
            record,
            shared: None,
        })
        .collect())
}

/// The records on `remote`, oldest first; an unreadable one is a warning. `Err` holds the
/// exit code (the remote cannot be listed or read).
pub(super) fn remote(remote: &Remote) -> Result<Vec<Run>, i32> {
    let listed = match remote.runs() {
        Ok(l) => l,
        Err(e) => {
            errln!("error: {e}");
            return Err(super::exit::code(e.is_user_error()));
        }
    };
    let mut out = Vec::new();
    for (name, bytes) in listed {
        let shown = PathBuf::from(format!("{}/runs/{name}", remote.shown()));
        let parsed = crate::record::parse(&shown, &bytes).and_then(|record| {
            serde_json::from_slice::<SharedIn>(&bytes)
                .map(|s| (record, s.shared))
                .map_err(|source| crate::record::RecordError::Parse {
                    path: shown.clone(),
                    source,
                })
        });
        match parsed {
            Ok((record, shared)) => out.push(Run {
                id: id_of(Path::new(&name)),
                record,
                shared,
            }),
            Err(e) => errln!("warning: {e} (left out)"),
        }
    }
    Ok(out)
}

/// The local records, and with a remote its records too (a run both hold counts once, as the
/// local record), oldest first.
pub(super) fn load(cache: &Path, with: Option<&Remote>) -> Result<Vec<Run>, i32> {
    let mut runs = local(cache)?;
    if let Some(r) = with {
        let known: std::collections::BTreeSet<String> = runs.iter().map(|r| r.id.clone()).collect();
        runs.extend(remote(r)?.into_iter().filter(|r| !known.contains(&r.id)));
        runs.sort_by(|a, b| a.id.cmp(&b.id));
    }
    Ok(runs)
}

/// The run `name` names: `latest`, `latest~N` (N runs before the newest), a run id or a
/// unique start of one, or a pipeline file (its latest run). `runs` oldest first.
pub(super) fn select<'a>(runs: &'a [Run], name: &str) -> Result<&'a Run, String> {
    if let Some(r) = runs.iter().find(|r| r.id == name) {
        return Ok(r);
    }
    let path = Path::new(name);
    if path.is_file() {
        let p = crate::spec::load(path, &[]).map_err(|diags| {
            let first = diags.first().map(|d| d.to_string()).unwrap_or_default();
            format!("{name}: not a valid pipeline ({first})")
        })?;
        return runs
            .iter()
            .rev()
            .find(|r| r.record.pipeline == p.name)
            .ok_or_else(|| format!("{name}: pipeline `{}` has no recorded run", p.name));
    }
    if let Some(back) = name.strip_prefix("latest") {
        let n = match back.strip_prefix('~') {
            None if back.is_empty() => 0,
            Some(n) => n
                .parse::<usize>()
                .map_err(|_| format!("`{name}`: expected latest or latest~N (N a number)"))?,
            None => return Err(format!("`{name}`: expected latest or latest~N")),
        };
        return runs.iter().rev().nth(n).ok_or_else(|| {
            format!(
                "`{name}`: there are only {} recorded run(s) (`pipe runs` lists them)",
                runs.len()
            )
        });
    }
    let matches: Vec<&Run> = runs.iter().filter(|r| r.id.starts_with(name)).collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(format!(
            "`{name}`: no such run id or pipeline file (`pipe runs` lists the ids)"
        )),
        many => Err(format!(
            "`{name}` is the start of {} run ids ({}, …): give more of it",
            many.len(),
            many[0].id
        )),
    }
}

/// The run's parameters: every stage's configuration, flattened to `stage.field` (nested
/// maps as `stage.field.sub`) → the value as text.
pub(super) fn params(rec: &RunRecord) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (id, s) in &rec.stages {
        flatten(id, &s.key_parts.config, &mut out);
    }
    out
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                flatten(&format!("{prefix}.{k}"), v, out);
            }
        }
        v => {
            out.insert(prefix.to_string(), value_text(v));
        }
    }
}

/// A configuration value as a person typed it: strings bare, and numbers that came from a
/// 32-bit field (0.10000000149011612) as their shortest 32-bit form (0.1).
pub(super) fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            let narrow = f as f32;
            if f64::from(narrow) == f {
                narrow.to_string()
            } else {
                f.to_string()
            }
        }
        v => v.to_string(),
    }
}

/// The run's metrics: each stage's report metrics as `stage.metric`.
pub(super) fn metrics(rec: &RunRecord) -> BTreeMap<String, f64> {
    rec.stages
        .iter()
        .flat_map(|(id, s)| {
            s.report
                .metrics
                .iter()
                .map(move |(k, v)| (format!("{id}.{k}"), *v))
        })
        .collect()
}

/// Environment variables whose values must never leave this machine in a record.
const SECRETS: [&str; 3] = [
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ACCESS_KEY_ID",
];

/// What a shared record must not carry, and what it says instead: the values of [`SECRETS`]
/// (`***`), this project's directory (relative paths) and the home directory (`~`).
pub(super) struct Scrub {
    replace: Vec<(String, String)>,
}

impl Scrub {
    /// From this process's environment and working directory.
    pub fn here() -> Scrub {
        let mut replace = Vec::new();
        for var in SECRETS {
            if let Ok(v) = std::env::var(var)
                && v.len() >= 8
            {
                replace.push((v, "***".to_string()));
            }
        }
        if let Ok(cwd) = std::env::current_dir() {
            let cwd = cwd.display().to_string();
            if cwd.len() > 1 {
                replace.push((format!("{cwd}/"), String::new()));
                replace.push((cwd, ".".to_string()));
            }
        }
        if let Ok(home) = std::env::var("HOME")
            && home.len() > 1
        {
            replace.push((home.trim_end_matches('/').to_string(), "~".to_string()));
        }
        Scrub { replace }
    }

    /// `v` with every string scrubbed; how many strings changed.
    pub fn value(&self, v: &mut serde_json::Value) -> usize {
        match v {
            serde_json::Value::String(s) => {
                let mut t = s.clone();
                for (from, to) in &self.replace {
                    t = t.replace(from.as_str(), to);
                }
                let changed = usize::from(t != *s);
                *s = t;
                changed
            }
            serde_json::Value::Array(a) => a.iter_mut().map(|x| self.value(x)).sum(),
            serde_json::Value::Object(m) => m.values_mut().map(|x| self.value(x)).sum(),
            _ => 0,
        }
    }
}

/// Who is pushing, from which machine, now.
pub(super) fn shared_now() -> Shared {
    let env = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
    };
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| env(&["HOSTNAME"]));
    Shared {
        user: env(&["USER", "LOGNAME"]).unwrap_or_else(|| "unknown".into()),
        host: host.unwrap_or_else(|| "unknown".into()),
        pushed: crate::record::now_rfc3339(),
    }
}

/// The bytes of `rec` as shared on the remote (scrubbed, with `shared`), and how many of its
/// texts the scrub changed.
pub(super) fn shareable(rec: &RunRecord, shared: &Shared, scrub: &Scrub) -> (Vec<u8>, usize) {
    let out = SharedOut {
        schema: crate::record::SCHEMA,
        record: rec,
        shared,
    };
    let mut v = serde_json::to_value(&out).expect("a record serialises");
    let changed = scrub.value(&mut v);
    let bytes = serde_json::to_vec_pretty(&v).expect("a record serialises");
    (bytes, changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, pipeline: &str) -> Run {
        Run {
            id: id.into(),
            record: RunRecord {
                pipeline: pipeline.into(),
                file: "p.yaml".into(),
                started: String::new(),
                seconds: 0.0,
                ok: true,
                stages: BTreeMap::new(),
                sweep: None,
                variant: BTreeMap::new(),
                overrides: Vec::new(),
            },
            shared: None,
        }
    }

    #[test]
    fn runs_are_named_by_latest_id_or_prefix() {
        let runs = [
            run("20261201T080000_000Z-a", "a"),
            run("20261201T090000_000Z-b", "b"),
            run("20261202T080000_000Z-a", "a"),
        ];
        let id = |n: &str| select(&runs, n).map(|r| r.id.clone());
        assert_eq!(id("latest").unwrap(), "20261202T080000_000Z-a");
        assert_eq!(id("latest~2").unwrap(), "20261201T080000_000Z-a");
        assert!(id("latest~3").unwrap_err().contains("only 3 recorded"));
        assert!(id("latest~x").unwrap_err().contains("latest~N"));
        assert_eq!(id("20261201T09").unwrap(), "20261201T090000_000Z-b");
        assert!(id("20261201").unwrap_err().contains("start of 2 run ids"));
        assert!(id("nope").unwrap_err().contains("no such run"));
    }

    #[test]
    fn shared_records_lose_secrets_and_machine_paths() {
        let scrub = Scrub {
            replace: vec![
                ("s3cr3t".into(), "***".into()),
                ("/home/ann/proj/".into(), String::new()),
                ("/home/ann/proj".into(), ".".into()),
                ("/home/ann".into(), "~".into()),
            ],
        };
        let mut r = run("x", "p").record;
        r.file = "/home/ann/proj/pipelines/p.yaml".into();
        r.overrides = vec![
            "stages.s.dir=/home/ann/imgs".into(),
            "params.k=s3cr3t".into(),
        ];
        let shared = Shared {
            user: "ann".into(),
            host: "h".into(),
            pushed: "t".into(),
        };
        let (bytes, changed) = shareable(&r, &shared, &scrub);
        assert_eq!(changed, 3);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            !text.contains("/home/ann") && !text.contains("s3cr3t"),
            "{text}"
        );
        let back = crate::record::parse(Path::new("r.json"), &bytes).unwrap();
        assert_eq!(back.file, "pipelines/p.yaml");
        assert_eq!(back.overrides, ["stages.s.dir=~/imgs", "params.k=***"]);
        let again: SharedIn = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(again.shared, Some(shared));
    }

    #[test]
    fn params_flatten_and_read_as_typed() {
        let mut out = BTreeMap::new();
        let v = serde_json::json!({"lr": 0.0010000000474974513, "plateau": {"factor": 0.1},
                                   "model": "b3", "epochs": 5});
        flatten("train", &v, &mut out);
        assert_eq!(out["train.lr"], "0.001");
        assert_eq!(out["train.plateau.factor"], "0.1");
        assert_eq!(out["train.model"], "b3");
        assert_eq!(out["train.epochs"], "5");
    }
}
