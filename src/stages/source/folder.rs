//! An image folder: every PNG/JPEG in `dir`, or the files a `filename,label` CSV lists, each
//! converted to the configured shape. Image files must be regular files of bounded size; file
//! names must be UTF-8 (they are recorded in `names.txt`); a bad image is reported by index,
//! name and CSV line, up to ten at once.

use super::labels::{Header, read_labels_csv};
use super::{
    StageContext, StageError, StageReport, check_regular, check_regular_if_present, d3, d56,
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
struct Listing {
    names: Vec<String>,
    paths: Vec<PathBuf>,
    labels: Option<Vec<u8>>,
    /// 1-based CSV line of each image; 0 without a CSV.
    lines: Vec<usize>,
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
                let rows = read_labels_csv(&base.join(csv), self.header)?;
                Listing {
                    paths: rows.iter().map(|r| dir.join(&r.name)).collect(),
                    labels: Some(rows.iter().map(|r| r.label).collect()),
                    lines: rows.iter().map(|r| r.line).collect(),
                    names: rows.into_iter().map(|r| r.name).collect(),
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
        listing
            .paths
            .par_iter()
            .enumerate()
            .try_for_each(|(i, p)| {
                check_regular_if_present(p, MAX_IMAGE_FILE_BYTES)
                    .map_err(|e| image_error(&listing, i, base, &self.dir, e))
            })?;
        let mut files = Vec::new();
        if let Some(csv) = &self.labels {
            files.push(("labels".to_string(), vec![base.join(csv)]));
        }
        files.push(("images".to_string(), listing.paths));
        Ok(files)
    }

    /// Reads and converts every image.
    pub(super) fn load(&self, base: &Path, bar: &ProgressBar) -> Result<Dataset, StageError> {
        let shape = self.shape();
        let dir = base.join(&self.dir);
        let listing = self.list(base)?;
        bar.set_length(listing.names.len() as u64);
        let filter = match self.resize {
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
        let errors: Vec<(usize, String)> = pixels
            .par_chunks_mut(per)
            .enumerate()
            .filter_map(|(i, out)| {
                let res = load_image(&listing.paths[i], shape, filter);
                bar.inc(1);
                match res {
                    Ok(px) => {
                        out.copy_from_slice(&px);
                        None
                    }
                    Err(e) => Some((i, e)),
                }
            })
            .collect();
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
        Ok(Dataset::new(shape, pixels, listing.labels, listing.names))
    }
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
fn file_name(dir: &Path, path: &Path) -> Result<String, StageError> {
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

fn is_image(p: &Path) -> bool {
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
fn list_images(dir: &Path) -> Result<Vec<PathBuf>, StageError> {
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

fn load_image(path: &Path, shape: Shape, filter: FilterType) -> Result<Vec<u8>, String> {
    let len = check_regular(path, MAX_IMAGE_FILE_BYTES).map_err(|e| match e {
        StageError::Input { message, .. } => message,
        other => other.to_string(),
    })?;
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    if bytes.len() as u64 != len {
        return Err("changed while being read".into());
    }
    let img = if crate::data::jpeg::is_jpeg(&bytes) {
        crate::data::jpeg::decode(&bytes)?
    } else {
        image::load_from_memory(&bytes).map_err(|e| format!("cannot decode: {e}"))?
    };
    let img = if img.width() != shape.width || img.height() != shape.height {
        img.resize_exact(shape.width, shape.height, filter)
    } else {
        img
    };
    Ok(if shape.channels == 1 {
        img.into_luma8().into_raw()
    } else {
        img.into_rgb8().into_raw()
    })
}

pub(super) fn run(f: &FolderSource, ctx: &StageContext) -> Result<StageReport, StageError> {
    let bar = ctx.bar(0, "images");
    let ds = f.load(ctx.base_dir, &bar)?;
    bar.finish_and_clear();
    ds.write(ctx.out)?;
    Ok(summary(ds.len(), ds.shape, ds.labels.as_deref()))
}
