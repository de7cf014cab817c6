//! An image folder: every PNG/JPEG in `dir`, or the files a `filename,label` CSV lists, each
//! converted to the configured shape. Image files must be regular files of bounded size; file
//! names must be UTF-8 (they are recorded in `names.txt`); a bad image is reported by index,
//! name and CSV line, up to ten at once. Each file is digested as it is read; the stage stores
//! the images only when those digests match the key's ([`keyed`]).

use super::labels::{Header, index_labels, read_labels_csv};
use super::{
    StageContext, StageError, StageReport, check_regular, check_regular_if_present, d3, d56, keyed,
    summary,
};
use crate::data::dataset::check_size;
use crate::data::{Dataset, Shape};
use crate::quote;
use image::imageops::FilterType;
use indicatif::ProgressBar;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Largest image file read (a 4096 x 4096 PNG is far smaller).
pub const MAX_IMAGE_FILE_BYTES: u64 = 256 << 20;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Resize {
    Nearest,
    #[default]
    Triangle,
    Lanczos3,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FolderSource {
    /// Folder holding the images (relative to the pipeline file).
    pub dir: String,
    /// `filename,label` CSV; without it every PNG/JPEG in `dir` is read, unlabelled.
    #[serde(default)]
    pub labels: Option<String>,
    /// Whether the CSV's first row is a header: `auto` (only if it reads `filename,label`),
    /// `true` or `false`. Left out of the key when `auto`, so existing keys stay valid.
    #[serde(default, skip_serializing_if = "Header::is_auto")]
    pub header: Header,
    /// The CSV's class names in label-index order (default: 0/1 labels stay binary, other
    /// labels sorted); a label outside the list is an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<String>>,
    #[serde(default = "d56")]
    pub height: u32,
    #[serde(default = "d56")]
    pub width: u32,
    #[serde(default = "d3")]
    pub channels: u32,
    /// Filter used when an image is not already at the configured size.
    #[serde(default)]
    pub resize: Resize,
}

/// The images a folder source reads: names (as recorded), paths, labels and CSV lines.
pub(super) struct Listing {
    pub(super) names: Vec<String>,
    pub(super) paths: Vec<PathBuf>,
    pub(super) labels: Option<Vec<u8>>,
    /// The label vocabulary, when the labels index one.
    pub(super) classes: Option<Vec<String>>,
    /// 1-based CSV line of each image; 0 without a CSV.
    pub(super) lines: Vec<usize>,
    /// The digest of the CSV as read, if there is one.
    pub(super) csv_digest: Option<String>,
}

/// A folder as read: the dataset, and the digests of the files it was made from (the CSV's
/// and each image's, in listing order) for the check against the key ([`keyed`]).
pub(super) struct Loaded {
    pub(super) dataset: Dataset,
    csv_digest: Option<String>,
    paths: Vec<PathBuf>,
    digests: Vec<String>,
}

/// Why an image could not be used: bad data (reported with its index), or a file that
/// changed while it was read.
enum ImageError {
    Bad(String),
    Changed,
}

impl Listing {
    /// " (labels line N)" for image `i`, when it came from the CSV.
    fn at(&self, i: usize) -> String {
        match self.lines[i] {
            0 => String::new(),
            l => format!(" (labels line {l})"),
        }
    }
}

impl FolderSource {
    fn shape(&self) -> Shape {
        Shape::new(self.height, self.width, self.channels)
    }

    fn list(&self, base: &Path) -> Result<Listing, StageError> {
        let dir = base.join(&self.dir);
        let listing = match &self.labels {
            Some(csv) => {
                let path = base.join(csv);
                let (rows, digest) = read_labels_csv(&path, self.header)?;
                let (labels, classes) = index_labels(&path, &rows, self.classes.as_deref())?;
                Listing {
                    paths: rows.iter().map(|r| dir.join(&r.name)).collect(),
                    labels: Some(labels),
                    classes,
                    lines: rows.iter().map(|r| r.line).collect(),
                    names: rows.into_iter().map(|r| r.name).collect(),
                    csv_digest: Some(digest),
                }
            }
            None => {
                let paths = list_images(&dir)?;
                Listing {
                    names: paths
                        .iter()
                        .map(|p| file_name(&dir, p))
                        .collect::<Result<_, _>>()?,
                    lines: vec![0; paths.len()],
                    labels: None,
                    classes: None,
                    csv_digest: None,
                    paths,
                }
            }
        };
        if listing.names.is_empty() {
            return Err(match &self.labels {
                Some(csv) => StageError::Input {
                    path: base.join(csv),
                    message: "lists no images".into(),
                },
                None => StageError::Input {
                    path: dir,
                    message: "no images found".into(),
                },
            });
        }
        check_size(listing.names.len(), self.shape())
            .map_err(|message| StageError::Input { path: dir, message })?;
        Ok(listing)
    }

    /// The CSV and every listed image; an image that exists must be a regular file.
    pub(super) fn external_files(
        &self,
        base: &Path,
    ) -> Result<Vec<(String, Vec<PathBuf>)>, StageError> {
        let listing = self.list(base)?;
        check_listed(&listing, base, &self.dir)?;
        let mut files = Vec::new();
        if let Some(csv) = &self.labels {
            files.push(("labels".to_string(), vec![base.join(csv)]));
        }
        files.push(("images".to_string(), listing.paths));
        Ok(files)
    }

    /// Reads and converts every image, digesting each file as read.
    pub(super) fn load(&self, base: &Path, bar: &ProgressBar) -> Result<Loaded, StageError> {
        let listing = self.list(base)?;
        load_listing(
            listing,
            base.join(&self.dir),
            self.shape(),
            self.resize,
            bar,
        )
    }
}

/// Every listed image that exists must be a regular file of bounded size.
pub(super) fn check_listed(listing: &Listing, base: &Path, dir: &str) -> Result<(), StageError> {
    listing.paths.par_iter().enumerate().try_for_each(|(i, p)| {
        check_regular_if_present(p, MAX_IMAGE_FILE_BYTES)
            .map_err(|e| image_error(listing, i, base, dir, e))
    })
}

/// Reads and converts every listed image to `shape`, digesting each file as read; `dir` is the
/// folder named in errors.
pub(super) fn load_listing(
    listing: Listing,
    dir: PathBuf,
    shape: Shape,
    resize: Resize,
    bar: &ProgressBar,
) -> Result<Loaded, StageError> {
    bar.set_length(listing.names.len() as u64);
    let filter = match resize {
        Resize::Nearest => FilterType::Nearest,
        Resize::Triangle => FilterType::Triangle,
        Resize::Lanczos3 => FilterType::Lanczos3,
    };
    let per = shape.image_len();
    let total = listing.names.len() * per;
    let mut pixels = Vec::new();
    pixels
        .try_reserve_exact(total)
        .map_err(|e| StageError::Input {
            path: dir.clone(),
            message: format!(
                "cannot hold {} images of {shape} ({total} bytes) in memory: {e}",
                listing.names.len()
            ),
        })?;
    pixels.resize(total, 0u8);
    let pause = keyed::test_read_delay();
    let results: Vec<Result<String, ImageError>> = pixels
        .par_chunks_mut(per)
        .enumerate()
        .map(|(i, out)| {
            let res = load_image(&listing.paths[i], shape, filter, pause);
            bar.inc(1);
            res.map(|(px, digest)| {
                out.copy_from_slice(&px);
                digest
            })
        })
        .collect();
    let mut digests = Vec::with_capacity(results.len());
    let mut errors = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(d) => digests.push(d),
            Err(ImageError::Bad(e)) => errors.push((i, e)),
            // Whatever else is wrong, this image is not the one the key digested.
            Err(ImageError::Changed) => return Err(keyed::changed(&listing.paths[i])),
        }
    }
    if !errors.is_empty() {
        let shown: Vec<String> = errors
            .iter()
            .take(10)
            .map(|(i, e)| {
                format!(
                    "  image {i} `{}`{}: {e}",
                    quote::quote(&listing.names[*i]),
                    listing.at(*i)
                )
            })
            .collect();
        return Err(StageError::Input {
            path: dir,
            message: format!(
                "{} of {} images could not be read:\n{}{}",
                errors.len(),
                listing.names.len(),
                shown.join("\n"),
                if errors.len() > 10 { "\n  ..." } else { "" }
            ),
        });
    }
    Ok(Loaded {
        dataset: Dataset::new(shape, pixels, listing.labels, listing.names)
            .with_classes(listing.classes),
        csv_digest: listing.csv_digest,
        paths: listing.paths,
        digests,
    })
}

