//! `pipe`: a declarative pipeline DAG runner for binary image-classification experiments.
//!
//! Data flows one way: YAML → validated spec → DAG → plan → keys → cache hit, remote pull or
//! stage run → artifacts → events → what a person sees. The modules are layers, each importing
//! only those below it (ARCHITECTURE.md; `tests/layers.rs` enforces it), from the top:
//! [`commands`] (printing and exit codes) and [`settings`]; [`sweep`], [`report`]; [`engine`];
//! [`exec`]; [`plan`]; [`stages`] and [`figures`]; [`spec`], [`graph`], [`record`]; and the
//! leaves: [`remote`], [`ml`], [`data`], [`cache`].
// Output goes through the command layer's console macros, which survive a closed pipe.
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod commands;
pub mod settings;

pub mod engine;
pub mod exec;
pub mod figures;
pub mod graph;
pub mod plan;
pub mod quote;
pub mod record;
pub mod report;
pub mod spec;
pub mod stages;
pub mod sweep;

// The lower layers are crates of the workspace, under the names the rest of pipe uses.
pub use pipe_cache as cache;
pub use pipe_data as data;
pub use pipe_ml as ml;
pub use pipe_remote as remote;

#[cfg(test)]
mod testing;
