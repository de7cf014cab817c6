use super::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn forest(trees: u32) -> Classifier {
    Classifier::RandomForest(Forest {
        trees,
        max_depth: None,
        features_per_split: None,
    })
}

fn boosting() -> Classifier {
    serde_json::from_str(r#"{"kind": "gradient_boosting"}"#).unwrap()
}

/// `n` rows of `dims` features: class `c`'s rows around `c · spread` in every dimension.
fn blobs(n: usize, dims: usize, classes: u32, spread: f32, seed: u64) -> (Vec<f32>, Vec<u32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in 0..n {
        let c = i as u32 % classes;
        for _ in 0..dims {
            x.push(c as f32 * spread + rng.random::<f32>() - 0.5);
        }
        y.push(c);
    }
    (x, y)
}

/// Class 1 where x0 · x1 > 0: no single split (and no linear model) separates it.
fn xor(n: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for _ in 0..n {
        let (a, b) = (
            rng.random::<f32>() * 2.0 - 1.0,
            rng.random::<f32>() * 2.0 - 1.0,
        );
        x.extend([a, b, rng.random::<f32>()]);
        y.push(u32::from(a * b > 0.0));
    }
    (x, y)
}

fn features(x: &[f32], cols: usize) -> Features<'_> {
    Features {
        rows: x.len() / cols,
        cols,
        data: x,
    }
}

fn accuracy(m: &Model, x: &[f32], cols: usize, y: &[u32]) -> f64 {
    let k = m.classes();
    let p = m.predict_proba(features(x, cols)).unwrap();
    let hits = p
        .chunks(k)
        .zip(y)
        .filter(|(row, l)| {
            let best = (0..k).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
            best == **l as usize
        })
        .count();
    hits as f64 / y.len() as f64
}

#[test]
fn both_kinds_learn_separable_and_nonlinear_problems() {
    let (x, y) = blobs(200, 8, 2, 0.8, 1);
    let (xt, yt) = blobs(200, 8, 2, 0.8, 2);
    let (q, r) = xor(400, 3);
    let (qt, rt) = xor(400, 4);
    for c in [forest(100), boosting()] {
        let m = Model::fit(&c, features(&x, 8), &y, 2, 7).unwrap();
        let acc = accuracy(&m, &xt, 8, &yt);
        assert!(acc >= 0.95, "{c:?} blobs: {acc}");
        let p = m.positive(features(&xt, 8)).unwrap();
        assert_eq!(p.len(), 200);
        assert!(p.iter().all(|p| (0.0..=1.0).contains(p)));
        let m = Model::fit(&c, features(&q, 3), &r, 2, 7).unwrap();
        let acc = accuracy(&m, &qt, 3, &rt);
        assert!(acc >= 0.9, "{c:?} xor: {acc}");
    }
}

