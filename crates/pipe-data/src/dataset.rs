//! The packed dataset artifact: every image at one shape, pixels row-major HWC `u8`,
//! optional 0/1 labels, and the original name of each image.
//!
//! On disk (inside a cache object directory):
//! - `dataset.json`: [`DatasetMeta`] (count, shape, whether labels exist)
//! - `pixels.u8`: `count * height * width * channels` bytes, no header
//! - `labels.u8`: `count` bytes, each 0 or 1 (only when labelled)
//! - `names.txt`: one original name per line (file name, or `#index` for raw arrays)
//!
//! Pixels are memory-mapped on open so a 1 GB dataset costs no copy to read.

use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Deref;
use std::path::{Path, PathBuf};

pub const META_FILE: &str = "dataset.json";
pub const PIXELS_FILE: &str = "pixels.u8";
pub const LABELS_FILE: &str = "labels.u8";
pub const NAMES_FILE: &str = "names.txt";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    pub height: u32,
    pub width: u32,
    pub channels: u32,
}

impl Shape {
    pub const fn new(height: u32, width: u32, channels: u32) -> Self {
        Self {
            height,
            width,
            channels,
        }
    }

    /// Bytes of one image.
    pub fn image_len(&self) -> usize {
        self.height as usize * self.width as usize * self.channels as usize
    }
}

impl Default for Shape {
    /// The 2019 challenge's images: 56 x 56 RGB.
    fn default() -> Self {
        Self::new(56, 56, 3)
    }
}

/// Largest accepted image height or width (every source format).
pub const MAX_SIDE: u32 = 4096;
/// Most images one dataset may hold (the challenge has about 111 000).
pub const MAX_IMAGES: usize = 10_000_000;
/// Most pixel bytes one dataset may hold in memory (the challenge's is about 1 GB).
pub const MAX_DATASET_BYTES: u64 = 32 << 30;

/// Why `count` images of `shape` are too many, if they are: checked at validation where the
/// count is configured, and before allocating where it comes from data.
pub fn check_size(count: usize, shape: Shape) -> Result<(), String> {
    if count > MAX_IMAGES {
        return Err(format!("{count} images exceed the maximum of {MAX_IMAGES}"));
    }
    let bytes = (count as u64).saturating_mul(shape.image_len() as u64);
    if bytes > MAX_DATASET_BYTES {
        return Err(format!(
            "{count} images of {shape} take {bytes} bytes, more than the maximum of {} GiB",
            MAX_DATASET_BYTES >> 30
        ));
    }
    Ok(())
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}", self.height, self.width, self.channels)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetMeta {
    pub count: usize,
    pub shape: Shape,
    pub labelled: bool,
    /// Class names, label index order (an `image_folder` or a CSV with string labels). Absent
    /// for 0/1 labels, so binary datasets keep their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<String>>,
}

/// Most classes a dataset may have (labels are stored as one byte).
pub const MAX_CLASSES: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid dataset metadata: {source}")]
    Meta {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: {message}")]
    Corrupt { path: PathBuf, message: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Pixel storage: owned when built in memory, mapped when read from the cache.
pub enum Pixels {
    Owned(Vec<u8>),
    Mapped(Mmap),
}

impl Deref for Pixels {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Pixels::Owned(v) => v,
            Pixels::Mapped(m) => m,
        }
    }
}

impl std::fmt::Debug for Pixels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pixels({} bytes)", self.len())
    }
}

#[derive(Debug)]
pub struct Dataset {
    pub shape: Shape,
    pub pixels: Pixels,
    pub labels: Option<Vec<u8>>,
    pub names: Vec<String>,
    /// The label vocabulary, if the source declared one ([`DatasetMeta::classes`]).
    pub classes: Option<Vec<String>>,
}

impl Dataset {
    /// Builds an in-memory dataset; `pixels.len()` must be `names.len() * shape.image_len()`.
    pub fn new(shape: Shape, pixels: Vec<u8>, labels: Option<Vec<u8>>, names: Vec<String>) -> Self {
        debug_assert_eq!(pixels.len(), names.len() * shape.image_len());
        if let Some(l) = &labels {
            debug_assert_eq!(l.len(), names.len());
        }
        Self {
            shape,
            pixels: Pixels::Owned(pixels),
            labels,
            names,
            classes: None,
        }
    }

    /// The same dataset with the label vocabulary `classes` (labels index into it).
    pub fn with_classes(mut self, classes: Option<Vec<String>>) -> Self {
        self.classes = classes;
        self
    }

