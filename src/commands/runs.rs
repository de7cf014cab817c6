//! `pipe runs`: the recorded runs, newest first, by id (what `pipe diff` takes: the record's
//! file name, which starts with the UTC start time).

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
        "{:<40} {:<16} {:>5} {:>6} {:>8}  status",
        "id",
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
                    "{:<40} {:<16} {:>5} {:>6} {:>8.1}  {}",
                    super::history::id_of(&l.path),
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
                    "{name:<40} {:<16} {:>5} {:>6} {:>8}  unreadable",
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

/// `pipe runs --remote`: the run records shared on the remote, newest first, with who pushed
/// each, from which machine and when.
pub(super) fn remote(s: &crate::settings::Settings, limit: usize) -> i32 {
    let remote = match super::remote::open_required(s) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let runs = match super::history::remote(&remote) {
        Ok(r) => r,
        Err(code) => return code,
    };
    outln!(
        "{:<40} {:<16} {:<8}  {:<24} {:<12} {:<16}  pushed",
        "id",
        "pipeline",
        "status",
        "started",
        "user",
        "host"
    );
    for r in runs.iter().rev().take(limit) {
        let (user, host, pushed) = r
            .shared
            .as_ref()
            .map_or(("?", "?", "?"), |s| (&*s.user, &*s.host, &*s.pushed));
        outln!(
            "{:<40} {:<16} {:<8}  {:<24} {:<12} {:<16}  {}",
            r.id,
            r.record.pipeline,
            if r.record.ok { "ok" } else { "failed" },
            r.record.started,
            user,
            host,
            pushed
        );
    }
    EXIT_OK
}
