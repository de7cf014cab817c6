//! Stage kinds: a closed enum, one file per kind, one small trait.
//!
//! Each kind declares its input slots and output artifact kind, validates its typed
//! configuration, names the external files that enter its key (sources only), and runs into an
//! output directory it is given.

pub mod analyze;
pub mod artifacts;
pub mod augment;
pub mod dedup;
pub mod ensemble;
pub mod evaluate;
pub mod filter_conflicts;
pub mod hash;
pub mod predict;
pub mod source;
pub mod split;
pub mod train;

use crate::data::{Dataset, DatasetError};
use crate::ml::backend::DeviceChoice;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// What a stage produces and what an input slot accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactKind {
    Dataset,
    Hashes,
    Groups,
    Selection,
    Split,
    Augment,
    Model,
    Evaluation,
    Ensemble,
    Predictions,
    Analysis,
}

impl fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_json::to_value(self).ok();
        write!(f, "{}", s.as_ref().and_then(|v| v.as_str()).unwrap_or("?"))
    }
}

/// One named input of a stage kind.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub name: &'static str,
    pub kind: ArtifactKind,
    pub required: bool,
}

pub(crate) const fn required_slot(name: &'static str, kind: ArtifactKind) -> Slot {
    Slot {
        name,
        kind,
        required: true,
    }
}

/// Accepts inputs under any other slot name (e.g. the members of an ensemble).
pub(crate) const fn any_slot(kind: ArtifactKind) -> Slot {
    Slot {
        name: ANY_SLOT,
        kind,
        required: false,
    }
}

pub const ANY_SLOT: &str = "*";

pub(crate) const fn optional_slot(name: &'static str, kind: ArtifactKind) -> Slot {
    Slot {
        name,
        kind,
        required: false,
    }
}

/// A problem with a stage's configuration: the field (relative to the stage) and the message.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A problem when `value` of `field` exceeds `max` (fields that size memory or time).
    pub fn above<T: PartialOrd + fmt::Display>(field: &str, value: T, max: T) -> Option<Self> {
        (value > max).then(|| {
            Self::new(
                field,
                format!("{field} {value} exceeds the maximum of {max}"),
            )
        })
    }
}

/// Most rows or pairs a stage draws in one figure (`figure_groups`, `figure_pairs`).
pub const MAX_FIGURE_ROWS: usize = 1000;

/// What a stage reports after a successful run; enters the run record.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct StageReport {
    /// Numbers worth comparing across runs (counts, scores).
    pub metrics: BTreeMap<String, f64>,
    /// One short line for the terminal.
    pub summary: String,
    /// Files in the output a person looks at (PNG, CSV, JSON).
    pub figures: Vec<String>,
}

impl StageReport {
    pub fn metric(mut self, name: &str, value: f64) -> Self {
        self.metrics.insert(name.to_string(), value);
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Bad user data: the message names the file and the index or line.
    #[error("{}: {message}", crate::quote::path(path))]
    Input { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error("input slot `{0}` is not connected")]
    MissingInput(&'static str),
    #[error(transparent)]
    Ml(#[from] crate::ml::backend::MlError),
    #[error("{path}: {message}")]
    Artifact { path: PathBuf, message: String },
}

pub fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StageError + '_ {
    move |source| StageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Everything a running stage may touch.
pub struct StageContext<'a> {
    pub id: &'a str,
    /// Slot name → committed object directory of the producing stage.
    pub inputs: BTreeMap<String, PathBuf>,
    /// Fresh temporary directory; renamed into the cache only if `run` succeeds.
    pub out: &'a Path,
    /// Directory of the YAML file that defined the stage (relative paths resolve here).
    pub base_dir: &'a Path,
    /// Scratch directory that survives an interrupted run of the same key (training resume).
    pub work: &'a Path,
    pub progress: &'a MultiProgress,
    /// `--device` from the command line, overriding the YAML.
    pub device: Option<DeviceChoice>,
}

impl StageContext<'_> {
    pub fn input(&self, slot: &'static str) -> Result<&Path, StageError> {
        self.inputs
            .get(slot)
            .map(PathBuf::as_path)
            .ok_or(StageError::MissingInput(slot))
    }

    pub fn optional_input(&self, slot: &str) -> Option<&Path> {
        self.inputs.get(slot).map(PathBuf::as_path)
    }

    pub fn dataset(&self, slot: &'static str) -> Result<Dataset, StageError> {
        Ok(Dataset::open(self.input(slot)?)?)
    }

    /// A progress bar with rate and ETA, drawn only on a terminal.
    pub fn bar(&self, len: u64, unit: &str) -> ProgressBar {
        let bar = self.progress.add(ProgressBar::new(len));
        let template = format!(
            "  {{prefix}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{per_sec}} ETA {{eta}} {{msg}}"
        );
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(self.id.to_string());
        bar
    }

    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StageError> {
        artifacts::write_json(&self.out.join(name), value)
    }
}

/// The contract every stage kind implements.
pub trait Stage: Serialize + DeserializeOwned + Clone + fmt::Debug {
    const KIND: &'static str;
    /// Bump when the output format or algorithm changes: invalidates every cached output.
    const VERSION: u32;
    const OUTPUT: ArtifactKind;
    const INPUTS: &'static [Slot];

