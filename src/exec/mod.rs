//! Execution: one [`scheduler`] walks a plan and records every outcome; a [`backend`] runs the
//! stages that miss the cache ([`local`]: this machine's threads; [`slurm`]: one cluster job
//! each). What happens is reported as [`event`]s to an observer the command layer renders.

pub mod backend;
pub mod budget;
pub mod error;
pub mod event;
pub(crate) mod ledger;
pub mod local;
pub(crate) mod ready;
pub mod scheduler;
pub mod shared;
pub mod slurm;

pub use error::{MissingPath, RunError};
pub use event::{Event, Observer};
pub use scheduler::{Executed, Sharing};