#[test]
fn three_classes_get_probabilities_summing_to_one() {
    let (x, y) = blobs(300, 4, 3, 1.0, 5);
    let (xt, yt) = blobs(150, 4, 3, 1.0, 6);
    for c in [forest(50), boosting()] {
        let m = Model::fit(&c, features(&x, 4), &y, 3, 0).unwrap();
        let acc = accuracy(&m, &xt, 4, &yt);
        assert!(acc >= 0.9, "{c:?}: {acc}");
        let p = m.predict_proba(features(&xt, 4)).unwrap();
        for row in p.chunks(3) {
            let sum: f32 = row.iter().sum();
            assert!((sum - 1.0).abs() < 1e-4, "{row:?}");
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_bytes_and_another_seed_another_model() {
    let (x, y) = xor(300, 8);
    let (xt, _) = xor(100, 9);
    for c in [forest(30), boosting()] {
        let fit = |seed| Model::fit(&c, features(&x, 3), &y, 2, seed).unwrap();
        let a = fit(11);
        let bytes = a.to_bytes().unwrap();
        assert_eq!(bytes, fit(11).to_bytes().unwrap(), "{c:?}");
        let b = fit(12);
        assert_ne!(bytes, b.to_bytes().unwrap(), "{c:?}");
        let (pa, pb) = (
            a.positive(features(&xt, 3)).unwrap(),
            b.positive(features(&xt, 3)).unwrap(),
        );
        assert_ne!(pa, pb, "{c:?}: another seed, another model");
        // One thread or several: the same model.
        let single = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| fit(11).to_bytes().unwrap());
        assert_eq!(bytes, single, "{c:?} on one thread");
        // Read back, it predicts what it predicted.
        let back = Model::from_bytes(&bytes).unwrap();
        assert_eq!(back.positive(features(&xt, 3)).unwrap(), pa);
        assert_eq!(back.to_bytes().unwrap(), bytes);
    }
}

#[test]
fn settings_parse_with_defaults_and_bad_ones_are_all_reported() {
    let f: Classifier = serde_json::from_str(r#"{"kind": "random_forest"}"#).unwrap();
    assert_eq!(f, forest(100));
    match boosting() {
        Classifier::GradientBoosting(b) => {
            assert_eq!((b.rounds, b.max_depth), (100, 3));
            assert_eq!((b.learning_rate, b.subsample), (0.1, 0.8));
        }
        other => panic!("{other:?}"),
    }
    let unknown = serde_json::from_str::<Classifier>(r#"{"kind": "random_forest", "eta": 1}"#);
    assert!(
        unknown
            .unwrap_err()
            .to_string()
            .contains("unknown field `eta`")
    );
    assert!(serde_json::from_str::<Classifier>(r#"{"kind": "svm"}"#).is_err());
    let bad: Classifier = serde_json::from_str(
        r#"{"kind": "gradient_boosting", "rounds": 0, "max_depth": 0,
            "learning_rate": 0, "subsample": 1.5}"#,
    )
    .unwrap();
    assert_eq!(bad.validate().len(), 4, "{:?}", bad.validate());
    let (x, y) = blobs(10, 2, 2, 1.0, 0);
    let e = Model::fit(&bad, features(&x, 2), &y, 2, 0)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("rounds: 0 must be from 1") && e.contains("subsample: 1.5"),
        "{e}"
    );
    let zero = Classifier::RandomForest(Forest {
        trees: 0,
        max_depth: Some(0),
        features_per_split: Some(0),
    });
    assert_eq!(zero.validate().len(), 3);
}

#[test]
fn bad_inputs_are_clear_errors() {
    let (x, y) = blobs(10, 2, 2, 1.0, 0);
    let c = forest(5);
    let err = |x: &[f32], y: &[u32], classes| {
        Model::fit(&c, features(x, 2), y, classes, 0)
            .unwrap_err()
            .to_string()
    };
    assert!(err(&x, &y[..9], 2).contains("9 labels for 10 rows"));
    assert!(err(&x, &y, 1).contains("at least two"));
    let mut high = y.clone();
    high[3] = 2;
    assert!(err(&x, &high, 2).contains("label 2 of row 3 is not one of the 2 classes"));
    assert!(err(&x, &[0; 10], 2).contains("every training row is of class 0"));
    let mut nan = x.clone();
    nan[7] = f32::NAN;
    assert!(err(&nan, &y, 2).contains("feature 1 of row 3 is NaN"));
    assert!(err(&[], &[], 2).contains("no features"));
    let odd = Features {
        rows: 3,
        cols: 2,
        data: &x[..5],
    };
    let e = Model::fit(&c, odd, &y[..3], 2, 0).unwrap_err().to_string();
    assert!(
        e.contains("5 values do not make 3 rows of 2 features"),
        "{e}"
    );
    let m = Model::fit(&c, features(&x, 2), &y, 2, 0).unwrap();
    let e = m
        .predict_proba(features(&x[..9], 3))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("rows of 3 features, but the model was fitted on 2"),
        "{e}"
    );
    assert!(Model::from_bytes(b"{}").is_err());
    let bytes = String::from_utf8(m.to_bytes().unwrap()).unwrap();
    let other = bytes.replacen("\"format\":1", "\"format\":99", 1);
    let e = Model::from_bytes(other.as_bytes()).unwrap_err().to_string();
    assert!(e.contains("format 99"), "{e}");
}
