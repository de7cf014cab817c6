//! `split`: seeded, stratified, group-aware train/validation/test split (report: 59.5/10.5/30).

use super::artifacts::{
    GROUPS, GroupsArtifact, SELECTION, SPLIT, SelectionArtifact, SplitArtifact, SplitBalance,
    read_json, write_json,
};
use super::{ArtifactKind, Problem, Slot, Stage, StageContext, StageError, StageReport};
use crate::data::split::{SplitFractions, split};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

fn d_train() -> f64 {
    0.595
}
fn d_val() -> f64 {
    0.105
}
fn d_test() -> f64 {
    0.30
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SplitStage {
    #[serde(default = "d_train")]
    pub train: f64,
    #[serde(default = "d_val")]
    pub val: f64,
    #[serde(default = "d_test")]
    pub test: f64,
    #[serde(default)]
    pub seed: u64,
}

impl Stage for SplitStage {
    const KIND: &'static str = "split";
    const VERSION: u32 = 1;
    const OUTPUT: ArtifactKind = ArtifactKind::Split;
    const INPUTS: &'static [Slot] = &[
        super::required_slot("data", ArtifactKind::Dataset),
        super::optional_slot("selection", ArtifactKind::Selection),
        super::optional_slot("groups", ArtifactKind::Groups),
    ];

    fn check(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        for (name, v) in [
            ("train", self.train),
            ("val", self.val),
            ("test", self.test),
        ] {
            if !(0.0..=1.0).contains(&v) {
                p.push(Problem::new(
                    name,
                    format!("fraction must be within [0, 1], got {v}"),
                ));
            }
        }
        let sum = self.train + self.val + self.test;
        if (sum - 1.0).abs() > 1e-6 {
            p.push(Problem::new(
                "test",
                format!(
                    "train + val + test must sum to 1, got {} + {} + {} = {sum}",
                    self.train, self.val, self.test
                ),
            ));
        }
        p
    }

    fn run(&self, ctx: &StageContext) -> Result<StageReport, StageError> {
        let ds = ctx.dataset("data")?;
        let labels = ds
            .labels
            .as_deref()
            .ok_or_else(|| StageError::Invalid("split needs a labelled dataset".into()))?;
        let items: Vec<usize> = match ctx.optional_input("selection") {
            Some(dir) => {
                let sel: SelectionArtifact = read_json(&dir.join(SELECTION))?;
                sel.kept.iter().map(|&i| i as usize).collect()
            }
            None => (0..ds.len()).collect(),
        };
        let group: Vec<u32> = match ctx.optional_input("groups") {
            Some(dir) => {
                let g: GroupsArtifact = read_json(&dir.join(GROUPS))?;
                items.iter().map(|&i| g.group_of[i]).collect()
            }
            None => items.iter().map(|&i| i as u32).collect(),
        };
        let item_labels: Vec<u8> = items.iter().map(|&i| labels[i]).collect();
        let fractions = SplitFractions {
            train: self.train,
            val: self.val,
            test: self.test,
        };
        let s = split(&items, &item_labels, &group, fractions, self.seed)
            .map_err(|e| StageError::Invalid(e.to_string()))?;
        let to32 = |v: &[usize]| v.iter().map(|&i| i as u32).collect::<Vec<u32>>();
        let mut balance = BTreeMap::new();
        for (name, part) in [("train", &s.train), ("val", &s.val), ("test", &s.test)] {
            let positives = part.iter().filter(|&&i| labels[i] == 1).count();
            let class_counts = (ds.num_classes() > 2).then(|| {
                let mut c = vec![0usize; ds.num_classes()];
                for &i in part {
                    c[labels[i] as usize] += 1;
                }
                c
            });
            balance.insert(
                name.to_string(),
                SplitBalance {
                    count: part.len(),
                    positives,
                    positive_fraction: positives as f64 / part.len().max(1) as f64,
                    class_counts,
                },
            );
        }
        let artifact = SplitArtifact {
            train: to32(&s.train),
            val: to32(&s.val),
            test: to32(&s.test),
            balance,
        };
        write_json(&ctx.out.join(SPLIT), &artifact)?;
        let b = &artifact.balance;
        let summary = if ds.num_classes() > 2 {
            format!(
                "train {} / val {} / test {} (stratified over {} classes)",
                b["train"].count,
                b["val"].count,
                b["test"].count,
                ds.num_classes()
            )
        } else {
            format!(
                "train {} / val {} / test {} (positives {:.1}% / {:.1}% / {:.1}%)",
                b["train"].count,
                b["val"].count,
                b["test"].count,
                100.0 * b["train"].positive_fraction,
                100.0 * b["val"].positive_fraction,
                100.0 * b["test"].positive_fraction
            )
        };
        Ok(StageReport {
            summary,
            ..Default::default()
        }
        .metric("train", b["train"].count as f64)
        .metric("val", b["val"].count as f64)
        .metric("test", b["test"].count as f64))
    }
}
