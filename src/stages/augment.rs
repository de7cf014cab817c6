//! `augment`: the on-the-fly augmentation spec (Keras ImageDataGenerator semantics), applied by
//! `train` per (seed, epoch, image); this stage validates it and draws a preview grid (report
//! Figure 8).

use super::{ArtifactKind, Problem, Slot, Stage, StageContext, StageError, StageReport};
use crate::data::augment::{self, AugmentSpec};
use crate::figures::grid::{GridImage, save_grid};
use serde::{Deserialize, Serialize};

pub const SPEC_FILE: &str = "augment.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(transparent)]
pub struct Augment(pub AugmentSpec);

impl Augment {
    pub fn read(dir: &std::path::Path) -> Result<AugmentSpec, StageError> {
        super::artifacts::read_json(&dir.join(SPEC_FILE))
    }
}

impl Stage for Augment {
    const KIND: &'static str = "augment";
    const VERSION: u32 = 1;
    const OUTPUT: ArtifactKind = ArtifactKind::Augment;
    const INPUTS: &'static [Slot] = &[super::optional_slot("data", ArtifactKind::Dataset)];

    fn check(&self) -> Vec<Problem> {
        self.0
            .validate()
            .into_iter()
            .map(|m| Problem::new("", m))
            .collect()
    }

    fn run(&self, ctx: &StageContext) -> Result<StageReport, StageError> {
        ctx.write_json(SPEC_FILE, &self.0)?;
        let mut figures = Vec::new();
        if ctx.optional_input("data").is_some() {
            let ds = ctx.dataset("data")?;
            let shape = ds.shape;
            let mut buf = vec![0f32; shape.image_len()];
            let rows: Vec<Vec<GridImage>> = (0..ds.len().min(6))
                .map(|i| {
                    let mut row = vec![GridImage {
                        pixels: ds.image(i).to_vec(),
                        shape,
                    }];
                    for epoch in 0..7 {
                        let t = augment::draw(&self.0, epoch, i as u64);
                        augment::render(&self.0, &t, ds.image(i), shape, &mut buf);
                        row.push(GridImage {
                            pixels: chw_to_hwc(&buf, shape, self.0.rescale),
                            shape,
                        });
                    }
                    row
                })
                .collect();
            if !rows.is_empty() {
                let png = ctx.out.join("preview.png");
                save_grid(&png, &rows, 2).map_err(|e| StageError::Artifact {
                    path: png.clone(),
                    message: e.to_string(),
                })?;
                figures.push("preview.png".into());
            }
        }
        let s = &self.0;
        Ok(StageReport {
            summary: format!(
                "rotation ±{}°, zoom ±{}, flip {}, fill {:?}",
                s.rotation_range, s.zoom_range, s.horizontal_flip, s.fill_mode
            ),
            figures,
            ..Default::default()
        })
    }
}

/// Back from the model's CHW floats to displayable HWC bytes.
fn chw_to_hwc(chw: &[f32], shape: crate::data::Shape, rescale: f32) -> Vec<u8> {
    let (h, w, c) = (
        shape.height as usize,
        shape.width as usize,
        shape.channels as usize,
    );
    let scale = if rescale != 0.0 { 1.0 / rescale } else { 1.0 };
    let mut out = vec![0u8; h * w * c];
    for ch in 0..c {
        for p in 0..h * w {
            out[p * c + ch] = (chw[ch * h * w + p] * scale).round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}
