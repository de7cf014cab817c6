//! The YAML side: files → merged tree (includes, params, `--set`) → typed, validated
//! [`Pipeline`]. Every problem is collected as a [`Diagnostic`] with file:line:column and the
//! field path; nothing stops at the first error.

pub mod ident;
mod layers;
pub mod load;
pub mod resources;
pub mod validate;
pub mod yaml;

use crate::stages::StageConfig;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
pub use yaml::Pos;

pub use load::{Override, load, load_with_device};

/// One problem found in a pipeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnostic {
    #[serde(serialize_with = "serialize_path")]
    pub file: PathBuf,
    /// Absent for problems that come from `--set` or a file that could not be read.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Dotted path of the field, e.g. `stages.train_b3.lr`.
    pub field: String,
    pub message: String,
}

impl Diagnostic {
    pub fn new(
        file: impl Into<PathBuf>,
        pos: Option<Pos>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let pos = pos.filter(|p| p.line > 0);
        Self {
            file: file.into(),
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.col),
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Paths that are not UTF-8 serialise escaped (serde's own impl fails on them).
fn serialize_path<S: serde::Serializer>(p: &std::path::Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::quote::path(p))
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", crate::quote::path(&self.file))?;
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, ":{l}:{c}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A validated pipeline: every stage typed, every input resolved, no cycle.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    pub description: String,
    /// The file given on the command line.
    pub file: PathBuf,
    pub stages: BTreeMap<String, StageSpec>,
    /// What `device: auto` resolved to, when some stage asked for it (the keys hold the
    /// resolved device).
    pub auto_device: Option<AutoDevice>,
}

/// `device: auto` as this load resolved it.
#[derive(Debug, Clone)]
pub struct AutoDevice {
    pub pick: crate::ml::probe::AutoPick,
    /// The stages that asked for `auto`, in file order.
    pub stages: Vec<String>,
}

impl AutoDevice {
    /// `--set stages.ID.device=D` for each stage that asked for `auto`: another process (a
    /// Slurm job) loading the same file then keys the same device, whatever its machine has.
    pub fn pinned(&self) -> Vec<String> {
        self.stages
            .iter()
            .map(|id| format!("stages.{id}.device={}", self.pick.device))
            .collect()
    }
}

impl Pipeline {
    /// Each stage as the graph sees it: its id and its inputs (slot → producing stage).
    pub fn graph(&self) -> impl Iterator<Item = (&str, &BTreeMap<String, String>)> {
        self.stages.iter().map(|(id, s)| (id.as_str(), &s.inputs))
    }
}

#[derive(Debug, Clone)]
pub struct StageSpec {
    pub id: String,
    pub config: StageConfig,
    /// Slot name → producing stage id.
    pub inputs: BTreeMap<String, String>,
    /// File that defined the stage and where.
    pub file: PathBuf,
    pub pos: Pos,
    /// Relative paths in the stage's fields resolve against this directory.
    pub base_dir: PathBuf,
    /// What the stage asks of the machine or cluster (never part of its key).
    pub resources: resources::Resources,
}

pub use crate::quote::{did_you_mean, hint};

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::device::DeviceChoice;
    use crate::ml::probe::AutoPick;

    #[test]
    fn auto_is_pinned_per_stage_that_asked_for_it() {
        let auto = AutoDevice {
            pick: AutoPick {
                device: DeviceChoice::Vulkan,
                reasons: vec![],
            },
            stages: vec!["train".into(), "eval_b3".into()],
        };
        assert_eq!(
            auto.pinned(),
            ["stages.train.device=vulkan", "stages.eval_b3.device=vulkan"]
        );
        let o: Override = auto.pinned()[1].parse().unwrap();
        assert_eq!(o.path, ["stages", "eval_b3", "device"]);
        assert!(o.error.is_none());
    }
}
