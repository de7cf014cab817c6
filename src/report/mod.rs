//! Figures: PNG image grids and plots, and the HTML report (`pipe report`).

pub mod grid;
pub mod html;
pub mod plot;
