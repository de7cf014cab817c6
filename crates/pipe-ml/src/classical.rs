//! Classical classifiers on feature vectors: what the `stack` stage fits on a trained CNN's
//! penultimate-layer activations (the report's §4.2: the network's dense features fed to an
//! ensemble of trees). Two kinds, each from the crate that does it best in pure Rust:
//!
//! - `random_forest`: smartcore's forest (Breiman's: a bootstrap sample per tree, √p features
//!   tried per split, Gini). smartcore only votes, so the forest is fitted as one-tree forests
//!   with per-tree seeds and a class's probability is the share of trees voting for it.
//! - `gradient_boosting`: forust's gradient-boosted trees (XGBoost's algorithm, logistic loss,
//!   rows subsampled per tree so the seed matters); one booster per class against the rest when
//!   there are more than two classes, their probabilities normalised.
//!
//! Deterministic: the same features, labels, settings and seed give the same model, byte for
//! byte ([`Model::to_bytes`], a cache object), whatever the number of threads.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use smartcore::ensemble::random_forest_classifier::{
    RandomForestClassifier, RandomForestClassifierParameters,
};
use smartcore::linalg::basic::matrix::DenseMatrix;

/// Version of the serialised model: bump when its layout changes.
const FORMAT: u32 = 1;
/// Largest forest or number of boosting rounds.
const MAX_TREES: u32 = 100_000;

fn d_forest_trees() -> u32 {
    100
}
fn d_boosting_rounds() -> u32 {
    100
}
fn d_boosting_depth() -> u16 {
    3
}
fn d_learning_rate() -> f32 {
    0.1
}
fn d_subsample() -> f32 {
    0.8
}

/// Which classifier, with its settings (a `stack` stage's `classifier:`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Classifier {
    RandomForest(Forest),
    GradientBoosting(Boosting),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forest {
    #[serde(default = "d_forest_trees")]
    pub trees: u32,
    /// Deepest a tree grows; absent: until its leaves are pure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_depth: Option<u16>,
    /// Features tried per split; absent: √(features).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features_per_split: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Boosting {
    #[serde(default = "d_boosting_rounds")]
    pub rounds: u32,
    #[serde(default = "d_boosting_depth")]
    pub max_depth: u16,
    #[serde(default = "d_learning_rate")]
    pub learning_rate: f32,
    /// Share of the rows each tree is fitted on (stochastic gradient boosting).
    #[serde(default = "d_subsample")]
    pub subsample: f32,
}

impl Classifier {
    /// Every problem with the settings, each naming its field.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        let trees = |p: &mut Vec<String>, name: &str, n: u32| {
            if !(1..=MAX_TREES).contains(&n) {
                p.push(format!("{name}: {n} must be from 1 to {MAX_TREES}"));
            }
        };
        match self {
            Classifier::RandomForest(f) => {
                trees(&mut p, "trees", f.trees);
                if f.max_depth == Some(0) {
                    p.push("max_depth: must be at least 1".into());
                }
                if f.features_per_split == Some(0) {
                    p.push("features_per_split: must be at least 1".into());
                }
            }
            Classifier::GradientBoosting(b) => {
                trees(&mut p, "rounds", b.rounds);
                if b.max_depth == 0 {
                    p.push("max_depth: must be at least 1".into());
                }
                if !(b.learning_rate > 0.0 && b.learning_rate <= 1.0) {
                    p.push(format!(
                        "learning_rate: {} must be in (0, 1]",
                        b.learning_rate
                    ));
                }
                if !(b.subsample > 0.0 && b.subsample <= 1.0) {
                    p.push(format!("subsample: {} must be in (0, 1]", b.subsample));
                }
            }
        }
        p
    }
}

/// A feature matrix: `rows` vectors of `cols` values, row after row.
#[derive(Debug, Clone, Copy)]
pub struct Features<'a> {
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [f32],
}

