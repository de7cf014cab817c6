//! `source`: loads the challenge's raw arrays, an image folder, or synthetic faces into one
//! packed dataset artifact.

use super::{ArtifactKind, Problem, Slot, Stage, StageContext, StageError, StageReport, io_err};
use crate::data::dataset::{DatasetMeta, LABELS_FILE, PIXELS_FILE, write_names_and_meta};
use crate::data::synthetic::{self, SyntheticConfig};
use crate::data::{Dataset, Shape};
use image::imageops::FilterType;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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

fn d56() -> u32 {
    56
}
fn d3() -> u32 {
    3
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// Path of `db_train.raw` (relative to the pipeline file).
    pub images: String,
    /// One label per line, `0/1` or `-1/1`; absent for a test set.
    #[serde(default)]
    pub labels: Option<String>,
    #[serde(default = "d56")]
    pub height: u32,
    #[serde(default = "d56")]
    pub width: u32,
    #[serde(default = "d3")]
    pub channels: u32,
}

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
    /// `filename,label` CSV (header optional); without it every PNG/JPEG in `dir` is read, unlabelled.
    #[serde(default)]
    pub labels: Option<String>,
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

fn check_shape(problems: &mut Vec<Problem>, h: u32, w: u32, c: u32) {
    if h == 0 || w == 0 {
        problems.push(Problem::new(
            "height",
            "height and width must be at least 1",
        ));
    }
    if c != 1 && c != 3 {
        problems.push(Problem::new(
            "channels",
            format!("channels must be 1 (grey) or 3 (RGB), got {c}"),
        ));
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
            Source::Synthetic(s) => {
                if let Err(e) = s.validate() {
                    p.push(Problem::new("", e.to_string()));
                }
            }
        }
        p
    }

    fn external_files(&self, base: &Path) -> Result<Vec<(String, Vec<PathBuf>)>, StageError> {
        Ok(match self {
            Source::Raw(r) => {
                let mut v = vec![("images".to_string(), vec![base.join(&r.images)])];
                if let Some(l) = &r.labels {
                    v.push(("labels".to_string(), vec![base.join(l)]));
                }
                v
            }
            Source::Folder(f) => {
                let dir = base.join(&f.dir);
                match &f.labels {
                    Some(csv) => {
                        let csv_path = base.join(csv);
                        let rows = read_labels_csv(&csv_path)?;
                        let files = rows
                            .into_iter()
                            .map(|(name, _, _)| dir.join(name))
                            .collect();
                        vec![
                            ("labels".to_string(), vec![csv_path]),
                            ("images".to_string(), files),
                        ]
                    }
                    None => vec![("images".to_string(), list_images(&dir)?)],
                }
            }
            Source::Synthetic(_) => Vec::new(),
        })
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
            Source::Raw(r) => run_raw(r, ctx),
            Source::Folder(f) => run_folder(f, ctx),
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

/// Parses one label: `0`, `1` or `-1` (mapped to 0).
fn parse_label(text: &str) -> Option<u8> {
    match text.trim() {
        "0" | "-1" | "0.0" | "-1.0" => Some(0),
        "1" | "+1" | "1.0" => Some(1),
        _ => None,
    }
}

fn run_raw(r: &RawSource, ctx: &StageContext) -> Result<StageReport, StageError> {
    let shape = Shape::new(r.height, r.width, r.channels);
    let path = ctx.base_dir.join(&r.images);
    let per = shape.image_len();
    let size = std::fs::metadata(&path)
        .map_err(|e| StageError::Input {
            path: path.clone(),
            message: format!("cannot read: {e}"),
        })?
        .len() as usize;
    if !size.is_multiple_of(per) {
        return Err(StageError::Input {
            path,
            message: format!(
                "{size} bytes is not a multiple of {shape} = {per} bytes per image \
                 ({} whole images and {} bytes left over): check height/width/channels",
                size / per,
                size % per
            ),
        });
    }
    let count = size / per;
    let labels = match &r.labels {
        Some(l) => {
            let lpath = ctx.base_dir.join(l);
            let text = std::fs::read_to_string(&lpath).map_err(|e| StageError::Input {
                path: lpath.clone(),
                message: format!("cannot read: {e}"),
            })?;
            let mut labels = Vec::with_capacity(count);
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                labels.push(parse_label(line).ok_or_else(|| StageError::Input {
                    path: lpath.clone(),
                    message: format!(
                        "line {}: unknown label `{}` (expected 0/1 or -1/1)",
                        i + 1,
                        line.trim()
                    ),
                })?);
            }
            if labels.len() != count {
                return Err(StageError::Input {
                    path: lpath,
                    message: format!("{} labels for {count} images in {}", labels.len(), r.images),
                });
            }
            Some(labels)
        }
        None => None,
    };
    // A kernel-side copy: the 1 GB array never passes through user space.
    let out_pixels = ctx.out.join(PIXELS_FILE);
    std::fs::copy(&path, &out_pixels).map_err(io_err(&path))?;
    if let Some(l) = &labels {
        let p = ctx.out.join(LABELS_FILE);
        std::fs::write(&p, l).map_err(io_err(&p))?;
    }
    let names: Vec<String> = (0..count).map(|i| format!("#{i}")).collect();
    let meta = DatasetMeta {
        count,
        shape,
        labelled: labels.is_some(),
    };
    write_names_and_meta(ctx.out, &meta, &names)?;
    Ok(summary(count, shape, labels.as_deref()))
}

