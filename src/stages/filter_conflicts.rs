//! `filter_conflicts`: keeps one image per duplicate group and drops every group whose labels
//! disagree (the report's policy: 116,157 → 115,894), or keeps the majority label's keeper.
//! Writes a PNG of conflicting pairs with their difference image (report Figures 2–3).

use super::artifacts::{GroupsArtifact, SELECTION, SelectionArtifact, read_json, write_json};
use super::{ArtifactKind, Problem, Slot, Stage, StageContext, StageError, StageReport};
use crate::data::Dataset;
use crate::figures::grid::{GridImage, Labelled, abs_difference, save_labelled_grid};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Drop every image of a group whose labels disagree (the report).
    #[default]
    DropAll,
    /// Keep the first image carrying the group's majority label; drop the group on a tie.
    Majority,
}

fn d9() -> usize {
    9
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FilterConflicts {
    #[serde(default)]
    pub policy: Policy,
    /// Conflicting pairs drawn in `conflicts.png`.
    #[serde(default = "d9")]
    pub figure_pairs: usize,
}

/// The kept images and counts for `groups` under `policy`.
pub fn select(groups: &GroupsArtifact, labels: &[u8], policy: Policy) -> SelectionArtifact {
    let mut drop = vec![false; groups.count];
    let (mut copies, mut conflicting, mut conflict_groups) = (0, 0, 0);
    for g in &groups.duplicate_groups {
        // Images per label in the group (any number of classes).
        let mut counts: BTreeMap<u8, usize> = BTreeMap::new();
        for &i in g {
            *counts.entry(labels[i as usize]).or_default() += 1;
        }
        let conflict = counts.len() > 1;
        let keeper = if !conflict {
            Some(g[0])
        } else {
            conflict_groups += 1;
            let top = counts.values().copied().max().unwrap_or(0);
            let mut leaders = counts.iter().filter(|&(_, &c)| c == top).map(|(&l, _)| l);
            match (policy, leaders.next(), leaders.next()) {
                (Policy::Majority, Some(major), None) => {
                    g.iter().copied().find(|&i| labels[i as usize] == major)
                }
                _ => None,
            }
        };
        for &i in g {
            if Some(i) != keeper {
                drop[i as usize] = true;
                if conflict {
                    conflicting += 1;
                } else {
                    copies += 1;
                }
            }
        }
    }
    SelectionArtifact {
        kept: (0..groups.count as u32)
            .filter(|&i| !drop[i as usize])
            .collect(),
        removed_copies: copies,
        removed_conflicting: conflicting,
        conflicting_groups: conflict_groups,
    }
}

impl Stage for FilterConflicts {
    const KIND: &'static str = "filter_conflicts";
    // 2: per-image captions and a labelled difference column in conflicts.png.
    const VERSION: u32 = 2;
    const OUTPUT: ArtifactKind = ArtifactKind::Selection;
    const INPUTS: &'static [Slot] = &[
        super::required_slot("groups", ArtifactKind::Groups),
        super::required_slot("data", ArtifactKind::Dataset),
    ];

    fn check(&self) -> Vec<Problem> {
        Problem::above("figure_pairs", self.figure_pairs, super::MAX_FIGURE_ROWS)
            .into_iter()
            .collect()
    }

    fn run(&self, ctx: &StageContext) -> Result<StageReport, StageError> {
        let gpath = ctx.input("groups")?.join(super::artifacts::GROUPS);
        let groups: GroupsArtifact = read_json(&gpath)?;
        let ds = ctx.dataset("data")?;
        let labels = ds.labels.as_deref().ok_or_else(|| {
            StageError::Invalid("filter_conflicts needs a labelled dataset".into())
        })?;
        if labels.len() != groups.count {
            return Err(StageError::Artifact {
                path: gpath,
                message: format!(
                    "groups cover {} images, dataset has {}",
                    groups.count,
                    labels.len()
                ),
            });
        }
        let sel = select(&groups, labels, self.policy);
        write_json(&ctx.out.join(SELECTION), &sel)?;
        let mut figures = Vec::new();
        if draw_conflicts(
            &ds,
            &groups,
            &sel,
            self.figure_pairs,
            &ctx.out.join("conflicts.png"),
        )? {
            figures.push("conflicts.png".into());
        }
        let removed = sel.removed_copies + sel.removed_conflicting;
        Ok(StageReport {
            summary: format!(
                "kept {} of {} (removed {removed}: {} copies, {} in {} conflicting groups)",
                sel.kept.len(),
                groups.count,
                sel.removed_copies,
                sel.removed_conflicting,
                sel.conflicting_groups
            ),
            figures,
            ..Default::default()
        }
        .metric("kept", sel.kept.len() as f64)
        .metric("removed", removed as f64)
        .metric("conflicting_groups", sel.conflicting_groups as f64))
    }
}