    /// Number of classes: the vocabulary's size, or 2 for 0/1 labels.
    pub fn num_classes(&self) -> usize {
        self.classes.as_ref().map_or(2, Vec::len)
    }

    /// The name of class `label`: its vocabulary entry, or the index itself.
    pub fn class_name(&self, label: u8) -> String {
        match &self.classes {
            Some(c) => c
                .get(label as usize)
                .cloned()
                .unwrap_or_else(|| label.to_string()),
            None => label.to_string(),
        }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The pixels of image `i` (HWC, row-major).
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.shape.image_len();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// Label of image `i`, if the dataset is labelled.
    pub fn label(&self, i: usize) -> Option<u8> {
        self.labels.as_ref().map(|l| l[i])
    }

    pub fn meta(&self) -> DatasetMeta {
        DatasetMeta {
            count: self.len(),
            shape: self.shape,
            labelled: self.labels.is_some(),
            classes: self.classes.clone(),
        }
    }

    /// Writes the four files into `dir` (which must exist).
    pub fn write(&self, dir: &Path) -> Result<(), DatasetError> {
        write_parts(
            dir,
            &self.meta(),
            &self.pixels,
            self.labels.as_deref(),
            &self.names,
        )
    }

    /// Opens a dataset written by [`Dataset::write`], mapping its pixels.
    pub fn open(dir: &Path) -> Result<Self, DatasetError> {
        let meta_path = dir.join(META_FILE);
        let meta_text = std::fs::read_to_string(&meta_path).map_err(io_err(&meta_path))?;
        let meta: DatasetMeta =
            serde_json::from_str(&meta_text).map_err(|source| DatasetError::Meta {
                path: meta_path.clone(),
                source,
            })?;

        let pix_path = dir.join(PIXELS_FILE);
        let file = File::open(&pix_path).map_err(io_err(&pix_path))?;
        let expected = meta.count * meta.shape.image_len();
        let pixels = if expected == 0 {
            Pixels::Owned(Vec::new())
        } else {
            // SAFETY: cache objects are immutable once committed; nothing writes to them.
            Pixels::Mapped(unsafe { Mmap::map(&file) }.map_err(io_err(&pix_path))?)
        };
        if pixels.len() != expected {
            return Err(DatasetError::Corrupt {
                path: pix_path,
                message: format!(
                    "{} bytes, expected {} images of {} = {expected}",
                    pixels.len(),
                    meta.count,
                    meta.shape
                ),
            });
        }

        let labels = if meta.labelled {
            let p = dir.join(LABELS_FILE);
            let l = std::fs::read(&p).map_err(io_err(&p))?;
            let n = meta.classes.as_ref().map_or(2, Vec::len);
            if l.len() != meta.count || l.iter().any(|&v| v as usize >= n) {
                return Err(DatasetError::Corrupt {
                    path: p,
                    message: format!("expected {} labels below {n}", meta.count),
                });
            }
            Some(l)
        } else {
            None
        };

        let names_path = dir.join(NAMES_FILE);
        let names_text = std::fs::read_to_string(&names_path).map_err(io_err(&names_path))?;
        let names: Vec<String> = names_text.lines().map(str::to_owned).collect();
        if names.len() != meta.count {
            return Err(DatasetError::Corrupt {
                path: names_path,
                message: format!("{} names for {} images", names.len(), meta.count),
            });
        }
        Ok(Self {
            shape: meta.shape,
            pixels,
            labels,
            names,
            classes: meta.classes,
        })
    }

    /// A new owned dataset holding the images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let n = self.shape.image_len();
        let mut pixels = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
        }
        let labels = self
            .labels
            .as_ref()
            .map(|l| indices.iter().map(|&i| l[i]).collect());
        let names = indices.iter().map(|&i| self.names[i].clone()).collect();
        Dataset::new(self.shape, pixels, labels, names).with_classes(self.classes.clone())
    }
}

/// Writes a dataset from its parts; used by readers that stream pixels without building a
/// [`Dataset`] first.
pub fn write_parts(
    dir: &Path,
    meta: &DatasetMeta,
    pixels: &[u8],
    labels: Option<&[u8]>,
    names: &[String],
) -> Result<(), DatasetError> {
    let pix_path = dir.join(PIXELS_FILE);
    std::fs::write(&pix_path, pixels).map_err(io_err(&pix_path))?;
    if let Some(labels) = labels {
        let p = dir.join(LABELS_FILE);
        std::fs::write(&p, labels).map_err(io_err(&p))?;
    }
    write_names_and_meta(dir, meta, names)
}