    /// Every problem with the configuration, at once.
    fn check(&self) -> Vec<Problem> {
        Vec::new()
    }

    /// Files read from outside the cache, by role, relative to `base_dir` (sources only).
    fn external_files(&self, _base_dir: &Path) -> Result<Vec<(String, Vec<PathBuf>)>, StageError> {
        Ok(Vec::new())
    }

    fn run(&self, ctx: &StageContext) -> Result<StageReport, StageError>;

    /// Typed configuration from the stage's fields, with the path of the first bad field.
    fn from_json(fields: serde_json::Value) -> Result<Self, PathError> {
        serde_path_to_error::deserialize(fields)
    }
}

pub type PathError = serde_path_to_error::Error<serde_json::Error>;

macro_rules! stage_kinds {
    ($($variant:ident => $ty:ty),* $(,)?) => {
        /// A stage's validated, typed configuration.
        #[derive(Debug, Clone)]
        pub enum StageConfig { $($variant($ty)),* }

        /// Every stage kind's name, for messages and did-you-mean.
        pub const KINDS: &[&str] = &[$(<$ty as Stage>::KIND),*];

        impl StageConfig {
            /// Deserialises a stage's fields (everything but `kind` and `inputs`) for `kind`.
            pub fn from_json(kind: &str, fields: serde_json::Value) -> Option<Result<Self, PathError>> {
                $(if kind == <$ty as Stage>::KIND {
                    return Some(<$ty as Stage>::from_json(fields).map(StageConfig::$variant));
                })*
                None
            }
            pub fn kind(&self) -> &'static str { match self { $(StageConfig::$variant(_) => <$ty as Stage>::KIND),* } }
            pub fn version(&self) -> u32 { match self { $(StageConfig::$variant(_) => <$ty as Stage>::VERSION),* } }
            pub fn output(&self) -> ArtifactKind { match self { $(StageConfig::$variant(_) => <$ty as Stage>::OUTPUT),* } }
            pub fn inputs(&self) -> &'static [Slot] { match self { $(StageConfig::$variant(_) => <$ty as Stage>::INPUTS),* } }
            pub fn check(&self) -> Vec<Problem> { match self { $(StageConfig::$variant(c) => c.check()),* } }
            /// The canonical configuration (defaults applied) that enters the key.
            pub fn canonical(&self) -> serde_json::Value {
                let v = match self { $(StageConfig::$variant(c) => serde_json::to_value(c)),* };
                v.unwrap_or(serde_json::Value::Null)
            }
            pub fn external_files(&self, base: &Path) -> Result<Vec<(String, Vec<PathBuf>)>, StageError> {
                match self { $(StageConfig::$variant(c) => c.external_files(base)),* }
            }
            pub fn run(&self, ctx: &StageContext) -> Result<StageReport, StageError> {
                match self { $(StageConfig::$variant(c) => c.run(ctx)),* }
            }
        }
    };
}

stage_kinds! {
    Source => source::Source,
    Hash => hash::Hash,
    Dedup => dedup::Dedup,
    FilterConflicts => filter_conflicts::FilterConflicts,
    Split => split::SplitStage,
    Augment => augment::Augment,
    Train => train::Train,
    Evaluate => evaluate::Evaluate,
    Ensemble => ensemble::Ensemble,
    Predict => predict::Predict,
    Analyze => analyze::Analyze,
}
