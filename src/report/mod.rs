//! PNG figures: image grids and plots.

pub mod grid;
pub mod plot;
