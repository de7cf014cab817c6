use super::*;
use crate::models::{self, ModelKind, ModelSpec};
use burn::module::Module;

fn layers(yaml_json: serde_json::Value) -> Vec<Layer> {
    let d: Declared = serde_json::from_value(serde_json::json!({ "layers": yaml_json })).unwrap();
    d.layers
}

/// B1 and B2 (= B3) written as `layers:`.
fn b_layers(regularised: bool) -> Vec<Layer> {
    let mut l = serde_json::json!([
        {"conv2d": {"filters": 16, "kernel": 3}}, "max_pool",
        {"conv2d": {"filters": 64}}, {"max_pool": null},
        {"conv2d": {"filters": 128}}, {"max_pool": {"size": 2}},
        "flatten",
        {"dense": {"units": 512}},
    ]);
    if regularised {
        let a = l.as_array_mut().unwrap();
        a.push(serde_json::json!({"dropout": {"rate": 0.5}}));
        a.push(serde_json::json!({"dense": {"units": 512}}));
        a.push(serde_json::json!({"dropout": {"rate": 0.5}}));
    }
    layers(l)
}

#[test]
fn named_models_as_layers_have_the_same_parameter_counts() {
    for (kind, reg) in [
        (ModelKind::B1, false),
        (ModelKind::B2, true),
        (ModelKind::B3, true),
    ] {
        let named = models::param_counts(&ModelSpec::new(kind));
        let declared = ModelSpec::declared(b_layers(reg));
        assert!(
            models::validate(&declared).is_empty(),
            "{:?}",
            models::validate(&declared)
        );
        assert_eq!(models::param_counts(&declared), named, "{kind}");
        // the burn module agrees with the shape inference
        let device = crate::backend::device(Default::default()).unwrap();
        let n = net::DeclaredNet::new(&declared, None, &device).num_params();
        assert_eq!(n, named.0);
    }
    assert_eq!(
        models::param_counts(&ModelSpec::declared(b_layers(false))).0,
        1_723_009
    );
}

#[test]
fn canonical_form_fills_defaults() {
    let a = layers(serde_json::json!(["max_pool", "flatten", {"dense": {"units": 3}}]));
    let b = layers(serde_json::json!([
        {"max_pool": {"size": 2, "stride": 2}}, {"flatten": {}},
        {"dense": {"units": 3, "activation": "relu"}}
    ]));
    assert_eq!(a, b);
    assert_eq!(
        serde_json::to_value(&a).unwrap(),
        serde_json::to_value(&b).unwrap()
    );
    let c = layers(serde_json::json!(["max_pool", "flatten", {"dense": {"units": 4}}]));
    assert_ne!(
        serde_json::to_value(&a).unwrap(),
        serde_json::to_value(&c).unwrap()
    );
}

#[test]
fn bad_layers_are_rejected_by_serde() {
    let bad = |v: serde_json::Value| {
        serde_json::from_value::<Declared>(serde_json::json!({ "layers": v }))
            .unwrap_err()
            .to_string()
    };
    let e = bad(serde_json::json!(["flatten", {"conv": {"filters": 3}}]));
    assert!(
        e.contains("layer 2") && e.contains("unknown variant `conv`"),
        "{e}"
    );
    let e = bad(serde_json::json!([{"dense": {"units": 3, "unit": 3}}]));
    assert!(e.contains("unknown field `unit`"), "{e}");
    let e = bad(serde_json::json!(["dense"]));
    assert!(e.contains("missing field `units`"), "{e}");
}

#[test]
fn shape_errors_name_the_layer_and_its_path() {
    let l = layers(serde_json::json!([
        {"conv2d": {"filters": 8}}, "max_pool", {"conv2d": {"filters": 0}},
        {"dense": {"units": 10}}
    ]));
    let p = validate(&ModelSpec::declared(l));
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].path, "layers[2]");
    assert!(
        p[0].message
            .contains("layer 3 (conv2d): filters must be at least 1"),
        "{p:?}"
    );

    let l = layers(
        serde_json::json!([{"conv2d": {"filters": 8}}, "max_pool", {"dense": {"units": 10}}]),
    );
    let p = validate(&ModelSpec::declared(l));
    assert_eq!(p[0].path, "layers[2]");
    assert_eq!(
        p[0].message,
        "layer 3 (dense): input is 3-D, add flatten (or global_avg_pool) before it"
    );

    // the end must be flat; a residual block must keep its shape; windows must fit
    let l = layers(serde_json::json!([{"conv2d": {"filters": 8}}]));
    assert!(
        validate(&ModelSpec::declared(l))[0]
            .message
            .contains("output layer needs a flat input")
    );
    let l = layers(serde_json::json!([
        {"residual": {"layers": [{"conv2d": {"filters": 3, "padding": "same"}}, {"conv2d": {"filters": 4}}]}},
        "flatten"
    ]));
    let p = validate(&ModelSpec::declared(l));
    assert_eq!(p[0].path, "layers[0]", "{p:?}");
    assert!(p[0].message.contains("must keep the shape"), "{p:?}");
    let l = layers(serde_json::json!([
        {"residual": {"layers": ["flatten", {"max_pool": {"size": 3}}]}}
    ]));
    let p = validate(&ModelSpec::declared(l));
    assert_eq!(p[0].path, "layers[0].residual.layers[1]", "{p:?}");
    assert!(
        p[0].message
            .starts_with("layer 1.2 (max_pool): pooling needs an image"),
        "{p:?}"
    );
    let l = layers(serde_json::json!([{"conv2d": {"filters": 8, "kernel": 60}}, "flatten"]));
    assert!(
        validate(&ModelSpec::declared(l))[0]
            .message
            .contains("does not fit its 56x56")
    );
}

#[test]
fn summary_of_a_residual_network() {
    let l = layers(serde_json::json!([
        {"conv2d": {"filters": 8, "padding": "same"}},
        "batch_norm",
        {"residual": {"layers": [
            {"conv2d": {"filters": 8, "padding": "same"}}, "batch_norm",
            {"conv2d": {"filters": 8, "padding": "same", "activation": "linear"}}
        ]}},
        {"avg_pool": {"size": 4}},
        {"dropout": {"rate": 0.25}},
        "global_avg_pool",
        {"dense": {"units": 16, "activation": "tanh"}},
    ]));
    let mut spec = ModelSpec::declared(l);
    spec.classes = 5;
    let s = summary(&spec, "mine");
    // conv 3*3*3*8+8 = 224, bn 32 (16 trainable), inner convs 584 each, output 16*5+5
    assert!(
        s.contains("conv2d_1 (Conv2D)") && s.contains("(None, 56, 56, 8)"),
        "{s}"
    );
    assert!(
        s.contains("add_1 (Add)") && s.contains("(None, 14, 14, 8)"),
        "{s}"
    );
    let total = 224 + 32 + 584 + 32 + 584 + (8 * 16 + 16) + (16 * 5 + 5);
    assert!(
        s.contains(&format!(
            "Total params: {}",
            crate::format::thousands(total)
        )),
        "{s}"
    );
    assert!(s.contains("Non-trainable params: 32"), "{s}");
    assert_eq!(models::param_counts(&spec), (total - 32, total));
    assert_eq!(models::dropout_layers(&spec), vec![(0.25, 14 * 14 * 8)]);
}
