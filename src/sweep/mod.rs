//! Sweeps and random searches: many variants of one pipeline, each exactly a set of `--set`
//! overrides, run one after another through the same engine so that every stage the variants
//! share is computed once and then found in the cache.
//!
//! This file holds what a variant is and the grid (`--sweep`); [`search`] draws variants at
//! random (`--search`), [`space`] says which of the two a run asked for and ranks variants by
//! the objective, [`table`] shows a sweep's records. The `run --sweep` command (validating and
//! running the variants, printing the ranking) is in the command layer.

pub mod prune;
pub mod search;
pub mod space;
pub mod study;
pub mod table;
pub mod tpe;
pub mod trial;

use crate::quote::quote;
use crate::spec::Override;
use std::collections::BTreeMap;

/// Most variants one sweep or search may have: each is loaded, validated and kept in memory
/// before the first runs, so a 1000×1000×1000 grid or `--trials 1000000000` would exhaust memory.
pub const MAX_VARIANTS: usize = 100_000;

/// Echoed arguments are cut with [`quote`] (one may be 100 KB).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SweepError {
    #[error("`{}`: expected PATH=VALUES, e.g. stages.train.lr=1e-3,1e-4", quote(.arg))]
    NoEquals { arg: String },
    #[error("`{}`: {message}", quote(.arg))]
    Value { arg: String, message: String },
    #[error("`{}`: no values after `=`", quote(.arg))]
    Empty { arg: String },
    #[error("`{}`: unbalanced quotes or brackets in the values", quote(.arg))]
    Unbalanced { arg: String },
    #[error("`{}` is swept or searched twice", quote(.path))]
    Repeated { path: String },
    #[error("`{}` is both swept and given to --set", quote(.path))]
    AlsoSet { path: String },
    #[error("{what} makes {count} variants, more than the {MAX_VARIANTS} a sweep may have")]
    TooMany { what: String, count: String },
}

/// One swept path and the values it takes, each the text a `--set PATH=VALUE` would take.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub path: String,
    pub values: Vec<String>,
}

impl std::str::FromStr for Axis {
    type Err = SweepError;
    /// `PATH=V1,V2,…`: values are split at commas outside quotes, brackets and braces, so
    /// `'params.tags=[a,b],[c]'` sweeps two lists and `'params.name="x,y",z'` two strings.
    fn from_str(arg: &str) -> Result<Self, SweepError> {
        let (path, values) = arg.split_once('=').ok_or_else(|| SweepError::NoEquals {
            arg: arg.to_string(),
        })?;
        let path = path.trim().to_string();
        let values = split_top_level(values).ok_or_else(|| SweepError::Unbalanced {
            arg: arg.to_string(),
        })?;
        if values.iter().all(|v| v.trim().is_empty()) {
            return Err(SweepError::Empty {
                arg: arg.to_string(),
            });
        }
        let values: Vec<String> = values.into_iter().map(|v| v.trim().to_string()).collect();
        for v in &values {
            check_override(&path, v).map_err(|message| SweepError::Value {
                arg: arg.to_string(),
                message,
            })?;
        }
        Ok(Axis { path, values })
    }
}

/// The override `--set PATH=VALUE` would give, or its message.
pub(crate) fn check_override(path: &str, value: &str) -> Result<Override, String> {
    if value.is_empty() {
        return Err("an empty value".into());
    }
    let Ok(o) = format!("{path}={value}").parse::<Override>();
    match o.error {
        Some(message) => Err(message),
        None => Ok(o),
    }
}

/// Splits at commas that are outside '…', "…", […] and {…}; `None` if those do not balance.
fn split_top_level(s: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') => {
                depth -= 1;
                if depth < 0 {
                    return None;
                }
            }
            (None, ',') if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if depth != 0 || quote.is_some() {
        return None;
    }
    parts.push(cur);
    Some(parts)
}

/// One variant: override path → value text, in the order the axes were given.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub values: Vec<(String, String)>,
}

impl Variant {
    /// The variant's `--set` overrides (its values were checked when parsed).
    pub fn overrides(&self) -> Result<Vec<Override>, String> {
        self.values
            .iter()
            .map(|(p, v)| check_override(p, v))
            .collect()
    }

