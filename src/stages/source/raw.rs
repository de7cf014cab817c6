//! The challenge's raw format: `N x H x W x C` bytes, no header, and an optional text file of
//! one label per line. The file's size must be a whole, non-zero number of images within the
//! dataset bounds; it is checked from `stat` before the file is digested or copied. What is
//! stored is checked against the key's digests ([`keyed`]).

use super::labels::{DigestedLabels, read_label_lines};
use super::{
    StageContext, StageError, StageReport, binary_summary, check_regular, check_regular_if_present,
    d3, d56, keyed, labels::MAX_LABEL_FILE_BYTES,
};
use crate::data::Shape;
use crate::data::dataset::{
    DatasetMeta, LABELS_FILE, PIXELS_FILE, check_size, write_names_and_meta,
};
use crate::stages::io_err;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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

impl RawSource {
    fn shape(&self) -> Shape {
        Shape::new(self.height, self.width, self.channels)
    }

    pub(super) fn external_files(
        &self,
        base: &Path,
    ) -> Result<Vec<(String, Vec<PathBuf>)>, StageError> {
        let images = base.join(&self.images);
        if std::fs::symlink_metadata(&images).is_ok() {
            self.image_count(&images)?;
        }
        let mut v = vec![("images".to_string(), vec![images])];
        if let Some(l) = &self.labels {
            let labels = base.join(l);
            check_regular_if_present(&labels, MAX_LABEL_FILE_BYTES)?;
            v.push(("labels".to_string(), vec![labels]));
        }
        Ok(v)
    }

    /// The number of images in `path`, from its size alone.
    fn image_count(&self, path: &Path) -> Result<usize, StageError> {
        let shape = self.shape();
        let per = shape.image_len();
        let err = |message: String| StageError::Input {
            path: path.to_path_buf(),
            message,
        };
        let size = usize::try_from(check_regular(path, u64::MAX)?)
            .map_err(|_| err("too large for this machine".into()))?;
        if size == 0 {
            return Err(err("is empty: no images".into()));
        }
        if !size.is_multiple_of(per) {
            return Err(err(format!(
                "{size} bytes is not a multiple of {shape} = {per} bytes per image \
                 ({} whole images and {} bytes left over): check height/width/channels",
                size / per,
                size % per
            )));
        }
        let count = size / per;
        check_size(count, shape).map_err(err)?;
        Ok(count)
    }

    /// The image count and labels (if any), validated against each other; the labels come
    /// with the digest of their file as read.
    pub(super) fn inspect(
        &self,
        base: &Path,
    ) -> Result<(usize, Option<DigestedLabels>), StageError> {
        let count = self.image_count(&base.join(&self.images))?;
        let labels = match &self.labels {
            Some(l) => {
                let lpath = base.join(l);
                let (labels, digest) = read_label_lines(&lpath)?;
                if labels.len() != count {
                    return Err(StageError::Input {
                        path: lpath,
                        message: format!(
                            "{} labels for {count} images in {}",
                            labels.len(),
                            self.images
                        ),
                    });
                }
                Some((labels, digest))
            }
            None => None,
        };
        Ok((count, labels))
    }
}

/// Stores the array (a clone where the filesystem allows, else a copy, digested either way,
/// see [`keyed`]) and writes the labels, after checking both against the key.
pub(super) fn run(r: &RawSource, ctx: &StageContext) -> Result<StageReport, StageError> {
    let shape = r.shape();
    let path = ctx.base_dir.join(&r.images);
    let (count, labels) = r.inspect(ctx.base_dir)?;
    let labels = match (&r.labels, labels) {
        (Some(l), Some((labels, digest))) => {
            keyed::check_one(ctx, "labels", &ctx.base_dir.join(l), &digest)?;
            Some(labels)
        }
        _ => None,
    };
    let out_pixels = ctx.out.join(PIXELS_FILE);
    let len = (count * shape.image_len()) as u64;
    let (digest, how) = keyed::store_hashed(&path, &out_pixels, len, keyed::test_read_delay())?;
    tracing::debug!(stage = %ctx.id, ?how, "stored {}", path.display());
    keyed::check_one(ctx, "images", &path, &digest)?;
    if let Some(l) = &labels {
        let p = ctx.out.join(LABELS_FILE);
        std::fs::write(&p, l).map_err(io_err(&p))?;
    }
    let names: Vec<String> = (0..count).map(|i| format!("#{i}")).collect();
    let meta = DatasetMeta {
        count,
        shape,
        labelled: labels.is_some(),
        classes: None,
    };
    write_names_and_meta(ctx.out, &meta, &names)?;
    Ok(binary_summary(count, shape, labels.as_deref()))
}
