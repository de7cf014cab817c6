//! [`Net`]: one type for both model families (B1–B3 CNNs and ResNet-50 TL models), so the
//! loop, checkpoints and inference never match on the family.

use crate::backend::MlError;
use crate::declared::net::DeclaredNet;
use crate::models::{Cnn, DropoutMasks, ModelKind, ModelSpec};
use crate::resnet::basic::{self, BasicResNet};
use crate::resnet::{self, FoldedPrefix, ResNet50Classifier};
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::store::{ModuleRecord, ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Bytes, Gradients};
use std::path::Path;

use super::*;

/// The network of either family. Records and SafeTensors exports are those of the inner
/// module, so B1–B3 files are unchanged by the TL support.
#[derive(Debug)]
#[allow(clippy::enum_variant_names)] // ResNet is the family's name, not the enum's suffix
pub(crate) enum Net {
    Cnn(Cnn),
    /// With the folded frozen prefix it runs through ([`resnet::FoldedPrefix`]): in training
    /// the layers TL1/TL2 freeze, in an [`Net::inference`] copy the whole backbone.
    ResNet(ResNet50Classifier, Option<Box<FoldedPrefix>>),
    /// resnet18 / resnet34.
    Basic(BasicResNet),
    Declared(DeclaredNet),
}

pub(super) fn resnet_err(e: resnet::ResNetError) -> MlError {
    match e {
        resnet::ResNetError::Shape { .. } | resnet::ResNetError::Buffer { .. } => {
            MlError::InvalidConfig(vec![e.to_string()])
        }
        resnet::ResNetError::WeightsNotFound { ref path }
        | resnet::ResNetError::UnsupportedFormat { ref path }
        | resnet::ResNetError::Load { ref path, .. }
        | resnet::ResNetError::NoMatch { ref path } => MlError::Record {
            path: path.clone(),
            message: e.to_string(),
        },
    }
}

impl Net {
    /// A freshly initialised network for `spec` (weights from `seed`; TL: then the pretrained
    /// file, then freezing). The caller must have validated `spec`.
    pub(crate) fn init(spec: &ModelSpec, seed: u64, device: &Device) -> Result<Self, MlError> {
        if let Some(b) = spec.basic() {
            return Ok(Net::Basic(
                basic::build_seeded(&b, seed, device).map_err(resnet_err)?,
            ));
        }
        match spec.resnet() {
            Some(rs) => Ok(Net::resnet(
                resnet::build_seeded(&rs, seed, device).map_err(resnet_err)?,
                rs.first_trainable(),
                device,
            )),
            None if spec.kind == ModelKind::Declared => {
                Ok(Net::Declared(DeclaredNet::new(spec, Some(seed), device)))
            }
            None => Ok(Net::Cnn(Cnn::new(spec, Some(seed), device))),
        }
    }

    /// The network of `spec` with the weights of the record at `path`.
    pub(crate) fn load(spec: &ModelSpec, path: &Path, device: &Device) -> Result<Self, MlError> {
        let record = ModuleRecord::load(path).map_err(record_err(path))?;
        Self::with_record(spec, record, path, device)
    }

    /// The network of `spec` with the weights of a record's bytes, read from `path`.
    pub(super) fn from_record_bytes(
        spec: &ModelSpec,
        bytes: Vec<u8>,
        path: &Path,
        device: &Device,
    ) -> Result<Self, MlError> {
        let record =
            ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(record_err(path))?;
        Self::with_record(spec, record, path, device)
    }

