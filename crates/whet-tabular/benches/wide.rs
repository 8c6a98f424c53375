//! Column-wise stages on wide tables: `normalize`, `impute` and one-hot encodings over 100,000
//! columns of 60 rows (and 10,000 for comparison: the time per column must stay flat, since each
//! stage is linear in the number of columns), and a one-hot of 40,000 levels; synthetic from a
//! fixed seed.
//!
//! Run with: `cargo bench -p whet-tabular --bench wide` (or add `--profile dev` to reuse the
//! test build instead of rebuilding polars with LTO).

use divan::Bencher;
use polars::prelude::*;
use rand::RngExt;
use whet_tabular::{EncodeConfig, ImputeConfig, NormMethod, NormalizeConfig, NumericFill, Stage};

fn main() {
    // The one-hot of 40,000 levels is estimated with its later f32 features (8 GB); the bench
    // makes only the booleans (200 MB), so it runs whatever the machine's default budget.
    whet_core::budget::set(whet_core::Budget::new(64 << 30));
    divan::main();
}

const ROWS: usize = 60;

/// `ROWS` rows of `cols` float columns `x0…` (10 % missing).
fn wide(cols: usize) -> DataFrame {
    let mut rng = whet_core::rng::stream(42, &[6, cols as u64]);
    let columns: Vec<Column> = (0..cols)
        .map(|j| {
            let v: Float64Chunked = (0..ROWS)
                .map(|_| {
                    let x: f64 = rng.random::<f64>() * 10.0 + j as f64;
                    (rng.random::<f64>() >= 0.1).then_some(x)
                })
                .collect();
            v.with_name(format!("x{j}").into()).into_column()
        })
        .collect();
    DataFrame::new(ROWS, columns).unwrap()
}

/// `ROWS` rows of `cols` text columns `c0…` with two levels each.
fn text_columns(cols: usize) -> DataFrame {
    let columns: Vec<Column> = (0..cols)
        .map(|j| {
            let v: Vec<&str> = (0..ROWS).map(|i| ["a", "b"][(i + j) % 2]).collect();
            Column::new(format!("c{j}").into(), v)
        })
        .collect();
    DataFrame::new(ROWS, columns).unwrap()
}

/// `rows` rows of one text column with `rows` distinct levels.
fn many_levels(rows: usize) -> DataFrame {
    df!("cat" => (0..rows).map(|i| format!("level{i}")).collect::<Vec<_>>()).unwrap()
}

#[divan::bench(args = [10_000, 100_000], sample_count = 5)]
fn normalize_zscore(bencher: Bencher, cols: usize) {
    let df = impute()
        .fit(&wide(cols))
        .unwrap()
        .transform(wide(cols))
        .unwrap();
    let cfg = NormalizeConfig::new(NormMethod::Zscore);
    bencher
        .with_inputs(|| df.clone())
        .bench_values(|df| cfg.fit(&df).unwrap().transform(df).unwrap());
}

fn impute() -> ImputeConfig {
    ImputeConfig {
        numeric: NumericFill::Mean,
        ..Default::default()
    }
}

#[divan::bench(args = [10_000, 100_000], sample_count = 5)]
fn impute_mean(bencher: Bencher, cols: usize) {
    let df = wide(cols);
    bencher
        .with_inputs(|| df.clone())
        .bench_values(|df| impute().fit(&df).unwrap().transform(df).unwrap());
}

/// One-hot encodings that add 10,000 and 100,000 columns (a third of that many two-level text
/// columns, each giving two level columns and `__other__`).
#[divan::bench(args = [10_000, 100_000], sample_count = 5)]
fn one_hot_columns(bencher: Bencher, new_columns: usize) {
    let df = text_columns(new_columns / 3);
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|c| c.to_string())
        .collect();
    let cfg = EncodeConfig::one_hot(names);
    bencher
        .with_inputs(|| df.clone())
        .bench_values(|df| cfg.fit(&df).unwrap().transform(df).unwrap());
}

/// One text column of 10,000 and 40,000 levels (as many rows): the output is rows x levels.
#[divan::bench(args = [10_000, 40_000], sample_count = 3)]
fn one_hot_levels(bencher: Bencher, levels: usize) {
    let df = many_levels(levels);
    let cfg = EncodeConfig::one_hot(["cat"]).with_max_levels(levels);
    bencher
        .with_inputs(|| df.clone())
        .bench_values(|df| cfg.fit(&df).unwrap().transform(df).unwrap());
}
