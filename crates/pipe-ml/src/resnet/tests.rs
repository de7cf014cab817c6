//! Unit tests of the ResNet-50 module: layer tables, name mappings, weight loading, freezing.

use super::*;
use super::{model::*, summary::*, weights::*};
use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::loss::BinaryCrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use pipe_data::Shape;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::BTreeMap;
use std::path::Path;

pub(super) fn values(t: Tensor<1>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap_or_default()
}

pub(super) fn flat<const D: usize>(p: &Param<Tensor<D>>) -> Vec<f32> {
    values(p.val().flatten(0, D - 1))
}

/// Equality of two long vectors without printing millions of values on failure.
#[track_caller]
fn assert_same(actual: &[f32], expected: &[f32], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    if let Some(i) = actual.iter().zip(expected).position(|(a, b)| a != b) {
        panic!("{what}: index {i}: {} != {}", actual[i], expected[i]);
    }
}

#[test]
fn param_counts_reproduce_the_report() {
    let input = Shape::default();
    assert_eq!(
        param_counts(TransferMode::Tl1, input),
        (1_312_257, 24_899_969)
    );
    assert_eq!(
        param_counts(TransferMode::Tl2, input),
        (9_193_473, 24_899_969)
    );
    assert_eq!(
        param_counts(TransferMode::Tl3, input),
        (24_846_849, 24_899_969)
    );
    // burn's own count (running statistics included) agrees with the Keras total.
    assert_eq!(
        ResNet50Classifier::new(&Device::default()).num_params(),
        24_899_969
    );
}

#[test]
fn keras_table_matches_the_module_layer_by_layer() {
    let layers = keras_layers(Shape::default());
    assert_eq!(layers.len(), 179);
    let index = keras_index();
    // "Freezing 158 layers" (report §3.2.2) = everything before res5b_branch2b.
    assert_eq!(index["res5b_branch2b"], 158);
    assert_eq!(layers.iter().map(|l| l.params).sum::<usize>(), 24_899_969);
    assert_eq!(
        layers.iter().map(|l| l.non_trainable).sum::<usize>(),
        53_120
    );
    // Per-layer counts from the real module equal the table's.
    let mut from_module: BTreeMap<String, usize> = BTreeMap::new();
    for (path, n) in tensor_sizes(&ResNet50Classifier::new(&Device::default())) {
        let layer = keras_layer_of(&path);
        assert!(layer.is_some(), "{path} has no Keras layer");
        *from_module.entry(layer.unwrap_or_default()).or_default() += n;
    }
    let from_table: BTreeMap<String, usize> = layers
        .iter()
        .filter(|l| l.params > 0)
        .map(|l| (l.name.clone(), l.params))
        .collect();
    assert_eq!(from_module, from_table);
    // Keras' shapes for 56x56: 28 after conv1, 14 after the pool, 2x2x2048 at the end.
    let shape = |name: &str| layers[index[name]].output.clone();
    assert_eq!(shape("conv1"), vec![28, 28, 64]);
    assert_eq!(shape("max_pooling2d_1"), vec![14, 14, 64]);
    assert_eq!(shape("res3a_branch2a"), vec![7, 7, 128]);
    assert_eq!(shape("res4a_branch1"), vec![4, 4, 1024]);
    assert_eq!(shape("activation_49"), vec![2, 2, 2048]);
    assert_eq!(shape("dense_3"), vec![1]);
    assert_eq!(
        layers[index["add_15"]].inputs,
        vec!["bn5b_branch2c".to_string(), "activation_43".to_string()]
    );
}

