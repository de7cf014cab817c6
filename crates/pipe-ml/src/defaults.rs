//! The training defaults, in one place: the report's settings (batch 124, dropout 0.3, Keras'
//! Adam, the learning rates, the plateau callback). The `train` stage, the trainer's config,
//! the model specs and the CLI all read them from here, so they cannot drift apart.

/// Images per training batch (the report's).
pub const BATCH_SIZE: usize = 124;
/// Epochs of the `train` stage when the pipeline gives none.
pub const EPOCHS: u32 = 15;
/// Dropout rate after each hidden dense layer of B2/B3.
pub const DROPOUT: f64 = 0.3;
/// Pixel scale of B models: defined with the augmentation that applies it (the data layer).
pub use pipe_data::augment::RESCALE;
/// Score the test split every this many epochs (and at the last).
pub const TEST_EVERY: u32 = 5;

/// Keras' Adam defaults.
pub const ADAM_BETA1: f64 = 0.9;
pub const ADAM_BETA2: f64 = 0.999;
pub const ADAM_EPSILON: f64 = 1e-7;

/// The report's learning rate of B1 and B2.
pub const LR_B1_B2: f64 = 1e-3;
/// The report's learning rate of B3 and the transfer-learning models TL1–TL3.
pub const LR_B3_TL: f64 = 1e-4;

/// `ReduceLROnPlateau` of the report's final run: divide by 10 after 12 epochs without an
/// improvement of at least 1e-4.
pub const PLATEAU_FACTOR: f64 = 0.1;
pub const PLATEAU_PATIENCE: u32 = 12;
pub const PLATEAU_MIN_DELTA: f64 = 1e-4;
