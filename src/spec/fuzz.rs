//! Property tests of the YAML loader: whatever the bytes of a pipeline file or a `--set`,
//! [`load`](super::load) returns a pipeline or diagnostics, never panics, and every diagnostic
//! names its file. CI runs 64 cases per property; `bench/fuzz.sh` runs many more
//! (`PROPTEST_CASES`).

use super::{Override, load};
use crate::testing::config;
use proptest::prelude::*;

const SEED_PIPELINE: &str = "\
name: fuzz
params:
  seed: 3
  lr: 1.0e-4
stages:
  src:
    kind: source
    format: synthetic
    count: 100
    height: 16
    width: 16
  hashes:
    kind: hash
    inputs: {data: src}
  groups:
    kind: dedup
    radius: 1
    inputs: {hashes: hashes, data: src}
  split:
    kind: split
    seed: ${params.seed}
    inputs: {data: src, groups: groups}
  train:
    kind: train
    model: b1
    lr: ${params.lr}
    plateau: {patience: 2}
    inputs: {data: src, split: split}
";

/// Scalars worth trying in any position.
fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(".inf".to_string()),
        Just("-.inf".to_string()),
        Just(".nan".to_string()),
        Just("1e400".to_string()),
        Just("9223372036854775807".to_string()),
        Just("-9223372036854775808".to_string()),
        Just("18446744073709551616".to_string()),
        Just("~".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("\"\"".to_string()),
        Just("../../x".to_string()),
        Just("${params.seed}".to_string()),
        Just("${params.nope}".to_string()),
        Just("${".to_string()),
        Just("&a 1".to_string()),
        Just("*a".to_string()),
        Just("{<<: *a, k: 1}".to_string()),
        Just("!!float 1".to_string()),
        Just("!!binary x".to_string()),
        Just("- - - - - - - - - - x".to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<f64>().prop_map(|f| f.to_string()),
        "[a-z_./ -]{0,12}",
    ]
}

/// The seed pipeline with one line replaced, inserted or cut, or one value swapped.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let lines = SEED_PIPELINE.lines().count();
    (
        0..lines,
        0..4u8,
        scalar(),
        any::<u8>(),
        0..SEED_PIPELINE.len(),
    )
        .prop_map(|(at, how, value, byte, offset)| {
            let mut lines: Vec<String> = SEED_PIPELINE.lines().map(str::to_string).collect();
            match how {
                0 => {
                    if let Some((k, _)) = lines[at].clone().split_once(':') {
                        lines[at] = format!("{k}: {value}");
                    }
                }
                1 => lines.insert(at, format!("    {value}: {value}")),
                2 => {
                    lines.truncate(at);
                }
                _ => {
                    let mut bytes = lines.join("\n").into_bytes();
                    if offset < bytes.len() {
                        bytes[offset] = byte;
                    }
                    return bytes;
                }
            }
            lines.join("\n").into_bytes()
        })
}

fn check_load(bytes: &[u8], sets: &[String]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let path = dir.path().join("p.yaml");
    std::fs::write(&path, bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let overrides: Vec<Override> = sets
        .iter()
        .map(|s| s.parse().unwrap_or_else(|e| match e {}))
        .collect();
    match load(&path, &overrides) {
        Ok(p) => {
            for id in p.stages.keys() {
                prop_assert!(super::ident::check("stage id", id).is_ok(), "{id:?}");
            }
        }
        Err(diags) => {
            prop_assert!(!diags.is_empty());
            for d in diags {
                prop_assert!(!d.message.is_empty(), "{d:?}");
                prop_assert!(!d.file.as_os_str().is_empty(), "{d:?}");
                prop_assert!(d.to_string().len() < 4000, "{}", d.to_string().len());
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check_load(&bytes, &[])?;
    }

    #[test]
    fn mutated_pipelines_never_panic(bytes in mutated()) {
        check_load(&bytes, &[])?;
    }

    #[test]
    fn arbitrary_overrides_never_panic(
        path in prop_oneof![
            Just("stages.src.count".to_string()),
            Just("stages.train.plateau.patience".to_string()),
            Just("stages.train.lr.x".to_string()),
            Just("params.seed".to_string()),
            Just("params.nope".to_string()),
            "[a-z.]{0,20}",
        ],
        value in scalar(),
        raw in "\\PC{0,30}",
    ) {
        check_load(SEED_PIPELINE.as_bytes(), &[format!("{path}={value}"), raw])?;
    }
}
