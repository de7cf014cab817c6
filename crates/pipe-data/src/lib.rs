//! Datasets and the image algorithms the data stages use. No burn here.

pub mod augment;
pub mod dataset;
pub mod dhash;
pub mod index;
pub mod jpeg;
pub mod split;
pub mod synthetic;

pub use dataset::{Dataset, DatasetError, Shape};
