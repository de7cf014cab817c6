//! `source`: loads the challenge's raw arrays, an image folder, or synthetic faces into one
//! packed dataset artifact.
//!
//! Sources read user files, so they are where malformed input arrives: every file must be a
//! regular file (a FIFO or `/dev/zero` would block or never end), sizes are checked against the
//! declared shape and the bounds in [`crate::data::dataset`] before anything is read or
//! allocated, and each problem is a [`StageError::Input`] naming the file and the line or index.

mod folder;
pub mod labels;
mod raw;

use super::{ArtifactKind, Problem, Slot, Stage, StageContext, StageError, StageReport};
use crate::data::Shape;
use crate::data::dataset::MAX_SIDE;
use crate::data::synthetic::{self, SyntheticConfig, SyntheticError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use folder::{FolderSource, Resize};
pub use labels::{CsvRow, Header, read_labels_csv};
pub use raw::RawSource;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "format", rename_all = "snake_case")]
pub enum Source {
    /// N x H x W x C uint8, row-major, no header (the 2019 challenge layout).
    Raw(RawSource),
    /// PNG/JPEG files plus an optional `filename,label` CSV.
    Folder(FolderSource),
    /// Seeded drawn faces with a hidden rule and planted duplicates.
    Synthetic(SyntheticConfig),
}

pub(crate) fn d56() -> u32 {
    56
}
pub(crate) fn d3() -> u32 {
    3
}

fn check_shape(problems: &mut Vec<Problem>, h: u32, w: u32, c: u32) {
    for (field, v) in [("height", h), ("width", w)] {
        if !(1..=MAX_SIDE).contains(&v) {
            problems.push(Problem::new(
                field,
                format!("{field} must be between 1 and {MAX_SIDE} pixels, got {v}"),
            ));
        }
    }
    if c != 1 && c != 3 {
        problems.push(Problem::new(
            "channels",
            format!("channels must be 1 (grey) or 3 (RGB), got {c}"),
        ));
    }
}

