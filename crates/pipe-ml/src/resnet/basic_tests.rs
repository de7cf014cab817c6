//! Unit tests of the BasicBlock ResNets: torchvision's parameter counts, the summary, weights
//! round trip with torchvision's keys, freezing.

use super::basic::{self, BasicResNet, BasicSpec};
use super::tests::{GradElements, flat, values};
use super::*;
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use pipe_data::Shape;
use safetensors::tensor::{Dtype, TensorView};
use std::path::Path;

fn spec(depth: Depth, freeze: &Freeze, units: usize) -> BasicSpec {
    BasicSpec {
        depth,
        input: Shape::new(32, 32, 3),
        weights: None,
        units,
        trainable_from: freeze.first_trainable(depth).unwrap(),
    }
}

/// The head: Dense(512 → 512) twice and Dense(512 → units).
fn head(units: usize) -> usize {
    2 * (512 * 512 + 512) + 512 * units + units
}

#[test]
fn backbones_have_torchvisions_parameter_counts() {
    // torchvision: resnet18 11,689,512 and resnet34 21,797,672 parameters with the 1000-class
    // fc (512 * 1000 + 1000 = 513,000), batch-norm buffers not counted.
    for (depth, backbone) in [(Depth::R18, 11_176_512), (Depth::R34, 21_284_672)] {
        let (trainable, total) = basic::param_counts(&spec(depth, &Freeze::None, 3));
        assert_eq!(trainable, backbone + head(3), "{depth:?}");
        // The moving statistics: two vectors per batch-norm channel; resnet18 has
        // 64 + 4 * 64 + (4 + 1) * (128 + 256 + 512) = 4,800 channels.
        if depth == Depth::R18 {
            assert_eq!(total - trainable, 2 * 4_800);
        }
        let (head_only, same_total) = basic::param_counts(&spec(depth, &Freeze::All, 3));
        assert_eq!((head_only, same_total), (head(3), total));
        let until = Freeze::Until("layer4".into());
        let (from_layer4, _) = basic::param_counts(&spec(depth, &until, 3));
        assert!(
            head(3) < from_layer4 && from_layer4 < trainable,
            "{depth:?}"
        );
        // burn's own count agrees.
        let net = BasicResNet::new(depth, 3, &Device::default());
        assert_eq!(net.num_params(), total, "{depth:?}");
    }
}

#[test]
fn summary_rows_add_up_and_show_the_freeze() {
    let s = basic::summary(&spec(Depth::R18, &Freeze::Until("layer4".into()), 3));
    let (trainable, total) =
        basic::param_counts(&spec(Depth::R18, &Freeze::Until("layer4".into()), 3));
    assert!(s.contains("Model: \"resnet18\""), "{s}");
    assert!(s.contains("layer4.0.downsample.1 (BatchNorm)"), "{s}");
    assert!(s.contains("(None, 1, 1, 512)"), "32x32 ends in 1x1:\n{s}");
    assert!(
        s.contains("dense_3 (Dense)") && s.contains("(None, 3)"),
        "{s}"
    );
    let thousands = crate::format::thousands;
    assert!(
        s.contains(&format!("Trainable params: {}", thousands(trainable))),
        "{s}"
    );
    assert!(
        s.contains(&format!("Total params: {}", thousands(total))),
        "{s}"
    );
    // The rows' parameters add up to the module's.
    let rows: usize = s
        .lines()
        .filter(|l| l.contains("(None"))
        .filter_map(|l| l.split_whitespace().last())
        .filter_map(|n| n.replace(',', "").parse::<usize>().ok())
        .sum();
    assert_eq!(rows, total);
    let r34 = basic::summary(&spec(Depth::R34, &Freeze::None, 1));
    assert!(
        r34.contains("layer3.5.bn2") && !r34.contains("layer3.6"),
        "{r34}"
    );
}

#[test]
fn forward_shapes_and_frozen_batch_norms() {
    let device = Device::default();
    let net = BasicResNet::new(Depth::R18, 4, &device);
    let x = Tensor::<4>::random(
        [2, 3, 64, 48],
        burn::tensor::Distribution::Uniform(-2.0, 2.0),
        &device,
    );
    assert_eq!(net.features(x.clone()).dims(), [2, 512, 2, 2]);
    assert_eq!(net.forward(x).dims(), [2, 4]);
}

/// Every float tensor of a module with its path, shape and values.
struct Dump(Vec<String>, Vec<(String, Vec<usize>, Vec<f32>)>);

impl ModuleVisitor for Dump {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.0.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.0.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let shape = t.dims().to_vec();
        let v = t.into_data().try_to_vec::<f32>().unwrap();
        self.1.push((self.0.join("."), shape, v));
    }
}

