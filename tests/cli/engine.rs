//! The planner and the executor: dry runs, status and run agree; panics, exit codes, concurrency.
