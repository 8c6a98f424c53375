//! The flights pipeline on a slice of the real nycflights13 data (first 20,000 flights).

use std::collections::BTreeMap;
use std::path::PathBuf;

use ndarray::Axis;
use polars::prelude::*;
use whet_core::NoProgress;
use whet_tabular::{
    ExportFormat, FlagKind, LoadedTables, Manifest, SplitMethod, StepConfig, TableSpec,
    TabularConfig, apply, apply_file, audit, export, load_table, prepare, read_npy,
};

const ROWS: usize = 20_000;

fn data(name: &str) -> String {
    let p = PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../datasets/nycflights13")
    .join(name);
    p.to_string_lossy().into_owned()
}

/// The pipeline, as JSON (the CLI parses the same shape from YAML).
fn config(steps: serde_json::Value) -> TabularConfig {
    let v = serde_json::json!({
        "data": {
            "tables": {
                "flights": { "path": data("flights.csv.gz"), "limit": ROWS },
                "weather": data("weather.csv.gz"),
                "planes": data("planes.csv.gz"),
            },
            "main": "flights",
            "target": { "column": "arr_delay", "threshold": 15 },
        },
        "steps": steps,
        "split": { "method": "time", "order": "time_hour", "test": 0.2, "validation": 0.1 },
    });
    serde_json::from_value(v).unwrap()
}

fn joins() -> Vec<serde_json::Value> {
    vec![
        serde_json::json!({ "join": { "with": "weather", "on": ["origin", "time_hour"], "how": "left", "cardinality": "many_to_one" } }),
        serde_json::json!({ "join": { "with": "planes", "on": ["tailnum"], "how": "left", "suffix": "_plane", "cardinality": "many_to_one" } }),
    ]
}

fn full_steps() -> serde_json::Value {
    let mut s = joins();
    s.extend([
        serde_json::json!({ "exclude": ["arr_time", "dep_delay", "dep_time", "air_time"] }),
        serde_json::json!({ "audit": { "max_missing": 0.4, "leakage": 0.95, "fail_on": [] } }),
        serde_json::json!({ "drop_columns": { "max_missing": 0.5 } }),
        serde_json::json!({ "impute": { "numeric": "median", "categorical": "mode", "indicator": true } }),
        serde_json::json!({ "encode": { "one_hot": ["carrier", "origin"], "max_levels": 20 } }),
        serde_json::json!({ "normalize": { "method": "zscore" } }),
    ]);
    serde_json::Value::Array(s)
}

#[test]
fn audit_flags_after_the_fact_columns() {
    let mut steps = joins();
    steps.push(serde_json::json!({ "audit": { "leakage": 0.9 } }));
    let cfg = config(serde_json::Value::Array(steps));
    assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
    let rep = audit(&cfg, &NoProgress).unwrap();
    let leak = |c: &str| {
        rep.flags
            .iter()
            .find(|f| f.column == c && f.kind == FlagKind::Leakage)
    };
    // arr_delay = arr_time - sched_arr_time (minutes, modulo 24 h) on every labelled row.
    let arr = leak("arr_time").expect("arr_time flagged");
    assert!(arr.value > 0.999, "{arr:?}");
    assert!(arr.reason.contains("sched_arr_time"), "{}", arr.reason);
    // dep_delay: |r| with arr_delay about 0.91 on this slice.
    let dep = leak("dep_delay").expect("dep_delay flagged");
    assert!(dep.value > 0.9 && dep.value < 0.95, "{dep:?}");
    // Legitimate inputs are not flagged as leakage.
    for c in ["distance", "hour", "sched_dep_time", "temp", "month"] {
        assert!(leak(c).is_none(), "{c} flagged: {:?}", leak(c));
    }
    let has = |c: &str, k: FlagKind| rep.flags.iter().any(|f| f.column == c && f.kind == k);
    assert!(has("year", FlagKind::Constant));
    assert!(has("wind_gust", FlagKind::Missing));
    assert!(has("speed", FlagKind::Missing));
    assert!(has("tailnum", FlagKind::HighCardinality));
    // And the report serialises for `--json`.
    assert!(serde_json::to_string(&rep).unwrap().contains("\"leakage\""));

    // With the after-the-fact columns excluded, nothing leaks; `fail_on` then lets the run go.
    let mut steps = joins();
    steps.push(serde_json::json!({ "exclude": ["arr_time", "dep_delay", "dep_time", "air_time"] }));
    steps.push(serde_json::json!({ "audit": { "leakage": 0.9, "fail_on": ["leakage"] } }));
    let rep = audit(&config(serde_json::Value::Array(steps)), &NoProgress).unwrap();
    assert!(
        !rep.flags.iter().any(|f| f.kind == FlagKind::Leakage),
        "{}",
        rep.to_table()
    );
}