fn image_error(listing: &Listing, i: usize, base: &Path, dir: &str, e: StageError) -> StageError {
    let reason = match e {
        StageError::Input { message, .. } => message,
        other => other.to_string(),
    };
    StageError::Input {
        path: base.join(dir),
        message: format!(
            "image {i} `{}`{}: {reason}",
            quote::quote(&listing.names[i]),
            listing.at(i)
        ),
    }
}

/// The name recorded for `path` (its file name), which must be UTF-8.
pub(super) fn file_name(dir: &Path, path: &Path) -> Result<String, StageError> {
    let name = path.file_name().unwrap_or_default();
    name.to_str()
        .map(str::to_string)
        .ok_or_else(|| StageError::Input {
            path: dir.to_path_buf(),
            message: format!(
                "file name `{}` is not valid UTF-8 (names are recorded as text): rename it",
                quote::path(Path::new(name))
            ),
        })
}

pub(super) fn is_image(p: &Path) -> bool {
    matches!(
        p.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("png" | "jpg" | "jpeg")
    )
}

/// Every PNG/JPEG directly in `dir`, sorted by name. A non-UTF-8 name with an image extension
/// is kept, to be reported by [`file_name`] rather than skipped.
pub(super) fn list_images(dir: &Path) -> Result<Vec<PathBuf>, StageError> {
    let err = |e: std::io::Error| StageError::Input {
        path: dir.to_path_buf(),
        message: format!("cannot list the folder: {e}"),
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(err)?
        .map(|e| e.map(|e| e.path()).map_err(err))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|p| is_image(p))
        .collect();
    files.sort();
    Ok(files)
}