/// The length of `path` when it is a regular file (symlinks followed) of at most `max` bytes;
/// otherwise an input error naming the file and what it is. Nothing is opened.
pub(crate) fn check_regular(path: &Path, max: u64) -> Result<u64, StageError> {
    use std::os::unix::fs::FileTypeExt;
    let err = |message: String| StageError::Input {
        path: path.to_path_buf(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let t = meta.file_type();
    let what = if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_char_device() || t.is_block_device() {
        Some("a device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    };
    if let Some(what) = what {
        return Err(err(format!("is {what}; expected a regular file")));
    }
    if meta.len() > max {
        return Err(err(format!(
            "{} bytes, more than the maximum of {max}",
            meta.len()
        )));
    }
    Ok(meta.len())
}

/// [`check_regular`] for a file that may not exist yet (its key then records it as missing
/// and the run reports it).
pub(crate) fn check_regular_if_present(path: &Path, max: u64) -> Result<(), StageError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        _ => check_regular(path, max).map(|_| ()),
    }
}

impl Stage for Source {
    const KIND: &'static str = "source";
    // 2: folder JPEGs decoded by libjpeg-turbo (different pixels from zune-jpeg).
    const VERSION: u32 = 2;
    const OUTPUT: ArtifactKind = ArtifactKind::Dataset;
    const INPUTS: &'static [Slot] = &[];

    fn check(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        match self {
            Source::Raw(r) => check_shape(&mut p, r.height, r.width, r.channels),
            Source::Folder(f) => check_shape(&mut p, f.height, f.width, f.channels),
            Source::Synthetic(s) => match s.validate() {
                Ok(()) => {}
                Err(SyntheticError::Invalid { field, message }) => {
                    p.push(Problem::new(field, format!("`{field}` {message}")))
                }
                Err(e) => p.push(Problem::new("", e.to_string())),
            },
        }
        p
    }

    /// Checked before the files are digested for the key: a FIFO, a device or a raw file that
    /// does not fit the shape is refused before a byte of it is read.
    fn external_files(&self, base: &Path) -> Result<Vec<(String, Vec<PathBuf>)>, StageError> {
        Ok(match self {
            Source::Raw(r) => r.external_files(base)?,
            Source::Folder(f) => f.external_files(base)?,
            Source::Synthetic(_) => Vec::new(),
        })
    }

    fn required_paths(&self, base: &Path) -> Vec<(&'static str, PathBuf)> {
        let (main, labels) = match self {
            Source::Raw(r) => (("images", &r.images), &r.labels),
            Source::Folder(f) => (("dir", &f.dir), &f.labels),
            Source::Synthetic(_) => return Vec::new(),
        };
        let mut v = vec![(main.0, base.join(main.1))];
        v.extend(labels.iter().map(|l| ("labels", base.join(l))));
        v
    }

    /// Internally tagged enums lose serde's field path; deserialising the variant's struct
    /// directly keeps it (`stages.x.height` rather than `stages.x`).
    fn from_json(fields: serde_json::Value) -> Result<Self, super::PathError> {
        let mut rest = fields.clone();
        let format = rest
            .as_object_mut()
            .and_then(|o| o.remove("format"))
            .and_then(|f| f.as_str().map(str::to_owned));
        match format.as_deref() {
            Some("raw") => serde_path_to_error::deserialize(rest).map(Source::Raw),
            Some("folder") => serde_path_to_error::deserialize(rest).map(Source::Folder),
            Some("synthetic") => serde_path_to_error::deserialize(rest).map(Source::Synthetic),
            _ => serde_path_to_error::deserialize(fields),
        }
    }

    fn run(&self, ctx: &StageContext) -> Result<StageReport, StageError> {
        match self {
            Source::Raw(r) => raw::run(r, ctx),
            Source::Folder(f) => folder::run(f, ctx),
            Source::Synthetic(s) => run_synthetic(s, ctx),
        }
    }
}

fn summary(ds_len: usize, shape: Shape, labels: Option<&[u8]>) -> StageReport {
    let positives = labels.map(|l| l.iter().filter(|&&v| v == 1).count());
    let mut report = StageReport {
        summary: match positives {
            Some(p) => format!("{ds_len} images {shape}, {p} labelled 1"),
            None => format!("{ds_len} images {shape}, unlabelled"),
        },
        ..Default::default()
    }
    .metric("images", ds_len as f64);
    if let Some(p) = positives {
        report = report.metric("positives", p as f64);
    }
    report
}

fn run_synthetic(s: &SyntheticConfig, ctx: &StageContext) -> Result<StageReport, StageError> {
    let (ds, truth) = synthetic::generate(s).map_err(|e| StageError::Invalid(e.to_string()))?;
    ds.write(ctx.out)?;
    ctx.write_json("truth.json", &truth)?;
    let mut report = summary(ds.len(), ds.shape, ds.labels.as_deref());
    report.summary.push_str(&format!(
        " ({} planted duplicates, {} conflicting)",
        truth.exact_duplicates + truth.near_duplicates + truth.conflicting_duplicates,
        truth.conflicting_duplicates
    ));
    report.figures.push("truth.json".into());
    Ok(report)
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml_fields: serde_json::Value) -> Vec<Problem> {
        Source::from_json(yaml_fields).unwrap().check()
    }

    #[test]
    fn user_sized_fields_have_bounds_naming_the_field() {
        use serde_json::json;
        let cases = [
            (
                json!({"format": "synthetic", "count": 9223372036854775807u64}),
                "count",
                "maximum of 10000000",
            ),
            (
                json!({"format": "synthetic", "count": 100_000_000}),
                "count",
                "maximum of 10000000",
            ),
            (
                json!({"format": "synthetic", "count": 5_000_000, "height": 512, "width": 512}),
                "count",
                "GiB",
            ),
            (
                json!({"format": "synthetic", "exact_duplicates": 18446744073709551615u64, "near_duplicates": 5}),
                "exact_duplicates",
                "exceeds",
            ),
            (
                json!({"format": "synthetic", "height": 100000}),
                "height",
                "between 8 and 4096",
            ),
            (
                json!({"format": "raw", "images": "x", "width": 5000}),
                "width",
                "between 1 and 4096",
            ),
            (
                json!({"format": "raw", "images": "x", "height": 0}),
                "height",
                "between 1 and 4096",
            ),
            (
                json!({"format": "folder", "dir": "d", "channels": 4}),
                "channels",
                "got 4",
            ),
        ];
        for (fields, field, want) in cases {
            let p = problems(fields.clone());
            assert!(
                p.iter()
                    .any(|p| p.field == field && p.message.contains(want)),
                "{fields}: {p:?}"
            );
        }
        assert!(problems(json!({"format": "synthetic", "count": 200})).is_empty());
    }

    #[test]
    fn only_regular_files_are_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"abc").unwrap();
        assert_eq!(check_regular(&file, 10).unwrap(), 3);
        let e = check_regular(&file, 2).unwrap_err().to_string();
        assert!(e.contains("3 bytes, more than the maximum of 2"), "{e}");
        let e = check_regular(dir.path(), 10).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
        let e = check_regular(Path::new("/dev/zero"), 10)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/dev/zero: is a device"), "{e}");
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let e = check_regular(&fifo, 10).unwrap_err().to_string();
        assert!(e.contains("is a FIFO"), "{e}");
        assert!(check_regular_if_present(&dir.path().join("nope"), 10).is_ok());
        assert!(check_regular_if_present(&fifo, 10).is_err());
    }
}
