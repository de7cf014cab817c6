//! Run records: one JSON file per `pipe run` under `cache/runs/`, the memory behind
//! `pipe runs`, `pipe why`, `pipe compare` and `pipe gc`.
//!
//! Records carry a schema version (`schema`, absent before version 2 and then read as 1).
//! Nothing that reads them may silently skip one it cannot read: `gc` decides what to delete
//! from them, so [`load_all`] returns unreadable records beside the readable ones.

use crate::cache::StageKey;
use crate::cache::digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Version of the run-record format written by this pipe; records of a newer one are unreadable.
pub const SCHEMA: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Cached,
    Ran,
    Failed,
    Skipped,
    /// Stopped early by a search's pruner: not a failure; no output, its checkpoint kept in
    /// `work/` for a longer run to continue. Its report holds [`PRUNED_EPOCH`], `epochs` (the
    /// run's planned epochs) and the last epoch's `val_loss` and `val_bacc`.
    Pruned,
}

/// The report metric of a pruned stage: the epoch after which it stopped.
pub const PRUNED_EPOCH: &str = "pruned_epoch";

/// What a stage reports after a successful run; enters the run record.
///
/// Everything but `execution` is also stored in the output (`report.json`) and so digested: it
/// must depend on the stage's inputs and configuration only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct StageReport {
    /// Numbers worth comparing across runs (counts, scores).
    pub metrics: BTreeMap<String, f64>,
    /// One short line for the terminal.
    pub summary: String,
    /// Files in the output a person looks at (PNG, CSV, JSON).
    pub figures: Vec<String>,
    /// Facts of this execution that differ between runs of the same key (throughput, wall
    /// time, the epoch a training resumed from): run record only, never in the output.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub execution: BTreeMap<String, f64>,
}

impl StageReport {
    pub fn metric(mut self, name: &str, value: f64) -> Self {
        self.metrics.insert(name.to_string(), value);
        self
    }

    /// Records a fact of this execution (see `execution`).
    pub fn execution(mut self, name: &str, value: f64) -> Self {
        self.execution.insert(name.to_string(), value);
        self
    }

    /// The part stored in the output directory (and digested): without `execution`.
    pub fn digested(&self) -> StageReport {
        StageReport {
            execution: BTreeMap::new(),
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRecord {
    pub kind: String,
    #[serde(deserialize_with = "digest::de")]
    pub key: String,
    pub key_parts: StageKey,
    #[serde(default, deserialize_with = "digest::de_opt")]
    pub digest: Option<String>,
    pub outcome: Outcome,
    pub seconds: f64,
    #[serde(default)]
    pub report: StageReport,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub pipeline: String,
    pub file: String,
    pub started: String,
    pub seconds: f64,
    pub ok: bool,
    pub stages: BTreeMap<String, StageRecord>,
    /// The sweep or search this run was one variant of (a short digest of its spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<String>,
    /// The swept values of this variant: override path → value as given (`--set` syntax).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variant: BTreeMap<String, String>,
    /// The run's `--set` overrides as given, then `--device D` when given (provenance: their
    /// effect is in the keys, this is what the user typed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<String>,
}

/// A record as written: the schema version first, then the record's fields.
#[derive(Serialize)]
struct Versioned<'a> {
    schema: u32,
    #[serde(flatten)]
    record: &'a RunRecord,
}

#[derive(Deserialize)]
struct Header {
    #[serde(default = "schema_v1")]
    schema: u32,
}

fn schema_v1() -> u32 {
    1
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: unreadable run record: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{path}: run record of schema {schema}, written by a newer pipe (this one reads up to {max})",
        max = SCHEMA
    )]
    Newer { path: PathBuf, schema: u32 },
}

/// One file of `runs/`, read or not.
#[derive(Debug)]
pub struct Loaded {
    pub path: PathBuf,
    pub record: Result<RunRecord, RecordError>,
}

impl RunRecord {
    pub fn save(&self, cache_root: &Path) -> std::io::Result<PathBuf> {
        let dir = cache_root.join("runs");
        std::fs::create_dir_all(&dir)?;
        let stamp = self.started.replace([':', '-'], "").replace('.', "_");
        let name = pipe_fs::safe_name(&self.pipeline, 60);
        let mut path = dir.join(format!("{stamp}-{name}.json"));
        let mut n = 1;
        while path.exists() {
            path = dir.join(format!("{stamp}-{name}-{n}.json"));
            n += 1;
        }
        let text = serde_json::to_vec_pretty(&Versioned {
            schema: SCHEMA,
            record: self,
        })
        .map_err(std::io::Error::other)?;
        pipe_fs::write_atomic(&path, &text, pipe_fs::Temp::Unique).map(|()| path)
    }
}

