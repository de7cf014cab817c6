//! The frozen layers' output per image, kept across epochs.
//!
//! A ResNet whose stem and first blocks are frozen (TL1: the whole backbone; TL2: the stem and
//! 14 blocks; `resnet50` with `freeze`) runs them as a folded prefix without autodiff
//! ([`crate::resnet::FoldedPrefix`]). Without augmentation an image's prefix output is a fixed
//! function of the frozen weights and the image, so it is computed once, the first time the
//! image passes (epoch 1's training batches, the first validation), and every later pass starts
//! after it: TL1's epochs 2+ run the head only. The result is the same bits as recomputing it
//! (an image's prefix output does not depend on the batch it runs in:
//! `resnet::fold::tests::the_prefix_output_of_an_image_does_not_depend_on_its_batch`), so the
//! trained model and the cache key do not change. That holds on the CPU backend; on a GPU,
//! where cubecl's autotuning may pick other kernels for other batch shapes, a kept output may
//! differ from a recomputed one in its last bits (GPU results are not promised bit for bit).
//!
//! It applies when the training has no `augment` input (augmented images differ each epoch)
//! and the outputs of every image the training passes (train, validation, and test when it is
//! scored) take at most half the memory available when the training starts (at 56x56, 32 KiB
//! per image for TL1 and for TL2, whose prefix ends after `res5a`); otherwise the prefix runs
//! every time, as before.

use crate::backend::MlError;
use burn::prelude::*;
use indicatif::HumanBytes;
use pipe_data::Dataset;
use std::sync::Mutex;

use super::*;

