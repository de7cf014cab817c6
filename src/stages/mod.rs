//! Stage kinds: a closed enum, one file per kind, one small trait.
//!
//! Each kind declares its input slots and output artifact kind, validates its typed
//! configuration, names the external files that enter its key (sources only), and runs into an
//! output directory it is given.

pub mod analyze;
pub mod artifacts;
pub mod augment;
pub mod command;
pub mod dedup;
pub mod ensemble;
pub mod evaluate;
pub mod filter_conflicts;
pub mod hash;
pub mod implementation;
pub mod predict;
pub mod source;
pub mod split;
pub mod stack;
pub mod train;

use crate::data::{Dataset, DatasetError};
pub use crate::record::StageReport;
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
    /// A command stage's declared outs.
    Files,
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
    /// Only the output of this stage kind (e.g. a `train` model where a `stack` model, also a
    /// model artifact, will not do).
    pub producer: Option<&'static str>,
}

impl Slot {
    /// The slot, restricted to outputs of stage kind `kind`.
    pub(crate) const fn produced_by(self, kind: &'static str) -> Slot {
        Slot {
            producer: Some(kind),
            ..self
        }
    }
}

pub(crate) const fn required_slot(name: &'static str, kind: ArtifactKind) -> Slot {
    Slot {
        name,
        kind,
        required: true,
        producer: None,
    }
}

/// Accepts inputs under any other slot name (e.g. the members of an ensemble).
pub(crate) const fn any_slot(kind: ArtifactKind) -> Slot {
    Slot {
        name: ANY_SLOT,
        kind,
        required: false,
        producer: None,
    }
}

pub const ANY_SLOT: &str = "*";

pub(crate) const fn optional_slot(name: &'static str, kind: ArtifactKind) -> Slot {
    Slot {
        name,
        kind,
        required: false,
        producer: None,
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
    /// A source file whose bytes, as the stage read them, are not the ones its key digested:
    /// it was rewritten after the key was computed or while it was read. Nothing is stored.
    #[error(
        "{} changed while it was read: nothing was stored (run again once it stays unchanged)",
        crate::quote::path(path)
    )]
    Changed { path: PathBuf },
    /// Stopped by a search's pruner after `epoch` of `epochs` epochs; its checkpoint is kept.
    #[error("pruned after epoch {epoch} of {epochs}")]
    Pruned {
        epoch: u32,
        epochs: u32,
        val_loss: f64,
        val_bacc: f64,
    },
}

/// A damaged or missing cache object is an internal failure, reported with its path.
fn store_err(e: crate::cache::StoreError) -> StageError {
    match e {
        crate::cache::StoreError::Io { path, source } => StageError::Io { path, source },
        crate::cache::StoreError::Corrupt { path, message } => {
            StageError::Artifact { path, message }
        }
        other => StageError::Invalid(other.to_string()),
    }
}

pub fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StageError + '_ {
    move |source| StageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether a stage's `device` is the default one (then it stays out of the canonical config).
pub(crate) fn is_default_device(d: &crate::ml::backend::DeviceChoice) -> bool {
    *d == crate::ml::backend::DeviceChoice::default()
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
    /// The stage key's digests of its external files, by role (sources verify what they
    /// store against them).
    pub files: &'a BTreeMap<String, String>,
    pub progress: &'a MultiProgress,
    /// A line for the person watching (the run's observer shows it): for what a hidden bar
    /// would have said, e.g. each epoch of a training whose output goes to a log.
    pub note: &'a (dyn Fn(&str) + Sync),
    /// Told each epoch of a training; `false` stops it there (a search's pruner), and the stage
    /// then ends with [`StageError::Pruned`].
    pub epoch_done: &'a (dyn Fn(&crate::ml::train::EpochDone) -> bool + Sync),
    /// Scratch directories of this stage's family ([`Stage::EXTENDS`]): runs that differ only
    /// in those fields and stopped early, whose checkpoint this run may continue.
    pub donors: &'a [PathBuf],
    /// The cache, for objects an input refers to (its manifest's refs): see
    /// [`StageContext::input_digest`], [`StageContext::declare_refs`], [`StageContext::resolve_ref`].
    pub store: &'a crate::cache::Store,
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

    /// The digest (identity) of the object connected to `slot`, read from its manifest.
    pub fn input_digest(&self, slot: &str) -> Result<String, StageError> {
        let dir = self
            .inputs
            .get(slot)
            .ok_or_else(|| StageError::Invalid(format!("input slot `{slot}` is not connected")))?;
        crate::cache::store::object_digest(dir).map_err(store_err)
    }

    /// Records that this stage's output refers to these objects: they stay alive (gc) and
    /// resolvable ([`StageContext::resolve_ref`]) as long as the output does.
    pub fn declare_refs(&self, digests: &[String]) -> Result<(), StageError> {
        crate::cache::store::declare_refs(self.out, digests).map_err(store_err)
    }

    /// The verified directory of object `digest`, which the input on `slot` refers to.
    pub fn resolve_ref(&self, slot: &str, digest: &str) -> Result<PathBuf, StageError> {
        let dir = self
            .inputs
            .get(slot)
            .ok_or_else(|| StageError::Invalid(format!("input slot `{slot}` is not connected")))?;
        self.store.resolve_ref(dir, digest).map_err(store_err)
    }

    pub fn dataset(&self, slot: &'static str) -> Result<Dataset, StageError> {
        Ok(Dataset::open(self.input(slot)?)?)
    }

    /// A progress bar with rate and ETA, drawn only on a terminal.
    pub fn bar(&self, len: u64, unit: &str) -> ProgressBar {
        let bar = self.progress.add(ProgressBar::new(len));
        let template = format!(
            "  {{prefix}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{rate}} ETA {{eta}} {{msg}}"
        );
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style.progress_chars("=> ").with_key(
                "rate",
                |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = w.write_str(&rate(s.per_sec()));
                    let _ = w.write_str("/s");
                },
            ));
        }
        bar.set_prefix(self.id.to_string());
        bar
    }

    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StageError> {
        artifacts::write_json(&self.out.join(name), value)
    }
}

