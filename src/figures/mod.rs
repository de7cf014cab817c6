//! Figures as a library: PNG image grids ([`grid`]: duplicates, conflicts, augmentations,
//! predictions, saliency) and plots ([`plot`]: learning curves, confusion matrices), drawn by
//! the stages into their outputs and by `pipe compare --png`. It draws from plain data and
//! knows nothing of stages, records or the report.

pub mod grid;
pub mod plot;
pub mod ticks;
