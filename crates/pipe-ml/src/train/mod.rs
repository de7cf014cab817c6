//! The training loop (Adam + BCE-with-logits, Keras-like callbacks), checkpoints, resume, and
//! batched inference.
//!
//! Reproducibility: every random draw comes from ChaCha8 streams derived from the config seed
//! (initial weights; per epoch, the shuffle and the dropout masks; augmentation is seeded by the
//! augment spec per (epoch, image)). Nothing uses burn's backend RNG, which is process-global,
//! so two trainings in one process cannot disturb each other, and a run resumed from its
//! per-epoch checkpoint continues exactly as the uninterrupted run would have (bit for bit on
//! the CPU backend).
//!
//! Both model families run through the same loop: the from-scratch CNNs B1–B3 and the
//! ResNet-50 transfer-learning models TL1–TL3 ([`Net`]). Frozen layers of a TL model do not
//! require gradients, so Adam never sees (or changes) them. Input preprocessing
//! ([`Preprocess`]) is `rescale` for B models and ResNet's 'caffe' mode for TL models (applied
//! after augmentation, which then runs with rescale 1); it is recorded in `model.json`.
//!
//! Weights are saved as burnpack records (`.bpk`, burn 0.22's native format, full precision;
//! burn 0.22 no longer has the `.mpk` recorders) and exported as `.safetensors`.
//!
//! The model directory is a cache object, digested byte for byte: it holds no wall-clock time,
//! no absolute path and nothing that depends on whether the run was resumed (those go to
//! [`Trained`], which the stage reports to the run record), so a forced or resumed training
//! with the same seed commits the same digest and its dependents stay cached.
//!
//! Where things are: [`config`] (the settings and their validation), [`callbacks`] (plateau,
//! early stopping), [`preprocess`] (rescale / caffe input), [`net`] (either model family behind
//! one type), [`fit`] (the loop), [`prefetch`] (batches prepared ahead), [`memory`] (whether a
//! batch fits), [`frozen`] (frozen layers' outputs kept across epochs), [`checkpoint`] (the
//! model directory and the resume state), [`inference`] (batched prediction and scores).
//! Defaults live in [`crate::defaults`].

mod callbacks;
mod checkpoint;
mod config;
mod fit;
mod frozen;
mod inference;
mod memory;
mod net;
mod prefetch;
mod preprocess;
#[cfg(test)]
mod tests;

// The submodules share their `pub(super)` helpers through here (each has `use super::*`).
use callbacks::*;
use checkpoint::*;
use frozen::FrozenOutputs;
use inference::*;
use net::*;

pub use callbacks::{EarlyStopping, Monitor, Plateau};
pub use checkpoint::{
    CURVE_CSV, Checkpoint, MODEL_FILE, ModelFile, SUMMARY_FILE, TrainSummary, adopt_checkpoint,
    continuable_epoch,
};
pub use config::{TrainConfig, validate};
pub use fit::{EpochDone, Hooks, TrainInputs, Trained, train};
pub(crate) use inference::open_model;
pub use inference::{INFER_BATCH, features, output_units, predict, predict_batched};
pub(crate) use net::{Net, load_model};
pub use preprocess::Preprocess;