#[cfg(test)]
thread_local! {
    /// Tests turn the store off on their thread to compare with the pass that recomputes.
    pub(super) static OFF: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The kept prefix outputs, by dataset index.
pub(super) struct FrozenOutputs {
    /// Blocks of the prefix whose output is kept.
    blocks: usize,
    /// Shape of one image's output: channels, height, width.
    chw: [usize; 3],
    rows: Mutex<Vec<Option<Box<[f32]>>>>,
}

impl FrozenOutputs {
    /// The store for a training of `model` on `inputs` when it applies (see the module
    /// documentation), else `None`; says which in the log.
    pub(super) fn plan(
        model: &Net,
        inputs: &TrainInputs,
        augmented: bool,
        scores_test: bool,
        image: Tensor<4>,
    ) -> Option<Self> {
        let blocks = model.frozen_prefix_blocks()?;
        #[cfg(test)]
        if OFF.get() {
            return None;
        }
        if augmented {
            tracing::info!("frozen layers run every epoch: the training images are augmented");
            return None;
        }
        let probe = model.frozen_output(image)?;
        let [_, c, h, w] = probe.dims();
        let images =
            inputs.train.len() + inputs.val.len() + if scores_test { inputs.test.len() } else { 0 };
        let needed = (images * c * h * w * 4) as u64;
        let available = memory::available_bytes();
        if needed > available / 2 {
            tracing::info!(
                "frozen layers run every epoch: keeping their outputs would take {} of {} available",
                HumanBytes(needed),
                HumanBytes(available)
            );
            return None;
        }
        tracing::info!(
            blocks,
            "frozen layers' outputs kept across epochs ({} for {images} images)",
            HumanBytes(needed)
        );
        Some(Self {
            blocks,
            chw: [c, h, w],
            rows: Mutex::new(vec![None; inputs.data.len()]),
        })
    }

    fn per_image(&self) -> usize {
        self.chw.iter().product()
    }

    /// The kept outputs of `indices` as one `[n, c, h, w]` tensor on `device`, or `None` when
    /// one of them is not kept yet.
    fn gather(&self, indices: &[usize], device: &Device) -> Option<Tensor<4>> {
        let rows = self.rows.lock().expect("no panic while holding the rows");
        let mut v = Vec::with_capacity(indices.len() * self.per_image());
        for &i in indices {
            v.extend_from_slice(rows[i].as_deref()?);
        }
        let [c, h, w] = self.chw;
        Some(Tensor::from_data(
            TensorData::new(v, [indices.len(), c, h, w]),
            device,
        ))
    }

    /// Keeps the prefix outputs `out` (`[n, c, h, w]`) of the images `indices`.
    fn keep(&self, indices: &[usize], out: Tensor<4>) -> Result<(), MlError> {
        let data = out.into_data();
        let values = data.as_slice::<f32>().map_err(device_err)?;
        let mut rows = self.rows.lock().expect("no panic while holding the rows");
        for (&i, row) in indices.iter().zip(values.chunks_exact(self.per_image())) {
            rows[i] = Some(row.into());
        }
        Ok(())
    }

    /// The prefix outputs of `indices`: kept ones from the store, else `prefix_of(x())` kept
    /// for next time.
    fn outputs(
        &self,
        model: &Net,
        indices: &[usize],
        x: impl FnOnce() -> Tensor<4>,
        device: &Device,
    ) -> Result<Tensor<4>, MlError> {
        if let Some(kept) = self.gather(indices, device) {
            return Ok(kept);
        }
        let out = model
            .frozen_output(x())
            .expect("the store is planned for a network with a frozen prefix");
        self.keep(indices, out.clone())?;
        Ok(out)
    }

    /// A training batch's logits through `model` (on autodiff past the prefix); `x` is the
    /// batch's images, `indices` their dataset indices. `inner` is the device without
    /// autodiff.
    pub(super) fn train_logits(
        &self,
        model: &Net,
        x: Tensor<4>,
        indices: &[usize],
        inner: &Device,
    ) -> Result<Tensor<2>, MlError> {
        let out = self.outputs(model, indices, || x, inner)?;
        Ok(model
            .forward_after(self.blocks, out, true)
            .expect("the store is planned for a network with a frozen prefix"))
    }

    /// The logits of the images `indices` through the inference copy `eval` of `model`, in
    /// batches of `batch`, prefix outputs from (and into) the store.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn infer_logits(
        &self,
        model: &Net,
        eval: &Net,
        ds: &Dataset,
        indices: &[usize],
        prep: Preprocess,
        device: &Device,
        batch: usize,
    ) -> Result<Vec<f32>, MlError> {
        let (c, h, w) = prep.input_dims(ds.shape);
        let mut logits = Vec::with_capacity(indices.len());
        for chunk in indices.chunks(batch) {
            let x = || {
                let v = prep.fill(ds, chunk, None, 0);
                Tensor::from_data(TensorData::new(v, [chunk.len(), c, h, w]), device)
            };
            let out = self.outputs(model, chunk, x, device)?;
            let y = eval
                .forward_after(self.blocks, out, false)
                .expect("an inference copy of a ResNet has its backbone folded");
            let data = y.into_data();
            logits.extend_from_slice(data.as_slice::<f32>().map_err(device_err)?);
        }
        Ok(logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{ModelKind, ModelSpec};
    use pipe_data::Shape;

    fn dataset(n: usize) -> Dataset {
        let shape = Shape::new(32, 32, 3);
        let pixels = (0..n * shape.image_len())
            .map(|i| (i % 251) as u8)
            .collect();
        let labels = (0..n).map(|i| (i % 2) as u8).collect();
        Dataset::new(
            shape,
            pixels,
            Some(labels),
            (0..n).map(|i| i.to_string()).collect(),
        )
    }

    fn net(kind: ModelKind, device: &Device) -> Net {
        let mut spec = ModelSpec::new(kind);
        spec.input = Shape::new(32, 32, 3);
        Net::init(&spec, 3, device).unwrap()
    }

    #[test]
    fn kept_only_for_a_frozen_prefix_without_augmentation() {
        let base = Device::default();
        let ad = base.clone().autodiff();
        let ds = dataset(6);
        let (train, val) = ([0, 1, 2, 3], [4, 5]);
        let inputs = TrainInputs {
            data: &ds,
            train: &train,
            val: &val,
            test: &[],
            augment: None,
            rescale: 1.0,
        };
        let image = || Tensor::zeros([1, 3, 32, 32], &base);
        let plan = |kind, augmented| {
            FrozenOutputs::plan(&net(kind, &ad), &inputs, augmented, false, image())
        };
        let tl1 = plan(ModelKind::Tl1, false).expect("TL1 without augmentation keeps them");
        // 32x32 input: stage 5's maps are 1x1
        assert_eq!((tl1.blocks, tl1.chw), (16, [2048, 1, 1]));
        let tl2 =
            plan(ModelKind::Tl2, false).expect("TL2 keeps its 14 blocks' outputs (res5a included)");
        assert_eq!((tl2.blocks, tl2.chw), (14, [2048, 1, 1]));
        assert!(
            plan(ModelKind::Tl1, true).is_none(),
            "augmented images change"
        );
        assert!(plan(ModelKind::Tl3, false).is_none(), "nothing frozen");
        assert!(plan(ModelKind::B1, false).is_none(), "not a ResNet");
    }

    #[test]
    fn outputs_are_computed_once_and_given_back_as_kept() {
        let base = Device::default();
        base.seed(2);
        let model = net(ModelKind::Tl1, &base.clone().autodiff());
        let ds = dataset(3);
        let inputs = TrainInputs {
            data: &ds,
            train: &[0, 1],
            val: &[2],
            test: &[],
            augment: None,
            rescale: 1.0,
        };
        let image = Tensor::zeros([1, 3, 32, 32], &base);
        let store = FrozenOutputs::plan(&model, &inputs, false, false, image).unwrap();
        let x = Tensor::<4>::random(
            [2, 3, 32, 32],
            burn::tensor::Distribution::Uniform(-100.0, 100.0),
            &base,
        );
        assert!(store.gather(&[0, 1], &base).is_none());
        let first = store.outputs(&model, &[0, 1], || x.clone(), &base).unwrap();
        let again = store
            .outputs(
                &model,
                &[1, 0],
                || panic!("kept outputs are not recomputed"),
                &base,
            )
            .unwrap();
        let rows = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().unwrap();
        let (first, again) = (rows(first), rows(again));
        let n = first.len() / 2;
        assert_eq!(again[..n], first[n..]);
        assert_eq!(again[n..], first[..n]);
        assert!(store.gather(&[2], &base).is_none(), "image 2 never passed");
    }
}
