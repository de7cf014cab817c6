//! `pipe validate`: schema, types, inputs, artifact kinds, cycles, includes and params of
//! pipeline files, every error at once (text or JSON); data files a valid pipeline names but
//! that are absent are notes, not errors.

use super::exit::{EXIT_INVALID, EXIT_OK};
use super::print_diagnostics;
use crate::settings::cli::Format;
use crate::spec::{Override, load};

pub(super) fn validate(files: &[std::path::PathBuf], set: &[Override], format: Format) -> i32 {
    let mut all = Vec::new();
    // Data files a valid pipeline names but that are not there (yet): notes, not errors, since
    // a pipeline is checked where its data is absent too (CI).
    let mut missing: Vec<crate::engine::MissingPath> = Vec::new();
    for f in files {
        match load(f, set) {
            Ok(p) => {
                for m in crate::engine::missing_paths(&p, p.stages.keys()) {
                    if !missing.contains(&m) {
                        missing.push(m);
                    }
                }
            }
            // A file included by several of the given files is reported once.
            Err(d) => {
                for diag in d {
                    if !all.contains(&diag) {
                        all.push(diag);
                    }
                }
            }
        }
    }
    match format {
        Format::Json => {
            let missing: Vec<_> = missing
                .iter()
                .map(|m| {
                    serde_json::json!({"at": m.at, "stage": m.stage, "field": m.field,
                                       "path": m.path.display().to_string()})
                })
                .collect();
            outln!(
                "{}",
                serde_json::json!({"valid": all.is_empty(), "errors": all, "missing_files": missing})
            )
        }
        Format::Text if all.is_empty() => outln!("{} pipeline file(s) valid", files.len()),
        Format::Text => print_diagnostics(&all),
    }
    if matches!(format, Format::Text) && !missing.is_empty() {
        for line in crate::engine::RunError::MissingPaths(missing)
            .to_string()
            .lines()
        {
            errln!("note: {}", line.trim_start());
        }
    }
    if all.is_empty() {
        EXIT_OK
    } else {
        EXIT_INVALID
    }
}
