//! Run records: one JSON file per `pipe run` under `cache/runs/`, the memory behind
//! `pipe runs`, `pipe why`, `pipe compare` and `pipe gc`.

use crate::cache::StageKey;
use crate::stages::StageReport;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Cached,
    Ran,
    Failed,
    Skipped,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRecord {
    pub kind: String,
    pub key: String,
    pub key_parts: StageKey,
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
}

impl RunRecord {
    pub fn save(&self, cache_root: &Path) -> std::io::Result<PathBuf> {
        let dir = cache_root.join("runs");
        std::fs::create_dir_all(&dir)?;
        let stamp = self.started.replace([':', '-'], "").replace('.', "_");
        let mut path = dir.join(format!("{stamp}-{}.json", self.pipeline));
        let mut n = 1;
        while path.exists() {
            path = dir.join(format!("{stamp}-{}-{n}.json", self.pipeline));
            n += 1;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).expect("serialises"))?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }
}

/// Every readable run record, oldest first (file names start with the UTC start time).
pub fn load_all(cache_root: &Path) -> Vec<(PathBuf, RunRecord)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(cache_root.join("runs"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .filter_map(|p| {
            let r = serde_json::from_slice(&std::fs::read(&p).ok()?).ok()?;
            Some((p, r))
        })
        .collect()
}

/// The most recent record of `stage`, from a run of `pipeline` if there is one (stage ids are
/// shared through includes, so another pipeline's run is the fallback).
pub fn last_stage_record(cache_root: &Path, pipeline: &str, stage: &str) -> Option<StageRecord> {
    let runs = load_all(cache_root);
    let find = |same: bool| {
        runs.iter().rev().find_map(|(_, r)| {
            (!same || r.pipeline == pipeline)
                .then(|| r.stages.get(stage))
                .flatten()
                .filter(|s| s.outcome != Outcome::Skipped)
                .cloned()
        })
    };
    find(true).or_else(|| find(false))
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}
