//! `pipe`: a declarative pipeline DAG runner for binary image-classification experiments.
//!
//! Data flows one way: YAML → validated spec → DAG → keys → cache hit or stage run → artifacts.
// Output goes through `console`'s macros, which survive a closed pipe.
#![warn(clippy::print_stdout, clippy::print_stderr)]

#[macro_use]
pub mod console;

pub mod cache;
pub mod cli;
pub mod commands;
pub mod config;
pub mod data;
pub mod error;
pub mod exec;
pub mod graph;
pub mod ml;
pub mod output;
pub mod plan;
pub mod quote;
pub mod record;
pub mod remote;
pub mod report;
pub mod run;
pub mod slurm;
pub mod spec;
pub mod stages;
pub mod sweep;
