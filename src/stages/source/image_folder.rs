//! `format: image_folder`: one sub-folder per class, `dir/CLASS/*.{png,jpg,jpeg}` (extensions
//! matched without case), as Keras' `image_dataset_from_directory` and torchvision's
//! `ImageFolder` read them. The class names (sorted, or the order of `classes:`) become the
//! dataset's label vocabulary; each image is recorded as `CLASS/FILE` and converted to the
//! configured shape like the folder format's.

use super::folder::{
    Listing, Loaded, Resize, check_listed, file_name, list_images, load_listing, store,
};
use super::{Problem, StageContext, StageError, StageReport, d3, d56};
use crate::data::Shape;
use crate::data::dataset::{MAX_CLASSES, check_size};
use crate::quote;
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImageFolderSource {
    /// Folder holding one sub-folder per class (relative to the pipeline file).
    pub dir: String,
    /// The classes to read, in label order (default: every sub-folder, sorted by name).
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

fn input_err(path: &Path, message: String) -> StageError {
    StageError::Input {
        path: path.to_path_buf(),
        message,
    }
}

impl ImageFolderSource {
    fn shape(&self) -> Shape {
        Shape::new(self.height, self.width, self.channels)
    }

    /// Problems of `classes:` (checked at validation).
    pub(super) fn check_classes(&self, p: &mut Vec<Problem>) {
        let Some(classes) = &self.classes else { return };
        if classes.len() < 2 || classes.len() > MAX_CLASSES {
            p.push(Problem::new(
                "classes",
                format!(
                    "`classes` must list between 2 and {MAX_CLASSES} class folders, got {}",
                    classes.len()
                ),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for c in classes {
            if c.is_empty() || c.contains(['/', '\\']) || c == "." || c == ".." {
                p.push(Problem::new(
                    "classes",
                    format!("`{}` is not a folder name", quote::quote(c)),
                ));
            } else if !seen.insert(c) {
                p.push(Problem::new(
                    "classes",
                    format!("`{}` is listed twice", quote::quote(c)),
                ));
            }
        }
    }

    /// The number of classes this source will read, when its folder can be listed now
    /// (planning: `pipe model --stage`, validation of two-class-only settings).
    pub fn class_count(&self, base_dir: &Path) -> Option<usize> {
        match &self.classes {
            Some(c) => Some(c.len()),
            None => self
                .class_names(&base_dir.join(&self.dir))
                .ok()
                .map(|c| c.len()),
        }
    }

    /// The class folders, in label order.
    fn class_names(&self, dir: &Path) -> Result<Vec<String>, StageError> {
        let err = |e: std::io::Error| input_err(dir, format!("cannot list the folder: {e}"));
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(err)? {
            let path = entry.map_err(err)?.path();
            if path.is_dir() {
                let name = file_name(dir, &path)?;
                if !name.starts_with('.') {
                    found.push(name);
                }
            }
        }
        found.sort();
        let classes = match &self.classes {
            Some(wanted) => {
                let missing: Vec<String> = wanted
                    .iter()
                    .filter(|c| !found.contains(c))
                    .map(|c| format!("`{}`", quote::quote(c)))
                    .collect();
                if !missing.is_empty() {
                    return Err(input_err(
                        dir,
                        format!("no class folder {} (`classes`)", missing.join(", ")),
                    ));
                }
                wanted.clone()
            }
            None => found,
        };
        if classes.len() < 2 {
            return Err(input_err(
                dir,
                format!(
                    "found {} class folder(s); an image folder needs one sub-folder per class, \
                     at least 2",
                    classes.len()
                ),
            ));
        }
        if classes.len() > MAX_CLASSES {
            return Err(input_err(
                dir,
                format!(
                    "{} class folders, more than the maximum of {MAX_CLASSES}",
                    classes.len()
                ),
            ));
        }
        Ok(classes)
    }

    fn list(&self, base: &Path) -> Result<Listing, StageError> {
        let dir = base.join(&self.dir);
        let classes = self.class_names(&dir)?;
        let (mut names, mut paths, mut labels) = (Vec::new(), Vec::new(), Vec::new());
        for (label, class) in classes.iter().enumerate() {
            let sub = dir.join(class);
            let files = list_images(&sub)?;
            if files.is_empty() {
                return Err(input_err(&sub, "holds no PNG or JPEG images".into()));
            }
            for p in files {
                names.push(format!("{class}/{}", file_name(&sub, &p)?));
                labels.push(label as u8);
                paths.push(p);
            }
        }
        check_size(names.len(), self.shape()).map_err(|m| input_err(&dir, m))?;
        Ok(Listing {
            lines: vec![0; names.len()],
            names,
            paths,
            labels: Some(labels),
            classes: Some(classes),
            csv_digest: None,
        })
    }

    /// Every image of every class folder; each must be a regular file.
    pub(super) fn external_files(
        &self,
        base: &Path,
    ) -> Result<Vec<(String, Vec<PathBuf>)>, StageError> {
        let listing = self.list(base)?;
        check_listed(&listing, base, &self.dir)?;
        Ok(vec![("images".to_string(), listing.paths)])
    }

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

pub(super) fn run(f: &ImageFolderSource, ctx: &StageContext) -> Result<StageReport, StageError> {
    let bar = ctx.bar(0, "images");
    let loaded = f.load(ctx.base_dir, &bar)?;
    bar.finish_and_clear();
    store(ctx, loaded, &f.dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(path: &Path, v: u8) {
        image::RgbImage::from_pixel(4, 4, image::Rgb([v, v, v]))
            .save(path)
            .unwrap();
    }

    fn source(classes: Option<&[&str]>) -> ImageFolderSource {
        ImageFolderSource {
            dir: "d".into(),
            classes: classes.map(|c| c.iter().map(|s| s.to_string()).collect()),
            height: 4,
            width: 4,
            channels: 3,
            resize: Resize::Triangle,
        }
    }

    #[test]
    fn class_folders_become_the_vocabulary() {
        let t = tempfile::tempdir().unwrap();
        for (c, n) in [("dog", 2), ("cat", 1), ("fox", 1)] {
            std::fs::create_dir_all(t.path().join("d").join(c)).unwrap();
            for i in 0..n {
                png(&t.path().join(format!("d/{c}/{i}.PNG")), i as u8);
            }
        }
        std::fs::write(t.path().join("d/dog/notes.txt"), "x").unwrap();
        let bar = ProgressBar::hidden();
        let ds = source(None).load(t.path(), &bar).unwrap().dataset;
        assert_eq!(ds.classes.as_deref().unwrap(), ["cat", "dog", "fox"]);
        assert_eq!(ds.labels.as_deref().unwrap(), [0, 1, 1, 2]);
        assert_eq!(
            ds.names,
            ["cat/0.PNG", "dog/0.PNG", "dog/1.PNG", "fox/0.PNG"]
        );

        let ds = source(Some(&["fox", "cat"]))
            .load(t.path(), &bar)
            .unwrap()
            .dataset;
        assert_eq!(ds.classes.as_deref().unwrap(), ["fox", "cat"]);
        assert_eq!(ds.labels.as_deref().unwrap(), [0, 1]);
        assert_eq!(ds.names, ["fox/0.PNG", "cat/0.PNG"]);

        let e = source(Some(&["cat", "owl"]))
            .load(t.path(), &bar)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("no class folder `owl`"), "{e}");
        std::fs::create_dir(t.path().join("d/empty")).unwrap();
        let e = source(None).load(t.path(), &bar).err().unwrap().to_string();
        assert!(
            e.contains("empty") && e.contains("holds no PNG or JPEG"),
            "{e}"
        );
    }

    #[test]
    fn bad_class_lists_are_validation_problems() {
        let mut p = Vec::new();
        source(Some(&["a", "a/b", "a"])).check_classes(&mut p);
        let text: Vec<String> = p.iter().map(|p| p.message.clone()).collect();
        assert!(
            text.iter()
                .any(|m| m.contains("`a/b` is not a folder name")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|m| m.contains("`a` is listed twice")),
            "{text:?}"
        );
        let mut p = Vec::new();
        source(Some(&["a"])).check_classes(&mut p);
        assert!(p[0].message.contains("between 2 and 256"));
    }
}
