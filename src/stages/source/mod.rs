//! `source`: loads the challenge's raw arrays, an image folder, or synthetic faces into one
//! packed dataset artifact.
//!
//! Sources read user files, so they are where malformed input arrives: every file must be a
//! regular file (a FIFO or `/dev/zero` would block or never end), sizes are checked against the
//! declared shape and the bounds in [`crate::data::dataset`] before anything is read or
//! allocated, and each problem is a [`StageError::Input`] naming the file and the line or index.
//! What a source stores is digested as it is read and must match the key's digest of the
//! files ([`keyed`]): a file rewritten meanwhile fails the stage ([`StageError::Changed`]).

mod folder;
mod image_folder;
mod keyed;
pub mod labels;
mod raw;

use super::{ArtifactKind, Problem, Slot, Stage, StageContext, StageError, StageReport};
use crate::data::Shape;
use crate::data::dataset::MAX_SIDE;
use crate::data::synthetic::{self, SyntheticConfig, SyntheticError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use folder::{FolderSource, Resize};
pub use image_folder::ImageFolderSource;
pub use labels::{CsvRow, Header, read_labels_csv};
pub use raw::RawSource;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "format", rename_all = "snake_case")]
pub enum Source {
    /// N x H x W x C uint8, row-major, no header (the 2019 challenge layout).
    Raw(RawSource),
    /// PNG/JPEG files plus an optional `filename,label` CSV.
    Folder(FolderSource),
    /// One sub-folder of PNG/JPEG files per class.
    ImageFolder(ImageFolderSource),
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

impl Source {
    /// The number of classes known before the source runs: two for the challenge's formats
    /// and the synthetic faces, an image folder's class folders; `None` when only reading the
    /// data tells (a labels CSV with string labels).
    pub fn class_count(&self, base_dir: &std::path::Path) -> Option<usize> {
        match self {
            Source::Raw(_) | Source::Synthetic(_) => Some(2),
            Source::ImageFolder(f) => f.class_count(base_dir),
            Source::Folder(_) => None,
        }
    }

    /// The shape of the images this source produces (for checking declared models).
    pub fn image_shape(&self) -> crate::data::Shape {
        match self {
            Source::Raw(r) => crate::data::Shape::new(r.height, r.width, r.channels),
            Source::Folder(f) => crate::data::Shape::new(f.height, f.width, f.channels),
            Source::ImageFolder(f) => crate::data::Shape::new(f.height, f.width, f.channels),
            Source::Synthetic(s) => s.shape(),
        }
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
            Source::ImageFolder(f) => {
                check_shape(&mut p, f.height, f.width, f.channels);
                f.check_classes(&mut p);
            }
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
            Source::ImageFolder(f) => f.external_files(base)?,
            Source::Synthetic(_) => Vec::new(),
        })
    }

    fn required_paths(&self, base: &Path) -> Vec<(&'static str, PathBuf)> {
        let (main, labels) = match self {
            Source::Raw(r) => (("images", &r.images), &r.labels),
            Source::Folder(f) => (("dir", &f.dir), &f.labels),
            Source::ImageFolder(f) => (("dir", &f.dir), &None),
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
            Some("image_folder") => serde_path_to_error::deserialize(rest).map(Source::ImageFolder),
            Some("synthetic") => serde_path_to_error::deserialize(rest).map(Source::Synthetic),
            _ => serde_path_to_error::deserialize(fields),
        }
    }

    fn run(&self, ctx: &StageContext) -> Result<StageReport, StageError> {
        match self {
            Source::Raw(r) => raw::run(r, ctx),
            Source::Folder(f) => folder::run(f, ctx),
            Source::ImageFolder(f) => image_folder::run(f, ctx),
            Source::Synthetic(s) => run_synthetic(s, ctx),
        }
    }
}

fn summary(ds: &crate::data::Dataset) -> StageReport {
    if let (Some(classes), Some(labels)) = (&ds.classes, &ds.labels) {
        let mut counts = vec![0usize; classes.len()];
        for &l in labels {
            counts[l as usize] += 1;
        }
        let smallest = counts.iter().copied().min().unwrap_or(0);
        return StageReport {
            summary: format!(
                "{} images {}, {} classes (smallest {smallest} images)",
                ds.len(),
                ds.shape,
                classes.len()
            ),
            ..Default::default()
        }
        .metric("images", ds.len() as f64)
        .metric("classes", classes.len() as f64);
    }
    binary_summary(ds.len(), ds.shape, ds.labels.as_deref())
}