#[test]
fn audit_step_stops_the_run() {
    let mut steps = joins();
    steps.push(serde_json::json!({ "audit": { "fail_on": ["leakage"] } }));
    steps.push(serde_json::json!({ "impute": {} }));
    let e = prepare(
        &config(serde_json::Value::Array(steps)),
        1,
        None,
        &LoadedTables::none(),
        &NoProgress,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("audit stopped the run") && e.contains("arr_time"),
        "{e}"
    );
}

#[test]
fn flights_pipeline_prepares_exports_and_replays() {
    let cfg = config(full_steps());
    assert_eq!(cfg.split.method, SplitMethod::Time);
    let p = prepare(&cfg, 7, None, &LoadedTables::none(), &NoProgress).unwrap();
    let r = &p.report;
    // 20,000 flights; the joins keep every row and report the unmatched ones.
    assert_eq!(r.joins.len(), 2);
    assert_eq!(
        (r.joins[0].rows_before, r.joins[0].rows_after),
        (ROWS, ROWS)
    );
    assert!(r.joins[1].unmatched_left > 0);
    assert!(r.target_missing_dropped > 0);
    let n = ROWS - r.target_missing_dropped;
    assert_eq!(
        p.train.in_memory().unwrap().x.nrows() + p.validation.len() + p.test.len(),
        n
    );
    assert!(!p.test.is_empty() && !p.validation.is_empty());
    assert_eq!(p.train.in_memory().unwrap().x.ncols(), p.features.len());
    assert!(p.train.in_memory().unwrap().x.iter().all(|v| v.is_finite()));
    assert_eq!(p.train.y().ncols(), 1);
    assert!(p.features.iter().any(|f| f == "carrier=UA"));
    assert!(
        !p.features
            .iter()
            .any(|f| f == "arr_time" || f == "arr_delay")
    );
    // wind_gust is dropped on train (too sparse); indicators exist for imputed columns.
    assert!(!p.features.iter().any(|f| f == "wind_gust"));
    assert!(p.features.iter().any(|f| f.ends_with("__missing")));
    // Positive rate near the data set's ~24 %.
    let pos = p.train.y().mean().unwrap();
    assert!((0.1..0.4).contains(&pos), "{pos}");
    // Train statistics: every zscored train column has mean ~0.
    let j = p.features.iter().position(|f| f == "distance").unwrap();
    assert!(
        p.train
            .in_memory()
            .unwrap()
            .x
            .column(j)
            .mean()
            .unwrap()
            .abs()
            < 1e-3
    );

    // Export in all three formats and read back.
    let dir = tempfile::tempdir().unwrap();
    for fmt in [ExportFormat::Parquet, ExportFormat::Csv, ExportFormat::Npy] {
        let out = dir.path().join(format!("{fmt:?}"));
        let rep = export(&p, &out, fmt).unwrap();
        let m = Manifest::load(&rep.manifest).unwrap();
        assert_eq!(m.files.len(), rep.files.len());
        assert_eq!(m.rows.test, p.test.len());
        for f in &m.files {
            assert_eq!(std::fs::metadata(out.join(&f.name)).unwrap().len(), f.bytes);
            assert_eq!(f.sha256.len(), 64);
        }
        let back = match fmt {
            ExportFormat::Npy => read_npy(&out.join("test_x.npy")).unwrap(),
            _ => {
                let name = if fmt == ExportFormat::Csv {
                    "test.csv"
                } else {
                    "test.parquet"
                };
                let (df, _) = load_table(&TableSpec::new(out.join(name))).unwrap();
                // The identifier first (no `data.id`: `row`, the row in the main table's
                // file), then the features and `target`.
                assert_eq!(df.width(), p.features.len() + 2);
                assert_eq!(df.get_column_names()[0].as_str(), "row");
                let rows: Vec<i64> = df
                    .column("row")
                    .unwrap()
                    .cast(&DataType::Int64)
                    .unwrap()
                    .i64()
                    .unwrap()
                    .no_null_iter()
                    .collect();
                let want: Vec<i64> = p.source_rows.test.iter().map(|&r| i64::from(r)).collect();
                assert_eq!(rows, want);
                let mut x = ndarray::Array2::<f32>::zeros((df.height(), p.features.len()));
                for (j, f) in p.features.iter().enumerate() {
                    let c = df.column(f).unwrap().cast(&DataType::Float32).unwrap();
                    for (i, v) in c.f32().unwrap().no_null_iter().enumerate() {
                        x[[i, j]] = v;
                    }
                }
                x
            }
        };
        assert_eq!(back, p.test.in_memory().unwrap().x, "{fmt:?}");
    }

    // apply(manifest) on the same input reproduces the arrays of every split exactly.
    let m = Manifest::load(&dir.path().join("Npy/manifest.json")).unwrap();
    let applied = apply_file(&m, std::path::Path::new(&data("flights.csv.gz"))).unwrap();
    assert_eq!(applied.features, p.features);
    let rows = |v: &[IdxSize]| v.iter().map(|&i| i as usize).collect::<Vec<_>>();
    assert_eq!(
        applied.x.select(Axis(0), &rows(&p.indices.test)),
        p.test.in_memory().unwrap().x
    );
    assert_eq!(
        applied.x.select(Axis(0), &rows(&p.indices.train)),
        p.train.in_memory().unwrap().x
    );
    let y = applied.y.unwrap();
    assert_eq!(
        y.select(Axis(0), &rows(&p.indices.validation)),
        p.validation.y()
    );

    // New data without the target column: features only.
    let mut spec = TableSpec::new(data("flights.csv.gz"));
    spec.limit = Some(50);
    let (df, _) = load_table(&spec).unwrap();
    let df = df.drop("arr_delay").unwrap();
    let mut tables = BTreeMap::new();
    tables.insert(
        "weather".to_string(),
        load_table(&TableSpec::new(data("weather.csv.gz")))
            .unwrap()
            .0,
    );
    tables.insert(
        "planes".to_string(),
        load_table(&TableSpec::new(data("planes.csv.gz")))
            .unwrap()
            .0,
    );
    let a = apply(&m, df, &tables).unwrap();
    assert_eq!(a.x.dim(), (50, p.features.len()));
    assert!(a.y.is_none());
    assert_eq!(a.x.row(0), applied.x.row(0));
}