/// The image's pixels at `shape`, and the digest of its file as read. `pause`: tests only.
fn load_image(
    path: &Path,
    shape: Shape,
    filter: FilterType,
    pause: Option<std::time::Duration>,
) -> Result<(Vec<u8>, String), ImageError> {
    let len = check_regular(path, MAX_IMAGE_FILE_BYTES).map_err(|e| match e {
        StageError::Input { message, .. } => ImageError::Bad(message),
        other => ImageError::Bad(other.to_string()),
    })?;
    let bytes = std::fs::read(path).map_err(|e| ImageError::Bad(e.to_string()))?;
    if let Some(p) = pause {
        std::thread::sleep(p);
    }
    if bytes.len() as u64 != len {
        return Err(ImageError::Changed);
    }
    let digest = keyed::digest(&bytes);
    let img = if crate::data::jpeg::is_jpeg(&bytes) {
        crate::data::jpeg::decode(&bytes).map_err(ImageError::Bad)?
    } else {
        image::load_from_memory(&bytes)
            .map_err(|e| ImageError::Bad(format!("cannot decode: {e}")))?
    };
    let img = if img.width() != shape.width || img.height() != shape.height {
        img.resize_exact(shape.width, shape.height, filter)
    } else {
        img
    };
    let pixels = if shape.channels == 1 {
        img.into_luma8().into_raw()
    } else {
        img.into_rgb8().into_raw()
    };
    Ok((pixels, digest))
}

/// Reads the folder and stores it, once the files as read are checked against the key.
pub(super) fn run(f: &FolderSource, ctx: &StageContext) -> Result<StageReport, StageError> {
    let bar = ctx.bar(0, "images");
    let loaded = f.load(ctx.base_dir, &bar)?;
    bar.finish_and_clear();
    if let (Some(csv), Some(digest)) = (&f.labels, &loaded.csv_digest) {
        keyed::check_one(ctx, "labels", &ctx.base_dir.join(csv), digest)?;
    }
    store(ctx, loaded, &f.dir)
}

/// Stores the images as read once their digests are checked against the key's.
pub(super) fn store(
    ctx: &StageContext,
    loaded: Loaded,
    dir: &str,
) -> Result<StageReport, StageError> {
    let dir = ctx.base_dir.join(dir);
    keyed::check(
        ctx,
        "images",
        &dir,
        keyed::pairs(&loaded.paths, &loaded.digests),
    )?;
    let ds = loaded.dataset;
    ds.write(ctx.out)?;
    Ok(summary(&ds))
}