/// Rows of (an image of the group's lowest label, one of its next label, amplified
/// difference), each image captioned with its name, index, label and whether `sel` kept it;
/// false when there is none.
fn draw_conflicts(
    ds: &Dataset,
    groups: &GroupsArtifact,
    sel: &SelectionArtifact,
    max: usize,
    png: &std::path::Path,
) -> Result<bool, StageError> {
    let Some(labels) = ds.labels.as_deref() else {
        return Ok(false);
    };
    let cell = |i: u32| {
        let mut lines = super::dedup::image_caption(ds, i as usize);
        let kept = sel.kept.binary_search(&i).is_ok();
        lines.push(if kept { "kept" } else { "dropped" }.to_string());
        Labelled {
            image: GridImage::new(ds.image(i as usize).to_vec(), ds.shape),
            lines,
        }
    };
    let rows: Vec<Vec<Labelled>> = groups
        .duplicate_groups
        .iter()
        .filter_map(|g| {
            let low = g.iter().map(|&i| labels[i as usize]).min()?;
            let next = g
                .iter()
                .map(|&i| labels[i as usize])
                .filter(|&l| l > low)
                .min()?;
            let a = *g.iter().find(|&&i| labels[i as usize] == low)?;
            let b = *g.iter().find(|&&i| labels[i as usize] == next)?;
            let diff = abs_difference(ds.image(a as usize), ds.image(b as usize), ds.shape);
            Some(vec![
                cell(a),
                cell(b),
                Labelled {
                    image: diff,
                    lines: vec![
                        "difference |a − b|".into(),
                        "stretched; black:".into(),
                        "identical".into(),
                    ],
                },
            ])
        })
        .take(max)
        .collect();
    if rows.is_empty() {
        return Ok(false);
    }
    let header =
        "Conflicting duplicates, one group per row: lowest label, next label, their difference";
    save_labelled_grid(png, header, &rows, 3).map_err(|e| StageError::Artifact {
        path: png.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups() -> GroupsArtifact {
        GroupsArtifact {
            algorithm: Default::default(),
            radius: 0,
            count: 7,
            group_of: vec![0, 1, 0, 2, 1, 3, 1],
            duplicate_groups: vec![vec![0, 2], vec![1, 4, 6]],
        }
    }

    #[test]
    fn drop_all_removes_conflicting_groups_and_copies() {
        let labels = [1, 0, 1, 0, 1, 0, 0];
        let s = select(&groups(), &labels, Policy::DropAll);
        assert_eq!(s.kept, vec![0, 3, 5]);
        assert_eq!(
            (
                s.removed_copies,
                s.removed_conflicting,
                s.conflicting_groups
            ),
            (1, 3, 1)
        );
    }

    #[test]
    fn majority_keeps_the_majority_keeper() {
        let labels = [1, 0, 1, 0, 1, 0, 0];
        let s = select(&groups(), &labels, Policy::Majority);
        assert_eq!(s.kept, vec![0, 1, 3, 5]);
    }

    #[test]
    fn conflicts_among_many_classes() {
        // Group [0, 2] agrees (class 2); group [1, 4, 6] holds classes 3, 3 and 7.
        let labels = [2, 3, 2, 0, 3, 5, 7];
        let s = select(&groups(), &labels, Policy::DropAll);
        assert_eq!(s.kept, vec![0, 3, 5]);
        assert_eq!(s.conflicting_groups, 1);
        let s = select(&groups(), &labels, Policy::Majority);
        assert_eq!(s.kept, vec![0, 1, 3, 5]);
        // A three-way tie has no majority.
        let s = select(&groups(), &[2, 3, 2, 0, 4, 5, 7], Policy::Majority);
        assert_eq!(s.kept, vec![0, 3, 5]);
    }
}
