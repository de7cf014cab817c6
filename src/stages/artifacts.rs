//! On-disk formats of the small artifacts passed between data stages (JSON, plus one binary
//! file for hashes). Indices always refer to images of the source dataset.

use super::{StageError, io_err};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const HASHES_META: &str = "hashes.json";
pub const HASHES_BIN: &str = "hashes.bin";
pub const GROUPS: &str = "groups.json";
pub const SELECTION: &str = "selection.json";
pub const SPLIT: &str = "split.json";

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StageError> {
    let text = serde_json::to_vec_pretty(value).map_err(|e| StageError::Artifact {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    std::fs::write(path, text).map_err(io_err(path))
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, StageError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    serde_json::from_slice(&bytes).map_err(|e| StageError::Artifact {
        path: path.to_path_buf(),
        message: format!("unreadable artifact: {e}"),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HashAlgorithm {
    /// Perceptual difference hash (the report's choice), agreeing with Python imagehash.
    #[default]
    Dhash,
    /// blake3 of the pixels: exact duplicates only.
    Exact,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HashesMeta {
    pub algorithm: HashAlgorithm,
    pub hash_size: u32,
    /// Bytes per hash.
    pub width: usize,
    pub count: usize,
}

pub struct Hashes {
    pub meta: HashesMeta,
    pub rows: Vec<u8>,
}

impl Hashes {
    pub fn row(&self, i: usize) -> &[u8] {
        &self.rows[i * self.meta.width..(i + 1) * self.meta.width]
    }

    pub fn write(&self, dir: &Path) -> Result<(), StageError> {
        let bin = dir.join(HASHES_BIN);
        std::fs::write(&bin, &self.rows).map_err(io_err(&bin))?;
        write_json(&dir.join(HASHES_META), &self.meta)
    }

    pub fn read(dir: &Path) -> Result<Self, StageError> {
        let meta: HashesMeta = read_json(&dir.join(HASHES_META))?;
        let bin = dir.join(HASHES_BIN);
        let rows = std::fs::read(&bin).map_err(io_err(&bin))?;
        if rows.len() != meta.count * meta.width {
            return Err(StageError::Artifact {
                path: bin,
                message: format!(
                    "{} bytes for {} hashes of {}",
                    rows.len(),
                    meta.count,
                    meta.width
                ),
            });
        }
        Ok(Self { meta, rows })
    }
}

/// Output of `dedup`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GroupsArtifact {
    pub algorithm: HashAlgorithm,
    pub radius: u32,
    pub count: usize,
    /// Group index of every image (into the full list of groups, singletons included).
    pub group_of: Vec<u32>,
    /// Groups with two or more members, members ascending; the first member is the keeper.
    pub duplicate_groups: Vec<Vec<u32>>,
}

/// Output of `filter_conflicts`: the images kept for modelling.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SelectionArtifact {
    pub kept: Vec<u32>,
    pub removed_copies: usize,
    pub removed_conflicting: usize,
    pub conflicting_groups: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SplitBalance {
    pub count: usize,
    pub positives: usize,
    pub positive_fraction: f64,
    /// Images per class, for data of more than two classes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_counts: Option<Vec<usize>>,
}

/// Output of `split`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SplitArtifact {
    pub train: Vec<u32>,
    pub val: Vec<u32>,
    pub test: Vec<u32>,
    pub balance: std::collections::BTreeMap<String, SplitBalance>,
}

impl SplitArtifact {
    pub fn read(dir: &Path) -> Result<Self, StageError> {
        read_json(&dir.join(SPLIT))
    }
}

pub fn to_usize(v: &[u32]) -> Vec<usize> {
    v.iter().map(|&i| i as usize).collect()
}
