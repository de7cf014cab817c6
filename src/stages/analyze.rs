//! `analyze`: what the model looks at (report §5). Class-mean images (Figure 20) and saliency
//! maps — |d output / d input| maxed over channels — for a few images per class (Figure 21).

use super::artifacts::{SplitArtifact, to_usize};
use super::evaluate::On;
use super::{ArtifactKind, Problem, Slot, Stage, StageContext, StageError, StageReport};
use crate::data::{Dataset, Shape};
use crate::figures::grid::{GridImage, abs_difference, save_grid};
use crate::ml::train::Checkpoint;
use serde::{Deserialize, Serialize};

fn d4() -> usize {
    4
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Analyze {
    /// Inference device; `--device` sets it on every stage that runs a model. The default
    /// (`cpu`) is left out of the canonical config so adding the field changed no key.
    #[serde(default, skip_serializing_if = "super::is_default_device")]
    pub device: crate::ml::backend::DeviceChoice,
    /// Images per class in the saliency figure.
    #[serde(default = "d4")]
    pub per_class: usize,
    #[serde(default)]
    pub checkpoint: Checkpoint,
    /// Split the images are drawn from (all images without a `split` input).
    #[serde(default)]
    pub on: On,
}

impl Stage for Analyze {
    const KIND: &'static str = "analyze";
    const VERSION: u32 = 1;
    const OUTPUT: ArtifactKind = ArtifactKind::Analysis;
    const USES_DEVICE: bool = true;
    const INPUTS: &'static [Slot] = &[
        super::required_slot("data", ArtifactKind::Dataset),
        super::optional_slot("model", ArtifactKind::Model).produced_by("train"),
        super::optional_slot("split", ArtifactKind::Split),
    ];

    fn check(&self) -> Vec<Problem> {
        if self.per_class == 0 || self.per_class > 32 {
            return vec![Problem::new(
                "per_class",
                "per_class must be between 1 and 32",
            )];
        }
        Vec::new()
    }

    fn run(&self, ctx: &StageContext) -> Result<StageReport, StageError> {
        let ds = ctx.dataset("data")?;
        let labels = ds
            .labels
            .as_deref()
            .ok_or_else(|| StageError::Invalid("analyze needs a labelled dataset".into()))?;
        let pool: Vec<usize> = match ctx.optional_input("split") {
            Some(dir) => {
                let s = SplitArtifact::read(dir)?;
                to_usize(match self.on {
                    On::Train => &s.train,
                    On::Val => &s.val,
                    On::Test => &s.test,
                })
            }
            None => (0..ds.len()).collect(),
        };
        let n_classes = ds.num_classes() as u8;
        let png = ctx.out.join("class_means.png");
        let means: Vec<GridImage> = (0..n_classes)
            .map(|c| class_mean(&ds, &pool, labels, c))
            .collect();
        let row = if n_classes == 2 {
            let diff = abs_difference(&means[0].pixels, &means[1].pixels, ds.shape);
            let mut row = means;
            row.push(diff);
            row
        } else {
            means
        };
        save_grid(&png, &[row], 4).map_err(|e| StageError::Artifact {
            path: png.clone(),
            message: e.to_string(),
        })?;
        let mut figures = vec!["class_means.png".to_string()];
        let mut summary = if n_classes == 2 {
            "class means (0, 1, |difference|)".to_string()
        } else {
            format!("class means of {n_classes} classes")
        };

        if let Some(model) = ctx.optional_input("model") {
            let mut picked = Vec::new();
            for c in 0..n_classes {
                picked.extend(
                    pool.iter()
                        .copied()
                        .filter(|&i| labels[i] == c)
                        .take(self.per_class),
                );
            }
            let maps =
                crate::ml::saliency::saliency(model, self.checkpoint, &ds, &picked, self.device)?;
            let rows: Vec<Vec<GridImage>> = picked
                .iter()
                .zip(&maps)
                .map(|(&i, map)| {
                    let heat = heat_map(map, ds.shape);
                    let overlay = blend(ds.image(i), ds.shape, &heat.pixels);
                    vec![
                        GridImage {
                            pixels: ds.image(i).to_vec(),
                            shape: ds.shape,
                        },
                        heat,
                        overlay,
                    ]
                })
                .collect();
            let png = ctx.out.join("saliency.png");
            save_grid(&png, &rows, 3).map_err(|e| StageError::Artifact {
                path: png.clone(),
                message: e.to_string(),
            })?;
            figures.push("saliency.png".into());
            let (h, w) = (ds.shape.height as usize, ds.shape.width as usize);
            let mut mean_map = vec![0f64; h * w];
            for m in &maps {
                let top = m.iter().cloned().fold(f32::MIN_POSITIVE, f32::max);
                for (acc, v) in mean_map.iter_mut().zip(m) {
                    *acc += (*v / top) as f64 / maps.len() as f64;
                }
            }
            ctx.write_json(
                "saliency_mean.json",
                &serde_json::json!({"height": h, "width": w, "mean": mean_map}),
            )?;
            summary.push_str(&format!(
                "; saliency maps for {} images (image, map, overlay)",
                picked.len()
            ));
        }
        Ok(StageReport {
            summary,
            figures,
            ..Default::default()
        })
    }
}

fn class_mean(ds: &Dataset, pool: &[usize], labels: &[u8], class: u8) -> GridImage {
    let n = ds.shape.image_len();
    let mut sum = vec![0u64; n];
    let mut count = 0u64;
    for &i in pool.iter().filter(|&&i| labels[i] == class) {
        for (s, &p) in sum.iter_mut().zip(ds.image(i)) {
            *s += p as u64;
        }
        count += 1;
    }
    GridImage {
        pixels: sum.iter().map(|&s| (s / count.max(1)) as u8).collect(),
        shape: ds.shape,
    }
}

/// A saliency map normalised to its maximum, through a black → red → yellow → white ramp.
fn heat_map(map: &[f32], shape: Shape) -> GridImage {
    let top = map.iter().cloned().fold(f32::MIN_POSITIVE, f32::max);
    let pixels = map
        .iter()
        .flat_map(|&v| {
            let t = (v / top).clamp(0.0, 1.0) * 3.0;
            let ch = |x: f32| (x.clamp(0.0, 1.0) * 255.0) as u8;
            [ch(t), ch(t - 1.0), ch(t - 2.0)]
        })
        .collect();
    GridImage {
        pixels,
        shape: Shape::new(shape.height, shape.width, 3),
    }
}

fn blend(image: &[u8], shape: Shape, heat: &[u8]) -> GridImage {
    let c = shape.channels as usize;
    let pixels = heat
        .chunks(3)
        .enumerate()
        .flat_map(|(p, h)| {
            (0..3).map(move |k| {
                let base = image[p * c + if c == 3 { k } else { 0 }] as f32;
                (0.5 * base + 0.5 * h[k] as f32) as u8
            })
        })
        .collect();
    GridImage {
        pixels,
        shape: Shape::new(shape.height, shape.width, 3),
    }
}
