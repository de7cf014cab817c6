//! `pipe report`: which records and objects the page is built from (the latest run of each
//! pipeline, every variant of its sweep), and where the page goes; the page itself is
//! [`crate::report`]'s.

use super::exit::{self, EXIT_INTERNAL, EXIT_INVALID, EXIT_OK};
use super::load_or_exit;
use super::output::{self, Written};
use super::render::human_bytes;
use crate::record::RunRecord;
use crate::report::{self, model};
use crate::settings::Settings;
use std::path::{Path, PathBuf};

/// The latest run of each variant of the sweep `rec` belongs to, or nothing when it is no
/// variant (or that sweep has no successful run).
fn sweep_records(history: &[(PathBuf, RunRecord)], rec: &RunRecord) -> Vec<RunRecord> {
    let Some(id) = &rec.sweep else {
        return Vec::new();
    };
    crate::sweep::table::latest_sweep(history, &rec.pipeline)
        .filter(|v| v.first().is_some_and(|r| r.sweep.as_ref() == Some(id)))
        .map(|v| v.into_iter().cloned().collect())
        .unwrap_or_default()
}

/// `pipe report`: the latest run of each pipeline (failed ones too: the DAG shows what failed),
/// objects read only after their manifests check out; a damaged one is left out with a warning
/// and exit code 1, as in `compare`. With `--remote`, the runs colleagues pushed count too, and
/// the outputs the page needs are pulled first.
pub(super) fn report(s: &Settings, files: &[PathBuf], out: &Path, with_remote: bool) -> i32 {
    let cache = s.cache.as_path();
    let store = if with_remote {
        crate::cache::Store::open(cache).map(Some)
    } else {
        crate::cache::Store::open_existing(cache)
    };
    let store = match store {
        Ok(Some(s)) => s,
        Ok(None) => {
            errln!(
                "error: {} holds no cache: nothing to report",
                cache.display()
            );
            return EXIT_INVALID;
        }
        Err(e) => return exit::store_failed(&e),
    };
    let (history, remote) = match super::compare::history(s, with_remote) {
        Ok(h) => h,
        Err(code) => return code,
    };
    // Pulling writes into the cache: not while a run or gc holds it.
    let _lock = match &remote {
        Some(_) => {
            match crate::cache::lock::CacheLock::acquire(cache, super::render::busy(false)) {
                Ok(l) => Some(l),
                Err(e) => return exit::fail(&e, e.is_user_error()),
            }
        }
        None => None,
    };
    let mut runs = Vec::new();
    for f in files {
        let p = match load_or_exit(f, &[]) {
            Ok(p) => p,
            Err(code) => return code,
        };
        let Some((_, rec)) = history.iter().rev().find(|(_, r)| r.pipeline == p.name) else {
            errln!("warning: {} has no run in {}", f.display(), cache.display());
            continue;
        };
        let file_digest = match std::fs::read(f) {
            Ok(b) => blake3::hash(&b).to_hex().to_string(),
            Err(e) => {
                errln!("error: {}: {e}", f.display());
                return EXIT_INVALID;
            }
        };
        if let Some(r) = &remote {
            for rec in std::iter::once(rec).chain(&sweep_records(&history, rec)) {
                super::compare::pull_missing(&store, r, rec, None);
            }
        }
        runs.push(model::RunInput {
            file: f.display().to_string(),
            file_digest,
            graph: p
                .stages
                .iter()
                .map(|(id, s)| (id.clone(), s.inputs.clone()))
                .collect(),
            record: rec.clone(),
            sweep: sweep_records(&history, rec),
        });
    }
    if runs.is_empty() {
        errln!("error: none of the given pipelines has a run: nothing to report");
        return EXIT_INVALID;
    }
    let objects = |d: &str| {
        store
            .check(d)
            .map(|()| store.object_dir(d))
            .map_err(|e| e.to_string())
    };
    let records: Vec<_> = history.into_iter().map(|(_, r)| r).collect();
    let rep = model::build(&runs, &records, &objects);
    for w in &rep.warnings {
        errln!("warning: {w}");
    }
    let html = report::page::render(&rep);
    match output::write(out, html.as_bytes()) {
        Ok(written) => {
            let bytes = html.len();
            let line = format!(
                "report: {} ({}; {} pipeline(s), {} model(s), {} evaluation(s))",
                out.display(),
                human_bytes(bytes as u64),
                rep.pipelines.len(),
                rep.models.len(),
                rep.evaluations.len()
            );
            // The page itself went to stdout: the note must not follow it there.
            if written == Written::Stdout {
                errln!("{line}");
            } else {
                outln!("{line}");
            }
            if rep.warnings.is_empty() {
                EXIT_OK
            } else {
                EXIT_INTERNAL
            }
        }
        Err(e) => {
            errln!("error: {e}");
            EXIT_INTERNAL
        }
    }
}
