//! Exit codes and the one rule that picks them (documented in the README), in one place:
//! - 0: success (for `validate`: every file is valid)
//! - 1: internal failure: an I/O error on the cache (a full disk included), a damaged cache
//!   object, a panic in a stage, a backend execution failure
//! - 2: invalid input: a pipeline that does not validate, bad usage (unknown stage, busy cache
//!   with `--no-wait`), and bad data or configuration found while a stage runs (wrong shapes, a
//!   device this build lacks, a weights file that cannot be loaded)
//!
//! Each error type says whether it is the user's to fix (`is_user_error`, beside its
//! definition, one arm per variant, each tested there); this file turns that into a code and
//! prints the error with its causes.

use crate::exec::slurm::JOB_USER_ERROR;
use std::error::Error;

pub const EXIT_OK: i32 = 0;
pub const EXIT_INTERNAL: i32 = 1;
pub const EXIT_INVALID: i32 = 2;

// A Slurm job's exit code speaks for its stage: the backend reads 2 as the user's error.
const _: () = assert!(JOB_USER_ERROR == EXIT_INVALID);

/// 2 for the user's error, 1 for an internal one.
pub fn code(user_error: bool) -> i32 {
    if user_error {
        EXIT_INVALID
    } else {
        EXIT_INTERNAL
    }
}

/// Prints `e` and each cause its message does not already contain; its exit code.
pub fn fail(e: &dyn Error, user_error: bool) -> i32 {
    errln!("error: {e}");
    let text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let cause = s.to_string();
        if !text.contains(&cause) {
            errln!("  caused by: {cause}");
        }
        source = s.source();
    }
    code(user_error)
}

/// [`fail`] for a run's error.
pub fn run_failed(e: &crate::engine::RunError) -> i32 {
    fail(e, e.is_user_error())
}

/// A store error: a directory that is not a cache is bad usage (2), the rest internal (1).
pub fn store_failed(e: &crate::cache::StoreError) -> i32 {
    errln!("error: {e}");
    code(e.is_user_error())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::RunError;

    #[test]
    fn user_errors_exit_2_and_internal_ones_1() {
        assert_eq!(code(true), EXIT_INVALID);
        assert_eq!(code(false), EXIT_INTERNAL);
        let unknown = RunError::UnknownStage("s".into(), String::new());
        assert_eq!(run_failed(&unknown), EXIT_INVALID);
        let record = RunError::Record(std::io::Error::from(std::io::ErrorKind::StorageFull));
        assert_eq!(run_failed(&record), EXIT_INTERNAL);
    }
}
