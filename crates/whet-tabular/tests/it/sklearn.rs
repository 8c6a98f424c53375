//! Fitted statistics against scikit-learn on the same data. The expected values come from
//! `tests/fixtures/make_sklearn_fixtures.py` (scikit-learn 1.9.1), stored in
//! `tests/fixtures/sklearn_expected.json`.

use std::path::PathBuf;

use polars::prelude::*;
use serde_json::Value;
use whet_tabular::{
    CategoricalFill, FillValue, FittedStep, ImputeConfig, NormMethod, NormalizeConfig, NumericFill,
    Stage, TableSpec, load_table,
};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("tests/fixtures")
    .join(name)
}

fn load(name: &str) -> DataFrame {
    load_table(&TableSpec::new(fixture(name))).unwrap().0
}

fn expected() -> Value {
    serde_json::from_slice(&std::fs::read(fixture("sklearn_expected.json")).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * (1.0 + b.abs())
}

const NUM: [&str; 4] = ["a", "b", "c", "d"];

#[test]
fn impute_statistics_equal_simple_imputer() {
    let train = load("sk_train.csv");
    let exp = expected();
    for (how, key) in [
        (NumericFill::Mean, "impute_mean"),
        (NumericFill::Median, "impute_median"),
        (NumericFill::Mode, "impute_most_frequent"),
        (NumericFill::Constant, "impute_constant"),
    ] {
        let cfg = ImputeConfig {
            numeric: how,
            value: -1.0,
            categorical: CategoricalFill::Mode,
            ..Default::default()
        };
        let FittedStep::Impute(fitted) = cfg.fit(&train).unwrap().to_step() else {
            panic!()
        };
        for (c, want) in NUM.iter().zip(floats(&exp[key])) {
            let Some(FillValue::Number(got)) = fitted.value(c) else {
                panic!("{c}")
            };
            assert!(close(*got, want), "{key} {c}: {got} vs {want}");
        }
        let Some(FillValue::Text(cat)) = fitted.value("cat") else {
            panic!()
        };
        assert_eq!(cat, exp["impute_cat_most_frequent"][0].as_str().unwrap());
    }
}

#[test]
fn scaler_statistics_equal_sklearn() {
    let train = load("sk_train.csv");
    let exp = expected();
    for (method, ck, sk) in [
        (NormMethod::Zscore, "standard_mean", "standard_scale"),
        (NormMethod::Minmax, "minmax_min", "minmax_range"),
        (NormMethod::Robust, "robust_center", "robust_scale"),
    ] {
        let cfg = NormalizeConfig {
            method,
            columns: vec![],
            exclude: vec![],
        };
        let FittedStep::Normalize(f) = cfg.fit(&train).unwrap().to_step() else {
            panic!()
        };
        for ((c, center), scale) in NUM.iter().zip(floats(&exp[ck])).zip(floats(&exp[sk])) {
            let p = f.get(c).unwrap();
            assert!(
                close(p.center, center),
                "{method:?} {c} center {} vs {center}",
                p.center
            );
            assert!(
                close(p.scale, scale),
                "{method:?} {c} scale {} vs {scale}",
                p.scale
            );
        }
    }
}

#[test]
fn mean_impute_then_zscore_on_test_equals_sklearn_pipeline() {
    let (train, test) = (load("sk_train.csv"), load("sk_test.csv"));
    let imp = ImputeConfig {
        numeric: NumericFill::Mean,
        ..Default::default()
    }
    .fit(&train)
    .unwrap();
    let train2 = imp.transform(train).unwrap();
    let sc = NormalizeConfig {
        method: NormMethod::Zscore,
        columns: vec![],
        exclude: vec![],
    }
    .fit(&train2)
    .unwrap();
    let out = sc.transform(imp.transform(test).unwrap()).unwrap();
    let exp = expected();
    let rows = exp["mean_then_standard_test"].as_array().unwrap();
    for (i, row) in rows.iter().enumerate() {
        for (c, want) in NUM.iter().zip(floats(row)) {
            let got = out.column(c).unwrap().f64().unwrap().get(i).unwrap();
            assert!((got - want).abs() < 1e-9, "row {i} {c}: {got} vs {want}");
        }
    }
}