/// Writes `net`'s backbone as a torchvision state dict (plus torchvision's `fc` and a
/// `num_batches_tracked` counter) and returns the number of backbone tensors.
fn write_torchvision(net: &BasicResNet, path: &Path) -> usize {
    let mut dump = Dump(Vec::new(), Vec::new());
    net.visit(&mut dump);
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = dump
        .1
        .into_iter()
        .filter(|(p, _, _)| !p.starts_with("dense_"))
        .map(|(p, s, v)| (basic::torchvision_key(&p), s, v))
        .collect();
    let backbone = tensors.len();
    tensors.push(("fc.weight".into(), vec![1000, 512], vec![0.5; 512_000]));
    tensors.push(("fc.bias".into(), vec![1000], vec![0.0; 1000]));
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, d)| d.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let counter = 3i64.to_le_bytes();
    let mut views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((k, s, _), b)| {
            (
                k.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    views.push((
        "layer2.0.bn1.num_batches_tracked".into(),
        TensorView::new(Dtype::I64, vec![], &counter).unwrap(),
    ));
    std::fs::write(path, safetensors::tensor::serialize(views, None).unwrap()).unwrap();
    backbone
}

#[test]
fn torchvision_keyed_weights_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resnet18.safetensors");
    let device = Device::default();
    let source = spec(Depth::R18, &Freeze::None, 3);
    let a = basic::build_seeded(&source, 1, &device).unwrap();
    // Non-trivial moving statistics, so loading them is checked too.
    let mut a = a;
    a.layer2[0].bn1.running_mean = burn::module::RunningState::new(Tensor::<1>::from_data(
        TensorData::new((0..128).map(|i| i as f32 * 0.01).collect::<Vec<_>>(), [128]),
        &device,
    ));
    let backbone = write_torchvision(&a, &path);
    // conv1, 16 block convolutions, 3 projections; as many batch norms with 4 vectors each.
    assert_eq!(backbone, 20 + 20 * 4);
    let (_, report) =
        basic::load_pretrained(BasicResNet::new(Depth::R18, 3, &device), &path).unwrap();
    assert_eq!(report.loaded.len(), backbone);
    assert!(
        report
            .loaded
            .contains(&"layer3.0.downsample.1.running_var".to_owned())
    );
    assert_eq!(
        report.skipped,
        vec!["fc.bias", "fc.weight", "layer2.0.bn1.num_batches_tracked"]
    );
    assert!(report.missing.is_empty(), "{:?}", report.missing);

    // Another seed, loaded from the file: the same backbone, so the same features.
    let b = basic::build_seeded(
        &BasicSpec {
            weights: Some(path.clone()),
            ..source.clone()
        },
        2,
        &device,
    )
    .unwrap();
    assert_eq!(
        values(b.layer2[0].bn1.running_mean.value()),
        values(a.layer2[0].bn1.running_mean.value())
    );
    assert_ne!(
        flat(&a.dense_1.weight),
        flat(&b.dense_1.weight),
        "the head is new"
    );
    let x = Tensor::<4>::random(
        [2, 3, 32, 32],
        burn::tensor::Distribution::Uniform(-2.0, 2.0),
        &device,
    );
    let fa = a.valid().features(x.clone()).into_data();
    let fb = b.valid().features(x).into_data();
    assert_eq!(fa, fb);
    // resnet18's tensors all fit resnet34 (same shapes, fewer blocks): the blocks resnet34
    // has beyond them are reported missing.
    let (_, r34) = basic::load_pretrained(BasicResNet::new(Depth::R34, 3, &device), &path).unwrap();
    assert_eq!(r34.loaded.len(), backbone);
    assert!(
        r34.missing.contains(&"layer3.5.conv1.weight".to_owned()),
        "{r34:?}"
    );
    assert!(!r34.missing.iter().any(|k| k.starts_with("dense")));
}

#[test]
fn seeded_builds_are_reproducible() {
    let device = Device::default();
    let s = spec(Depth::R18, &Freeze::All, 3);
    let a = basic::build_seeded(&s, 5, &device).unwrap();
    let b = basic::build_seeded(&s, 5, &device).unwrap();
    let c = basic::build_seeded(&s, 6, &device).unwrap();
    assert_eq!(
        flat(&a.layer3[1].conv2.weight),
        flat(&b.layer3[1].conv2.weight)
    );
    assert_ne!(
        flat(&a.layer3[1].conv2.weight),
        flat(&c.layer3[1].conv2.weight)
    );
    assert!(a.conv1.bias.is_none() && a.layer1[0].downsample_conv.is_none());
    assert!(a.layer2[0].downsample_conv.is_some());
}