/// A rate with as many digits as a person reads: `426`, `42.6`, `4.26`.
fn rate(per_sec: f64) -> String {
    match per_sec {
        r if r >= 100.0 || r == 0.0 => format!("{r:.0}"),
        r if r >= 10.0 => format!("{r:.1}"),
        r => format!("{r:.2}"),
    }
}

/// The contract every stage kind implements.
pub trait Stage: Serialize + DeserializeOwned + Clone + fmt::Debug {
    const KIND: &'static str;
    /// Bump when this kind's output for the same inputs changes (format, algorithm, bug fix):
    /// invalidates every cached output of the kind. Forgetting is caught by the golden-digest
    /// test (`tests/golden/`); changes in dependencies are covered by
    /// [`StageConfig::implementation`] instead.
    const VERSION: u32;
    const OUTPUT: ArtifactKind;
    const INPUTS: &'static [Slot];
    /// Whether the kind has a `device` field (it runs a model), which `--device` sets like
    /// `--set stages.ID.device=…`, so the flag enters the key exactly as the YAML field does.
    const USES_DEVICE: bool = false;
    /// Configuration fields a run may increase and still continue the scratch (`work`) of a
    /// run of the same stage that stopped early: `train`'s `epochs`. See
    /// [`StageContext::donors`].
    const EXTENDS: &'static [&'static str] = &[];

    /// Every problem with the configuration, at once.
    fn check(&self) -> Vec<Problem> {
        Vec::new()
    }

    /// Files read from outside the cache, by role, relative to `base_dir` (sources only).
    fn external_files(&self, _base_dir: &Path) -> Result<Vec<(String, Vec<PathBuf>)>, StageError> {
        Ok(Vec::new())
    }

    /// The paths the YAML names that must exist before the stage can run, by field
    /// (`images`, `dir`, `weights`…), relative to `base_dir`; checked at planning so every
    /// missing one is reported at once, before anything runs.
    fn required_paths(&self, _base_dir: &Path) -> Vec<(&'static str, PathBuf)> {
        Vec::new()
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

        /// Whether the stage kind named `kind` has a `device` field (see [`Stage::USES_DEVICE`]).
        pub fn kind_uses_device(kind: &str) -> bool {
            $(if kind == <$ty as Stage>::KIND {
                return <$ty as Stage>::USES_DEVICE;
            })*
            false
        }

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
            pub fn uses_device(&self) -> bool { match self { $(StageConfig::$variant(_) => <$ty as Stage>::USES_DEVICE),* } }
            pub fn extends(&self) -> &'static [&'static str] { match self { $(StageConfig::$variant(_) => <$ty as Stage>::EXTENDS),* } }
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
            pub fn required_paths(&self, base: &Path) -> Vec<(&'static str, PathBuf)> {
                match self { $(StageConfig::$variant(c) => c.required_paths(base)),* }
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
    Stack => stack::Stack,
    Command => command::Command,
}

impl StageError {
    pub fn is_user_error(&self) -> bool {
        match self {
            StageError::Input { .. } | StageError::Invalid(_) => true,
            StageError::Ml(e) => e.is_user_error(),
            StageError::Dataset(e) => e.is_user_error(),
            // Writing outputs (ENOSPC included), a malformed artifact in the cache, a slot the
            // validator should have caught: ours. A source file rewritten while it was read is
            // no fault of its contents: nothing was stored, the run can be repeated.
            StageError::Io { .. }
            | StageError::Artifact { .. }
            | StageError::MissingInput(_)
            | StageError::Changed { .. }
            | StageError::Pruned { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::DatasetError;
    use crate::ml::backend::MlError;
    fn p() -> std::path::PathBuf {
        std::path::PathBuf::from("x")
    }
    fn enospc() -> std::io::Error {
        std::io::Error::from(std::io::ErrorKind::StorageFull)
    }

    #[test]
    fn stage_errors() {
        let user = [
            StageError::Input {
                path: p(),
                message: "line 3: bad label".into(),
            },
            StageError::Invalid("no images".into()),
            StageError::Ml(MlError::InvalidConfig(vec![])),
        ];
        let internal = [
            StageError::Io {
                path: p(),
                source: enospc(),
            },
            StageError::Artifact {
                path: p(),
                message: "m".into(),
            },
            StageError::MissingInput("data"),
            StageError::Ml(MlError::Device("oom".into())),
            StageError::Dataset(DatasetError::Corrupt {
                path: p(),
                message: "m".into(),
            }),
            StageError::Changed { path: p() },
            // A full disk while training writes a checkpoint or an export.
            StageError::Ml(MlError::Io {
                path: p(),
                source: enospc(),
            }),
        ];
        assert!(user.iter().all(StageError::is_user_error));
        assert!(!internal.iter().any(StageError::is_user_error));
    }
}