/// Parses one record: schema 1 (no `schema` field) and 2 share a layout.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<RunRecord, RecordError> {
    let parse_err = |source| RecordError::Parse {
        path: path.to_path_buf(),
        source,
    };
    let header: Header = serde_json::from_slice(bytes).map_err(parse_err)?;
    if header.schema > SCHEMA {
        return Err(RecordError::Newer {
            path: path.to_path_buf(),
            schema: header.schema,
        });
    }
    serde_json::from_slice(bytes).map_err(parse_err)
}

/// The paths of `runs/*.json`, oldest first (file names start with the UTC start time).
fn record_files(cache_root: &Path) -> Result<Vec<PathBuf>, RecordError> {
    let dir = cache_root.join("runs");
    let io = |source| RecordError::Io {
        path: dir.clone(),
        source,
    };
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    let mut files = Vec::new();
    for e in rd {
        let p = e.map_err(io)?.path();
        if p.extension().is_some_and(|e| e == "json") {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// Every `runs/*.json`, oldest first (file names start with the UTC start time), read or not.
pub fn load_all(cache_root: &Path) -> Result<Vec<Loaded>, RecordError> {
    Ok(record_files(cache_root)?
        .into_iter()
        .map(|path| {
            let record = std::fs::read(&path)
                .map_err(|source| RecordError::Io {
                    path: path.clone(),
                    source,
                })
                .and_then(|b| parse(&path, &b));
            Loaded { path, record }
        })
        .collect())
}

/// The overrides every one of `records` ran with (a sweep's `--set`s, shared by its
/// variants), in the first record's order.
pub fn shared_overrides(records: &[&RunRecord]) -> Vec<String> {
    let Some((first, rest)) = records.split_first() else {
        return Vec::new();
    };
    first
        .overrides
        .iter()
        .filter(|o| rest.iter().all(|r| r.overrides.contains(o)))
        .cloned()
        .collect()
}

/// Splits loaded records into the readable ones (oldest first) and the errors of the others.
pub fn split(all: Vec<Loaded>) -> (Vec<(PathBuf, RunRecord)>, Vec<RecordError>) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for l in all {
        match l.record {
            Ok(r) => ok.push((l.path, r)),
            Err(e) => bad.push(e),
        }
    }
    (ok, bad)
}

/// The most recent record of each of `stages` in the runs of `pipeline` (a skipped stage's
/// entry does not count), for the planner's reasons. Only this pipeline's runs: another
/// pipeline sharing a stage id (through an include, or by chance) may have run it with other
/// settings, and comparing with those would invent changes.
///
/// Read once per plan, newest record first, stopping as soon as every stage is found; a record
/// of another pipeline is recognised without being built, and unreadable ones are passed over
/// (`gc` and `runs` are where they are reported).
pub fn last_stage_records<'a>(
    cache_root: &Path,
    pipeline: &str,
    stages: impl IntoIterator<Item = &'a String>,
) -> BTreeMap<String, StageRecord> {
    let mut wanted: std::collections::BTreeSet<&String> = stages.into_iter().collect();
    let mut found = BTreeMap::new();
    let Ok(files) = record_files(cache_root) else {
        return found;
    };
    for path in files.iter().rev() {
        if wanted.is_empty() {
            break;
        }
        #[cfg(test)]
        READS.with(|n| n.set(n.get() + 1));
        let Ok(bytes) = std::fs::read(path) else {
            continue;
        };
        let same = serde_json::from_slice::<Owner>(&bytes).is_ok_and(|o| o.pipeline == pipeline);
        let Some(mut rec) = same.then(|| parse(path, &bytes).ok()).flatten() else {
            continue;
        };
        wanted.retain(|id| match rec.stages.remove(id.as_str()) {
            Some(s) if s.outcome != Outcome::Skipped => {
                found.insert(id.to_string(), s);
                false
            }
            _ => true,
        });
    }
    found
}

#[cfg(test)]
thread_local! {
    /// Record files [`last_stage_records`] read on this thread (tests count them).
    pub(crate) static READS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Just the pipeline a record belongs to (the rest is skipped, not built).
#[derive(Deserialize)]
struct Owner {
    pipeline: String,
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(pipeline: &str) -> RunRecord {
        let key = crate::cache::StageKey {
            format: 1,
            kind: "hash".into(),
            version: 1,
            implementation: Default::default(),
            config: serde_json::json!({}),
            inputs: Default::default(),
            files: Default::default(),
        };
        RunRecord {
            pipeline: pipeline.into(),
            file: "p.yaml".into(),
            started: "2026-12-01T08:00:00.000Z".into(),
            seconds: 1.0,
            ok: true,
            stages: BTreeMap::from([(
                "h".to_string(),
                StageRecord {
                    kind: "hash".into(),
                    key: key.digest(),
                    key_parts: key,
                    digest: Some("ab".repeat(32)),
                    outcome: Outcome::Ran,
                    seconds: 1.0,
                    report: Default::default(),
                    error: None,
                },
            )]),
            sweep: None,
            variant: BTreeMap::new(),
            overrides: Vec::new(),
        }
    }

    #[test]
    fn records_carry_a_schema_and_old_ones_read_as_version_1() {
        let dir = tempfile::tempdir().unwrap();
        let p = record("data").save(dir.path()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(v["schema"], SCHEMA);
        // A version-1 record: the same fields, no `schema`.
        let mut old = v.clone();
        old.as_object_mut().unwrap().remove("schema");
        parse(&p, old.to_string().as_bytes()).unwrap();
        let mut newer = v.clone();
        newer["schema"] = 99.into();
        let e = parse(&p, newer.to_string().as_bytes()).unwrap_err();
        assert!(
            e.to_string().contains("schema 99, written by a newer pipe"),
            "{e}"
        );
    }

    #[test]
    fn unreadable_records_are_returned_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        record("a").save(dir.path()).unwrap();
        std::fs::write(dir.path().join("runs/2027-bad.json"), b"{not json").unwrap();
        let mut evil = serde_json::to_value(Versioned {
            schema: SCHEMA,
            record: &record("b"),
        })
        .unwrap();
        evil["stages"]["h"]["digest"] = "../../victim3".into();
        std::fs::write(dir.path().join("runs/2028-evil.json"), evil.to_string()).unwrap();
        let all = load_all(dir.path()).unwrap();
        assert_eq!(all.len(), 3);
        assert!(all[0].record.is_ok());
        let e = all[1].record.as_ref().unwrap_err().to_string();
        assert!(e.contains("2027-bad.json: unreadable run record"), "{e}");
        let e = all[2].record.as_ref().unwrap_err().to_string();
        assert!(e.contains("not a digest"), "{e}");
        assert_eq!(split(load_all(dir.path()).unwrap()).0.len(), 1);
    }

    #[test]
    fn last_stage_records_take_the_newest_of_this_pipeline_only() {
        let dir = tempfile::tempdir().unwrap();
        let at = |pipeline: &str, minute: u32, outcome: Outcome| {
            let mut r = record(pipeline);
            r.started = format!("2026-12-01T08:{minute:02}:00.000Z");
            r.stages.get_mut("h").unwrap().outcome = outcome;
            r.stages.get_mut("h").unwrap().seconds = f64::from(minute);
            r.save(dir.path()).unwrap();
        };
        at("data", 1, Outcome::Ran);
        at("data", 2, Outcome::Failed);
        at("data", 3, Outcome::Skipped);
        at("other", 4, Outcome::Ran);
        let ids = ["h".to_string(), "absent".to_string()];
        let found = last_stage_records(dir.path(), "data", &ids);
        assert_eq!(found.len(), 1);
        assert_eq!(
            found["h"].outcome,
            Outcome::Failed,
            "the newest not skipped"
        );
        assert_eq!(found["h"].seconds, 2.0);
        assert!(last_stage_records(dir.path(), "never_ran", &ids).is_empty());
        // Once every stage is found, older records are not read.
        READS.with(|n| n.set(0));
        last_stage_records(dir.path(), "other", &ids[..1]);
        assert_eq!(READS.with(|n| n.get()), 1);
    }

    #[test]
    fn a_hostile_pipeline_name_stays_in_runs() {
        let dir = tempfile::tempdir().unwrap();
        let p = record("../../../escape").save(dir.path()).unwrap();
        assert_eq!(p.parent().unwrap(), dir.path().join("runs"));
    }
}