fn binary_summary(ds_len: usize, shape: Shape, labels: Option<&[u8]>) -> StageReport {
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
    let mut report = summary(&ds);
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

    /// Runs `src` as the executor does: the key's file digests through the stat cache, then
    /// `between` (a file rewritten after keying), then the stage into a fresh output.
    fn run_keyed(
        src: &Source,
        base: &Path,
        between: impl FnOnce(),
    ) -> Result<StageReport, StageError> {
        let scratch = tempfile::tempdir().unwrap();
        let mut stat = crate::cache::statcache::StatCache::load(scratch.path());
        let mut files = std::collections::BTreeMap::new();
        for (role, paths) in src.external_files(base).unwrap() {
            files.insert(role, stat.digest_files(base, &paths).unwrap());
        }
        between();
        let store = crate::cache::Store::open(&scratch.path().join("cache")).unwrap();
        let (out, work) = (scratch.path().join("out"), scratch.path().join("work"));
        std::fs::create_dir(&out).unwrap();
        std::fs::create_dir(&work).unwrap();
        let progress =
            indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden());
        let ctx = StageContext {
            id: "src",
            inputs: Default::default(),
            out: &out,
            base_dir: base,
            work: &work,
            files: &files,
            progress: &progress,
            note: &|_| {},
            epoch_done: &|_| true,
            donors: &[],
            store: &store,
        };
        // On an error the executor removes `out`: nothing is committed.
        src.run(&ctx)
    }

    /// Overwrites `at` with `byte` in place, keeping the size and the mtime.
    fn flip(path: &Path, at: u64, byte: u8) {
        let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &[byte], at).unwrap();
        f.set_modified(mtime).unwrap();
    }

    fn assert_changed(res: Result<StageReport, StageError>, file: &str) {
        match res {
            Err(e @ StageError::Changed { .. }) => {
                assert!(!e.is_user_error(), "exit 1");
                let text = e.to_string();
                assert!(
                    text.contains(&format!("{file} changed while it was read")),
                    "{text}"
                );
            }
            other => panic!("expected `{file}` changed, got {other:?}"),
        }
    }

    #[test]
    fn a_raw_source_changed_after_keying_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        std::fs::write(base.join("db.raw"), vec![9u8; 2 * 12]).unwrap();
        std::fs::write(base.join("l.txt"), "1\n0\n").unwrap();
        let src: Source = serde_json::from_value(serde_json::json!({
            "format": "raw", "images": "db.raw", "labels": "l.txt",
            "height": 2, "width": 2, "channels": 3
        }))
        .unwrap();
        run_keyed(&src, base, || {}).unwrap();
        assert_changed(
            run_keyed(&src, base, || flip(&base.join("db.raw"), 5, 1)),
            "db.raw",
        );
        // Labels swapped in place: same size, still valid, not what was keyed.
        assert_changed(
            run_keyed(&src, base, || {
                std::fs::write(base.join("l.txt"), "0\n1\n").unwrap()
            }),
            "l.txt",
        );
    }

    fn png(shade: u8) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(4, 4, image::Rgb([shade, 10, 20]));
        let mut out = Vec::new();
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn a_folder_source_changed_after_keying_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        std::fs::create_dir(base.join("imgs")).unwrap();
        for (i, shade) in [(0, 50u8), (1, 90)] {
            std::fs::write(base.join(format!("imgs/{i}.png")), png(shade)).unwrap();
        }
        std::fs::write(base.join("l.csv"), "0.png,1\n1.png,0\n").unwrap();
        let folder = |labels: bool| -> Source {
            let mut v =
                serde_json::json!({"format": "folder", "dir": "imgs", "height": 4, "width": 4});
            if labels {
                v["labels"] = "l.csv".into();
            }
            serde_json::from_value(v).unwrap()
        };
        for labels in [true, false] {
            run_keyed(&folder(labels), base, || {}).unwrap();
            // An image rewritten (same size: another shade) after keying.
            let rewrite = || std::fs::write(base.join("imgs/1.png"), png(91)).unwrap();
            assert_changed(run_keyed(&folder(labels), base, rewrite), "imgs");
            std::fs::write(base.join("imgs/1.png"), png(90)).unwrap();
        }
        // The CSV's labels swapped after keying.
        assert_changed(
            run_keyed(&folder(true), base, || {
                std::fs::write(base.join("l.csv"), "0.png,0\n1.png,1\n").unwrap()
            }),
            "l.csv",
        );
        // An image added to a listed folder after keying.
        assert_changed(
            run_keyed(&folder(false), base, || {
                std::fs::write(base.join("imgs/2.png"), png(7)).unwrap()
            }),
            "imgs",
        );
    }
}