#[test]
fn until_layer4_trains_layer4_and_the_head_only() {
    let device = Device::default().autodiff();
    let s = spec(Depth::R18, &Freeze::Until("layer4".into()), 3);
    let mut model = basic::build_seeded(&s, 3, &device).unwrap();
    let snapshot = |m: &BasicResNet| {
        (
            flat(&m.conv1.weight),
            flat(&m.layer3[1].conv2.weight),
            values(m.layer3[1].bn2.running_mean.value()),
            flat(&m.layer4[0].conv1.weight),
            values(m.layer4[0].bn1.running_mean.value()),
            flat(&m.dense_3.weight),
        )
    };
    let before = snapshot(&model);
    let mut optim = AdamConfig::new().init();
    let x = Tensor::<4>::random(
        [4, 3, 32, 32],
        burn::tensor::Distribution::Uniform(-2.0, 2.0),
        &device,
    );
    for step in 0..2 {
        let loss = model.forward(x.clone()).powf_scalar(2.0).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        if step == 0 {
            let mut counter = GradElements {
                grads: &grads,
                elements: 0,
            };
            model.visit(&mut counter);
            assert_eq!(counter.elements, basic::param_counts(&s).0);
        }
        model = optim.step(1e-3, model, grads);
    }
    let after = snapshot(&model);
    assert_eq!(before.0, after.0, "conv1 is frozen");
    assert_eq!(before.1, after.1, "layer3 is frozen");
    assert_eq!(
        before.2, after.2,
        "frozen batch norms keep their statistics"
    );
    assert_ne!(before.3, after.3, "layer4 trains");
    assert_ne!(
        before.4, after.4,
        "layer4's batch norms update their statistics"
    );
    assert_ne!(before.5, after.5, "the head trains");
}

#[test]
fn named_resnet_specs_freeze_and_validate() {
    use crate::models::{self, ModelKind, ModelSpec};
    let named = |kind, freeze: Option<&str>, weights: bool| ModelSpec {
        freeze: freeze.map(|f| f.parse().unwrap()),
        weights: weights.then(|| "w.pth".into()),
        ..ModelSpec::new(kind)
    };
    // resnet50 with `freeze: all` is TL1's network; `until res5b_branch2b` is TL2's cut, and
    // torchvision's name of that layer gives the same.
    let tl1 = models::param_counts(&ModelSpec::new(ModelKind::Tl1));
    assert_eq!(
        models::param_counts(&named(ModelKind::Resnet50, Some("all"), false)),
        tl1
    );
    let tl2 = models::param_counts(&ModelSpec::new(ModelKind::Tl2));
    for cut in ["until res5b_branch2b", "until layer4.1.conv2"] {
        assert_eq!(
            models::param_counts(&named(ModelKind::Resnet50, Some(cut), false)),
            tl2,
            "{cut}"
        );
    }
    // Defaults: the head only over weights, everything over a random init.
    let with = named(ModelKind::Resnet18, None, true);
    assert_eq!(with.effective_freeze(), Freeze::All);
    assert_eq!(models::param_counts(&with).0, head(1));
    let without = named(ModelKind::Resnet18, None, false);
    assert_eq!(models::param_counts(&without).0, 11_176_512 + head(1));
    // Errors: an unknown layer, `freeze` on a model without it, too small an input.
    let p = models::validate(&named(ModelKind::Resnet34, Some("until layer5"), true));
    assert!(
        p.len() == 1 && p[0].starts_with("freeze: unknown layer `layer5`"),
        "{p:?}"
    );
    let p = models::validate(&named(ModelKind::B1, Some("none"), false));
    assert!(p.len() == 1 && p[0].contains("not b1"), "{p:?}");
    let mut small = named(ModelKind::Resnet18, None, false);
    small.input = Shape::new(31, 64, 3);
    assert!(models::validate(&small)[0].contains("32x32"));
    // The summary of a named model is its layer table.
    let s = models::summary(&named(ModelKind::Resnet34, Some("until layer4"), true));
    assert!(
        s.contains("Model: \"resnet34\"") && s.contains("layer3.5.conv2"),
        "{s}"
    );
    assert!(models::summary(&named(ModelKind::Resnet50, None, true)).contains("\"resnet50\""));
    // The serialised spec names the freeze only where one is written.
    let json = serde_json::to_string(&named(ModelKind::Resnet18, Some("until  layer4"), false));
    assert!(json.unwrap().contains(r#""freeze":"until layer4""#));
    let tl = serde_json::to_string(&ModelSpec::new(ModelKind::Tl1)).unwrap();
    assert!(!tl.contains("freeze"), "{tl}");
}
