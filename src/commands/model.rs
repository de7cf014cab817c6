//! `pipe model`: a model's Keras-like summary (layers, output shapes, parameters), by name or
//! from a pipeline's train stage (declared models included).

use super::exit::{EXIT_INVALID, EXIT_OK};
use crate::ml::models::{self, ModelKind, ModelSpec, summary};
use crate::stages::StageConfig;
use std::path::Path;

pub(super) fn model(name: &str, input: &str) -> i32 {
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
        input: crate::data::Shape::new(h, w, c),
        ..ModelSpec::new(kind)
    };
    print_summary(&spec, kind.as_str())
}

/// The model of train stage `id` in the pipeline `file`, at the shape of the images its data
/// input holds.
pub(super) fn stage_model(file: &Path, id: &str) -> i32 {
    let pipeline = match super::load_or_exit(file, &[]) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let Some(stage) = pipeline.stages.get(id) else {
        let ids: Vec<&str> = pipeline.stages.keys().map(String::as_str).collect();
        errln!(
            "error: {}: no stage `{id}` (stages: {})",
            file.display(),
            ids.join(", ")
        );
        return EXIT_INVALID;
    };
    let StageConfig::Train(train) = &stage.config else {
        errln!("error: stage `{id}` is not a train stage");
        return EXIT_INVALID;
    };
    let shape = crate::spec::validate::data_shape(&pipeline.stages, id).unwrap_or_default();
    let mut spec = train.config(shape, train.device, &stage.base_dir).model;
    if let Some(n) = crate::spec::validate::data_classes(&pipeline.stages, id) {
        spec.classes = n;
    }
    print_summary(&spec, id)
}

fn print_summary(spec: &ModelSpec, name: &str) -> i32 {
    let problems = models::validate(spec);
    if !problems.is_empty() {
        for p in problems {
            errln!("error: {p}");
        }
        return EXIT_INVALID;
    }
    if spec.kind == ModelKind::Declared {
        out!("{}", crate::ml::declared::summary(spec, name));
    } else {
        out!("{}", summary(spec));
    }
    EXIT_OK
}