    fn with_record(
        spec: &ModelSpec,
        record: ModuleRecord,
        path: &Path,
        device: &Device,
    ) -> Result<Self, MlError> {
        if let Some(b) = spec.basic() {
            return Ok(Net::Basic(
                basic::skeleton(&b, device)
                    .map_err(resnet_err)?
                    .try_load_record(record)
                    .map_err(record_err(path))?,
            ));
        }
        match spec.resnet() {
            Some(rs) => Ok(Net::resnet(
                resnet::skeleton(&rs, device)
                    .map_err(resnet_err)?
                    .try_load_record(record)
                    .map_err(record_err(path))?,
                rs.first_trainable(),
                device,
            )),
            None if spec.kind == ModelKind::Declared => Ok(Net::Declared(
                DeclaredNet::new(spec, None, device)
                    .try_load_record(record)
                    .map_err(record_err(path))?,
            )),
            None => Ok(Net::Cnn(
                Cnn::new(spec, None, device)
                    .try_load_record(record)
                    .map_err(record_err(path))?,
            )),
        }
    }

    /// Training forward pass → logits, with one dropout mask per dropout layer of
    /// [`crate::models::dropout_layers`] (`[N, values per image]`, none for the TL models).
    pub(crate) fn forward(&self, x: Tensor<4>, masks: Vec<Tensor<2>>) -> Tensor<2> {
        match self {
            Net::Cnn(m) => {
                let mut it = masks.into_iter();
                let masks = match (it.next(), it.next()) {
                    (Some(after_fc1), Some(after_fc2)) => Some(DropoutMasks {
                        after_fc1,
                        after_fc2,
                    }),
                    _ => None,
                };
                m.forward(x, masks)
            }
            Net::ResNet(m, Some(prefix)) => m.forward_folded(prefix, x),
            Net::ResNet(m, None) => m.forward(x),
            Net::Basic(m) => m.forward(x),
            Net::Declared(m) => m.forward(x, masks),
        }
    }