#[test]
fn names_map_between_module_keras_and_torchvision() {
    let cases = [
        (
            "res5.1.branch2b.weight",
            "res5b_branch2b",
            "layer4.1.conv2.weight",
        ),
        (
            "res5.1.bn_branch2b.gamma",
            "bn5b_branch2b",
            "layer4.1.bn2.weight",
        ),
        (
            "res2.0.bn_branch1.beta",
            "bn2a_branch1",
            "layer1.0.downsample.1.bias",
        ),
        (
            "res4.5.branch2c.bias",
            "res4f_branch2c",
            "layer3.5.conv3.bias",
        ),
        (
            "res3.0.branch1.weight",
            "res3a_branch1",
            "layer2.0.downsample.0.weight",
        ),
        ("bn_conv1.running_var", "bn_conv1", "bn1.running_var"),
        ("conv1.weight", "conv1", "conv1.weight"),
    ];
    for (path, keras, tv) in cases {
        assert_eq!(keras_layer_of(path).as_deref(), Some(keras), "{path}");
        assert_eq!(torchvision_key(path).as_deref(), Some(tv), "{path}");
    }
    assert_eq!(keras_layer_of("dense_3.weight").as_deref(), Some("dense_3"));
    assert_eq!(torchvision_key("dense_3.weight"), None);
    assert_eq!(keras_layer_of("res5.3.branch2a.weight"), None);
    assert_eq!(keras_layer_of("res6.0.branch2a.weight"), None);
}

#[test]
fn forward_gives_keras_shapes() {
    let device = Device::default();
    let model = ResNet50Classifier::new(&device);
    let x = Tensor::<4>::random([2, 3, 56, 56], burn::tensor::Distribution::Default, &device);
    let features = model.features(x.clone());
    assert_eq!(features.dims(), [2, 2048, 2, 2]);
    assert_eq!(model.forward(x).dims(), [2, 1]);
}

#[test]
fn caffe_preprocess_is_bgr_minus_imagenet_means() {
    let shape = Shape::new(1, 2, 3);
    let image = [10, 20, 30, 255, 0, 128];
    let mut out = [0.0; 6];
    caffe_preprocess(&image, shape, &mut out).unwrap_or_else(|e| panic!("{e}"));
    let expected = [
        30.0 - 103.939,
        128.0 - 103.939, // B plane
        20.0 - 116.779,
        0.0 - 116.779, // G plane
        10.0 - 123.68,
        255.0 - 123.68, // R plane
    ];
    for (a, b) in out.iter().zip(expected) {
        assert!((a - b).abs() < 1e-4, "{out:?}");
    }
    // Grey: one value replicated to B, G and R.
    let mut out = [0.0; 3];
    caffe_preprocess(&[100], Shape::new(1, 1, 1), &mut out).unwrap_or_else(|e| panic!("{e}"));
    assert!((out[0] - (100.0 - 103.939)).abs() < 1e-4);
    assert!((out[2] - (100.0 - 123.68)).abs() < 1e-4);
    // Wrong lengths and channel counts are errors, not panics.
    assert!(matches!(
        caffe_preprocess(&image[..5], shape, &mut [0.0; 6]),
        Err(ResNetError::Buffer { what: "image", .. })
    ));
    assert!(matches!(
        caffe_preprocess(&image, shape, &mut [0.0; 5]),
        Err(ResNetError::Buffer { what: "output", .. })
    ));
    assert!(matches!(
        caffe_preprocess(&[0; 8], Shape::new(1, 2, 4), &mut [0.0; 6]),
        Err(ResNetError::Shape { .. })
    ));
}

#[test]
fn input_shapes_are_validated() {
    assert!(validate_input(Shape::new(56, 56, 3)).is_ok());
    assert!(validate_input(Shape::new(56, 56, 1)).is_ok());
    assert!(validate_input(Shape::new(31, 56, 3)).is_err());
    assert!(validate_input(Shape::new(56, 56, 4)).is_err());
    let spec = ResNetSpec {
        mode: TransferMode::Tl1,
        input: Shape::new(16, 16, 3),
        weights: None,
        units: 1,
        trainable_from: None,
    };
    assert!(matches!(
        build(&spec, &Device::default()),
        Err(ResNetError::Shape { .. })
    ));
}

