//! `pipe runs`: the recorded runs, newest first.

use super::exit::{self, EXIT_INTERNAL, EXIT_OK};
use crate::record::Outcome;
use std::path::Path;

/// Every record, newest first; one that cannot be read is listed as such, with a warning.
pub(super) fn runs(cache: &Path, limit: usize) -> i32 {
    let loaded = match crate::cache::Store::open_existing(cache) {
        Ok(None) => Vec::new(),
        Ok(Some(_)) => match crate::record::load_all(cache) {
            Ok(l) => l,
            Err(e) => {
                errln!("error: {e}");
                return EXIT_INTERNAL;
            }
        },
        Err(e) => return exit::store_failed(&e),
    };
    outln!(
        "{:<26} {:<16} {:>5} {:>6} {:>8}  status",
        "started",
        "pipeline",
        "ran",
        "cached",
        "seconds"
    );
    for l in loaded.iter().rev().take(limit) {
        match &l.record {
            Ok(r) => {
                let count = |o| r.stages.values().filter(|s| s.outcome == o).count();
                outln!(
                    "{:<26} {:<16} {:>5} {:>6} {:>8.1}  {}",
                    r.started,
                    r.pipeline,
                    count(Outcome::Ran),
                    count(Outcome::Cached),
                    r.seconds,
                    if r.ok { "ok" } else { "failed" }
                );
            }
            Err(e) => {
                let name = l.path.file_name().unwrap_or_default().to_string_lossy();
                outln!(
                    "{name:<26} {:<16} {:>5} {:>6} {:>8}  unreadable",
                    "?",
                    "?",
                    "?",
                    "?"
                );
                errln!("warning: {e}");
            }
        }
    }
    EXIT_OK
}