impl Features<'_> {
    fn check(&self) -> Result<(), ClassicalError> {
        if self.rows.checked_mul(self.cols) != Some(self.data.len()) {
            return Err(ClassicalError::Input(format!(
                "{} values do not make {} rows of {} features",
                self.data.len(),
                self.rows,
                self.cols
            )));
        }
        if self.rows == 0 || self.cols == 0 {
            return Err(ClassicalError::Input("no features".into()));
        }
        if let Some(i) = self.data.iter().position(|x| !x.is_finite()) {
            return Err(ClassicalError::Input(format!(
                "feature {} of row {} is {} (features must be finite numbers)",
                i % self.cols,
                i / self.cols,
                self.data[i]
            )));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClassicalError {
    #[error("{0}")]
    Input(String),
    #[error("invalid classifier settings: {}", .0.join("; "))]
    Settings(Vec<String>),
    #[error("{0}")]
    Fit(String),
    #[error("not a classifier model: {0}")]
    Model(String),
}

type Tree = RandomForestClassifier<f32, u32, DenseMatrix<f32>, Vec<u32>>;

#[derive(Serialize, Deserialize)]
enum Fitted {
    /// One-tree forests.
    Forest(Vec<Tree>),
    /// One booster (two classes: it scores class 1) or one per class.
    Boosting(Vec<forust_ml::GradientBooster>),
}

/// A fitted classifier.
#[derive(Serialize, Deserialize)]
pub struct Model {
    format: u32,
    classifier: Classifier,
    classes: usize,
    features: usize,
    fitted: Fitted,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("classifier", &self.classifier)
            .field("classes", &self.classes)
            .field("features", &self.features)
            .finish_non_exhaustive()
    }
}

/// A seed for tree or booster `i`: splitmix64 over (seed, i).
fn member_seed(seed: u64, i: u64) -> u64 {
    let mut z = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Model {
    /// Fits `classifier` on `x` with labels `y` (each below `classes`, at least two of them
    /// present).
    pub fn fit(
        classifier: &Classifier,
        x: Features,
        y: &[u32],
        classes: usize,
        seed: u64,
    ) -> Result<Model, ClassicalError> {
        let problems = classifier.validate();
        if !problems.is_empty() {
            return Err(ClassicalError::Settings(problems));
        }
        x.check()?;
        if y.len() != x.rows {
            return Err(ClassicalError::Input(format!(
                "{} labels for {} rows",
                y.len(),
                x.rows
            )));
        }
        if classes < 2 {
            return Err(ClassicalError::Input(format!(
                "{classes} class: at least two are needed"
            )));
        }
        if let Some((i, l)) = y.iter().enumerate().find(|(_, l)| **l as usize >= classes) {
            return Err(ClassicalError::Input(format!(
                "label {l} of row {i} is not one of the {classes} classes"
            )));
        }
        if y.iter().all(|l| *l == y[0]) {
            return Err(ClassicalError::Input(format!(
                "every training row is of class {}: nothing to tell apart",
                y[0]
            )));
        }
        let fitted = match classifier {
            Classifier::RandomForest(f) => Fitted::Forest(fit_forest(f, x, y, seed)?),
            Classifier::GradientBoosting(b) => {
                Fitted::Boosting(fit_boosting(b, x, y, classes, seed)?)
            }
        };
        Ok(Model {
            format: FORMAT,
            classifier: classifier.clone(),
            classes,
            features: x.cols,
            fitted,
        })
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    pub fn features(&self) -> usize {
        self.features
    }

    /// Class probabilities, row after row (`rows × classes`, each row summing to 1).
    pub fn predict_proba(&self, x: Features) -> Result<Vec<f32>, ClassicalError> {
        x.check()?;
        if x.cols != self.features {
            return Err(ClassicalError::Input(format!(
                "rows of {} features, but the model was fitted on {}",
                x.cols, self.features
            )));
        }
        let k = self.classes;
        let mut out = vec![0f32; x.rows * k];
        match &self.fitted {
            Fitted::Forest(trees) => {
                let m = DenseMatrix::new(x.rows, x.cols, x.data.to_vec(), false)
                    .map_err(|e| ClassicalError::Input(e.to_string()))?;
                let votes = trees
                    .par_iter()
                    .map(|t| {
                        t.predict(&m)
                            .map_err(|e| ClassicalError::Fit(e.to_string()))
                    })
                    .collect::<Result<Vec<Vec<u32>>, _>>()?;
                let share = 1.0 / trees.len() as f32;
                for v in &votes {
                    for (row, &class) in v.iter().enumerate() {
                        out[row * k + class as usize] += share;
                    }
                }
            }
            Fitted::Boosting(boosters) => {
                let cols = column_major(x);
                let m = forust_ml::Matrix::new(&cols, x.rows, x.cols);
                let scores: Vec<Vec<f64>> = boosters
                    .iter()
                    .map(|b| b.predict(&m, true).iter().map(|z| sigmoid(*z)).collect())
                    .collect();
                for row in 0..x.rows {
                    let p = &mut out[row * k..(row + 1) * k];
                    if let [one] = scores.as_slice() {
                        p[1] = one[row] as f32;
                        p[0] = 1.0 - p[1];
                    } else {
                        let sum: f64 = scores.iter().map(|s| s[row]).sum();
                        for (c, s) in scores.iter().enumerate() {
                            p[c] = (s[row] / sum) as f32;
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// The probability of class 1 of each row (two classes: what `evaluate` thresholds).
    pub fn positive(&self, x: Features) -> Result<Vec<f32>, ClassicalError> {
        let k = self.classes;
        Ok(self.predict_proba(x)?.chunks(k).map(|p| p[1]).collect())
    }

    /// The model as bytes (JSON): the same fit gives the same bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ClassicalError> {
        serde_json::to_vec(self).map_err(|e| ClassicalError::Model(e.to_string()))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Model, ClassicalError> {
        let m: Model =
            serde_json::from_slice(bytes).map_err(|e| ClassicalError::Model(e.to_string()))?;
        if m.format != FORMAT {
            return Err(ClassicalError::Model(format!(
                "format {} (this pipe reads {FORMAT})",
                m.format
            )));
        }
        Ok(m)
    }
}

fn fit_forest(f: &Forest, x: Features, y: &[u32], seed: u64) -> Result<Vec<Tree>, ClassicalError> {
    let m = DenseMatrix::new(x.rows, x.cols, x.data.to_vec(), false)
        .map_err(|e| ClassicalError::Input(e.to_string()))?;
    let labels = y.to_vec();
    let mtry = f
        .features_per_split
        .unwrap_or_else(|| (x.cols as f64).sqrt().floor().max(1.0) as usize)
        .min(x.cols);
    (0..f.trees)
        .into_par_iter()
        .map(|i| {
            let mut params = RandomForestClassifierParameters::default()
                .with_n_trees(1)
                .with_m(mtry)
                .with_seed(member_seed(seed, u64::from(i)));
            if let Some(d) = f.max_depth {
                params = params.with_max_depth(d);
            }
            Tree::fit(&m, &labels, params).map_err(|e| ClassicalError::Fit(e.to_string()))
        })
        .collect()
}

fn fit_boosting(
    b: &Boosting,
    x: Features,
    y: &[u32],
    classes: usize,
    seed: u64,
) -> Result<Vec<forust_ml::GradientBooster>, ClassicalError> {
    let cols = column_major(x);
    let m = forust_ml::Matrix::new(&cols, x.rows, x.cols);
    let weights = vec![1.0; x.rows];
    // Two classes: one booster for class 1; more: one per class against the rest.
    let targets: Vec<u32> = if classes == 2 {
        vec![1]
    } else {
        (0..classes as u32).collect()
    };
    targets
        .iter()
        .map(|&c| {
            let target: Vec<f64> = y.iter().map(|&l| f64::from(u8::from(l == c))).collect();
            let mut booster = forust_ml::GradientBooster::default()
                .set_objective_type(forust_ml::objective::ObjectiveType::LogLoss)
                .set_iterations(b.rounds as usize)
                .set_learning_rate(b.learning_rate)
                .set_max_depth(usize::from(b.max_depth))
                .set_sample_method(forust_ml::sampler::SampleMethod::Random)
                .set_subsample(b.subsample)
                .set_seed(member_seed(seed, u64::from(c)));
            booster
                .fit(&m, &target, &weights, None)
                .map_err(|e| ClassicalError::Fit(e.to_string()))?;
            Ok(booster)
        })
        .collect()
}

/// Row-major f32 features as forust's column-major f64 matrix data.
fn column_major(x: Features) -> Vec<f64> {
    let mut out = vec![0f64; x.data.len()];
    for (i, v) in x.data.iter().enumerate() {
        let (row, col) = (i / x.cols, i % x.cols);
        out[col * x.rows + row] = f64::from(*v);
    }
    out
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

#[cfg(test)]
#[path = "classical_tests.rs"]
mod tests;