#[test]
fn spec_serde_uses_snake_case_modes() {
    let spec: ResNetSpec = serde_json::from_str(
        r#"{"mode":"tl2","input":{"height":56,"width":56,"channels":3},"weights":"w.pth"}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(spec.mode, TransferMode::Tl2);
    assert_eq!(spec.weights, Some(PathBuf::from("w.pth")));
    let json = serde_json::to_string(&spec).unwrap_or_default();
    assert!(json.contains(r#""mode":"tl2""#), "{json}");
    assert!(serde_json::from_str::<TransferMode>(r#""TL2""#).is_err());
}

#[test]
fn summary_tail_looks_like_figure_12() {
    let spec = ResNetSpec {
        mode: TransferMode::Tl1,
        input: Shape::default(),
        weights: None,
        units: 1,
        trainable_from: None,
    };
    let summary = summary_tail(&spec);
    for needle in [
        "add_15 (Add)                    (None, 2, 2, 2048)   0           bn5b_branch2c[0][0]",
        "activation_43[0][0]",
        "res5c_branch2b (Conv2D)         (None, 2, 2, 512)    2359808     activation_47[0][0]",
        "bn5c_branch2a (BatchNormalizati (None, 2, 2, 512)    2048",
        "dense_1 (Dense)                 (None, 512)          1049088     global_average_pooling2d_1[0][0]",
        "dense_3 (Dense)                 (None, 1)            513",
        "Total params: 24,899,969",
        "Trainable params: 1,312,257",
        "Non-trainable params: 23,587,712",
    ] {
        assert!(summary.contains(needle), "missing {needle:?} in\n{summary}");
    }
    let tl3 = summary_tail(&ResNetSpec {
        mode: TransferMode::Tl3,
        ..spec
    });
    assert!(tl3.contains("Non-trainable params: 53,120"), "{tl3}");
}

/// Writes a safetensors file with torchvision's key names (a subset, real shapes).
fn write_torchvision_subset(path: &Path, extra: &[(&str, Vec<usize>)]) -> Vec<(String, Vec<f32>)> {
    let mut specs: Vec<(String, Vec<usize>)> = vec![
        ("conv1.weight".into(), vec![64, 3, 7, 7]),
        ("bn1.weight".into(), vec![64]),
        ("bn1.bias".into(), vec![64]),
        ("bn1.running_mean".into(), vec![64]),
        ("bn1.running_var".into(), vec![64]),
        ("layer1.0.downsample.0.weight".into(), vec![256, 64, 1, 1]),
        ("layer1.0.downsample.1.weight".into(), vec![256]),
        ("layer4.1.conv2.weight".into(), vec![512, 512, 3, 3]),
        ("layer4.1.bn2.running_var".into(), vec![512]),
        ("fc.weight".into(), vec![1000, 2048]),
        ("fc.bias".into(), vec![1000]),
    ];
    specs.extend(extra.iter().map(|(k, s)| (k.to_string(), s.clone())));
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = specs
        .into_iter()
        .enumerate()
        .map(|(t, (key, shape))| {
            let n: usize = shape.iter().product();
            let data = (0..n).map(|i| t as f32 + (i % 997) as f32 * 1e-3).collect();
            (key, shape, data)
        })
        .collect();
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, d)| d.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let counter = 7i64.to_le_bytes();
    let mut views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((key, shape, _), b)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), b);
            (key.clone(), view.unwrap_or_else(|e| panic!("{e}")))
        })
        .collect();
    views.push((
        "bn1.num_batches_tracked".into(),
        TensorView::new(Dtype::I64, vec![], &counter).unwrap_or_else(|e| panic!("{e}")),
    ));
    let file = safetensors::tensor::serialize(views, None).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(path, file).unwrap_or_else(|e| panic!("{e}"));
    tensors.into_iter().map(|(k, _, d)| (k, d)).collect()
}

