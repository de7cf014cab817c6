//! `pipe model`: a model's Keras-like summary (layers, output shapes, parameters).

use super::exit::{EXIT_INVALID, EXIT_OK};

pub(super) fn model(name: &str, input: &str) -> i32 {
    use crate::ml::models::{ModelKind, ModelSpec, summary};
    let kind: ModelKind = match name.parse() {
        Ok(k) => k,
        Err(e) => {
            errln!("error: {e}");
            return EXIT_INVALID;
        }
    };
    let dims: Vec<u32> = input.split('x').filter_map(|s| s.parse().ok()).collect();
    let [h, w, c] = dims[..] else {
        errln!("error: --input must look like 56x56x3");
        return EXIT_INVALID;
    };
    let spec = ModelSpec {
        kind,
        input: crate::data::Shape::new(h, w, c),
        init: Default::default(),
        dropout: crate::ml::defaults::DROPOUT,
        weights: None,
        ..ModelSpec::new(kind)
    };
    let problems = crate::ml::models::validate(&spec);
    if !problems.is_empty() {
        for p in problems {
            errln!("error: {p}");
        }
        return EXIT_INVALID;
    }
    out!("{}", summary(&spec));
    EXIT_OK
}
