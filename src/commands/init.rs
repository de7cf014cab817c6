//! `pipe init [DIR]`: a new project: `pipe.toml`, an example pipeline under `pipelines/`, a
//! `.gitignore` for the cache and the data; then the first run to type. Never overwrites: if
//! any of these files exists, nothing is written.

use super::exit::{EXIT_INTERNAL, EXIT_INVALID, EXIT_OK};
use std::io::Write;
use std::path::Path;

/// The example pipeline's file, relative to the project.
const EXAMPLE: &str = "pipelines/example.yaml";

const PIPE_TOML: &str = r#"# pipe's project settings (README: "Sharing the cache", "Running on a cluster"). Every section is optional.

# [remote]
# url = "s3://team-bucket/pipe"    # or "file:///shared/pipe-cache"; credentials come from the
#                                  # environment (AWS_*), never from this file

# [executor]
# kind = "local"                   # or "slurm": one job per stage that misses the cache
"#;

const GITIGNORE: &str = "\
# pipe's cache (outputs, run records) and the data: neither belongs in git.
/cache/
/data/
/report.html
";

/// The example's data: drawn faces (the built-in generator), so the first run needs no files.
/// To train on your own images, replace this block with `FOLDER_SOURCE`'s form (shown as a
/// comment in the file).
const SOURCE: &str = r#"  images:
    kind: source
    format: synthetic
    count: ${params.count}
    height: 32
    width: 32
    channels: 3
    seed: ${params.seed}
    rule: glasses_xor_light_hair
    label_noise: 0.02
    exact_duplicates: 10
    near_duplicates: 10
    conflicting_duplicates: 4
"#;

/// The same stage reading an image folder (PNG/JPEG) and a `filename,label` CSV; paths are
/// relative to the pipeline file.
const FOLDER_SOURCE: &str = r#"  images:
    kind: source
    format: folder
    dir: ../data/images
    labels: ../data/labels.csv
    height: 32
    width: 32
    channels: 3
"#;

/// The stages after the source: clean the data, split it, train, evaluate.
const STAGES: &str = r#"  hashes:
    kind: hash
    inputs: {data: images}
  groups:
    kind: dedup
    inputs: {hashes: hashes, data: images}
  clean:
    kind: filter_conflicts
    inputs: {groups: groups, data: images}
  split:
    kind: split
    seed: ${params.seed}
    inputs: {data: images, selection: clean, groups: groups}
  train:
    kind: train
    model: b3
    lr: 1.0e-3
    epochs: ${params.epochs}
    seed: ${params.seed}
    inputs: {data: images, split: split}
  evaluate:
    kind: evaluate
    on: test
    threshold: tune
    inputs: {model: train, data: images, split: split}
"#;

/// The example pipeline's text.
fn example() -> String {
    let folder: String = FOLDER_SOURCE.lines().map(|l| format!("#{l}\n")).collect();
    format!(
        "name: example\n\
         description: >\n  Clean a labelled image set (copies, conflicting labels), split it, train \
         B3, evaluate.\n\
         params:\n  seed: 1\n  count: 2000\n  epochs: 5\n\
         stages:\n\
         # Your own images instead: replace the `images` stage below with\n{folder}\
         {SOURCE}{STAGES}"
    )
}

/// `pipe init DIR`.
pub(super) fn init(dir: &Path) -> i32 {
    let files = [
        ("pipe.toml", PIPE_TOML.to_string()),
        (".gitignore", GITIGNORE.to_string()),
        (EXAMPLE, example()),
    ];
    let existing: Vec<String> = files
        .iter()
        .map(|(rel, _)| dir.join(rel))
        .filter(|p| p.symlink_metadata().is_ok())
        .map(|p| p.display().to_string())
        .collect();
    if !existing.is_empty() {
        errln!(
            "error: {} already exist(s): pipe init writes nothing over existing files (move them \
             away, or start the project in another directory)",
            existing.join(", ")
        );
        return EXIT_INVALID;
    }
    for (rel, text) in &files {
        let path = dir.join(rel);
        if let Err(e) = write_new(&path, text) {
            errln!("error: {}: {e}", path.display());
            return EXIT_INTERNAL;
        }
        outln!("created {}", path.display());
    }
    let cd = if dir == Path::new(".") {
        String::new()
    } else {
        let shown = dir.display().to_string();
        let quoted = shlex::try_quote(&shown).map_or(shown.clone(), |q| q.into_owned());
        format!("cd {quoted} && ")
    };
    outln!("\nnext: {cd}pipe run {EXAMPLE}");
    EXIT_OK
}

/// Creates `path` (and its folder) with `text`; fails if it exists.
fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_example_and_its_folder_form_are_valid_pipelines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("example.yaml");
        std::fs::write(&p, super::example()).unwrap();
        let loaded = crate::spec::load(&p, &[]).unwrap();
        assert_eq!(loaded.stages.len(), 7);
        // The commented block is the one edit away: uncommented in place of the source.
        let swapped = super::example().replace(super::SOURCE, super::FOLDER_SOURCE);
        std::fs::write(&p, swapped).unwrap();
        crate::spec::load(&p, &[]).unwrap();
    }
}
