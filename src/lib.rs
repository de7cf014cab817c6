//! `pipe`: a declarative pipeline DAG runner for binary image-classification experiments.
//!
//! Data flows one way: YAML → validated spec → DAG → keys → cache hit or stage run → artifacts.

pub mod data;
pub mod ml;
pub mod report;