    /// Inference forward pass (on a [`Net::valid`] copy) → logits `[N, 1]`.
    pub(crate) fn infer(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Net::Cnn(m) => m.infer(x),
            Net::ResNet(m, Some(prefix)) => m.forward_folded(prefix, x),
            Net::ResNet(m, None) => m.forward(x),
            Net::Basic(m) => m.forward(x),
            Net::Declared(m) => m.infer(x),
        }
    }

    /// Inference up to the last hidden layer → the activations the output layer reads (`[N, 512]`
    /// for the named models; see `stack`).
    pub(crate) fn embed(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Net::Cnn(m) => m.embed(x),
            Net::ResNet(m, Some(prefix)) => m.embed_folded(prefix, x),
            Net::ResNet(m, None) => m.embed(x),
            Net::Basic(m) => m.embed(x),
            Net::Declared(m) => m.embed(x),
        }
    }

    /// The number of blocks of the frozen prefix a training ResNet runs without autodiff.
    pub(super) fn frozen_prefix_blocks(&self) -> Option<usize> {
        match self {
            Net::ResNet(_, Some(prefix)) => Some(prefix.blocks()),
            _ => None,
        }
    }

    /// The frozen prefix's output for `x` (no autodiff), where a training ResNet has one.
    pub(super) fn frozen_output(&self, x: Tensor<4>) -> Option<Tensor<4>> {
        match self {
            Net::ResNet(_, Some(prefix)) => Some(prefix.forward(x)),
            _ => None,
        }
    }

    /// The logits from `x`, the output of the first `done` blocks of a ResNet that runs a
    /// folded prefix at least that long (a training network's [`Net::frozen_output`], or any
    /// [`Net::inference`] copy); autodiff from the first trainable layer when `autodiff`.
    /// `None` for any other network.
    pub(super) fn forward_after(
        &self,
        done: usize,
        x: Tensor<4>,
        autodiff: bool,
    ) -> Option<Tensor<2>> {
        match self {
            Net::ResNet(m, Some(prefix)) if prefix.blocks() >= done => {
                Some(m.forward_after(prefix, done, x, autodiff))
            }
            _ => None,
        }
    }

    /// The inference copy (no autodiff).
    pub(crate) fn valid(&self) -> Self {
        match self {
            Net::Cnn(m) => Net::Cnn(m.valid()),
            Net::ResNet(m, _) => Net::ResNet(m.valid(), None),
            Net::Basic(m) => Net::Basic(m.valid()),
            Net::Declared(m) => Net::Declared(m.valid()),
        }
    }

    /// The inference copy for running batches through: [`Net::valid`], and for a ResNet its
    /// whole backbone with the batch norms folded into the convolutions (`fold_bn`: the same
    /// values up to float rounding, one pass over memory fewer per convolution).
    pub(crate) fn inference(&self) -> Self {
        match self.valid() {
            Net::ResNet(m, _) => {
                let folded = Box::new(m.fold_bn());
                Net::ResNet(m, Some(folded))
            }
            other => other,
        }
    }

    /// A ResNet that trains (`device` has autodiff) runs the stem and the blocks frozen before
    /// `first_trainable` as a folded prefix without autodiff (see [`resnet::FoldedPrefix`]).
    fn resnet(m: ResNet50Classifier, first_trainable: &str, device: &Device) -> Self {
        let prefix = resnet::frozen_blocks(first_trainable)
            .filter(|_| device.is_autodiff())
            .map(|blocks| Box::new(m.fold_prefix(blocks)));
        Net::ResNet(m, prefix)
    }

    /// One optimiser step from the gradients of a backward pass.
    pub(super) fn step(self, optim: &mut ModuleOptimizer, lr: f64, grads: Gradients) -> Self {
        match self {
            Net::Cnn(m) => {
                let g = GradientsParams::from_grads(grads, &m);
                Net::Cnn(optim.step(lr, m, g))
            }
            Net::ResNet(m, prefix) => {
                // the prefix's layers are frozen: the step leaves them as they are
                let g = GradientsParams::from_grads(grads, &m);
                Net::ResNet(optim.step(lr, m, g), prefix)
            }
            Net::Basic(m) => {
                let g = GradientsParams::from_grads(grads, &m);
                Net::Basic(optim.step(lr, m, g))
            }
            Net::Declared(m) => {
                let g = GradientsParams::from_grads(grads, &m);
                Net::Declared(optim.step(lr, m, g))
            }
        }
    }

    /// Saves the weights' burnpack record at `path` (temp file + rename) and returns the
    /// digest of the bytes written. Every failure is internal (exit 1): the record is encoded
    /// in memory and written with std, so a full disk stays an I/O error.
    pub(super) fn save_record(&self, path: &Path) -> Result<String, MlError> {
        let bytes = match self.valid() {
            Net::Cnn(m) => m.into_record().into_bytes(),
            Net::ResNet(m, _) => m.into_record().into_bytes(),
            Net::Basic(m) => m.into_record().into_bytes(),
            Net::Declared(m) => m.into_record().into_bytes(),
        }
        .map_err(encode_err(path))?;
        write_record(path, &bytes)
    }

    /// Exports the weights as SafeTensors at `path`, encoded in memory and written with std
    /// (a full disk is an I/O error, exit 1), header sorted.
    pub(super) fn save_safetensors(&self, path: &Path) -> Result<(), MlError> {
        let mut store = SafetensorsStore::from_bytes(None);
        let bytes = match self {
            Net::Cnn(m) => m.save_into(&mut store),
            Net::ResNet(m, _) => m.save_into(&mut store),
            Net::Basic(m) => m.save_into(&mut store),
            Net::Declared(m) => m.save_into(&mut store),
        }
        .and_then(|()| store.get_bytes())
        .map_err(encode_err(path))?;
        write_atomic(path, &bytes)?;
        crate::export::sort_header(path)
    }
}

pub(super) fn save_record(model: &Net, path: &Path) -> Result<String, MlError> {
    model.save_record(path)
}

pub(crate) fn load_model(spec: &ModelSpec, path: &Path, device: &Device) -> Result<Net, MlError> {
    Net::load(spec, path, device)
}

pub(super) fn build_optim(cfg: &TrainConfig) -> ModuleOptimizer {
    AdamConfig::new()
        .with_beta_1(cfg.beta1 as f32)
        .with_beta_2(cfg.beta2 as f32)
        .with_epsilon(cfg.epsilon as f32)
        .init()
}