/// Writes `names.txt` and `dataset.json` (after `pixels.u8`/`labels.u8` are in place).
pub fn write_names_and_meta(
    dir: &Path,
    meta: &DatasetMeta,
    names: &[String],
) -> Result<(), DatasetError> {
    let names_path = dir.join(NAMES_FILE);
    let f = File::create(&names_path).map_err(io_err(&names_path))?;
    let mut w = BufWriter::new(f);
    for name in names {
        writeln!(w, "{name}").map_err(io_err(&names_path))?;
    }
    w.flush().map_err(io_err(&names_path))?;
    let meta_path = dir.join(META_FILE);
    let text = serde_json::to_string_pretty(meta).expect("DatasetMeta serialises");
    std::fs::write(&meta_path, text).map_err(io_err(&meta_path))
}

impl DatasetError {
    /// Datasets are read from and written to the cache: every failure is internal.
    pub fn is_user_error(&self) -> bool {
        match self {
            DatasetError::Io { .. } | DatasetError::Meta { .. } | DatasetError::Corrupt { .. } => {
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_open_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let shape = Shape::new(2, 3, 1);
        let ds = Dataset::new(
            shape,
            (0..12).collect(),
            Some(vec![0, 1]),
            vec!["a.png".into(), "b.png".into()],
        );
        ds.write(dir.path()).unwrap();
        let back = Dataset::open(dir.path()).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back.image(1), &[6, 7, 8, 9, 10, 11]);
        assert_eq!(back.labels, Some(vec![0, 1]));
        assert_eq!(back.names, vec!["a.png", "b.png"]);
        let sub = back.subset(&[1]);
        assert_eq!(sub.image(0), back.image(1));
        let meta = std::fs::read_to_string(dir.path().join(META_FILE)).unwrap();
        assert!(
            !meta.contains("classes"),
            "binary metadata is unchanged: {meta}"
        );
    }

    #[test]
    fn a_vocabulary_travels_with_the_labels() {
        let dir = tempfile::tempdir().unwrap();
        let classes = vec!["cat".to_string(), "dog".into(), "fox".into()];
        let ds = Dataset::new(
            Shape::new(1, 1, 1),
            vec![0, 1, 2],
            Some(vec![2, 0, 1]),
            vec!["a".into(), "b".into(), "c".into()],
        )
        .with_classes(Some(classes.clone()));
        ds.write(dir.path()).unwrap();
        let back = Dataset::open(dir.path()).unwrap();
        assert_eq!(back.num_classes(), 3);
        assert_eq!(back.class_name(2), "fox");
        assert_eq!(back.subset(&[0]).classes, Some(classes));
        std::fs::write(dir.path().join(LABELS_FILE), [3u8, 0, 1]).unwrap();
        let err = Dataset::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("labels below 3"), "{err}");
    }

    #[test]
    fn sizes_beyond_the_bounds_are_refused_without_overflow() {
        let s = Shape::default();
        assert_eq!(check_size(111_000, s), Ok(()));
        assert!(
            check_size(usize::MAX, s)
                .unwrap_err()
                .contains("maximum of 10000000")
        );
        let big = Shape::new(MAX_SIDE, MAX_SIDE, 3);
        assert!(check_size(1000, big).unwrap_err().contains("32 GiB"));
    }

    #[test]
    fn truncated_pixels_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let ds = Dataset::new(
            Shape::new(2, 2, 1),
            vec![0; 8],
            None,
            vec!["a".into(), "b".into()],
        );
        ds.write(dir.path()).unwrap();
        std::fs::write(dir.path().join(PIXELS_FILE), [0u8; 7]).unwrap();
        let err = Dataset::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("7 bytes"), "{err}");
    }

    fn p() -> std::path::PathBuf {
        std::path::PathBuf::from("x")
    }
    fn enospc() -> std::io::Error {
        std::io::Error::from(std::io::ErrorKind::StorageFull)
    }
    fn json_err() -> serde_json::Error {
        serde_json::from_str::<u8>("x").unwrap_err()
    }

    #[test]
    fn dataset_errors_are_internal() {
        for e in [
            DatasetError::Io {
                path: p(),
                source: enospc(),
            },
            DatasetError::Meta {
                path: p(),
                source: json_err(),
            },
            DatasetError::Corrupt {
                path: p(),
                message: "m".into(),
            },
        ] {
            assert!(!e.is_user_error(), "{e}");
        }
    }
}