/// The three splits of `a` and `b` hold the same rows, features and targets.
fn same_arrays(a: &whet_tabular::Prepared, b: &whet_tabular::Prepared) {
    assert_eq!(a.indices, b.indices);
    for (x, y) in [
        (&a.train, &b.train),
        (&a.validation, &b.validation),
        (&a.test, &b.test),
    ] {
        let (x, y) = (x.in_memory().unwrap(), y.in_memory().unwrap());
        assert_eq!((&x.x, &x.y), (&y.x, &y.y));
    }
}

#[test]
fn same_seed_same_arrays_and_time_split_is_strict() {
    let mut steps = joins();
    steps.push(serde_json::json!({ "impute": { "numeric": "mean" } }));
    let mut cfg = config(serde_json::Value::Array(steps));
    cfg.split =
        serde_json::from_value(serde_json::json!({ "method": "random", "test": 0.25 })).unwrap();
    let a = prepare(&cfg, 3, None, &LoadedTables::none(), &NoProgress).unwrap();
    // Through kept tables (the second preparation reads no file): the same arrays, so the
    // first preparation changed nothing in the frames it was handed.
    let loaded = LoadedTables::new();
    for round in 0..2 {
        let b = prepare(&cfg, 3, None, &loaded, &NoProgress).unwrap();
        assert_eq!(
            loaded.len(),
            3,
            "round {round}: flights, weather and planes kept"
        );
        same_arrays(&a, &b);
        assert_eq!(a.report.loads, b.report.loads);
    }
    let c = prepare(&cfg, 4, None, &loaded, &NoProgress).unwrap();
    assert_ne!(a.indices.test, c.indices.test);
    assert!(matches!(cfg.steps[2], StepConfig::Impute(_)));
}

/// The seed reaches a table preparation through the split only (`SplitConfig::uses_seed`):
/// split by time, every seed prepares the same arrays and the same fitted steps.
#[test]
fn a_time_split_prepares_the_same_data_for_every_seed() {
    let cfg = config(full_steps());
    assert!(!cfg.split.uses_seed());
    let loaded = LoadedTables::new();
    let a = prepare(&cfg, 7, None, &loaded, &NoProgress).unwrap();
    let b = prepare(&cfg, 8, None, &loaded, &NoProgress).unwrap();
    same_arrays(&a, &b);
    let mut m = b.manifest.clone();
    assert_eq!(m.seed, 8);
    m.seed = 7;
    assert_eq!(m, a.manifest);
    for method in ["random", "stratified", "hash", "group", "kfold"] {
        let mut c = cfg.clone();
        c.split.method = serde_json::from_value(serde_json::json!(method)).unwrap();
        assert!(c.split.uses_seed(), "{method}");
    }
}

#[test]
fn config_errors_are_reported_with_paths() {
    let mut cfg = config(full_steps());
    cfg.steps.push(
        serde_json::from_value(serde_json::json!({ "join": { "with": "nowhere", "on": ["x"] } }))
            .unwrap(),
    );
    cfg.split.order = None;
    let is = cfg.validate();
    let text: Vec<String> = is.iter().map(|i| i.to_string()).collect();
    assert!(
        text.iter().any(|t| t.starts_with("steps[8].join.with")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains("before the first fitted step")),
        "{text:?}"
    );
    assert!(
        text.iter().any(|t| t.starts_with("split.order")),
        "{text:?}"
    );
    let e = serde_json::from_value::<TabularConfig>(serde_json::json!({
        "data": { "tables": { "f": "x.csv" }, "target": { "column": "y" } },
        "steps": [ { "impute": { "numerc": "mean" } } ],
    }))
    .unwrap_err()
    .to_string();
    assert!(e.contains("unknown field `numerc`"), "{e}");
}