#[test]
fn loads_torchvision_keys_from_safetensors() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("resnet50.safetensors");
    let written: BTreeMap<String, Vec<f32>> =
        write_torchvision_subset(&path, &[]).into_iter().collect();
    let device = Device::default();
    let (model, report) =
        load_pretrained(ResNet50Classifier::new(&device), &path).unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(
        flat(&model.res5[1].branch2b.weight),
        written["layer4.1.conv2.weight"]
    );
    assert_eq!(flat(&model.conv1.weight), written["conv1.weight"]);
    assert_eq!(flat(&model.bn_conv1.gamma), written["bn1.weight"]);
    assert_eq!(flat(&model.bn_conv1.beta), written["bn1.bias"]);
    assert_eq!(
        values(model.bn_conv1.running_mean.value()),
        written["bn1.running_mean"]
    );
    assert_eq!(
        values(model.res5[1].bn_branch2b.running_var.value()),
        written["layer4.1.bn2.running_var"]
    );
    assert_eq!(
        model.res2[0].branch1.as_ref().map(|c| flat(&c.weight)),
        Some(written["layer1.0.downsample.0.weight"].clone())
    );
    assert_eq!(
        model.res2[0].bn_branch1.as_ref().map(|b| flat(&b.gamma)),
        Some(written["layer1.0.downsample.1.weight"].clone())
    );
    // Convolution biases stay at zero.
    let bias = model.res5[1]
        .branch2b
        .bias
        .as_ref()
        .map(flat)
        .unwrap_or_default();
    assert_eq!(bias.len(), 512);
    assert!(bias.iter().all(|&b| b == 0.0));

    assert_eq!(report.loaded.len(), 9, "{report:?}");
    assert!(report.loaded.contains(&"layer4.1.conv2.weight".to_string()));
    assert_eq!(
        report.skipped,
        vec!["bn1.num_batches_tracked", "fc.bias", "fc.weight"]
    );
    // torchvision has 265 backbone tensors (53 convolutions, 53 x 4 batch-norm vectors).
    assert_eq!(report.missing.len(), 265 - 9, "{:?}", report.missing);
    assert!(
        report
            .missing
            .contains(&"layer4.2.conv3.weight".to_string())
    );
    assert!(
        report
            .missing
            .contains(&"layer3.0.downsample.1.running_var".to_string())
    );
    assert!(
        !report
            .missing
            .iter()
            .any(|k| k.starts_with("dense") || k.ends_with("conv1.bias"))
    );
}

#[test]
fn bad_weight_files_are_errors() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let device = Device::default();
    let missing = dir.path().join("none.safetensors");
    assert!(matches!(
        load_pretrained(ResNet50Classifier::new(&device), &missing),
        Err(ResNetError::WeightsNotFound { .. })
    ));
    let h5 = dir.path().join("weights.h5");
    std::fs::write(&h5, b"x").unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        load_pretrained(ResNet50Classifier::new(&device), &h5),
        Err(ResNetError::UnsupportedFormat { .. })
    ));
    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"not a safetensors file").unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        load_pretrained(ResNet50Classifier::new(&device), &garbage),
        Err(ResNetError::Load { .. })
    ));
    // A wrong shape (e.g. a ResNet-18 layer) is an error, not a silent skip.
    let wrong = dir.path().join("wrong.safetensors");
    write_torchvision_subset(&wrong, &[("layer4.0.conv1.weight", vec![512, 256, 3, 3])]);
    assert!(matches!(
        load_pretrained(ResNet50Classifier::new(&device), &wrong),
        Err(ResNetError::Load { .. })
    ));
}

