//! Everything that touches burn lives under here; the rest of the crate never sees a tensor.
//! (`metrics` and `curve` are plain Rust and usable everywhere.)

pub mod backend;
pub mod classical;
pub mod curve;
pub mod declared;
pub mod defaults;
pub mod device;
pub mod export;
pub mod format;
pub mod gpu;
pub mod metrics;
pub mod models;
pub mod multiclass;
pub mod probe;
pub mod resnet;
pub mod saliency;
pub mod train;
