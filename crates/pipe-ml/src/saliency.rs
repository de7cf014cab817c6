//! Saliency maps (report §5, Figure 21): Simonyan, Vedaldi & Zisserman (2013), "Deep Inside
//! Convolutional Networks". The map of an image is |∂ logit / ∂ input| maxed over channels,
//! where the logit is the model's pre-sigmoid output and the input is the preprocessed image
//! the network sees (the same preprocessing as in training, see [`Preprocess`]).
//!
//! The model runs fully frozen on an autodiff device: every parameter is constant and batch
//! norms use their moving statistics (inference mode), so images of a batch do not interact
//! and the gradient of the batch's summed logits is each image's own gradient.

use crate::backend::{DeviceChoice, MlError};
use crate::train::{Checkpoint, Net, Preprocess, open_model};
use burn::prelude::*;
use pipe_data::Dataset;
use std::path::Path;

/// Images per backward pass (ResNet-50 keeps every activation of the batch for the backward).
pub const SALIENCY_BATCH: usize = 64;

/// Saliency maps of the images at `indices` (input order) for the `checkpoint` weights of the
/// model directory `model_dir` (written by [`crate::train::train`]): one row-major
/// `height * width` map per image, |∂ logit / ∂ x| maxed over the input channels.
///
/// Model directories without a recorded preprocessing are assumed to rescale by 1/255 (the
/// report's setting).
pub fn saliency(
    model_dir: &Path,
    checkpoint: Checkpoint,
    data: &Dataset,
    indices: &[usize],
    device: DeviceChoice,
) -> Result<Vec<Vec<f32>>, MlError> {
    let (mf, model, base) = open_model(model_dir, checkpoint, data, indices, device)?;
    let prep = mf.preprocess.unwrap_or(Preprocess::Rescale {
        factor: crate::defaults::RESCALE,
    });
    let ad = base.autodiff();
    let model = model.into_frozen_on(&ad);
    let (c, h, w) = prep.input_dims(data.shape);
    let mut maps = Vec::with_capacity(indices.len());
    for chunk in indices.chunks(SALIENCY_BATCH) {
        let n = chunk.len();
        let x = prep.fill(data, chunk, None, 0);
        let x = Tensor::<4>::from_data(TensorData::new(x, [n, c, h, w]), &ad).require_grad();
        let logits = model.forward(x.clone(), Vec::new());
        let units = logits.dims()[1];
        let grads = if units == 1 {
            logits.sum().backward()
        } else {
            // N classes: the gradient of each image's predicted class's logit.
            let v = logits
                .clone()
                .into_data()
                .try_into_vec::<f32>()
                .map_err(|e| MlError::Device(format!("{e:?}")))?;
            let mut mask = vec![0f32; v.len()];
            for (i, p) in crate::multiclass::argmax_rows(&v, units).iter().enumerate() {
                mask[i * units + *p as usize] = 1.0;
            }
            let mask = Tensor::<2>::from_data(TensorData::new(mask, [n, units]), &ad);
            (logits * mask).sum().backward()
        };
        let g = x
            .grad(&grads)
            .ok_or_else(|| MlError::Device("no gradient reached the input".into()))?;
        let m: Tensor<4> = g.abs().max_dim(1);
        let v = m
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| MlError::Device(format!("{e:?}")))?;
        maps.extend(v.chunks_exact(h * w).map(<[f32]>::to_vec));
    }
    Ok(maps)
}

