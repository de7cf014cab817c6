//! `dedup`: groups images whose hashes are equal or within a Hamming radius; one keeper per
//! group; a PNG grid of the largest groups (report Figure 1).

use super::artifacts::{GroupsArtifact, HashAlgorithm, Hashes, write_json};
use super::{ArtifactKind, Problem, Slot, Stage, StageContext, StageError, StageReport};
use crate::data::Dataset;
use crate::data::index;
use crate::figures::grid::{GridImage, Labelled, save_labelled_grid};
use serde::{Deserialize, Serialize};

fn d12() -> usize {
    12
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Dedup {
    /// Maximum Hamming distance between two hashes of one group (0 = equal hashes).
    #[serde(default)]
    pub radius: u32,
    /// Rows in the PNG of the largest groups.
    #[serde(default = "d12")]
    pub figure_groups: usize,
}

impl Stage for Dedup {
    const KIND: &'static str = "dedup";
    // 2: per-image captions in duplicates.png.
    const VERSION: u32 = 2;
    const OUTPUT: ArtifactKind = ArtifactKind::Groups;
    const INPUTS: &'static [Slot] = &[
        super::required_slot("hashes", ArtifactKind::Hashes),
        super::required_slot("data", ArtifactKind::Dataset),
    ];

    fn check(&self) -> Vec<Problem> {
        [
            Problem::above("radius", self.radius, 8),
            Problem::above("figure_groups", self.figure_groups, super::MAX_FIGURE_ROWS),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn run(&self, ctx: &StageContext) -> Result<StageReport, StageError> {
        let hashes = Hashes::read(ctx.input("hashes")?)?;
        if hashes.meta.algorithm == HashAlgorithm::Exact && self.radius > 0 {
            return Err(StageError::Invalid(
                "a radius above 0 needs perceptual (dhash) hashes, not exact ones".into(),
            ));
        }
        let groups = index::group_by_radius(&hashes.rows, hashes.meta.width, self.radius)
            .map_err(|e| StageError::Invalid(e.to_string()))?;
        let duplicate_groups: Vec<Vec<u32>> = groups
            .groups
            .iter()
            .filter(|g| g.len() > 1)
            .cloned()
            .collect();
        let in_groups: usize = duplicate_groups.iter().map(Vec::len).sum();
        let artifact = GroupsArtifact {
            algorithm: hashes.meta.algorithm,
            radius: self.radius,
            count: hashes.meta.count,
            group_of: groups.group_of,
            duplicate_groups,
        };
        write_json(&ctx.out.join(super::artifacts::GROUPS), &artifact)?;

        let ds = ctx.dataset("data")?;
        let mut largest: Vec<&Vec<u32>> = artifact.duplicate_groups.iter().collect();
        largest.sort_by(|a, b| b.len().cmp(&a.len()).then(a[0].cmp(&b[0])));
        let rows: Vec<Vec<Labelled>> = largest
            .iter()
            .take(self.figure_groups)
            .map(|g| {
                g.iter()
                    .take(8)
                    .map(|&i| Labelled {
                        image: GridImage::new(ds.image(i as usize).to_vec(), ds.shape),
                        lines: image_caption(&ds, i as usize),
                    })
                    .collect()
            })
            .collect();
        let mut figures = Vec::new();
        if !rows.is_empty() {
            let png = ctx.out.join("duplicates.png");
            let header = "Duplicate groups, one per row (name, index and label under each image)";
            save_labelled_grid(&png, header, &rows, 2).map_err(|e| StageError::Artifact {
                path: png.clone(),
                message: e.to_string(),
            })?;
            figures.push("duplicates.png".to_string());
        }
        let n_groups = artifact.duplicate_groups.len();
        let removable = in_groups - n_groups;
        Ok(StageReport {
            summary: format!(
                "{n_groups} duplicate groups holding {in_groups} images ({removable} copies) at radius {}",
                self.radius
            ),
            figures,
            ..Default::default()
        }
        .metric("duplicate_groups", n_groups as f64)
        .metric("images_in_groups", in_groups as f64)
        .metric("copies", removable as f64))
    }
}

/// The lines under image `i` in a grid: its name, then its index and label.
pub fn image_caption(ds: &Dataset, i: usize) -> Vec<String> {
    let name = ds.names.get(i).cloned().unwrap_or_default();
    let id = match ds.label(i) {
        Some(l) => format!("#{i} · label {}", ds.class_name(l)),
        None => format!("#{i}"),
    };
    vec![name, id]
}