/// A minimal `torch.save` writer (no torch needed): a zip of stored entries (CRC left at 0,
/// which `torch.save(..., _use_new_zipfile_serialization=True)` also writes when asked not
/// to checksum) holding `archive/data.pkl`, one `archive/data/<n>` per tensor and
/// `archive/version`. The pickle is what torch writes for a state dict: an `OrderedDict` of
/// `torch._utils._rebuild_tensor_v2(persistent storage, offset, size, stride, False, {})`.
fn write_pth(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)], nested: bool) {
    fn global(p: &mut Vec<u8>, module: &str, name: &str) {
        p.push(b'c');
        p.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
    }
    fn unicode(p: &mut Vec<u8>, s: &str) {
        p.push(b'X');
        p.extend_from_slice(&(s.len() as u32).to_le_bytes());
        p.extend_from_slice(s.as_bytes());
    }
    fn int(p: &mut Vec<u8>, v: usize) {
        p.push(b'J');
        p.extend_from_slice(&(v as i32).to_le_bytes());
    }
    fn ints(p: &mut Vec<u8>, vs: &[usize]) {
        p.push(b'(');
        vs.iter().for_each(|&v| int(p, v));
        p.push(b't');
    }
    fn ordered_dict(p: &mut Vec<u8>) {
        global(p, "collections", "OrderedDict");
        p.extend_from_slice(b")R");
    }
    let mut pkl = vec![0x80, 2];
    if nested {
        pkl.push(b'}');
        unicode(&mut pkl, "state_dict");
    }
    ordered_dict(&mut pkl);
    for (i, (key, shape, _)) in tensors.iter().enumerate() {
        unicode(&mut pkl, key);
        global(&mut pkl, "torch._utils", "_rebuild_tensor_v2");
        pkl.push(b'(');
        pkl.push(b'(');
        unicode(&mut pkl, "storage");
        global(&mut pkl, "torch", "FloatStorage");
        unicode(&mut pkl, &i.to_string());
        unicode(&mut pkl, "cpu");
        int(&mut pkl, shape.iter().product());
        pkl.extend_from_slice(b"tQ");
        int(&mut pkl, 0);
        ints(&mut pkl, shape);
        let strides: Vec<usize> = (0..shape.len())
            .map(|d| shape[d + 1..].iter().product())
            .collect();
        ints(&mut pkl, &strides);
        pkl.push(0x89); // False
        ordered_dict(&mut pkl);
        pkl.extend_from_slice(b"tRs");
    }
    if nested {
        pkl.push(b's');
    }
    pkl.push(b'.');

    let mut entries: Vec<(String, Vec<u8>)> = vec![("archive/data.pkl".into(), pkl)];
    for (i, (_, _, data)) in tensors.iter().enumerate() {
        let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        entries.push((format!("archive/data/{i}"), bytes));
    }
    entries.push(("archive/version".into(), b"3\n".to_vec()));
    let (mut zip, mut central) = (Vec::new(), Vec::new());
    let u16le = |v: usize| (v as u16).to_le_bytes();
    let u32le = |v: usize| (v as u32).to_le_bytes();
    for (name, data) in &entries {
        let offset = zip.len();
        // Local header: signature, version 2.0, flags, method 0 (stored), time, date, CRC 0.
        for field in [
            &u32le(0x0403_4b50)[..],
            &u16le(20),
            &[0; 2],
            &[0; 2],
            &[0; 4],
            &[0; 4],
        ] {
            zip.extend_from_slice(field);
        }
        for field in [u32le(data.len()), u32le(data.len())] {
            zip.extend_from_slice(&field);
        }
        zip.extend_from_slice(&u16le(name.len()));
        zip.extend_from_slice(&[0; 2]);
        zip.extend_from_slice(name.as_bytes());
        zip.extend_from_slice(data);
        // Central directory entry.
        for field in [
            &u32le(0x0201_4b50)[..],
            &u16le(20),
            &u16le(20),
            &[0; 2],
            &[0; 2],
            &[0; 4],
            &[0; 4],
        ] {
            central.extend_from_slice(field);
        }
        for field in [u32le(data.len()), u32le(data.len())] {
            central.extend_from_slice(&field);
        }
        central.extend_from_slice(&u16le(name.len()));
        central.extend_from_slice(&[0; 12]); // extra, comment, disk, attributes
        central.extend_from_slice(&u32le(offset));
        central.extend_from_slice(name.as_bytes());
    }
    let central_offset = zip.len();
    zip.extend_from_slice(&central);
    for field in [
        &u32le(0x0605_4b50)[..],
        &[0; 4],
        &u16le(entries.len()),
        &u16le(entries.len()),
    ] {
        zip.extend_from_slice(field);
    }
    zip.extend_from_slice(&u32le(central.len()));
    zip.extend_from_slice(&u32le(central_offset));
    zip.extend_from_slice(&[0; 2]);
    std::fs::write(path, zip).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn loads_torchvision_keys_from_pth() {
    let pattern =
        |n: usize, k: f32| -> Vec<f32> { (0..n).map(|i| k + (i % 991) as f32 * 1e-3).collect() };
    let tensors = vec![
        (
            "conv1.weight".to_string(),
            vec![64, 3, 7, 7],
            pattern(64 * 147, 1.0),
        ),
        ("bn1.weight".to_string(), vec![64], pattern(64, 2.0)),
        (
            "layer4.1.conv2.weight".to_string(),
            vec![512, 512, 3, 3],
            pattern(512 * 512 * 9, 3.0),
        ),
        (
            "layer1.0.downsample.1.running_mean".to_string(),
            vec![256],
            pattern(256, 4.0),
        ),
        ("fc.bias".to_string(), vec![1000], pattern(1000, 5.0)),
    ];
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let device = Device::default();
    for nested in [false, true] {
        let path = dir.path().join(format!("resnet50_{nested}.pth"));
        write_pth(&path, &tensors, nested);
        let (model, report) = load_pretrained(ResNet50Classifier::new(&device), &path)
            .unwrap_or_else(|e| panic!("nested={nested}: {e}"));
        let what = |t: &str| format!("nested={nested} {t} {report:?}");
        assert_same(&flat(&model.conv1.weight), &tensors[0].2, &what("conv1"));
        assert_same(&flat(&model.bn_conv1.gamma), &tensors[1].2, &what("bn1"));
        let w = flat(&model.res5[1].branch2b.weight);
        assert_same(&w, &tensors[2].2, &what("layer4.1.conv2"));
        let mean = model.res2[0]
            .bn_branch1
            .as_ref()
            .map(|b| values(b.running_mean.value()));
        assert_same(
            &mean.unwrap_or_default(),
            &tensors[3].2,
            &what("downsample.1"),
        );
        assert_eq!(report.loaded.len(), 4, "{report:?}");
        assert_eq!(report.skipped, vec!["fc.bias"]);
        assert_eq!(report.missing.len(), 265 - 4);
    }
}

/// Counts the elements of the parameters that received a gradient.
pub(super) struct GradElements<'a> {
    pub(super) grads: &'a GradientsParams,
    pub(super) elements: usize,
}