/// Rows of a `filename,label` CSV: (name, label, 1-based line). A first line whose label does
/// not parse is taken as a header.
pub fn read_labels_csv(path: &Path) -> Result<Vec<(String, u8, usize)>, StageError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (name, label) = line.split_once(',').ok_or_else(|| StageError::Input {
            path: path.to_path_buf(),
            message: format!("line {}: expected `filename,label`, got `{line}`", i + 1),
        })?;
        match parse_label(label) {
            Some(l) => rows.push((name.trim().to_string(), l, i + 1)),
            None if i == 0 => continue, // header
            None => {
                return Err(StageError::Input {
                    path: path.to_path_buf(),
                    message: format!(
                        "line {}: unknown label `{}` (expected 0/1 or -1/1)",
                        i + 1,
                        label.trim()
                    ),
                });
            }
        }
    }
    Ok(rows)
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

/// Every PNG/JPEG directly in `dir`, sorted by name.
fn list_images(dir: &Path) -> Result<Vec<PathBuf>, StageError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_image(p))
        .collect();
    files.sort();
    Ok(files)
}

fn load_image(path: &Path, shape: Shape, filter: FilterType) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
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

fn run_folder(f: &FolderSource, ctx: &StageContext) -> Result<StageReport, StageError> {
    let shape = Shape::new(f.height, f.width, f.channels);
    let dir = ctx.base_dir.join(&f.dir);
    let (names, labels, lines): (Vec<String>, Option<Vec<u8>>, Vec<usize>) = match &f.labels {
        Some(csv) => {
            let rows = read_labels_csv(&ctx.base_dir.join(csv))?;
            let lines = rows.iter().map(|r| r.2).collect();
            let labels = rows.iter().map(|r| r.1).collect();
            (rows.into_iter().map(|r| r.0).collect(), Some(labels), lines)
        }
        None => {
            let files = list_images(&dir)?;
            let names = files
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect::<Vec<_>>();
            let lines = vec![0; names.len()];
            (names, None, lines)
        }
    };
    if names.is_empty() {
        return Err(StageError::Input {
            path: dir,
            message: "no images found".into(),
        });
    }
    let filter = match f.resize {
        Resize::Nearest => FilterType::Nearest,
        Resize::Triangle => FilterType::Triangle,
        Resize::Lanczos3 => FilterType::Lanczos3,
    };
    let bar = ctx.bar(names.len() as u64, "images");
    let per = shape.image_len();
    let mut pixels = vec![0u8; names.len() * per];
    let errors: Vec<(usize, String)> = pixels
        .par_chunks_mut(per)
        .enumerate()
        .filter_map(|(i, out)| {
            let res = load_image(&dir.join(&names[i]), shape, filter);
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
    bar.finish_and_clear();
    if !errors.is_empty() {
        let shown: Vec<String> = errors
            .iter()
            .take(10)
            .map(|(i, e)| {
                let at = if lines[*i] > 0 {
                    format!(" (labels line {})", lines[*i])
                } else {
                    String::new()
                };
                format!("  image {i} `{}`{at}: {e}", names[*i])
            })
            .collect();
        return Err(StageError::Input {
            path: dir,
            message: format!(
                "{} of {} images could not be read:\n{}{}",
                errors.len(),
                names.len(),
                shown.join("\n"),
                if errors.len() > 10 { "\n  ..." } else { "" }
            ),
        });
    }
    let ds = Dataset::new(shape, pixels, labels, names);
    ds.write(ctx.out)?;
    Ok(summary(ds.len(), shape, ds.labels.as_deref()))
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