    pub fn map(&self) -> BTreeMap<String, String> {
        self.values.iter().cloned().collect()
    }

    /// `lr=0.001,dropout=0.3`: each path by its last segment unless two axes share it.
    pub fn name(&self) -> String {
        let paths: Vec<&str> = self.values.iter().map(|(p, _)| p.as_str()).collect();
        self.values
            .iter()
            .map(|(p, v)| format!("{}={v}", short_name(p, &paths)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A recorded variant's name (`lr=0.001,dropout=0.3`), its paths in the record's order.
pub fn name_of(values: &BTreeMap<String, String>) -> String {
    Variant {
        values: values.clone().into_iter().collect(),
    }
    .name()
}

/// The last segment of `path`, or the whole path when another of `all` ends the same way.
pub fn short_name<'a>(path: &'a str, all: &[&str]) -> &'a str {
    let last = |p: &'a str| p.rsplit('.').next().unwrap_or(p);
    let tail = last(path);
    let shared = all
        .iter()
        .filter(|p| p.rsplit('.').next() == Some(tail))
        .count();
    if shared > 1 { path } else { tail }
}

/// Rejects a path swept twice, or swept and also set.
pub fn check_paths<'a>(
    swept: impl IntoIterator<Item = &'a str>,
    set: &[Override],
) -> Result<(), SweepError> {
    let mut seen = std::collections::BTreeSet::new();
    for p in swept {
        if !seen.insert(p) {
            return Err(SweepError::Repeated { path: p.into() });
        }
        if set.iter().any(|o| o.path.join(".") == p) {
            return Err(SweepError::AlsoSet { path: p.into() });
        }
    }
    Ok(())
}

/// The cartesian product of the axes, the last axis varying fastest; at most [`MAX_VARIANTS`].
pub fn grid(axes: &[Axis]) -> Result<Vec<Variant>, SweepError> {
    let count = axes
        .iter()
        .try_fold(1usize, |n, a| n.checked_mul(a.values.len()));
    if count.is_none_or(|n| n > MAX_VARIANTS) {
        let sizes: Vec<String> = axes.iter().map(|a| a.values.len().to_string()).collect();
        return Err(SweepError::TooMany {
            what: format!("--sweep ({})", quote(&sizes.join(" × "))),
            count: count.map_or(format!("more than {}", usize::MAX), |n| n.to_string()),
        });
    }
    let mut out = vec![Variant { values: Vec::new() }];
    for axis in axes {
        out = out
            .into_iter()
            .flat_map(|v| {
                axis.values.iter().map(move |value| {
                    let mut values = v.values.clone();
                    values.push((axis.path.clone(), value.clone()));
                    Variant { values }
                })
            })
            .collect();
    }
    Ok(out)
}

/// A short, stable id of a sweep: the same pipeline, overrides and variants give the same id,
/// so rerunning a sweep refreshes its records instead of starting a new group.
pub fn sweep_id(pipeline: &str, set: &[Override], spec: &str) -> String {
    let mut h = blake3::Hasher::new();
    for part in [pipeline.to_string(), format!("{}", set.len())]
        .into_iter()
        .chain(set.iter().map(|o| o.text.clone()))
        .chain([spec.to_string()])
    {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().to_hex()[..12].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axis(s: &str) -> Axis {
        s.parse().unwrap()
    }

    #[test]
    fn values_split_at_top_level_commas_only() {
        assert_eq!(
            axis("stages.t.lr=1e-3, 1e-4").values,
            ["1e-3", "1e-4"].map(String::from)
        );
        assert_eq!(
            axis("params.tags=[a,b],[c],{k: 1, j: 2}").values,
            ["[a,b]", "[c]", "{k: 1, j: 2}"].map(String::from)
        );
        assert_eq!(
            axis(r#"params.name="x,y",'z,w',v"#).values,
            [r#""x,y""#, "'z,w'", "v"].map(String::from)
        );
    }

    #[test]
    fn bad_axes_are_clear_errors() {
        let err = |s: &str| s.parse::<Axis>().unwrap_err().to_string();
        assert!(err("stages.t.lr").contains("expected PATH=VALUES"));
        assert!(err("stages.t.lr=").contains("no values"));
        assert!(err("stages.t.lr=[1,2").contains("unbalanced"));
        assert!(err("stages.t.lr=\"a,b").contains("unbalanced"));
        assert!(err("stages.t.lr=1,,2").contains("an empty value"));
        assert!(
            err("lr=1,2").contains("stages.ID.FIELD"),
            "{}",
            err("lr=1,2")
        );
        assert!(err("stages.t.lr=1,[").contains("unbalanced"));
    }

    #[test]
    fn the_grid_is_the_cartesian_product_last_axis_fastest() {
        let g = grid(&[
            axis("stages.t.lr=0.01,0.001"),
            axis("stages.t.dropout=0.1,0.3,0.5"),
        ])
        .unwrap();
        assert_eq!(g.len(), 6);
        let names: Vec<String> = g.iter().map(Variant::name).collect();
        assert_eq!(names[0], "lr=0.01,dropout=0.1");
        assert_eq!(names[1], "lr=0.01,dropout=0.3");
        assert_eq!(names[5], "lr=0.001,dropout=0.5");
        assert_eq!(g[0].overrides().unwrap().len(), 2);
        assert_eq!(grid(&[]).unwrap().len(), 1, "no axis: the pipeline itself");
    }

    #[test]
    fn grids_larger_than_the_bound_are_refused_before_any_is_built() {
        let thousand: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
        let a = |p: &str| axis(&format!("stages.t.{p}={}", thousand.join(",")));
        let e = grid(&[a("x"), a("y"), a("z")]).unwrap_err().to_string();
        assert_eq!(
            e,
            "--sweep (1000 × 1000 × 1000) makes 1000000000 variants, more than the 100000 a \
             sweep may have"
        );
        let many: Vec<Axis> = (0..64)
            .map(|i| axis(&format!("stages.t.p{i}=1,2")))
            .collect();
        let e = grid(&many).unwrap_err().to_string();
        assert!(
            e.contains("makes more than 18446744073709551615 variants"),
            "{e}"
        );
        assert_eq!(grid(&[a("x"), a("y")][..1]).unwrap().len(), 1000);
        let hundred: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        let h = |p: &str| axis(&format!("stages.t.{p}={}", hundred.join(",")));
        assert!(grid(&[h("x"), h("y"), h("z")]).is_err(), "a million");
        let ten = axis("stages.t.z=1,2,3,4,5,6,7,8,9,10");
        assert_eq!(grid(&[h("x"), h("y"), ten]).unwrap().len(), MAX_VARIANTS);
    }

    #[test]
    fn names_keep_full_paths_only_when_last_segments_clash() {
        let v = Variant {
            values: vec![
                ("stages.a.lr".into(), "1".into()),
                ("stages.b.lr".into(), "2".into()),
                ("params.seed".into(), "3".into()),
            ],
        };
        assert_eq!(v.name(), "stages.a.lr=1,stages.b.lr=2,seed=3");
    }

    #[test]
    fn paths_swept_twice_or_also_set_are_rejected() {
        let set: Vec<Override> = vec!["stages.t.lr=1".parse().unwrap()];
        assert_eq!(
            check_paths(["stages.t.epochs", "stages.t.epochs"], &[]),
            Err(SweepError::Repeated {
                path: "stages.t.epochs".into()
            })
        );
        assert_eq!(
            check_paths(["stages.t.lr"], &set),
            Err(SweepError::AlsoSet {
                path: "stages.t.lr".into()
            })
        );
        assert!(check_paths(["stages.t.dropout"], &set).is_ok());
    }

    #[test]
    fn sweep_ids_are_stable_and_tell_specs_apart() {
        let a = sweep_id("b3", &[], "lr=1,2");
        assert_eq!(a, sweep_id("b3", &[], "lr=1,2"));
        assert_eq!(a.len(), 12);
        assert_ne!(a, sweep_id("b3", &[], "lr=1,3"));
        assert_ne!(a, sweep_id("b2", &[], "lr=1,2"));
        let set: Vec<Override> = vec!["stages.t.epochs=1".parse().unwrap()];
        assert_ne!(a, sweep_id("b3", &set, "lr=1,2"));
    }
}