impl ModuleVisitor for GradElements<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.grads.get::<D>(param.id).is_some() {
            self.elements += param.lazy_shape().num_elements();
        }
    }
}

#[test]
fn tl2_training_updates_only_the_unfrozen_layers() {
    let device = Device::default().autodiff();
    device.seed(7);
    let spec = ResNetSpec {
        mode: TransferMode::Tl2,
        input: Shape::new(32, 32, 3),
        weights: None,
        units: 1,
        trainable_from: None,
    };
    let mut model = build(&spec, &device).unwrap_or_else(|e| panic!("{e}"));
    let snapshot = |m: &ResNet50Classifier| {
        (
            flat(&m.conv1.weight),
            flat(&m.res5[1].branch2a.weight),
            values(m.res5[1].bn_branch2a.running_mean.value()),
            flat(&m.res5[1].branch2b.weight),
            values(m.res5[1].bn_branch2b.running_mean.value()),
            flat(&m.dense_3.weight),
        )
    };
    let before = snapshot(&model);
    let mut optim = AdamConfig::new().with_epsilon(1e-7).init();
    let bce = BinaryCrossEntropyLossConfig::new()
        .with_logits(true)
        .init(&device);
    let x = Tensor::<4>::random(
        [4, 3, 32, 32],
        burn::tensor::Distribution::Uniform(-100.0, 100.0),
        &device,
    );
    let y = Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 1, 1, 0], [4, 1]), &device);
    for step in 0..2 {
        let loss = bce.forward(model.forward(x.clone()), y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        if step == 0 {
            // Exactly the trainable parameters get gradients.
            let mut counter = GradElements {
                grads: &grads,
                elements: 0,
            };
            model.visit(&mut counter);
            assert_eq!(counter.elements, 9_193_473);
        }
        model = optim.step(1e-3, model, grads);
    }
    let after = snapshot(&model);
    assert_eq!(before.0, after.0, "conv1 is frozen");
    assert_eq!(before.1, after.1, "res5b_branch2a is frozen");
    assert_eq!(
        before.2, after.2,
        "frozen batch norms keep their moving mean"
    );
    assert_ne!(before.3, after.3, "res5b_branch2b trains");
    assert_ne!(
        before.4, after.4,
        "trainable batch norms update their moving mean"
    );
    assert_ne!(before.5, after.5, "the head trains");
}
