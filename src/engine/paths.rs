//! The data files a pipeline names that are not there: found before anything runs, so every
//! missing one is reported at once (`run`, `--dry-run`, and as notes by `validate`).

use crate::exec::MissingPath;
use crate::spec::Pipeline;
use std::path::{Path, PathBuf};

/// The paths the stages `ids` of `pipeline` name in their YAML that do not exist.
pub fn missing_paths<'s>(
    pipeline: &Pipeline,
    ids: impl Iterator<Item = &'s String>,
) -> Vec<MissingPath> {
    let mut missing = Vec::new();
    for id in ids {
        let spec = &pipeline.stages[id];
        for (field, path) in spec.config.required_paths(&spec.base_dir) {
            let absent = std::fs::symlink_metadata(&path)
                .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
            if absent {
                missing.push(MissingPath {
                    stage: id.clone(),
                    field,
                    path: tidy(&path),
                    at: format!("{}:{}", spec.file.display(), spec.pos),
                });
            }
        }
    }
    missing
}

/// `a/b/../c` → `a/c`, lexically (the path is shown, never opened, in this form).
fn tidy(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}
