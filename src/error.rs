//! Exit codes (documented in the README):
//! - 0: success (for `validate`: every file is valid)
//! - 1: internal failure (I/O, a bug, training crashed)
//! - 2: invalid input: a pipeline that does not validate, bad data, bad usage

pub const EXIT_OK: i32 = 0;
pub const EXIT_INTERNAL: i32 = 1;
pub const EXIT_INVALID: i32 = 2;
