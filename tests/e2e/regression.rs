//! Regression targets (issue 15): the target standardised on the training split and read back
//! in its units, the regression charts, the linear flights pipeline against ordinary least
//! squares, and the task/target checks `whet validate` makes against the data.

use crate::catalogue::write;
use crate::util::{dataset, repo, whet};
use serde_json::Value;
use std::path::Path;

fn read_json(p: &Path) -> Value {
    let text =
        std::fs::read_to_string(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

/// The tabular part of a run's manifest.
fn tables_manifest(run: &Path) -> Value {
    read_json(&run.join("manifest.json"))["preprocessing"]["tables"].clone()
}

/// Least squares with an intercept by the normal equations (f64, Gaussian elimination with
/// partial pivoting; a ridge of 1e-9 × the diagonal keeps constant or collinear columns, such as
/// complete one-hot groups, solvable without moving the fit): the coefficients, intercept last.
fn ols(x: &[Vec<f64>], y: &[f64]) -> Vec<f64> {
    let p = x[0].len() + 1;
    // The augmented matrix [X'X | X'y] of the rows with a 1 appended (the intercept).
    let mut a = vec![vec![0.0f64; p + 1]; p];
    for (xi, &yi) in x.iter().zip(y) {
        let r: Vec<f64> = xi.iter().copied().chain([1.0]).collect();
        for (aj, &rj) in a.iter_mut().zip(&r) {
            for (ajk, &rk) in aj.iter_mut().zip(&r) {
                *ajk += rj * rk;
            }
            aj[p] += rj * yi;
        }
    }
    for (j, aj) in a.iter_mut().enumerate() {
        aj[j] += 1e-9 * aj[j].max(1.0);
    }
    for c in 0..p {
        let piv = (c..p)
            .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
            .unwrap();
        a.swap(c, piv);
        let pivot_row = a[c].clone();
        for (r, ar) in a.iter_mut().enumerate() {
            if r != c {
                let f = ar[c] / pivot_row[c];
                for (v, &pv) in ar.iter_mut().zip(&pivot_row).skip(c) {
                    *v -= f * pv;
                }
            }
        }
    }
    a.iter().enumerate().map(|(j, aj)| aj[p] / aj[j]).collect()
}

fn r2(actual: &[f64], predicted: &[f64]) -> f64 {
    let mean = actual.iter().sum::<f64>() / actual.len() as f64;
    let sse: f64 = actual
        .iter()
        .zip(predicted)
        .map(|(a, p)| (a - p).powi(2))
        .sum();
    let sst: f64 = actual.iter().map(|a| (a - mean).powi(2)).sum();
    1.0 - sse / sst
}

#[test]
fn linear_flights_arrival_delay_matches_least_squares() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = repo().join("pipelines/flights-arr-delay.yaml");
    let pipeline = pipeline.to_str().unwrap();
    let r = whet(dir.path(), &["run", pipeline, "--out", "run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("test r2"), "{}", r.stdout);
    let r = whet(
        dir.path(),
        &["export", pipeline, "--out", "exp", "--format", "npy"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let read = |name: &str| whet::tabular::read_npy(&dir.path().join("exp").join(name)).unwrap();
    let (train_x, train_y, test_x, test_y) = (
        read("train_x.npy"),
        read("train_y.npy"),
        read("test_x.npy"),
        read("test_y.npy"),
    );
    // Exported targets are in minutes; the run's scale is their training mean and std.
    let ty: Vec<f64> = train_y.column(0).iter().map(|&v| f64::from(v)).collect();
    let mean = ty.iter().sum::<f64>() / ty.len() as f64;
    let std = (ty.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / ty.len() as f64).sqrt();
    let scale = &tables_manifest(&dir.path().join("run"))["target_scale"];
    assert!(
        (scale["mean"].as_f64().unwrap() - mean).abs() < 1e-6 * std,
        "{scale}"
    );
    assert!(
        (scale["std"].as_f64().unwrap() - std).abs() < 1e-6 * std,
        "{scale}"
    );

    let rows: Vec<Vec<f64>> = train_x
        .rows()
        .into_iter()
        .map(|r| r.iter().map(|&v| f64::from(v)).collect())
        .collect();
    let beta = ols(&rows, &ty);
    let (d, actual): (usize, Vec<f64>) = (
        test_x.ncols(),
        test_y.column(0).iter().map(|&v| f64::from(v)).collect(),
    );
    let predicted: Vec<f64> = test_x
        .rows()
        .into_iter()
        .map(|r| {
            r.iter()
                .zip(&beta)
                .map(|(&x, b)| f64::from(x) * b)
                .sum::<f64>()
                + beta[d]
        })
        .collect();
    let ols_r2 = r2(&actual, &predicted);
    let m = read_json(&dir.path().join("run/metrics.json"));
    let whet_r2 = m["test"]["r2"].as_f64().unwrap();
    assert!(
        ols_r2 > 0.5,
        "least squares R² {ols_r2}: the pipeline lost its features"
    );
    assert!(
        (whet_r2 - ols_r2).abs() <= 0.01,
        "test R²: whet {whet_r2}, least squares {ols_r2}"
    );
    // The errors are in minutes: the RMSE of least squares is of the same size as whet's.
    let ols_mse = actual
        .iter()
        .zip(&predicted)
        .map(|(a, p)| (a - p).powi(2))
        .sum::<f64>()
        / actual.len() as f64;
    let whet_mse = m["test"]["mse"].as_f64().unwrap();
    assert!(
        (whet_mse / ols_mse - 1.0).abs() < 0.1,
        "test MSE: whet {whet_mse}, least squares {ols_mse} (minutes²)"
    );
    for f in ["predicted-vs-actual", "residuals"] {
        for ext in ["png", "svg"] {
            let p = dir.path().join("run").join(format!("{f}.{ext}"));
            assert!(p.metadata().is_ok_and(|m| m.len() > 0), "{}", p.display());
        }
    }
}

/// 153 rows of the weather table, as a new user would try a small regression table: the
/// temperature from the dew point and the humidity, a linear model, Adam at lr 0.01, 200 epochs.
fn small_weather_run(dir: &Path, scale: &str) -> Value {
    let text = format!(
        r#"name: small
seed: 1
data:
  tables:
    weather: {{ path: {w}, limit: 153 }}
  target: {{ regression: temp{scale} }}
steps:
  - exclude: [year, month, day, hour, wind_dir, wind_speed, wind_gust, precip, pressure, visib]
  - normalize: {{ method: zscore }}
split: {{ method: random, test: 0.2, validation: 0.1 }}
model: {{ task: regression, hidden: [] }}
train:
  optimizer: {{ adam: {{ lr: 0.01 }} }}
  batch_size: 32
  epochs: 200
"#,
        w = dataset("nycflights13/weather.csv.gz"),
    );
    write(dir, "run.yaml", text);
    let r = whet(dir, &["run", "run.yaml", "--out", "out"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    read_json(&dir.join("out/metrics.json"))
}

#[test]
fn small_table_regression_converges_because_the_target_is_scaled() {
    let scaled = tempfile::tempdir().unwrap();
    let m = small_weather_run(scaled.path(), "");
    let r2_scaled = m["test"]["r2"].as_f64().unwrap();
    let raw = tempfile::tempdir().unwrap();
    let m_raw = small_weather_run(raw.path(), ", scale: false");
    let r2_raw = m_raw["test"]["r2"].as_f64().unwrap();
    assert!(r2_scaled > 0.8, "scaled target: test R² {r2_scaled}");
    // Without the scale the bias cannot climb to the mean in 200 epochs (measured: R² 0.994
    // scaled, -19.1 with `scale: false`).
    assert!(
        r2_raw < r2_scaled - 0.3,
        "raw target: test R² {r2_raw}, scaled {r2_scaled}"
    );
    assert!(tables_manifest(&raw.path().join("out"))["target_scale"].is_null());
    assert!(
        tables_manifest(&scaled.path().join("out"))["target_scale"]["std"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}

/// A table for the validate checks: a text column, a fractional one, 150 integer classes, a 0/1
/// flag, two labels and three values.
fn check_table(dir: &Path) {
    let mut s = String::from("x,name,price,many,flag,yesno,three\n");
    for i in 0..300 {
        s.push_str(&format!(
            "{i},{},{}.5,{},{},{},{}\n",
            ["ab", "cd", "ef"][i % 3],
            i % 7,
            i % 150,
            i % 2,
            ["yes", "no"][i % 2],
            i % 3
        ));
    }
    write(dir, "t.csv", s);
}

/// `whet validate` on a run file over `t.csv` with `task` and `target` (written on line 6).
fn validate(task: &str, target: &str) -> crate::util::Run {
    let dir = tempfile::tempdir().unwrap();
    check_table(dir.path());
    let text = format!(
        "name: check\ndata:\n  tables:\n    t: t.csv\n  main: t\n  target: {target}\nsteps:\n  - normalize: {{ method: zscore }}\nmodel: {{ task: {task} }}\ntrain: {{ optimizer: {{ sgd: {{ lr: 0.1 }} }}, epochs: 1 }}\n"
    );
    write(dir.path(), "run.yaml", text);
    whet(dir.path(), &["validate", "run.yaml"])
}

fn assert_refused(r: &crate::util::Run, at: &str, fragments: &[&str]) {
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains(at), "expected `{at}` in:\n{}", r.stderr);
    for f in fragments {
        assert!(r.stderr.contains(f), "expected `{f}` in:\n{}", r.stderr);
    }
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
}

#[test]
fn validate_refuses_a_regression_task_on_a_text_column() {
    let r = validate("regression", "{ regression: name }");
    assert_refused(
        &r,
        "run.yaml:6:",
        &[
            "at `data.target.regression`",
            "`name` holds",
            "e.g. `ab`",
            "model.task: classification",
        ],
    );
}

#[test]
fn validate_refuses_too_many_classes_and_names_the_key() {
    let r = validate("classification", "{ column: many }");
    assert_refused(
        &r,
        "run.yaml:6:",
        &[
            "at `data.target.column`",
            "150 distinct values",
            "`data.target.max_classes` (default 100)",
            "regression: many",
        ],
    );
    let r = validate("classification", "{ column: many, max_classes: 150 }");
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn validate_refuses_fractional_class_labels() {
    let r = validate("classification", "{ column: price }");
    assert_refused(
        &r,
        "run.yaml:6:",
        &[
            "at `data.target.column`",
            "fractional numbers (e.g. 0.5)",
            "regression: price",
            "threshold",
        ],
    );
}

#[test]
fn validate_refuses_a_binary_task_without_threshold() {
    let r = validate("binary", "{ column: three }");
    assert_refused(
        &r,
        "run.yaml:6:",
        &[
            "at `data.target.column`",
            "3 distinct values",
            "neither 0/1 nor two values",
            "threshold: t",
        ],
    );
    // A 0/1 column and a two-label column are binary targets as they are (see
    // `binary_task_on_a_two_label_column_runs_without_threshold`).
    for ok in ["{ column: flag }", "{ column: yesno }"] {
        let r = validate("binary", ok);
        assert_eq!(r.code, 0, "{ok}: {}", r.stderr);
    }
    let r = validate("binary", "{ column: flag, threshold: 0.5 }");
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn validate_refuses_a_regression_task_on_a_class_target() {
    // The issue's example: `{ column: c }` with `task: regression` used to become a one-hot
    // "regression" over every distinct value.
    let r = validate("regression", "{ column: price }");
    assert_refused(
        &r,
        "run.yaml:6:",
        &[
            "at `data.target.column`",
            "one class per distinct value",
            "write `target: { regression: price }`",
        ],
    );
    let r = validate("classification", "{ regression: price }");
    assert_refused(
        &r,
        "run.yaml:6:",
        &[
            "at `data.target.regression`",
            "needs `model.task: regression`",
        ],
    );
    let r = validate("regression", "{ regression: price }");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = validate("regression", "{ regression: price, scale: false }");
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn too_many_classes_past_the_scanned_rows_fail_the_run_with_the_key() {
    // 20,000 rows: the first 10,000 (what `validate` reads) have 50 classes, the rest 150.
    let dir = tempfile::tempdir().unwrap();
    let mut s = String::from("x,c\n");
    for i in 0..20_000 {
        let c = if i < 10_000 { i % 50 } else { i % 150 };
        s.push_str(&format!("{i},{c}\n"));
    }
    write(dir.path(), "t.csv", s);
    let text = "name: late\ndata:\n  tables:\n    t: t.csv\n  target: { column: c }\nmodel: { task: classification }\ntrain: { optimizer: { sgd: { lr: 0.1 } }, epochs: 1 }\n";
    write(dir.path(), "run.yaml", text);
    let r = whet(dir.path(), &["validate", "run.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = whet(dir.path(), &["run", "run.yaml", "--out", "out"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    for f in [
        "data.target.column",
        "150 distinct values in all 20000 rows",
        "max_classes",
        "t.csv",
    ] {
        assert!(r.stderr.contains(f), "expected `{f}` in:\n{}", r.stderr);
    }
}

#[test]
fn binary_task_on_a_two_label_column_runs_without_threshold() {
    let dir = tempfile::tempdir().unwrap();
    check_table(dir.path());
    let text = "name: labels\nseed: 1\ndata:\n  tables:\n    t: t.csv\n  target: { column: yesno }\nsteps:\n  - normalize: { method: zscore }\nsplit: { method: random, test: 0.3, validation: 0.1 }\nmodel: { task: binary }\ntrain: { optimizer: { adam: { lr: 0.05 } }, epochs: 30, batch_size: 16 }\n";
    write(dir.path(), "run.yaml", text);
    let r = whet(dir.path(), &["run", "run.yaml", "--out", "out"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m = read_json(&dir.path().join("out/metrics.json"));
    // `yes` (the second label) is the positive class; `flag` gives it away.
    assert_eq!(
        m["test_classes"]["labels"],
        serde_json::json!(["no", "yes"])
    );
    assert_eq!(m["test"]["accuracy"].as_f64(), Some(1.0), "{m}");
    assert!(m["test"]["roc_auc"].is_number(), "{m}");

    // Two values in the rows `validate` reads, a third later: the run refuses it.
    let mut s = String::from("x,c\n");
    for i in 0..12_000 {
        let c = if i < 10_000 {
            ["a", "b"][i % 2]
        } else {
            ["a", "b", "z"][i % 3]
        };
        s.push_str(&format!("{i},{c}\n"));
    }
    write(dir.path(), "t2.csv", s);
    write(
        dir.path(),
        "run2.yaml",
        text.replace("t.csv", "t2.csv").replace("yesno", "c"),
    );
    let r = whet(dir.path(), &["validate", "run2.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = whet(dir.path(), &["run", "run2.yaml", "--out", "out2"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    for f in [
        "data.target.column",
        "has 3 (a, b, z)",
        "threshold: t",
        "model.task: classification",
    ] {
        assert!(r.stderr.contains(f), "expected `{f}` in:\n{}", r.stderr);
    }
}