impl Net {
    /// The network on `device` with every parameter frozen (constant, batch norms in inference
    /// mode): for gradients with respect to the input only.
    fn into_frozen_on(self, device: &Device) -> Net {
        match self {
            Net::Cnn(m) => Net::Cnn(m.to_device(device).freeze()),
            // no folded prefix: the gradient must reach the input
            Net::ResNet(m, _) => Net::ResNet(m.to_device(device).freeze(), None),
            Net::Basic(m) => Net::Basic(m.to_device(device).freeze()),
            Net::Declared(m) => Net::Declared(m.to_device(device).freeze()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{MIN_INPUT_SIDE, ModelKind, ModelSpec};
    use crate::train::{Hooks, TrainConfig, TrainInputs, train};
    use pipe_data::Shape;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    const SIDE: u32 = MIN_INPUT_SIDE;
    /// Top-left corner of the 2x2 patch that decides the label.
    const PATCH: (usize, usize) = (7, 13);

    /// Uniform mid-grey noise (64..192) everywhere except a 2x2 patch: white for class 1, black for class 0.
    fn patch_dataset(n: usize, seed: u64) -> Dataset {
        let shape = Shape::new(SIDE, SIDE, 3);
        let side = SIDE as usize;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut pixels = Vec::with_capacity(n * shape.image_len());
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let label = (i % 2) as u8;
            for y in 0..side {
                for x in 0..side {
                    let in_patch =
                        (PATCH.0..PATCH.0 + 2).contains(&y) && (PATCH.1..PATCH.1 + 2).contains(&x);
                    for _ in 0..3 {
                        let v: u8 = rng.random_range(64..192);
                        pixels.push(match (in_patch, label) {
                            (true, 1) => 255,
                            (true, _) => 0,
                            _ => v,
                        });
                    }
                }
            }
            labels.push(label);
        }
        let names = (0..n).map(|i| format!("#{i}")).collect();
        Dataset::new(shape, pixels, Some(labels), names)
    }

    #[test]
    fn saliency_of_a_model_that_reads_one_patch_lights_that_patch() {
        let ds = patch_dataset(240, 3);
        let mut spec = ModelSpec::new(ModelKind::B1);
        spec.input = ds.shape;
        let mut cfg = TrainConfig::new(spec, 1e-3, 12);
        cfg.batch_size = 32;
        cfg.seed = 5;
        cfg.test_every = 0;
        let train_idx: Vec<usize> = (0..160).collect();
        let val: Vec<usize> = (160..200).collect();
        let inputs = TrainInputs {
            data: &ds,
            train: &train_idx,
            val: &val,
            test: &[],
            augment: None,
            rescale: 1.0 / 255.0,
        };
        let out = tempfile::tempdir().unwrap();
        let resume = tempfile::tempdir().unwrap();
        let pb = indicatif::ProgressBar::hidden();
        let summary = train(&cfg, &inputs, out.path(), resume.path(), &Hooks::bar(&pb))
            .unwrap()
            .summary;
        assert!(summary.best_val_bacc > 0.9, "{summary:?}");

        // Class-1 images: their evidence is the white patch. (A class-0 image is recognised by
        // the absence of that feature: the detecting ReLUs are off and pass no gradient.)
        let probe: Vec<usize> = (200..240).filter(|i| i % 2 == 1).collect();
        let maps = saliency(out.path(), Checkpoint::Last, &ds, &probe, DeviceChoice::Cpu).unwrap();
        assert_eq!(maps.len(), probe.len());
        let side = SIDE as usize;
        let mut hits = 0;
        for m in &maps {
            assert_eq!(m.len(), side * side);
            assert!(m.iter().all(|v| v.is_finite() && *v >= 0.0));
            let arg = (0..m.len())
                .max_by(|&a, &b| m[a].total_cmp(&m[b]))
                .unwrap_or(0);
            let (y, x) = (arg / side, arg % side);
            // On the patch or next to it.
            if (PATCH.0.saturating_sub(1)..=PATCH.0 + 2).contains(&y)
                && (PATCH.1.saturating_sub(1)..=PATCH.1 + 2).contains(&x)
            {
                hits += 1;
            }
        }
        assert!(
            hits * 10 >= maps.len() * 8,
            "{hits}/{} maps peak at the patch",
            maps.len()
        );
        // Same images in another order: the same maps.
        let again = saliency(
            out.path(),
            Checkpoint::Last,
            &ds,
            &[probe[1], probe[0]],
            DeviceChoice::Cpu,
        )
        .unwrap();
        // (Up to rounding: the backend may sum in another order for another batch size.)
        let close = |a: &[f32], b: &[f32]| {
            let scale = b.iter().fold(0.0f32, |m, v| m.max(*v));
            a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-4 * scale)
        };
        assert!(close(&again[0], &maps[1]) && close(&again[1], &maps[0]));
    }
}
